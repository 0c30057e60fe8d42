//! The headline benchmark: writer latency of wal-recorder against what users would otherwise
//! do, same stream (64-byte trading events), same run, writer pinned to core 0 and every
//! background thread to core 1:
//!
//! - `staged`: wal-recorder as shipped (`Recorder` with the default configuration: staging
//!   buffers in tmpfs drained to disk every millisecond);
//! - `staged-odirect`: the same with `direct_io = true` (`O_DIRECT` writes straight from the
//!   staging pages instead of buffered ones);
//! - `direct`: the same with `WritePath::Direct` (the writer maps the segment file; the
//!   maintainer syncs its completed pages every millisecond);
//! - `direct-idle-sync`: Direct with `sync_while_busy = false`;
//! - `inline`: the same segment writer, but at each rollover the writer itself creates the
//!   next segment and fdatasyncs and closes the full one (what naive loggers do);
//! - `script`: the writer creates the next segment itself and hands the full one to a
//!   background thread that fdatasyncs it with std::fs and runs the `lz4` command on it
//!   (what a user would script);
//! - `floor`: the same appends into prefaulted memory with no persistence at all;
//! - the peers (`bench/peers.rs`): `raft-engine`, `okaywal`, `fs-write` (a `write_all` per
//!   record, `sync_data` on a thread) and `mmap-file` (a preallocated mapped file,
//!   `fdatasync` on a thread), each durable through its own notion of durable.
//!
//! A paced run that falls a second behind its schedule stops, and one whose appends took
//! more than 3 % longer than the schedule is not stopped; both are marked as falling behind
//! (with the rate reached) instead of printing latencies they did not hold. A fast run stops
//! after `BENCH_MAX_SECS` (default 20) seconds.
//!
//! Modes: `fast` (as fast as possible, each append timed) and `paced:<rate>` (appends at a
//! fixed rate, latency from the intended start time: coordinated omission corrected).
//! Variants run in `BENCH_ROUNDS` rounds (default 3), each round in another order, so the
//! machine's noise hits all alike; every figure is the median over the rounds. Prints a
//! markdown table with ratios to the floor of the same run, the writer's page faults, the
//! durability lag the writer observes through `durable_seq()` (every 64th record sampled, or
//! every one at 100 k/s and less) and the maintainer's CPU, and writes `<out>/<mode>.csv`
//! with the percentile distribution of every variant (first round) for scripts/plot.py.
//! Segments are `BENCH_SEGMENT` bytes (default 64 MiB, the default configuration).
//!
//! Run: `scripts/bench.sh` (or `cargo bench --bench compare -- <records> <mode> <out dir>`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::{AppendError, SealedSegment, SegmentWriter};

mod peers;

use wal_recorder::telemetry::thread_cpu_ns;

/// Segment size of every variant: `BENCH_SEGMENT`, default 64 MiB (the default config).
fn seg() -> u64 {
    std::env::var("BENCH_SEGMENT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64 << 20)
}
const PERCENTILES: [f64; 9] = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 1.0, 0.0];

/// CPUs of the machine (not of the calling thread's affinity mask, which pinning narrows).
fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

fn pin(core: usize) {
    if cpus() > core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
}

/// One way of appending record `seq`.
trait Appender: Send {
    fn append(&mut self, seq: u64);
    /// Every record up to this is durable (None: the variant has no such notion).
    fn durable(&self) -> Option<u64> {
        None
    }
    /// Ends the run; returns the background thread's CPU nanoseconds, where known.
    fn finish(self: Box<Self>) -> Option<u64>;
}

struct Rec(Recorder);
impl Appender for Rec {
    #[inline]
    fn append(&mut self, seq: u64) {
        self.0
            .append_with(64, |b| event::fill(seq, b))
            .expect("append");
    }
    #[inline]
    fn durable(&self) -> Option<u64> {
        Some(self.0.durable_seq())
    }
    fn finish(mut self: Box<Self>) -> Option<u64> {
        let w = self.0.writer_stats();
        eprintln!("recorder: {} rollovers, {} stalls", w.rollovers, w.stalls);
        self.0.shutdown().expect("close");
        Some(wal_recorder::maintainer::Counter::get(
            &self.0.maintainer_stats().cpu_ns,
        ))
    }
}

