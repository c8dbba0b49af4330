//! Shape guarantees of the compiled ruleset: rule count independent of pods,
//! pod churn as element-only diffs, what every base chain starts with, and
//! the whole table of one small cluster in nft text.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol_ir::diff::diff;
use nftpol_ir::{Action, CtState, Match, Verdict};
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::{resolve, Cluster};
use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_testkit::assert_ruleset;
use nftpol_testkit::fixtures::{self, Tcp};
use nftpol_testkit::plan;

fn pod(index: usize) -> Pod {
    let node = 1 + index % 2;
    let role = ["web", "db", "cache"][index % 3];
    fixtures::pod("shop", &format!("pod-{index}"))
        .label("role", role)
        .node_name(&format!("node-{node}"))
        .named_port("http", 8080, Tcp)
        .ip(&format!(
            "10.{}.{}.{}",
            243 + node,
            index / 250,
            index % 250 + 2
        ))
        .build()
}

fn selector(role: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([("role".to_owned(), role.to_owned())].into()),
        match_expressions: None,
    }
}

fn cluster(pods: usize) -> Cluster {
    let policy = |name: &str, target: &str, from: &str, port: IntOrString| NetworkPolicy {
        metadata: fixtures::meta(Some("shop"), name, &[]),
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
        namespaces: vec![fixtures::namespace("shop").build()],
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
        cluster_policies: Vec::new(),
        nodes: vec![fixtures::node("node-1").pod_cidr("10.244.0.0/16").build()],
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

/// `cluster(pods)` with ClusterNetworkPolicies of both tiers: an Admin Deny
/// into db from cache, an Admin Pass to web's named port, a Baseline Deny of
/// egress to a network.
fn cluster_with_tiers(pods: usize) -> Cluster {
    let cnp = |name: &str, spec: serde_json::Value| {
        ClusterNetworkPolicy::new(name, serde_json::from_value(spec).expect("a valid spec"))
    };
    let mut cluster = cluster(pods);
    cluster.cluster_policies = vec![
        cnp(
            "db-not-from-cache",
            serde_json::json!({"tier": "Admin", "priority": 1,
                "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "db"}}}},
                "ingress": [{"action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "cache"}}}}]}]}),
        ),
        cnp(
            "web-http-passes",
            serde_json::json!({"tier": "Admin", "priority": 2,
                "subject": {"namespaces": {}},
                "ingress": [{"action": "Pass", "from": [{"namespaces": {}}], "protocols": [{"destinationNamedPort": "http"}]}]}),
        ),
        cnp(
            "no-egress-outside",
            serde_json::json!({"tier": "Baseline", "priority": 0,
                "subject": {"namespaces": {}},
                "egress": [{"action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]}]}),
        ),
    ];
    cluster
}

#[test]
fn cluster_policy_rule_count_does_not_grow_with_pods() {
    let options = CompileOptions::default();
    let small = compile(&resolve(&cluster_with_tiers(10), "node-1"), options).ruleset;
    let large = compile(&resolve(&cluster_with_tiers(1_000), "node-1"), options).ruleset;
    assert!(
        small.chains.keys().any(|name| name.starts_with("cnp-")),
        "the tiers are compiled"
    );
    assert_eq!(small.rule_count(), large.rule_count());
    assert_eq!(small.chains.len(), large.chains.len());
    assert_eq!(small.sets.len(), large.sets.len());
    assert!(large.element_count() >= small.element_count() * 50);
}

/// Two pods added and one removed change only set and map elements.
fn assert_pod_churn_changes_elements_only(cluster: fn(usize) -> Cluster) {
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
fn cluster_policy_pod_churn_changes_elements_only() {
    assert_pod_churn_changes_elements_only(cluster_with_tiers);
}

#[test]
fn pod_churn_changes_elements_only() {
    assert_pod_churn_changes_elements_only(cluster);
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

#[test]
fn one_ingress_policy_compiles_to_this_table() {
    // x/a accepts x/b on TCP 80; both run on node-1.
    let cluster = Cluster {
        namespaces: vec![fixtures::namespace("x").build()],
        pods: vec![
            fixtures::pod("x", "a")
                .label("pod", "a")
                .node(1)
                .address(plan::pod_v4(1, 2))
                .build(),
            fixtures::pod("x", "b")
                .label("pod", "b")
                .node(1)
                .address(plan::pod_v4(1, 3))
                .build(),
        ],
        policies: vec![fixtures::policy("x", "web")
            .spec(&serde_json::json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                             "ports": [{"port": 80}]}],
            }))
            .build()],
        cluster_policies: Vec::new(),
        nodes: vec![fixtures::node("node-1")
            .pod_cidr(&plan::pod_cidr_v4(1))
            .build()],
    };
    let ruleset = compile(&resolve(&cluster, "node-1"), CompileOptions::default()).ruleset;
    // The policy's objects first, then the static ones; the order of
    // objects and elements is free, the order of rules is not.
    assert_ruleset!(ruleset, EXPECTED_ONE_INGRESS_POLICY);
}

const EXPECTED_ONE_INGRESS_POLICY: &str = r#"
    chain ingress-group-x4ezh7iu {
        comment "pods isolated by x/web"
        jump policy-ahxhkape-x/web/ingress
        counter drop comment "ingress denied: x/web"
    }
    chain policy-ahxhkape-x/web/ingress {
        comment "x/web ingress rules"
        ip saddr @pods-6ubgq7hke5t7j3tq-v4 meta l4proto . th dport @ports-eg3syytnmg3yuvcn counter accept comment "x/web ingress[0]"
    }
    set pods-6ubgq7hke5t7j3tq-v4 {
        type ipv4_addr
        comment "pods of ns:x pods:pod=b"
        elements = { 10.244.1.3 }
    }
    set ports-eg3syytnmg3yuvcn {
        type inet_proto . inet_service
        flags interval
        comment "destination ports of policy rules"
        elements = { tcp . 80 }
    }
    map ingress-dispatch-v4 {
        type ipv4_addr : verdict
        comment "local pods isolated for ingress: address → jump to their group chain"
        elements = { 10.244.1.2 : jump ingress-group-x4ezh7iu }
    }
    set ingress-isolated-v4 {
        type ipv4_addr
        comment "local pods isolated for ingress: the keys of the dispatch map"
        elements = { 10.244.1.2 }
    }
    map ingress-dispatch-v6 {
        type ipv6_addr : verdict
        comment "local pods isolated for ingress: address → jump to their group chain"
    }
    set ingress-isolated-v6 {
        type ipv6_addr
        comment "local pods isolated for ingress: the keys of the dispatch map"
    }
    map egress-dispatch-v4 {
        type ipv4_addr : verdict
        comment "local pods isolated for egress: address → jump to their group chain"
    }
    map egress-dispatch-v6 {
        type ipv6_addr : verdict
        comment "local pods isolated for egress: address → jump to their group chain"
    }
    set egress-isolated-v4 {
        type ipv4_addr
        comment "local pods isolated for egress: the keys of the dispatch map"
    }
    set egress-isolated-v6 {
        type ipv6_addr
        comment "local pods isolated for egress: the keys of the dispatch map"
    }
    set local-pod-ips-v4 {
        type ipv4_addr
        comment "addresses of the known pods on this node"
        elements = { 10.244.1.3, 10.244.1.2 }
    }
    set local-pod-ips-v6 {
        type ipv6_addr
        comment "addresses of the known pods on this node"
    }
    set local-addresses-v4 {
        type ipv4_addr
        flags interval
        comment "this node's pod CIDRs and its known pods' addresses"
        elements = { 10.244.1.0-10.244.1.255 }
    }
    set local-addresses-v6 {
        type ipv6_addr
        flags interval
        comment "this node's pod CIDRs and its known pods' addresses"
    }
    set self-pairs-v4 {
        type ipv4_addr . ipv4_addr
        comment "each local pod address twice: a pod reaching itself"
        elements = { 10.244.1.2 . 10.244.1.2, 10.244.1.3 . 10.244.1.3 }
    }
    set self-pairs-v6 {
        type ipv6_addr . ipv6_addr
        comment "each local pod address twice: a pod reaching itself"
    }
    chain filter-forward-egress {
        comment "egress policy of local pods, forward path"
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        ct state invalid drop
        icmpv6 type 133-137 accept
        ip saddr != @local-addresses-v4 accept
        ip6 saddr != @local-addresses-v6 accept
        ip saddr . ip daddr @self-pairs-v4 accept
        ip6 saddr . ip6 daddr @self-pairs-v6 accept
        ip saddr != @local-pod-ips-v4 counter drop comment "unknown pod on this node"
        ip6 saddr != @local-pod-ips-v6 counter drop comment "unknown pod on this node"
        ip saddr vmap @egress-dispatch-v4
        ip6 saddr vmap @egress-dispatch-v6
        ip saddr @egress-isolated-v4 drop comment "isolated pod while the ruleset changes"
        ip6 saddr @egress-isolated-v6 drop comment "isolated pod while the ruleset changes"
    }
    chain filter-forward-ingress {
        comment "ingress policy of local pods, forward path"
        type filter hook forward priority 10; policy accept;
        ct state established,related accept
        ct state invalid drop
        icmpv6 type 133-137 accept
        ip daddr != @local-addresses-v4 accept
        ip6 daddr != @local-addresses-v6 accept
        ip saddr . ip daddr @self-pairs-v4 accept
        ip6 saddr . ip6 daddr @self-pairs-v6 accept
        ip daddr != @local-pod-ips-v4 counter drop comment "unknown pod on this node"
        ip6 daddr != @local-pod-ips-v6 counter drop comment "unknown pod on this node"
        ip daddr vmap @ingress-dispatch-v4
        ip6 daddr vmap @ingress-dispatch-v6
        ip daddr @ingress-isolated-v4 drop comment "isolated pod while the ruleset changes"
        ip6 daddr @ingress-isolated-v6 drop comment "isolated pod while the ruleset changes"
    }
    chain filter-output-egress {
        comment "egress policy of local pods, output path"
        type filter hook output priority 0; policy accept;
        ct state established,related accept
        ct state invalid drop
        icmpv6 type 133-137 accept
        fib saddr type local accept comment "traffic of the node itself"
        ip saddr != @local-addresses-v4 accept
        ip6 saddr != @local-addresses-v6 accept
        ip saddr . ip daddr @self-pairs-v4 accept
        ip6 saddr . ip6 daddr @self-pairs-v6 accept
        ip saddr != @local-pod-ips-v4 counter drop comment "unknown pod on this node"
        ip6 saddr != @local-pod-ips-v6 counter drop comment "unknown pod on this node"
        ip saddr vmap @egress-dispatch-v4
        ip6 saddr vmap @egress-dispatch-v6
        ip saddr @egress-isolated-v4 drop comment "isolated pod while the ruleset changes"
        ip6 saddr @egress-isolated-v6 drop comment "isolated pod while the ruleset changes"
    }
    chain filter-output-ingress {
        comment "ingress policy of local pods, output path"
        type filter hook output priority 10; policy accept;
        ct state established,related accept
        ct state invalid drop
        icmpv6 type 133-137 accept
        fib saddr type local accept comment "traffic of the node itself"
        ip daddr != @local-addresses-v4 accept
        ip6 daddr != @local-addresses-v6 accept
        ip saddr . ip daddr @self-pairs-v4 accept
        ip6 saddr . ip6 daddr @self-pairs-v6 accept
        ip daddr != @local-pod-ips-v4 counter drop comment "unknown pod on this node"
        ip6 daddr != @local-pod-ips-v6 counter drop comment "unknown pod on this node"
        ip daddr vmap @ingress-dispatch-v4
        ip6 daddr vmap @ingress-dispatch-v6
        ip daddr @ingress-isolated-v4 drop comment "isolated pod while the ruleset changes"
        ip6 daddr @ingress-isolated-v6 drop comment "isolated pod while the ruleset changes"
    }
"#;
