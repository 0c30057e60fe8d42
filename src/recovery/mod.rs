//! Recovery: what `Recorder::open` does to a directory before writing, one decision per
//! combination of files found (docs/RECOVERY.md has the table). It never deletes a record that
//! verifies, and stops with a typed error naming the file for anything it cannot explain.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

mod action;
mod repair;

pub use action::{Action, LostAcknowledged, Removal};
pub use repair::{repair, repair_with};

use crate::error::{Corruption, Error, Result};
use crate::io::fault::FaultPlan;
use crate::io::{OpCode, Target};
use crate::logdir::summary::{hot_summary, write_index, FileStamp, SegmentSummary, SummaryIndex};
use crate::logdir::{list_dir, LogReader, SegmentEntry, TailDrop, TailRule, Tier, Warning};
use crate::segment::format::Seal;
use crate::segment::ChainPoint;
use crate::segment::{
    seal_in_place_with, sync_dir, truncate_sealed_with, SegmentEnd, SegmentReader,
};

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
    /// The greatest record time in the log (0 without time).
    pub max_time: u64,
    /// How the log's last segment frames its records (`None` for an empty log): the
    /// recorder continues in it.
    pub framing: Option<crate::segment::format::Framing>,
    /// One line per action taken (for logs and `walctl record`).
    pub actions: Vec<Action>,
    /// Records a crashed process had left only in its staging buffers, written to disk by
    /// the replay before recovery.
    pub replayed_records: u64,
    /// What lay beyond the end of the log and was dropped (moved to `quarantine/`): records
    /// never reported durable. `None` when nothing but a partial record was cut.
    pub dropped: Option<TailDrop>,
    /// Records once reported durable that the log no longer holds (contract 10), found by
    /// the durability watermark; also an [`Action::LostAcknowledged`] row. Only under
    /// `TruncateTail` or `FirstBreak`: `Strict` refuses such a log.
    pub lost_acknowledged: Option<LostAcknowledged>,
    /// How the chain was walked, and how long recovery took.
    pub report: OpenReport,
}

pub use crate::segment::watermark::LOST_NOTE_PREFIX;

/// How recovery walked the log (docs/RECOVERY.md, "Open in constant time").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Sealed segments taken from their summaries (records not read).
    pub summarized: u64,
    /// Segments whose records were read: the unsealed tail, and any segment without a
    /// summary that matches it.
    pub read: u64,
    /// A summary disagreed with the chain here: the log was walked again from its records.
    pub summary_conflict: Option<PathBuf>,
    /// `cold.summary` was rewritten (a summary was missing, or most entries were stale).
    pub summary_rewritten: bool,
    /// Time recovery took (listing, walk, repairs; the staging replay not included).
    pub elapsed: std::time::Duration,
}

pub use crate::segment::names::QUARANTINE_DIR;

/// How to recover.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Which break may end the log.
    pub rule: TailRule,
    /// Decide and report everything, change nothing.
    pub dry_run: bool,
    /// Read every record of every segment (always so for [`TailRule::FirstBreak`]); by
    /// default sealed segments are walked by their summaries.
    pub full_scan: bool,
    /// Test hook: fault rules on [`Target::Recovery`] for recovery's own file operations.
    pub faults: Option<FaultPlan>,
}

/// Recovers `dir` with the default rule (see the module docs).
pub fn recover(dir: &Path) -> Result<Recovered> {
    recover_with(dir, RecoverOptions::default())
}

