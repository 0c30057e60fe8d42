//! `Tailer`: follows a log that a `Recorder` in this or another process is writing, record by
//! record, in order, each exactly once, across rollovers, freezes and (while it keeps up)
//! retention. It only reads files: it never writes to the log, takes no lock, and never
//! slows or blocks the writer.
//!
//! It reads the hot segment being written with `pread` and takes a record only once it is
//! complete: its sequence number is the next one and its chained checksum verifies (a record
//! half written, or a page not yet drained, reads as zeros or fails the checksum and is read
//! again later). A segment ends at its seal; the tailer then opens the next one, hot or, if
//! it was frozen meanwhile, cold (decoded). A file frozen or deleted while the tailer reads it
//! stays readable through the open descriptor. If retention deleted a segment before the
//! tailer reached it, the tailer stops with [`Error::SeqNotFound`] naming the first record it
//! missed, never skipping silently.
//!
//! How soon a record is seen: in Direct mode the writer's stores are in the file's page
//! cache at once. In Staged mode (the default) the tailer maps the recorder's staging buffers
//! read-only (same user, or the `staging_group`) and takes records there as the writer
//! commits them ([`super::staged_view`]); without access to them it reads what the
//! maintainer drains to the file every `sync_interval` (1 ms by default).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::listing::list_dir;
use super::reader_position::{Checkpoint, ReaderPosition, SavedPosition};
use super::seek;
use super::staged_view::{Staged, StagedView};
use super::summary::SummaryIndex;
use crate::error::{Corruption, Error, Result};
use crate::segment::format::{
    record_crc, Framing, RecordHeader, Seal, SegmentHeader, HEADER_LEN, MAX_RECORD_HEADER_LEN,
    MAX_SEAL_LEN, SEAL_MARKER,
};
use crate::segment::names::{cold_path, segment_path};
use crate::segment::{RecordInfo, SegmentEnd, SegmentReader};

/// Records between two automatic saves of a reader's position.
const COMMIT_EVERY: u64 = 1024;

/// Bytes read from a hot segment at a time.
const WINDOW: usize = 64 * 1024;

/// Where a tailer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first retained record.
    First,
    /// This sequence number (it must not be older than the first retained record).
    Seq(u64),
    /// After the last record written when it opens: only new records.
    End,
    /// The first record whose log time is at or after this time (as
    /// [`super::LogReader::open_at_time`]: in log order, so later records of a clock that
    /// stepped back are delivered in their place), found by bisecting the segments' running
    /// max times. A time after the last record waits for one; a time before the first
    /// retained record, or a log without time (format version 1), is
    /// [`Error::TimeNotFound`].
    Time(std::time::SystemTime),
}

/// Which records a tailer delivers (contract 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Every record as soon as it is committed (the writer's release store), from the
    /// staging buffers where it can map them: the lowest latency, but a power cut can take
    /// back the records not yet durable (and a new recorder then gives their sequence
    /// numbers to others: a resumed position detects that, [`Error::Diverged`]).
    #[default]
    Committed,
    /// Only records up to the `durable_seq` the recorder publishes in its cursor
    /// (`readers/recorder.cursor`): nothing it delivers is ever taken back by a power cut.
    /// Without a cursor (no recorder ran here with this build), only the records of
    /// segments that prove themselves durable (cold, or persisted and truncated).
    Durable,
}

/// What a tailer resumed from a saved position does when the log no longer holds what it
/// read (contract 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDivergence {
    /// Stop with [`Error::Diverged`] (the default).
    #[default]
    Fail,
    /// Deliver again from the newest saved checkpoint that the log still matches, saying so
    /// ([`Tailer::redelivery`]); [`Error::Diverged`] when none does.
    Redeliver,
}

/// A stated re-delivery: the records `from..until` are delivered again, and may differ from
/// what this reader delivered before under the same sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    /// The first record delivered again (the newest checkpoint that matched the log).
    pub from: u64,
    /// The position the reader had saved.
    pub until: u64,
}

