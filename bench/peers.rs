//! What a user would pick instead of wal-recorder (issue 18), as `Appender`s of the
//! comparison: the same 64-byte events, durable through each system's own notion of durable.
//!
//! - `raft-engine` (TiKV's log engine, 0.4): one `LogBatch` per record (`put(region, key,
//!   value)`, the raw form its own tests use; no protobuf), `write(&mut batch, false)`; a
//!   thread on core 1 makes it durable every sync interval by writing a one-item batch with
//!   `sync = true`, because `Engine::sync()` in 0.4.x writes an empty batch and returns before
//!   syncing (tikv/raft-engine#395, fixed on master, not released).
//! - `okaywal`: `begin_entry`, `write_chunk`, `commit` (durable on return: it fsyncs on the
//!   writer's thread, so it cannot hold high rates). Its checkpointer thread is created by
//!   `recover` on core 1 (the setup thread) and inherits that pinning.
//! - `fs-write`: `std::fs::File`, one `write_all` per record, a thread calling `sync_data()`
//!   every sync interval; `fs-write-b2b`: the thread calls it back to back (the next as soon
//!   as the previous returned and something new was written: a hand-written group commit).
//! - `mmap-file`: a plain preallocated file mapped `MAP_SHARED` (no prefault), records copied
//!   into it, a thread calling `fdatasync` every sync interval (the Chronicle-Queue-like
//!   design with a sync added); `mmap-file-b2b`: fdatasync back to back.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wal_recorder::event;

use super::{pin, thread_cpu_ns, Appender};

/// How often the peers' background threads make what was written durable: the recorder's
/// default `sync_interval`.
pub const SYNC_EVERY: Duration = Duration::from_millis(1);

/// A thread on core 1 that, every `SYNC_EVERY`, reads the last appended sequence number,
/// runs `sync`, and publishes that number as durable. Returns its CPU time when stopped.
struct Syncer {
    appended: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Syncer {
    fn start(sync: impl FnMut() + Send + 'static) -> Self {
        Self::start_every(Some(SYNC_EVERY), sync)
    }

    /// Every `every`, or (None) back to back: the next sync as soon as the previous one
    /// returned and something new was appended (a short pause when nothing was).
    fn start_every(every: Option<Duration>, mut sync: impl FnMut() + Send + 'static) -> Self {
        let appended = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, d, s) = (appended.clone(), durable.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            pin(1);
            while !s.load(Ordering::Acquire) {
                let upto = match every {
                    Some(t) => {
                        std::thread::sleep(t);
                        a.load(Ordering::Acquire)
                    }
                    None => {
                        let upto = a.load(Ordering::Acquire);
                        if upto == d.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_micros(50));
                            continue;
                        }
                        upto
                    }
                };
                sync();
                d.store(upto, Ordering::Release);
            }
            thread_cpu_ns()
        });
        Syncer {
            appended,
            durable,
            stop,
            thread: Some(thread),
        }
    }

    #[inline]
    fn appended(&self, seq: u64) {
        self.appended.store(seq, Ordering::Release);
    }

    #[inline]
    fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn stop(&mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Release);
        self.thread.take().map(|t| t.join().expect("syncer"))
    }
}

/// raft-engine with a syncing thread.
pub struct RaftEngine {
    engine: Arc<raft_engine::Engine>,
    syncer: Syncer,
    buf: [u8; 64],
}

impl RaftEngine {
    pub fn open(dir: &Path) -> Self {
        let cfg = raft_engine::Config {
            dir: dir.to_str().expect("utf-8 path").to_string(),
            ..Default::default()
        };
        let engine = Arc::new(raft_engine::Engine::open(cfg).expect("raft-engine"));
        let e = engine.clone();
        let syncer = Syncer::start(move || {
            // Engine::sync() does not sync in 0.4.x (#395): a one-item batch written with
            // sync = true does.
            let mut b = raft_engine::LogBatch::default();
            b.put(0, b"sync".to_vec(), Vec::new()).expect("put");
            e.write(&mut b, true).expect("sync write");
        });
        RaftEngine {
            engine,
            syncer,
            buf: [0; 64],
        }
    }
}

impl Appender for RaftEngine {
    #[inline]
    fn append(&mut self, seq: u64) {
        event::fill(seq, &mut self.buf);
        let mut b = raft_engine::LogBatch::default();
        b.put(1, seq.to_be_bytes().to_vec(), self.buf.to_vec())
            .expect("put");
        self.engine.write(&mut b, false).expect("write");
        self.syncer.appended(seq);
    }
    fn durable(&self) -> Option<u64> {
        Some(self.syncer.durable())
    }
    fn finish(mut self: Box<Self>) -> Option<u64> {
        self.syncer.stop()
    }
}

#[derive(Debug)]
struct NoCheckpoints;

