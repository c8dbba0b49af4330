//! Measurement 10: one NetworkPolicy added to (then deleted from) a large
//! cluster, from the event to the kernel's ack, on the agent's path.
//!
//! A batch of one policy's events goes to `Reconciler::reconcile_policies`
//! (the policy resolved alone, the objects it touches diffed, one batch).
//! This measurement does the same in a fresh network namespace, on a
//! committed table of the generated cluster: each event adds a copy of one
//! of the generator's policies under a new name (so it selects pods that
//! other policies isolate already, and its peers are those of a real
//! policy), or deletes the copy added before, in turn. Timed from the
//! change (with the stores' snapshot at hand, as the loop has it) to the
//! ack. The dataplane is timed apart: its `apply` (encoding the batch,
//! sending it, the kernel's commit up to the ack) is the kernel's share,
//! the rest of the event the userspace share. The full sync keeps the pod
//! index the policy path resolves against (element-path pod changes keep
//! it up to date), so no event rebuilds it.

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use anyhow::{Context as _, Result};
use nftpol_agent::{Reconciler, Sync};
use nftpol_ir::diff::Diff;
use nftpol_ir::Ruleset;
use nftpol_model::{PolicyChange, PolicyView, Snapshot};
use nftpol_netlink::{
    Applied, ApplyError, ConntrackError, Dataplane, KernelDataplane, ReadError, RuleCounter,
};
use serde::{Deserialize, Serialize};

use crate::generate::{self, Rng, Shape, POLICIES_PER_NAMESPACE};
use crate::measure::{timed, usize_f64, Summary};
use crate::netns::in_fresh_netns;
use crate::options::agent_defaults;

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
    /// The userspace share of each event (the event less the dataplane's
    /// apply), ms.
    #[serde(default)]
    pub compute: Summary,
    /// The kernel's share of each event: the batch sent and committed,
    /// timed to the ack, ms.
    #[serde(default)]
    pub kernel: Summary,
    /// Events that took the policy path (the rest took the full model).
    #[serde(default)]
    pub policy_path: usize,
    /// Netlink messages per event.
    pub messages: Summary,
    /// Batch bytes per event.
    pub bytes: Summary,
    /// Whether the time budget ended the run before the event count.
    pub budget_hit: bool,
}

/// The kernel's dataplane, with the time of its last `apply` kept.
struct TimedDataplane {
    kernel: KernelDataplane,
    applied: Duration,
}

impl Dataplane for TimedDataplane {
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError> {
        let started = Instant::now();
        let applied = self.kernel.apply(diff);
        self.applied = started.elapsed();
        applied
    }

    fn read(&mut self) -> Result<Option<Ruleset>, ReadError> {
        self.kernel.read()
    }

    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError> {
        self.kernel.read_counters()
    }

    fn delete_table(&mut self) -> Result<(), ApplyError> {
        self.kernel.delete_table()
    }

    fn flush_conntrack_by_mark(&mut self, mark: u32, mask: u32) -> Result<(), ConntrackError> {
        self.kernel.flush_conntrack_by_mark(mark, mask)
    }
}

/// What the events measured, in ms (and counts).
#[derive(Default)]
struct Samples {
    added: Vec<f64>,
    deleted: Vec<f64>,
    compute: Vec<f64>,
    kernel: Vec<f64>,
    messages: Vec<f64>,
    bytes: Vec<f64>,
    policy_path: usize,
}

/// Runs measurement 10 for `shape`.
pub fn run(shape: Shape, bounds: Bounds) -> Result<PolicyChurnResult> {
    let mut snapshot = Snapshot::from(&generate::cluster(shape));
    let namespaces = generate::namespace_count(shape.policies);
    in_fresh_netns(move || {
        let kernel = KernelDataplane::open().context("opening the netlink socket")?;
        let dataplane = TimedDataplane {
            kernel,
            applied: Duration::ZERO,
        };
        let mut reconciler = Reconciler::new(dataplane, generate::NODE, agent_defaults());
        let (first, full_sync_ms) = timed(|| reconciler.reconcile(&snapshot));
        first.context("the first sync failed")?;
        let mut rng = Rng::new(shape.seed ^ 0x0070_11c7);
        let started = Instant::now();
        let mut samples = Samples::default();
        let mut budget_hit = false;
        for step in 0..bounds.events {
            if started.elapsed().as_secs_f64() > bounds.budget_s {
                budget_hit = true;
                break;
            }
            let adding = step % 2 == 0;
            // The agent's watch parses a policy as it arrives (its store
            // keeps the parsed view): that is part of the event's time.
            let mut parse_ms = 0.0;
            let change = if adding {
                // Kinds 1.. select pods (kind 0, the default deny, selects
                // all of a namespace's pods and is a policy of its own kind).
                let kind = 1 + rng.below(POLICIES_PER_NAMESPACE - 1);
                let mut policy = generate::policy(rng.below(namespaces), kind, namespaces);
                policy.metadata.name = Some(format!("churn-{step}"));
                let (policy, ms) = timed(|| Arc::new(PolicyView::from_policy(&policy)));
                parse_ms = ms;
                snapshot.policies.push(Arc::clone(&policy));
                PolicyChange {
                    before: None,
                    after: Some(policy),
                }
            } else {
                PolicyChange {
                    before: snapshot.policies.pop(),
                    after: None,
                }
            };
            reconciler.dataplane_mut().applied = Duration::ZERO;
            let (report, reconcile_ms) =
                timed(|| reconciler.reconcile_policies(&[change], || snapshot.clone()));
            let elapsed = parse_ms + reconcile_ms;
            let report = report.with_context(|| format!("policy event {step} failed"))?;
            let kernel_ms = reconciler.dataplane_mut().applied.as_secs_f64() * 1000.0;
            samples.policy_path += usize::from(report.sync == Sync::Policy);
            if adding {
                samples.added.push(elapsed);
            } else {
                samples.deleted.push(elapsed);
            }
            samples.kernel.push(kernel_ms);
            samples.compute.push(elapsed - kernel_ms);
            samples.messages.push(usize_f64(report.messages));
            samples.bytes.push(usize_f64(report.bytes));
        }
        Ok(PolicyChurnResult {
            pods: shape.pods,
            policies: shape.policies,
            full_sync_ms,
            added: Summary::of(&samples.added),
            deleted: Summary::of(&samples.deleted),
            compute: Summary::of(&samples.compute),
            kernel: Summary::of(&samples.kernel),
            policy_path: samples.policy_path,
            messages: Summary::of(&samples.messages),
            bytes: Summary::of(&samples.bytes),
            budget_hit,
        })
    })
}
