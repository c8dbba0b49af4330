//! The semantic evaluator: allowed or denied for one connection, straight
//! from the objects and the spec, without sets or ranges of any kind.
//!
//! Spec (`NetworkPolicySpec`): a connection must be allowed by the source
//! pod's egress and by the destination pod's ingress. A pod is isolated in a
//! direction when any policy of that type selects it; it is then allowed what
//! at least one rule of one of those policies allows.
//!
//! ClusterNetworkPolicy (v1alpha2) wraps that per direction: the Admin tier
//! first (the first matching rule of the first policy by priority and name
//! decides; Accept and Deny are final, Pass skips the rest of the tier),
//! then NetworkPolicy when it isolates the pod, then the Baseline tier, then
//! allowed.

use std::net::IpAddr;

use crate::cluster::Cluster;
use crate::cluster_policy::{self, Action, ClusterPolicy, ClusterView, NodeAddresses, Tier};
use crate::pods::{PodIndex, PodView};
use crate::policy::{
    labels_of, namespace_labels, parse_all, Peer, Policy, PolicyId, PolicyView, PortSpec, Rule,
};
use crate::vocabulary::Protocol;

/// A new connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

/// The verdict of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The address is not a counted pod: NetworkPolicy does not apply.
    NotAPod,
    /// No policy of this direction selects the pod.
    NotIsolated {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// Allowed by this rule.
    Allowed {
        /// The pod, `namespace/name`.
        pod: String,
        /// The allowing policy.
        policy: PolicyId,
        /// The allowing rule's index.
        rule: usize,
    },
    /// Isolated and no rule allows it.
    Denied {
        /// The pod, `namespace/name`.
        pod: String,
        /// The policies isolating the pod in this direction.
        isolated_by: Vec<PolicyId>,
    },
    /// Between a pod and its own node (by the Node's `status.addresses`):
    /// NetworkPolicy always allows it, and ingress from the node (kubelet
    /// probes) always passes.
    OwnNode {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// A ClusterNetworkPolicy rule accepted or denied it (final).
    Cluster {
        /// The pod, `namespace/name`.
        pod: String,
        /// The deciding rule.
        rule: ClusterRuleRef,
    },
    /// A ClusterNetworkPolicy `Pass` rule skipped the rest of its tier;
    /// `then` is what decided after it.
    Passed {
        /// The passing rule.
        rule: ClusterRuleRef,
        /// The decision of the tiers below.
        then: Box<Decision>,
    },
}

/// A ClusterNetworkPolicy rule that decided a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRuleRef {
    /// The policy's tier.
    pub tier: Tier,
    /// The policy's name.
    pub policy: String,
    /// The rule's index in its direction's list.
    pub index: usize,
    /// The rule's name, if it has one.
    pub name: Option<String>,
    /// Accept, Deny or Pass.
    pub action: Action,
}

impl Decision {
    /// Whether this direction lets the connection through.
    pub fn is_allowed(&self) -> bool {
        match self {
            Self::Denied { .. } => false,
            Self::Cluster { rule, .. } => rule.action == Action::Accept,
            Self::Passed { then, .. } => then.is_allowed(),
            Self::NotAPod
            | Self::NotIsolated { .. }
            | Self::Allowed { .. }
            | Self::OwnNode { .. } => true,
        }
    }
}

/// Evaluates `connection`: the source's egress decision, then the destination's
/// ingress decision. The connection is allowed when both allow it.
pub fn evaluate(cluster: &Cluster, connection: &Connection) -> (Decision, Decision) {
    let index = PodIndex::from_pods(&cluster.pods);
    let mut errors = Vec::new();
    let views: Vec<PolicyView> = cluster
        .policies
        .iter()
        .map(PolicyView::from_policy)
        .collect();
    let policies = parse_all(&views, &mut errors);
    let (cluster_policies, _) = cluster_policy::parse_all(&cluster.cluster_policies, &mut errors);
    let namespaces = namespace_labels(&cluster.namespaces);
    let nodes = NodeAddresses::new(&cluster.nodes);
    let evaluator = Evaluator {
        cluster,
        index: &index,
        policies: &policies,
        cluster_policies: &cluster_policies,
        view: ClusterView {
            pods: &index,
            namespaces: &namespaces,
            nodes: &nodes,
        },
    };
    let egress = evaluator.decide(connection, Side::Egress);
    let ingress = evaluator.decide(connection, Side::Ingress);
    (egress, ingress)
}

#[derive(Clone, Copy)]
enum Side {
    Egress,
    Ingress,
}

struct Evaluator<'a> {
    cluster: &'a Cluster,
    index: &'a PodIndex,
    policies: &'a [&'a Policy],
    /// In evaluation order (tier, priority, name).
    cluster_policies: &'a [ClusterPolicy],
    view: ClusterView<'a>,
}

/// What one ClusterNetworkPolicy tier made of a direction.
enum TierOutcome {
    /// Accept or Deny: final.
    Decided(ClusterRuleRef),
    /// A Pass rule: on to the next tier.
    Passed(ClusterRuleRef),
    /// No rule matched.
    NoMatch,
}

