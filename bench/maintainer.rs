//! Maintainer benchmarks, each against a baseline measured in the same run:
//!
//! - `freeze`: freezing 64 MiB segments of the synthetic trading stream (read, LZ4 frame,
//!   write, fdatasync, check, rename, unlink, directory fsyncs) vs `lz4 -1 -f in out && sync
//!   out` as a whole command, and vs compressing the same bytes in memory with LZ4F (the
//!   ceiling).
//! - `persist`: CPU of the maintainer thread per persisted segment (ftruncate, fdatasync,
//!   close of a freshly written 1 MiB segment), io_uring batch vs blocking backend.
//! - `idle`: CPU of an idle maintainer at several max-sleep settings.
//!
//! Run: `scripts/bench-maintainer.sh` (or `cargo bench --bench maintainer -- freeze|persist|idle`).

use std::path::Path;
use std::time::{Duration, Instant};

use wal_recorder::codec::lz4::compress_frame;
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::io::BackendChoice;
use wal_recorder::maintainer::SegmentMaintainer;
use wal_recorder::segment::names::hot_name;
use wal_recorder::segment::{AppendError, SealedSegment, SegmentWriter};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let base = std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    if matches!(what, "freeze" | "all") {
        freeze(
            dir.path(),
            args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4),
        );
    }
    if matches!(what, "persist" | "all") {
        persist(dir.path(), 64);
    }
    if matches!(what, "idle" | "all") {
        idle(dir.path());
    }
}

/// Core 1 if the machine has two (counted with sysconf: the calling thread's affinity mask
/// is already narrowed to core 0).
fn second_core() -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } > 1).then_some(1)
}

