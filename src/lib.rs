//! # wal-recorder
//!
//! A write-ahead log for Linux low-latency systems. A writer thread appends records into a
//! prefaulted staging buffer in tmpfs (or, in Direct mode, a shared mapping of the segment
//! file): no system call, no heap allocation and no page fault per append. One background
//! thread, the segment maintainer, drains the buffers to the segment files through io_uring,
//! persists, compresses and deletes segments. Segments are chained: each record's CRC32C covers the
//! previous record's checksum, across segment boundaries, so a missing, reordered or altered
//! record is detected. Cold segments are standard LZ4 frames (`lz4 -d` restores them).
//!
//! ```
//! use wal_recorder::segment::SegmentWriter;
//! use wal_recorder::log::verify;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = SegmentWriter::create(dir.path(), 0, 1 << 20, 1, 0).unwrap();
//! assert_eq!(w.append(b"order 1").unwrap(), 1);
//! assert_eq!(w.append(b"order 2").unwrap(), 2);
//! w.seal();
//! let report = verify(dir.path()).unwrap();
//! assert!(report.ok);
//! assert_eq!(report.records, 2);
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "archive")]
pub mod archive;
pub mod codec;
pub mod config;
pub mod constants;
pub mod error;
pub mod event;
pub mod io;
pub mod log;
pub mod maintainer;
pub mod recorder;
pub mod recovery;
pub mod segment;
pub mod staging;
pub mod telemetry;

pub use error::{Corruption, Error, Result};
