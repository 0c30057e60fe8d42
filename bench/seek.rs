//! Seek by time beside seek by sequence number, in a log of 1 000 cold segments (issue 26).
//!
//! The log (records with time, format version 2; 1 000 cold segments of 4 MiB with their
//! `cold.summary` and sparse indexes, two persisted hot ones and an unsealed one) is
//! generated once under `$BENCH_DIR/seek-logs`. Record `s` has time `T0 + s µs`. For probes
//! spread over the log, alternated in rounds, with a warm page cache and after `drop_caches`
//! (root only), it measures until the first record is in hand:
//! - `time` / `seq`, to a segment's first record: the listing, the bisection over the
//!   segments (summaries, seals) and the open of one segment, with nothing to scan;
//! - `time` / `seq`, to a record inside a segment: the same plus the sparse index, one block
//!   decoded and the scan of at most one 64 KiB interval up to the record;
//! - the same inside one of the two persisted hot segments (indexed as the maintainer's indexer
//!   does: no decoding).
//!
//! It also times a freeze's CPU for one 4 MiB segment with and without building its index.
//!
//! Run: `scripts/bench-seek.sh [rounds]` (or `cargo bench --bench seek -- [rounds]`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use bench_log::{can_drop_caches, drop_caches, median, write_segments};
use wal_recorder::config::Config;
use wal_recorder::logdir::LogReader;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::Framing;

mod bench_log;

const COLD: u64 = 1000;
const SEG: u64 = 4 << 20;
/// 2026-12-03T09:30:00Z.
const T0: u64 = 1_796_290_200_000_000_000;
/// Probes per kind per round.
const PROBES: u64 = 16;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let dir = PathBuf::from(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .join("seek-logs")
        .join("1000x4MiB-timed");
    let (last, per_segment) = generate(&dir);
    // The persisted hot segments' indexes, as the maintainer's indexer writes them.
    for hot in [COLD, COLD + 1] {
        wal_recorder::segment::sparse_index::index_hot(&dir, hot).expect("index a hot segment");
    }
    // SEEK_WARM_ONLY=1: no cold-cache rounds (for profiling).
    let cold_ok = can_drop_caches() && std::env::var_os("SEEK_WARM_ONLY").is_none();
    println!(
        "log: {COLD} cold segments of {} MiB ({per_segment} records each) + 3 hot, {last} records; rounds {rounds}; cold cache {}",
        SEG >> 20,
        if cold_ok { "yes" } else { "no (not root)" }
    );
    // (cache, target, kind) -> samples (ms)
    let mut samples: std::collections::BTreeMap<(&str, &str, &str), Vec<f64>> = Default::default();
    for round in 0..rounds {
        for cache in ["warm", "cold"] {
            if cache == "cold" && !cold_ok {
                continue;
            }
            for p in 0..PROBES {
                // Spread over the log, a different place each round; the last probes reach the
                // hot segments.
                let segment = (p * (COLD + 2) / PROBES + round as u64 * 7) % (COLD + 2);
                let first = 1 + segment * per_segment;
                let inside = first + (per_segment * (3 + p % 5)) / 8; // 3/8..7/8 in
                                                                      // And into one of the two persisted hot segments.
                let hot = 1 + (COLD + p % 2) * per_segment + (per_segment * (3 + p % 5)) / 8;
                for (target, seq) in [
                    ("segment start", first),
                    ("inside", inside),
                    ("inside a hot one", hot),
                ] {
                    // Alternate which kind goes first.
                    let kinds = if (p + round as u64) % 2 == 0 {
                        ["time", "seq"]
                    } else {
                        ["seq", "time"]
                    };
                    for kind in kinds {
                        let ms = seek(&dir, kind, seq, cache == "cold");
                        samples.entry((cache, target, kind)).or_default().push(ms);
                    }
                }
            }
        }
    }
    freeze_cost(&dir, rounds);
    println!("| cache | to | seek by time p50 / max (ms) | seek by seq p50 / max (ms) | time ÷ seq (p50) |");
    println!("|---|---|---|---|---|");
    for cache in ["warm", "cold"] {
        for target in ["segment start", "inside", "inside a hot one"] {
            let (Some(t), Some(s)) = (
                samples.get(&(cache, target, "time")),
                samples.get(&(cache, target, "seq")),
            ) else {
                continue;
            };
            let (mut t, mut s) = (t.clone(), s.clone());
            let (tm, sm) = (median(&mut t), median(&mut s));
            println!(
                "| {cache} | {target} | {tm:.3} / {:.3} | {sm:.3} / {:.3} | {:.2} |",
                t.last().unwrap(),
                s.last().unwrap(),
                tm / sm
            );
        }
    }
}

