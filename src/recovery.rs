//! Recovery: what `Recorder::open` does to a directory before writing, one decision per
//! combination of files found (docs/RECOVERY.md has the table). It never deletes a record that
//! verifies, and stops with a typed error naming the file for anything it cannot explain.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error, Result};
use crate::log::{list_dir, LogReader, SegmentEntry, Tier};
use crate::segment::format::{Seal, SEAL_LEN};
use crate::segment::{seal_in_place, sync_dir, truncate_sealed, SegmentEnd, SegmentReader};

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Hot segments, oldest first.
    pub hot: Vec<u64>,
    /// Cold segments, oldest first.
    pub cold: Vec<u64>,
    /// Index of the segment the writer creates next.
    pub next_index: u64,
    /// Sequence number of the next record.
    pub next_seq: u64,
    /// Checksum the next record chains from.
    pub prev_crc: u32,
    /// One line per action taken (for logs and `walctl record`).
    pub actions: Vec<String>,
    /// Records a crashed process had left only in its staging buffers, written to disk by
    /// the replay before recovery.
    pub replayed_records: u64,
}

/// Recovers `dir` (see the module docs).
pub fn recover(dir: &Path) -> Result<Recovered> {
    let mut actions = Vec::new();
    let listing = list_dir(dir)?;
    for tmp in &listing.tmp {
        remove(
            tmp,
            &mut actions,
            "leftover temporary file of an interrupted freeze",
        )?;
    }
    for cold in &listing.shadowed_cold {
        resolve_duplicate(cold, &mut actions)?;
    }
    remove_unused_tail(&listing.segments, &mut actions)?;
    if !actions.is_empty() {
        sync_dir(dir)?;
    }

    // The whole log must verify (a torn tail is allowed); anything else stops the open.
    let mut reader = LogReader::open_dir(dir)?;
    let mut buf = Vec::new();
    while reader.next_record(&mut buf)?.is_some() {}
    let chain_end = reader.chain_end();

    let listing = list_dir(dir)?;
    let mut sealed_any = false;
    for seg in listing.segments.iter().filter(|s| s.tier == Tier::Hot) {
        sealed_any |= finish_segment(seg, &mut actions)?;
    }
    if sealed_any {
        sync_dir(dir)?;
    }
    let (next_seq, prev_crc) = chain_end.unwrap_or((crate::constants::FIRST_SEQ, 0));
    let tier = |t: Tier| {
        listing
            .segments
            .iter()
            .filter(|s| s.tier == t)
            .map(|s| s.index)
            .collect::<Vec<u64>>()
    };
    Ok(Recovered {
        hot: tier(Tier::Hot),
        cold: tier(Tier::Cold),
        next_index: listing.segments.last().map_or(0, |s| s.index + 1),
        next_seq,
        prev_crc,
        actions,
        replayed_records: 0,
    })
}

fn remove(path: &Path, actions: &mut Vec<String>, why: &str) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io("unlink", path, e))?;
    actions.push(format!("removed {}: {why}", path.display()));
    Ok(())
}

/// A `.wal` with a `.wal.lz4` of the same index: a freeze was interrupted after its rename.
/// A complete frame whose content equals the `.wal` makes the `.wal` redundant; an
/// incomplete or damaged frame is removed; a valid frame with other content is unexplained.
fn resolve_duplicate(cold: &Path, actions: &mut Vec<String>) -> Result<()> {
    let hot = hot_of(cold);
    let cold_digest = match digest_cold(cold) {
        Ok(d) => d,
        Err(Error::Corrupt { .. }) => {
            return remove(cold, actions, "incomplete compressed copy of a hot segment");
        }
        Err(e) => return Err(e),
    };
    let hot_digest = digest(
        File::open(&hot).map_err(|e| Error::io("open", &hot, e))?,
        &hot,
    )?;
    if hot_digest == cold_digest {
        remove(&hot, actions, "its .wal.lz4 is complete and verified")
    } else {
        Err(Error::corrupt(
            cold,
            0,
            Corruption::BadFrame(format!(
                "a valid frame whose content differs from {}",
                hot.display()
            )),
        ))
    }
}

fn hot_of(cold: &Path) -> PathBuf {
    let name = cold.file_name().and_then(|n| n.to_str()).unwrap_or("");
    cold.with_file_name(name.trim_end_matches(".lz4"))
}

/// (length, CRC32C) of a whole stream.
fn digest(mut src: impl Read, path: &Path) -> Result<(u64, u32)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut crc) = (0u64, 0u32);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok((len, crc)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::corrupt(
                    path,
                    len,
                    Corruption::BadFrame(e.to_string()),
                ))
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

fn digest_cold(cold: &Path) -> Result<(u64, u32)> {
    let f = File::open(cold).map_err(|e| Error::io("open", cold, e))?;
    digest(crate::codec::open_cold(f, cold)?, cold)
}

/// Removes prepared segments that never became active: hot files at the end of the log that
/// are empty or whose header is all zeros (created ahead of the writer).
fn remove_unused_tail(segments: &[SegmentEntry], actions: &mut Vec<String>) -> Result<()> {
    for seg in segments.iter().rev() {
        if seg.tier != Tier::Hot || !crate::segment::reader::is_unused_file(&seg.path)? {
            break;
        }
        remove(
            &seg.path,
            actions,
            "prepared segment that never received a record",
        )?;
    }
    Ok(())
}

/// Makes a hot segment what persist would have made it: sealed (a crash may have left it
/// unsealed, with a torn tail that is cut here), truncated to its used length, fdatasynced.
/// Returns true if it changed the file.
fn finish_segment(seg: &SegmentEntry, actions: &mut Vec<String>) -> Result<bool> {
    let f = File::open(&seg.path).map_err(|e| Error::io("open", &seg.path, e))?;
    let mut r = SegmentReader::new(std::io::BufReader::new(f), &seg.path)?;
    let end = r.skip_to_end()?;
    let (offset, why) = match end {
        SegmentEnd::Sealed(seal) if seal.end == seg.file_len => return Ok(false),
        SegmentEnd::Sealed(seal) => {
            truncate_sealed(&seg.path, seal.end)?;
            actions.push(format!(
                "{}: sealed but not persisted; truncated to {} bytes and synced",
                seg.path.display(),
                seal.end
            ));
            return Ok(true);
        }
        SegmentEnd::Open { offset } => (offset, "unsealed (crash)".to_string()),
        SegmentEnd::Broken { offset, kind, .. } => {
            (offset, format!("torn tail cut at offset {offset} ({kind})"))
        }
    };
    let seal = Seal {
        count: r.count(),
        end: offset + SEAL_LEN as u64,
        last_crc: r.last_crc(),
    };
    seal_in_place(&seg.path, offset, &seal)?;
    actions.push(format!(
        "{}: {why}; sealed after record {} and synced",
        seg.path.display(),
        r.next_seq() - 1
    ));
    Ok(true)
}
