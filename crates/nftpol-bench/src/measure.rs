//! Clocks, memory and summary statistics.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Runs `f` and returns its result with the elapsed milliseconds.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed().as_secs_f64() * 1000.0)
}

/// A count as a float, for means, rates and plot coordinates.
#[expect(
    clippy::cast_precision_loss,
    reason = "the counts measured (objects, bytes, events) are far below 2^52, exact in f64"
)]
pub fn usize_f64(value: usize) -> f64 {
    value as f64
}

/// Peak resident set size of this process so far, in MiB (`ru_maxrss`).
pub fn peak_rss_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map_or(0.0, |usage| kib_to_mib(usage.max_rss()))
}

/// Peak resident set size of waited-for children, in MiB.
pub fn children_peak_rss_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_or(0.0, |usage| kib_to_mib(usage.max_rss()))
}

/// Current resident set size of this process, in MiB (`/proc/self/statm`).
pub fn current_rss_mib() -> f64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u32>().ok())
        .unwrap_or(0);
    f64::from(pages) * 4096.0 / (1024.0 * 1024.0)
}

#[expect(
    clippy::cast_precision_loss,
    reason = "KiB counts far below 2^52 are exact in f64"
)]
fn kib_to_mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

/// Summary of a sample of milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sample size.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarises `sample` (empty: all zero).
    pub fn of(sample: &[f64]) -> Self {
        if sample.is_empty() {
            return Self::default();
        }
        let mut sorted = sample.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a rank within a sample that fits in memory"
            )]
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index]
        };
        #[expect(clippy::cast_precision_loss, reason = "sample sizes far below 2^52")]
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Self {
            n: sorted.len(),
            mean,
            p50: rank(0.5),
            p99: rank(0.99),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// Kernel CPU time of the whole machine so far (`/proc/stat`, all CPUs).
///
/// Machine-wide, and sampled at the scheduler tick on kernels without
/// `CONFIG_IRQ_TIME_ACCOUNTING`: a figure per connection is only as good
/// as the number of connections it is divided by and the quiet of the
/// machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelCpu {
    /// System time, ms.
    pub system_ms: f64,
    /// Softirq time (where veth delivery and nftables run), ms.
    pub softirq_ms: f64,
}

/// Reads [`KernelCpu`] from `/proc/stat`.
pub fn kernel_cpu() -> anyhow::Result<KernelCpu> {
    use anyhow::Context as _;
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_kernel_cpu(&stat).context("the cpu line of /proc/stat")
}

fn parse_kernel_cpu(stat: &str) -> Option<KernelCpu> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq …, in USER_HZ ticks, which
    // Linux fixes at 100 per second for user space: a tick is 10 ms.
    #[expect(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    let ms = |index: usize| fields.get(index).map(|ticks| *ticks as f64 * 10.0);
    Some(KernelCpu {
        system_ms: ms(2)?,
        softirq_ms: ms(6)?,
    })
}

/// The median and range of one figure over the rounds of a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Rounds.
    pub n: usize,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Summarises `values` (empty: all zero).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (Some(min), Some(max)) = (sorted.first().copied(), sorted.last().copied()) else {
            return Self::default();
        };
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            f64::midpoint(sorted[middle - 1], sorted[middle])
        } else {
            sorted[middle]
        };
        Self {
            n: sorted.len(),
            median,
            min,
            max,
        }
    }

    /// The range as a share of the median (0 for a zero median).
    pub fn relative_range(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }
}

/// The order in which `setups` setups are measured in round `round`:
/// forward in even rounds, backward in odd ones, so drift over a run (a
/// warming cache, another job starting) weighs on every setup alike.
pub fn round_order(setups: usize, round: usize) -> Vec<usize> {
    if round.is_multiple_of(2) {
        (0..setups).collect()
    } else {
        (0..setups).rev().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_and_the_range() {
        let cases: [(&str, &[f64], Spread); 3] = [
            (
                "odd",
                &[3.0, 1.0, 2.0],
                Spread {
                    n: 3,
                    median: 2.0,
                    min: 1.0,
                    max: 3.0,
                },
            ),
            (
                "even",
                &[4.0, 1.0, 2.0, 3.0],
                Spread {
                    n: 4,
                    median: 2.5,
                    min: 1.0,
                    max: 4.0,
                },
            ),
            ("empty", &[], Spread::default()),
        ];
        for (name, values, want) in cases {
            assert_eq!(Spread::of(values), want, "{name}");
        }
        assert!((Spread::of(&[2.0, 3.0, 4.0]).relative_range() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn rounds_alternate_their_order() {
        assert_eq!(round_order(3, 0), [0, 1, 2]);
        assert_eq!(round_order(3, 1), [2, 1, 0]);
        assert_eq!(round_order(3, 2), [0, 1, 2]);
    }

    #[test]
    fn kernel_cpu_reads_system_and_softirq_ticks() {
        let stat = "cpu  100 5 20 900 3 0 7 0 0 0\ncpu0 50 2 10 450 1 0 3 0 0 0\n";
        assert_eq!(
            parse_kernel_cpu(stat),
            Some(KernelCpu {
                system_ms: 200.0,
                softirq_ms: 70.0
            })
        );
        assert_eq!(parse_kernel_cpu("cpu  1 2\n"), None);
        assert_eq!(parse_kernel_cpu("intr 1\n"), None);
    }

    #[test]
    fn summary_uses_nearest_rank() {
        let sample: Vec<f64> = (1..=100).map(f64::from).collect();
        let summary = Summary::of(&sample);
        assert_eq!(summary.n, 100);
        assert!((summary.p50 - 50.0).abs() < f64::EPSILON);
        assert!((summary.p99 - 99.0).abs() < f64::EPSILON);
        assert!((summary.max - 100.0).abs() < f64::EPSILON);
        assert!((summary.mean - 50.5).abs() < 1e-9);
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
