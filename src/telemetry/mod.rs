//! Telemetry (the spec's `ENABLE_FS1_METRICS`). With the cargo feature `fs1-metrics` (or its
//! alias `ENABLE_FS1_METRICS`), HDR histograms (3 significant digits, 1 ns ..= 60 s,
//! allocated at start-up) time the maintainer's work and the writer's rollovers. Without it,
//! every call here is an empty inline function on a zero-sized type: the default build links
//! no hdrhistogram and the writer's hot path is the same machine code.
//!
//! The maintainer records into histograms it owns, without locks or atomics per sample, and
//! every 100 ms (and when it stops) adds them into a shared, mutex-protected set with
//! `try_lock`, so a reader never stalls it. The writer's histograms live in the `Recorder`
//! (one thread) and are merged into the snapshot when it is read.

mod export;

pub use export::{ArchiveCounters, Counters, MetricsSnapshot};

/// CPU time the calling thread has used, in ns (`CLOCK_THREAD_CPUTIME_ID`; a system call).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Names of the histograms, in export order: (key, help text).
pub const HISTOGRAMS: [(&str, &str); 8] = [
    (
        "loop_latency_ns",
        "one turn of the maintainer loop that did work",
    ),
    (
        "close_latency_ns",
        "persist: from the writer's seal to the segment closed and durable",
    ),
    (
        "fdatasync_latency_ns",
        "one fdatasync (persist, freeze tmp, active-segment sync)",
    ),
    (
        "compress_latency_ns",
        "one freeze: first read to the tmp file synced",
    ),
    (
        "compress_throughput_bytes_per_second",
        "one freeze: segment bytes per second of compress_latency",
    ),
    (
        "rollover_latency_ns",
        "writer: sealing a segment and activating the next one",
    ),
    (
        "prepared_wait_ns",
        "writer: waiting for, or making, a segment when none was prepared",
    ),
    (
        "upload_latency_ns",
        "archive: one segment's upload, from the first byte sent to its check in the store",
    ),
];

/// Index of a histogram in [`HISTOGRAMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Hist {
    /// One busy loop turn.
    Loop = 0,
    /// Seal to closed.
    Close = 1,
    /// One fdatasync.
    Fdatasync = 2,
    /// One freeze.
    Compress = 3,
    /// One freeze's throughput (bytes per second).
    CompressThroughput = 4,
    /// One writer rollover.
    Rollover = 5,
    /// A writer stall.
    PreparedWait = 6,
    /// One archive upload (put and check).
    Upload = 7,
}

#[cfg(feature = "fs1-metrics")]
mod imp {
    use super::{Hist, HISTOGRAMS};
    use hdrhistogram::Histogram;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A point in time. `Instant` reads the clock through the vDSO: no system call.
    pub type Stamp = Instant;

    /// Now.
    #[inline]
    pub fn now() -> Stamp {
        Instant::now()
    }

    /// Nanoseconds since `s`.
    #[inline]
    pub(crate) fn since_ns(s: Stamp) -> u64 {
        s.elapsed().as_nanos() as u64
    }

    /// Nothing to calibrate.
    pub(crate) fn init() {}

    /// A set of the histograms of [`HISTOGRAMS`].
    #[derive(Clone)]
    pub struct HistSet(Vec<Histogram<u64>>);

    impl HistSet {
        /// Allocates every histogram (1 ns ..= 60 s, 3 significant digits).
        pub fn new() -> Self {
            HistSet(
                HISTOGRAMS
                    .iter()
                    .map(|_| {
                        Histogram::new_with_bounds(1, 60_000_000_000, 3)
                            .expect("valid histogram bounds")
                    })
                    .collect(),
            )
        }

        /// Records a value (saturating at the bounds).
        #[inline]
        pub fn record(&mut self, h: Hist, value: u64) {
            self.0[h as usize].saturating_record(value.max(1));
        }

        /// Adds `other` into this set.
        pub fn add(&mut self, other: &HistSet) {
            for (a, b) in self.0.iter_mut().zip(&other.0) {
                let _ = a.add(b);
            }
        }

