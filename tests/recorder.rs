//! The recorder: open, append across rollovers, retention, reopen and continue, lock,
//! durability, bad input.

mod common;

use std::time::Duration;

use common::{file_names, wait_for, SmallTmpfs};
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::logdir::{verify, LogReader};
use wal_recorder::maintainer::Health;
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

const SEG: u64 = 64 * 1024;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 3;
    c.max_compressed_segments = 4;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c.sync_interval = Duration::from_millis(2);
    c.backend = common::backend();
    c
}

fn append_events(rec: &mut Recorder, n: u64) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        let seq = rec.last_seq() + 1;
        last = rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        assert_eq!(last, seq);
    }
    last
}

#[test]
fn records_roll_over_segments_and_retention_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let last = append_events(&mut rec, 20_000); // about 25 segments of 64 KiB
    assert!(rec.writer_stats().rollovers >= 20);
    rec.close().unwrap();
    let names = file_names(dir.path());
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!((r.hot, r.cold), (3, 4));
    assert_eq!(r.last_seq, Some(last));
    let mut reader = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        assert!(event::matches(info.seq, &buf));
    }
}

#[test]
fn reopening_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let first = append_events(&mut rec, 3000);
    rec.close().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    assert_eq!(rec.last_seq(), first);
    let last = append_events(&mut rec, 3000);
    assert_eq!(last, first + 3000);
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last));
}

#[test]
fn a_second_recorder_on_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let err = Recorder::open(dir.path(), config(dir.path()))
        .err()
        .unwrap();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    assert!(err.to_string().contains(dir.path().to_str().unwrap()));
    drop(rec);
    Recorder::open(dir.path(), config(dir.path())).unwrap();
}

/// After `sync()` returns, every appended record is in the segment files on disk (read
/// from the files, not from the writer's memory or the staging buffers).
#[test]
fn sync_makes_everything_appended_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let last = append_events(&mut rec, 5000);
    rec.sync().unwrap();
    let on_disk = verify(dir.path()).unwrap();
    assert!(on_disk.ok, "{:?}", on_disk.errors);
    assert_eq!(on_disk.last_seq, Some(last), "{on_disk:?}");
    assert!(rec.durable_seq() >= last);
    rec.close().unwrap();
}

#[test]
fn the_maintainer_advances_durable_seq_without_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let last = append_events(&mut rec, 5000);
    // Idle writer: the timer syncs the partial page too, so durability reaches the end.
    wait_for("durable_seq", || rec.durable_seq() == last);
    assert_eq!(rec.health(), Health::Ok);
    rec.close().unwrap();
}

#[test]
fn prepared_segments_make_rollover_stall_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    wait_for("prepared segments", || rec.prepared_ready() == 2);
    append_events(&mut rec, 2000); // two rollovers of about 817 records each
    assert_eq!(rec.writer_stats().rollovers, 2);
    assert_eq!(rec.writer_stats().stalls, 0);
    rec.close().unwrap();
}

#[test]
fn missing_directory_is_a_typed_error() {
    let err = Recorder::open("/nonexistent/wal", Config::new("/x"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/wal"), "{err}");
}

#[test]
fn directory_of_foreign_files_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), b"mine").unwrap();
    std::fs::write(dir.path().join("data.bin"), b"also mine").unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    append_events(&mut rec, 100);
    rec.close().unwrap();
    assert_eq!(std::fs::read(dir.path().join("README")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(dir.path().join("data.bin")).unwrap(),
        b"also mine"
    );
}

#[test]
fn foreign_file_with_a_segment_name_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("00000000000000000000.wal");
    std::fs::write(&p, vec![7u8; 200]).unwrap();
    let err = Recorder::open(dir.path(), config(dir.path()))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("00000000000000000000.wal"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&p).unwrap(),
        vec![7u8; 200],
        "no silent repair"
    );
}

