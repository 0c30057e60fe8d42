//! Persisting sealed segments in log order, their retries, and the durable frontier they
//! advance.

use super::*;
use crate::constants::MAX_PERSIST_QUEUE;

/// Attempts at submitting a persist while the maintainer stops, before it is left for
/// recovery.
const STOP_SUBMIT_ATTEMPTS: u32 = 8;

impl Worker {
    pub(super) fn start_persist(&mut self, slot: usize, mut job: PersistJob) {
        match job.start(slot as u32, &mut self.ctx()) {
            Ok(()) => self.slots[slot] = Some(Job::Persist(job)),
            Err(e) => self.not_submitted(job, 0, &e),
        }
    }

    /// A chain that could not be pushed ran nothing: no write, no fdatasync. Nothing to
    /// latch (contract 5 is about fsyncs that ran); the job keeps its descriptor and staging
    /// tail and is submitted again after a backoff.
    fn not_submitted(&mut self, job: PersistJob, attempts: u32, e: &std::io::Error) {
        log::error!(
            "submitting persist of {} (attempt {}): {e}; retrying",
            job.path.display(),
            attempts + 1
        );
        self.shared
            .stats
            .persist_failures
            .fetch_add(1, Ordering::Relaxed);
        self.unsubmitted
            .push((Retry::after_failure(job.index, attempts), job));
        assert!(
            self.unsubmitted.len() <= self.slots.len() + MAX_PERSIST_QUEUE,
            "unsubmitted persists are bounded by the jobs that can exist"
        );
        self.update_gauges();
    }

    /// Submits again the persists whose chain could not be pushed, oldest first. While
    /// stopping, one that keeps failing is given up after a few attempts (its descriptor
    /// closed, the file left for recovery) so that the stop ends.
    pub(super) fn plan_unsubmitted(&mut self, now: Instant, stopping: bool) -> bool {
        let mut did = false;
        while let Some(pos) = self
            .unsubmitted
            .iter()
            .position(|(r, _)| r.not_before <= now)
        {
            let Some(slot) = self.free_slot() else { break };
            let (retry, mut job) = self.unsubmitted.remove(pos);
            did = true;
            match job.start(slot as u32, &mut self.ctx()) {
                Ok(()) => self.slots[slot] = Some(Job::Persist(job)),
                Err(e) if stopping && retry.attempts >= STOP_SUBMIT_ATTEMPTS => {
                    log::error!(
                        "{}: persist never submitted ({e}); left for recovery",
                        job.path.display()
                    );
                    job.close_unsubmitted();
                }
                Err(e) => self.not_submitted(job, retry.attempts, &e),
            }
        }
        did
    }

    pub(super) fn retry_persist(&mut self, job: &PersistJob, attempts: u32) {
        self.shared
            .stats
            .persist_failures
            .fetch_add(1, Ordering::Relaxed);
        self.persist_retry.push(PersistRetry {
            retry: Retry::after_failure(job.index, attempts),
            path: job.path.clone(),
            used: job.used,
            last_seq: job.last_seq,
            slot: job.slot,
        });
        self.update_gauges();
    }

    pub(super) fn plan_persist_retries(&mut self, now: Instant) -> bool {
        let mut did = false;
        while let Some(pos) = self
            .persist_retry
            .iter()
            .position(|r| r.retry.not_before <= now)
        {
            let Some(slot) = self.free_slot() else { break };
            let r = self.persist_retry.swap_remove(pos);
            did = true;
            match PersistJob::reopen(r.retry.index, r.path.clone(), r.used, r.last_seq) {
                Ok(mut job) => {
                    job.slot = r.slot;
                    let started = job.start(slot as u32, &mut self.ctx());
                    match started {
                        Ok(()) => self.slots[slot] = Some(Job::Persist(job)),
                        Err(e) => self.not_submitted(job, r.retry.attempts, &e),
                    }
                }
                Err(e) => {
                    log::error!("persist retry: {e}");
                    self.persist_retry.push(PersistRetry {
                        retry: Retry::after_failure(r.retry.index, r.retry.attempts),
                        ..r
                    });
                }
            }
        }
        did
    }

    pub(super) fn persist_done(&mut self, job: PersistJob, outcome: PersistOutcome) {
        match outcome {
            PersistOutcome::Persisted => {
                self.hists.record_since(Hist::Close, job.sealed_at);
                self.hists.record(Hist::Fdatasync, job.fdatasync_ns);
                let mut job = job;
                self.credit_durable(&mut job);
                if let Some(d) = self.durability.as_mut() {
                    if let (Some(slot), Some(drain)) = (job.slot, d.drain.as_mut()) {
                        drain.recycle(slot, job.used);
                    }
                }
                let pos = self.hot.partition_point(|&i| i < job.index);
                self.hot.insert(pos, job.index);
                self.shared.stats.persisted.fetch_add(1, Ordering::Relaxed);
                self.index_persisted(job.index);
            }
            PersistOutcome::FsyncFailed(e) => self.fsync_failed(e),
            PersistOutcome::Retry(e) => {
                log::warn!("persist failed, will retry: {e}");
                self.retry_persist(&job, 0);
            }
        }
        self.update_gauges();
    }

    /// Has the indexer write the sparse index of persisted segment `index`.
    fn index_persisted(&mut self, index: u64) {
        if let Some(ix) = self.indexer() {
            ix.offer(index);
        }
    }

    /// At the start of the loop: has the indexer follow the writer's active segment (a
    /// recorder's; a maintainer without a writer has none).
    pub(in crate::maintainer) fn follow_active_segment(&mut self) {
        let Some(active) = self.durability.as_ref().and_then(|d| d.active_index()) else {
            return;
        };
        if let Some(ix) = self.indexer() {
            ix.follow(active);
        }
    }

    /// The indexer, started on first use.
    fn indexer(&mut self) -> Option<&mut super::super::indexer::Indexer> {
        if self.indexer.is_none() && !self.indexer_failed {
            self.indexer = super::super::indexer::Indexer::start(self.config.dir.clone());
            self.indexer_failed = self.indexer.is_none();
        }
        self.indexer.as_mut()
    }

    /// Tells `durable_seq` about a persisted segment as soon as its records are durable
    /// (once per job).
    pub(super) fn credit_durable(&mut self, job: &mut PersistJob) {
        if job.credited || !job.durable() {
            return;
        }
        job.credited = true;
        if let Some(d) = self.durability.as_mut() {
            d.on_persisted(job.index, job.last_seq);
        }
    }
}
