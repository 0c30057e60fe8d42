//! A record as C sees it (`wal_record_t`), delivered by readers and tailers.

use std::ffi::c_int;

/// A record read by `wal_reader_next`: `payload` is valid until the next call on the reader.
#[repr(C)]
pub struct wal_record_t {
    /// Sequence number.
    pub seq: u64,
    /// Payload length in bytes.
    pub len: u64,
    /// The payload (owned by the reader).
    pub payload: *const u8,
    /// Whether the log records time (1) or not (0).
    pub has_time: i32,
    /// The record's time, nanoseconds since the Unix epoch (0 without time).
    pub log_time_ns: u64,
}

/// Writes the record (if any) into `*rec`: 1, or 0 when there is none.
///
/// # Safety
/// `rec` is non-null and writable for one `wal_record_t`.
pub(crate) unsafe fn deliver(
    rec: *mut wal_record_t,
    info: Option<wal_recorder::segment::RecordInfo>,
    payload: &[u8],
) -> c_int {
    match info {
        None => 0,
        Some(info) => {
            // SAFETY: forwarded contract.
            unsafe { rec.write(record_of(&info, payload)) };
            1
        }
    }
}

pub(crate) fn record_of(info: &wal_recorder::segment::RecordInfo, payload: &[u8]) -> wal_record_t {
    wal_record_t {
        seq: info.seq,
        len: payload.len() as u64,
        payload: payload.as_ptr(),
        has_time: i32::from(info.time.is_some()),
        log_time_ns: info.time.unwrap_or(0),
    }
}
