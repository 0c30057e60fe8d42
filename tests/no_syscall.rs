//! Contract 6: appending makes no system call. A forked child enters seccomp strict mode
//! (only read, write, _exit and sigreturn allowed; anything else kills it with SIGKILL), then
//! appends a million records, fills a segment, seals it and continues in an already prepared
//! segment. It reports through a pipe with write(2) and leaves with _exit(2). If any append
//! made a system call, the child dies by SIGKILL and the test fails.

use wal_recorder::event;
use wal_recorder::log::verify;
use wal_recorder::segment::{AppendError, PreparedSegment, SegmentWriter};

const RECORDS: u64 = 1_000_000;

#[test]
fn append_and_rollover_into_a_prepared_segment_make_no_syscall() {
    let dir = tempfile::tempdir().unwrap();
    // 1 M records of 64 bytes are 80 MB: two segments of 48 MiB force one rollover.
    let seg = 48 << 20;
    let mut active = SegmentWriter::create(dir.path(), 0, seg, 1, 0).unwrap();
    let prepared = PreparedSegment::create(dir.path(), 1, seg).unwrap();
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);

    // SAFETY: the child only runs code that neither allocates nor takes locks (the appends
    // and raw system calls), so forking a multi-threaded test process is sound here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: prctl with SECCOMP_MODE_STRICT takes no pointer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT) };
        if rc != 0 {
            // SAFETY: plain _exit.
            unsafe { libc::syscall(libc::SYS_exit, 3) };
        }
        let report = child_appends(&mut active, prepared);
        let bytes = report.to_le_bytes();
        // SAFETY: write and _exit are allowed in strict mode; the buffer is valid.
        unsafe {
            libc::write(fds[1], bytes.as_ptr().cast(), bytes.len());
            libc::syscall(libc::SYS_exit, 0);
        }
        unreachable!();
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child killed by signal {} (9 = SIGKILL: a system call was made)",
        libc::WTERMSIG(status)
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child could not enter strict mode"
    );
    let mut buf = [0u8; 8];
    // SAFETY: reading into a valid 8-byte buffer.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 8);
    let rollovers = u64::from_le_bytes(buf);
    assert_eq!(
        rollovers, 1,
        "the child should have rolled over exactly once"
    );
    // The child's writes went to the shared mappings: the log holds every record.
    drop(active);
    let report = verify(dir.path()).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(report.records, RECORDS);
    assert_eq!(report.segments, 2);
}

/// Runs in the child under seccomp strict mode: appends, seals, activates the prepared
/// segment, appends on. Returns the number of rollovers. Must not allocate or make syscalls;
/// the old writer is kept (not dropped: its munmap would be a syscall).
fn child_appends(active: &mut SegmentWriter, prepared: PreparedSegment) -> u64 {
    let mut next = Some(prepared);
    let mut rollovers = 0;
    let mut second: Option<SegmentWriter> = None;
    let mut seq = 1;
    while seq <= RECORDS {
        let w = second.as_mut().unwrap_or(active);
        match w.append_with(64, |b| event::fill(seq, b)) {
            Ok(_) => seq += 1,
            Err(AppendError::Full) => {
                let seal = w.seal();
                let (next_seq, crc) = (w.next_seq(), seal.last_crc);
                let Some(p) = next.take() else {
                    return u64::MAX;
                };
                second = Some(SegmentWriter::activate(p, next_seq, crc));
                rollovers += 1;
            }
            Err(_) => return u64::MAX - 1,
        }
    }
    if let Some(w) = second.as_mut() {
        w.seal();
    }
    std::mem::forget(second);
    rollovers
}

/// The same through the `Recorder`: the child appends across two rollovers into segments the
/// maintainer prepared, handing the sealed ones to the persist ring, under seccomp strict.
#[test]
fn recorder_append_and_rollover_make_no_syscall() {
    use std::time::{Duration, Instant};
    use wal_recorder::config::Config;
    use wal_recorder::recorder::Recorder;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path());
    cfg.segment_size = 1 << 20;
    cfg.prepared_segments = 2;
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    let start = Instant::now();
    while rec.prepared_ready() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "segments were not prepared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    const N: u64 = 30_000; // 64-byte records: 13 106 per 1 MiB segment, so two rollovers
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs only allocation-free, lock-free code and raw system calls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: no pointer arguments.
        if unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT) } != 0 {
            // SAFETY: plain _exit.
            unsafe { libc::syscall(libc::SYS_exit, 3) };
        }
        let mut ok = 1u8;
        for seq in 1..=N {
            if !matches!(rec.append_with(64, |b| event::fill(seq, b)), Ok(s) if s == seq) {
                ok = 0;
                break;
            }
        }
        let report = [
            ok,
            rec.writer_stats().rollovers as u8,
            rec.writer_stats().stalls as u8,
        ];
        // SAFETY: write and _exit are allowed in strict mode.
        unsafe {
            libc::write(fds[1], report.as_ptr().cast(), 3);
            libc::syscall(libc::SYS_exit, 0);
        }
        unreachable!();
    }
    // SAFETY: closing our write end; waiting for our child.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child killed by signal {} (9 = SIGKILL: a system call was made)",
        libc::WTERMSIG(status)
    );
    assert_eq!(libc::WEXITSTATUS(status), 0);
    let mut report = [0u8; 3];
    // SAFETY: reading into a valid buffer.
    assert_eq!(
        unsafe { libc::read(fds[0], report.as_mut_ptr().cast(), 3) },
        3
    );
    assert_eq!(report, [1, 2, 0], "[appends ok, rollovers, stalls]");
    // The parent's recorder never saw the child's appends: it must not seal over them.
    std::mem::forget(rec);
    let r = verify(dir.path()).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(N));
}
