//! A ClusterNetworkPolicy validated as the CRD's schema and CEL rules would,
//! and normalised into what evaluation and resolution read.
//!
//! Fail closed, following the spec's rule for unknown peers ("for Accept
//! rules … matching no traffic; for Deny and Pass rules … a 'Deny all'
//! rule") wherever the spec is silent:
//! - an invalid rule (action, peer, protocol, over a bound) becomes, if it
//!   accepts, a rule that matches nothing, else a rule that denies all
//!   traffic of its direction (`Pass` included: passing on what nftpol
//!   cannot read would skip the rest of the tier's denials);
//! - an object whose `tier`, `priority` or `subject` nftpol cannot read, or
//!   over the schema's bounds, applies to every pod, in the Admin tier at
//!   priority 0, with every rule failing closed as above: nftpol cannot tell
//!   whom it protects, so it protects everyone it could;
//! - a peer kind nftpol does not enforce (`domainNames`) or does not know is
//!   the spec's unknown peer, reported once per object.

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::api::{self, ClusterNetworkPolicy};
use crate::addresses::AddressSet;
use crate::error::ModelError;
use crate::selector::Selector;
use crate::vocabulary::{Direction, Protocol};

/// Most rules per direction, peers per rule, protocols per rule and
/// networks per peer the CRD accepts.
pub const MAX_ITEMS: usize = 25;
/// Longest rule name the CRD accepts.
pub const MAX_RULE_NAME_LEN: usize = 100;
/// Highest priority the CRD accepts (0 is the first).
pub const MAX_PRIORITY: u16 = 1000;

/// Where a ClusterNetworkPolicy sits among the tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Tier {
    /// Before NetworkPolicy: final for the direction it decides.
    Admin,
    /// After NetworkPolicy, for pods no NetworkPolicy isolates.
    Baseline,
}

