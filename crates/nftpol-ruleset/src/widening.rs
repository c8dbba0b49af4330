//! Whether a new ruleset accepts every packet an old one accepts, decided
//! from their structure: the test behind
//! [`may_remove_permission`](crate::rejudge::may_remove_permission).
//!
//! Sound, not complete: "widens" is claimed only where an argument holds
//! for every packet, and anything else counts as possibly narrowing (the
//! caller then re-judges, which costs established flows one pass and
//! loses none).
//!
//! The argument, chain by chain. Take a chain's packets in three classes:
//! accepted (`accept`, or `goto stamp-*` which stamps and accepts), denied
//! (`drop`, `reject`), and the rest, which return to the caller. The new
//! chain *widens* the old one when its accepted class contains the old one's
//! and its denied class lies inside the old one's. That holds when the new
//! rules are the old ones, in order, except that
//! - a new rule that accepts, logs, or jumps into a chain that never denies
//!   may be inserted anywhere (it can only accept earlier, or do nothing);
//! - an old rule that denies or logs may be left out;
//! - a rule kept may match more packets if it accepts and fewer if it
//!   denies: its set lookups get more elements (`!=` lookups fewer) or fewer
//!   (`!=` more), element by element (an old interval inside a new one
//!   counts as kept);
//! - a rule kept that jumps, goes to or maps into other chains matches the
//!   same packets, and each chain it reaches widens the old one it reached
//!   (a map's old keys keep a widening verdict; a new key may only accept
//!   or jump into a chain that never denies).
//!
//! Any packet the old chain accepted then meets no new denial before the
//! rule that accepted it, which still accepts it (or an earlier one does);
//! a packet the old chain returned is neither denied by the new one nor
//! by a chain it reaches. Base chains compare by name, so the whole new
//! ruleset accepts, in every base chain, what the old one accepted.
//! `ct mark set` rules must stay identical: a mark written can change what
//! a later `ct mark` test matches.

use std::collections::{BTreeMap, BTreeSet};

use nftpol_ir::{Action, Chain, Element, Match, Rule, Ruleset, Set, Verdict};

/// How deep chains may call each other before the answer is "narrows"
/// (the compiler's chains nest three deep; the kernel allows 16).
const MAX_DEPTH: usize = 16;

/// Whether `new` accepts, in every base chain, every packet `old` accepts.
pub(crate) fn widens(old: &Ruleset, new: &Ruleset, stamps: &[String]) -> bool {
    let mut check = Widening {
        old,
        new,
        stamps,
        sets: BTreeMap::new(),
        chains: BTreeMap::new(),
    };
    let bases_kept = old
        .chains
        .values()
        .filter(|chain| chain.base.is_some())
        .all(|chain| {
            new.chains
                .get(&chain.name)
                .is_some_and(|next| next.base == chain.base && check.chain(chain, next, 0))
        });
    bases_kept
        && new
            .chains
            .values()
            .filter(|chain| chain.base.is_some())
            .all(|chain| old.chains.contains_key(&chain.name))
}

/// What a rule does to the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Accepts them (`accept`, `goto stamp-*`).
    Accepts,
    /// Denies them (`drop`, `reject`).
    Denies,
    /// Logs them and goes on.
    Logs,
    /// Anything else: jumps, gotos, maps, `return`, `ct mark set`.
    Other,
}

/// How a kept set must relate to its old self.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Relation {
    /// Every old element is covered by a new one.
    Grows,
    /// Every new element is covered by an old one.
    Shrinks,
}

struct Widening<'a> {
    old: &'a Ruleset,
    new: &'a Ruleset,
    stamps: &'a [String],
    /// Set comparisons already made: (old set, new set, relation).
    sets: BTreeMap<(String, String, Relation), bool>,
    /// Chain comparisons already made (every pod of a group leads to the
    /// same pair): (old chain, new chain).
    chains: BTreeMap<(String, String), bool>,
}

