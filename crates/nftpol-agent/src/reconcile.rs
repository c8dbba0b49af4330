//! The reconcile step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nftpol_ir::diff::{diff, Change, Diff};
use nftpol_ir::Ruleset;
use nftpol_model::{
    cluster_policy::PriorityTie, resolve_snapshot_with_context, Direction, LogLimit, ModelError,
    PodChange, PolicyChange, PolicyContext, PolicyId, PolicyVersion, PolicyView, RemotePods,
    Snapshot,
};
use nftpol_netlink::{Applied, ApplyError, ConntrackError, Dataplane, ReadError};
use nftpol_ruleset::catalogue::Provenance;
use nftpol_ruleset::compile::{
    compile, pod_delta, policy_delta, CommittedState, CompileOptions, PolicyBatch, PolicyDelta,
};
use nftpol_ruleset::rejudge::{self, Rejudge};

use crate::verdict_log::{Directory, LogDirectory};

/// Why a reconcile did not commit. The previous ruleset stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading the kernel's table back for a full sync failed.
    #[error("reading table inet nftpol back from the kernel")]
    Read(#[source] Box<ReadError>),
    /// The kernel rejected the batch; it is unchanged.
    #[error("committing the ruleset")]
    Apply(#[source] Box<ApplyError>),
}

/// How a reconcile reached the kernel: decided where the path is chosen,
/// carried in the report, read by the log span and the metrics after the
/// fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sync {
    /// A full model, diffed against the kernel's table read back (at start,
    /// after a failure, when adopting a predecessor's table).
    #[default]
    Full,
    /// A full model, diffed against the last committed ruleset.
    Partial,
    /// Remote pods' changes alone, as element changes (no full model).
    Pods,
    /// One NetworkPolicy's change alone: the objects it touches (no full
    /// model).
    Policy,
}

impl Sync {
    /// `full`, `partial`, `pods` or `policy`: the log field and the metric
    /// label.
    pub fn label(self) -> &'static str {
        match self {
            Sync::Full => "full",
            Sync::Partial => "partial",
            Sync::Pods => "pods",
            Sync::Policy => "policy",
        }
    }
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Reconciles attempted so far, this one included.
    pub generation: u64,
    /// How the reconcile reached the kernel.
    pub sync: Sync,
    /// Changes in the batch (0: nothing to do, no batch sent).
    pub changes: usize,
    /// Elements added.
    pub elements_added: usize,
    /// Elements deleted.
    pub elements_deleted: usize,
    /// Netlink messages sent.
    pub messages: usize,
    /// Batch size in bytes.
    pub bytes: usize,
    /// Rules in the committed ruleset.
    pub rules: usize,
    /// Set elements in the committed ruleset.
    pub elements: usize,
    /// Invalid parts of objects (each says what applies instead).
    pub invalid: Vec<ModelError>,
    /// ClusterNetworkPolicies of one tier that share a priority (nftpol
    /// orders each pair by name; the spec leaves it undefined).
    pub priority_ties: Vec<PriorityTie>,
    /// The policy generation this commit moved to, when it may take
    /// permission away (every established flow is judged again).
    pub rejudge_generation: Option<u32>,
}

impl ReconcileReport {
    /// The report of a commit of `changes` that sent `applied` (nothing
    /// when no batch was needed) and left `committed` in force.
    fn of_commit(
        generation: u64,
        sync: Sync,
        changes: &Diff,
        applied: Applied,
        committed: &Ruleset,
        findings: &Findings,
        rejudged: Option<Rejudge>,
    ) -> Self {
        let (elements_added, elements_deleted) = changes.element_counts();
        Self {
            generation,
            sync,
            changes: changes.changes.len(),
            elements_added,
            elements_deleted,
            messages: applied.messages,
            bytes: applied.bytes,
            rules: committed.rule_count(),
            elements: committed.element_count(),
            invalid: findings.invalid.clone(),
            priority_ties: findings.priority_ties.clone(),
            rejudge_generation: rejudged.map(|next| next.generation.get()),
        }
    }
}

/// What the last full model found wrong or ambiguous in the cluster's
/// objects; the element path reports it again, as nothing it changes can
/// alter it.
#[derive(Debug, Default)]
struct Findings {
    invalid: Vec<ModelError>,
    priority_ties: Vec<PriorityTie>,
}

