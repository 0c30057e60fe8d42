//! `walctl`: inspect, verify and (with the recorder) write wal-recorder logs.
//! Exit codes (contract 8): 0 success, 1 corruption or error, 2 bad usage.

#[cfg(feature = "archive")]
mod archive;
mod lag;
mod latency;
mod record;
mod tail;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use wal_recorder::event::TradeEvent;
use wal_recorder::log::{list_dir, verify, LogReader, Tier};
use wal_recorder::segment::{SegmentEnd, SegmentReader};

#[derive(Parser)]
#[command(
    name = "walctl",
    version,
    about = "Inspect and verify wal-recorder logs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a synthetic trading-event stream through a Recorder, report throughput,
    /// append latency and the maintainer's work
    Record(record::RecordArgs),
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
    /// List the segments of a directory
    Ls {
        /// Log directory
        dir: PathBuf,
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
        /// Always print the payload as hex
        #[arg(long)]
        hex: bool,
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
    /// Upload every sealed segment of a closed log directory not archived yet
    #[cfg(feature = "archive")]
    Archive(archive::ArchiveArgs),
    /// Download the archived segments covering a sequence range into an empty directory
    #[cfg(feature = "archive")]
    Restore(archive::RestoreArgs),
}

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread exists, so that
    // `walctl cat DIR | head` ends quietly like other Unix tools instead of panicking.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Record(args) => record::run(args),
        Cmd::Verify {
            path,
            json,
            staging_dir,
        } => cmd_verify(&path, json, &staging_dir),
        Cmd::Ls { dir } => cmd_ls(&dir),
        Cmd::Cat {
            path,
            from,
            to,
            hex,
        } => cmd_cat(&path, from, to, hex),
        Cmd::Stats { dir, json } => cmd_stats(&dir, json),
        Cmd::Tail(args) => tail::run(args),
        Cmd::Repair { dir, dry_run } => cmd_repair(&dir, dry_run),
        #[cfg(feature = "archive")]
        Cmd::Archive(a) => archive::cmd_archive(a),
        #[cfg(feature = "archive")]
        Cmd::Restore(a) => archive::cmd_restore(a),
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

fn cmd_repair(dir: &Path, dry_run: bool) -> CmdResult {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    let r = wal_recorder::recovery::repair(dir, dry_run)?;
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

pub(crate) fn print_verify(r: &wal_recorder::log::VerifyReport, as_json: bool) -> CmdResult {
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

fn cmd_ls(dir: &Path) -> CmdResult {
    let listing = list_dir(dir)?;
    println!(
        "{:<26} {:>4} {:>12} {:>14} {:>10}  state",
        "file", "tier", "bytes", "first_seq", "records"
    );
    let mut failed = false;
    for seg in &listing.segments {
        let name = seg.path.file_name().unwrap_or_default().to_string_lossy();
        let tier = match seg.tier {
            Tier::Hot => "hot",
            Tier::Cold => "cold",
        };
        let (first, records, state) = match describe_segment(&seg.path, seg.tier) {
            Ok(d) => d,
            Err(e) => {
                failed = true;
                ("-".into(), "-".into(), format!("error: {e}"))
            }
        };
        println!(
            "{name:<26} {tier:>4} {:>12} {first:>14} {records:>10}  {state}",
            seg.file_len
        );
    }
    for p in &listing.tmp {
        println!("{}  (temporary)", p.display());
    }
    for p in &listing.foreign {
        println!("{}  (not ours, ignored)", p.display());
    }
    Ok(ExitCode::from(if failed { 1 } else { 0 }))
}

fn describe_segment(
    path: &Path,
    tier: Tier,
) -> Result<(String, String, String), wal_recorder::Error> {
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
        }) => return Ok(("-".into(), "0".into(), "prepared, unused".into())),
        Err(e) => return Err(e),
    };
    let end = r.skip_to_end()?;
    let state = match end {
        SegmentEnd::Sealed(_) => "sealed".to_string(),
        SegmentEnd::Open { .. } => "open".to_string(),
        SegmentEnd::Broken { offset, kind, .. } => format!("break at {offset}: {kind}"),
    };
    Ok((
        r.header().first_seq.to_string(),
        r.count().to_string(),
        state,
    ))
}

fn cmd_cat(path: &Path, from: Option<u64>, to: Option<u64>, hex: bool) -> CmdResult {
    // `--from` on a directory seeks (a bisection of the segments, then one segment scanned).
    let mut reader = match (path.is_dir(), from) {
        (true, Some(seq)) => LogReader::open_at(path, seq)?,
        (true, None) => LogReader::open_dir(path)?,
        (false, _) => LogReader::open_file(path)?,
    };
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    while let Some(info) = reader.next_record(&mut buf)? {
        if info.seq < from {
            continue;
        }
        if info.seq > to {
            break;
        }
        if writeln!(out, "{}", format_record(&info, &buf, hex)).is_err() {
            return Ok(ExitCode::SUCCESS); // reader closed the pipe (e.g. `| head`)
        }
    }
    let _ = out.flush();
    for w in reader.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One record as `cat` and `tail` print it: a decoded trading event, or the payload in hex.
pub(crate) fn format_record(
    info: &wal_recorder::segment::RecordInfo,
    buf: &[u8],
    hex: bool,
) -> String {
    match TradeEvent::decode(buf) {
        Some(ev) if !hex && ev.seq == info.seq => format!(
            "{} {} {:?} ts={} order={} instr={} side={} px={} qty={} trader={}",
            info.seq,
            info.len,
            ev.kind,
            ev.ts_ns,
            ev.order_id,
            ev.instrument,
            if ev.side == 0 { "buy" } else { "sell" },
            ev.price,
            ev.qty,
            ev.trader
        ),
        _ => format!("{} {} {}", info.seq, info.len, to_hex(buf)),
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
        println!("tmp files:      {}", listing.tmp.len());
        println!("foreign files:  {}", listing.foreign.len());
        println!("verifies:       {}", if r.ok { "yes" } else { "NO" });
        for e in &r.errors {
            eprintln!("error: {e}");
        }
    }
    Ok(ExitCode::from(if r.ok { 0 } else { 1 }))
}
