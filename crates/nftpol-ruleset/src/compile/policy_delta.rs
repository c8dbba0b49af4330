//! One NetworkPolicy's change as a diff of the objects it touches, without
//! a full model or compile.
//!
//! What a NetworkPolicy contributes to the ruleset is its own: its chain in
//! each direction it isolates (compiled by [`super::policy`] from the
//! policy alone), the sets those chains ask for (shared by content or
//! identity with other policies: [`super::Compiled::set_users`] counts the
//! users), and, through the dispatch maps, the group chain of each local pod
//! it isolates (named by the list of isolating policies, which the
//! committed provenance spells). So both versions of the policy are
//! compiled alone, into scratch builders, and the committed ruleset is read
//! only where they meet it: the touched chains, the sets whose user count
//! reaches or leaves 0, the dispatch elements of the pods the policy
//! isolated or isolates, the group chains those elements leave (deleted
//! with their last element) and join (created when new).
//!
//! The result is a diff of two partial rulesets (the touched objects as
//! committed, and as they become; maps holding only the touched pods'
//! elements), made by [`nftpol_ir::diff::diff`], so the batch order and the
//! element-versus-replace choices are the full path's. Held equal to a
//! full compile by the agent's `policy_delta` property tests.
//!
//! With re-judging, the chains compiled alone are rewritten to judge the
//! connection as the full compile's are ([`crate::rejudge`]); whether the
//! change may take permission away is decided from the change itself
//! ([`PolicyDelta::may_remove_permission`]). With the verdict log, a new
//! group chain logs at the strictest limit of its policies, read from the
//! committed policies' limits ([`CommittedState::log_limits`]).
//!
//! Not handled (`None`, the caller takes the full path): a change of the
//! policy's log limit while denies are logged (every group chain holding
//! the policy would change), and a committed state this path does not
//! expect.

use std::collections::{BTreeMap, BTreeSet};

use nftpol_ir::diff::{diff, Diff};
use nftpol_ir::{Element, Ruleset, Set, Value, Verdict};
use nftpol_model::{Direction, LogLimit, PolicyId, PolicyVersion, TargetPod};

use super::dispatch::{add_group_chain, rules_of};
use super::{address_value, family_of, policy, Builder, CompileOptions};
use crate::catalogue::{ChainName, ChainOrigin, Family, Provenance, SetKind, SetName};
use crate::rejudge;
use crate::verdict_log;

/// One policy's change: the diff, and what the committed state's
/// bookkeeping becomes once the kernel took it.
#[derive(Debug, Clone, Default)]
pub struct PolicyDelta {
    /// The touched objects as committed (the dispatch maps and isolated
    /// sets holding only the touched pods' elements).
    old: Ruleset,
    /// The touched objects as they become (absent: deleted).
    new: Ruleset,
    /// The sets of `old` and `new` that are partial views.
    partial_sets: BTreeSet<String>,
    /// Whether the change may take permission away (with re-judging, the
    /// commit then bumps the generation). `false` only for a new policy
    /// whose pods were all isolated already in each direction it isolates:
    /// their group chains gain a jump into a chain that only accepts.
    pub may_remove_permission: bool,
    /// Chains gone.
    removed_chains: BTreeSet<String>,
    /// Chains created or rewritten, with their new origin.
    chains: BTreeMap<String, ChainOrigin>,
    /// Sets gone.
    removed_sets: BTreeSet<String>,
    /// Sets created.
    sets: BTreeMap<String, SetKind>,
    /// The new user counts of the sets the policy used or uses (0: gone).
    set_users: BTreeMap<String, usize>,
}

impl PolicyDelta {
    /// The changes, in an order the kernel accepts in one batch.
    pub fn changes(&self) -> Diff<'_> {
        diff(Some(&self.old), &self.new)
    }

    /// Brings `provenance` and `set_users` (those of the committed ruleset
    /// the delta was made against) to those of the ruleset after it.
    /// Returns the origins of the chains gone or replaced, and of those
    /// added or replacing them (for the verdict log's catalogue).
    pub fn record(
        self,
        provenance: &mut Provenance,
        set_users: &mut BTreeMap<String, usize>,
    ) -> (Vec<ChainOrigin>, Vec<ChainOrigin>) {
        let mut gone: Vec<ChainOrigin> = self
            .removed_chains
            .iter()
            .filter_map(|name| provenance.chains.remove(name))
            .collect();
        let mut added = Vec::with_capacity(self.chains.len());
        for (name, origin) in self.chains {
            added.push(origin.clone());
            gone.extend(provenance.chains.insert(name, origin));
        }
        for name in &self.removed_sets {
            provenance.sets.remove(name);
        }
        provenance.sets.extend(self.sets);
        for (name, users) in self.set_users {
            if users == 0 {
                set_users.remove(&name);
            } else {
                set_users.insert(name, users);
            }
        }
        (gone, added)
    }
}

