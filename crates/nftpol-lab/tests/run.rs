//! `run` end to end, agents included: a policy is enforced inside the lab
//! and node traffic passes. Alone in its test binary, so every namespace
//! named after this process's pid belongs to this test.

use nftpol_lab::netns;
use nftpol_lab::{compare, run, RunOptions};
use nftpol_testkit::netns::Sweep;

const DENY_INGRESS_TO_B: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec:
  nodeName: node-2
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
";

const EXPECTED: &str = r#"{"probes": [
  {"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
  {"from": "x/a", "to": "x/a", "port": 80, "protocol": "UDP", "connected": true},
  {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": false},
  {"from": "x/a", "to": "x/b", "port": 80, "protocol": "UDP", "connected": false},
  {"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
  {"from": "x/b", "to": "x/a", "port": 80, "protocol": "UDP", "connected": true},
  {"from": "x/b", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
  {"from": "x/b", "to": "x/b", "port": 80, "protocol": "UDP", "connected": true}
]}"#;

#[test]
fn agents_enforce_a_policy_in_the_lab_and_node_probes_pass() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab run test creates network namespaces: run it as root"
    );
    let guard = Sweep::new(format!("{}{}-", netns::PREFIX, std::process::id()));
    let options = RunOptions::default();
    let report = run(DENY_INGRESS_TO_B, "deny-ingress-to-b", &options).expect("the lab runs");

    assert_eq!(report.nodes, 2);
    assert_eq!(report.probes.len(), 8);
    let mismatches = compare(&report, EXPECTED).expect("EXPECTED parses");
    let shown: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert!(shown.is_empty(), "{shown:#?}");
    // node-2 → x/b passes although x/b is isolated for ingress.
    assert_eq!(report.node_probes.len(), 4);
    assert!(
        report.node_probes.iter().all(|p| p.connected),
        "{:#?}",
        report.node_probes
    );
    assert_eq!(
        guard.present(),
        Vec::<String>::new(),
        "run removes every namespace it made"
    );
}
