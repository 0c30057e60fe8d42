//! `WriterLink`: the atomics the recorder's writer and the maintainer share (contract 6: only
//! SPSC rings and atomics). The writer publishes which segment is active and how far its
//! pages are complete; the maintainer publishes what is durable. Only the maintainer creates
//! segment files; `next_index` is the next one it will prepare.
//!
//! Under `--cfg loom` the atomics are loom's, and the tests at the end of this file check
//! the seqlock and the durability latch over every interleaving loom explores.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// See the module docs.
/// `WriterLink::budget`: within it.
pub(crate) const BUDGET_OK: u8 = 0;
/// The next segment waits for freezes and deletes to make room.
pub(crate) const BUDGET_WAIT: u8 = 1;
/// Nothing can make room: only hot (and unarchived) data is left over the limit.
pub(crate) const BUDGET_EXHAUSTED: u8 = 2;

#[derive(Debug, Default)]
pub struct WriterLink {
    /// Seqlock generation of (`active_index`, `completed_*`): odd while the writer switches.
    gen: AtomicU64,
    /// Index of the segment the writer appends to.
    active_index: AtomicU64,
    /// Page-aligned offset below which the active segment holds only complete records.
    completed_off: AtomicU64,
    /// Last sequence number whose record ends at or below `completed_off`.
    completed_seq: AtomicU64,
    /// Address and length of the active segment's mapping (for the maintainer's pretouch).
    active_base: AtomicUsize,
    active_len: AtomicUsize,
    /// Offset just past the last appended record of the active segment.
    appended_off: AtomicU64,
    /// Sequence number of the last appended record.
    appended_seq: AtomicU64,
    /// The index of the next segment the maintainer prepares.
    pub next_index: AtomicU64,
    /// Every record up to here survives power loss.
    pub durable_seq: AtomicU64,
    /// First segment index not known to be persisted (all below it are).
    pub persisted_end: AtomicU64,
    /// The writer had to prepare a segment itself, or wait for one being prepared.
    pub stalls: AtomicU64,
    /// Sealed segments the writer had to keep because the persist ring was full.
    pub persist_ring_full: AtomicU64,
    /// The maintainer failed to prepare a segment (health degraded until one succeeds).
    pub prepare_failing: AtomicBool,
    /// The errno of the last failed preparation (0 after a success): a writer waiting for a
    /// prepared segment reports it instead of waiting out its limit.
    pub prepare_errno: AtomicI32,
    /// The log failed (contract 5): `durable_seq` never advances again.
    pub failed: AtomicBool,
    /// The disk budget holds back the next segment (`BUDGET_*`): the writer waits for
    /// room, or, exhausted, is told that nothing can make it.
    pub budget: std::sync::atomic::AtomicU8,
    /// While exhausted: bytes over the limit, and the limit (`Limit as u8`).
    pub budget_excess: AtomicU64,
    pub budget_limit: std::sync::atomic::AtomicU8,
    /// The writer is waiting for a prepared segment (Staged: every buffer is full and not
    /// yet drained; health degraded while it waits).
    pub writer_waiting: AtomicBool,
    /// Waits for a prepared segment so far (each counted once by the maintainer, even when
    /// it never sees the flag drop between two of them).
    pub waits: AtomicU64,
    /// Staged: the sequence number a `Recorder::sync()` waits for; while `durable_seq` is
    /// below it the maintainer drains at once instead of at the next interval.
    pub sync_wanted: AtomicU64,
    /// The writer's clock, for the maintainer to re-anchor (a log with time).
    pub(crate) clock: std::sync::OnceLock<std::sync::Arc<crate::clock::LogClock>>,
}

impl WriterLink {
    /// A link for a writer whose first active segment is `index`, continuing after
    /// `durable_seq` (everything recovered is durable).
    pub fn new(index: u64, first_seq: u64, mapping: (usize, usize)) -> Self {
        let link = WriterLink::default();
        link.active_base.store(mapping.0, Ordering::Relaxed);
        link.active_len.store(mapping.1, Ordering::Relaxed);
        link.active_index.store(index, Ordering::Relaxed);
        link.completed_seq.store(first_seq - 1, Ordering::Relaxed);
        link.appended_seq.store(first_seq - 1, Ordering::Relaxed);
        link.next_index.store(index + 1, Ordering::Relaxed);
        link.durable_seq.store(first_seq - 1, Ordering::Relaxed);
        link.persisted_end.store(index, Ordering::Relaxed);
        link
    }

