//! The per-node policy model → the ruleset IR.
//!
//! Chain layout (per direction; egress shown, ingress mirrors it on `daddr`):
//!
//! ```text
//! filter-forward-egress / filter-output-egress   (base, priority EGRESS_PRIORITY)
//!   ct state established,related accept          conntrack bypass, always first
//!   ct state invalid drop
//!   icmpv6 type 133-137 accept                   neighbour discovery is never dropped
//!   fib saddr type local accept                  (output only) the node's own traffic
//!   ip saddr . ip daddr @self-pairs-v4 accept    a pod reaching itself
//!   ip saddr @pod-cidrs-v4 ip saddr != @local-pod-ips-v4 drop   unknown local pod
//!   ip saddr vmap @egress-dispatch-v4            local pod → jump to its group chain
//!   ip saddr @egress-isolated-v4 drop            reached only mid-commit (see add_base_chains)
//! egress-group-HASH                               one per distinct set of isolating policies
//!   jump policy-HASH-ns/a/egress …                each policy's allow rules (accept on match)
//!   counter drop                                  isolated and nothing allowed it
//! ```
//!
//! Why two base chains per hook: an `accept` ends only its own base chain,
//! while a `drop` is final. Egress and ingress live in separate base chains so
//! a connection must be accepted by both, and each policy's allow rules can
//! simply `accept`.
//!
//! Why these hooks: DNAT happens in prerouting (forwarded traffic) and output
//! (local traffic) at priority -100 under iptables and nftables kube-proxy,
//! so `forward` and `output` at priority ≥ 0 see the translated backend
//! address. IPVS rewrites in LOCAL_IN and sends the packet through OUTPUT and
//! POSTROUTING, never FORWARD, so the `output` chains police it too.
//! Traffic from a pod to its own node ends in `input`, which nftpol does not
//! filter; traffic from the node to its pods leaves through `output`, where
//! `fib saddr type local` accepts it: both directions between a pod and its
//! node always pass.
//!
//! Per-packet work depends only on the policies selecting the local pod:
//! dispatch is one verdict-map lookup on the pod address. Rule count depends
//! only on policies (and the distinct policy combinations on this node), never
//! on the number of pods: pods are set elements.
//!
//! Sets touched by pod churn are hash sets or single-field interval sets;
//! the concatenated interval (pipapo) `ports-…` sets hold only policy-derived
//! data.
//!
//! Room for the roadmap: a ClusterNetworkPolicy Admin tier slots into each
//! base chain right before the dispatch map (its Pass falls through to the
//! dispatch), and a Baseline tier after it, reached only by pods that no
//! NetworkPolicy isolates.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nftpol_model::{
    LocalPod, Membership, NamedPortEndpoint, NodeModel, Peers, PolicyId, PortRange, Ports,
    ResolvedPeer, ResolvedRule,
};

use crate::names::{self, Family};
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, CtState, Element, Field, Hook, KeyType, Match, Rule,
    Ruleset, Set, Value, Verdict,
};

/// Priority of the egress base chains: after DNAT (-100), at the standard
/// filter priority.
pub const EGRESS_PRIORITY: i32 = 0;
/// Priority of the ingress base chains: after the egress ones, so the source
/// side is judged first and both must accept.
pub const INGRESS_PRIORITY: i32 = 10;

/// What an isolated pod's traffic that no rule allows gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DenyAction {
    /// Silently dropped (the default).
    #[default]
    Drop,
    /// Rejected with ICMP administratively prohibited, so clients fail fast.
    Reject,
}

/// Traffic to or from an address in this node's pod CIDRs that no known pod
/// owns (a pod whose object has not arrived yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownLocalPods {
    /// Dropped: "filtering is effective … from the very first instant".
    #[default]
    Drop,
    /// Passed as if unisolated.
    Allow,
}

