//! What the record's timestamp costs the writer (issue 26): the same stream through the
//! `Recorder` into a log without time (format version 1) and one with time (version 2, the
//! writer's TSC clock), alternated in rounds in one run. Two measures per round:
//!
//! - fast: 2 M appends of 64 bytes back to back, ns per append (the cost of the clock read,
//!   the 8 more bytes and the longer checksum);
//! - paced at 1 M/s: each append's latency from its intended start (no coordinated
//!   omission), p50 and p99.9.
//!
//! Run: `scripts/bench-append-time.sh [rounds]`. Writer on core 0, maintainer on core 1.

use std::time::{Duration, Instant};

use wal_recorder::config::Config;
use wal_recorder::recorder::Recorder;

const RECORDS: u64 = 2_000_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let two = core_affinity::get_core_ids().is_some_and(|c| c.len() >= 2);
    if two {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    }
    let staging = tempfile::tempdir_in("/dev/shm").expect("this bench needs a tmpfs at /dev/shm");
    let mut rows: [Vec<(f64, u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, timed) in [false, true].into_iter().enumerate() {
            let fast = run(timed, staging.path(), two);
            let (p50, p999) = {
                let mut lat = paced(timed, staging.path(), two);
                lat.sort_unstable();
                let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
                (at(0.5), at(0.999))
            };
            eprintln!(
                "round {round} time {timed}: {fast:.1} ns/append, paced p50 {p50} p99.9 {p999} ns"
            );
            rows[i].push((fast, p50, p999));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = Vec::new();
    for row in &rows {
        let mut f: Vec<f64> = row.iter().map(|r| r.0).collect();
        let mut p: Vec<f64> = row.iter().map(|r| r.1 as f64).collect();
        let mut q: Vec<f64> = row.iter().map(|r| r.2 as f64).collect();
        out.push((med(&mut f), med(&mut p), med(&mut q)));
    }
    println!("| log | fast ns/append | paced 1 M/s p50 ns | paced p99.9 ns |");
    println!("|---|---:|---:|---:|");
    for (name, r) in ["version 1 (no time)", "version 2 (time)"].iter().zip(&out) {
        println!("| {name} | {:.1} | {:.0} | {:.0} |", r.0, r.1, r.2);
    }
    println!(
        "\nmedians of {rounds} alternated rounds; time costs {:+.1} ns per append fast, p99.9 {:.2}x",
        out[1].0 - out[0].0,
        out[1].2 / out[0].2
    );
}

fn open(timed: bool, staging: &std::path::Path, two: bool) -> (tempfile::TempDir, Recorder) {
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("tempdir");
    let mut c = Config::new(dir.path());
    c.segment_size = 64 << 20;
    c.max_segments = 4;
    c.max_compressed_segments = 2;
    c.staging_dir = staging.to_path_buf();
    c.record_time = timed;
    c.scrub_rate = None;
    c.core = two.then_some(1);
    let rec = Recorder::open(dir.path(), c).expect("open");
    (dir, rec)
}

/// Back to back: ns per append.
fn run(timed: bool, staging: &std::path::Path, two: bool) -> f64 {
    let (_dir, mut rec) = open(timed, staging, two);
    let payload = [7u8; 64];
    let t = Instant::now();
    for _ in 0..RECORDS {
        rec.append(std::hint::black_box(&payload)).expect("append");
    }
    let ns = t.elapsed().as_nanos() as f64 / RECORDS as f64;
    rec.close().expect("close");
    ns
}

/// Paced at 1 M/s: each append's latency from its intended start, in ns.
fn paced(timed: bool, staging: &std::path::Path, two: bool) -> Vec<u64> {
    let (_dir, mut rec) = open(timed, staging, two);
    let payload = [7u8; 64];
    let mut lat = Vec::with_capacity(RECORDS as usize);
    let period = Duration::from_micros(1);
    let start = Instant::now();
    for i in 0..RECORDS as u32 {
        let due = start + period * i;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        rec.append(&payload).expect("append");
        lat.push(due.elapsed().as_nanos() as u64);
    }
    rec.close().expect("close");
    lat
}
