//! Finding where a time starts in a log without reading its records: a bisection over the
//! segments' running max times (each seal's `max time`, from a hot segment's seal or a cold
//! one's `cold.summary` entry; docs/FORMAT.md, "Time"), which never decrease along the log.
//! The first record whose time is at or after `t` lies in the first segment whose max time is
//! at or after `t`; the reader then reads only that segment up to it.

use std::io::Read;
use std::path::Path;

use super::listing::{SegmentEntry, Segments, Tier};
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
    let Some(mut r) = reader_of(entry)? else {
        return Ok(None);
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
pub(crate) fn locate_time<S: Segments + ?Sized>(
    segments: &S,
    index: &SummaryIndex,
    t: u64,
) -> Result<Option<usize>> {
    let (mut lo, mut hi) = (0, segments.count());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match max_time_of(&*segments.entry(mid)?, index)? {
            Some(max) if max < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok((lo < segments.count()).then_some(lo))
}

/// Where a tailer that starts at time `t` begins reading: the position in `segments` of the
/// segment [`locate_time`] finds, or the last one when every segment ends before `t` (the
/// tailer waits there for a record at or after `t`); `None` for an empty log (it waits from
/// its start). [`Error::TimeNotFound`] when `t` is before the log's first record, or the log
/// has no time (its last segment is of format version 1: a recorder continues that format).
pub(crate) fn tail_start(
    dir: &Path,
    segments: &[SegmentEntry],
    index: &SummaryIndex,
    t: u64,
) -> Result<Option<usize>> {
    let not_found = |first| Error::TimeNotFound {
        dir: dir.to_path_buf(),
        time_ns: t,
        first,
        last: None,
    };
    let mut framing = None;
    for entry in segments.iter().rev() {
        if let Some(h) = super::seek::header_of(entry)? {
            framing = Some(h.framing);
            break;
        }
    }
    match framing {
        None => return Ok((!segments.is_empty()).then_some(0)), // nothing written yet
        Some(f) if !f.timed() => return Err(not_found(None)),
        Some(_) => {}
    }
    match locate_time(segments, index, t)? {
        Some(0) => match first_time(&segments[0])? {
            Some(first) if first > t => Err(not_found(Some(first))),
            _ => Ok(Some(0)),
        },
        Some(pos) => Ok(Some(pos)),
        None => Ok(Some(segments.len() - 1)),
    }
}

/// The time of a segment's first record (`None`: none yet, or records without time).
fn first_time(entry: &SegmentEntry) -> Result<Option<u64>> {
    let Some(mut r) = reader_of(entry)? else {
        return Ok(None);
    };
    let mut payload = Vec::new();
    Ok(r.next_record(&mut payload)?.and_then(|i| i.time))
}

/// A reader of `entry` from its start; `None` for a hot file whose header is not written yet
/// (prepared ahead, or being written).
fn reader_of(entry: &SegmentEntry) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
    match SegmentReader::new(super::log_reader::open_source(entry)?, &entry.path) {
        Ok(r) => Ok(Some(r)),
        Err(_) if entry.tier == Tier::Hot => Ok(None),
        Err(e) => Err(e),
    }
}
