//! A [`Diff`] → one nfnetlink batch (`BATCH_BEGIN`, messages, `BATCH_END`),
//! with a map from each message's sequence number back to its change (and,
//! for element messages, from byte offsets back to elements), so a kernel
//! error names the IR object it is about.
//!
//! Element lists are split so that no `NFTA_SET_ELEM_LIST_ELEMENTS` exceeds
//! [`MAX_ELEMENT_LIST`] bytes: the kernel's `nla_len` is 16 bits.

use std::collections::BTreeMap;

use nftpol_ir::diff::{Change, Diff, Elements};
use nftpol_ir::{BaseChain, Chain, ChainPolicy, Hook, Set};

use crate::error::{ApplyError, Object};
use crate::expr::ExprWriter;
use crate::nla::{self, Attrs, Writer, NFGENMSG_LEN, NLA_HDRLEN, NLMSG_HDRLEN};
use crate::rule::{rule_userdata, write_exprs};
use crate::set::{nul_terminated, push_udata, write_element, write_set, SetEncodeError};
use crate::uapi::{
    chain as c, elem, hook, msg, rule as r, table as t, udata, verdict, NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REQUEST,
};

/// Largest element list per `NEWSETELEM`/`DELSETELEM` message (under 64 KiB).
pub const MAX_ELEMENT_LIST: usize = 60_000;

/// A batch is built in chunks of about this many bytes, each ending with a
/// whole message, and sent in one `sendmsg` of all of them. One buffer
/// grown by doubling copies itself at each step and, while it does, is held
/// twice: the 43 MiB first sync of 100,000 pods and 10,000 policies briefly
/// took 64 MiB of the agent's peak.
const CHUNK: usize = 1 << 20;

/// Room past [`CHUNK`] for the message that crosses it: an element message
/// is at most [`MAX_ELEMENT_LIST`] plus its headers, a rule far less.
const CHUNK_SLACK: usize = 64 << 10;

/// Where a message of the batch came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The message's sequence number.
    pub seq: u32,
    /// Its nf_tables message type.
    pub kind: u16,
    /// Index of its change in the diff; `None` for framing or extra messages.
    pub change: Option<usize>,
    /// For element messages: where the message is and which element it
    /// starts with.
    pub elements: Option<ElementRun>,
}

/// An element message's place in the batch and the index, in its change,
/// of its first element. The element an error's attribute offset points at
/// is found by walking the message's element list when an error names it:
/// a span kept per element cost 24 bytes each, 5 MB of a 200,000-element
/// first batch, for the rare rejected one.
#[derive(Debug, Clone, Copy)]
pub struct ElementRun {
    /// The chunk holding the message.
    pub chunk: usize,
    /// The message's first byte in the chunk.
    pub at: usize,
    /// The index of its first element in its change.
    pub first: usize,
}

/// An encoded batch.
#[derive(Debug)]
pub struct Batch {
    /// The bytes to send in one `sendmsg`, in chunks that each end with a
    /// whole message.
    pub chunks: Vec<Vec<u8>>,
    /// Every message between `BATCH_BEGIN` and `BATCH_END`, in order.
    pub origins: Vec<Origin>,
    /// Sequence number of `BATCH_BEGIN`.
    pub begin_seq: u32,
    /// Sequence number of `BATCH_END` (the only message asking for an ack).
    pub end_seq: u32,
}

impl Batch {
    /// Bytes over all chunks.
    pub fn byte_len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The chunks joined: the batch as one buffer, for readers of its
    /// messages.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    /// Messages between `BATCH_BEGIN` and `BATCH_END`.
    pub fn message_count(&self) -> usize {
        self.origins.len()
    }

