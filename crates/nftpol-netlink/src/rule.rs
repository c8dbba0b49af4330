//! Rules ↔ expression lists, producing the bytecode nft 1.0.6 produces for the
//! text `render` prints (checked against `nft --debug=netlink` in the tests).
//!
//! - In an inet table a load of `ip`/`ip6` header fields is preceded by the
//!   `meta nfproto` dependency, once per rule (nft's protocol context).
//! - A concatenated key goes into consecutive 32-bit registers, each field
//!   padded to 4 bytes: word offset 0, 4, 8, 12 is a 128-bit register
//!   (`NFT_REG_1..4`), any other word `NFT_REG32_00 + offset`.
//! - For concatenated interval sets nft converts `meta l4proto` with a
//!   (no-op) `byteorder hton` of size 2, length 1; we do the same.
//! - The counter comes after the matches and before the verdict (for a
//!   verdict map, before the map's key is loaded).
//! - A dynamic map update loads its key from `NFT_REG_1` on and its data
//!   from the next 128-bit register after the key (`NFT_REG_2` for a key
//!   of up to 16 bytes, as nft does), or right after the key when that
//!   would not fit the kernel's 64 bytes of registers, then runs `dynset`.
//!   nft 1.0.6 always puts the data at `NFT_REG_2` and fails an assertion
//!   (`dreg < ctx->reg_low`) for a longer key, so parity with it holds for
//!   keys of up to 16 bytes only.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use nftpol_ir::{
    Action, CtDirection, CtState, Field, Log, Match, RateLimit, RateUnit, Rule, Set, SetUpdate,
    Verdict,
};

use crate::expr::{Expr, ExprWriter};
use crate::key;
use crate::nla::AttrTooLarge;
use crate::set::{
    comment_of, find_udata, nul_terminated, push_udata, raw_verdict, verdict_of, SetEncodeError,
};
use crate::uapi::{expr as x, udata, NFPROTO_IPV4, NFPROTO_IPV6};

const ICMPV6: u8 = 58;

/// What earlier expressions of the rule established (nft's protocol context).
#[derive(Default)]
struct Context {
    nfproto: Option<u8>,
    l4proto: Option<u8>,
}

