//! `nftpol-bench`: the benchmark driver (see the crate docs and `scripts/bench.sh`).

use std::io::Write as _;

use anyhow::Result;
use clap::{Parser, Subcommand};
use nftpol_bench::generate::Shape;

#[derive(Parser)]
#[command(about = "nftpol benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measurement 1 for one size; prints JSON.
    Compile {
        #[arg(long)]
        pods: usize,
        #[arg(long)]
        policies: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
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
        Command::Compile {
            pods,
            policies,
            seed,
        } => emit(&nftpol_bench::compile::run(Shape {
            pods,
            policies,
            seed,
        })),
    }
}
