//! The compiled ruleset, run through the IR interpreter, agrees with the
//! semantic evaluator of the spec on random clusters and packets; and any
//! sequence of diffs ends equal to a full compile.

use std::net::IpAddr;

use nftpol_ir::diff::{diff, Change};
use nftpol_ir::interpret::interpret;
use nftpol_ir::{CtDirection, Ruleset};
use nftpol_model::{resolve, Connection, Direction, Protocol};
use nftpol_ruleset::catalogue::{ChainName, RuleRole};
use nftpol_ruleset::compile::{compile, CompileOptions, Compiled};
use nftpol_ruleset::rejudge::{Generation, MarkBits, Rejudge};
use nftpol_testkit::oracle::{node_oracle, packet_for};
use nftpol_testkit::strategies;
use proptest::prelude::*;

const NODE: &str = "node-1";

/// The provenance names every chain and set of the ruleset under the name
/// its catalogue key spells, with one role per rule, and nothing else; allow
/// rules sit only in policy chains and each carries a counter.
fn assert_provenance_describes(compiled: &Compiled) {
    let Compiled {
        ruleset,
        provenance,
        ..
    } = compiled;
    assert_eq!(
        ruleset.chains.keys().collect::<Vec<_>>(),
        provenance.chains.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        ruleset.sets.keys().collect::<Vec<_>>(),
        provenance.sets.keys().collect::<Vec<_>>()
    );
    for (name, chain) in &ruleset.chains {
        let origin = &provenance.chains[name];
        assert_eq!(&origin.chain.name(), name);
        assert_eq!(origin.rules.len(), chain.rules.len(), "{name}");
        for (role, rule) in origin.rules.iter().zip(&chain.rules) {
            if let RuleRole::Allow { .. } = role {
                assert!(matches!(origin.chain, ChainName::Policy { .. }), "{name}");
                assert!(rule.counter, "{name}: allow rules are counted");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_ruleset_agrees_with_the_spec(
        cluster in strategies::cluster(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(),
            prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
            prop::sample::select(vec![53u16, 79, 80, 81, 82, 83])), 6),
    ) {
        let compiled = compile(&resolve(&cluster, NODE), CompileOptions::default());
        assert_provenance_describes(&compiled);
        let ruleset = compiled.ruleset;
        let pool = strategies::probe_addresses(&cluster);
        for (source, destination, protocol, port) in picks {
            let source = *source.get(&pool);
            let candidates: Vec<IpAddr> = pool.iter().copied().filter(|a| a.is_ipv4() == source.is_ipv4()).collect();
            let destination = *destination.get(&candidates);
            let connection = Connection { source, destination, protocol, port };
            let trace = interpret(&ruleset, &packet_for(&connection)).expect("the compiled IR is well formed");
            let want = node_oracle(&cluster, NODE, &connection);
            prop_assert_eq!(
                trace.accepted, want,
                "{:?}\nhits: {:#?}\n{}", connection, trace.hits, nftpol_model::explain(&cluster, &connection)
            );
        }
    }

    #[test]
    fn diffs_from_any_previous_state_reach_the_full_compile(
        first in strategies::cluster(),
        second in strategies::cluster(),
    ) {
        let options = CompileOptions::default();
        let before = compile(&resolve(&first, NODE), options).ruleset;
        let after = compile(&resolve(&second, NODE), options).ruleset;
        let mut state = before.clone();
        apply(&mut state, &diff(Some(&before), &after).changes);
        prop_assert_eq!(&state, &after);
        let mut fresh = Ruleset::default();
        apply(&mut fresh, &diff(None, &after).changes);
        prop_assert_eq!(&fresh, &after);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// With re-judging: a new connection gets the spec's verdict and, when
    /// accepted, both generation stamps; a later packet of it, either way,
    /// passes the bypass under that generation, and under any other
    /// (a commit bumped it) is judged again in the connection's original
    /// sense, getting the spec's verdict for the connection. A stale packet
    /// a group chain denies leaves that direction's "denied" mark on the
    /// connection (what the agent's conntrack flush removes); a new
    /// connection's denied first packet leaves the mark alone.
    #[test]
    fn rejudged_established_flows_agree_with_the_spec(
        cluster in strategies::cluster(),
        generation in 1u32..=254,
        stale_mark in any::<u32>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(),
            prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
            prop::sample::select(vec![53u16, 79, 80, 81, 82, 83])), 4),
    ) {
        let marks = MarkBits::default();
        let rejudge = Rejudge { marks, generation: Generation::new(generation, marks).expect("in range") };
        let options = CompileOptions { rejudge: Some(rejudge), ..CompileOptions::default() };
        let compiled = compile(&resolve(&cluster, NODE), options);
        let ruleset = &compiled.ruleset;
        let stamps = stamp(marks, rejudge.generation);
        let pool = strategies::probe_addresses(&cluster);
        for (source, destination, protocol, port) in picks {
            let source = *source.get(&pool);
            let candidates: Vec<IpAddr> = pool.iter().copied().filter(|a| a.is_ipv4() == source.is_ipv4()).collect();
            let destination = *destination.get(&candidates);
            let connection = Connection { source, destination, protocol, port };
            let want = node_oracle(&cluster, NODE, &connection);
            let first = packet_for(&connection);
            let trace = interpret(ruleset, &first).expect("the compiled IR is well formed");
            prop_assert_eq!(trace.accepted, want, "new {:?}\nhits: {:#?}", connection, trace.hits);
            let new_mark = trace.ct_mark.expect("tracked");
            if want {
                prop_assert_eq!(new_mark & marks.mask(), stamps, "stamped {:?}", connection);
            }
            for side in [Direction::Egress, Direction::Ingress] {
                prop_assert_ne!(new_mark & marks.field(side), marks.denied(side), "new {:?} marked denied", connection);
            }
            for direction in [CtDirection::Original, CtDirection::Reply] {
                let current = first.established(direction, stamps | (stale_mark & !marks.mask()));
                let bypassed = interpret(ruleset, &current).expect("well formed");
                prop_assert!(bypassed.accepted, "current {:?} {:?}\nhits: {:#?}", direction, connection, bypassed.hits);
                let stale_bits = stale_mark & marks.mask();
                if stale_bits & marks.field(Direction::Egress) == stamps & marks.field(Direction::Egress)
                    || stale_bits & marks.field(Direction::Ingress) == stamps & marks.field(Direction::Ingress)
                {
                    continue;
                }
                let stale = first.established(direction, stale_mark);
                let judged = interpret(ruleset, &stale).expect("well formed");
                prop_assert_eq!(judged.accepted, want, "stale {:?} {:?}\nhits: {:#?}", direction, connection, judged.hits);
                let mark = judged.ct_mark.expect("tracked");
                let denied_in = |side: Direction| mark & marks.field(side) == marks.denied(side);
                match isolated_denial(&compiled, &judged) {
                    Some(side) => prop_assert!(denied_in(side), "stale {:?} {:?} denied for {}: mark {:#010x}", direction, connection, side, mark),
                    None => prop_assert!(
                        [Direction::Egress, Direction::Ingress].into_iter().all(|side| !denied_in(side) || stale_mark & marks.field(side) == marks.denied(side)),
                        "stale {:?} {:?} not denied by a group chain, yet marked denied: {:#010x}", direction, connection, mark
                    ),
                }
            }
        }
    }
}

/// The direction whose group chain's final deny dropped the packet of
/// `trace`, if that is what dropped it.
fn isolated_denial(compiled: &Compiled, trace: &nftpol_ir::interpret::Trace) -> Option<Direction> {
    if trace.accepted {
        return None;
    }
    let last = trace.steps.iter().rev().find(|step| step.matched)?;
    match compiled.provenance.rule(&last.chain, last.position)? {
        (chain, RuleRole::IsolatedDeny) => Some(chain.direction()),
        _ => None,
    }
}

/// The mark bits of a flow both directions judged under `generation`.
fn stamp(marks: MarkBits, generation: Generation) -> u32 {
    [Direction::Egress, Direction::Ingress]
        .into_iter()
        .map(|side| {
            let field = marks.field(side);
            (generation.get() << field.trailing_zeros()) & field
        })
        .fold(0, |bits, field| bits | field)
}

/// Applies changes the way the kernel would, failing on what it would refuse.
fn apply(state: &mut Ruleset, changes: &[Change]) {
    for change in changes {
        match change {
            Change::AddTable => {}
            Change::FlushChain(name) => state
                .chains
                .get_mut(name)
                .expect("flushed chain exists")
                .rules
                .clear(),
            Change::DeleteElements { set, elements } => {
                let held = &mut state.sets.get_mut(set).expect("set exists").elements;
                for element in elements {
                    assert!(
                        held.remove(element),
                        "deleting absent element {element:?} from {set}"
                    );
                }
            }
            Change::DeleteChain(name) => {
                let chain = state.chains.remove(name).expect("deleted chain exists");
                assert!(chain.rules.is_empty(), "deleting chain {name} with rules");
            }
            Change::DeleteSet(name) => assert!(
                state.sets.remove(name).is_some(),
                "deleting absent set {name}"
            ),
            Change::AddSet(set) => assert!(
                state.sets.insert(set.name.clone(), set.clone()).is_none(),
                "set exists"
            ),
            Change::AddChain(chain) => {
                assert!(
                    state
                        .chains
                        .insert(chain.name.clone(), chain.clone())
                        .is_none(),
                    "chain exists"
                );
            }
            Change::AddElements { set, elements } => {
                let held = &mut state.sets.get_mut(set).expect("set exists").elements;
                for element in elements {
                    assert!(
                        held.insert(element.clone()),
                        "adding existing element {element:?} to {set}"
                    );
                }
            }
            Change::AddRule { chain, rule } => state
                .chains
                .get_mut(chain)
                .expect("chain exists")
                .rules
                .push(rule.clone().into_owned()),
        }
    }
}
