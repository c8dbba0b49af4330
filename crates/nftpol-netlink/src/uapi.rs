//! Kernel ABI numbers, copied from the uapi headers of Linux 6.x:
//! `linux/netlink.h`, `linux/netfilter/nfnetlink.h`,
//! `linux/netfilter/nfnetlink_conntrack.h`, `linux/netfilter/nf_tables.h`, `linux/netfilter.h`, and libnftnl's
//! `udata.h` (the userdata TLVs `nft` writes for comments and key byte order).
//!
//! This is the one place these numbers live; `netlink-packet-netfilter` 0.4
//! has no typed form for ct, counter, fib, reject, byteorder, set
//! descriptions or userdata, so the whole codec uses these constants.

/// `NLMSG_ERROR`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a change.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`.
pub const NLM_F_APPEND: u16 = 0x800;
/// `NLM_F_ACK_TLVS` on an error message: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended-ack text.
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLMSGERR_ATTR_OFFS`: byte offset of the offending attribute in the message.
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Mask of an attribute's type without the nested/byte-order flags.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NFNL_SUBSYS_CTNETLINK`: conntrack entries.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `NFNL_SUBSYS_NFTABLES`.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 16;
/// `NFNL_MSG_BATCH_END`.
pub const NFNL_MSG_BATCH_END: u16 = 17;
/// `NFNLGRP_NFTABLES`: the multicast group of ruleset changes.
pub const NFNLGRP_NFTABLES: u32 = 7;
/// `NFPROTO_UNSPEC`: every family (dumps).
pub const NFPROTO_UNSPEC: u8 = 0;
/// `NFPROTO_INET`.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;

/// `enum nf_tables_msg_types`.
pub mod msg {
    /// `NFT_MSG_NEWTABLE`.
    pub const NEWTABLE: u16 = 0;
    /// `NFT_MSG_GETTABLE`.
    pub const GETTABLE: u16 = 1;
    /// `NFT_MSG_DELTABLE`.
    pub const DELTABLE: u16 = 2;
    /// `NFT_MSG_NEWCHAIN`.
    pub const NEWCHAIN: u16 = 3;
    /// `NFT_MSG_GETCHAIN`.
    pub const GETCHAIN: u16 = 4;
    /// `NFT_MSG_DELCHAIN`.
    pub const DELCHAIN: u16 = 5;
    /// `NFT_MSG_NEWRULE`.
    pub const NEWRULE: u16 = 6;
    /// `NFT_MSG_GETRULE`.
    pub const GETRULE: u16 = 7;
    /// `NFT_MSG_DELRULE` (with only a chain: flush the chain).
    pub const DELRULE: u16 = 8;
    /// `NFT_MSG_NEWSET`.
    pub const NEWSET: u16 = 9;
    /// `NFT_MSG_GETSET`.
    pub const GETSET: u16 = 10;
    /// `NFT_MSG_DELSET`.
    pub const DELSET: u16 = 11;
    /// `NFT_MSG_NEWSETELEM`.
    pub const NEWSETELEM: u16 = 12;
    /// `NFT_MSG_GETSETELEM`.
    pub const GETSETELEM: u16 = 13;
    /// `NFT_MSG_DELSETELEM`.
    pub const DELSETELEM: u16 = 14;
    /// `NFT_MSG_NEWGEN`: one per committed transaction.
    pub const NEWGEN: u16 = 15;
}

/// `NFTA_TABLE_*`.
pub mod table {
    /// `NFTA_TABLE_NAME`.
    pub const NAME: u16 = 1;
    /// `NFTA_TABLE_FLAGS` (never `NFT_TABLE_F_OWNER`: an owned table dies with its socket).
    pub const FLAGS: u16 = 2;
}

