//! Reduces API objects to the fields enforcement reads, as they arrive.
//!
//! With 10,000 pods a full Pod object (managed fields, annotations, volumes,
//! container specs, conditions) costs several kilobytes; what the model
//! reads is a few hundred bytes. Everything else is cleared before the
//! object reaches a store. `resourceVersion` is cleared too (the watcher
//! tracks it before this step), so an update that changed nothing
//! enforcement reads leaves the stripped object equal to the stored one and
//! queues no reconcile.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, Pod, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Keeps name, namespace, labels and uid.
fn metadata(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        labels: meta.labels.take(),
        uid: meta.uid.take(),
        ..ObjectMeta::default()
    };
}

/// Keeps a container's name and its declared ports (name, number, protocol).
fn container(container: &mut Container) {
    let ports = container.ports.take().map(|ports| {
        ports
            .into_iter()
            .map(|port| ContainerPort {
                container_port: port.container_port,
                name: port.name,
                protocol: port.protocol,
                ..ContainerPort::default()
            })
            .collect()
    });
    *container = Container {
        name: std::mem::take(&mut container.name),
        ports,
        ..Container::default()
    };
}

/// A Pod: metadata as above; `spec.nodeName`, `spec.hostNetwork`, container
/// and init-container ports; `status.phase`, `status.podIP(s)`.
pub fn pod(pod: &mut Pod) {
    metadata(&mut pod.metadata);
    pod.spec = pod.spec.take().map(|mut spec| {
        spec.containers.iter_mut().for_each(container);
        spec.init_containers
            .iter_mut()
            .flatten()
            .for_each(container);
        PodSpec {
            containers: spec.containers,
            init_containers: spec.init_containers,
            node_name: spec.node_name,
            host_network: spec.host_network,
            ..PodSpec::default()
        }
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        ..PodStatus::default()
    });
}

/// A Namespace: name and labels.
pub fn namespace(namespace: &mut Namespace) {
    metadata(&mut namespace.metadata);
    namespace.spec = None;
    namespace.status = None;
}

/// A NetworkPolicy: metadata as above and the whole spec.
pub fn policy(policy: &mut NetworkPolicy) {
    metadata(&mut policy.metadata);
}

/// A Node: name, `spec.podCIDR` and `spec.podCIDRs`.
pub fn node(node: &mut Node) {
    metadata(&mut node.metadata);
    node.spec = node.spec.take().map(|spec| NodeSpec {
        pod_cidr: spec.pod_cidr,
        pod_cidrs: spec.pod_cidrs,
        ..NodeSpec::default()
    });
    node.status = None;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{PodCondition, PodIP};
    use nftpol_model::PodView;

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
    fn stripped_pod_reads_the_same_to_the_model() {
        let original = full_pod();
        let mut stripped = original.clone();
        pod(&mut stripped);
        assert_eq!(PodView::from_pod(&stripped), PodView::from_pod(&original));
        assert_eq!(stripped.metadata.uid.as_deref(), Some("uid-a"));
        assert!(stripped.metadata.annotations.is_none());
        assert!(stripped.metadata.resource_version.is_none());
        let spec = stripped.spec.as_ref().expect("spec kept");
        assert!(spec.hostname.is_none());
        assert!(spec.containers[0].image.is_none());
        assert!(spec.containers[0].ports.as_ref().expect("ports kept")[0]
            .host_port
            .is_none());
        assert!(stripped
            .status
            .as_ref()
            .expect("status kept")
            .conditions
            .is_none());
    }

    #[test]
    fn updates_enforcement_ignores_strip_to_equal_objects() {
        let mut before = full_pod();
        let mut after = full_pod();
        after.metadata.resource_version = Some("43".into());
        after.status.as_mut().expect("status").conditions = None;
        pod(&mut before);
        pod(&mut after);
        assert_eq!(before, after);
    }

    #[test]
    fn node_keeps_pod_cidrs_only() {
        let mut stripped = Node {
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
        };
        node(&mut stripped);
        let spec = stripped.spec.expect("spec kept");
        assert_eq!(spec.pod_cidrs, Some(vec!["10.244.1.0/24".into()]));
        assert!(spec.provider_id.is_none());
        assert!(stripped.status.is_none());
        assert!(stripped.metadata.annotations.is_none());
    }
}
