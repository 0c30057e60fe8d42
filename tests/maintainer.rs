//! The segment maintainer's contracts, run against both backends (io_uring and blocking).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{file_names, wait_for, write_segments};
use wal_recorder::config::{Compression, Config};
use wal_recorder::io::BackendChoice;
use wal_recorder::logdir::verify;
use wal_recorder::maintainer::{Health, SegmentMaintainer};
use wal_recorder::segment::names::{cold_name, hot_name};

const SEG: u64 = 256 * 1024;

fn config(dir: &Path, backend: BackendChoice, hot: usize, cold: usize) -> Config {
    let mut c = Config::new(dir);
    c.backend = backend;
    c.max_segments = hot;
    c.max_compressed_segments = cold;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c
}

fn get(c: &wal_recorder::maintainer::Counter) -> u64 {
    wal_recorder::maintainer::Counter::get(c)
}

/// Runs `n` segments through a started maintainer with limits (hot, cold); returns the
/// sealed bytes and the stats after stop.
fn run(dir: &Path, cfg: Config, n: u64) -> (Vec<Vec<u8>>, u64, SegmentMaintainer) {
    let mut m = SegmentMaintainer::new(cfg).unwrap();
    let mut q = m.take_persist_queue().unwrap();
    m.start().unwrap();
    let (sealed, last) = write_segments(dir, n, SEG, |mut seg| loop {
        match q.push(seg) {
            Ok(()) => break,
            Err(back) => {
                seg = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    m.stop().unwrap();
    (sealed, last, m)
}

fn retention_holds(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let (n, h, c) = (12u64, 3usize, 4usize);
    let (_, last, m) = run(dir.path(), config(dir.path(), backend, h, c), n);
    let mut expect: Vec<String> = (n - h as u64 - c as u64..n - h as u64)
        .map(cold_name)
        .chain((n - h as u64..n).map(hot_name))
        .collect();
    expect.push(wal_recorder::segment::sparse_index::INDEX_DIR.into());
    expect.sort();
    assert_eq!(file_names(dir.path()), expect);
    // Each kept cold segment's sparse index, none of the deleted ones' (hot ones may have
    // theirs: the indexer works on its own time).
    let index_dir = dir
        .path()
        .join(wal_recorder::segment::sparse_index::INDEX_DIR);
    let have = file_names(&index_dir);
    let first_kept = n - h as u64 - c as u64;
    for i in first_kept..n - h as u64 {
        assert!(have.contains(&format!("{i}.idx")), "{i}: {have:?}");
    }
    for name in &have {
        let i: u64 = name.trim_end_matches(".idx").parse().unwrap();
        assert!(
            (first_kept..n).contains(&i),
            "{name}, of a deleted segment: {have:?}"
        );
    }
    let s = m.stats();
    assert_eq!(get(&s.persisted), n);
    assert_eq!(get(&s.frozen), n - h as u64);
    assert_eq!(get(&s.freed), n - h as u64 - c as u64);
    assert_eq!(get(&s.compress_failures), 0);
    assert_eq!(m.health(), Health::Ok);
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!((r.hot, r.cold), (h as u64, c as u64));
    assert_eq!(r.last_seq, Some(last));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Contiguous from the first retained record: exactly the records of the kept segments.
    let per_seg = last / n;
    assert_eq!(r.first_seq, Some(1 + per_seg * (n - h as u64 - c as u64)));
}

fn frozen_segment_is_byte_exact_for_lz4_cli_and_lz4_flex(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let (sealed, _, _) = run(dir.path(), config(dir.path(), backend, 1, 100), 4);
    for (i, want) in sealed.iter().enumerate().take(3) {
        let cold = dir.path().join(cold_name(i as u64));
        let out = std::process::Command::new("lz4")
            .arg("-d")
            .arg("-c")
            .arg(&cold)
            .output()
            .expect("the lz4 command is required (apt-get install lz4)");
        assert!(out.status.success(), "lz4 -d failed on {}", cold.display());
        assert!(
            out.stdout == *want,
            "lz4 -d of segment {i} differs from the sealed .wal"
        );
        let frame = std::fs::read(&cold).unwrap();
        let mut dec = lz4_flex::frame::FrameDecoder::new(&frame[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut dec, &mut back).unwrap();
        assert!(back == *want, "lz4_flex decode of segment {i} differs");
    }
}

fn drain_on_stop_processes_a_full_ring(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), backend, 2, 100);
    cfg.persist_queue = 8;
    let mut m = SegmentMaintainer::new(cfg).unwrap();
    let mut q = m.take_persist_queue().unwrap();
    // Fill the ring before the thread runs, then start and stop at once.
    write_segments(dir.path(), 8, SEG, |seg| assert!(q.push(seg).is_ok()));
    assert_eq!(q.slots(), 0, "the ring should be full");
    m.start().unwrap();
    m.stop().unwrap();
    assert_eq!(get(&m.stats().persisted), 8);
    assert_eq!(get(&m.stats().frozen), 6);
    assert_eq!(verify(dir.path()).unwrap().cold, 6);
}

fn drop_drains_like_stop(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut m = SegmentMaintainer::new(config(dir.path(), backend, 1, 100)).unwrap();
        let mut q = m.take_persist_queue().unwrap();
        m.start().unwrap();
        write_segments(dir.path(), 5, SEG, |seg| assert!(q.push(seg).is_ok()));
    } // Drop
    let r = verify(dir.path()).unwrap();
    assert!(r.ok);
    assert_eq!((r.hot, r.cold), (1, 4));
    assert!(file_names(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
    // Persisted segments are truncated to their used length.
    let hot = std::fs::metadata(dir.path().join(hot_name(4)))
        .unwrap()
        .len();
    assert!(hot < SEG, "persist did not truncate ({hot} bytes)");
}

fn backoff_grows_to_max_and_resets_on_work(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), backend, 100, 100);
    cfg.min_sleep = Duration::from_micros(10);
    cfg.max_sleep = Duration::from_millis(50);
    let mut m = SegmentMaintainer::new(cfg).unwrap();
    let mut q = m.take_persist_queue().unwrap();
    m.start().unwrap();
    let max = Duration::from_millis(50).as_nanos() as u64;
    wait_for("sleep to reach max", || get(&m.stats().sleep_ns) == max);
    let resets_before = get(&m.stats().backoff_resets);
    write_segments(dir.path(), 1, SEG, |seg| assert!(q.push(seg).is_ok()));
    wait_for("persist", || get(&m.stats().persisted) == 1);
    // The turn that did the work resets the sleep to the minimum (counted at its end).
    wait_for("the backoff to reset", || {
        get(&m.stats().backoff_resets) > resets_before
    });
    // ...and grows back to the maximum once idle again.
    wait_for("sleep to reach max again", || {
        get(&m.stats().sleep_ns) == max
    });
    assert!(get(&m.stats().busy_turns) > 0);
    m.stop().unwrap();
}

fn block_mode_segments_verify_as_one_log(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), backend, 2, 100);
    cfg.compression = Compression::Block { level: 0 };
    let (sealed, last, m) = run(dir.path(), cfg, 6);
    assert_eq!(get(&m.stats().frozen), 4);
    let frame = std::fs::read(dir.path().join(cold_name(0))).unwrap();
    assert_eq!(&frame[..8], b"WALRLZB\x01");
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!((r.first_seq, r.last_seq, r.cold), (Some(1), Some(last), 4));
    assert!(get(&m.stats().bytes_out) < sealed[..4].iter().map(|s| s.len() as u64).sum());
}

