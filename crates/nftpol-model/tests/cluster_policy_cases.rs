//! The semantic evaluator's ClusterNetworkPolicy tiers against cases
//! reasoned from the v1alpha2 field docs (`shared/notes/cnp-semantics.md`),
//! and the validation errors of invalid objects.

use nftpol_model::cluster_policy::{self, Action, Tier};
use nftpol_model::{evaluate, manifests, Cluster, ClusterRuleRef, Connection, Decision, Protocol};

/// Namespaces a (house=a) and b (house=b); pods a/web 10.244.1.10 (app=web,
/// port http 80/TCP), a/db 10.244.1.11 (app=db), b/client 10.244.2.10
/// (app=client), b/host hostNetwork on node-2; Nodes node-1 (role=worker,
/// 172.18.0.2, fc00::2) and node-2 (role=control, 172.18.0.3).
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {house: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {house: b}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {role: worker}}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}, {type: InternalIP, address: "fc00::2"}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {role: control}}
status: {addresses: [{type: InternalIP, address: 172.18.0.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 10.244.2.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: b, labels: {app: host}}
spec: {nodeName: node-2, hostNetwork: true, containers: [{name: c}]}
status: {phase: Running, podIPs: [{ip: 172.18.0.3}]}
"#;

const WEB: &str = "10.244.1.10";
const DB: &str = "10.244.1.11";
const CLIENT: &str = "10.244.2.10";
const NODE_2: &str = "172.18.0.3";
const OUTSIDE: &str = "203.0.113.9";

fn cluster_of(objects: &str) -> Cluster {
    manifests::parse(&format!("{BASE}\n---\n{objects}"))
        .expect("valid test manifests")
        .cluster
}

fn decide(cluster: &Cluster, from: &str, to: &str, port: u16) -> (Decision, Decision) {
    let connection = Connection {
        source: from.parse().expect("address"),
        destination: to.parse().expect("address"),
        protocol: Protocol::Tcp,
        port,
    };
    evaluate(cluster, &connection)
}

fn allowed(cluster: &Cluster, from: &str, to: &str, port: u16) -> bool {
    let (egress, ingress) = decide(cluster, from, to, port);
    egress.is_allowed() && ingress.is_allowed()
}

fn cnp(name: &str, tier: &str, priority: u32, body: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n{body}\n---\n"
    )
}

const DENY_INGRESS_FROM_B: &str = "  subject: {namespaces: {matchLabels: {house: a}}}
  ingress: [{name: no-b, action: Deny, from: [{namespaces: {matchLabels: {house: b}}}]}]";

const NETPOL_ALLOW_ALL_TO_WEB: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-open, namespace: a}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{}]}
---
";

const NETPOL_DENY_ALL_TO_WEB: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-closed, namespace: a}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
---
";

#[test]
fn an_admin_deny_overrides_a_network_policy_allow() {
    let cluster = cluster_of(&format!(
        "{}{NETPOL_ALLOW_ALL_TO_WEB}",
        cnp("no-b", "Admin", 10, DENY_INGRESS_FROM_B)
    ));
    assert!(!allowed(&cluster, CLIENT, WEB, 80));
    assert!(allowed(&cluster, DB, WEB, 80), "a/db is not in house b");
    let (_, ingress) = decide(&cluster, CLIENT, WEB, 80);
    assert_eq!(
        ingress,
        Decision::Cluster {
            pod: "a/web".to_owned(),
            rule: ClusterRuleRef {
                tier: Tier::Admin,
                policy: "no-b".to_owned(),
                index: 0,
                name: Some("no-b".to_owned()),
                action: Action::Deny,
            },
        }
    );
}

#[test]
fn a_baseline_deny_yields_to_a_network_policy_in_its_direction_only() {
    let objects = format!(
        "{}{NETPOL_ALLOW_ALL_TO_WEB}",
        cnp("no-b", "Baseline", 10, DENY_INGRESS_FROM_B)
    );
    let cluster = cluster_of(&objects);
    assert!(
        allowed(&cluster, CLIENT, WEB, 80),
        "web is isolated for ingress by a NetworkPolicy: Baseline never sees it"
    );
    assert!(
        !allowed(&cluster, CLIENT, DB, 80),
        "db is isolated by no NetworkPolicy: Baseline decides"
    );
}

