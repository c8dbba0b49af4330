//! A real Kubernetes API server for the lab and the tests: etcd and the
//! genuine kube-apiserver (`integration/apiserver`, one process) inside a
//! lab network namespace of its own, with TLS, ServiceAccount tokens, RBAC,
//! the watch cache, CRDs and server-side validation.
//!
//! [`ApiServer::start`] writes a fresh PKI (the binary's `certs` command: a
//! CA, a serving certificate for [`ADDRESS`] and 127.0.0.1, the
//! ServiceAccount signing key), a static admin token (group
//! `system:masters`) and an audit policy that records every request of the
//! agent's ServiceAccount; starts the process in its namespace; waits for
//! `/readyz`; and applies `deploy/namespace.yaml` and `deploy/rbac.yaml`
//! (embedded at build time, so the lab grants exactly what a deployment
//! grants). There is no controller manager: [`ApiServer::create_namespace`]
//! makes a namespace's `default` ServiceAccount, and pod status is written
//! as a kubelet would ([`ApiServer::set_pod_running`]). `kubectl` (same
//! release) and [`ApiServer::admin`] clients run inside the server's
//! namespace; [`ApiServer::connect`] links a node namespace to it by a veth
//! pair. Nothing listens in, or connects to, the root namespace.
//!
//! Processes are started through `ip netns exec` and `setpriv --pdeathsig
//! KILL`: they run in their namespace and die with the lab, even when it is
//! killed. Dropping the guard kills the server, removes its directory and
//! its namespace.
//!
//! The binaries come from `scripts/apiserver.sh build`, which keeps them in
//! `target/tools/kubernetes-<version>/` (the version pinned in
//! `integration/apiserver/go.mod`); see [`Tools::locate`].

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::LabError;
use crate::netns::{Netns, RunId};

/// The API server's address in its namespace, as agents reach it (TEST-NET-1,
/// RFC 5737: never routed anywhere, so it cannot mean a real host).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// kube-apiserver's secure port.
pub const PORT: u16 = 6443;
/// The agent's ServiceAccount in `deploy/rbac.yaml`.
pub const AGENT_SERVICE_ACCOUNT: (&str, &str) = ("nftpol-system", "nftpol");
/// How long a start, a stop or a wait may take before it fails with
/// context: a bound on a broken run's hang, not a performance target.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// `integration/apiserver/go.mod`: the one place the version is pinned.
const GO_MOD: &str = include_str!("../../../integration/apiserver/go.mod");
/// What a deployment creates before the agent runs.
const DEPLOY_NAMESPACE: &str = include_str!("../../../deploy/namespace.yaml");
const DEPLOY_RBAC: &str = include_str!("../../../deploy/rbac.yaml");

/// Why a `write!` into a `String` is expected to succeed.
const INFALLIBLE: &str = "writing to a String cannot fail";

/// The Kubernetes version pinned in `integration/apiserver/go.mod`.
pub fn kubernetes_version() -> &'static str {
    GO_MOD
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes"))
                .then(|| words.next())
                .flatten()
        })
        .unwrap_or("unknown")
}

/// The binaries and the CRD manifest `scripts/apiserver.sh build` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// Their directory.
    pub dir: PathBuf,
}

impl Tools {
    /// Finds them: `explicit`, else `NFTPOL_KUBE_TOOLS`, else
    /// `tools/kubernetes-<version>` in the cargo target directory `program`
    /// (the `nftpol` binary, `target/<profile>/nftpol`) was built in.
    pub fn locate(explicit: Option<&Path>, program: &Path) -> Result<Self, LabError> {
        let dir = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("NFTPOL_KUBE_TOOLS").map(PathBuf::from))
            .unwrap_or_else(|| {
                program
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or_else(|| Path::new("target"))
                    .join("tools")
                    .join(format!("kubernetes-{}", kubernetes_version()))
            });
        let tools = Self { dir };
        for path in [tools.apiserver(), tools.kubectl(), tools.crd()] {
            if !path.exists() {
                return Err(LabError::KubeTools { path });
            }
        }
        Ok(tools)
    }

    /// etcd + kube-apiserver in one binary.
    pub fn apiserver(&self) -> PathBuf {
        self.dir.join("nftpol-apiserver")
    }

    /// kubectl of the same release.
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }

    /// The ClusterNetworkPolicy CRD (network-policy-api, experimental channel).
    pub fn crd(&self) -> PathBuf {
        self.dir.join("clusternetworkpolicies.yaml")
    }
}

