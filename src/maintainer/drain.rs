//! Drain (Staged mode): the maintainer owns the segment files on disk and the free staging
//! buffers. It prepares a segment by creating and preallocating its file and giving the
//! writer a zeroed buffer; every `sync_interval` it writes the pages appended since the last
//! drain (whole pages, the partial last one included, rewritten next time) from the buffer
//! to the file, linked with an fdatasync, and then advances `durable_seq`. With `O_DIRECT`
//! the kernel copies straight from the tmpfs pages to the device, and no second copy of the
//! segment stays in the page cache.
//!
//! What it must not do: write a range of a segment while another write of the same range is
//! in flight (a late, older copy of the last page would land after a newer one), so persist
//! waits for the drain of its segment ([`Drain::busy_with`]).

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
use crate::segment::{create_segment_file, PreparedSegment};
use crate::staging::StagingRing;
use crate::telemetry::{self, Hist, Stamp};

/// Job slot reserved for the drain of the active segment.
pub(crate) const DRAIN_SLOT: u32 = u32::MAX - 1;
const WRITE: u32 = 0;
const SYNC: u32 = 1;

/// A segment file the maintainer prepared, and how much of its buffer is on disk.
struct DiskTarget {
    file: File,
    slot: usize,
    /// Page-aligned offset: the buffer's bytes below it were written (and synced) to disk.
    /// The page at this offset may be partial on disk; the next drain starts here.
    drained: u64,
}

/// The drain of the active segment in flight.
struct InFlight {
    index: u64,
    /// Last sequence number the write covers (complete records only).
    seq: u64,
    /// `drained` once it succeeds: the page holding the writer's position.
    next_drained: u64,
    write: Option<i32>,
    sync: Option<i32>,
    len: u32,
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
    capacity: u64,
    /// Whether segment files are opened with `O_DIRECT` (checked at the first prepare).
    direct: bool,
    /// Zeroed slots, ready for the next segment.
    free: VecDeque<usize>,
    targets: BTreeMap<u64, DiskTarget>,
    in_flight: Option<InFlight>,
    next_at: Instant,
    /// Counters for the report: drains done, bytes written.
    pub drains: u64,
    pub bytes: u64,
}

impl Drain {
    /// A drain over `ring` (all slots free) for segments of `dir`.
    pub fn new(ring: Arc<StagingRing>, dir: PathBuf, direct_io: bool) -> Self {
        Drain {
            free: (0..ring.len()).collect(),
            capacity: ring.capacity() as u64,
            ring,
            dir,
            direct: direct_io,
            targets: BTreeMap::new(),
            in_flight: None,
            next_at: Instant::now(),
            drains: 0,
            bytes: 0,
        }
    }

