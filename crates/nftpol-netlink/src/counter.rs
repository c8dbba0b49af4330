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

/// Decodes a rule dump datagram by datagram, as it arrives, so a dump of
/// the whole table is never held at once: at 100k pods / 10k policies it is
/// over 40 MB of datagrams (measured with heaptrack), read every counter
/// interval, for a few MB of counters.
#[derive(Debug, Default)]
pub struct CounterDecoder {
    counters: Vec<RuleCounter>,
    /// Rules seen so far per chain: the next rule's position.
    positions: BTreeMap<String, usize>,
}

impl CounterDecoder {
    /// Decodes the counters of `table`'s rules in one reply datagram.
    pub fn feed(&mut self, datagram: &[u8], table: &str) -> Result<(), DecodeError> {
        each_message(
            std::slice::from_ref(&datagram),
            msg::NEWRULE,
            "rule dump",
            |attrs| {
                let attrs = attrs.collect_all().map_err(DecodeError::wire("rule"))?;
                let string = |kind, what| find_string(&attrs, kind, what, "rule");
                if string(r::TABLE, "rule table")?.as_deref() != Some(table) {
                    return Ok(());
                }
                let chain = string(r::CHAIN, "rule chain")?
                    .ok_or_else(|| DecodeError::unexpected("rule", "no chain"))?;
                let position = self.positions.entry(chain.clone()).or_default();
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
                self.counters.push(RuleCounter {
                    chain,
                    rule,
                    comment,
                    packets,
                    bytes,
                });
                Ok(())
            },
        )
    }

    /// Counters of the rules of the table that carry one, in dump order
    /// (chain by chain, rules in evaluation order).
    pub fn finish(self) -> Vec<RuleCounter> {
        self.counters
    }
}
