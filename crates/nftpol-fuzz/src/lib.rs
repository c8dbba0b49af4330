//! Fuzz drivers for nftpol: hostile input never crashes it and never opens
//! traffic.
//!
//! [`Scenario`] is a structured fuzz input (decoded with `arbitrary`) that
//! becomes a [`Cluster`]: small pools of names, labels and addresses so
//! selectors match and addresses collide, plus free-form strings anywhere a
//! tenant could write one. The invariants every target checks live here:
//! the compiled ruleset agrees with the semantic evaluator (the test kit's
//! oracle, shared with the property tests), corrupting a policy never allows more
//! (fail closed), and `nft -c` accepts the rendering (sampled, in a
//! throwaway network namespace). [`dump_form`] (the netlink crate's test
//! support, included by path) turns an encoded batch into the dump the
//! kernel would answer, for the decoder targets.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use k8s_openapi::api::core::v1::{ContainerPort, Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftpol_ir::interpret::interpret;
use nftpol_ir::render::render;
use nftpol_ir::Ruleset;
use nftpol_model::{limits, resolve, Cluster, Connection, PodView, Protocol};
use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_testkit::fixtures::{meta, plan_node, pod};
use nftpol_testkit::nft::{self, NftCheck};
use nftpol_testkit::oracle;

#[path = "../../nftpol-netlink/tests/dump_form/mod.rs"]
pub mod dump_form;

/// The node whose ruleset is checked.
pub const NODE: &str = "node-1";

const WORDS: [&str; 10] = ["a", "b", "c", "web", "db", "x", "y", "z", "red", ""];
const KEYS: [&str; 6] = [
    "pod",
    "app",
    "ns",
    "team",
    "kubernetes.io/metadata.name",
    "example.com/tier",
];
const CIDRS: [&str; 16] = [
    "10.244.0.0/16",
    "10.244.1.0/24",
    "10.244.1.0/30",
    "10.244.2.0/24",
    "0.0.0.0/0",
    "::/0",
    "fd00:10:244::/48",
    "fd00:10:244:1::/64",
    "10.244.1.3/32",
    "203.0.113.0/24",
    "2001:db8::/32",
    "::ffff:10.244.1.0/120",
    "10.244.1.5",
    "bogus",
    " 10.244.1.0/24 ",
    "10.244.1.1/24",
];
const OUTSIDERS: [&str; 5] = [
    "203.0.113.7",
    "10.244.1.200",
    "2001:db8::7",
    "fd00:10:244:1::200",
    "::ffff:10.244.1.7",
];

/// A string: usually from a small pool (so selectors match), sometimes free.
#[derive(Debug, Clone, Arbitrary)]
pub enum Text {
    /// `WORDS[n % len]`.
    Word(u8),
    /// Anything a tenant could type.
    Free(String),
}

impl Text {
    fn text(&self) -> String {
        match self {
            Text::Word(n) => WORDS[usize::from(*n) % WORDS.len()].to_owned(),
            Text::Free(text) => text.clone(),
        }
    }
}

/// A label key.
#[derive(Debug, Clone, Arbitrary)]
pub enum Key {
    /// `KEYS[n % len]`.
    Known(u8),
    /// Anything.
    Free(String),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Known(n) => KEYS[usize::from(*n) % KEYS.len()].to_owned(),
            Key::Free(text) => text.clone(),
        }
    }
}

/// A label selector.
#[derive(Debug, Clone, Arbitrary)]
pub struct Selector {
    labels: Vec<(Key, Text)>,
    expressions: Vec<(Key, u8, Option<Vec<Text>>)>,
}

impl Selector {
    fn build(&self) -> LabelSelector {
        const OPERATORS: [&str; 5] = ["In", "NotIn", "Exists", "DoesNotExist", "Bogus"];
        LabelSelector {
            match_labels: (!self.labels.is_empty()).then(|| {
                self.labels
                    .iter()
                    .map(|(key, value)| (key.text(), value.text()))
                    .collect()
            }),
            match_expressions: (!self.expressions.is_empty()).then(|| {
                self.expressions
                    .iter()
                    .map(|(key, operator, values)| LabelSelectorRequirement {
                        key: key.text(),
                        operator: OPERATORS[usize::from(*operator) % OPERATORS.len()].to_owned(),
                        values: values
                            .as_ref()
                            .map(|list| list.iter().map(Text::text).collect()),
                    })
                    .collect()
            }),
        }
    }
}

