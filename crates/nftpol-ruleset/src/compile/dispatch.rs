//! Dispatch: each isolated local pod's address → a jump to the group chain
//! of the policies isolating it, one group chain per distinct list.

use std::collections::BTreeSet;

use nftpol_ir::{Action, Element, Rule, Verdict};
use nftpol_model::{Direction, LocalPod, NodeModel, PolicyId, ResolvedPolicy, ResolvedRule};

use super::{address_value, dispatch_sets, family_of, policy, rule, Builder};
use super::{CompileOptions, DenyAction};
use crate::catalogue::{ChainName, Family, RuleRole, SetName};
use crate::log_prefix::{LogPrefix, Subject};
use crate::names;
use crate::verdict_log;

fn policies_of(direction: Direction, pod: &LocalPod) -> &[usize] {
    match direction {
        Direction::Egress => &pod.egress,
        Direction::Ingress => &pod.ingress,
    }
}

pub(super) fn rules_of(
    direction: Direction,
    policy: &ResolvedPolicy,
) -> Option<&Vec<ResolvedRule>> {
    match direction {
        Direction::Egress => policy.egress.as_ref(),
        Direction::Ingress => policy.ingress.as_ref(),
    }
}

/// The address families any counted pod of the cluster uses: sets of pod
/// addresses exist only for these (an IPv4-only cluster holds no empty IPv6
/// pod sets, which keeps the set count, and the kernel's cost of adding sets,
/// down).
pub(super) fn pod_families(model: &NodeModel) -> Vec<Family> {
    let mut families = Vec::new();
    if model.cluster_has_ipv4_pods {
        families.push(Family::V4);
    }
    if model.cluster_has_ipv6_pods {
        families.push(Family::V6);
    }
    families
}

/// Fills the dispatch maps, one group chain per distinct set of isolating
/// policies, and the chains and sets of every policy those groups use.
pub(super) fn add_dispatch(
    builder: &mut Builder,
    model: &NodeModel,
    direction: Direction,
    options: CompileOptions,
) {
    let (mut maps, mut isolated) = dispatch_sets(
        &format!("local pods isolated for {direction}"),
        "group chain",
    );
    let families = pod_families(model);
    let mut used_policies = BTreeSet::new();
    for pod in &model.local_pods {
        let isolating = policies_of(direction, pod);
        if isolating.is_empty() {
            continue;
        }
        let ids: Vec<PolicyId> = isolating
            .iter()
            .map(|index| model.policies[*index].id.clone())
            .collect();
        let group = ChainName::Group {
            direction,
            policies: ids.clone(),
        }
        .name();
        if !builder.has_chain(&group) {
            let limit = verdict_log::strictest(
                isolating
                    .iter()
                    .map(|index| model.policies[*index].log_limit),
            );
            add_group_chain(builder, direction, &families, ids, limit, options);
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
    for (family, map) in maps {
        builder.add_set(&SetName::Dispatch { direction, family }, map);
    }
    for (family, set) in isolated {
        builder.add_set(&SetName::Isolated { direction, family }, set);
    }
    for index in used_policies {
        let resolved = &model.policies[index];
        if let Some(rules) = rules_of(direction, resolved) {
            policy::add_policy(builder, &families, resolved, direction, rules, options);
        }
    }
}

/// A group chain: a jump to each isolating policy's chain (each accepts on a
/// match), then the deny. Only the dispatch of local pods' addresses enters
/// it, so only packets of the cluster's pod `families` reach it: the
/// verdict log records the original destination for those alone (an
/// IPv4-only cluster's group chains hold no IPv6 record rule).
pub(super) fn add_group_chain(
    builder: &mut Builder,
    direction: Direction,
    families: &[Family],
    policies: Vec<PolicyId>,
    limit: nftpol_model::LogLimit,
    options: CompileOptions,
) {
    let listed = policies
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut rules: Vec<(RuleRole, Rule)> = policies
        .iter()
        .map(|id| {
            let target = ChainName::Policy {
                policy: id.clone(),
                direction,
            };
            (
                RuleRole::EnterPolicy(id.clone()),
                rule(vec![], Action::Verdict(Verdict::Jump(target.name())), None),
            )
        })
        .collect();
    let deny = match options.deny {
        DenyAction::Drop => Verdict::Drop,
        DenyAction::Reject => Verdict::Reject,
    };
    if options.verdict_log.logs_denies() {
        let prefix = LogPrefix {
            verdict: options.deny_verdict(),
            direction,
            subject: Subject::Isolated {
                group: verdict_log::short_id(&names::group_log_id(direction.label(), &policies)),
            },
        };
        rules.extend(options.verdict_log.rules(&[], families, limit, prefix));
    }
    rules.push((
        RuleRole::IsolatedDeny,
        Rule {
            matches: vec![],
            counter: true,
            action: Action::Verdict(deny),
            comment: Some(names::comment(format!("{direction} denied: {listed}"))),
        },
    ));
    let comment = names::comment(format!("pods isolated by {listed}"));
    let key = ChainName::Group {
        direction,
        policies,
    };
    builder.add_chain(key, None, comment, rules);
}
