//! `Config`: what the maintainer (and, later, the recorder) can be told, with documented
//! defaults; every value is checked against the limits of [`crate::constants`].

/// The archive tier's configuration (data only; the tier is `crate::archive`).
#[cfg(feature = "archive")]
pub mod archive;

use std::path::PathBuf;
use std::time::Duration;

use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::fault::FaultPlan;
pub use crate::io::BackendChoice;

/// How cold segments are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// One standard LZ4 frame (content checksum and size): `lz4 -d` restores the segment.
    Frame {
        /// LZ4 level: 0 fast (default), 3..=12 HC.
        level: u32,
    },
    /// LZ4 block mode in our own container (docs/FORMAT.md); read by the reader.
    Block {
        /// LZ4 level: 0 fast (default), 3..=12 HC.
        level: u32,
    },
}

/// Where the writer's mapping lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePath {
    /// The writer appends into a staging buffer in tmpfs (`Config::staging_dir`); the
    /// maintainer drains the new pages into the segment file on disk every `sync_interval`
    /// and at rollover. tmpfs pages are never written back or write-protected, so the writer
    /// never faults, and they outlive a process crash (the default).
    #[default]
    Staged,
    /// The writer maps the segment file on disk itself (for systems without tmpfs or with
    /// too little memory); the maintainer syncs its completed pages.
    Direct,
}

/// What `Recorder::open` accepts at the end of a log (docs/RECOVERY.md), after raft-engine's
/// `RecoveryMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any break that nothing later proves durable and that lost writes can explain ends the
    /// log; what lies beyond it (never reported durable) is moved to `quarantine/`, counted
    /// and reported in [`crate::recovery::Recovered::dropped`] (the default).
    #[default]
    TruncateTail,
    /// Only a torn record at the very end of the last segment; anything else stops the open
    /// (then `walctl repair` decides).
    Strict,
}