/// A CIDR as a tenant writes it.
#[derive(Debug, Clone, Arbitrary)]
pub enum Cidr {
    /// `CIDRS[n % len]`.
    Known(u8),
    /// An IPv4 network near the pods: 10.244.0.0 + offset, prefix.
    V4 {
        /// Added to 10.244.0.0.
        offset: u16,
        /// Prefix length (taken modulo 33).
        prefix: u8,
    },
    /// An IPv6 network near the pods: fd00:10:244:: + offset, prefix.
    V6 {
        /// Added to fd00:10:244:1::.
        offset: u16,
        /// Prefix length (taken modulo 129).
        prefix: u8,
    },
    /// Anything.
    Free(String),
}

impl Cidr {
    fn text(&self) -> String {
        match self {
            Cidr::Known(n) => CIDRS[usize::from(*n) % CIDRS.len()].to_owned(),
            Cidr::V4 { offset, prefix } => format!(
                "{}/{}",
                Ipv4Addr::from(0x0af4_0000_u32 + u32::from(*offset)),
                prefix % 33
            ),
            Cidr::V6 { offset, prefix } => format!(
                "{}/{}",
                Ipv6Addr::from(0xfd00_0010_0244_0001_u128 << 64 | u128::from(*offset)),
                prefix % 129
            ),
            Cidr::Free(text) => text.clone(),
        }
    }
}

/// A peer of a rule.
#[derive(Debug, Clone, Arbitrary)]
pub struct Peer {
    pods: Option<Selector>,
    namespaces: Option<Selector>,
    block: Option<(Cidr, Option<Vec<Cidr>>)>,
}

/// A port entry of a rule.
#[derive(Debug, Clone, Arbitrary)]
pub struct Port {
    protocol: u8,
    number: Option<PortValue>,
    end: Option<i32>,
}

/// A port number or name.
#[derive(Debug, Clone, Arbitrary)]
pub enum PortValue {
    /// One of 80, 81, 53, 0, 65535 or the value itself.
    Number(i32),
    /// A named port.
    Name(Text),
}

/// A rule.
#[derive(Debug, Clone, Arbitrary)]
pub struct Rule {
    peers: Option<Vec<Peer>>,
    ports: Option<Vec<Port>>,
}

/// A policy.
#[derive(Debug, Clone, Arbitrary)]
pub struct Policy {
    namespace: u8,
    name: Option<Text>,
    selector: Selector,
    types: u8,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

/// An address a pod may report.
#[derive(Debug, Clone, Arbitrary)]
pub enum Address {
    /// 10.244.<node>.<n % 6 + 1>.
    V4(u8),
    /// fd00:10:244:<node>::<n % 6 + 1>.
    V6(u8),
    /// ::ffff:10.244.<node>.<n % 6 + 1>.
    Mapped(u8),
    /// Anything.
    Free(String),
}

/// A pod.
#[derive(Debug, Clone, Arbitrary)]
pub struct PodInput {
    namespace: u8,
    labels: Vec<(Key, Text)>,
    node: bool,
    addresses: Vec<Address>,
    phase: u8,
    host_network: bool,
    ports: Vec<(Option<Text>, u8, i32)>,
}

/// How to corrupt one policy; each way must only ever allow less.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Corruption {
    /// Make its `podSelector` invalid.
    PodSelector,
    /// Add an invalid `ipBlock` peer to every rule.
    Peer,
    /// Add a port of an unknown protocol to every rule.
    Port,
    /// Push it over [`limits::MAX_PORTS_PER_RULE`] in its first rule, or
    /// over [`limits::MAX_RULES_PER_POLICY`] when it has no rule.
    OverLimit,
}

