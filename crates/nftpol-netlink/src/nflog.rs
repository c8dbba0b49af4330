//! NFLOG (nfnetlink_log): the packets `log group G` rules report, read off
//! a netlink socket bound to group G.
//!
//! The codec is our own, on the TLV reader of [`crate::nla`], like the
//! nf_tables one: `netlink-packet-netfilter` 0.4 has nflog messages but no
//! `NFULA_CT`, the packet's conntrack entry, which carries the original
//! (pre-DNAT) destination of a connection to a Service address.
//!
//! Bounded by construction: the kernel queues packets in the socket's
//! receive buffer and drops what does not fit (the packet itself is
//! unaffected; only its log is lost). The instance numbers its packets
//! (`NFULNL_CFG_F_SEQ`), so a gap in the numbers counts exactly the logs
//! lost, whatever lost them.
//!
//! One instance per group and network namespace: if another process
//! (ulogd2) holds the group, binding fails with EBUSY
//! ([`NflogError::GroupBusy`]) and the kernel keeps logging for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

use crate::nla::{messages, Attr, Attrs, WireError, Writer, NFGENMSG_LEN};
use crate::uapi::{NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};

/// `NFNL_SUBSYS_ULOG`.
const SUBSYS_ULOG: u16 = 4;
/// `NFULNL_MSG_PACKET`.
const MSG_PACKET: u16 = 0;
/// `NFULNL_MSG_CONFIG`.
const MSG_CONFIG: u16 = 1;
/// `NFULA_CFG_CMD`, `NFULA_CFG_MODE`, `NFULA_CFG_TIMEOUT`, `NFULA_CFG_FLAGS`.
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_TIMEOUT: u16 = 4;
const CFG_FLAGS: u16 = 6;
/// `NFULNL_CFG_CMD_BIND`.
const CMD_BIND: u8 = 1;
/// `NFULNL_COPY_PACKET`.
const COPY_PACKET: u8 = 2;
/// `NFULNL_CFG_F_SEQ`, `NFULNL_CFG_F_CONNTRACK`.
const F_SEQ: u16 = 0x1;
const F_CONNTRACK: u16 = 0x4;
/// `NFULA_PACKET_HDR`, `NFULA_PAYLOAD`, `NFULA_PREFIX`, `NFULA_SEQ`, `NFULA_CT`.
const ATTR_PACKET_HDR: u16 = 1;
const ATTR_PAYLOAD: u16 = 9;
const ATTR_PREFIX: u16 = 10;
const ATTR_SEQ: u16 = 12;
const ATTR_CT: u16 = 18;
/// `CTA_TUPLE_ORIG`, `CTA_TUPLE_IP`, `CTA_TUPLE_PROTO`.
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
/// `CTA_IP_V4_SRC` … `CTA_IP_V6_DST`.
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
/// `CTA_PROTO_NUM`, `CTA_PROTO_SRC_PORT`, `CTA_PROTO_DST_PORT`.
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// Bytes of each packet copied to us: the IP and transport headers (an
/// IPv6 header with a TCP header and options fits in 128).
pub const COPY_RANGE: u32 = 128;
/// How long the kernel holds packets to batch them (`NFULA_CFG_TIMEOUT`,
/// hundredths of a second): a tenth of a second.
const FLUSH_TIMEOUT: u32 = 10;
/// One datagram of the instance: the kernel's default buffer (a page) and
/// more, so no batch is ever truncated.
const DATAGRAM: usize = 64 << 10;

/// A failure of the NFLOG socket.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    /// The socket could not be opened or configured.
    #[error("NFLOG socket: {stage}")]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process (ulogd2, tcpdump) holds the group.
    #[error("NFLOG group {group} is held by another process")]
    GroupBusy {
        /// The group.
        group: u16,
    },
    /// The kernel refused a configuration message.
    #[error("NFLOG {stage}: {errno}")]
    Kernel {
        /// What was being configured.
        stage: &'static str,
        /// The kernel's errno.
        errno: Errno,
    },
    /// A message from the kernel did not decode.
    #[error("NFLOG message")]
    Wire(#[from] WireError),
}