/// Writes the expressions of `rule`. `sets` gives the shapes of the sets the
/// rule references (only whether a set is a concatenated interval set matters).
pub fn write_exprs(
    w: &mut ExprWriter<'_>,
    rule: &Rule,
    sets: &BTreeMap<String, Set>,
) -> Result<(), SetEncodeError> {
    let mut context = Context::default();
    for matched in &rule.matches {
        match matched {
            Match::CtState(states) => {
                let mask = states
                    .iter()
                    .fold(0u32, |mask, state| mask | ct_bit(*state));
                w.ct(x::CT_STATE, x::REG_1)?;
                w.bitwise_mask(x::REG_1, &mask.to_ne_bytes())?;
                w.cmp(x::REG_1, x::CMP_NEQ, &0u32.to_ne_bytes())?;
            }
            Match::CtDirection(direction) => {
                w.ct(x::CT_DIRECTION, x::REG_1)?;
                w.cmp(x::REG_1, x::CMP_EQ, &[direction_code(*direction)])?;
            }
            Match::CtMark { mask, value } => {
                w.ct(x::CT_MARK, x::REG_1)?;
                w.bitwise_mask(x::REG_1, &mask.to_ne_bytes())?;
                w.cmp(x::REG_1, x::CMP_EQ, &value.to_ne_bytes())?;
            }
            Match::Icmpv6TypeRange { first, last } => {
                nfproto_dependency(w, &mut context, NFPROTO_IPV6)?;
                if context.l4proto != Some(ICMPV6) {
                    w.meta(x::META_L4PROTO, x::REG_1)?;
                    w.cmp(x::REG_1, x::CMP_EQ, &[ICMPV6])?;
                    context.l4proto = Some(ICMPV6);
                }
                w.payload(x::REG_1, x::BASE_TRANSPORT, 0, 1)?;
                w.cmp(x::REG_1, x::CMP_GTE, &[*first])?;
                w.cmp(x::REG_1, x::CMP_LTE, &[*last])?;
            }
            Match::SaddrIsLocal | Match::DaddrIsLocal => {
                let flags = if matched == &Match::SaddrIsLocal {
                    x::FIB_F_SADDR
                } else {
                    x::FIB_F_DADDR
                };
                w.fib_addr_type(flags, x::REG_1)?;
                w.cmp(x::REG_1, x::CMP_EQ, &x::RTN_LOCAL.to_ne_bytes())?;
            }
            Match::CtStatusDnat => {
                w.ct(x::CT_STATUS, x::REG_1)?;
                w.bitwise_mask(x::REG_1, &x::CT_STATUS_DST_NAT.to_ne_bytes())?;
                w.cmp(x::REG_1, x::CMP_NEQ, &0u32.to_ne_bytes())?;
            }
            Match::Lookup { key, set, negated } => {
                load_key(
                    w,
                    &mut context,
                    key,
                    sets.get(set).is_some_and(Set::is_concatenated_interval),
                )?;
                w.lookup(x::REG_1, set, None, *negated)?;
            }
            Match::Limit(limit) => w.limit(limit.rate, limit.unit.seconds(), limit.burst)?,
        }
    }
    if rule.counter {
        w.counter()?;
    }
    match &rule.action {
        Action::Verdict(Verdict::Reject) => w.reject_admin_prohibited()?,
        Action::Verdict(verdict) => {
            w.verdict(&raw_verdict(verdict).map_err(SetEncodeError::Shape)?)?;
        }
        Action::VerdictMap { key, map } => {
            load_key(
                w,
                &mut context,
                key,
                sets.get(map).is_some_and(Set::is_concatenated_interval),
            )?;
            w.lookup(x::REG_1, map, Some(x::REG_VERDICT), false)?;
        }
        Action::SetCtMark { mask, value } => {
            w.ct(x::CT_MARK, x::REG_1)?;
            w.bitwise(x::REG_1, &(!mask).to_ne_bytes(), &value.to_ne_bytes())?;
            w.ct_set(x::CT_MARK, x::REG_1)?;
        }
        Action::Log(log) => w.log(log.group, &log.prefix)?,
        Action::Update(update) => {
            load_key(w, &mut context, &update.key, false)?;
            let start = data_start(&update.key, &update.data);
            load_fields(w, &update.data, start)?;
            let sreg_data = registers_from(&update.data, start)
                .first()
                .copied()
                .ok_or_else(|| SetEncodeError::Shape("an update without data".to_owned()))?;
            let timeout = u64::try_from(update.timeout.as_millis()).unwrap_or(u64::MAX);
            w.dynset_update(&update.set, x::REG_1, sreg_data, timeout)?;
        }
    }
    Ok(())
}

fn direction_code(direction: CtDirection) -> u8 {
    match direction {
        CtDirection::Original => x::CT_DIR_ORIGINAL,
        CtDirection::Reply => x::CT_DIR_REPLY,
    }
}

/// (`NFT_CT_*` key, direction) of a field read from the conntrack tuple.
fn ct_of(field: Field) -> Option<(u32, u8)> {
    match field {
        Field::CtOriginalIpv4Saddr => Some((x::CT_SRC_IP, x::CT_DIR_ORIGINAL)),
        Field::CtReplyIpv4Saddr => Some((x::CT_SRC_IP, x::CT_DIR_REPLY)),
        Field::CtOriginalIpv6Saddr => Some((x::CT_SRC_IP6, x::CT_DIR_ORIGINAL)),
        Field::CtReplyIpv6Saddr => Some((x::CT_SRC_IP6, x::CT_DIR_REPLY)),
        Field::CtOriginalIpv4Daddr => Some((x::CT_DST_IP, x::CT_DIR_ORIGINAL)),
        Field::CtOriginalIpv6Daddr => Some((x::CT_DST_IP6, x::CT_DIR_ORIGINAL)),
        Field::CtOriginalProtoDst => Some((x::CT_PROTO_DST, x::CT_DIR_ORIGINAL)),
        _ => None,
    }
}

