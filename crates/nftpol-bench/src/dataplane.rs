//! Measurement 4: new TCP connections and bulk throughput between two pods
//! on different nodes of an nftpol-lab topology (a fabric namespace, two
//! node namespaces, two pod namespaces; the `Topology` removes them all when
//! dropped, also on error).
//!
//! The client pod `ns-0/bench-client` (app-0, node-1) connects to the server
//! pod `ns-0/bench-server` (app-1, node-2) on port 8080, which the
//! generated policies allow (`app-0-egress`, `app-1-ingress`). Both pods are
//! added to a generated cluster; node-1's table is the cluster's model for
//! node-1 and node-2's for node-2, so the SYN crosses node-1's egress chains
//! and node-2's ingress chains with every generated pod as set elements.
//!
//! Setups: (a) no table at all; (b) nftpol's ruleset committed through
//! netlink; (c) the same allow-list as linear rules ([`crate::linear`])
//! loaded with `nft -f`. Connections are sequential (one client thread),
//! each closed with RST (`SO_LINGER 0`) so no TIME_WAIT piles up; every
//! loop is bounded by a deadline. A connect to a port no policy allows
//! proves enforcement is on: it is refused without a table and times out
//! (dropped) with one.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use std::fs::File;

use nftpol_ir::diff::diff;
use nftpol_ir::Ruleset;
use nftpol_lab::netns::RunId;
use nftpol_lab::plan::place;
use nftpol_lab::topology::Topology;
use nftpol_model::{resolve, Cluster};
use nftpol_netlink::{Dataplane as _, KernelDataplane};
use nftpol_ruleset::compile::{compile, CompileOptions, Compiled};
use serde::{Deserialize, Serialize};

use crate::commit::nft_load;
use crate::generate::{self, Shape, HTTP_PORT};
use crate::linear::render_linear;
use crate::measure::{timed, Summary};

/// A port no generated policy allows to app-1.
const DENIED_PORT: u16 = 9999;

/// One setup at one policy count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Policies in the generated cluster.
    pub policies: usize,
    /// Rules on node-1 plus node-2.
    pub rules: usize,
    /// Set elements on node-1 plus node-2.
    pub elements: usize,
    /// Loading both nodes' tables, ms.
    pub load_ms: f64,
    /// Completed connections per second.
    pub connections_per_s: f64,
    /// Connect latency, ms.
    pub connect: Summary,
    /// Connects that failed or timed out.
    pub failures: usize,
    /// What a connect to a port no policy allows did: `refused` or `dropped`.
    pub denied_port: String,
}

/// Bulk throughput over one established connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// `none`, `nftpol` or `linear`, with the policy count.
    pub setup: String,
    /// Gbit/s.
    pub gbit_per_s: f64,
}

/// What measurement 4 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataplaneResult {
    /// Generated pods.
    pub pods: usize,
    /// Seconds per point.
    pub seconds: f64,
    /// (a) no table.
    pub baseline: Point,
    /// (b) nftpol.
    pub nftpol: Vec<Point>,
    /// (c) linear rules via `nft -f`.
    pub linear: Vec<Point>,
    /// Bulk throughput.
    pub throughput: Vec<Throughput>,
    /// Points that could not be measured, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The two-node lab: client pod on node-1, server pod on node-2.
pub(crate) struct Lab {
    /// Owns every namespace; dropping it removes them.
    pub(crate) topology: Topology,
    /// The client pod's namespace and address.
    pub(crate) client: (File, Ipv4Addr),
    /// The server pod's namespace and address.
    pub(crate) server: (File, Ipv4Addr),
}

