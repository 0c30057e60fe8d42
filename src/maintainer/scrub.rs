//! The background scrub: since the open no longer reads sealed segments (it walks them by
//! their summaries), a helper of the maintainer verifies them in full, one segment per step,
//! in index order, at a bounded read rate, over and over (a pause of `scrub_interval` between
//! passes). Cold segments are decoded; sealed hot ones read as they are. Each segment's
//! records and chain are checked from its header to its seal, and its summary (entry of
//! `cold.summary`, or header and seal) must say what its records say.
//!
//! It runs on its own thread at `SCHED_IDLE`, pinned with the maintainer, and reads through
//! its own io_uring ring (or blocking calls where io_uring is unavailable): it never queues
//! behind, or ahead of, the maintainer's persist, drain and freeze work. The only thing it
//! writes is the sparse index of a cold segment that verified without one (a cache: see
//! docs/FORMAT.md, "Sparse index").
//! Damage it finds is logged with file and offset, counted (`scrub_corruptions`), and turns
//! health `Degraded`; `walctl verify` remains the full check of the chain across segments.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::config::Config;
use crate::constants::CHUNK_SIZE;
use crate::error::{Corruption, Error, Result};
use crate::io::{open_backend, IoBackend, Op, Target};
use crate::logdir::summary::{hot_summary, FileStamp, SegmentSummary, SummaryIndex};
use crate::logdir::{list_dir, SegmentEntry, Tier};
use crate::segment::{SegmentEnd, SegmentReader};