/// The rule's userdata (its comment), if any.
pub fn rule_userdata(rule: &Rule) -> Result<Option<Vec<u8>>, SetEncodeError> {
    rule.comment
        .as_ref()
        .map(|comment| {
            let mut bytes = Vec::new();
            push_udata(&mut bytes, udata::RULE_COMMENT, &nul_terminated(comment))?;
            Ok(bytes)
        })
        .transpose()
}

fn ct_bit(state: CtState) -> u32 {
    match state {
        CtState::Invalid => x::CT_STATE_INVALID,
        CtState::Established => x::CT_STATE_ESTABLISHED,
        CtState::Related => x::CT_STATE_RELATED,
        CtState::New => x::CT_STATE_NEW,
        CtState::Untracked => x::CT_STATE_UNTRACKED,
    }
}

fn nfproto_dependency(
    w: &mut ExprWriter<'_>,
    context: &mut Context,
    nfproto: u8,
) -> Result<(), AttrTooLarge> {
    if context.nfproto != Some(nfproto) {
        w.meta(x::META_NFPROTO, x::REG_1)?;
        w.cmp(x::REG_1, x::CMP_EQ, &[nfproto])?;
        context.nfproto = Some(nfproto);
    }
    Ok(())
}

/// The register each field of a (concatenated) key is loaded into.
fn registers(fields: &[Field]) -> Vec<u32> {
    registers_from(fields, 0)
}

/// 32-bit words a key of `fields` occupies.
fn key_words(fields: &[Field]) -> u32 {
    let concatenated = fields.len() > 1;
    fields
        .iter()
        .map(|field| {
            u32::try_from(key::slot_len(field.key_type(), concatenated) / 4)
                .unwrap_or(u32::MAX)
                .max(1)
        })
        .sum()
}

/// The 32-bit word an update's data starts at: the next 128-bit register
/// after the key, or right after the key when the data would not fit.
fn data_start(key: &[Field], data: &[Field]) -> u32 {
    /// `NFT_REG32_15`: the last of the 16 words of data registers.
    const WORDS: u32 = 16;
    let after = key_words(key);
    let aligned = after.next_multiple_of(4);
    if aligned + key_words(data) <= WORDS {
        aligned
    } else {
        after
    }
}

/// The registers of `fields` laid out from 32-bit word `start` on.
fn registers_from(fields: &[Field], start: u32) -> Vec<u32> {
    let concatenated = fields.len() > 1;
    let mut word = start;
    fields
        .iter()
        .map(|field| {
            let register = if word.is_multiple_of(4) {
                x::REG_1 + word / 4
            } else {
                x::REG32_00 + word
            };
            let slot = key::slot_len(field.key_type(), concatenated);
            word += u32::try_from(slot / 4).unwrap_or(u32::MAX).max(1);
            register
        })
        .collect()
}

/// (base, offset, len) of a header field.
fn payload_of(field: Field) -> Option<(u32, u32, u32)> {
    match field {
        Field::Ipv4Saddr => Some((x::BASE_NETWORK, 12, 4)),
        Field::Ipv4Daddr => Some((x::BASE_NETWORK, 16, 4)),
        Field::Ipv6Saddr => Some((x::BASE_NETWORK, 8, 16)),
        Field::Ipv6Daddr => Some((x::BASE_NETWORK, 24, 16)),
        Field::TransportDport => Some((x::BASE_TRANSPORT, 2, 2)),
        Field::TransportSport => Some((x::BASE_TRANSPORT, 0, 2)),
        Field::L4Proto
        | Field::CtOriginalIpv4Saddr
        | Field::CtReplyIpv4Saddr
        | Field::CtOriginalIpv6Saddr
        | Field::CtReplyIpv6Saddr
        | Field::CtOriginalIpv4Daddr
        | Field::CtOriginalIpv6Daddr
        | Field::CtOriginalProtoDst => None,
    }
}

