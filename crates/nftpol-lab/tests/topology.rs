//! Kernel tests of the lab topology and probes (no enforcement): every
//! namespace is removed afterwards, even when an assertion panics.

use nftpol_lab::netns::{self, RunId};
use nftpol_lab::plan::{self, Plan};
use nftpol_lab::probe::{self, Timeouts};
use nftpol_lab::report::Family;
use nftpol_lab::topology::Topology;
use nftpol_lab::{service, Report};
use nftpol_testkit::netns::Sweep;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab topology tests create network namespaces: run them as root"
    );
}

fn place(yaml: &str, nodes: usize) -> Plan {
    let parsed = nftpol_model::manifests::parse(yaml).expect("the test scenario parses");
    let mut cluster = parsed.cluster;
    plan::place(&mut cluster, Some(nodes)).expect("the test scenario places")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Builds the lab, probes it and tears it down; returns the report and the
/// namespaces that existed while it ran.
fn build_and_probe(plan: &Plan, via_service: bool) -> (Report, Vec<String>) {
    let run = RunId::new();
    let guard = Sweep::new(run.netns_prefix());
    let rt = runtime();
    let topology = Topology::build(plan, &run, &rt).expect("the topology builds");
    let present = guard.present();
    let servers = probe::start_servers(plan, &topology, &rt).expect("servers start");
    let dial = if via_service {
        service::install(plan, &topology).expect("ClusterIP DNAT installs")
    } else {
        probe::pod_addresses(plan)
    };
    let (probes, node_probes) =
        probe::probe_all(plan, &topology, &rt, &dial, Timeouts::default()).expect("probes run");
    drop(servers);
    topology.teardown().expect("teardown");
    assert!(
        guard.present().is_empty(),
        "every namespace of the run is removed"
    );
    let report = Report {
        probes,
        node_probes,
        ..Report::default()
    };
    (report, present)
}

const THREE_PODS: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports:
    - {containerPort: 80}
    - {containerPort: 80, protocol: UDP}
status:
  podIPs: [{ip: 10.244.1.10}, {ip: 'fd00:10:244:1::10'}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x}
spec:
  nodeName: node-2
  containers:
  - name: s
    ports:
    - {containerPort: 81}
    - {containerPort: 81, protocol: UDP}
status:
  podIPs: [{ip: 10.244.2.10}, {ip: 'fd00:10:244:2::10'}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports:
    - {containerPort: 80}
status:
  podIP: 172.17.0.10
";

#[test]
fn two_nodes_three_pods_without_policy_all_connect_and_namespaces_are_removed() {
    require_root();
    let plan = place(THREE_PODS, 2);
    let (report, present) = build_and_probe(&plan, false);

    // fabric + 2 nodes + 3 pods
    assert_eq!(present.len(), 6, "namespaces while running: {present:?}");
    // a and b are dual-stack, c IPv4-only; a probe per port and family
    // both ends have: from a and from b 2 × 2 + 2 × 2 + 1, from c 2 + 2 + 1.
    assert_eq!(report.probes.len(), 23);
    let ipv6 = report
        .probes
        .iter()
        .filter(|p| p.family == Family::V6)
        .count();
    assert_eq!(ipv6, 8, "IPv6 between a and b only: {:#?}", report.probes);
    let blocked: Vec<_> = report.probes.iter().filter(|p| !p.connected).collect();
    assert!(
        blocked.is_empty(),
        "blocked without any policy: {blocked:#?}"
    );
    // node-1 → a (2 ports, 2 families) and c (1 port); node-2 → b (2 ports,
    // 2 families)
    assert_eq!(report.node_probes.len(), 9);
    assert!(
        report.node_probes.iter().all(|p| p.connected),
        "{:#?}",
        report.node_probes
    );
}

const HOST_NETWORK_AND_SERVICE: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}, {containerPort: 80, protocol: SCTP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x}
spec:
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: h, namespace: x}
spec:
  nodeName: node-2
  hostNetwork: true
  containers:
  - name: s
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: gone, namespace: x}
spec:
  nodeName: node-1
status:
  phase: Succeeded
  podIP: 10.244.1.10
";

#[test]
fn cluster_ips_and_host_network_pods_connect_without_policy() {
    require_root();
    let plan = place(HOST_NETWORK_AND_SERVICE, 2);
    assert_eq!(plan.pods.len(), 3, "the Succeeded pod is not instantiated");
    let (report, present) = build_and_probe(&plan, true);

    // fabric + 2 nodes + 2 pod namespaces (h lives in node-2's)
    assert_eq!(present.len(), 5, "namespaces while running: {present:?}");
    assert_eq!(report.probes.len(), 3 * (3 + 2 + 1));
    let sctp: Vec<_> = report
        .probes
        .iter()
        .filter(|p| p.protocol == "SCTP")
        .collect();
    assert!(sctp.iter().all(|p| p.skipped && !p.connected), "{sctp:#?}");
    let blocked: Vec<_> = report
        .probes
        .iter()
        .filter(|p| !p.connected && !p.skipped)
        .collect();
    assert!(
        blocked.is_empty(),
        "blocked through ClusterIPs without any policy: {blocked:#?}"
    );
    assert!(report.node_probes.iter().all(|p| p.connected || p.skipped));
}

#[test]
fn cleanup_removes_namespaces_of_dead_runs_and_spares_live_ones() {
    require_root();
    // pid_max is at most 2^22, so this "run" cannot be alive.
    let dead = "nftpol-lab-4294967-0000-n1";
    let live = RunId::new().netns_name("n1");
    let _guard_dead = Sweep::new(dead.to_owned());
    let _guard_live = Sweep::new(live.clone());
    netns::Netns::create(dead).expect("create a fake leftover");
    netns::Netns::create(&live).expect("create a namespace of this live run");

    let removed = nftpol_lab::cleanup().expect("cleanup");

    assert!(removed >= 1, "removed {removed}");
    assert_eq!(netns::list(dead).expect("list"), Vec::<String>::new());
    assert_eq!(netns::list(&live).expect("list"), vec![live.clone()]);
}
