//! The staging rows of the recovery table (docs/RECOVERY.md) and the staging directory's
//! safety checks. Each state is built byte by byte: the disk side with the segment writer,
//! the staging side as buffer files holding exactly the bytes a writer would have left there.
//! Needs a tmpfs at /dev/shm (fails loudly without one) and root for the ownership checks.

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{staging_root, write_log};
use wal_recorder::config::Config;
use wal_recorder::logdir::verify;
use wal_recorder::recorder::Recorder;
use wal_recorder::recovery::Action;
use wal_recorder::staging::StagingDir;
use wal_recorder::Error;

const SEG: u64 = 64 * 1024;
const REC: usize = 64;
/// Records per segment of SEG bytes: (65536 - 64 header - 32 seal - 8 never filled) / 80 per
/// record, rounded down.
const PER_SEG: u64 = 817;

fn config(log: &Path, root: &Path) -> Config {
    let mut c = Config::new(log);
    c.segment_size = SEG;
    c.max_segments = 100;
    c.max_compressed_segments = 100;
    c.staging_dir = root.to_path_buf();
    c
}

/// The segment files a writer of `records` records leaves (last one unsealed), as bytes.
fn segments_of(records: u64) -> Vec<Vec<u8>> {
    let scratch = tempfile::tempdir().unwrap();
    write_log(scratch.path(), records, REC, SEG, false)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// A log directory holding `segs` as segment files 0, 1, ...
fn disk_log(segs: &[Vec<u8>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, s) in segs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:020}.wal")), s).unwrap();
    }
    dir
}

/// Leaves `bufs` in the staging directory of `log` under `root`, as a crashed writer would.
fn stage(log: &Path, root: &Path, bufs: &[&[u8]]) -> PathBuf {
    let sd = StagingDir::create(root, log, None).unwrap();
    for (i, bytes) in bufs.iter().enumerate() {
        let f = sd.create_buffer(&format!("buf-{i:02}"), SEG).unwrap();
        f.write_all_at(bytes, 0).unwrap();
    }
    sd.path().to_path_buf()
}

fn last_of(dir: &Path) -> Option<u64> {
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    r.last_seq
}

#[test]
fn staging_ahead_of_disk_is_applied_before_recovery() {
    let root = staging_root();
    // The disk has 1000 records (segment 1 drained up to 182 of its records), staging 1500.
    let disk = disk_log(&segments_of(1000));
    let ahead = segments_of(1500);
    stage(disk.path(), root.path(), &[&ahead[1]]);
    let rec = Recorder::open(disk.path(), config(disk.path(), root.path())).unwrap();
    assert_eq!(rec.last_seq(), 1500);
    assert_eq!(rec.recovered().replayed_records, 500);
    assert!(
        matches!(
            rec.recovered().actions[0],
            Action::Replayed {
                segment: 1,
                records: 500,
                ..
            }
        ),
        "{:?}",
        rec.recovered().actions
    );
    rec.close().unwrap();
    assert_eq!(last_of(disk.path()), Some(1500));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn staged_segment_the_disk_lacks_or_left_zero_is_written_from_staging() {
    let root = staging_root();
    let full = segments_of(2000); // segments 0 and 1 sealed, 2 open (366 records)
    assert_eq!(full.len(), 3);
    // Segment 2 missing on disk, then present but never drained (a zero header).
    for zero_file in [false, true] {
        let mut on_disk = full[..2].to_vec();
        if zero_file {
            on_disk.push(vec![0u8; SEG as usize]);
        }
        let disk = disk_log(&on_disk);
        stage(disk.path(), root.path(), &[&full[2], &full[1]]);
        let rec = Recorder::open(disk.path(), config(disk.path(), root.path())).unwrap();
        assert_eq!(rec.last_seq(), 2000, "zero file {zero_file}");
        assert_eq!(rec.recovered().replayed_records, 2000 - 2 * PER_SEG);
        rec.close().unwrap();
        assert_eq!(last_of(disk.path()), Some(2000));
    }
}

#[test]
fn staging_missing_opens_what_the_disk_holds() {
    let root = staging_root();
    let disk = disk_log(&segments_of(1000));
    let rec = Recorder::open(disk.path(), config(disk.path(), root.path())).unwrap();
    assert_eq!(rec.last_seq(), 1000);
    assert_eq!(rec.recovered().replayed_records, 0);
    rec.close().unwrap();
}

#[test]
fn staging_older_than_disk_is_discarded_and_the_disk_left_alone() {
    let root = staging_root();
    let full = segments_of(2000);
    let disk = disk_log(&full);
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(disk.path().join(format!("{i:020}.wal"))).unwrap())
        .collect();
    // An older copy of segment 2 (fewer records) and a stale buffer of segment 0.
    let older = segments_of(1700);
    stage(disk.path(), root.path(), &[&older[2], &full[0]]);
    let rec = Recorder::open(disk.path(), config(disk.path(), root.path())).unwrap();
    assert_eq!(rec.last_seq(), 2000);
    assert_eq!(rec.recovered().replayed_records, 0);
    let discarded = rec
        .recovered()
        .actions
        .iter()
        .filter(|a| matches!(a, Action::StagingDiscarded { .. }))
        .count();
    assert_eq!(discarded, 2, "{:?}", rec.recovered().actions);
    // Only recovery touched the disk: it sealed segment 2, and cut the sealed 0 and 1 to
    // their used length (what persist would have done); what they hold is byte for byte the
    // same, and only zeros were cut.
    for (i, b) in before.iter().enumerate().take(2) {
        let now = std::fs::read(disk.path().join(format!("{i:020}.wal"))).unwrap();
        assert!(now.len() < b.len(), "segment {i} was not persisted");
        assert_eq!(&b[..now.len()], &now[..], "segment {i}");
        assert!(b[now.len()..].iter().all(|&x| x == 0), "segment {i}");
    }
    drop(rec);
}

