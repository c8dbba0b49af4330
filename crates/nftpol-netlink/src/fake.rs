//! [`FakeDataplane`]: the `Dataplane` in memory, for tests of everything above
//! this crate (like knftables' `Fake`).
//!
//! It encodes each diff exactly as the kernel path does (same encode errors,
//! same message and byte counts), then applies it to a copy of its state and
//! commits only if every change would succeed, raising the kernel's errors:
//! ENOENT for a missing table, chain, set or element (deleting an absent
//! element fails the batch), EEXIST for an existing chain, set or element
//! and for overlapping intervals (the kernel never merges), EBUSY for
//! deleting a set or chain that is still referenced, EINVAL for a lookup
//! whose key does not fit its set.

use std::collections::BTreeMap;

use nftpol_ir::diff::{Change, Diff};
use nftpol_ir::{Conflict, Ruleset, Set, TABLE_NAME};
use nix::errno::Errno;

use crate::batch::BatchWriter;
use crate::error::{ApplyError, ConntrackError, Object, ReadError};
use crate::RuleCounter;
use crate::{Applied, Dataplane};

/// An in-memory table `inet nftpol`.
#[derive(Debug, Clone, Default)]
pub struct FakeDataplane {
    state: Option<Ruleset>,
    last_diff: Option<Diff<'static>>,
    last_applied: Option<Applied>,
    applied: usize,
    rejected: usize,
    fail_next: Option<Errno>,
    /// Packets and bytes per (chain, rule position), set by tests; absent
    /// means 0, as for a rule the kernel just added.
    counters: BTreeMap<(String, usize), (u64, u64)>,
    /// Every conntrack flush asked for, `(mark, mask)`, in order.
    conntrack_flushes: Vec<(u32, u32)>,
}

impl FakeDataplane {
    /// A fake without table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake whose table holds `state` (`None`: no table).
    pub fn with_state(state: Option<Ruleset>) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// Every conntrack flush asked for so far, `(mark, mask)`, in order
    /// (the fake holds no conntrack entries: a flush always succeeds).
    pub fn conntrack_flushes(&self) -> &[(u32, u32)] {
        &self.conntrack_flushes
    }

    /// The current table.
    pub fn state(&self) -> Option<&Ruleset> {
        self.state.as_ref()
    }

    /// The last diff that was applied successfully.
    pub fn last_diff(&self) -> Option<&Diff<'static>> {
        self.last_diff.as_ref()
    }

    /// What the last successful apply sent.
    pub fn last_applied(&self) -> Option<Applied> {
        self.last_applied
    }

    /// Successful batches so far (each one a kernel generation).
    pub fn applied_count(&self) -> usize {
        self.applied
    }

    /// Rejected batches so far.
    pub fn rejected_count(&self) -> usize {
        self.rejected
    }

    /// Makes the next apply fail with `errno` (at the batch), without change.
    pub fn fail_next_apply(&mut self, errno: Errno) {
        self.fail_next = Some(errno);
    }

    /// Sets the counter of rule `rule` (its position, from 0) of `chain`, as
    /// traffic would. Returns whether that rule exists and carries a counter
    /// (nothing is set otherwise). Like the kernel's, the value is lost
    /// when the chain is flushed or deleted.
    pub fn set_counter(&mut self, chain: &str, rule: usize, packets: u64, bytes: u64) -> bool {
        let has_counter = self
            .state
            .as_ref()
            .and_then(|state| state.chains.get(chain))
            .and_then(|found| found.rules.get(rule))
            .is_some_and(|found| found.counter);
        if has_counter {
            self.counters
                .insert((chain.to_owned(), rule), (packets, bytes));
        }
        has_counter
    }
}

impl FakeDataplane {
    /// The table after `diff`, or the kernel's error; the state itself is
    /// untouched (the kernel applies a batch all or nothing).
    fn patched(&self, diff: &Diff) -> Result<Ruleset, ApplyError> {
        let mut table = match (&self.state, diff.changes.first()) {
            (Some(table), _) => table.clone(),
            (None, Some(Change::AddTable)) => Ruleset::default(),
            (None, _) => return Err(reject(Errno::ENOENT, Object::Table)),
        };
        table.apply(diff).map_err(|conflict| {
            let errno = match &conflict {
                Conflict::Missing(_) => Errno::ENOENT,
                Conflict::Exists(_) => Errno::EEXIST,
                Conflict::Busy(_) => Errno::EBUSY,
                Conflict::KeyMismatch(_) => Errno::EINVAL,
            };
            reject(errno, conflict.object().clone())
        })?;
        Ok(table)
    }
}

fn reject(errno: Errno, object: Object) -> ApplyError {
    ApplyError::Rejected {
        errno,
        message: None,
        object,
        also_failed: 0,
    }
}

impl Dataplane for FakeDataplane {
    fn apply(&mut self, diff: &Diff) -> Result<Applied, ApplyError> {
        if diff.is_empty() {
            return Ok(Applied::default());
        }
        if let Some(errno) = self.fail_next.take() {
            self.rejected += 1;
            return Err(reject(errno, Object::Batch));
        }
        let shapes: BTreeMap<String, Set> = self
            .state
            .as_ref()
            .map(|state| {
                state
                    .sets
                    .iter()
                    .map(|(name, set)| (name.clone(), set.shape()))
                    .collect()
            })
            .unwrap_or_default();
        let mut writer = BatchWriter::new(TABLE_NAME, 0);
        writer.push_diff(diff, &shapes)?;
        let batch = writer.finish();
        match self.patched(diff) {
            Ok(state) => self.state = Some(state),
            Err(error) => {
                self.rejected += 1;
                return Err(error);
            }
        }
        for change in &diff.changes {
            if let Change::FlushChain(chain) | Change::DeleteChain(chain) = change {
                self.counters.retain(|(held, _), _| held != chain);
            }
        }
        self.applied += 1;
        let applied = Applied {
            messages: batch.message_count(),
            bytes: batch.byte_len(),
        };
        self.last_diff = Some(diff.clone().into_owned());
        self.last_applied = Some(applied);
        Ok(applied)
    }

    fn read(&mut self) -> Result<Option<Ruleset>, ReadError> {
        Ok(self.state.clone())
    }

    fn read_counters(&mut self) -> Result<Vec<RuleCounter>, ReadError> {
        let Some(state) = &self.state else {
            return Ok(Vec::new());
        };
        let mut counters = Vec::new();
        for chain in state.chains.values() {
            for (position, rule) in chain.rules.iter().enumerate() {
                if !rule.counter {
                    continue;
                }
                let (packets, bytes) = self
                    .counters
                    .get(&(chain.name.clone(), position))
                    .copied()
                    .unwrap_or_default();
                counters.push(RuleCounter {
                    chain: chain.name.clone(),
                    rule: position,
                    comment: rule.comment.clone(),
                    packets,
                    bytes,
                });
            }
        }
        Ok(counters)
    }

    fn flush_conntrack_by_mark(&mut self, mark: u32, mask: u32) -> Result<(), ConntrackError> {
        self.conntrack_flushes.push((mark, mask));
        Ok(())
    }

    fn delete_table(&mut self) -> Result<(), ApplyError> {
        self.counters.clear();
        if self.state.take().is_some() {
            self.applied += 1;
        }
        Ok(())
    }
}
