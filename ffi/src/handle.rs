//! Handing a new handle to C: every `wal_*_open` checks `out`, clears it, reads the
//! directory, makes the object and gives C a pointer to it (or leaves NULL and a code).

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use crate::error::*;

/// Runs `open` with the directory `dir` and stores the boxed result in `*out`: 0, or the
/// error's code with `*out` NULL. `what` names the function in messages.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string; `out` is NULL or writable memory for a pointer.
pub(crate) unsafe fn open_handle<T>(
    what: &str,
    dir: *const c_char,
    out: *mut *mut T,
    open: impl FnOnce(PathBuf) -> Result<T, (c_int, String)>,
) -> c_int {
    guard((), || {
        if out.is_null() {
            return Err(invalid(&format!("{what}: out is NULL")));
        }
        // SAFETY: `out` is non-null and writable (the contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: `dir` is NULL or NUL-terminated (the contract).
        let dir = unsafe { path_arg(dir, &format!("{what}: dir")) }?;
        let handle = Box::into_raw(Box::new(open(dir)?));
        // SAFETY: as above; C gives the box back to the matching close function.
        unsafe { out.write(handle) };
        Ok(())
    })
    .1
}
