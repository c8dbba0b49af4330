//! Kernel tests: each runs in a fresh network namespace (see `common`).

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use common::{fixture, many_v4, run, set, DISPATCH_V4, PEERS_V4};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nftpol_ir::diff::{diff, Change, Diff};
use nftpol_ir::render::render;
use nftpol_ir::{Element, KeyType, Ruleset, Set, Value, Verdict, TABLE_NAME};
use nftpol_netlink::batch::BatchWriter;
use nftpol_netlink::uapi::{msg, NFNLGRP_NFTABLES, NFNL_SUBSYS_NFTABLES};
use nftpol_netlink::MarkAccess;
use nftpol_netlink::{
    verify, ApplyError, Dataplane, Difference, FakeDataplane, KernelDataplane, Object,
};
use nftpol_testkit::netns::in_fresh_netns;

fn open() -> KernelDataplane {
    KernelDataplane::open().expect("opening the netfilter socket")
}

/// `bad` is refused for its interval `overlapping` (EEXIST), and the error
/// names that element of `set`.
fn assert_overlap_rejected_and_named(
    kernel: &mut KernelDataplane,
    bad: &Diff,
    set: &str,
    overlapping: Element,
) {
    let error = kernel
        .apply(bad)
        .expect_err("an overlapping interval must be rejected");
    assert!(error.is_exists(), "{error}");
    assert_eq!(error.kind(), "exists");
    assert_eq!(
        error.object(),
        Some(&Object::Element {
            set: set.to_owned(),
            element: Box::new(overlapping)
        }),
        "{error}"
    );
}

/// `nft list` as sorted blocks with sorted elements (object and element order
/// is the kernel's, not ours), and each chain's rule bytecode as nft prints it.
fn nft_listing() -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let text = run("nft", &["list", "table", "inet", "nftpol"], None);
    let mut blocks = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\tset ") || line.starts_with("\tmap ") || line.starts_with("\tchain ")
        {
            block.clear();
        }
        block.push(line.trim());
        if line == "\t}" {
            blocks.push(sort_elements(&block.join(" ")));
        }
    }
    blocks.sort();
    let debug = run(
        "nft",
        &["--debug=netlink", "list", "table", "inet", "nftpol"],
        None,
    );
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut chain: Option<String> = None;
    for line in debug.lines() {
        if let Some(rest) = line.strip_prefix("inet nftpol ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            chain = (!name.starts_with('@')).then_some(name);
            if let Some(name) = &chain {
                rules
                    .entry(name.clone())
                    .or_default()
                    .push("rule".to_owned());
            }
        } else if let Some(name) = &chain {
            let line = line.trim();
            if line.starts_with('[') || line.starts_with("userdata") {
                rules.entry(name.clone()).or_default().push(line.to_owned());
            }
        }
    }
    (blocks, rules)
}

fn sort_elements(block: &str) -> String {
    let Some((head, rest)) = block.split_once("elements = { ") else {
        return block.to_owned();
    };
    let (list, tail) = rest.split_once(" }").expect("closing brace of elements");
    let mut elements: Vec<&str> = list.split(',').map(str::trim).collect();
    elements.sort_unstable();
    format!("{head}elements = {{ {} }}{tail}", elements.join(", "))
}

#[test]
fn applied_fixture_reads_back_equal_and_matches_nft_loading_the_rendered_text() {
    let ir = fixture();
    let ours = in_fresh_netns({
        let ir = ir.clone();
        move || {
            let mut kernel = open();
            kernel.probe_features().expect("probing kernel features");
            assert_eq!(kernel.read().expect("read"), None);
            let applied = kernel.apply(&diff(None, &ir)).expect("apply");
            assert!(applied.messages > 10 && applied.bytes > 1000, "{applied:?}");
            assert_eq!(kernel.read().expect("read").expect("table present"), ir);
            assert_eq!(
                verify(&mut kernel, &ir).expect("verify"),
                Vec::<Difference>::new()
            );
            nft_listing()
        }
    });
    let theirs = in_fresh_netns({
        let ir = ir.clone();
        move || {
            run("nft", &["-f", "-"], Some(&render(&ir)));
            // Adoption: a table nft wrote reads back as the same IR.
            assert_eq!(open().read().expect("read").expect("table present"), ir);
            nft_listing()
        }
    });
    assert_eq!(
        (ours.0.len(), ours.1.len()),
        (ir.sets.len() + ir.chains.len(), ir.chains.len()),
        "listing parsed"
    );
    assert_eq!(ours.0, theirs.0, "nft list differs");
    assert_eq!(ours.1, theirs.1, "kernel bytecode differs");
}

