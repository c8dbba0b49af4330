//! Test support: the [`Dump`] the kernel would answer for the table that one
//! of our batches created, so `encode → dump → decode` can be checked without
//! a kernel (here and by the `roundtrip` fuzz target, which includes this
//! file by path).
//!
//! The kernel's dump replies are `NEW*` messages carrying the attributes the
//! batch sent, so the batch's attributes are reused. What differs, and what
//! this adapter therefore changes:
//! - **Framing:** replies are `NLM_F_MULTI`, several to a datagram, each dump
//!   closed by `NLMSG_DONE`; the request flags (`NLM_F_CREATE`, `NLM_F_EXCL`,
//!   `NLM_F_APPEND`) and the batch's sequence numbers are gone, and `res_id`
//!   carries the ruleset generation.
//! - **Grouping:** one dump per object type and one element dump per set
//!   (an empty set's is just `NLMSG_DONE`), not the batch's change order.
//!   `NEWTABLE` is read by `GETTABLE` and is not part of a [`Dump`].
//! - **Attributes:** the kernel adds handles (and use counts, flags) the
//!   decoder must ignore, so a handle is added to every chain, rule and set;
//!   `NFTA_SET_ID` exists only within a batch, so it is removed.
//! - **Element order and packing:** the kernel walks its set backend (a hash
//!   in hash order, an rbtree in descending key order, so an interval's end
//!   precedes its start) and fills each reply as far as it fits, so element
//!   nests are re-packed and re-ordered as a [`Layout`] says. Chains and sets
//!   are rotated too; rules keep their order, which is the chain's.

#![allow(
    dead_code,
    reason = "each includer (a test binary, a fuzz target) uses a different part"
)]

use std::collections::BTreeMap;

use nftpol_ir::TABLE_NAME;
use nftpol_netlink::uapi::{
    elem, msg, set, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NLA_F_NESTED, NLA_TYPE_MASK, NLMSG_DONE,
};
use nftpol_netlink::Dump;

/// `NLM_F_MULTI` (include/uapi/linux/netlink.h): part of a multipart reply.
const NLM_F_MULTI: u16 = 0x2;
/// `NFTA_CHAIN_HANDLE` (include/uapi/linux/netfilter/nf_tables.h).
const CHAIN_HANDLE: u16 = 2;
/// `NFTA_RULE_HANDLE`.
const RULE_HANDLE: u16 = 3;
/// `NFTA_SET_HANDLE`.
const SET_HANDLE: u16 = 16;
/// Bytes of `nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Bytes of `nfgenmsg`.
const NFGENMSG_LEN: usize = 4;
/// Most element bytes per reply: the kernel fills one skb of a page or so;
/// well under the 64 KiB an attribute can hold.
const REPLY_BUDGET: usize = 16_384;

/// How the kernel happened to pack and order one dump.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Reply messages per datagram (0 counts as 1).
    pub messages_per_datagram: usize,
    /// Element nests per `NEWSETELEM` reply (0 counts as 1).
    pub elements_per_message: usize,
    /// Walk each set's elements backwards (as an rbtree dump does).
    pub reverse_elements: bool,
    /// Rotate the chains, the sets and each set's elements left by this much.
    pub rotate: usize,
}

impl Default for Layout {
    /// One datagram per dump, in the batch's order.
    fn default() -> Self {
        Self {
            messages_per_datagram: usize::MAX,
            elements_per_message: usize::MAX,
            reverse_elements: false,
            rotate: 0,
        }
    }
}

/// The dump of the table a batch of `NEW*` messages (from an empty table)
/// created, laid out as `layout` says.
///
/// # Panics
/// When `batch` is not well framed (our encoder's output always is) or
/// holds a message that deletes something.
pub fn dump_of_batch(batch: &[u8], layout: Layout) -> Dump {
    let mut handle = 0_u64;
    let mut next_handle = |kind| {
        handle += 1;
        attr(kind, &handle.to_be_bytes())
    };
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    let mut sets = Vec::new();
    let mut elements: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (kind, attrs) in nftables_messages(batch) {
        match kind {
            msg::NEWTABLE => {}
            msg::NEWCHAIN => chains.push([attrs, next_handle(CHAIN_HANDLE)].concat()),
            msg::NEWRULE => rules.push([attrs, next_handle(RULE_HANDLE)].concat()),
            msg::NEWSET => {
                let name = string_of(&tlvs(&attrs), set::NAME);
                let kept: Vec<u8> = tlvs(&attrs)
                    .into_iter()
                    .filter(|(kind, _)| *kind != set::ID)
                    .flat_map(|(_, tlv)| padded(tlv))
                    .collect();
                elements.entry(name).or_default();
                sets.push([kept, next_handle(SET_HANDLE)].concat());
            }
            msg::NEWSETELEM => {
                let attrs = tlvs(&attrs);
                let list = attrs
                    .iter()
                    .find(|(kind, _)| *kind == elem::LIST_ELEMENTS)
                    .expect("an element message has an element list");
                let nests = tlvs(value_of(list.1))
                    .into_iter()
                    .map(|(_, tlv)| padded(tlv));
                elements
                    .entry(string_of(&attrs, elem::LIST_SET))
                    .or_default()
                    .extend(nests);
            }
            other => panic!("message type {other} has no place in a dump"),
        }
    }
    rotate(&mut chains, layout.rotate);
    rotate(&mut sets, layout.rotate);
    let per_datagram = layout.messages_per_datagram.max(1);
    Dump {
        chains: datagrams(msg::NEWCHAIN, &chains, per_datagram),
        rules: datagrams(msg::NEWRULE, &rules, per_datagram),
        sets: datagrams(msg::NEWSET, &sets, per_datagram),
        elements: elements
            .into_iter()
            .map(|(name, mut nests)| {
                if layout.reverse_elements {
                    nests.reverse();
                }
                rotate(&mut nests, layout.rotate);
                let replies = element_replies(&name, &nests, layout.elements_per_message.max(1));
                (name, datagrams(msg::NEWSETELEM, &replies, per_datagram))
            })
            .collect(),
    }
}

