//! Placement: nodes, addresses and filled objects. Pure.

use std::net::IpAddr;

use nftpol_lab::plan::{self, Plan, Protocol};
use nftpol_lab::LabError;
use nftpol_model::Cluster;

fn place(yaml: &str, nodes: Option<usize>) -> Result<(Cluster, Plan), LabError> {
    let mut cluster = nftpol_model::manifests::parse(yaml)
        .expect("test YAML parses")
        .cluster;
    plan::place(&mut cluster, nodes).map(|plan| (cluster, plan))
}

fn pod(name: &str, extra: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\n{extra}\n")
}

fn addresses(plan: &Plan, id: &str) -> Vec<String> {
    let pod = plan
        .pods
        .iter()
        .find(|p| p.id == id)
        .expect("pod is planned");
    pod.addresses.iter().map(IpAddr::to_string).collect()
}

#[test]
fn pods_without_node_go_round_robin_and_get_per_node_addresses_in_document_order() {
    let yaml = [
        pod("a", ""),
        pod("b", ""),
        pod("c", ""),
        pod(
            "d",
            "spec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.11}",
        ),
    ]
    .concat();
    let (cluster, plan) = place(&yaml, Some(2)).unwrap();
    let nodes: Vec<(&str, usize)> = plan.pods.iter().map(|p| (p.id.as_str(), p.node)).collect();
    assert_eq!(nodes, vec![("x/a", 1), ("x/b", 2), ("x/c", 1), ("x/d", 1)]);
    assert_eq!(addresses(&plan, "x/a"), vec!["10.244.1.10"]);
    assert_eq!(addresses(&plan, "x/b"), vec!["10.244.2.10"]);
    // .11 is claimed by d explicitly.
    assert_eq!(addresses(&plan, "x/c"), vec!["10.244.1.12"]);
    let filled = &cluster.pods[2];
    assert_eq!(
        filled.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    let status = filled.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.12"));
    assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.244.1.12");
}

#[test]
fn node_count_defaults_to_highest_named_node_and_nodes_carry_pod_cidrs() {
    let yaml = pod("a", "spec: {nodeName: node-3}");
    let (cluster, plan) = place(&yaml, None).unwrap();
    assert_eq!(plan.nodes.len(), 3);
    let node3 = &cluster.nodes[2];
    assert_eq!(node3.metadata.name.as_deref(), Some("node-3"));
    assert_eq!(
        node3.spec.as_ref().unwrap().pod_cidrs.as_deref(),
        Some(&["10.244.3.0/24".to_owned(), "fd00:10:244:3::/64".to_owned()][..])
    );
    assert_eq!(plan.nodes[2].ipv4.to_string(), "172.18.0.4");
    assert_eq!(place(&pod("a", ""), None).unwrap().1.nodes.len(), 1);
}

#[test]
fn terminal_pods_stay_in_the_objects_but_are_not_planned() {
    let yaml = [
        pod(
            "old",
            "spec: {nodeName: node-1}\nstatus: {phase: Succeeded, podIP: 10.244.1.10}",
        ),
        pod(
            "new",
            "spec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.10}",
        ),
    ]
    .concat();
    let (cluster, plan) = place(&yaml, None).unwrap();
    assert_eq!(cluster.pods.len(), 2);
    let ids: Vec<&str> = plan.pods.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["x/new"]);
}

#[test]
fn host_network_pods_take_node_addresses_and_ipv6_makes_the_lab_dual_stack() {
    let yaml = [
        pod("h", "spec: {nodeName: node-2, hostNetwork: true}"),
        pod(
            "v6",
            "status: {podIPs: [{ip: 10.244.1.20}, {ip: 'fd00:10:244:1::20'}]}",
        ),
    ]
    .concat();
    let (_, plan) = place(&yaml, None).unwrap();
    assert!(plan.dual_stack);
    assert_eq!(
        addresses(&plan, "x/h"),
        vec!["172.18.0.3", "fd00:172:18::3"]
    );
    assert_eq!(
        addresses(&plan, "x/v6"),
        vec!["10.244.1.20", "fd00:10:244:1::20"]
    );
}

#[test]
fn ports_default_to_tcp_and_deduplicate() {
    let yaml = pod(
        "a",
        "spec:\n  containers:\n  - {name: s, ports: [{containerPort: 80}, {containerPort: 80, protocol: TCP}, {containerPort: 53, protocol: UDP}]}",
    );
    let (_, plan) = place(&yaml, None).unwrap();
    let ports: Vec<(u16, Protocol)> = plan.pods[0]
        .ports
        .iter()
        .map(|p| (p.port, p.protocol))
        .collect();
    assert_eq!(ports, vec![(53, Protocol::Udp), (80, Protocol::Tcp)]);
}

#[test]
fn missing_namespaces_are_created_and_every_namespace_is_labelled() {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n".to_owned() + &pod("a", "");
    let (cluster, _) = place(&yaml, None).unwrap();
    let mut labelled: Vec<(String, String)> = cluster
        .namespaces
        .iter()
        .map(|ns| {
            let name = ns.metadata.name.clone().unwrap();
            let label = ns.metadata.labels.as_ref().unwrap()["kubernetes.io/metadata.name"].clone();
            (name, label)
        })
        .collect();
    labelled.sort();
    assert_eq!(
        labelled,
        vec![
            ("x".to_owned(), "x".to_owned()),
            ("y".to_owned(), "y".to_owned())
        ]
    );
}

