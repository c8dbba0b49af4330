//! Throwaway network namespaces for kernel measurements: the test kit's
//! guard (`nftpol_testkit::netns`, a normal dependency of this binary), its
//! failure reported as the benchmark's error.
//!
//! A helper thread enters a fresh named namespace (with `lo` up) and runs
//! the measurement there: the netlink sockets it opens and the `nft`
//! processes it forks live in that namespace, which is removed afterwards,
//! also when the measurement fails or panics. The root namespace is never
//! touched.

use anyhow::{Context as _, Result};
use nftpol_testkit::netns::Netns;

/// Runs `f` on a thread inside a fresh network namespace.
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    Netns::create()
        .context("a network namespace for the kernel measurements")?
        .run(f)
}
