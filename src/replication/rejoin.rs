//! Setting aside a rejoining former leader's records that the new leader's log does not hold
//! (contract 11): every record from `from` on moves to `quarantine/rejoin-epoch<E>-<ns>/`,
//! counted and never deleted; the log keeps what it shares with the leader and continues
//! from there. Segments wholly after the point are moved there; the one the point falls in
//! is copied there whole, then cut: sealed just before record `from` (a cold one is first
//! decompressed into a hot one).
//!
//! Crash safety: the copies are durable before the log changes; a crash part-way leaves the
//! log's own files valid (each step is a rename, or a seal written and synced before the
//! file is truncated), and the next rejoin does what is left, the copies already there.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::logdir::{list_dir, SegmentEntry, Tier};
use crate::segment::format::{Seal, TimeRange};
use crate::segment::names::{segment_path, QUARANTINE_DIR};
use crate::segment::SegmentReader;

/// A segment's records before the point: how many, the chain and times after them, and
/// where the first record at or after the point starts.
struct Cut {
    count: u64,
    last_crc: u32,
    times: Option<TimeRange>,
    /// Offset of record `from` in the segment's bytes (`None`: the segment ends before it).
    at: Option<u64>,
}

/// Moves every record from `from` on to the quarantine; returns how many. `crc_before` is
/// the leader's chained checksum before `from`: this log must agree with it, or nothing is
/// changed (the logs part earlier than the epochs say).
pub(crate) fn set_aside_from(dir: &Path, from: u64, crc_before: u32, epoch: u64) -> Result<u64> {
    let listing = list_dir(dir)?;
    let mut moved = Vec::new();
    let mut cut = None;
    for seg in listing.segments.iter().rev() {
        let mut r = open(seg)?;
        let first = r.header().first_seq;
        if first >= from {
            moved.push((seg.clone(), r.header().prev_crc, first));
            continue;
        }
        let c = read_cut(&mut r, from)?;
        cut = Some((seg.clone(), c));
        break;
    }
    let chain_before = match (&cut, moved.last()) {
        (Some((_, c)), _) if c.at.is_some() || moved.is_empty() => c.last_crc,
        (_, Some((_, prev_crc, first))) if *first == from => *prev_crc,
        (None, Some((_, _, first))) => {
            return Err(Error::Replication {
                peer: dir.display().to_string(),
                message: format!("the log starts at {first}, after the point {from} where it parts from the leader's"),
            })
        }
        _ => crc_before,
    };
    if chain_before != crc_before {
        return Err(Error::Replication {
            peer: dir.display().to_string(),
            message: format!(
                "this log and the leader's part before record {from} (checksums {chain_before:#010x} and {crc_before:#010x}): nothing set aside; restore this log from the leader's"
            ),
        });
    }
    let cut = cut.filter(|(_, c)| c.at.is_some());
    if moved.is_empty() && cut.is_none() {
        return Ok(0);
    }
    let q = quarantine_dir(dir, epoch)?;
    let mut records = 0u64;
    // Copies first, all durable, before the log changes.
    if let Some((seg, _)) = &cut {
        records += count_records(seg, from)?;
        copy_synced(
            &seg.path,
            &q.join(seg.path.file_name().expect("a segment file name")),
        )?;
    }
    for (seg, _, _) in &moved {
        records += count_records(seg, from)?;
    }
    crate::io::sync_dir(&q)?;
    // The latest first: a crash part-way leaves the log a contiguous prefix.
    for (seg, _, _) in &moved {
        let to = q.join(seg.path.file_name().expect("a segment file name"));
        std::fs::rename(&seg.path, &to).map_err(|e| Error::io("rename", &seg.path, e))?;
        drop_index(dir, seg.index);
    }
    crate::io::sync_dir(&q)?;
    crate::io::sync_dir(dir)?;
    if let Some((seg, c)) = cut {
        cut_segment(dir, &seg, &c)?;
        drop_index(dir, seg.index);
    }
    // A cache of the cold segments' summaries: rebuilt at the next open.
    let summary = dir.join(crate::logdir::summary::SUMMARY_FILE);
    match std::fs::remove_file(&summary) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("unlink", &summary, e)),
    }
    crate::io::sync_dir(dir)?;
    let note = q.join("README");
    let mut f = File::create(&note).map_err(|e| Error::io("create", &note, e))?;
    writeln!(
        f,
        "{records} records from sequence number {from} on, written by this log as leader before epoch {epoch}'s leader took over, and not in that leader's log; set aside when this log rejoined as a follower. Nothing was deleted."
    )
    .and_then(|_| f.sync_all())
    .map_err(|e| Error::io("write", &note, e))?;
    crate::io::sync_dir(&q)?;
    log::warn!(
        "{}: rejoined: {records} records from {from} on set aside in {}",
        dir.display(),
        q.display()
    );
    Ok(records)
}

