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
//!   ip saddr != @local-addresses-v4 accept       no local pod: nothing below could match
//!   ip saddr . ip daddr @self-pairs-v4 accept    a pod reaching itself
//!   ip saddr != @local-pod-ips-v4 drop           unknown local pod (in the pod CIDRs)
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
//! Traffic from a pod to its own node ends in `input`, which NetworkPolicy
//! never judges (an egress base chain there exists only for the
//! ClusterNetworkPolicy tiers, see [`cluster`]); traffic from the node to
//! its pods leaves through `output`, where `fib saddr type local` accepts
//! it: both directions between a pod and its node always pass NetworkPolicy.
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
//! The rooms, one module per role:
//! - [`base`]: the base chains and the static sets they test (self pairs,
//!   known local pods, every local address);
//! - [`dispatch`]: the dispatch maps and one group chain per distinct list of
//!   isolating policies;
//! - [`policy`]: each policy's chain of allow rules and its peer sets;
//! - [`ports`]: port sets and named-port sets;
//! - [`remote`]: remote pods' changes as element-only diffs;
//! - [`policy_delta`]: one NetworkPolicy's change as a diff of the objects
//!   it touches (both versions compiled alone), and several merged into
//!   one batch;
//! - [`cluster`]: the ClusterNetworkPolicy Admin tier before the dispatch
//!   map, the Baseline tier after it (reached only by pods no
//!   NetworkPolicy isolates in that direction);
//! - [`crate::rejudge`]: with re-judging, the bypass accepts only flows
//!   judged under the current policy generation, the judging rules key on
//!   the conntrack tuple and every accept stamps the generation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nftpol_ir::{
    Action, BaseChain, Chain, Element, Field, KeyType, Match, Rule, Ruleset, Set, Value, Verdict,
};
use nftpol_model::{Direction, NodeModel};

use crate::catalogue::{ChainName, ChainOrigin, Family, Provenance, RuleRole, SetName};
use crate::log_prefix;
use crate::names;
use crate::rejudge::{self, Rejudge};
use crate::verdict_log::{self, VerdictLogOptions};

mod base;
mod cluster;
mod dispatch;
mod policy;
mod policy_delta;
mod ports;
mod remote;

pub use policy_delta::{policy_delta, CommittedState, PolicyBatch, PolicyDelta};
pub use remote::pod_delta;

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
    /// Re-judging of established flows (`None`: the conntrack bypass
    /// accepts every established flow).
    pub rejudge: Option<Rejudge>,
    /// Which verdicts log to NFLOG, and to which group.
    pub verdict_log: VerdictLogOptions,
}

impl CompileOptions {
    /// The verdict the prefix of a deny path's log names.
    fn deny_verdict(self) -> log_prefix::Verdict {
        match self.deny {
            DenyAction::Drop => log_prefix::Verdict::Drop,
            DenyAction::Reject => log_prefix::Verdict::Reject,
        }
    }
}

/// A compiled ruleset and where each of its objects came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// The content of table `inet nftpol`.
    pub ruleset: Ruleset,
    /// The catalogue key of every chain and the role of each rule, the kind
    /// of every set.
    pub provenance: Provenance,
    /// How many times the policies' (and ClusterNetworkPolicies') rules
    /// asked for each shared set (peer, `ipBlock`, ports, named-port sets):
    /// a set goes when its last user does (see [`policy_delta`]). Some exist
    /// unreferenced by any rule (a rule whose ports are all invalid still
    /// creates its peers' sets), so rule references cannot stand in.
    pub set_users: BTreeMap<String, usize>,
}

/// Compiles `model` into the IR of table `inet nftpol`, with its provenance.
pub fn compile(model: &NodeModel, options: CompileOptions) -> Compiled {
    let mut builder = Builder::default();
    base::add_pod_sets(&mut builder, model, options);
    let families = dispatch::pod_families(model);
    if options.verdict_log.logs_denies() {
        for family in Family::ALL {
            builder.add_set(
                &SetName::DnatOrigins(family),
                verdict_log::origin_map(family),
            );
        }
    }
    for direction in [Direction::Egress, Direction::Ingress] {
        let tiers = cluster::add_tiers(&mut builder, model, direction, &families, options);
        base::add_base_chains(&mut builder, direction, options, &tiers);
        dispatch::add_dispatch(&mut builder, model, direction, options);
    }
    if let Some(settings) = options.rejudge {
        rejudge::install(&mut builder.compiled, settings);
    }
    builder.compiled
}

