//! The IR → `nft -f` syntax: what the agent installs, for people and for
//! `nft -c` checks.
//!
//! Sets and maps come first (the most looked up first, see
//! [`crate::diff::sets_by_use`]), then chains in name order: the order in
//! which a diff from nothing creates them, so `nft list` of a table loaded
//! from this text and of one applied over netlink print identically (nft
//! lists objects in creation order), and `nft -f` of it gets the same
//! kernel cost. `nft -f` resolves references to chains defined further down
//! the same file.

// `let _ = writeln!(out, …)` below: writing to a String cannot fail.
use std::fmt::Write;

use crate::{
    Action, BaseChain, Chain, ChainPolicy, CtDirection, CtState, Element, Field, KeyType, Match,
    Rule, Ruleset, Set, Value, Verdict, TABLE_FAMILY, TABLE_NAME,
};

/// Renders the whole table as one `table inet nftpol { … }` block.
pub fn render(ruleset: &Ruleset) -> String {
    let mut out = format!("table {TABLE_FAMILY} {TABLE_NAME} {{\n");
    for set in crate::diff::sets_by_use(ruleset, ruleset.sets.values()) {
        render_set(&mut out, set);
    }
    for chain in ruleset.chains.values() {
        render_chain(&mut out, chain);
    }
    out.push_str("}\n");
    out
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "'"))
}

fn render_set(out: &mut String, set: &Set) {
    let kind = if set.is_verdict_map || set.dynamic.is_some() {
        "map"
    } else {
        "set"
    };
    let key: Vec<&str> = set.key.iter().map(|key| key_type(*key)).collect();
    let _ = writeln!(out, "\t{kind} {} {{", set.name);
    if set.is_verdict_map {
        let _ = writeln!(out, "\t\ttype {} : verdict", key.join(" . "));
    } else if let Some(dynamic) = &set.dynamic {
        let data: Vec<&str> = dynamic.data.iter().map(|key| key_type(*key)).collect();
        let _ = writeln!(out, "\t\ttype {} : {}", key.join(" . "), data.join(" . "));
        let _ = writeln!(out, "\t\tsize {}", dynamic.size);
        out.push_str("\t\tflags dynamic,timeout\n");
    } else {
        let _ = writeln!(out, "\t\ttype {}", key.join(" . "));
    }
    if set.interval {
        out.push_str("\t\tflags interval\n");
    }
    if let Some(comment) = &set.comment {
        let _ = writeln!(out, "\t\tcomment {}", quote(comment));
    }
    if !set.elements.is_empty() {
        let elements: Vec<String> = set.elements.iter().map(element).collect();
        let _ = writeln!(
            out,
            "\t\telements = {{ {} }}",
            elements.join(",\n\t\t\t     ")
        );
    }
    out.push_str("\t}\n");
}

fn key_type(key: KeyType) -> &'static str {
    match key {
        KeyType::Ipv4Addr => "ipv4_addr",
        KeyType::Ipv6Addr => "ipv6_addr",
        KeyType::InetProto => "inet_proto",
        KeyType::InetService => "inet_service",
    }
}

fn value(value: &Value) -> String {
    match value {
        Value::Ipv4(address) => address.to_string(),
        Value::Ipv6(address) => address.to_string(),
        Value::Proto(6) => "tcp".to_owned(),
        Value::Proto(17) => "udp".to_owned(),
        Value::Proto(132) => "sctp".to_owned(),
        Value::Proto(number) => number.to_string(),
        Value::Port(number) => number.to_string(),
    }
}

fn element(element: &Element) -> String {
    let fields: Vec<String> = element
        .start()
        .iter()
        .zip(element.end())
        .map(|(start, end)| {
            if start == end {
                value(start)
            } else {
                format!("{}-{}", value(start), value(end))
            }
        })
        .collect();
    match element.verdict() {
        Some(verdict_value) => format!("{} : {}", fields.join(" . "), verdict(verdict_value)),
        None => fields.join(" . "),
    }
}

fn render_chain(out: &mut String, chain: &Chain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(comment) = &chain.comment {
        let _ = writeln!(out, "\t\tcomment {}", quote(comment));
    }
    if let Some(BaseChain {
        hook,
        priority,
        policy,
    }) = chain.base
    {
        let policy = match policy {
            ChainPolicy::Accept => "accept",
            ChainPolicy::Drop => "drop",
        };
        let _ = writeln!(
            out,
            "\t\ttype filter hook {} priority {priority}; policy {policy};",
            hook.name()
        );
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", render_rule(rule));
    }
    out.push_str("\t}\n");
}

