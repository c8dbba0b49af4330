//! Reduces API objects to the fields enforcement reads, as they arrive.
//!
//! A full Pod object (managed fields, annotations, volumes, container
//! specs, conditions) costs several kilobytes; what the model reads is a
//! few hundred bytes. Pods and NetworkPolicies become the model's own views
//! ([`PodView`], [`PolicyView`]: a policy object keeps each label selector
//! as a `BTreeMap` of over half a kilobyte); the other kinds (far fewer)
//! keep their type with every unread field cleared.
//! `resourceVersion` is dropped too (the watcher tracks it before this
//! step), so an update that changed nothing enforcement reads leaves the
//! reduced object equal to the stored one and queues no reconcile.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, NodeStatus, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::{PodView, PolicyView};

/// Keeps name, namespace, labels, uid and generation (the Events on an
/// object name its uid and are reported once per generation).
fn metadata(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        labels: meta.labels.take(),
        uid: meta.uid.take(),
        generation: meta.generation.take(),
        ..ObjectMeta::default()
    };
}

/// A Pod reduced to what the pod store keeps: the model's [`PodView`]
/// (labels, node, host network, phase, addresses, declared ports). A
/// k8s-openapi Pod with every other field cleared still costs about 5 KB
/// (its generated structs are large even when empty); a view costs a few
/// hundred bytes, and reconciles share it through the `Arc`. No uid and no
/// resource version: nothing reads them, and an update that changed nothing
/// enforcement reads must compare equal to the stored view.
#[expect(
    clippy::needless_pass_by_value,
    reason = "every kind's stripper takes the watched object by value, as the watch pipeline hands it over"
)]
pub fn pod(pod: Pod) -> Arc<PodView> {
    Arc::new(PodView::from_pod(&pod))
}

/// A Namespace: name and labels.
pub fn namespace(mut namespace: Namespace) -> Namespace {
    metadata(&mut namespace.metadata);
    namespace.spec = None;
    namespace.status = None;
    namespace
}

/// A NetworkPolicy parsed into the view the policy store keeps: its
/// identity, uid and generation, its spec as the model reads it, the rate
/// of its verdict logs (the annotations of
/// [`nftpol_model::log_limit::ANNOTATIONS`]) and what is invalid in it.
/// Other annotations and its labels are not kept (nothing selects a
/// policy), so changing one queues no reconcile.
#[expect(
    clippy::needless_pass_by_value,
    reason = "every kind's stripper takes the watched object by value, as the watch pipeline hands it over"
)]
pub fn policy(policy: NetworkPolicy) -> Arc<PolicyView> {
    Arc::new(PolicyView::from_policy(&policy))
}

/// A Node: name, labels, `spec.podCIDR(s)` (this node's fail-closed
/// range) and `status.addresses` (ClusterNetworkPolicy `nodes` peers).
/// Heartbeats, conditions and images are dropped, so a kubelet status
/// update queues no reconcile.
pub fn node(mut node: Node) -> Node {
    metadata(&mut node.metadata);
    node.spec = node.spec.take().map(|spec| NodeSpec {
        pod_cidr: spec.pod_cidr,
        pod_cidrs: spec.pod_cidrs,
        ..NodeSpec::default()
    });
    node.status = node
        .status
        .take()
        .and_then(|status| status.addresses)
        .map(|addresses| NodeStatus {
            addresses: Some(addresses),
            ..NodeStatus::default()
        });
    node
}

/// A ClusterNetworkPolicy: metadata as above and the whole spec.
pub fn cluster_policy(mut policy: ClusterNetworkPolicy) -> ClusterNetworkPolicy {
    metadata(&mut policy.metadata);
    policy
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus,
    };

    use super::*;

    fn full_pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("x".into()),
                uid: Some("uid-a".into()),
                resource_version: Some("42".into()),
                labels: Some(BTreeMap::from([("pod".into(), "a".into())])),
                annotations: Some(BTreeMap::from([("big".into(), "x".repeat(4096))])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                host_network: Some(false),
                hostname: Some("a".into()),
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("registry.example/agnhost:2.53".into()),
                    args: Some(vec!["serve".into(); 8]),
                    ports: Some(vec![ContainerPort {
                        container_port: 80,
                        name: Some("serve-80-tcp".into()),
                        protocol: Some("TCP".into()),
                        host_port: Some(8080),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.244.1.5".into()),
                pod_ips: Some(vec![PodIP {
                    ip: "10.244.1.5".into(),
                }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn stored_pod_is_the_model_view() {
        let original = full_pod();
        let stored = pod(original.clone());
        assert_eq!(*stored, PodView::from_pod(&original));
        assert_eq!((&*stored.namespace, &*stored.name), ("x", "a"));
    }

    #[test]
    fn updates_enforcement_ignores_store_equal_pods() {
        let before = full_pod();
        let mut after = full_pod();
        after.metadata.resource_version = Some("43".into());
        after.metadata.annotations = None;
        after.status.as_mut().expect("status").conditions = None;
        assert_eq!(pod(before.clone()), pod(after.clone()));
        after.metadata.labels = Some(BTreeMap::from([("pod".into(), "b".into())]));
        assert_ne!(pod(before), pod(after));
    }

    #[test]
    fn a_policy_view_keeps_its_log_rate_and_no_other_annotation_or_label() {
        let with = |annotations: &[(&str, &str)], labels: &[(&str, &str)]| {
            let pairs = |pairs: &[(&str, &str)]| {
                Some(
                    pairs
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                        .collect::<BTreeMap<String, String>>(),
                )
            };
            policy(NetworkPolicy {
                metadata: ObjectMeta {
                    name: Some("p".into()),
                    namespace: Some("n".into()),
                    annotations: pairs(annotations),
                    labels: pairs(labels),
                    ..ObjectMeta::default()
                },
                spec: None,
            })
        };
        let plain = with(&[], &[]);
        let applied = "{}".repeat(512);
        let unread = with(
            &[("kubectl.kubernetes.io/last-applied-configuration", &applied)],
            &[("app.kubernetes.io/managed-by", "Helm")],
        );
        assert_eq!(
            plain, unread,
            "unread annotations and labels change nothing"
        );
        let limited = with(&[(nftpol_model::log_limit::LOG_LIMIT, "5/second")], &[]);
        assert_ne!(plain, limited, "the verdict-log rate is read");
        let malformed = with(&[(nftpol_model::log_limit::LOG_LIMIT, "often")], &[]);
        assert_eq!(malformed.errors().len(), 1, "{:?}", malformed.errors());
    }

    #[test]
    fn node_keeps_pod_cidrs_only() {
        let stripped = node(Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidrs: Some(vec!["10.244.1.0/24".into()]),
                provider_id: Some("kind://n1".into()),
                ..NodeSpec::default()
            }),
            status: Some(k8s_openapi::api::core::v1::NodeStatus::default()),
        });
        let spec = stripped.spec.expect("spec kept");
        assert_eq!(spec.pod_cidrs, Some(vec!["10.244.1.0/24".into()]));
        assert!(spec.provider_id.is_none());
        assert!(stripped.status.is_none());
        assert!(stripped.metadata.annotations.is_none());
    }
}
