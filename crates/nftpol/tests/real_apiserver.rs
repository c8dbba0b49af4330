//! The real `nftpol agent` binary against the real kube-apiserver (etcd +
//! kube-apiserver of `integration/apiserver`, the lab's [`ApiServer`]), holding only the ServiceAccount token of
//! `deploy/rbac.yaml`, in a node namespace linked to the server's by a veth
//! pair. Enforcement is checked on the table read back from the node's
//! kernel, walked by the IR interpreter for each pod pair.
//!
//! One server per test: the agent test runs its steps in order on one
//! cluster (each step's name says what it proves), the manifest test
//! validates `deploy/` and the Helm chart on a second. Needs root and the
//! binaries of `scripts/apiserver.sh build`.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use nftpol_ir::interpret::{interpret, Packet};
use nftpol_ir::{Hook, Ruleset};
use nftpol_lab::apiserver::{
    command_in, ApiServer, History, Tools, AGENT_SERVICE_ACCOUNT, PATIENCE,
};
use nftpol_lab::netns::RunId;
use nftpol_netlink::{Dataplane as _, KernelDataplane};
use nftpol_testkit::netns::Netns;
use serde_json::json;

const NODE: &str = "node-1";
const POD_CIDR: &str = "10.244.1.0/24";
/// x/a, x/b, y/c on node-1.
const A: &str = "10.244.1.10";
const B: &str = "10.244.1.11";
const C: &str = "10.244.1.12";
/// The agent's HTTP port inside the node namespace.
const AGENT_HTTP: &str = "127.0.0.1:9808";

/// The verdict of the node's table for a new TCP connection to port 80.
fn allows(ruleset: &Ruleset, source: &str, destination: &str) -> bool {
    let source: IpAddr = source.parse().expect("a test address");
    let destination: IpAddr = destination.parse().expect("a test address");
    interpret(
        ruleset,
        &Packet::opening(Hook::Forward, source, destination, 6, 80),
    )
    .expect("the table read back interprets")
    .accepted
}

/// Reads `table inet nftpol` back from the kernel of `node`.
fn read_table(node: &Netns) -> Option<Ruleset> {
    node.run(|| {
        KernelDataplane::open()
            .expect("a netlink socket in the node namespace")
            .read()
            .expect("reading the table back")
    })
}

/// Polls the node's table until `check` holds (or fails after [`PATIENCE`]
/// with `what` and the agent's log).
fn wait_for_table(node: &Netns, agent: &Agent, what: &str, check: impl Fn(&Ruleset) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if read_table(node).is_some_and(|ruleset| check(&ruleset)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the node's table never got there; agent log:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `nftpol agent` running in a node namespace; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(node: &Netns, kubeconfig: &Path, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("creating the agent log");
        let child = node
            .command(env!("CARGO_BIN_EXE_nftpol"))
            .args(["agent", "--node-name", NODE, "--listen", AGENT_HTTP])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting nftpol agent");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Whether `/readyz` answers 200 (asked from inside the node).
    fn is_ready(node: &Netns) -> bool {
        node.run(|| {
            let Ok(mut stream) = TcpStream::connect(AGENT_HTTP) else {
                return false;
            };
            let mut answer = String::new();
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
                .and_then(|()| stream.read_to_string(&mut answer))
                .is_ok_and(|_| answer.starts_with("HTTP/1.1 200"))
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Best effort: the process may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Namespaces x (ns=x) and y (ns=y), node-1, pods x/a, x/b, y/c Running on
/// it, and NetworkPolicy x/only-x: x's pods take ingress from x only.
fn populate(server: &ApiServer) {
    server
        .create_namespace("x", &[("ns", "x")])
        .expect("namespace x");
    server
        .create_namespace("y", &[("ns", "y")])
        .expect("namespace y");
    server.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\nspec: {{podCIDR: {POD_CIDR}, podCIDRs: [{POD_CIDR}]}}\n"
    ))
    .expect("the node");
    for (namespace, name, ip) in [("x", "a", A), ("x", "b", B), ("y", "c", C)] {
        server.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: \"{namespace}\", labels: {{pod: {name}}}}}\n\
             spec:\n  nodeName: {NODE}\n  containers: [{{name: s, image: registry.k8s.io/pause:3.10, ports: [{{containerPort: 80}}]}}]\n"
        ))
        .expect("a pod");
        server
            .set_pod_running(namespace, name, ip)
            .expect("a pod's status");
    }
    server.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-x, namespace: x}\n\
         spec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]\n",
        )
        .expect("x/only-x");
}

/// A fresh server of the tools `scripts/apiserver.sh build` made.
fn start_server() -> ApiServer {
    let tools = Tools::locate(None, Path::new(env!("CARGO_BIN_EXE_nftpol")))
        .unwrap_or_else(|error| panic!("{error}"));
    ApiServer::start(tools, &RunId::new()).unwrap_or_else(|error| panic!("{error}"))
}