#[test]
fn read_only_directory_is_a_typed_error() {
    let ro = common::ReadOnlyDir::mount();
    let err = Recorder::open(ro.path(), config(ro.path())).err();
    let err = err.expect("opening a read-only directory must fail");
    assert!(
        err.to_string().contains("ro/00000000000000000000.wal"),
        "{err}"
    );
}

#[test]
fn a_disk_that_fills_while_appending_is_a_typed_error_and_loses_nothing() {
    let fs = SmallTmpfs::mount(6 * SEG);
    let mut rec = Recorder::open(fs.path(), config(fs.path())).unwrap();
    // Fill the disk with records: appends fail with a typed error once nothing fits.
    let mut last_ok = 0;
    let err = loop {
        let seq = rec.last_seq() + 1;
        match rec.append_with(64, |b| event::fill(seq, b)) {
            Ok(s) => last_ok = s,
            Err(e) => break e,
        }
        assert!(last_ok < 1_000_000, "the disk never filled");
    };
    assert!(
        err.to_string().contains("No space left")
            || err.to_string().contains("Timeout")
            || err.to_string().contains("fallocate"),
        "{err}"
    );
    drop(rec);
    let r = verify(fs.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last_ok));
}

/// A disk that fills while the writer rolls over, in either write path: the writer gets the
/// maintainer's prepare error (it never creates a segment itself, so no index can be
/// claimed and abandoned), and once space is freed the log continues. The log reopens and
/// verifies with contiguous segment numbers and every accepted record.
#[test]
fn a_disk_that_fills_and_frees_again_leaves_no_gap_in_segment_numbers() {
    use wal_recorder::config::WritePath;
    for path in [WritePath::Direct, WritePath::Staged] {
        let fs = SmallTmpfs::mount(12 * SEG);
        let staging = common::staging_root();
        let ballast = fs.path().join("ballast");
        let mut cfg = config(fs.path());
        cfg.write_path = path;
        cfg.staging_dir = staging.path().to_path_buf();
        cfg.max_segments = 64; // retention must not make room: only freeing the ballast does
        cfg.max_compressed_segments = 64;
        let mut rec = Recorder::open(fs.path(), cfg.clone()).unwrap();
        // Take all but ~3 segments' worth of space.
        let free = fs2_free(fs.path());
        std::fs::write(&ballast, vec![1u8; (free - 3 * SEG) as usize]).unwrap();
        let mut accepted = Vec::new();
        let err = loop {
            let seq = rec.last_seq() + 1;
            match rec.append_with(64, |b| event::fill(seq, b)) {
                Ok(s) => accepted.push(s),
                Err(e) => break e,
            }
            assert!(
                accepted.len() < 1_000_000,
                "{path:?}: the disk never filled"
            );
        };
        assert!(
            err.to_string().contains("No space left") && err.to_string().contains(".wal"),
            "{path:?}: {err}"
        );
        std::fs::remove_file(&ballast).unwrap();
        // The maintainer retries its prepare; appends succeed again.
        let resumed = loop {
            let seq = rec.last_seq() + 1;
            if let Ok(s) = rec.append_with(64, |b| event::fill(seq, b)) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        accepted.push(resumed);
        let more = append_events(&mut rec, 3_000);
        rec.close().unwrap();
        let r = verify(fs.path()).unwrap();
        assert!(r.ok, "{path:?}: {:?}", r.errors);
        assert_eq!(r.last_seq, Some(more), "{path:?}");
        let mut indices: Vec<u64> = file_names(fs.path())
            .iter()
            .filter_map(|n| n.split('.').next()?.parse().ok())
            .collect();
        indices.sort();
        let first = indices[0];
        assert_eq!(
            indices,
            (first..first + indices.len() as u64).collect::<Vec<_>>(),
            "{path:?}: a gap in segment numbers"
        );
        let rec = Recorder::open(fs.path(), cfg).unwrap();
        assert_eq!(rec.last_seq(), more, "{path:?}");
        rec.close().unwrap();
    }
}

/// Free bytes on the file system holding `dir`.
fn fs2_free(dir: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is valid plain data; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the result is checked.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

/// A staged log with `plan` as its fault plan, holding `n` durable records.
fn durable_log(
    dir: &std::path::Path,
    staging: &std::path::Path,
    plan: &wal_recorder::io::fault::FaultPlan,
    n: u64,
) -> Recorder {
    let mut cfg = config(dir);
    cfg.fault_plan = Some(plan.clone());
    cfg.staging_dir = staging.to_path_buf();
    let mut rec = Recorder::open(dir, cfg).unwrap();
    for seq in 1..=n {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.sync().unwrap();
    assert_eq!(rec.durable_seq(), n);
    rec
}

/// Appends (paced a little) until the log refuses; returns the refusal.
fn append_until_refused(rec: &mut Recorder) -> Error {
    loop {
        let seq = rec.last_seq() + 1;
        match rec.append_with(64, |b| event::fill(seq, b)) {
            Ok(_) => std::thread::sleep(Duration::from_micros(20)),
            Err(e) => return e,
        }
        assert!(rec.last_seq() < 10_000_000, "the failure never surfaced");
    }
}

common::on_both_backends! {
/// The creation of a segment file ahead of the writer is reached by fault rules too
/// (`Target::Prepare`), in both write paths: its failed fsync latches the log failed with
/// the file and the cause, never retried; every record appended before stays readable.
fn a_failed_fsync_while_preparing_a_segment_latches_the_log_in_both_paths() {
    use wal_recorder::config::WritePath;
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    for path in [WritePath::Direct, WritePath::Staged] {
        let dir = tempfile::tempdir().unwrap();
        let staging = common::staging_root();
        let plan = FaultPlan::new();
        let mut cfg = config(dir.path());
        cfg.write_path = path;
        cfg.staging_dir = staging.path().to_path_buf();
        cfg.fault_plan = Some(plan.clone());
        let mut rec = Recorder::open(dir.path(), cfg.clone()).unwrap();
        plan.fail_always(OpCode::Fsync, Target::Prepare, libc::EIO);
        let err = append_until_refused(&mut rec);
        assert!(matches!(err, Error::Failed { .. }), "{path:?}: {err}");
        let cause = rec.maintainer_stats().failure().expect("a cause is kept");
        let (cause, dir_name) = (cause.to_string(), dir.path().display().to_string());
        assert!(
            cause.contains("fsync") && cause.contains(&dir_name),
            "{path:?}: {cause}"
        );
        assert_eq!(rec.health(), Health::Failed);
        let last = rec.last_seq();
        let _ = rec.close();
        // Staged: the buffers a failed log keeps are applied by the next open.
        cfg.fault_plan = None;
        let rec = Recorder::open(dir.path(), cfg).unwrap();
        assert_eq!(rec.last_seq(), last, "{path:?}");
        rec.close().unwrap();
    }
}
}

#[test]
fn after_an_fsync_error_append_refuses_instead_of_pretending() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    let mut rec = durable_log(dir.path(), staging.path(), &plan, 100);
    let durable_before = rec.durable_seq();
    // From now on every fdatasync of a segment fails. Appends go on until the maintainer's
    // next one (a drain, a persist or a prepare) fails; from then on every append is refused.
    plan.fail_always(OpCode::Fdatasync, Target::Segment, libc::EIO);
    let err = append_until_refused(&mut rec);
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    assert_eq!(rec.health(), Health::Failed);
    let seq = rec.last_seq() + 1;
    assert!(rec.append_with(64, |b| event::fill(seq, b)).is_err());
    assert!(rec.sync().is_err());
    assert_eq!(rec.durable_seq(), durable_before, "nothing became durable");
    let last = rec.last_seq();
    assert!(rec.close().is_err());
    // Nothing was deleted: every appended record is still in the directory, and the staging
    // buffers (which may hold what the disk lost) are kept for the next open.
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last));
    let kept: Vec<_> = std::fs::read_dir(staging.path()).unwrap().collect();
    assert_eq!(kept.len(), 1, "the failed log's staging directory is kept");
    // The next open (the disk healthy again) takes them in and continues after `last`.
    let mut cfg = config(dir.path());
    cfg.staging_dir = staging.path().to_path_buf();
    let rec = Recorder::open(dir.path(), cfg).unwrap();
    assert_eq!(rec.last_seq(), last);
    rec.close().unwrap();
    assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
}

