//! The ruleset IR: plain data for the one table `inet nftpol`.
//!
//! Everything the agent installs is described here as typed values, never as
//! nft text: rules are lists of [`Match`]es and one [`Action`], sets carry
//! typed [`Value`]s. The text form exists only in [`crate::render`], the
//! kernel form only in `nftpol-netlink`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The table's family, fixed by design: one `inet` table serves both IPv4 and IPv6.
pub const TABLE_FAMILY: &str = "inet";
/// The table's name, fixed by design and owned entirely by the agent.
pub const TABLE_NAME: &str = "nftpol";

/// The whole desired (or observed) content of table `inet nftpol`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
}

/// A chain: a base chain when `base` is set, a regular chain otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The chain's name.
    pub name: String,
    /// Hook, priority and policy of a base chain; `None` for a regular chain.
    pub base: Option<BaseChain>,
    /// What the chain holds, for people reading `nft list`.
    pub comment: Option<String>,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

impl Hook {
    /// The hook's name in nft syntax (`forward`).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// The default verdict of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainPolicy {
    /// `policy accept`.
    Accept,
    /// `policy drop`.
    Drop,
}

/// Attachment of a base chain (always `type filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// The numeric priority; lower runs first.
    pub priority: i32,
    /// The default verdict.
    pub policy: ChainPolicy,
}

/// One rule: every match must hold, then the counter counts and the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// Whether the rule carries a `counter`.
    pub counter: bool,
    /// What happens to a packet that matched.
    pub action: Action,
    /// Names the policy or purpose, for `nft list` and metrics.
    pub comment: Option<String>,
}

impl Rule {
    /// Every set the rule names: those its matches look up, the verdict map
    /// it jumps through and the map it updates. The kernel resolves each by
    /// name when the rule is added, and refuses to delete a set a rule
    /// still names.
    pub fn referenced_sets(&self) -> impl Iterator<Item = &str> {
        let lookups = self.matches.iter().filter_map(|matched| match matched {
            Match::Lookup { set, .. } => Some(set.as_str()),
            _ => None,
        });
        let by_action = match &self.action {
            Action::VerdictMap { map, .. } => Some(map.as_str()),
            Action::Update(update) => Some(update.set.as_str()),
            Action::Verdict(_) | Action::SetCtMark { .. } | Action::Log(_) => None,
        };
        lookups.chain(by_action)
    }
}

/// Conntrack states a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    /// `invalid`.
    Invalid,
    /// `established`.
    Established,
    /// `related`.
    Related,
    /// `new`.
    New,
    /// `untracked`: conntrack was told not to track the packet (`notrack`),
    /// so no `ct` key but the state can be loaded.
    Untracked,
}

/// The direction of a packet within its connection (`ct direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtDirection {
    /// `original`: sent by the side that opened the connection.
    Original,
    /// `reply`: sent by the side that answered.
    Reply,
}

/// A packet field that can be loaded into a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `ip saddr` (implies the packet is IPv4).
    Ipv4Saddr,
    /// `ip daddr` (implies the packet is IPv4).
    Ipv4Daddr,
    /// `ip6 saddr` (implies the packet is IPv6).
    Ipv6Saddr,
    /// `ip6 daddr` (implies the packet is IPv6).
    Ipv6Daddr,
    /// `meta l4proto`.
    L4Proto,
    /// `th dport`: the destination port of TCP, UDP or SCTP.
    TransportDport,
    /// `th sport`: the source port of TCP, UDP or SCTP.
    TransportSport,
    /// `ct original ip saddr`: the IPv4 address that opened the connection,
    /// whichever way the packet goes.
    CtOriginalIpv4Saddr,
    /// `ct reply ip saddr`: the IPv4 address that answers the connection,
    /// after destination NAT (the backend of a Service address).
    CtReplyIpv4Saddr,
    /// `ct original ip6 saddr`.
    CtOriginalIpv6Saddr,
    /// `ct reply ip6 saddr`.
    CtReplyIpv6Saddr,
    /// `ct original ip daddr`: the IPv4 address the connection was opened
    /// to, before destination NAT (a Service address).
    CtOriginalIpv4Daddr,
    /// `ct original ip6 daddr`.
    CtOriginalIpv6Daddr,
    /// `ct original proto-dst`: the port the connection was opened to,
    /// before destination NAT.
    CtOriginalProtoDst,
}

