//! The lab on the real API server (`--apiserver real`): the scenario's
//! objects are created through kube-apiserver, the lab writes pod status as
//! the kubelet would, and every lab node runs the real `nftpol agent`
//! binary, holding only the ServiceAccount token `deploy/rbac.yaml` grants,
//! against the server. Steps then change the live cluster (see
//! [`crate::steps`]).
//!
//! Objects go in as a deployment's would: the ClusterNetworkPolicy CRD
//! first (always, so a step can add the first CNP), then namespaces with
//! their `default` ServiceAccount, nodes and their status, pods and their
//! status (phase and the addresses the lab gave them), policies. Every
//! write is a server-side apply by field manager `nftpol-lab`, so a step
//! that applies a policy again replaces it as `kubectl apply` would.
//!
//! When has an agent caught up with a change? The agent publishes no
//! resourceVersion, so the lab waits until every agent's
//! `nftpol_reconciles_total` has been still for [`QUIET`] after the last
//! write (the agents react within milliseconds), and, when the step has an
//! expectation, probes again until the results match it or [`PATIENCE`]
//! runs out: what a step expects is reached, or the run says it was not.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use nftpol_model::cluster_policy::api as cnp_api;
use nftpol_model::Cluster;

use crate::apiserver::{self, ApiServer, Tools, AGENT_SERVICE_ACCOUNT, PATIENCE};
use crate::error::LabError;
use crate::netns::RunId;
use crate::plan::Plan;
use crate::steps::{Labelled, Policy, PolicyRef, Step};
use crate::topology::Topology;

/// How long every agent's reconcile count must stay unchanged after a
/// step's writes before the lab probes.
pub const QUIET: Duration = Duration::from_secs(1);
/// The agents' HTTP address inside their node namespaces.
const AGENT_HTTP: &str = "127.0.0.1:9808";
/// The field manager of the lab's writes.
const MANAGER: &str = "nftpol-lab";

/// What `--apiserver real` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveOptions {
    /// The binaries of `scripts/apiserver.sh build`.
    pub tools: Tools,
    /// The `nftpol` binary the nodes run as `nftpol agent`.
    pub agent: PathBuf,
    /// Changes made after the first probes.
    pub steps: Vec<Step>,
}

/// The API server and the agents of a live run; dropping it stops the
/// agents, then the server.
pub struct LiveCluster {
    agents: Vec<Agent>,
    server: ApiServer,
}

/// One `nftpol agent` process in a lab node.
struct Agent {
    node: String,
    /// Index of the node in the topology.
    index: usize,
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log_tail(&self) -> String {
        apiserver::tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn failure(&self, what: impl Into<String>) -> LabError {
        LabError::LiveAgent {
            node: self.node.clone(),
            what: what.into(),
            log: self.log_tail(),
        }
    }

    /// `GET path` on the agent's HTTP port, from inside its node.
    fn get(&self, topology: &Topology, path: &str) -> Result<Option<String>, LabError> {
        topology.node(self.index).run(|| {
            let mut stream = TcpStream::connect(AGENT_HTTP).ok()?;
            let mut answer = String::new();
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .and_then(|()| stream.read_to_string(&mut answer))
                .ok()
                .map(|_| answer)
        })
    }

    /// `nftpol_reconciles_total`, or none while the agent does not answer.
    fn reconciles(&self, topology: &Topology) -> Result<Option<u64>, LabError> {
        Ok(self.get(topology, "/metrics")?.and_then(|page| {
            page.lines()
                .find_map(|line| line.strip_prefix("nftpol_reconciles_total "))
                .and_then(|value| value.trim().parse().ok())
        }))
    }
}

impl Drop for LiveCluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            if let Err(error) = apiserver::terminate(&mut agent.child) {
                tracing::warn!(node = %agent.node, %error, "stopping the agent");
            }
        }
    }
}

