//! Lists a log directory: our segments in index order, our temporary files, and the foreign
//! files we must leave alone.

use std::path::{Path, PathBuf};

use super::summary::{FileStamp, SUMMARY_FILE, SUMMARY_TMP};
use crate::error::{Error, Result};
use crate::segment::names::{classify, FileKind};

/// Where a segment's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `<index>.wal`, uncompressed.
    Hot,
    /// `<index>.wal.lz4`, one LZ4 frame (or block container).
    Cold,
}

/// One segment file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Index from the file name.
    pub index: u64,
    /// Full path.
    pub path: PathBuf,
    /// Hot or cold.
    pub tier: Tier,
    /// Size of the file on disk.
    pub file_len: u64,
    /// Which version of the file this is (for [`super::summary`]).
    pub stamp: FileStamp,
}

/// What a directory holds.
#[derive(Debug, Clone, Default)]
pub struct DirListing {
    /// Segments in index order; where both `.wal` and `.wal.lz4` exist for one index (a
    /// freeze interrupted after the rename), the `.wal` is listed here.
    pub segments: Vec<SegmentEntry>,
    /// `.wal.lz4` files shadowed by a `.wal` of the same index.
    pub shadowed_cold: Vec<PathBuf>,
    /// Our temporary files (`*.tmp`), leftovers of an interrupted freeze.
    pub tmp: Vec<PathBuf>,
    /// Files that are not ours.
    pub foreign: Vec<PathBuf>,
    /// The `quarantine/` directory recovery and `walctl repair` move dropped files into.
    pub quarantine: Option<PathBuf>,
    /// `cold.summary`, the cold segments' summaries ([`super::summary`]).
    pub summary: Option<PathBuf>,
}

/// Lists `dir`. Errors name the directory.
pub fn list_dir(dir: &Path) -> Result<DirListing> {
    let mut out = DirListing::default();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read_dir", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let kind = name.to_str().map_or(FileKind::Foreign, classify);
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed since the directory was read (a reader lists a live log).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat", &path, e)),
        };
        if meta.is_dir() && name == crate::segment::names::QUARANTINE_DIR {
            out.quarantine = Some(path);
            continue;
        }
        if meta.is_dir() && name == super::reader_position::READERS_DIR {
            continue; // the readers' position files: theirs, not the log's
        }
        if meta.is_dir() && name == crate::segment::sparse_index::INDEX_DIR {
            continue; // the cold segments' sparse indexes, a cache (docs/FORMAT.md)
        }
        if meta.is_file() && crate::replication::epochs::is_epochs_file(name.to_str().unwrap_or(""))
        {
            continue; // the replication state (docs/REPLICATION.md), not a segment
        }
        if meta.is_file() && name == SUMMARY_FILE {
            out.summary = Some(path);
            continue;
        }
        if meta.is_file() && name == SUMMARY_TMP {
            out.tmp.push(path);
            continue;
        }
        let (index, tier) = match kind {
            FileKind::Hot(i) if meta.is_file() => (i, Tier::Hot),
            FileKind::Cold(i) if meta.is_file() => (i, Tier::Cold),
            FileKind::Tmp(_) if meta.is_file() => {
                out.tmp.push(path);
                continue;
            }
            _ => {
                out.foreign.push(path);
                continue;
            }
        };
        out.segments.push(SegmentEntry {
            index,
            path,
            tier,
            file_len: meta.len(),
            stamp: FileStamp::of(&meta),
        });
    }
    (out.segments, out.shadowed_cold) = in_index_order(out.segments);
    out.tmp.sort();
    out.foreign.sort();
    Ok(out)
}

