//! Zero-copy appends in two calls (`Recorder::try_claim` + `commit`): a committed claim is a
//! record like any other, across rollovers and in both framings; an abandoned claim leaves
//! no trace, not even where the next record starts; a commit without a claim is refused.

mod common;

use std::time::Duration;

use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::{verify, LogReader, StartAt, Tailer};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::{SegmentEnd, SegmentReader, SegmentWriter};
use wal_recorder::Error;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = 64 * 1024;
    c.max_segments = 100;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c.backend = common::backend();
    c
}

/// Every record of the closed log; a reader error fails the test.
fn read_all(dir: &std::path::Path) -> Vec<(u64, Option<u64>, Vec<u8>)> {
    let mut r = LogReader::open_at(dir, 1).unwrap();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    while let Some(info) = r.next_record(&mut payload).unwrap() {
        out.push((info.seq, info.time, payload.clone()));
    }
    out
}

/// The first `n` committed records of the live log, as a tailer sees them the moment each is
/// committed (it reads the sequence number where the next record would start), waiting for
/// each (a rollover's next segment may not be visible yet); a tailer error fails the test.
/// Then nothing more may be there.
fn tail_n(dir: &std::path::Path, staging: &std::path::Path, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut t = Tailer::open(dir, StartAt::First)
        .unwrap()
        .with_staging_dir(Some(staging));
    let mut out = Vec::new();
    let mut payload = Vec::new();
    while out.len() < n {
        let info = t
            .next_timeout(&mut payload, Duration::from_secs(20))
            .unwrap()
            .unwrap_or_else(|| panic!("only {} of {n} records within 20 s", out.len()));
        out.push((info.seq, payload.clone()));
    }
    assert!(t.poll(&mut payload).unwrap().is_none(), "a record past {n}");
    out
}

/// The sequence numbers in segment 0 as a crash now would leave it (the file in the Direct
/// path, the staging buffer that holds it in the Staged path) and whether they end in a
/// clean end (a zero sequence number), not in a broken frame that recovery would cut and
/// report as a torn tail.
fn crash_image_end(dir: &std::path::Path, staging: &std::path::Path) -> (Vec<u64>, bool) {
    let mut candidates = vec![wal_recorder::segment::names::segment_path(dir, 0)];
    let mut stack = vec![staging.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with("buf-") {
                candidates.insert(0, p);
            }
        }
    }
    for path in candidates {
        let Ok(mut r) = SegmentReader::new(std::fs::File::open(&path).unwrap(), &path) else {
            continue; // a staging buffer not (yet) holding a segment
        };
        if r.header().index != 0 {
            continue;
        }
        let mut payload = Vec::new();
        let mut seqs = Vec::new();
        while let Some(info) = r.next_record(&mut payload).unwrap() {
            seqs.push(info.seq);
        }
        return (seqs, matches!(r.end(), Some(SegmentEnd::Open { .. })));
    }
    panic!(
        "segment 0 is nowhere under {} or {}",
        dir.display(),
        staging.display()
    );
}

#[test]
fn claimed_records_interleave_with_appends_across_rollovers_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut c = config(dir.path());
    c.staging_dir = staging.path().to_path_buf();
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let mut expected = Vec::new();
    for i in 0..3000u64 {
        let body = format!("record {i} {}", "x".repeat((i % 97) as usize)).into_bytes();
        let seq = if i % 3 == 0 {
            rec.append(&body).unwrap()
        } else {
            rec.try_claim(body.len()).unwrap().copy_from_slice(&body);
            rec.commit().unwrap()
        };
        assert_eq!(seq, i + 1);
        expected.push(body);
    }
    assert!(
        rec.writer_stats().rollovers >= 3,
        "the test crosses segments"
    );
    let live: Vec<Vec<u8>> = tail_n(dir.path(), staging.path(), expected.len())
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(live, expected);
    rec.close().unwrap();
    let read: Vec<Vec<u8>> = read_all(dir.path()).into_iter().map(|r| r.2).collect();
    assert_eq!(read, expected);
    let report = verify(dir.path()).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(report.last_seq, Some(3000));
}

#[test]
fn commit_at_stamps_the_callers_time_and_commit_the_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.record_time = true;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    rec.try_claim(3).unwrap().copy_from_slice(b"abc");
    assert_eq!(rec.commit_at(1_700_000_000_123_456_789).unwrap(), 1);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    rec.try_claim(3).unwrap().copy_from_slice(b"def");
    assert_eq!(rec.commit().unwrap(), 2);
    rec.close().unwrap();
    let read = read_all(dir.path());
    assert_eq!(
        read[0],
        (1, Some(1_700_000_000_123_456_789), b"abc".to_vec())
    );
    let t = read[1].1.expect("a log with time");
    // The writer clock is calibrated against CLOCK_REALTIME; allow its drift bound.
    assert!(t + 1_000_000 >= before, "stamped {t}, before {before}");
}

