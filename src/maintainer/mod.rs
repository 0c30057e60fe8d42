//! The segment maintainer: one background thread, optionally pinned to a core, that does all
//! the slow filesystem work of the log through one io_uring ring (or the blocking fallback):
//! it persists sealed segments, freezes the oldest hot ones to LZ4 and deletes the oldest
//! cold ones, holding the retention limits. The writer talks to it only through SPSC rings
//! (rtrb) and reads its counters through atomics.
//!
//! ```no_run
//! use wal_recorder::config::Config;
//! use wal_recorder::maintainer::SegmentMaintainer;
//! # fn main() -> wal_recorder::Result<()> {
//! let mut m = SegmentMaintainer::new(Config::new("/var/lib/wal"))?;
//! let mut persist = m.take_persist_queue().expect("taken once");
//! m.start()?;
//! // writer: persist.push(writer.into_sealed()) after each rollover
//! m.stop()?; // drains every queue, then joins
//! # Ok(()) }
//! ```

#[cfg_attr(not(feature = "archive"), allow(dead_code))]
pub(crate) mod archive_gate;
mod budget;
mod compressor;
mod drain;
mod durability;
mod free;
mod freeze;
mod indexer;
mod job;
pub(crate) mod link;
mod persist;
mod retention;
mod scrub;
mod stats;
mod summary_log;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use stats::{Counter, Flag, Health, MaintainerStats};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::segment::SealedSegment;
use worker::Worker;

/// State shared by the handle and the thread.
pub(crate) struct Shared {
    pub stats: MaintainerStats,
    pub stop: AtomicBool,
}

use crate::telemetry;

/// The writer's end of the persist ring.
pub struct PersistQueue {
    tx: rtrb::Producer<SealedSegment>,
}

impl PersistQueue {
    /// Hands a sealed segment to the maintainer; gives it back if the ring is full (the
    /// caller keeps it and retries; never drop a segment). No system call, no allocation.
    #[inline]
    pub fn push(&mut self, seg: SealedSegment) -> std::result::Result<(), SealedSegment> {
        self.tx.push(seg).map_err(|rtrb::PushError::Full(seg)| seg)
    }

    /// Free places in the ring.
    pub fn slots(&self) -> usize {
        self.tx.slots()
    }
}

/// The drain of a staged recorder, made at open (it prepares the first segment on the
/// opening thread) and handed to the maintainer.
pub(crate) struct StagedDrain(drain::Drain);

impl StagedDrain {
    /// A drain over `ring` for the segments of `config.dir`, as configured (`direct_io`,
    /// `zero_fill`).
    pub(crate) fn new(ring: Arc<crate::staging::StagingRing>, config: &Config) -> Self {
        StagedDrain(drain::Drain::new(
            ring,
            config.dir.clone(),
            config.direct_io,
            config.zero_fill,
            config.fault_plan.clone(),
        ))
    }

    /// Creates segment `index`'s file and gives it a zeroed staging buffer.
    pub(crate) fn prepare(&mut self, index: u64) -> Result<crate::segment::PreparedSegment> {
        self.0.prepare(index)
    }
}

/// Operator requests, by path.
struct Requests {
    freeze: rtrb::Producer<PathBuf>,
    free: rtrb::Producer<PathBuf>,
}

/// The maintainer handle. See the module docs.
pub struct SegmentMaintainer {
    shared: Arc<Shared>,
    persist_tx: Option<PersistQueue>,
    requests: Mutex<Requests>,
    worker: Option<Worker>,
    thread: Option<JoinHandle<()>>,
    /// The background scrub ([`scrub`]), when `config.scrub_rate` is set.
    scrub: Option<JoinHandle<()>>,
    /// Kept to start the scrub with.
    config: Config,
    /// The maintainer's published histograms (compiled out without `fs1-metrics`).
    hist_shared: telemetry::Shared,
    /// The recorder's writer link, to latch it if the thread dies.
    link: Option<Arc<link::WriterLink>>,
}

impl SegmentMaintainer {
    /// Validates `config` and builds the rings. Nothing runs until [`Self::start`].
    pub fn new(config: Config) -> Result<Self> {
        Self::with_existing(config, Vec::new(), Vec::new())
    }

