//! The oracle the compiled ruleset is judged against: what one node's
//! ruleset must do with a new connection crossing its forward hook, computed
//! from the semantic evaluator and the objects, never from sets or chains.
//!
//! Shared by the property tests, the edge-input regression tests and the
//! fuzz targets.

use std::net::IpAddr;

use ipnet::IpNet;
use nftpol_ir::interpret::Packet;
use nftpol_ir::Hook;
use nftpol_model::{evaluate, Cluster, Connection, Decision, PodView};

/// The pod CIDRs of `node`, straight from its Node object: `spec.podCIDRs`,
/// else `spec.podCIDR`; unparseable entries are skipped.
fn pod_cidrs(cluster: &Cluster, node: &str) -> Vec<IpNet> {
    let Some(spec) = cluster
        .nodes
        .iter()
        .find(|candidate| candidate.metadata.name.as_deref() == Some(node))
        .and_then(|found| found.spec.as_ref())
    else {
        return Vec::new();
    };
    let listed = match &spec.pod_cidrs {
        Some(list) if !list.is_empty() => list.clone(),
        _ => spec.pod_cidr.clone().into_iter().collect(),
    };
    listed
        .iter()
        .filter_map(|text| text.parse::<IpNet>().ok())
        .collect()
}

/// The counted pod owning `address` (the first by `namespace/name` when two
/// claim it), if it runs on `node`.
fn local_owner(cluster: &Cluster, node: &str, address: IpAddr) -> Option<PodView> {
    let mut pods: Vec<PodView> = cluster
        .pods
        .iter()
        .map(PodView::from_pod)
        .filter(PodView::counts)
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    pods.into_iter()
        .find(|pod| pod.ips.contains(&address))
        .filter(|pod| pod.node_name.as_deref() == Some(node))
}

/// Whether `node`'s ruleset must pass `connection`: the spec, limited to the
/// node's scope (egress of its own pods, ingress of its own pods), plus its
/// fail-closed rule for unknown addresses in its pod CIDRs, the
/// always-allowed pod-to-itself and the node's own traffic (from its
/// `status.addresses`).
pub fn node_oracle(cluster: &Cluster, node: &str, connection: &Connection) -> bool {
    let cidrs = pod_cidrs(cluster, node);
    let in_pod_cidrs = |address: IpAddr| cidrs.iter().any(|net| net.contains(&address));
    if connection.source == connection.destination
        && local_owner(cluster, node, connection.source).is_some()
    {
        return true;
    }
    let own = node_addresses(cluster, node);
    // The node's own traffic always passes (`fib saddr type local`).
    if own.contains(&connection.source) {
        return true;
    }
    let (egress, ingress) = evaluate(cluster, connection);
    // To the node itself (`input`) only a local pod's egress is judged:
    // no unknown-pod drop there, and the node has no ingress policy.
    let to_node = own.contains(&connection.destination);
    let side_allows =
        |address: IpAddr, decision: &Decision| match local_owner(cluster, node, address) {
            Some(_) => decision.is_allowed(),
            None => to_node || !in_pod_cidrs(address),
        };
    side_allows(connection.source, &egress) && side_allows(connection.destination, &ingress)
}

/// The addresses of Node `node`'s `status.addresses`.
fn node_addresses(cluster: &Cluster, node: &str) -> Vec<IpAddr> {
    cluster
        .nodes
        .iter()
        .filter(|candidate| candidate.metadata.name.as_deref() == Some(node))
        .filter_map(|found| found.status.as_ref()?.addresses.as_ref())
        .flatten()
        .filter_map(|address| address.address.parse().ok())
        .collect()
}

/// A new connection's first packet where it crosses `node`: `output` from
/// one of the node's own addresses, `input` to one of them, `forward`
/// otherwise (the hooks nftpol's base chains sit on).
pub fn packet_on(cluster: &Cluster, node: &str, connection: &Connection) -> Packet {
    let own = node_addresses(cluster, node);
    if own.contains(&connection.source) {
        let mut packet = Packet {
            hook: Hook::Output,
            ..packet_for(connection)
        };
        packet.source_is_local = true;
        packet.destination_is_local = own.contains(&connection.destination);
        packet
    } else if own.contains(&connection.destination) {
        Packet {
            hook: Hook::Input,
            destination_is_local: true,
            ..packet_for(connection)
        }
    } else {
        packet_for(connection)
    }
}

/// A new connection's first packet on the forward hook.
pub fn packet_for(connection: &Connection) -> Packet {
    Packet::opening(
        Hook::Forward,
        connection.source,
        connection.destination,
        connection.protocol.number(),
        connection.port,
    )
}