/// A whole fuzz input.
#[derive(Debug, Clone, Arbitrary)]
pub struct Scenario {
    namespace_labels: [(Option<Text>, bool); 3],
    pods: Vec<PodInput>,
    policies: Vec<Policy>,
    /// (source pick, destination pick, protocol, port pick).
    probes: Vec<(u8, u8, u8, u16)>,
    corruption: Option<(u8, Corruption)>,
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PROTOCOLS: [Option<&str>; 6] = [
    None,
    Some("TCP"),
    Some("UDP"),
    Some("SCTP"),
    Some("ICMP"),
    Some("tcp"),
];
const MAX_PODS: usize = 10;
const MAX_POLICIES: usize = 6;
const MAX_PROBES: usize = 12;

fn port_value(value: &PortValue) -> IntOrString {
    match value {
        PortValue::Number(number) => IntOrString::Int(match number.rem_euclid(8) {
            0 => 80,
            1 => 81,
            2 => 53,
            3 => 0,
            4 => 65_535,
            _ => *number,
        }),
        PortValue::Name(name) => IntOrString::String(port_name(name)),
    }
}

fn build_rule(
    rule: &Rule,
) -> (
    Option<Vec<NetworkPolicyPeer>>,
    Option<Vec<NetworkPolicyPort>>,
) {
    let peers = rule.peers.as_ref().map(|peers| {
        peers
            .iter()
            .map(|peer| NetworkPolicyPeer {
                pod_selector: peer.pods.as_ref().map(Selector::build),
                namespace_selector: peer.namespaces.as_ref().map(Selector::build),
                ip_block: peer.block.as_ref().map(|(cidr, except)| IPBlock {
                    cidr: cidr.text(),
                    except: except
                        .as_ref()
                        .map(|list| list.iter().map(Cidr::text).collect()),
                }),
            })
            .collect()
    });
    let ports = rule.ports.as_ref().map(|ports| {
        ports
            .iter()
            .map(|port| NetworkPolicyPort {
                protocol: PROTOCOLS[usize::from(port.protocol) % PROTOCOLS.len()]
                    .map(str::to_owned),
                port: port.number.as_ref().map(port_value),
                end_port: port.end.map(|end| match end.rem_euclid(4) {
                    0 => 81,
                    1 => 65_535,
                    _ => end,
                }),
            })
            .collect()
    });
    (peers, ports)
}

fn build_policy(index: usize, policy: &Policy) -> NetworkPolicy {
    let types = match policy.types % 5 {
        0 => None,
        1 => Some(vec!["Ingress".to_owned()]),
        2 => Some(vec!["Egress".to_owned()]),
        3 => Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
        _ => Some(vec!["Sideways".to_owned()]),
    };
    NetworkPolicy {
        metadata: meta(
            Some(NAMESPACES[usize::from(policy.namespace) % NAMESPACES.len()]),
            &match &policy.name {
                // A pool of two names so duplicates happen.
                Some(Text::Word(n)) => format!("policy-{}", n % 2),
                Some(Text::Free(text)) => text.clone(),
                None => format!("policy-{index}"),
            },
            &[],
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(policy.selector.build()),
            policy_types: types,
            ingress: policy.ingress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| {
                        let (from, ports) = build_rule(rule);
                        NetworkPolicyIngressRule { from, ports }
                    })
                    .collect()
            }),
            egress: policy.egress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| {
                        let (to, ports) = build_rule(rule);
                        NetworkPolicyEgressRule { to, ports }
                    })
                    .collect()
            }),
        }),
    }
}

fn address(node: u8, choice: &Address) -> String {
    match choice {
        Address::V4(n) => format!("10.244.{node}.{}", n % 6 + 1),
        Address::V6(n) => format!("fd00:10:244:{node}::{}", n % 6 + 1),
        Address::Mapped(n) => format!("::ffff:10.244.{node}.{}", n % 6 + 1),
        Address::Free(text) => text.clone(),
    }
}

fn port_name(name: &Text) -> String {
    match name {
        Text::Word(n) => ["http", "dns", "serve-80-tcp"][usize::from(*n) % 3].to_owned(),
        Text::Free(text) => text.clone(),
    }
}

