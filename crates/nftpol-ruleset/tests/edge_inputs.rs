//! Edge and hostile inputs, one table: each case's compiled ruleset is
//! loaded by `nft -c` (in a throwaway network namespace), walked by the IR
//! interpreter for its flows, and judged against the semantic oracle; the
//! model errors it must raise are listed by field.

use std::fmt::Write as _;
use std::net::IpAddr;

use nftpol_ir::interpret::interpret;
use nftpol_ir::render::render;
use nftpol_ir::KeyType;
use nftpol_model::limits::MAX_BLOCK_ELEMENTS_PER_RULE;
use nftpol_model::{resolve, Cluster, Connection, NodeModel, Protocol};
use nftpol_ruleset::catalogue::{ChainName, SetKind};
use nftpol_ruleset::compile::{compile, CompileOptions, Compiled};
use nftpol_testkit::nft;
use nftpol_testkit::oracle::{node_oracle, packet_for};

const NODE: &str = "node-1";

/// Namespaces x and y, nodes 1 and 2 with their dual-stack pod CIDRs.
const BASE: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {ns: y}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24, 'fd00:10:244:1::/64']}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDRs: [10.244.2.0/24, 'fd00:10:244:2::/64']}
";

/// A running pod; `labels` is a YAML flow mapping.
fn pod(namespace: &str, name: &str, node: u8, ips: &[&str], labels: &str) -> String {
    let ips: Vec<String> = ips.iter().map(|ip| format!("{{ip: '{ip}'}}")).collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n\
         spec: {{nodeName: node-{node}, containers: [{{name: c, image: i}}]}}\n\
         status: {{phase: Running, podIPs: [{}]}}\n",
        ips.join(", ")
    )
}

/// A NetworkPolicy; `spec` is a YAML flow mapping.
fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: '{name}', namespace: '{namespace}'}}\nspec: {spec}\n"
    )
}

fn cluster(objects: &[String]) -> Cluster {
    let text = format!("{BASE}{}", objects.concat());
    nftpol_model::manifests::parse(&text)
        .unwrap_or_else(|error| panic!("case YAML must parse: {error}\n{text}"))
        .cluster
}

/// A single-address pod x/a on node-1 (10.244.1.2, fd00:10:244:1::2).
fn pod_a() -> String {
    pod("x", "a", 1, &["10.244.1.2", "fd00:10:244:1::2"], "{pod: a}")
}

/// A flow (source, destination, protocol, port) and whether it passes.
type Flow = (&'static str, &'static str, Protocol, u16, bool);

struct Case {
    name: &'static str,
    cluster: Cluster,
    flows: Vec<Flow>,
    /// `object field` of every model error, sorted.
    errors: Vec<String>,
    /// Further assertions on the model and the ruleset.
    extra: Option<fn(&NodeModel, &Compiled)>,
}

const TCP: Protocol = Protocol::Tcp;

fn many_labels(count: usize, extra: &str) -> String {
    let mut labels = String::from("{");
    for index in 0..count {
        let _ = write!(labels, "k{index}: v, ");
    }
    labels.push_str(extra);
    labels.push('}');
    labels
}

fn excepts(count: usize) -> String {
    // Odd addresses of 10.0.0.0/8: every except is its own range.
    let list: Vec<String> = (0..count)
        .map(|index| format!("10.0.{}.{}/32", index / 100, 2 * (index % 100) + 1))
        .collect();
    list.join(", ")
}