impl LiveCluster {
    /// Starts the server, creates the scenario's objects, and starts one
    /// agent per node; returns when every agent is ready (its first
    /// ruleset is in the node's kernel).
    pub fn start(
        options: &LiveOptions,
        cluster: &Cluster,
        plan: &Plan,
        topology: &Topology,
        run: &RunId,
    ) -> Result<Self, LabError> {
        let started = Instant::now();
        let server = ApiServer::start(options.tools.clone(), run)?;
        tracing::info!(
            version = apiserver::kubernetes_version(),
            elapsed_ms = started.elapsed().as_millis(),
            "API server ready"
        );
        server.install_cluster_policy_crd()?;
        populate(&server, cluster)?;
        tracing::info!(
            namespaces = cluster.namespaces.len(),
            pods = cluster.pods.len(),
            policies = cluster.policies.len(),
            cluster_policies = cluster.cluster_policies.len(),
            "scenario objects created through the API server"
        );
        let (namespace, name) = AGENT_SERVICE_ACCOUNT;
        let kubeconfig = server.service_account_kubeconfig(namespace, name)?;
        let mut live = Self {
            agents: Vec::new(),
            server,
        };
        for node in &plan.nodes {
            let netns = topology.node(node.index).name();
            live.server.connect(netns)?;
            let log = live.server.dir().join(format!("agent-{}.log", node.name));
            let file = std::fs::File::create(&log).map_err(|source| LabError::Runtime {
                what: "create an agent log",
                source,
            })?;
            let child = apiserver::command_in(netns, &options.agent)
                .args(["agent", "--node-name", &node.name, "--listen", AGENT_HTTP])
                // The lab reads no verdict lines from live agents.
                .args(["--verdict-log", "off"])
                .env("KUBECONFIG", &kubeconfig)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .map_err(|source| LabError::Runtime {
                    what: "start nftpol agent",
                    source,
                })?;
            live.agents.push(Agent {
                node: node.name.clone(),
                index: node.index,
                child,
                log,
            });
        }
        live.wait_ready(topology)?;
        tracing::info!(
            agents = live.agents.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "every agent enforces its node's first ruleset"
        );
        Ok(live)
    }

