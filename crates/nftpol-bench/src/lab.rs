//! The two-node lab of the dataplane measurements ([`crate::dataplane`],
//! [`crate::features`], [`crate::rejudge`]): an nftpol-lab topology (a
//! fabric namespace, two node namespaces, two pod namespaces; the
//! `Topology` removes them all when dropped, also on error), and the tables
//! loaded into its node namespaces, the routers every packet between the
//! two pods crosses.
//!
//! The client pod `ns-0/bench-client` (app-0, node-1) connects to the server
//! pod `ns-0/bench-server` (app-1, node-2) on port 8080, which the
//! generated policies allow (`app-0-egress`, `app-1-ingress`). Both pods are
//! added to a generated cluster; node-1's table is the cluster's model for
//! node-1 and node-2's for node-2, so the SYN crosses node-1's egress chains
//! and node-2's ingress chains with every generated pod as set elements.
//!
//! Building the lab pins the measuring thread, and so every thread it
//! starts afterwards, to one CPU ([`pin_to_one_cpu`]).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Context as _, Result};
use nftpol_ir::diff::diff;
use nftpol_ir::{Ruleset, TABLE_NAME};
use nftpol_lab::netns::RunId;
use nftpol_lab::plan::place;
use nftpol_lab::topology::Topology;
use nftpol_model::{resolve, Cluster};
use nftpol_netlink::{Dataplane as _, KernelDataplane};
use nftpol_ruleset::compile::{compile, CompileOptions, Compiled};

use crate::commit::nft_load;
use crate::generate::{self, Shape};
use crate::measure::timed;

/// The table of the conntrack-only setup, beside (never inside) nftpol's.
const CONNTRACK_ONLY_TABLE: &str = "conntrack-only";

/// The least a stateful enforcer installs on a router: conntrack on the
/// forward path and the bypass of established flows, no policy at all.
/// Conntrack runs in a namespace only once some rule there needs it, so a
/// router without any table is not what an enforcer can reach.
fn conntrack_only_text() -> String {
    format!(
        "table inet {CONNTRACK_ONLY_TABLE} {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t}}\n\
         }}\n"
    )
}

/// The two-node lab: client pod on node-1, server pod on node-2.
pub(crate) struct Lab {
    /// Owns every namespace; dropping it removes them.
    pub(crate) topology: Topology,
    /// The client pod's namespace and address.
    pub(crate) client: (File, Ipv4Addr),
    /// The server pod's namespace and address.
    pub(crate) server: (File, Ipv4Addr),
    /// The CPU every measuring thread runs on.
    pub(crate) cpu: usize,
}

/// Pins the calling thread to the last CPU it may run on; threads it starts
/// afterwards inherit the mask. A veth transmit runs both routers'
/// forwarding and the server's answer in softirq on the sending CPU, so one
/// CPU carries the whole connection. Measured on this 2-vCPU machine (#11):
/// unpinned, whole rounds of connects ran about 1.5× slower than the rest
/// (10 vs 14 µs p50 without a table) as the thread moved between the two
/// CPUs; pinned, one run's rounds agreed within a few percent, but the next
/// run's still flipped between 13 and 21 µs as the machine's own speed
/// changed under them. Pinning removes one source of that; the samples
/// paired with a reference lab ([`crate::rounds::Labs`]) cancel the rest.
fn pin_to_one_cpu() -> Result<usize> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let this_thread = Pid::from_raw(0);
    let allowed = sched_getaffinity(this_thread).context("sched_getaffinity")?;
    let cpu = (0..CpuSet::count())
        .rev()
        .find(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .context("this thread may run on no CPU")?;
    let mut one = CpuSet::new();
    one.set(cpu).context("a CPU set of one")?;
    sched_setaffinity(this_thread, &one).with_context(|| format!("pinning to CPU {cpu}"))?;
    Ok(cpu)
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

/// Builds the lab (and installs the teardown of its namespaces on SIGTERM),
/// pinning the calling thread to one CPU.
pub(crate) fn build(rt: &tokio::runtime::Runtime) -> Result<Lab> {
    nftpol_lab::netns::install_signal_teardown().map_err(|e| anyhow!("signal teardown: {e}"))?;
    let cpu = pin_to_one_cpu()?;
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
        cpu,
    })
}