/// `NFTA_CHAIN_*` and `NFTA_HOOK_*`.
pub mod chain {
    /// `NFTA_CHAIN_TABLE`.
    pub const TABLE: u16 = 1;
    /// `NFTA_CHAIN_NAME`.
    pub const NAME: u16 = 3;
    /// `NFTA_CHAIN_HOOK`.
    pub const HOOK: u16 = 4;
    /// `NFTA_CHAIN_POLICY`.
    pub const POLICY: u16 = 5;
    /// `NFTA_CHAIN_TYPE`.
    pub const TYPE: u16 = 7;
    /// `NFTA_CHAIN_USERDATA`.
    pub const USERDATA: u16 = 12;
    /// `NFTA_HOOK_HOOKNUM`.
    pub const HOOK_HOOKNUM: u16 = 1;
    /// `NFTA_HOOK_PRIORITY`.
    pub const HOOK_PRIORITY: u16 = 2;
}

/// `NFTA_RULE_*`.
pub mod rule {
    /// `NFTA_RULE_TABLE`.
    pub const TABLE: u16 = 1;
    /// `NFTA_RULE_CHAIN`.
    pub const CHAIN: u16 = 2;
    /// `NFTA_RULE_EXPRESSIONS`.
    pub const EXPRESSIONS: u16 = 4;
    /// `NFTA_RULE_USERDATA`.
    pub const USERDATA: u16 = 7;
}

/// `NFTA_SET_*`, `NFT_SET_*` flags and data types.
pub mod set {
    /// `NFTA_SET_TABLE`.
    pub const TABLE: u16 = 1;
    /// `NFTA_SET_NAME`.
    pub const NAME: u16 = 2;
    /// `NFTA_SET_FLAGS`.
    pub const FLAGS: u16 = 3;
    /// `NFTA_SET_KEY_TYPE`.
    pub const KEY_TYPE: u16 = 4;
    /// `NFTA_SET_KEY_LEN`.
    pub const KEY_LEN: u16 = 5;
    /// `NFTA_SET_DATA_TYPE`.
    pub const DATA_TYPE: u16 = 6;
    /// `NFTA_SET_DATA_LEN`.
    pub const DATA_LEN: u16 = 7;
    /// `NFTA_SET_ID`: the set's id within the transaction (required by `NEWSET`).
    pub const ID: u16 = 10;
    /// `NFTA_SET_DESC`.
    pub const DESC: u16 = 9;
    /// `NFTA_SET_USERDATA`.
    pub const USERDATA: u16 = 13;
    /// `NFTA_SET_DESC_CONCAT`.
    pub const DESC_CONCAT: u16 = 2;
    /// `NFTA_SET_FIELD_LEN`.
    pub const FIELD_LEN: u16 = 1;
    /// `NFT_SET_INTERVAL`.
    pub const F_INTERVAL: u32 = 0x4;
    /// `NFT_SET_MAP`.
    pub const F_MAP: u32 = 0x8;
    /// `NFT_SET_CONCAT`.
    pub const F_CONCAT: u32 = 0x80;
    /// `NFT_SET_TIMEOUT`: elements may carry a timeout.
    pub const F_TIMEOUT: u32 = 0x10;
    /// `NFT_SET_EVAL`: the packet path adds elements (`flags dynamic`).
    pub const F_EVAL: u32 = 0x20;
    /// `NFTA_SET_DESC_SIZE` (big-endian `u32`).
    pub const DESC_SIZE: u16 = 1;
    /// `NFT_DATA_VERDICT`.
    pub const DATA_VERDICT: u32 = 0xffff_ff00;
}

/// `NFTA_SET_ELEM_LIST_*`, `NFTA_SET_ELEM_*`.
pub mod elem {
    /// `NFTA_SET_ELEM_LIST_TABLE`.
    pub const LIST_TABLE: u16 = 1;
    /// `NFTA_SET_ELEM_LIST_SET`.
    pub const LIST_SET: u16 = 2;
    /// `NFTA_SET_ELEM_LIST_ELEMENTS`.
    pub const LIST_ELEMENTS: u16 = 3;
    /// `NFTA_SET_ELEM_KEY`.
    pub const KEY: u16 = 1;
    /// `NFTA_SET_ELEM_DATA`.
    pub const DATA: u16 = 2;
    /// `NFTA_SET_ELEM_FLAGS`.
    pub const FLAGS: u16 = 3;
    /// `NFTA_SET_ELEM_USERDATA`.
    pub const USERDATA: u16 = 6;
    /// `NFTA_SET_ELEM_KEY_END`.
    pub const KEY_END: u16 = 10;
    /// `NFT_SET_ELEM_INTERVAL_END`.
    pub const F_INTERVAL_END: u32 = 0x1;
}

