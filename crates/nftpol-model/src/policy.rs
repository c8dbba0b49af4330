//! A NetworkPolicy validated and normalised: defaulting applied, selectors
//! parsed, `ipBlock`s turned into address sets, ports checked.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::addresses::AddressSet;
use crate::error::ModelError;
use crate::limits::{self, Violation};
use crate::log_limit::LogLimit;
use crate::selector::Selector;
use crate::vocabulary::Direction;
use crate::vocabulary::Protocol;

/// A policy's identity: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which pods of its namespace a policy selects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Targets {
    Matching(Selector),
    /// The selector was invalid: isolate the whole namespace (fail closed).
    WholeNamespace,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub(crate) id: PolicyId,
    pub(crate) targets: Targets,
    /// `None` when the policy does not isolate ingress.
    pub(crate) ingress: Option<Vec<Rule>>,
    /// `None` when the policy does not isolate egress.
    pub(crate) egress: Option<Vec<Rule>>,
    /// The rate of its verdict logs, from its annotations.
    pub(crate) log_limit: LogLimit,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// `None`: every peer.
    pub(crate) peers: Option<Vec<Peer>>,
    /// `None`: every port and protocol.
    pub(crate) ports: Option<Vec<PortSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum NamespaceScope {
    /// The policy's own namespace.
    Own(String),
    Matching(Selector),
}

impl fmt::Display for NamespaceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceScope::Own(namespace) => write!(f, "ns:{namespace}"),
            NamespaceScope::Matching(selector) => write!(f, "ns-selector:{selector}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Peer {
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    Block(AddressSet),
    /// Allows nothing.
    Invalid,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortSpec {
    Range {
        protocol: Protocol,
        first: u16,
        last: u16,
    },
    Named {
        protocol: Protocol,
        name: String,
    },
    /// Allows nothing.
    Invalid,
}

struct Context<'a> {
    id: &'a PolicyId,
    errors: &'a mut Vec<ModelError>,
}

impl Context<'_> {
    fn error(&mut self, field: String, problem: impl Into<String>) {
        self.errors.push(ModelError {
            kind: "NetworkPolicy",
            object: self.id.to_string(),
            field,
            problem: problem.into(),
        });
    }
}

impl Policy {
    /// Normalises `policy`, appending an error for each invalid part.
    fn parse(policy: &NetworkPolicy, errors: &mut Vec<ModelError>) -> Self {
        let id = PolicyId {
            namespace: policy
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: policy.metadata.name.clone().unwrap_or_default(),
        };
        let mut context = Context { id: &id, errors };
        let spec = policy.spec.clone().unwrap_or_default();
        let (targets, allows_nothing) = parse_targets(&mut context, &spec);
        let types = spec.policy_types.unwrap_or_default();
        for (index, kind) in types.iter().enumerate() {
            if kind != "Ingress" && kind != "Egress" {
                context.error(
                    format!("spec.policyTypes[{index}]"),
                    format!("unknown policy type {kind:?}"),
                );
            }
        }
        // "If this field is not specified, it will default based on the existence
        // of ingress or egress rules": Ingress always, Egress when rules exist.
        let (isolates_ingress, isolates_egress) = if types.is_empty() {
            (
                true,
                spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()),
            )
        } else {
            (
                types.iter().any(|t| t == "Ingress"),
                types.iter().any(|t| t == "Egress"),
            )
        };
        let ingress = isolates_ingress.then(|| {
            let rules = spec.ingress.iter().flatten().filter(|_| !allows_nothing);
            let sections = rules.map(|rule| (rule.from.as_ref(), rule.ports.as_ref()));
            Rule::parse_all(&mut context, Direction::Ingress, sections)
        });
        let egress = isolates_egress.then(|| {
            let rules = spec.egress.iter().flatten().filter(|_| !allows_nothing);
            let sections = rules.map(|rule| (rule.to.as_ref(), rule.ports.as_ref()));
            Rule::parse_all(&mut context, Direction::Egress, sections)
        });
        let log_limit =
            LogLimit::from_annotations(policy.metadata.annotations.as_ref(), &id, errors);
        Self {
            id,
            targets,
            ingress,
            egress,
            log_limit,
        }
    }
}

/// Reports limit and identity violations and parses the policy's own
/// `podSelector`; returns the targets and whether the policy must allow
/// nothing.
///
/// Fail closed: a policy over a limit, with a name no API server would
/// accept, or whose own podSelector is invalid still isolates (its whole
/// namespace when the selector is unusable) but allows nothing. Granting its
/// rules to pods it may not select could open traffic another policy denies.
fn parse_targets(context: &mut Context<'_>, spec: &NetworkPolicySpec) -> (Targets, bool) {
    let mut allows_nothing = false;
    let oversized = limits::check(spec);
    for violation in [limits::check_identity(context.id), oversized.clone()]
        .into_iter()
        .flatten()
    {
        context.error(
            violation.field,
            format!(
                "{}; the policy isolates its pods and allows nothing",
                violation.problem
            ),
        );
        allows_nothing = true;
    }
    if oversized.as_ref().is_some_and(Violation::is_pod_selector) {
        return (Targets::WholeNamespace, true);
    }
    let default = LabelSelector::default();
    match Selector::parse(spec.pod_selector.as_ref().unwrap_or(&default)) {
        Ok(selector) => (Targets::Matching(selector), allows_nothing),
        Err(problem) => {
            context.error(
                "spec.podSelector".to_owned(),
                format!("{problem}; isolating the whole namespace, allowing nothing"),
            );
            (Targets::WholeNamespace, true)
        }
    }
}

