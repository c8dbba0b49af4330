//! Enforcement: one nftpol agent per lab node, inside that node's namespace,
//! through the same reconcile path as `nftpol agent`.
//!
//! Each agent is a thread that `setns`es into its node namespace, opens
//! `KernelDataplane` (its netlink socket then lives there), checks the
//! kernel's features and runs `Reconciler::reconcile` once. The lab waits for
//! every agent to commit before any probe runs.

use std::thread;

use nftpol_agent::Reconciler;
use nftpol_model::Cluster;
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::CompileOptions;
use nftpol_ruleset::rejudge::Rejudge;

use crate::error::LabError;
use crate::plan::{LabNode, Plan};
use crate::run::error_chain;
use crate::topology::Topology;

/// Runs every node's agent once and returns when all have committed.
pub fn enforce(plan: &Plan, topology: &Topology, cluster: &Cluster) -> Result<(), LabError> {
    thread::scope(|s| {
        let agents: Vec<_> = plan
            .nodes
            .iter()
            .map(|node| (node, s.spawn(|| run_agent(node, topology, cluster))))
            .collect();
        let mut first_error = None;
        for (node, agent) in agents {
            let outcome = agent.join().unwrap_or_else(|_| {
                Err(LabError::Agent {
                    node: node.name.clone(),
                    stage: "reconcile",
                    message: "the agent thread panicked".to_owned(),
                })
            });
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

fn run_agent(node: &LabNode, topology: &Topology, cluster: &Cluster) -> Result<(), LabError> {
    topology.node(node.index).enter()?;
    let mut dataplane = KernelDataplane::open().map_err(|e| LabError::Agent {
        node: node.name.clone(),
        stage: "open",
        message: error_chain(&e),
    })?;
    dataplane
        .probe_features()
        .map_err(|e| LabError::KernelFeature {
            node: node.name.clone(),
            message: error_chain(&e),
        })?;
    // The options of `nftpol agent` with its default flags.
    let options = CompileOptions {
        rejudge: Some(Rejudge::default()),
        ..CompileOptions::default()
    };
    let mut reconciler = Reconciler::new(dataplane, node.name.clone(), options);
    let report = reconciler
        .reconcile(&nftpol_model::Snapshot::from(cluster))
        .map_err(|e| LabError::Agent {
            node: node.name.clone(),
            stage: "reconcile",
            message: error_chain(&e),
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
