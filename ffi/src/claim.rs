//! Zero-copy appends: `wal_try_claim` hands out the payload bytes of the next record in the
//! log's own memory, the caller writes them, `wal_commit` publishes the record (Aeron's
//! `tryClaim` and `commit`). Over `Recorder::try_claim` and `Recorder::commit`.

use std::ffi::c_int;

use crate::error::*;
use crate::recorder::{handle, wal_recorder_t};

/// A claimed record: write exactly `len` bytes at `data`, then `wal_commit` (or
/// `wal_abort_claim`). `data` is valid until that call, or until any other call on the
/// recorder (an append, a second claim, a close), which abandons the claim.
#[repr(C)]
pub struct wal_claim_t {
    /// Where the payload goes (in the log's own memory).
    pub data: *mut u8,
    /// The payload length claimed.
    pub len: usize,
}

/// Reserves the next record, of `len` payload bytes, and fills `*claim` with where to write
/// it. 0, or a negative code (`WAL_ETOOBIG`, `WAL_EFAILED`, ...; `claim->data` is NULL then).
/// No system call in steady state, as `wal_append`.
///
/// # Safety
/// `r` is a handle from `wal_open`, used by one thread at a time; `claim` points to writable
/// memory for one `wal_claim_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_try_claim(
    r: *mut wal_recorder_t,
    len: usize,
    claim: *mut wal_claim_t,
) -> c_int {
    guard((), || {
        if claim.is_null() {
            return Err(invalid("wal_try_claim: claim is NULL"));
        }
        let empty = wal_claim_t {
            data: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: `claim` is non-null and writable (the contract).
        unsafe { claim.write(empty) };
        // SAFETY: forwarded contract.
        let h = unsafe { handle(r, "wal_try_claim") }?;
        h.claimed = std::ptr::null_mut();
        let rec = h
            .rec
            .as_mut()
            .ok_or_else(|| (WAL_ECLOSED, "wal_try_claim: the recorder is closed".into()))?;
        let data = rec.try_claim(len).map_err(err)?.as_mut_ptr();
        h.claimed = data;
        // SAFETY: as above.
        unsafe { claim.write(wal_claim_t { data, len }) };
        Ok(())
    })
    .1
}

/// Publishes the claimed record with the bytes written at `claim->data`; returns its
/// sequence number (≥ 1) or a negative code (`WAL_EINVAL` for a claim that is not the open
/// one: committed already, abandoned by another call, or never made). `*claim` is emptied.
///
/// # Safety
/// `r` is a handle from `wal_open`; `claim` points to a `wal_claim_t` filled by
/// `wal_try_claim`.
#[no_mangle]
pub unsafe extern "C" fn wal_commit(r: *mut wal_recorder_t, claim: *mut wal_claim_t) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { commit(r, claim, None) }
}

/// `wal_commit` with the record's time given by the caller (nanoseconds since the Unix
/// epoch), as `wal_append_at`.
///
/// # Safety
/// As `wal_commit`.
#[no_mangle]
pub unsafe extern "C" fn wal_commit_at(
    r: *mut wal_recorder_t,
    claim: *mut wal_claim_t,
    time_ns: u64,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { commit(r, claim, Some(time_ns)) }
}

/// # Safety
/// As `wal_commit`.
unsafe fn commit(r: *mut wal_recorder_t, claim: *mut wal_claim_t, time: Option<u64>) -> i64 {
    let (seq, code) = guard(0u64, || {
        if claim.is_null() {
            return Err(invalid("wal_commit: claim is NULL"));
        }
        // SAFETY: `claim` is non-null and points to a `wal_claim_t` (the contract).
        let c = unsafe { claim.read() };
        // SAFETY: as above; emptied whatever happens, so that it cannot be committed twice.
        unsafe {
            claim.write(wal_claim_t {
                data: std::ptr::null_mut(),
                len: 0,
            })
        };
        // SAFETY: forwarded contract.
        let h = unsafe { handle(r, "wal_commit") }?;
        let open = std::mem::replace(&mut h.claimed, std::ptr::null_mut());
        if c.data.is_null() || c.data != open {
            return Err(invalid(
                "wal_commit: not the open claim (committed already, abandoned by another call on the recorder, or never made by wal_try_claim)",
            ));
        }
        let rec = h
            .rec
            .as_mut()
            .ok_or_else(|| (WAL_ECLOSED, "wal_commit: the recorder is closed".into()))?;
        match time {
            Some(t) => rec.commit_at(t),
            None => rec.commit(),
        }
        .map_err(err)
    });
    match code {
        WAL_OK => seq as i64,
        c => i64::from(c),
    }
}

/// Abandons the open claim: no record is written and its bytes are cleared. NULL arguments
/// and a claim that is no longer open are ignored.
///
/// # Safety
/// `r` is NULL or a handle from `wal_open`; `claim` is NULL or points to a `wal_claim_t`.
#[no_mangle]
pub unsafe extern "C" fn wal_abort_claim(r: *mut wal_recorder_t, claim: *mut wal_claim_t) {
    guard((), || {
        // SAFETY: forwarded contract.
        let Ok(h) = (unsafe { handle(r, "wal_abort_claim") }) else {
            return Ok(());
        };
        // SAFETY: `claim` is NULL or points to a `wal_claim_t` (the contract).
        if let Some(c) = unsafe { claim.as_mut() } {
            if c.data == h.claimed {
                if let Some(rec) = h.rec.as_mut() {
                    rec.abort_claim();
                }
                h.claimed = std::ptr::null_mut();
            }
            c.data = std::ptr::null_mut();
            c.len = 0;
        }
        Ok(())
    });
}
