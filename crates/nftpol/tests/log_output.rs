//! What the `nftpol` binary writes to stderr when stderr is not a terminal:
//! plain text (no ANSI escape codes), and errors with their whole chain of
//! causes.

use std::process::{Command, Output, Stdio};

/// Runs `nftpol ARGS` with stdout and stderr to pipes.
fn nftpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nftpol"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the nftpol binary runs")
}

fn scratch_file(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("nftpol-log-output-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("writing a scratch file");
    path
}

#[test]
fn logs_to_a_pipe_carry_no_ansi_escape_codes() {
    // An invalid policy is a warning; the render still succeeds.
    let manifests = scratch_file(
        "invalid-policy.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: bad, namespace: x}\n\
         spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: bogus}}]}]}\n",
    );
    let output = nftpol(&[
        "render",
        "--manifests",
        manifests.to_str().expect("utf-8 temp path"),
        "--node",
        "node-1",
    ]);
    std::fs::remove_file(&manifests).expect("removing the scratch file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "render failed: {stderr}");
    assert!(
        stderr.contains("WARN"),
        "the invalid policy is logged: {stderr:?}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "escape codes in a piped log: {stderr:?}"
    );
}

#[test]
fn a_lab_error_is_printed_with_its_causes_and_no_escape_codes() {
    let scenario = scratch_file("broken-scenario.yaml", "kind: [\n");
    let output = nftpol(&["lab", "run", scenario.to_str().expect("utf-8 temp path")]);
    std::fs::remove_file(&scenario).expect("removing the scratch file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // The lab's advice, then the loader's error it wraps, on one line.
    let line = stderr
        .lines()
        .find(|line| line.contains("ERROR"))
        .unwrap_or_else(|| panic!("no error line: {stderr:?}"));
    assert!(line.contains("fix the YAML"), "{line}");
    assert!(
        line.contains("malformed YAML"),
        "the cause is missing: {line}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "escape codes in a piped log: {stderr:?}"
    );
}
