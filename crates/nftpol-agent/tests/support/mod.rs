//! Test support: the fake API server, the agent tests' object presets (on
//! the test kit's builders), a shared fake
//! dataplane and a running agent that tests can wait on.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

pub use nftpol_fakeapi as apiserver;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol_agent::http::Health;
use nftpol_agent::metrics::Metrics;
use nftpol_agent::{Agent, AgentConfig, AgentError, Dataplane, Progress};
use nftpol_ir::diff::Diff;
use nftpol_ir::interpret::{interpret, Packet};
use nftpol_ir::{Hook, Ruleset};
use nftpol_netlink::{Applied, ApplyError, ConntrackError, FakeDataplane, ReadError, RuleCounter};
use nftpol_testkit::fixtures::{self, Tcp};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The node the agent under test enforces for.
pub const NODE: &str = "node-1";
/// Its pod CIDR.
pub const POD_CIDR: &str = "10.244.0.0/16";

/// How long a test waits for a condition before failing with context. Not
/// a timing assertion: conditions are awaited on events, this only stops
/// a broken test from hanging.
const PATIENCE: Duration = Duration::from_mins(1);

/// A namespace with labels.
pub fn namespace(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    fixtures::namespace(name).labels(pairs).build()
}

/// A running pod on `node` with address `ip` and container port 80/TCP
/// named `serve-80-tcp`, with the image and annotation a real one carries
/// (as the kubelet reports it; the agent strips what it does not need).
pub fn pod(namespace: &str, name: &str, node: &str, ip: &str, pairs: &[(&str, &str)]) -> Pod {
    fixtures::pod(namespace, name)
        .labels(pairs)
        .annotation("kubectl.kubernetes.io/last-applied-configuration", "{}")
        .node_name(node)
        .image("registry.k8s.io/e2e-test-images/agnhost:2.53")
        .named_port("serve-80-tcp", 80, Tcp)
        .ip(ip)
        .build()
}

/// A node with pod CIDR `cidr`.
pub fn node(name: &str, cidr: &str) -> Node {
    fixtures::node(name).pod_cidr(cidr).build()
}

/// A NetworkPolicy from its spec in JSON (as a user would write it).
pub fn policy(namespace: &str, name: &str, spec: &serde_json::Value) -> NetworkPolicy {
    fixtures::policy(namespace, name).spec(spec).build()
}

/// Whether a new TCP connection from `source` to `destination:port`,
/// forwarded through this node, passes the ruleset.
pub fn allows(ruleset: &Ruleset, source: &str, destination: &str, port: u16) -> bool {
    let source: IpAddr = source.parse().expect("a test address");
    let destination: IpAddr = destination.parse().expect("a test address");
    interpret(
        ruleset,
        &Packet::opening(Hook::Forward, source, destination, 6, port),
    )
    .expect("the committed IR interprets")
    .accepted
}

/// A [`FakeDataplane`] that the test and the agent share.
#[derive(Clone, Default)]
pub struct SharedDataplane(pub Arc<Mutex<FakeDataplane>>);

impl SharedDataplane {
    /// The fake, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeDataplane> {
        self.0.lock().expect("fake dataplane lock")
    }

    /// The committed table.
    pub fn state(&self) -> Option<Ruleset> {
        self.lock().state().cloned()
    }

    /// The committed table and how many batches built it, read together.
    fn state_and_batches(&self) -> (Option<Ruleset>, usize) {
        let fake = self.lock();
        (fake.state().cloned(), fake.applied_count())
    }
}

impl Dataplane for SharedDataplane {
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError> {
        self.lock().apply(diff)
    }

    fn read(&mut self) -> Result<Option<Ruleset>, ReadError> {
        self.lock().read()
    }

    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError> {
        self.lock().read_counters()
    }

    fn delete_table(&mut self) -> Result<(), ApplyError> {
        self.lock().delete_table()
    }

    fn flush_conntrack_by_mark(&mut self, mark: u32, mask: u32) -> Result<(), ConntrackError> {
        self.lock().flush_conntrack_by_mark(mark, mask)
    }
}

