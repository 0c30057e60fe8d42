//! Telemetry: counters match what the directory shows, with or without `fs1-metrics`; with
//! it, the histograms count what the counters count and export to Prometheus and `.hgrm`.

mod common;

use std::time::Duration;

use common::file_names;
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::recorder::Recorder;
use wal_recorder::telemetry::{Hist, MetricsSnapshot};

const SEG: u64 = 64 * 1024;

/// Records 20 000 events (about 25 segments) with limits (3 hot, 4 cold), closes, and
/// returns the metrics read after the close.
fn scripted_run(dir: &std::path::Path, cfg: Option<Config>) -> MetricsSnapshot {
    let mut c = cfg.unwrap_or_else(|| Config::new(dir));
    c.segment_size = SEG;
    c.max_segments = 3;
    c.max_compressed_segments = 4;
    c.sync_interval = Duration::from_millis(1);
    let mut rec = Recorder::open(dir, c).unwrap();
    for _ in 0..20_000 {
        let seq = rec.last_seq() + 1;
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.shutdown().unwrap();
    rec.metrics()
}

#[test]
fn counters_match_what_the_directory_shows() {
    let dir = tempfile::tempdir().unwrap();
    let m = scripted_run(dir.path(), None).counters;
    let names = file_names(dir.path());
    let hot = names.iter().filter(|n| n.ends_with(".wal")).count() as u64;
    let cold = names.iter().filter(|n| n.ends_with(".wal.lz4")).count() as u64;
    let segments = m.rollovers + 1; // every segment the writer used
    assert_eq!((hot, cold), (3, 4));
    assert_eq!((m.hot, m.cold), (hot, cold));
    assert_eq!(m.persisted, segments);
    assert_eq!(m.frozen, segments - hot, "hot to cold transitions");
    assert_eq!(m.freed, segments - hot - cold, "cold deletions");
    assert_eq!(
        m.compress_failures + m.fsync_failures + m.persist_failures,
        0
    );
    assert!(m.bytes_in > m.bytes_out && m.bytes_out > 0);
    assert_eq!((m.last_seq, m.durable_seq), (20_000, 20_000));
    let prom = MetricsSnapshot {
        counters: m.clone(),
        ..Default::default()
    }
    .to_prometheus();
    assert!(prom.contains(&format!("\nwal_segments_frozen_total {}\n", m.frozen)));
    assert!(prom.contains(&format!("\nwal_segments_freed_total {}\n", m.freed)));
    assert!(prom.contains("# TYPE wal_durable_seq gauge\nwal_durable_seq 20000\n"));
}

#[test]
fn injected_failures_raise_the_failure_counter() {
    use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
    use wal_recorder::io::{OpCode, Target};
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.add(Rule {
        code: OpCode::Write,
        target: Target::Tmp,
        nth: 0,
        count: 1,
        effect: Effect::Fail(libc::ENOSPC),
    });
    let mut cfg = Config::new(dir.path());
    cfg.fault_plan = Some(plan);
    let m = scripted_run(dir.path(), Some(cfg)).counters;
    assert_eq!(m.compress_failures, 1);
    assert_eq!(m.enospc, 1);
    assert!(wal_recorder::logdir::verify(dir.path()).unwrap().ok);
}

#[cfg(feature = "fs1-metrics")]
#[test]
fn histograms_count_what_the_counters_count_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let m = scripted_run(dir.path(), None);
    let run_ns = started.elapsed().as_nanos() as u64;
    let count = |h| m.percentiles(h).unwrap()[5];
    assert_eq!(count(Hist::Close), m.counters.persisted);
    assert_eq!(count(Hist::Compress), m.counters.frozen);
    assert_eq!(count(Hist::CompressThroughput), m.counters.frozen);
    assert_eq!(count(Hist::Rollover), m.counters.rollovers);
    assert!(count(Hist::Fdatasync) >= m.counters.persisted);
    assert!(count(Hist::Loop) > 0);
    // The latencies are nanoseconds of this run: none is zero, none longer than the run
    // (a unit or clock mix-up would break either).
    for h in [Hist::Close, Hist::Fdatasync, Hist::Rollover] {
        let [p50, .., max, _] = m.percentiles(h).unwrap();
        assert!(
            p50 > 0 && max <= run_ns,
            "{h:?}: p50 {p50} ns, max {max} ns, run {run_ns} ns"
        );
    }

    let prom = m.to_prometheus();
    assert!(prom.contains("# TYPE wal_close_latency_seconds summary"));
    assert!(prom.contains(&format!(
        "wal_close_latency_seconds_count {}",
        m.counters.persisted
    )));
    assert!(prom.contains("wal_compress_throughput_bytes_per_second{quantile=\"0.5\"}"));
    for line in prom.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad sample line {line}"));
    }

    let hgrm = m.to_hgrm(Hist::Close, 1000.0);
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(hgrm.contains(&format!("Total count    = {:12}", m.counters.persisted)));
}

#[cfg(not(feature = "fs1-metrics"))]
#[test]
fn without_the_feature_there_are_counters_and_no_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let m = scripted_run(dir.path(), None);
    assert!(m.counters.persisted > 0);
    assert_eq!(m.percentiles(Hist::Close), None);
    assert!(!m.to_prometheus().contains("_seconds"));
    assert_eq!(std::mem::size_of::<wal_recorder::telemetry::Stamp>(), 0);
}