#[test]
fn an_egress_only_network_policy_leaves_ingress_to_baseline() {
    let egress_policy = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-egress, namespace: a}
spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Egress], egress: [{}]}
---
";
    let cluster = cluster_of(&format!(
        "{}{egress_policy}",
        cnp("no-b", "Baseline", 10, DENY_INGRESS_FROM_B)
    ));
    assert!(!allowed(&cluster, CLIENT, DB, 80));
}

#[test]
fn an_admin_accept_is_final_for_its_own_direction_only() {
    let accept_egress = "  subject: {namespaces: {matchLabels: {house: b}}}
  egress: [{action: Accept, to: [{namespaces: {matchLabels: {house: a}}}]}]";
    let cluster = cluster_of(&format!(
        "{}{NETPOL_DENY_ALL_TO_WEB}",
        cnp("b-out", "Admin", 1, accept_egress)
    ));
    assert!(
        !allowed(&cluster, CLIENT, WEB, 80),
        "an egress Accept at the source does not lift the destination's ingress isolation"
    );
    let accept_ingress = "  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress: [{action: Accept, from: [{pods: {namespaceSelector: {matchLabels: {house: b}}, podSelector: {}}}]}]";
    let cluster = cluster_with(&[
        &cnp("web-in", "Admin", 1, accept_ingress),
        NETPOL_DENY_ALL_TO_WEB,
    ]);
    assert!(
        allowed(&cluster, CLIENT, WEB, 80),
        "an ingress Accept admits what the destination's NetworkPolicy would drop"
    );
}

fn cluster_with(objects: &[&str]) -> Cluster {
    cluster_of(&objects.concat())
}

#[test]
fn pass_skips_the_rest_of_the_admin_tier_and_reaches_network_policy() {
    let pass = "  subject: {namespaces: {}}
  ingress: [{name: hand-over, action: Pass, from: [{namespaces: {matchLabels: {house: b}}}]}]";
    let deny_all = "  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]";
    let cluster = cluster_with(&[
        &cnp("pass-b", "Admin", 5, pass),
        &cnp("deny-all", "Admin", 6, deny_all),
        NETPOL_ALLOW_ALL_TO_WEB,
    ]);
    assert!(allowed(&cluster, CLIENT, WEB, 80), "Pass skips deny-all");
    assert!(!allowed(&cluster, DB, WEB, 80), "a/db is not passed");
    let (_, ingress) = decide(&cluster, CLIENT, WEB, 80);
    let Decision::Passed { rule, then } = ingress else {
        panic!("expected a Pass, got {ingress:?}")
    };
    assert_eq!(rule.policy, "pass-b");
    assert!(matches!(*then, Decision::Allowed { ref policy, .. } if policy.name == "web-open"));
    let cluster = cluster_with(&[
        &cnp("pass-b", "Admin", 5, pass),
        &cnp("deny-all", "Admin", 6, deny_all),
        &cnp("base-deny", "Baseline", 0, DENY_INGRESS_FROM_B),
    ]);
    assert!(
        !allowed(&cluster, CLIENT, DB, 80),
        "passed on from Admin, not isolated: Baseline decides"
    );
}

#[test]
fn lower_priority_numbers_go_first_and_equal_ones_by_name_are_reported() {
    let accept = "  subject: {namespaces: {}}
  ingress: [{action: Accept, from: [{namespaces: {}}]}]";
    let deny = "  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]";
    let cluster = cluster_with(&[
        &cnp("z-accept", "Admin", 1, accept),
        &cnp("a-deny", "Admin", 2, deny),
    ]);
    assert!(
        allowed(&cluster, CLIENT, WEB, 80),
        "priority 1 before 2, whatever the names"
    );
    let tied = cluster_with(&[
        &cnp("z-accept", "Admin", 2, accept),
        &cnp("a-deny", "Admin", 2, deny),
    ]);
    assert!(
        !allowed(&tied, CLIENT, WEB, 80),
        "equal priority: a-deny first by name"
    );
    let validation = cluster_policy::validate(&tied.cluster_policies);
    assert!(validation.errors.is_empty(), "{:?}", validation.errors);
    assert_eq!(validation.ties.len(), 1);
    let tie = validation.ties[0].to_string();
    assert!(
        tie.contains("cnp/a-deny and cnp/z-accept share priority 2"),
        "{tie}"
    );
}