impl Field {
    /// The set key type a lookup of this field needs.
    pub fn key_type(self) -> KeyType {
        match self {
            Field::Ipv4Saddr
            | Field::Ipv4Daddr
            | Field::CtOriginalIpv4Saddr
            | Field::CtReplyIpv4Saddr
            | Field::CtOriginalIpv4Daddr => KeyType::Ipv4Addr,
            Field::Ipv6Saddr
            | Field::Ipv6Daddr
            | Field::CtOriginalIpv6Saddr
            | Field::CtReplyIpv6Saddr
            | Field::CtOriginalIpv6Daddr => KeyType::Ipv6Addr,
            Field::L4Proto => KeyType::InetProto,
            Field::TransportDport | Field::TransportSport | Field::CtOriginalProtoDst => {
                KeyType::InetService
            }
        }
    }
}

/// A condition on a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `ct state { … }`: the connection is in one of these states.
    CtState(BTreeSet<CtState>),
    /// `ct direction D`: the packet goes this way within its connection.
    CtDirection(CtDirection),
    /// `ct mark & MASK == VALUE`: the connection's mark holds `value` in the
    /// bits of `mask` (`value` lies within `mask`).
    CtMark {
        /// The bits tested.
        mask: u32,
        /// What they must hold.
        value: u32,
    },
    /// `icmpv6 type FIRST-LAST`.
    Icmpv6TypeRange {
        /// First type, inclusive.
        first: u8,
        /// Last type, inclusive.
        last: u8,
    },
    /// `fib saddr type local`: the source address belongs to this host.
    SaddrIsLocal,
    /// `fib daddr type local`: the destination address belongs to this host.
    DaddrIsLocal,
    /// `ct status dnat`: the connection's destination was translated (a
    /// Service address DNATed to a backend).
    CtStatusDnat,
    /// `KEY @set` or `KEY != @set`: the concatenation of `key` is (not) in `set`.
    Lookup {
        /// Fields concatenated in order (boxed: a rule holds many matches,
        /// and a `Vec`'s capacity word is 8 bytes of each).
        key: Box<[Field]>,
        /// The set's name.
        set: String,
        /// Whether the match is inverted (`!=`).
        negated: bool,
    },
    /// `limit rate RATE/UNIT burst BURST packets`: holds while the rule's
    /// token bucket has a token. Its state is the rule's own, kept by the
    /// kernel; the interpreter takes it as holding.
    Limit(RateLimit),
}

/// A packet rate: `rate` packets per `unit`, with `burst` packets allowed
/// at once (the kernel's `nft_limit`, type packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateLimit {
    /// Packets per unit, at least 1 (the kernel rejects 0).
    pub rate: u64,
    /// The time unit of `rate`.
    pub unit: RateUnit,
    /// Packets the bucket holds, at least 1 (the kernel turns 0 into 5).
    pub burst: u32,
}

/// The unit of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RateUnit {
    /// `/second`.
    Second,
    /// `/minute`.
    Minute,
    /// `/hour`.
    Hour,
    /// `/day`.
    Day,
}

impl RateUnit {
    /// Every unit, shortest first.
    pub const ALL: [RateUnit; 4] = [
        RateUnit::Second,
        RateUnit::Minute,
        RateUnit::Hour,
        RateUnit::Day,
    ];

    /// The unit in seconds (`NFTA_LIMIT_UNIT`).
    pub fn seconds(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86_400,
        }
    }

    /// The unit's name in nft syntax (`second`, `minute`, …).
    pub fn name(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

/// `log prefix PREFIX group GROUP`: the packet goes to NFLOG group `group`
/// (nfnetlink_log, read by ulogd2, `tcpdump -i nflog:GROUP` or the agent)
/// with `prefix` attached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Log {
    /// The NFLOG group.
    pub group: u16,
    /// The prefix; the kernel takes at most [`Log::MAX_PREFIX_LEN`] bytes.
    pub prefix: String,
}