fn explicit_requests_freeze_and_free_only_our_segments(backend: BackendChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = SegmentMaintainer::new(config(dir.path(), backend, 100, 100)).unwrap();
    let mut q = m.take_persist_queue().unwrap();
    m.start().unwrap();
    write_segments(dir.path(), 3, SEG, |seg| assert!(q.push(seg).is_ok()));
    wait_for("persist", || get(&m.stats().persisted) == 3);
    assert!(m.request_freeze(dir.path().join(hot_name(1))));
    wait_for("freeze", || get(&m.stats().frozen) == 1);
    assert!(dir.path().join(cold_name(1)).exists());
    assert!(m.request_free(dir.path().join(cold_name(1))));
    wait_for("free", || get(&m.stats().freed) == 1);
    assert!(!dir.path().join(cold_name(1)).exists());
    let foreign = dir.path().join("notes.wal");
    std::fs::write(&foreign, b"x").unwrap();
    assert!(m.request_free(foreign.clone()));
    assert!(m.request_freeze(dir.path().join(hot_name(7))));
    wait_for("rejections", || get(&m.stats().rejected_requests) == 2);
    assert!(foreign.exists());
    m.stop().unwrap();
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod io_uring {
            $( #[test] fn $name() { super::$name(wal_recorder::io::BackendChoice::IoUring) } )*
        }
        mod blocking {
            $( #[test] fn $name() { super::$name(wal_recorder::io::BackendChoice::Blocking) } )*
        }
    };
}

suite!(
    retention_holds,
    frozen_segment_is_byte_exact_for_lz4_cli_and_lz4_flex,
    drain_on_stop_processes_a_full_ring,
    drop_drains_like_stop,
    backoff_grows_to_max_and_resets_on_work,
    block_mode_segments_verify_as_one_log,
    explicit_requests_freeze_and_free_only_our_segments
);

#[test]
fn io_uring_setup_failure_falls_back_to_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), BackendChoice::Auto, 1, 100);
    cfg.simulate_uring_error = Some(libc::EPERM);
    let (_, last, m) = run(dir.path(), cfg.clone(), 3);
    assert!(m.stats().fell_back.get());
    assert_eq!(get(&m.stats().frozen), 2);
    assert_eq!(verify(dir.path()).unwrap().last_seq, Some(last));

    cfg.backend = BackendChoice::IoUring;
    let mut strict = SegmentMaintainer::new(cfg).unwrap();
    let err = strict.start().unwrap_err();
    assert!(err.to_string().contains("io_uring setup"), "{err}");
}