/// The conntrack tuple of a packet's connection in its original direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub source: IpAddr,
    /// Destination address before any DNAT.
    pub destination: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (TCP, UDP, SCTP).
    pub source_port: Option<u16>,
    /// Destination port before any DNAT.
    pub destination_port: Option<u16>,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// `NFPROTO_IPV4` or `NFPROTO_IPV6` (the nfgenmsg family).
    pub family: u8,
    /// The netfilter hook number.
    pub hook: u8,
    /// The rule's prefix.
    pub prefix: Option<String>,
    /// The packet from its network header, at most [`COPY_RANGE`] bytes.
    pub payload: Vec<u8>,
    /// The instance's sequence number of the packet.
    pub seq: Option<u32>,
    /// The connection's original tuple, when conntrack data is on.
    pub original: Option<Tuple>,
}

/// Packets of one receive, and the logs lost before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The packets.
    pub packets: Vec<LoggedPacket>,
    /// Logs the kernel numbered but never delivered (socket buffer full).
    pub lost: u64,
}

/// A socket bound to one NFLOG group.
pub struct NflogSocket {
    socket: Socket,
    group: u16,
    seq: u32,
    expected: Option<u32>,
    conntrack: bool,
    buffer: Vec<u8>,
}

impl NflogSocket {
    /// Binds `group` in the calling thread's network namespace, copying
    /// [`COPY_RANGE`] bytes per packet, with a receive buffer of
    /// `receive_buffer` bytes (what bounds the logs in flight) and receives
    /// that wait at most `poll` (so the caller's loop can stop).
    /// Conntrack data is asked for, and done without if the kernel lacks
    /// `nf_conntrack_netlink` (see [`NflogSocket::has_conntrack`]).
    pub fn bind(group: u16, receive_buffer: usize, poll: Duration) -> Result<Self, NflogError> {
        let io = |stage| move |source| NflogError::Io { stage, source };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io("creating the socket"))?;
        socket.bind_auto().map_err(io("binding"))?;
        setsockopt(&socket, sockopt::RcvBufForce, &receive_buffer)
            .map_err(|errno| io("sizing the receive buffer")(errno.into()))?;
        let timeout = nix::sys::time::TimeVal::new(
            i64::try_from(poll.as_secs()).unwrap_or(i64::MAX),
            i64::from(poll.subsec_micros()),
        );
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)
            .map_err(|errno| io("setting the receive timeout")(errno.into()))?;
        let mut nflog = NflogSocket {
            socket,
            group,
            seq: 0,
            expected: None,
            conntrack: false,
            buffer: Vec::with_capacity(DATAGRAM),
        };
        nflog
            .configure("binding the group", |w| w.put(CFG_CMD, &[CMD_BIND]))
            .map_err(|error| match error {
                NflogError::Kernel {
                    errno: Errno::EBUSY | Errno::EPERM,
                    ..
                } => NflogError::GroupBusy { group },
                other => other,
            })?;
        nflog.configure("setting the copy mode", |w| {
            let mut mode = COPY_RANGE.to_be_bytes().to_vec();
            mode.extend_from_slice(&[COPY_PACKET, 0]);
            w.put(CFG_MODE, &mode)?;
            w.put_u32(CFG_TIMEOUT, FLUSH_TIMEOUT)
        })?;
        nflog.conntrack = match nflog.configure("asking for conntrack data", |w| {
            w.put(CFG_FLAGS, &(F_SEQ | F_CONNTRACK).to_be_bytes())
        }) {
            Ok(()) => true,
            Err(NflogError::Kernel {
                errno: Errno::EOPNOTSUPP,
                ..
            }) => {
                nflog.configure("numbering packets", |w| {
                    w.put(CFG_FLAGS, &F_SEQ.to_be_bytes())
                })?;
                false
            }
            Err(other) => return Err(other),
        };
        Ok(nflog)
    }

    /// Whether packets carry their conntrack tuple (original destination):
    /// the kernel needs `CONFIG_NETFILTER_NETLINK_GLUE_CT`.
    pub fn has_conntrack(&self) -> bool {
        self.conntrack
    }

    /// Sends one config message and waits for its ack.
    fn configure(
        &mut self,
        stage: &'static str,
        attrs: impl FnOnce(&mut Writer) -> Result<(), crate::nla::AttrTooLarge>,
    ) -> Result<(), NflogError> {
        self.seq += 1;
        let mut w = Writer::new();
        let start = w.begin_message(
            (SUBSYS_ULOG << 8) | MSG_CONFIG,
            NLM_F_REQUEST | NLM_F_ACK,
            self.seq,
            0,
            self.group,
        );
        attrs(&mut w).map_err(|_| NflogError::Kernel {
            stage,
            errno: Errno::E2BIG,
        })?;
        w.end_message(start);
        self.socket
            .send(w.bytes(), 0)
            .map_err(|source| NflogError::Io { stage, source })?;
        loop {
            self.buffer.clear();
            self.socket
                .recv(&mut self.buffer, 0)
                .map_err(|source| NflogError::Io { stage, source })?;
            for message in messages(&self.buffer) {
                let message = message?;
                if message.kind != NLMSG_ERROR || message.seq != self.seq {
                    continue;
                }
                let code = message.payload.get(0..4).ok_or(WireError::Truncated {
                    what: "nlmsgerr",
                    need: 4,
                    have: message.payload.len(),
                })?;
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                return match code {
                    0 => Ok(()),
                    code => Err(NflogError::Kernel {
                        stage,
                        errno: Errno::from_raw(code.saturating_neg()),
                    }),
                };
            }
        }
    }

    /// Waits up to the poll interval for logged packets. A full receive
    /// buffer (ENOBUFS) is no error: the gap it leaves in the packets'
    /// numbers is counted in [`Received::lost`].
    pub fn receive(&mut self) -> Result<Received, NflogError> {
        self.buffer.clear();
        match self.socket.recv(&mut self.buffer, 0) {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) || error.raw_os_error() == Some(Errno::ENOBUFS as i32) =>
            {
                return Ok(Received::default());
            }
            Err(source) => {
                return Err(NflogError::Io {
                    stage: "receiving",
                    source,
                })
            }
        }
        let packets = parse_packets(&self.buffer)?;
        let mut lost = 0u64;
        for packet in &packets {
            if let Some(seq) = packet.seq {
                if let Some(expected) = self.expected {
                    lost += u64::from(seq.wrapping_sub(expected));
                }
                self.expected = Some(seq.wrapping_add(1));
            }
        }
        Ok(Received { packets, lost })
    }
}

