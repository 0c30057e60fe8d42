//! Crash safety (contracts 4 and 7): `walctl record` runs in a child process that is killed
//! with SIGKILL at pseudo-random moments (during appends, rollovers, freezes, retention), 50
//! times on the same directory. After each kill: `walctl verify` accepts the directory (a
//! torn tail or a tmp file are warnings, not corruption), every record the child reported
//! appended is there, and reopening recovers and continues the sequence contiguously.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::walctl;
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::log::LogReader;
use wal_recorder::recorder::Recorder;

/// Last `appended <seq> durable <seq>` line of a child, read until it dies.
fn run_and_kill(dir: &std::path::Path, delay: Duration) -> (u64, u64) {
    let mut child = walctl()
        .arg("record")
        .arg(dir)
        .args(["--records", "1000000000", "--segment-size", "131072"])
        .args(["--max-segments", "2", "--max-compressed", "3"])
        .args(["--sync-interval-ms", "1", "--progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn walctl record");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = (0, 0);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["appended", a, "durable", d] = f[..] {
                last = (a.parse().unwrap(), d.parse().unwrap());
            }
        }
        last
    });
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

        let out = walctl()
            .arg("verify")
            .arg(dir.path())
            .arg("--json")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "trial {trial}: {v}");
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
