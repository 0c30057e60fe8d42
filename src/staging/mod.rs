//! The staged write path: the writer appends into buffers in tmpfs ([`StagingRing`]), which
//! the kernel never writes back or write-protects and which outlive a crash of the process;
//! the maintainer drains them into the segment files on disk. This module owns the staging
//! directory (its safety checks and lock), the buffers, and the replay at open of buffers a
//! crashed process left behind. It never touches the writer's hot path.

mod dir;
mod replay;
mod ring;

pub use dir::{staging_path, StagingDir};
pub(crate) use replay::{replay, BufferOutcome, Replay};
pub(crate) use ring::StagingRing;

use std::path::Path;

use crate::config::{Config, WritePath};
use crate::error::Result;

/// At open, before recovery reads the disk: applies what a crashed process left in the
/// staging directory of `log_dir` (in either write path), then, in Staged mode, returns the
/// directory emptied of buffers for a new ring; in Direct mode removes it.
pub(crate) fn open_for(log_dir: &Path, config: &Config) -> Result<(Option<StagingDir>, Replay)> {
    match config.write_path {
        WritePath::Staged => {
            let dir = StagingDir::create(&config.staging_dir, log_dir, config.staging_group)?;
            let replayed = replay(&dir, log_dir, config.fault_plan.as_ref())?;
            for name in dir.buffer_names()? {
                dir.remove(&name)?;
            }
            Ok((Some(dir), replayed))
        }
        WritePath::Direct => match StagingDir::existing(&config.staging_dir, log_dir)? {
            Some(dir) => {
                let replayed = replay(&dir, log_dir, config.fault_plan.as_ref())?;
                dir.remove_all()?;
                Ok((None, replayed))
            }
            None => Ok((None, Replay::default())),
        },
    }
}
