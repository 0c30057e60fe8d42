//! `Recorder`: what users hold. It owns a log directory (locked), the active segment, the
//! segments prepared ahead of it and the maintainer. `append` makes no system call and no
//! allocation in steady state, rollover included when a prepared segment is ready.
//!
//! ```
//! use wal_recorder::{config::Config, recorder::Recorder};
//! let dir = tempfile::tempdir().unwrap();
//! let mut cfg = Config::new(dir.path());
//! cfg.segment_size = 1 << 20;
//! let mut rec = Recorder::open(dir.path(), cfg).unwrap();
//! let seq = rec.append(b"new order").unwrap();
//! rec.sync().unwrap();                 // waits until seq survives power loss
//! assert!(rec.durable_seq() >= seq);
//! rec.close().unwrap();
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::LogClock;
use crate::config::Config;
use crate::constants::{PAGE_SIZE, WRITER_WAIT_LIMIT};
use crate::error::{Error, Result};
use crate::maintainer::link::WriterLink;
use crate::maintainer::{Health, MaintainerStats, PersistQueue, SegmentMaintainer, StagedDrain};
use crate::recovery::{recover_with, RecoverOptions, Recovered};
use crate::segment::format::Framing;
use crate::segment::{AppendError, ChainPoint, PreparedSegment, SealedSegment, SegmentWriter};
use crate::staging::StagingRing;
use crate::telemetry::{self, Hist, LocalHists, MetricsSnapshot};

mod claim;

/// Counters of the writer side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rollovers to a new segment.
    pub rollovers: u64,
    /// Rollovers that found no prepared segment and waited or prepared one themselves.
    pub stalls: u64,
    /// Sealed segments kept in the overflow list because the persist ring was full.
    pub persist_ring_full: u64,
}

/// See the module docs.
pub struct Recorder {
    dir: PathBuf,
    config: Config,
    /// The directory's flock; released on drop.
    _lock: File,
    active: Option<SegmentWriter>,
    prepared: rtrb::Consumer<PreparedSegment>,
    persist: PersistQueue,
    /// Sealed segments waiting for room in the persist ring (capacity reserved at open).
    overflow: VecDeque<SealedSegment>,
    maintainer: SegmentMaintainer,
    link: Arc<WriterLink>,
    /// The clock that stamps records (a log with time; `None` in format version 1).
    clock: Option<Arc<LogClock>>,
    stats: WriterStats,
    recovered: Recovered,
    closed: bool,
    /// The writer's histograms (rollover, prepared wait); compiled out without `fs1-metrics`.
    hists: LocalHists,
    /// Last sequence number once closed (the active segment is gone then).
    closed_last_seq: u64,
    /// Uploads cold segments before retention deletes them.
    #[cfg(feature = "archive")]
    archiver: Option<crate::archive::Archiver>,
    /// Staged mode: the staging buffers (removed at a clean close).
    staging: Option<Arc<StagingRing>>,
    /// Ships records to followers (`config.replication`).
    #[cfg(feature = "replication")]
    leader: Option<crate::replication::Leader>,
    /// The record [`Self::try_claim`] reserved and [`Self::commit`] has not yet committed.
    claim: Option<claim::Claimed>,
}

/// How a recorder opens its directory.
pub(crate) enum OpenAs {
    /// Takes appends (the default; refused on a follower's directory).
    Leader,
    /// A follower's recorder: the directory's lock is already held, and an empty log starts
    /// at the leader's chain point in the leader's framing.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    Follower {
        lock: File,
        start: Option<(ChainPoint, Framing)>,
    },
}