/// `NFTA_LIST_ELEM`, `NFTA_EXPR_*`, `NFTA_DATA_*`, `NFTA_VERDICT_*`.
pub mod list {
    /// `NFTA_LIST_ELEM`.
    pub const ELEM: u16 = 1;
    /// `NFTA_EXPR_NAME`.
    pub const EXPR_NAME: u16 = 1;
    /// `NFTA_EXPR_DATA`.
    pub const EXPR_DATA: u16 = 2;
    /// `NFTA_DATA_VALUE`.
    pub const DATA_VALUE: u16 = 1;
    /// `NFTA_DATA_VERDICT`.
    pub const DATA_VERDICT: u16 = 2;
    /// `NFTA_VERDICT_CODE`.
    pub const VERDICT_CODE: u16 = 1;
    /// `NFTA_VERDICT_CHAIN`.
    pub const VERDICT_CHAIN: u16 = 2;
}

/// Verdict codes (`NF_DROP`, `NF_ACCEPT`, `enum nft_verdicts`).
pub mod verdict {
    /// `NF_DROP`.
    pub const DROP: i32 = 0;
    /// `NF_ACCEPT`.
    pub const ACCEPT: i32 = 1;
    /// `NFT_JUMP`.
    pub const JUMP: i32 = -3;
    /// `NFT_GOTO`.
    pub const GOTO: i32 = -4;
    /// `NFT_RETURN`.
    pub const RETURN: i32 = -5;
}

/// Netfilter hook numbers of the inet family (`enum nf_inet_hooks`).
pub mod hook {
    /// `NF_INET_PRE_ROUTING`.
    pub const PREROUTING: u32 = 0;
    /// `NF_INET_LOCAL_IN`.
    pub const INPUT: u32 = 1;
    /// `NF_INET_FORWARD`.
    pub const FORWARD: u32 = 2;
    /// `NF_INET_LOCAL_OUT`.
    pub const OUTPUT: u32 = 3;
    /// `NF_INET_POST_ROUTING`.
    pub const POSTROUTING: u32 = 4;
}

/// Expression attributes and enums (`NFTA_META_*`, `NFTA_CMP_*`, …).
pub mod expr {
    /// `NFT_REG_VERDICT`.
    pub const REG_VERDICT: u32 = 0;
    /// `NFT_REG_1`: the first 128-bit register.
    pub const REG_1: u32 = 1;
    /// `NFT_REG32_00`: the first 32-bit register (aliases `NFT_REG_1`).
    pub const REG32_00: u32 = 8;

    /// `NFTA_META_DREG`.
    pub const META_DREG: u16 = 1;
    /// `NFTA_META_KEY`.
    pub const META_KEY: u16 = 2;
    /// `NFT_META_NFPROTO`.
    pub const META_NFPROTO: u32 = 15;
    /// `NFT_META_L4PROTO`.
    pub const META_L4PROTO: u32 = 16;

    /// `NFTA_CMP_SREG`.
    pub const CMP_SREG: u16 = 1;
    /// `NFTA_CMP_OP`.
    pub const CMP_OP: u16 = 2;
    /// `NFTA_CMP_DATA`.
    pub const CMP_DATA: u16 = 3;
    /// `NFT_CMP_EQ`.
    pub const CMP_EQ: u32 = 0;
    /// `NFT_CMP_NEQ`.
    pub const CMP_NEQ: u32 = 1;
    /// `NFT_CMP_LTE`.
    pub const CMP_LTE: u32 = 3;
    /// `NFT_CMP_GTE`.
    pub const CMP_GTE: u32 = 5;

