//! Dumps of table `inet nftpol` (chains, rules, sets, elements) → IR.
//!
//! Input is raw bytes from the kernel, so every step returns
//! [`DecodeError`] and nothing here panics (a property test feeds it noise).
//! Anything nftpol does not write (an unknown expression, a set flag, a
//! chain type) is an error naming the object, never silently dropped.

use std::collections::BTreeMap;

use nftpol_ir::{Chain, Rule, Set};

use crate::batch::base_chain_of;
use crate::error::DecodeError;
use crate::expr::read_exprs;
use crate::nla::{messages, Attr, Attrs, WireError, NFGENMSG_LEN};
use crate::rule::read_rule;
use crate::set::{comment_of, find_udata, read_raw_elements, read_set, to_elements, RawElement};
use crate::uapi::{
    chain as c, elem, msg, rule as r, udata, NFNL_SUBSYS_NFTABLES, NLMSG_DONE, NLMSG_ERROR,
};

/// The raw datagrams of the dumps that make up one read of the table.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Replies to `GETCHAIN`.
    pub chains: Vec<Vec<u8>>,
    /// Replies to `GETRULE`.
    pub rules: Vec<Vec<u8>>,
    /// Replies to `GETSET`.
    pub sets: Vec<Vec<u8>>,
    /// Replies to `GETSETELEM`, per set.
    pub elements: BTreeMap<String, Vec<Vec<u8>>>,
}

/// Calls `f` with the attributes of every nf_tables message of type `kind`.
pub fn each_message<'a, D: AsRef<[u8]>>(
    datagrams: &'a [D],
    kind: u16,
    what: &str,
    mut f: impl FnMut(Attrs<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    for datagram in datagrams {
        for message in messages(datagram.as_ref()) {
            let message = message.map_err(DecodeError::wire(what))?;
            if message.kind == NLMSG_DONE || message.kind == NLMSG_ERROR {
                continue;
            }
            if message.kind != (NFNL_SUBSYS_NFTABLES << 8) | kind {
                return Err(DecodeError::unexpected(
                    what,
                    format!("message type {:#x}", message.kind),
                ));
            }
            let attrs = message.payload.get(NFGENMSG_LEN..).ok_or_else(|| {
                DecodeError::wire(what)(WireError::Truncated {
                    what: "nfgenmsg",
                    need: NFGENMSG_LEN,
                    have: message.payload.len(),
                })
            })?;
            f(Attrs::new(attrs))?;
        }
    }
    Ok(())
}

/// The first attribute of type `kind`.
pub fn find<'a>(attrs: &[Attr<'a>], kind: u16) -> Option<Attr<'a>> {
    attrs.iter().find(|attr| attr.kind == kind).copied()
}