impl Evaluator<'_> {
    fn decide(&self, connection: &Connection, side: Side) -> Decision {
        let (own, other) = match side {
            Side::Egress => (connection.source, connection.destination),
            Side::Ingress => (connection.destination, connection.source),
        };
        let Some(pod) = self.index.owner(own) else {
            return Decision::NotAPod;
        };
        let own_node = self
            .view
            .nodes
            .is_address_of(pod.node_name.as_deref(), other);
        if own_node && matches!(side, Side::Ingress) {
            return Decision::OwnNode { pod: pod.key() };
        }
        let mut passes = Vec::new();
        for tier in [Tier::Admin, Tier::Baseline] {
            if tier == Tier::Baseline {
                let decision = self.network_policy_decides(pod, other, connection, side);
                if !matches!(decision, Decision::NotIsolated { .. }) {
                    let decision = if own_node {
                        Decision::OwnNode { pod: pod.key() }
                    } else {
                        decision
                    };
                    return wrap(passes, decision);
                }
            }
            match self.tier_decides(tier, pod, other, connection, side) {
                TierOutcome::Decided(rule) => {
                    return wrap(
                        passes,
                        Decision::Cluster {
                            pod: pod.key(),
                            rule,
                        },
                    )
                }
                TierOutcome::Passed(rule) => passes.push(rule),
                TierOutcome::NoMatch => {}
            }
        }
        wrap(passes, Decision::NotIsolated { pod: pod.key() })
    }

    fn tier_decides(
        &self,
        tier: Tier,
        pod: &PodView,
        other: IpAddr,
        connection: &Connection,
        side: Side,
    ) -> TierOutcome {
        let direction = match side {
            Side::Egress => crate::Direction::Egress,
            Side::Ingress => crate::Direction::Ingress,
        };
        let selecting = self
            .cluster_policies
            .iter()
            .filter(|policy| policy.tier == tier && self.view.subject_selects(policy, pod));
        for policy in selecting {
            for rule in policy.rules(direction) {
                if !self.view.rule_matches(
                    rule,
                    other,
                    connection.destination,
                    connection.protocol,
                    connection.port,
                ) {
                    continue;
                }
                let decided = ClusterRuleRef {
                    tier,
                    policy: policy.name.clone(),
                    index: rule.index,
                    name: rule.name.clone(),
                    action: rule.action,
                };
                return match rule.action {
                    Action::Pass => TierOutcome::Passed(decided),
                    Action::Accept | Action::Deny => TierOutcome::Decided(decided),
                };
            }
        }
        TierOutcome::NoMatch
    }

    fn network_policy_decides(
        &self,
        pod: &PodView,
        other: IpAddr,
        connection: &Connection,
        side: Side,
    ) -> Decision {
        let mut isolated_by = Vec::new();
        for policy in self.policies {
            if policy.id.namespace != pod.namespace || !policy.targets.selects(&pod.labels) {
                continue;
            }
            let rules = match side {
                Side::Egress => policy.egress.as_ref(),
                Side::Ingress => policy.ingress.as_ref(),
            };
            let Some(rules) = rules else { continue };
            if let Some(rule) = rules
                .iter()
                .position(|rule| self.rule_allows(rule, other, connection))
            {
                return Decision::Allowed {
                    pod: pod.key(),
                    policy: policy.id.clone(),
                    rule,
                };
            }
            isolated_by.push(policy.id.clone());
        }
        if isolated_by.is_empty() {
            Decision::NotIsolated { pod: pod.key() }
        } else {
            Decision::Denied {
                pod: pod.key(),
                isolated_by,
            }
        }
    }
}

/// `decision`, behind the Pass rules that led to it (outermost first).
fn wrap(passes: Vec<ClusterRuleRef>, decision: Decision) -> Decision {
    passes
        .into_iter()
        .rev()
        .fold(decision, |then, rule| Decision::Passed {
            rule,
            then: Box::new(then),
        })
}

impl Evaluator<'_> {
    fn rule_allows(&self, rule: &Rule, peer_address: IpAddr, connection: &Connection) -> bool {
        let peer_matches = rule.peers.as_ref().is_none_or(|peers| {
            peers
                .iter()
                .any(|peer| self.peer_matches(peer, peer_address))
        });
        let port_matches = rule
            .ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|port| self.port_matches(port, connection)));
        peer_matches && port_matches
    }

    fn peer_matches(&self, peer: &Peer, address: IpAddr) -> bool {
        match peer {
            Peer::Block(block) => block.contains(address),
            Peer::Pods { .. } => self.index.owner(address).is_some_and(|pod: &PodView| {
                let namespaces = namespace_labels(&self.cluster.namespaces);
                peer.selects_pod(
                    &pod.namespace,
                    &labels_of(&namespaces, &pod.namespace),
                    &pod.labels,
                )
            }),
            Peer::Invalid => false,
        }
    }

    fn port_matches(&self, port: &PortSpec, connection: &Connection) -> bool {
        match port {
            PortSpec::Range {
                protocol,
                first,
                last,
            } => *protocol == connection.protocol && (*first..=*last).contains(&connection.port),
            // The name resolves on the destination pod in both directions: on
            // ingress it is the selected pod, on egress the peer.
            PortSpec::Named { protocol, name } => {
                *protocol == connection.protocol
                    && self
                        .index
                        .owner(connection.destination)
                        .and_then(|pod| pod.named_port(name, *protocol))
                        == Some(connection.port)
            }
            PortSpec::Invalid => false,
        }
    }
}
