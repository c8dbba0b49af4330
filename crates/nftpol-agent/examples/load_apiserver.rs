//! Serves a large synthetic cluster from the fake API server (a test
//! double, see `tests/support/apiserver.rs`) for measuring the agent:
//! 100 namespaces, 10,000 pods (1,000 of them on `node-1`) with realistic
//! bulk (annotations, images, env, conditions), 1,000 NetworkPolicies.
//!
//! Usage: `load_apiserver KUBECONFIG_OUT [ADDRESS] [SECONDS]` — writes a
//! kubeconfig for the server, serves for SECONDS (default 300) and exits.
//! Run it and `nftpol agent` in a fresh network namespace (`unshare -n`).

#[path = "../tests/support/apiserver.rs"]
#[expect(dead_code, reason = "the example uses only part of the test double")]
mod apiserver;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

const NAMESPACES: usize = 100;
const PODS: usize = 10_000;
const POLICIES: usize = 1_000;

fn pod(index: usize) -> Pod {
    let namespace = index % NAMESPACES;
    let local = index.is_multiple_of(10);
    let (node, ip) = if local {
        (
            "node-1".to_owned(),
            format!("10.244.{}.{}", index / 2500, 1 + (index / 10) % 250),
        )
    } else {
        (
            format!("node-{}", 2 + index % 9),
            format!(
                "10.{}.{}.{}",
                245 + index % 9,
                index / 250 % 256,
                1 + index % 250
            ),
        )
    };
    let conditions: Vec<_> = ["Ready", "Initialized", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|kind| json!({ "type": kind, "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z" }))
        .collect();
    let env: Vec<_> = (0..10)
        .map(|n| json!({ "name": format!("ENV_{n}"), "value": "some-value" }))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("pod-{index}"),
            "namespace": format!("ns-{namespace}"),
            "labels": { "app": format!("a{}", index % 20), "tier": format!("t{}", index % 3), "pod-template-hash": "5d8f7c9b4" },
            "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(1500) },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true }],
        },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "app",
                "image": "registry.example/team/app:1.2.3",
                "args": ["--serve", "--port=80", "--verbose"],
                "env": env,
                "ports": [{ "name": "http", "containerPort": 80 }, { "name": "metrics", "containerPort": 9090 }],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
                "volumeMounts": [{ "name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }],
            }],
            "volumes": [{ "name": "token", "projected": { "sources": [{ "serviceAccountToken": { "path": "token" } }] } }],
            "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute" }],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "hostIP": "172.18.0.2",
            "conditions": conditions,
            "containerStatuses": [{ "name": "app", "ready": true, "restartCount": 0, "image": "registry.example/team/app:1.2.3",
                "imageID": "sha256:0123456789abcdef", "containerID": "containerd://0123456789abcdef",
                "state": { "running": { "startedAt": "2025-01-01T00:00:00Z" } } }],
        },
    }))
    .expect("a valid Pod")
}

fn policy(index: usize) -> NetworkPolicy {
    let app = index % 20;
    let mut spec = json!({
        "podSelector": { "matchLabels": { "app": format!("a{app}") } },
        "ingress": [
            { "from": [{ "podSelector": { "matchLabels": { "app": format!("a{}", (app + 1) % 20) } } }],
              "ports": [{ "port": 80 }, { "port": "metrics" }] },
            { "from": [{ "namespaceSelector": { "matchLabels": { "team": format!("t{}", index % 10) } },
                         "podSelector": { "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["t0", "t1"] }] } }] },
            { "from": [{ "ipBlock": { "cidr": "10.0.0.0/8", "except": [format!("10.{}.0.0/16", 100 + index % 100)] } }],
              "ports": [{ "port": 8000, "endPort": 8100, "protocol": "TCP" }] },
        ],
    });
    if index.is_multiple_of(4) {
        spec["egress"] = json!([{ "to": [{ "podSelector": {} }], "ports": [{ "port": 53, "protocol": "UDP" }] }]);
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
    }
    serde_json::from_value(json!({
        "metadata": { "name": format!("policy-{index}"), "namespace": format!("ns-{}", index % NAMESPACES) },
        "spec": spec,
    }))
    .expect("a valid NetworkPolicy")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let kubeconfig = args
        .next()
        .expect("usage: load_apiserver KUBECONFIG_OUT [ADDRESS] [SECONDS]");
    let address = args.next().unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let seconds: u64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(300);

    let server = apiserver::FakeApiServer::start_on(&address).await;
    let namespaces: Vec<Namespace> = (0..NAMESPACES)
        .map(|index| {
            serde_json::from_value(json!({ "metadata": { "name": format!("ns-{index}"), "labels": { "team": format!("t{}", index % 10) } } }))
                .expect("a valid Namespace")
        })
        .collect();
    server.apply_all(&namespaces);
    let nodes: Vec<Node> = (1..=10)
        .map(|index| {
            serde_json::from_value(json!({ "metadata": { "name": format!("node-{index}") },
                "spec": { "podCIDR": format!("10.{}.0.0/16", 243 + index), "podCIDRs": [format!("10.{}.0.0/16", 243 + index)] } }))
            .expect("a valid Node")
        })
        .collect();
    server.apply_all(&nodes);
    server.apply_all(&(0..PODS).map(pod).collect::<Vec<_>>());
    server.apply_all(&(0..POLICIES).map(policy).collect::<Vec<_>>());
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n",
            server.url()
        ),
    )
    .expect("write the kubeconfig");
    eprintln!(
        "serving {PODS} pods, {POLICIES} policies, {NAMESPACES} namespaces at {} for {seconds}s",
        server.url()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}