common::on_both_backends! {
fn a_slow_disk_makes_the_writer_wait_and_never_overwrites_undrained_data() {
    use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    // Every write to a segment file takes 30 ms: the writer fills its two buffers long
    // before the first one is drained, persisted and free again.
    let plan = FaultPlan::new();
    plan.add(Rule {
        code: OpCode::Write,
        target: Target::Segment,
        nth: 0,
        count: u32::MAX,
        effect: Effect::DelayMs(30),
    });
    let mut cfg = config(dir.path());
    cfg.fault_plan = Some(plan.clone());
    cfg.staging_dir = staging.path().to_path_buf();
    cfg.prepared_segments = 1;
    cfg.staging_buffers = 2;
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    let n = 6 * 817; // six segments of 64 KiB
    for seq in 1..=n {
        assert_eq!(rec.append_with(64, |b| event::fill(seq, b)).unwrap(), seq);
    }
    let stalls = rec.writer_stats().stalls;
    assert!(
        stalls >= 3,
        "the writer never waited for a buffer: {stalls} stalls"
    );
    assert!(plan.fired() > 0);
    // The maintainer counts each wait it saw by cause (a wait shorter than its turn can go
    // unseen).
    let m = rec.maintainer_stats();
    let get = wal_recorder::maintainer::Counter::get;
    let by_cause = get(&m.stall_no_free_buffer)
        + get(&m.stall_preparing)
        + get(&m.stall_prepare_retry)
        + get(&m.stall_maintainer_late);
    assert!(
        (1..=stalls).contains(&by_cause),
        "{by_cause} causes for {stalls} stalls"
    );
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(n)));
    let mut reader = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        assert!(
            event::matches(info.seq, &buf),
            "record {} overwritten",
            info.seq
        );
    }
}
}

