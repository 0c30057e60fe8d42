//! Contract 9: a reader resumed from its saved position never diverges silently. The lost
//! tail is real: the recorder's last records reached the reader (from the staging buffers)
//! but not the disk, a power cut took them (the log directory is put back to what the disk
//! held), and a new recorder appends other records under the same sequence numbers.

mod common;

use std::path::Path;

use common::walctl;
use wal_recorder::config::Config;
use wal_recorder::logdir::{OnDivergence, StartAt, Tailer};
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

const SEG: u64 = 64 * 1024;
/// Records on disk when the power is cut, and records the reader had read by then.
const DURABLE: u64 = 5_000;
const READ: u64 = 8_000;

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.scrub_rate = None;
    c
}

fn payload(generation: &str, seq: u64) -> Vec<u8> {
    format!("{generation}-{seq:08}").into_bytes()
}

fn append(dir: &Path, generation: &str, seqs: std::ops::RangeInclusive<u64>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rec = Recorder::open(dir, config(dir)).unwrap();
    for seq in seqs {
        assert_eq!(rec.append(&payload(generation, seq)).unwrap(), seq);
    }
    rec.close().unwrap();
}

fn copy_segments(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Reads every record of `dir` as reader `name`, checking `generation`'s payloads, up to `last`.
fn read_all(dir: &Path, name: &str, generation: &str, last: u64) {
    let mut t = Tailer::open(dir, StartAt::First)
        .unwrap()
        .with_position(name)
        .unwrap();
    let mut buf = Vec::new();
    for seq in 1..=last {
        let info = t.poll(&mut buf).unwrap().expect("a record");
        assert_eq!((info.seq, &buf), (seq, &payload(generation, seq)));
    }
    t.commit().unwrap();
}

/// `after` holds the log as the disk kept it across the power cut, with the reader's
/// position from after it read up to `READ`; the new recorder has appended `new_up_to`.
fn lost_tail(new_up_to: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let before = work.path().join("before");
    let after = work.path().join("after");
    append(&before, "old", 1..=DURABLE);
    copy_segments(&before, &after); // what the disk holds at the cut
    append(&before, "old", DURABLE + 1..=READ);
    read_all(&before, "risk", "old", READ);
    copy_segments(&before.join("readers"), &after.join("readers"));
    append(&after, "new", DURABLE + 1..=new_up_to);
    (work, after)
}

#[test]
fn a_reader_whose_records_were_replaced_gets_diverged_not_a_skip() {
    let (_work, dir) = lost_tail(READ + 100);
    let mut t = Tailer::resume(&dir, "risk").unwrap();
    let mut buf = Vec::new();
    match t.poll(&mut buf) {
        Err(Error::Diverged {
            seq,
            reader,
            expected,
            found,
            ..
        }) => {
            assert_eq!((seq, reader.as_str()), (READ + 1, "risk"));
            assert_ne!(Some(expected), found);
        }
        other => panic!("expected Diverged, got {other:?}"),
    }
    drop(t);
    // The position is left as it was: a second resume fails the same way.
    let mut t = Tailer::resume(&dir, "risk").unwrap();
    assert!(matches!(t.poll(&mut buf), Err(Error::Diverged { .. })));
}

#[test]
fn an_intact_log_resumes_past_the_check_without_redelivery() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("log");
    append(&dir, "old", 1..=READ);
    read_all(&dir, "risk", "old", 3_000);
    let mut t = Tailer::resume(&dir, "risk").unwrap();
    let mut buf = Vec::new();
    let info = t.poll(&mut buf).unwrap().unwrap();
    assert_eq!(info.seq, 3_001);
    assert_eq!(t.redelivery(), None);
}

#[test]
fn with_redelivery_the_reader_starts_again_where_the_logs_still_agree() {
    let (_work, dir) = lost_tail(READ + 100);
    let mut t = Tailer::resume_with(&dir, "risk", OnDivergence::Redeliver).unwrap();
    let mut buf = Vec::new();
    let first = t.poll(&mut buf).unwrap().expect("a record");
    let r = t.redelivery().expect("a stated re-delivery");
    assert_eq!(r.until, READ + 1);
    assert_eq!(first.seq, r.from);
    // From a checkpoint the new log still holds: at or before the first replaced record.
    assert!(r.from <= DURABLE + 1, "{r:?}");
    // Every record from there on is the log's own, in order, once.
    let mut seq = first.seq;
    let want = |seq: u64| payload(if seq <= DURABLE { "old" } else { "new" }, seq);
    assert_eq!(buf, want(seq));
    while let Some(info) = t.poll(&mut buf).unwrap() {
        seq += 1;
        assert_eq!((info.seq, &buf), (seq, &want(seq)));
    }
    assert_eq!(seq, READ + 100);
    t.commit().unwrap();
    drop(t);
    // The re-delivery is over: the next resume continues without one.
    let mut t = Tailer::resume(&dir, "risk").unwrap();
    assert!(t.poll(&mut buf).unwrap().is_none());
    assert_eq!(t.redelivery(), None);
}