impl Widening<'_> {
    fn effect(&self, rule: &Rule) -> Effect {
        match &rule.action {
            Action::Verdict(Verdict::Accept) => Effect::Accepts,
            Action::Verdict(Verdict::Goto(target)) if self.stamps.contains(target) => {
                Effect::Accepts
            }
            Action::Verdict(Verdict::Drop | Verdict::Reject) => Effect::Denies,
            Action::Log(_) => Effect::Logs,
            _ => Effect::Other,
        }
    }

    /// Whether `new` widens `old` (see the module doc).
    fn chain(&mut self, old: &Chain, new: &Chain, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let mut remaining = old.rules.iter().peekable();
        for rule in &new.rules {
            loop {
                match remaining.peek() {
                    Some(kept) if self.rule(kept, rule, depth) => {
                        remaining.next();
                        break;
                    }
                    _ if self.insertable(rule, depth) => break,
                    Some(dropped)
                        if matches!(self.effect(dropped), Effect::Denies | Effect::Logs) =>
                    {
                        remaining.next();
                    }
                    _ => return false,
                }
            }
        }
        remaining.all(|rule| matches!(self.effect(rule), Effect::Denies | Effect::Logs))
    }

    /// Whether `rule`, new, may stand anywhere in a chain that widens.
    fn insertable(&mut self, rule: &Rule, depth: usize) -> bool {
        match self.effect(rule) {
            Effect::Accepts | Effect::Logs => true,
            Effect::Denies => false,
            Effect::Other => match &rule.action {
                Action::Verdict(Verdict::Jump(target)) => self.never_denies(target, depth + 1),
                _ => false,
            },
        }
    }

    /// Whether the new ruleset's chain `name` never denies a packet, nor
    /// leaves the chain that jumped to it other than by returning.
    fn never_denies(&self, name: &str, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Some(chain) = self.new.chains.get(name) else {
            return false;
        };
        chain.rules.iter().all(|rule| match self.effect(rule) {
            Effect::Accepts | Effect::Logs => true,
            Effect::Denies => false,
            Effect::Other => match &rule.action {
                Action::Verdict(Verdict::Jump(target)) => self.never_denies(target, depth + 1),
                _ => false,
            },
        })
    }

    /// Whether `new` keeps `old`: the same conditions but for the sets they
    /// look up, which relate as the rule's effect allows, and the same
    /// action, whose chains widen.
    fn rule(&mut self, old: &Rule, new: &Rule, depth: usize) -> bool {
        let effect = self.effect(old);
        if effect != self.effect(new) || old.matches.len() != new.matches.len() {
            return false;
        }
        let action_kept = match (&old.action, &new.action) {
            (Action::Verdict(Verdict::Jump(was)), Action::Verdict(Verdict::Jump(is)))
            | (Action::Verdict(Verdict::Goto(was)), Action::Verdict(Verdict::Goto(is)))
                if effect == Effect::Other =>
            {
                self.named_chains(was, is, depth + 1)
            }
            (
                Action::VerdictMap {
                    key: was_key,
                    map: was,
                },
                Action::VerdictMap {
                    key: is_key,
                    map: is,
                },
            ) => was_key == is_key && self.map(was, is, depth + 1),
            (Action::Log(_), Action::Log(_)) => true,
            (was, is) => was == is,
        };
        action_kept
            && old.matches.iter().zip(&new.matches).all(|pair| match pair {
                (
                    Match::Lookup {
                        key: was_key,
                        set: was,
                        negated: was_negated,
                    },
                    Match::Lookup {
                        key: is_key,
                        set: is,
                        negated: is_negated,
                    },
                ) if was_key == is_key && was_negated == is_negated => {
                    // The packets the lookup matches may grow in an accepting
                    // rule and shrink in a denying one; elsewhere they stay.
                    let grows = match (effect, *was_negated) {
                        (Effect::Accepts, false) | (Effect::Denies, true) => vec![Relation::Grows],
                        (Effect::Accepts, true) | (Effect::Denies, false) => {
                            vec![Relation::Shrinks]
                        }
                        (Effect::Logs, _) => vec![],
                        (Effect::Other, _) => vec![Relation::Grows, Relation::Shrinks],
                    };
                    grows
                        .into_iter()
                        .all(|relation| self.set(was, is, relation))
                }
                (was, is) => was == is,
            })
    }

    fn named_chains(&mut self, old: &str, new: &str, depth: usize) -> bool {
        if self.stamps.iter().any(|stamp| stamp == old || stamp == new) {
            return old == new;
        }
        let key = (old.to_owned(), new.to_owned());
        if let Some(known) = self.chains.get(&key) {
            return *known;
        }
        let answer = match (self.old.chains.get(old), self.new.chains.get(new)) {
            (Some(was), Some(is)) => self.chain(was, is, depth),
            _ => false,
        };
        self.chains.insert(key, answer);
        answer
    }

    /// Whether `new`'s verdict for each key of `old` widens the old one,
    /// and each key only `new` has may be inserted.
    fn map(&mut self, old: &str, new: &str, depth: usize) -> bool {
        let (Some(was), Some(is)) = (self.old.sets.get(old), self.new.sets.get(new)) else {
            return false;
        };
        if was.key != is.key || was.interval || is.interval {
            return false;
        }
        let verdicts = |set: &Set| -> BTreeMap<Vec<nftpol_ir::Value>, Option<Verdict>> {
            set.elements
                .iter()
                .map(|element| (element.start().to_vec(), element.verdict().cloned()))
                .collect()
        };
        let (was, is) = (verdicts(was), verdicts(is));
        let kept = was
            .iter()
            .all(|(key, verdict)| match (verdict, is.get(key)) {
                (Some(verdict), Some(Some(next))) => self.verdict(verdict, next, depth),
                _ => false,
            });
        kept && is
            .iter()
            .filter(|(key, _)| !was.contains_key(*key))
            .all(|(_, verdict)| match verdict {
                Some(Verdict::Accept) => true,
                Some(Verdict::Goto(target)) => self.stamps.contains(target),
                Some(Verdict::Jump(target)) => self.never_denies(target, depth + 1),
                _ => false,
            })
    }

    fn verdict(&mut self, old: &Verdict, new: &Verdict, depth: usize) -> bool {
        match (old, new) {
            (Verdict::Jump(was), Verdict::Jump(is)) | (Verdict::Goto(was), Verdict::Goto(is)) => {
                self.named_chains(was, is, depth + 1)
            }
            (was, is) => was == is,
        }
    }

    /// Whether set `new` relates to set `old` as `relation` says.
    fn set(&mut self, old: &str, new: &str, relation: Relation) -> bool {
        let key = (old.to_owned(), new.to_owned(), relation);
        if let Some(known) = self.sets.get(&key) {
            return *known;
        }
        let answer = match (self.old.sets.get(old), self.new.sets.get(new)) {
            (Some(was), Some(is))
                if was.key == is.key && !was.is_verdict_map && !is.is_verdict_map =>
            {
                // Most sets are unchanged by a commit: one linear pass.
                was.elements == is.elements
                    || match relation {
                        Relation::Grows => covers(is, &was.elements),
                        Relation::Shrinks => covers(was, &is.elements),
                    }
            }
            _ => false,
        };
        self.sets.insert(key, answer);
        answer
    }
}

/// Whether every element of `elements` lies inside an element of `set`.
fn covers(set: &Set, elements: &BTreeSet<Element>) -> bool {
    elements.iter().all(|element| {
        if set.elements.contains(element) {
            return true;
        }
        if !set.interval {
            return false;
        }
        if set.key.len() == 1 {
            // One field: the set's ranges are disjoint, so only the one
            // starting last at or before the element can hold it.
            let probe = Element::range(element.start().to_vec(), element.start().to_vec());
            let before = set.elements.range(..=probe).next_back();
            let after = set
                .elements
                .range(Element::range(element.start().to_vec(), element.start().to_vec())..)
                .next();
            return before
                .into_iter()
                .chain(after)
                .any(|candidate| inside(element, candidate));
        }
        set.elements
            .iter()
            .any(|candidate| inside(element, candidate))
    })
}

/// Whether `element`'s box lies inside `container`'s, field by field.
fn inside(element: &Element, container: &Element) -> bool {
    element.start().len() == container.start().len()
        && element.end().len() == container.end().len()
        && element
            .start()
            .iter()
            .zip(container.start())
            .all(|(value, low)| low <= value)
        && element
            .end()
            .iter()
            .zip(container.end())
            .all(|(value, high)| value <= high)
}
