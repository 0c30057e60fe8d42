//! Starting a read inside a segment, from its sparse index (docs/FORMAT.md, "Sparse index"):
//! the seek reads (for a cold segment: decodes from the block that holds) the indexed record
//! nearest before its target and scans at most one interval, instead of the segment from its
//! header.
//! Whatever the index says is checked by the records: the entry's record is read first and
//! must carry the entry's sequence number and chain from its checksum, or the caller reads the
//! segment from its header as it would without an index.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::listing::{SegmentEntry, Tier};
use crate::codec::resume::{skip, BlockStream};
use crate::error::{Error, Result};
use crate::segment::names::cold_name;
use crate::segment::sparse_index::{read_index, Content, IndexEntry, SparseIndex};
use crate::segment::SegmentReader;

/// What a seek looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The record with this sequence number.
    Seq(u64),
    /// The first record whose time is at or after this one.
    Time(u64),
}

/// A reader of `entry` from the indexed record nearest before `target`; `None` when there is
/// no usable index (the active segment, a cold one frozen before the index existed, or one
/// whose index is missing, stale, damaged or lying) or the target lies in the first interval.
pub(crate) fn reader_near(
    entry: &SegmentEntry,
    target: Target,
) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
    match (entry.tier, entry.path.parent()) {
        (Tier::Cold, Some(dir)) => cold_reader_near(dir, entry.index, entry.file_len, target),
        (Tier::Hot, Some(dir)) => hot_reader_near(dir, entry, target),
        _ => Ok(None),
    }
}

/// [`reader_near`] for a persisted hot segment, through the index made when it was persisted
/// (the active segment has none: it is read from its header).
fn hot_reader_near(
    dir: &Path,
    entry: &SegmentEntry,
    target: Target,
) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
    let Some((idx, at)) = hot_entry_near(dir, entry.index, entry.file_len, target)? else {
        return Ok(None);
    };
    open_hot_at(&entry.path, &idx, &at).map(Some)
}

/// The entry of persisted hot segment `index` (its file `file_len` bytes) to start at for
/// `target`, checked (its record read, as in [`cold_reader_near`]), with its index.
pub(crate) fn hot_entry_near(
    dir: &Path,
    index: u64,
    file_len: u64,
    target: Target,
) -> Result<Option<(SparseIndex, IndexEntry)>> {
    let Some(idx) = read_index(dir, index) else {
        return Ok(None);
    };
    if idx.content != Content::Plain || idx.cold_len != file_len {
        return Ok(None);
    }
    let Some(at) = pick(&idx, target) else {
        return Ok(None);
    };
    let path = dir.join(crate::segment::names::hot_name(index));
    Ok(checked(open_hot_at(&path, &idx, &at)?, &at)?.map(|()| (idx, at)))
}

fn open_hot_at(
    path: &Path,
    idx: &SparseIndex,
    at: &IndexEntry,
) -> Result<SegmentReader<Box<dyn Read + Send>>> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    file.seek(SeekFrom::Start(at.offset))
        .map_err(|e| Error::io("seek", path, e))?;
    let src: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(HOT_READ_BUF, file));
    Ok(SegmentReader::resume(
        src,
        path,
        idx.header,
        idx.first_time,
        at,
    ))
}

/// Bytes a reader resumed in a hot segment reads at a time: one interval and a bit.
const HOT_READ_BUF: usize = 72 * 1024;

/// The entry to start at for `target`.
fn pick(idx: &SparseIndex, target: Target) -> Option<IndexEntry> {
    match target {
        Target::Seq(seq) => idx.for_seq(seq),
        Target::Time(t) => idx.for_time(t),
    }
    .copied()
}

/// Whether the first record `probe` reads is the one `at` describes (`Some(())`); a file
/// removed meanwhile is an error (the seek lists again), anything else `None`.
fn checked(mut probe: SegmentReader<Box<dyn Read + Send>>, at: &IndexEntry) -> Result<Option<()>> {
    let mut payload = Vec::new();
    match probe.next_record(&mut payload) {
        Ok(Some(info)) if info.seq == at.seq && info.offset == at.offset => Ok(Some(())),
        Ok(_) => Ok(None),
        Err(e) if super::seek::vanished(&e) => Err(e),
        Err(_) => Ok(None),
    }
}

/// A reader of cold segment `entry` from its header that decodes its blocks on their own, as
/// [`reader_near`] does (the frame's content checksum, which covers the whole content, is not
/// checked: its records' are); `None` for a hot segment or a frame with linked blocks.
pub(crate) fn reader_from_start(
    entry: &SegmentEntry,
) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
    if entry.tier != Tier::Cold {
        return Ok(None);
    }
    let path = &entry.path;
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let Some(blocks) = BlockStream::open_first(file, path)? else {
        return Ok(None);
    };
    let src: Box<dyn Read + Send> = Box::new(blocks);
    SegmentReader::new(src, path).map(Some)
}