#[test]
fn unplaceable_scenarios_are_errors() {
    let cases = [
        (
            "foreign node name",
            pod("a", "spec: {nodeName: worker}"),
            None,
        ),
        (
            "--nodes below a named node",
            pod("a", "spec: {nodeName: node-3}"),
            Some(2),
        ),
        (
            "two running pods on one address",
            [
                pod("a", "status: {podIP: 10.244.1.10}"),
                pod("b", "status: {podIP: 10.244.1.10}"),
            ]
            .concat(),
            None,
        ),
        ("not an address", pod("a", "status: {podIP: ten}"), None),
        (
            "pod declared twice",
            [pod("a", ""), pod("a", "")].concat(),
            None,
        ),
    ];
    for (name, yaml, nodes) in cases {
        let result = place(&yaml, nodes);
        assert!(result.is_err(), "{name}: accepted");
        assert_eq!(result.unwrap_err().exit_code(), 2, "{name}");
    }
}

fn node(name: &str, labels: &str, addresses: &[&str]) -> String {
    let addresses: Vec<String> = addresses
        .iter()
        .map(|a| format!("{{type: InternalIP, address: '{a}'}}"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nstatus:\n  addresses: [{}, {{type: Hostname, address: {name}}}]\n",
        addresses.join(", ")
    )
}

#[test]
fn node_documents_define_the_lab_nodes_and_pods_pick_them_by_name() {
    let yaml = [
        node("gw", "role: gateway", &["192.168.50.11", "fd00:50::11"]),
        node("worker", "", &["10.20.30.40", "fd00:30::40"]),
        pod("a", "spec: {nodeName: worker}"),
        pod("b", ""),
        pod("h", "spec: {nodeName: gw, hostNetwork: true}"),
    ]
    .concat();
    let (cluster, plan) = place(&yaml, None).unwrap();
    let nodes: Vec<(usize, &str, String, String)> = plan
        .nodes
        .iter()
        .map(|n| {
            (
                n.index,
                n.name.as_str(),
                n.ipv4.to_string(),
                n.ipv6.to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![
            (
                1,
                "gw",
                "192.168.50.11".to_owned(),
                "fd00:50::11".to_owned()
            ),
            (
                2,
                "worker",
                "10.20.30.40".to_owned(),
                "fd00:30::40".to_owned()
            ),
        ]
    );
    let placed: Vec<(&str, usize)> = plan.pods.iter().map(|p| (p.id.as_str(), p.node)).collect();
    assert_eq!(placed, vec![("x/a", 2), ("x/b", 1), ("x/h", 1)]);
    assert_eq!(addresses(&plan, "x/a"), vec!["10.244.2.10"]);
    assert_eq!(addresses(&plan, "x/h"), vec!["192.168.50.11"]);
    let filled = &cluster.pods[0];
    assert_eq!(
        filled.spec.as_ref().unwrap().node_name.as_deref(),
        Some("worker")
    );
    assert_eq!(
        filled.status.as_ref().unwrap().host_ip.as_deref(),
        Some("10.20.30.40")
    );
    // The agents see the documents: their labels (plus the hostname
    // label), their addresses as written, and the lab's pod CIDRs.
    let gw = &cluster.nodes[0];
    let labels = gw.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["role"], "gateway");
    assert_eq!(labels["kubernetes.io/hostname"], "gw");
    let written: Vec<(&str, &str)> = gw
        .status
        .as_ref()
        .unwrap()
        .addresses
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
        .collect();
    assert_eq!(
        written,
        vec![
            ("InternalIP", "192.168.50.11"),
            ("InternalIP", "fd00:50::11"),
            ("Hostname", "gw")
        ]
    );
    assert_eq!(
        cluster.nodes[1].spec.as_ref().unwrap().pod_cidrs.as_deref(),
        Some(&["10.244.2.0/24".to_owned(), "fd00:10:244:2::/64".to_owned()][..])
    );
}

#[test]
fn invalid_node_documents_are_errors_naming_the_node_and_field() {
    let gw = node("gw", "", &["192.168.50.11", "fd00:50::11"]);
    let cases = [
        (
            "not an address",
            node("bad", "", &["192.168.50.300", "fd00:50::12"]),
            "Node bad",
            "status.addresses[0].address",
        ),
        (
            "in the pod range",
            node("bad", "", &["10.244.7.1", "fd00:50::12"]),
            "Node bad",
            "status.addresses[0].address",
        ),
        (
            "loopback",
            node("bad", "", &["192.168.50.12", "::1"]),
            "Node bad",
            "status.addresses[1].address",
        ),
        (
            "two IPv4 InternalIPs",
            node(
                "bad",
                "",
                &["192.168.50.12", "192.168.50.13", "fd00:50::12"],
            ),
            "Node bad",
            "status.addresses[1].address",
        ),
        (
            "no IPv6",
            node("bad", "", &["192.168.50.12"]),
            "Node bad",
            "status.addresses",
        ),
        (
            "an address of another node",
            node("bad", "", &["192.168.50.11", "fd00:50::12"]),
            "Node bad",
            "status.addresses",
        ),
        (
            "declared twice",
            node("gw", "", &["192.168.50.12", "fd00:50::12"]),
            "Node gw",
            "metadata.name",
        ),
        (
            "a pod on an undeclared node",
            pod("a", "spec: {nodeName: node-1}"),
            "Pod x/a",
            "spec.nodeName",
        ),
        (
            "a pod on a node's address",
            pod("a", "status: {podIP: 192.168.50.11}"),
            "Pod x/a",
            "status.podIPs",
        ),
    ];
    for (name, extra, want_object, want_field) in cases {
        let yaml = gw.clone() + &extra;
        match place(&yaml, None) {
            Err(LabError::Scenario { object, field, .. }) => {
                assert_eq!(
                    (object.as_str(), field.as_str()),
                    (want_object, want_field),
                    "{name}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(
        matches!(place(&gw, Some(2)), Err(LabError::Nodes { given: 2, .. })),
        "--nodes must match the Node documents"
    );
}
