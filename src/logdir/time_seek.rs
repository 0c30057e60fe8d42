//! Finding where a time starts in a log without reading its records: a bisection over the
//! segments' running max times (each seal's `max time`, from a hot segment's seal or a cold
//! one's `cold.summary` entry; docs/FORMAT.md, "Time"), which never decrease along the log.
//! The first record whose time is at or after `t` lies in the first segment whose max time is
//! at or after `t`; the reader then reads only that segment up to it.

use std::io::Read;

use super::listing::{SegmentEntry, Tier};
use super::summary::{hot_summary, SummaryIndex};
use crate::error::{Error, Result};
use crate::segment::{SegmentEnd, SegmentReader};

/// The greatest record time in the log up to the end of `entry`: `Some(0)` for a segment
/// without time (version 1: its records are before any time), `None` when the segment is
/// not sealed yet (the active one, one not persisted yet, a prepared one: at the end of the
/// log, and the answer may be there). A cold segment without a usable summary is decoded.
pub(crate) fn max_time_of(entry: &SegmentEntry, index: &SummaryIndex) -> Result<Option<u64>> {
    let summary = match entry.tier {
        Tier::Cold => index.get(entry),
        Tier::Hot => hot_summary(entry)?,
    };
    if let Some(s) = summary {
        return Ok(Some(s.times.map_or(0, |(_, t)| t.max)));
    }
    // No summary: read it to its seal (a cold segment without an entry; a hot one sealed and
    // not yet truncated, or never truncated by whoever wrote it; the active one).
    let path = &entry.path;
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let src: Box<dyn Read + Send> = match entry.tier {
        Tier::Cold => crate::codec::open_cold(file, path)?,
        Tier::Hot => Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
    };
    let mut r = match SegmentReader::new(src, path) {
        Ok(r) => r,
        Err(_) if entry.tier == Tier::Hot => return Ok(None), // prepared, or being written
        Err(e) => return Err(e),
    };
    match (r.skip_to_end()?, entry.tier) {
        (SegmentEnd::Sealed(seal), _) => Ok(Some(seal.times.map_or(0, |t| t.max))),
        (_, Tier::Hot) => Ok(None), // the active segment, or a torn one at the end
        (SegmentEnd::Open { offset } | SegmentEnd::Broken { offset, .. }, Tier::Cold) => {
            Err(Error::corrupt(
                path,
                offset,
                crate::Corruption::BadSeal("compressed segment without a seal"),
            ))
        }
    }
}

/// Position in `segments` of the first segment whose max time is at or after `t` (an
/// unsealed one counts as at or after); `None` when every segment ends before `t`. O(log n)
/// header, seal or summary reads.
pub(crate) fn locate_time(
    segments: &[SegmentEntry],
    index: &SummaryIndex,
    t: u64,
) -> Result<Option<usize>> {
    let (mut lo, mut hi) = (0, segments.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match max_time_of(&segments[mid], index)? {
            Some(max) if max < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok((lo < segments.len()).then_some(lo))
}
