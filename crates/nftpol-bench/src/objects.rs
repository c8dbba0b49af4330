//! Measurement 9: what one kernel object costs in a commit.
//!
//! A full commit at 10,000 policies (18k chains, 44k rules, 5.6k sets) takes
//! seconds, and `nft -f` of the same ruleset about as long: the kernel's
//! work per object dominates both. This measurement says which kind of
//! object that work is spent on. Each point commits one first-sync batch
//! into a fresh network namespace: a baseline table (one base chain, one
//! regular chain, one empty set) plus `count` objects of one kind, nothing
//! else varied. The cost per object is the commit time over the baseline's,
//! divided by the count; two counts show whether the cost grows with the
//! number of objects already in the table (a per-object cost that rises
//! with the count is superlinear).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use nftpol_ir::diff::diff;
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, Element, Field, Hook, KeyType, Match, Rule, Ruleset,
    Set, Value, Verdict,
};
use serde::{Deserialize, Serialize};

use crate::commit::commit_in_fresh_netns;
use crate::measure::{usize_f64, Summary};

/// The kind of object a point adds to the baseline table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// A regular chain with a comment, no rules, nothing jumping to it.
    Chain,
    /// A regular chain as above, jumped to by one rule of the base chain
    /// (what makes the kernel validate it for loops): a chain and a rule.
    JumpedChain,
    /// A rule in the one regular chain: a set lookup, a counter, `accept`
    /// and a comment, like a policy's allow rule.
    Rule,
    /// An empty `ipv4_addr` hash set with a comment.
    Set,
    /// A set as above and a rule as above looking it up (a policy's peer
    /// set and its allow rule): a set and a rule.
    LookedUpSet,
    /// One address in the one hash set.
    Element,
    /// One address range in one `ipv4_addr` interval set.
    IntervalElement,
}

impl ObjectKind {
    /// Every kind, in report order.
    pub const ALL: &[Self] = &[
        Self::Chain,
        Self::JumpedChain,
        Self::Rule,
        Self::Set,
        Self::LookedUpSet,
        Self::Element,
        Self::IntervalElement,
    ];

    /// What the report calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chain => "chain (empty, unreferenced)",
            Self::JumpedChain => "chain + the rule jumping to it",
            Self::Rule => "rule (set lookup, counter, accept)",
            Self::Set => "set (empty ipv4 hash)",
            Self::LookedUpSet => "set + a rule looking it up",
            Self::Element => "element (ipv4 hash set)",
            Self::IntervalElement => "element (ipv4 interval set)",
        }
    }

    /// Whether the counts of [`Counts::elements`] apply (elements are far
    /// cheaper than the other kinds, so they are measured in larger numbers).
    fn is_element(self) -> bool {
        matches!(self, Self::Element | Self::IntervalElement)
    }
}

/// How many objects the points add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Chains, rules and sets per point.
    pub objects: Vec<usize>,
    /// Elements per point.
    pub elements: Vec<usize>,
    /// Commits per point (each in a fresh namespace).
    pub runs: usize,
}

/// One point: `count` objects of `kind` over the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectPoint {
    /// The kind added.
    pub kind: ObjectKind,
    /// How many.
    pub count: usize,
    /// Netlink messages in the batch.
    pub messages: usize,
    /// Batch bytes.
    pub bytes: usize,
    /// Commit to the kernel's ack, ms, per run.
    pub commit: Summary,
}

impl ObjectPoint {
    /// Microseconds per object over `baseline` (median commit times).
    pub fn per_object_us(&self, baseline: &Summary) -> f64 {
        (self.commit.p50 - baseline.p50) * 1000.0 / usize_f64(self.count.max(1))
    }
}

/// What measurement 9 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectsResult {
    /// The baseline table alone, ms per run.
    pub baseline: Summary,
    /// Every kind at every count.
    pub points: Vec<ObjectPoint>,
}

