//! The sparse index of cold segments (`index/<index>.idx`, docs/FORMAT.md "Sparse index"):
//! a seek by sequence number or by time gives the documented record whether the index is
//! intact, missing, damaged, stale or lying (its entries checked by the records), for any
//! clock sequence; a live recorder writes one per frozen segment and deletes it with the
//! segment.

mod common;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use wal_recorder::codec::compress_segment;
use wal_recorder::config::{Compression, Config};
use wal_recorder::logdir::{LogReader, StartAt, Tailer};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::names::hot_name;
use wal_recorder::segment::sparse_index::{
    index_hot, index_path, read_index, write_index, Content, INTERVAL,
};
use wal_recorder::segment::truncate_sealed;
use wal_recorder::Error;

const SEG: u64 = 256 * 1024;
/// A liveness bound for a tailer's record that is already on disk, not a speed claim.
const WAIT: Duration = Duration::from_secs(20);

/// What is done to the indexes after the freeze.
#[derive(Debug, Clone, Copy)]
enum IndexState {
    Intact,
    Missing,
    /// A flipped byte (its own checksum fails).
    Damaged,
    /// Well-formed, but each entry's chain checksum wrong.
    Lying,
    /// Built for a cold file of another size.
    Stale,
}

/// One record per time, payload lengths varied (its index, then filler), in segments of
/// 256 KiB; every sealed segment persisted and indexed, the first `cold` frozen with their
/// indexes in encoding `c` (the last one unsealed, without one). Returns the payloads.
fn write(dir: &Path, times: &[u64], cold: usize, c: Compression) -> Vec<Vec<u8>> {
    let payloads: Vec<Vec<u8>> = (0..times.len())
        .map(|i| {
            let mut p = (i as u64).to_le_bytes().to_vec();
            p.resize(8 + (i * 131) % 900, i as u8);
            p
        })
        .collect();
    let records = times.iter().zip(&payloads).map(|(&t, p)| (t, &p[..]));
    let (w, index) = common::append_timed(dir, SEG, records);
    drop(w);
    for i in 0..index {
        let path = dir.join(hot_name(i));
        truncate_sealed(&path, common::used_len(&path)).unwrap();
    }
    for i in 0..index {
        match i < cold as u64 {
            true => {
                compress_segment(dir, i, c).unwrap();
                std::fs::remove_file(dir.join(hot_name(i))).unwrap();
            }
            // Persisted and not frozen: indexed as the maintainer's indexer does.
            false => assert!(index_hot(dir, i).unwrap()),
        }
    }
    payloads
}

fn spoil(dir: &Path, segments: u64, state: IndexState) {
    for i in 0..segments {
        let path = index_path(dir, i);
        let Some(mut idx) = read_index(dir, i) else {
            continue;
        };
        match state {
            IndexState::Intact => {}
            IndexState::Missing => std::fs::remove_file(&path).unwrap(),
            IndexState::Damaged => common::flip_bit(&path, 100),
            IndexState::Lying => {
                for e in &mut idx.entries {
                    e.prev_crc ^= 1;
                }
                write_index(dir, i, &idx).unwrap();
            }
            IndexState::Stale => {
                idx.cold_len += 1;
                write_index(dir, i, &idx).unwrap();
            }
        }
    }
}

fn check_time(
    dir: &Path,
    times: &[u64],
    payloads: &[Vec<u8>],
    t: u64,
) -> Result<(), TestCaseError> {
    let want = times
        .iter()
        .position(|&x| x >= t)
        .filter(|&i| i > 0 || times[0] == t);
    match (LogReader::open_at_time_ns(dir, t), want) {
        (Ok(mut r), Some(i)) => {
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().expect("a record");
            prop_assert_eq!(info.seq, i as u64 + 1, "t {}", t);
            prop_assert_eq!(&buf, &payloads[i]);
            let next = r.next_record(&mut buf).unwrap().map(|n| n.seq);
            prop_assert_eq!(next, (i + 1 < times.len()).then_some(i as u64 + 2));
            // A tailer that starts at the time starts at the same record.
            let since = UNIX_EPOCH + Duration::from_nanos(t);
            let mut tail = Tailer::open(dir, StartAt::Time(since)).unwrap();
            let info = tail
                .next_timeout(&mut buf, WAIT)
                .unwrap()
                .expect("a record");
            prop_assert_eq!(info.seq, i as u64 + 1, "tailer, t {}", t);
            prop_assert_eq!(&buf, &payloads[i]);
        }
        (Err(Error::TimeNotFound { .. }), None) => return Ok(()),
        (got, want) => {
            return Err(TestCaseError::fail(format!(
                "t {t}: got {:?}, want record {want:?}",
                got.map(|_| "a reader")
            )))
        }
    }
    Ok(())
}