        fn reset(&mut self) {
            self.0.iter_mut().for_each(Histogram::reset);
        }

        /// The histogram `h`.
        pub fn get(&self, h: Hist) -> &Histogram<u64> {
            &self.0[h as usize]
        }

        /// All histograms, in [`HISTOGRAMS`] order.
        pub fn all(&self) -> &[Histogram<u64>] {
            &self.0
        }
    }

    impl Default for HistSet {
        fn default() -> Self {
            Self::new()
        }
    }

    /// The shared side, read by snapshots.
    pub type Shared = Arc<Mutex<HistSet>>;

    /// Histograms a single thread owns, published into a shared set at a bounded rate.
    pub struct LocalHists {
        local: HistSet,
        shared: Shared,
        last_publish: Instant,
    }

    /// How often the maintainer publishes its histograms.
    const PUBLISH_EVERY: Duration = Duration::from_millis(100);

    impl LocalHists {
        /// A local set publishing into `shared`.
        pub fn new(shared: Shared) -> Self {
            LocalHists {
                local: HistSet::new(),
                shared,
                last_publish: Instant::now(),
            }
        }

        /// Records a value.
        #[inline]
        pub fn record(&mut self, h: Hist, value: u64) {
            self.local.record(h, value);
        }

        /// Records the time since `start`.
        #[inline]
        pub(crate) fn record_since(&mut self, h: Hist, start: Stamp) {
            self.local.record(h, since_ns(start));
        }

        /// Publishes if due (or if `force`), without blocking: a busy lock means next time.
        pub(crate) fn maybe_publish(&mut self, force: bool) {
            if !force && self.last_publish.elapsed() < PUBLISH_EVERY {
                return;
            }
            let guard = if force {
                self.shared.lock().ok()
            } else {
                self.shared.try_lock().ok()
            };
            if let Some(mut g) = guard {
                g.add(&self.local);
                self.local.reset();
                self.last_publish = Instant::now();
            }
        }

        /// What has not been published yet (the writer's own set, read on its thread).
        pub fn local(&self) -> &HistSet {
            &self.local
        }
    }

    /// A new shared set.
    pub fn shared() -> Shared {
        Arc::new(Mutex::new(HistSet::new()))
    }

    /// A copy of what has been published into `shared`.
    pub fn published(shared: &Shared) -> HistSet {
        shared.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

#[cfg(not(feature = "fs1-metrics"))]
mod imp {
    use super::Hist;

    /// Nothing: telemetry is compiled out.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Stamp;

    /// Nothing.
    #[inline(always)]
    pub fn now() -> Stamp {
        Stamp
    }

    /// Always 0.
    #[inline(always)]
    pub(crate) fn since_ns(_: Stamp) -> u64 {
        0
    }

    /// Nothing to calibrate.
    pub(crate) fn init() {}

    /// Compiled out: holds nothing.
    #[derive(Clone, Default)]
    pub struct HistSet;

    impl HistSet {
        /// Nothing to allocate.
        pub fn new() -> Self {
            HistSet
        }

        /// Nothing.
        #[inline(always)]
        pub fn record(&mut self, _: Hist, _: u64) {}

        /// Nothing.
        pub fn add(&mut self, _: &HistSet) {}
    }

    /// Compiled out.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Shared;

    /// Compiled out: every call is empty.
    pub struct LocalHists;

    impl LocalHists {
        /// Nothing.
        pub fn new(_: Shared) -> Self {
            LocalHists
        }

        /// Nothing.
        #[inline(always)]
        pub fn record(&mut self, _: Hist, _: u64) {}

        /// Nothing.
        #[inline(always)]
        pub(crate) fn record_since(&mut self, _: Hist, _: Stamp) {}

        /// Nothing.
        #[inline(always)]
        pub(crate) fn maybe_publish(&mut self, _: bool) {}

        /// The empty set.
        pub fn local(&self) -> &HistSet {
            &HistSet
        }
    }

    /// Compiled out.
    pub fn shared() -> Shared {
        Shared
    }

    /// The empty set.
    pub fn published(_: &Shared) -> HistSet {
        HistSet
    }
}

pub use imp::*;
