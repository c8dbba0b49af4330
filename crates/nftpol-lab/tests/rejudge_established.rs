//! Live connections obey new policy (issue #14): real long-lived flows in
//! lab namespaces, a TCP connection and a UDP flow from pod `x/a` to pod
//! `x/b`, both sides sending a numbered record every millisecond, while the
//! node agents (`Reconciler` on the kernel dataplane, as `nftpol agent`
//! runs it with its default flags) commit new policy.
//!
//! "Cut" means: not one record sent after the last node acknowledged the
//! commit reaches the other side, in either direction (the reply direction
//! is judged in the connection's original sense). "Kept" means: every
//! record sent arrives, none lost. The time from the ack to the last record
//! delivered is printed, not asserted (timings belong in the benchmark).
//!
//! Each test's lab removes its namespaces when dropped, panic or not
//! (`Topology`). Needs root.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nftpol_agent::Reconciler;
use nftpol_lab::netns::{self, RunId};
use nftpol_lab::plan::{self, Plan};
use nftpol_lab::service;
use nftpol_lab::topology::Topology;
use nftpol_model::{Cluster, Snapshot};
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::CompileOptions;
use nftpol_ruleset::rejudge::{self, MarkBits, Rejudge};

/// The TCP port of the flow.
const TCP_PORT: u16 = 80;
/// The UDP port of the flow.
const UDP_PORT: u16 = 81;
/// One record: sequence number and the sender's clock (ns since `epoch`).
const RECORD: usize = 16;
/// Records each side sends per second, roughly.
const INTERVAL: Duration = Duration::from_millis(1);
/// Records each side must send after a commit before the verdict is read.
const AFTER_COMMIT: u64 = 300;
/// How long a wait lasts before the test fails with context. Not a timing
/// assertion: it only stops a broken test from hanging.
const PATIENCE: Duration = Duration::from_secs(20);

/// Pods a and b, the flow's ends, and c, which no flow involves; `{B_NODE}`
/// is replaced by the node b runs on.
const PODS: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  nodeName: node-1
  containers: [{name: s, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec:
  nodeName: {B_NODE}
  containers: [{name: s, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {pod: c}}
spec:
  nodeName: node-1
  containers: [{name: s, ports: [{containerPort: 80}]}]
";

const DENY_ALL: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
";

const DENY_INGRESS_TO_B: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress]}
";

const DENY_EGRESS_FROM_A: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-a, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}
";

/// b admits pods labelled `pod: a` only.
const B_ADMITS_A: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-admits-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]
";

/// b admits pods labelled `pod: p` on the UDP port only.
const B_ADMITS_P_ON_UDP: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-admits-p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: p}}}], ports: [{protocol: UDP, port: 81}]}]
";

/// Every pod of x may send and receive UDP 81, nothing else beside the
/// deny-all.
const ALLOW_UDP_81: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-udp-81, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{protocol: UDP, port: 81}]}]
  egress: [{ports: [{protocol: UDP, port: 81}]}]
";

/// b also admits pods labelled `pod: PEER` (the twenty commits alternate it).
const B_ADMITS_PEER: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-admits-more, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: PEER}}}]}]
";

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).expect("the test runs for less than 584 years")
}

/// A record one side received.
#[derive(Debug, Clone, Copy)]
struct Received {
    seq: u64,
    sent_ns: u64,
    arrived_ns: u64,
}

/// One end of a flow: what it sent and what it received.
#[derive(Default)]
struct End {
    sent: AtomicU64,
    received: Mutex<Vec<Received>>,
}

impl End {
    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("no receiver panicked").clone()
    }

    fn record(&self, bytes: &[u8]) {
        let (seq, sent) = bytes.split_at(8);
        let word = |part: &[u8]| u64::from_be_bytes(part.try_into().expect("8 bytes"));
        self.received
            .lock()
            .expect("no receiver panicked")
            .push(Received {
                seq: word(seq),
                sent_ns: word(sent),
                arrived_ns: now_ns(),
            });
    }
}

