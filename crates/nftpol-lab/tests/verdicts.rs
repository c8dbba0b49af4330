//! Verdict logs with real traffic: in a lab run, every denied probe is
//! logged as one connection naming the isolating policy, both pods and the
//! direction; allowed probes are logged only in `all` mode, naming the
//! allowing rule; logging changes no verdict; and a denied probe through a
//! Service address names that address as the original destination. The
//! tests take turns ([`LAB`]) and are alone in their test binary, so every
//! namespace named after this process's pid belongs to the running one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use nftpol_lab::{netns, plan, service};
use nftpol_lab::{run, Report, RunOptions};
use nftpol_ruleset::verdict_log::VerdictLogMode;
use nftpol_testkit::netns::Sweep;
use serde_json::Value;

/// x/a (node-1) admits x/b (node-1) on 80/TCP only; x/c is on node-2. The
/// policy raises its log limit (kube-router's burst alias) so that no
/// denied probe goes unlogged.
const SCENARIO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec:
  nodeName: node-1
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {pod: c}}
spec:
  nodeName: node-2
  containers:
  - name: s
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-to-a
  namespace: x
  annotations: {nftpol.io/log-limit: 1000/second, kube-router.io/netpol-nflog-limit-burst: "1000"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80, protocol: TCP}]
"#;

/// One lab at a time: each test checks that it left no namespace behind.
static LAB: Mutex<()> = Mutex::new(());

/// (from, to, port, protocol) of a probe or a line.
type Key = (String, String, u64, String);

fn key_of(line: &Value) -> Key {
    (
        line["src_pod"].as_str().unwrap_or_default().to_owned(),
        line["dst_pod"].as_str().unwrap_or_default().to_owned(),
        line["dst_port"].as_u64().unwrap_or_default(),
        line["protocol"].as_str().unwrap_or_default().to_owned(),
    )
}

fn probes(report: &Report, connected: bool) -> BTreeSet<Key> {
    report
        .probes
        .iter()
        .filter(|probe| probe.connected == connected && probe.from != probe.to)
        .map(|probe| {
            (
                probe.from.clone(),
                probe.to.clone(),
                u64::from(probe.port),
                probe.protocol.clone(),
            )
        })
        .collect()
}

/// The lines of each probe, with the verdict given.
fn lines_by_probe<'a>(report: &'a Report, verdict: &str) -> BTreeMap<Key, Vec<&'a Value>> {
    let mut by_probe: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    for line in report
        .verdicts
        .iter()
        .filter(|line| line["verdict"] == verdict)
    {
        by_probe.entry(key_of(line)).or_default().push(line);
    }
    by_probe
}

fn lab(mode: VerdictLogMode) -> Report {
    lab_with(&RunOptions {
        verdict_log: mode,
        ..RunOptions::default()
    })
}

fn lab_with(options: &RunOptions) -> Report {
    run(SCENARIO, "verdicts", options).expect("the lab runs")
}

/// Every line of a probe is one connection (one source port): a dropped
/// TCP connect's SYN retransmit, if it leaves more than a second after the
/// SYN, is a line of its own, with the same ports.
fn assert_one_connection(probe: &Key, lines: &[&Value]) {
    let ports: BTreeSet<u64> = lines
        .iter()
        .filter_map(|line| line["src_port"].as_u64())
        .collect();
    assert_eq!(ports.len(), 1, "{probe:?}: {lines:#?}");
}

