//! One NetworkPolicy's change without a full model: the policy's versions
//! before and after, each resolved on its own against the cluster's pods.
//!
//! A NetworkPolicy's part of the model depends on nothing but the policy
//! and the pods (and namespaces) it selects and peers with: which local pods
//! of its namespace it isolates, its rules' peers and ports resolved to
//! addresses. So with the pods indexed once ([`PolicyContext`], O(pods),
//! kept while no pod, namespace or node changes), a policy event costs the
//! policy's own resolution: O(its namespace's pods + the pods its peers
//! scan), not O(policies). What the ruleset makes of a version is the
//! compiler's business (`nftpol_ruleset::compile::policy_delta`).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::Snapshot;
use crate::error::ModelError;
use crate::memberships::PodChange;
use crate::pods::{PodIndex, PodView};
use crate::policy::{namespace_labels, Policy, PolicyId, PolicyView};
use crate::resolve::{pods_by_namespace, Member, PodsByNamespace, ResolvedPolicy, Resolver};

/// One NetworkPolicy's change since the last model, as the policy store saw
/// it.
#[derive(Debug, Clone)]
pub struct PolicyChange {
    /// The policy before (`None`: created).
    pub before: Option<Arc<PolicyView>>,
    /// The policy after (`None`: deleted).
    pub after: Option<Arc<PolicyView>>,
}

/// The cluster's pods and namespaces indexed for resolving one policy at a
/// time. Valid while pods, namespaces and nodes stay as they were when it
/// was built.
pub struct PolicyContext {
    node: String,
    index: PodIndex,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    by_namespace: PodsByNamespace,
    /// Addresses two or more counted pods claim (usually none): a change
    /// touching one needs every claimant to keep the owner rule, so the
    /// context is given up instead.
    contested: HashSet<IpAddr>,
    /// Addresses with a claim, per family (IPv4, IPv6): whether any counted
    /// pod has one, without a scan of every pod per event.
    claimed_per_family: [usize; 2],
}

impl std::fmt::Debug for PolicyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyContext")
            .field("node", &self.node)
            .field("pods", &self.index.pods.len())
            .field("namespaces", &self.namespaces.len())
            .finish_non_exhaustive()
    }
}

/// A local pod one version of a policy isolates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPod {
    /// `namespace/name`.
    pub key: String,
    /// The addresses it owns (never empty: a pod without one is not in the
    /// ruleset).
    pub ips: Vec<IpAddr>,
}

/// What the model makes of one version of a NetworkPolicy.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    /// `namespace/name`.
    pub id: PolicyId,
    /// The policy resolved, when it isolates a local pod (as
    /// [`crate::NodeModel::policies`] would hold it); `None` otherwise.
    pub resolved: Option<ResolvedPolicy>,
    /// The local pods with addresses it isolates, sorted by key (in the
    /// directions `resolved` isolates).
    pub targets: Vec<TargetPod>,
    /// Its invalid parts.
    pub errors: Vec<ModelError>,
    /// The parsed policy, for the remote pods' memberships.
    pub(crate) parsed: Policy,
}

impl PolicyContext {
    /// Indexes `snapshot`'s pods and namespaces for node `node`: O(pods).
    pub fn new(snapshot: &Snapshot, node: &str) -> Self {
        let index = PodIndex::new(snapshot.pods.iter().map(Arc::clone));
        let by_namespace = pods_by_namespace(&index);
        let namespaces = namespace_labels(snapshot.namespaces.iter().map(AsRef::as_ref));
        Self::from_parts(node, index, namespaces, by_namespace)
    }

    /// The context of pods indexed already (by a full model).
    pub(crate) fn from_parts(
        node: &str,
        index: PodIndex,
        namespaces: BTreeMap<String, BTreeMap<String, String>>,
        by_namespace: PodsByNamespace,
    ) -> Self {
        let mut claimed = HashSet::new();
        let mut contested = HashSet::new();
        for ip in index.pods.iter().flat_map(|pod| &pod.ips) {
            if !claimed.insert(*ip) {
                contested.insert(*ip);
            }
        }
        let mut claimed_per_family = [0; 2];
        for ip in &claimed {
            claimed_per_family[usize::from(ip.is_ipv6())] += 1;
        }
        Self {
            node: node.to_owned(),
            namespaces,
            index,
            by_namespace,
            contested,
            claimed_per_family,
        }
    }

