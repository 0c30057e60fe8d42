//! Reading a log from its start or a sequence number to its end.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use wal_recorder::LogReader;

use crate::error::*;
use crate::handle::open_handle;
use crate::record::{deliver, wal_record_t};

/// An open reader (opaque).
pub struct wal_reader_t {
    reader: LogReader,
    payload: Vec<u8>,
}

/// Opens a reader of the log in `dir` at sequence number `from_seq` (0: the first record
/// retained). `*out` is the reader, or NULL on failure.
///
/// # Safety
/// `dir` is a NUL-terminated string; `out` points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn wal_reader_open(
    dir: *const c_char,
    from_seq: u64,
    out: *mut *mut wal_reader_t,
) -> c_int {
    let open = |dir: PathBuf| {
        let reader = match from_seq {
            0 => LogReader::open_dir(&dir),
            seq => LogReader::open_at(&dir, seq),
        }
        .map_err(err)?;
        Ok(wal_reader_t {
            reader,
            payload: Vec::new(),
        })
    };
    // SAFETY: forwarded contract.
    unsafe { open_handle("wal_reader_open", dir, out, open) }
}

/// The next record: 1 and `*rec` filled (its payload valid until the next call), 0 at the
/// end of the log, or a negative code (a damaged segment: the message names it).
///
/// # Safety
/// `r` is a handle from `wal_reader_open`; `rec` points to writable memory for one
/// `wal_record_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_reader_next(r: *mut wal_reader_t, rec: *mut wal_record_t) -> c_int {
    let (got, code) = guard(0, || {
        if r.is_null() || rec.is_null() {
            return Err(invalid("wal_reader_next: NULL argument"));
        }
        // SAFETY: a live handle from `wal_reader_open` (the contract).
        let h = unsafe { &mut *r };
        let info = h.reader.next_record(&mut h.payload).map_err(err)?;
        // SAFETY: `rec` is non-null and writable (the contract).
        Ok(unsafe { deliver(rec, info, &h.payload) })
    });
    or_code(got, code)
}

/// Frees a reader; NULL is a no-op.
///
/// # Safety
/// `r` is NULL or a handle from `wal_reader_open`, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn wal_reader_close(r: *mut wal_reader_t) {
    if !r.is_null() {
        // SAFETY: a handle from `wal_reader_open` (Box::into_raw), given back once.
        drop(unsafe { Box::from_raw(r) });
    }
}
