//! `nftpol apply` leaves a table that `nft list` prints exactly as it prints
//! `nft -f` of `nftpol render` for the same input, for every scenario in
//! `integration/`. Each side runs in its own throwaway network namespace,
//! removed even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!(
            "nftpol-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("iproute2 is installed");
        assert!(
            status.success(),
            "ip netns add {name} failed: the test needs root"
        );
        Self(name)
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.0, program];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .output()
            .expect("ip netns exec runs")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: a failure here leaves a namespace the suite's final
        // check (`ip netns list`) reports.
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn scenarios() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration");
    let mut files: Vec<PathBuf> = ["scenarios", "examples"]
        .iter()
        .flat_map(|folder| std::fs::read_dir(root.join(folder)).expect("integration folder exists"))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn applied_table_lists_like_the_rendered_text_loaded_by_nft() {
    let binary = env!("CARGO_BIN_EXE_nftpol");
    for file in scenarios() {
        let path = file.to_str().expect("utf-8 path");
        let rendered = ok(
            &Command::new(binary)
                .args(["render", "--manifests", path, "--node", "node-1"])
                .output()
                .expect("runs"),
            "render",
        );
        let text_file = std::env::temp_dir().join(format!(
            "nftpol-{}-{}.nft",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&text_file, &rendered).expect("temp file writable");

        let by_nft = Netns::new();
        ok(
            &by_nft.run("nft", &["-f", text_file.to_str().expect("utf-8 path")]),
            "nft -f",
        );
        let by_nftpol = Netns::new();
        ok(
            &by_nftpol.run(binary, &["apply", "--manifests", path, "--node", "node-1"]),
            "nftpol apply",
        );
        let _ = std::fs::remove_file(&text_file);

        let want = ok(
            &by_nft.run("nft", &["list", "table", "inet", "nftpol"]),
            "nft list",
        );
        let got = ok(
            &by_nftpol.run("nft", &["list", "table", "inet", "nftpol"]),
            "nft list",
        );
        assert_eq!(
            got,
            want,
            "{}: nftpol apply and nft -f of the rendering differ",
            file.display()
        );
        let verified = by_nftpol.run(binary, &["verify", "--manifests", path, "--node", "node-1"]);
        ok(&verified, "nftpol verify");
    }
}
