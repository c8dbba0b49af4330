//! The real agent loop against the fake API server (a test double, see
//! `support/apiserver.rs`) and the fake dataplane: the list/watch protocol,
//! its failures, and the enforcement that results.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use nftpol_agent::{AgentConfig, Sync};
use nftpol_ir::Ruleset;
use nftpol_model::{Direction, PolicyId};
use nftpol_ruleset::catalogue::{ChainName, Family, SetName};
use serde_json::json;
use support::apiserver::{FakeApiServer, Kind};
use support::{
    allows, namespace, node, pod, policy, wait_requests, RunningAgent, SharedDataplane, NODE,
    POD_CIDR,
};

const A: &str = "10.244.0.10";
const B: &str = "10.244.0.11";
const C: &str = "10.244.0.12";
const D: &str = "10.244.0.13";
/// A pod on node-2.
const REMOTE: &str = "10.245.0.20";

/// Namespaces x and y, node-1, pods x/a, x/b, y/c on node-1.
async fn cluster() -> FakeApiServer {
    let server = FakeApiServer::start().await;
    server.apply(&node(NODE, POD_CIDR));
    server.apply(&node("node-2", "10.245.0.0/16"));
    server.apply(&namespace("x", &[("ns", "x")]));
    server.apply(&namespace("y", &[("ns", "y")]));
    server.apply(&pod("x", "a", NODE, A, &[("pod", "a")]));
    server.apply(&pod("x", "b", NODE, B, &[("pod", "b")]));
    server.apply(&pod("y", "c", NODE, C, &[("pod", "c")]));
    server
}

fn allow_from_b(port: u16) -> serde_json::Value {
    json!({
        "podSelector": { "matchLabels": { "pod": "a" } },
        "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "pod": "b" } } }], "ports": [{ "port": port }] }]
    })
}

fn local_pod_ips(ruleset: &Ruleset) -> usize {
    ruleset
        .sets
        .get(&SetName::LocalPodIps(Family::V4).name())
        .map_or(0, |set| set.elements.len())
}

