//! The per-node policy model: which local pods each policy isolates, and
//! each rule's peers and ports resolved against the whole cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addresses::AddressSet;
use crate::cluster::Cluster;
use crate::error::ModelError;
use crate::evaluate::Protocol;
use crate::pods::{PodIndex, PodView};
use crate::policy::{labels_of, namespace_labels, parse_all, Peer, PolicyId, PortSpec, Rule};

/// Everything one node enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeModel {
    /// The node's name.
    pub node: String,
    /// The node's `spec.podCIDRs` (addresses there that belong to no known pod
    /// are unknown pods, whose traffic fails closed).
    pub pod_cidrs: Vec<IpNet>,
    /// Counted pods on this node, sorted by `namespace/name`.
    pub local_pods: Vec<LocalPod>,
    /// Policies that isolate at least one local pod, sorted by id.
    pub policies: Vec<ResolvedPolicy>,
    /// Invalid parts of objects, cluster-wide.
    pub errors: Vec<ModelError>,
}

/// A counted pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// `namespace/name`.
    pub key: String,
    /// Addresses the pod owns.
    pub ips: Vec<IpAddr>,
    /// Policies isolating its ingress (indices into [`NodeModel::policies`]).
    pub ingress: Vec<usize>,
    /// Policies isolating its egress (indices into [`NodeModel::policies`]).
    pub egress: Vec<usize>,
}

/// A policy with its rules resolved; a direction is `None` when the policy
/// does not isolate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPolicy {
    /// `namespace/name`.
    pub id: PolicyId,
    /// Ingress rules, when the policy isolates ingress.
    pub ingress: Option<Vec<ResolvedRule>>,
    /// Egress rules, when the policy isolates egress.
    pub egress: Option<Vec<ResolvedRule>>,
}

/// One rule: a connection matches when its peer matches and its port does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Who may connect (ingress: sources; egress: destinations).
    pub peers: Peers,
    /// On which destination ports.
    pub ports: Ports,
}

/// The peers of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// `from`/`to` omitted or empty: every address.
    Any,
    /// These addresses: pod peers' IPs and `ipBlock`s, normalised.
    Addresses {
        /// The addresses.
        addresses: AddressSet,
        /// Whether pod selectors contribute, so pods may join later.
        has_pod_selectors: bool,
    },
}

/// An inclusive destination port range of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// The protocol.
    pub protocol: Protocol,
    /// First port.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

/// A named port resolved on one destination pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPortEndpoint {
    /// The destination pod's address.
    pub address: IpAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// The number the name resolves to on that pod.
    pub port: u16,
}

/// The ports of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// `ports` omitted or empty: every port and protocol.
    Any,
    /// These ports (an empty list allows nothing).
    List {
        /// Numeric ports and ranges.
        ranges: Vec<PortRange>,
        /// Named ports resolved per destination pod address.
        named: Vec<NamedPortEndpoint>,
        /// Whether named ports are listed, so endpoints may join later.
        has_named: bool,
    },
}

/// Resolves the model for node `node`.
pub fn resolve(cluster: &Cluster, node: &str) -> NodeModel {
    let mut errors = Vec::new();
    let index = PodIndex::new(&cluster.pods);
    let namespaces = namespace_labels(&cluster.namespaces);
    let policies = parse_all(&cluster.policies, &mut errors);
    let pod_cidrs = node_pod_cidrs(cluster, node, &mut errors);

    let locals: Vec<&PodView> = index
        .pods
        .iter()
        .filter(|pod| pod.node_name.as_deref() == Some(node))
        .collect();
    let mut local_pods: Vec<LocalPod> = locals
        .iter()
        .map(|pod| LocalPod {
            key: pod.key(),
            ips: index.owned_ips(pod).collect(),
            ingress: vec![],
            egress: vec![],
        })
        .collect();
    let mut resolved = Vec::new();
    for policy in &policies {
        let targets: Vec<usize> = locals
            .iter()
            .enumerate()
            .filter(|(_, pod)| {
                pod.namespace == policy.id.namespace && policy.targets.selects(&pod.labels)
            })
            .map(|(position, _)| position)
            .collect();
        if targets.is_empty() || (policy.ingress.is_none() && policy.egress.is_none()) {
            continue;
        }
        let number = resolved.len();
        for &position in &targets {
            if policy.ingress.is_some() {
                local_pods[position].ingress.push(number);
            }
            if policy.egress.is_some() {
                local_pods[position].egress.push(number);
            }
        }
        let target_pods: Vec<&PodView> = targets.iter().map(|position| locals[*position]).collect();
        let resolver = Resolver {
            index: &index,
            namespaces: &namespaces,
        };
        resolved.push(ResolvedPolicy {
            id: policy.id.clone(),
            ingress: policy.ingress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| resolver.rule(rule, NamedOn::Targets(&target_pods)))
                    .collect()
            }),
            egress: policy.egress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| resolver.rule(rule, NamedOn::Peers))
                    .collect()
            }),
        });
    }
    local_pods.retain(|pod| !pod.ips.is_empty());
    NodeModel {
        node: node.to_owned(),
        pod_cidrs,
        local_pods,
        policies: resolved,
        errors,
    }
}

