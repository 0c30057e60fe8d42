//! Readers: seeking to a sequence number, and tailing a log that `walctl record` writes in
//! another process (issue 15).

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{file_names, wait_for, walctl};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event::{self, TradeEvent};
use wal_recorder::logdir::{LogReader, StartAt, Tailer};
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

const SEG: u64 = 64 * 1024;
/// 64-byte records in a 64 KiB segment.
fn per_seg() -> u64 {
    wal_recorder::segment::format::Framing::Plain.records_per_segment(SEG, 64)
}

/// The settings every recorder here shares: 64 KiB segments, no scrub (nothing to find).
fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.scrub_rate = None;
    c
}

/// A closed log of 10 segments and 100 records: cold segments 0..=7, hot 8..=10.
fn closed_log(dir: &Path) -> u64 {
    let mut c = config(dir);
    c.max_segments = 2;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Direct;
    let mut rec = Recorder::open(dir, c).unwrap();
    let last = 10 * per_seg() + 100;
    for seq in 1..=last {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.close().unwrap();
    last
}

/// Reads `n` records from a seek to `seq`, checking they are `seq..seq + n` and intact.
fn read_from(dir: &Path, seq: u64, n: u64) {
    let records: Vec<_> = LogReader::open_at(dir, seq)
        .unwrap()
        .into_records()
        .take(n as usize)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len() as u64, n);
    for (i, (info, payload)) in records.iter().enumerate() {
        assert_eq!(info.seq, seq + i as u64);
        assert_eq!(TradeEvent::decode(payload).unwrap().seq, info.seq);
    }
}

#[test]
fn seek_finds_the_first_last_middle_and_a_cold_record() {
    let dir = tempfile::tempdir().unwrap();
    let last = closed_log(dir.path());
    assert!(file_names(dir.path())
        .iter()
        .any(|n| n.ends_with(".wal.lz4")));
    read_from(dir.path(), 1, 5); // first (in the first cold segment)
    read_from(dir.path(), 3 * per_seg() + 17, 900); // inside a cold segment, across into the next
    read_from(dir.path(), 9 * per_seg() + 1, 3); // first record of a hot segment
    read_from(dir.path(), last / 2, 1); // middle
    read_from(dir.path(), last, 1); // last
}

#[test]
fn seek_to_a_sequence_number_the_log_does_not_hold_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let last = closed_log(dir.path());
    for seq in [0, last + 1, last + 1000] {
        match LogReader::open_at(dir.path(), seq).err() {
            Some(Error::SeqNotFound {
                seq: s,
                first,
                last: l,
                ..
            }) => {
                assert_eq!(s, seq);
                assert_eq!(first, Some(1));
                if seq > last {
                    assert_eq!(l, Some(last));
                }
            }
            other => panic!("seek to {seq}: {other:?}"),
        }
    }
    // `walctl cat --from` seeks too.
    let out = walctl()
        .args(["cat", "--from"])
        .arg((last - 1).to_string())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8(out.stdout).unwrap();
    let seqs: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(seqs, [(last - 1).to_string(), last.to_string()]);
}

#[test]
fn a_tailer_started_at_the_end_returns_only_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let last = closed_log(dir.path());
    let mut t = Tailer::open(dir.path(), StartAt::End).unwrap();
    let mut buf = Vec::new();
    assert!(t.poll(&mut buf).unwrap().is_none());
    let mut c = config(dir.path());
    c.write_path = WritePath::Direct;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    for seq in last + 1..=last + 3 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    // Direct mode: the tailer reads the writer's stores from the page cache, before any
    // sync; across the recorder's new segment.
    follow(&mut t, last + 1, last + 3);
    rec.close().unwrap();
}