/// What [`Tailer::next`] does while no record is available (the caller's trade of CPU for
/// latency, as Aeron's idle strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll again at once: the lowest latency, a whole core.
    BusySpin,
    /// `yield` to other threads between polls.
    Yield,
    /// Sleep this long between polls.
    Sleep(Duration),
    /// Spin a little, then yield, then sleep, doubling up to `max`; back to spinning after a
    /// record.
    Backoff {
        /// The longest sleep.
        max: Duration,
    },
}

/// The segment being read.
enum Cur {
    /// A cold segment: decoded, complete.
    Cold(Box<SegmentReader<Box<dyn Read + Send>>>),
    /// A hot segment, read with `pread` as it grows.
    Hot {
        file: File,
        path: PathBuf,
        /// Offset of the next record frame.
        pos: u64,
        /// Bytes of the file from `win_at` on, as last read.
        window: Vec<u8>,
        win_at: u64,
    },
}

/// What a poll of the current segment found.
enum Step {
    Record(RecordInfo),
    /// Nothing complete yet.
    NotYet,
    /// The segment's seal: go on with the next one.
    Sealed,
}

/// See the module docs.
pub struct Tailer {
    dir: PathBuf,
    /// Index of the segment being read (or to open next).
    index: u64,
    cur: Option<Cur>,
    /// Sequence number of the next record, and the checksum it chains from (unknown until
    /// the first segment's header is read).
    next_seq: u64,
    prev_crc: u32,
    chained: bool,
    /// How the current segment frames its records (from its header).
    framing: Framing,
    /// Records below this are read and checked but not returned (a start at a sequence
    /// number).
    skip_below: u64,
    /// Starting at the end: discard records until nothing more is available.
    to_end: bool,
    /// Starting at a time (ns since the Unix epoch): records are read and checked but not
    /// returned until the first whose time is at or after it.
    since: Option<u64>,
    idle: Idle,
    idle_round: u32,
    /// The staging buffers of a Staged recorder of this log.
    staged: Option<StagedView>,
    /// Where this reader publishes how far it has read, and records since the last save.
    position: Option<ReaderPosition>,
    uncommitted: u64,
    /// A resumed position not yet checked against the log: when the chain reaches its
    /// sequence number, the checksum before it must be the saved one.
    expect: Option<Checkpoint>,
    /// The saved position it came from (its older checkpoints, for a re-delivery).
    saved: Option<SavedPosition>,
    on_divergence: OnDivergence,
    redelivery: Option<Redelivery>,
    visibility: Visibility,
    /// The recorder's cursor, for [`Visibility::Durable`] (looked for again while missing).
    cursor: Option<super::cursor::CursorReader>,
    /// The segment being read proves itself durable (cold, or truncated by persist).
    cur_proven: bool,
}

impl Tailer {
    /// Opens a tailer on `dir` (which must exist; the log may still be empty).
    pub fn open(dir: &Path, start: StartAt) -> Result<Self> {
        seek::relisting(|| Self::open_once(dir, start))
    }

    fn open_once(dir: &Path, start: StartAt) -> Result<Self> {
        let listing = list_dir(dir)?;
        let index = SummaryIndex::load(dir);
        let first_index = listing.segments.first().map_or(0, |s| s.index);
        let mut t = Tailer {
            dir: dir.to_path_buf(),
            index: first_index,
            cur: None,
            next_seq: 0,
            prev_crc: 0,
            chained: false,
            framing: Framing::Plain,
            skip_below: 0,
            to_end: false,
            since: None,
            idle: Idle::Backoff {
                max: Duration::from_millis(1),
            },
            idle_round: 0,
            staged: crate::staging::staging_path(Path::new("/dev/shm"), dir)
                .ok()
                .map(StagedView::new),
            position: None,
            uncommitted: 0,
            expect: None,
            saved: None,
            on_divergence: OnDivergence::Fail,
            redelivery: None,
            visibility: Visibility::Committed,
            cursor: None,
            cur_proven: false,
        };
        match start {
            StartAt::First => {}
            StartAt::Seq(seq) => {
                let first = match listing.segments.first() {
                    Some(e) => seek::first_seq_of(e, &index)?,
                    None => None,
                };
                match seek::locate(listing.segments.as_slice(), &index, seq)? {
                    Some(pos) => t.index = listing.segments[pos].index,
                    None if first.is_some() => {
                        return Err(Error::SeqNotFound {
                            dir: dir.to_path_buf(),
                            seq,
                            first,
                            last: None,
                        })
                    }
                    None => {} // an empty log: wait from its start
                }
                t.skip_below = seq;
            }
            StartAt::End => {
                if let Some(pos) = seek::locate(listing.segments.as_slice(), &index, u64::MAX)? {
                    t.index = listing.segments[pos].index;
                }
                t.to_end = true;
            }
            StartAt::Time(time) => {
                let ns = crate::logdir::log_time::system_time_ns(time);
                if let Some(pos) = super::time_seek::tail_start(dir, &listing.segments, &index, ns)?
                {
                    t.index = listing.segments[pos].index;
                }
                t.since = Some(ns);
            }
        }
        Ok(t)
    }