fn v4(addresses: &[IpAddr]) -> Result<Ipv4Addr> {
    addresses
        .iter()
        .find_map(|address| match address {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .context("a lab pod without an IPv4 address")
}

pub(crate) fn build_lab(rt: &tokio::runtime::Runtime) -> Result<Lab> {
    let mut objects = Cluster {
        pods: vec![
            generate::pod(
                "ns-0",
                "bench-client",
                &[("app", "app-0")],
                "node-1",
                Ipv4Addr::UNSPECIFIED,
            ),
            generate::pod(
                "ns-0",
                "bench-server",
                &[("app", "app-1")],
                "node-2",
                Ipv4Addr::UNSPECIFIED,
            ),
        ],
        ..Cluster::default()
    };
    for pod in &mut objects.pods {
        pod.status = None;
    }
    let plan = place(&mut objects, Some(2)).map_err(|e| anyhow!("placing the lab pods: {e}"))?;
    let topology =
        Topology::build(&plan, &RunId::new(), rt).map_err(|e| anyhow!("building the lab: {e}"))?;
    let find = |id: &str| -> Result<(File, Ipv4Addr)> {
        let pod = plan
            .pods
            .iter()
            .find(|pod| pod.id == id)
            .with_context(|| format!("lab pod {id}"))?;
        let handle = topology
            .pod(pod)
            .file()
            .try_clone()
            .context("duplicating a namespace handle")?;
        Ok((handle, v4(&pod.addresses)?))
    };
    let client = find("ns-0/bench-client")?;
    let server = find("ns-0/bench-server")?;
    Ok(Lab {
        topology,
        client,
        server,
    })
}

/// Moves the calling thread into the namespace behind `file`.
fn enter(file: &File) -> Result<()> {
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .context("setns into a lab namespace")
}

/// Runs `f` on a thread inside the namespace behind `file`.
pub(crate) fn inside<T: Send>(file: &File, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(file)?;
                f()
            })
            .join()
            .map_err(|_| anyhow!("a lab thread panicked"))?
    })
}

/// The generated cluster with the two lab pods in it, and lab pod CIDRs on
/// the lab nodes (so the pods are known local pods).
pub(crate) fn bench_cluster(pods: usize, policies: usize, seed: u64, lab: &Lab) -> Cluster {
    let mut cluster = generate::cluster(Shape {
        pods,
        policies,
        seed,
    });
    cluster.pods.push(generate::pod(
        "ns-0",
        "bench-client",
        &[("app", "app-0"), ("tier", generate::tier(0))],
        "node-1",
        lab.client.1,
    ));
    cluster.pods.push(generate::pod(
        "ns-0",
        "bench-server",
        &[("app", "app-1"), ("tier", generate::tier(1))],
        "node-2",
        lab.server.1,
    ));
    for node in &mut cluster.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lab_cidr = match name.as_str() {
            "node-1" => "10.244.1.0/24",
            "node-2" => "10.244.2.0/24",
            _ => continue,
        };
        if let Some(spec) = node.spec.as_mut() {
            spec.pod_cidrs
                .get_or_insert_default()
                .push(lab_cidr.to_owned());
        }
    }
    cluster
}

/// Node-1's and node-2's rulesets.
fn rulesets(cluster: &Cluster) -> [Compiled; 2] {
    rulesets_with(cluster, CompileOptions::default())
}

/// Node-1's and node-2's rulesets under `options`.
pub(crate) fn rulesets_with(cluster: &Cluster, options: CompileOptions) -> [Compiled; 2] {
    ["node-1", "node-2"].map(|node| compile(&resolve(cluster, node), options))
}

pub(crate) fn node_files(lab: &Lab) -> Result<[File; 2]> {
    Ok([
        lab.topology.node(1).file().try_clone()?,
        lab.topology.node(2).file().try_clone()?,
    ])
}

pub(crate) fn load_nftpol(lab: &Lab, rulesets: &[Ruleset; 2]) -> Result<f64> {
    let files = node_files(lab)?;
    let mut total = 0.0;
    for (file, ruleset) in files.iter().zip(rulesets) {
        total += inside(file, || {
            let mut kernel = KernelDataplane::open().context("opening the netlink socket")?;
            let changes = diff(None, ruleset);
            let (applied, elapsed) = timed(|| kernel.apply(&changes));
            applied.context("nftpol's batch was rejected")?;
            Ok(elapsed)
        })?;
    }
    Ok(total)
}

