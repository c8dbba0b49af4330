//! Re-judging established flows: the conntrack bypass accepts only flows
//! judged under the current generation of policy.
//!
//! ```text
//! filter-forward-egress (and every other base chain; ingress mirrors it)
//!   ct state established,related jump judged-egress   bypass, always first
//!   … the judging rules, keyed on the connection, not the packet:
//!       ct original ip saddr   the side that opened the connection
//!       ct reply ip saddr      the side that answers (after DNAT)
//!       ct direction original … th dport / ct direction reply … th sport
//!     every accept becomes goto stamp-egress
//!   goto stamp-egress                                  what nothing isolates
//! judged-egress: ct mark and FIELD == GEN accept       judged under generation GEN
//! stamp-egress:  ct mark set ct mark and ~FIELD or GEN; accept
//! ```
//!
//! A commit that may take permission away bumps GEN: only `judged-*` and
//! `stamp-*` change, in the same atomic batch as the policy change, so the
//! next packet of every established flow, either way, misses the bypass and
//! is judged again by the same chains as a new connection: still allowed,
//! it is stamped and passes (no packet lost); now denied, it is dropped
//! (rejected under `--deny=reject`) from that packet on.
//!
//! Why the connection's tuple: the reply of an allowed a → b flow is not an
//! egress of b. `ct original ip saddr` is a (before any SNAT, which happens
//! after these hooks), `ct reply ip saddr` is b after DNAT (a Service
//! backend), exactly what the packet fields say for a connection's first
//! packet at these hooks. nft 1.0.6 cannot put the `ct` port keys in a
//! concatenation, so a rule with a port lookup is written twice: on
//! `th dport` for the original direction and on `th sport` for replies.
//!
//! A stale established packet its judging rules deny meets, right before
//! the group chain's drop (or reject) or a ClusterNetworkPolicy Deny (with
//! that rule's conditions), `ct state established,related ct mark set ct
//! mark and ~FIELD or DENIED`: DENIED, the field's largest
//! value, is never a generation. Setting the mark of a confirmed entry
//! sticks although the packet is dropped, so the agent removes exactly the
//! denied connections with one ctnetlink delete filtered by mark per
//! direction (no dump; see `nftpol_netlink::Dataplane::flush_conntrack_by_mark`):
//! without it, every retransmit refreshes the entry, which lingers until
//! its timeout. A new connection's first packet has no confirmed entry to
//! mark: the stamp tests the state and leaves it alone. A flow denied and
//! allowed again before the flush is stamped with the new generation by its
//! next packet, which overwrites DENIED.
//!
//! Why one field per direction (egress bits and ingress bits of the mark):
//! an accept ends only its own base chain, and each base chain reads the
//! ruleset generation once when it starts. The stamp runs inside the base
//! chain that judged, so it always carries the generation of the rules that
//! judged; with a single field, an egress chain run under the old
//! generation and an ingress stamp under the new one would mark a flow
//! judged that the new egress rules never saw.
//!
//! Untracked packets (`notrack`) have no tuple: the judging rules cannot
//! match them, so an isolated pod's untracked packets are dropped by packet
//! address (fail closed).

use std::borrow::Cow;

use nftpol_ir::diff::{Change, Diff};
use nftpol_ir::{Action, Chain, CtDirection, CtState, Field, Match, Rule, Ruleset, Verdict};
use nftpol_model::Direction;

use crate::catalogue::{ChainName, ChainOrigin, RuleRole};
use crate::compile::Compiled;

/// The connection mark bits nftpol uses unless told otherwise: the upper
/// 16 bits, two 8-bit generation fields (egress low, ingress high), 254
/// generations before a value comes round again (0 is "never judged", 255
/// "denied").
pub const DEFAULT_MARK_BITS: u32 = 0xffff_0000;