/// The committed state a delta is made against: the ruleset in force, its
/// provenance and set user counts.
#[derive(Debug, Clone, Copy)]
pub struct CommittedState<'a> {
    /// The committed ruleset.
    pub ruleset: &'a Ruleset,
    /// Its provenance.
    pub provenance: &'a Provenance,
    /// Its set user counts (see [`super::Compiled::set_users`]).
    pub set_users: &'a BTreeMap<String, usize>,
    /// The log limit of every policy the model resolved (group chains log
    /// at the strictest of theirs).
    pub log_limits: &'a BTreeMap<PolicyId, LogLimit>,
}

/// The diff that turns `committed` (a full compile's, kept up to date) into
/// what a full compile gives once one policy goes from `before` to `after`
/// (its versions resolved against the same pods `committed` was compiled
/// from; `None`: absent). `pod_families` are the IPv4 and IPv6 flags of the
/// cluster's pods. `None` when the change needs the full path (see the
/// module doc) or the committed state is not what this path expects.
pub fn policy_delta(
    committed: CommittedState<'_>,
    pod_families: (bool, bool),
    before: Option<&PolicyVersion>,
    after: Option<&PolicyVersion>,
    options: CompileOptions,
) -> Option<PolicyDelta> {
    let id = after.or(before)?.id.clone();
    if before.is_some_and(|version| version.id != id) {
        return None;
    }
    let limit = |version: Option<&PolicyVersion>| {
        version.and_then(|version| version.resolved.as_ref().map(|resolved| resolved.log_limit))
    };
    if options.verdict_log.logs_denies()
        && limit(before).is_some()
        && limit(after).is_some()
        && limit(before) != limit(after)
    {
        return None;
    }
    let families: Vec<Family> = [(pod_families.0, Family::V4), (pod_families.1, Family::V6)]
        .into_iter()
        .filter_map(|(used, family)| used.then_some(family))
        .collect();
    let mut delta = Delta {
        committed,
        result: PolicyDelta::default(),
    };
    let old = scratch(before, &families, options);
    let new = scratch(after, &families, options);
    delta.policy_chains(&old, &new)?;
    delta.sets(&old, &new)?;
    let mut newly_isolated = false;
    for direction in [Direction::Egress, Direction::Ingress] {
        newly_isolated |= delta.dispatch(
            &id,
            direction,
            &families,
            (before, after),
            limit(after),
            options,
        )?;
    }
    delta.result.may_remove_permission =
        before.is_some() || newly_isolated || !delta.result.removed_sets.is_empty();
    Some(delta.result)
}

/// One version's policy chains and the sets they ask for, compiled alone.
fn scratch(
    version: Option<&PolicyVersion>,
    families: &[Family],
    options: CompileOptions,
) -> Builder {
    let mut builder = Builder::default();
    // A policy whose targets all lack addresses isolates nothing in the
    // ruleset (no dispatch element reaches its chain).
    let Some(resolved) = version
        .filter(|version| !version.targets.is_empty())
        .and_then(|version| version.resolved.as_ref())
    else {
        return builder;
    };
    for direction in [Direction::Egress, Direction::Ingress] {
        if let Some(rules) = rules_of(direction, resolved) {
            policy::add_policy(&mut builder, families, resolved, direction, rules, options);
        }
    }
    judge_connections(&mut builder, options);
    builder
}

/// With re-judging, rewrites the chains of `builder` as the full compile
/// rewrites every chain.
fn judge_connections(builder: &mut Builder, options: CompileOptions) {
    if let Some(settings) = options.rejudge {
        rejudge::judge_connections(&mut builder.compiled, settings.marks);
    }
}

/// The targets of `version` in `direction` (none when it does not isolate it).
fn targets(version: Option<&PolicyVersion>, direction: Direction) -> &[TargetPod] {
    version
        .filter(|version| {
            version
                .resolved
                .as_ref()
                .is_some_and(|resolved| rules_of(direction, resolved).is_some())
        })
        .map_or(&[], |version| version.targets.as_slice())
}

/// The committed state is not what the policy path expects.
#[derive(Debug)]
struct Unexpected;