impl Recorder {
    /// Locks `dir` (a second recorder gets [`Error::Locked`]), applies what a crashed
    /// process left in its staging buffers, recovers it (docs/RECOVERY.md), creates the
    /// staging ring (Staged mode) and the active segment, and starts the maintainer.
    /// `config.dir` is replaced by `dir`.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        Self::open_as(dir.as_ref(), config, OpenAs::Leader)
    }

    pub(crate) fn open_as(dir: &Path, mut config: Config, role: OpenAs) -> Result<Self> {
        let dir = dir.to_path_buf();
        config.dir = dir.clone();
        let config = config.validated()?;
        let (lock, start) = match role {
            OpenAs::Leader => {
                let lock = crate::io::lock_dir(&dir)?;
                // A follower's log takes records from its leader only (contract 11).
                if crate::replication::is_follower(&dir)? {
                    return Err(Error::NotLeader(dir));
                }
                (lock, None)
            }
            OpenAs::Follower { lock, start } => (lock, start),
        };
        telemetry::init();
        let (staging_dir, replayed) = crate::staging::open_for(&dir, &config)?;
        // From here a failed open removes the staging it made (declared first, dropped last).
        let mut staging = FailedOpenCleanup::new(staging_dir);
        let mut recovered = recover_with(
            &dir,
            RecoverOptions {
                rule: config.recovery_mode.tail_rule(),
                dry_run: false,
                full_scan: config.full_scan_on_open,
                faults: config.fault_plan.clone(),
            },
        )?;
        recovered.replayed_records = replayed.records;
        recovered.actions.splice(
            0..0,
            replayed
                .actions
                .into_iter()
                .map(crate::recovery::Action::from),
        );
        for a in &recovered.actions {
            log::warn!("recovery: {a}");
        }
        // Before the active segment exists, so that a store refusing us leaves no file.
        #[cfg(feature = "archive")]
        let (gate, archiver) = match &config.archive {
            Some(ac) => {
                let (gate, link) = crate::maintainer::archive_gate::archive_gate();
                let mut ac = ac.clone();
                ac.core = ac.core.or(config.core);
                let archiver = crate::archive::Archiver::start(&dir, ac, link)?;
                (Some(gate), Some(archiver))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "archive"))]
        let gate = None;
        let ring = staging.make_ring(config.staging_buffers, config.segment_size)?;
        if let Some(r) = ring.as_ref().filter(|_| config.lock_staging) {
            r.lock_memory();
        }
        let mut drain = ring.map(|r| StagedDrain::new(r, &config));
        let framing = recovered.framing.unwrap_or(match config.record_time {
            true => Framing::Timed,
            false => Framing::Plain,
        });
        let mut at = ChainPoint {
            next_seq: recovered.next_seq,
            crc: recovered.prev_crc,
            max_time: recovered.max_time,
        };
        let empty = recovered.hot.is_empty() && recovered.cold.is_empty();
        let framing = match start {
            // An empty follower continues the leader's chain where its shipping starts.
            Some((leader_at, leader_framing)) if empty => {
                at = leader_at;
                recovered.next_seq = leader_at.next_seq;
                recovered.prev_crc = leader_at.crc;
                recovered.max_time = leader_at.max_time;
                leader_framing
            }
            _ => framing,
        };
        let active = match drain.as_mut() {
            Some(d) => SegmentWriter::activate(d.prepare(recovered.next_index)?, framing, at),
            None => SegmentWriter::create_marked(
                &dir,
                recovered.next_index,
                config.segment_size,
                (framing, at),
                None,
            )?,
        };
        let clock = framing.timed().then(|| Arc::new(LogClock::new()));
        let link = Arc::new(WriterLink::new(
            recovered.next_index,
            recovered.next_seq,
            active.mapping(),
        ));
        if let Some(c) = &clock {
            link.clock.set(c.clone()).expect("a new link has no clock");
        }
        if let Some(disk) = config.fault_plan.as_ref().and_then(|p| p.disk()) {
            let watched = link.clone();
            disk.watch_durable(Arc::new(move || watched.durable()));
        }
        let (prepared_tx, prepared) = rtrb::RingBuffer::new(config.prepared_segments);
        // Readers of other processes see how far the log is durable here (contract 9); a
        // log without it only costs them the durable-only mode's view of the active segment.
        let cursor = crate::logdir::cursor::CursorWriter::create(&dir, recovered.next_seq - 1)
            .map_err(|e| log::warn!("{e}: durable-only readers see persisted segments only"))
            .ok();
        let mut maintainer = SegmentMaintainer::for_recorder(
            config.clone(),
            recovered.hot.clone(),
            recovered.cold.clone(),
            link.clone(),
            prepared_tx,
            gate,
            drain,
            cursor,
        )?;
        let persist = maintainer
            .take_persist_queue()
            .expect("a new maintainer has its persist queue");
        maintainer.start()?;
        #[cfg(feature = "replication")]
        let leader = match &config.replication {
            Some(rc) => Some(crate::replication::Leader::start(
                &dir,
                rc,
                link.clone(),
                &config.staging_dir,
            )?),
            None => None,
        };
        Ok(Recorder {
            dir,
            overflow: VecDeque::with_capacity(config.persist_overflow),
            config,
            _lock: lock,
            active: Some(active),
            prepared,
            persist,
            maintainer,
            link,
            clock,
            stats: WriterStats::default(),
            recovered,
            closed: false,
            hists: LocalHists::new(telemetry::shared()),
            closed_last_seq: 0,
            claim: None,
            #[cfg(feature = "archive")]
            archiver,
            staging: staging.succeeded(),
            #[cfg(feature = "replication")]
            leader,
        })
    }

    /// Appends `payload` as one record; returns its sequence number. In a log with time
    /// ([`Config::record_time`]) the record carries the writer clock's time, read without a
    /// system call.
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.append_with(payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// Appends `payload` with the caller's own time, nanoseconds since the Unix epoch (an
    /// exchange's or a gateway's timestamp); ignored in a log without time. Times need not
    /// increase (docs/FORMAT.md, "Time").
    #[inline]
    pub fn append_at(&mut self, time_ns: u64, payload: &[u8]) -> Result<u64> {
        self.append_frame(Some(time_ns), payload.len(), |buf| {
            buf.copy_from_slice(payload)
        })
    }

    /// Reserves `len` bytes in the active segment, lets `fill` write them in place, commits
    /// the record and returns its sequence number. No system call and no allocation in
    /// steady state; a rollover takes a prepared segment without a system call.
    #[inline]
    pub fn append_with<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<u64> {
        self.append_frame(None, len, fill)
    }

    /// [`Self::append_with`] with the caller's own time (see [`Self::append_at`]).
    #[inline]
    pub fn append_with_at<F: FnOnce(&mut [u8])>(
        &mut self,
        time_ns: u64,
        len: usize,
        fill: F,
    ) -> Result<u64> {
        self.append_frame(Some(time_ns), len, fill)
    }

    #[inline]
    fn append_frame<F: FnOnce(&mut [u8])>(
        &mut self,
        time_ns: Option<u64>,
        len: usize,
        fill: F,
    ) -> Result<u64> {
        self.make_room(len)?;
        self.write_frame(time_ns, len, fill)
    }

    /// Makes the active segment ready for a record of `len` payload bytes: abandons an open
    /// claim, refuses a failed or closed log, rolls over when the record does not fit.
    #[inline]
    fn make_room(&mut self, len: usize) -> Result<()> {
        self.abort_claim();
        if self.maintainer.stats().is_failed() {
            return Err(self.failed_error());
        }
        if !self.overflow.is_empty() {
            self.flush_overflow();
        }
        let Some(active) = self.active.as_ref() else {
            return Err(Error::Closed(self.dir.clone()));
        };
        if !active.fits(len) {
            self.roll_over(len)?;
        }
        Ok(())
    }

    /// Writes and commits the record in the active segment, which [`Self::make_room`] made
    /// ready, and tells the maintainer how far the segment is written.
    #[inline]
    fn write_frame<F: FnOnce(&mut [u8])>(
        &mut self,
        time_ns: Option<u64>,
        len: usize,
        fill: F,
    ) -> Result<u64> {
        let w = self.active.as_mut().expect("an active segment while open");
        let before = w.used_len();
        let time = match (time_ns, &self.clock) {
            (Some(t), _) => t,
            (None, Some(clock)) => clock.now_ns(),
            (None, None) => 0,
        };
        let seq = w
            .append_with_at(time, len, fill)
            .map_err(|e| append_error(w, e, len))?;
        let after = w.used_len();
        self.link.appended(after, seq);
        if before / PAGE_SIZE != after / PAGE_SIZE {
            let boundary = after / PAGE_SIZE * PAGE_SIZE;
            let complete = if after == boundary { seq } else { seq - 1 };
            self.link.page_completed(boundary, complete);
        }
        Ok(seq)
    }

    /// Seals the active segment, hands it to the maintainer and continues in the next one.
    #[cold]
    fn roll_over(&mut self, len: usize) -> Result<()> {
        let cur = self.active.as_ref().expect("an active segment while open");
        if len > cur.max_payload() {
            return Err(Error::RecordTooLarge {
                len,
                max: cur.max_payload(),
            });
        }
        let started = telemetry::now();
        let index = cur.header().index;
        self.room_for_hand_over()?;
        let next = self.next_prepared(index + 1)?;
        let cur = self.active.take().expect("checked above");
        let (at, framing) = (cur.chain(), cur.framing());
        let sealed = cur.into_sealed();
        let index = next.index();
        let mapping = next.mapping();
        self.active = Some(SegmentWriter::activate(next, framing, at));
        // The link moves to the new segment before the old one is handed over: the
        // maintainer unmaps what it is handed, and must never find it still named here.
        self.link.begin_segment(index, at.next_seq, mapping);
        self.hand_over(sealed);
        self.stats.rollovers += 1;
        self.hists.record_since(Hist::Rollover, started);
        Ok(())
    }

    /// The prepared segment `index`: from the ring (no system call), or, when none is
    /// ready, waited for while the maintainer prepares it (a stall). Only the maintainer
    /// creates segment files, in both write paths: a second creator would have to claim
    /// indices against it, and a claim abandoned after a failed create left a gap in the
    /// segment numbers that the next open refused.
    fn next_prepared(&mut self, index: u64) -> Result<PreparedSegment> {
        if let Ok(seg) = self.prepared.pop() {
            debug_assert_eq!(seg.index(), index, "prepared segments come in order");
            return Ok(seg);
        }
        self.stats.stalls += 1;
        self.link.stalls.fetch_add(1, Ordering::Relaxed);
        let seg = self.wait_for_prepared()?;
        debug_assert_eq!(seg.index(), index, "prepared segments come in order");
        Ok(seg)
    }

    /// Waits for the maintainer to prepare the next segment (in Staged mode that needs a
    /// drained buffer: backpressure, the writer never overwrites undrained data). Health is
    /// degraded while it waits; a failed log or a failing prepare (a full disk) ends the
    /// wait with its error at once.
    #[cold]
    fn wait_for_prepared(&mut self) -> Result<PreparedSegment> {
        let start = Instant::now();
        let waited = telemetry::now();
        self.link.waits.fetch_add(1, Ordering::Relaxed);
        self.link.writer_waiting.store(true, Ordering::Relaxed);
        let result = loop {
            if let Ok(seg) = self.prepared.pop() {
                break Ok(seg);
            }
            if self.maintainer.stats().is_failed() {
                break Err(self.failed_error());
            }
            if self.link.budget.load(Ordering::Acquire) == crate::maintainer::link::BUDGET_EXHAUSTED
            {
                break Err(Error::DiskBudget {
                    dir: self.dir.clone(),
                    limit: match self.link.budget_limit.load(Ordering::Relaxed) {
                        2 => "min_free_bytes",
                        _ => "max_disk_bytes",
                    },
                    excess: self.link.budget_excess.load(Ordering::Relaxed),
                });
            }
            let errno = self.link.prepare_errno.load(Ordering::Relaxed);
            if errno != 0 {
                // The maintainer cannot create the segment file (a full disk, say): say so
                // now; it keeps retrying, and a later append may succeed.
                let index = self.link.next_index.load(Ordering::Relaxed);
                break Err(Error::io(
                    "prepare segment",
                    crate::segment::names::segment_path(&self.dir, index),
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            if start.elapsed() > WRITER_WAIT_LIMIT {
                break Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: match self.staging.is_some() {
                        true => "a drained staging buffer for the next segment",
                        false => "the maintainer to prepare the next segment",
                    },
                });
            }
            self.flush_overflow();
            std::thread::sleep(Duration::from_micros(50));
        };
        self.link.writer_waiting.store(false, Ordering::Relaxed);
        self.hists.record_since(Hist::PreparedWait, waited);
        result
    }

    /// Waits (bounded) until a sealed segment can be handed over: room in the persist ring
    /// or in the overflow list. Called before the writer switches segments, so that a
    /// timeout leaves the active segment active and nothing is dropped: the append fails
    /// with [`Error::Timeout`] and can be retried.
    fn room_for_hand_over(&mut self) -> Result<()> {
        self.flush_overflow();
        let room = |r: &Self| r.persist.slots() > 0 || r.overflow.len() < r.overflow.capacity();
        if room(self) {
            return Ok(());
        }
        let start = Instant::now();
        while !room(self) {
            // Overflow full too: wait for the maintainer (bounded), never drop a segment.
            std::thread::sleep(Duration::from_micros(100));
            self.flush_overflow();
            if start.elapsed() > WRITER_WAIT_LIMIT {
                return Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: "room in the persist ring",
                });
            }
        }
        Ok(())
    }

    /// Pushes a sealed segment to the persist ring, or keeps it in the overflow list. Never
    /// drops it: after [`Self::room_for_hand_over`] the overflow has room; at close it may
    /// grow past its capacity (an allocation off the hot path) rather than lose a segment.
    fn hand_over(&mut self, seg: SealedSegment) {
        self.flush_overflow();
        let seg = match self.overflow.is_empty() {
            true => match self.persist.push(seg) {
                Ok(()) => return,
                Err(seg) => seg,
            },
            false => seg,
        };
        self.stats.persist_ring_full += 1;
        self.link.persist_ring_full.fetch_add(1, Ordering::Relaxed);
        self.overflow.push_back(seg);
    }

    fn flush_overflow(&mut self) {
        while let Some(seg) = self.overflow.pop_front() {
            if let Err(seg) = self.persist.push(seg) {
                self.overflow.push_front(seg);
                break;
            }
        }
    }

    /// Makes every record appended so far durable and waits for it: syncs the active segment
    /// (all its pages) and waits until the maintainer has persisted the segments before it.
    pub fn sync(&mut self) -> Result<()> {
        // Sticky (contract 5): a failed log never reports success, even with nothing new.
        if self.maintainer.stats().is_failed() {
            return Err(self.failed_error());
        }
        let Some(w) = self.active.as_ref() else {
            return Ok(()); // closed: everything was persisted by the drain
        };
        let (index, last) = (w.header().index, w.next_seq() - 1);
        if w.is_staged() {
            // The maintainer drains at once rather than at its next interval.
            self.link.sync_wanted.fetch_max(last, Ordering::Release);
            return self.wait_drained(last, WRITER_WAIT_LIMIT);
        }
        if let Err(e) = self.fault_or(|| w.sync()) {
            return Err(self.latch(e));
        }
        let start = Instant::now();
        loop {
            self.flush_overflow();
            if self.maintainer.stats().health() == Health::Failed {
                return Err(self.failed_error());
            }
            if self.link.persisted_end.load(Ordering::Acquire) >= index {
                break;
            }
            if start.elapsed() > WRITER_WAIT_LIMIT {
                return Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: "persisting the sealed segments",
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.link.advance_durable(last);
        Ok(())
    }

    /// Runs the writer's msync, or the fault the test plan injects in its place (rule
    /// `Fdatasync` on `Target::Mapping`).
    fn fault_or(&self, sync: impl FnOnce() -> Result<()>) -> Result<()> {
        let injected = self
            .config
            .fault_plan
            .as_ref()
            .and_then(|p| p.inject(crate::io::OpCode::Fdatasync, crate::io::Target::Mapping));
        match injected {
            Some(errno) => Err(Error::io(
                "msync",
                &self.dir,
                std::io::Error::from_raw_os_error(errno),
            )),
            None => sync(),
        }
    }

    /// Waits until record `seq` is durable, at most `timeout`, without asking for an extra
    /// drain or sync ([`Self::sync`] does): the maintainer's own pace (a continuous drain, or
    /// the timed sync) gets it there. Returns at once if it already is. Errors: `seq` was
    /// never appended ([`Error::SeqNotFound`]), the log failed ([`Error::Failed`]), or
    /// `timeout` passed first ([`Error::Timeout`]). A group-commit caller appends a batch,
    /// then waits for its last seq.
    pub fn wait_durable(&mut self, seq: u64, timeout: Duration) -> Result<()> {
        if seq > self.last_seq() || seq == 0 {
            return Err(Error::SeqNotFound {
                dir: self.dir.clone(),
                seq,
                first: None,
                last: Some(self.last_seq()),
            });
        }
        self.wait_drained(seq, timeout)
    }

    /// Waits until the maintainer made `last` durable, at most `limit`.
    fn wait_drained(&mut self, last: u64, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut spins = 0u32;
        while self.link.durable() < last {
            self.flush_overflow();
            if self.maintainer.stats().health() == Health::Failed {
                return Err(self.failed_error());
            }
            if start.elapsed() > limit {
                return Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: "records to become durable",
                });
            }
            // A durable_seq about one fdatasync away: spin a little, then nap briefly.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        Ok(())
    }

    /// The error appends and waits return once the log failed, with its first cause.
    #[cold]
    fn failed_error(&self) -> Error {
        let cause = self.maintainer.stats().failure().unwrap_or_else(|| {
            std::sync::Arc::new(Error::Config(
                "the log failed for an unrecorded cause".into(),
            ))
        });
        Error::Failed {
            path: self.dir.clone(),
            cause,
        }
    }

    /// Latches the log failed with `cause`, a sync failure seen on the writer's thread
    /// (contract 5: never retried; `durable_seq` and deletions stop), and returns the error.
    #[cold]
    fn latch(&self, cause: Error) -> Error {
        self.link.failed.store(true, Ordering::Release);
        self.maintainer.stats().latch_failed(cause);
        self.failed_error()
    }

    /// Every record up to this sequence number survives power loss.
    pub fn durable_seq(&self) -> u64 {
        self.link.durable()
    }

    /// Sequence number of the last record appended (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.active
            .as_ref()
            .map_or(self.closed_last_seq, |w| w.next_seq() - 1)
    }

    /// Ok, degraded (work failing and retried, prepared segment missing, persist ring
    /// overflowing) or failed (an fsync error: appends are refused).
    pub fn health(&self) -> Health {
        let h = self.maintainer.stats().health();
        if h == Health::Ok
            && (self.link.prepare_failing.load(Ordering::Relaxed)
                || self.link.writer_waiting.load(Ordering::Relaxed)
                || !self.overflow.is_empty())
        {
            return Health::Degraded;
        }
        #[cfg(feature = "replication")]
        let h = match &self.leader {
            Some(l) => h.max(l.health()),
            None => h,
        };
        #[cfg(feature = "archive")]
        if let Some(a) = &self.archiver {
            return h.max(a.health());
        }
        h
    }

    /// The chain after the last record appended: where a follower's next record must
    /// continue.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn chain(&self) -> Option<ChainPoint> {
        self.active.as_ref().map(|w| w.chain())
    }

    /// How the records are framed (with time or without).
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn framing(&self) -> Framing {
        self.active.as_ref().map_or(Framing::Plain, |w| w.framing())
    }

    /// Every record up to this sequence number is durable on `min_replicas` followers
    /// (contract 11); 0 while none is. Never goes back. Without `config.replication`, 0.
    #[cfg(feature = "replication")]
    pub fn replicated_seq(&self) -> u64 {
        self.leader.as_ref().map_or(0, |l| l.replicated_seq())
    }

    /// Waits until record `seq` is replicated ([`Self::replicated_seq`]), at most `timeout`
    /// ([`Error::Timeout`]); [`Error::Config`] without `config.replication`.
    #[cfg(feature = "replication")]
    pub fn wait_replicated(&self, seq: u64, timeout: Duration) -> Result<()> {
        let Some(l) = self.leader.as_ref() else {
            return Err(Error::Config(
                "the recorder has no replication configured".into(),
            ));
        };
        if seq > self.last_seq() {
            return Err(Error::SeqNotFound {
                dir: self.dir.clone(),
                seq,
                first: None,
                last: Some(self.last_seq()),
            });
        }
        l.wait_replicated(seq, timeout, &self.dir)
    }

    /// The followers and how far each holds the log; `None` without `config.replication`.
    #[cfg(feature = "replication")]
    pub fn replication(&self) -> Option<crate::replication::ReplicationStatus> {
        self.leader.as_ref().map(|l| l.status())
    }

    /// The archiver, when `config.archive` is set.
    #[cfg(feature = "archive")]
    pub fn archiver(&self) -> Option<&crate::archive::Archiver> {
        self.archiver.as_ref()
    }

    /// Whether the staging buffers are locked in memory (`Config::lock_staging`); `None` in
    /// Direct mode.
    pub fn staging_locked(&self) -> Option<bool> {
        self.staging.as_ref().map(|r| r.is_locked())
    }

    /// Segments prepared and ready for the next rollovers.
    pub fn prepared_ready(&self) -> usize {
        self.prepared.slots()
    }

    /// Counters and (with `fs1-metrics`) histograms: the maintainer's published ones merged
    /// with the writer's own. Export with [`MetricsSnapshot::to_prometheus`] or
    /// `to_hgrm`. Reading never stalls the maintainer.
    pub fn metrics(&self) -> MetricsSnapshot {
        let m = self.maintainer.stats();
        let g = crate::maintainer::Counter::get;
        let mut histograms = self.maintainer.histograms();
        histograms.add(self.hists.local());
        let archive = telemetry::ArchiveCounters {
            waiting: g(&m.archive_waiting),
            ..self.archive_counters(&mut histograms)
        };
        let mut counters = m.counters();
        counters.rollovers = self.stats.rollovers;
        counters.writer_stalls = self.stats.stalls;
        counters.persist_ring_full = self.stats.persist_ring_full;
        counters.last_seq = self.last_seq();
        counters.durable_seq = self.durable_seq();
        #[cfg(feature = "replication")]
        if let Some(l) = &self.leader {
            counters.replicated_seq = l.replicated_seq();
            counters.followers_connected = l.connected() as u64;
        }
        counters.archive = archive;
        MetricsSnapshot {
            counters,
            histograms,
        }
    }

    /// The archiver's counters, its histogram added to `histograms`.
    #[cfg(feature = "archive")]
    fn archive_counters(&self, histograms: &mut telemetry::HistSet) -> telemetry::ArchiveCounters {
        let Some(a) = &self.archiver else {
            return Default::default();
        };
        histograms.add(&a.histograms());
        a.stats().counters()
    }

    #[cfg(not(feature = "archive"))]
    fn archive_counters(&self, _: &mut telemetry::HistSet) -> telemetry::ArchiveCounters {
        Default::default()
    }

    /// The maintainer's counters.
    pub fn maintainer_stats(&self) -> &MaintainerStats {
        self.maintainer.stats()
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> WriterStats {
        self.stats
    }

    /// What recovery found and did when this recorder opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals the active segment, hands it over, stops the maintainer (which persists and
    /// applies retention to everything queued) and removes the unused prepared segments. The
    /// directory then verifies with no temporary file.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    /// As [`Self::close`], keeping the handle so the counters can still be read. Appends
    /// fail afterwards.
    pub fn shutdown(&mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.abort_claim();
        let mut result = Ok(());
        // Followers keep what was shipped; the rest they fetch from the next leader.
        #[cfg(feature = "replication")]
        if let Some(l) = self.leader.as_mut() {
            l.stop();
        }
        if let Some(w) = self.active.take() {
            self.closed_last_seq = w.next_seq() - 1;
            self.link.retire_mapping(); // before the hand-over, as at a rollover
            self.hand_over(w.into_sealed());
            let start = Instant::now();
            while !self.overflow.is_empty() && start.elapsed() < WRITER_WAIT_LIMIT {
                self.flush_overflow();
                std::thread::sleep(Duration::from_micros(100));
            }
            if !self.overflow.is_empty() {
                // Not persisted by this process: the files (and staging buffers) keep the
                // records for the next open's recovery; the close says it did not finish.
                log::error!(
                    "{}: {} sealed segments never reached the maintainer; recovery will persist them",
                    self.dir.display(),
                    self.overflow.len()
                );
                result = Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: "room in the persist ring at close",
                });
            }
        }
        // The archiver's close deadline starts now; the maintainer's drain waits for the
        // confirmations retention needs (or for the archiver to give up).
        #[cfg(feature = "archive")]
        if let Some(a) = self.archiver.as_ref() {
            a.request_stop();
        }
        // Drains: every handed-over segment is persisted (durable_seq follows).
        if let Err(e) = self.maintainer.stop() {
            result = result.and(Err(e));
        }
        // After the maintainer: the segments its last freezes made are offered by now.
        #[cfg(feature = "archive")]
        if let Some(a) = self.archiver.as_mut() {
            a.stop();
        }
        let mut removed = false;
        while let Ok(seg) = self.prepared.pop() {
            let path = seg.path().to_path_buf();
            drop(seg);
            std::fs::remove_file(&path).map_err(|e| Error::io("unlink", &path, e))?;
            removed = true;
        }
        if removed {
            crate::segment::sync_dir(&self.dir)?;
        }
        let stats = self.maintainer.stats();
        if stats.health() == Health::Failed {
            // The staging buffers may hold records the disk lacks: kept for the next open.
            self.staging = None;
            return result.and(Err(self.failed_error()));
        }
        if self.link.durable() < self.last_seq()
            || crate::maintainer::Counter::get(&stats.abandoned) > 0
        {
            // Work left for recovery (a persist to retry, a segment not persisted): records
            // not durable on disk may be only in staging. Kept; the next open applies them.
            log::warn!(
                "{}: closed with records not durable on disk; staging kept for the next open",
                self.dir.display()
            );
            self.staging = None;
            return result;
        }
        if let Some(ring) = self.staging.take() {
            match Arc::try_unwrap(ring) {
                Ok(ring) => ring.remove()?,
                Err(_) => log::warn!("staging buffers still referenced at close; left in place"),
            }
        }
        result
    }
}

