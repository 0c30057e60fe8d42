//! The indexer: a helper thread of the maintainer that writes the sparse index of each hot
//! segment once it is persisted (sealed, truncated, durable: nothing writes to it any more),
//! so that a seek into the hot window reads one interval instead of the segment
//! (docs/FORMAT.md, "Sparse index"). It reads the file's record headers from the page cache at
//! low priority, off the maintainer's loop, which only hands it the segment's index through a
//! ring. A segment frozen before its turn comes is skipped (the freeze indexes the cold file);
//! one whose index is never written is read from its header, as before.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::segment::sparse_index::index_hot;

/// Persisted segments that may wait; beyond, one is left to the scrub.
const RING: usize = 64;
/// Low priority, as the compression helpers.
const NICE: i32 = 10;
/// How long an idle indexer sleeps before looking for a stop it was not woken for.
const PARK: Duration = Duration::from_millis(50);

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
                while !flag.load(Ordering::Acquire) {
                    match rx.pop() {
                        Ok(index) => {
                            if let Err(e) = index_hot(&dir, index) {
                                log::warn!("segment {index}: sparse index not written: {e}");
                            }
                        }
                        Err(_) => std::thread::park_timeout(PARK),
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
    /// full).
    pub fn offer(&mut self, index: u64) {
        if self.tx.push(index).is_ok() {
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
