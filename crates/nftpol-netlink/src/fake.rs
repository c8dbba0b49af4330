//! [`FakeDataplane`]: the `Dataplane` in memory, for tests of everything above
//! this crate (like knftables' `Fake`).
//!
//! It encodes each diff exactly as the kernel path does (same encode errors,
//! same message and byte counts), then applies it to a copy of its state and
//! commits only if every change would succeed, raising the kernel's errors:
//! ENOENT for a missing table, chain, set or element (deleting an absent
//! element fails the batch), EEXIST for an existing chain, set or element
//! and for overlapping intervals (the kernel never merges), EBUSY for
//! deleting a set or chain that is still referenced, EINVAL for a lookup
//! whose key does not fit its set.

use std::collections::BTreeMap;

use nftpol_ruleset::diff::{Change, Diff};
use nftpol_ruleset::ir::{Action, Chain, Element, Match, Rule, Ruleset, Set, Verdict, TABLE_NAME};
use nix::errno::Errno;

use crate::batch::BatchWriter;
use crate::error::{ApplyError, Object, ReadError};
use crate::key;
use crate::RuleCounter;
use crate::{Applied, Dataplane};

/// An in-memory table `inet nftpol`.
#[derive(Debug, Clone, Default)]
pub struct FakeDataplane {
    state: Option<Ruleset>,
    last_diff: Option<Diff>,
    last_applied: Option<Applied>,
    applied: usize,
    rejected: usize,
    fail_next: Option<Errno>,
    /// Packets and bytes per (chain, rule position), set by tests; absent
    /// means 0, as for a rule the kernel just added.
    counters: BTreeMap<(String, usize), (u64, u64)>,
}

impl FakeDataplane {
    /// A fake without table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake whose table holds `state` (`None`: no table).
    pub fn with_state(state: Option<Ruleset>) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// The current table.
    pub fn state(&self) -> Option<&Ruleset> {
        self.state.as_ref()
    }

    /// The last diff that was applied successfully.
    pub fn last_diff(&self) -> Option<&Diff> {
        self.last_diff.as_ref()
    }

    /// What the last successful apply sent.
    pub fn last_applied(&self) -> Option<Applied> {
        self.last_applied
    }

    /// Successful batches so far (each one a kernel generation).
    pub fn applied_count(&self) -> usize {
        self.applied
    }

    /// Rejected batches so far.
    pub fn rejected_count(&self) -> usize {
        self.rejected
    }

    /// Makes the next apply fail with `errno` (at the batch), without change.
    pub fn fail_next_apply(&mut self, errno: Errno) {
        self.fail_next = Some(errno);
    }

    /// Sets the counter of rule `rule` (its position, from 0) of `chain`, as
    /// traffic would. Returns whether that rule exists and carries a counter
    /// (nothing is set otherwise). Like the kernel's, the value is lost
    /// when the chain is flushed or deleted.
    pub fn set_counter(&mut self, chain: &str, rule: usize, packets: u64, bytes: u64) -> bool {
        let has_counter = self
            .state
            .as_ref()
            .and_then(|state| state.chains.get(chain))
            .and_then(|found| found.rules.get(rule))
            .is_some_and(|found| found.counter);
        if has_counter {
            self.counters
                .insert((chain.to_owned(), rule), (packets, bytes));
        }
        has_counter
    }
}

fn reject(errno: Errno, object: Object) -> ApplyError {
    ApplyError::Rejected {
        errno,
        message: None,
        object,
        also_failed: 0,
    }
}

impl Dataplane for FakeDataplane {
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError> {
        if diff.is_empty() {
            return Ok(Applied::default());
        }
        if let Some(errno) = self.fail_next.take() {
            self.rejected += 1;
            return Err(reject(errno, Object::Batch));
        }
        let shapes: BTreeMap<String, Set> = self
            .state
            .as_ref()
            .map(|state| {
                state
                    .sets
                    .iter()
                    .map(|(name, set)| (name.clone(), set.shape()))
                    .collect()
            })
            .unwrap_or_default();
        let mut writer = BatchWriter::new(TABLE_NAME, 0);
        writer.push_diff(diff, &shapes)?;
        let batch = writer.finish();
        let mut state = self.state.clone();
        for change in &diff.changes {
            if let Err(error) = apply_change(&mut state, change) {
                self.rejected += 1;
                return Err(error);
            }
        }
        self.state = state;
        for change in &diff.changes {
            if let Change::FlushChain(chain) | Change::DeleteChain(chain) = change {
                self.counters.retain(|(held, _), _| held != chain);
            }
        }
        self.applied += 1;
        let applied = Applied {
            messages: batch.message_count(),
            bytes: batch.bytes.len(),
        };
        self.last_diff = Some(diff.clone());
        self.last_applied = Some(applied);
        Ok(applied)
    }

