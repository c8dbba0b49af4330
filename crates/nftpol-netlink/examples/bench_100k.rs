//! Measures one commit of a 100,000-element concatenated interval set
//! (`ipv4_addr . inet_proto . inet_service`, the pipapo backend) through
//! nftpol's batch, against `nft -f` of the same rendered text. Runs in a
//! fresh network namespace (the test kit's guard); needs root. Prints to
//! stderr.
//!
//! `cargo run --release -p nftpol-netlink --example bench_100k`

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Instant;

use nftpol_ir::diff::diff;
use nftpol_ir::render::render;
use nftpol_ir::{Element, KeyType, Ruleset, Set, Value};
use nftpol_netlink::{Dataplane, KernelDataplane};

fn ruleset() -> Ruleset {
    let elements = (0..100_000u32)
        .map(|i| {
            let address = Value::Ipv4(Ipv4Addr::from(0x0a00_0000 + i));
            Element::range(
                vec![address, Value::Proto(6), Value::Port(80)],
                vec![address, Value::Proto(6), Value::Port(90)],
            )
        })
        .collect();
    let set = Set {
        name: "bench".to_owned(),
        key: vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
        interval: true,
        is_verdict_map: false,
        dynamic: None,
        comment: None,
        elements,
    };
    Ruleset {
        chains: std::collections::BTreeMap::default(),
        sets: [(set.name.clone(), set)].into(),
    }
}

fn main() {
    // The test kit's guard: a fresh namespace, removed afterwards.
    nftpol_testkit::netns::in_fresh_netns(|| {
        let ir = ruleset();
        let changes = diff(None, &ir);
        let mut kernel = KernelDataplane::open().expect("open");
        for round in 0..3 {
            let start = Instant::now();
            let applied = kernel.apply(&changes).expect("apply");
            let ours = start.elapsed();
            kernel.delete_table().expect("delete");
            let text = render(&ir);
            let start = Instant::now();
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("nft");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
            assert!(child.wait().expect("wait").success(), "nft -f failed");
            let theirs = start.elapsed();
            kernel.delete_table().expect("delete");
            eprintln!(
                "round {round}: nftpol batch {:.0} ms ({} messages, {} bytes); nft -f {:.0} ms ({} bytes of text)",
                ours.as_secs_f64() * 1000.0,
                applied.messages,
                applied.bytes,
                theirs.as_secs_f64() * 1000.0,
                text.len()
            );
        }
    });
}