impl RecoveryMode {
    /// The reader's rule for this mode.
    pub(crate) fn tail_rule(self) -> crate::logdir::TailRule {
        match self {
            RecoveryMode::TruncateTail => crate::logdir::TailRule::TruncateTail,
            RecoveryMode::Strict => crate::logdir::TailRule::Strict,
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Frame { level: 0 }
    }
}

/// Configuration of a [`crate::maintainer::SegmentMaintainer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The log directory.
    pub dir: PathBuf,
    /// Hot segments kept before the oldest is frozen. Default 8, 1..=`MAX_HOT_SEGMENTS`.
    pub max_segments: usize,
    /// Cold segments kept before the oldest is deleted. Default 64,
    /// 1..=`MAX_COLD_SEGMENTS`.
    pub max_compressed_segments: usize,
    /// First idle backoff step. Default 50 µs.
    pub min_sleep: Duration,
    /// Longest idle sleep. Default 1 ms; at most `MAX_SLEEP_CEILING`.
    pub max_sleep: Duration,
    /// Capacity of the persist ring. Default 64, at most `MAX_PERSIST_QUEUE`.
    pub persist_queue: usize,
    /// Capacity of the freeze and free request rings. Default 32.
    pub request_queue: usize,
    /// Core to pin the maintainer thread to; `None`: not pinned.
    pub core: Option<usize>,
    /// io_uring (default, with fallback) or blocking system calls.
    pub backend: BackendChoice,
    /// Cold segment encoding.
    pub compression: Compression,
    /// Decode every new cold segment's output as it is produced and compare its length and
    /// CRC32C with the segment's before the rename. Default on.
    pub verify_frames: bool,
    /// Threads that compress freezes' chunks (low priority, nice 10; the maintainer keeps all I/O).
    /// 0: compression runs on the maintainer's own loop. Default: 1 on machines of up to
    /// four cores, a quarter of the cores (at most 4) on bigger ones. At most
    /// `MAX_COMPRESS_THREADS`.
    pub compress_threads: usize,
    /// Cores the compression helpers are pinned to, in turn. Empty (default): one helper
    /// shares the maintainer's core (`core`); several are left unpinned.
    pub compress_cores: Vec<usize>,
    /// While the hot backlog exceeds `max_segments` by more than the one segment that starts
    /// a freeze, new freezes at a fast LZ4 level use acceleration 2 per further segment (at
    /// most `MAX_ACCELERATION`), trading ratio for speed; reported as `freeze_acceleration`.
    /// Default on.
    pub auto_accelerate: bool,
    /// Size of each segment file (recorder). Default 64 MiB,
    /// `MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE`.
    pub segment_size: u64,
    /// Staged: the longest a new record waits before the maintainer starts draining it
    /// (it polls for new records at most this far apart); with `continuous_drain` a drain
    /// starts as soon as the previous one's fdatasync completed and new records exist, so
    /// this only bounds the wait of a record that finds the maintainer idle. Direct: how
    /// often the completed pages are synced. Default 1 ms; at most `MAX_SYNC_INTERVAL`.
    pub sync_interval: Duration,
    /// Staged mode: group commit (default true). The next drain starts as soon as the
    /// previous one completed and the writer appended meanwhile: a record is durable about
    /// one write and one fdatasync after it was appended while the device keeps up, and
    /// batches grow by themselves when it slows. False: one drain per `sync_interval`.
    pub continuous_drain: bool,
    /// Continuous drain: the shortest time from the start of one drain to the start of the
    /// next, and the longest an idle maintainer sleeps between looks for new records.
    /// Smaller: lower durability lag, more maintainer CPU (each drain costs the maintainer
    /// some 60 µs of CPU on the measured VM; docs/DURABILITY.md, "Durability timing"). Default
    /// `DEFAULT_DRAIN_GAP`; at most `sync_interval`.
    pub drain_gap: Duration,
    /// Direct mode only: whether the timer also syncs the completed pages of the active
    /// segment while the writer is busy (default true). Measured cost (docs/PERFORMANCE.md): on ext4 the
    /// writer's next stores fault on pages the sync cleaned, milliseconds at p99. With false,
    /// the active segment is synced only when the writer has been idle for a whole interval
    /// (and on `sync()`, and at rollover by persist). Staged mode ignores it.
    pub sync_while_busy: bool,
    /// Staged (default) or Direct.
    pub write_path: WritePath,
    /// Staged mode: the tmpfs directory that holds the staging buffers, in a subdirectory
    /// `wal-recorder-<uid>-<dev>-<ino>-<birth time>` named from the log directory's identity. Default
    /// `/dev/shm`. Must be a tmpfs.
    pub staging_dir: PathBuf,
    /// Staged mode: the group that may read the staging buffers (live tailers in other
    /// processes). `None` (default): owner only (directory `0700`, files `0600`).
    pub staging_group: Option<u32>,
    /// Staged mode: staging buffers of `segment_size` bytes each (tmpfs memory). Default 0:
    /// `prepared_segments + 2` (the active one, the prepared ones, one draining).
    /// `2..=MAX_STAGING_BUFFERS`.
    pub staging_buffers: usize,
    /// Staged mode: drain with `O_DIRECT` writes straight from the staging pages when the
    /// file system accepts it (checked at the first segment; buffered writes otherwise).
    /// Default off: measured here (docs/PERFORMANCE.md), buffered drains gave the writer a
    /// lower tail (p99.9 0.95x against 1.40x the floor at 1 M/s) and cost the maintainer less
    /// CPU (7 % against 11 % of a core), for the same durability lag; `O_DIRECT` keeps no
    /// second copy of the log in the page cache.
    pub direct_io: bool,
    /// Staged mode: the maintainer writes zeros over each new segment file (1 MiB steps
    /// through io_uring, off the writer's path) before the writer gets it, so the drains
    /// write into written extents instead of fallocated, unwritten ones (which on a journaled
    /// ext4 need a journal commit to convert). Default off: measured here (docs/PERFORMANCE.md,
    /// "The staged write path"), it doubles the bytes written and raised the lag p99 from
    /// about 2–4 ms to 20–500 ms, both on this machine's ext4 and on a journaled loop mount,
    /// where the fill's writes delay the drains' flushes.
    pub zero_fill: bool,
    /// What a torn end of the log the open accepts. Default `TruncateTail`.
    pub recovery_mode: RecoveryMode,
    /// A new log's records carry their time (segment format version 2, docs/FORMAT.md):
    /// 8 more bytes per record, stamped by the writer's clock without a system call
    /// ([`crate::Recorder::append`]) or given by the caller
    /// ([`crate::Recorder::append_at`]). An existing log keeps the format of its last
    /// segment whatever this says. Default on; off keeps version 1's 16-byte frame headers
    /// for users who need every byte.
    pub record_time: bool,
    /// Read every record of every segment at open, as `walctl verify` does, instead of
    /// walking sealed segments by their summaries (docs/RECOVERY.md, "Open in constant
    /// time"). Default off: the open then reads only the unsealed tail's records, and damage
    /// inside a sealed segment is found by the scrub (`scrub_rate`) or `walctl verify`.
    pub full_scan_on_open: bool,
    /// The background scrub: verifies every sealed segment (cold ones decoded) in full, one
    /// after another, reading at most this many bytes per second, on a helper thread at idle
    /// priority (pinned with the maintainer). Damage it finds turns health `Degraded`.
    /// Default `Some(64 MiB/s)`; `None` turns it off.
    pub scrub_rate: Option<u64>,
    /// Keep up to this many cold segments beyond `max_compressed_segments` while a reader
    /// that publishes its position (`logdir::Tailer::with_position`, `<log>/readers/`) has not
    /// read them; past that budget retention deletes anyway and the reader gets
    /// `Error::SeqNotFound`. Default `None`: readers do not hold retention.
    pub hold_for_readers: Option<usize>,
    /// Disk budget: bytes of hot, prepared and cold segments (hot and prepared ones counted
    /// at `segment_size`). Retention deletes the oldest cold segments to hold it. Default none.
    pub max_disk_bytes: Option<u64>,
    /// Delete cold segments older than this (since their freeze). Default none.
    pub max_cold_age: Option<Duration>,
    /// Keep at least this many bytes free on the log's file system, deleting the oldest cold
    /// segments. Default none.
    pub min_free_bytes: Option<u64>,
    /// Pause between two scrub passes over the log. Default 60 s.
    pub scrub_interval: Duration,
    /// Segments the maintainer keeps created, preallocated and prefaulted ahead of the
    /// writer (recorder). Default 2, 1..=`MAX_PREPARED_SEGMENTS`.
    pub prepared_segments: usize,
    /// Sealed segments the writer keeps when the persist ring is full (recorder). Default 64,
    /// 1..=`MAX_PERSIST_OVERFLOW`.
    pub persist_overflow: usize,
    /// Staged: lock the staging buffers in memory (`mlock`) so that tmpfs never swaps out a
    /// page the writer fills. Default true; where `RLIMIT_MEMLOCK` is too small (and no
    /// `CAP_IPC_LOCK`) the buffers stay unlocked with a warning
    /// (`Recorder::staging_locked`).
    pub lock_staging: bool,
    /// Test hook: run the fault-injecting backend with this plan.
    #[doc(hidden)] // a test hook
    pub fault_plan: Option<FaultPlan>,
    /// Test hook: make io_uring setup fail with this errno (to exercise the fallback).
    #[doc(hidden)] // a test hook
    pub simulate_uring_error: Option<i32>,
    /// Test hook: the longest single write the maintainer issues (default and maximum
    /// `MAX_IO_BYTES`, the kernel's per-call limit; raised to a quarter of `segment_size`
    /// at least), so that tests see the splitting with small segments.
    #[doc(hidden)] // a test hook
    pub max_io_bytes: u64,
    /// Test hook: the maintainer thread panics on its first turn that does work (to prove a
    /// dead maintainer latches the log failed instead of hiding).
    #[doc(hidden)] // a test hook
    pub simulate_maintainer_panic: bool,
    /// Archive cold segments to object storage before retention deletes them (feature
    /// `archive`). Default none.
    #[cfg(feature = "archive")]
    pub archive: Option<archive::ArchiveConfig>,
    /// Ship records to followers (feature `replication`; docs/REPLICATION.md). Default none.
    #[cfg(feature = "replication")]
    pub replication: Option<crate::replication::ReplicationConfig>,
}

