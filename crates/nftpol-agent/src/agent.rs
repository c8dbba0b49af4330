//! The agent loop: wait for every initial list, then reconcile on each
//! coalesced batch of events, off the async executor.
//!
//! Between reconciles, every `counter_interval` the loop reads the rule
//! counters (one `GETRULE` dump, in `spawn_blocking`) into the traffic
//! metrics. The loop owns the dataplane, so a read and a reconcile never
//! share the netlink socket; a batch that becomes due during a read starts
//! when the read ends (its coalescing deadline is kept, the read costs
//! about a millisecond per thousand rules, and rule count depends on
//! policies, never on pods). Reading at scrape time instead would need a
//! second socket or a lock the reconcile waits on, and reading after every
//! reconcile would double the netlink work under pod churn. Scrapes see
//! values at most `counter_interval` old.
//!
//! With re-judging, the same tick, and once more `denied_flush_delay` after
//! a commit that bumped the policy generation, flushes the conntrack
//! entries of flows the new rules denied (see
//! [`Reconciler::flush_denied_flows`]): the short one removes what the
//! first packets after the bump marked (a steady sender's next packet comes
//! within milliseconds, a TCP retransmit within its timeout, 200 ms at
//! least), the tick what came later, so a denied flow's entry goes within
//! `counter_interval` at worst, not at its conntrack timeout (5 days for an
//! established TCP connection, refreshed by every retransmit).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nftpol_ruleset::compile::CompileOptions;
use tokio::sync::watch as channel;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff::RetryBackoff;
use crate::coalesce::{self, Coalescer};
use crate::error::AgentError;
use crate::events::EventReporter;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::reconcile::{ReconcileError, ReconcileReport, Reconciler};
use crate::traffic::TrafficTracker;
use crate::verdict_log::LogDirectory;
use crate::watch::{self, Changes, Stores};
use crate::Dataplane;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node this agent enforces for.
    pub node_name: String,
    /// Compiler settings (deny verdict, unknown local pods).
    pub compile: CompileOptions,
    /// How long after the first event of a burst the reconcile starts.
    pub coalesce_delay: Duration,
    /// Retry delays after a failed reconcile.
    pub retry: RetryBackoff,
    /// How often the rule counters are read into the traffic metrics (and
    /// the conntrack entries of denied flows flushed).
    pub counter_interval: Duration,
    /// How long after a commit that bumped the policy generation the
    /// conntrack entries of flows it denied are flushed.
    pub denied_flush_delay: Duration,
    /// Names for the verdict log reader, kept up to date after each commit
    /// (`None` when verdict logging is off).
    pub log_directory: Option<LogDirectory>,
}

impl AgentConfig {
    /// Defaults for `node_name`: 20 ms coalescing, the default retry
    /// backoff, counters read every 10 s (below the usual scrape interval),
    /// denied flows flushed 1 s after a bump.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            compile: CompileOptions::default(),
            coalesce_delay: Duration::from_millis(20),
            retry: RetryBackoff::default(),
            counter_interval: Duration::from_secs(10),
            denied_flush_delay: Duration::from_secs(1),
            log_directory: None,
        }
    }
}

/// What the loop has done so far, published after every reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Reconciles that committed (or had nothing to change).
    pub commits: u64,
    /// Reconciles that committed a batch (a subset of `commits`); a batch's
    /// metrics and readiness are up to date once this counts it.
    pub batches: u64,
    /// Reconciles that failed.
    pub failures: u64,
    /// Events taken by the coalescer so far.
    pub events: u64,
    /// Watch and list errors so far (each retried with backoff).
    pub watch_errors: u64,
    /// The last successful reconcile's report.
    pub last: Option<ReconcileReport>,
    /// Rule counter reads that succeeded (each one recorded in the metrics).
    pub counter_reads: u64,
    /// Conntrack flushes of denied flows the kernel acknowledged.
    pub conntrack_flushes: u64,
}

/// One node's enforcement loop.
pub struct Agent<D: Dataplane> {
    config: AgentConfig,
    dataplane: D,
    metrics: Arc<Metrics>,
    health: Health,
    progress: Arc<channel::Sender<Progress>>,
    /// Events on policies with parts not enforced as written; none when
    /// the stores are fed by someone else than the watches.
    events: Option<EventReporter>,
}

