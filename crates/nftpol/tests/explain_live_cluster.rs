//! `nftpol explain` without `--manifests` judges the live cluster, read
//! through KUBECONFIG, and says exactly what it says for the same objects
//! as manifests; installed as `kubectl-nftpol` (the kubectl plugin) it is
//! the same command. The API server is the fake one (a test double).

use std::path::{Path, PathBuf};
use std::process::Output;

use nftpol_fakeapi::FakeApiServer;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integration/examples/seed-role-db.yaml"
);

/// Connections of the seed example (the docs' `test-network-policy` isolates
/// `role=db` both ways): ingress from `project=myproject` namespaces and
/// `role=frontend` pods on 6379 is allowed, another port is not, and db's
/// egress reaches only 10.0.0.0/24 on 5978.
const PROBES: [(&str, &str, &str); 4] = [
    ("myproject/client", "default/db", "6379/TCP"),
    ("default/frontend", "default/db", "6379/TCP"),
    ("default/frontend", "default/db", "80/TCP"),
    ("default/db", "myproject/client", "5978/TCP"),
];

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         users:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n"
    )
}

fn explain(
    program: &Path,
    kubeconfig: Option<&Path>,
    extra: &[&str],
    probe: (&str, &str, &str),
) -> Output {
    let (from, to, port) = probe;
    let mut command = std::process::Command::new(program);
    command
        .args(["explain", "--from", from, "--to", to, "--port", port])
        .args(extra)
        .env_remove("KUBECONFIG");
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.output().expect("running nftpol")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_live_cluster_as_it_reads_manifests() {
    let text = std::fs::read_to_string(SEED).expect("the seed example");
    let cluster = nftpol_model::manifests::parse(&text)
        .expect("the seed example parses")
        .cluster;
    let server = FakeApiServer::start().await;
    server.apply_all(&cluster.namespaces);
    server.apply_all(&cluster.pods);
    server.apply_all(&cluster.policies);

    let scratch =
        Scratch(std::env::temp_dir().join(format!("nftpol-explain-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).expect("a scratch directory");
    let config = scratch.0.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&server.url())).expect("writing the kubeconfig");
    let nftpol = PathBuf::from(env!("CARGO_BIN_EXE_nftpol"));
    let plugin = scratch.0.join("kubectl-nftpol");
    std::os::unix::fs::symlink(&nftpol, &plugin).expect("installing the plugin name");

    let outputs = tokio::task::spawn_blocking(move || {
        PROBES.map(|probe| {
            let from_files = stdout(&explain(&nftpol, None, &["--manifests", SEED], probe));
            let live = stdout(&explain(&nftpol, Some(&config), &[], probe));
            let plugin = stdout(&explain(&plugin, Some(&config), &[], probe));
            (from_files, live, plugin)
        })
    })
    .await
    .expect("the explain runs");
    for ((from_files, live, plugin), probe) in outputs.iter().zip(PROBES) {
        assert_eq!(live, from_files, "{probe:?}: live cluster vs manifests");
        assert_eq!(plugin, from_files, "{probe:?}: kubectl-nftpol vs nftpol");
    }
    let verdicts: Vec<&str> = outputs
        .iter()
        .map(|(text, _, _)| text.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(verdicts, ["ALLOWED", "ALLOWED", "DENIED", "DENIED"]);
    assert!(
        outputs[0]
            .0
            .contains("allowed by default/test-network-policy"),
        "{}",
        outputs[0].0
    );
}

#[test]
fn explain_without_an_api_server_says_where_it_looked() {
    let output = explain(
        Path::new(env!("CARGO_BIN_EXE_nftpol")),
        Some(Path::new("/nonexistent/kubeconfig")),
        &[],
        PROBES[0],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KUBECONFIG"), "{stderr}");
}