/// (nf_tables message type, attributes after `nfgenmsg`) of every nf_tables
/// message of a batch, skipping the batch markers.
fn nftables_messages(batch: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = batch;
    while !rest.is_empty() {
        let header: [u8; 4] = rest
            .get(..4)
            .and_then(|bytes| bytes.try_into().ok())
            .expect("a whole nlmsghdr length");
        let len = usize::try_from(u32::from_ne_bytes(header)).expect("a u32 fits usize");
        let message = rest.get(..len).expect("a message within the batch");
        let kind = u16::from_ne_bytes([message[4], message[5]]);
        if kind >> 8 == NFNL_SUBSYS_NFTABLES {
            let attrs = message
                .get(NLMSG_HDRLEN + NFGENMSG_LEN..)
                .expect("an nf_tables message has an nfgenmsg");
            out.push((kind & 0xff, attrs.to_vec()));
        }
        rest = rest.get(align(len)..).unwrap_or(&[]);
    }
    out
}

/// `NEWSETELEM` attributes for `nests`, at most `per_message` nests and
/// about [`REPLY_BUDGET`] bytes per reply.
fn element_replies(set_name: &str, nests: &[Vec<u8>], per_message: usize) -> Vec<Vec<u8>> {
    let mut replies = Vec::new();
    let mut chunk: Vec<u8> = Vec::new();
    let mut count = 0;
    let mut flush = |chunk: &mut Vec<u8>, count: &mut usize| {
        if *count > 0 {
            replies.push(
                [
                    attr(elem::LIST_TABLE, &nul_terminated(TABLE_NAME)),
                    attr(elem::LIST_SET, &nul_terminated(set_name)),
                    attr(elem::LIST_ELEMENTS | NLA_F_NESTED, chunk),
                ]
                .concat(),
            );
        }
        chunk.clear();
        *count = 0;
    };
    for nest in nests {
        if count == per_message || (count > 0 && chunk.len() + nest.len() > REPLY_BUDGET) {
            flush(&mut chunk, &mut count);
        }
        chunk.extend_from_slice(nest);
        count += 1;
    }
    flush(&mut chunk, &mut count);
    replies
}

/// Reply messages of type `kind`, `per_datagram` to a datagram, the last
/// datagram ending with `NLMSG_DONE`.
fn datagrams(kind: u16, replies: &[Vec<u8>], per_datagram: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = replies
        .chunks(per_datagram)
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|attrs| message((NFNL_SUBSYS_NFTABLES << 8) | kind, attrs))
                .collect()
        })
        .collect();
    let done = message(NLMSG_DONE, &0_i32.to_ne_bytes());
    match out.last_mut() {
        Some(last) => last.extend(done),
        None => out.push(done),
    }
    out
}

/// One reply: `nlmsghdr`, `nfgenmsg` (family inet, generation 1), `payload`.
fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + payload.len();
    let mut out = Vec::with_capacity(align(len));
    out.extend(
        u32::try_from(len)
            .expect("a reply under 4 GiB")
            .to_ne_bytes(),
    );
    out.extend(kind.to_ne_bytes());
    out.extend(NLM_F_MULTI.to_ne_bytes());
    out.extend(0_u32.to_ne_bytes()); // seq: the dump request's, not the batch's
    out.extend(0_u32.to_ne_bytes()); // pid
    out.extend([NFPROTO_INET, 0]);
    out.extend(1_u16.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(align(len), 0);
    out
}

/// One attribute, padded.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + value.len()).expect("an attribute under 64 KiB");
    let mut out = [&len.to_ne_bytes()[..], &kind.to_ne_bytes(), value].concat();
    out.resize(align(out.len()), 0);
    out
}

/// (type without flags, whole attribute unpadded) of each attribute.
fn tlvs(bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let tlv = rest
            .get(..len)
            .filter(|tlv| tlv.len() >= 4)
            .expect("our encoder's attributes are well formed");
        out.push((u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK, tlv));
        rest = rest.get(align(len)..).unwrap_or(&[]);
    }
    out
}

fn value_of(tlv: &[u8]) -> &[u8] {
    &tlv[4..]
}

fn padded(tlv: &[u8]) -> Vec<u8> {
    let mut out = tlv.to_vec();
    out.resize(align(out.len()), 0);
    out
}

fn string_of(attrs: &[(u16, &[u8])], kind: u16) -> String {
    let (_, tlv) = attrs
        .iter()
        .find(|(found, _)| *found == kind)
        .expect("the object has a name");
    let value = value_of(tlv);
    let text = value.split(|byte| *byte == 0).next().unwrap_or(value);
    String::from_utf8(text.to_vec()).expect("our encoder writes UTF-8 names")
}

fn nul_terminated(text: &str) -> Vec<u8> {
    [text.as_bytes(), &[0]].concat()
}

fn rotate<T>(items: &mut [T], by: usize) {
    if !items.is_empty() {
        items.rotate_left(by % items.len());
    }
}

const fn align(len: usize) -> usize {
    len.div_ceil(4) * 4
}
