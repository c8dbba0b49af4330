//! The real agent loop against the fake API server (a test double) and the
//! kernel dataplane, in a fresh network namespace. Needs root (or
//! CAP_SYS_ADMIN and CAP_NET_ADMIN).
//!
//! The namespace is the test kit's guard; a thread inside it opens the
//! netlink sockets there, and the guard removes it when the test ends, even
//! after a panic. The fake API server stays in the test's own namespace, on
//! 127.0.0.1: only the netlink sockets live in the new one.

mod support;

use std::sync::Arc;

use nftpol_agent::http::Health;
use nftpol_agent::metrics::Metrics;
use nftpol_agent::{Agent, AgentConfig, Dataplane};
use nftpol_ir::Ruleset;
use nftpol_netlink::KernelDataplane;
use nftpol_testkit::netns::Netns;
use serde_json::json;
use support::apiserver::FakeApiServer;
use support::{allows, namespace, node, pod, policy, NODE, POD_CIDR};

/// Two dataplanes on one fresh network namespace: the agent's, and one to
/// read the kernel's table independently. The guard removes the namespace's
/// name when the test ends; the namespace itself lives on until the last
/// socket in it closes.
fn fresh_namespace() -> (Netns, KernelDataplane, KernelDataplane) {
    let netns = Netns::new();
    let open = || {
        KernelDataplane::open()
            .unwrap_or_else(|error| panic!("netlink socket in the new namespace: {error}"))
    };
    let (dataplane, checker) = netns.run(|| (open(), open()));
    (netns, dataplane, checker)
}

fn read(checker: &mut KernelDataplane) -> Option<Ruleset> {
    checker.read().expect("reading table inet nftpol back")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_table_follows_the_api() {
    let (_netns, dataplane, mut checker) = fresh_namespace();
    let server = FakeApiServer::start().await;
    server.apply(&node(NODE, POD_CIDR));
    server.apply(&namespace("x", &[("ns", "x")]));
    server.apply(&pod("x", "a", NODE, "10.244.0.10", &[("pod", "a")]));
    server.apply(&pod("x", "b", NODE, "10.244.0.11", &[("pod", "b")]));
    server.apply(&pod("x", "c", NODE, "10.244.0.12", &[("pod", "c")]));

    let agent = Agent::new(
        AgentConfig::new(NODE),
        dataplane,
        Arc::new(Metrics::new()),
        Health::default(),
    );
    let mut progress = agent.progress();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(server.client(), async {
        // A dropped sender stops the agent too.
        let _ = stopped.await;
    }));
    progress
        .wait_for(|progress| progress.commits >= 1)
        .await
        .expect("agent running");
    let initial = read(&mut checker).expect("the agent created the table");
    assert!(
        allows(&initial, "10.244.0.12", "10.244.0.10", 80),
        "nothing isolated yet"
    );

    server.apply(&policy(
        "x",
        "allow-b",
        &json!({
            "podSelector": { "matchLabels": { "pod": "a" } },
            "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "pod": "b" } } }], "ports": [{ "port": 80 }] }]
        }),
    ));
    let enforced = async {
        loop {
            progress.changed().await.expect("agent running");
            let state = read(&mut checker).filter(|state| {
                allows(state, "10.244.0.11", "10.244.0.10", 80)
                    && !allows(state, "10.244.0.12", "10.244.0.10", 80)
            });
            if state.is_some() {
                break;
            }
        }
    };
    // Only stops a broken test from hanging; not a timing assertion.
    tokio::time::timeout(std::time::Duration::from_mins(1), enforced)
        .await
        .expect("the policy reaches the kernel");

    stop.send(()).expect("agent running");
    task.await.expect("agent task").expect("clean stop");
    assert!(
        read(&mut checker).is_some(),
        "stopping leaves the ruleset in the kernel"
    );
    checker.delete_table().expect("cleanup");
}
