//! Traffic between the lab's two pods: sequential new TCP connections, each
//! from a source port of its own, and bulk throughput over one established
//! connection.
//!
//! Why explicit source ports: sequential connects from kernel-chosen
//! ephemeral ports wrap the ~28k-port range within seconds and reuse
//! 4-tuples whose conntrack and socket state has not expired; the SYN is
//! then retransmitted after a second (measured in #11: `max` ≈ 996 ms, and
//! rates that did not repeat). Every socket here binds the next port of one
//! [`Ports`] cursor that runs over 64,512 ports for the whole lab, so no
//! 4-tuple repeats inside a sample (a sample is refused if it needs more
//! ports than the range) and a port comes back only after every other port
//! was used; a port still held when its turn comes (the bulk flow closes
//! with FIN, so its port sits in TIME_WAIT for a minute, and a fast run
//! wraps the range within one) is skipped. Every other socket is closed
//! with RST (`SO_LINGER 0`), so no TIME_WAIT piles up; every loop is
//! bounded by a deadline.
//!
//! Nothing accepts a sample's connections: each handshake completes in the
//! kernel and waits in the listener's queue (one sample fits in it), so no
//! server thread wakes up and competes with the client for the CPUs.
//!
//! A sample's rate is over the time spent connecting (the sum of the
//! connect latencies), not wall time: socket setup, scheduling pauses of a
//! busy machine and the accept loop are not the dataplane's.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::generate::HTTP_PORT;
use crate::lab::{inside, Lab};
use crate::measure::{kernel_cpu, timed, Summary};

/// A port no generated policy allows to app-1.
const DENIED_PORT: u16 = 9999;
/// The first client source port.
const FIRST_PORT: u16 = 1024;
/// How many client source ports the cursor runs over.
const PORT_RANGE: u16 = u16::MAX - FIRST_PORT + 1;
/// Most ports skipped in a row because they are still held.
const MOST_HELD_PORTS: usize = 64;
/// Longest one connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A sample stops after this many failed connects (each waits out
/// [`CONNECT_TIMEOUT`]).
const MOST_FAILURES: usize = 20;

/// The client's source ports, handed out in turn over the whole lab.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    /// Offset of the next port from [`FIRST_PORT`].
    next: u16,
}

impl Ports {
    /// The next source port.
    fn take(&mut self) -> u16 {
        let port = FIRST_PORT + self.next;
        self.next = (self.next + 1) % PORT_RANGE;
        port
    }
}

/// CPU time of the calling thread, µs.
fn thread_cpu_us() -> Result<f64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .context("CLOCK_THREAD_CPUTIME_ID")?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "a thread's CPU time in ns is far below 2^52"
    )]
    let ns = now.tv_sec() as f64 * 1e9 + now.tv_nsec() as f64;
    Ok(ns / 1000.0)
}

/// One connect: the socket (closed with RST when dropped), its latency in
/// ms and the CPU time the connecting thread spent in it, µs.
struct Connect {
    socket: std::io::Result<Socket>,
    latency_ms: f64,
    cpu_us: f64,
}

/// A client socket (closed with RST when dropped) bound to `client` and
/// the next port of `ports` that is free.
fn bound_socket(client: Ipv4Addr, ports: &mut Ports) -> Result<Socket> {
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).context("a client socket")?;
    socket
        .set_linger(Some(Duration::ZERO))
        .context("SO_LINGER")?;
    for _ in 0..MOST_HELD_PORTS {
        let port = ports.take();
        match socket.bind(&SockAddr::from(SocketAddr::from((client, port)))) {
            Ok(()) => return Ok(socket),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(error) => {
                return Err(error).with_context(|| format!("binding client port {port}"));
            }
        }
    }
    bail!("{MOST_HELD_PORTS} client ports in a row are still in use")
}

/// Connects from `client` and the next free port of `ports` to `target`.
fn connect_from(client: Ipv4Addr, ports: &mut Ports, target: SocketAddr) -> Result<Connect> {
    let socket = bound_socket(client, ports)?;
    let cpu_before = thread_cpu_us()?;
    let (connected, latency_ms) =
        timed(|| socket.connect_timeout(&SockAddr::from(target), CONNECT_TIMEOUT));
    let cpu_us = thread_cpu_us()? - cpu_before;
    Ok(Connect {
        socket: connected.map(|()| socket),
        latency_ms,
        cpu_us,
    })
}

/// One sample of sequential new connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Connect latency of the completed connections, ms.
    pub connect: Summary,
    /// CPU time of the client thread in each completed `connect()`, µs:
    /// the kernel's whole path, since veth delivery runs the routers'
    /// forwarding and the server's answer in softirq on the sending
    /// thread (charged to it on kernels without IRQ time accounting).
    pub connect_cpu_us: Summary,
    /// Completed connections per second of time spent connecting.
    pub per_s: f64,
    /// Connects that failed or timed out.
    pub failures: usize,
    /// Softirq CPU of the whole machine during the sample, ms (`/proc/stat`).
    pub softirq_ms: f64,
    /// Wall time of the sample, ms (the reference lab's blocks included).
    pub wall_ms: f64,
    /// Connect latency in the reference lab, taken in blocks alternating
    /// with this sample's ([`paired_connections`]), ms.
    #[serde(default)]
    pub reference: Option<Summary>,
}