impl Tier {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Action {
    /// Allowed in this direction; no later rule of any tier is read.
    Accept,
    /// Denied; no later rule of any tier is read.
    Deny,
    /// Skip the rest of this tier.
    Pass,
}

impl Action {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated ClusterNetworkPolicy.
#[derive(Debug, Clone)]
pub(crate) struct ClusterPolicy {
    pub(crate) name: String,
    pub(crate) tier: Tier,
    pub(crate) priority: u16,
    pub(crate) subject: Subject,
    pub(crate) ingress: Vec<ClusterRule>,
    pub(crate) egress: Vec<ClusterRule>,
}

/// The pods a policy applies to (never host-network pods).
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    /// The subject could not be read: every pod (fail closed).
    Everyone,
}

#[derive(Debug, Clone)]
pub(crate) struct ClusterRule {
    /// Position in its direction's list.
    pub(crate) index: usize,
    pub(crate) name: Option<String>,
    pub(crate) action: Action,
    pub(crate) traffic: Traffic,
}

/// What a rule matches.
#[derive(Debug, Clone)]
pub(crate) enum Traffic {
    /// Every connection of the direction (a failed-closed Deny).
    All,
    /// Connections to or from one of `peers` (none: nothing) on one of
    /// `protocols` (`None`: any protocol and port; empty: nothing).
    Matching {
        peers: Vec<ClusterPeer>,
        protocols: Option<Vec<ClusterPort>>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum ClusterPeer {
    /// Non-host-network pods of matching namespaces and labels.
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    /// Any address in the blocks, pods included.
    Networks(AddressSet),
    /// The `status.addresses` of matching Nodes.
    Nodes(Selector),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClusterPort {
    Range {
        protocol: Protocol,
        first: u16,
        last: u16,
    },
    /// A containerPort name of the destination pod, any protocol it declares.
    Named(String),
}

struct Context<'a> {
    object: String,
    errors: &'a mut Vec<ModelError>,
}

impl Context<'_> {
    fn error(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(ModelError {
            kind: "ClusterNetworkPolicy",
            object: self.object.clone(),
            field: field.into(),
            problem: problem.into(),
        });
    }
}

/// One direction's rules in the shape both rule types share.
struct RawRule<'a> {
    name: Option<&'a str>,
    action: Option<&'a str>,
    peers: Option<&'a [api::Peer]>,
    protocols: Option<&'a [api::ProtocolMatch]>,
}

impl<'a> RawRule<'a> {
    /// The ingress and egress rules of `spec`.
    fn of(spec: &'a api::ClusterNetworkPolicySpec) -> (Vec<Self>, Vec<Self>) {
        let ingress = spec
            .ingress
            .iter()
            .flatten()
            .map(|rule| RawRule {
                name: rule.name.as_deref(),
                action: rule.action.as_deref(),
                peers: rule.from.as_deref(),
                protocols: rule.protocols.as_deref(),
            })
            .collect();
        let egress = spec
            .egress
            .iter()
            .flatten()
            .map(|rule| RawRule {
                name: rule.name.as_deref(),
                action: rule.action.as_deref(),
                peers: rule.to.as_deref(),
                protocols: rule.protocols.as_deref(),
            })
            .collect();
        (ingress, egress)
    }
}

impl ClusterPolicy {
    /// Validates `object`, appending an error for each invalid part.
    pub(crate) fn parse(object: &ClusterNetworkPolicy, errors: &mut Vec<ModelError>) -> Self {
        let name = object.name().to_owned();
        let mut context = Context {
            object: format!("cnp/{name}"),
            errors,
        };
        if name.is_empty() {
            context.error("metadata.name", "is empty");
        }
        let spec = &object.spec;
        let tier = parse_tier(&mut context, spec.tier.as_deref());
        let priority = parse_priority(&mut context, spec.priority);
        let subject = parse_subject(&mut context, spec.subject.as_ref());
        let (ingress, egress) = RawRule::of(spec);
        let mut within_bounds = true;
        for (direction, rules) in [(Direction::Ingress, &ingress), (Direction::Egress, &egress)] {
            if rules.len() > MAX_ITEMS {
                context.error(
                    format!("spec.{}", direction.label()),
                    format!(
                        "{} rules exceed the limit of {MAX_ITEMS}; the policy fails closed",
                        rules.len()
                    ),
                );
                within_bounds = false;
            }
        }
        let readable = tier.is_some() && priority.is_some() && subject.is_some() && within_bounds;
        let mut unknown_peers = 0;
        let mut rules = |direction: Direction, raw: &[RawRule<'_>]| -> Vec<ClusterRule> {
            raw.iter()
                .enumerate()
                .map(|(index, rule)| {
                    let at = format!("spec.{}[{index}]", direction.label());
                    let parsed = parse_rule(
                        &mut context,
                        &at,
                        direction,
                        index,
                        rule,
                        &mut unknown_peers,
                    );
                    if readable {
                        parsed
                    } else {
                        parsed.failed_closed()
                    }
                })
                .collect()
        };
        let ingress = rules(Direction::Ingress, &ingress);
        let egress = rules(Direction::Egress, &egress);
        if unknown_peers > 0 {
            context.error(
                "spec",
                format!(
                    "{unknown_peers} peer(s) of a kind nftpol does not enforce (domainNames, or a \
                     field this version does not know): in Accept rules they match nothing, \
                     in Deny and Pass rules they deny all traffic"
                ),
            );
        }
        ClusterPolicy {
            name,
            tier: tier.unwrap_or(Tier::Admin),
            priority: if readable { priority.unwrap_or(0) } else { 0 },
            subject: if readable {
                subject.unwrap_or(Subject::Everyone)
            } else {
                Subject::Everyone
            },
            ingress,
            egress,
        }
    }