common::on_both_backends! {
fn zero_filled_segments_are_written_in_steps_before_the_writer_gets_them() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new(); // no rules: counts the operations
    let mut cfg = config(dir.path());
    cfg.segment_size = 3 << 20; // three 1 MiB zero steps per segment
    cfg.zero_fill = true;
    cfg.prepared_segments = 2;
    cfg.fault_plan = Some(plan.clone());
    cfg.staging_dir = staging.path().to_path_buf();
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    wait_for("two prepared segments", || rec.prepared_ready() == 2);
    // Nothing appended yet: every write so far is a segment creation's fallocate (the first
    // segment's and two prepared ones') or a zero step of a prepared segment: three of
    // 1 MiB and one for the watermark page past the capacity.
    let page = wal_recorder::segment::watermark::WATERMARK_LEN;
    assert_eq!(plan.seen(OpCode::Write, Target::Prepare), 3 + 2 * 4);
    for i in 0..2u64 {
        let seg = dir.path().join(format!("{:020}.wal", i + 1));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), (3 << 20) + page);
    }
    let n = 100_000; // about 2.6 segments of 80-byte records
    for seq in 1..=n {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(n));
}
}

#[test]
fn a_failed_drain_write_latches_failed_and_the_next_open_loses_nothing() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    let mut rec = durable_log(dir.path(), staging.path(), &plan, 1000);
    let durable_before = rec.durable_seq();
    // The disk starts refusing the drain's writes (EIO): the log latches Failed.
    plan.fail_always(OpCode::Write, Target::Segment, libc::EIO);
    let err = append_until_refused(&mut rec);
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    assert_eq!(rec.health(), Health::Failed);
    assert_eq!(
        rec.durable_seq(),
        durable_before,
        "nothing more became durable"
    );
    let last = rec.last_seq();
    assert!(rec.close().is_err());
    // The staging buffers hold what the disk refused; the next open (disk healthy) applies
    // it: every appended record is there.
    let mut cfg = config(dir.path());
    cfg.staging_dir = staging.path().to_path_buf();
    let rec = Recorder::open(dir.path(), cfg).unwrap();
    assert_eq!(rec.last_seq(), last);
    assert!(rec.recovered().replayed_records > 0);
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last));
}

