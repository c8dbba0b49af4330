//! Prometheus metrics, one struct per concern, registered once in
//! [`Metrics::new`] under the `nftpol_` prefix.
//!
//! Label values come from closed sets (`sync`, `kind`, `resource`,
//! `direction`, `reason`); the per-policy allow and deny counters are the
//! only ones naming objects, and their series disappear with their policy
//! ([`TrafficMetrics::follow`] after each commit).
//!
//! Traffic counters are the ruleset's nft rule counters, read by the agent
//! loop on a timer and attributed by [`crate::traffic`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nftpol_ir::Ruleset;
use nftpol_model::cluster_policy::Tier;
use nftpol_netlink::{ConntrackError, ReadError};
use nftpol_ruleset::catalogue::{Provenance, SetKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::reconcile::{ReconcileError, ReconcileReport, Sync};
use crate::traffic::{
    cluster_rule_series, policy_series, ClusterRuleKey, Increments, PolicyDirection,
};

/// `sync="full|partial|pods|policy"` (see [`Sync::label`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SyncLabel {
    sync: &'static str,
}

/// `kind="…"`: an error kind, a set kind or an object kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// `tier="Admin|Baseline"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

/// `resource="pods|namespaces|networkpolicies|nodes"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResourceLabel {
    resource: &'static str,
}

/// One policy and direction. Four families hold a series of each, and each
/// family keeps its own copy of the labels: the names are shared, not
/// copied four times (10,000 policies make 80,000 series).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyLabels {
    namespace: Arc<str>,
    policy: Arc<str>,
    direction: &'static str,
}

impl From<&PolicyDirection> for PolicyLabels {
    fn from(owner: &PolicyDirection) -> Self {
        Self {
            namespace: Arc::from(owner.policy.namespace.as_str()),
            policy: Arc::from(owner.policy.name.as_str()),
            direction: owner.direction.label(),
        }
    }
}

/// `tier, policy, rule, action, direction` of one ClusterNetworkPolicy rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterRuleLabels {
    tier: &'static str,
    policy: String,
    rule: String,
    action: &'static str,
    direction: &'static str,
}

impl From<&ClusterRuleKey> for ClusterRuleLabels {
    fn from(key: &ClusterRuleKey) -> Self {
        Self {
            tier: key.tier.as_str(),
            policy: key.policy.clone(),
            rule: key.rule.to_string(),
            action: key.action.as_str(),
            direction: key.direction.label(),
        }
    }
}

/// `direction="ingress|egress", reason="isolated|unknown_pod"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DenyLabels {
    direction: &'static str,
    reason: &'static str,
}

/// Buckets from 0.5 ms to about 16 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

type TimestampGauge = Gauge<f64, AtomicU64>;

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Reconcile attempts: duration, failures by kind, progress timestamps.
#[derive(Debug, Clone)]
pub struct ReconcileMetrics {
    duration: Family<SyncLabel, Histogram, fn() -> Histogram>,
    errors: Family<KindLabel, Counter>,
    last_success: TimestampGauge,
    last_queued: TimestampGauge,
    events: Counter,
    reconciles: Counter,
}

/// Times a reconcile from its snapshot; [`ReconcileTimer::committed`]
/// records it under the sync the reconcile reports, known only afterwards
/// (a pod change may take the element path or fall back to a full model).
#[derive(Debug)]
pub struct ReconcileTimer {
    duration: Family<SyncLabel, Histogram, fn() -> Histogram>,
    started: Instant,
}

impl ReconcileTimer {
    /// Records the duration of a reconcile that committed by `sync`.
    pub fn committed(self, sync: Sync) {
        self.duration
            .get_or_create(&SyncLabel { sync: sync.label() })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl ReconcileMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            errors: Family::default(),
            last_success: TimestampGauge::default(),
            last_queued: TimestampGauge::default(),
            events: Counter::default(),
            reconciles: Counter::default(),
        };
        registry.register_with_unit(
            "reconcile_duration",
            "Time from snapshot to committed batch",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that did not commit, by error kind",
            metrics.errors.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles that committed (or found nothing to change)",
            metrics.reconciles.clone(),
        );
        registry.register_with_unit(
            "last_reconcile_success_timestamp",
            "When the last reconcile committed (Unix time)",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register_with_unit(
            "last_event_queued_timestamp",
            "When the last watch event was queued (Unix time); a growing gap to the last success means the loop is stuck",
            Unit::Seconds,
            metrics.last_queued.clone(),
        );
        registry.register(
            "events_queued",
            "Watch events that changed what enforcement reads",
            metrics.events.clone(),
        );
        metrics
    }

    /// Starts timing a reconcile.
    pub fn start(&self) -> ReconcileTimer {
        ReconcileTimer {
            duration: self.duration.clone(),
            started: Instant::now(),
        }
    }

