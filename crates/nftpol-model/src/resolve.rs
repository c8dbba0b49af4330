//! The per-node policy model: which local pods each policy isolates, and
//! each rule's peers and ports resolved against the whole cluster.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Node};

use crate::addresses::AddressSet;
use crate::cluster::{Cluster, Snapshot};
use crate::cluster_policy::api::ClusterNetworkPolicy;
use crate::cluster_policy::{
    self, Action, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, ClusterView, NodeAddresses,
    PriorityTie, Tier, Traffic,
};
use crate::error::ModelError;
use crate::log_limit::LogLimit;
use crate::memberships::{PodMemberships, RemotePods};
use crate::pods::{PodIndex, PodView};
use crate::policy::{
    labels_of, namespace_labels, parse_all, peer_identity, NamespaceScope, Peer, Policy, PolicyId,
    PolicyView, PortSpec, Rule,
};
use crate::policy_change::PolicyContext;
use crate::selector::Selector;
use crate::vocabulary::Protocol;

/// Everything one node enforces.
#[derive(Debug, Clone, Default)]
pub struct NodeModel {
    /// The node's name.
    pub node: String,
    /// The node's `spec.podCIDRs` (addresses there that belong to no known pod
    /// are unknown pods, whose traffic fails closed).
    pub pod_cidrs: Vec<IpNet>,
    /// Counted pods on this node, sorted by `namespace/name`.
    pub local_pods: Vec<LocalPod>,
    /// Policies that isolate at least one local pod, sorted by id.
    pub policies: Vec<ResolvedPolicy>,
    /// ClusterNetworkPolicies whose subject holds at least one local pod, in
    /// evaluation order: tier (Admin first), priority, name.
    pub cluster_policies: Vec<ResolvedClusterPolicy>,
    /// ClusterNetworkPolicies of one tier sharing a priority (ordered by
    /// name, which the spec leaves undefined), cluster-wide.
    pub priority_ties: Vec<PriorityTie>,
    /// Invalid parts of objects, cluster-wide.
    pub errors: Vec<ModelError>,
    /// Whether any counted pod in the cluster has an IPv4 address.
    pub cluster_has_ipv4_pods: bool,
    /// Whether any counted pod in the cluster has an IPv6 address.
    pub cluster_has_ipv6_pods: bool,
    /// What judging remote pods' changes without a full model needs: the
    /// memberships of the resolved policies and the address claims.
    pub remote_pods: RemotePods,
}

/// A counted pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// `namespace/name`.
    pub key: String,
    /// Addresses the pod owns.
    pub ips: Vec<IpAddr>,
    /// Policies isolating its ingress (indices into [`NodeModel::policies`]).
    pub ingress: Vec<usize>,
    /// Policies isolating its egress (indices into [`NodeModel::policies`]).
    pub egress: Vec<usize>,
    /// ClusterNetworkPolicies applying to it with ingress rules, in
    /// evaluation order (indices into [`NodeModel::cluster_policies`]).
    pub cluster_ingress: Vec<usize>,
    /// ClusterNetworkPolicies applying to it with egress rules, in
    /// evaluation order (indices into [`NodeModel::cluster_policies`]).
    pub cluster_egress: Vec<usize>,
}

impl LocalPod {
    /// A pod no policy selects (yet).
    fn unselected(key: String, ips: Vec<IpAddr>) -> Self {
        Self {
            key,
            ips,
            ingress: Vec::new(),
            egress: Vec::new(),
            cluster_ingress: Vec::new(),
            cluster_egress: Vec::new(),
        }
    }
}

/// A ClusterNetworkPolicy with its rules resolved for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedClusterPolicy {
    /// The policy's name (cluster-scoped).
    pub name: String,
    /// Admin or Baseline.
    pub tier: Tier,
    /// Its priority in the tier.
    pub priority: u16,
    /// Ingress rules, in precedence order.
    pub ingress: Vec<ResolvedClusterRule>,
    /// Egress rules, in precedence order.
    pub egress: Vec<ResolvedClusterRule>,
}

impl ResolvedClusterPolicy {
    /// The rules of `direction`.
    pub fn rules(&self, direction: crate::Direction) -> &[ResolvedClusterRule] {
        match direction {
            crate::Direction::Ingress => &self.ingress,
            crate::Direction::Egress => &self.egress,
        }
    }
}

