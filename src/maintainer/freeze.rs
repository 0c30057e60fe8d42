//! Freeze: turns a hot `.wal` into a cold `.wal.lz4`.
//!
//! 1. Pipeline: reads of 1 MiB chunks go through the ring up to `FREEZE_PIPELINE_DEPTH`
//!    ahead; each chunk is compressed on this thread as soon as it and its predecessors are
//!    in, and its output is written to `<name>.wal.lz4.tmp` (created with `O_EXCL`) while the
//!    next chunks are read. Short reads and writes are resubmitted for the rest.
//! 2. `fdatasync(tmp)`.
//! 3. Check (on by default): decode the tmp file and compare length and CRC32C with the
//!    bytes that were read, one chunk of decoded output per turn of the maintainer's loop
//!    ([`FreezeJob::verify_step`]), so that preparation, drains and persists are never held
//!    up by more than one chunk.
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

use super::job::{ud, Ctx};
use crate::codec::ColdEncoder;
use crate::constants::{CHUNK_SIZE, FREEZE_PIPELINE_DEPTH};
use crate::error::{Corruption, Error, Result};
use crate::io::{check, push_chain, Op, Target};
use crate::log::summary::{FileStamp, SegmentSummary, ENTRY_LEN};
use crate::segment::format::{Seal, SegmentHeader, HEADER_LEN, SEAL_LEN};
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
}

enum Phase {
    Pipeline,
    SyncTmp,
    /// The tmp is durable; its decode is being checked, a chunk per step.
    Verify {
        dec: Box<dyn std::io::Read + Send>,
        buf: Vec<u8>,
        len: u64,
        crc: u32,
    },
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
    src_crc: u32,
    enc: Option<ColdEncoder>,
    reads: Vec<ReadSlot>,
    writes: Vec<WriteSlot>,
    phase: Phase,
    /// First failure; once set, nothing new is issued and the job ends when idle.
    error: Option<(Error, bool)>,
    verify: bool,
    started: crate::telemetry::Stamp,
    sync_started: crate::telemetry::Stamp,
    compress_ns: u64,
    /// The segment's first bytes (its header) and last bytes (its seal), seen while reading.
    head: [u8; HEADER_LEN],
    tail: [u8; SEAL_LEN],
    /// Its `cold.summary` entry, once the tmp is synced.
    entry: Option<[u8; ENTRY_LEN]>,
}

fn cstr(s: String) -> CString {
    CString::new(s).expect("segment names have no NUL")
}

fn close(f: &mut Option<File>) {
    drop(f.take());
}

