//! Drain (Staged mode): the maintainer owns the segment files on disk and the free staging
//! buffers. It prepares a segment by creating and preallocating its file and giving the
//! writer a zeroed buffer; every `sync_interval` it writes the pages appended since the last
//! drain (whole pages, the partial last one included, rewritten next time) from the buffer
//! to the file, linked with an fdatasync, and then advances `durable_seq`. Writes are
//! buffered by default; with `Config::direct_io` they are `O_DIRECT`, straight from the tmpfs
//! pages to the device.
//!
//! What it must not do: let the device read a byte the writer may still change (the partial
//! last page goes through a bounce copy); write a range of a segment while another write of
//! the same range is in flight (a late, older copy of the last page would land after a newer
//! one), so persist waits for the drain of its segment ([`Drain::busy_with`]); write any of a
//! segment before every earlier segment is durable.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{ud, Ctx};
use super::link::WriterLink;
use crate::constants::PAGE_SIZE;
use crate::error::{Error, Result};
use crate::io::{check, push_chain, Op, Target as IoTarget};
use crate::segment::names::segment_path;
use crate::segment::watermark::{WatermarkPage, WATERMARK_LEN};
use crate::segment::writer::create_segment_file_of;
use crate::segment::PreparedSegment;
use crate::staging::StagingRing;
use crate::telemetry::{self, Hist, Stamp};

/// Job slot reserved for the drain of the active segment.
pub(crate) const DRAIN_SLOT: u32 = u32::MAX - 1;
/// Job slot reserved for the preparation of the next segment.
pub(crate) const PREPARE_SLOT: u32 = u32::MAX - 2;
// (u32::MAX - 3 belongs to the io_uring backend's own NOPs: see `io::uring`.)
const WRITE: u32 = 0;
const SYNC: u32 = 1;
const DIR_SYNC: u32 = 2;
/// The drain's second write: the partial last page, from the bounce page.
const WRITE_LAST: u32 = 3;
/// The drain's third write: the watermark page past the capacity (`segment::watermark`).
const WRITE_MARK: u32 = 4;

/// Bytes of zeros written per step of a prepare: one step in flight at a time, so that a
/// drain's write and fdatasync never queue behind more than this in the device.
const ZERO_STEP: u64 = 1 << 20;

/// A segment file being prepared: zero-filled step by step (optionally), then fdatasynced
/// and its directory fsynced.
struct Preparing {
    index: u64,
    slot: usize,
    file: File,
    /// Offset of the next zero step; `capacity` once the zeros are all written.
    zero_next: u64,
    /// Length of the zero step in flight.
    zero_len: u32,
    /// Results of the last zero step, the fdatasync and the directory fsync.
    results: [Option<i32>; 3],
}

/// A segment file the maintainer prepared, and how much of its buffer is on disk.
struct DiskTarget {
    file: File,
    slot: usize,
    /// Page-aligned offset: the buffer's bytes below it were written (and synced) to disk.
    /// The page at this offset may be partial on disk; the next drain starts here.
    drained: u64,
    /// Last sequence number a drain made durable in this segment (0: none yet).
    drained_seq: u64,
}

/// The drain of the active segment in flight.
struct InFlight {
    index: u64,
    /// Last sequence number the write covers (complete records only).
    seq: u64,
    /// `drained` once it succeeds: the page holding the writer's position.
    next_drained: u64,
    /// Results of the write of the whole pages, the write of the last page, the write of
    /// the watermark page, the fdatasync.
    write: Option<i32>,
    write_last: Option<i32>,
    write_mark: Option<i32>,
    sync: Option<i32>,
    /// Lengths of the two writes (0: none).
    len: u32,
    len_last: u32,
    started: Stamp,
}

/// What persist needs of a staged segment.
pub(crate) struct StagedTail {
    pub file: File,
    pub ring: Arc<StagingRing>,
    pub slot: usize,
    /// First byte not yet written to the file (page-aligned).
    pub from: u64,
}