fn build_pod(index: usize, input: &PodInput) -> Pod {
    let node = if input.node { 1 } else { 2 };
    let labels: Vec<(String, String)> = input
        .labels
        .iter()
        .map(|(key, value)| (key.text(), value.text()))
        .collect();
    let mut built = pod(
        NAMESPACES[usize::from(input.namespace) % NAMESPACES.len()],
        &format!("pod-{index}"),
    )
    .node(node)
    .host_network(input.host_network)
    .phase(["Running", "Running", "Pending", "Succeeded", "Failed"][usize::from(input.phase) % 5]);
    for (key, value) in &labels {
        built = built.label(key, value);
    }
    for choice in input.addresses.iter().take(4) {
        built = built.ip(&address(node, choice));
    }
    let mut pod = built.build();
    // Ports as a tenant may write them: any name, any protocol text (or
    // none), any number; the builder's typed ports cannot say all that.
    if let Some(container) = pod
        .spec
        .as_mut()
        .and_then(|spec| spec.containers.first_mut())
    {
        container.ports = Some(
            input
                .ports
                .iter()
                .map(|(name, protocol, number)| ContainerPort {
                    name: name.as_ref().map(port_name),
                    protocol: PROTOCOLS[usize::from(*protocol) % PROTOCOLS.len()]
                        .map(str::to_owned),
                    container_port: match number.rem_euclid(4) {
                        0 => 80,
                        1 => 81,
                        2 => 53,
                        _ => *number,
                    },
                    ..ContainerPort::default()
                })
                .collect(),
        );
    }
    pod
}

fn nodes() -> Vec<Node> {
    (1..=2).map(|k| plan_node(k).build()).collect()
}

impl Scenario {
    /// The cluster this input describes.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            namespaces: NAMESPACES
                .iter()
                .zip(&self.namespace_labels)
                .map(|(name, (team, ns_label))| {
                    let mut labels = Vec::new();
                    if let Some(team) = team {
                        labels.push(("team".to_owned(), team.text()));
                    }
                    if *ns_label {
                        labels.push(("ns".to_owned(), (*name).to_owned()));
                    }
                    Namespace {
                        metadata: ObjectMeta {
                            name: Some((*name).to_owned()),
                            labels: Some(labels.into_iter().collect()),
                            ..ObjectMeta::default()
                        },
                        ..Namespace::default()
                    }
                })
                .collect(),
            pods: self
                .pods
                .iter()
                .take(MAX_PODS)
                .enumerate()
                .map(|(index, pod)| build_pod(index, pod))
                .collect(),
            policies: self
                .policies
                .iter()
                .take(MAX_POLICIES)
                .enumerate()
                .map(|(index, policy)| build_policy(index, policy))
                .collect(),
            cluster_policies: Vec::new(),
            nodes: nodes(),
        }
    }

    /// The cluster with one policy corrupted, if the input asks for it, and
    /// the corrupted policy's index.
    pub fn corrupted(&self, cluster: &Cluster) -> Option<(Cluster, usize, Corruption)> {
        let (index, how) = self.corruption?;
        let mut corrupted = cluster.clone();
        let count = corrupted.policies.len();
        if count == 0 {
            return None;
        }
        let index = usize::from(index) % count;
        corrupt(corrupted.policies.get_mut(index)?, how);
        Some((corrupted, index, how))
    }

    /// The connections to probe: addresses of the cluster and outsiders.
    pub fn connections(&self, cluster: &Cluster) -> Vec<Connection> {
        let pool = addresses(cluster);
        self.probes
            .iter()
            .take(MAX_PROBES)
            .filter_map(|(source, destination, protocol, port)| {
                let source = *pool.get(usize::from(*source) % pool.len())?;
                let same_family: Vec<IpAddr> = pool
                    .iter()
                    .copied()
                    .filter(|address| address.is_ipv4() == source.is_ipv4())
                    .collect();
                let destination =
                    *same_family.get(usize::from(*destination) % same_family.len())?;
                Some(Connection {
                    source,
                    destination,
                    protocol: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                        [usize::from(*protocol) % 3],
                    port: match port % 9 {
                        0 => 80,
                        1 => 81,
                        2 => 53,
                        3 => 0,
                        4 => 65_535,
                        5 => 82,
                        _ => *port,
                    },
                })
            })
            .collect()
    }
}

