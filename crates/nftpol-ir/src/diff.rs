//! Previous IR + next IR → the minimal ordered change, ready to become one
//! netlink batch.
//!
//! The order of [`Diff::changes`] is an order the kernel accepts inside one
//! transaction: references are removed before what they point at is deleted,
//! and what a rule or a map element points at exists before it is added.
//!
//! - Sets whose shape is unchanged get element adds and deletes only; a vmap
//!   element whose verdict changes is a delete plus an add (the kernel answers
//!   EEXIST to an add over an existing key).
//! - Concatenated interval (pipapo) sets are never patched: a delete there costs
//!   O(set size) in the kernel (≈ 50 ms per delete at 100k elements, see
//!   `shared/notes/nftables-netlink.md`). When their elements change the set is
//!   replaced (delete + re-create + re-add the rules that use it), which only
//!   happens when a policy changes because they hold policy-derived data only.
//! - A chain whose rules change is flushed and its rules re-added.
//!
//! Batch order: add table, flush chains, delete elements, delete sets, delete
//! chains, add sets (the most looked up first: see [`sets_by_use`]), add
//! chains, add elements, add rules.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::{Chain, Element, Rule, Ruleset, Set};

/// One step of a transaction on table `inet nftpol`.
///
/// Rules and elements are borrowed from the two rulesets a [`diff`]
/// compares where they can be: a first sync adds every rule and element of
/// the table, and owned copies of them would double the ruleset's memory
/// until the batch is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// Create the table (first apply only).
    AddTable,
    /// Remove every rule of an existing chain.
    FlushChain(String),
    /// Remove elements from an existing set.
    DeleteElements {
        /// The set.
        set: String,
        /// Elements the set holds now.
        elements: Elements<'a>,
    },
    /// Delete a chain (already flushed and unreferenced).
    DeleteChain(String),
    /// Delete a set (no rule references it any more).
    DeleteSet(String),
    /// Create a set without elements (see [`Set::shape`]).
    AddSet(Set),
    /// Create a chain without rules.
    AddChain(Chain),
    /// Add elements to a set.
    AddElements {
        /// The set.
        set: String,
        /// Elements the set does not hold yet.
        elements: Elements<'a>,
    },
    /// Append a rule to a chain.
    AddRule {
        /// The chain.
        chain: String,
        /// The rule.
        rule: Cow<'a, Rule>,
    },
}

impl Change<'_> {
    /// The same change, owning what it borrowed.
    pub fn into_owned(self) -> Change<'static> {
        match self {
            Change::AddTable => Change::AddTable,
            Change::FlushChain(name) => Change::FlushChain(name),
            Change::DeleteElements { set, elements } => Change::DeleteElements {
                set,
                elements: elements.into_owned(),
            },
            Change::DeleteChain(name) => Change::DeleteChain(name),
            Change::DeleteSet(name) => Change::DeleteSet(name),
            Change::AddSet(set) => Change::AddSet(set),
            Change::AddChain(chain) => Change::AddChain(chain),
            Change::AddElements { set, elements } => Change::AddElements {
                set,
                elements: elements.into_owned(),
            },
            Change::AddRule { chain, rule } => Change::AddRule {
                chain,
                rule: Cow::Owned(rule.into_owned()),
            },
        }
    }
}

/// The elements of one element change, borrowed from a set or owned.
/// Equal when they list equal elements in the same order, whoever owns them.
#[derive(Debug, Clone)]
pub enum Elements<'a> {
    /// Elements of a set that outlives the change.
    Borrowed(Vec<&'a Element>),
    /// Elements made for the change.
    Owned(Vec<Element>),
}

