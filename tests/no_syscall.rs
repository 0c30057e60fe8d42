//! Contract 6: appending makes no system call. A forked child installs a seccomp filter that
//! allows only write, _exit and sigreturn and kills the process on anything else (strict mode
//! would do the same but also disables the TSC, which the vDSO clock needs), then
//! appends a million records, fills a segment, seals it and continues in an already prepared
//! segment. It reports through a pipe with write(2) and leaves with _exit(2). If any append
//! made a system call, the child dies by SIGKILL and the test fails.

mod common;

use wal_recorder::event;
use wal_recorder::logdir::verify;
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
        if !enter_syscall_jail() {
            // SAFETY: plain _exit.
            unsafe { libc::syscall(libc::SYS_exit, 3) };
        }
        let report = child_appends(&mut active, prepared);
        let bytes = report.to_le_bytes();
        // SAFETY: write and _exit are allowed by the filter; the buffer is valid.
        unsafe {
            libc::write(fds[1], bytes.as_ptr().cast(), bytes.len());
            libc::syscall(libc::SYS_exit, 0);
        }
        unreachable!();
    }
    let mut buf = [0u8; 8];
    wait_for_child(pid, fds, &mut buf);
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

/// Waits for the jailed child `pid`, asserts it exited normally (a system call would have
/// killed it with SIGSYS), and reads its report from the pipe `fds` into `report`.
fn wait_for_child(pid: libc::pid_t, fds: [libc::c_int; 2], report: &mut [u8]) {
    // SAFETY: closing our copy of the write end; waiting for our own child.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child killed by signal {} (31 = SIGSYS: a system call was made)",
        libc::WTERMSIG(status)
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child could not install the seccomp filter"
    );
    // SAFETY: reading into a valid buffer of report.len() bytes.
    let n = unsafe { libc::read(fds[0], report.as_mut_ptr().cast(), report.len()) };
    assert_eq!(n, report.len() as isize);
}

/// Allows only write, _exit and rt_sigreturn from here on; any other system call kills the
/// process (SIGSYS). False if the filter could not be installed.
fn enter_syscall_jail() -> bool {
    use libc::{sock_filter, sock_fprog, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let allow_if = |nr: libc::c_long| {
        [
            sock_filter {
                code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: nr as u32,
            },
            stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        ]
    };
    // No allocation: this runs in a forked child of a multi-threaded process.
    let [w0, w1] = allow_if(libc::SYS_write);
    let [e0, e1] = allow_if(libc::SYS_exit);
    let [r0, r1] = allow_if(libc::SYS_rt_sigreturn);
    let mut prog = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 0), // seccomp_data.nr
        w0,
        w1,
        e0,
        e1,
        r0,
        r1,
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; fprog points to a valid filter that outlives the call.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const sock_fprog,
            ) == 0
    }
}

/// Runs in the child under the seccomp filter: appends, seals, activates the prepared
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
                w.seal();
                let (framing, at) = (w.framing(), w.chain());
                let Some(p) = next.take() else {
                    return u64::MAX;
                };
                second = Some(SegmentWriter::activate(p, framing, at));
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

/// The same through the `Recorder`, in the default Staged mode: the child appends across two
/// rollovers into staging buffers the maintainer prepared, handing the sealed ones to the
/// persist ring, under the seccomp filter.
#[test]
fn staged_recorder_append_and_rollover_make_no_syscall() {
    recorder_append_and_rollover_make_no_syscall(wal_recorder::config::WritePath::Staged, false);
}

/// The same in a log with time: every append reads the writer's clock (the TSC and the
/// maintainer's anchor), still without a system call.
#[test]
fn staged_recorder_with_time_stamps_records_without_a_syscall() {
    recorder_append_and_rollover_make_no_syscall(wal_recorder::config::WritePath::Staged, true);
}

/// The same in Direct mode (the writer maps the segment files).
#[test]
fn direct_recorder_append_and_rollover_make_no_syscall() {
    recorder_append_and_rollover_make_no_syscall(wal_recorder::config::WritePath::Direct, false);
}

fn recorder_append_and_rollover_make_no_syscall(
    path: wal_recorder::config::WritePath,
    record_time: bool,
) {
    use std::time::{Duration, Instant};
    use wal_recorder::config::{Config, WritePath};
    use wal_recorder::recorder::Recorder;

    let dir = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut cfg = Config::new(dir.path());
    cfg.segment_size = 1 << 20;
    cfg.prepared_segments = 2;
    cfg.write_path = path;
    cfg.staging_dir = staging.path().to_path_buf();
    cfg.record_time = record_time;
    let mut rec = Recorder::open(dir.path(), cfg).unwrap();
    let start = Instant::now();
    while rec.prepared_ready() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "segments were not prepared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // 64-byte records: 13 106 (11 915 with time) per 1 MiB segment, so two rollovers.
    const N: u64 = 30_000;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs only allocation-free, lock-free code and raw system calls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        if !enter_syscall_jail() {
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
        // SAFETY: write and _exit are allowed by the filter.
        unsafe {
            libc::write(fds[1], report.as_ptr().cast(), 3);
            libc::syscall(libc::SYS_exit, 0);
        }
        unreachable!();
    }
    let mut report = [0u8; 3];
    wait_for_child(pid, fds, &mut report);
    assert_eq!(report, [1, 2, 0], "[appends ok, rollovers, stalls]");
    // The parent's recorder never saw the child's appends: it must not seal over them.
    std::mem::forget(rec);
    let log = match path {
        WritePath::Direct => dir.path().to_path_buf(),
        // The child's records are in the shared staging buffers: read them as a log.
        WritePath::Staged => staging_as_log(staging.path(), &dir.path().join("staged")),
    };
    let r = verify(&log).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(r.last_seq, Some(N));
    let mut reader = wal_recorder::logdir::LogReader::open_dir(&log).unwrap();
    let first = reader.next_record(&mut Vec::new()).unwrap().unwrap();
    assert_eq!(first.time.is_some(), record_time, "{first:?}");
}

/// Copies every staging buffer under `root` that holds a segment into `out` under its
/// segment name, so the log reader can check what the writer put there.
fn staging_as_log(root: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    use wal_recorder::segment::format::{SegmentHeader, HEADER_LEN};
    std::fs::create_dir(out).unwrap();
    let sub = std::fs::read_dir(root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for e in std::fs::read_dir(&sub).unwrap() {
        let p = e.unwrap().path();
        if !p.file_name().unwrap().to_str().unwrap().starts_with("buf-") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        if bytes[..HEADER_LEN].iter().all(|&b| b == 0) {
            continue;
        }
        let h = SegmentHeader::decode(&bytes[..HEADER_LEN]).unwrap();
        std::fs::write(
            out.join(wal_recorder::segment::names::hot_name(h.index)),
            bytes,
        )
        .unwrap();
    }
    out.to_path_buf()
}
