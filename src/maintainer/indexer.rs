//! The indexer: a helper thread of the maintainer that writes the sparse index of each hot
//! segment once it is persisted (sealed, truncated, durable: nothing writes to it any more),
//! so that a seek into the hot window reads one interval instead of the segment
//! (docs/FORMAT.md, "Sparse index"). It reads the file's record headers from the page cache at
//! low priority, off the maintainer's loop, which only hands it the segment's index through a
//! ring. A segment frozen before its turn comes is skipped (the freeze indexes the cold file);
//! one whose index is never written is read from its header, as before.
//!
//! Between those, it follows the active segment (the writer's at the start of the run, then
//! the one after the last persisted): every
//! `PARK` it walks the record headers written to the file since its last look and, when it
//! found a new interval, writes the index of what it walked so far, so that a seek into the
//! live end of the log scans at most one interval plus what arrived since. What it reads
//! there may be a record being written: the index is checked by the records when it is used,
//! and a walk stuck on a header it read half-written starts again from its last entry.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::segment::names::hot_name;
use crate::segment::sparse_index::{index_hot, write_index, IndexBuilder};

/// Persisted segments that may wait; beyond, one is left to the scrub.
const RING: usize = 64;
/// Tags a message of the ring as "the active segment is this one" (not "persisted").
const ACTIVE: u64 = 1 << 63;
/// Low priority, as the compression helpers.
const NICE: i32 = 10;
/// How long an idle indexer sleeps before it looks at the active segment (and for a stop it
/// was not woken for) again.
const PARK: Duration = Duration::from_millis(50);
/// Bytes of the active segment read at a time.
const READ: usize = 1 << 20;
/// The first read of a look.
const FIRST_READ: usize = 16 << 10;
/// Looks in a row at the same stop before the walk starts again from its last entry (a stop
/// is normally the end of what is written: a quiet log stays there).
const STUCK_LOOKS: u32 = 20;