/// A second lab holding the conntrack-only setup all along: the reference
/// the samples of [`crate::rounds`] are paired with.
pub(crate) fn build_reference(rt: &tokio::runtime::Runtime) -> Result<Lab> {
    let reference = build(rt)?;
    Tables::ConntrackOnly
        .load(&reference)
        .context("loading conntrack-only into the reference lab")?;
    Ok(reference)
}

/// A current-thread runtime for building the lab.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the lab")
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
pub(crate) fn cluster(pods: usize, policies: usize, seed: u64, lab: &Lab) -> Cluster {
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

/// Node-1's and node-2's rulesets under `options`.
pub(crate) fn rulesets_with(cluster: &Cluster, options: CompileOptions) -> [Compiled; 2] {
    ["node-1", "node-2"].map(|node| compile(&resolve(cluster, node), options))
}

/// Handles on node-1's and node-2's namespaces.
pub(crate) fn node_files(lab: &Lab) -> Result<[File; 2]> {
    Ok([
        lab.topology.node(1).file().try_clone()?,
        lab.topology.node(2).file().try_clone()?,
    ])
}

/// What one setup puts on the two routers.
#[derive(Debug)]
pub(crate) enum Tables {
    /// Nothing: no table, no conntrack.
    None,
    /// The conntrack-only table on both nodes (`nft -f`).
    ConntrackOnly,
    /// nftpol's rulesets, committed through netlink as the agent does.
    Nftpol(Box<[Ruleset; 2]>),
    /// `nft -f` texts of table `inet nftpol` (the linear contrast).
    Text(Box<[String; 2]>),
}

impl Tables {
    /// Loads the tables into node-1 and node-2; ms for both.
    pub(crate) fn load(&self, lab: &Lab) -> Result<f64> {
        match self {
            Self::None => Ok(0.0),
            Self::ConntrackOnly => {
                let text = conntrack_only_text();
                load_texts(lab, &[text.clone(), text])
            }
            Self::Nftpol(rulesets) => load_nftpol(lab, rulesets),
            Self::Text(texts) => load_texts(lab, texts),
        }
    }

    /// Removes what [`Tables::load`] loaded.
    pub(crate) fn unload(&self, lab: &Lab) -> Result<()> {
        match self {
            Self::None => Ok(()),
            Self::ConntrackOnly => {
                let text = format!("delete table inet {CONNTRACK_ONLY_TABLE}\n");
                load_texts(lab, &[text.clone(), text]).map(|_| ())
            }
            Self::Nftpol(_) | Self::Text(_) => unload(lab),
        }
    }

    /// Rules on node-1 plus node-2.
    pub(crate) fn rules(&self, linear_rules: usize) -> usize {
        match self {
            Self::None => 0,
            Self::ConntrackOnly => 2,
            Self::Nftpol(rulesets) => rulesets.iter().map(Ruleset::rule_count).sum(),
            Self::Text(_) => linear_rules,
        }
    }
}

/// Commits `rulesets` into node-1 and node-2 through netlink; ms for both.
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

fn load_texts(lab: &Lab, texts: &[String; 2]) -> Result<f64> {
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

/// Deletes table `inet nftpol` on both nodes.
pub(crate) fn unload(lab: &Lab) -> Result<()> {
    for file in node_files(lab)? {
        inside(&file, || {
            let mut kernel = KernelDataplane::open().context("opening the netlink socket")?;
            kernel
                .delete_table()
                .with_context(|| format!("deleting table inet {TABLE_NAME}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_only_table_holds_one_rule_and_is_not_nftpols() {
        let text = conntrack_only_text();
        assert!(!text.contains(&format!("table inet {TABLE_NAME} ")));
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("ct "))
            .collect();
        assert_eq!(rules, ["ct state established,related accept"]);
    }
}
