//! The lab's network: one namespace per node and per pod, a fabric
//! namespace bridging the nodes, routed veths like kindnet's ptp CNI.
//!
//! - Fabric namespace: bridge `br0`, one veth `node<k>` per node; the peer is
//!   the node's `eth0` with its addresses (`172.18.0.<k+1>/24` and
//!   `fd00:172:18::<k+1>/64` without Node documents) and a host route on
//!   `eth0` to each other node's addresses, which may lie in any subnet.
//! - Pod namespace: `eth0` with the pod's `/32` (and `/128`), a default route
//!   via the link-local gateway `169.254.1.1` (`fe80::1`) on-link; the peer
//!   in the node namespace is `veth<i>` with a `/32` (`/128`) host route per
//!   pod address. hostNetwork pods have no namespace of their own.
//! - Every neighbour entry is static (all MACs are assigned by the lab), so no
//!   ARP, neighbour discovery or DAD delays a probe; IPv6 addresses are added
//!   `nodad`. Interface indexes are assigned too, so nothing is looked up.
//! - Nodes route the other nodes' pod CIDRs, plus host routes for pods whose
//!   address lies outside their node's CIDR (e.g. `172.17.0.10`).
//! - Nothing is connected to the root namespace: the fabric is a namespace.
//!
//! All of it is built with rtnetlink, one netlink socket per namespace
//! (opened by a thread that entered it), about 15 requests per pod.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use netlink_packet_route::address::AddressHeaderFlags;
use netlink_packet_route::link::{InfoData, InfoVeth};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::LabError;
use crate::netns::{Netns, RunId};
use crate::plan::{LabNode, LabPod, Plan};

/// Interface index of `lo` in every fresh namespace.
const LO_INDEX: u32 = 1;
/// Index of `eth0` in node and pod namespaces and of `br0` in the fabric.
const ETH0_INDEX: u32 = 2;
/// Index of the fabric's veth to node `k` is `FABRIC_PORT_BASE + k`.
const FABRIC_PORT_BASE: u32 = 100;
/// Index of the node's veth to pod `i` is `POD_VETH_BASE + i`.
const POD_VETH_BASE: u32 = 1000;
/// The Service CIDRs (see [`crate::service`]).
pub const SERVICE_CIDRS: [(IpAddr, u8); 2] = [
    (IpAddr::V4(Ipv4Addr::new(10, 96, 0, 0)), 16),
    (
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0)),
        112,
    ),
];
/// The pods' IPv4 default gateway (never assigned: a static neighbour).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pods' IPv6 default gateway (never assigned: a static neighbour).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The lab's namespaces. Dropping it removes them all.
#[derive(Debug)]
pub struct Topology {
    fabric: Option<Netns>,
    /// Node namespaces, `node-1` first.
    nodes: Vec<Netns>,
    /// Pod namespaces by pod id (hostNetwork pods have none).
    pods: BTreeMap<String, Netns>,
}

impl Topology {
    /// Creates and wires every namespace of `plan`. On error, whatever was
    /// created is removed before returning.
    pub fn build(plan: &Plan, run: &RunId, rt: &tokio::runtime::Runtime) -> Result<Self, LabError> {
        let mut topology = Self {
            fabric: None,
            nodes: Vec::new(),
            pods: BTreeMap::new(),
        };
        topology.fabric = Some(Netns::create(&run.netns_name("fabric"))?);
        for node in &plan.nodes {
            topology
                .nodes
                .push(Netns::create(&run.netns_name(&format!("n{}", node.index)))?);
        }
        for (i, pod) in plan.pods.iter().enumerate() {
            if !pod.host_network {
                let name = run.netns_name(&format!("p{i}-{}", sanitize(&pod.id)));
                topology.pods.insert(pod.id.clone(), Netns::create(&name)?);
            }
        }
        rt.block_on(topology.wire(plan, rt))?;
        Ok(topology)
    }

    /// The namespace of node `k`.
    ///
    /// # Panics
    ///
    /// If `k` is not a node of the plan this topology was built from.
    pub fn node(&self, k: usize) -> &Netns {
        &self.nodes[k - 1]
    }

