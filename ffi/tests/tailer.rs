//! The C tailer, called through its C ABI: records delivered in order by poll, next and a
//! callback; a named tailer resumes where it committed; bad arguments are codes, not crashes.

mod common;

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::{null, null_mut};

use wal_recorder_ffi::*;

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(wal_last_error()) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C" fn collect(ctx: *mut c_void, rec: *const wal_record_t) -> c_int {
    // SAFETY: the test passes a Vec<u64> as ctx and the library a valid record.
    let (seqs, rec) = unsafe { (&mut *ctx.cast::<Vec<u64>>(), &*rec) };
    seqs.push(rec.seq);
    0
}

#[test]
fn a_c_tailer_follows_a_live_log_and_a_named_one_resumes_where_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging();
    let cdir = CString::new(dir.path().to_str().unwrap()).unwrap();
    let cstaging = CString::new(staging.path().to_str().unwrap()).unwrap();
    let name = CString::new("c-reader").unwrap();
    // SAFETY (the whole test): every pointer passed is valid for the call, as the header
    // requires, except the NULLs the test passes on purpose.
    unsafe {
        let mut opts = std::mem::zeroed::<wal_options_t>();
        assert_eq!(wal_options_init(&mut opts), WAL_OK);
        opts.segment_size = 1 << 16;
        opts.staging_dir = cstaging.as_ptr();
        let mut rec = null_mut();
        assert_eq!(
            wal_open(cdir.as_ptr(), &opts, &mut rec),
            WAL_OK,
            "{}",
            last_error()
        );
        let mut topts = std::mem::zeroed::<wal_tailer_options_t>();
        assert_eq!(wal_tailer_options_init(&mut topts), WAL_OK);
        topts.name = name.as_ptr();
        topts.staging_dir = cstaging.as_ptr();
        let mut t = null_mut();
        assert_eq!(
            wal_tailer_open(cdir.as_ptr(), &topts, &mut t),
            WAL_OK,
            "{}",
            last_error()
        );
        let mut r = std::mem::zeroed::<wal_record_t>();
        assert_eq!(wal_tailer_poll(t, &mut r), 0, "nothing appended yet");
        assert_eq!(
            wal_tailer_next(t, &mut r, 1_000_000),
            0,
            "1 ms: still nothing"
        );
        for i in 1..=2000u64 {
            let p = format!("record {i}");
            assert_eq!(wal_append(rec, p.as_ptr(), p.len()), i as i64);
        }
        // Committed records are there at once (from the staging buffers), across segments.
        assert_eq!(wal_tailer_next(t, &mut r, 5_000_000_000), 1);
        assert_eq!(r.seq, 1);
        let payload = std::slice::from_raw_parts(r.payload, r.len as usize);
        assert_eq!(payload, b"record 1");
        assert_eq!(r.has_time, 1);
        let mut seqs: Vec<u64> = Vec::new();
        let ctx = (&mut seqs as *mut Vec<u64>).cast::<c_void>();
        while seqs.len() < 999 {
            let n = wal_tailer_poll_each(t, Some(collect), ctx, 999 - seqs.len() as u64);
            assert!(n >= 0, "{}", last_error());
        }
        assert_eq!(seqs, (2..=1000).collect::<Vec<_>>());
        assert_eq!(wal_tailer_commit(t), WAL_OK);
        wal_tailer_close(t);

        // Resumed by name: the first record after the committed position.
        topts.start = WAL_START_RESUME;
        let mut t = null_mut();
        assert_eq!(
            wal_tailer_open(cdir.as_ptr(), &topts, &mut t),
            WAL_OK,
            "{}",
            last_error()
        );
        assert_eq!(wal_tailer_next(t, &mut r, 5_000_000_000), 1);
        assert_eq!(r.seq, 1001);
        wal_tailer_close(t);

        // Bad arguments: codes and messages.
        topts.name = null();
        let mut t = null_mut();
        assert_eq!(wal_tailer_open(cdir.as_ptr(), &topts, &mut t), WAL_EINVAL);
        assert!(t.is_null());
        assert!(last_error().contains("name"), "{}", last_error());
        topts.start = 99;
        assert_eq!(wal_tailer_open(cdir.as_ptr(), &topts, &mut t), WAL_EINVAL);
        // A time before the log's first record (1970): not in the log.
        topts.start = WAL_START_TIME;
        topts.time_ns = 1;
        assert_eq!(
            wal_tailer_open(cdir.as_ptr(), &topts, &mut t),
            WAL_ENOTFOUND
        );
        assert!(!last_error().is_empty());
        assert_eq!(wal_tailer_poll(null_mut(), &mut r), WAL_EINVAL);
        assert_eq!(
            wal_tailer_poll_each(null_mut(), Some(collect), ctx, 1),
            WAL_EINVAL as i64
        );
        assert_eq!(wal_close(rec), WAL_OK, "{}", last_error());
        // A closed handle is not used again; NULL closes are no-ops.
        assert_eq!(wal_close(null_mut()), WAL_OK);
        wal_tailer_close(null_mut());
        wal_reader_close(null_mut());
    }
}
