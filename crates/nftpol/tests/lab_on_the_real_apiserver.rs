//! `nftpol lab run --apiserver real`: every scenario of `integration/live/`
//! created through the real kube-apiserver, enforced by the real agent
//! binary on each lab node, then changed step by step through the server
//! (`--steps`), each step's probes compared with reachability reasoned from
//! the spec. Needs root and the binaries of `scripts/apiserver.sh build`.
//! No lab namespace may be left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lab_namespaces() -> Vec<String> {
    nftpol_testkit::netns::list(nftpol_lab::netns::PREFIX)
}

fn live_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration/live")
}

fn nftpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nftpol"))
        .args(args)
        .current_dir(live_folder())
        .output()
        .expect("nftpol runs")
}

#[test]
fn live_scenarios_follow_every_step_on_the_real_api_server() {
    let mut scenarios: Vec<String> = std::fs::read_dir(live_folder())
        .expect("integration/live exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|name| name.strip_suffix(".steps.yaml").map(str::to_owned))
        .collect();
    scenarios.sort();
    assert!(!scenarios.is_empty(), "no step file in integration/live");
    let before = lab_namespaces();
    for stem in &scenarios {
        let steps = format!("{stem}.steps.yaml");
        let expected = format!("{stem}.expected.json");
        let scenario = format!("{stem}.yaml");
        let output = nftpol(&[
            "lab",
            "run",
            "--json",
            "--apiserver",
            "real",
            "--steps",
            &steps,
            "--expect",
            &expected,
            &scenario,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{stem} (exit {:?}):\n{stderr}",
            output.status.code()
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("one JSON object");
        let listed = std::fs::read_to_string(live_folder().join(&steps))
            .expect("the step file")
            .lines()
            .filter(|line| line.starts_with("- name:"))
            .count();
        assert_eq!(
            report["steps"].as_array().map(Vec::len),
            Some(listed),
            "{stem}: one probe round per step"
        );
        assert_eq!(
            stderr.matches("all judged probes match").count(),
            listed + 1,
            "{stem}: the start and every step were judged:\n{stderr}"
        );
        // The same start, enforced by the in-process agents, agrees.
        let in_process = nftpol(&["lab", "run", "--json", "--expect", &expected, &scenario]);
        assert!(
            in_process.status.success(),
            "{stem} in process: {}",
            String::from_utf8_lossy(&in_process.stderr)
        );
    }
    assert_eq!(lab_namespaces(), before, "a lab run left namespaces behind");
}

#[test]
fn options_only_the_in_process_agents_have_are_refused_with_the_real_api_server() {
    for (args, says) in [
        (
            &["--steps", "policy-and-label-changes.steps.yaml"][..],
            "--steps changes a live cluster: add --apiserver real",
        ),
        (
            &["--apiserver", "real", "--via-service"][..],
            "--via-service runs with the in-process agents only",
        ),
        (
            &["--apiserver", "real", "--verdicts=deny"][..],
            "--verdicts runs with the in-process agents only",
        ),
        (
            &["--apiserver", "real", "--kube-tools", "/nonexistent"][..],
            "/nonexistent/nftpol-apiserver: missing; build the API server tools with `scripts/apiserver.sh build`",
        ),
    ] {
        let mut command = vec!["lab", "run"];
        command.extend_from_slice(args);
        command.push("policy-and-label-changes.yaml");
        let output = nftpol(&command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr:?} does not say {says:?}");
    }
}