impl Config {
    /// The defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            max_segments: DEFAULT_MAX_SEGMENTS,
            max_compressed_segments: DEFAULT_MAX_COMPRESSED_SEGMENTS,
            min_sleep: DEFAULT_MIN_SLEEP,
            max_sleep: DEFAULT_MAX_SLEEP,
            persist_queue: DEFAULT_PERSIST_QUEUE,
            request_queue: DEFAULT_REQUEST_QUEUE,
            core: None,
            backend: BackendChoice::Auto,
            compression: Compression::default(),
            verify_frames: true,
            compress_threads: default_compress_threads(),
            compress_cores: Vec::new(),
            auto_accelerate: true,
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            sync_while_busy: true,
            continuous_drain: true,
            drain_gap: crate::constants::DEFAULT_DRAIN_GAP,
            write_path: WritePath::Staged,
            staging_dir: PathBuf::from(DEFAULT_STAGING_DIR),
            staging_group: None,
            staging_buffers: 0,
            direct_io: false,
            zero_fill: false,
            recovery_mode: RecoveryMode::TruncateTail,
            record_time: true,
            full_scan_on_open: false,
            scrub_rate: Some(64 << 20),
            scrub_interval: Duration::from_secs(60),
            hold_for_readers: None,
            max_disk_bytes: None,
            max_cold_age: None,
            min_free_bytes: None,
            prepared_segments: DEFAULT_PREPARED_SEGMENTS,
            persist_overflow: DEFAULT_PERSIST_OVERFLOW,
            lock_staging: true,
            fault_plan: None,
            simulate_uring_error: None,
            simulate_maintainer_panic: false,
            max_io_bytes: crate::constants::MAX_IO_BYTES,
            #[cfg(feature = "archive")]
            archive: None,
            #[cfg(feature = "replication")]
            replication: None,
        }
    }

    /// Checks every value: zero limits and `min_sleep > max_sleep` are errors; values above
    /// a system limit are clamped to it (and logged).
    pub fn validated(mut self) -> Result<Self> {
        fn clamp<T: PartialOrd + Copy + std::fmt::Debug>(name: &str, v: &mut T, max: T) {
            if *v > max {
                log::warn!("{name} {v:?} clamped to {max:?}");
                *v = max;
            }
        }
        if self.max_segments == 0 || self.max_compressed_segments == 0 {
            return Err(Error::Config(
                "max_segments and max_compressed_segments must be at least 1".into(),
            ));
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::Config(format!(
                "segment_size {} outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        #[cfg(feature = "replication")]
        if let Some(rc) = &self.replication {
            rc.check()?;
            // Retention keeps what a follower behind still needs, within the budget.
            let hold = self.hold_for_readers.unwrap_or(0).max(rc.hold_segments);
            self.hold_for_readers = Some(hold);
        }
        if self.scrub_rate == Some(0) {
            return Err(Error::Config(
                "scrub_rate must be at least 1 byte per second (None turns the scrub off)".into(),
            ));
        }
        if self.prepared_segments == 0 || self.persist_overflow == 0 {
            return Err(Error::Config(
                "prepared_segments and persist_overflow must be at least 1".into(),
            ));
        }
        clamp(
            "prepared_segments",
            &mut self.prepared_segments,
            MAX_PREPARED_SEGMENTS,
        );
        clamp(
            "persist_overflow",
            &mut self.persist_overflow,
            MAX_PERSIST_OVERFLOW,
        );
        clamp("sync_interval", &mut self.sync_interval, MAX_SYNC_INTERVAL);
        self.drain_gap = self.drain_gap.min(self.sync_interval);
        // A persist writes a segment's body in at most MAX_BODY_WRITES steps.
        let least = self
            .segment_size
            .div_ceil(crate::constants::MAX_BODY_WRITES)
            .next_multiple_of(PAGE_SIZE);
        self.max_io_bytes = (self.max_io_bytes / PAGE_SIZE * PAGE_SIZE).clamp(
            least.min(crate::constants::MAX_IO_BYTES),
            crate::constants::MAX_IO_BYTES,
        );
        if self.sync_interval.is_zero() {
            return Err(Error::Config("sync_interval must be positive".into()));
        }
        if self.staging_buffers == 0 {
            self.staging_buffers = self.prepared_segments + 2;
        }
        if self.staging_buffers < 2 {
            return Err(Error::Config(
                "staging_buffers must be at least 2 (the active one and the next)".into(),
            ));
        }
        clamp(
            "staging_buffers",
            &mut self.staging_buffers,
            MAX_STAGING_BUFFERS,
        );
        if self.persist_queue == 0 || self.request_queue == 0 {
            return Err(Error::Config("queue capacities must be at least 1".into()));
        }
        clamp("max_segments", &mut self.max_segments, MAX_HOT_SEGMENTS);
        clamp(
            "compress_threads",
            &mut self.compress_threads,
            MAX_COMPRESS_THREADS,
        );
        clamp(
            "max_compressed_segments",
            &mut self.max_compressed_segments,
            MAX_COLD_SEGMENTS,
        );
        clamp("persist_queue", &mut self.persist_queue, MAX_PERSIST_QUEUE);
        clamp("request_queue", &mut self.request_queue, MAX_REQUEST_QUEUE);
        clamp("max_sleep", &mut self.max_sleep, MAX_SLEEP_CEILING);
        if self.min_sleep < MIN_SLEEP_FLOOR {
            self.min_sleep = MIN_SLEEP_FLOOR;
        }
        if self.min_sleep > self.max_sleep {
            return Err(Error::Config(format!(
                "min_sleep {:?} exceeds max_sleep {:?}",
                self.min_sleep, self.max_sleep
            )));
        }
        match &mut self.compression {
            Compression::Frame { level } | Compression::Block { level } => {
                clamp("lz4 level", level, MAX_LZ4_LEVEL)
            }
        }
        Ok(self)
    }
}

/// One helper up to four cores; a quarter of them on bigger machines, at most 4.
fn default_compress_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 4).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_over_the_limits_are_clamped_and_nonsense_is_refused() {
        let mut c = Config::new("/tmp/x");
        c.max_segments = usize::MAX;
        c.max_sleep = Duration::from_secs(60);
        c.compression = Compression::Frame { level: 99 };
        let c = c.validated().unwrap();
        assert_eq!(c.max_segments, MAX_HOT_SEGMENTS);
        assert_eq!(c.max_sleep, MAX_SLEEP_CEILING);
        assert_eq!(c.compression, Compression::Frame { level: 12 });
        let mut bad = Config::new("/tmp/x");
        bad.max_compressed_segments = 0;
        assert!(matches!(bad.validated(), Err(Error::Config(_))));
        let mut bad = Config::new("/tmp/x");
        bad.min_sleep = Duration::from_millis(5);
        assert!(matches!(bad.validated(), Err(Error::Config(_))));
    }
}