/// What a failed open must remove from staging: the directory, then the ring made in it.
/// Nothing in it is worth keeping: what was replayed is on disk (fdatasynced), and no record
/// was appended yet.
struct FailedOpenCleanup(OpenStaging);

enum OpenStaging {
    Nothing,
    Dir(crate::staging::StagingDir),
    Ring(Arc<StagingRing>),
}

impl FailedOpenCleanup {
    fn new(dir: Option<crate::staging::StagingDir>) -> Self {
        FailedOpenCleanup(dir.map_or(OpenStaging::Nothing, OpenStaging::Dir))
    }

    /// Makes the ring in the directory (Staged mode); `None` in Direct mode.
    fn make_ring(&mut self, count: usize, capacity: u64) -> Result<Option<Arc<StagingRing>>> {
        let OpenStaging::Dir(dir) = std::mem::replace(&mut self.0, OpenStaging::Nothing) else {
            return Ok(None);
        };
        // On error `create` removes what it made, the directory included.
        let ring = StagingRing::create(dir, count, capacity)?;
        self.0 = OpenStaging::Ring(ring.clone());
        Ok(Some(ring))
    }

    /// The open succeeded: the ring is the recorder's.
    fn succeeded(&mut self) -> Option<Arc<StagingRing>> {
        match std::mem::replace(&mut self.0, OpenStaging::Nothing) {
            OpenStaging::Ring(ring) => Some(ring),
            _ => None,
        }
    }
}

impl Drop for FailedOpenCleanup {
    fn drop(&mut self) {
        let removed = match std::mem::replace(&mut self.0, OpenStaging::Nothing) {
            OpenStaging::Dir(dir) => dir.remove_all(),
            OpenStaging::Ring(ring) => match Arc::try_unwrap(ring) {
                Ok(ring) => ring.remove(),
                Err(_) => Ok(()),
            },
            OpenStaging::Nothing => Ok(()),
        };
        if let Err(e) = removed {
            log::warn!("removing the staging of a failed open: {e}");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            log::error!("closing the recorder on {}: {e}", self.dir.display());
        }
    }
}

/// The error an append reports for what the segment writer refused.
fn append_error(w: &SegmentWriter, e: AppendError, len: usize) -> Error {
    match e {
        AppendError::TooLarge | AppendError::Full => Error::RecordTooLarge {
            len,
            max: w.max_payload(),
        },
        AppendError::Sealed => Error::Sealed {
            path: w.path().to_path_buf(),
        },
        AppendError::SeqExhausted => Error::SequenceExhausted(w.path().to_path_buf()),
    }
}
