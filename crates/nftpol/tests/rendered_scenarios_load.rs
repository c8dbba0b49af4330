//! `nft -c -f` accepts the rendered ruleset of every scenario in
//! `integration/`, for each of two nodes. The check runs in a throwaway
//! network namespace (the test kit's `nft::check`, `unshare --net`), never
//! against the host's ruleset.

use std::path::{Path, PathBuf};

use nftpol_ruleset::compile::{compile, CompileOptions};
use nftpol_testkit::nft;

fn scenario_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration");
    let mut files = Vec::new();
    for folder in ["scenarios", "examples"] {
        for entry in std::fs::read_dir(root.join(folder)).expect("integration folder exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn nft_accepts_every_rendered_scenario() {
    let files = scenario_files();
    assert!(
        files.len() >= 30,
        "expected the integration scenarios, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable scenario");
        let parsed = nftpol_model::manifests::parse(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        for node in ["node-1", "node-2"] {
            let ruleset = compile(
                &nftpol_model::resolve(&parsed.cluster, node),
                CompileOptions::default(),
            )
            .ruleset;
            let rendered = nftpol_ir::render::render(&ruleset);
            if let Err(error) = nft::check(&rendered) {
                panic!(
                    "{} on {node}: nft rejects the rendering:\n{error}\n{rendered}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn nft_check_rejects_a_broken_ruleset() {
    let broken = "table inet nftpol { chain c { ip saddr @missing accept } }\n";
    assert!(matches!(
        nft::check(broken),
        Err(nft::NftCheck::Rejected(_))
    ));
}