/// What the sparse index adds to a freeze's CPU: one 4 MiB hot segment of the log compressed
/// as the freeze does (LZ4 frame, level 1, 1 MiB chunks), with and without building its index
/// from the same chunks, alternated; medians of the per-segment times.
fn freeze_cost(dir: &Path, rounds: usize) {
    use wal_recorder::codec::ColdEncoder;
    use wal_recorder::config::Compression;
    use wal_recorder::segment::sparse_index::IndexBuilder;
    let hot = dir.join(wal_recorder::segment::names::hot_name(COLD));
    let raw = std::fs::read(&hot).expect("a persisted hot segment");
    let once = |index: bool| -> f64 {
        let t = Instant::now();
        let c = Compression::Frame { level: 1 };
        let mut enc = ColdEncoder::new(c, raw.len() as u64).expect("encoder");
        let mut builder = IndexBuilder::new();
        let mut out = Vec::with_capacity(raw.len());
        for chunk in raw.chunks(1 << 20) {
            enc.compress(chunk, &mut out).expect("compress");
            if index {
                builder.feed(chunk);
            }
        }
        let blocks = enc.finish(&mut out).expect("finish");
        if index {
            let starts = blocks.known().expect("block starts");
            let idx = builder.finish(starts, out.len() as u64).expect("index");
            std::hint::black_box(idx.encode());
        }
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds * 10 {
        for index in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let ms = once(index);
            if index {
                with.push(ms)
            } else {
                without.push(ms)
            }
        }
    }
    let (w, wo) = (median(&mut with), median(&mut without));
    println!(
        "freeze CPU per 4 MiB segment: {w:.3} ms with the index, {wo:.3} ms without ({:.3}x)",
        w / wo
    );
}

/// Milliseconds until the first record at `seq` (found by its time, or its number) is read.
fn seek(dir: &Path, kind: &str, seq: u64, cold: bool) -> f64 {
    if cold {
        drop_caches();
    }
    let t = Instant::now();
    let mut r = match kind {
        "time" => LogReader::open_at_time_ns(dir, time_of(seq)),
        _ => LogReader::open_at(dir, seq),
    }
    .expect("seek");
    let mut buf = Vec::new();
    let info = r.next_record(&mut buf).expect("read").expect("a record");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(info.seq, seq, "{kind} seek");
    assert_eq!(info.time, Some(time_of(seq)));
    ms
}

fn time_of(seq: u64) -> u64 {
    T0 + seq * 1000
}

/// The log, as a recorder with time leaves it: `COLD` cold segments (compressed as a freeze
/// does, then `cold.summary` written by a recorder's first open), two persisted hot ones and
/// an unsealed one of 100 records. Skipped if `dir` holds it already. Returns the last seq
/// and the records of a full segment.
fn generate(dir: &Path) -> (u64, u64) {
    let done = dir.with_extension("generated");
    if let Ok(text) = std::fs::read_to_string(&done) {
        let mut v = text.split_whitespace().map(|n| n.parse().expect("marker"));
        return (v.next().expect("last"), v.next().expect("per segment"));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("mkdir");
    eprintln!("generating {} (once)", dir.display());
    let per_segment = write_segments(dir, COLD, SEG, Framing::Timed, time_of);
    // A first open writes cold.summary, as the maintainer keeps it in a live log.
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 4;
    c.max_compressed_segments = 100_000;
    c.scrub_rate = None;
    let rec = Recorder::open(dir, c).expect("first open");
    assert!(rec.recovered().report.summary_rewritten);
    let last = rec.last_seq();
    rec.close().expect("close");
    std::fs::write(&done, format!("{last} {per_segment}")).expect("marker");
    (last, per_segment)
}
