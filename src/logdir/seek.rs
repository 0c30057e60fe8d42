//! Finding the segment that holds a sequence number without reading the log: a bisection
//! over the segments' first sequence numbers, each taken from the segment's summary (a cold
//! segment's `cold.summary` entry, a hot segment's header) or, where a cold segment has no
//! usable entry, from the first bytes its decoder gives (its header).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::listing::{SegmentEntry, Segments, Tier};
use super::summary::SummaryIndex;
use crate::error::{Corruption, Error, Result};
use crate::segment::format::{SegmentHeader, HEADER_LEN};

/// Times a lookup is tried again when a file it listed disappeared meanwhile.
pub(crate) const RELIST_TRIES: u32 = 8;

/// Runs `attempt` again (up to [`RELIST_TRIES`] times) while it fails on a file that a live
/// log's maintainer froze or deleted after it was listed, or finds the log starting after
/// the sequence number asked for: a directory read while a freeze renames a segment's
/// `.wal.lz4.tmp` and unlinks its `.wal` can see neither name (found by a follower catching
/// up on a recorder that froze its first segment meanwhile).
pub(crate) fn relisting<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match attempt() {
            Err(e) if (vanished(&e) || before_first(&e)) && tries < RELIST_TRIES => tries += 1,
            done => return done,
        }
    }
}

/// Whether `e` says the log starts after the sequence number asked for.
fn before_first(e: &Error) -> bool {
    matches!(e, Error::SeqNotFound { seq, first: Some(first), .. } if seq < first)
}

/// Whether `e` is a file that a live log's maintainer removed after it was listed (a freeze
/// unlinks the `.wal`, retention the `.wal.lz4`): list again and retry.
pub(crate) fn vanished(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// First sequence number of a segment; `None` for a hot file whose header is not written yet
/// (a prepared segment) or is damaged (the reader reports that when it gets there).
pub(crate) fn first_seq_of(entry: &SegmentEntry, index: &SummaryIndex) -> Result<Option<u64>> {
    if let Some(s) = index.get(entry) {
        return Ok(Some(s.first_seq));
    }
    Ok(header_of(entry)?.map(|h| h.first_seq))
}

/// A segment's header, read from its first bytes (decoded for a cold one); `None` for a hot
/// file whose header is not written yet or is damaged.
pub(crate) fn header_of(entry: &SegmentEntry) -> Result<Option<SegmentHeader>> {
    let path = &entry.path;
    let mut head = [0u8; HEADER_LEN];
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let got = match entry.tier {
        Tier::Hot => file.read_at(&mut head, 0),
        Tier::Cold => crate::codec::open_cold(file, path)?.read(&mut head),
    };
    match got {
        Ok(n) if n == HEADER_LEN => Ok(SegmentHeader::decode(&head).ok()),
        Ok(_) if entry.tier == Tier::Hot => Ok(None),
        Ok(_) => Err(Error::corrupt(path, 0, Corruption::TruncatedHeader)),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Position in `segments` of the segment that holds `seq`, if any segment can (the last one
/// whose first sequence number is at most `seq`): O(log n) header or summary reads. Unwritten
/// hot segments at the end are skipped. `Ok(None)`: `seq` lies before the first segment.
pub(crate) fn locate<S: Segments + ?Sized>(
    segments: &S,
    index: &SummaryIndex,
    seq: u64,
) -> Result<Option<usize>> {
    // Hot files whose header is not written yet can only be at the end.
    let mut end = segments.count();
    while end > 0 && first_seq_of(&*segments.entry(end - 1)?, index)?.is_none() {
        end -= 1;
    }
    let (mut lo, mut hi) = (0, end); // answer in lo-1 after: first position with first_seq > seq
    while lo < hi {
        let mid = (lo + hi) / 2;
        let first = first_seq_of(&*segments.entry(mid)?, index)?.unwrap_or(u64::MAX);
        if first <= seq {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.checked_sub(1))
}
