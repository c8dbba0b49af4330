//! A seeded generator of synthetic clusters with a realistic policy mix.
//!
//! Shape (per [`Shape`]):
//! - `policies / 25` application namespaces `ns-<i>` (label `team=team-<i>`),
//!   plus `monitoring` (10 Prometheus pods) and `kube-system` (4 CoreDNS pods).
//! - Each application pod has `app=app-<j>` (`j` in 0..10) and
//!   `tier=web|api|db` (apps 0–2, 3–6, 7–9), named ports `http` (8080) and
//!   `metrics` (9090).
//! - Each namespace gets up to 25 policies, in this order: default deny
//!   (both directions); DNS egress to `kube-system`; ingress from the
//!   `monitoring` namespace on the named port `metrics`; per app an ingress
//!   policy (app-0: `ipBlock 0.0.0.0/0 except` the private ranges on the
//!   named port `http`; app-j: from app-(j-1), port 8080 or the `endPort`
//!   range 8000–8099); per app an egress policy (to app-(j+1); app-9 to
//!   `203.0.113.0/24 except 203.0.113.128/25` on 443 and 5432); a
//!   cross-namespace ingress from the next namespace's web tier and the
//!   mirror egress (ports 9000–9100).
//! - Node `node-1` is the measured node. It hosts one pod of every
//!   (namespace, app) first (as far as half of the pods allow), so every
//!   policy selects a local pod and the rule count stays the same as pods
//!   grow; the other pods go to random nodes of about 100 pods each.
//! - Addresses: `node-1` has `10.0.0.0/16`; node `n ≥ 2` has
//!   `10.<1 + (n-2)/256>.<(n-2)%256>.0/24`. IPv4 only. `monitoring` and
//!   `kube-system` pods live on other nodes.
//!
//! Deterministic: the same shape and seed give the same objects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol_model::Cluster;

/// The measured node.
pub const NODE: &str = "node-1";
/// Policies per application namespace.
pub const POLICIES_PER_NAMESPACE: usize = 25;
/// Apps per application namespace.
pub const APPS: usize = 10;
/// Pods per node other than the measured one (on average).
const PODS_PER_NODE: usize = 100;
/// The port every app serves plain requests on (named `http`).
pub const HTTP_PORT: u16 = 8080;

/// How big a cluster to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Application pods (monitoring and DNS pods come on top).
    pub pods: usize,
    /// Network policies.
    pub policies: usize,
    /// Seed of the placement generator.
    pub seed: u64,
}

/// SplitMix64: small, seeded, good enough to scatter pods.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    ///
    /// # Panics
    ///
    /// If `bound` is 0.
    pub fn below(&mut self, bound: usize) -> usize {
        let bound = u64::try_from(bound).expect("bounds are small");
        usize::try_from(self.next_u64() % bound).expect("below a usize bound")
    }
}

/// Application namespaces for `policies` policies.
pub fn namespace_count(policies: usize) -> usize {
    policies.div_ceil(POLICIES_PER_NAMESPACE).max(1)
}

/// Other nodes (besides `node-1`) for `pods` pods.
pub fn other_node_count(pods: usize) -> usize {
    (pods / PODS_PER_NODE).max(1)
}

/// The tier of app `j`.
pub fn tier(app: usize) -> &'static str {
    match app {
        0..=2 => "web",
        3..=6 => "api",
        _ => "db",
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    }
}

fn meta(namespace: Option<&str>, name: &str, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: (!pairs.is_empty()).then(|| labels(pairs)),
        ..ObjectMeta::default()
    }
}

/// A running pod with one IPv4 address and the named ports `http` and `metrics`.
pub fn pod(
    namespace: &str,
    name: &str,
    pairs: &[(&str, &str)],
    node: &str,
    address: Ipv4Addr,
) -> Pod {
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Pod {
        metadata: meta(Some(namespace), name, pairs),
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            containers: vec![Container {
                name: "main".to_owned(),
                ports: Some(vec![port("http", HTTP_PORT), port("metrics", 9090)]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ip: Some(address.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: address.to_string(),
            }]),
            ..PodStatus::default()
        }),
    }
}

/// The node's name for index `n` (1-based).
pub fn node_name(n: usize) -> String {
    format!("node-{n}")
}

/// The `host`-th address of node `n`'s pod CIDR.
fn node_address(n: usize, host: usize) -> Ipv4Addr {
    let host = u32::try_from(host).expect("hosts per node are bounded");
    if n == 1 {
        Ipv4Addr::from(0x0a00_0000 + host)
    } else {
        let index = u32::try_from(n - 2).expect("nodes are bounded");
        Ipv4Addr::from(0x0a01_0000 + (index << 8) + host)
    }
}

/// The pod CIDR of node `n`.
pub fn node_cidr(n: usize) -> String {
    if n == 1 {
        "10.0.0.0/16".to_owned()
    } else {
        let base = node_address(n, 0);
        format!("{base}/24")
    }
}