    /// The position, in its change, of the element of element message `run`
    /// whose attributes hold byte `offset` of the message. An IR element is
    /// one list entry, or two in a one-field interval set: its start, then
    /// an entry flagged as the interval's end.
    fn element_at(&self, run: ElementRun, offset: usize) -> Option<usize> {
        let bytes = self.chunks.get(run.chunk)?.get(run.at..)?;
        let message = nla::messages(bytes).next()?.ok()?;
        // The message's attributes follow `nlmsghdr` and `nfgenmsg`; each
        // starts where the one before ends, padded.
        let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
        for attr in Attrs::new(message.payload.get(NFGENMSG_LEN..)?) {
            let attr = attr.ok()?;
            if attr.kind != elem::LIST_ELEMENTS {
                at += nla::align(NLA_HDRLEN + attr.value.len());
                continue;
            }
            let mut entry_at = at + NLA_HDRLEN;
            let mut element = None;
            for entry in attr.nested() {
                let entry = entry.ok()?;
                if !is_interval_end(entry) {
                    element = Some(element.map_or(run.first, |index| index + 1));
                }
                let end = entry_at + nla::align(NLA_HDRLEN + entry.value.len());
                if (entry_at..end).contains(&offset) {
                    return element;
                }
                entry_at = end;
            }
            return None;
        }
        None
    }

    /// The IR object a message (and an attribute offset in it) came from.
    pub fn object_of(&self, diff: &Diff, seq: u32, offset: Option<usize>) -> Object {
        let Some(origin) = self.origins.iter().find(|origin| origin.seq == seq) else {
            return Object::Batch;
        };
        let Some(change) = origin.change.and_then(|index| diff.changes.get(index)) else {
            return Object::Table;
        };
        match change {
            Change::AddTable => Object::Table,
            Change::FlushChain(name) | Change::DeleteChain(name) => Object::Chain(name.clone()),
            Change::AddChain(chain) => Object::Chain(chain.name.clone()),
            Change::DeleteSet(name) => Object::Set(name.clone()),
            Change::AddSet(set) => Object::Set(set.name.clone()),
            Change::AddRule { chain, rule } => Object::Rule {
                chain: chain.clone(),
                comment: rule.comment.clone(),
            },
            Change::AddElements { set, elements } | Change::DeleteElements { set, elements } => {
                offset
                    .zip(origin.elements)
                    .and_then(|(offset, run)| self.element_at(run, offset))
                    .and_then(|index| elements.get(index))
                    .map_or_else(
                        || Object::Set(set.clone()),
                        |element| Object::Element {
                            set: set.clone(),
                            element: Box::new(element.clone()),
                        },
                    )
            }
        }
    }
}

