//! Kernel test support: the `nft` CLI and IR fixtures.
//!
//! Each test body runs on a thread inside a fresh network namespace held by
//! the test kit's guard (`nftpol_testkit::netns::in_fresh_netns`): only that thread (and the
//! `nft`/`ip` processes it spawns) enter it, so the root namespace's ruleset
//! is never touched, and the namespace is removed afterwards, after a panic
//! too.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use std::time::Duration;

use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, CtState, DynamicMap, Element, Field, Hook, KeyType, Log,
    Match, RateLimit, RateUnit, Rule, Ruleset, Set, SetUpdate, Value, Verdict,
};

/// Runs a command in the calling thread's namespace; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(input);
    let output = child.wait_with_output().expect("waiting for the command");
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        stdin.unwrap_or("")
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn v4(text: &str) -> Value {
    Value::Ipv4(text.parse::<Ipv4Addr>().expect("fixture ipv4"))
}

fn v6(text: &str) -> Value {
    Value::Ipv6(text.parse::<Ipv6Addr>().expect("fixture ipv6"))
}

/// A set (not a map) named `name` holding `elements`.
pub fn set(
    name: &str,
    key: Vec<KeyType>,
    interval: bool,
    comment: Option<&str>,
    elements: impl IntoIterator<Item = Element>,
) -> Set {
    Set {
        name: name.to_owned(),
        key,
        interval,
        is_verdict_map: false,
        dynamic: None,
        comment: comment.map(str::to_owned),
        elements: elements.into_iter().collect(),
    }
}

fn rule(matches: Vec<Match>, counter: bool, action: Action, comment: Option<&str>) -> Rule {
    Rule {
        matches,
        counter,
        action,
        comment: comment.map(str::to_owned),
    }
}

fn lookup(key: Vec<Field>, set: &str, negated: bool) -> Match {
    Match::Lookup {
        key: key.into(),
        set: set.to_owned(),
        negated,
    }
}

pub const POLICY_CHAIN: &str = "ingress-7q2k4mxb-shop/db-allow/in0";
pub const PEERS_V4: &str = "ingress-7q2k4mxb-shop/db-allow/in0-v4";
pub const PEERS_V6: &str = "ingress-7q2k4mxb-shop/db-allow/in0-v6";
pub const DISPATCH_V4: &str = "ingress-dispatch-v4";

