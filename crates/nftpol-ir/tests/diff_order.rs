//! The order of a diff's new sets: the kernel finds a rule's set by walking
//! the table's sets in creation order, so the sets the most rules look up
//! are created first, then by name.

use std::collections::BTreeSet;

use nftpol_ir::diff::{diff, Change};
use nftpol_ir::{Action, Chain, Field, KeyType, Match, Rule, Ruleset, Set, Verdict};

fn set(name: &str) -> (String, Set) {
    let set = Set {
        name: name.to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: false,
        dynamic: None,
        comment: None,
        elements: BTreeSet::new(),
    };
    (name.to_owned(), set)
}

fn looking_up(sets: &[&str]) -> Rule {
    Rule {
        matches: sets
            .iter()
            .map(|set| Match::Lookup {
                key: vec![Field::Ipv4Saddr],
                set: (*set).to_owned(),
                negated: false,
            })
            .collect(),
        counter: false,
        action: Action::Verdict(Verdict::Accept),
        comment: None,
    }
}

#[test]
fn new_sets_come_most_looked_up_first_then_by_name() {
    let chain = Chain {
        name: "policy".to_owned(),
        base: None,
        comment: None,
        rules: vec![
            looking_up(&["pods-b", "ports"]),
            looking_up(&["pods-a", "ports"]),
            looking_up(&["ports"]),
            looking_up(&["pods-c"]),
        ],
    };
    let next = Ruleset {
        chains: [(chain.name.clone(), chain)].into(),
        sets: ["unused", "pods-c", "pods-a", "ports", "pods-b"]
            .into_iter()
            .map(set)
            .collect(),
    };
    let created: Vec<String> = diff(None, &next)
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::AddSet(set) => Some(set.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(created, ["ports", "pods-a", "pods-b", "pods-c", "unused"]);
}
