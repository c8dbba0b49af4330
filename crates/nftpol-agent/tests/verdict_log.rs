//! Verdict log lines: a logged packet's prefix and headers become one JSON
//! line naming the policies and pods; identical lines merge for a second;
//! the output file reopens; and the reader thread, in a fresh network
//! namespace, turns real NFLOG packets into lines and counts them.

use nftpol_testkit::netns::Netns;
use std::io::Read as _;
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nftpol_agent::metrics::Metrics;
use nftpol_agent::verdict_log::{
    describe, Directory, LogDirectory, Merger, Output, OutputTarget, VerdictLine, VerdictLogConfig,
    VerdictLogReader,
};
use nftpol_ir::interpret::{interpret, Packet};
use nftpol_ir::Hook;
use nftpol_model::{manifests, resolve, Snapshot};
use nftpol_netlink::nflog::LoggedPacket;
use nftpol_ruleset::catalogue::Provenance;
use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_ruleset::verdict_log::{VerdictLogMode, VerdictLogOptions};

const SCENARIO: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {role: db}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {role: web}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 10.244.2.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: shop, labels: {role: probe}}
spec: {nodeName: node-2, hostNetwork: true, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 192.168.0.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow, namespace: shop}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: web}}}]
    ports: [{port: 80}]
";

/// An IPv4 TCP SYN's headers, as NFLOG copies them.
fn tcp_v4(source: [u8; 4], destination: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut bytes = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    bytes.extend(source);
    bytes.extend(destination);
    bytes.extend(sport.to_be_bytes());
    bytes.extend(dport.to_be_bytes());
    bytes.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    bytes
}

/// The line of a first packet from `source` to `destination`:80, with
/// the prefix the compiled ruleset logs it under.
fn line_of(mode: VerdictLogMode, source: [u8; 4], destination: [u8; 4]) -> Option<VerdictLine> {
    let cluster = manifests::parse(SCENARIO).expect("scenario").cluster;
    let options = CompileOptions {
        verdict_log: VerdictLogOptions { mode, group: 100 },
        ..CompileOptions::default()
    };
    let compiled = compile(&resolve(&cluster, "node-1"), options);
    let trace = interpret(
        &compiled.ruleset,
        &Packet::opening(
            Hook::Forward,
            IpAddr::from(source),
            IpAddr::from(destination),
            6,
            80,
        ),
    )
    .expect("interprets");
    let directory = Directory::new(
        "node-1",
        &compiled.provenance,
        &Snapshot::from(&cluster).pods,
    );
    let log = trace.logs.first()?;
    let packet = LoggedPacket {
        family: 2,
        hook: 2,
        prefix: Some(log.prefix.clone()),
        payload: tcp_v4(source, destination, 40000, 80),
        seq: Some(0),
        original: None,
    };
    describe(&packet, &directory, "2026-12-01T23:00:00.000Z".to_owned())
}

#[test]
fn lines_name_the_decision_the_pods_and_the_direction() {
    let denied = line_of(VerdictLogMode::Deny, [192, 168, 0, 2], [10, 244, 1, 2])
        .expect("a denied first packet is logged");
    assert_eq!(
        serde_json::to_string(&denied).expect("serializes"),
        concat!(
            r#"{"time":"2026-12-01T23:00:00.000Z","node":"node-1","direction":"ingress","verdict":"drop","#,
            r#""tier":"networkpolicy","reason":"default-deny","isolating":["shop/db-allow"],"family":"IPv4","#,
            r#""protocol":"TCP","src":"192.168.0.2","src_port":40000,"src_pod":"node:node-2","#,
            r#""dst":"10.244.1.2","dst_port":80,"dst_pod":"shop/db","count":1}"#
        )
    );
    assert_eq!(
        line_of(VerdictLogMode::Deny, [10, 244, 2, 3], [10, 244, 1, 2]),
        None,
        "an allowed packet is not logged in deny mode"
    );
    let allowed = line_of(VerdictLogMode::All, [10, 244, 2, 3], [10, 244, 1, 2])
        .expect("an allowed first packet is logged in all mode");
    assert_eq!(
        (
            allowed.verdict,
            allowed.reason,
            allowed.policy.as_deref(),
            allowed.rule,
            allowed.src_pod.as_str()
        ),
        ("accept", "rule", Some("shop/db-allow"), Some(0), "shop/web")
    );
    let unknown = line_of(VerdictLogMode::Deny, [203, 0, 113, 9], [10, 244, 1, 77])
        .expect("the unknown-pod drop is logged");
    assert_eq!(
        (
            unknown.reason,
            unknown.tier,
            unknown.src_pod.as_str(),
            unknown.dst_pod.as_str()
        ),
        ("unknown-pod", "node", "external", "external")
    );
}

