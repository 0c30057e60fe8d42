//! `ffi/install.sh PREFIX` installs what a C or C++ project needs, and the C example builds
//! through `pkg-config --cflags --libs wal_recorder` alone, then runs.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_installed_library_builds_the_c_example_through_pkg_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root.join("ffi/install.sh"))
        .arg(prefix.path())
        .status()
        .unwrap();
    assert!(status.success(), "ffi/install.sh failed");
    for f in [
        "include/wal_recorder.h",
        "include/wal_recorder.hpp",
        "lib/libwal_recorder_ffi.a",
        "lib/libwal_recorder_ffi.so",
    ] {
        assert!(prefix.path().join(f).exists(), "{f} not installed");
    }
    let pc_path = prefix.path().join("lib/pkgconfig");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "wal_recorder"])
        .env("PKG_CONFIG_PATH", &pc_path)
        .output()
        .expect("this test needs pkg-config (scripts/test.sh installs it)");
    assert!(
        flags.status.success(),
        "{}",
        String::from_utf8_lossy(&flags.stderr)
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("libwal_recorder_ffi.a"), "{flags}");
    let prog = prefix.path().join("record_and_read");
    let status = Command::new("cc")
        .arg("-std=c11")
        .arg(root.join("examples/c/record_and_read.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&prog)
        .status()
        .unwrap();
    assert!(status.success(), "cc with {flags}");
    let log = prefix.path().join("log");
    let staging = common::staging();
    let out = Command::new(&prog)
        .arg(&log)
        .arg(staging.path())
        .arg("1000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = wal_recorder::logdir::verify(&log).unwrap();
    assert_eq!(report.last_seq, Some(1000));
}