/// Compiler settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// The deny verdict.
    pub deny: DenyAction,
    /// Treatment of unknown addresses in the node's pod CIDRs.
    pub unknown_local_pods: UnknownLocalPods,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }

    fn priority(self) -> i32 {
        match self {
            Direction::Egress => EGRESS_PRIORITY,
            Direction::Ingress => INGRESS_PRIORITY,
        }
    }

    /// The field naming the local pod: the source for egress, the
    /// destination for ingress.
    fn local_field(self, family: Family) -> Field {
        match (self, family) {
            (Direction::Egress, Family::V4) => Field::Ipv4Saddr,
            (Direction::Egress, Family::V6) => Field::Ipv6Saddr,
            (Direction::Ingress, Family::V4) => Field::Ipv4Daddr,
            (Direction::Ingress, Family::V6) => Field::Ipv6Daddr,
        }
    }

    /// The field naming the peer.
    fn peer_field(self, family: Family) -> Field {
        match self {
            Direction::Egress => Direction::Ingress.local_field(family),
            Direction::Ingress => Direction::Egress.local_field(family),
        }
    }

    fn policies_of(self, pod: &LocalPod) -> &[usize] {
        match self {
            Direction::Egress => &pod.egress,
            Direction::Ingress => &pod.ingress,
        }
    }

    fn rules_of(self, policy: &nftpol_model::ResolvedPolicy) -> Option<&Vec<ResolvedRule>> {
        match self {
            Direction::Egress => policy.egress.as_ref(),
            Direction::Ingress => policy.ingress.as_ref(),
        }
    }
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn family_of(address: IpAddr) -> Family {
    match address {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

fn address_type(family: Family) -> KeyType {
    match family {
        Family::V4 => KeyType::Ipv4Addr,
        Family::V6 => KeyType::Ipv6Addr,
    }
}

fn address_value(address: IpAddr) -> Value {
    match address {
        IpAddr::V4(address) => Value::Ipv4(address),
        IpAddr::V6(address) => Value::Ipv6(address),
    }
}

fn daddr(family: Family) -> Field {
    Direction::Ingress.local_field(family)
}

fn lookup(key: Vec<Field>, set: &str) -> Match {
    Match::Lookup {
        key,
        set: set.to_owned(),
        negated: false,
    }
}

fn rule(matches: Vec<Match>, action: Action, comment: Option<String>) -> Rule {
    Rule {
        matches,
        counter: false,
        action,
        comment,
    }
}

fn accept(matches: Vec<Match>, comment: &str) -> Rule {
    Rule {
        matches,
        counter: true,
        action: Action::Verdict(Verdict::Accept),
        comment: Some(names::comment(comment.to_owned())),
    }
}

fn set(name: &str, key: Vec<KeyType>, interval: bool, comment: String) -> Set {
    Set {
        name: name.to_owned(),
        key,
        interval,
        is_verdict_map: false,
        comment: Some(names::comment(comment)),
        elements: BTreeSet::new(),
    }
}

/// Compiles `model` into the IR of table `inet nftpol`.
pub fn compile(model: &NodeModel, options: CompileOptions) -> Ruleset {
    let mut ruleset = Ruleset::default();
    add_pod_sets(&mut ruleset, model, options);
    for direction in [Direction::Egress, Direction::Ingress] {
        add_base_chains(&mut ruleset, direction, options);
        add_dispatch(&mut ruleset, model, direction, options);
    }
    ruleset
}

fn add_pod_sets(ruleset: &mut Ruleset, model: &NodeModel, options: CompileOptions) {
    for family in FAMILIES {
        let local_ips: Vec<IpAddr> = model
            .local_pods
            .iter()
            .flat_map(|pod| pod.ips.iter().copied())
            .filter(|ip| family_of(*ip) == family)
            .collect();
        let mut self_pairs = set(
            &names::static_set("self-pairs", family),
            vec![address_type(family); 2],
            false,
            "each local pod address twice: a pod reaching itself".to_owned(),
        );
        self_pairs.elements = local_ips
            .iter()
            .map(|ip| Element::key(vec![address_value(*ip); 2]))
            .collect();
        insert_set(ruleset, self_pairs);
        if options.unknown_local_pods == UnknownLocalPods::Drop {
            let mut local = set(
                &names::static_set("local-pod-ips", family),
                vec![address_type(family)],
                false,
                "addresses of the known pods on this node".to_owned(),
            );
            local.elements = local_ips
                .iter()
                .map(|ip| Element::key(vec![address_value(*ip)]))
                .collect();
            insert_set(ruleset, local);
            let mut cidrs = nftpol_model::AddressSet::default();
            for net in &model.pod_cidrs {
                cidrs.union(&nftpol_model::AddressSet::from_net(*net));
            }
            let mut pod_cidrs = set(
                &names::static_set("pod-cidrs", family),
                vec![address_type(family)],
                true,
                "this node's pod CIDRs".to_owned(),
            );
            pod_cidrs.elements = address_elements(&cidrs, family);
            insert_set(ruleset, pod_cidrs);
        }
    }
}

fn insert_set(ruleset: &mut Ruleset, set: Set) {
    ruleset.sets.insert(set.name.clone(), set);
}

fn insert_chain(ruleset: &mut Ruleset, chain: Chain) {
    ruleset.chains.insert(chain.name.clone(), chain);
}

fn address_elements(addresses: &nftpol_model::AddressSet, family: Family) -> BTreeSet<Element> {
    match family {
        Family::V4 => addresses
            .v4()
            .map(|range| {
                Element::range(
                    vec![Value::Ipv4(range.first)],
                    vec![Value::Ipv4(range.last)],
                )
            })
            .collect(),
        Family::V6 => addresses
            .v6()
            .map(|range| {
                Element::range(
                    vec![Value::Ipv6(range.first)],
                    vec![Value::Ipv6(range.last)],
                )
            })
            .collect(),
    }
}

fn add_base_chains(ruleset: &mut Ruleset, direction: Direction, options: CompileOptions) {
    for (hook, hook_name) in [(Hook::Forward, "forward"), (Hook::Output, "output")] {
        let mut rules = vec![
            rule(
                vec![Match::CtState(
                    [CtState::Established, CtState::Related].into(),
                )],
                Action::Verdict(Verdict::Accept),
                None,
            ),
            rule(
                vec![Match::CtState([CtState::Invalid].into())],
                Action::Verdict(Verdict::Drop),
                None,
            ),
            rule(
                vec![Match::Icmpv6TypeRange {
                    first: 133,
                    last: 137,
                }],
                Action::Verdict(Verdict::Accept),
                None,
            ),
        ];
        if hook == Hook::Output {
            rules.push(rule(
                vec![Match::SaddrIsLocal],
                Action::Verdict(Verdict::Accept),
                Some("traffic of the node itself".to_owned()),
            ));
        }
        for family in FAMILIES {
            let pair = vec![
                Direction::Egress.local_field(family),
                Direction::Ingress.local_field(family),
            ];
            rules.push(rule(
                vec![lookup(pair, &names::static_set("self-pairs", family))],
                Action::Verdict(Verdict::Accept),
                None,
            ));
        }
        if options.unknown_local_pods == UnknownLocalPods::Drop {
            for family in FAMILIES {
                let local = direction.local_field(family);
                rules.push(Rule {
                    matches: vec![
                        lookup(vec![local], &names::static_set("pod-cidrs", family)),
                        Match::Lookup {
                            key: vec![local],
                            set: names::static_set("local-pod-ips", family),
                            negated: true,
                        },
                    ],
                    counter: true,
                    action: Action::Verdict(Verdict::Drop),
                    comment: Some("unknown pod on this node".to_owned()),
                });
            }
        }
        for family in FAMILIES {
            rules.push(rule(
                vec![],
                Action::VerdictMap {
                    key: vec![direction.local_field(family)],
                    map: dispatch_map(direction, family),
                },
                None,
            ));
        }
        // A group chain always ends in a verdict, so an isolated pod's packet
        // comes back here only while a commit is changing the ruleset: a
        // packet that started this chain in the old generation can look up
        // the dispatch map in the new one and jump to a group chain created
        // by that commit, whose old-generation rules are empty. Without this
        // rule it would fall through to `policy accept` (measured by the
        // restart test: about one packet in 20,000 during rule swaps).
        for family in FAMILIES {
            let local = direction.local_field(family);
            rules.push(rule(
                vec![lookup(vec![local], &isolated_set(direction, family))],
                Action::Verdict(Verdict::Drop),
                Some("isolated pod while the ruleset changes".to_owned()),
            ));
        }
        insert_chain(
            ruleset,
            Chain {
                name: names::base_chain(hook_name, direction.name()),
                base: Some(BaseChain {
                    hook,
                    priority: direction.priority(),
                    policy: ChainPolicy::Accept,
                }),
                comment: Some(format!(
                    "{} policy of local pods, {hook_name} path",
                    direction.name()
                )),
                rules,
            },
        );
    }
}

/// The address families any counted pod of the cluster uses: sets of pod
/// addresses exist only for these (an IPv4-only cluster holds no empty IPv6
/// pod sets, which keeps the set count, and the kernel's cost of adding sets,
/// down).
fn pod_families(model: &NodeModel) -> Vec<Family> {
    let mut families = Vec::new();
    if model.cluster_has_ipv4_pods {
        families.push(Family::V4);
    }
    if model.cluster_has_ipv6_pods {
        families.push(Family::V6);
    }
    families
}

fn isolated_set(direction: Direction, family: Family) -> String {
    names::static_set(&format!("{}-isolated", direction.name()), family)
}

fn dispatch_map(direction: Direction, family: Family) -> String {
    names::static_set(&format!("{}-dispatch", direction.name()), family)
}

/// Fills the dispatch maps, one group chain per distinct set of isolating
/// policies, and the chains and sets of every policy those groups use.
fn add_dispatch(
    ruleset: &mut Ruleset,
    model: &NodeModel,
    direction: Direction,
    options: CompileOptions,
) {
    let mut maps: BTreeMap<Family, Set> = FAMILIES
        .into_iter()
        .map(|family| {
            let mut map = set(
                &dispatch_map(direction, family),
                vec![address_type(family)],
                false,
                format!(
                    "local pods isolated for {}: address → jump to their group chain",
                    direction.name()
                ),
            );
            map.is_verdict_map = true;
            (family, map)
        })
        .collect();
    let mut isolated: BTreeMap<Family, Set> = FAMILIES
        .into_iter()
        .map(|family| {
            let name = isolated_set(direction, family);
            let comment = format!(
                "local pods isolated for {}: the keys of the dispatch map",
                direction.name()
            );
            (
                family,
                set(&name, vec![address_type(family)], false, comment),
            )
        })
        .collect();
    let mut used_policies = BTreeSet::new();
    for pod in &model.local_pods {
        let isolating = direction.policies_of(pod);
        if isolating.is_empty() {
            continue;
        }
        let ids: Vec<&PolicyId> = isolating
            .iter()
            .map(|index| &model.policies[*index].id)
            .collect();
        let group = names::group_chain(direction.name(), &ids);
        if !ruleset.chains.contains_key(&group) {
            insert_chain(ruleset, group_chain(&group, direction, &ids, options));
        }
        used_policies.extend(isolating.iter().copied());
        for ip in &pod.ips {
            if let Some(map) = maps.get_mut(&family_of(*ip)) {
                map.elements.insert(Element::mapping(
                    vec![address_value(*ip)],
                    Verdict::Jump(group.clone()),
                ));
            }
            if let Some(isolated) = isolated.get_mut(&family_of(*ip)) {
                isolated
                    .elements
                    .insert(Element::key(vec![address_value(*ip)]));
            }
        }
    }
    for map in maps.into_values().chain(isolated.into_values()) {
        insert_set(ruleset, map);
    }
    let families = pod_families(model);
    for index in used_policies {
        let policy = &model.policies[index];
        if let Some(rules) = direction.rules_of(policy) {
            add_policy(ruleset, &families, &policy.id, direction, rules);
        }
    }
}

fn group_chain(
    name: &str,
    direction: Direction,
    ids: &[&PolicyId],
    options: CompileOptions,
) -> Chain {
    let listed = ids
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut rules: Vec<Rule> = ids
        .iter()
        .map(|id| {
            rule(
                vec![],
                Action::Verdict(Verdict::Jump(policy_chain(id, direction))),
                None,
            )
        })
        .collect();
    let deny = match options.deny {
        DenyAction::Drop => Verdict::Drop,
        DenyAction::Reject => Verdict::Reject,
    };
    rules.push(Rule {
        matches: vec![],
        counter: true,
        action: Action::Verdict(deny),
        comment: Some(names::comment(format!(
            "{} denied: {listed}",
            direction.name()
        ))),
    });
    Chain {
        name: name.to_owned(),
        base: None,
        comment: Some(names::comment(format!("pods isolated by {listed}"))),
        rules,
    }
}

/// The set of a selector peer's pod addresses of one family.
fn pod_peer_set(identity: &str, family: Family) -> String {
    names::shared_set("pods", identity, Some(family))
}

/// The named-port set of rule `index` of a policy in one direction and family.
fn named_set(id: &PolicyId, direction: Direction, index: usize, family: Family) -> String {
    names::policy_family_set("named", id, &format!("{}{index}", direction.name()), family)
}

/// A named-port set element: destination address, protocol, port.
fn named_element(address: IpAddr, protocol: u8, port: u16) -> Element {
    Element::key(vec![
        address_value(address),
        Value::Proto(protocol),
        Value::Port(port),
    ])
}

/// The set element a remote pod's address adds for one of its memberships
/// (see [`nftpol_model::PodMemberships`]): the same set names and elements
/// [`compile`] gives that address, for sets that exist in its ruleset.
pub fn membership_element(membership: &Membership, address: IpAddr) -> (String, Element) {
    let family = family_of(address);
    match membership {
        Membership::Peer { identity } => (
            pod_peer_set(identity, family),
            Element::key(vec![address_value(address)]),
        ),
        Membership::NamedEgress {
            policy,
            rule,
            protocol,
            port,
        } => (
            named_set(policy, Direction::Egress, *rule, family),
            named_element(address, protocol.number(), *port),
        ),
    }
}

fn policy_chain(id: &PolicyId, direction: Direction) -> String {
    names::policy_object("policy", id, direction.name())
}

/// The chain of one policy in one direction: its rules' allow rules, each
/// accepting on match and falling through otherwise.
fn add_policy(
    ruleset: &mut Ruleset,
    pod_families: &[Family],
    id: &PolicyId,
    direction: Direction,
    rules: &[ResolvedRule],
) {
    let mut chain_rules = Vec::new();
    for (index, resolved) in rules.iter().enumerate() {
        let comment = format!("{id} {}[{index}]", direction.name());
        let peers = peer_conditions(ruleset, pod_families, direction, &resolved.peers);
        let Ports::List {
            ranges,
            named,
            has_named,
        } = &resolved.ports
        else {
            chain_rules.extend(
                peers
                    .iter()
                    .map(|peer| accept(peer.matches.clone(), &comment)),
            );
            continue;
        };
        let ports = (!ranges.is_empty()).then(|| add_ports_set(ruleset, ranges));
        let named_sets: Vec<(Family, String)> = if *has_named {
            pod_families
                .iter()
                .map(|&family| {
                    (
                        family,
                        add_named_set(ruleset, id, direction, index, family, named, &comment),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        for peer in &peers {
            if let Some(ports) = &ports {
                let mut matches = peer.matches.clone();
                matches.push(lookup(vec![Field::L4Proto, Field::TransportDport], ports));
                chain_rules.push(accept(matches, &comment));
            }
            for (family, name) in named_sets
                .iter()
                .filter(|(family, _)| peer.family.is_none_or(|only| only == *family))
            {
                let mut matches = peer.matches.clone();
                matches.push(lookup(
                    vec![daddr(*family), Field::L4Proto, Field::TransportDport],
                    name,
                ));
                chain_rules.push(accept(matches, &comment));
            }
        }
    }
    insert_chain(
        ruleset,
        Chain {
            name: policy_chain(id, direction),
            base: None,
            comment: Some(names::comment(format!("{id} {} rules", direction.name()))),
            rules: chain_rules,
        },
    );
}

/// The ports set of a rule, shared by every rule with the same ports: its
/// content is policy-derived, so it only changes when a policy does.
fn add_ports_set(ruleset: &mut Ruleset, ranges: &[PortRange]) -> String {
    let elements = port_elements(ranges);
    let identity = elements
        .iter()
        .map(|element| format!("{:?}-{:?}", element.start, element.end))
        .collect::<Vec<_>>()
        .join(",");
    let name = names::shared_set("ports", &identity, None);
    if !ruleset.sets.contains_key(&name) {
        let mut ports = set(
            &name,
            vec![KeyType::InetProto, KeyType::InetService],
            true,
            "destination ports of policy rules".to_owned(),
        );
        ports.elements = elements;
        insert_set(ruleset, ports);
    }
    name
}

/// A rule's named ports resolved per destination pod address, one family.
fn add_named_set(
    ruleset: &mut Ruleset,
    id: &PolicyId,
    direction: Direction,
    index: usize,
    family: Family,
    named: &[NamedPortEndpoint],
    comment: &str,
) -> String {
    let name = named_set(id, direction, index, family);
    let mut endpoints = set(
        &name,
        vec![
            address_type(family),
            KeyType::InetProto,
            KeyType::InetService,
        ],
        false,
        format!("{comment}: named ports per destination pod"),
    );
    endpoints.elements = named
        .iter()
        .filter(|endpoint| family_of(endpoint.address) == family)
        .map(|endpoint| named_element(endpoint.address, endpoint.protocol.number(), endpoint.port))
        .collect();
    insert_set(ruleset, endpoints);
    name
}

/// A peer condition: matches to prepend, and the family they restrict to.
struct PeerCondition {
    family: Option<Family>,
    matches: Vec<Match>,
}

/// One condition per peer and family. Selector peers become hash sets shared
/// by every rule with an equal selector (cluster-wide), `ipBlock`s interval
/// sets shared by content: the number of sets grows with distinct selectors
/// and blocks, not with policies, which matters because the kernel's cost of
/// adding sets in one batch grows faster than linearly with their number.
fn peer_conditions(
    ruleset: &mut Ruleset,
    pod_families: &[Family],
    direction: Direction,
    peers: &Peers,
) -> Vec<PeerCondition> {
    let list = match peers {
        Peers::Any => {
            return vec![PeerCondition {
                family: None,
                matches: vec![],
            }]
        }
        Peers::List(list) => list,
    };
    let mut seen = BTreeSet::new();
    let mut conditions = Vec::new();
    for peer in list {
        for family in FAMILIES {
            let name = match peer {
                // Created even while empty, for every family the cluster's
                // pods use: pods may join, and pod churn must only ever change
                // elements (the first pod of a new family is a structural change).
                ResolvedPeer::Pods { .. } if !pod_families.contains(&family) => continue,
                ResolvedPeer::Pods {
                    identity,
                    addresses,
                } => {
                    let name = pod_peer_set(identity, family);
                    if !ruleset.sets.contains_key(&name) {
                        let mut pods = set(
                            &name,
                            vec![address_type(family)],
                            false,
                            format!("pods of {identity}"),
                        );
                        pods.elements = addresses
                            .iter()
                            .filter(|address| family_of(**address) == family)
                            .map(|address| Element::key(vec![address_value(*address)]))
                            .collect();
                        insert_set(ruleset, pods);
                    }
                    name
                }
                ResolvedPeer::Block(block) => {
                    let elements = address_elements(block, family);
                    if elements.is_empty() {
                        continue;
                    }
                    let identity = format!("{elements:?}");
                    let name = names::shared_set("block", &identity, Some(family));
                    if !ruleset.sets.contains_key(&name) {
                        let mut addresses = set(
                            &name,
                            vec![address_type(family)],
                            true,
                            "ipBlock minus except".to_owned(),
                        );
                        addresses.elements = elements;
                        insert_set(ruleset, addresses);
                    }
                    name
                }
            };
            if seen.insert(name.clone()) {
                conditions.push(PeerCondition {
                    family: Some(family),
                    matches: vec![lookup(vec![direction.peer_field(family)], &name)],
                });
            }
        }
    }
    conditions
}

/// Port ranges merged per protocol: pipapo rejects overlapping elements.
fn port_elements(ranges: &[PortRange]) -> BTreeSet<Element> {
    let mut by_protocol: BTreeMap<u8, Vec<(u16, u16)>> = BTreeMap::new();
    for range in ranges {
        by_protocol
            .entry(range.protocol.number())
            .or_default()
            .push((range.first, range.last));
    }
    let mut elements = BTreeSet::new();
    for (protocol, mut list) in by_protocol {
        list.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::new();
        for (first, last) in list {
            match merged.last_mut() {
                Some(previous) if previous.1.checked_add(1).is_none_or(|next| first <= next) => {
                    previous.1 = previous.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        elements.extend(merged.into_iter().map(|(first, last)| {
            Element::range(
                vec![Value::Proto(protocol), Value::Port(first)],
                vec![Value::Proto(protocol), Value::Port(last)],
            )
        }));
    }
    elements
}
