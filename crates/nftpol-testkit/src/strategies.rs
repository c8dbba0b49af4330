//! Generators of random clusters and packets for the property tests (the
//! one `strategies` module; the fuzz targets build their inputs with
//! `arbitrary` instead, over the same pools of names and addresses). Pods
//! live in the address plan of [`crate::plan`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeAddress, NodeSpec, NodeStatus, Pod, PodIP,
    PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol_model::cluster_policy::api::{self as cnp, ClusterNetworkPolicy};
use nftpol_model::{Cluster, PodView};
use proptest::prelude::*;

/// The namespaces every generated cluster has.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// Addresses outside every pod, per family.
pub const OUTSIDERS: [&str; 4] = [
    "203.0.113.7",
    "10.244.1.200",
    "2001:db8::7",
    "fd00:10:244:1::200",
];

/// Every pod and node address of `cluster` and the [`OUTSIDERS`], sorted:
/// the pool property tests draw connection endpoints from.
///
/// # Panics
/// Never: the outsiders are address literals.
pub fn probe_addresses(cluster: &Cluster) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = cluster
        .pods
        .iter()
        .flat_map(|pod| PodView::from_pod(pod).ips)
        .collect();
    all.extend(
        cluster
            .nodes
            .iter()
            .filter_map(|node| node.status.as_ref()?.addresses.as_ref())
            .flatten()
            .filter_map(|address| address.address.parse::<IpAddr>().ok()),
    );
    all.extend(
        OUTSIDERS
            .iter()
            .map(|text| text.parse::<IpAddr>().expect("valid literal")),
    );
    all.sort_unstable();
    all.dedup();
    all
}

fn labels(pairs: Vec<(&'static str, &'static str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn label_pairs() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec!["web", "db"])),
    )
        .prop_map(|(pod, app)| {
            let mut pairs = Vec::new();
            if let Some(pod) = pod {
                pairs.push(("pod", pod));
            }
            if let Some(app) = app {
                pairs.push(("app", app));
            }
            pairs
        })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    let keys = prop::sample::select(vec![
        "pod",
        "app",
        "ns",
        "team",
        "kubernetes.io/metadata.name",
    ]);
    let values = prop::collection::vec(
        prop::sample::select(vec!["a", "b", "web", "db", "x", "y", "red"]),
        0..3,
    );
    let operator = prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist", "Bogus"]);
    (
        prop::collection::btree_map(
            keys.clone(),
            prop::sample::select(vec!["a", "b", "web", "x", "y", "red"]),
            0..2,
        ),
        prop::collection::vec((keys, operator, values), 0..2),
    )
        .prop_map(|(match_labels, expressions)| LabelSelector {
            match_labels: if match_labels.is_empty() {
                None
            } else {
                Some(
                    match_labels
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                )
            },
            match_expressions: if expressions.is_empty() {
                None
            } else {
                Some(
                    expressions
                        .into_iter()
                        .map(|(key, operator, values)| LabelSelectorRequirement {
                            key: key.to_owned(),
                            operator: operator.to_owned(),
                            values: if operator == "Exists" || operator == "DoesNotExist" {
                                None
                            } else {
                                Some(values.into_iter().map(str::to_owned).collect())
                            },
                        })
                        .collect(),
                )
            },
        })
}

fn ip_block() -> impl Strategy<Value = IPBlock> {
    prop::sample::select(vec![
        ("10.244.0.0/16", vec![]),
        ("10.244.1.0/24", vec!["10.244.1.0/30"]),
        ("10.244.2.0/24", vec!["10.244.2.4/31", "10.244.2.8/29"]),
        ("0.0.0.0/0", vec!["10.244.1.0/24"]),
        ("::/0", vec![]),
        ("fd00:10:244::/48", vec!["fd00:10:244:2::/64"]),
        ("10.244.1.3/32", vec![]),
        ("203.0.113.0/24", vec![]),
        ("10.244.1.0/24", vec!["10.244.2.0/24"]),
        ("bogus", vec![]),
        ("10.244.1.0/24", vec!["10.244.1.0/24"]),
    ])
    .prop_map(|(cidr, except)| IPBlock {
        cidr: cidr.to_owned(),
        except: if except.is_empty() {
            None
        } else {
            Some(except.into_iter().map(str::to_owned).collect())
        },
    })
}

