//! Reflectors: list-then-watch for Pods (all namespaces), Namespaces,
//! NetworkPolicies, Nodes and ClusterNetworkPolicies, each into a store of
//! stripped objects: pods and NetworkPolicies as views into
//! [`crate::view_store`] (one pointer an object), the other kinds into
//! kube-runtime's reflector stores.
//!
//! The ClusterNetworkPolicy CRD may be absent: the agent then enforces
//! NetworkPolicy only (its store counts as a complete, empty list), says so
//! once, and checks discovery again with backoff, starting the watch when
//! the CRD appears, without a restart.
//!
//! Each watch runs in its own task: kube-runtime's watcher (list with
//! `limit=500` pages, then watch with bookmarks; a 410 Gone relists, a
//! dropped connection re-watches from the last resourceVersion) wrapped in
//! `default_backoff()` — without it the watcher retries in a tight loop
//! while the API server is unreachable. Objects are stripped
//! ([`crate::strip`]) before they reach a store, and an event queues a
//! reconcile only when it changed what enforcement reads: the end of a
//! (re)list, a delete of a known object, or an object whose stripped form
//! differs from the stored one.
//!
//! The stores swap in a relist atomically at its end (kube-runtime buffers
//! `InitApply` events until `InitDone`), so a reconcile never sees half a
//! list, and during an outage the last complete view (and the ruleset
//! committed from it) stays in force.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use nftpol_model::cluster_policy::api::{self as cnp_api, ClusterNetworkPolicy};
use nftpol_model::{PodView, PolicyView, Snapshot};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::agent::Progress;
use crate::coalesce::Trigger;
use crate::error::AgentError;
use crate::metrics::Metrics;
use crate::strip;
use crate::view_store::{Named, PodStore, PodWriter, PolicyStore, PolicyWriter, ViewWriter};
use nftpol_model::{PodChange, PolicyChange};

/// Pod changes beyond this many since the last reconcile make the next one
/// a full model: cheaper by then, and the log stays bounded.
const MAX_LOGGED_POD_CHANGES: usize = 10_000;

/// NetworkPolicy changes beyond this many since the last reconcile make the
/// next one a full model: the policy path takes one policy at a time, and
/// the log stays bounded.
const MAX_LOGGED_POLICY_CHANGES: usize = 64;

/// What changed since the last reconcile took the log.
#[derive(Debug, Default)]
pub struct Changes {
    /// Pod changes, in order (meaningful only when not `structural`).
    pub pods: Vec<PodChange>,
    /// NetworkPolicy changes, in order (meaningful only when not
    /// `structural`).
    pub policies: Vec<PolicyChange>,
    /// Whether anything but single pods and NetworkPolicies changed:
    /// another kind, a relist, or more changes than are logged.
    pub structural: bool,
}

/// The change log the watches write and the reconcile loop takes.
#[derive(Debug, Clone)]
pub struct ChangeLog(Arc<Mutex<Changes>>);

impl Default for ChangeLog {
    /// Starts structural: the first reconcile models everything.
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Changes {
            pods: Vec::new(),
            policies: Vec::new(),
            structural: true,
        })))
    }
}