    /// Whether any counted pod has an IPv4 address, and an IPv6 one (as
    /// [`crate::NodeModel::cluster_has_ipv4_pods`] and its IPv6 twin).
    pub fn pod_families(&self) -> (bool, bool) {
        (
            self.claimed_per_family[0] > 0,
            self.claimed_per_family[1] > 0,
        )
    }

    /// Follows `changes` to pods, as a fresh index of the pods after them
    /// would be: O(changes × the namespace's pods). `false` when a change
    /// touches an address another counted pod claims (the owner rule would
    /// need every claimant): the context is then unusable and must be
    /// built again.
    pub fn apply(&mut self, changes: &[PodChange]) -> bool {
        changes.iter().all(|change| {
            let removed = change
                .before
                .as_ref()
                .filter(|pod| pod.counts())
                .is_none_or(|pod| self.remove(pod));
            removed
                && change
                    .after
                    .as_ref()
                    .filter(|pod| pod.counts())
                    .is_none_or(|pod| self.insert(pod))
        })
    }

    fn remove(&mut self, pod: &PodView) -> bool {
        if pod.ips.iter().any(|ip| self.contested.contains(ip)) {
            return false;
        }
        if !self.index.remove_sole_owner(pod) {
            return false;
        }
        for ip in &pod.ips {
            self.claimed_per_family[usize::from(ip.is_ipv6())] -= 1;
        }
        let Some(members) = self.by_namespace.get_mut(&*pod.namespace) else {
            return false;
        };
        members.retain(|member| member.pod.name != pod.name);
        if members.is_empty() {
            self.by_namespace.remove(&*pod.namespace);
        }
        true
    }

    fn insert(&mut self, pod: &Arc<PodView>) -> bool {
        if pod.ips.iter().any(|ip| self.index.owner(*ip).is_some()) {
            return false;
        }
        if !self.index.insert_sole_owner(pod) {
            return false;
        }
        for ip in &pod.ips {
            self.claimed_per_family[usize::from(ip.is_ipv6())] += 1;
        }
        let members = self
            .by_namespace
            .entry(pod.namespace.to_string())
            .or_default();
        let at = members.partition_point(|member| member.pod.name < pod.name);
        members.insert(at, Member::new(Arc::clone(pod), pod.ips.to_vec()));
        true
    }

    /// `policy` resolved exactly as a full model would resolve it:
    /// O(its namespace's pods + the pods its peers scan).
    pub fn resolve(&self, policy: &PolicyView) -> PolicyVersion {
        let errors = policy.errors.clone();
        let parsed = policy.policy.clone();
        let selected: Vec<(&PodView, &[IpAddr])> = self
            .by_namespace
            .get(parsed.id.namespace.as_str())
            .into_iter()
            .flatten()
            .filter(|member| member.pod.node_name.as_deref() == Some(self.node.as_str()))
            .filter(|member| parsed.targets.selects(&member.pod.labels))
            .map(|member| (member.pod.as_ref(), member.ips()))
            .collect();
        let isolates = parsed.ingress.is_some() || parsed.egress.is_some();
        let (resolved, targets) = if selected.is_empty() || !isolates {
            (None, Vec::new())
        } else {
            let pods: Vec<&PodView> = selected.iter().map(|(pod, _)| *pod).collect();
            let resolver = Resolver::new(&self.index, &self.namespaces, &self.by_namespace);
            let mut targets: Vec<TargetPod> = selected
                .iter()
                .filter(|(_, ips)| !ips.is_empty())
                .map(|(pod, ips)| TargetPod {
                    key: pod.key(),
                    ips: ips.to_vec(),
                })
                .collect();
            targets.sort_by(|a, b| a.key.cmp(&b.key));
            (Some(resolver.policy(&parsed, &pods)), targets)
        };
        PolicyVersion {
            id: parsed.id.clone(),
            resolved,
            targets,
            errors,
            parsed,
        }
    }
}
