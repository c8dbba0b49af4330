//! `nftpol lab`: wiring between the command line and `nftpol-lab`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use nftpol_ruleset::verdict_log::VerdictLogMode;

use crate::print;

/// Lab subcommands.
#[derive(Subcommand)]
pub enum LabCommand {
    /// Build a network-namespace cluster for SCENARIO, enforce it, probe every pod pair.
    Run {
        /// Multi-document YAML of Namespaces, Pods, NetworkPolicies, ClusterNetworkPolicies and Nodes.
        scenario: PathBuf,
        /// Print one JSON object on stdout instead of truth tables.
        #[arg(long)]
        json: bool,
        /// Number of lab nodes (default: the scenario's Node documents, else the highest node-<k> a pod names, at least 1).
        #[arg(long)]
        nodes: Option<usize>,
        /// Compare with this EXPECTED.json; exit 1 on any mismatch.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Probe through per-pod ClusterIPs (kube-proxy-style DNAT).
        #[arg(long)]
        via_service: bool,
        /// Log verdicts during the probes (`deny`, the default, or `all`)
        /// and print the verdict lines after the truth tables.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "deny")]
        verdicts: Option<crate::agent::VerdictLog>,
    },
    /// Remove namespaces left behind by killed lab runs.
    Cleanup,
}

/// Runs a lab subcommand. Lab failures exit 2 with the lab's own advice.
pub fn run(command: LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Run {
            scenario,
            json,
            nodes,
            expect,
            via_service,
            verdicts,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("reading {}", scenario.display()))?;
            let expected = expect
                .as_ref()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))
                })
                .transpose()?;
            let name = scenario
                .file_stem()
                .map_or_else(|| "scenario".into(), |stem| stem.to_string_lossy());
            let options = nftpol_lab::RunOptions {
                nodes,
                via_service,
                verdict_log: verdicts.map_or(VerdictLogMode::Off, VerdictLogMode::from),
            };
            let report = match nftpol_lab::run(&text, &name, &options) {
                Ok(report) => report,
                Err(error) => {
                    let code = error.exit_code();
                    // `{:#}` prints the lab's advice, then every cause.
                    tracing::error!("{:#}", anyhow::Error::new(error));
                    return Ok(ExitCode::from(code));
                }
            };
            print(&if json {
                report.to_json() + "\n"
            } else if verdicts.is_some() {
                report.truth_table() + &report.verdict_lines()
            } else {
                report.truth_table()
            })?;
            if let Some(expected) = expected {
                let mismatches = nftpol_lab::compare(&report, &expected)?;
                if !mismatches.is_empty() {
                    for mismatch in &mismatches {
                        eprintln!("{mismatch}");
                    }
                    eprintln!(
                        "{} probes differ from {}",
                        mismatches.len(),
                        expect.unwrap_or_default().display()
                    );
                    return Ok(ExitCode::from(1));
                }
                eprintln!("all judged probes match the expectation");
            }
        }
        LabCommand::Cleanup => {
            let removed = nftpol_lab::cleanup()?;
            print(&format!("removed {removed} leftover lab namespaces\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
