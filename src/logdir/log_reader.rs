//! `LogReader`: the records of a whole directory (or of one file) in sequence order, with the
//! chain checked across segment boundaries.
//!
//! Classification of a break (a byte range that is neither a valid record, nor the zero end
//! marker, nor a valid seal; or a segment header that is missing, damaged or does not
//! continue the chain) follows the reader's [`TailRule`]: by default a break is a **torn
//! tail** unless a file at or after it proves it durable (see [`super::tail`]), and anything
//! beyond it is reported as dropped ([`Warning::Dropped`]). Anything else is **corruption**.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::listing::{list_dir, list_segment_names, stat_entry, Named, SegmentEntry, Tier};
use super::summary::{hot_summary, FileStamp, SegmentSummary, SummaryIndex};
use super::tail::{count_records, proves_durable, TailDrop, TailRule};
use crate::error::{Corruption, Error, Result};
use crate::segment::reader::data_after;
use crate::segment::{RecordInfo, SegmentEnd, SegmentReader};

/// Buffered reads of hot segments go through a buffer of this size.
const READ_BUF: usize = 256 * 1024;

/// A state that is normal after a crash or an interrupted step, not corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The unsealed tail of the log ends in a partial or damaged record.
    TornTail {
        /// The segment.
        path: PathBuf,
        /// Offset of the first byte that does not verify.
        offset: u64,
        /// What was found there.
        kind: Corruption,
    },
    /// A segment without a seal that is not the last one (its successor's header continues
    /// the chain, so no record is missing).
    Unsealed(PathBuf),
    /// A prepared segment that never received a record.
    UnusedSegment(PathBuf),
    /// A temporary file left by an interrupted freeze.
    TmpFile(PathBuf),
    /// A `.wal.lz4` next to the `.wal` of the same index (a freeze interrupted before the
    /// unlink); the `.wal` was read.
    ShadowedCold(PathBuf),
    /// A file that is not ours; ignored.
    Foreign(PathBuf),
    /// Records beyond the torn tail, which recovery drops (and moves to `quarantine/`).
    Dropped(TailDrop),
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::TornTail { path, offset, kind } => {
                write!(f, "{}: offset {offset}: torn tail ({kind})", path.display())
            }
            Warning::Unsealed(p) => write!(f, "{}: unsealed segment", p.display()),
            Warning::UnusedSegment(p) => {
                write!(f, "{}: prepared segment, never used", p.display())
            }
            Warning::TmpFile(p) => write!(f, "{}: temporary file left over", p.display()),
            Warning::ShadowedCold(p) => write!(
                f,
                "{}: compressed copy of a segment that is still hot",
                p.display()
            ),
            Warning::Foreign(p) => write!(f, "{}: not a wal-recorder file, ignored", p.display()),
            Warning::Dropped(d) => d.fmt(f),
        }
    }
}

/// Where the next segment must continue from.
#[derive(Debug, Clone, Copy)]
struct ChainPoint {
    index: u64,
    next_seq: u64,
    crc: u32,
    /// The log's greatest record time so far (0 without time).
    max_time: u64,
    /// How the segment frames its records.
    framing: crate::segment::format::Framing,
}

/// Where the current segment's chain comes from.
enum Source {
    /// Its records, read and checked.
    Read(SegmentReader<Box<dyn Read + Send>>),
    /// Its summary: header and seal only, records not read.
    Summary(SegmentSummary),
}

/// Opens the byte stream of a segment that is not a local file (an archived object).
pub type SourceOpener = Box<dyn FnMut(&SegmentEntry) -> Result<Box<dyn Read + Send>> + Send>;