#[test]
fn denied_probes_log_once_naming_the_policy_and_allowed_ones_only_in_all_mode() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab creates network namespaces: run it as root"
    );
    let _turn = LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let guard = Sweep::new(format!("{}{}-", netns::PREFIX, std::process::id()));
    let quiet = lab(VerdictLogMode::Off);
    assert!(quiet.verdicts.is_empty());
    let blocked = probes(&quiet, false);
    let want_blocked: BTreeSet<Key> = [
        ("x/b", "x/a", 80, "UDP"),
        ("x/c", "x/a", 80, "TCP"),
        ("x/c", "x/a", 80, "UDP"),
    ]
    .into_iter()
    .map(|(from, to, port, protocol)| (from.to_owned(), to.to_owned(), port, protocol.to_owned()))
    .collect();
    assert_eq!(blocked, want_blocked);

    for mode in [VerdictLogMode::Deny, VerdictLogMode::All] {
        let report = lab(mode);
        assert_eq!(
            report.probes, quiet.probes,
            "{mode:?}: logging changed a verdict"
        );
        let denied = lines_by_probe(&report, "drop");
        assert_eq!(
            denied.keys().cloned().collect::<BTreeSet<_>>(),
            blocked,
            "{mode:?}: one logged connection per denied probe, none for others"
        );
        for (probe, lines) in &denied {
            assert_one_connection(probe, lines);
            for line in lines {
                assert_eq!(line["direction"], "ingress", "{line}");
                assert_eq!(line["reason"], "default-deny", "{line}");
                assert_eq!(line["isolating"], serde_json::json!(["x/b-to-a"]), "{line}");
                assert_eq!(line["node"], "node-1", "{line}");
            }
        }
        let accepted = lines_by_probe(&report, "accept");
        if mode == VerdictLogMode::Deny {
            assert!(accepted.is_empty(), "{accepted:#?}");
        } else {
            let want: BTreeSet<Key> =
                [("x/b".to_owned(), "x/a".to_owned(), 80, "TCP".to_owned())].into();
            assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), want);
            for (probe, lines) in &accepted {
                assert_one_connection(probe, lines);
                assert_eq!(
                    lines.len(),
                    1,
                    "an accepted connection's first packet: {lines:#?}"
                );
                assert_eq!(lines[0]["policy"], "x/b-to-a");
                assert_eq!(lines[0]["rule"], 0);
                assert_eq!(lines[0]["reason"], "rule");
            }
        }
    }
    assert_eq!(
        guard.present(),
        Vec::<String>::new(),
        "every run removes every namespace it made"
    );
}

/// Through per-pod ClusterIPs, DNATed on the source pod's node: a probe
/// denied on that node (x/b → x/a, both on node-1) names the ClusterIP and
/// port it dialled as the original destination. One denied at the far
/// node's ingress (x/c on node-2 → x/a) arrives already translated: that
/// node's conntrack never saw the Service address, so its lines name none.
#[test]
fn a_denied_probe_through_a_service_names_the_service_address() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab creates network namespaces: run it as root"
    );
    let _turn = LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let guard = Sweep::new(format!("{}{}-", netns::PREFIX, std::process::id()));
    let mut cluster = nftpol_model::manifests::parse(SCENARIO)
        .expect("the scenario parses")
        .cluster;
    let cluster_ips = service::cluster_ips(&plan::place(&mut cluster, None).expect("a plan"));
    let report = lab_with(&RunOptions {
        via_service: true,
        verdict_log: VerdictLogMode::Deny,
        ..RunOptions::default()
    });
    let denied = lines_by_probe(&report, "drop");
    assert_eq!(
        denied.keys().cloned().collect::<BTreeSet<_>>(),
        probes(&report, false),
        "one logged connection per denied probe"
    );
    let service_of_a = cluster_ips["x/a"][0].to_string();
    for ((from, _, port, _), lines) in &denied {
        for line in lines {
            if from == "x/b" {
                assert_eq!(line["original_dst"], service_of_a.as_str(), "{line}");
                assert_eq!(line["original_dst_port"], *port, "{line}");
                assert_ne!(line["dst"], line["original_dst"], "{line}");
            } else {
                assert!(line.get("original_dst").is_none(), "{line}");
            }
        }
    }
    assert!(
        denied.keys().any(|(from, ..)| from == "x/b"),
        "a same-node denied probe: {denied:#?}"
    );
    assert_eq!(
        guard.present(),
        Vec::<String>::new(),
        "every run removes every namespace it made"
    );
}
