//! The one error type of the crate. Every variant that concerns a file names it, and every
//! corruption names the byte offset where it was found.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with the bytes at a given offset of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// The file does not start with the segment magic: not a wal-recorder segment.
    BadMagic,
    /// The header carries a format version this build cannot read.
    UnsupportedVersion(u32),
    /// The file is empty.
    EmptyFile,
    /// The header is all zeros: a prepared segment that never became active.
    ZeroHeader,
    /// The file ends inside the header.
    TruncatedHeader,
    /// The header's own checksum does not match.
    HeaderChecksum,
    /// The header contradicts itself or the file name (for example the index).
    BadHeader(&'static str),
    /// A record's chained checksum does not match.
    RecordChecksum {
        /// The record's sequence number.
        seq: u64,
    },
    /// A record claims a length over the limit or past the end of the segment.
    BadLength {
        /// The length field.
        len: u64,
    },
    /// A record carries the wrong sequence number.
    SequenceGap {
        /// What the chain required.
        expected: u64,
        /// What the record carries.
        found: u64,
    },
    /// The file ends inside a record or before the seal of a sealed segment.
    Truncated,
    /// The seal is malformed or disagrees with the records before it.
    BadSeal(&'static str),
    /// A frame header that is neither a record, a seal nor the zero end marker.
    PartialFrame,
    /// A segment does not continue the previous one (index, sequence or checksum chain).
    BrokenChain(String),
    /// A compressed segment is not a complete, valid frame.
    BadFrame(String),
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::BadMagic => write!(f, "not a wal-recorder segment (bad magic)"),
            Corruption::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Corruption::EmptyFile => write!(f, "empty file"),
            Corruption::ZeroHeader => write!(f, "zero header (prepared segment never used)"),
            Corruption::PartialFrame => write!(f, "incomplete record frame"),
            Corruption::TruncatedHeader => write!(f, "file ends inside the segment header"),
            Corruption::HeaderChecksum => write!(f, "header checksum mismatch"),
            Corruption::BadHeader(why) => write!(f, "bad header: {why}"),
            Corruption::RecordChecksum { seq } => {
                write!(f, "checksum mismatch in record {seq}")
            }
            Corruption::BadLength { len } => write!(f, "impossible record length {len}"),
            Corruption::SequenceGap { expected, found } => {
                write!(f, "sequence gap: expected {expected}, found {found}")
            }
            Corruption::Truncated => write!(f, "file ends inside a record"),
            Corruption::BadSeal(why) => write!(f, "bad seal: {why}"),
            Corruption::BrokenChain(why) => write!(f, "broken chain: {why}"),
            Corruption::BadFrame(why) => write!(f, "bad compressed frame: {why}"),
        }
    }
}

/// `path: offset N: what`; a damaged compressed frame is placed by its compressed offset
/// alone (the decoder's message carries it), so the message names one file and one offset.
fn corrupt_message(path: &std::path::Path, offset: u64, kind: &Corruption) -> String {
    match kind {
        Corruption::BadFrame(why) if why.starts_with("compressed offset ") => {
            format!("{}: {kind}", path.display())
        }
        _ => format!("{}: offset {offset}: {kind}", path.display()),
    }
}

