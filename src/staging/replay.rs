//! Replay at open: the staging buffers a crashed process left behind may hold records the
//! disk lacks (appended after the last drain). Before recovery reads the disk, each buffer is
//! compared with the segment file of the same index and applied where it is ahead, so a
//! process crash loses nothing. One decision per buffer (docs/RECOVERY.md, "Staging rows"):
//!
//! | buffer holds | disk holds | action |
//! | --- | --- | --- |
//! | a zero header | anything | nothing (an unused buffer) |
//! | segment `i`, `n` valid records | `<i>.wal` with the same header and fewer records (sealed, truncated or not) | write the buffer's records over the file, zero what is left of an old seal, restore its full size, fdatasync |
//! | segment `i` | `<i>.wal` with the same header and as many records or more | nothing (staging older than disk) |
//! | segment `i` | `<i>.wal` whose header is zero (prepared, never drained) | write, as above |
//! | segment `i` | `<i>.wal.lz4`, or `i` below the first segment on disk | nothing (older than disk) |
//! | segment `i` | no file `i`, and `i` is the next index of the log | create `<i>.wal`, write, fdatasync, fsync the directory |
//! | segment `i` | `<i>.wal` with another header, or no place for `i` | **refuse**: another log or another segment; nothing applied |
//! | not a segment (bad magic, checksum) | — | **refuse** |

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::dir::StagingDir;
use crate::error::{Error, Result};
use crate::io::fault::FaultPlan;
use crate::io::{OpCode, Target};
use crate::logdir::{list_dir, Tier};
use crate::segment::format::{SegmentHeader, HEADER_LEN};
use crate::segment::names::segment_path;
use crate::segment::writer::injected_at;
use crate::segment::{sync_dir, SegmentEnd, SegmentReader};

/// What replay did with one buffer that held a segment (recovery reports it as an
/// [`crate::recovery::Action`]; staging sits below recovery and does not know its report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferOutcome {
    /// `records` the disk lacked written from buffer `from` into segment `segment` at `path`.
    Replayed {
        path: PathBuf,
        from: PathBuf,
        segment: u64,
        records: u64,
    },
    /// Buffer `path` held nothing the disk lacked: its segment is older than the disk's copy
    /// (`older`) or holds no more records.
    Discarded {
        path: PathBuf,
        segment: u64,
        older: bool,
    },
}

/// What replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// One per buffer that held a segment.
    pub actions: Vec<BufferOutcome>,
    /// Records the disk lacked and got from staging.
    pub records: u64,
    /// Segments written from staging.
    pub segments: u64,
}

/// A staging buffer that holds a segment.
struct Staged {
    name: String,
    file: File,
    header: SegmentHeader,
    raw_header: [u8; HEADER_LEN],
}

/// Where the records of a segment stream end, and how many there are.
fn valid_end(src: impl Read, path: &Path) -> Result<(u64, u64)> {
    let mut r = SegmentReader::new(BufReader::with_capacity(1 << 20, src), path)?;
    let end = match r.skip_to_end()? {
        SegmentEnd::Sealed(seal) => seal.end,
        SegmentEnd::Open { offset } | SegmentEnd::Broken { offset, .. } => offset,
    };
    Ok((end, r.count()))
}