fn peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    prop_oneof![
        selector().prop_map(|pods| NetworkPolicyPeer {
            pod_selector: Some(pods),
            ..Default::default()
        }),
        selector().prop_map(|namespaces| NetworkPolicyPeer {
            namespace_selector: Some(namespaces),
            ..Default::default()
        }),
        (selector(), selector()).prop_map(|(namespaces, pods)| NetworkPolicyPeer {
            namespace_selector: Some(namespaces),
            pod_selector: Some(pods),
            ..Default::default()
        }),
        ip_block().prop_map(|block| NetworkPolicyPeer {
            ip_block: Some(block),
            ..Default::default()
        }),
    ]
}

fn port() -> impl Strategy<Value = NetworkPolicyPort> {
    (
        prop::sample::select(vec![
            None,
            Some("TCP"),
            Some("UDP"),
            Some("SCTP"),
            Some("ICMP"),
        ]),
        prop::sample::select(vec![
            None,
            Some(IntOrString::Int(80)),
            Some(IntOrString::Int(81)),
            Some(IntOrString::Int(0)),
            Some(IntOrString::String("http".to_owned())),
            Some(IntOrString::String("dns".to_owned())),
        ]),
        prop::sample::select(vec![None, None, Some(81), Some(83), Some(79)]),
    )
        .prop_map(|(protocol, port, end_port)| NetworkPolicyPort {
            protocol: protocol.map(str::to_owned),
            port,
            end_port,
        })
}

type Rule = (
    Option<Vec<NetworkPolicyPeer>>,
    Option<Vec<NetworkPolicyPort>>,
);

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::option::of(prop::collection::vec(peer(), 0..3)),
        prop::option::of(prop::collection::vec(port(), 0..3)),
    )
}

fn policy(index: usize) -> impl Strategy<Value = NetworkPolicy> {
    (
        0..NAMESPACES.len(),
        selector(),
        prop::sample::select(vec![
            None,
            Some(vec!["Ingress"]),
            Some(vec!["Egress"]),
            Some(vec!["Ingress", "Egress"]),
        ]),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
    )
        .prop_map(
            move |(namespace, pod_selector, types, ingress, egress)| NetworkPolicy {
                metadata: ObjectMeta {
                    name: Some(format!("policy-{index}")),
                    namespace: Some(NAMESPACES[namespace].to_owned()),
                    ..Default::default()
                },
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(pod_selector),
                    policy_types: types.map(|list| list.into_iter().map(str::to_owned).collect()),
                    ingress: ingress.map(|rules| {
                        rules
                            .into_iter()
                            .map(|(from, ports)| NetworkPolicyIngressRule { from, ports })
                            .collect()
                    }),
                    egress: egress.map(|rules| {
                        rules
                            .into_iter()
                            .map(|(to, ports)| NetworkPolicyEgressRule { to, ports })
                            .collect()
                    }),
                }),
            },
        )
}

/// Addresses a pod may get, per node: small pools so reuse happens.
/// A pod's addresses on node `node`: in the node's pod CIDRs, or (one pod
/// in six) outside them, as IPAMs that ignore `podCIDR` (Calico's) hand out.
fn pod_ips(node: usize) -> impl Strategy<Value = Vec<IpAddr>> {
    (0u8..6, 0u8..3).prop_map(move |(host, families)| {
        let (v4_net, v6_net) = if host == 5 {
            ("10.96", "fd00:96")
        } else {
            ("10.244", "fd00:10:244")
        };
        let v4: IpAddr = format!("{v4_net}.{node}.{}", host + 1)
            .parse()
            .expect("valid literal");
        let v6: IpAddr = format!("{v6_net}:{node}::{}", host + 1)
            .parse()
            .expect("valid literal");
        match families {
            0 => vec![v4],
            1 => vec![v6],
            _ => vec![v4, v6],
        }
    })
}

