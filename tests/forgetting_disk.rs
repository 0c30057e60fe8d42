//! Crash safety on a disk that forgets (DESIGN: rules of the house): the recorder, its
//! maintainer (drains, persists, freezes, deletes) and recovery run over the forgetting
//! disk (`io::forgetting`), which logs every operation with its data. For every crash point
//! of a run of a few segments, a durable image is materialized (only what an fdatasync or a
//! directory fsync made durable, plus random sector subsets of the writes still pending;
//! the staging buffers gone) and opened: every state must open and hold every record up to
//! the `durable_seq` published before the crash. The same enumeration with the drain's
//! fdatasync, or the directory fsyncs, left out of the model must find a state that loses
//! acknowledged records: the check is not vacuous.

mod common;

use std::path::Path;
use std::time::Duration;

use common::staging_root;
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::io::fault::FaultPlan;
use wal_recorder::io::forgetting::ForgettingDisk;
use wal_recorder::io::{BackendChoice, OpCode, Target};
use wal_recorder::logdir::LogReader;
use wal_recorder::recorder::Recorder;

const SEG: u64 = 64 * 1024;
/// About six segments of 64-byte events: rollovers, freezes and deletes.
const RECORDS: u64 = 6 * 817;

fn config(dir: &Path, staging: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.scrub_rate = None;
    c.write_path = WritePath::Staged;
    c.staging_dir = staging.to_path_buf();
    c.backend = BackendChoice::Blocking;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c
}

/// Runs the workload over a forgetting disk, forgetting `forgotten`; returns the model.
fn run(dir: &Path, forgotten: &[(OpCode, Target)]) -> ForgettingDisk {
    let staging = staging_root();
    let disk = ForgettingDisk::new(dir);
    for &(code, target) in forgotten {
        disk.forget(code, target);
    }
    let plan = FaultPlan::new();
    plan.with_forgetting_disk(disk.clone());
    let mut c = config(dir, staging.path());
    c.fault_plan = Some(plan);
    let mut rec = Recorder::open(dir, c).unwrap();
    for seq in 1..=RECORDS {
        assert_eq!(rec.append_with(64, |b| event::fill(seq, b)).unwrap(), seq);
        if seq % 500 == 0 {
            // Let drains happen between bursts, so that crash points fall everywhere.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    rec.close().unwrap();
    disk
}

/// Opens the image of a crash after `n` operations; `Err` says what it lost.
fn check_state(disk: &ForgettingDisk, n: usize, seed: u64) -> Result<(), String> {
    let out = tempfile::tempdir().unwrap();
    disk.materialize(n, seed, out.path()).unwrap();
    let durable = disk.durable_before(n);
    let staging = staging_root();
    let rec = Recorder::open(out.path(), config(out.path(), staging.path()))
        .map_err(|e| format!("op {n} seed {seed}: the open refused: {e}"))?;
    let last = rec.last_seq();
    let lost = rec.recovered().lost_acknowledged.clone();
    rec.close().map_err(|e| format!("op {n}: close: {e}"))?;
    if last < durable {
        return Err(format!(
            "op {n} seed {seed}: durable_seq was {durable}, the log ends at {last}"
        ));
    }
    if let Some(l) = lost {
        return Err(format!("op {n} seed {seed}: {l}"));
    }
    // Every retained record up to `durable` is the one appended.
    let mut reader = LogReader::open_dir(out.path()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut seen = None;
    while let Some(info) = reader
        .next_record(&mut buf)
        .map_err(|e| format!("op {n}: {e}"))?
    {
        if !event::matches(info.seq, &buf) {
            return Err(format!("op {n} seed {seed}: record {} altered", info.seq));
        }
        seen.get_or_insert(info.seq);
    }
    if durable > 0 && seen.map_or(true, |first| first > durable) {
        return Err(format!(
            "op {n} seed {seed}: no record up to {durable} retained"
        ));
    }
    Ok(())
}

/// Every crash point with only the durable image, and two random sector subsets of the
/// pending writes at each; the failures found.
fn enumerate(disk: &ForgettingDisk) -> Vec<String> {
    let total = disk.operations();
    let mut failures = Vec::new();
    for n in 0..=total {
        for seed in [0, n as u64 * 2 + 1, n as u64 * 2 + 2] {
            if let Err(e) = check_state(disk, n, seed) {
                failures.push(e);
            }
        }
    }
    failures
}

#[test]
fn every_crash_state_of_a_forgetting_disk_holds_every_record_reported_durable() {
    let dir = tempfile::tempdir().unwrap();
    let disk = run(dir.path(), &[]);
    let total = disk.operations();
    // How many drains batch together depends on the machine's load; the namespace changes
    // below are what the enumeration must cover.
    assert!(total > 50, "only {total} operations modelled");
    assert!(
        disk.durable_before(total) == RECORDS,
        "the run ends durable"
    );
    // Rollovers (creates), freezes (renames) and deletes (unlinks) all happened.
    let (creates, renames, unlinks) = disk.namespace_changes();
    assert!(
        creates >= 4 && renames >= 2 && unlinks >= 3,
        "{creates} {renames} {unlinks}"
    );
    let failures = enumerate(&disk);
    assert!(
        failures.is_empty(),
        "{} failing states, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn the_forgetting_disk_catches_a_missing_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let disk = run(dir.path(), &[(OpCode::Fdatasync, Target::Segment)]);
    let failures = enumerate(&disk);
    assert!(
        !failures.is_empty(),
        "a drain without its fdatasync went unnoticed"
    );
    eprintln!(
        "without the fdatasync: {} failing states, first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn the_forgetting_disk_catches_a_missing_directory_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let disk = run(
        dir.path(),
        &[
            (OpCode::Fsync, Target::Dir),
            (OpCode::Fsync, Target::Prepare),
        ],
    );
    let failures = enumerate(&disk);
    assert!(
        !failures.is_empty(),
        "a missing directory fsync went unnoticed"
    );
    eprintln!(
        "without the directory fsyncs: {} failing states, first: {}",
        failures.len(),
        failures[0]
    );
}
