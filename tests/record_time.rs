//! Records that carry time (segment format version 2, docs/FORMAT.md): the writer stamps
//! each record with its clock or takes the caller's time, the time is under the chained
//! checksum, seals and cold summaries keep each segment's time range, and recovery, freezes
//! and readers all keep it; version 1 logs stay what they are.

mod common;

use std::path::Path;

use common::{flip_bit, staging_root};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::summary::{SegmentSummary, SummaryIndex, SUMMARY_FILE};
use wal_recorder::logdir::{list_dir, verify, LogReader, Tier};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::{Framing, TimeRange, HEADER_LEN, REC_TIME_OFFSET};
use wal_recorder::segment::{SegmentEnd, SegmentReader};

const SEG: u64 = 64 * 1024;

fn config(dir: &Path, path: WritePath, staging: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 3;
    c.max_compressed_segments = 100;
    c.write_path = path;
    c.staging_dir = staging.to_path_buf();
    c.record_time = true;
    c.scrub_rate = None;
    c
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Every record of `dir` in order: (seq, time, payload).
fn read_all(dir: &Path) -> Vec<(u64, Option<u64>, Vec<u8>)> {
    let mut r = LogReader::open_dir(dir).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(info) = r.next_record(&mut buf).unwrap() {
        out.push((info.seq, info.time, buf.clone()));
    }
    out
}

/// The framing and seal times of a hot segment file read whole.
fn seal_of(path: &Path) -> (Framing, Option<TimeRange>) {
    let f = std::fs::File::open(path).unwrap();
    let mut r = SegmentReader::new(std::io::BufReader::new(f), path).unwrap();
    let framing = r.header().framing;
    match r.skip_to_end().unwrap() {
        SegmentEnd::Sealed(s) => (framing, s.times),
        other => panic!("{}: {other:?}", path.display()),
    }
}

/// Self-stamped records lie between the clock readings around their appends; the caller's
/// times come back as given, a step back included; seals, cold summaries and the chain of
/// max times agree with the records, in both write paths.
#[test]
fn records_carry_the_writers_time_or_the_callers_through_hot_cold_and_reopen() {
    for path in [WritePath::Staged, WritePath::Direct] {
        let dir = tempfile::tempdir().unwrap();
        let staging = staging_root();
        let c = config(dir.path(), path, staging.path());
        let mut rec = Recorder::open(dir.path(), c.clone()).unwrap();
        let mut expect = Vec::new();
        // About eight segments: rollovers, persists, freezes.
        for i in 0..6000u64 {
            let payload = i.to_le_bytes().repeat(8);
            if i % 10 == 3 {
                // The caller's time: a gateway's, stepping back now and then.
                let t = 1_700_000_000_000_000_000 + i * 1000 - (i % 7) * 5000;
                rec.append_at(t, &payload).unwrap();
                expect.push((Some(t), None, payload));
            } else {
                let before = realtime_ns();
                rec.append(&payload).unwrap();
                expect.push((None, Some((before, realtime_ns())), payload));
            }
        }
        rec.close().unwrap();
        let got = read_all(dir.path());
        assert_eq!(got.len(), expect.len(), "{path:?}");
        for (i, ((seq, time, payload), (given, window, want))) in
            got.iter().zip(&expect).enumerate()
        {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(payload, want, "{path:?} seq {seq}");
            let time = time.expect("a log with time");
            match (given, window) {
                (Some(t), _) => assert_eq!(time, *t, "{path:?} seq {seq}"),
                (None, Some((lo, hi))) => assert!(
                    // The TSC clock follows CLOCK_REALTIME within its calibration error.
                    time + 100_000 >= *lo && time <= hi + 100_000,
                    "{path:?} seq {seq}: {lo} <= {time} <= {hi}"
                ),
                _ => unreachable!(),
            }
        }
        // Each segment's seal (hot) or summary (cold) holds its records' time range, and
        // the running max carries on from segment to segment.
        let listing = list_dir(dir.path()).unwrap();
        let index = SummaryIndex::load(dir.path());
        let (mut seq, mut max, mut cold) = (1usize, 0u64, 0);
        for entry in &listing.segments {
            let (framing, times, count) = match entry.tier {
                Tier::Hot => {
                    let (framing, times) = seal_of(&entry.path);
                    let r = LogReader::open_file(&entry.path).unwrap();
                    (framing, times, r.into_records().count() as u64)
                }
                Tier::Cold => {
                    cold += 1;
                    let s: SegmentSummary = index.get(entry).expect("a summary per cold segment");
                    (s.framing(), s.times.map(|(_, t)| t), s.count)
                }
            };
            assert_eq!(framing, Framing::Timed, "{}", entry.path.display());
            let t = times.expect("a version 2 seal");
            let records = &got[seq - 1..seq - 1 + count as usize];
            max = records.iter().fold(max, |m, r| m.max(r.1.unwrap()));
            assert_eq!(t.first, records[0].1.unwrap(), "{}", entry.path.display());
            assert_eq!(t.last, records.last().unwrap().1.unwrap());
            assert_eq!(t.max, max, "{}", entry.path.display());
            seq += count as usize;
        }
        assert!(cold >= 2, "{path:?}: freezes happened ({cold} cold)");
        assert!(verify(dir.path()).unwrap().ok);
        // A reopened log goes on with time.
        let mut rec = Recorder::open(dir.path(), c).unwrap();
        let seq = rec.append_at(5, b"after").unwrap();
        rec.close().unwrap();
        assert_eq!(read_all(dir.path()).last().unwrap().1, Some(5), "seq {seq}");
        assert!(verify(dir.path()).unwrap().ok);
    }
}

/// The time is under the chained checksum: one flipped bit of a record's time is a checksum
/// error naming that record.
#[test]
fn a_flipped_bit_in_a_records_time_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_root();
    let mut c = config(dir.path(), WritePath::Direct, staging.path());
    c.max_segments = 100;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    for i in 0..100u64 {
        rec.append(&[i as u8; 64]).unwrap();
    }
    rec.close().unwrap();
    let first = list_dir(dir.path()).unwrap().segments[0].path.clone();
    // Record 11's time: ten 24 + 64 byte frames after the header.
    let at = HEADER_LEN + 10 * Framing::Timed.record_size(64) + REC_TIME_OFFSET;
    flip_bit(&first, at as u64 + 3);
    let r = verify(dir.path()).unwrap();
    assert!(!r.ok);
    assert!(
        r.errors.iter().any(|e| e.contains("record 11")),
        "{:?}",
        r.errors
    );
}

