//! The real agent loop follows ClusterNetworkPolicies through the fake API
//! server: create, update (priority swap, Deny → Pass, a rule inserted),
//! delete, and a CRD absent at start and installed later, each asserted on
//! the committed table by walking packets through it.

mod support;

use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use serde_json::json;
use support::apiserver::{FakeApiServer, Kind};
use support::{
    allows, namespace, node, pod, wait_requests, RunningAgent, SharedDataplane, NODE, POD_CIDR,
};

const A: &str = "10.244.0.10";
const B: &str = "10.244.0.11";
const C: &str = "10.244.0.12";

/// Namespaces x (ns=x) and y (ns=y); pods x/a, x/b, y/c on node-1.
async fn cluster(with_crd: bool) -> FakeApiServer {
    let server = FakeApiServer::start().await;
    server.install_cluster_policy_crd(with_crd);
    server.apply(&node(NODE, POD_CIDR));
    server.apply(&namespace("x", &[("ns", "x")]));
    server.apply(&namespace("y", &[("ns", "y")]));
    server.apply(&pod("x", "a", NODE, A, &[("pod", "a")]));
    server.apply(&pod("x", "b", NODE, B, &[("pod", "b")]));
    server.apply(&pod("y", "c", NODE, C, &[("pod", "c")]));
    server
}

fn cnp(name: &str, spec: &serde_json::Value) -> ClusterNetworkPolicy {
    ClusterNetworkPolicy::new(
        name,
        serde_json::from_value(spec.clone()).expect("a valid ClusterNetworkPolicy spec"),
    )
}

/// Admin, subject x/a: ingress `action` from namespace y.
fn guard_a(priority: u32, action: &str) -> ClusterNetworkPolicy {
    cnp(
        "guard-a",
        &json!({
            "tier": "Admin", "priority": priority,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}},
            "ingress": [{"name": "from-y", "action": action, "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]
        }),
    )
}

/// Admin, subject every pod: ingress Accept from namespace y.
fn open_from_y(priority: u32) -> ClusterNetworkPolicy {
    cnp(
        "open-from-y",
        &json!({
            "tier": "Admin", "priority": priority,
            "subject": {"namespaces": {}},
            "ingress": [{"action": "Accept", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]
        }),
    )
}

/// Baseline, subject every pod: ingress Deny from every namespace.
fn baseline_deny_all() -> ClusterNetworkPolicy {
    cnp(
        "baseline-deny-all",
        &json!({
            "tier": "Baseline", "priority": 0,
            "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_policy_create_update_and_delete_are_enforced() {
    let server = cluster(true).await;
    let mut agent = RunningAgent::start(server.client(), SharedDataplane::default());
    agent
        .wait_until("the initial ruleset", |state| allows(state, C, A, 80))
        .await;

    server.apply(&guard_a(10, "Deny"));
    agent
        .wait_until("y/c denied into x/a only", |state| {
            !allows(state, C, A, 80) && allows(state, C, B, 80) && allows(state, B, A, 80)
        })
        .await;

    // A higher-precedence Accept (lower number) wins; swapping the
    // priorities puts the Deny first again.
    server.apply(&open_from_y(5));
    agent
        .wait_until("the Accept at priority 5 goes first", |state| {
            allows(state, C, A, 80)
        })
        .await;
    server.apply(&open_from_y(20));
    agent
        .wait_until("priorities swapped: the Deny goes first", |state| {
            !allows(state, C, A, 80)
        })
        .await;

    // Deny → Pass: the rest of the Admin tier (the Accept) is skipped and
    // the Baseline tier decides, as no NetworkPolicy isolates x/a.
    server.apply(&baseline_deny_all());
    server.apply(&guard_a(10, "Pass"));
    agent
        .wait_until(
            "passed to Baseline: denied; x/b allowed by the Accept",
            |state| !allows(state, C, A, 80) && allows(state, C, B, 80) && !allows(state, A, B, 80),
        )
        .await;

    // A rule inserted before the Pass: Accept on port 81 from y.
    server.apply(&cnp(
        "guard-a",
        &json!({
            "tier": "Admin", "priority": 10,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}},
            "ingress": [
                {"name": "web", "action": "Accept", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}],
                 "protocols": [{"tcp": {"destinationPort": {"number": 81}}}]},
                {"name": "from-y", "action": "Pass", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}
            ]
        }),
    ));
    agent
        .wait_until(
            "81 accepted before the Pass, 80 still passed and denied",
            |state| allows(state, C, A, 81) && !allows(state, C, A, 80),
        )
        .await;

    for name in ["guard-a", "open-from-y", "baseline-deny-all"] {
        server.delete(Kind::ClusterNetworkPolicy, "", name);
    }
    let state = agent
        .wait_until("every ClusterNetworkPolicy deleted", |state| {
            allows(state, C, A, 80) && allows(state, A, B, 80)
        })
        .await;
    assert!(
        !state.chains.keys().any(|name| name.starts_with("cnp-")),
        "leftover ClusterNetworkPolicy chains: {:?}",
        state.chains.keys().collect::<Vec<_>>()
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_crd_is_waited_for_without_blocking_enforcement() {
    let server = cluster(false).await;
    server.apply(&support::policy(
        "x",
        "deny-all",
        &json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    let mut agent = RunningAgent::start(server.client(), SharedDataplane::default());
    agent
        .wait_until("NetworkPolicy enforced without the CRD", |state| {
            !allows(state, C, A, 80) && allows(state, A, C, 80)
        })
        .await;
    assert_eq!(
        server
            .requests()
            .borrow()
            .watches_of(Kind::ClusterNetworkPolicy),
        0,
        "no watch on a resource the server does not serve"
    );

    server.install_cluster_policy_crd(true);
    server.apply(&cnp(
        "deny-x-to-y",
        &json!({
            "tier": "Admin", "priority": 0,
            "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "egress": [{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]
        }),
    ));
    wait_requests(
        &server,
        "the watch started once the CRD appeared",
        |requests| requests.watches_of(Kind::ClusterNetworkPolicy) >= 1,
    )
    .await;
    agent
        .wait_until(
            "the ClusterNetworkPolicy enforced without a restart",
            |state| !allows(state, A, C, 80) && !allows(state, C, A, 80),
        )
        .await;
    agent.stop().await.expect("clean stop");
}