/// Keeps one node's table in step with the cluster.
pub struct Reconciler<D: Dataplane> {
    dataplane: D,
    node: String,
    options: CompileOptions,
    committed: Option<Ruleset>,
    /// Where every object of the committed ruleset came from.
    provenance: Provenance,
    /// How many policy rules use each shared set of the committed ruleset.
    set_users: BTreeMap<String, usize>,
    /// The log limit of every policy the committed ruleset was compiled
    /// from (the policy path's new group chains log at the strictest).
    log_limits: BTreeMap<PolicyId, LogLimit>,
    /// The pods indexed for the policy path; dropped whenever pods (or
    /// anything but one policy) may have changed, rebuilt on demand.
    policy_context: Option<PolicyContext>,
    replaced_rules: BTreeSet<String>,
    full_sync_next: bool,
    generation: u64,
    /// What the last full model knew about remote pods, kept up to date by
    /// the element path (`None` before a model, and after the element path
    /// failed).
    remote_pods: Option<RemotePods>,
    /// The last full model's findings.
    findings: Findings,
    /// Names for the verdict log, kept up to date when logging is on.
    log_directory: Option<LogDirectory>,
}

impl<D: Dataplane> Reconciler<D> {
    /// A reconciler for node `node`; its first reconcile is a full sync.
    pub fn new(dataplane: D, node: impl Into<String>, options: CompileOptions) -> Self {
        Self {
            dataplane,
            node: node.into(),
            options,
            committed: None,
            provenance: Provenance::default(),
            set_users: BTreeMap::new(),
            log_limits: BTreeMap::new(),
            policy_context: None,
            replaced_rules: BTreeSet::new(),
            full_sync_next: true,
            generation: 0,
            remote_pods: None,
            findings: Findings::default(),
            log_directory: None,
        }
    }

    /// Keeps `directory` up to date after every commit, for the verdict
    /// log reader.
    pub fn set_log_directory(&mut self, directory: LogDirectory) {
        self.log_directory = Some(directory);
    }

    /// The ruleset last committed: `None` before the first commit, and
    /// after a full model failed to commit (the next reconcile reads the
    /// kernel's table back).
    pub fn committed(&self) -> Option<&Ruleset> {
        self.committed.as_ref()
    }

