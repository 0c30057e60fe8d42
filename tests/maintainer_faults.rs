//! Failure ordering of the maintainer (contracts 4 and 5), with faults injected into both I/O
//! backends (each test runs as `NAME::io_uring` and `NAME::blocking`) and, for the full disk, a
//! real small tmpfs. After every injected failure the directory
//! must still hold every record in a file that verifies.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{file_names, wait_for, write_segments, SmallTmpfs};
use wal_recorder::config::Config;
use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
use wal_recorder::io::{OpCode, Target};
use wal_recorder::logdir::verify;
use wal_recorder::maintainer::{Health, SegmentMaintainer};
use wal_recorder::segment::names::{cold_name, hot_name};

const SEG: u64 = 256 * 1024;

fn get(c: &wal_recorder::maintainer::Counter) -> u64 {
    wal_recorder::maintainer::Counter::get(c)
}

fn start(dir: &Path, plan: Option<FaultPlan>, hot: usize) -> SegmentMaintainer {
    let mut c = Config::new(dir);
    c.max_segments = hot;
    c.max_compressed_segments = 1000;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c.fault_plan = plan;
    c.backend = common::backend();
    let m = SegmentMaintainer::new(c).unwrap();
    let mut m = m;
    m.start().unwrap();
    m
}

fn feed(m: &mut SegmentMaintainer, dir: &Path, n: u64) -> (Vec<Vec<u8>>, u64) {
    let mut q = m.take_persist_queue().unwrap();
    write_segments(dir, n, SEG, |seg| assert!(q.push(seg).is_ok()))
}

/// Every record 1..=last is in a file that verifies.
fn assert_nothing_lost(dir: &Path, last: u64) {
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(
        (r.first_seq, r.last_seq),
        (Some(1), Some(last)),
        "{:?}",
        file_names(dir)
    );
    assert_eq!(r.records, last);
}

fn rule(code: OpCode, target: Target, count: u32, effect: Effect) -> Rule {
    Rule {
        code,
        target,
        nth: 0,
        count,
        effect,
    }
}