/// Recovers `dir` (see the module docs); with `dry_run`, reports what it would do.
pub fn recover_with(dir: &Path, opts: RecoverOptions) -> Result<Recovered> {
    let started = std::time::Instant::now();
    let mut fx = Fixer {
        dir,
        dry_run: opts.dry_run,
        actions: Vec::new(),
        gone: Vec::new(),
        faults: opts.faults.clone(),
    };
    let listing = list_dir(dir)?;
    // How far durable_seq had reached, from the drains' watermarks (read before anything
    // is cut: the cut removes the page).
    let watermark = crate::logdir::highest_watermark(&listing.segments)?;
    for tmp in &listing.tmp {
        fx.remove(tmp, Removal::Leftover)?;
    }
    for cold in &listing.shadowed_cold {
        match resolve_duplicate(cold, &mut fx) {
            // Repair keeps the `.wal` (the log as the recorder wrote it) and sets the other
            // copy aside.
            Err(Error::Corrupt { .. }) if opts.rule == TailRule::FirstBreak => {
                fx.quarantine(cold)?;
            }
            other => other?,
        }
    }
    remove_unused_tail(&listing.segments, &mut fx)?;
    fx.sync_dir()?;

    // The log must verify up to a break the rule accepts; anything else stops the open.
    // Sealed segments are walked by their summaries; if one disagrees with the chain, the
    // whole log is walked again from its records.
    let index = SummaryIndex::load(dir);
    let entries_read = index.entries_read();
    let mut report = OpenReport::default();
    let full_scan = opts.full_scan || opts.rule == TailRule::FirstBreak;
    let mut reader = LogReader::open_dir(dir)?.with_rule(opts.rule);
    if !full_scan {
        reader = reader.with_summaries(index.clone());
    }
    let mut reader = match walk(reader) {
        // Strict refuses any break; when records reported durable lie beyond where the log
        // breaks, that is the diagnosis (contract 10), whatever the break looks like (zeros
        // at a frame boundary read as an incomplete frame, a torn one as a bad checksum).
        Err(e @ Error::Corrupt { .. }) if opts.rule == TailRule::Strict => {
            let lenient = LogReader::open_dir(dir)?.with_rule(TailRule::TruncateTail);
            let kept = walk(lenient).ok().and_then(|r| r.chain_end());
            let last_kept = kept.map_or(0, |(at, _)| at.next_seq - 1);
            return Err(match &watermark {
                Some((w, file)) if *w > last_kept => Error::LostAcknowledged {
                    dir: dir.to_path_buf(),
                    message: LostAcknowledged {
                        watermark_file: file.clone(),
                        watermark: *w,
                        last_kept,
                        note: None,
                    }
                    .to_string(),
                },
                _ => e,
            });
        }
        other => other?,
    };
    if let Some(path) = reader.summary_conflict() {
        log::warn!(
            "{}: its summary disagrees with the chain; reading the whole log",
            path.display()
        );
        report.summary_conflict = Some(path.to_path_buf());
        reader = walk(LogReader::open_dir(dir)?.with_rule(opts.rule))?;
    }
    report.summarized = reader.summarized();
    report.read = reader.segments_read().0 - report.summarized;
    let chain_end = reader.chain_end();
    let last_kept = chain_end.map_or(0, |(at, _)| at.next_seq - 1);
    let mut lost_acknowledged = match watermark {
        Some((w, file)) if w > last_kept => Some(LostAcknowledged {
            watermark_file: file,
            watermark: w,
            last_kept,
            note: None,
        }),
        _ => None,
    };
    if let Some(lost) = lost_acknowledged.as_mut() {
        if opts.rule == TailRule::Strict {
            return Err(Error::LostAcknowledged {
                dir: dir.to_path_buf(),
                message: lost.to_string(),
            });
        }
        log::error!("{}: {lost}", dir.display());
        lost.note = fx.note_loss(lost)?;
        fx.actions.push(Action::LostAcknowledged(lost.clone()));
    }
    let dropped = reader.warnings().iter().find_map(|w| match w {
        Warning::Dropped(d) => Some(d.clone()),
        _ => None,
    });
    if let Some(d) = &dropped {
        log::warn!("{}: {d}", dir.display());
        if d.bytes_after > 0 {
            fx.quarantine_copy(&d.path)?;
        }
        for f in &d.files {
            fx.quarantine(f)?;
        }
        fx.actions.push(Action::Dropped {
            drop: d.clone(),
            copied: d.bytes_after > 0,
        });
        fx.sync_dir()?;
    }

    let listing = list_dir(dir)?;
    let kept: Vec<&SegmentEntry> = listing
        .segments
        .iter()
        .filter(|s| !fx.gone.contains(&s.path))
        .collect();
    let mut sealed_any = false;
    for seg in kept.iter().filter(|s| s.tier == Tier::Hot) {
        sealed_any |= finish_segment(seg, &mut fx, full_scan)?;
    }
    if sealed_any {
        fx.sync_dir()?;
    }
    let cold: Vec<&SegmentEntry> = kept
        .iter()
        .copied()
        .filter(|s| s.tier == Tier::Cold)
        .collect();
    if !opts.dry_run {
        report.summary_rewritten =
            refresh_summaries(dir, &cold, &index, entries_read, reader.learned())?;
    }
    let (at, framing) = match chain_end {
        Some((at, framing)) => (at, Some(framing)),
        None => (ChainPoint::START, None),
    };
    assert!(
        at.next_seq >= crate::constants::FIRST_SEQ,
        "sequence numbers start at 1"
    );
    report.elapsed = started.elapsed();
    let tier = |t: Tier| {
        kept.iter()
            .filter(|s| s.tier == t)
            .map(|s| s.index)
            .collect::<Vec<u64>>()
    };
    Ok(Recovered {
        hot: tier(Tier::Hot),
        cold: tier(Tier::Cold),
        next_index: kept.last().map_or(0, |s| s.index + 1),
        next_seq: at.next_seq,
        prev_crc: at.crc,
        max_time: at.max_time,
        framing,
        actions: fx.actions,
        replayed_records: 0,
        dropped,
        lost_acknowledged,
        report,
    })
}

