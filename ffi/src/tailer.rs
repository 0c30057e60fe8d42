//! Following a live log: start points, named positions, idle strategies, a poll with a
//! callback.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use wal_recorder::logdir::{Idle, StartAt, Visibility};
use wal_recorder::Tailer;

use crate::error::*;
use crate::handle::open_handle;
use crate::record::{deliver, record_of, wal_record_t};

/// `wal_tailer_options_t.start`: the first retained record (or, with a `name`, where that
/// reader stopped: see `WAL_START_RESUME`).
pub const WAL_START_FIRST: c_int = 0;
/// Only records appended after the tailer opens.
pub const WAL_START_END: c_int = 1;
/// The record `seq`.
pub const WAL_START_SEQ: c_int = 2;
/// The first record whose log time is at or after `time_ns`.
pub const WAL_START_TIME: c_int = 3;
/// Where the reader `name` stopped (its saved position), or the first record if it has none.
pub const WAL_START_RESUME: c_int = 4;

/// `wal_tailer_options_t.idle`: spin a little, then yield, then sleep doubling up to
/// `idle_max_ns` (the default).
pub const WAL_IDLE_BACKOFF: c_int = 0;
/// Poll again at once (a whole core, the lowest latency).
pub const WAL_IDLE_BUSY_SPIN: c_int = 1;
/// Yield between polls.
pub const WAL_IDLE_YIELD: c_int = 2;
/// Sleep `idle_max_ns` between polls.
pub const WAL_IDLE_SLEEP: c_int = 3;

/// Options of `wal_tailer_open`; fill with `wal_tailer_options_init`.
#[repr(C)]
pub struct wal_tailer_options_t {
    /// `WAL_START_*`. Default `WAL_START_FIRST`.
    pub start: i32,
    /// The record to start at with `WAL_START_SEQ`.
    pub seq: u64,
    /// The time to start at with `WAL_START_TIME` (nanoseconds since the Unix epoch).
    pub time_ns: u64,
    /// The reader's name (1-64 letters, digits, '-' or '_'), or NULL: with a name the
    /// position is saved at `wal_tailer_commit` (in `DIR/readers/NAME.pos`).
    pub name: *const c_char,
    /// tmpfs directory of the recorder's staging buffers, or NULL for `/dev/shm`.
    pub staging_dir: *const c_char,
    /// `WAL_IDLE_*` for `wal_tailer_next`. Default `WAL_IDLE_BACKOFF`.
    pub idle: i32,
    /// The longest sleep of `WAL_IDLE_BACKOFF`, the sleep of `WAL_IDLE_SLEEP`. Default 1 ms.
    pub idle_max_ns: u64,
    /// 1: only records that are durable; 0: every committed record (default).
    pub durable_only: i32,
}

/// Called by `wal_tailer_poll_each` for each record; a non-zero return stops the poll.
pub type wal_record_fn =
    Option<unsafe extern "C" fn(ctx: *mut std::ffi::c_void, rec: *const wal_record_t) -> c_int>;

/// A live tailer (opaque).
pub struct wal_tailer_t {
    tailer: Tailer,
    payload: Vec<u8>,
}

/// Fills `opts` with the defaults. Returns 0, or `WAL_EINVAL` for a NULL pointer.
///
/// # Safety
/// `opts` is NULL or points to writable memory for one `wal_tailer_options_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_options_init(opts: *mut wal_tailer_options_t) -> c_int {
    if opts.is_null() {
        set_error("wal_tailer_options_init: opts is NULL".into());
        return WAL_EINVAL;
    }
    let o = wal_tailer_options_t {
        start: WAL_START_FIRST,
        seq: 0,
        time_ns: 0,
        name: std::ptr::null(),
        staging_dir: std::ptr::null(),
        idle: WAL_IDLE_BACKOFF,
        idle_max_ns: 1_000_000,
        durable_only: 0,
    };
    // SAFETY: `opts` is non-null and writable (the function's contract).
    unsafe { opts.write(o) };
    WAL_OK
}

