//! Shape guarantees of the compiled ruleset: rule count independent of pods,
//! pod churn as element-only diffs, and what every base chain starts with.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol_ir::diff::diff;
use nftpol_ir::{Action, CtState, Match, Verdict};
use nftpol_model::{resolve, Cluster};
use nftpol_ruleset::compile::{compile, CompileOptions};

fn meta(namespace: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn pod(index: usize) -> Pod {
    let node = 1 + index % 2;
    let role = ["web", "db", "cache"][index % 3];
    Pod {
        metadata: meta("shop", &format!("pod-{index}"), &[("role", role)]),
        spec: Some(PodSpec {
            node_name: Some(format!("node-{node}")),
            containers: vec![Container {
                name: "c".to_owned(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ips: Some(vec![PodIP {
                ip: format!("10.{}.{}.{}", 243 + node, index / 250, index % 250 + 2),
            }]),
            ..Default::default()
        }),
    }
}

fn selector(role: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([("role".to_owned(), role.to_owned())].into()),
        match_expressions: None,
    }
}

fn cluster(pods: usize) -> Cluster {
    let policy = |name: &str, target: &str, from: &str, port: IntOrString| NetworkPolicy {
        metadata: meta("shop", name, &[]),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(target)),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(from)),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(port),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    };
    Cluster {
        namespaces: vec![Namespace {
            metadata: meta("", "shop", &[]),
            ..Default::default()
        }],
        pods: (0..pods).map(pod).collect(),
        policies: vec![
            policy("db-from-web", "db", "web", IntOrString::Int(5432)),
            policy(
                "web-from-cache",
                "web",
                "cache",
                IntOrString::String("http".to_owned()),
            ),
        ],
        nodes: vec![Node {
            metadata: ObjectMeta {
                name: Some("node-1".to_owned()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidrs: Some(vec!["10.244.0.0/16".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }],
    }
}

#[test]
fn rule_count_does_not_grow_with_pods() {
    let options = CompileOptions::default();
    let small = compile(&resolve(&cluster(10), "node-1"), options).ruleset;
    let large = compile(&resolve(&cluster(1_000), "node-1"), options).ruleset;
    assert_eq!(small.rule_count(), large.rule_count());
    assert_eq!(small.chains.len(), large.chains.len());
    assert_eq!(small.sets.len(), large.sets.len());
    // Elements grow linearly: 100x the pods, between 50x and 150x the elements.
    assert!(
        large.element_count() >= small.element_count() * 50,
        "{} vs {}",
        large.element_count(),
        small.element_count()
    );
    assert!(
        large.element_count() <= small.element_count() * 150,
        "{} vs {}",
        large.element_count(),
        small.element_count()
    );
}

#[test]
fn pod_churn_changes_elements_only() {
    let options = CompileOptions::default();
    let before = compile(&resolve(&cluster(30), "node-1"), options).ruleset;
    let mut grown = cluster(30);
    grown.pods.push(pod(30));
    grown.pods.push(pod(33));
    grown.pods.remove(4);
    let after = compile(&resolve(&grown, "node-1"), options).ruleset;
    let changes = diff(Some(&before), &after);
    assert!(!changes.is_empty());
    assert!(changes.is_element_only(), "{changes:#?}");
}

#[test]
fn every_base_chain_starts_with_the_conntrack_bypass() {
    let ruleset = compile(&resolve(&cluster(4), "node-1"), CompileOptions::default()).ruleset;
    let bases: Vec<_> = ruleset
        .chains
        .values()
        .filter(|chain| chain.base.is_some())
        .collect();
    assert_eq!(bases.len(), 4);
    for chain in bases {
        let first = &chain.rules[0];
        assert_eq!(
            first.matches,
            vec![Match::CtState(
                [CtState::Established, CtState::Related].into()
            )],
            "{}",
            chain.name
        );
        assert_eq!(first.action, Action::Verdict(Verdict::Accept));
    }
}
