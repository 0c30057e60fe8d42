//! `verify`: reads a whole log and reports what `walctl verify` prints.

use std::path::Path;

use super::log_reader::LogReader;
use super::summary::{SummaryIndex, SUMMARY_FILE};
use crate::error::Result;

/// The outcome of verifying a log directory or file. The keys of `walctl verify --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// No corruption found (warnings allowed).
    pub ok: bool,
    /// Segments read (hot + cold).
    pub segments: u64,
    /// Hot segments read.
    pub hot: u64,
    /// Cold segments read.
    pub cold: u64,
    /// Records that verified.
    pub records: u64,
    /// First verified sequence number.
    pub first_seq: Option<u64>,
    /// Last verified sequence number.
    pub last_seq: Option<u64>,
    /// Payload bytes of the verified records.
    pub payload_bytes: u64,
    /// Log time of the first verified record that has one (format version 2).
    pub first_time: Option<u64>,
    /// Greatest log time of the verified records.
    pub max_time: Option<u64>,
    /// Corruption found (at most one: reading stops at the first break of the chain).
    pub errors: Vec<String>,
    /// Normal states after a crash or an interrupted step.
    pub warnings: Vec<String>,
}

/// Verifies `path`: a directory (the whole log) or a single segment file. An `Err` means the
/// path could not be read at all; corruption is reported in the report.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    if !path.is_dir() {
        return Ok(verify_reader(LogReader::open_file(path)?));
    }
    let mut reader = LogReader::open_dir(path)?;
    let mut report = read_all(&mut reader);
    check_acknowledged(path, &mut report)?;
    // The summaries the open trusts must say what the records say.
    let index = SummaryIndex::load(path);
    for (read, stamp) in reader.learned() {
        if let Some((entry, entry_stamp)) = index.entry(read.index) {
            if entry_stamp == *stamp && entry != *read {
                report.warnings.push(format!(
                    "{}: its entry in {SUMMARY_FILE} disagrees with its records (the open \
                     reads the log from its records when the chain shows it; deleting \
                     {SUMMARY_FILE} rebuilds it)",
                    path.join(crate::segment::names::cold_name(read.index))
                        .display()
                ));
            }
        }
    }
    Ok(report)
}

/// Contract 10: records reported durable must be in the log. The drains' watermark says how
/// far `durable_seq` had reached; an open that found less left a note in `quarantine/`.
/// Either is an error, never a torn tail.
fn check_acknowledged(dir: &Path, report: &mut VerifyReport) -> Result<()> {
    use super::listing::highest_watermark;
    use crate::segment::watermark::LOST_NOTE_PREFIX;
    let listing = super::list_dir(dir)?;
    let last = report.last_seq.unwrap_or(0);
    if let Some((w, file)) = highest_watermark(&listing.segments)? {
        if w > last {
            report.errors.push(format!(
                "{}: DATA LOSS: records up to {w} were reported durable (its watermark says \
                 so) but the log ends at {last}: {} acknowledged records are lost",
                file.display(),
                w - last
            ));
        }
    }
    let quarantine = dir.join(crate::segment::names::QUARANTINE_DIR);
    if let Ok(rd) = std::fs::read_dir(&quarantine) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(LOST_NOTE_PREFIX)
            {
                let note = std::fs::read_to_string(e.path()).unwrap_or_default();
                report.errors.push(format!(
                    "{}: {}",
                    e.path().display(),
                    note.lines()
                        .next()
                        .unwrap_or("acknowledged records were lost")
                ));
            }
        }
    }
    report.ok = report.errors.is_empty();
    Ok(())
}

/// Reads `reader` to its end (or its first break) and reports.
pub(crate) fn verify_reader(mut reader: LogReader) -> VerifyReport {
    read_all(&mut reader)
}

fn read_all(reader: &mut LogReader) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut buf = Vec::new();
    loop {
        match reader.next_record(&mut buf) {
            Ok(Some(info)) => {
                report.payload_bytes += u64::from(info.len);
                if let Some(t) = info.time {
                    report.first_time.get_or_insert(t);
                    report.max_time = report.max_time.max(Some(t));
                }
            }
            Ok(None) => break,
            Err(e) => {
                report.errors.push(e.to_string());
                break;
            }
        }
    }
    (report.segments, report.hot, report.cold) = reader.segments_read();
    report.records = reader.records();
    report.first_seq = reader.first_seq();
    report.last_seq = reader.last_seq();
    report.warnings = reader.warnings().iter().map(|w| w.to_string()).collect();
    report.ok = report.errors.is_empty();
    report
}