/// Appends record `seq`; when the segment is full, creates the next one on the writer thread
/// (no prepared segment), appends there and returns the full one, sealed.
#[inline]
fn append_or_roll(
    dir: &Path,
    w: &mut Option<SegmentWriter>,
    index: &mut u64,
    seq: u64,
) -> Option<SealedSegment> {
    match w
        .as_mut()
        .expect("writer")
        .append_with(64, |b| event::fill(seq, b))
    {
        Ok(_) => None,
        Err(AppendError::Full) => {
            let old = w.take().expect("writer");
            *index += 1;
            let mut next =
                SegmentWriter::create(dir, *index, seg(), old.next_seq(), old.last_crc())
                    .expect("segment");
            next.append_with(64, |b| event::fill(seq, b))
                .expect("append");
            *w = Some(next);
            Some(old.into_sealed())
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// The segment writer with persistence done on the writer thread at each rollover.
struct Inline {
    dir: PathBuf,
    w: Option<SegmentWriter>,
    index: u64,
}
impl Appender for Inline {
    #[inline]
    fn append(&mut self, seq: u64) {
        if let Some(sealed) = append_or_roll(&self.dir, &mut self.w, &mut self.index, seq) {
            let file = sealed.file().expect("a Direct segment has its file");
            file.set_len(sealed.used()).expect("truncate");
            file.sync_data().expect("fdatasync");
            drop(sealed); // munmap + close, on the writer thread
        }
    }
    fn finish(self: Box<Self>) -> Option<u64> {
        None
    }
}

/// The writer rolls over itself; a background thread persists with std::fs and runs `lz4`.
struct Script {
    dir: PathBuf,
    w: Option<SegmentWriter>,
    index: u64,
    tx: Option<mpsc::Sender<SealedSegment>>,
    worker: Option<std::thread::JoinHandle<()>>,
}
impl Script {
    fn new(dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel::<SealedSegment>();
        let worker = std::thread::spawn(move || {
            pin(1);
            let mut cold = std::collections::VecDeque::new();
            for seg in rx {
                let file = seg.file().expect("a Direct segment has its file");
                file.set_len(seg.used()).expect("truncate");
                file.sync_data().expect("fdatasync");
                let path = seg.path().to_path_buf();
                drop(seg);
                let cold_path = path.with_extension("wal.lz4");
                let st = std::process::Command::new("lz4")
                    .args(["-1", "-q", "-f", "--rm"])
                    .arg(&path)
                    .arg(&cold_path)
                    .status()
                    .expect("lz4 command");
                assert!(st.success());
                cold.push_back(cold_path);
                while cold.len() > 4 {
                    let _ = std::fs::remove_file(cold.pop_front().expect("non-empty"));
                }
            }
        });
        let w = SegmentWriter::create(&dir, 0, seg(), 1, 0).expect("segment");
        Script {
            dir,
            w: Some(w),
            index: 0,
            tx: Some(tx),
            worker: Some(worker),
        }
    }
}
impl Appender for Script {
    #[inline]
    fn append(&mut self, seq: u64) {
        if let Some(sealed) = append_or_roll(&self.dir, &mut self.w, &mut self.index, seq) {
            self.tx.as_ref().expect("tx").send(sealed).expect("send");
        }
    }
    fn finish(mut self: Box<Self>) -> Option<u64> {
        drop(self.tx.take());
        self.worker.take().expect("worker").join().expect("join");
        None
    }
}

/// The same framing and chained CRC into prefaulted anonymous memory (wrapping around).
struct Floor {
    buf: Vec<u8>,
    off: usize,
    crc: u32,
}
impl Appender for Floor {
    #[inline]
    fn append(&mut self, seq: u64) {
        if self.off + 80 > self.buf.len() {
            self.off = 0;
        }
        let rec = &mut self.buf[self.off..self.off + 80];
        event::fill(seq, &mut rec[16..80]);
        self.crc = wal_recorder::segment::format::record_crc(self.crc, seq, None, &rec[16..80]);
        rec[8..12].copy_from_slice(&64u32.to_le_bytes());
        rec[12..16].copy_from_slice(&self.crc.to_le_bytes());
        rec[0..8].copy_from_slice(&seq.to_le_bytes());
        self.off += 80;
    }
    fn finish(self: Box<Self>) -> Option<u64> {
        std::hint::black_box(&self.buf);
        None
    }
}

fn make(variant: &str, dir: &Path, n: u64) -> Box<dyn Appender> {
    match variant {
        "raft-engine" => Box::new(peers::RaftEngine::open(dir)),
        "okaywal" => Box::new(peers::OkayWal::open(dir)),
        "fs-write" => Box::new(peers::FsWrite::open(dir, Some(peers::SYNC_EVERY))),
        "fs-write-b2b" => Box::new(peers::FsWrite::open(dir, None)),
        "mmap-file" => Box::new(peers::MmapFile::open(dir, n, Some(peers::SYNC_EVERY))),
        "mmap-file-b2b" => Box::new(peers::MmapFile::open(dir, n, None)),
        "staged" | "staged-odirect" | "direct" | "direct-idle-sync" => {
            let mut cfg = Config::new(dir);
            if variant.starts_with("direct") {
                cfg.write_path = WritePath::Direct;
            }
            cfg.direct_io = variant == "staged-odirect";
            cfg.sync_while_busy = variant != "direct-idle-sync";
            cfg.segment_size = seg();
            cfg.core = Some(1).filter(|_| cpus() > 1);
            let rec = Recorder::open(dir, cfg).expect("open");
            while rec.prepared_ready() < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Box::new(Rec(rec))
        }
        "inline" => Box::new(Inline {
            dir: dir.to_path_buf(),
            w: Some(SegmentWriter::create(dir, 0, seg(), 1, 0).expect("segment")),
            index: 0,
        }),
        "script" => Box::new(Script::new(dir.to_path_buf())),
        _ => Box::new(Floor {
            buf: vec![1u8; 64 << 20],
            off: 0,
            crc: 0,
        }),
    }
}

/// What one run of one variant measured.
struct Outcome {
    /// Sorted latencies, ns.
    lat: Vec<u64>,
    /// Sorted durability lags, ns (empty without a notion of durable).
    lag: Vec<u64>,
    faults: i64,
    /// Background CPU as a share of one core over the run, where known.
    cpu: Option<f64>,
    secs: f64,
    /// Records appended (fewer than asked if it fell behind or hit the time limit).
    done: u64,
    /// A paced run that fell a second behind its schedule.
    behind: bool,
}

/// Runs `n` appends; returns sorted latencies and durability lags in ns, and the writer's
/// page faults during the appends (after its own arrays were allocated and touched).
fn run(app: &mut dyn Appender, n: u64, rate: Option<u64>) -> (Vec<u64>, Vec<u64>, i64, bool) {
    let mut lat = vec![1u64; n as usize];
    lat.clear();
    // Samples (seq, append time): prefaulted here so that sampling never faults the writer.
    let step = if rate.is_some_and(|r| r <= 100_000) {
        1
    } else {
        64
    };
    let mut pending = std::collections::VecDeque::with_capacity(1 << 16);
    pending.extend((0..1u64 << 16).map(|i| (i, 0u64)));
    pending.clear();
    let mut lag = vec![1u64; (n / step + 1) as usize];
    lag.clear();
    let faults_before = minor_faults();
    let start = Instant::now();
    let track = app.durable().is_some();
    let mut observe = |app: &dyn Appender, pending: &mut std::collections::VecDeque<(u64, u64)>| {
        let d = app.durable().unwrap_or(0);
        let now = start.elapsed().as_nanos() as u64;
        while let Some(&(s, t)) = pending.front() {
            if s > d {
                break;
            }
            lag.push(now - t);
            pending.pop_front();
        }
    };
    let mut intended = Instant::now();
    let period = rate.map(|r| Duration::from_nanos(1_000_000_000 / r));
    let max_secs: u64 = std::env::var("BENCH_MAX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut behind = false;
    for seq in 1..=n {
        if seq % 1024 == 0 {
            let late = period.is_some() && Instant::now() > intended + Duration::from_secs(1);
            if late || start.elapsed() > Duration::from_secs(max_secs) {
                behind = late;
                break;
            }
        }
        let t = match period {
            Some(p) => {
                while Instant::now() < intended {
                    std::hint::spin_loop();
                }
                let t = intended;
                intended += p;
                t
            }
            None => Instant::now(),
        };
        app.append(seq);
        lat.push(t.elapsed().as_nanos() as u64);
        if track {
            if seq % step == 0 && pending.len() < pending.capacity() {
                pending.push_back((seq, start.elapsed().as_nanos() as u64));
            }
            observe(&*app, &mut pending);
        }
    }
    // Held the rate? Not if the appends took more than 3 % longer than the schedule.
    let appended = lat.len() as f64;
    if let Some(r) = rate {
        behind |= appended / start.elapsed().as_secs_f64() < 0.97 * r as f64;
    }
    let waited = Instant::now();
    while track && !pending.is_empty() && waited.elapsed() < Duration::from_secs(30) {
        observe(&*app, &mut pending);
    }
    let faults = minor_faults() - faults_before;
    lat.sort_unstable();
    lag.sort_unstable();
    (lat, lag, faults, behind)
}

fn q(lat: &[u64], p: f64) -> u64 {
    if p >= 1.0 {
        return lat[lat.len() - 1];
    }
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
}

/// Runs `f` on a thread pinned to core 1 and returns what it returns.
fn on_core_1<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            f()
        })
        .join()
        .expect("setup thread")
    })
}

