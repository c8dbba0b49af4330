//! Remote pods without a full model: which pod-address sets one remote pod
//! belongs to, and whether its change can be judged from that alone.
//!
//! A pod on another node is never a policy target here, so it only ever
//! appears in the ruleset as an address: in the set of each selector peer
//! it matches, and in the named-port set of each egress rule whose peers
//! hold it and whose named ports it declares. [`PodMemberships`] answers
//! that for one pod from the policies a full model resolved (built by
//! [`crate::resolve`] from the policies it parsed, never parsed again).
//!
//! [`RemotePods`] adds the model's address-owner rule, kept incrementally:
//! the counted pods claiming each address. A change needs the full model
//! when it touches what the model decides structurally: a pod scheduled on
//! this node or holding an address in its pod CIDRs, an address another pod
//! also claims (the owner rule), and the first or last pod of an address
//! family (pod-address sets exist only for families in use).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::cluster_policy::{ClusterPeer, ClusterPolicy, ClusterPort, Traffic};
use crate::pods::PodView;
use crate::policy::{labels_of, peer_identity, NamespaceScope, Peer, Policy, PolicyId, PortSpec};
use crate::policy_change::PolicyVersion;
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
#[derive(Debug, Clone, Default)]
pub struct PodMemberships {
    node: String,
    pod_cidrs: Vec<IpNet>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Distinct selector peers (`Peer::Pods`) by identity, with how many
    /// policies use them (a policy event removes a peer with its last user).
    peers: BTreeMap<String, (Peer, usize)>,
    named_egress: Vec<NamedEgressRule>,
    /// Whether a ClusterNetworkPolicy egress rule has named ports: its
    /// per-destination sets are not tracked here, so every remote change
    /// takes the full model.
    cluster_named_egress: bool,
}

