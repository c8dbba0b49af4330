//! A ruleset patched by `Ruleset::apply` renders as the nft text it should:
//! the diff's new element and replaced rule show up, nothing else moves.
//! (Also the test kit's use across the dev-dependency cycle: the kit links
//! this crate's library, and this integration test links the same build.)

use std::net::Ipv4Addr;

use nftpol_ir::diff::diff;
use nftpol_ir::{
    Action, Chain, Element, Field, KeyType, Match, Rule, Ruleset, Set, Value, Verdict,
};
use nftpol_testkit::assert_ruleset;

fn address(last: u8) -> Value {
    Value::Ipv4(Ipv4Addr::new(10, 244, 1, last))
}

fn ruleset(peers: &[u8], verdict: Verdict) -> Ruleset {
    let set = Set {
        name: "peers-v4".to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: false,
        dynamic: None,
        comment: Some("peers".to_owned()),
        elements: peers
            .iter()
            .map(|last| Element::key(vec![address(*last)]))
            .collect(),
    };
    let chain = Chain {
        name: "policy".to_owned(),
        base: None,
        comment: None,
        rules: vec![
            Rule {
                matches: vec![Match::Lookup {
                    key: vec![Field::Ipv4Saddr].into(),
                    set: "peers-v4".to_owned(),
                    negated: false,
                }],
                counter: true,
                action: Action::Verdict(Verdict::Accept),
                comment: None,
            },
            Rule {
                matches: vec![],
                counter: false,
                action: Action::Verdict(verdict),
                comment: None,
            },
        ],
    };
    Ruleset {
        chains: [(chain.name.clone(), chain)].into(),
        sets: [(set.name.clone(), set)].into(),
    }
}

#[test]
fn an_applied_diff_renders_as_the_target_text() {
    let mut state = ruleset(&[2], Verdict::Drop);
    let target = ruleset(&[3, 2], Verdict::Reject);
    state
        .apply(&diff(Some(&state), &target).into_owned())
        .expect("the diff applies to the state it was taken from");
    assert_ruleset!(
        state,
        r#"
        chain policy {
            ip saddr @peers-v4 counter accept
            reject with icmpx admin-prohibited
        }
        set peers-v4 {
            type ipv4_addr
            comment "peers"
            elements = { 10.244.1.3, 10.244.1.2 }
        }
        "#
    );
}