    /// Where every chain, rule and set of the committed ruleset came from.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Chains whose rules commits replaced (flushed, deleted or appended
    /// to) since the last call: their kernel counters restarted from 0.
    pub fn take_replaced_rule_chains(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.replaced_rules)
    }

    /// Whether the next reconcile is a full sync (at start and after a failure).
    pub fn is_full_sync_next(&self) -> bool {
        self.full_sync_next
    }

    /// The dataplane, e.g. for verification.
    pub fn dataplane_mut(&mut self) -> &mut D {
        &mut self.dataplane
    }

    /// Brings the kernel to the ruleset `snapshot` calls for, in one batch.
    pub fn reconcile(&mut self, snapshot: &Snapshot) -> Result<ReconcileReport, ReconcileError> {
        self.generation += 1;
        let sync = if self.full_sync_next {
            Sync::Full
        } else {
            Sync::Partial
        };
        let span = tracing::info_span!(
            "reconcile",
            generation = self.generation,
            sync = sync.label()
        );
        let _entered = span.enter();
        let started = Instant::now();

        // Kept only if this commits: the index is of this snapshot's pods.
        self.policy_context = None;
        let (mut model, policy_context) = resolve_snapshot_with_context(snapshot, &self.node);
        let findings = Findings {
            invalid: std::mem::take(&mut model.errors),
            priority_ties: std::mem::take(&mut model.priority_ties),
        };
        // Said once while it lasts (the metrics count it every reconcile):
        // a standing finding repeated on every pod event would bury the log.
        for error in findings
            .invalid
            .iter()
            .filter(|e| !self.findings.invalid.contains(e))
        {
            tracing::warn!(%error, "invalid object part");
        }
        let known_ties = &self.findings.priority_ties;
        for tie in findings
            .priority_ties
            .iter()
            .filter(|t| !known_ties.contains(t))
        {
            tracing::warn!(%tie, "ClusterNetworkPolicies share a priority");
        }
        let compiled = compile(&model, self.options);
        // What a commit keeps of the model; the rest is freed before the
        // diff and the batch are built (a full sync's peak of memory).
        let log_limits = model
            .policies
            .iter()
            .map(|policy| (policy.id.clone(), policy.log_limit))
            .collect();
        let remote_pods = std::mem::take(&mut model.remote_pods);
        let (local_pods, policies) = (model.local_pods.len(), model.policies.len());
        drop(model);
        let mut desired = compiled.ruleset;
        if sync == Sync::Full {
            self.committed = self
                .dataplane
                .read()
                .map_err(|error| self.failed(ReconcileError::Read(Box::new(error))))?;
            self.adopt_generation(&mut desired);
        }
        // The diff borrows from both rulesets: taken out of `self` until the
        // commit (a failed one reads the kernel's table again anyway).
        let committed = self.committed.take();
        let (report, rejudged) =
            self.commit_model(committed.as_ref(), &mut desired, sync, &findings)?;
        drop(committed);
        self.provenance = compiled.provenance;
        self.set_users = compiled.set_users;
        self.policy_context = Some(policy_context);
        self.log_limits = log_limits;
        if let Some(directory) = &self.log_directory {
            directory.publish(Directory::new(&self.node, &self.provenance, &snapshot.pods));
        }
        self.committed = Some(desired);
        if rejudged.is_some() {
            self.options.rejudge = rejudged;
        }
        self.remote_pods = Some(remote_pods);
        self.findings = findings;
        self.full_sync_next = false;
        tracing::info!(
            pods = local_pods,
            policies,
            rejudge_generation = report.rejudge_generation,
            elements_added = report.elements_added,
            elements_deleted = report.elements_deleted,
            batch_bytes = report.bytes,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "reconciled"
        );
        Ok(report)
    }

    /// Brings the kernel up to date after `changes` to pods: remote pods'
    /// changes become one element-only batch; anything else (and any
    /// change the element path refuses, see [`pod_delta`]) takes the full
    /// path on `snapshot()`.
    pub fn reconcile_pods(
        &mut self,
        changes: &[PodChange],
        snapshot: impl FnOnce() -> Snapshot,
    ) -> Result<ReconcileReport, ReconcileError> {
        let started = Instant::now();
        // Followed below when the element path commits; any other outcome
        // leaves pods the policy path's index does not know.
        let mut policy_context = self.policy_context.take();
        let (Some(remote_pods), Some(committed), false) = (
            self.remote_pods.as_mut(),
            self.committed.as_mut(),
            self.full_sync_next,
        ) else {
            return self.reconcile(&snapshot());
        };
        let pod_changes = changes;
        let Some(mut changes) = pod_delta(remote_pods, pod_changes, committed) else {
            return self.reconcile(&snapshot());
        };
        let bumps =
            !changes.is_empty() && rejudge::elements_may_remove_permission(&changes, committed);
        let rejudged = next_generation(self.options.rejudge, bumps);
        if let Some(next) = rejudged {
            changes = rejudge::with_generation(changes, committed, next);
        }
        self.generation += 1;
        let span = tracing::info_span!(
            "reconcile",
            generation = self.generation,
            sync = Sync::Pods.label()
        );
        let _entered = span.enter();
        let applied = if changes.is_empty() {
            None
        } else {
            match self.dataplane.apply(&changes) {
                Ok(applied) => Some(applied),
                Err(error) => {
                    // The element state counted changes the kernel refused.
                    self.remote_pods = None;
                    return Err(self.failed(ReconcileError::Apply(Box::new(error))));
                }
            }
        };
        // The kernel accepted these changes; if the committed IR refuses
        // them it no longer mirrors the kernel, and the next sync reads the
        // kernel's truth.
        let mirrors_kernel = committed.apply(&changes).is_ok();
        if rejudged.is_some() {
            self.options.rejudge = rejudged;
        }
        if let Some(directory) = &self.log_directory {
            directory.update(|directory| directory.apply(pod_changes));
        }
        if policy_context
            .as_mut()
            .is_some_and(|context| context.apply(pod_changes))
        {
            self.policy_context = policy_context;
        }
        let report = ReconcileReport::of_commit(
            self.generation,
            Sync::Pods,
            &changes,
            applied.unwrap_or_default(),
            committed,
            &self.findings,
            rejudged,
        );
        tracing::info!(
            elements_added = report.elements_added,
            elements_deleted = report.elements_deleted,
            rejudge_generation = report.rejudge_generation,
            batch_bytes = report.bytes,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "reconciled remote pods"
        );
        if !mirrors_kernel {
            self.remote_pods = None;
            self.full_sync_next = true;
        }
        Ok(report)
    }

    /// Brings the kernel up to date after `changes` to NetworkPolicies (in
    /// the order the policy store saw them), without a full model: each
    /// changed policy is resolved alone and diffed where it touches the
    /// committed ruleset (see [`policy_delta`]), in turn, and the deltas
    /// become one batch ([`PolicyBatch`]): work in proportion to the
    /// policies and the pods they select and peer with. What that path
    /// declines (a log-limit change while denies are logged, a state it
    /// does not expect) takes the full path on `snapshot()`.
    pub fn reconcile_policies(
        &mut self,
        changes: &[PolicyChange],
        snapshot: impl Fn() -> Snapshot,
    ) -> Result<ReconcileReport, ReconcileError> {
        let started = Instant::now();
        let (Some(policies), Some(_), false) = (
            by_policy(changes),
            self.committed.as_ref(),
            self.full_sync_next,
        ) else {
            return self.reconcile(&snapshot());
        };
        let context = match self.policy_context.take() {
            Some(context) => context,
            None => PolicyContext::new(&snapshot(), &self.node),
        };
        let versions: Vec<(Option<PolicyVersion>, Option<PolicyVersion>)> = policies
            .into_iter()
            .map(|(before, after)| {
                (
                    before.map(|policy| context.resolve(policy)),
                    after.map(|policy| context.resolve(policy)),
                )
            })
            .collect();
        if versions
            .iter()
            .any(|(before, after)| !path_takes(self.options, before.as_ref(), after.as_ref()))
        {
            return self.reconcile(&snapshot());
        }
        let mut batch = PolicyBatch::default();
        for (before, after) in versions {
            if !self.absorb_policy(&mut batch, &context, before.as_ref(), after) {
                // Earlier deltas may have moved the committed IR: the full
                // path reads the kernel's truth.
                self.full_sync_next = true;
                return self.reconcile(&snapshot());
            }
        }
        self.policy_context = Some(context);
        self.commit_policies(&batch, started)
    }

    /// Makes one policy's delta against the state the deltas before left,
    /// applies it to the committed IR and bookkeeping, and adds it to
    /// `batch`. `false`: the path declined, or the IR refused the delta.
    fn absorb_policy(
        &mut self,
        batch: &mut PolicyBatch,
        context: &PolicyContext,
        before: Option<&PolicyVersion>,
        after: Option<PolicyVersion>,
    ) -> bool {
        let Some(id) = after.as_ref().or(before).map(|version| version.id.clone()) else {
            return true;
        };
        let span = tracing::info_span!("policy", namespace = %id.namespace, name = %id.name);
        let _policy = span.enter();
        let Some(committed) = self.committed.as_ref() else {
            return false;
        };
        let state = CommittedState {
            ruleset: committed,
            provenance: &self.provenance,
            set_users: &self.set_users,
            log_limits: &self.log_limits,
        };
        let Some(delta) = policy_delta(
            state,
            context.pod_families(),
            before,
            after.as_ref(),
            self.options,
        ) else {
            tracing::debug!("the policy path declined; full model");
            return false;
        };
        let applied = self
            .committed
            .as_mut()
            .is_some_and(|committed| committed.apply(&delta.changes()).is_ok());
        if !applied {
            return false;
        }
        batch.absorb(&delta);
        self.follow_policy(delta, before, after);
        true
    }

    /// Commits the absorbed policy deltas (their bookkeeping done, the
    /// committed IR moved already) in one batch, bumping the re-judging
    /// generation when they may take permission away.
    fn commit_policies(
        &mut self,
        batch: &PolicyBatch,
        started: Instant,
    ) -> Result<ReconcileReport, ReconcileError> {
        let mut changes = batch.changes();
        let bumps = !changes.is_empty() && batch.may_remove_permission();
        let rejudged = next_generation(self.options.rejudge, bumps);
        if let (Some(next), Some(committed)) = (rejudged, self.committed.as_mut()) {
            let generation = rejudge::with_generation(Diff::default(), committed, next);
            // The generation chains are the only ones this changes; a
            // refusal means the IR no longer mirrors what the kernel holds.
            if committed.apply(&generation).is_err() {
                self.full_sync_next = true;
            }
            changes = rejudge::with_generation(changes, committed, next);
            self.options.rejudge = rejudged;
        }
        self.generation += 1;
        let span = tracing::info_span!(
            "reconcile",
            generation = self.generation,
            sync = Sync::Policy.label()
        );
        let _entered = span.enter();
        let applied = if changes.is_empty() {
            None
        } else {
            match self.dataplane.apply(&changes) {
                Ok(applied) => Some(applied),
                // The committed IR and the bookkeeping moved already: the
                // full sync the failure asks for reads the kernel's truth.
                Err(error) => return Err(self.failed(ReconcileError::Apply(Box::new(error)))),
            }
        };
        self.replaced_rules.extend(replaced_rule_chains(&changes));
        let report = ReconcileReport::of_commit(
            self.generation,
            Sync::Policy,
            &changes,
            applied.unwrap_or_default(),
            self.committed.as_ref().unwrap_or(&Ruleset::default()),
            &self.findings,
            rejudged,
        );
        tracing::info!(
            changes = report.changes,
            rejudge_generation = report.rejudge_generation,
            elements_added = report.elements_added,
            elements_deleted = report.elements_deleted,
            batch_bytes = report.bytes,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "reconciled policies"
        );
        Ok(report)
    }

    /// Brings what the reconciler keeps besides the committed ruleset (the
    /// provenance, set users, verdict log names, remote pods' memberships,
    /// log limits, findings) in step with a committed policy-path `delta`
    /// of one policy from `before` to `after`.
    fn follow_policy(
        &mut self,
        delta: PolicyDelta,
        before: Option<&PolicyVersion>,
        after: Option<PolicyVersion>,
    ) {
        let (gone, added) = delta.record(&mut self.provenance, &mut self.set_users);
        if let Some(directory) = &self.log_directory {
            directory.update(|directory| directory.follow_chains(&gone, &added));
        }
        if let Some(remote_pods) = self.remote_pods.as_mut() {
            remote_pods.replace_policy(before, after.as_ref());
        }
        let Some(id) = after.as_ref().or(before).map(|version| version.id.clone()) else {
            return;
        };
        self.log_limits.remove(&id);
        if let Some(resolved) = after.as_ref().and_then(|version| version.resolved.as_ref()) {
            self.log_limits.insert(id.clone(), resolved.log_limit);
        }
        let object = id.to_string();
        let fresh: Vec<ModelError> = after.map(|version| version.errors).unwrap_or_default();
        for error in fresh.iter().filter(|e| !self.findings.invalid.contains(e)) {
            tracing::warn!(%error, "invalid object part");
        }
        self.findings
            .invalid
            .retain(|error| error.kind != "NetworkPolicy" || error.object != object);
        self.findings.invalid.extend(fresh);
    }

    /// Removes the conntrack entries of the flows the committed ruleset's
    /// judging rules denied when they re-judged them (marked with a
    /// direction's [`MarkBits::denied`](rejudge::MarkBits::denied) value):
    /// one kernel-filtered flush per direction. Returns the flushes the
    /// kernel acknowledged: 0 without re-judging or before the first commit
    /// (nothing can carry the mark).
    pub fn flush_denied_flows(&mut self) -> Result<u64, ConntrackError> {
        let (Some(settings), Some(_)) = (self.options.rejudge, &self.committed) else {
            return Ok(0);
        };
        let mut flushed = 0;
        for direction in [Direction::Egress, Direction::Ingress] {
            let marks = settings.marks;
            self.dataplane
                .flush_conntrack_by_mark(marks.denied(direction), marks.field(direction))?;
            flushed += 1;
        }
        Ok(flushed)
    }

    /// Takes the generation of the table just read from the kernel, so that
    /// a restart committing the same policy re-judges nothing; `desired`
    /// (compiled before the read) follows it.
    fn adopt_generation(&mut self, desired: &mut Ruleset) {
        let Some(settings) = self.options.rejudge.as_mut() else {
            return;
        };
        if let Some(found) = self
            .committed
            .as_ref()
            .and_then(|table| rejudge::generation_of(table, settings.marks))
        {
            settings.generation = found;
            rejudge::set_generation(desired, *settings);
        }
    }

    /// Diffs `desired` against `committed` (moving the re-judging
    /// generation on when the commit may take permission away) and commits
    /// the diff in one batch.
    fn commit_model(
        &mut self,
        committed: Option<&Ruleset>,
        desired: &mut Ruleset,
        sync: Sync,
        findings: &Findings,
    ) -> Result<(ReconcileReport, Option<Rejudge>), ReconcileError> {
        let changes = diff(committed, desired);
        // A table created now holds no judged flow: nothing to re-judge.
        let rejudged = committed.and_then(|committed| {
            let bumps = !changes.is_empty() && rejudge::may_remove_permission(committed, desired);
            next_generation(self.options.rejudge, bumps)
        });
        let changes = match rejudged {
            Some(next) => {
                drop(changes);
                rejudge::set_generation(desired, next);
                diff(committed, desired)
            }
            None => changes,
        };
        let applied = if changes.is_empty() {
            Applied::default()
        } else {
            self.dataplane
                .apply(&changes)
                .map_err(|error| self.failed(ReconcileError::Apply(Box::new(error))))?
        };
        self.replaced_rules.extend(replaced_rule_chains(&changes));
        let report = ReconcileReport::of_commit(
            self.generation,
            sync,
            &changes,
            applied,
            desired,
            findings,
            rejudged,
        );
        Ok((report, rejudged))
    }

    /// Records a failure: the next reconcile re-reads the kernel's truth.
    fn failed(&mut self, error: ReconcileError) -> ReconcileError {
        self.full_sync_next = true;
        tracing::warn!(error = %error, "reconcile failed; the previous ruleset stays in force");
        error
    }
}

