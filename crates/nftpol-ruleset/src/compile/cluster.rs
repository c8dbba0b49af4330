//! The ClusterNetworkPolicy tiers of each direction.
//!
//! ```text
//! filter-forward-egress (every base chain; ingress mirrors it)
//!   … opening rules, unknown local pods …
//!   ip saddr vmap @egress-admin-dispatch-v4      local pod → jump egress-admin-HASH
//!   ip saddr vmap @egress-dispatch-v4            NetworkPolicy (final when isolated)
//!   ip saddr @egress-isolated-v4 drop
//!   ip saddr vmap @egress-baseline-dispatch-v4   local pod → jump egress-baseline-HASH
//!   (policy accept)                              default: allowed
//!   ip saddr @egress-admin-selected-v4 drop      reached only mid-commit (see below)
//! egress-admin-HASH                              one per distinct ordered list of Admin CNPs
//!   jump cnp-HASH-name/egress …                  in evaluation order (priority, then name)
//!   goto egress-below-admin                      no Admin rule matched
//! cnp-HASH-name/egress                           one nft rule per peer/port alternative of a rule:
//!   ip daddr @pods-… meta l4proto . th dport @ports-… counter accept | drop | goto egress-below-admin
//! egress-below-admin                             where an Admin Pass goes: the rest of the base chain
//!   ip saddr vmap @egress-dispatch-v4 … ip saddr vmap @egress-baseline-dispatch-v4 … accept
//! ```
//!
//! Why a chain per policy and a `goto` for Pass: `Accept` and `Deny` are
//! final verdicts anywhere, but `Pass` must skip every remaining policy of
//! the tier, which a `return` from the policy's chain cannot (it would land
//! in the list chain, before the next policy). So an Admin Pass continues in
//! a copy of what follows the Admin tier in the base chain, and a Baseline
//! Pass, after which only the default remains, accepts. Each policy's rules
//! exist once per direction whatever the number of lists that use it.
//!
//! Why every list chain ends in a verdict (`goto …-below-admin`, or the
//! default `accept` for Baseline) and the `…-selected` drop after each
//! dispatch: a packet that started its base chain in the old generation can
//! look up the dispatch map in the new one and jump to a list chain created
//! by that commit, whose old-generation rules are empty; it comes back to
//! the base chain, which only that can do, and is dropped instead of
//! skipping an Admin Deny (the NetworkPolicy dispatch has the same guard).
//!
//! Per-packet work is the policies selecting the local pod: one map lookup
//! per tier, then their rules. Rule count grows with CNP rules and distinct
//! lists, never with pods (pods are dispatch map and peer set elements).
//! A tier's rules and maps exist only while some local pod has a policy of
//! that tier with rules in that direction, so a cluster without
//! ClusterNetworkPolicies compiles exactly as before.

use std::collections::{BTreeMap, BTreeSet};

use nftpol_ir::{Action, Element, Rule, Set, Verdict};
use nftpol_model::cluster_policy::{self, Tier};
use nftpol_model::{ClusterTraffic, Direction, LocalPod, NodeModel, ResolvedClusterPolicy};

use super::policy::rule_alternatives;
use super::{address_value, dispatch_sets, family_of, local_field, lookup, rule, Builder};
use super::{CompileOptions, DenyAction};
use crate::catalogue::{ChainName, Family, RuleRole, SetName};
use crate::log_prefix::{self, LogPrefix, Subject};
use crate::names;
use crate::verdict_log;

/// The base-chain rules of the two tiers of one direction (empty for a
/// tier no local pod has).
#[derive(Default)]
pub(super) struct TierRules {
    /// Before the NetworkPolicy dispatch.
    pub(super) admin: Vec<(RuleRole, Rule)>,
    /// After the NetworkPolicy dispatch and its mid-commit drop.
    pub(super) baseline: Vec<(RuleRole, Rule)>,
}

fn policies_of(direction: Direction, pod: &LocalPod) -> &[usize] {
    match direction {
        Direction::Egress => &pod.cluster_egress,
        Direction::Ingress => &pod.cluster_ingress,
    }
}

/// Adds both tiers' maps, list chains and policy chains for `direction`,
/// and returns the rules that enter them from a base chain.
pub(super) fn add_tiers(
    builder: &mut Builder,
    model: &NodeModel,
    direction: Direction,
    pod_families: &[Family],
    options: CompileOptions,
) -> TierRules {
    let mut tiers = TierRules::default();
    for tier in [Tier::Admin, Tier::Baseline] {
        let rules = add_tier(builder, model, tier, direction, pod_families, options);
        match tier {
            Tier::Admin => tiers.admin = rules,
            Tier::Baseline => tiers.baseline = rules,
        }
    }
    tiers
}

