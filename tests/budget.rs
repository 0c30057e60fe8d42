//! The disk budget (issues 16, 25): `max_disk_bytes`, `max_cold_age`, `min_free_bytes` are
//! held by deleting the oldest cold segments, and the byte limits are a hard cap: a segment
//! is prepared only when its file fits, the writer waits (stall cause `budget`) while freezes
//! and deletes make room, and gets `Error::DiskBudget` when nothing can; hot data is never
//! deleted.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{file_names, wait_for, SmallTmpfs};
use wal_recorder::config::{Compression, Config};
use wal_recorder::event;
use wal_recorder::logdir::verify;
use wal_recorder::maintainer::Health;
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

const SEG: u64 = 1 << 20;
const PER_SEG: u64 = 13_072; // about the 64-byte records of a 1 MiB segment

/// Exactly the 64-byte records of a segment, in the format the recorder writes by default.
fn first_segment_records() -> u64 {
    let framing = match Config::new("/").record_time {
        true => wal_recorder::segment::format::Framing::Timed,
        false => wal_recorder::segment::format::Framing::Plain,
    };
    framing.records_per_segment(SEG, 64)
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 4;
    c.max_compressed_segments = 100_000; // the counts never bound here
    c.scrub_rate = None;
    c
}

fn get(c: &wal_recorder::maintainer::Counter) -> u64 {
    c.get()
}

/// Bytes of every file in `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn append(rec: &mut Recorder, n: u64) {
    for _ in 0..n {
        let seq = rec.last_seq() + 1;
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
}

/// A log directory on a 24 MiB file system, configured with a 12 MiB budget (returned last).
fn budgeted_log() -> (SmallTmpfs, std::path::PathBuf, Config, u64) {
    let fs = SmallTmpfs::mount(24 << 20);
    let dir = fs.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let budget = 12 << 20;
    let mut c = config(&dir);
    c.max_disk_bytes = Some(budget);
    (fs, dir, c, budget)
}

/// 60 MiB through a 24 MiB file system with a 12 MiB budget: without it the disk fills
/// (ENOSPC); with it, every sample stays within the budget and nothing fails.
#[test]
fn a_disk_budget_holds_on_a_small_tmpfs_with_no_enospc() {
    let (_fs, dir, c, budget) = budgeted_log();
    let mut rec = Recorder::open(&dir, c).unwrap();
    for _ in 0..60 {
        append(&mut rec, PER_SEG);
        // Compression keeps up (the writer waits for it here): the budget is the only bound.
        wait_for("freezes", || get(&rec.maintainer_stats().hot) <= 6);
        let used = du(&dir);
        assert!(
            used <= budget,
            "{used} bytes on disk: {:?}",
            file_names(&dir)
        );
    }
    let m = rec.maintainer_stats();
    assert!(get(&m.freed) > 20, "retention deleted {}", get(&m.freed));
    assert_eq!(get(&m.enospc), 0);
    assert_ne!(rec.health(), Health::Failed);
    rec.close().unwrap();
    assert!(du(&dir) <= budget);
    let r = verify(&dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(60 * PER_SEG));
}

/// A writer far faster than compression (LZ4 HC level 12) on a 24 MiB file system with a
/// 12 MiB budget: the budget holds at every sample (a thread reads the directory back to
/// back), the writer waits for room instead of filling the disk, and nothing fails.
#[test]
fn a_writer_faster_than_compression_waits_for_room_and_the_budget_holds() {
    let (_fs, dir, mut c, budget) = budgeted_log();
    c.compression = Compression::Frame { level: 12 };
    c.compress_threads = 1;
    let mut rec = Recorder::open(&dir, c).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut max, mut samples) = (0, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(du(&dir));
                samples += 1;
            }
            (max, samples)
        })
    };
    append(&mut rec, 60 * PER_SEG);
    let m = rec.maintainer_stats();
    assert!(
        get(&m.stall_budget) > 0,
        "the writer never waited for the budget"
    );
    assert_eq!(get(&m.enospc), 0);
    assert!(get(&m.freed) > 20, "retention deleted {}", get(&m.freed));
    rec.close().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (max, samples) = sampler.join().unwrap();
    assert!(samples > 100, "{samples} samples");
    assert!(
        max <= budget,
        "{max} bytes on disk at most, budget {budget}"
    );
    let r = verify(&dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(60 * PER_SEG));
}