/// A NetworkPolicy reduced to what enforcement reads: parsed once, as it
/// arrives, with the errors parsing found. An API object keeps every label
/// selector as a `BTreeMap` of over half a kilobyte even for one label;
/// parsed, a policy costs a fraction of its object (the agent's store of
/// 10,000 policies: 22 MB as objects).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyView {
    pub(crate) policy: Policy,
    pub(crate) errors: Vec<ModelError>,
    /// `metadata.uid`, which an Event about the policy names.
    pub uid: Option<String>,
    /// `metadata.generation`: Events are reported once per generation.
    pub generation: Option<i64>,
}

impl PolicyView {
    /// Parses `policy`; its invalid parts become [`Self::errors`].
    pub fn from_policy(policy: &NetworkPolicy) -> Self {
        let mut errors = Vec::new();
        let parsed = Policy::parse(policy, &mut errors);
        Self {
            policy: parsed,
            errors,
            uid: policy.metadata.uid.clone(),
            generation: policy.metadata.generation,
        }
    }

    /// `namespace/name`.
    pub fn id(&self) -> &PolicyId {
        &self.policy.id
    }

    /// What parsing found invalid (each part allows nothing).
    pub fn errors(&self) -> &[ModelError] {
        &self.errors
    }
}

/// The parsed policies of `views`, sorted by id, their errors appended to
/// `errors`. A later view with the same `namespace/name` replaces an
/// earlier one, as `kubectl apply` would; the API server never holds two,
/// so a duplicate is reported.
pub(crate) fn parse_all<'a>(
    views: impl IntoIterator<Item = &'a PolicyView>,
    errors: &mut Vec<ModelError>,
) -> Vec<&'a Policy> {
    let mut by_id: BTreeMap<&PolicyId, &Policy> = BTreeMap::new();
    for view in views {
        errors.extend(view.errors.iter().cloned());
        let id = view.id();
        if by_id.insert(id, &view.policy).is_some() {
            errors.push(ModelError {
                kind: "NetworkPolicy",
                object: id.to_string(),
                field: "metadata.name".to_owned(),
                problem: "duplicate object; the later one replaces the earlier".to_owned(),
            });
        }
    }
    by_id.into_values().collect()
}

impl Rule {
    /// Parses a direction's rules, given each rule's peers and ports.
    fn parse_all<'r>(
        context: &mut Context<'_>,
        direction: Direction,
        rules: impl Iterator<
            Item = (
                Option<&'r Vec<NetworkPolicyPeer>>,
                Option<&'r Vec<NetworkPolicyPort>>,
            ),
        >,
    ) -> Vec<Self> {
        rules
            .enumerate()
            .map(|(index, (peers, ports))| Rule::parse(context, direction, index, peers, ports))
            .collect()
    }

    fn parse(
        context: &mut Context<'_>,
        direction: Direction,
        index: usize,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        ports: Option<&Vec<NetworkPolicyPort>>,
    ) -> Self {
        let at = format!("spec.{}[{index}]", direction.label());
        let peers = peers.filter(|list| !list.is_empty()).map(|list| {
            list.iter()
                .enumerate()
                .map(|(peer_index, peer)| {
                    parse_peer(
                        context,
                        &format!("{at}.{}[{peer_index}]", direction.peers_field()),
                        peer,
                    )
                })
                .collect()
        });
        let ports = ports.filter(|list| !list.is_empty()).map(|list| {
            list.iter()
                .enumerate()
                .map(|(port_index, port)| {
                    parse_port(context, &format!("{at}.ports[{port_index}]"), port)
                })
                .collect()
        });
        Self { peers, ports }
    }
}

fn parse_selector(
    context: &mut Context<'_>,
    field: String,
    selector: &LabelSelector,
) -> Option<Selector> {
    Selector::parse(selector)
        .map_err(|problem| context.error(field, problem))
        .ok()
}

fn parse_peer(context: &mut Context<'_>, at: &str, peer: &NetworkPolicyPeer) -> Peer {
    match (&peer.ip_block, &peer.namespace_selector, &peer.pod_selector) {
        (Some(block), None, None) => parse_block(context, &format!("{at}.ipBlock"), block),
        (None, None, None) => {
            context.error(
                at.to_owned(),
                "a peer needs podSelector, namespaceSelector or ipBlock",
            );
            Peer::Invalid
        }
        (Some(_), _, _) => {
            context.error(
                at.to_owned(),
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            );
            Peer::Invalid
        }
        (None, namespaces, pods) => {
            let namespaces = match namespaces {
                None => Some(NamespaceScope::Own(context.id.namespace.clone())),
                Some(selector) => {
                    parse_selector(context, format!("{at}.namespaceSelector"), selector)
                        .map(NamespaceScope::Matching)
                }
            };
            let pods = parse_selector(
                context,
                format!("{at}.podSelector"),
                &pods.clone().unwrap_or_default(),
            );
            match (namespaces, pods) {
                (Some(namespaces), Some(pods)) => Peer::Pods { namespaces, pods },
                _ => Peer::Invalid,
            }
        }
    }
}

