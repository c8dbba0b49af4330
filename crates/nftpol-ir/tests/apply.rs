//! `Ruleset::apply` of a diff reaches the diff's target: for any two valid
//! rulesets `a` and `b`, `apply(diff(a, b))` on `a` succeeds and gives `b`,
//! and from no table `apply(diff(None, b))` gives `b`. A failure here is a
//! diff the kernel would refuse (wrong order, an overlap, a busy object) or
//! an applier that drifts from the diff.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use nftpol_ir::diff::diff;
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, Conflict, Element, Field, Hook, KeyType, Match, Object,
    Rule, Ruleset, Set, Value, Verdict,
};
use proptest::prelude::*;

/// The set shapes the compiler uses: hash of addresses, address intervals,
/// concatenated hash, concatenated interval (pipapo), verdict map.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Addresses,
    AddressRanges,
    AddressPorts,
    PortRanges,
    Dispatch,
}

const SHAPES: [Shape; 5] = [
    Shape::Addresses,
    Shape::AddressRanges,
    Shape::AddressPorts,
    Shape::PortRanges,
    Shape::Dispatch,
];

/// Regular chains a rule or a map element may jump to.
const TARGETS: [&str; 3] = ["group-a", "group-b", "group-c"];

fn address(n: u8) -> Value {
    Value::Ipv4(Ipv4Addr::new(10, 0, 0, n))
}

impl Shape {
    fn key(self) -> Vec<KeyType> {
        match self {
            Shape::Addresses | Shape::AddressRanges | Shape::Dispatch => vec![KeyType::Ipv4Addr],
            Shape::AddressPorts => {
                vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService]
            }
            Shape::PortRanges => vec![KeyType::InetProto, KeyType::InetService],
        }
    }

    fn fields(self) -> Vec<Field> {
        self.key()
            .into_iter()
            .map(|key| match key {
                KeyType::Ipv4Addr => Field::Ipv4Saddr,
                KeyType::Ipv6Addr => Field::Ipv6Saddr,
                KeyType::InetProto => Field::L4Proto,
                KeyType::InetService => Field::TransportDport,
            })
            .collect()
    }

    /// Elements from `points`: keys, or disjoint ranges between sorted
    /// distinct points, as the kernel requires.
    fn elements(self, points: &BTreeSet<u8>, jumps: &[usize]) -> BTreeSet<Element> {
        let points: Vec<u8> = points.iter().copied().collect();
        match self {
            Shape::Addresses => points
                .iter()
                .map(|n| Element::key(vec![address(*n)]))
                .collect(),
            Shape::Dispatch => points
                .iter()
                .zip(jumps.iter().cycle())
                .map(|(n, target)| {
                    Element::mapping(
                        vec![address(*n)],
                        Verdict::Jump(TARGETS[target % TARGETS.len()].to_owned()),
                    )
                })
                .collect(),
            Shape::AddressPorts => points
                .iter()
                .map(|n| {
                    Element::key(vec![
                        address(*n),
                        Value::Proto(6),
                        Value::Port(u16::from(*n)),
                    ])
                })
                .collect(),
            Shape::AddressRanges => points
                .chunks_exact(2)
                .map(|pair| Element::range(vec![address(pair[0])], vec![address(pair[1])]))
                .collect(),
            Shape::PortRanges => points
                .chunks_exact(2)
                .map(|pair| {
                    Element::range(
                        vec![Value::Proto(17), Value::Port(u16::from(pair[0]))],
                        vec![Value::Proto(17), Value::Port(u16::from(pair[1]))],
                    )
                })
                .collect(),
        }
    }
}

/// One set: its shape (index into `SHAPES`), its element points and the
/// jump targets of a map's elements.
type SetSpec = (usize, BTreeSet<u8>, Vec<usize>);

/// A ruleset of up to five sets named `set-0` …, the three target chains
/// (each present or not) and one base chain whose rules look sets up and
/// jump to present targets.
fn ruleset() -> impl Strategy<Value = Ruleset> {
    let set = (
        0..SHAPES.len(),
        prop::collection::btree_set(1u8..60, 0..8),
        prop::collection::vec(0usize..3, 1..4),
    );
    (
        prop::collection::vec(prop::option::of(set), 5),
        prop::collection::vec(any::<bool>(), 3),
        prop::collection::vec((0usize..5, 0usize..3, any::<bool>()), 0..6),
        any::<bool>(),
    )
        .prop_map(|(sets, present, rules, base_present)| {
            build(&sets, &present, &rules, base_present)
        })
}

