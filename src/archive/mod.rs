//! The archive tier (cargo feature `archive`): cold segments are uploaded to S3-compatible
//! object storage (or a local/NFS directory) by [`Archiver`], on its own thread with its own
//! small tokio runtime, before retention may delete them. Objects mirror the file names
//! under the URL's prefix, next to a `manifest.json` listing each segment's sequence range,
//! size and CRC32C. [`archive_dir`], [`restore`] and [`verify_url`] are the operator tools
//! behind `walctl archive`, `walctl restore` and `walctl verify URL`.
//!
//! ```no_run
//! use wal_recorder::{archive::ArchiveConfig, config::Config, recorder::Recorder};
//! # fn main() -> wal_recorder::Result<()> {
//! let mut cfg = Config::new("/var/lib/wal");
//! // credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT...
//! cfg.archive = Some(ArchiveConfig::new("s3://my-bucket/engine-1"));
//! let mut rec = Recorder::open("/var/lib/wal", cfg)?; // fails here on wrong credentials
//! rec.append(b"order")?;
//! rec.close()?;
//! # Ok(()) }
//! ```

mod manifest;
mod scan;
mod store;
mod tools;
mod uploader;

pub use crate::config::archive::{ArchiveConfig, RetryPolicy};
pub use manifest::{Manifest, ManifestEntry, MANIFEST_FORMAT, MANIFEST_VERSION};
pub use store::MANIFEST;
pub use tools::{
    archive_dir, restore, restore_range, verify_url, ArchiveReport, RestoreRange, RestoreReport,
};
pub use uploader::{ArchiveStats, Archiver};