/// Sorts segments by index and keeps one per index: where both `.wal` and `.wal.lz4` exist
/// the `.wal` (a freeze interrupted after the rename); returns the kept and the shadowed.
fn in_index_order(mut segments: Vec<SegmentEntry>) -> (Vec<SegmentEntry>, Vec<PathBuf>) {
    // Hot before cold for the same index, so the duplicate to drop is the second one.
    segments.sort_by_key(|s| (s.index, matches!(s.tier, Tier::Cold)));
    let mut kept: Vec<SegmentEntry> = Vec::with_capacity(segments.len());
    let mut shadowed = Vec::new();
    for seg in segments {
        match kept.last() {
            Some(prev) if prev.index == seg.index => shadowed.push(seg.path),
            _ => kept.push(seg),
        }
    }
    (kept, shadowed)
}

/// The segments of `dir` in index order, by their names alone: no file is stat'ed (a seek
/// stats only the few it bisects and the one it opens, [`stat_entry`]), so each entry's
/// `file_len` and `stamp` are zero until then.
pub(crate) fn list_segment_names(dir: &Path) -> Result<Vec<SegmentEntry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    let mut segments = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read_dir", dir, e))?;
        let name = entry.file_name();
        let (index, tier) = match name.to_str().map_or(FileKind::Foreign, classify) {
            FileKind::Hot(i) => (i, Tier::Hot),
            FileKind::Cold(i) => (i, Tier::Cold),
            _ => continue,
        };
        // The directory entry's type (no stat where the file system records it).
        match entry.file_type() {
            Ok(t) if t.is_file() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat", entry.path(), e)),
        }
        segments.push(SegmentEntry {
            index,
            path: entry.path(),
            tier,
            file_len: 0,
            stamp: FileStamp::default(),
        });
    }
    Ok(in_index_order(segments).0)
}

/// `entry` with its size and stamp read now. A file removed since it was listed is an
/// `Error::Io` of kind `NotFound` (the seeks list again).
pub(crate) fn stat_entry(entry: &SegmentEntry) -> Result<SegmentEntry> {
    let meta = std::fs::metadata(&entry.path).map_err(|e| Error::io("stat", &entry.path, e))?;
    Ok(SegmentEntry {
        file_len: meta.len(),
        stamp: FileStamp::of(&meta),
        ..entry.clone()
    })
}

/// Segments a bisection can look at: a full listing, or names stat'ed as they are looked at.
pub(crate) trait Segments {
    /// How many.
    fn count(&self) -> usize;
    /// The one at `i`, with its size and stamp.
    fn entry(&self, i: usize) -> Result<std::borrow::Cow<'_, SegmentEntry>>;
}

impl Segments for [SegmentEntry] {
    fn count(&self) -> usize {
        self.len()
    }

    fn entry(&self, i: usize) -> Result<std::borrow::Cow<'_, SegmentEntry>> {
        Ok(std::borrow::Cow::Borrowed(&self[i]))
    }
}

/// Entries of [`list_segment_names`], each stat'ed when looked at.
pub(crate) struct Named<'a>(pub &'a [SegmentEntry]);

impl Segments for Named<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn entry(&self, i: usize) -> Result<std::borrow::Cow<'_, SegmentEntry>> {
        stat_entry(&self.0[i]).map(std::borrow::Cow::Owned)
    }
}

/// The highest watermark among the hot segments of a listing, with the file it is in.
pub(crate) fn highest_watermark(segments: &[SegmentEntry]) -> Result<Option<(u64, PathBuf)>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for seg in segments {
        if seg.tier != Tier::Hot {
            continue;
        }
        // A file removed since the listing (a live log's maintainer) holds no watermark.
        let gone = |e: &Error| matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        let capacity = match crate::segment::format::capacity_of(&seg.path) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if seg.file_len < capacity + crate::segment::watermark::WATERMARK_LEN {
            continue;
        }
        let found = match crate::segment::watermark::read_watermark(&seg.path, seg.index, capacity)
        {
            Err(e) if gone(&e) => None,
            other => other?,
        };
        if let Some(w) = found {
            if best.as_ref().map_or(true, |(s, _)| w.durable_seq > *s) {
                best = Some((w.durable_seq, seg.path.clone()));
            }
        }
    }
    Ok(best)
}