#[test]
fn foreign_prefixes_and_stale_ids_are_told_apart() {
    let directory = Directory::new("node-1", &Provenance::default(), &[]);
    let packet = |prefix: &str| LoggedPacket {
        family: 2,
        hook: 2,
        prefix: Some(prefix.to_owned()),
        payload: tcp_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2),
        seq: None,
        original: None,
    };
    let time = || "t".to_owned();
    assert_eq!(describe(&packet("IN=eth0 "), &directory, time()), None);
    let stale = describe(&packet("nftpol:di:iso:abcdefgh"), &directory, time())
        .expect("an nftpol prefix is reported");
    assert_eq!((stale.reason, stale.isolating.len()), ("stale", 0));
}

fn sample(port: u16) -> VerdictLine {
    static LINE: std::sync::OnceLock<VerdictLine> = std::sync::OnceLock::new();
    let line = LINE.get_or_init(|| {
        line_of(VerdictLogMode::Deny, [192, 168, 0, 2], [10, 244, 1, 2])
            .expect("a denied packet is logged")
    });
    VerdictLine {
        src_port: Some(port),
        ..line.clone()
    }
}

#[test]
fn identical_lines_within_a_second_merge_with_a_count() {
    let start = Instant::now();
    let mut merger = Merger::default();
    assert!(merger.add(sample(1), start));
    assert!(merger.add(sample(1), start + Duration::from_millis(400)));
    assert!(merger.add(sample(2), start + Duration::from_millis(500)));
    assert_eq!(
        merger.take_due(Some(start + Duration::from_millis(900))),
        vec![]
    );
    let due = merger.take_due(Some(start + Duration::from_secs(1)));
    assert_eq!(
        due.iter()
            .map(|line| (line.src_port, line.count))
            .collect::<Vec<_>>(),
        [(Some(1), 2)]
    );
    assert!(merger.add(sample(1), start + Duration::from_millis(1200)));
    let rest = merger.take_due(None);
    assert_eq!(
        rest.iter()
            .map(|line| (line.src_port, line.count))
            .collect::<Vec<_>>(),
        [(Some(2), 1), (Some(1), 1)]
    );
    assert!(merger.is_empty());
}

#[test]
fn the_merge_table_is_bounded() {
    let now = Instant::now();
    let mut merger = Merger::default();
    let accepted = (0..=u16::try_from(nftpol_agent::verdict_log::MAX_PENDING).expect("fits"))
        .filter(|port| merger.add(sample(*port), now))
        .count();
    assert_eq!(accepted, nftpol_agent::verdict_log::MAX_PENDING);
    assert_eq!(merger.len(), nftpol_agent::verdict_log::MAX_PENDING);
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nftpol-verdict-log-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn read_to_string(path: &std::path::Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_string(&mut text))
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    text
}

#[test]
fn the_output_file_is_appended_to_and_reopened_after_a_rotation() {
    let dir = scratch_dir();
    let path = dir.join("verdicts.log");
    std::fs::write(&path, "kept\n").expect("an existing file");
    let mut output = Output::open(OutputTarget::File(path.clone())).expect("opens");
    output.write_line("one").expect("writes");
    output.flush().expect("flushes");
    let rotated = dir.join("verdicts.log.1");
    std::fs::rename(&path, &rotated).expect("rotates");
    output
        .write_line("two")
        .expect("writes to the rotated file");
    output.reopen().expect("reopens");
    output.write_line("three").expect("writes");
    output.flush().expect("flushes");
    assert_eq!(read_to_string(&rotated), "kept\none\ntwo\n");
    assert_eq!(read_to_string(&path), "three\n");
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

const LOCAL: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: local, namespace: x}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 127.0.0.1}]}
";

