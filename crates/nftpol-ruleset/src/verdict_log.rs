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
//!
//! **The original destination of DNATed traffic.** A line should name the
//! Service address a pod dialled, but NFLOG carries no conntrack data on
//! kernels without `CONFIG_NETFILTER_NETLINK_GLUE_CT`, and a dropped first
//! packet's conntrack entry is never confirmed, so no conntrack lookup can
//! find it afterwards. So the kernel writes it down itself: right before
//! each log rule, one record rule per family whose packets can reach it
//! (behind the dispatch of local pods' addresses, only the families the
//! cluster's pods have)
//!
//! ```text
//! ct state new ct status dnat limit rate 10/minute burst 10 packets update @dnat-origins-v4 { ip saddr . ip daddr . meta l4proto . th sport . th dport timeout 10s : ct original ip daddr . ct original proto-dst }
//! ```
//!
//! puts the pre-DNAT destination into a dynamic map under the 5-tuple the
//! log line carries, and the agent reads that one element by key. Why a
//! rule of its own and not the log rule: the map is per family (a key
//! cannot mix them) and a field of the other family ends a rule, so one
//! rule cannot update both, and splitting the log rule per family would
//! double its rate. Why the kernel work stays bounded by the log's limit:
//! the record rule has the same rate and burst and the same matches plus
//! `ct status dnat`, so its bucket is drawn by a subset of the packets that
//! draw the log rule's, both refill alike and start full in the same
//! commit: whenever the log rule has a token for a DNATed packet, so does
//! its record rule, and it writes at most as often as the log. The map's
//! size bounds its memory; an update over it fails and ends only the
//! record rule.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use nftpol_ir::{
    Action, CtState, DynamicMap, Field, KeyType, Log, Match, RateLimit, RateUnit, Rule, Set,
    SetUpdate, Value,
};
use nftpol_model::cluster_policy::Tier;
use nftpol_model::{Direction, LogLimit, PolicyId, RatePeriod};

use crate::catalogue::{ChainName, ChainOrigin, Family, Provenance, RuleRole, SetName};
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

    /// The rules placed right before a verdict rule with `matches`: a
    /// record rule per family the matches allow among `families` (those
    /// whose packets reach the rule; see the module doc), then the log
    /// rule, each for the first packet of a connection only, within
    /// `limit`.
    pub fn rules(
        self,
        matches: &[Match],
        families: &[Family],
        limit: LogLimit,
        prefix: LogPrefix,
    ) -> Vec<(RuleRole, Rule)> {
        let mut rules: Vec<(RuleRole, Rule)> = families
            .iter()
            .copied()
            .filter(|family| allows_family(matches, *family))
            .map(|family| (RuleRole::DnatRecord, record_rule(matches, limit, family)))
            .collect();
        let mut all = vec![Match::CtState([CtState::New].into())];
        all.extend(matches.iter().cloned());
        all.push(Match::Limit(rate_limit(limit)));
        rules.push((
            RuleRole::VerdictLog,
            Rule {
                matches: all,
                counter: false,
                action: Action::Log(Log {
                    group: self.group,
                    prefix: prefix.to_string(),
                }),
                comment: None,
            },
        ));
        rules
    }
}

/// How long a recorded original destination lives: the agent reads it
/// within a flush of the NFLOG queue (a tenth of a second); the rest is
/// slack for a busy reader.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most original destinations each family's map holds at once.
pub const ORIGIN_MAP_SIZE: u32 = 4096;

/// The key of the original-destination map: the packet's 5-tuple after
/// DNAT, as the log line has it.
pub fn origin_key(family: Family) -> Vec<Field> {
    let (source, destination) = match family {
        Family::V4 => (Field::Ipv4Saddr, Field::Ipv4Daddr),
        Family::V6 => (Field::Ipv6Saddr, Field::Ipv6Daddr),
    };
    vec![
        source,
        destination,
        Field::L4Proto,
        Field::TransportSport,
        Field::TransportDport,
    ]
}

/// The data of the original-destination map: the address and port the
/// connection was opened to.
pub fn origin_data(family: Family) -> Vec<Field> {
    let address = match family {
        Family::V4 => Field::CtOriginalIpv4Daddr,
        Family::V6 => Field::CtOriginalIpv6Daddr,
    };
    vec![address, Field::CtOriginalProtoDst]
}

/// The original-destination map of `family` (named by the catalogue's
/// [`SetName::DnatOrigins`]).
pub fn origin_map(family: Family) -> Set {
    let types =
        |fields: Vec<Field>| -> Vec<KeyType> { fields.into_iter().map(Field::key_type).collect() };
    Set {
        name: SetName::DnatOrigins(family).name(),
        key: types(origin_key(family)),
        interval: false,
        is_verdict_map: false,
        dynamic: Some(DynamicMap {
            data: types(origin_data(family)),
            size: ORIGIN_MAP_SIZE,
        }),
        comment: Some(
            "original destination of each logged DNATed first packet, by 5-tuple".to_owned(),
        ),
        elements: std::collections::BTreeSet::new(),
    }
}

/// The map and key under which a logged packet's original destination is
/// recorded, for a packet with ports (TCP, UDP, SCTP).
pub fn origin_lookup(
    source: IpAddr,
    destination: IpAddr,
    protocol: u8,
    source_port: u16,
    destination_port: u16,
) -> Option<(Set, Vec<Value>)> {
    let (family, source, destination) = match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            (Family::V4, Value::Ipv4(source), Value::Ipv4(destination))
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            (Family::V6, Value::Ipv6(source), Value::Ipv6(destination))
        }
        _ => return None,
    };
    Some((
        origin_map(family),
        vec![
            source,
            destination,
            Value::Proto(protocol),
            Value::Port(source_port),
            Value::Port(destination_port),
        ],
    ))
}

