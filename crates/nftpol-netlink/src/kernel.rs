//! [`KernelDataplane`]: the `Dataplane` over a `NETLINK_NETFILTER` socket.
//!
//! - A diff is one batch sent in one `sendmsg`; the send buffer is forced
//!   (`SO_SNDBUFFORCE`) to hold it, however large.
//! - Only `BATCH_END` asks for an ack. The kernel runs the batch inside
//!   `sendmsg`, so when it returns every reply is queued: a non-blocking
//!   drain collects the errors, each with the failing message's sequence
//!   number and (with `NETLINK_EXT_ACK`) the offset of the bad attribute.
//! - `NETLINK_CAP_ACK` keeps errors small: the kernel does not echo our
//!   (up to 60 KB) message back.
//! - Reads are dumps of chains, rules, sets and each set's elements; a read
//!   whose replies span two ruleset generations is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nftpol_ir::diff::{diff, Change, Diff};
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, CtState, Element, Field, Hook, KeyType, Match, Rule,
    Ruleset, Set, Value, Verdict, TABLE_NAME,
};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, setsockopt, sockopt, MsgFlags};

use crate::batch::{Batch, BatchWriter};
use crate::conntrack;
use crate::counter::{self, RuleCounter};
use crate::decode::{self, Dump};
use crate::error::{ApplyError, ConntrackError, DecodeError, FeatureError, Object, ReadError};
use crate::marks::{self, MarkUse};
use crate::nla::{messages, Attrs, Writer, NLMSG_HDRLEN};
use crate::uapi::{
    elem, msg, table as t, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFPROTO_UNSPEC, NLMSGERR_ATTR_MSG,
    NLMSGERR_ATTR_OFFS, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use crate::{Applied, Dataplane};

/// Receive buffer forced on the socket: room for dumps and many errors.
const RECEIVE_BUFFER: usize = 16 << 20;
/// Largest datagram we accept from the kernel.
const DATAGRAM: usize = 1 << 20;
/// Dumps retried when the ruleset changed during a read.
const READ_ATTEMPTS: usize = 5;
/// `NLM_F_CAPPED`: the error echoes only the header of our message.
const NLM_F_CAPPED: u16 = 0x100;

/// Opening the socket failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the NETLINK_NETFILTER socket while {stage} (nf_tables missing, or no CAP_NET_ADMIN?)")]
pub struct OpenError {
    /// What was being done.
    pub stage: &'static str,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// The kernel's table `inet nftpol` in the network namespace the socket was
/// opened in.
pub struct KernelDataplane {
    socket: Socket,
    seq: u32,
    /// The shapes (no elements) of the table's sets as committed, kept by
    /// applying each committed diff's set changes; `None`: unknown, read
    /// from the kernel before encoding. Encoding needs the key shape of
    /// every set a change touches and nothing else of the table: keeping
    /// chains and rules too cost a copy of the structure per commit (44k
    /// rules at 10k policies, cloned for every pod event) and a second
    /// copy of it in memory next to the reconciler's committed ruleset.
    committed_sets: Option<BTreeMap<String, Set>>,
    send_buffer: usize,
}

/// One error reply.
struct KernelError {
    seq: u32,
    /// `None` for an ack.
    errno: Option<Errno>,
    message: Option<String>,
    offset: Option<usize>,
}

impl KernelDataplane {
    /// Opens a `NETLINK_NETFILTER` socket in the current thread's network
    /// namespace (callers `setns` a thread into a namespace, then open).
    pub fn open() -> Result<Self, OpenError> {
        let stage = |stage| move |source| OpenError { stage, source };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(stage("creating the socket"))?;
        socket.bind_auto().map_err(stage("binding"))?;
        socket
            .set_ext_ack(true)
            .map_err(stage("enabling NETLINK_EXT_ACK"))?;
        socket
            .set_cap_ack(true)
            .map_err(stage("enabling NETLINK_CAP_ACK"))?;
        setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).map_err(|errno| OpenError {
            stage: "forcing the receive buffer",
            source: errno.into(),
        })?;
        Ok(Self {
            socket,
            seq: 1,
            committed_sets: None,
            send_buffer: 0,
        })
    }

    /// Checks, in a throwaway table created and deleted in one batch, that
    /// the kernel has everything nftpol uses: nf_tables with the inet family,
    /// base chains, concatenated interval sets, verdict maps, and the ct,
    /// fib, lookup, counter and reject expressions.
    pub fn probe_features(&mut self) -> Result<(), FeatureError> {
        let table = format!("nftpol-probe-{}", std::process::id());
        let probe = probe_ruleset();
        let changes = diff(None, &probe);
        let mut writer = BatchWriter::new(&table, self.seq);
        let encoded = writer
            .push_diff(&changes, &BTreeMap::new())
            .and_then(|()| writer.push_delete_table());
        encoded.map_err(|source| FeatureError::Missing {
            feature: "an encodable probe (bug)",
            source: Box::new(source),
        })?;
        let batch = writer.finish();
        self.seq = batch.end_seq.wrapping_add(1);
        self.commit(&batch, &changes).map_err(|source| {
            let feature = match source.object() {
                Some(Object::Table | Object::Batch) | None => "nf_tables with the inet family",
                Some(Object::Chain(_)) => "filter base chains in inet tables",
                Some(Object::Set(name) | Object::Element { set: name, .. }) if name == "pipapo" => {
                    "concatenated interval sets (NFT_SET_CONCAT, Linux 5.6+)"
                }
                Some(Object::Set(_) | Object::Element { .. }) => "verdict maps",
                Some(Object::Rule { comment, .. }) => match comment.as_deref() {
                    Some("ct") => "the ct expression (nft_ct)",
                    Some("fib") => "the fib expression (nft_fib_inet)",
                    Some("reject") => "reject with icmpx (nft_reject_inet)",
                    Some("vmap") => "verdict map lookups",
                    _ => "concatenated lookups with counters (nft_counter)",
                },
            };
            FeatureError::Missing {
                feature,
                source: Box::new(source),
            }
        })
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        seq
    }

    /// The committed set shapes, read from the kernel if unknown.
    fn set_shapes(&mut self) -> Result<BTreeMap<String, Set>, ApplyError> {
        if self.committed_sets.is_none() {
            self.read()
                .map_err(|error| ApplyError::ReadSets(Box::new(error)))?;
        }
        Ok(self.committed_sets.take().unwrap_or_default())
    }

    /// Sends `batch` in one `sendmsg` and collects the kernel's verdict.
    fn commit(&mut self, batch: &Batch, diff: &Diff) -> Result<(), ApplyError> {
        let len = batch.byte_len();
        if len + 4096 > self.send_buffer {
            let size = len + 65536;
            setsockopt(&self.socket, sockopt::SndBufForce, &size).map_err(|errno| {
                ApplyError::Io {
                    stage: "forcing the send buffer",
                    source: errno.into(),
                }
            })?;
            self.send_buffer = size;
        }
        // One datagram gathered from every chunk: the kernel copies it into
        // one skb and runs the batch from BEGIN to END.
        let chunks: Vec<IoSlice<'_>> = batch
            .chunks
            .iter()
            .map(|chunk| IoSlice::new(chunk))
            .collect();
        let sent = sendmsg::<()>(
            self.socket.as_raw_fd(),
            &chunks,
            &[],
            MsgFlags::empty(),
            None,
        )
        .map_err(|errno| ApplyError::Io {
            stage: "sending the batch",
            source: errno.into(),
        })?;
        if sent != len {
            return Err(ApplyError::Io {
                stage: "sending the batch",
                source: io::Error::from(io::ErrorKind::WriteZero),
            });
        }
        let mut errors = Vec::new();
        let mut acked = false;
        let mut buffer = Vec::with_capacity(DATAGRAM);
        let mut blocking = false;
        while !acked {
            buffer.clear();
            let flags = if blocking { 0 } else { libc_dontwait() };
            match self.socket.recv(&mut buffer, flags | libc_trunc()) {
                Ok(len) if len > buffer.len() => {
                    return Err(ApplyError::Io {
                        stage: "receiving",
                        source: io::Error::from(io::ErrorKind::InvalidData),
                    })
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if errors.is_empty() {
                        blocking = true;
                        continue;
                    }
                    break;
                }
                Err(source) => {
                    return Err(ApplyError::Io {
                        stage: "receiving the batch result",
                        source,
                    })
                }
            }
            for message in messages(&buffer) {
                let message = message.map_err(|source| ApplyError::Protocol {
                    stage: "reading the batch result",
                    source,
                })?;
                if message.kind != NLMSG_ERROR {
                    continue;
                }
                let error = parse_error(message.flags, message.payload).map_err(|source| {
                    ApplyError::Protocol {
                        stage: "reading an error",
                        source,
                    }
                })?;
                if !(batch.begin_seq..=batch.end_seq).contains(&error.seq) {
                    continue;
                }
                acked |= error.seq == batch.end_seq;
                if let Some(errno) = error.errno {
                    errors.push((error.seq, errno, error.message, error.offset));
                }
            }
        }
        errors.sort_by_key(|error| error.0);
        let also_failed = errors.len().saturating_sub(1);
        if let Some((seq, errno, message, offset)) = errors.into_iter().next() {
            let object = batch.object_of(diff, seq, offset);
            return Err(ApplyError::Rejected {
                errno,
                message,
                object,
                also_failed,
            });
        }
        Ok(())
    }

    /// Every chain of another table in this namespace whose rules test or
    /// set any of `bits` of the conntrack mark (see [`crate::marks`]).
    pub fn ct_mark_uses(&mut self, bits: u32) -> Result<Vec<MarkUse>, ReadError> {
        let replies = self.request(NFPROTO_UNSPEC, msg::GETRULE, NLM_F_DUMP, &[])?;
        Ok(marks::mark_uses(&replies.datagrams, TABLE_NAME, bits)?)
    }

    /// The data of the element with `key` in the dynamic map `set` of table
    /// `inet nftpol` (`NFT_MSG_GETSETELEM` for that key: one lookup, not a
    /// dump); `None` when there is none (never written, or timed out).
    pub fn element_data(
        &mut self,
        set: &Set,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, ReadError> {
        let invalid = |reason: String| {
            ReadError::Decode(crate::error::DecodeError::unexpected(
                format!("set {:?}", set.name),
                reason,
            ))
        };
        let data = set
            .dynamic
            .as_ref()
            .map(|dynamic| dynamic.data.clone())
            .ok_or_else(|| invalid("not a dynamic map".to_owned()))?;
        let bytes = crate::key::encode(&set.key, key).map_err(invalid)?;
        let replies = match self.request_with(NFPROTO_INET, msg::GETSETELEM, 0, |w| {
            w.put_str(elem::LIST_TABLE, TABLE_NAME)?;
            w.put_str(elem::LIST_SET, &set.name)?;
            let elements = w.begin_nested(elem::LIST_ELEMENTS);
            let element = w.begin_nested(crate::uapi::list::ELEM);
            let key_nest = w.begin_nested(elem::KEY);
            w.put(crate::uapi::list::DATA_VALUE, &bytes)?;
            w.end_nested(key_nest)?;
            w.end_nested(element)?;
            w.end_nested(elements)
        }) {
            Ok(replies) => replies,
            Err(ReadError::Kernel {
                errno: Errno::ENOENT,
                ..
            }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(value) = decode::element_value(&replies.datagrams, &set.name)? else {
            return Ok(None);
        };
        crate::key::decode(&data, &value).map(Some).map_err(invalid)
    }

    /// Sends a dump request and returns the reply datagrams.
    fn dump(&mut self, kind: u16, attrs: &[(u16, &str)]) -> Result<Replies, ReadError> {
        self.request(NFPROTO_INET, kind, NLM_F_DUMP, attrs)
    }

    fn request(
        &mut self,
        family: u8,
        kind: u16,
        flags: u16,
        attrs: &[(u16, &str)],
    ) -> Result<Replies, ReadError> {
        self.request_with(family, kind, flags, |w| {
            attrs
                .iter()
                .try_for_each(|(attr, value)| w.put_str(*attr, value))
        })
    }

    /// Sends one request whose attributes `attrs` writes, and collects the
    /// replies up to the ack or `NLMSG_DONE`.
    fn request_with(
        &mut self,
        family: u8,
        kind: u16,
        flags: u16,
        attrs: impl FnOnce(&mut Writer) -> Result<(), crate::nla::AttrTooLarge>,
    ) -> Result<Replies, ReadError> {
        let mut datagrams = Vec::new();
        let mut replies = self.request_streaming(family, kind, flags, attrs, |datagram| {
            datagrams.push(datagram.to_vec());
            Ok(())
        })?;
        replies.datagrams = datagrams;
        Ok(replies)
    }

    /// [`Self::request_with`], handing each reply datagram to `sink` as it
    /// arrives instead of keeping it; the replies' `datagrams` stay empty.
    fn request_streaming(
        &mut self,
        family: u8,
        kind: u16,
        flags: u16,
        attrs: impl FnOnce(&mut Writer) -> Result<(), crate::nla::AttrTooLarge>,
        mut sink: impl FnMut(&[u8]) -> Result<(), ReadError>,
    ) -> Result<Replies, ReadError> {
        let seq = self.next_seq();
        let mut w = Writer::new();
        let start = w.begin_message(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
        );
        attrs(&mut w).map_err(|_| ReadError::Kernel {
            stage: "encoding a request",
            errno: Errno::E2BIG,
        })?;
        w.end_message(start);
        self.socket
            .send(w.bytes(), 0)
            .map_err(|source| ReadError::Io {
                stage: "sending a request",
                source,
            })?;
        let mut replies = Replies::default();
        // One receive buffer for the whole dump, each datagram copied out
        // at its own length: a dump of 44k rules is over a thousand
        // datagrams of a few tens of KiB, and keeping each in a buffer of
        // `DATAGRAM` bytes held over a GiB of address space (measured with
        // heaptrack at 100k pods / 10k policies, every counter read).
        let mut buffer = Vec::with_capacity(DATAGRAM);
        loop {
            buffer.clear();
            let len = self
                .socket
                .recv(&mut buffer, libc_trunc())
                .map_err(|source| ReadError::Io {
                    stage: "receiving a dump",
                    source,
                })?;
            if len > buffer.len() {
                return Err(ReadError::Io {
                    stage: "receiving a dump",
                    source: io::Error::from(io::ErrorKind::InvalidData),
                });
            }
            let mut done = false;
            for message in messages(&buffer) {
                let message = message
                    .map_err(|e| ReadError::Decode(crate::error::DecodeError::wire("dump")(e)))?;
                if message.seq != seq {
                    continue;
                }
                replies.interrupted |= message.flags & NLM_F_DUMP_INTR != 0;
                match message.kind {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let error = parse_error(message.flags, message.payload).map_err(|e| {
                            ReadError::Decode(crate::error::DecodeError::wire("error reply")(e))
                        })?;
                        if let Some(errno) = error.errno {
                            return Err(ReadError::Kernel {
                                stage: "a dump request",
                                errno,
                            });
                        }
                        done = true;
                    }
                    _ => {
                        if let Some(generation) = message.payload.get(2..4) {
                            replies
                                .generations
                                .insert(u16::from_be_bytes([generation[0], generation[1]]));
                        }
                    }
                }
            }
            sink(&buffer)?;
            if done {
                return Ok(replies);
            }
        }
    }

    fn read_once(&mut self) -> Result<Option<(Dump, bool)>, ReadError> {
        let mut generations: BTreeSet<u16> = BTreeSet::new();
        let mut interrupted = false;
        let mut collect = |replies: Replies| {
            generations.extend(&replies.generations);
            interrupted |= replies.interrupted;
            replies.datagrams
        };
        match self.request(NFPROTO_INET, msg::GETTABLE, 0, &[(t::NAME, TABLE_NAME)]) {
            Ok(replies) => {
                collect(replies);
            }
            Err(ReadError::Kernel {
                errno: Errno::ENOENT,
                ..
            }) => return Ok(None),
            Err(error) => return Err(error),
        }
        let filter = [(crate::uapi::chain::TABLE, TABLE_NAME)];
        // Each request sees the generation current when it runs. A commit
        // between two of them can remove what the earlier one listed (the
        // table, or a set whose elements are asked for next): that read
        // saw two generations and is retried, not an error.
        let Some(chains) = vanished_is_none(self.dump(msg::GETCHAIN, &filter))? else {
            return Ok(Some((Dump::default(), false)));
        };
        let Some(rules) = vanished_is_none(self.dump(msg::GETRULE, &filter))? else {
            return Ok(Some((Dump::default(), false)));
        };
        let Some(sets) = vanished_is_none(self.dump(msg::GETSET, &filter))? else {
            return Ok(Some((Dump::default(), false)));
        };
        let mut dump = Dump {
            chains: collect(chains),
            rules: collect(rules),
            sets: collect(sets),
            elements: BTreeMap::new(),
        };
        let sets = decode::sets(&dump.sets, TABLE_NAME)?;
        // A dynamic map's elements are the packet path's, not ours.
        let ours = sets.iter().filter(|(_, set)| set.dynamic.is_none());
        for (name, _) in ours {
            let replies = vanished_is_none(self.dump(
                msg::GETSETELEM,
                &[(elem::LIST_TABLE, TABLE_NAME), (elem::LIST_SET, name)],
            ))?;
            let Some(replies) = replies else {
                return Ok(Some((dump, false)));
            };
            dump.elements.insert(name.clone(), collect(replies));
        }
        let consistent = !interrupted && generations.len() <= 1;
        Ok(Some((dump, consistent)))
    }
}

/// `None` for a request whose object is gone (`ENOENT`): removed by a
/// commit since an earlier request of the same read named it.
fn vanished_is_none(replies: Result<Replies, ReadError>) -> Result<Option<Replies>, ReadError> {
    match replies {
        Ok(replies) => Ok(Some(replies)),
        Err(ReadError::Kernel {
            errno: Errno::ENOENT,
            ..
        }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replies to one request.
#[derive(Default)]
struct Replies {
    datagrams: Vec<Vec<u8>>,
    generations: BTreeSet<u16>,
    interrupted: bool,
}

fn libc_dontwait() -> i32 {
    nix::sys::socket::MsgFlags::MSG_DONTWAIT.bits()
}

fn libc_trunc() -> i32 {
    nix::sys::socket::MsgFlags::MSG_TRUNC.bits()
}

/// Parses `struct nlmsgerr` and its extended-ack TLVs (an ack has no errno).
fn parse_error(flags: u16, payload: &[u8]) -> Result<KernelError, crate::nla::WireError> {
    use crate::nla::WireError;
    let truncated = |need| WireError::Truncated {
        what: "nlmsgerr",
        need,
        have: payload.len(),
    };
    let code = payload.get(0..4).ok_or(truncated(4))?;
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    let header = payload
        .get(4..4 + NLMSG_HDRLEN)
        .ok_or(truncated(4 + NLMSG_HDRLEN))?;
    let original_len = usize::try_from(u32::from_ne_bytes([
        header[0], header[1], header[2], header[3],
    ]))
    .unwrap_or(usize::MAX);
    let seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        original_len.max(NLMSG_HDRLEN)
    };
    let mut message = None;
    let mut offset = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let tlvs = payload.get(crate::nla::align(4 + echoed)..).unwrap_or(&[]);
        for attr in Attrs::new(tlvs) {
            let attr = attr?;
            match attr.kind {
                NLMSGERR_ATTR_MSG => message = Some(attr.string("extended ack message")?),
                NLMSGERR_ATTR_OFFS => {
                    let bytes: [u8; 4] = attr
                        .value
                        .try_into()
                        .map_err(|_| WireError::Invalid { what: "ack offset" })?;
                    offset = usize::try_from(u32::from_ne_bytes(bytes)).ok();
                }
                _ => {}
            }
        }
    }
    let errno = (code != 0).then(|| Errno::from_raw(code.saturating_neg()));
    Ok(KernelError {
        seq,
        errno,
        message,
        offset,
    })
}

impl Dataplane for KernelDataplane {
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError> {
        if diff.is_empty() {
            return Ok(Applied {
                messages: 0,
                bytes: 0,
            });
        }
        // Taken out while encoding and committing: a failure leaves it
        // unknown, to be read again.
        let mut sets = self.set_shapes()?;
        let mut writer = BatchWriter::new(TABLE_NAME, self.seq);
        writer.push_diff(diff, &sets)?;
        let batch = writer.finish();
        self.seq = batch.end_seq.wrapping_add(1);
        self.commit(&batch, diff)?;
        // The kernel accepted the diff, so its set changes apply.
        for change in &diff.changes {
            match change {
                Change::AddSet(set) => {
                    sets.insert(set.name.clone(), set.shape());
                }
                Change::DeleteSet(name) => {
                    sets.remove(name);
                }
                _ => {}
            }
        }
        self.committed_sets = Some(sets);
        Ok(Applied {
            messages: batch.message_count(),
            bytes: batch.byte_len(),
        })
    }

    fn read(&mut self) -> Result<Option<Ruleset>, ReadError> {
        for _ in 0..READ_ATTEMPTS {
            let Some((dump, consistent)) = self.read_once()? else {
                self.committed_sets = Some(BTreeMap::new());
                return Ok(None);
            };
            if consistent {
                let ruleset = match decode::ruleset(&dump, TABLE_NAME) {
                    Ok(ruleset) => ruleset,
                    Err(DecodeError::Inconsistent { .. }) => continue,
                    Err(error) => return Err(error.into()),
                };
                self.committed_sets = Some(
                    ruleset
                        .sets
                        .iter()
                        .map(|(name, set)| (name.clone(), set.shape()))
                        .collect(),
                );
                return Ok(Some(ruleset));
            }
        }
        Err(ReadError::Unstable {
            attempts: READ_ATTEMPTS,
        })
    }

    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError> {
        // Positions within a chain are only meaningful if the whole dump saw
        // one ruleset generation, as for `read`.
        for _ in 0..READ_ATTEMPTS {
            let mut decoder = counter::CounterDecoder::default();
            let replies = self.request_streaming(
                NFPROTO_INET,
                msg::GETRULE,
                NLM_F_DUMP,
                |w| w.put_str(crate::uapi::rule::TABLE, TABLE_NAME),
                |datagram| Ok(decoder.feed(datagram, TABLE_NAME)?),
            )?;
            if replies.interrupted || replies.generations.len() > 1 {
                continue;
            }
            return Ok(decoder.finish());
        }
        Err(ReadError::Unstable {
            attempts: READ_ATTEMPTS,
        })
    }

    fn flush_conntrack_by_mark(&mut self, mark: u32, mask: u32) -> Result<(), ConntrackError> {
        let seq = self.next_seq();
        let request = conntrack::flush_by_mark(seq, mark, mask);
        self.socket
            .send(&request, 0)
            .map_err(|source| ConntrackError::Io {
                stage: "sending the conntrack flush",
                source,
            })?;
        loop {
            let mut buffer = Vec::with_capacity(DATAGRAM);
            let len = self
                .socket
                .recv(&mut buffer, libc_trunc())
                .map_err(|source| ConntrackError::Io {
                    stage: "receiving the conntrack flush's ack",
                    source,
                })?;
            if len > buffer.len() {
                return Err(ConntrackError::Io {
                    stage: "receiving the conntrack flush's ack",
                    source: io::Error::from(io::ErrorKind::InvalidData),
                });
            }
            for message in messages(&buffer) {
                let message = message.map_err(ConntrackError::Protocol)?;
                if message.seq != seq || message.kind != NLMSG_ERROR {
                    continue;
                }
                let error = parse_error(message.flags, message.payload)
                    .map_err(ConntrackError::Protocol)?;
                return match error.errno {
                    Some(errno) => Err(ConntrackError::Kernel { errno }),
                    None => Ok(()),
                };
            }
        }
    }

    fn delete_table(&mut self) -> Result<(), ApplyError> {
        let mut writer = BatchWriter::new(TABLE_NAME, self.seq);
        writer.push_delete_table()?;
        let batch = writer.finish();
        self.seq = batch.end_seq.wrapping_add(1);
        match self.commit(&batch, &Diff::default()) {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        self.committed_sets = Some(BTreeMap::new());
        Ok(())
    }
}

/// The throwaway ruleset of [`KernelDataplane::probe_features`].
fn probe_ruleset() -> Ruleset {
    use std::net::Ipv4Addr;
    let rule = |comment: &str, matches: Vec<Match>, action: Action| Rule {
        matches,
        counter: true,
        action,
        comment: Some(comment.to_owned()),
    };
    let base = Chain {
        name: "base".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Forward,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        comment: Some("probe".to_owned()),
        rules: vec![
            rule(
                "ct",
                vec![Match::CtState(
                    [CtState::Established, CtState::Related].into(),
                )],
                Action::Verdict(Verdict::Accept),
            ),
            rule(
                "fib",
                vec![Match::SaddrIsLocal],
                Action::Verdict(Verdict::Accept),
            ),
            rule(
                "lookup",
                vec![Match::Lookup {
                    key: vec![Field::Ipv4Daddr, Field::L4Proto, Field::TransportDport].into(),
                    set: "pipapo".to_owned(),
                    negated: false,
                }],
                Action::Verdict(Verdict::Accept),
            ),
            rule(
                "vmap",
                vec![],
                Action::VerdictMap {
                    key: vec![Field::Ipv4Daddr],
                    map: "vmap".to_owned(),
                },
            ),
            rule("reject", vec![], Action::Verdict(Verdict::Reject)),
        ],
    };
    let target = Chain {
        name: "target".to_owned(),
        base: None,
        comment: None,
        rules: Vec::new(),
    };
    let address = Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1));
    let pipapo = Set {
        name: "pipapo".to_owned(),
        key: vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
        interval: true,
        is_verdict_map: false,
        dynamic: None,
        comment: None,
        elements: [Element::range(
            vec![address, Value::Proto(6), Value::Port(80)],
            vec![address, Value::Proto(6), Value::Port(90)],
        )]
        .into(),
    };
    let vmap = Set {
        name: "vmap".to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: true,
        dynamic: None,
        comment: None,
        elements: [Element::mapping(
            vec![address],
            Verdict::Jump("target".to_owned()),
        )]
        .into(),
    };
    Ruleset {
        chains: [base, target]
            .into_iter()
            .map(|chain| (chain.name.clone(), chain))
            .collect(),
        sets: [pipapo, vmap]
            .into_iter()
            .map(|set| (set.name.clone(), set))
            .collect(),
    }
}
