//! compare() and truth-table rendering: pure, no privileges needed.

use nftpol_lab::report::Family;
use nftpol_lab::{compare, LabError, Mismatch, NodeProbe, Probe, Report, StepReport};

fn probe(from: &str, to: &str, port: u16, protocol: &str, connected: bool) -> Probe {
    Probe {
        from: from.to_owned(),
        to: to.to_owned(),
        port,
        protocol: protocol.to_owned(),
        family: Family::V4,
        connected,
        skipped: false,
    }
}

fn node_probe(to: &str, connected: bool) -> NodeProbe {
    NodeProbe {
        node: "node-1".to_owned(),
        to: to.to_owned(),
        port: 80,
        protocol: "TCP".to_owned(),
        family: Family::V4,
        connected,
        skipped: false,
    }
}

/// x/a → x/b is blocked on 80/TCP over IPv4 and connects over IPv6;
/// everything else connects.
fn report() -> Report {
    Report {
        probes: vec![
            probe("x/a", "x/a", 80, "TCP", true),
            probe("x/a", "x/b", 80, "TCP", false),
            Probe {
                family: Family::V6,
                ..probe("x/a", "x/b", 80, "TCP", true)
            },
            probe("x/b", "x/a", 80, "TCP", true),
            probe("x/b", "x/b", 80, "TCP", true),
            probe("x/a", "x/b", 81, "UDP", true),
            probe("x/b", "x/b", 81, "UDP", true),
            Probe {
                skipped: true,
                ..probe("x/a", "x/b", 82, "SCTP", false)
            },
        ],
        node_probes: vec![node_probe("x/a", true)],
        scenario: "demo".to_owned(),
        nodes: 2,
        via_service: false,
        verdicts: Vec::new(),
        steps: Vec::new(),
    }
}

/// Every probe of [`report`], as EXPECTED would list it (no `family` for
/// IPv4), in another order and case; the SCTP entry's result is not judged.
const ALL_AGREE: &str = r#"{"probes": [
    {"from": "x/b", "to": "x/a", "port": 80, "protocol": "tcp", "connected": true},
    {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "family": "IPv6", "connected": true},
    {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": false},
    {"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "family": "IPv4", "connected": true},
    {"from": "x/b", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
    {"from": "x/a", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true},
    {"from": "x/b", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true},
    {"from": "x/a", "to": "x/b", "port": 82, "protocol": "SCTP", "connected": true}
]}"#;

#[test]
fn compare_finds_no_mismatch_when_expected_agrees_in_any_order_and_case() {
    let mismatches = compare(&report(), ALL_AGREE).unwrap();
    assert_eq!(mismatches, vec![], "skipped probes are not judged");
}

#[test]
fn compare_reports_each_differing_missing_unexpected_and_failed_node_probe() {
    let expected = r#"{"probes": [
        {"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "family": "IPv6", "connected": true},
        {"from": "x/a", "to": "x/c", "port": 80, "protocol": "TCP", "connected": false},
        {"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/b", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/b", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true}
    ]}"#;
    let mut report = report();
    report.node_probes.push(node_probe("x/b", false));
    let mismatches = compare(&report, expected).unwrap();
    let shown: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "x/a -> x/b TCP/80 IPv4: expected connected, got blocked",
            "x/a -> x/b UDP/81 IPv4: connected, but EXPECTED has no entry for it",
            "x/a -> x/c TCP/80 IPv4: expected blocked, but the run has no such probe",
            "node-1 -> x/b TCP/80 IPv4: node to local pod blocked (must always connect)",
        ]
    );
    assert!(matches!(
        mismatches[0],
        Mismatch::Differs {
            expected_connected: true,
            ..
        }
    ));
    assert!(matches!(mismatches[1], Mismatch::Unexpected { .. }));
}

