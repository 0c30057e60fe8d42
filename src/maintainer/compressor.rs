//! Compression helpers: the CPU part of a freeze, off the maintainer's loop.
//!
//! The maintainer keeps every read, write, sync and rename in its ring; it hands each chunk
//! it has read to a helper thread as a [`ChunkWork`] that carries the chunk, the output
//! buffer and the segment's whole codec state (encoder, streamed check, running CRC), and
//! takes it back through an SPSC ring. The codec goes with a segment's first chunk and stays
//! at that helper (one stream, in order) until it comes back with the last, so the next
//! chunks can wait in the helper's ring while it works; several segments compress in
//! parallel on several helpers.
//! Helpers run at low priority (nice 10), pinned where configured, so on a shared core the
//! maintainer's loop preempts them. The same helper reads the synced tmp file back once and
//! compares its CRC32C with that of the bytes it produced (a write that stored something
//! else is caught before the rename). With no helper (`compress_threads = 0`) the same work runs on
//! the maintainer's thread, as before.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::path::PathBuf;

use crate::codec::check::StreamCheck;
use crate::codec::ColdEncoder;
use crate::config::Compression;
use crate::error::{Error, Result};
use crate::segment::sparse_index::{self, IndexBuilder};

/// Where [`Compressors::submit`] says work ran when it ran on the calling thread.
pub(crate) const INLINE: usize = usize::MAX;
/// Chunks of one freeze away at once: one being compressed, one waiting behind it.
pub(crate) const MAX_AWAY: usize = 3;
/// Chunks that may wait for (or come back from) one helper: more than the maintainer's slots.
const RING: usize = 64;
/// Helpers' nice value: low, not `SCHED_IDLE`, which starves them whenever every core is
/// busy, and a starved freeze grows the hot backlog without bound.
const HELPER_NICE: i32 = 10;
/// How long an idle helper sleeps before looking for a stop it was not woken for.
const PARK: Duration = Duration::from_millis(50);

/// A segment's compression state, which travels with its chunks.
pub(crate) struct ChunkCodec {
    enc: Option<ColdEncoder>,
    check: Option<StreamCheck>,
    consumed: u64,
    crc: u32,
    /// Length and CRC32C of the compressed output so far.
    out_len: u64,
    out_crc: u32,
    /// The sparse index being built, and the log directory and segment it is for.
    sparse: Option<(IndexBuilder, PathBuf, u64)>,
}

impl ChunkCodec {
    /// Encoding `c` at LZ4 acceleration `acceleration` for `content_size` bytes; `verify`
    /// decodes the output as it is produced ([`StreamCheck`]).
    /// `index_to`: build the segment's sparse index and write it into that log directory.
    pub fn new(
        c: Compression,
        acceleration: u32,
        content_size: u64,
        verify: bool,
        index_to: Option<(PathBuf, u64)>,
    ) -> Result<Self> {
        let check = match verify {
            true => Some(StreamCheck::new(c).map_err(Error::Compression)?),
            false => None,
        };
        Ok(ChunkCodec {
            enc: Some(ColdEncoder::with_acceleration(
                c,
                acceleration,
                content_size,
            )?),
            check,
            consumed: 0,
            crc: 0,
            out_len: 0,
            out_crc: 0,
            sparse: index_to.map(|(dir, index)| (IndexBuilder::new(), dir, index)),
        })
    }

    /// Writes the sparse index once the encoding is complete and checked (a failure only
    /// costs later seeks their speed: logged, not the freeze's).
    fn write_index(&mut self, blocks: &crate::codec::lz4::BlockMap) {
        let Some((builder, dir, index)) = self.sparse.take() else {
            return;
        };
        let Some(idx) = blocks
            .known()
            .and_then(|starts| builder.finish(starts, self.out_len))
        else {
            return;
        };
        if let Err(e) = sparse_index::write_index(&dir, index, &idx) {
            let path = sparse_index::index_path(&dir, index);
            log::warn!(
                "{}: {e}; seeks into segment {index} read it from its start",
                path.display()
            );
        }
    }
}

/// Why a chunk's work failed.
pub(crate) enum Failure {
    /// LZ4 refused (its error).
    Codec(Error),
    /// The output does not decode to the input (what differs).
    Check(String),
}

