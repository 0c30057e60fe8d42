//! `SegmentWriter`: appends records into a preallocated, prefaulted, shared mapping of one
//! segment file. Creating a segment makes system calls; appending and sealing make none and
//! allocate nothing.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::format::{
    record_crc, Framing, Seal, SegmentHeader, TimeRange, ALIGN, HEADER_LEN, REC_CRC_OFFSET,
    REC_LEN_OFFSET, REC_TIME_OFFSET,
};
use super::mmap::SharedMap;
use super::names::segment_path;
use crate::constants::{MAX_RECORD_LEN, MAX_SEGMENT_SIZE, MAX_SEQ, MIN_SEGMENT_SIZE};
use crate::error::{Error, Result};
use crate::io::fault::FaultPlan;
use crate::io::{OpCode, Target};

/// Why an append did not happen. Nothing was written in any of these cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The record does not fit in what is left of the segment (seal space reserved).
    Full,
    /// The payload is longer than [`MAX_RECORD_LEN`].
    TooLarge,
    /// The segment is sealed.
    Sealed,
    /// The sequence space is exhausted.
    SeqExhausted,
}

/// Where a segment's bytes live while the writer fills them.
enum Backing {
    /// Direct mode: the segment file itself, mapped shared.
    Mapped {
        file: File,
        /// Kept for its `Drop` (munmap); the writer uses `PreparedSegment::base`.
        map: SharedMap,
    },
    /// Staged mode: a staging buffer in tmpfs, whose owner (the staging ring, one layer up)
    /// `keep` keeps mapped; the maintainer owns the segment file on disk.
    Staged { keep: BufferOwner, slot: usize },
}

/// What keeps a staging buffer mapped while a segment is written in it (the staging ring,
/// erased so that a segment knows nothing of the ring above it).
pub(crate) type BufferOwner = Arc<dyn std::any::Any + Send + Sync>;

/// A segment ready to become the active one: its memory mapped and prefaulted, no header yet.
/// Activating it ([`SegmentWriter::activate`]) writes the header into memory, so a prepared
/// segment can become the active one without a system call.
pub struct PreparedSegment {
    path: PathBuf,
    index: u64,
    /// Start of the writable memory: the file mapping (Direct) or the staging buffer.
    base: NonNull<u8>,
    /// Bytes of memory at `base`: the segment's capacity.
    len: usize,
    backing: Backing,
}

// SAFETY: `base` points into memory owned by `backing` (a mapping, or a ring that outlives
// every holder of a slot), which moves with the value; nothing else writes it meanwhile.
unsafe impl Send for PreparedSegment {}

impl PreparedSegment {
    /// Creates `<dir>/<index>.wal` with `O_EXCL`, preallocates `capacity` bytes with
    /// `fallocate` (a full disk fails here, never as a SIGBUS later), fsyncs the file and the
    /// directory, then maps and prefaults it (Direct mode). On error the file is removed.
    pub fn create(dir: &Path, index: u64, capacity: u64) -> Result<Self> {
        Self::create_with_faults(dir, index, capacity, 0, None)
    }

