//! Placement: which lab node each pod runs on and which addresses it holds,
//! and the objects the agents see (filled pods, labelled namespaces, Nodes).
//!
//! Address plan: the k-th node has pod CIDRs `10.244.<k>.0/24` and
//! `fd00:10:244:<k>::/64`. Its name and addresses are those of the
//! scenario's k-th `kind: Node` document (see [`crate::nodes`]); without
//! Node documents it is `node-<k>` with `172.18.0.<k+1>` and
//! `fd00:172:18::<k+1>`, and as many nodes as the highest `node-<k>` a pod
//! names (or `--nodes`). Pods pick their node by `spec.nodeName`, else
//! round-robin in document order. Pods without IPs get `10.244.<k>.10`,
//! `.11`, … in document order per node, skipping addresses that another
//! running pod claims explicitly; IPv6 is used only when the scenario gives
//! it. hostNetwork pods hold their node's addresses (its IPv6 only when a
//! pod has IPv6).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{
    HostIP, Namespace, Node, NodeAddress, NodeSpec, NodeStatus, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nftpol_model::Cluster;
pub use nftpol_model::Protocol;

use crate::error::LabError;
use crate::nodes;

/// Most lab nodes a run may have (pod CIDRs are `10.244.<k>.0/24`, and
/// default node addresses `172.18.0.<k+1>`).
pub const MAX_NODES: usize = 250;
/// The label every namespace carries (NetworkPolicy semantics rule 6).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// First host number handed to pods on each node.
const FIRST_POD_HOST: u8 = 10;

const _: () = assert!(MAX_NODES < 254, "node addresses are 172.18.0.<k+1>");

/// A declared container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodPort {
    /// The port number.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// A lab node (1-based index `k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// `k`: its place among the lab's nodes, from 1.
    pub index: usize,
    /// Its Node document's name, or `node-<k>`.
    pub name: String,
    /// Its IPv4 InternalIP, or `172.18.0.<k+1>`.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 InternalIP, or `fd00:172:18::<k+1>`.
    pub ipv6: Ipv6Addr,
    /// `10.244.<k>.0/24` as (network, prefix length).
    pub pod_cidr_v4: (Ipv4Addr, u8),
    /// `fd00:10:244:<k>::/64` as (network, prefix length).
    pub pod_cidr_v6: (Ipv6Addr, u8),
}

impl LabNode {
    /// The default plan's `node-<k>`.
    fn new(index: usize) -> Self {
        let host = u8::try_from(index).expect("node count is bounded by MAX_NODES") + 1;
        Self::with_addresses(
            index,
            format!("node-{index}"),
            Ipv4Addr::new(172, 18, 0, host),
            Ipv6Addr::new(0xfd00, 0x172, 0x18, 0, 0, 0, 0, u16::from(host)),
        )
    }

    /// The `index`-th node, with its pod CIDRs.
    pub(crate) fn with_addresses(
        index: usize,
        name: String,
        ipv4: Ipv4Addr,
        ipv6: Ipv6Addr,
    ) -> Self {
        let k = u8::try_from(index).expect("node count is bounded by MAX_NODES");
        Self {
            index,
            name,
            ipv4,
            ipv6,
            pod_cidr_v4: (Ipv4Addr::new(10, 244, k, 0), 24),
            pod_cidr_v6: (
                Ipv6Addr::new(0xfd00, 0x10, 0x244, u16::from(k), 0, 0, 0, 0),
                64,
            ),
        }
    }

    /// The node's pod CIDRs as `spec.podCIDRs` lists them.
    pub fn pod_cidrs(&self) -> [String; 2] {
        [
            format!("10.244.{}.0/24", self.index),
            format!("fd00:10:244:{:x}::/64", self.index),
        ]
    }
}

/// A pod the lab instantiates (terminal pods are not in the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPod {
    /// `namespace/name`.
    pub id: String,
    /// Index of its node (`k` of [`LabNode`]).
    pub node: usize,
    /// Lives in the node's namespace, with the node's addresses.
    pub host_network: bool,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// Declared container ports, deduplicated.
    pub ports: BTreeSet<PodPort>,
}

impl LabPod {
    /// Whether the pod has an address of the same family as `other`.
    pub fn address_like(&self, other: IpAddr) -> Option<IpAddr> {
        self.addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == other.is_ipv4())
    }
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The lab nodes, `node-1` first.
    pub nodes: Vec<LabNode>,
    /// Pods to instantiate and probe, sorted by id.
    pub pods: Vec<LabPod>,
    /// Whether any pod has IPv6 (hostNetwork pods then get the node's IPv6).
    pub dual_stack: bool,
    /// Ignored or adjusted input, one line each.
    pub warnings: Vec<String>,
}