/// The re-judging settings to commit with when the commit `bumps` (it may
/// take permission away): the next generation, so that every established
/// flow is judged again. `None`: keep the generation (or no re-judging).
fn next_generation(settings: Option<Rejudge>, bumps: bool) -> Option<Rejudge> {
    let settings = settings?;
    bumps.then(|| Rejudge {
        generation: settings.generation.next(settings.marks),
        ..settings
    })
}

/// The chains whose rules `changes` replace (flush, delete or append to):
/// their kernel counters restart from 0.
fn replaced_rule_chains<'a>(changes: &'a Diff<'_>) -> impl Iterator<Item = String> + 'a {
    changes.changes.iter().filter_map(|change| match change {
        Change::FlushChain(chain) | Change::DeleteChain(chain) | Change::AddRule { chain, .. } => {
            Some(chain.clone())
        }
        _ => None,
    })
}

/// A namespaced object's `(namespace, name)`.
/// A policy before and after.
type Versions<'a> = (Option<&'a PolicyView>, Option<&'a PolicyView>);

/// Each policy `changes` touch, in first-seen order, as it was before its
/// first change and is after its last; `None` when there is none.
fn by_policy(changes: &[PolicyChange]) -> Option<Vec<Versions<'_>>> {
    let mut order: Vec<&PolicyId> = Vec::new();
    let mut versions: BTreeMap<&PolicyId, Versions<'_>> = BTreeMap::new();
    for change in changes {
        let Some(policy) = change.after.as_ref().or(change.before.as_ref()) else {
            continue;
        };
        let key = policy.id();
        let after = change.after.as_deref();
        if let Some(versions) = versions.get_mut(key) {
            versions.1 = after;
        } else {
            order.push(key);
            versions.insert(key, (change.before.as_deref(), after));
        }
    }
    let policies: Vec<_> = order
        .iter()
        .filter_map(|key| versions.get(key).copied())
        .collect();
    (!policies.is_empty()).then_some(policies)
}

/// Whether the policy path takes one policy's change from `before` to
/// `after` under `options`: not a change of its log limit while denies are
/// logged (every group chain holding it would change).
fn path_takes(
    options: CompileOptions,
    before: Option<&PolicyVersion>,
    after: Option<&PolicyVersion>,
) -> bool {
    let limit = |version: Option<&PolicyVersion>| {
        version.and_then(|version| version.resolved.as_ref().map(|resolved| resolved.log_limit))
    };
    !options.verdict_log.logs_denies()
        || limit(before).is_none()
        || limit(after).is_none()
        || limit(before) == limit(after)
}