#[test]
fn the_reader_turns_nflog_packets_into_merged_lines_and_counts_them() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a network namespace and NFLOG)"
    );
    let dir = scratch_dir();
    let path = dir.join("reader.log");
    let metrics = Arc::new(Metrics::new());
    let text = std::thread::spawn({
        let (path, metrics) = (path.clone(), Arc::clone(&metrics));
        let netns = Netns::new();
        move || {
            // The test kit's namespace (`lo` up), removed when this thread
            // ends; the threads spawned in it keep it alive meanwhile.
            netns.enter().expect("entering the test's network namespace");
            let directory = LogDirectory::default();
            let cluster = manifests::parse(LOCAL).expect("pods").cluster;
            directory.publish(Directory::new(
                "node-1",
                &Provenance::default(),
                &Snapshot::from(&cluster).pods,
            ));
            // Threads spawned from here inherit this namespace.
            let reader = VerdictLogReader::spawn(
                VerdictLogConfig {
                    group: 100,
                    output: OutputTarget::File(path.clone()),
                },
                directory,
                Arc::clone(&metrics),
                || Ok(()),
            )
            .expect("starts");
            let mut nft = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("nft");
            std::io::Write::write_all(
                nft.stdin.as_mut().expect("stdin"),
                b"table inet t {\n\tchain out {\n\t\ttype filter hook output priority 0;\n\t\tudp dport 9999 log prefix \"nftpol:de:unk\" group 100\n\t}\n}\n",
            )
            .expect("ruleset");
            assert!(nft.wait().expect("nft").success());
            // Probe until a line is written (the reader holds the group and
            // the probe's merge window has closed), within a deadline.
            let deadline = Instant::now() + Duration::from_secs(10);
            let first = UdpSocket::bind("127.0.0.1:0").expect("socket");
            let second = UdpSocket::bind("127.0.0.1:0").expect("socket");
            while !metrics.encode().contains("nftpol_verdict_log_lines_total{")
                && Instant::now() < deadline
            {
                first.send_to(b"x", "127.0.0.1:9999").expect("send");
                std::thread::sleep(Duration::from_millis(50));
            }
            for _ in 0..3 {
                second.send_to(b"y", "127.0.0.1:9999").expect("send");
            }
            reader.stop();
            std::fs::read_to_string(&path).expect("the output")
        }
    })
    .join()
    .expect("namespace thread");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert!(!lines.is_empty(), "{text}");
    for line in &lines {
        assert_eq!(line["reason"], "unknown-pod", "{line}");
        assert_eq!(line["src_pod"], "x/local", "{line}");
        assert_eq!(line["protocol"], "UDP", "{line}");
    }
    let second: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["src_port"] != lines[0]["src_port"])
        .collect();
    assert_eq!(second.len(), 1, "the second socket's packets merge: {text}");
    assert_eq!(second[0]["count"], 3, "{text}");
    let total: u64 = lines.iter().filter_map(|line| line["count"].as_u64()).sum();
    let encoded = metrics.encode();
    assert!(
        encoded.contains(&format!(
            "nftpol_verdict_log_lines_total{{verdict=\"drop\",direction=\"egress\"}} {total}"
        )),
        "{encoded}"
    );
    assert!(
        encoded.contains("nftpol_verdict_log_lost_total 0"),
        "{encoded}"
    );
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

