//! Rule counters → traffic per policy and direction.
//!
//! The compiler gives every allow rule and every deny rule a `counter`
//! ([`nftpol_ruleset::compile`]) and says, in its [`Provenance`], what each
//! rule of each chain is for: nothing is parsed back out of names or
//! comments (comments are truncated to 128 bytes, names to 255). A counter
//! is
//! - an allow rule of a policy chain: that policy's allowed traffic;
//! - the deny of a group chain (whose rules jump to the chains of every
//!   policy isolating a set of pods): traffic denied to those pods, counted
//!   for each of the group's policies and once in the per-direction total;
//! - the unknown-pod drop of a base chain: traffic of unknown pods on this
//!   node;
//! - a rule of a ClusterNetworkPolicy chain: that policy rule's traffic
//!   (accepted, denied or passed on), summed over the nft rules it became.
//!
//! Kernel counters start from 0 whenever a rule is (re-)added: a chain whose
//! rules change is flushed and refilled, a group chain disappears with its
//! pod combination. Exported totals must never go down, so [`TrafficTracker`]
//! turns successive reads into increments per rule (keyed by chain and
//! position) and forgets a chain's previous values when a commit replaced
//! its rules.

use std::collections::{BTreeMap, BTreeSet};

use nftpol_model::cluster_policy::{Action, Tier};
use nftpol_model::{Direction, PolicyId};
use nftpol_netlink::RuleCounter;
use nftpol_ruleset::catalogue::{ChainName, Provenance, RuleRole};

/// Why denied traffic was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DenyReason {
    /// The pod is isolated and none of its policies allowed the traffic.
    Isolated,
    /// The address is in this node's pod CIDRs but no known pod owns it.
    UnknownPod,
}

impl DenyReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DenyReason::Isolated => "isolated",
            DenyReason::UnknownPod => "unknown_pod",
        }
    }
}

/// One policy in one direction: the key of the per-policy series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyDirection {
    /// The policy.
    pub policy: PolicyId,
    /// The direction.
    pub direction: Direction,
}

/// One ClusterNetworkPolicy rule in one direction: the key of its series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterRuleKey {
    /// The policy's tier.
    pub tier: Tier,
    /// The policy's name.
    pub policy: String,
    /// The rule's index in its direction.
    pub rule: usize,
    /// What the rule does.
    pub action: Action,
    /// The direction.
    pub direction: Direction,
}

/// Every ClusterNetworkPolicy rule with a counter in the ruleset
/// `provenance` describes: the per-rule series that exist.
pub fn cluster_rule_series(provenance: &Provenance) -> BTreeSet<ClusterRuleKey> {
    provenance
        .chains
        .values()
        .flat_map(|origin| {
            origin
                .rules
                .iter()
                .filter_map(move |role| cluster_rule_key(&origin.chain, role))
        })
        .collect()
}

fn cluster_rule_key(chain: &ChainName, role: &RuleRole) -> Option<ClusterRuleKey> {
    match (chain, role) {
        (
            ChainName::ClusterPolicy { policy, direction },
            RuleRole::ClusterRule {
                tier, rule, action, ..
            },
        ) => Some(ClusterRuleKey {
            tier: *tier,
            policy: policy.clone(),
            rule: *rule,
            action: *action,
            direction: *direction,
        }),
        _ => None,
    }
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, other: Traffic) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Every policy and direction with a chain in the ruleset `provenance`
/// describes: the per-policy series that exist.
pub fn policy_series(provenance: &Provenance) -> BTreeSet<PolicyDirection> {
    provenance
        .chains
        .values()
        .filter_map(|origin| match &origin.chain {
            ChainName::Policy { policy, direction } => Some(PolicyDirection {
                policy: policy.clone(),
                direction: *direction,
            }),
            _ => None,
        })
        .collect()
}

/// Traffic counted since the previous read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increments {
    /// Accepted by a policy's allow rules.
    pub allowed: BTreeMap<PolicyDirection, Traffic>,
    /// Denied to pods a policy isolates (shared by every policy of a group).
    pub policy_denied: BTreeMap<PolicyDirection, Traffic>,
    /// Denied, once per packet.
    pub denied: BTreeMap<(Direction, DenyReason), Traffic>,
    /// Matched by a ClusterNetworkPolicy rule.
    pub cluster_rules: BTreeMap<ClusterRuleKey, Traffic>,
}

/// Successive counter reads → increments that never go backwards.
#[derive(Debug, Clone, Default)]
pub struct TrafficTracker {
    /// The previous read, per (chain, rule position).
    previous: BTreeMap<(String, usize), Traffic>,
}

