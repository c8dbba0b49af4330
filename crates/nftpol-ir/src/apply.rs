//! [`Ruleset::apply`]: a [`Diff`] patched into a ruleset, with the kernel's
//! rules for what a transaction may do.
//!
//! This is the one applier of a diff. The fake dataplane applies a batch's
//! diff to a copy of its table and maps a [`Conflict`] to the errno the
//! kernel would answer; the kernel dataplane keeps the shapes of what it
//! committed by applying each committed diff's structure; the incremental
//! pod path patches the committed ruleset with its element diff. The rules
//! checked are the kernel's (see `shared/notes/nftables-netlink.md`):
//!
//! - a change names an existing chain or set, or fails as missing (ENOENT),
//!   deleting an absent element included;
//! - adding what exists fails (EEXIST), and so does an interval overlapping
//!   one the set holds: the kernel never merges intervals;
//! - deleting a set a rule uses, or a chain a rule or map element jumps to,
//!   fails as busy (EBUSY);
//! - a lookup whose key does not fit its set fails (EINVAL).
//!
//! Changes are applied in order; on a conflict the ruleset keeps the changes
//! before it. A caller that needs all-or-nothing (as the kernel gives)
//! applies to a copy.

use std::collections::BTreeSet;

use crate::diff::{Change, Diff, Elements};
use crate::{Action, Chain, Element, Match, Object, Rule, Ruleset, Value, Verdict};

/// Why a change cannot be applied to a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The object the change names does not exist (the kernel's ENOENT).
    #[error("{0} does not exist")]
    Missing(Object),
    /// The object exists already, or an interval overlaps one the set holds
    /// (EEXIST).
    #[error("{0} exists already")]
    Exists(Object),
    /// The object is still referenced by a rule or a map element (EBUSY).
    #[error("{0} is still in use")]
    Busy(Object),
    /// A rule's lookup key does not fit its set, or a verdict-map action
    /// names a plain set (EINVAL).
    #[error("{0} looks up a key its set does not have")]
    KeyMismatch(Object),
}

impl Conflict {
    /// The object the conflict concerns.
    pub fn object(&self) -> &Object {
        match self {
            Self::Missing(object)
            | Self::Exists(object)
            | Self::Busy(object)
            | Self::KeyMismatch(object) => object,
        }
    }
}

impl Ruleset {
    /// Applies `diff` in order; see the module doc for the rules. On a
    /// conflict, the changes before the conflicting one stay applied.
    pub fn apply(&mut self, diff: &Diff) -> Result<(), Conflict> {
        diff.changes
            .iter()
            .try_for_each(|change| self.apply_change(change))
    }

    fn apply_change(&mut self, change: &Change) -> Result<(), Conflict> {
        match change {
            Change::AddTable => Ok(()),
            Change::FlushChain(name) => {
                self.chains
                    .get_mut(name)
                    .ok_or_else(|| Conflict::Missing(Object::Chain(name.clone())))?
                    .rules
                    .clear();
                Ok(())
            }
            Change::DeleteElements { set, elements } => self.delete_elements(set, elements),
            Change::DeleteSet(name) => self.delete_set(name),
            Change::DeleteChain(name) => self.delete_chain(name),
            Change::AddSet(set) => {
                if self.sets.contains_key(&set.name) {
                    return Err(Conflict::Exists(Object::Set(set.name.clone())));
                }
                self.sets.insert(set.name.clone(), set.shape());
                Ok(())
            }
            Change::AddChain(chain) => {
                if self.chains.contains_key(&chain.name) {
                    return Err(Conflict::Exists(Object::Chain(chain.name.clone())));
                }
                self.chains.insert(
                    chain.name.clone(),
                    Chain {
                        rules: Vec::new(),
                        ..chain.clone()
                    },
                );
                Ok(())
            }
            Change::AddElements { set, elements } => self.add_elements(set, elements),
            Change::AddRule { chain, rule } => self.add_rule(chain, rule),
        }
    }

    fn delete_elements(&mut self, name: &str, elements: &Elements<'_>) -> Result<(), Conflict> {
        let set = self
            .sets
            .get_mut(name)
            .ok_or_else(|| Conflict::Missing(Object::Set(name.to_owned())))?;
        for element in elements {
            let held = held_with_key(&set.elements, element).cloned();
            let held = held.ok_or_else(|| element_object(name, element, Conflict::Missing))?;
            set.elements.remove(&held);
        }
        Ok(())
    }

    fn delete_set(&mut self, name: &str) -> Result<(), Conflict> {
        if !self.sets.contains_key(name) {
            return Err(Conflict::Missing(Object::Set(name.to_owned())));
        }
        let in_use = self
            .chains
            .values()
            .flat_map(|chain| &chain.rules)
            .any(|rule| rule_uses_set(rule, name));
        if in_use {
            return Err(Conflict::Busy(Object::Set(name.to_owned())));
        }
        self.sets.remove(name);
        Ok(())
    }

