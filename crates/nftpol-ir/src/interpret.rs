//! Walks a packet through the IR as the kernel would: base chains of the
//! packet's hook in priority order, matches, set and concatenation and
//! interval lookups, verdict maps, jump/goto/return, chain policies.
//!
//! `accept` ends one base chain only; `drop` and `reject` end the packet.
//! `ct` keys read the packet's [`Conntrack`] entry, and `ct mark set` writes
//! its mark, which later base chains (and the returned [`Trace`]) see.
//! A `log` rule records the packet and goes on: it never decides. A
//! `limit` is taken as holding (its token bucket lives in the kernel). A
//! dynamic map `update` is a side effect the trace records; the map's
//! elements are the kernel's, so the interpreter never reads them back.

use std::net::IpAddr;

use crate::render::render_rule;
use crate::{
    Action, ChainPolicy, CtDirection, CtState, Element, Field, Hook, Log, Match, Rule, Ruleset,
    SetUpdate, Value, Verdict,
};

/// The kernel's jump stack depth (`NFT_JUMP_STACK_SIZE`).
const MAX_JUMP_DEPTH: usize = 16;

/// What the interpreter needs to know about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The hook it traverses.
    pub hook: Hook,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// IP protocol number.
    pub l4proto: u8,
    /// Destination port (TCP, UDP, SCTP) or ICMPv6 type.
    pub dport: u16,
    /// Source port (TCP, UDP, SCTP).
    pub sport: u16,
    /// Conntrack state ([`CtState::Untracked`] when `conntrack` is `None`).
    pub ct_state: CtState,
    /// The connection the packet belongs to; `None` when untracked.
    pub conntrack: Option<Conntrack>,
    /// Whether the source address belongs to this host (`fib saddr type local`).
    pub source_is_local: bool,
    /// Whether the destination address belongs to this host (`fib daddr
    /// type local`).
    pub destination_is_local: bool,
}

/// The source port [`Packet::opening`] gives: any ephemeral port.
const EPHEMERAL_PORT: u16 = 40_000;

impl Packet {
    /// The first packet of a new connection from `source` to
    /// `destination:dport` (from an ephemeral port, not from this host; to
    /// this host exactly when it traverses `input`), with the conntrack
    /// entry it creates.
    pub fn opening(
        hook: Hook,
        source: IpAddr,
        destination: IpAddr,
        l4proto: u8,
        dport: u16,
    ) -> Self {
        Self {
            hook,
            source,
            destination,
            l4proto,
            dport,
            sport: EPHEMERAL_PORT,
            ct_state: CtState::New,
            conntrack: Some(Conntrack::opened(source, destination)),
            source_is_local: false,
            destination_is_local: hook == Hook::Input,
        }
    }

    /// A later packet of this packet's connection, in `direction`, once the
    /// connection is established and its mark is `mark`.
    #[must_use]
    pub fn established(&self, direction: CtDirection, mark: u32) -> Self {
        let Some(entry) = self.conntrack else {
            return *self;
        };
        let conntrack = Some(Conntrack {
            direction,
            mark,
            ..entry
        });
        let turned = direction != entry.direction;
        Self {
            source: if turned {
                self.destination
            } else {
                self.source
            },
            destination: if turned {
                self.source
            } else {
                self.destination
            },
            sport: if turned { self.dport } else { self.sport },
            dport: if turned { self.sport } else { self.dport },
            ct_state: CtState::Established,
            conntrack,
            ..*self
        }
    }
}

/// What the interpreter needs to know about a packet's conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conntrack {
    /// Which way the packet goes.
    pub direction: CtDirection,
    /// The address that opened the connection (`ct original ip saddr`).
    pub original_source: IpAddr,
    /// The address that answers it, after DNAT (`ct reply ip saddr`).
    pub reply_source: IpAddr,
    /// The connection's mark.
    pub mark: u32,
    /// The destination address and port the connection was opened to
    /// before DNAT (a Service address), when it was DNATed (`ct status dnat`).
    pub dnat: Option<(IpAddr, u16)>,
}

impl Conntrack {
    /// The entry a connection from `source` to `destination` gets with its
    /// first packet: original direction, mark 0.
    pub fn opened(source: IpAddr, destination: IpAddr) -> Self {
        Self {
            direction: CtDirection::Original,
            original_source: source,
            reply_source: destination,
            mark: 0,
            dnat: None,
        }
    }
}