/// Applies every buffer of `dir` that is ahead of the log in `log_dir` (see the module
/// docs). Refuses, before writing anything, a buffer that belongs elsewhere.
pub fn replay(dir: &StagingDir, log_dir: &Path, faults: Option<&FaultPlan>) -> Result<Replay> {
    let mut staged = Vec::new();
    for name in dir.buffer_names()? {
        let path = dir.path().join(&name);
        let mut file = dir.open_buffer(&name)?;
        let mut raw = [0u8; HEADER_LEN];
        let got = file
            .read(&mut raw)
            .map_err(|e| Error::io("read", &path, e))?;
        if got < HEADER_LEN || raw.iter().all(|&b| b == 0) {
            continue;
        }
        let header = SegmentHeader::decode(&raw).map_err(|kind| Error::Staging {
            path: path.clone(),
            why: format!("not a segment of this log ({kind}); refused, nothing applied"),
        })?;
        staged.push(Staged {
            name,
            file,
            header,
            raw_header: raw,
        });
    }
    staged.sort_by_key(|s| s.header.index);
    let listing = list_dir(log_dir)?;
    let first = listing.segments.first().map(|s| s.index);
    let mut next = listing.segments.last().map_or(0, |s| s.index + 1);
    // Decide everything first: a refusal must leave the disk untouched.
    let mut plan = Vec::new();
    for s in staged {
        let i = s.header.index;
        let entry = listing.segments.iter().find(|e| e.index == i);
        let spath = dir.path().join(&s.name);
        match entry {
            Some(e) if e.tier == Tier::Cold => plan.push((s, None)),
            None if first.is_some_and(|f| i < f) => plan.push((s, None)),
            Some(e) => {
                let mut disk_head = [0u8; HEADER_LEN];
                let f = File::open(&e.path).map_err(|err| Error::io("open", &e.path, err))?;
                let got = f
                    .read_at(&mut disk_head, 0)
                    .map_err(|err| Error::io("read", &e.path, err))?;
                let zero = disk_head[..got].iter().all(|&b| b == 0);
                if !zero && disk_head != s.raw_header {
                    return Err(Error::Staging {
                        path: spath,
                        why: format!(
                            "holds segment {i} with a header other than {}'s: staging from another log or another segment; refused, nothing applied",
                            e.path.display()
                        ),
                    });
                }
                let disk_end = if zero {
                    (0, 0)
                } else {
                    valid_end(f, &e.path)?
                };
                plan.push((s, Some((false, disk_end))));
            }
            None if i == next => {
                next += 1;
                plan.push((s, Some((true, (0, 0)))));
            }
            None => {
                return Err(Error::Staging {
                    path: spath,
                    why: format!(
                        "holds segment {i}, but the log's next segment is {next}: staging from another log; refused, nothing applied"
                    ),
                })
            }
        }
    }
    let mut out = Replay::default();
    let mut created = false;
    for (mut s, disk) in plan {
        let i = s.header.index;
        let spath = dir.path().join(&s.name);
        let Some((create, (disk_end, disk_count))) = disk else {
            out.actions.push(BufferOutcome::Discarded {
                path: spath,
                segment: i,
                older: true,
            });
            continue;
        };
        s.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", &spath, e))?;
        let (end, count) = valid_end(&mut s.file, &spath)?;
        // Records decide, not bytes: a disk copy sealed after fewer records (a repair that
        // ignored staging, a recovery's cut) can end further on than a buffer holding one
        // more short record.
        if count <= disk_count {
            out.actions.push(BufferOutcome::Discarded {
                path: spath,
                segment: i,
                older: false,
            });
            continue;
        }
        let target = segment_path(log_dir, i);
        write_ahead(
            &s.file,
            (&spath, &target),
            (end, disk_end),
            s.header.capacity,
            create,
            faults,
        )?;
        created |= create;
        out.records += count - disk_count;
        out.segments += 1;
        out.actions.push(BufferOutcome::Replayed {
            path: target,
            from: spath,
            segment: i,
            records: count - disk_count,
        });
    }
    if created {
        injected_at(
            faults,
            OpCode::Fsync,
            Target::Recovery,
            "fsync dir",
            log_dir,
        )?;
        sync_dir(log_dir)?;
    }
    Ok(out)
}

/// Copies `[0, end)` of the buffer over the segment file (creating it at its full capacity
/// when `create`), then fdatasyncs it. A disk copy that was sealed (its valid bytes reaching
/// `disk_end`, past `end`) or truncated by an earlier recovery is put back to an unsealed
/// segment at its full capacity: the old seal's bytes past `end` are zeroed, so the open that
/// follows finds the buffer's records and seals them itself.
fn write_ahead(
    src: &File,
    (spath, target): (&Path, &Path),
    (end, disk_end): (u64, u64),
    capacity: u64,
    create: bool,
    faults: Option<&FaultPlan>,
) -> Result<()> {
    let step = |code, op| injected_at(faults, code, Target::Recovery, op, target);
    let f = OpenOptions::new()
        .write(true)
        .create_new(create)
        .mode(0o644)
        .open(target)
        .map_err(|e| Error::io(if create { "create" } else { "open" }, target, e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io("stat", target, e))?
        .len();
    if len < capacity {
        f.set_len(capacity)
            .map_err(|e| Error::io("ftruncate", target, e))?;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < end {
        let n = (end - off).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], off)
            .map_err(|e| Error::io("read", spath, e))?;
        step(OpCode::Write, "write")?;
        f.write_all_at(&buf[..n], off)
            .map_err(|e| Error::io("write", target, e))?;
        off += n as u64;
    }
    if disk_end > end {
        let zeros = vec![0u8; (disk_end - end) as usize];
        step(OpCode::Write, "write")?;
        f.write_all_at(&zeros, end)
            .map_err(|e| Error::io("write", target, e))?;
    }
    step(OpCode::Fdatasync, "fdatasync")?;
    f.sync_data().map_err(|e| Error::io("fdatasync", target, e))
}