/// A delta being built against the committed state.
struct Delta<'a> {
    committed: CommittedState<'a>,
    result: PolicyDelta,
}

impl Delta<'_> {
    /// The policy's chains: the committed ones of the old version go, the
    /// new version's come (a chain in both is diffed rule by rule).
    fn policy_chains(&mut self, old: &Builder, new: &Builder) -> Option<()> {
        for name in old.compiled.ruleset.chains.keys() {
            let chain = self.committed.ruleset.chains.get(name)?;
            self.result.old.chains.insert(name.clone(), chain.clone());
            if !new.compiled.ruleset.chains.contains_key(name) {
                self.result.removed_chains.insert(name.clone());
            }
        }
        for (name, chain) in &new.compiled.ruleset.chains {
            self.result.new.chains.insert(name.clone(), chain.clone());
            self.result
                .chains
                .insert(name.clone(), new.compiled.provenance.chains[name].clone());
            if let Some(committed) = self.committed.ruleset.chains.get(name) {
                self.result
                    .old
                    .chains
                    .insert(name.clone(), committed.clone());
            }
        }
        Some(())
    }

    /// The sets either version uses: created with their first user, deleted
    /// with their last, diffed when the new version's content differs (a
    /// policy's own named-port sets).
    fn sets(&mut self, old: &Builder, new: &Builder) -> Option<()> {
        let users = |builder: &Builder, name: &str| {
            builder.compiled.set_users.get(name).copied().unwrap_or(0)
        };
        let names: BTreeSet<&String> = old
            .compiled
            .set_users
            .keys()
            .chain(new.compiled.set_users.keys())
            .collect();
        for name in names {
            let counted = self.committed.set_users.get(name).copied().unwrap_or(0);
            let remaining = counted.checked_sub(users(old, name))? + users(new, name);
            self.result.set_users.insert(name.clone(), remaining);
            let committed = self.committed.ruleset.sets.get(name);
            let wanted = new.compiled.ruleset.sets.get(name);
            match (committed, wanted, remaining) {
                (Some(committed), _, 0) => {
                    self.result.old.sets.insert(name.clone(), committed.clone());
                    self.result.removed_sets.insert(name.clone());
                }
                (None, Some(wanted), 1..) => {
                    self.result.new.sets.insert(name.clone(), wanted.clone());
                    self.result
                        .sets
                        .insert(name.clone(), new.compiled.provenance.sets[name]);
                }
                (Some(committed), Some(wanted), 1..) if committed != wanted => {
                    self.result.old.sets.insert(name.clone(), committed.clone());
                    self.result.new.sets.insert(name.clone(), wanted.clone());
                }
                (Some(_), _, 1..) => {}
                // Counted users of a set that is not there: not the state
                // this path expects.
                (None, _, _) => return None,
            }
        }
        Some(())
    }

    /// The dispatch elements of the pods the policy isolated or isolates in
    /// `direction`, moved to the group chain of their new list of isolating
    /// policies; group chains created with their first element and deleted
    /// with their last. `limit` is the new version's log limit. Returns
    /// whether a pod no policy isolated in `direction` is isolated now.
    fn dispatch(
        &mut self,
        id: &PolicyId,
        direction: Direction,
        families: &[Family],
        (before, after): (Option<&PolicyVersion>, Option<&PolicyVersion>),
        limit: Option<LogLimit>,
        options: CompileOptions,
    ) -> Option<bool> {
        let mut newly_isolated = false;
        let isolated_after: BTreeSet<&str> = targets(after, direction)
            .iter()
            .map(|pod| pod.key.as_str())
            .collect();
        let mut pods: BTreeMap<&str, &TargetPod> = BTreeMap::new();
        for pod in targets(before, direction)
            .iter()
            .chain(targets(after, direction))
        {
            pods.insert(pod.key.as_str(), pod);
        }
        // Elements each group chain loses (negative) or gains.
        let mut moved: BTreeMap<String, isize> = BTreeMap::new();
        let mut groups = Builder::default();
        for (key, pod) in pods {
            let first = *pod.ips.first()?;
            let was = self.group_of(direction, first).ok()?;
            let mut list = match &was {
                Some(name) => match &self.committed.provenance.chains.get(name)?.chain {
                    ChainName::Group { policies, .. } => policies.clone(),
                    _ => return None,
                },
                None => Vec::new(),
            };
            list.retain(|listed| listed != id);
            if isolated_after.contains(key) {
                // Model order: policies sorted by id.
                let at = list.partition_point(|listed| listed < id);
                list.insert(at, id.clone());
            }
            let now = (!list.is_empty()).then(|| {
                ChainName::Group {
                    direction,
                    policies: list.clone(),
                }
                .name()
            });
            if now == was {
                continue;
            }
            newly_isolated |= was.is_none();
            if let Some(name) = &now {
                if !self.committed.ruleset.chains.contains_key(name) && !groups.has_chain(name) {
                    let limit = self.group_limit(&list, id, limit)?;
                    add_group_chain(&mut groups, direction, families, list, limit, options);
                }
            }
            let ips = pod.ips.len().cast_signed();
            for (group, sign) in [(&was, -1), (&now, 1)] {
                if let Some(group) = group {
                    *moved.entry(group.clone()).or_default() += sign * ips;
                }
            }
            self.move_elements(direction, pod, (&was, &now))?;
        }
        judge_connections(&mut groups, options);
        for (name, chain) in groups.compiled.ruleset.chains {
            self.result.chains.insert(
                name.clone(),
                groups.compiled.provenance.chains[&name].clone(),
            );
            self.result.new.chains.insert(name, chain);
        }
        for (name, change) in moved.into_iter().filter(|(_, change)| *change < 0) {
            let held = self.group_elements(direction, &name).cast_signed();
            if held + change == 0 {
                let chain = self.committed.ruleset.chains.get(&name)?;
                self.result.old.chains.insert(name.clone(), chain.clone());
                self.result.removed_chains.insert(name);
            }
        }
        Some(newly_isolated)
    }

    /// The log limit of the group chain of `list`: the strictest of its
    /// policies' (`limit` for `id`, whose new version it is).
    fn group_limit(
        &self,
        list: &[PolicyId],
        id: &PolicyId,
        limit: Option<LogLimit>,
    ) -> Option<LogLimit> {
        let limits: Option<Vec<LogLimit>> = list
            .iter()
            .map(|listed| {
                if listed == id {
                    limit
                } else {
                    self.committed.log_limits.get(listed).copied()
                }
            })
            .collect();
        Some(verdict_log::strictest(limits?))
    }

    /// Moves `pod`'s dispatch elements of `direction` from the group chain
    /// `was` to `now` (`None`: not isolated), in the partial maps and
    /// isolated sets.
    fn move_elements(
        &mut self,
        direction: Direction,
        pod: &TargetPod,
        (was, now): (&Option<String>, &Option<String>),
    ) -> Option<()> {
        for ip in &pod.ips {
            let family = family_of(*ip);
            let key = vec![address_value(*ip)];
            for (part, group) in [(&mut self.result.old, was), (&mut self.result.new, now)] {
                let map = partial_set(
                    part,
                    self.committed.ruleset,
                    &SetName::Dispatch { direction, family },
                    &mut self.result.partial_sets,
                )?;
                if let Some(group) = group {
                    map.elements
                        .insert(Element::mapping(key.clone(), Verdict::Jump(group.clone())));
                }
                let isolated = partial_set(
                    part,
                    self.committed.ruleset,
                    &SetName::Isolated { direction, family },
                    &mut self.result.partial_sets,
                )?;
                if group.is_some() {
                    isolated.elements.insert(Element::key(key.clone()));
                }
            }
        }
        Some(())
    }

    /// The group chain the committed dispatch map of `direction` sends
    /// `address` to (`Ok(None)`: it holds no element for it); an error
    /// when the map is missing or the element is not a jump.
    fn group_of(
        &self,
        direction: Direction,
        address: std::net::IpAddr,
    ) -> Result<Option<String>, Unexpected> {
        let name = SetName::Dispatch {
            direction,
            family: family_of(address),
        }
        .name();
        let map = self.committed.ruleset.sets.get(&name).ok_or(Unexpected)?;
        let probe = Element::key(vec![address_value(address)]);
        match map.elements.range(&probe..).next() {
            Some(element) if element.start() == probe.start() => match element.verdict() {
                Some(Verdict::Jump(group)) => Ok(Some(group.clone())),
                _ => Err(Unexpected),
            },
            _ => Ok(None),
        }
    }

    /// How many committed dispatch elements of `direction` jump to `group`.
    fn group_elements(&self, direction: Direction, group: &str) -> usize {
        Family::ALL
            .into_iter()
            .filter_map(|family| {
                self.committed
                    .ruleset
                    .sets
                    .get(&SetName::Dispatch { direction, family }.name())
            })
            .flat_map(|map| &map.elements)
            .filter(|element| {
                matches!(element.verdict(), Some(Verdict::Jump(target)) if target == group)
            })
            .count()
    }
}