/// The packet's fate, and the rules that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Whether the packet passes every base chain.
    pub accepted: bool,
    /// Rendered rules whose matches held, in order.
    pub hits: Vec<String>,
    /// The connection's mark after the packet (`None` when untracked).
    pub ct_mark: Option<u32>,
    /// The `log` statements the packet passed, in order.
    pub logs: Vec<Log>,
    /// The dynamic map updates the packet made, in order.
    pub updates: Vec<SetUpdate>,
    /// Every rule the packet reached, in order, matched or not: the path
    /// `nftpol trace` prints.
    pub steps: Vec<Step>,
}

/// One rule a packet reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The rule's chain.
    pub chain: String,
    /// The rule's position in its chain, from 0.
    pub position: usize,
    /// The rule in nft syntax.
    pub rule: String,
    /// The set and map lookups evaluated, in order (a rule stops at its
    /// first condition that fails, as the kernel does).
    pub lookups: Vec<LookupStep>,
    /// Whether every condition held.
    pub matched: bool,
}

/// One set or map lookup of a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupStep {
    /// The set or map.
    pub set: String,
    /// Whether the packet's key was in it.
    pub found: bool,
}

/// An IR the kernel would not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpretError {
    /// A rule names a chain that does not exist.
    #[error("chain {0} does not exist")]
    MissingChain(String),
    /// A rule names a set that does not exist.
    #[error("set {0} does not exist")]
    MissingSet(String),
    /// Jumps nest deeper than the kernel allows.
    #[error("jumps nest deeper than {MAX_JUMP_DEPTH}")]
    TooDeep,
}

/// Runs `packet` through every base chain of its hook.
pub fn interpret(ruleset: &Ruleset, packet: &Packet) -> Result<Trace, InterpretError> {
    let mut bases: Vec<_> = ruleset
        .chains
        .values()
        .filter_map(|chain| {
            chain
                .base
                .filter(|base| base.hook == packet.hook)
                .map(|base| (base.priority, chain))
        })
        .collect();
    bases.sort_by_key(|(priority, chain)| (*priority, chain.name.clone()));
    let mut trace = Trace {
        accepted: true,
        hits: Vec::new(),
        ct_mark: None,
        logs: Vec::new(),
        updates: Vec::new(),
        steps: Vec::new(),
    };
    let mut packet = *packet;
    for (_, chain) in bases {
        let verdict = run_base_chain(ruleset, &chain.name, &mut packet, &mut trace)?;
        let policy = chain.base.map(|base| base.policy);
        let dropped = match verdict {
            Some(Verdict::Drop | Verdict::Reject) => true,
            None => policy == Some(ChainPolicy::Drop),
            _ => false,
        };
        if dropped {
            trace.accepted = false;
            break;
        }
    }
    trace.ct_mark = packet.conntrack.map(|entry| entry.mark);
    Ok(trace)
}

