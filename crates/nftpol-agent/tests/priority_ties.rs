//! ClusterNetworkPolicies of one tier sharing a priority are ordered by
//! name and reported on every reconcile (the report and the
//! `nftpol_cnp_priority_ties` gauge), while the rest commits.

use nftpol_agent::metrics::Metrics;
use nftpol_agent::Reconciler;
use nftpol_model::cluster_policy::Tier;
use nftpol_model::Snapshot;
use nftpol_netlink::FakeDataplane;
use nftpol_ruleset::compile::CompileOptions;

const CLUSTER: &str = r"
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
";

fn cluster_policy(name: &str, tier: &str, priority: u16) -> String {
    format!(
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\n\
         spec: {{tier: {tier}, priority: {priority}, subject: {{namespaces: {{}}}},\n\
         \x20 ingress: [{{action: Deny, from: [{{namespaces: {{}}}}]}}]}}\n"
    )
}

fn snapshot(policies: &[String]) -> Snapshot {
    let yaml = format!("{CLUSTER}{}", policies.concat());
    Snapshot::from(
        &nftpol_model::manifests::parse(&yaml)
            .expect("test YAML parses")
            .cluster,
    )
}

fn gauge(text: &str, tier: &str) -> Option<i64> {
    let prefix = format!("nftpol_cnp_priority_ties{{tier=\"{tier}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn equal_priorities_are_reported_per_tier_and_cleared_when_resolved() {
    let mut reconciler = Reconciler::new(FakeDataplane::new(), "node-1", CompileOptions::default());
    let metrics = Metrics::new();
    let tied = snapshot(&[
        cluster_policy("b-second", "Admin", 5),
        cluster_policy("a-first", "Admin", 5),
        cluster_policy("c-other", "Admin", 6),
        cluster_policy("d-base", "Baseline", 5),
    ]);
    let report = reconciler
        .reconcile(&tied)
        .expect("a tie never stops a reconcile");
    let ties: Vec<(Tier, u16, &str, &str)> = report
        .priority_ties
        .iter()
        .map(|tie| {
            (
                tie.tier,
                tie.priority,
                tie.first.as_str(),
                tie.second.as_str(),
            )
        })
        .collect();
    assert_eq!(ties, [(Tier::Admin, 5, "a-first", "b-second")]);
    assert!(report.rules > 0, "the tied policies are still compiled");
    metrics.ruleset.record(
        reconciler.committed().expect("committed"),
        reconciler.provenance(),
        &report,
    );
    let text = metrics.encode();
    assert_eq!(gauge(&text, "Admin"), Some(1), "{text}");
    assert_eq!(gauge(&text, "Baseline"), Some(0), "{text}");

    // Moving one policy off the shared priority resolves the tie.
    let resolved = snapshot(&[
        cluster_policy("b-second", "Admin", 7),
        cluster_policy("a-first", "Admin", 5),
        cluster_policy("c-other", "Admin", 6),
        cluster_policy("d-base", "Baseline", 5),
    ]);
    let report = reconciler.reconcile(&resolved).expect("reconciles");
    assert!(
        report.priority_ties.is_empty(),
        "{:?}",
        report.priority_ties
    );
    metrics.ruleset.record(
        reconciler.committed().expect("committed"),
        reconciler.provenance(),
        &report,
    );
    assert_eq!(gauge(&metrics.encode(), "Admin"), Some(0));
}