    /// Opens reader `name`'s tailer: from its saved position (`<dir>/readers/<name>.pos`),
    /// or from the first retained record if it has none, publishing its position as it reads
    /// (see [`Self::with_position`]). The position is checked against the log: if the log no
    /// longer holds what the reader read, the tailer returns [`Error::Diverged`] before it
    /// delivers anything past that point (see [`Self::resume_with`]).
    pub fn resume(dir: &Path, name: &str) -> Result<Self> {
        Self::resume_with(dir, name, OnDivergence::Fail)
    }

    /// As [`Self::resume`], choosing what a divergence does.
    pub fn resume_with(dir: &Path, name: &str, on_divergence: OnDivergence) -> Result<Self> {
        let position = ReaderPosition::open(dir, name)?;
        let saved = position.load();
        let mut t = match &saved {
            Some(p) => Self::open(dir, StartAt::Seq(p.current().next_seq))?,
            None => Self::open(dir, StartAt::First)?,
        };
        t.expect = saved.as_ref().map(SavedPosition::current);
        t.saved = saved;
        t.position = Some(position);
        t.on_divergence = on_divergence;
        Ok(t)
    }

    /// The re-delivery this tailer made after a divergence, if it made one.
    pub fn redelivery(&self) -> Option<Redelivery> {
        self.redelivery
    }

    /// Publishes how far this tailer has read in `<dir>/readers/<name>.pos` (every 1 024
    /// records, at each segment's end, at [`Self::commit`] and on drop): a restart resumes
    /// there ([`Self::resume`]), and a recorder with `Config::hold_for_readers` keeps the
    /// cold segments it has not read yet.
    pub fn with_position(mut self, name: &str) -> Result<Self> {
        self.position = Some(ReaderPosition::open(&self.dir, name)?);
        Ok(self)
    }

    /// Saves the position now: everything returned so far is read. Nothing is saved before
    /// the tailer reached its start (a resumed position not checked yet stays as it was).
    pub fn commit(&mut self) -> Result<()> {
        self.uncommitted = 0;
        let reached = self.chained
            && self.next_seq >= self.skip_below
            && self.since.is_none()
            && self.expect.is_none();
        match &mut self.position {
            Some(p) if reached => p.store(self.next_seq, self.prev_crc),
            _ => Ok(()),
        }
    }

