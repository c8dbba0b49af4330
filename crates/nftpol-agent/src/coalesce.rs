//! Coalescing: a burst of watch events becomes one reconcile.
//!
//! Every relevant event bumps a counter in a `watch` channel ([`Trigger`]).
//! The reconcile loop waits in [`Coalescer::next`] for the first bump, then
//! for a bounded delay measured from that first event (not from the last,
//! so a steady stream of events cannot postpone enforcement forever), and
//! takes everything queued by then as one batch. Events that arrive while a
//! reconcile runs are picked up by the next call.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The sending side: watch tasks call [`Trigger::queue`] for each event that
/// changed what enforcement reads.
#[derive(Debug, Clone)]
pub struct Trigger {
    events: watch::Sender<u64>,
}

impl Trigger {
    /// Queues one event.
    pub fn queue(&self) {
        self.events.send_modify(|count| *count += 1);
    }
}

/// Events taken together for one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Events queued since the previous batch.
    pub events: u64,
}

/// The receiving side, owned by the reconcile loop.
#[derive(Debug)]
pub struct Coalescer {
    events: watch::Receiver<u64>,
    taken: u64,
    delay: Duration,
}

/// A connected [`Trigger`] and [`Coalescer`] with the given bounded delay.
pub fn channel(delay: Duration) -> (Trigger, Coalescer) {
    let (sender, receiver) = watch::channel(0);
    (
        Trigger { events: sender },
        Coalescer {
            events: receiver,
            taken: 0,
            delay,
        },
    )
}

impl Coalescer {
    /// Waits for the next batch: the first untaken event, then `delay`.
    /// `None` once every [`Trigger`] is gone and nothing is left to take.
    pub async fn next(&mut self) -> Option<Batch> {
        if *self.events.borrow() == self.taken {
            // An error means every sender is gone; what they queued has been
            // taken (the count equals `taken`), so there is nothing to do.
            self.events.changed().await.ok()?;
        }
        let deadline = Instant::now() + self.delay;
        tokio::time::sleep_until(deadline).await;
        let total = *self.events.borrow_and_update();
        let events = total - self.taken;
        self.taken = total;
        Some(Batch { events })
    }

    /// Events queued and not yet taken.
    pub fn pending(&self) -> u64 {
        *self.events.borrow() - self.taken
    }

    /// Takes every queued event at once, without waiting: for a reconcile
    /// about to snapshot the stores anyway (the first one, or a retry).
    pub fn take_pending(&mut self) -> u64 {
        let total = *self.events.borrow_and_update();
        let events = total - self.taken;
        self.taken = total;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(20);

    #[tokio::test(start_paused = true)]
    async fn burst_becomes_one_batch() {
        let (trigger, mut coalescer) = channel(DELAY);
        for _ in 0..1000 {
            trigger.queue();
        }
        assert_eq!(coalescer.next().await, Some(Batch { events: 1000 }));
        assert_eq!(coalescer.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn events_within_the_delay_join_the_batch() {
        let (trigger, mut coalescer) = channel(DELAY);
        let sender = trigger.clone();
        let producer = tokio::spawn(async move {
            for _ in 0..5 {
                sender.queue();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        assert_eq!(coalescer.next().await, Some(Batch { events: 5 }));
        producer.await.expect("producer finished");
    }

    #[tokio::test(start_paused = true)]
    async fn steady_stream_cannot_postpone_the_batch() {
        let (trigger, mut coalescer) = channel(DELAY);
        let sender = trigger.clone();
        // One event every 5 ms for 100 ms: the delay counts from the first
        // event, so the stream is cut into several batches.
        let producer = tokio::spawn(async move {
            for _ in 0..20 {
                sender.queue();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut batches = Vec::new();
        let mut total = 0;
        while total < 20 {
            let batch = coalescer.next().await.expect("trigger alive");
            total += batch.events;
            batches.push(batch.events);
        }
        producer.await.expect("producer finished");
        assert_eq!(total, 20);
        assert!(batches.len() >= 4, "batches: {batches:?}");
        assert!(
            batches.iter().all(|events| *events <= 5),
            "batches: {batches:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closed_trigger_ends_after_the_last_batch() {
        let (trigger, mut coalescer) = channel(DELAY);
        trigger.queue();
        drop(trigger);
        assert_eq!(coalescer.next().await, Some(Batch { events: 1 }));
        assert_eq!(coalescer.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn taken_events_do_not_fire_again() {
        let (trigger, mut coalescer) = channel(DELAY);
        trigger.queue();
        trigger.queue();
        assert_eq!(coalescer.take_pending(), 2);
        trigger.queue();
        assert_eq!(coalescer.next().await, Some(Batch { events: 1 }));
        assert_eq!(coalescer.pending(), 0);
    }
}