impl ChangeLog {
    fn with<T>(&self, f: impl FnOnce(&mut Changes) -> T) -> T {
        // A panic elsewhere cannot leave `Changes` half-updated.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Everything logged so far; the log starts empty again.
    pub fn take(&self) -> Changes {
        self.with(std::mem::take)
    }

    fn structural(&self) {
        self.with(|changes| {
            changes.structural = true;
            changes.pods.clear();
            changes.policies.clear();
        });
    }

    fn pod(&self, change: PodChange) {
        self.with(|changes| {
            if changes.structural {
                return;
            }
            if changes.pods.len() >= MAX_LOGGED_POD_CHANGES {
                changes.structural = true;
                changes.pods.clear();
                changes.policies.clear();
            } else {
                changes.pods.push(change);
            }
        });
    }

    fn policy(&self, change: PolicyChange) {
        self.with(|changes| {
            if changes.structural {
                return;
            }
            if changes.policies.len() >= MAX_LOGGED_POLICY_CHANGES {
                changes.structural = true;
                changes.pods.clear();
                changes.policies.clear();
            } else {
                changes.policies.push(change);
            }
        });
    }
}

/// Read handles on the stores.
#[derive(Debug, Clone)]
pub struct Stores {
    changes: ChangeLog,
    pods: PodStore,
    namespaces: Store<Namespace>,
    policies: PolicyStore,
    nodes: Store<Node>,
    cluster_policies: Store<ClusterNetworkPolicy>,
}

/// Write handles on the stores: fed by [`spawn`], or directly by tests.
#[derive(Debug)]
pub struct Writers {
    /// What changed, for the reconcile loop.
    pub changes: ChangeLog,
    /// Pods, all namespaces.
    pub pods: PodWriter,
    /// Namespaces.
    pub namespaces: reflector::store::Writer<Namespace>,
    /// NetworkPolicies, all namespaces.
    pub policies: PolicyWriter,
    /// Every Node.
    pub nodes: reflector::store::Writer<Node>,
    /// ClusterNetworkPolicies (a complete empty list while the CRD is absent).
    pub cluster_policies: reflector::store::Writer<ClusterNetworkPolicy>,
}

/// Empty stores; none is ready until its writer sees a complete list.
pub fn stores() -> (Stores, Writers) {
    let writers = Writers {
        changes: ChangeLog::default(),
        pods: PodWriter::default(),
        namespaces: reflector::store::Writer::default(),
        policies: PolicyWriter::default(),
        nodes: reflector::store::Writer::default(),
        cluster_policies: reflector::store::Writer::default(),
    };
    let stores = Stores {
        changes: writers.changes.clone(),
        pods: writers.pods.as_reader(),
        namespaces: writers.namespaces.as_reader(),
        policies: writers.policies.as_reader(),
        nodes: writers.nodes.as_reader(),
        cluster_policies: writers.cluster_policies.as_reader(),
    };
    (stores, writers)
}

/// The objects of `store`, shared, sorted by namespace and name (stores are
/// hash maps; everything downstream must be deterministic).
fn sorted<K>(store: &Store<K>) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects = store.state();
    objects.sort_by(|a, b| {
        (a.meta().namespace.as_deref(), a.meta().name.as_deref())
            .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
    });
    objects
}

impl Stores {
    /// Waits until every store has seen its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), AgentError> {
        let (pods, namespaces, policies, nodes, cluster_policies) = tokio::join!(
            self.pods.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.policies.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.cluster_policies.wait_until_ready(),
        );
        pods.map_err(|_| AgentError::WatchEnded("pods"))?;
        policies.map_err(|_| AgentError::WatchEnded("networkpolicies"))?;
        for (resource, ready) in [
            ("namespaces", namespaces),
            ("nodes", nodes),
            ("clusternetworkpolicies", cluster_policies),
        ] {
            ready.map_err(|_| AgentError::WatchEnded(resource))?;
        }
        Ok(())
    }

    /// What changed since the last call.
    pub fn take_changes(&self) -> Changes {
        self.changes.take()
    }

    /// The object counts of the stores by kind.
    pub fn counts(&self) -> [(&'static str, usize); 5] {
        [
            ("pod", self.pods.len()),
            ("namespace", self.namespaces.len()),
            ("networkpolicy", self.policies.len()),
            ("node", self.nodes.len()),
            ("clusternetworkpolicy", self.cluster_policies.len()),
        ]
    }

    /// The current view, the input of one reconcile: objects are shared
    /// with the stores, not copied (the model sorts pods itself).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            namespaces: sorted(&self.namespaces),
            pods: self.pods.state(),
            policies: {
                let mut policies = self.policies.state();
                policies.sort_by(|a, b| a.id().cmp(b.id()));
                policies
            },
            cluster_policies: sorted(&self.cluster_policies),
            nodes: sorted(&self.nodes),
        }
    }
}

/// Starts the watches; they run until the returned set is dropped.
pub fn spawn(
    client: &Client,
    writers: Writers,
    trigger: &Trigger,
    metrics: &Arc<Metrics>,
    progress: &Arc<tokio::sync::watch::Sender<Progress>>,
) -> JoinSet<()> {
    let config = watcher::Config::default();
    let mut tasks = JoinSet::new();
    tasks.spawn(drive(
        "pods",
        watcher(Api::all(client.clone()), config.clone()),
        writers.pods,
        (strip::pod, record_pod),
        Observers {
            trigger: trigger.clone(),
            metrics: Arc::clone(metrics),
            progress: Some(Arc::clone(progress)),
            changes: writers.changes.clone(),
        },
    ));
    tasks.spawn(drive(
        "namespaces",
        watcher(Api::all(client.clone()), config.clone()),
        writers.namespaces,
        (strip::namespace, record_structural),
        Observers {
            trigger: trigger.clone(),
            metrics: Arc::clone(metrics),
            progress: Some(Arc::clone(progress)),
            changes: writers.changes.clone(),
        },
    ));
    tasks.spawn(drive(
        "networkpolicies",
        watcher(Api::all(client.clone()), config.clone()),
        writers.policies,
        (strip::policy, record_policy),
        Observers {
            trigger: trigger.clone(),
            metrics: Arc::clone(metrics),
            progress: Some(Arc::clone(progress)),
            changes: writers.changes.clone(),
        },
    ));
    // Every Node: `nodes` peers match any node's addresses; only this
    // node's pod CIDRs are read from its own.
    tasks.spawn(drive(
        "nodes",
        watcher(Api::all(client.clone()), config.clone()),
        writers.nodes,
        (strip::node, record_structural),
        Observers {
            trigger: trigger.clone(),
            metrics: Arc::clone(metrics),
            progress: Some(Arc::clone(progress)),
            changes: writers.changes.clone(),
        },
    ));
    tasks.spawn(cluster_policies(
        client.clone(),
        config,
        writers.cluster_policies,
        Observers {
            trigger: trigger.clone(),
            metrics: Arc::clone(metrics),
            progress: Some(Arc::clone(progress)),
            changes: writers.changes.clone(),
        },
    ));
    tasks
}

