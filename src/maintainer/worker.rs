//! The maintainer thread's loop: take work from the rings, start jobs (each a linked chain
//! or a pipeline of operations), submit once per turn, reap completions by `user_data` into
//! the job table, apply the retention limits, and back off exponentially when idle. Each
//! turn is [`Worker::run`]'s loop and [`Worker::plan`]: the writer's duties first (persist
//! retries, preparation, the timed drain or sync), then publishes, freezes and deletes; the
//! three kinds of job are planned and finished in `persisting`, `freezing` and `deleting`.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::archive_gate::ArchiveGate;
use super::budget::{Budget, Limit};
use super::compressor::Compressors;
use super::drain::{DRAIN_SLOT, PREPARE_SLOT};
use super::durability::{Durability, SYNC_SLOT};
use super::free::{FreeJob, FreeOutcome};
use super::freeze::{FreezeJob, FreezeOutcome};
use super::job::{split_ud, Ctx};
use super::persist::{PersistJob, PersistOutcome};
use super::retention::oldest_to_delete;
use super::summary_log::SummaryLog;
use super::Shared;
use crate::config::Config;
use crate::constants::{BATCH_SIZE, RETRY_MAX, RETRY_MIN, RING_ENTRIES};
use crate::error::{Error, Result};
use crate::io::{open_backend, Completion, IoBackend};
use crate::segment::names::{classify, FileKind};
use crate::segment::SealedSegment;
use crate::telemetry::{self, Hist, LocalHists};

mod deleting;
mod freezing;
mod persisting;

enum Job {
    Persist(PersistJob),
    Freeze(Box<FreezeJob>),
    Free(FreeJob),
}

/// Work that failed and waits before trying again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    index: u64,
    attempts: u32,
    not_before: Instant,
}

impl Retry {
    fn after_failure(index: u64, attempts: u32) -> Self {
        let delay = crate::backoff::backoff(RETRY_MIN, RETRY_MAX, attempts);
        Retry {
            index,
            attempts: attempts + 1,
            not_before: Instant::now() + delay,
        }
    }
}

/// A persist to retry: what is needed to reopen the segment.
struct PersistRetry {
    retry: Retry,
    path: PathBuf,
    used: u64,
    last_seq: u64,
    /// Staged: the buffer to recycle once the retry succeeds.
    slot: Option<usize>,
}

/// The consumer ends of the maintainer's three rings.
pub(crate) struct Rings {
    pub persist: rtrb::Consumer<SealedSegment>,
    pub freeze: rtrb::Consumer<PathBuf>,
    pub free: rtrb::Consumer<PathBuf>,
}

/// Longest nap of the loop while a chunk is at a compression helper.
const COMPRESS_POLL: Duration = Duration::from_micros(500);