impl TrafficTracker {
    /// Forgets the previous values of `chains`, whose rules a commit
    /// replaced: their counters restarted from 0.
    pub fn forget_chains(&mut self, chains: &BTreeSet<String>) {
        self.previous
            .retain(|(chain, _), _| !chains.contains(chain));
    }

    /// The traffic counted since the previous read, attributed through the
    /// provenance of the committed ruleset.
    /// A counter below its previous value restarted (its rule was replaced
    /// in a way the tracker was not told about) and counts from 0.
    pub fn observe(&mut self, provenance: &Provenance, counters: &[RuleCounter]) -> Increments {
        let mut increments = Increments::default();
        let mut current = BTreeMap::new();
        for counter in counters {
            let key = (counter.chain.clone(), counter.rule);
            let now = Traffic {
                packets: counter.packets,
                bytes: counter.bytes,
            };
            let before = self.previous.get(&key).copied().unwrap_or_default();
            let delta = if now.packets < before.packets || now.bytes < before.bytes {
                now
            } else {
                Traffic {
                    packets: now.packets - before.packets,
                    bytes: now.bytes - before.bytes,
                }
            };
            current.insert(key, now);
            match provenance.rule(&counter.chain, counter.rule) {
                Some((ChainName::Policy { policy, direction }, RuleRole::Allow { .. })) => {
                    let owner = PolicyDirection {
                        policy: policy.clone(),
                        direction: *direction,
                    };
                    increments.allowed.entry(owner).or_default().add(delta);
                }
                Some((
                    ChainName::Group {
                        direction,
                        policies,
                    },
                    RuleRole::IsolatedDeny,
                )) => {
                    for policy in policies {
                        let owner = PolicyDirection {
                            policy: policy.clone(),
                            direction: *direction,
                        };
                        increments
                            .policy_denied
                            .entry(owner)
                            .or_default()
                            .add(delta);
                    }
                    increments
                        .denied
                        .entry((*direction, DenyReason::Isolated))
                        .or_default()
                        .add(delta);
                }
                Some((ChainName::Base { direction, .. }, RuleRole::UnknownPodDrop)) => {
                    increments
                        .denied
                        .entry((*direction, DenyReason::UnknownPod))
                        .or_default()
                        .add(delta);
                }
                Some((
                    chain @ ChainName::ClusterPolicy { .. },
                    role @ RuleRole::ClusterRule { .. },
                )) => {
                    if let Some(key) = cluster_rule_key(chain, role) {
                        increments.cluster_rules.entry(key).or_default().add(delta);
                    }
                }
                other => {
                    tracing::debug!(chain = %counter.chain, rule = counter.rule, role = ?other, "counter of no known owner");
                }
            }
        }
        self.previous = current;
        increments
    }
}

#[cfg(test)]
mod tests {
    use nftpol_model::{manifests, resolve};
    use nftpol_ruleset::catalogue::ChainOrigin;
    use nftpol_ruleset::compile::{compile, CompileOptions};

    use super::*;

    /// One isolated pod with ingress and egress policies, two pods sharing
    /// a group, and a policy that allows all egress.
    const CLUSTER: &str = r"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24, fd00:10:244:1::/64]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}, {ip: 'fd00:10:244:1::10'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.11}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-b, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{ports: [{port: 443}]}], egress: [{}]}
";

