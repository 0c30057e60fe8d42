//! Preparing segments ahead of the writer (Direct: created, preallocated, synced with the
//! directory, mapped and prefaulted here; Staged: the drain's asynchronous prepare), and
//! counting why the writer waits when none is ready.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::job::Ctx;
use super::Durability;
use crate::constants::{RETRY_MAX, RETRY_MIN};
use crate::error::{Error, Result};
use crate::segment::PreparedSegment;

impl Durability {
    /// Prepares one segment if the ring has room. True if it did work. Direct mode creates
    /// and maps it here; Staged mode starts the drain's asynchronous prepare (completed in
    /// [`Self::on_prepare_complete`]).
    pub(crate) fn plan_prepare(&mut self, cx: &mut Ctx<'_>, stopping: bool) -> bool {
        if stopping || self.prepared_tx.slots() == 0 || Instant::now() < self.prepare_not_before {
            return false;
        }
        if self
            .drain
            .as_ref()
            .is_some_and(|d| d.preparing() || !d.has_free())
        {
            return false; // one at a time; or every buffer is in use (the disk is behind)
        }
        let link = &self.link;
        let index = link.next_index.load(Ordering::Acquire);
        if link
            .next_index
            .compare_exchange(index, index + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false; // the writer claimed it meanwhile
        }
        let made = match self.drain.as_mut() {
            Some(d) => match d.start_prepare(index, cx) {
                Ok(()) => return true,
                Err(e) => Err(e),
            },
            None => PreparedSegment::create_with_faults(
                cx.dir,
                index,
                cx.config.segment_size,
                crate::segment::watermark::WATERMARK_LEN,
                cx.config.fault_plan.as_ref(),
            ),
        };
        self.prepared(index, made);
        true
    }

    /// Tells the prepare whether a freeze or a delete in flight may free space: a full disk
    /// (ENOSPC) is then waited out rather than reported to the writer.
    pub(crate) fn set_room_coming(&mut self, coming: bool) {
        if self.room_coming && !coming && self.link.prepare_failing.load(Ordering::Relaxed) {
            // What was in flight has ended: try again now, not after the backoff.
            self.prepare_not_before = Instant::now();
        }
        self.room_coming = coming;
    }

    /// A completion of the drain's prepare (Staged mode).
    pub fn on_prepare_complete(&mut self, tag: u32, result: i32, cx: &mut Ctx<'_>) {
        let d = self
            .drain
            .as_mut()
            .expect("prepare completions come from the drain");
        if let Some((index, made)) = d.on_prepare_complete(tag, result, cx) {
            self.prepared(index, made);
        }
    }

    /// Hands a prepared segment to the writer, or notes the failure and when to retry.
    fn prepared(&mut self, index: u64, made: Result<PreparedSegment>) {
        let link = &self.link;
        match made {
            Ok(seg) => {
                if seg.staging_slot().is_none() {
                    self.prepared_maps
                        .push_back((index, seg.mapping().0, seg.mapping().1));
                }
                self.prepare_attempts = 0;
                link.prepare_failing.store(false, Ordering::Relaxed);
                link.prepare_errno.store(0, Ordering::Relaxed);
                if self.prepared_tx.push(seg).is_err() {
                    unreachable!("checked for room before preparing; only this thread pushes");
                }
            }
            Err(e) if e.is_sync_failure() => {
                // Contract 5: a failed fsync is never retried; the worker latches it.
                self.failure = Some(e);
            }
            Err(e) => {
                // Give the index back so the writer can claim it (only we claim past it).
                let _ = link.next_index.compare_exchange(
                    index + 1,
                    index,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                link.prepare_failing.store(true, Ordering::Relaxed);
                let errno = match &e {
                    Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
                    _ => 0,
                };
                if errno == libc::ENOSPC && self.room_coming {
                    // A freeze or delete in flight may free the room: the writer keeps
                    // waiting (stall cause `prepare_retry`), and the prepare is tried again
                    // soon, and at once when that work ends. Only a full disk that nothing
                    // in flight can relieve reaches the writer.
                    log::debug!("preparing segment {index}: {e}; waiting for a freeze or delete");
                    link.prepare_errno.store(0, Ordering::Relaxed);
                    self.prepare_not_before = Instant::now() + RETRY_MIN;
                    return;
                }
                log::warn!("preparing segment {index}: {e}; will retry");
                if errno != 0 {
                    link.prepare_errno.store(errno, Ordering::Relaxed);
                }
                let delay = crate::backoff::backoff(RETRY_MIN, RETRY_MAX, self.prepare_attempts);
                self.prepare_attempts += 1;
                self.prepare_not_before = Instant::now() + delay;
            }
        }
    }

    /// Counts, once per wait, why the writer is waiting for a prepared segment (a rollover
    /// stall), as the maintainer sees it now.
    pub(crate) fn note_stall(&mut self, stats: &crate::maintainer::MaintainerStats) {
        let wait = self.link.waits.load(Ordering::Relaxed);
        if wait == self.stall_counted || !self.link.writer_waiting.load(Ordering::Relaxed) {
            return;
        }
        self.stall_counted = wait;
        let held = self.link.budget.load(Ordering::Relaxed) != super::super::link::BUDGET_OK;
        let cause = if held {
            &stats.stall_budget
        } else if Instant::now() < self.prepare_not_before {
            &stats.stall_prepare_retry
        } else if self.drain.as_ref().is_some_and(|d| d.preparing()) {
            &stats.stall_preparing
        } else if self.drain.as_ref().is_some_and(|d| !d.has_free()) {
            &stats.stall_no_free_buffer
        } else {
            &stats.stall_maintainer_late
        };
        cause.fetch_add(1, Ordering::Relaxed);
    }
}