fn node_pod_cidrs(cluster: &Cluster, node: &str, errors: &mut Vec<ModelError>) -> Vec<IpNet> {
    let Some(spec) = cluster
        .nodes
        .iter()
        .find(|candidate| candidate.metadata.name.as_deref() == Some(node))
        .and_then(|found| found.spec.as_ref())
    else {
        return Vec::new();
    };
    let listed = spec
        .pod_cidrs
        .clone()
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| spec.pod_cidr.clone().into_iter().collect());
    listed
        .iter()
        .enumerate()
        .filter_map(|(position, text)| {
            let net = text.parse::<IpNet>().ok();
            if net.is_none() {
                errors.push(ModelError {
                    kind: "Node",
                    object: node.to_owned(),
                    field: format!("spec.podCIDRs[{position}]"),
                    problem: format!("{text:?} is not a CIDR"),
                });
            }
            net.map(|net| net.trunc())
        })
        .collect()
}

/// Where a rule's named ports resolve.
#[derive(Clone, Copy)]
enum NamedOn<'a> {
    /// Ingress: on the selected (destination) pods.
    Targets(&'a [&'a PodView]),
    /// Egress: on the destination peer pods.
    Peers,
}

struct Resolver<'a> {
    index: &'a PodIndex,
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl Resolver<'_> {
    fn rule(&self, rule: &Rule, named_on: NamedOn<'_>) -> ResolvedRule {
        let peers = match &rule.peers {
            None => Peers::Any,
            Some(list) => {
                let mut addresses = AddressSet::default();
                for peer in list {
                    match peer {
                        Peer::Block(block) => addresses.union(block),
                        Peer::Pods { .. } => {
                            for pod in &self.index.pods {
                                let labels = labels_of(self.namespaces, &pod.namespace);
                                if peer.selects_pod(&pod.namespace, &labels, &pod.labels) {
                                    for ip in self.index.owned_ips(pod) {
                                        addresses.insert(ip);
                                    }
                                }
                            }
                        }
                        Peer::Invalid => {}
                    }
                }
                let has_pod_selectors = list.iter().any(|peer| matches!(peer, Peer::Pods { .. }));
                Peers::Addresses {
                    addresses,
                    has_pod_selectors,
                }
            }
        };
        let ports = match &rule.ports {
            None => Ports::Any,
            Some(list) => {
                let mut ranges = Vec::new();
                let mut named = Vec::new();
                for spec in list {
                    match spec {
                        PortSpec::Range {
                            protocol,
                            first,
                            last,
                        } => {
                            ranges.push(PortRange {
                                protocol: *protocol,
                                first: *first,
                                last: *last,
                            });
                        }
                        PortSpec::Named { protocol, name } => {
                            named.extend(self.named_endpoints(named_on, &peers, name, *protocol));
                        }
                        PortSpec::Invalid => {}
                    }
                }
                ranges.sort_unstable();
                ranges.dedup();
                named.sort_unstable();
                named.dedup();
                let has_named = list
                    .iter()
                    .any(|spec| matches!(spec, PortSpec::Named { .. }));
                Ports::List {
                    ranges,
                    named,
                    has_named,
                }
            }
        };
        ResolvedRule { peers, ports }
    }

    fn named_endpoints(
        &self,
        named_on: NamedOn<'_>,
        peers: &Peers,
        name: &str,
        protocol: Protocol,
    ) -> Vec<NamedPortEndpoint> {
        let endpoints =
            |pod: &PodView, admits: &dyn Fn(IpAddr) -> bool| -> Vec<NamedPortEndpoint> {
                pod.named_port(name, protocol)
                    .map(|port| {
                        self.index
                            .owned_ips(pod)
                            .filter(|ip| admits(*ip))
                            .map(|address| NamedPortEndpoint {
                                address,
                                protocol,
                                port,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
        match named_on {
            NamedOn::Targets(targets) => targets
                .iter()
                .flat_map(|pod| endpoints(pod, &|_| true))
                .collect(),
            NamedOn::Peers => self
                .index
                .pods
                .iter()
                .flat_map(|pod| {
                    endpoints(pod, &|ip| match peers {
                        Peers::Any => true,
                        Peers::Addresses { addresses, .. } => addresses.contains(ip),
                    })
                })
                .collect(),
        }
    }
}
