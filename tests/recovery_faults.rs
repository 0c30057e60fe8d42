//! Recovery's own file operations fail, one at a time, at every step they take: the open
//! returns a typed error naming the file, and the next open (the disk healthy again) ends
//! in the same place with nothing lost (every record either in the log or in quarantine).
//! Fault rules on `Target::Recovery` reach the staging replay, the removals, the moves and
//! copies into quarantine, the seal's write, every fdatasync, ftruncate and directory fsync.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{file_names, staging_root, used_len, write_log};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::io::fault::{Effect, FaultPlan, Rule};
use wal_recorder::io::{OpCode, Target};
use wal_recorder::logdir::{verify, LogReader};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::truncate_sealed;
use wal_recorder::staging::StagingDir;

const SEG: u64 = 64 * 1024;
const REC: usize = 64;
const PER_SEG: u64 = 817;
const PAGE: usize = 4096;
const CODES: [OpCode; 6] = [
    OpCode::Unlink,
    OpCode::Rename,
    OpCode::Write,
    OpCode::Fdatasync,
    OpCode::Ftruncate,
    OpCode::Fsync,
];

fn config(dir: &Path, path: WritePath, staging: &Path, plan: Option<FaultPlan>) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 100;
    c.max_compressed_segments = 100;
    c.write_path = path;
    c.staging_dir = staging.to_path_buf();
    c.fault_plan = plan;
    c
}

/// Records in the files of `dir` read one by one (quarantined segments do not chain).
fn records_in_files(dir: &Path) -> u64 {
    let mut n = 0;
    for name in file_names(dir) {
        let Ok(mut r) = LogReader::open_file(&dir.join(name)) else {
            continue;
        };
        let mut buf = Vec::new();
        while let Ok(Some(_)) = r.next_record(&mut buf) {
            n += 1;
        }
    }
    n
}

/// A power-cut state with every kind of repair in it: a tmp leftover, segment 1 sealed and
/// not persisted, a hole in segment 2 with data after it, segment 3 written after it.
/// Returns the records kept and the records segment 3 holds.
fn power_cut_state(dir: &Path) -> (u64, u64) {
    let paths: Vec<PathBuf> = write_log(dir, 3 * PER_SEG + 300, REC, SEG, false);
    truncate_sealed(&paths[0], used_len(&paths[0])).unwrap();
    std::fs::write(dir.join("00000000000000000000.wal.lz4.tmp"), b"partial").unwrap();
    let mut b = std::fs::read(&paths[2]).unwrap();
    b[5 * PAGE..6 * PAGE].fill(0);
    std::fs::write(&paths[2], b).unwrap();
    // Record 255 of segment 2 straddles the hole.
    (2 * PER_SEG + 255, 300)
}

/// A process-crash state of a staged log: the disk lacks the last 500 records, the staging
/// buffer holds them. Returns the records kept.
fn staged_crash_state(dir: &Path, root: &Path) -> u64 {
    let scratch = tempfile::tempdir().unwrap();
    let ahead: Vec<Vec<u8>> = write_log(scratch.path(), 1500, REC, SEG, false)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let behind = tempfile::tempdir().unwrap();
    let disk: Vec<PathBuf> = write_log(behind.path(), 1000, REC, SEG, false);
    for (i, p) in disk.iter().enumerate() {
        std::fs::copy(p, dir.join(format!("{i:020}.wal"))).unwrap();
    }
    let sd = StagingDir::create(root, dir, None).unwrap();
    let f = sd.create_buffer("buf-00", SEG).unwrap();
    f.write_all_at(&ahead[1], 0).unwrap();
    1500
}

/// For every recovery operation kind and every occurrence of it, a fresh copy of the state
/// whose recovery fails there.
fn each_failure(
    make: &dyn Fn(&Path, &Path) -> (u64, u64),
    path: WritePath,
    expect_failures_of: &[OpCode],
) {
    let mut failed_kinds = Vec::new();
    for code in CODES {
        for nth in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let root = staging_root();
            let (kept, dropped) = make(dir.path(), root.path());
            let plan = FaultPlan::new();
            plan.add(Rule {
                code,
                target: Target::Recovery,
                nth,
                count: 1,
                effect: Effect::Fail(libc::EIO),
            });
            let cfg = config(dir.path(), path, root.path(), Some(plan.clone()));
            let opened = Recorder::open(dir.path(), cfg);
            if plan.fired() == 0 {
                // Past the last operation of this kind: the open went through.
                opened.unwrap().close().unwrap();
                break;
            }
            let err = opened.err().expect("an injected failure fails the open");
            assert!(
                err.to_string().contains(&dir.path().display().to_string()),
                "{code:?} #{nth}: {err}"
            );
            failed_kinds.push(code);
            // The disk healthy again: the same end, nothing lost.
            let rec =
                Recorder::open(dir.path(), config(dir.path(), path, root.path(), None)).unwrap();
            assert_eq!(rec.last_seq(), kept, "{code:?} #{nth}");
            rec.close().unwrap();
            let r = verify(dir.path()).unwrap();
            assert!(r.ok && r.warnings.is_empty(), "{code:?} #{nth}: {r:?}");
            assert_eq!(r.records, kept, "{code:?} #{nth}");
            if dropped > 0 {
                let q = dir.path().join("quarantine");
                assert!(
                    records_in_files(&q) >= dropped,
                    "{code:?} #{nth}: {:?}",
                    file_names(&q)
                );
            }
        }
    }
    for code in expect_failures_of {
        assert!(
            failed_kinds.contains(code),
            "no {code:?} failure was injected: {failed_kinds:?}"
        );
    }
}

#[test]
fn every_failing_step_of_recovery_fails_the_open_and_loses_nothing() {
    each_failure(
        &|dir, _| power_cut_state(dir),
        WritePath::Direct,
        &CODES, // every kind occurs in this state
    );
}

#[test]
fn every_failing_step_of_the_staging_replay_fails_the_open_and_loses_nothing() {
    each_failure(
        &|dir, root| (staged_crash_state(dir, root), 0),
        WritePath::Staged,
        &[OpCode::Write, OpCode::Fdatasync],
    );
}