#[expect(
    clippy::too_many_lines,
    reason = "the table of cases: one entry per edge input"
)]
fn cases() -> Vec<Case> {
    let allow_from = |block: &str| {
        format!("{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [{{from: [{{ipBlock: {block}}}]}}]}}")
    };
    let long_namespace = "n".repeat(63);
    vec![
        Case {
            name: "cidr /0 of IPv4 allows every IPv4 source and no IPv6 one",
            cluster: cluster(&[pod_a(), policy("x", "p", &allow_from("{cidr: 0.0.0.0/0}"))]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("255.255.255.255", "10.244.1.2", TCP, 80, true),
                ("2001:db8::7", "fd00:10:244:1::2", TCP, 80, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "cidr /0 of IPv6 allows every IPv6 source and no IPv4 one",
            cluster: cluster(&[pod_a(), policy("x", "p", &allow_from("{cidr: '::/0'}"))]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("2001:db8::7", "fd00:10:244:1::2", TCP, 80, true),
                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fd00:10:244:1::2", TCP, 80, true),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "except /0 inside cidr /0 leaves nothing",
            cluster: cluster(&[
                pod_a(),
                policy("x", "p", &allow_from("{cidr: 0.0.0.0/0, except: [0.0.0.0/0]}")),
            ]),
            flows: vec![("203.0.113.7", "10.244.1.2", TCP, 80, false)],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "an IPv4-mapped IPv6 block matches IPv6 packets only",
            cluster: cluster(&[
                pod_a(),
                policy("x", "p", &allow_from("{cidr: '::ffff:203.0.113.0/120'}")),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("::ffff:203.0.113.7", "fd00:10:244:1::2", TCP, 80, true),
                ("::ffff:198.51.100.7", "fd00:10:244:1::2", TCP, 80, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "except equal to cidr allows nothing, the rule's other peers still apply",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    "{podSelector: {}, ingress: [{from: [\
                     {ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.0/24]}}, \
                     {ipBlock: {cidr: 198.51.100.0/24}}]}]}",
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("198.51.100.7", "10.244.1.2", TCP, 80, true),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "10,000 except entries: over the limit, isolates and allows nothing, others apply",
            cluster: cluster(&[
                pod_a(),
                pod("x", "b", 1, &["10.244.1.3"], "{pod: b}"),
                policy(
                    "x",
                    "huge",
                    &format!(
                        "{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [\
                         {{from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{}]}}}}]}}, \
                         {{from: [{{ipBlock: {{cidr: 198.51.100.0/24}}}}]}}]}}",
                        excepts(10_000)
                    ),
                ),
                policy("x", "other", &allow_from("{cidr: 203.0.113.0/24}")),
            ]),
            flows: vec![
                ("10.0.0.2", "10.244.1.2", TCP, 80, false),
                ("198.51.100.7", "10.244.1.2", TCP, 80, false),
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("10.0.0.2", "10.244.1.3", TCP, 80, true),
            ],
            errors: vec!["x/huge spec.ingress[0].from".to_owned()],
            extra: None,
        },
        Case {
            name: "except entries up to the limit are enforced one by one",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    &allow_from(&format!(
                        "{{cidr: 10.0.0.0/8, except: [{}]}}",
                        excepts(MAX_BLOCK_ELEMENTS_PER_RULE - 1)
                    )),
                ),
            ]),
            flows: vec![
                ("10.0.0.1", "10.244.1.2", TCP, 80, false),
                ("10.0.0.2", "10.244.1.2", TCP, 80, true),
                ("10.0.40.189", "10.244.1.2", TCP, 80, false),
                ("10.0.40.191", "10.244.1.2", TCP, 80, true),
                ("10.255.0.1", "10.244.1.2", TCP, 80, true),
            ],
            errors: vec![],
            extra: Some(|_, compiled| {
                let peers = compiled
                    .ruleset
                    .sets
                    .values()
                    .find(|set| {
                        compiled.provenance.set_kind(&set.name) == Some(SetKind::IpBlocks)
                            && set.key == [KeyType::Ipv4Addr]
                    })
                    .expect("the rule's ipBlock set");
                assert_eq!(peers.elements.len(), MAX_BLOCK_ELEMENTS_PER_RULE);
            }),
        },
        Case {
            name: "overlapping ipBlocks across peers and rules merge without overlap",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    "{podSelector: {}, ingress: [\
                     {from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}, \
                             {ipBlock: {cidr: 10.0.1.128/25}}, {ipBlock: {cidr: 10.0.1.0/24}}, \
                             {ipBlock: {cidr: 10.0.0.0/24}}], ports: [{port: 80}]}, \
                     {from: [{ipBlock: {cidr: 10.0.1.0/26}}], ports: [{port: 81}]}]}",
                ),
                policy("x", "q", &allow_from("{cidr: 10.0.0.0/8, except: [10.0.0.0/16]}")),
            ]),
            flows: vec![
                ("10.0.1.5", "10.244.1.2", TCP, 80, true),
                ("10.0.1.200", "10.244.1.2", TCP, 80, true),
                ("10.0.1.5", "10.244.1.2", TCP, 81, true),
                ("10.0.2.1", "10.244.1.2", TCP, 81, false),
                ("10.1.0.1", "10.244.1.2", TCP, 81, true),
                ("11.0.0.1", "10.244.1.2", TCP, 80, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "port 0 is invalid, the rule's other ports still apply",
            cluster: cluster(&[
                pod_a(),
                policy("x", "p", "{podSelector: {}, ingress: [{ports: [{port: 0}, {port: 80}]}]}"),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("203.0.113.7", "10.244.1.2", TCP, 0, false),
                ("203.0.113.7", "10.244.1.2", TCP, 81, false),
            ],
            errors: vec!["x/p spec.ingress[0].ports[0].port".to_owned()],
            extra: None,
        },
        Case {
            name: "port 65535 and endPort 65535 reach the top of the range",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    "{podSelector: {}, ingress: [{ports: [{port: 65535}, \
                     {port: 65000, endPort: 65535}, {protocol: UDP, port: 65535}]}]}",
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 65_535, true),
                ("203.0.113.7", "10.244.1.2", TCP, 65_000, true),
                ("203.0.113.7", "10.244.1.2", TCP, 64_999, false),
                ("203.0.113.7", "10.244.1.2", Protocol::Udp, 65_535, true),
                ("203.0.113.7", "10.244.1.2", Protocol::Udp, 65_534, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "endPort 65536 is invalid and allows nothing",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    "{podSelector: {}, ingress: [{ports: [{port: 65000, endPort: 65536}]}]}",
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 65_000, false),
                ("203.0.113.7", "10.244.1.2", TCP, 65_535, false),
            ],
            errors: vec!["x/p spec.ingress[0].ports[0].endPort".to_owned()],
            extra: None,
        },
        Case {
            name: "duplicate policies: the later object replaces the earlier",
            cluster: cluster(&[
                pod_a(),
                policy("x", "dup", &allow_from("{cidr: 203.0.113.0/24}")),
                policy("x", "dup", &allow_from("{cidr: 198.51.100.0/24}")),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("198.51.100.7", "10.244.1.2", TCP, 80, true),
            ],
            errors: vec!["x/dup metadata.name".to_owned()],
            extra: None,
        },
        Case {
            name: "conflicting policies: deny-all and allow-80 add up to allow-80",
            cluster: cluster(&[
                pod_a(),
                policy("x", "deny-all", "{podSelector: {}, policyTypes: [Ingress, Egress]}"),
                policy("x", "allow-80", "{podSelector: {}, ingress: [{ports: [{port: 80}]}]}"),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("203.0.113.7", "10.244.1.2", TCP, 81, false),
                ("10.244.1.2", "203.0.113.7", TCP, 80, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "an invalid podSelector isolates the whole namespace and grants nothing",
            cluster: cluster(&[
                pod("x", "db", 1, &["10.244.1.2"], "{pod: db}"),
                pod("x", "web", 1, &["10.244.1.3"], "{pod: web}"),
                pod("y", "other", 1, &["10.244.1.4"], "{pod: other}"),
                policy("x", "db-deny", "{podSelector: {matchLabels: {pod: db}}}"),
                policy(
                    "x",
                    "broken",
                    "{podSelector: {matchExpressions: [{key: pod, operator: Bogus}]}, \
                     ingress: [{}]}",
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("203.0.113.7", "10.244.1.3", TCP, 80, false),
                ("203.0.113.7", "10.244.1.4", TCP, 80, true),
            ],
            errors: vec!["x/broken spec.podSelector".to_owned()],
            extra: None,
        },
        Case {
            name: "1,000 labels on a pod select and are selected",
            cluster: cluster(&[
                pod("x", "a", 1, &["10.244.1.2"], &many_labels(1000, "pod: a")),
                pod("x", "b", 1, &["10.244.1.3"], &many_labels(1000, "pod: b")),
                pod("x", "c", 1, &["10.244.1.4"], "{pod: c}"),
                policy(
                    "x",
                    "p",
                    "{podSelector: {matchLabels: {k999: v, pod: a}}, \
                     ingress: [{from: [{podSelector: {matchExpressions: \
                     [{key: k500, operator: Exists}, {key: pod, operator: NotIn, values: [a]}]}}]}]}",
                ),
            ]),
            flows: vec![
                ("10.244.1.3", "10.244.1.2", TCP, 80, true),
                ("10.244.1.4", "10.244.1.2", TCP, 80, false),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "63-character label values match exactly",
            cluster: cluster(&[
                pod("x", "a", 1, &["10.244.1.2"], &format!("{{v: {}}}", "a".repeat(63))),
                pod("x", "b", 1, &["10.244.1.3"], &format!("{{v: {}b}}", "a".repeat(62))),
                pod("x", "c", 1, &["10.244.1.4"], &format!("{{v: {}}}", "a".repeat(63))),
                policy(
                    "x",
                    "p",
                    &format!(
                        "{{podSelector: {{matchLabels: {{v: {0}}}}}, ingress: [{{from: \
                         [{{podSelector: {{matchLabels: {{v: {0}}}}}}}]}}]}}",
                        "a".repeat(63)
                    ),
                ),
            ]),
            flows: vec![
                ("10.244.1.4", "10.244.1.2", TCP, 80, true),
                ("10.244.1.3", "10.244.1.2", TCP, 80, false),
                ("203.0.113.7", "10.244.1.3", TCP, 80, true),
            ],
            errors: vec![],
            extra: None,
        },
        Case {
            name: "an unknown protocol allows nothing and still isolates",
            cluster: cluster(&[
                pod_a(),
                policy(
                    "x",
                    "p",
                    "{podSelector: {}, ingress: [{ports: [{protocol: ICMP, port: 80}]}]}",
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, false),
                ("203.0.113.7", "10.244.1.2", Protocol::Udp, 80, false),
            ],
            errors: vec!["x/p spec.ingress[0].ports[0].protocol".to_owned()],
            extra: None,
        },
        Case {
            name: "pods with 0, 1, 2 and 3 addresses are isolated on every address",
            cluster: cluster(&[
                pod("x", "a0", 1, &[], "{}"),
                pod("x", "a1", 1, &["10.244.1.2"], "{}"),
                pod("x", "a2", 1, &["10.244.1.3", "fd00:10:244:1::3"], "{}"),
                pod(
                    "x",
                    "a3",
                    1,
                    &["10.244.1.4", "fd00:10:244:1::4", "10.244.1.5"],
                    "{}",
                ),
                policy("x", "p", &allow_from("{cidr: 203.0.113.0/24}").replace("{matchLabels: {pod: a}}", "{}")),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("198.51.100.7", "10.244.1.2", TCP, 80, false),
                ("203.0.113.7", "10.244.1.3", TCP, 80, true),
                ("2001:db8::7", "fd00:10:244:1::3", TCP, 80, false),
                ("203.0.113.7", "10.244.1.4", TCP, 80, true),
                ("203.0.113.7", "10.244.1.5", TCP, 80, true),
                ("198.51.100.7", "10.244.1.5", TCP, 80, false),
                ("2001:db8::7", "fd00:10:244:1::4", TCP, 80, false),
                ("203.0.113.7", "10.244.1.250", TCP, 80, false),
            ],
            errors: vec![],
            extra: Some(|model, _| {
                let keys: Vec<&str> = model.local_pods.iter().map(|pod| pod.key.as_str()).collect();
                assert_eq!(keys, ["x/a1", "x/a2", "x/a3"]);
            }),
        },
        Case {
            name: "names that collide after truncation stay apart",
            cluster: cluster(&[
                pod(&long_namespace, "a", 1, &["10.244.1.2"], "{pod: a}"),
                pod(&long_namespace, "b", 1, &["10.244.1.3"], "{pod: b}"),
                policy(
                    &long_namespace,
                    &format!("{}-a", "p".repeat(251)),
                    &allow_from("{cidr: 203.0.113.0/24}"),
                ),
                policy(
                    &long_namespace,
                    &format!("{}-b", "p".repeat(251)),
                    &allow_from("{cidr: 198.51.100.0/24}").replace("pod: a", "pod: b"),
                ),
            ]),
            flows: vec![
                ("203.0.113.7", "10.244.1.2", TCP, 80, true),
                ("198.51.100.7", "10.244.1.2", TCP, 80, false),
                ("198.51.100.7", "10.244.1.3", TCP, 80, true),
                ("203.0.113.7", "10.244.1.3", TCP, 80, false),
            ],
            errors: vec![],
            extra: Some(|_, compiled| {
                let policy_chains: Vec<&String> = compiled
                    .provenance
                    .chains
                    .iter()
                    .filter(|(_, origin)| matches!(origin.chain, ChainName::Policy { .. }))
                    .map(|(name, _)| name)
                    .collect();
                assert_eq!(policy_chains.len(), 2, "{policy_chains:?}");
                let set_names: Vec<&String> = compiled.ruleset.sets.keys().collect();
                for name in policy_chains.iter().chain(&set_names) {
                    assert!(name.len() <= nftpol_ruleset::MAX_NAME_LEN, "{name}");
                }
                // The readable parts, truncated, are equal: only the hash of
                // the full identity keeps the two chains apart.
                // `<role>-<HASH>-<readable>`: the part after the hash.
                let readable = |name: &str| {
                    name.splitn(3, '-')
                        .nth(2)
                        .expect("a readable part after the hash")
                        .to_owned()
                };
                assert_eq!(policy_chains[0].len(), nftpol_ruleset::MAX_NAME_LEN);
                assert_eq!(readable(policy_chains[0]), readable(policy_chains[1]));
                assert_ne!(policy_chains[0], policy_chains[1]);
            }),
        },
    ]
}

#[test]
fn edge_inputs_are_enforced_as_specified_and_load() {
    for case in cases() {
        let model = resolve(&case.cluster, NODE);
        let mut errors: Vec<String> = model
            .errors
            .iter()
            .map(|error| format!("{} {}", error.object, error.field))
            .collect();
        errors.sort();
        assert_eq!(
            errors, case.errors,
            "case {}: {:#?}",
            case.name, model.errors
        );
        let compiled = compile(&model, CompileOptions::default());
        let ruleset = &compiled.ruleset;
        let rendered = render(ruleset);
        if let Err(error) = nft::check(&rendered) {
            panic!("case {}: nft rejects the rendering:\n{error}", case.name);
        }
        for (source, destination, protocol, port, want) in &case.flows {
            let connection = Connection {
                source: source.parse::<IpAddr>().expect("valid literal"),
                destination: destination.parse::<IpAddr>().expect("valid literal"),
                protocol: *protocol,
                port: *port,
            };
            let trace = interpret(ruleset, &packet_for(&connection))
                .unwrap_or_else(|error| panic!("case {}: {error}", case.name));
            assert_eq!(
                trace.accepted, *want,
                "case {}: IR on {connection:?}\nhits: {:#?}",
                case.name, trace.hits
            );
            assert_eq!(
                node_oracle(&case.cluster, NODE, &connection),
                *want,
                "case {}: spec on {connection:?}\n{}",
                case.name,
                nftpol_model::explain(&case.cluster, &connection)
            );
        }
        if let Some(extra) = case.extra {
            extra(&model, &compiled);
        }
    }
}

#[test]
fn nft_check_rejects_overlapping_intervals() {
    // The "merge without overlap" case relies on nft refusing overlaps.
    let overlapping = "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\t\
                       elements = { 10.0.0.0-10.0.1.255, 10.0.1.0-10.0.2.255 }\n\t}\n}\n";
    assert!(matches!(
        nft::check(overlapping),
        Err(nft::NftCheck::Rejected(_))
    ));
}
