//! Measurement 1: model + compile + diff of a synthetic cluster, in-process.

use nftpol_ir::diff::diff;
use nftpol_ir::Ruleset;
use nftpol_model::{resolve_snapshot, Snapshot};
use nftpol_ruleset::compile::compile;
use serde::{Deserialize, Serialize};

use crate::generate::{self, Shape};
use crate::measure::{peak_rss_mib, timed};
use crate::options::agent_defaults;

/// What one compile measurement found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileResult {
    /// Application pods.
    pub pods: usize,
    /// Policies.
    pub policies: usize,
    /// Pods on the measured node.
    pub local_pods: usize,
    /// Policies selecting a pod on the measured node.
    pub node_policies: usize,
    /// Generating the objects (not nftpol's cost).
    pub generate_ms: f64,
    /// `nftpol_model::resolve_snapshot` for the measured node, on the
    /// snapshot the agent's stores give (pods reduced as they arrived).
    pub resolve_ms: f64,
    /// `compile`.
    pub compile_ms: f64,
    /// `diff(None, ir)`: the full diff of a first sync.
    pub diff_full_ms: f64,
    /// `diff(Some(ir), ir)`: comparing two equal rulesets, what every
    /// partial sync pays before it finds the change.
    pub diff_same_ms: f64,
    /// Rules.
    pub rules: usize,
    /// Chains.
    pub chains: usize,
    /// Sets and maps.
    pub sets: usize,
    /// Set and map elements.
    pub elements: usize,
    /// Peak RSS of the process (objects included), MiB.
    pub peak_rss_mib: f64,
}

/// Counts of a ruleset: (rules, chains, sets, elements).
pub fn counts(ruleset: &Ruleset) -> (usize, usize, usize, usize) {
    (
        ruleset.rule_count(),
        ruleset.chains.len(),
        ruleset.sets.len(),
        ruleset.element_count(),
    )
}

/// Runs measurement 1 for `shape`.
///
/// # Panics
///
/// If the ruleset differs from itself (a bug in `diff`).
pub fn run(shape: Shape) -> CompileResult {
    let (cluster, generate_ms) = timed(|| generate::cluster(shape));
    let snapshot = Snapshot::from(&cluster);
    let (model, resolve_ms) = timed(|| resolve_snapshot(&snapshot, generate::NODE));
    let (ruleset, compile_ms) = timed(|| compile(&model, agent_defaults()).ruleset);
    let (full, diff_full_ms) = timed(|| diff(None, &ruleset));
    let (same, diff_same_ms) = timed(|| diff(Some(&ruleset), &ruleset));
    assert!(same.is_empty(), "a ruleset differs from itself");
    drop(full);
    let (rules, chains, sets, elements) = counts(&ruleset);
    CompileResult {
        pods: shape.pods,
        policies: shape.policies,
        local_pods: model.local_pods.len(),
        node_policies: model.policies.len(),
        generate_ms,
        resolve_ms,
        compile_ms,
        diff_full_ms,
        diff_same_ms,
        rules,
        chains,
        sets,
        elements,
        peak_rss_mib: peak_rss_mib(),
    }
}