fn add_tier(
    builder: &mut Builder,
    model: &NodeModel,
    tier: Tier,
    direction: Direction,
    pod_families: &[Family],
    options: CompileOptions,
) -> Vec<(RuleRole, Rule)> {
    let (mut maps, mut selected) = dispatch_sets(
        &format!("local pods {tier} ClusterNetworkPolicies select for {direction}"),
        "list chain",
    );
    let mut used = BTreeSet::new();
    for pod in &model.local_pods {
        let selecting: Vec<usize> = policies_of(direction, pod)
            .iter()
            .copied()
            .filter(|index| model.cluster_policies[*index].tier == tier)
            .collect();
        if selecting.is_empty() {
            continue;
        }
        let names: Vec<String> = selecting
            .iter()
            .map(|index| model.cluster_policies[*index].name.clone())
            .collect();
        let list = ChainName::ClusterList {
            tier,
            direction,
            policies: names.clone(),
        };
        let list_name = list.name();
        if !builder.has_chain(&list_name) {
            add_list_chain(builder, list, &names, tier, direction);
        }
        used.extend(selecting);
        for ip in &pod.ips {
            if let Some(map) = maps.get_mut(&family_of(*ip)) {
                map.elements.insert(Element::mapping(
                    vec![address_value(*ip)],
                    Verdict::Jump(list_name.clone()),
                ));
            }
            if let Some(keys) = selected.get_mut(&family_of(*ip)) {
                keys.elements.insert(Element::key(vec![address_value(*ip)]));
            }
        }
    }
    if used.is_empty() {
        return Vec::new();
    }
    let base_rules = add_dispatch_sets(builder, tier, direction, maps, selected);
    for index in used {
        add_policy_chain(
            builder,
            &model.cluster_policies[index],
            direction,
            pod_families,
            options,
        );
    }
    base_rules
}

/// Adds a tier's dispatch maps and their key sets; returns the base-chain
/// rules that look them up: the dispatch of each family, then each
/// family's mid-commit drop.
fn add_dispatch_sets(
    builder: &mut Builder,
    tier: Tier,
    direction: Direction,
    maps: BTreeMap<Family, Set>,
    selected: BTreeMap<Family, Set>,
) -> Vec<(RuleRole, Rule)> {
    let mut base_rules = Vec::new();
    for (family, map) in maps {
        let key = SetName::ClusterDispatch {
            tier,
            direction,
            family,
        };
        base_rules.push((
            RuleRole::ClusterDispatch(tier),
            rule(
                vec![],
                Action::VerdictMap {
                    key: vec![local_field(direction, family)],
                    map: key.name(),
                },
                None,
            ),
        ));
        builder.add_set(&key, map);
    }
    for (family, keys) in selected {
        let key = SetName::ClusterSelected {
            tier,
            direction,
            family,
        };
        base_rules.push((
            RuleRole::MidCommitDrop,
            rule(
                vec![lookup(vec![local_field(direction, family)], &key.name())],
                Action::Verdict(Verdict::Drop),
                Some(format!("{tier}-selected pod while the ruleset changes")),
            ),
        ));
        builder.add_set(&key, keys);
    }
    base_rules
}

