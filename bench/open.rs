//! Open time against the full check, on logs of many cold segments (issue 14).
//!
//! For each log (100 and 1 000 cold segments of 4 MiB, and 1 000 with records that carry time,
//! format version 2; with `full`, also 100 of 64 MiB) it
//! measures, alternated in rounds, with a warm page cache and after `drop_caches` (root only):
//! - `recovery`: `recovery::recover_with` (what the open does before the writer starts),
//! - `open`: `Recorder::open` until it returns (recovery, staging, the first prepared
//!   segment, the threads),
//! - `verify`: `log::verify` (what `walctl verify` does: every record of every segment),
//!
//! and reports medians, open / verify, open(1 000) / open(100), and open(1 000 with time) /
//! open(1 000 without) (the time index adds no read at open). The logs are measured in turn
//! within each round. The logs are generated
//! once under `$BENCH_DIR/open-logs` (the synthetic trading stream, compressed as a freeze
//! would, without `cold.summary`): the first open of each builds it by decoding every cold
//! segment, which is reported too (the cost of an open without summaries).
//!
//! Run: `scripts/bench-open.sh` (or `cargo bench --bench open -- [quick|full] [rounds]`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use bench_log::{can_drop_caches, drop_caches, median, write_segments};
use wal_recorder::config::Config;
use wal_recorder::recorder::Recorder;
use wal_recorder::recovery::{recover_with, RecoverOptions};
use wal_recorder::segment::format::Framing;

mod bench_log;

/// A cache state and its samples (ms) of recovery, open and verify.
type CacheSamples = (&'static str, [Vec<f64>; 3]);

struct LogSpec {
    name: &'static str,
    cold: u64,
    seg: u64,
    framing: Framing,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let full = args.first().is_some_and(|a| a == "full");
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let base = PathBuf::from(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .join("open-logs");
    let mut specs = vec![
        LogSpec {
            name: "100x4MiB",
            cold: 100,
            seg: 4 << 20,
            framing: Framing::Plain,
        },
        LogSpec {
            name: "1000x4MiB",
            cold: 1000,
            seg: 4 << 20,
            framing: Framing::Plain,
        },
        LogSpec {
            name: "1000x4MiB-timed",
            cold: 1000,
            seg: 4 << 20,
            framing: Framing::Timed,
        },
    ];
    if full {
        specs.push(LogSpec {
            name: "100x64MiB",
            cold: 100,
            seg: 64 << 20,
            framing: Framing::Plain,
        });
    }
    let root = can_drop_caches();
    if !root {
        println!("(not root: no cold-cache rows; drop_caches needs root)");
    }
    println!();
    println!("open time vs the full check (`walctl verify`), medians of {rounds} rounds");
    println!();
    println!(
        "| log | cold segments | on disk MiB | cache | recovery ms | open ms | verify ms | open / verify |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let mut warm_open = Vec::new();
    let mut firsts = Vec::new();
    for spec in &specs {
        let dir = base.join(spec.name);
        generate(&dir, spec);
        firsts.push(first_open(&dir, spec.seg));
    }
    // Per log: (cache, [recovery, open, verify] samples); the logs take turns in each round.
    let caches: &[&str] = if root { &["warm", "cold"] } else { &["warm"] };
    let mut results: Vec<Vec<CacheSamples>> = specs
        .iter()
        .map(|_| caches.iter().map(|c| (*c, Default::default())).collect())
        .collect();
    for _ in 0..rounds {
        for (spec, per) in specs.iter().zip(results.iter_mut()) {
            let dir = base.join(spec.name);
            for (cache, [rec_ms, open_ms, ver_ms]) in per.iter_mut() {
                let cold = *cache == "cold";
                rec_ms.push(timed(cold, || {
                    recover_with(&dir, RecoverOptions::default()).expect("recover");
                }));
                let mut rec = None;
                open_ms.push(timed(cold, || {
                    rec = Some(Recorder::open(&dir, config(&dir, spec.seg)).expect("open"));
                }));
                rec.expect("opened").close().expect("close");
                ver_ms.push(timed(cold, || {
                    let r = wal_recorder::logdir::verify(&dir).expect("verify");
                    assert!(r.ok, "{:?}", r.errors);
                }));
            }
        }
    }
    for ((spec, per), first) in specs.iter().zip(results.iter_mut()).zip(&firsts) {
        let disk = du(&base.join(spec.name)) >> 20;
        for (cache, [rec_ms, open_ms, ver_ms]) in per.iter_mut() {
            let (r, o, v) = (median(rec_ms), median(open_ms), median(ver_ms));
            if *cache == "warm" {
                warm_open.push((spec.name, o, r));
            }
            println!(
                "| {} | {} | {disk} | {cache} | {r:.1} | {o:.1} | {v:.0} | {:.4}x |",
                spec.name,
                spec.cold,
                o / v
            );
        }
        println!(
            "| {} | {} | {disk} | warm, first open, no `cold.summary` | {first:.1} | | | |",
            spec.name, spec.cold
        );
    }
    println!();
    // Warm open and recovery of log `b` over log `a`.
    let ratio = |label: &str, a: &str, b: &str| {
        let find = |name: &str| warm_open.iter().find(|w| w.0 == name);
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            println!(
                "warm, {label}: open {:.2}x, recovery {:.2}x",
                b.1 / a.1,
                b.2 / a.2
            );
        }
    };
    ratio("100 -> 1 000 cold segments", "100x4MiB", "1000x4MiB");
    ratio(
        "1 000 cold segments with time / without",
        "1000x4MiB",
        "1000x4MiB-timed",
    );
}

fn config(dir: &Path, seg: u64) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = seg;
    c.max_segments = 4;
    c.max_compressed_segments = 100_000;
    c.scrub_rate = None;
    c
}

/// Milliseconds `f` takes, after dropping the page cache if `cold`.
fn timed(cold: bool, f: impl FnOnce()) -> f64 {
    if cold {
        drop_caches();
    }
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The first open of a freshly generated log: it has no `cold.summary`, so recovery decodes
/// every cold segment (and writes the file). Milliseconds of that recovery.
fn first_open(dir: &Path, seg: u64) -> f64 {
    let summary = dir.join(wal_recorder::logdir::summary::SUMMARY_FILE);
    let _ = std::fs::remove_file(&summary);
    let rec = Recorder::open(dir, config(dir, seg)).expect("first open");
    let ms = rec.recovered().report.elapsed.as_secs_f64() * 1e3;
    assert!(rec.recovered().report.summary_rewritten);
    rec.close().expect("close");
    ms
}

/// `spec.cold` cold segments, two persisted hot ones and an unsealed one of 100 records, as
/// the recorder leaves them; skipped if `dir` holds a complete log already.
fn generate(dir: &Path, spec: &LogSpec) {
    let done = dir.with_extension("generated");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("mkdir");
    eprintln!("generating {} in {}", spec.name, dir.display());
    // Record `s` of a log with time has time 2026-12-03T09:30:00Z + `s` µs.
    write_segments(dir, spec.cold, spec.seg, spec.framing, |s| {
        1_796_290_200_000_000_000 + s * 1000
    });
    std::fs::write(&done, b"").expect("marker");
}