/// Staged mode: the tailer takes records from the staging buffers as the writer commits them,
/// long before the maintainer drains them (here: not for a minute, or at `sync()`); reading
/// the files alone, it sees them only after the drain.
#[test]
fn a_tailer_reads_committed_records_from_the_staging_buffers_before_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut c = config(dir.path());
    c.staging_dir = staging.path().to_path_buf();
    c.sync_interval = Duration::from_secs(60);
    c.continuous_drain = false;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    for seq in 1..=10 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    let mut files_only = Tailer::open(dir.path(), StartAt::First)
        .unwrap()
        .with_staging_dir(None);
    let mut buf = Vec::new();
    assert!(
        files_only.poll(&mut buf).unwrap().is_none(),
        "not drained yet"
    );
    let mut t = Tailer::open(dir.path(), StartAt::First)
        .unwrap()
        .with_staging_dir(Some(staging.path()));
    follow(&mut t, 1, 10);
    // Across a rollover, still ahead of the drain.
    for seq in 11..=2 * per_seg() {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    follow(&mut t, 11, 2 * per_seg());
    rec.sync().unwrap();
    follow(&mut files_only, 1, 2 * per_seg());
    rec.close().unwrap();
}

/// `walctl record` in a child process, paced, with small segments and retention.
fn record(dir: &Path, records: u64, rate: u64, max_compressed: u64) -> Child {
    walctl()
        .arg("record")
        .arg(dir)
        .args(["--records", &records.to_string()])
        .args(["--segment-size", &SEG.to_string()])
        .args(["--max-segments", "2"])
        .args(["--max-compressed", &max_compressed.to_string()])
        .args(["--rate", &rate.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads records with `t` until `last`, checking each is the next one, intact.
fn follow(t: &mut Tailer, from: u64, last: u64) {
    let mut buf = Vec::new();
    for expect in from..=last {
        let info = t
            .next_timeout(&mut buf, Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("record {expect} never came"));
        assert_eq!(info.seq, expect);
        assert_eq!(TradeEvent::decode(&buf).unwrap().seq, expect);
    }
}

fn cold_count(dir: &Path) -> usize {
    file_names(dir)
        .iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .count()
}

#[test]
fn a_tailer_reads_every_record_of_another_process_once_in_order() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let n = 30 * per_seg();
    let mut child = record(&dir, n, 200_000, 6);
    wait_for("the log", || dir.is_dir() && !file_names(&dir).is_empty());
    let mut t = Tailer::open(&dir, StartAt::First).unwrap();
    // Across rollovers, freezes and retention (six cold segments kept: it must keep up).
    follow(&mut t, 1, n);
    assert!(child.wait().unwrap().success());
    let mut buf = Vec::new();
    assert!(
        t.poll(&mut buf).unwrap().is_none(),
        "nothing after the last"
    );
}

#[test]
fn a_tailer_started_late_or_paused_catches_up_from_disk_without_gap_or_duplicate() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let n = 30 * per_seg();
    let mut child = record(&dir, n, 100_000, 1000);
    // Started late: several segments are frozen already.
    wait_for("freezes", || dir.is_dir() && cold_count(&dir) >= 3);
    let mut t = Tailer::open(&dir, StartAt::Seq(100)).unwrap();
    follow(&mut t, 100, 2 * per_seg());
    // Paused while the writer goes on: what it left behind is cold by the time it resumes.
    let cold_before = cold_count(&dir);
    wait_for("more freezes", || cold_count(&dir) >= cold_before + 4);
    follow(&mut t, 2 * per_seg() + 1, n);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_tailer_of_a_killed_writer_sees_every_record_recovery_keeps() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let mut child = record(&dir, 100 * per_seg(), 100_000, 1000);
    wait_for("the log", || dir.is_dir() && !file_names(&dir).is_empty());
    let mut t = Tailer::open(&dir, StartAt::First).unwrap();
    follow(&mut t, 1, 3 * per_seg());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Recovery (the staging buffers replayed, the tail sealed) in this process.
    let rec = Recorder::open(&dir, config(&dir)).unwrap();
    let kept = rec.last_seq();
    rec.close().unwrap();
    // Everything the tailer read was committed (it may have read up to the very last one,
    // from the staging buffers): recovery keeps at least that much.
    assert!(kept >= 3 * per_seg(), "recovery kept {kept}");
    follow(&mut t, 3 * per_seg() + 1, kept);
    let mut buf = Vec::new();
    assert!(t.poll(&mut buf).unwrap().is_none());
}

#[test]
fn walctl_tail_prints_from_a_sequence_number_and_follows_until_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let last = closed_log(dir.path());
    let out = walctl()
        .args(["tail", "--from"])
        .arg((last - 2).to_string())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with(&format!("{} 64 ", last - 2)), "{text}");
    // A named reader resumes where it stopped.
    let named = || {
        let out = walctl()
            .args(["tail", "--name", "ops"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().lines().count() as u64
    };
    assert_eq!(named(), last);
    assert_eq!(named(), 0);

    // --follow --json from the next sequence number: prints what a recorder appends next,
    // exits 0 on SIGINT.
    let mut tail = walctl()
        .args(["tail", "--follow", "--json", "--from"])
        .arg((last + 1).to_string())
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    for seq in last + 1..=last + 5 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.sync().unwrap();
    let stdout = tail.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seqs = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
            if seqs.len() == 5 {
                break;
            }
        }
        seqs
    });
    let seqs = reader.join().unwrap();
    assert_eq!(seqs, (last + 1..=last + 5).collect::<Vec<_>>());
    rec.close().unwrap();
    // SAFETY: a plain kill of our child.
    unsafe { libc::kill(tail.id() as i32, libc::SIGINT) };
    let status = tail.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_reader_resumes_from_its_saved_position_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let last = closed_log(dir.path());
    let mut t = Tailer::resume(dir.path(), "audit").unwrap();
    follow(&mut t, 1, 1000);
    drop(t); // saves the position
    let mut t = Tailer::resume(dir.path(), "audit").unwrap();
    follow(&mut t, 1001, last);
    t.commit().unwrap();
    let pos = wal_recorder::logdir::reader_position::ReaderPosition::open(dir.path(), "audit")
        .unwrap()
        .load()
        .map(|p| p.current().next_seq);
    assert_eq!(pos, Some(last + 1));
    // The log itself is untouched by its readers: it still verifies with no warning.
    let r = wal_recorder::logdir::verify(dir.path()).unwrap();
    assert!(r.ok && r.warnings.is_empty(), "{r:?}");
}