/// One chunk to compress, and back.
pub(crate) struct ChunkWork {
    /// The freeze's slot and segment.
    pub slot: u32,
    pub index: u64,
    /// With the first chunk (and a read-back): the codec, which the helper keeps for the
    /// segment's next chunks. Back home with the last chunk, a read-back or a failure.
    pub codec: Option<Box<ChunkCodec>>,
    /// The read buffer; its first `len` bytes are the chunk.
    pub input: Box<[u8]>,
    pub len: usize,
    /// Cleared, then filled with the compressed bytes.
    pub out: Vec<u8>,
    /// The segment's last chunk: the encoding is finished and checked too.
    pub last: bool,
    /// The freeze's read and write slots the buffers belong to.
    pub read_slot: Option<usize>,
    pub write_slot: usize,
    /// Instead of compressing: read this file (the synced tmp) back and compare it with the
    /// output produced.
    pub read_back: Option<std::fs::File>,
    /// Instead of compressing: drop the codec kept for this segment (its freeze failed with
    /// chunks still queued); comes back with nothing to do.
    pub release: bool,
    pub result: std::result::Result<(), Failure>,
}

/// Codecs a worker (a helper, or the inline stand-in) keeps between a segment's chunks.
#[derive(Default)]
struct Codecs(Vec<(u32, u64, Box<ChunkCodec>)>);

impl ChunkWork {
    fn run(&mut self, codecs: &mut Codecs) {
        let key = (self.slot, self.index);
        if self.release {
            codecs.0.retain(|(s, i, _)| (*s, *i) != key);
            self.result = Ok(());
            return;
        }
        let codec = self.codec.take().or_else(|| {
            let at = codecs.0.iter().position(|(s, i, _)| (*s, *i) == key)?;
            Some(codecs.0.swap_remove(at).2)
        });
        let Some(mut codec) = codec else {
            self.result = Err(Failure::Check(
                "the codec was lost with an earlier chunk".into(),
            ));
            return;
        };
        let read_back = self.read_back.take();
        let home = self.last || read_back.is_some();
        self.result = match read_back {
            Some(file) => self.compare(&codec, &file),
            None => self.compress(&mut codec),
        };
        match home || self.result.is_err() {
            true => self.codec = Some(codec),
            false => codecs.0.push((key.0, key.1, codec)),
        }
    }

    /// The file holds exactly the bytes the codec produced (their length and CRC32C).
    fn compare(
        &mut self,
        c: &ChunkCodec,
        file: &std::fs::File,
    ) -> std::result::Result<(), Failure> {
        use std::os::unix::fs::FileExt;
        self.out.resize(crate::constants::CHUNK_SIZE, 0);
        let (mut at, mut crc) = (0u64, 0u32);
        loop {
            let n = match file.read_at(&mut self.out, at) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Check(format!("reading it back: {e}"))),
            };
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &self.out[..n]);
            at += n as u64;
        }
        self.out.clear();
        if at != c.out_len || crc != c.out_crc {
            return Err(Failure::Check(format!(
                "the file holds {at} bytes (CRC32C {crc:08x}), {} ({:08x}) were written",
                c.out_len, c.out_crc
            )));
        }
        Ok(())
    }

    fn compress(&mut self, c: &mut ChunkCodec) -> std::result::Result<(), Failure> {
        let data = &self.input[..self.len];
        self.out.clear();
        let enc = c.enc.as_mut().expect("encoder lives until the last chunk");
        enc.compress(data, &mut self.out).map_err(Failure::Codec)?;
        c.crc = crc32c::crc32c_append(c.crc, data);
        c.consumed += data.len() as u64;
        if let Some((builder, ..)) = &mut c.sparse {
            builder.feed(data);
        }
        let mut blocks = None;
        if self.last {
            let enc = c.enc.take().expect("checked above");
            blocks = Some(enc.finish(&mut self.out).map_err(Failure::Codec)?);
        }
        c.out_crc = crc32c::crc32c_append(c.out_crc, &self.out);
        c.out_len += self.out.len() as u64;
        if let Some(check) = &mut c.check {
            check.feed(&self.out).map_err(Failure::Check)?;
        }
        if self.last {
            if let Some(check) = c.check.take() {
                check.finish(c.consumed, c.crc).map_err(Failure::Check)?;
            }
        }
        if let Some(blocks) = blocks {
            c.write_index(&blocks);
        }
        Ok(())
    }
}

struct Helper {
    work: rtrb::Producer<Box<ChunkWork>>,
    done: rtrb::Consumer<Box<ChunkWork>>,
    thread: JoinHandle<()>,
    outstanding: usize,
}

