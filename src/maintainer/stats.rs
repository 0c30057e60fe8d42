//! Counters and health the maintainer publishes with relaxed atomics (read by anyone, written
//! only by the maintainer thread), so reading them never stalls it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Health of the maintainer (and of the recorder that owns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Everything is keeping up.
    Ok,
    /// Work is failing and being retried (for example ENOSPC during a freeze), or queues
    /// overflowed; nothing is lost.
    Degraded,
    /// An fsync failed (contract 5): data may not be durable; the affected files are kept,
    /// nothing more is deleted, and the recorder refuses appends.
    Failed,
}

/// The maintainer's counters. Monotonic unless noted.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MaintainerStats {
    /// Segments persisted (truncated, fdatasynced, closed).
    pub persisted: Counter,
    /// Segments frozen to `.wal.lz4`.
    pub frozen: Counter,
    /// Cold segments deleted by retention or request.
    pub freed: Counter,
    /// Freezes that failed and will be retried.
    pub compress_failures: Counter,
    /// Persist chains that failed and will be retried.
    pub persist_failures: Counter,
    /// Unlinks (of `.wal` after a freeze, or of `.wal.lz4`) that failed and will be retried.
    pub unlink_failures: Counter,
    /// fsync/fdatasync failures (each one sets health to failed).
    pub fsync_failures: Counter,
    /// ENOSPC seen during a freeze.
    pub enospc: Counter,
    /// Bytes of `.wal` compressed.
    pub bytes_in: Counter,
    /// Bytes of `.wal.lz4` written.
    pub bytes_out: Counter,
    /// Requests (freeze/free by path) refused because the file is not a hot/cold segment.
    pub rejected_requests: Counter,
    /// Hot segments now (gauge).
    pub hot: Counter,
    /// Cold segments now (gauge).
    pub cold: Counter,
    /// Work waiting for a retry (gauge); health is degraded while it is not zero.
    pub pending_retries: Counter,
    /// Cold segments kept beyond `max_compressed_segments` because their upload to the
    /// archive is not confirmed yet (gauge; always 0 without an archive).
    pub archive_waiting: Counter,
    /// The loop's current idle sleep in nanoseconds (gauge): grows while idle, resets on work.
    pub sleep_ns: Counter,
    /// Times the backoff went back to `min_sleep` after growing (work arrived while idle).
    pub backoff_resets: Counter,
    /// Turns of the loop that did work.
    pub busy_turns: Counter,
    /// Turns of the loop that found nothing to do.
    pub idle_turns: Counter,
    /// CPU time the maintainer thread used, in ns (written when the thread ends).
    pub cpu_ns: Counter,
    /// Direct mode: pretouches (`MADV_POPULATE_WRITE` ahead of the writer) that failed; a
    /// failure means the range was not a live mapping, which must never happen.
    pub pretouch_failures: Counter,
    /// Sealed segments left unpersisted (the log failed, or it stopped with an earlier
    /// segment's persist pending): recovery finishes them at the next open.
    pub abandoned: Counter,
    /// Cold segments kept beyond `max_compressed_segments` for a reader that has not read
    /// them yet (gauge; `hold_for_readers`).
    pub held_for_readers: Counter,
    /// Bytes by which a disk limit (`max_disk_bytes`, `min_free_bytes`) is exceeded while
    /// nothing retention may delete is left (gauge; 0 when within); health is degraded then.
    pub budget_excess_bytes: Counter,
    /// A disk limit (an age limit included) is exceeded and nothing retention may delete is
    /// left (hot or unarchived segments only).
    pub over_budget: Flag,
    /// The disk budget holds the next segment back (gauge); health is degraded meanwhile.
    pub budget_holds_next: Flag,
    /// Hot segments beyond `max_segments` (gauge); health is degraded beyond twice it.
    pub hot_backlog_segments: Counter,
    /// The hot backlog exceeds twice `max_segments`.
    pub hot_backlog_degraded: Flag,
    /// Compression helper threads running (gauge; 0: freezes compress on the loop).
    pub compress_threads: Counter,
    /// LZ4 acceleration of the freeze started last (gauge; 1: none, higher while the hot
    /// backlog exceeds `max_segments` and `auto_accelerate` is on).
    pub freeze_acceleration: Counter,
    /// Freezes started with acceleration above 1.
    pub accelerated_freezes: Counter,
    /// Rollover stalls (the writer waiting for a prepared segment), by what the maintainer
    /// was at when it saw the wait: every staging buffer still holding data not yet drained
    /// and persisted (the disk behind the writer),
    pub stall_no_free_buffer: Counter,
    /// the next segment's preparation in flight (its file being created or zero-filled),
    pub stall_preparing: Counter,
    /// preparation failing and backing off (a full disk),
    pub stall_prepare_retry: Counter,
    /// the disk budget holding the next segment back until freezes and deletes make room,
    pub stall_budget: Counter,
    /// or none of these: the maintainer's loop had not got to it yet (busy elsewhere, such
    /// as compressing a chunk).
    pub stall_maintainer_late: Counter,
    /// Segments the scrub verified in full (each pass counts again).
    pub scrubbed_segments: Counter,
    /// Bytes of segment files the scrub read.
    pub scrubbed_bytes: Counter,
    /// Passes of the scrub over the whole log.
    pub scrub_passes: Counter,
    /// Damaged segments the scrub found (each file once); health is degraded while not zero.
    pub scrub_corruptions: Counter,
    /// Set once if io_uring could not be set up and the blocking backend is used.
    pub fell_back: Flag,
    /// Whether pinning the thread to the configured core succeeded.
    pub pinned: Flag,
    /// Read by the writer on every append: on a cache line (two, for the adjacent-line
    /// prefetcher) of its own, so that the counters the maintainer and the scrub write all
    /// the time never invalidate the writer's copy.
    failed: OwnLine,
    /// The first failure that latched `failed` (read only once failed: never on the hot path).
    failure: Mutex<Option<Arc<Error>>>,
}

