//! The policy generation across commits and restarts: a commit that takes
//! permission away bumps it, one that only adds allowed pods does not, and a
//! restarted agent adopts the kernel's generation, so committing the same
//! policy again re-judges nothing (the kernel here is the shared
//! `FakeDataplane`, which both reconcilers see, as two agent processes see
//! one kernel).

mod support;

use nftpol_agent::Reconciler;
use nftpol_model::{Cluster, Snapshot};
use nftpol_ruleset::compile::CompileOptions;
use nftpol_ruleset::rejudge::{self, MarkBits, Rejudge};
use support::SharedDataplane;

const BASE: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-admits-web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {role: web}}}]}]
";

/// A pod on another node that joins a's peers.
const REMOTE_WEB: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: w, namespace: x, labels: {role: web}}
spec: {nodeName: node-2, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.2.9}]}
";

fn snapshot(extra: &[&str]) -> Snapshot {
    let mut text = BASE.to_owned();
    for part in extra {
        text.push_str("---\n");
        text.push_str(part);
    }
    let cluster: Cluster = nftpol_model::manifests::parse(&text)
        .expect("the manifests parse")
        .cluster;
    Snapshot::from(&cluster)
}

fn options() -> CompileOptions {
    CompileOptions {
        rejudge: Some(Rejudge::default()),
        ..CompileOptions::default()
    }
}

fn generation(kernel: &SharedDataplane) -> Option<u32> {
    kernel
        .state()
        .and_then(|table| rejudge::generation_of(&table, MarkBits::default()))
        .map(rejudge::Generation::get)
}

#[test]
fn generations_follow_what_commits_take_away_and_survive_a_restart() {
    let kernel = SharedDataplane::default();
    let mut first = Reconciler::new(kernel.clone(), "node-1", options());
    first.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(generation(&kernel), Some(1), "a new table starts at 1");

    first.reconcile(&snapshot(&[REMOTE_WEB])).expect("commits");
    assert_eq!(
        generation(&kernel),
        Some(1),
        "a pod joining allowed peers re-judges nothing"
    );

    first.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(
        generation(&kernel),
        Some(2),
        "a pod leaving allowed peers re-judges"
    );

    drop(first);
    let mut restarted = Reconciler::new(kernel.clone(), "node-1", options());
    let report = restarted.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(report.changes, 0, "the restart adopts the table as it is");
    assert_eq!(generation(&kernel), Some(2), "and its generation");

    restarted
        .reconcile(&snapshot(&[REMOTE_WEB]))
        .expect("commits");
    restarted.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(
        generation(&kernel),
        Some(3),
        "the restarted agent bumps from there"
    );
}

#[test]
fn rejudging_off_keeps_the_plain_bypass_and_no_generation() {
    let kernel = SharedDataplane::default();
    let mut reconciler = Reconciler::new(kernel.clone(), "node-1", CompileOptions::default());
    reconciler.reconcile(&snapshot(&[])).expect("commits");
    let table = kernel.state().expect("a table");
    assert_eq!(generation(&kernel), None);
    assert!(!table.chains.contains_key("judged-egress"));
    assert!(!table.chains.contains_key("stamp-ingress"));
}

#[test]
fn the_denied_flow_flush_removes_each_directions_denied_mark_and_nothing_without_rejudging() {
    let kernel = SharedDataplane::default();
    let mut reconciler = Reconciler::new(kernel.clone(), "node-1", options());
    assert_eq!(
        reconciler.flush_denied_flows().expect("flushes"),
        0,
        "nothing committed yet: no flow can carry the mark"
    );
    reconciler.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(reconciler.flush_denied_flows().expect("flushes"), 2);
    assert_eq!(
        kernel.lock().conntrack_flushes(),
        [(0x00ff_0000, 0x00ff_0000), (0xff00_0000, 0xff00_0000)],
        "each direction's field, all of its bits set"
    );

    let plain = SharedDataplane::default();
    let mut off = Reconciler::new(plain.clone(), "node-1", CompileOptions::default());
    off.reconcile(&snapshot(&[])).expect("commits");
    assert_eq!(off.flush_denied_flows().expect("flushes"), 0);
    assert!(plain.lock().conntrack_flushes().is_empty());
}
