//! System-wide limits. Every configurable value is clamped to these; every queue, batch and
//! record has a bound named here (the spec's `wal/constants.hpp`).

/// Largest payload one record may carry. Larger appends fail with
/// [`crate::Error::RecordTooLarge`]; the writer never writes a partial record.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// Smallest segment file the writer creates: one page for the header and a record or two.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// Largest segment file the writer creates. Bounded so that a mapping, a freeze and a
/// page-cache flush of one segment stay bounded too.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 32;

/// Default segment size: 64 MiB, the size PERF_NOTES.md measured.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Sequence numbers start here; 0 in a record's sequence field marks the end of the records
/// of an unsealed segment.
pub const FIRST_SEQ: u64 = 1;

/// Largest sequence number a record may carry; `u64::MAX` is the seal marker.
pub const MAX_SEQ: u64 = u64::MAX - 1;
