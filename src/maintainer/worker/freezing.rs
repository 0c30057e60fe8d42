//! Freezing: which hot segment to compress next (and how hard), the hand-over of chunks
//! to the compression helpers, the publish of a checked freeze, and what its end changes.

use super::*;

impl Worker {
    /// Starts the compression helpers on this (pinned) thread: see `Config::compress_cores`.
    pub(super) fn start_compressors(&mut self) {
        let n = self.config.compress_threads;
        let cores = match (&self.config.compress_cores[..], self.config.core) {
            ([], Some(core)) if n == 1 => vec![core],
            (cores, _) => cores.to_vec(),
        };
        self.compress = Compressors::start(n, &cores);
        let started = self.compress.threads() as u64;
        self.shared
            .stats
            .compress_threads
            .store(started, Ordering::Relaxed);
    }

    /// Hands chunks that came back from compression to their freezes.
    pub(super) fn take_compressed(&mut self) -> bool {
        let mut did = false;
        while let Some(work) = self.compress.take_done() {
            did = true;
            if work.release {
                continue; // a released codec: its freeze has ended
            }
            let slot = work.slot as usize;
            let held = self.slots.get(slot).map(|j| match j {
                Some(Job::Freeze(f)) => f.index == work.index,
                _ => false,
            });
            if held != Some(true) {
                // A freeze stays in its slot while a chunk is away; never expected.
                log::error!(
                    "compressed chunk of segment {} without its freeze",
                    work.index
                );
                continue;
            }
            let Some(Job::Freeze(mut j)) = self.slots[slot].take() else {
                unreachable!("checked just above");
            };
            match j.compressed(*work, slot as u32, &mut self.ctx()) {
                None => self.slots[slot] = Some(Job::Freeze(j)),
                Some(o) => self.end_freeze(slot, j, o),
            }
        }
        did
    }

    pub(super) fn plan_freeze(&mut self, now: Instant, stopping: bool) -> bool {
        let compressing = self
            .slots
            .iter()
            .filter(|j| matches!(j, Some(Job::Freeze(f)) if f.is_compressing()))
            .count();
        let parallel = self.compress.threads().max(1);
        if compressing >= parallel || self.freezing.len() > parallel {
            return false;
        }
        let Some(slot) = self.free_slot() else {
            return false;
        };
        let candidate = loop {
            match self.explicit_freeze.pop_front() {
                Some(i) if self.hot.contains(&i) && !self.freezing.contains(&i) => break Some(i),
                Some(_) => continue, // frozen meanwhile, or being frozen
                None if self.hot.len() - self.freezing.len() > self.config.max_segments
                    || self.budget_pressure && self.hot.len() > self.freezing.len() =>
                {
                    break self
                        .hot
                        .iter()
                        .find(|i| !self.freezing.contains(i))
                        .copied();
                }
                None => break None,
            }
        };
        let Some(index) = candidate else {
            return false;
        };
        if let Some(r) = self.freeze_retry {
            if r.index == index && (stopping || r.not_before > now) {
                return false; // waiting for the retry delay (not retried while stopping)
            }
        }
        let acceleration = self.acceleration();
        let job = FreezeJob::new(index, acceleration, &self.ctx());
        let mut job = match job {
            Ok(job) => job,
            Err(e) => {
                self.freeze_failed(index, e, false);
                return true;
            }
        };
        self.freezing.push(index);
        let outcome = job.pump(slot as u32, &mut self.ctx());
        match outcome {
            Some(o) => self.freeze_done(index, o),
            None => self.slots[slot] = Some(Job::Freeze(job)),
        }
        true
    }

    /// A freeze ended: its codec, if a helper still keeps it, is released; its files close
    /// before the lists change.
    pub(super) fn end_freeze(&mut self, slot: usize, job: Box<FreezeJob>, outcome: FreezeOutcome) {
        let index = job.index;
        if let Some(at) = job.codec_left_at() {
            self.compress.release(slot as u32, index, at);
        }
        drop(job);
        self.freeze_done(index, outcome);
    }

