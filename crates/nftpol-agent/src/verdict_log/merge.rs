//! Identical lines within one second become one line with a count.
//!
//! A line waits up to [`WINDOW`] after its first packet for identical ones
//! (a denied TCP connect's SYN retransmits are each a first packet, since
//! the dropped connection never enters the conntrack table). The table of
//! waiting lines is bounded: a flood of distinct lines beyond
//! [`MAX_PENDING`] loses lines, never memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::line::VerdictLine;

/// How long a line waits for identical ones.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Distinct lines waiting at once.
pub const MAX_PENDING: usize = 4096;

/// Lines waiting for their window to close.
#[derive(Debug, Default)]
pub struct Merger {
    /// The line with `time` and `count` cleared → (first seen, time, count).
    pending: HashMap<VerdictLine, (Instant, String, u64)>,
}

impl Merger {
    /// Adds `line`, seen at `now`. Returns `false` when the table is full
    /// and the line is lost.
    pub fn add(&mut self, mut line: VerdictLine, now: Instant) -> bool {
        let time = std::mem::take(&mut line.time);
        line.count = 0;
        if let Some((_, _, count)) = self.pending.get_mut(&line) {
            *count += 1;
            return true;
        }
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        self.pending.insert(line, (now, time, 1));
        true
    }

    /// The lines whose window closed by `now` (all of them with `None`),
    /// oldest first.
    pub fn take_due(&mut self, now: Option<Instant>) -> Vec<VerdictLine> {
        let due = |first: Instant| now.is_none_or(|now| now.duration_since(first) >= WINDOW);
        let keys: Vec<VerdictLine> = self
            .pending
            .iter()
            .filter(|(_, (first, _, _))| due(*first))
            .map(|(line, _)| line.clone())
            .collect();
        let mut lines: Vec<(Instant, VerdictLine)> = keys
            .into_iter()
            .filter_map(|key| {
                let (first, time, count) = self.pending.remove(&key)?;
                Some((first, VerdictLine { time, count, ..key }))
            })
            .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.time.cmp(&b.1.time)));
        lines.into_iter().map(|(_, line)| line).collect()
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no line waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