#[test]
fn an_entry_without_family_judges_the_ipv4_probe_only() {
    // The IPv6 probe connects, the IPv4 one does not: an entry without
    // `family` saying "connected" is wrong about IPv4, and says nothing of
    // IPv6 (which then lacks an expectation).
    let expected = r#"{"probes": [
        {"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/b", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/a", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true},
        {"from": "x/b", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true}
    ]}"#;
    let mismatches = compare(&report(), expected).unwrap();
    let families: Vec<(&str, Family)> = mismatches
        .iter()
        .map(|m| match m {
            Mismatch::Differs { actual, .. } => ("differs", actual.family),
            Mismatch::Unexpected { actual } => ("unexpected", actual.family),
            other => panic!("unexpected mismatch {other:?}"),
        })
        .collect();
    assert_eq!(
        families,
        vec![("differs", Family::V4), ("unexpected", Family::V6)],
        "{expected}"
    );
}

#[test]
fn compare_rejects_malformed_and_duplicated_expectations() {
    let cases = [
        ("not json", "{"),
        ("no probes key", r#"{"results": []}"#),
        (
            "duplicate key",
            r#"{"probes": [
                {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
                {"from": "x/a", "to": "x/b", "port": 80, "protocol": "tcp", "connected": false}
            ]}"#,
        ),
        (
            "duplicate key, IPv4 written and implied",
            r#"{"probes": [
                {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "family": "IPv4", "connected": true},
                {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true}
            ]}"#,
        ),
        (
            "unknown family",
            r#"{"probes": [
                {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "family": "ipv6", "connected": true}
            ]}"#,
        ),
    ];
    for (name, expected) in cases {
        let result = compare(&report(), expected);
        assert!(
            matches!(result, Err(LabError::Expected { .. })),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn truth_table_renders_one_matrix_per_port_protocol_and_family_with_totals() {
    let want = "\
scenario demo (2 nodes)

TCP/80 IPv4 (rows: from, columns: to; . connected, X blocked, ? not probed)
-   x/a x/b
x/a .   X
x/b .   .
TCP/80 IPv4: 3 connected, 1 blocked, 0 skipped

TCP/80 IPv6 (rows: from, columns: to; . connected, X blocked, ? not probed)
-   x/b
x/a .
TCP/80 IPv6: 1 connected, 0 blocked, 0 skipped

UDP/81 IPv4 (rows: from, columns: to; . connected, X blocked, ? not probed)
-   x/b
x/a .
x/b .
UDP/81 IPv4: 2 connected, 0 blocked, 0 skipped

SCTP/82 IPv4: 1 probes skipped (no SCTP sockets on this kernel)

node probes: 1/1 connected
total: 8 probes, 6 connected, 1 blocked, 1 skipped
";
    assert_eq!(report().truth_table(), want);
}

#[test]
fn json_has_probes_and_node_probes_only_every_probe_names_its_family() {
    let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["node_probes", "probes"]);
    assert_eq!(
        json["probes"][0],
        serde_json::json!({"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "family": "IPv4", "connected": true})
    );
    assert_eq!(json["probes"][2]["family"], serde_json::json!("IPv6"));
    assert_eq!(json["probes"][7]["skipped"], serde_json::json!(true));
    assert_eq!(json["node_probes"][0]["family"], serde_json::json!("IPv4"));
}

#[test]
fn steps_print_their_own_tables_and_json_after_the_first_probes() {
    let mut report = report();
    assert!(
        !report.to_json().contains("\"steps\""),
        "no steps key without steps"
    );
    report.steps.push(StepReport {
        name: "open x/b".to_owned(),
        probes: vec![probe("x/a", "x/b", 80, "TCP", true)],
        node_probes: Vec::new(),
        rounds: 3,
    });
    let tables = report.truth_table();
    let (before, after) = tables
        .split_once("after step 1: open x/b\n")
        .expect("a heading for the step");
    assert!(before.contains("total: 8 probes"), "{tables}");
    assert!(
        after.contains("total: 1 probes, 1 connected, 0 blocked"),
        "{tables}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert_eq!(json["steps"][0]["name"], "open x/b");
    assert_eq!(json["steps"][0]["probes"][0]["connected"], true);
    assert!(
        json["steps"][0].get("rounds").is_none(),
        "rounds vary between runs"
    );
    let step = report.steps[0].as_report();
    let expected = r#"{"probes": [{"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": false}]}"#;
    assert_eq!(compare(&step, expected).expect("comparable").len(), 1);
}