/// An abandoned claim whose bytes look like the next record's header must not surface once
/// a shorter record takes its place: readers of the live log and the closed log stop there.
#[test]
fn an_abandoned_claim_leaves_nothing_where_the_next_record_starts() {
    for (abandon, path) in [
        ("append", WritePath::Staged),
        ("abort", WritePath::Direct),
        ("claim again", WritePath::Staged),
        ("append", WritePath::Direct),
        ("close", WritePath::Staged),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let staging = common::staging_root();
        let mut c = config(dir.path());
        c.write_path = path;
        c.staging_dir = staging.path().to_path_buf();
        let mut rec = Recorder::open(dir.path(), c).unwrap();
        rec.append(b"first").unwrap();
        // The claimed bytes repeat seq 3 (the one after the short record that follows):
        // left in place, they would read as a frame of record 3 with a broken checksum.
        let lure = 3u64.to_le_bytes().repeat(128);
        rec.try_claim(lure.len()).unwrap().copy_from_slice(&lure);
        match abandon {
            "append" => {}
            "abort" => rec.abort_claim(),
            "claim again" => {
                rec.try_claim(2).unwrap().copy_from_slice(b"hi");
                rec.abort_claim();
            }
            "close" => {
                rec.close().unwrap();
                let read = read_all(dir.path());
                assert_eq!(read.len(), 1, "{abandon}: {read:?}");
                let report = verify(dir.path()).unwrap();
                assert!(report.ok, "{abandon}: {:?}", report.errors);
                continue;
            }
            _ => unreachable!(),
        }
        assert_eq!(rec.append(b"two").unwrap(), 2, "{abandon}");
        assert_eq!(
            crash_image_end(dir.path(), staging.path()),
            (vec![1, 2], true),
            "{abandon} {path:?}"
        );
        let live = tail_n(dir.path(), staging.path(), 2);
        assert_eq!(
            live.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2],
            "{abandon}"
        );
        assert!(
            matches!(rec.commit(), Err(Error::NoClaim(_))),
            "{abandon}: the claim is gone"
        );
        assert_eq!(rec.append(b"three").unwrap(), 3, "{abandon}");
        rec.close().unwrap();
        let report = verify(dir.path()).unwrap();
        assert!(report.ok, "{abandon}: {:?}", report.errors);
        assert_eq!(read_all(dir.path()).len(), 3, "{abandon}");
    }
}

#[test]
fn commit_without_a_claim_and_claims_that_cannot_fit_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let err = rec.commit().unwrap_err();
    assert!(matches!(err, Error::NoClaim(_)), "{err}");
    assert!(err.to_string().contains("try_claim"), "{err}");
    let err = rec.try_claim(1 << 20).unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    // A refused claim leaves nothing to commit, and the log goes on.
    assert!(matches!(rec.commit(), Err(Error::NoClaim(_))));
    rec.try_claim(4).unwrap().copy_from_slice(b"ok!!");
    assert_eq!(rec.commit().unwrap(), 1);
    rec.shutdown().unwrap();
    assert!(matches!(rec.try_claim(4), Err(Error::Closed(_))));
}

/// What a crash right after the short record would leave: the unsealed segment as the
/// mapping holds it ends cleanly after record 2 (a zero sequence number), not in a broken
/// frame that recovery would cut and report as a torn tail.
#[test]
fn an_abandoned_claim_leaves_a_clean_end_for_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), 0, 64 * 1024, 1, 0).unwrap();
    w.append(b"first").unwrap();
    let lure = 3u64.to_le_bytes().repeat(128);
    w.claim(lure.len()).unwrap().copy_from_slice(&lure);
    w.clear_claim(lure.len());
    assert_eq!(w.append(b"two").unwrap(), 2);
    let path = w.path().to_path_buf();
    let mut r = SegmentReader::new(std::fs::File::open(&path).unwrap(), &path).unwrap();
    let mut payload = Vec::new();
    let mut seqs = Vec::new();
    while let Some(info) = r.next_record(&mut payload).unwrap() {
        seqs.push(info.seq);
    }
    assert_eq!(seqs, [1, 2]);
    assert!(
        matches!(r.end(), Some(SegmentEnd::Open { .. })),
        "{:?}",
        r.end()
    );
    drop(w);
}