/// Runs one base chain; `None` when it ends without a final verdict.
fn run_base_chain(
    ruleset: &Ruleset,
    base: &str,
    packet: &mut Packet,
    trace: &mut Trace,
) -> Result<Option<Verdict>, InterpretError> {
    // Each frame: chain name and the index of the next rule.
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut current = (base.to_owned(), 0usize);
    loop {
        let chain = ruleset
            .chains
            .get(&current.0)
            .ok_or_else(|| InterpretError::MissingChain(current.0.clone()))?;
        let Some(rule) = chain.rules.get(current.1) else {
            // End of chain: implicit return.
            match stack.pop() {
                Some(frame) => {
                    current = frame;
                    continue;
                }
                None => return Ok(None),
            }
        };
        let position = current.1;
        current.1 += 1;
        let mut lookups = Vec::new();
        let matched = rule_matches(ruleset, rule, packet, &mut lookups)?;
        let verdict = if matched {
            match &rule.action {
                Action::Verdict(verdict) => Some(verdict.clone()),
                Action::VerdictMap { key, map } => {
                    let verdict = map_lookup(ruleset, key, map, packet)?;
                    lookups.push(LookupStep {
                        set: map.clone(),
                        found: verdict.is_some(),
                    });
                    verdict
                }
                Action::SetCtMark { mask, value } => {
                    // The kernel ignores `ct mark set` on an untracked packet.
                    if let Some(entry) = packet.conntrack.as_mut() {
                        entry.mark = (entry.mark & !mask) | value;
                    }
                    trace
                        .hits
                        .push(format!("{}: {}", chain.name, render_rule(rule)));
                    None
                }
                Action::Log(log) => {
                    trace.logs.push(log.clone());
                    None
                }
                Action::Update(update) => {
                    // The kernel's dynset breaks the rule when a key or data
                    // field is missing; the rule has no verdict either way.
                    if key_of(&update.key, packet).is_some()
                        && key_of(&update.data, packet).is_some()
                    {
                        trace.updates.push(SetUpdate::clone(update));
                    }
                    None
                }
            }
        } else {
            None
        };
        trace.steps.push(Step {
            chain: chain.name.clone(),
            position,
            rule: render_rule(rule),
            lookups,
            matched,
        });
        let Some(verdict) = verdict else { continue };
        trace
            .hits
            .push(format!("{}: {}", chain.name, render_rule(rule)));
        match verdict {
            Verdict::Accept | Verdict::Drop | Verdict::Reject => return Ok(Some(verdict)),
            Verdict::Return => match stack.pop() {
                Some(frame) => current = frame,
                None => return Ok(None),
            },
            Verdict::Jump(target) => {
                if stack.len() >= MAX_JUMP_DEPTH {
                    return Err(InterpretError::TooDeep);
                }
                stack.push(std::mem::replace(&mut current, (target, 0)));
            }
            Verdict::Goto(target) => current = (target, 0),
        }
    }
}