/// Hands out addresses per node.
struct Addresses {
    next: BTreeMap<usize, usize>,
}

impl Addresses {
    fn take(&mut self, n: usize) -> Ipv4Addr {
        let host = self.next.entry(n).or_insert(1);
        let address = node_address(n, *host);
        *host += 1;
        assert!(
            n == 1 || *host < 255,
            "placement keeps nodes under 250 pods"
        );
        address
    }
}

/// Makes the cluster for `shape`.
pub fn cluster(shape: Shape) -> Cluster {
    let namespaces = namespace_count(shape.policies);
    let others = other_node_count(shape.pods);
    let mut rng = Rng::new(shape.seed);
    let mut addresses = Addresses {
        next: BTreeMap::new(),
    };
    let mut cluster = Cluster::default();
    for i in 0..namespaces {
        let name = format!("ns-{i}");
        let team = format!("team-{i}");
        cluster.namespaces.push(Namespace {
            metadata: meta(None, &name, &[("team", &team)]),
            ..Namespace::default()
        });
    }
    for name in ["monitoring", "kube-system"] {
        cluster.namespaces.push(Namespace {
            metadata: meta(None, name, &[]),
            ..Namespace::default()
        });
    }
    let random_node = |rng: &mut Rng| 2 + rng.below(others);
    let mut node_counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut place = |rng: &mut Rng, addresses: &mut Addresses| loop {
        let n = random_node(rng);
        let count = node_counts.entry(n).or_insert(0);
        if *count < 250 {
            *count += 1;
            return (n, addresses.take(n));
        }
    };
    for i in 0..10 {
        let (n, address) = place(&mut rng, &mut addresses);
        cluster.pods.push(pod(
            "monitoring",
            &format!("prometheus-{i}"),
            &[("app", "prometheus")],
            &node_name(n),
            address,
        ));
    }
    for i in 0..4 {
        let (n, address) = place(&mut rng, &mut addresses);
        cluster.pods.push(pod(
            "kube-system",
            &format!("coredns-{i}"),
            &[("k8s-app", "kube-dns")],
            &node_name(n),
            address,
        ));
    }
    let covering = (namespaces * APPS).min(shape.pods / 2);
    for i in 0..shape.pods {
        let (namespace, app) = if i < covering {
            (i / APPS, i % APPS)
        } else {
            (rng.below(namespaces), rng.below(APPS))
        };
        let (n, address) = if i < covering {
            (1, addresses.take(1))
        } else {
            place(&mut rng, &mut addresses)
        };
        let app_label = format!("app-{app}");
        cluster.pods.push(pod(
            &format!("ns-{namespace}"),
            &format!("{app_label}-{i}"),
            &[("app", &app_label), ("tier", tier(app))],
            &node_name(n),
            address,
        ));
    }
    for n in 1..=others + 1 {
        cluster.nodes.push(node(&node_name(n), &[node_cidr(n)]));
    }
    cluster.policies = (0..shape.policies)
        .map(|k| {
            policy(
                k / POLICIES_PER_NAMESPACE,
                k % POLICIES_PER_NAMESPACE,
                namespaces,
            )
        })
        .collect();
    cluster
}

/// A Node object with these pod CIDRs.
pub fn node(name: &str, cidrs: &[String]) -> Node {
    Node {
        metadata: meta(None, name, &[]),
        spec: Some(NodeSpec {
            pod_cidr: cidrs.first().cloned(),
            pod_cidrs: Some(cidrs.to_vec()),
            ..NodeSpec::default()
        }),
        ..Node::default()
    }
}

fn tcp(port: u16, end: Option<u16>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        end_port: end.map(i32::from),
        protocol: Some("TCP".to_owned()),
    }
}

fn named(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_owned())),
        end_port: None,
        protocol: Some("TCP".to_owned()),
    }
}

fn pods_peer(pairs: &[(&str, &str)]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector(pairs)),
        ..NetworkPolicyPeer::default()
    }
}

fn namespace_peer(namespace: &[(&str, &str)], pods: Option<&[(&str, &str)]>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector(namespace)),
        pod_selector: pods.map(selector),
        ..NetworkPolicyPeer::default()
    }
}

fn block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: Some(except.iter().map(|text| (*text).to_owned()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }
}

struct PolicyParts {
    name: String,
    target: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
}

fn ingress(
    peers: Vec<NetworkPolicyPeer>,
    ports: Vec<NetworkPolicyPort>,
) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(peers),
        ports: Some(ports),
    }
}

fn egress(peers: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(peers),
        ports: Some(ports),
    }
}