fn build(
    sets: &[Option<SetSpec>],
    present: &[bool],
    rules: &[(usize, usize, bool)],
    base_present: bool,
) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let targets: Vec<usize> = (0..TARGETS.len()).filter(|index| present[*index]).collect();
    for name in targets.iter().map(|index| TARGETS[*index]) {
        ruleset.chains.insert(
            name.to_owned(),
            Chain {
                name: name.to_owned(),
                base: None,
                comment: None,
                rules: vec![Rule {
                    matches: vec![],
                    counter: true,
                    action: Action::Verdict(Verdict::Drop),
                    comment: Some(format!("{name} deny")),
                }],
            },
        );
    }
    for (index, spec) in sets.iter().enumerate() {
        let Some((shape, points, jumps)) = spec else {
            continue;
        };
        let shape = SHAPES[*shape];
        // A map's elements jump only to chains that exist.
        let jumps: Vec<usize> = jumps
            .iter()
            .map(|pick| {
                targets
                    .get(pick % targets.len().max(1))
                    .copied()
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let is_map = matches!(shape, Shape::Dispatch);
        if is_map && targets.is_empty() {
            continue;
        }
        let name = format!("set-{index}");
        ruleset.sets.insert(
            name.clone(),
            Set {
                name,
                key: shape.key(),
                interval: matches!(shape, Shape::AddressRanges | Shape::PortRanges),
                is_verdict_map: is_map,
                dynamic: None,
                comment: None,
                elements: shape.elements(points, &jumps),
            },
        );
    }
    if base_present {
        let mut chain_rules = Vec::new();
        for &(set, target, counter) in rules {
            let name = format!("set-{set}");
            let Some(found) = ruleset.sets.get(&name) else {
                continue;
            };
            let shape = SHAPES[sets[set].as_ref().map_or(0, |spec| spec.0)];
            let action = if found.is_verdict_map {
                Action::VerdictMap {
                    key: shape.fields(),
                    map: name.clone(),
                }
            } else if let Some(target) = targets.get(target % targets.len().max(1)) {
                Action::Verdict(Verdict::Jump(TARGETS[*target].to_owned()))
            } else {
                Action::Verdict(Verdict::Accept)
            };
            let matches = if found.is_verdict_map {
                vec![]
            } else {
                vec![Match::Lookup {
                    key: shape.fields().into(),
                    set: name,
                    negated: false,
                }]
            };
            chain_rules.push(Rule {
                matches,
                counter,
                action,
                comment: None,
            });
        }
        ruleset.chains.insert(
            "filter-forward".to_owned(),
            Chain {
                name: "filter-forward".to_owned(),
                base: Some(BaseChain {
                    hook: Hook::Forward,
                    priority: 0,
                    policy: ChainPolicy::Accept,
                }),
                comment: None,
                rules: chain_rules,
            },
        );
    }
    ruleset
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn applying_a_diff_reaches_its_target(a in ruleset(), b in ruleset()) {
        let mut patched = a.clone();
        patched.apply(&diff(Some(&a), &b)).map_err(|conflict| TestCaseError::fail(format!("{conflict}")))?;
        prop_assert_eq!(&patched, &b);
        let mut created = Ruleset::default();
        created.apply(&diff(None, &b)).map_err(|conflict| TestCaseError::fail(format!("{conflict}")))?;
        prop_assert_eq!(&created, &b);
    }

    #[test]
    fn the_structure_of_a_diff_reaches_the_structure_of_its_target(a in ruleset(), b in ruleset()) {
        let mut structure = a.without_elements();
        structure.apply(&diff(Some(&a), &b).without_elements()).map_err(|conflict| TestCaseError::fail(format!("{conflict}")))?;
        prop_assert_eq!(structure, b.without_elements());
    }
}

/// Each kernel rule `apply` enforces, on a one-set, one-chain table.
#[test]
fn conflicts_name_the_object_and_the_kernel_rule() {
    let table = build(
        &[
            Some((1, [1u8, 5, 10, 20].into(), vec![0])),
            None,
            None,
            None,
            None,
        ],
        &[true, false, false],
        &[(0, 0, true)],
        true,
    );
    let element = |first: u8, last: u8| Element::range(vec![address(first)], vec![address(last)]);
    let set = || "set-0".to_owned();
    let cases: Vec<(&str, nftpol_ir::diff::Change, Conflict)> = vec![
        (
            "an overlapping interval exists already",
            nftpol_ir::diff::Change::AddElements {
                set: set(),
                elements: vec![element(4, 6)].into(),
            },
            Conflict::Exists(Object::Element {
                set: set(),
                element: Box::new(element(4, 6)),
            }),
        ),
        (
            "deleting an absent element is missing",
            nftpol_ir::diff::Change::DeleteElements {
                set: set(),
                elements: vec![element(2, 3)].into(),
            },
            Conflict::Missing(Object::Element {
                set: set(),
                element: Box::new(element(2, 3)),
            }),
        ),
        (
            "a set a rule uses is busy",
            nftpol_ir::diff::Change::DeleteSet(set()),
            Conflict::Busy(Object::Set(set())),
        ),
        (
            "a chain a rule jumps to is busy",
            nftpol_ir::diff::Change::DeleteChain("group-a".to_owned()),
            Conflict::Busy(Object::Chain("group-a".to_owned())),
        ),
        (
            "a lookup of the wrong key type does not fit",
            nftpol_ir::diff::Change::AddRule {
                chain: "filter-forward".to_owned(),
                rule: std::borrow::Cow::Owned(Rule {
                    matches: vec![Match::Lookup {
                        key: vec![Field::TransportDport].into(),
                        set: set(),
                        negated: false,
                    }],
                    counter: false,
                    action: Action::Verdict(Verdict::Accept),
                    comment: None,
                }),
            },
            Conflict::KeyMismatch(Object::Rule {
                chain: "filter-forward".to_owned(),
                comment: None,
            }),
        ),
    ];
    for (name, change, want) in cases {
        let mut patched = table.clone();
        let got = patched.apply(&nftpol_ir::diff::Diff {
            changes: vec![change],
        });
        assert_eq!(got, Err(want), "case {name}");
    }
}