/// A transient failure of one freeze step: the freeze is retried and succeeds, the failure
/// is counted, no tmp is left, and at the moment of failure nothing was lost.
fn transient_freeze_failure(code: OpCode, target: Target, errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(code, target, 1, Effect::Fail(errno)));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 3);
    wait_for("the fault", || plan.fired() == 1);
    wait_for("both freezes", || get(&m.stats().frozen) == 2);
    m.stop().unwrap();
    assert_eq!(
        get(&m.stats().compress_failures),
        1,
        "{code:?} failure not counted"
    );
    assert_eq!(m.health(), Health::Ok);
    assert!(file_names(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
    assert_nothing_lost(dir.path(), last);
}

common::on_both_backends! {
fn read_error_during_freeze_keeps_the_wal_and_retries() {
    transient_freeze_failure(OpCode::Read, Target::Segment, libc::EIO);
}
}

common::on_both_backends! {
fn write_error_during_freeze_keeps_the_wal_and_retries() {
    transient_freeze_failure(OpCode::Write, Target::Tmp, libc::EIO);
}
}

common::on_both_backends! {
fn rename_error_keeps_the_wal_and_retries() {
    transient_freeze_failure(OpCode::Rename, Target::Tmp, libc::EACCES);
}
}

common::on_both_backends! {
fn enospc_on_write_degrades_health_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.fail_always(OpCode::Write, Target::Tmp, libc::ENOSPC);
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 2);
    wait_for("ENOSPC", || get(&m.stats().enospc) >= 2);
    assert_eq!(m.health(), Health::Degraded);
    assert!(dir.path().join(hot_name(0)).exists());
    plan.clear();
    wait_for("the freeze", || get(&m.stats().frozen) == 1);
    wait_for("health ok", || m.health() == Health::Ok);
    m.stop().unwrap();
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn eio_on_fdatasync_of_the_tmp_fails_health_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.fail_always(OpCode::Fdatasync, Target::Tmp, libc::EIO);
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 4);
    wait_for("failed health", || m.health() == Health::Failed);
    m.stop().unwrap();
    // Never retried: no freeze got past its failed fdatasync (a second freeze already in
    // flight may fail its own fdatasync too, hence >= 1).
    assert!(get(&m.stats().fsync_failures) >= 1);
    assert_eq!(get(&m.stats().frozen), 0);
    for i in 0..4 {
        assert!(dir.path().join(hot_name(i)).exists(), "segment {i} deleted");
    }
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn eio_on_the_directory_fsync_after_rename_keeps_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(OpCode::Fsync, Target::Dir, 1, Effect::Fail(libc::EIO)));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 3);
    wait_for("failed health", || m.health() == Health::Failed);
    m.stop().unwrap();
    // The first directory fsync failed: it followed a freeze's rename (of whichever of the
    // freezes in flight got there first), so that `.wal.lz4` exists, and no unlink ever ran
    // (each waits for its own directory fsync; after the failure nothing is deleted).
    for i in 0..3 {
        assert!(dir.path().join(hot_name(i)).exists(), "segment {i} deleted");
    }
    let renamed = (0..3).filter(|&i| dir.path().join(cold_name(i)).exists()).count();
    assert!(renamed >= 1, "no rename preceded the failed directory fsync");
    assert_eq!(get(&m.stats().frozen), 0);
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn eacces_on_unlink_of_the_wal_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(
        OpCode::Unlink,
        Target::Segment,
        1,
        Effect::Fail(libc::EACCES),
    ));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 2);
    wait_for("the fault", || plan.fired() == 1);
    wait_for("the leftover unlink", || {
        !dir.path().join(hot_name(0)).exists()
    });
    m.stop().unwrap();
    assert_eq!(get(&m.stats().unlink_failures), 1);
    assert_eq!(m.health(), Health::Ok);
    assert!(dir.path().join(cold_name(0)).exists());
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn eio_on_persist_fdatasync_fails_health_and_keeps_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(
        OpCode::Fdatasync,
        Target::Segment,
        1,
        Effect::Fail(libc::EIO),
    ));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 3);
    wait_for("failed health", || m.health() == Health::Failed);
    m.stop().unwrap();
    assert!(dir.path().join(hot_name(0)).exists());
    assert_eq!(get(&m.stats().fsync_failures), 1);
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn failed_ftruncate_cancels_the_linked_chain_and_persist_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(
        OpCode::Ftruncate,
        Target::Segment,
        1,
        Effect::Fail(libc::EIO),
    ));
    let mut m = start(dir.path(), Some(plan.clone()), 10);
    let (_, last) = feed(&mut m, dir.path(), 2);
    wait_for("both persisted", || get(&m.stats().persisted) == 2);
    m.stop().unwrap();
    assert_eq!(get(&m.stats().persist_failures), 1);
    // Retried to completion: truncated to its used length.
    assert!(
        std::fs::metadata(dir.path().join(hot_name(0)))
            .unwrap()
            .len()
            < SEG
    );
    assert_eq!(m.health(), Health::Ok);
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn short_reads_and_writes_still_give_byte_exact_frames() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(
        OpCode::Read,
        Target::Segment,
        u32::MAX,
        Effect::Short(3000),
    ));
    plan.add(rule(
        OpCode::Write,
        Target::Tmp,
        u32::MAX,
        Effect::Short(1000),
    ));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (sealed, last) = feed(&mut m, dir.path(), 3);
    wait_for("freezes", || get(&m.stats().frozen) == 2);
    m.stop().unwrap();
    assert!(plan.fired() > 100);
    for (i, want) in sealed.iter().enumerate().take(2) {
        let frame = std::fs::read(dir.path().join(cold_name(i as u64))).unwrap();
        let mut back = Vec::new();
        let mut dec = lz4_flex::frame::FrameDecoder::new(&frame[..]);
        std::io::Read::read_to_end(&mut dec, &mut back).unwrap();
        assert!(back == *want, "segment {i} differs");
    }
    assert_nothing_lost(dir.path(), last);
}
}

