//! `walctl record`: the main job. Writes the synthetic trading-event stream (docs/EVENTS.md)
//! through a `Recorder` with its maintainer running, the writer on core 0 and the maintainer
//! on core 1 when there are two, and reports what happened.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use wal_recorder::config::{Config, WritePath};
use wal_recorder::maintainer::MaintainerStats;
use wal_recorder::recorder::Recorder;

use super::lag::LagTracker;
use super::latency::Histogram;
use super::CmdResult;

#[derive(clap::Args)]
pub struct RecordArgs {
    /// Log directory (created if missing; an existing log is recovered and continued)
    dir: PathBuf,
    /// Records to append
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Payload bytes per record (64 = one trading event; at most what one segment holds)
    #[arg(long, default_value = "64", value_parser = super::units::parse_size)]
    record_size: u64,
    /// Segment file size (4K..=4G; suffixes K, M, G, KiB, MB, ...)
    #[arg(long, default_value = "64M", value_parser = super::units::parse_size)]
    segment_size: u64,
    /// Hot segments kept before the oldest is compressed
    #[arg(long, default_value_t = 8)]
    max_segments: usize,
    /// Compressed segments kept before the oldest is deleted
    #[arg(long, default_value_t = 64)]
    max_compressed: usize,
    /// Staged: the longest a record waits for a drain to start (continuous drain) or the
    /// time between drains (timed); Direct: the time between syncs. Milliseconds, or with a
    /// unit (500us, 2ms; at least 1us, at most 1s)
    #[arg(long, default_value = "1", value_parser = super::units::parse_millis)]
    sync_interval_ms: Duration,
    /// Staged: `continuous` (group commit: the next drain starts when the previous one's
    /// fdatasync completed) or `timed` (one drain per --sync-interval-ms)
    #[arg(long, default_value = "continuous", value_parser = ["continuous", "timed"])]
    drain: String,
    /// Continuous drain: least time between drain starts, and the idle maintainer's longest
    /// look for new records (200us default; smaller: lower lag, more maintainer CPU)
    #[arg(long, value_parser = super::units::parse_millis)]
    drain_gap: Option<Duration>,
    /// Appends per second, paced; latency is measured from each append's intended start
    /// (0: as fast as possible)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Where the writer's memory lives: `staged` (tmpfs buffers drained to disk) or
    /// `direct` (the segment file mapped)
    #[arg(long, default_value = "staged", value_parser = ["staged", "direct"])]
    write_path: String,
    /// Staged: drain with O_DIRECT writes from the staging pages (`false`: buffered writes)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    direct_io: bool,
    /// Staged: write zeros over each new segment file before use (`false`: fallocate only)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    zero_fill: bool,
    /// A new log's records carry their time (format version 2); an existing log keeps the
    /// format of its last segment (`false`: version 1, 8 bytes less per record)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    record_time: bool,
    /// tmpfs directory for the staging buffers
    #[arg(long, default_value = "/dev/shm")]
    staging_dir: PathBuf,
    /// Disk budget (hot, prepared, tmp and cold segments; suffixes K, M, G, ...): retention
    /// deletes the oldest cold segments to hold it
    #[arg(long, value_parser = super::units::parse_size)]
    max_disk_bytes: Option<u64>,
    /// Threads compressing freezes (nice 10; 0: on the maintainer's loop; default: 1
    /// up to four cores, a quarter of them above)
    #[arg(long)]
    compress_threads: Option<usize>,
    /// Stop appending after this many seconds, even if records remain
    #[arg(long)]
    seconds: Option<f64>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
    /// Print `appended <seq> durable <seq>` to stderr at least every 100 ms
    #[arg(long)]
    progress: bool,
    /// Tests: store the sequence number of every append, once it returned, in this file
    /// (a mapped u64, little-endian), so that a test that kills the process knows exactly
    /// how far it had appended
    #[arg(long, hide = true)]
    report_appended: Option<PathBuf>,
    /// Write metrics.prom (Prometheus text) and one `<histogram>_us.hgrm` per histogram (HdrHistogram
    /// percentile distribution, microseconds) into this directory (needs fs1-metrics)
    #[arg(long, hide = !cfg!(feature = "fs1-metrics"))]
    metrics_dir: Option<PathBuf>,
    /// Archive cold segments to this URL (s3://bucket/prefix or file:///path) before
    /// retention deletes them; credentials and endpoint from the AWS_* environment
    /// (needs the `archive` feature)
    #[arg(long, hide = !cfg!(feature = "archive"))]
    archive: Option<String>,
    /// Ship the records to followers (`walctl follow`) connecting to HOST:PORT (port 0: any;
    /// the address is printed); needs the `replication` feature
    #[arg(long, value_name = "HOST:PORT", hide = !cfg!(feature = "replication"))]
    serve: Option<String>,
    #[command(flatten)]
    security: super::replicate::SecurityArgs,
    /// Followers that must hold a record durably before it counts as replicated
    #[arg(long, default_value_t = 1, hide = !cfg!(feature = "replication"))]
    min_replicas: usize,
    /// With --serve: before the first append, wait at most this many seconds for
    /// --min-replicas followers to connect (default: start at once)
    #[arg(long, value_name = "SECS", hide = !cfg!(feature = "replication"))]
    await_followers: Option<f64>,
    /// With --serve: at the end, wait at most this many seconds for the connected followers
    /// to hold every record durably
    #[arg(long, default_value_t = 10.0, hide = !cfg!(feature = "replication"))]
    replicate_timeout: f64,
}