/// The string attribute of type `kind`, if present; `object` names what the
/// message describes, for errors.
pub fn find_string(
    attrs: &[Attr<'_>],
    kind: u16,
    what: &'static str,
    object: &'static str,
) -> Result<Option<String>, DecodeError> {
    find(attrs, kind)
        .map(|attr| attr.string(what))
        .transpose()
        .map_err(DecodeError::wire(object))
}

/// Chains of `table`, without rules.
pub fn chains(datagrams: &[Vec<u8>], table: &str) -> Result<BTreeMap<String, Chain>, DecodeError> {
    let mut chains = BTreeMap::new();
    each_message(datagrams, msg::NEWCHAIN, "chain dump", |attrs| {
        let attrs = attrs.collect_all().map_err(DecodeError::wire("chain"))?;
        let string = |kind, what| find_string(&attrs, kind, what, "chain");
        if string(c::TABLE, "chain table")?.as_deref() != Some(table) {
            return Ok(());
        }
        let name = string(c::NAME, "chain name")?
            .ok_or_else(|| DecodeError::unexpected("chain", "no name"))?;
        let object = format!("chain {name:?}");
        let base = match find(&attrs, c::HOOK) {
            None => None,
            Some(hook) => {
                let hook = hook
                    .nested()
                    .collect_all()
                    .map_err(DecodeError::wire(&object))?;
                let number = find(&hook, c::HOOK_HOOKNUM)
                    .ok_or_else(|| DecodeError::unexpected(&object, "hook without number"))?
                    .u32("hook number")
                    .map_err(DecodeError::wire(&object))?;
                let priority = find(&hook, c::HOOK_PRIORITY)
                    .ok_or_else(|| DecodeError::unexpected(&object, "hook without priority"))?
                    .u32("hook priority")
                    .map_err(DecodeError::wire(&object))?;
                let policy = find(&attrs, c::POLICY)
                    .map(|attr| attr.u32("chain policy"))
                    .transpose()
                    .map_err(DecodeError::wire(&object))?
                    .unwrap_or(1);
                if string(c::TYPE, "chain type")?.as_deref() != Some("filter") {
                    return Err(DecodeError::unexpected(
                        &object,
                        "base chain not of type filter",
                    ));
                }
                let priority = i32::from_be_bytes(priority.to_be_bytes());
                Some(base_chain_of(number, priority, policy).ok_or_else(|| {
                    DecodeError::unexpected(&object, format!("hook {number} policy {policy}"))
                })?)
            }
        };
        let comment = find(&attrs, c::USERDATA)
            .and_then(|attr| find_udata(attr.value, udata::CHAIN_COMMENT))
            .map(comment_of)
            .transpose()
            .map_err(DecodeError::wire(&object))?;
        chains.insert(
            name.clone(),
            Chain {
                name,
                base,
                comment,
                rules: Vec::new(),
            },
        );
        Ok(())
    })?;
    Ok(chains)
}

/// Adds the rules of `table`, in dump order, to their chains.
pub fn add_rules(
    datagrams: &[Vec<u8>],
    table: &str,
    chains: &mut BTreeMap<String, Chain>,
) -> Result<(), DecodeError> {
    each_message(datagrams, msg::NEWRULE, "rule dump", |attrs| {
        let attrs = attrs.collect_all().map_err(DecodeError::wire("rule"))?;
        let string = |kind, what| find_string(&attrs, kind, what, "rule");
        if string(r::TABLE, "rule table")?.as_deref() != Some(table) {
            return Ok(());
        }
        let chain_name = string(r::CHAIN, "rule chain")?
            .ok_or_else(|| DecodeError::unexpected("rule", "no chain"))?;
        let Some(chain) = chains.get_mut(&chain_name) else {
            return Err(DecodeError::unexpected(
                format!("chain {chain_name:?}"),
                "rule of a chain not in the dump",
            ));
        };
        let object = format!("rule {} of chain {chain_name:?}", chain.rules.len());
        let exprs = match find(&attrs, r::EXPRESSIONS) {
            Some(list) => read_exprs(list.nested()).map_err(DecodeError::wire(&object))?,
            None => Vec::new(),
        };
        let rule: Rule = read_rule(&exprs, find(&attrs, r::USERDATA).map(|attr| attr.value))
            .map_err(|reason| DecodeError::unexpected(&object, reason))?;
        chain.rules.push(rule);
        Ok(())
    })
}

/// Sets of `table`, without elements.
pub fn sets(datagrams: &[Vec<u8>], table: &str) -> Result<BTreeMap<String, Set>, DecodeError> {
    let mut sets = BTreeMap::new();
    each_message(datagrams, msg::NEWSET, "set dump", |attrs| {
        let (set_table, set) =
            read_set(attrs).map_err(|reason| DecodeError::unexpected("set", reason))?;
        if set_table == table {
            sets.insert(set.name.clone(), set);
        }
        Ok(())
    })?;
    Ok(sets)
}

/// Fills `set.elements` from its element dump.
pub fn add_elements(datagrams: &[Vec<u8>], set: &mut Set) -> Result<(), DecodeError> {
    let object = format!("set {:?}", set.name);
    let mut raw: Vec<RawElement> = Vec::new();
    each_message(datagrams, msg::NEWSETELEM, &object, |attrs| {
        for attr in attrs {
            let attr = attr.map_err(DecodeError::wire(&object))?;
            if attr.kind == elem::LIST_ELEMENTS {
                read_raw_elements(attr.nested(), &mut raw).map_err(DecodeError::wire(&object))?;
            }
        }
        Ok(())
    })?;
    // A hash set that the kernel resizes between two dump callbacks is
    // walked in a new order while the dump resumes by count: some elements
    // come twice and as many are skipped. Duplicates reveal it.
    let mut keys: Vec<_> = raw
        .iter()
        .map(|raw| (&raw.key, &raw.key_end, raw.is_end))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.len() != raw.len() {
        return Err(DecodeError::Inconsistent { object });
    }
    set.elements =
        to_elements(set, raw).map_err(|reason| DecodeError::unexpected(&object, reason))?;
    Ok(())
}

/// The data bytes of the one element a `GETSETELEM` for a key answered
/// (`NFTA_SET_ELEM_DATA` holding a value, as in a dynamic map), if any.
pub fn element_value(datagrams: &[Vec<u8>], set: &str) -> Result<Option<Vec<u8>>, DecodeError> {
    let object = format!("set {set:?}");
    let mut value = None;
    each_message(datagrams, msg::NEWSETELEM, &object, |attrs| {
        for attr in attrs {
            let attr = attr.map_err(DecodeError::wire(&object))?;
            if attr.kind != elem::LIST_ELEMENTS {
                continue;
            }
            for item in attr.nested() {
                let item = item.map_err(DecodeError::wire(&object))?;
                for field in item.nested() {
                    let field = field.map_err(DecodeError::wire(&object))?;
                    if field.kind == elem::DATA {
                        value = Some(
                            crate::expr::read_value(field.nested())
                                .map_err(DecodeError::wire(&object))?,
                        );
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(value)
}

/// The table's IR from a complete dump.
pub fn ruleset(dump: &Dump, table: &str) -> Result<nftpol_ir::Ruleset, DecodeError> {
    let mut chains = chains(&dump.chains, table)?;
    add_rules(&dump.rules, table, &mut chains)?;
    let mut sets = sets(&dump.sets, table)?;
    // A dynamic map's elements are the packet path's, never read back.
    for (name, set) in sets.iter_mut().filter(|(_, set)| set.dynamic.is_none()) {
        add_elements(dump.elements.get(name).map_or(&[][..], Vec::as_slice), set)?;
    }
    Ok(nftpol_ir::Ruleset { chains, sets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchWriter;
    use crate::nla::align;
    use nftpol_ir::{Action, Element, Field, KeyType, Match, Rule, Ruleset, Value, Verdict};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// A valid dump: the messages our encoder writes for a small table,
    /// grouped by type as the kernel's dumps group them.
    fn valid_dump() -> Dump {
        let set = Set {
            name: "s".to_owned(),
            key: vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
            interval: true,
            is_verdict_map: false,
            dynamic: None,
            comment: Some("c".to_owned()),
            elements: [Element::range(
                vec![
                    Value::Ipv4(Ipv4Addr::new(10, 0, 0, 0)),
                    Value::Proto(6),
                    Value::Port(1),
                ],
                vec![
                    Value::Ipv4(Ipv4Addr::new(10, 0, 0, 9)),
                    Value::Proto(6),
                    Value::Port(9),
                ],
            )]
            .into(),
        };
        let rule = Rule {
            matches: vec![Match::Lookup {
                key: vec![Field::Ipv4Saddr, Field::L4Proto, Field::TransportDport].into(),
                set: "s".to_owned(),
                negated: false,
            }],
            counter: true,
            action: Action::Verdict(Verdict::Accept),
            comment: Some("r".to_owned()),
        };
        let chain = Chain {
            name: "c".to_owned(),
            base: None,
            comment: None,
            rules: vec![rule],
        };
        let table = Ruleset {
            chains: [("c".to_owned(), chain)].into(),
            sets: [("s".to_owned(), set)].into(),
        };
        let mut writer = BatchWriter::new("nftpol", 1);
        writer
            .push_diff(&nftpol_ir::diff::diff(None, &table), &BTreeMap::new())
            .expect("encodable");
        let batch = writer.finish();
        let mut dump = Dump::default();
        let bytes = batch.to_bytes();
        let mut rest = bytes.as_slice();
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let message = rest[..len].to_vec();
            match u16::from_ne_bytes([rest[4], rest[5]]) & 0xff {
                msg::NEWCHAIN => dump.chains.push(message),
                msg::NEWRULE => dump.rules.push(message),
                msg::NEWSET => dump.sets.push(message),
                msg::NEWSETELEM => dump
                    .elements
                    .entry("s".to_owned())
                    .or_default()
                    .push(message),
                _ => {}
            }
            rest = &rest[align(len)..];
        }
        assert_eq!(ruleset(&dump, "nftpol").expect("valid dump decodes"), table);
        dump
    }

    fn mutate(datagrams: &mut [Vec<u8>], at: usize, byte: u8, cut: usize) {
        if let Some(datagram) = datagrams.first_mut() {
            if !datagram.is_empty() {
                let index = at % datagram.len();
                datagram[index] = byte;
                let keep = datagram.len().saturating_sub(cut % 8);
                datagram.truncate(keep);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            chains in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..3),
            rules in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..3),
            sets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..3),
        ) {
            let dump = Dump { chains, rules, sets, elements: BTreeMap::new() };
            // Ok or Err are both fine; a panic fails the test.
            let _ = ruleset(&dump, "nftpol");
        }

        #[test]
        fn mutated_valid_dumps_never_panic(part in 0..4usize, at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut dump = valid_dump();
            match part {
                0 => mutate(&mut dump.chains, at, byte, cut),
                1 => mutate(&mut dump.rules, at, byte, cut),
                2 => mutate(&mut dump.sets, at, byte, cut),
                _ => mutate(dump.elements.get_mut("s").expect("elements"), at, byte, cut),
            }
            // Ok or Err are both fine; a panic fails the test.
            let _ = ruleset(&dump, "nftpol");
        }
    }
}
