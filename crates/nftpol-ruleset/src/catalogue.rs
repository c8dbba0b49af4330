//! The closed catalogue of every object the compiler makes in table
//! `inet nftpol`, and the provenance that ties each one back to its purpose.
//!
//! Every chain is a [`ChainName`] and every set or map a [`SetName`]: a typed
//! key whose [`name`](SetName::name) is the one spelling the kernel sees
//! (built by [`crate::names`]). [`compile`](crate::compile::compile) returns,
//! beside the ruleset, a [`Provenance`]: for each chain its key and the
//! [`RuleRole`] of each of its rules, for each set its [`SetKind`]. Metrics,
//! traffic counters, traces and tests read the provenance; nothing parses a
//! name back or re-spells one.
//!
//! | key | name | what it holds |
//! |---|---|---|
//! | [`ChainName::Base`] | `filter-<hook>-<direction>` | the per-hook, per-direction entry point |
//! | [`ChainName::Group`] | `<direction>-group-<HASH>` | pods isolated by one distinct list of policies |
//! | [`ChainName::Policy`] | `policy-<HASH>-<ns>/<name>/<direction>` | one policy's allow rules in one direction |
//! | [`ChainName::ClusterList`] | `<direction>-<admin\|baseline>-<HASH>` | pods one distinct list of ClusterNetworkPolicies of a tier selects |
//! | [`ChainName::ClusterPolicy`] | `cnp-<HASH>-<name>/<direction>` | one ClusterNetworkPolicy's rules in one direction |
//! | [`ChainName::BelowAdmin`] | `<direction>-below-admin` | where an Admin `Pass` goes: the NetworkPolicy tier, then Baseline |
//! | [`ChainName::OwnNode`] | `<direction>-own-node` | a pod's traffic to its own node after the Admin tier: NetworkPolicy allows it, Baseline judges the rest |
//! | [`ChainName::Judged`] | `judged-<direction>` | accepts established flows judged under the current policy generation |
//! | [`ChainName::Stamp`] | `stamp-<direction>` | stamps an accepted flow with the current generation, accepts it |
//! | [`SetName::SelfPairs`] | `self-pairs-v4` | each local pod address twice |
//! | [`SetName::LocalPodIps`] | `local-pod-ips-v4` | addresses of the known pods on this node |
//! | [`SetName::LocalAddresses`] | `local-addresses-v4` | this node's pod CIDRs and its known pods' addresses |
//! | [`SetName::Dispatch`] | `<direction>-dispatch-v4` | isolated local pod → jump to its group chain |
//! | [`SetName::Isolated`] | `<direction>-isolated-v4` | the keys of the dispatch map |
//! | [`SetName::ClusterDispatch`] | `<direction>-<admin\|baseline>-dispatch-v4` | local pod → jump to its ClusterNetworkPolicy list chain |
//! | [`SetName::ClusterSelected`] | `<direction>-<admin\|baseline>-selected-v4` | the keys of that dispatch map |
//! | [`SetName::PodPeers`] | `pods-<HASH16>-v4` | addresses of one distinct selector peer, cluster-wide |
//! | [`SetName::IpBlock`] | `block-<HASH16>-v4` | one distinct `ipBlock` minus `except` |
//! | [`SetName::Ports`] | `ports-<HASH16>` | one distinct list of `proto . port` ranges |
//! | [`SetName::NamedPorts`] | `named-<HASH>-<ns>/<name>/<direction><rule>-v4` | a rule's named ports per destination pod |
//! | [`SetName::ClusterNamedPorts`] | `cnamed-<HASH>-<name>/<direction><rule>-v4` | a ClusterNetworkPolicy rule's named ports per destination pod |
//! | [`SetName::DnatOrigins`] | `dnat-origins-v4` | logged DNATed first packets' original destinations (the kernel fills it) |

use std::collections::BTreeMap;
use std::fmt;

use nftpol_ir::Hook;
use nftpol_model::cluster_policy::{Action, Tier};
use nftpol_model::{Direction, PolicyId};

use crate::names;
pub use crate::names::{MAX_COMMENT_LEN, MAX_NAME_LEN};