/// A crash leaves an unsealed segment with time: recovery seals it with the time range of
/// the records it keeps, and the log goes on from the same running max.
#[test]
fn recovery_seals_an_unsealed_tail_with_its_time_range() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log");
    std::fs::create_dir(&log).unwrap();
    let staging = staging_root();
    let mut c = config(&log, WritePath::Direct, staging.path());
    c.max_segments = 100;
    let mut rec = Recorder::open(&log, c.clone()).unwrap();
    for i in 0..50u64 {
        rec.append_at(1000 + i, &[1; 40]).unwrap();
    }
    rec.append_at(900, &[2; 40]).unwrap(); // a step back
    rec.sync().unwrap();
    // The crash: the files as they are now, before any seal.
    let copy = work.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&log).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    rec.close().unwrap();
    let mut rec = Recorder::open(&copy, c).unwrap();
    assert_eq!(rec.last_seq(), 51, "{:?}", rec.recovered().actions);
    rec.append_at(7, &[3; 40]).unwrap();
    rec.close().unwrap();
    let hot = list_dir(&copy).unwrap().segments;
    let (framing, times) = seal_of(&hot[0].path);
    assert_eq!(framing, Framing::Timed);
    assert_eq!(
        times,
        Some(TimeRange {
            first: 1000,
            last: 900,
            max: 1049
        })
    );
    // The next segment's header carries the max on, and its seal keeps it.
    let (_, times) = seal_of(&hot[1].path);
    assert_eq!(
        times,
        Some(TimeRange {
            first: 7,
            last: 7,
            max: 1049
        })
    );
    assert!(verify(&copy).unwrap().ok);
}

/// A version 1 log stays version 1: reopened with `record_time` on, it goes on in 16-byte
/// frames, and its records have no time.
#[test]
fn a_version_1_log_continues_without_time() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_root();
    let mut c = config(dir.path(), WritePath::Staged, staging.path());
    c.record_time = false;
    let mut rec = Recorder::open(dir.path(), c.clone()).unwrap();
    for i in 0..3000u64 {
        rec.append(&i.to_le_bytes().repeat(8)).unwrap();
    }
    rec.close().unwrap();
    c.record_time = true;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    for i in 0..3000u64 {
        rec.append(&i.to_le_bytes().repeat(8)).unwrap();
    }
    rec.close().unwrap();
    let got = read_all(dir.path());
    assert_eq!(got.len(), 6000);
    assert!(got.iter().all(|r| r.1.is_none()));
    for e in list_dir(dir.path()).unwrap().segments {
        if e.tier == Tier::Hot {
            assert_eq!(seal_of(&e.path).0, Framing::Plain, "{}", e.path.display());
        }
    }
    let index = std::fs::read(dir.path().join(SUMMARY_FILE)).unwrap();
    assert!(!index.is_empty(), "freezes wrote summaries");
    assert!(verify(dir.path()).unwrap().ok);
}