    /// `NFTA_PAYLOAD_DREG`.
    pub const PAYLOAD_DREG: u16 = 1;
    /// `NFTA_PAYLOAD_BASE`.
    pub const PAYLOAD_BASE: u16 = 2;
    /// `NFTA_PAYLOAD_OFFSET`.
    pub const PAYLOAD_OFFSET: u16 = 3;
    /// `NFTA_PAYLOAD_LEN`.
    pub const PAYLOAD_LEN: u16 = 4;
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    pub const BASE_NETWORK: u32 = 1;
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    pub const BASE_TRANSPORT: u32 = 2;

    /// `NFTA_LOOKUP_SET`.
    pub const LOOKUP_SET: u16 = 1;
    /// `NFTA_LOOKUP_SREG`.
    pub const LOOKUP_SREG: u16 = 2;
    /// `NFTA_LOOKUP_DREG`.
    pub const LOOKUP_DREG: u16 = 3;
    /// `NFTA_LOOKUP_FLAGS`.
    pub const LOOKUP_FLAGS: u16 = 5;
    /// `NFT_LOOKUP_F_INV`.
    pub const LOOKUP_F_INV: u32 = 1;

    /// `NFTA_BITWISE_SREG`.
    pub const BITWISE_SREG: u16 = 1;
    /// `NFTA_BITWISE_DREG`.
    pub const BITWISE_DREG: u16 = 2;
    /// `NFTA_BITWISE_LEN`.
    pub const BITWISE_LEN: u16 = 3;
    /// `NFTA_BITWISE_MASK`.
    pub const BITWISE_MASK: u16 = 4;
    /// `NFTA_BITWISE_XOR`.
    pub const BITWISE_XOR: u16 = 5;

    /// `NFTA_BYTEORDER_SREG`.
    pub const BYTEORDER_SREG: u16 = 1;
    /// `NFTA_BYTEORDER_DREG`.
    pub const BYTEORDER_DREG: u16 = 2;
    /// `NFTA_BYTEORDER_OP`.
    pub const BYTEORDER_OP: u16 = 3;
    /// `NFTA_BYTEORDER_LEN`.
    pub const BYTEORDER_LEN: u16 = 4;
    /// `NFTA_BYTEORDER_SIZE`.
    pub const BYTEORDER_SIZE: u16 = 5;
    /// `NFT_BYTEORDER_HTON`.
    pub const BYTEORDER_HTON: u32 = 1;

    /// `NFTA_IMMEDIATE_DREG`.
    pub const IMMEDIATE_DREG: u16 = 1;
    /// `NFTA_IMMEDIATE_DATA`.
    pub const IMMEDIATE_DATA: u16 = 2;

    /// `NFTA_COUNTER_BYTES` (big-endian `u64`).
    pub const COUNTER_BYTES: u16 = 1;
    /// `NFTA_COUNTER_PACKETS` (big-endian `u64`).
    pub const COUNTER_PACKETS: u16 = 2;

    /// `NFTA_REJECT_TYPE`.
    pub const REJECT_TYPE: u16 = 1;
    /// `NFTA_REJECT_ICMP_CODE`.
    pub const REJECT_ICMP_CODE: u16 = 2;
    /// `NFT_REJECT_ICMPX_UNREACH`.
    pub const REJECT_ICMPX_UNREACH: u32 = 2;
    /// `NFT_REJECT_ICMPX_ADMIN_PROHIBITED`.
    pub const REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;