fn family_of(field: Field) -> Option<u8> {
    match field {
        Field::Ipv4Saddr | Field::Ipv4Daddr => Some(NFPROTO_IPV4),
        Field::Ipv6Saddr | Field::Ipv6Daddr => Some(NFPROTO_IPV6),
        // nft adds no `meta nfproto` for conntrack addresses: the kernel
        // breaks the rule itself when the entry is of the other family.
        Field::L4Proto
        | Field::TransportDport
        | Field::TransportSport
        | Field::CtOriginalIpv4Saddr
        | Field::CtReplyIpv4Saddr
        | Field::CtOriginalIpv6Saddr
        | Field::CtReplyIpv6Saddr
        | Field::CtOriginalIpv4Daddr
        | Field::CtOriginalIpv6Daddr
        | Field::CtOriginalProtoDst => None,
    }
}

/// Loads `fields` into the registers from word `start` on (no family
/// dependency: the data of an update comes from conntrack).
fn load_fields(w: &mut ExprWriter<'_>, fields: &[Field], start: u32) -> Result<(), AttrTooLarge> {
    for (field, register) in fields.iter().zip(registers_from(fields, start)) {
        load_field(w, *field, register, false)?;
    }
    Ok(())
}

fn load_field(
    w: &mut ExprWriter<'_>,
    field: Field,
    register: u32,
    hton: bool,
) -> Result<(), AttrTooLarge> {
    if let Some((base, offset, len)) = payload_of(field) {
        w.payload(register, base, offset, len)
    } else if let Some((key, direction)) = ct_of(field) {
        w.ct_directed(key, register, direction)
    } else {
        w.meta(x::META_L4PROTO, register)?;
        if hton {
            w.byteorder_hton(register, 2, 1)?;
        }
        Ok(())
    }
}

fn load_key(
    w: &mut ExprWriter<'_>,
    context: &mut Context,
    fields: &[Field],
    interval_concat: bool,
) -> Result<(), SetEncodeError> {
    if fields.is_empty() {
        return Err(SetEncodeError::Shape(
            "a lookup key needs at least one field".to_owned(),
        ));
    }
    let families: BTreeSet<u8> = fields
        .iter()
        .filter_map(|field| family_of(*field))
        .collect();
    if families.len() > 1 {
        return Err(SetEncodeError::Shape(
            "a key mixes IPv4 and IPv6 fields".to_owned(),
        ));
    }
    if let Some(family) = families.first() {
        nfproto_dependency(w, context, *family)?;
    }
    for (field, register) in fields.iter().zip(registers(fields)) {
        load_field(w, *field, register, interval_concat && fields.len() > 1)?;
    }
    Ok(())
}