    /// The chain has reached (or passed) the resumed position `exp`: it must continue it.
    fn check_expected(&mut self, exp: Checkpoint) -> Result<()> {
        let found = (self.next_seq == exp.next_seq).then_some(self.prev_crc);
        let Some(expected) = exp.prev_crc else {
            log::warn!(
                "{}: reader position of the old layout (no checksum): resumed at {} unchecked",
                self.dir.display(),
                exp.next_seq
            );
            self.expect = None;
            return Ok(());
        };
        if found == Some(expected) {
            self.expect = None;
            if let (Some(r), Some(p)) = (self.redelivery, self.position.as_mut()) {
                // Forget the checkpoints of records the log no longer holds.
                p.restart_at(r.from, expected)?;
            }
            return Ok(());
        }
        let reader = self
            .position
            .as_ref()
            .map_or(String::new(), |p| p.name().to_string());
        let diverged = Error::Diverged {
            dir: self.dir.clone(),
            reader,
            seq: exp.next_seq,
            expected,
            found,
        };
        if self.on_divergence == OnDivergence::Fail {
            return Err(diverged);
        }
        let until = self.redelivery.map_or(exp.next_seq, |r| r.until);
        let older = self.saved.as_ref().and_then(|s| {
            s.older()
                .find(|c| c.next_seq < exp.next_seq && c.next_seq <= self.next_seq)
        });
        let Some(older) = older else {
            return Err(diverged);
        };
        log::warn!(
            "{diverged}; re-delivering from sequence number {}",
            older.next_seq
        );
        let mut fresh = match Self::open(&self.dir, StartAt::Seq(older.next_seq)) {
            Ok(t) => t,
            Err(Error::SeqNotFound { .. }) => return Err(diverged),
            Err(e) => return Err(e),
        };
        fresh.staged = self.staged.take();
        fresh.idle = self.idle;
        fresh.position = self.position.take();
        fresh.saved = self.saved.take();
        fresh.on_divergence = self.on_divergence;
        fresh.expect = Some(older);
        fresh.redelivery = Some(Redelivery {
            from: older.next_seq,
            until,
        });
        *self = fresh;
        Ok(())
    }

    /// Reads the staging buffers of a recorder whose `staging_dir` is `base` (default
    /// `/dev/shm`); `None`: only the segment files.
    pub fn with_staging_dir(mut self, base: Option<&Path>) -> Self {
        self.staged = base
            .and_then(|b| crate::staging::staging_path(b, &self.dir).ok())
            .map(StagedView::new);
        self
    }

    /// Chooses which records it delivers (default: [`Visibility::Committed`]).
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Whether record `seq` may be delivered under the chosen visibility.
    fn visible(&mut self, seq: u64) -> bool {
        if self.visibility == Visibility::Committed || self.cur_proven {
            return true;
        }
        if self.cursor.is_none() {
            self.cursor = super::cursor::CursorReader::open(&self.dir);
        }
        if let Some(c) = &self.cursor {
            return seq <= c.durable();
        }
        // No cursor: the hot segment being read counts once persist has truncated it.
        if let Some(Cur::Hot { file, .. }) = &self.cur {
            let mut head = [0u8; HEADER_LEN];
            let capacity = file
                .read_exact_at(&mut head, 0)
                .ok()
                .and_then(|()| SegmentHeader::decode(&head).ok())
                .map(|h| h.capacity);
            let len = file.metadata().map(|m| m.len()).ok();
            self.cur_proven = matches!((capacity, len), (Some(cap), Some(len)) if len < cap);
        }
        self.cur_proven
    }

    /// Sets what [`Self::next`] does while it waits (default: back off up to 1 ms).
    pub fn with_idle(mut self, idle: Idle) -> Self {
        self.idle = idle;
        self
    }

