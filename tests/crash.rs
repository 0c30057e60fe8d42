//! Crash safety (contracts 4 and 7): `walctl record` runs in a child process that is killed
//! with SIGKILL at pseudo-random moments (during appends, rollovers, freezes, retention), 50
//! times on the same directory. After each kill: `walctl verify` accepts the directory (a
//! torn tail or a tmp file are warnings, not corruption), every record the child reported
//! appended is there, and reopening recovers and continues the sequence contiguously.

mod common;

use std::time::Duration;

use common::{spawn_record, verify_json};
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::log::LogReader;
use wal_recorder::recorder::Recorder;

/// Runs `walctl record` for `delay`, SIGKILLs it; returns its last progress line.
fn run_and_kill(dir: &std::path::Path, delay: Duration) -> (u64, u64) {
    let (mut child, reader) = spawn_record(
        dir,
        &[
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
    reader.join().unwrap()
}

#[test]
fn sigkill_at_random_moments_never_loses_an_appended_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut expected_next = 1u64;
    for trial in 0..50 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(150 + rng % 350);
        let (appended, durable) = run_and_kill(dir.path(), delay);
        assert!(durable <= appended);

        let (code, v) = verify_json(dir.path());
        assert_eq!(code, Some(0), "trial {trial}: {v}");
        let last = v["last_seq"].as_u64().unwrap_or(0);
        assert!(
            last >= appended,
            "trial {trial}: child reported {appended} appended, the log ends at {last}: {v}"
        );
        assert!(
            last + 1 >= expected_next,
            "trial {trial}: records vanished: {v}"
        );

        // Reopen: recovery, then the sequence continues right after the last record.
        let mut cfg = Config::new(dir.path());
        cfg.segment_size = 131_072;
        cfg.max_segments = 2;
        cfg.max_compressed_segments = 3;
        let mut rec = Recorder::open(dir.path(), cfg).unwrap();
        assert_eq!(rec.last_seq(), last, "trial {trial}");
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
}