/// One ClusterNetworkPolicy rule, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedClusterRule {
    /// Its index in its direction's list.
    pub index: usize,
    /// Its name, if any.
    pub name: Option<String>,
    /// Accept, Deny or Pass.
    pub action: Action,
    /// What it matches.
    pub traffic: ClusterTraffic,
}

/// What a ClusterNetworkPolicy rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTraffic {
    /// Every connection of its direction (a rule failed closed to Deny).
    All,
    /// Connections whose peer and port match, as a NetworkPolicy rule's do
    /// (`nodes` peers resolve to the selected Nodes' addresses, `networks`
    /// to address blocks).
    Matching(ResolvedRule),
}

/// A policy with its rules resolved; a direction is `None` when the policy
/// does not isolate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPolicy {
    /// `namespace/name`.
    pub id: PolicyId,
    /// Ingress rules, when the policy isolates ingress.
    pub ingress: Option<Vec<ResolvedRule>>,
    /// Egress rules, when the policy isolates egress.
    pub egress: Option<Vec<ResolvedRule>>,
    /// How many of its verdict logs the kernel passes.
    pub log_limit: LogLimit,
}

/// One rule: a connection matches when its peer matches and its port does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Who may connect (ingress: sources; egress: destinations).
    pub peers: Peers,
    /// On which destination ports.
    pub ports: Ports,
}

/// The peers of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// `from`/`to` omitted or empty: every address.
    Any,
    /// These peers, each resolved on its own (invalid ones are left out, so
    /// an empty list allows nothing).
    List(Vec<ResolvedPeer>),
}

/// One peer of a rule, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedPeer {
    /// The counted pods a selector peer matches. Equal selector peers (same
    /// namespace scope, same pod selector) share one `identity`, so the
    /// ruleset can hold their addresses once for every policy using them.
    Pods {
        /// Canonical text of the namespace scope and the pod selector.
        identity: String,
        /// The pods' addresses, sorted and deduplicated; shared by every
        /// rule with an equal selector peer (a copy per rule would cost
        /// rules × matching pods).
        addresses: Arc<[IpAddr]>,
    },
    /// An `ipBlock` minus its `except`s.
    Block(AddressSet),
}

impl ResolvedPeer {
    /// Whether `address` is one of this peer's.
    pub fn contains(&self, address: IpAddr) -> bool {
        match self {
            ResolvedPeer::Pods { addresses, .. } => addresses.binary_search(&address).is_ok(),
            ResolvedPeer::Block(block) => block.contains(address),
        }
    }
}

impl Peers {
    /// Whether `address` matches any peer.
    pub fn contains(&self, address: IpAddr) -> bool {
        match self {
            Peers::Any => true,
            Peers::List(peers) => peers.iter().any(|peer| peer.contains(address)),
        }
    }
}

/// An inclusive destination port range of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// The protocol.
    pub protocol: Protocol,
    /// First port.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

/// A named port resolved on one destination pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPortEndpoint {
    /// The destination pod's address.
    pub address: IpAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// The number the name resolves to on that pod.
    pub port: u16,
}

/// The ports of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// `ports` omitted or empty: every port and protocol.
    Any,
    /// These ports (an empty list allows nothing).
    List {
        /// Numeric ports and ranges.
        ranges: Vec<PortRange>,
        /// Named ports resolved per destination pod address.
        named: Vec<NamedPortEndpoint>,
        /// Whether named ports are listed, so endpoints may join later.
        has_named: bool,
    },
}

/// Resolves the model for node `node`.
pub fn resolve(cluster: &Cluster, node: &str) -> NodeModel {
    let policies: Vec<PolicyView> = cluster
        .policies
        .iter()
        .map(PolicyView::from_policy)
        .collect();
    let objects = Objects {
        namespaces: cluster.namespaces.iter().collect(),
        policies: policies.iter().collect(),
        cluster_policies: cluster.cluster_policies.iter().collect(),
        nodes: cluster.nodes.iter().collect(),
    };
    let index = PodIndex::from_pods(&cluster.pods);
    resolve_indexed(&index, &pods_by_namespace(&index), &objects, node)
}

/// Resolves the model for node `node` from a snapshot of pod views.
pub fn resolve_snapshot(snapshot: &Snapshot, node: &str) -> NodeModel {
    let index = PodIndex::new(snapshot.pods.iter().map(Arc::clone));
    resolve_indexed(
        &index,
        &pods_by_namespace(&index),
        &objects_of(snapshot),
        node,
    )
}

