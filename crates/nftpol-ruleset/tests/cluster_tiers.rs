//! The ClusterNetworkPolicy tiers compiled into the ruleset agree with the
//! semantic evaluator on random clusters mixing both tiers with
//! NetworkPolicies (dual stack, invalid objects, equal priorities, unknown
//! peers), with and without re-judging; diffs between such clusters reach
//! the full compile; and the tiers' rule count does not grow with pods.

use std::net::IpAddr;

use nftpol_ir::diff::diff;
use nftpol_ir::interpret::{interpret, Trace};
use nftpol_ir::{CtDirection, Ruleset};
use nftpol_model::{resolve, Connection, Direction, Protocol};
use nftpol_ruleset::catalogue::RuleRole;
use nftpol_ruleset::compile::{compile, CompileOptions, Compiled};
use nftpol_ruleset::rejudge::{MarkBits, Rejudge};
use nftpol_testkit::oracle::{node_oracle, packet_on};
use nftpol_testkit::strategies;
use proptest::prelude::*;

const NODE: &str = "node-1";

/// The direction whose judging chain denied the packet of `trace` with a
/// group chain's final deny or a ClusterNetworkPolicy Deny, if one did.
fn denying_direction(compiled: &Compiled, trace: &Trace) -> Option<Direction> {
    if trace.accepted {
        return None;
    }
    let last = trace.steps.iter().rev().find(|step| step.matched)?;
    match compiled.provenance.rule(&last.chain, last.position)? {
        (chain, RuleRole::IsolatedDeny | RuleRole::ClusterRule { .. }) => Some(chain.direction()),
        _ => None,
    }
}

fn picks() -> impl Strategy<Value = Vec<(prop::sample::Index, prop::sample::Index, Protocol, u16)>>
{
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
            prop::sample::select(vec![53u16, 79, 80, 81, 82, 83]),
        ),
        6,
    )
}

fn connections(
    pool: &[IpAddr],
    picks: Vec<(prop::sample::Index, prop::sample::Index, Protocol, u16)>,
) -> Vec<Connection> {
    picks
        .into_iter()
        .map(|(source, destination, protocol, port)| {
            let source = *source.get(pool);
            let candidates: Vec<IpAddr> = pool
                .iter()
                .copied()
                .filter(|address| address.is_ipv4() == source.is_ipv4())
                .collect();
            Connection {
                source,
                destination: *destination.get(&candidates),
                protocol,
                port,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_tiers_agree_with_the_spec(
        cluster in strategies::cluster_with_tiers(),
        picks in picks(),
    ) {
        let ruleset = compile(&resolve(&cluster, NODE), CompileOptions::default()).ruleset;
        let pool = strategies::probe_addresses(&cluster);
        for connection in connections(&pool, picks) {
            let trace = interpret(&ruleset, &packet_on(&cluster, NODE, &connection)).expect("the compiled IR is well formed");
            let want = node_oracle(&cluster, NODE, &connection);
            prop_assert_eq!(
                trace.accepted, want,
                "{:?}\nhits: {:#?}\n{}", connection, trace.hits, nftpol_model::explain(&cluster, &connection)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// With re-judging the tiers judge a stale established packet, either
    /// way, in the connection's original sense, as they judge its opening.
    #[test]
    fn rejudged_tiers_agree_with_the_spec(
        cluster in strategies::cluster_with_tiers(),
        picks in picks(),
    ) {
        let options = CompileOptions { rejudge: Some(Rejudge::default()), ..CompileOptions::default() };
        let compiled = compile(&resolve(&cluster, NODE), options);
        let ruleset = &compiled.ruleset;
        let marks = MarkBits::default();
        let pool = strategies::probe_addresses(&cluster);
        for connection in connections(&pool, picks) {
            let want = node_oracle(&cluster, NODE, &connection);
            let first = packet_on(&cluster, NODE, &connection);
            let opened = interpret(ruleset, &first).expect("well formed");
            prop_assert_eq!(opened.accepted, want, "new {:?}\nhits: {:#?}", connection, opened.hits);
            for direction in [CtDirection::Original, CtDirection::Reply] {
                // Mark 0: never judged under any generation.
                let stale = interpret(ruleset, &first.established(direction, 0)).expect("well formed");
                prop_assert_eq!(stale.accepted, want, "stale {:?} {:?}\nhits: {:#?}", direction, connection, stale.hits);
                // A deny of a group chain or a ClusterNetworkPolicy marks
                // the connection "denied" for the conntrack flush.
                if let Some(side) = denying_direction(&compiled, &stale) {
                    let mark = stale.ct_mark.expect("tracked");
                    prop_assert_eq!(mark & marks.field(side), marks.denied(side), "stale {:?} {:?} denied for {}: mark {:#010x}", direction, connection, side, mark);
                }
            }
        }
    }

    #[test]
    fn diffs_between_tiered_clusters_reach_the_full_compile(
        first in strategies::cluster_with_tiers(),
        second in strategies::cluster_with_tiers(),
    ) {
        let options = CompileOptions::default();
        let before = compile(&resolve(&first, NODE), options).ruleset;
        let after = compile(&resolve(&second, NODE), options).ruleset;
        let mut state = before.clone();
        state.apply(&diff(Some(&before), &after)).expect("the kernel would accept the diff");
        prop_assert_eq!(&state, &after);
        let mut fresh = Ruleset::default();
        fresh.apply(&diff(None, &after)).expect("the kernel would accept the diff");
        prop_assert_eq!(&fresh, &after);
    }
}
