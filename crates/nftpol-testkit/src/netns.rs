//! Throwaway network namespaces: the one guard every kernel test (and the
//! benchmark) runs in, and a sweep for namespaces made by code under test.
//!
//! [`Netns::new`] makes `/run/netns/nftpol-test-<run>-<n>` with `ip netns
//! add` (a unique name: the run id is the pid and a random word, `n` a
//! process-wide counter), brings `lo` up in it, and removes it on drop, also
//! while a failed assertion unwinds. Code enters it per thread
//! ([`Netns::run`]: `setns(CLONE_NEWNET)` on a scoped thread, so the netlink
//! sockets and the `nft` processes that thread opens live there and the rest
//! of the process stays where it was); a binary runs in it through
//! [`Netns::command`] (`ip netns exec`). The namespace is named, not
//! anonymous, so `ip netns list` shows a leftover of a killed test and
//! programs run under `ip netns exec` can share it with the test.
//!
//! Nothing here touches the root namespace: creation, `lo` and every command
//! target the new namespace by name.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use nix::sched::{setns, CloneFlags};

/// Where named network namespaces live (shared with iproute2).
pub const NETNS_DIR: &str = "/run/netns";
/// Every namespace this kit makes starts with this.
pub const PREFIX: &str = "nftpol-test-";

/// Why a namespace could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    #[error("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run this as root")]
    NotRoot,
    /// `ip` could not be started (iproute2 missing?).
    #[error("`ip {args}` could not run (install iproute2)")]
    Spawn {
        /// The arguments given to `ip`.
        args: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// `ip` ran and failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// The arguments given to `ip`.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering the namespace from a thread failed.
    #[error("entering network namespace {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

/// This process's run id: `<pid>-<random>`, so names never collide between
/// runs, also when a pid is reused.
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        format!("{}-{:04x}", std::process::id(), hasher.finish() & 0xffff)
    })
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let shown = args.join(" ");
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| NetnsError::Spawn {
            args: shown.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip {
            args: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Removes the named namespace `name` (`ip netns del`).
pub fn remove(name: &str) -> Result<(), NetnsError> {
    ip(&["netns", "del", name])
}

/// The names in `/run/netns` that start with `prefix`, sorted.
pub fn list(prefix: &str) -> Vec<String> {
    // No directory yet: no namespace was ever named on this machine.
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// A fresh named network namespace with `lo` up, removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes a namespace for a test.
    ///
    /// # Panics
    /// When it cannot be made, first of all when not run as root, with a
    /// message saying so.
    #[track_caller]
    pub fn new() -> Self {
        // A `match`, not a closure: the panic then names the test's line.
        match Self::create() {
            Ok(netns) => netns,
            Err(error) => panic!("{error}"),
        }
    }

    /// Makes a namespace, reporting failure as an error (for binaries such
    /// as the benchmark).
    pub fn create() -> Result<Self, NetnsError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        if !nix::unistd::geteuid().is_root() {
            return Err(NetnsError::NotRoot);
        }
        let name = format!(
            "{PREFIX}{}-{}",
            run_id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        // From here on, dropping the guard removes the namespace.
        let netns = Self { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name (as `ip netns` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file under `/run/netns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Runs `body` on a thread inside this namespace and returns its value;
    /// a panic in `body` is resumed in the caller (and this guard, still
    /// owned by the caller, then removes the namespace).
    ///
    /// # Panics
    /// When the thread cannot enter the namespace, or when `body` panics.
    pub fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(self.name.clone())
                .spawn_scoped(scope, || {
                    self.enter().unwrap_or_else(|error| panic!("{error}"));
                    body()
                })
                .expect("spawning the namespace thread");
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Moves the calling thread into this namespace (for threads the caller
    /// owns, such as a runtime's; other threads are not affected).
    pub fn enter(&self) -> Result<(), NetnsError> {
        let fail = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let file = File::open(self.path()).map_err(fail)?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| fail(errno.into()))
    }

    /// `program` run inside this namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        if let Err(error) = remove(&self.name) {
            // stderr is the test's log; `ip netns list` shows the leftover.
            eprintln!("could not remove network namespace {}: {error}", self.name);
        }
    }
}

/// Runs `body` on a thread inside a fresh namespace that is removed
/// afterwards, panic or not.
///
/// # Panics
/// Like [`Netns::new`] and [`Netns::run`].
#[track_caller]
pub fn in_fresh_netns<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    Netns::new().run(body)
}

/// Removes, on drop, every namespace whose name starts with a prefix: for
/// namespaces the code under test makes by itself (the lab's), which a
/// failing test would otherwise leave behind.
#[derive(Debug)]
pub struct Sweep {
    prefix: String,
}

impl Sweep {
    /// Sweeps namespaces named `prefix*`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix swept.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespaces present now that this sweep would remove.
    pub fn present(&self) -> Vec<String> {
        list(&self.prefix)
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        for name in self.present() {
            if let Err(error) = remove(&name) {
                // No panic while unwinding; the leftover shows in `ip netns list`.
                eprintln!("could not remove network namespace {name}: {error}");
            }
        }
    }
}