/// ` replicated <seq>` for the progress lines of a recorder that serves followers.
fn replicated_part(rec: &Recorder) -> String {
    #[cfg(feature = "replication")]
    if rec.replication().is_some() {
        return format!(" replicated {}", rec.replicated_seq());
    }
    let _ = rec;
    String::new()
}

/// The recorder's `replicated_seq` (one atomic load: called on the writer's loop).
fn replicated_seq(rec: &Recorder) -> u64 {
    #[cfg(feature = "replication")]
    return rec.replicated_seq();
    #[cfg(not(feature = "replication"))]
    {
        let _ = rec;
        0
    }
}

/// Whether the recorder serves followers.
fn serving(rec: &Recorder) -> bool {
    #[cfg(feature = "replication")]
    return rec.replication().is_some();
    #[cfg(not(feature = "replication"))]
    {
        let _ = rec;
        false
    }
}

/// With followers connected, waits (at most `timeout_s`) for them to hold `last_seq`.
fn wait_replicated(rec: &Recorder, last_seq: u64, timeout_s: f64) {
    #[cfg(feature = "replication")]
    if let Some(st) = rec.replication() {
        if st.followers.iter().any(|f| f.connected) {
            let timeout = Duration::from_secs_f64(timeout_s.max(0.0));
            if let Err(e) = rec.wait_replicated(last_seq, timeout) {
                eprintln!(
                    "walctl: replicated up to {} of {last_seq}: {e}",
                    rec.replicated_seq()
                );
            }
        }
    }
    let _ = (rec, last_seq, timeout_s);
}

/// Why health is Degraded, in words.
fn degraded_why(s: &MaintainerStats) -> String {
    let mut why = Vec::new();
    if s.hot_backlog_degraded.get() {
        why.push(format!(
            "hot backlog: {} segments beyond --max-segments waiting to be compressed",
            s.hot_backlog_segments.get()
        ));
    }
    if s.pending_retries.get() > 0 {
        why.push(format!(
            "{} failed operations being retried",
            s.pending_retries.get()
        ));
    }
    if s.budget_holds_next.get() {
        why.push(
            "the disk budget holds the next segment back until freezes and deletes make room"
                .into(),
        );
    }
    if s.over_budget.get() {
        why.push(format!(
            "disk budget exceeded by {} bytes",
            s.budget_excess_bytes.get()
        ));
    }
    if s.scrub_corruptions.get() > 0 {
        why.push(format!(
            "scrub found {} damaged segments",
            s.scrub_corruptions.get()
        ));
    }
    match why.is_empty() {
        true => "cause cleared".into(),
        false => why.join("; "),
    }
}

