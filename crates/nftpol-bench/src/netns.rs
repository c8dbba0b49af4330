//! Throwaway network namespaces for kernel measurements.
//!
//! A helper thread `unshare`s a new network namespace and runs the
//! measurement there: the netlink sockets it opens and the `nft` processes it
//! forks live in that namespace, which the kernel frees (with every table in
//! it) when the thread ends. Nothing is named, mounted or left behind, and
//! the root namespace is never touched.

use anyhow::{anyhow, Context as _, Result};

/// Runs `f` on a thread inside a fresh, anonymous network namespace.
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("unshare(CLONE_NEWNET): the kernel benchmarks need root")?;
                f()
            })
            .join()
            .map_err(|_| anyhow!("a measurement thread panicked"))?
    })
}
