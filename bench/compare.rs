//! The headline benchmark: writer latency of wal-recorder against what users would otherwise
//! do, same stream (64-byte trading events), same run, writer pinned to core 0 and every
//! background thread to core 1:
//!
//! - `recorder`: wal-recorder as shipped (`Recorder`, maintainer with small retention limits);
//! - `recorder-idle-sync`: the same with `sync_while_busy = false`;
//! - `inline`: the same segment writer, but at each rollover the writer itself creates the
//!   next segment and fdatasyncs and closes the full one (what naive loggers do);
//! - `script`: the writer creates the next segment itself and hands the full one to a
//!   background thread that fdatasyncs it with std::fs and runs the `lz4` command on it
//!   (what a user would script);
//! - `floor`: the same appends into prefaulted memory with no persistence at all.
//!
//! Modes: `fast` (as fast as possible, each append timed) and `paced:<rate>` (appends at a
//! fixed rate, latency from the intended start time: coordinated omission corrected).
//! Prints a markdown table with ratios to the floor and writes `<out>/<mode>.csv` with the
//! percentile distribution of every variant for scripts/plot.py.
//!
//! Run: `scripts/bench.sh` (or `cargo bench --bench compare -- <records> <mode> <out dir>`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::{AppendError, SealedSegment, SegmentWriter};

const SEG: u64 = 16 << 20;
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
trait Appender {
    fn append(&mut self, seq: u64);
    fn finish(self: Box<Self>);
}

struct Rec(Recorder);
impl Appender for Rec {
    #[inline]
    fn append(&mut self, seq: u64) {
        self.0
            .append_with(64, |b| event::fill(seq, b))
            .expect("append");
    }
    fn finish(self: Box<Self>) {
        let w = self.0.writer_stats();
        eprintln!("recorder: {} rollovers, {} stalls", w.rollovers, w.stalls);
        self.0.close().expect("close");
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
            let mut next = SegmentWriter::create(dir, *index, SEG, old.next_seq(), old.last_crc())
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
            let file = sealed.file.as_ref().expect("a Direct segment has its file");
            file.set_len(sealed.used).expect("truncate");
            file.sync_data().expect("fdatasync");
            drop(sealed); // munmap + close, on the writer thread
        }
    }
    fn finish(self: Box<Self>) {}
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
                let file = seg.file.as_ref().expect("a Direct segment has its file");
                file.set_len(seg.used).expect("truncate");
                file.sync_data().expect("fdatasync");
                let path = seg.path.clone();
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
        let w = SegmentWriter::create(&dir, 0, SEG, 1, 0).expect("segment");
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
    fn finish(mut self: Box<Self>) {
        drop(self.tx.take());
        self.worker.take().expect("worker").join().expect("join");
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
        self.crc = wal_recorder::segment::format::record_crc(self.crc, seq, &rec[16..80]);
        rec[8..12].copy_from_slice(&64u32.to_le_bytes());
        rec[12..16].copy_from_slice(&self.crc.to_le_bytes());
        rec[0..8].copy_from_slice(&seq.to_le_bytes());
        self.off += 80;
    }
    fn finish(self: Box<Self>) {
        std::hint::black_box(&self.buf);
    }
}

fn make(variant: &str, dir: &Path) -> Box<dyn Appender> {
    match variant {
        "recorder" | "recorder-idle-sync" => {
            let mut cfg = Config::new(dir);
            cfg.sync_while_busy = variant == "recorder";
            cfg.segment_size = SEG;
            cfg.max_segments = 2;
            cfg.max_compressed_segments = 4;
            cfg.core = Some(1).filter(|_| cpus() > 1);
            let rec = Recorder::open(dir, cfg).expect("open");
            while rec.prepared_ready() < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Box::new(Rec(rec))
        }
        "inline" => Box::new(Inline {
            dir: dir.to_path_buf(),
            w: Some(SegmentWriter::create(dir, 0, SEG, 1, 0).expect("segment")),
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

/// Runs `n` appends; returns sorted latencies in ns.
fn run(app: &mut dyn Appender, n: u64, rate: Option<u64>) -> Vec<u64> {
    let mut lat = vec![1u64; n as usize];
    lat.clear();
    match rate {
        None => {
            for seq in 1..=n {
                let t = Instant::now();
                app.append(seq);
                lat.push(t.elapsed().as_nanos() as u64);
            }
        }
        Some(r) => {
            let period = Duration::from_nanos(1_000_000_000 / r);
            let mut intended = Instant::now();
            for seq in 1..=n {
                while Instant::now() < intended {
                    std::hint::spin_loop();
                }
                app.append(seq);
                lat.push(intended.elapsed().as_nanos() as u64);
                intended += period;
            }
        }
    }
    lat.sort_unstable();
    lat
}

fn q(lat: &[u64], p: f64) -> u64 {
    if p >= 1.0 {
        return lat[lat.len() - 1];
    }
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
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
    pin(0);
    let base = std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into());
    let variants = [
        "floor",
        "recorder",
        "recorder-idle-sync",
        "inline",
        "script",
    ];
    let mut results = Vec::new();
    let chosen = std::env::var("BENCH_VARIANTS").unwrap_or_default();
    for v in variants {
        if !chosen.is_empty() && v != "floor" && !chosen.split(',').any(|c| c == v) {
            continue;
        }
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let mut app = make(v, dir.path());
        let (f0, p0) = (minor_faults(), preemptions());
        let lat = run(app.as_mut(), n, rate);
        let faults = minor_faults() - f0;
        eprintln!("{v}: {} preemptions of the writer", preemptions() - p0);
        app.finish();
        results.push((v, lat, faults));
    }
    let floor = &results[0].1.clone();
    println!(
        "\nwriter latency, {n} appends of 64 B, mode {mode}, ns{}:",
        if rate.is_some() {
            " from the intended start"
        } else {
            " per append"
        }
    );
    println!("| variant | p50 | p99 | p99.9 | p99.99 | max | p99.9 / floor | p99.99 / floor | writer page faults |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (v, lat, faults) in &results {
        let label = match *v {
            "recorder" => "(a) wal-recorder",
            "recorder-idle-sync" => "(a') wal-recorder, sync_while_busy = false",
            "inline" => "(b) inline fdatasync+close at rollover",
            "script" => "(c) std::fs thread + lz4 CLI",
            _ => "(d) floor: prefaulted memory",
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {faults} |",
            q(lat, 0.5),
            q(lat, 0.99),
            q(lat, 0.999),
            q(lat, 0.9999),
            q(lat, 1.0),
            q(lat, 0.999) as f64 / q(floor, 0.999).max(1) as f64,
            q(lat, 0.9999) as f64 / q(floor, 0.9999).max(1) as f64,
        );
    }
    let csv = out.join(format!("{}.csv", mode.replace(':', "-")));
    let mut f = File::create(&csv).expect("csv");
    writeln!(f, "variant,percentile,ns").expect("write");
    for (v, lat, _) in &results {
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
    println!("(distribution written to {})", csv.display());
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