impl PodMemberships {
    /// Collects them from the parsed `policies` a model of `node` resolved.
    pub(crate) fn new<'a>(
        node: &str,
        pod_cidrs: &[IpNet],
        namespaces: &BTreeMap<String, BTreeMap<String, String>>,
        policies: impl IntoIterator<Item = &'a Policy>,
    ) -> Self {
        let mut memberships = Self {
            node: node.to_owned(),
            pod_cidrs: pod_cidrs.to_vec(),
            namespaces: namespaces.clone(),
            peers: BTreeMap::new(),
            named_egress: Vec::new(),
            cluster_named_egress: false,
        };
        for policy in policies {
            memberships.add_policy(policy);
        }
        memberships
    }

    /// Counts the selector peers and named-port egress rules of `policy`
    /// (one the model resolves).
    pub(crate) fn add_policy(&mut self, policy: &Policy) {
        for (identity, peer) in selector_peers(policy) {
            self.peers.entry(identity).or_insert((peer, 0)).1 += 1;
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
                self.named_egress.push(NamedEgressRule {
                    policy: policy.id.clone(),
                    rule: index,
                    peers: rule.peers.clone(),
                    named,
                });
            }
        }
    }

    /// Forgets what [`Self::add_policy`] counted for `policy`.
    pub(crate) fn remove_policy(&mut self, policy: &Policy) {
        for (identity, _) in selector_peers(policy) {
            if let Some((_, users)) = self.peers.get_mut(&identity) {
                *users -= 1;
                if *users == 0 {
                    self.peers.remove(&identity);
                }
            }
        }
        self.named_egress.retain(|rule| rule.policy != policy.id);
    }

    /// Adds the selector peers of the ClusterNetworkPolicies a model of
    /// this node resolved (they share the pod-address sets of equal
    /// NetworkPolicy peers).
    pub(crate) fn with_cluster_policies(mut self, policies: &[&ClusterPolicy]) -> Self {
        for policy in policies {
            for rule in policy.ingress.iter().chain(&policy.egress) {
                let Traffic::Matching { peers, .. } = &rule.traffic else {
                    continue;
                };
                for peer in peers {
                    if let ClusterPeer::Pods { namespaces, pods } = peer {
                        let scope = NamespaceScope::Matching(namespaces.clone());
                        let identity = peer_identity(&scope, pods);
                        let peer = Peer::Pods {
                            namespaces: scope,
                            pods: pods.clone(),
                        };
                        self.peers.entry(identity).or_insert((peer, 0)).1 += 1;
                    }
                }
            }
            self.cluster_named_egress |= policy.egress.iter().any(|rule| {
                matches!(&rule.traffic, Traffic::Matching { protocols: Some(ports), .. }
                    if ports.iter().any(|port| matches!(port, ClusterPort::Named(_))))
            });
        }
        self
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
        for (identity, (peer, _)) in &self.peers {
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

/// The distinct selector peers of `policy`'s rules, by identity (a peer
/// repeated inside one policy counts once).
fn selector_peers(policy: &Policy) -> BTreeMap<String, Peer> {
    let mut peers = BTreeMap::new();
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
    peers
}

/// One pod's change since the last model, as the pod store saw it.
#[derive(Debug, Clone)]
pub struct PodChange {
    /// The pod before (`None`: created).
    pub before: Option<Arc<PodView>>,
    /// The pod after (`None`: deleted).
    pub after: Option<Arc<PodView>>,
}

/// The sets a batch of remote pod changes makes addresses leave and join.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Memberships of the pods as they were.
    pub removed: BTreeSet<(Membership, IpAddr)>,
    /// Memberships of the pods as they are.
    pub added: BTreeSet<(Membership, IpAddr)>,
}

/// What a full model knew about the cluster's pods, kept up to date by
/// [`RemotePods::apply`] so that remote pods' changes need no full model.
#[derive(Debug, Clone, Default)]
pub struct RemotePods {
    memberships: PodMemberships,
    /// Counted pods claiming each address.
    claims: HashMap<IpAddr, u32>,
    /// Addresses with a claim, per family (v4, v6).
    claimed_per_family: [usize; 2],
}

fn family_index(address: IpAddr) -> usize {
    usize::from(address.is_ipv6())
}

impl RemotePods {
    /// The state of a model whose counted pods are `pods`.
    pub(crate) fn new<'a>(
        memberships: PodMemberships,
        pods: impl IntoIterator<Item = &'a PodView>,
    ) -> Self {
        let mut claims: HashMap<IpAddr, u32> = HashMap::new();
        for pod in pods {
            for address in &pod.ips {
                *claims.entry(*address).or_default() += 1;
            }
        }
        let mut claimed_per_family = [0; 2];
        for address in claims.keys() {
            claimed_per_family[family_index(*address)] += 1;
        }
        Self {
            memberships,
            claims,
            claimed_per_family,
        }
    }

    /// Follows one policy's change: `before` and `after` are its versions
    /// (each counted only when the model resolves it), so that remote pods'
    /// changes keep being judged against the policies in force.
    pub fn replace_policy(
        &mut self,
        before: Option<&PolicyVersion>,
        after: Option<&PolicyVersion>,
    ) {
        if let Some(before) = before.filter(|version| version.resolved.is_some()) {
            self.memberships.remove_policy(&before.parsed);
        }
        if let Some(after) = after.filter(|version| version.resolved.is_some()) {
            self.memberships.add_policy(&after.parsed);
        }
    }

    /// The memberships `changes` remove and add, or `None` when one of them
    /// needs the full model (see the module doc). On `Some`, the state
    /// counts the changes; on `None` it is unchanged.
    pub fn apply(&mut self, changes: &[PodChange]) -> Option<MembershipDelta> {
        if self.memberships.cluster_named_egress {
            return None;
        }
        let mut claim_deltas: HashMap<IpAddr, i64> = HashMap::new();
        let mut delta = MembershipDelta::default();
        for change in changes {
            for (pod, sign) in [(&change.before, -1), (&change.after, 1)] {
                let Some(pod) = pod else { continue };
                if self.memberships.is_local(pod) {
                    return None;
                }
                if !pod.counts() {
                    continue;
                }
                for address in &pod.ips {
                    let pending = claim_deltas.entry(*address).or_default();
                    let held = i64::from(self.claims.get(address).copied().unwrap_or(0)) + *pending;
                    // Removing: this pod must be the only claimant; adding: nobody may claim it.
                    if held != i64::from(sign == -1) {
                        return None;
                    }
                    *pending += sign;
                }
                let memberships = self.memberships.of(pod);
                if sign < 0 {
                    delta.removed.extend(memberships);
                } else {
                    delta.added.extend(memberships);
                }
            }
        }
        let mut claimed_per_family = self.claimed_per_family;
        for (address, change) in &claim_deltas {
            let before = self.claims.get(address).copied().unwrap_or(0);
            let after = i64::from(before) + change;
            match (before > 0, after > 0) {
                (false, true) => claimed_per_family[family_index(*address)] += 1,
                (true, false) => claimed_per_family[family_index(*address)] -= 1,
                _ => {}
            }
        }
        let families_in_use = |counts: [usize; 2]| counts.map(|count| count > 0);
        if families_in_use(claimed_per_family) != families_in_use(self.claimed_per_family) {
            return None;
        }
        for (address, change) in claim_deltas {
            let count = self.claims.entry(address).or_default();
            // The checks above keep every count at 0 or 1.
            *count = u32::try_from(i64::from(*count) + change).unwrap_or(0);
            if *count == 0 {
                self.claims.remove(&address);
            }
        }
        self.claimed_per_family = claimed_per_family;
        Some(delta)
    }
}
