//! Restarting the agent never opens a window: while a client floods UDP at a
//! pod the policy isolates, `nftpol apply` runs again and again as fresh
//! processes (each adopts the table it finds by reading it back and applying
//! only the difference), alternating between two rulesets that both deny the
//! flood. Not one flood packet may leave the node towards the pod. Once with
//! NetworkPolicy denying, once with an Admin ClusterNetworkPolicy Deny (a
//! tier whose chains and maps the restarts rewrite too).
//!
//! Topology, all in throwaway namespaces of the test kit: client (10.0.1.2) — node — server
//! pod (10.244.1.10). A separate probe table on the node counts flood packets
//! arriving (prerouting) and leaving towards the pod (postrouting).

use std::path::Path;
use std::process::{Command, Output};

use nftpol_testkit::netns::Netns;

fn run(args: &[&str]) -> Output {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("command runs");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn counter(node: &str, chain: &str) -> u64 {
    let output = run(&[
        "ip",
        "netns",
        "exec",
        node,
        "nft",
        "list",
        "chain",
        "ip",
        "flood-probe",
        chain,
    ]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let packets = text
        .split("packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    packets
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

/// client (10.0.1.2) — node — server pod (10.244.1.10), with the probe table
/// counting flood packets in the node. The three namespaces are the test
/// kit's guards (`lo` up, removed on drop).
fn build_topology(client: &str, node: &str, server: &str) {
    run(&[
        "ip",
        "-n",
        node,
        "link",
        "add",
        "to-client",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        client,
    ]);
    run(&[
        "ip",
        "-n",
        node,
        "link",
        "add",
        "to-server",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        server,
    ]);
    let script = [
        (client, "addr add 10.0.1.2/24 dev eth0"),
        (client, "link set eth0 up"),
        (client, "route add default via 10.0.1.1"),
        (server, "addr add 10.244.1.10/32 dev eth0"),
        (server, "link set eth0 up"),
        (server, "route add 10.244.1.1 dev eth0"),
        (server, "route add default via 10.244.1.1"),
        (node, "addr add 10.0.1.1/24 dev to-client"),
        (node, "addr add 10.244.1.1/32 dev to-server"),
        (node, "link set to-client up"),
        (node, "link set to-server up"),
        (node, "route add 10.244.1.10/32 dev to-server"),
    ];
    for (namespace, command) in script {
        let mut args = vec!["ip", "-n", namespace];
        args.extend(command.split(' '));
        run(&args);
    }
    run(&[
        "ip",
        "netns",
        "exec",
        node,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    run(&[
        "ip",
        "netns",
        "exec",
        node,
        "nft",
        "add table ip flood-probe; \
         add chain ip flood-probe pre { type filter hook prerouting priority -300; }; \
         add chain ip flood-probe post { type filter hook postrouting priority 300; }; \
         add rule ip flood-probe pre ip daddr 10.244.1.10 udp dport 9 counter; \
         add rule ip flood-probe post ip daddr 10.244.1.10 udp dport 9 counter",
    ]);
}

/// Floods the server pod while fresh agents alternate between the two
/// `manifests` (both deny the flood), then checks that not one packet was
/// forwarded, and that the probe counts what an allow-all lets through.
fn repeated_restarts_let_no_denied_packet_through(manifests: [&str; 2]) {
    let namespaces = [Netns::new(), Netns::new(), Netns::new()];
    let [client, node, server] = namespaces.each_ref().map(|netns| netns.name().to_owned());
    build_topology(&client, &node, &server);

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifests = manifests.map(|name| fixtures.join(name));
    let nftpol = env!("CARGO_BIN_EXE_nftpol");
    let apply = |manifest: &Path| {
        run(&[
            "ip",
            "netns",
            "exec",
            &node,
            nftpol,
            "apply",
            "--manifests",
            manifest.to_str().expect("utf-8"),
            "--node",
            "node-1",
        ]);
    };
    apply(&manifests[0]);

    // Bounded flood: stops by itself after 20,000 datagrams.
    let mut flood = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client,
            "bash",
            "-c",
            "for i in $(seq 1 20000); do echo x > /dev/udp/10.244.1.10/9; done 2>/dev/null",
        ])
        .spawn()
        .expect("bash runs");
    // Restart until the flood is over, and at least 30 times.
    let mut round = 0;
    let status = loop {
        apply(&manifests[round % 2]);
        round += 1;
        if let Some(status) = flood.try_wait().expect("flood is waitable") {
            if round >= 30 {
                break status;
            }
        }
    };
    assert!(status.success());

    let arrived = counter(&node, "pre");
    let forwarded = counter(&node, "post");
    assert!(
        arrived >= 20_000,
        "the flood did not reach the node ({arrived} packets)"
    );
    assert_eq!(
        forwarded, 0,
        "{forwarded} of {arrived} denied packets passed during restarts"
    );

    // The probe does see forwarded packets once the policy allows them.
    apply(&fixtures.join("restart-allow-all.yaml"));
    run(&[
        "ip",
        "netns",
        "exec",
        &client,
        "bash",
        "-c",
        "for i in $(seq 1 10); do echo x > /dev/udp/10.244.1.10/9; done",
    ]);
    assert_eq!(
        counter(&node, "post"),
        10,
        "allowed packets must be forwarded and counted"
    );
}

#[test]
fn network_policy_restarts_let_no_denied_packet_through() {
    repeated_restarts_let_no_denied_packet_through([
        "restart-deny-all.yaml",
        "restart-deny-all-but-tcp-80.yaml",
    ]);
}

#[test]
fn admin_cluster_policy_restarts_let_no_denied_packet_through() {
    repeated_restarts_let_no_denied_packet_through([
        "restart-admin-deny.yaml",
        "restart-admin-deny-but-tcp-80.yaml",
    ]);
}