fn open(seg: &SegmentEntry) -> Result<SegmentReader<Box<dyn std::io::Read + Send>>> {
    let file = File::open(&seg.path).map_err(|e| Error::io("open", &seg.path, e))?;
    let src: Box<dyn std::io::Read + Send> = match seg.tier {
        Tier::Hot => Box::new(std::io::BufReader::new(file)),
        Tier::Cold => crate::codec::open_cold(file, &seg.path)?,
    };
    SegmentReader::new(src, &seg.path)
}

/// Reads the segment up to record `from`.
fn read_cut(r: &mut SegmentReader<Box<dyn std::io::Read + Send>>, from: u64) -> Result<Cut> {
    let h = *r.header();
    let mut c = Cut {
        count: 0,
        last_crc: h.prev_crc,
        times: h.framing.timed().then_some(TimeRange {
            first: 0,
            last: 0,
            max: h.prev_max_time,
        }),
        at: None,
    };
    let mut payload = Vec::new();
    while let Some(info) = r.next_record(&mut payload)? {
        if info.seq >= from {
            c.at = Some(info.offset);
            break;
        }
        c.count += 1;
        c.last_crc = info.crc;
        if let (Some(t), Some(time)) = (c.times.as_mut(), info.time) {
            if c.count == 1 {
                t.first = time;
            }
            t.last = time;
            t.max = t.max.max(time);
        }
    }
    Ok(c)
}

/// Records of `seg` at or after `from`.
fn count_records(seg: &SegmentEntry, from: u64) -> Result<u64> {
    let mut r = open(seg)?;
    let mut payload = Vec::new();
    let mut n = 0;
    while let Some(info) = r.next_record(&mut payload)? {
        n += u64::from(info.seq >= from);
    }
    Ok(n)
}

fn quarantine_dir(dir: &Path, epoch: u64) -> Result<PathBuf> {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let q = dir
        .join(QUARANTINE_DIR)
        .join(format!("rejoin-epoch{epoch}-{ns}"));
    std::fs::create_dir_all(&q).map_err(|e| Error::io("mkdir", &q, e))?;
    crate::io::sync_dir(&dir.join(QUARANTINE_DIR))?;
    Ok(q)
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map_err(|e| Error::io("copy", from, e))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync", to, e))
}

/// Seals `seg` before record `from` as a hot segment, durable.
fn cut_segment(dir: &Path, seg: &SegmentEntry, c: &Cut) -> Result<()> {
    let at = c.at.expect("only a segment holding the point is cut");
    let hot = segment_path(dir, seg.index);
    let work = match seg.tier {
        Tier::Hot => hot.clone(),
        Tier::Cold => {
            // The whole content into a temporary hot file first.
            let tmp = hot.with_extension("wal.tmp");
            let mut r = crate::codec::open_cold(
                File::open(&seg.path).map_err(|e| Error::io("open", &seg.path, e))?,
                &seg.path,
            )?;
            let mut out = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            std::io::copy(&mut r, &mut out).map_err(|e| Error::io("decompress", &seg.path, e))?;
            tmp
        }
    };
    let seal = Seal {
        count: c.count,
        end: 0,
        last_crc: c.last_crc,
        times: c.times,
    };
    let end = at + seal.framing().seal_len() as u64;
    let seal = Seal { end, ..seal };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&work)
        .map_err(|e| Error::io("open", &work, e))?;
    f.write_all_at(&seal.encode()[..seal.framing().seal_len()], at)
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io("write seal", &work, e))?;
    // Sealed and durable before the records after it go: a crash in between leaves a
    // sealed segment with bytes after its seal, which the copy in quarantine also holds.
    f.set_len(end)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("truncate", &work, e))?;
    if seg.tier == Tier::Cold {
        std::fs::rename(&work, &hot).map_err(|e| Error::io("rename", &work, e))?;
        crate::io::sync_dir(dir)?;
        std::fs::remove_file(&seg.path).map_err(|e| Error::io("unlink", &seg.path, e))?;
    }
    Ok(())
}

/// The segment's sparse index no longer describes it (a cache: seeks read without it).
fn drop_index(dir: &Path, index: u64) {
    let p = crate::segment::sparse_index::index_path(dir, index);
    if let Err(e) = std::fs::remove_file(&p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("{}: {e}", p.display());
        }
    }
}