    /// Records a committed reconcile.
    pub fn succeeded(&self) {
        self.reconciles.inc();
        self.last_success.set(now_seconds());
    }

    /// Records a failed reconcile by its kind.
    pub fn failed(&self, error: &ReconcileError) {
        let kind = match error {
            ReconcileError::Read(error) => error.kind(),
            ReconcileError::Apply(error) => error.kind(),
        };
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Records a queued watch event.
    pub fn queued(&self) {
        self.events.inc();
        self.last_queued.set(now_seconds());
    }
}

/// Batches sent to the kernel.
#[derive(Debug, Clone, Default)]
pub struct BatchMetrics {
    batches: Counter,
    messages: Counter,
    bytes: Counter,
}

impl BatchMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register("batches", "Batches committed", metrics.batches.clone());
        registry.register(
            "batch_messages",
            "Netlink messages in committed batches",
            metrics.messages.clone(),
        );
        registry.register_with_unit(
            "batch",
            "Size of committed batches",
            Unit::Bytes,
            metrics.bytes.clone(),
        );
        metrics
    }

    /// Records the batch a reconcile sent, if any.
    pub fn record(&self, report: &ReconcileReport) {
        if report.messages > 0 {
            self.batches.inc();
            self.messages.inc_by(report.messages as u64);
            self.bytes.inc_by(report.bytes as u64);
        }
    }
}

/// The committed ruleset's shape.
#[derive(Debug, Clone, Default)]
pub struct RulesetMetrics {
    rules: Gauge,
    elements: Family<KindLabel, Gauge>,
    invalid: Gauge,
    priority_ties: Family<TierLabel, Gauge>,
}

