//! Re-judging of established flows: the mark bits flag, generations, which
//! commits may take permission away, and reading the generation back.

use std::net::IpAddr;

use nftpol_ir::diff::{diff, Change};
use nftpol_ir::interpret::interpret;
use nftpol_ir::{Action, CtDirection, CtState, Match, Ruleset, Verdict};
use nftpol_model::{resolve, Cluster, Connection, Direction, Protocol};
use nftpol_ruleset::catalogue::{ChainName, RuleRole};
use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_ruleset::rejudge::{
    self, Generation, MarkBits, MarkBitsError, Rejudge, DEFAULT_MARK_BITS,
};
use nftpol_testkit::oracle::packet_for;
use nftpol_testkit::strategies;
use proptest::prelude::*;

const NODE: &str = "node-1";

/// Pods a (role web) and b (role db) on node-1, pod r on node-2 whose
/// `role` label is `{WEB}`.
const PODS: &str = r"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {role: web}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.2, podIPs: [{ip: 10.244.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {role: db}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.3, podIPs: [{ip: 10.244.1.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: r, namespace: x, labels: {role: '{WEB}'}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.2.2, podIPs: [{ip: 10.244.2.2}]}
";

/// b admits pods with role web on port 5432.
const DB_ADMITS_WEB: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-admits-web, namespace: x}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress: [{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5432}]}]
";

/// [`DB_ADMITS_WEB`] with `{CHANGE}` in its ingress rule list.
const DB_ADMITS: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-admits-web, namespace: x}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress: {CHANGE}
";

/// A second policy for b: it admits pods with role monitor.
const DB_ADMITS_MONITOR: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-admits-monitor, namespace: x}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress: [{from: [{podSelector: {matchLabels: {role: monitor}}}]}]
";

/// Pod d on node-1, role cache.
const LOCAL_CACHE: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {role: cache}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.4, podIPs: [{ip: 10.244.1.4}]}
";

const DENY_A: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-a, namespace: x}
spec: {podSelector: {matchLabels: {role: web}}, policyTypes: [Egress]}
";

fn cluster(remote_role: &str, policies: &[&str]) -> Cluster {
    let mut text = PODS.replace("{WEB}", remote_role);
    for policy in policies {
        text.push_str("---\n");
        text.push_str(policy);
    }
    nftpol_model::manifests::parse(&text)
        .expect("the manifests parse")
        .cluster
}

fn options(generation: u32) -> CompileOptions {
    let marks = MarkBits::default();
    CompileOptions {
        rejudge: Some(Rejudge {
            marks,
            generation: Generation::new(generation, marks).expect("in range"),
        }),
        ..CompileOptions::default()
    }
}

fn compiled(cluster: &Cluster, generation: u32) -> Ruleset {
    compile(&resolve(cluster, NODE), options(generation)).ruleset
}

