//! Measurement 10: one NetworkPolicy added to (then deleted from) a large
//! cluster, from the event to the kernel's ack, on the agent's path.
//!
//! A policy event is structural: the agent's loop hands the stores'
//! snapshot to `Reconciler::reconcile` (model, compile, diff against the
//! committed ruleset, one batch). This measurement does the same in a fresh
//! network namespace, on a committed table of the generated cluster: each
//! event adds a copy of one of the generator's policies under a new name
//! (so it selects pods that other policies isolate already, and its peers
//! are those of a real policy), or deletes the copy added before, in turn.
//! Timed from the snapshot (an `Arc` copy of the stores' objects, as the
//! loop takes it) to the ack. Before each event's reconcile, the same
//! model, compile and diff are timed alone (outside the reconciler, whose
//! result they do not touch): the userspace share of the event, so the
//! rest is the commit's.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use nftpol_agent::Reconciler;
use nftpol_ir::diff::diff;
use nftpol_model::{resolve_snapshot, Snapshot};
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::{compile, CompileOptions};
use serde::{Deserialize, Serialize};

use crate::generate::{self, Rng, Shape, POLICIES_PER_NAMESPACE};
use crate::measure::{timed, Summary};
use crate::netns::in_fresh_netns;

/// Limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most events (adds and deletes).
    pub events: usize,
    /// Stop starting events after this many seconds.
    pub budget_s: f64,
}

/// What measurement 10 found for one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyChurnResult {
    /// Application pods.
    pub pods: usize,
    /// Policies before the first event.
    pub policies: usize,
    /// The first (full) sync, ms.
    pub full_sync_ms: f64,
    /// Event-to-ack latency of the adds, ms.
    pub added: Summary,
    /// Event-to-ack latency of the deletes, ms.
    pub deleted: Summary,
    /// Model + compile + diff of each event's snapshot alone, ms.
    #[serde(default)]
    pub compute: Summary,
    /// Netlink messages per event.
    pub messages: Summary,
    /// Batch bytes per event.
    pub bytes: Summary,
    /// Whether the time budget ended the run before the event count.
    pub budget_hit: bool,
}

/// Runs measurement 10 for `shape`.
pub fn run(shape: Shape, bounds: Bounds) -> Result<PolicyChurnResult> {
    let mut snapshot = Snapshot::from(&generate::cluster(shape));
    let namespaces = generate::namespace_count(shape.policies);
    in_fresh_netns(move || {
        let dataplane = KernelDataplane::open().context("opening the netlink socket")?;
        let mut reconciler = Reconciler::new(dataplane, generate::NODE, CompileOptions::default());
        let (first, full_sync_ms) = timed(|| reconciler.reconcile(&snapshot));
        first.context("the first sync failed")?;
        let mut rng = Rng::new(shape.seed ^ 0x0070_11c7);
        let started = Instant::now();
        let (mut added, mut deleted, mut compute, mut messages, mut bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut budget_hit = false;
        for step in 0..bounds.events {
            if started.elapsed().as_secs_f64() > bounds.budget_s {
                budget_hit = true;
                break;
            }
            let adding = step % 2 == 0;
            if adding {
                // Kinds 1.. select pods (kind 0, the default deny, selects
                // all of a namespace's pods and is a policy of its own kind).
                let kind = 1 + rng.below(POLICIES_PER_NAMESPACE - 1);
                let mut policy = generate::policy(rng.below(namespaces), kind, namespaces);
                policy.metadata.name = Some(format!("churn-{step}"));
                snapshot.policies.push(Arc::new(policy));
            } else {
                snapshot.policies.pop();
            }
            let ((), computed) = timed(|| {
                let model = resolve_snapshot(&snapshot, generate::NODE);
                let desired = compile(&model, CompileOptions::default()).ruleset;
                drop(diff(reconciler.committed(), &desired));
            });
            compute.push(computed);
            let (report, elapsed) = timed(|| reconciler.reconcile(&snapshot.clone()));
            let report = report.with_context(|| format!("policy event {step} failed"))?;
            if adding {
                added.push(elapsed);
            } else {
                deleted.push(elapsed);
            }
            messages.push(usize_f64(report.messages));
            bytes.push(usize_f64(report.bytes));
        }
        Ok(PolicyChurnResult {
            pods: shape.pods,
            policies: shape.policies,
            full_sync_ms,
            added: Summary::of(&added),
            deleted: Summary::of(&deleted),
            compute: Summary::of(&compute),
            messages: Summary::of(&messages),
            bytes: Summary::of(&bytes),
            budget_hit,
        })
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "message and byte counts far below 2^52 are exact in f64"
)]
fn usize_f64(value: usize) -> f64 {
    value as f64
}
