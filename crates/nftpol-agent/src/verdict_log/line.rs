//! One logged packet → one JSON line naming the decision and the pods.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket};
use nftpol_ir::{Set, Value};
use nftpol_model::cluster_policy::Tier;
use nftpol_netlink::nflog::LoggedPacket;
use nftpol_ruleset::log_prefix::{LogPrefix, Subject};
use nftpol_ruleset::verdict_log::{self, Decider};
use serde::Serialize;

use super::directory::Directory;

/// One verdict log line. Field order is the output's; optional fields are
/// left out when empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VerdictLine {
    /// When the first of the merged packets arrived (RFC 3339, UTC).
    pub time: String,
    /// The node that logged.
    pub node: String,
    /// `ingress` (at the destination pod) or `egress` (at the source pod).
    pub direction: &'static str,
    /// `accept`, `drop` or `reject`.
    pub verdict: &'static str,
    /// `admin` or `baseline` (a ClusterNetworkPolicy rule),
    /// `networkpolicy`, or `node` for the unknown-pod rule.
    pub tier: &'static str,
    /// `rule` (an allow rule), `default-deny` (isolated, nothing allowed
    /// it), `unknown-pod`, or `stale` (an id of an earlier ruleset).
    pub reason: &'static str,
    /// The deciding policy: `namespace/name`, or `cnp/NAME` for a
    /// ClusterNetworkPolicy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The deciding rule's index in the policy's direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u16>,
    /// The deciding rule's name (ClusterNetworkPolicy rules may have one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// The policies isolating the pod, for a default deny.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolating: Vec<String>,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`, or the protocol number.
    pub protocol: String,
    /// Source address.
    pub src: IpAddr,
    /// Source port (TCP, UDP, SCTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// `namespace/name`, `node:NAME` or `external`.
    pub src_pod: String,
    /// Destination address (after any DNAT).
    pub dst: IpAddr,
    /// Destination port (TCP, UDP, SCTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// `namespace/name`, `node:NAME` or `external`.
    pub dst_pod: String,
    /// The destination before DNAT (a Service address): what the kernel
    /// recorded for a DNATed first packet, or NFLOG's conntrack data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_dst: Option<IpAddr>,
    /// The destination port before DNAT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_dst_port: Option<u16>,
    /// Identical packets merged into this line.
    pub count: u64,
}

/// `admin` or `baseline`.
fn tier_label(tier: Tier) -> &'static str {
    match tier {
        Tier::Admin => "admin",
        Tier::Baseline => "baseline",
    }
}

/// The line of `packet`, or `None` when its prefix is not nftpol's (a
/// rule of another table logging to the same group) or its headers do not
/// parse.
pub fn describe(packet: &LoggedPacket, directory: &Directory, time: String) -> Option<VerdictLine> {
    let prefix = LogPrefix::parse(packet.prefix.as_deref()?).ok()?;
    let headers = Headers::parse(&packet.payload)?;
    let mut rule_name = None;
    let (tier, reason, policy, rule, isolating) = match (directory.decider(&prefix), prefix.subject)
    {
        (Decider::Rule { policy, rule }, _) => (
            "networkpolicy",
            "rule",
            Some(policy.to_string()),
            Some(rule),
            Vec::new(),
        ),
        (
            Decider::ClusterRule {
                tier,
                policy,
                rule,
                name,
            },
            _,
        ) => {
            rule_name = name;
            (
                tier_label(tier),
                "rule",
                Some(format!("cnp/{policy}")),
                Some(rule),
                Vec::new(),
            )
        }
        (Decider::Isolated { policies }, _) => (
            "networkpolicy",
            "default-deny",
            None,
            None,
            policies.iter().map(ToString::to_string).collect(),
        ),
        (Decider::UnknownPod, _) => ("node", "unknown-pod", None, None, Vec::new()),
        (Decider::Unknown, Subject::PolicyRule { rule, .. }) => {
            ("networkpolicy", "stale", None, Some(rule), Vec::new())
        }
        (Decider::Unknown, Subject::ClusterRule { tier, rule, .. }) => {
            (tier_label(tier), "stale", None, Some(rule), Vec::new())
        }
        (Decider::Unknown, _) => ("networkpolicy", "stale", None, None, Vec::new()),
    };
    let original = packet
        .original
        .filter(|tuple| tuple.destination != headers.dst);
    Some(VerdictLine {
        time,
        node: directory.node().to_owned(),
        direction: prefix.direction.label(),
        verdict: prefix.verdict.label(),
        tier,
        reason,
        policy,
        rule,
        rule_name,
        isolating,
        family: if headers.src.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        },
        protocol: protocol_name(headers.protocol),
        src: headers.src,
        src_port: headers.ports.map(|(source, _)| source),
        src_pod: directory.name_of(headers.src),
        dst: headers.dst,
        dst_port: headers.ports.map(|(_, destination)| destination),
        dst_pod: directory.name_of(headers.dst),
        original_dst: original.map(|tuple| tuple.destination),
        original_dst_port: original.and_then(|tuple| tuple.destination_port),
        count: 1,
    })
}

/// The map and key under which the kernel recorded `packet`'s original
/// destination, if it was DNATed: `None` for a packet without ports.
pub fn origin_key(packet: &LoggedPacket) -> Option<(Set, Vec<Value>)> {
    let headers = Headers::parse(&packet.payload)?;
    let (source_port, destination_port) = headers.ports?;
    verdict_log::origin_lookup(
        headers.src,
        headers.dst,
        headers.protocol,
        source_port,
        destination_port,
    )
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "ICMP".to_owned(),
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        58 => "ICMPv6".to_owned(),
        132 => "SCTP".to_owned(),
        other => other.to_string(),
    }
}

/// The fields of the copied IP and transport headers.
struct Headers {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ports: Option<(u16, u16)>,
}

impl Headers {
    /// Parses a packet from its network header; the copy may be cut short
    /// (the NFLOG copy range), so the lax parser is used.
    fn parse(payload: &[u8]) -> Option<Headers> {
        let packet = LaxSlicedPacket::from_ip(payload).ok()?;
        let (src, dst, ip) = match packet.net? {
            LaxNetSlice::Ipv4(slice) => (
                IpAddr::V4(slice.header().source_addr()),
                IpAddr::V4(slice.header().destination_addr()),
                slice.payload().clone(),
            ),
            LaxNetSlice::Ipv6(slice) => (
                IpAddr::V6(slice.header().source_addr()),
                IpAddr::V6(slice.header().destination_addr()),
                slice.payload().clone(),
            ),
            LaxNetSlice::Arp(_) => return None,
        };
        let protocol = ip.ip_number.0;
        // TCP, UDP and SCTP all start with the source and destination
        // port. Fragments are left portless: only the first carries them, and
        // a connection's first packet is hardly ever fragmented.
        let ports = match (protocol, ip.payload) {
            (6 | 17 | 132, [a, b, c, d, ..]) if !ip.fragmented => {
                Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
            }
            _ => None,
        };
        Some(Headers {
            src,
            dst,
            protocol,
            ports,
        })
    }
}
