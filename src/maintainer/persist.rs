//! Persist: the writer's sealed segment is unmapped, then one linked chain
//! `fdatasync → ftruncate(used) → fdatasync → close` makes it durable at its used length
//! (Direct; durable at the first fdatasync, and the truncated size, which tells recovery the
//! segment is durable, can only reach the disk after it). A
//! staged segment's chain is `write(the rest of the records) → fdatasync → write(the seal's
//! page) → fdatasync → ftruncate(used) → fdatasync → close`. The seal reaches the disk only
//! after every byte before it: a power cut in the middle can leave a torn tail, never a hole
//! followed by a valid seal (which recovery must call corruption). Its records are durable at
//! the second fdatasync, which is when `durable_seq` may pass them ([`PersistJob::durable`]),
//! without waiting for the truncation's metadata commit. It joins the hot list only when all
//! of them succeeded; a staged buffer is recycled then.

use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;

use super::drain::StagedTail;
use super::job::{ud, Ctx};
use crate::constants::MAX_BODY_WRITES;
use crate::constants::PAGE_SIZE;
use crate::error::{Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::segment::format::{SegmentHeader, HEADER_LEN, MAX_SEAL_LEN};
use crate::segment::SealedSegment;
use crate::telemetry::{self, Stamp};

const TRUNCATE: u32 = 0;
const SYNC: u32 = 1;
const CLOSE: u32 = 2;
/// The seal's page (and the one after, when the seal straddles them), written last.
const WRITE: u32 = 3;
const TAIL_SYNC: u32 = 4;
/// The whole pages before the seal's page.
const BODY: u32 = 5;
/// The seal's page without the seal: its records, zeros after (from a bounce page).
const BODY_LAST: u32 = 6;
const BODY_SYNC: u32 = 7;
/// The whole pages before the seal's page, in at most `MAX_BODY_WRITES` writes of at most
/// `Config::max_io_bytes` (the kernel's per-call limit).
const BODY_TAGS: [u32; MAX_BODY_WRITES as usize] = [BODY, 8, 9, 10];
const STEPS: usize = 11;

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
    results: [Option<i32>; STEPS],
    /// Lengths of the body writes pushed (0: none).
    /// (by `BODY_TAGS`)
    body_lens: [u32; MAX_BODY_WRITES as usize],
    body_last_len: u32,
    /// The seal's page without the seal, while its write is in flight.
    bounce: Option<crate::io::AlignedBuf>,
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
        Self::with_fd(
            (seg.index, seg.path, seg.used, seg.last_seq),
            fd,
            tail,
            slot,
            seg.sealed_at,
        )
    }

    /// A job for `(index, path, used, last_seq)` on the open descriptor `fd`.
    fn with_fd(
        (index, path, used, last_seq): (u64, PathBuf, u64, u64),
        fd: RawFd,
        tail: Option<BufferTail>,
        slot: Option<usize>,
        sealed_at: Stamp,
    ) -> Self {
        PersistJob {
            index,
            path,
            used,
            last_seq,
            fd,
            results: [None; STEPS],
            body_lens: [0; MAX_BODY_WRITES as usize],
            body_last_len: 0,
            bounce: None,
            credited: false,
            tail,
            write_len: 0,
            slot,
            sealed_at,
            started: telemetry::now(),
            fdatasync_ns: 0,
        }
    }

    /// Releases the descriptor of a job none of whose operations was submitted (a chain that
    /// could not be pushed), when it is given up: the file stays for recovery.
    pub(crate) fn close_unsubmitted(self) {
        // SAFETY: the descriptor is this job's own and no operation in flight uses it (its
        // chain was never submitted).
        unsafe { libc::close(self.fd) };
    }

    /// A retry: reopens the file.
    pub fn reopen(index: u64, path: PathBuf, used: u64, last_seq: u64) -> Result<Self> {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?
            .into_raw_fd();
        Ok(Self::with_fd(
            (index, path, used, last_seq),
            fd,
            None,
            None,
            telemetry::now(),
        ))
    }

    pub fn start(&mut self, slot: u32, cx: &mut Ctx<'_>) -> std::io::Result<()> {
        self.started = telemetry::now();
        let mut ops = Vec::with_capacity(STEPS);
        self.results = [None; STEPS];
        if let Some(t) = &self.tail {
            let base = t.ring.base(t.slot).as_ptr();
            let end = (self.used.div_ceil(PAGE_SIZE) * PAGE_SIZE).min(t.ring.capacity() as u64);
            let slice = |from: u64, to: u64| {
                // SAFETY: [from, to) lies inside the slot's mapping (to <= end <= capacity),
                // which `tail.ring` keeps alive until this job is dropped, after its
                // completions; the sealed buffer no longer changes.
                unsafe { std::slice::from_raw_parts(base.add(from as usize), (to - from) as usize) }
            };
            // The seal's length is its segment's framing's, from the header in the buffer.
            // (A header someone else overwrote in tmpfs: the longest seal, the page no lower
            // than what is drained; the segment's own check at read time says the rest.)
            let seal_len = SegmentHeader::decode(slice(0, HEADER_LEN as u64))
                .map_or(MAX_SEAL_LEN, |h| h.framing.seal_len());
            let seal_off = self.used - seal_len as u64;
            let seal_page = (seal_off / PAGE_SIZE * PAGE_SIZE).max(t.from);
            debug_assert!(t.from <= seal_page, "drains never pass the writer");
            let mut at = t.from;
            for (k, &tag) in BODY_TAGS.iter().enumerate() {
                if at >= seal_page {
                    break;
                }
                let len = (seal_page - at).min(cx.config.max_io_bytes);
                self.body_lens[k] = len as u32;
                ops.push(Op::write(
                    Target::Segment,
                    self.fd,
                    slice(at, at + len),
                    at,
                    ud(slot, tag),
                ));
                at += len;
            }
            assert!(
                at >= seal_page,
                "a segment's body fits in MAX_BODY_WRITES writes (Config clamps max_io_bytes)"
            );
            let head = (seal_off - seal_page) as usize;
            if head > 0 {
                let mut page = crate::io::AlignedBuf::new(PAGE_SIZE as usize);
                page.as_mut_slice()[..head].copy_from_slice(slice(seal_page, seal_off));
                self.body_last_len = PAGE_SIZE as u32;
                let at = ud(slot, BODY_LAST);
                ops.push(Op::write(
                    Target::Segment,
                    self.fd,
                    page.as_slice(),
                    seal_page,
                    at,
                ));
                self.bounce = Some(page);
            }
            if ops.is_empty() {
                self.results[BODY_SYNC as usize] = Some(0);
            } else {
                ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, BODY_SYNC)));
            }
            self.write_len = (end - seal_page) as u32;
            let seal = slice(seal_page, end);
            ops.push(Op::write(
                Target::Segment,
                self.fd,
                seal,
                seal_page,
                ud(slot, WRITE),
            ));
            ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, TAIL_SYNC)));
        } else {
            // Direct: the records (and the seal) are in the page cache; make them durable
            // before the truncation, which must never reach the disk first.
            ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, BODY_SYNC)));
            for tag in [WRITE, TAIL_SYNC] {
                self.results[tag as usize] = Some(0);
            }
        }
        let bodies = BODY_TAGS.iter().copied().zip(self.body_lens);
        for (tag, len) in bodies.chain([(BODY_LAST, self.body_last_len)]) {
            if len == 0 {
                self.results[tag as usize] = Some(0);
            }
        }
        ops.push(Op::ftruncate(
            Target::Segment,
            self.fd,
            self.used,
            ud(slot, TRUNCATE),
        ));
        ops.push(Op::fdatasync(Target::Segment, self.fd, ud(slot, SYNC)));
        ops.push(Op::close(Target::Segment, self.fd, ud(slot, CLOSE)));
        // SAFETY: the writes' buffers are kept alive as said above (the bounce page in this
        // job); no paths.
        unsafe { push_chain(cx.be, &ops) }
    }

    /// Whether a write step transferred all it was asked to.
    fn wrote(&self, tag: u32, len: u32) -> bool {
        self.results[tag as usize].is_some_and(|r| r >= 0 && r as u32 >= len)
    }

    /// Whether the segment's records are durable: the staged body, its fdatasync, the seal and
    /// its fdatasync succeeded (Staged), or the first fdatasync (Direct).
    pub fn durable(&self) -> bool {
        let ok = |tag: u32| self.results[tag as usize].is_some_and(|r| r >= 0);
        match self.tail.is_some() {
            true => {
                (BODY_TAGS.iter().zip(self.body_lens)).all(|(&tag, len)| self.wrote(tag, len))
                    && self.wrote(BODY_LAST, self.body_last_len)
                    && ok(BODY_SYNC)
                    && self.wrote(WRITE, self.write_len)
                    && ok(TAIL_SYNC)
            }
            false => ok(BODY_SYNC),
        }
    }

    /// Records a completion; returns the outcome once all are in.
    pub fn complete(&mut self, tag: u32, result: i32) -> Option<PersistOutcome> {
        self.results[tag as usize] = Some(result);
        if tag == SYNC || tag == TAIL_SYNC || tag == BODY_SYNC {
            self.fdatasync_ns = telemetry::since_ns(self.started);
        }
        if self.results.iter().any(Option::is_none) {
            return None;
        }
        let r = |tag: u32| self.results[tag as usize].unwrap_or(0);
        let (t, s, c) = (r(TRUNCATE), r(SYNC), r(CLOSE));
        if c == -libc::ECANCELED {
            // The close never ran (an earlier step of the chain failed): release the
            // descriptor ourselves. A close that ran and failed has released it already, and
            // its number may belong to another file by now: never close that twice.
            // SAFETY: the fd is ours and no operation in flight uses it any more.
            unsafe { libc::close(self.fd) };
        }
        let bodies = BODY_TAGS.iter().zip(self.body_lens);
        let steps = bodies
            .map(|(&tag, len)| (tag, len, "write (drain)"))
            .chain([
                (BODY_LAST, self.body_last_len, "write (drain)"),
                (BODY_SYNC, 0, "fdatasync"),
                (WRITE, self.write_len, "write (seal)"),
                (TAIL_SYNC, 0, "fdatasync"),
            ]);
        for (tag, len, op) in steps {
            if let Err(e) = check(r(tag), op, &self.path) {
                return Some(PersistOutcome::FsyncFailed(e));
            }
            if (r(tag) as u32) < len {
                let short = std::io::Error::other(format!("short write: {} of {len}", r(tag)));
                return Some(PersistOutcome::FsyncFailed(crate::Error::io(
                    op, &self.path, short,
                )));
            }
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