impl RulesetMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rules",
            "Rules in the committed ruleset",
            metrics.rules.clone(),
        );
        registry.register(
            "set_elements",
            "Elements in the committed ruleset's sets and maps, by set kind",
            metrics.elements.clone(),
        );
        registry.register(
            "invalid_object_parts",
            "Invalid object parts in the last reconcile (each error says what applies instead: a policy part allows nothing, an annotation its default)",
            metrics.invalid.clone(),
        );
        registry.register(
            "cnp_priority_ties",
            "Pairs of ClusterNetworkPolicies of one tier sharing a priority in the last reconcile (nftpol orders each pair by name; the spec leaves it undefined)",
            metrics.priority_ties.clone(),
        );
        metrics
    }

    /// Records the committed ruleset.
    pub fn record(&self, ruleset: &Ruleset, provenance: &Provenance, report: &ReconcileReport) {
        self.rules
            .set(i64::try_from(ruleset.rule_count()).unwrap_or(i64::MAX));
        self.invalid
            .set(i64::try_from(report.invalid.len()).unwrap_or(i64::MAX));
        for tier in [Tier::Admin, Tier::Baseline] {
            let ties = report.priority_ties.iter().filter(|tie| tie.tier == tier);
            self.priority_ties
                .get_or_create(&TierLabel {
                    tier: tier.as_str(),
                })
                .set(i64::try_from(ties.count()).unwrap_or(i64::MAX));
        }
        let mut elements: BTreeMap<&'static str, usize> = BTreeMap::new();
        for set in ruleset.sets.values() {
            let kind = provenance
                .set_kind(&set.name)
                .map_or("other", SetKind::label);
            *elements.entry(kind).or_default() += set.elements.len();
        }
        self.elements.clear();
        for (kind, count) in elements {
            self.elements
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

/// Traffic per policy and direction, from the ruleset's rule counters.
#[derive(Debug, Default)]
pub struct TrafficMetrics {
    allowed_packets: Family<PolicyLabels, Counter>,
    allowed_bytes: Family<PolicyLabels, Counter>,
    policy_denied_packets: Family<PolicyLabels, Counter>,
    policy_denied_bytes: Family<PolicyLabels, Counter>,
    denied_packets: Family<DenyLabels, Counter>,
    denied_bytes: Family<DenyLabels, Counter>,
    read_errors: Family<KindLabel, Counter>,
    cluster_rule_packets: Family<ClusterRuleLabels, Counter>,
    cluster_rule_bytes: Family<ClusterRuleLabels, Counter>,
    /// The per-policy series that exist: those of the committed ruleset.
    series: Mutex<BTreeSet<PolicyDirection>>,
    /// The per-ClusterNetworkPolicy-rule series that exist.
    cluster_series: Mutex<BTreeSet<ClusterRuleKey>>,
}

impl TrafficMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "policy_allowed_packets",
            "Packets accepted by a policy's allow rules",
            metrics.allowed_packets.clone(),
        );
        registry.register_with_unit(
            "policy_allowed",
            "Bytes accepted by a policy's allow rules",
            Unit::Bytes,
            metrics.allowed_bytes.clone(),
        );
        registry.register(
            "policy_denied_packets",
            "Packets denied to pods the policy isolates, that none of their policies allowed (counted for each of those policies)",
            metrics.policy_denied_packets.clone(),
        );
        registry.register_with_unit(
            "policy_denied",
            "Bytes denied to pods the policy isolates, that none of their policies allowed (counted for each of those policies)",
            Unit::Bytes,
            metrics.policy_denied_bytes.clone(),
        );
        registry.register(
            "denied_packets",
            "Packets denied, once each: isolated pods' traffic no policy allowed, or traffic of unknown local pods",
            metrics.denied_packets.clone(),
        );
        registry.register_with_unit(
            "denied",
            "Bytes denied, once each: isolated pods' traffic no policy allowed, or traffic of unknown local pods",
            Unit::Bytes,
            metrics.denied_bytes.clone(),
        );
        registry.register(
            "cnp_rule_packets",
            "Packets a ClusterNetworkPolicy rule matched (accepted, denied or passed on)",
            metrics.cluster_rule_packets.clone(),
        );
        registry.register_with_unit(
            "cnp_rule",
            "Bytes a ClusterNetworkPolicy rule matched (accepted, denied or passed on)",
            Unit::Bytes,
            metrics.cluster_rule_bytes.clone(),
        );
        registry.register(
            "counter_read_errors",
            "Failed reads of the ruleset's rule counters, by error kind",
            metrics.read_errors.clone(),
        );
        metrics
    }

    fn series(&self) -> std::sync::MutexGuard<'_, BTreeSet<PolicyDirection>> {
        // The set is replaced whole under the lock, so a panic elsewhere
        // cannot leave it half-updated.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows a commit: the series of policies (and directions) gone from
    /// the committed ruleset are removed, those of new ones start at 0.
    pub fn follow(&self, provenance: &Provenance) {
        let now = policy_series(provenance);
        let mut series = self.series();
        let families = [
            &self.allowed_packets,
            &self.allowed_bytes,
            &self.policy_denied_packets,
            &self.policy_denied_bytes,
        ];
        for gone in series.difference(&now) {
            let labels = PolicyLabels::from(gone);
            for family in families {
                family.remove(&labels);
            }
        }
        for new in now.difference(&series) {
            let labels = PolicyLabels::from(new);
            for family in families {
                // Creating the series is the point; the guard is not needed.
                drop(family.get_or_create(&labels));
            }
        }
        *series = now;
        drop(series);
        let now = cluster_rule_series(provenance);
        let mut series = self
            .cluster_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in series.difference(&now) {
            let labels = ClusterRuleLabels::from(gone);
            self.cluster_rule_packets.remove(&labels);
            self.cluster_rule_bytes.remove(&labels);
        }
        for new in now.difference(&series) {
            let labels = ClusterRuleLabels::from(new);
            drop(self.cluster_rule_packets.get_or_create(&labels));
            drop(self.cluster_rule_bytes.get_or_create(&labels));
        }
        *series = now;
    }

    /// Adds the traffic counted since the previous read. Increments of a
    /// policy without series (gone since) are dropped with it.
    pub fn record(&self, increments: &Increments) {
        let series = self.series();
        for (owner, traffic) in &increments.allowed {
            if series.contains(owner) {
                let labels = PolicyLabels::from(owner);
                self.allowed_packets
                    .get_or_create(&labels)
                    .inc_by(traffic.packets);
                self.allowed_bytes
                    .get_or_create(&labels)
                    .inc_by(traffic.bytes);
            }
        }
        for (owner, traffic) in &increments.policy_denied {
            if series.contains(owner) {
                let labels = PolicyLabels::from(owner);
                self.policy_denied_packets
                    .get_or_create(&labels)
                    .inc_by(traffic.packets);
                self.policy_denied_bytes
                    .get_or_create(&labels)
                    .inc_by(traffic.bytes);
            }
        }
        drop(series);
        let series = self
            .cluster_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, traffic) in &increments.cluster_rules {
            if series.contains(key) {
                let labels = ClusterRuleLabels::from(key);
                self.cluster_rule_packets
                    .get_or_create(&labels)
                    .inc_by(traffic.packets);
                self.cluster_rule_bytes
                    .get_or_create(&labels)
                    .inc_by(traffic.bytes);
            }
        }
        for ((direction, reason), traffic) in &increments.denied {
            let labels = DenyLabels {
                direction: direction.label(),
                reason: reason.label(),
            };
            self.denied_packets
                .get_or_create(&labels)
                .inc_by(traffic.packets);
            self.denied_bytes
                .get_or_create(&labels)
                .inc_by(traffic.bytes);
        }
    }

    /// Records a failed counter read.
    pub fn read_failed(&self, error: &ReadError) {
        self.read_errors
            .get_or_create(&KindLabel { kind: error.kind() })
            .inc();
    }
}