/// `hold_for_readers`: retention keeps the cold segments a registered reader has not read,
/// deletes them once it has, and past the budget deletes anyway (the reader then gets a
/// typed error, never a gap).
#[test]
fn retention_waits_for_a_registered_reader_within_its_budget() {
    use wal_recorder::logdir::reader_position::ReaderPosition;
    let dir = tempfile::tempdir().unwrap();
    let mut reader = ReaderPosition::open(dir.path(), "slow").unwrap();
    // Has read nothing (the checksums matter only to a resume, which never gets that far).
    reader.store(1, 0).unwrap();
    let mut c = config(dir.path());
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.hold_for_readers = Some(6);
    c.write_path = WritePath::Direct;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let mut seq = 0;
    let mut append = |rec: &mut Recorder, n: u64| {
        for _ in 0..n {
            seq += 1;
            rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        }
    };
    append(&mut rec, 7 * per_seg());
    wait_for("freezes", || rec.metrics().counters.frozen >= 4);
    let m = rec.maintainer_stats();
    assert_eq!(wal_recorder::maintainer::Counter::get(&m.freed), 0);
    assert!(dir
        .path()
        .join(wal_recorder::segment::names::cold_name(0))
        .exists());
    assert!(wal_recorder::maintainer::Counter::get(&m.held_for_readers) >= 2);
    // The reader has read segments 0..=2: retention deletes down to its limit (2 cold).
    reader.store(3 * per_seg() + 1, 0).unwrap();
    wait_for("deletes", || rec.metrics().counters.freed >= 2);
    assert!(!dir
        .path()
        .join(wal_recorder::segment::names::cold_name(1))
        .exists());
    assert!(dir
        .path()
        .join(wal_recorder::segment::names::cold_name(3))
        .exists());
    // Past the budget (2 + 6 cold segments) retention deletes what it has not read.
    append(&mut rec, 12 * per_seg());
    wait_for("the budget", || {
        !dir.path()
            .join(wal_recorder::segment::names::cold_name(3))
            .exists()
    });
    rec.close().unwrap();
    assert!(cold_count(dir.path()) <= 8, "{:?}", file_names(dir.path()));
    match Tailer::resume(dir.path(), "slow").err() {
        Some(Error::SeqNotFound { seq, first, .. }) => {
            assert_eq!(seq, 3 * per_seg() + 1);
            assert!(first.unwrap() > seq);
        }
        other => panic!("{other:?}"),
    }
}