fn counters(s: &MaintainerStats) -> serde_json::Value {
    let g = wal_recorder::maintainer::Counter::get;
    json!({
        "persisted": g(&s.persisted), "frozen": g(&s.frozen), "freed": g(&s.freed),
        "compress_failures": g(&s.compress_failures), "persist_failures": g(&s.persist_failures),
        "unlink_failures": g(&s.unlink_failures), "fsync_failures": g(&s.fsync_failures),
        "enospc": g(&s.enospc), "bytes_in": g(&s.bytes_in), "bytes_out": g(&s.bytes_out),
        "fell_back_to_blocking": s.fell_back.get(),
        "compress_threads": g(&s.compress_threads),
        "freeze_acceleration": g(&s.freeze_acceleration),
        "accelerated_freezes": g(&s.accelerated_freezes),
        "cpu_ns": g(&s.cpu_ns),
        "stall_causes": { "no_free_buffer": g(&s.stall_no_free_buffer),
                          "preparing": g(&s.stall_preparing),
                          "prepare_retry": g(&s.stall_prepare_retry),
                          "maintainer_late": g(&s.stall_maintainer_late),
                          "budget": g(&s.stall_budget) },
    })
}

/// The recorder's configuration from the options, checked, or the usage error (exit 2).
/// Values over a limit are used at the limit, with a warning naming the value used.
fn config(a: &RecordArgs) -> Result<Config, String> {
    if a.metrics_dir.is_some() && !cfg!(feature = "fs1-metrics") {
        return Err("--metrics-dir needs a build with --features fs1-metrics".into());
    }
    if a.archive.is_some() && !cfg!(feature = "archive") {
        return Err("--archive needs a build with --features archive".into());
    }
    if a.serve.is_some() && !cfg!(feature = "replication") {
        return Err("--serve needs a build with --features replication".into());
    }
    if a.sync_interval_ms.is_zero() {
        return Err("--sync-interval-ms must be at least 1us".into());
    }
    if a.dir.exists() && !a.dir.is_dir() {
        return Err(format!(
            "{}: exists and is not a directory",
            a.dir.display()
        ));
    }
    let mut cfg = Config::new(&a.dir);
    cfg.segment_size = a.segment_size;
    cfg.max_segments = a.max_segments;
    cfg.max_compressed_segments = a.max_compressed;
    cfg.sync_interval = a.sync_interval_ms;
    cfg.continuous_drain = a.drain == "continuous";
    if let Some(gap) = a.drain_gap {
        cfg.drain_gap = gap;
    }
    cfg.staging_dir = a.staging_dir.clone();
    cfg.zero_fill = a.zero_fill;
    cfg.record_time = a.record_time;
    cfg.direct_io = a.direct_io;
    cfg.max_disk_bytes = a.max_disk_bytes;
    if let Some(n) = a.compress_threads {
        cfg.compress_threads = n;
    }
    if a.write_path == "direct" {
        cfg.write_path = WritePath::Direct;
    }
    #[cfg(feature = "archive")]
    if let Some(url) = &a.archive {
        cfg.archive = Some(wal_recorder::archive::ArchiveConfig::new(url));
    }
    #[cfg(feature = "replication")]
    if let Some(serve) = &a.serve {
        let listen = super::replicate::parse_addr(serve)?;
        let mut rc =
            wal_recorder::replication::ReplicationConfig::new(listen, a.security.security()?);
        rc.min_replicas = a.min_replicas;
        cfg.replication = Some(rc);
    }
    let checked = cfg.clone().validated().map_err(|e| match e {
        wal_recorder::Error::Config(why) => why,
        other => other.to_string(),
    })?;
    let framing = wal_recorder::segment::format::Framing::Timed; // the smaller of the two
    let max = framing.max_payload(checked.segment_size) as u64;
    if a.record_size > max {
        return Err(format!(
            "--record-size {} does not fit in a segment of {} bytes (at most {max})",
            a.record_size, checked.segment_size
        ));
    }
    let clamped = [
        (
            "--max-segments",
            cfg.max_segments as u64,
            checked.max_segments as u64,
        ),
        (
            "--max-compressed",
            cfg.max_compressed_segments as u64,
            checked.max_compressed_segments as u64,
        ),
        (
            "--compress-threads",
            cfg.compress_threads as u64,
            checked.compress_threads as u64,
        ),
        (
            "--sync-interval-ms (us)",
            cfg.sync_interval.as_micros() as u64,
            checked.sync_interval.as_micros() as u64,
        ),
    ];
    for (name, asked, used) in clamped {
        if asked != used {
            eprintln!("walctl: warning: {name} {asked} is over the limit; using {used}");
        }
    }
    Ok(checked)
}

