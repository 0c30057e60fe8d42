//! Building C and C++ programs against `include/` and the release static library.
#![allow(dead_code)] // each test binary uses what it needs

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The release static library a C or C++ project links (`target/release/libwal_recorder_ffi.a`),
/// built here: `cargo test` builds only the rlib the Rust tests link.
pub fn static_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "--release", "-p", "wal-recorder-ffi"])
            .current_dir(root)
            .status()
            .expect("running cargo build for the static library");
        assert!(
            status.success(),
            "cargo build --release -p wal-recorder-ffi failed"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let lib = target.join("release/libwal_recorder_ffi.a");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

pub fn build(compiler: &str, std: &str, source: &Path, out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(source)
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("this test needs {compiler} (a C/C++ compiler): {e}"));
    assert!(status.success(), "compiling {}", source.display());
}

/// A private staging directory on the machine's tmpfs, removed on drop; fails loudly
/// without one.
pub fn staging() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("walrec-ffi-")
        .tempdir_in("/dev/shm")
        .expect("this test needs a tmpfs at /dev/shm")
}