fn encode(seq: u64) -> [u8; RECORD] {
    let mut bytes = [0; RECORD];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    bytes[8..].copy_from_slice(&now_ns().to_be_bytes());
    bytes
}

/// A flow in both directions; `client` is a's end, `server` b's.
struct Flow {
    name: &'static str,
    client: Arc<End>,
    server: Arc<End>,
    sending: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    senders: Vec<JoinHandle<()>>,
    receivers: Vec<JoinHandle<()>>,
}

impl Flow {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            client: Arc::default(),
            server: Arc::default(),
            sending: Arc::new(AtomicBool::new(true)),
            running: Arc::new(AtomicBool::new(true)),
            senders: Vec::new(),
            receivers: Vec::new(),
        }
    }

    /// Sends a record every [`INTERVAL`] until told to stop; a failed send
    /// (a rejected or full socket) is counted as sent, as the record left.
    fn spawn_sender(&mut self, end: &Arc<End>, mut send: impl FnMut(&[u8]) + Send + 'static) {
        let (end, sending) = (Arc::clone(end), Arc::clone(&self.sending));
        self.senders.push(thread::spawn(move || {
            let mut seq = 0;
            while sending.load(Ordering::Relaxed) {
                send(&encode(seq));
                seq += 1;
                end.sent.store(seq, Ordering::Relaxed);
                thread::sleep(INTERVAL);
            }
        }));
    }

    /// Receives records (`receive` returns bytes read, 0 on timeout or error).
    fn spawn_receiver(
        &mut self,
        end: &Arc<End>,
        mut receive: impl FnMut(&mut [u8]) -> usize + Send + 'static,
    ) {
        let (end, running) = (Arc::clone(end), Arc::clone(&self.running));
        self.receivers.push(thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buffer = [0; 4096];
            while running.load(Ordering::Relaxed) {
                let read = receive(&mut buffer);
                pending.extend_from_slice(&buffer[..read]);
                while pending.len() >= RECORD {
                    end.record(&pending[..RECORD]);
                    pending.drain(..RECORD);
                }
            }
        }));
    }

    /// Waits until `done` holds, failing with `what` after [`PATIENCE`].
    fn wait_for(&self, what: &str, done: impl Fn(&Flow) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what} (client sent {}, received {}; server sent {}, received {})",
                self.name,
                self.client.sent.load(Ordering::Relaxed),
                self.client.received().len(),
                self.server.sent.load(Ordering::Relaxed),
                self.server.received().len(),
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_flowing(&self) {
        let before = (self.client.received().len(), self.server.received().len());
        self.wait_for("records in both directions", |flow| {
            flow.client.received().len() >= before.0 + 20
                && flow.server.received().len() >= before.1 + 20
        });
    }

    /// Waits until both ends sent [`AFTER_COMMIT`] more records.
    fn wait_sent_after(&self) {
        let sent = |end: &End| end.sent.load(Ordering::Relaxed);
        let (client, server) = (sent(&self.client), sent(&self.server));
        self.wait_for("records sent after the commit", |flow| {
            sent(&flow.client) >= client + AFTER_COMMIT
                && sent(&flow.server) >= server + AFTER_COMMIT
        });
    }

    /// Asserts that nothing sent after `ack_ns` was delivered, either way,
    /// and prints the ack → last delivery time.
    fn assert_cut_at(&self, ack_ns: u64, case: &str) {
        for (direction, end) in [("a → b", &self.server), ("b → a", &self.client)] {
            let received = end.received();
            let late: Vec<&Received> = received.iter().filter(|r| r.sent_ns > ack_ns).collect();
            assert!(
                late.is_empty(),
                "{case}, {} {direction}: {} records sent after the commit ack were delivered (first: {:?})",
                self.name,
                late.len(),
                late.first()
            );
            let last = received.iter().map(|r| r.arrived_ns).max().unwrap_or(0);
            eprintln!(
                "{case}, {} {direction}: last record delivered {:+.3} ms after the commit ack",
                self.name,
                (f64::from(u32::try_from(last.abs_diff(ack_ns) / 1000).unwrap_or(u32::MAX))
                    / 1000.0)
                    * if last >= ack_ns { 1.0 } else { -1.0 }
            );
        }
    }

    /// Stops sending, waits for what is in flight, and asserts that every
    /// record sent arrived, in both directions.
    fn assert_nothing_lost(&mut self, case: &str) {
        self.sending.store(false, Ordering::Relaxed);
        for sender in self.senders.drain(..) {
            sender.join().expect("senders do not panic");
        }
        let complete = |end: &End, peer: &End| {
            end.received().len() as u64 >= peer.sent.load(Ordering::Relaxed)
        };
        self.wait_for("every record sent to arrive", |flow| {
            complete(&flow.server, &flow.client) && complete(&flow.client, &flow.server)
        });
        for (direction, end) in [("a → b", &self.server), ("b → a", &self.client)] {
            let mut seqs: Vec<u64> = end.received().iter().map(|r| r.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            let expected: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(
                seqs, expected,
                "{case}, {} {direction}: records lost",
                self.name
            );
        }
    }

    fn stop(mut self) {
        self.sending.store(false, Ordering::Relaxed);
        self.running.store(false, Ordering::Relaxed);
        for thread in self.senders.drain(..).chain(self.receivers.drain(..)) {
            thread.join().expect("flow threads do not panic");
        }
    }
}

