//! `nftpol trace`, run inside each lab node's network namespace against the
//! table the node's agent installed, agrees with what the lab's probe
//! observed and with `nftpol explain`'s reasoning, for every pod-to-pod
//! probe of five integration scenarios (one dual-stack, one with Node
//! documents and ClusterNetworkPolicy), each probe in its own address
//! family.
//!
//! A probe crosses its source pod's node and, across nodes, its destination
//! pod's node; the connection passes when every crossed node's trace
//! accepts it (each node judges the direction whose pod it hosts, and
//! passes the other). On each node trace picks the hook as the kernel
//! does: forward for pod traffic passing through, output for a hostNetwork
//! pod's own traffic, input for traffic to one (no nftpol chain there).
//! Alone in its test binary, so every namespace named after this process's
//! pid belongs to this test.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;

use nftpol_lab::plan::LabPod;
use nftpol_lab::report::family_of;
use nftpol_lab::{netns, run_inspected, Inspection, RunOptions};
use nftpol_model::{explain, Connection, Protocol};
use nftpol_testkit::netns::Sweep;

/// A scenario and what its probes to a pod's own node show.
struct Scenario {
    name: &'static str,
    /// Probes from a pod to a hostNetwork pod on its own node.
    to_own_node: OwnNode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OwnNode {
    /// None.
    Absent,
    /// Some; NetworkPolicy alone governs them, so they all connect.
    NetworkPolicyExempt,
    /// Some; ClusterNetworkPolicy egress rules judge them (on `input`).
    JudgedByCnp,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "dual-stack-ipv4-only-allow-leaves-ipv6-closed",
        to_own_node: OwnNode::Absent,
    },
    Scenario {
        name: "egress-to-pod-same-node-vs-other-node",
        to_own_node: OwnNode::Absent,
    },
    Scenario {
        name: "ingress-and-egress-policies-both-must-allow",
        to_own_node: OwnNode::Absent,
    },
    Scenario {
        name: "hostnetwork-pods-as-egress-destinations",
        to_own_node: OwnNode::NetworkPolicyExempt,
    },
    // Node documents: trace and explain see the scenario's node addresses.
    Scenario {
        name: "cnp-networks-match-node-document-addresses",
        to_own_node: OwnNode::JudgedByCnp,
    },
];

/// What trace and explain said of one probe.
#[derive(Clone, Copy)]
struct Verdicts {
    traced: bool,
    explained: bool,
    /// From a pod to a hostNetwork pod on the pod's own node: NetworkPolicy
    /// always lets a pod reach its own node.
    to_own_node: bool,
}

/// The connection of a probe, in its family.
struct Traced {
    probe: usize,
    to_own_node: bool,
    source: IpAddr,
    destination: IpAddr,
    protocol: Protocol,
    port: u16,
    /// The nodes it crosses.
    nodes: Vec<usize>,
}

/// The connections of every probe that ran between two pods.
fn connections(lab: &Inspection<'_>) -> Vec<Traced> {
    let pod = |id: &str| -> &LabPod {
        lab.plan
            .pods
            .iter()
            .find(|pod| pod.id == id)
            .unwrap_or_else(|| panic!("probe of unknown pod {id}"))
    };
    let mut traced = Vec::new();
    for (index, probe) in lab.probes.iter().enumerate() {
        if probe.skipped || probe.from == probe.to {
            continue;
        }
        let (from, to) = (pod(&probe.from), pod(&probe.to));
        let protocol = Protocol::parse(Some(&probe.protocol)).expect("a probed protocol");
        let mut nodes = vec![from.node];
        if to.node != from.node {
            nodes.push(to.node);
        }
        let of_family = |pod: &LabPod| {
            pod.addresses
                .iter()
                .copied()
                .find(|address| family_of(*address) == probe.family)
                .unwrap_or_else(|| panic!("{} has no {:?} address", pod.id, probe.family))
        };
        let (source, destination) = (of_family(from), of_family(to));
        traced.push(Traced {
            probe: index,
            to_own_node: to.host_network && !from.host_network && to.node == from.node,
            source,
            destination,
            protocol,
            port: probe.port,
            nodes,
        });
    }
    traced
}