/// See the module docs.
pub(crate) struct Drain {
    ring: Arc<StagingRing>,
    dir: PathBuf,
    /// Fault rules for the creation of segment files (tests).
    faults: Option<crate::io::fault::FaultPlan>,
    capacity: u64,
    /// Whether segment files are opened with `O_DIRECT` (checked at the first prepare).
    direct: bool,
    /// Zeroed slots, ready for the next segment.
    free: VecDeque<usize>,
    targets: BTreeMap<u64, DiskTarget>,
    in_flight: Option<InFlight>,
    next_at: Instant,
    /// When the last drain started (the continuous drain keeps `drain_gap` after it).
    last_start: Instant,
    /// Write zeros over each new segment file before the writer gets it (see Config).
    zero_fill: bool,
    preparing: Option<Preparing>,
    /// Recycled buffers being zeroed: (slot, next offset, end).
    zeroing: VecDeque<(usize, u64, u64)>,
    /// The partial last page of a drain, copied: only complete records and zeros.
    bounce: crate::io::AlignedBuf,
    /// The watermark page the drain in flight writes (one drain at a time).
    watermark: WatermarkPage,
}

impl Drain {
    /// A drain over `ring` (all slots free) for segments of `dir`.
    pub fn new(
        ring: Arc<StagingRing>,
        dir: PathBuf,
        direct_io: bool,
        zero_fill: bool,
        faults: Option<crate::io::fault::FaultPlan>,
    ) -> Self {
        Drain {
            faults,
            free: (0..ring.len()).collect(),
            capacity: ring.capacity() as u64,
            ring,
            dir,
            direct: direct_io,
            targets: BTreeMap::new(),
            in_flight: None,
            next_at: Instant::now(),
            last_start: Instant::now(),
            zero_fill,
            preparing: None,
            zeroing: VecDeque::new(),
            bounce: crate::io::AlignedBuf::new(PAGE_SIZE as usize),
            watermark: WatermarkPage::new(),
        }
    }

    /// Whether a free buffer is there for the next segment.
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Creates and preallocates `<index>.wal` (fsynced with its directory, on this thread)
    /// and gives it a zeroed buffer: the first segment, at open.
    pub fn prepare(&mut self, index: u64) -> Result<PreparedSegment> {
        let slot = self.take_free()?;
        match self.create_file(index, true) {
            Ok(file) => Ok(self.ready(index, slot, file)),
            Err(e) => {
                self.free.push_front(slot);
                Err(e)
            }
        }
    }

    fn take_free(&mut self) -> Result<usize> {
        self.free.pop_front().ok_or_else(|| Error::Timeout {
            path: self.dir.clone(),
            what: "a free staging buffer",
        })
    }