/// A counter or gauge of [`MaintainerStats`]: anyone reads it, only the maintainer writes
/// it (the writes are crate-private, so a user cannot corrupt the log's health).
///
/// ```compile_fail
/// # fn f(stats: &wal_recorder::maintainer::MaintainerStats) {
/// stats.pending_retries.store(0, std::sync::atomic::Ordering::Relaxed); // not for users
/// # }
/// ```
/// ```
/// # fn f(stats: &wal_recorder::maintainer::MaintainerStats) -> u64 {
/// stats.pending_retries.get()
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Its value now (a relaxed load: never stalls the maintainer).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn load(&self, o: Ordering) -> u64 {
        self.0.load(o)
    }

    pub(crate) fn store(&self, v: u64, o: Ordering) {
        self.0.store(v, o)
    }

    pub(crate) fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_add(v, o)
    }
}

/// A flag of [`MaintainerStats`], read-only outside the crate like [`Counter`].
#[derive(Debug, Default)]
pub struct Flag(AtomicBool);

impl Flag {
    /// Whether it is set now (a relaxed load).
    #[inline]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn load(&self, o: Ordering) -> bool {
        self.0.load(o)
    }

    pub(crate) fn store(&self, v: bool, o: Ordering) {
        self.0.store(v, o)
    }
}

/// An atomic flag alone on 128 bytes (rtrb's and crossbeam's `CachePadded`).
#[derive(Debug, Default)]
#[repr(align(128))]
struct OwnLine(AtomicBool);

impl std::ops::Deref for OwnLine {
    type Target = AtomicBool;
    fn deref(&self) -> &AtomicBool {
        &self.0
    }
}

const _: () = assert!(std::mem::align_of::<OwnLine>() == 128);

impl MaintainerStats {
    /// The maintainer's counters and gauges as the telemetry exports them; the writer's
    /// (rollovers, stalls, sequence numbers) and the archive's are the caller's to fill.
    pub fn counters(&self) -> crate::telemetry::Counters {
        let g = Counter::get;
        crate::telemetry::Counters {
            persisted: g(&self.persisted),
            frozen: g(&self.frozen),
            freed: g(&self.freed),
            compress_failures: g(&self.compress_failures),
            persist_failures: g(&self.persist_failures),
            unlink_failures: g(&self.unlink_failures),
            fsync_failures: g(&self.fsync_failures),
            enospc: g(&self.enospc),
            bytes_in: g(&self.bytes_in),
            bytes_out: g(&self.bytes_out),
            hot: g(&self.hot),
            cold: g(&self.cold),
            fell_back_to_blocking: u64::from(self.fell_back.load(Ordering::Relaxed)),
            held_for_readers: g(&self.held_for_readers),
            budget_excess_bytes: g(&self.budget_excess_bytes),
            hot_backlog_segments: g(&self.hot_backlog_segments),
            freeze_acceleration: g(&self.freeze_acceleration),
            accelerated_freezes: g(&self.accelerated_freezes),
            scrubbed_segments: g(&self.scrubbed_segments),
            scrubbed_bytes: g(&self.scrubbed_bytes),
            scrub_passes: g(&self.scrub_passes),
            scrub_corruptions: g(&self.scrub_corruptions),
            ..Default::default()
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        if self.failed.load(Ordering::Acquire) {
            Health::Failed
        } else if self.pending_retries.load(Ordering::Relaxed) > 0
            || self.scrub_corruptions.load(Ordering::Relaxed) > 0
            || self.over_budget.load(Ordering::Relaxed)
            || self.budget_holds_next.load(Ordering::Relaxed)
            || self.hot_backlog_degraded.load(Ordering::Relaxed)
        {
            Health::Degraded
        } else {
            Health::Ok
        }
    }

    /// Whether an fsync failed (one atomic load; the writer checks it on every append).
    #[inline]
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Marks health failed for good, keeping the first `cause` (contract 5: a failed fsync,
    /// fdatasync, msync or drain write, whichever thread saw it). Sticky: nothing clears it.
    pub(crate) fn latch_failed(&self, cause: Error) {
        let mut first = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(Arc::new(cause));
        }
        self.failed.store(true, Ordering::Release);
    }

    /// The failure that latched the log, once it failed.
    pub fn failure(&self) -> Option<Arc<Error>> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