#[test]
fn mark_bits_accept_a_contiguous_even_run_and_say_why_not_otherwise() {
    let cases: [(&str, &str, Result<u32, MarkBitsError>); 7] = [
        ("default", "0xffff0000", Ok(DEFAULT_MARK_BITS)),
        ("decimal", "3840", Ok(0xf00)),
        ("upper-case prefix", "0X00FF0000", Ok(0x00ff_0000)),
        (
            "gap",
            "0xf0f00000",
            Err(MarkBitsError::NotContiguous(0xf0f0_0000)),
        ),
        ("empty", "0", Err(MarkBitsError::NotContiguous(0))),
        ("odd width", "0x7", Err(MarkBitsError::BadWidth(0x7))),
        (
            "text",
            "high",
            Err(MarkBitsError::NotANumber("high".to_owned())),
        ),
    ];
    for (name, text, want) in cases {
        let got = text.parse::<MarkBits>().map(MarkBits::mask);
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(
        "0x3".parse::<MarkBits>().map(MarkBits::mask),
        Err(MarkBitsError::BadWidth(0x3)),
        "two bits cannot hold two generation fields of two bits"
    );
}

#[test]
fn the_fields_split_the_bits_egress_low_ingress_high() {
    let marks: MarkBits = "0x0000ff00".parse().expect("valid");
    assert_eq!(marks.field(Direction::Egress), 0x0000_0f00);
    assert_eq!(marks.field(Direction::Ingress), 0x0000_f000);
    assert_eq!(
        marks.max_generation(),
        14,
        "15, all bits, is the denied mark"
    );
    assert_eq!(marks.denied(Direction::Egress), 0x0000_0f00);
    assert_eq!(marks.denied(Direction::Ingress), 0x0000_f000);
    assert_eq!(MarkBits::default().max_generation(), 254);
}

#[test]
fn generations_wrap_round_to_one_never_to_zero() {
    let marks: MarkBits = "0xf".parse().expect("valid");
    let mut generation = Generation::FIRST;
    let mut seen = vec![generation.get()];
    for _ in 0..4 {
        generation = generation.next(marks);
        seen.push(generation.get());
    }
    assert_eq!(
        seen,
        [1, 2, 1, 2, 1],
        "3 is the denied mark, never a generation"
    );
    assert_eq!(Generation::new(0, marks), None);
    assert_eq!(Generation::new(3, marks), None);
}

#[test]
fn every_base_chain_opens_with_the_bypass_into_the_judged_chain_and_ends_in_the_stamp() {
    let ruleset = compiled(&cluster("web", &[DB_ADMITS_WEB]), 7);
    let bases: Vec<_> = ruleset
        .chains
        .values()
        .filter(|chain| chain.base.is_some())
        .collect();
    assert_eq!(bases.len(), 4);
    for chain in bases {
        let side = if chain.name.ends_with("egress") {
            "egress"
        } else {
            "ingress"
        };
        let first = chain.rules.first().expect("rules");
        assert_eq!(
            first.matches,
            [Match::CtState(
                [CtState::Established, CtState::Related].into()
            )],
            "{}",
            chain.name
        );
        assert_eq!(
            first.action,
            Action::Verdict(Verdict::Jump(format!("judged-{side}"))),
            "{}",
            chain.name
        );
        assert_eq!(
            chain.rules.last().map(|rule| &rule.action),
            Some(&Action::Verdict(Verdict::Goto(format!("stamp-{side}")))),
            "{}",
            chain.name
        );
        assert!(
            chain
                .rules
                .iter()
                .all(|rule| rule.action != Action::Verdict(Verdict::Accept)),
            "{}: every accept stamps",
            chain.name
        );
    }
}

#[test]
fn the_provenance_names_every_rule_re_judging_adds() {
    let compiled = compile(
        &resolve(&cluster("web", &[DB_ADMITS_WEB, DENY_A]), NODE),
        options(3),
    );
    for (name, chain) in &compiled.ruleset.chains {
        let origin = compiled
            .provenance
            .chain(name)
            .unwrap_or_else(|| panic!("{name} has a provenance"));
        assert_eq!(origin.chain.name(), *name);
        assert_eq!(
            origin.rules.len(),
            chain.rules.len(),
            "{name}: a role per rule"
        );
    }
    for direction in [Direction::Egress, Direction::Ingress] {
        let judged = ChainName::Judged { direction }.name();
        let stamp = ChainName::Stamp { direction }.name();
        assert_eq!(
            compiled.provenance.rule(&judged, 0).map(|(_, role)| role),
            Some(&RuleRole::CurrentGeneration)
        );
        assert_eq!(
            compiled.provenance.rule(&stamp, 0).map(|(_, role)| role),
            Some(&RuleRole::Stamp)
        );
    }
}

#[test]
fn the_generation_reads_back_and_can_be_set() {
    let marks = MarkBits::default();
    let mut ruleset = compiled(&cluster("web", &[DB_ADMITS_WEB]), 7);
    assert_eq!(
        rejudge::generation_of(&ruleset, marks).map(Generation::get),
        Some(7)
    );
    assert_eq!(
        rejudge::generation_of(&ruleset, "0xff".parse().expect("valid")),
        None,
        "other bits: not this generation"
    );
    let nine = Rejudge {
        marks,
        generation: Generation::new(9, marks).expect("in range"),
    };
    rejudge::set_generation(&mut ruleset, nine);
    assert_eq!(ruleset, compiled(&cluster("web", &[DB_ADMITS_WEB]), 9));
    let without = compile(
        &resolve(&cluster("web", &[DB_ADMITS_WEB]), NODE),
        CompileOptions::default(),
    )
    .ruleset;
    assert_eq!(rejudge::generation_of(&without, marks), None);
}

/// b's admitted web peers and port, as a rule of [`DB_ADMITS`].
const WEB_RULE: &str = "{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5432}]}";

fn web() -> Cluster {
    cluster("web", &[DB_ADMITS_WEB])
}

fn api() -> Cluster {
    cluster("api", &[DB_ADMITS_WEB])
}

/// The cluster with b's policy admitting `rules`.
fn db_admits(rules: &str) -> Cluster {
    let policy = DB_ADMITS.replace("{CHANGE}", rules);
    cluster("web", &[&policy])
}

/// Asserts, case by case, whether committing `after` over `before` may
/// take permission away.
fn assert_bumps(cases: Vec<(&str, Cluster, Cluster, bool)>) {
    for (name, before, after, want) in cases {
        let previous = compiled(&before, 1);
        let next = compiled(&after, 1);
        assert_eq!(
            rejudge::may_remove_permission(&previous, &next),
            want,
            "{name}: {:?}",
            diff(Some(&previous), &next).changes
        );
    }
}

#[test]
fn commits_that_only_add_permission_keep_the_generation() {
    assert_bumps(vec![
        ("nothing changes", web(), web(), false),
        ("a remote pod joins the web peers", api(), web(), false),
        (
            "a new peer in the existing rule",
            web(),
            db_admits(
                "[{from: [{podSelector: {matchLabels: {role: web}}}, {podSelector: {matchLabels: {role: api}}}], ports: [{port: 5432}]}]",
            ),
            false,
        ),
        (
            "a new port in the existing rule",
            web(),
            db_admits(
                "[{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5432}, {port: 5433}]}]",
            ),
            false,
        ),
        (
            "a wider port range in the existing rule",
            db_admits(
                "[{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5432, endPort: 5433}]}]",
            ),
            db_admits(
                "[{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5430, endPort: 5439}]}]",
            ),
            false,
        ),
        (
            "a new allow rule in the existing policy",
            web(),
            db_admits(&format!(
                "[{WEB_RULE}, {{from: [{{ipBlock: {{cidr: 192.0.2.0/24}}}}], ports: [{{port: 80}}]}}]"
            )),
            false,
        ),
        (
            "a new policy for a pod already isolated that way",
            web(),
            cluster("web", &[DB_ADMITS_WEB, DB_ADMITS_MONITOR]),
            false,
        ),
        (
            "a new pod on this node that no policy isolates",
            web(),
            cluster("web", &[DB_ADMITS_WEB, LOCAL_CACHE]),
            false,
        ),
        (
            "a new pod on this node that a policy isolates",
            web(),
            cluster("web", &[DB_ADMITS_WEB, &LOCAL_CACHE.replace("cache", "db")]),
            true,
        ),
    ]);
}

#[test]
fn commits_that_may_take_permission_away_move_the_generation() {
    assert_bumps(vec![
        ("a remote pod leaves the web peers", web(), api(), true),
        (
            "a port replaced by another",
            web(),
            db_admits("[{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5433}]}]"),
            true,
        ),
        (
            "a peer narrowed",
            web(),
            db_admits(
                "[{from: [{podSelector: {matchLabels: {role: web, tier: x}}}], ports: [{port: 5432}]}]",
            ),
            true,
        ),
        (
            "a new isolating policy",
            web(),
            cluster("web", &[DB_ADMITS_WEB, DENY_A]),
            true,
        ),
        (
            "a policy for a pod already isolated goes",
            cluster("web", &[DB_ADMITS_WEB, DB_ADMITS_MONITOR]),
            web(),
            true,
        ),
        ("an allow policy goes", web(), cluster("web", &[]), true),
    ]);
}

#[test]
fn element_changes_move_the_generation_unless_they_only_add_allowed_peers() {
    let web = || compiled(&cluster("web", &[DB_ADMITS_WEB]), 1);
    let api = || compiled(&cluster("api", &[DB_ADMITS_WEB]), 1);
    let cases = [
        ("a remote pod joins the web peers", api(), web(), false),
        ("a remote pod leaves the web peers", web(), api(), true),
    ];
    for (name, previous, next, want) in cases {
        let changes = diff(Some(&previous), &next);
        assert!(changes.is_element_only(), "{name}");
        assert_eq!(
            rejudge::elements_may_remove_permission(&changes, &previous),
            want,
            "{name}"
        );
    }
}

#[test]
fn with_generation_moves_only_the_generation_chains_around_element_changes() {
    let marks = MarkBits::default();
    let previous = compiled(&cluster("web", &[DB_ADMITS_WEB]), 1);
    let next = compiled(&cluster("api", &[DB_ADMITS_WEB]), 1);
    let elements = diff(Some(&previous), &next);
    assert!(elements.is_element_only());
    let two = Rejudge {
        marks,
        generation: Generation::new(2, marks).expect("in range"),
    };
    let changes = rejudge::with_generation(elements, &previous, two);
    let mut applied = previous.clone();
    applied.apply(&changes).expect("the changes apply");
    assert_eq!(applied, compiled(&cluster("api", &[DB_ADMITS_WEB]), 2));
    assert!(matches!(
        changes.changes.first(),
        Some(Change::FlushChain(_))
    ));
    assert!(matches!(
        changes.changes.last(),
        Some(Change::AddRule { .. })
    ));
}

/// `old` grown by part of `extra`: `extra` itself (mode 0), `extra`'s
/// policies and ClusterNetworkPolicies added (1), `extra`'s rules appended
/// to `old`'s policies (2), or `extra`'s pods beyond `old`'s added (3).
/// Most growths only add permission, some isolate pods or deny: both sides
/// of the judgement get tried.
fn grown(old: &Cluster, extra: &Cluster, mode: u8) -> Cluster {
    let extra_name = |name: Option<String>| name.map(|name| format!("{name}-extra"));
    let mut new = old.clone();
    match mode {
        0 => return extra.clone(),
        1 => {
            new.policies
                .extend(extra.policies.iter().cloned().map(|mut policy| {
                    policy.metadata.name = extra_name(policy.metadata.name);
                    policy
                }));
            new.cluster_policies
                .extend(extra.cluster_policies.iter().cloned().map(|mut policy| {
                    policy.metadata.name = extra_name(policy.metadata.name);
                    policy
                }));
        }
        2 => {
            for (policy, more) in new.policies.iter_mut().zip(&extra.policies) {
                let (Some(spec), Some(more)) = (policy.spec.as_mut(), more.spec.as_ref()) else {
                    continue;
                };
                if let Some(rules) = &more.ingress {
                    spec.ingress
                        .get_or_insert_with(Vec::new)
                        .extend(rules.iter().cloned());
                }
                if let Some(rules) = &more.egress {
                    spec.egress
                        .get_or_insert_with(Vec::new)
                        .extend(rules.iter().cloned());
                }
            }
        }
        _ => new
            .pods
            .extend(extra.pods.iter().skip(old.pods.len()).cloned()),
    }
    new
}

/// The soundness property of `may_remove_permission` on `old` → `new`:
/// when it says nothing is taken away, every packet of `picks` the old
/// ruleset accepts, opening or established (never judged: mark 0), either
/// way, the new one accepts.
fn assert_nothing_taken_away(
    old: &Cluster,
    new: &Cluster,
    picks: Vec<(prop::sample::Index, prop::sample::Index, Protocol, u16)>,
) -> Result<(), TestCaseError> {
    let before = compiled(old, 1);
    let after = compiled(new, 1);
    if rejudge::may_remove_permission(&before, &after) {
        return Ok(());
    }
    let mut pool = strategies::probe_addresses(old);
    pool.extend(strategies::probe_addresses(new));
    pool.sort_unstable();
    pool.dedup();
    for (source, destination, protocol, port) in picks {
        let source = *source.get(&pool);
        let candidates: Vec<IpAddr> = pool
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == source.is_ipv4())
            .collect();
        let destination = *destination.get(&candidates);
        let connection = Connection {
            source,
            destination,
            protocol,
            port,
        };
        let opening = packet_for(&connection);
        let packets = [
            opening,
            opening.established(CtDirection::Original, 0),
            opening.established(CtDirection::Reply, 0),
        ];
        for packet in packets {
            let was = interpret(&before, &packet).expect("well formed");
            if !was.accepted {
                continue;
            }
            let is = interpret(&after, &packet).expect("well formed");
            prop_assert!(
                is.accepted,
                "{:?} {:?} accepted before, not after a commit said to take nothing away\nhits before: {:#?}\nhits after: {:#?}",
                connection,
                packet.conntrack.map(|entry| entry.direction),
                was.hits,
                is.hits
            );
        }
    }
    Ok(())
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
        8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Soundness of `may_remove_permission` on NetworkPolicy clusters.
    #[test]
    fn a_commit_said_to_take_nothing_away_accepts_everything_the_old_one_did(
        old in strategies::cluster(),
        extra in strategies::cluster(),
        mode in 0u8..4,
        picks in picks(),
    ) {
        assert_nothing_taken_away(&old, &grown(&old, &extra, mode), picks)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Soundness of `may_remove_permission` with ClusterNetworkPolicy tiers.
    #[test]
    fn a_commit_said_to_take_nothing_away_accepts_everything_the_old_one_did_with_tiers(
        old in strategies::cluster_with_tiers(),
        extra in strategies::cluster_with_tiers(),
        mode in 0u8..4,
        picks in picks(),
    ) {
        assert_nothing_taken_away(&old, &grown(&old, &extra, mode), picks)?;
    }
}