/// Reads `reader` to its end (records of summarized segments are skipped).
fn walk(mut reader: LogReader) -> Result<LogReader> {
    let mut buf = Vec::new();
    while reader.next_record(&mut buf)?.is_some() {}
    Ok(reader)
}

/// Rewrites `cold.summary` when a cold segment had to be decoded (its entry was missing or
/// stale) or when stale entries outnumber the live ones; true if it did. A failure to write
/// it is logged, not fatal: the summaries only make the next open faster.
fn refresh_summaries(
    dir: &Path,
    cold: &[&SegmentEntry],
    index: &SummaryIndex,
    entries_read: usize,
    learned: &[(SegmentSummary, FileStamp)],
) -> Result<bool> {
    let mut entries = Vec::with_capacity(cold.len());
    let mut missing = false;
    for seg in cold {
        // What the walk read from the file overrules the index (a conflict made it read).
        let read = learned
            .iter()
            .find(|(s, stamp)| s.index == seg.index && *stamp == seg.stamp);
        if let Some(l) = read {
            missing |= index.get(seg) != Some(l.0);
            entries.push(*l);
        } else if let Some(s) = index.get(seg) {
            entries.push((s, seg.stamp));
        } else {
            // Not walked (beyond a break): nothing to summarize it by.
            return Ok(false);
        }
    }
    if !missing && !crate::logdir::summary::worth_compacting(entries_read, cold.len()) {
        return Ok(false);
    }
    match write_index(dir, &entries) {
        Ok(()) => Ok(true),
        Err(e) => {
            log::warn!("{e}; the next open decodes the cold segments again");
            Ok(false)
        }
    }
}

/// Carries out (or, dry, only describes) recovery's changes to the directory.
struct Fixer<'a> {
    dir: &'a Path,
    dry_run: bool,
    actions: Vec<Action>,
    /// Files removed or moved away (also when dry).
    gone: Vec<PathBuf>,
    faults: Option<FaultPlan>,
}

