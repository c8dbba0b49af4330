//! The conntrack flush by mark: one ctnetlink `IPCTNL_MSG_CT_DELETE`
//! without a tuple, carrying `CTA_MARK` and `CTA_MARK_MASK`.
//!
//! Without a tuple the kernel takes a delete for a flush
//! (`ctnetlink_flush_conntrack`), and with `CTA_MARK` it filters the flush
//! itself, entry by entry, `(mark & mask) == value`, in the socket's
//! network namespace (Linux ≥ 4.12): no dump reaches user space, whatever
//! the table's size. `nfgen_family` `AF_UNSPEC` with version 0 covers IPv4
//! and IPv6 entries alike. The kernel answers with a bare ack: it does not
//! say how many entries went.

use crate::nla::Writer;
use crate::uapi::{ctnetlink, NFNL_SUBSYS_CTNETLINK, NFPROTO_UNSPEC, NLM_F_ACK, NLM_F_REQUEST};

/// The flush of every entry whose mark, masked with `mask`, is `mark`.
pub(crate) fn flush_by_mark(seq: u32, mark: u32, mask: u32) -> Vec<u8> {
    let mut w = Writer::new();
    let start = w.begin_message(
        (NFNL_SUBSYS_CTNETLINK << 8) | ctnetlink::DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NFPROTO_UNSPEC,
        0,
    );
    for (kind, value) in [(ctnetlink::MARK, mark), (ctnetlink::MARK_MASK, mask)] {
        w.put_u32(kind, value)
            .expect("a 4-byte attribute fits a netlink attribute");
    }
    w.end_message(start);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `conntrack -D --mark 0x00ff0000/0x00ff0000` would send if it
    /// let the kernel filter (libnetfilter_conntrack's flush filter):
    /// nlmsghdr, nfgenmsg, then CTA_MARK and CTA_MARK_MASK big-endian.
    #[test]
    fn the_flush_carries_the_mark_and_its_mask_and_no_tuple() {
        let bytes = flush_by_mark(7, 0x00ff_0000, 0x00ff_0000);
        let mut want = Vec::new();
        want.extend_from_slice(&36u32.to_ne_bytes()); // length
        want.extend_from_slice(&0x0102u16.to_ne_bytes()); // CTNETLINK << 8 | DELETE
        want.extend_from_slice(&0x0005u16.to_ne_bytes()); // REQUEST | ACK
        want.extend_from_slice(&7u32.to_ne_bytes()); // seq
        want.extend_from_slice(&0u32.to_ne_bytes()); // port id
        want.extend_from_slice(&[0, 0, 0, 0]); // AF_UNSPEC, version 0, res_id 0
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes()); // CTA_MARK
        want.extend_from_slice(&[0x00, 0xff, 0x00, 0x00]);
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&21u16.to_ne_bytes()); // CTA_MARK_MASK
        want.extend_from_slice(&[0x00, 0xff, 0x00, 0x00]);
        assert_eq!(bytes, want);
    }
}
