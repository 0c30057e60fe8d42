//! Persist: the writer's sealed segment is unmapped, then one linked chain
//! `ftruncate(used) → fdatasync → close` makes it durable at its used length. It joins the
//! hot list only when all three succeeded.

use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;

use super::job::{ud, Ctx};
use crate::error::{Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::segment::SealedSegment;
use crate::telemetry::{self, Stamp};

const TRUNCATE: u32 = 0;
const SYNC: u32 = 1;
const CLOSE: u32 = 2;

/// How a persist ended.
pub(crate) enum PersistOutcome {
    /// Durable at its used length; add to the hot list.
    Persisted,
    /// fdatasync failed: contract 5, never retried.
    FsyncFailed(Error),
    /// Another step failed; retry later (the file is closed; reopened on retry).
    Retry(Error),
}

/// One segment being persisted.
pub(crate) struct PersistJob {
    pub index: u64,
    pub path: PathBuf,
    pub used: u64,
    pub last_seq: u64,
    fd: RawFd,
    results: [Option<i32>; 3],
    /// When the writer sealed the segment.
    pub sealed_at: Stamp,
    started: Stamp,
    /// Nanoseconds from the chain's submission to its fdatasync's completion.
    pub fdatasync_ns: u64,
}

impl PersistJob {
    /// Takes the segment from the writer: unmaps it here, on the maintainer thread.
    pub fn new(mut seg: SealedSegment) -> Self {
        drop(seg.map.take());
        PersistJob {
            index: seg.index,
            path: seg.path,
            used: seg.used,
            last_seq: seg.last_seq,
            fd: seg.file.into_raw_fd(),
            results: [None; 3],
            sealed_at: seg.sealed_at,
            started: telemetry::now(),
            fdatasync_ns: 0,
        }
    }

    /// A retry: reopens the file.
    pub fn reopen(index: u64, path: PathBuf, used: u64, last_seq: u64) -> Result<Self> {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?
            .into_raw_fd();
        Ok(PersistJob {
            index,
            path,
            used,
            last_seq,
            fd,
            results: [None; 3],
            sealed_at: telemetry::now(),
            started: telemetry::now(),
            fdatasync_ns: 0,
        })
    }

    pub fn start(&mut self, slot: u32, cx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.started = telemetry::now();
        let ops = [
            Op::ftruncate(Target::Segment, self.fd, self.used, ud(slot, TRUNCATE)),
            Op::fdatasync(Target::Segment, self.fd, ud(slot, SYNC)),
            Op::close(Target::Segment, self.fd, ud(slot, CLOSE)),
        ];
        // SAFETY: these operations carry no buffers or paths.
        unsafe { push_chain(cx.be, &ops) }
    }

    /// Records a completion; returns the outcome once all three are in.
    pub fn complete(&mut self, tag: u32, result: i32) -> Option<PersistOutcome> {
        self.results[tag as usize] = Some(result);
        if tag == SYNC {
            self.fdatasync_ns = telemetry::since_ns(self.started);
        }
        let [Some(t), Some(s), Some(c)] = self.results else {
            return None;
        };
        if c < 0 {
            // A cancelled (or failed) close: release the descriptor ourselves.
            // SAFETY: the fd is ours and no operation in flight uses it any more.
            unsafe { libc::close(self.fd) };
        }
        if let Err(e) = check(t, "ftruncate", &self.path) {
            return Some(PersistOutcome::Retry(e));
        }
        if let Err(e) = check(s, "fdatasync", &self.path) {
            return Some(PersistOutcome::FsyncFailed(e));
        }
        Some(PersistOutcome::Persisted)
    }
}