fn check_seq(dir: &Path, payloads: &[Vec<u8>], seq: u64) -> Result<(), TestCaseError> {
    let mut r = LogReader::open_at(dir, seq).unwrap();
    let mut buf = Vec::new();
    let info = r.next_record(&mut buf).unwrap().expect("a record");
    prop_assert_eq!(info.seq, seq);
    prop_assert_eq!(&buf, &payloads[seq as usize - 1]);
    // The rest of the log follows, each record once.
    let mut n = 1;
    while let Some(i) = r.next_record(&mut buf).unwrap() {
        prop_assert_eq!(i.seq, seq + n);
        n += 1;
    }
    prop_assert_eq!(seq + n - 1, payloads.len() as u64);
    // A tailer that starts at it too, and goes on in order.
    let mut tail = Tailer::open(dir, StartAt::Seq(seq)).unwrap();
    for k in 0..3.min(payloads.len() as u64 - seq + 1) {
        let info = tail
            .next_timeout(&mut buf, WAIT)
            .unwrap()
            .expect("a record");
        prop_assert_eq!(info.seq, seq + k, "tailer");
        prop_assert_eq!(&buf, &payloads[(seq + k) as usize - 1]);
    }
    Ok(())
}

fn state() -> impl Strategy<Value = IndexState> {
    prop_oneof![
        3 => Just(IndexState::Intact),
        1 => Just(IndexState::Missing),
        1 => Just(IndexState::Damaged),
        1 => Just(IndexState::Lying),
        1 => Just(IndexState::Stale),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn seeks_give_the_documented_record_whatever_the_index_says(
        times in common::clock(1500..4000),
        cold in 1usize..4,
        block in any::<bool>(),
        state in state(),
        probes in prop::collection::vec(any::<prop::sample::Index>(), 8),
        offsets in prop::collection::vec(-60_000i64..60_000, 8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let c = match block {
            false => Compression::Frame { level: 1 },
            true => Compression::Block { level: 1 },
        };
        let payloads = write(dir.path(), &times, cold, c);
        let segments = wal_recorder::logdir::list_dir(dir.path()).unwrap().segments.len() as u64;
        // The records on either side of each entry, where an off-by-one would show.
        let mut edges = Vec::new();
        for i in 0..segments {
            for e in read_index(dir.path(), i).map_or(vec![], |x| x.entries) {
                edges.extend([e.seq - 2, e.seq - 1, e.seq].map(|s| s as usize));
            }
        }
        spoil(dir.path(), segments, state);
        for &i in edges.iter().filter(|&&i| i < times.len()) {
            check_seq(dir.path(), &payloads, i as u64 + 1)?;
            check_time(dir.path(), &times, &payloads, times[i])?;
            check_time(dir.path(), &times, &payloads, times[i] + 1)?;
        }
        for (p, off) in probes.iter().zip(&offsets) {
            let i = p.index(times.len());
            check_seq(dir.path(), &payloads, i as u64 + 1)?;
            check_time(dir.path(), &times, &payloads, times[i])?;
            check_time(dir.path(), &times, &payloads, times[i].saturating_add_signed(*off))?;
        }
        let hi = *times.iter().max().unwrap();
        for t in [times[0].saturating_sub(1), times[0], hi, hi + 1] {
            check_time(dir.path(), &times, &payloads, t)?;
        }
    }
}

/// The index the freeze writes: one entry per 64 KiB interval, each a record the reader finds
/// at that offset with that sequence number and chain (read back through the index itself).
#[test]
fn a_recorder_indexes_what_it_freezes_and_deletes_the_index_with_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path());
    c.segment_size = 1 << 20;
    c.max_segments = 2;
    c.max_compressed_segments = 3;
    c.scrub_rate = None;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let payload = [7u8; 200];
    let mut last = 0;
    for _ in 0..40_000 {
        last = rec.append(&payload).unwrap();
    }
    rec.sync().unwrap();
    // Each persisted hot segment gets its index from the indexer, then the freeze replaces it.
    common::wait_for("the persisted hot segments' indexes", || {
        let l = wal_recorder::logdir::list_dir(dir.path()).unwrap();
        l.segments.iter().all(|s| {
            let persisted = s.tier == wal_recorder::logdir::Tier::Hot && s.file_len < (1 << 20);
            !persisted
                || read_index(dir.path(), s.index)
                    .is_some_and(|i| i.cold_len == s.file_len || i.content == Content::Compressed)
        })
    });
    // Wait until retention has deleted some frozen segments (so their indexes went too).
    common::wait_for("a cold segment deleted", || {
        let l = wal_recorder::logdir::list_dir(dir.path()).unwrap();
        l.segments.first().is_some_and(|s| s.index >= 2)
            && l.segments
                .iter()
                .filter(|s| s.tier == wal_recorder::logdir::Tier::Cold)
                .count()
                >= 2
    });
    rec.close().unwrap(); // the log holds still from here
    let listing = wal_recorder::logdir::list_dir(dir.path()).unwrap();
    let cold: Vec<_> = listing
        .segments
        .iter()
        .filter(|s| s.tier == wal_recorder::logdir::Tier::Cold)
        .collect();
    for s in &cold {
        let idx = read_index(dir.path(), s.index).unwrap();
        assert_eq!(idx.cold_len, s.file_len, "{}", s.path.display());
        // A 1 MiB segment of 224-byte frames: an entry per 64 KiB interval but the first.
        assert_eq!(idx.entries.len() as u64, (1 << 20) / INTERVAL - 1);
        for e in idx.entries.iter().step_by(5) {
            let mut r = LogReader::open_at(dir.path(), e.seq).unwrap();
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!((info.seq, info.offset), (e.seq, e.offset));
        }
    }
    // Indexes of deleted segments are gone.
    let first = listing.segments[0].index;
    assert!((0..first).all(|i| !index_path(dir.path(), i).exists()));
    assert!(LogReader::open_at(dir.path(), last).is_ok());
    // The index directory is not a foreign file: verify is clean.
    let report = wal_recorder::logdir::verify(dir.path()).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// The scrub writes the index of a cold segment that verified without one (its index lost,
/// or the segment restored from an archive), and the seek then uses it.
#[test]
fn the_scrub_rebuilds_a_missing_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = Config::new(dir.path());
        c.segment_size = 1 << 20;
        c.max_segments = 2;
        c.max_compressed_segments = 100;
        c.scrub_rate = None;
        c
    };
    let mut rec = Recorder::open(dir.path(), config()).unwrap();
    for _ in 0..30_000 {
        rec.append(&[3u8; 200]).unwrap();
    }
    rec.close().unwrap();
    let cold: Vec<_> = wal_recorder::logdir::list_dir(dir.path())
        .unwrap()
        .segments
        .into_iter()
        .filter(|s| s.tier == wal_recorder::logdir::Tier::Cold)
        .collect();
    assert!(cold.len() >= 3, "{}", cold.len());
    let before: Vec<_> = cold
        .iter()
        .map(|s| read_index(dir.path(), s.index))
        .collect();
    assert!(before.iter().all(Option::is_some));
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let mut c = config();
    c.scrub_rate = Some(1 << 30);
    c.scrub_interval = Duration::from_millis(10);
    let rec = Recorder::open(dir.path(), c).unwrap();
    common::wait_for("the scrub's indexes", || {
        cold.iter()
            .all(|s| read_index(dir.path(), s.index).is_some())
    });
    rec.close().unwrap();
    // The same index the freeze wrote.
    let after: Vec<_> = cold
        .iter()
        .map(|s| read_index(dir.path(), s.index))
        .collect();
    assert_eq!(after, before);
}