/// A lab cluster: its namespaces, one reconciler per node, the objects.
struct Lab {
    plan: Plan,
    topology: Topology,
    cluster: Cluster,
    reconcilers: Vec<Reconciler<KernelDataplane>>,
    /// Where a dials b: b's address, or its ClusterIP with `--via-service`.
    b_target: IpAddr,
}

impl Lab {
    fn new(nodes: usize, via_service: bool) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and programs nftables: run it as root"
        );
        let text = PODS.replace("{B_NODE}", &format!("node-{nodes}"));
        let mut cluster = nftpol_model::manifests::parse(&text)
            .expect("the pods parse")
            .cluster;
        let plan = plan::place(&mut cluster, Some(nodes)).expect("the pods place");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let topology = Topology::build(&plan, &RunId::new(), &rt).expect("the lab builds");
        let b = plan.pods.iter().find(|pod| pod.id == "x/b").expect("pod b");
        let b_target = if via_service {
            let ips = service::install(&plan, &topology).expect("ClusterIP DNAT installs");
            ips["x/b"][0]
        } else {
            b.addresses[0]
        };
        let options = CompileOptions {
            rejudge: Some(Rejudge::default()),
            ..CompileOptions::default()
        };
        let reconcilers = plan
            .nodes
            .iter()
            .map(|node| {
                let dataplane = topology
                    .node(node.index)
                    .run(|| {
                        let mut dataplane = KernelDataplane::open().expect("netlink socket");
                        dataplane.probe_features().expect("kernel features");
                        dataplane
                    })
                    .expect("a thread in the node namespace");
                Reconciler::new(dataplane, node.name.clone(), options)
            })
            .collect();
        Self {
            plan,
            topology,
            cluster,
            reconcilers,
            b_target,
        }
    }

    /// The pods plus `policies` (YAML), as the API would hold them.
    fn with(&self, policies: &[&str]) -> Cluster {
        let mut cluster = self.cluster.clone();
        for text in policies {
            cluster.policies.extend(
                nftpol_model::manifests::parse(text)
                    .expect("the policy parses")
                    .cluster
                    .policies,
            );
        }
        cluster
    }

    /// Commits `cluster` on every node; returns the instant (ns) the last
    /// node acknowledged.
    fn commit(&mut self, cluster: &Cluster) -> u64 {
        let snapshot = Snapshot::from(cluster);
        for reconciler in &mut self.reconcilers {
            reconciler
                .reconcile(&snapshot)
                .expect("the commit succeeds");
        }
        now_ns()
    }

    /// The policy generation each node's committed table stamps flows with.
    fn generations(&self) -> Vec<u32> {
        self.reconcilers
            .iter()
            .map(|reconciler| {
                reconciler
                    .committed()
                    .and_then(|table| rejudge::generation_of(table, MarkBits::default()))
                    .map_or(0, rejudge::Generation::get)
            })
            .collect()
    }

    /// Flushes the conntrack entries of denied flows on every node, as the
    /// agent does on its ticks.
    fn flush_denied(&mut self) {
        for reconciler in &mut self.reconcilers {
            reconciler
                .flush_denied_flows()
                .expect("the kernel flushes by mark");
        }
    }

    /// How many conntrack entries node 1 holds for `protocol` connections
    /// to port `port` (`conntrack -L` in its namespace, where the pods'
    /// traffic is tracked).
    fn conntrack_entries(&self, protocol: &str, port: u16) -> usize {
        let port = port.to_string();
        let output = self
            .topology
            .node(1)
            .run(|| {
                std::process::Command::new("conntrack")
                    .args(["-L", "-p", protocol, "--dport", &port])
                    .output()
            })
            .expect("node 1's namespace")
            .expect("conntrack runs (scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "conntrack -L failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with(protocol))
            .count()
    }

    fn pod_ns(&self, id: &str) -> &netns::Netns {
        let pod = self
            .plan
            .pods
            .iter()
            .find(|pod| pod.id == id)
            .expect("a planned pod");
        self.topology.pod(pod)
    }

    /// A TCP connection from a to b, both sides sending.
    fn tcp_flow(&self) -> Flow {
        let listener = self
            .pod_ns("x/b")
            .run(|| TcpListener::bind(("0.0.0.0", TCP_PORT)))
            .expect("b's namespace")
            .expect("b listens");
        let target = SocketAddr::new(self.b_target, TCP_PORT);
        let client = self
            .pod_ns("x/a")
            .run(|| TcpStream::connect_timeout(&target, Duration::from_secs(5)))
            .expect("a's namespace")
            .expect("a connects to b");
        let (server, _) = listener.accept().expect("b accepts");
        let mut flow = Flow::new("TCP");
        for (stream, end) in [(client, flow.client.clone()), (server, flow.server.clone())] {
            stream.set_nodelay(true).expect("TCP_NODELAY");
            stream
                .set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            stream
                .set_write_timeout(Some(Duration::from_millis(20)))
                .expect("write timeout");
            let mut writer = stream.try_clone().expect("a second handle");
            let mut reader = stream;
            flow.spawn_sender(&end, move |bytes| {
                // A write that times out (the peer no longer acknowledges)
                // sent nothing new: the test only counts what arrives.
                let _ = writer.write_all(bytes);
            });
            flow.spawn_receiver(&end, move |buffer| match reader.read(buffer) {
                Ok(read) => read,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
                Err(_) => {
                    thread::sleep(INTERVAL);
                    0
                }
            });
        }
        flow
    }

    /// A UDP flow from a to b, both sides sending.
    fn udp_flow(&self) -> Flow {
        let server = self
            .pod_ns("x/b")
            .run(|| UdpSocket::bind(("0.0.0.0", UDP_PORT)))
            .expect("b's namespace")
            .expect("b binds");
        let target = SocketAddr::new(self.b_target, UDP_PORT);
        let client = self
            .pod_ns("x/a")
            .run(|| {
                let socket = UdpSocket::bind(("0.0.0.0", 0))?;
                socket.connect(target)?;
                Ok::<_, std::io::Error>(socket)
            })
            .expect("a's namespace")
            .expect("a's socket");
        // b learns a's address from a first datagram, then talks back.
        client.send(&encode(u64::MAX)).expect("a sends a hello");
        server
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let mut hello = [0; RECORD];
        let (_, peer) = server.recv_from(&mut hello).expect("b hears a");
        server.connect(peer).expect("b talks to a");
        let mut flow = Flow::new("UDP");
        for (socket, end) in [(client, flow.client.clone()), (server, flow.server.clone())] {
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            let sender = socket.try_clone().expect("a second handle");
            flow.spawn_sender(&end, move |bytes| {
                // A refused send (ICMP from a reject) is a lost record,
                // which is what the test looks for.
                let _ = sender.send(bytes);
            });
            // A timeout or a refusal delivers nothing.
            flow.spawn_receiver(&end, move |buffer| socket.recv(buffer).unwrap_or_default());
        }
        flow
    }
}

