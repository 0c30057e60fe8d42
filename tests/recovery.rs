//! One test per row of the recovery decision table (docs/RECOVERY.md).

mod common;

use std::path::Path;

use common::{file_names, used_len, write_log};
use wal_recorder::codec::lz4::compress_frame;
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::logdir::verify;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::names::{cold_name, hot_name};
use wal_recorder::segment::truncate_sealed;
use wal_recorder::Error;

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}

const SEG: u64 = 64 * 1024;
const REC: usize = 64;

fn open(dir: &Path) -> Result<Recorder, Error> {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 100;
    c.max_compressed_segments = 100;
    Recorder::open(dir, c)
}

/// Opens, checks the sequence continues after `last`, closes, verifies.
fn reopen_continues(dir: &Path, last: u64) {
    let mut rec = open(dir).unwrap();
    assert_eq!(rec.last_seq(), last);
    let seq = last + 1;
    assert_eq!(rec.append_with(REC, |b| event::fill(seq, b)).unwrap(), seq);
    rec.close().unwrap();
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.last_seq, Some(seq));
}

/// Persisted copy of a sealed segment: truncated to its used length (as the maintainer does).
fn persist_all_but_last(paths: &[std::path::PathBuf]) {
    for p in &paths[..paths.len() - 1] {
        let used = used_len(p);
        truncate_sealed(p, used).unwrap();
    }
}

#[test]
fn tmp_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    let tmp = dir.path().join(format!("{}.tmp", cold_name(0)));
    std::fs::write(&tmp, b"half a frame").unwrap();
    reopen_continues(dir.path(), 2000);
    assert!(!tmp.exists());
}

#[test]
fn wal_with_a_complete_verified_lz4_loses_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    let bytes = std::fs::read(&paths[0]).unwrap();
    std::fs::write(
        dir.path().join(cold_name(0)),
        compress_frame(&bytes, 0).unwrap(),
    )
    .unwrap();
    reopen_continues(dir.path(), 2000);
    assert!(!paths[0].exists());
    assert!(dir.path().join(cold_name(0)).exists());
}

#[test]
fn wal_with_an_incomplete_lz4_loses_the_lz4() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    let bytes = std::fs::read(&paths[0]).unwrap();
    let frame = compress_frame(&bytes, 0).unwrap();
    std::fs::write(dir.path().join(cold_name(0)), &frame[..frame.len() - 9]).unwrap();
    reopen_continues(dir.path(), 2000);
    assert!(paths[0].exists());
    assert!(!dir.path().join(cold_name(0)).exists());
}

#[test]
fn wal_with_a_valid_lz4_of_other_content_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    let cold = dir.path().join(cold_name(0));
    std::fs::write(
        &cold,
        compress_frame(b"something else entirely", 0).unwrap(),
    )
    .unwrap();
    let err = open(dir.path()).err().unwrap();
    assert!(err.to_string().contains(&cold_name(0)), "{err}");
    assert!(paths[0].exists() && cold.exists(), "no silent repair");
}

#[test]
fn torn_tail_is_cut_to_the_last_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, false);
    persist_all_but_last(&paths);
    let last = paths.last().unwrap();
    let r = verify(dir.path()).unwrap();
    let last_seq = r.last_seq.unwrap();
    let in_last = (last_seq - 817 * (paths.len() as u64 - 1)) as usize; // records in it
                                                                        // Tear the last record: half of its payload lost.
    let mut b = std::fs::read(last).unwrap();
    let at = HEADER_LEN + (in_last - 1) * record_size(REC);
    b[at + 16 + 40..at + 16 + 64].fill(0);
    std::fs::write(last, &b).unwrap();
    reopen_continues(dir.path(), last_seq - 1);
}

#[test]
fn unsealed_last_segment_after_a_process_crash_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, false);
    persist_all_but_last(&paths);
    reopen_continues(dir.path(), 2000);
}

#[test]
fn sealed_segment_not_yet_persisted_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    // 100-byte records leave room at the end of each segment; none is truncated yet.
    let paths = write_log(dir.path(), 2000, 100, SEG, true);
    assert!(paths
        .iter()
        .all(|p| std::fs::metadata(p).unwrap().len() == SEG));
    let mut rec = open(dir.path()).unwrap();
    assert_eq!(rec.last_seq(), 2000);
    for p in &paths {
        assert!(
            std::fs::metadata(p).unwrap().len() < SEG,
            "{} not truncated",
            p.display()
        );
    }
    assert!(rec
        .recovered()
        .actions
        .iter()
        .any(|a| matches!(a, wal_recorder::recovery::Action::Truncated { .. })));
    rec.sync().unwrap();
}

#[test]
fn unused_prepared_segments_at_the_end_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    let n = paths.len() as u64;
    wal_recorder::segment::PreparedSegment::create(dir.path(), n, SEG).unwrap();
    std::fs::write(dir.path().join(hot_name(n + 1)), b"").unwrap();
    reopen_continues(dir.path(), 2000);
}

#[test]
fn missing_segment_in_the_middle_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, true);
    persist_all_but_last(&paths);
    std::fs::remove_file(&paths[1]).unwrap();
    let before = file_names(dir.path());
    let err = open(dir.path()).err().unwrap();
    assert!(err.to_string().contains(&hot_name(2)), "{err}");
    assert_eq!(file_names(dir.path()), before, "nothing changed");
}

/// With `full_scan_on_open` (the default open does not read a sealed segment's records:
/// tests/summary_open.rs).
#[test]
fn corruption_in_a_sealed_segment_stops_the_open_without_repair() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, true);
    persist_all_but_last(&paths);
    common::flip_bit(&paths[1], 500);
    let before = std::fs::read(&paths[1]).unwrap();
    let mut c = Config::new(dir.path());
    c.segment_size = SEG;
    c.full_scan_on_open = true;
    let err = Recorder::open(dir.path(), c).err().unwrap();
    assert!(err.to_string().contains(&hot_name(1)), "{err}");
    assert!(err.to_string().contains("offset"), "{err}");
    assert_eq!(std::fs::read(&paths[1]).unwrap(), before);
}

#[test]
fn zero_header_segment_in_the_middle_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, true);
    persist_all_but_last(&paths);
    let mut b = std::fs::read(&paths[1]).unwrap();
    b[..HEADER_LEN].fill(0);
    std::fs::write(&paths[1], &b).unwrap();
    let err = open(dir.path()).err().unwrap();
    assert!(err.to_string().contains(&hot_name(1)), "{err}");
    assert!(paths[1].exists());
}

#[test]
fn foreign_files_are_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2000, REC, SEG, true);
    persist_all_but_last(&paths);
    std::fs::write(dir.path().join("notes.tmp"), b"mine").unwrap();
    std::fs::write(dir.path().join("00000000000000000000.wal.bak"), b"mine too").unwrap();
    let mut rec = open(dir.path()).unwrap();
    let seq = rec.last_seq() + 1;
    rec.append_with(REC, |b| event::fill(seq, b)).unwrap();
    rec.close().unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("notes.tmp")).unwrap(),
        b"mine"
    );
    assert_eq!(
        std::fs::read(dir.path().join("00000000000000000000.wal.bak")).unwrap(),
        b"mine too"
    );
}

#[test]
fn empty_directory_starts_a_new_log_at_sequence_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = open(dir.path()).unwrap();
    assert_eq!(rec.last_seq(), 0);
    assert_eq!(rec.append(b"first").unwrap(), 1);
    rec.close().unwrap();
}