async fn started() -> (FakeApiServer, RunningAgent) {
    let server = cluster().await;
    let mut agent = RunningAgent::start(server.client(), SharedDataplane::default());
    agent
        .wait_until("the initial ruleset", |state| local_pod_ips(state) == 3)
        .await;
    (server, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_create_and_delete_change_enforcement() {
    let (server, mut agent) = started().await;
    assert!(agent.health.is_ready());
    let page = agent.metrics.encode();
    assert!(
        page.contains("nftpol_watched_objects{kind=\"pod\"} 3"),
        "{page}"
    );
    assert!(
        page.contains("nftpol_watched_objects{kind=\"node\"} 2"),
        "every node is watched (ClusterNetworkPolicy nodes peers):\n{page}"
    );

    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    agent
        .wait_until("x/a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;

    server.apply(&pod("x", "d", NODE, D, &[("pod", "b")]));
    agent
        .wait_until("new pod d (pod=b) allowed to a", |state| {
            allows(state, D, A, 80)
        })
        .await;

    server.delete(Kind::Pod, "x", "d");
    let state = agent
        .wait_until("deleted pod's address dropped", |state| {
            !allows(state, D, A, 80) && local_pod_ips(state) == 3
        })
        .await;
    assert!(allows(&state, B, A, 80));
    let page = agent.metrics.encode();
    assert!(
        page.contains(
            "nftpol_policy_allowed_packets_total{namespace=\"x\",policy=\"allow-b\",direction=\"ingress\"} 0"
        ),
        "a committed policy has its series from the start:\n{page}"
    );
    agent.stop().await.expect("clean stop");
}

/// Positions of the counter rules of `chain` in `state`.
fn counter_rules(state: &Ruleset, chain: &str) -> Vec<usize> {
    let chain = state
        .chains
        .get(chain)
        .unwrap_or_else(|| panic!("chain {chain} in the committed table"));
    (0..chain.rules.len())
        .filter(|position| chain.rules[*position].counter)
        .collect()
}

/// Waits for two more counter reads: the second started after the call.
async fn fresh_counters(agent: &mut RunningAgent) -> String {
    let reads = agent.progress().counter_reads;
    agent
        .wait_progress("two more counter reads", |progress| {
            progress.counter_reads >= reads + 2
        })
        .await;
    agent.metrics.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_traffic_follows_rule_counters_and_vanishes_with_the_policy() {
    let server = cluster().await;
    let mut config = AgentConfig::new(NODE);
    config.counter_interval = Duration::from_millis(10);
    let mut agent = RunningAgent::start_with(server.client(), SharedDataplane::default(), config);
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    let state = agent
        .wait_until("x/a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;
    let id = PolicyId {
        namespace: "x".to_owned(),
        name: "allow-b".to_owned(),
    };
    let policy_chain = ChainName::Policy {
        policy: id.clone(),
        direction: Direction::Ingress,
    }
    .name();
    let group_chain = ChainName::Group {
        direction: Direction::Ingress,
        policies: vec![id],
    }
    .name();
    let allow_rules = counter_rules(&state, &policy_chain);
    let deny_rules = counter_rules(&state, &group_chain);
    assert_eq!(deny_rules.len(), 1, "one deny rule per group");
    let dataplane = agent.dataplane.clone();
    let set_counters = |allowed: u64, denied: u64| {
        let mut fake = dataplane.lock();
        for position in &allow_rules {
            assert!(fake.set_counter(&policy_chain, *position, allowed, allowed * 100));
        }
        assert!(fake.set_counter(&group_chain, deny_rules[0], denied, denied * 100));
    };
    let allowed_total = |allowed: u64| allowed * allow_rules.len() as u64;
    let series = "{namespace=\"x\",policy=\"allow-b\",direction=\"ingress\"}";

    set_counters(7, 3);
    let page = fresh_counters(&mut agent).await;
    for line in [
        format!(
            "nftpol_policy_allowed_packets_total{series} {}",
            allowed_total(7)
        ),
        format!(
            "nftpol_policy_allowed_bytes_total{series} {}",
            allowed_total(700)
        ),
        format!("nftpol_policy_denied_packets_total{series} 3"),
        format!("nftpol_policy_denied_bytes_total{series} 300"),
        "nftpol_denied_packets_total{direction=\"ingress\",reason=\"isolated\"} 3".to_owned(),
        "nftpol_denied_bytes_total{direction=\"ingress\",reason=\"isolated\"} 300".to_owned(),
    ] {
        assert!(
            page.contains(&format!("{line}\n")),
            "{line} missing from:\n{page}"
        );
    }

    // Kernel counters grow; the exported totals add only the difference.
    set_counters(10, 5);
    let page = fresh_counters(&mut agent).await;
    for line in [
        format!(
            "nftpol_policy_allowed_packets_total{series} {}",
            allowed_total(10)
        ),
        format!("nftpol_policy_denied_packets_total{series} 5"),
    ] {
        assert!(
            page.contains(&format!("{line}\n")),
            "{line} missing from:\n{page}"
        );
    }

    server.delete(Kind::NetworkPolicy, "x", "allow-b");
    agent
        .wait_until("policy gone: c allowed again", |state| {
            allows(state, C, A, 80) && !state.chains.contains_key(&policy_chain)
        })
        .await;
    let page = fresh_counters(&mut agent).await;
    assert!(
        !page.contains("policy=\"allow-b\""),
        "a deleted policy's series disappear:\n{page}"
    );
    assert!(
        page.contains("nftpol_denied_packets_total{direction=\"ingress\",reason=\"isolated\"} 5\n"),
        "the per-direction total keeps what was denied:\n{page}"
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_namespace_relabels_are_enforced() {
    let (server, mut agent) = started().await;
    server.apply(&policy(
        "x",
        "from-blue",
        &json!({
            "podSelector": { "matchLabels": { "pod": "a" } },
            "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "team": "blue" } } }] }]
        }),
    ));
    agent
        .wait_until("a isolated", |state| {
            !allows(state, C, A, 80) && !allows(state, B, A, 80)
        })
        .await;

    server.apply(&namespace("y", &[("ns", "y"), ("team", "blue")]));
    agent
        .wait_until("namespace y relabelled blue: c allowed", |state| {
            allows(state, C, A, 80) && !allows(state, B, A, 80)
        })
        .await;

    server.apply(&pod("x", "a", NODE, A, &[("pod", "other")]));
    agent
        .wait_until("pod a relabelled: no longer isolated", |state| {
            allows(state, B, A, 80)
        })
        .await;
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_pod_changes_commit_as_element_changes() {
    let (server, mut agent) = started().await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    agent
        .wait_until("x/a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, REMOTE, A, 80)
        })
        .await;

    server.apply(&pod("x", "remote", "node-2", REMOTE, &[("pod", "b")]));
    agent
        .wait_until("remote pod=b allowed to a", |state| {
            allows(state, REMOTE, A, 80)
        })
        .await;
    let added = agent.progress().last.expect("a report");
    assert_eq!(added.sync, Sync::Pods, "{added:?}");
    assert_eq!((added.elements_added, added.elements_deleted), (1, 0));

    server.apply(&pod("x", "remote", "node-2", REMOTE, &[("pod", "other")]));
    agent
        .wait_until("relabelled remote pod no longer allowed", |state| {
            !allows(state, REMOTE, A, 80)
        })
        .await;
    let relabelled = agent.progress().last.expect("a report");
    assert_eq!(relabelled.sync, Sync::Pods, "{relabelled:?}");
    assert_eq!(relabelled.elements_deleted, 1);
    // The duration histogram is labelled by the path the reconcile took,
    // known only after it: the two element-path commits count as `pods`.
    let page = agent.metrics.encode();
    let pods_syncs: u64 = page
        .lines()
        .find_map(|line| {
            line.strip_prefix("nftpol_reconcile_duration_seconds_count{sync=\"pods\"} ")
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no pods-labelled reconcile duration in:\n{page}"));
    assert!(pods_syncs >= 2, "{page}");

    server.apply(&pod("x", "d", NODE, D, &[("pod", "b")]));
    agent
        .wait_until("local pod d allowed to a", |state| allows(state, D, A, 80))
        .await;
    let local = agent.progress().last.expect("a report");
    assert!(
        local.sync != Sync::Pods,
        "a local pod takes the full path: {local:?}"
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_create_update_and_delete_are_enforced() {
    let (server, mut agent) = started().await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    agent
        .wait_until("port 80 only", |state| {
            allows(state, B, A, 80) && !allows(state, B, A, 81)
        })
        .await;
    server.apply(&policy("x", "allow-b", &allow_from_b(81)));
    agent
        .wait_until("updated to port 81", |state| {
            allows(state, B, A, 81) && !allows(state, B, A, 80)
        })
        .await;
    let updated = agent.progress().last.expect("a report");
    assert_eq!(
        updated.sync,
        Sync::Policy,
        "one policy's change: {updated:?}"
    );
    server.delete(Kind::NetworkPolicy, "x", "allow-b");
    let state = agent
        .wait_until("deleted: a unisolated", |state| {
            allows(state, B, A, 80) && allows(state, C, A, 81)
        })
        .await;
    let deleted = agent.progress().last.expect("a report");
    assert_eq!(
        deleted.sync,
        Sync::Policy,
        "one policy's change: {deleted:?}"
    );
    let page = agent.metrics.encode();
    assert!(
        page.contains("nftpol_reconcile_duration_seconds_count{sync=\"policy\"}"),
        "{page}"
    );
    assert!(
        !state.chains.keys().any(|name| name.contains("allow-b")),
        "leftover chains"
    );
    assert!(
        !agent.metrics.encode().contains("policy=\"allow-b\""),
        "per-policy series removed"
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_pod_gives_its_address_to_a_new_pod() {
    let (server, mut agent) = started().await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    agent
        .wait_until("a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;

    let mut finished: Pod = pod("x", "b", NODE, B, &[("pod", "b")]);
    finished.status.as_mut().expect("status").phase = Some("Succeeded".into());
    server.apply(&finished);
    server.apply(&pod("x", "e", NODE, B, &[("pod", "e")]));
    let state = agent
        .wait_until("B now belongs to e, which may not reach a", |state| {
            !allows(state, B, A, 80)
        })
        .await;
    assert_eq!(
        local_pod_ips(&state),
        3,
        "a, c and e; the terminal b does not count"
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_keeps_the_ruleset_and_resumes() {
    let (mut server, mut agent) = started().await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    let before = agent
        .wait_until("a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;

    server.stop().await;
    let errors = agent.progress().watch_errors;
    agent
        .wait_progress("watches fail while the API server is down", |progress| {
            progress.watch_errors >= errors + 4
        })
        .await;
    assert_eq!(
        agent.dataplane.state().as_ref(),
        Some(&before),
        "the last committed ruleset stays in force"
    );
    assert!(agent.health.is_ready());

    // Changed while the agent could not see it.
    server.apply(&policy("x", "allow-b", &allow_from_b(81)));
    server.restart().await;
    agent
        .wait_until("the change made during the outage is enforced", |state| {
            allows(state, B, A, 81) && !allows(state, B, A, 80)
        })
        .await;
    assert!(agent
        .metrics
        .encode()
        .contains("nftpol_watch_errors_total{resource="));
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_relists_and_disconnect_rewatches() {
    let (server, mut agent) = started().await;
    let before = wait_requests(&server, "every kind listed and watched once", |requests| {
        Kind::ALL
            .iter()
            .all(|kind| requests.lists_of(*kind) == 1 && requests.watches_of(*kind) == 1)
    })
    .await;

    server.send_bookmarks();
    server.expire();
    let relisted = wait_requests(&server, "410 Gone relists every kind", |requests| {
        Kind::ALL.iter().all(|kind| requests.lists_of(*kind) == 2)
    })
    .await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    agent
        .wait_until("enforced after the relist", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;

    server.disconnect();
    wait_requests(&server, "a dropped watch re-watches", |requests| {
        requests.watches_of(Kind::Pod) > relisted.watches_of(Kind::Pod)
    })
    .await;
    server.apply(&pod("x", "d", NODE, D, &[("pod", "b")]));
    agent
        .wait_until("enforced after the re-watch", |state| {
            allows(state, D, A, 80)
        })
        .await;
    let after = *server.requests().borrow();
    assert_eq!(
        after.lists_of(Kind::Pod),
        2,
        "a disconnect re-watches without relisting"
    );
    assert!(after.lists_of(Kind::Pod) > before.lists_of(Kind::Pod));
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_reconcile_waits_for_every_initial_list() {
    let server = cluster().await;
    server.fail_lists(Kind::Node, true);
    let mut agent = RunningAgent::start(server.client(), SharedDataplane::default());
    wait_requests(
        &server,
        "three kinds listed, the node list failing twice",
        |requests| {
            [Kind::Pod, Kind::Namespace, Kind::NetworkPolicy]
                .iter()
                .all(|kind| requests.lists_of(*kind) >= 1)
                && requests.errors >= 2
        },
    )
    .await;
    assert_eq!(
        agent.progress().commits,
        0,
        "no enforcement from a partial view"
    );
    assert!(agent.dataplane.state().is_none());
    assert!(!agent.health.is_ready());

    server.fail_lists(Kind::Node, false);
    let state = agent
        .wait_until("enforcing once the node is listed", |state| {
            local_pod_ips(state) == 3
        })
        .await;
    assert!(
        state
            .sets
            .get(&SetName::LocalAddresses(Family::V4).name())
            .is_some_and(|set| set.elements.len() == 1
                && set
                    .elements
                    .iter()
                    .all(|range| range.start() != range.end())),
        "the node's pod CIDR, holding the three pods: one range"
    );
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_adopts_the_table_without_changes() {
    let (server, mut agent) = started().await;
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    let enforced = agent
        .wait_until("a isolated, b allowed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;
    let dataplane = agent.dataplane.clone();
    agent.stop().await.expect("clean stop");
    assert_eq!(
        dataplane.state().as_ref(),
        Some(&enforced),
        "stopping leaves the ruleset in place"
    );
    let batches = dataplane.lock().applied_count();

    let mut restarted = RunningAgent::start(server.client(), dataplane.clone());
    let progress = restarted
        .wait_progress("first reconcile after restart", |progress| {
            progress.commits >= 1
        })
        .await;
    let report = progress.last.expect("a report");
    assert_eq!(report.sync, Sync::Full);
    assert_eq!(report.changes, 0, "the table read back already matches");
    assert_eq!(dataplane.lock().applied_count(), batches, "no batch sent");
    restarted.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_keeps_the_old_state_and_retries() {
    let (server, mut agent) = started().await;
    let before = agent.dataplane.state().expect("committed");
    agent
        .dataplane
        .lock()
        .fail_next_apply(nix::errno::Errno::ENOBUFS);
    server.apply(&policy("x", "allow-b", &allow_from_b(80)));
    let failed = agent
        .wait_progress("a failed commit", |progress| progress.failures >= 1)
        .await;
    assert!(failed.failures >= 1);
    // The rejected batch changed nothing; the retry (a full sync) commits.
    assert!(agent.dataplane.lock().rejected_count() >= 1);
    let state = agent
        .wait_until("retried and committed", |state| {
            allows(state, B, A, 80) && !allows(state, C, A, 80)
        })
        .await;
    assert_ne!(state, before);
    let progress = agent.progress();
    assert!(
        progress.last.expect("a report").sync == Sync::Full,
        "a retry re-reads the kernel"
    );
    assert!(agent
        .metrics
        .encode()
        .contains("nftpol_reconcile_errors_total{kind="));
    agent.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_pod_events_is_coalesced() {
    let (server, mut agent) = started().await;
    let start = agent.progress();
    let started_at = Instant::now();
    for index in 0..1000_u32 {
        let ip = format!("10.244.{}.{}", 1 + index / 250, 1 + index % 250);
        server.apply(&pod(
            "x",
            &format!("burst-{index}"),
            NODE,
            &ip,
            &[("pod", "burst")],
        ));
    }
    agent
        .wait_until("all 1000 pods enforced", |state| {
            local_pod_ips(state) == 1003
        })
        .await;
    let elapsed = started_at.elapsed();
    let end = agent.progress();
    let reconciles = end.commits - start.commits;
    eprintln!(
        "burst: 1000 pod events -> {reconciles} reconciles ({} events taken) in {elapsed:?}",
        end.events - start.events
    );
    assert!(reconciles >= 1);
    assert!(reconciles < 100, "{reconciles} reconciles for 1000 events");
    agent.stop().await.expect("clean stop");
}
