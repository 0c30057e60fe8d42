//! The constant-time open (issue 14): sealed segments are walked by their summaries, never
//! decoded; a summary that is missing, stale or wrong costs a decode, never a wrong chain.

mod common;

use std::path::{Path, PathBuf};

use common::{file_names, wait_for};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::logdir::summary::{SegmentSummary, SUMMARY_FILE, TIMED_ENTRY_LEN as ENTRY_LEN};
use wal_recorder::logdir::verify;
use wal_recorder::recorder::Recorder;
use wal_recorder::recovery::OpenReport;
use wal_recorder::segment::names::cold_name;

const SEG: u64 = 64 * 1024;
// Records of 64 bytes with time (the default format, version 2) in a 64 KiB segment; each
// cold segment's summary entry is 112 bytes.
const PER_SEG: u64 = 743;
const HOT: usize = 2;

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = HOT;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Direct;
    c.scrub_rate = None;
    c
}

fn append(rec: &mut Recorder, n: u64) {
    for _ in 0..n {
        let seq = rec.last_seq() + 1;
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
}

/// A closed log of `segments` full segments and a few records more; returns its cold files.
fn closed_log(dir: &Path, segments: u64) -> Vec<PathBuf> {
    let mut rec = Recorder::open(dir, config(dir)).unwrap();
    append(&mut rec, segments * PER_SEG + 10);
    rec.close().unwrap();
    let cold: Vec<PathBuf> = file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .map(|n| dir.join(n))
        .collect();
    assert!(
        cold.len() as u64 >= segments - HOT as u64,
        "{:?}",
        file_names(dir)
    );
    cold
}

/// Opens, checks the chain continues after `last` (appends, closes, verifies), returns the
/// open's report.
fn reopen(dir: &Path, last: u64) -> OpenReport {
    let mut rec = Recorder::open(dir, config(dir)).unwrap();
    let report = rec.recovered().report.clone();
    assert_eq!(rec.last_seq(), last, "{report:?}");
    append(&mut rec, 5);
    rec.close().unwrap();
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(last + 5));
    report
}

/// The entries of `cold.summary`, each its own bytes (entries of a log with time are longer).
fn entries(dir: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(dir.join(SUMMARY_FILE)).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (s, _) = SegmentSummary::decode(&bytes[at..]).expect("an intact entry");
        out.push(bytes[at..at + s.entry_len()].to_vec());
        at += s.entry_len();
    }
    out
}

/// Flips a byte in place and puts the modification time back: the file's stamp (length,
/// inode, mtime) is unchanged, so only reading its content can tell.
fn flip_keeping_stamp(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
    f.set_modified(mtime).unwrap();
}

#[test]
fn the_open_decodes_no_cold_segment_and_reads_no_sealed_one() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path(), 8);
    let last = 8 * PER_SEG + 10;
    // Damage a cold frame where only a decode would see it: the open must not notice.
    let len = std::fs::metadata(&cold[2]).unwrap().len();
    flip_keeping_stamp(&cold[2], len / 2);
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let report = rec.recovered().report.clone();
    assert_eq!(rec.last_seq(), last);
    rec.close().unwrap();
    assert_eq!(report.read, 0, "{report:?}");
    assert!(report.summarized >= cold.len() as u64, "{report:?}");
    assert_eq!(report.summary_conflict, None);
    assert!(!report.summary_rewritten);
    // The full check still finds it.
    let r = verify(dir.path()).unwrap();
    assert!(!r.ok);
    assert!(
        r.errors.iter().any(|e| e.contains(&cold_name(2))),
        "{:?}",
        r.errors
    );
}

#[test]
fn a_missing_summary_file_costs_one_decode_of_each_cold_segment_then_none() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path(), 8);
    let last = 8 * PER_SEG + 10;
    std::fs::remove_file(dir.path().join(SUMMARY_FILE)).unwrap();
    let report = reopen(dir.path(), last);
    assert_eq!(report.read, cold.len() as u64, "{report:?}");
    assert!(report.summary_rewritten, "{report:?}");
    let report = reopen(dir.path(), last + 5);
    assert_eq!(report.read, 0, "{report:?}");
}

/// The maintainer appends a segment's entry after its freeze is published, without a sync:
/// a crash can lose it (or tear it). The open decodes that segment only, and rewrites the
/// file.
#[test]
fn a_stale_summary_after_a_crash_between_freeze_and_append_decodes_only_what_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path(), 8);
    let last = 8 * PER_SEG + 10;
    let path = dir.path().join(SUMMARY_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, (cold.len() * ENTRY_LEN) as u64, "one entry per freeze");
    // The last entry lost, the one before torn in half.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - ENTRY_LEN as u64 - ENTRY_LEN as u64 / 2)
        .unwrap();
    let report = reopen(dir.path(), last);
    assert_eq!(report.read, 2, "{report:?}");
    assert!(report.summary_rewritten);
    let cold_now = file_names(dir.path())
        .iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .count();
    assert_eq!(
        entries(dir.path()).len(),
        cold_now,
        "rewritten, then appended to"
    );
    assert!(cold_now > cold.len());
    assert_eq!(reopen(dir.path(), last + 5).read, 0);
}