/// Decodes the `NFULNL_MSG_PACKET` messages of one datagram (others, and
/// `NLMSG_DONE`, are skipped). The bytes come from the kernel but are
/// treated as untrusted: malformed input is an error, never a panic.
pub fn parse_packets(datagram: &[u8]) -> Result<Vec<LoggedPacket>, WireError> {
    let mut packets = Vec::new();
    for message in messages(datagram) {
        let message = message?;
        if message.kind == NLMSG_DONE || message.kind != ((SUBSYS_ULOG << 8) | MSG_PACKET) {
            continue;
        }
        let family = *message.payload.first().ok_or(WireError::Truncated {
            what: "nfgenmsg",
            need: NFGENMSG_LEN,
            have: 0,
        })?;
        let attrs = message
            .payload
            .get(NFGENMSG_LEN..)
            .ok_or(WireError::Truncated {
                what: "nfgenmsg",
                need: NFGENMSG_LEN,
                have: message.payload.len(),
            })?;
        let mut packet = LoggedPacket {
            family,
            hook: 0,
            prefix: None,
            payload: Vec::new(),
            seq: None,
            original: None,
        };
        for attr in Attrs::new(attrs) {
            let attr = attr?;
            match attr.kind {
                ATTR_PACKET_HDR => {
                    packet.hook = *attr.value.get(2).ok_or(WireError::Invalid {
                        what: "packet header",
                    })?;
                }
                ATTR_PAYLOAD => packet.payload = attr.value.to_vec(),
                ATTR_PREFIX => packet.prefix = Some(attr.string("log prefix")?),
                ATTR_SEQ => packet.seq = Some(attr.u32("log sequence number")?),
                ATTR_CT => packet.original = original_tuple(attr)?,
                _ => {}
            }
        }
        packets.push(packet);
    }
    Ok(packets)
}

