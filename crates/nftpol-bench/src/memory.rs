//! Measurement 5: the agent's memory at size.
//!
//! The agent's in-process fake API server is a test double inside
//! `nftpol-agent`'s tests (not a library item), so this measures what the
//! agent holds after its first sync without it: the cluster's objects, the
//! model, the compiled and committed IR inside a `Reconciler`, over a
//! `FakeDataplane` (which keeps its own copy of the table, as the kernel
//! would outside the process). The objects are full k8s-openapi values,
//! not the agent's stripped ones, so this is an upper bound.

use anyhow::{Context as _, Result};
use nftpol_agent::Reconciler;
use nftpol_netlink::FakeDataplane;
use nftpol_ruleset::compile::CompileOptions;
use serde::{Deserialize, Serialize};

use crate::generate::{self, Shape};
use crate::measure::{current_rss_mib, peak_rss_mib, timed};

/// What measurement 5 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Application pods.
    pub pods: usize,
    /// Policies.
    pub policies: usize,
    /// RSS with only the objects in memory, MiB.
    pub objects_rss_mib: f64,
    /// RSS after the first sync with objects, committed IR and the fake's
    /// table alive, MiB.
    pub synced_rss_mib: f64,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// The first sync (model, compile, diff, fake apply), ms.
    pub first_sync_ms: f64,
    /// Elements committed.
    pub elements: usize,
}

/// Runs measurement 5 for `shape`.
pub fn run(shape: Shape) -> Result<MemoryResult> {
    let cluster = generate::cluster(shape);
    let objects_rss_mib = current_rss_mib();
    let mut reconciler = Reconciler::new(
        FakeDataplane::new(),
        generate::NODE,
        CompileOptions::default(),
    );
    let (report, first_sync_ms) = timed(|| reconciler.reconcile(&cluster));
    let report = report.context("the first sync failed")?;
    let synced_rss_mib = current_rss_mib();
    // Keep the state alive until RSS is read.
    drop((cluster, reconciler));
    Ok(MemoryResult {
        pods: shape.pods,
        policies: shape.policies,
        objects_rss_mib,
        synced_rss_mib,
        peak_rss_mib: peak_rss_mib(),
        first_sync_ms,
        elements: report.elements,
    })
}
