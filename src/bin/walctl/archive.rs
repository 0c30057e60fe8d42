//! `walctl archive`, `walctl restore` and `walctl verify URL` (feature `archive`).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use wal_recorder::archive::{self, ArchiveConfig, RestoreRange};
use wal_recorder::logdir::VerifyReport;

use super::{seq_json, CmdResult};

#[derive(clap::Args)]
pub struct ArchiveArgs {
    /// Log directory (closed: a running recorder holds its lock)
    dir: PathBuf,
    /// s3://bucket/prefix or file:///path; credentials and endpoint from AWS_*
    url: String,
    /// Uploads in flight at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// s3://bucket/prefix or file:///path
    url: String,
    /// Empty (or missing) directory to restore into
    dir: PathBuf,
    /// First sequence number wanted (default: the oldest archived)
    #[arg(long)]
    from: Option<u64>,
    /// Last sequence number wanted (default: the newest archived)
    #[arg(long)]
    to: Option<u64>,
    /// Only the segments holding the records from the first whose log time is at or after T
    /// (RFC 3339 with any offset, or nanoseconds since the epoch), as `cat --since` reads
    /// them; an archive of a log with time only
    #[arg(long, value_name = "T", value_parser = wal_recorder::logdir::parse_log_time, conflicts_with_all = ["from", "to"])]
    since: Option<u64>,
    /// With or without --since: up to the first record whose log time is after T
    #[arg(long, value_name = "T", value_parser = wal_recorder::logdir::parse_log_time, conflicts_with_all = ["from", "to"])]
    until: Option<u64>,
    /// Uploads in flight at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

fn config(url: &str, concurrency: usize) -> ArchiveConfig {
    let mut c = ArchiveConfig::new(url);
    c.concurrency = concurrency;
    c
}

pub fn cmd_archive(a: ArchiveArgs) -> CmdResult {
    let r = archive::archive_dir(&a.dir, config(&a.url, a.concurrency))?;
    for s in &r.skipped {
        eprintln!("warning: {s}: not sealed, not archived (open the log once to recover it)");
    }
    if a.json {
        let v = json!({
            "ok": true, "url": a.url, "uploaded": r.uploaded, "already_archived": r.already,
            "bytes": r.bytes, "skipped": r.skipped, "manifest_segments": r.manifest_segments,
        });
        println!("{v}");
    } else {
        println!(
            "archived {} segment(s) ({} bytes) to {}; {} already there; the manifest lists {}",
            r.uploaded, r.bytes, a.url, r.already, r.manifest_segments
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_restore(a: RestoreArgs) -> CmdResult {
    let from = a.from.unwrap_or(0);
    let to = a.to.unwrap_or(u64::MAX);
    if from > to {
        eprintln!("walctl: --from {from} is after --to {to}");
        return Ok(ExitCode::from(2));
    }
    let range = match (a.since, a.until) {
        (None, None) => RestoreRange::Seq { from, to },
        (since, until) => {
            let until = until.unwrap_or(u64::MAX);
            if since.is_some_and(|s| s > until) {
                eprintln!("walctl: --since is after --until");
                return Ok(ExitCode::from(2));
            }
            RestoreRange::Time { since, until }
        }
    };
    let r = match archive::restore_range(config(&a.url, a.concurrency), &a.dir, range) {
        Err(e @ wal_recorder::Error::NotArchived { .. }) => {
            eprintln!("walctl: {e}");
            return Ok(ExitCode::from(2));
        }
        other => other?,
    };
    if a.json {
        let v = json!({
            "ok": true, "dir": a.dir, "segments": r.segments, "records": r.records,
            "bytes": r.bytes, "first_seq": seq_json(r.first_seq), "last_seq": seq_json(r.last_seq),
        });
        println!("{v}");
    } else {
        println!(
            "restored {} segment(s), {} records (seq {}..={}) into {}",
            r.segments,
            r.records,
            r.first_seq.unwrap_or(0),
            r.last_seq.unwrap_or(0),
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify_url(url: &str) -> Result<VerifyReport, wal_recorder::Error> {
    archive::verify_url(ArchiveConfig::new(url))
}
