//! `nftpol`: the command-line entry point. Wiring only: parses flags, sets up
//! logging, calls the library crates, prints their output and maps errors to
//! exit codes.

mod agent;
mod allocator;
mod lab;
mod live;
mod manifests;
mod trace;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use nftpol_agent::Reconciler;
use nftpol_netlink::{Dataplane, KernelDataplane};
use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_ruleset::rejudge::{self, MarkBits, Rejudge};

/// Kubernetes NetworkPolicy enforcement with nftables, programmed over netlink.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr (levels via RUST_LOG).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: agent::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ruleset the agent would install on a node, in nft syntax.
    Render {
        /// A YAML file or a directory of YAML files (Namespace, Pod, NetworkPolicy, Node).
        #[arg(long)]
        manifests: std::path::PathBuf,
        /// The node to compile for.
        #[arg(long)]
        node: String,
        #[command(flatten)]
        verdict_log: agent::VerdictLogArgs,
    },
    /// Explain whether a connection is allowed, and which policy decides.
    ///
    /// Without `--manifests` it judges the live cluster, read through
    /// KUBECONFIG (or the in-cluster service account); installed as
    /// `kubectl-nftpol`, this is `kubectl nftpol explain`.
    Explain {
        /// A YAML file or a directory of YAML files (default: the live cluster).
        #[arg(long)]
        manifests: Option<std::path::PathBuf>,
        /// Source: `namespace/pod` or an IP address.
        #[arg(long)]
        from: String,
        /// Destination: `namespace/pod` or an IP address.
        #[arg(long)]
        to: String,
        /// Destination port and protocol, e.g. `80/TCP`.
        #[arg(long)]
        port: String,
    },
    /// Compile and apply once, in one batch, in the current network namespace, then exit.
    Apply {
        /// A YAML file or a directory of YAML files.
        #[arg(long)]
        manifests: std::path::PathBuf,
        /// The node to compile for.
        #[arg(long)]
        node: String,
        #[command(flatten)]
        verdict_log: agent::VerdictLogArgs,
    },
    /// Check that the kernel's table equals what the manifests compile to; print differences.
    Verify {
        /// A YAML file or a directory of YAML files.
        #[arg(long)]
        manifests: std::path::PathBuf,
        /// The node to compile for.
        #[arg(long)]
        node: String,
        #[command(flatten)]
        verdict_log: agent::VerdictLogArgs,
    },
    /// Walk a connection's first packet through the table the kernel holds, in this netns: the path, the verdict of each direction and the deciding policies.
    Trace(trace::TraceArgs),
    /// Delete table inet nftpol (the only way nftpol removes its ruleset).
    Cleanup,
    /// Watch the Kubernetes API and keep this node's ruleset in step (the DaemonSet's command).
    Agent(agent::AgentArgs),
    /// A cluster of network namespaces that proves enforcement with real traffic.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    agent::init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render {
            manifests,
            node,
            verdict_log,
        } => {
            let cluster = manifests::load(&manifests)?;
            let model = nftpol_model::resolve(&cluster, &node);
            for error in &model.errors {
                tracing::warn!("{error}");
            }
            print(&nftpol_ir::render::render(
                &compile(&model, options(&verdict_log)).ruleset,
            ))?;
        }
        Command::Explain {
            manifests,
            from,
            to,
            port,
        } => {
            let cluster = match &manifests {
                Some(path) => manifests::load(path)?,
                None => live::load()?,
            };
            let connection = manifests::connection(&cluster, &from, &to, &port)?;
            print(&nftpol_model::explain(&cluster, &connection))?;
        }
        Command::Apply {
            manifests,
            node,
            verdict_log,
        } => {
            let cluster = manifests::load(&manifests)?;
            let mut reconciler = Reconciler::new(open_kernel()?, node, options(&verdict_log));
            let report = reconciler.reconcile(&nftpol_model::Snapshot::from(&cluster))?;
            let summary = if report.changes == 0 {
                "the kernel already holds this ruleset: nothing applied".to_owned()
            } else {
                format!(
                    "applied {} changes in one batch ({} messages, {} bytes)",
                    report.changes, report.messages, report.bytes
                )
            };
            print(&format!(
                "{summary}; {} rules, {} elements\n",
                report.rules, report.elements
            ))?;
        }
        Command::Verify {
            manifests,
            node,
            verdict_log,
        } => {
            let cluster = manifests::load(&manifests)?;
            let mut desired = compile(
                &nftpol_model::resolve(&cluster, &node),
                options(&verdict_log),
            )
            .ruleset;
            let mut kernel = open_kernel()?;
            // The policy generation is the agent's state, not the manifests':
            // compare against the one in force.
            if let Some(generation) = kernel
                .read()?
                .and_then(|table| rejudge::generation_of(&table, MarkBits::default()))
            {
                rejudge::set_generation(
                    &mut desired,
                    Rejudge {
                        generation,
                        ..Rejudge::default()
                    },
                );
            }
            let differences = nftpol_netlink::verify(&mut kernel, &desired)?;
            if !differences.is_empty() {
                let lines: Vec<String> = differences
                    .iter()
                    .map(|difference| format!("{difference}\n"))
                    .collect();
                print(&lines.concat())?;
                return Ok(ExitCode::from(1));
            }
            print("table inet nftpol matches the manifests\n")?;
        }
        Command::Lab { command } => return lab::run(command),
        Command::Agent(args) => return agent::run(&args),
        Command::Trace(args) => return trace::run(&args),
        Command::Cleanup => {
            open_kernel()?.delete_table()?;
            print("table inet nftpol deleted\n")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The compile options of `nftpol agent` with its default flags and the
/// given verdict log flags, so `render`, `apply` and `verify` compile what a
/// default agent installs.
fn options(verdict_log: &agent::VerdictLogArgs) -> CompileOptions {
    CompileOptions {
        rejudge: Some(Rejudge::default()),
        verdict_log: verdict_log.options(),
        ..CompileOptions::default()
    }
}

/// Opens the kernel dataplane in the current network namespace and checks
/// that the kernel can express the design.
fn open_kernel() -> anyhow::Result<KernelDataplane> {
    let mut dataplane = KernelDataplane::open()
        .context("opening a netfilter netlink socket (needs CAP_NET_ADMIN)")?;
    dataplane.probe_features().context("kernel feature check")?;
    Ok(dataplane)
}

/// Writes command output to stdout (the only place stdout is written).
fn print(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}
