//! `LogReader`: the records of a whole directory (or of one file) in sequence order, with the
//! chain checked across segment boundaries.
//!
//! Classification of a break (a byte range that is neither a valid record, nor the zero end
//! marker, nor a valid seal): it is a **torn tail** when it sits in the last segment that has
//! a header, that segment is hot and still at its full preallocated size (a persisted segment
//! is truncated to its used length, so it cannot have a torn tail), and every later segment
//! is an unused prepared one (zero header). Anything else is **corruption**.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::listing::{list_dir, SegmentEntry, Tier};
use crate::error::{Corruption, Error, Result};
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
        }
    }
}

/// Where the next segment must continue from.
#[derive(Debug, Clone, Copy)]
struct ChainPoint {
    index: u64,
    next_seq: u64,
    crc: u32,
}

/// Opens the byte stream of a segment that is not a local file (an archived object).
pub type SourceOpener = Box<dyn FnMut(&SegmentEntry) -> Result<Box<dyn Read + Send>> + Send>;

/// Reads a log directory as one verified stream of records.
pub struct LogReader {
    segments: Vec<SegmentEntry>,
    /// Index into `segments` of the next segment to open.
    pos: usize,
    cur: Option<(SegmentEntry, SegmentReader<Box<dyn Read + Send>>)>,
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
        }
    }

    /// Reads `segments` (cold, in index order) through `opener`: a log that lives in an
    /// archive. `warnings` are reported as found.
    pub fn from_sources(
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
        loop {
            if self.done {
                return Ok(None);
            }
            if self.cur.is_none() && !self.open_next()? {
                self.done = true;
                return Ok(None);
            }
            let (_, reader) = self.cur.as_mut().expect("a segment is open");
            if let Some(info) = reader.next_record(payload)? {
                self.first_seq.get_or_insert(info.seq);
                self.last_seq = Some(info.seq);
                self.records += 1;
                return Ok(Some(info));
            }
            self.finish_segment()?;
        }
    }

    /// Opens the next segment that has a header; false when there is none.
    fn open_next(&mut self) -> Result<bool> {
        while self.pos < self.segments.len() {
            let entry = self.segments[self.pos].clone();
            self.pos += 1;
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
                }) if !self.single_file && entry.tier == Tier::Hot && self.rest_unused()? => {
                    self.warnings.push(Warning::UnusedSegment(entry.path));
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.check_continues(&entry, reader.header())?;
            self.segments_read += 1;
            match entry.tier {
                Tier::Hot => self.hot_read += 1,
                Tier::Cold => self.cold_read += 1,
            }
            self.cur = Some((entry, reader));
            return Ok(true);
        }
        Ok(false)
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
        Ok(())
    }

    /// Decides what the end of the current segment means for the log.
    fn finish_segment(&mut self) -> Result<()> {
        let (entry, mut reader) = self.cur.take().expect("a segment is open");
        let end = reader.end().cloned().expect("reader ended");
        self.chain = Some(ChainPoint {
            index: reader.header().index,
            next_seq: reader.next_seq(),
            crc: reader.last_crc(),
        });
        match end {
            SegmentEnd::Sealed(_) if entry.tier == Tier::Cold => reader.expect_end_of_stream(),
            SegmentEnd::Sealed(_) => Ok(()),
            SegmentEnd::Open { offset } if entry.tier == Tier::Cold => Err(Error::corrupt(
                &entry.path,
                offset,
                Corruption::BadSeal("compressed segment without a seal"),
            )),
            SegmentEnd::Open { .. } => {
                if !self.rest_unused()? {
                    self.warnings.push(Warning::Unsealed(entry.path));
                }
                Ok(())
            }
            SegmentEnd::Broken {
                offset,
                kind,
                data_after,
            } => {
                let full_size = entry.file_len == reader.header().capacity;
                if !data_after && entry.tier == Tier::Hot && full_size && self.rest_unused()? {
                    self.warnings.push(Warning::TornTail {
                        path: entry.path,
                        offset,
                        kind,
                    });
                    self.done = true;
                    Ok(())
                } else {
                    Err(Error::corrupt(&entry.path, offset, kind))
                }
            }
        }
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
    pub fn segments_read(&self) -> (u64, u64, u64) {
        (self.segments_read, self.hot_read, self.cold_read)
    }

    /// Where the chain stands after the last finished segment: (next seq, last crc).
    pub fn chain_end(&self) -> Option<(u64, u32)> {
        self.chain.map(|c| (c.next_seq, c.crc))
    }
}

/// Opens the byte stream of a segment: the file itself, or its decoder.
fn open_source(entry: &SegmentEntry) -> Result<Box<dyn Read + Send>> {
    let file = File::open(&entry.path).map_err(|e| Error::io("open", &entry.path, e))?;
    match entry.tier {
        Tier::Hot => Ok(Box::new(BufReader::with_capacity(READ_BUF, file))),
        Tier::Cold => crate::codec::open_cold(file, &entry.path),
    }
}
