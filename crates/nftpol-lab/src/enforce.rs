//! Enforcement: one nftpol agent per lab node, inside that node's namespace,
//! through the same reconcile path as `nftpol agent`.
//!
//! Each agent is a thread that `setns`es into its node namespace, opens
//! `KernelDataplane` (its netlink socket then lives there), checks the
//! kernel's features and runs `Reconciler::reconcile` once. The lab waits for
//! every agent to commit before any probe runs.
//!
//! With verdict logging on, each node also runs the agent's verdict log
//! reader in its namespace (the NFLOG group is per namespace), writing to a
//! scratch file the lab reads back after the probes; probing waits until
//! every reader holds its group.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nftpol_agent::metrics::Metrics;
use nftpol_agent::verdict_log::{LogDirectory, OutputTarget, VerdictLogConfig, VerdictLogReader};
use nftpol_agent::Reconciler;
use nftpol_model::Cluster;
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::CompileOptions;
use nftpol_ruleset::rejudge::Rejudge;
use nftpol_ruleset::verdict_log::{VerdictLogMode, VerdictLogOptions, DEFAULT_GROUP};

use crate::error::{AgentStage, LabError};
use crate::netns::RunId;
use crate::plan::{LabNode, Plan};
use crate::topology::Topology;

/// How long the readers may take to bind their NFLOG groups.
const LISTEN_DEADLINE: Duration = Duration::from_secs(10);

/// The verdict log readers of a run, one per node, and their files.
#[derive(Default)]
pub struct Collectors {
    readers: Vec<(VerdictLogReader, PathBuf)>,
}

impl Collectors {
    /// Stops every reader and returns the lines they wrote, node by node.
    pub fn finish(self) -> Result<Vec<serde_json::Value>, LabError> {
        let mut lines = Vec::new();
        for (reader, path) in self.readers {
            reader.stop();
            let text = std::fs::read_to_string(&path).map_err(|source| LabError::Runtime {
                what: "read the verdict log lines",
                source,
            })?;
            // A scratch file of this run; its lines are in the report now.
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, path = %path.display(), "removing a verdict log scratch file");
            }
            for line in text.lines() {
                lines.push(
                    serde_json::from_str(line).map_err(|error| LabError::Runtime {
                        what: "parse a verdict log line",
                        source: std::io::Error::other(error),
                    })?,
                );
            }
        }
        Ok(lines)
    }
}

/// Runs every node's agent once and returns when all have committed (and,
/// with verdict logging, when every node's reader listens).
pub fn enforce(
    plan: &Plan,
    topology: &Topology,
    cluster: &Cluster,
    verdict_log: VerdictLogMode,
    run: &RunId,
) -> Result<Collectors, LabError> {
    // The options of `nftpol agent` with its default flags, and the lab's
    // verdict log mode.
    let options = CompileOptions {
        rejudge: Some(Rejudge::default()),
        verdict_log: VerdictLogOptions {
            mode: verdict_log,
            group: DEFAULT_GROUP,
        },
        ..CompileOptions::default()
    };
    let mut collectors = Collectors::default();
    let mut directories = Vec::new();
    for node in &plan.nodes {
        if verdict_log == VerdictLogMode::Off {
            directories.push(None);
            continue;
        }
        let directory = LogDirectory::default();
        let path = std::env::temp_dir().join(format!("{run}-verdicts-n{}.jsonl", node.index));
        let reader = VerdictLogReader::spawn(
            VerdictLogConfig {
                group: DEFAULT_GROUP,
                output: OutputTarget::File(path.clone()),
            },
            directory.clone(),
            Arc::new(Metrics::new()),
            topology.node(node.index).entry()?,
        )
        .map_err(|source| LabError::Runtime {
            what: "start a verdict log reader",
            source,
        })?;
        collectors.readers.push((reader, path));
        directories.push(Some(directory));
    }
    let deadline = Instant::now() + LISTEN_DEADLINE;
    while !collectors
        .readers
        .iter()
        .all(|(reader, _)| reader.is_listening())
    {
        if Instant::now() > deadline {
            return Err(LabError::Runtime {
                what: "bind the NFLOG group in every node",
                source: std::io::Error::other("a verdict log reader did not bind within 10 s"),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
    thread::scope(|s| {
        let agents: Vec<_> = plan
            .nodes
            .iter()
            .zip(&directories)
            .map(|(node, directory)| {
                (
                    node,
                    s.spawn(move || run_agent(node, topology, cluster, options, directory.clone())),
                )
            })
            .collect();
        let mut first_error = None;
        for (node, agent) in agents {
            let outcome = agent.join().unwrap_or_else(|_| {
                Err(LabError::Agent {
                    node: node.name.clone(),
                    stage: AgentStage::Panicked,
                })
            });
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })?;
    Ok(collectors)
}

fn run_agent(
    node: &LabNode,
    topology: &Topology,
    cluster: &Cluster,
    options: CompileOptions,
    directory: Option<LogDirectory>,
) -> Result<(), LabError> {
    topology.node(node.index).enter()?;
    let mut dataplane = KernelDataplane::open().map_err(|e| LabError::Agent {
        node: node.name.clone(),
        stage: AgentStage::Open(e),
    })?;
    dataplane
        .probe_features()
        .map_err(|source| LabError::KernelFeature {
            node: node.name.clone(),
            source,
        })?;
    let mut reconciler = Reconciler::new(dataplane, node.name.clone(), options);
    if let Some(directory) = directory {
        reconciler.set_log_directory(directory);
    }
    let report = reconciler
        .reconcile(&nftpol_model::Snapshot::from(cluster))
        .map_err(|e| LabError::Agent {
            node: node.name.clone(),
            stage: AgentStage::Reconcile(e),
        })?;
    for invalid in &report.invalid {
        tracing::warn!(node = %node.name, "{invalid}");
    }
    tracing::info!(
        node = %node.name,
        rules = report.rules,
        elements = report.elements,
        bytes = report.bytes,
        "agent committed its first ruleset"
    );
    Ok(())
}