/// A flood of denied first packets through the compiler's own log rule
/// (default limit, 10/minute burst 10) and a counted drop: the lines
/// report at most burst + rate × duration packets, the drop counter sees
/// every packet (logging changed no verdict), and no line was lost.
#[test]
fn a_flood_of_denied_connections_logs_within_the_limit_and_drops_them_all() {
    use nftpol_netlink::{Dataplane, KernelDataplane};

    const FLOOD: usize = 1000;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a network namespace and NFLOG)"
    );
    let dir = scratch_dir();
    let path = dir.join("flood.log");
    let metrics = Arc::new(Metrics::new());
    let (text, elapsed, dropped) = std::thread::spawn({
        let (path, metrics) = (path.clone(), Arc::clone(&metrics));
        let netns = Netns::new();
        move || {
            // The test kit's namespace (`lo` up), removed when this thread
            // ends; the threads spawned in it keep it alive meanwhile.
            netns
                .enter()
                .expect("entering the test's network namespace");
            let reader = VerdictLogReader::spawn(
                VerdictLogConfig {
                    group: 100,
                    output: OutputTarget::File(path.clone()),
                },
                LogDirectory::default(),
                Arc::clone(&metrics),
                || Ok(()),
            )
            .expect("starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !reader.is_listening() {
                assert!(Instant::now() < deadline, "the reader binds the group");
                std::thread::sleep(Duration::from_millis(10));
            }
            let ruleset = flood_ruleset();
            let mut kernel = KernelDataplane::open().expect("netlink");
            kernel
                .apply(&nftpol_ir::diff::diff(None, &ruleset))
                .expect("applies");
            let started = Instant::now();
            for _ in 0..FLOOD {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
                // Each socket is a new connection; the drop makes the send fail.
                let sent = socket.send_to(b"f", "127.0.0.1:9999");
                assert_eq!(
                    sent.map_err(|error| error.kind()),
                    Err(std::io::ErrorKind::PermissionDenied),
                    "the drop stands"
                );
            }
            let elapsed = started.elapsed();
            reader.stop();
            let dropped: u64 = kernel
                .read_counters()
                .expect("counters")
                .iter()
                .map(|counter| counter.packets)
                .sum();
            (
                std::fs::read_to_string(&path).expect("the output"),
                elapsed,
                dropped,
            )
        }
    })
    .join()
    .expect("namespace thread");
    assert_eq!(
        dropped, FLOOD as u64,
        "every packet was dropped and counted"
    );
    let logged: u64 = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON"))
        .filter_map(|line| line["count"].as_u64())
        .sum();
    let limit = default_limit_bound(elapsed);
    assert!(
        (1..=limit).contains(&logged),
        "{logged} packets logged in {elapsed:?}, at most {limit}: {text}"
    );
    let encoded = metrics.encode();
    assert!(
        encoded.contains("nftpol_verdict_log_lost_total 0"),
        "{encoded}"
    );
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

/// What the default limit (`10/minute burst 10`) lets through in
/// `elapsed`: burst + rate × duration, rounded up.
fn default_limit_bound(elapsed: Duration) -> u64 {
    let limit = nftpol_model::LogLimit::default();
    let period_ms = u128::from(limit.period.seconds()) * 1000;
    let refilled = (u128::from(limit.rate) * elapsed.as_millis()).div_ceil(period_ms);
    u64::from(limit.burst) + u64::try_from(refilled).unwrap_or(u64::MAX)
}

/// Table `inet nftpol` with one output chain: the record and log rules the
/// compiler puts before the unknown-pod drop (UDP to port 9999), then the
/// drop, and the maps the record rules write.
fn flood_ruleset() -> nftpol_ir::Ruleset {
    use nftpol_ir::{
        Action, BaseChain, Chain, ChainPolicy, Field, Match, Rule, Ruleset, Set, Verdict,
    };
    use nftpol_model::LogLimit;
    use nftpol_ruleset::catalogue::Family;
    use nftpol_ruleset::log_prefix::{self, LogPrefix, Subject};

    // The rule the compiler puts before the unknown-pod drop, then the drop.
    let ports = Set {
        name: "probe-port".to_owned(),
        key: vec![nftpol_ir::KeyType::InetService],
        interval: false,
        is_verdict_map: false,
        dynamic: None,
        comment: None,
        elements: [nftpol_ir::Element::key(vec![nftpol_ir::Value::Port(9999)])].into(),
    };
    let matches = vec![Match::Lookup {
        key: vec![Field::TransportDport].into(),
        set: ports.name.clone(),
        negated: false,
    }];
    let mut rules: Vec<Rule> = VerdictLogOptions {
        mode: VerdictLogMode::Deny,
        group: 100,
    }
    .rules(
        &matches,
        &Family::ALL,
        LogLimit::default(),
        LogPrefix {
            verdict: log_prefix::Verdict::Drop,
            direction: nftpol_model::Direction::Egress,
            subject: Subject::UnknownPod,
        },
    )
    .into_iter()
    .map(|(_, rule)| rule)
    .collect();
    rules.push(Rule {
        matches,
        counter: true,
        action: Action::Verdict(Verdict::Drop),
        comment: None,
    });
    let chain = Chain {
        name: "out".to_owned(),
        base: Some(BaseChain {
            hook: Hook::Output,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        comment: None,
        rules,
    };
    let origins = Family::ALL.map(nftpol_ruleset::verdict_log::origin_map);
    Ruleset {
        chains: [(chain.name.clone(), chain)].into(),
        sets: std::iter::once(ports)
            .chain(origins)
            .map(|set| (set.name.clone(), set))
            .collect(),
    }
}
