//! The Kubernetes objects the model is computed from.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::cluster_policy::api::ClusterNetworkPolicy;
use crate::pods::PodView;
use crate::policy::PolicyView;

/// A snapshot of the objects that decide enforcement.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All pods, cluster-wide.
    pub pods: Vec<Pod>,
    /// All network policies.
    pub policies: Vec<NetworkPolicy>,
    /// All ClusterNetworkPolicies (none where the CRD is not installed).
    pub cluster_policies: Vec<ClusterNetworkPolicy>,
    /// Nodes: the local node's `spec.podCIDRs`, and every node's labels and
    /// `status.addresses` for ClusterNetworkPolicy `nodes` peers.
    pub nodes: Vec<Node>,
}

impl Extend<Cluster> for Cluster {
    /// Adds every object of the other clusters (as reading several manifest
    /// files does). Destructured so that a new kind of object cannot be
    /// forgotten here.
    fn extend<I: IntoIterator<Item = Cluster>>(&mut self, clusters: I) {
        for Cluster {
            namespaces,
            pods,
            policies,
            cluster_policies,
            nodes,
        } in clusters
        {
            self.namespaces.extend(namespaces);
            self.pods.extend(pods);
            self.policies.extend(policies);
            self.cluster_policies.extend(cluster_policies);
            self.nodes.extend(nodes);
        }
    }
}

/// The objects one reconcile reads, pods and NetworkPolicies already
/// reduced to views ([`PodView`], [`PolicyView`]): what an agent keeps
/// between reconciles. A k8s-openapi Pod costs about 5 KB even with every
/// unread field cleared (its generated structs are large when empty); a
/// view costs a few hundred bytes. Everything is
/// behind an `Arc`, so a snapshot shares the objects its stores hold
/// instead of copying them for every reconcile.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All namespaces.
    pub namespaces: Vec<Arc<Namespace>>,
    /// All pods, cluster-wide.
    pub pods: Vec<Arc<PodView>>,
    /// All network policies, parsed.
    pub policies: Vec<Arc<PolicyView>>,
    /// All ClusterNetworkPolicies (none where the CRD is not installed).
    pub cluster_policies: Vec<Arc<ClusterNetworkPolicy>>,
    /// Nodes: the local node's `spec.podCIDRs`, and every node's labels and
    /// `status.addresses` for ClusterNetworkPolicy `nodes` peers.
    pub nodes: Vec<Arc<Node>>,
}

impl From<&Cluster> for Snapshot {
    fn from(cluster: &Cluster) -> Self {
        Self {
            namespaces: cluster.namespaces.iter().cloned().map(Arc::new).collect(),
            pods: cluster
                .pods
                .iter()
                .map(|pod| Arc::new(PodView::from_pod(pod)))
                .collect(),
            policies: cluster
                .policies
                .iter()
                .map(|policy| Arc::new(PolicyView::from_policy(policy)))
                .collect(),
            cluster_policies: cluster
                .cluster_policies
                .iter()
                .cloned()
                .map(Arc::new)
                .collect(),
            nodes: cluster.nodes.iter().cloned().map(Arc::new).collect(),
        }
    }
}