impl<D: Dataplane + Send + 'static> Agent<D> {
    /// An agent that will program `dataplane`.
    pub fn new(config: AgentConfig, dataplane: D, metrics: Arc<Metrics>, health: Health) -> Self {
        Self {
            config,
            dataplane,
            metrics,
            health,
            progress: Arc::new(channel::Sender::new(Progress::default())),
            events: None,
        }
    }

    /// Follows the loop's progress (tests and diagnostics).
    pub fn progress(&self) -> channel::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Watches the API through `client` and enforces until `shutdown`
    /// completes. The ruleset stays in the kernel when this returns.
    pub async fn run(
        mut self,
        client: kube::Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        self.events = Some(EventReporter::new(client.clone(), &self.config.node_name));
        let (stores, writers) = watch::stores();
        let (trigger, coalescer) = coalesce::channel(self.config.coalesce_delay);
        // Dropping the set aborts the watch tasks when the loop ends.
        let _watches = watch::spawn(&client, writers, &trigger, &self.metrics, &self.progress);
        drop(trigger);
        self.run_with(&stores, coalescer, shutdown).await
    }

    /// The loop over stores fed by someone else (the watches, or a test).
    pub async fn run_with(
        self,
        stores: &Stores,
        mut coalescer: Coalescer,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            ready = stores.wait_until_ready() => ready?,
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!(node = %self.config.node_name, "every initial list is synced; enforcing");
        let Self {
            config,
            dataplane,
            metrics,
            health,
            progress,
            mut events,
        } = self;
        let mut reconciler = Reconciler::new(dataplane, config.node_name, config.compile);
        if let Some(directory) = config.log_directory {
            reconciler.set_log_directory(directory);
        }
        let mut backoff = config.retry;
        let mut tracker = TrafficTracker::default();
        // The first tick is immediate: counters are read after the first commit.
        let mut counter_ticks = tokio::time::interval(config.counter_interval);
        counter_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut flush_at: Option<Instant> = None;
        loop {
            // The changes and the snapshot include every event queued so far.
            let taken = coalescer.take_pending();
            progress.send_modify(|progress| progress.events += taken);
            let changes = stores.take_changes();
            metrics.watch.record(stores.counts());
            let timer = metrics.reconcile.start();
            let view = stores.clone();
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let result = reconcile_changes(&mut reconciler, &changes, &view);
                (reconciler, result)
            })
            .await
            .map_err(AgentError::ReconcileTask)?;
            reconciler = returned;
            match result {
                Ok(report) => {
                    timer.committed(report.sync);
                    if let Some(events) = events.as_mut().filter(|_| !report.invalid.is_empty()) {
                        events.report(&report.invalid, &stores.snapshot());
                    }
                    if report.rejudge_generation.is_some() {
                        flush_at = Some(Instant::now() + config.denied_flush_delay);
                    }
                    record_commit(
                        report,
                        &mut reconciler,
                        &metrics,
                        &mut tracker,
                        &health,
                        &progress,
                    );
                    backoff.reset();
                }
                Err(error) => {
                    metrics.reconcile.failed(&error);
                    progress.send_modify(|progress| progress.failures += 1);
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %error,
                        retry_in_ms = delay.as_millis(),
                        "reconcile failed; the last committed ruleset stays in force"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
            // The batch future lives across counter reads: its deadline,
            // measured from the first event, is kept.
            let mut next = std::pin::pin!(coalescer.next());
            loop {
                tokio::select! {
                    batch = &mut next => {
                        let batch = batch.ok_or(AgentError::WatchesEnded)?;
                        tracing::debug!(events = batch.events, "coalesced");
                        progress.send_modify(|progress| progress.events += batch.events);
                        break;
                    }
                    _ = counter_ticks.tick() => {
                        reconciler = read_counters(reconciler, &mut tracker, &metrics, &progress).await?;
                        reconciler = flush_denied(reconciler, &metrics, &progress).await?;
                    }
                    () = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                        flush_at = None;
                        reconciler = flush_denied(reconciler, &metrics, &progress).await?;
                    }
                    () = &mut shutdown => return Ok(()),
                }
            }
        }
    }
}

