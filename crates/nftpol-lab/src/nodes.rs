//! A scenario's `kind: Node` documents as the lab's nodes.
//!
//! Each Node document is one lab node, `k` its position in document order
//! (so its netns, MACs and pod CIDRs `10.244.<k>.0/24`, `fd00:10:244:<k>::/64`
//! follow the default plan's). Its name, labels and `status.addresses` are
//! the scenario's: the node's netns holds its InternalIP addresses (one
//! IPv4 and one IPv6: every lab node is dual-stack, as in the default
//! plan), and the agents see the document itself, so `nodes` selectors and
//! `networks` CIDRs written against those labels and addresses match real
//! traffic. Addresses of other types (Hostname, ExternalIP) are passed on
//! untouched and not assigned. The lab routes pods by its own pod CIDRs, so
//! the document's `spec.podCIDRs` are replaced by them (with a warning when
//! they differ), and a Node without the `kubernetes.io/hostname` label gets
//! it, as the kubelet gives it to every real Node.
//!
//! Rejected, naming the Node and the field: a Node without a name or
//! declared twice; an InternalIP that is not an address, is not unicast, or
//! lies in the lab's pod or Service ranges (the lab routes those itself);
//! a missing or second InternalIP of a family; an address two Nodes claim.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{Node, NodeSpec};

use crate::error::LabError;
use crate::plan::{LabNode, MAX_NODES};
use crate::topology::SERVICE_CIDRS;

/// The label the kubelet puts on every Node, valued with its name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The lab's pod address ranges: every node's pod CIDR lies inside them.
const POD_RANGES: [(IpAddr, u8); 2] = [
    (IpAddr::V4(Ipv4Addr::new(10, 244, 0, 0)), 16),
    (
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0)),
        48,
    ),
];

/// The lab nodes the Node documents declare, in document order.
pub fn from_documents(documents: &[Node]) -> Result<Vec<LabNode>, LabError> {
    if documents.len() > MAX_NODES {
        return Err(LabError::Scenario {
            object: "Node documents".to_owned(),
            field: "kind: Node".to_owned(),
            reason: format!(
                "{} Nodes declared; the lab runs at most {MAX_NODES}",
                documents.len()
            ),
        });
    }
    let mut names = BTreeSet::new();
    let mut claimed: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(documents.len());
    for (i, document) in documents.iter().enumerate() {
        let name = document.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(node_error(
                &format!("#{}", i + 1),
                "metadata.name",
                "a Node needs a name",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(node_error(&name, "metadata.name", "declared twice"));
        }
        let (ipv4, ipv6) = internal_ips(document, &name)?;
        for address in [IpAddr::V4(ipv4), IpAddr::V6(ipv6)] {
            if let Some(other) = claimed.insert(address, name.clone()) {
                return Err(node_error(
                    &name,
                    "status.addresses",
                    &format!("{address} is already an address of Node {other}"),
                ));
            }
        }
        nodes.push(LabNode::with_addresses(i + 1, name, ipv4, ipv6));
    }
    Ok(nodes)
}

/// The one IPv4 and one IPv6 InternalIP of `document`.
fn internal_ips(document: &Node, name: &str) -> Result<(Ipv4Addr, Ipv6Addr), LabError> {
    let mut ipv4 = None;
    let mut ipv6 = None;
    let addresses = document
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    for (i, entry) in addresses.iter().enumerate() {
        if entry.type_ != "InternalIP" {
            continue;
        }
        let field = format!("status.addresses[{i}].address");
        let address: IpAddr = entry.address.parse().map_err(|_| {
            node_error(
                name,
                &field,
                &format!("{:?} is not an IP address", entry.address),
            )
        })?;
        check_usable(address).map_err(|reason| node_error(name, &field, &reason))?;
        let duplicate = match address {
            IpAddr::V4(a) => ipv4.replace(a).is_some(),
            IpAddr::V6(a) => ipv6.replace(a).is_some(),
        };
        if duplicate {
            return Err(node_error(
                name,
                &field,
                "a lab node has one InternalIP per family",
            ));
        }
    }
    match (ipv4, ipv6) {
        (Some(v4), Some(v6)) => Ok((v4, v6)),
        (v4, _) => Err(node_error(
            name,
            "status.addresses",
            &format!(
                "no {} InternalIP: a lab node needs one of each family (IPv4 and IPv6)",
                if v4.is_none() { "IPv4" } else { "IPv6" }
            ),
        )),
    }
}

/// Why `address` cannot be a lab node's address, if it cannot.
fn check_usable(address: IpAddr) -> Result<(), String> {
    let special = match address {
        IpAddr::V4(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local()
        }
        IpAddr::V6(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local()
        }
    };
    if special {
        return Err(format!(
            "{address} is not a unicast address a node can hold"
        ));
    }
    for (range, what) in POD_RANGES
        .iter()
        .map(|r| (r, "pod"))
        .chain(SERVICE_CIDRS.iter().map(|r| (r, "Service")))
    {
        if contains(*range, address) {
            return Err(format!(
                "{address} lies in the lab's {what} range {}/{}",
                range.0, range.1
            ));
        }
    }
    Ok(())
}

fn contains((network, prefix): (IpAddr, u8), address: IpAddr) -> bool {
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Fills each Node document in for the agents: the lab's pod CIDRs and the
/// hostname label. `nodes` are [`from_documents`] of the same documents.
pub fn complete_documents(documents: &mut [Node], nodes: &[LabNode], warnings: &mut Vec<String>) {
    for (document, node) in documents.iter_mut().zip(nodes) {
        let cidrs = node.pod_cidrs().to_vec();
        let spec = document.spec.get_or_insert_with(NodeSpec::default);
        let given = spec.pod_cidrs.clone().unwrap_or_default();
        if !given.is_empty() && given != cidrs {
            warnings.push(format!(
                "Node {}: spec.podCIDRs {given:?} replaced by the lab's {cidrs:?} (the lab routes its own pod CIDRs)",
                node.name
            ));
        }
        spec.pod_cidr = cidrs.first().cloned();
        spec.pod_cidrs = Some(cidrs);
        document
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .entry(HOSTNAME_LABEL.to_owned())
            .or_insert_with(|| node.name.clone());
    }
}

fn node_error(name: &str, field: &str, reason: &str) -> LabError {
    LabError::Scenario {
        object: format!("Node {name}"),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}
