//! The order of a diff's new sets: the kernel finds a rule's set by walking
//! the table's sets in creation order, so the sets the most rules name (in
//! a lookup, a verdict map or an update) are created first, then by name.
//! And a replaced map takes the rules that update it with it.

use std::collections::BTreeSet;
use std::time::Duration;

use nftpol_ir::diff::{diff, Change};
use nftpol_ir::{
    Action, Chain, DynamicMap, Field, KeyType, Match, Rule, Ruleset, Set, SetUpdate, Verdict,
};

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
                key: vec![Field::Ipv4Saddr].into(),
                set: (*set).to_owned(),
                negated: false,
            })
            .collect(),
        counter: false,
        action: Action::Verdict(Verdict::Accept),
        comment: None,
    }
}

fn updating(map: &str) -> Rule {
    Rule {
        matches: Vec::new(),
        counter: false,
        action: Action::Update(Box::new(SetUpdate {
            set: map.to_owned(),
            key: vec![Field::Ipv4Saddr],
            data: vec![Field::Ipv4Daddr],
            timeout: Duration::from_secs(10),
        })),
        comment: None,
    }
}

fn mapping_through(map: &str) -> Rule {
    Rule {
        matches: Vec::new(),
        counter: false,
        action: Action::VerdictMap {
            key: vec![Field::Ipv4Saddr],
            map: map.to_owned(),
        },
        comment: None,
    }
}

fn dynamic_map(name: &str, size: u32) -> (String, Set) {
    let (name, mut map) = set(name);
    map.dynamic = Some(DynamicMap {
        data: vec![KeyType::Ipv4Addr],
        size,
    });
    (name, map)
}

fn created_sets(next: &Ruleset) -> Vec<String> {
    diff(None, next)
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::AddSet(set) => Some(set.name.clone()),
            _ => None,
        })
        .collect()
}

fn one_chain(rules: Vec<Rule>, sets: impl IntoIterator<Item = (String, Set)>) -> Ruleset {
    let chain = Chain {
        name: "policy".to_owned(),
        base: None,
        comment: None,
        rules,
    };
    Ruleset {
        chains: [(chain.name.clone(), chain)].into(),
        sets: sets.into_iter().collect(),
    }
}

#[test]
fn updated_and_mapped_sets_count_as_uses() {
    let mut dispatch = set("dispatch");
    dispatch.1.is_verdict_map = true;
    let next = one_chain(
        vec![
            updating("origins"),
            updating("origins"),
            updating("origins"),
            mapping_through("dispatch"),
            mapping_through("dispatch"),
            looking_up(&["ports"]),
        ],
        [
            set("ports"),
            dispatch,
            dynamic_map("origins", 4096),
            set("unused"),
        ],
    );
    assert_eq!(
        created_sets(&next),
        ["origins", "dispatch", "ports", "unused"]
    );
}

#[test]
fn a_replaced_map_rewrites_the_chains_that_update_it() {
    let rules = vec![updating("origins"), looking_up(&["ports"])];
    let old = one_chain(rules.clone(), [set("ports"), dynamic_map("origins", 4096)]);
    let next = one_chain(rules, [set("ports"), dynamic_map("origins", 8192)]);
    let changes = diff(Some(&old), &next).changes;
    let position = |wanted: &dyn Fn(&Change) -> bool| changes.iter().position(wanted);
    let flush =
        position(&|change| matches!(change, Change::FlushChain(chain) if chain == "policy"));
    let delete = position(&|change| matches!(change, Change::DeleteSet(set) if set == "origins"));
    let create = position(&|change| matches!(change, Change::AddSet(set) if set.name == "origins"));
    let readd = position(
        &|change| matches!(change, Change::AddRule { chain, rule } if chain == "policy" && rule.referenced_sets().eq(["origins"])),
    );
    let (Some(flush), Some(delete), Some(create), Some(readd)) = (flush, delete, create, readd)
    else {
        panic!("the map is not replaced with its rules: {changes:#?}");
    };
    assert!(
        flush < delete && delete < create && create < readd,
        "{changes:#?}"
    );
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