#[test]
fn rejected_batch_changes_nothing_and_names_the_element() {
    in_fresh_netns(|| {
        let ir = fixture();
        let mut kernel = open();
        kernel.apply(&diff(None, &ir)).expect("apply");
        let overlapping = Element::range(
            vec![Value::Ipv4(Ipv4Addr::new(10, 1, 0, 0))],
            vec![Value::Ipv4(Ipv4Addr::new(10, 1, 0, 255))],
        );
        let new_set = set("new-set", vec![KeyType::Ipv4Addr], false, None, []);
        let bad = Diff {
            changes: vec![
                Change::AddSet(new_set),
                Change::AddElements {
                    set: "new-set".to_owned(),
                    elements: many_v4(10).into_iter().collect(),
                },
                Change::AddElements {
                    set: PEERS_V4.to_owned(),
                    elements: vec![overlapping.clone()].into(),
                },
            ],
        };
        assert_overlap_rejected_and_named(&mut kernel, &bad, PEERS_V4, overlapping);
        assert_eq!(kernel.read().expect("read").expect("table present"), ir);
    });
}

/// A rejected element deep inside a change of several messages is the one
/// named: the kernel points at an attribute of one message, and the batch
/// finds which element of that message's list holds it.
#[test]
fn a_rejected_element_in_a_later_message_of_a_long_change_is_named() {
    in_fresh_netns(|| {
        let mut kernel = open();
        kernel.apply(&diff(None, &fixture())).expect("apply");
        let range = |third: u8, first: u8| {
            Element::range(
                vec![Value::Ipv4(Ipv4Addr::new(10, 200, third, first))],
                vec![Value::Ipv4(Ipv4Addr::new(10, 200, third, first + 9))],
            )
        };
        // 5,120 ranges: several messages of at most MAX_ELEMENT_LIST bytes.
        let mut elements: Vec<Element> = (0..=255u8)
            .flat_map(|third| (0..20u8).map(move |tenth| range(third, tenth * 10)))
            .collect();
        // Overlaps 10.200.200.40–49 and 50–59, written before it: the
        // kernel takes those and refuses this one.
        let overlapping = Element::range(
            vec![Value::Ipv4(Ipv4Addr::new(10, 200, 200, 45))],
            vec![Value::Ipv4(Ipv4Addr::new(10, 200, 200, 50))],
        );
        let position = 201 * 20;
        elements.insert(position, overlapping.clone());
        let wide = set("wide-v4", vec![KeyType::Ipv4Addr], true, None, []);
        let bad = Diff {
            changes: vec![
                Change::AddSet(wide),
                Change::AddElements {
                    set: "wide-v4".to_owned(),
                    elements: elements.into(),
                },
            ],
        };
        let mut encoder = BatchWriter::new(TABLE_NAME, 1);
        encoder.push_diff(&bad, &BTreeMap::new()).expect("encodes");
        let messages = encoder.finish().message_count();
        assert!(
            messages >= 4,
            "NEWSET and several element messages ({messages})"
        );
        assert_overlap_rejected_and_named(&mut kernel, &bad, "wide-v4", overlapping);
    });
}

fn generations_during(
    kernel: &mut KernelDataplane,
    apply: impl FnOnce(&mut KernelDataplane),
) -> usize {
    let mut monitor = Socket::new(NETLINK_NETFILTER).expect("monitor socket");
    monitor.bind_auto().expect("bind monitor");
    monitor.set_rx_buf_sz(64 << 20).expect("monitor buffer");
    monitor
        .add_membership(NFNLGRP_NFTABLES)
        .expect("join NFNLGRP_NFTABLES");
    monitor
        .set_non_blocking(true)
        .expect("non-blocking monitor");
    apply(kernel);
    let mut count = 0;
    loop {
        let mut buffer = Vec::with_capacity(1 << 20);
        match monitor.recv(&mut buffer, 0) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return count,
            Err(error) => panic!("monitor: {error}"),
        }
        let mut rest = buffer.as_slice();
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
            if kind == (NFNL_SUBSYS_NFTABLES << 8) | msg::NEWGEN {
                count += 1;
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
    }
}