/// Starts both flows under `before`, commits `after` and asserts both cut.
fn assert_commit_cuts(lab: &mut Lab, case: &str, before: &[&str], after: &[&str]) -> Vec<Flow> {
    lab.commit(&lab.with(before));
    let flows = [lab.tcp_flow(), lab.udp_flow()];
    for flow in &flows {
        flow.wait_flowing();
    }
    let ack = lab.commit(&lab.with(after));
    for flow in &flows {
        flow.wait_sent_after();
        flow.assert_cut_at(ack, case);
    }
    flows.into()
}

#[test]
fn deny_all_cuts_established_tcp_and_udp_and_its_removal_lets_new_connections_in() {
    let mut lab = Lab::new(1, false);
    for flow in assert_commit_cuts(&mut lab, "deny-all", &[], &[DENY_ALL]) {
        flow.stop();
    }
    lab.commit(&lab.with(&[]));
    // New connections (new ports on b: the old sockets are gone) flow again.
    let flows = [lab.tcp_flow(), lab.udp_flow()];
    for flow in flows {
        flow.wait_flowing();
        flow.stop();
    }
}

#[test]
fn twenty_commits_in_a_second_that_keep_a_flow_allowed_lose_none_of_its_packets() {
    let mut lab = Lab::new(1, false);
    let extra = |peer: &str| B_ADMITS_PEER.replace("PEER", peer);
    lab.commit(&lab.with(&[B_ADMITS_A, &extra("a")]));
    let flows = [lab.tcp_flow(), lab.udp_flow()];
    for flow in &flows {
        flow.wait_flowing();
    }
    let before = lab.generations()[0];
    for round in 0..20 {
        // Each commit swaps the extra peer between c and a, so the old
        // peer's rule goes: a rule removed may take permission away (that
        // a's was redundant beside b-admits-a is beyond what the structure
        // tells), so each bumps the generation.
        let peer = if round % 2 == 0 { "c" } else { "a" };
        lab.commit(&lab.with(&[B_ADMITS_A, &extra(peer)]));
        // Pacing, not waiting for state: twenty commits spread over a second.
        thread::sleep(Duration::from_millis(50));
    }
    let after = lab.generations()[0];
    assert_eq!(
        after,
        before + 20,
        "every one of the twenty commits re-judges established flows"
    );
    for mut flow in flows {
        flow.assert_nothing_lost("twenty commits");
        flow.stop();
    }
}

