//! `walctl` as a new user meets it: bad values are usage errors (exit 2) that create
//! nothing, limits are warned about, sizes take units, and `ls`, `cat` and `verify` follow
//! contract 8's exit codes.

mod common;

use std::path::Path;
use std::process::Output;

use common::{file_names, walctl, write_log};

fn run(args: &[&str]) -> Output {
    walctl().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each bad value exits 2 with a message naming the option, and leaves no directory behind.
#[test]
fn bad_record_options_are_usage_errors_that_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.to_str().unwrap();
    for (args, says) in [
        (vec!["--segment-size", "1"], "segment_size"),
        (vec!["--max-segments", "0"], "max_segments"),
        (vec!["--sync-interval-ms", "0"], "--sync-interval-ms"),
        (
            vec!["--record-size", "2M", "--segment-size", "1M"],
            "--record-size",
        ),
        (vec!["--segment-size", "12Q"], "size unit"),
    ] {
        let mut all = vec!["record", l, "--records", "10"];
        all.extend(&args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!log.exists(), "{args:?} created the log directory");
    }
}

/// A value over a limit is used at the limit, with a warning naming the value used.
#[test]
fn a_value_over_a_limit_is_clamped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let out = run(&[
        "record",
        log.to_str().unwrap(),
        "--records",
        "1000",
        "--segment-size",
        "256K",
        "--max-segments",
        "100000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let max = wal_recorder::constants::MAX_HOT_SEGMENTS.to_string();
    assert!(
        stderr(&out).contains("--max-segments 100000") && stderr(&out).contains(&max),
        "{}",
        stderr(&out)
    );
}

#[test]
fn record_on_a_regular_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let out = run(&["record", file.to_str().unwrap(), "--records", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

/// A sealed log of `records` 64-byte events in 64 KiB segments; the number of segments.
fn log_of(dir: &Path, records: u64) -> usize {
    write_log(dir, records, 64, 64 * 1024, true).len()
}

/// `cat` with `--from` after `--to`, or a range the log does not hold, is a usage error
/// naming what the log holds; a range it holds prints exactly those records.
#[test]
fn cat_ranges_outside_the_log_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let last = 1500;
    assert!(log_of(dir.path(), last) >= 2);
    let d = dir.path().to_str().unwrap();
    let out = run(&["cat", d, "--from", "10", "--to", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let beyond = (last + 10).to_string();
    let out = run(&["cat", d, "--from", &beyond]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&last.to_string()), "{}", stderr(&out));
    let out = run(&["cat", d, "--from", "3", "--to", "5"]);
    assert_eq!(out.status.code(), Some(0));
    let seqs: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(seqs, ["3", "4", "5"]);
}

/// `ls` exits as `verify` does: 0 on a good log, 1 on a damaged one, and its JSON lists
/// every segment.
#[test]
fn ls_follows_verify_and_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let segments = log_of(dir.path(), 2500);
    assert!(segments >= 3);
    let d = dir.path().to_str().unwrap();
    let out = run(&["ls", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["segments"].as_array().unwrap().len(), segments);
    assert_eq!(v["segments"][1]["state"], "sealed");
    // Flip a byte inside the middle segment's records: a checksum break.
    let names = file_names(dir.path());
    common::flip_bit(&dir.path().join(&names[1]), 200);
    let out = run(&["ls", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("error"), "{}", stderr(&out));
}

#[test]
fn verify_of_a_directory_without_a_log_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no wal-recorder log"),
        "{}",
        stderr(&out)
    );
}

/// `walctl --help` names `record` and the exit codes; `walctl help --help` works.
#[test]
fn help_names_the_main_job_and_the_exit_codes() {
    let out = run(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Record") && text.contains("Exit codes"),
        "{text}"
    );
    assert_eq!(run(&["help", "--help"]).status.code(), Some(0));
}

/// A damaged LZ4 frame is reported with its file named once and one offset (the compressed
/// one, where the frame breaks).
#[test]
fn a_frame_error_names_the_file_once_and_one_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.to_str().unwrap();
    let out = run(&[
        "record",
        l,
        "--records",
        "20000",
        "--segment-size",
        "64K",
        "--max-segments",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cold = file_names(&log)
        .into_iter()
        .find(|n| n.ends_with(".wal.lz4"))
        .expect("a cold segment");
    let path = log.join(&cold);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let out = run(&["verify", l]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains(&cold))
        .expect("names the file");
    assert_eq!(line.matches(&cold).count(), 1, "{line}");
    assert_eq!(line.matches("offset").count(), 1, "{line}");
    assert!(line.contains("compressed offset"), "{line}");
}
