//! What recovery did to a directory (or, dry, would do), one typed row per change: the open's
//! report (`Recovered::actions`), printed by `walctl record` and `walctl repair`.

use std::path::PathBuf;

use crate::error::Corruption;
use crate::logdir::TailDrop;

/// Why recovery removed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A `.tmp` left by an interrupted freeze or summary rewrite.
    Leftover,
    /// A `.wal` whose `.wal.lz4` is complete and has the same content.
    Redundant,
    /// A `.wal.lz4` that is incomplete or damaged while its `.wal` is still there.
    IncompleteCopy,
    /// A hot file at the end of the log with no header and no data on disk: prepared ahead
    /// of the writer, or activated and lost before its first write reached the disk.
    Unused,
}

/// One change to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A file removed.
    Removed {
        /// The file.
        path: PathBuf,
        /// Why.
        why: Removal,
    },
    /// A file moved into `quarantine/`.
    Quarantined {
        /// Where it was.
        from: PathBuf,
        /// Where it is now.
        to: PathBuf,
    },
    /// A file copied into `quarantine/` before recovery cut it.
    CopiedToQuarantine {
        /// The file.
        from: PathBuf,
        /// The copy.
        to: PathBuf,
    },
    /// What lay beyond the end of the log, moved to `quarantine/` (never reported durable).
    Dropped {
        /// What was dropped.
        drop: TailDrop,
        /// Whether a copy of the file holding the break went to quarantine too.
        copied: bool,
    },
    /// A sealed segment that was not persisted yet: truncated to its used length, synced.
    Truncated {
        /// The segment.
        path: PathBuf,
        /// Its used length.
        len: u64,
    },
    /// An unsealed segment (a crash) sealed after its last valid record, synced.
    Sealed {
        /// The segment.
        path: PathBuf,
        /// Sequence number of its last record.
        last_seq: u64,
        /// Where a torn tail was cut, and what was found there (`None`: it ended cleanly).
        cut: Option<(u64, Corruption)>,
    },
    /// Records a crashed process left only in a staging buffer, written to their segment.
    Replayed {
        /// The segment written.
        path: PathBuf,
        /// The staging buffer.
        from: PathBuf,
        /// Its index.
        segment: u64,
        /// Records the disk lacked.
        records: u64,
    },
    /// Records once reported durable are not in the log (contract 10): its durability
    /// watermark is past the end recovery found. Never a torn tail: data loss, reported.
    LostAcknowledged(LostAcknowledged),
    /// A staging buffer with nothing the disk lacks, discarded.
    StagingDiscarded {
        /// The staging buffer.
        path: PathBuf,
        /// Its segment.
        segment: u64,
        /// Its segment is already older than the disk's copy (otherwise: it holds no record
        /// the disk lacks).
        older: bool,
    },
}

/// Records reported durable that the log no longer holds (a damaged sector, a disk that lied
/// about a flush): what the watermark proves and where the log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostAcknowledged {
    /// The segment file whose watermark says how far `durable_seq` had reached.
    pub watermark_file: PathBuf,
    /// Every record up to here had been reported durable.
    pub watermark: u64,
    /// The last record the log holds (0: none).
    pub last_kept: u64,
    /// Where recovery wrote the note that keeps `walctl verify` failing until an operator
    /// removes it (`None`: a dry run).
    pub note: Option<PathBuf>,
}

impl LostAcknowledged {
    /// Records lost: `last_kept + 1 ..= watermark`.
    pub fn records(&self) -> u64 {
        self.watermark - self.last_kept
    }
}

impl std::fmt::Display for LostAcknowledged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DATA LOSS: records up to {} had been reported durable ({} says so), but the log ends at {}: {} acknowledged records ({}..={}) are lost (a damaged or torn sector below the watermark, or a disk that lost a flushed write)",
            self.watermark,
            self.watermark_file.display(),
            self.last_kept,
            self.records(),
            self.last_kept + 1,
            self.watermark
        )
    }
}

impl From<crate::staging::BufferOutcome> for Action {
    fn from(o: crate::staging::BufferOutcome) -> Self {
        use crate::staging::BufferOutcome as O;
        match o {
            O::Replayed {
                path,
                from,
                segment,
                records,
            } => Action::Replayed {
                path,
                from,
                segment,
                records,
            },
            O::Discarded {
                path,
                segment,
                older,
            } => Action::StagingDiscarded {
                path,
                segment,
                older,
            },
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Removed { path, why } => {
                let why = match why {
                    Removal::Leftover => "leftover temporary file of an interrupted freeze",
                    Removal::Redundant => "its .wal.lz4 is complete and verified",
                    Removal::IncompleteCopy => "incomplete compressed copy of a hot segment",
                    Removal::Unused => {
                        "no header on disk and no data: prepared ahead of the writer, or \
                         activated and lost before its first write reached the disk (nothing \
                         in it was reported durable)"
                    }
                };
                write!(f, "removed {}: {why}", path.display())
            }
            Action::Quarantined { from, to } => {
                write!(f, "moved {} to {}", from.display(), to.display())
            }
            Action::CopiedToQuarantine { from, to } => write!(
                f,
                "copied {} to {} before cutting it",
                from.display(),
                to.display()
            ),
            Action::Dropped { drop, copied } => write!(
                f,
                "{drop}; {} moved to {}/ (never reported durable)",
                match copied {
                    false => "the later segments",
                    true => "a copy of it and the later segments",
                },
                super::QUARANTINE_DIR
            ),
            Action::Truncated { path, len } => write!(
                f,
                "{}: sealed but not persisted; truncated to {len} bytes and synced",
                path.display()
            ),
            Action::Sealed {
                path,
                last_seq,
                cut,
            } => {
                write!(f, "{}: ", path.display())?;
                match cut {
                    None => write!(f, "unsealed (crash)")?,
                    Some((offset, kind)) => {
                        write!(f, "torn tail cut at offset {offset} ({kind})")?;
                    }
                }
                write!(f, "; sealed after record {last_seq} and synced")
            }
            Action::Replayed {
                path,
                from,
                segment,
                records,
            } => write!(
                f,
                "{}: {records} records of segment {segment} the disk lacked applied from {} \
                 (process crash before the drain)",
                path.display(),
                from.display()
            ),
            Action::LostAcknowledged(lost) => write!(f, "{lost}"),
            Action::StagingDiscarded {
                path,
                segment,
                older,
            } => write!(
                f,
                "{}: segment {segment} {}; discarded",
                path.display(),
                match older {
                    true => "is older than the disk's copy",
                    false => "holds nothing the disk lacks",
                }
            ),
        }
    }
}