#[test]
fn a_pod_relabelled_out_of_a_peer_set_loses_its_established_flows() {
    let mut lab = Lab::new(1, false);
    lab.commit(&lab.with(&[B_ADMITS_A]));
    let flows = [lab.tcp_flow(), lab.udp_flow()];
    for flow in &flows {
        flow.wait_flowing();
    }
    let mut relabelled = lab.with(&[B_ADMITS_A]);
    for pod in &mut relabelled.pods {
        if pod.metadata.name.as_deref() == Some("a") {
            pod.metadata.labels = Some([("pod".to_owned(), "z".to_owned())].into());
        }
    }
    let ack = lab.commit(&relabelled);
    for flow in flows {
        flow.wait_sent_after();
        flow.assert_cut_at(ack, "a relabelled out of b's peers");
        flow.stop();
    }
}

/// Relabelled from b's `pod: a` peers into its `pod: p` peers, which b admits
/// on UDP 81 only, a keeps its UDP flow and nothing more: the TCP flow it
/// opened under the old label is cut, not carried over by the new one.
#[test]
fn a_pod_relabelled_into_another_peer_set_keeps_only_what_that_set_allows() {
    let mut lab = Lab::new(1, false);
    let policies = [B_ADMITS_A, B_ADMITS_P_ON_UDP];
    lab.commit(&lab.with(&policies));
    let (tcp, mut udp) = (lab.tcp_flow(), lab.udp_flow());
    tcp.wait_flowing();
    udp.wait_flowing();
    let mut relabelled = lab.with(&policies);
    for pod in &mut relabelled.pods {
        if pod.metadata.name.as_deref() == Some("a") {
            pod.metadata.labels = Some([("pod".to_owned(), "p".to_owned())].into());
        }
    }
    let ack = lab.commit(&relabelled);
    tcp.wait_sent_after();
    tcp.assert_cut_at(ack, "a relabelled into b's UDP-only peers, TCP");
    tcp.stop();
    udp.wait_sent_after();
    udp.assert_nothing_lost("a relabelled into b's UDP-only peers, UDP");
    udp.stop();
}

