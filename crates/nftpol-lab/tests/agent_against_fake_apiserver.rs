//! The real agent loop — `Agent::run`, what `nftpol agent` runs — against
//! the fake API server (a test double) in a one-node lab, checked after
//! every API change by the table in the node's kernel and by real TCP
//! connections between lab pods (issue #5).
//!
//! Where things live: the fake API server, the agent's Kubernetes client
//! and its watches run on a runtime whose threads stay in the test's own
//! network namespace and talk over 127.0.0.1. Only the agent's netlink
//! socket, and a second one that reads the table back, are opened by a
//! thread inside the node's namespace; a socket stays bound to the
//! namespace it was made in. Pods, their servers and the probes are the
//! lab's (`Topology::build`, `probe::start_servers`, `probe::probe_all`);
//! `nftpol_lab::run` is not used, since it runs one-shot reconciles.
//!
//! Each step changes the API, then waits until the table read back from the
//! node's kernel gives the expected verdict for every pod pair (re-checked
//! after each reconcile the agent publishes, never after a fixed sleep;
//! every step changes at least one verdict, so a step cannot pass on the
//! previous step's table), then probes every pair for real.
//!
//! Alone in its test binary, so every lab namespace named after this
//! process belongs to this test. Needs root.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nftpol_agent::http::Health;
use nftpol_agent::metrics::Metrics;
use nftpol_agent::{Agent, AgentConfig, Dataplane, Progress};
use nftpol_fakeapi::{FakeApiServer, Kind};
use nftpol_ir::interpret::{interpret, Packet};
use nftpol_ir::{Hook, Ruleset};
use nftpol_lab::netns::{self, RunId};
use nftpol_lab::plan::{self, Plan};
use nftpol_lab::probe::{self, Timeouts};
use nftpol_lab::topology::Topology;
use nftpol_model::Cluster;
use nftpol_netlink::KernelDataplane;
use nftpol_testkit::netns::Sweep;
use serde_json::json;
use tokio::sync::{oneshot, watch};

/// The lab's only node, as the agent is told.
const NODE: &str = "node-1";
/// The namespace of every pod.
const NAMESPACE: &str = "shop";
/// The TCP port every pod serves.
const PORT: u16 = 80;
/// The policy the steps create, update and delete.
const POLICY: &str = "guard";
/// How long a step waits for the kernel before failing with context. Not a
/// timing assertion: it only stops a broken test from hanging.
const PATIENCE: Duration = Duration::from_mins(1);

/// Three pods on node-1, each serving 80/TCP; `shop` is open to the policy's
/// namespace selector until step 5 relabels it.
const SCENARIO: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {access: open}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {role: client}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {role: server}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {role: other}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}]
";

/// Directed pod pairs (short names) that must not connect; every other
/// pair, and every pod to itself, must.
type Blocked<'a> = &'a [(&'a str, &'a str)];

fn is_expected_to_connect(blocked: Blocked<'_>, from: &str, to: &str) -> bool {
    from == to || !blocked.contains(&(from, to))
}

fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The scenario's objects as the API would hold them, and the lab plan.
fn place() -> (Cluster, Plan) {
    let parsed = nftpol_model::manifests::parse(SCENARIO).expect("the scenario parses");
    let mut cluster = parsed.cluster;
    let plan = plan::place(&mut cluster, Some(1)).expect("the scenario places");
    (cluster, plan)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The agent's dataplane (feature-checked, as `nftpol agent` opens it) and
/// a checker, both on netlink sockets made inside the node's namespace.
fn open_in_node(topology: &Topology) -> (KernelDataplane, KernelDataplane) {
    topology
        .node(1)
        .run(|| {
            let open = || {
                KernelDataplane::open()
                    .unwrap_or_else(|error| panic!("netlink socket in the node namespace: {error}"))
            };
            let mut dataplane = open();
            dataplane
                .probe_features()
                .unwrap_or_else(|error| panic!("kernel feature check: {error}"));
            (dataplane, open())
        })
        .expect("a thread inside the node namespace")
}

fn policy(spec: &serde_json::Value) -> NetworkPolicy {
    nftpol_testkit::fixtures::policy(NAMESPACE, POLICY)
        .spec(spec)
        .build()
}

fn pod_named(cluster: &Cluster, name: &str) -> Pod {
    cluster
        .pods
        .iter()
        .find(|pod| pod.metadata.name.as_deref() == Some(name))
        .cloned()
        .expect("a scenario pod")
}

fn namespace_named(cluster: &Cluster, name: &str) -> Namespace {
    cluster
        .namespaces
        .iter()
        .find(|namespace| namespace.metadata.name.as_deref() == Some(name))
        .cloned()
        .expect("a scenario namespace")
}

/// Sets one label, keeping the others.
fn set_label(metadata: &mut ObjectMeta, key: &str, value: &str) {
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
}

/// What each step checks, and with what.
struct Checks<'a> {
    rt: &'a tokio::runtime::Runtime,
    plan: &'a Plan,
    topology: &'a Topology,
    /// Reads the table back from the node's kernel.
    checker: KernelDataplane,
    progress: watch::Receiver<Progress>,
    /// Each pod's IPv4 address, by short name.
    addresses: BTreeMap<String, IpAddr>,
}