impl Log {
    /// The longest prefix the kernel accepts (`NF_LOG_PREFIXLEN` 128, less
    /// the terminating NUL).
    pub const MAX_PREFIX_LEN: usize = 127;
}

/// A final decision or a control transfer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `accept`: final for this base chain only.
    Accept,
    /// `drop`: final for the packet.
    Drop,
    /// `reject with icmpx admin-prohibited`: final for the packet.
    Reject,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A fixed verdict.
    Verdict(Verdict),
    /// `KEY vmap @map`: the verdict stored in `map` for the packet's key, if any.
    VerdictMap {
        /// Fields concatenated in order.
        key: Vec<Field>,
        /// The verdict map's name.
        map: String,
    },
    /// `ct mark set ct mark & !MASK | VALUE`: writes `value` into the bits of
    /// `mask` of the connection's mark and leaves the others alone. Not a
    /// verdict: evaluation goes on with the next rule.
    SetCtMark {
        /// The bits written.
        mask: u32,
        /// What they get (within `mask`).
        value: u32,
    },
    /// `log …`: reports the packet and continues with the next rule; it
    /// never decides a verdict.
    Log(Log),
    /// `update @map { KEY timeout T : DATA }`: the packet path records
    /// `data` under `key` in a [`DynamicMap`] (the kernel's `dynset`) and
    /// evaluation goes on with the next rule; never a verdict. Boxed: it is
    /// the largest action by far, and every rule's action is as large as
    /// the largest (88 bytes inline made a rule 144; boxed, 104).
    Update(Box<SetUpdate>),
}

/// An element the packet path writes into a dynamic map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetUpdate {
    /// The map's name; it has a [`DynamicMap`] shape.
    pub set: String,
    /// Fields of the key, concatenated in order.
    pub key: Vec<Field>,
    /// Fields of the data, concatenated in order.
    pub data: Vec<Field>,
    /// How long the element lives (refreshed by each update).
    pub timeout: Duration,
}

/// The data type of one field of a set key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `ipv6_addr`.
    Ipv6Addr,
    /// `inet_proto`.
    InetProto,
    /// `inet_service`.
    InetService,
}

/// A named set, or a verdict map when `is_verdict_map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The set's name.
    pub name: String,
    /// Key field types; more than one is a concatenation.
    pub key: Vec<KeyType>,
    /// Whether elements are ranges (`flags interval`).
    pub interval: bool,
    /// Whether each element maps to a [`Verdict`].
    pub is_verdict_map: bool,
    /// A map the packet path fills ([`Action::Update`]): its elements are
    /// the kernel's, with timeouts, never the compiler's, so `elements`
    /// stays empty and read-back leaves them out.
    pub dynamic: Option<DynamicMap>,
    /// What the set holds, for people reading `nft list`.
    pub comment: Option<String>,
    /// The elements.
    pub elements: BTreeSet<Element>,
}

/// The shape of a map the packet path fills (`flags dynamic,timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicMap {
    /// Data field types; more than one is a concatenation.
    pub data: Vec<KeyType>,
    /// The most elements it holds (`size`): an update beyond it fails, and
    /// the rule ends there.
    pub size: u32,
}

/// One value of one key field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
    /// An IP protocol number.
    Proto(u8),
    /// A transport port.
    Port(u16),
}

