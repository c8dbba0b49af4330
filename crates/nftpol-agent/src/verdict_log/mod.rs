//! Verdict logs: the packets the ruleset's `log group G` rules report (the
//! first packet of each denied connection, and of each allowed one with
//! `--verdict-log=all`), written as JSON lines that name the deciding
//! policies, the rule and the pods.
//!
//! One thread owns the NFLOG socket and the output: blocking netlink I/O
//! stays off the async executor, and nothing queues between the two. It
//! is bounded and best-effort by construction: the kernel's socket buffer
//! ([`RECEIVE_BUFFER`]) is the only queue, and when a slow output or a
//! flood fills it the kernel drops logs, never packets; the instance's
//! packet numbers count every log so lost (`nftpol_verdict_log_lost_total`).
//! Lines merge for a second ([`merge`]); the merge table is bounded too.
//!
//! Names come from a [`LogDirectory`] the reconciler updates after each
//! commit: the log ids of the committed ruleset (from the compiler's
//! provenance) and the owner of every pod address.
//!
//! The original destination of a DNATed packet (a Service address): the
//! kernel records it with each logged DNATed first packet in a dynamic map
//! keyed by the packet's 5-tuple (see `nftpol_ruleset::verdict_log`), and
//! the reader asks for that one element (`NFT_MSG_GETSETELEM` by key, on a
//! netfilter socket of its own) for each line that names ports. Where NFLOG
//! carries conntrack data itself, that is used instead.
//!
//! If another process (ulogd2) holds the group, the reader says so once,
//! and tries again every [`REBIND_INTERVAL`]; enforcement and the kernel's
//! logging for that reader carry on.

mod directory;
mod line;
mod merge;
mod output;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nftpol_netlink::nflog::{LoggedPacket, NflogError, NflogSocket};
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::verdict_log;

pub use directory::{Directory, Endpoint, LogDirectory};
pub use line::{describe, origin_key, VerdictLine};
pub use merge::{Merger, MAX_PENDING, WINDOW};
pub use output::{Output, OutputTarget};

use crate::metrics::Metrics;

/// The NFLOG socket's receive buffer: about 4,000 logged packets of
/// 128-byte copies in flight.
pub const RECEIVE_BUFFER: usize = 1 << 20;
/// How long a receive waits, which bounds how late a stop is seen.
const POLL: Duration = Duration::from_millis(200);
/// How often binding a held group is tried again.
pub const REBIND_INTERVAL: Duration = Duration::from_secs(30);

/// What the reader reads and where it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictLogConfig {
    /// The NFLOG group the ruleset logs to.
    pub group: u16,
    /// Where lines go.
    pub output: OutputTarget,
}

/// The running reader thread; dropping it stops the thread.
pub struct VerdictLogReader {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    listening: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VerdictLogReader {
    /// Opens the output and starts reading in a new thread; `enter` runs
    /// first in that thread (the lab enters a node's network namespace
    /// there, since the NFLOG group is per namespace).
    pub fn spawn(
        config: VerdictLogConfig,
        directory: LogDirectory,
        metrics: Arc<Metrics>,
        enter: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let VerdictLogConfig { group, output } = config;
        let output = Output::open(output)?;
        let stop = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let listening = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("verdict-log".to_owned())
            .spawn({
                let (stop, reopen) = (Arc::clone(&stop), Arc::clone(&reopen));
                let listening = Arc::clone(&listening);
                move || {
                    if let Err(error) = enter() {
                        tracing::error!(%error, "verdict log: entering the network namespace");
                        return;
                    }
                    let mut reader = Reader {
                        group,
                        directory,
                        metrics,
                        output,
                        merger: Merger::default(),
                        socket: None,
                        origins: None,
                        next_bind: Instant::now(),
                        warned: false,
                        listening,
                    };
                    reader.run(&stop, &reopen);
                }
            })?;
        Ok(Self {
            stop,
            reopen,
            listening,
            thread: Some(thread),
        })
    }

    /// Whether the reader holds the NFLOG group (packets logged from now on
    /// reach it).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Asks the reader to reopen its output file (on SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Stops the reader after it read what the socket holds and wrote every
    /// waiting line.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("verdict log thread panicked");
            }
        }
    }
}

impl Drop for VerdictLogReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Reader {
    group: u16,
    directory: LogDirectory,
    metrics: Arc<Metrics>,
    output: Output,
    merger: Merger,
    socket: Option<NflogSocket>,
    /// A netfilter socket for the original destinations the kernel records.
    origins: Option<KernelDataplane>,
    next_bind: Instant,
    warned: bool,
    listening: Arc<AtomicBool>,
}

