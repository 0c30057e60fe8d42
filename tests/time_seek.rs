//! Seek by time (`LogReader::open_at_time`): for any sequence of record times, steps back
//! included, over hot segments (persisted or not, the last one unsealed) and cold ones (with
//! and without a summary), the reader starts at the first record in log order whose time is
//! at or after `t`, and a time before the first record or after the greatest one is
//! `TimeNotFound` naming the range.

mod common;

use std::path::Path;

use proptest::prelude::*;
use wal_recorder::codec::lz4::compress_frame;
use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::LogReader;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::names::{cold_name, hot_name};
use wal_recorder::segment::truncate_sealed;
use wal_recorder::Error;

const SEG: u64 = 4096;

/// Writes one record per time (payload: its index) in 4 KiB segments; then truncates the
/// sealed ones as persist does, except the last `untruncated`, and compresses the first
/// `cold` (without `cold.summary`: their seals are decoded). Returns the segment count.
fn write(dir: &Path, times: &[u64], seal_last: bool, untruncated: usize, cold: usize) -> usize {
    let payloads: Vec<[u8; 8]> = (0..times.len() as u64).map(u64::to_le_bytes).collect();
    let records = times.iter().zip(&payloads).map(|(&t, p)| (t, &p[..]));
    let (mut w, index) = common::append_timed(dir, SEG, records);
    if seal_last {
        w.seal();
    }
    drop(w);
    let segments = index as usize + 1;
    let sealed = if seal_last { segments } else { segments - 1 };
    let persisted = sealed.saturating_sub(untruncated);
    for i in 0..persisted {
        let path = dir.join(hot_name(i as u64));
        truncate_sealed(&path, common::used_len(&path)).unwrap();
    }
    // Only persisted segments are ever frozen.
    for i in 0..cold.min(persisted) {
        let path = dir.join(hot_name(i as u64));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(
            dir.join(cold_name(i as u64)),
            compress_frame(&bytes, 1).unwrap(),
        )
        .unwrap();
        std::fs::remove_file(path).unwrap();
    }
    segments
}

/// The documented answer: the first record (in log order) whose time is at or after `t`;
/// `None` when `t` is before the first record's time or after every time.
fn expected(times: &[u64], t: u64) -> Option<usize> {
    let i = times.iter().position(|&x| x >= t)?;
    (i > 0 || times[0] == t).then_some(i)
}

fn check(dir: &Path, times: &[u64], t: u64) -> Result<(), TestCaseError> {
    match (LogReader::open_at_time_ns(dir, t), expected(times, t)) {
        (Ok(mut r), Some(i)) => {
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().expect("a record");
            prop_assert_eq!(info.seq, i as u64 + 1, "t {}", t);
            prop_assert_eq!(info.time, Some(times[i]));
            prop_assert_eq!(&buf[..], &(i as u64).to_le_bytes()[..]);
            // And on from there, in log order.
            let next = r.next_record(&mut buf).unwrap().map(|n| n.seq);
            prop_assert_eq!(next, (i + 1 < times.len()).then_some(i as u64 + 2));
        }
        (Err(Error::TimeNotFound { time_ns, first, .. }), None) => {
            prop_assert_eq!(time_ns, t);
            prop_assert_eq!(first, Some(times[0]));
        }
        (got, want) => {
            return Err(TestCaseError::fail(format!(
                "t {t}: got {:?}, want record {want:?}",
                got.map(|_| "a reader")
            )))
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn seek_by_time_finds_the_first_record_at_or_after_any_time(
        times in common::clock(1..900),
        seal_last in any::<bool>(),
        untruncated in 0usize..3,
        cold in 0usize..4,
        probes in prop::collection::vec(any::<prop::sample::Index>(), 1..24),
        offsets in prop::collection::vec(-60_000i64..60_000, 24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &times, seal_last, untruncated, cold);
        let lo = *times.iter().min().unwrap();
        let hi = *times.iter().max().unwrap();
        // Each record's own time, times near them, and the edges.
        for (p, off) in probes.iter().zip(&offsets) {
            let at = times[p.index(times.len())];
            check(dir.path(), &times, at)?;
            check(dir.path(), &times, at.saturating_add_signed(*off))?;
        }
        for t in [lo.saturating_sub(1), lo, times[0], hi, hi + 1] {
            check(dir.path(), &times, t)?;
        }
    }
}

/// Through a running recorder: seek into cold segments (with summaries), persisted hot ones,
/// and the active one while its records are still only in the staging buffer's drain.
#[test]
fn seek_by_time_on_a_live_log_reaches_cold_hot_and_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut c = Config::new(dir.path());
    c.segment_size = 64 * 1024;
    c.max_segments = 2;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Staged;
    c.staging_dir = staging.path().to_path_buf();
    c.record_time = true;
    c.scrub_rate = None;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let t0 = 1_796_290_200_000_000_000u64;
    let n = 6000u64; // about 8 segments of 64-byte payloads
    for i in 0..n {
        rec.append_at(t0 + i * 1000, &[7; 64]).unwrap();
    }
    rec.sync().unwrap();
    common::wait_for("freezes", || rec.metrics().counters.frozen >= 3);
    let listing = wal_recorder::logdir::list_dir(dir.path()).unwrap();
    assert!(listing
        .segments
        .iter()
        .any(|s| s.tier == wal_recorder::logdir::Tier::Cold));
    for i in [0, 1, 500, 2500, 4000, n - 2, n - 1] {
        for t in [t0 + i * 1000, t0 + i * 1000 - 1] {
            if t < t0 {
                continue;
            }
            let mut r = LogReader::open_at_time_ns(dir.path(), t).unwrap();
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!(info.seq, i + 1, "t {t}");
        }
    }
    match LogReader::open_at_time_ns(dir.path(), t0 + n * 1000) {
        Err(Error::TimeNotFound { first, last, .. }) => {
            assert_eq!(first, Some(t0));
            assert_eq!(last, Some(t0 + (n - 1) * 1000));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    rec.close().unwrap();
}
