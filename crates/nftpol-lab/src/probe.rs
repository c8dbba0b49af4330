//! Servers and probes. A socket belongs to the namespace of the thread that
//! created it, so every socket is created by a helper thread inside the pod
//! (or node) namespace and then driven from the tokio runtime.
//!
//! - A server per declared TCP and UDP container port and address family of
//!   each pod: TCP listens (the handshake is what a probe checks), UDP echoes.
//! - TCP probe: the connect completes within [`Timeouts::tcp_connect`].
//! - UDP probe: a request is echoed back within [`Timeouts::udp_reply`], with
//!   [`Timeouts::udp_attempts`] tries; an ICMP unreachable ends it at once.
//! - A pair is probed once per address family both ends have, and each
//!   family is its own probe (an IPv6 hole never hides behind an IPv4
//!   block); a pair without a common family is not probed.
//! - All probes run at once: a blocked pair costs one timeout, not one each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::task::JoinSet;

use crate::error::LabError;
use crate::netns::Netns;
use crate::plan::{LabPod, Plan, PodPort, Protocol};
use crate::report::{family_of, Family, NodeProbe, Probe};
use crate::topology::Topology;

/// Probe time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a TCP connect may take (upstream e2e uses 1 s).
    pub tcp_connect: Duration,
    /// How long to wait for each UDP echo.
    pub udp_reply: Duration,
    /// How many UDP requests to send before calling the pair blocked.
    pub udp_attempts: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_connect: Duration::from_secs(1),
            udp_reply: Duration::from_millis(300),
            udp_attempts: 3,
        }
    }
}

/// Running servers; dropping this stops them.
#[derive(Debug)]
pub struct Servers {
    /// Held so that dropping `Servers` aborts the serving tasks.
    _tasks: JoinSet<()>,
    count: usize,
}

