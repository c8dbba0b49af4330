//! `nftpol-bench`: the benchmark driver (see the crate docs and `scripts/bench.sh`).
//!
//! `nftpol-bench all [--smoke] --out DIR` runs every measurement, each in
//! its own process, writes `DIR/results/results.json`, then the report.
//! The other subcommands run one measurement and print its JSON on stdout.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use nftpol_bench::generate::Shape;
use nftpol_bench::{churn, commit, compile, dataplane, memory, rejudge, report, run};

#[derive(Parser)]
#[command(about = "nftpol benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Copy)]
struct Size {
    /// Application pods.
    #[arg(long)]
    pods: usize,
    /// Network policies.
    #[arg(long)]
    policies: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl From<Size> for Shape {
    fn from(size: Size) -> Self {
        Shape {
            pods: size.pods,
            policies: size.policies,
            seed: size.seed,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Every measurement, then results.json, BENCHMARKS.md and the plots.
    All {
        /// Seconds-long sizes (CI).
        #[arg(long)]
        smoke: bool,
        /// The bench crate's directory (outputs go there).
        #[arg(long)]
        out: PathBuf,
        /// Seed of every generated cluster.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Rewrites BENCHMARKS.md and the plots from results.json.
    Report {
        /// The bench crate's directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measurement 1 for one size.
    Compile(Size),
    /// Measurement 2 for one size.
    Commit {
        #[command(flatten)]
        size: Size,
        /// Runs per tool.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Measurement 3 for one size.
    Churn {
        #[command(flatten)]
        size: Size,
        /// Most events through the Reconciler.
        #[arg(long)]
        events: usize,
        /// Time budget of the Reconciler events, seconds.
        #[arg(long)]
        budget_s: f64,
        /// Events straight to the kernel.
        #[arg(long)]
        kernel_events: usize,
    },
    /// Measurement 4.
    Dataplane {
        /// Generated pods.
        #[arg(long)]
        pods: usize,
        /// Policy counts (repeat).
        #[arg(long, required = true)]
        policies: Vec<usize>,
        /// Seconds per point.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measurement 6.
    Rejudge {
        /// Generated pods of the on/off comparison.
        #[arg(long)]
        pods: usize,
        /// Generated policies of the on/off comparison.
        #[arg(long)]
        policies: usize,
        /// Seconds per on/off point.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Established flow counts (repeat).
        #[arg(long, required = true)]
        flows: Vec<usize>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measurement 5 for one size.
    Memory {
        #[command(flatten)]
        size: Size,
        /// The `nftpol` binary to measure (default: next to this one).
        #[arg(long)]
        agent: Option<PathBuf>,
    },
}

fn emit(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::All { smoke, out, seed } => {
            let plan = if smoke {
                run::Plan::smoke()
            } else {
                run::Plan::full()
            };
            let results = run::run(&plan, seed);
            run::save(&results, &report::results_path(&out))?;
            report::write(&results, &out)
        }
        Command::Report { out } => report::write(&run::load(&report::results_path(&out))?, &out),
        Command::Compile(size) => emit(&compile::run(size.into())),
        Command::Commit { size, runs } => emit(&commit::run(size.into(), runs)?),
        Command::Churn {
            size,
            events,
            budget_s,
            kernel_events,
        } => emit(&churn::run(
            size.into(),
            churn::Bounds { events, budget_s },
            kernel_events,
        )?),
        Command::Dataplane {
            pods,
            policies,
            seconds,
            seed,
        } => emit(&dataplane::run(pods, &policies, seconds, seed)?),
        Command::Rejudge {
            pods,
            policies,
            seconds,
            flows,
            seed,
        } => emit(&rejudge::run(pods, policies, seconds, &flows, seed)?),
        Command::Memory { size, agent } => {
            let agent = match agent {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("locating this binary")?
                    .with_file_name("nftpol"),
            };
            emit(&memory::run(size.into(), &agent)?)
        }
    }
}