/// Decodes a rule from its expressions and userdata.
#[expect(
    clippy::too_many_lines,
    reason = "one slice pattern per IR construct; the table reads best in one place"
)]
pub fn read_rule(exprs: &[Expr], userdata: Option<&[u8]>) -> Result<Rule, String> {
    let mut matches = Vec::new();
    let mut counter = false;
    let mut action = None;
    let mut rest = exprs;
    while !rest.is_empty() {
        if action.is_some() {
            return Err(format!("expressions after the verdict: {rest:?}"));
        }
        match rest {
            [Expr::Meta {
                key: x::META_NFPROTO,
                dreg: x::REG_1,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_EQ,
                data,
            }, tail @ ..]
                if data.len() == 1 =>
            {
                rest = tail;
            }
            [Expr::Meta {
                key: x::META_L4PROTO,
                dreg: x::REG_1,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_EQ,
                data: proto,
            }, Expr::Payload {
                dreg: x::REG_1,
                base: x::BASE_TRANSPORT,
                offset: 0,
                len: 1,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_GTE,
                data: first,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_LTE,
                data: last,
            }, tail @ ..]
                if proto.as_slice() == [ICMPV6] =>
            {
                let (Some(first), Some(last)) = (single_byte(first), single_byte(last)) else {
                    return Err("icmpv6 type bounds are not one byte".to_owned());
                };
                matches.push(Match::Icmpv6TypeRange { first, last });
                rest = tail;
            }
            [Expr::Payload {
                dreg: x::REG_1,
                base: x::BASE_TRANSPORT,
                offset: 0,
                len: 1,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_GTE,
                data: first,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_LTE,
                data: last,
            }, tail @ ..] => {
                let (Some(first), Some(last)) = (single_byte(first), single_byte(last)) else {
                    return Err("icmpv6 type bounds are not one byte".to_owned());
                };
                matches.push(Match::Icmpv6TypeRange { first, last });
                rest = tail;
            }
            [Expr::Ct {
                key: x::CT_STATE,
                dreg: x::REG_1,
                direction: None,
            }, Expr::Bitwise {
                sreg: x::REG_1,
                dreg: x::REG_1,
                len: 4,
                mask,
                xor,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_NEQ,
                data,
            }, tail @ ..]
                if xor.iter().all(|b| *b == 0) && data.iter().all(|b| *b == 0) =>
            {
                matches.push(Match::CtState(ct_states(mask)?));
                rest = tail;
            }
            [Expr::Ct {
                key: x::CT_STATUS,
                dreg: x::REG_1,
                direction: None,
            }, Expr::Bitwise {
                sreg: x::REG_1,
                dreg: x::REG_1,
                len: 4,
                mask,
                xor,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_NEQ,
                data,
            }, tail @ ..]
                if mask.as_slice() == x::CT_STATUS_DST_NAT.to_ne_bytes()
                    && xor.iter().all(|b| *b == 0)
                    && data.iter().all(|b| *b == 0) =>
            {
                matches.push(Match::CtStatusDnat);
                rest = tail;
            }
            [Expr::Ct {
                key: x::CT_DIRECTION,
                dreg: x::REG_1,
                direction: None,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_EQ,
                data,
            }, tail @ ..] => {
                let direction = match data.as_slice() {
                    [x::CT_DIR_ORIGINAL] => CtDirection::Original,
                    [x::CT_DIR_REPLY] => CtDirection::Reply,
                    other => return Err(format!("unexpected ct direction {other:?}")),
                };
                matches.push(Match::CtDirection(direction));
                rest = tail;
            }
            [Expr::Ct {
                key: x::CT_MARK,
                dreg: x::REG_1,
                direction: None,
            }, Expr::Bitwise {
                sreg: x::REG_1,
                dreg: x::REG_1,
                len: 4,
                mask,
                xor,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_EQ,
                data,
            }, tail @ ..]
                if xor.iter().all(|b| *b == 0) =>
            {
                matches.push(Match::CtMark {
                    mask: word(mask, "ct mark mask")?,
                    value: word(data, "ct mark value")?,
                });
                rest = tail;
            }
            [Expr::Ct {
                key: x::CT_MARK,
                dreg: x::REG_1,
                direction: None,
            }, Expr::Bitwise {
                sreg: x::REG_1,
                dreg: x::REG_1,
                len: 4,
                mask,
                xor,
            }, Expr::CtSet {
                key: x::CT_MARK,
                sreg: x::REG_1,
            }, tail @ ..] => {
                action = Some(Action::SetCtMark {
                    mask: !word(mask, "ct mark kept bits")?,
                    value: word(xor, "ct mark value")?,
                });
                rest = tail;
            }
            [Expr::Fib {
                flags: flags @ (x::FIB_F_SADDR | x::FIB_F_DADDR),
                result: x::FIB_RESULT_ADDRTYPE,
                dreg: x::REG_1,
            }, Expr::Cmp {
                sreg: x::REG_1,
                op: x::CMP_EQ,
                data,
            }, tail @ ..]
                if data.as_slice() == x::RTN_LOCAL.to_ne_bytes() =>
            {
                matches.push(if *flags == x::FIB_F_SADDR {
                    Match::SaddrIsLocal
                } else {
                    Match::DaddrIsLocal
                });
                rest = tail;
            }
            [Expr::Limit {
                rate,
                unit,
                burst,
                kind: x::LIMIT_PKTS,
                flags: 0,
            }, tail @ ..] => {
                let unit = RateUnit::ALL
                    .into_iter()
                    .find(|candidate| candidate.seconds() == *unit)
                    .ok_or_else(|| format!("limit unit of {unit} seconds"))?;
                matches.push(Match::Limit(RateLimit {
                    rate: *rate,
                    unit,
                    burst: *burst,
                }));
                rest = tail;
            }
            [Expr::Log {
                group: Some(group),
                prefix,
                tuned: false,
            }, tail @ ..] => {
                action = Some(Action::Log(Log {
                    group: *group,
                    prefix: prefix.clone().unwrap_or_default(),
                }));
                rest = tail;
            }
            // Values are ignored: the IR states that a counter exists.
            [Expr::Counter { .. }, tail @ ..] => {
                counter = true;
                rest = tail;
            }
            [Expr::Verdict(raw), tail @ ..] => {
                action = Some(Action::Verdict(
                    verdict_of(raw).ok_or_else(|| format!("unknown verdict {raw:?}"))?,
                ));
                rest = tail;
            }
            [Expr::Reject {
                kind: x::REJECT_ICMPX_UNREACH,
                code: x::REJECT_ICMPX_ADMIN_PROHIBITED,
            }, tail @ ..] => {
                action = Some(Action::Verdict(Verdict::Reject));
                rest = tail;
            }
            [Expr::Payload { .. }
            | Expr::Meta {
                key: x::META_L4PROTO,
                ..
            }
            | Expr::Ct {
                direction: Some(_), ..
            }, ..] => {
                let (fields, dregs, tail) = read_loads(rest)?;
                let [lookup, tail @ ..] = tail else {
                    return Err("key loads without a lookup".to_owned());
                };
                if let Expr::Dynset {
                    set,
                    op: x::DYNSET_OP_UPDATE,
                    sreg_key: x::REG_1,
                    sreg_data: Some(sreg_data),
                    timeout_ms,
                    flags: 0,
                } = lookup
                {
                    action = Some(Action::Update(Box::new(read_update(
                        set,
                        &fields,
                        &dregs,
                        *sreg_data,
                        *timeout_ms,
                    )?)));
                    rest = tail;
                    continue;
                }
                if !matches!(lookup, Expr::Lookup { sreg: x::REG_1, .. }) {
                    return Err(format!("unexpected expression after a key: {lookup:?}"));
                }
                if dregs != registers(&fields) {
                    return Err(format!(
                        "key registers {dregs:?} do not match fields {fields:?}"
                    ));
                }
                match lookup {
                    Expr::Lookup {
                        set,
                        dreg: None,
                        flags,
                        ..
                    } => {
                        matches.push(Match::Lookup {
                            key: fields.into(),
                            set: set.clone(),
                            negated: flags & x::LOOKUP_F_INV != 0,
                        });
                    }
                    Expr::Lookup {
                        set,
                        dreg: Some(x::REG_VERDICT),
                        flags: 0,
                        ..
                    } => {
                        action = Some(Action::VerdictMap {
                            key: fields,
                            map: set.clone(),
                        });
                    }
                    other => return Err(format!("unexpected lookup {other:?}")),
                }
                rest = tail;
            }
            [other, ..] => return Err(format!("unexpected expression {other:?}")),
            [] => break,
        }
    }
    let comment = userdata
        .and_then(|bytes| find_udata(bytes, udata::RULE_COMMENT))
        .map(comment_of)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Rule {
        matches,
        counter,
        action: action.ok_or("rule without verdict")?,
        comment,
    })
}