common::on_both_backends! {
/// Contract 5 on the writer's own path: Linux reports a writeback error once per file, so a
/// failed msync must latch the log; the next `sync()` must not succeed over lost pages.
fn a_failed_msync_in_sync_latches_failed_with_its_cause_and_stays_failed() {
    use wal_recorder::config::WritePath;
    use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(Rule {
        code: OpCode::Fdatasync,
        target: Target::Mapping,
        nth: 0,
        count: 1, // fails once, as the kernel reports a writeback error once
        effect: Effect::Fail(libc::EIO),
    });
    let mut cfg = config(dir.path());
    cfg.write_path = WritePath::Direct;
    cfg.fault_plan = Some(plan);
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    for seq in 1..=100u64 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    let durable = rec.durable_seq();
    let err = rec.sync().unwrap_err();
    match &err {
        Error::Failed { cause, .. } => assert!(cause.to_string().contains("msync"), "{cause}"),
        other => panic!("{other}"),
    }
    // Sticky: the second sync finds no error in the kernel, and still fails.
    assert!(matches!(rec.sync(), Err(Error::Failed { .. })));
    assert!(matches!(
        rec.append_with(64, |b| event::fill(101, b)),
        Err(Error::Failed { .. })
    ));
    assert_eq!(rec.health(), Health::Failed);
    assert_eq!(
        rec.durable_seq(),
        durable,
        "nothing claimed durable after the failure"
    );
    assert!(rec.maintainer_stats().failure().is_some());
    assert!(rec.close().is_err());
}
}

common::on_both_backends! {
/// Contract 5 on the prepare path: a failed fsync while preparing a segment latches the log
/// (it used to be retried as a failed preparation) and is not retried.
fn a_failed_fsync_while_preparing_latches_failed_and_is_not_retried() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    // The open creates the first segment itself (its fsync and the directory's: the first
    // two); from the third on, the maintainer's prepares fail (Staged: the directory fsync
    // after each prepared segment).
    let before = 2;
    plan.add(wal_recorder::io::fault::Rule {
        code: OpCode::Fsync,
        target: Target::Prepare,
        nth: before,
        count: u32::MAX,
        effect: wal_recorder::io::fault::Effect::Fail(libc::EIO),
    });
    let mut cfg = config(dir.path());
    cfg.fault_plan = Some(plan.clone());
    cfg.staging_dir = staging.path().to_path_buf();
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    wait_for("the log to fail", || rec.health() == Health::Failed);
    let cause = rec.maintainer_stats().failure().expect("a cause");
    assert!(cause.to_string().contains("fsync dir"), "{cause}");
    // Not retried: the maintainer keeps turning, and no second directory fsync happens.
    let turns = |r: &Recorder| {
        let s = r.maintainer_stats();
        wal_recorder::maintainer::Counter::get(&s.busy_turns)
            + wal_recorder::maintainer::Counter::get(&s.idle_turns)
    };
    let t0 = turns(&rec);
    wait_for("the maintainer to turn 20 more times", || {
        turns(&rec) > t0 + 20
    });
    assert_eq!(plan.seen(OpCode::Fsync, Target::Prepare), before + 1);
    assert!(matches!(
        rec.append_with(64, |b| event::fill(1, b)),
        Err(Error::Failed { .. })
    ));
    assert!(rec.close().is_err());
}
}

