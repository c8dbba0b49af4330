//! The base chains of each direction and the static sets they test.

use std::net::IpAddr;

use ipnet::IpNet;

use nftpol_ir::{Action, BaseChain, ChainPolicy, CtState, Match, Rule, Verdict};
use nftpol_model::{Direction, NodeModel};

use super::cluster::{self, TierRules};
use super::{
    address_elements, address_type, address_value, family_of, local_field, lookup, priority, rule,
    set, Builder, CompileOptions, UnknownLocalPods,
};
use crate::catalogue::{ChainName, Family, RuleRole, SetName, BASE_HOOKS};
use crate::log_prefix::{self, LogPrefix, Subject};
use nftpol_ir::{Element, Hook};

/// The sets of this node's pods: self pairs and, when unknown local pods
/// are dropped, the known addresses and every local address (the pod CIDRs
/// and the known addresses: a CNI may give a pod one outside the CIDRs).
pub(super) fn add_pod_sets(builder: &mut Builder, model: &NodeModel, options: CompileOptions) {
    for family in Family::ALL {
        let local_ips: Vec<IpAddr> = model
            .local_pods
            .iter()
            .flat_map(|pod| pod.ips.iter().copied())
            .filter(|ip| family_of(*ip) == family)
            .collect();
        let mut self_pairs = set(
            vec![address_type(family); 2],
            false,
            "each local pod address twice: a pod reaching itself".to_owned(),
        );
        self_pairs.elements = local_ips
            .iter()
            .map(|ip| Element::key(vec![address_value(*ip); 2]))
            .collect();
        builder.add_set(&SetName::SelfPairs(family), self_pairs);
        if options.unknown_local_pods == UnknownLocalPods::Drop {
            let mut local = set(
                vec![address_type(family)],
                false,
                "addresses of the known pods on this node".to_owned(),
            );
            local.elements = local_ips
                .iter()
                .map(|ip| Element::key(vec![address_value(*ip)]))
                .collect();
            builder.add_set(&SetName::LocalPodIps(family), local);
            let mut addresses = nftpol_model::AddressSet::default();
            let nets = model
                .pod_cidrs
                .iter()
                .copied()
                .chain(local_ips.iter().map(|ip| IpNet::from(*ip)));
            for net in nets {
                addresses.union(&nftpol_model::AddressSet::from_net(net));
            }
            let mut local_addresses = set(
                vec![address_type(family)],
                true,
                "this node's pod CIDRs and its known pods' addresses".to_owned(),
            );
            local_addresses.elements = address_elements(&addresses, family);
            builder.add_set(&SetName::LocalAddresses(family), local_addresses);
        }
    }
}

/// The base chains of `direction`, one per hook, with the tiers' entry
/// rules; and, when an Admin tier exists, the chain its Pass continues in.
pub(super) fn add_base_chains(
    builder: &mut Builder,
    direction: Direction,
    options: CompileOptions,
    tiers: &TierRules,
) {
    let own_node = direction == Direction::Egress && cluster::has_any_tier(tiers);
    if own_node {
        add_own_node_chains(builder, tiers);
    }
    if cluster::has_admin_tier(tiers) {
        let mut rules = Vec::new();
        if own_node {
            rules.push((
                RuleRole::ToOwnNode,
                rule(
                    vec![Match::DaddrIsLocal],
                    Action::Verdict(Verdict::Goto(ChainName::OwnNode { direction }.name())),
                    Some("to this node: NetworkPolicy allows it".to_owned()),
                ),
            ));
        }
        rules.extend(below_admin(direction, options, tiers));
        rules.push((
            RuleRole::NotIsolated,
            rule(vec![], Action::Verdict(Verdict::Accept), None),
        ));
        builder.add_chain(
            ChainName::BelowAdmin { direction },
            None,
            format!("{direction} after an Admin Pass: NetworkPolicy, then Baseline"),
            rules,
        );
    }
    for hook in BASE_HOOKS {
        let mut rules = opening_rules(hook);
        if options.unknown_local_pods == UnknownLocalPods::Drop {
            rules.extend(not_local_rules(direction));
        }
        for family in Family::ALL {
            let pair = vec![
                local_field(Direction::Egress, family),
                local_field(Direction::Ingress, family),
            ];
            rules.push((
                RuleRole::SelfTraffic,
                rule(
                    vec![lookup(pair, &SetName::SelfPairs(family).name())],
                    Action::Verdict(Verdict::Accept),
                    None,
                ),
            ));
        }
        if options.unknown_local_pods == UnknownLocalPods::Drop {
            rules.extend(unknown_pod_rules(direction, options));
        }
        rules.extend(tiers.admin.iter().cloned());
        rules.extend(below_admin(direction, options, tiers));
        let key = ChainName::Base { hook, direction };
        let comment = format!("{direction} policy of local pods, {} path", hook.name());
        builder.add_chain(
            key,
            Some(BaseChain {
                hook,
                priority: priority(direction),
                policy: ChainPolicy::Accept,
            }),
            comment,
            rules,
        );
    }
}

