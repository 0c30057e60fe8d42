//! System-wide limits. Every configurable value is clamped to these; every queue, batch and
//! record has a bound named here (the spec's `wal/constants.hpp`).

/// Largest payload one record may carry. Larger appends fail with
/// [`crate::Error::RecordTooLarge`]; the writer never writes a partial record.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// Smallest segment file the writer creates: one page for the header and a record or two.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// Largest segment file the writer creates. Bounded so that a mapping, a freeze and a
/// page-cache flush of one segment stay bounded too.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 32;

/// Default segment size: 64 MiB, the size PERF_NOTES.md measured.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Sequence numbers start here; 0 in a record's sequence field marks the end of the records
/// of an unsealed segment.
pub const FIRST_SEQ: u64 = 1;

/// Largest sequence number a record may carry; `u64::MAX` is the seal marker.
pub const MAX_SEQ: u64 = u64::MAX - 1;

/// Most hot (uncompressed, persisted) segments the maintainer keeps.
pub const MAX_HOT_SEGMENTS: usize = 4096;
/// Default limit of hot segments before the oldest is frozen.
pub const DEFAULT_MAX_SEGMENTS: usize = 8;
/// Most cold (compressed) segments the maintainer keeps.
pub const MAX_COLD_SEGMENTS: usize = 1 << 20;
/// Default limit of cold segments before the oldest is deleted.
pub const DEFAULT_MAX_COMPRESSED_SEGMENTS: usize = 64;

/// Shortest idle sleep of the maintainer loop (the first step of its backoff).
pub const MIN_SLEEP_FLOOR: std::time::Duration = std::time::Duration::from_micros(1);
/// Longest idle sleep the loop may be configured with.
pub const MAX_SLEEP_CEILING: std::time::Duration = std::time::Duration::from_millis(100);
/// Default first backoff step.
pub const DEFAULT_MIN_SLEEP: std::time::Duration = std::time::Duration::from_micros(50);
/// Default longest idle sleep: idle CPU stays well under 1 % of a core.
pub const DEFAULT_MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(1);

/// Largest capacity of the persist ring (sealed segments from the writer).
pub const MAX_PERSIST_QUEUE: usize = 1024;
/// Default capacity of the persist ring.
pub const DEFAULT_PERSIST_QUEUE: usize = 64;
/// Largest capacity of the freeze and free request rings.
pub const MAX_REQUEST_QUEUE: usize = 1024;
/// Default capacity of the freeze and free request rings.
pub const DEFAULT_REQUEST_QUEUE: usize = 32;

/// Bytes read, compressed and written per step of a freeze.
pub const CHUNK_SIZE: usize = 1024 * 1024;
/// Most compression helper threads.
pub const MAX_COMPRESS_THREADS: usize = 64;
/// Highest LZ4 acceleration the automatic choice uses (`Config::auto_accelerate`).
pub const MAX_ACCELERATION: u32 = 16;
/// Chunks of one freeze in flight at once (reads ahead, writes behind compression).
pub const FREEZE_PIPELINE_DEPTH: usize = 4;
/// Most new jobs (persist or free) the loop starts in one turn: one submission per turn.
pub const BATCH_SIZE: usize = 32;
/// io_uring submission queue entries: a full batch of linked chains plus a freeze pipeline.
pub const RING_ENTRIES: u32 = 256;
/// Most LZ4 compression level (12 = LZ4 HC maximum).
pub const MAX_LZ4_LEVEL: u32 = 12;
/// First delay before retrying a failed freeze, persist or delete; doubles per failure.
pub const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest delay between retries.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Default interval of the maintainer's drain (Staged) or sync (Direct) of the active
/// segment: records are durable about this long plus one fdatasync after they are appended.
pub const DEFAULT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);
/// Default `Config::drain_gap`: the continuous drain's least time between drain starts.
pub const DEFAULT_DRAIN_GAP: std::time::Duration = std::time::Duration::from_micros(200);
/// Default parent of the staging directories: tmpfs, outlives a process crash.
pub const DEFAULT_STAGING_DIR: &str = "/dev/shm";
/// Most staging buffers one recorder keeps (each `segment_size` bytes of tmpfs).
pub const MAX_STAGING_BUFFERS: usize = 64;
/// Longest sync interval.
pub const MAX_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Default number of segments prepared ahead of the writer.
pub const DEFAULT_PREPARED_SEGMENTS: usize = 2;
/// Most segments prepared ahead of the writer.
pub const MAX_PREPARED_SEGMENTS: usize = 16;
/// Default capacity of the writer's overflow list for a full persist ring.
pub const DEFAULT_PERSIST_OVERFLOW: usize = 64;
/// Largest overflow list.
pub const MAX_PERSIST_OVERFLOW: usize = 4096;
/// Longest time the writer waits for the maintainer (a segment being prepared, room in a
/// full persist ring, `sync()`) before it reports an error instead of blocking forever.
pub const WRITER_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Page size assumed for the "completed pages" of the active segment.
pub const PAGE_SIZE: u64 = 4096;

/// The most one read or write system call transfers on Linux (`MAX_RW_COUNT`: `INT_MAX`
/// rounded down to a page); larger writes are split into steps of at most this.
pub const MAX_IO_BYTES: u64 = 0x7fff_f000;

/// The most writes a persist splits a segment's undrained body into: enough for the largest
/// segment at [`MAX_IO_BYTES`] a step.
pub const MAX_BODY_WRITES: u64 = 4;