pub(crate) struct Worker {
    config: Config,
    shared: Arc<Shared>,
    dir: File,
    /// `cold.summary` (see [`SummaryLog`]).
    summaries: Option<SummaryLog>,
    /// Sequence number after each cold segment's last record, where known (for readers).
    cold_end: std::collections::HashMap<u64, u64>,
    /// The slowest reader's position, and when it was read (`hold_for_readers`).
    readers: Option<(Instant, Option<u64>)>,
    /// The disk budget (sizes and ages of cold segments, free space).
    budget: Budget,
    /// The limit exceeded with nothing left to delete, while it lasts (logged once).
    over_budget: Option<Limit>,
    be: Option<Box<dyn IoBackend>>,
    persist_rx: rtrb::Consumer<SealedSegment>,
    freeze_rx: rtrb::Consumer<PathBuf>,
    free_rx: rtrb::Consumer<PathBuf>,
    /// Persisted `.wal` segments, oldest first.
    hot: VecDeque<u64>,
    /// The disk budget holds the next segment back: persisted hot segments are frozen
    /// early, whatever `max_segments` says, to make room.
    budget_pressure: bool,
    /// `.wal.lz4` segments, oldest first.
    cold: VecDeque<u64>,
    /// The job table; a job's slot is the high half of its operations' `user_data`.
    slots: Vec<Option<Job>>,
    /// Segments being frozen: as many compressing as there are helpers (one without), and
    /// one more, so that a segment's fdatasync, rename and unlink overlap with the next
    /// ones' compression.
    freezing: Vec<u64>,
    /// Where freezes' chunks are compressed (helpers start with the loop, in `run`).
    compress: Compressors,
    freeing: Vec<u64>,
    explicit_freeze: VecDeque<u64>,
    explicit_free: VecDeque<u64>,
    freeze_retry: Option<Retry>,
    free_retry: Vec<Retry>,
    leftover_retry: Vec<Retry>,
    persist_retry: Vec<PersistRetry>,
    /// Persists whose chain could not be submitted (nothing of it ran): kept whole, with
    /// their descriptor and staging tail, and submitted again after a backoff.
    unsubmitted: Vec<(Retry, PersistJob)>,
    completions: Vec<Completion>,
    sleep: Duration,
    /// The backend's wait failed once (logged once; the loop sleeps instead).
    wait_failed: bool,
    failed: bool,
    /// Present when the maintainer serves a recorder's writer.
    durability: Option<Durability>,
    /// Present when cold segments must be archived before they are deleted.
    archive: Option<ArchiveGate>,
    /// The maintainer's own histograms (compiled out without `fs1-metrics`).
    hists: LocalHists,
    /// Writes persisted hot segments' sparse indexes (started with the first of them).
    indexer: Option<super::indexer::Indexer>,
    /// The indexer could not start: not tried again.
    indexer_failed: bool,
}

impl Worker {
    pub fn new(
        config: Config,
        shared: Arc<Shared>,
        rings: Rings,
        (hot, cold): (Vec<u64>, Vec<u64>),
        hist_shared: telemetry::Shared,
    ) -> Result<Self> {
        let Rings {
            persist: persist_rx,
            freeze: freeze_rx,
            free: free_rx,
        } = rings;
        let dir = File::open(&config.dir).map_err(|e| Error::io("open dir", &config.dir, e))?;
        let slots = (0..config.persist_queue + 2 * BATCH_SIZE + 2)
            .map(|_| None)
            .collect();
        let stats = &shared.stats;
        stats.hot.store(hot.len() as u64, Ordering::Relaxed);
        stats.cold.store(cold.len() as u64, Ordering::Relaxed);
        let index = crate::logdir::summary::SummaryIndex::load(&config.dir);
        let cold_end = cold
            .iter()
            .filter_map(|&i| index.entry(i).map(|(s, _)| (i, s.next_seq())))
            .collect();
        Ok(Worker {
            summaries: SummaryLog::open(&config.dir),
            cold_end,
            readers: None,
            budget: Budget::new(&config.dir, &cold),
            over_budget: None,
            sleep: config.min_sleep,
            wait_failed: false,
            config,
            shared,
            dir,
            be: None,
            persist_rx,
            freeze_rx,
            free_rx,
            hot: hot.into(),
            budget_pressure: false,
            cold: cold.into(),
            slots,
            freezing: Vec::new(),
            compress: Compressors::start(0, &[]),
            freeing: Vec::new(),
            explicit_freeze: VecDeque::new(),
            explicit_free: VecDeque::new(),
            freeze_retry: None,
            free_retry: Vec::new(),
            leftover_retry: Vec::new(),
            persist_retry: Vec::new(),
            unsubmitted: Vec::new(),
            completions: Vec::with_capacity(RING_ENTRIES as usize * 2),
            failed: false,
            durability: None,
            archive: None,
            hists: LocalHists::new(hist_shared),
            indexer: None,
            indexer_failed: false,
        })
    }

    /// Serve a recorder's writer: prepare segments ahead and keep `durable_seq`.
    pub(crate) fn attach(&mut self, durability: Durability) {
        self.durability = Some(durability);
    }

