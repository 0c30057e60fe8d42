//! What the C ABI costs an append (issue 28): the same stream of 64-byte records appended
//! back to back, alternated in rounds in one run, through
//!
//! - `Recorder::append` from Rust (the baseline), and `Recorder::try_claim` + `commit`;
//! - `wal_append` called from Rust through a function pointer (the ABI's own cost: handle
//!   check, `catch_unwind`, result to `int64_t`, no inlining across the boundary);
//! - `wal_try_claim` + copy + `wal_commit` the same way (zero copy in two calls);
//! - a C program linked against `libwal_recorder_ffi.a` (bench/ffi_append.c), both ways.
//!
//! Each run opens a new log with time, 64 MiB segments, writer on core 0 and maintainer on
//! core 1. Run: `scripts/bench-ffi.sh [rounds]` (it builds the C program).

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use wal_recorder::config::Config;
use wal_recorder::recorder::Recorder;
use wal_recorder_ffi::{
    wal_append, wal_claim_t, wal_close, wal_commit, wal_open, wal_options_init, wal_options_t,
    wal_recorder_t, wal_try_claim,
};

const RECORDS: u64 = 2_000_000;
const WAYS: [&str; 6] = [
    "Rust Recorder::append",
    "Rust Recorder::try_claim + commit",
    "wal_append (from Rust)",
    "wal_try_claim + wal_commit (from Rust)",
    "C program: wal_append",
    "C program: wal_try_claim + wal_commit",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let c_prog = std::env::var_os("WAL_FFI_BENCH_C")
        .expect("WAL_FFI_BENCH_C: the C program (scripts/bench-ffi.sh builds it)");
    let two = core_affinity::get_core_ids().is_some_and(|c| c.len() >= 2);
    if two {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    }
    let staging = tempfile::tempdir_in("/dev/shm").expect("this bench needs a tmpfs at /dev/shm");
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    for round in 0..rounds {
        for (i, row) in rows.iter_mut().enumerate() {
            let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or(".".into()))
                .expect("tempdir");
            let log = dir.path().join("log");
            let ns = match i {
                0 => rust(&log, staging.path(), two, false),
                1 => rust(&log, staging.path(), two, true),
                2 => abi(&log, staging.path(), two, false),
                3 => abi(&log, staging.path(), two, true),
                4 => c_program(&c_prog, &log, staging.path(), "append"),
                _ => c_program(&c_prog, &log, staging.path(), "claim"),
            };
            eprintln!("round {round} {}: {ns:.2} ns/append", WAYS[i]);
            row.push(ns);
        }
    }
    let med: Vec<f64> = rows
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!("| way | ns/append | vs Rust |");
    println!("|---|---:|---:|");
    for (way, ns) in WAYS.iter().zip(&med) {
        println!(
            "| {way} | {ns:.1} | {:+.1} ns ({:.2}x) |",
            ns - med[0],
            ns / med[0]
        );
    }
    println!("\nmedians of {rounds} alternated rounds of {RECORDS} appends of 64 bytes");
}

fn rust(log: &Path, staging: &Path, two: bool, claim: bool) -> f64 {
    let mut c = Config::new(log);
    c.segment_size = 64 << 20;
    c.max_segments = 4;
    c.max_compressed_segments = 2;
    c.staging_dir = staging.to_path_buf();
    c.core = two.then_some(1);
    std::fs::create_dir_all(log).unwrap();
    let mut rec = Recorder::open(log, c).expect("open");
    let payload = [7u8; 64];
    let t = Instant::now();
    for _ in 0..RECORDS {
        if claim {
            rec.try_claim(payload.len())
                .expect("claim")
                .copy_from_slice(std::hint::black_box(&payload));
            rec.commit().expect("commit");
        } else {
            rec.append(std::hint::black_box(&payload)).expect("append");
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / RECORDS as f64;
    rec.close().expect("close");
    ns
}

type AppendFn = unsafe extern "C" fn(*mut wal_recorder_t, *const u8, usize) -> i64;
type ClaimFn = unsafe extern "C" fn(*mut wal_recorder_t, usize, *mut wal_claim_t) -> i32;
type CommitFn = unsafe extern "C" fn(*mut wal_recorder_t, *mut wal_claim_t) -> i64;

fn abi(log: &Path, staging: &Path, two: bool, claim: bool) -> f64 {
    // Through pointers the optimizer cannot see through: as a C caller links them.
    let append: AppendFn = std::hint::black_box(wal_append);
    let try_claim: ClaimFn = std::hint::black_box(wal_try_claim);
    let commit: CommitFn = std::hint::black_box(wal_commit);
    let dir = CString::new(log.to_str().unwrap()).unwrap();
    let staging = CString::new(staging.to_str().unwrap()).unwrap();
    let mut o = std::mem::MaybeUninit::<wal_options_t>::uninit();
    let mut r: *mut wal_recorder_t = std::ptr::null_mut();
    let payload = [7u8; 64];
    // SAFETY: valid pointers to live locals; the handle is used on this thread only and
    // closed once; every claim is written within its `len` bytes before its commit.
    unsafe {
        wal_options_init(o.as_mut_ptr());
        let o = o.assume_init_mut();
        o.segment_size = 64 << 20;
        o.max_segments = 4;
        o.max_compressed_segments = 2;
        o.staging_dir = staging.as_ptr();
        o.core = if two { 1 } else { -1 };
        assert_eq!(wal_open(dir.as_ptr(), o, &mut r), 0, "wal_open");
        let t = Instant::now();
        for _ in 0..RECORDS {
            if claim {
                let mut c = wal_claim_t {
                    data: std::ptr::null_mut(),
                    len: 0,
                };
                assert_eq!(try_claim(r, payload.len(), &mut c), 0);
                std::ptr::copy_nonoverlapping(payload.as_ptr(), c.data, c.len);
                assert!(commit(r, &mut c) > 0);
            } else {
                assert!(append(r, payload.as_ptr(), payload.len()) > 0);
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / RECORDS as f64;
        assert_eq!(wal_close(r), 0, "wal_close");
        ns
    }
}

fn c_program(prog: &std::ffi::OsStr, log: &Path, staging: &Path, mode: &str) -> f64 {
    let out = Command::new(prog)
        .arg(log)
        .arg(staging)
        .arg(RECORDS.to_string())
        .arg(mode)
        .output()
        .expect("run the C program");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ns/append")
}