    /// Sequence number of the next record this tailer returns (0 before it read a header).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The chain before the next record (its sequence number and the checksum it chains
    /// from), opening the first segment if none is open yet; `None` while no segment header
    /// is readable.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn chain_ahead(&mut self) -> Result<Option<(u64, u32)>> {
        if self.cur.is_none() && !self.open_segment()? {
            return Ok(None);
        }
        Ok(self.chained.then_some((self.next_seq, self.prev_crc)))
    }

    /// The next record if one is complete now (its payload in `payload`), without waiting.
    pub fn poll(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordInfo>> {
        loop {
            if self.cur.is_none() && !self.open_segment()? {
                self.to_end = false;
                return Ok(None);
            }
            if let Some(exp) = self.expect {
                if self.chained && self.next_seq >= exp.next_seq {
                    self.check_expected(exp)?;
                    continue;
                }
            }
            // Durable only: the next record waits until the recorder says it is durable.
            if self.chained && self.next_seq >= self.skip_below && !self.visible(self.next_seq) {
                self.to_end = false;
                return Ok(None);
            }
            match self.step(payload)? {
                Step::Record(info) if info.seq < self.skip_below || self.to_end => continue,
                Step::Record(info) if self.before_since(&info) => continue,
                Step::Record(info) => {
                    self.uncommitted += 1;
                    if self.position.is_some() && self.uncommitted >= COMMIT_EVERY {
                        self.commit()?;
                    }
                    return Ok(Some(info));
                }
                Step::Sealed => {
                    self.cur = None;
                    self.index += 1;
                    if self.position.is_some() && self.uncommitted > 0 {
                        self.commit()?;
                    }
                }
                Step::NotYet => {
                    self.to_end = false;
                    return Ok(None);
                }
            }
        }
    }

    /// Whether `info` is before the start time (then the start is still ahead).
    fn before_since(&mut self, info: &RecordInfo) -> bool {
        let Some(t) = self.since else { return false };
        if info.time.is_some_and(|time| time >= t) {
            self.since = None; // from here on every record, whatever its time
            return false;
        }
        true
    }

    /// The next record, waiting for it with the idle strategy.
    pub fn next(&mut self, payload: &mut Vec<u8>) -> Result<RecordInfo> {
        loop {
            if let Some(info) = self.poll(payload)? {
                self.idle_round = 0;
                return Ok(info);
            }
            self.pause();
        }
    }

    /// As [`Self::next`], giving up after `timeout` (`Ok(None)`).
    pub fn next_timeout(
        &mut self,
        payload: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<Option<RecordInfo>> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(info) = self.poll(payload)? {
                self.idle_round = 0;
                return Ok(Some(info));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            self.pause();
        }
    }

    fn pause(&mut self) {
        match self.idle {
            Idle::BusySpin => std::hint::spin_loop(),
            Idle::Yield => std::thread::yield_now(),
            Idle::Sleep(d) => std::thread::sleep(d),
            Idle::Backoff { max } => {
                self.idle_round = self.idle_round.saturating_add(1);
                crate::backoff::idle_pause(self.idle_round, max);
            }
        }
    }

    /// Opens segment `self.index`, hot or cold; false if it does not exist yet (or its header
    /// is not written yet).
    fn open_segment(&mut self) -> Result<bool> {
        let hot = segment_path(&self.dir, self.index);
        match File::open(&hot) {
            Ok(file) => {
                let mut head = [0u8; HEADER_LEN];
                let got = file
                    .read_at(&mut head, 0)
                    .map_err(|e| Error::io("read", &hot, e))?;
                // Prepared ahead and not written yet, or its first page not drained yet (then
                // its staging buffer has the header).
                let staged = self
                    .staged
                    .as_mut()
                    .and_then(|v| v.segment_header(self.index));
                let Some(h) = SegmentHeader::decode(&head[..got]).ok().or(staged) else {
                    return Ok(false);
                };
                let target = self.start_target(); // before the header chains it
                self.check_continues(&hot, &h)?;
                let len = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &hot, e))?
                    .len();
                self.cur_proven = len < h.capacity;
                // A start at a seq or a time: from the persisted segment's index entry.
                let mut pos = HEADER_LEN as u64;
                if let Some(target) = target {
                    let near = super::jump::hot_entry_near(&self.dir, self.index, len, target)?;
                    if let Some((_, at)) = near {
                        (pos, self.next_seq, self.prev_crc) = (at.offset, at.seq, at.prev_crc);
                    }
                }
                self.cur = Some(Cur::Hot {
                    file,
                    path: hot,
                    pos,
                    window: Vec::new(),
                    win_at: 0,
                });
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("open", &hot, e)),
        }
        let cold = cold_path(&self.dir, self.index);
        match File::open(&cold) {
            Ok(file) => {
                if let Some(r) = self.cold_start_inside(&file)? {
                    let h = *r.header();
                    self.check_continues(&cold, &h)?;
                    (self.next_seq, self.prev_crc) = (r.next_seq(), r.last_crc());
                    self.cur_proven = true;
                    self.cur = Some(Cur::Cold(Box::new(r)));
                    return Ok(true);
                }
                let src = crate::codec::open_cold(file, &cold)?;
                let r = SegmentReader::new(src, &cold)?;
                let h = *r.header();
                self.check_continues(&cold, &h)?;
                self.cur_proven = true;
                self.cur = Some(Cur::Cold(Box::new(r)));
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.missing(),
            Err(e) => Err(Error::io("open", &cold, e)),
        }
    }

    /// What a start at a sequence number or a time looks for, while the first segment is not
    /// open yet.
    fn start_target(&self) -> Option<super::jump::Target> {
        match (self.chained, self.since) {
            (true, _) => None,
            (false, Some(t)) => Some(super::jump::Target::Time(t)),
            (false, None) if self.skip_below > 0 => Some(super::jump::Target::Seq(self.skip_below)),
            (false, None) => None,
        }
    }

    /// For the first segment of a start at a sequence number or a time: a reader from its
    /// sparse index's entry nearest before the start ([`super::jump`]), if it has a usable one.
    fn cold_start_inside(
        &self,
        file: &File,
    ) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
        let Some(target) = self.start_target() else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", cold_path(&self.dir, self.index), e))?
            .len();
        super::jump::cold_reader_near(&self.dir, self.index, len, target)
    }

    /// Segment `self.index` is neither hot nor cold: not created yet, or deleted by retention
    /// before this tailer read it (a later segment has been written). Later files with no
    /// header yet are segments prepared ahead, which prove nothing.
    fn missing(&self) -> Result<bool> {
        let listing = list_dir(&self.dir)?;
        let index = SummaryIndex::load(&self.dir);
        let mut first = None;
        for (i, entry) in listing.segments.iter().enumerate() {
            let written = match seek::first_seq_of(entry, &index) {
                Ok(f) => f,
                Err(_) => continue, // removed while we looked, or damaged: proves nothing
            };
            if i == 0 {
                first = written;
            }
            if entry.index > self.index && written.is_some() {
                return Err(Error::SeqNotFound {
                    dir: self.dir.clone(),
                    seq: self.next_seq.max(self.skip_below),
                    first,
                    last: None,
                });
            }
        }
        Ok(false)
    }

    fn check_continues(&mut self, path: &Path, h: &SegmentHeader) -> Result<()> {
        let broken = |why: String| Err(Error::corrupt(path, 0, Corruption::BrokenChain(why)));
        if h.index != self.index {
            return broken(format!("header says segment {}", h.index));
        }
        if self.chained {
            if h.first_seq != self.next_seq {
                return broken(format!(
                    "first sequence number {} where {} was expected",
                    h.first_seq, self.next_seq
                ));
            }
            if h.prev_crc != self.prev_crc {
                return broken("previous checksum does not continue the chain".into());
            }
        }
        (self.next_seq, self.prev_crc, self.chained) = (h.first_seq, h.prev_crc, true);
        self.framing = h.framing;
        Ok(())
    }

    fn step(&mut self, payload: &mut Vec<u8>) -> Result<Step> {
        match self.cur.as_mut().expect("a segment is open") {
            Cur::Cold(r) => match r.next_record(payload)? {
                Some(info) => {
                    (self.next_seq, self.prev_crc) = (info.seq + 1, info.crc);
                    Ok(Step::Record(info))
                }
                None => match r.end() {
                    Some(SegmentEnd::Sealed(_)) => Ok(Step::Sealed),
                    Some(SegmentEnd::Broken { offset, kind, .. }) => {
                        Err(Error::corrupt(r.path(), *offset, kind.clone()))
                    }
                    _ => Err(Error::corrupt(
                        r.path(),
                        0,
                        Corruption::BadSeal("compressed segment without a seal"),
                    )),
                },
            },
            Cur::Hot {
                file,
                path,
                pos,
                window,
                win_at,
            } => {
                let chain = (self.next_seq, self.prev_crc);
                let staged = self.staged.as_mut();
                let step = match staged.and_then(|v| v.step(self.index, *pos, chain, payload)) {
                    Some(Staged::Record(info)) => {
                        *pos += self.framing.record_size(info.len as usize) as u64;
                        Step::Record(info)
                    }
                    Some(Staged::Sealed) => Step::Sealed,
                    Some(Staged::NotYet) => Step::NotYet,
                    None => hot_step(
                        (file, path, self.framing),
                        pos,
                        window,
                        win_at,
                        (self.next_seq, self.prev_crc),
                        payload,
                    )?,
                };
                if let Step::Record(info) = step {
                    (self.next_seq, self.prev_crc) = (info.seq + 1, info.crc);
                }
                Ok(step)
            }
        }
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        if self.uncommitted > 0 {
            let _ = self.commit();
        }
    }
}

