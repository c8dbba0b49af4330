//! Every bound of `nftpol_model::limits`, at and over the limit: an object
//! over a bound is reported naming the field, still isolates the pods it
//! selects and allows nothing, and every other policy still applies.

use std::fmt::Write as _;

use nftpol_model::limits::{
    MAX_BLOCK_ELEMENTS_PER_POLICY, MAX_BLOCK_ELEMENTS_PER_RULE, MAX_PEERS_PER_RULE,
    MAX_PORTS_PER_RULE, MAX_RULES_PER_POLICY, MAX_SELECTOR_TERMS,
};
use nftpol_model::{evaluate, resolve, Cluster, Connection, Protocol};

/// Pods x/a (pod=a), x/b and y/c on node-1; a policy `x/other` that lets
/// 198.51.100.0/24 reach x/a on port 9.
const BASE: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.4}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 198.51.100.0/24}}], ports: [{port: 9}]}]
";

fn cluster(name: &str, spec: &str) -> Cluster {
    let text = format!(
        "{BASE}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: '{name}', namespace: x}}\nspec: {spec}\n"
    );
    nftpol_model::manifests::parse(&text)
        .unwrap_or_else(|error| panic!("case YAML must parse: {error}"))
        .cluster
}

fn allowed(cluster: &Cluster, source: &str, destination: &str, port: u16) -> bool {
    let connection = Connection {
        source: source.parse().expect("valid literal"),
        destination: destination.parse().expect("valid literal"),
        protocol: Protocol::Tcp,
        port,
    };
    let (egress, ingress) = evaluate(cluster, &connection);
    egress.is_allowed() && ingress.is_allowed()
}

/// `count` rules, the i-th allowing port 1000 + i from anywhere.
fn rules(count: usize) -> String {
    let list: Vec<String> = (0..count)
        .map(|index| format!("{{ports: [{{port: {}}}]}}", 1000 + index))
        .collect();
    format!("[{}]", list.join(", "))
}

/// One rule with `count` ipBlock peers (203.0.113.0/24 first).
fn block_peers(count: usize) -> String {
    let list: Vec<String> = (0..count)
        .map(|index| format!("{{ipBlock: {{cidr: 203.0.{}.0/24}}}}", 113 + index % 100))
        .collect();
    format!("[{{from: [{}]}}]", list.join(", "))
}

/// One rule allowing from anywhere on `count` ports (1000 first).
fn ports(count: usize) -> String {
    let list: Vec<String> = (0..count)
        .map(|index| format!("{{port: {}}}", 1000 + index))
        .collect();
    format!("[{{ports: [{}]}}]", list.join(", "))
}

/// `count` matchLabels terms, all held by pod x/a's label `pod: a` only when
/// `count` is 1; the rest are keys nobody has, so the selector is a test of
/// size, not of matching.
fn match_labels(count: usize) -> String {
    let mut labels = String::from("{pod: a");
    for index in 1..count {
        let _ = write!(labels, ", k{index}: v");
    }
    labels.push('}');
    labels
}

/// `rules` rules of one ipBlock 203.0.113.0/24 … with `excepts` entries each.
fn blocks_with_excepts(rules: usize, excepts: usize) -> String {
    let except: Vec<String> = (0..excepts)
        .map(|index| format!("10.{}.{}.0/24", index / 256, index % 256))
        .collect();
    let rule = format!(
        "{{from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{}]}}}}, {{ipBlock: {{cidr: 203.0.113.0/24}}}}]}}",
        except.join(", ")
    );
    format!("[{}]", vec![rule; rules].join(", "))
}

struct Case {
    name: &'static str,
    cluster: Cluster,
    /// `field` of the one error, or `None` when the policy is accepted.
    error: Option<String>,
    /// (source, destination, port, allowed).
    flows: Vec<(&'static str, &'static str, u16, bool)>,
}

const A: &str = "10.244.1.2";
const B: &str = "10.244.1.3";
const C: &str = "10.244.1.4";
const OUTSIDE: &str = "203.0.113.7";
const OTHER: &str = "198.51.100.7";