impl<'a> Elements<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Elements::Borrowed(elements) => elements.len(),
            Elements::Owned(elements) => elements.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at `index`.
    pub fn get(&self, index: usize) -> Option<&Element> {
        match self {
            Elements::Borrowed(elements) => elements.get(index).copied(),
            Elements::Owned(elements) => elements.get(index),
        }
    }

    /// The elements, in order.
    pub fn iter(&self) -> ElementsIter<'_, 'a> {
        match self {
            Elements::Borrowed(elements) => ElementsIter::Borrowed(elements.iter()),
            Elements::Owned(elements) => ElementsIter::Owned(elements.iter()),
        }
    }

    /// The same elements, owned.
    pub fn into_owned(self) -> Elements<'static> {
        match self {
            Elements::Borrowed(elements) => {
                Elements::Owned(elements.into_iter().cloned().collect())
            }
            Elements::Owned(elements) => Elements::Owned(elements),
        }
    }
}

/// The iterator of [`Elements::iter`].
#[derive(Debug, Clone)]
pub enum ElementsIter<'b, 'a> {
    /// Over borrowed elements.
    Borrowed(std::slice::Iter<'b, &'a Element>),
    /// Over owned elements.
    Owned(std::slice::Iter<'b, Element>),
}

impl<'b> Iterator for ElementsIter<'b, '_> {
    type Item = &'b Element;

    fn next(&mut self) -> Option<&'b Element> {
        match self {
            ElementsIter::Borrowed(elements) => elements.next().copied(),
            ElementsIter::Owned(elements) => elements.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ElementsIter::Borrowed(elements) => elements.size_hint(),
            ElementsIter::Owned(elements) => elements.size_hint(),
        }
    }
}

impl ExactSizeIterator for ElementsIter<'_, '_> {}

impl<'b, 'a> IntoIterator for &'b Elements<'a> {
    type Item = &'b Element;
    type IntoIter = ElementsIter<'b, 'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Vec<Element>> for Elements<'static> {
    fn from(elements: Vec<Element>) -> Self {
        Elements::Owned(elements)
    }
}

impl FromIterator<Element> for Elements<'static> {
    fn from_iter<I: IntoIterator<Item = Element>>(elements: I) -> Self {
        Elements::Owned(elements.into_iter().collect())
    }
}

impl<'a> FromIterator<&'a Element> for Elements<'a> {
    fn from_iter<I: IntoIterator<Item = &'a Element>>(elements: I) -> Self {
        Elements::Borrowed(elements.into_iter().collect())
    }
}

impl PartialEq for Elements<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Elements<'_> {}

/// An ordered list of changes; applied in order, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff<'a> {
    /// The changes, in an order the kernel accepts.
    pub changes: Vec<Change<'a>>,
}

impl<'a> Diff<'a> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether only set elements change (pod churn).
    pub fn is_element_only(&self) -> bool {
        self.changes.iter().all(|change| {
            matches!(
                change,
                Change::AddElements { .. } | Change::DeleteElements { .. }
            )
        })
    }

    /// The diff without its element changes: what it does to the
    /// structure of a table (see [`Ruleset::without_elements`]).
    #[must_use]
    pub fn without_elements(&self) -> Diff<'a> {
        Diff {
            changes: self
                .changes
                .iter()
                .filter(|change| {
                    !matches!(
                        change,
                        Change::AddElements { .. } | Change::DeleteElements { .. }
                    )
                })
                .cloned()
                .collect(),
        }
    }

    /// Elements added and deleted, in that order.
    pub fn element_counts(&self) -> (usize, usize) {
        self.changes
            .iter()
            .fold((0, 0), |(added, deleted), change| match change {
                Change::AddElements { elements, .. } => (added + elements.len(), deleted),
                Change::DeleteElements { elements, .. } => (added, deleted + elements.len()),
                _ => (added, deleted),
            })
    }

    /// The same diff, owning what it borrowed.
    pub fn into_owned(self) -> Diff<'static> {
        Diff {
            changes: self.changes.into_iter().map(Change::into_owned).collect(),
        }
    }
}

