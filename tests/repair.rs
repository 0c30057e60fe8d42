//! `walctl repair`: a log the recorder refuses opens again, ended at its first break, with
//! everything after it kept in `quarantine/`, never deleted; `--dry-run` changes nothing.

mod common;

use std::path::Path;

use common::{file_names, flip_bit, walctl, write_log};
use wal_recorder::codec::lz4::compress_frame;
use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::{verify, LogReader};
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::names::{cold_name, hot_name};
use wal_recorder::segment::{truncate_sealed, SegmentEnd, SegmentReader};

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}

const SEG: u64 = 64 * 1024;
const REC: usize = 64;
const PER_SEG: u64 = 817;

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 100;
    c.max_compressed_segments = 100;
    c.write_path = WritePath::Direct;
    c
}

/// A closed log of `n` records: every segment persisted (truncated).
fn closed_log(dir: &Path, n: u64) -> Vec<std::path::PathBuf> {
    let paths = write_log(dir, n, REC, SEG, true);
    for p in &paths {
        let f = std::fs::File::open(p).unwrap();
        let end = match SegmentReader::new(std::io::BufReader::new(f), p)
            .unwrap()
            .skip_to_end()
            .unwrap()
        {
            SegmentEnd::Sealed(s) => s.end,
            other => panic!("{other:?}"),
        };
        truncate_sealed(p, end).unwrap();
    }
    paths
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    file_names(dir)
        .into_iter()
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap_or_default();
            (n, b)
        })
        .collect()
}

fn run_repair(dir: &Path, dry: bool) -> (i32, String, String) {
    let mut cmd = walctl();
    cmd.arg("repair").arg(dir);
    if dry {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Records of one file read on its own.
fn records_in(path: &Path) -> u64 {
    let mut r = LogReader::open_file(path).unwrap();
    let mut buf = Vec::new();
    let mut n = 0;
    while let Ok(Some(_)) = r.next_record(&mut buf) {
        n += 1;
    }
    n
}

#[test]
fn a_flipped_bit_in_a_persisted_segment_is_repaired_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let total = 4 * PER_SEG + 100;
    let paths = closed_log(dir.path(), total);
    // Record 10 of segment 1 damaged: a recorder reading every record refuses the log.
    flip_bit(&paths[1], (HEADER_LEN + 10 * record_size(REC) + 40) as u64);
    let mut c = config(dir.path());
    c.full_scan_on_open = true;
    assert!(Recorder::open(dir.path(), c).is_err());

    let before = snapshot(dir.path());
    let (code, out, err) = run_repair(dir.path(), true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would do: moved"), "{out}");
    assert!(out.contains(&hot_name(2)), "{out}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a dry run changed the directory"
    );
    assert!(!dir.path().join("quarantine").exists());

    let (code, out, err) = run_repair(dir.path(), false);
    assert_eq!(code, 0, "{out}{err}");
    let kept = PER_SEG + 10;
    assert!(
        out.contains(&format!("the log ends at sequence number {kept}")),
        "{out}"
    );
    // It opens now, continuing after the last record before the break.
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    assert_eq!(rec.last_seq(), kept);
    rec.close().unwrap();
    // Nothing was deleted: the segments after the break are in quarantine whole, and the
    // damaged one as it was before the cut.
    let q = dir.path().join("quarantine");
    let mut in_q = file_names(&q);
    in_q.sort();
    assert_eq!(
        in_q,
        vec![hot_name(1), hot_name(2), hot_name(3), hot_name(4)]
    );
    assert_eq!(std::fs::read(q.join(hot_name(1))).unwrap(), before[1].1);
    let later: u64 = (2..=4).map(|i| records_in(&q.join(hot_name(i)))).sum();
    assert_eq!(later, total - 2 * PER_SEG);
    let r = verify(dir.path()).unwrap();
    assert!(r.ok && r.warnings.is_empty(), "{r:?}");
}

#[test]
fn repair_of_a_healthy_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 2 * PER_SEG + 5);
    let before = snapshot(dir.path());
    let (code, out, _) = run_repair(dir.path(), false);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to repair"), "{out}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn repair_refuses_a_log_a_recorder_holds() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    let (code, _, err) = run_repair(dir.path(), false);
    assert_eq!(code, 1);
    assert!(err.contains("lock") || err.contains("Lock"), "{err}");
    rec.close().unwrap();
}