/// The conntrack flush of denied flows (see
/// [`Reconciler::flush_denied_flows`](crate::Reconciler::flush_denied_flows)).
/// The kernel does not say how many entries a flush removed, so flushes
/// are counted, not entries.
#[derive(Debug, Clone, Default)]
pub struct ConntrackMetrics {
    flushes: Counter,
    errors: Family<KindLabel, Counter>,
}

impl ConntrackMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "conntrack_denied_flushes",
            "Kernel-filtered conntrack flushes of the flows re-judging denied (one per direction; the kernel does not count the entries removed)",
            metrics.flushes.clone(),
        );
        registry.register(
            "conntrack_flush_errors",
            "Conntrack flushes of denied flows that failed, by kind (retried at the next tick)",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Counts `flushes` the kernel acknowledged.
    pub fn flushed(&self, flushes: u64) {
        self.flushes.inc_by(flushes);
    }

    /// Counts a failed flush.
    pub fn failed(&self, error: &ConntrackError) {
        self.errors
            .get_or_create(&KindLabel { kind: error.kind() })
            .inc();
    }
}

/// What the watches see.
#[derive(Debug, Clone, Default)]
pub struct WatchMetrics {
    objects: Family<KindLabel, Gauge>,
    errors: Family<ResourceLabel, Counter>,
}

impl WatchMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "watched_objects",
            "Objects in the agent's stores at the last reconcile, by kind",
            metrics.objects.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch or list errors (each followed by a retry with backoff)",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Records the store sizes a reconcile works from.
    pub fn record(&self, counts: [(&'static str, usize); 5]) {
        for (kind, count) in counts {
            self.objects
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records a watch error on `resource`.
    pub fn error(&self, resource: &'static str) {
        self.errors.get_or_create(&ResourceLabel { resource }).inc();
    }
}

/// `verdict="accept|drop|reject", direction="ingress|egress"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
    direction: &'static str,
}

/// Verdict logs: packets the kernel logged to NFLOG, reported as lines or
/// lost. Every logged packet lands in exactly one of the two.
#[derive(Debug, Clone, Default)]
pub struct VerdictLogMetrics {
    lines: Family<VerdictLabels, Counter>,
    lost: Counter,
}

impl VerdictLogMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "verdict_log_lines",
            "Logged packets reported in verdict log lines (a merged line counts each of its packets)",
            metrics.lines.clone(),
        );
        registry.register(
            "verdict_log_lost",
            "Logged packets not reported: the NFLOG socket buffer overflowed, the merge table was full, or the output failed",
            metrics.lost.clone(),
        );
        metrics
    }

    /// Counts `packets` reported with `verdict` in `direction`.
    pub fn reported(&self, verdict: &'static str, direction: &'static str, packets: u64) {
        self.lines
            .get_or_create(&VerdictLabels { verdict, direction })
            .inc_by(packets);
    }

    /// Counts `packets` logged by the kernel but not reported.
    pub fn lost(&self, packets: u64) {
        self.lost.inc_by(packets);
    }
}

/// Every metric of the agent, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconcile attempts.
    pub reconcile: ReconcileMetrics,
    /// Committed batches.
    pub batch: BatchMetrics,
    /// The committed ruleset.
    pub ruleset: RulesetMetrics,
    /// Traffic per policy, from the rule counters.
    pub traffic: TrafficMetrics,
    /// The watches.
    pub watch: WatchMetrics,
    /// Verdict logs.
    pub verdict_log: VerdictLogMetrics,
    /// The conntrack flush of denied flows.
    pub conntrack: ConntrackMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under `nftpol_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nftpol");
        Self {
            reconcile: ReconcileMetrics::register(&mut registry),
            batch: BatchMetrics::register(&mut registry),
            ruleset: RulesetMetrics::register(&mut registry),
            traffic: TrafficMetrics::register(&mut registry),
            watch: WatchMetrics::register(&mut registry),
            verdict_log: VerdictLogMetrics::register(&mut registry),
            conntrack: ConntrackMetrics::register(&mut registry),
            registry,
        }
    }

    /// The OpenMetrics text exposition (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an error here would mean a
        // metric's own encoder failed, and a partial page is still useful.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_prefixed_names_with_units() {
        let metrics = Metrics::new();
        metrics.reconcile.start().committed(Sync::Full);
        metrics.reconcile.succeeded();
        let text = metrics.encode();
        for name in [
            "nftpol_reconcile_duration_seconds_bucket{le=",
            "nftpol_reconciles_total 1",
            "nftpol_last_reconcile_success_timestamp_seconds ",
            "nftpol_batch_bytes_total 0",
            "nftpol_rules 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("sync=\"full\""), "{text}");
    }
}
