//! The maintainer's duties toward a recorder's writer: keep segments prepared ahead of it
//! (created, preallocated, synced with the directory, and mapped and prefaulted, or given a
//! staging buffer), make the active segment durable every `sync_interval`, and publish
//! `durable_seq`. In Staged mode the [`Drain`] does the preparing and the timed writes; what
//! follows is the Direct mode.
//!
//! The timer syncs only the completed pages of the active segment: a sync write-protects the
//! pages it cleans, and the writer's next store to a cleaned page takes a fault (1–15 µs), so
//! the page being filled is left alone. When the writer has been idle for a whole interval the
//! partial page is synced too, so that an idle log becomes durable up to its last record.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod direct_mark;
mod prepare;
mod pretouch;

use super::drain::Drain;
use super::job::{ud, Ctx};
use super::link::WriterLink;
use crate::error::{Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::segment::names::hot_name;
use crate::segment::PreparedSegment;

/// Job slot reserved for the active-segment sync.
pub(crate) const SYNC_SLOT: u32 = u32::MAX;

pub(crate) struct Durability {
    link: Arc<WriterLink>,
    prepared_tx: rtrb::Producer<PreparedSegment>,
    prepare_attempts: u32,
    prepare_not_before: Instant,
    /// A freeze or a delete is in flight: a prepare that found the disk full waits for the
    /// room it may free instead of failing the writer's rollover (set by the worker).
    room_coming: bool,
    sync_next: Instant,
    /// (index, seq) of the sync in flight.
    sync_in_flight: Option<(u64, u64)>,
    /// Completions of the sync in flight still to come (its own, and a watermark's two).
    sync_pending: u32,
    /// The first error among them.
    sync_error: Option<Error>,
    /// Direct mode's watermark.
    mark: direct_mark::DirectMark,
    /// The highest segment whose persist started: never marked again (the write would
    /// extend the file past persist's truncate).
    persist_started: Option<u64>,
    /// When the sync in flight was submitted.
    sync_started: crate::telemetry::Stamp,
    /// An fd of the active segment for its syncs, kept open while a sync is in flight.
    active_file: Option<(u64, File)>,
    /// Appended position seen at the last timer tick, to notice an idle writer.
    last_appended: Option<(u64, u64)>,
    /// Persisted segments above `persisted_end`, waiting for the ones before them.
    persisted: BTreeMap<u64, u64>,
    /// Mappings of the segments prepared and not yet taken: (index, address, length).
    prepared_maps: std::collections::VecDeque<(u64, usize, usize)>,
    pretouch_next: Instant,
    /// When the writer's clock is re-anchored next.
    reanchor_next: Instant,
    /// Staged mode: the drain of the staging buffers.
    pub drain: Option<Drain>,
    /// A sync failure of a prepare, for the worker to latch ([`Self::take_failure`]).
    failure: Option<Error>,
    /// The writer's last wait for a prepared segment counted by cause (`WriterLink::waits`).
    stall_counted: u64,
    /// Where readers in other processes see how far the log is committed and durable.
    cursor: Option<crate::logdir::cursor::CursorWriter>,
    /// The last appended seq seen (kept across a writer's segment switch).
    appended_seen: u64,
}

impl Durability {
    /// The writer's active segment, when it is not switching.
    pub(crate) fn active_index(&self) -> Option<u64> {
        self.link.snapshot().map(|(index, _, _)| index)
    }

    pub fn new(
        link: Arc<WriterLink>,
        prepared_tx: rtrb::Producer<PreparedSegment>,
        drain: Option<Drain>,
        cursor: Option<crate::logdir::cursor::CursorWriter>,
    ) -> Self {
        Durability {
            cursor,
            appended_seen: 0,
            link,
            prepared_tx,
            prepare_attempts: 0,
            prepare_not_before: Instant::now(),
            room_coming: false,
            sync_next: Instant::now(),
            sync_in_flight: None,
            sync_pending: 0,
            sync_error: None,
            mark: direct_mark::DirectMark::new(),
            persist_started: None,
            sync_started: crate::telemetry::now(),
            active_file: None,
            last_appended: None,
            persisted: BTreeMap::new(),
            prepared_maps: std::collections::VecDeque::new(),
            pretouch_next: Instant::now(),
            reanchor_next: Instant::now() + crate::clock::REANCHOR_EVERY,
            drain,
            failure: None,
            stall_counted: 0,
        }
    }

    /// Re-anchors the writer's clock (a log with time) every `REANCHOR_EVERY`: one
    /// `clock_gettime` here keeps the writer's TSC-scaled stamps on CLOCK_REALTIME.
    pub(crate) fn reanchor_clock(&mut self, now: Instant) {
        if now < self.reanchor_next {
            return;
        }
        self.reanchor_next = now + crate::clock::REANCHOR_EVERY;
        if let Some(clock) = self.link.clock.get() {
            clock.reanchor();
        }
    }

    /// Publishes the appended and durable sequence numbers to the cursor (every loop turn:
    /// two stores to a mapped page).
    pub(crate) fn publish_cursor(&mut self) {
        let Some(c) = &self.cursor else { return };
        if let Some((_, _, seq)) = self.link.appended_snapshot() {
            self.appended_seen = self.appended_seen.max(seq);
        }
        c.publish(self.appended_seen, self.link.durable());
    }

    /// Index of the next segment to be created: every segment below it exists (hot or cold).
    /// Publishes to the writer whether the disk budget holds the next segment back.
    pub(crate) fn set_budget(&self, state: u8, excess: (super::budget::Limit, u64)) {
        self.link.budget_excess.store(excess.1, Ordering::Relaxed);
        self.link
            .budget_limit
            .store(excess.0 as u8, Ordering::Relaxed);
        self.link.budget.store(state, Ordering::Release);
    }

    pub fn next_index(&self) -> u64 {
        self.link.next_index.load(Ordering::Acquire)
    }

    /// True while a sync, a drain or a prepare is in flight (its fd must stay open).
    pub fn busy(&self) -> bool {
        self.sync_in_flight.is_some()
            || self
                .drain
                .as_ref()
                .is_some_and(|d| d.busy() || d.preparing())
    }

    /// First segment index not yet durable (all below it are).
    pub fn persisted_end(&self) -> u64 {
        self.link.persisted_end.load(Ordering::Acquire)
    }

    /// A sync failure seen while preparing a segment: the caller latches the log failed.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// The log failed: `durable_seq` never advances again.
    pub(crate) fn latch_failed(&self) {
        self.link.failed.store(true, Ordering::Release);
    }

    /// Whether this is the Staged write path (a drain).
    pub fn staged(&self) -> bool {
        self.drain.is_some()
    }

    /// When the next timed sync or drain is due.
    pub(crate) fn next_at(&self) -> Instant {
        match &self.drain {
            Some(d) => d.next_at(),
            None => self.sync_next,
        }
    }

    /// Starts a sync of the active segment when the interval has passed. True if it did.
    pub(crate) fn plan_sync(
        &mut self,
        cx: &mut Ctx<'_>,
        interval: Duration,
        while_busy: bool,
    ) -> Result<bool> {
        if let Some(d) = self.drain.as_mut() {
            let zeroed = d.zero_step();
            return d
                .plan(cx, &self.link, interval)
                .map(|started| started || zeroed);
        }
        let now = Instant::now();
        if self.sync_in_flight.is_some() || now < self.sync_next {
            return Ok(false);
        }
        self.sync_next = now + interval;
        let Some((index, app_off, app_seq)) = self.link.appended_snapshot() else {
            return Ok(false);
        };
        let idle = self.last_appended == Some((index, app_seq));
        self.last_appended = Some((index, app_seq));
        let (off, seq) = if idle {
            (app_off, app_seq) // the writer is idle: sync the partial page too
        } else if !while_busy {
            return Ok(false);
        } else {
            match self.link.snapshot() {
                Some((i, off, seq)) if i == index => (off, seq),
                _ => return Ok(false),
            }
        };
        let persisted_end = self
            .link
            .persisted_end
            .load(std::sync::atomic::Ordering::Acquire);
        if seq <= self.link.durable() || off == 0 || index != persisted_end {
            return Ok(false); // nothing new, or earlier segments are not persisted yet
        }
        if self.active_file.as_ref().map(|(i, _)| *i) != Some(index) {
            let path = cx.dir.join(hot_name(index));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true) // the watermark page
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            self.mark.opened(index, &f, &path)?;
            self.active_file = Some((index, f));
        }
        let fd = self
            .active_file
            .as_ref()
            .expect("just opened")
            .1
            .as_raw_fd();
        let len = off.min(u64::from(u32::MAX)) as u32;
        let sync = Op::fdatasync_range(Target::Segment, fd, 0, len, ud(SYNC_SLOT, 0));
        let durable = self.link.durable();
        let sealed = self.persist_started.is_some_and(|p| p >= index);
        let ops = match self.mark.due(index, durable, idle).filter(|_| !sealed) {
            Some((at, page)) => vec![
                Op::write(Target::Segment, fd, page, at, ud(SYNC_SLOT, 1)).linked(),
                Op::fdatasync_range(
                    Target::Segment,
                    fd,
                    at,
                    crate::segment::watermark::WATERMARK_LEN as u32,
                    ud(SYNC_SLOT, 2),
                )
                .linked(),
                sync,
            ],
            None => vec![sync],
        };
        // SAFETY: the watermark page lives in `self.mark`, which stamps it again only after
        // this sync completed (one sync in flight); the fd stays open meanwhile.
        unsafe { push_chain(cx.be, &ops) }
            .map_err(|e| Error::io("submit", cx.dir.join(hot_name(index)), e))?;
        self.sync_pending = ops.len() as u32;
        self.sync_error = None;
        self.sync_in_flight = Some((index, seq));
        self.sync_started = crate::telemetry::now();
        Ok(true)
    }

    /// The persist of segment `index` is being submitted.
    pub(crate) fn persist_started(&mut self, index: u64) {
        self.persist_started = Some(self.persist_started.map_or(index, |p| p.max(index)));
    }

    /// Whether a sync carrying a watermark write to segment `index` is in flight (Direct):
    /// its persist must wait, or the write would land past the truncated end.
    pub(crate) fn marking(&self, index: u64) -> bool {
        self.sync_pending > 1 && self.sync_in_flight.is_some_and(|(i, _)| i == index)
    }

    /// A completion of the active-segment sync. An error is an fsync failure (contract 5);
    /// a watermark's write or sync failing is one too: the chain cancels the sync after it.
    pub(crate) fn on_sync_complete(
        &mut self,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
    ) -> Result<()> {
        let (index, seq) = self.sync_in_flight.expect("a sync was in flight");
        assert!(
            self.sync_pending > 0,
            "a completion the sync did not wait for"
        );
        self.sync_pending -= 1;
        let op = match tag {
            0 => "fdatasync",
            1 => "write (watermark)",
            _ => "fdatasync (watermark)",
        };
        if let Err(e) = check(result, op, &cx.dir.join(hot_name(index))) {
            // A chain completes in order: the first error is the cause, the rest cancelled.
            self.sync_error.get_or_insert(e);
        }
        if self.sync_pending > 0 {
            return Ok(());
        }
        self.sync_in_flight = None;
        cx.hists
            .record_since(crate::telemetry::Hist::Fdatasync, self.sync_started);
        if let Some(e) = self.sync_error.take() {
            return Err(e);
        }
        self.link.advance_durable(seq);
        Ok(())
    }

    /// A completion of the drain (Staged mode). An error is an fsync failure (contract 5).
    pub(crate) fn on_drain_complete(
        &mut self,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
    ) -> Result<()> {
        let d = self
            .drain
            .as_mut()
            .expect("drain completions come from the drain");
        d.on_complete(tag, result, cx, &self.link)
    }

    /// A segment was persisted: advance `persisted_end` and `durable_seq` over every
    /// segment persisted without a gap.
    pub(crate) fn on_persisted(&mut self, index: u64, last_seq: u64) {
        use std::sync::atomic::Ordering;
        let mut end = self.link.persisted_end.load(Ordering::Acquire);
        if index < end {
            return;
        }
        self.persisted.insert(index, last_seq);
        let mut durable = None;
        while let Some(seq) = self.persisted.remove(&end) {
            durable = Some(seq);
            end += 1;
        }
        self.link.persisted_end.store(end, Ordering::Release);
        if let Some(seq) = durable {
            self.link.advance_durable(seq);
        }

        if self.active_file.as_ref().is_some_and(|(i, _)| *i < end) && self.sync_in_flight.is_none()
        {
            self.active_file = None; // that segment is persisted and closed by now
        }
    }
}