    fn id(namespace: &str, name: &str) -> PolicyId {
        PolicyId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn counter(chain: &str, rule: usize, packets: u64) -> RuleCounter {
        RuleCounter {
            chain: chain.to_owned(),
            rule,
            comment: None,
            packets,
            bytes: packets * 100,
        }
    }

    fn provenance() -> (Provenance, String, String) {
        let policy = id("shop", "db-allow");
        let chain_key = ChainName::Policy {
            policy: policy.clone(),
            direction: Direction::Ingress,
        };
        let group_key = ChainName::Group {
            direction: Direction::Ingress,
            policies: vec![policy.clone()],
        };
        let (chain, group) = (chain_key.name(), group_key.name());
        let mut provenance = Provenance::default();
        provenance.chains.insert(
            chain.clone(),
            ChainOrigin {
                chain: chain_key,
                rules: vec![RuleRole::Allow { rule: 0 }],
            },
        );
        provenance.chains.insert(
            group.clone(),
            ChainOrigin {
                chain: group_key,
                rules: vec![RuleRole::EnterPolicy(policy), RuleRole::IsolatedDeny],
            },
        );
        (provenance, chain, group)
    }

    #[test]
    fn increments_never_go_backwards() {
        struct Case {
            name: &'static str,
            read: Vec<RuleCounter>,
            forgotten: Vec<String>,
            allowed: u64,
            denied: u64,
        }
        let (provenance, chain, group) = provenance();
        let key = PolicyDirection {
            policy: id("shop", "db-allow"),
            direction: Direction::Ingress,
        };
        let traffic = |packets| Traffic {
            packets,
            bytes: packets * 100,
        };
        let mut tracker = TrafficTracker::default();
        let cases = vec![
            Case {
                name: "first read counts everything",
                read: vec![counter(&chain, 0, 5), counter(&group, 1, 2)],
                forgotten: vec![],
                allowed: 5,
                denied: 2,
            },
            Case {
                name: "growth counts the difference",
                read: vec![counter(&chain, 0, 8), counter(&group, 1, 2)],
                forgotten: vec![],
                allowed: 3,
                denied: 0,
            },
            Case {
                name: "a replaced chain restarts from 0 even if it grew past the old value",
                read: vec![counter(&chain, 0, 9), counter(&group, 1, 3)],
                forgotten: vec![chain.clone()],
                allowed: 9,
                denied: 1,
            },
            Case {
                name: "a counter that went down restarted",
                read: vec![counter(&chain, 0, 4), counter(&group, 1, 3)],
                forgotten: vec![],
                allowed: 4,
                denied: 0,
            },
        ];
        for Case {
            name,
            read,
            forgotten,
            allowed,
            denied,
        } in cases
        {
            tracker.forget_chains(&forgotten.into_iter().collect());
            let increments = tracker.observe(&provenance, &read);
            assert_eq!(
                increments.allowed.get(&key).copied().unwrap_or_default(),
                traffic(allowed),
                "case {name}"
            );
            assert_eq!(
                increments
                    .policy_denied
                    .get(&key)
                    .copied()
                    .unwrap_or_default(),
                traffic(denied),
                "case {name}"
            );
            assert_eq!(
                increments
                    .denied
                    .get(&(Direction::Ingress, DenyReason::Isolated))
                    .copied()
                    .unwrap_or_default(),
                traffic(denied),
                "case {name}"
            );
        }
    }

    #[test]
    fn every_counter_of_a_compiled_ruleset_has_an_owner() {
        let with_tiers = format!(
            "{CLUSTER}---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: guard}}
spec:
  tier: Admin
  priority: 1
  subject: {{namespaces: {{}}}}
  ingress:
  - {{action: Deny, from: [{{namespaces: {{matchLabels: {{team: red}}}}}}]}}
  - {{action: Pass, from: [{{namespaces: {{}}}}], protocols: [{{tcp: {{destinationPort: {{number: 80}}}}}}, {{udp: {{destinationPort: {{number: 53}}}}}}]}}
"
        );
        let cluster = manifests::parse(&with_tiers)
            .expect("manifests parse")
            .cluster;
        let model = resolve(&cluster, "node-1");
        assert!(
            model.policies.len() >= 2,
            "the fixture isolates with several policies"
        );
        let compiled = compile(&model, CompileOptions::default());
        let counters: Vec<RuleCounter> = compiled
            .ruleset
            .chains
            .values()
            .flat_map(|chain| {
                chain
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, rule)| rule.counter)
                    .map(|(position, _)| counter(&chain.name, position, 1))
            })
            .collect();
        assert!(!counters.is_empty(), "the ruleset has counters");
        let increments = TrafficTracker::default().observe(&compiled.provenance, &counters);
        let attributed: u64 = increments
            .allowed
            .values()
            .chain(increments.denied.values())
            .chain(increments.cluster_rules.values())
            .map(|traffic| traffic.packets)
            .sum();
        assert_eq!(
            attributed,
            counters.len() as u64,
            "every counter is attributed to a policy, a deny reason or a cluster rule exactly once"
        );
        let guard: Vec<(usize, Action, u64)> = increments
            .cluster_rules
            .iter()
            .map(|(key, traffic)| (key.rule, key.action, traffic.packets))
            .collect();
        assert_eq!(
            guard,
            [(0, Action::Deny, 2), (1, Action::Pass, 2)],
            "one series per CNP rule, summing the nft rules it became (one per address family here)"
        );
        assert_eq!(cluster_rule_series(&compiled.provenance).len(), 2);
        let directions: BTreeSet<Direction> = policy_series(&compiled.provenance)
            .into_iter()
            .map(|owner| owner.direction)
            .collect();
        assert_eq!(directions.len(), 2, "both directions covered");
    }
}