/// The bytes `[at, at + len)` of a hot segment, from the window or read again; `None` if the
/// file does not hold them (yet).
fn bytes<'w>(
    file: &File,
    path: &Path,
    window: &'w mut Vec<u8>,
    win_at: &mut u64,
    at: u64,
    len: usize,
) -> Result<Option<&'w [u8]>> {
    let have = at >= *win_at && at + len as u64 <= *win_at + window.len() as u64;
    if !have {
        window.resize(WINDOW.max(len), 0);
        let mut got = 0;
        while got < window.len() {
            match file.read_at(&mut window[got..], at + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", path, e)),
            }
        }
        window.truncate(got);
        *win_at = at;
        if got < len {
            return Ok(None);
        }
    }
    let from = (at - *win_at) as usize;
    Ok(Some(&window[from..from + len]))
}

/// The next complete record of a hot segment at `pos`, or its seal, or nothing yet (then the
/// window is dropped: the next poll reads the file again).
fn hot_step(
    seg: (&File, &Path, Framing),
    pos: &mut u64,
    window: &mut Vec<u8>,
    win_at: &mut u64,
    chain: (u64, u32),
    payload: &mut Vec<u8>,
) -> Result<Step> {
    let step = hot_frame(seg, pos, window, win_at, chain, payload)?;
    if matches!(step, Step::NotYet) {
        window.clear();
    }
    Ok(step)
}