/// How the next start treats etcd's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Kept: a watch resumes from its last resourceVersion.
    Kept,
    /// Compacted to the current revision first: every resourceVersion seen
    /// before is gone, so resumed watches get 410 Gone and relist.
    Compacted,
}

/// `program ARGS` inside namespace `netns`, killed when the process that
/// spawned it exits (the lab's main thread: it outlives every child).
pub fn command_in(netns: &str, program: &Path) -> Command {
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            netns,
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
        ])
        .arg(program);
    command
}

/// A running etcd + kube-apiserver in a namespace of its own; see the
/// module doc.
#[derive(Debug)]
pub struct ApiServer {
    tools: Tools,
    /// Certificates, etcd data, kubeconfigs, logs.
    dir: PathBuf,
    child: Option<Child>,
    /// How many nodes [`ApiServer::connect`] linked so far.
    links: u8,
    /// Removed on drop, after the process is gone.
    netns: Option<Netns>,
}

impl ApiServer {
    /// Starts a fresh cluster in namespace `<run>-apiserver` and waits until
    /// it is ready; see the module doc.
    pub fn start(tools: Tools, run: &RunId) -> Result<Self, LabError> {
        let netns = Netns::create(&run.netns_name("apiserver"))?;
        let dir = std::env::temp_dir().join(netns.name());
        let mut server = Self {
            tools,
            dir,
            child: None,
            links: 0,
            netns: Some(netns),
        };
        std::fs::create_dir_all(&server.dir)
            .map_err(|error| failure("create its directory", error))?;
        // etcd and the server talk over loopback, which a new namespace has down.
        ip(&["-n", server.netns_name(), "link", "set", "lo", "up"])?;
        server.write_config()?;
        server.launch(History::Kept)?;
        server.wait_ready()?;
        server.apply(DEPLOY_NAMESPACE)?;
        server.apply(DEPLOY_RBAC)?;
        Ok(server)
    }

    /// The name of the namespace the server listens in.
    pub fn netns_name(&self) -> &str {
        self.netns.as_ref().map_or("", Netns::name)
    }

    /// Runs `body` on a thread inside the server's namespace.
    pub fn run_inside<T: Send>(&self, body: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        match &self.netns {
            Some(netns) => netns.run(body),
            None => Err(LabError::Interrupted),
        }
    }