/// Builds a batch for `table`.
pub struct BatchWriter<'a> {
    /// The chunk being written.
    w: Writer,
    /// Chunks written before it.
    full: Vec<Vec<u8>>,
    table: &'a str,
    seq: u32,
    begin_seq: u32,
    origins: Vec<Origin>,
    set_id: u32,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch whose first sequence number is `seq`.
    pub fn new(table: &'a str, seq: u32) -> Self {
        let mut w = Writer::new();
        let start = w.begin_message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_message(start);
        Self {
            w,
            full: Vec::new(),
            table,
            seq: seq.wrapping_add(1),
            begin_seq: seq,
            origins: Vec::new(),
            set_id: 0,
        }
    }

    /// Starts a new chunk once the current one is past [`CHUNK`]; called
    /// between messages only, so no message spans two chunks.
    fn next_chunk_if_full(&mut self) {
        if self.w.len() >= CHUNK {
            let full = std::mem::replace(&mut self.w, Writer::with_capacity(CHUNK + CHUNK_SLACK));
            self.full.push(full.into_bytes());
        }
    }

    fn begin(&mut self, kind: u16, flags: u16, change: Option<usize>) -> usize {
        self.next_chunk_if_full();
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.origins.push(Origin {
            seq,
            kind,
            change,
            elements: None,
        });
        self.w.begin_message(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | flags,
            seq,
            NFPROTO_INET,
            0,
        )
    }

    /// Appends the messages of every change of `diff`. `sets` holds the
    /// shapes of the sets the changes touch that the diff does not add.
    pub fn push_diff(
        &mut self,
        diff: &Diff,
        sets: &BTreeMap<String, Set>,
    ) -> Result<(), ApplyError> {
        let mut shapes = sets.clone();
        for (index, change) in diff.changes.iter().enumerate() {
            if let Change::AddSet(set) = change {
                shapes.insert(set.name.clone(), set.clone());
            }
            self.push_change(index, change, &shapes)
                .map_err(|error| match error {
                    SetEncodeError::Shape(reason) => ApplyError::Encode {
                        object: object_of_change(change),
                        reason,
                    },
                    SetEncodeError::TooLarge(source) => ApplyError::TooLarge {
                        object: object_of_change(change),
                        source,
                    },
                })?;
        }
        Ok(())
    }

    fn push_change(
        &mut self,
        index: usize,
        change: &Change,
        sets: &BTreeMap<String, Set>,
    ) -> Result<(), SetEncodeError> {
        let table = self.table;
        match change {
            Change::AddTable => {
                let start = self.begin(msg::NEWTABLE, NLM_F_CREATE, Some(index));
                self.w.put_str(t::NAME, table)?;
                self.w.put_u32(t::FLAGS, 0)?;
                self.w.end_message(start);
            }
            Change::FlushChain(name) => {
                let start = self.begin(msg::DELRULE, 0, Some(index));
                self.w.put_str(r::TABLE, table)?;
                self.w.put_str(r::CHAIN, name)?;
                self.w.end_message(start);
            }
            Change::DeleteChain(name) => {
                let start = self.begin(msg::DELCHAIN, 0, Some(index));
                self.w.put_str(c::TABLE, table)?;
                self.w.put_str(c::NAME, name)?;
                self.w.end_message(start);
            }
            Change::DeleteSet(name) => {
                let start = self.begin(msg::DELSET, 0, Some(index));
                self.w.put_str(crate::uapi::set::TABLE, table)?;
                self.w.put_str(crate::uapi::set::NAME, name)?;
                self.w.end_message(start);
            }
            Change::AddSet(set) => {
                let start = self.begin(msg::NEWSET, NLM_F_CREATE | NLM_F_EXCL, Some(index));
                self.set_id += 1;
                write_set(&mut self.w, table, set, self.set_id)?;
                self.w.end_message(start);
            }
            Change::AddChain(chain) => {
                let start = self.begin(msg::NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, Some(index));
                write_chain(&mut self.w, table, chain)?;
                self.w.end_message(start);
            }
            Change::AddRule { chain, rule } => {
                let start = self.begin(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, Some(index));
                self.w.put_str(r::TABLE, table)?;
                self.w.put_str(r::CHAIN, chain)?;
                let list = self.w.begin_nested(r::EXPRESSIONS);
                write_exprs(&mut ExprWriter::new(&mut self.w), rule, sets)?;
                self.w.end_nested(list)?;
                if let Some(userdata) = rule_userdata(rule)? {
                    self.w.put(r::USERDATA, &userdata)?;
                }
                self.w.end_message(start);
            }
            Change::AddElements { set, elements } => {
                self.push_elements(
                    index,
                    msg::NEWSETELEM,
                    NLM_F_CREATE | NLM_F_EXCL,
                    set,
                    elements,
                    sets,
                )?;
            }
            Change::DeleteElements { set, elements } => {
                self.push_elements(index, msg::DELSETELEM, 0, set, elements, sets)?;
            }
        }
        Ok(())
    }

    fn push_elements(
        &mut self,
        index: usize,
        kind: u16,
        flags: u16,
        set_name: &str,
        elements: &Elements<'_>,
        sets: &BTreeMap<String, Set>,
    ) -> Result<(), SetEncodeError> {
        let Some(set) = sets.get(set_name) else {
            return Err(SetEncodeError::Shape(format!(
                "set {set_name:?} is neither in the diff nor in the kernel"
            )));
        };
        let delete = kind == msg::DELSETELEM;
        let mut next = 0;
        while next < elements.len() {
            let start = self.begin(kind, flags, Some(index));
            if let Some(origin) = self.origins.last_mut() {
                origin.elements = Some(ElementRun {
                    chunk: self.full.len(),
                    at: start,
                    first: next,
                });
            }
            self.w.put_str(elem::LIST_TABLE, self.table)?;
            self.w.put_str(elem::LIST_SET, set_name)?;
            let list = self.w.begin_nested(elem::LIST_ELEMENTS);
            let first = next;
            while let Some(element) = elements.get(next) {
                let before = self.w.len();
                write_element(&mut self.w, set, element, delete)?;
                if self.w.len() - list > MAX_ELEMENT_LIST && next > first {
                    self.w.truncate(before);
                    break;
                }
                next += 1;
            }
            self.w.end_nested(list)?;
            self.w.end_message(start);
        }
        Ok(())
    }

    /// Appends `DELTABLE` (used to delete the table, and by the feature probe).
    pub fn push_delete_table(&mut self) -> Result<(), ApplyError> {
        let start = self.begin(msg::DELTABLE, 0, None);
        self.w
            .put_str(t::NAME, self.table)
            .map_err(|source| ApplyError::TooLarge {
                object: Object::Table,
                source,
            })?;
        self.w.end_message(start);
        Ok(())
    }

    /// Closes the batch with `BATCH_END`, the one message that asks for an ack.
    pub fn finish(mut self) -> Batch {
        self.next_chunk_if_full();
        let end_seq = self.seq;
        let start = self.w.begin_message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST | NLM_F_ACK,
            end_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_message(start);
        let mut chunks = self.full;
        chunks.push(self.w.into_bytes());
        Batch {
            chunks,
            origins: self.origins,
            begin_seq: self.begin_seq,
            end_seq,
        }
    }
}