    fn delete_chain(&mut self, name: &str) -> Result<(), Conflict> {
        if !self.chains.contains_key(name) {
            return Err(Conflict::Missing(Object::Chain(name.to_owned())));
        }
        let from_rules = self
            .chains
            .values()
            .filter(|chain| chain.name != name)
            .flat_map(|chain| &chain.rules)
            .any(|rule| matches!(&rule.action, Action::Verdict(verdict) if targets(verdict, name)));
        // Only verdict maps hold verdicts: the pod-address sets, the
        // bulk of the elements, need no scan.
        let from_maps = self
            .sets
            .values()
            .filter(|set| set.is_verdict_map)
            .flat_map(|set| &set.elements)
            .any(|element| {
                element
                    .verdict()
                    .is_some_and(|verdict| targets(verdict, name))
            });
        if from_rules || from_maps {
            return Err(Conflict::Busy(Object::Chain(name.to_owned())));
        }
        self.chains.remove(name);
        Ok(())
    }

    fn add_elements(&mut self, name: &str, elements: &Elements<'_>) -> Result<(), Conflict> {
        let Ruleset { chains, sets } = self;
        let set = sets
            .get_mut(name)
            .ok_or_else(|| Conflict::Missing(Object::Set(name.to_owned())))?;
        for element in elements {
            if let Some(Verdict::Jump(target) | Verdict::Goto(target)) = element.verdict() {
                if !chains.contains_key(target) {
                    return Err(element_object(name, element, Conflict::Missing));
                }
            }
            let clash = if !set.interval {
                held_with_key(&set.elements, element).is_some()
            } else if set.key.len() == 1 {
                set.elements
                    .iter()
                    .any(|held| held.start() <= element.end() && element.start() <= held.end())
            } else {
                set.elements
                    .iter()
                    .any(|held| contains(held, element.start()) || contains(held, element.end()))
            };
            if clash {
                return Err(element_object(name, element, Conflict::Exists));
            }
            set.elements.insert(element.clone());
        }
        Ok(())
    }

    fn add_rule(&mut self, chain: &str, rule: &Rule) -> Result<(), Conflict> {
        let object = || Object::Rule {
            chain: chain.to_owned(),
            comment: rule.comment.clone(),
        };
        if !self.chains.contains_key(chain) {
            return Err(Conflict::Missing(object()));
        }
        let lookups = rule.matches.iter().filter_map(|matched| match matched {
            Match::Lookup { key, set, .. } => Some((&key[..], set, false)),
            _ => None,
        });
        let map = match &rule.action {
            Action::VerdictMap { key, map } => Some((&key[..], map, true)),
            Action::Update(update) => Some((&update.key[..], &update.set, false)),
            Action::Verdict(_) | Action::SetCtMark { .. } | Action::Log(_) => None,
        };
        for (fields, name, is_map) in lookups.chain(map) {
            let set = self
                .sets
                .get(name)
                .ok_or_else(|| Conflict::Missing(object()))?;
            let fits = fields.len() == set.key.len()
                && fields
                    .iter()
                    .zip(&set.key)
                    .all(|(field, key_type)| field.key_type() == *key_type);
            let data_fits = match (&rule.action, &set.dynamic) {
                (Action::Update(update), Some(dynamic)) if *name == update.set => {
                    update.data.len() == dynamic.data.len()
                        && update
                            .data
                            .iter()
                            .zip(&dynamic.data)
                            .all(|(field, key_type)| field.key_type() == *key_type)
                }
                (Action::Update(update), None) => *name != update.set,
                _ => true,
            };
            if !fits || !data_fits || (is_map && !set.is_verdict_map) {
                return Err(Conflict::KeyMismatch(object()));
            }
        }
        if let Action::Verdict(Verdict::Jump(target) | Verdict::Goto(target)) = &rule.action {
            if !self.chains.contains_key(target) {
                return Err(Conflict::Missing(object()));
            }
        }
        if let Some(chain) = self.chains.get_mut(chain) {
            chain.rules.push(rule.clone());
        }
        Ok(())
    }
}

fn element_object(set: &str, element: &Element, conflict: fn(Object) -> Conflict) -> Conflict {
    conflict(Object::Element {
        set: set.to_owned(),
        element: Box::new(element.clone()),
    })
}

/// The element of `elements` with the key of `element`, whatever map data
/// either carries: the kernel finds elements by key alone. Elements order by
/// key first and `None` data sorts first, so it is the first one from the
/// key without data.
fn held_with_key<'a>(elements: &'a BTreeSet<Element>, element: &Element) -> Option<&'a Element> {
    elements
        .range(Element::range(element.start().to_vec(), element.end().to_vec())..)
        .next()
        .filter(|held| held.start() == element.start() && held.end() == element.end())
}

/// Whether the key `point` falls in every field range of `element`.
fn contains(element: &Element, point: &[Value]) -> bool {
    element
        .start()
        .iter()
        .zip(element.end())
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