/// The real agent loop, running against a fake API server and a fake dataplane.
pub struct RunningAgent {
    pub dataplane: SharedDataplane,
    pub metrics: Arc<Metrics>,
    pub health: Health,
    progress: watch::Receiver<Progress>,
    /// Batches the shared fake held before this agent started.
    batches_before: usize,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    /// Starts the agent for [`NODE`] with `config` tweaks applied.
    pub fn start(client: kube::Client, dataplane: SharedDataplane) -> Self {
        Self::start_with(client, dataplane, AgentConfig::new(NODE))
    }

    /// Starts the agent with a given configuration.
    pub fn start_with(
        client: kube::Client,
        dataplane: SharedDataplane,
        config: AgentConfig,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let health = Health::default();
        let agent = Agent::new(
            config,
            dataplane.clone(),
            Arc::clone(&metrics),
            health.clone(),
        );
        let progress = agent.progress();
        let batches_before = dataplane.lock().applied_count();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(client, async {
            // A dropped sender stops the agent too.
            let _ = stopped.await;
        }));
        Self {
            dataplane,
            metrics,
            health,
            progress,
            batches_before,
            stop: Some(stop),
            task,
        }
    }

    /// The progress right now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until `condition` holds for the progress.
    pub async fn wait_progress(
        &mut self,
        what: &str,
        condition: impl Fn(&Progress) -> bool,
    ) -> Progress {
        let waited = tokio::time::timeout(
            PATIENCE,
            self.progress.wait_for(|progress| condition(progress)),
        )
        .await
        .map(|result| result.map(|progress| progress.clone()));
        match waited {
            Ok(Ok(progress)) => progress,
            Ok(Err(closed)) => panic!("agent stopped while waiting for: {what} ({closed})"),
            Err(elapsed) => panic!(
                "never happened ({elapsed}): {what}; progress: {:?}",
                self.progress.borrow()
            ),
        }
    }

    /// Waits, reconcile by reconcile, until the committed table satisfies
    /// `condition` and the reconcile that committed it has finished (its
    /// metrics and readiness recorded); returns the table.
    pub async fn wait_until(
        &mut self,
        what: &str,
        condition: impl Fn(&Ruleset) -> bool,
    ) -> Ruleset {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Progress first: a batch it counts is at least as old as the state read next.
            let finished = usize::try_from(self.progress.borrow_and_update().batches)
                .expect("batch count fits usize");
            let (state, batches) = self.dataplane.state_and_batches();
            let settled = finished >= batches - self.batches_before;
            if let Some(state) = state.filter(|state| settled && condition(state)) {
                return state;
            }
            match tokio::time::timeout_at(deadline, self.progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(closed)) => panic!("agent stopped while waiting for: {what} ({closed})"),
                Err(elapsed) => panic!(
                    "never happened ({elapsed}): {what}; progress: {:?}",
                    self.progress.borrow()
                ),
            }
        }
    }

    /// Stops the agent as SIGTERM would and returns how it ended.
    pub async fn stop(mut self) -> Result<(), AgentError> {
        if let Some(stop) = self.stop.take() {
            // The agent may already have ended; its result says how.
            let _ = stop.send(());
        }
        self.task.await.expect("agent task joins")
    }
}

/// Waits until the server's request counters satisfy `condition`.
pub async fn wait_requests(
    server: &apiserver::FakeApiServer,
    what: &str,
    condition: impl Fn(&apiserver::Requests) -> bool,
) -> apiserver::Requests {
    let mut requests = server.requests();
    let waited = tokio::time::timeout(PATIENCE, requests.wait_for(|seen| condition(seen)))
        .await
        .map(|result| result.map(|seen| *seen));
    match waited {
        Ok(Ok(seen)) => seen,
        Ok(Err(closed)) => panic!("fake API server gone while waiting for: {what} ({closed})"),
        Err(elapsed) => panic!(
            "never happened ({elapsed}): {what}; requests: {:?}",
            *requests.borrow()
        ),
    }
}
