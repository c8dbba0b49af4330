//! Who else in this network namespace tests or sets connection-mark bits:
//! re-judging owns some bits of the conntrack mark, and another table that
//! writes them would make flows look judged (or unjudged), one that tests
//! them would see nftpol's generation stamps.
//!
//! Read from a dump of every table's rules (all families, `iptables-nft`
//! tables included). What counts:
//! - `ct mark` loaded and masked (`ct mark and M …`): tests the bits of `M`;
//!   loaded without a mask (`ct mark 0x1`, `meta mark set ct mark`): all bits;
//! - `ct mark set ct mark and K or X`: writes the bits outside `K` and in
//!   `X`; any other `ct mark set` (an immediate, `meta mark`, a map): all bits;
//! - the xtables `connmark` match and `CONNMARK` target (`iptables-nft`),
//!   whose masks live in opaque xt data: counted as touching all bits.

use std::collections::BTreeSet;

use crate::error::DecodeError;
use crate::expr::{read_exprs, Expr};
use crate::nla::{messages, Attrs, NFGENMSG_LEN};
use crate::uapi::{expr as x, msg, rule as r, NFNL_SUBSYS_NFTABLES, NLMSG_DONE, NLMSG_ERROR};

/// How a rule uses the bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkAccess {
    /// It reads them.
    Tests,
    /// It writes them.
    Sets,
    /// An xtables extension (`connmark`, `CONNMARK`) whose mask is opaque.
    Xtables(String),
}

/// A chain of another table whose rules touch the bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MarkUse {
    /// `NFPROTO_*` of the table.
    pub family: u8,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// How.
    pub access: MarkAccess,
}

/// Every chain, outside table `inet <own_table>`, whose rules touch `bits`.
pub(crate) fn mark_uses(
    datagrams: &[Vec<u8>],
    own_table: &str,
    bits: u32,
) -> Result<Vec<MarkUse>, DecodeError> {
    let mut found = BTreeSet::new();
    for datagram in datagrams {
        for message in messages(datagram) {
            let message = message.map_err(DecodeError::wire("rule dump"))?;
            if message.kind == NLMSG_DONE || message.kind == NLMSG_ERROR {
                continue;
            }
            if message.kind != (NFNL_SUBSYS_NFTABLES << 8) | msg::NEWRULE {
                continue;
            }
            let family = message.payload.first().copied().unwrap_or_default();
            let Some(payload) = message.payload.get(NFGENMSG_LEN..) else {
                continue;
            };
            let attrs = Attrs::new(payload)
                .collect_all()
                .map_err(DecodeError::wire("rule"))?;
            let text = |kind| {
                attrs
                    .iter()
                    .find(|attr| attr.kind == kind)
                    .map(|attr| attr.string("rule name"))
                    .transpose()
                    .map_err(DecodeError::wire("rule"))
            };
            let (table, chain) = (text(r::TABLE)?, text(r::CHAIN)?);
            let (Some(table), Some(chain)) = (table, chain) else {
                continue;
            };
            if family == crate::uapi::NFPROTO_INET && table == own_table {
                continue;
            }
            let exprs = match attrs.iter().find(|attr| attr.kind == r::EXPRESSIONS) {
                Some(list) => read_exprs(list.nested()).map_err(DecodeError::wire("rule"))?,
                None => Vec::new(),
            };
            for access in accesses(&exprs, bits) {
                found.insert(MarkUse {
                    family,
                    table: table.clone(),
                    chain: chain.clone(),
                    access,
                });
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// How the expressions of one rule touch `bits`.
fn accesses(exprs: &[Expr], bits: u32) -> BTreeSet<MarkAccess> {
    let mut found = BTreeSet::new();
    let mut index = 0;
    while let Some(expr) = exprs.get(index) {
        index += 1;
        match expr {
            Expr::Ct {
                key: x::CT_MARK,
                dreg,
                ..
            } => match (exprs.get(index), exprs.get(index + 1)) {
                (
                    Some(Expr::Bitwise {
                        sreg, mask, xor, ..
                    }),
                    Some(Expr::CtSet {
                        key: x::CT_MARK,
                        sreg: set_from,
                    }),
                ) if sreg == dreg && set_from == dreg => {
                    let kept = word(mask).unwrap_or(0);
                    let written = !kept | word(xor).unwrap_or(u32::MAX);
                    if written & bits != 0 {
                        found.insert(MarkAccess::Sets);
                    }
                    index += 2;
                }
                (Some(Expr::Bitwise { sreg, mask, .. }), _) if sreg == dreg => {
                    if word(mask).unwrap_or(u32::MAX) & bits != 0 {
                        found.insert(MarkAccess::Tests);
                    }
                    index += 1;
                }
                _ => {
                    found.insert(MarkAccess::Tests);
                }
            },
            Expr::CtSet {
                key: x::CT_MARK, ..
            } => {
                found.insert(MarkAccess::Sets);
            }
            Expr::Other(name) => {
                let extension = name.split(' ').nth(1).unwrap_or_default();
                if extension.eq_ignore_ascii_case("connmark") {
                    found.insert(MarkAccess::Xtables(name.clone()));
                }
            }
            _ => {}
        }
    }
    found
}

/// A 32-bit register value in host byte order.
fn word(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: u32 = 0xffff_0000;

    fn load() -> Expr {
        Expr::Ct {
            key: x::CT_MARK,
            dreg: x::REG_1,
            direction: None,
        }
    }

    fn bitwise(mask: u32, xor: u32) -> Expr {
        Expr::Bitwise {
            sreg: x::REG_1,
            dreg: x::REG_1,
            len: 4,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        }
    }

    fn set() -> Expr {
        Expr::CtSet {
            key: x::CT_MARK,
            sreg: x::REG_1,
        }
    }

    #[test]
    fn rules_touch_the_bits_they_test_or_write() {
        let cmp = Expr::Cmp {
            sreg: x::REG_1,
            op: x::CMP_EQ,
            data: vec![0; 4],
        };
        let cases: Vec<(&str, Vec<Expr>, Vec<MarkAccess>)> = vec![
            (
                "masked test of other bits",
                vec![load(), bitwise(0xff, 0), cmp.clone()],
                vec![],
            ),
            (
                "masked test of ours",
                vec![load(), bitwise(0x0001_0000, 0), cmp.clone()],
                vec![MarkAccess::Tests],
            ),
            ("unmasked test", vec![load(), cmp], vec![MarkAccess::Tests]),
            (
                "masked set of other bits",
                vec![load(), bitwise(!0xff, 0x1), set()],
                vec![],
            ),
            (
                "masked set of ours",
                vec![load(), bitwise(!0x00ff_0000, 0x0001_0000), set()],
                vec![MarkAccess::Sets],
            ),
            ("unmasked set", vec![set()], vec![MarkAccess::Sets]),
            (
                "iptables-nft CONNMARK",
                vec![Expr::Other("target CONNMARK".to_owned())],
                vec![MarkAccess::Xtables("target CONNMARK".to_owned())],
            ),
            (
                "other xt",
                vec![Expr::Other("match conntrack".to_owned())],
                vec![],
            ),
        ];
        for (name, exprs, want) in cases {
            let got: Vec<MarkAccess> = accesses(&exprs, OURS).into_iter().collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