/// [`resolve_snapshot`], and the pods indexed for the policy path (the
/// index the model was resolved with, kept rather than built again at the
/// first policy event).
pub fn resolve_snapshot_with_context(
    snapshot: &Snapshot,
    node: &str,
) -> (NodeModel, PolicyContext) {
    let index = PodIndex::new(snapshot.pods.iter().map(Arc::clone));
    let by_namespace = pods_by_namespace(&index);
    let objects = objects_of(snapshot);
    let model = resolve_indexed(&index, &by_namespace, &objects, node);
    let namespaces = namespace_labels(objects.namespaces.iter().copied());
    let context = PolicyContext::from_parts(node, index, namespaces, by_namespace);
    (model, context)
}

/// The objects of `snapshot` other than pods.
fn objects_of(snapshot: &Snapshot) -> Objects<'_> {
    Objects {
        namespaces: snapshot.namespaces.iter().map(AsRef::as_ref).collect(),
        policies: snapshot.policies.iter().map(AsRef::as_ref).collect(),
        cluster_policies: snapshot
            .cluster_policies
            .iter()
            .map(AsRef::as_ref)
            .collect(),
        nodes: snapshot.nodes.iter().map(AsRef::as_ref).collect(),
    }
}

/// The objects other than pods.
struct Objects<'a> {
    namespaces: Vec<&'a Namespace>,
    policies: Vec<&'a PolicyView>,
    cluster_policies: Vec<&'a ClusterNetworkPolicy>,
    nodes: Vec<&'a Node>,
}

fn resolve_indexed(
    index: &PodIndex,
    by_namespace: &PodsByNamespace,
    objects: &Objects<'_>,
    node: &str,
) -> NodeModel {
    let mut errors = Vec::new();
    let namespaces = namespace_labels(objects.namespaces.iter().copied());
    let policies = parse_all(objects.policies.iter().copied(), &mut errors);
    let pod_cidrs = node_pod_cidrs(&objects.nodes, node, &mut errors);

    let locals: Vec<&PodView> = index
        .pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|pod| pod.node_name.as_deref() == Some(node))
        .collect();
    let mut local_pods: Vec<LocalPod> = locals
        .iter()
        .map(|pod| LocalPod::unselected(pod.key(), index.owned_ips(pod).collect()))
        .collect();
    let mut locals_by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (position, pod) in locals.iter().enumerate() {
        locals_by_namespace
            .entry(&*pod.namespace)
            .or_default()
            .push(position);
    }
    let resolver = Resolver::new(index, &namespaces, by_namespace);
    let mut resolved = Vec::new();
    for &policy in &policies {
        let targets: Vec<usize> = locals_by_namespace
            .get(policy.id.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|position| policy.targets.selects(&locals[*position].labels))
            .collect();
        if targets.is_empty() || (policy.ingress.is_none() && policy.egress.is_none()) {
            continue;
        }
        let number = resolved.len();
        for &position in &targets {
            if policy.ingress.is_some() {
                local_pods[position].ingress.push(number);
            }
            if policy.egress.is_some() {
                local_pods[position].egress.push(number);
            }
        }
        let target_pods: Vec<&PodView> = targets.iter().map(|position| locals[*position]).collect();
        resolved.push(resolver.policy(policy, &target_pods));
    }
    let (cluster_parsed, priority_ties) =
        cluster_policy::parse_all(objects.cluster_policies.iter().copied(), &mut errors);
    let (cluster_policies, cluster_used) = resolve_cluster_policies(
        &cluster_parsed,
        objects,
        (index, &namespaces),
        &resolver,
        (&locals, &mut local_pods),
    );
    local_pods.retain(|pod| !pod.ips.is_empty());
    let resolved_ids: BTreeSet<&PolicyId> = resolved.iter().map(|policy| &policy.id).collect();
    let memberships = PodMemberships::new(
        node,
        &pod_cidrs,
        &namespaces,
        policies
            .iter()
            .copied()
            .filter(|policy| resolved_ids.contains(&policy.id)),
    )
    .with_cluster_policies(&cluster_used);
    let remote_pods = RemotePods::new(memberships, index.pods.iter().map(AsRef::as_ref));
    NodeModel {
        remote_pods,
        cluster_has_ipv4_pods: index.any_address(IpAddr::is_ipv4),
        cluster_has_ipv6_pods: index.any_address(IpAddr::is_ipv6),
        node: node.to_owned(),
        pod_cidrs,
        local_pods,
        policies: resolved,
        cluster_policies,
        priority_ties,
        errors,
    }
}