/// The set `key` of `part`, created empty in the committed set's shape on
/// first use (a partial view: only the touched elements); `None` when the
/// committed ruleset lacks it.
fn partial_set<'p>(
    part: &'p mut Ruleset,
    committed: &Ruleset,
    key: &SetName,
    partial: &mut BTreeSet<String>,
) -> Option<&'p mut Set> {
    let name = key.name();
    if !part.sets.contains_key(&name) {
        partial.insert(name.clone());
        part.sets
            .insert(name.clone(), shape_of(committed.sets.get(&name)?));
    }
    part.sets.get_mut(&name)
}

/// Several policies' deltas, each made against the state the one before
/// left (the caller applies each to the committed IR in turn), merged into
/// one batch: every touched object (or, in the dispatch maps and isolated
/// sets, every touched element key) as it was before the first delta and
/// as the last one leaves it. An object deleted by one delta and created
/// again by a later one is not touched in the kernel at all.
#[derive(Debug, Clone, Default)]
pub struct PolicyBatch {
    old: Ruleset,
    new: Ruleset,
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
    /// The element keys touched per partial set.
    keys: BTreeMap<String, BTreeSet<Vec<Value>>>,
    may_remove_permission: bool,
}

impl PolicyBatch {
    /// Adds `delta`, made against the state the deltas absorbed so far left.
    pub fn absorb(&mut self, delta: &PolicyDelta) {
        self.may_remove_permission |= delta.may_remove_permission;
        let names: BTreeSet<&String> = delta
            .old
            .chains
            .keys()
            .chain(delta.new.chains.keys())
            .collect();
        for name in names {
            if self.chains.insert(name.clone()) {
                if let Some(chain) = delta.old.chains.get(name) {
                    self.old.chains.insert(name.clone(), chain.clone());
                }
            }
            match delta.new.chains.get(name) {
                Some(chain) => self.new.chains.insert(name.clone(), chain.clone()),
                None => self.new.chains.remove(name),
            };
        }
        let names: BTreeSet<&String> = delta.old.sets.keys().chain(delta.new.sets.keys()).collect();
        for name in names {
            if delta.partial_sets.contains(name) {
                self.absorb_elements(name, delta);
                continue;
            }
            if self.sets.insert(name.clone()) {
                if let Some(set) = delta.old.sets.get(name) {
                    self.old.sets.insert(name.clone(), set.clone());
                }
            }
            match delta.new.sets.get(name) {
                Some(set) => self.new.sets.insert(name.clone(), set.clone()),
                None => self.new.sets.remove(name),
            };
        }
    }

