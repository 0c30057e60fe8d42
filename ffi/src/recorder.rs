//! The recorder: open, append (copying or claimed in place), sync, durability, health, close.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use wal_recorder::{Config, Error, Health, Recorder};

use crate::error::*;
use crate::handle::open_handle;

/// `wal_health`: everything keeps up.
pub const WAL_HEALTH_OK: c_int = 0;
/// `wal_health`: work is failing and retried, or behind; nothing is lost.
pub const WAL_HEALTH_DEGRADED: c_int = 1;
/// `wal_health`: an fsync failed; appends are refused.
pub const WAL_HEALTH_FAILED: c_int = 2;

/// Options of `wal_open`; fill with `wal_options_init`, then change what you need.
#[repr(C)]
pub struct wal_options_t {
    /// Segment file size in bytes (4 KiB ..= 4 GiB). Default 64 MiB.
    pub segment_size: u64,
    /// Hot segments kept before the oldest is compressed. Default 8.
    pub max_segments: u32,
    /// Compressed segments kept before the oldest is deleted. Default 64.
    pub max_compressed_segments: u32,
    /// CPU core of the maintainer thread, or -1 for none. Default -1.
    pub core: i32,
    /// tmpfs directory of the staging buffers, or NULL for `/dev/shm`.
    pub staging_dir: *const c_char,
    /// Whether a new log's records carry their time (1) or not (0). Default 1.
    pub record_time: i32,
}

/// An open recorder (opaque).
pub struct wal_recorder_t {
    pub(crate) rec: Option<Recorder>,
    /// The payload `wal_try_claim` handed out and not yet committed or abandoned (null if
    /// none): `wal_commit` checks the claim it is given against it.
    pub(crate) claimed: *mut u8,
}

/// Fills `opts` with the defaults. Returns 0, or `WAL_EINVAL` for a NULL pointer.
///
/// # Safety
/// `opts` is NULL or points to writable memory for one `wal_options_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_options_init(opts: *mut wal_options_t) -> c_int {
    guard((), || {
        if opts.is_null() {
            return Err(invalid("wal_options_init: opts is NULL"));
        }
        let d = Config::new("");
        let o = wal_options_t {
            segment_size: d.segment_size,
            max_segments: d.max_segments as u32,
            max_compressed_segments: d.max_compressed_segments as u32,
            core: d.core.map_or(-1, |c| c as i32),
            staging_dir: std::ptr::null(),
            record_time: i32::from(d.record_time),
        };
        // SAFETY: `opts` is non-null and writable (the function's contract).
        unsafe { opts.write(o) };
        Ok(())
    })
    .1
}

/// Opens (creating it if missing, recovering it if it holds a log) the log in `dir` and
/// starts its maintainer; `opts` may be NULL for the defaults. On success `*out` is the
/// recorder and the result 0; on failure `*out` is NULL and the result a negative code.
///
/// # Safety
/// `dir` is a NUL-terminated string; `opts` is NULL or a `wal_options_t` (its `staging_dir`
/// NULL or a NUL-terminated string); `out` points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn wal_open(
    dir: *const c_char,
    opts: *const wal_options_t,
    out: *mut *mut wal_recorder_t,
) -> c_int {
    let open = |dir: PathBuf| {
        let mut config = Config::new(&dir);
        if !opts.is_null() {
            // SAFETY: `opts` is non-null and points to a `wal_options_t` (the contract).
            let o = unsafe { &*opts };
            config.segment_size = o.segment_size;
            config.max_segments = o.max_segments as usize;
            config.max_compressed_segments = o.max_compressed_segments as usize;
            config.core = usize::try_from(o.core).ok();
            config.record_time = o.record_time != 0;
            if !o.staging_dir.is_null() {
                // SAFETY: non-null `staging_dir` is NUL-terminated (the contract).
                config.staging_dir = unsafe { path_arg(o.staging_dir, "staging_dir") }?;
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| err(Error::io("create", &dir, e)))?;
        let rec = Recorder::open(&dir, config).map_err(err)?;
        Ok(wal_recorder_t {
            rec: Some(rec),
            claimed: std::ptr::null_mut(),
        })
    };
    // SAFETY: forwarded contract.
    unsafe { open_handle("wal_open", dir, out, open) }
}

/// The handle behind a pointer, or the error for a NULL one.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open` not yet passed to `wal_close`.
pub(crate) unsafe fn handle<'a>(
    r: *mut wal_recorder_t,
    what: &str,
) -> Result<&'a mut wal_recorder_t, (c_int, String)> {
    // SAFETY: a live handle from `wal_open`, used by one thread at a time (the contract).
    unsafe { r.as_mut() }.ok_or_else(|| invalid(&format!("{what}: the recorder is NULL")))
}

/// The recorder behind a handle, or the error for a NULL or closed one.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open` not yet passed to `wal_close`.
pub(crate) unsafe fn recorder<'a>(
    r: *mut wal_recorder_t,
    what: &str,
) -> Result<&'a mut Recorder, (c_int, String)> {
    // SAFETY: forwarded contract.
    unsafe { handle(r, what) }?
        .rec
        .as_mut()
        .ok_or_else(|| (WAL_ECLOSED, format!("{what}: the recorder is closed")))
}

/// Appends `len` bytes at `data` as one record; returns its sequence number (≥ 1), or a
/// negative code. No system call and no allocation in steady state.
///
/// # Safety
/// `r` is a handle from `wal_open`, used by one thread at a time; `data` points to `len`
/// readable bytes (it may be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn wal_append(r: *mut wal_recorder_t, data: *const u8, len: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { append(r, data, len, None) }
}