/// A pod's traffic to its own node enters `input`, which NetworkPolicy
/// leaves alone (pod ↔ own node always passes) but ClusterNetworkPolicy
/// egress rules judge (`nodes` and `networks` peers match node addresses):
/// the egress base chain on `input` runs the Admin tier, then
/// `egress-own-node`: isolated pods pass (NetworkPolicy's exemption, final),
/// the others meet the Baseline tier. No unknown-pod drop here: a pod
/// reaching its node before its object arrives (DNS on the node, say)
/// passes as it always did.
fn add_own_node_chains(builder: &mut Builder, tiers: &TierRules) {
    let direction = Direction::Egress;
    let own_node = ChainName::OwnNode { direction };
    let mut rules: Vec<(RuleRole, Rule)> = Family::ALL
        .into_iter()
        .map(|family| {
            (
                RuleRole::OwnNodeExempt,
                rule(
                    vec![lookup(
                        vec![local_field(direction, family)],
                        &SetName::Isolated { direction, family }.name(),
                    )],
                    Action::Verdict(Verdict::Accept),
                    Some("isolated pod to its own node: NetworkPolicy allows it".to_owned()),
                ),
            )
        })
        .collect();
    rules.extend(tiers.baseline.iter().cloned());
    rules.push((
        RuleRole::NotIsolated,
        rule(vec![], Action::Verdict(Verdict::Accept), None),
    ));
    builder.add_chain(
        own_node.clone(),
        None,
        "egress to this node after the Admin tier: NetworkPolicy allows it, Baseline judges the rest"
            .to_owned(),
        rules,
    );
    let mut base = opening_rules(Hook::Input);
    base.extend(tiers.admin.iter().cloned());
    base.push((
        RuleRole::ToOwnNode,
        rule(
            vec![],
            Action::Verdict(Verdict::Goto(own_node.name())),
            None,
        ),
    ));
    builder.add_chain(
        ChainName::Base {
            hook: Hook::Input,
            direction,
        },
        Some(BaseChain {
            hook: Hook::Input,
            priority: priority(direction),
            policy: ChainPolicy::Accept,
        }),
        "egress policy of local pods to this node, input path".to_owned(),
        base,
    );
}

/// What follows the Admin tier: the NetworkPolicy dispatch, its mid-commit
/// drop and the Baseline tier.
fn below_admin(
    direction: Direction,
    options: CompileOptions,
    tiers: &TierRules,
) -> Vec<(RuleRole, Rule)> {
    let mut rules = Vec::new();
    for family in Family::ALL {
        rules.push((
            RuleRole::Dispatch,
            rule(
                vec![],
                Action::VerdictMap {
                    key: vec![local_field(direction, family)],
                    map: SetName::Dispatch { direction, family }.name(),
                },
                None,
            ),
        ));
    }
    // A group chain always ends in a verdict, so an isolated pod's packet
    // comes back here only while a commit is changing the ruleset: a
    // packet that started this chain in the old generation can look up
    // the dispatch map in the new one and jump to a group chain created
    // by that commit, whose old-generation rules are empty. Without this
    // rule it would fall through to `policy accept` (measured by the
    // restart test: about one packet in 20,000 during rule swaps).
    for family in Family::ALL {
        let local = local_field(direction, family);
        rules.push((
            RuleRole::MidCommitDrop,
            rule(
                vec![lookup(
                    vec![local],
                    &SetName::Isolated { direction, family }.name(),
                )],
                Action::Verdict(Verdict::Drop),
                Some("isolated pod while the ruleset changes".to_owned()),
            ),
        ));
    }
    if options.rejudge.is_some() {
        rules.extend(untracked_drops(direction));
    }
    rules.extend(tiers.baseline.iter().cloned());
    rules
}

