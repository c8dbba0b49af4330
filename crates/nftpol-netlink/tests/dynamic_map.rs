//! A dynamic map the packet path fills, in a fresh network namespace: the
//! first packet of a DNATed connection records its original destination
//! under the packet's 5-tuple even though the packet is then dropped (its
//! conntrack entry is never confirmed, so no conntrack dump could find
//! it), and `element_data` reads the element back by key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};

use common::run;
use nftpol_ir::diff::diff;
use nftpol_ir::{
    Action, BaseChain, Chain, ChainPolicy, CtState, DynamicMap, Field, Hook, KeyType, Match, Rule,
    Ruleset, Set, SetUpdate, Value, Verdict,
};
use nftpol_netlink::{Dataplane, KernelDataplane};
use nftpol_testkit::netns::in_fresh_netns;

/// The port probes are sent to, and the one DNAT turns it into.
const SERVICE_PORT: u16 = 9999;
const BACKEND_PORT: u16 = 9998;

fn origins(name: &str, address: KeyType) -> Set {
    Set {
        name: name.to_owned(),
        key: vec![
            address,
            address,
            KeyType::InetProto,
            KeyType::InetService,
            KeyType::InetService,
        ],
        interval: false,
        is_verdict_map: false,
        dynamic: Some(DynamicMap {
            data: vec![address, KeyType::InetService],
            size: 64,
        }),
        comment: None,
        elements: BTreeSet::default(),
    }
}

fn record(set: &str, saddr: Field, daddr: Field, original: Field) -> Rule {
    Rule {
        matches: vec![Match::CtState([CtState::New].into()), Match::CtStatusDnat],
        counter: false,
        action: Action::Update(Box::new(SetUpdate {
            set: set.to_owned(),
            key: vec![
                saddr,
                daddr,
                Field::L4Proto,
                Field::TransportSport,
                Field::TransportDport,
            ],
            data: vec![original, Field::CtOriginalProtoDst],
            timeout: Duration::from_secs(30),
        })),
        comment: None,
    }
}

/// Records, then drops every first packet of the netns's own traffic.
fn ruleset() -> Ruleset {
    let chain = Chain {
        name: "filter-output".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Output,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        comment: None,
        rules: vec![
            record(
                "origins-v4",
                Field::Ipv4Saddr,
                Field::Ipv4Daddr,
                Field::CtOriginalIpv4Daddr,
            ),
            record(
                "origins-v6",
                Field::Ipv6Saddr,
                Field::Ipv6Daddr,
                Field::CtOriginalIpv6Daddr,
            ),
            Rule {
                matches: vec![Match::CtState([CtState::New].into())],
                counter: true,
                action: Action::Verdict(Verdict::Drop),
                comment: None,
            },
        ],
    };
    let sets = [
        origins("origins-v4", KeyType::Ipv4Addr),
        origins("origins-v6", KeyType::Ipv6Addr),
    ];
    Ruleset {
        chains: BTreeMap::from([(chain.name.clone(), chain)]),
        sets: sets
            .into_iter()
            .map(|set| (set.name.clone(), set))
            .collect(),
    }
}

/// Sends one datagram from `source` to `service`:SERVICE_PORT (DNATed to
/// `backend`:BACKEND_PORT) and returns the source port.
fn probe(source: IpAddr, service: IpAddr) -> u16 {
    let socket = UdpSocket::bind((source, 0)).expect("a UDP socket");
    // The output chain drops the packet, so the send fails with EPERM:
    // what matters is that the packet went through the chain.
    let _ = socket.send_to(b"probe", (service, SERVICE_PORT));
    socket.local_addr().expect("a bound socket").port()
}

fn value(address: IpAddr) -> Value {
    match address {
        IpAddr::V4(address) => Value::Ipv4(address),
        IpAddr::V6(address) => Value::Ipv6(address),
    }
}

#[test]
fn a_dropped_dnated_first_packet_records_its_original_destination() {
    in_fresh_netns(|| {
        run("ip", &["link", "set", "lo", "up"], None);
        run(
            "ip",
            &["addr", "add", "fd00:10:96::1/128", "dev", "lo"],
            None,
        );
        run(
            "nft",
            &["-f", "-"],
            Some(&format!(
                "table inet nat-lab {{\n\
                 \tchain out {{\n\
                 \t\ttype nat hook output priority -100;\n\
                 \t\tip daddr 127.0.0.2 udp dport {SERVICE_PORT} dnat ip to 127.0.0.1:{BACKEND_PORT}\n\
                 \t\tip6 daddr fd00:10:96::1 udp dport {SERVICE_PORT} dnat ip6 to [::1]:{BACKEND_PORT}\n\
                 \t}}\n\
                 }}\n"
            )),
        );
        let ir = ruleset();
        let mut kernel = KernelDataplane::open().expect("opening the netfilter socket");
        kernel.apply(&diff(None, &ir)).expect("apply");
        let cases = [
            (
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                "origins-v4",
            ),
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                "fd00:10:96::1".parse().expect("an address"),
                "origins-v6",
            ),
        ];
        for (source, service, map) in cases {
            let set = &ir.sets[map];
            let port = probe(source, service);
            let key = |dport: u16| {
                vec![
                    value(source),
                    value(source),
                    Value::Proto(17),
                    Value::Port(port),
                    Value::Port(dport),
                ]
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let found = loop {
                let found = kernel
                    .element_data(set, &key(BACKEND_PORT))
                    .expect("an element lookup");
                if found.is_some() || Instant::now() > deadline {
                    break found;
                }
            };
            assert_eq!(
                found,
                Some(vec![value(service), Value::Port(SERVICE_PORT)]),
                "{map}: the original destination, under the translated 5-tuple"
            );
            assert_eq!(
                kernel
                    .element_data(set, &key(SERVICE_PORT))
                    .expect("an element lookup"),
                None,
                "{map}: no element under a key nothing recorded"
            );
        }
        // Read-back leaves the packet path's elements out: the table still
        // equals what was applied.
        assert_eq!(kernel.read().expect("read").expect("table present"), ir);
        // nft 1.0.6 cannot write this update (see `rule.rs`) but lists it.
        let listing = run(
            "nft",
            &["list", "chain", "inet", "nftpol", "filter-output"],
            None,
        );
        assert!(
            listing.contains(
                "update @origins-v6 { ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport timeout 30s : ct original ip6 daddr . ct original proto-dst }"
            ),
            "{listing}"
        );
    });
}