/// The maintainer's side of the helpers (or the inline stand-in).
pub(crate) struct Compressors {
    helpers: Vec<Helper>,
    stop: Arc<AtomicBool>,
    /// Work done on the maintainer's thread (no helper), or refused (a helper's ring full).
    inline_done: VecDeque<Box<ChunkWork>>,
    inline_codecs: Codecs,
}

impl Compressors {
    /// Starts `threads` helpers, each pinned to the next of `cores` in turn (none: unpinned).
    /// A helper that cannot start is logged and the work stays inline. Each unparks the
    /// calling thread when it has finished a chunk.
    pub fn start(threads: usize, cores: &[usize]) -> Self {
        let owner = std::thread::current();
        let stop = Arc::new(AtomicBool::new(false));
        let mut helpers = Vec::new();
        for n in 0..threads {
            let core = (!cores.is_empty()).then(|| cores[n % cores.len()]);
            let (work_tx, work_rx) = rtrb::RingBuffer::new(RING);
            let (done_tx, done_rx) = rtrb::RingBuffer::new(RING);
            let (stop, owner) = (stop.clone(), owner.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("wal-compress-{n}"))
                .spawn(move || helper(work_rx, done_tx, &stop, core, &owner));
            match spawned {
                Ok(thread) => helpers.push(Helper {
                    work: work_tx,
                    done: done_rx,
                    thread,
                    outstanding: 0,
                }),
                Err(e) => log::warn!("compression helper {n} did not start ({e}); inline"),
            }
        }
        Compressors {
            helpers,
            stop,
            inline_done: VecDeque::new(),
            inline_codecs: Codecs::default(),
        }
    }

    /// Helper threads running.
    pub fn threads(&self) -> usize {
        self.helpers.len()
    }

    /// Chunks at helpers.
    pub fn outstanding(&self) -> usize {
        self.helpers.iter().map(|h| h.outstanding).sum()
    }

    /// Hands `w` to helper `to` (the one holding its segment's codec), else to the least
    /// busy one, or does it now when there is none; returns where it went (`INLINE`: here).
    pub fn submit(&mut self, mut w: Box<ChunkWork>, to: Option<usize>) -> usize {
        let pick = to
            .filter(|&h| h < self.helpers.len())
            .or_else(|| (0..self.helpers.len()).min_by_key(|&h| self.helpers[h].outstanding));
        let Some(at) = pick else {
            w.run(&mut self.inline_codecs);
            self.inline_done.push_back(w);
            return INLINE;
        };
        let h = &mut self.helpers[at];
        match h.work.push(w) {
            Ok(()) => {
                h.outstanding += 1;
                h.thread.thread().unpark();
            }
            Err(rtrb::PushError::Full(mut back)) => {
                // Never expected: each freeze keeps at most MAX_AWAY chunks away.
                back.result = Err(Failure::Check("compression helper queue full".into()));
                self.inline_done.push_back(back);
            }
        }
        at
    }

    /// Drops the codec helper `at` keeps for the freeze in `slot` of segment `index` (the
    /// freeze ended early). Queued behind that freeze's chunks, so it finds the codec.
    pub fn release(&mut self, slot: u32, index: u64, at: usize) {
        let w = Box::new(ChunkWork {
            slot,
            index,
            codec: None,
            input: Box::default(),
            len: 0,
            out: Vec::new(),
            last: false,
            read_slot: None,
            write_slot: 0,
            read_back: None,
            release: true,
            result: Ok(()),
        });
        self.submit(w, Some(at));
    }

    /// The next finished chunk, if any.
    pub(crate) fn take_done(&mut self) -> Option<Box<ChunkWork>> {
        if let Some(w) = self.inline_done.pop_front() {
            return Some(w);
        }
        for h in &mut self.helpers {
            if let Ok(w) = h.done.pop() {
                h.outstanding -= 1;
                return Some(w);
            }
        }
        None
    }
}

impl Drop for Compressors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for h in self.helpers.drain(..) {
            h.thread.thread().unpark();
            let _ = h.thread.join();
        }
    }
}