fn original_tuple(ct: Attr<'_>) -> Result<Option<Tuple>, WireError> {
    let Some(tuple) = find(ct, CTA_TUPLE_ORIG)? else {
        return Ok(None);
    };
    let (Some(ip), Some(proto)) = (find(tuple, CTA_TUPLE_IP)?, find(tuple, CTA_TUPLE_PROTO)?)
    else {
        return Ok(None);
    };
    let address = |kind| -> Result<Option<IpAddr>, WireError> {
        let Some(attr) = find(ip, kind)? else {
            return Ok(None);
        };
        let invalid = WireError::Invalid {
            what: "conntrack address",
        };
        Ok(Some(match kind {
            CTA_IP_V4_SRC | CTA_IP_V4_DST => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(attr.value).map_err(|_| invalid)?,
            )),
            _ => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(attr.value).map_err(|_| invalid)?,
            )),
        }))
    };
    let port = |kind| -> Result<Option<u16>, WireError> {
        find(proto, kind)?
            .map(|attr| {
                <[u8; 2]>::try_from(attr.value)
                    .map(u16::from_be_bytes)
                    .map_err(|_| WireError::Invalid {
                        what: "conntrack port",
                    })
            })
            .transpose()
    };
    let endpoints = match (address(CTA_IP_V4_SRC)?, address(CTA_IP_V4_DST)?) {
        (Some(source), Some(destination)) => Some((source, destination)),
        _ => match (address(CTA_IP_V6_SRC)?, address(CTA_IP_V6_DST)?) {
            (Some(source), Some(destination)) => Some((source, destination)),
            _ => None,
        },
    };
    let protocol = find(proto, CTA_PROTO_NUM)?.and_then(|attr| attr.value.first().copied());
    Ok(match (endpoints, protocol) {
        (Some((source, destination)), Some(protocol)) => Some(Tuple {
            source,
            destination,
            protocol,
            source_port: port(CTA_PROTO_SRC_PORT)?,
            destination_port: port(CTA_PROTO_DST_PORT)?,
        }),
        _ => None,
    })
}

fn find(nest: Attr<'_>, kind: u16) -> Result<Option<Attr<'_>>, WireError> {
    for attr in nest.nested() {
        let attr = attr?;
        if attr.kind == kind {
            return Ok(Some(attr));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as nfnetlink_log builds it.
    fn message(family: u8, prefix: &str, seq: u32, payload: &[u8], ct: bool) -> Vec<u8> {
        let mut w = Writer::new();
        let start = w.begin_message((SUBSYS_ULOG << 8) | MSG_PACKET, 0, 0, family, 100);
        w.put(ATTR_PACKET_HDR, &[0x08, 0x00, 2, 0]).expect("fits");
        w.put_str(ATTR_PREFIX, prefix).expect("fits");
        w.put_u32(ATTR_SEQ, seq).expect("fits");
        w.put(ATTR_PAYLOAD, payload).expect("fits");
        if ct {
            let ct = w.begin_nested(ATTR_CT);
            let orig = w.begin_nested(CTA_TUPLE_ORIG);
            let ip = w.begin_nested(CTA_TUPLE_IP);
            w.put(CTA_IP_V4_SRC, &[10, 244, 1, 2]).expect("fits");
            w.put(CTA_IP_V4_DST, &[10, 96, 0, 10]).expect("fits");
            w.end_nested(ip).expect("fits");
            let proto = w.begin_nested(CTA_TUPLE_PROTO);
            w.put(CTA_PROTO_NUM, &[6]).expect("fits");
            w.put(CTA_PROTO_SRC_PORT, &40000u16.to_be_bytes())
                .expect("fits");
            w.put(CTA_PROTO_DST_PORT, &80u16.to_be_bytes())
                .expect("fits");
            w.end_nested(proto).expect("fits");
            w.end_nested(orig).expect("fits");
            w.end_nested(ct).expect("fits");
        }
        w.end_message(start);
        w.into_bytes()
    }

    #[test]
    fn packet_messages_decode_with_their_original_tuple() {
        let mut datagram = message(2, "nftpol:de:unk", 7, &[0x45, 0, 0, 20], true);
        datagram.extend(message(10, "other", 8, &[0x60], false));
        let packets = parse_packets(&datagram).expect("decodes");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].prefix.as_deref(), Some("nftpol:de:unk"));
        assert_eq!(
            (packets[0].family, packets[0].hook, packets[0].seq),
            (2, 2, Some(7))
        );
        assert_eq!(packets[0].payload, [0x45, 0, 0, 20]);
        assert_eq!(
            packets[0].original,
            Some(Tuple {
                source: "10.244.1.2".parse().expect("address"),
                destination: "10.96.0.10".parse().expect("address"),
                protocol: 6,
                source_port: Some(40000),
                destination_port: Some(80),
            })
        );
        assert_eq!(packets[1].original, None);
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        let datagram = message(2, "nftpol:de:unk", 7, &[0x45; 40], true);
        assert_eq!(parse_packets(&[]).expect("nothing to decode"), vec![]);
        for len in 1..datagram.len() {
            assert!(parse_packets(&datagram[..len]).is_err(), "{len} bytes");
        }
    }
}
