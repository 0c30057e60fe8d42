//! Round trips through the writer and the reader: every record comes back, in order,
//! verified, across many segments.

mod common;

use common::write_log;
use wal_recorder::event;
use wal_recorder::logdir::{verify, LogReader};
use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::{AppendError, SegmentWriter};
use wal_recorder::{constants::MAX_RECORD_LEN, Corruption, Error};

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}
/// A version 1 seal's length.
const SEAL_LEN: usize = Framing::Plain.seal_len();

#[test]
fn millions_of_records_over_many_segments_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2_000_000;
    let paths = write_log(dir.path(), n, 64, 4 << 20, true);
    assert!(paths.len() > 30, "only {} segments", paths.len());
    let mut r = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    let mut expect = 1;
    while let Some(info) = r.next_record(&mut buf).unwrap() {
        assert_eq!(info.seq, expect);
        assert!(event::matches(info.seq, &buf), "payload of {}", info.seq);
        expect += 1;
    }
    assert_eq!(expect, n + 1);
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let report = verify(dir.path()).unwrap();
    assert!(report.ok);
    assert_eq!(report.records, n);
    assert_eq!(report.segments, paths.len() as u64);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(n)));
}

#[test]
fn append_that_does_not_fit_returns_full_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 4096, 1, 0).unwrap();
    // 8 bytes always stay free, so that a sealed segment never fills its file (docs/FORMAT.md).
    let room = 4096 - HEADER_LEN - SEAL_LEN - 8;
    let big = room - record_size(0) + 1; // one byte too many once padded
    assert_eq!(w.append(&vec![1u8; big]), Err(AppendError::Full));
    assert_eq!(w.record_count(), 0);
    let fits = room - record_size(0);
    assert_eq!(w.append(&vec![2u8; fits]), Ok(1));
    assert_eq!(w.append(b""), Err(AppendError::Full));
    w.seal();
    let report = verify(dir.path()).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(report.records, 1);
}

#[test]
fn oversize_record_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 64 << 20, 1, 0).unwrap();
    assert_eq!(
        w.append_with(MAX_RECORD_LEN + 1, |_| unreachable!()),
        Err(AppendError::TooLarge)
    );
    assert_eq!(w.record_count(), 0);
}

#[test]
fn empty_payloads_and_odd_lengths_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 1 << 20, 1, 0).unwrap();
    for len in 0..100usize {
        w.append(&vec![len as u8; len]).unwrap();
    }
    let mut r = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    for len in 0..100usize {
        let info = r.next_record(&mut buf).unwrap().unwrap();
        assert_eq!(info.seq, len as u64 + 1);
        assert_eq!(buf, vec![len as u8; len]);
    }
    assert!(r.next_record(&mut buf).unwrap().is_none());
}

#[test]
fn appending_after_seal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 8192, 1, 0).unwrap();
    w.append(b"x").unwrap();
    let seal = w.seal();
    assert_eq!(seal.count, 1);
    assert_eq!(w.append(b"y"), Err(AppendError::Sealed));
    assert_eq!(w.seal(), seal);
}

#[test]
fn creating_an_existing_segment_fails_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 8192, 1, 0).unwrap();
    w.append(b"keep me").unwrap();
    let err = SegmentWriter::create(dir.path(), 0, 8192, 1, 0)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Io { op: "create", .. }), "{err}");
    assert!(err.to_string().contains("00000000000000000000.wal"));
    assert_eq!(verify(dir.path()).unwrap().records, 1);
}

#[test]
fn missing_directory_is_a_typed_error_naming_it() {
    let err = SegmentWriter::create(std::path::Path::new("/nonexistent/wal"), 0, 8192, 1, 0)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/wal"), "{err}");
    let err = verify(std::path::Path::new("/nonexistent/wal")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/wal"), "{err}");
}

#[test]
fn segment_size_outside_limits_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SegmentWriter::create(dir.path(), 0, 100, 1, 0)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn full_disk_fails_at_creation_and_leaves_no_file() {
    let fs = common::SmallTmpfs::mount(256 * 1024);
    let err = SegmentWriter::create(fs.path(), 0, 1 << 20, 1, 0)
        .err()
        .unwrap();
    match &err {
        Error::Io { op, source, path } => {
            assert_eq!(*op, "fallocate");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            assert!(path.ends_with("00000000000000000000.wal"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(std::fs::read_dir(fs.path()).unwrap().next().is_none());
    // A segment that fits still works on the same file system.
    let mut w = SegmentWriter::create(fs.path(), 0, 64 * 1024, 1, 0).unwrap();
    assert_eq!(w.append(b"fits"), Ok(1));
}

#[test]
fn reader_reports_kind_and_offset_of_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 100, 64, 1 << 20, true);
    // Record 11 starts at HEADER_LEN + 10 * 80; flip a payload byte.
    let off = (HEADER_LEN + 10 * record_size(64) + 20) as u64;
    common::flip_bit(&paths[0], off);
    let mut r = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    let err = loop {
        match r.next_record(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("corruption not found"),
            Err(e) => break e,
        }
    };
    match err {
        Error::Corrupt { path, offset, kind } => {
            assert_eq!(path, paths[0]);
            assert_eq!(offset, (HEADER_LEN + 10 * record_size(64)) as u64);
            assert_eq!(kind, Corruption::RecordChecksum { seq: 11 });
        }
        other => panic!("unexpected {other}"),
    }
}