#[test]
fn staging_of_another_segment_is_refused_and_nothing_applied() {
    let root = staging_root();
    let disk = disk_log(&segments_of(1000));
    let seg1 = disk.path().join(format!("{:020}.wal", 1));
    let before = std::fs::read(&seg1).unwrap();
    // Segment 1 of a log of 32-byte records: same index, another first sequence number.
    let scratch = tempfile::tempdir().unwrap();
    let other = write_log(scratch.path(), 3000, 32, SEG, false);
    let foreign = std::fs::read(&other[1]).unwrap();
    let buf_dir = stage(disk.path(), root.path(), &[&foreign]);
    let err = Recorder::open(disk.path(), config(disk.path(), root.path()))
        .err()
        .expect("a staging buffer of another segment must be refused");
    assert!(matches!(err, Error::Staging { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("buf-00") && msg.contains("another"), "{msg}");
    assert_eq!(std::fs::read(&seg1).unwrap(), before, "nothing applied");
    assert!(buf_dir.join("buf-00").exists(), "the evidence is kept");
}

#[test]
fn staging_of_another_log_is_refused_and_nothing_applied() {
    let root = staging_root();
    let disk = disk_log(&segments_of(1000));
    let ahead = segments_of(1500);
    let buf_dir = stage(disk.path(), root.path(), &[&ahead[1]]);
    std::fs::write(
        buf_dir.join("log-identity"),
        "dev 1 ino 2 born - path /elsewhere\n",
    )
    .unwrap();
    let err = Recorder::open(disk.path(), config(disk.path(), root.path()))
        .err()
        .expect("another log's staging must be refused");
    assert!(
        matches!(&err, Error::Staging { why, .. } if why.contains("another log")),
        "{err}"
    );
    assert_eq!(last_of(disk.path()), Some(1000), "nothing applied");

    // A buffer holding a segment the log has no place for (far ahead) is refused too.
    let root2 = staging_root();
    let far = segments_of(5 * PER_SEG);
    stage(disk.path(), root2.path(), &[&far[4]]);
    let err = Recorder::open(disk.path(), config(disk.path(), root2.path()))
        .err()
        .expect("a segment with no place in the log must be refused");
    assert!(err.to_string().contains("next segment is 2"), "{err}");
    assert_eq!(last_of(disk.path()), Some(1000));
}

/// The name the staging directory of `log` gets under `root` (made once, then removed).
fn staging_name(log: &Path, root: &Path) -> PathBuf {
    let p = StagingDir::create(root, log, None)
        .unwrap()
        .path()
        .to_path_buf();
    std::fs::remove_dir_all(&p).unwrap();
    p
}

fn refused(log: &Path, root: &Path, what: &str) -> String {
    let err = Recorder::open(log, config(log, root))
        .err()
        .unwrap_or_else(|| panic!("{what} must be refused"));
    assert!(matches!(err, Error::Staging { .. }), "{what}: {err}");
    err.to_string()
}

#[test]
fn a_symlink_planted_as_the_staging_directory_is_refused() {
    let root = staging_root();
    let log = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir_in(root.path()).unwrap();
    let name = staging_name(log.path(), root.path());
    std::os::unix::fs::symlink(victim.path(), &name).unwrap();
    let msg = refused(log.path(), root.path(), "a symlinked staging directory");
    assert!(msg.contains("symlink"), "{msg}");
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(log.path()).unwrap().count(), 0);
}

#[test]
fn a_staging_directory_of_another_owner_or_writable_by_others_is_refused() {
    let root = staging_root();
    let log = tempfile::tempdir().unwrap();
    let name = staging_name(log.path(), root.path());
    std::fs::create_dir(&name).unwrap();
    std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o777)).unwrap();
    let msg = refused(
        log.path(),
        root.path(),
        "a world-writable staging directory",
    );
    assert!(msg.contains("writable by group or others"), "{msg}");
    std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&name, Some(12_345), None)
        .expect("this test needs root to give the directory another owner");
    let msg = refused(
        log.path(),
        root.path(),
        "a staging directory of another user",
    );
    assert!(msg.contains("owned by uid 12345"), "{msg}");
    assert_eq!(
        std::fs::read_dir(&name).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_symlink_planted_inside_the_staging_directory_is_never_followed() {
    let root = staging_root();
    let log = tempfile::tempdir().unwrap();
    let victim = root.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let dir = StagingDir::create(root.path(), log.path(), None).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("buf-00")).unwrap();
    drop(dir);
    let msg = refused(log.path(), root.path(), "a symlinked buffer");
    assert!(msg.contains("buf-00") && msg.contains("symlink"), "{msg}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn staging_outside_a_tmpfs_or_missing_is_a_clear_error() {
    let log = tempfile::tempdir().unwrap();
    let on_disk = tempfile::tempdir().unwrap();
    let msg = refused(log.path(), on_disk.path(), "staging on a disk file system");
    assert!(msg.contains("not a tmpfs"), "{msg}");
    let msg = refused(
        log.path(),
        &on_disk.path().join("nope"),
        "a missing staging dir",
    );
    assert!(msg.contains("nope") && msg.contains("tmpfs"), "{msg}");
    assert_eq!(std::fs::read_dir(log.path()).unwrap().count(), 0);
}

#[test]
fn staging_files_are_private_to_the_user_by_default_and_group_readable_when_asked() {
    let root = staging_root();
    let log = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (group, dir_mode, file_mode) in [(None, 0o700, 0o600), (Some(0u32), 0o750, 0o640)] {
        let mut cfg = config(log.path(), root.path());
        cfg.staging_group = group;
        let rec = Recorder::open(log.path(), cfg).unwrap();
        let sub = std::fs::read_dir(root.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(mode(&sub), dir_mode, "group {group:?}");
        assert_eq!(mode(&sub.join("buf-00")), file_mode, "group {group:?}");
        rec.close().unwrap();
    }
}

#[test]
fn a_failed_open_leaves_no_staging_behind() {
    let root = staging_root();
    let empty = |what: &str| {
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "{what}: staging left behind: {left:?}");
    };
    // Recovery refuses a corrupt log: before the ring exists.
    let log = tempfile::tempdir().unwrap();
    std::fs::write(log.path().join(format!("{:020}.wal", 0)), [7u8; 200]).unwrap();
    assert!(Recorder::open(log.path(), config(log.path(), root.path())).is_err());
    empty("corrupt log");
    // A read-only log directory: the first segment file cannot be made, after the ring.
    let ro = common::ReadOnlyDir::mount();
    let err = Recorder::open(ro.path(), config(ro.path(), root.path())).err();
    assert!(err.is_some(), "a read-only log directory must fail to open");
    empty("read-only log directory");
}

/// `Config::lock_staging` (default on): the staging buffers are locked in memory (CI runs as
/// root, which `RLIMIT_MEMLOCK` does not limit), so tmpfs cannot swap out a page the writer
/// is about to fill; with it off they are not.
#[test]
fn staging_buffers_are_locked_in_memory_unless_turned_off() {
    fn locked_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let root = common::staging_root();
    let mut c = wal_recorder::config::Config::new(dir.path());
    c.segment_size = 4 << 20;
    c.staging_buffers = 3;
    c.staging_dir = root.path().to_path_buf();
    let before = locked_kib();
    let rec = wal_recorder::recorder::Recorder::open(dir.path(), c.clone()).unwrap();
    assert_eq!(
        rec.staging_locked(),
        Some(true),
        "needs root or a large RLIMIT_MEMLOCK"
    );
    // Other tests run in this process: at least our 12 MiB are locked while we hold them.
    assert!(
        locked_kib() >= 12 * 1024,
        "VmLck {} KiB (before: {before})",
        locked_kib()
    );
    rec.close().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    c.dir = dir2.path().to_path_buf();
    c.lock_staging = false;
    let rec = wal_recorder::recorder::Recorder::open(dir2.path(), c).unwrap();
    assert_eq!(rec.staging_locked(), Some(false));
    rec.close().unwrap();
}
