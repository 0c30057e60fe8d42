//! Deleting: retention by count ([`super::super::retention`]), the disk budget, readers'
//! holds and the archive's gate, and what a delete's end changes.

use super::*;

impl Worker {
    pub(super) fn plan_free(&mut self, now: Instant, stopping: bool) -> bool {
        let mut did = false;
        // Leftover `.wal` files of frozen segments whose unlink failed.
        while let Some(pos) = self
            .leftover_retry
            .iter()
            .position(|r| !stopping && r.not_before <= now)
        {
            let Some(slot) = self.free_slot() else { break };
            let r = self.leftover_retry.swap_remove(pos);
            self.start_free(slot, r.index, true);
            did = true;
        }
        while let Some(index) = self.explicit_free.pop_front() {
            if !self.cold.contains(&index) || self.freeing.contains(&index) {
                continue;
            }
            if !self.may_delete(index) {
                if stopping {
                    log::warn!("segment {index} not archived yet: its requested delete is dropped");
                    continue;
                }
                self.explicit_free.push_front(index);
                break;
            }
            let Some(slot) = self.free_slot() else {
                self.explicit_free.push_front(index);
                break;
            };
            self.start_free(slot, index, false);
            did = true;
        }
        let cold: Vec<u64> = self.cold.iter().copied().collect();
        let freeing = self.freeing.clone();
        let room = BATCH_SIZE.saturating_sub(freeing.len());
        let mut chosen = 0; // segments chosen so far, gone once their deletes start
        let victims = oldest_to_delete(
            cold,
            &freeing,
            self.config.max_compressed_segments,
            room,
            |index| {
                let waiting = self
                    .free_retry
                    .iter()
                    .any(|r| r.index == index && (stopping || r.not_before > now));
                let ok =
                    self.may_delete(index) && !waiting && !self.held_for_readers(index, chosen);
                chosen += usize::from(ok);
                ok
            },
        );
        for index in victims {
            let Some(slot) = self.free_slot() else { break };
            self.start_free(slot, index, false);
            did = true;
        }
        did | self.plan_budget(now, stopping)
    }

    /// Deletes the oldest cold segments while a disk limit wants it; reports a limit that
    /// only hot or unarchived data exceeds.
    pub(super) fn plan_budget(&mut self, now: Instant, stopping: bool) -> bool {
        let mut did = false;
        loop {
            let oldest = self
                .cold
                .iter()
                .copied()
                .find(|i| !self.freeing.contains(i));
            let hot = (self.hot_files(), self.freezing.len());
            let Some((limit, excess)) =
                self.budget
                    .exceeded(&self.config, hot, &self.freeing, oldest)
            else {
                self.report_budget(None);
                return did;
            };
            let waiting = |i: u64| {
                self.free_retry
                    .iter()
                    .any(|r| r.index == i && (stopping || r.not_before > now))
            };
            match oldest {
                Some(i) if self.may_delete(i) && !waiting(i) => {
                    if self.freeing.len() >= BATCH_SIZE {
                        return did;
                    }
                    let Some(slot) = self.free_slot() else {
                        return did;
                    };
                    self.start_free(slot, i, false);
                    did = true;
                }
                _ => {
                    if self.freeing.is_empty() {
                        // `exceeded` keeps room for the next segment; only bytes over the
                        // limit itself are an excess (a full budget holding the next
                        // segment back is `budget_holds_next`, not an excess).
                        let over = match limit {
                            Limit::DiskBytes => excess.saturating_sub(self.config.segment_size),
                            _ => excess,
                        };
                        let real = over > 0 || limit == Limit::ColdAge;
                        self.report_budget(real.then_some((limit, over)));
                    }
                    return did;
                }
            }
        }
    }

    /// Hot segment files on disk: for a recorder, every index from the one after the newest
    /// cold segment to the newest created (sealed, persisting, active and prepared ones);
    /// otherwise the hot segments known.
    pub(super) fn hot_files(&self) -> usize {
        match &self.durability {
            Some(d) => self.hot_files_below(d.next_index()),
            None => self.hot.len(),
        }
    }

    /// A recorder's hot segment files when `next` is the next index to be created.
    fn hot_files_below(&self, next: u64) -> usize {
        let lowest = self
            .cold
            .back()
            .map(|c| c + 1)
            .or(self.hot.front().copied());
        match lowest {
            Some(l) => next.saturating_sub(l) as usize,
            None => self.hot.len() + self.config.prepared_segments + 1,
        }
    }

    pub(super) fn report_budget(&mut self, over: Option<(Limit, u64)>) {
        let stats = &self.shared.stats;
        stats
            .budget_excess_bytes
            .store(over.map_or(0, |(_, b)| b), Ordering::Relaxed);
        stats.over_budget.store(over.is_some(), Ordering::Relaxed);
        match (over, self.over_budget) {
            (Some((limit, excess)), None) => log::warn!(
                "{}: {limit} exceeded (by {excess} bytes) and only hot or unarchived segments \
                 are left: nothing more is deleted until they are frozen or archived",
                self.config.dir.display()
            ),
            (None, Some(limit)) => {
                log::info!("{}: back within {limit}", self.config.dir.display())
            }
            _ => {}
        }
        self.over_budget = over.map(|(l, _)| l);
    }