fn pod(index: usize) -> impl Strategy<Value = Pod> {
    (0..NAMESPACES.len(), label_pairs(), 1usize..=2)
        .prop_flat_map(move |(namespace, labels_of_pod, node)| {
            (
                Just((namespace, labels_of_pod, node)),
                pod_ips(node),
                prop::sample::select(vec![
                    "Running",
                    "Running",
                    "Running",
                    "Succeeded",
                    "Pending",
                ]),
                prop::bool::weighted(0.1),
                prop::collection::vec(
                    prop::sample::select(vec![
                        (Some("http"), "TCP", 80),
                        (Some("http"), "TCP", 81),
                        (Some("dns"), "UDP", 53),
                        (Some("dns"), "UDP", 80),
                        (None, "TCP", 82),
                    ]),
                    0..3,
                ),
            )
        })
        .prop_map(
            move |((namespace, labels_of_pod, node), ips, phase, host_network, ports)| Pod {
                metadata: ObjectMeta {
                    name: Some(format!("pod-{index}")),
                    namespace: Some(NAMESPACES[namespace].to_owned()),
                    labels: Some(labels(labels_of_pod)),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    node_name: Some(format!("node-{node}")),
                    host_network: Some(host_network),
                    containers: vec![Container {
                        name: "c".to_owned(),
                        ports: Some(
                            ports
                                .into_iter()
                                .map(|(name, protocol, number)| ContainerPort {
                                    name: name.map(str::to_owned),
                                    protocol: Some(protocol.to_owned()),
                                    container_port: number,
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: Some(PodStatus {
                    phase: Some(phase.to_owned()),
                    pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
                    ..Default::default()
                }),
            },
        )
}

/// A random cluster of two nodes.
pub fn cluster() -> impl Strategy<Value = Cluster> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec![None, Some("red"), Some("blue")]),
                any::<bool>(),
            ),
            3,
        ),
        (1usize..8).prop_flat_map(|count| (0..count).map(pod).collect::<Vec<_>>()),
        (0usize..4).prop_flat_map(|count| (0..count).map(policy).collect::<Vec<_>>()),
    )
        .prop_map(|(namespace_labels, pods, policies)| Cluster {
            namespaces: NAMESPACES
                .iter()
                .zip(namespace_labels)
                .map(|(name, (team, ns_label))| {
                    let mut pairs = Vec::new();
                    if let Some(team) = team {
                        pairs.push(("team", team));
                    }
                    if ns_label {
                        pairs.push(("ns", *name));
                    }
                    Namespace {
                        metadata: ObjectMeta {
                            name: Some((*name).to_owned()),
                            labels: Some(labels(pairs)),
                            ..Default::default()
                        },
                        ..Default::default()
                    }
                })
                .collect(),
            pods,
            policies,
            cluster_policies: Vec::new(),
            nodes: (1..=2)
                .map(|node| Node {
                    metadata: ObjectMeta {
                        name: Some(format!("node-{node}")),
                        ..Default::default()
                    },
                    spec: Some(NodeSpec {
                        pod_cidrs: Some(vec![
                            format!("10.244.{node}.0/24"),
                            format!("fd00:10:244:{node}::/64"),
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        })
}

/// The node addresses [`cluster_with_tiers`] gives its Nodes (`node-k` gets
/// the k-th of each family).
pub const NODE_ADDRESSES: [[&str; 2]; 2] = [["172.18.0.2", "fc00::2"], ["172.18.0.3", "fc00::3"]];

fn cluster_peer() -> impl Strategy<Value = cnp::Peer> {
    let namespaces = selector().prop_map(|namespaces| cnp::Peer {
        namespaces: Some(namespaces),
        ..Default::default()
    });
    let pods = (selector(), selector()).prop_map(|(namespaces, pods)| cnp::Peer {
        pods: Some(cnp::NamespacedPod {
            namespace_selector: Some(namespaces),
            pod_selector: Some(pods),
        }),
        ..Default::default()
    });
    let networks = prop::collection::vec(
        prop::sample::select(vec![
            "10.244.1.0/25",
            "10.244.2.0/24",
            "0.0.0.0/0",
            "::/0",
            "fd00:10:244:2::/64",
            "203.0.113.0/24",
            "172.18.0.2/32",
            "bogus",
        ]),
        1..3,
    )
    .prop_map(|networks| cnp::Peer {
        networks: Some(networks.into_iter().map(str::to_owned).collect()),
        ..Default::default()
    });
    let nodes = selector().prop_map(|nodes| cnp::Peer {
        nodes: Some(nodes),
        ..Default::default()
    });
    // No field this version knows, or one it does not enforce: the spec's
    // unknown peer (and, in ingress, what the API server leaves of an
    // egress-only field).
    let unknown = prop::sample::select(vec![
        cnp::Peer::default(),
        cnp::Peer {
            domain_names: Some(vec!["example.com".to_owned()]),
            ..Default::default()
        },
    ]);
    prop_oneof![
        3 => namespaces,
        3 => pods,
        2 => networks,
        2 => nodes,
        1 => unknown,
    ]
}

fn cluster_protocol() -> impl Strategy<Value = cnp::ProtocolMatch> {
    let port = prop_oneof![
        prop::sample::select(vec![53i64, 80, 81, 0]).prop_map(|number| cnp::Port {
            number: Some(number),
            range: None,
        }),
        prop::sample::select(vec![(79i64, 81i64), (80, 83), (82, 80)]).prop_map(|(start, end)| {
            cnp::Port {
                number: None,
                range: Some(cnp::PortRange {
                    start: Some(start),
                    end: Some(end),
                }),
            }
        }),
    ];
    prop_oneof![
        (prop::sample::select(vec!["tcp", "udp", "sctp"]), port).prop_map(|(protocol, port)| {
            let matched = Some(cnp::PortMatch {
                destination_port: Some(port),
            });
            match protocol {
                "tcp" => cnp::ProtocolMatch {
                    tcp: matched,
                    ..Default::default()
                },
                "udp" => cnp::ProtocolMatch {
                    udp: matched,
                    ..Default::default()
                },
                _ => cnp::ProtocolMatch {
                    sctp: matched,
                    ..Default::default()
                },
            }
        }),
        prop::sample::select(vec!["http", "dns"]).prop_map(|name| cnp::ProtocolMatch {
            destination_named_port: Some(name.to_owned()),
            ..Default::default()
        }),
    ]
}

type ClusterRule = (
    &'static str,
    Vec<cnp::Peer>,
    Option<Vec<cnp::ProtocolMatch>>,
);

fn cluster_rule() -> impl Strategy<Value = ClusterRule> {
    (
        prop::sample::select(vec!["Accept", "Deny", "Pass", "Accept", "Deny", "Bogus"]),
        prop::collection::vec(cluster_peer(), 1..3),
        prop::option::of(prop::collection::vec(cluster_protocol(), 1..3)),
    )
}

fn cluster_policy(index: usize) -> impl Strategy<Value = ClusterNetworkPolicy> {
    (
        prop::sample::select(vec!["Admin", "Admin", "Baseline", "Baseline", "Middle"]),
        prop::sample::select(vec![0i64, 1, 1, 2, 1001]),
        prop_oneof![
            selector().prop_map(|namespaces| cnp::Subject {
                namespaces: Some(namespaces),
                pods: None,
            }),
            (selector(), selector()).prop_map(|(namespaces, pods)| cnp::Subject {
                namespaces: None,
                pods: Some(cnp::NamespacedPod {
                    namespace_selector: Some(namespaces),
                    pod_selector: Some(pods),
                }),
            }),
        ],
        prop::collection::vec(cluster_rule(), 0..3),
        prop::collection::vec(cluster_rule(), 0..3),
    )
        .prop_map(move |(tier, priority, subject, ingress, egress)| {
            let name = |position: usize| Some(format!("rule-{position}"));
            ClusterNetworkPolicy::new(
                &format!("cnp-{index}"),
                cnp::ClusterNetworkPolicySpec {
                    tier: Some(tier.to_owned()),
                    priority: Some(priority),
                    subject: Some(subject),
                    ingress: Some(
                        ingress
                            .into_iter()
                            .enumerate()
                            .map(|(position, (action, from, protocols))| cnp::IngressRule {
                                name: name(position),
                                action: Some(action.to_owned()),
                                from: Some(from),
                                protocols,
                            })
                            .collect(),
                    ),
                    egress: Some(
                        egress
                            .into_iter()
                            .enumerate()
                            .map(|(position, (action, to, protocols))| cnp::EgressRule {
                                name: name(position),
                                action: Some(action.to_owned()),
                                to: Some(to),
                                protocols,
                            })
                            .collect(),
                    ),
                },
            )
        })
}

/// A random cluster of two nodes with NetworkPolicies and
/// ClusterNetworkPolicies of both tiers (valid and invalid ones, equal
/// priorities, unknown peers); its Nodes carry labels and the addresses of
/// [`NODE_ADDRESSES`].
pub fn cluster_with_tiers() -> impl Strategy<Value = Cluster> {
    (
        cluster(),
        (0usize..4).prop_flat_map(|count| (0..count).map(cluster_policy).collect::<Vec<_>>()),
        prop::collection::vec(label_pairs(), 2),
    )
        .prop_map(|(mut cluster, cluster_policies, node_labels)| {
            cluster.cluster_policies = cluster_policies;
            for ((node, addresses), pairs) in cluster
                .nodes
                .iter_mut()
                .zip(NODE_ADDRESSES)
                .zip(node_labels)
            {
                node.metadata.labels = Some(labels(pairs));
                node.status = Some(NodeStatus {
                    addresses: Some(
                        addresses
                            .iter()
                            .map(|address| NodeAddress {
                                type_: "InternalIP".to_owned(),
                                address: (*address).to_owned(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                });
            }
            cluster
        })
}
