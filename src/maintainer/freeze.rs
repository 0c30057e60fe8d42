//! Freeze: turns a hot `.wal` into a cold `.wal.lz4`.
//!
//! 1. Pipeline: reads of 1 MiB chunks go through the ring up to `FREEZE_PIPELINE_DEPTH`
//!    ahead; each chunk, once it and its predecessors are in, goes to a compression helper
//!    ([`super::compressor`]; on this thread when there is none) and its output is written
//!    to `<name>.wal.lz4.tmp` (created with `O_EXCL`) while the next chunks are read. Short
//!    reads and writes are resubmitted for the rest.
//! 2. Check (on by default), streamed with the compression: each piece of output is decoded
//!    in memory as it is produced, and the decoded length and CRC32C must equal the
//!    segment's ([`crate::codec::check::StreamCheck`]). Nothing is read twice.
//! 3. `fdatasync(tmp)`, then (with the check on) the tmp is read back once, by the helper,
//!    and its CRC32C compared with that of the output produced.
//! 4. One linked chain: `rename(tmp → .wal.lz4) → fsync(dir) → unlink(.wal) → fsync(dir)`,
//!    then the segment's summary (its header and seal, captured while reading, and the cold
//!    file's stamp) appended to `cold.summary` (not synced: a lost entry costs one decode).
//!
//! Any failure before the rename's directory fsync leaves the `.wal` untouched and the tmp
//! removed, and the freeze is retried later; an fsync failure is never retried (contract 5)
//! and nothing is deleted.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::compressor::{ChunkCodec, ChunkWork, Failure, MAX_AWAY};
use super::job::{ud, Ctx};
use crate::constants::{CHUNK_SIZE, FREEZE_PIPELINE_DEPTH};
use crate::error::{Corruption, Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::logdir::summary::{FileStamp, SegmentSummary, TIMED_ENTRY_LEN};
use crate::segment::format::{Seal, SegmentHeader, HEADER_LEN, MAX_SEAL_LEN};
use crate::segment::names::{cold_name, hot_name};

const READ: u32 = 0x100;
const WRITE: u32 = 0x200;
const SYNC_TMP: u32 = 0x300;
const PUBLISH: u32 = 0x400;
const PUBLISH_STEPS: usize = 5;

/// How a freeze ended.
pub(crate) enum FreezeOutcome {
    /// The `.wal.lz4` is durable and the `.wal` gone.
    Frozen {
        bytes_in: u64,
        bytes_out: u64,
        /// First read to tmp synced and checked.
        compress_ns: u64,
        /// Sequence number after the segment's last record (from its seal).
        next_seq: Option<u64>,
    },
    /// The `.wal.lz4` is durable but unlinking the `.wal` failed: retry the unlink.
    UnlinkFailed(Error),
    /// Failed before anything was published; the `.wal` is intact. Retry later.
    Retry { error: Error, enospc: bool },
    /// An fsync failed: contract 5.
    FsyncFailed(Error),
}

struct ReadSlot {
    buf: Box<[u8]>,
    /// Chunk held (or being read) in this slot.
    chunk: Option<u64>,
    want: usize,
    filled: usize,
    in_flight: bool,
}

struct WriteSlot {
    buf: Vec<u8>,
    offset: u64,
    done: usize,
    in_flight: bool,
    /// Lent to a compression helper.
    compressing: bool,
}

enum Phase {
    Pipeline,
    SyncTmp,
    /// The tmp is durable and being read back (the codec is away with it).
    ReadBack,
    /// The tmp is durable and checked; the worker starts the publish chain when no other
    /// freeze is publishing and no fsync has failed.
    ReadyToPublish,
    Publish([Option<i32>; PUBLISH_STEPS]),
}

/// One segment being frozen. The raw fds are those of `src` and `tmp`, which stay open
/// while operations on them are in flight. Lives in its slot, unmoved in the heap, while operations that
/// point into its buffers are in flight.
pub(crate) struct FreezeJob {
    pub index: u64,
    src_path: PathBuf,
    tmp_path: PathBuf,
    src_name: CString,
    tmp_name: CString,
    dst_name: CString,
    /// The segment, open while chunks are read.
    src: Option<File>,
    /// The tmp file, open while chunks are written.
    tmp: Option<File>,
    src_fd: RawFd,
    tmp_fd: RawFd,
    src_len: u64,
    n_chunks: u64,
    next_read: u64,
    next_compress: u64,
    out_off: u64,
    /// The segment's codec; `None` from its first chunk's hand-over until it comes back
    /// with the last one (or a failure).
    codec: Option<Box<ChunkCodec>>,
    /// The helper holding the codec ([`super::compressor::INLINE`]: this thread).
    helper: Option<usize>,
    /// Chunks handed over so far; the last one was.
    next_offer: u64,
    offered_last: bool,
    verify: bool,
    /// Chunks (or the read-back) at a helper.
    away: usize,
    /// The encoding is complete (its last chunk came back).
    encoded: bool,
    reads: Vec<ReadSlot>,
    writes: Vec<WriteSlot>,
    phase: Phase,
    /// First failure; once set, nothing new is issued and the job ends when idle.
    error: Option<(Error, bool)>,
    started: crate::telemetry::Stamp,
    sync_started: crate::telemetry::Stamp,
    compress_ns: u64,
    /// The segment's first bytes (its header) and last bytes (its seal), seen while reading.
    head: [u8; HEADER_LEN],
    tail: [u8; MAX_SEAL_LEN],
    /// Its `cold.summary` entry, once the tmp is synced.
    entry: Option<([u8; TIMED_ENTRY_LEN], usize)>,
}

fn cstr(s: String) -> CString {
    CString::new(s).expect("segment names have no NUL")
}

fn close(f: &mut Option<File>) {
    drop(f.take());
}

impl FreezeJob {
    /// Opens the segment and creates the tmp file (removing a stale tmp of ours first).
    pub fn new(index: u64, acceleration: u32, cx: &Ctx<'_>) -> Result<Box<Self>> {
        let src_path = cx.dir.join(hot_name(index));
        let tmp_name = format!("{}.tmp", cold_name(index));
        let tmp_path = cx.dir.join(&tmp_name);
        let src = File::open(&src_path).map_err(|e| Error::io("open", &src_path, e))?;
        let src_len = src
            .metadata()
            .map_err(|e| Error::io("stat", &src_path, e))?
            .len();
        let _ = std::fs::remove_file(&tmp_path); // a stale tmp of ours, if any
        let tmp = OpenOptions::new()
            .read(true) // the check reads it back
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp_path)
            .map_err(|e| Error::io("create", &tmp_path, e))?;
        let c = cx.config.compression;
        let bound = crate::codec::ColdEncoder::new(c, 0)?.output_bound();
        let index_to = Some((cx.dir.to_path_buf(), index));
        let codec = ChunkCodec::new(c, acceleration, src_len, cx.config.verify_frames, index_to)?;
        let job = Box::new(FreezeJob {
            index,
            src_path,
            tmp_path,
            src_name: cstr(hot_name(index)),
            tmp_name: cstr(tmp_name),
            dst_name: cstr(cold_name(index)),
            src_fd: src.as_raw_fd(),
            tmp_fd: tmp.as_raw_fd(),
            src: Some(src),
            tmp: Some(tmp),
            src_len,
            n_chunks: src_len.div_ceil(CHUNK_SIZE as u64),
            next_read: 0,
            next_compress: 0,
            out_off: 0,
            codec: Some(Box::new(codec)),
            verify: cx.config.verify_frames,
            away: 0,
            helper: None,
            next_offer: 0,
            offered_last: false,
            encoded: false,
            reads: (0..FREEZE_PIPELINE_DEPTH)
                .map(|_| ReadSlot {
                    buf: vec![0u8; CHUNK_SIZE].into_boxed_slice(),
                    chunk: None,
                    want: 0,
                    filled: 0,
                    in_flight: false,
                })
                .collect(),
            writes: (0..FREEZE_PIPELINE_DEPTH)
                .map(|_| WriteSlot {
                    buf: Vec::with_capacity(bound),
                    offset: 0,
                    done: 0,
                    in_flight: false,
                    compressing: false,
                })
                .collect(),
            phase: Phase::Pipeline,
            error: None,
            started: crate::telemetry::now(),
            sync_started: crate::telemetry::now(),
            compress_ns: 0,
            head: [0; HEADER_LEN],
            tail: [0; MAX_SEAL_LEN],
            entry: None,
        });
        Ok(job)
    }

    /// The helper that still keeps this freeze's codec (it ended with chunks of it handed
    /// over and not the last one): the worker releases it.
    pub(crate) fn codec_left_at(&self) -> Option<usize> {
        self.helper.filter(|_| self.codec.is_none())
    }

    /// Still reading and compressing (not yet syncing or publishing).
    pub(crate) fn is_compressing(&self) -> bool {
        matches!(self.phase, Phase::Pipeline)
    }

    fn in_flight(&self) -> bool {
        self.away > 0
            || self.reads.iter().any(|r| r.in_flight)
            || self.writes.iter().any(|w| w.in_flight)
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            let enospc = matches!(&error, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC));
            self.error = Some((error, enospc));
        }
    }

    /// Issues what can be issued and compresses what is ready. Returns an outcome when the
    /// job has ended (only on failure paths; success ends in `complete`).
    pub(crate) fn pump(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Option<FreezeOutcome> {
        if let Err(e) = self.pump_inner(slot, cx) {
            self.fail(e);
        }
        self.end_if_failed()
    }

    fn pump_inner(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Result<()> {
        if self.error.is_some() || !matches!(self.phase, Phase::Pipeline) {
            return Ok(());
        }
        loop {
            self.issue_reads(slot, cx)?;
            if !self.offer_chunk(slot, cx) {
                break;
            }
        }
        if self.encoded && !self.in_flight() {
            let op = Op::fdatasync(Target::Tmp, self.tmp_fd, ud(slot, SYNC_TMP));
            // SAFETY: no buffer or path.
            unsafe { push_chain(cx.be, &[op]) }
                .map_err(|e| Error::io("submit", &self.tmp_path, e))?;
            self.phase = Phase::SyncTmp;
            self.sync_started = crate::telemetry::now();
        }
        Ok(())
    }

    fn issue_reads(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Result<()> {
        while self.next_read < self.n_chunks {
            let chunk = self.next_read;
            let i = (chunk % FREEZE_PIPELINE_DEPTH as u64) as usize;
            let r = &mut self.reads[i];
            if r.chunk.is_some() {
                break; // slot still holds an earlier chunk
            }
            let off = chunk * CHUNK_SIZE as u64;
            r.chunk = Some(chunk);
            r.want = (self.src_len - off).min(CHUNK_SIZE as u64) as usize;
            r.filled = 0;
            r.in_flight = true;
            let op = Op::read(
                Target::Segment,
                self.src_fd,
                &mut r.buf[..r.want],
                off,
                ud(slot, READ + i as u32),
            );
            // SAFETY: the buffer is owned by this boxed job, unmoved until the completion.
            unsafe { push_chain(cx.be, &[op]) }
                .map_err(|e| Error::io("submit", &self.src_path, e))?;
            self.next_read += 1;
        }
        Ok(())
    }

    /// Hands the next chunk to compression if it is fully read, fewer than `MAX_AWAY` are
    /// away and a write slot is free; true if it did.
    fn offer_chunk(&mut self, slot: u32, cx: &mut Ctx<'_>) -> bool {
        if self.away >= MAX_AWAY || self.offered_last {
            return false;
        }
        let Some(w) = self
            .writes
            .iter()
            .position(|w| !w.in_flight && !w.compressing)
        else {
            return false; // every write slot busy: wait for a write to complete
        };
        let (input, len, read_slot) = if self.next_offer < self.n_chunks {
            let i = (self.next_offer % FREEZE_PIPELINE_DEPTH as u64) as usize;
            let r = &mut self.reads[i];
            if r.in_flight || r.chunk != Some(self.next_offer) || r.filled < r.want {
                return false;
            }
            let data = &r.buf[..r.want];
            if self.next_offer == 0 {
                let n = data.len().min(HEADER_LEN);
                self.head[..n].copy_from_slice(&data[..n]);
            }
            if data.len() >= MAX_SEAL_LEN {
                self.tail
                    .copy_from_slice(&data[data.len() - MAX_SEAL_LEN..]);
            } else {
                self.tail.copy_within(data.len().., 0);
                self.tail[MAX_SEAL_LEN - data.len()..].copy_from_slice(data);
            }
            (std::mem::take(&mut r.buf), r.want, Some(i))
        } else {
            (Box::default(), 0, None) // an empty file: only the frame's end
        };
        let work = Box::new(ChunkWork {
            slot,
            index: self.index,
            codec: self.codec.take(), // with the first chunk only: it stays at the helper
            input,
            len,
            out: std::mem::take(&mut self.writes[w].buf),
            last: self.next_offer + 1 >= self.n_chunks,
            read_slot,
            write_slot: w,
            read_back: None,
            release: false,
            result: Ok(()),
        });
        self.offered_last = work.last;
        self.next_offer += 1;
        self.writes[w].compressing = true;
        self.away += 1;
        self.helper = Some(cx.compress.submit(work, self.helper));
        true
    }

    /// A chunk came back from compression: its output is written to the tmp file.
    pub fn compressed(
        &mut self,
        work: ChunkWork,
        slot: u32,
        cx: &mut Ctx<'_>,
    ) -> Option<FreezeOutcome> {
        let ChunkWork {
            codec,
            input,
            out,
            last,
            read_slot,
            write_slot,
            result,
            ..
        } = work;
        self.away -= 1;
        if codec.is_some() {
            self.codec = codec; // home with the last chunk, a failure or the read-back
        }
        if matches!(self.phase, Phase::ReadBack) {
            close(&mut self.tmp);
            self.writes[write_slot].buf = out;
            return match result {
                Ok(()) => {
                    self.compress_ns = crate::telemetry::since_ns(self.started);
                    self.phase = Phase::ReadyToPublish;
                    None
                }
                Err(f) => {
                    self.phase = Phase::Pipeline; // nothing in flight: end as a failure
                    self.fail(self.check_failed(f));
                    self.end_if_failed()
                }
            };
        }
        if let Some(i) = read_slot {
            self.reads[i].buf = input;
            self.reads[i].chunk = None;
            self.next_compress += 1;
        }
        let ws = &mut self.writes[write_slot];
        ws.compressing = false;
        ws.buf = out;
        match result {
            Err(f) => {
                let e = self.check_failed(f);
                self.fail(e);
            }
            Ok(()) => {
                self.encoded = last;
                if let Err(e) = self.write_out(write_slot, slot, cx) {
                    self.fail(e);
                }
            }
        }
        self.pump(slot, cx)
    }

    fn check_failed(&self, f: Failure) -> Error {
        match f {
            Failure::Codec(e) => e,
            Failure::Check(why) => Error::corrupt(
                &self.tmp_path,
                self.out_off,
                Corruption::BadFrame(format!("the freeze's check: {why}")),
            ),
        }
    }

    /// Writes a write slot's compressed bytes at the end of the tmp file.
    fn write_out(&mut self, w: usize, slot: u32, cx: &mut Ctx<'_>) -> Result<()> {
        let out = &mut self.writes[w];
        if out.buf.is_empty() || self.error.is_some() {
            return Ok(());
        }
        out.offset = self.out_off;
        out.done = 0;
        out.in_flight = true;
        self.out_off += out.buf.len() as u64;
        let op = Op::write(
            Target::Tmp,
            self.tmp_fd,
            &out.buf,
            out.offset,
            ud(slot, WRITE + w as u32),
        );
        // SAFETY: the buffer is owned by this boxed job and not touched until the completion.
        if let Err(e) = unsafe { push_chain(cx.be, &[op]) } {
            self.writes[w].in_flight = false;
            return Err(Error::io("submit", &self.tmp_path, e));
        }
        Ok(())
    }

    /// Handles one completion of this job.
    pub fn complete(
        &mut self,
        slot: u32,
        tag: u32,
        result: i32,
        cx: &mut Ctx<'_>,
    ) -> Option<FreezeOutcome> {
        match tag & 0xff00 {
            READ => self.on_read((tag & 0xff) as usize, result, slot, cx),
            WRITE => self.on_write((tag & 0xff) as usize, result, slot, cx),
            SYNC_TMP => return self.on_synced(result, slot, cx),
            PUBLISH => return self.on_published((tag & 0xff) as usize, result, cx),
            _ => unreachable!("unknown freeze tag {tag:#x}"),
        }
        self.pump(slot, cx)
    }

    fn on_read(&mut self, i: usize, result: i32, slot: u32, cx: &mut Ctx<'_>) {
        self.reads[i].in_flight = false;
        let n = match check(result, "read", &self.src_path) {
            Ok(n) => n as usize,
            Err(e) => return self.fail(e),
        };
        if n == 0 && self.reads[i].filled < self.reads[i].want {
            let e = Error::corrupt(&self.src_path, 0, Corruption::Truncated);
            return self.fail(e);
        }
        let r = &mut self.reads[i];
        r.filled += n;
        if r.filled < r.want && self.error.is_none() {
            // Short read: ask for the rest.
            let off = r.chunk.expect("slot holds a chunk") * CHUNK_SIZE as u64 + r.filled as u64;
            r.in_flight = true;
            let op = Op::read(
                Target::Segment,
                self.src_fd,
                &mut r.buf[r.filled..r.want],
                off,
                ud(slot, READ + i as u32),
            );
            // SAFETY: as in issue_reads.
            if let Err(e) = unsafe { push_chain(cx.be, &[op]) } {
                r.in_flight = false;
                self.fail(Error::io("submit", &self.src_path, e));
            }
        }
    }

    fn on_write(&mut self, i: usize, result: i32, slot: u32, cx: &mut Ctx<'_>) {
        self.writes[i].in_flight = false;
        let n = match check(result, "write", &self.tmp_path) {
            Ok(n) => n as usize,
            Err(e) => return self.fail(e),
        };
        if n == 0 && self.writes[i].done < self.writes[i].buf.len() {
            let eio = std::io::Error::from_raw_os_error(libc::EIO);
            return self.fail(Error::io("write", &self.tmp_path, eio));
        }
        let w = &mut self.writes[i];
        w.done += n;
        if w.done < w.buf.len() && self.error.is_none() {
            // Short write: write the rest.
            w.in_flight = true;
            let op = Op::write(
                Target::Tmp,
                self.tmp_fd,
                &w.buf[w.done..],
                w.offset + w.done as u64,
                ud(slot, WRITE + i as u32),
            );
            // SAFETY: as in compress_ready.
            if let Err(e) = unsafe { push_chain(cx.be, &[op]) } {
                w.in_flight = false;
                self.fail(Error::io("submit", &self.tmp_path, e));
            }
        }
    }

    fn on_synced(&mut self, result: i32, slot: u32, cx: &mut Ctx<'_>) -> Option<FreezeOutcome> {
        if let Err(e) = check(result, "fdatasync", &self.tmp_path) {
            // Contract 5: never retried; the .wal stays, and so does the tmp (nothing is
            // deleted after an fsync error; recovery removes it).
            close(&mut self.src);
            close(&mut self.tmp);
            return Some(FreezeOutcome::FsyncFailed(e));
        }
        self.entry = self.summary_entry();
        close(&mut self.src);
        cx.hists
            .record_since(crate::telemetry::Hist::Fdatasync, self.sync_started);
        if self.verify {
            let file = self.tmp.as_ref().map(File::try_clone);
            let Some(Ok(file)) = file else {
                let e = Error::io("dup", &self.tmp_path, std::io::Error::last_os_error());
                close(&mut self.tmp);
                self.phase = Phase::Pipeline; // nothing in flight: end as a failure
                self.fail(e);
                return self.end_if_failed();
            };
            let work = Box::new(ChunkWork {
                slot,
                index: self.index,
                codec: self.codec.take(),
                input: Box::default(),
                len: 0,
                out: std::mem::take(&mut self.writes[0].buf),
                last: false,
                read_slot: None,
                write_slot: 0,
                read_back: Some(file),
                release: false,
                result: Ok(()),
            });
            self.away += 1;
            self.phase = Phase::ReadBack;
            cx.compress.submit(work, None);
            return None;
        }
        close(&mut self.tmp);
        self.compress_ns = crate::telemetry::since_ns(self.started);
        self.phase = Phase::ReadyToPublish;
        None
    }

    /// Waiting for the worker to start the publish chain.
    pub(crate) fn is_ready_to_publish(&self) -> bool {
        matches!(self.phase, Phase::ReadyToPublish)
    }

    /// The publish chain is in flight.
    pub(crate) fn is_publishing(&self) -> bool {
        matches!(self.phase, Phase::Publish(_))
    }

    /// The segment's `cold.summary` entry: its header and seal, and the stamp of the tmp file
    /// (the cold file after the rename: same inode, same length, same modification time).
    fn summary_entry(&self) -> Option<([u8; TIMED_ENTRY_LEN], usize)> {
        let (h, seal) = self.header_and_seal()?; // else not sealed: nothing to summarize
        let meta = self.tmp.as_ref()?.metadata().ok()?;
        let s = SegmentSummary::new(&h, &seal);
        Some((s.encode(FileStamp::of(&meta)), s.entry_len()))
    }

    /// The segment's header and seal, from the first and last bytes it compressed (the
    /// segment is at least a header and a seal long, and `tail` is the longest seal).
    fn header_and_seal(&self) -> Option<(SegmentHeader, Seal)> {
        let h = SegmentHeader::decode(&self.head).ok()?;
        let seal = Seal::decode(&self.tail[MAX_SEAL_LEN - h.framing.seal_len()..], h.framing);
        Some((h, seal.ok()?))
    }

    /// Starts `rename(tmp → .wal.lz4) → fsync(dir) → unlink(.wal) → fsync(dir)`, then the
    /// append of the summary entry.
    pub fn publish(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Option<FreezeOutcome> {
        debug_assert!(self.is_ready_to_publish());
        let append = match (&self.entry, cx.summaries.as_deref_mut()) {
            (Some((entry, len)), Some(log)) => {
                let op = Op::write(
                    Target::Summary,
                    log.file.as_raw_fd(),
                    &entry[..*len],
                    log.next,
                    ud(slot, PUBLISH + 4),
                );
                log.next += *len as u64;
                log.entries += 1;
                Some(op)
            }
            _ => None,
        };
        let chain = [
            Op::rename(
                Target::Tmp,
                cx.dirfd,
                &self.tmp_name,
                &self.dst_name,
                ud(slot, PUBLISH),
            ),
            Op::fsync(Target::Dir, cx.dirfd, ud(slot, PUBLISH + 1)),
            Op::unlink(
                Target::Segment,
                cx.dirfd,
                &self.src_name,
                ud(slot, PUBLISH + 2),
            ),
            Op::fsync(Target::Dir, cx.dirfd, ud(slot, PUBLISH + 3)),
        ];
        let mut ops = chain.to_vec();
        ops.extend(append);
        // SAFETY: the names and the entry live in this boxed job until the completions are
        // reaped; the summary file stays open in the worker.
        if let Err(e) = unsafe { push_chain(cx.be, &ops) } {
            self.phase = Phase::Pipeline; // nothing in flight: end as a failure
            self.fail(Error::io("submit", &self.tmp_path, e));
            return self.end_if_failed();
        }
        let mut results = [None; PUBLISH_STEPS];
        if ops.len() < PUBLISH_STEPS {
            results[PUBLISH_STEPS - 1] = Some(0); // no summary to append
        }
        self.phase = Phase::Publish(results);
        None
    }

    fn on_published(&mut self, step: usize, result: i32, cx: &Ctx<'_>) -> Option<FreezeOutcome> {
        let Phase::Publish(results) = &mut self.phase else {
            unreachable!("publish completion outside the publish phase");
        };
        results[step] = Some(result);
        let [Some(rename), Some(sync1), Some(unlink), Some(sync2), Some(append)] = *results else {
            return None;
        };
        if append < 0 && append != -libc::ECANCELED {
            let e = std::io::Error::from_raw_os_error(-append);
            log::warn!(
                "appending to cold.summary: {e}; the next open decodes segment {}",
                self.index
            );
        }
        let cold = cx.dir.join(cold_name(self.index));
        if let Err(e) = check(rename, "rename", &self.tmp_path) {
            let _ = std::fs::remove_file(&self.tmp_path);
            return Some(FreezeOutcome::Retry {
                error: e,
                enospc: false,
            });
        }
        if let Err(e) = check(sync1, "fsync dir", cx.dir) {
            return Some(FreezeOutcome::FsyncFailed(e));
        }
        if let Err(e) = check(unlink, "unlink", &self.src_path) {
            return Some(FreezeOutcome::UnlinkFailed(e));
        }
        if let Err(e) = check(sync2, "fsync dir", cx.dir) {
            return Some(FreezeOutcome::FsyncFailed(e));
        }
        let bytes_out = std::fs::metadata(&cold)
            .map(|m| m.len())
            .unwrap_or(self.out_off);
        let next_seq = self
            .header_and_seal()
            .map(|(h, seal)| SegmentSummary::new(&h, &seal).next_seq());
        Some(FreezeOutcome::Frozen {
            bytes_in: self.src_len,
            bytes_out,
            compress_ns: self.compress_ns,
            next_seq,
        })
    }

    /// After a failure, once nothing is in flight: close, remove the tmp, report.
    /// Gives up before publishing because an fsync failed elsewhere: the `.wal` stays and so
    /// does the tmp (nothing is deleted after an fsync error; recovery removes the tmp).
    pub(crate) fn abandon(&mut self) {
        close(&mut self.src);
        close(&mut self.tmp);
    }

    fn end_if_failed(&mut self) -> Option<FreezeOutcome> {
        if self.error.is_none() || self.in_flight() || matches!(self.phase, Phase::SyncTmp) {
            return None;
        }
        close(&mut self.src);
        close(&mut self.tmp);
        let _ = std::fs::remove_file(&self.tmp_path);
        let (error, enospc) = self.error.take().expect("checked above");
        Some(FreezeOutcome::Retry { error, enospc })
    }
}