    /// True while `hold_for_readers` keeps cold segment `index` for a reader that has not
    /// read it, within the budget. The readers' positions are read at most every 20 ms.
    /// `chosen`: older segments already chosen for deletion in this turn.
    pub(super) fn held_for_readers(&mut self, index: u64, chosen: usize) -> bool {
        let Some(extra) = self.config.hold_for_readers else {
            return false;
        };
        let kept = (self.cold.len() - self.freeing.len()).saturating_sub(chosen);
        if kept > self.config.max_compressed_segments + extra {
            return false; // over the budget: the slow reader loses
        }
        let now = Instant::now();
        let stale = self.readers.map_or(true, |(at, _)| {
            now.duration_since(at) > Duration::from_millis(20)
        });
        if stale {
            let min = crate::logdir::reader_position::min_reader_position(&self.config.dir);
            self.readers = Some((now, min));
        }
        let Some((_, Some(min))) = self.readers else {
            return false; // no reader publishes a position
        };
        // Unknown end (no summary): keep it, within the budget.
        let held = self.cold_end.get(&index).map_or(true, |&end| end > min);
        let over = kept.saturating_sub(self.config.max_compressed_segments);
        self.shared
            .stats
            .held_for_readers
            .store(if held { over as u64 } else { 0 }, Ordering::Relaxed);
        held
    }

    /// False while the archive tier has not confirmed the upload of `index`.
    pub(super) fn may_delete(&self, index: u64) -> bool {
        self.may_delete_below(index, self.durability.as_ref().map(|d| d.next_index()))
    }

    /// Whether cold segment `index` may be deleted when `next` is the recorder's next
    /// segment index: archived (when there is an archive), and never a recorder's newest
    /// segment file (a log emptied by retention would start its sequence again at 1).
    fn may_delete_below(&self, index: u64, next: Option<u64>) -> bool {
        let archived = match &self.archive {
            Some(g) => g.is_archived(index),
            None => true,
        };
        archived && next.map_or(true, |n| index + 1 < n)
    }

    pub(super) fn start_free(&mut self, slot: usize, index: u64, leftover: bool) {
        let mut job = FreeJob::new(index, leftover, &self.ctx());
        match job.start(slot as u32, &mut self.ctx()) {
            Ok(()) => {
                if !leftover {
                    self.freeing.push(index);
                }
                self.slots[slot] = Some(Job::Free(job));
            }
            Err(e) => log::error!("submitting delete of segment {index}: {e}"),
        }
    }

    pub(super) fn free_done(&mut self, job: FreeJob, outcome: FreeOutcome) {
        self.freeing.retain(|&i| i != job.index);
        match outcome {
            FreeOutcome::Freed if job.leftover_hot => {}
            FreeOutcome::Freed => {
                self.cold.retain(|&i| i != job.index);
                self.cold_end.remove(&job.index);
                self.budget.freed(job.index);
                self.free_retry.retain(|r| r.index != job.index);
                if let Some(g) = self.archive.as_mut() {
                    g.forget(job.index);
                }
                self.shared.stats.freed.fetch_add(1, Ordering::Relaxed);
                self.compact_summaries();
            }
            FreeOutcome::FsyncFailed(e) => self.fsync_failed(e),
            FreeOutcome::Retry(e) => {
                log::warn!("delete failed, will retry: {e}");
                self.shared
                    .stats
                    .unlink_failures
                    .fetch_add(1, Ordering::Relaxed);
                if job.leftover_hot {
                    self.leftover_retry.push(Retry::after_failure(job.index, 1));
                } else {
                    let attempts = self
                        .free_retry
                        .iter()
                        .find(|r| r.index == job.index)
                        .map_or(0, |r| r.attempts);
                    self.free_retry.retain(|r| r.index != job.index);
                    self.free_retry
                        .push(Retry::after_failure(job.index, attempts));
                }
            }
        }
        self.update_gauges();
    }

    /// Rewrites `cold.summary` with the live cold segments' entries once dead ones outnumber
    /// them, unless a freeze is publishing (its entry's append is in flight to the file).
    fn compact_summaries(&mut self) {
        let publishing = self
            .slots
            .iter()
            .any(|j| matches!(j, Some(Job::Freeze(f)) if f.is_publishing()));
        if publishing {
            return; // the next delete tries again
        }
        if let Some(log) = self.summaries.as_mut() {
            if log.compact_if_worth_it(&self.config.dir, self.cold.make_contiguous()) {
                log::debug!("cold.summary compacted to {} entries", self.cold.len());
            }
        }
    }

    /// Whether the disk budget has no room for another segment file; publishes it to the
    /// writer (wait, or exhausted when nothing can make room) and asks for early freezes.
    pub(super) fn budget_holds_next(&mut self, d: &Durability) -> bool {
        use crate::maintainer::link::{BUDGET_EXHAUSTED, BUDGET_OK, BUDGET_WAIT};
        let next = d.next_index();
        let hot = (self.hot_files_below(next), self.freezing.len());
        let Some(over) = self.budget.no_room_for_next(&self.config, hot) else {
            if self.budget_pressure {
                self.budget_pressure = false;
                self.shared
                    .stats
                    .budget_holds_next
                    .store(false, Ordering::Relaxed);
                d.set_budget(BUDGET_OK, (Limit::DiskBytes, 0));
            }
            return false;
        };
        self.budget_pressure = true;
        self.shared
            .stats
            .budget_holds_next
            .store(true, Ordering::Relaxed);
        // Room can still come from a delete or freeze in flight, a cold segment retention
        // may delete, or a sealed hot segment a freeze can shrink.
        let deletable = self
            .cold
            .iter()
            .any(|&i| !self.freeing.contains(&i) && self.may_delete_below(i, Some(next)));
        let freezable = self.hot.iter().any(|i| !self.freezing.contains(i));
        let coming = !self.freeing.is_empty() || !self.freezing.is_empty();
        let state = match coming || deletable || freezable {
            true => BUDGET_WAIT,
            false => BUDGET_EXHAUSTED,
        };
        d.set_budget(state, over);
        true
    }
}
