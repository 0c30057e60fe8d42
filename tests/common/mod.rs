//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wal_recorder::event;
use wal_recorder::segment::names::segment_path;
use wal_recorder::segment::{AppendError, SegmentWriter};

/// Writes `records` synthetic events of `rec_len` bytes, rolling over segments of
/// `seg_size` bytes; seals every segment but the last when `seal_last` is false.
/// Returns the paths of the segments written.
pub fn write_log(
    dir: &Path,
    records: u64,
    rec_len: usize,
    seg_size: u64,
    seal_last: bool,
) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut index = 0;
    let mut w = SegmentWriter::create(dir, index, seg_size, 1, 0).unwrap();
    paths.push(segment_path(dir, index));
    let mut seq = 1;
    while seq <= records {
        match w.append_with(rec_len, |b| event::fill(seq, b)) {
            Ok(s) => {
                assert_eq!(s, seq);
                seq += 1;
            }
            Err(AppendError::Full) => {
                w.seal();
                index += 1;
                w = SegmentWriter::create(dir, index, seg_size, w.next_seq(), w.last_crc())
                    .unwrap();
                paths.push(segment_path(dir, index));
            }
            Err(e) => panic!("append failed: {e:?}"),
        }
    }
    if seal_last {
        w.seal();
    }
    paths
}

/// Flips one bit of a file at `offset`.
pub fn flip_bit(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// Path of the `walctl` binary built for these tests.
pub fn walctl() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_walctl"))
}

/// A tmpfs of a given size mounted on a temporary directory (needs root, as CI has): the
/// way to make ENOSPC happen for real. Unmounted on drop.
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    pub fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a small tmpfs failed: this test needs root (CI runs as root)"
        );
        SmallTmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes `segments` full segments of synthetic 64-byte events of `seg_size` bytes and hands
