//! The semantic evaluator against hand-reasoned cases from the NetworkPolicy
//! spec, one per feature, and the errors invalid parts produce.

use nftpol_model::{evaluate, manifests, resolve, Cluster, Connection, Protocol};

/// Namespaces x (ns=x) and y (ns=y, team=red); pods:
/// x/a 10.244.1.10 pod=a (ports http 80/TCP, dns 53/UDP) on node-1,
/// x/b 10.244.1.11 + fd00:10:244:1::11 pod=b (http 81/TCP) on node-1,
/// y/c 10.244.2.10 pod=c (http 80/TCP) on node-2,
/// y/old 10.244.2.20 pod=trusted, phase Succeeded (its IP is reused by y/new),
/// y/new 10.244.2.20 pod=new, y/host hostNetwork 172.18.0.3.
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {ns: "y", team: red}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 81}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.11}, {ip: "fd00:10:244:1::11"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: "y", labels: {pod: c}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.2.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: old, namespace: "y", labels: {pod: trusted}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {phase: Succeeded, podIPs: [{ip: 10.244.2.20}]}
---
apiVersion: v1
kind: Pod
metadata: {name: new, namespace: "y", labels: {pod: new}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 10.244.2.20}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: "y", labels: {pod: host}}
spec: {nodeName: node-2, hostNetwork: true, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 172.18.0.3}]}
"#;

fn cluster(policies: &str) -> Cluster {
    manifests::parse(&format!("{BASE}\n---\n{policies}"))
        .expect("valid test manifests")
        .cluster
}

fn allowed(cluster: &Cluster, from: &str, to: &str, protocol: Protocol, port: u16) -> bool {
    let connection = Connection {
        source: from.parse().expect("address"),
        destination: to.parse().expect("address"),
        protocol,
        port,
    };
    let (egress, ingress) = evaluate(cluster, &connection);
    egress.is_allowed() && ingress.is_allowed()
}

const A: &str = "10.244.1.10";
const B: &str = "10.244.1.11";
const C: &str = "10.244.2.10";
const NEW: &str = "10.244.2.20";
const HOST: &str = "172.18.0.3";
const OUTSIDE: &str = "203.0.113.9";

/// (from, to, protocol, port, allowed)
type Probe = (&'static str, &'static str, Protocol, u16, bool);

#[test]
fn evaluator_follows_the_spec() {
    use Protocol::{Tcp, Udp};
    let cases: &[(&str, &str, &[Probe])] = &[
        ("no policy: everything", "", &[(A, C, Tcp, 80, true), (C, A, Udp, 9, true)]),
        (
            "default deny ingress in x",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}",
            &[(C, A, Tcp, 80, false), (A, C, Tcp, 80, true), (A, B, Tcp, 81, false)],
        ),
        (
            "egress: [] without policyTypes does not isolate egress",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{}], egress: []}",
            &[(A, C, Tcp, 80, true), (C, A, Tcp, 80, true)],
        ),
        (
            "policyTypes Egress with no rules isolates egress only",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}",
            &[(A, C, Tcp, 80, false), (C, A, Tcp, 80, true)],
        ),
        (
            "namespaceSelector and podSelector in one peer: AND",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {pod: new}}}]}]}",
            &[(NEW, A, Tcp, 80, true), (C, A, Tcp, 80, false), (B, A, Tcp, 80, false)],
        ),
        (
            "two peers: OR",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}}, {podSelector: {matchLabels: {pod: b}}}]}]}",
            &[(NEW, A, Tcp, 80, true), (C, A, Tcp, 80, true), (B, A, Tcp, 80, true), (OUTSIDE, A, Tcp, 80, false)],
        ),
        (
            "terminal pod's labels do not follow its reused IP",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: trusted}}}]}]}",
            &[(NEW, A, Tcp, 80, false)],
        ),
        (
            "ipBlock with except matches pod IPs",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.16/28]}}]}]}",
            &[(C, A, Tcp, 80, true), (NEW, A, Tcp, 80, false), (HOST, A, Tcp, 80, false)],
        ),
        (
            "named port resolves on the destination pod (ingress)",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: http}]}]}",
            &[(C, A, Tcp, 80, true), (C, A, Tcp, 81, false), (C, B, Tcp, 81, true), (C, B, Tcp, 80, false)],
        ),
        (
            "named port resolves on the destination pod (egress)",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}",
            &[(A, B, Tcp, 81, true), (A, B, Tcp, 80, false), (A, C, Tcp, 80, true), (A, OUTSIDE, Tcp, 80, false)],
        ),
        (
            "endPort is inclusive; protocol defaults to TCP",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80, endPort: 82}]}]}",
            &[(C, A, Tcp, 82, true), (C, A, Tcp, 83, false), (C, A, Udp, 80, false)],
        ),
        (
            "protocol without port: every port of that protocol",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}",
            &[(C, A, Udp, 5353, true), (C, A, Tcp, 80, false)],
        ),
        (
            "invalid part allows nothing, the policy still isolates",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}, {podSelector: {matchLabels: {pod: b}}}]}, {ports: [{protocol: ICMP}]}]}",
            &[(B, A, Tcp, 80, true), (C, A, Tcp, 80, false), ("10.0.0.1", A, Tcp, 80, false)],
        ),
        (
            "hostNetwork pods are not pods: selectors never match them, ipBlocks may",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}, {from: [{ipBlock: {cidr: 172.18.0.0/16}}], ports: [{port: 81}]}]}",
            &[(HOST, A, Tcp, 80, false), (HOST, B, Tcp, 81, true), (C, A, Tcp, 80, true)],
        ),
    ];
    for (name, policies, probes) in cases {
        let cluster = cluster(policies);
        for (from, to, protocol, port, want) in *probes {
            assert_eq!(
                allowed(&cluster, from, to, *protocol, *port),
                *want,
                "case {name:?}: {from} -> {to} {port}/{protocol}"
            );
        }
    }
}

#[test]
fn invalid_parts_are_reported_with_object_and_field() {
    let cluster = cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}, {ipBlock: {cidr: nonsense}}]\n    ports: [{protocol: ICMP}, {port: 90, endPort: 80}, {endPort: 80}]\n",
    );
    let model = resolve(&cluster, "node-1");
    let errors: Vec<String> = model.errors.iter().map(ToString::to_string).collect();
    let want = [
        "NetworkPolicy x/bad: spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 is not inside cidr 10.0.0.0/16",
        "NetworkPolicy x/bad: spec.ingress[0].from[1].ipBlock.cidr: \"nonsense\" is not a CIDR",
        "NetworkPolicy x/bad: spec.ingress[0].ports[0].protocol: unknown protocol \"ICMP\" (TCP, UDP or SCTP)",
        "NetworkPolicy x/bad: spec.ingress[0].ports[1].endPort: 80 must be a port not below port 90",
        "NetworkPolicy x/bad: spec.ingress[0].ports[2].endPort: endPort needs a numeric port",
    ];
    assert_eq!(errors, want);
    assert_eq!(
        model.policies.len(),
        1,
        "the policy still isolates the pods it selects"
    );
    assert_eq!(
        model
            .local_pods
            .iter()
            .filter(|pod| !pod.ingress.is_empty())
            .count(),
        2
    );
}