/// Whether a list entry is the end of an interval whose start came before.
fn is_interval_end(entry: nla::Attr<'_>) -> bool {
    entry.nested().filter_map(Result::ok).any(|attr| {
        attr.kind == elem::FLAGS
            && attr
                .u32("element flags")
                .is_ok_and(|flags| flags & elem::F_INTERVAL_END != 0)
    })
}

fn object_of_change(change: &Change) -> Object {
    match change {
        Change::AddTable => Object::Table,
        Change::FlushChain(name) | Change::DeleteChain(name) => Object::Chain(name.clone()),
        Change::AddChain(chain) => Object::Chain(chain.name.clone()),
        Change::DeleteSet(name)
        | Change::AddElements { set: name, .. }
        | Change::DeleteElements { set: name, .. } => Object::Set(name.clone()),
        Change::AddSet(set) => Object::Set(set.name.clone()),
        Change::AddRule { chain, rule } => Object::Rule {
            chain: chain.clone(),
            comment: rule.comment.clone(),
        },
    }
}

/// Writes the attributes of a `NEWCHAIN` (without rules).
fn write_chain(w: &mut Writer, table: &str, chain: &Chain) -> Result<(), SetEncodeError> {
    w.put_str(c::TABLE, table)?;
    w.put_str(c::NAME, &chain.name)?;
    if let Some(base) = &chain.base {
        w.put_str(c::TYPE, "filter")?;
        w.put_u32(c::POLICY, policy_code(base.policy))?;
        let nest = w.begin_nested(c::HOOK);
        w.put_u32(c::HOOK_HOOKNUM, hook_number(base.hook))?;
        w.put(c::HOOK_PRIORITY, &base.priority.to_be_bytes())?;
        w.end_nested(nest)?;
    }
    if let Some(comment) = &chain.comment {
        let mut userdata = Vec::new();
        push_udata(
            &mut userdata,
            udata::CHAIN_COMMENT,
            &nul_terminated(comment),
        )?;
        w.put(c::USERDATA, &userdata)?;
    }
    Ok(())
}

/// The kernel's hook number of a hook.
pub fn hook_number(hook: Hook) -> u32 {
    match hook {
        Hook::Prerouting => hook::PREROUTING,
        Hook::Input => hook::INPUT,
        Hook::Forward => hook::FORWARD,
        Hook::Output => hook::OUTPUT,
        Hook::Postrouting => hook::POSTROUTING,
    }
}

/// The hook of a kernel hook number.
pub fn hook_of(number: u32) -> Option<Hook> {
    [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ]
    .into_iter()
    .find(|hook| hook_number(*hook) == number)
}

/// The kernel's verdict code of a chain policy.
pub fn policy_code(policy: ChainPolicy) -> u32 {
    match policy {
        ChainPolicy::Accept => verdict::ACCEPT.unsigned_abs(),
        ChainPolicy::Drop => verdict::DROP.unsigned_abs(),
    }
}

/// The IR of a base chain's kernel attributes.
pub fn base_chain_of(hook_number: u32, priority: i32, policy: u32) -> Option<BaseChain> {
    let policy = match policy {
        p if p == policy_code(ChainPolicy::Accept) => ChainPolicy::Accept,
        p if p == policy_code(ChainPolicy::Drop) => ChainPolicy::Drop,
        _ => return None,
    };
    Some(BaseChain {
        hook: hook_of(hook_number)?,
        priority,
        policy,
    })
}