/// Opens a tailer of the log in `dir` (written by a recorder in this or another process):
/// it delivers the records from its start point on, then follows new ones as they are
/// committed. `opts` may be NULL for the defaults. `*out` is the tailer, or NULL on failure.
///
/// # Safety
/// `dir` is a NUL-terminated string; `opts` is NULL or a `wal_tailer_options_t` whose
/// strings are NULL or NUL-terminated; `out` points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_open(
    dir: *const c_char,
    opts: *const wal_tailer_options_t,
    out: *mut *mut wal_tailer_t,
) -> c_int {
    let open = |dir: PathBuf| {
        let mut o = std::mem::MaybeUninit::<wal_tailer_options_t>::uninit();
        let o = match opts.is_null() {
            // SAFETY: `opts` is non-null and points to the options (the contract).
            false => unsafe { &*opts },
            true => {
                // SAFETY: a valid pointer to uninitialised memory for the options.
                unsafe { wal_tailer_options_init(o.as_mut_ptr()) };
                // SAFETY: initialised just above.
                unsafe { o.assume_init_ref() }
            }
        };
        let name = match o.name.is_null() {
            true => None,
            // SAFETY: non-null `name` is NUL-terminated (the contract).
            false => Some(unsafe { path_arg(o.name, "name") }?.display().to_string()),
        };
        let staging = match o.staging_dir.is_null() {
            true => PathBuf::from(wal_recorder::constants::DEFAULT_STAGING_DIR),
            // SAFETY: non-null `staging_dir` is NUL-terminated (the contract).
            false => unsafe { path_arg(o.staging_dir, "staging_dir") }?,
        };
        let start = match o.start {
            WAL_START_FIRST => Some(StartAt::First),
            WAL_START_END => Some(StartAt::End),
            WAL_START_SEQ => Some(StartAt::Seq(o.seq)),
            WAL_START_TIME => Some(StartAt::Time(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(o.time_ns),
            )),
            WAL_START_RESUME if name.is_some() => None,
            WAL_START_RESUME => return Err(invalid("WAL_START_RESUME needs a name")),
            other => return Err(invalid(&format!("start {other} is not a WAL_START_*"))),
        };
        let max = std::time::Duration::from_nanos(o.idle_max_ns);
        let idle = match o.idle {
            WAL_IDLE_BACKOFF => Idle::Backoff { max },
            WAL_IDLE_BUSY_SPIN => Idle::BusySpin,
            WAL_IDLE_YIELD => Idle::Yield,
            WAL_IDLE_SLEEP => Idle::Sleep(max),
            other => return Err(invalid(&format!("idle {other} is not a WAL_IDLE_*"))),
        };
        let tailer = match (&name, start) {
            (Some(n), None) => Tailer::resume(&dir, n),
            (Some(n), Some(start)) => Tailer::open(&dir, start).and_then(|t| t.with_position(n)),
            (None, start) => Tailer::open(&dir, start.unwrap_or(StartAt::First)),
        }
        .map_err(err)?
        .with_staging_dir(Some(&staging))
        .with_idle(idle)
        .with_visibility(match o.durable_only {
            0 => Visibility::Committed,
            _ => Visibility::Durable,
        });
        Ok(wal_tailer_t {
            tailer,
            payload: Vec::new(),
        })
    };
    // SAFETY: forwarded contract.
    unsafe { open_handle("wal_tailer_open", dir, out, open) }
}

/// The tailer behind a handle.
///
/// # Safety
/// `t` is NULL or a live handle from `wal_tailer_open`, used by one thread at a time.
unsafe fn tailer<'a>(
    t: *mut wal_tailer_t,
    what: &str,
) -> Result<&'a mut wal_tailer_t, (c_int, String)> {
    // SAFETY: forwarded contract.
    unsafe { t.as_mut() }.ok_or_else(|| invalid(&format!("{what}: the tailer is NULL")))
}