    /// Writer: segment `index`, whose first record will be `first_seq`, is now active.
    pub(crate) fn begin_segment(&self, index: u64, first_seq: u64, mapping: (usize, usize)) {
        self.gen.fetch_add(1, Ordering::AcqRel); // odd: switching
                                                 // The stores below must not become visible before the odd generation: a reader that
                                                 // saw one of them then finds the generation changed (the reader's acquire fence
                                                 // pairs with this one; the standard seqlock, Boehm 2012).
        fence(Ordering::Release);
        self.active_index.store(index, Ordering::Relaxed);
        self.active_base.store(mapping.0, Ordering::Relaxed);
        self.active_len.store(mapping.1, Ordering::Relaxed);
        self.completed_off.store(0, Ordering::Relaxed);
        self.completed_seq.store(first_seq - 1, Ordering::Relaxed);
        self.appended_off.store(0, Ordering::Relaxed);
        self.appended_seq.store(first_seq - 1, Ordering::Relaxed);
        self.gen.fetch_add(1, Ordering::Release); // even: stable
    }

    /// Writer, before handing its last segment over at close: no mapping is active any more
    /// (the maintainer unmaps the segment once it has it; nothing may touch it after).
    pub(crate) fn retire_mapping(&self) {
        self.gen.fetch_add(1, Ordering::AcqRel); // odd: switching
        fence(Ordering::Release); // as in `begin_segment`
        self.active_base.store(0, Ordering::Relaxed);
        self.active_len.store(0, Ordering::Relaxed);
        self.gen.fetch_add(1, Ordering::Release); // even: stable
    }

    /// Writer: the pages below `off` hold complete records up to `seq`. Two plain stores on
    /// x86; called only when an append crosses a page boundary. Both are releases: the
    /// maintainer may read an offset newer than the seq it read, and copies the bytes up to
    /// that offset, so the offset itself must publish them (on aarch64 a relaxed store can
    /// become visible before the record's bytes; `loom_tests` shows it).
    #[inline]
    pub fn page_completed(&self, off: u64, seq: u64) {
        self.completed_off.store(off, Ordering::Release);
        self.completed_seq.store(seq, Ordering::Release);
    }

    /// Writer: the record `seq` ends at `off`. Two plain stores on x86; releases for the
    /// reason given at [`Self::page_completed`].
    #[inline]
    pub fn appended(&self, off: u64, seq: u64) {
        self.appended_off.store(off, Ordering::Release);
        self.appended_seq.store(seq, Ordering::Release);
    }

    /// Reads `read` under the seqlock: `None` while the writer is switching segments, or
    /// if it switched during the read.
    fn consistent<T>(&self, read: impl FnOnce() -> T) -> Option<T> {
        let g1 = self.gen.load(Ordering::Acquire);
        if g1 % 2 == 1 {
            return None;
        }
        let value = read();
        fence(Ordering::Acquire);
        (self.gen.load(Ordering::Relaxed) == g1).then_some(value)
    }

    /// Maintainer: (active index, mapping address, mapping length, appended offset).
    pub(crate) fn pretouch_snapshot(&self) -> Option<(u64, usize, usize, u64)> {
        self.consistent(|| {
            (
                self.active_index.load(Ordering::Acquire),
                self.active_base.load(Ordering::Acquire),
                self.active_len.load(Ordering::Acquire),
                self.appended_off.load(Ordering::Acquire),
            )
        })
    }

    /// Maintainer: (active index, appended offset, appended seq), as [`Self::snapshot`].
    pub(crate) fn appended_snapshot(&self) -> Option<(u64, u64, u64)> {
        self.consistent(|| {
            let index = self.active_index.load(Ordering::Acquire);
            let seq = self.appended_seq.load(Ordering::Acquire);
            (index, self.appended_off.load(Ordering::Acquire), seq)
        })
    }

    /// Maintainer: a consistent (active index, completed offset, completed seq), or `None`
    /// while the writer is switching segments. The seq is read before the offset, so the
    /// offset may be newer (never older), which only makes a sync cover more.
    pub fn snapshot(&self) -> Option<(u64, u64, u64)> {
        self.consistent(|| {
            let index = self.active_index.load(Ordering::Acquire);
            let seq = self.completed_seq.load(Ordering::Acquire);
            (index, self.completed_off.load(Ordering::Acquire), seq)
        })
    }