/// One rule in nft syntax.
pub fn render_rule(rule: &Rule) -> String {
    let mut parts: Vec<String> = rule.matches.iter().map(render_match).collect();
    if rule.counter {
        parts.push("counter".to_owned());
    }
    parts.push(match &rule.action {
        Action::Verdict(verdict_value) => verdict(verdict_value),
        Action::VerdictMap { key, map } => format!("{} vmap @{map}", fields(key)),
        // nft has no `&!`: the kept bits are spelled out.
        Action::SetCtMark { mask, value } => {
            format!("ct mark set ct mark and {:#010x} or {value:#010x}", !mask)
        }
        Action::Log(log) => format!("log prefix {} group {}", quote(&log.prefix), log.group),
        Action::Update(update) => format!(
            "update @{} {{ {} timeout {}s : {} }}",
            update.set,
            fields(&update.key),
            update.timeout.as_secs(),
            fields(&update.data)
        ),
    });
    if let Some(comment) = &rule.comment {
        parts.push(format!("comment {}", quote(comment)));
    }
    parts.join(" ")
}

fn render_match(matched: &Match) -> String {
    match matched {
        Match::CtState(states) => {
            let names: Vec<&str> = states
                .iter()
                .map(|state| match state {
                    CtState::Invalid => "invalid",
                    CtState::Established => "established",
                    CtState::Related => "related",
                    CtState::New => "new",
                    CtState::Untracked => "untracked",
                })
                .collect();
            format!("ct state {}", names.join(","))
        }
        Match::CtDirection(direction) => format!(
            "ct direction {}",
            match direction {
                CtDirection::Original => "original",
                CtDirection::Reply => "reply",
            }
        ),
        Match::CtMark { mask, value } => format!("ct mark and {mask:#010x} == {value:#010x}"),
        Match::Icmpv6TypeRange { first, last } => format!("icmpv6 type {first}-{last}"),
        Match::SaddrIsLocal => "fib saddr type local".to_owned(),
        Match::DaddrIsLocal => "fib daddr type local".to_owned(),
        Match::CtStatusDnat => "ct status dnat".to_owned(),
        Match::Lookup { key, set, negated } => {
            format!(
                "{} {}@{set}",
                fields(key),
                if *negated { "!= " } else { "" }
            )
        }
        Match::Limit(limit) => format!(
            "limit rate {}/{} burst {} packets",
            limit.rate,
            limit.unit.name(),
            limit.burst
        ),
    }
}

/// A packet field in nft syntax.
pub fn field_text(field: Field) -> &'static str {
    match field {
        Field::Ipv4Saddr => "ip saddr",
        Field::Ipv4Daddr => "ip daddr",
        Field::Ipv6Saddr => "ip6 saddr",
        Field::Ipv6Daddr => "ip6 daddr",
        Field::L4Proto => "meta l4proto",
        Field::TransportDport => "th dport",
        Field::TransportSport => "th sport",
        Field::CtOriginalIpv4Saddr => "ct original ip saddr",
        Field::CtReplyIpv4Saddr => "ct reply ip saddr",
        Field::CtOriginalIpv6Saddr => "ct original ip6 saddr",
        Field::CtReplyIpv6Saddr => "ct reply ip6 saddr",
        Field::CtOriginalIpv4Daddr => "ct original ip daddr",
        Field::CtOriginalIpv6Daddr => "ct original ip6 daddr",
        Field::CtOriginalProtoDst => "ct original proto-dst",
    }
}

fn fields(key: &[Field]) -> String {
    key.iter()
        .map(|field| field_text(*field))
        .collect::<Vec<_>>()
        .join(" . ")
}

fn verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Accept => "accept".to_owned(),
        Verdict::Drop => "drop".to_owned(),
        Verdict::Reject => "reject with icmpx admin-prohibited".to_owned(),
        Verdict::Return => "return".to_owned(),
        Verdict::Jump(chain) => format!("jump {chain}"),
        Verdict::Goto(chain) => format!("goto {chain}"),
    }
}