/// A table with every construct the IR has.
#[expect(clippy::too_many_lines, reason = "fixture data")]
pub fn fixture() -> Ruleset {
    let accept = || Action::Verdict(Verdict::Accept);
    let peers_v4 = set(
        PEERS_V4,
        vec![KeyType::Ipv4Addr],
        true,
        Some("peers of shop/db-allow ingress[0]"),
        vec![
            Element::range(vec![v4("10.0.0.0")], vec![v4("10.255.255.255")]),
            Element::key(vec![v4("192.168.1.1")]),
            Element::range(vec![v4("192.168.2.0")], vec![v4("192.168.2.127")]),
            Element::range(vec![v4("192.168.2.128")], vec![v4("192.168.2.255")]),
            Element::range(vec![v4("255.255.255.0")], vec![v4("255.255.255.255")]),
        ],
    );
    let peers_v6 = set(
        PEERS_V6,
        vec![KeyType::Ipv6Addr],
        true,
        None,
        vec![
            Element::range(
                vec![v6("fd00:10:244:1::")],
                vec![v6("fd00:10:244:1:ffff:ffff:ffff:ffff")],
            ),
            Element::key(vec![v6("2001:db8::1")]),
            Element::range(
                vec![v6("ffff::")],
                vec![v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")],
            ),
        ],
    );
    let ports_v4 = set(
        "ports-v4",
        vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
        true,
        Some("ipBlock x ports"),
        vec![
            Element::range(
                vec![v4("10.0.0.0"), Value::Proto(6), Value::Port(80)],
                vec![v4("10.0.255.255"), Value::Proto(6), Value::Port(90)],
            ),
            Element::key(vec![v4("10.1.0.1"), Value::Proto(17), Value::Port(53)]),
        ],
    );
    let ports_v6 = set(
        "ports-v6",
        vec![KeyType::Ipv6Addr, KeyType::InetProto, KeyType::InetService],
        true,
        None,
        vec![Element::range(
            vec![v6("fd00::"), Value::Proto(132), Value::Port(1000)],
            vec![v6("fd00::ffff"), Value::Proto(132), Value::Port(2000)],
        )],
    );
    let services = set(
        "local-services",
        vec![KeyType::InetProto, KeyType::InetService],
        false,
        Some("proto . port"),
        vec![
            Element::key(vec![Value::Proto(6), Value::Port(443)]),
            Element::key(vec![Value::Proto(17), Value::Port(53)]),
        ],
    );
    let pairs = set(
        "pairs-v4",
        vec![KeyType::Ipv4Addr, KeyType::Ipv4Addr],
        false,
        None,
        vec![Element::key(vec![v4("10.244.1.2"), v4("10.244.1.3")])],
    );
    let blocked = set(
        "blocked-v4",
        vec![KeyType::Ipv4Addr],
        false,
        None,
        vec![Element::key(vec![v4("203.0.113.9")])],
    );
    let empty = set(
        "empty-ports",
        vec![KeyType::InetService],
        true,
        Some("no elements"),
        vec![],
    );
    let dispatch_v4 = Set {
        name: DISPATCH_V4.to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: true,
        dynamic: None,
        comment: Some("pod ip -> policy chain".to_owned()),
        elements: [
            Element::mapping(
                vec![v4("10.244.1.2")],
                Verdict::Goto(POLICY_CHAIN.to_owned()),
            ),
            Element::mapping(
                vec![v4("10.244.1.3")],
                Verdict::Jump("egress-other".to_owned()),
            ),
            Element::mapping(vec![v4("10.244.1.4")], Verdict::Drop),
        ]
        .into(),
    };
    let dispatch_v6 = Set {
        name: "ingress-dispatch-v6".to_owned(),
        key: vec![KeyType::Ipv6Addr],
        interval: false,
        is_verdict_map: true,
        dynamic: None,
        comment: None,
        elements: [Element::mapping(
            vec![v6("fd00:10:244:1::2")],
            Verdict::Goto(POLICY_CHAIN.to_owned()),
        )]
        .into(),
    };
    let forward = Chain {
        name: "filter-forward".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Forward,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        comment: Some("pod traffic".to_owned()),
        rules: vec![
            rule(
                vec![Match::CtState(
                    [CtState::Established, CtState::Related].into(),
                )],
                false,
                accept(),
                None,
            ),
            rule(
                vec![Match::CtState([CtState::Invalid].into())],
                true,
                Action::Verdict(Verdict::Drop),
                Some("invalid"),
            ),
            rule(
                vec![Match::Icmpv6TypeRange {
                    first: 133,
                    last: 137,
                }],
                false,
                accept(),
                Some("ndp"),
            ),
            rule(vec![Match::SaddrIsLocal], false, accept(), None),
            rule(
                vec![],
                false,
                Action::VerdictMap {
                    key: vec![Field::Ipv4Daddr],
                    map: DISPATCH_V4.to_owned(),
                },
                None,
            ),
            rule(
                vec![],
                true,
                Action::VerdictMap {
                    key: vec![Field::Ipv6Daddr],
                    map: "ingress-dispatch-v6".to_owned(),
                },
                None,
            ),
        ],
    };
    let output = Chain {
        name: "filter-output".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Output,
            priority: -5,
            policy: ChainPolicy::Accept,
        }),
        comment: None,
        rules: vec![rule(
            vec![],
            false,
            Action::Verdict(Verdict::Jump("egress-other".to_owned())),
            None,
        )],
    };
    let policy = Chain {
        name: POLICY_CHAIN.to_owned(),
        base: None,
        comment: Some("shop/db-allow ingress".to_owned()),
        rules: vec![
            rule(
                vec![lookup(vec![Field::Ipv4Saddr], PEERS_V4, false)],
                true,
                accept(),
                Some("shop/db-allow ingress[0]"),
            ),
            rule(
                vec![lookup(vec![Field::Ipv6Saddr], PEERS_V6, false)],
                true,
                accept(),
                Some("shop/db-allow ingress[0]"),
            ),
            rule(
                vec![lookup(
                    vec![Field::Ipv4Saddr, Field::L4Proto, Field::TransportDport],
                    "ports-v4",
                    false,
                )],
                false,
                accept(),
                None,
            ),
            rule(
                vec![lookup(
                    vec![Field::Ipv6Daddr, Field::L4Proto, Field::TransportDport],
                    "ports-v6",
                    false,
                )],
                false,
                accept(),
                None,
            ),
            rule(
                vec![lookup(
                    vec![Field::L4Proto, Field::TransportDport],
                    "local-services",
                    false,
                )],
                false,
                accept(),
                None,
            ),
            rule(
                vec![lookup(vec![Field::TransportDport], "empty-ports", false)],
                false,
                accept(),
                None,
            ),
            rule(
                vec![
                    lookup(vec![Field::Ipv4Saddr, Field::Ipv4Daddr], "pairs-v4", false),
                    lookup(vec![Field::Ipv4Saddr], "blocked-v4", true),
                ],
                false,
                Action::Verdict(Verdict::Return),
                None,
            ),
            rule(
                vec![
                    Match::CtState([CtState::New].into()),
                    Match::Limit(RateLimit {
                        rate: 10,
                        unit: RateUnit::Minute,
                        burst: 10,
                    }),
                ],
                false,
                Action::Log(Log {
                    group: 100,
                    prefix: "nftpol:de:iso:7q2k4mxb".to_owned(),
                }),
                Some("log shop/db-allow default deny"),
            ),
            rule(
                vec![
                    lookup(vec![Field::Ipv6Saddr], PEERS_V6, false),
                    Match::Limit(RateLimit {
                        rate: 3,
                        unit: RateUnit::Hour,
                        burst: 5,
                    }),
                ],
                false,
                Action::Log(Log {
                    group: 65535,
                    prefix: "x".repeat(Log::MAX_PREFIX_LEN),
                }),
                None,
            ),
            // A dynamic map update nft 1.0.6 can write: a key of at most 16
            // bytes (see `rule.rs`) and no `ct original proto-dst` in a
            // `type` map (nft types it `invalid` there).
            rule(
                vec![
                    Match::CtState([CtState::New].into()),
                    Match::CtStatusDnat,
                    Match::Limit(RateLimit {
                        rate: 10,
                        unit: RateUnit::Minute,
                        burst: 10,
                    }),
                ],
                false,
                Action::Update(Box::new(SetUpdate {
                    set: ORIGINS_V4.to_owned(),
                    key: vec![Field::Ipv4Saddr, Field::L4Proto, Field::TransportSport],
                    data: vec![Field::CtOriginalIpv4Daddr],
                    timeout: Duration::from_secs(10),
                })),
                None,
            ),
            rule(
                vec![],
                true,
                Action::Verdict(Verdict::Reject),
                Some("shop/db-allow default deny"),
            ),
        ],
    };
    let other = Chain {
        name: "egress-other".to_owned(),
        base: None,
        comment: None,
        rules: vec![rule(
            vec![lookup(vec![Field::Ipv4Daddr], "blocked-v4", false)],
            false,
            Action::Verdict(Verdict::Drop),
            None,
        )],
    };
    let origins = Set {
        dynamic: Some(DynamicMap {
            data: vec![KeyType::Ipv4Addr],
            size: 4096,
        }),
        ..set(
            ORIGINS_V4,
            vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
            false,
            Some("original destinations"),
            vec![],
        )
    };
    let sets = [
        origins,
        peers_v4,
        peers_v6,
        ports_v4,
        ports_v6,
        services,
        pairs,
        blocked,
        empty,
        dispatch_v4,
        dispatch_v6,
    ];
    let chains = [forward, output, policy, other];
    Ruleset {
        chains: chains
            .into_iter()
            .map(|chain| (chain.name.clone(), chain))
            .collect(),
        sets: sets
            .into_iter()
            .map(|set| (set.name.clone(), set))
            .collect(),
    }
}

/// The fixture's dynamic map.
pub const ORIGINS_V4: &str = "origins-v4";

/// `count` distinct IPv4 addresses from 10.0.0.0 upward.
pub fn many_v4(count: u32) -> BTreeSet<Element> {
    (0..count)
        .map(|i| Element::key(vec![Value::Ipv4(Ipv4Addr::from(0x0a00_0000 + i))]))
        .collect()
}