/// `walctl cat --since/--until` on a log with time: RFC 3339 with an offset and integer
/// nanoseconds seek alike, `--json` carries `log_time_ns`, and a time outside the log is a
/// usage error (2) naming the range held.
#[test]
fn walctl_cat_seeks_by_time_and_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_root();
    let c = config(dir.path(), WritePath::Direct, staging.path());
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    // 2026-12-03T09:30:00Z plus one millisecond per record.
    let t0 = 1_796_290_200_000_000_000u64;
    for i in 0..3000u64 {
        rec.append_at(t0 + i * 1_000_000, &i.to_le_bytes()).unwrap();
    }
    rec.close().unwrap();
    let cat = |args: &[&str]| {
        let out = common::walctl()
            .arg("cat")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // 09:30:01.250 is record 1251 (seq 1251 has time t0 + 1250 ms), in Paris time too.
    for since in [
        "2026-12-03T09:30:01.250Z",
        "2026-12-03T10:30:01.25+01:00",
        "1796290201250000000",
    ] {
        let (code, text, err) = cat(&["--since", since, "--until", "2026-12-03T09:30:01.252Z"]);
        assert_eq!(code, Some(0), "{since}: {err}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{since}: {text}");
        assert!(
            lines[0].starts_with("1251 8 2026-12-03T09:30:01.250000000Z "),
            "{}",
            lines[0]
        );
        assert!(lines[2].starts_with("1253 "), "{}", lines[2]);
    }
    let (code, text, _) = cat(&["--since", "1796290202999000000", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["seq"], 3000);
    assert_eq!(v["log_time_ns"], 1_796_290_202_999_000_000u64);
    for outside in ["2026-12-03T09:29:59Z", "2026-12-03T09:30:03Z"] {
        let (code, text, err) = cat(&["--since", outside]);
        assert_eq!(code, Some(2), "{outside}: {text}");
        assert!(
            err.contains("is not in the log") && err.contains("2026-12-03T09:30:00.000000000Z"),
            "{err}"
        );
    }
    let (code, _, err) = cat(&["--since", "yesterday"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `walctl ls` and `stats` show each segment's time range and the log's, as the records say:
/// JSON in nanoseconds, text in RFC 3339; a log without time shows none.
#[test]
fn walctl_ls_and_stats_show_the_time_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_root();
    let c = config(dir.path(), WritePath::Direct, staging.path());
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let t0 = 1_796_290_200_000_000_000u64;
    let times: Vec<u64> = (0..3000u64)
        .map(|i| t0 + i * 1_000_000 - (i % 5) * 1_500_000) // steps back now and then
        .collect();
    for (i, &t) in times.iter().enumerate() {
        rec.append_at(t, &(i as u64).to_le_bytes().repeat(4))
            .unwrap();
    }
    rec.close().unwrap();
    let run = |cmd: &str, json: bool| {
        let mut c = common::walctl();
        c.arg(cmd).arg(dir.path());
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        String::from_utf8(out.stdout).unwrap()
    };
    let ls: serde_json::Value = serde_json::from_str(run("ls", true).trim()).unwrap();
    let segments = ls["segments"].as_array().unwrap();
    assert!(segments.len() > 2);
    let mut max = 0;
    for s in segments.iter().filter(|s| s["records"] != 0) {
        let first = s["first_seq"].as_u64().unwrap() as usize - 1;
        let last = first + s["records"].as_u64().unwrap() as usize - 1;
        max = max.max(*times[first..=last].iter().max().unwrap());
        assert_eq!(s["first_time_ns"], times[first], "{s}");
        assert_eq!(s["last_time_ns"], times[last], "{s}");
        assert_eq!(s["max_time_ns"], max, "{s}");
    }
    let text = run("ls", false);
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.contains(&wal_recorder::logdir::format_rfc3339(times[0])),
        "{text}"
    );
    let stats: serde_json::Value = serde_json::from_str(run("stats", true).trim()).unwrap();
    assert_eq!(stats["first_time_ns"], times[0]);
    assert_eq!(stats["max_time_ns"], *times.iter().max().unwrap());
    assert!(run("stats", false).contains("log time:       2026-12-03T09:30:00.000000000Z .. "));

    let plain = tempfile::tempdir().unwrap();
    let mut c = config(plain.path(), WritePath::Direct, staging.path());
    c.record_time = false;
    let mut rec = Recorder::open(plain.path(), c).unwrap();
    rec.append(b"no time").unwrap();
    rec.close().unwrap();
    let out = common::walctl()
        .arg("ls")
        .arg(plain.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("first_time"), "{text}");
}