/// Writes a full segment of synthetic events; returns it sealed.
fn segment(dir: &Path, index: u64, size: u64, first_seq: u64, crc: u32) -> SealedSegment {
    let mut w = SegmentWriter::create(dir, index, size, first_seq, crc).expect("segment");
    let mut seq = first_seq;
    loop {
        match w.append_with(64, |b| event::fill(seq, b)) {
            Ok(_) => seq += 1,
            Err(AppendError::Full) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    w.into_sealed()
}

fn get(c: &wal_recorder::maintainer::Counter) -> u64 {
    wal_recorder::maintainer::Counter::get(c)
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(600), "timeout: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Freezes `n` fresh 64 MiB segments through a maintainer; returns (seconds, bytes out,
/// the sealed bytes of the segments).
fn maintainer_freeze(dir: &Path, n: u64, check: bool, threads: usize) -> (f64, u64, Vec<Vec<u8>>) {
    let size = 64u64 << 20;
    let fdir = dir.join(format!("freeze-{check}"));
    std::fs::create_dir_all(&fdir).expect("mkdir");
    let mut cfg = Config::new(&fdir);
    cfg.max_segments = 1000;
    cfg.verify_frames = check;
    cfg.compress_threads = threads;
    cfg.core = second_core();
    let mut m = SegmentMaintainer::new(cfg).expect("maintainer");
    let mut q = m.take_persist_queue().expect("queue");
    m.start().expect("start");
    let mut copies = Vec::new();
    let (mut seq, mut crc) = (1, 0);
    for i in 0..n {
        let s = segment(&fdir, i, size, seq, crc);
        let bytes = std::fs::read(s.path()).expect("read");
        copies.push(bytes[..s.used() as usize].to_vec());
        seq = s.last_seq() + 1;
        crc =
            wal_recorder::segment::format::get_u32(&copies[i as usize][s.used() as usize - 8..], 0);
        assert!(q.push(s).is_ok());
    }
    wait("persist", || get(&m.stats().persisted) == n);

    // (a) the maintainer's freeze, requested one segment after the other
    let t = Instant::now();
    for i in 0..n {
        assert!(m.request_freeze(fdir.join(hot_name(i))));
    }
    wait("freeze", || get(&m.stats().frozen) == n);
    let ours = t.elapsed().as_secs_f64();
    let out_bytes = get(&m.stats().bytes_out);
    m.stop().expect("stop");
    std::fs::remove_dir_all(&fdir).expect("cleanup");
    (ours, out_bytes, copies)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Rounds of every variant, alternated so that machine noise hits all alike.
const FREEZE_ROUNDS: usize = 3;

fn freeze(dir: &Path, n: u64) {
    let mut t = vec![Vec::new(); 6];
    let mut ratio = 0.0;
    for _ in 0..FREEZE_ROUNDS {
        let (helper, out_bytes, copies) = maintainer_freeze(dir, n, true, 1);
        let (inline, _, _) = maintainer_freeze(dir, n, true, 0);
        let (two, _, _) = maintainer_freeze(dir, n, true, 2);
        let (unchecked, _, _) = maintainer_freeze(dir, n, false, 1);
        let (cli, mem) = freeze_baselines(dir, &copies);
        let in_bytes: u64 = copies.iter().map(|c| c.len() as u64).sum();
        ratio = in_bytes as f64 / out_bytes as f64;
        for (i, v) in [helper, inline, two, unchecked, cli, mem]
            .into_iter()
            .enumerate()
        {
            t[i].push(in_bytes as f64 / v / 1e6);
        }
    }
    let mbs: Vec<f64> = t.into_iter().map(median).collect();
    println!(
        "\nfreeze: {n} segments of 64 MiB, ratio {ratio:.2}, median of {FREEZE_ROUNDS} alternated rounds"
    );
    println!("| variant | MB/s | ours / variant |");
    println!("|---|---:|---:|");
    let rows = [
        "wal-recorder freeze, 1 helper on the maintainer's core (read, LZ4F, check, write, fdatasync, read back, rename, unlink)",
        "same, compressing on the maintainer's loop (`compress_threads = 0`)",
        "same, 2 helpers (unpinned; this VM has 2 cores, one shared with the benchmark thread)",
        "same as the first, `verify_frames = false`",
        "`lz4 -1 -f in out && sync out`",
        "LZ4F in memory (ceiling)",
    ];
    for (row, v) in rows.iter().zip(&mbs) {
        println!("| {row} | {v:.0} | {:.2} |", mbs[0] / v);
    }
}

/// Seconds for (the lz4 command line, LZ4F in memory) on the same bytes.
fn freeze_baselines(dir: &Path, copies: &[Vec<u8>]) -> (f64, f64) {
    // (b) the lz4 command line, one process per segment, then sync of the output
    let cli_dir = dir.join("cli");
    std::fs::create_dir_all(&cli_dir).expect("mkdir");
    for (i, c) in copies.iter().enumerate() {
        std::fs::write(cli_dir.join(format!("{i}.wal")), c).expect("write");
    }
    let t = Instant::now();
    for i in 0..copies.len() {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "lz4 -1 -q -f {d}/{i}.wal {d}/{i}.wal.lz4 && sync {d}/{i}.wal.lz4",
                d = cli_dir.display()
            ))
            .status()
            .expect("lz4 command");
        assert!(st.success());
    }
    let cli = t.elapsed().as_secs_f64();

    // (c) LZ4F in memory, same bytes, same settings: the ceiling
    let t = Instant::now();
    let mut mem_out = 0;
    for c in copies {
        mem_out += compress_frame(c, 0).expect("lz4").len();
    }
    let mem = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&cli_dir).expect("cleanup");
    std::hint::black_box(mem_out);
    (cli, mem)
}

fn persist(dir: &Path, n: u64) {
    println!("\npersist: CPU of the maintainer thread per segment ({n} segments of 1 MiB)");
    println!("| backend | µs CPU per segment | wall ms | ratio to blocking |");
    println!("|---|---:|---:|---:|");
    let mut results = Vec::new();
    for backend in [BackendChoice::Blocking, BackendChoice::IoUring] {
        let pdir = dir.join(format!("persist-{backend:?}"));
        std::fs::create_dir_all(&pdir).expect("mkdir");
        let mut cfg = Config::new(&pdir);
        cfg.backend = backend;
        cfg.max_segments = 10_000;
        cfg.persist_queue = 1024;
        cfg.core = second_core();
        let mut m = SegmentMaintainer::new(cfg).expect("maintainer");
        let mut q = m.take_persist_queue().expect("queue");
        let (mut seq, mut crc) = (1, 0);
        for i in 0..n {
            let s = segment(&pdir, i, 1 << 20, seq, crc);
            seq = s.last_seq() + 1;
            let b = std::fs::read(s.path()).expect("read");
            crc = wal_recorder::segment::format::get_u32(&b[s.used() as usize - 8..], 0);
            assert!(q.push(s).is_ok());
        }
        let t = Instant::now();
        m.start().expect("start");
        m.stop().expect("stop");
        let wall = t.elapsed();
        assert_eq!(get(&m.stats().persisted), n);
        let cpu = get(&m.stats().cpu_ns) as f64 / n as f64 / 1e3;
        results.push((backend, cpu, wall));
    }
    let base = results[0].1;
    for (b, cpu, wall) in results {
        println!(
            "| {b:?} | {cpu:.1} | {:.1} | {:.2} |",
            wall.as_secs_f64() * 1e3,
            cpu / base
        );
    }
}

fn idle(dir: &Path) {
    println!("\nidle: CPU of a maintainer with nothing to do, 3 s each");
    println!("| max sleep | maintainer CPU % of a core | bare `sleep(max)` loop CPU % (floor) |");
    println!("|---:|---:|---:|");
    for max in [
        Duration::from_micros(100),
        Duration::from_millis(1),
        Duration::from_millis(10),
    ] {
        let mut cfg = Config::new(dir);
        cfg.max_sleep = max;
        cfg.min_sleep = Duration::from_micros(50).min(max);
        cfg.core = second_core();
        let mut m = SegmentMaintainer::new(cfg).expect("maintainer");
        let t = Instant::now();
        m.start().expect("start");
        std::thread::sleep(Duration::from_secs(3));
        m.stop().expect("stop");
        let pct = get(&m.stats().cpu_ns) as f64 / t.elapsed().as_nanos() as f64 * 100.0;
        let floor = std::thread::spawn(move || {
            if let Some(core) = second_core() {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            let (c0, t) = (wal_recorder::telemetry::thread_cpu_ns(), Instant::now());
            while t.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(max);
            }
            (wal_recorder::telemetry::thread_cpu_ns() - c0) as f64 / t.elapsed().as_nanos() as f64
                * 100.0
        })
        .join()
        .expect("floor thread");
        println!("| {max:?} | {pct:.3} | {floor:.3} |");
    }
}