#[test]
fn networks_match_pod_addresses_and_only_their_own_family() {
    let deny_v4 = "  subject: {namespaces: {matchLabels: {house: b}}}
  egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]";
    let cluster = cluster_of(&cnp("no-v4", "Admin", 1, deny_v4));
    assert!(
        !allowed(&cluster, CLIENT, WEB, 80),
        "0.0.0.0/0 covers pod addresses"
    );
    assert!(!allowed(&cluster, CLIENT, OUTSIDE, 80));
    let deny_v6 = "  subject: {namespaces: {matchLabels: {house: b}}}
  egress: [{action: Deny, to: [{networks: [\"::/0\"]}]}]";
    let cluster = cluster_of(&cnp("no-v6", "Admin", 1, deny_v6));
    assert!(
        allowed(&cluster, CLIENT, WEB, 80),
        "::/0 matches no IPv4 address"
    );
}

#[test]
fn nodes_peers_match_node_addresses_never_ordinary_pods() {
    let deny_control = "  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{nodes: {matchLabels: {role: control}}}]}]";
    let cluster = cluster_of(&cnp("no-control", "Admin", 1, deny_control));
    assert!(
        !allowed(&cluster, WEB, NODE_2, 80),
        "node-2's address (and its host-network pods)"
    );
    assert!(
        allowed(&cluster, WEB, "172.18.0.2", 80),
        "node-1 is not control"
    );
    assert!(
        allowed(&cluster, WEB, CLIENT, 80),
        "a pod on node-2 is not a node address"
    );
}

#[test]
fn protocols_restrict_ports_and_named_ports_resolve_on_the_destination() {
    let deny_http = "  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: http}]}]";
    let cluster = cluster_of(&cnp("no-http", "Admin", 1, deny_http));
    assert!(!allowed(&cluster, CLIENT, WEB, 80), "web names 80/TCP http");
    assert!(allowed(&cluster, CLIENT, WEB, 81));
    assert!(
        allowed(&cluster, CLIENT, DB, 80),
        "db declares no port named http"
    );
    let deny_range = "  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 8000, end: 8080}}}}]}]";
    let cluster = cluster_of(&cnp("no-range", "Admin", 1, deny_range));
    assert!(
        !allowed(&cluster, CLIENT, WEB, 8080),
        "the range is inclusive"
    );
    assert!(allowed(&cluster, CLIENT, WEB, 8081));
}

#[test]
fn an_unknown_peer_matches_nothing_in_accept_and_everything_in_deny_or_pass() {
    let accept_unknown = "  subject: {namespaces: {}}
  egress:
  - {action: Accept, to: [{domainNames: [example.com]}]}
  - {action: Deny, to: [{networks: [0.0.0.0/0]}]}";
    let cluster = cluster_of(&cnp("dns-allow", "Admin", 1, accept_unknown));
    assert!(
        !allowed(&cluster, CLIENT, OUTSIDE, 443),
        "the Accept matches nothing"
    );
    let validation = cluster_policy::validate(&cluster.cluster_policies);
    assert_eq!(
        validation.errors.len(),
        1,
        "reported once: {:?}",
        validation.errors
    );
    assert!(validation.errors[0].to_string().contains("cnp/dns-allow"));
    let pass_unknown = "  subject: {namespaces: {}}
  egress: [{action: Pass, to: [{futurePeer: {x: 1}}]}]";
    let cluster = cluster_with(&[
        &cnp("future", "Admin", 1, pass_unknown),
        NETPOL_ALLOW_ALL_TO_WEB,
    ]);
    assert!(
        !allowed(&cluster, CLIENT, WEB, 80),
        "a Pass with an unknown peer denies all"
    );
    assert!(
        allowed(&cluster, OUTSIDE, WEB, 80),
        "egress only: ingress from outside is untouched"
    );
}

#[test]
fn invalid_objects_name_the_field_and_fail_closed() {
    let cases = [
        (
            "spec.priority",
            cnp("p", "Admin", 1001, DENY_INGRESS_FROM_B),
        ),
        ("spec.tier", cnp("t", "Middle", 1, DENY_INGRESS_FROM_B)),
        (
            "spec.subject",
            cnp(
                "s",
                "Admin",
                1,
                "  subject: {}\n  ingress: [{action: Accept, from: [{namespaces: {}}]}]",
            ),
        ),
    ];
    for (field, object) in cases {
        let cluster = cluster_of(&object);
        let validation = cluster_policy::validate(&cluster.cluster_policies);
        assert!(
            validation.errors.iter().any(|error| error.field == field),
            "{field}: {:?}",
            validation.errors
        );
        assert!(validation
            .errors
            .iter()
            .all(|error| error.object.starts_with("cnp/")));
    }
    // Accept rules of an unreadable object match nothing, its Deny rules
    // deny everything in their direction, whoever the subject meant.
    let cluster = cluster_of(&cnp("t", "Middle", 1, DENY_INGRESS_FROM_B));
    assert!(
        !allowed(&cluster, DB, WEB, 80),
        "the Deny now denies every source"
    );
    assert!(
        allowed(&cluster, WEB, OUTSIDE, 80),
        "egress has no rules: untouched"
    );
    let cluster = cluster_of(&cnp(
        "s",
        "Admin",
        1,
        "  subject: {}\n  ingress: [{action: Accept, from: [{namespaces: {}}]}]",
    ));
    assert!(
        allowed(&cluster, CLIENT, WEB, 80),
        "an Accept that matches nothing opens nothing"
    );
}

#[test]
fn invalid_rules_fail_closed_by_action() {
    let bad_port = "  subject: {namespaces: {}}
  ingress:
  - {action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}
  - {action: Deny, from: [{namespaces: {matchLabels: {house: b}}}], protocols: [{tcp: {destinationPort: {number: 70000}}}]}";
    let cluster = cluster_with(&[&cnp("bad", "Admin", 1, bad_port), NETPOL_DENY_ALL_TO_WEB]);
    let validation = cluster_policy::validate(&cluster.cluster_policies);
    let fields: Vec<&str> = validation
        .errors
        .iter()
        .map(|error| error.field.as_str())
        .collect();
    assert!(
        fields.contains(&"spec.ingress[0].protocols[0].tcp.destinationPort.range"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.ingress[1].protocols[0].tcp.destinationPort.number"),
        "{fields:?}"
    );
    assert!(
        !allowed(&cluster, CLIENT, DB, 9),
        "the invalid Deny denies every source, any port"
    );
    let named_with_networks = "  subject: {namespaces: {}}
  egress: [{action: Accept, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: http}]}]";
    let validation = cluster_policy::validate(
        &cluster_of(&cnp("n", "Admin", 1, named_with_networks)).cluster_policies,
    );
    assert!(
        validation
            .errors
            .iter()
            .any(|error| error.field == "spec.egress[0].protocols[0]"),
        "{:?}",
        validation.errors
    );
}

#[test]
fn explain_names_the_tiers_that_decided() {
    let pass = "  subject: {namespaces: {}}
  ingress: [{name: hand-over, action: Pass, from: [{namespaces: {matchLabels: {house: b}}}]}]";
    let cluster = cluster_with(&[
        &cnp("pass-b", "Admin", 5, pass),
        &cnp("no-b", "Baseline", 1, DENY_INGRESS_FROM_B),
        NETPOL_ALLOW_ALL_TO_WEB,
    ]);
    let connection = |to: &str| Connection {
        source: CLIENT.parse().expect("address"),
        destination: to.parse().expect("address"),
        protocol: Protocol::Tcp,
        port: 80,
    };
    let to_web = nftpol_model::explain(&cluster, &connection(WEB));
    assert!(to_web.starts_with("ALLOWED"), "{to_web}");
    assert!(
        to_web.contains(
            "Admin cnp/pass-b rule 0 \"hand-over\" Pass → a/web is isolated; allowed by a/web-open"
        ),
        "{to_web}"
    );
    let to_db = nftpol_model::explain(&cluster, &connection(DB));
    assert!(to_db.starts_with("DENIED"), "{to_db}");
    assert!(
        to_db.contains("Baseline cnp/no-b rule 0 \"no-b\" Deny: denied"),
        "{to_db}"
    );
}
