//! Every scenario in `integration/scenarios/` through `nftpol lab run
//! --expect`: real network namespaces, real agents, real traffic, compared
//! with reachability reasoned from the spec. `via-service-*` scenarios probe
//! through kube-proxy-style DNAT. No lab namespace may be left behind.

use std::path::Path;
use std::process::Command;

fn lab_namespaces() -> Vec<String> {
    nftpol_testkit::netns::list(nftpol_lab::netns::PREFIX)
}

#[test]
fn every_scenario_matches_its_expected_reachability() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration/scenarios");
    let mut scenarios: Vec<_> = std::fs::read_dir(&folder)
        .expect("integration/scenarios exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    scenarios.sort();
    assert!(
        scenarios.len() >= 30,
        "found only {} scenarios",
        scenarios.len()
    );
    let before = lab_namespaces();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let stem = scenario
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let expected = folder.join(format!("{stem}.expected.json"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_nftpol"));
        command
            .args(["lab", "run", "--json", "--expect"])
            .arg(&expected)
            .arg(scenario);
        if stem.starts_with("via-service-") {
            command.arg("--via-service");
        }
        let output = command.output().expect("nftpol runs");
        if !output.status.success() {
            failures.push(format!(
                "{stem} (exit {:?}):\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
    assert_eq!(lab_namespaces(), before, "a lab run left namespaces behind");
}