/// How long the agent waits before asking discovery again for an absent
/// ClusterNetworkPolicy CRD: doubling from the first, up to the last.
const CRD_RECHECK: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_secs(2),
    std::time::Duration::from_mins(1),
);

/// Whether the API server serves ClusterNetworkPolicy: `Ok(false)` for a
/// 404 on the group version's discovery document.
async fn cluster_policies_served(client: &Client) -> Result<bool, kube::Error> {
    let group_version = format!("{}/{}", cnp_api::GROUP, cnp_api::VERSION);
    match client.list_api_group_resources(&group_version).await {
        Ok(resources) => Ok(resources
            .resources
            .iter()
            .any(|resource| resource.name == cnp_api::PLURAL)),
        // By code: an API server without the group answers a plain-text
        // "404 page not found", which kube turns into a Status whose reason
        // is its own parse failure, not NotFound.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// The ClusterNetworkPolicy reflector: waits for the CRD (see the module
/// doc), then feeds its watch into the store like any other.
async fn cluster_policies(
    client: Client,
    config: watcher::Config,
    mut writer: reflector::store::Writer<ClusterNetworkPolicy>,
    observers: Observers,
) {
    let mut wait = CRD_RECHECK.0;
    let mut reported = false;
    loop {
        match cluster_policies_served(&client).await {
            Ok(true) => break,
            Ok(false) => {
                if !reported {
                    tracing::info!(
                        crd = "clusternetworkpolicies.policy.networking.k8s.io",
                        "the ClusterNetworkPolicy CRD is not installed: enforcing NetworkPolicy \
                         only; the watch starts when it appears"
                    );
                    // A complete, empty list: the agent need not wait for it.
                    writer.apply_watcher_event(&Event::Init);
                    writer.apply_watcher_event(&Event::InitDone);
                    reported = true;
                }
            }
            Err(error) => {
                observers.metrics.watch.error("clusternetworkpolicies");
                tracing::warn!(%error, "ClusterNetworkPolicy discovery failed; retrying");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(CRD_RECHECK.1);
    }
    if reported {
        tracing::info!(
            "the ClusterNetworkPolicy CRD is installed: watching ClusterNetworkPolicies"
        );
    }
    drive(
        "clusternetworkpolicies",
        watcher(Api::all(client), config),
        writer,
        (strip::cluster_policy, record_structural),
        observers,
    )
    .await;
}

/// The watcher with backoff: see the module doc.
fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff()
}

/// A store one watch writes: kube-runtime's reflector store, or a view
/// store ([`crate::view_store`]).
trait Sink<K> {
    /// Whether applying `event` changes what the store holds.
    fn changed_by(&self, event: &Event<K>) -> bool;
    /// Applies `event`.
    fn apply(&mut self, event: &Event<K>);
    /// How many objects the store holds.
    fn len(&self) -> usize;
}

impl<K> Sink<K> for reflector::store::Writer<K>
where
    K: Lookup<DynamicType = ()> + Clone + PartialEq + 'static,
{
    fn changed_by(&self, event: &Event<K>) -> bool {
        let store = self.as_reader();
        match event {
            Event::Apply(object) => {
                store.get(&ObjectRef::from_obj(object)).as_deref() != Some(object)
            }
            Event::Delete(object) => store.get(&ObjectRef::from_obj(object)).is_some(),
            Event::InitDone => true,
            Event::Init | Event::InitApply(_) => false,
        }
    }

    fn apply(&mut self, event: &Event<K>) {
        self.apply_watcher_event(event);
    }

    fn len(&self) -> usize {
        self.as_reader().len()
    }
}

impl<V: Named + PartialEq> Sink<Arc<V>> for ViewWriter<V> {
    fn changed_by(&self, event: &Event<Arc<V>>) -> bool {
        match event {
            Event::Apply(view) => self.get(view).as_deref() != Some(&**view),
            Event::Delete(view) => self.get(view).is_some(),
            Event::InitDone => true,
            Event::Init | Event::InitApply(_) => false,
        }
    }

    fn apply(&mut self, event: &Event<Arc<V>>) {
        self.apply_watcher_event(event);
    }

    fn len(&self) -> usize {
        self.as_reader().len()
    }
}

/// Who hears about a watch's events and errors.
struct Observers {
    trigger: Trigger,
    metrics: Arc<Metrics>,
    progress: Option<Arc<tokio::sync::watch::Sender<Progress>>>,
    changes: ChangeLog,
}

/// Logs an event that changes a store into the change log.
type Recorder<S, K> = fn(&S, &Event<K>, &ChangeLog);

/// Logs a pod event that changes the store, before it is applied (the
/// store still holds the pod as it was).
fn record_pod(store: &PodWriter, event: &Event<Arc<PodView>>, changes: &ChangeLog) {
    match event {
        Event::Apply(pod) => changes.pod(PodChange {
            before: store.get(pod),
            after: Some(Arc::clone(pod)),
        }),
        Event::Delete(pod) => changes.pod(PodChange {
            before: store.get(pod),
            after: None,
        }),
        Event::Init | Event::InitApply(_) | Event::InitDone => changes.structural(),
    }
}

/// Logs a NetworkPolicy event that changes the store, before it is applied
/// (the store still holds the policy as it was).
fn record_policy(store: &PolicyWriter, event: &Event<Arc<PolicyView>>, changes: &ChangeLog) {
    match event {
        Event::Apply(policy) => changes.policy(PolicyChange {
            before: store.get(policy),
            after: Some(Arc::clone(policy)),
        }),
        Event::Delete(policy) => changes.policy(PolicyChange {
            before: store.get(policy),
            after: None,
        }),
        Event::Init | Event::InitApply(_) | Event::InitDone => changes.structural(),
    }
}

/// Logs that a kind other than pods and NetworkPolicies changed.
fn record_structural<S, K>(_: &S, _: &Event<K>, changes: &ChangeLog) {
    changes.structural();
}

/// What one watch event carries, reduced by `reduce`.
fn reduced<In, Out>(event: Event<In>, reduce: fn(In) -> Out) -> Event<Out> {
    match event {
        Event::Apply(object) => Event::Apply(reduce(object)),
        Event::Delete(object) => Event::Delete(reduce(object)),
        Event::Init => Event::Init,
        Event::InitApply(object) => Event::InitApply(reduce(object)),
        Event::InitDone => Event::InitDone,
    }
}

/// Feeds one watch stream into its store, queueing reconciles.
async fn drive<In, K, W, S>(
    resource: &'static str,
    stream: S,
    mut writer: W,
    (reduce, record): (fn(In) -> K, Recorder<W, K>),
    observers: Observers,
) where
    W: Sink<K>,
    S: Stream<Item = Result<Event<In>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let event = reduced(event, reduce);
                let changed = writer.changed_by(&event);
                if changed {
                    record(&writer, &event, &observers.changes);
                }
                writer.apply(&event);
                if matches!(event, Event::InitDone) {
                    tracing::info!(resource, objects = writer.len(), "list complete");
                }
                if changed {
                    observers.metrics.reconcile.queued();
                    observers.trigger.queue();
                }
            }
            Err(error) => {
                observers.metrics.watch.error(resource);
                if let Some(progress) = &observers.progress {
                    progress.send_modify(|progress| progress.watch_errors += 1);
                }
                tracing::warn!(resource, %error, "watch failed; retrying with backoff");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn namespace(name: &str, rv: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_events_that_change_the_stripped_view_queue_a_reconcile() {
        let (trigger, mut coalescer) =
            crate::coalesce::channel(std::time::Duration::from_millis(20));
        let (stores, writers) = stores();
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(namespace("x", "1"))),
            Ok(Event::InitDone),
            // Only the resourceVersion differs: nothing to do.
            Ok(Event::Apply(namespace("x", "2"))),
            Ok(Event::Apply(namespace("y", "3"))),
            Ok(Event::Delete(namespace("absent", "4"))),
            Ok(Event::Delete(namespace("x", "5"))),
        ];
        drive(
            "namespaces",
            futures::stream::iter(events),
            writers.namespaces,
            (strip::namespace, record_structural),
            Observers {
                trigger,
                metrics: Arc::new(Metrics::new()),
                progress: None,
                changes: writers.changes.clone(),
            },
        )
        .await;
        // InitDone, apply y, delete x.
        assert_eq!(coalescer.next().await.map(|batch| batch.events), Some(3));
        let names: Vec<_> = stores
            .snapshot()
            .namespaces
            .into_iter()
            .filter_map(|namespace| namespace.metadata.name.clone())
            .collect();
        assert_eq!(names, vec!["y".to_owned()]);
    }
}