/// A maintainer thread that dies (a panic on a broken invariant) must not leave the log
/// looking healthy until the writer waits out a 30 s limit: the log latches Failed at once,
/// with the panic as its cause.
#[test]
fn a_maintainer_that_panics_latches_failed_instead_of_hiding() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut cfg = config(dir.path());
    cfg.staging_dir = staging.path().to_path_buf();
    cfg.simulate_maintainer_panic = true;
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    wait_for("the dead maintainer to fail the log", || {
        rec.health() == Health::Failed
    });
    match rec.append_with(64, |b| event::fill(1, b)) {
        Err(Error::Failed { cause, .. }) => {
            assert!(
                cause.to_string().contains("maintainer thread died"),
                "{cause}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(rec.close().is_err());
}

common::on_both_backends! {
/// A log that failed before anything was appended (here: the fsync of a segment prepared at
/// open) still reports the failure from `sync()`: nothing to wait for is no success.
fn sync_on_a_log_that_failed_before_any_append_reports_the_failure() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    plan.fail_always(OpCode::Fdatasync, Target::Prepare, libc::EIO);
    let mut cfg = config(dir.path());
    cfg.fault_plan = Some(plan);
    cfg.staging_dir = staging.path().to_path_buf();
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    wait_for("the prepare's fdatasync to fail the log", || {
        rec.health() == Health::Failed
    });
    assert_eq!(rec.last_seq(), 0);
    assert!(matches!(rec.sync(), Err(Error::Failed { .. })));
    assert!(rec.close().is_err());
}
}

/// Direct mode: the maintainer's pretoucher never touches a mapping the writer handed over
/// (and persist unmapped): the writer moves or retires the link before each hand-over, at
/// rollovers and at close. Each pretouch that finds no live mapping is counted.
#[test]
fn the_pretoucher_never_touches_a_segment_after_its_hand_over() {
    use wal_recorder::config::WritePath;
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.write_path = WritePath::Direct;
        cfg.segment_size = 4 << 20;
        let mut rec = Recorder::open(dir.path(), cfg).unwrap();
        let n = 150_000u64; // about three rollovers of 4 MiB segments
        for seq in 1..=n {
            rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        }
        rec.shutdown().unwrap();
        let failures =
            wal_recorder::maintainer::Counter::get(&rec.maintainer_stats().pretouch_failures);
        assert_eq!(failures, 0, "round {round}: pretouches of unmapped memory");
    }
}

common::on_both_backends! {
/// Staged persist writes a segment's seal only after every byte before it is durable: a
/// power cut can then leave a torn tail, never a hole followed by a valid seal (which
/// recovery must call corruption). The backend's trace shows the order (the drain runs once
/// at start and then not for 10 s, so segment 0 goes to disk mostly at its persist).
fn staged_persist_writes_the_seal_only_after_the_records_are_durable() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    use wal_recorder::segment::format::{Framing, HEADER_LEN};
    for framing in [Framing::Plain, Framing::Timed] {
        let dir = tempfile::tempdir().unwrap();
        let staging = common::staging_root();
        let plan = FaultPlan::new();
        plan.record();
        let mut cfg = config(dir.path());
        cfg.fault_plan = Some(plan.clone());
        cfg.staging_dir = staging.path().to_path_buf();
        cfg.sync_interval = Duration::from_secs(10);
        cfg.continuous_drain = false;
        cfg.record_time = framing.timed();
        let mut rec = Recorder::open(dir.path(), cfg).unwrap();
        // A 64 KiB segment holds 817 records of 64 bytes without time, 743 with (a sealed
        // segment never fills its file exactly): its seal ends the used length.
        let n = framing.records_per_segment(SEG, 64);
        let seal_at = (HEADER_LEN + n as usize * framing.record_size(64)) as u64;
        let used = seal_at + framing.seal_len() as u64;
        let seal_page = seal_at / 4096 * 4096;
        assert_eq!(used.div_ceil(4096), seal_at / 4096 + 1, "one page holds the seal");
        for seq in 1..=900u64 {
            rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        }
        rec.close().unwrap();
        let seg: Vec<_> = plan
            .trace()
            .into_iter()
            .filter(|op| op.1 == Target::Segment)
            .map(|(code, _, off, len)| (code, off, len))
            .collect();
        // Segment 0 is truncated to its used length last; what comes just before:
        let t = seg
            .iter()
            .position(|&op| op == (OpCode::Ftruncate, used, 0))
            .unwrap_or_else(|| panic!("{framing:?}: segment 0 never persisted: {seg:?}"));
        assert!(t >= 4, "{seg:?}");
        assert_eq!(
            seg[t - 4..t],
            [
                (OpCode::Write, seal_page, 4_096), // the seal's page, without the seal
                (OpCode::Fdatasync, 0, 0),         // the records are durable
                (OpCode::Write, seal_page, 4_096), // the seal's page, with it
                (OpCode::Fdatasync, 0, 0),         // the seal is durable
            ],
            "{framing:?}: {seg:?}"
        );
        let r = verify(dir.path()).unwrap();
        assert!(r.ok, "{:?}", r.errors);
        assert_eq!(r.last_seq, Some(900));
    }
}
}