/// A list chain: a jump into each selecting policy's chain, in order (a
/// chain that decides never returns), then what follows when no rule of the
/// tier matched.
fn add_list_chain(
    builder: &mut Builder,
    key: ChainName,
    names: &[String],
    tier: Tier,
    direction: Direction,
) {
    let mut rules: Vec<(RuleRole, Rule)> = names
        .iter()
        .map(|name| {
            let target = ChainName::ClusterPolicy {
                policy: name.clone(),
                direction,
            };
            (
                RuleRole::EnterClusterPolicy(name.clone()),
                rule(vec![], Action::Verdict(Verdict::Jump(target.name())), None),
            )
        })
        .collect();
    let unmatched = match tier {
        Tier::Admin => Verdict::Goto(ChainName::BelowAdmin { direction }.name()),
        Tier::Baseline => Verdict::Accept,
    };
    rules.push((
        RuleRole::TierUnmatched(tier),
        rule(vec![], Action::Verdict(unmatched), None),
    ));
    let listed = names
        .iter()
        .map(|name| format!("cnp/{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    builder.add_chain(
        key,
        None,
        names::comment(format!("pods selected by {listed}")),
        rules,
    );
}

/// One policy's rules in one direction, in written order: each becomes one
/// nft rule per peer/port alternative, all with its verdict.
fn add_policy_chain(
    builder: &mut Builder,
    policy: &ResolvedClusterPolicy,
    direction: Direction,
    pod_families: &[Family],
    options: CompileOptions,
) {
    let key = ChainName::ClusterPolicy {
        policy: policy.name.clone(),
        direction,
    };
    if builder.has_chain(&key.name()) {
        return;
    }
    let log_id = verdict_log::short_id(&names::cluster_log_id(&policy.name, direction.label()));
    let mut chain_rules = Vec::new();
    for resolved in policy.rules(direction) {
        let verdict = match (resolved.action, policy.tier) {
            (cluster_policy::Action::Accept, _)
            | (cluster_policy::Action::Pass, Tier::Baseline) => Verdict::Accept,
            (cluster_policy::Action::Deny, _) => match options.deny {
                DenyAction::Drop => Verdict::Drop,
                DenyAction::Reject => Verdict::Reject,
            },
            (cluster_policy::Action::Pass, Tier::Admin) => {
                Verdict::Goto(ChainName::BelowAdmin { direction }.name())
            }
        };
        let label = resolved
            .name
            .as_ref()
            .map(|name| format!(" '{name}'"))
            .unwrap_or_default();
        let comment = names::comment(format!(
            "cnp/{} {direction}[{}]{label} {}",
            policy.name, resolved.index, resolved.action
        ));
        let alternatives = match &resolved.traffic {
            ClusterTraffic::All => vec![Vec::new()],
            ClusterTraffic::Matching(matching) => {
                let named_set = |family| SetName::ClusterNamedPorts {
                    policy: policy.name.clone(),
                    direction,
                    rule: resolved.index,
                    family,
                };
                // The set's comment must not change while its name stays:
                // no action or rule name in it.
                let set_comment = format!("cnp/{} {direction}[{}]", policy.name, resolved.index);
                rule_alternatives(
                    builder,
                    pod_families,
                    direction,
                    matching,
                    named_set,
                    &set_comment,
                )
            }
        };
        let role = RuleRole::ClusterRule {
            tier: policy.tier,
            rule: resolved.index,
            name: resolved.name.clone(),
            action: resolved.action,
        };
        let logged = match resolved.action {
            cluster_policy::Action::Deny => options
                .verdict_log
                .logs_denies()
                .then(|| options.deny_verdict()),
            cluster_policy::Action::Accept => options
                .verdict_log
                .logs_allows()
                .then_some(log_prefix::Verdict::Accept),
            cluster_policy::Action::Pass => None,
        };
        for matches in alternatives {
            if let Some(verdict) = logged {
                let prefix = LogPrefix {
                    verdict,
                    direction,
                    subject: Subject::ClusterRule {
                        tier: policy.tier,
                        policy: log_id,
                        // At most 25 rules per direction (the CRD's bound).
                        rule: u16::try_from(resolved.index).unwrap_or(u16::MAX),
                    },
                };
                // The cluster dispatch of local pods' addresses is the
                // only way in, as for a group chain.
                chain_rules.extend(options.verdict_log.rules(
                    &matches,
                    pod_families,
                    nftpol_model::LogLimit::default(),
                    prefix,
                ));
            }
            chain_rules.push((
                role.clone(),
                Rule {
                    matches,
                    counter: true,
                    action: Action::Verdict(verdict.clone()),
                    comment: Some(comment.clone()),
                },
            ));
        }
    }
    // Tier and priority may change while the chain's name stays, and a
    // chain's comment cannot: the comment names the policy only.
    let comment = names::comment(format!("cnp/{} {direction} rules", policy.name));
    builder.add_chain(key, None, comment, chain_rules);
}

/// Whether `direction` has an Admin tier here (so Pass needs its target).
pub(super) fn has_admin_tier(tiers: &TierRules) -> bool {
    !tiers.admin.is_empty()
}

/// Whether `direction` has a tier at all here.
pub(super) fn has_any_tier(tiers: &TierRules) -> bool {
    !tiers.admin.is_empty() || !tiers.baseline.is_empty()
}
