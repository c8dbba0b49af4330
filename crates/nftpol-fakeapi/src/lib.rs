//! A fake Kubernetes API server — a TEST DOUBLE, not an API server.
//!
//! It speaks just enough of the list/watch protocol for kube-runtime's
//! watcher, over plain HTTP on 127.0.0.1, for the kinds the agent reads:
//! Pods, Namespaces, NetworkPolicies, Nodes (all cluster-wide, Nodes also
//! with a `metadata.name=` field selector) and ClusterNetworkPolicies
//! (`policy.networking.k8s.io/v1alpha2`, with the group's discovery
//! document, while its CRD counts as installed).
//!
//! - Every object and list carries `metadata.resourceVersion` from one
//!   global counter; every object carries `kind` and `apiVersion`.
//! - Lists honour `limit` and `continue` (a consistent snapshot per list).
//! - Watches replay the change log after the requested resourceVersion,
//!   then stream live events; `send_bookmarks` sends BOOKMARKs.
//! - Test controls: `expire` (410 Gone on every open watch, and for any
//!   watch from an older resourceVersion), `disconnect` (closes every watch
//!   stream), `stop`/`start` (an API server restart: open connections are
//!   reset, new ones refused, the stored objects survive as in etcd),
//!   `fail_lists` (one kind's lists return 500), `install_cluster_policy_crd`
//!   (the ClusterNetworkPolicy CRD absent: its discovery and resource paths
//!   answer 404, as a real API server without the CRD does).
//! - It applies the defaults the real API server applies (see
//!   `shared/notes/kube-watch.md`): the namespace name label, NetworkPolicy
//!   `policyTypes` and port `protocol`, empty lists dropped, Pod phase
//!   Pending, container port protocol TCP.
//!
//! Not implemented: authentication, other verbs, label selectors,
//! `timeoutSeconds`, streaming lists (the agent uses list-then-watch).
//!
//! Used by the agent's and the lab's tests and by the memory benchmark,
//! which runs the real `nftpol agent` against it. Misuse panics, as a test
//! assertion would.
#![expect(
    clippy::missing_panics_doc,
    reason = "a test double: it panics on misuse, as a test assertion would"
)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The kinds served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/api/v1/pods`.
    Pod,
    /// `/api/v1/namespaces`.
    Namespace,
    /// `/apis/networking.k8s.io/v1/networkpolicies`.
    NetworkPolicy,
    /// `/api/v1/nodes`.
    Node,
    /// `/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies`.
    ClusterNetworkPolicy,
}

/// The discovery path of the ClusterNetworkPolicy group version.
const CLUSTER_POLICY_DISCOVERY: &str = "/apis/policy.networking.k8s.io/v1alpha2";

impl Kind {
    /// Every kind served.
    pub const ALL: [Kind; 5] = [
        Kind::Pod,
        Kind::Namespace,
        Kind::NetworkPolicy,
        Kind::Node,
        Kind::ClusterNetworkPolicy,
    ];

    fn path(self) -> &'static str {
        match self {
            Kind::Pod => "/api/v1/pods",
            Kind::Namespace => "/api/v1/namespaces",
            Kind::NetworkPolicy => "/apis/networking.k8s.io/v1/networkpolicies",
            Kind::Node => "/api/v1/nodes",
            Kind::ClusterNetworkPolicy => {
                "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Namespace => "Namespace",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Node => "Node",
            Kind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::ClusterNetworkPolicy => "policy.networking.k8s.io/v1alpha2",
            Kind::Pod | Kind::Namespace | Kind::Node => "v1",
        }
    }

    fn is_namespaced(self) -> bool {
        matches!(self, Kind::Pod | Kind::NetworkPolicy)
    }

    fn of(object: &Value) -> Kind {
        match object["kind"].as_str() {
            Some("Pod") => Kind::Pod,
            Some("Namespace") => Kind::Namespace,
            Some("NetworkPolicy") => Kind::NetworkPolicy,
            Some("Node") => Kind::Node,
            Some("ClusterNetworkPolicy") => Kind::ClusterNetworkPolicy,
            other => panic!("the fake API server does not serve kind {other:?}"),
        }
    }
}

/// Request counters, for tests that assert relists and re-watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// List requests (pages included) by kind.
    pub lists: [u64; 5],
    /// Watch requests by kind.
    pub watches: [u64; 5],
    /// Requests refused with an error.
    pub errors: u64,
}

impl Requests {
    fn index(kind: Kind) -> usize {
        match kind {
            Kind::Pod => 0,
            Kind::Namespace => 1,
            Kind::NetworkPolicy => 2,
            Kind::Node => 3,
            Kind::ClusterNetworkPolicy => 4,
        }
    }

    /// First-page list requests for `kind`.
    pub fn lists_of(&self, kind: Kind) -> u64 {
        self.lists[Self::index(kind)]
    }

    /// Watch requests for `kind`.
    pub fn watches_of(&self, kind: Kind) -> u64 {
        self.watches[Self::index(kind)]
    }
}

struct Watcher {
    kind: Kind,
    name: Option<String>,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Etcd {
    revision: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    log: Vec<(u64, Kind, &'static str, Value)>,
    watchers: Vec<Watcher>,
    snapshots: HashMap<String, (u64, Vec<Value>)>,
    next_snapshot: u64,
    failing: Vec<Kind>,
    /// Whether the ClusterNetworkPolicy CRD counts as absent.
    without_cluster_policy_crd: bool,
}

struct Shared {
    etcd: Mutex<Etcd>,
    requests: watch::Sender<Requests>,
    /// Bumped by `stop`: connections of an older epoch fail.
    epoch: Arc<AtomicU64>,
}

/// The fake API server. See the module doc.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    server: Option<JoinHandle<()>>,
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object }))
        .expect("a JSON value serialises");
    line.push(b'\n');
    Bytes::from(line)
}

fn gone() -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version",
        "reason": "Expired",
        "code": 410
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                if let Ok(value) = u8::from_str_radix(hex, 16) {
                    out.push(value);
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Recursively drops empty arrays (Go's `omitempty` on slices).
fn drop_empty_lists(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, field| !matches!(field, Value::Array(items) if items.is_empty()));
            map.values_mut().for_each(drop_empty_lists);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_lists),
        _ => {}
    }
}

fn default_port_protocols(ports: &mut Value) {
    if let Value::Array(ports) = ports {
        for port in ports {
            if port.get("protocol").is_none() {
                port["protocol"] = json!("TCP");
            }
        }
    }
}

/// The API server's defaulting for `object` of `kind`.
fn apply_defaults(kind: Kind, object: &mut Value) {
    match kind {
        Kind::Namespace => {
            let name = object["metadata"]["name"].clone();
            if object["metadata"].get("labels").is_none() {
                object["metadata"]["labels"] = json!({});
            }
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        }
        Kind::NetworkPolicy => {
            let spec = &mut object["spec"];
            if spec.get("policyTypes").is_none() {
                let has_egress = spec["egress"]
                    .as_array()
                    .is_some_and(|rules| !rules.is_empty());
                spec["policyTypes"] = if has_egress {
                    json!(["Ingress", "Egress"])
                } else {
                    json!(["Ingress"])
                };
            }
            for direction in ["ingress", "egress"] {
                if let Some(Value::Array(rules)) = spec.get_mut(direction) {
                    for rule in rules {
                        if let Some(ports) = rule.get_mut("ports") {
                            default_port_protocols(ports);
                        }
                    }
                }
            }
            drop_empty_lists(spec);
        }
        Kind::Pod => {
            if object.get("status").is_none() {
                object["status"] = json!({});
            }
            if object["status"].get("phase").is_none() {
                object["status"]["phase"] = json!("Pending");
            }
            for containers in ["containers", "initContainers"] {
                if let Some(Value::Array(list)) = object["spec"].get_mut(containers) {
                    for container in list {
                        if let Some(ports) = container.get_mut("ports") {
                            default_port_protocols(ports);
                        }
                    }
                }
            }
        }
        Kind::Node | Kind::ClusterNetworkPolicy => {}
    }
}

impl Etcd {
    fn key(kind: Kind, object: &Value) -> (Kind, String, String) {
        let namespace = if kind.is_namespaced() {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("objects have names")
            .to_owned();
        (kind, namespace, name)
    }

    fn publish(&mut self, kind: Kind, event: &'static str, object: &Value) {
        self.log.push((self.revision, kind, event, object.clone()));
        let name = object["metadata"]["name"].as_str().map(str::to_owned);
        let line = event_line(event, object);
        self.watchers.retain(|watcher| {
            if watcher.kind != kind || (watcher.name.is_some() && watcher.name != name) {
                return true;
            }
            watcher.events.send(line.clone()).is_ok()
        });
    }

    fn put(&mut self, mut object: Value) {
        let kind = Kind::of(&object);
        object["apiVersion"] = json!(kind.api_version());
        if kind.is_namespaced() && object["metadata"].get("namespace").is_none() {
            object["metadata"]["namespace"] = json!("default");
        }
        apply_defaults(kind, &mut object);
        let key = Self::key(kind, &object);
        self.revision += 1;
        let previous = self.objects.get(&key);
        let uid = previous
            .and_then(|previous| previous["metadata"].get("uid").cloned())
            .unwrap_or_else(|| json!(format!("uid-{}", self.revision)));
        let event = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        object["metadata"]["uid"] = uid;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        self.objects.insert(key, object.clone());
        self.publish(kind, event, &object);
    }

    fn remove(&mut self, kind: Kind, namespace: &str, name: &str) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        if let Some(mut object) = self.objects.remove(&key) {
            self.revision += 1;
            object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            self.publish(kind, "DELETED", &object);
        }
    }

    fn list(&mut self, kind: Kind, params: &HashMap<String, String>) -> Value {
        let name = field_name(params);
        let continued = params
            .get("continue")
            .filter(|token| !token.is_empty())
            .map(|token| {
                // Tokens come only from this server, and each is used once.
                let snapshot = self
                    .snapshots
                    .remove(token)
                    .expect("a continue token this server issued");
                (snapshot.0, snapshot.1, token.clone())
            });
        let (revision, mut items, token) = if let Some(continued) = continued {
            continued
        } else {
            let items: Vec<Value> = self
                .objects
                .iter()
                .filter(|((object_kind, _, object_name), _)| {
                    *object_kind == kind && name.as_ref().is_none_or(|name| name == object_name)
                })
                .map(|(_, object)| object.clone())
                .collect();
            self.next_snapshot += 1;
            (
                self.revision,
                items,
                format!("snapshot-{}", self.next_snapshot),
            )
        };
        let limit = params
            .get("limit")
            .and_then(|limit| limit.parse::<usize>().ok())
            .filter(|limit| *limit > 0)
            .unwrap_or(usize::MAX);
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if items.len() > limit {
            let rest = items.split_off(limit);
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(rest.len());
            self.snapshots.insert(token, (revision, rest));
        }
        json!({
            "kind": format!("{}List", kind.name()),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": items,
        })
    }
}

fn field_name(params: &HashMap<String, String>) -> Option<String> {
    params
        .get("fieldSelector")
        .and_then(|selector| selector.strip_prefix("metadata.name="))
        .map(str::to_owned)
}

/// The discovery document of the ClusterNetworkPolicy group version.
fn cluster_policy_discovery() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "policy.networking.k8s.io/v1alpha2",
        "resources": [{
            "name": "clusternetworkpolicies",
            "singularName": "clusternetworkpolicy",
            "namespaced": false,
            "kind": "ClusterNetworkPolicy",
            "shortNames": ["cnp"],
            "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        }],
    })
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let without_crd = shared
        .etcd
        .lock()
        .expect("fake etcd lock")
        .without_cluster_policy_crd;
    if uri.path() == CLUSTER_POLICY_DISCOVERY && !without_crd {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            cluster_policy_discovery().to_string(),
        )
            .into_response();
    }
    let Some(kind) = Kind::ALL
        .into_iter()
        .find(|kind| kind.path() == uri.path())
        .filter(|kind| !(without_crd && *kind == Kind::ClusterNetworkPolicy))
    else {
        return (StatusCode::NOT_FOUND, "not served by the fake").into_response();
    };
    let params = query(&uri);
    let watching = params
        .get("watch")
        .is_some_and(|value| value == "true" || value == "1");
    let mut etcd = shared.etcd.lock().expect("fake etcd lock");
    if !watching && etcd.failing.contains(&kind) {
        shared.requests.send_modify(|requests| requests.errors += 1);
        drop(etcd);
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected list failure").into_response();
    }
    if !watching {
        if params.get("continue").is_none_or(String::is_empty) {
            shared
                .requests
                .send_modify(|requests| requests.lists[Requests::index(kind)] += 1);
        }
        let body = etcd.list(kind, &params);
        drop(etcd);
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    shared
        .requests
        .send_modify(|requests| requests.watches[Requests::index(kind)] += 1);
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(etcd.revision);
    let name = field_name(&params);
    let (sender, mut receiver) = mpsc::unbounded_channel();
    if from < etcd.compacted {
        // The receiver still gets the event; the stream then ends.
        let _ = sender.send(event_line("ERROR", &gone()));
    } else {
        for (revision, event_kind, event, object) in &etcd.log {
            let matches_name =
                name.is_none() || object["metadata"]["name"].as_str() == name.as_deref();
            if *revision > from && *event_kind == kind && matches_name {
                let _ = sender.send(event_line(event, object));
            }
        }
        etcd.watchers.push(Watcher {
            kind,
            name,
            events: sender,
        });
    }
    drop(etcd);
    let stream = futures::stream::poll_fn(move |context| {
        receiver
            .poll_recv(context)
            .map(|line| line.map(Ok::<Bytes, Infallible>))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A TCP stream that fails once the server's epoch moves on (a restart).
struct Connection {
    stream: TcpStream,
    epoch: u64,
    current: Arc<AtomicU64>,
}

impl Connection {
    fn check(&self) -> io::Result<()> {
        if self.current.load(Ordering::Acquire) == self.epoch {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake API server restarted",
            ))
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

struct Listener {
    listener: TcpListener,
    epoch: Arc<AtomicU64>,
}

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            if let Ok((stream, address)) = self.listener.accept().await {
                let epoch = self.epoch.load(Ordering::Acquire);
                return (
                    Connection {
                        stream,
                        epoch,
                        current: Arc::clone(&self.epoch),
                    },
                    address,
                );
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl FakeApiServer {
    /// Starts the server on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the server on `address`.
    pub async fn start_on(address: &str) -> Self {
        let listener = TcpListener::bind(address)
            .await
            .expect("bind the fake API server");
        let address = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared {
            etcd: Mutex::new(Etcd::default()),
            requests: watch::Sender::new(Requests::default()),
            epoch: Arc::new(AtomicU64::new(0)),
        });
        let mut server = Self {
            shared,
            address,
            server: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&self.shared));
        let listener = Listener {
            listener,
            epoch: Arc::clone(&self.shared.epoch),
        };
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake API server serves");
        }));
    }

    fn etcd(&self) -> MutexGuard<'_, Etcd> {
        self.shared.etcd.lock().expect("fake etcd lock")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kube client for this server (no auth, plain HTTP).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("a valid URL"));
        kube::Client::try_from(config).expect("a client for the fake API server")
    }

    /// Creates or replaces an object (any of the four kinds), applying defaults.
    pub fn apply<K: serde::Serialize + kube::Resource<DynamicType = ()>>(&self, object: &K) {
        let mut value = serde_json::to_value(object).expect("k8s-openapi objects serialise");
        value["kind"] = json!(<K as kube::Resource>::kind(&()));
        self.etcd().put(value);
    }

    /// Creates or replaces many objects under one lock.
    pub fn apply_all<K: serde::Serialize + kube::Resource<DynamicType = ()>>(&self, objects: &[K]) {
        let mut etcd = self.etcd();
        for object in objects {
            let mut value = serde_json::to_value(object).expect("k8s-openapi objects serialise");
            value["kind"] = json!(<K as kube::Resource>::kind(&()));
            etcd.put(value);
        }
    }

    /// Deletes an object; `namespace` is ignored for cluster-scoped kinds.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let namespace = if kind.is_namespaced() { namespace } else { "" };
        self.etcd().remove(kind, namespace, name);
    }

    /// Sends a BOOKMARK at the current resourceVersion on every open watch.
    pub fn send_bookmarks(&self) {
        let mut etcd = self.etcd();
        let revision = etcd.revision.to_string();
        etcd.watchers.retain(|watcher| {
            let bookmark = json!({
                "kind": watcher.kind.name(),
                "apiVersion": watcher.kind.api_version(),
                "metadata": { "resourceVersion": revision },
            });
            watcher
                .events
                .send(event_line("BOOKMARK", &bookmark))
                .is_ok()
        });
    }

    /// Compacts the history: every open watch gets a 410 Gone and ends, and
    /// any watch from an older resourceVersion gets one too, forcing a relist.
    pub fn expire(&self) {
        let mut etcd = self.etcd();
        etcd.compacted = etcd.revision;
        etcd.log.clear();
        for watcher in etcd.watchers.drain(..) {
            let _ = watcher.events.send(event_line("ERROR", &gone()));
        }
    }

    /// Ends every open watch stream cleanly (the client re-watches from its
    /// last resourceVersion).
    pub fn disconnect(&self) {
        self.etcd().watchers.clear();
    }

    /// Stops the server: open connections are reset, new ones refused.
    pub async fn stop(&mut self) {
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        self.disconnect();
        if let Some(server) = self.server.take() {
            server.abort();
            // The abort error is the expected outcome of aborting.
            let _ = server.await;
        }
    }

    /// Starts the server again on the same port, with the same objects.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }

    /// Makes list requests for `kind` fail with 500 (or succeed again).
    pub fn fail_lists(&self, kind: Kind, failing: bool) {
        let mut etcd = self.etcd();
        etcd.failing.retain(|other| *other != kind);
        if failing {
            etcd.failing.push(kind);
        }
    }

    /// Installs (or removes) the ClusterNetworkPolicy CRD. Without it the
    /// group's discovery and resource paths answer 404 and its open watches
    /// end; the stored objects stay, as they would not on a real server
    /// (deleting a CRD deletes its objects), which tests do not rely on.
    pub fn install_cluster_policy_crd(&self, installed: bool) {
        let mut etcd = self.etcd();
        etcd.without_cluster_policy_crd = !installed;
        if !installed {
            etcd.watchers
                .retain(|watcher| watcher.kind != Kind::ClusterNetworkPolicy);
        }
    }

    /// Follows the request counters.
    pub fn requests(&self) -> watch::Receiver<Requests> {
        self.shared.requests.subscribe()
    }
}
