//! Errors across the C boundary: negative `WAL_E*` codes, the thread's last message
//! (`wal_last_error`), and the guard that turns a Rust error or a panic into both.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use wal_recorder::Error;

/// Success.
pub const WAL_OK: c_int = 0;
/// A null pointer, a path that is not UTF-8, a value out of range.
pub const WAL_EINVAL: c_int = -1;
/// An I/O error (the message names the file and the operation).
pub const WAL_EIO: c_int = -2;
/// A damaged or foreign file (the message names the file and the offset).
pub const WAL_ECORRUPT: c_int = -3;
/// A configuration value the recorder refuses.
pub const WAL_ECONFIG: c_int = -4;
/// The log failed (an fsync error, contract 5): appends are refused.
pub const WAL_EFAILED: c_int = -5;
/// The directory is in use by another recorder.
pub const WAL_ELOCKED: c_int = -6;
/// The log does not hold the sequence number or time asked for.
pub const WAL_ENOTFOUND: c_int = -7;
/// The record does not fit in a segment.
pub const WAL_ETOOBIG: c_int = -8;
/// The disk (or the disk budget) is full.
pub const WAL_ENOSPC: c_int = -9;
/// A wait ran out of time.
pub const WAL_ETIMEDOUT: c_int = -10;
/// The recorder is closed.
pub const WAL_ECLOSED: c_int = -11;
/// A panic inside the library was caught (a bug: please report the message).
pub const WAL_EPANIC: c_int = -12;
/// Any other error.
pub const WAL_EOTHER: c_int = -13;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

#[cold]
pub(crate) fn set_error(message: String) {
    let c = CString::new(message.replace('\0', " ")).expect("no NUL left in the message");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub(crate) fn code_of(e: &Error) -> c_int {
    match e {
        Error::Io { source, .. } if source.raw_os_error() == Some(libc_enospc()) => WAL_ENOSPC,
        Error::Io { .. } | Error::Staging { .. } => WAL_EIO,
        Error::Corrupt { .. } | Error::LostAcknowledged { .. } | Error::Diverged { .. } => {
            WAL_ECORRUPT
        }
        Error::Config(_) => WAL_ECONFIG,
        Error::Failed { .. } | Error::MaintainerDied(_) => WAL_EFAILED,
        Error::Locked(_) => WAL_ELOCKED,
        Error::SeqNotFound { .. } | Error::TimeNotFound { .. } => WAL_ENOTFOUND,
        Error::RecordTooLarge { .. } => WAL_ETOOBIG,
        Error::DiskBudget { .. } => WAL_ENOSPC,
        Error::Timeout { .. } => WAL_ETIMEDOUT,
        Error::Closed(_) => WAL_ECLOSED,
        Error::NoClaim(_) => WAL_EINVAL,
        _ => WAL_EOTHER,
    }
}

const fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux
}

/// Runs `f`, turning an error or a panic into a negative code and the thread's last error.
/// Inlined: on the append path the success case is a compare, the rest is cold.
#[inline(always)]
pub(crate) fn guard<T>(fail: T, f: impl FnOnce() -> Result<T, (c_int, String)>) -> (T, c_int) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => (v, WAL_OK),
        Ok(Err((code, message))) => {
            set_error(message);
            (fail, code)
        }
        Err(panic) => (fail, report_panic(panic)),
    }
}

#[cold]
fn report_panic(panic: Box<dyn std::any::Any + Send>) -> c_int {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    set_error(format!("wal-recorder panicked (a bug): {what}"));
    WAL_EPANIC
}

pub(crate) fn err(e: Error) -> (c_int, String) {
    (code_of(&e), e.to_string())
}

pub(crate) fn invalid(what: &str) -> (c_int, String) {
    (WAL_EINVAL, what.to_string())
}

/// A C string argument as a path.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
pub(crate) unsafe fn path_arg(p: *const c_char, what: &str) -> Result<PathBuf, (c_int, String)> {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string (the function's contract).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(PathBuf::from)
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// The message of the last failure on this thread ("" if none): valid until the next call
/// into the library on this thread.
#[no_mangle]
pub extern "C" fn wal_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// What a call that delivers a count returns: the count, or the error's code.
pub(crate) fn or_code(got: c_int, code: c_int) -> c_int {
    match code {
        WAL_OK => got,
        c => c,
    }
}
