//! Builders of the Kubernetes objects tests feed the model:
//! `pod("x", "a").label("pod", "a").node(1).ip("10.244.1.2").port(80, Tcp)`.
//!
//! Each builder starts from the smallest object the model counts (a pod is
//! `Running`, with one container `c` and no ports, on no node) and each
//! method adds one thing; `build()` (or `Pod::from`) hands the object out.
//! Addresses and CIDRs follow [`crate::plan`]. Policies take their spec as
//! the JSON a user would write (`spec: {...}` of the manifest), so a test
//! reads like the YAML it stands for.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
pub use nftpol_model::Protocol::{self, Sctp, Tcp, Udp};
use serde::Deserialize as _;

use crate::plan;

/// Object metadata: `namespace/name` (no namespace for cluster-scoped
/// objects) and labels.
pub fn meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(
            labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

fn insert(map: &mut Option<BTreeMap<String, String>>, key: &str, value: &str) {
    map.get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
}

/// Builds a [`Pod`]; see [`pod`].
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

/// A running pod `namespace/name` with one container `c`, no ports, no
/// addresses and no node yet.
pub fn pod(namespace: &str, name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: meta(Some(namespace), name, &[]),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".to_owned(),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".to_owned()),
                ..PodStatus::default()
            }),
        },
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(PodSpec::default)
    }

    fn status(&mut self) -> &mut PodStatus {
        self.pod.status.get_or_insert_with(PodStatus::default)
    }

    fn container(&mut self) -> &mut Container {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(Container {
                name: "c".to_owned(),
                ..Container::default()
            });
        }
        &mut spec.containers[0]
    }

    /// Adds the label `key=value`.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        insert(&mut self.pod.metadata.labels, key, value);
        self
    }

    /// Adds every label of `pairs`.
    #[must_use]
    pub fn labels(self, pairs: &[(&str, &str)]) -> Self {
        pairs
            .iter()
            .fold(self, |pod, (key, value)| pod.label(key, value))
    }

    /// Adds the annotation `key=value`.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        insert(&mut self.pod.metadata.annotations, key, value);
        self
    }

    /// Schedules it on node `k` of the address plan (`node-<k>`).
    #[must_use]
    pub fn node(self, k: u8) -> Self {
        self.node_name(&plan::node_name(k))
    }

    /// Schedules it on the node named `name`.
    #[must_use]
    pub fn node_name(mut self, name: &str) -> Self {
        self.spec().node_name = Some(name.to_owned());
        self
    }

    /// Adds the address `ip` to `status.podIPs` (the first one is also
    /// `status.podIP`, as the kubelet reports it). A string, so tests can
    /// also hand the model what a broken kubelet would.
    #[must_use]
    pub fn ip(mut self, ip: &str) -> Self {
        let status = self.status();
        status.pod_ip.get_or_insert_with(|| ip.to_owned());
        status
            .pod_ips
            .get_or_insert_with(Vec::new)
            .push(PodIP { ip: ip.to_owned() });
        self
    }

    /// Adds the address `ip` (see [`PodBuilder::ip`]).
    #[must_use]
    pub fn address(self, ip: IpAddr) -> Self {
        self.ip(&ip.to_string())
    }

    /// Adds an unnamed container port.
    #[must_use]
    pub fn port(self, number: i32, protocol: Protocol) -> Self {
        self.container_port(None, number, protocol)
    }

    /// Adds a named container port (what `port: http` in a policy means).
    #[must_use]
    pub fn named_port(self, name: &str, number: i32, protocol: Protocol) -> Self {
        self.container_port(Some(name), number, protocol)
    }

    fn container_port(mut self, name: Option<&str>, number: i32, protocol: Protocol) -> Self {
        self.container()
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: name.map(str::to_owned),
                container_port: number,
                protocol: Some(protocol.to_string()),
                ..ContainerPort::default()
            });
        self
    }

    /// Sets `status.phase` (`Running` by default).
    #[must_use]
    pub fn phase(mut self, phase: &str) -> Self {
        self.status().phase = Some(phase.to_owned());
        self
    }

    /// Sets `spec.hostNetwork`.
    #[must_use]
    pub fn host_network(mut self, host_network: bool) -> Self {
        self.spec().host_network = Some(host_network);
        self
    }

    /// Sets the first container's image.
    #[must_use]
    pub fn image(mut self, image: &str) -> Self {
        self.container().image = Some(image.to_owned());
        self
    }

    /// The pod.
    pub fn build(self) -> Pod {
        self.pod
    }
}

impl From<PodBuilder> for Pod {
    fn from(builder: PodBuilder) -> Self {
        builder.build()
    }
}

/// Builds a [`Namespace`]; see [`namespace`].
#[derive(Debug, Clone)]
pub struct NamespaceBuilder {
    namespace: Namespace,
}

/// A namespace `name` without labels.
pub fn namespace(name: &str) -> NamespaceBuilder {
    NamespaceBuilder {
        namespace: Namespace {
            metadata: meta(None, name, &[]),
            ..Namespace::default()
        },
    }
}

