//! Tailing latency and seek time (issue 15), each against a baseline measured in the same run.
//!
//! - `latency RATE RECORDS ROUNDS`: a writer (a `Recorder`, Staged, default settings, pinned to
//!   core 0) appends 64-byte records at a paced RATE per second, each carrying its intended
//!   start time (CLOCK_MONOTONIC, which every process shares); a tailer in **another process**
//!   (this binary again, pinned to core 1 with the maintainer, `Idle::Yield`) reads them.
//!   One-way latency = the tailer's read time − the intended start (coordinated omission
//!   corrected: a late writer counts). Alternated in rounds with the same writer without a
//!   tailer: the writer's own latency (from the intended start) with and without it.
//! - `seek DIR`: `LogReader::open_at` to random sequence numbers of a log of 1 000 cold
//!   segments (the one `bench/open.rs` generates) vs reading one whole segment.
//!
//! Run: `scripts/bench-tail.sh` (or `cargo bench --bench tail -- latency 1000000 2000000 3`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wal_recorder::config::Config;
use wal_recorder::logdir::{Idle, LogReader, StartAt, Tailer};
use wal_recorder::recorder::Recorder;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("tailer") => tailer(Path::new(&args[1]), arg(2, 0)),
        Some("seek") => seek(&PathBuf::from(&args[1])),
        _ => {
            let (rate, records, rounds) = (arg(1, 1_000_000), arg(2, 2_000_000), arg(3, 3));
            latency(rate, records, rounds as usize);
        }
    }
}

/// The child: tails `dir` until `records` records, prints their one-way latencies' summary.
fn tailer(dir: &Path, records: u64) {
    pin(1);
    while !dir.join("00000000000000000000.wal").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let idle = match std::env::var("TAIL_IDLE").as_deref() {
        Ok("spin") => Idle::BusySpin,
        Ok("backoff") => Idle::Backoff {
            max: Duration::from_micros(50),
        },
        _ => Idle::Yield,
    };
    let mut t = Tailer::open(dir, StartAt::First)
        .expect("tailer")
        .with_idle(idle);
    if std::env::var("TAIL_STAGING").as_deref() == Ok("0") {
        t = t.with_staging_dir(None);
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
    }
    let mut lat = Vec::with_capacity(records as usize);
    let mut buf = Vec::new();
    for expect in 1..=records {
        let info = t.next(&mut buf).expect("next");
        let read = now_ns();
        assert_eq!(info.seq, expect);
        let intended = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        lat.push(read.saturating_sub(intended));
    }
    let p = percentiles(&mut lat);
    println!("{} {} {} {} {}", p[0], p[1], p[2], p[3], p[4]);
}

/// p50, p99, p99.9, p99.99, max.
fn percentiles(v: &mut [u64]) -> [u64; 5] {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    [
        at(0.5),
        at(0.99),
        at(0.999),
        at(0.9999),
        *v.last().expect("samples"),
    ]
}

