//! nftpol-model: Kubernetes objects → the per-node policy model, and a
//! semantic evaluator that answers straight from the objects and the spec.
//!
//! In: k8s-openapi `Namespace`, `Pod`, `NetworkPolicy` and `Node` objects
//! and ClusterNetworkPolicies ([`cluster_policy::api`]) (a [`Cluster`]). Out: for one node, a [`NodeModel`] that names every pod on
//! the node, which policies isolate it in each direction, and each policy
//! rule's peers and ports resolved to addresses and port ranges.
//!
//! Pure: no I/O, no clock, no environment. Never panics on input: invalid
//! parts of a policy become [`ModelError`]s naming `namespace/name` and the
//! field, and allow nothing, while the policy still isolates the pods it
//! selects (fail closed).
//!
//! Choices where the spec is silent (see `shared/notes/netpol-semantics.md`):
//! - hostNetwork pods are neither targets nor pod peers; their traffic is node
//!   traffic, which an `ipBlock` may still match;
//! - pods without IPs or in phase Succeeded/Failed do not count (an IP is
//!   often reused while a terminal pod still reports it);
//! - a policy whose own `podSelector` is invalid isolates every pod of its
//!   namespace and allows nothing (fail closed);
//! - a policy over a bound of [`limits`], or whose name the API server would
//!   not accept, isolates the pods it selects and allows nothing;
//! - of two policies with one `namespace/name`, the later replaces the
//!   earlier (as `kubectl apply` would);
//! - a named port used with an `ipBlock` peer matches only addresses of pods
//!   that declare the name (nothing else has named ports);
//! - an `ipBlock` that is invalid (bad CIDR, an `except` outside `cidr`)
//!   allows nothing, whatever its rule's other peers allow.

mod addresses;
mod cluster;
pub mod cluster_policy;
mod error;
mod evaluate;
mod explain;
pub mod limits;
pub mod log_limit;
pub mod manifests;
mod memberships;
mod pods;
mod policy;
mod policy_change;
mod resolve;
mod selector;
mod vocabulary;

pub use addresses::{AddressSet, Ipv4Range, Ipv6Range};
pub use cluster::{Cluster, Snapshot};
pub use error::ModelError;
pub use evaluate::{evaluate, ClusterRuleRef, Connection, Decision};
pub use explain::explain;
pub use log_limit::{LogLimit, RatePeriod};
pub use memberships::{Membership, MembershipDelta, PodChange, PodMemberships, RemotePods};
pub use pods::{ContainerPort, PodView};
pub use policy::{PolicyId, PolicyView};
pub use policy_change::{PolicyChange, PolicyContext, PolicyVersion, TargetPod};
pub use resolve::{
    resolve, resolve_snapshot, resolve_snapshot_with_context, ClusterTraffic, LocalPod,
    NamedPortEndpoint, NodeModel, Peers, PortRange, Ports, ResolvedClusterPolicy,
    ResolvedClusterRule, ResolvedPeer, ResolvedPolicy, ResolvedRule,
};
pub use vocabulary::{Direction, Protocol};