    /// Delete cold segments only after the archiver confirms them; the cold segments already
    /// here are offered first.
    pub(crate) fn attach_archive(&mut self, mut gate: ArchiveGate) {
        for &i in &self.cold {
            gate.offer(i);
        }
        self.archive = Some(gate);
        self.update_gauges();
    }

    /// Sets up the backend chosen by the config (io_uring, falling back to blocking).
    pub(crate) fn open_backend(&mut self) -> Result<()> {
        if self.be.is_some() {
            return Ok(());
        }
        let (be, fell_back) = open_backend(
            self.config.backend,
            RING_ENTRIES,
            self.config.simulate_uring_error,
            self.config.core,
            self.config.fault_plan.clone(),
        )
        .map_err(|e| Error::io("io_uring setup", &self.config.dir, e))?;
        self.shared
            .stats
            .fell_back
            .store(fell_back, Ordering::Relaxed);
        log::info!("segment maintainer I/O backend: {}", be.name());
        self.be = Some(be);
        Ok(())
    }

    /// The thread body.
    pub fn run(mut self) {
        if let Some(core) = self.config.core {
            let ok = core_affinity::set_for_current(core_affinity::CoreId { id: core });
            self.shared.stats.pinned.store(ok, Ordering::Relaxed);
            if !ok {
                log::warn!("could not pin the segment maintainer to core {core}");
            }
        }
        self.start_compressors();
        self.follow_active_segment();
        loop {
            let turn = telemetry::now();
            let stopping = self.shared.stop.load(Ordering::Acquire);
            let mut did = self.intake();
            did |= self.plan(stopping);
            let be = self.be.as_mut().expect("backend opened before run");
            if let Err(e) = be.submit() {
                log::error!("io submit failed: {e}");
            }
            self.completions.clear();
            be.reap(&mut self.completions);
            let completions = std::mem::take(&mut self.completions);
            did |= !completions.is_empty();
            for c in &completions {
                self.dispatch(*c);
            }
            self.completions = completions;
            did |= self.take_compressed();
            if did {
                self.hists.record_since(Hist::Loop, turn);
                if self.config.simulate_maintainer_panic {
                    panic!("simulated maintainer panic (test hook)");
                }
            }
            self.hists.maybe_publish(false);
            if stopping && !did && self.idle() {
                break;
            }
            self.backoff(did);
        }
        self.hists.maybe_publish(true);
        self.shared
            .stats
            .cpu_ns
            .store(telemetry::thread_cpu_ns(), Ordering::Relaxed);
        for (_, job) in self.unsubmitted.drain(..) {
            log::error!(
                "{}: persist never submitted; left for recovery",
                job.path.display()
            );
            job.close_unsubmitted();
        }
        if !self.persist_retry.is_empty() || self.freeze_retry.is_some() {
            log::warn!("segment maintainer stopped with failed work left for recovery");
        }
    }

    /// Nothing queued and nothing in flight.
    fn idle(&self) -> bool {
        self.slots.iter().all(Option::is_none)
            && self.unsubmitted.is_empty()
            && !self.durability.as_ref().is_some_and(Durability::busy)
            && self.persist_rx.is_empty()
            && self.explicit_freeze.is_empty()
            && self.explicit_free.is_empty()
            && !self.waiting_for_archive()
    }

    /// While the archiver runs, a stopping maintainer waits for the confirmations that let
    /// retention delete down to its limit (the archiver stops at its close deadline).
    fn waiting_for_archive(&self) -> bool {
        let Some(g) = &self.archive else {
            return false;
        };
        if g.archiver_done() {
            return false;
        }
        let over = self.cold.len() > self.config.max_compressed_segments;
        g.has_outbox() || over && self.cold.front().is_some_and(|&i| !g.is_archived(i))
    }