    /// LZ4 acceleration for the next freeze: 2 per segment the hot backlog exceeds
    /// `max_segments` by beyond the one that starts every freeze (`Config::auto_accelerate`),
    /// 1 otherwise; published as a gauge.
    pub(super) fn acceleration(&self) -> u32 {
        let backlog = self.hot.len().saturating_sub(self.freezing.len());
        let over = backlog.saturating_sub(self.config.max_segments + 1) as u32;
        let a = match self.config.auto_accelerate {
            true => over
                .saturating_mul(2)
                .clamp(1, crate::constants::MAX_ACCELERATION),
            false => 1,
        };
        let stats = &self.shared.stats;
        stats.freeze_acceleration.store(a.into(), Ordering::Relaxed);
        if a > 1 {
            stats.accelerated_freezes.fetch_add(1, Ordering::Relaxed);
        }
        a
    }

    /// Starts the publish chain of a checked freeze, one at a time: a freeze publishes only
    /// after the previous one's directory fsyncs succeeded (contract 5).
    pub(super) fn plan_publish(&mut self) -> bool {
        let publishing = self
            .slots
            .iter()
            .any(|j| matches!(j, Some(Job::Freeze(f)) if f.is_publishing()));
        if publishing {
            return false;
        }
        let ready = self
            .slots
            .iter()
            .position(|j| matches!(j, Some(Job::Freeze(f)) if f.is_ready_to_publish()));
        let Some(slot) = ready else {
            return false;
        };
        let Some(Job::Freeze(mut job)) = self.slots[slot].take() else {
            unreachable!("checked above");
        };
        let index = job.index;
        match job.publish(slot as u32, &mut self.ctx()) {
            None => self.slots[slot] = Some(Job::Freeze(job)),
            Some(o) => {
                drop(job);
                self.freeze_done(index, o);
            }
        }
        true
    }

    /// After an fsync error, freezes waiting to publish are given up.
    pub(super) fn abandon_unpublished(&mut self) {
        for slot in 0..self.slots.len() {
            if let Some(Job::Freeze(job)) = &mut self.slots[slot] {
                if job.is_ready_to_publish() {
                    job.abandon();
                    let index = job.index;
                    self.slots[slot] = None;
                    self.freezing.retain(|&i| i != index);
                    log::warn!("freeze of segment {index} abandoned after an fsync error");
                }
            }
        }
    }

    pub(super) fn freeze_failed(&mut self, index: u64, e: Error, enospc: bool) {
        log::warn!("freeze of segment {index} failed, will retry: {e}");
        let stats = &self.shared.stats;
        stats.compress_failures.fetch_add(1, Ordering::Relaxed);
        if enospc {
            stats.enospc.fetch_add(1, Ordering::Relaxed);
        }
        let attempts = self
            .freeze_retry
            .filter(|r| r.index == index)
            .map_or(0, |r| r.attempts);
        self.freeze_retry = Some(Retry::after_failure(index, attempts));
        self.update_gauges();
    }

    pub(super) fn freeze_done(&mut self, index: u64, outcome: FreezeOutcome) {
        self.freezing.retain(|&i| i != index);
        match outcome {
            FreezeOutcome::Frozen {
                bytes_in,
                bytes_out,
                compress_ns,
                next_seq,
            } => {
                if let Some(end) = next_seq {
                    self.cold_end.insert(index, end);
                }
                self.hists.record(Hist::Compress, compress_ns);
                self.hists.record(
                    Hist::CompressThroughput,
                    (bytes_in as f64 * 1e9 / compress_ns.max(1) as f64) as u64,
                );
                let stats = &self.shared.stats;
                stats.frozen.fetch_add(1, Ordering::Relaxed);
                stats.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
                stats.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
                self.freeze_retry = None;
                self.move_to_cold(index);
            }
            FreezeOutcome::UnlinkFailed(e) => {
                log::warn!("{e}; the .wal.lz4 is durable, the unlink will be retried");
                self.shared
                    .stats
                    .unlink_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.freeze_retry = None;
                self.move_to_cold(index);
                self.leftover_retry.push(Retry::after_failure(index, 0));
            }
            FreezeOutcome::Retry { error, enospc } => self.freeze_failed(index, error, enospc),
            FreezeOutcome::FsyncFailed(e) => self.fsync_failed(e),
        }
        self.update_gauges();
    }

    pub(super) fn move_to_cold(&mut self, index: u64) {
        self.hot.retain(|&i| i != index);
        let cold = crate::segment::names::cold_path(&self.config.dir, index);
        let bytes = std::fs::metadata(cold).map_or(0, |m| m.len());
        self.budget.frozen(index, bytes);
        let pos = self.cold.partition_point(|&i| i < index);
        self.cold.insert(pos, index);
        if let Some(g) = self.archive.as_mut() {
            g.offer(index);
        }
    }
}
