//! Measurement 6: what re-judging established flows costs, in the two-node
//! lab of [`crate::lab`] (client pod on node-1, server pod on node-2). The
//! everyday price, re-judging on against off in the same run, is part of
//! the feature costs ([`crate::features`]). This is the price of one commit
//! that takes permission away, with N established UDP flows (client ports from `FIRST_PORT`, server ports from
//! `FLOW_PORT`, each opened by one datagram and its reply, sent from raw
//! sockets so N flows need no N sockets). One round sends one datagram on every
//! flow, as fast as the client can, and takes the wall time and the
//! machine's kernel CPU time (system + softirq, `/proc/stat`; machine-wide,
//! so other work on the machine shows up in it). Rounds: every flow
//! current (the bypass); after a commit that bumps the generation but keeps
//! the flows allowed (every flow re-judged on both nodes and stamped
//! again); current again; after a commit that denies the flows (every flow
//! judged and dropped on node-2, counted by the deny rule's counter, which
//! must reach N). Veth transmission runs the receiving side's softirq in
//! the sender's context, so a round's wall time includes both nodes'
//! forwarding.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{anyhow, bail, Context as _, Result};
use nftpol_ir::diff::diff;
use nftpol_ir::Ruleset;
use nftpol_model::Cluster;
use nftpol_netlink::{Dataplane as _, KernelDataplane};
use nftpol_ruleset::catalogue::RuleRole;
use nftpol_ruleset::compile::{CompileOptions, Compiled};
use nftpol_ruleset::rejudge::{self, Generation, MarkBits, Rejudge};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::{self, Lab};
use crate::measure::{kernel_cpu, timed, KernelCpu};

/// The first server port of the UDP flows.
const FLOW_PORT: u16 = 9;
/// Server ports the flows spread over (the policy admits them all).
const FLOW_PORTS: u16 = 4;
/// The client port of the first UDP flow.
const FIRST_PORT: u16 = 1024;
/// Flows per server port (client ports `FIRST_PORT..FIRST_PORT + PER_PORT`).
const PER_PORT: usize = 60_000;

/// One round of one datagram per flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// `current`, `re-judged`, `current again`, `cut`.
    pub state: String,
    /// Wall time of the round, ms.
    pub wall_ms: f64,
    /// Kernel CPU (system + softirq, all CPUs) during the round, ms.
    pub kernel_cpu_ms: f64,
}

/// One flow count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowCost {
    /// Established flows.
    pub flows: usize,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// Commit of the generation bump (keeping the flows), ms.
    pub bump_commit_ms: f64,
    /// From the ack of the denying commit until the deny counter of node-2
    /// counted every flow, ms (the client sends right after the ack).
    pub cut_all_ms: f64,
    /// Packets node-2's deny rule counted in the cut round (must be `flows`).
    pub denied: u64,
}

/// What measurement 6 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejudgeResult {
    /// One per flow count.
    pub flows: Vec<FlowCost>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
}

fn on() -> CompileOptions {
    CompileOptions {
        rejudge: Some(Rejudge::default()),
        ..CompileOptions::default()
    }
}

/// Runs measurement 6.
pub fn run(flow_counts: &[usize]) -> Result<RejudgeResult> {
    let rt = lab::runtime()?;
    let lab = lab::build(&rt)?;
    let mut result = RejudgeResult {
        flows: Vec::new(),
        notes: Vec::new(),
    };
    for &flows in flow_counts {
        eprintln!("nftpol-bench: re-judging {flows} established flows …");
        match flow_cost(&lab, flows) {
            Ok(found) => result.flows.push(found),
            Err(error) => {
                result.notes.push(format!("{flows} flows: {error:#}"));
                // Leaves the lab clean for the next count; the table may
                // be absent.
                let _ = lab::unload(&lab);
            }
        }
    }
    lab.topology
        .teardown()
        .map_err(|e| anyhow!("removing the lab: {e}"))?;
    Ok(result)
}

/// The two lab pods, node pod CIDRs, and the server's ingress policy:
/// admitting the client on UDP `FLOW_PORT`, or nothing.
fn flow_cluster(lab: &Lab, admit: bool) -> Result<Cluster> {
    let from = if admit {
        format!(
            "ingress: [{{from: [{{podSelector: {{matchLabels: {{app: app-0}}}}}}], ports: [{{port: {FLOW_PORT}, endPort: {last}, protocol: UDP}}]}}]",
            last = FLOW_PORT + FLOW_PORTS - 1
        )
    } else {
        "ingress: []".to_owned()
    };
    let text = format!(
        r"
apiVersion: v1
kind: Namespace
metadata: {{name: ns-0}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-1}}
spec: {{podCIDRs: [10.244.1.0/24]}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-2}}
spec: {{podCIDRs: [10.244.2.0/24]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bench-client, namespace: ns-0, labels: {{app: app-0}}}}
spec: {{nodeName: node-1, containers: [{{name: c}}]}}
status: {{phase: Running, podIP: {client}, podIPs: [{{ip: {client}}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bench-server, namespace: ns-0, labels: {{app: app-1}}}}
spec: {{nodeName: node-2, containers: [{{name: c}}]}}
status: {{phase: Running, podIP: {server}, podIPs: [{{ip: {server}}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: server-in, namespace: ns-0}}
spec:
  podSelector: {{matchLabels: {{app: app-1}}}}
  policyTypes: [Ingress]
  {from}
",
        client = lab.client.1,
        server = lab.server.1,
    );
    Ok(nftpol_model::manifests::parse(&text)
        .map_err(|e| anyhow!("the flow cluster: {e}"))?
        .cluster)
}

/// A raw UDP socket in the namespace behind `file` (no socket per flow).
fn raw_udp(file: &std::fs::File) -> Result<Socket> {
    lab::inside(file, || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).context("a raw UDP socket")
    })
}