fn load_linear(lab: &Lab, texts: &[String; 2]) -> Result<f64> {
    let files = node_files(lab)?;
    let mut total = 0.0;
    for (file, text) in files.iter().zip(texts) {
        total += inside(file, || {
            let (loaded, elapsed) = timed(|| nft_load(text));
            loaded?;
            Ok(elapsed)
        })?;
    }
    Ok(total)
}

pub(crate) fn unload(lab: &Lab) -> Result<()> {
    for file in node_files(lab)? {
        inside(&file, || {
            let mut kernel = KernelDataplane::open().context("opening the netlink socket")?;
            kernel.delete_table().context("deleting the table")
        })?;
    }
    Ok(())
}

/// Accepts until `stop`, reading every connection to its end; returns bytes read.
fn serve(listener: &TcpListener, stop: &AtomicBool) -> u64 {
    let mut total = 0u64;
    let mut buffer = vec![0u8; 1 << 16];
    while let Ok((mut stream, _)) = listener.accept() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        while let Ok(read) = stream.read(&mut buffer) {
            if read == 0 {
                break;
            }
            total += u64::try_from(read).unwrap_or(0);
        }
    }
    total
}

fn reset_on_close(stream: &TcpStream) -> Result<()> {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .context("SO_LINGER")
}

/// Runs `client` inside the client pod against a server in the server pod.
fn with_server<T: Send>(
    lab: &Lab,
    client: impl FnOnce(SocketAddr) -> Result<T> + Send,
) -> Result<(T, u64)> {
    let target = SocketAddr::from((lab.server.1, HTTP_PORT));
    let listener = inside(&lab.server.0, || {
        TcpListener::bind(target).context("binding the server")
    })?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| serve(&listener, &stop));
        let outcome = inside(&lab.client.0, || client(target));
        stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop; the server stops whether or not it connects.
        let woke = inside(&lab.client.0, || {
            Ok(TcpStream::connect_timeout(&target, Duration::from_secs(1)))
        });
        if !matches!(woke, Ok(Ok(_))) {
            // The accept loop would block forever: shut the listener down.
            nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&listener),
                nix::sys::socket::Shutdown::Both,
            )
            .context("stopping the server")?;
        }
        let bytes = server
            .join()
            .map_err(|_| anyhow!("the server thread panicked"))?;
        Ok((outcome?, bytes))
    })
}

fn denied_probe(target: SocketAddr) -> String {
    let denied = SocketAddr::new(target.ip(), DENIED_PORT);
    match TcpStream::connect_timeout(&denied, Duration::from_millis(300)) {
        Ok(_) => "connected".to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => "refused".to_owned(),
        Err(_) => "dropped".to_owned(),
    }
}

/// Sequential connects for `seconds`.
pub(crate) fn connections(
    lab: &Lab,
    seconds: f64,
    policies: usize,
    rules: usize,
    elements: usize,
    load_ms: f64,
) -> Result<Point> {
    let ((latencies, failures, elapsed, denied_port), _) = with_server(lab, |target| {
        let deadline = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut failures = 0;
        while started.elapsed() < deadline && failures < 100 {
            let (connected, elapsed) =
                timed(|| TcpStream::connect_timeout(&target, Duration::from_secs(1)));
            match connected {
                Ok(stream) => {
                    latencies.push(elapsed);
                    reset_on_close(&stream)?;
                }
                Err(_) => failures += 1,
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        Ok((latencies, failures, elapsed, denied_probe(target)))
    })?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "connection counts far below 2^52"
    )]
    let connections_per_s = latencies.len() as f64 / elapsed;
    Ok(Point {
        policies,
        rules,
        elements,
        load_ms,
        connections_per_s,
        connect: Summary::of(&latencies),
        failures,
        denied_port,
    })
}

/// Bulk transfer over one connection for `seconds`; Gbit/s.
pub(crate) fn throughput(lab: &Lab, seconds: f64, setup: String) -> Result<Throughput> {
    let (elapsed, bytes) = with_server(lab, |target| {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))
            .context("connecting for the bulk transfer")?;
        let buffer = vec![0x5au8; 1 << 17];
        let started = Instant::now();
        let deadline = Duration::from_secs_f64(seconds);
        while started.elapsed() < deadline {
            stream.write_all(&buffer).context("sending")?;
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .context("closing the bulk flow")?;
        let mut rest = [0u8; 1];
        // Waits for the server to finish reading (it closes on EOF).
        let _ = stream.read(&mut rest);
        Ok(started.elapsed().as_secs_f64())
    })?;
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let gbit_per_s = bytes as f64 * 8.0 / elapsed / 1e9;
    Ok(Throughput { setup, gbit_per_s })
}