    fn read(&mut self) -> Result<Option<Ruleset>, ReadError> {
        Ok(self.state.clone())
    }

    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError> {
        let Some(state) = &self.state else {
            return Ok(Vec::new());
        };
        let mut counters = Vec::new();
        for chain in state.chains.values() {
            for (position, rule) in chain.rules.iter().enumerate() {
                if !rule.counter {
                    continue;
                }
                let (packets, bytes) = self
                    .counters
                    .get(&(chain.name.clone(), position))
                    .copied()
                    .unwrap_or_default();
                counters.push(RuleCounter {
                    chain: chain.name.clone(),
                    rule: position,
                    comment: rule.comment.clone(),
                    packets,
                    bytes,
                });
            }
        }
        Ok(counters)
    }

    fn delete_table(&mut self) -> Result<(), ApplyError> {
        self.counters.clear();
        if self.state.take().is_some() {
            self.applied += 1;
        }
        Ok(())
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per change kind, each a kernel rule; splitting scatters the table"
)]
fn apply_change(state: &mut Option<Ruleset>, change: &Change) -> Result<(), ApplyError> {
    if matches!(change, Change::AddTable) {
        state.get_or_insert_with(Ruleset::default);
        return Ok(());
    }
    let Some(table) = state.as_mut() else {
        return Err(reject(Errno::ENOENT, Object::Table));
    };
    match change {
        Change::AddTable => {}
        Change::FlushChain(name) => {
            table
                .chains
                .get_mut(name)
                .ok_or_else(|| reject(Errno::ENOENT, Object::Chain(name.clone())))?
                .rules
                .clear();
        }
        Change::DeleteElements {
            set: name,
            elements,
        } => {
            let set = table
                .sets
                .get_mut(name)
                .ok_or_else(|| reject(Errno::ENOENT, Object::Set(name.clone())))?;
            for element in elements {
                let held = set
                    .elements
                    .iter()
                    .find(|held| same_key(held, element))
                    .cloned();
                let held = held.ok_or_else(|| {
                    reject(
                        Errno::ENOENT,
                        Object::Element {
                            set: name.clone(),
                            element: Box::new(element.clone()),
                        },
                    )
                })?;
                set.elements.remove(&held);
            }
        }
        Change::DeleteSet(name) => {
            if !table.sets.contains_key(name) {
                return Err(reject(Errno::ENOENT, Object::Set(name.clone())));
            }
            if table
                .chains
                .values()
                .flat_map(|chain| &chain.rules)
                .any(|rule| rule_uses_set(rule, name))
            {
                return Err(reject(Errno::EBUSY, Object::Set(name.clone())));
            }
            table.sets.remove(name);
        }
        Change::DeleteChain(name) => {
            if !table.chains.contains_key(name) {
                return Err(reject(Errno::ENOENT, Object::Chain(name.clone())));
            }
            let from_rules = table
                .chains
                .values()
                .filter(|chain| chain.name != *name)
                .flat_map(|chain| &chain.rules)
                .any(|rule| matches!(&rule.action, Action::Verdict(verdict) if targets(verdict, name)));
            let from_maps = table
                .sets
                .values()
                .flat_map(|set| &set.elements)
                .any(|element| {
                    element
                        .verdict
                        .as_ref()
                        .is_some_and(|verdict| targets(verdict, name))
                });
            if from_rules || from_maps {
                return Err(reject(Errno::EBUSY, Object::Chain(name.clone())));
            }
            table.chains.remove(name);
        }
        Change::AddSet(set) => {
            if table.sets.contains_key(&set.name) {
                return Err(reject(Errno::EEXIST, Object::Set(set.name.clone())));
            }
            table.sets.insert(set.name.clone(), set.shape());
        }
        Change::AddChain(chain) => {
            if table.chains.contains_key(&chain.name) {
                return Err(reject(Errno::EEXIST, Object::Chain(chain.name.clone())));
            }
            table.chains.insert(
                chain.name.clone(),
                Chain {
                    rules: Vec::new(),
                    ..chain.clone()
                },
            );
        }
        Change::AddElements {
            set: name,
            elements,
        } => add_elements(table, name, elements)?,
        Change::AddRule { chain, rule } => add_rule(table, chain, rule)?,
    }
    Ok(())
}