/// Re-judging keys the rules on the conntrack tuple, which an untracked
/// packet lacks: an isolated pod's untracked packets are dropped by packet
/// address instead (fail closed).
fn untracked_drops(direction: Direction) -> Vec<(RuleRole, Rule)> {
    Family::ALL
        .into_iter()
        .map(|family| {
            let local = local_field(direction, family);
            (
                RuleRole::UntrackedDrop,
                rule(
                    vec![
                        Match::CtState([CtState::Untracked].into()),
                        lookup(vec![local], &SetName::Isolated { direction, family }.name()),
                    ],
                    Action::Verdict(Verdict::Drop),
                    Some("untracked packet of an isolated pod".to_owned()),
                ),
            )
        })
        .collect()
}

/// The accept of what is no local pod, right after the opening rules: no
/// rule below can match an address outside [`SetName::LocalAddresses`]
/// (self pairs, the tiers' and NetworkPolicy's dispatch and their
/// mid-commit drops all key on known local pods, the unknown-pod drop on
/// the pod CIDRs), so the packet ends as it would after all of them, at
/// one lookup instead of a dozen rules. Measured in the dataplane bench
/// (#11): the side of a connection that is no local pod is half of every
/// base chain a new connection crosses. An address of the other family
/// does not match (the key is family-typed), so it goes on to its own.
fn not_local_rules(direction: Direction) -> Vec<(RuleRole, Rule)> {
    Family::ALL
        .into_iter()
        .map(|family| {
            (
                RuleRole::NotLocal,
                rule(
                    vec![Match::Lookup {
                        key: vec![local_field(direction, family)].into(),
                        set: SetName::LocalAddresses(family).name(),
                        negated: true,
                    }],
                    Action::Verdict(Verdict::Accept),
                    None,
                ),
            )
        })
        .collect()
}

/// The drop of unknown local pods' traffic (fail closed at pod start),
/// after its verdict log when deny paths log. Always a drop, whatever
/// `--deny` says. It follows [`not_local_rules`], so an address not among
/// the known pods' is one of the pod CIDRs'.
fn unknown_pod_rules(direction: Direction, options: CompileOptions) -> Vec<(RuleRole, Rule)> {
    let mut rules = Vec::new();
    for family in Family::ALL {
        let local = local_field(direction, family);
        let matches = vec![Match::Lookup {
            key: vec![local].into(),
            set: SetName::LocalPodIps(family).name(),
            negated: true,
        }];
        if options.verdict_log.logs_denies() {
            let prefix = LogPrefix {
                verdict: log_prefix::Verdict::Drop,
                direction,
                subject: Subject::UnknownPod,
            };
            // An unknown pod may have either family.
            rules.extend(options.verdict_log.rules(
                &matches,
                &Family::ALL,
                nftpol_model::LogLimit::default(),
                prefix,
            ));
        }
        rules.push((
            RuleRole::UnknownPodDrop,
            Rule {
                matches,
                counter: true,
                action: Action::Verdict(Verdict::Drop),
                comment: Some("unknown pod on this node".to_owned()),
            },
        ));
    }
    rules
}

/// The rules every base chain starts with, before any pod is looked at:
/// the conntrack bypass, invalid packets, neighbour discovery and (output
/// only) the node's own traffic.
fn opening_rules(hook: Hook) -> Vec<(RuleRole, Rule)> {
    let mut rules = vec![
        (
            RuleRole::ConntrackBypass,
            rule(
                vec![Match::CtState(
                    [CtState::Established, CtState::Related].into(),
                )],
                Action::Verdict(Verdict::Accept),
                None,
            ),
        ),
        (
            RuleRole::InvalidDrop,
            rule(
                vec![Match::CtState([CtState::Invalid].into())],
                Action::Verdict(Verdict::Drop),
                None,
            ),
        ),
        (
            RuleRole::NeighbourDiscovery,
            rule(
                vec![Match::Icmpv6TypeRange {
                    first: 133,
                    last: 137,
                }],
                Action::Verdict(Verdict::Accept),
                None,
            ),
        ),
    ];
    if hook == Hook::Output {
        rules.push((
            RuleRole::NodeTraffic,
            rule(
                vec![Match::SaddrIsLocal],
                Action::Verdict(Verdict::Accept),
                Some("traffic of the node itself".to_owned()),
            ),
        ));
    }
    rules
}