#[expect(
    clippy::too_many_lines,
    reason = "the table of cases: one entry per bound, at and over it"
)]
fn cases() -> Vec<Case> {
    let on_a =
        |rules: &str| format!("{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: {rules}}}");
    vec![
        Case {
            name: "rules at the limit",
            cluster: cluster("p", &on_a(&rules(MAX_RULES_PER_POLICY))),
            error: None,
            flows: vec![(OUTSIDE, A, 1000, true), (OUTSIDE, A, 999, false)],
        },
        Case {
            name: "rules over the limit",
            cluster: cluster("p", &on_a(&rules(MAX_RULES_PER_POLICY + 1))),
            error: Some("spec".to_owned()),
            flows: vec![
                (OUTSIDE, A, 1000, false),
                (OTHER, A, 9, true),
                (OUTSIDE, B, 1000, true),
            ],
        },
        Case {
            name: "peers at the limit",
            cluster: cluster("p", &on_a(&block_peers(MAX_PEERS_PER_RULE))),
            error: None,
            flows: vec![(OUTSIDE, A, 80, true), (OTHER, A, 80, false)],
        },
        Case {
            name: "peers over the limit",
            cluster: cluster("p", &on_a(&block_peers(MAX_PEERS_PER_RULE + 1))),
            error: Some("spec.ingress[0].from".to_owned()),
            flows: vec![(OUTSIDE, A, 80, false), (OTHER, A, 9, true)],
        },
        Case {
            name: "ports at the limit",
            cluster: cluster("p", &on_a(&ports(MAX_PORTS_PER_RULE))),
            error: None,
            flows: vec![(OUTSIDE, A, 1000, true), (OUTSIDE, A, 80, false)],
        },
        Case {
            name: "ports over the limit",
            cluster: cluster("p", &on_a(&ports(MAX_PORTS_PER_RULE + 1))),
            error: Some("spec.ingress[0].ports".to_owned()),
            flows: vec![(OUTSIDE, A, 1000, false), (OTHER, A, 9, true)],
        },
        Case {
            name: "a peer selector at the limit",
            cluster: cluster(
                "p",
                &on_a(&format!(
                    "[{{from: [{{podSelector: {{matchLabels: {}}}}}]}}]",
                    match_labels(MAX_SELECTOR_TERMS + 1).replace("pod: a, ", "")
                )),
            ),
            error: None,
            flows: vec![(B, A, 80, false), (OUTSIDE, A, 80, false)],
        },
        Case {
            name: "a peer selector over the limit",
            cluster: cluster(
                "p",
                &on_a(&format!(
                    "[{{from: [{{podSelector: {{matchLabels: {}}}}}, {{ipBlock: {{cidr: 203.0.113.0/24}}}}]}}]",
                    match_labels(MAX_SELECTOR_TERMS + 1)
                )),
            ),
            error: Some("spec.ingress[0].from[0].podSelector".to_owned()),
            flows: vec![(OUTSIDE, A, 80, false), (OTHER, A, 9, true)],
        },
        Case {
            name: "a podSelector of 1,000 labels isolates the whole namespace, allowing nothing",
            cluster: cluster(
                "p",
                &format!("{{podSelector: {{matchLabels: {}}}, ingress: [{{}}]}}", match_labels(1000)),
            ),
            error: Some("spec.podSelector".to_owned()),
            flows: vec![
                (OUTSIDE, A, 80, false),
                (OUTSIDE, B, 80, false),
                (OUTSIDE, C, 80, true),
                (OTHER, A, 9, true),
            ],
        },
        Case {
            name: "ipBlock elements of one rule at the limit",
            cluster: cluster(
                "p",
                &on_a(&blocks_with_excepts(1, MAX_BLOCK_ELEMENTS_PER_RULE - 2)),
            ),
            error: None,
            flows: vec![(OUTSIDE, A, 80, true), ("10.16.0.1", A, 80, true), ("10.0.0.1", A, 80, false)],
        },
        Case {
            name: "ipBlock elements of one rule over the limit",
            cluster: cluster(
                "p",
                &on_a(&blocks_with_excepts(1, MAX_BLOCK_ELEMENTS_PER_RULE - 1)),
            ),
            error: Some("spec.ingress[0].from".to_owned()),
            flows: vec![(OUTSIDE, A, 80, false), (OTHER, A, 9, true)],
        },
        Case {
            name: "ipBlock elements of one policy over the limit",
            cluster: cluster(
                "p",
                &on_a(&blocks_with_excepts(
                    MAX_BLOCK_ELEMENTS_PER_POLICY / 4000 + 1,
                    3998,
                )),
            ),
            error: Some("spec".to_owned()),
            flows: vec![(OUTSIDE, A, 80, false), (OTHER, A, 9, true)],
        },
        Case {
            name: "a name the API server would refuse isolates and allows nothing",
            cluster: cluster("Bad_Name", &on_a("[{}]")),
            error: Some("metadata.name".to_owned()),
            flows: vec![(OUTSIDE, A, 80, false), (OTHER, A, 9, true), (OUTSIDE, B, 80, true)],
        },
    ]
}

#[test]
fn bounds_reject_the_object_and_fail_closed() {
    for case in cases() {
        let model = resolve(&case.cluster, "node-1");
        let fields: Vec<&str> = model
            .errors
            .iter()
            .map(|error| error.field.as_str())
            .collect();
        assert_eq!(
            fields,
            case.error.iter().map(String::as_str).collect::<Vec<_>>(),
            "case {}: {:#?}",
            case.name,
            model.errors
        );
        if case.error.is_some() {
            let error = &model.errors[0];
            assert_eq!(error.kind, "NetworkPolicy", "case {}", case.name);
            assert!(
                error.problem.contains("allowing nothing")
                    || error.problem.contains("allows nothing"),
                "case {}: {error}",
                case.name
            );
        }
        for (source, destination, port, want) in &case.flows {
            assert_eq!(
                allowed(&case.cluster, source, destination, *port),
                *want,
                "case {}: {source} -> {destination}:{port}",
                case.name
            );
        }
    }
}