/// The maintainer's end.
pub(crate) struct Indexer {
    tx: rtrb::Producer<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    /// Starts the thread for the log in `dir`; `None` (logged) if it cannot start.
    pub fn start(dir: PathBuf) -> Option<Self> {
        let (tx, mut rx) = rtrb::RingBuffer::<u64>::new(RING);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-indexer".into())
            .spawn(move || {
                super::compressor::unpin(); // spawned by the pinned maintainer
                if let Err(e) = crate::io::set_nice(NICE) {
                    log::warn!("indexer keeps normal priority: {e}");
                }
                let mut active: Option<ActiveWalk> = None;
                while !flag.load(Ordering::Acquire) {
                    match rx.pop() {
                        Ok(tagged) if tagged & ACTIVE != 0 => {
                            let index = tagged & !ACTIVE;
                            if active.as_ref().map_or(true, |a| a.index < index) {
                                active = Some(ActiveWalk::new(index));
                            }
                        }
                        Ok(index) => {
                            if let Err(e) = index_hot(&dir, index) {
                                log::warn!("segment {index}: sparse index not written: {e}");
                            }
                            if active.as_ref().map_or(true, |a| a.index <= index) {
                                active = Some(ActiveWalk::new(index + 1));
                            }
                        }
                        Err(_) => {
                            if let Some(a) = active.as_mut() {
                                if let Err(e) = a.look(&dir) {
                                    log::debug!("active segment {}: {e}", a.index);
                                }
                            }
                            std::thread::park_timeout(PARK);
                        }
                    }
                }
            });
        match spawned {
            Ok(t) => Some(Indexer {
                tx,
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                log::warn!("the indexer did not start ({e}); hot segments are not indexed");
                None
            }
        }
    }

    /// Hands over persisted segment `index` (dropped, for the scrub to index, if the ring is
    /// full); the one after it is then followed as the active segment.
    pub fn offer(&mut self, index: u64) {
        assert!(index & ACTIVE == 0, "segment indexes stay below 2^63");
        self.send(index);
    }

    /// Has it follow segment `index` as the active one (at the start of a run: before its
    /// first persist, the active segment is the one the open left the writer in).
    pub fn follow(&mut self, index: u64) {
        assert!(index & ACTIVE == 0, "segment indexes stay below 2^63");
        self.send(index | ACTIVE);
    }

    fn send(&mut self, message: u64) {
        if self.tx.push(message).is_ok() {
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The indexer's walk of the active segment.
struct ActiveWalk {
    index: u64,
    file: Option<File>,
    builder: IndexBuilder,
    /// Entries in the index last written.
    written: usize,
    /// Where the walk stopped at the last look, and how many looks in a row it stopped there.
    stop: (u64, u32),
    buf: Vec<u8>,
}

impl ActiveWalk {
    fn new(index: u64) -> Self {
        ActiveWalk {
            index,
            file: None,
            builder: IndexBuilder::new(),
            written: 0,
            stop: (0, 0),
            buf: vec![0u8; READ],
        }
    }

    /// Walks what was written since the last look; writes the index when it found more.
    fn look(&mut self, dir: &Path) -> std::io::Result<()> {
        if self.builder.sealed() {
            return Ok(()); // all walked: persist indexes it for good
        }
        let file = match &self.file {
            Some(f) => f,
            None => match File::open(dir.join(hot_name(self.index))) {
                Ok(f) => self.file.insert(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        let len = file.metadata()?.len();
        if self.builder.stopped() {
            self.builder.continue_from_stop();
        }
        let buf = &mut self.buf;
        // From a stop, a little first: a quiet log has nothing new to read.
        let mut want = FIRST_READ;
        while !self.builder.stopped() && !self.builder.sealed() {
            let at = self.builder.position();
            if at >= len {
                break;
            }
            let n = file.read_at(&mut buf[..want.min((len - at) as usize)], at)?;
            want = READ;
            if n == 0 {
                break;
            }
            self.builder.feed(&buf[..n]);
        }
        if self.builder.stopped() {
            let at = self.builder.record_offset();
            self.stop = match self.stop {
                (s, looks) if s == at => (s, looks + 1),
                _ => (at, 1),
            };
            if self.stop.1 >= STUCK_LOOKS {
                // Found again unless it was read half-written; written again only if the walk
                // then finds more.
                self.builder.rewind_to_last_entry();
                self.stop = (0, 0);
            }
        }
        if self.builder.entries() > self.written {
            if let Some(idx) = self.builder.snapshot_plain(len) {
                write_index(dir, self.index, &idx)?;
                self.written = self.builder.entries();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::format::Framing;
    use crate::segment::sparse_index::{read_index, Content, INTERVAL};
    use crate::segment::{ChainPoint, SegmentWriter};

    /// The walk follows a segment as it is written, one look at a time, through a record it
    /// reads half-written, and ends at its seal.
    #[test]
    fn the_active_walk_indexes_what_is_written_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(hot_name(0));
        let mut w =
            SegmentWriter::create_framed(dir.path(), 0, 4 << 20, Framing::Timed, ChainPoint::START)
                .unwrap();
        let mut walk = ActiveWalk::new(0);
        walk.look(dir.path()).unwrap(); // the header only: nothing to index yet
        assert!(read_index(dir.path(), 0).is_none());
        let append = |w: &mut SegmentWriter, n: u64| {
            for _ in 0..n {
                let seq = w.chain().next_seq;
                w.append_at(1000 + seq, &[seq as u8; 100]).unwrap();
            }
            w.sync().unwrap();
        };
        let len = std::fs::metadata(&path).unwrap().len();
        let mut entries = 0;
        for round in 0..4 {
            append(&mut w, 3000); // about 5 intervals a round
            walk.look(dir.path()).unwrap();
            let idx = read_index(dir.path(), 0).unwrap();
            assert_eq!((idx.content, idx.cold_len), (Content::Plain, len));
            assert!(idx.entries.len() > entries, "round {round}");
            entries = idx.entries.len();
            // Up to where it is written: the last entry is within the last interval.
            let end = w.used_len();
            assert!(idx.entries.last().unwrap().offset + 2 * INTERVAL > end);
            let at = idx.entries.last().unwrap();
            let target = crate::logdir::jump::Target::Seq(at.seq);
            let near = crate::logdir::jump::hot_entry_near(dir.path(), 0, len, target).unwrap();
            assert_eq!(near.map(|(_, e)| e), Some(*at));
        }
        // A header half-written where the walk stops (its seq, a zero length): after its looks
        // it starts again from its last entry, and goes on once the record is whole.
        let stop = w.used_len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let next = w.chain().next_seq;
        file.write_all_at(&next.to_le_bytes(), stop).unwrap(); // a seq, and no length
        for _ in 0..STUCK_LOOKS + 1 {
            walk.look(dir.path()).unwrap();
        }
        file.write_all_at(&[0u8; 8], stop).unwrap();
        append(&mut w, 3000);
        w.seal();
        // It read the half-written header as a record: stuck on what followed it, it starts
        // again from its last entry within STUCK_LOOKS looks.
        for _ in 0..=STUCK_LOOKS {
            walk.look(dir.path()).unwrap();
        }
        assert!(walk.builder.sealed());
        let idx = read_index(dir.path(), 0).unwrap();
        assert!(idx.entries.len() > entries);
        let mut r = crate::segment::SegmentReader::new(File::open(&path).unwrap(), &path).unwrap();
        let mut buf = Vec::new();
        let mut starts = std::collections::HashMap::new();
        while let Some(i) = r.next_record(&mut buf).unwrap() {
            starts.insert(i.offset, i.seq);
        }
        for e in &idx.entries {
            assert_eq!(starts.get(&e.offset), Some(&e.seq), "{e:?}");
        }
    }
}