impl Plan {
    /// The node with index `k`.
    pub fn node(&self, k: usize) -> Option<&LabNode> {
        self.nodes.iter().find(|n| n.index == k)
    }
}

/// What the lab knows about one scenario pod before placement.
struct Scanned {
    id: String,
    terminal: bool,
    host_network: bool,
    /// `spec.nodeName`, if set.
    node_name: Option<String>,
    explicit: Vec<IpAddr>,
}

/// Places every pod, fills `objects` in (node names, pod IPs, phase,
/// namespaces and their name label, lab Node objects) and returns the plan.
/// `nodes` is `--nodes`: the node count of a scenario without Node
/// documents (with them, it must equal their number).
pub fn place(objects: &mut Cluster, nodes: Option<usize>) -> Result<Plan, LabError> {
    let mut warnings = Vec::new();
    let scanned = objects
        .pods
        .iter()
        .map(scan_pod)
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_ids(&scanned)?;
    let declared = !objects.nodes.is_empty();
    let (lab_nodes, named) = if declared {
        let lab_nodes = nodes::from_documents(&objects.nodes)?;
        match nodes {
            Some(given) if given != lab_nodes.len() => {
                return Err(LabError::Nodes {
                    given,
                    reason: format!(
                        "the scenario's {} Node documents define the lab's nodes",
                        lab_nodes.len()
                    ),
                });
            }
            _ => {}
        }
        let named = declared_nodes(&scanned, &lab_nodes)?;
        (lab_nodes, named)
    } else {
        let named = default_plan_nodes(&scanned)?;
        let count = node_count(&named, nodes)?;
        ((1..=count).map(LabNode::new).collect(), named)
    };
    let placed = assign_nodes(&scanned, &named, lab_nodes.len());
    let dual_stack = scanned
        .iter()
        .any(|p| !p.terminal && !p.host_network && p.explicit.iter().any(IpAddr::is_ipv6));
    let addresses = assign_addresses(&scanned, &placed, &lab_nodes, dual_stack, &mut warnings)?;

    let mut pods = Vec::new();
    for (i, (pod, scan)) in objects.pods.iter_mut().zip(&scanned).enumerate() {
        fill_pod(pod, placed[i], &addresses[i], &lab_nodes);
        if scan.terminal {
            continue;
        }
        let Some(node) = placed[i] else {
            continue; // unreachable: running pods are always placed
        };
        pods.push(LabPod {
            id: scan.id.clone(),
            node,
            host_network: scan.host_network,
            addresses: addresses[i].clone(),
            ports: pod_ports(pod, &scan.id, &mut warnings),
        });
    }
    pods.sort_by(|a, b| a.id.cmp(&b.id));
    complete_namespaces(objects);
    if declared {
        nodes::complete_documents(&mut objects.nodes, &lab_nodes, &mut warnings);
    } else {
        objects.nodes = lab_nodes.iter().map(node_object).collect();
    }
    Ok(Plan {
        nodes: lab_nodes,
        pods,
        dual_stack,
        warnings,
    })
}

fn scan_pod(pod: &Pod) -> Result<Scanned, LabError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    if name.is_empty() {
        return Err(scenario_error(&id, "metadata.name", "a pod needs a name"));
    }
    let status = pod.status.as_ref();
    let terminal = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let node_name = spec
        .and_then(|s| s.node_name.clone())
        .filter(|name| !name.is_empty());
    let mut explicit = Vec::new();
    let listed: Vec<(String, &str)> = match status {
        Some(PodStatus {
            pod_ips: Some(ips), ..
        }) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("status.podIPs[{i}].ip"), ip.ip.as_str()))
            .collect(),
        Some(PodStatus {
            pod_ip: Some(ip), ..
        }) if !ip.is_empty() => vec![("status.podIP".to_owned(), ip.as_str())],
        _ => Vec::new(),
    };
    for (field, text) in listed {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| scenario_error(&id, &field, &format!("{text:?} is not an IP address")))?;
        if explicit
            .iter()
            .any(|e: &IpAddr| e.is_ipv4() == ip.is_ipv4())
        {
            return Err(scenario_error(
                &id,
                &field,
                "a pod has at most one address per family",
            ));
        }
        explicit.push(ip);
    }
    explicit.sort_by_key(IpAddr::is_ipv6);
    Ok(Scanned {
        id,
        terminal,
        host_network,
        node_name,
        explicit,
    })
}