common::on_both_backends! {
/// A persist whose close ran and then reported an error must not close the descriptor
/// number again: it may belong to another file by then. The fault backend hands each freed
/// number to a "squatter" at once; every squatter must still be open afterwards.
fn a_close_that_ran_and_failed_is_not_closed_again() {
    use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    plan.add(Rule {
        code: OpCode::Close,
        target: Target::Segment,
        nth: 0,
        count: u32::MAX,
        effect: Effect::RunThenFail(libc::EIO),
    });
    let mut cfg = config(dir.path());
    cfg.fault_plan = Some(plan.clone());
    cfg.staging_dir = staging.path().to_path_buf();
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    let n = 3 * 817 + 100; // three rollovers of 64 KiB segments
    for seq in 1..=n {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.close().unwrap();
    let squatters = plan.squatters();
    assert!(squatters.len() >= 4, "every persist's close: {squatters:?}");
    for fd in squatters {
        // SAFETY: fcntl(F_GETFD) only queries the descriptor.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        assert!(open, "descriptor {fd} was closed a second time");
        // SAFETY: the test's own squatter, closed once here.
        unsafe { libc::close(fd) };
    }
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(n));
}
}

/// A maintainer stuck longer than the writer's wait limit with the persist ring and its
/// overflow full: the rollover fails with `Timeout` *before* the writer switches segments,
/// so no sealed segment is dropped; once the disk answers, the retried append goes on and
/// every record is durable and in the log.
#[test]
fn a_stuck_persist_fails_the_rollover_before_switching_and_drops_no_segment() {
    use wal_recorder::config::WritePath;
    use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(Rule {
        code: OpCode::Fdatasync,
        target: Target::Segment,
        nth: 0,
        count: 1,
        // Past the writer's 30 s wait limit (constants::WRITER_WAIT_LIMIT).
        effect: Effect::DelayMs(33_000),
    });
    let mut cfg = config(dir.path());
    cfg.write_path = WritePath::Direct;
    cfg.fault_plan = Some(plan.clone());
    cfg.persist_queue = 1;
    cfg.persist_overflow = 1;
    cfg.prepared_segments = 8;
    cfg.max_segments = 100;
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    wait_for("prepared segments", || rec.prepared_ready() >= 6);
    let mut seq = 0;
    let timed_out = loop {
        let next = seq + 1;
        match rec.append_with(64, |b| event::fill(next, b)) {
            Ok(s) => seq = s,
            Err(e) => break e,
        }
        assert!(
            seq < 20 * 817,
            "the writer never had to wait for the persist ring"
        );
    };
    assert!(matches!(timed_out, Error::Timeout { .. }), "{timed_out:?}");
    assert_eq!(
        rec.last_seq(),
        seq,
        "a failed append took a sequence number"
    );
    // The disk answers: the same append goes through and the log continues.
    let last = loop {
        let next = seq + 1;
        match rec.append_with(64, |b| event::fill(next, b)) {
            Ok(s) => break s,
            Err(Error::Timeout { .. }) => continue,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(last, seq + 1);
    let last = append_events(&mut rec, 3 * 817);
    rec.sync().unwrap();
    assert_eq!(rec.durable_seq(), last);
    rec.close().unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(
        (r.first_seq, r.last_seq, r.records),
        (Some(1), Some(last), last)
    );
}

/// Descriptors of this process open on files under `dir`.
fn open_fds_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(dir))
        .collect()
}

