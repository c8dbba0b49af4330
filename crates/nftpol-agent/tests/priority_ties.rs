//! ClusterNetworkPolicies of one tier sharing a priority are ordered by
//! name and reported on every reconcile (the report and the
//! `nftpol_cnp_priority_ties` gauge), while the rest commits.

use nftpol_agent::metrics::Metrics;
use nftpol_agent::Reconciler;
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::cluster_policy::Tier;
use nftpol_model::{Cluster, Snapshot};
use nftpol_netlink::FakeDataplane;
use nftpol_ruleset::compile::CompileOptions;
use nftpol_testkit::{fixtures, plan};

fn cluster_policy(name: &str, tier: &str, priority: u16) -> ClusterNetworkPolicy {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "tier": tier, "priority": priority, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
        },
    }))
    .expect("a valid ClusterNetworkPolicy")
}

/// One pod on node-1 and the given ClusterNetworkPolicies.
fn snapshot(cluster_policies: Vec<ClusterNetworkPolicy>) -> Snapshot {
    Snapshot::from(&Cluster {
        namespaces: vec![fixtures::namespace("x").build()],
        pods: vec![fixtures::pod("x", "a")
            .node(1)
            .address(plan::pod_v4(1, 2))
            .build()],
        nodes: vec![fixtures::plan_node(1).build()],
        cluster_policies,
        ..Cluster::default()
    })
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
    let tied = snapshot(vec![
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
    let resolved = snapshot(vec![
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