    fn backoff(&mut self, did_work: bool) {
        let stats = &self.shared.stats;
        if did_work {
            if self.sleep > self.config.min_sleep {
                stats.backoff_resets.fetch_add(1, Ordering::Relaxed);
            }
            self.sleep = self.config.min_sleep;
            stats.busy_turns.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.idle_turns.fetch_add(1, Ordering::Relaxed);
            let be = self.be.as_mut().expect("backend");
            let in_flight = be.in_flight() > 0;
            // A chunk at a compression helper: the helper unparks this thread when it is
            // done, which a wait on the ring does not see, so that wait is kept short.
            let helper = self.compress.outstanding() > 0;
            let nap = match &self.durability {
                _ if helper && in_flight => COMPRESS_POLL,
                // Staged: wait on the ring while anything is in flight (a drain's fdatasync
                // wakes the loop, which starts the next drain at once). Idle, continuous:
                // poll for new records, backing off from min_sleep to `drain_gap` (how long
                // a record can wait for an idle maintainer). Timed: sleep until the next
                // drain is due.
                Some(d) if d.staged() => match in_flight {
                    true => self.config.max_sleep,
                    false if self.config.continuous_drain => self
                        .sleep
                        .min(self.config.drain_gap.max(self.config.min_sleep)),
                    false => d.next_at().saturating_duration_since(Instant::now()),
                }
                .min(self.config.max_sleep)
                .min(self.config.sync_interval),
                // Never sleep past the next timed sync: that bounds the durability lag.
                Some(d) => self
                    .sleep
                    .min(d.next_at().saturating_duration_since(Instant::now())),
                None => self.sleep,
            };
            let waited = match in_flight {
                true => be.wait(nap),
                false => Ok(()),
            };
            if let Err(e) = waited {
                // The turn must still pause, or the loop would spin on the error.
                if !self.wait_failed {
                    log::warn!("waiting for io completions failed ({e}); sleeping instead");
                    self.wait_failed = true;
                }
                std::thread::sleep(nap);
            } else if !in_flight && helper {
                std::thread::park_timeout(nap);
            } else if !in_flight && !nap.is_zero() {
                std::thread::sleep(nap);
            }
            self.sleep = (self.sleep * 2).min(self.config.max_sleep);
        }
        stats
            .sleep_ns
            .store(self.sleep.as_nanos() as u64, Ordering::Relaxed);
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            be: self.be.as_deref_mut().expect("backend"),
            dirfd: self.dir.as_raw_fd(),
            dir: &self.config.dir,
            config: &self.config,
            hists: &mut self.hists,
            summaries: self.summaries.as_mut(),
            compress: &mut self.compress,
        }
    }

    /// Takes sealed segments and operator requests off the rings.
    fn intake(&mut self) -> bool {
        let mut did = self.archive.as_mut().is_some_and(ArchiveGate::poll);
        for _ in 0..BATCH_SIZE {
            let Some(slot) = self.free_slot() else { break };
            let Ok(seg) = self.persist_rx.peek() else {
                break;
            };
            // Segments are persisted in log order, in both write paths: a persisted
            // (truncated) segment proves to recovery that every segment before it is durable
            // (docs/FORMAT.md), so persist waits until every earlier segment is durable.
            let in_order = self
                .durability
                .as_ref()
                .map_or(true, |d| seg.index <= d.persisted_end());
            if !in_order {
                // An earlier segment will never be durable here: the log failed, or it is
                // stopping with that segment's persist left for recovery (a retry). This one
                // cannot be persisted in order either: it is left as it is (sealed on disk,
                // Direct; in its staging buffer, which the recorder then keeps, Staged).
                let stuck = self.failed
                    || (self.shared.stop.load(Ordering::Acquire)
                        && !self
                            .slots
                            .iter()
                            .any(|j| matches!(j, Some(Job::Persist(_)))));
                if !stuck {
                    break;
                }
                if let Ok(seg) = self.persist_rx.pop() {
                    log::warn!(
                        "segment {} left unpersisted for recovery: an earlier one is not durable",
                        seg.index
                    );
                    self.shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    did = true;
                }
                continue;
            }
            // Direct: a watermark write to the segment in flight would extend the file
            // again after persist's truncate; wait for the sync that carries it.
            if self
                .durability
                .as_ref()
                .is_some_and(|d| d.marking(seg.index))
            {
                break;
            }
            let drain = self.durability.as_mut().and_then(|d| d.drain.as_mut());
            let tail = match (seg.staged.is_some(), drain) {
                // Never two writes of one segment in flight: wait for its drain.
                (true, Some(d)) if d.busy_with(seg.index) => break,
                (true, Some(d)) => d.take_for_persist(seg.index),
                _ => None,
            };
            let Ok(seg) = self.persist_rx.pop() else {
                unreachable!("peeked above; only this thread pops");
            };
            if let Some(d) = self.durability.as_mut() {
                d.persist_started(seg.index);
            }
            self.start_persist(slot, PersistJob::new(seg, tail));
            did = true;
        }
        while let Ok(path) = self.freeze_rx.pop() {
            did = true;
            match self.requested_index(&path, true) {
                Some(i) => self.explicit_freeze.push_back(i),
                None => self.reject(&path),
            }
        }
        while let Ok(path) = self.free_rx.pop() {
            did = true;
            match self.requested_index(&path, false) {
                Some(i) => self.explicit_free.push_back(i),
                None => self.reject(&path),
            }
        }
        did
    }

    /// The index of a requested file if it is one of our hot (or cold) segments here.
    fn requested_index(&self, path: &std::path::Path, hot: bool) -> Option<u64> {
        if path.parent() != Some(self.config.dir.as_path()) {
            return None;
        }
        let kind = classify(path.file_name()?.to_str()?);
        match (kind, hot) {
            (FileKind::Hot(i), true) if self.hot.contains(&i) => Some(i),
            (FileKind::Cold(i), false) if self.cold.contains(&i) => Some(i),
            _ => None,
        }
    }

    fn reject(&self, path: &std::path::Path) {
        log::warn!(
            "request for {} refused: not a segment in its tier",
            path.display()
        );
        self.shared
            .stats
            .rejected_requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Starts retention, requested and retried work. True if it started anything.
    fn plan(&mut self, stopping: bool) -> bool {
        let mut did = false;
        let now = Instant::now();
        // The writer latches the log itself when its own sync fails: from then on nothing
        // more is deleted here either.
        self.failed |= self.shared.stats.is_failed();
        did |= self.plan_unsubmitted(now, stopping);
        if !stopping {
            did |= self.plan_persist_retries(now);
        }
        if let Some(mut d) = self.durability.take() {
            d.pretouch(&self.shared.stats);
            d.reanchor_clock(now);
            d.note_stall(&self.shared.stats);
            d.publish_cursor();
            // After a failure no new segment is made: appends are refused anyway. Nor one
            // that the disk budget has no room for (the hard cap).
            let held = self.budget_holds_next(&d);
            d.set_room_coming(!self.freezing.is_empty() || !self.freeing.is_empty());
            let no_more = stopping || self.failed || held;
            did |= d.plan_prepare(&mut self.ctx(), no_more);
            if !self.failed {
                let (interval, busy) = (self.config.sync_interval, self.config.sync_while_busy);
                match d.plan_sync(&mut self.ctx(), interval, busy) {
                    Ok(started) => did |= started,
                    Err(e) => log::warn!("sync of the active segment: {e}"),
                }
            }
            let failure = d.take_failure();
            self.durability = Some(d);
            if let Some(e) = failure {
                self.fsync_failed(e);
            }
        }
        if self.failed {
            self.abandon_unpublished();
            return did; // contract 5: after an fsync error nothing more is deleted
        }
        did |= self.plan_publish();
        did |= self.plan_freeze(now, stopping);
        did |= self.plan_free(now, stopping);
        did
    }

    /// Routes a completion to its job; handles the job's end.
    fn dispatch(&mut self, c: Completion) {
        let (slot, tag) = split_ud(c.user_data);
        if matches!(slot, PREPARE_SLOT | DRAIN_SLOT | SYNC_SLOT) {
            self.dispatch_durability(slot, tag, c.result);
            return;
        }
        let slot = slot as usize;
        let Some(job) = self.slots.get_mut(slot).and_then(Option::take) else {
            log::error!("completion for an empty slot {slot} (tag {tag:#x})");
            return;
        };
        match job {
            Job::Persist(mut j) => {
                let outcome = j.complete(tag, c.result);
                self.credit_durable(&mut j);
                match outcome {
                    None => self.slots[slot] = Some(Job::Persist(j)),
                    Some(o) => self.persist_done(j, o),
                }
            }
            Job::Freeze(mut j) => {
                let outcome = j.complete(slot as u32, tag, c.result, &mut self.ctx());
                match outcome {
                    None => self.slots[slot] = Some(Job::Freeze(j)),
                    Some(o) => self.end_freeze(slot, j, o),
                }
            }
            Job::Free(mut j) => {
                let outcome = j.complete(tag, c.result, &self.ctx());
                match outcome {
                    None => self.slots[slot] = Some(Job::Free(j)),
                    Some(o) => self.free_done(j, o),
                }
            }
        }
    }

    /// Completions of the reserved slots (prepare, drain, active-segment sync) go to the
    /// writer's durability duties; a sync failure they report latches the log.
    fn dispatch_durability(&mut self, slot: u32, tag: u32, result: i32) {
        let Some(mut d) = self.durability.take() else {
            return; // only a recorder's maintainer uses these slots
        };
        let mut cx = self.ctx();
        let failure = match slot {
            PREPARE_SLOT => {
                d.on_prepare_complete(tag, result, &mut cx);
                d.take_failure()
            }
            DRAIN_SLOT => d.on_drain_complete(tag, result, &mut cx).err(),
            _ => d.on_sync_complete(tag, result, &mut cx).err(),
        };
        self.durability = Some(d);
        if let Some(e) = failure {
            self.fsync_failed(e);
        }
    }

    /// Contract 5: latches the log failed with `e` (the first cause is kept), stops
    /// `durable_seq` and every deletion. Never retried.
    fn fsync_failed(&mut self, e: Error) {
        log::error!("{e}: the log failed; nothing more is deleted or claimed durable (contract 5)");
        self.failed = true;
        self.shared
            .stats
            .fsync_failures
            .fetch_add(1, Ordering::Relaxed);
        if let Some(d) = &self.durability {
            d.latch_failed();
        }
        self.shared.stats.latch_failed(e);
    }

    fn update_gauges(&self) {
        let s = &self.shared.stats;
        s.hot.store(self.hot.len() as u64, Ordering::Relaxed);
        s.cold.store(self.cold.len() as u64, Ordering::Relaxed);
        let pending = self.persist_retry.len()
            + self.unsubmitted.len()
            + usize::from(self.freeze_retry.is_some())
            + self.free_retry.len()
            + self.leftover_retry.len();
        s.pending_retries.store(pending as u64, Ordering::Relaxed);
        let over = self
            .cold
            .len()
            .saturating_sub(self.config.max_compressed_segments);
        s.archive_waiting.store(over as u64, Ordering::Relaxed);
        let max_hot = self.config.max_segments;
        s.hot_backlog_segments.store(
            self.hot.len().saturating_sub(max_hot) as u64,
            Ordering::Relaxed,
        );
        s.hot_backlog_degraded
            .store(self.hot.len() > 2 * max_hot, Ordering::Relaxed);
        if over == 0 {
            s.held_for_readers.store(0, Ordering::Relaxed);
        }
    }
}