fn label(v: &str) -> &'static str {
    match v {
        "staged" => "(a) wal-recorder (default: Staged)",
        "staged-odirect" => "(a1) wal-recorder, Staged, O_DIRECT drain",
        "direct" => "(a') wal-recorder, Direct",
        "direct-idle-sync" => "(a'') wal-recorder, Direct, sync_while_busy = false",
        "inline" => "(b) inline fdatasync+close at rollover",
        "script" => "(c) std::fs thread + lz4 CLI",
        "raft-engine" => "(e) raft-engine 0.4, batch per record, sync thread",
        "okaywal" => "(f) okaywal 0.3, commit per record",
        "fs-write" => "(g) File::write_all per record, sync_data thread",
        "mmap-file" => "(h) preallocated mmap'd file, fdatasync thread",
        "fs-write-b2b" => "(g') File::write_all per record, sync_data back to back",
        "mmap-file-b2b" => "(h') preallocated mmap'd file, fdatasync back to back",
        _ => "(d) floor: prefaulted memory",
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: u64 = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let mode = args.get(1).cloned().unwrap_or_else(|| "fast".into());
    let out = PathBuf::from(args.get(2).cloned().unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&out).expect("out dir");
    let rate = mode
        .strip_prefix("paced:")
        .map(|r| r.parse::<u64>().expect("rate"));
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    pin(0);
    let base = std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into());
    let chosen = std::env::var("BENCH_VARIANTS").unwrap_or_default();
    let variants: Vec<&str> = [
        "floor",
        "staged",
        "staged-odirect",
        "direct",
        "direct-idle-sync",
        "inline",
        "script",
        "raft-engine",
        "okaywal",
        "fs-write",
        "fs-write-b2b",
        "mmap-file",
        "mmap-file-b2b",
    ]
    .into_iter()
    .filter(|v| chosen.is_empty() || *v == "floor" || chosen.split(',').any(|c| c == *v))
    .collect();
    let mut results: Vec<Vec<Outcome>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round) % variants.len(); // another order each round
            let v = variants[i];
            let dir = tempfile::tempdir_in(&base).expect("tempdir");
            // Setup and teardown run on core 1: the writer's core sees only the appends (large
            // frees make the VM report free pages on the freeing CPU seconds later).
            let mut app = on_core_1(|| make(v, dir.path(), n));
            std::thread::sleep(Duration::from_millis(300));
            let p0 = preemptions();
            let started = Instant::now();
            let (lat, lag, faults, behind) = run(app.as_mut(), n, rate);
            let done = lat.len() as u64;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "round {round} {v}: {} preemptions of the writer",
                preemptions() - p0
            );
            let cpu = on_core_1(move || app.finish()).map(|ns| ns as f64 / 1e9 / secs);
            drop(dir);
            std::thread::sleep(Duration::from_secs(1));
            results[i].push(Outcome {
                lat,
                lag,
                faults,
                cpu,
                secs,
                done,
                behind,
            });
        }
    }
    let med = |i: usize, f: &dyn Fn(&Outcome) -> f64| median(results[i].iter().map(f).collect());
    let floor999 = med(0, &|o| q(&o.lat, 0.999) as f64).max(1.0);
    let floor9999 = med(0, &|o| q(&o.lat, 0.9999) as f64).max(1.0);
    println!(
        "\nwriter latency, {n} appends of 64 B, mode {mode}, {} MiB segments, medians of {rounds} rounds, ns{}:",
        seg() >> 20,
        if rate.is_some() {
            " from the intended start"
        } else {
            " per append"
        }
    );
    println!("| variant | p50 | p99 | p99.9 | p99.99 | max | p99.9 / floor | p99.99 / floor | writer page faults | durability lag p50 / p99 / max µs | background CPU % | Mrec/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, v) in variants.iter().enumerate() {
        let p = |x: f64| med(i, &|o| q(&o.lat, x) as f64);
        let lag = |x: f64| {
            med(i, &|o| match o.lag.is_empty() {
                true => f64::NAN,
                false => q(&o.lag, x) as f64 / 1e3,
            })
        };
        let lags = match lag(0.5).is_nan() {
            true => "-".to_string(),
            false => format!("{:.0} / {:.0} / {:.0}", lag(0.5), lag(0.99), lag(1.0)),
        };
        let cpu = match results[i][0].cpu {
            Some(_) => format!("{:.1}", med(i, &|o| o.cpu.unwrap_or(0.0) * 100.0)),
            None => "-".into(),
        };
        let mrecs = med(i, &|o| o.done as f64 / o.secs / 1e6);
        if results[i].iter().any(|o| o.behind) {
            println!(
                "| {} | falls behind: {:.3} M/s of {:.3} M/s asked | | | | | | | {:.0} | {lags} | {cpu} | {mrecs:.3} |",
                label(v),
                mrecs,
                rate.unwrap_or(0) as f64 / 1e6,
                med(i, &|o| o.faults as f64),
            );
            continue;
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {lags} | {cpu} | {:.2} |",
            label(v),
            p(0.5),
            p(0.99),
            p(0.999),
            p(0.9999),
            p(1.0),
            p(0.999) / floor999,
            p(0.9999) / floor9999,
            med(i, &|o| o.faults as f64),
            mrecs,
        );
    }
    let csv = out.join(format!("{}.csv", mode.replace(':', "-")));
    let mut f = File::create(&csv).expect("csv");
    writeln!(f, "variant,percentile,ns").expect("write");
    for (v, runs) in variants.iter().zip(&results) {
        let lat = &runs[0].lat;
        for p in PERCENTILES.iter().filter(|p| **p > 0.0) {
            writeln!(f, "{v},{p},{}", q(lat, *p)).expect("write");
        }
        // a denser distribution for the plot
        for k in 1..=60 {
            let p = 1.0 - 10f64.powf(-(k as f64) / 10.0);
            if p < 1.0 - 1.0 / lat.len() as f64 {
                writeln!(f, "{v},{p},{}", q(lat, p)).expect("write");
            }
        }
    }
    println!("(distribution of round 1 written to {})", csv.display());
}

/// Minor page faults of the calling thread so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru.ru_minflt
    }
}

/// Involuntary context switches of the calling thread so far (preemptions).
fn preemptions() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru.ru_nivcsw
    }
}