#[test]
fn walctl_tail_fails_on_divergence_and_redelivers_when_asked() {
    let (_work, dir) = lost_tail(READ + 100);
    let out = walctl()
        .args(["tail", "--name", "risk"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("diverged") && err.contains("risk"), "{err}");
    assert!(out.stdout.is_empty(), "printed records past a divergence");
    let out = walctl()
        .args(["tail", "--name", "risk", "--redeliver"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("re-delivering from"), "{err}");
    let lines = String::from_utf8_lossy(&out.stdout);
    let last = lines.lines().last().unwrap();
    assert!(last.starts_with(&format!("{}", READ + 100)), "{last}");
}

/// A new log directory with a private staging root, and its config.
fn staged_log() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tempfile::TempDir,
    Config,
) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let staging = common::staging_root();
    let mut c = config(&dir);
    c.staging_dir = staging.path().to_path_buf();
    (work, dir, staging, c)
}

/// `Visibility::Durable` delivers only what the recorder reports durable (its cursor), while
/// a committed tailer of the same log sees the records as soon as they are appended.
#[test]
fn a_durable_tailer_waits_for_durable_seq_and_a_committed_one_does_not() {
    use std::time::Duration;
    use wal_recorder::logdir::Visibility;
    let (_work, dir, staging, mut c) = staged_log();
    c.sync_interval = Duration::from_secs(10); // no timed drain during the test
    c.continuous_drain = false;
    let mut rec = Recorder::open(&dir, c).unwrap();
    for seq in 1..=100 {
        rec.append(&payload("a", seq)).unwrap();
    }
    rec.sync().unwrap();
    for seq in 101..=150 {
        rec.append(&payload("a", seq)).unwrap();
    }
    assert_eq!(rec.durable_seq(), 100);
    let mut durable = Tailer::open(&dir, StartAt::First)
        .unwrap()
        .with_staging_dir(Some(staging.path()))
        .with_visibility(Visibility::Durable);
    let mut committed = Tailer::open(&dir, StartAt::First)
        .unwrap()
        .with_staging_dir(Some(staging.path()));
    let mut buf = Vec::new();
    let drain = |t: &mut Tailer, buf: &mut Vec<u8>| {
        let mut last = 0;
        while let Some(info) = t.next_timeout(buf, Duration::from_millis(300)).unwrap() {
            assert_eq!(info.seq, last + 1);
            last = info.seq;
        }
        last
    };
    assert_eq!(
        drain(&mut committed, &mut buf),
        150,
        "committed records from staging"
    );
    assert_eq!(drain(&mut durable, &mut buf), 100, "only what is durable");
    rec.sync().unwrap();
    let mut last = 100;
    while last < 150 {
        let info = durable
            .next_timeout(&mut buf, Duration::from_secs(10))
            .unwrap()
            .expect("the rest once durable");
        assert_eq!(info.seq, last + 1);
        last = info.seq;
    }
    rec.close().unwrap();
}

/// Without a cursor (a log last written by an older build), a durable tailer delivers a hot
/// segment once persist has truncated it, also when it opened the segment before that.
#[test]
fn without_a_cursor_a_durable_tailer_delivers_a_segment_once_it_is_persisted() {
    use std::time::Duration;
    use wal_recorder::logdir::Visibility;
    let (_work, dir, _staging, mut c) = staged_log();
    c.max_segments = 100;
    let mut rec = Recorder::open(&dir, c).unwrap();
    std::fs::remove_file(wal_recorder::logdir::cursor_path(&dir)).unwrap();
    for seq in 1..=100 {
        rec.append(&payload("a", seq)).unwrap();
    }
    rec.sync().unwrap();
    let mut t = Tailer::open(&dir, StartAt::First)
        .unwrap()
        .with_staging_dir(None)
        .with_visibility(Visibility::Durable);
    let mut buf = Vec::new();
    assert!(
        t.next_timeout(&mut buf, Duration::from_millis(200))
            .unwrap()
            .is_none(),
        "the active segment is not proven durable without a cursor"
    );
    // Fill segment 0 and go on: it is sealed, persisted and truncated.
    let per_seg = wal_recorder::segment::format::Framing::Plain
        .records_per_segment(SEG, payload("a", 1).len());
    for seq in 101..=per_seg + 50 {
        rec.append(&payload("a", seq)).unwrap();
    }
    rec.sync().unwrap();
    let first = t
        .next_timeout(&mut buf, Duration::from_secs(10))
        .unwrap()
        .expect("segment 0 once persisted");
    assert_eq!(first.seq, 1);
    rec.close().unwrap();
}
