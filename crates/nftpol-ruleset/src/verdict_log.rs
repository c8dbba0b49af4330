//! Verdict logs in the kernel: which rules log, at what rate, and how a
//! prefix maps back to the policies that decided.
//!
//! Every deny path logs the first packet of a connection (`ct state new`)
//! to NFLOG right before its verdict, in a rule of its own:
//!
//! ```text
//! ct state new limit rate 10/minute burst 10 packets log prefix "nftpol:de:iso:k3v7q2ma" group 100
//! counter drop
//! ```
//!
//! Why a rule of its own: `limit` ends a rule's evaluation once its bucket
//! is empty, so on the verdict rule it would let packets over the rate pass
//! to the next rule; on a log-only rule it only stops the logging. A log
//! rule has no verdict, so logging never changes one, and established
//! packets never reach it (the conntrack bypass comes first in every base
//! chain), so they pay nothing.
//!
//! Why anonymous limits, one per log rule, and not named limit objects
//! shared by a policy: a group chain's deny is already per policy (a group
//! is one distinct set of isolating policies), and a named object would be
//! a new kind of object to create, diff, read back and delete for a bound
//! that is a tenant's setting, not a guarantee. The cost: in `all` mode
//! each allow rule of a policy has its own bucket, so a policy with N rules
//! can log N times its rate. A group chain of several policies takes the
//! strictest of their limits. A limit's state starts afresh when its rule
//! is replaced (a policy change), which may log one more burst.
//!
//! The unknown-pod drop is no policy's: it logs at the default rate.

use std::collections::BTreeMap;

use nftpol_ir::{Action, CtState, Log, Match, RateLimit, RateUnit, Rule};
use nftpol_model::{Direction, LogLimit, PolicyId, RatePeriod};

use crate::catalogue::{ChainName, Provenance};
use crate::log_prefix::{LogPrefix, ShortId, Subject};
use crate::names;

/// The NFLOG group of kube-router's logs, which ulogd2 configs
/// (`[log1] group=100`) and `tcpdump -i nflog:100` expect.
pub const DEFAULT_GROUP: u16 = 100;

/// Which verdicts are logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerdictLogMode {
    /// None (the compiler's default: rulesets without log rules).
    #[default]
    Off,
    /// Every deny path (the agent's default).
    Deny,
    /// Deny paths and every allow rule.
    All,
}

/// Verdict-log settings of the compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictLogOptions {
    /// Which verdicts are logged.
    pub mode: VerdictLogMode,
    /// The NFLOG group.
    pub group: u16,
}

impl Default for VerdictLogOptions {
    fn default() -> Self {
        Self {
            mode: VerdictLogMode::Off,
            group: DEFAULT_GROUP,
        }
    }
}

impl VerdictLogOptions {
    /// Whether deny paths log.
    pub fn logs_denies(self) -> bool {
        self.mode != VerdictLogMode::Off
    }

    /// Whether allow rules log.
    pub fn logs_allows(self) -> bool {
        self.mode == VerdictLogMode::All
    }

    /// The log rule placed right before a verdict rule with `matches`: the
    /// same matches, the first packet of a connection only, within `limit`.
    pub fn rule(self, matches: &[Match], limit: LogLimit, prefix: LogPrefix) -> Rule {
        let mut all = vec![Match::CtState([CtState::New].into())];
        all.extend(matches.iter().cloned());
        all.push(Match::Limit(rate_limit(limit)));
        Rule {
            matches: all,
            counter: false,
            action: Action::Log(Log {
                group: self.group,
                prefix: prefix.to_string(),
            }),
            comment: None,
        }
    }
}

/// The kernel's form of a policy's log limit.
pub fn rate_limit(limit: LogLimit) -> RateLimit {
    RateLimit {
        rate: u64::from(limit.rate),
        unit: match limit.period {
            RatePeriod::Second => RateUnit::Second,
            RatePeriod::Minute => RateUnit::Minute,
            RatePeriod::Hour => RateUnit::Hour,
            RatePeriod::Day => RateUnit::Day,
        },
        burst: limit.burst,
    }
}

/// The strictest of some limits; the default for none.
pub fn strictest(limits: impl IntoIterator<Item = LogLimit>) -> LogLimit {
    limits
        .into_iter()
        .reduce(|a, b| if b.is_stricter_than(&a) { b } else { a })
        .unwrap_or_default()
}

/// A short id computed by [`names`], which only ever makes valid ones.
pub(crate) fn short_id(text: &str) -> ShortId {
    ShortId::parse(text).expect("names builds ids of 8 lowercase base32 characters")
}

/// What a logged prefix means on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// A NetworkPolicy's allow rule.
    Rule {
        /// The policy.
        policy: PolicyId,
        /// The rule's index in its direction.
        rule: u16,
    },
    /// The default deny of pods isolated by these policies.
    Isolated {
        /// The isolating policies, in model order.
        policies: Vec<PolicyId>,
    },
    /// An unknown local pod.
    UnknownPod,
    /// An id this node's ruleset does not hold (logged under an earlier one).
    Unknown,
}

/// The ids of a compiled ruleset's log rules, mapped back to policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCatalogue {
    policies: BTreeMap<(Direction, ShortId), PolicyId>,
    groups: BTreeMap<(Direction, ShortId), Vec<PolicyId>>,
}

impl LogCatalogue {
    /// The ids of the log rules of a compiled ruleset, from its provenance.
    pub fn new(provenance: &Provenance) -> Self {
        let mut catalogue = LogCatalogue::default();
        for origin in provenance.chains.values() {
            match &origin.chain {
                ChainName::Policy { policy, direction } => {
                    let id = short_id(&names::policy_log_id(policy, direction.label()));
                    catalogue.policies.insert((*direction, id), policy.clone());
                }
                ChainName::Group {
                    direction,
                    policies,
                } => {
                    let id = short_id(&names::group_log_id(direction.label(), policies));
                    catalogue.groups.insert((*direction, id), policies.clone());
                }
                // ClusterNetworkPolicy rules do not log yet (issue #12).
                ChainName::Base { .. }
                | ChainName::ClusterList { .. }
                | ChainName::ClusterPolicy { .. }
                | ChainName::BelowAdmin { .. }
                | ChainName::OwnNode { .. }
                | ChainName::Judged { .. }
                | ChainName::Stamp { .. } => {}
            }
        }
        catalogue
    }

    /// What `prefix` means here.
    pub fn decider(&self, prefix: &LogPrefix) -> Decider {
        match prefix.subject {
            Subject::PolicyRule { policy, rule } => self
                .policies
                .get(&(prefix.direction, policy))
                .map_or(Decider::Unknown, |policy| Decider::Rule {
                    policy: policy.clone(),
                    rule,
                }),
            Subject::Isolated { group } => {
                self.groups
                    .get(&(prefix.direction, group))
                    .map_or(Decider::Unknown, |policies| Decider::Isolated {
                        policies: policies.clone(),
                    })
            }
            Subject::UnknownPod => Decider::UnknownPod,
        }
    }
}