fn add_elements(table: &mut Ruleset, name: &str, elements: &[Element]) -> Result<(), ApplyError> {
    let chains: Vec<String> = table.chains.keys().cloned().collect();
    let set = table
        .sets
        .get_mut(name)
        .ok_or_else(|| reject(Errno::ENOENT, Object::Set(name.to_owned())))?;
    for element in elements {
        let object = || Object::Element {
            set: name.to_owned(),
            element: Box::new(element.clone()),
        };
        if let Some(Verdict::Jump(target) | Verdict::Goto(target)) = &element.verdict {
            if !chains.contains(target) {
                return Err(reject(Errno::ENOENT, object()));
            }
        }
        let clash = set.elements.iter().any(|held| {
            if !set.interval {
                same_key(held, element)
            } else if set.key.len() == 1 {
                held.start <= element.end && element.start <= held.end
            } else {
                contains(held, &element.start) || contains(held, &element.end)
            }
        });
        if clash {
            return Err(reject(Errno::EEXIST, object()));
        }
        set.elements.insert(element.clone());
    }
    Ok(())
}

fn add_rule(table: &mut Ruleset, chain: &str, rule: &Rule) -> Result<(), ApplyError> {
    let object = || Object::Rule {
        chain: chain.to_owned(),
        comment: rule.comment.clone(),
    };
    if !table.chains.contains_key(chain) {
        return Err(reject(Errno::ENOENT, object()));
    }
    let lookups = rule.matches.iter().filter_map(|matched| match matched {
        Match::Lookup { key, set, .. } => Some((key, set, false)),
        _ => None,
    });
    let map = match &rule.action {
        Action::VerdictMap { key, map } => Some((key, map, true)),
        Action::Verdict(_) => None,
    };
    for (fields, name, is_map) in lookups.chain(map) {
        let set = table
            .sets
            .get(name)
            .ok_or_else(|| reject(Errno::ENOENT, object()))?;
        let loaded: Vec<_> = fields
            .iter()
            .map(|field| key::type_of_field(*field))
            .collect();
        if key::key_len(&loaded) != key::key_len(&set.key) || (is_map && !set.is_verdict_map) {
            return Err(reject(Errno::EINVAL, object()));
        }
    }
    if let Action::Verdict(Verdict::Jump(target) | Verdict::Goto(target)) = &rule.action {
        if !table.chains.contains_key(target) {
            return Err(reject(Errno::ENOENT, object()));
        }
    }
    if let Some(chain) = table.chains.get_mut(chain) {
        chain.rules.push(rule.clone());
    }
    Ok(())
}

/// Whether two elements have the same key (the kernel ignores map data).
fn same_key(a: &Element, b: &Element) -> bool {
    a.start == b.start && a.end == b.end
}

/// Whether the key `point` falls in every field range of `element`.
fn contains(element: &Element, point: &[nftpol_ruleset::ir::Value]) -> bool {
    element
        .start
        .iter()
        .zip(&element.end)
        .zip(point)
        .all(|((start, end), value)| start <= value && value <= end)
}

fn targets(verdict: &Verdict, chain: &str) -> bool {
    matches!(verdict, Verdict::Jump(target) | Verdict::Goto(target) if target == chain)
}

fn rule_uses_set(rule: &Rule, name: &str) -> bool {
    rule.matches
        .iter()
        .any(|matched| matches!(matched, Match::Lookup { set, .. } if set == name))
        || matches!(&rule.action, Action::VerdictMap { map, .. } if map == name)
}
