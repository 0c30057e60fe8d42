//! Crash safety (contracts 4 and 7): `walctl record` runs in a child process that is killed
//! with SIGKILL at pseudo-random moments (during appends, rollovers, drains, freezes,
//! retention), many times on the same directory, in each write path. After each kill:
//! `walctl verify` accepts the directory as the crash left it (a torn tail or a tmp file are
//! warnings, not corruption) and holds at least every record reported durable; reopening
//! (which, in Staged mode, first applies the staging buffers the child left in tmpfs) has
//! every record the child reported appended, and continues the sequence contiguously.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{spawn_record, staging_root, verify_json};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::logdir::LogReader;
use wal_recorder::recorder::Recorder;

/// Runs `walctl record` for `delay`, SIGKILLs it; returns its last progress line's durable
/// seq and the exact sequence number of its last append that returned (the child stores it
/// in a shared mapping after each append: the kill may land between an append and that
/// store, so the log may hold one more).
fn run_and_kill(dir: &Path, staging: &Path, path: &str, delay: Duration) -> (u64, u64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let (mut child, reader) = spawn_record(
        dir,
        &[
            "--report-appended",
            report.path().to_str().unwrap(),
            "--write-path",
            path,
            "--staging-dir",
            staging.to_str().unwrap(),
            "--records",
            "1000000000",
            "--segment-size",
            "131072",
            "--max-segments",
            "2",
            "--max-compressed",
            "3",
            "--sync-interval-ms",
            "1",
        ],
    );
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    child.wait().unwrap();
    let (_, durable) = reader.join().unwrap();
    let bytes = std::fs::read(report.path()).unwrap();
    // Killed before it made its report (a loaded machine, a short delay): nothing appended.
    let appended = bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    (appended, durable)
}

/// Each file of `dir`: name, size, and whether its 64-byte header is all zeros (for failure
/// messages).
fn listing(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            let zero = bytes.iter().take(64).all(|&b| b == 0);
            format!(
                "{} {} bytes{}",
                p.file_name().unwrap().to_string_lossy(),
                bytes.len(),
                if zero { " zero header" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn staged_sigkill_at_random_moments_never_loses_an_appended_record() {
    sigkill_loop(WritePath::Staged, 40);
}

#[test]
fn direct_sigkill_at_random_moments_never_loses_an_appended_record() {
    sigkill_loop(WritePath::Direct, 25);
}

fn sigkill_loop(path: WritePath, trials: u32) {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_root();
    let name = if path == WritePath::Staged {
        "staged"
    } else {
        "direct"
    };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut expected_next = 1u64;
    let mut replayed = 0;
    for trial in 0..trials {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(150 + rng % 350);
        let (appended, durable) = run_and_kill(dir.path(), staging.path(), name, delay);
        // Killed before its first append (a slow open on a loaded machine): the last
        // append that returned is the previous trial's.
        let appended = if appended == 0 {
            expected_next - 1
        } else {
            appended
        };
        assert!(durable <= appended);

        // The disk as the crash left it: a valid log holding at least what was durable (in
        // Direct mode the shared mapping holds everything appended).
        let (code, v) = verify_json(dir.path());
        assert_eq!(code, Some(0), "trial {trial}: {v}\n{}", listing(dir.path()));
        let on_disk = v["last_seq"].as_u64().unwrap_or(0);
        let floor = if path == WritePath::Staged {
            durable
        } else {
            appended
        };
        assert!(
            on_disk >= floor,
            "trial {trial}: child reported {durable} durable, {appended} appended; the disk ends at {on_disk}: {v}"
        );

        if path == WritePath::Staged {
            let out = common::walctl()
                .args(["verify", "--json", "--staging-dir"])
                .arg(staging.path())
                .arg(dir.path())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("staging buffers of this log exist"),
                "trial {trial}: verify does not point at the staging buffers: {text}"
            );
        }

        // Reopen: staging replay and recovery; every appended record is there, and the
        // sequence continues right after the last one.
        let mut cfg = Config::new(dir.path());
        cfg.segment_size = 131_072;
        cfg.max_segments = 2;
        cfg.max_compressed_segments = 3;
        cfg.write_path = path;
        cfg.staging_dir = staging.path().to_path_buf();
        let mut rec = Recorder::open(dir.path(), cfg).unwrap();
        let last = rec.last_seq();
        replayed += rec.recovered().replayed_records;
        // Exactly what was appended: the last append that returned, or the one after it
        // if the kill landed between its return and the report.
        assert!(
            (appended..=appended + 1).contains(&last) && last >= on_disk,
            "trial {trial}: the child's last append was {appended}, the log ends at {last}"
        );
        assert!(last + 1 >= expected_next, "trial {trial}: records vanished");
        for _ in 0..10 {
            let seq = rec.last_seq() + 1;
            assert_eq!(rec.append_with(64, |b| event::fill(seq, b)).unwrap(), seq);
        }
        rec.close().unwrap();
        expected_next = last + 11;
    }
    // Everything retained is exactly the deterministic stream, contiguous.
    let mut r = LogReader::open_dir(dir.path()).unwrap();
    let mut buf = Vec::new();
    let mut prev = None;
    while let Some(info) = r.next_record(&mut buf).unwrap() {
        assert!(event::matches(info.seq, &buf), "payload of {}", info.seq);
        if let Some(p) = prev {
            assert_eq!(info.seq, p + 1);
        }
        prev = Some(info.seq);
    }
    assert_eq!(prev, Some(expected_next - 1));
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    if path == WritePath::Staged {
        // The kills land while records are only in tmpfs often enough to prove the replay.
        assert!(replayed > 0, "no trial needed the staging replay");
    }
    // A clean close leaves no staging behind.
    assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
}