/// The address family of per-family objects (nftables sets cannot mix
/// families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// `v4` or `v6`: the suffix of per-family names.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// The hooks of the base chains: see [`crate::compile`] for why these.
/// An egress base chain on `input` joins them while an egress
/// ClusterNetworkPolicy tier exists (a pod's traffic to its own node).
pub const BASE_HOOKS: [Hook; 2] = [Hook::Forward, Hook::Output];

/// A chain of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainName {
    /// A base chain: one per hook and direction.
    Base {
        /// `forward` or `output`.
        hook: Hook,
        /// Egress chains judge the source pod, ingress ones the destination.
        direction: Direction,
    },
    /// The chain of every local pod isolated by the same policies.
    Group {
        /// The direction the policies isolate.
        direction: Direction,
        /// The isolating policies, in model order.
        policies: Vec<PolicyId>,
    },
    /// One policy's allow rules in one direction.
    Policy {
        /// The policy.
        policy: PolicyId,
        /// The direction of its rules.
        direction: Direction,
    },
    /// The chain of every local pod the same ClusterNetworkPolicies of one
    /// tier select: a jump into each policy's chain, in evaluation order.
    ClusterList {
        /// Admin or Baseline.
        tier: Tier,
        /// The direction of the policies' rules.
        direction: Direction,
        /// The policies' names, in evaluation order.
        policies: Vec<String>,
    },
    /// One ClusterNetworkPolicy's rules in one direction.
    ClusterPolicy {
        /// The policy's name.
        policy: String,
        /// The direction of its rules.
        direction: Direction,
    },
    /// What follows the Admin tier in a base chain (NetworkPolicy, then
    /// Baseline, then allowed): where an Admin `Pass` continues.
    BelowAdmin {
        /// The direction.
        direction: Direction,
    },
    /// What follows the Admin tier for a pod's traffic to its own node (the
    /// `input` hook): NetworkPolicy always allows it, so only the Baseline
    /// tier judges a pod no NetworkPolicy isolates.
    OwnNode {
        /// The direction (egress: a pod sending to its node).
        direction: Direction,
    },
    /// The bypass of established flows judged under the current policy
    /// generation (see [`crate::rejudge`]).
    Judged {
        /// The direction whose generation field it tests.
        direction: Direction,
    },
    /// The stamp of the current policy generation on an accepted flow.
    Stamp {
        /// The direction whose generation field it writes.
        direction: Direction,
    },
}

impl ChainName {
    /// The chain's name in the kernel.
    pub fn name(&self) -> String {
        match self {
            ChainName::Base { hook, direction } => {
                format!("filter-{}-{}", hook.name(), direction.label())
            }
            ChainName::Group {
                direction,
                policies,
            } => names::hashed_group(direction.label(), policies),
            ChainName::Policy { policy, direction } => {
                names::policy_object("policy", policy, direction.label())
            }
            ChainName::ClusterList {
                tier,
                direction,
                policies,
            } => names::hashed_cluster_list(direction.label(), &tier_label(*tier), policies),
            ChainName::ClusterPolicy { policy, direction } => {
                names::cluster_object("cnp", policy, direction.label())
            }
            ChainName::BelowAdmin { direction } => format!("{}-below-admin", direction.label()),
            ChainName::OwnNode { direction } => format!("{}-own-node", direction.label()),
            ChainName::Judged { direction } => format!("judged-{}", direction.label()),
            ChainName::Stamp { direction } => format!("stamp-{}", direction.label()),
        }
    }

    /// The direction the chain judges.
    pub fn direction(&self) -> Direction {
        match self {
            ChainName::Base { direction, .. }
            | ChainName::Group { direction, .. }
            | ChainName::Policy { direction, .. }
            | ChainName::ClusterList { direction, .. }
            | ChainName::ClusterPolicy { direction, .. }
            | ChainName::BelowAdmin { direction }
            | ChainName::OwnNode { direction }
            | ChainName::Judged { direction }
            | ChainName::Stamp { direction } => *direction,
        }
    }
}

/// `admin` or `baseline`: the tier's word in object names.
fn tier_label(tier: Tier) -> String {
    tier.as_str().to_ascii_lowercase()
}