    /// The rules of `direction`, in precedence order.
    pub(crate) fn rules(&self, direction: Direction) -> &[ClusterRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The order of a tier: priority, then name (the spec leaves equal
    /// priorities undefined; by name is deterministic and is reported).
    pub(crate) fn order_key(&self) -> (Tier, u16, &str) {
        (self.tier, self.priority, &self.name)
    }
}

impl ClusterRule {
    /// The rule as it fails closed: an Accept matches nothing, a Deny or
    /// Pass denies everything.
    fn failed_closed(self) -> Self {
        match self.action {
            Action::Accept => ClusterRule {
                traffic: Traffic::Matching {
                    peers: Vec::new(),
                    protocols: None,
                },
                ..self
            },
            Action::Deny | Action::Pass => ClusterRule {
                action: Action::Deny,
                traffic: Traffic::All,
                ..self
            },
        }
    }
}

fn parse_selector(
    context: &mut Context<'_>,
    at: &str,
    selector: Option<&LabelSelector>,
) -> Option<Selector> {
    let empty = LabelSelector::default();
    match Selector::parse(selector.unwrap_or(&empty)) {
        Ok(selector) => Some(selector),
        Err(problem) => {
            context.error(at, problem);
            None
        }
    }
}

fn parse_namespaced_pod(
    context: &mut Context<'_>,
    at: &str,
    pods: &api::NamespacedPod,
) -> Option<(Selector, Selector)> {
    let namespaces = parse_selector(
        context,
        &format!("{at}.namespaceSelector"),
        pods.namespace_selector.as_ref(),
    );
    if pods.pod_selector.is_none() {
        context.error(format!("{at}.podSelector"), "is required");
        return None;
    }
    let selected = parse_selector(
        context,
        &format!("{at}.podSelector"),
        pods.pod_selector.as_ref(),
    );
    Some((namespaces?, selected?))
}

fn parse_tier(context: &mut Context<'_>, tier: Option<&str>) -> Option<Tier> {
    match tier {
        Some("Admin") => Some(Tier::Admin),
        Some("Baseline") => Some(Tier::Baseline),
        Some(other) => {
            context.error(
                "spec.tier",
                format!("{other:?} is not Admin or Baseline; the policy fails closed"),
            );
            None
        }
        None => {
            context.error("spec.tier", "is required; the policy fails closed");
            None
        }
    }
}

fn parse_priority(context: &mut Context<'_>, priority: Option<i64>) -> Option<u16> {
    let Some(value) = priority else {
        context.error("spec.priority", "is required; the policy fails closed");
        return None;
    };
    if let Ok(value @ 0..=MAX_PRIORITY) = u16::try_from(value) {
        return Some(value);
    }
    context.error(
        "spec.priority",
        format!("{value} is outside 0–{MAX_PRIORITY}; the policy fails closed"),
    );
    None
}

fn parse_subject(context: &mut Context<'_>, subject: Option<&api::Subject>) -> Option<Subject> {
    let Some(subject) = subject else {
        context.error("spec.subject", "is required; the policy fails closed");
        return None;
    };
    match (&subject.namespaces, &subject.pods) {
        (Some(namespaces), None) => Some(Subject::Pods {
            namespaces: parse_selector(context, "spec.subject.namespaces", Some(namespaces))?,
            pods: Selector::default(),
        }),
        (None, Some(pods)) => {
            let (namespaces, pods) = parse_namespaced_pod(context, "spec.subject.pods", pods)?;
            Some(Subject::Pods { namespaces, pods })
        }
        _ => {
            context.error(
                "spec.subject",
                "needs exactly one of namespaces and pods; the policy fails closed",
            );
            None
        }
    }
}

fn parse_rule(
    context: &mut Context<'_>,
    at: &str,
    direction: Direction,
    index: usize,
    rule: &RawRule<'_>,
    unknown_peers: &mut usize,
) -> ClusterRule {
    let name = rule.name.map(str::to_owned);
    if let Some(name) = &name {
        if name.chars().count() > MAX_RULE_NAME_LEN {
            context.error(
                format!("{at}.name"),
                format!("is longer than {MAX_RULE_NAME_LEN} characters"),
            );
        }
    }
    let action = match rule.action {
        Some("Accept") => Some(Action::Accept),
        Some("Deny") => Some(Action::Deny),
        Some("Pass") => Some(Action::Pass),
        Some(other) => {
            context.error(
                format!("{at}.action"),
                format!("{other:?} is not Accept, Deny or Pass; the rule denies all traffic"),
            );
            None
        }
        None => {
            context.error(
                format!("{at}.action"),
                "is required; the rule denies all traffic",
            );
            None
        }
    };
    let Some(action) = action else {
        return ClusterRule {
            index,
            name,
            action: Action::Deny,
            traffic: Traffic::All,
        };
    };
    let mut valid = true;
    let peers_field = format!("{at}.{}", direction.peers_field());
    let peers = rule.peers.unwrap_or_default();
    if peers.is_empty() || peers.len() > MAX_ITEMS {
        context.error(
            &peers_field,
            format!("needs 1–{MAX_ITEMS} peers, has {}", peers.len()),
        );
        valid = false;
    }
    let mut parsed_peers = Vec::new();
    let mut unknown = false;
    for (position, peer) in peers.iter().enumerate() {
        match parse_peer(
            context,
            &format!("{peers_field}[{position}]"),
            direction,
            peer,
        ) {
            PeerParse::Peer(peer) => parsed_peers.push(peer),
            PeerParse::Unknown => unknown = true,
            PeerParse::Invalid => valid = false,
        }
    }
    if unknown {
        *unknown_peers += 1;
    }
    let takes_named_ports = peers
        .iter()
        .all(|peer| peer.networks.is_none() && peer.nodes.is_none() && peer.domain_names.is_none());
    let protocols = rule.protocols.map(|entries| {
        let (ports, all_valid) = parse_protocols(context, at, entries, takes_named_ports);
        valid &= all_valid;
        ports
    });
    let parsed = ClusterRule {
        index,
        name,
        action,
        traffic: Traffic::Matching {
            peers: parsed_peers,
            protocols,
        },
    };
    // An unknown peer is the spec's own fail-closed case: an Accept simply
    // loses that peer, a Deny or Pass denies everything.
    if !valid || (unknown && action != Action::Accept) {
        parsed.failed_closed()
    } else {
        parsed
    }
}

/// The entries of a rule's `protocols`, and whether all of them were valid.
fn parse_protocols(
    context: &mut Context<'_>,
    at: &str,
    entries: &[api::ProtocolMatch],
    takes_named_ports: bool,
) -> (Vec<ClusterPort>, bool) {
    let mut valid = true;
    if entries.is_empty() || entries.len() > MAX_ITEMS {
        context.error(
            format!("{at}.protocols"),
            format!("needs 1–{MAX_ITEMS} entries, has {}", entries.len()),
        );
        valid = false;
    }
    let mut ports = Vec::new();
    for (position, entry) in entries.iter().enumerate() {
        let field = format!("{at}.protocols[{position}]");
        match parse_protocol(context, &field, entry) {
            Some(ClusterPort::Named(_)) if !takes_named_ports => {
                context.error(
                    field,
                    "destinationNamedPort cannot be used with networks, nodes or domainNames \
                     peers (they have no named ports)",
                );
                valid = false;
            }
            Some(port) => ports.push(port),
            None => valid = false,
        }
    }
    (ports, valid)
}

enum PeerParse {
    Peer(ClusterPeer),
    /// A kind nftpol does not enforce, or no field it knows.
    Unknown,
    Invalid,
}

fn parse_peer(
    context: &mut Context<'_>,
    at: &str,
    direction: Direction,
    peer: &api::Peer,
) -> PeerParse {
    let set = usize::from(peer.namespaces.is_some())
        + usize::from(peer.pods.is_some())
        + usize::from(peer.nodes.is_some())
        + usize::from(peer.networks.is_some())
        + usize::from(peer.domain_names.is_some());
    if set > 1 {
        context.error(at, "needs exactly one field, has several");
        return PeerParse::Invalid;
    }
    let egress_only = peer.nodes.is_some() || peer.networks.is_some();
    if direction == Direction::Ingress && (egress_only || peer.domain_names.is_some()) {
        // The CRD's ingress peer has no such field: the API server would
        // have pruned it, leaving the spec's unknown peer.
        return PeerParse::Unknown;
    }
    if let Some(namespaces) = &peer.namespaces {
        return match parse_selector(context, &format!("{at}.namespaces"), Some(namespaces)) {
            Some(namespaces) => PeerParse::Peer(ClusterPeer::Pods {
                namespaces,
                pods: Selector::default(),
            }),
            None => PeerParse::Invalid,
        };
    }
    if let Some(pods) = &peer.pods {
        return match parse_namespaced_pod(context, &format!("{at}.pods"), pods) {
            Some((namespaces, pods)) => PeerParse::Peer(ClusterPeer::Pods { namespaces, pods }),
            None => PeerParse::Invalid,
        };
    }
    if let Some(nodes) = &peer.nodes {
        return match parse_selector(context, &format!("{at}.nodes"), Some(nodes)) {
            Some(nodes) => PeerParse::Peer(ClusterPeer::Nodes(nodes)),
            None => PeerParse::Invalid,
        };
    }
    if let Some(networks) = &peer.networks {
        if networks.is_empty() || networks.len() > MAX_ITEMS {
            context.error(
                format!("{at}.networks"),
                format!("needs 1–{MAX_ITEMS} CIDRs, has {}", networks.len()),
            );
            return PeerParse::Invalid;
        }
        let mut blocks = AddressSet::default();
        for (position, cidr) in networks.iter().enumerate() {
            let Ok(net) = cidr.trim().parse::<IpNet>() else {
                context.error(
                    format!("{at}.networks[{position}]"),
                    format!("{cidr:?} is not a CIDR"),
                );
                return PeerParse::Invalid;
            };
            blocks.union(&AddressSet::from_net(net.trunc()));
        }
        return PeerParse::Peer(ClusterPeer::Networks(blocks));
    }
    PeerParse::Unknown
}

fn parse_protocol(
    context: &mut Context<'_>,
    at: &str,
    entry: &api::ProtocolMatch,
) -> Option<ClusterPort> {
    let mut chosen = Vec::new();
    if let Some(port) = &entry.tcp {
        chosen.push((Protocol::Tcp, port));
    }
    if let Some(port) = &entry.udp {
        chosen.push((Protocol::Udp, port));
    }
    if let Some(port) = &entry.sctp {
        chosen.push((Protocol::Sctp, port));
    }
    let named = entry.destination_named_port.as_deref();
    match (chosen.as_slice(), named) {
        ([(protocol, port)], None) => parse_port(
            context,
            &format!("{at}.{}", protocol.as_str().to_lowercase()),
            *protocol,
            port,
        ),
        ([], Some(name)) if !name.is_empty() => Some(ClusterPort::Named(name.to_owned())),
        ([], Some(_)) => {
            context.error(format!("{at}.destinationNamedPort"), "is empty");
            None
        }
        _ => {
            context.error(
                at,
                "needs exactly one of tcp, udp, sctp and destinationNamedPort",
            );
            None
        }
    }
}

fn port_number(context: &mut Context<'_>, at: &str, value: Option<i64>) -> Option<u16> {
    match value.map(u16::try_from) {
        Some(Ok(port)) if port >= 1 => Some(port),
        Some(_) => {
            context.error(at, format!("{} is outside 1–65535", value.unwrap_or(0)));
            None
        }
        None => {
            context.error(at, "is required");
            None
        }
    }
}

fn parse_port(
    context: &mut Context<'_>,
    at: &str,
    protocol: Protocol,
    port: &api::PortMatch,
) -> Option<ClusterPort> {
    let at = format!("{at}.destinationPort");
    let Some(port) = &port.destination_port else {
        context.error(at, "is required");
        return None;
    };
    match (port.number, &port.range) {
        (Some(number), None) => {
            let number = port_number(context, &format!("{at}.number"), Some(number))?;
            Some(ClusterPort::Range {
                protocol,
                first: number,
                last: number,
            })
        }
        (None, Some(range)) => {
            let first = port_number(context, &format!("{at}.range.start"), range.start);
            let last = port_number(context, &format!("{at}.range.end"), range.end);
            let (first, last) = (first?, last?);
            if first >= last {
                context.error(
                    format!("{at}.range"),
                    format!("start {first} must be less than end {last}"),
                );
                return None;
            }
            Some(ClusterPort::Range {
                protocol,
                first,
                last,
            })
        }
        _ => {
            context.error(at, "needs exactly one of number and range");
            None
        }
    }
}

/// Policies of one tier that share a priority: the spec leaves their order
/// undefined, nftpol orders them by name and says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityTie {
    /// The tier.
    pub tier: Tier,
    /// The shared priority.
    pub priority: u16,
    /// The policy ordered first (by name).
    pub first: String,
    /// The policy ordered after it.
    pub second: String,
}

impl fmt::Display for PriorityTie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tier: cnp/{} and cnp/{} share priority {}; cnp/{} is evaluated first (by name)",
            self.tier, self.first, self.second, self.priority, self.first
        )
    }
}