/// The ClusterNetworkPolicies whose subject holds a local pod, resolved,
/// each local pod's lists filled in; and the parsed policies they came from.
fn resolve_cluster_policies<'p>(
    parsed: &'p [ClusterPolicy],
    objects: &Objects<'_>,
    (index, namespaces): (&PodIndex, &BTreeMap<String, BTreeMap<String, String>>),
    resolver: &Resolver<'_>,
    (locals, local_pods): (&[&PodView], &mut [LocalPod]),
) -> (Vec<ResolvedClusterPolicy>, Vec<&'p ClusterPolicy>) {
    let node_addresses = NodeAddresses::new(objects.nodes.iter().copied());
    let view = ClusterView {
        pods: index,
        namespaces,
        nodes: &node_addresses,
    };
    let mut resolved = Vec::new();
    let mut used = Vec::new();
    for policy in parsed {
        let subjects: Vec<usize> = (0..locals.len())
            .filter(|position| view.subject_selects(policy, locals[*position]))
            .collect();
        if subjects.is_empty() || (policy.ingress.is_empty() && policy.egress.is_empty()) {
            continue;
        }
        let number = resolved.len();
        for &position in &subjects {
            if !policy.ingress.is_empty() {
                local_pods[position].cluster_ingress.push(number);
            }
            if !policy.egress.is_empty() {
                local_pods[position].cluster_egress.push(number);
            }
        }
        let subject_pods: Vec<&PodView> =
            subjects.iter().map(|position| locals[*position]).collect();
        let rules = |rules: &[ClusterRule], named_on: NamedOn<'_>| -> Vec<ResolvedClusterRule> {
            rules
                .iter()
                .map(|rule| resolver.cluster_rule(rule, named_on, view.nodes))
                .collect()
        };
        resolved.push(ResolvedClusterPolicy {
            name: policy.name.clone(),
            tier: policy.tier,
            priority: policy.priority,
            ingress: rules(&policy.ingress, NamedOn::Targets(&subject_pods)),
            egress: rules(&policy.egress, NamedOn::Peers),
        });
        used.push(policy);
    }
    (resolved, used)
}

fn node_pod_cidrs(nodes: &[&Node], node: &str, errors: &mut Vec<ModelError>) -> Vec<IpNet> {
    let Some(spec) = nodes
        .iter()
        .find(|candidate| candidate.metadata.name.as_deref() == Some(node))
        .and_then(|found| found.spec.as_ref())
    else {
        return Vec::new();
    };
    let listed = spec
        .pod_cidrs
        .clone()
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| spec.pod_cidr.clone().into_iter().collect());
    listed
        .iter()
        .enumerate()
        .filter_map(|(position, text)| {
            let net = text.parse::<IpNet>().ok();
            if net.is_none() {
                errors.push(ModelError {
                    kind: "Node",
                    object: node.to_owned(),
                    field: format!("spec.podCIDRs[{position}]"),
                    problem: format!("{text:?} is not a CIDR"),
                });
            }
            net.map(|net| net.trunc())
        })
        .collect()
}

/// Where a rule's named ports resolve.
#[derive(Clone, Copy)]
enum NamedOn<'a> {
    /// Ingress: on the selected (destination) pods.
    Targets(&'a [&'a PodView]),
    /// Egress: on the destination peer pods.
    Peers,
}

/// A selector peer: its namespace scope and pod selector.
type PeerKey = (NamespaceScope, Selector);

/// Addresses declaring one named port, with the number each resolves to.
type NamedAddresses = Vec<(IpAddr, u16)>;

/// Counted pods per namespace, with the addresses each owns.
pub(crate) type PodsByNamespace = BTreeMap<String, Vec<Member>>;

/// A counted pod and the addresses it owns: all of its own, unless an
/// address is another pod's too (a conflict the API normally prevents).
/// Kept per pod for as long as the policy path lives, so the common case
/// allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) pod: Arc<PodView>,
    /// The owned addresses when they are not all of the pod's.
    disputed: Option<Box<[IpAddr]>>,
}

impl Member {
    pub(crate) fn new(pod: Arc<PodView>, owned: Vec<IpAddr>) -> Self {
        let disputed = (*owned != *pod.ips).then(|| owned.into_boxed_slice());
        Self { pod, disputed }
    }

    /// The addresses the pod owns.
    pub(crate) fn ips(&self) -> &[IpAddr] {
        self.disputed.as_deref().unwrap_or(&self.pod.ips)
    }
}