/// Policy number `k` (0..25) of namespace `ns-<i>` in a cluster of
/// `namespaces` application namespaces.
#[expect(
    clippy::too_many_lines,
    reason = "the 25 policy kinds read best as one table"
)]
pub fn policy(i: usize, k: usize, namespaces: usize) -> NetworkPolicy {
    let everything = LabelSelector::default();
    let parts = match k {
        0 => PolicyParts {
            name: "default-deny".to_owned(),
            target: everything,
            ingress: Some(vec![]),
            egress: Some(vec![]),
        },
        1 => PolicyParts {
            name: "allow-dns".to_owned(),
            target: everything,
            ingress: None,
            egress: Some(vec![egress(
                vec![namespace_peer(
                    &[("kubernetes.io/metadata.name", "kube-system")],
                    Some(&[("k8s-app", "kube-dns")]),
                )],
                vec![
                    NetworkPolicyPort {
                        protocol: Some("UDP".to_owned()),
                        ..tcp(53, None)
                    },
                    tcp(53, None),
                ],
            )]),
        },
        2 => PolicyParts {
            name: "allow-monitoring".to_owned(),
            target: everything,
            ingress: Some(vec![ingress(
                vec![namespace_peer(
                    &[("kubernetes.io/metadata.name", "monitoring")],
                    None,
                )],
                vec![named("metrics")],
            )]),
            egress: None,
        },
        3..=12 => {
            let app = k - 3;
            let rule = if app == 0 {
                ingress(
                    vec![block(
                        "0.0.0.0/0",
                        &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                    )],
                    vec![named("http")],
                )
            } else {
                let port = if app % 2 == 1 {
                    tcp(HTTP_PORT, None)
                } else {
                    tcp(8000, Some(8099))
                };
                ingress(
                    vec![pods_peer(&[("app", &format!("app-{}", app - 1))])],
                    vec![port],
                )
            };
            PolicyParts {
                name: format!("app-{app}-ingress"),
                target: selector(&[("app", &format!("app-{app}"))]),
                ingress: Some(vec![rule]),
                egress: None,
            }
        }
        13..=22 => {
            let app = k - 13;
            let rule = if app == APPS - 1 {
                egress(
                    vec![block("203.0.113.0/24", &["203.0.113.128/25"])],
                    vec![tcp(443, None), tcp(5432, None)],
                )
            } else {
                egress(
                    vec![pods_peer(&[("app", &format!("app-{}", app + 1))])],
                    vec![tcp(HTTP_PORT, None), tcp(8000, Some(8099))],
                )
            };
            PolicyParts {
                name: format!("app-{app}-egress"),
                target: selector(&[("app", &format!("app-{app}"))]),
                ingress: None,
                egress: Some(vec![rule]),
            }
        }
        23 => PolicyParts {
            name: "allow-from-next-namespace".to_owned(),
            target: selector(&[("tier", "api")]),
            ingress: Some(vec![ingress(
                vec![namespace_peer(
                    &[("team", &format!("team-{}", (i + 1) % namespaces))],
                    Some(&[("tier", "web")]),
                )],
                vec![tcp(9000, Some(9100))],
            )]),
            egress: None,
        },
        _ => PolicyParts {
            name: "allow-to-previous-namespace".to_owned(),
            target: selector(&[("tier", "web")]),
            ingress: None,
            egress: Some(vec![egress(
                vec![namespace_peer(
                    &[(
                        "team",
                        &format!("team-{}", (i + namespaces - 1) % namespaces),
                    )],
                    Some(&[("tier", "api")]),
                )],
                vec![tcp(9000, Some(9100))],
            )]),
        },
    };
    let mut types = Vec::new();
    if parts.ingress.is_some() {
        types.push("Ingress".to_owned());
    }
    if parts.egress.is_some() {
        types.push("Egress".to_owned());
    }
    NetworkPolicy {
        metadata: meta(Some(&format!("ns-{i}")), &parts.name, &[]),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(parts.target),
            policy_types: Some(types),
            ingress: parts.ingress,
            egress: parts.egress,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_cluster_and_counts_follow_the_shape() {
        let shape = Shape {
            pods: 300,
            policies: 60,
            seed: 7,
        };
        let a = cluster(shape);
        let b = cluster(shape);
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.policies.len(), 60);
        assert_eq!(a.pods.len(), 300 + 14);
        assert_eq!(a.namespaces.len(), namespace_count(60) + 2);
        let other = cluster(Shape { seed: 8, ..shape });
        assert_ne!(a.pods, other.pods);
    }

    #[test]
    fn measured_node_hosts_every_namespace_and_app_and_policies_parse() {
        let shape = Shape {
            pods: 1000,
            policies: 100,
            seed: 1,
        };
        let model = nftpol_model::resolve(&cluster(shape), NODE);
        assert!(model.errors.is_empty(), "{:?}", model.errors);
        assert_eq!(
            model.policies.len(),
            100,
            "every policy selects a pod on node-1"
        );
    }
}