/// A client of `kubeconfig` on a runtime whose sockets live in the
/// server's namespace.
fn in_namespace<T: Send>(
    server: &ApiServer,
    kubeconfig: &Path,
    body: impl AsyncFnOnce(kube::Client) -> T + Send,
) -> T {
    server
        .run_inside(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async {
                    let config = Kubeconfig::read_from(kubeconfig).expect("the kubeconfig");
                    let config =
                        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
                            .await
                            .expect("a client config");
                    body(kube::Client::try_from(config).expect("a client")).await
                })
        })
        .expect("a thread in the server's namespace")
}

/// The HTTP status of a failed API call, or 0 for success.
fn status_of<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 0,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("not an API answer: {other}"),
    }
}

fn cluster_policy_api(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "policy.networking.k8s.io".into(),
        version: "v1alpha2".into(),
        api_version: "policy.networking.k8s.io/v1alpha2".into(),
        kind: "ClusterNetworkPolicy".into(),
        plural: "clusternetworkpolicies".into(),
    };
    Api::all_with(client, &resource)
}

fn cluster_policy(name: &str, spec: &serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a ClusterNetworkPolicy object")
}

/// Samples the node's table until stopped and records every sample in
/// which it was missing or `y/c → x/b` was not denied.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Sampler {
    fn start(node: &Netns) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = node.path();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(path).expect("the node namespace");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the node namespace");
            let mut dataplane = KernelDataplane::open().expect("a netlink socket");
            let (mut samples, mut gaps) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                samples += 1;
                match dataplane.read() {
                    Ok(Some(ruleset)) if !allows(&ruleset, C, B) => {}
                    Ok(Some(_)) => gaps.push(format!("sample {samples}: y/c reached x/b")),
                    Ok(None) => gaps.push(format!("sample {samples}: no table")),
                    Err(error) => gaps.push(format!("sample {samples}: {error}")),
                }
                // The sampling cadence, not a wait for state.
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, gaps)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

/// How many `list` requests the agent's ServiceAccount made so far.
fn agent_lists(server: &ApiServer) -> usize {
    server
        .audit_events()
        .iter()
        .filter(|event| event["verb"] == "list" && event["stage"] == "ResponseComplete")
        .count()
}

