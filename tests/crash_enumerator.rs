//! The crash enumerator (after redb's fuzzer backend): a scripted workload (appends,
//! rollovers, drains, syncs, freezes, retention, close) runs under a backend whose disk dies
//! at its N-th file operation (every operation from there on fails), for every N the
//! workload performs, in both write paths. After each, the log is reopened with a healthy
//! disk: it opens, verifies, holds every record the workload had appended (so everything up
//! to the last `durable_seq` it saw), and continues the sequence.

mod common;

use std::path::Path;
use std::time::Duration;

use common::staging_root;
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::io::fault::FaultPlan;
use wal_recorder::logdir::verify;
use wal_recorder::recorder::Recorder;

const SEG: u64 = 64 * 1024;
const RECORDS: u64 = 6 * 817; // six segments: rollovers, freezes and deletions

fn config(dir: &Path, path: WritePath, staging: &Path, plan: Option<FaultPlan>) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.write_path = path;
    c.staging_dir = staging.to_path_buf();
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    // Drains only at rollover, sync and close: the operation sequence barely depends on
    // timing, so each N lands near the same step in every run.
    c.sync_interval = Duration::from_secs(10);
    c.continuous_drain = false;
    c.fault_plan = plan;
    c.backend = common::backend();
    c
}

/// What the workload saw before the disk died: (last accepted append, last durable_seq).
struct Seen {
    appended: u64,
    durable: u64,
}

/// Appends `RECORDS` records with a sync every 1000, then closes; stops at the first error.
fn workload(dir: &Path, cfg: Config) -> Seen {
    let mut seen = Seen {
        appended: 0,
        durable: 0,
    };
    let Ok(mut rec) = Recorder::open(dir, cfg) else {
        return seen;
    };
    seen.appended = rec.last_seq();
    for _ in 0..RECORDS {
        let seq = rec.last_seq() + 1;
        if rec.append_with(64, |b| event::fill(seq, b)).is_err() {
            break;
        }
        seen.appended = seq;
        if seq % 1000 == 0 {
            if rec.sync().is_err() {
                break;
            }
            seen.durable = rec.durable_seq();
        }
    }
    seen.durable = seen.durable.max(rec.durable_seq());
    let _ = rec.close();
    seen
}

fn enumerate(path: WritePath) {
    // A run without faults counts the operations of the workload.
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let root = staging_root();
        let plan = FaultPlan::new();
        let seen = workload(
            dir.path(),
            config(dir.path(), path, root.path(), Some(plan.clone())),
        );
        assert_eq!(seen.appended, RECORDS);
        plan.ops()
    };
    assert!(total > 50, "{path:?}: only {total} operations");
    let mut n = 0;
    let mut faulted_runs = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let root = staging_root();
        let plan = FaultPlan::new();
        plan.fail_all_from(n);
        let seen = workload(
            dir.path(),
            config(dir.path(), path, root.path(), Some(plan.clone())),
        );
        let fired = plan.fired();
        // The disk is healthy again: reopen and check.
        let mut rec = Recorder::open(dir.path(), config(dir.path(), path, root.path(), None))
            .unwrap_or_else(|e| panic!("{path:?}, disk dead from op {n}: reopen: {e}"));
        let ctx = format!(
            "{path:?}, disk dead from op {n} (appended {}, durable {}): {:?}",
            seen.appended,
            seen.durable,
            rec.recovered().actions
        );
        assert_eq!(rec.last_seq(), seen.appended, "{ctx}");
        assert!(seen.durable <= rec.last_seq(), "{ctx}");
        if let Some(d) = &rec.recovered().dropped {
            // Only a power cut can lose what was appended; a dead disk with the page cache
            // intact cannot, so a drop here would be a bug.
            panic!("{ctx}: dropped {d}");
        }
        let seq = rec.last_seq() + 1;
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
        rec.close().unwrap();
        let r = verify(dir.path()).unwrap();
        assert!(r.ok, "{ctx}: {:?}", r.errors);
        assert_eq!(r.last_seq, Some(seq), "{ctx}");
        if fired == 0 {
            break; // the workload ran to its end before the disk died
        }
        faulted_runs += 1;
        n += 1;
        assert!(
            n < 20 * total,
            "{path:?}: the workload never outran the fault"
        );
    }
    assert!(
        faulted_runs as u64 + 1 >= total / 2,
        "{path:?}: {faulted_runs} faulted runs for {total} operations"
    );
}

common::on_both_backends! {
fn a_disk_dying_at_every_operation_of_a_staged_workload_loses_nothing() {
    enumerate(WritePath::Staged);
}
}

common::on_both_backends! {
fn a_disk_dying_at_every_operation_of_a_direct_workload_loses_nothing() {
    enumerate(WritePath::Direct);
}
}
