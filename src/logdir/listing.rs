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
    // Hot before cold for the same index, so the duplicate to drop is the second one.
    out.segments
        .sort_by_key(|s| (s.index, matches!(s.tier, Tier::Cold)));
    let mut kept: Vec<SegmentEntry> = Vec::with_capacity(out.segments.len());
    for seg in out.segments.drain(..) {
        match kept.last() {
            Some(prev) if prev.index == seg.index => out.shadowed_cold.push(seg.path),
            _ => kept.push(seg),
        }
    }
    out.segments = kept;
    out.tmp.sort();
    out.foreign.sort();
    Ok(out)
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