/// An entry that matches its file's stamp but lies about the chain (its last checksum): the
/// next segment does not continue it, so the open walks the whole log from its records and
/// ends where the records say, then writes the true summaries.
#[test]
fn a_summary_that_disagrees_with_the_chain_is_overruled_by_the_records() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 8);
    let last = 8 * PER_SEG + 10;
    let mut all = entries(dir.path());
    // Entries are appended as freezes publish, not necessarily in index order.
    let at = all
        .iter()
        .position(|e| SegmentSummary::decode(e).unwrap().0.index == 1)
        .expect("an entry for segment 1");
    let (mut s, stamp) = SegmentSummary::decode(&all[at]).unwrap();
    s.last_crc ^= 1;
    all[at] = s.encode(stamp)[..s.entry_len()].to_vec();
    std::fs::write(dir.path().join(SUMMARY_FILE), all.concat()).unwrap();
    // The full check reads the records and says which entry lies.
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(&cold_name(1)) && w.contains(SUMMARY_FILE)),
        "{:?}",
        r.warnings
    );
    let report = reopen(dir.path(), last);
    assert!(report.summary_conflict.is_some(), "{report:?}");
    assert!(report.summary_rewritten, "{report:?}");
    let report = reopen(dir.path(), last + 5);
    assert_eq!(
        (report.read, &report.summary_conflict),
        (0, &None),
        "{report:?}"
    );
}

/// A cold file replaced by another (a restore, a copy): its entry no longer matches the
/// file's stamp, so the file is decoded.
#[test]
fn a_replaced_cold_file_is_decoded_not_taken_from_its_old_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path(), 8);
    let last = 8 * PER_SEG + 10;
    let copy = dir.path().join("copy");
    std::fs::copy(&cold[3], &copy).unwrap();
    std::fs::rename(&copy, &cold[3]).unwrap();
    let report = reopen(dir.path(), last);
    assert_eq!(report.read, 1, "{report:?}");
    assert!(report.summary_rewritten);
}

/// The maintainer's appends: one entry per freeze, each describing its cold file exactly.
#[test]
fn each_freeze_appends_the_summary_of_its_cold_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    append(&mut rec, 6 * PER_SEG);
    wait_for("freezes", || rec.metrics().counters.frozen >= 3);
    rec.close().unwrap();
    let all = entries(dir.path());
    let frozen: Vec<u64> = all
        .iter()
        .map(|e| SegmentSummary::decode(e).expect("intact entry").0.index)
        .collect();
    // Entries are appended as freezes publish, which with compression helpers is not
    // always index order: one entry per cold file, each for that file.
    let mut sorted = frozen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        frozen.len(),
        "one entry per freeze: {frozen:?}"
    );
    let cold: Vec<u64> = (0..6)
        .filter(|&i| dir.path().join(cold_name(i)).exists())
        .collect();
    assert_eq!(sorted, cold, "an entry for each cold file");
    for e in &all {
        let (s, stamp) = SegmentSummary::decode(e).unwrap();
        let meta = std::fs::metadata(dir.path().join(cold_name(s.index))).unwrap();
        assert_eq!(stamp.len, meta.len());
        assert_eq!(s.first_seq, 1 + s.index * PER_SEG);
        assert_eq!(s.count, PER_SEG);
    }
}

#[test]
fn a_long_run_keeps_cold_summary_the_size_of_the_cold_tier_not_of_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_compressed_segments = 4;
    let segments = 200u64;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    append(&mut rec, segments * PER_SEG + 10);
    rec.close().unwrap();
    let cold = file_names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .count();
    assert!(cold <= 4, "{:?}", file_names(dir.path()));
    // About 196 segments were frozen, each appending an entry; the deletes' dead entries
    // were dropped along the way (rewritten once dead ones outnumbered live ones by 64).
    let n = entries(dir.path()).len();
    assert!(
        n <= 2 * cold + 64 + 8,
        "{n} entries for {cold} cold segments"
    );
    // What is left still describes every cold segment: the open decodes none and has
    // nothing to rewrite.
    let report = reopen(dir.path(), segments * PER_SEG + 10);
    assert_eq!(report.read, 0, "{report:?}");
    assert!(report.summarized >= cold as u64, "{report:?}");
    assert!(!report.summary_rewritten, "{report:?}");
}
