//! Kernel tests: each in a fresh network namespace (see `common`).

mod common;

use common::{fixture, in_fresh_netns, run};
use nftpol_netlink::{Dataplane, KernelDataplane};
use nftpol_ruleset::diff::diff;

#[test]
fn applied_fixture_reads_back_equal() {
    in_fresh_netns(|| {
        let ir = fixture();
        let mut kernel = KernelDataplane::open().expect("open");
        kernel.probe_features().expect("probe");
        assert_eq!(kernel.read().expect("read"), None);
        let applied = kernel.apply(&diff(None, &ir)).expect("apply");
        assert!(applied.messages > 10, "{applied:?}");
        let back = kernel.read().expect("read").expect("table present");
        assert_eq!(back, ir);
        println!("{}", run("nft", &["list", "table", "inet", "nftpol"], None));
    });
}