/// A budget the hot segments alone exceed (the active one and the next do not fit): nothing
/// can make room, so the first rollover fails with the limit named; nothing hot is deleted
/// and every record appended before is kept.
#[test]
fn only_hot_data_over_the_budget_fails_the_rollover_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_disk_bytes = Some(2 * SEG);
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let mut appended = 0;
    let err = loop {
        let seq = rec.last_seq() + 1;
        match rec.append_with(64, |b| event::fill(seq, b)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(
            appended <= 3 * PER_SEG,
            "the budget never stopped the writer"
        );
    };
    match &err {
        Error::DiskBudget { limit, excess, .. } => {
            assert_eq!(*limit, "max_disk_bytes");
            assert!(*excess > 0);
        }
        e => panic!("not the budget: {e}"),
    }
    assert!(err.to_string().contains("max_disk_bytes"), "{err}");
    let first = first_segment_records();
    assert_eq!(
        appended, first,
        "the first segment holds every record before"
    );
    assert_eq!(rec.health(), Health::Degraded);
    assert_eq!(rec.writer_stats().stalls, 1, "one rollover waited");
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok && r.first_seq == Some(1), "{r:?}");
    assert_eq!(r.last_seq, Some(appended));
}

#[test]
fn cold_segments_older_than_max_cold_age_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_cold_age = Some(Duration::from_millis(1));
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    append(&mut rec, 10 * PER_SEG);
    wait_for("deletes", || {
        let m = rec.maintainer_stats();
        get(&m.frozen) >= 5 && get(&m.freed) == get(&m.frozen)
    });
    rec.close().unwrap();
    let cold = file_names(dir.path())
        .iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .count();
    assert!(cold <= 1, "{:?}", file_names(dir.path()));
}

/// `min_free_bytes` more than the file system has: no segment beyond the first fits, so the
/// first rollover fails naming `min_free_bytes`.
#[test]
fn min_free_bytes_beyond_the_file_system_fails_the_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.min_free_bytes = Some(u64::MAX / 2);
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let first = first_segment_records();
    append(&mut rec, first);
    let seq = rec.last_seq() + 1;
    match rec.append_with(64, |b| event::fill(seq, b)) {
        Err(Error::DiskBudget { limit, .. }) => assert_eq!(limit, "min_free_bytes"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rec.health(), Health::Degraded);
    rec.close().unwrap();
    // Retention may delete what was frozen (the limit wants the space); what is left is
    // whole, and the sequence goes on from where the writer stopped.
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{r:?}");
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    assert_eq!(rec.last_seq(), first);
    rec.close().unwrap();
}

/// Without a budget, a full disk at prepare is waited out while a freeze or a delete in
/// flight may free room, and reported only when nothing can (issue 25). A writer far faster
/// than compression fills a file system that holds twenty hot segments (and half a segment
/// more, so each freeze's small output fits): every rollover that found the disk full waits
/// for the freezes and deletes in flight, and no append fails.
#[test]
fn without_a_budget_a_full_disk_at_prepare_waits_for_the_freezes_in_flight() {
    let file = SEG + wal_recorder::segment::watermark::WATERMARK_LEN;
    let fs = SmallTmpfs::mount(20 * file + SEG / 2);
    let dir = fs.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let mut c = config(&dir);
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.compression = Compression::Frame { level: 12 };
    c.compress_threads = 1;
    let mut rec = Recorder::open(&dir, c).unwrap();
    // 4 KiB records, zeros but for their number: they compress a hundredfold, so a freeze
    // needs little room, and the disk holds about twenty segments of them hot.
    let records = 80 * SEG / 4096;
    let mut payload = vec![0u8; 4096 - 64];
    for i in 1..=records {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        if let Err(e) = rec.append(&payload) {
            panic!("append {i} of {records}: {e}");
        }
    }
    let m = rec.maintainer_stats();
    assert!(
        get(&m.stall_prepare_retry) > 0,
        "the disk never filled: the test proves nothing"
    );
    rec.close().unwrap();
    let r = verify(&dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(records));
}

/// The same full disk with nothing in flight that could free room (`max_segments` keeps
/// every segment hot): the rollover fails at once with ENOSPC naming the segment file, and
/// every record appended before verifies.
#[test]
fn without_a_budget_a_full_disk_nothing_can_relieve_fails_the_rollover() {
    let file = SEG + wal_recorder::segment::watermark::WATERMARK_LEN;
    let fs = SmallTmpfs::mount(6 * file + SEG / 2);
    let dir = fs.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let mut c = config(&dir);
    c.max_segments = 100;
    let mut rec = Recorder::open(&dir, c).unwrap();
    let mut appended = 0u64;
    let err = loop {
        let seq = rec.last_seq() + 1;
        match rec.append_with(64, |b| event::fill(seq, b)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended <= 8 * PER_SEG, "the disk never filled");
    };
    match &err {
        Error::Io { source, path, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            assert!(path.to_string_lossy().ends_with(".wal"), "{err}");
        }
        e => panic!("not ENOSPC: {e}"),
    }
    assert_eq!(rec.health(), Health::Degraded);
    rec.close().unwrap();
    let r = verify(&dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(appended));
}
