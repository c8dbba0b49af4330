//! The packet and byte counts of the table's `counter` rules, read from a
//! `GETRULE` dump.
//!
//! Apart from the IR read-back on purpose: there counter values are ignored
//! so that a read-back compares equal to what was applied; here they are
//! all that matters, and no rule needs to be understood beyond its chain,
//! position, comment and counter expression.

use std::collections::BTreeMap;

use crate::decode::{each_message, find, find_string};
use crate::error::DecodeError;
use crate::expr::{read_exprs, Expr};
use crate::set::{comment_of, find_udata};
use crate::uapi::{msg, rule as r, udata};

/// The counter of one rule of table `inet nftpol`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleCounter {
    /// The rule's chain.
    pub chain: String,
    /// The rule's position in its chain, from 0 (all rules count, not only
    /// those with a counter).
    pub rule: usize,
    /// The rule's comment, which names its policy.
    pub comment: Option<String>,
    /// Packets counted since the rule was added.
    pub packets: u64,
    /// Bytes counted since the rule was added.
    pub bytes: u64,
}

/// Counters of the rules of `table` that carry one, in dump order (chain by
/// chain, rules in evaluation order).
pub fn decode(datagrams: &[Vec<u8>], table: &str) -> Result<Vec<RuleCounter>, DecodeError> {
    let mut counters = Vec::new();
    let mut positions: BTreeMap<String, usize> = BTreeMap::new();
    each_message(datagrams, msg::NEWRULE, "rule dump", |attrs| {
        let attrs = attrs.collect_all().map_err(DecodeError::wire("rule"))?;
        let string = |kind, what| find_string(&attrs, kind, what, "rule");
        if string(r::TABLE, "rule table")?.as_deref() != Some(table) {
            return Ok(());
        }
        let chain = string(r::CHAIN, "rule chain")?
            .ok_or_else(|| DecodeError::unexpected("rule", "no chain"))?;
        let position = positions.entry(chain.clone()).or_default();
        let rule = *position;
        *position += 1;
        let object = format!("rule {rule} of chain {chain:?}");
        let exprs = match find(&attrs, r::EXPRESSIONS) {
            Some(list) => read_exprs(list.nested()).map_err(DecodeError::wire(&object))?,
            None => Vec::new(),
        };
        let Some((packets, bytes)) = exprs.iter().find_map(|expr| match expr {
            Expr::Counter { packets, bytes } => Some((*packets, *bytes)),
            _ => None,
        }) else {
            return Ok(());
        };
        let comment = find(&attrs, r::USERDATA)
            .and_then(|attr| find_udata(attr.value, udata::RULE_COMMENT))
            .map(comment_of)
            .transpose()
            .map_err(DecodeError::wire(&object))?;
        counters.push(RuleCounter {
            chain,
            rule,
            comment,
            packets,
            bytes,
        });
        Ok(())
    })?;
    Ok(counters)
}
