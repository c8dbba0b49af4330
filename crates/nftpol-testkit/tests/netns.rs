//! The namespace guard: a unique name, `lo` up inside, the root namespace
//! untouched, and removal on drop, also when the test body panics.

use std::process::Command;

use nftpol_testkit::netns::{self, Netns, Sweep, PREFIX};

fn lo_is_up() -> bool {
    let output = Command::new("ip")
        .args(["-o", "link", "show", "lo"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&output.stdout).contains(",UP")
}

fn current_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").expect("the thread's netns")
}

#[test]
fn a_namespace_is_unique_has_lo_up_and_is_removed_on_drop() {
    let first = Netns::new();
    let second = Netns::new();
    assert_ne!(first.name(), second.name());
    assert!(first.name().starts_with(PREFIX));
    assert!(first.path().exists());
    let outside = current_netns();
    let (inside, lo_up) = first.run(|| (current_netns(), lo_is_up()));
    assert_ne!(inside, outside, "the body runs in the new namespace");
    assert_eq!(
        current_netns(),
        outside,
        "the caller's thread stays where it was"
    );
    assert!(lo_up, "lo is up in the new namespace");
    let name = first.name().to_owned();
    drop(first);
    assert_eq!(netns::list(&name), Vec::<String>::new());
    let name = second.name().to_owned();
    drop(second);
    assert_eq!(netns::list(&name), Vec::<String>::new());
}

#[test]
fn a_panicking_body_still_removes_the_namespace() {
    let mut name = String::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let netns = Netns::new();
        name = netns.name().to_owned();
        netns.run(|| panic!("a failing assertion"));
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    assert!(!name.is_empty());
    assert_eq!(netns::list(&name), Vec::<String>::new());
}

#[test]
fn a_sweep_removes_namespaces_made_behind_its_back() {
    let netns = Netns::new();
    let made = netns.name().to_owned();
    // The guard is forgotten, as the code under test would forget its own.
    std::mem::forget(netns);
    {
        let sweep = Sweep::new(made.clone());
        assert_eq!(sweep.present(), vec![made.clone()]);
    }
    assert_eq!(netns::list(&made), Vec::<String>::new());
}
