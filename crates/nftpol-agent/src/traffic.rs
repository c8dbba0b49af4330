//! Rule counters → traffic per policy and direction.
//!
//! The compiler gives every allow rule and every deny rule a `counter`
//! ([`nftpol_ruleset::compile`]). Which policy a rule counts for is known
//! from the chain it sits in, whose name the agent rebuilds with the
//! compiler's own [`names`] functions from the policy ids of the model:
//! nothing is parsed back out of names or comments (comments are
//! truncated to 128 bytes, names to 255). A chain is
//! - a policy chain (`policy-HASH-ns/name/direction`): its counters are
//!   that policy's allowed traffic;
//! - a group chain (the rules jump to the policy chains of every policy
//!   isolating a set of pods): its one counter is the traffic denied to
//!   those pods, counted for each of the group's policies and once in the
//!   per-direction total;
//! - a base chain (`filter-<hook>-<direction>`): its counters drop traffic
//!   of unknown pods on this node.
//!
//! Kernel counters start from 0 whenever a rule is (re-)added: a chain whose
//! rules change is flushed and refilled, a group chain disappears with its
//! pod combination. Exported totals must never go down, so [`TrafficTracker`]
//! turns successive reads into increments per rule (keyed by chain and
//! position) and forgets a chain's previous values when a commit replaced
//! its rules.

use std::collections::{BTreeMap, BTreeSet};

use nftpol_ir::{Action, Ruleset, Verdict};
use nftpol_model::PolicyId;
use nftpol_netlink::RuleCounter;
use nftpol_ruleset::names;

/// Hooks of the base chains, as the compiler names them.
const HOOKS: [&str; 2] = ["forward", "output"];

/// The direction of a policy, a group or a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic to a local pod.
    Ingress,
    /// Traffic from a local pod.
    Egress,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// `ingress` or `egress`: the metric label, and the compiler's name.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

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

/// What the counters of one chain count for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A policy chain: allowed traffic of one policy.
    Allow(PolicyDirection),
    /// A group chain: traffic denied to pods these policies isolate.
    Isolated {
        direction: Direction,
        policies: Vec<PolicyId>,
    },
    /// A base chain: traffic of unknown local pods.
    UnknownPod(Direction),
}

/// Which policy each counter-carrying chain of a committed ruleset counts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterOwners {
    chains: BTreeMap<String, Owner>,
}

impl CounterOwners {
    /// The owners of `ruleset`'s chains, compiled from a model holding
    /// `policies`.
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a PolicyId>, ruleset: &Ruleset) -> Self {
        let mut chains = BTreeMap::new();
        for policy in policies {
            for direction in Direction::ALL {
                let name = names::policy_object("policy", policy, direction.label());
                if ruleset.chains.contains_key(&name) {
                    let owner = Owner::Allow(PolicyDirection {
                        policy: policy.clone(),
                        direction,
                    });
                    chains.insert(name, owner);
                }
            }
        }
        let mut groups = BTreeMap::new();
        for chain in ruleset.chains.values() {
            let mut direction = None;
            let mut members = Vec::new();
            for rule in &chain.rules {
                if let Action::Verdict(Verdict::Jump(target)) = &rule.action {
                    if let Some(Owner::Allow(owner)) = chains.get(target) {
                        direction = Some(owner.direction);
                        members.push(owner.policy.clone());
                    }
                }
            }
            if let Some(direction) = direction {
                let owner = Owner::Isolated {
                    direction,
                    policies: members,
                };
                groups.insert(chain.name.clone(), owner);
            }
        }
        chains.extend(groups);
        for direction in Direction::ALL {
            for hook in HOOKS {
                let name = names::base_chain(hook, direction.label());
                if ruleset.chains.contains_key(&name) {
                    chains.insert(name, Owner::UnknownPod(direction));
                }
            }
        }
        Self { chains }
    }

    /// Every policy and direction with a chain: the per-policy series that
    /// exist.
    pub fn policies(&self) -> BTreeSet<PolicyDirection> {
        self.chains
            .values()
            .filter_map(|owner| match owner {
                Owner::Allow(owner) => Some(owner.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether `chain` is attributed to a policy, a group or a direction.
    pub fn has_owner(&self, chain: &str) -> bool {
        self.chains.contains_key(chain)
    }
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

    /// The traffic counted since the previous read, attributed by `owners`.
    /// A counter below its previous value restarted (its rule was replaced
    /// in a way the tracker was not told about) and counts from 0.
    pub fn observe(&mut self, owners: &CounterOwners, counters: &[RuleCounter]) -> Increments {
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
            match owners.chains.get(&counter.chain) {
                Some(Owner::Allow(owner)) => {
                    increments
                        .allowed
                        .entry(owner.clone())
                        .or_default()
                        .add(delta);
                }
                Some(Owner::Isolated {
                    direction,
                    policies,
                }) => {
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
                Some(Owner::UnknownPod(direction)) => {
                    increments
                        .denied
                        .entry((*direction, DenyReason::UnknownPod))
                        .or_default()
                        .add(delta);
                }
                None => {
                    tracing::debug!(chain = %counter.chain, rule = counter.rule, "counter of no known owner");
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

    fn owners() -> (CounterOwners, String, String) {
        let policy = id("shop", "db-allow");
        let chain = names::policy_object("policy", &policy, "ingress");
        let group = names::group_chain("ingress", &[&policy]);
        let mut ruleset = Ruleset::default();
        for (name, rules) in [
            (chain.clone(), vec![]),
            (
                group.clone(),
                vec![nftpol_ir::Rule {
                    matches: vec![],
                    counter: false,
                    action: Action::Verdict(Verdict::Jump(chain.clone())),
                    comment: None,
                }],
            ),
        ] {
            ruleset.chains.insert(
                name.clone(),
                nftpol_ir::Chain {
                    name,
                    base: None,
                    comment: None,
                    rules,
                },
            );
        }
        (CounterOwners::new([&policy], &ruleset), chain, group)
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
        let (owners, chain, group) = owners();
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
            let increments = tracker.observe(&owners, &read);
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
        let cluster = manifests::parse(CLUSTER).expect("manifests parse").cluster;
        let model = resolve(&cluster, "node-1");
        assert!(
            model.policies.len() >= 2,
            "the fixture isolates with several policies"
        );
        let ruleset = compile(&model, CompileOptions::default());
        let owners = CounterOwners::new(model.policies.iter().map(|policy| &policy.id), &ruleset);
        let mut counted = 0;
        for chain in ruleset.chains.values() {
            for rule in chain.rules.iter().filter(|rule| rule.counter) {
                counted += 1;
                assert!(
                    owners.has_owner(&chain.name),
                    "counter rule {:?} of chain {} has no owner",
                    rule.comment,
                    chain.name
                );
            }
        }
        assert!(counted > 0, "the ruleset has counters");
        let directions: BTreeSet<Direction> = owners
            .policies()
            .into_iter()
            .map(|owner| owner.direction)
            .collect();
        assert_eq!(directions.len(), 2, "both directions covered");
    }
}