#[test]
fn each_apply_is_exactly_one_generation() {
    in_fresh_netns(|| {
        let ir = fixture();
        let mut kernel = open();
        let full = generations_during(&mut kernel, |kernel| {
            kernel.apply(&diff(None, &ir)).expect("apply");
        });
        assert_eq!(full, 1);
        let mut next = ir.clone();
        next.sets
            .get_mut(PEERS_V4)
            .unwrap()
            .elements
            .insert(Element::key(vec![Value::Ipv4(Ipv4Addr::new(
                172, 16, 0, 1,
            ))]));
        next.chains.get_mut("egress-other").unwrap().rules.clear();
        let partial = generations_during(&mut kernel, |kernel| {
            kernel.apply(&diff(Some(&ir), &next)).expect("apply");
        });
        assert_eq!(partial, 1);
        let rejected = generations_during(&mut kernel, |kernel| {
            kernel
                .apply(&Diff {
                    changes: vec![Change::DeleteSet("absent".to_owned())],
                })
                .expect_err("absent set");
        });
        assert_eq!(rejected, 0);
    });
}

#[test]
fn hundred_thousand_elements_in_one_batch() {
    in_fresh_netns(|| {
        let mut ir = fixture();
        let big = set(
            "big-v4",
            vec![KeyType::Ipv4Addr],
            false,
            Some("100k pod ips"),
            many_v4(100_000),
        );
        ir.sets.insert(big.name.clone(), big);
        let mut kernel = open();
        let applied = kernel.apply(&diff(None, &ir)).expect("apply");
        assert!(
            applied.bytes > 100_000 * 16 && applied.messages > 20,
            "{applied:?}"
        );
        let back = kernel.read().expect("read").expect("table present");
        assert_eq!(back.sets["big-v4"].elements.len(), 100_000);
        assert_eq!(back, ir);
    });
}

#[test]
fn pod_churn_sends_element_messages_only() {
    in_fresh_netns(|| {
        let ir = fixture();
        let mut kernel = open();
        kernel.apply(&diff(None, &ir)).expect("apply");
        let mut next = ir.clone();
        next.sets
            .get_mut(PEERS_V4)
            .unwrap()
            .elements
            .insert(Element::key(vec![Value::Ipv4(Ipv4Addr::new(
                172, 16, 0, 1,
            ))]));
        next.sets.get_mut("blocked-v4").unwrap().elements.clear();
        let dispatch = &mut next.sets.get_mut(DISPATCH_V4).unwrap().elements;
        let old = Element::mapping(
            vec![Value::Ipv4(Ipv4Addr::new(10, 244, 1, 4))],
            Verdict::Drop,
        );
        assert!(dispatch.remove(&old));
        dispatch.insert(Element::mapping(
            vec![Value::Ipv4(Ipv4Addr::new(10, 244, 1, 4))],
            Verdict::Accept,
        ));
        let churn = diff(Some(&ir), &next);
        assert!(churn.is_element_only(), "{churn:?}");
        let shapes: BTreeMap<String, Set> = ir
            .sets
            .iter()
            .map(|(name, set)| (name.clone(), set.shape()))
            .collect();
        let mut writer = BatchWriter::new(TABLE_NAME, 1);
        writer.push_diff(&churn, &shapes).expect("encode");
        let batch = writer.finish();
        assert!(batch
            .origins
            .iter()
            .all(|origin| origin.kind == msg::NEWSETELEM || origin.kind == msg::DELSETELEM));
        let applied = kernel.apply(&churn).expect("apply");
        assert_eq!(applied.messages, batch.message_count());
        assert_eq!(kernel.read().expect("read").expect("table present"), next);
    });
}

#[test]
fn delete_table_removes_it_and_is_idempotent() {
    in_fresh_netns(|| {
        let mut kernel = open();
        kernel.delete_table().expect("deleting an absent table");
        kernel.apply(&diff(None, &fixture())).expect("apply");
        kernel.delete_table().expect("delete");
        assert_eq!(kernel.read().expect("read"), None);
        assert_eq!(
            verify(&mut kernel, &fixture()).expect("verify"),
            vec![Difference::TableMissing]
        );
    });
}