    /// As [`Self::new`], with the hot and cold segments already in the directory (from
    /// recovery), oldest first.
    pub fn with_existing(config: Config, hot: Vec<u64>, cold: Vec<u64>) -> Result<Self> {
        let config = config.validated()?;
        if !config.dir.is_dir() {
            return Err(Error::io(
                "open dir",
                &config.dir,
                std::io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let (ptx, prx) = rtrb::RingBuffer::new(config.persist_queue);
        let (ftx, frx) = rtrb::RingBuffer::new(config.request_queue);
        let (dtx, drx) = rtrb::RingBuffer::new(config.request_queue);
        let shared = Arc::new(Shared {
            stats: MaintainerStats::default(),
            stop: AtomicBool::new(false),
        });
        let hist_shared = telemetry::shared();
        #[allow(clippy::clone_on_copy)] // a ZST without fs1-metrics
        let worker = Worker::new(
            config.clone(),
            shared.clone(),
            worker::Rings {
                persist: prx,
                freeze: frx,
                free: drx,
            },
            (hot, cold),
            hist_shared.clone(),
        )?;
        Ok(SegmentMaintainer {
            shared,
            persist_tx: Some(PersistQueue { tx: ptx }),
            requests: Mutex::new(Requests {
                freeze: ftx,
                free: dtx,
            }),
            worker: Some(worker),
            thread: None,
            scrub: None,
            config,
            hist_shared,
            link: None,
        })
    }

    /// As [`Self::with_existing`], serving a recorder's writer through `link`: segments are
    /// prepared ahead into `prepared` and the active segment is synced every
    /// `config.sync_interval`.
    // Each argument is a separate piece the recorder built for it; a struct would only name
    // them twice.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_recorder(
        config: Config,
        hot: Vec<u64>,
        cold: Vec<u64>,
        link: Arc<link::WriterLink>,
        prepared: rtrb::Producer<crate::segment::PreparedSegment>,
        archive: Option<archive_gate::ArchiveGate>,
        drain: Option<StagedDrain>,
        cursor: Option<crate::logdir::cursor::CursorWriter>,
    ) -> Result<Self> {
        let mut m = Self::with_existing(config, hot, cold)?;
        m.link = Some(link.clone());
        if let Some(w) = m.worker.as_mut() {
            w.attach(durability::Durability::new(
                link,
                prepared,
                drain.map(|d| d.0),
                cursor,
            ));
            if let Some(gate) = archive {
                w.attach_archive(gate);
            }
        }
        Ok(m)
    }

    /// The writer's end of the persist ring; `None` after the first call.
    pub fn take_persist_queue(&mut self) -> Option<PersistQueue> {
        self.persist_tx.take()
    }

    /// Spawns the thread `wal-maintainer`, pinned to `config.core` if set (a pinning failure
    /// is reported in the stats and logged, not fatal). Sets up the I/O backend first, so a
    /// failure to do so is returned here.
    pub fn start(&mut self) -> Result<()> {
        let Some(mut worker) = self.worker.take() else {
            return Ok(()); // already started
        };
        worker.open_backend()?;
        self.scrub = scrub::start(&self.config, self.shared.clone())?;
        let shared = self.shared.clone();
        let link = self.link.clone();
        let handle = std::thread::Builder::new()
            .name("wal-maintainer".into())
            .spawn(move || {
                // A panic here (a broken invariant) must not leave the log looking healthy:
                // unwinding drops the worker (its ring first, which waits for the kernel),
                // then the log is latched failed with the panic's message.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
                if let Err(payload) = run {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    log::error!("the segment maintainer died: {msg}; the log is failed");
                    if let Some(link) = link {
                        link.failed.store(true, Ordering::Release);
                    }
                    shared.stats.latch_failed(Error::MaintainerDied(msg));
                }
            })
            .map_err(|e| Error::io("spawn maintainer", PathBuf::new(), e))?;
        self.thread = Some(handle);
        Ok(())
    }

    /// Asks for a segment to be frozen now (it must be a persisted hot segment of this
    /// directory). False if the request ring is full.
    pub fn request_freeze(&self, path: PathBuf) -> bool {
        let mut r = self.requests.lock().expect("request lock");
        r.freeze.push(path).is_ok()
    }

    /// Asks for a cold segment to be deleted now. False if the request ring is full.
    pub fn request_free(&self, path: PathBuf) -> bool {
        let mut r = self.requests.lock().expect("request lock");
        r.free.push(path).is_ok()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &MaintainerStats {
        &self.shared.stats
    }

    /// A copy of the histograms published so far (every 100 ms, and when it stops). Empty
    /// without `fs1-metrics`.
    pub fn histograms(&self) -> telemetry::HistSet {
        telemetry::published(&self.hist_shared)
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.shared.stats.health()
    }

    /// Processes everything queued (persist ring, requests, retention down to the limits),
    /// then stops the thread and joins it. Failed work waiting for a retry is left on disk
    /// (recovery handles it on the next open).
    pub fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.scrub.take() {
            let _ = t.join();
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Err(Error::MaintainerDied("its thread panicked".into()));
            }
        } else if let Some(mut worker) = self.worker.take() {
            // Never started: drain on this thread so nothing queued is lost.
            worker.open_backend()?;
            worker.run();
        }
        Ok(())
    }
}

impl Drop for SegmentMaintainer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::error!("stopping the segment maintainer: {e}");
        }
    }
}