fn rule_matches(
    ruleset: &Ruleset,
    rule: &Rule,
    packet: &Packet,
    lookups: &mut Vec<LookupStep>,
) -> Result<bool, InterpretError> {
    for matched in &rule.matches {
        let holds = match matched {
            Match::CtState(states) => states.contains(&packet.ct_state),
            // A `ct` key of an untracked packet breaks the rule.
            Match::CtDirection(direction) => packet
                .conntrack
                .is_some_and(|entry| entry.direction == *direction),
            Match::CtMark { mask, value } => packet
                .conntrack
                .is_some_and(|entry| entry.mark & mask == *value),
            Match::Icmpv6TypeRange { first, last } => {
                packet.source.is_ipv6()
                    && packet.l4proto == 58
                    && (u16::from(*first)..=u16::from(*last)).contains(&packet.dport)
            }
            Match::SaddrIsLocal => packet.source_is_local,
            Match::DaddrIsLocal => packet.destination_is_local,
            Match::CtStatusDnat => packet.conntrack.is_some_and(|entry| entry.dnat.is_some()),
            Match::Limit(_) => true,
            Match::Lookup { key, set, negated } => match key_of(key, packet) {
                // A field of the other family fails its `meta nfproto` dependency:
                // the rule does not match, negated or not.
                None => false,
                Some(values) => {
                    let found = find_element(ruleset, set, &values)?.is_some();
                    lookups.push(LookupStep {
                        set: set.clone(),
                        found,
                    });
                    found != *negated
                }
            },
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn map_lookup(
    ruleset: &Ruleset,
    key: &[Field],
    map: &str,
    packet: &Packet,
) -> Result<Option<Verdict>, InterpretError> {
    match key_of(key, packet) {
        None => Ok(None),
        Some(values) => {
            Ok(find_element(ruleset, map, &values)?.and_then(|element| element.verdict().cloned()))
        }
    }
}

/// The element of set `name` holding the key, if any.
fn find_element<'a>(
    ruleset: &'a Ruleset,
    name: &str,
    values: &[Value],
) -> Result<Option<&'a Element>, InterpretError> {
    let set = ruleset
        .sets
        .get(name)
        .ok_or_else(|| InterpretError::MissingSet(name.to_owned()))?;
    Ok(set.elements.iter().find(|element| {
        element.start().len() == values.len()
            && values
                .iter()
                .zip(element.start().iter().zip(element.end()))
                .all(|(value, (start, end))| start <= value && value <= end)
    }))
}

fn key_of(key: &[Field], packet: &Packet) -> Option<Vec<Value>> {
    key.iter().map(|field| value_of(*field, packet)).collect()
}

/// The value of one field; `None` when the packet has no such field (the
/// other family, or a `ct` key of an untracked packet).
fn value_of(field: Field, packet: &Packet) -> Option<Value> {
    let address = |address: IpAddr, ipv4: bool| match address {
        IpAddr::V4(address) if ipv4 => Some(Value::Ipv4(address)),
        IpAddr::V6(address) if !ipv4 => Some(Value::Ipv6(address)),
        _ => None,
    };
    let entry = packet.conntrack;
    // The connection's original destination: before DNAT, the far end of
    // an original-direction packet, the near end of a reply.
    let original_destination = || {
        let entry = entry?;
        Some(entry.dnat.unwrap_or(match entry.direction {
            CtDirection::Original => (packet.destination, packet.dport),
            CtDirection::Reply => (packet.source, packet.sport),
        }))
    };
    match field {
        Field::Ipv4Saddr => address(packet.source, true),
        Field::Ipv4Daddr => address(packet.destination, true),
        Field::Ipv6Saddr => address(packet.source, false),
        Field::Ipv6Daddr => address(packet.destination, false),
        Field::CtOriginalIpv4Saddr => address(entry?.original_source, true),
        Field::CtReplyIpv4Saddr => address(entry?.reply_source, true),
        Field::CtOriginalIpv6Saddr => address(entry?.original_source, false),
        Field::CtReplyIpv6Saddr => address(entry?.reply_source, false),
        Field::CtOriginalIpv4Daddr => address(original_destination()?.0, true),
        Field::CtOriginalIpv6Daddr => address(original_destination()?.0, false),
        Field::CtOriginalProtoDst => Some(Value::Port(original_destination()?.1)),
        Field::L4Proto => Some(Value::Proto(packet.l4proto)),
        Field::TransportDport => Some(Value::Port(packet.dport)),
        Field::TransportSport => Some(Value::Port(packet.sport)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{BaseChain, Chain, RateLimit, RateUnit};

    fn log_rule(prefix: &str) -> Rule {
        Rule {
            matches: vec![
                Match::CtState([CtState::New].into()),
                Match::Limit(RateLimit {
                    rate: 10,
                    unit: RateUnit::Minute,
                    burst: 10,
                }),
            ],
            counter: false,
            action: Action::Log(Log {
                group: 100,
                prefix: prefix.to_owned(),
            }),
            comment: None,
        }
    }

    fn verdict_rule(verdict: Verdict) -> Rule {
        Rule {
            matches: vec![],
            counter: true,
            action: Action::Verdict(verdict),
            comment: None,
        }
    }

    fn base(rules: Vec<Rule>) -> Ruleset {
        let chain = Chain {
            name: "base".to_owned(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: ChainPolicy::Accept,
            }),
            comment: None,
            rules,
        };
        Ruleset {
            chains: BTreeMap::from([(chain.name.clone(), chain)]),
            sets: BTreeMap::new(),
        }
    }

    fn packet(ct_state: CtState) -> Packet {
        let opening = Packet::opening(
            Hook::Forward,
            "10.244.1.2".parse().expect("address"),
            "10.244.1.3".parse().expect("address"),
            6,
            80,
        );
        match ct_state {
            CtState::Established => opening.established(CtDirection::Original, 0),
            _ => opening,
        }
    }

    #[test]
    fn a_log_rule_never_changes_the_verdict() {
        let cases = [
            (
                "log then drop",
                vec![log_rule("d"), verdict_rule(Verdict::Drop)],
                CtState::New,
                false,
                1,
            ),
            (
                "log then accept",
                vec![log_rule("a"), verdict_rule(Verdict::Accept)],
                CtState::New,
                true,
                1,
            ),
            ("log alone", vec![log_rule("x")], CtState::New, true, 1),
            (
                "established packets are not logged",
                vec![log_rule("d"), verdict_rule(Verdict::Drop)],
                CtState::Established,
                false,
                0,
            ),
            (
                "nothing logged after the verdict",
                vec![verdict_rule(Verdict::Drop), log_rule("late")],
                CtState::New,
                false,
                0,
            ),
        ];
        for (name, rules, state, accepted, logs) in cases {
            let without_logs: Vec<Rule> = rules
                .iter()
                .filter(|rule| !matches!(rule.action, Action::Log(_)))
                .cloned()
                .collect();
            let trace = interpret(&base(rules), &packet(state)).expect("interprets");
            let plain = interpret(&base(without_logs), &packet(state)).expect("interprets");
            assert_eq!(trace.accepted, accepted, "{name}");
            assert_eq!(
                trace.accepted, plain.accepted,
                "{name}: logging changed the verdict"
            );
            assert_eq!(trace.logs.len(), logs, "{name}: {:?}", trace.logs);
        }
    }

    /// Position, matched, and each lookup's set and result.
    type PathStep = (usize, bool, Vec<(String, bool)>);

    #[test]
    fn the_path_lists_every_rule_reached_and_each_lookup() {
        let mut ruleset = base(vec![
            Rule {
                matches: vec![Match::Lookup {
                    key: vec![Field::Ipv4Saddr].into(),
                    set: "blocked".to_owned(),
                    negated: false,
                }],
                counter: false,
                action: Action::Verdict(Verdict::Drop),
                comment: None,
            },
            log_rule("x"),
            verdict_rule(Verdict::Accept),
            verdict_rule(Verdict::Drop),
        ]);
        ruleset.sets.insert(
            "blocked".to_owned(),
            crate::Set {
                name: "blocked".to_owned(),
                key: vec![crate::KeyType::Ipv4Addr],
                interval: false,
                is_verdict_map: false,
                dynamic: None,
                comment: None,
                elements: [Element::key(vec![Value::Ipv4(
                    "10.0.0.9".parse().expect("address"),
                )])]
                .into(),
            },
        );
        let trace = interpret(&ruleset, &packet(CtState::New)).expect("interprets");
        assert!(trace.accepted);
        let path: Vec<PathStep> = trace
            .steps
            .iter()
            .map(|step| {
                let lookups = step
                    .lookups
                    .iter()
                    .map(|lookup| (lookup.set.clone(), lookup.found))
                    .collect();
                (step.position, step.matched, lookups)
            })
            .collect();
        assert_eq!(
            path,
            [
                (0, false, vec![("blocked".to_owned(), false)]),
                (1, true, vec![]),
                (2, true, vec![]),
            ],
            "the rule after the accept is never reached"
        );
    }

    #[test]
    fn a_record_rule_updates_only_for_a_dnated_first_packet() {
        let record = Rule {
            matches: vec![Match::CtState([CtState::New].into()), Match::CtStatusDnat],
            counter: false,
            action: Action::Update(Box::new(SetUpdate {
                set: "origins-v4".to_owned(),
                key: vec![Field::Ipv4Saddr, Field::TransportSport],
                data: vec![Field::CtOriginalIpv4Daddr, Field::CtOriginalProtoDst],
                timeout: std::time::Duration::from_secs(10),
            })),
            comment: None,
        };
        let ruleset = base(vec![record, verdict_rule(Verdict::Drop)]);
        let plain = packet(CtState::New);
        let service: IpAddr = "10.96.0.10".parse().expect("address");
        let dnated = Packet {
            conntrack: plain.conntrack.map(|entry| Conntrack {
                dnat: Some((service, 8080)),
                ..entry
            }),
            ..plain
        };
        let cases = [
            ("untranslated", plain, 0),
            ("dnated", dnated, 1),
            (
                "dnated, established",
                dnated.established(CtDirection::Original, 0),
                0,
            ),
        ];
        for (name, packet, updates) in cases {
            let trace = interpret(&ruleset, &packet).expect("interprets");
            assert!(!trace.accepted, "{name}: an update is no verdict");
            assert_eq!(trace.updates.len(), updates, "{name}");
        }
        assert_eq!(
            value_of(Field::CtOriginalIpv4Daddr, &dnated),
            Some(Value::Ipv4("10.96.0.10".parse().expect("address")))
        );
        assert_eq!(
            value_of(Field::CtOriginalProtoDst, &dnated),
            Some(Value::Port(8080))
        );
        assert_eq!(
            value_of(Field::CtOriginalProtoDst, &plain),
            Some(Value::Port(80)),
            "untranslated: the packet's own destination"
        );
    }
}