#[test]
fn egress_and_ingress_denials_cut_at_the_denying_side_on_one_node_and_across_two() {
    for (nodes, via_service) in [(1, false), (2, false), (2, true)] {
        let denials = [
            ("egress deny of a", DENY_EGRESS_FROM_A, 0),
            ("ingress deny of b", DENY_INGRESS_TO_B, nodes - 1),
        ];
        for (denial, policy, denying_node) in denials {
            let service = if via_service {
                " via b's ClusterIP"
            } else {
                ""
            };
            let case = format!("{denial} on {nodes} node(s){service}");
            let mut lab = Lab::new(nodes, via_service);
            lab.commit(&lab.with(&[]));
            let before = lab.generations();
            for flow in assert_commit_cuts(&mut lab, &case, &[], &[policy]) {
                flow.stop();
            }
            let after = lab.generations();
            for (node, (was, is)) in before.iter().zip(&after).enumerate() {
                assert_eq!(
                    is != was,
                    node == denying_node,
                    "{case}: only the denying node re-judges (generations {before:?} → {after:?})"
                );
            }
        }
    }
}

/// A TCP flow a deny-all cuts keeps retransmitting, and every retransmit
/// refreshes its conntrack entry: the flush of denied flows removes it,
/// while the UDP flow the policy still allows keeps its entry and every
/// record.
#[test]
fn a_denied_flows_conntrack_entry_is_flushed_and_an_allowed_flows_stays() {
    let mut lab = Lab::new(1, false);
    lab.commit(&lab.with(&[]));
    let (tcp, mut udp) = (lab.tcp_flow(), lab.udp_flow());
    tcp.wait_flowing();
    udp.wait_flowing();
    assert_eq!(
        lab.conntrack_entries("tcp", TCP_PORT),
        1,
        "the TCP flow is tracked"
    );
    assert_eq!(
        lab.conntrack_entries("udp", UDP_PORT),
        1,
        "the UDP flow is tracked"
    );
    let ack = lab.commit(&lab.with(&[DENY_ALL, ALLOW_UDP_81]));
    tcp.wait_sent_after();
    tcp.assert_cut_at(ack, "deny-all but UDP 81, TCP");
    let deadline = Instant::now() + PATIENCE;
    loop {
        // What the agent does on its ticks; a retransmit stamped "denied"
        // since the last round is removed by the next.
        lab.flush_denied();
        if lab.conntrack_entries("tcp", TCP_PORT) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the denied TCP flow's conntrack entry is still there after {PATIENCE:?} of flushes"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        lab.conntrack_entries("udp", UDP_PORT),
        1,
        "the allowed UDP flow keeps its entry"
    );
    udp.wait_sent_after();
    udp.assert_nothing_lost("deny-all but UDP 81, UDP");
    tcp.stop();
    udp.stop();
}