impl FreezeJob {
    /// Opens the segment and creates the tmp file (removing a stale tmp of ours first).
    pub fn new(index: u64, cx: &Ctx<'_>) -> Result<Box<Self>> {
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
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp_path)
            .map_err(|e| Error::io("create", &tmp_path, e))?;
        let enc = ColdEncoder::new(cx.config.compression, src_len)?;
        let bound = enc.output_bound();
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
            src_crc: 0,
            enc: Some(enc),
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
                })
                .collect(),
            phase: Phase::Pipeline,
            error: None,
            verify: cx.config.verify_frames,
            started: crate::telemetry::now(),
            sync_started: crate::telemetry::now(),
            compress_ns: 0,
            head: [0; HEADER_LEN],
            tail: [0; SEAL_LEN],
            entry: None,
        });
        Ok(job)
    }

    /// Still reading and compressing (not yet syncing or publishing).
    pub fn is_compressing(&self) -> bool {
        matches!(self.phase, Phase::Pipeline)
    }

    fn in_flight(&self) -> bool {
        self.reads.iter().any(|r| r.in_flight) || self.writes.iter().any(|w| w.in_flight)
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            let enospc = matches!(&error, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC));
            self.error = Some((error, enospc));
        }
    }

    /// Issues what can be issued and compresses what is ready. Returns an outcome when the
    /// job has ended (only on failure paths; success ends in `complete`).
    pub fn pump(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Option<FreezeOutcome> {
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
            if !self.compress_ready(slot, cx)? {
                break;
            }
        }
        let encoded_all = self.next_compress == self.n_chunks && self.enc.is_none();
        if encoded_all && !self.in_flight() {
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

    /// Compresses the next chunk if it is fully read and a write slot is free; true if it did.
    fn compress_ready(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Result<bool> {
        let Some(w) = self.writes.iter().position(|w| !w.in_flight) else {
            return Ok(false); // every write slot busy: wait for a write to complete
        };
        let out = &mut self.writes[w];
        out.buf.clear();
        if self.next_compress < self.n_chunks {
            let i = (self.next_compress % FREEZE_PIPELINE_DEPTH as u64) as usize;
            let r = &mut self.reads[i];
            if r.in_flight || r.chunk != Some(self.next_compress) || r.filled < r.want {
                return Ok(false);
            }
            let data = &r.buf[..r.want];
            self.src_crc = crc32c::crc32c_append(self.src_crc, data);
            if self.next_compress == 0 {
                let n = data.len().min(HEADER_LEN);
                self.head[..n].copy_from_slice(&data[..n]);
            }
            if data.len() >= SEAL_LEN {
                self.tail.copy_from_slice(&data[data.len() - SEAL_LEN..]);
            } else {
                self.tail.copy_within(data.len().., 0);
                self.tail[SEAL_LEN - data.len()..].copy_from_slice(data);
            }
            self.enc
                .as_mut()
                .expect("encoder lives until the last chunk")
                .compress(data, &mut out.buf)?;
            r.chunk = None;
            self.next_compress += 1;
        } else if let Some(enc) = self.enc.take() {
            enc.finish(&mut out.buf)?;
        } else {
            return Ok(false);
        }
        if out.buf.is_empty() {
            return Ok(true);
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
        unsafe { push_chain(cx.be, &[op]) }.map_err(|e| Error::io("submit", &self.tmp_path, e))?;
        Ok(true)
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
        close(&mut self.tmp);
        cx.hists
            .record_since(crate::telemetry::Hist::Fdatasync, self.sync_started);
        let _ = slot;
        if self.verify {
            let opened = std::fs::File::open(&self.tmp_path)
                .map_err(|e| Error::io("open", &self.tmp_path, e))
                .and_then(|f| {
                    crate::codec::open_cold_with(f, &self.tmp_path, cx.config.compression)
                });
            match opened {
                Ok(dec) => {
                    self.phase = Phase::Verify {
                        dec,
                        buf: vec![0u8; CHUNK_SIZE],
                        len: 0,
                        crc: 0,
                    };
                    return None;
                }
                Err(e) => {
                    self.fail(e);
                    return self.end_if_failed();
                }
            }
        }
        self.compress_ns = crate::telemetry::since_ns(self.started);
        self.phase = Phase::ReadyToPublish;
        None
    }

    /// The check is under way ([`Self::verify_step`]).
    pub fn is_verifying(&self) -> bool {
        matches!(self.phase, Phase::Verify { .. })
    }

    /// Decodes (at most) one more chunk of the tmp file; at its end compares length and
    /// CRC32C with the bytes read from the segment. `Some` if the job ended (a failed
    /// check: retried later, the `.wal` intact).
    pub fn verify_step(&mut self) -> Option<FreezeOutcome> {
        let Phase::Verify { dec, buf, len, crc } = &mut self.phase else {
            return None;
        };
        let n = match dec.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let at = *len;
                self.phase = Phase::Pipeline; // nothing in flight: end as a failure
                self.fail(Error::corrupt(
                    &self.tmp_path,
                    at,
                    Corruption::BadFrame(e.to_string()),
                ));
                return self.end_if_failed();
            }
        };
        if n > 0 {
            *crc = crc32c::crc32c_append(*crc, &buf[..n]);
            *len += n as u64;
            return None;
        }
        let (len, crc) = (*len, *crc);
        if len != self.src_len || crc != self.src_crc {
            self.phase = Phase::Pipeline;
            self.fail(Error::corrupt(
                &self.tmp_path,
                len,
                Corruption::BadFrame("decoded content differs from the segment".into()),
            ));
            return self.end_if_failed();
        }
        self.compress_ns = crate::telemetry::since_ns(self.started);
        self.phase = Phase::ReadyToPublish;
        None
    }

    /// Waiting for the worker to start the publish chain.
    pub fn is_ready_to_publish(&self) -> bool {
        matches!(self.phase, Phase::ReadyToPublish)
    }

    /// The publish chain is in flight.
    pub fn is_publishing(&self) -> bool {
        matches!(self.phase, Phase::Publish(_))
    }

    /// The segment's `cold.summary` entry: its header and seal, and the stamp of the tmp file
    /// (the cold file after the rename: same inode, same length, same modification time).
    fn summary_entry(&self) -> Option<[u8; ENTRY_LEN]> {
        let (Ok(h), Ok(seal)) = (SegmentHeader::decode(&self.head), Seal::decode(&self.tail))
        else {
            return None; // not a sealed segment: nothing to summarize
        };
        let meta = self.tmp.as_ref()?.metadata().ok()?;
        Some(SegmentSummary::new(&h, &seal).encode(FileStamp::of(&meta)))
    }

    /// Starts `rename(tmp → .wal.lz4) → fsync(dir) → unlink(.wal) → fsync(dir)`, then the
    /// append of the summary entry.
    pub fn publish(&mut self, slot: u32, cx: &mut Ctx<'_>) -> Option<FreezeOutcome> {
        debug_assert!(self.is_ready_to_publish());
        let append = match (&self.entry, cx.summaries.as_deref_mut()) {
            (Some(entry), Some(log)) => {
                let op = Op::write(
                    Target::Summary,
                    log.file.as_raw_fd(),
                    entry,
                    log.next,
                    ud(slot, PUBLISH + 4),
                );
                log.next += ENTRY_LEN as u64;
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
        let next_seq = match (SegmentHeader::decode(&self.head), Seal::decode(&self.tail)) {
            (Ok(h), Ok(seal)) => Some(SegmentSummary::new(&h, &seal).next_seq()),
            _ => None,
        };
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
    pub fn abandon(&mut self) {
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
