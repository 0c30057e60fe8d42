//! Contract 10: recovery tells a torn tail from the loss of records once reported durable.
//! `walctl record` runs (Staged, or Direct) until records are durable, is SIGKILLed, and its
//! staging buffers are removed (as a reboot empties tmpfs); then a 512-byte sector well inside the
//! drained, acknowledged region of the active segment is zeroed (a torn rewrite, or media
//! damage). The default open must report lost acknowledged records, never a torn tail;
//! `RecoveryMode::Strict` must refuse; `walctl verify` must fail, before and after the open.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{spawn_record_watched, staging_root, verify_json, wait_for};
use wal_recorder::config::{Config, RecoveryMode};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::names::segment_path;
use wal_recorder::Error;

/// A killed recorder's log whose last segment holds well over `min_durable` records, durable,
/// and no staging buffers left. Returns the durable seq the child last reported and the
/// exact seq of its last append.
fn killed_log(log: &Path, min_durable: u64, write_path: &str) -> (u64, u64) {
    let staging = staging_root();
    let report = tempfile::NamedTempFile::new().unwrap();
    let (mut child, progress, reader) = spawn_record_watched(
        log,
        &[
            "--report-appended",
            report.path().to_str().unwrap(),
            "--staging-dir",
            staging.path().to_str().unwrap(),
            "--records",
            "1000000000",
            "--rate",
            "200000",
            "--segment-size",
            "16M",
            "--max-segments",
            "2",
            "--write-path",
            write_path,
        ],
    );
    wait_for("durable records", || {
        progress.lock().unwrap().1 >= min_durable
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, durable) = reader.join().unwrap();
    drop(staging); // the power cut empties tmpfs: only the disk is left
    let bytes = std::fs::read(report.path()).unwrap();
    (durable, u64::from_le_bytes(bytes[..8].try_into().unwrap()))
}

fn zero_sector(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[0u8; 512], at).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_zeroed_sector_below_the_watermark_is_lost_acknowledged_data_not_a_torn_tail() {
    zeroed_sector_below_the_watermark("staged");
}

/// Direct mode's watermark trails by a few syncs (`MARK_EVERY`), far less than the 49 000
/// records between the damage and what was durable.
#[test]
fn a_zeroed_sector_below_the_watermark_of_a_direct_segment_is_lost_acknowledged_data() {
    zeroed_sector_below_the_watermark("direct");
}

fn zeroed_sector_below_the_watermark(write_path: &str) {
    // About 1 000 records of 64 bytes past the header, far below what was durable: at 64 KiB
    // a frame boundary (744 frames of 88 bytes with time after the header: the zeros read as
    // an unwritten tail), at 68 KiB the middle of a frame (a bad checksum).
    for at in [64 * 1024, 68 * 1024] {
        zeroed_sector_at(write_path, at);
    }
}

fn zeroed_sector_at(write_path: &str, at: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_, appended) = killed_log(&log, 50_000, write_path);
    zero_sector(&segment_path(&log, 0), at);

    let (code, v) = verify_json(&log);
    assert_eq!(code, Some(1), "{v}");
    assert!(v["errors"].to_string().contains("DATA LOSS"), "{v}");

    let mut strict = Config::new(&log);
    strict.recovery_mode = RecoveryMode::Strict;
    match Recorder::open(&log, strict) {
        Err(Error::LostAcknowledged { message, .. }) => assert!(message.contains("lost")),
        Err(e) => panic!("Strict refused for another reason: {e}"),
        Ok(_) => panic!("Strict opened a log that lost acknowledged records"),
    }

    let rec = Recorder::open(&log, Config::new(&log)).unwrap();
    let lost = rec
        .recovered()
        .lost_acknowledged
        .clone()
        .expect("the default open reports the loss");
    assert!(lost.last_kept < at / 64, "{lost:?}");
    // The watermark is what the drain before the last one made durable: never past what
    // was appended, and far past the damage.
    assert!(
        lost.watermark <= appended && lost.watermark > lost.last_kept + 10_000,
        "{lost:?} {appended}"
    );
    assert_eq!(lost.records(), lost.watermark - lost.last_kept);
    rec.close().unwrap();
    // After the open cut the log, its note in quarantine/ keeps verify failing.
    let (code, v) = verify_json(&log);
    assert_eq!(code, Some(1), "{v}");
    assert!(v["errors"].to_string().contains("LOST-ACKNOWLEDGED"), "{v}");
}

#[test]
fn a_power_cut_tail_beyond_the_watermark_is_a_torn_tail_and_opens_clean() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (durable, _) = killed_log(&log, 20_000, "staged");
    let (code, v) = verify_json(&log);
    assert_eq!(code, Some(0), "{v}");
    let rec = Recorder::open(&log, Config::new(&log)).unwrap();
    assert!(rec.recovered().lost_acknowledged.is_none());
    assert!(rec.last_seq() >= durable, "{} < {durable}", rec.last_seq());
    rec.close().unwrap();
    let (code, v) = verify_json(&log);
    assert_eq!(code, Some(0), "{v}");
}
