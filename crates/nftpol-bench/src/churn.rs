//! Measurement 3: one-pod events (add, relabel, delete, in turn) from the
//! event to the kernel's ack.
//!
//! Two paths, both in a fresh network namespace on the same ruleset:
//! - **Reconciler**: the agent's path. Every event is handed to
//!   `Reconciler::reconcile_pods` as the pod store reports it: a remote
//!   pod's change becomes element changes without a full model (a local
//!   pod's would take the full path on a snapshot). Bounded by a count and
//!   a time budget.
//! - **Kernel**: the element batch a one-pod event produces, applied to the
//!   same committed table through `KernelDataplane`, timed to the ack. The
//!   event's elements are those the model gives a new pod with the labels
//!   and ports of an existing remote pod (its "sibling"): its address joins
//!   every set holding the sibling's address: the kernel's share of an
//!   event, without the agent's bookkeeping.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use internment::ArcIntern;
use nftpol_agent::{PodChange, Reconciler};
use nftpol_ir::diff::{Change, Diff};
use nftpol_ir::{Element, Ruleset, Value};
use nftpol_model::{Cluster, PodView, Snapshot};
use nftpol_netlink::{Dataplane as _, KernelDataplane};
use nftpol_ruleset::catalogue::{Provenance, SetKind};
use serde::{Deserialize, Serialize};

use crate::generate::{self, Rng, Shape, APPS};
use crate::measure::{timed, usize_f64, Summary};
use crate::netns::in_fresh_netns;
use crate::options::agent_defaults;

/// Limits of the reconciler path.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most events.
    pub events: usize,
    /// Stop starting events after this many seconds.
    pub budget_s: f64,
}

/// One path's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventStats {
    /// Event-to-ack latency, ms.
    pub latency: Summary,
    /// Batch bytes per event.
    pub bytes: Summary,
    /// Whether the time budget ended the run before the event count.
    pub budget_hit: bool,
}

/// What measurement 3 found for one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    /// Application pods.
    pub pods: usize,
    /// Policies.
    pub policies: usize,
    /// Elements in the committed ruleset.
    pub elements: usize,
    /// The reconciler's first (full) sync, ms.
    pub full_sync_ms: f64,
    /// Events through `Reconciler::reconcile`.
    pub reconciler: EventStats,
    /// Element batches of the same events straight to the kernel.
    pub kernel: EventStats,
}

/// A churned pod's name, so it can be found again.
fn churn_name(k: usize) -> String {
    format!("churn-{k}")
}

fn churn_address(k: usize) -> Ipv4Addr {
    let k = u32::try_from(k % 65_000).expect("bounded");
    Ipv4Addr::from(0x0ac8_0000 + k + 1)
}

/// Applies event `step` (add, relabel, delete in turn) to `cluster`.
/// Applies churn event `step` to the pods and returns the change the pod
/// store would report (none when the event found no pod to change).
fn mutate(
    snapshot: &mut Snapshot,
    step: usize,
    rng: &mut Rng,
    namespaces: usize,
) -> Option<PodChange> {
    let k = step / 3;
    let name = churn_name(k);
    let position = snapshot.pods.iter().rposition(|pod| *pod.name == *name);
    match (step % 3, position) {
        (0, _) => {
            let app = rng.below(APPS);
            let app_label = format!("app-{app}");
            let added = Arc::new(PodView::from_pod(&generate::pod(
                &format!("ns-{}", rng.below(namespaces)),
                &name,
                &[("app", &app_label), ("tier", generate::tier(app))],
                "node-churn",
                churn_address(k),
            )));
            snapshot.pods.push(Arc::clone(&added));
            Some(PodChange {
                before: None,
                after: Some(added),
            })
        }
        (1, Some(position)) => {
            let app = (rng.below(APPS - 1) + 1) % APPS;
            let before = Arc::clone(&snapshot.pods[position]);
            let mut relabelled = PodView::clone(&before);
            let mut labels = BTreeMap::clone(&relabelled.labels);
            labels.insert("app".to_owned(), format!("app-{app}"));
            labels.insert("tier".to_owned(), generate::tier(app).to_owned());
            relabelled.labels = ArcIntern::new(labels);
            let after = Arc::new(relabelled);
            snapshot.pods[position] = Arc::clone(&after);
            Some(PodChange {
                before: Some(before),
                after: Some(after),
            })
        }
        (_, Some(position)) => Some(PodChange {
            before: Some(snapshot.pods.remove(position)),
            after: None,
        }),
        (_, None) => None,
    }
}

/// The elements a new remote pod at `address` gets when it has the labels
/// and ports of the pod at `sibling`.
fn sibling_elements(
    ruleset: &Ruleset,
    provenance: &Provenance,
    sibling: Ipv4Addr,
    address: Ipv4Addr,
) -> Vec<Change<'static>> {
    let mut changes = Vec::new();
    for set in ruleset.sets.values() {
        let local = matches!(
            provenance.set_kind(&set.name),
            Some(SetKind::SelfPairs | SetKind::LocalPodIps | SetKind::LocalAddresses)
        );
        if set.is_verdict_map || local {
            continue;
        }
        let mut added = Vec::new();
        for element in &set.elements {
            let (Some(Value::Ipv4(first)), Some(Value::Ipv4(last))) =
                (element.start().first(), element.end().first())
            else {
                continue;
            };
            if *first <= sibling && sibling <= *last {
                let mut start = element.start().to_vec();
                start[0] = Value::Ipv4(address);
                let end = if set.interval && set.key.len() == 1 {
                    start.clone()
                } else {
                    let mut end = element.end().to_vec();
                    end[0] = Value::Ipv4(address);
                    end
                };
                added.push(Element::range(start, end));
            }
        }
        if !added.is_empty() {
            changes.push(Change::AddElements {
                set: set.name.clone(),
                elements: added.into(),
            });
        }
    }
    changes
}