/// `walctl tail --follow` in another process, stopped (SIGSTOP) while the writer goes on far
/// enough that the staging buffers it was reading are drained, zeroed and reused for later
/// segments, then continued: it prints every record once, in order.
#[test]
fn a_tailer_process_stopped_past_a_recycled_staging_buffer_resumes_without_gap() {
    use std::io::BufRead;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let mut c = config(&dir);
    c.max_segments = 2;
    c.max_compressed_segments = 1000;
    let mut rec = Recorder::open(&dir, c).unwrap();
    let mut tail = walctl()
        .args(["tail", "--follow", "--from", "1"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut seq = 0u64;
    let mut append = |rec: &mut Recorder, n: u64| {
        for _ in 0..n {
            seq += 1;
            rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        }
    };
    append(&mut rec, 100);
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("1 64 "), "{first}");
    // SAFETY: signals to our own child.
    unsafe { libc::kill(tail.id() as i32, libc::SIGSTOP) };
    // Far more segments than there are staging buffers (4 by default): each is reused.
    append(&mut rec, 12 * per_seg());
    rec.sync().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(tail.id() as i32, libc::SIGCONT) };
    let total = 100 + 12 * per_seg();
    for expect in 2..=total {
        let line = lines.next().unwrap().unwrap();
        let got: u64 = line.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(got, expect, "{line}");
    }
    rec.close().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(tail.id() as i32, libc::SIGINT) };
    assert_eq!(tail.wait().unwrap().code(), Some(0));
}

/// Sealed hot segments read without a copy: every payload borrowed from the mapping equals
/// what the copying reader returns; a flipped byte ends the iteration with the file and the
/// offset; a segment still being written is not mapped.
#[test]
fn sealed_hot_segments_are_read_in_place_with_the_chain_checked() {
    use wal_recorder::logdir::MappedSegment;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_segments = 100; // all hot
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    for seq in 1..=3 * per_seg() + 10 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.close().unwrap(); // every segment sealed and persisted
    let mut paths: Vec<_> = file_names(dir.path())
        .iter()
        .filter(|n| n.ends_with(".wal"))
        .map(|n| dir.path().join(n))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 4);
    let mut copied = Vec::new();
    let mut r = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    while let Some(info) = r.next_record(&mut buf).unwrap() {
        copied.push((info.seq, buf.clone()));
    }
    let mut borrowed = Vec::new();
    for p in &paths {
        let seg = MappedSegment::open(p)
            .unwrap()
            .expect("sealed and persisted");
        for rec in seg.records() {
            let (info, payload) = rec.unwrap();
            borrowed.push((info.seq, payload.to_vec()));
        }
    }
    assert_eq!(copied, borrowed);
    // A segment still being written (no seal at its end) is not mapped.
    let open = dir.path().join("open.wal");
    let w = wal_recorder::segment::SegmentWriter::create(dir.path(), 99, SEG, 1, 0).unwrap();
    std::fs::copy(w.path(), &open).unwrap();
    assert!(MappedSegment::open(&open).unwrap().is_none());

    common::flip_bit(&paths[1], 64 + 16 + 3); // first record's payload
    let seg = MappedSegment::open(&paths[1]).unwrap().unwrap();
    let err = seg.records().find_map(|r| r.err()).expect("a break");
    assert!(
        err.to_string()
            .contains(paths[1].file_name().unwrap().to_str().unwrap())
            && err.to_string().contains("offset 64"),
        "{err}"
    );
}
