//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`): the Admin
//! and Baseline tiers around NetworkPolicy.
//!
//! Per direction, a connection runs through the Admin tier (policies by
//! priority, then name; rules in written order; the first rule whose peers
//! and protocols match decides: Accept and Deny are final for the
//! direction, Pass skips the rest of the tier), then NetworkPolicy (final
//! when one isolates the pod in that direction), then the Baseline tier,
//! then the default: allowed. See `shared/notes/cnp-semantics.md`.

pub mod api;
mod parse;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

pub(crate) use parse::{
    parse_all, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Subject, Traffic,
};
pub use parse::{Action, PriorityTie, Tier, MAX_ITEMS, MAX_PRIORITY, MAX_RULE_NAME_LEN};

use crate::error::ModelError;
use crate::pods::{PodIndex, PodView};
use crate::vocabulary::Protocol;

use self::api::ClusterNetworkPolicy;

/// What is wrong with a set of ClusterNetworkPolicies, as the agent reports
/// it: every invalid part (naming `cnp/NAME` and the field, saying how it
/// fails closed) and every pair of policies that share tier and priority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Invalid parts, each naming its object and field.
    pub errors: Vec<ModelError>,
    /// Neighbours in evaluation order that share a priority.
    pub ties: Vec<PriorityTie>,
}

/// Validates `objects` as evaluation and resolution will read them.
pub fn validate<'a>(objects: impl IntoIterator<Item = &'a ClusterNetworkPolicy>) -> Validation {
    let mut errors = Vec::new();
    let (_, ties) = parse_all(objects, &mut errors);
    Validation { errors, ties }
}

/// The labels and addresses of every Node, for `nodes` peers.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeAddresses {
    /// Name, labels and addresses of each Node.
    nodes: Vec<(String, BTreeMap<String, String>, Vec<IpAddr>)>,
}

impl NodeAddresses {
    /// Every parseable address of each Node's `status.addresses`.
    pub(crate) fn new<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let nodes = nodes
            .into_iter()
            .map(|node| {
                let labels = node.metadata.labels.clone().unwrap_or_default();
                let addresses = node
                    .status
                    .as_ref()
                    .and_then(|status| status.addresses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|address| address.address.trim().parse().ok())
                    .collect();
                let name = node.metadata.name.clone().unwrap_or_default();
                (name, labels, addresses)
            })
            .collect();
        Self { nodes }
    }

    /// The addresses of the Nodes `selector` selects.
    pub(crate) fn selected_by<'a>(
        &'a self,
        selector: &'a crate::selector::Selector,
    ) -> impl Iterator<Item = IpAddr> + 'a {
        self.nodes
            .iter()
            .filter(|(_, labels, _)| selector.matches(labels))
            .flat_map(|(_, _, addresses)| addresses.iter().copied())
    }

    /// Whether `address` is one of node `name`'s.
    pub(crate) fn is_address_of(&self, name: Option<&str>, address: IpAddr) -> bool {
        self.nodes
            .iter()
            .any(|(node, _, addresses)| Some(node.as_str()) == name && addresses.contains(&address))
    }
}

/// What matching a ClusterNetworkPolicy needs to know of the cluster.
pub(crate) struct ClusterView<'a> {
    pub(crate) pods: &'a PodIndex,
    /// Labels of each namespace, with the implicit name label.
    pub(crate) namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) nodes: &'a NodeAddresses,
}

impl ClusterView<'_> {
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        crate::policy::labels_of(self.namespaces, namespace)
    }

    /// Whether `policy` applies to `pod` (a counted pod: never host-network).
    pub(crate) fn subject_selects(&self, policy: &ClusterPolicy, pod: &PodView) -> bool {
        match &policy.subject {
            Subject::Pods { namespaces, pods } => {
                namespaces.matches(&self.namespace_labels(&pod.namespace))
                    && pods.matches(&pod.labels)
            }
            Subject::Everyone => true,
        }
    }

    /// Whether `rule` matches a connection whose other end is `peer`.
    pub(crate) fn rule_matches(
        &self,
        rule: &ClusterRule,
        peer: IpAddr,
        destination: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        match &rule.traffic {
            Traffic::All => true,
            Traffic::Matching { peers, protocols } => {
                peers
                    .iter()
                    .any(|candidate| self.peer_matches(candidate, peer))
                    && protocols.as_ref().is_none_or(|entries| {
                        entries
                            .iter()
                            .any(|entry| self.port_matches(entry, destination, protocol, port))
                    })
            }
        }
    }

    fn peer_matches(&self, peer: &ClusterPeer, address: IpAddr) -> bool {
        match peer {
            ClusterPeer::Pods { namespaces, pods } => self.pods.owner(address).is_some_and(|pod| {
                namespaces.matches(&self.namespace_labels(&pod.namespace))
                    && pods.matches(&pod.labels)
            }),
            ClusterPeer::Networks(blocks) => blocks.contains(address),
            ClusterPeer::Nodes(selector) => {
                self.nodes.selected_by(selector).any(|node| node == address)
            }
        }
    }

    fn port_matches(
        &self,
        entry: &ClusterPort,
        destination: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        match entry {
            ClusterPort::Range {
                protocol: wanted,
                first,
                last,
            } => *wanted == protocol && (*first..=*last).contains(&port),
            // The name resolves on the destination pod in both directions,
            // with whatever protocol that pod declares for it.
            ClusterPort::Named(name) => {
                self.pods
                    .owner(destination)
                    .and_then(|pod| pod.named_port(name, protocol))
                    == Some(port)
            }
        }
    }
}
