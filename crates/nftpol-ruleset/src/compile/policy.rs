//! Each policy's chain of allow rules in one direction, and the peer sets
//! its rules look up.

use std::collections::BTreeSet;

use nftpol_ir::{Element, Field, Match, Rule};
use nftpol_model::{Direction, Peers, Ports, ResolvedPeer, ResolvedPolicy, ResolvedRule};

use super::{
    accept, address_elements, address_type, address_value, family_of, local_field, lookup,
    peer_field, ports, set, Builder, CompileOptions,
};
use crate::catalogue::{ChainName, Family, RuleRole, SetName};
use crate::log_prefix::{self, LogPrefix, Subject};
use crate::names;
use crate::verdict_log;

/// The chain of one policy in one direction: its rules' allow rules, each
/// accepting on match and falling through otherwise.
pub(super) fn add_policy(
    builder: &mut Builder,
    pod_families: &[Family],
    policy: &ResolvedPolicy,
    direction: Direction,
    rules: &[ResolvedRule],
    options: CompileOptions,
) {
    let id = &policy.id;
    let log_id = verdict_log::short_id(&names::policy_log_id(id, direction.label()));
    let mut chain_rules: Vec<(RuleRole, Rule)> = Vec::new();
    for (index, resolved) in rules.iter().enumerate() {
        let role = RuleRole::Allow { rule: index };
        // In `all` mode each accept rule comes after its verdict log.
        let allow =
            |chain_rules: &mut Vec<(RuleRole, Rule)>, matches: Vec<Match>, comment: &str| {
                if options.verdict_log.logs_allows() {
                    let prefix = LogPrefix {
                        verdict: log_prefix::Verdict::Accept,
                        direction,
                        subject: Subject::PolicyRule {
                            policy: log_id,
                            // At most limits::MAX_RULES (128) rules per policy.
                            rule: u16::try_from(index).unwrap_or(u16::MAX),
                        },
                    };
                    chain_rules.extend(options.verdict_log.rules(
                        &matches,
                        pod_families,
                        policy.log_limit,
                        prefix,
                    ));
                }
                chain_rules.push((role.clone(), accept(matches, comment)));
            };
        let comment = format!("{id} {direction}[{index}]");
        let named_set = |family| SetName::NamedPorts {
            policy: id.clone(),
            direction,
            rule: index,
            family,
        };
        for matches in rule_alternatives(
            builder,
            pod_families,
            direction,
            resolved,
            named_set,
            &comment,
        ) {
            allow(&mut chain_rules, matches, &comment);
        }
    }
    let key = ChainName::Policy {
        policy: id.clone(),
        direction,
    };
    let comment = names::comment(format!("{id} {direction} rules"));
    builder.add_chain(key, None, comment, chain_rules);
}

/// The match lists of the nft rules one policy rule becomes: one per peer
/// condition and port alternative (a ports set, a named-port set per
/// family). A connection matches the policy rule when it matches one of
/// them; none means the rule matches nothing.
pub(super) fn rule_alternatives(
    builder: &mut Builder,
    pod_families: &[Family],
    direction: Direction,
    resolved: &ResolvedRule,
    named_set: impl Fn(Family) -> SetName,
    comment: &str,
) -> Vec<Vec<Match>> {
    let peers = peer_conditions(builder, pod_families, direction, &resolved.peers);
    let Ports::List {
        ranges,
        named,
        has_named,
    } = &resolved.ports
    else {
        return peers.into_iter().map(|peer| peer.matches).collect();
    };
    let ports = (!ranges.is_empty()).then(|| ports::add_ports_set(builder, ranges));
    let named_sets: Vec<(Family, String)> = if *has_named {
        pod_families
            .iter()
            .map(|&family| {
                let key = named_set(family);
                ports::add_named_set(builder, &key, family, named, comment);
                (family, key.name())
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut alternatives = Vec::new();
    for peer in &peers {
        if let Some(ports) = &ports {
            let mut matches = peer.matches.clone();
            matches.push(lookup(vec![Field::L4Proto, Field::TransportDport], ports));
            alternatives.push(matches);
        }
        for (family, name) in named_sets
            .iter()
            .filter(|(family, _)| peer.family.is_none_or(|only| only == *family))
        {
            let mut matches = peer.matches.clone();
            matches.push(lookup(
                vec![
                    local_field(Direction::Ingress, *family),
                    Field::L4Proto,
                    Field::TransportDport,
                ],
                name,
            ));
            alternatives.push(matches);
        }
    }
    alternatives
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
    builder: &mut Builder,
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
        for family in Family::ALL {
            let name = match peer {
                // Created even while empty, for every family the cluster's
                // pods use: pods may join, and pod churn must only ever change
                // elements (the first pod of a new family is a structural change).
                ResolvedPeer::Pods { .. } if !pod_families.contains(&family) => continue,
                ResolvedPeer::Pods {
                    identity,
                    addresses,
                } => {
                    let key = SetName::PodPeers {
                        identity: identity.clone(),
                        family,
                    };
                    let name = key.name();
                    if !builder.has_set(&name) {
                        let mut pods = set(
                            vec![address_type(family)],
                            false,
                            format!("pods of {identity}"),
                        );
                        pods.elements = addresses
                            .iter()
                            .filter(|address| family_of(**address) == family)
                            .map(|address| Element::key(vec![address_value(*address)]))
                            .collect();
                        builder.add_set(&key, pods);
                    }
                    builder.use_set(&name);
                    name
                }
                ResolvedPeer::Block(block) => {
                    let elements = address_elements(block, family);
                    if elements.is_empty() {
                        continue;
                    }
                    let key = SetName::IpBlock {
                        identity: format!("{elements:?}"),
                        family,
                    };
                    let name = key.name();
                    if !builder.has_set(&name) {
                        let mut addresses = set(
                            vec![address_type(family)],
                            true,
                            "ipBlock minus except".to_owned(),
                        );
                        addresses.elements = elements;
                        builder.add_set(&key, addresses);
                    }
                    builder.use_set(&name);
                    name
                }
            };
            if seen.insert(name.clone()) {
                conditions.push(PeerCondition {
                    family: Some(family),
                    matches: vec![lookup(vec![peer_field(direction, family)], &name)],
                });
            }
        }
    }
    conditions
}