    /// `NFTA_CT_DREG`.
    pub const CT_DREG: u16 = 1;
    /// `NFTA_CT_KEY`.
    pub const CT_KEY: u16 = 2;
    /// `NFT_CT_STATE`.
    pub const CT_STATE: u32 = 0;
    /// `NF_CT_STATE_INVALID_BIT`.
    pub const CT_STATE_INVALID: u32 = 1;
    /// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED)`.
    pub const CT_STATE_ESTABLISHED: u32 = 2;
    /// `NF_CT_STATE_BIT(IP_CT_RELATED)`.
    pub const CT_STATE_RELATED: u32 = 4;
    /// `NF_CT_STATE_BIT(IP_CT_NEW)`.
    pub const CT_STATE_NEW: u32 = 8;
    /// `NF_CT_STATE_UNTRACKED_BIT`.
    pub const CT_STATE_UNTRACKED: u32 = 64;
    /// `NFTA_CT_DIRECTION` (u8).
    pub const CT_DIRECTION_ATTR: u16 = 3;
    /// `NFTA_CT_SREG`.
    pub const CT_SREG: u16 = 4;
    /// `NFT_CT_DIRECTION`.
    pub const CT_DIRECTION: u32 = 1;
    /// `NFT_CT_MARK`.
    pub const CT_MARK: u32 = 3;
    /// `NFT_CT_SRC_IP`.
    pub const CT_SRC_IP: u32 = 19;
    /// `NFT_CT_SRC_IP6`.
    pub const CT_SRC_IP6: u32 = 21;
    /// `NFT_CT_STATUS`.
    pub const CT_STATUS: u32 = 2;
    /// `IPS_DST_NAT`: the connection's destination was translated.
    pub const CT_STATUS_DST_NAT: u32 = 0x20;
    /// `NFT_CT_PROTO_DST`.
    pub const CT_PROTO_DST: u32 = 12;
    /// `NFT_CT_DST_IP`.
    pub const CT_DST_IP: u32 = 20;
    /// `NFT_CT_DST_IP6`.
    pub const CT_DST_IP6: u32 = 22;
    /// `NFTA_DYNSET_SET_NAME`.
    pub const DYNSET_SET_NAME: u16 = 1;
    /// `NFTA_DYNSET_OP`.
    pub const DYNSET_OP: u16 = 3;
    /// `NFTA_DYNSET_SREG_KEY`.
    pub const DYNSET_SREG_KEY: u16 = 4;
    /// `NFTA_DYNSET_SREG_DATA`.
    pub const DYNSET_SREG_DATA: u16 = 5;
    /// `NFTA_DYNSET_TIMEOUT` (big-endian `u64`, milliseconds).
    pub const DYNSET_TIMEOUT: u16 = 6;
    /// `NFTA_DYNSET_FLAGS`.
    pub const DYNSET_FLAGS: u16 = 9;
    /// `NFT_DYNSET_OP_UPDATE`: add, or refresh the timeout of, the element.
    pub const DYNSET_OP_UPDATE: u32 = 1;
    /// `IP_CT_DIR_ORIGINAL`.
    pub const CT_DIR_ORIGINAL: u8 = 0;
    /// `IP_CT_DIR_REPLY`.
    pub const CT_DIR_REPLY: u8 = 1;

    /// `NFTA_LIMIT_RATE` (big-endian `u64`).
    pub const LIMIT_RATE: u16 = 1;
    /// `NFTA_LIMIT_UNIT` (big-endian `u64`, seconds).
    pub const LIMIT_UNIT: u16 = 2;
    /// `NFTA_LIMIT_BURST`.
    pub const LIMIT_BURST: u16 = 3;
    /// `NFTA_LIMIT_TYPE`.
    pub const LIMIT_TYPE: u16 = 4;
    /// `NFTA_LIMIT_FLAGS`.
    pub const LIMIT_FLAGS: u16 = 5;
    /// `NFT_LIMIT_PKTS`.
    pub const LIMIT_PKTS: u32 = 0;

    /// `NFTA_LOG_GROUP` (big-endian `u16`).
    pub const LOG_GROUP: u16 = 1;
    /// `NFTA_LOG_PREFIX`.
    pub const LOG_PREFIX: u16 = 2;
    /// `NFTA_LOG_SNAPLEN`.
    pub const LOG_SNAPLEN: u16 = 3;
    /// `NFTA_LOG_QTHRESHOLD`.
    pub const LOG_QTHRESHOLD: u16 = 4;
    /// `NFTA_LOG_LEVEL`: present only for a kernel-log (not NFLOG) `log`.
    pub const LOG_LEVEL: u16 = 5;