fn helper(
    mut work: rtrb::Consumer<Box<ChunkWork>>,
    mut done: rtrb::Producer<Box<ChunkWork>>,
    stop: &AtomicBool,
    core: Option<usize>,
    owner: &std::thread::Thread,
) {
    match core {
        Some(core) if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) => {
            log::warn!("could not pin a compression helper to core {core}");
        }
        Some(_) => {}
        // Spawned by the pinned maintainer, it would inherit its one core.
        None => unpin(),
    }
    if let Err(e) = crate::io::set_nice(HELPER_NICE) {
        log::warn!("compression helper keeps normal priority: {e}");
    }
    let mut codecs = Codecs::default();
    loop {
        match work.pop() {
            Ok(mut w) => {
                // An LZ4 call does not panic, but a panic here must not strand the freeze.
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| w.run(&mut codecs)));
                if ran.is_err() {
                    w.result = Err(Failure::Check("compression helper panicked".into()));
                }
                // The ring holds as many as the work ring: there is room.
                if done.push(w).is_err() {
                    log::error!("compression helper: result ring full");
                    return;
                }
                owner.unpark();
            }
            Err(_) if stop.load(Ordering::Acquire) || work.is_abandoned() => return,
            Err(_) => std::thread::park_timeout(PARK),
        }
    }
}

/// Lets the calling thread run on every online core.
pub(crate) fn unpin() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cores.min(libc::CPU_SETSIZE as usize) {
        // SAFETY: c is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set outlives the call.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        log::warn!(
            "compression helper keeps the maintainer's cores: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(codec: Option<Box<ChunkCodec>>, data: &[u8], last: bool) -> Box<ChunkWork> {
        let mut input = vec![0u8; data.len()].into_boxed_slice();
        input.copy_from_slice(data);
        Box::new(ChunkWork {
            slot: 0,
            index: 7,
            codec,
            input,
            len: data.len(),
            out: Vec::new(),
            last,
            read_slot: Some(0),
            write_slot: 0,
            read_back: None,
            release: false,
            result: Ok(()),
        })
    }

    fn wait_done(c: &mut Compressors) -> Box<ChunkWork> {
        loop {
            if let Some(w) = c.take_done() {
                return w;
            }
            std::thread::yield_now();
        }
    }

    /// A segment whose chunks are all queued at once on a helper (the codec with the first,
    /// kept there until the last) decodes to itself, and the codec comes home with the last.
    #[test]
    fn a_helper_compresses_a_segment_chunk_by_chunk() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 97) as u8).collect();
        let mut c = Compressors::start(2, &[]);
        assert_eq!(c.threads(), 2);
        let c0 = Compression::default();
        let mut codec = Some(Box::new(
            ChunkCodec::new(c0, 1, data.len() as u64, true, None).unwrap(),
        ));
        let mut frame = Vec::new();
        let chunks: Vec<&[u8]> = data.chunks(1 << 20).collect();
        let mut at = None;
        for (k, chunk) in chunks.iter().enumerate() {
            at = Some(c.submit(work(codec.take(), chunk, k + 1 == chunks.len()), at));
        }
        assert_eq!(c.outstanding(), chunks.len());
        for k in 0..chunks.len() {
            let w = wait_done(&mut c);
            assert!(w.result.is_ok());
            assert_eq!(w.codec.is_some(), k + 1 == chunks.len());
            frame.extend_from_slice(&w.out);
        }
        assert_eq!(c.outstanding(), 0);
        let mut back = Vec::new();
        use std::io::Read;
        crate::codec::lz4::FrameDecoder::new(&frame[..], std::path::Path::new("t"))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
    }

    /// A freeze that ends with its codec still kept for it (chunks were queued when it
    /// failed) has it released, not kept for ever.
    #[test]
    fn a_released_codec_is_dropped() {
        let mut c = Compressors::start(0, &[]);
        let codec =
            Box::new(ChunkCodec::new(Compression::default(), 1, 1 << 21, true, None).unwrap());
        let at = c.submit(work(Some(codec), &[7u8; 1 << 20], false), None);
        assert!(wait_done(&mut c).codec.is_none(), "kept for the next chunk");
        assert_eq!(c.inline_codecs.0.len(), 1);
        c.release(0, 7, at);
        let back = wait_done(&mut c);
        assert!(back.release && back.result.is_ok());
        assert!(c.inline_codecs.0.is_empty());
    }

    /// Content shorter than the frame declares fails (LZ4F refuses to end the frame), and the
    /// failure comes back with the work instead of being lost on the helper.
    #[test]
    fn a_failed_chunk_comes_back_with_its_error() {
        let mut c = Compressors::start(0, &[]);
        let codec = Box::new(ChunkCodec::new(Compression::default(), 1, 10, true, None).unwrap());
        assert_eq!(c.submit(work(Some(codec), b"four", true), None), INLINE);
        let w = wait_done(&mut c);
        assert!(w.result.is_err());
    }
}