/// Each pod's `spec.nodeName` as a node of the default plan (`node-<k>`).
fn default_plan_nodes(scanned: &[Scanned]) -> Result<Vec<Option<usize>>, LabError> {
    scanned
        .iter()
        .map(|scan| {
            scan.node_name
                .as_deref()
                .map(|name| {
                    parse_node_name(name).ok_or_else(|| {
                        scenario_error(
                            &scan.id,
                            "spec.nodeName",
                            &format!(
                                "{name:?} is not a lab node name (node-1, node-2, …; or declare it as a kind: Node document)"
                            ),
                        )
                    })
                })
                .transpose()
        })
        .collect()
}

/// Each pod's `spec.nodeName` as one of the scenario's Node documents.
fn declared_nodes(scanned: &[Scanned], nodes: &[LabNode]) -> Result<Vec<Option<usize>>, LabError> {
    scanned
        .iter()
        .map(|scan| {
            scan.node_name
                .as_deref()
                .map(|name| {
                    nodes
                        .iter()
                        .find(|node| node.name == name)
                        .map(|node| node.index)
                        .ok_or_else(|| {
                            let declared: Vec<&str> =
                                nodes.iter().map(|n| n.name.as_str()).collect();
                            scenario_error(
                                &scan.id,
                                "spec.nodeName",
                                &format!(
                                    "{name:?} is not a Node of the scenario (declared: {})",
                                    declared.join(", ")
                                ),
                            )
                        })
                })
                .transpose()
        })
        .collect()
}

fn parse_node_name(name: &str) -> Option<usize> {
    let k: usize = name.strip_prefix("node-")?.parse().ok()?;
    (1..=MAX_NODES).contains(&k).then_some(k)
}

fn check_unique_ids(scanned: &[Scanned]) -> Result<(), LabError> {
    let mut seen = BTreeSet::new();
    for scan in scanned {
        if !seen.insert(scan.id.as_str()) {
            return Err(scenario_error(
                &scan.id,
                "metadata.name",
                "declared twice in the scenario",
            ));
        }
    }
    Ok(())
}

fn node_count(named: &[Option<usize>], nodes: Option<usize>) -> Result<usize, LabError> {
    let highest = named.iter().flatten().copied().max().unwrap_or(1);
    match nodes {
        None => Ok(highest),
        Some(given) if given == 0 || given > MAX_NODES => Err(LabError::Nodes {
            given,
            reason: format!("must be between 1 and {MAX_NODES}"),
        }),
        Some(given) if given < highest => Err(LabError::Nodes {
            given,
            reason: format!(
                "the scenario places a pod on node-{highest}; pass --nodes {highest} or more"
            ),
        }),
        Some(given) => Ok(given),
    }
}

/// Node of each pod: explicit, else round-robin over running pods without
/// one in document order. Terminal pods without a node stay unplaced.
fn assign_nodes(
    scanned: &[Scanned],
    named: &[Option<usize>],
    node_count: usize,
) -> Vec<Option<usize>> {
    let mut next = 0;
    scanned
        .iter()
        .zip(named)
        .map(|(scan, named)| match named {
            Some(k) => Some(*k),
            None if scan.terminal => None,
            None => {
                let k = next % node_count + 1;
                next += 1;
                Some(k)
            }
        })
        .collect()
}