pub fn run(a: RecordArgs) -> CmdResult {
    // Every option is checked before anything is created.
    let mut cfg = match config(&a) {
        Ok(cfg) => cfg,
        Err(why) => {
            eprintln!("walctl: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&a.dir).map_err(|e| wal_recorder::Error::io("mkdir", &a.dir, e))?;
    let two_cores = core_affinity::get_core_ids().is_some_and(|c| c.len() >= 2);
    if two_cores {
        cfg.core = Some(1);
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    }
    #[cfg(feature = "replication")]
    if cfg.replication.is_some() {
        super::replicate::log_to_stderr();
    }
    let mut rec = Recorder::open(&a.dir, cfg)?;
    #[cfg(feature = "replication")]
    if let Some(s) = rec.replication() {
        eprintln!("walctl: serving {} epoch {}", s.listen, s.epoch);
        if let Some(secs) = a.await_followers {
            let until = std::time::Instant::now() + Duration::from_secs_f64(secs.max(0.0));
            let connected = || {
                let st = rec.replication().expect("serving");
                st.followers.iter().filter(|f| f.connected).count()
            };
            while connected() < s.min_replicas && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            let connected = connected();
            eprintln!("walctl: {connected} followers connected");
        }
    }
    let first_seq = rec.last_seq() + 1;
    let clock = quanta::Clock::new();
    let mut hist = Histogram::new();
    // Sample the lag of every record at low rates, of every 64th at high ones.
    let mut lag = LagTracker::new(if a.rate > 0 && a.rate <= 100_000 {
        1
    } else {
        64
    });
    // Append → durable on the required followers, sampled as the durability lag is.
    let mut rlag = serving(&rec).then(|| {
        LagTracker::new(if a.rate > 0 && a.rate <= 100_000 {
            1
        } else {
            64
        })
    });
    let progress_every = Duration::from_millis(50).as_nanos() as u64;
    let period_ns = if a.rate > 0 { 1e9 / a.rate as f64 } else { 0.0 };
    let faults_before = thread_faults();
    let start = clock.raw();
    let mut last_progress = start;
    let mut seq = first_seq;
    let reported = a
        .report_appended
        .as_deref()
        .map(AppendedReport::create)
        .transpose()?;
    // The first error: the run stops appending, but still closes the log (drain, retention),
    // reports, and exits 1.
    let mut error: Option<String> = None;
    let stop_after = a.seconds.map(|s| (s * 1e9) as u64);
    for i in 0..a.records {
        let t0 = clock.raw();
        // Paced: wait for this append's intended start and measure from it, so a stall
        // counts for every append it delayed (no coordinated omission).
        let due = (i as f64 * period_ns) as u64;
        let mut waited = clock.delta_as_nanos(start, t0);
        while waited < due {
            lag.durable(rec.durable_seq(), waited);
            if let Some(r) = rlag.as_mut() {
                r.durable(replicated_seq(&rec), waited);
            }
            waited = clock.delta_as_nanos(start, clock.raw());
        }
        let s = seq;
        if let Err(e) = rec.append_with(a.record_size as usize, |b| wal_recorder::event::fill(s, b))
        {
            error = Some(e.to_string());
            break;
        }
        if let Some(r) = &reported {
            r.store(s);
        }
        let t1 = clock.raw();
        let now = clock.delta_as_nanos(start, t1);
        hist.record(match a.rate {
            0 => clock.delta_as_nanos(t0, t1),
            _ => now.saturating_sub(due),
        });
        lag.appended(s, now);
        lag.durable(rec.durable_seq(), now);
        if let Some(r) = rlag.as_mut() {
            r.appended(s, now);
            r.durable(replicated_seq(&rec), now);
        }
        seq += 1;
        if i % 1024 == 0 {
            if stop_after.is_some_and(|limit| now >= limit) {
                break;
            }
            if a.progress && clock.delta_as_nanos(last_progress, t1) >= progress_every {
                let m = rec.maintainer_stats();
                eprintln!(
                    "appended {} durable {}{} health {:?} stalls {} (drained-buffer {} preparing {} prepare-retry {} maintainer-late {} budget {})",
                    seq - 1,
                    rec.durable_seq(),
                    replicated_part(&rec),
                    rec.health(),
                    rec.writer_stats().stalls,
                    m.stall_no_free_buffer.get(),
                    m.stall_preparing.get(),
                    m.stall_prepare_retry.get(),
                    m.stall_maintainer_late.get(),
                    m.stall_budget.get(),
                );
                last_progress = t1;
            }
        }
    }
    let secs = clock.delta(start, clock.raw()).as_secs_f64();
    let faults = thread_faults() - faults_before;
    let last_seq = seq - 1;
    // The lag of the last records: wait (bounded) for the drains to cover them.
    let wait_from = std::time::Instant::now();
    while lag.outstanding() > 0 && wait_from.elapsed() < Duration::from_secs(30) {
        lag.durable(rec.durable_seq(), clock.delta_as_nanos(start, clock.raw()));
        std::hint::spin_loop();
    }
    wait_replicated(&rec, last_seq, a.replicate_timeout);
    if let Some(r) = rlag.as_mut() {
        r.durable(
            replicated_seq(&rec),
            clock.delta_as_nanos(start, clock.raw()),
        );
    }
    if a.progress {
        eprintln!(
            "appended {} durable {}{}",
            last_seq,
            rec.durable_seq(),
            replicated_part(&rec)
        );
    }
    let writer = rec.writer_stats();
    let recovered = rec.recovered().clone();
    let recovery: Vec<String> = recovered.actions.iter().map(ToString::to_string).collect();
    let open = &recovered.report;
    let open_json = json!({
        "summarized_segments": open.summarized, "read_segments": open.read,
        "summary_rewritten": open.summary_rewritten,
        "summary_conflict": open.summary_conflict.as_ref().map(|p| p.display().to_string()),
        "recovery_ms": open.elapsed.as_secs_f64() * 1e3,
    });
    let open_line = format!(
        "open: {} sealed segments walked by their summaries, {} read, recovery {:.1} ms",
        open.summarized,
        open.read,
        open.elapsed.as_secs_f64() * 1e3
    );
    // Closing drains the maintainer: every record is persisted, retention applied.
    if let Err(e) = rec.sync() {
        error.get_or_insert(e.to_string());
    }
    let health = match rec.health() {
        wal_recorder::Health::Degraded => {
            #[allow(unused_mut)] // extended with the replication feature
            let mut why = degraded_why(rec.maintainer_stats());
            #[cfg(feature = "replication")]
            if let Some(p) = rec.replication().and_then(|s| s.problem) {
                why = format!("{why}; replication: {p}");
            }
            format!("Degraded ({why})")
        }
        h => format!("{h:?}"),
    };
    if let Err(e) = rec.shutdown() {
        error.get_or_insert(e.to_string());
    }
    let durable_at_end = rec.durable_seq();
    // What retention left: `verify` shows fewer records than were appended otherwise.
    let retained_from = first_retained(&a.dir);
    let maintainer_json = counters(rec.maintainer_stats());
    let snapshot = rec.metrics();
    if let Some(dir) = &a.metrics_dir {
        write_metrics(dir, &snapshot)?;
    }
    if a.progress {
        eprintln!(
            "appended {last_seq} durable {durable_at_end}{}",
            replicated_part(&rec)
        );
    }
    let m = &maintainer_json;
    let bytes_in = m["bytes_in"].as_u64().unwrap_or(0);
    let bytes_out = m["bytes_out"].as_u64().unwrap_or(0);
    let ratio = (bytes_out > 0).then(|| bytes_in as f64 / bytes_out as f64);
    let appended = last_seq + 1 - first_seq;
    let rate = appended as f64 / secs;
    let q = |p: f64| hist.quantile(p);
    if a.json {
        #[allow(unused_mut)] // extended with the replication feature
        let mut v = json!({
            "dir": a.dir, "records": appended, "record_size": a.record_size, "error": error,
            "first_seq": first_seq, "last_seq": last_seq, "durable_seq": durable_at_end,
            "retained_first_seq": retained_from,
            "seconds": secs, "records_per_sec": rate,
            "latency_ns": { "p50": q(0.5), "p99": q(0.99), "p999": q(0.999),
                            "p9999": q(0.9999), "max": hist.max() },
            "maintainer": maintainer_json, "compression_ratio": ratio,
            "writer": { "rollovers": writer.rollovers, "stalls": writer.stalls,
                        "persist_ring_full": writer.persist_ring_full, "page_faults": faults },
            "rate": a.rate, "write_path": a.write_path,
            "durability_lag_ns": { "p50": lag.hist.quantile(0.5), "p99": lag.hist.quantile(0.99),
                                   "max": lag.hist.max(), "samples_dropped": lag.dropped },
            "replication_lag_ns": rlag.as_ref().map(|r| json!({
                "p50": r.hist.quantile(0.5), "p99": r.hist.quantile(0.99), "max": r.hist.max(),
                "samples_dropped": r.dropped, "unreplicated": r.outstanding() })),
            "pinned": two_cores, "recovery": recovery, "open": open_json, "health": health,
            "histograms": histograms_json(&snapshot),
            "archive": archive_json(&snapshot.counters.archive, a.archive.as_deref()),
        });
        #[cfg(feature = "replication")]
        if let Some(st) = rec.replication() {
            v["replicated_seq"] = json!(st.replicated_seq);
            v["replication"] = super::replicate::status_json(&st);
        }
        println!("{v}");
    } else {
        if open.summarized + open.read > 0 {
            eprintln!("{open_line}");
        }
        for r in &recovery {
            eprintln!("recovery: {r}");
        }
        println!(
            "appended {} records of {} B (seq {first_seq}..={last_seq}) in {secs:.3} s: {:.2} M records/s",
            appended,
            a.record_size,
            rate / 1e6
        );
        println!(
            "append latency ns: p50 {} p99 {} p99.9 {} p99.99 {} max {}",
            q(0.5),
            q(0.99),
            q(0.999),
            q(0.9999),
            hist.max()
        );
        println!(
            "maintainer: persisted {} frozen {} freed {} failures {}",
            m["persisted"],
            m["frozen"],
            m["freed"],
            m["compress_failures"].as_u64().unwrap_or(0)
                + m["persist_failures"].as_u64().unwrap_or(0)
                + m["unlink_failures"].as_u64().unwrap_or(0)
                + m["fsync_failures"].as_u64().unwrap_or(0)
        );
        match ratio {
            Some(r) => println!("compression ratio {r:.2} ({bytes_in} -> {bytes_out} bytes)"),
            None => println!("compression ratio: nothing compressed yet"),
        }
        let causes = &m["stall_causes"];
        let stall_causes = match writer.stalls {
            0 => String::new(),
            _ => format!(
                " (waiting for: {} drained buffer, {} segment being prepared, {} preparation retrying, {} busy maintainer, {} disk budget)",
                causes["no_free_buffer"], causes["preparing"], causes["prepare_retry"], causes["maintainer_late"], causes["budget"]
            ),
        };
        println!(
            "writer: {} rollovers, {} stalls{stall_causes}, {} persist-ring-full, {faults} page faults; durable_seq {durable_at_end}; health {health}; pinned {two_cores}",
            writer.rollovers, writer.stalls, writer.persist_ring_full
        );
        println!(
            "durability lag ({} path) µs: p50 {:.0} p99 {:.0} max {:.0}",
            a.write_path,
            lag.hist.quantile(0.5) as f64 / 1e3,
            lag.hist.quantile(0.99) as f64 / 1e3,
            lag.hist.max() as f64 / 1e3
        );
        match retained_from {
            Some(f) if f > 1 => println!(
                "retention: the log holds seq {f}..={last_seq}; the {} records before it were in segments retention deleted",
                f - 1
            ),
            Some(f) => println!("retention: nothing deleted; the log holds seq {f}..={last_seq}"),
            None => {}
        }
        if let Some(url) = &a.archive {
            let c = &snapshot.counters.archive;
            println!(
                "archive {url}: uploaded {} ({} bytes), already there {}, failures {}, corrupt uploads {}, backlog {}",
                c.uploaded, c.bytes, c.already_archived, c.failures, c.corrupt_uploads, c.backlog
            );
        }
        #[cfg(feature = "replication")]
        if let Some(st) = rec.replication() {
            let followers: Vec<String> = st
                .followers
                .iter()
                .map(|f| format!("{} at {} durable {}", f.name, f.addr, f.durable_seq))
                .collect();
            println!(
                "replication epoch {}: replicated_seq {} (min_replicas {}); followers: {}",
                st.epoch,
                st.replicated_seq,
                st.min_replicas,
                match followers.is_empty() {
                    true => "none".to_string(),
                    false => followers.join(", "),
                }
            );
        }
    }
    match error {
        Some(e) => {
            eprintln!("walctl: {e} (every record up to durable_seq {durable_at_end} is on disk)");
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The first record the log in `dir` still holds (`None` if it cannot be read).
fn first_retained(dir: &std::path::Path) -> Option<u64> {
    let mut r = wal_recorder::logdir::LogReader::open_dir(dir).ok()?;
    let mut buf = Vec::new();
    r.next_record(&mut buf).ok()?.map(|info| info.seq)
}

/// Page faults (minor and major) of the calling thread so far.
fn thread_faults() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (ru.ru_minflt + ru.ru_majflt) as u64
}

/// The archive counters, or null without an archive.
fn archive_json(
    c: &wal_recorder::telemetry::ArchiveCounters,
    url: Option<&str>,
) -> serde_json::Value {
    let Some(url) = url else {
        return serde_json::Value::Null;
    };
    json!({
        "url": url, "uploaded": c.uploaded, "already_archived": c.already_archived,
        "bytes": c.bytes, "failures": c.failures, "corrupt_uploads": c.corrupt_uploads,
        "local_errors": c.local_errors, "backlog": c.backlog, "backlog_bytes": c.backlog_bytes,
        "retention_waiting": c.waiting,
    })
}

/// `{"loop_latency_ns": {"p50", "p90", "p99", "p999", "max", "count"}, ...}`; empty without
/// fs1-metrics.
fn histograms_json(m: &wal_recorder::telemetry::MetricsSnapshot) -> serde_json::Value {
    use wal_recorder::telemetry::{Hist, HISTOGRAMS};
    let all = [
        Hist::Loop,
        Hist::Close,
        Hist::Fdatasync,
        Hist::Compress,
        Hist::CompressThroughput,
        Hist::Rollover,
        Hist::PreparedWait,
    ];
    let mut map = serde_json::Map::new();
    for h in all {
        if let Some([p50, p90, p99, p999, max, count]) = m.percentiles(h) {
            map.insert(
                HISTOGRAMS[h as usize].0.to_string(),
                json!({"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": max, "count": count}),
            );
        }
    }
    serde_json::Value::Object(map)
}

#[cfg(feature = "fs1-metrics")]
fn write_metrics(
    dir: &std::path::Path,
    m: &wal_recorder::telemetry::MetricsSnapshot,
) -> Result<(), wal_recorder::Error> {
    use wal_recorder::telemetry::{Hist, HISTOGRAMS};
    let io = |p: &std::path::Path, e| wal_recorder::Error::io("write", p, e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let prom = dir.join("metrics.prom");
    std::fs::write(&prom, m.to_prometheus()).map_err(|e| io(&prom, e))?;
    let mut all = vec![
        Hist::Loop,
        Hist::Close,
        Hist::Fdatasync,
        Hist::Compress,
        Hist::CompressThroughput,
        Hist::Rollover,
        Hist::PreparedWait,
    ];
    if cfg!(feature = "archive") {
        all.push(Hist::Upload);
    }
    for h in all {
        // Latencies in microseconds, the throughput in bytes per second.
        let key = HISTOGRAMS[h as usize].0;
        let (p, ratio) = match key.strip_suffix("_ns") {
            Some(name) => (dir.join(format!("{name}_us.hgrm")), 1000.0),
            None => (dir.join(format!("{key}.hgrm")), 1.0),
        };
        std::fs::write(&p, m.to_hgrm(h, ratio)).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

#[cfg(not(feature = "fs1-metrics"))]
fn write_metrics(
    _: &std::path::Path,
    _: &wal_recorder::telemetry::MetricsSnapshot,
) -> Result<(), wal_recorder::Error> {
    Ok(())
}

/// `--report-appended`: the last appended sequence number in a shared mapping, which outlives
/// a SIGKILL of this process (a store per append, no system call).
struct AppendedReport {
    seq: &'static std::sync::atomic::AtomicU64,
}

impl AppendedReport {
    fn create(path: &std::path::Path) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .and_then(|f| f.set_len(4096).map(|()| f))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: a shared mapping of the whole (4 KiB) file; it is never unmapped, so the
        // 'static reference below stays valid for the life of the process.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "{}: mmap: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: page-aligned, 8 bytes in bounds, mapped for the rest of the process.
        let seq = unsafe { &*(ptr as *const std::sync::atomic::AtomicU64) };
        Ok(AppendedReport { seq })
    }

    fn store(&self, seq: u64) {
        self.seq
            .store(seq.to_le(), std::sync::atomic::Ordering::Release);
    }
}
