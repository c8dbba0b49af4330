//! `nftpol trace`, run on a node's kernel table, reaches the verdict
//! `nftpol explain` reasons from the manifests, for every pod pair, port
//! and protocol of a dual-stack scenario whose pods share the node (so the
//! node enforces both directions of every connection), with
//! ClusterNetworkPolicies of both tiers beside NetworkPolicies. Each run applies
//! the scenario in a throwaway network namespace (`unshare -n`), then
//! traces there.

use std::fmt::Write as _;
use std::process::Command;

const SCENARIO: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24, 'fd00:10:244:1::/64']}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: s, ports: [{containerPort: 80, name: http}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.10}, {ip: 'fd00:10:244:1::10'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {nodeName: node-1, containers: [{name: s}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.11}, {ip: 'fd00:10:244:1::11'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {pod: c}}
spec: {nodeName: node-1, containers: [{name: s}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.12}, {ip: 'fd00:10:244:1::12'}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-to-a-http, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-egress-v4-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.244.1.0/24}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-c-to-b-81}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}
  ingress:
  - name: deny-c
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}}]
    protocols: [{tcp: {destinationPort: {number: 81}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: a-not-to-c}
spec:
  tier: Baseline
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}
  egress:
  - name: deny-c
    action: Deny
    to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}}]
";

const PODS: [(&str, &str, &str); 3] = [
    ("x/a", "10.244.1.10", "fd00:10:244:1::10"),
    ("x/b", "10.244.1.11", "fd00:10:244:1::11"),
    ("x/c", "10.244.1.12", "fd00:10:244:1::12"),
];
const PORTS: [&str; 3] = ["80/TCP", "81/TCP", "80/UDP"];

#[test]
fn trace_of_the_kernel_table_agrees_with_explain_for_every_probe() {
    let binary = env!("CARGO_BIN_EXE_nftpol");
    let dir = std::env::temp_dir().join(format!("nftpol-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let manifests = dir.join("scenario.yaml");
    std::fs::write(&manifests, SCENARIO).expect("writes the scenario");
    let manifests = manifests.to_str().expect("utf-8 path");

    let mut probes = Vec::new();
    for (from, from_v4, from_v6) in PODS {
        for (to, to_v4, to_v6) in PODS {
            if from == to {
                continue;
            }
            for port in PORTS {
                probes.push((from.to_owned(), to.to_owned(), port));
                probes.push((from_v4.to_owned(), to_v4.to_owned(), port));
                probes.push((from_v6.to_owned(), to_v6.to_owned(), port));
            }
        }
    }
    // One namespace: apply once, then trace each probe, printing its exit.
    let mut script =
        format!("{binary} apply --manifests {manifests} --node node-1 >/dev/null || exit 3\n");
    for (from, to, port) in &probes {
        // Writing to a String cannot fail.
        let _ = writeln!(
            script,
            "{binary} trace --manifests {manifests} --from {from} --to {to} --port {port} >/dev/null; echo $?"
        );
    }
    let traced = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .expect("unshare");
    assert!(
        traced.status.success(),
        "applying and tracing in a throwaway network namespace (needs root): {}",
        String::from_utf8_lossy(&traced.stderr)
    );
    let exits: Vec<String> = String::from_utf8_lossy(&traced.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(exits.len(), probes.len());
    let mut denied = 0;
    let mut deciding_tiers = std::collections::BTreeSet::new();
    for ((from, to, port), exit) in probes.iter().zip(&exits) {
        let explained = Command::new(binary)
            .args([
                "explain",
                "--manifests",
                manifests,
                "--from",
                from,
                "--to",
                to,
                "--port",
                port,
            ])
            .output()
            .expect("explain");
        let text = String::from_utf8_lossy(&explained.stdout);
        let allowed = match text.split_whitespace().next() {
            Some("ALLOWED") => true,
            Some("DENIED") => false,
            other => panic!("explain said {other:?}: {text}"),
        };
        denied += usize::from(!allowed);
        for tier in ["Admin cnp/deny-c-to-b-81", "Baseline cnp/a-not-to-c"] {
            if !allowed && text.contains(tier) {
                deciding_tiers.insert(tier);
            }
        }
        let traced_allowed = match exit.as_str() {
            "0" => true,
            "1" => false,
            other => panic!("trace exited {other} for {from} -> {to} {port}"),
        };
        assert_eq!(
            traced_allowed, allowed,
            "{from} -> {to} {port}: explain says {text}"
        );
    }
    assert!(
        denied > 0 && denied < probes.len(),
        "the scenario has both verdicts"
    );
    assert_eq!(
        deciding_tiers.len(),
        2,
        "each ClusterNetworkPolicy tier denies some probe: {deciding_tiers:?}"
    );
    std::fs::remove_dir_all(&dir).expect("cleans up");
}