    /// [`Self::create`], the file `extra` bytes longer than the mapped capacity (a recorder's
    /// Direct segments carry the watermark page there, [`super::watermark`]), with fault
    /// rules on [`Target::Prepare`] applied (tests).
    pub(crate) fn create_with_faults(
        dir: &Path,
        index: u64,
        capacity: u64,
        extra: u64,
        faults: Option<&FaultPlan>,
    ) -> Result<Self> {
        let path = segment_path(dir, index);
        let file = create_segment_file_of(dir, index, capacity, extra, (false, true), faults)?;
        let capacity = clamp_capacity(capacity)?;
        // SAFETY: the file was just created and fallocated to `capacity`; only persist (after
        // the writer is done with the mapping) and recovery truncate it.
        match unsafe { SharedMap::map(&file, capacity as usize, &path) } {
            Ok(map) => Ok(PreparedSegment {
                path,
                index,
                base: NonNull::new(map.as_ptr()).expect("a mapping is never null"),
                len: map.len(),
                backing: Backing::Mapped { file, map },
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// A prepared segment staged in buffer `slot`, `len` zeroed bytes at `base`; the segment
    /// file `<index>.wal` at `path` is the maintainer's.
    ///
    /// # Safety
    /// `base..base + len` must stay mapped, writable and written by no one else while `keep`
    /// is alive (the staging ring and the slot's token give both).
    pub(crate) unsafe fn staged(
        path: PathBuf,
        index: u64,
        (base, len): (NonNull<u8>, usize),
        keep: BufferOwner,
        slot: usize,
    ) -> Self {
        PreparedSegment {
            path,
            index,
            base,
            len,
            backing: Backing::Staged { keep, slot },
        }
    }

    /// The segment's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// (address, length) of the memory the writer fills.
    pub fn mapping(&self) -> (usize, usize) {
        (self.base.as_ptr() as usize, self.len)
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staging slot, in Staged mode.
    pub(crate) fn staging_slot(&self) -> Option<usize> {
        match &self.backing {
            Backing::Staged { slot, .. } => Some(*slot),
            Backing::Mapped { .. } => None,
        }
    }
}

/// Creates `<dir>/<index>.wal` with `O_EXCL` (and `O_DIRECT` when `direct`), preallocates
/// `capacity` bytes, and with `sync` fsyncs the file and the directory (without, the caller
/// does, as the maintainer does through io_uring). On error the file is removed.
pub fn create_segment_file(
    dir: &Path,
    index: u64,
    capacity: u64,
    direct: bool,
    sync: bool,
    faults: Option<&FaultPlan>,
) -> Result<File> {
    create_segment_file_of(dir, index, capacity, 0, (direct, sync), faults)
}

/// As [`create_segment_file`], preallocating `extra` bytes past the capacity (the Staged
/// drain's watermark page, [`super::watermark`]).
pub(crate) fn create_segment_file_of(
    dir: &Path,
    index: u64,
    capacity: u64,
    extra: u64,
    (direct, sync): (bool, bool),
    faults: Option<&FaultPlan>,
) -> Result<File> {
    let capacity = clamp_capacity(capacity)? + extra;
    let path = segment_path(dir, index);
    let flags = libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(flags)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let done = preallocate(&file, &path, capacity, sync, faults).and_then(|()| match sync {
        true => injected(faults, OpCode::Fsync, "fsync dir", dir)
            .and_then(|()| crate::io::sync_dir(dir)),
        false => Ok(()),
    });
    match done {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// The error a fault rule injects into this step of a prepare (tests only).
fn injected(faults: Option<&FaultPlan>, code: OpCode, op: &'static str, path: &Path) -> Result<()> {
    injected_at(faults, code, Target::Prepare, op, path)
}

/// The error a fault rule on `target` injects into this step (tests only).
pub(crate) fn injected_at(
    faults: Option<&FaultPlan>,
    code: OpCode,
    target: Target,
    op: &'static str,
    path: &Path,
) -> Result<()> {
    match faults.and_then(|f| f.inject(code, target)) {
        Some(errno) => Err(Error::io(
            op,
            path,
            std::io::Error::from_raw_os_error(errno),
        )),
        None => Ok(()),
    }
}

fn preallocate(
    file: &File,
    path: &Path,
    capacity: u64,
    sync: bool,
    faults: Option<&FaultPlan>,
) -> Result<()> {
    injected(faults, OpCode::Write, "fallocate", path)?;
    // SAFETY: plain syscall on an fd we own; mode 0 allocates and extends the file size.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, capacity as libc::off_t) };
    if rc != 0 {
        return Err(Error::io(
            "fallocate",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    if !sync {
        return Ok(());
    }
    injected(faults, OpCode::Fsync, "fsync", path)?;
    file.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// A sealed segment on its way to the maintainer. Direct: still mapped and open; the
/// maintainer unmaps it, truncates it to `used`, fdatasyncs and closes it. Staged: the
/// maintainer drains the rest of the buffer to its file first, then does the same and
/// recycles the buffer.
pub struct SealedSegment {
    /// Segment index.
    pub(crate) index: u64,
    /// Path of the `.wal`.
    pub(crate) path: PathBuf,
    /// The open file (Direct mode; in Staged mode the maintainer holds it).
    pub(crate) file: Option<File>,
    /// The writer's mapping (dropped = unmapped by the maintainer, off the writer thread).
    pub(crate) map: Option<SharedMap>,
    /// The staging buffer (Staged mode): what keeps it mapped, and its slot.
    pub(crate) staged: Option<(BufferOwner, usize)>,
    /// Used length: header, records and seal.
    pub(crate) used: u64,
    /// Sequence number of the last record (first_seq - 1 when empty).
    pub(crate) last_seq: u64,
    /// When the writer sealed it (for the close-latency histogram; nothing without
    /// `fs1-metrics`).
    pub(crate) sealed_at: crate::telemetry::Stamp,
}

impl SealedSegment {
    /// Segment index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Path of the `.wal`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Used length: header, records and seal.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The open file (Direct mode; `None` in Staged mode, where the maintainer holds it).
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Sequence number of the last record (first_seq - 1 when empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// Where a segment continues the log: the sequence number its first record gets, the
/// checksum that record chains from, and the log's greatest record time so far (0 for none;
/// version 2 segments carry it on, see [`super::format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPoint {
    /// Sequence number of the next record.
    pub next_seq: u64,
    /// Checksum of the last record (0 before the first record of a log).
    pub crc: u32,
    /// The greatest record time so far.
    pub max_time: u64,
}

impl ChainPoint {
    /// The start of a new log: sequence number 1, checksum 0, no time yet.
    pub const START: ChainPoint = ChainPoint {
        next_seq: 1,
        crc: 0,
        max_time: 0,
    };
}

/// Appends records to one segment. See the module docs.
pub struct SegmentWriter {
    seg: PreparedSegment,
    header: SegmentHeader,
    /// Frame header length of `header.framing`, kept at hand for the hot path.
    frame_len: usize,
    /// Offset of the next record; a multiple of 8, at most `limit`.
    write_off: usize,
    /// Records must end at or before this offset: `capacity - seal_len - ALIGN` (room for the
    /// seal is always kept, and a sealed segment never fills its file, so that its truncated
    /// size always differs from its preallocated one: recovery reads "truncated" as
    /// "persisted"), or 0 once sealed, so one comparison on the hot path covers both.
    limit: usize,
    /// Sequence number the next record gets.
    next_seq: u64,
    /// Checksum of the last record written (the header's `prev_crc` before the first).
    last_crc: u32,
    /// Records written so far.
    count: u64,
    /// Version 2: times of the first and last record, and the log's greatest time so far.
    times: TimeRange,
    /// Set once the seal is written.
    sealed: Option<Seal>,
}

impl SegmentWriter {
    /// Creates a version 1 segment file (records without time) and makes it the active
    /// segment (see [`PreparedSegment::create`]); [`Self::create_framed`] chooses.
    pub fn create(
        dir: &Path,
        index: u64,
        capacity: u64,
        first_seq: u64,
        prev_crc: u32,
    ) -> Result<Self> {
        let at = ChainPoint {
            next_seq: first_seq,
            crc: prev_crc,
            max_time: 0,
        };
        Self::create_framed(dir, index, capacity, Framing::Plain, at)
    }

    /// Creates a segment file of `framing` continuing the log at `at`, and makes it the
    /// active segment.
    pub fn create_framed(
        dir: &Path,
        index: u64,
        capacity: u64,
        framing: Framing,
        at: ChainPoint,
    ) -> Result<Self> {
        let seg = PreparedSegment::create(dir, index, capacity)?;
        Ok(Self::activate(seg, framing, at))
    }

    /// [`Self::create_framed`] with the watermark page past the capacity (a recorder's
    /// Direct segments).
    pub(crate) fn create_marked(
        dir: &Path,
        index: u64,
        capacity: u64,
        (framing, at): (Framing, ChainPoint),
        faults: Option<&FaultPlan>,
    ) -> Result<Self> {
        let extra = super::watermark::WATERMARK_LEN;
        let seg = PreparedSegment::create_with_faults(dir, index, capacity, extra, faults)?;
        Ok(Self::activate(seg, framing, at))
    }

    /// Writes the header of a prepared segment; no system call.
    pub fn activate(seg: PreparedSegment, framing: Framing, at: ChainPoint) -> Self {
        let ChainPoint {
            next_seq: first_seq,
            crc: prev_crc,
            max_time,
        } = at;
        debug_assert!((1..=MAX_SEQ).contains(&first_seq));
        let capacity = seg.len;
        let header = SegmentHeader {
            index: seg.index,
            first_seq,
            prev_crc,
            capacity: capacity as u64,
            framing,
            prev_max_time: if framing.timed() { max_time } else { 0 },
        };
        let bytes = header.encode();
        // SAFETY: the mapping is at least MIN_SEGMENT_SIZE > HEADER_LEN bytes and this writer
        // owns it exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.base.as_ptr(), HEADER_LEN);
        }
        SegmentWriter {
            seg,
            header,
            frame_len: framing.record_header_len(),
            write_off: HEADER_LEN,
            // format::Framing::records_per_segment assumes this
            limit: capacity - framing.seal_len() - ALIGN,
            next_seq: first_seq,
            last_crc: prev_crc,
            count: 0,
            times: TimeRange {
                first: 0,
                last: 0,
                max: header.prev_max_time,
            },
            sealed: None,
        }
    }

    /// Appends `payload` as one record and returns its sequence number. A version 2 segment
    /// stamps it with CLOCK_REALTIME (the recorder uses its own clock, [`Self::append_at`]).
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, AppendError> {
        self.append_with(payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// Appends `payload` with the time `time_ns` (nanoseconds since the Unix epoch; ignored
    /// by a version 1 segment).
    #[inline]
    pub fn append_at(&mut self, time_ns: u64, payload: &[u8]) -> Result<u64, AppendError> {
        self.append_with_at(time_ns, payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// Reserves `len` bytes in the mapping, lets `fill` write the payload in place (zero
    /// copy), then commits the record (stamped as [`Self::append`] does).
    #[inline]
    pub fn append_with<F: FnOnce(&mut [u8])>(
        &mut self,
        len: usize,
        fill: F,
    ) -> Result<u64, AppendError> {
        let time = match self.header.framing {
            Framing::Timed => crate::clock::realtime_ns(),
            Framing::Plain => 0,
        };
        self.append_with_at(time, len, fill)
    }

    /// [`Self::append_with`] with the record's time given. The record becomes visible only
    /// after `fill` returns: its sequence field is stored last, with release ordering.
    #[inline]
    pub fn append_with_at<F: FnOnce(&mut [u8])>(
        &mut self,
        time_ns: u64,
        len: usize,
        fill: F,
    ) -> Result<u64, AppendError> {
        let (rec, size) = self.reserve(len)?;
        let seq = self.next_seq;
        // SAFETY: `reserve` checked that the frame header and `len` payload bytes lie wholly
        // inside the mapping (before the seal's room); only this writer writes there.
        let payload = unsafe { std::slice::from_raw_parts_mut(rec.add(self.frame_len), len) };
        fill(payload);
        let timed = self.header.framing.timed();
        let crc = record_crc(self.last_crc, seq, timed.then_some(time_ns), payload);
        // SAFETY: rec is 8-aligned (mapping is page-aligned, write_off a multiple of 8) and the
        // frame header is in bounds; the seq field is an aligned u64 we may treat as an
        // atomic because nothing else accesses it through a non-atomic reference.
        unsafe {
            rec.add(REC_LEN_OFFSET)
                .cast::<[u8; 4]>()
                .write((len as u32).to_le_bytes());
            rec.add(REC_CRC_OFFSET)
                .cast::<[u8; 4]>()
                .write(crc.to_le_bytes());
            if timed {
                rec.add(REC_TIME_OFFSET)
                    .cast::<[u8; 8]>()
                    .write(time_ns.to_le_bytes());
            }
            (*rec.cast::<AtomicU64>()).store(seq.to_le(), Ordering::Release);
        }
        if timed {
            if self.count == 0 {
                self.times.first = time_ns;
            }
            self.times.last = time_ns;
            self.times.max = self.times.max.max(time_ns);
        }
        self.write_off += size;
        self.next_seq = seq + 1;
        self.last_crc = crc;
        self.count += 1;
        Ok(seq)
    }

    /// Checks that a record of `len` payload bytes may be written next and returns where
    /// its frame starts and its padded size. The range is zero (a fresh fallocated file, or
    /// zeroed by [`Self::clear_claim`]) and uncommitted, so readers ignore it.
    #[inline]
    fn reserve(&self, len: usize) -> Result<(*mut u8, usize), AppendError> {
        if len > MAX_RECORD_LEN {
            return Err(AppendError::TooLarge);
        }
        if self.next_seq > MAX_SEQ {
            return Err(AppendError::SeqExhausted);
        }
        let size = self.frame_len + ((len + ALIGN - 1) & !(ALIGN - 1));
        if self.write_off + size > self.limit {
            return Err(if self.sealed.is_some() {
                AppendError::Sealed
            } else {
                AppendError::Full
            });
        }
        // SAFETY: write_off + size <= limit <= map.len() - seal_len was checked above, so the
        // pointer stays inside the mapping.
        Ok((unsafe { self.seg.base.as_ptr().add(self.write_off) }, size))
    }

    /// The payload bytes of the next record, for a caller that fills them before a later
    /// [`Self::append_with_at`] with the same `len` and a fill that leaves them as they are
    /// (a claim: zero copy across a call boundary, as from C). Nothing is committed.
    #[inline]
    pub fn claim(&mut self, len: usize) -> Result<&mut [u8], AppendError> {
        let (rec, _) = self.reserve(len)?;
        // SAFETY: as in append_with_at: in bounds, written only by this writer, and the
        // returned borrow of `self` ends before any other append.
        Ok(unsafe { std::slice::from_raw_parts_mut(rec.add(self.frame_len), len) })
    }

    /// Zeroes the payload bytes of an abandoned claim of `len` bytes: a shorter record
    /// written next must find zero, never stale bytes, where the record after it starts
    /// (recovery and tailers read a sequence number there).
    pub fn clear_claim(&mut self, len: usize) {
        if let Ok(payload) = self.claim(len) {
            payload.fill(0);
        }
    }

    /// Writes the seal after the last record; no system call. Appends fail afterwards.
    /// Sealing twice returns the same seal.
    pub fn seal(&mut self) -> Seal {
        if let Some(seal) = self.sealed {
            return seal;
        }
        let framing = self.header.framing;
        let seal_len = framing.seal_len();
        let seal = Seal {
            count: self.count,
            end: (self.write_off + seal_len) as u64,
            last_crc: self.last_crc,
            times: framing.timed().then_some(self.times),
        };
        let bytes = seal.encode();
        // The seal's body first, its marker (where a reader looks for the next sequence
        // number) last, with release ordering: a tailer that acquires the marker sees the
        // whole seal, as with a record.
        // SAFETY: append always leaves seal_len bytes free after write_off, which is 8-aligned
        // (records are padded to ALIGN), so the marker's 8 bytes are an aligned AtomicU64.
        unsafe {
            let at = self.seg.base.as_ptr().add(self.write_off);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(8), at.add(8), seal_len - 8);
            let marker = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            (*at.cast::<AtomicU64>()).store(marker.to_le(), Ordering::Release);
        }
        self.sealed = Some(seal);
        self.limit = 0;
        seal
    }

    /// Direct mode: makes every record written so far durable (msync of the written range).
    /// Staged mode: nothing to do here (the maintainer drains the buffer); returns Ok.
    pub fn sync(&self) -> Result<()> {
        let upto = self.used_len() as usize;
        match &self.seg.backing {
            Backing::Mapped { map, .. } => map.sync_prefix(upto, &self.seg.path),
            Backing::Staged { .. } => Ok(()),
        }
    }

    /// Whether this segment is staged in tmpfs.
    pub(crate) fn is_staged(&self) -> bool {
        matches!(self.seg.backing, Backing::Staged { .. })
    }

    /// (address, length) of the mapping, for the maintainer's pretouch.
    pub fn mapping(&self) -> (usize, usize) {
        self.seg.mapping()
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Path of the segment file.
    pub fn path(&self) -> &Path {
        &self.seg.path
    }

    /// Whether a record of `len` payload bytes fits (seal space kept).
    #[inline]
    pub fn fits(&self, len: usize) -> bool {
        self.write_off + self.header.framing.record_size(len) <= self.limit
    }

    /// Largest payload an empty segment of this capacity could hold.
    pub fn max_payload(&self) -> usize {
        self.header.framing.max_payload(self.seg.len as u64)
    }

    /// How this segment frames its records.
    pub fn framing(&self) -> Framing {
        self.header.framing
    }

    /// Where the next segment continues the log.
    pub fn chain(&self) -> ChainPoint {
        ChainPoint {
            next_seq: self.next_seq,
            crc: self.last_crc,
            max_time: self.times.max,
        }
    }

    /// Sequence number the next record would get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checksum of the last record (the chain value the next segment starts from).
    pub fn last_crc(&self) -> u32 {
        self.last_crc
    }

    /// Records written.
    pub fn record_count(&self) -> u64 {
        self.count
    }

    /// Bytes in use: header, records and, once sealed, the seal.
    pub fn used_len(&self) -> u64 {
        let seal = match self.sealed {
            Some(_) => self.header.framing.seal_len(),
            None => 0,
        };
        (self.write_off + seal) as u64
    }

    /// Seals (if not yet sealed) and hands the segment over to the maintainer's persist
    /// step. No system call.
    pub fn into_sealed(mut self) -> SealedSegment {
        self.seal();
        let used = self.used_len();
        let (file, map, staged) = match self.seg.backing {
            Backing::Mapped { file, map } => (Some(file), Some(map), None),
            Backing::Staged { keep, slot } => (None, None, Some((keep, slot))),
        };
        SealedSegment {
            index: self.header.index,
            path: self.seg.path,
            file,
            map,
            staged,
            used,
            last_seq: self.next_seq - 1,
            sealed_at: crate::telemetry::now(),
        }
    }
}

/// Segment size rounded to a page and checked against the limits.
fn clamp_capacity(capacity: u64) -> Result<u64> {
    if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&capacity) {
        return Err(Error::Config(format!(
            "segment size {capacity} outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
        )));
    }
    Ok(capacity.div_ceil(4096) * 4096)
}