impl ObjectsResult {
    /// The µs per object of `kind` in a table holding `count` of them:
    /// interpolated linearly in the count between the measured points
    /// (the cost per object grows with the count for some kinds), the
    /// nearest point's outside them; 0 if the kind was not measured.
    pub fn per_object_us_at(&self, kind: ObjectKind, count: usize) -> f64 {
        let mut points: Vec<(f64, f64)> = self
            .points
            .iter()
            .filter(|point| point.kind == kind)
            .map(|point| (usize_f64(point.count), point.per_object_us(&self.baseline)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let at = usize_f64(count);
        match (points.first(), points.last()) {
            (Some(&(first_n, first_us)), _) if at <= first_n => first_us,
            (_, Some(&(last_n, last_us))) if at >= last_n => last_us,
            _ => points
                .windows(2)
                .find(|pair| pair[0].0 <= at && at <= pair[1].0)
                .map_or(0.0, |pair| {
                    let ((n0, us0), (n1, us1)) = (pair[0], pair[1]);
                    us0 + (us1 - us0) * (at - n0) / (n1 - n0)
                }),
        }
    }
}

const BASE: &str = "filter-forward";
const HOST_CHAIN: &str = "host";
const HOST_SET: &str = "host-addrs";
const HOST_INTERVALS: &str = "host-ranges";

/// The baseline table: one base chain, one regular chain, one hash set and
/// one interval set, all empty.
fn baseline() -> Ruleset {
    let mut ruleset = Ruleset::default();
    for chain in [
        Chain {
            name: BASE.to_owned(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: ChainPolicy::Accept,
            }),
            comment: None,
            rules: Vec::new(),
        },
        regular_chain(HOST_CHAIN.to_owned()),
    ] {
        ruleset.chains.insert(chain.name.clone(), chain);
    }
    for (name, interval) in [(HOST_SET, false), (HOST_INTERVALS, true)] {
        ruleset
            .sets
            .insert(name.to_owned(), ipv4_set(name, interval));
    }
    ruleset
}

fn regular_chain(name: String) -> Chain {
    Chain {
        comment: Some(format!("measured object {name}")),
        name,
        base: None,
        rules: Vec::new(),
    }
}

fn ipv4_set(name: &str, interval: bool) -> Set {
    Set {
        name: name.to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval,
        is_verdict_map: false,
        dynamic: None,
        comment: Some(format!("measured object {name}")),
        elements: BTreeSet::new(),
    }
}

fn address(index: usize) -> Ipv4Addr {
    // Spaced four apart, so interval elements never touch.
    let offset = u32::try_from(index * 4).expect("point counts far below 2^30");
    Ipv4Addr::from(0x0a00_0000 + offset)
}

/// The baseline with `count` objects of `kind`.
fn table(kind: ObjectKind, count: usize) -> Ruleset {
    let mut ruleset = baseline();
    for index in 0..count {
        match kind {
            ObjectKind::Chain | ObjectKind::JumpedChain => {
                let chain = regular_chain(format!("object-{index}"));
                if kind == ObjectKind::JumpedChain {
                    push_rule(
                        &mut ruleset,
                        BASE,
                        Rule {
                            matches: Vec::new(),
                            counter: false,
                            action: Action::Verdict(Verdict::Jump(chain.name.clone())),
                            comment: None,
                        },
                    );
                }
                ruleset.chains.insert(chain.name.clone(), chain);
            }
            ObjectKind::Rule => push_rule(&mut ruleset, HOST_CHAIN, allow_rule(HOST_SET, index)),
            ObjectKind::Set | ObjectKind::LookedUpSet => {
                let name = format!("object-{index}");
                if kind == ObjectKind::LookedUpSet {
                    push_rule(&mut ruleset, HOST_CHAIN, allow_rule(&name, index));
                }
                ruleset.sets.insert(name.clone(), ipv4_set(&name, false));
            }
            ObjectKind::Element => push_element(
                &mut ruleset,
                HOST_SET,
                Element::key(vec![Value::Ipv4(address(index))]),
            ),
            ObjectKind::IntervalElement => {
                let first = address(index);
                let last = Ipv4Addr::from(u32::from(first) + 1);
                push_element(
                    &mut ruleset,
                    HOST_INTERVALS,
                    Element::range(vec![Value::Ipv4(first)], vec![Value::Ipv4(last)]),
                );
            }
        }
    }
    ruleset
}

/// A policy's allow rule: `ip saddr @set counter accept`, commented.
fn allow_rule(set: &str, index: usize) -> Rule {
    Rule {
        matches: vec![Match::Lookup {
            key: vec![Field::Ipv4Saddr].into(),
            set: set.to_owned(),
            negated: false,
        }],
        counter: true,
        action: Action::Verdict(Verdict::Accept),
        comment: Some(format!("measured rule {index}")),
    }
}

fn push_rule(ruleset: &mut Ruleset, chain: &str, rule: Rule) {
    ruleset
        .chains
        .get_mut(chain)
        .expect("the baseline has the chain")
        .rules
        .push(rule);
}

fn push_element(ruleset: &mut Ruleset, set: &str, element: Element) {
    ruleset
        .sets
        .get_mut(set)
        .expect("the baseline has the set")
        .elements
        .insert(element);
}

/// Commits `ruleset` as a first sync into a fresh namespace `runs` times:
/// (messages, bytes, commit ms per run).
fn commit(ruleset: &Ruleset, runs: usize) -> Result<(usize, usize, Summary)> {
    let changes = diff(None, ruleset);
    let mut times = Vec::new();
    let mut sent = (0, 0);
    for _ in 0..runs.max(1) {
        let (applied, elapsed) = commit_in_fresh_netns(&changes)?;
        sent = (applied.messages, applied.bytes);
        times.push(elapsed);
    }
    Ok((sent.0, sent.1, Summary::of(&times)))
}

/// Runs measurement 9 at `counts`.
pub fn run(counts: &Counts) -> Result<ObjectsResult> {
    let (_, _, baseline_commit) = commit(&baseline(), counts.runs)?;
    let mut points = Vec::new();
    for &kind in ObjectKind::ALL {
        let sizes = if kind.is_element() {
            &counts.elements
        } else {
            &counts.objects
        };
        for &count in sizes {
            let (messages, bytes, summary) = commit(&table(kind, count), counts.runs)
                .with_context(|| format!("{} × {count}", kind.label()))?;
            points.push(ObjectPoint {
                kind,
                count,
                messages,
                bytes,
                commit: summary,
            });
        }
    }
    Ok(ObjectsResult {
        baseline: baseline_commit,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_point_adds_only_its_own_kind_of_object() {
        let base = baseline();
        for &kind in ObjectKind::ALL {
            let ruleset = table(kind, 3);
            let added_chains = ruleset.chains.len() - base.chains.len();
            let added_sets = ruleset.sets.len() - base.sets.len();
            let added_rules = ruleset.rule_count() - base.rule_count();
            let added_elements = ruleset.element_count() - base.element_count();
            let want = match kind {
                ObjectKind::Chain => (3, 0, 0, 0),
                ObjectKind::JumpedChain => (3, 0, 3, 0),
                ObjectKind::Rule => (0, 0, 3, 0),
                ObjectKind::Set => (0, 3, 0, 0),
                ObjectKind::LookedUpSet => (0, 3, 3, 0),
                ObjectKind::Element | ObjectKind::IntervalElement => (0, 0, 0, 3),
            };
            assert_eq!(
                (added_chains, added_sets, added_rules, added_elements),
                want,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn per_object_cost_interpolates_between_the_measured_counts() {
        let summary = |p50| Summary {
            n: 1,
            mean: p50,
            p50,
            p99: p50,
            min: p50,
            max: p50,
        };
        let point = |count, ms| ObjectPoint {
            kind: ObjectKind::Set,
            count,
            messages: count,
            bytes: 0,
            commit: summary(ms),
        };
        // 10 µs each at 1,000 sets, 30 µs each at 3,000.
        let result = ObjectsResult {
            baseline: summary(0.0),
            points: vec![point(1000, 10.0), point(3000, 90.0)],
        };
        let at = |count| result.per_object_us_at(ObjectKind::Set, count);
        assert!((at(2000) - 20.0).abs() < 1e-9, "{}", at(2000));
        assert!((at(500) - 10.0).abs() < 1e-9, "below: the first point's");
        assert!((at(9000) - 30.0).abs() < 1e-9, "above: the last point's");
        assert!(result.per_object_us_at(ObjectKind::Rule, 10).abs() < 1e-9);
    }
}
