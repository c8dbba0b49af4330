//! The machine a run measured.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// Facts about the machine and the build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// `uname -r`.
    pub kernel: String,
    /// `nft --version`.
    pub nft: String,
    /// Commit measured.
    pub commit: String,
    /// When (UTC).
    pub date: String,
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
}

fn proc_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim().to_owned())
        })
}

/// Describes this machine.
pub fn describe() -> Machine {
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".to_owned()),
        memory_mib: proc_field("/proc/meminfo", "MemTotal")
            .and_then(|text| text.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        kernel: command_line("uname", &["-r"]),
        nft: command_line("nft", &["--version"]),
        commit: command_line("git", &["rev-parse", "--short", "HEAD"]),
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}

/// The machine's 1-minute load average (`/proc/loadavg`; 0 if unreadable):
/// recorded around the dataplane measurements, whose figures only mean
/// something on a machine that does nothing else.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The load average before and after a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// 1-minute load average when the measurement started.
    pub start: f64,
    /// 1-minute load average when it ended.
    pub end: f64,
}
