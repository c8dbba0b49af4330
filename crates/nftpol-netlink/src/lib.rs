//! nftpol-netlink: IR and diff ↔ nf_tables messages; one atomic batch;
//! read-back; the [`Dataplane`] trait with a kernel and a fake implementation.
//!
//! In: a [`Diff`] (from `nftpol_ir::diff`) to apply, or a request to read
//! table `inet nftpol` back. Out: the kernel's table changed all-or-nothing,
//! or the table as a [`Ruleset`] that compares equal to the one applied.
//! This crate knows nothing of Kubernetes, chooses no hooks, priorities or
//! names (that is `nftpol-ruleset`), and never touches any other table.
//!
//! Design choices owned here:
//! - **One diff, one batch, one `sendmsg`** (modules `batch`, `kernel`): the
//!   kernel applies a batch atomically, so a rejected apply leaves the
//!   ruleset unchanged; element lists are split per 60 KB message because
//!   every netlink attribute is at most 64 KiB.
//! - **Bytecode identical to nft 1.0.6** for the text `render` prints
//!   (modules `rule`, `set`), so `nft list` and our read-back agree; this is
//!   checked against the real `nft` in the tests. One exception nft 1.0.6
//!   cannot write at all: a dynamic map update with a key over 16 bytes
//!   (the verdict log's 5-tuple records), which nft still lists as rendered.
//! - **Dynamic maps** (`flags dynamic,timeout`): the packet path fills them
//!   (`dynset`), read-back leaves their elements out (they are the kernel's,
//!   not a desired state), and [`KernelDataplane::element_data`] reads one
//!   element by key (`NFT_MSG_GETSETELEM` for that key, not a dump).
//! - **Own TLV codec** (modules `nla`, `expr`, `uapi`): `netlink-packet-netfilter`
//!   0.4 lacks ct, counter, fib, reject, byteorder, set descriptions and
//!   userdata, and builds a typed tree per element; we write straight into
//!   the batch buffer (100k elements ≈ 4 MB) with the uapi constants.
//! - **Errors name IR objects**: every message remembers its change, every
//!   element its byte range, so the kernel's sequence number and extended-ack
//!   offset map back to the chain, set, rule or element.
//! - **NFLOG** (module `nflog`): the verdict logs the ruleset's `log group`
//!   rules send, read off a socket bound to the group, with the same codec.
//! - **Conntrack flush by mark** (module `conntrack`): the one ctnetlink
//!   message, on the same `NETLINK_NETFILTER` socket, filtered in the kernel.
//! - **No table `owner` flag**: an owned table dies with its socket, and an
//!   agent restart would fail open.
//! - **Element adds use `NLM_F_EXCL`** so an existing element is an error, as
//!   in the fake: the caller diffs against what the kernel really holds.
//!
//! [`Diff`]: nftpol_ir::diff::Diff
//! [`Ruleset`]: nftpol_ir::Ruleset

pub mod batch;
mod conntrack;
mod counter;
mod decode;
mod error;
mod expr;
mod fake;
mod kernel;
mod key;
mod marks;
pub mod nflog;
mod nla;
mod rule;
mod set;
pub mod uapi;
mod verify;

pub use counter::RuleCounter;
pub use decode::Dump;
pub use error::{
    ApplyError, ConntrackError, DecodeError, ElementText, FeatureError, Object, ReadError,
};
pub use fake::FakeDataplane;
pub use kernel::{KernelDataplane, OpenError};
pub use marks::{MarkAccess, MarkUse};
pub use verify::{verify, Difference};

use nftpol_ir::diff::Diff;
use nftpol_ir::{Ruleset, TABLE_NAME};

/// Decodes a complete read of table `inet nftpol` (the replies to
/// `GETCHAIN`, `GETRULE`, `GETSET` and each set's `GETSETELEM`) into IR:
/// the decoding step of [`KernelDataplane`]'s [`Dataplane::read`], which
/// retries a read this finds [`DecodeError::Inconsistent`].
///
/// The datagrams are untrusted bytes: anything malformed, or anything
/// nftpol does not write (an unknown expression, set flag or chain type),
/// is a [`DecodeError`] naming the object, never a panic. Objects of other
/// tables are skipped; elements of a set missing from `dump.elements` read
/// as an empty set.
pub fn decode_dump(dump: &Dump) -> Result<Ruleset, DecodeError> {
    decode::ruleset(dump, TABLE_NAME)
}

/// What a successful apply sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Messages between `BATCH_BEGIN` and `BATCH_END`.
    pub messages: usize,
    /// Bytes of the whole batch, framing included.
    pub bytes: usize,
}

/// Where table `inet nftpol` lives: the kernel, or an in-memory fake.
pub trait Dataplane {
    /// Applies the whole diff as ONE nfnetlink batch transaction
    /// (`BATCH_BEGIN` … `BATCH_END`), all or nothing.
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError>;
    /// Reads table `inet nftpol` back (`None` when absent): chains, rules,
    /// sets, elements, as IR.
    fn read(&mut self) -> Result<Option<Ruleset>, ReadError>;
    /// Reads the packet and byte counts of every rule of table `inet nftpol`
    /// that carries a counter, chain by chain in evaluation order (empty
    /// when the table is absent). Unlike [`Dataplane::read`], which ignores
    /// counter values so a read-back compares equal to what was applied.
    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError>;
    /// Deletes table `inet nftpol` if present (one batch).
    fn delete_table(&mut self) -> Result<(), ApplyError>;
    /// Deletes every conntrack entry of the network namespace whose
    /// connection mark, masked with `mask`, equals `mark`: one ctnetlink
    /// flush the kernel filters (Linux ≥ 4.12), no dump. The kernel does not
    /// report how many entries it removed.
    fn flush_conntrack_by_mark(&mut self, mark: u32, mask: u32) -> Result<(), ConntrackError>;
}
