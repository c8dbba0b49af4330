//! `nftpol trace`: why a packet passes or is dropped right now, from what
//! the kernel holds. Reads table `inet nftpol` back from the current
//! network namespace, walks a connection's first packet through it with
//! the IR interpreter, through the base chains of the hook it crosses here
//! as the kernel would pick it (output when the source address is this
//! namespace's own, a hostNetwork pod or the node; input when the
//! destination is; forward otherwise, as pod traffic crosses a node), and
//! prints each direction's path: every rule reached, matched or not,
//! every set looked up and whether the address was in it, the verdict and
//! the policies that decided (named by the rules' comments, which the
//! kernel keeps).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nftpol_ir::interpret::{interpret, Packet, Trace};
use nftpol_ir::{Hook, Ruleset};
use nftpol_model::Protocol;
use nftpol_netlink::Dataplane;

/// `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Family {
    /// IPv4 addresses of named pods.
    #[value(name = "IPv4", alias = "ipv4")]
    Ipv4,
    /// IPv6 addresses of named pods.
    #[value(name = "IPv6", alias = "ipv6")]
    Ipv6,
}

/// Flags of `nftpol trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Source: `namespace/pod` or an IP address.
    #[arg(long)]
    from: String,
    /// Destination: `namespace/pod` or an IP address.
    #[arg(long)]
    to: String,
    /// Destination port and protocol, e.g. `80/TCP`.
    #[arg(long)]
    port: String,
    /// The address family of named pods.
    #[arg(long, value_enum, default_value = "IPv4")]
    family: Family,
    /// Resolve pod names from these manifests (default: the live cluster
    /// through KUBECONFIG; not needed for addresses).
    #[arg(long)]
    manifests: Option<std::path::PathBuf>,
}

/// Traces the connection; exit 0 when both directions accept it, 1 when
/// one drops or rejects it.
pub fn run(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let (number, protocol) = args.port.split_once('/').unwrap_or((&args.port, "TCP"));
    let Some(protocol) = Protocol::parse(Some(&protocol.to_ascii_uppercase())) else {
        bail!("unknown protocol in {:?}: use TCP, UDP or SCTP", args.port);
    };
    let port: u16 = number
        .parse()
        .with_context(|| format!("{number:?} is not a port number"))?;
    let mut cluster = None;
    let mut address = |text: &str| -> anyhow::Result<IpAddr> {
        if let Ok(address) = text.parse() {
            return Ok(address);
        }
        if cluster.is_none() {
            cluster = Some(match &args.manifests {
                Some(path) => crate::manifests::load(path)?,
                None => crate::live::load()?,
            });
        }
        crate::manifests::pod_address(
            cluster.as_ref().context("the cluster was read")?,
            text,
            Some(args.family == Family::Ipv4),
        )
    };
    let source = address(&args.from)?;
    let destination = address(&args.to)?;
    let hook = hook_of(source, destination)?;
    let packet = Packet {
        source_is_local: hook == Hook::Output,
        ..Packet::opening(hook, source, destination, protocol.number(), port)
    };
    if packet.source.is_ipv4() != packet.destination.is_ipv4() {
        bail!("the source and destination addresses are of different families");
    }
    let ruleset = crate::open_kernel()?
        .read()
        .context("reading table inet nftpol back from the kernel")?
        .context("this network namespace has no table inet nftpol: is the agent running here?")?;
    let (text, accepted) = describe(&ruleset, &packet, &args.port)?;
    crate::print(&text)?;
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The hook a connection's first packet crosses in this network namespace:
/// output when it leaves from one of this namespace's addresses, input
/// when it arrives at one, forward when it only passes through.
fn hook_of(source: IpAddr, destination: IpAddr) -> anyhow::Result<Hook> {
    let local = local_addresses()?;
    Ok(if local.contains(&source) {
        Hook::Output
    } else if local.contains(&destination) {
        Hook::Input
    } else {
        Hook::Forward
    })
}

/// The addresses of this network namespace's interfaces.
fn local_addresses() -> anyhow::Result<Vec<IpAddr>> {
    let addresses =
        nix::ifaddrs::getifaddrs().context("listing the addresses of this network namespace")?;
    Ok(addresses
        .filter_map(|interface| interface.address)
        .filter_map(|address| {
            address
                .as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
}

/// The printed trace of `packet`, and whether every direction accepts it.
fn describe(ruleset: &Ruleset, packet: &Packet, port: &str) -> anyhow::Result<(String, bool)> {
    let mut out = format!(
        "{} -> {} port {port}, first packet (ct state new), hook {}\n",
        packet.source,
        packet.destination,
        packet.hook.name()
    );
    let mut accepted = true;
    let chains = per_base_chain(ruleset, packet)?;
    if chains.is_empty() {
        let _ = writeln!(
            out,
            "\nno base chain of table inet nftpol on hook {}: nothing here judges it",
            packet.hook.name()
        );
    }
    for (name, trace) in chains {
        let _ = writeln!(out, "\n{name}:");
        for step in &trace.steps {
            let mark = if step.matched { "match" } else { "-    " };
            let _ = writeln!(
                out,
                "  {mark} {} [{}] {}",
                step.chain, step.position, step.rule
            );
            for lookup in &step.lookups {
                let found = if lookup.found { "in" } else { "not in" };
                let _ = writeln!(out, "          address {found} @{}", lookup.set);
            }
        }
        for log in &trace.logs {
            let _ = writeln!(
                out,
                "  logged to NFLOG group {} as {}",
                log.group, log.prefix
            );
        }
        let decided = trace.hits.last().map_or_else(
            || {
                "no rule decided: the chain's policy accept (the pod is not isolated here)"
                    .to_owned()
            },
            |hit| format!("by {hit}"),
        );
        let verdict = if trace.accepted { "accept" } else { "DROP" };
        let _ = writeln!(out, "  => {verdict} {decided}");
        accepted &= trace.accepted;
    }
    let _ = writeln!(
        out,
        "\nverdict: {}",
        if accepted { "accepted" } else { "dropped" }
    );
    Ok((out, accepted))
}

/// Each base chain of the packet's hook walked on its own (the kernel stops
/// at the first drop; tracing every direction shows both sides' reasons).
fn per_base_chain(ruleset: &Ruleset, packet: &Packet) -> anyhow::Result<Vec<(String, Trace)>> {
    let mut bases: Vec<(i32, String)> = ruleset
        .chains
        .values()
        .filter_map(|chain| {
            chain
                .base
                .filter(|base| base.hook == packet.hook)
                .map(|base| (base.priority, chain.name.clone()))
        })
        .collect();
    bases.sort();
    bases
        .into_iter()
        .map(|(_, name)| {
            let mut alone = ruleset.clone();
            for chain in alone.chains.values_mut() {
                if chain.name != name && chain.base.is_some_and(|base| base.hook == packet.hook) {
                    chain.base = None;
                }
            }
            let trace = interpret(&alone, packet)
                .with_context(|| format!("walking the packet through {name}"))?;
            Ok((name, trace))
        })
        .collect()
}