    /// The tools it runs.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Its working directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// An admin kubeconfig, for clients inside the server's namespace.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    fn write_config(&self) -> Result<(), LabError> {
        let pki = self.dir.join("pki");
        let output = Command::new(self.tools.apiserver())
            .args(["certs".as_ref(), pki.as_os_str()])
            .args([ADDRESS.to_string(), Ipv4Addr::LOCALHOST.to_string()])
            .output()
            .map_err(|error| failure("run `nftpol-apiserver certs`", error))?;
        if !output.status.success() {
            return Err(failure(
                "run `nftpol-apiserver certs`",
                String::from_utf8_lossy(&output.stderr),
            ));
        }
        let token = random_token().map_err(|error| failure("read /dev/urandom", error))?;
        write_file(
            &self.dir.join("tokens.csv"),
            &format!("{token},admin,admin,\"system:masters\"\n"),
        )?;
        let (namespace, name) = AGENT_SERVICE_ACCOUNT;
        write_file(
            &self.dir.join("audit-policy.yaml"),
            &format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
                 - level: Metadata\n  users: [\"system:serviceaccount:{namespace}:{name}\"]\n\
                 - level: None\n"
            ),
        )?;
        write_file(
            &self.admin_kubeconfig(),
            &self.kubeconfig(Ipv4Addr::LOCALHOST, &token),
        )
    }

    /// A kubeconfig for `server` with a bearer `token`.
    fn kubeconfig(&self, server: Ipv4Addr, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    \
             server: https://{server}:{PORT}\n    certificate-authority: {ca}\n\
             contexts:\n- name: lab\n  context: {{cluster: lab, user: lab}}\n\
             current-context: lab\nusers:\n- name: lab\n  user:\n    token: {token}\n",
            ca = self.ca().display()
        )
    }

    fn launch(&mut self, history: History) -> Result<(), LabError> {
        let dir = self.dir.display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|error| failure("open its log", error))?;
        let stderr = log
            .try_clone()
            .map_err(|error| failure("open its log", error))?;
        let mut command = command_in(self.netns_name(), &self.tools.apiserver());
        command.args(["serve", "--etcd-dir", &format!("{dir}/etcd")]);
        if history == History::Compacted {
            command.arg("--compact-on-start");
        }
        command.arg("--").args([
            format!("--advertise-address={ADDRESS}"),
            "--bind-address=0.0.0.0".to_owned(),
            format!("--secure-port={PORT}"),
            "--etcd-servers=http://127.0.0.1:2379".to_owned(),
            format!("--tls-cert-file={dir}/pki/server.crt"),
            format!("--tls-private-key-file={dir}/pki/server.key"),
            format!("--token-auth-file={dir}/tokens.csv"),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={dir}/pki/sa.key"),
            format!("--service-account-signing-key-file={dir}/pki/sa.key"),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            format!("--audit-policy-file={dir}/audit-policy.yaml"),
            format!("--audit-log-path={dir}/audit.log"),
            // With watches open, shutdown otherwise waits > 10 s for them.
            "--shutdown-watch-termination-grace-period=1s".to_owned(),
            format!("--cert-dir={dir}/generated"),
            "--profiling=false".to_owned(),
        ]);
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|error| failure("start nftpol-apiserver", error))?;
        self.child = Some(child);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("apiserver.log")
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    /// The audit log: one JSON event per request of the agent's
    /// ServiceAccount.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn wait_ready(&mut self) -> Result<(), LabError> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let output = self.kubectl(&["get", "--raw", "/readyz"])?;
            if output.status.success() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                return Err(failure(
                    "start",
                    format!("it exited ({status}):\n{}", self.log_tail()),
                ));
            }
            if Instant::now() > deadline {
                return Err(failure(
                    "get ready",
                    format!(
                        "not ready within {PATIENCE:?}: {}\n{}",
                        String::from_utf8_lossy(&output.stderr),
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server gracefully (SIGTERM, as a kubelet stops a static
    /// pod) and waits for it to exit; etcd's data stays.
    pub fn stop(&mut self) -> Result<(), LabError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        terminate(&mut child).map_err(|error| failure("stop", error))
    }

    /// Starts it again on the same data, certificates and tokens, and waits
    /// until it is ready.
    pub fn restart(&mut self, history: History) -> Result<(), LabError> {
        self.stop()?;
        self.launch(history)?;
        self.wait_ready()
    }

    /// `kubectl ARGS` as admin inside the server's namespace.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output, LabError> {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl ARGS` as admin, with `input` on stdin.
    pub fn kubectl_with_input(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, LabError> {
        let mut command = command_in(self.netns_name(), &self.tools.kubectl());
        command
            .arg(format!(
                "--kubeconfig={}",
                self.admin_kubeconfig().display()
            ))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_with_input(command, input).map_err(|error| failure("run kubectl", error))
    }

    /// `kubectl ARGS` as admin, which must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str], input: Option<&str>) -> Result<String, LabError> {
        let output = self.kubectl_with_input(args, input)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(failure(
                &format!("kubectl {}", args.join(" ")),
                String::from_utf8_lossy(&output.stderr).trim(),
            ))
        }
    }

    /// `kubectl apply -f -` of `manifests`.
    pub fn apply(&self, manifests: &str) -> Result<(), LabError> {
        self.kubectl_ok(&["apply", "-f", "-"], Some(manifests))
            .map(drop)
    }

    /// `kubectl apply -f PATH`.
    pub fn apply_file(&self, path: &Path) -> Result<(), LabError> {
        self.kubectl_ok(&["apply", "-f", &path.display().to_string()], None)
            .map(drop)
    }

    /// Installs the ClusterNetworkPolicy CRD and waits until it is served.
    ///
    /// Polled rather than `kubectl wait --for=condition=Established`: that
    /// fails at once ("accessor error") when it reads the CRD before the
    /// server has written any condition.
    pub fn install_cluster_policy_crd(&self) -> Result<(), LabError> {
        self.apply_file(&self.tools.crd())?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            // The whole object, not a jsonpath filter: right after the
            // create, `status.conditions` is still null, which kubectl's
            // filter reports as an error rather than as no match.
            let crd = self.kubectl_ok(
                &[
                    "get",
                    "crd/clusternetworkpolicies.policy.networking.k8s.io",
                    "-o",
                    "json",
                ],
                None,
            )?;
            let crd: serde_json::Value = serde_json::from_str(&crd)
                .map_err(|error| failure("read the ClusterNetworkPolicy CRD", error.to_string()))?;
            let established = crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|condition| {
                    condition["type"] == "Established" && condition["status"] == "True"
                });
            if established {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failure(
                    "install the ClusterNetworkPolicy CRD",
                    format!("not Established within {PATIENCE:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a namespace with `labels` and its `default` ServiceAccount
    /// (the ServiceAccount admission plugin rejects pods without it, and
    /// no controller manager runs here to make it).
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), LabError> {
        let mut text =
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{name}\"\n  labels:\n");
        for (key, value) in labels {
            writeln!(text, "    \"{key}\": \"{value}\"").expect(INFALLIBLE);
        }
        write!(
            text,
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: default, namespace: \"{name}\"}}\n"
        )
        .expect(INFALLIBLE);
        self.apply(&text)
    }

    /// Reports pod `namespace/name` Running with `ip`, as its kubelet would.
    pub fn set_pod_running(&self, namespace: &str, name: &str, ip: &str) -> Result<(), LabError> {
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#
        );
        self.kubectl_ok(
            &[
                "patch",
                "pod",
                "-n",
                namespace,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        )
        .map(drop)
    }

    /// A kubeconfig (a file in [`ApiServer::dir`]) holding a fresh token of
    /// ServiceAccount `namespace/name` (TokenRequest), for a client in a
    /// namespace [`ApiServer::connect`] linked.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, LabError> {
        self.service_account_kubeconfig_at(namespace, name, ADDRESS, "")
    }

    /// The same kubeconfig with the server's loopback address, for a client
    /// inside the server's own namespace.
    pub fn service_account_kubeconfig_local(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, LabError> {
        self.service_account_kubeconfig_at(namespace, name, Ipv4Addr::LOCALHOST, ".local")
    }

    fn service_account_kubeconfig_at(
        &self,
        namespace: &str,
        name: &str,
        server: Ipv4Addr,
        suffix: &str,
    ) -> Result<PathBuf, LabError> {
        let token = self.kubectl_ok(
            &["create", "token", "-n", namespace, name, "--duration=2h"],
            None,
        )?;
        let path = self
            .dir
            .join(format!("{namespace}-{name}{suffix}.kubeconfig"));
        write_file(&path, &self.kubeconfig(server, token.trim()))?;
        Ok(path)
    }

    /// Runs `body` with an admin client, on a runtime of its own inside the
    /// server's namespace (the client's sockets live there).
    pub fn admin<T: Send>(
        &self,
        body: impl AsyncFnOnce(kube::Client) -> Result<T, LabError> + Send,
    ) -> Result<T, LabError> {
        let kubeconfig = self.admin_kubeconfig();
        self.run_inside(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| LabError::Runtime {
                    what: "start the API client's runtime",
                    source,
                })?;
            runtime.block_on(async {
                let client = admin_client(&kubeconfig)
                    .await
                    .map_err(|error| failure("connect as admin", error))?;
                body(client).await
            })
        })?
    }

    /// Links node namespace `node` to the server's by a veth pair: the node
    /// gets `192.0.2.<10+k>/32` on `apiserver0` and a route to [`ADDRESS`];
    /// returns the node's address.
    pub fn connect(&mut self, node: &str) -> Result<Ipv4Addr, LabError> {
        let index = self.links;
        let host = index
            .checked_add(10)
            .filter(|host| *host < 255)
            .ok_or_else(|| failure("link a node", "more than 244 linked nodes"))?;
        self.links += 1;
        let address = Ipv4Addr::new(192, 0, 2, host);
        let server_side = format!("node{index}");
        let server = self.netns_name().to_owned();
        let mut steps: Vec<Vec<String>> = Vec::new();
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        if index == 0 {
            steps.push(words(&format!("-n {server} addr add {ADDRESS}/32 dev lo")));
        }
        steps.push(words(&format!(
            "-n {server} link add {server_side} type veth peer name apiserver0 netns {node}"
        )));
        steps.push(words(&format!("-n {server} link set {server_side} up")));
        steps.push(words(&format!("-n {node} link set apiserver0 up")));
        steps.push(words(&format!(
            "-n {node} addr add {address}/32 dev apiserver0"
        )));
        steps.push(words(&format!(
            "-n {node} route add {ADDRESS}/32 dev apiserver0"
        )));
        steps.push(words(&format!(
            "-n {server} route add {address}/32 dev {server_side}"
        )));
        for args in steps {
            ip(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(address)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort while tearing down: a process that already exited
            // makes both fail harmlessly.
            let _ = child.kill();
            let _ = child.wait();
        }
        // A leftover in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(netns) = self.netns.take() {
            if let Err(error) = netns.remove() {
                tracing::warn!(%error, "removing the API server's namespace; run `nftpol lab cleanup`");
            }
        }
    }
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) -> Result<(), LabError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| failure("run ip", error))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failure(
            &format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&output.stderr).trim(),
        ))
    }
}

/// Writes one of the server's files.
fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|error| failure(&format!("write {}", path.display()), error))
}

/// An error of the server's `what`.
fn failure(what: &str, detail: impl std::fmt::Display) -> LabError {
    LabError::ApiServer {
        what: what.to_owned(),
        detail: detail.to_string(),
    }
}

/// A kube client from the admin kubeconfig at `path`.
async fn admin_client(path: &Path) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| error.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    kube::Client::try_from(config).map_err(|error| error.to_string())
}

/// SIGTERM, then up to [`PATIENCE`] for the exit, then SIGKILL.
pub fn terminate(child: &mut Child) -> std::io::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        // An error means it already exited, which the wait below shows.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Err(std::io::Error::other(format!(
                "it did not stop within {PATIENCE:?} of SIGTERM; killed"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The last 30 lines of `text`.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn run_with_input(mut command: Command, input: Option<&str>) -> std::io::Result<Output> {
    use std::io::Write as _;
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command.spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    child.wait_with_output()
}

/// 32 random hex digits from the kernel's random source.
fn random_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut text, byte| {
        write!(text, "{byte:02x}").expect(INFALLIBLE);
        text
    }))
}