impl Servers {
    /// How many server sockets are open.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// One server socket to open: family, port, protocol.
type ServerKey = (bool, u16, Protocol);

/// Opens the servers of every pod in `plan` and serves them on `rt`.
pub fn start_servers(
    plan: &Plan,
    topology: &Topology,
    rt: &tokio::runtime::Runtime,
) -> Result<Servers, LabError> {
    // hostNetwork pods on one node share its namespace: one server each.
    let mut by_netns: BTreeMap<&str, (&Netns, BTreeSet<ServerKey>)> = BTreeMap::new();
    for pod in &plan.pods {
        let ns = topology.pod(pod);
        let entry = by_netns
            .entry(ns.name())
            .or_insert_with(|| (ns, BTreeSet::new()));
        for address in &pod.addresses {
            for port in &pod.ports {
                if port.protocol != Protocol::Sctp {
                    entry
                        .1
                        .insert((address.is_ipv6(), port.port, port.protocol));
                }
            }
        }
    }
    let mut tasks = JoinSet::new();
    let mut count = 0;
    for (name, (ns, keys)) in by_netns {
        let sockets = ns.run(|| {
            keys.iter()
                .map(|key| server_socket(*key).map(|s| (*key, s)))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let sockets = sockets.map_err(|(key, e)| {
            LabError::socket(name, format!("listen on {}/{}", key.1, key.2), e)
        })?;
        let _guard = rt.enter();
        for ((_, port, protocol), socket) in sockets {
            count += 1;
            match protocol {
                Protocol::Tcp => {
                    let listener = tokio::net::TcpListener::from_std(socket.into())
                        .map_err(|e| LabError::socket(name, format!("register {port}/TCP"), e))?;
                    tasks.spawn(serve_tcp(listener));
                }
                Protocol::Udp => {
                    let udp = tokio::net::UdpSocket::from_std(socket.into())
                        .map_err(|e| LabError::socket(name, format!("register {port}/UDP"), e))?;
                    tasks.spawn(serve_udp(udp));
                }
                Protocol::Sctp => {}
            }
        }
    }
    Ok(Servers {
        _tasks: tasks,
        count,
    })
}

fn server_socket((ipv6, port, protocol): ServerKey) -> Result<Socket, (ServerKey, std::io::Error)> {
    let key = (ipv6, port, protocol);
    let build = || -> std::io::Result<Socket> {
        let (domain, address) = if ipv6 {
            (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        } else {
            (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let ty = if protocol == Protocol::Tcp {
            Type::STREAM
        } else {
            Type::DGRAM
        };
        let socket = Socket::new(domain, ty, None)?;
        if ipv6 {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(address, port).into())?;
        if protocol == Protocol::Tcp {
            socket.listen(1024)?;
        }
        Ok(socket)
    };
    build().map_err(|e| (key, e))
}

async fn serve_tcp(listener: tokio::net::TcpListener) {
    // The handshake is the probe; accepted streams are closed at once.
    // Accept errors (EMFILE, ECONNABORTED) only fail that one probe.
    while let Ok((stream, _)) = listener.accept().await {
        drop(stream);
    }
}

async fn serve_udp(socket: tokio::net::UdpSocket) {
    let mut buffer = [0_u8; 512];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            // An ICMP error queued on the socket; the next datagram may be fine.
            continue;
        };
        // A lost echo is a failed probe, retried by the client.
        let _ = socket.send_to(&buffer[..len.min(buffer.len())], peer).await;
    }
}

/// Each pod's own addresses: what probes dial without `--via-service`.
pub fn pod_addresses(plan: &Plan) -> BTreeMap<String, Vec<IpAddr>> {
    plan.pods
        .iter()
        .map(|p| (p.id.clone(), p.addresses.clone()))
        .collect()
}

/// One directed probe before it runs: one port, one family.
struct Job {
    /// Index into the source list.
    source: usize,
    from: String,
    to: String,
    port: PodPort,
    family: Family,
    /// What to dial; none for a protocol the lab cannot probe (SCTP).
    target: Option<SocketAddr>,
}

/// Probes every pod pair (and each node to its local pods) in every family
/// both ends have and returns the results sorted by from, to, port,
/// protocol, family. `dial` gives the addresses used to reach a pod (its
/// IPs, or its ClusterIPs under `--via-service`).
pub fn probe_all(
    plan: &Plan,
    topology: &Topology,
    rt: &tokio::runtime::Runtime,
    dial: &BTreeMap<String, Vec<IpAddr>>,
    timeouts: Timeouts,
) -> Result<(Vec<Probe>, Vec<NodeProbe>), LabError> {
    let mut sources: Vec<(String, &Netns)> = plan
        .pods
        .iter()
        .map(|p| (p.id.clone(), topology.pod(p)))
        .collect();
    let pod_sources = sources.len();
    sources.extend(
        plan.nodes
            .iter()
            .map(|n| (n.name.clone(), topology.node(n.index))),
    );
    let jobs = plan_jobs(plan, dial, pod_sources);
    let connections = jobs.iter().filter(|j| j.target.is_some()).count();
    tracing::info!(
        probes = jobs.len(),
        connections,
        "probing (TCP connect {} ms, UDP {} x {} ms)",
        timeouts.tcp_connect.as_millis(),
        timeouts.udp_attempts,
        timeouts.udp_reply.as_millis()
    );
    let started = Instant::now();
    let sockets = client_sockets(&sources, &jobs)?;
    let outcomes = rt.block_on(run_jobs(&jobs, sockets, timeouts));
    let (mut probes, mut node_probes) = split_results(&jobs, outcomes, pod_sources);
    probes.sort_by(|a, b| a.key().cmp(&b.key()));
    node_probes.sort_by(|a, b| a.key().cmp(&b.key()));
    let connected = probes.iter().filter(|p| p.connected).count();
    tracing::info!(
        probes = probes.len(),
        connected,
        node_probes = node_probes.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "probes done"
    );
    Ok((probes, node_probes))
}

/// Every pod → pod job (sources `0..pod_sources`), then every node → local
/// pod job (source `pod_sources + n` for the n-th node).
fn plan_jobs(plan: &Plan, dial: &BTreeMap<String, Vec<IpAddr>>, pod_sources: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (s, from) in plan.pods.iter().enumerate() {
        for to in &plan.pods {
            let addresses = dial.get(&to.id).map_or(&[][..], Vec::as_slice);
            for address in addresses {
                if from.address_like(*address).is_some() {
                    push_jobs(&mut jobs, s, &from.id, to, *address);
                }
            }
        }
    }
    for (n, node) in plan.nodes.iter().enumerate() {
        for to in plan
            .pods
            .iter()
            .filter(|p| p.node == node.index && !p.host_network)
        {
            for address in &to.addresses {
                push_jobs(&mut jobs, pod_sources + n, &node.name, to, *address);
            }
        }
    }
    jobs
}

/// Turns job outcomes into pod probes and node probes.
fn split_results(
    jobs: &[Job],
    outcomes: Vec<bool>,
    pod_sources: usize,
) -> (Vec<Probe>, Vec<NodeProbe>) {
    let mut probes = Vec::new();
    let mut node_probes = Vec::new();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let skipped = job.target.is_none();
        let connected = !skipped && outcome;
        let port = job.port.port;
        let protocol = job.port.protocol.as_str().to_owned();
        let family = job.family;
        if job.source < pod_sources {
            probes.push(Probe {
                from: job.from.clone(),
                to: job.to.clone(),
                port,
                protocol,
                family,
                connected,
                skipped,
            });
        } else {
            node_probes.push(NodeProbe {
                node: job.from.clone(),
                to: job.to.clone(),
                port,
                protocol,
                family,
                connected,
                skipped,
            });
        }
    }
    (probes, node_probes)
}

/// One job per port of `to`, dialling `address`.
fn push_jobs(jobs: &mut Vec<Job>, source: usize, from: &str, to: &LabPod, address: IpAddr) {
    for port in &to.ports {
        jobs.push(Job {
            source,
            from: from.to_owned(),
            to: to.id.clone(),
            port: *port,
            family: family_of(address),
            target: (port.protocol != Protocol::Sctp).then(|| SocketAddr::new(address, port.port)),
        });
    }
}

/// Creates one socket per job target, each inside its source's namespace.
fn client_sockets(
    sources: &[(String, &Netns)],
    jobs: &[Job],
) -> Result<Vec<Option<Socket>>, LabError> {
    let mut sockets: Vec<Option<Socket>> = Vec::with_capacity(jobs.len());
    sockets.resize_with(jobs.len(), || None);
    for (s, (label, ns)) in sources.iter().enumerate() {
        let mine: Vec<usize> = (0..jobs.len()).filter(|j| jobs[*j].source == s).collect();
        let made = ns.run(|| {
            mine.iter()
                .map(|j| {
                    jobs[*j]
                        .target
                        .map(|target| client_socket(target, jobs[*j].port.protocol))
                        .transpose()
                })
                .collect::<std::io::Result<Vec<_>>>()
        })?;
        let made = made.map_err(|e| LabError::socket(label, "create a probe socket", e))?;
        for (j, socks) in mine.into_iter().zip(made) {
            sockets[j] = socks;
        }
    }
    Ok(sockets)
}

fn client_socket(target: SocketAddr, protocol: Protocol) -> std::io::Result<Socket> {
    let ty = if protocol == Protocol::Tcp {
        Type::STREAM
    } else {
        Type::DGRAM
    };
    let socket = Socket::new(Domain::for_address(target), ty, None)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

async fn run_jobs(jobs: &[Job], sockets: Vec<Option<Socket>>, timeouts: Timeouts) -> Vec<bool> {
    let mut set = JoinSet::new();
    for (j, (job, socket)) in jobs.iter().zip(sockets).enumerate() {
        if let (Some(target), Some(socket)) = (job.target, socket) {
            let protocol = job.port.protocol;
            let payload = format!("nftpol-lab {} {} {target}", job.from, job.to).into_bytes();
            set.spawn(async move {
                let ok = match protocol {
                    Protocol::Tcp => probe_tcp(socket, target, timeouts).await,
                    Protocol::Udp => probe_udp(socket, target, &payload, timeouts).await,
                    Protocol::Sctp => false,
                };
                if !ok {
                    tracing::debug!(%target, ?protocol, "probe blocked");
                }
                (j, ok)
            });
        }
    }
    // A job without a target (skipped) or whose task failed stays false.
    let mut outcomes = vec![false; jobs.len()];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((j, ok)) => outcomes[j] = ok,
            Err(e) => {
                // A probe task cannot panic short of a tokio bug; treat it
                // as blocked rather than guessing which probe it was.
                tracing::error!(error = %e, "probe task failed");
            }
        }
    }
    outcomes
}

async fn probe_tcp(socket: Socket, target: SocketAddr, timeouts: Timeouts) -> bool {
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    matches!(
        tokio::time::timeout(timeouts.tcp_connect, socket.connect(target)).await,
        Ok(Ok(_))
    )
}

async fn probe_udp(socket: Socket, target: SocketAddr, payload: &[u8], timeouts: Timeouts) -> bool {
    let Ok(socket) = tokio::net::UdpSocket::from_std(socket.into()) else {
        return false;
    };
    if socket.connect(target).await.is_err() {
        return false;
    }
    let mut buffer = vec![0_u8; payload.len() + 1];
    for _ in 0..timeouts.udp_attempts {
        if socket.send(payload).await.is_err() {
            return false;
        }
        match tokio::time::timeout(timeouts.udp_reply, socket.recv(&mut buffer)).await {
            Ok(Ok(len)) if buffer.get(..len) == Some(payload) => return true,
            // ICMP unreachable (rejected, or no server): final.
            Ok(Err(_)) => return false,
            // A stray datagram or a timeout: ask again.
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{plan_jobs, pod_addresses, Family};
    use crate::plan::place;

    /// Dual-stack d, IPv4-only v4, IPv6-only v6 (each serving 80/TCP) and
    /// SCTP-only s (dual-stack), all on node-1.
    const PODS: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x}
spec: {containers: [{name: s, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 10.244.1.20}, {ip: 'fd00:10:244:1::20'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v4, namespace: x}
spec: {containers: [{name: s, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 10.244.1.21}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v6, namespace: x}
spec: {containers: [{name: s, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 'fd00:10:244:1::22'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s, namespace: x}
spec: {containers: [{name: s, ports: [{containerPort: 9, protocol: SCTP}]}]}
status: {podIPs: [{ip: 10.244.1.23}, {ip: 'fd00:10:244:1::23'}]}
";

    #[test]
    fn a_pair_is_one_job_per_family_both_ends_have_and_none_without_one() {
        let mut cluster = nftpol_model::manifests::parse(PODS)
            .expect("the test pods parse")
            .cluster;
        let plan = place(&mut cluster, Some(1)).expect("the test pods place");
        let pod_sources = plan.pods.len();
        let jobs = plan_jobs(&plan, &pod_addresses(&plan), pod_sources);
        let pods: Vec<(&str, &str, Family, bool)> = jobs
            .iter()
            .filter(|job| job.source < pod_sources)
            .map(|job| {
                (
                    job.from.as_str(),
                    job.to.as_str(),
                    job.family,
                    job.target.is_some(),
                )
            })
            .collect();
        let want: Vec<(&str, &str, Family, bool)> = vec![
            ("x/d", "x/d", Family::V4, true),
            ("x/d", "x/d", Family::V6, true),
            ("x/d", "x/s", Family::V4, false),
            ("x/d", "x/s", Family::V6, false),
            ("x/d", "x/v4", Family::V4, true),
            ("x/d", "x/v6", Family::V6, true),
            ("x/s", "x/d", Family::V4, true),
            ("x/s", "x/d", Family::V6, true),
            ("x/s", "x/s", Family::V4, false),
            ("x/s", "x/s", Family::V6, false),
            ("x/s", "x/v4", Family::V4, true),
            ("x/s", "x/v6", Family::V6, true),
            ("x/v4", "x/d", Family::V4, true),
            ("x/v4", "x/s", Family::V4, false),
            ("x/v4", "x/v4", Family::V4, true),
            // v4 → v6 and v6 → v4: no family in common, no probe.
            ("x/v6", "x/d", Family::V6, true),
            ("x/v6", "x/s", Family::V6, false),
            ("x/v6", "x/v6", Family::V6, true),
        ];
        assert_eq!(pods, want);
        let node: Vec<(&str, Family)> = jobs
            .iter()
            .filter(|job| job.source >= pod_sources)
            .map(|job| (job.to.as_str(), job.family))
            .collect();
        assert_eq!(
            node,
            vec![
                ("x/d", Family::V4),
                ("x/d", Family::V6),
                ("x/s", Family::V4),
                ("x/s", Family::V6),
                ("x/v4", Family::V4),
                ("x/v6", Family::V6),
            ],
            "node → local pod in each of the pod's families"
        );
    }
}
