//! `nftpol apply` leaves a table that `nft list` prints exactly as it prints
//! `nft -f` of `nftpol render` for the same input, for every scenario in
//! `integration/`. Each side runs in its own throwaway network namespace
//! (the test kit's guard), removed even when the test fails.
//!
//! nft 1.0.6 cannot load the verdict log's original-destination record
//! rules (a dynset key over 16 bytes trips an assertion in its register
//! allocation; see `nftpol-netlink`'s `rule.rs`): nft loads the rendering
//! without them, and must list them, from the table nftpol applied,
//! exactly as they are rendered.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use nftpol_testkit::netns::Netns;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether a line of a rendering or listing is a record rule.
fn is_record(line: &str) -> bool {
    line.contains(" update @dnat-origins-")
}

/// `program ARGS` inside `netns`.
fn exec(netns: &Netns, program: &str, args: &[&str]) -> Output {
    netns
        .command(program)
        .args(args)
        .output()
        .expect("ip netns exec runs")
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
        let (records, loadable): (Vec<&str>, Vec<&str>) =
            rendered.lines().partition(|line| is_record(line));
        std::fs::write(&text_file, loadable.join("\n")).expect("temp file writable");

        let by_nft = Netns::new();
        ok(
            &exec(
                &by_nft,
                "nft",
                &["-f", text_file.to_str().expect("utf-8 path")],
            ),
            "nft -f",
        );
        let by_nftpol = Netns::new();
        ok(
            &exec(
                &by_nftpol,
                binary,
                &["apply", "--manifests", path, "--node", "node-1"],
            ),
            "nftpol apply",
        );
        let _ = std::fs::remove_file(&text_file);

        let want = ok(
            &exec(&by_nft, "nft", &["list", "table", "inet", "nftpol"]),
            "nft list",
        );
        let got = ok(
            &exec(&by_nftpol, "nft", &["list", "table", "inet", "nftpol"]),
            "nft list",
        );
        let (listed, rest): (Vec<&str>, Vec<&str>) = got.lines().partition(|line| is_record(line));
        assert_eq!(
            rest,
            want.lines().collect::<Vec<_>>(),
            "{}: nftpol apply and nft -f of the rendering differ",
            file.display()
        );
        assert!(!records.is_empty(), "{}: record rules", file.display());
        assert_eq!(
            listed.iter().map(|line| line.trim()).collect::<Vec<_>>(),
            records.iter().map(|line| line.trim()).collect::<Vec<_>>(),
            "{}: nft lists the record rules as rendered",
            file.display()
        );
        let verified = exec(
            &by_nftpol,
            binary,
            &["verify", "--manifests", path, "--node", "node-1"],
        );
        ok(&verified, "nftpol verify");
    }
}