/// Accepts until `stop`, reading every connection to its end; returns bytes read.
fn serve(listener: &TcpListener, stop: &AtomicBool) -> u64 {
    let mut total = 0u64;
    let mut buffer = vec![0u8; 1 << 16];
    while let Ok((mut stream, _)) = listener.accept() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        while let Ok(read) = stream.read(&mut buffer) {
            if read == 0 {
                break;
            }
            total += u64::try_from(read).unwrap_or(0);
        }
    }
    total
}

/// Backlog asked for the server's listening socket; the kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 65_535;
/// Most connections of one sample: `net.core.somaxconn`'s default (4096
/// since Linux 5.4, per namespace), the accept queue they all wait in; a
/// full queue would drop a SYN (a one-second retransmission in the sample).
const QUEUED: usize = 4096;

/// The server's listening socket.
fn listen(address: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .context("the server socket")?;
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    socket
        .bind(&SockAddr::from(address))
        .context("binding the server")?;
    socket.listen(BACKLOG).context("listening")?;
    Ok(socket.into())
}

/// Runs `client` inside the client pod against a server in the server pod.
fn with_server<T: Send>(
    lab: &Lab,
    ports: &mut Ports,
    client: impl FnOnce(SocketAddr, &mut Ports) -> Result<T> + Send,
) -> Result<(T, u64)> {
    let target = SocketAddr::from((lab.server.1, HTTP_PORT));
    let listener = inside(&lab.server.0, || listen(target))?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| serve(&listener, &stop));
        let outcome = inside(&lab.client.0, || client(target, &mut *ports));
        stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop; the server stops whether or not it connects.
        let woke = inside(&lab.client.0, || {
            connect_from(lab.client.1, &mut *ports, target)
        });
        if !matches!(woke, Ok(Connect { socket: Ok(_), .. })) {
            // The accept loop would block forever: shut the listener down.
            nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&listener),
                nix::sys::socket::Shutdown::Both,
            )
            .context("stopping the server")?;
        }
        let bytes = server
            .join()
            .map_err(|_| anyhow!("the server thread panicked"))?;
        Ok((outcome?, bytes))
    })
}

/// Connects per block of a paired sample ([`paired_connections`]): short
/// enough that a slow spell of the machine (they last a round or more)
/// covers both sides of most pairs of blocks alike.
const PAIRED_BLOCK: usize = 50;

/// What connects in one lab's client pod found so far.
#[derive(Default)]
struct Connects {
    latencies: Vec<f64>,
    cpu: Vec<f64>,
    failures: usize,
    softirq_ms: f64,
}

impl Connects {
    fn done(&self, count: usize) -> bool {
        self.latencies.len() >= count || self.failures >= MOST_FAILURES
    }

    /// Up to `block` more connects inside `lab`'s client pod, until `count`
    /// or `until`.
    fn block(
        &mut self,
        lab: &Lab,
        ports: &mut Ports,
        (count, block): (usize, usize),
        until: Instant,
    ) -> Result<()> {
        let client = lab.client.1;
        let target = SocketAddr::from((lab.server.1, HTTP_PORT));
        let goal = count.min(self.latencies.len() + block);
        inside(&lab.client.0, || {
            let softirq_before = kernel_cpu()?.softirq_ms;
            while self.latencies.len() < goal
                && self.failures < MOST_FAILURES
                && Instant::now() < until
            {
                let connect = connect_from(client, ports, target)?;
                if connect.socket.is_ok() {
                    self.latencies.push(connect.latency_ms);
                    self.cpu.push(connect.cpu_us);
                } else {
                    self.failures += 1;
                }
            }
            self.softirq_ms += kernel_cpu()?.softirq_ms - softirq_before;
            Ok(())
        })
    }

    fn sample(self, wall_ms: f64) -> Sample {
        let connecting_s = self.latencies.iter().sum::<f64>() / 1000.0;
        #[expect(
            clippy::cast_precision_loss,
            reason = "connection counts far below 2^52"
        )]
        let per_s = if connecting_s > 0.0 {
            self.latencies.len() as f64 / connecting_s
        } else {
            0.0
        };
        Sample {
            connect: Summary::of(&self.latencies),
            connect_cpu_us: Summary::of(&self.cpu),
            per_s,
            failures: self.failures,
            softirq_ms: self.softirq_ms,
            wall_ms,
            reference: None,
        }
    }
}

