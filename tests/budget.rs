//! The disk budget (issue 16): `max_disk_bytes`, `max_cold_age`, `min_free_bytes` are held by
//! deleting the oldest cold segments; what only hot data exceeds is reported, never deleted.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{file_names, wait_for, SmallTmpfs};
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::logdir::verify;
use wal_recorder::maintainer::Health;
use wal_recorder::recorder::Recorder;

const SEG: u64 = 1 << 20;
const PER_SEG: u64 = 13_072; // 64-byte records in a 1 MiB segment

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

/// 60 MiB through a 24 MiB file system with a 12 MiB budget: without it the disk fills
/// (ENOSPC); with it, every sample stays within the budget and nothing fails.
#[test]
fn a_disk_budget_holds_on_a_small_tmpfs_with_no_enospc() {
    let fs = SmallTmpfs::mount(24 << 20);
    let dir = fs.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let budget = 12 << 20;
    let mut c = config(&dir);
    c.max_disk_bytes = Some(budget);
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

/// A budget smaller than the hot segments alone: nothing hot is ever deleted; the excess is
/// reported (health Degraded, the gauge) and the writer goes on.
#[test]
fn only_hot_data_over_the_budget_is_reported_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_disk_bytes = Some(2 * SEG);
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    append(&mut rec, 3 * PER_SEG);
    wait_for("the report", || rec.maintainer_stats().over_budget.get());
    assert_eq!(rec.health(), Health::Degraded);
    assert!(get(&rec.maintainer_stats().budget_excess_bytes) > 0);
    assert_eq!(
        rec.metrics().counters.budget_excess_bytes,
        get(&rec.maintainer_stats().budget_excess_bytes)
    );
    append(&mut rec, PER_SEG); // not blocked
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok && r.first_seq == Some(1), "{r:?}");
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

/// `min_free_bytes` more than the file system has: every cold segment goes, then the limit
/// is reported with only hot data left.
#[test]
fn min_free_bytes_deletes_cold_segments_then_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.min_free_bytes = Some(u64::MAX / 2);
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    append(&mut rec, 10 * PER_SEG);
    wait_for("deletes and the report", || {
        let m = rec.maintainer_stats();
        get(&m.frozen) >= 5 && get(&m.cold) == 0 && m.over_budget.get()
    });
    assert_eq!(rec.health(), Health::Degraded);
    rec.close().unwrap();
}