/// Reads a log directory as one verified stream of records.
pub struct LogReader {
    segments: Vec<SegmentEntry>,
    /// Index into `segments` of the next segment to open.
    pos: usize,
    cur: Option<(SegmentEntry, Source)>,
    chain: Option<ChainPoint>,
    warnings: Vec<Warning>,
    done: bool,
    /// Reading one file whose name is not a segment name: do not compare index and name.
    ignore_index: bool,
    /// Reading one file given by the user: an empty or zero-header file is an error.
    single_file: bool,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    records: u64,
    segments_read: u64,
    hot_read: u64,
    cold_read: u64,
    /// Where segments come from when they are not files.
    opener: Option<SourceOpener>,
    /// Which break may end the log.
    rule: TailRule,
    /// The last segment finished ended unsealed (a zero frame).
    prev_open: bool,
    /// Walk sealed segments by their summaries instead of their records (recovery).
    summaries: Option<SummaryIndex>,
    /// The last segment finished came from its summary.
    prev_summarized: bool,
    /// A summary did not continue the chain (or the segment after it did not): the walk
    /// stopped there and must be redone from the records.
    summary_conflict: Option<PathBuf>,
    /// Segments taken from their summaries.
    summarized: u64,
    /// Summaries of the cold segments read in full and found sealed.
    learned: Vec<(SegmentSummary, FileStamp)>,
    /// The record [`Self::open_at`] positioned on, returned first.
    pending: Option<(RecordInfo, Vec<u8>)>,
    /// Entries of `segments` from here on were listed by name: stat'ed when looked at.
    stat_from: usize,
}

/// How [`LogReader::scan_to_time`] ended.
enum TimeScan {
    /// On the record.
    Found,
    /// The log's first record is later than the time (its time).
    BeforeLog(u64),
    /// The log ended first (the greatest time read).
    Ended(Option<u64>),
}

/// A break found while reading: where, what, and how much of its file stays.
struct Break {
    /// Position in `segments` of the file holding it.
    pos: usize,
    offset: u64,
    kind: Corruption,
    /// The file keeps its records before `offset` (false: the whole file is beyond the end).
    cut: bool,
    /// What [`TailRule::Strict`] accepts: a torn record at the very end of the log.
    clean: bool,
    /// What writes lost in a power cut can leave (zeros where data should be, a frame cut
    /// short, a header never written, a chain cut after an unsealed segment). A bit flipped in
    /// a record whose successor is intact, a foreign or damaged header, or a segment missing
    /// after a sealed one cannot come from lost writes: those are corruption under every
    /// rule but [`TailRule::FirstBreak`].
    lost_write: bool,
}

impl Break {
    /// A break that takes its whole file beyond the end of the log (a header that is
    /// missing, damaged or does not continue; a damaged compressed segment).
    fn whole_file(pos: usize, offset: u64, kind: Corruption, lost_write: bool) -> Self {
        Break {
            pos,
            offset,
            kind,
            cut: false,
            clean: false,
            lost_write,
        }
    }
}