/// `wal_append` with the record's time given by the caller (nanoseconds since the Unix
/// epoch) in a log whose records carry time.
///
/// # Safety
/// As `wal_append`.
#[no_mangle]
pub unsafe extern "C" fn wal_append_at(
    r: *mut wal_recorder_t,
    data: *const u8,
    len: usize,
    time_ns: u64,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { append(r, data, len, Some(time_ns)) }
}

/// # Safety
/// As `wal_append`.
unsafe fn append(r: *mut wal_recorder_t, data: *const u8, len: usize, time: Option<u64>) -> i64 {
    let (seq, code) = guard(0u64, || {
        // SAFETY: forwarded contract.
        let rec = unsafe { recorder(r, "wal_append") }?;
        if data.is_null() && len > 0 {
            return Err(invalid("wal_append: data is NULL"));
        }
        let payload: &[u8] = match len {
            0 => &[],
            // SAFETY: `data` points to `len` readable bytes (the contract).
            _ => unsafe { std::slice::from_raw_parts(data, len) },
        };
        match time {
            Some(t) => rec.append_at(t, payload),
            None => rec.append(payload),
        }
        .map_err(err)
    });
    match code {
        WAL_OK => seq as i64,
        c => i64::from(c),
    }
}

/// Makes every record appended so far durable before it returns: 0, or a negative code.
///
/// # Safety
/// `r` is a handle from `wal_open`, used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn wal_sync(r: *mut wal_recorder_t) -> c_int {
    guard((), || {
        // SAFETY: forwarded contract.
        unsafe { recorder(r, "wal_sync") }?.sync().map_err(err)
    })
    .1
}

/// Every record up to this sequence number survives power loss (an atomic load: no system
/// call). 0 for a NULL or closed recorder.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open`.
#[no_mangle]
pub unsafe extern "C" fn wal_durable_seq(r: *const wal_recorder_t) -> u64 {
    // SAFETY: forwarded contract; only read.
    unsafe { r.as_ref() }
        .and_then(|h| h.rec.as_ref())
        .map_or(0, |rec| rec.durable_seq())
}

/// The last sequence number appended; 0 for a NULL or closed recorder.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open`.
#[no_mangle]
pub unsafe extern "C" fn wal_last_seq(r: *const wal_recorder_t) -> u64 {
    // SAFETY: forwarded contract; only read.
    unsafe { r.as_ref() }
        .and_then(|h| h.rec.as_ref())
        .map_or(0, |rec| rec.last_seq())
}

/// The writer's counters (`wal_stats`).
#[repr(C)]
pub struct wal_stats_t {
    /// The last sequence number appended.
    pub last_seq: u64,
    /// Every record up to this one is durable.
    pub durable_seq: u64,
    /// Rollovers to a new segment.
    pub rollovers: u64,
    /// Rollovers that found no prepared segment and waited for the maintainer (the writer
    /// made system calls then; more `prepared` segments or a faster disk avoid them).
    pub stalls: u64,
    /// Segments the maintainer has prepared for the next rollovers.
    pub prepared_ready: u64,
}

/// Fills `*stats` with the writer's counters (no system call). 0, or `WAL_EINVAL` /
/// `WAL_ECLOSED`.
///
/// # Safety
/// `r` is a handle from `wal_open`, used by one thread at a time (the writer's: the counters
/// are its own); `stats` points to writable memory for one `wal_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_stats(r: *mut wal_recorder_t, stats: *mut wal_stats_t) -> c_int {
    guard((), || {
        if stats.is_null() {
            return Err(invalid("wal_stats: stats is NULL"));
        }
        // SAFETY: forwarded contract.
        let rec = unsafe { recorder(r, "wal_stats") }?;
        let w = rec.writer_stats();
        let s = wal_stats_t {
            last_seq: rec.last_seq(),
            durable_seq: rec.durable_seq(),
            rollovers: w.rollovers,
            stalls: w.stalls,
            prepared_ready: rec.prepared_ready() as u64,
        };
        // SAFETY: `stats` is non-null and writable (the contract).
        unsafe { stats.write(s) };
        Ok(())
    })
    .1
}

/// `WAL_HEALTH_OK`, `WAL_HEALTH_DEGRADED` or `WAL_HEALTH_FAILED`; `WAL_EINVAL` for NULL.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open`.
#[no_mangle]
pub unsafe extern "C" fn wal_health(r: *const wal_recorder_t) -> c_int {
    // SAFETY: forwarded contract; only read.
    match unsafe { r.as_ref() }.and_then(|h| h.rec.as_ref()) {
        None => {
            set_error("wal_health: the recorder is NULL or closed".into());
            WAL_EINVAL
        }
        Some(rec) => match rec.health() {
            Health::Ok => WAL_HEALTH_OK,
            Health::Degraded => WAL_HEALTH_DEGRADED,
            Health::Failed => WAL_HEALTH_FAILED,
        },
    }
}

/// Closes the recorder: drains and persists every record, stops the maintainer, frees the
/// handle (also on failure). 0, or a negative code; NULL is a no-op returning 0.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open`, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn wal_close(r: *mut wal_recorder_t) -> c_int {
    if r.is_null() {
        return WAL_OK;
    }
    // SAFETY: a handle from `wal_open` (Box::into_raw), given back once (the contract).
    let mut handle = unsafe { Box::from_raw(r) };
    guard((), || match handle.rec.take() {
        Some(rec) => rec.close().map_err(err),
        None => Ok(()),
    })
    .1
}
