//! `walctl tail`: prints a log's records as `cat` does, and with `--follow` keeps printing
//! them as they are appended, like `tail -f`. Reads files only: never slows the writer.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use wal_recorder::event::TradeEvent;
use wal_recorder::logdir::{Idle, LogReader, OnDivergence, StartAt, Tailer, Visibility};
use wal_recorder::segment::RecordInfo;
use wal_recorder::Error;

use crate::CmdResult;

#[derive(Args)]
pub(crate) struct TailArgs {
    /// Log directory (may be written by a recorder in another process)
    dir: PathBuf,
    /// Start at this sequence number (default: the first retained record)
    #[arg(long, conflicts_with_all = ["from_end", "since"])]
    from: Option<u64>,
    /// Start at the first record whose log time is at or after T (RFC 3339, e.g.
    /// 2026-12-03T09:30:00.250Z, any offset, or nanoseconds since the epoch); with --follow a
    /// time after the last record waits for one; a log with time only
    #[arg(long, value_name = "T", value_parser = wal_recorder::logdir::parse_log_time, conflicts_with = "from_end")]
    since: Option<u64>,
    /// Start after the last record written: print only new ones
    #[arg(long)]
    from_end: bool,
    /// Keep following the log as it grows (stop with Ctrl-C: exit 0); without it, stop at
    /// its current end
    #[arg(short, long)]
    follow: bool,
    /// One JSON object per record
    #[arg(long)]
    json: bool,
    /// Always print the payload as hex
    #[arg(long)]
    hex: bool,
    /// Reader name: resume from its saved position (unless --from or --from-end is given) and
    /// save how far it read in DIR/readers/NAME.pos (a recorder with hold_for_readers keeps
    /// what it has not read)
    #[arg(long)]
    name: Option<String>,
    /// With --name: if the log no longer holds what the reader read (records lost at a power
    /// cut and replaced), print again from the newest saved checkpoint the log still matches
    /// (said on stderr) instead of failing
    #[arg(long, requires = "name")]
    redeliver: bool,
    /// Print only records the recorder reports durable (nothing a power cut can take back);
    /// without it, records are printed as soon as they are committed
    #[arg(long)]
    durable: bool,
}

pub(crate) fn run(a: TailArgs) -> CmdResult {
    if !a.dir.is_dir() {
        return Err(format!("{}: not a directory", a.dir.display()).into());
    }
    // A closed pipe is an EPIPE write error, which ends the command with 0 below.
    crate::stop_signal::install();
    let start = match (a.from, a.from_end, a.since) {
        (Some(seq), _, _) => Some(StartAt::Seq(seq)),
        (None, true, _) => Some(StartAt::End),
        (None, false, Some(t)) => Some(StartAt::Time(UNIX_EPOCH + Duration::from_nanos(t))),
        (None, false, None) => None,
    };
    match open(&a, start) {
        Err(e @ (Error::SeqNotFound { .. } | Error::TimeNotFound { .. })) => {
            eprintln!("walctl: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
        Ok(t) => follow(&a, t),
    }
}

/// The tailer `a` asks for.
fn open(a: &TailArgs, start: Option<StartAt>) -> wal_recorder::Result<Tailer> {
    let t = match (&a.name, start) {
        (Some(name), None) => {
            let on = match a.redeliver {
                true => OnDivergence::Redeliver,
                false => OnDivergence::Fail,
            };
            Tailer::resume_with(&a.dir, name, on)?
        }
        (Some(name), Some(start)) => Tailer::open(&a.dir, start)?.with_position(name)?,
        (None, start) => Tailer::open(&a.dir, start.unwrap_or(StartAt::First))?,
    };
    Ok(t)
}

/// Prints `t`'s records until the log's end (or, following, until stopped).
fn follow(a: &TailArgs, t: Tailer) -> CmdResult {
    let visibility = match a.durable {
        true => Visibility::Durable,
        false => Visibility::Committed,
    };
    let mut t = t.with_visibility(visibility).with_idle(Idle::Backoff {
        max: Duration::from_millis(1),
    });
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut told = false;
    let mut printed = 0u64;
    while !crate::stop_signal::stopped() {
        let got = match a.follow {
            true => t.next_timeout(&mut buf, Duration::from_millis(50))?,
            false => t.poll(&mut buf)?,
        };
        if let (Some(r), false) = (t.redelivery(), told) {
            told = true;
            eprintln!(
                "walctl tail: {}: the log diverged from what reader {} read before sequence number {}: re-delivering from {} (records {}..{} may differ from what it printed before)",
                a.dir.display(),
                a.name.as_deref().unwrap_or(""),
                r.until,
                r.from,
                r.from,
                r.until
            );
        }
        let Some(info) = got else {
            if !a.follow {
                break;
            }
            if out.flush().is_err() {
                break; // the reader went away
            }
            continue;
        };
        let line = match a.json {
            true => json_line(&info, &buf),
            false => crate::format_record(&info, &buf, a.hex),
        };
        if writeln!(out, "{line}").is_err() {
            break; // the reader closed the pipe
        }
        printed += 1;
    }
    let _ = out.flush();
    t.commit()?;
    if let (Some(since), 0, false) = (a.since, printed, a.follow) {
        // Not following, and nothing at or after the time: say what the log holds, as cat.
        if let Err(e @ Error::TimeNotFound { .. }) = LogReader::open_at_time_ns(&a.dir, since) {
            eprintln!("walctl: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One record as a JSON line; `log_time_ns` (the record's own time in a log with time)
/// comes with every record of such a log, beside the event's `ts_ns`.
pub(crate) fn json_line(info: &RecordInfo, buf: &[u8]) -> String {
    let mut v = match TradeEvent::decode(buf) {
        Some(ev) if ev.seq == info.seq => json!({
            "seq": info.seq, "len": info.len, "kind": format!("{:?}", ev.kind),
            "ts_ns": ev.ts_ns, "order": ev.order_id, "instrument": ev.instrument,
            "side": if ev.side == 0 { "buy" } else { "sell" }, "price": ev.price,
            "qty": ev.qty, "trader": ev.trader,
        }),
        _ => json!({
            "seq": info.seq, "len": info.len,
            "hex": buf.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        }),
    };
    if let Some(t) = info.time {
        v["log_time_ns"] = json!(t);
    }
    v.to_string()
}
