//! A real Kubernetes API server for tests: etcd and the genuine
//! kube-apiserver (`integration/apiserver`, one process) inside a network
//! namespace of the test's own, with TLS, ServiceAccount tokens, RBAC, the
//! watch cache, CRDs and server-side validation — everything the fake API
//! server does not have.
//!
//! [`ApiServer::start`] writes a fresh PKI (the binary's `certs` command: a
//! CA, a serving certificate for [`ADDRESS`] and 127.0.0.1, the
//! ServiceAccount signing key), a static admin token (group
//! `system:masters`) and an audit policy that records every request of the
//! agent's ServiceAccount; starts the process in its [`Netns`]; waits for
//! `/readyz`; and bootstraps what a controller manager would otherwise do:
//! the `default` ServiceAccount of each namespace pods go into
//! ([`ApiServer::create_namespace`]), pod status ([`ApiServer::set_pod_running`],
//! as a kubelet). `kubectl` (same release) runs inside the namespace as
//! admin. [`ApiServer::connect`] links another test namespace (a node) to
//! the server's by a veth pair; nothing listens in, or connects to, the
//! root namespace.
//!
//! Dropping the guard kills the process, removes its directory, and (the
//! [`Netns`] it owns) the namespace, also while a failed assertion unwinds.
//!
//! The binaries come from `scripts/apiserver.sh build`, which keeps them in
//! `target/tools/kubernetes-<version>/` (the version pinned in
//! `integration/apiserver/go.mod`); `NFTPOL_KUBE_TOOLS` overrides the
//! directory. Without them the test fails and says how to build them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::Netns;

/// The API server's address in its namespace, as agents reach it (TEST-NET-1,
/// RFC 5737: never routed anywhere, so it cannot mean a real host).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// kube-apiserver's secure port.
pub const PORT: u16 = 6443;
/// The agent's ServiceAccount in `deploy/rbac.yaml`.
pub const AGENT_SERVICE_ACCOUNT: (&str, &str) = ("nftpol-system", "nftpol");
/// How long a start, a stop or a wait may take before the test fails with
/// context: not a timing assertion, only a bound on a broken test's hang.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Why a `write!` into a `String` is expected to succeed.
const INFALLIBLE: &str = "writing to a String cannot fail";

/// The repository root (this crate is `crates/nftpol-testkit`).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binaries and the CRD manifest `scripts/apiserver.sh build` made.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Their directory.
    pub dir: PathBuf,
}

impl Tools {
    /// Finds them: `NFTPOL_KUBE_TOOLS`, else `target/tools/kubernetes-<version>`.
    ///
    /// # Panics
    /// When they are missing, saying how to build them.
    pub fn find() -> Self {
        let dir = std::env::var_os("NFTPOL_KUBE_TOOLS").map_or_else(
            || {
                repository()
                    .join("target/tools")
                    .join(format!("kubernetes-{}", kubernetes_version()))
            },
            PathBuf::from,
        );
        let tools = Self { dir };
        for path in [tools.apiserver(), tools.kubectl(), tools.crd()] {
            assert!(
                path.exists(),
                "{} is missing: run `scripts/apiserver.sh build` (needs Go) or set NFTPOL_KUBE_TOOLS",
                path.display()
            );
        }
        tools
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

/// The Kubernetes version pinned in `integration/apiserver/go.mod`.
///
/// # Panics
/// When the file has no `k8s.io/kubernetes` requirement.
pub fn kubernetes_version() -> String {
    let path = repository().join("integration/apiserver/go.mod");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    text.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes"))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no k8s.io/kubernetes line in {}", path.display()))
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

/// A running etcd + kube-apiserver in a namespace of its own; see the
/// module doc.
#[derive(Debug)]
pub struct ApiServer {
    tools: Tools,
    /// Certificates, etcd data, kubeconfigs, logs.
    dir: PathBuf,
    child: Option<Child>,
    /// How many nodes [`ApiServer::connect`] linked so far.
    links: AtomicUsize,
    /// Declared last: dropped after the process is gone.
    netns: Netns,
}

impl ApiServer {
    /// Starts a fresh cluster and waits until it is ready; see the module
    /// doc.
    ///
    /// # Panics
    /// When the tools are missing, or the server does not get ready, with
    /// its log.
    pub fn start() -> Self {
        let tools = Tools::find();
        let netns = Netns::new();
        let dir = std::env::temp_dir().join(netns.name());
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        let mut server = Self {
            tools,
            dir,
            child: None,
            links: AtomicUsize::new(0),
            netns,
        };
        server.write_config();
        server.launch(History::Kept);
        server.wait_ready();
        server.apply_file(&repository().join("deploy/namespace.yaml"));
        server.apply_file(&repository().join("deploy/rbac.yaml"));
        server
    }