fn hot_frame(
    (file, path, framing): (&File, &Path, Framing),
    pos: &mut u64,
    window: &mut Vec<u8>,
    win_at: &mut u64,
    (next_seq, prev_crc): (u64, u32),
    payload: &mut Vec<u8>,
) -> Result<Step> {
    let (hl, seal_len) = (framing.record_header_len(), framing.seal_len());
    const _: () = assert!(MAX_RECORD_HEADER_LEN <= MAX_SEAL_LEN);
    let Some(hb) = bytes(file, path, window, win_at, *pos, hl)? else {
        return Ok(Step::NotYet);
    };
    let rh = RecordHeader::decode(hb, framing);
    if rh.seq == SEAL_MARKER {
        let Some(sb) = bytes(file, path, window, win_at, *pos, seal_len)? else {
            return Ok(Step::NotYet);
        };
        return match Seal::decode(sb, framing) {
            Ok(seal) if seal.last_crc == prev_crc && seal.end == *pos + seal_len as u64 => {
                Ok(Step::Sealed)
            }
            // Half written, or not this segment's: read again later.
            _ => Ok(Step::NotYet),
        };
    }
    if rh.seq != next_seq || rh.check_len().is_err() {
        return Ok(Step::NotYet); // zeros (not written yet) or a frame in progress
    }
    let size = framing.record_size(rh.len as usize);
    let Some(frame) = bytes(file, path, window, win_at, *pos, size)? else {
        return Ok(Step::NotYet);
    };
    let body = &frame[hl..hl + rh.len as usize];
    let time = framing.timed().then_some(rh.time);
    if record_crc(prev_crc, rh.seq, time, body) != rh.crc {
        return Ok(Step::NotYet); // its payload is not all there yet
    }
    payload.clear();
    payload.extend_from_slice(body);
    let info = RecordInfo {
        seq: rh.seq,
        crc: rh.crc,
        offset: *pos,
        len: rh.len,
        time,
    };
    *pos += size as u64;
    Ok(Step::Record(info))
}