/// One UDP datagram from `source_port` to `destination:destination_port`.
fn send(
    socket: &Socket,
    destination: Ipv4Addr,
    source_port: u16,
    destination_port: u16,
) -> io::Result<()> {
    let mut datagram = [0u8; 16];
    datagram[0..2].copy_from_slice(&source_port.to_be_bytes());
    datagram[2..4].copy_from_slice(&destination_port.to_be_bytes());
    datagram[4..6].copy_from_slice(&16u16.to_be_bytes());
    // Checksum 0: none, allowed for UDP over IPv4.
    let to = SockAddr::from(SocketAddr::from((destination, 0)));
    socket.send_to(&datagram, &to).map(|_| ())
}

/// System plus softirq time.
fn kernel_cpu_ms(cpu: KernelCpu) -> f64 {
    cpu.system_ms + cpu.softirq_ms
}

fn round(state: &str, client: &Socket, server: Ipv4Addr, flows: usize) -> Result<Round> {
    let before = kernel_cpu()?;
    let (sent, wall_ms) = timed(|| -> Result<()> {
        for (client_port, server_port) in ports(flows) {
            send(client, server, client_port, server_port).context("sending a datagram")?;
        }
        Ok(())
    });
    sent?;
    Ok(Round {
        state: state.to_owned(),
        wall_ms,
        kernel_cpu_ms: kernel_cpu_ms(kernel_cpu()?) - kernel_cpu_ms(before),
    })
}

/// (client port, server port) of every flow.
fn ports(flows: usize) -> impl Iterator<Item = (u16, u16)> {
    (0..flows).map(|index| {
        let offset = u16::try_from(index % PER_PORT).unwrap_or(0);
        let server = u16::try_from(index / PER_PORT).unwrap_or(0);
        (FIRST_PORT + offset, FLOW_PORT + server)
    })
}

/// Commits `next` over `previous` on both nodes; ms.
fn commit(lab: &Lab, previous: &[Ruleset; 2], next: &[Ruleset; 2]) -> Result<f64> {
    let files = lab::node_files(lab)?;
    let mut total = 0.0;
    for ((file, previous), next) in files.iter().zip(previous).zip(next) {
        total += lab::inside(file, || {
            let mut kernel = KernelDataplane::open().context("opening the netlink socket")?;
            let changes = diff(Some(previous), next);
            let (applied, elapsed) = timed(|| kernel.apply(&changes));
            applied.context("a commit was rejected")?;
            Ok(elapsed)
        })?;
    }
    Ok(total)
}

/// Packets node-2's isolated-deny rules counted.
fn denied(lab: &Lab, node_2: &Compiled) -> Result<u64> {
    let files = lab::node_files(lab)?;
    let counters = lab::inside(&files[1], || {
        KernelDataplane::open()
            .context("opening the netlink socket")?
            .read_counters()
            .context("reading node-2's counters")
    })?;
    Ok(counters
        .iter()
        .filter(|counter| {
            matches!(
                node_2.provenance.rule(&counter.chain, counter.rule),
                Some((_, RuleRole::IsolatedDeny))
            )
        })
        .map(|counter| counter.packets)
        .sum())
}

fn flow_cost(lab: &Lab, flows: usize) -> Result<FlowCost> {
    if flows > PER_PORT * usize::from(FLOW_PORTS) {
        bail!("{flows} flows need more server ports than the policy admits");
    }
    let marks = MarkBits::default();
    let at = |generation: u32, admit: bool| -> Result<[Compiled; 2]> {
        let mut compiled = lab::rulesets_with(&flow_cluster(lab, admit)?, on());
        let settings = Rejudge {
            marks,
            generation: Generation::new(generation, marks).context("a generation")?,
        };
        for table in &mut compiled {
            rejudge::set_generation(&mut table.ruleset, settings);
        }
        Ok(compiled)
    };
    let tables = |compiled: &[Compiled; 2]| compiled.clone().map(|table| table.ruleset);
    let first = at(1, true)?;
    lab::load_nftpol(lab, &tables(&first))?;
    let client = raw_udp(&lab.client.0)?;
    let server = raw_udp(&lab.server.0)?;
    // Open every flow: a datagram and its reply.
    for (client_port, server_port) in ports(flows) {
        send(&client, lab.server.1, client_port, server_port).context("opening a flow")?;
        send(&server, lab.client.1, server_port, client_port).context("answering a flow")?;
    }
    let mut rounds = vec![round("current", &client, lab.server.1, flows)?];
    let bumped = at(2, true)?;
    let bump_commit_ms = commit(lab, &tables(&first), &tables(&bumped))?;
    rounds.push(round("re-judged", &client, lab.server.1, flows)?);
    rounds.push(round("current again", &client, lab.server.1, flows)?);
    let cut = at(3, false)?;
    commit(lab, &tables(&bumped), &tables(&cut))?;
    let cut_round = round("cut", &client, lab.server.1, flows)?;
    let cut_all_ms = cut_round.wall_ms;
    rounds.push(cut_round);
    let denied = denied(lab, &cut[1])?;
    lab::unload(lab)?;
    Ok(FlowCost {
        flows,
        rounds,
        bump_commit_ms,
        cut_all_ms,
        denied,
    })
}