/// Why a `--ct-mark-bits` mask is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkBitsError {
    /// The text is not a 32-bit number.
    #[error("ct mark bits {0:?} are not a 32-bit number (e.g. 0xffff0000)")]
    NotANumber(String),
    /// The bits are not one contiguous run.
    #[error("ct mark bits {0:#010x} are not contiguous")]
    NotContiguous(u32),
    /// The run has an odd number of bits or fewer than four.
    #[error(
        "ct mark bits {0:#010x}: need an even number of bits, at least 4 (two generation fields)"
    )]
    BadWidth(u32),
}

/// The bits of the connection mark nftpol owns: a contiguous run of an
/// even number of bits, its lower half the egress field, its upper half the
/// ingress field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkBits {
    mask: u32,
}

impl Default for MarkBits {
    fn default() -> Self {
        Self {
            mask: DEFAULT_MARK_BITS,
        }
    }
}

impl MarkBits {
    /// Validates `mask`.
    pub fn new(mask: u32) -> Result<Self, MarkBitsError> {
        let width = mask.count_ones();
        if mask == 0 || mask >> mask.trailing_zeros() != u32::MAX >> (32 - width) {
            return Err(MarkBitsError::NotContiguous(mask));
        }
        if width < 4 || !width.is_multiple_of(2) {
            return Err(MarkBitsError::BadWidth(mask));
        }
        Ok(Self { mask })
    }

    /// All the bits.
    pub fn mask(self) -> u32 {
        self.mask
    }

    /// The bits of one direction's generation field.
    pub fn field(self, direction: Direction) -> u32 {
        let half = self.mask.count_ones() / 2;
        let low = (u32::MAX >> (32 - half)) << self.mask.trailing_zeros();
        match direction {
            Direction::Egress => low,
            Direction::Ingress => self.mask & !low,
        }
    }

    fn shift(self, direction: Direction) -> u32 {
        self.field(direction).trailing_zeros()
    }

    /// The largest generation a field holds (0 means "never judged", and
    /// the field's largest value is [`MarkBits::denied`]).
    pub fn max_generation(self) -> u32 {
        (self.field(Direction::Egress) >> self.shift(Direction::Egress)) - 1
    }

    /// The mark value, within [`MarkBits::field`], of a flow whose stale
    /// packet `direction`'s judging rules denied: every bit of the field
    /// set, a value no generation takes.
    pub fn denied(self, direction: Direction) -> u32 {
        self.field(direction)
    }
}

impl std::fmt::Display for MarkBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#010x}", self.mask)
    }
}

impl std::str::FromStr for MarkBits {
    type Err = MarkBitsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.trim();
        let parsed = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => digits.parse(),
        };
        Self::new(parsed.map_err(|_| MarkBitsError::NotANumber(text.to_owned()))?)
    }
}

/// One generation of policy: flows stamped with it were judged by its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Generation(u32);

impl Generation {
    /// The generation of a table that never had one.
    pub const FIRST: Generation = Generation(1);

