//! `Dataplane::read_counters` against the kernel, each test in a fresh
//! network namespace (see `common`): every counter rule is reported with
//! its chain, position and comment, as the fake reports it, and loopback
//! traffic through an output-hook rule shows up in its counter.

mod common;

use std::net::{Ipv4Addr, UdpSocket};

use common::{fixture, run};
use nftpol_ir::diff::diff;
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, Element, Field, Hook, KeyType, Match, Rule, Ruleset,
    Set, Value, Verdict,
};
use nftpol_netlink::{Dataplane, FakeDataplane, KernelDataplane, RuleCounter};
use nftpol_testkit::netns::in_fresh_netns;

fn open() -> KernelDataplane {
    KernelDataplane::open().expect("opening the netfilter socket")
}

#[test]
fn counters_of_every_counter_rule_match_the_fake_and_start_at_zero() {
    let (kernel, fake) = in_fresh_netns(|| {
        let mut dataplane = open();
        assert_eq!(
            dataplane.read_counters().expect("reading without a table"),
            Vec::new(),
            "no table, no counters"
        );
        let ruleset = fixture();
        let changes = diff(None, &ruleset);
        dataplane.apply(&changes).expect("the fixture applies");
        let kernel = dataplane.read_counters().expect("reading counters");
        let mut fake = FakeDataplane::new();
        fake.apply(&changes)
            .expect("the fixture applies to the fake");
        let fake = fake.read_counters().expect("fake counters");
        dataplane.delete_table().expect("cleanup");
        (kernel, fake)
    });
    let expected: Vec<(String, usize, Option<String>)> = fixture()
        .chains
        .values()
        .flat_map(|chain| {
            chain
                .rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.counter)
                .map(|(position, rule)| (chain.name.clone(), position, rule.comment.clone()))
        })
        .collect();
    assert!(!expected.is_empty(), "the fixture has counter rules");
    let mut positions: Vec<(String, usize, Option<String>)> = kernel
        .iter()
        .map(|counter| (counter.chain.clone(), counter.rule, counter.comment.clone()))
        .collect();
    positions.sort();
    assert_eq!(positions, expected, "every counter rule, once, in place");
    assert!(
        kernel
            .iter()
            .all(|counter| counter.packets == 0 && counter.bytes == 0),
        "no traffic in a fresh namespace: {kernel:?}"
    );
    let mut kernel_sorted = kernel.clone();
    kernel_sorted.sort();
    let mut fake_sorted = fake;
    fake_sorted.sort();
    assert_eq!(
        kernel_sorted, fake_sorted,
        "the fake reads what the kernel reads"
    );
}

/// Loopback UDP matched in an output base chain, and an unreachable counter.
fn loopback_ruleset() -> Ruleset {
    let loopback = Set {
        name: "loopback-v4".to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: false,
        dynamic: None,
        comment: None,
        elements: [Element::key(vec![Value::Ipv4(Ipv4Addr::LOCALHOST)])].into(),
    };
    let output = Chain {
        name: "filter-output-egress".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Output,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        comment: None,
        rules: vec![
            Rule {
                matches: vec![],
                counter: false,
                action: Action::Verdict(Verdict::Jump("idle".to_owned())),
                comment: None,
            },
            Rule {
                matches: vec![Match::Lookup {
                    key: vec![Field::Ipv4Daddr].into(),
                    set: "loopback-v4".to_owned(),
                    negated: false,
                }],
                counter: true,
                action: Action::Verdict(Verdict::Accept),
                comment: Some("x/loopback egress[0]".to_owned()),
            },
        ],
    };
    // Jumped to, but its one rule never matches: its counter stays at 0.
    let idle = Chain {
        name: "idle".to_owned(),
        base: None,
        comment: None,
        rules: vec![Rule {
            matches: vec![Match::Lookup {
                key: vec![Field::Ipv4Saddr].into(),
                set: "loopback-v4".to_owned(),
                negated: true,
            }],
            counter: true,
            action: Action::Verdict(Verdict::Drop),
            comment: Some("egress denied: x/loopback".to_owned()),
        }],
    };
    Ruleset {
        chains: [output, idle]
            .into_iter()
            .map(|chain| (chain.name.clone(), chain))
            .collect(),
        sets: [(loopback.name.clone(), loopback)].into(),
    }
}

#[test]
fn loopback_traffic_through_an_output_rule_is_counted() {
    const PACKETS: u64 = 3;
    const PAYLOAD: usize = 100;
    let (counters, listing) = in_fresh_netns(|| {
        let mut dataplane = open();
        dataplane
            .apply(&diff(None, &loopback_ruleset()))
            .expect("the ruleset applies");
        let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a receiver");
        let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a sender");
        let target = receiver.local_addr().expect("receiver address");
        let mut buffer = [0_u8; 2 * PAYLOAD];
        for _ in 0..PACKETS {
            sender
                .send_to(&[7_u8; PAYLOAD], target)
                .expect("sending over lo");
            // Received means it went through the output hook.
            let (len, _) = receiver.recv_from(&mut buffer).expect("receiving over lo");
            assert_eq!(len, PAYLOAD);
        }
        let counters = dataplane.read_counters().expect("reading counters");
        let listing = run("nft", &["list", "table", "inet", "nftpol"], None);
        dataplane.delete_table().expect("cleanup");
        (counters, listing)
    });
    // IPv4 header (20) + UDP header (8) + payload, as the hook sees the packet.
    let bytes = PACKETS * (20 + 8 + PAYLOAD as u64);
    let want = vec![
        RuleCounter {
            chain: "filter-output-egress".to_owned(),
            rule: 1,
            comment: Some("x/loopback egress[0]".to_owned()),
            packets: PACKETS,
            bytes,
        },
        RuleCounter {
            chain: "idle".to_owned(),
            rule: 0,
            comment: Some("egress denied: x/loopback".to_owned()),
            packets: 0,
            bytes: 0,
        },
    ];
    let mut got = counters;
    got.sort();
    assert_eq!(got, want, "nft says:\n{listing}");
    assert!(
        listing.contains(&format!("counter packets {PACKETS} bytes {bytes}")),
        "nft agrees:\n{listing}"
    );
}
