//! Which pod-address sets one remote pod belongs to, without resolving the
//! whole cluster again.
//!
//! A pod on another node is never a policy target here, so it only ever
//! appears in the ruleset as an address: in the set of each selector peer
//! it matches, and in the named-port set of each egress rule whose peers
//! hold it and whose named ports it declares. [`PodMemberships`] answers
//! that for one pod from the policies the last full model resolved; the
//! agent uses it to turn a remote pod's change into set element changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::cluster::Snapshot;
use crate::pods::PodView;
use crate::policy::{
    labels_of, namespace_labels, parse_all, peer_identity, Peer, PolicyId, PortSpec,
};
use crate::resolve::NodeModel;
use crate::vocabulary::Protocol;

/// One set a pod's addresses belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Membership {
    /// The set of a selector peer (see [`crate::ResolvedPeer::Pods`]).
    Peer {
        /// The peer's identity.
        identity: String,
    },
    /// The named-port set of egress rule `rule` of `policy`, at the number
    /// the name has on this pod.
    NamedEgress {
        /// The policy.
        policy: PolicyId,
        /// The rule's position among the policy's egress rules.
        rule: usize,
        /// The protocol.
        protocol: Protocol,
        /// The port number on this pod.
        port: u16,
    },
}

/// An egress rule with named ports.
#[derive(Debug, Clone)]
struct NamedEgressRule {
    policy: PolicyId,
    rule: usize,
    /// `None`: every peer.
    peers: Option<Vec<Peer>>,
    named: Vec<(String, Protocol)>,
}

/// The selector peers and named-port egress rules of the policies a full
/// model resolved for one node.
#[derive(Debug, Clone)]
pub struct PodMemberships {
    node: String,
    pod_cidrs: Vec<IpNet>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Distinct selector peers (`Peer::Pods`) with their identities.
    peers: Vec<(Peer, String)>,
    named_egress: Vec<NamedEgressRule>,
}

impl PodMemberships {
    /// Collects them for the policies `model` (resolved from `snapshot`) holds.
    pub fn new(snapshot: &Snapshot, model: &NodeModel) -> Self {
        let resolved: BTreeSet<&PolicyId> =
            model.policies.iter().map(|policy| &policy.id).collect();
        let mut ignored = Vec::new();
        let policies = parse_all(snapshot.policies.iter().map(AsRef::as_ref), &mut ignored);
        let mut peers = BTreeMap::new();
        let mut named_egress = Vec::new();
        for policy in policies
            .iter()
            .filter(|policy| resolved.contains(&policy.id))
        {
            for rule in [&policy.ingress, &policy.egress]
                .into_iter()
                .flatten()
                .flatten()
            {
                for peer in rule.peers.iter().flatten() {
                    if let Peer::Pods { namespaces, pods } = peer {
                        peers
                            .entry(peer_identity(namespaces, pods))
                            .or_insert_with(|| peer.clone());
                    }
                }
            }
            for (index, rule) in policy.egress.iter().flatten().enumerate() {
                let named: Vec<(String, Protocol)> = rule
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|spec| match spec {
                        PortSpec::Named { protocol, name } => Some((name.clone(), *protocol)),
                        PortSpec::Range { .. } | PortSpec::Invalid => None,
                    })
                    .collect();
                if !named.is_empty() {
                    named_egress.push(NamedEgressRule {
                        policy: policy.id.clone(),
                        rule: index,
                        peers: rule.peers.clone(),
                        named,
                    });
                }
            }
        }
        Self {
            node: model.node.clone(),
            pod_cidrs: model.pod_cidrs.clone(),
            namespaces: namespace_labels(snapshot.namespaces.iter().map(AsRef::as_ref)),
            peers: peers
                .into_iter()
                .map(|(identity, peer)| (peer, identity))
                .collect(),
            named_egress,
        }
    }

    /// Whether `pod` is this node's business beyond its addresses: scheduled
    /// here, or holding an address in this node's pod CIDRs.
    pub fn is_local(&self, pod: &PodView) -> bool {
        pod.node_name.as_deref() == Some(self.node.as_str())
            || pod
                .ips
                .iter()
                .any(|ip| self.pod_cidrs.iter().any(|net| net.contains(ip)))
    }

    /// The sets each address of a counted remote pod belongs to; none for
    /// a pod that does not count.
    pub fn of(&self, pod: &PodView) -> Vec<(Membership, IpAddr)> {
        if !pod.counts() {
            return Vec::new();
        }
        let namespace_labels = labels_of(&self.namespaces, &pod.namespace);
        let selects = |peer: &Peer, address: IpAddr| match peer {
            Peer::Block(block) => block.contains(address),
            Peer::Pods { .. } | Peer::Invalid => {
                peer.selects_pod(&pod.namespace, &namespace_labels, &pod.labels)
            }
        };
        let mut memberships = Vec::new();
        for (peer, identity) in &self.peers {
            if peer.selects_pod(&pod.namespace, &namespace_labels, &pod.labels) {
                memberships.extend(pod.ips.iter().map(|address| {
                    let membership = Membership::Peer {
                        identity: identity.clone(),
                    };
                    (membership, *address)
                }));
            }
        }
        for rule in &self.named_egress {
            for &address in &pod.ips {
                let in_peers = rule
                    .peers
                    .as_ref()
                    .is_none_or(|peers| peers.iter().any(|peer| selects(peer, address)));
                if !in_peers {
                    continue;
                }
                for (name, protocol) in &rule.named {
                    if let Some(port) = pod.named_port(name, *protocol) {
                        let membership = Membership::NamedEgress {
                            policy: rule.policy.clone(),
                            rule: rule.rule,
                            protocol: *protocol,
                            port,
                        };
                        memberships.push((membership, address));
                    }
                }
            }
        }
        memberships.sort();
        memberships.dedup();
        memberships
    }
}