    /// The namespace the server listens in.
    pub fn netns(&self) -> &Netns {
        &self.netns
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

    fn write_config(&self) {
        let pki = self.dir.join("pki");
        let status = Command::new(self.tools.apiserver())
            .args(["certs".as_ref(), pki.as_os_str()])
            .args([ADDRESS.to_string(), Ipv4Addr::LOCALHOST.to_string()])
            .status()
            .expect("running nftpol-apiserver certs");
        assert!(status.success(), "nftpol-apiserver certs failed");
        let token = random_token();
        write(
            &self.dir.join("tokens.csv"),
            &format!("{token},admin,admin,\"system:masters\"\n"),
        );
        let (namespace, name) = AGENT_SERVICE_ACCOUNT;
        write(
            &self.dir.join("audit-policy.yaml"),
            &format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
                 - level: Metadata\n  users: [\"system:serviceaccount:{namespace}:{name}\"]\n\
                 - level: None\n"
            ),
        );
        write(
            &self.admin_kubeconfig(),
            &self.kubeconfig(Ipv4Addr::LOCALHOST, &token),
        );
    }

    /// A kubeconfig for `server` with a bearer `token`.
    fn kubeconfig(&self, server: Ipv4Addr, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    \
             server: https://{server}:{PORT}\n    certificate-authority: {ca}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: test}}\n\
             current-context: test\nusers:\n- name: test\n  user:\n    token: {token}\n",
            ca = self.ca().display()
        )
    }

    fn launch(&mut self, history: History) {
        let dir = self.dir.display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        let mut command = self
            .netns
            .command(&self.tools.apiserver().display().to_string());
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
            .stdout(log.try_clone().expect("duplicating the log file"))
            .stderr(log)
            .spawn()
            .expect("starting nftpol-apiserver");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("apiserver.log")
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The audit log: one JSON event per request of the agent's
    /// ServiceAccount.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let output = self.kubectl(&["get", "--raw", "/readyz"]);
            if output.status.success() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("the API server exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "the API server was not ready within {PATIENCE:?}: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server gracefully (SIGTERM, as a kubelet stops a static
    /// pod) and waits for it to exit; etcd's data stays.
    ///
    /// # Panics
    /// When it does not exit in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"));
        // An error means it already exited, which the wait below shows.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if child
                .try_wait()
                .expect("waiting for the API server")
                .is_some()
            {
                return;
            }
            if Instant::now() >= deadline {
                // Reaping it is best effort: the test fails either way.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the API server did not stop within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same data, certificates and tokens, and waits
    /// until it is ready.
    pub fn restart(&mut self, history: History) {
        self.stop();
        self.launch(history);
        self.wait_ready();
    }

    /// `kubectl ARGS` as admin inside the server's namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl ARGS` as admin, with `input` on stdin.
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut command = self
            .netns
            .command(&self.tools.kubectl().display().to_string());
        command
            .arg(format!(
                "--kubeconfig={}",
                self.admin_kubeconfig().display()
            ))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_with_input(command, input)
    }

    /// `kubectl ARGS` as admin, which must succeed; its stdout.
    ///
    /// # Panics
    /// When it fails, with its stderr.
    pub fn kubectl_ok(&self, args: &[&str], input: Option<&str>) -> String {
        let output = self.kubectl_with_input(args, input);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `manifests`.
    pub fn apply(&self, manifests: &str) {
        self.kubectl_ok(&["apply", "-f", "-"], Some(manifests));
    }

    /// `kubectl apply -f PATH`.
    pub fn apply_file(&self, path: &Path) {
        self.kubectl_ok(&["apply", "-f", &path.display().to_string()], None);
    }

    /// Installs the ClusterNetworkPolicy CRD and waits until it is served.
    pub fn install_cluster_policy_crd(&self) {
        self.apply_file(&self.tools.crd());
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/clusternetworkpolicies.policy.networking.k8s.io",
            ],
            None,
        );
    }

    /// Creates a namespace with `labels` and its `default` ServiceAccount
    /// (the ServiceAccount admission plugin rejects pods without it, and
    /// no controller manager runs here to make it).
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
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
        self.apply(&text);
    }

    /// Reports pod `namespace/name` Running with `ip`, as its kubelet would.
    pub fn set_pod_running(&self, namespace: &str, name: &str, ip: &str) {
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
        );
    }