impl Fixer<'_> {
    /// The error a fault rule injects into this step (tests only).
    fn step(&self, code: OpCode, op: &'static str, path: &Path) -> Result<()> {
        match self
            .faults
            .as_ref()
            .and_then(|f| f.inject(code, Target::Recovery))
        {
            Some(errno) => Err(Error::io(
                op,
                path,
                std::io::Error::from_raw_os_error(errno),
            )),
            None => Ok(()),
        }
    }

    fn remove(&mut self, path: &Path, why: Removal) -> Result<()> {
        if !self.dry_run {
            self.step(OpCode::Unlink, "unlink", path)?;
            std::fs::remove_file(path).map_err(|e| Error::io("unlink", path, e))?;
        }
        self.gone.push(path.to_path_buf());
        self.actions.push(Action::Removed {
            path: path.to_path_buf(),
            why,
        });
        Ok(())
    }

    /// Moves `path` into the quarantine directory (never over a file already there).
    fn quarantine(&mut self, path: &Path) -> Result<()> {
        let to = self.quarantine_path(path)?;
        if !self.dry_run {
            self.step(OpCode::Rename, "rename", path)?;
            std::fs::rename(path, &to).map_err(|e| Error::io("rename", path, e))?;
        }
        self.gone.push(path.to_path_buf());
        self.actions.push(Action::Quarantined {
            from: path.to_path_buf(),
            to,
        });
        Ok(())
    }

    /// Leaves a note of the loss in `quarantine/` (synced), so that `walctl verify` keeps
    /// failing after the open has cut the log (which removes the watermark page).
    fn note_loss(&mut self, lost: &LostAcknowledged) -> Result<Option<PathBuf>> {
        if self.dry_run {
            return Ok(None);
        }
        let q = self.dir.join(QUARANTINE_DIR);
        std::fs::create_dir_all(&q).map_err(|e| Error::io("mkdir", &q, e))?;
        let path = q.join(format!(
            "{LOST_NOTE_PREFIX}{}-{}.txt",
            lost.last_kept + 1,
            lost.watermark
        ));
        let text = format!(
            "{lost}\nRecovery opened the log without them (RecoveryMode::TruncateTail). Remove \
             this file once the loss has been dealt with; walctl verify fails while it is here.\n"
        );
        std::fs::write(&path, text)
            .and_then(|()| File::open(&path)?.sync_all())
            .map_err(|e| Error::io("write", &path, e))?;
        crate::io::sync_dir(&q)?;
        self.sync_dir()?;
        Ok(Some(path))
    }

    /// Copies `path` into the quarantine directory before recovery cuts it.
    fn quarantine_copy(&mut self, path: &Path) -> Result<()> {
        let to = self.quarantine_path(path)?;
        if !self.dry_run {
            self.step(OpCode::Write, "copy", path)?;
            std::fs::copy(path, &to).map_err(|e| Error::io("copy", path, e))?;
            self.step(OpCode::Fsync, "fsync", &to)?;
            File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("fsync", &to, e))?;
        }
        self.actions.push(Action::CopiedToQuarantine {
            from: path.to_path_buf(),
            to,
        });
        Ok(())
    }

    /// A free name in the quarantine directory for `path` (made if missing, unless dry).
    fn quarantine_path(&self, path: &Path) -> Result<PathBuf> {
        let q = self.dir.join(QUARANTINE_DIR);
        if !self.dry_run && !q.is_dir() {
            std::fs::create_dir(&q).map_err(|e| Error::io("mkdir", &q, e))?;
            sync_dir(self.dir)?;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut to = q.join(&*name);
        let mut n = 1;
        while to.exists() {
            to = q.join(format!("{name}.{n}"));
            n += 1;
        }
        Ok(to)
    }

    fn sync_dir(&self) -> Result<()> {
        if self.dry_run || self.actions.is_empty() {
            return Ok(());
        }
        let q = self.dir.join(QUARANTINE_DIR);
        if q.is_dir() {
            self.step(OpCode::Fsync, "fsync dir", &q)?;
            sync_dir(&q)?;
        }
        self.step(OpCode::Fsync, "fsync dir", self.dir)?;
        sync_dir(self.dir)
    }
}