/// Reconciles `changes` on the path they allow: the full model for a
/// structural change, the element path for pods alone, the policy path for
/// NetworkPolicies alone. One batch per reconcile, so pod and policy
/// changes together take the full model.
fn reconcile_changes<D: Dataplane>(
    reconciler: &mut Reconciler<D>,
    changes: &Changes,
    view: &Stores,
) -> Result<ReconcileReport, ReconcileError> {
    let only_policies = !changes.policies.is_empty() && changes.pods.is_empty();
    if changes.structural || (!changes.policies.is_empty() && !only_policies) {
        reconciler.reconcile(&view.snapshot())
    } else if only_policies {
        reconciler.reconcile_policies(&changes.policies, || view.snapshot())
    } else {
        reconciler.reconcile_pods(&changes.pods, || view.snapshot())
    }
}

/// Records a successful reconcile's `report` in the metrics, the traffic
/// tracker, the readiness and (last, so that whoever follows it sees the
/// rest done) the progress.
fn record_commit<D: Dataplane>(
    report: ReconcileReport,
    reconciler: &mut Reconciler<D>,
    metrics: &Metrics,
    tracker: &mut TrafficTracker,
    health: &Health,
    progress: &channel::Sender<Progress>,
) {
    metrics.reconcile.succeeded();
    metrics.batch.record(&report);
    if let Some(committed) = reconciler.committed() {
        metrics
            .ruleset
            .record(committed, reconciler.provenance(), &report);
    }
    tracker.forget_chains(&reconciler.take_replaced_rule_chains());
    metrics.traffic.follow(reconciler.provenance());
    health.set_ready();
    progress.send_modify(|progress| {
        progress.commits += 1;
        progress.batches += u64::from(report.changes > 0);
        progress.last = Some(report);
    });
}

/// Reads the rule counters off the executor and adds what they counted
/// since the previous read to the traffic metrics. A failed read is logged
/// and counted; the next tick tries again.
async fn read_counters<D: Dataplane + Send + 'static>(
    mut reconciler: Reconciler<D>,
    tracker: &mut TrafficTracker,
    metrics: &Metrics,
    progress: &channel::Sender<Progress>,
) -> Result<Reconciler<D>, AgentError> {
    let (reconciler, read) = tokio::task::spawn_blocking(move || {
        let read = reconciler.dataplane_mut().read_counters();
        (reconciler, read)
    })
    .await
    .map_err(AgentError::CounterTask)?;
    match read {
        Ok(counters) => {
            let increments = tracker.observe(reconciler.provenance(), &counters);
            metrics.traffic.record(&increments);
            progress.send_modify(|progress| progress.counter_reads += 1);
        }
        Err(error) => {
            metrics.traffic.read_failed(&error);
            tracing::warn!(error = %error, "reading the rule counters failed; retried at the next tick");
        }
    }
    Ok(reconciler)
}

