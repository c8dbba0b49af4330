//! The Kubernetes objects the model is computed from.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

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