/// Sorts `policies` into evaluation order and lists each pair of neighbours
/// that share tier and priority.
pub(crate) fn order(policies: &mut [ClusterPolicy]) -> Vec<PriorityTie> {
    policies.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    policies
        .windows(2)
        .filter(|pair| pair[0].tier == pair[1].tier && pair[0].priority == pair[1].priority)
        .map(|pair| PriorityTie {
            tier: pair[0].tier,
            priority: pair[0].priority,
            first: pair[0].name.clone(),
            second: pair[1].name.clone(),
        })
        .collect()
}

/// Parses and orders `objects`; of two objects with one name, the later
/// replaces the earlier (as `kubectl apply` would).
pub(crate) fn parse_all<'a>(
    objects: impl IntoIterator<Item = &'a ClusterNetworkPolicy>,
    errors: &mut Vec<ModelError>,
) -> (Vec<ClusterPolicy>, Vec<PriorityTie>) {
    let mut by_name = std::collections::BTreeMap::new();
    for object in objects {
        by_name.insert(object.name().to_owned(), object);
    }
    let mut policies: Vec<ClusterPolicy> = by_name
        .into_values()
        .map(|object| ClusterPolicy::parse(object, errors))
        .collect();
    let ties = order(&mut policies);
    (policies, ties)
}
