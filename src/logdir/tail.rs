//! The end of the log: which break ends it as a torn tail, and what lies beyond that break.
//!
//! The rule (docs/FORMAT.md, "Reading rules"): `durable_seq` only ever covers a prefix of the
//! log with no break in it, so whatever follows the first break was never reported durable,
//! unless a later file proves that it was. Two kinds of file prove it, because both are made
//! only after everything before them is durable: a cold segment (frozen from a persisted
//! one), and a hot segment truncated below its preallocated capacity (persist truncates only
//! after the segment's own fdatasync, and starts only when every earlier segment is durable;
//! recovery's own cut syncs before it truncates). A break with no such file at or after it is
//! a torn tail; with one, it is corruption.

use std::io::Read;
use std::path::PathBuf;

use super::listing::{SegmentEntry, Tier};
use crate::error::{Error, Result};
use crate::segment::format::{SegmentHeader, HEADER_LEN};
use crate::segment::SegmentReader;

/// Which breaks a reader accepts as the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TailRule {
    /// Only a clean tail: a torn record in the last segment that has a header, that segment
    /// still at its preallocated size, with nothing but unused prepared segments after it.
    Strict,
    /// Any break that no later file proves durable (see the module docs); what follows it is
    /// reported as dropped. What `Recorder::open` does by default and `walctl verify` reports.
    #[default]
    TruncateTail,
    /// The first break wherever it is: `walctl repair`, for a log the other rules refuse.
    FirstBreak,
}

/// What lies beyond a torn tail that is not just a partial record: records that recovery
/// drops (it moves the files into the log's `quarantine/` directory; it never deletes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailDrop {
    /// The file in which the log ends.
    pub path: PathBuf,
    /// Offset of the break in it (0: the file itself is dropped).
    pub offset: u64,
    /// The first sequence number that is not kept.
    pub first_seq: u64,
    /// Whole segment files beyond the break, oldest first.
    pub files: Vec<PathBuf>,
    /// Records in those files that verify on their own.
    pub records: u64,
    /// The highest sequence number among them.
    pub last_seq: Option<u64>,
    /// Bytes between the break and the last non-zero byte of the file the log ends in (data
    /// written after a hole that never reached the disk; not readable as records).
    pub bytes_after: u64,
}

impl std::fmt::Display for TailDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: offset {}: the log ends here; from sequence number {} on, dropped: ",
            self.path.display(),
            self.offset,
            self.first_seq
        )?;
        match self.last_seq {
            Some(last) => write!(
                f,
                "{} records up to {last} in {} later segments",
                self.records,
                self.files.len()
            )?,
            None => write!(f, "{} later segments", self.files.len())?,
        }
        if self.bytes_after > 0 {
            write!(f, ", {} bytes after the break", self.bytes_after)?;
        }
        Ok(())
    }
}

/// Whether `entry` proves that it and every segment before it were durable (module docs).
pub(super) fn proves_durable(entry: &SegmentEntry) -> Result<bool> {
    if entry.tier == Tier::Cold {
        return Ok(true);
    }
    let mut f = std::fs::File::open(&entry.path).map_err(|e| Error::io("open", &entry.path, e))?;
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut f, &mut head).map_err(|e| Error::io("read", &entry.path, e))?;
    Ok(
        got == HEADER_LEN
            && SegmentHeader::decode(&head).is_ok_and(|h| entry.file_len < h.capacity),
    )
}

/// Records that verify in one segment read on its own, and the last sequence number among
/// them. Unreadable files count nothing.
pub(super) fn count_records(entry: &SegmentEntry) -> (u64, Option<u64>) {
    let counted = || -> Result<(u64, Option<u64>)> {
        let file =
            std::fs::File::open(&entry.path).map_err(|e| Error::io("open", &entry.path, e))?;
        let src: Box<dyn Read> = match entry.tier {
            Tier::Hot => Box::new(std::io::BufReader::with_capacity(256 * 1024, file)),
            Tier::Cold => crate::codec::open_cold(file, &entry.path)?,
        };
        let mut r = SegmentReader::new(src, &entry.path)?;
        let mut buf = Vec::new();
        let mut last = None;
        while let Ok(Some(info)) = r.next_record(&mut buf) {
            last = Some(info.seq);
        }
        Ok((r.count(), last))
    };
    counted().unwrap_or((0, None))
}

fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