fn inverse<'a>(changes: &[Change<'a>]) -> Vec<Change<'a>> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::AddElements { set, elements } => Some(Change::DeleteElements {
                set: set.clone(),
                elements: elements.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn remote_pod_addresses(cluster: &Cluster) -> Vec<Ipv4Addr> {
    cluster
        .pods
        .iter()
        .filter(|pod| {
            pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) != Some(generate::NODE)
                && pod
                    .metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|namespace| namespace.starts_with("ns-"))
        })
        .filter_map(|pod| {
            match pod
                .status
                .as_ref()?
                .pod_ip
                .as_deref()?
                .parse::<IpAddr>()
                .ok()?
            {
                IpAddr::V4(address) => Some(address),
                IpAddr::V6(_) => None,
            }
        })
        .collect()
}

/// Runs measurement 3 for `shape`.
pub fn run(shape: Shape, bounds: Bounds, kernel_events: usize) -> Result<ChurnResult> {
    let cluster = generate::cluster(shape);
    let siblings = remote_pod_addresses(&cluster);
    // What the agent's stores hold: pods as shared views.
    let mut snapshot = Snapshot::from(&cluster);
    drop(cluster);
    let namespaces = generate::namespace_count(shape.policies);
    in_fresh_netns(move || {
        let dataplane = KernelDataplane::open().context("opening the netlink socket")?;
        let mut reconciler = Reconciler::new(dataplane, generate::NODE, agent_defaults());
        let (first, full_sync_ms) = timed(|| reconciler.reconcile(&snapshot));
        let first = first.context("the first sync failed")?;
        let mut rng = Rng::new(shape.seed ^ 0x00c0_ffee);
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut bytes = Vec::new();
        let mut budget_hit = false;
        for step in 0..bounds.events {
            if started.elapsed().as_secs_f64() > bounds.budget_s {
                budget_hit = true;
                break;
            }
            let Some(change) = mutate(&mut snapshot, step, &mut rng, namespaces) else {
                continue;
            };
            // As the agent: the store's change, and a snapshot of its stores
            // should the change need the full path.
            let (report, elapsed) =
                timed(|| reconciler.reconcile_pods(&[change], || snapshot.clone()));
            let report = report.with_context(|| format!("churn event {step} failed"))?;
            latencies.push(elapsed);
            bytes.push(usize_f64(report.bytes));
        }
        let reconciler_stats = EventStats {
            latency: Summary::of(&latencies),
            bytes: Summary::of(&bytes),
            budget_hit,
        };
        let committed = reconciler
            .committed()
            .context("a committed ruleset after the first sync")?
            .clone();
        let provenance = reconciler.provenance().clone();
        let kernel = kernel_events_run(
            reconciler.dataplane_mut(),
            &committed,
            &provenance,
            &siblings,
            kernel_events,
            &mut rng,
        )?;
        Ok(ChurnResult {
            pods: shape.pods,
            policies: shape.policies,
            elements: first.elements,
            full_sync_ms,
            reconciler: reconciler_stats,
            kernel,
        })
    })
}

fn kernel_events_run(
    kernel: &mut KernelDataplane,
    committed: &Ruleset,
    provenance: &Provenance,
    siblings: &[Ipv4Addr],
    events: usize,
    rng: &mut Rng,
) -> Result<EventStats> {
    let mut latencies = Vec::new();
    let mut bytes = Vec::new();
    let mut current: Vec<Change> = Vec::new();
    for step in 0..events {
        let address = churn_address(60_000 + step / 3);
        let pick = |rng: &mut Rng| siblings[rng.below(siblings.len())];
        let changes = match step % 3 {
            0 => {
                current = sibling_elements(committed, provenance, pick(rng), address);
                current.clone()
            }
            1 => {
                let mut relabel = inverse(&current);
                current = sibling_elements(committed, provenance, pick(rng), address);
                relabel.extend(current.iter().cloned());
                relabel
            }
            _ => std::mem::take(&mut current)
                .iter()
                .flat_map(|change| inverse(std::slice::from_ref(change)))
                .collect(),
        };
        let diff = Diff { changes };
        if diff.is_empty() {
            continue;
        }
        let (applied, elapsed) = timed(|| kernel.apply(&diff));
        let applied = applied.with_context(|| format!("kernel churn event {step} failed"))?;
        latencies.push(elapsed);
        bytes.push(usize_f64(applied.bytes));
    }
    Ok(EventStats {
        latency: Summary::of(&latencies),
        bytes: Summary::of(&bytes),
        budget_hit: false,
    })
}
