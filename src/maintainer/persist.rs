//! Persist: the writer's sealed segment is unmapped, then one linked chain
//! `ftruncate(used) → fdatasync → close` makes it durable at its used length (Direct). A
//! staged segment's chain is `write(rest of the buffer) → fdatasync → ftruncate(used) →
//! fdatasync → close`: its records are durable at the first fdatasync, which is when
//! `durable_seq` may pass them ([`PersistJob::durable`]), without waiting for the truncation's
//! metadata commit. It joins the hot list only when all of them succeeded; a staged buffer
//! is recycled then.

use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;

use super::drain::StagedTail;
use super::job::{ud, Ctx};
use crate::constants::PAGE_SIZE;
use crate::error::{Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::segment::SealedSegment;
use crate::telemetry::{self, Stamp};

const TRUNCATE: u32 = 0;
const SYNC: u32 = 1;
const CLOSE: u32 = 2;
const WRITE: u32 = 3;
const TAIL_SYNC: u32 = 4;

/// How a persist ended.
pub(crate) enum PersistOutcome {
    /// Durable at its used length; add to the hot list.
    Persisted,
    /// fdatasync (or the write of the staged tail) failed: contract 5, never retried.
    FsyncFailed(Error),
    /// Another step failed; retry later (the file is closed; reopened on retry).
    Retry(Error),
}

/// The part of a staging buffer persist still writes.
struct BufferTail {
    ring: std::sync::Arc<crate::staging::StagingRing>,
    slot: usize,
    /// First byte not yet on disk (page-aligned).
    from: u64,
}

/// One segment being persisted.
pub(crate) struct PersistJob {
    pub index: u64,
    pub path: PathBuf,
    pub used: u64,
    pub last_seq: u64,
    fd: RawFd,
    results: [Option<i32>; 5],
    /// `durable_seq` was told about this segment (at its first successful fdatasync).
    pub credited: bool,
    /// Staged: the buffer's tail still to write, and the ring that keeps it mapped.
    tail: Option<BufferTail>,
    /// Length of the tail write pushed (0: none).
    write_len: u32,
    /// Staged: the buffer to recycle once persisted.
    pub slot: Option<usize>,
    /// When the writer sealed the segment.
    pub sealed_at: Stamp,
    started: Stamp,
    /// Nanoseconds from the chain's submission to its fdatasync's completion.
    pub fdatasync_ns: u64,
}

impl PersistJob {
    /// Takes the segment from the writer: unmaps it here, on the maintainer thread (Direct),
    /// or takes its file and the tail of its buffer from the drain (Staged: `tail`).
    pub fn new(mut seg: SealedSegment, tail: Option<StagedTail>) -> Self {
        drop(seg.map.take());
        drop(seg.staged.take()); // the tail holds the ring
        let (fd, slot, tail) = match (tail, seg.file) {
            (_, Some(f)) => (f.into_raw_fd(), None, None),
            (Some(t), None) => (
                t.file.into_raw_fd(),
                Some(t.slot),
                Some(BufferTail {
                    ring: t.ring,
                    slot: t.slot,
                    from: t.from,
                }),
            ),
            (None, None) => unreachable!("a sealed segment has a file or a staging buffer"),
        };
        PersistJob {
            index: seg.index,
            path: seg.path,
            used: seg.used,
            last_seq: seg.last_seq,
            fd,
            results: [None; 5],
            credited: false,
            tail,
            write_len: 0,
            slot,
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
            results: [None; 5],
            credited: false,
            tail: None,
            write_len: 0,
            slot: None,
            sealed_at: telemetry::now(),
            started: telemetry::now(),
            fdatasync_ns: 0,
        })
    }

    pub fn start(&mut self, slot: u32, cx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.started = telemetry::now();
        let mut ops = Vec::with_capacity(4);
        if let Some(t) = &self.tail {
            let end = (self.used.div_ceil(PAGE_SIZE) * PAGE_SIZE).min(t.ring.capacity() as u64);
            if end > t.from {
                let len = (end - t.from) as usize;
                // SAFETY: [from, end) lies inside the slot's mapping, which `tail.ring` keeps
                // alive until this job is dropped, after its completions.
                let buf = unsafe {
                    std::slice::from_raw_parts(
                        t.ring.base(t.slot).as_ptr().add(t.from as usize),
                        len,
                    )
                };
                self.write_len = len as u32;
                ops.push(Op::write(
                    Target::Segment,
                    self.fd,
                    buf,
                    t.from,
                    ud(slot, WRITE),
                ));
            }
        }
        if self.write_len == 0 {
            self.results[WRITE as usize] = Some(0);
        }
        if self.tail.is_some() {
            ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, TAIL_SYNC)));
        } else {
            self.results[TAIL_SYNC as usize] = Some(0);
        }
        ops.push(Op::ftruncate(
            Target::Segment,
            self.fd,
            self.used,
            ud(slot, TRUNCATE),
        ));
        ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, SYNC)));
        ops.push(Op::close(Target::Segment, self.fd, ud(slot, CLOSE)));
        // SAFETY: only the tail write carries a buffer, kept alive as said above; no paths.
        unsafe { push_chain(cx.be, &ops) }
    }

    /// Whether the segment's records are durable: the write of the staged tail and its
    /// fdatasync succeeded (Staged), or the truncate and the fdatasync (Direct).
    pub fn durable(&self) -> bool {
        let ok = |tag: u32| self.results[tag as usize].is_some_and(|r| r >= 0);
        let wrote = self.results[WRITE as usize].is_some_and(|r| r as u32 >= self.write_len);
        match self.tail.is_some() {
            true => wrote && ok(TAIL_SYNC),
            false => ok(TRUNCATE) && ok(SYNC),
        }
    }

    /// Records a completion; returns the outcome once all are in.
    pub fn complete(&mut self, tag: u32, result: i32) -> Option<PersistOutcome> {
        self.results[tag as usize] = Some(result);
        if tag == SYNC || tag == TAIL_SYNC {
            self.fdatasync_ns = telemetry::since_ns(self.started);
        }
        let [Some(t), Some(s), Some(c), Some(w), Some(ts)] = self.results else {
            return None;
        };
        if c < 0 {
            // A cancelled (or failed) close: release the descriptor ourselves.
            // SAFETY: the fd is ours and no operation in flight uses it any more.
            unsafe { libc::close(self.fd) };
        }
        if let Err(e) = check(w, "write (drain)", &self.path) {
            return Some(PersistOutcome::FsyncFailed(e));
        }
        if (w as u32) < self.write_len {
            let short = std::io::Error::other(format!("short write: {w} of {}", self.write_len));
            return Some(PersistOutcome::FsyncFailed(crate::Error::io(
                "write (drain)",
                &self.path,
                short,
            )));
        }
        if let Err(e) = check(ts, "fdatasync", &self.path) {
            return Some(PersistOutcome::FsyncFailed(e));
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