/// A set or verdict map of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetName {
    /// Each local pod address twice: a pod reaching itself.
    SelfPairs(Family),
    /// Addresses of the known pods on this node.
    LocalPodIps(Family),
    /// This node's pod CIDRs and its known pods' addresses (a CNI may give
    /// a pod an address outside them): an address outside is no local pod.
    LocalAddresses(Family),
    /// Isolated local pod address → jump to its group chain.
    Dispatch {
        /// The direction the pods are isolated in.
        direction: Direction,
        /// The address family.
        family: Family,
    },
    /// The keys of the dispatch map, for the mid-commit drop.
    Isolated {
        /// The direction the pods are isolated in.
        direction: Direction,
        /// The address family.
        family: Family,
    },
    /// Local pod address → jump to the list chain of the
    /// ClusterNetworkPolicies of one tier that select it.
    ClusterDispatch {
        /// Admin or Baseline.
        tier: Tier,
        /// The direction of the policies' rules.
        direction: Direction,
        /// The address family.
        family: Family,
    },
    /// The keys of a ClusterNetworkPolicy dispatch map, for the mid-commit
    /// drop.
    ClusterSelected {
        /// Admin or Baseline.
        tier: Tier,
        /// The direction of the policies' rules.
        direction: Direction,
        /// The address family.
        family: Family,
    },
    /// The pod addresses of one distinct selector peer, cluster-wide.
    PodPeers {
        /// The peer's selector identity, as the model gives it.
        identity: String,
        /// The address family.
        family: Family,
    },
    /// One distinct `ipBlock` minus `except`.
    IpBlock {
        /// The block's content, spelled out.
        identity: String,
        /// The address family.
        family: Family,
    },
    /// One distinct list of `proto . port` ranges.
    Ports {
        /// The list's content, spelled out.
        identity: String,
    },
    /// A policy rule's named ports resolved per destination pod address.
    NamedPorts {
        /// The policy.
        policy: PolicyId,
        /// The direction of the rule.
        direction: Direction,
        /// The rule's index in its direction.
        rule: usize,
        /// The address family.
        family: Family,
    },
    /// A ClusterNetworkPolicy rule's named ports resolved per destination
    /// pod address.
    ClusterNamedPorts {
        /// The policy's name.
        policy: String,
        /// The direction of the rule.
        direction: Direction,
        /// The rule's index in its direction.
        rule: usize,
        /// The address family.
        family: Family,
    },
    /// The original destination of each logged DNATed first packet, by
    /// its 5-tuple: a dynamic map the verdict log rules fill.
    DnatOrigins(Family),
}

impl SetName {
    /// The set's name in the kernel.
    pub fn name(&self) -> String {
        match self {
            SetName::SelfPairs(family) => names::static_set("self-pairs", *family),
            SetName::LocalPodIps(family) => names::static_set("local-pod-ips", *family),
            SetName::LocalAddresses(family) => names::static_set("local-addresses", *family),
            SetName::DnatOrigins(family) => names::static_set("dnat-origins", *family),
            SetName::Dispatch { direction, family } => {
                names::static_set(&format!("{}-dispatch", direction.label()), *family)
            }
            SetName::Isolated { direction, family } => {
                names::static_set(&format!("{}-isolated", direction.label()), *family)
            }
            SetName::ClusterDispatch {
                tier,
                direction,
                family,
            } => names::static_set(
                &format!("{}-{}-dispatch", direction.label(), tier_label(*tier)),
                *family,
            ),
            SetName::ClusterSelected {
                tier,
                direction,
                family,
            } => names::static_set(
                &format!("{}-{}-selected", direction.label(), tier_label(*tier)),
                *family,
            ),
            SetName::PodPeers { identity, family } => {
                names::shared_set("pods", identity, Some(*family))
            }
            SetName::IpBlock { identity, family } => {
                names::shared_set("block", identity, Some(*family))
            }
            SetName::Ports { identity } => names::shared_set("ports", identity, None),
            SetName::NamedPorts {
                policy,
                direction,
                rule,
                family,
            } => names::policy_family_set(
                "named",
                policy,
                &format!("{}{rule}", direction.label()),
                *family,
            ),
            SetName::ClusterNamedPorts {
                policy,
                direction,
                rule,
                family,
            } => names::cluster_family_set(
                "cnamed",
                policy,
                &format!("{}{rule}", direction.label()),
                *family,
            ),
        }
    }

