//! Walks a packet through the IR as the kernel would: base chains of the
//! packet's hook in priority order, matches, set and concatenation and
//! interval lookups, verdict maps, jump/goto/return, chain policies.
//!
//! `accept` ends one base chain only; `drop` and `reject` end the packet.
//! `ct` keys read the packet's [`Conntrack`] entry, and `ct mark set` writes
//! its mark, which later base chains (and the returned [`Trace`]) see.

use std::net::IpAddr;

use crate::render::render_rule;
use crate::{
    Action, ChainPolicy, CtDirection, CtState, Element, Field, Hook, Match, Rule, Ruleset, Value,
    Verdict,
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
}

/// The source port [`Packet::opening`] gives: any ephemeral port.
const EPHEMERAL_PORT: u16 = 40_000;

impl Packet {
    /// The first packet of a new connection from `source` to
    /// `destination:dport` (from an ephemeral port, not from this host),
    /// with the conntrack entry it creates.
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
    let mut hits = Vec::new();
    let mut packet = *packet;
    for (_, chain) in bases {
        let verdict = run_base_chain(ruleset, &chain.name, &mut packet, &mut hits)?;
        let policy = chain.base.map(|base| base.policy);
        let dropped = match verdict {
            Some(Verdict::Drop | Verdict::Reject) => true,
            None => policy == Some(ChainPolicy::Drop),
            _ => false,
        };
        if dropped {
            return Ok(Trace {
                accepted: false,
                hits,
                ct_mark: packet.conntrack.map(|entry| entry.mark),
            });
        }
    }
    Ok(Trace {
        accepted: true,
        hits,
        ct_mark: packet.conntrack.map(|entry| entry.mark),
    })
}

/// Runs one base chain; `None` when it ends without a final verdict.
fn run_base_chain(
    ruleset: &Ruleset,
    base: &str,
    packet: &mut Packet,
    hits: &mut Vec<String>,
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
        current.1 += 1;
        if !rule_matches(ruleset, rule, packet)? {
            continue;
        }
        let verdict = match &rule.action {
            Action::Verdict(verdict) => Some(verdict.clone()),
            Action::VerdictMap { key, map } => map_lookup(ruleset, key, map, packet)?,
            Action::SetCtMark { mask, value } => {
                // The kernel ignores `ct mark set` on an untracked packet.
                if let Some(entry) = packet.conntrack.as_mut() {
                    entry.mark = (entry.mark & !mask) | value;
                }
                hits.push(format!("{}: {}", chain.name, render_rule(rule)));
                None
            }
        };
        let Some(verdict) = verdict else { continue };
        hits.push(format!("{}: {}", chain.name, render_rule(rule)));
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

fn rule_matches(ruleset: &Ruleset, rule: &Rule, packet: &Packet) -> Result<bool, InterpretError> {
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
            Match::Lookup { key, set, negated } => match key_of(key, packet) {
                // A field of the other family fails its `meta nfproto` dependency:
                // the rule does not match, negated or not.
                None => false,
                Some(values) => find_element(ruleset, set, &values)?.is_some() != *negated,
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
            Ok(find_element(ruleset, map, &values)?.and_then(|element| element.verdict.clone()))
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
        element.start.len() == values.len()
            && values
                .iter()
                .zip(element.start.iter().zip(&element.end))
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
    match field {
        Field::Ipv4Saddr => address(packet.source, true),
        Field::Ipv4Daddr => address(packet.destination, true),
        Field::Ipv6Saddr => address(packet.source, false),
        Field::Ipv6Daddr => address(packet.destination, false),
        Field::CtOriginalIpv4Saddr => address(entry?.original_source, true),
        Field::CtReplyIpv4Saddr => address(entry?.reply_source, true),
        Field::CtOriginalIpv6Saddr => address(entry?.original_source, false),
        Field::CtReplyIpv6Saddr => address(entry?.reply_source, false),
        Field::L4Proto => Some(Value::Proto(packet.l4proto)),
        Field::TransportDport => Some(Value::Port(packet.dport)),
        Field::TransportSport => Some(Value::Port(packet.sport)),
    }
}