    /// Generation `number`, if a field of `marks` holds it (1 to
    /// [`MarkBits::max_generation`]).
    pub fn new(number: u32, marks: MarkBits) -> Option<Generation> {
        (1..=marks.max_generation())
            .contains(&number)
            .then_some(Generation(number))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The generation after this one, wrapping round to 1 (0 is never used,
    /// so a flow no nftpol rule ever stamped is always judged).
    #[must_use]
    pub fn next(self, marks: MarkBits) -> Generation {
        if self.0 >= marks.max_generation() {
            Generation::FIRST
        } else {
            Generation(self.0 + 1)
        }
    }
}

/// Re-judging settings of one compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejudge {
    /// The connection mark bits used.
    pub marks: MarkBits,
    /// The generation flows are stamped with.
    pub generation: Generation,
}

impl Default for Rejudge {
    /// The default bits, the first generation.
    fn default() -> Self {
        Self {
            marks: MarkBits::default(),
            generation: Generation::FIRST,
        }
    }
}

fn judged_chain(direction: Direction) -> String {
    ChainName::Judged { direction }.name()
}

fn stamp_chain(direction: Direction) -> String {
    ChainName::Stamp { direction }.name()
}

/// Turns `compiled` (compiled without re-judging) into the layout of the
/// module doc: every chain of a direction judges the connection and
/// accepts by way of that direction's stamp; the provenance follows rule by
/// rule.
pub(crate) fn install(compiled: &mut Compiled, rejudge: Rejudge) {
    judge_connections(compiled, rejudge.marks);
    for direction in [Direction::Egress, Direction::Ingress] {
        for (key, roles, chain) in generation_chains(rejudge, direction) {
            compiled.provenance.chains.insert(
                chain.name.clone(),
                ChainOrigin {
                    chain: key,
                    rules: roles,
                },
            );
            compiled.ruleset.chains.insert(chain.name.clone(), chain);
        }
    }
}

/// Rewrites every chain of `compiled` to judge the connection and accept by
/// way of its direction's stamp (the part of [`install`] that does not
/// depend on the generation, chain by chain: the policy path applies it to
/// the chains it compiles alone).
pub(crate) fn judge_connections(compiled: &mut Compiled, marks: MarkBits) {
    for (name, origin) in &mut compiled.provenance.chains {
        let Some(chain) = compiled.ruleset.chains.get_mut(name) else {
            continue;
        };
        let direction = origin.chain.direction();
        let stamp = stamp_chain(direction);
        let rules = std::mem::take(&mut chain.rules);
        let roles = std::mem::take(&mut origin.rules);
        for (role, rule) in roles.into_iter().zip(rules) {
            let rewritten = match role {
                RuleRole::ConntrackBypass => vec![(
                    role,
                    Rule {
                        action: Action::Verdict(Verdict::Jump(judged_chain(direction))),
                        ..rule
                    },
                )],
                RuleRole::UntrackedDrop => vec![(role, rule)],
                _ => in_connection_sense(rule, &stamp)
                    .into_iter()
                    .flat_map(|rule| {
                        // Every deny of the judging chains (a group chain's
                        // final one, a ClusterNetworkPolicy Deny) marks the
                        // stale connection it cuts for the conntrack flush.
                        let denies =
                            matches!(role, RuleRole::IsolatedDeny | RuleRole::ClusterRule { .. })
                                && matches!(
                                    rule.action,
                                    Action::Verdict(Verdict::Drop | Verdict::Reject)
                                );
                        let stamp = denies.then(|| {
                            (
                                RuleRole::DeniedStamp,
                                denied_stamp(marks, direction, &rule.matches),
                            )
                        });
                        stamp.into_iter().chain([(role.clone(), rule)])
                    })
                    .collect(),
            };
            for (role, rule) in rewritten {
                origin.rules.push(role);
                chain.rules.push(rule);
            }
        }
        if matches!(origin.chain, ChainName::Base { .. }) {
            origin.rules.push(RuleRole::NotIsolated);
            chain.rules.push(Rule {
                matches: vec![],
                counter: false,
                action: Action::Verdict(Verdict::Goto(stamp)),
                comment: None,
            });
        }
        // The committed ruleset keeps these vectors: no growth slack.
        origin.rules.shrink_to_fit();
        chain.rules.shrink_to_fit();
    }
}

/// `ct state established,related MATCHES ct mark set ct mark and ~FIELD
/// or DENIED`: marks the connection of a stale packet the deny rule with
/// `matches` denies in `direction`, for the agent's conntrack flush (see
/// the module doc).
fn denied_stamp(marks: MarkBits, direction: Direction, matches: &[Match]) -> Rule {
    Rule {
        matches: [Match::CtState(
            [CtState::Established, CtState::Related].into(),
        )]
        .into_iter()
        .chain(matches.iter().cloned())
        .collect(),
        counter: false,
        action: Action::SetCtMark {
            mask: marks.field(direction),
            value: marks.denied(direction),
        },
        comment: None,
    }
}

/// The rule judging the connection instead of the packet, accepting by
/// way of the stamp: one rule, or two when it tests the destination port.
fn in_connection_sense(rule: Rule, stamp: &str) -> Vec<Rule> {
    let mut rule = map_fields(rule, connection_field);
    if rule.action == Action::Verdict(Verdict::Accept) {
        rule.action = Action::Verdict(Verdict::Goto(stamp.to_owned()));
    }
    if !uses_field(&rule, Field::TransportDport) {
        return vec![rule];
    }
    let reply = map_fields(rule.clone(), |field| match field {
        Field::TransportDport => Field::TransportSport,
        other => other,
    });
    [(CtDirection::Original, rule), (CtDirection::Reply, reply)]
        .into_iter()
        .map(|(direction, mut rule)| {
            rule.matches.insert(0, Match::CtDirection(direction));
            rule
        })
        .collect()
}

/// A packet field as the connection's field: the source is the side that
/// opened the connection, the destination the side that answers it.
fn connection_field(field: Field) -> Field {
    match field {
        Field::Ipv4Saddr => Field::CtOriginalIpv4Saddr,
        Field::Ipv4Daddr => Field::CtReplyIpv4Saddr,
        Field::Ipv6Saddr => Field::CtOriginalIpv6Saddr,
        Field::Ipv6Daddr => Field::CtReplyIpv6Saddr,
        other => other,
    }
}

fn map_fields(mut rule: Rule, map: impl Fn(Field) -> Field) -> Rule {
    for matched in &mut rule.matches {
        if let Match::Lookup { key, .. } = matched {
            for field in key.iter_mut() {
                *field = map(*field);
            }
        }
    }
    if let Action::VerdictMap { key, .. } = &mut rule.action {
        for field in key.iter_mut() {
            *field = map(*field);
        }
    }
    rule
}

fn uses_field(rule: &Rule, wanted: Field) -> bool {
    let lookups = rule.matches.iter().filter_map(|matched| match matched {
        Match::Lookup { key, .. } => Some(&key[..]),
        _ => None,
    });
    let map = match &rule.action {
        Action::VerdictMap { key, .. } => Some(&key[..]),
        _ => None,
    };
    lookups.chain(map).flatten().any(|field| *field == wanted)
}

/// `judged-DIRECTION` and `stamp-DIRECTION` for `rejudge`'s generation,
/// with their catalogue keys and rule roles.
fn generation_chains(
    rejudge: Rejudge,
    direction: Direction,
) -> [(ChainName, Vec<RuleRole>, Chain); 2] {
    let field = rejudge.marks.field(direction);
    let value = rejudge.generation.get() << rejudge.marks.shift(direction);
    let rule = |matches, action| Rule {
        matches,
        counter: false,
        action,
        comment: None,
    };
    let judged = ChainName::Judged { direction };
    let stamp = ChainName::Stamp { direction };
    [
        (
            judged.clone(),
            vec![RuleRole::CurrentGeneration],
            Chain {
                name: judged.name(),
                base: None,
                comment: Some(format!(
                    "established flows judged for {direction} under the current policy generation"
                )),
                rules: vec![rule(
                    vec![Match::CtMark { mask: field, value }],
                    Action::Verdict(Verdict::Accept),
                )],
            },
        ),
        (
            stamp.clone(),
            vec![RuleRole::Stamp, RuleRole::StampedAccept],
            Chain {
                name: stamp.name(),
                base: None,
                comment: Some(format!(
                    "stamps a flow {direction} accepts with the current policy generation"
                )),
                rules: vec![
                    rule(vec![], Action::SetCtMark { mask: field, value }),
                    rule(vec![], Action::Verdict(Verdict::Accept)),
                ],
            },
        ),
    ]
}

/// The generation `ruleset` stamps flows with under `marks`, if it was
/// compiled with re-judging and the same bits.
pub fn generation_of(ruleset: &Ruleset, marks: MarkBits) -> Option<Generation> {
    let stamped = |direction: Direction| {
        let chain = ruleset.chains.get(&stamp_chain(direction))?;
        chain.rules.iter().find_map(|rule| match rule.action {
            Action::SetCtMark { mask, value } if mask == marks.field(direction) => {
                Some(value >> marks.shift(direction))
            }
            _ => None,
        })
    };
    let egress = stamped(Direction::Egress)?;
    Generation::new(egress, marks).filter(|_| stamped(Direction::Ingress) == Some(egress))
}

/// Rewrites `ruleset` (compiled with `marks`) to stamp and accept
/// `rejudge.generation`.
pub fn set_generation(ruleset: &mut Ruleset, rejudge: Rejudge) {
    for direction in [Direction::Egress, Direction::Ingress] {
        for (_, _, chain) in generation_chains(rejudge, direction) {
            if ruleset.chains.contains_key(&chain.name) {
                ruleset.chains.insert(chain.name.clone(), chain);
            }
        }
    }
}

/// `changes` (element changes only, to `current`) plus what moves
/// `current`'s generation chains to `rejudge.generation`: flushed first and
/// refilled last, in the batch order of [`nftpol_ir::diff`].
pub fn with_generation<'a>(changes: Diff<'a>, current: &Ruleset, rejudge: Rejudge) -> Diff<'a> {
    let chains: Vec<Chain> = [Direction::Egress, Direction::Ingress]
        .into_iter()
        .flat_map(|direction| generation_chains(rejudge, direction))
        .map(|(_, _, chain)| chain)
        .filter(|chain| current.chains.contains_key(&chain.name))
        .collect();
    let mut all: Vec<Change> = chains
        .iter()
        .map(|chain| Change::FlushChain(chain.name.clone()))
        .collect();
    all.extend(changes.changes);
    all.extend(chains.into_iter().flat_map(|chain| {
        let name = chain.name;
        chain.rules.into_iter().map(move |rule| Change::AddRule {
            chain: name.clone(),
            rule: Cow::Owned(rule),
        })
    }));
    Diff { changes: all }
}

