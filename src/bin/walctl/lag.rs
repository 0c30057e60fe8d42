//! Durability lag as the writer sees it: the time from an append to the moment the writer
//! observes `durable_seq()` covering it. Every `step`-th record's append time is kept in a
//! ring allocated up front; each poll pops what became durable and records its lag.

use std::collections::VecDeque;

use super::latency::Histogram;

/// Samples kept at most; more in flight are not sampled (counted in `dropped`).
const CAPACITY: usize = 1 << 16;

pub struct LagTracker {
    step: u64,
    pending: VecDeque<(u64, u64)>,
    pub hist: Histogram,
    pub dropped: u64,
}

impl LagTracker {
    /// Samples every `step`-th sequence number.
    pub fn new(step: u64) -> Self {
        // Touch every page now, so that sampling never page-faults the writer.
        let mut pending = VecDeque::with_capacity(CAPACITY);
        pending.extend((0..CAPACITY as u64).map(|i| (i, i)));
        pending.clear();
        LagTracker {
            step: step.max(1),
            pending,
            hist: Histogram::new(),
            dropped: 0,
        }
    }

    /// Notes the append of `seq` at `now` (nanoseconds on the caller's clock).
    #[inline]
    pub fn appended(&mut self, seq: u64, now: u64) {
        if seq % self.step != 0 {
            return;
        }
        if self.pending.len() == CAPACITY {
            self.dropped += 1;
            return;
        }
        self.pending.push_back((seq, now));
    }

    /// Records the lag of every sample up to `durable`, observed at `now`.
    #[inline]
    pub fn durable(&mut self, durable: u64, now: u64) {
        while let Some(&(seq, t)) = self.pending.front() {
            if seq > durable {
                break;
            }
            self.hist.record(now.saturating_sub(t));
            self.pending.pop_front();
        }
    }

    /// Samples not yet durable.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}