/// Errors of wal-recorder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed on a file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed (`open`, `fallocate`, `fdatasync`, ...).
        op: &'static str,
        /// The file or directory it failed on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A segment's bytes are not what the format allows.
    #[error("{}", corrupt_message(path, *offset, kind))]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the problem in the (uncompressed) segment.
        offset: u64,
        /// What is wrong.
        kind: Corruption,
    },
    /// A record larger than [`crate::constants::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Requested payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record does not fit in what is left of the segment; nothing was written.
    #[error("segment full: record of {len} bytes does not fit")]
    SegmentFull {
        /// Requested payload length.
        len: usize,
    },
    /// The segment was already sealed.
    #[error("segment {} is sealed", path.display())]
    Sealed {
        /// The segment file.
        path: PathBuf,
    },
    /// Another recorder holds the directory.
    #[error("{}: locked by another recorder", .0.display())]
    Locked(PathBuf),
    /// The log failed (contract 5): an fsync, fdatasync, msync or drain write failed, on
    /// whichever thread; it refuses appends until it is reopened. `cause` is the first
    /// failure, with its file and OS error.
    #[error("{}: the log failed and is read-only until it is reopened: {cause}", path.display())]
    Failed {
        /// The log directory.
        path: PathBuf,
        /// The failure that latched it.
        #[source]
        cause: std::sync::Arc<Error>,
    },
    /// The writer waited too long for the maintainer.
    #[error("{}: {what} did not happen within the wait limit", path.display())]
    Timeout {
        /// The log directory.
        path: PathBuf,
        /// What the writer waited for.
        what: &'static str,
    },
    /// The staging directory or one of its buffers cannot be used safely (not a tmpfs, a
    /// symlink, another owner, writable by others, or holding another log's data).
    #[error("staging {}: {why}", path.display())]
    Staging {
        /// The staging directory or file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// LZ4 refused to compress or set up a context (its error name).
    #[error("LZ4: {0}")]
    Compression(String),
    /// The recorder was closed (or its open failed half way): nothing more is appended.
    #[error("{}: the recorder is closed", .0.display())]
    Closed(PathBuf),
    /// The sequence numbers are used up (`MAX_SEQ`): the log takes no more records.
    #[error("{}: sequence numbers exhausted", .0.display())]
    SequenceExhausted(PathBuf),
    /// The segment maintainer's thread died (a panic): the log is latched failed.
    #[error("the segment maintainer thread died: {0}")]
    MaintainerDied(String),
    /// A sequence number the log does not hold (before its first retained record, or after
    /// its last).
    #[error("{}: sequence number {seq} is not in the log (it holds {})", dir.display(), match (first, last) {
        (Some(f), Some(l)) => format!("{f}..={l}"),
        (Some(f), None) => format!("records from {f} on"),
        (None, _) => "no record".to_string(),
    })]
    SeqNotFound {
        /// The log directory.
        dir: PathBuf,
        /// The sequence number asked for.
        seq: u64,
        /// First retained sequence number.
        first: Option<u64>,
        /// Last sequence number.
        last: Option<u64>,
    },
    /// A time the log does not hold: before its first record's time, or after the greatest
    /// time of its records (or a log without time).
    #[error("{}: time {} is not in the log (it holds {})", dir.display(), crate::logdir::format_rfc3339(*time_ns), match (first, last) {
        (Some(f), Some(l)) => format!("{} ..= {}", crate::logdir::format_rfc3339(*f), crate::logdir::format_rfc3339(*l)),
        (Some(f), None) => format!("times from {} on", crate::logdir::format_rfc3339(*f)),
        (None, Some(l)) => format!("times up to {}", crate::logdir::format_rfc3339(*l)),
        (None, None) => "no record with a time".to_string(),
    })]
    TimeNotFound {
        /// The log directory.
        dir: PathBuf,
        /// The time asked for, nanoseconds since the Unix epoch.
        time_ns: u64,
        /// Time of the first record, where known.
        first: Option<u64>,
        /// The greatest time of the records, where known.
        last: Option<u64>,
    },
    /// A reader resumed from a saved position finds that the log no longer holds what it
    /// read (contract 9): the chained checksum before its next record differs from the one
    /// it saved. Records it had read were lost (as staging buffers are at a power cut) and
    /// others took their sequence numbers.
    #[error("{}: reader {reader}: the log diverged from what this reader read: before sequence number {seq} the chained checksum is {} where its position says {expected:#010x} (records it read were lost, as unsynced staging is at a power cut, and replaced); resume with re-delivery (walctl tail --redeliver) or from a new start", dir.display(), found.map_or("missing".to_string(), |c| format!("{c:#010x}")))]
    Diverged {
        /// The log directory.
        dir: PathBuf,
        /// The reader's name.
        reader: String,
        /// The reader's next sequence number.
        seq: u64,
        /// The checksum its position holds.
        expected: u32,
        /// The checksum the log has there (`None`: the log skips past `seq`).
        found: Option<u32>,
    },
    /// Records once reported durable are not in the log (contract 10): refused by
    /// `RecoveryMode::Strict`; the other modes open and report it
    /// (`Recovered::lost_acknowledged`).
    #[error("{}: {message}", dir.display())]
    LostAcknowledged {
        /// The log directory.
        dir: PathBuf,
        /// What was lost, and how it is known.
        message: String,
    },
    /// The disk budget leaves no room for the next segment and nothing can make it: what is
    /// left over the limit is hot (not compressible any further yet) or unarchived data.
    /// The append can be retried once room is made (a larger budget, an archive back up).
    #[error(
        "{}: the disk budget {limit} leaves no room for the next segment: {excess} bytes over \
         it with only hot or unarchived data left",
        dir.display()
    )]
    DiskBudget {
        /// The log directory.
        dir: PathBuf,
        /// `max_disk_bytes` or `min_free_bytes`.
        limit: &'static str,
        /// Bytes by which the next segment would exceed it.
        excess: u64,
    },
    /// The directory is a follower's log: it takes records from its leader only
    /// (contract 11). `walctl promote` makes it a leader.
    #[error("{}: a follower's log takes records from its leader only (promote it with `walctl promote` to append)", .0.display())]
    NotLeader(PathBuf),
    /// [`crate::Recorder::commit`] without a claim: nothing was reserved by
    /// [`crate::Recorder::try_claim`], or an append, an abort or a close since has abandoned it.
    #[error("{}: commit without a claim (try_claim reserves the record; an append, abort_claim or close abandons it)", .0.display())]
    NoClaim(PathBuf),
    /// The replication state file (`epochs`) is damaged or foreign.
    #[error("{}: {message}", path.display())]
    ReplicaState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Replication with a peer failed or was refused.
    #[error("replication with {peer}: {message}")]
    Replication {
        /// The peer's address.
        peer: String,
        /// What happened.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The archive (object store) refused or failed a request.
    #[error("{target}: {op}: {message}")]
    Archive {
        /// The object or store URL.
        target: String,
        /// The operation (`probe`, `put`, `head`, `get`, `list`, ...).
        op: &'static str,
        /// What went wrong, with the store's own message.
        message: String,
    },
    /// A range of sequence numbers or times to restore that the archive does not hold (or a
    /// time range from an archive without time); `walctl restore` exits 2, as for a range
    /// the log does not hold.
    #[error("{target}: {message}")]
    NotArchived {
        /// The store URL.
        target: String,
        /// What was asked and what the archive holds.
        message: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this is a failed fsync, fdatasync or msync: never retried, it latches the log
    /// failed (contract 5).
    pub(crate) fn is_sync_failure(&self) -> bool {
        matches!(self, Error::Io { op, .. }
            if matches!(*op, "fsync"
                    | "fdatasync"
                    | "fsync dir"
                    | "msync"
                    | "write (drain)"
                    | "write (watermark)"
                    | "fdatasync (watermark)"))
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, kind: Corruption) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            kind,
        }
    }
}
