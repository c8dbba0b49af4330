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
/// fail-closed rule for unknown addresses in its pod CIDRs and the
/// always-allowed pod-to-itself.
pub fn node_oracle(cluster: &Cluster, node: &str, connection: &Connection) -> bool {
    let cidrs = pod_cidrs(cluster, node);
    let in_pod_cidrs = |address: IpAddr| cidrs.iter().any(|net| net.contains(&address));
    if connection.source == connection.destination
        && local_owner(cluster, node, connection.source).is_some()
    {
        return true;
    }
    let (egress, ingress) = evaluate(cluster, connection);
    let side_allows =
        |address: IpAddr, decision: &Decision| match local_owner(cluster, node, address) {
            Some(_) => decision.is_allowed(),
            None => !in_pod_cidrs(address),
        };
    side_allows(connection.source, &egress) && side_allows(connection.destination, &ingress)
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