common::on_both_backends! {
/// A persist whose chain cannot be submitted ran nothing: it is submitted again after a
/// backoff, in both write paths, with nothing latched failed, no descriptor leaked, and every
/// record durable in the end.
fn a_persist_that_cannot_be_submitted_is_retried_without_failing_or_leaking() {
    use wal_recorder::config::WritePath;
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    for path in [WritePath::Direct, WritePath::Staged] {
        let dir = tempfile::tempdir().unwrap();
        let staging = common::staging_root();
        let plan = FaultPlan::new();
        plan.refuse_chains_ending_with(OpCode::Close, Target::Segment, 3);
        let mut cfg = config(dir.path());
        cfg.write_path = path;
        cfg.staging_dir = staging.path().to_path_buf();
        cfg.max_segments = 100;
        cfg.fault_plan = Some(plan.clone());
        let mut rec = Recorder::open(dir.path(), cfg).unwrap();
        let last = append_events(&mut rec, 4 * 817);
        rec.sync().unwrap();
        assert_eq!(rec.durable_seq(), last, "{path:?}");
        assert_ne!(rec.health(), Health::Failed, "{path:?}");
        let m = rec.maintainer_stats();
        let failures = wal_recorder::maintainer::Counter::get(&m.persist_failures);
        assert!(failures >= 3, "{path:?}: {failures} submission failures counted");
        assert_eq!(plan.fired(), 3, "{path:?}");
        rec.close().unwrap();
        assert_eq!(open_fds_under(dir.path()), Vec::<std::path::PathBuf>::new(), "{path:?}");
        let r = verify(dir.path()).unwrap();
        assert!(r.ok, "{path:?}: {:?}", r.errors);
        assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(last)), "{path:?}");
    }
}
}

common::on_both_backends! {
/// Writes longer than one system call transfers (Linux: about 2 GiB) are split: with the
/// per-call limit lowered (a test hook) to a quarter of a segment, the writer fills segments
/// faster than drains run; no write is longer than the limit, nothing is short-written or
/// latched failed, and every record is there.
fn writes_longer_than_one_system_call_are_split_into_steps() {
    use wal_recorder::io::fault::FaultPlan;
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let plan = FaultPlan::new();
    plan.record();
    let mut cfg = config(dir.path());
    cfg.segment_size = 256 * 1024;
    cfg.max_io_bytes = 64 * 1024;
    cfg.sync_interval = Duration::from_millis(50); // segments fill between drains
    cfg.continuous_drain = false;
    cfg.max_segments = 100;
    cfg.staging_dir = staging.path().to_path_buf();
    cfg.fault_plan = Some(plan.clone());
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    let last = append_events(&mut rec, 4 * 3270);
    rec.sync().unwrap();
    assert_eq!(rec.durable_seq(), last);
    assert_ne!(rec.health(), Health::Failed);
    rec.close().unwrap();
    let writes: Vec<u32> = plan
        .trace()
        .into_iter()
        .filter(|(code, target, _, _)| *code == OpCode::Write && *target == Target::Segment)
        .map(|(.., len)| len)
        .collect();
    assert!(writes.iter().all(|&len| len <= 64 * 1024), "{writes:?}");
    assert!(writes.iter().filter(|&&len| len == 64 * 1024).count() >= 4, "never split: {writes:?}");
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(last)));
}
}