/// The maintainer's indexer follows the active segment as it is written: its index grows with
/// it, and a seek into the live end of the log finds its records.
#[test]
fn the_active_segment_of_a_live_recorder_is_indexed_as_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path());
    c.segment_size = 4 << 20;
    c.max_segments = 4;
    c.scrub_rate = None;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    // Half of the first segment: followed from the start of the run, before any persist.
    let per_segment = (4 << 20) / 224;
    for _ in 0..per_segment / 2 {
        rec.append(&[5u8; 200]).unwrap();
    }
    rec.sync().unwrap();
    common::wait_for("the first segment's index", || {
        read_index(dir.path(), 0).is_some_and(|i| i.entries.len() as u64 >= 25)
    });
    // Then about half of the next (224-byte frames).
    for _ in 0..per_segment {
        rec.append(&[5u8; 200]).unwrap();
    }
    rec.sync().unwrap();
    let active = dir.path().join(hot_name(1));
    let len = std::fs::metadata(&active).unwrap().len();
    assert!(
        len >= 4 << 20,
        "segment 1 is the active one, at its preallocated size"
    );
    common::wait_for("the active segment's index", || {
        read_index(dir.path(), 1).is_some_and(|i| i.entries.len() as u64 >= 25)
    });
    let idx = read_index(dir.path(), 1).unwrap();
    assert_eq!((idx.content, idx.cold_len), (Content::Plain, len));
    for e in idx.entries.iter().step_by(6) {
        for seq in [e.seq, e.seq + 7] {
            let mut r = LogReader::open_at(dir.path(), seq).unwrap();
            let mut buf = Vec::new();
            let info = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!(info.seq, seq);
            assert_eq!(buf, [5u8; 200]);
        }
    }
    rec.close().unwrap();
}