/// How often a paused scrub looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Starts the scrub thread if `config.scrub_rate` is set.
pub(crate) fn start(config: &Config, shared: Arc<Shared>) -> Result<Option<JoinHandle<()>>> {
    let Some(rate) = config.scrub_rate else {
        return Ok(None);
    };
    let config = config.clone();
    let handle = std::thread::Builder::new()
        .name("wal-scrub".into())
        .spawn(move || {
            if let Some(core) = config.core {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            if let Err(e) = crate::io::set_idle_priority() {
                log::warn!("scrub: could not drop to SCHED_IDLE: {e}");
            }
            Scrub {
                dir: config.dir.clone(),
                backend: config.backend,
                rate: rate.max(1),
                interval: config.scrub_interval,
                shared,
                reported: HashSet::new(),
            }
            .run();
        })
        .map_err(|e| Error::io("spawn scrub", PathBuf::new(), e))?;
    Ok(Some(handle))
}

struct Scrub {
    dir: PathBuf,
    backend: crate::io::BackendChoice,
    rate: u64,
    interval: Duration,
    shared: Arc<Shared>,
    /// Damaged files already counted (by index and stamp): counted once, not every pass.
    reported: HashSet<(u64, FileStamp)>,
}

/// Why a segment's check ended without a verdict.
enum Skip {
    /// The maintainer stops.
    Stopped,
    /// The file went away (frozen, deleted by retention) or could not be read.
    Gone,
}

impl Scrub {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn run(mut self) {
        while !self.stopping() {
            self.pass();
            if self.stopping() {
                return;
            }
            self.shared
                .stats
                .scrub_passes
                .fetch_add(1, Ordering::Relaxed);
            let until = Instant::now() + self.interval;
            while !self.stopping() && Instant::now() < until {
                std::thread::sleep(STOP_POLL.min(until.saturating_duration_since(Instant::now())));
            }
        }
    }

    /// One pass over the segments listed now.
    fn pass(&mut self) {
        let listing = match list_dir(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("scrub: {e}");
                return;
            }
        };
        let index = SummaryIndex::load(&self.dir);
        for entry in &listing.segments {
            if self.stopping() {
                return;
            }
            let summary = match entry.tier {
                Tier::Cold => index.get(entry),
                // Only a sealed, persisted hot segment: the active one is still written.
                Tier::Hot => match hot_summary(entry) {
                    Ok(Some(s)) => Some(s),
                    _ => continue,
                },
            };
            let stats = &self.shared.stats;
            match self.check(entry, summary) {
                Ok(Ok(bytes)) => {
                    stats.scrubbed_segments.fetch_add(1, Ordering::Relaxed);
                    stats.scrubbed_bytes.fetch_add(bytes, Ordering::Relaxed);
                    self.index_if_missing(entry);
                }
                Ok(Err(e)) => {
                    if self.reported.insert((entry.index, entry.stamp)) {
                        log::error!("scrub: {e}");
                        stats.scrub_corruptions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(Skip::Stopped) => return,
                Err(Skip::Gone) => {}
            }
        }
    }

    /// Writes the sparse index of a sealed segment that just verified, if it has no usable
    /// one (restored from an archive, persisted before the open, or its index lost): seeks into
    /// it then read one interval.
    fn index_if_missing(&self, entry: &SegmentEntry) {
        use crate::segment::sparse_index::{index_hot, read_index, Content};
        let content = match entry.tier {
            Tier::Cold => Content::Compressed,
            Tier::Hot => Content::Plain,
        };
        let usable = read_index(&self.dir, entry.index)
            .is_some_and(|idx| idx.content == content && idx.cold_len == entry.file_len);
        if usable {
            return;
        }
        let built = match entry.tier {
            Tier::Cold => crate::codec::reindex_cold(&self.dir, entry.index),
            Tier::Hot => {
                index_hot(&self.dir, entry.index).map_err(|e| Error::io("index", &entry.path, e))
            }
        };
        match built {
            Ok(true) => log::info!("scrub: {}: sparse index rebuilt", entry.path.display()),
            Ok(false) => {} // linked blocks (frozen before the index existed), or frozen since
            Err(e) => log::warn!("scrub: {e}; its sparse index not rebuilt"),
        }
    }

    /// Reads one segment in full: `Ok(Ok(bytes read))` if it verifies, `Ok(Err(corruption))`
    /// if not.
    fn check(
        &self,
        entry: &SegmentEntry,
        summary: Option<SegmentSummary>,
    ) -> std::result::Result<Result<u64>, Skip> {
        let path = &entry.path;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(_) => return Err(Skip::Gone),
        };
        let be = match open_backend(self.backend, 4, None, None, None) {
            Ok((be, _)) => be,
            Err(e) => {
                log::warn!("scrub: I/O setup: {e}");
                return Err(Skip::Gone);
            }
        };
        let reader = PacedRingReader {
            be,
            file,
            offset: 0,
            rate: self.rate,
            started: Instant::now(),
            shared: self.shared.clone(),
        };
        let src = BufReader::with_capacity(CHUNK_SIZE, reader);
        let verdict = (|| -> Result<u64> {
            let src: Box<dyn Read + Send> = match entry.tier {
                Tier::Hot => Box::new(src),
                Tier::Cold => crate::codec::open_cold_reader(src, path)?,
            };
            check_segment(src, entry, summary)
        })();
        match verdict {
            _ if self.stopping() => Err(Skip::Stopped),
            Err(e @ Error::Corrupt { .. }) => Ok(Err(e)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(Skip::Gone)
            }
            Err(e) => {
                log::warn!("scrub: {e}");
                Err(Skip::Gone)
            }
            Ok(_) => Ok(Ok(entry.file_len)),
        }
    }
}

/// Checks a segment's records from its header to its seal, and that its summary (if any)
/// says the same.
fn check_segment(
    src: Box<dyn Read + Send>,
    entry: &SegmentEntry,
    summary: Option<SegmentSummary>,
) -> Result<u64> {
    let path = &entry.path;
    let mut r = SegmentReader::new(src, path)?;
    if r.header().index != entry.index {
        return Err(Error::corrupt(
            path,
            0,
            Corruption::BadHeader("segment index does not match the file name"),
        ));
    }
    let mut buf = Vec::new();
    while r.next_record(&mut buf)?.is_some() {}
    let unsealed = |offset| {
        Err(Error::corrupt(
            path,
            offset,
            Corruption::BadSeal("sealed segment without a seal"),
        ))
    };
    let seal = match r.end().cloned() {
        Some(SegmentEnd::Sealed(seal)) => seal,
        Some(SegmentEnd::Broken { offset, kind, .. }) => {
            return Err(Error::corrupt(path, offset, kind));
        }
        Some(SegmentEnd::Open { offset }) => return unsealed(offset),
        None => return unsealed(0),
    };
    if entry.tier == Tier::Cold {
        r.expect_end_of_stream()?;
    }
    let read = SegmentSummary::new(r.header(), &seal);
    if summary.is_some_and(|s| s != read) {
        return Err(Error::corrupt(
            path,
            0,
            Corruption::BadFrame(format!(
                "its summary ({summary:?}) differs from its records ({read:?})"
            )),
        ));
    }
    Ok(seal.end)
}

/// `Read` over a file through an io_uring ring (or the blocking backend), at most `rate`
/// bytes per second, failing once the maintainer stops.
struct PacedRingReader {
    be: Box<dyn IoBackend>,
    file: File,
    offset: u64,
    rate: u64,
    started: Instant,
    shared: Arc<Shared>,
}

impl Read for PacedRingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(std::io::Error::other("scrub stopped"));
        }
        let len = buf.len().min(CHUNK_SIZE);
        if len == 0 {
            return Ok(0);
        }
        let op = Op::read(
            Target::Cold,
            self.file.as_raw_fd(),
            &mut buf[..len],
            self.offset,
            1,
        );
        // SAFETY: `buf` and the file outlive the operation: it is reaped below before this
        // returns (or the backend, dropped with this reader, waits for it).
        unsafe { crate::io::push_chain(self.be.as_mut(), &[op]) }?;
        self.be.submit()?;
        let mut out = Vec::with_capacity(1);
        while out.is_empty() {
            self.be.wait(Duration::from_millis(100))?;
            self.be.reap(&mut out);
        }
        let n = crate::io::check(out[0].result, "read", Path::new("")).map_err(|e| match e {
            Error::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })? as usize;
        self.offset += n as u64;
        // Bounded rate: never ahead of `rate` bytes per second since this file's start.
        let due = Duration::from_secs_f64(self.offset as f64 / self.rate as f64);
        let ahead = due.saturating_sub(self.started.elapsed());
        if !ahead.is_zero() {
            std::thread::sleep(ahead);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// The rate bound: reading `n` bytes at `rate` bytes/s takes at least `n / rate` (a lower
    /// bound: a slow machine only makes it longer), through the io_uring backend.
    #[test]
    fn reads_are_paced_to_the_configured_rate() {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 2 << 20]).unwrap();
        let shared = Arc::new(Shared {
            stats: Default::default(),
            stop: AtomicBool::new(false),
        });
        let (be, _) = open_backend(crate::io::BackendChoice::IoUring, 4, None, None, None)
            .expect("io_uring is required for this test");
        let rate = 8 << 20;
        let mut r = PacedRingReader {
            be,
            file: File::open(f.path()).unwrap(),
            offset: 0,
            rate,
            started: Instant::now(),
            shared,
        };
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 2 << 20);
        assert!(all.iter().all(|&b| b == 7));
        let floor = Duration::from_secs_f64((2 << 20) as f64 / rate as f64);
        assert!(
            r.started.elapsed() >= floor,
            "read 2 MiB in {:?}, faster than {rate} B/s allows",
            r.started.elapsed()
        );
    }
}