/// One writer run; with `tail`, a tailer process follows. Returns the writer's and (if any)
/// the tailer's percentiles.
fn run(rate: u64, records: u64, tail: bool) -> ([u64; 5], Option<[u64; 5]>) {
    let base = std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into());
    let root = tempfile::tempdir_in(base).expect("tempdir");
    let dir = root.path().join("log");
    std::fs::create_dir(&dir).expect("mkdir");
    pin(0);
    let mut cfg = Config::new(&dir);
    cfg.core = Some(1);
    cfg.scrub_rate = None;
    let mut rec = Recorder::open(&dir, cfg).expect("open");
    // The tailer is up and waiting before the first append: no start-up in the figures.
    let mut child = tail.then(|| {
        let mut c = Command::new(std::env::current_exe().expect("exe"))
            .arg("tailer")
            .arg(&dir)
            .arg(records.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the tailer");
        let mut line = String::new();
        let out = c.stdout.take().expect("piped");
        let mut out = std::io::BufReader::new(out);
        std::io::BufRead::read_line(&mut out, &mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
        (c, out)
    });
    let period = 1_000_000_000 / rate;
    let mut lat = Vec::with_capacity(records as usize);
    let start = now_ns() + 1_000_000;
    for i in 0..records {
        let intended = start + i * period;
        while now_ns() < intended {
            std::hint::spin_loop();
        }
        rec.append_with(64, |b| {
            b[..8].copy_from_slice(&intended.to_le_bytes());
            b[8..16].copy_from_slice(&(i + 1).to_le_bytes());
        })
        .expect("append");
        lat.push(now_ns() - intended);
    }
    rec.sync().expect("sync");
    let tailer = child.take().map(|(mut c, mut out)| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).expect("tailer output");
        assert!(c.wait().expect("tailer").success(), "the tailer failed");
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        [v[0], v[1], v[2], v[3], v[4]]
    });
    let ws = rec.writer_stats();
    eprintln!(
        "run tail={tail}: rollovers {}, stalls {}",
        ws.rollovers, ws.stalls
    );
    rec.close().expect("close");
    (percentiles(&mut lat), tailer)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn latency(rate: u64, records: u64, rounds: usize) {
    let mut without: Vec<[u64; 5]> = Vec::new();
    let mut with: Vec<[u64; 5]> = Vec::new();
    let mut one_way: Vec<[u64; 5]> = Vec::new();
    for _ in 0..rounds {
        without.push(run(rate, records, false).0);
        let (w, t) = run(rate, records, true);
        with.push(w);
        one_way.push(t.expect("tailer percentiles"));
    }
    let med =
        |rows: &[[u64; 5]], i: usize| median(&mut rows.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!();
    println!(
        "tailing, {records} records of 64 B at {rate}/s, a tailer in another process (Idle::Yield, core 1), medians of {rounds} rounds, ns"
    );
    println!();
    println!("| measure | p50 | p99 | p99.9 | p99.99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, rows) in [
        (
            "one-way latency, writer's intended start to the tailer's read",
            &one_way,
        ),
        ("writer append latency, no tailer (baseline)", &without),
        ("writer append latency, tailer attached", &with),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            med(rows, 0),
            med(rows, 1),
            med(rows, 2),
            med(rows, 3),
            med(rows, 4)
        );
    }
    let ratio = med(&with, 2) as f64 / med(&without, 2).max(1) as f64;
    println!();
    println!("writer p99.9 with a tailer / without: {ratio:.2}x");
}

fn seek(dir: &Path) {
    let mut r = LogReader::open_dir(dir).expect("log");
    let mut buf = Vec::new();
    // The range, and one segment's full read as the baseline.
    let first = r
        .next_record(&mut buf)
        .expect("read")
        .expect("a record")
        .seq;
    let t = Instant::now();
    let mut in_first = 1u64;
    while let Some(info) = r.next_record(&mut buf).expect("read") {
        if info.offset == 64 && info.seq != first {
            break; // the second segment's first record
        }
        in_first += 1;
    }
    let one_segment = t.elapsed();
    let listing = wal_recorder::logdir::list_dir(dir).expect("list");
    let segments = listing.segments.len() as u64;
    let last_guess = first + in_first * (segments - 3);
    let mut times = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = first + x % (last_guess - first);
        let t = Instant::now();
        let mut r = LogReader::open_at(dir, seq).expect("seek");
        let info = r.next_record(&mut buf).expect("read").expect("the record");
        times.push(t.elapsed().as_nanos() as u64);
        assert_eq!(info.seq, seq);
    }
    let p = percentiles(&mut times);
    println!();
    println!(
        "seek in a log of {segments} segments ({in_first} records each), 50 random sequence numbers"
    );
    println!();
    println!("| measure | ms |");
    println!("|---|---:|");
    println!("| seek + first record, p50 | {:.2} |", p[0] as f64 / 1e6);
    println!("| seek + first record, max | {:.2} |", p[4] as f64 / 1e6);
    println!(
        "| one whole segment read (baseline) | {:.2} |",
        one_segment.as_secs_f64() * 1e3
    );
}