/// Flushes the conntrack entries of denied flows off the executor. A
/// failure is logged and counted, never fatal; the next tick tries again.
async fn flush_denied<D: Dataplane + Send + 'static>(
    mut reconciler: Reconciler<D>,
    metrics: &Metrics,
    progress: &channel::Sender<Progress>,
) -> Result<Reconciler<D>, AgentError> {
    let (reconciler, flushed) = tokio::task::spawn_blocking(move || {
        let flushed = reconciler.flush_denied_flows();
        (reconciler, flushed)
    })
    .await
    .map_err(AgentError::ConntrackTask)?;
    match flushed {
        Ok(0) => {}
        Ok(flushes) => {
            metrics.conntrack.flushed(flushes);
            progress.send_modify(|progress| progress.conntrack_flushes += flushes);
        }
        Err(error) => {
            metrics.conntrack.failed(&error);
            tracing::warn!(error = %error, "flushing the conntrack entries of denied flows failed; retried at the next tick");
        }
    }
    Ok(reconciler)
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use nftpol_netlink::FakeDataplane;
    use nftpol_ruleset::rejudge::Rejudge;

    use crate::reconcile::Sync;

    use super::*;

    fn ready_stores() -> Stores {
        let (stores, mut writers) = watch::stores();
        writers.pods.apply_watcher_event(&Event::InitDone);
        writers.namespaces.apply_watcher_event(&Event::InitDone);
        writers.policies.apply_watcher_event(&Event::InitDone);
        writers.nodes.apply_watcher_event(&Event::InitDone);
        writers
            .cluster_policies
            .apply_watcher_event(&Event::InitDone);
        stores
    }

    /// Runs `agent`'s loop in a task on stores whose lists are complete.
    /// Sending on (or dropping) the returned sender stops it; the trigger
    /// must live as long as the loop should.
    fn spawn_loop(
        agent: Agent<FakeDataplane>,
    ) -> (
        coalesce::Trigger,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), AgentError>>,
    ) {
        let stores = ready_stores();
        let (trigger, coalescer) = coalesce::channel(Duration::from_millis(20));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            agent
                .run_with(&stores, coalescer, async {
                    let _ = stopped.await;
                })
                .await
        });
        (trigger, stop, task)
    }

    /// What a predecessor left in the kernel: pod a of x on node-1 isolated
    /// by a deny-all, with re-judging, generation 1.
    fn predecessor_table() -> nftpol_ir::Ruleset {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n\
                    spec: {nodeName: node-1, containers: [{name: c}]}\n\
                    status: {podIP: 10.244.1.2}\n---\n\
                    apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                    metadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";
        let cluster = nftpol_model::manifests::parse(text)
            .expect("the manifests parse")
            .cluster;
        let options = CompileOptions {
            rejudge: Some(Rejudge::default()),
            ..CompileOptions::default()
        };
        nftpol_ruleset::compile::compile(&nftpol_model::resolve(&cluster, "node-1"), options)
            .ruleset
    }

    #[tokio::test(start_paused = true)]
    async fn a_bump_flushes_denied_flows_after_the_delay_and_every_counter_tick_flushes() {
        // The empty cluster no longer isolates a: the first commit takes
        // permission away, so it bumps the generation.
        let dataplane = FakeDataplane::with_state(Some(predecessor_table()));
        let mut config = AgentConfig::new("node-1");
        config.compile.rejudge = Some(Rejudge::default());
        config.counter_interval = Duration::from_hours(1);
        config.denied_flush_delay = Duration::from_secs(1);
        let agent = Agent::new(
            config,
            dataplane,
            Arc::new(Metrics::new()),
            Health::default(),
        );
        let mut progress = agent.progress();
        let started = Instant::now();
        let (_trigger, stop, task) = spawn_loop(agent);

        let committed = progress
            .wait_for(|progress| progress.commits == 1)
            .await
            .expect("loop running")
            .clone();
        assert_eq!(
            committed.last.and_then(|report| report.rejudge_generation),
            Some(2),
            "the commit bumped the adopted generation"
        );
        progress
            .wait_for(|progress| progress.conntrack_flushes == 2)
            .await
            .expect("loop running");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the first counter tick, immediate, flushed both directions"
        );
        progress
            .wait_for(|progress| progress.conntrack_flushes == 4)
            .await
            .expect("loop running");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_hours(1),
            "the flush after the bump came after its delay, before the next tick ({waited:?})"
        );

        stop.send(()).expect("loop running");
        task.await.expect("loop task").expect("clean stop");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_commit_is_retried_after_the_backoff_as_a_full_sync() {
        let mut dataplane = FakeDataplane::new();
        dataplane.fail_next_apply(nix::errno::Errno::ENOBUFS);
        let mut config = AgentConfig::new("node-1");
        config.retry = RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let health = Health::default();
        let agent = Agent::new(config, dataplane, Arc::new(Metrics::new()), health.clone());
        let mut progress = agent.progress();
        let started = Instant::now();
        let (_trigger, stop, task) = spawn_loop(agent);

        let failed = progress
            .wait_for(|progress| progress.failures == 1)
            .await
            .expect("loop running")
            .clone();
        assert_eq!(failed.commits, 0);
        assert!(!health.is_ready(), "nothing committed yet");
        let committed = progress
            .wait_for(|progress| progress.commits == 1)
            .await
            .expect("loop running")
            .clone();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "the retry waited for the backoff"
        );
        assert_eq!(committed.failures, 1);
        assert!(
            committed.last.expect("a report").sync == Sync::Full,
            "a retry re-reads the kernel"
        );
        assert!(health.is_ready());

        stop.send(()).expect("loop running");
        task.await.expect("loop task").expect("clean stop");
    }
}