    /// A kubeconfig (a file in [`ApiServer::dir`]) holding a fresh token of
    /// ServiceAccount `namespace/name` (TokenRequest), for a client in a
    /// namespace [`ApiServer::connect`] linked.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(
            &["create", "token", "-n", namespace, name, "--duration=2h"],
            None,
        );
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        write(&path, &self.kubeconfig(ADDRESS, token.trim()));
        path
    }

    /// The same kubeconfig with the server's loopback address, for a client
    /// inside the server's own namespace.
    ///
    /// # Panics
    /// When kubectl cannot mint the token or a file cannot be written.
    pub fn service_account_kubeconfig_local(&self, namespace: &str, name: &str) -> PathBuf {
        let remote = self.service_account_kubeconfig(namespace, name);
        let text = std::fs::read_to_string(&remote).expect("the kubeconfig just written");
        let path = self
            .dir
            .join(format!("{namespace}-{name}.local.kubeconfig"));
        write(
            &path,
            &text.replace(
                &format!("https://{ADDRESS}:"),
                &format!("https://{}:", Ipv4Addr::LOCALHOST),
            ),
        );
        path
    }

    /// Links `node` to the server's namespace by a veth pair: the node gets
    /// `192.0.2.<10+k>/32` on `apiserver0` and a route to [`ADDRESS`]; it
    /// returns the node's address.
    ///
    /// # Panics
    /// When `ip` fails.
    pub fn connect(&self, node: &Netns) -> Ipv4Addr {
        let index = self.links.fetch_add(1, Ordering::Relaxed);
        let host = u8::try_from(10 + index).expect("fewer than 245 linked nodes");
        let address = Ipv4Addr::new(192, 0, 2, host);
        let server_side = format!("node{index}");
        let server = self.netns.name();
        let node_name = node.name();
        if index == 0 {
            ip(&[
                "-n",
                server,
                "addr",
                "add",
                &format!("{ADDRESS}/32"),
                "dev",
                "lo",
            ]);
        }
        ip(&[
            "-n",
            server,
            "link",
            "add",
            &server_side,
            "type",
            "veth",
            "peer",
            "name",
            "apiserver0",
            "netns",
            node_name,
        ]);
        ip(&["-n", server, "link", "set", &server_side, "up"]);
        ip(&["-n", node_name, "link", "set", "apiserver0", "up"]);
        ip(&[
            "-n",
            node_name,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "apiserver0",
        ]);
        ip(&[
            "-n",
            node_name,
            "route",
            "add",
            &format!("{ADDRESS}/32"),
            "dev",
            "apiserver0",
        ]);
        ip(&[
            "-n",
            server,
            "route",
            "add",
            &format!("{address}/32"),
            "dev",
            &server_side,
        ]);
        address
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // No panic while unwinding: kill and reap, best effort (a
            // process that already exited makes both fail harmlessly).
            let _ = child.kill();
            let _ = child.wait();
        }
        // Best effort: a leftover in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_with_input(mut command: Command, input: Option<&str>) -> Output {
    use std::io::Write as _;
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command.spawn().expect("starting kubectl");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin
            .write_all(text.as_bytes())
            .expect("writing kubectl's input");
    }
    child.wait_with_output().expect("waiting for kubectl")
}

/// 32 random hex digits from the kernel's random source.
fn random_token() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().fold(String::new(), |mut text, byte| {
        write!(text, "{byte:02x}").expect(INFALLIBLE);
        text
    })
}