/// A reader beside a writer sees whole generations: the table read is
/// several requests, and a commit between two of them (a set removed after
/// the set dump named it, the table deleted after the table request) makes
/// that read retry, never fail with the kernel's `ENOENT`.
#[test]
fn a_read_during_commits_returns_a_whole_generation() {
    in_fresh_netns(|| {
        let base = fixture();
        let mut with_extra = base.clone();
        let extra = set(
            "churned-v4",
            vec![KeyType::Ipv4Addr],
            false,
            None,
            many_v4(5_000),
        );
        with_extra.sets.insert(extra.name.clone(), extra);
        // None → base → with_extra → base → None, over and over.
        let cycle: [Option<&Ruleset>; 4] = [None, Some(&base), Some(&with_extra), Some(&base)];
        let writing = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut kernel = open();
                for step in 0..400 {
                    let from = cycle[step % cycle.len()];
                    match cycle[(step + 1) % cycle.len()] {
                        Some(to) => {
                            kernel.apply(&diff(from, to)).expect("apply");
                        }
                        None => kernel.delete_table().expect("delete"),
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                writing.store(false, std::sync::atomic::Ordering::Relaxed);
            });
            let mut reader = open();
            let (mut whole, mut unstable) = (0, 0);
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                match reader.read() {
                    Ok(read) => {
                        assert!(
                            read.as_ref()
                                .is_none_or(|read| *read == base || *read == with_extra),
                            "a read mixed generations"
                        );
                        whole += 1;
                    }
                    // Five generations in a row changed under one read: the
                    // honest answer for a table this busy.
                    Err(nftpol_netlink::ReadError::Unstable { .. }) => unstable += 1,
                    Err(error) => panic!("a read during commits failed: {error}"),
                }
            }
            writer.join().expect("the writer");
            assert!(whole > 0, "no read completed ({unstable} unstable)");
        });
    });
}

fn outcome(
    result: Result<nftpol_netlink::Applied, ApplyError>,
) -> Result<(), (&'static str, Option<Object>)> {
    result
        .map(|_| ())
        .map_err(|error| (error.kind(), error.object().cloned()))
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "the batch table is data: one entry per kernel rule"
)]
fn fake_and_kernel_agree_on_every_batch() {
    in_fresh_netns(|| {
        let ir = fixture();
        let v4 = |a, b, c, d| Value::Ipv4(Ipv4Addr::new(a, b, c, d));
        let mut grown = ir.clone();
        grown
            .sets
            .get_mut(PEERS_V4)
            .unwrap()
            .elements
            .insert(Element::key(vec![v4(172, 16, 0, 1)]));
        grown
            .sets
            .get_mut("ports-v4")
            .unwrap()
            .elements
            .insert(Element::key(vec![
                v4(10, 9, 0, 1),
                Value::Proto(6),
                Value::Port(22),
            ]));
        grown.chains.get_mut("egress-other").unwrap().rules.clear();
        let add = |set: &str, element: Element| Change::AddElements {
            set: set.to_owned(),
            elements: vec![element].into(),
        };
        let del = |set: &str, element: Element| Change::DeleteElements {
            set: set.to_owned(),
            elements: vec![element].into(),
        };
        let empty = Ruleset::default();
        let batches: Vec<(&str, Diff)> = vec![
            ("create", diff(None, &ir)),
            (
                "overlapping interval",
                Diff {
                    changes: vec![add(
                        PEERS_V4,
                        Element::range(vec![v4(10, 1, 0, 0)], vec![v4(10, 1, 0, 9)]),
                    )],
                },
            ),
            (
                "existing element",
                Diff {
                    changes: vec![add("blocked-v4", Element::key(vec![v4(203, 0, 113, 9)]))],
                },
            ),
            (
                "pipapo overlap",
                Diff {
                    changes: vec![add(
                        "ports-v4",
                        Element::range(
                            vec![v4(10, 0, 1, 0), Value::Proto(6), Value::Port(85)],
                            vec![v4(10, 0, 1, 0), Value::Proto(6), Value::Port(85)],
                        ),
                    )],
                },
            ),
            (
                "absent element",
                Diff {
                    changes: vec![del("blocked-v4", Element::key(vec![v4(1, 2, 3, 4)]))],
                },
            ),
            (
                "referenced set",
                Diff {
                    changes: vec![Change::DeleteSet(PEERS_V4.to_owned())],
                },
            ),
            (
                "referenced chain",
                Diff {
                    changes: vec![Change::DeleteChain("egress-other".to_owned())],
                },
            ),
            (
                "existing set",
                Diff {
                    changes: vec![Change::AddSet(ir.sets["blocked-v4"].shape())],
                },
            ),
            (
                "jump to a missing chain",
                Diff {
                    changes: vec![add(
                        DISPATCH_V4,
                        Element::mapping(
                            vec![v4(10, 244, 9, 9)],
                            Verdict::Jump("nowhere".to_owned()),
                        ),
                    )],
                },
            ),
            (
                "rule on a missing set",
                Diff {
                    changes: vec![Change::AddRule {
                        chain: "egress-other".to_owned(),
                        rule: std::borrow::Cow::Owned(nftpol_ir::Rule {
                            matches: vec![nftpol_ir::Match::Lookup {
                                key: vec![nftpol_ir::Field::Ipv4Daddr].into(),
                                set: "missing".to_owned(),
                                negated: false,
                            }],
                            counter: false,
                            action: nftpol_ir::Action::Verdict(Verdict::Drop),
                            comment: None,
                        }),
                    }],
                },
            ),
            ("grow", diff(Some(&ir), &grown)),
            ("shrink back", diff(Some(&grown), &ir)),
            ("replace", diff(Some(&ir), &empty)),
        ];
        let mut kernel = open();
        let mut fake = FakeDataplane::new();
        for (name, batch) in &batches {
            let from_kernel = outcome(kernel.apply(batch));
            let from_fake = outcome(fake.apply(batch));
            assert_eq!(from_kernel, from_fake, "batch {name:?}");
            assert_eq!(
                kernel.read().expect("read"),
                fake.read().expect("read"),
                "state after batch {name:?}"
            );
        }
        assert_eq!(fake.rejected_count(), 9);
    });
}