/// A `.wal` with a `.wal.lz4` of the same index: a freeze was interrupted after its rename.
/// A complete frame whose content equals the `.wal` makes the `.wal` redundant; an
/// incomplete or damaged frame is removed; a valid frame with other content is unexplained.
fn resolve_duplicate(cold: &Path, fx: &mut Fixer<'_>) -> Result<()> {
    let hot = hot_of(cold);
    let cold_digest = match digest_cold(cold) {
        Ok(d) => d,
        Err(Error::Corrupt { .. }) => {
            return fx.remove(cold, Removal::IncompleteCopy);
        }
        Err(e) => return Err(e),
    };
    let hot_digest = digest(
        File::open(&hot).map_err(|e| Error::io("open", &hot, e))?,
        &hot,
    )?;
    if hot_digest == cold_digest {
        fx.remove(&hot, Removal::Redundant)
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

/// Removes the hot files at the end of the log that are empty or whose header is all zeros,
/// and hold nothing else: segments prepared ahead of the writer, or (Staged, its staging lost)
/// activated and never drained. Nothing in them was ever on the disk, so nothing in them was
/// ever reported durable. A file with data after its zero header is left to the reader's
/// rule (it reports it dropped, and recovery moves it to quarantine).
fn remove_unused_tail(segments: &[SegmentEntry], fx: &mut Fixer<'_>) -> Result<()> {
    for seg in segments.iter().rev() {
        if seg.tier != Tier::Hot || !crate::segment::reader::is_unused_file(&seg.path)? {
            break;
        }
        fx.remove(&seg.path, Removal::Unused)?;
    }
    Ok(())
}

/// Makes a hot segment what persist would have made it: sealed (a crash may have left it
/// unsealed, with a torn tail that is cut here), truncated to its used length, fdatasynced.
/// Returns true if it changed the file.
///
/// Unless `full_scan`, a segment that ends in its seal is taken as the walk took it (by its
/// summary) and not read: its records may not be cut here by what the walk did not see.
fn finish_segment(seg: &SegmentEntry, fx: &mut Fixer<'_>, full_scan: bool) -> Result<bool> {
    if !full_scan && hot_summary(seg)?.is_some() {
        return Ok(false); // sealed, and truncated to its seal: nothing to do
    }
    let actions = &mut fx.actions;
    let f = File::open(&seg.path).map_err(|e| Error::io("open", &seg.path, e))?;
    let mut r = SegmentReader::new(std::io::BufReader::new(f), &seg.path)?;
    let end = r.skip_to_end()?;
    let (offset, why) = match end {
        SegmentEnd::Sealed(seal) if seal.end == seg.file_len => return Ok(false),
        SegmentEnd::Sealed(seal) => {
            if !fx.dry_run {
                truncate_sealed_with(&seg.path, seal.end, fx.faults.as_ref())?;
            }
            actions.push(Action::Truncated {
                path: seg.path.clone(),
                len: seal.end,
            });
            return Ok(true);
        }
        SegmentEnd::Open { offset } => (offset, None),
        SegmentEnd::Broken { offset, kind, .. } => (offset, Some((offset, kind))),
    };
    let seal = Seal {
        count: r.count(),
        end: offset + r.header().framing.seal_len() as u64,
        last_crc: r.last_crc(),
        times: r.times(),
    };
    if !fx.dry_run {
        seal_in_place_with(&seg.path, offset, &seal, fx.faults.as_ref())?;
    }
    actions.push(Action::Sealed {
        path: seg.path.clone(),
        last_seq: r.next_seq() - 1,
        cut: why,
    });
    Ok(true)
}