fn counts(rulesets: &[Ruleset; 2]) -> (usize, usize) {
    (
        rulesets.iter().map(Ruleset::rule_count).sum(),
        rulesets.iter().map(Ruleset::element_count).sum(),
    )
}

/// Runs measurement 4.
pub fn run(
    pods: usize,
    policy_counts: &[usize],
    seconds: f64,
    seed: u64,
) -> Result<DataplaneResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the lab")?;
    nftpol_lab::netns::install_signal_teardown().map_err(|e| anyhow!("signal teardown: {e}"))?;
    let lab = build_lab(&rt)?;
    let baseline = connections(&lab, seconds, 0, 0, 0, 0.0)?;
    if baseline.denied_port != "refused" || baseline.connect.n == 0 {
        bail!("the lab does not connect without policies: {baseline:?}");
    }
    let mut result = DataplaneResult {
        pods,
        seconds,
        throughput: vec![throughput(&lab, seconds, "no table".to_owned())?],
        baseline,
        nftpol: Vec::new(),
        linear: Vec::new(),
        notes: Vec::new(),
    };
    let largest = policy_counts.iter().copied().max().unwrap_or(0);
    for &policies in policy_counts {
        eprintln!("nftpol-bench: dataplane at {policies} policies …");
        if let Err(error) = measure_point(&lab, &mut result, pods, policies, seed, largest) {
            eprintln!("nftpol-bench: dataplane at {policies} policies: {error:#}");
            result.notes.push(format!("{policies} policies: {error:#}"));
            // Leaves the lab clean for the next point; a table may be absent.
            let _ = unload(&lab);
        }
    }
    lab.topology
        .teardown()
        .map_err(|e| anyhow!("removing the lab: {e}"))?;
    Ok(result)
}

/// Most linear rules loaded with `nft -f` (larger texts take minutes and
/// gigabytes in nft 1.0.6; the point is then reported as not measured).
const LINEAR_RULE_LIMIT: usize = 400_000;

fn measure_point(
    lab: &Lab,
    result: &mut DataplaneResult,
    pods: usize,
    policies: usize,
    seed: u64,
    largest: usize,
) -> Result<()> {
    let seconds = result.seconds;
    let cluster = bench_cluster(pods, policies, seed, lab);
    let compiled = rulesets(&cluster);
    let rulesets = compiled.clone().map(|compiled| compiled.ruleset);
    drop(cluster);
    let (rules, elements) = counts(&rulesets);
    let load_ms = load_nftpol(lab, &rulesets)?;
    result.nftpol.push(connections(
        lab, seconds, policies, rules, elements, load_ms,
    )?);
    if policies == largest {
        result.throughput.push(throughput(
            lab,
            seconds,
            format!("nftpol, {policies} policies"),
        )?);
    }
    unload(lab)?;
    let (texts, linear_rules): (Vec<String>, Vec<usize>) =
        compiled.iter().map(render_linear).unzip();
    let linear_rules: usize = linear_rules.iter().sum();
    if linear_rules > LINEAR_RULE_LIMIT {
        bail!("linear rules not loaded: {linear_rules} rules exceed {LINEAR_RULE_LIMIT}");
    }
    let texts: [String; 2] = texts
        .try_into()
        .map_err(|_| anyhow!("two nodes, two texts"))?;
    let load_ms = load_linear(lab, &texts)?;
    result.linear.push(connections(
        lab,
        seconds,
        policies,
        linear_rules,
        elements,
        load_ms,
    )?);
    if policies == largest {
        result.throughput.push(throughput(
            lab,
            seconds,
            format!("linear, {policies} policies"),
        )?);
    }
    unload(lab)
}
