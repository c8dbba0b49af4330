//! The Kubernetes objects the model is computed from.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::pods::PodView;

/// A snapshot of the objects that decide enforcement.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All pods, cluster-wide.
    pub pods: Vec<Pod>,
    /// All network policies.
    pub policies: Vec<NetworkPolicy>,
    /// Nodes; only the local node's `spec.podCIDRs` is used.
    pub nodes: Vec<Node>,
}

/// The objects one reconcile reads, pods already reduced to [`PodView`]s:
/// what an agent keeps between reconciles. A k8s-openapi Pod costs about
/// 5 KB even with every unread field cleared (its generated structs are
/// large when empty); a view costs a few hundred bytes, and the `Arc` lets
/// a snapshot share the views its store holds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All pods, cluster-wide.
    pub pods: Vec<Arc<PodView>>,
    /// All network policies.
    pub policies: Vec<NetworkPolicy>,
    /// Nodes; only the local node's `spec.podCIDRs` is used.
    pub nodes: Vec<Node>,
}

impl From<&Cluster> for Snapshot {
    fn from(cluster: &Cluster) -> Self {
        Self {
            namespaces: cluster.namespaces.clone(),
            pods: cluster
                .pods
                .iter()
                .map(|pod| Arc::new(PodView::from_pod(pod)))
                .collect(),
            policies: cluster.policies.clone(),
            nodes: cluster.nodes.clone(),
        }
    }
}
