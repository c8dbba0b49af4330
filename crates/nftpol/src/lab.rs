//! `nftpol lab`: wiring between the command line and `nftpol-lab`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use nftpol_lab::LabError;
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
        /// Where the agents get the cluster from: `in-process` agents given
        /// the scenario, or `real`: the scenario created through a real
        /// kube-apiserver (built by `scripts/apiserver.sh build`) and the
        /// real `nftpol agent` binary on every node, watching it.
        #[arg(long, value_enum, default_value = "in-process")]
        apiserver: ApiServerMode,
        /// With `--apiserver real`: a step file of policy and label changes
        /// made to the live cluster after the first probes, each followed
        /// by the probes again (see integration/live/).
        #[arg(long)]
        steps: Option<PathBuf>,
        /// The directory of `scripts/apiserver.sh build`'s binaries
        /// (default: $NFTPOL_KUBE_TOOLS, else target/tools/kubernetes-<version>
        /// beside this binary's build).
        #[arg(long)]
        kube_tools: Option<PathBuf>,
    },
    /// Remove namespaces left behind by killed lab runs.
    Cleanup,
}

/// Where a lab run's agents get the cluster from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiServerMode {
    /// Agents inside the lab process, given the scenario (quick; the default).
    InProcess,
    /// A real kube-apiserver and the real agent binary.
    Real,
}

/// What `--apiserver real` needs, or none for the in-process path.
fn live_options(
    mode: ApiServerMode,
    steps: Option<&Path>,
    kube_tools: Option<&Path>,
) -> Result<Option<nftpol_lab::live::LiveOptions>, LabError> {
    if mode == ApiServerMode::InProcess {
        return match steps {
            Some(_) => Err(LabError::Options {
                reason: "--steps changes a live cluster: add --apiserver real".to_owned(),
            }),
            None => Ok(None),
        };
    }
    let agent = std::env::current_exe().map_err(|source| LabError::Runtime {
        what: "find this binary, which the lab nodes run",
        source,
    })?;
    let tools = nftpol_lab::apiserver::Tools::locate(kube_tools, &agent)?;
    let steps = steps
        .map(nftpol_lab::steps::load)
        .transpose()?
        .unwrap_or_default();
    Ok(Some(nftpol_lab::live::LiveOptions {
        tools,
        agent,
        steps,
    }))
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
            apiserver,
            steps,
            kube_tools,
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
            let outcome = live_options(apiserver, steps.as_deref(), kube_tools.as_deref())
                .and_then(|live| {
                    let options = nftpol_lab::RunOptions {
                        nodes,
                        via_service,
                        verdict_log: verdicts.map_or(VerdictLogMode::Off, VerdictLogMode::from),
                        live,
                    };
                    nftpol_lab::run(&text, &name, &options).map(|report| (report, options))
                });
            let (report, options) = match outcome {
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
            let mut judged = Vec::new();
            if let Some(expected) = &expected {
                let file = expect.unwrap_or_default().display().to_string();
                judged.push((file, nftpol_lab::compare(&report, expected)?));
            }
            let live_steps = options.live.as_ref().map_or(&[][..], |live| &live.steps);
            for (index, (step, probed)) in live_steps.iter().zip(&report.steps).enumerate() {
                if let Some(expected) = &step.expect {
                    let what = format!("step {} ({})'s expectation", index + 1, step.name);
                    judged.push((what, nftpol_lab::compare(&probed.as_report(), expected)?));
                }
            }
            let mut failed = false;
            for (what, mismatches) in &judged {
                for mismatch in mismatches {
                    eprintln!("{mismatch}");
                }
                if mismatches.is_empty() {
                    eprintln!("all judged probes match {what}");
                } else {
                    eprintln!("{} probes differ from {what}", mismatches.len());
                    failed = true;
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        LabCommand::Cleanup => {
            let removed = nftpol_lab::cleanup()?;
            print(&format!("removed {removed} leftover lab namespaces\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
