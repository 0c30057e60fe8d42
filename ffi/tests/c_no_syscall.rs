//! Contract 6 through the C ABI: a C writer thread under a seccomp filter (any system call
//! but write, exit and rt_sigreturn kills the process) appends with `wal_append` and with
//! `wal_try_claim` + `wal_commit` across two rollovers (tests/c/no_syscall_writer.c); the
//! log it leaves verifies and holds every record.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn a_c_writer_appends_and_claims_across_rollovers_without_a_system_call() {
    let work = tempfile::tempdir().unwrap();
    let staging = common::staging();
    let prog = work.path().join("no_syscall_writer");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/no_syscall_writer.c");
    common::build("cc", "-std=c11", &source, &prog);
    let log = work.path().join("log");
    // 64-byte records with time: 11 915 per 1 MiB segment, so 30 000 make two rollovers.
    let records = 30_000u64;
    let out = Command::new(&prog)
        .arg(&log)
        .arg(staging.path())
        .arg(records.to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_ne!(
        out.status.signal(),
        Some(libc_sigsys()),
        "the C writer made a system call (killed by SIGSYS): {err}"
    );
    assert!(out.status.success(), "{:?}: {said}{err}", out.status);
    assert_eq!(said.trim(), "ok rollovers=2 stalls=0", "{err}");
    let report = wal_recorder::logdir::verify(&log).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(
        (report.first_seq, report.last_seq),
        (Some(1), Some(records))
    );
}

const fn libc_sigsys() -> i32 {
    31 // SIGSYS on Linux
}