impl Checks<'_> {
    /// Verdicts of the node's table for a new TCP connection on [`PORT`]
    /// between every two distinct pods, or why there are none yet.
    fn kernel_verdicts(&mut self) -> Result<Vec<(String, String, bool)>, String> {
        let ruleset: Ruleset = self
            .checker
            .read()
            .map_err(|error| format!("reading table inet nftpol back: {error}"))?
            .ok_or_else(|| "no table inet nftpol yet".to_owned())?;
        let mut verdicts = Vec::new();
        for (from, source) in &self.addresses {
            for (to, destination) in &self.addresses {
                if from == to {
                    continue;
                }
                let packet = Packet::opening(Hook::Forward, *source, *destination, 6, PORT);
                let trace = interpret(&ruleset, &packet)
                    .map_err(|error| format!("interpreting the table read back: {error}"))?;
                verdicts.push((from.clone(), to.clone(), trace.accepted));
            }
        }
        Ok(verdicts)
    }

    /// Waits, reconcile by reconcile, until the kernel's table gives the
    /// expected verdicts.
    fn wait_for_kernel(&mut self, what: &str, blocked: Blocked<'_>) {
        let rt = self.rt;
        let deadline = std::time::Instant::now() + PATIENCE;
        rt.block_on(async {
            loop {
                // Reconciles published from here on wake the wait below.
                self.progress.mark_unchanged();
                let last = match self.kernel_verdicts() {
                    Ok(verdicts) => {
                        let wrong: Vec<_> = verdicts
                            .iter()
                            .filter(|(from, to, accepted)| {
                                *accepted != is_expected_to_connect(blocked, from, to)
                            })
                            .collect();
                        if wrong.is_empty() {
                            return;
                        }
                        format!("pairs with the wrong verdict: {wrong:?}")
                    }
                    Err(why) => why,
                };
                let waited = tokio::time::timeout_at(deadline.into(), self.progress.changed()).await;
                match waited {
                    Ok(Ok(())) => {}
                    Ok(Err(closed)) => {
                        panic!("{what}: the agent stopped ({closed}); last check: {last}")
                    }
                    Err(elapsed) => panic!(
                        "{what}: the kernel never got there ({elapsed}); last check: {last}; agent progress: {:?}",
                        *self.progress.borrow()
                    ),
                }
            }
        });
    }

    /// Probes every pod pair (and the node to each pod) for real.
    fn probe(&self, what: &str, blocked: Blocked<'_>) {
        let (probes, node_probes) = probe::probe_all(
            self.plan,
            self.topology,
            self.rt,
            &probe::pod_addresses(self.plan),
            Timeouts::default(),
        )
        .expect("the probes run");
        assert_eq!(probes.len(), 9, "{what}: 3 × 3 pod pairs on 80/TCP");
        let wrong: Vec<_> = probes
            .iter()
            .filter(|probe| {
                probe.skipped
                    || probe.connected
                        != is_expected_to_connect(blocked, short(&probe.from), short(&probe.to))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: real connections disagree with the expectation (blocked: {blocked:?}): {wrong:#?}"
        );
        // A node always reaches its pods (kubelet probes), isolated or not.
        assert_eq!(node_probes.len(), 3, "{what}: node-1 → each pod");
        assert!(
            node_probes.iter().all(|probe| probe.connected),
            "{what}: node → pod blocked: {node_probes:#?}"
        );
    }

    /// One step's checks: the kernel's table first, then real connections.
    fn expect(&mut self, what: &str, blocked: Blocked<'_>) {
        self.wait_for_kernel(what, blocked);
        self.probe(what, blocked);
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario read top to bottom as its steps"
)]
fn agent_follows_the_fake_api_in_a_lab_node_and_pods_connect_as_policies_say() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and programs nftables: run it as root"
    );
    let guard = Sweep::new(format!("{}{}-", netns::PREFIX, std::process::id()));
    let rt = runtime();
    let (cluster, plan) = place();
    let topology = Topology::build(&plan, &RunId::new(), &rt).expect("the lab builds");
    let servers = probe::start_servers(&plan, &topology, &rt).expect("probe servers start");
    let (dataplane, checker) = open_in_node(&topology);

    let mut api = rt.block_on(FakeApiServer::start());
    api.apply_all(&cluster.namespaces);
    api.apply_all(&cluster.nodes);
    api.apply_all(&cluster.pods);
    // Built on the runtime, whose threads stay in this namespace: the
    // client's connections reach the server on this namespace's loopback.
    let client = {
        let _entered = rt.enter();
        api.client()
    };
    let health = Health::default();
    let agent = Agent::new(
        AgentConfig::new(NODE),
        dataplane,
        Arc::new(Metrics::new()),
        health.clone(),
    );
    let progress = agent.progress();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(agent.run(client, async move {
        // A dropped sender (a failed test) stops the agent too.
        let _ = stopped.await;
    }));

    let addresses = plan
        .pods
        .iter()
        .map(|pod| {
            let address = pod
                .addresses
                .iter()
                .copied()
                .find(IpAddr::is_ipv4)
                .expect("lab pods have an IPv4 address");
            (short(&pod.id).to_owned(), address)
        })
        .collect();
    let mut checks = Checks {
        rt: &rt,
        plan: &plan,
        topology: &topology,
        checker,
        progress,
        addresses,
    };

    // 1. No policy: everything connects.
    checks.expect("1. no policy", &[]);
    // The table can be read back before the loop records the commit.
    rt.block_on(async {
        tokio::time::timeout(
            PATIENCE,
            checks.progress.wait_for(|progress| progress.commits >= 1),
        )
        .await
        .expect("the agent records its first commit")
        .map(|_| ())
        .expect("the agent is running");
    });
    assert!(health.is_ready(), "ready after the first commit");

    // 2. Default-deny ingress for every pod of the namespace.
    let everyone_blocked: Blocked<'_> = &[
        ("client", "server"),
        ("client", "other"),
        ("server", "client"),
        ("server", "other"),
        ("other", "client"),
        ("other", "server"),
    ];
    api.apply(&policy(
        &json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
    ));
    checks.expect("2. default-deny ingress", everyone_blocked);

    // 3. Updated: allow from role=client pods in namespaces open to it.
    api.apply(&policy(&json!({
        "podSelector": {},
        "ingress": [{ "from": [{
            "namespaceSelector": { "matchLabels": { "access": "open" } },
            "podSelector": { "matchLabels": { "role": "client" } }
        }] }]
    })));
    let only_client_connects: Blocked<'_> = &[
        ("server", "client"),
        ("server", "other"),
        ("other", "client"),
        ("other", "server"),
    ];
    checks.expect("3. allow from role=client", only_client_connects);

    // 4. Pod relabel: `other` becomes a client.
    let mut other = pod_named(&cluster, "other");
    set_label(&mut other.metadata, "role", "client");
    api.apply(&other);
    checks.expect(
        "4. other relabelled role=client",
        &[("server", "client"), ("server", "other")],
    );

    // 5. Namespace relabel: `shop` is no longer open to the policy's peers.
    let mut shop = namespace_named(&cluster, NAMESPACE);
    set_label(&mut shop.metadata, "access", "closed");
    api.apply(&shop);
    checks.expect("5. namespace relabelled access=closed", everyone_blocked);

    // 6. Policy deleted: everything connects again.
    api.delete(Kind::NetworkPolicy, NAMESPACE, POLICY);
    checks.expect("6. policy deleted", &[]);

    // 7. Pod deleted (its namespace and address stay): an address in the
    //    node's pod CIDR that no known pod owns is dropped both ways.
    api.delete(Kind::Pod, NAMESPACE, "other");
    checks.expect(
        "7. pod other deleted",
        &[
            ("client", "other"),
            ("server", "other"),
            ("other", "client"),
            ("other", "server"),
        ],
    );

    // 8. Pod created again: everything connects.
    api.apply(&pod_named(&cluster, "other"));
    checks.expect("8. pod other created again", &[]);

    // Teardown: agent (as on SIGTERM), servers, lab, API server.
    stop.send(()).expect("the agent is still running");
    rt.block_on(task)
        .expect("the agent task joins")
        .expect("the agent stops cleanly");
    let Checks { mut checker, .. } = checks;
    assert!(
        checker.read().expect("reading the table back").is_some(),
        "stopping the agent leaves the ruleset in place"
    );
    drop(checker);
    drop(servers);
    topology.teardown().expect("the lab tears down");
    rt.block_on(api.stop());
    assert_eq!(
        guard.present(),
        Vec::<String>::new(),
        "every namespace of the lab is removed"
    );
}