/// `kubectl nftpol explain` through the real kubectl's plugin lookup; the
/// first word of its answer (ALLOWED or DENIED) and the whole answer.
fn plugin_explain(server: &ApiServer, plugins: &Path, from: &str, to: &str) -> (String, String) {
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output: Output = command_in(server.netns_name(), &server.tools().kubectl())
        .args([
            "nftpol", "explain", "--from", from, "--to", to, "--port", "80/TCP",
        ])
        .env("PATH", path)
        .env("KUBECONFIG", server.admin_kubeconfig())
        .output()
        .expect("running kubectl nftpol");
    assert!(
        output.status.success(),
        "kubectl nftpol explain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let verdict = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    (verdict, text)
}

/// One cluster and its agent, shared by the steps of the agent test.
struct Cluster {
    server: ApiServer,
    node: Netns,
    agent: Agent,
}

#[test]
fn agent_with_deploy_rbac_follows_the_real_api_server() {
    let mut server = start_server();
    populate(&server);
    let node = Netns::new();
    server.connect(node.name()).expect("linking the node");
    let (namespace, name) = AGENT_SERVICE_ACCOUNT;
    let kubeconfig = server
        .service_account_kubeconfig(namespace, name)
        .expect("the agent's kubeconfig");
    let agent = Agent::start(&node, &kubeconfig, server.dir().join("agent.log"));
    let mut cluster = Cluster {
        server,
        node,
        agent,
    };
    cluster.deploy_rbac_is_sufficient_and_minimal();
    cluster.crd_installed_later_is_picked_up_live();
    cluster.invalid_cluster_policy_is_rejected_by_the_crd();
    cluster.unenforceable_cluster_policy_is_reported_once_as_an_event();
    cluster.kubectl_plugin_explains_from_the_live_cluster();
    cluster.watches_survive_a_restart_with_compaction_without_a_gap();
}

impl Cluster {
    fn wait_for_table(&self, what: &str, check: impl Fn(&Ruleset) -> bool) {
        wait_for_table(&self.node, &self.agent, what, check);
    }

    fn as_admin<T: Send>(&self, body: impl AsyncFnOnce(kube::Client) -> T + Send) -> T {
        in_namespace(&self.server, &self.server.admin_kubeconfig(), body)
    }

    /// (a) The agent, holding only the token of deploy/rbac.yaml, gets
    /// ready and enforces x/only-x (the CRD not installed yet); with that
    /// token, writing pods, reading secrets and patching nodes are 403,
    /// while listing pods (what it needs) works.
    fn deploy_rbac_is_sufficient_and_minimal(&self) {
        self.wait_for_table("x/only-x enforced", |table| {
            !allows(table, C, A) && allows(table, B, A) && allows(table, A, C)
        });
        let deadline = Instant::now() + PATIENCE;
        while !Agent::is_ready(&self.node) {
            assert!(
                Instant::now() < deadline,
                "agent never ready:\n{}",
                self.agent.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (namespace, name) = AGENT_SERVICE_ACCOUNT;
        let local = self
            .server
            .service_account_kubeconfig_local(namespace, name)
            .expect("a local kubeconfig of the agent's token");
        let statuses = in_namespace(&self.server, &local, async |client| {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "x");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "intruder"},
                "spec": {"containers": [{"name": "s", "image": "registry.k8s.io/pause:3.10"}]}
            }))
            .expect("a pod");
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "x");
            let nodes: Api<Node> = Api::all(client.clone());
            let patch = Patch::Merge(json!({"metadata": {"labels": {"owned": "yes"}}}));
            [
                status_of(pods.list(&ListParams::default()).await),
                status_of(pods.create(&PostParams::default(), &pod).await),
                status_of(secrets.list(&ListParams::default()).await),
                status_of(nodes.patch(NODE, &PatchParams::default(), &patch).await),
            ]
        });
        assert_eq!(
            statuses,
            [0, 403, 403, 403],
            "list pods, create pod, list secrets, patch node"
        );
    }

    /// (d) The ClusterNetworkPolicy CRD installed while the agent runs is
    /// picked up live: an Admin Deny from y into x/b is enforced.
    fn crd_installed_later_is_picked_up_live(&self) {
        self.server.install_cluster_policy_crd().expect("the CRD");
        self.as_admin(async |client| {
            let policy = cluster_policy(
                "deny-y-to-b",
                &json!({
                    "tier": "Admin", "priority": 10,
                    "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}},
                    "ingress": [{"name": "from-y", "action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]
                }),
            );
            cluster_policy_api(client)
                .create(&PostParams::default(), &policy)
                .await
                .expect("creating deny-y-to-b");
        });
        self.wait_for_table("deny-y-to-b enforced", |table| {
            !allows(table, C, B) && allows(table, A, B)
        });
    }

    /// (e) The CRD's validation rejects an invalid action with 422: the
    /// object is never stored, so the agent never sees it.
    fn invalid_cluster_policy_is_rejected_by_the_crd(&self) {
        let (invalid, stored) = self.as_admin(async |client| {
            let api = cluster_policy_api(client);
            let policy = cluster_policy(
                "invalid-action",
                &json!({
                    "tier": "Admin", "priority": 20,
                    "subject": {"namespaces": {}},
                    "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]
                }),
            );
            let invalid = status_of(api.create(&PostParams::default(), &policy).await);
            let stored = status_of(api.get("invalid-action").await);
            (invalid, stored)
        });
        assert_eq!((invalid, stored), (422, 404), "create, then get");
    }

    /// (e) A domainNames peer passes the CRD but nftpol cannot enforce it:
    /// the agent reports it as a Warning Event on the object, once for its
    /// generation (another reconcile does not repeat it), besides its log
    /// line.
    fn unenforceable_cluster_policy_is_reported_once_as_an_event(&self) {
        let uid = self.as_admin(async |client| {
            let policy = cluster_policy(
                "to-example",
                &json!({
                    "tier": "Admin", "priority": 30,
                    "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
                    "egress": [{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}]
                }),
            );
            cluster_policy_api(client)
                .create(&PostParams::default(), &policy)
                .await
                .expect("creating to-example")
                .metadata
                .uid
                .expect("a stored object has a uid")
        });
        let events = wait_for_events(&self.server, "to-example", 1);
        assert_eq!(
            events.len(),
            1,
            "one Event for generation 1: {events:?}; agent log:\n{}",
            self.agent.log_tail()
        );
        let event = &events[0];
        assert_eq!(
            event
                .regarding
                .as_ref()
                .and_then(|object| object.uid.as_deref()),
            Some(uid.as_str())
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some(nftpol_agent::events::REASON));
        assert!(
            self.agent.log().contains("cnp/to-example"),
            "the log line names the object:\n{}",
            self.agent.log_tail()
        );
        // Two more reconciles, each visible in the table; a repeated Event
        // would be created right after the first, while the second runs.
        let label = |value: &str| {
            self.server
                .kubectl_ok(
                    &[
                        "label",
                        "namespace",
                        "y",
                        &format!("ns={value}"),
                        "--overwrite",
                    ],
                    None,
                )
                .expect("relabelling y");
        };
        label("x");
        self.wait_for_table("y relabelled ns=x", |table| allows(table, C, A));
        label("y");
        self.wait_for_table("y labelled back", |table| !allows(table, C, A));
        assert_eq!(
            wait_for_events(&self.server, "to-example", 1).len(),
            1,
            "no second Event for the same generation"
        );
    }

    /// (f) The kubectl plugin, found by the real kubectl's plugin lookup,
    /// judges from the live cluster with the user's kubeconfig.
    fn kubectl_plugin_explains_from_the_live_cluster(&self) {
        let plugins = self.server.dir().join("plugins");
        std::fs::create_dir_all(&plugins).expect("a plugin directory");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nftpol"), plugins.join("kubectl-nftpol"))
            .expect("installing kubectl-nftpol");
        let (verdict, text) = plugin_explain(&self.server, &plugins, "y/c", "x/a");
        assert_eq!(verdict, "DENIED", "{text}");
        let (verdict, text) = plugin_explain(&self.server, &plugins, "x/b", "x/a");
        assert_eq!(verdict, "ALLOWED", "{text}");
        assert!(text.contains("x/only-x"), "names the policy: {text}");
    }

    /// (c) The watches survive an API server restart whose etcd was
    /// compacted (every resumed watch is answered 410 Gone, and the agent
    /// relists, as the audit log shows) without a gap: the table is sampled
    /// throughout and deny-y-to-b never lapses; a change made after the
    /// restart is enforced.
    fn watches_survive_a_restart_with_compaction_without_a_gap(&mut self) {
        let lists_before = agent_lists(&self.server);
        // A write after every object the agent saw, so each of its watches
        // resumes from a revision older than the compaction.
        self.server
            .kubectl_ok(
                &["create", "configmap", "-n", "x", "after-last-change"],
                None,
            )
            .expect("a configmap");
        let sampler = Sampler::start(&self.node);
        self.server
            .restart(History::Compacted)
            .expect("restarting the server");
        self.server
            .kubectl_ok(&["delete", "networkpolicy", "-n", "x", "only-x"], None)
            .expect("deleting x/only-x");
        self.wait_for_table("only-x deleted after the restart", |table| {
            allows(table, C, A) && !allows(table, C, B)
        });
        let (samples, gaps) = sampler.finish();
        assert!(samples > 0, "the sampler ran");
        assert!(gaps.is_empty(), "enforcement gaps: {gaps:?}");
        assert!(
            agent_lists(&self.server) > lists_before,
            "the agent relisted after the 410 (audit log); agent log:\n{}",
            self.agent.log_tail()
        );
    }
}

/// The Events on ClusterNetworkPolicy `name`, once at least `count` exist
/// (or after [`PATIENCE`], whatever there is).
fn wait_for_events(server: &ApiServer, name: &str, count: usize) -> Vec<Event> {
    let admin = server.admin_kubeconfig();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = in_namespace(server, &admin, async |client| {
            let api: Api<Event> = Api::all(client);
            api.list(&ListParams::default())
                .await
                .expect("listing events")
                .items
                .into_iter()
                .filter(|event| {
                    event.regarding.as_ref().is_some_and(|object| {
                        object.kind.as_deref() == Some("ClusterNetworkPolicy")
                            && object.name.as_deref() == Some(name)
                    })
                })
                .collect::<Vec<_>>()
        });
        if events.len() >= count || Instant::now() >= deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deploy_and_the_helm_chart_pass_server_side_dry_run() {
    let server = start_server();
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kustomized = server
        .kubectl_ok(
            &[
                "kustomize",
                &repository.join("deploy").display().to_string(),
            ],
            None,
        )
        .expect("kubectl kustomize deploy/");
    let helm = std::env::var_os("HELM").unwrap_or_else(|| "helm".into());
    let rendered = Command::new(helm)
        .args(["template", "nftpol"])
        .arg(repository.join("deploy/helm/nftpol"))
        .args(["--namespace", "nftpol-system"])
        .output()
        .expect("running helm (scripts/test.sh builds it; or set HELM)");
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let rendered = String::from_utf8_lossy(&rendered.stdout).into_owned();
    for (what, manifests) in [
        ("kustomize deploy/", kustomized),
        ("helm template", rendered),
    ] {
        let output = server
            .kubectl_with_input(
                &["apply", "--dry-run=server", "-o", "name", "-f", "-"],
                Some(&manifests),
            )
            .expect("running kubectl");
        assert!(
            output.status.success(),
            "{what}: the server rejected it: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let applied = String::from_utf8_lossy(&output.stdout);
        assert!(
            applied.lines().any(|line| line == "daemonset.apps/nftpol"),
            "{what}: no DaemonSet among {applied}"
        );
    }
}