/// The ruleset being built, and its provenance kept in step: every object
/// enters through [`Builder::add_set`] or [`Builder::add_chain`] under its
/// catalogue key.
#[derive(Default)]
struct Builder {
    compiled: Compiled,
}

impl Builder {
    fn has_set(&self, name: &str) -> bool {
        self.compiled.ruleset.sets.contains_key(name)
    }

    fn has_chain(&self, name: &str) -> bool {
        self.compiled.ruleset.chains.contains_key(name)
    }

    /// Counts one more user of the shared set `name` (see
    /// [`Compiled::set_users`]).
    fn use_set(&mut self, name: &str) {
        *self.compiled.set_users.entry(name.to_owned()).or_default() += 1;
    }

    /// Adds `set` under `key`, whose name it takes.
    fn add_set(&mut self, key: &SetName, mut set: Set) {
        set.name = key.name();
        self.compiled
            .provenance
            .sets
            .insert(set.name.clone(), key.kind());
        self.compiled.ruleset.sets.insert(set.name.clone(), set);
    }

    /// Adds the chain `key` with `rules`, each with its role.
    fn add_chain(
        &mut self,
        key: ChainName,
        base: Option<BaseChain>,
        comment: String,
        rules: Vec<(RuleRole, Rule)>,
    ) {
        let name = key.name();
        let (roles, rules): (Vec<RuleRole>, Vec<Rule>) = rules.into_iter().unzip();
        self.compiled.provenance.chains.insert(
            name.clone(),
            ChainOrigin {
                chain: key,
                rules: roles,
            },
        );
        self.compiled.ruleset.chains.insert(
            name.clone(),
            Chain {
                name,
                base,
                comment: Some(comment),
                rules,
            },
        );
    }
}

/// The field naming the local pod: the source for egress, the destination
/// for ingress.
fn local_field(direction: Direction, family: Family) -> Field {
    match (direction, family) {
        (Direction::Egress, Family::V4) => Field::Ipv4Saddr,
        (Direction::Egress, Family::V6) => Field::Ipv6Saddr,
        (Direction::Ingress, Family::V4) => Field::Ipv4Daddr,
        (Direction::Ingress, Family::V6) => Field::Ipv6Daddr,
    }
}

/// The field naming the peer.
fn peer_field(direction: Direction, family: Family) -> Field {
    match direction {
        Direction::Egress => local_field(Direction::Ingress, family),
        Direction::Ingress => local_field(Direction::Egress, family),
    }
}

fn priority(direction: Direction) -> i32 {
    match direction {
        Direction::Egress => EGRESS_PRIORITY,
        Direction::Ingress => INGRESS_PRIORITY,
    }
}

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

fn lookup(key: Vec<Field>, set: &str) -> Match {
    Match::Lookup {
        key: key.into(),
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

/// A set without elements; [`Builder::add_set`] gives it its name.
fn set(key: Vec<KeyType>, interval: bool, comment: String) -> Set {
    Set {
        name: String::new(),
        key,
        interval,
        is_verdict_map: false,
        dynamic: None,
        comment: Some(names::comment(comment)),
        elements: BTreeSet::new(),
    }
}

/// One empty dispatch verdict map (local pod address → jump) and one empty
/// set of its keys (for the mid-commit drop) per family; `pods` says which
/// pods, `target` what a pod's address jumps to.
fn dispatch_sets(pods: &str, target: &str) -> (BTreeMap<Family, Set>, BTreeMap<Family, Set>) {
    let maps = Family::ALL
        .into_iter()
        .map(|family| {
            let mut map = set(
                vec![address_type(family)],
                false,
                format!("{pods}: address → jump to their {target}"),
            );
            map.is_verdict_map = true;
            (family, map)
        })
        .collect();
    let keys = Family::ALL
        .into_iter()
        .map(|family| {
            let comment = format!("{pods}: the keys of the dispatch map");
            (family, set(vec![address_type(family)], false, comment))
        })
        .collect();
    (maps, keys)
}

/// The ranges of `addresses` of one family, as interval set elements.
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
