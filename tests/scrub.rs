//! The background scrub: the open no longer reads sealed segments, so the scrub must find
//! damage in them, within one pass, report it (health Degraded, counted) and change nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{file_names, wait_for, write_log};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::maintainer::Health;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::truncate_sealed;

/// A version 1 seal's length.
const SEAL_LEN: usize = Framing::Plain.seal_len();

const SEG: u64 = 64 * 1024;
const PER_SEG: u64 = 817;

fn config(dir: &Path, scrub: bool) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 2;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Direct;
    c.scrub_rate = scrub.then_some(1 << 30);
    // One pass per test: the second would start only after this.
    c.scrub_interval = Duration::from_secs(600);
    c
}

/// A closed log of 8 full segments and a few records; returns its cold files.
fn closed_log(dir: &Path) -> Vec<PathBuf> {
    let mut rec = Recorder::open(dir, config(dir, false)).unwrap();
    for seq in 1..=8 * PER_SEG + 10 {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.close().unwrap();
    file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .map(|n| dir.join(n))
        .collect()
}

/// Overwrites `bytes` at `offset` in place and puts the modification time back, so that the
/// file's stamp is unchanged and the open trusts its summary.
fn damage_keeping_stamp(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.set_modified(mtime).unwrap();
}

fn passes(rec: &Recorder) -> u64 {
    rec.metrics().counters.scrub_passes
}

#[test]
fn a_clean_log_scrubs_clean() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path());
    let rec = Recorder::open(dir.path(), config(dir.path(), true)).unwrap();
    wait_for("a scrub pass", || passes(&rec) >= 1);
    let c = rec.metrics().counters;
    assert_eq!(c.scrub_corruptions, 0);
    // Every cold segment and at least one sealed hot one.
    let sealed = cold.len() as u64 + 1;
    assert!(c.scrubbed_segments >= sealed, "{c:?}");
    assert!(c.scrubbed_bytes > 0);
    assert_eq!(rec.health(), Health::Ok);
    rec.close().unwrap();
}

#[test]
fn the_scrub_finds_a_flipped_byte_in_a_cold_segment_within_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cold = closed_log(dir.path());
    let len = std::fs::metadata(&cold[3]).unwrap().len();
    let mut b = std::fs::read(&cold[3]).unwrap()[(len / 2) as usize];
    b ^= 0x04;
    damage_keeping_stamp(&cold[3], len / 2, &[b]);
    let before = std::fs::read(&cold[3]).unwrap();
    let rec = Recorder::open(dir.path(), config(dir.path(), true)).unwrap();
    assert_eq!(rec.recovered().report.read, 0, "the open did not decode it");
    wait_for("a scrub pass", || passes(&rec) >= 1);
    let c = rec.metrics().counters;
    assert_eq!(c.scrub_corruptions, 1, "{c:?}");
    assert_eq!(rec.health(), Health::Degraded);
    // The others verified (the other cold ones and a sealed hot one); the damaged one is
    // left as it is.
    let others = cold.len() as u64;
    assert!(c.scrubbed_segments >= others, "{c:?}");
    rec.close().unwrap();
    assert_eq!(std::fs::read(&cold[3]).unwrap(), before);
}

/// A page lost inside a persisted hot segment (sealed and truncated: the open takes it by its
/// header and seal). The open does not see it; the scrub does.
#[test]
fn the_scrub_finds_a_hole_in_a_persisted_hot_segment() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3 * PER_SEG + 300, 64, SEG, true);
    for p in &paths {
        truncate_sealed(p, common::used_len(p)).unwrap();
    }
    let mid = HEADER_LEN as u64 + 8 * 4096;
    damage_keeping_stamp(&paths[1], mid, &[0u8; 4096]);
    let mut c = config(dir.path(), true);
    c.max_segments = 100;
    let rec = Recorder::open(dir.path(), c).unwrap();
    assert_eq!(rec.last_seq(), 3 * PER_SEG + 300);
    wait_for("a scrub pass", || passes(&rec) >= 1);
    assert_eq!(rec.metrics().counters.scrub_corruptions, 1);
    assert_eq!(rec.health(), Health::Degraded);
    rec.close().unwrap();
    // The seal at its end was never touched.
    let len = std::fs::metadata(&paths[1]).unwrap().len();
    assert!(len > (SEAL_LEN + HEADER_LEN) as u64);
}
