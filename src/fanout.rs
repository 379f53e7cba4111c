//! The fan-out's writes ([`crate::direct`]) by turns.
//!
//! The first publication of a turn is written to waiting subscribers at once; publications that
//! follow before the turn ends (a publisher with frames buffered, a busy broker) are queued
//! without a wake-up, and the task that ends the turn, which runs once the publisher's task
//! yields, writes each subscriber's in one write. At a quiet channel's pace a delivery is one
//! write and no wake-up; under load a write carries many deliveries, as the connections' own
//! write loops would batch them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::hub::{FanOut, Outbox};
use crate::metrics::Metrics;

/// Outboxes the flush writes before it lets other tasks run: the publisher's among them, whose
/// next publications then reach the outboxes still waiting in this same pass (and queue the
/// others behind them), so at 10,000 subscribers a publication waits for about one pass over
/// the subscribers, not two.
const SLICE: usize = 256;

/// The turns of one hub.
pub(crate) struct Turns {
    /// The outboxes waiting, in order, and whether a flush is under way (or scheduled).
    pending: Mutex<(VecDeque<Arc<Outbox>>, bool)>,
    /// The last flush wrote more deliveries than outboxes: publications arrive faster than
    /// turns end, and batching them is what keeps up.
    busy: AtomicBool,
    metrics: Arc<Metrics>,
}

/// One publication's part in a turn ([`Turns::begin`]).
pub(crate) struct Turn {
    /// It began the turn: a flush must end it.
    first: bool,
    /// How its deliveries may go to the fan-out.
    pub mode: FanOut,
}

/// What a fan-out wrote itself, for the metrics the connections' write loops keep.
#[derive(Default)]
pub(crate) struct Written {
    /// Deliveries.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the oldest of them was published.
    pub oldest: Option<tokio::time::Instant>,
}

impl Written {
    /// Counts them as written to clients.
    pub fn record(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.messages_out.add(self.count);
        metrics.direct_writes.add(self.count);
        metrics.bytes_out.add(self.bytes);
        if let Some(at) = self.oldest {
            metrics.fanout_latency.observe(at.elapsed());
        }
    }
}

impl Turns {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { pending: Mutex::default(), busy: AtomicBool::new(false), metrics })
    }

    /// A publication's fan-out starts. The first publication of a turn is written now, unless
    /// under load (the last flush carried several deliveries to a write): then it too waits
    /// for the flush, as a write now would cost a syscall of its own.
    pub fn begin(&self) -> Turn {
        let first = !std::mem::replace(&mut self.pending.lock().1, true);
        let busy = self.busy.load(Ordering::Relaxed);
        Turn { first, mode: if first && !busy { FanOut::Now } else { FanOut::Later } }
    }

    /// The fan-out of `turn`'s publication is done; `listed` are the outboxes it left work in
    /// for the flush. The list is locked only briefly: fan-outs of other channels go on.
    pub fn end(self: &Arc<Self>, turn: Turn, listed: Vec<Arc<Outbox>>) {
        if !turn.first && listed.is_empty() {
            return;
        }
        let mut pending = self.pending.lock();
        pending.0.extend(listed);
        // The flush may have ended meanwhile (on another worker): then these need their own.
        let running = std::mem::replace(&mut pending.1, true);
        drop(pending);
        if turn.first || !running {
            self.schedule();
        }
    }

    /// Ends the turn with [`Turns::flush`] as a task: spawned from the publisher's, it runs
    /// once that one yields (outside a runtime, at once).
    fn schedule(self: &Arc<Self>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let turns = self.clone();
                runtime.spawn(async move { turns.flush().await });
            }
            Err(_) => {
                let mut slice = Vec::new();
                while self.next_slice(&mut slice) {
                    self.write(&slice);
                }
            }
        }
    }

    /// Moves the next outboxes into `slice`; `false`, and the turn over, when none wait.
    fn next_slice(&self, slice: &mut Vec<Arc<Outbox>>) -> bool {
        slice.clear();
        let mut pending = self.pending.lock();
        if pending.0.is_empty() {
            pending.1 = false;
            return false;
        }
        let n = pending.0.len().min(SLICE);
        slice.extend(pending.0.drain(..n));
        true
    }

    /// One task writes every waiting outbox, oldest first, until none is left: outboxes that
    /// fill again meanwhile go to the back, so none waits behind more than one pass.
    async fn flush(&self) {
        let mut slice = Vec::with_capacity(SLICE);
        let (mut outboxes, mut written) = (0, 0);
        while self.next_slice(&mut slice) {
            written += self.write(&slice);
            outboxes += slice.len() as u64;
            slice.clear();
            tokio::task::yield_now().await;
        }
        self.busy.store(written > outboxes, Ordering::Relaxed);
    }

    /// Writes what `outboxes` hold for the fan-out, and counts it; how many deliveries.
    fn write(&self, outboxes: &[Arc<Outbox>]) -> u64 {
        let mut written = Written::default();
        for outbox in outboxes {
            let flushed = outbox.flush_direct();
            written.count += flushed.written as u64;
            written.bytes += flushed.bytes as u64;
            if let Some(at) = flushed.oldest {
                written.oldest = Some(written.oldest.map_or(at, |o| o.min(at)));
            }
        }
        written.record(&self.metrics);
        written.count
    }
}