/// The changes that turn `previous` into `next`; `previous` is `None` when the
/// table does not exist yet.
pub fn diff<'a>(previous: Option<&'a Ruleset>, next: &'a Ruleset) -> Diff<'a> {
    // Static: the diff borrows from both rulesets (from this one, nothing).
    static EMPTY: Ruleset = Ruleset {
        chains: BTreeMap::new(),
        sets: BTreeMap::new(),
    };
    let plan = Plan::new(previous.unwrap_or(&EMPTY), next);
    let mut changes = Vec::new();
    if previous.is_none() {
        changes.push(Change::AddTable);
    }
    let (deletions, additions) = plan.element_changes();
    changes.extend(plan.flushes());
    changes.extend(deletions);
    // Sets go before chains: a verdict map element pointing at a chain holds a
    // reference the kernel checks when the chain is deleted (EBUSY).
    changes.extend(
        plan.removed_sets
            .iter()
            .chain(&plan.replaced_sets)
            .map(|name| Change::DeleteSet((*name).to_owned())),
    );
    changes.extend(
        plan.removed_chains
            .iter()
            .map(|name| Change::DeleteChain((*name).to_owned())),
    );
    changes.extend(
        plan.created_sets_by_use()
            .into_iter()
            .map(|set| Change::AddSet(set.shape())),
    );
    let created_chains: Vec<&Chain> = plan.created_chains().collect();
    changes.extend(created_chains.iter().map(|chain| {
        Change::AddChain(Chain {
            rules: Vec::new(),
            ..(*chain).clone()
        })
    }));
    changes.extend(additions);
    let refilled = created_chains
        .into_iter()
        .chain(plan.rewritten_chains.iter().map(|name| &next.chains[*name]));
    for chain in refilled {
        changes.extend(chain.rules.iter().map(|rule| Change::AddRule {
            chain: chain.name.clone(),
            rule: Cow::Borrowed(rule),
        }));
    }
    Diff { changes }
}

/// What changes between two rulesets, object by object.
struct Plan<'a> {
    old: &'a Ruleset,
    next: &'a Ruleset,
    /// Sets whose shape changed, or pipapo sets whose elements changed.
    replaced_sets: BTreeSet<&'a str>,
    removed_sets: BTreeSet<&'a str>,
    /// Chains gone, or base chains whose hook, priority or policy changed.
    removed_chains: BTreeSet<&'a str>,
    /// Kept chains whose rules must be re-added.
    rewritten_chains: BTreeSet<&'a str>,
}

impl<'a> Plan<'a> {
    fn new(old: &'a Ruleset, next: &'a Ruleset) -> Self {
        let replaced_sets: BTreeSet<&str> = next
            .sets
            .values()
            .filter(|set| {
                old.sets
                    .get(&set.name)
                    .is_some_and(|was| must_replace(was, set))
            })
            .map(|set| set.name.as_str())
            .collect();
        let removed_sets = old
            .sets
            .keys()
            .filter(|name| !next.sets.contains_key(*name))
            .map(String::as_str)
            .collect();
        let removed_chains: BTreeSet<&str> = old
            .chains
            .values()
            .filter(|chain| {
                next.chains
                    .get(&chain.name)
                    .is_none_or(|now| now.base != chain.base)
            })
            .map(|chain| chain.name.as_str())
            .collect();
        let rewritten_chains = next
            .chains
            .values()
            .filter(|chain| match old.chains.get(&chain.name) {
                Some(was) if !removed_chains.contains(was.name.as_str()) => {
                    was.rules != chain.rules
                        || chain
                            .rules
                            .iter()
                            .any(|rule| references_any(rule, &replaced_sets))
                }
                _ => false,
            })
            .map(|chain| chain.name.as_str())
            .collect();
        Self {
            old,
            next,
            replaced_sets,
            removed_sets,
            removed_chains,
            rewritten_chains,
        }
    }

    /// Chains whose rules go away: rewritten or removed ones that have rules.
    fn flushes(&self) -> impl Iterator<Item = Change<'a>> + '_ {
        self.rewritten_chains
            .iter()
            .chain(&self.removed_chains)
            .filter(|name| !self.old.chains[**name].rules.is_empty())
            .map(|name| Change::FlushChain((*name).to_owned()))
    }

