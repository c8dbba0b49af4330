//! The Helm chart `deploy/helm/nftpol` passes `helm lint --strict`, renders
//! with its defaults the same agent as `kubectl apply -k deploy/` (pod spec
//! and RBAC equal), and its values do what `values.yaml` says. `helm` comes
//! from `HELM` or `PATH`; `scripts/test.sh` builds it from its Go module.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm() -> Command {
    let program = std::env::var_os("HELM").unwrap_or_else(|| "helm".into());
    let mut command = Command::new(program);
    command.current_dir(repository());
    command
}

fn run(mut command: Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("running helm: {error} (scripts/test.sh builds it; or set HELM=/path/to/helm)")
    });
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(document).expect("valid YAML");
            serde_json::to_value(value).expect("YAML maps to JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The chart rendered as release `nftpol` in `nftpol-system` with `sets`.
fn render(sets: &[&str]) -> Vec<Value> {
    let mut command = helm();
    command.args([
        "template",
        "nftpol",
        "deploy/helm/nftpol",
        "--namespace",
        "nftpol-system",
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    yaml_documents(&run(command))
}

fn deployed() -> Vec<Value> {
    let directory = repository().join("deploy");
    ["namespace.yaml", "rbac.yaml", "daemonset.yaml"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(directory.join(file)).expect("a manifest");
            yaml_documents(&text)
        })
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {documents:#?}"))
}

fn container(documents: &[Value]) -> &Value {
    &of_kind(documents, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn chart_passes_strict_lint() {
    let mut command = helm();
    command.args(["lint", "--strict", "deploy/helm/nftpol"]);
    run(command);
}

#[test]
fn chart_defaults_render_the_agent_that_deploy_holds() {
    // deploy/ pins the image tag `latest` through kustomize; the chart's
    // default is its appVersion.
    let chart = render(&["image.tag=latest"]);
    let deploy = deployed();
    let pod_spec =
        |documents: &[Value]| of_kind(documents, "DaemonSet")["spec"]["template"]["spec"].clone();
    assert_eq!(pod_spec(&chart), pod_spec(&deploy));
    assert_eq!(
        of_kind(&chart, "DaemonSet")["spec"]["updateStrategy"],
        of_kind(&deploy, "DaemonSet")["spec"]["updateStrategy"]
    );
    assert_eq!(
        of_kind(&chart, "ClusterRole")["rules"],
        of_kind(&deploy, "ClusterRole")["rules"]
    );
    assert_eq!(
        of_kind(&chart, "ClusterRoleBinding")["subjects"],
        of_kind(&deploy, "ClusterRoleBinding")["subjects"]
    );
    assert!(
        chart
            .iter()
            .all(|document| document["kind"] != "ServiceMonitor"),
        "no ServiceMonitor unless asked for"
    );
}

#[test]
fn chart_values_reach_the_agent() {
    let chart = render(&[
        "metrics.port=9900",
        "agent.deny=reject",
        "agent.extraArgs={--coalesce-ms=50}",
        "agent.verdictLog.mode=all",
        "agent.verdictLog.nflogGroup=7",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
    ]);
    let agent = container(&chart);
    let args: Vec<&str> = agent["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--listen=0.0.0.0:9900"), "{args:?}");
    assert!(args.contains(&"--deny=reject"), "{args:?}");
    assert!(args.contains(&"--verdict-log=all"), "{args:?}");
    assert!(args.contains(&"--nflog-group=7"), "{args:?}");
    assert_eq!(args.last(), Some(&"--coalesce-ms=50"), "{args:?}");
    assert_eq!(agent["readinessProbe"]["httpGet"]["port"], 9900);
    assert_eq!(agent["livenessProbe"]["httpGet"]["port"], 9900);
    let monitor = of_kind(&chart, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let service = of_kind(&chart, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 9900);
    assert_eq!(
        service["spec"]["selector"],
        of_kind(&chart, "DaemonSet")["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn cluster_wide_names_are_per_release() {
    let mut command = helm();
    command.args([
        "template",
        "edge",
        "deploy/helm/nftpol",
        "--namespace",
        "enforcers",
    ]);
    let chart = yaml_documents(&run(command));
    assert_eq!(
        of_kind(&chart, "ClusterRole")["metadata"]["name"],
        "nftpol-edge"
    );
    let binding = of_kind(&chart, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "nftpol-edge");
    assert_eq!(binding["subjects"][0]["namespace"], "enforcers");
}
