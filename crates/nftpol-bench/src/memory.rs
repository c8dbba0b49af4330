//! Measurement 5: the memory of a real `nftpol agent` process at size.
//!
//! In a throwaway network namespace, the generated cluster is loaded into
//! the fake API server (`nftpol-fakeapi`, a test double speaking the real
//! list/watch protocol) with the bulk real Pods carry (annotations, env,
//! conditions, container statuses), and the `nftpol agent` binary is started
//! against it as a child process. Once `/readyz` answers (its first commit is
//! in the namespace's kernel) the child's resident set is read from
//! `/proc/PID/status`, then again after it has settled; `VmHWM` is its peak.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use nftpol_fakeapi::FakeApiServer;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::generate::{self, Shape};
use crate::netns::in_fresh_netns;

/// What measurement 5 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Application pods.
    pub pods: usize,
    /// Policies.
    pub policies: usize,
    /// Objects the fake API server served (all four kinds).
    pub objects: usize,
    /// Mean JSON size of a served Pod, bytes.
    pub pod_json_bytes: usize,
    /// From the agent's start to `/readyz` (lists, model, compile, commit), ms.
    pub ready_ms: f64,
    /// The agent's RSS when it became ready, MiB.
    pub ready_rss_mib: f64,
    /// The agent's RSS after settling, MiB.
    pub settled_rss_mib: f64,
    /// The agent's peak RSS (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Bytes of the batches the agent committed until it was ready (its
    /// first sync): the kernel takes a batch in one `sendmsg`, so the peak
    /// holds all of them at once beside the committed ruleset.
    #[serde(default)]
    pub batch_bytes: usize,
}

/// What one agent run measured.
struct AgentRun {
    ready_ms: f64,
    ready_rss_mib: f64,
    settled_rss_mib: f64,
    peak_rss_mib: f64,
    batch_bytes: usize,
}

/// How long the agent may take to become ready.
const READY_PATIENCE: Duration = Duration::from_mins(10);
/// How long the agent runs after it is ready before it is measured again.
pub const SETTLE: Duration = Duration::from_secs(3);
/// The agent's HTTP port inside the throwaway namespace.
const AGENT_LISTEN: &str = "127.0.0.1:9808";

/// Runs measurement 5 for `shape` with the `nftpol` binary at `agent`.
pub fn run(shape: Shape, agent: &Path) -> Result<MemoryResult> {
    if !agent.is_file() {
        bail!(
            "no nftpol binary at {} (scripts/bench.sh builds it; or pass --agent)",
            agent.display()
        );
    }
    let mut cluster = generate::cluster(shape);
    for pod in &mut cluster.pods {
        add_real_world_bulk(pod)?;
    }
    let pod_json_bytes = serde_json::to_vec(&cluster.pods)
        .map_or(0, |bytes| bytes.len() / cluster.pods.len().max(1));
    let objects = cluster.namespaces.len()
        + cluster.nodes.len()
        + cluster.pods.len()
        + cluster.policies.len();
    in_fresh_netns(|| {
        // `lo` is up: the fake API server listens on 127.0.0.1 in here.
        // One thread: the runtime's threads must stay in this namespace.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let run = runtime.block_on(async {
            let server = FakeApiServer::start().await;
            server.apply_all(&cluster.namespaces);
            server.apply_all(&cluster.nodes);
            server.apply_all(&cluster.pods);
            server.apply_all(&cluster.policies);
            drop(cluster);
            measure_agent(agent, &server.url()).await
        })?;
        Ok(MemoryResult {
            pods: shape.pods,
            policies: shape.policies,
            objects,
            pod_json_bytes,
            ready_ms: run.ready_ms,
            ready_rss_mib: run.ready_rss_mib,
            settled_rss_mib: run.settled_rss_mib,
            peak_rss_mib: run.peak_rss_mib,
            batch_bytes: run.batch_bytes,
        })
    })
}