fn assign_addresses(
    scanned: &[Scanned],
    placed: &[Option<usize>],
    nodes: &[LabNode],
    dual_stack: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Vec<IpAddr>>, LabError> {
    let mut claimed: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for scan in scanned.iter().filter(|s| !s.terminal && !s.host_network) {
        for ip in &scan.explicit {
            if let Some(other) = claimed.insert(*ip, &scan.id) {
                return Err(scenario_error(
                    &scan.id,
                    "status.podIPs",
                    &format!("{ip} is already held by running pod {other}"),
                ));
            }
        }
    }
    for node in nodes {
        for address in [IpAddr::V4(node.ipv4), IpAddr::V6(node.ipv6)] {
            if let Some(pod) = claimed.get(&address) {
                return Err(scenario_error(
                    pod,
                    "status.podIPs",
                    &format!("{address} is an address of node {}", node.name),
                ));
            }
        }
    }
    let mut next_host: BTreeMap<usize, u8> = BTreeMap::new();
    let mut out = Vec::with_capacity(scanned.len());
    for (scan, node) in scanned.iter().zip(placed) {
        let addresses = match (scan.host_network, node, scan.explicit.is_empty()) {
            (true, Some(k), _) => {
                let node = &nodes[*k - 1];
                let mut addresses = vec![IpAddr::V4(node.ipv4)];
                if dual_stack {
                    addresses.push(IpAddr::V6(node.ipv6));
                }
                if !scan.explicit.is_empty() && scan.explicit != addresses {
                    warnings.push(format!(
                        "Pod {}: hostNetwork pod uses its node's addresses, not status.podIPs",
                        scan.id
                    ));
                }
                addresses
            }
            (_, _, false) | (_, None, true) => scan.explicit.clone(),
            // Terminal pods are not instantiated: without IPs they stay so.
            (false, Some(_), true) if scan.terminal => Vec::new(),
            (false, Some(k), true) => {
                let host = next_host.entry(*k).or_insert(FIRST_POD_HOST);
                let ip = loop {
                    let candidate = IpAddr::V4(Ipv4Addr::new(
                        10,
                        244,
                        u8::try_from(*k).expect("node count is bounded by MAX_NODES"),
                        *host,
                    ));
                    if *host == 255 {
                        return Err(scenario_error(
                            &scan.id,
                            "status.podIP",
                            &format!("node-{k} has no free address left in 10.244.{k}.0/24"),
                        ));
                    }
                    *host += 1;
                    if !claimed.contains_key(&candidate) {
                        break candidate;
                    }
                };
                vec![ip]
            }
        };
        out.push(addresses);
    }
    Ok(out)
}

fn fill_pod(pod: &mut Pod, node: Option<usize>, addresses: &[IpAddr], nodes: &[LabNode]) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    if let Some(node) = node.and_then(|k| nodes.get(k - 1)) {
        spec.node_name = Some(node.name.clone());
    }
    let status = pod.status.get_or_insert_with(PodStatus::default);
    if status.phase.is_none() {
        status.phase = Some("Running".to_owned());
    }
    if !addresses.is_empty() {
        status.pod_ip = Some(addresses[0].to_string());
        status.pod_ips = Some(
            addresses
                .iter()
                .map(|ip| PodIP { ip: ip.to_string() })
                .collect(),
        );
    }
    if let Some(node) = node.and_then(|k| nodes.get(k - 1)) {
        status.host_ip = Some(node.ipv4.to_string());
        status.host_ips = Some(vec![
            HostIP {
                ip: node.ipv4.to_string(),
            },
            HostIP {
                ip: node.ipv6.to_string(),
            },
        ]);
    }
}

fn pod_ports(pod: &Pod, id: &str, warnings: &mut Vec<String>) -> BTreeSet<PodPort> {
    let mut ports = BTreeSet::new();
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    for (c, container) in containers.enumerate() {
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let field = format!("spec.containers[{c}].ports[{p}]");
            let protocol_text = port.protocol.as_deref().unwrap_or("TCP");
            let Some(protocol) = Protocol::parse(Some(protocol_text)) else {
                warnings.push(format!(
                    "Pod {id}: {field}.protocol: {protocol_text:?} is not TCP, UDP or SCTP; port ignored"
                ));
                continue;
            };
            match u16::try_from(port.container_port) {
                Ok(number) if number > 0 => {
                    ports.insert(PodPort {
                        port: number,
                        protocol,
                    });
                }
                _ => warnings.push(format!(
                    "Pod {id}: {field}.containerPort: {} is not a port number; port ignored",
                    port.container_port
                )),
            }
        }
    }
    ports
}

/// Declares every namespace a pod or policy uses and labels them all.
fn complete_namespaces(objects: &mut Cluster) {
    let used: BTreeSet<String> = objects
        .pods
        .iter()
        .map(|p| &p.metadata)
        .chain(objects.policies.iter().map(|p| &p.metadata))
        .map(|m| m.namespace.clone().unwrap_or_else(|| "default".to_owned()))
        .collect();
    for name in used {
        let declared = objects
            .namespaces
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some(name.as_str()));
        if !declared {
            objects.namespaces.push(Namespace {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            });
        }
    }
    for ns in &mut objects.namespaces {
        let name = ns.metadata.name.clone().unwrap_or_default();
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
    for pod in &mut objects.pods {
        pod.metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned());
    }
}

fn node_object(node: &LabNode) -> Node {
    let cidrs = node.pod_cidrs();
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(BTreeMap::from([(
                nodes::HOSTNAME_LABEL.to_owned(),
                node.name.clone(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidrs[0].clone()),
            pod_cidrs: Some(cidrs.to_vec()),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    address: node.ipv4.to_string(),
                    type_: "InternalIP".to_owned(),
                },
                NodeAddress {
                    address: node.ipv6.to_string(),
                    type_: "InternalIP".to_owned(),
                },
                NodeAddress {
                    address: node.name.clone(),
                    type_: "Hostname".to_owned(),
                },
            ]),
            ..NodeStatus::default()
        }),
    }
}

fn scenario_error(pod_id: &str, field: &str, reason: &str) -> LabError {
    LabError::Scenario {
        object: format!("Pod {pod_id}"),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}