/// Applies one corruption to `policy`; each way only ever allows less.
pub fn corrupt(policy: &mut NetworkPolicy, how: Corruption) {
    let spec = policy.spec.get_or_insert_with(NetworkPolicySpec::default);
    let invalid_peer = || NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: "bogus".to_owned(),
            except: None,
        }),
        ..NetworkPolicyPeer::default()
    };
    let invalid_port = || NetworkPolicyPort {
        protocol: Some("ICMP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    match how {
        Corruption::PodSelector => {
            let selector = spec.pod_selector.get_or_insert_with(LabelSelector::default);
            selector
                .match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: "app".to_owned(),
                    operator: "Bogus".to_owned(),
                    values: None,
                });
        }
        Corruption::Peer => {
            for rule in spec.ingress.iter_mut().flatten() {
                rule.from.get_or_insert_with(Vec::new).push(invalid_peer());
            }
            for rule in spec.egress.iter_mut().flatten() {
                rule.to.get_or_insert_with(Vec::new).push(invalid_peer());
            }
        }
        Corruption::Port => {
            for rule in spec.ingress.iter_mut().flatten() {
                rule.ports.get_or_insert_with(Vec::new).push(invalid_port());
            }
            for rule in spec.egress.iter_mut().flatten() {
                rule.ports.get_or_insert_with(Vec::new).push(invalid_port());
            }
        }
        Corruption::OverLimit => {
            let first = spec
                .ingress
                .iter_mut()
                .flatten()
                .next()
                .map(|rule| &mut rule.ports)
                .or_else(|| {
                    spec.egress
                        .iter_mut()
                        .flatten()
                        .next()
                        .map(|rule| &mut rule.ports)
                });
            match first {
                Some(ports) => ports
                    .get_or_insert_with(Vec::new)
                    .extend((0..=limits::MAX_PORTS_PER_RULE).map(|_| invalid_port())),
                None => spec.ingress.get_or_insert_with(Vec::new).extend(
                    (0..=limits::MAX_RULES_PER_POLICY).map(|_| NetworkPolicyIngressRule::default()),
                ),
            }
        }
    }
}

/// Every pod address of `cluster` and a few outsiders, sorted.
pub fn addresses(cluster: &Cluster) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = cluster
        .pods
        .iter()
        .flat_map(|pod| PodView::from_pod(pod).ips)
        .collect();
    all.extend(
        OUTSIDERS
            .iter()
            .filter_map(|text| text.parse::<IpAddr>().ok()),
    );
    all.sort_unstable();
    all.dedup();
    all
}

/// Whether the compiled ruleset passes `connection`.
///
/// # Panics
/// When the interpreter finds the IR malformed (a missing set or chain).
pub fn ruleset_allows(ruleset: &Ruleset, connection: &Connection) -> bool {
    match interpret(ruleset, &oracle::packet_for(connection)) {
        Ok(trace) => trace.accepted,
        Err(error) => panic!("the compiled IR is malformed: {error}\n{}", render(ruleset)),
    }
}

/// Compiles `cluster` for [`NODE`] and checks, for every connection, that
/// the IR interpreter agrees with the oracle. Returns the ruleset.
///
/// # Panics
/// On any disagreement, naming the connection and the evaluator's account.
pub fn check_agreement(cluster: &Cluster, connections: &[Connection]) -> Ruleset {
    let model = resolve(cluster, NODE);
    for error in &model.errors {
        assert!(
            !error.field.is_empty() && !error.problem.is_empty(),
            "a model error must name the field and the problem: {error:?}"
        );
    }
    let ruleset = compile(&model, CompileOptions::default()).ruleset;
    for connection in connections {
        let got = ruleset_allows(&ruleset, connection);
        let want = oracle::node_oracle(cluster, NODE, connection);
        assert_eq!(
            got,
            want,
            "IR and spec disagree on {connection:?}\n{}\n{}",
            nftpol_model::explain(cluster, connection),
            render(&ruleset)
        );
    }
    ruleset
}

/// Checks that `corrupted` allows no connection `original` denies, by the
/// compiled ruleset and by the oracle.
///
/// # Panics
/// When the corrupted cluster allows more.
pub fn check_fails_closed(
    original: &Cluster,
    original_ruleset: &Ruleset,
    corrupted: &Cluster,
    connections: &[Connection],
) {
    let ruleset = check_agreement(corrupted, connections);
    for connection in connections {
        let before = ruleset_allows(original_ruleset, connection);
        let after = ruleset_allows(&ruleset, connection);
        assert!(
            before || !after,
            "corrupting a policy opened {connection:?}\nbefore:\n{}\nafter:\n{}",
            nftpol_model::explain(original, connection),
            nftpol_model::explain(corrupted, connection)
        );
    }
}

