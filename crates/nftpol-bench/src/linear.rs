//! The contrast ruleset of measurement 4: nftpol's allow-list written as
//! linear rules, as iptables-based agents generate it.
//!
//! From nftpol's IR: every lookup in a peer set (`pods-…`, `block-…`) becomes one rule
//! per peer address (pod ranges of up to 256 addresses are split into
//! single addresses; larger `ipBlock` ranges stay one rule), the dispatch
//! maps become one `ip daddr X goto …` rule per local pod address, and the
//! self-pair lookups one rule per local address. Policy-derived port sets,
//! named-port sets and the unknown-pod guard stay as they are, so the only
//! difference is per-peer and per-pod linear matching.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use nftpol_ir::render::{field_text, render, render_rule};
use nftpol_ir::{Action, Element, Match, Rule, Value, TABLE_NAME};
use nftpol_ruleset::catalogue::{Provenance, SetKind};
use nftpol_ruleset::compile::Compiled;

/// Ranges up to this many addresses are written address by address.
const SPLIT_UP_TO: u32 = 256;

fn value(value: &Value) -> String {
    match value {
        Value::Ipv4(address) => address.to_string(),
        Value::Ipv6(address) => address.to_string(),
        Value::Proto(number) => number.to_string(),
        Value::Port(number) => number.to_string(),
    }
}

/// The literal values of one single-field element: single addresses, or one range.
fn literals(element: &Element) -> Vec<String> {
    match (element.start().first(), element.end().first()) {
        (Some(Value::Ipv4(first)), Some(Value::Ipv4(last))) => {
            let (first, last) = (u32::from(*first), u32::from(*last));
            if last - first < SPLIT_UP_TO {
                (first..=last)
                    .map(|address| Ipv4Addr::from(address).to_string())
                    .collect()
            } else {
                vec![format!(
                    "{}-{}",
                    Ipv4Addr::from(first),
                    Ipv4Addr::from(last)
                )]
            }
        }
        (Some(first), Some(last)) if first == last => vec![value(first)],
        (Some(first), Some(last)) => vec![format!("{}-{}", value(first), value(last))],
        _ => Vec::new(),
    }
}

/// Whether the rules that look up `set` are expanded into one rule per
/// element: the address sets a linear ruleset spells out rule by rule.
fn is_expanded(provenance: &Provenance, set: &str) -> bool {
    matches!(
        provenance.set_kind(set),
        Some(SetKind::PodPeers | SetKind::IpBlocks | SetKind::SelfPairs | SetKind::Dispatch)
    )
}

/// Which match of `rule` is expanded, if any.
fn expanded_match(provenance: &Provenance, rule: &Rule) -> Option<usize> {
    rule.matches.iter().position(|matched| {
        matches!(matched, Match::Lookup { set, negated: false, .. } if is_expanded(provenance, set))
    })
}

/// The linear rules of one IR rule.
fn linear_rules(compiled: &Compiled, rule: &Rule) -> Vec<String> {
    let ruleset = &compiled.ruleset;
    if let Action::VerdictMap { key, map } = &rule.action {
        let Some(set) = ruleset.sets.get(map) else {
            return Vec::new();
        };
        let Some(first) = key.first() else {
            return Vec::new();
        };
        return set
            .elements
            .iter()
            .filter_map(|element| {
                let verdict = match element.verdict()? {
                    nftpol_ir::Verdict::Goto(chain) => format!("goto {chain}"),
                    nftpol_ir::Verdict::Jump(chain) => format!("jump {chain}"),
                    _ => return None,
                };
                Some(format!(
                    "{} {} {verdict}",
                    field_text(*first),
                    value(element.start().first()?)
                ))
            })
            .collect();
    }
    let Some(position) = expanded_match(&compiled.provenance, rule) else {
        return vec![render_rule(rule)];
    };
    let Match::Lookup { key, set, .. } = &rule.matches[position] else {
        return vec![render_rule(rule)];
    };
    let mut rest = rule.clone();
    rest.matches.remove(position);
    let rest = render_rule(&rest);
    let Some(set) = ruleset.sets.get(set) else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for element in &set.elements {
        if key.len() == 1 {
            for literal in literals(element) {
                rules.push(format!("{} {literal} {rest}", field_text(key[0])));
            }
        } else {
            let parts: Vec<String> = key
                .iter()
                .zip(element.start())
                .map(|(f, v)| format!("{} {}", field_text(*f), value(v)))
                .collect();
            rules.push(format!("{} {rest}", parts.join(" ")));
        }
    }
    rules
}

/// The linear ruleset as `nft -f` text, and its rule count.
pub fn render_linear(compiled: &Compiled) -> (String, usize) {
    let ruleset = &compiled.ruleset;
    let mut skeleton = ruleset.clone();
    skeleton
        .sets
        .retain(|name, _| !is_expanded(&compiled.provenance, name));
    for chain in skeleton.chains.values_mut() {
        chain.rules.clear();
    }
    let mut text = render(&skeleton);
    let mut count = 0;
    for chain in ruleset.chains.values() {
        for rule in &chain.rules {
            for line in linear_rules(compiled, rule) {
                count += 1;
                // Writing to a String cannot fail.
                let _ = writeln!(text, "add rule inet {TABLE_NAME} {} {line}", chain.name);
            }
        }
    }
    (text, count)
}
