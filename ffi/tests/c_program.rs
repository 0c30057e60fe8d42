//! A C program and a C++ program built against `include/` and the static library append,
//! sync, close and read back a log that the Rust reader verifies; bad arguments are refused
//! with codes and messages (examples/c/record_and_read.c, examples/cpp/record_and_read.cpp).

mod common;

use std::path::Path;
use std::process::Command;

use common::build;

/// Builds `source`, runs it twice on one log (the second run recovers it and continues
/// its sequence), and checks the log with the Rust reader; returns the log's directory.
fn two_runs(compiler: &str, std: &str, source: &str, suffix: &str) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let staging = common::staging();
    let prog = work.path().join("prog");
    build(compiler, std, &root.join(source), &prog);
    let log = work.path().join("log");
    for run in 0..2 {
        let out = Command::new(&prog)
            .arg(&log)
            .arg(staging.path())
            .arg("30000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let first = 1 + run * 30000;
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("({first}..={})", first + 29999)),
            "{said}"
        );
    }
    let report = wal_recorder::logdir::verify(&log).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(60000)));
    let mut r = wal_recorder::LogReader::open_at(&log, 45678).unwrap();
    let mut payload = Vec::new();
    let info = r.next_record(&mut payload).unwrap().unwrap();
    assert_eq!(info.seq, 45678);
    assert_eq!(payload, format!("event 45678 from {suffix}").as_bytes());
    work
}

#[test]
fn a_c_program_appends_syncs_closes_and_reads_back_a_log_that_verifies() {
    two_runs("cc", "-std=c11", "examples/c/record_and_read.c", "C");
}

#[test]
fn a_cpp_program_does_the_same_through_the_raii_header() {
    two_runs(
        "c++",
        "-std=c++17",
        "examples/cpp/record_and_read.cpp",
        "C++",
    );
}
