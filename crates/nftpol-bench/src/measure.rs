//! Clocks, memory and summary statistics.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Runs `f` and returns its result with the elapsed milliseconds.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed().as_secs_f64() * 1000.0)
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

#[cfg(test)]
mod tests {
    use super::*;

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