    /// Merges the touched elements of the partial set `name` of `delta`.
    fn absorb_elements(&mut self, name: &str, delta: &PolicyDelta) {
        let (Some(old), Some(new)) = (delta.old.sets.get(name), delta.new.sets.get(name)) else {
            return;
        };
        for part in [&mut self.old, &mut self.new] {
            part.sets
                .entry(name.to_owned())
                .or_insert_with(|| shape_of(old));
        }
        let touched = self.keys.entry(name.to_owned()).or_default();
        let keys: BTreeSet<&[Value]> = old
            .elements
            .iter()
            .chain(&new.elements)
            .map(Element::start)
            .collect();
        for key in keys {
            if touched.insert(key.to_vec()) {
                if let Some(set) = self.old.sets.get_mut(name) {
                    set.elements.extend(
                        old.elements
                            .iter()
                            .filter(|element| element.start() == key)
                            .cloned(),
                    );
                }
            }
            if let Some(set) = self.new.sets.get_mut(name) {
                set.elements.retain(|element| element.start() != key);
                set.elements.extend(
                    new.elements
                        .iter()
                        .filter(|element| element.start() == key)
                        .cloned(),
                );
            }
        }
    }

    /// The changes of every absorbed delta, in one batch.
    pub fn changes(&self) -> Diff<'_> {
        diff(Some(&self.old), &self.new)
    }

    /// Whether any absorbed delta may take permission away.
    pub fn may_remove_permission(&self) -> bool {
        self.may_remove_permission
    }
}

/// `set` without its elements.
fn shape_of(set: &Set) -> Set {
    Set {
        name: set.name.clone(),
        key: set.key.clone(),
        interval: set.interval,
        is_verdict_map: set.is_verdict_map,
        dynamic: set.dynamic.clone(),
        comment: set.comment.clone(),
        elements: BTreeSet::new(),
    }
}
