//! `walctl`: inspect, verify and (with the recorder) write wal-recorder logs.
//! Exit codes (contract 8): 0 success, 1 corruption or error, 2 bad usage.

#[cfg(feature = "archive")]
mod archive;
mod lag;
mod latency;
mod record;
mod replicate;
mod stop_signal;
mod tail;
mod units;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use wal_recorder::event::TradeEvent;
use wal_recorder::logdir::{list_dir, verify, LogReader, Tier};
use wal_recorder::segment::{SegmentEnd, SegmentReader};

#[derive(Parser)]
#[command(
    name = "walctl",
    version,
    about = "Record, inspect, verify, tail and repair wal-recorder logs",
    disable_help_subcommand = true,
    after_help = "Exit codes: 0 success; 1 corruption, a log that does not verify, or an I/O \
error; 2 bad usage (an unknown option, a value out of range, a sequence range the log does \
not hold).\nSizes take K, M, G, T (powers of 1024) or KB, MB, ... (powers of 1000); \
segments are 4K..=4G."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a synthetic trading-event stream through a Recorder, report throughput,
    /// append latency and the maintainer's work
    Record(Box<record::RecordArgs>),
    /// Read every segment in order and check checksums, chain and sequence
    Verify {
        /// Log directory, one segment file, or an archive URL (s3://bucket/prefix,
        /// file:///path; needs the `archive` feature)
        path: PathBuf,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
        /// tmpfs directory where a Staged recorder of this log keeps its staging buffers
        #[arg(long, default_value = wal_recorder::constants::DEFAULT_STAGING_DIR)]
        staging_dir: PathBuf,
    },
    /// List the segments of a directory (exit 1 if the log does not verify)
    Ls {
        /// Log directory
        dir: PathBuf,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print records: sequence number, length, decoded event or hex payload
    Cat {
        /// Log directory or one segment file
        path: PathBuf,
        /// First sequence number to print
        #[arg(long)]
        from: Option<u64>,
        /// Last sequence number to print
        #[arg(long)]
        to: Option<u64>,
        /// Start at the first record whose log time is at or after T (RFC 3339, e.g.
        /// 2026-12-03T09:30:00.250Z, any offset, or nanoseconds since the epoch); a log with
        /// time only
        #[arg(long, value_name = "T", value_parser = wal_recorder::logdir::parse_log_time, conflicts_with = "from")]
        since: Option<u64>,
        /// Stop before the first record whose log time is after T (same forms as --since)
        #[arg(long, value_name = "T", value_parser = wal_recorder::logdir::parse_log_time)]
        until: Option<u64>,
        /// Always print the payload as hex
        #[arg(long)]
        hex: bool,
        /// One JSON object per record (with `log_time_ns` in a log with time)
        #[arg(long)]
        json: bool,
    },
    /// Make a log the recorder refuses open again: end it at its first break, move every
    /// file after it (and a copy of a file cut at it) into DIR/quarantine/, and print what
    /// was done. Never deletes a record
    Repair {
        /// Log directory (not in use by a recorder)
        dir: PathBuf,
        /// Print what would be done, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Where the recorder kept its staging buffers (applied, or moved to quarantine,
        /// before the repair reads the disk)
        #[arg(long, default_value = wal_recorder::constants::DEFAULT_STAGING_DIR)]
        staging_dir: PathBuf,
    },
    /// Print a log's records from a sequence number (or the first, or only new ones) and,
    /// with --follow, keep printing them as a recorder in another process appends them
    Tail(tail::TailArgs),
    /// Summarise what a directory holds
    Stats {
        /// Log directory
        dir: PathBuf,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print this help, or the help of a command
    Help {
        /// The command
        command: Option<String>,
    },
    /// Upload every sealed segment of a closed log directory not archived yet
    #[cfg(feature = "archive")]
    Archive(archive::ArchiveArgs),
    /// Download the archived segments covering a sequence range into an empty directory
    #[cfg(feature = "archive")]
    Restore(archive::RestoreArgs),
    /// Follow a leader (`walctl record --serve`): receive its records into DIR, check their
    /// chain, persist them, acknowledge them; until stopped (SIGINT, SIGTERM) or --until
    #[cfg(feature = "replication")]
    Follow(replicate::FollowArgs),
    /// Make a follower's log the leader of a new epoch (stop its follower first): the old
    /// leader is fenced off, and a recorder on DIR appends and ships from there
    #[cfg(feature = "replication")]
    Promote {
        /// The follower's log directory
        dir: PathBuf,
        /// Where its follower kept its staging buffers (applied first)
        #[arg(long, default_value = wal_recorder::constants::DEFAULT_STAGING_DIR)]
        staging_dir: PathBuf,
    },
    /// Write a private CA and a certificate and key per name, for replication with mutual
    /// TLS on trial setups (production uses the site's own CA)
    #[cfg(feature = "replication")]
    Certs {
        /// Output directory
        out: PathBuf,
        /// A name to certify (repeat; default: leader, follower)
        #[arg(long = "name", default_values_t = ["leader".to_string(), "follower".to_string()])]
        names: Vec<String>,
        /// A host name or IP address the certificates are valid for, beyond localhost,
        /// 127.0.0.1 and ::1 (repeat)
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread exists, so that
    // `walctl cat DIR | head` ends quietly like other Unix tools instead of panicking.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Record(args) => record::run(*args),
        Cmd::Verify {
            path,
            json,
            staging_dir,
        } => cmd_verify(&path, json, &staging_dir),
        Cmd::Ls { dir, json } => cmd_ls(&dir, json),
        Cmd::Cat {
            path,
            from,
            to,
            since,
            until,
            hex,
            json,
        } => cmd_cat(&path, (from, to), (since, until), (hex, json)),
        Cmd::Stats { dir, json } => cmd_stats(&dir, json),
        Cmd::Tail(args) => tail::run(args),
        Cmd::Repair {
            dir,
            dry_run,
            staging_dir,
        } => cmd_repair(&dir, dry_run, &staging_dir),
        Cmd::Help { command } => cmd_help(command.as_deref()),
        #[cfg(feature = "archive")]
        Cmd::Archive(a) => archive::cmd_archive(a),
        #[cfg(feature = "archive")]
        Cmd::Restore(a) => archive::cmd_restore(a),
        #[cfg(feature = "replication")]
        Cmd::Follow(a) => replicate::run_follow(a),
        #[cfg(feature = "replication")]
        Cmd::Promote { dir, staging_dir } => replicate::run_promote(&dir, &staging_dir),
        #[cfg(feature = "replication")]
        Cmd::Certs { out, names, hosts } => replicate::run_certs(&out, &names, &hosts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("walctl: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

fn cmd_help(command: Option<&str>) -> CmdResult {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build(); // sub-commands' usage lines then start with `walctl`
    let printed = match command {
        None => cli.print_help(),
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => sub.print_help(),
            None => {
                eprintln!("walctl: no command `{name}`; `walctl --help` lists them");
                return Ok(ExitCode::from(2));
            }
        },
    };
    printed?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_repair(dir: &Path, dry_run: bool, staging_dir: &Path) -> CmdResult {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    let r = wal_recorder::recovery::repair_with(dir, dry_run, staging_dir)?;
    let verb = if dry_run { "would do" } else { "did" };
    for a in &r.actions {
        println!("{verb}: {a}");
    }
    let last = r.next_seq.saturating_sub(1);
    match (&r.dropped, r.actions.is_empty()) {
        (_, true) => println!("{}: nothing to repair", dir.display()),
        (Some(d), false) => println!(
            "{}: the log ends at sequence number {last}; dropped from {} on ({} records that \
             verify, up to {}), kept in {}/",
            dir.display(),
            d.first_seq,
            d.records,
            d.last_seq.map_or("-".to_string(), |s| s.to_string()),
            wal_recorder::recovery::QUARANTINE_DIR
        ),
        (None, false) => println!(
            "{}: the log ends at sequence number {last}; no record dropped",
            dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn seq_json(s: Option<u64>) -> serde_json::Value {
    s.map_or(serde_json::Value::Null, |v| json!(v))
}

fn cmd_verify(path: &Path, as_json: bool, staging_dir: &Path) -> CmdResult {
    let text = path.to_string_lossy();
    if text.contains("://") {
        #[cfg(feature = "archive")]
        return print_verify(&archive::verify_url(&text)?, as_json);
        #[cfg(not(feature = "archive"))]
        {
            eprintln!("walctl: verifying an archive URL needs a build with --features archive");
            return Ok(ExitCode::from(2));
        }
    }
    let mut report = verify(path)?;
    if path.is_dir() && report.segments == 0 && report.errors.is_empty() {
        report.ok = false;
        report
            .errors
            .push(format!("{}: holds no wal-recorder log", path.display()));
    }
    if path.is_dir() {
        let staged = wal_recorder::staging::staging_path(staging_dir, path)?;
        if staged.exists() {
            report.warnings.push(format!(
                "{}: staging buffers of this log exist (a recorder is running, or crashed): records appended after its last drain are there, not on disk, until the next open applies them",
                staged.display()
            ));
        }
    }
    print_verify(&report, as_json)
}

pub(crate) fn print_verify(r: &wal_recorder::logdir::VerifyReport, as_json: bool) -> CmdResult {
    if as_json {
        let v = json!({
            "ok": r.ok, "segments": r.segments, "hot": r.hot, "cold": r.cold,
            "records": r.records, "first_seq": seq_json(r.first_seq),
            "last_seq": seq_json(r.last_seq), "payload_bytes": r.payload_bytes,
            "errors": r.errors, "warnings": r.warnings,
        });
        println!("{v}");
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
        let range = match (r.first_seq, r.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".to_string(),
        };
        println!(
            "{}: {} segments ({} hot, {} cold), {} records, {range}",
            if r.ok { "ok" } else { "CORRUPT" },
            r.segments,
            r.hot,
            r.cold,
            r.records
        );
    }
    Ok(ExitCode::from(if r.ok { 0 } else { 1 }))
}

fn cmd_ls(dir: &Path, as_json: bool) -> CmdResult {
    let listing = list_dir(dir)?;
    let rows: Vec<_> = listing
        .segments
        .iter()
        .map(|seg| {
            let name = seg.path.file_name().unwrap_or_default().to_string_lossy();
            let tier = match seg.tier {
                Tier::Hot => "hot",
                Tier::Cold => "cold",
            };
            let d = describe_segment(&seg.path, seg.tier).unwrap_or_else(|e| SegmentRow {
                state: format!("error: {e}"),
                ..SegmentRow::default()
            });
            (name.into_owned(), tier, seg.file_len, d)
        })
        .collect();
    // The exit code and the problems are verify's (contract 8): a break in the chain or a
    // damaged frame is an error, what a crash leaves is a warning.
    let report = verify(dir)?;
    if as_json {
        let segments: Vec<_> = rows
            .iter()
            .map(|(name, tier, bytes, d)| {
                let t = d.times;
                json!({ "file": name, "tier": tier, "bytes": bytes,
                        "first_seq": d.first_seq, "records": d.records, "state": d.state,
                        "first_time_ns": t.map(|t| t.first), "last_time_ns": t.map(|t| t.last),
                        "max_time_ns": t.map(|t| t.max) })
            })
            .collect();
        let v = json!({
            "ok": report.ok, "segments": segments, "tmp": listing.tmp, "foreign": listing.foreign,
            "errors": report.errors, "warnings": report.warnings,
        });
        println!("{v}");
    } else {
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        // Time columns only for a log that has time (format version 2).
        let timed = rows.iter().any(|r| r.3.timed);
        let dash = || "-".to_string();
        let time = |t: Option<u64>| t.map_or_else(dash, wal_recorder::logdir::format_rfc3339);
        let times = |d: &SegmentRow| match timed {
            true => format!(
                " {:>30} {:>30}",
                time(d.times.map(|t| t.first)),
                time(d.times.map(|t| t.last))
            ),
            false => String::new(),
        };
        let head = match timed {
            true => format!(" {:>30} {:>30}", "first_time", "last_time"),
            false => String::new(),
        };
        println!(
            "{:<w$} {:>4} {:>12} {:>14} {:>10}{head}  state",
            "file", "tier", "bytes", "first_seq", "records"
        );
        for (name, tier, bytes, d) in &rows {
            let first = d.first_seq.map_or_else(dash, |s| s.to_string());
            let records = d.records.map_or_else(dash, |s| s.to_string());
            let state = &d.state;
            println!(
                "{name:<w$} {tier:>4} {bytes:>12} {first:>14} {records:>10}{}  {state}",
                times(d)
            );
        }
        for p in &listing.tmp {
            println!("{}  (temporary)", p.display());
        }
        for p in &listing.foreign {
            println!("{}  (not ours, ignored)", p.display());
        }
        for m in &report.warnings {
            eprintln!("warning: {m}");
        }
        for m in &report.errors {
            eprintln!("error: {m}");
        }
    }
    Ok(ExitCode::from(if report.ok { 0 } else { 1 }))
}

/// What `walctl ls` says of one segment.
#[derive(Default)]
struct SegmentRow {
    first_seq: Option<u64>,
    records: Option<u64>,
    state: String,
    /// Format version 2.
    timed: bool,
    /// Its records' times (none before its first record, or without time).
    times: Option<wal_recorder::segment::format::TimeRange>,
}

fn describe_segment(path: &Path, tier: Tier) -> Result<SegmentRow, wal_recorder::Error> {
    let file = std::fs::File::open(path).map_err(|e| wal_recorder::Error::io("open", path, e))?;
    let src: Box<dyn std::io::Read + Send> = match tier {
        Tier::Hot => Box::new(std::io::BufReader::new(file)),
        Tier::Cold => wal_recorder::codec::open_cold(file, path)?,
    };
    let mut r = match SegmentReader::new(src, path) {
        Ok(r) => r,
        Err(wal_recorder::Error::Corrupt {
            kind: wal_recorder::Corruption::ZeroHeader,
            ..
        }) => {
            return Ok(SegmentRow {
                records: Some(0),
                state: "prepared, unused".into(),
                ..SegmentRow::default()
            })
        }
        Err(e) => return Err(e),
    };
    let end = r.skip_to_end()?;
    let state = match end {
        SegmentEnd::Sealed(_) => "sealed".to_string(),
        SegmentEnd::Open { .. } => "open".to_string(),
        SegmentEnd::Broken { offset, kind, .. } => format!("break at {offset}: {kind}"),
    };
    Ok(SegmentRow {
        first_seq: Some(r.header().first_seq),
        records: Some(r.count()),
        state,
        timed: r.times().is_some(),
        times: r.times().filter(|_| r.count() > 0),
    })
}

fn cmd_cat(
    path: &Path,
    (from, to): (Option<u64>, Option<u64>),
    (since, until): (Option<u64>, Option<u64>),
    (hex, json): (bool, bool),
) -> CmdResult {
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            eprintln!("walctl: --from {f} is after --to {t}");
            return Ok(ExitCode::from(2));
        }
    }
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            eprintln!("walctl: --since is after --until");
            return Ok(ExitCode::from(2));
        }
    }
    if since.is_some() && !path.is_dir() {
        eprintln!("walctl: --since takes a log directory");
        return Ok(ExitCode::from(2));
    }
    // `--from` and `--since` on a directory seek (a bisection of the segments, then one
    // segment scanned).
    let opened = match (path.is_dir(), from, since) {
        (true, _, Some(t)) => LogReader::open_at_time_ns(path, t),
        (true, Some(seq), None) => LogReader::open_at(path, seq),
        (true, None, None) => LogReader::open_dir(path),
        (false, _, _) => LogReader::open_file(path),
    };
    let mut reader = match opened {
        Err(
            e
            @ (wal_recorder::Error::SeqNotFound { .. } | wal_recorder::Error::TimeNotFound { .. }),
        ) => {
            eprintln!("walctl: {e}");
            return Ok(ExitCode::from(2));
        }
        other => other?,
    };
    let mut printed = 0u64;
    let mut seen: Option<(u64, u64)> = None;
    let mut ended_early = false;
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    while let Some(info) = reader.next_record(&mut buf)? {
        seen = Some((seen.map_or(info.seq, |s| s.0), info.seq));
        if info.seq < from {
            continue;
        }
        if info.seq > to || until.is_some_and(|u| info.time.is_some_and(|t| t > u)) {
            ended_early = true;
            break;
        }
        printed += 1;
        let line = match json {
            true => tail::json_line(&info, &buf),
            false => format_record(&info, &buf, hex),
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS); // reader closed the pipe (e.g. `| head`)
        }
    }
    let _ = out.flush();
    for w in reader.warnings() {
        eprintln!("warning: {w}");
    }
    if printed == 0 && (from > 0 || to < u64::MAX || until.is_some()) {
        let held = match seen {
            Some((a, _)) if ended_early => format!("its records start at {a}"),
            Some((a, b)) => format!("it holds {a}..={b}"),
            None => "it holds no record".into(),
        };
        eprintln!(
            "walctl: no record of {} in the range asked; {held}",
            path.display()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// One record as `cat` and `tail` print it: a decoded trading event, or the payload in hex.
pub(crate) fn format_record(
    info: &wal_recorder::segment::RecordInfo,
    buf: &[u8],
    hex: bool,
) -> String {
    let head = match info.time {
        Some(t) => format!(
            "{} {} {}",
            info.seq,
            info.len,
            wal_recorder::logdir::format_rfc3339(t)
        ),
        None => format!("{} {}", info.seq, info.len),
    };
    match TradeEvent::decode(buf) {
        Some(ev) if !hex && ev.seq == info.seq => format!(
            "{head} {:?} ts={} order={} instr={} side={} px={} qty={} trader={}",
            ev.kind,
            ev.ts_ns,
            ev.order_id,
            ev.instrument,
            if ev.side == 0 { "buy" } else { "sell" },
            ev.price,
            ev.qty,
            ev.trader
        ),
        _ => format!("{head} {}", to_hex(buf)),
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cmd_stats(dir: &Path, as_json: bool) -> CmdResult {
    let listing = list_dir(dir)?;
    let (mut hot, mut cold, mut hot_bytes, mut cold_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut cold_content = 0u64;
    for s in &listing.segments {
        match s.tier {
            Tier::Hot => {
                hot += 1;
                hot_bytes += s.file_len;
            }
            Tier::Cold => {
                cold += 1;
                cold_bytes += s.file_len;
                cold_content += wal_recorder::codec::cold_content_size(&s.path)?.unwrap_or(0);
            }
        }
    }
    let ratio = (cold_bytes > 0).then(|| cold_content as f64 / cold_bytes as f64);
    let r = verify(dir)?;
    if as_json {
        let v = json!({
            "hot_segments": hot, "cold_segments": cold, "hot_bytes": hot_bytes,
            "cold_bytes": cold_bytes, "cold_uncompressed_bytes": cold_content,
            "compression_ratio": ratio, "records": r.records, "payload_bytes": r.payload_bytes,
            "first_seq": seq_json(r.first_seq), "last_seq": seq_json(r.last_seq),
            "first_time_ns": r.first_time, "max_time_ns": r.max_time,
            "tmp_files": listing.tmp.len(), "foreign_files": listing.foreign.len(), "ok": r.ok,
        });
        println!("{v}");
    } else {
        println!("hot segments:   {hot} ({hot_bytes} bytes on disk)");
        println!(
            "cold segments:  {cold} ({cold_bytes} bytes on disk, {cold_content} uncompressed)"
        );
        match ratio {
            Some(r) => println!("compression:    {r:.2}x"),
            None => println!("compression:    (no cold segment)"),
        }
        println!(
            "records:        {} ({} payload bytes)",
            r.records, r.payload_bytes
        );
        match (r.first_seq, r.last_seq) {
            (Some(a), Some(b)) => println!("sequence:       {a}..={b}"),
            _ => println!("sequence:       (empty)"),
        }
        match (r.first_time, r.max_time) {
            (Some(a), Some(b)) => println!(
                "log time:       {} .. {} (greatest)",
                wal_recorder::logdir::format_rfc3339(a),
                wal_recorder::logdir::format_rfc3339(b)
            ),
            _ => println!("log time:       (records without time)"),
        }
        println!("tmp files:      {}", listing.tmp.len());
        println!("foreign files:  {}", listing.foreign.len());
        println!("verifies:       {}", if r.ok { "yes" } else { "NO" });
        for e in &r.errors {
            eprintln!("error: {e}");
        }
    }
    Ok(ExitCode::from(if r.ok { 0 } else { 1 }))
}