#[test]
fn io_uring_is_used_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, m) = run(
        dir.path(),
        config(dir.path(), BackendChoice::Auto, 1, 100),
        2,
    );
    assert!(!m.stats().fell_back.get());
}

#[test]
fn missing_directory_is_a_typed_error() {
    let err = SegmentMaintainer::new(Config::new("/nonexistent/wal"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/wal"), "{err}");
}

#[test]
fn damaged_or_truncated_cold_frame_is_corruption_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        config(dir.path(), BackendChoice::Auto, 1, 100),
        4,
    );
    let cold0 = dir.path().join(cold_name(0));
    let mut b = std::fs::read(&cold0).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&cold0, &b).unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(!r.ok, "{r:?} {:?}", file_names(dir.path()));
    assert!(r.errors[0].contains(&cold_name(0)), "{:?}", r.errors);

    b[mid] ^= 0x55; // repair, then cut the frame short
    std::fs::write(&cold0, &b[..b.len() - 3]).unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(!r.ok);
    assert!(r.errors[0].contains(&cold_name(0)), "{:?}", r.errors);
}

/// The cold files of the same segments, read back in name order.
fn cold_files(dir: &Path) -> Vec<Vec<u8>> {
    file_names(dir)
        .iter()
        .filter(|n| n.ends_with(".wal.lz4"))
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

/// Compression on the loop (0 helpers), on one helper and on three produces the same
/// standard frames, which `lz4 -d` turns back into the sealed segments.
#[test]
fn compression_on_helpers_gives_the_frames_the_loop_gives() {
    let mut frames = Vec::new();
    for threads in [0, 1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), BackendChoice::Auto, 1, 100);
        cfg.compress_threads = threads;
        cfg.auto_accelerate = false; // the backlog, and so the level, depends on timing
        let (sealed, _, m) = run(dir.path(), cfg, 6);
        assert_eq!(get(&m.stats().compress_threads), threads as u64);
        assert_eq!(get(&m.stats().frozen), 5);
        let cold = cold_files(dir.path());
        for (i, f) in cold.iter().enumerate() {
            let mut lz4 = std::process::Command::new("lz4")
                .args(["-d", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("the lz4 command is required (apt-get install lz4)");
            let mut stdin = lz4.stdin.take().unwrap();
            let input = f.clone();
            let feeder = std::thread::spawn(move || {
                std::io::Write::write_all(&mut stdin, &input).unwrap();
            });
            let out = lz4.wait_with_output().unwrap();
            feeder.join().unwrap();
            assert!(
                out.status.success() && out.stdout == sealed[i],
                "segment {i}"
            );
        }
        frames.push(cold);
    }
    assert!(frames[0] == frames[1] && frames[1] == frames[2]);
}

/// A hot backlog far over `max_segments` (eight segments found at start, a limit of one)
/// makes the freezes use LZ4 acceleration, reported in the stats; the frames stay standard
/// and are larger than at acceleration 1.
#[test]
fn a_hot_backlog_raises_lz4_acceleration() {
    let mut sizes = Vec::new();
    for auto in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (sealed, last, _) = run(
            dir.path(),
            config(dir.path(), BackendChoice::Auto, 100, 100),
            8,
        );
        let mut cfg = config(dir.path(), BackendChoice::Auto, 1, 100);
        cfg.auto_accelerate = auto;
        let mut m = SegmentMaintainer::with_existing(cfg, (0..8).collect(), vec![]).unwrap();
        m.start().unwrap();
        wait_for("the freezes", || get(&m.stats().frozen) == 7);
        m.stop().unwrap();
        let s = m.stats();
        match auto {
            true => assert!(get(&s.accelerated_freezes) > 0),
            false => assert_eq!(get(&s.accelerated_freezes), 0),
        }
        let r = verify(dir.path()).unwrap();
        assert!(r.ok && r.last_seq == Some(last), "{r:?}");
        let out = std::process::Command::new("lz4")
            .args(["-d", "-c"])
            .arg(dir.path().join(cold_name(0)))
            .output()
            .expect("the lz4 command is required (apt-get install lz4)");
        assert!(out.status.success() && out.stdout == sealed[0]);
        sizes.push(cold_files(dir.path())[0].len());
    }
    assert!(
        sizes[1] > sizes[0],
        "accelerated frame not larger: {sizes:?}"
    );
}
