//! `nftpol-bench`: the benchmark driver (see the crate docs and `scripts/bench.sh`).
//!
//! `nftpol-bench all [--smoke] --out DIR` runs every measurement, each in
//! its own process, writes `DIR/results/results.json`, then the report;
//! with `--only dataplane,features` it runs those alone and replaces them in
//! the `results.json` already there (so they can be rerun on a quiet
//! machine). The other subcommands run one measurement and print its JSON
//! on stdout.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use nftpol_bench::generate::Shape;
use nftpol_bench::rounds::Schedule;
use nftpol_bench::run::Measurement;
use nftpol_bench::{
    churn, cluster_policies, commit, compile, dataplane, features, memory, objects, policy_churn,
    rejudge, report, run,
};

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

#[derive(clap::Args, Clone, Copy)]
struct Traffic {
    /// Interleaved rounds over every setup.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// New connections per setup and round.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds of bulk transfer per setup and round (where measured).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

impl From<Traffic> for Schedule {
    fn from(traffic: Traffic) -> Self {
        Schedule {
            rounds: traffic.rounds,
            connections: traffic.connections,
            seconds: traffic.seconds,
        }
    }
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
        /// Runs only these measurements and replaces them in the
        /// results.json already in `--out` (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Measurement>,
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
    /// Measurement 4 at one pod count: no table, conntrack only, nftpol
    /// and linear rules, interleaved.
    Dataplane {
        /// Generated pods.
        #[arg(long)]
        pods: usize,
        /// Policy counts (repeat).
        #[arg(long, required = true)]
        policies: Vec<usize>,
        #[command(flatten)]
        traffic: Traffic,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measurement 6: re-judging N established flows after one commit.
    Rejudge {
        /// Established flow counts (repeat).
        #[arg(long, required = true)]
        flows: Vec<usize>,
    },
    /// Measurement 7: re-judging and the verdict log on against off,
    /// interleaved, at one size.
    Features {
        #[command(flatten)]
        size: Size,
        #[command(flatten)]
        traffic: Traffic,
    },
    /// Measurement 8: ClusterNetworkPolicy's full-sync cost at one size,
    /// and a pod selected by Admin CNPs against none, interleaved.
    ClusterPolicies {
        #[command(flatten)]
        size: Size,
        /// Generated ClusterNetworkPolicies for the full sync.
        #[arg(long, default_value_t = 100)]
        cluster_policies: usize,
        /// Rules per generated ClusterNetworkPolicy.
        #[arg(long, default_value_t = 10)]
        rules: usize,
        /// Admin ClusterNetworkPolicies selecting the lab's bench pods.
        #[arg(long, default_value_t = 10)]
        guards: usize,
        /// Commit runs per full sync.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        traffic: Traffic,
    },
    /// Measurement 9: the kernel's commit cost per object kind.
    Objects {
        /// Chains, rules and sets per point (repeat).
        #[arg(long = "count", required = true)]
        counts: Vec<usize>,
        /// Elements per point (repeat).
        #[arg(long = "elements", required = true)]
        elements: Vec<usize>,
        /// Commits per point, each in a fresh namespace.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Measurement 10 for one size: policies added and deleted in turn.
    PolicyChurn {
        #[command(flatten)]
        size: Size,
        /// Most events.
        #[arg(long)]
        events: usize,
        /// Time budget, seconds.
        #[arg(long)]
        budget_s: f64,
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
        Command::All {
            smoke,
            out,
            seed,
            only,
        } => {
            let plan = if smoke {
                run::Plan::smoke()
            } else {
                run::Plan::full()
            };
            let path = report::results_path(&out);
            let results = if only.is_empty() {
                run::run(&plan, seed, Measurement::ALL)
            } else {
                let previous = run::load(&path).with_context(|| {
                    format!("--only replaces measurements in {}", path.display())
                })?;
                run::merge(previous, run::run(&plan, seed, &only), &only)
            };
            run::save(&results, &path)?;
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
            traffic,
            seed,
        } => emit(&dataplane::run(pods, &policies, traffic.into(), seed)?),
        Command::Rejudge { flows } => emit(&rejudge::run(&flows)?),
        Command::Features { size, traffic } => emit(&features::run(
            size.pods,
            size.policies,
            traffic.into(),
            size.seed,
        )?),
        Command::ClusterPolicies {
            size,
            cluster_policies: count,
            rules,
            guards,
            runs,
            traffic,
        } => emit(&cluster_policies::run(
            size.into(),
            cluster_policies::ClusterPolicyShape {
                cluster_policies: count,
                rules,
                guards,
            },
            runs,
            traffic.into(),
        )?),
        Command::Objects {
            counts,
            elements,
            runs,
        } => emit(&objects::run(&objects::Counts {
            objects: counts,
            elements,
            runs,
        })?),
        Command::PolicyChurn {
            size,
            events,
            budget_s,
        } => emit(&policy_churn::run(
            size.into(),
            policy_churn::Bounds { events, budget_s },
        )?),
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