/// Whether `policy` isolates (ingress, egress), by the spec's defaulting.
fn isolated_directions(policy: &NetworkPolicy) -> (bool, bool) {
    let spec = policy.spec.clone().unwrap_or_default();
    match spec.policy_types {
        Some(types) if !types.is_empty() => (
            types.iter().any(|kind| kind == "Ingress"),
            types.iter().any(|kind| kind == "Egress"),
        ),
        _ => (true, spec.egress.is_some_and(|rules| !rules.is_empty())),
    }
}

/// Checks that a policy whose own `podSelector` is invalid isolates every
/// counted pod of its namespace in each direction it isolates.
///
/// # Panics
/// When such a pod is not isolated.
pub fn check_isolates_namespace(cluster: &Cluster, policy: &NetworkPolicy) {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
    let same_id = cluster
        .policies
        .iter()
        .filter(|other| {
            other.metadata.namespace == policy.metadata.namespace
                && other.metadata.name == policy.metadata.name
        })
        .count();
    if same_id > 1 {
        // A later duplicate replaces it; nothing to check.
        return;
    }
    let (ingress, egress) = isolated_directions(policy);
    let mut pods: Vec<PodView> = cluster
        .pods
        .iter()
        .map(PodView::from_pod)
        .filter(PodView::counts)
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for pod in pods.iter().filter(|pod| pod.namespace == namespace) {
        for ip in &pod.ips {
            let owner = pods.iter().find(|candidate| candidate.ips.contains(ip));
            if owner.map(PodView::key) != Some(pod.key()) {
                continue;
            }
            let outsider: IpAddr = if ip.is_ipv4() {
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
            };
            let inbound = Connection {
                source: outsider,
                destination: *ip,
                protocol: Protocol::Tcp,
                port: 80,
            };
            let outbound = Connection {
                source: *ip,
                destination: outsider,
                ..inbound
            };
            let not_isolated = |decision: &nftpol_model::Decision| {
                matches!(decision, nftpol_model::Decision::NotIsolated { .. })
            };
            if ingress {
                let (_, decision) = nftpol_model::evaluate(cluster, &inbound);
                assert!(
                    !not_isolated(&decision),
                    "an invalid podSelector left {} open for ingress: {decision:?}",
                    pod.key()
                );
            }
            if egress {
                let (decision, _) = nftpol_model::evaluate(cluster, &outbound);
                assert!(
                    !not_isolated(&decision),
                    "an invalid podSelector left {} open for egress: {decision:?}",
                    pod.key()
                );
            }
        }
    }
}

static CHECKS: AtomicU64 = AtomicU64::new(0);

/// Every `NFTPOL_FUZZ_NFT_EVERY`-th call (default 64; 0 disables), checks
/// that `nft -c -f` accepts `text`, inside a throwaway network namespace.
/// Skipped, with one note on stderr, when `unshare`/`nft` cannot run (the
/// test kit's [`nft::check`]).
///
/// # Panics
/// When nft rejects the text.
pub fn sample_nft_check(text: &str) {
    static SKIP: AtomicU64 = AtomicU64::new(0);
    let every = std::env::var("NFTPOL_FUZZ_NFT_EVERY")
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(64);
    if every == 0 || !CHECKS.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
        return;
    }
    if SKIP.load(Ordering::Relaxed) == 1 {
        return;
    }
    match nft::check(text) {
        Ok(()) => {}
        Err(NftCheck::Unavailable(why)) => {
            SKIP.store(1, Ordering::Relaxed);
            // stderr is the fuzzer's log; the note says why nft checks are off.
            let _ = writeln!(
                std::io::stderr(),
                "nftpol-fuzz: nft -c checks skipped: {why}"
            );
        }
        Err(NftCheck::Rejected(why)) => panic!("nft -c rejects the rendering: {why}\n{text}"),
    }
}