impl okaywal::LogManager for NoCheckpoints {
    fn recover(&mut self, _: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn checkpoint_to(
        &mut self,
        _: okaywal::EntryId,
        _: &mut okaywal::SegmentReader,
        _: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(()) // nothing to apply: the benchmark only writes
    }
}

/// okaywal: durable when `commit` returns.
pub struct OkayWal {
    wal: okaywal::WriteAheadLog,
    durable: u64,
    buf: [u8; 64],
}

impl OkayWal {
    pub fn open(dir: &Path) -> Self {
        OkayWal {
            wal: okaywal::WriteAheadLog::recover(dir, NoCheckpoints).expect("okaywal"),
            durable: 0,
            buf: [0; 64],
        }
    }
}

impl Appender for OkayWal {
    #[inline]
    fn append(&mut self, seq: u64) {
        event::fill(seq, &mut self.buf);
        let mut entry = self.wal.begin_entry().expect("begin_entry");
        entry.write_chunk(&self.buf).expect("write_chunk");
        entry.commit().expect("commit");
        self.durable = seq;
    }
    fn durable(&self) -> Option<u64> {
        Some(self.durable)
    }
    fn finish(self: Box<Self>) -> Option<u64> {
        self.wal.shutdown().expect("okaywal shutdown");
        None
    }
}

/// `write_all` per record, `sync_data` on a thread.
pub struct FsWrite {
    file: File,
    syncer: Syncer,
    buf: [u8; 80],
    crc: u32,
}

impl FsWrite {
    /// Synced every `every`, or back to back (None).
    pub fn open(dir: &Path, every: Option<Duration>) -> Self {
        let file = File::create(dir.join("log.bin")).expect("create");
        let f = file.try_clone().expect("dup");
        FsWrite {
            file,
            syncer: Syncer::start_every(every, move || f.sync_data().expect("fdatasync")),
            buf: [0; 80],
            crc: 0,
        }
    }
}

/// Frames record `seq` as wal-recorder does (seq, length, chained CRC32C, 64-byte event).
#[inline]
fn frame(buf: &mut [u8], seq: u64, crc: &mut u32) {
    event::fill(seq, &mut buf[16..80]);
    *crc = wal_recorder::segment::format::record_crc(*crc, seq, None, &buf[16..80]);
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&64u32.to_le_bytes());
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
}

impl Appender for FsWrite {
    #[inline]
    fn append(&mut self, seq: u64) {
        frame(&mut self.buf, seq, &mut self.crc);
        self.file.write_all(&self.buf).expect("write");
        self.syncer.appended(seq);
    }
    fn durable(&self) -> Option<u64> {
        Some(self.syncer.durable())
    }
    fn finish(mut self: Box<Self>) -> Option<u64> {
        self.syncer.stop()
    }
}

/// A preallocated file mapped once, `fdatasync` on a thread.
pub struct MmapFile {
    map: *mut u8,
    len: usize,
    off: usize,
    syncer: Syncer,
    crc: u32,
}

// SAFETY: the mapping is used by the one thread that owns this value.
unsafe impl Send for MmapFile {}

impl MmapFile {
    /// A file of `records` records (80 bytes each, wrapping around if the run is longer).
    pub fn open(dir: &Path, records: u64, every: Option<Duration>) -> Self {
        let len = (records.max(1) * 80).min(4 << 30) as usize;
        let file = std::fs::OpenOptions::new()
            .read(true) // a shared writable mapping needs a descriptor open for reading too
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("log.bin"))
            .expect("create");
        file.set_len(len as u64).expect("preallocate");
        // SAFETY: a fresh shared mapping of the whole file; checked against MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert!(map != libc::MAP_FAILED, "mmap failed");
        MmapFile {
            map: map.cast(),
            len,
            off: 0,
            // fdatasync writes back the pages the mapping dirtied, like any others.
            syncer: Syncer::start_every(every, move || file.sync_data().expect("fdatasync")),
            crc: 0,
        }
    }
}

impl Appender for MmapFile {
    #[inline]
    fn append(&mut self, seq: u64) {
        if self.off + 80 > self.len {
            self.off = 0;
        }
        // SAFETY: off + 80 <= len, inside the mapping, which lives until drop.
        let rec = unsafe { std::slice::from_raw_parts_mut(self.map.add(self.off), 80) };
        frame(rec, seq, &mut self.crc);
        self.off += 80;
        self.syncer.appended(seq);
    }
    fn durable(&self) -> Option<u64> {
        Some(self.syncer.durable())
    }
    fn finish(mut self: Box<Self>) -> Option<u64> {
        let cpu = self.syncer.stop();
        // SAFETY: the mapping made in `open`, unmapped once; nothing uses it after.
        unsafe { libc::munmap(self.map.cast(), self.len) };
        cpu
    }
}