/// A `.wal` next to a valid `.wal.lz4` of other content stops the open; repair keeps the
/// `.wal` and sets the frame aside.
#[test]
fn repair_sets_aside_a_compressed_copy_that_differs_from_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let paths = closed_log(dir.path(), 2 * PER_SEG + 5);
    let other = compress_frame(b"not the segment", 0).unwrap();
    std::fs::write(dir.path().join(cold_name(1)), &other).unwrap();
    assert!(Recorder::open(dir.path(), config(dir.path())).is_err());
    let (code, out, err) = run_repair(dir.path(), false);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(dir.path().join("quarantine").join(cold_name(1))).unwrap(),
        other
    );
    assert!(paths[1].exists());
    let rec = Recorder::open(dir.path(), config(dir.path())).unwrap();
    assert_eq!(rec.last_seq(), 2 * PER_SEG + 5);
    rec.close().unwrap();
}

/// Copies the regular files of `from` into `to` (created with `mode`).
fn copy_files(from: &Path, to: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A Staged log as a crash leaves it: 100 records on disk (drained and synced), a 101st,
/// empty (a 16-byte frame, shorter than a seal), only in the staging buffer.
fn crashed_with_a_short_record_in_staging() -> (tempfile::TempDir, tempfile::TempDir, Config) {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log");
    std::fs::create_dir(&log).unwrap();
    let root = common::staging_root();
    let mut c = config(&log);
    c.write_path = WritePath::Staged;
    c.staging_dir = root.path().to_path_buf();
    c.sync_interval = std::time::Duration::from_secs(10);
    c.continuous_drain = false;
    let mut rec = Recorder::open(&log, c.clone()).unwrap();
    for i in 0..100u64 {
        rec.append(&i.to_le_bytes()).unwrap();
    }
    rec.sync().unwrap();
    assert_eq!(rec.append(&[]).unwrap(), 101); // only in staging: no drain for 10 s
                                               // The crash, as the disk and tmpfs hold it now.
    let staging = wal_recorder::staging::staging_path(root.path(), &log).unwrap();
    let (disk_copy, staging_copy) = (work.path().join("disk"), work.path().join("staging"));
    copy_files(&log, &disk_copy, 0o755);
    copy_files(&staging, &staging_copy, 0o700);
    rec.close().unwrap();
    for name in file_names(&log) {
        if log.join(&name).is_file() {
            std::fs::remove_file(log.join(name)).unwrap();
        }
    }
    copy_files(&disk_copy, &log, 0o755);
    copy_files(&staging_copy, &staging, 0o700);
    (work, root, c)
}

fn assert_reopens_with_101(c: Config) {
    let log = c.dir.clone();
    let rec = Recorder::open(&log, c).unwrap();
    assert_eq!(rec.last_seq(), 101, "{:?}", rec.recovered().actions);
    rec.close().unwrap();
    let r = verify(&log).unwrap();
    assert!(r.ok && r.last_seq == Some(101), "{r:?}");
}

/// Kill, repair, reopen: the record that only the staging buffer held survives, because
/// repair applies the staging buffers before it reads the disk.
#[test]
fn repair_applies_staging_first_and_a_short_record_only_staging_held_survives() {
    let (_work, root, c) = crashed_with_a_short_record_in_staging();
    let out = walctl()
        .arg("repair")
        .arg(&c.dir)
        .arg("--staging-dir")
        .arg(root.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("applied from"), "{text}");
    let staging = wal_recorder::staging::staging_path(root.path(), &c.dir).unwrap();
    assert!(!staging.exists(), "applied buffers are removed");
    assert_reopens_with_101(c);
}

/// The disk copy sealed after 100 records (a repair that could not see the staging
/// buffers) ends further on than the buffer's 101 records: replay compares records, so the
/// open still applies the buffer.
#[test]
fn replay_compares_records_not_offsets_over_a_sealed_disk_copy() {
    let (_work, _root, c) = crashed_with_a_short_record_in_staging();
    let elsewhere = tempfile::tempdir().unwrap();
    let r = wal_recorder::recovery::repair_with(&c.dir, false, elsewhere.path()).unwrap();
    assert_eq!(r.next_seq, 101, "{:?}", r.actions);
    assert_reopens_with_101(c);
}