    /// `O_DIRECT` is tried first; a file system that refuses it (EINVAL) gets buffered writes
    /// from then on.
    fn create_file(&mut self, index: u64, sync: bool) -> Result<File> {
        let (dir, cap) = (&self.dir, self.capacity);
        let faults = self.faults.as_ref();
        let create =
            |direct| create_segment_file_of(dir, index, cap, WATERMARK_LEN, (direct, sync), faults);
        match create(self.direct) {
            Err(Error::Io { source, .. })
                if self.direct && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                log::info!(
                    "{}: O_DIRECT refused; drains use buffered writes",
                    dir.display()
                );
                self.direct = false;
                create(false)
            }
            other => other,
        }
    }

    /// Registers a prepared file and hands out its buffer.
    fn ready(&mut self, index: u64, slot: usize, file: File) -> PreparedSegment {
        self.targets.insert(
            index,
            DiskTarget {
                file,
                slot,
                drained: 0,
                drained_seq: 0,
            },
        );
        let path = segment_path(&self.dir, index);
        let memory = (self.ring.base(slot), self.ring.capacity());
        // SAFETY: the ring maps every buffer for its whole life and the clone keeps it alive;
        // this drain holds `slot`'s token (it just zeroed the buffer), so the writer that
        // gets the segment is the buffer's only user until it hands the segment back.
        unsafe { PreparedSegment::staged(path, index, memory, self.ring.clone(), slot) }
    }

    /// Length of a segment file this drain creates: the capacity and the watermark page.
    fn file_len(&self) -> u64 {
        self.capacity + WATERMARK_LEN
    }

    /// True while a prepare is in flight.
    pub fn preparing(&self) -> bool {
        self.preparing.is_some()
    }

    /// Starts preparing `<index>.wal` without blocking the loop: create and fallocate here,
    /// then write zeros over it in `ZERO_STEP` steps through the ring (the zeros come from
    /// the free buffer itself: zeroed, page-aligned, as long as the file), then one chain
    /// `fdatasync → fsync(dir)`. Zero-filled files have written extents, so a drain's
    /// fdatasync on a journaled ext4 needs no journal commit to convert them
    /// (`Config::zero_fill`).
    pub(crate) fn start_prepare(&mut self, index: u64, cx: &mut Ctx<'_>) -> Result<()> {
        let slot = self.take_free()?;
        let file = match self.create_file(index, false) {
            Ok(f) => f,
            Err(e) => {
                self.free.push_front(slot);
                return Err(e);
            }
        };
        self.preparing = Some(Preparing {
            index,
            slot,
            file,
            zero_next: if self.zero_fill { 0 } else { self.file_len() },
            zero_len: 0,
            results: [None; 3],
        });
        self.prepare_step(cx).map_err(|e| self.abandon_prepare(e))
    }

    /// Pushes the next step of the prepare in flight: a zero write, or the final syncs.
    fn prepare_step(&mut self, cx: &mut Ctx<'_>) -> Result<()> {
        let p = self.preparing.as_mut().expect("a prepare in flight");
        let fd = p.file.as_raw_fd();
        p.results = [None; 3];
        let file_len = self.capacity + WATERMARK_LEN;
        let pushed = if p.zero_next < file_len {
            // The zeros come from the free slot, `capacity` bytes long.
            let len = ZERO_STEP.min(file_len - p.zero_next).min(self.capacity) as usize;
            // SAFETY: a range of the free slot's mapping, alive as long as the ring and
            // written by nobody until the prepared segment is handed out, after the chain.
            let zeros = unsafe { std::slice::from_raw_parts(self.ring.base(p.slot).as_ptr(), len) };
            p.zero_len = len as u32;
            let op = Op::write(
                IoTarget::Prepare,
                fd,
                zeros,
                p.zero_next,
                ud(PREPARE_SLOT, WRITE),
            );
            // SAFETY: as above; the file stays open in `preparing` until the completion.
            unsafe { push_chain(cx.be, &[op]) }
        } else {
            p.results[WRITE as usize] = Some(0);
            let ops = [
                Op::fdatasync(IoTarget::Prepare, fd, ud(PREPARE_SLOT, SYNC)),
                Op::fsync(IoTarget::Prepare, cx.dirfd, ud(PREPARE_SLOT, DIR_SYNC)),
            ];
            // SAFETY: no buffers or paths; the fds stay open until the completions.
            unsafe { push_chain(cx.be, &ops) }
        };
        pushed.map_err(|e| Error::io("submit", segment_path(&self.dir, p.index), e))
    }

    /// Gives up the prepare in flight (nothing of it in flight any more): removes the file,
    /// frees the buffer, returns `e`.
    fn abandon_prepare(&mut self, e: Error) -> Error {
        if let Some(p) = self.preparing.take() {
            drop(p.file);
            let _ = std::fs::remove_file(segment_path(&self.dir, p.index));
            self.free.push_front(p.slot);
        }
        e
    }

    /// A completion of the prepare in flight: pushes the next step, or, once the syncs are
    /// in, returns the prepared segment (or why not: the file is removed and the buffer
    /// freed, to be tried again later).
    pub fn on_prepare_complete(
        &mut self,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
    ) -> Option<(u64, Result<PreparedSegment>)> {
        let p = self.preparing.as_mut().expect("a prepare was in flight");
        let (index, path) = (p.index, segment_path(&self.dir, p.index));
        p.results[tag as usize] = Some(result);
        if tag == WRITE && p.results[SYNC as usize].is_none() {
            let wrote = check(result, "write zeros", &path).and_then(|n| {
                if n < p.zero_len {
                    return Err(Error::io(
                        "write zeros",
                        &path,
                        std::io::Error::other("short"),
                    ));
                }
                p.zero_next += u64::from(n);
                Ok(())
            });
            let stepped = wrote.and_then(|()| self.prepare_step(cx));
            return match stepped {
                Ok(()) => None,
                Err(e) => Some((index, Err(self.abandon_prepare(e)))),
            };
        }
        let [Some(_), Some(s), Some(d)] = p.results else {
            return None;
        };
        let synced = check(s, "fdatasync", &path).and_then(|_| check(d, "fsync dir", &self.dir));
        match synced {
            Ok(_) => {
                let p = self.preparing.take().expect("checked above");
                Some((index, Ok(self.ready(index, p.slot, p.file))))
            }
            Err(e) => Some((index, Err(self.abandon_prepare(e)))),
        }
    }

    /// True while a drain is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True while a drain of segment `index` is in flight.
    pub fn busy_with(&self, index: u64) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.index == index)
    }

    /// When the next drain is due (the loop sleeps no longer than this).
    pub(crate) fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Starts a drain of the active segment when the writer appended since the last one
    /// and no drain is in flight (continuous: group commit), or, timed, when the interval
    /// has passed too. True if it started one.
    pub fn plan(
        &mut self,
        cx: &mut Ctx<'_>,
        link: &WriterLink,
        interval: Duration,
    ) -> Result<bool> {
        let now = Instant::now();
        let sync_waits = link.sync_wanted.load(Ordering::Acquire) > link.durable();
        let continuous_due =
            cx.config.continuous_drain && now >= self.last_start + cx.config.drain_gap;
        let due = continuous_due || now >= self.next_at || sync_waits;
        if self.in_flight.is_some() || !due {
            return Ok(false);
        }
        self.next_at = now + interval;
        let Some((index, off, seq)) = link.appended_snapshot() else {
            return Ok(false);
        };
        let Some(t) = self.targets.get(&index) else {
            return Ok(false);
        };
        if seq <= t.drained_seq.max(link.durable()) {
            return Ok(false); // nothing new since the last drain
        }
        // Never a byte of a segment on disk before every earlier one is durable: a power cut
        // must not leave segment N unwritten (a zero header) before a written N + 1, which
        // recovery cannot tell from a lost segment. Persist makes N durable at its first
        // fdatasync, so this waits about one fdatasync after a rollover.
        if index != link.persisted_end.load(Ordering::Acquire) {
            return Ok(false);
        }
        // Only bytes that can no longer change reach the device: the whole pages below the
        // writer's position straight from the buffer, and the partial last page copied (on
        // this thread, after the acquire above) into the bounce page with zeros after the
        // last complete record. An O_DIRECT write's DMA reads memory whenever it likes; from
        // the live page it could take a record's committed sequence number with a payload
        // the writer had not finished, and a power cut would leave that on disk.
        let mut whole_end = (off / PAGE_SIZE * PAGE_SIZE).min(self.capacity);
        let mut last_len = (off - whole_end) as usize;
        let appended_seq = seq;
        let mut seq = seq;
        if whole_end > t.drained + cx.config.max_io_bytes {
            // More than one system call writes: this drain writes a step of whole pages and
            // claims nothing; the next ones go on from there.
            whole_end = t.drained + cx.config.max_io_bytes;
            last_len = 0;
            seq = t.drained_seq;
        }
        let base = self.ring.base(t.slot).as_ptr();
        let fd = t.file.as_raw_fd();
        let mut ops = Vec::with_capacity(3);
        let (mut len, mut len_last) = (0u32, 0u32);
        if whole_end > t.drained {
            len = (whole_end - t.drained) as u32;
            // SAFETY: [drained, whole_end) lies inside the slot's mapping, which the ring
            // keeps alive as long as this drain; the writer never changes bytes below `off`.
            let buf =
                unsafe { std::slice::from_raw_parts(base.add(t.drained as usize), len as usize) };
            ops.push(Op::write(
                IoTarget::Segment,
                fd,
                buf,
                t.drained,
                ud(DRAIN_SLOT, WRITE),
            ));
        }
        if last_len > 0 {
            let page = self.bounce.as_mut_slice();
            // SAFETY: [whole_end, off) lies inside the mapping and holds complete records.
            let done =
                unsafe { std::slice::from_raw_parts(base.add(whole_end as usize), last_len) };
            page[..last_len].copy_from_slice(done);
            page[last_len..].fill(0);
            len_last = PAGE_SIZE as u32;
            let op = Op::write(
                IoTarget::Segment,
                fd,
                self.bounce.as_slice(),
                whole_end,
                ud(DRAIN_SLOT, WRITE_LAST),
            );
            ops.push(op);
        }
        // What the drains before this one made durable, past the records, made durable by
        // this drain's own fdatasync: recovery's proof of what was acknowledged.
        let durable = link.durable();
        assert!(
            durable <= appended_seq,
            "durable_seq {durable} ahead of the writer's {appended_seq}"
        );
        let mark = self.watermark.stamp(index, durable);
        ops.push(Op::write(
            IoTarget::Segment,
            fd,
            mark,
            self.capacity,
            ud(DRAIN_SLOT, WRITE_MARK),
        ));
        ops.push(Op::fdatasync(IoTarget::Segment, fd, ud(DRAIN_SLOT, SYNC)));
        // SAFETY: the staging range, the bounce page and the watermark page outlive the
        // operations (one drain in flight at a time; the pages are touched again only after
        // its completions), and
        // the target's file stays open until the completions: persist waits for them through
        // `busy_with`.
        unsafe { push_chain(cx.be, &ops) }
            .map_err(|e| Error::io("submit", segment_path(&self.dir, index), e))?;
        self.last_start = now;
        self.in_flight = Some(InFlight {
            index,
            seq,
            next_drained: whole_end,
            write: (len == 0).then_some(0),
            write_last: (len_last == 0).then_some(0),
            write_mark: None,
            sync: None,
            len,
            len_last,
            started: telemetry::now(),
        });
        Ok(true)
    }

    /// A completion of the drain in flight. An error of the write or the fdatasync is an
    /// fsync failure (contract 5: the caller latches the log failed); a short write cancels
    /// the fdatasync and the range is written again next time.
    pub(crate) fn on_complete(
        &mut self,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
        link: &WriterLink,
    ) -> Result<()> {
        let f = self.in_flight.as_mut().expect("a drain was in flight");
        match tag {
            WRITE => f.write = Some(result),
            WRITE_LAST => f.write_last = Some(result),
            WRITE_MARK => f.write_mark = Some(result),
            _ => f.sync = Some(result),
        }
        let (Some(w), Some(wl), Some(wm), Some(s)) = (f.write, f.write_last, f.write_mark, f.sync)
        else {
            return Ok(());
        };
        let f = self.in_flight.take().expect("checked above");
        let path = segment_path(&self.dir, f.index);
        for (got, want) in [(w, f.len), (wl, f.len_last), (wm, WATERMARK_LEN as u32)] {
            if got == -libc::ECANCELED {
                return Ok(()); // after a short write earlier in the chain: drained again
            }
            check(got, "write (drain)", &path)?;
            if (got as u32) < want {
                log::warn!(
                    "{}: short drain write ({got} of {want}); retried",
                    path.display()
                );
                return Ok(());
            }
        }
        check(s, "fdatasync", &path)?;
        cx.hists.record_since(Hist::Fdatasync, f.started);
        if let Some(t) = self.targets.get_mut(&f.index) {
            t.drained = f.next_drained;
            t.drained_seq = f.seq;
        }
        // A prefix claim: every earlier segment is durable (checked when it started).
        assert_eq!(
            f.index,
            link.persisted_end.load(Ordering::Acquire),
            "a drain made a segment durable before an earlier one"
        );
        link.advance_durable(f.seq);
        Ok(())
    }

    /// Hands the file of a sealed segment to persist, with what is left to write.
    pub(crate) fn take_for_persist(&mut self, index: u64) -> Option<StagedTail> {
        let t = self.targets.remove(&index)?;
        Some(StagedTail {
            file: t.file,
            ring: self.ring.clone(),
            slot: t.slot,
            from: t.drained,
        })
    }

    /// A staged segment is persisted: its buffer is zeroed (in steps, [`Self::zero_step`])
    /// and then free again.
    pub fn recycle(&mut self, slot: usize, used: u64) {
        let end = (used.div_ceil(PAGE_SIZE) * PAGE_SIZE).min(self.capacity);
        self.zeroing.push_back((slot, 0, end));
    }

    /// Zeroes at most `ZERO_STEP` bytes of a recycled buffer; frees it once done. A whole
    /// 64 MiB memset at once would hold the loop (and the next drain) for milliseconds.
    /// True if it did work.
    pub fn zero_step(&mut self) -> bool {
        let Some((slot, from, end)) = self.zeroing.front_mut() else {
            return false;
        };
        let upto = (*from + ZERO_STEP).min(*end);
        self.ring.zero_range(*slot, *from as usize, upto as usize);
        *from = upto;
        if upto == *end {
            let slot = *slot;
            self.zeroing.pop_front();
            self.free.push_back(slot);
        }
        true
    }
}