#[test]
fn other_tables_that_test_or_set_our_mark_bits_are_found_and_ours_is_not() {
    in_fresh_netns(|| {
        run(
            "nft",
            &["-f", "-"],
            Some(
                "table ip cni {
                   chain c {
                     type filter hook forward priority 0;
                     ct mark and 0x00ff0000 == 0x00010000 accept
                     ct mark and 0x000000ff == 0x1 accept
                   }
                 }
                 table inet proxy {
                   chain p {
                     type filter hook output priority 0;
                     ct mark set 0x4000
                   }
                 }
                 table inet nftpol {
                   chain mine {
                     ct mark set ct mark and 0xff00ffff or 0x00010000
                   }
                 }
",
            ),
        );
        let mut dataplane = open();
        let uses = dataplane
            .ct_mark_uses(0xffff_0000)
            .expect("the rule dump decodes");
        let found: Vec<(String, String, MarkAccess)> = uses
            .into_iter()
            .map(|found| (found.table, found.chain, found.access))
            .collect();
        assert_eq!(
            found,
            // Family first (inet, then ip), then table and chain.
            [
                ("proxy".to_owned(), "p".to_owned(), MarkAccess::Sets),
                ("cni".to_owned(), "c".to_owned(), MarkAccess::Tests),
            ]
        );
    });
}

/// The original-direction destination ports of the namespace's conntrack
/// entries, from `conntrack -L` (sorted).
fn conntrack_ports() -> Vec<u16> {
    let listing = run("conntrack", &["-L"], None);
    let mut ports: Vec<u16> = listing
        .lines()
        .filter_map(|line| {
            let port = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("dport="))?;
            port.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports
}

#[test]
fn the_conntrack_flush_by_mark_removes_exactly_the_marked_entries_of_both_families() {
    in_fresh_netns(|| {
        // Port 9's connections get the "denied" value of the field
        // 0x00ff0000, port 10's a generation in it, port 11's the same
        // bits outside it.
        run(
            "nft",
            &["-f", "-"],
            Some(
                "table inet t {
                   chain o {
                     type filter hook output priority 0;
                     udp dport 9 ct mark set 0x00ff0000
                     udp dport 10 ct mark set 0x00010000
                     udp dport 11 ct mark set 0xff000000
                   }
                 }",
            ),
        );
        for address in ["127.0.0.1", "::1"] {
            let socket = std::net::UdpSocket::bind((address, 0)).expect("a UDP socket");
            for port in [9, 10, 11] {
                socket.send_to(b"x", (address, port)).expect("a datagram");
            }
        }
        assert_eq!(conntrack_ports(), [9, 9, 10, 10, 11, 11]);
        let mut dataplane = open();
        dataplane
            .flush_conntrack_by_mark(0x00ff_0000, 0x00ff_0000)
            .expect("the kernel flushes by mark");
        assert_eq!(
            conntrack_ports(),
            [10, 10, 11, 11],
            "only the entries whose field holds the value went, IPv4 and IPv6"
        );
    });
}