common::on_both_backends! {
fn real_full_disk_during_freeze_is_retried_and_loses_nothing() {
    let fs = SmallTmpfs::mount(4 * SEG + 64 * 1024);
    let dir = fs.path();
    let mut m = start(dir, None, 1);
    let mut q = m.take_persist_queue().unwrap();
    let mut segs = Vec::new();
    let (_, last) = write_segments(dir, 2, SEG, |s| segs.push(s));
    // Fill what is left so the compressed copy cannot be written.
    let filler = dir.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4096"])
        .arg(format!("of={}", filler.display()))
        .output();
    for s in segs {
        assert!(q.push(s).is_ok());
    }
    wait_for("ENOSPC", || get(&m.stats().enospc) >= 1);
    // The retry is registered (and health degraded) right after the counter moves.
    wait_for("degraded health", || m.health() == Health::Degraded);
    assert!(dir.join(hot_name(0)).exists());
    std::fs::remove_file(&filler).unwrap();
    wait_for("the freeze", || get(&m.stats().frozen) == 1);
    m.stop().unwrap();
    assert_eq!(m.health(), Health::Ok);
    assert!(file_names(dir).iter().all(|n| !n.ends_with(".tmp")));
    assert_nothing_lost(dir, last);
}
}

common::on_both_backends! {
/// Contract 5: after a failed fdatasync, retention deletes nothing more (a cold limit of one
/// would otherwise delete every segment but the newest), the failed persist is never retried
/// (the segment keeps its preallocated size: a retry would have truncated it), and stop
/// still returns.
fn retention_stops_after_an_fsync_error_and_the_failed_fdatasync_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    // Direct persists sync twice (records, then the truncated size), in log order: the
    // fifth segment fdatasync is the first of segment 2's persist.
    plan.add(Rule {
        code: OpCode::Fdatasync,
        target: Target::Segment,
        nth: 4,
        count: 1,
        effect: Effect::Fail(libc::EIO),
    });
    let mut c = Config::new(dir.path());
    c.max_segments = 1;
    c.max_compressed_segments = 1;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c.fault_plan = Some(plan.clone());
    c.backend = common::backend();
    let mut m = SegmentMaintainer::new(c).unwrap();
    m.start().unwrap();
    let (_, last) = feed(&mut m, dir.path(), 6);
    wait_for("failed health", || m.health() == Health::Failed);
    m.stop().unwrap();
    assert_eq!(plan.fired(), 1);
    assert_eq!(get(&m.stats().fsync_failures), 1);
    // Before the failure only segments 0 and 1 were persisted (at most one freed); after it
    // nothing is frozen or freed, and segments 2..5 stay hot.
    assert!(get(&m.stats().freed) <= 1, "{:?}", file_names(dir.path()));
    for i in 2..6 {
        assert!(
            dir.path().join(hot_name(i)).exists(),
            "segment {i}: {:?}",
            file_names(dir.path())
        );
    }
    let len = std::fs::metadata(dir.path().join(hot_name(2)))
        .unwrap()
        .len();
    assert_eq!(len, SEG, "the failed persist was retried");
    assert_nothing_lost_from(dir.path(), last);
}
}

/// Every record from the first retained one to `last` is in a file that verifies.
fn assert_nothing_lost_from(dir: &Path, last: u64) {
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last), "{:?}", file_names(dir));
}

common::on_both_backends! {
/// A write of the compressed tmp that stores a flipped byte and reports success: the check
/// after compression (decoded length and CRC32C against the segment) catches it, nothing is
/// published, and the freeze is retried and succeeds.
fn a_silently_corrupted_tmp_write_is_caught_by_the_check_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(rule(OpCode::Write, Target::Tmp, 1, Effect::Corrupt));
    let mut m = start(dir.path(), Some(plan.clone()), 1);
    let (_, last) = feed(&mut m, dir.path(), 3);
    wait_for("the fault", || plan.fired() == 1);
    wait_for("both freezes", || get(&m.stats().frozen) == 2);
    m.stop().unwrap();
    assert_eq!(get(&m.stats().compress_failures), 1, "the check missed it");
    assert_nothing_lost(dir.path(), last);
}
}