/// The original destination in a map element's data.
pub fn origin_of(data: &[Value]) -> Option<(IpAddr, u16)> {
    match data {
        [Value::Ipv4(address), Value::Port(port)] => Some((IpAddr::V4(*address), *port)),
        [Value::Ipv6(address), Value::Port(port)] => Some((IpAddr::V6(*address), *port)),
        _ => None,
    }
}

/// Whether a rule with `matches` can match a packet of `family`: none of
/// its lookups reads an address of the other family.
fn allows_family(matches: &[Match], family: Family) -> bool {
    let other = match family {
        Family::V4 => KeyType::Ipv6Addr,
        Family::V6 => KeyType::Ipv4Addr,
    };
    matches.iter().all(|matched| match matched {
        Match::Lookup { key, .. } => key.iter().all(|field| field.key_type() != other),
        _ => true,
    })
}

/// The record rule of `family` for a log rule with `matches` and `limit`.
fn record_rule(matches: &[Match], limit: LogLimit, family: Family) -> Rule {
    let mut all = vec![Match::CtState([CtState::New].into()), Match::CtStatusDnat];
    all.extend(matches.iter().cloned());
    all.push(Match::Limit(rate_limit(limit)));
    Rule {
        matches: all,
        counter: false,
        action: Action::Update(Box::new(SetUpdate {
            set: SetName::DnatOrigins(family).name(),
            key: origin_key(family),
            data: origin_data(family),
            timeout: ORIGIN_TIMEOUT,
        })),
        comment: None,
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
    /// A ClusterNetworkPolicy rule.
    ClusterRule {
        /// Admin or Baseline.
        tier: Tier,
        /// The policy's name.
        policy: String,
        /// The rule's index in its direction.
        rule: u16,
        /// The rule's name, if it has one.
        name: Option<String>,
    },
    /// An id this node's ruleset does not hold (logged under an earlier one).
    Unknown,
}

/// The ids of a compiled ruleset's log rules, mapped back to policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCatalogue {
    policies: BTreeMap<(Direction, ShortId), PolicyId>,
    groups: BTreeMap<(Direction, ShortId), Vec<PolicyId>>,
    /// ClusterNetworkPolicy rules: (direction, id, rule) → policy, rule name.
    cluster_rules: BTreeMap<(Direction, ShortId, u16), (String, Option<String>)>,
}

impl LogCatalogue {
    /// The ids of the log rules of a compiled ruleset, from its provenance.
    pub fn new(provenance: &Provenance) -> Self {
        let mut catalogue = LogCatalogue::default();
        for origin in provenance.chains.values() {
            catalogue.learn(origin);
        }
        catalogue
    }

    /// Follows a commit that removed (or replaced) the chains of `gone` and
    /// added those of `new` (the policy path, which never rebuilds the
    /// whole provenance).
    pub fn follow(&mut self, gone: &[ChainOrigin], new: &[ChainOrigin]) {
        for origin in gone {
            self.forget(origin);
        }
        for origin in new {
            self.learn(origin);
        }
    }

    /// Adds the ids of the chain of `origin`.
    fn learn(&mut self, origin: &ChainOrigin) {
        match &origin.chain {
            ChainName::Policy { policy, direction } => {
                let id = short_id(&names::policy_log_id(policy, direction.label()));
                self.policies.insert((*direction, id), policy.clone());
            }
            ChainName::Group {
                direction,
                policies,
            } => {
                let id = short_id(&names::group_log_id(direction.label(), policies));
                self.groups.insert((*direction, id), policies.clone());
            }
            ChainName::ClusterPolicy { policy, direction } => {
                let id = short_id(&names::cluster_log_id(policy, direction.label()));
                for role in &origin.rules {
                    if let RuleRole::ClusterRule { rule, name, .. } = role {
                        let rule = u16::try_from(*rule).unwrap_or(u16::MAX);
                        self.cluster_rules
                            .insert((*direction, id, rule), (policy.clone(), name.clone()));
                    }
                }
            }
            ChainName::Base { .. }
            | ChainName::ClusterList { .. }
            | ChainName::BelowAdmin { .. }
            | ChainName::OwnNode { .. }
            | ChainName::Judged { .. }
            | ChainName::Stamp { .. } => {}
        }
    }

    /// Removes the ids [`Self::learn`] added for `origin`, where they still
    /// name its chain (two chains may share a short id; the later one kept
    /// it).
    fn forget(&mut self, origin: &ChainOrigin) {
        match &origin.chain {
            ChainName::Policy { policy, direction } => {
                let key = (
                    *direction,
                    short_id(&names::policy_log_id(policy, direction.label())),
                );
                if self.policies.get(&key) == Some(policy) {
                    self.policies.remove(&key);
                }
            }
            ChainName::Group {
                direction,
                policies,
            } => {
                let key = (
                    *direction,
                    short_id(&names::group_log_id(direction.label(), policies)),
                );
                if self.groups.get(&key) == Some(policies) {
                    self.groups.remove(&key);
                }
            }
            // Only NetworkPolicy chains come and go on the policy path.
            _ => {}
        }
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
            Subject::ClusterRule { tier, policy, rule } => self
                .cluster_rules
                .get(&(prefix.direction, policy, rule))
                .map_or(Decider::Unknown, |(policy, name)| Decider::ClusterRule {
                    tier,
                    policy: policy.clone(),
                    rule,
                    name: name.clone(),
                }),
        }
    }
}