    /// Durable sequence number.
    /// The last sequence number appended (committed), as the writer last published it.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn appended_seq(&self) -> u64 {
        self.appended_seq.load(Ordering::Acquire)
    }

    pub fn durable(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Raises the durable sequence number (never lowers it), unless the log failed: after a
    /// failed fsync nothing is claimed durable again (contract 5).
    pub(crate) fn advance_durable(&self, seq: u64) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        self.durable_seq.fetch_max(seq, Ordering::AcqRel);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The seqlock: while the writer switches from segment 0 (its first page complete up to
    /// record 50) to segment 1 (first record 101), a reader sees the old segment whole, the
    /// new one whole, or nothing; never segment 1 with segment 0's page.
    #[test]
    fn a_snapshot_never_mixes_two_segments() {
        loom::model(|| {
            let link = Arc::new(WriterLink::new(0, 1, (0x2000, 4096)));
            link.page_completed(4096, 50);
            let writer = {
                let link = link.clone();
                loom::thread::spawn(move || link.begin_segment(1, 101, (0x4000, 4096)))
            };
            if let Some(s) = link.snapshot() {
                assert!(
                    s == (0, 4096, 50) || s == (1, 0, 100),
                    "mixed snapshot {s:?}"
                );
            }
            if let Some(p) = link.pretouch_snapshot() {
                assert!(
                    p == (0, 0x2000, 4096, 0) || p == (1, 0x4000, 4096, 0),
                    "mixed pretouch snapshot {p:?}"
                );
            }
            writer.join().unwrap();
        });
    }

    /// The drain copies the bytes up to the offset it read: every byte below it must be
    /// visible to it. The record bytes are loom cells, so a relaxed store of the offset (the
    /// bug this guards against) fails the model with a causality violation.
    #[test]
    fn the_appended_offset_publishes_the_bytes_below_it() {
        use loom::cell::UnsafeCell;
        loom::model(|| {
            let link = Arc::new(WriterLink::new(0, 1, (0, 0)));
            let bytes: Arc<[UnsafeCell<u8>; 2]> =
                Arc::new([UnsafeCell::new(0), UnsafeCell::new(0)]);
            let writer = {
                let (link, bytes) = (link.clone(), bytes.clone());
                loom::thread::spawn(move || {
                    for i in 0..2u64 {
                        // SAFETY: only this thread writes, and readers read a cell only below
                        // a published offset (what the model checks).
                        bytes[i as usize].with_mut(|p| unsafe { *p = i as u8 + 1 });
                        link.appended(i + 1, i + 1);
                        link.page_completed(i + 1, i + 1);
                    }
                })
            };
            let drained = |(_, off, seq): (u64, u64, u64)| {
                assert!(off >= seq, "offset {off} behind seq {seq}");
                for (j, cell) in bytes.iter().enumerate().take(off as usize) {
                    // SAFETY: the cell was written before `off` was published past it.
                    let b = cell.with(|p| unsafe { *p });
                    assert_eq!(b, j as u8 + 1, "byte {j} below offset {off} not visible");
                }
            };
            if let Some(s) = link.appended_snapshot() {
                drained(s);
            }
            if let Some(s) = link.snapshot() {
                drained(s);
            }
            writer.join().unwrap();
        });
    }

    /// Contract 5: once a thread has latched the log failed, no later advance on any thread
    /// moves `durable_seq`.
    #[test]
    fn durable_seq_never_moves_after_the_failure_latch() {
        loom::model(|| {
            let link = Arc::new(WriterLink::new(0, 1, (0, 0)));
            let t = {
                let link = link.clone();
                loom::thread::spawn(move || {
                    link.failed.store(true, Ordering::Release);
                    link.durable()
                })
            };
            link.advance_durable(10);
            let at_latch = t.join().unwrap();
            let after = link.durable();
            link.advance_durable(20);
            assert_eq!(link.durable(), after, "advanced after the latch was seen");
            // The advance to 10 happened before the latch or not at all, and a value the
            // latching thread saw is never taken back.
            assert!(
                matches!((at_latch, after), (0, 0) | (0, 10) | (10, 10)),
                "at the latch {at_latch}, after {after}"
            );
        });
    }
}