/// Whether committing `new` over `old` may take permission away: `false`
/// only when `new` accepts, in every base chain, every packet `old`
/// accepts (see [`crate::widening`] for the argument), so that no flow
/// judged under `old` needs judging again. Decided from the structure:
/// - re-judges nothing: elements added to sets that widen accepting rules
///   (pods joining a peer, ipBlocks, ports); a new allow rule, peer or port
///   in an existing policy (a new rule, or a rule whose sets only grew); a
///   new policy for pods already isolated in that direction (their group
///   chain gains a jump into a chain that only accepts); a new pod on this
///   node that no policy isolates;
/// - re-judges (conservative where a diff cannot tell): a new isolation,
///   any element removed from an allow set, a removed rule or policy (even
///   one another policy makes redundant), a pod leaving isolation, a
///   changed base chain, and whatever else the argument does not cover.
pub fn may_remove_permission(old: &Ruleset, new: &Ruleset) -> bool {
    let stamps = [
        stamp_chain(Direction::Egress),
        stamp_chain(Direction::Ingress),
    ];
    !crate::widening::widens(old, new, &stamps)
}

/// [`may_remove_permission`] for `changes` that touch elements only, on
/// `ruleset`'s rules (the remote-pod path, which never builds the new
/// ruleset): anything but elements added to sets that only ever widen an
/// accepting rule may take permission away.
pub fn elements_may_remove_permission(changes: &Diff, ruleset: &Ruleset) -> bool {
    changes.changes.iter().any(|change| match change {
        Change::AddElements { set, .. } => !only_widens_accepts(ruleset, set),
        _ => true,
    })
}

fn only_widens_accepts(ruleset: &Ruleset, set: &str) -> bool {
    let stamps = [
        stamp_chain(Direction::Egress),
        stamp_chain(Direction::Ingress),
    ];
    ruleset
        .chains
        .values()
        .flat_map(|chain| &chain.rules)
        .all(|rule| {
            let mut looked_up = rule.matches.iter().filter_map(|matched| match matched {
                Match::Lookup {
                    set: name, negated, ..
                } if name == set => Some(*negated),
                _ => None,
            });
            let in_map = matches!(&rule.action, Action::VerdictMap { map, .. } if map == set);
            let accepts = match &rule.action {
                Action::Verdict(Verdict::Accept) => true,
                Action::Verdict(Verdict::Goto(target)) => stamps.contains(target),
                _ => false,
            };
            !in_map && looked_up.all(|negated| !negated && accepts)
        })
}