fn parse_block(context: &mut Context<'_>, at: &str, block: &IPBlock) -> Peer {
    let Ok(cidr) = block.cidr.trim().parse::<IpNet>() else {
        context.error(
            format!("{at}.cidr"),
            format!("{:?} is not a CIDR", block.cidr),
        );
        return Peer::Invalid;
    };
    let mut addresses = AddressSet::from_net(cidr);
    for (index, except) in block.except.iter().flatten().enumerate() {
        let field = format!("{at}.except[{index}]");
        match except.trim().parse::<IpNet>() {
            Ok(net) if cidr.contains(&net) => addresses.subtract(&AddressSet::from_net(net)),
            Ok(net) => {
                context.error(field, format!("{net} is not inside cidr {cidr}"));
                return Peer::Invalid;
            }
            Err(_) => {
                context.error(field, format!("{except:?} is not a CIDR"));
                return Peer::Invalid;
            }
        }
    }
    Peer::Block(addresses)
}

fn parse_port(context: &mut Context<'_>, at: &str, port: &NetworkPolicyPort) -> PortSpec {
    let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
        context.error(
            format!("{at}.protocol"),
            format!(
                "unknown protocol {:?} (TCP, UDP or SCTP)",
                port.protocol.as_deref().unwrap_or_default()
            ),
        );
        return PortSpec::Invalid;
    };
    match (&port.port, port.end_port) {
        (None, None) => PortSpec::Range {
            protocol,
            first: 0,
            last: u16::MAX,
        },
        (None, Some(_)) => {
            context.error(format!("{at}.endPort"), "endPort needs a numeric port");
            PortSpec::Invalid
        }
        (Some(IntOrString::String(name)), None) => PortSpec::Named {
            protocol,
            name: name.clone(),
        },
        (Some(IntOrString::String(_)), Some(_)) => {
            context.error(
                format!("{at}.endPort"),
                "endPort cannot be used with a named port",
            );
            PortSpec::Invalid
        }
        (Some(IntOrString::Int(number)), end) => {
            let Some(first) = u16::try_from(*number).ok().filter(|first| *first > 0) else {
                context.error(
                    format!("{at}.port"),
                    format!("{number} is not a port (1-65535)"),
                );
                return PortSpec::Invalid;
            };
            let last = match end.map(u16::try_from) {
                None => first,
                Some(Ok(last)) if last >= first => last,
                Some(_) => {
                    context.error(
                        format!("{at}.endPort"),
                        format!(
                            "{} must be a port not below port {first}",
                            end.unwrap_or_default()
                        ),
                    );
                    return PortSpec::Invalid;
                }
            };
            PortSpec::Range {
                protocol,
                first,
                last,
            }
        }
    }
}

/// Labels of each namespace, with the implicit `kubernetes.io/metadata.name`.
pub(crate) fn namespace_labels<'a>(
    namespaces: impl IntoIterator<Item = &'a k8s_openapi::api::core::v1::Namespace>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    namespaces
        .into_iter()
        .filter_map(|namespace| {
            let name = namespace.metadata.name.clone()?;
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels.insert("kubernetes.io/metadata.name".to_owned(), name.clone());
            Some((name, labels))
        })
        .collect()
}

/// The identity of a selector peer: equal peers share one pod-address set.
pub(crate) fn peer_identity(namespaces: &NamespaceScope, pods: &Selector) -> String {
    format!("{namespaces} pods:{pods}")
}

/// The labels of namespace `name`; a namespace not (yet) seen still carries
/// its implicit name label.
pub(crate) fn labels_of(
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
) -> BTreeMap<String, String> {
    namespaces
        .get(name)
        .cloned()
        .unwrap_or_else(|| [("kubernetes.io/metadata.name".to_owned(), name.to_owned())].into())
}

impl Peer {
    /// Whether a pod with `pod_labels` in namespace `namespace` matches this
    /// (selector) peer.
    pub(crate) fn selects_pod(
        &self,
        namespace: &str,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> bool {
        match self {
            Peer::Pods { namespaces, pods } => {
                let namespace_matches = match namespaces {
                    NamespaceScope::Own(own) => own == namespace,
                    NamespaceScope::Matching(selector) => selector.matches(namespace_labels),
                };
                namespace_matches && pods.matches(pod_labels)
            }
            Peer::Block(_) | Peer::Invalid => false,
        }
    }
}

impl Targets {
    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Targets::Matching(selector) => selector.matches(labels),
            Targets::WholeNamespace => true,
        }
    }
}