    /// Element deletes from kept sets, and element adds to kept and new sets.
    fn element_changes(&self) -> (Vec<Change<'a>>, Vec<Change<'a>>) {
        let mut deletions = Vec::new();
        let mut additions = Vec::new();
        for set in self.next.sets.values() {
            let (deleted, added) = match self.old.sets.get(&set.name) {
                Some(was) if !self.replaced_sets.contains(set.name.as_str()) => {
                    element_changes(was, set)
                }
                _ => (
                    Elements::Borrowed(Vec::new()),
                    set.elements.iter().collect(),
                ),
            };
            if !deleted.is_empty() {
                deletions.push(Change::DeleteElements {
                    set: set.name.clone(),
                    elements: deleted,
                });
            }
            if !added.is_empty() {
                additions.push(Change::AddElements {
                    set: set.name.clone(),
                    elements: added,
                });
            }
        }
        (deletions, additions)
    }

    fn created_sets(&self) -> impl Iterator<Item = &'a Set> + '_ {
        self.next.sets.values().filter(|set| {
            !self.old.sets.contains_key(&set.name) || self.replaced_sets.contains(set.name.as_str())
        })
    }

    /// The created sets, in [`sets_by_use`] order.
    fn created_sets_by_use(&self) -> Vec<&'a Set> {
        sets_by_use(self.next, self.created_sets())
    }

    fn created_chains(&self) -> impl Iterator<Item = &'a Chain> + '_ {
        self.next.chains.values().filter(|chain| {
            !self.old.chains.contains_key(&chain.name)
                || self.removed_chains.contains(chain.name.as_str())
        })
    }
}

/// `sets` of `ruleset`, those the most of its rules name first (then by
/// name): the order a diff creates new sets in, and [`crate::render`]
/// writes them in.
///
/// The kernel finds the set of a rule's lookup, verdict map or update by
/// walking the table's sets in creation order, comparing names: a set
/// created late costs every rule using it a walk past all the others. At
/// 10,000 policies (5,600 sets, 44,000 rules) those walks were most of a
/// first sync's kernel time, with the few port sets most rules use last in
/// name order (`ports-…` sorts after `pods-…`). The verdict log's `dnat-origins-…` maps, named only by
/// update rules (two in every isolating group's chain), came last too until
/// updates counted: the agent's default first sync at 10k pods and 10k
/// policies went from 9.0 to 4.4 s of kernel commit.
pub fn sets_by_use<'a>(ruleset: &Ruleset, sets: impl IntoIterator<Item = &'a Set>) -> Vec<&'a Set> {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for rule in ruleset.chains.values().flat_map(|chain| &chain.rules) {
        for set in rule.referenced_sets() {
            *uses.entry(set).or_default() += 1;
        }
    }
    let mut sets: Vec<&Set> = sets.into_iter().collect();
    let used = |set: &Set| uses.get(set.name.as_str()).copied().unwrap_or(0);
    sets.sort_by(|a, b| used(b).cmp(&used(a)).then_with(|| a.name.cmp(&b.name)));
    sets
}

/// Whether `next` cannot be reached from `was` by element changes.
fn must_replace(was: &Set, next: &Set) -> bool {
    was.shape() != next.shape()
        || (next.is_concatenated_interval() && was.elements != next.elements)
}

/// Elements to delete from and to add to `was` so it equals `next`.
fn element_changes<'a>(was: &'a Set, next: &'a Set) -> (Elements<'a>, Elements<'a>) {
    let deleted = was.elements.difference(&next.elements).collect();
    let added = next.elements.difference(&was.elements).collect();
    (deleted, added)
}

/// Whether the rule looks up, maps through or updates one of `sets`.
fn references_any(rule: &Rule, sets: &BTreeSet<&str>) -> bool {
    rule.referenced_sets().any(|set| sets.contains(set))
}