impl NamespaceBuilder {
    /// Adds the label `key=value`.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        insert(&mut self.namespace.metadata.labels, key, value);
        self
    }

    /// Adds every label of `pairs`.
    #[must_use]
    pub fn labels(self, pairs: &[(&str, &str)]) -> Self {
        pairs
            .iter()
            .fold(self, |namespace, (key, value)| namespace.label(key, value))
    }

    /// The namespace.
    pub fn build(self) -> Namespace {
        self.namespace
    }
}

impl From<NamespaceBuilder> for Namespace {
    fn from(builder: NamespaceBuilder) -> Self {
        builder.build()
    }
}

/// Builds a [`Node`]; see [`node`] and [`plan_node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
}

/// A node `name` without pod CIDRs.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        node: Node {
            metadata: meta(None, name, &[]),
            spec: Some(NodeSpec::default()),
            status: None,
        },
    }
}

/// Node `k` of the address plan: `node-<k>` with its IPv4 and IPv6 pod
/// CIDRs.
pub fn plan_node(k: u8) -> NodeBuilder {
    node(&plan::node_name(k))
        .pod_cidr(&plan::pod_cidr_v4(k))
        .pod_cidr(&plan::pod_cidr_v6(k))
}

impl NodeBuilder {
    /// Adds a pod CIDR to `spec.podCIDRs` (the first one is also
    /// `spec.podCIDR`, as the API server sets it).
    #[must_use]
    pub fn pod_cidr(mut self, cidr: &str) -> Self {
        let spec = self.node.spec.get_or_insert_with(NodeSpec::default);
        spec.pod_cidr.get_or_insert_with(|| cidr.to_owned());
        spec.pod_cidrs
            .get_or_insert_with(Vec::new)
            .push(cidr.to_owned());
        self
    }

    /// The node.
    pub fn build(self) -> Node {
        self.node
    }
}

impl From<NodeBuilder> for Node {
    fn from(builder: NodeBuilder) -> Self {
        builder.build()
    }
}

/// Builds a [`NetworkPolicy`]; see [`policy`].
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    policy: NetworkPolicy,
}

/// A NetworkPolicy `namespace/name` selecting every pod of its namespace
/// and allowing nothing in the directions its spec will isolate.
pub fn policy(namespace: &str, name: &str) -> PolicyBuilder {
    PolicyBuilder {
        policy: NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                ..NetworkPolicySpec::default()
            }),
        },
    }
}

impl PolicyBuilder {
    /// Replaces the spec by `spec`, the JSON of a manifest's `spec:`.
    ///
    /// # Panics
    /// When `spec` is not a NetworkPolicySpec (a broken test fixture).
    #[must_use]
    pub fn spec(mut self, spec: &serde_json::Value) -> Self {
        let spec: NetworkPolicySpec = NetworkPolicySpec::deserialize(spec)
            .unwrap_or_else(|error| panic!("not a NetworkPolicySpec ({error}): {spec}"));
        self.policy.spec = Some(spec);
        self
    }

    /// Adds `key=value` to `spec.podSelector.matchLabels`.
    #[must_use]
    pub fn select(mut self, key: &str, value: &str) -> Self {
        let spec = self
            .policy
            .spec
            .get_or_insert_with(NetworkPolicySpec::default);
        let selector = spec.pod_selector.get_or_insert_with(LabelSelector::default);
        insert(&mut selector.match_labels, key, value);
        self
    }

    /// The policy.
    pub fn build(self) -> NetworkPolicy {
        self.policy
    }
}

impl From<PolicyBuilder> for NetworkPolicy {
    fn from(builder: PolicyBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use nftpol_model::PodView;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_built_pod_is_what_the_model_counts() {
        let built = pod("x", "a")
            .label("pod", "a")
            .node(1)
            .address(plan::pod_v4(1, 2))
            .ip("fd00:10:244:1::2")
            .named_port("http", 80, Tcp)
            .port(53, Udp)
            .build();
        let view = PodView::from_pod(&built);
        assert!(view.counts());
        assert_eq!(view.key(), "x/a");
        assert_eq!(view.node_name.as_deref(), Some("node-1"));
        assert_eq!(*view.ips, [plan::pod_v4(1, 2), plan::pod_v6(1, 2)]);
        let status = built.status.expect("a status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.2"));
        let ports = built.spec.expect("a spec").containers[0]
            .ports
            .clone()
            .expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));
    }

    #[test]
    fn a_policy_spec_comes_from_the_json_of_a_manifest() {
        let built = policy("x", "deny")
            .spec(&json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
            .select("pod", "b")
            .build();
        let spec = built.spec.expect("a spec");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let labels = spec
            .pod_selector
            .and_then(|selector| selector.match_labels)
            .expect("matchLabels");
        assert_eq!(labels.get("pod").map(String::as_str), Some("b"));
    }

    #[test]
    fn a_plan_node_has_both_pod_cidrs() {
        let built = plan_node(2).build();
        let spec = built.spec.expect("a spec");
        assert_eq!(
            spec.pod_cidrs,
            Some(vec![
                "10.244.2.0/24".to_owned(),
                "fd00:10:244:2::/64".to_owned()
            ])
        );
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.2.0/24"));
    }
}