/// One set element: a key or, in interval sets, an inclusive range of keys.
///
/// [`Element::start`] and [`Element::end`] have one value per key field. In
/// a set without `interval`, `end == start`. In an interval set each field
/// matches `start[i] ..= end[i]`. Elements order by start, then end, then
/// verdict.
///
/// Compact because sets hold one per pod address (200,000 at 100,000 pods):
/// a one-field key lives inline, any other key or range in one boxed slice,
/// and the verdict (in dispatch maps only) behind a pointer: 48 bytes and
/// no allocation for a pod address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Element {
    /// The key, or a range's first key followed by its last.
    values: Values,
    /// Where a range's last key starts in `values`; `None` when the element
    /// is one key. [`Element::new`] stores a range whose ends are equal as
    /// one key, so equal elements are stored alike.
    end_at: Option<usize>,
    /// The mapped verdict, in verdict maps only.
    verdict: Option<Box<Verdict>>,
}

/// An element's values: one inline, or any number boxed.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Values {
    One(Value),
    Many(Box<[Value]>),
}

impl Values {
    fn new(values: Vec<Value>) -> Self {
        match values.as_slice() {
            [one] => Self::One(*one),
            _ => Self::Many(values.into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[Value] {
        match self {
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }
}

impl Element {
    /// An element from `start` to `end` (inclusive), mapped to `verdict` in
    /// a verdict map.
    pub fn new(start: Vec<Value>, end: Vec<Value>, verdict: Option<Verdict>) -> Self {
        let verdict = verdict.map(Box::new);
        if start == end {
            return Self {
                values: Values::new(start),
                end_at: None,
                verdict,
            };
        }
        let end_at = start.len();
        let mut values = start;
        values.extend(end);
        Self {
            values: Values::new(values),
            end_at: Some(end_at),
            verdict,
        }
    }

    /// A single-key element of a set.
    pub fn key(values: Vec<Value>) -> Self {
        Self {
            values: Values::new(values),
            end_at: None,
            verdict: None,
        }
    }

    /// An inclusive range element of an interval set.
    pub fn range(start: Vec<Value>, end: Vec<Value>) -> Self {
        Self::new(start, end, None)
    }

    /// A single-key element of a verdict map.
    pub fn mapping(values: Vec<Value>, verdict: Verdict) -> Self {
        Self {
            values: Values::new(values),
            end_at: None,
            verdict: Some(Box::new(verdict)),
        }
    }

    /// The first key of the range (the key itself outside interval sets).
    pub fn start(&self) -> &[Value] {
        let values = self.values.as_slice();
        match self.end_at {
            Some(end_at) => &values[..end_at],
            None => values,
        }
    }

    /// The last key of the range, inclusive.
    pub fn end(&self) -> &[Value] {
        let values = self.values.as_slice();
        match self.end_at {
            Some(end_at) => &values[end_at..],
            None => values,
        }
    }

    /// The mapped verdict, in verdict maps only.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_deref()
    }
}

impl Ord for Element {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.start()
            .cmp(other.start())
            .then_with(|| self.end().cmp(other.end()))
            .then_with(|| self.verdict().cmp(&other.verdict()))
    }
}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Shows what the element means (its start, end and verdict), not how
/// `values` and `end_at` store it.
impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Element")
            .field("start", &self.start())
            .field("end", &self.end())
            .field("verdict", &self.verdict())
            .finish()
    }
}

impl Set {
    /// Whether the set is a concatenated interval set (the kernel's pipapo
    /// backend), whose element deletes cost O(set size).
    pub fn is_concatenated_interval(&self) -> bool {
        self.interval && self.key.len() > 1
    }

    /// The set without its elements: what must match for elements to be
    /// diffed rather than the set replaced.
    #[must_use]
    pub fn shape(&self) -> Set {
        Set {
            elements: BTreeSet::new(),
            ..self.clone()
        }
    }
}

impl Ruleset {
    /// Total rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|chain| chain.rules.len()).sum()
    }

    /// The ruleset's structure: its chains and rules, and its sets without
    /// their elements.
    #[must_use]
    pub fn without_elements(&self) -> Ruleset {
        Ruleset {
            chains: self.chains.clone(),
            sets: self
                .sets
                .iter()
                .map(|(name, set)| (name.clone(), set.shape()))
                .collect(),
        }
    }

    /// Total elements over all sets and maps.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|set| set.elements.len()).sum()
    }
}
