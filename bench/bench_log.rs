//! What the benchmarks of whole logs share (`bench/open.rs`, `bench/seek.rs`): a generated log
//! as a recorder leaves it, the page cache dropped, medians.

use std::path::Path;

use wal_recorder::codec::compress_segment;
use wal_recorder::config::Compression;
use wal_recorder::event;
use wal_recorder::segment::format::Framing;
use wal_recorder::segment::names::hot_name;
use wal_recorder::segment::{truncate_sealed, AppendError, ChainPoint, SegmentWriter};

/// Writes `cold` cold segments of `seg` bytes (compressed as a freeze does, with their sparse
/// indexes, without `cold.summary`), two persisted hot ones and an unsealed one of 100 records: the synthetic
/// trading stream, record `s` at time `time(s)` in a log with time. Returns the records of a
/// full segment.
pub fn write_segments(
    dir: &Path,
    cold: u64,
    seg: u64,
    framing: Framing,
    time: fn(u64) -> u64,
) -> u64 {
    let (mut seq, mut chain) = (1u64, ChainPoint::START);
    let mut per_segment = 0;
    let hot = 2;
    for index in 0..cold + hot + 1 {
        let mut w = SegmentWriter::create_framed(dir, index, seg, framing, chain).expect("segment");
        let last = index == cold + hot;
        loop {
            if last && w.record_count() == 100 {
                break;
            }
            let fill = |b: &mut [u8]| event::fill(seq, b);
            let appended = match framing {
                Framing::Timed => w.append_with_at(time(seq), 64, fill),
                Framing::Plain => w.append_with(64, fill),
            };
            match appended {
                Ok(_) => seq += 1,
                Err(AppendError::Full) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        chain = w.chain();
        if index == 0 {
            per_segment = w.record_count();
        }
        if last {
            w.sync().expect("sync");
            break;
        }
        w.seal();
        let used = w.used_len();
        drop(w);
        let path = dir.join(hot_name(index));
        truncate_sealed(&path, used).expect("truncate");
        if index < cold {
            compress_segment(dir, index, Compression::Frame { level: 1 }).expect("compress");
            std::fs::remove_file(&path).expect("unlink");
        }
    }
    per_segment
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn can_drop_caches() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

pub fn drop_caches() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches");
}