/// [`reader_near`] for cold segment `index` of `dir`, whose file is `file_len` bytes. The
/// entry is checked before the reader is returned: its record is read (one block decoded)
/// and must carry the entry's sequence number and chain from its checksum.
pub(crate) fn cold_reader_near(
    dir: &Path,
    index: u64,
    file_len: u64,
    target: Target,
) -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
    let Some(idx) = read_index(dir, index) else {
        return Ok(None);
    };
    if idx.content != Content::Compressed || idx.cold_len != file_len {
        return Ok(None); // the file was replaced since (a repair, a restore)
    }
    let Some(at) = pick(&idx, target) else {
        return Ok(None);
    };
    let path = dir.join(cold_name(index));
    let open = || -> Result<Option<SegmentReader<Box<dyn Read + Send>>>> {
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let Some(mut blocks) = BlockStream::open(file, &path, at.block)? else {
            return Ok(None);
        };
        if skip(&mut blocks, at.offset - at.block_start, &path).is_err() {
            return Ok(None); // the index does not fit the file
        }
        let src: Box<dyn Read + Send> = Box::new(blocks);
        Ok(Some(SegmentReader::resume(
            src,
            &path,
            idx.header,
            idx.first_time,
            &at,
        )))
    };
    let Some(probe) = open()? else {
        return Ok(None);
    };
    match checked(probe, &at)? {
        Some(()) => open(),
        None => Ok(None), // the entry does not hold: read the segment from its header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use crate::segment::format::Framing;
    use crate::segment::names::hot_name;
    use crate::segment::sparse_index::{write_index, INTERVAL};
    use crate::segment::{ChainPoint, SegmentWriter};

    /// A persisted segment of 1 MiB (sealed, truncated), as the indexer finds it; returns its
    /// size.
    fn persisted(dir: &Path) -> u64 {
        let mut w =
            SegmentWriter::create_framed(dir, 0, 1 << 20, Framing::Timed, ChainPoint::START)
                .unwrap();
        let mut s = 0u64;
        while w.append_at(1000 + s, &s.to_le_bytes().repeat(12)).is_ok() {
            s += 1;
        }
        w.seal();
        let used = w.used_len();
        drop(w);
        crate::segment::truncate_sealed(&dir.join(hot_name(0)), used).unwrap();
        used
    }

    #[test]
    fn a_persisted_hot_segment_is_entered_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let len = persisted(dir.path());
        assert!(crate::segment::sparse_index::index_hot(dir.path(), 0).unwrap());
        let idx = read_index(dir.path(), 0).unwrap();
        assert_eq!((idx.content, idx.cold_len), (Content::Plain, len));
        let e = idx.entries[9];
        for target in [Target::Seq(e.seq + 3), Target::Time(1000 + e.seq + 2)] {
            let (_, at) = hot_entry_near(dir.path(), 0, len, target).unwrap().unwrap();
            assert_eq!(at, e, "{target:?}");
        }
        let entry = crate::logdir::listing::stat_entry(&SegmentEntry {
            index: 0,
            path: dir.path().join(hot_name(0)),
            tier: Tier::Hot,
            file_len: 0,
            stamp: Default::default(),
        })
        .unwrap();
        let mut r = reader_near(&entry, Target::Seq(e.seq)).unwrap().unwrap();
        let mut buf = Vec::new();
        assert_eq!(r.next_record(&mut buf).unwrap().unwrap().seq, e.seq);
        // Indexed once: a second call finds it there.
        assert!(!crate::segment::sparse_index::index_hot(dir.path(), 0).unwrap());
        // An index of the other kind, or of another length, is not used.
        assert!(hot_entry_near(dir.path(), 0, len + 8, Target::Seq(e.seq))
            .unwrap()
            .is_none());
        assert!(cold_reader_near(dir.path(), 0, len, Target::Seq(e.seq))
            .unwrap()
            .is_none());
    }

    /// A frozen segment of 1 MiB with its index; returns the cold file's size.
    fn frozen(dir: &Path) -> u64 {
        persisted(dir);
        let len = crate::codec::compress_segment(dir, 0, Compression::default()).unwrap();
        std::fs::remove_file(dir.join(hot_name(0))).unwrap();
        len
    }

    #[test]
    fn a_deep_target_starts_at_its_interval_and_a_lying_index_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let len = frozen(dir.path());
        let idx = read_index(dir.path(), 0).unwrap();
        assert_eq!(idx.entries.len() as u64, (1 << 20) / INTERVAL - 1);
        let e = idx.entries[7];
        for target in [Target::Seq(e.seq + 3), Target::Time(1000 + e.seq + 2)] {
            let mut r = cold_reader_near(dir.path(), 0, len, target)
                .unwrap()
                .unwrap();
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!((info.seq, info.offset), (e.seq, e.offset), "{target:?}");
            assert_eq!(buf, (e.seq - 1).to_le_bytes().repeat(12));
        }
        // The first interval has no entry; another file size means another file.
        assert!(cold_reader_near(dir.path(), 0, len, Target::Seq(2))
            .unwrap()
            .is_none());
        assert!(cold_reader_near(dir.path(), 0, len + 1, Target::Seq(e.seq))
            .unwrap()
            .is_none());
        // An entry that does not chain, or points elsewhere, is refused.
        for lie in 0..3 {
            let mut bad = idx.clone();
            match lie {
                0 => bad.entries[7].prev_crc ^= 1,
                1 => bad.entries[7].offset += 8,
                _ => bad.entries[7].block += 1,
            }
            write_index(dir.path(), 0, &bad).unwrap();
            let r = cold_reader_near(dir.path(), 0, len, Target::Seq(e.seq)).unwrap();
            assert!(r.is_none(), "lie {lie}");
        }
    }
}