    /// Whether a free buffer is there for the next segment.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Creates and preallocates `<index>.wal` and gives it a zeroed buffer. `O_DIRECT` is
    /// tried first; a file system that refuses it (EINVAL) gets buffered writes from then on.
    pub fn prepare(&mut self, index: u64) -> Result<PreparedSegment> {
        let Some(slot) = self.free.pop_front() else {
            return Err(Error::Timeout {
                path: self.dir.clone(),
                what: "a free staging buffer",
            });
        };
        let made = match create_segment_file(&self.dir, index, self.capacity, self.direct) {
            Err(Error::Io { source, .. })
                if self.direct && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                log::info!(
                    "{}: O_DIRECT refused; the drain uses buffered writes",
                    self.dir.display()
                );
                self.direct = false;
                create_segment_file(&self.dir, index, self.capacity, false)
            }
            other => other,
        };
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                self.free.push_front(slot);
                return Err(e);
            }
        };
        self.targets.insert(
            index,
            DiskTarget {
                file,
                slot,
                drained: 0,
            },
        );
        let path = segment_path(&self.dir, index);
        Ok(PreparedSegment::staged(
            path,
            index,
            self.ring.clone(),
            slot,
        ))
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
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Starts a drain of the active segment when the interval has passed and the writer
    /// appended since the last one. True if it started one.
    pub fn plan(
        &mut self,
        cx: &mut Ctx<'_>,
        link: &WriterLink,
        interval: Duration,
    ) -> Result<bool> {
        let now = Instant::now();
        if self.in_flight.is_some() || now < self.next_at {
            return Ok(false);
        }
        self.next_at = now + interval;
        let Some((index, off, seq)) = link.appended_snapshot() else {
            return Ok(false);
        };
        if seq <= link.durable() || index != link.persisted_end.load(Ordering::Acquire) {
            return Ok(false); // nothing new, or earlier segments are not persisted yet
        }
        let Some(t) = self.targets.get(&index) else {
            return Ok(false);
        };
        let upto = off.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let upto = upto.min(self.capacity);
        if upto <= t.drained {
            return Ok(false);
        }
        let len = (upto - t.drained) as u32;
        // SAFETY: [drained, upto) lies inside the slot's mapping, which the ring keeps alive
        // for as long as this maintainer holds it.
        let buf = unsafe {
            std::slice::from_raw_parts(
                self.ring.base(t.slot).as_ptr().add(t.drained as usize),
                len as usize,
            )
        };
        let fd = t.file.as_raw_fd();
        let ops = [
            Op::write(IoTarget::Segment, fd, buf, t.drained, ud(DRAIN_SLOT, WRITE)),
            Op::fdatasync(IoTarget::Segment, fd, ud(DRAIN_SLOT, SYNC)),
        ];
        // SAFETY: the buffer is staging memory that outlives the operation (the ring lives
        // as long as this drain, and the target's file stays open until the completion: persist
        // waits for it through `busy_with`). The writer only adds bytes past `off`; the
        // bytes the write may see change only past the records it claims durable.
        unsafe { push_chain(cx.be, &ops) }
            .map_err(|e| Error::io("submit", segment_path(&self.dir, index), e))?;
        self.in_flight = Some(InFlight {
            index,
            seq,
            next_drained: off / PAGE_SIZE * PAGE_SIZE,
            write: None,
            sync: None,
            len,
            started: telemetry::now(),
        });
        Ok(true)
    }

    /// A completion of the drain in flight. An error of the write or the fdatasync is an
    /// fsync failure (contract 5: the caller latches the log failed); a short write cancels
    /// the fdatasync and the range is written again next time.
    pub fn on_complete(
        &mut self,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
        link: &WriterLink,
    ) -> Result<()> {
        let f = self.in_flight.as_mut().expect("a drain was in flight");
        match tag {
            WRITE => f.write = Some(result),
            _ => f.sync = Some(result),
        }
        let (Some(w), Some(s)) = (f.write, f.sync) else {
            return Ok(());
        };
        let f = self.in_flight.take().expect("checked above");
        let path = segment_path(&self.dir, f.index);
        check(w, "write (drain)", &path)?;
        if (w as u32) < f.len {
            log::warn!(
                "{}: short drain write ({w} of {}); retried",
                path.display(),
                f.len
            );
            return Ok(());
        }
        check(s, "fdatasync", &path)?;
        cx.hists.record_since(Hist::Fdatasync, f.started);
        if let Some(t) = self.targets.get_mut(&f.index) {
            t.drained = f.next_drained;
        }
        self.drains += 1;
        self.bytes += u64::from(f.len);
        link.advance_durable(f.seq);
        Ok(())
    }

    /// Hands the file of a sealed segment to persist, with what is left to write.
    pub fn take_for_persist(&mut self, index: u64) -> Option<StagedTail> {
        let t = self.targets.remove(&index)?;
        Some(StagedTail {
            file: t.file,
            ring: self.ring.clone(),
            slot: t.slot,
            from: t.drained,
        })
    }

    /// A staged segment is persisted: zero the used part of its buffer and make it free.
    pub fn recycle(&mut self, slot: usize, used: u64) {
        self.ring
            .zero(slot, used.div_ceil(PAGE_SIZE) as usize * PAGE_SIZE as usize);
        self.free.push_back(slot);
    }
}
