//! `nftpol`: the command-line entry point. Wiring only: parses flags, sets up
//! logging, calls the library crates, prints their output and maps errors to
//! exit codes.

mod manifests;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use nftpol_ruleset::compile::{compile, CompileOptions};

/// Kubernetes NetworkPolicy enforcement with nftables, programmed over netlink.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Explain whether a connection is allowed, and which policy decides.
    Explain {
        /// A YAML file or a directory of YAML files.
        #[arg(long)]
        manifests: std::path::PathBuf,
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render { manifests, node } => {
            let cluster = manifests::load(&manifests)?;
            let model = nftpol_model::resolve(&cluster, &node);
            for error in &model.errors {
                tracing::warn!("{error}");
            }
            print(&nftpol_ruleset::render::render(&compile(
                &model,
                CompileOptions::default(),
            )))?;
        }
        Command::Explain {
            manifests,
            from,
            to,
            port,
        } => {
            let cluster = manifests::load(&manifests)?;
            let connection = manifests::connection(&cluster, &from, &to, &port)?;
            print(&nftpol_model::explain(&cluster, &connection))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes command output to stdout (the only place stdout is written).
fn print(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}
