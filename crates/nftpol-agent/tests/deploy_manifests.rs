//! Every manifest in `deploy/` deserialises into its k8s-openapi type and
//! serialises back to the same document (so a misspelt field, which a
//! deserialiser would silently ignore, fails), and the DaemonSet and RBAC
//! keep the properties the design relies on.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every YAML document in `deploy/`, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable manifest");
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize_from(document, &name);
            documents.push((
                name.clone(),
                serde_json::to_value(value).expect("YAML maps to JSON"),
            ));
        }
    }
    documents
}

trait FromDocument {
    fn deserialize_from(document: serde_yaml::Deserializer<'_>, name: &str) -> Self;
}

impl FromDocument for serde_yaml::Value {
    fn deserialize_from(document: serde_yaml::Deserializer<'_>, name: &str) -> Self {
        serde::Deserialize::deserialize(document)
            .unwrap_or_else(|error| panic!("{name}: invalid YAML: {error}"))
    }
}

/// Deserialises `document` as `T` and checks that nothing was dropped.
fn typed<T: DeserializeOwned + Serialize>(name: &str, document: &Value) -> T {
    let object: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|error| panic!("{name}: does not deserialise: {error}"));
    let back = serde_json::to_value(&object).expect("serialises");
    assert_eq!(
        &back, document,
        "{name}: fields lost in a round trip (misspelt or misplaced?)"
    );
    object
}

#[test]
fn every_manifest_round_trips_through_its_type() {
    let documents = documents();
    let mut kinds = Vec::new();
    for (name, document) in &documents {
        if name == "kustomization.yaml" {
            continue;
        }
        let kind = document["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no kind"))
            .to_owned();
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(name, document)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(name, document)),
            "ClusterRole" => drop(typed::<ClusterRole>(name, document)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(name, document)),
            "DaemonSet" => drop(typed::<DaemonSet>(name, document)),
            other => panic!("{name}: kind {other} has no check here"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "Namespace",
            "ServiceAccount"
        ]
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let documents = documents();
    let (_, kustomization) = documents
        .iter()
        .find(|(name, _)| name == "kustomization.yaml")
        .expect("deploy/kustomization.yaml");
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    let mut files: Vec<&str> = documents
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| *name != "kustomization.yaml")
        .collect();
    files.dedup();
    assert_eq!(listed, files);
    assert!(deploy_dir().join("Containerfile").is_file());
}

fn daemonset() -> DaemonSet {
    let documents = documents();
    let (name, document) = documents
        .iter()
        .find(|(_, document)| document["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    typed(name, document)
}

fn agent_container(daemonset: &DaemonSet) -> Container {
    let spec = daemonset
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("pod spec");
    spec.containers.first().cloned().expect("one container")
}

#[test]
fn daemonset_runs_with_net_admin_only_on_every_node() {
    let daemonset = daemonset();
    let pod = daemonset
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("nftpol"));
    let tolerations = pod.tolerations.as_ref().expect("tolerations");
    assert!(
        tolerations.iter().any(
            |toleration| toleration.operator.as_deref() == Some("Exists")
                && toleration.key.is_none()
                && toleration.effect.is_none()
        ),
        "tolerates every taint"
    );

    let container = agent_container(&daemonset);
    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(
        capabilities.add.as_deref(),
        Some(&["NET_ADMIN".to_owned()][..])
    );
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(
        security
            .seccomp_profile
            .as_ref()
            .map(|profile| profile.type_.as_str()),
        Some("RuntimeDefault")
    );

    let node_name = container
        .env
        .iter()
        .flatten()
        .find(|variable| variable.name == "NODE_NAME")
        .and_then(|variable| variable.value_from.as_ref())
        .and_then(|source| source.field_ref.as_ref())
        .map(|field| field.field_path.as_str());
    assert_eq!(
        node_name,
        Some("spec.nodeName"),
        "NODE_NAME from the downward API"
    );

    let resources = container.resources.as_ref().expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|requests| requests.contains_key(key)),
            "request {key}"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|limits| limits.contains_key(key)),
            "limit {key}"
        );
    }
    assert_eq!(
        container
            .args
            .as_ref()
            .and_then(|args| args.first())
            .map(String::as_str),
        Some("agent")
    );
}

#[test]
fn probes_use_the_agent_http_port() {
    let container = agent_container(&daemonset());
    let listen = container
        .args
        .iter()
        .flatten()
        .find_map(|arg| arg.strip_prefix("--listen="))
        .expect("--listen");
    let port: i32 = listen
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a port");
    for (probe, path) in [
        (&container.readiness_probe, "/readyz"),
        (&container.liveness_probe, "/healthz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|probe| probe.http_get.as_ref())
            .expect("an httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)
        );
    }
}

#[test]
fn cluster_role_reads_the_kinds_the_agent_watches_and_only_creates_events() {
    let documents = documents();
    let (name, document) = documents
        .iter()
        .find(|(_, document)| document["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let role: ClusterRole = typed(name, document);
    let mut read = Vec::new();
    let mut written = Vec::new();
    for rule in role.rules.iter().flatten() {
        let mut verbs = rule.verbs.clone();
        verbs.sort();
        let resources = rule.resources.iter().flatten().cloned();
        if verbs == ["get", "list", "watch"] {
            read.extend(resources);
        } else {
            written.extend(resources.map(|resource| (resource, verbs.clone())));
        }
    }
    read.sort();
    assert_eq!(
        read,
        [
            "clusternetworkpolicies",
            "namespaces",
            "networkpolicies",
            "nodes",
            "pods"
        ]
    );
    assert_eq!(
        written,
        [("events".to_owned(), vec!["create".to_owned()])],
        "the one write: Events on policies not enforced as written"
    );
}

fn yaml_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn cluster_network_policy_overlay_adds_the_standard_crd_at_a_release_tag() {
    let overlay = deploy_dir().join("overlays/with-cluster-network-policy");
    let kustomization = yaml_file(&overlay.join("kustomization.yaml"));
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(kustomization["resources"], serde_json::json!(["../.."]));
    let components = kustomization["components"].as_array().expect("components");
    assert_eq!(components.len(), 1);
    let component_dir = overlay.join(components[0].as_str().expect("a path"));
    let component = yaml_file(&component_dir.join("kustomization.yaml"));
    assert_eq!(component["kind"], "Component");
    let resources: Vec<&str> = component["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let [crd] = resources[..] else {
        panic!("one resource, the CRD: {resources:?}");
    };
    // The standard channel (not experimental) of a released tag, never a
    // moving branch: what the agent's v1alpha2 types were written against.
    let (version, path) = crd
        .strip_prefix(
            "https://raw.githubusercontent.com/kubernetes-sigs/network-policy-api/refs/tags/v",
        )
        .and_then(|rest| rest.split_once('/'))
        .expect("a network-policy-api release tag");
    assert_eq!(
        path,
        "config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml"
    );
    assert!(
        version.split('.').all(|part| part.parse::<u32>().is_ok()),
        "a release version: {version}"
    );
}