/// Starts the agent against `url`, waits until it is ready and reads its
/// memory and what it committed.
async fn measure_agent(agent: &Path, url: &str) -> Result<AgentRun> {
    let scratch = Scratch::new()?;
    let kubeconfig = scratch.0.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(url)).context("writing the kubeconfig")?;
    let log_path = scratch.0.join("agent.log");
    let log = std::fs::File::create(&log_path).context("creating the agent's log")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(agent)
        .args([
            "agent",
            "--node-name",
            generate::NODE,
            "--listen",
            AGENT_LISTEN,
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let pid = child.id().context("the agent exited at once")?;
    loop {
        if let Some(status) = child.try_wait().context("polling the agent")? {
            bail!(
                "the agent exited ({status}) before it was ready; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if is_ready().await {
            break;
        }
        if started.elapsed() > READY_PATIENCE {
            bail!("the agent was not ready within {READY_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    let ready_rss = status_mib(pid, "VmRSS")?;
    let batch_bytes = committed_batch_bytes().await?;
    tokio::time::sleep(SETTLE).await;
    let settled_rss = status_mib(pid, "VmRSS")?;
    let peak = status_mib(pid, "VmHWM")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).context("a pid fits i32")?),
        nix::sys::signal::Signal::SIGTERM,
    )
    .context("stopping the agent")?;
    child.wait().await.context("waiting for the agent")?;
    Ok(AgentRun {
        ready_ms,
        ready_rss_mib: ready_rss,
        settled_rss_mib: settled_rss,
        peak_rss_mib: peak,
        batch_bytes,
    })
}

/// `GET path` from the agent's HTTP port: the whole response, or `None`
/// if it does not answer.
async fn get(path: &str) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(AGENT_LISTEN).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    stream.write_all(request.as_bytes()).await.ok()?;
    stream.read_to_end(&mut response).await.ok()?;
    Some(response)
}

/// Whether the agent's `/readyz` answers 200.
async fn is_ready() -> bool {
    get("/readyz")
        .await
        .is_some_and(|response| response.starts_with(b"HTTP/1.1 200"))
}

/// `nftpol_batch_bytes_total` from the agent's `/metrics`.
async fn committed_batch_bytes() -> Result<usize> {
    let response = get("/metrics")
        .await
        .context("the agent's /metrics did not answer")?;
    let text = String::from_utf8_lossy(&response);
    text.lines()
        .find_map(|line| line.strip_prefix("nftpol_batch_bytes_total "))
        .and_then(|value| value.trim().parse().ok())
        .context("no nftpol_batch_bytes_total in the agent's /metrics")
}

/// A `/proc/PID/status` field (kB) in MiB.
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u32 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(f64::from(kib) / 1024.0)
}

fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         users:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n"
    )
}

/// Adds what a real Pod carries and enforcement never reads, so the
/// agent's stripping is part of what is measured.
fn add_real_world_bulk(pod: &mut Pod) -> Result<()> {
    let mut value = serde_json::to_value(&*pod).context("a generated Pod serialises")?;
    value["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(1500),
    });
    value["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true,
    }]);
    let container = value
        .pointer_mut("/spec/containers/0")
        .context("a generated Pod has a container")?;
    container["image"] = json!("registry.example/team/app:1.2.3");
    container["args"] = json!(["--serve", "--port=8080", "--verbose"]);
    container["env"] = (0..10)
        .map(|n| json!({ "name": format!("ENV_{n}"), "value": "some-value" }))
        .collect();
    container["resources"] = json!({ "requests": { "cpu": "100m", "memory": "128Mi" } });
    container["volumeMounts"] = json!([{
        "name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }]);
    value["spec"]["volumes"] = json!([{
        "name": "token", "projected": { "sources": [{ "serviceAccountToken": { "path": "token" } }] },
    }]);
    value["spec"]["tolerations"] = json!([{
        "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
    }]);
    value["status"]["hostIP"] = json!("172.18.0.2");
    value["status"]["conditions"] = ["Ready", "Initialized", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|kind| json!({ "type": kind, "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z" }))
        .collect();
    value["status"]["containerStatuses"] = json!([{
        "name": "app", "ready": true, "restartCount": 0, "image": "registry.example/team/app:1.2.3",
        "imageID": "sha256:0123456789abcdef", "containerID": "containerd://0123456789abcdef",
        "state": { "running": { "startedAt": "2025-01-01T00:00:00Z" } },
    }]);
    *pod = serde_json::from_value(value).context("a Pod with bulk deserialises")?;
    Ok(())
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("nftpol-bench-memory-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover scratch directory is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