    /// The namespace a pod's sockets live in (its node's for hostNetwork).
    ///
    /// # Panics
    ///
    /// If `pod` is not from the plan this topology was built from.
    pub fn pod(&self, pod: &LabPod) -> &Netns {
        self.pods
            .get(&pod.id)
            .unwrap_or_else(|| self.node(pod.node))
    }

    /// Removes every namespace; reports the first failure after trying all.
    pub fn teardown(mut self) -> Result<(), LabError> {
        self.remove_all()
    }

    fn remove_all(&mut self) -> Result<(), LabError> {
        let all = self
            .fabric
            .take()
            .into_iter()
            .chain(std::mem::take(&mut self.nodes))
            .chain(std::mem::take(&mut self.pods).into_values());
        let mut first_error = None;
        for ns in all {
            if let Err(e) = ns.remove() {
                tracing::error!(error = %e, "teardown failed; run `nftpol lab cleanup`");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn wire(&self, plan: &Plan, rt: &tokio::runtime::Runtime) -> Result<(), LabError> {
        let fabric = self.fabric.as_ref().expect("the fabric is created first");
        let fabric_link = Rtnl::open(fabric, rt, &[])?;
        let node_links = plan
            .nodes
            .iter()
            .map(|node| {
                Rtnl::open(
                    self.node(node.index),
                    rt,
                    &[
                        ("net/ipv4/ip_forward", "1"),
                        ("net/ipv6/conf/all/forwarding", "1"),
                    ],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        wire_fabric(&fabric_link, plan, &self.nodes).await?;
        for (node, link) in plan.nodes.iter().zip(&node_links) {
            wire_node(link, node, plan).await?;
        }
        for (i, pod) in plan.pods.iter().enumerate() {
            let Some(ns) = self.pods.get(&pod.id) else {
                continue;
            };
            let index = u32::try_from(i).map_err(|_| LabError::Scenario {
                object: format!("Pod {}", pod.id),
                field: "metadata.name".to_owned(),
                reason: "too many pods".to_owned(),
            })?;
            let node_link = &node_links[pod.node - 1];
            node_link
                .add_veth(
                    &format!("veth{i}"),
                    POD_VETH_BASE + index,
                    pod_gateway_mac(index),
                    ns,
                    pod_mac(index),
                )
                .await?;
            for address in &pod.addresses {
                node_link
                    .add_route_dev(*address, host_prefix(*address), POD_VETH_BASE + index)
                    .await?;
                node_link
                    .add_neighbour(POD_VETH_BASE + index, *address, pod_mac(index))
                    .await?;
            }
            wire_pod(&Rtnl::open(ns, rt, &[])?, pod, index).await?;
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Errors are logged inside; Drop cannot return them.
        let _ = self.remove_all();
    }
}

async fn wire_fabric(link: &Rtnl, plan: &Plan, nodes: &[Netns]) -> Result<(), LabError> {
    link.set_up(LO_INDEX).await?;
    link.request(
        "add bridge br0",
        link.handle
            .link()
            .add(LinkBridge::new("br0").index(ETH0_INDEX).up().build())
            .execute(),
    )
    .await?;
    for (node, ns) in plan.nodes.iter().zip(nodes) {
        let k = u32::try_from(node.index).expect("node count is bounded by MAX_NODES");
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_owned())
            .index(ETH0_INDEX)
            .address(node_mac(node).to_vec())
            .setns_by_fd(ns.file().as_raw_fd())
            .build();
        let veth = LinkVeth::new(&format!("node{k}"), "eth0")
            .index(FABRIC_PORT_BASE + k)
            .address(fabric_port_mac(node).to_vec())
            .controller(ETH0_INDEX)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        link.request(
            &format!("add veth node{k}"),
            link.handle.link().add(veth).execute(),
        )
        .await?;
    }
    Ok(())
}

async fn wire_node(link: &Rtnl, node: &LabNode, plan: &Plan) -> Result<(), LabError> {
    link.set_up(LO_INDEX).await?;
    link.set_up(ETH0_INDEX).await?;
    link.add_address(ETH0_INDEX, IpAddr::V4(node.ipv4), 24)
        .await?;
    link.add_address(ETH0_INDEX, IpAddr::V6(node.ipv6), 64)
        .await?;
    // Sockets in the node namespace (hostNetwork pods) need a route to the
    // Service CIDRs for `connect` to reach the output hook, where the lab's
    // kube-proxy DNAT reroutes them; as on a real node, whose default route
    // serves this purpose.
    for (cidr, prefix) in SERVICE_CIDRS {
        link.add_route_dev(cidr, prefix, ETH0_INDEX).await?;
    }
    for other in plan.nodes.iter().filter(|o| o.index != node.index) {
        let via_v4 = IpAddr::V4(other.ipv4);
        let via_v6 = IpAddr::V6(other.ipv6);
        link.add_neighbour(ETH0_INDEX, via_v4, node_mac(other))
            .await?;
        link.add_neighbour(ETH0_INDEX, via_v6, node_mac(other))
            .await?;
        // Node documents may give addresses outside this node's /24 and
        // /64: a host route keeps every other node on-link either way.
        link.add_route_dev(via_v4, 32, ETH0_INDEX).await?;
        link.add_route_dev(via_v6, 128, ETH0_INDEX).await?;
        let (v4, v4_len) = other.pod_cidr_v4;
        let (v6, v6_len) = other.pod_cidr_v6;
        link.add_route_via(IpAddr::V4(v4), v4_len, via_v4).await?;
        link.add_route_via(IpAddr::V6(v6), v6_len, via_v6).await?;
        let stray = plan
            .pods
            .iter()
            .filter(|p| p.node == other.index && !p.host_network)
            .flat_map(|p| p.addresses.iter().copied())
            .filter(|a| !in_pod_cidr(other, *a));
        for address in stray {
            let via = if address.is_ipv4() { via_v4 } else { via_v6 };
            link.add_route_via(address, host_prefix(address), via)
                .await?;
        }
    }
    Ok(())
}

async fn wire_pod(link: &Rtnl, pod: &LabPod, index: u32) -> Result<(), LabError> {
    link.set_up(LO_INDEX).await?;
    link.set_up(ETH0_INDEX).await?;
    for address in &pod.addresses {
        link.add_address(ETH0_INDEX, *address, host_prefix(*address))
            .await?;
    }
    let gateway_mac = pod_gateway_mac(index);
    if pod.addresses.iter().any(IpAddr::is_ipv4) {
        link.add_neighbour(ETH0_INDEX, IpAddr::V4(GATEWAY_V4), gateway_mac)
            .await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(ETH0_INDEX)
            .onlink()
            .build();
        link.request(
            "add default route via 169.254.1.1",
            link.handle.route().add(route).execute(),
        )
        .await?;
    }
    if pod.addresses.iter().any(IpAddr::is_ipv6) {
        link.add_neighbour(ETH0_INDEX, IpAddr::V6(GATEWAY_V6), gateway_mac)
            .await?;
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(ETH0_INDEX)
            .build();
        link.request(
            "add default route via fe80::1",
            link.handle.route().add(route).execute(),
        )
        .await?;
    }
    Ok(())
}

fn in_pod_cidr(node: &LabNode, address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => {
            let (net, _) = node.pod_cidr_v4;
            a.octets()[..3] == net.octets()[..3]
        }
        IpAddr::V6(a) => {
            let (net, _) = node.pod_cidr_v6;
            a.segments()[..4] == net.segments()[..4]
        }
    }
}

fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

fn node_index_byte(node: &LabNode) -> u8 {
    u8::try_from(node.index).expect("node count is bounded by MAX_NODES")
}

/// MAC of node `k`'s `eth0`.
fn node_mac(node: &LabNode) -> [u8; 6] {
    [0x02, 0x4e, 0, 0, 0, node_index_byte(node)]
}

/// MAC of the fabric's veth to node `k`.
fn fabric_port_mac(node: &LabNode) -> [u8; 6] {
    [0x02, 0xfa, 0, 0, 0, node_index_byte(node)]
}

/// MAC of pod `i`'s `eth0`.
fn pod_mac(index: u32) -> [u8; 6] {
    let [_, a, b, c] = index.to_be_bytes();
    [0x02, 0x0d, 0, a, b, c]
}

/// MAC of the node's veth to pod `i` (the pod's gateway).
fn pod_gateway_mac(index: u32) -> [u8; 6] {
    let [_, a, b, c] = index.to_be_bytes();
    [0x02, 0xee, 0, a, b, c]
}

/// Lowercase alphanumerics and dashes only, at most 40 characters.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// An rtnetlink connection opened inside one namespace.
struct Rtnl {
    netns: String,
    handle: rtnetlink::Handle,
}

impl Rtnl {
    /// Opens the socket from a thread inside `ns`, after writing `sysctls`
    /// (paths under `/proc/sys/`, which resolve in the writer's namespace).
    fn open(
        ns: &Netns,
        rt: &tokio::runtime::Runtime,
        sysctls: &[(&str, &str)],
    ) -> Result<Self, LabError> {
        let (connection, handle) = ns.run(|| {
            for (path, value) in sysctls {
                let path = format!("/proc/sys/{path}");
                std::fs::write(&path, value).map_err(|source| LabError::Sysctl {
                    netns: ns.name().to_owned(),
                    path,
                    source,
                })?;
            }
            let _guard = rt.enter();
            rtnetlink::new_connection()
                .map(|(connection, handle, _)| (connection, handle))
                .map_err(|source| LabError::Runtime {
                    what: "open an rtnetlink socket",
                    source,
                })
        })??;
        rt.spawn(connection);
        Ok(Self {
            netns: ns.name().to_owned(),
            handle,
        })
    }

    async fn request(
        &self,
        what: &str,
        request: impl Future<Output = Result<(), rtnetlink::Error>>,
    ) -> Result<(), LabError> {
        request.await.map_err(|source| LabError::Netlink {
            netns: self.netns.clone(),
            what: what.to_owned(),
            source,
        })
    }

    async fn set_up(&self, index: u32) -> Result<(), LabError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.request(
            &format!("set link {index} up"),
            self.handle.link().set(message).execute(),
        )
        .await
    }

    async fn add_veth(
        &self,
        name: &str,
        index: u32,
        mac: [u8; 6],
        peer_ns: &Netns,
        peer_mac: [u8; 6],
    ) -> Result<(), LabError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_owned())
            .index(ETH0_INDEX)
            .address(peer_mac.to_vec())
            .setns_by_fd(peer_ns.file().as_raw_fd())
            .build();
        let veth = LinkVeth::new(name, "eth0")
            .index(index)
            .address(mac.to_vec())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.request(
            &format!("add veth {name} (peer eth0 in {})", peer_ns.name()),
            self.handle.link().add(veth).execute(),
        )
        .await
    }

    async fn add_address(&self, index: u32, address: IpAddr, prefix: u8) -> Result<(), LabError> {
        let mut request = self.handle.address().add(index, address, prefix);
        request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        self.request(
            &format!("add address {address}/{prefix} on link {index}"),
            request.execute(),
        )
        .await
    }

    async fn add_neighbour(
        &self,
        index: u32,
        address: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), LabError> {
        self.request(
            &format!("add neighbour {address} on link {index}"),
            self.handle
                .neighbours()
                .add(index, address)
                .link_layer_address(&mac)
                .execute(),
        )
        .await
    }

    async fn add_route_dev(&self, address: IpAddr, prefix: u8, index: u32) -> Result<(), LabError> {
        let message = match address {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, prefix)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, prefix)
                .output_interface(index)
                .build(),
        };
        self.request(
            &format!("add route {address}/{prefix} dev {index}"),
            self.handle.route().add(message).execute(),
        )
        .await
    }

    async fn add_route_via(
        &self,
        destination: IpAddr,
        prefix: u8,
        via: IpAddr,
    ) -> Result<(), LabError> {
        let message = match (destination, via) {
            (IpAddr::V4(d), IpAddr::V4(g)) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(d, prefix)
                .gateway(g)
                .build(),
            (IpAddr::V6(d), IpAddr::V6(g)) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(d, prefix)
                .gateway(g)
                .build(),
            _ => {
                return Err(LabError::Runtime {
                    what: "route",
                    source: io::Error::other(format!("{destination} via {via}: mixed families")),
                });
            }
        };
        self.request(
            &format!("add route {destination}/{prefix} via {via}"),
            self.handle.route().add(message).execute(),
        )
        .await
    }
}