    fn wait_ready(&mut self, topology: &Topology) -> Result<(), LabError> {
        let deadline = Instant::now() + PATIENCE;
        for agent in &mut self.agents {
            loop {
                if let Some(status) = agent.child.try_wait().ok().flatten() {
                    return Err(agent.failure(format!("exited ({status})")));
                }
                let ready = agent
                    .get(topology, "/readyz")?
                    .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"));
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(agent.failure(format!("was not ready within {PATIENCE:?}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Makes `step`'s changes through the API server.
    pub fn apply(&self, step: &Step) -> Result<(), LabError> {
        let failed = |what: String, error: kube::Error| LabError::Step {
            step: step.name.clone(),
            reason: format!("{what}: {error}"),
        };
        self.server.admin(async |client| {
            for policy in &step.apply {
                match policy {
                    Policy::Network(policy) => {
                        let id = policy_id(policy);
                        apply_object(&namespaced::<NetworkPolicy>(&client, policy), policy)
                            .await
                            .map_err(|error| {
                                failed(format!("applying NetworkPolicy {id}"), error)
                            })?;
                    }
                    Policy::Cluster(policy) => {
                        let object = dynamic(policy).map_err(|reason| LabError::Step {
                            step: step.name.clone(),
                            reason,
                        })?;
                        let name = object.metadata.name.clone().unwrap_or_default();
                        apply_object(&cluster_policies(&client), &object)
                            .await
                            .map_err(|error| {
                                failed(format!("applying ClusterNetworkPolicy {name}"), error)
                            })?;
                    }
                }
            }
            for change in &step.labels {
                let patch = Patch::Merge(change.merge_patch());
                let params = PatchParams::default();
                let object = &change.object;
                let result = match object {
                    Labelled::Pod { namespace, name } => {
                        Api::<Pod>::namespaced(client.clone(), namespace)
                            .patch(name, &params, &patch)
                            .await
                            .map(drop)
                    }
                    Labelled::Namespace(name) => Api::<Namespace>::all(client.clone())
                        .patch(name, &params, &patch)
                        .await
                        .map(drop),
                    Labelled::Node(name) => Api::<Node>::all(client.clone())
                        .patch(name, &params, &patch)
                        .await
                        .map(drop),
                };
                result.map_err(|error| failed(format!("relabelling {object}"), error))?;
            }
            for object in &step.delete {
                delete(&client, object)
                    .await
                    .map_err(|error| failed(format!("deleting {object}"), error))?;
            }
            Ok(())
        })
    }

    /// Waits until every agent's reconcile count has been still for
    /// [`QUIET`] (see the module doc).
    pub fn settle(&mut self, topology: &Topology) -> Result<(), LabError> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = self.reconcile_counts(topology)?;
        let mut still_since = Instant::now();
        while still_since.elapsed() < QUIET {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.reconcile_counts(topology)?;
            if now != last {
                last = now;
                still_since = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(LabError::Step {
                    step: "settle".to_owned(),
                    reason: format!("the agents kept reconciling for {PATIENCE:?}"),
                });
            }
        }
        Ok(())
    }

    fn reconcile_counts(&mut self, topology: &Topology) -> Result<Vec<Option<u64>>, LabError> {
        let mut counts = Vec::with_capacity(self.agents.len());
        for agent in &mut self.agents {
            if let Some(status) = agent.child.try_wait().ok().flatten() {
                return Err(agent.failure(format!("exited ({status})")));
            }
            counts.push(agent.reconciles(topology)?);
        }
        Ok(counts)
    }
}

fn policy_id(policy: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The API of `object`'s kind in its namespace.
fn namespaced<K>(client: &kube::Client, object: &K) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(
        client.clone(),
        object.meta().namespace.as_deref().unwrap_or("default"),
    )
}

fn cluster_policies(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(cnp_api::GROUP, cnp_api::VERSION, cnp_api::KIND);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, cnp_api::PLURAL),
    )
}

/// A ClusterNetworkPolicy as the dynamic object the API takes.
fn dynamic(policy: &cnp_api::ClusterNetworkPolicy) -> Result<DynamicObject, String> {
    serde_json::to_value(policy)
        .and_then(serde_json::from_value)
        .map_err(|error| format!("encoding a ClusterNetworkPolicy: {error}"))
}

/// Server-side apply of `object` (its name from its metadata).
async fn apply_object<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(drop)
}

/// `object` as a scenario wrote it, without what only a server may set.
fn fresh<K: kube::Resource + Clone>(object: &K) -> K {
    let mut object = object.clone();
    let meta = object.meta_mut();
    meta.resource_version = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.generation = None;
    object
}

/// Creates the scenario's objects (see the module doc).
fn populate(server: &ApiServer, cluster: &Cluster) -> Result<(), LabError> {
    server.admin(async |client| {
        let failed = |what: String, error: kube::Error| LabError::ApiServer {
            what,
            detail: error.to_string(),
        };
        for namespace in &cluster.namespaces {
            let mut namespace = fresh(namespace);
            namespace.status = None;
            let name = namespace.metadata.name.clone().unwrap_or_default();
            apply_object(&Api::<Namespace>::all(client.clone()), &namespace)
                .await
                .map_err(|error| failed(format!("creating Namespace {name}"), error))?;
            let account = ServiceAccount {
                metadata: kube::api::ObjectMeta {
                    name: Some("default".to_owned()),
                    namespace: Some(name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            apply_object(&namespaced(&client, &account), &account)
                .await
                .map_err(|error| {
                    failed(format!("creating ServiceAccount {name}/default"), error)
                })?;
        }
        for node in &cluster.nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut spec = fresh(node);
            spec.status = None;
            let api = Api::<Node>::all(client.clone());
            apply_object(&api, &spec)
                .await
                .map_err(|error| failed(format!("creating Node {name}"), error))?;
            write_status(&api, &name, node)
                .await
                .map_err(|error| failed(format!("writing the status of Node {name}"), error))?;
        }
        for pod in &cluster.pods {
            let id = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            let mut spec = fresh(pod);
            spec.status = None;
            let api = namespaced(&client, pod);
            apply_object(&api, &spec)
                .await
                .map_err(|error| failed(format!("creating Pod {id}"), error))?;
            let name = pod.metadata.name.clone().unwrap_or_default();
            write_status(&api, &name, pod).await.map_err(|error| {
                failed(
                    format!("writing the status of Pod {id} (as its kubelet)"),
                    error,
                )
            })?;
        }
        for policy in &cluster.policies {
            apply_object(&namespaced(&client, policy), &fresh(policy))
                .await
                .map_err(|error| {
                    failed(
                        format!("creating NetworkPolicy {}", policy_id(policy)),
                        error,
                    )
                })?;
        }
        for policy in &cluster.cluster_policies {
            let object = dynamic(policy).map_err(|detail| LabError::ApiServer {
                what: "creating a ClusterNetworkPolicy".to_owned(),
                detail,
            })?;
            let name = object.metadata.name.clone().unwrap_or_default();
            apply_object(&cluster_policies(&client), &fresh(&object))
                .await
                .map_err(|error| failed(format!("creating ClusterNetworkPolicy {name}"), error))?;
        }
        Ok(())
    })
}

/// Writes `object`'s status through the status subresource (a merge patch
/// of the whole status, as its kubelet would report it).
async fn write_status<K>(api: &Api<K>, name: &str, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let value = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    let status = value.get("status").cloned().unwrap_or_default();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map(drop)
}

async fn delete(client: &kube::Client, policy: &PolicyRef) -> Result<(), kube::Error> {
    let params = DeleteParams::default();
    match policy {
        PolicyRef::Network { namespace, name } => {
            Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
                .delete(name, &params)
                .await
                .map(drop)
        }
        PolicyRef::Cluster(name) => cluster_policies(client)
            .delete(name, &params)
            .await
            .map(drop),
    }
}