/// A 32-bit register value in host byte order (ct mark).
fn word(data: &[u8], what: &str) -> Result<u32, String> {
    let bytes: [u8; 4] = data
        .try_into()
        .map_err(|_| format!("{what} is not 4 bytes"))?;
    Ok(u32::from_ne_bytes(bytes))
}

fn single_byte(data: &[u8]) -> Option<u8> {
    match data {
        [byte] => Some(*byte),
        _ => None,
    }
}

fn ct_states(mask: &[u8]) -> Result<BTreeSet<CtState>, String> {
    let bytes: [u8; 4] = mask
        .try_into()
        .map_err(|_| "ct state mask is not 4 bytes")?;
    let mask = u32::from_ne_bytes(bytes);
    let all = [
        CtState::Invalid,
        CtState::Established,
        CtState::Related,
        CtState::New,
        CtState::Untracked,
    ];
    let states: BTreeSet<CtState> = all
        .into_iter()
        .filter(|state| mask & ct_bit(*state) != 0)
        .collect();
    let known = states.iter().fold(0, |bits, state| bits | ct_bit(*state));
    if known != mask || states.is_empty() {
        return Err(format!("unexpected ct state mask {mask:#x}"));
    }
    Ok(states)
}

/// The update whose key and data were loaded as `fields` into `dregs`.
fn read_update(
    set: &str,
    fields: &[Field],
    dregs: &[u32],
    sreg_data: u32,
    timeout_ms: u64,
) -> Result<SetUpdate, String> {
    let split = dregs
        .iter()
        .position(|dreg| *dreg == sreg_data)
        .ok_or("no data loaded for a dynset")?;
    let (key, data) = fields.split_at(split);
    let want: Vec<u32> = registers(key)
        .into_iter()
        .chain(registers_from(data, data_start(key, data)))
        .collect();
    if dregs != want {
        return Err(format!(
            "dynset registers {dregs:?} do not match key {key:?} and data {data:?}"
        ));
    }
    Ok(SetUpdate {
        set: set.to_owned(),
        key: key.to_vec(),
        data: data.to_vec(),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// Fields loaded, their registers, and the expressions after the loads.
type Loads<'a> = (Vec<Field>, Vec<u32>, &'a [Expr]);

/// Reads consecutive field loads.
fn read_loads(exprs: &[Expr]) -> Result<Loads<'_>, String> {
    let mut fields = Vec::new();
    let mut dregs = Vec::new();
    let mut rest = exprs;
    loop {
        match rest {
            [Expr::Payload {
                dreg,
                base,
                offset,
                len,
            }, tail @ ..] => {
                let field = [
                    Field::Ipv4Saddr,
                    Field::Ipv4Daddr,
                    Field::Ipv6Saddr,
                    Field::Ipv6Daddr,
                    Field::TransportDport,
                    Field::TransportSport,
                ]
                .into_iter()
                .find(|field| payload_of(*field) == Some((*base, *offset, *len)))
                .ok_or_else(|| format!("unexpected payload load {base}/{offset}/{len}"))?;
                fields.push(field);
                dregs.push(*dreg);
                rest = tail;
            }
            [Expr::Ct {
                key,
                dreg,
                direction: Some(direction),
            }, tail @ ..] => {
                let field = [
                    Field::CtOriginalIpv4Saddr,
                    Field::CtReplyIpv4Saddr,
                    Field::CtOriginalIpv6Saddr,
                    Field::CtReplyIpv6Saddr,
                    Field::CtOriginalIpv4Daddr,
                    Field::CtOriginalIpv6Daddr,
                    Field::CtOriginalProtoDst,
                ]
                .into_iter()
                .find(|field| ct_of(*field) == Some((*key, *direction)))
                .ok_or_else(|| format!("unexpected ct load {key} dir {direction}"))?;
                fields.push(field);
                dregs.push(*dreg);
                rest = tail;
            }
            [Expr::Meta {
                key: x::META_L4PROTO,
                dreg,
            }, tail @ ..] => {
                fields.push(Field::L4Proto);
                dregs.push(*dreg);
                rest = tail;
            }
            [Expr::Byteorder {
                sreg,
                dreg,
                op: x::BYTEORDER_HTON,
                len: 1,
                size: 2,
            }, tail @ ..]
                if sreg == dreg
                    && dregs.last() == Some(sreg)
                    && fields.last() == Some(&Field::L4Proto) =>
            {
                rest = tail;
            }
            _ => return Ok((fields, dregs, rest)),
        }
    }
}