    /// What kind of set it is.
    pub fn kind(&self) -> SetKind {
        match self {
            SetName::SelfPairs(_) => SetKind::SelfPairs,
            SetName::LocalPodIps(_) => SetKind::LocalPodIps,
            SetName::LocalAddresses(_) => SetKind::LocalAddresses,
            SetName::Dispatch { .. } => SetKind::Dispatch,
            SetName::Isolated { .. } => SetKind::Isolated,
            SetName::PodPeers { .. } => SetKind::PodPeers,
            SetName::IpBlock { .. } => SetKind::IpBlocks,
            SetName::Ports { .. } => SetKind::Ports,
            SetName::NamedPorts { .. } => SetKind::NamedPorts,
            SetName::ClusterDispatch { .. } => SetKind::ClusterDispatch,
            SetName::ClusterSelected { .. } => SetKind::ClusterSelected,
            SetName::ClusterNamedPorts { .. } => SetKind::ClusterNamedPorts,
            SetName::DnatOrigins(_) => SetKind::DnatOrigins,
        }
    }
}

/// The kind of a set: a closed list, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// [`SetName::SelfPairs`].
    SelfPairs,
    /// [`SetName::LocalPodIps`].
    LocalPodIps,
    /// [`SetName::LocalAddresses`].
    LocalAddresses,
    /// [`SetName::Dispatch`].
    Dispatch,
    /// [`SetName::Isolated`].
    Isolated,
    /// [`SetName::PodPeers`].
    PodPeers,
    /// [`SetName::IpBlock`].
    IpBlocks,
    /// [`SetName::Ports`].
    Ports,
    /// [`SetName::NamedPorts`].
    NamedPorts,
    /// [`SetName::ClusterDispatch`].
    ClusterDispatch,
    /// [`SetName::ClusterSelected`].
    ClusterSelected,
    /// [`SetName::ClusterNamedPorts`].
    ClusterNamedPorts,
    /// [`SetName::DnatOrigins`].
    DnatOrigins,
}

impl SetKind {
    /// Every kind.
    pub const ALL: [SetKind; 13] = [
        SetKind::LocalPodIps,
        SetKind::Dispatch,
        SetKind::Isolated,
        SetKind::PodPeers,
        SetKind::IpBlocks,
        SetKind::Ports,
        SetKind::NamedPorts,
        SetKind::LocalAddresses,
        SetKind::SelfPairs,
        SetKind::ClusterDispatch,
        SetKind::ClusterSelected,
        SetKind::ClusterNamedPorts,
        SetKind::DnatOrigins,
    ];

    /// The metric label (`local_pod_ips`, `pod_peers`, …).
    pub fn label(self) -> &'static str {
        match self {
            SetKind::SelfPairs => "self_pairs",
            SetKind::LocalPodIps => "local_pod_ips",
            SetKind::LocalAddresses => "local_addresses",
            SetKind::Dispatch => "dispatch",
            SetKind::Isolated => "isolated",
            SetKind::PodPeers => "pod_peers",
            SetKind::IpBlocks => "ip_blocks",
            SetKind::Ports => "ports",
            SetKind::NamedPorts => "named_ports",
            SetKind::ClusterDispatch => "cluster_dispatch",
            SetKind::ClusterSelected => "cluster_selected",
            SetKind::ClusterNamedPorts => "cluster_named_ports",
            SetKind::DnatOrigins => "dnat_origins",
        }
    }
}

