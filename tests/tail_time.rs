//! Following a log from a time (`StartAt::Time`, `walctl tail --since`): the tailer starts at
//! the first record whose time is at or after `t` (found by the segments' running max times,
//! as `LogReader::open_at_time`), replays from there through cold, hot and staging, then
//! follows live, each record once; a time after the last record waits for one; a time before
//! the log, or a log without time, is `TimeNotFound`.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, UNIX_EPOCH};

use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::{StartAt, Tailer, Tier};
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

/// 2026-12-03T09:30:00Z.
const T0: u64 = 1_796_290_200_000_000_000;
/// Records appended before the tailers open: about eight 64 KiB segments.
const N: u64 = 6000;

fn config(dir: &Path, staging: &Path, record_time: bool) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = 64 * 1024;
    c.max_segments = 2;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Staged;
    c.staging_dir = staging.to_path_buf();
    c.record_time = record_time;
    c.scrub_rate = None;
    c
}

fn at(ns: u64) -> StartAt {
    StartAt::Time(UNIX_EPOCH + Duration::from_nanos(ns))
}

/// Record `i` (0-based, seq `i + 1`) has time `T0 + i µs` and its index as payload.
fn append(rec: &mut Recorder, from: u64, to: u64) {
    for i in from..to {
        rec.append_at(T0 + i * 1000, &i.to_le_bytes().repeat(8))
            .unwrap();
    }
}

/// Takes records from `t` up to sequence number `last`, checking each is the next one.
fn take_until(t: &mut Tailer, first: u64, last: u64) {
    let mut buf = Vec::new();
    for seq in first..=last {
        let info = t.next(&mut buf).unwrap();
        assert_eq!(info.seq, seq);
        assert_eq!(info.time, Some(T0 + (seq - 1) * 1000));
        assert_eq!(buf, (seq - 1).to_le_bytes().repeat(8));
    }
}

/// From a time in a cold segment, a persisted hot one, and the active one (its records only
/// in the staging buffer): each tailer starts at the right record, reads to the end, then
/// follows records appended after it opened, each once and in order.
#[test]
fn a_tailer_from_a_time_replays_cold_hot_and_staging_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), staging.path(), true)).unwrap();
    append(&mut rec, 0, N);
    rec.sync().unwrap();
    common::wait_for("freezes", || rec.metrics().counters.frozen >= 3);
    let listing = wal_recorder::logdir::list_dir(dir.path()).unwrap();
    assert_eq!(listing.segments[0].tier, Tier::Cold);
    // Not yet synced: the last records are only in the staging buffer.
    append(&mut rec, N, N + 10);
    let mut tailers = Vec::new();
    for i in [0, 700, 3000, N - 1, N + 5] {
        // The record's own time, and a nanosecond before it (the same answer; before the
        // log for the first).
        for t in [T0 + i * 1000, T0 + i * 1000 - 1] {
            if t < T0 {
                continue;
            }
            let mut tailer = Tailer::open(dir.path(), at(t))
                .unwrap()
                .with_staging_dir(Some(staging.path()));
            take_until(&mut tailer, i + 1, N + 10);
            tailers.push(tailer);
        }
    }
    append(&mut rec, N + 10, N + 1500); // a few rollovers more
    for t in &mut tailers {
        take_until(t, N + 11, N + 1500);
        let mut buf = Vec::new();
        assert!(t.poll(&mut buf).unwrap().is_none(), "nothing more");
    }
    rec.close().unwrap();
}

/// A time after the last record waits: the first record at or after it is delivered, then
/// every later one whatever its time (a clock that stepped back is delivered in its place).
#[test]
fn a_tailer_from_a_future_time_waits_for_it_then_takes_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), staging.path(), true)).unwrap();
    append(&mut rec, 0, 100);
    rec.sync().unwrap();
    let future = T0 + 150 * 1000;
    let mut t = Tailer::open(dir.path(), at(future)).unwrap();
    let mut buf = Vec::new();
    assert!(t.poll(&mut buf).unwrap().is_none());
    append(&mut rec, 100, 150); // all before the time asked (record 150 is at it)
    rec.sync().unwrap();
    assert!(t.poll(&mut buf).unwrap().is_none());
    append(&mut rec, 150, 160);
    rec.append_at(T0, b"stepped back").unwrap(); // seq 161
    take_until(&mut t, 151, 160);
    let info = t.next(&mut buf).unwrap();
    assert_eq!(
        (info.seq, info.time, &buf[..]),
        (161, Some(T0), &b"stepped back"[..])
    );
    rec.close().unwrap();
}

/// A time before the first retained record, and any time in a log without time, are
/// `TimeNotFound` (not a silent start elsewhere); an empty log waits from its start.
#[test]
fn a_tailer_from_a_time_outside_the_log_or_in_a_log_without_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), staging.path(), true)).unwrap();
    let mut empty = Tailer::open(dir.path(), at(T0)).unwrap();
    append(&mut rec, 0, 10);
    rec.sync().unwrap();
    take_until(&mut empty, 1, 10);
    match Tailer::open(dir.path(), at(T0 - 1)) {
        Err(Error::TimeNotFound { first, time_ns, .. }) => {
            assert_eq!((first, time_ns), (Some(T0), T0 - 1));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    rec.close().unwrap();

    let plain = tempfile::tempdir().unwrap();
    let mut rec =
        Recorder::open(plain.path(), config(plain.path(), staging.path(), false)).unwrap();
    rec.append(b"no time").unwrap();
    rec.sync().unwrap();
    match Tailer::open(plain.path(), at(T0)) {
        Err(Error::TimeNotFound { first, last, .. }) => assert_eq!((first, last), (None, None)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    rec.close().unwrap();
}

/// `walctl tail --since T` prints from the first record at or after T to the end; with
/// `--follow` and a T after the last record it waits and prints records as they come; a T
/// before the log is a usage error (2) naming the range.
#[test]
fn walctl_tail_since_prints_from_the_time_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), staging.path(), true)).unwrap();
    append(&mut rec, 0, 3000);
    rec.sync().unwrap();
    let out = common::walctl()
        .args(["tail", "--json", "--since", "2026-12-03T09:30:00.002500Z"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (2501..=3000).collect::<Vec<_>>());

    for (since, want) in [
        (
            "2026-12-03T09:29:59Z",
            "from 2026-12-03T09:30:00.000000000Z",
        ),
        ("2026-12-03T09:31:00Z", "..= 2026-12-03T09:30:00.002999000Z"),
    ] {
        let out = common::walctl()
            .args(["tail", "--since", since])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{since}: {err}");
        assert!(
            err.contains("is not in the log") && err.contains(want),
            "{err}"
        );
    }

    // Following from a time not reached yet: the first line is the first record at it.
    let mut child = common::walctl()
        .args([
            "tail",
            "--follow",
            "--json",
            "--since",
            &(T0 + 3100 * 1000).to_string(),
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    append(&mut rec, 3000, 3200);
    rec.sync().unwrap();
    for seq in 3101..=3200u64 {
        // Bounded only so that a broken follow fails instead of hanging the suite.
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("walctl tail printed it");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], seq);
        assert_eq!(v["log_time_ns"], T0 + (seq - 1) * 1000);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    rec.close().unwrap();
}