/// Indexes `index`'s pods by namespace, with their owned addresses.
pub(crate) fn pods_by_namespace(index: &PodIndex) -> PodsByNamespace {
    let mut by_namespace: PodsByNamespace = BTreeMap::new();
    for pod in &index.pods {
        let member = Member::new(Arc::clone(pod), index.owned_ips(pod).collect());
        // One key allocated per namespace, not per pod.
        match by_namespace.get_mut(&*pod.namespace) {
            Some(members) => members.push(member),
            None => {
                by_namespace.insert(pod.namespace.to_string(), vec![member]);
            }
        }
    }
    by_namespace
}

/// Resolves rules against the whole cluster.
///
/// Peers are looked up per namespace and cached per distinct (namespace
/// scope, pod selector): policies repeat selectors, and a scan of every pod
/// for every peer of every policy would cost policies × pods.
pub(crate) struct Resolver<'a> {
    index: &'a PodIndex,
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    by_namespace: &'a PodsByNamespace,
    peer_cache: RefCell<HashMap<PeerKey, Arc<[IpAddr]>>>,
    /// Per (port name, protocol): every owned address of a pod declaring it, with the number.
    named_cache: RefCell<HashMap<(String, Protocol), Rc<NamedAddresses>>>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(
        index: &'a PodIndex,
        namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
        by_namespace: &'a PodsByNamespace,
    ) -> Self {
        Self {
            index,
            namespaces,
            by_namespace,
            peer_cache: RefCell::default(),
            named_cache: RefCell::default(),
        }
    }

    /// `policy` resolved, isolating `targets` (its selected local pods).
    pub(crate) fn policy(&self, policy: &Policy, targets: &[&PodView]) -> ResolvedPolicy {
        ResolvedPolicy {
            id: policy.id.clone(),
            ingress: policy.ingress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| self.rule(rule, NamedOn::Targets(targets)))
                    .collect()
            }),
            egress: policy.egress.as_ref().map(|rules| {
                rules
                    .iter()
                    .map(|rule| self.rule(rule, NamedOn::Peers))
                    .collect()
            }),
            log_limit: policy.log_limit,
        }
    }

    /// Addresses of the counted pods a selector peer matches.
    fn peer_addresses(&self, namespaces: &NamespaceScope, pods: &Selector) -> Arc<[IpAddr]> {
        let key = (namespaces.clone(), pods.clone());
        if let Some(found) = self.peer_cache.borrow().get(&key) {
            return Arc::clone(found);
        }
        let mut addresses = Vec::new();
        for (namespace, members) in self.by_namespace {
            let namespace_matches = match namespaces {
                NamespaceScope::Own(own) => own == namespace,
                NamespaceScope::Matching(selector) => {
                    selector.matches(&labels_of(self.namespaces, namespace))
                }
            };
            if namespace_matches {
                for member in members {
                    if pods.matches(&member.pod.labels) {
                        addresses.extend_from_slice(member.ips());
                    }
                }
            }
        }
        addresses.sort_unstable();
        addresses.dedup();
        let addresses: Arc<[IpAddr]> = addresses.into();
        self.peer_cache
            .borrow_mut()
            .insert(key, Arc::clone(&addresses));
        addresses
    }

    /// Every owned address of a counted pod that declares `name` for `protocol`.
    fn named_everywhere(&self, name: &str, protocol: Protocol) -> Rc<NamedAddresses> {
        let key = (name.to_owned(), protocol);
        if let Some(found) = self.named_cache.borrow().get(&key) {
            return Rc::clone(found);
        }
        let endpoints: Vec<(IpAddr, u16)> = self
            .by_namespace
            .values()
            .flatten()
            .filter_map(|member| {
                let port = member.pod.named_port(name, protocol)?;
                Some((member.ips(), port))
            })
            .flat_map(|(ips, port)| ips.iter().map(move |ip| (*ip, port)))
            .collect();
        let endpoints = Rc::new(endpoints);
        self.named_cache
            .borrow_mut()
            .insert(key, Rc::clone(&endpoints));
        endpoints
    }

    fn rule(&self, rule: &Rule, named_on: NamedOn<'_>) -> ResolvedRule {
        let peers = match &rule.peers {
            None => Peers::Any,
            Some(list) => Peers::List(
                list.iter()
                    .filter_map(|peer| match peer {
                        Peer::Block(block) => Some(ResolvedPeer::Block(block.clone())),
                        Peer::Pods { namespaces, pods } => Some(ResolvedPeer::Pods {
                            identity: peer_identity(namespaces, pods),
                            addresses: self.peer_addresses(namespaces, pods),
                        }),
                        Peer::Invalid => None,
                    })
                    .collect(),
            ),
        };
        let ports = match &rule.ports {
            None => Ports::Any,
            Some(list) => {
                let mut ranges = Vec::new();
                let mut named = Vec::new();
                for spec in list {
                    match spec {
                        PortSpec::Range {
                            protocol,
                            first,
                            last,
                        } => {
                            ranges.push(PortRange {
                                protocol: *protocol,
                                first: *first,
                                last: *last,
                            });
                        }
                        PortSpec::Named { protocol, name } => {
                            named.extend(self.named_endpoints(named_on, &peers, name, *protocol));
                        }
                        PortSpec::Invalid => {}
                    }
                }
                ranges.sort_unstable();
                ranges.dedup();
                named.sort_unstable();
                named.dedup();
                let has_named = list
                    .iter()
                    .any(|spec| matches!(spec, PortSpec::Named { .. }));
                Ports::List {
                    ranges,
                    named,
                    has_named,
                }
            }
        };
        ResolvedRule { peers, ports }
    }

    fn cluster_rule(
        &self,
        rule: &ClusterRule,
        named_on: NamedOn<'_>,
        nodes: &NodeAddresses,
    ) -> ResolvedClusterRule {
        let traffic = match &rule.traffic {
            Traffic::All => ClusterTraffic::All,
            Traffic::Matching { peers, protocols } => {
                let peers = Peers::List(
                    peers
                        .iter()
                        .map(|peer| match peer {
                            ClusterPeer::Pods { namespaces, pods } => {
                                let scope = NamespaceScope::Matching(namespaces.clone());
                                ResolvedPeer::Pods {
                                    identity: peer_identity(&scope, pods),
                                    addresses: self.peer_addresses(&scope, pods),
                                }
                            }
                            ClusterPeer::Networks(blocks) => ResolvedPeer::Block(blocks.clone()),
                            ClusterPeer::Nodes(selector) => {
                                let mut addresses = AddressSet::default();
                                addresses.extend(nodes.selected_by(selector));
                                ResolvedPeer::Block(addresses)
                            }
                        })
                        .collect(),
                );
                let ports = match protocols {
                    None => Ports::Any,
                    Some(entries) => self.cluster_ports(entries, named_on, &peers),
                };
                ClusterTraffic::Matching(ResolvedRule { peers, ports })
            }
        };
        ResolvedClusterRule {
            index: rule.index,
            name: rule.name.clone(),
            action: rule.action,
            traffic,
        }
    }

    fn cluster_ports(
        &self,
        entries: &[ClusterPort],
        named_on: NamedOn<'_>,
        peers: &Peers,
    ) -> Ports {
        let mut ranges = Vec::new();
        let mut named = Vec::new();
        for entry in entries {
            match entry {
                ClusterPort::Range {
                    protocol,
                    first,
                    last,
                } => ranges.push(PortRange {
                    protocol: *protocol,
                    first: *first,
                    last: *last,
                }),
                // A named port carries no protocol: whatever the
                // destination pod declares the name for.
                ClusterPort::Named(name) => {
                    for protocol in Protocol::ALL {
                        named.extend(self.named_endpoints(named_on, peers, name, protocol));
                    }
                }
            }
        }
        ranges.sort_unstable();
        ranges.dedup();
        named.sort_unstable();
        named.dedup();
        Ports::List {
            ranges,
            named,
            has_named: entries
                .iter()
                .any(|entry| matches!(entry, ClusterPort::Named(_))),
        }
    }

    fn named_endpoints(
        &self,
        named_on: NamedOn<'_>,
        peers: &Peers,
        name: &str,
        protocol: Protocol,
    ) -> Vec<NamedPortEndpoint> {
        let endpoint = |(address, port): (IpAddr, u16)| NamedPortEndpoint {
            address,
            protocol,
            port,
        };
        match named_on {
            NamedOn::Targets(targets) => targets
                .iter()
                .filter_map(|pod| pod.named_port(name, protocol).map(|port| (pod, port)))
                .flat_map(|(pod, port)| self.index.owned_ips(pod).map(move |ip| (ip, port)))
                .map(endpoint)
                .collect(),
            NamedOn::Peers => self
                .named_everywhere(name, protocol)
                .iter()
                .copied()
                .filter(|(ip, _)| peers.contains(*ip))
                .map(endpoint)
                .collect(),
        }
    }
}