impl fmt::Display for SetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What one rule of a chain is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleRole {
    /// `ct state established,related accept`: the conntrack bypass (with
    /// re-judging, `ct state established,related jump judged-…`).
    ConntrackBypass,
    /// The judged chain's accept of flows stamped with the current
    /// generation.
    CurrentGeneration,
    /// The stamp chain's `ct mark set` of the current generation.
    Stamp,
    /// The stamp chain's accept, after the stamp.
    StampedAccept,
    /// A base chain's last rule with re-judging: what nothing isolated,
    /// stamped and accepted.
    NotIsolated,
    /// An isolated pod's untracked packet (re-judging keys its rules on the
    /// conntrack tuple, which an untracked packet lacks): dropped.
    UntrackedDrop,
    /// `ct state invalid drop`.
    InvalidDrop,
    /// ICMPv6 neighbour discovery, never dropped.
    NeighbourDiscovery,
    /// The node's own traffic (output chains).
    NodeTraffic,
    /// An address that is no local pod (outside the node's pod CIDRs and no
    /// known pod's): nothing below can match it, accepted at once.
    NotLocal,
    /// A pod reaching itself.
    SelfTraffic,
    /// An address in this node's pod CIDRs that no known pod owns: dropped.
    UnknownPodDrop,
    /// The dispatch verdict map lookup.
    Dispatch,
    /// The drop of isolated pods' packets that meet a commit mid-way.
    MidCommitDrop,
    /// A group chain's jump into one of its policies' chains.
    EnterPolicy(PolicyId),
    /// With re-judging, right before the group chain's final deny and each
    /// ClusterNetworkPolicy Deny rule (with its conditions): a stale
    /// established packet's connection gets the direction's "denied" mark,
    /// which the agent's conntrack flush removes.
    DeniedStamp,
    /// A group chain's final deny: isolated, and no policy allowed it.
    IsolatedDeny,
    /// The verdict log of the rule that follows it (`log group G`, first
    /// packets only, rate-limited): never a verdict, never counted.
    VerdictLog,
    /// Before a verdict log, a DNATed first packet's original destination
    /// written into [`SetName::DnatOrigins`] (rate-limited like the log):
    /// never a verdict, never counted.
    DnatRecord,
    /// An allow rule of a policy chain, from the policy's rule `rule` (its
    /// index in the chain's direction).
    Allow {
        /// The rule's index in its direction of the policy.
        rule: usize,
    },
    /// A base chain's lookup of a ClusterNetworkPolicy tier's dispatch map.
    ClusterDispatch(Tier),
    /// A list chain's jump into one ClusterNetworkPolicy's chain.
    EnterClusterPolicy(String),
    /// The way to [`ChainName::OwnNode`]: from the `input` base chain after
    /// the Admin tier, and first in [`ChainName::BelowAdmin`] for traffic to
    /// this node (`fib daddr type local`).
    ToOwnNode,
    /// NetworkPolicy's exemption of a pod's traffic to its own node: an
    /// isolated pod's packet is accepted (Baseline never sees it).
    OwnNodeExempt,
    /// A list chain's last rule, reached when no rule of the tier matched:
    /// on to the rest of the base chain (Admin) or the default (Baseline).
    /// A list chain thus always ends in a verdict, so a packet back in the
    /// base chain after its dispatch met a commit mid-way.
    TierUnmatched(Tier),
    /// A rule of a ClusterNetworkPolicy chain, from the policy's rule
    /// `rule` (its index in the chain's direction).
    ClusterRule {
        /// The policy's tier (the chain's name does not carry it: a policy
        /// may change tier under one name).
        tier: Tier,
        /// The rule's index in its direction of the policy.
        rule: usize,
        /// The rule's name, if it has one.
        name: Option<String>,
        /// What it does on a match.
        action: Action,
    },
}

/// One chain's key and the role of each of its rules, in rule order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOrigin {
    /// The chain's catalogue key.
    pub chain: ChainName,
    /// The role of each rule, parallel to the chain's rules.
    pub rules: Vec<RuleRole>,
}

/// Where every object of a compiled ruleset came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Every chain by name.
    pub chains: BTreeMap<String, ChainOrigin>,
    /// Every set and map by name.
    pub sets: BTreeMap<String, SetKind>,
}

impl Provenance {
    /// The origin of the chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&ChainOrigin> {
        self.chains.get(name)
    }

    /// The kind of the set named `name`.
    pub fn set_kind(&self, name: &str) -> Option<SetKind> {
        self.sets.get(name).copied()
    }

    /// The role of rule `position` of chain `name`.
    pub fn rule(&self, chain: &str, position: usize) -> Option<(&ChainName, &RuleRole)> {
        let origin = self.chains.get(chain)?;
        Some((&origin.chain, origin.rules.get(position)?))
    }
}