/// The next record if one is there now, without waiting: 1 and `*rec` filled (its payload
/// valid until the next call on the tailer), 0 if none yet, or a negative code.
///
/// # Safety
/// `t` is a handle from `wal_tailer_open`; `rec` points to writable memory for one record.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_poll(t: *mut wal_tailer_t, rec: *mut wal_record_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { tailer_next(t, rec, None) }
}

/// As `wal_tailer_poll`, waiting up to `timeout_ns` (with the tailer's idle strategy) for a
/// record: 1, 0 when the time ran out, or a negative code.
///
/// # Safety
/// As `wal_tailer_poll`.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_next(
    t: *mut wal_tailer_t,
    rec: *mut wal_record_t,
    timeout_ns: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { tailer_next(t, rec, Some(std::time::Duration::from_nanos(timeout_ns))) }
}

/// # Safety
/// As `wal_tailer_poll`.
unsafe fn tailer_next(
    t: *mut wal_tailer_t,
    rec: *mut wal_record_t,
    timeout: Option<std::time::Duration>,
) -> c_int {
    let (got, code) = guard(0, || {
        // SAFETY: forwarded contract.
        let h = unsafe { tailer(t, "wal_tailer_next") }?;
        if rec.is_null() {
            return Err(invalid("wal_tailer_next: rec is NULL"));
        }
        let info = match timeout {
            None => h.tailer.poll(&mut h.payload),
            Some(d) => h.tailer.next_timeout(&mut h.payload, d),
        }
        .map_err(err)?;
        // SAFETY: `rec` is non-null and writable (the contract).
        Ok(unsafe { deliver(rec, info, &h.payload) })
    });
    or_code(got, code)
}

/// Calls `f(ctx, record)` for each record there now, at most `max` of them, without
/// waiting; stops early when `f` returns non-zero. Returns how many were delivered, or a
/// negative code.
///
/// # Safety
/// `t` is a handle from `wal_tailer_open`; `f` is a valid function that does not call into
/// this tailer; `ctx` is whatever `f` expects.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_poll_each(
    t: *mut wal_tailer_t,
    f: wal_record_fn,
    ctx: *mut std::ffi::c_void,
    max: u64,
) -> i64 {
    let (n, code) = guard(0u64, || {
        // SAFETY: forwarded contract.
        let h = unsafe { tailer(t, "wal_tailer_poll_each") }?;
        let f = f.ok_or_else(|| invalid("wal_tailer_poll_each: the callback is NULL"))?;
        let mut n = 0;
        while n < max {
            let Some(info) = h.tailer.poll(&mut h.payload).map_err(err)? else {
                break;
            };
            n += 1;
            let rec = record_of(&info, &h.payload);
            // SAFETY: `f` is a valid callback (the contract); `rec` lives across the call.
            if unsafe { f(ctx, &rec) } != 0 {
                break;
            }
        }
        Ok(n)
    });
    match code {
        WAL_OK => n as i64,
        c => i64::from(c),
    }
}

/// Saves a named tailer's position (everything delivered so far is read). 0, or a
/// negative code; a tailer without a name has nothing to save (0).
///
/// # Safety
/// `t` is a handle from `wal_tailer_open`.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_commit(t: *mut wal_tailer_t) -> c_int {
    guard((), || {
        // SAFETY: forwarded contract.
        unsafe { tailer(t, "wal_tailer_commit") }?
            .tailer
            .commit()
            .map_err(err)
    })
    .1
}

/// Frees a tailer (without saving its position: call `wal_tailer_commit` first); NULL is
/// a no-op.
///
/// # Safety
/// `t` is NULL or a handle from `wal_tailer_open`, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn wal_tailer_close(t: *mut wal_tailer_t) {
    if !t.is_null() {
        // SAFETY: a handle from `wal_tailer_open` (Box::into_raw), given back once.
        drop(unsafe { Box::from_raw(t) });
    }
}
