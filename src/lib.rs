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
//! "Contract N" in these docs is the N-th contract of `docs/CONTRACTS.md` in the repository
//! (names, LZ4 compatibility, chained checksums, crash safety, fsync errors, the hot path,
//! durability, `walctl`, ...).
//!
//! ```
//! use wal_recorder::{Config, LogReader, Recorder};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut config = Config::new(dir.path());
//! config.segment_size = 1 << 20;
//! let mut log = Recorder::open(dir.path(), config).unwrap();
//! let seq = log.append(b"order 1").unwrap(); // no system call
//! log.append(b"order 2").unwrap();
//! log.sync().unwrap(); // or poll log.durable_seq(): durable about one write and fdatasync after the append
//! assert!(log.durable_seq() > seq);
//! log.close().unwrap();
//!
//! let mut reader = LogReader::open_at(dir.path(), seq).unwrap();
//! let mut buf = Vec::new();
//! let first = reader.next_record(&mut buf).unwrap().unwrap();
//! assert_eq!((first.seq, &buf[..]), (seq, &b"order 1"[..]));
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "archive")]
pub mod archive;
mod backoff;
pub(crate) mod clock;
pub mod codec;
pub mod config;
pub mod constants;
pub mod error;
pub mod event;
#[doc(hidden)] // the I/O backends and their fault injection: test support, not API
pub mod io;
pub mod logdir;
pub mod maintainer;
pub mod recorder;
pub mod recovery;
pub mod replication;
pub mod segment;
#[doc(hidden)] // the staged write path's buffers: used by walctl and the tests, not API
pub mod staging;
pub mod telemetry;

pub use config::Config;
pub use error::{Corruption, Error, Result};
pub use logdir::{LogReader, Tailer};
pub use maintainer::{Health, SegmentMaintainer};
pub use recorder::Recorder;
