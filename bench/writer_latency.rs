//! Writer latency through the `Recorder`, paced at a fixed rate with coordinated-omission
//! correction (each append's latency is measured from its intended start time), to show what
//! syncing the active segment costs the writer. Variants, same stream, same run:
//!
//! - `no-timer-sync`: the maintainer never syncs the active segment (the floor here);
//! - `timer-sync` (the default): every 5 ms the maintainer syncs the completed pages only;
//! - `idle-only-sync` (`sync_while_busy = false`): the maintainer syncs the active segment
//!   only after the writer has been idle for a whole interval;
//! - `sync-every-1000`: the writer calls `sync()` every 1000 appends, cleaning the page it is
//!   filling; the next store to it takes a write-protect fault. The time spent inside
//!   `sync()` itself is not counted, only the appends.
//! - `idle-only-sync-archive` (with `--features archive`): `idle-only-sync` with every cold
//!   segment uploaded to a `file://` archive by the archiver thread (on the maintainer's
//!   core), to show what the archive tier costs the writer.
//!
//! `BENCH_SEGMENT_SIZE` overrides the segment size (default 64 MiB), so that a run freezes
//! (and archives) many segments.
//! Run: `scripts/bench-writer.sh [records] [rate/s]`.

use std::time::{Duration, Instant};

use wal_recorder::config::Config;
use wal_recorder::recorder::Recorder;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let records: u64 = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let rate: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let two = core_affinity::get_core_ids().is_some_and(|c| c.len() >= 2);
    if two {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    }
    let base = std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into());
    println!(
        "writer latency: {records} appends of 64 B at {rate}/s, ns from the intended start (fs1-metrics: {})",
        cfg!(feature = "fs1-metrics")
    );
    println!(
        "| variant | p50 | p99 | p99.9 | p99.99 | max | p99.9 / floor | p99.99 / floor | writer page faults |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut floor = None;
    let all = [
        "no-timer-sync",
        "timer-sync",
        "idle-only-sync",
        "sync-every-1000",
        "idle-only-sync-archive",
    ];
    let chosen = std::env::var("BENCH_VARIANTS").unwrap_or_default();
    for variant in all {
        if !chosen.is_empty() && !chosen.split(',').any(|c| c == variant) {
            continue;
        }
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let mut cfg = Config::new(dir.path());
        cfg.core = two.then_some(1);
        cfg.max_segments = 4;
        cfg.max_compressed_segments = 4;
        if let Some(size) = std::env::var("BENCH_SEGMENT_SIZE")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            cfg.segment_size = size;
        }
        if variant.starts_with("idle-only-sync") {
            cfg.sync_while_busy = false;
        }
        // The archive's directory; unused by the other variants.
        #[cfg_attr(not(feature = "archive"), allow(unused_variables))]
        let store = tempfile::tempdir_in(&base).expect("tempdir");
        if variant.ends_with("-archive") {
            #[cfg(feature = "archive")]
            {
                let mut ac = wal_recorder::archive::ArchiveConfig::new(format!(
                    "file://{}",
                    store.path().display()
                ));
                ac.core = cfg.core;
                cfg.archive = Some(ac);
            }
            #[cfg(not(feature = "archive"))]
            {
                println!("| {variant} | needs --features archive |");
                continue;
            }
        }
        if variant == "no-timer-sync" {
            cfg.sync_interval = Duration::from_secs(10);
        }
        let mut rec = Recorder::open(dir.path(), cfg).expect("open");
        while rec.prepared_ready() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut lat = vec![1u64; records as usize]; // touched now: its faults are not counted
        lat.clear();
        let faults_before = minor_faults();
        let period = Duration::from_nanos(1_000_000_000 / rate);
        let start = Instant::now();
        let mut intended = start;
        for i in 0..records {
            while Instant::now() < intended {
                std::hint::spin_loop();
            }
            let seq = i + 1;
            rec.append_with(64, |b| wal_recorder::event::fill(seq, b))
                .expect("append");
            lat.push(intended.elapsed().as_nanos() as u64);
            intended += period;
            if variant == "sync-every-1000" && i % 1000 == 999 {
                rec.sync().expect("sync");
                intended = Instant::now().max(intended); // the sync's own time is not counted
            }
        }
        let faults = minor_faults() - faults_before;
        let uploaded = rec.metrics().counters.archive.uploaded;
        let stalls = rec.writer_stats().stalls;
        rec.close().expect("close");
        if variant.ends_with("-archive") {
            eprintln!("{variant}: {uploaded} segments uploaded during the run");
        }
        if stalls > 0 {
            eprintln!("{variant}: {stalls} writer stalls (no prepared segment at rollover)");
        }
        lat.sort_unstable();
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        let (p999, p9999) = (q(0.999), q(0.9999));
        let (f999, f9999) = *floor.get_or_insert((p999, p9999));
        println!(
            "| {variant} | {} | {} | {p999} | {p9999} | {} | {:.2} | {:.2} | {faults} |",
            q(0.5),
            q(0.99),
            lat[lat.len() - 1],
            p999 as f64 / f999 as f64,
            p9999 as f64 / f9999 as f64
        );
    }
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