/// each, sealed, to `sink`. Returns the sealed bytes of every segment (what a `.wal.lz4`
/// must decode to) and the last sequence number.
pub fn write_segments(
    dir: &Path,
    segments: u64,
    seg_size: u64,
    mut sink: impl FnMut(wal_recorder::segment::SealedSegment),
) -> (Vec<Vec<u8>>, u64) {
    let mut sealed = Vec::new();
    let (mut seq, mut crc) = (1u64, 0u32);
    for index in 0..segments {
        let mut w = SegmentWriter::create(dir, index, seg_size, seq, crc).unwrap();
        loop {
            match w.append_with(64, |b| event::fill(seq, b)) {
                Ok(_) => seq += 1,
                Err(AppendError::Full) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        crc = w.last_crc();
        let seg = w.into_sealed();
        let mut bytes = std::fs::read(seg.path()).unwrap();
        bytes.truncate(seg.used() as usize);
        sealed.push(bytes);
        sink(seg);
    }
    (sealed, seq - 1)
}

/// Names of the files in `dir`, sorted, but for the cold segments' summaries
/// (`cold.summary`, a cache the maintainer keeps beside them).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != wal_recorder::logdir::summary::SUMMARY_FILE)
        .collect();
    v.sort();
    v
}

/// Polls `cond` every millisecond for up to 20 s (a liveness bound, not a speed claim).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `walctl verify PATH --json`: (exit code, the JSON object).
pub fn verify_json(path: &Path) -> (Option<i32>, serde_json::Value) {
    let out = walctl()
        .arg("verify")
        .arg(path)
        .arg("--json")
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

/// The `(appended, durable)` pairs of `appended <seq> durable <seq>` progress lines.
pub fn progress_lines(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["appended", a, "durable", d, ..] => Some((a.parse().ok()?, d.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// Spawns `walctl record DIR --progress ARGS...`; the thread returns the last progress line
/// (appended, durable) once the child's stderr closes.
pub fn spawn_record(
    dir: &Path,
    args: &[&str],
) -> (std::process::Child, std::thread::JoinHandle<(u64, u64)>) {
    let (child, _, reader) = spawn_record_watched(dir, args);
    (child, reader)
}

/// The latest progress line of a running `walctl record`, updated as the lines come.
pub type Progress = std::sync::Arc<std::sync::Mutex<(u64, u64)>>;

/// As [`spawn_record`], with the latest (appended, durable) readable while the child runs.
pub fn spawn_record_watched(
    dir: &Path,
    args: &[&str],
) -> (
    std::process::Child,
    Progress,
    std::thread::JoinHandle<(u64, u64)>,
) {
    use std::io::BufRead;
    let mut child = walctl()
        .arg("record")
        .arg(dir)
        .args(args)
        .arg("--progress")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn walctl record");
    let stderr = child.stderr.take().unwrap();
    let latest: Progress = Default::default();
    let seen = latest.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(&p) = progress_lines(&line).first() {
                *seen.lock().unwrap() = p;
            }
        }
        let last = *seen.lock().unwrap();
        last
    });
    (child, latest, reader)
}

/// A private parent for staging directories on the machine's tmpfs (`/dev/shm`), removed on
/// drop, so that tests never share staging with each other. Fails loudly without a tmpfs.
pub fn staging_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("walrec-test-")
        .tempdir_in("/dev/shm")
        .expect("this test needs a tmpfs at /dev/shm for the staging buffers")
}

/// An empty directory `ro` made read-only by a read-only bind mount onto itself (root ignores
/// permission bits; this makes EROFS for real). Unmounted on drop. Needs root.
pub struct ReadOnlyDir {
    _outer: tempfile::TempDir,
    path: PathBuf,
}

impl ReadOnlyDir {
    pub fn mount() -> Self {
        let outer = tempfile::tempdir().unwrap();
        let path = outer.path().join("ro");
        std::fs::create_dir(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(&path)
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "this test needs root for a read-only bind mount"
        );
        ReadOnlyDir {
            _outer: outer,
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// The used length of a sealed segment file (where its seal ends).
#[allow(dead_code)]
pub fn used_len(p: &Path) -> u64 {
    let f = std::fs::File::open(p).unwrap();
    let mut r = wal_recorder::segment::SegmentReader::new(std::io::BufReader::new(f), p).unwrap();
    match r.skip_to_end().unwrap() {
        wal_recorder::segment::SegmentEnd::Sealed(s) => s.end,
        other => panic!("{}: not sealed: {other:?}", p.display()),
    }
}

thread_local! {
    static BACKEND: std::cell::Cell<wal_recorder::io::BackendChoice> =
        const { std::cell::Cell::new(wal_recorder::io::BackendChoice::Auto) };
}

/// The maintainer's I/O backend this test thread runs on (see [`on_both_backends`]); `Auto`
/// outside it.
pub fn backend() -> wal_recorder::io::BackendChoice {
    BACKEND.with(|b| b.get())
}

/// Sets this thread's backend (used by [`on_both_backends`]).
pub fn set_backend(choice: wal_recorder::io::BackendChoice) {
    BACKEND.with(|b| b.set(choice));
}

/// Runs a test twice, as `NAME::io_uring` and `NAME::blocking`: a fault plan reaches the
/// operations of either backend, and each must fail, cancel and retry alike. The test's
/// configs take [`backend()`]. `IoUring` (not `Auto`): a kernel without io_uring fails the
/// test instead of silently testing the blocking backend twice.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($(#[doc = $doc:literal])* fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body() $body

            #[test]
            fn io_uring() {
                $crate::common::set_backend(wal_recorder::io::BackendChoice::IoUring);
                body()
            }

            #[test]
            fn blocking() {
                $crate::common::set_backend(wal_recorder::io::BackendChoice::Blocking);
                body()
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// Record times that mostly advance and sometimes step back (by up to 50 µs, as a re-anchored
/// or NTP-stepped clock does), or repeat: `len` of them from 2026-12-03T09:30:00Z.
pub fn clock(len: std::ops::Range<usize>) -> impl proptest::strategy::Strategy<Value = Vec<u64>> {
    use proptest::prelude::*;
    prop::collection::vec(-50_000i64..200_000, len).prop_map(|steps| {
        let mut t = 1_796_290_200_000_000_000u64;
        steps
            .into_iter()
            .map(|d| {
                t = t.saturating_add_signed(d);
                t
            })
            .collect()
    })
}

/// Appends one record per `(time, payload)` into segments of `seg` bytes with time, from
/// segment 0, sealing each full one and going on in the next; returns the writer of the last
/// segment (unsealed) and its index.
pub fn append_timed<'a>(
    dir: &Path,
    seg: u64,
    records: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> (SegmentWriter, u64) {
    use wal_recorder::segment::format::Framing;
    use wal_recorder::segment::ChainPoint;
    let mut index = 0;
    let mut w =
        SegmentWriter::create_framed(dir, 0, seg, Framing::Timed, ChainPoint::START).unwrap();
    for (t, payload) in records {
        loop {
            match w.append_at(t, payload) {
                Ok(_) => break,
                Err(AppendError::Full) => {
                    w.seal();
                    index += 1;
                    let at = w.chain();
                    w = SegmentWriter::create_framed(dir, index, seg, Framing::Timed, at).unwrap();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    (w, index)
}

/// The sequence numbers from `from` on in the segment files under `dir/quarantine/` (a
/// segment cut at that point is copied there whole, with the records before it).
pub fn quarantined_from(dir: &Path, from: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    let Ok(subs) = std::fs::read_dir(dir.join("quarantine")) else {
        return seqs;
    };
    for sub in subs {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".wal") || name.ends_with(".wal.lz4") {
                let mut r = wal_recorder::LogReader::open_file(&p).unwrap();
                let mut payload = Vec::new();
                while let Some(info) = r.next_record(&mut payload).unwrap() {
                    if info.seq >= from {
                        seqs.push(info.seq);
                    }
                }
            }
        }
    }
    seqs.sort_unstable();
    seqs
}
