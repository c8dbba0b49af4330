//! compare() and truth-table rendering: pure, no privileges needed.

use nftpol_lab::{compare, LabError, Mismatch, NodeProbe, Probe, Report};

fn probe(from: &str, to: &str, port: u16, protocol: &str, connected: bool) -> Probe {
    Probe {
        from: from.to_owned(),
        to: to.to_owned(),
        port,
        protocol: protocol.to_owned(),
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
        connected,
        skipped: false,
    }
}

/// x/a → x/b is blocked on 80/TCP; everything else connects.
fn report() -> Report {
    Report {
        probes: vec![
            probe("x/a", "x/a", 80, "TCP", true),
            probe("x/a", "x/b", 80, "TCP", false),
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
    }
}

#[test]
fn compare_finds_no_mismatch_when_expected_agrees_in_any_order_and_case() {
    let expected = r#"{"probes": [
        {"from": "x/b", "to": "x/a", "port": 80, "protocol": "tcp", "connected": true},
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": false},
        {"from": "x/a", "to": "x/b", "port": 82, "protocol": "SCTP", "connected": true}
    ]}"#;
    let mismatches = compare(&report(), expected).unwrap();
    assert_eq!(
        mismatches,
        vec![],
        "skipped and unlisted probes are not judged"
    );
}

#[test]
fn compare_reports_each_differing_missing_and_failed_node_probe() {
    let expected = r#"{"probes": [
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "connected": true},
        {"from": "x/a", "to": "x/c", "port": 80, "protocol": "TCP", "connected": false},
        {"from": "x/b", "to": "x/b", "port": 81, "protocol": "UDP", "connected": true}
    ]}"#;
    let mut report = report();
    report.node_probes.push(node_probe("x/b", false));
    let mismatches = compare(&report, expected).unwrap();
    let shown: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "x/a -> x/b TCP/80: expected connected, got blocked",
            "x/a -> x/c TCP/80: expected blocked, but the run has no such probe",
            "node-1 -> x/b TCP/80: node to local pod blocked (must always connect)",
        ]
    );
    assert!(matches!(
        mismatches[0],
        Mismatch::Differs {
            expected_connected: true,
            ..
        }
    ));
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
fn truth_table_renders_one_matrix_per_port_and_protocol_with_totals() {
    let want = "\
scenario demo (2 nodes)

TCP/80 (rows: from, columns: to; . connected, X blocked, ? not probed)
-   x/a x/b
x/a .   X
x/b .   .
TCP/80: 3 connected, 1 blocked, 0 skipped

UDP/81 (rows: from, columns: to; . connected, X blocked, ? not probed)
-   x/b
x/a .
x/b .
UDP/81: 2 connected, 0 blocked, 0 skipped

SCTP/82: 1 probes skipped (no SCTP sockets on this kernel)

node probes: 1/1 connected
total: 7 probes, 5 connected, 1 blocked, 1 skipped
";
    assert_eq!(report().truth_table(), want);
}

#[test]
fn json_has_probes_and_node_probes_only_and_skipped_only_when_set() {
    let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["node_probes", "probes"]);
    assert_eq!(
        json["probes"][0],
        serde_json::json!({"from": "x/a", "to": "x/a", "port": 80, "protocol": "TCP", "connected": true})
    );
    assert_eq!(json["probes"][6]["skipped"], serde_json::json!(true));
}