/// Runs the real `nftpol trace` for each connection crossing node `k`,
/// inside that node's namespace (one shell per node); returns whether each
/// trace accepted, in order.
fn trace_on_node(lab: &Inspection<'_>, k: usize, connections: &[&Traced]) -> Vec<bool> {
    let binary = env!("CARGO_BIN_EXE_nftpol");
    let (_, namespace) = &lab.nodes[k - 1];
    let mut script = String::new();
    for connection in connections {
        // Writing to a String cannot fail.
        let _ = writeln!(
            script,
            "{binary} trace --from {} --to {} --port {}/{} >/dev/null; echo $?",
            connection.source, connection.destination, connection.port, connection.protocol
        );
    }
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "sh", "-c", &script])
        .output()
        .expect("ip netns exec");
    assert!(
        output.status.success(),
        "tracing in {namespace}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exits: Vec<bool> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|exit| match exit {
            "0" => true,
            "1" => false,
            other => panic!(
                "nftpol trace exited {other} in {namespace}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        })
        .collect();
    assert_eq!(exits.len(), connections.len(), "one exit per trace");
    exits
}

/// For each probe: the traced and explained verdicts (for traces, the
/// conjunction over the nodes crossed).
fn verdicts(lab: &Inspection<'_>) -> Vec<Option<Verdicts>> {
    let connections = connections(lab);
    let mut traced = vec![true; connections.len()];
    for (k, _) in lab.nodes.iter().enumerate().map(|(i, node)| (i + 1, node)) {
        let here: Vec<(usize, &Traced)> = connections
            .iter()
            .enumerate()
            .filter(|(_, connection)| connection.nodes.contains(&k))
            .collect();
        let only: Vec<&Traced> = here.iter().map(|(_, connection)| *connection).collect();
        for ((index, _), accepted) in here.iter().zip(trace_on_node(lab, k, &only)) {
            traced[*index] &= accepted;
        }
    }
    let mut verdicts: Vec<Option<Verdicts>> = vec![None; lab.probes.len()];
    for (connection, traced) in connections.iter().zip(traced) {
        let explained = explain(
            lab.cluster,
            &Connection {
                source: connection.source,
                destination: connection.destination,
                protocol: connection.protocol,
                port: connection.port,
            },
        );
        let allowed = match explained.split_whitespace().next() {
            Some("ALLOWED") => true,
            Some("DENIED") => false,
            other => panic!("explain said {other:?}: {explained}"),
        };
        let entry = verdicts[connection.probe].get_or_insert(Verdicts {
            traced: true,
            explained: true,
            to_own_node: connection.to_own_node,
        });
        entry.traced &= traced;
        entry.explained &= allowed;
    }
    verdicts
}

#[test]
fn trace_on_each_lab_node_agrees_with_the_probes_and_explain() {
    let guard = Sweep::new(format!("{}{}-", netns::PREFIX, std::process::id()));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../integration/scenarios");
    for Scenario { name, to_own_node } in SCENARIOS {
        let path = format!("{root}/{name}.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (report, verdicts) = run_inspected(&yaml, name, &RunOptions::default(), verdicts)
            .expect("the lab runs (as root: it creates network namespaces)");
        let mut checked = 0;
        let mut blocked = 0;
        let mut own_node = 0;
        for (probe, verdict) in report.probes.iter().zip(verdicts) {
            let Some(verdict) = verdict else {
                continue;
            };
            let what = format!(
                "{name}: {} -> {} {}/{} {:?}",
                probe.from, probe.to, probe.port, probe.protocol, probe.family
            );
            assert_eq!(
                verdict.traced, probe.connected,
                "{what}: trace vs the probe"
            );
            if verdict.to_own_node {
                if to_own_node == OwnNode::NetworkPolicyExempt {
                    // NetworkPolicy never isolates a pod from its own node
                    // (the lab's Nodes carry their addresses, so explain
                    // knows).
                    assert!(probe.connected, "{what}: a pod reaches its own node");
                }
                own_node += 1;
            }
            assert_eq!(
                verdict.explained, probe.connected,
                "{what}: explain vs the probe"
            );
            checked += 1;
            blocked += usize::from(!probe.connected);
        }
        assert_eq!(
            own_node > 0,
            to_own_node != OwnNode::Absent,
            "{name}: probes to a pod's own node"
        );
        assert!(
            checked >= 40 && blocked > 0 && blocked < checked,
            "{name}: {checked} probes checked, {blocked} blocked"
        );
    }
    assert_eq!(
        guard.present(),
        Vec::<String>::new(),
        "every run removes every namespace it made"
    );
}