    /// `NFTA_FIB_DREG`.
    pub const FIB_DREG: u16 = 1;
    /// `NFTA_FIB_RESULT`.
    pub const FIB_RESULT: u16 = 2;
    /// `NFTA_FIB_FLAGS`.
    pub const FIB_FLAGS: u16 = 3;
    /// `NFT_FIB_RESULT_ADDRTYPE`.
    pub const FIB_RESULT_ADDRTYPE: u32 = 3;
    /// `NFTA_FIB_F_SADDR`.
    pub const FIB_F_SADDR: u32 = 1;
    /// `NFTA_FIB_F_DADDR`.
    pub const FIB_F_DADDR: u32 = 2;
    /// `RTN_LOCAL`.
    pub const RTN_LOCAL: u32 = 2;
}

/// libnftnl userdata TLV types (`NFTNL_UDATA_*`), as `nft` 1.0.6 writes them.
pub mod udata {
    /// `NFTNL_UDATA_RULE_COMMENT`.
    pub const RULE_COMMENT: u8 = 0;
    /// `NFTNL_UDATA_CHAIN_COMMENT`.
    pub const CHAIN_COMMENT: u8 = 0;
    /// `NFTNL_UDATA_SET_KEYBYTEORDER`.
    pub const SET_KEYBYTEORDER: u8 = 0;
    /// `NFTNL_UDATA_SET_DATABYTEORDER`.
    pub const SET_DATABYTEORDER: u8 = 1;
    /// `NFTNL_UDATA_SET_DATA_INTERVAL`.
    pub const SET_DATA_INTERVAL: u8 = 6;
    /// `NFTNL_UDATA_SET_COMMENT`.
    pub const SET_COMMENT: u8 = 7;
    /// `NFTNL_UDATA_SET_ELEM_FLAGS`.
    pub const SET_ELEM_FLAGS: u8 = 1;
    /// `NFTNL_SET_ELEM_F_INTERVAL_OPEN`: a range running to the key's maximum.
    pub const SET_ELEM_F_INTERVAL_OPEN: u32 = 1;
    /// `BYTEORDER_BIG_ENDIAN` of nft's datatypes.
    pub const BYTEORDER_BIG_ENDIAN: u32 = 2;
    /// What nft 1.0.6 writes after the key byte order of a concatenated key
    /// (`NFTNL_UDATA_SET_KEY_TYPEOF`, 8 bytes), verbatim, so that `nft list`
    /// shows our sets exactly as sets it created itself.
    pub const CONCAT_KEY_TYPEOF: [u8; 10] = [3, 8, 0x00, 0x04, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x00];
}

/// nft datatype ids of key fields (`TYPE_IPADDR`, …); a concatenation packs
/// them 6 bits each, first field highest.
pub mod datatype {
    /// `TYPE_IPADDR` (`ipv4_addr`).
    pub const IPV4_ADDR: u32 = 7;
    /// `TYPE_IP6ADDR` (`ipv6_addr`).
    pub const IPV6_ADDR: u32 = 8;
    /// `TYPE_INET_PROTOCOL` (`inet_proto`).
    pub const INET_PROTO: u32 = 12;
    /// `TYPE_INET_SERVICE` (`inet_service`).
    pub const INET_SERVICE: u32 = 13;
    /// Bits per field in a concatenated type id.
    pub const CONCAT_SHIFT: u32 = 6;
}

/// `enum cntl_msg_types` and `enum ctattr_type`
/// (`linux/netfilter/nfnetlink_conntrack.h`): what the conntrack flush sends.
pub mod ctnetlink {
    /// `IPCTNL_MSG_CT_DELETE`: without a tuple, a flush (filtered by the
    /// attributes below when present).
    pub const DELETE: u16 = 2;
    /// `CTA_MARK`: the mark value (big-endian `u32`).
    pub const MARK: u16 = 8;
    /// `CTA_MARK_MASK`: the bits of the mark compared (big-endian `u32`).
    pub const MARK_MASK: u16 = 21;
}