impl Reader {
    fn run(&mut self, stop: &AtomicBool, reopen: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if reopen.swap(false, Ordering::Relaxed) {
                match self.output.reopen() {
                    Ok(()) => tracing::info!("verdict log output reopened"),
                    Err(error) => tracing::warn!(%error, "reopening the verdict log output"),
                }
            }
            self.receive();
            let due = self.merger.take_due(Some(Instant::now()));
            self.emit(due);
        }
        // What the kernel queued before the stop still counts.
        while self.socket.is_some() && self.receive() > 0 {}
        let rest = self.merger.take_due(None);
        self.emit(rest);
    }

    /// One receive (or, without a socket, one bind attempt or a pause);
    /// returns the packets received.
    fn receive(&mut self) -> usize {
        let Some(socket) = &mut self.socket else {
            self.bind();
            return 0;
        };
        match socket.receive() {
            Ok(received) => {
                self.metrics.verdict_log.lost(received.lost);
                let count = received.packets.len();
                if count == 0 {
                    return 0;
                }
                let now = Instant::now();
                let time = jiff::Timestamp::now()
                    .round(jiff::Unit::Millisecond)
                    .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string());
                let lines: Vec<(VerdictLine, &LoggedPacket)> = self.directory.read(|directory| {
                    received
                        .packets
                        .iter()
                        .filter_map(|packet| {
                            describe(packet, directory, time.clone()).map(|line| (line, packet))
                        })
                        .collect()
                });
                for (mut line, packet) in lines {
                    if line.original_dst.is_none() {
                        if let Some((address, port)) = self.original_destination(packet) {
                            line.original_dst = Some(address);
                            line.original_dst_port = Some(port);
                        }
                    }
                    if !self.merger.add(line, now) {
                        self.metrics.verdict_log.lost(1);
                    }
                }
                count
            }
            Err(error) => {
                tracing::warn!(%error, "verdict log: reading NFLOG failed; binding again");
                self.socket = None;
                self.listening.store(false, Ordering::Relaxed);
                self.next_bind = Instant::now() + POLL;
                0
            }
        }
    }

    /// The original destination the kernel recorded for a DNATed logged
    /// packet, if any (best effort: a failed read only loses the field).
    fn original_destination(&mut self, packet: &LoggedPacket) -> Option<(IpAddr, u16)> {
        let (set, key) = origin_key(packet)?;
        let kernel = self.origins.as_mut()?;
        match kernel.element_data(&set, &key) {
            Ok(data) => data.as_deref().and_then(verdict_log::origin_of),
            Err(error) => {
                tracing::debug!(%error, "verdict log: reading an original destination");
                None
            }
        }
    }

    fn bind(&mut self) {
        if Instant::now() < self.next_bind {
            std::thread::sleep(POLL);
            return;
        }
        match NflogSocket::bind(self.group, RECEIVE_BUFFER, POLL) {
            Ok(socket) => {
                tracing::info!(
                    group = self.group,
                    original_destination = socket.has_conntrack(),
                    "verdict log: reading NFLOG"
                );
                self.socket = Some(socket);
                self.origins = match KernelDataplane::open() {
                    Ok(kernel) => Some(kernel),
                    Err(error) => {
                        tracing::warn!(%error, "verdict log: no netfilter socket for original destinations; lines go without them");
                        None
                    }
                };
                self.listening.store(true, Ordering::Relaxed);
                self.warned = false;
            }
            Err(error) => {
                if !self.warned {
                    match error {
                        NflogError::GroupBusy { group } => tracing::warn!(
                            group,
                            "verdict log: another process (ulogd2?) holds the NFLOG group; the kernel keeps logging for it, and nftpol writes no verdict lines until it is free"
                        ),
                        other => tracing::warn!(error = %other, "verdict log: binding the NFLOG group failed; retrying"),
                    }
                    self.warned = true;
                }
                self.next_bind = Instant::now() + REBIND_INTERVAL;
            }
        }
    }

    fn emit(&mut self, lines: Vec<VerdictLine>) {
        if lines.is_empty() {
            return;
        }
        for line in lines {
            let written = serde_json::to_string(&line)
                .map_err(std::io::Error::from)
                .and_then(|text| self.output.write_line(&text));
            match written {
                Ok(()) => {
                    self.metrics
                        .verdict_log
                        .reported(line.verdict, line.direction, line.count);
                }
                Err(error) => {
                    tracing::debug!(%error, "writing a verdict line");
                    self.metrics.verdict_log.lost(line.count);
                }
            }
        }
        if let Err(error) = self.output.flush() {
            tracing::warn!(%error, "flushing the verdict log output");
        }
    }
}