/// Refuses a sample of `count` connects in each of the two labs that would
/// reuse a port or overflow an accept queue.
fn check_count(count: usize) -> Result<()> {
    if count * 2 > usize::from(PORT_RANGE) {
        bail!(
            "{count} connections in each of two labs need more source ports than the {PORT_RANGE} there are"
        );
    }
    if count > QUEUED {
        bail!("{count} connections would overflow the server's accept queue of {QUEUED}");
    }
    Ok(())
}

/// The listening socket in `lab`'s server pod. Nothing accepts: the
/// handshakes complete in the kernel and wait in the queue (reset by the
/// client already) until the listener closes, so no server thread wakes up
/// and competes for the two CPUs mid-sample.
fn silent_server(lab: &Lab) -> Result<TcpListener> {
    let target = SocketAddr::from((lab.server.1, HTTP_PORT));
    inside(&lab.server.0, || listen(target))
}

/// `count` sequential connects to `lab`'s server (at most `seconds` of wall
/// time), in blocks of [`PAIRED_BLOCK`] alternating with as many to
/// `reference`'s (a second lab holding the reference setup all along): the
/// sample carries the reference's latencies of the same time.
/// A setup's latency over the reference's from paired samples does not
/// depend on how fast the machine ran in that round, which on this shared
/// 2-vCPU machine changes by 1.5× from one round to the next.
pub(crate) fn paired_connections(
    lab: &Lab,
    reference: &Lab,
    ports: &mut Ports,
    count: usize,
    seconds: f64,
) -> Result<Sample> {
    check_count(count)?;
    let listeners = (silent_server(lab)?, silent_server(reference)?);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut measured = Connects::default();
    let mut referenced = Connects::default();
    while !(measured.done(count) && referenced.done(count)) && Instant::now() < until {
        measured.block(lab, ports, (count, PAIRED_BLOCK), until)?;
        referenced.block(reference, ports, (count, PAIRED_BLOCK), until)?;
    }
    drop(listeners);
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut sample = measured.sample(wall_ms);
    sample.reference = Some(Summary::of(&referenced.latencies));
    Ok(sample)
}

/// What a connect to a port no policy allows does: `refused` (no
/// filtering), `dropped` (enforced) or `connected`.
pub(crate) fn denied_port(lab: &Lab, ports: &mut Ports) -> Result<String> {
    let denied = SocketAddr::new(lab.server.1.into(), DENIED_PORT);
    let client = lab.client.1;
    inside(&lab.client.0, || {
        let socket = bound_socket(client, ports)?;
        Ok(
            match socket.connect_timeout(&SockAddr::from(denied), Duration::from_millis(300)) {
                Ok(()) => "connected",
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
                Err(_) => "dropped",
            }
            .to_owned(),
        )
    })
}

/// Bulk transfer over one connection for `seconds`; Gbit/s.
pub(crate) fn throughput(lab: &Lab, ports: &mut Ports, seconds: f64) -> Result<f64> {
    let client = lab.client.1;
    let (elapsed, bytes) = with_server(lab, ports, |target, ports| {
        let socket = connect_from(client, ports, target)?
            .socket
            .context("connecting for the bulk transfer")?;
        let mut stream = TcpStream::from(socket);
        let buffer = vec![0x5au8; 1 << 17];
        let started = Instant::now();
        let deadline = Duration::from_secs_f64(seconds);
        while started.elapsed() < deadline {
            stream.write_all(&buffer).context("sending")?;
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .context("closing the bulk flow")?;
        let mut rest = [0u8; 1];
        // Waits for the server to finish reading (it closes on EOF); how the
        // wait ends does not matter, only that it did.
        let _ = stream.read(&mut rest);
        Ok(started.elapsed().as_secs_f64())
    })?;
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let gbit_per_s = bytes as f64 * 8.0 / elapsed / 1e9;
    Ok(gbit_per_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_repeat_only_after_the_whole_range() {
        let mut ports = Ports::default();
        let first: Vec<u16> = (0..PORT_RANGE).map(|_| ports.take()).collect();
        let mut unique = first.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), usize::from(PORT_RANGE));
        assert_eq!(first.first(), Some(&FIRST_PORT));
        assert_eq!(first.last(), Some(&u16::MAX));
        assert_eq!(ports.take(), FIRST_PORT);
    }

    #[test]
    fn a_port_still_held_is_skipped() {
        let loopback = Ipv4Addr::LOCALHOST;
        let held = TcpListener::bind((loopback, 0)).unwrap();
        let held_port = held.local_addr().unwrap().port();
        let mut ports = Ports {
            next: held_port - FIRST_PORT,
        };
        let socket = bound_socket(loopback, &mut ports).unwrap();
        let bound = socket.local_addr().unwrap().as_socket().unwrap().port();
        assert!(bound > held_port, "bound {bound}, held {held_port}");
        assert_eq!(ports.next, bound + 1 - FIRST_PORT);
    }
}