impl LogReader {
    /// Reads every segment of `dir` in index order.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let listing = list_dir(dir)?;
        let mut warnings: Vec<Warning> = Vec::new();
        warnings.extend(listing.tmp.into_iter().map(Warning::TmpFile));
        warnings.extend(listing.shadowed_cold.into_iter().map(Warning::ShadowedCold));
        warnings.extend(listing.foreign.into_iter().map(Warning::Foreign));
        Ok(Self::new(listing.segments, warnings))
    }

    /// Reads one segment file on its own (its chain start is taken from its header).
    pub fn open_file(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let tier = if name.ends_with(".lz4") {
            Tier::Cold
        } else {
            Tier::Hot
        };
        let index = match crate::segment::names::classify(name) {
            crate::segment::names::FileKind::Hot(i) | crate::segment::names::FileKind::Cold(i) => {
                Some(i)
            }
            _ => None,
        };
        let entry = SegmentEntry {
            index: index.unwrap_or(u64::MAX),
            path: path.to_path_buf(),
            tier,
            file_len: meta.len(),
            stamp: super::summary::FileStamp::of(&meta),
        };
        let mut reader = Self::new(vec![entry], Vec::new());
        reader.ignore_index = index.is_none();
        reader.single_file = true;
        Ok(reader)
    }

    fn new(segments: Vec<SegmentEntry>, warnings: Vec<Warning>) -> Self {
        LogReader {
            segments,
            pos: 0,
            cur: None,
            chain: None,
            warnings,
            done: false,
            ignore_index: false,
            single_file: false,
            first_seq: None,
            last_seq: None,
            records: 0,
            segments_read: 0,
            hot_read: 0,
            cold_read: 0,
            opener: None,
            rule: TailRule::default(),
            prev_open: false,
            summaries: None,
            prev_summarized: false,
            summary_conflict: None,
            summarized: 0,
            learned: Vec::new(),
            pending: None,
            stat_from: usize::MAX,
        }
    }

    /// Reads `dir` from sequence number `seq` on: finds the segment holding it by bisecting
    /// the segments' first sequence numbers (summaries and headers, see [`super::seek`]),
    /// then reads only inside that segment up to it, the chain checked from that segment's
    /// header on. [`Error::SeqNotFound`] if the log does not hold `seq`.
    pub fn open_at(dir: &Path, seq: u64) -> Result<Self> {
        super::seek::relisting(|| Self::open_at_once(dir, seq))
    }

    fn open_at_once(dir: &Path, seq: u64) -> Result<Self> {
        let names = list_segment_names(dir)?;
        let index = SummaryIndex::load(dir);
        let first = match names.first() {
            Some(e) => super::seek::first_seq_of(&stat_entry(e)?, &index)?,
            None => None,
        };
        let not_found = |last| Error::SeqNotFound {
            dir: dir.to_path_buf(),
            seq,
            first,
            last,
        };
        let Some(pos) = super::seek::locate(&Named(&names), &index, seq)? else {
            return Err(not_found(None)); // before the first retained record
        };
        let target = super::jump::Target::Seq(seq);
        let mut reader = Self::from_names(&names[pos..])?;
        if let Some(r) = super::jump::reader_near(&reader.segments[0], target)? {
            reader.start_inside(r)?;
            if let Ok(true) = reader.scan_to_seq(seq) {
                return Ok(reader);
            }
            // The index did not hold: read the segment from its header.
            reader = Self::from_names(&names[pos..])?;
        }
        reader.start_seeking()?;
        match reader.scan_to_seq(seq)? {
            true => Ok(reader),
            false => Err(not_found(reader.last_seq())),
        }
    }

    /// A reader of segments listed by name ([`list_segment_names`]): the first stat'ed now,
    /// each later one when it is looked at.
    fn from_names(names: &[SegmentEntry]) -> Result<Self> {
        let mut segments = names.to_vec();
        segments[0] = stat_entry(&names[0])?;
        let mut r = Self::new(segments, Vec::new());
        r.stat_from = 1;
        Ok(r)
    }

    /// The segment at `pos`, with its size and stamp (read now for one listed by name).
    fn entry(&self, pos: usize) -> Result<SegmentEntry> {
        let e = &self.segments[pos];
        match pos < self.stat_from {
            true => Ok(e.clone()),
            false => stat_entry(e),
        }
    }

    /// Starts the first segment with `r`, a reader resumed inside it or one that decodes its
    /// blocks from its header ([`super::jump`]).
    fn start_inside(&mut self, r: SegmentReader<Box<dyn Read + Send>>) -> Result<()> {
        assert!(
            self.pos == 0 && self.cur.is_none(),
            "only before the first read"
        );
        let entry = self.segments[0].clone();
        self.check_continues(&entry, r.header())?;
        self.pos = 1;
        self.count_opened(entry.tier);
        self.cur = Some((entry, Source::Read(r)));
        Ok(())
    }

    /// A seek that reads its first segment from the header: a cold one through its blocks
    /// (cheaper to start than the frame decoder), when they can be entered.
    fn start_seeking(&mut self) -> Result<()> {
        match super::jump::reader_from_start(&self.segments[0]) {
            Ok(Some(r)) => self.start_inside(r),
            Err(e) if super::seek::vanished(&e) => Err(e),
            // A frame with linked blocks, or a header that does not read: the reader's own
            // path opens it and reports what it finds.
            _ => Ok(()),
        }
    }

    /// Reads on to the record `seq` and keeps it for the next call; false when the log ends
    /// (or breaks) first.
    fn scan_to_seq(&mut self, seq: u64) -> Result<bool> {
        let mut buf = Vec::new();
        loop {
            match self.next_record(&mut buf)? {
                Some(info) if info.seq < seq => {}
                Some(info) if info.seq == seq => {
                    self.pending = Some((info, buf));
                    (self.records, self.first_seq) = (1, Some(seq));
                    return Ok(true);
                }
                _ => return Ok(false),
            }
        }
    }

    /// Reads `dir` from the first record whose time is at or after `time` (in log order:
    /// with a clock that stepped back, later records may be earlier than `time`; they are
    /// returned in their place). Finds its segment by bisecting the segments' running max
    /// times (seals and summaries, docs/FORMAT.md "Time"), then reads only that segment up to
    /// it. [`Error::TimeNotFound`] if `time` is before the log's first record or after the
    /// greatest time it holds (records without time, format version 1, hold none).
    pub fn open_at_time(dir: &Path, time: std::time::SystemTime) -> Result<Self> {
        Self::open_at_time_ns(dir, super::log_time::system_time_ns(time))
    }

    /// [`Self::open_at_time`] with the time in nanoseconds since the Unix epoch.
    pub fn open_at_time_ns(dir: &Path, time_ns: u64) -> Result<Self> {
        super::seek::relisting(|| Self::open_at_time_once(dir, time_ns))
    }

    fn open_at_time_once(dir: &Path, t: u64) -> Result<Self> {
        let names = list_segment_names(dir)?;
        let index = SummaryIndex::load(dir);
        let not_found = |first, last| Error::TimeNotFound {
            dir: dir.to_path_buf(),
            time_ns: t,
            first,
            last,
        };
        let first_time = || -> Result<Option<u64>> {
            if names.is_empty() {
                return Ok(None);
            }
            let mut r = Self::from_names(&names)?;
            let mut buf = Vec::new();
            Ok(r.next_record(&mut buf)?.and_then(|i| i.time))
        };
        let Some(pos) = super::time_seek::locate_time(&Named(&names), &index, t)? else {
            let last = match names.last() {
                Some(e) => {
                    super::time_seek::max_time_of(&stat_entry(e)?, &index)?.filter(|&m| m > 0)
                }
                None => None,
            };
            return Err(not_found(first_time()?, last));
        };
        let target = super::jump::Target::Time(t);
        let entry = stat_entry(&names[pos])?;
        if let Some(r) = super::jump::reader_near(&entry, target)? {
            let mut reader = Self::from_names(&names[pos..])?;
            reader.start_inside(r)?;
            // Records before the entry are all earlier than `t`: the one found is not the log's
            // first.
            if let Ok(TimeScan::Found) = reader.scan_to_time(t, false) {
                return Ok(reader);
            }
        }
        let mut reader = Self::from_names(&names[pos..])?;
        reader.start_seeking()?;
        match reader.scan_to_time(t, pos == 0)? {
            TimeScan::Found => Ok(reader),
            TimeScan::BeforeLog(first) => Err(not_found(Some(first), None)),
            TimeScan::Ended(max) => Err(not_found(first_time()?, max)),
        }
    }

    /// Reads on to the first record whose time is at or after `t` and keeps it for the next
    /// call. `at_log_start`: the reader starts at the log's first record.
    fn scan_to_time(&mut self, t: u64, at_log_start: bool) -> Result<TimeScan> {
        let mut buf = Vec::new();
        let mut max = None;
        loop {
            let Some(info) = self.next_record(&mut buf)? else {
                return Ok(TimeScan::Ended(max));
            };
            match info.time {
                Some(time) if time >= t => {
                    if at_log_start && self.records == 1 && time > t {
                        return Ok(TimeScan::BeforeLog(time));
                    }
                    self.pending = Some((info, buf));
                    (self.records, self.first_seq) = (1, Some(info.seq));
                    return Ok(TimeScan::Found);
                }
                Some(time) => max = Some(max.map_or(time, |m: u64| m.max(time))),
                None => {}
            }
        }
    }

    /// The records from here on, each with its payload (an allocation per record; use
    /// [`Self::next_record`] to reuse one buffer).
    pub fn into_records(self) -> Records {
        Records { reader: self }
    }

    /// Walks sealed segments by their summaries (cold: entries of `index` that match the
    /// file; hot: the header and the seal at the end), without reading their records:
    /// recovery's constant-time chain walk. Their records are counted, not returned. If a
    /// summary does not continue the chain, the walk stops there and
    /// [`Self::summary_conflict`] names the file: walk again without summaries.
    pub fn with_summaries(mut self, index: SummaryIndex) -> Self {
        self.summaries = Some(index);
        self
    }

    /// The file where a summary disagreed with the chain (see [`Self::with_summaries`]).
    pub fn summary_conflict(&self) -> Option<&Path> {
        self.summary_conflict.as_deref()
    }

    /// Segments taken from their summaries.
    pub fn summarized(&self) -> u64 {
        self.summarized
    }

    /// Summaries of the cold segments this walk had to read in full (and found sealed).
    pub(crate) fn learned(&self) -> &[(SegmentSummary, FileStamp)] {
        &self.learned
    }

    /// Reads with `rule` deciding which break ends the log (default: `TruncateTail`).
    pub(crate) fn with_rule(mut self, rule: TailRule) -> Self {
        self.rule = rule;
        self
    }

    /// Reads `segments` (cold, in index order) through `opener`: a log that lives in an
    /// archive. `warnings` are reported as found.
    #[cfg(feature = "archive")]
    pub(crate) fn from_sources(
        segments: Vec<SegmentEntry>,
        warnings: Vec<Warning>,
        opener: SourceOpener,
    ) -> Self {
        let mut r = Self::new(segments, warnings);
        r.opener = Some(opener);
        r
    }

    /// The next record, its payload in `payload`; `Ok(None)` at the end of the log.
    pub fn next_record(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordInfo>> {
        if let Some((info, bytes)) = self.pending.take() {
            *payload = bytes;
            return Ok(Some(info));
        }
        loop {
            if self.done {
                return Ok(None);
            }
            if self.cur.is_none() && !self.open_next()? {
                self.done = true;
                return Ok(None);
            }
            let (_, source) = self.cur.as_mut().expect("a segment is open");
            let Source::Read(reader) = source else {
                self.finish_segment()?;
                continue;
            };
            match reader.next_record(payload) {
                Ok(Some(info)) => {
                    self.first_seq.get_or_insert(info.seq);
                    self.last_seq = Some(info.seq);
                    self.records += 1;
                    return Ok(Some(info));
                }
                Ok(None) => self.finish_segment()?,
                // A damaged compressed frame: the file is unreadable from here.
                Err(Error::Corrupt { offset, kind, .. }) => {
                    self.cur = None;
                    self.on_break(Break::whole_file(self.pos - 1, offset, kind, false))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the next segment that has a header; false when there is none.
    fn open_next(&mut self) -> Result<bool> {
        while self.pos < self.segments.len() {
            let entry = self.entry(self.pos)?;
            self.pos += 1;
            if let Some(summary) = self.summary_of(&entry)? {
                let h = summary.header();
                if self.check_continues(&entry, &h).is_err() {
                    self.summary_conflict = Some(entry.path);
                    self.done = true;
                    return Ok(false);
                }
                self.count_opened(entry.tier);
                self.summarized += 1;
                self.cur = Some((entry, Source::Summary(summary)));
                return Ok(true);
            }
            let src = match self.opener.as_mut() {
                Some(open) => open(&entry)?,
                None => open_source(&entry)?,
            };
            let reader = match SegmentReader::new(src, &entry.path) {
                Ok(r) => r,
                // Only a hot segment can be a prepared one never used: nothing unused is ever
                // frozen, so a cold segment without a header is corruption.
                Err(Error::Corrupt {
                    kind: Corruption::ZeroHeader | Corruption::EmptyFile,
                    ..
                }) if !self.single_file
                    && entry.tier == Tier::Hot
                    && crate::segment::reader::is_unused_file(&entry.path)?
                    && self.rest_unused()? =>
                {
                    self.warnings.push(Warning::UnusedSegment(entry.path));
                    continue;
                }
                Err(Error::Corrupt { offset, kind, .. }) if !self.single_file => {
                    // Prepare makes a file's size durable before the writer can use it, so
                    // only a header page that never reached the disk is a lost write.
                    let lost_write = entry.tier == Tier::Hot && kind == Corruption::ZeroHeader;
                    self.on_break(Break::whole_file(self.pos - 1, offset, kind, lost_write))?;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            if let Err(e) = self.check_continues(&entry, reader.header()) {
                let Error::Corrupt { kind, .. } = e else {
                    return Err(e);
                };
                if self.prev_summarized {
                    self.summary_conflict = Some(entry.path);
                    self.done = true;
                    return Ok(false);
                }
                // Segment N + 1 written while N lost its last pages: N ends unsealed.
                let lost_write = entry.tier == Tier::Hot && self.prev_open;
                self.on_break(Break::whole_file(self.pos - 1, 0, kind, lost_write))?;
                return Ok(false);
            }
            self.count_opened(entry.tier);
            self.cur = Some((entry, Source::Read(reader)));
            return Ok(true);
        }
        Ok(false)
    }

    fn count_opened(&mut self, tier: Tier) {
        self.segments_read += 1;
        match tier {
            Tier::Hot => self.hot_read += 1,
            Tier::Cold => self.cold_read += 1,
        }
    }

    /// The summary to walk `entry` by, when walking by summaries and it has one.
    fn summary_of(&self, entry: &SegmentEntry) -> Result<Option<SegmentSummary>> {
        let Some(index) = &self.summaries else {
            return Ok(None);
        };
        match entry.tier {
            Tier::Cold => Ok(index.get(entry)),
            Tier::Hot => hot_summary(entry),
        }
    }

    /// Checks that a segment's header continues the chain of the one before it.
    fn check_continues(
        &self,
        entry: &SegmentEntry,
        h: &crate::segment::format::SegmentHeader,
    ) -> Result<()> {
        let bad = |why: String| Err(Error::corrupt(&entry.path, 0, Corruption::BrokenChain(why)));
        if !self.ignore_index && h.index != entry.index {
            return Err(Error::corrupt(
                &entry.path,
                0,
                Corruption::BadHeader("segment index does not match the file name"),
            ));
        }
        let Some(prev) = self.chain else {
            return Ok(());
        };
        if h.index != prev.index + 1 {
            return bad(format!(
                "segment {} follows segment {}: segments are missing",
                h.index, prev.index
            ));
        }
        if h.first_seq != prev.next_seq {
            return bad(format!(
                "first sequence number {} where {} was expected",
                h.first_seq, prev.next_seq
            ));
        }
        if h.prev_crc != prev.crc {
            return bad(format!(
                "previous checksum {:#010x} where the last record has {:#010x}",
                h.prev_crc, prev.crc
            ));
        }
        if h.framing.timed() && h.prev_max_time != prev.max_time {
            return bad(format!(
                "previous max time {} where the records before it reach {}",
                h.prev_max_time, prev.max_time
            ));
        }
        Ok(())
    }

    /// Decides what the end of the current segment means for the log.
    fn finish_segment(&mut self) -> Result<()> {
        let (entry, source) = self.cur.take().expect("a segment is open");
        let mut reader = match source {
            Source::Read(reader) => reader,
            Source::Summary(s) => {
                self.chain = Some(ChainPoint {
                    index: s.index,
                    next_seq: s.next_seq(),
                    crc: s.last_crc,
                    max_time: s.times.map_or(0, |(_, t)| t.max),
                    framing: s.framing(),
                });
                self.prev_open = false;
                self.prev_summarized = true;
                if s.count > 0 {
                    self.first_seq.get_or_insert(s.first_seq);
                    self.last_seq = Some(s.next_seq() - 1);
                    self.records += s.count;
                }
                return Ok(());
            }
        };
        self.prev_summarized = false;
        let end = reader.end().cloned().expect("reader ended");
        let before = self.chain;
        self.chain = Some(ChainPoint {
            index: reader.header().index,
            next_seq: reader.next_seq(),
            crc: reader.last_crc(),
            max_time: reader.times().map_or(0, |t| t.max),
            framing: reader.header().framing,
        });
        let pos = self.pos - 1;
        let whole_file = |offset, kind| Break::whole_file(pos, offset, kind, false);
        self.prev_open = matches!(end, SegmentEnd::Open { .. });
        match end {
            SegmentEnd::Sealed(seal) if entry.tier == Tier::Cold => {
                match reader.expect_end_of_stream() {
                    Err(Error::Corrupt { offset, kind, .. }) => {
                        self.chain = before;
                        self.on_break(whole_file(offset, kind))
                    }
                    Ok(()) if reader.resumed() => Ok(()), // not read in full
                    Ok(()) => {
                        let s = SegmentSummary::new(reader.header(), &seal);
                        self.learned.push((s, entry.stamp));
                        Ok(())
                    }
                    other => other,
                }
            }
            SegmentEnd::Sealed(_) => Ok(()),
            SegmentEnd::Open { offset } if entry.tier == Tier::Cold => {
                self.chain = before;
                self.on_break(whole_file(
                    offset,
                    Corruption::BadSeal("compressed segment without a seal"),
                ))
            }
            SegmentEnd::Open { .. } if !self.rest_unused()? => {
                self.warnings.push(Warning::Unsealed(entry.path));
                Ok(())
            }
            // The clean end of the log, unless data lies beyond the zero frame (pages written
            // back after a hole that never reached the disk).
            SegmentEnd::Open { offset } => {
                if self.single_file || data_beyond_hole(&entry.path, offset)? == 0 {
                    return Ok(());
                }
                self.on_break(Break {
                    pos,
                    offset,
                    kind: Corruption::PartialFrame,
                    cut: true,
                    clean: false,
                    lost_write: true,
                })
            }
            SegmentEnd::Broken { offset, kind, .. } if entry.tier == Tier::Cold => {
                self.chain = before;
                self.on_break(whole_file(offset, kind))
            }
            SegmentEnd::Broken {
                offset,
                kind,
                data_after,
            } => {
                let capacity = reader.header().capacity;
                // At its preallocated size, with or without the drain's watermark page.
                let full_size = entry.file_len == capacity
                    || entry.file_len == capacity + crate::segment::watermark::WATERMARK_LEN;
                let clean = !data_after && full_size && self.rest_unused()?;
                // A record that fails its checksum between intact neighbours is bit rot,
                // unless part of it reads as a whole zero sector (a write that never landed).
                let lost_write = !(matches!(kind, Corruption::RecordChecksum { .. })
                    && data_after
                    && !zero_sector_in_frame(&entry.path, offset, reader.header().framing)?);
                self.on_break(Break {
                    pos,
                    offset,
                    kind,
                    cut: true,
                    clean,
                    lost_write,
                })
            }
        }
    }

    /// The log ends at `b` if the reader's rule allows it (a torn tail, reported, and what
    /// lies beyond it reported as dropped); otherwise `b` is corruption.
    fn on_break(&mut self, b: Break) -> Result<()> {
        let entry = self.entry(b.pos)?;
        let allowed = match self.rule {
            _ if self.single_file => b.clean,
            TailRule::Strict => b.clean,
            TailRule::TruncateTail => b.lost_write && !self.proven_durable_from(b.pos)?,
            TailRule::FirstBreak => true,
        };
        if !allowed {
            return Err(Error::corrupt(&entry.path, b.offset, b.kind));
        }
        self.done = true;
        // Trailing unused segments are prepared ones: not part of what is dropped.
        let mut last = self.segments.len();
        while last > b.pos + 1 && self.is_unused(last - 1)? {
            last -= 1;
        }
        let first_beyond = if b.cut { b.pos + 1 } else { b.pos };
        let files = (first_beyond..last.max(first_beyond))
            .map(|i| self.entry(i))
            .collect::<Result<Vec<SegmentEntry>>>()?;
        // Repair keeps a copy of whatever a cut would destroy; the other rules, of the data
        // written beyond a hole (a torn record followed by zeros holds nothing to keep).
        let bytes_after = match (b.cut, entry.tier, self.rule) {
            (true, Tier::Hot, TailRule::FirstBreak) => data_after(&entry.path, b.offset)?,
            (true, Tier::Hot, _) => data_beyond_hole(&entry.path, b.offset)?,
            _ => 0,
        };
        self.warnings.push(Warning::TornTail {
            path: entry.path.clone(),
            offset: b.offset,
            kind: b.kind,
        });
        if files.is_empty() && bytes_after == 0 {
            return Ok(()); // a torn record and nothing after it
        }
        let (mut records, mut last_seq) = (0, None);
        for f in &files {
            let (n, l) = count_records(f);
            records += n;
            last_seq = last_seq.max(l);
        }
        let first_seq = self
            .chain
            .map_or(crate::constants::FIRST_SEQ, |c| c.next_seq);
        self.warnings.push(Warning::Dropped(TailDrop {
            path: entry.path,
            offset: b.offset,
            first_seq,
            files: files.into_iter().map(|f| f.path).collect(),
            records,
            last_seq,
            bytes_after,
        }));
        Ok(())
    }

    /// Whether a segment at or after position `pos` proves everything before it durable.
    fn proven_durable_from(&self, pos: usize) -> Result<bool> {
        for i in pos..self.segments.len() {
            if proves_durable(&self.entry(i)?)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn is_unused(&self, pos: usize) -> Result<bool> {
        let entry = &self.segments[pos];
        Ok(entry.tier == Tier::Hot && crate::segment::reader::is_unused_file(&entry.path)?)
    }

    /// True when every segment not yet opened is hot with an all-zero header.
    fn rest_unused(&self) -> Result<bool> {
        for entry in &self.segments[self.pos..] {
            if entry.tier != Tier::Hot {
                return Ok(false);
            }
            if !crate::segment::reader::is_unused_file(&entry.path)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Warnings collected so far.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// First sequence number read.
    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// Last sequence number read.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Records read.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Segments opened so far: (all, hot, cold).
    pub(crate) fn segments_read(&self) -> (u64, u64, u64) {
        (self.segments_read, self.hot_read, self.cold_read)
    }

    /// Where the chain stands after the last finished segment, and how that segment
    /// frames its records.
    pub(crate) fn chain_end(
        &self,
    ) -> Option<(crate::segment::ChainPoint, crate::segment::format::Framing)> {
        self.chain.map(|c| {
            let at = crate::segment::ChainPoint {
                next_seq: c.next_seq,
                crc: c.crc,
                max_time: c.max_time,
            };
            (at, c.framing)
        })
    }
}

/// An iterator over a [`LogReader`]'s records: `(info, payload)`, or the error that ended
/// the read (then `None`).
pub struct Records {
    reader: LogReader,
}

impl Records {
    /// The reader (its warnings, counters and chain end).
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }
}

impl Iterator for Records {
    type Item = Result<(RecordInfo, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut payload = Vec::new();
        match self.reader.next_record(&mut payload) {
            Ok(Some(info)) => Some(Ok((info, payload))),
            Ok(None) => None,
            Err(e) => {
                self.reader.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Data written beyond a hole after `offset`: bytes from the end of the first all-zero
/// sector at or after `offset` to the last non-zero byte of the file. A torn record
/// followed by zeros has none; pages written back after a page that was lost have some.
fn data_beyond_hole(path: &Path, offset: u64) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    const SECTOR: u64 = 512;
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut sector = [0u8; SECTOR as usize];
    let mut at = offset.div_ceil(SECTOR) * SECTOR;
    loop {
        let n = f
            .read_at(&mut sector, at)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            return Ok(0);
        }
        if sector[..n].iter().all(|&b| b == 0) {
            return data_after(path, at + n as u64);
        }
        at += SECTOR;
    }
}

/// Whether a 512-byte sector overlapping the record frame at `offset` is all zeros.
fn zero_sector_in_frame(
    path: &Path,
    offset: u64,
    framing: crate::segment::format::Framing,
) -> Result<bool> {
    use crate::segment::format::REC_LEN_OFFSET;
    use std::os::unix::fs::FileExt;
    const SECTOR: u64 = 512;
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut head = [0u8; 16];
    f.read_exact_at(&mut head, offset)
        .map_err(|e| Error::io("read", path, e))?;
    let len = u32::from_le_bytes(
        head[REC_LEN_OFFSET..REC_LEN_OFFSET + 4]
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let end = offset + framing.record_size(len.min(1 << 24)) as u64;
    let mut sector = [0u8; SECTOR as usize];
    let mut at = offset / SECTOR * SECTOR;
    while at < end {
        let n = f
            .read_at(&mut sector, at)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 || sector[..n].iter().all(|&b| b == 0) {
            return Ok(true);
        }
        at += SECTOR;
    }
    Ok(false)
}

/// Opens the byte stream of a segment: the file itself, or its decoder.
pub(crate) fn open_source(entry: &SegmentEntry) -> Result<Box<dyn Read + Send>> {
    let file = File::open(&entry.path).map_err(|e| Error::io("open", &entry.path, e))?;
    match entry.tier {
        Tier::Hot => Ok(Box::new(BufReader::with_capacity(READ_BUF, file))),
        Tier::Cold => crate::codec::open_cold(file, &entry.path),
    }
}
