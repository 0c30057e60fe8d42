//! The maintainer's file I/O, behind one trait with interchangeable backends: io_uring (the
//! default: batched, linked submissions), plain blocking system calls with the same
//! semantics (for kernels where io_uring is unavailable or disabled), and a fault-injecting
//! wrapper for tests. Submission and completion are separate steps, as in io_uring: nothing
//! completes "inline"; the caller pushes operations, submits once, then reaps completions
//! and matches them by `user_data`.

mod aligned;
mod blocking;
pub mod fault;
pub mod forgetting;
mod lock;
mod sched;
mod sync_dir;
mod uring;

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::time::Duration;

pub use aligned::AlignedBuf;
pub use blocking::BlockingBackend;
pub(crate) use lock::flock_exclusive;
pub(crate) use lock::lock_dir;
pub(crate) use sched::{set_idle_priority, set_nice};
pub(crate) use sync_dir::sync_dir;
pub use uring::UringBackend;

/// What an operation does. Mirrors the io_uring opcodes the maintainer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `pread(fd, buf, len, offset)`
    Read,
    /// `pwrite(fd, buf, len, offset)`
    Write,
    /// `fdatasync(fd)`
    Fdatasync,
    /// `fsync(fd)` (used on directories)
    Fsync,
    /// `ftruncate(fd, offset)`
    Ftruncate,
    /// `close(fd)`
    Close,
    /// `unlinkat(fd, path, 0)`
    Unlink,
    /// `renameat(fd, path, fd, path2)`
    Rename,
}

/// What kind of file an operation touches; fault rules match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A hot segment (`.wal`).
    Segment,
    /// A temporary file (`.wal.lz4.tmp`).
    Tmp,
    /// A cold segment (`.wal.lz4`).
    Cold,
    /// The log directory.
    Dir,
    /// The writer's own mapping of the active segment (Direct mode's `msync` in
    /// `Recorder::sync`); only fault rules use it.
    Mapping,
    /// The creation of a segment file ahead of the writer (both write paths): `Write` is its
    /// `fallocate` (Direct) or a zero-fill step (Staged), `Fdatasync`/`Fsync` its sync, and
    /// `Fsync` the directory's.
    Prepare,
    /// Recovery's own file operations at open (and `walctl repair`'s): `Unlink`, `Rename`,
    /// `Write` (a seal, a copy into quarantine), `Fdatasync`, `Ftruncate`, `Fsync` (a
    /// directory); only fault rules use it.
    Recovery,
    /// `cold.summary`: the maintainer's append of a frozen segment's summary (`Write`).
    Summary,
    /// A cold segment's sparse index (`index/<index>.idx`), unlinked with the segment.
    Index,
}

/// One operation. Raw pointers, as in an io_uring SQE: see [`IoBackend::push`] for how long
/// they must stay valid.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// The operation.
    pub code: OpCode,
    /// What it touches (for fault rules and messages).
    pub target: Target,
    /// File descriptor, or the directory fd for `Unlink`/`Rename`.
    pub fd: RawFd,
    /// Buffer of `Read`/`Write`.
    pub buf: *mut u8,
    /// Length of `Read`/`Write`.
    pub len: u32,
    /// File offset of `Read`/`Write`; new length of `Ftruncate`.
    pub offset: u64,
    /// Path of `Unlink`, old path of `Rename` (relative to `fd`).
    pub path: *const libc::c_char,
    /// New path of `Rename`.
    pub path2: *const libc::c_char,
    /// Returned with the completion.
    pub user_data: u64,
    /// Link to the next operation pushed: it starts only if this one succeeds (fully, for
    /// reads and writes); otherwise it completes with `-ECANCELED`.
    pub link: bool,
}

// SAFETY: the pointers are only dereferenced by the backend while the submitter guarantees
// them valid (the contract of `IoBackend::push`); an `Op` is plain data otherwise.
unsafe impl Send for Op {}

impl Op {
    fn base(code: OpCode, target: Target, fd: RawFd, user_data: u64) -> Op {
        Op {
            code,
            target,
            fd,
            buf: std::ptr::null_mut(),
            len: 0,
            offset: 0,
            path: std::ptr::null(),
            path2: std::ptr::null(),
            user_data,
            link: false,
        }
    }

    /// `pread` into `buf`.
    pub fn read(target: Target, fd: RawFd, buf: &mut [u8], offset: u64, user_data: u64) -> Op {
        Op {
            buf: buf.as_mut_ptr(),
            len: buf.len() as u32,
            offset,
            ..Op::base(OpCode::Read, target, fd, user_data)
        }
    }

    /// `pwrite` of `buf`.
    pub fn write(target: Target, fd: RawFd, buf: &[u8], offset: u64, user_data: u64) -> Op {
        Op {
            buf: buf.as_ptr() as *mut u8,
            len: buf.len() as u32,
            offset,
            ..Op::base(OpCode::Write, target, fd, user_data)
        }
    }

    /// `fdatasync`.
    pub fn fdatasync(target: Target, fd: RawFd, user_data: u64) -> Op {
        Op::base(OpCode::Fdatasync, target, fd, user_data)
    }

    /// `fdatasync` of the byte range `[offset, offset + len)` only (io_uring passes the
    /// range to the kernel's `vfs_fsync_range`; the blocking backend syncs the whole file,
    /// a superset).
    pub(crate) fn fdatasync_range(
        target: Target,
        fd: RawFd,
        offset: u64,
        len: u32,
        user_data: u64,
    ) -> Op {
        Op {
            offset,
            len,
            ..Op::base(OpCode::Fdatasync, target, fd, user_data)
        }
    }

    /// `fsync` (of a directory).
    pub fn fsync(target: Target, fd: RawFd, user_data: u64) -> Op {
        Op::base(OpCode::Fsync, target, fd, user_data)
    }

    /// `ftruncate` to `len`.
    pub fn ftruncate(target: Target, fd: RawFd, len: u64, user_data: u64) -> Op {
        Op {
            offset: len,
            ..Op::base(OpCode::Ftruncate, target, fd, user_data)
        }
    }

    /// `close`.
    pub fn close(target: Target, fd: RawFd, user_data: u64) -> Op {
        Op::base(OpCode::Close, target, fd, user_data)
    }

    /// `unlinkat(dirfd, name)`.
    pub fn unlink(target: Target, dirfd: RawFd, name: &CStr, user_data: u64) -> Op {
        Op {
            path: name.as_ptr(),
            ..Op::base(OpCode::Unlink, target, dirfd, user_data)
        }
    }

    /// `renameat(dirfd, from, dirfd, to)`.
    pub fn rename(target: Target, dirfd: RawFd, from: &CStr, to: &CStr, user_data: u64) -> Op {
        Op {
            path: from.as_ptr(),
            path2: to.as_ptr(),
            ..Op::base(OpCode::Rename, target, dirfd, user_data)
        }
    }

    /// Sets the link flag.
    pub fn linked(mut self) -> Op {
        self.link = true;
        self
    }
}

/// A finished operation: its `user_data` and the result (`>= 0` success, `-errno` failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The operation's `user_data`.
    pub user_data: u64,
    /// Bytes transferred or 0 on success; `-errno` on failure.
    pub result: i32,
}

/// The I/O interface of the maintainer.
pub trait IoBackend: Send {
    /// Short name for logs and reports: "io_uring", "blocking", ...
    fn name(&self) -> &'static str;

    /// Queues `op`. Returns it back if the submission queue is full (submit, reap, retry).
    ///
    /// # Safety
    /// The buffer and paths `op` points to must stay valid and unmoved, and the buffer must
    /// not be accessed otherwise, until the completion with `op.user_data` has been reaped.
    unsafe fn push(&mut self, op: Op) -> Result<(), Op>;

    /// Free submission entries: a linked chain must be pushed whole before a submit.
    fn room(&mut self) -> usize {
        usize::MAX
    }

    /// Hands every queued operation to the kernel (or runs them).
    fn submit(&mut self) -> std::io::Result<()>;

    /// Waits until at least one completion is ready or `timeout` has passed.
    fn wait(&mut self, timeout: Duration) -> std::io::Result<()>;

    /// Moves the ready completions into `out`.
    fn reap(&mut self, out: &mut Vec<Completion>);

    /// Operations pushed whose completion has not been reaped yet.
    fn in_flight(&self) -> usize;

    /// Test support: a fault plan refuses the chain ending with `last` whole
    /// ([`fault::FaultPlan::refuse_chains_ending_with`]).
    fn refuses_chain(&self, _last: &Op) -> bool {
        false
    }
}

/// Pushes a chain of operations (each but the last linked to the next) without splitting
/// it across submissions; submits first if the queue lacks room. All or nothing: if the
/// chain cannot fit even then, nothing of it is queued (a half-pushed chain would leave a
/// dangling link and operations in flight the caller believes were never started).
///
/// # Safety
/// As [`IoBackend::push`], for every operation.
pub unsafe fn push_chain(be: &mut dyn IoBackend, ops: &[Op]) -> std::io::Result<()> {
    assert!(!ops.is_empty(), "a chain has at least one operation");
    if be.refuses_chain(ops.last().expect("not empty")) {
        return Err(std::io::Error::other("submission refused (fault plan)"));
    }
    if be.room() < ops.len() {
        be.submit()?;
    }
    if be.room() < ops.len() {
        return Err(std::io::Error::other(format!(
            "a chain of {} operations does not fit in the submission queue ({} free)",
            ops.len(),
            be.room()
        )));
    }
    for (i, op) in ops.iter().enumerate() {
        let op = if i + 1 < ops.len() { op.linked() } else { *op };
        // SAFETY: forwarded from the caller.
        if unsafe { be.push(op) }.is_err() {
            return Err(std::io::Error::other("io_uring submission queue full"));
        }
    }
    Ok(())
}

/// Turns a completion result into the byte count, or an error naming the operation and file:
/// the one place where `-errno` is decoded.
pub fn check(result: i32, op: &'static str, path: &std::path::Path) -> crate::Result<u32> {
    if result < 0 {
        Err(crate::Error::io(
            op,
            path,
            std::io::Error::from_raw_os_error(-result),
        ))
    } else {
        Ok(result as u32)
    }
}

/// Which backend the maintainer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring, falling back to blocking system calls if io_uring cannot be set up.
    #[default]
    Auto,
    /// io_uring or an error.
    IoUring,
    /// Blocking system calls.
    Blocking,
}

/// Builds the backend for `choice`. With `Auto`, a failure to set up io_uring (ENOSYS, EPERM
/// under seccomp or `io_uring_disabled`, ...) falls back to the blocking backend, logged once;
/// `force_uring_error` simulates such a failure (tests). With `faults` (tests), either backend
/// applies the plan: the blocking one through [`fault::FaultBackend`], io_uring by running
/// the operations a rule matches outside the ring.
pub(crate) fn open_backend(
    choice: BackendChoice,
    entries: u32,
    force_uring_error: Option<i32>,
    core: Option<usize>,
    faults: Option<fault::FaultPlan>,
) -> std::io::Result<(Box<dyn IoBackend>, bool)> {
    let blocking = |faults: Option<fault::FaultPlan>| -> Box<dyn IoBackend> {
        match faults {
            Some(plan) => Box::new(fault::FaultBackend::new(plan)),
            None => Box::new(BlockingBackend::new()),
        }
    };
    // The forgetting disk models the operations the blocking fault backend runs.
    let modelled = faults.as_ref().is_some_and(|p| p.disk().is_some());
    if choice == BackendChoice::Blocking || modelled {
        return Ok((blocking(faults), false));
    }
    let uring = match force_uring_error {
        Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
        None => UringBackend::new(entries, core),
    };
    match uring {
        Ok(b) => Ok((
            match faults {
                Some(plan) => Box::new(b.with_faults(plan)),
                None => Box::new(b),
            },
            false,
        )),
        Err(e) if choice == BackendChoice::Auto => {
            log::warn!("io_uring unavailable ({e}); using blocking system calls");
            Ok((blocking(faults), true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A failed operation cancels the rest of its chain and nothing after the chain.
    fn chain_cancels_after_failure(mut be: Box<dyn IoBackend>) {
        let f = tempfile::tempfile().unwrap();
        let bad_fd = 1_000_000;
        let ops = [
            Op::ftruncate(Target::Segment, bad_fd, 0, 1),
            Op::fdatasync(Target::Segment, f.as_raw_fd(), 2),
            Op::fsync(Target::Segment, f.as_raw_fd(), 3),
        ];
        // SAFETY: no buffers or paths.
        unsafe { push_chain(be.as_mut(), &ops) }.unwrap();
        // SAFETY: no buffers or paths.
        unsafe {
            push_chain(
                be.as_mut(),
                &[Op::fdatasync(Target::Segment, f.as_raw_fd(), 4)],
            )
        }
        .unwrap();
        be.submit().unwrap();
        let mut out = Vec::new();
        while out.len() < 4 {
            be.wait(std::time::Duration::from_millis(10)).unwrap();
            be.reap(&mut out);
        }
        out.sort_by_key(|c| c.user_data);
        let results: Vec<i32> = out.iter().map(|c| c.result).collect();
        assert_eq!(
            results,
            [-libc::EBADF, -libc::ECANCELED, -libc::ECANCELED, 0]
        );
        assert_eq!(be.in_flight(), 0);
    }

    #[test]
    fn blocking_chain_cancels_after_failure() {
        chain_cancels_after_failure(Box::new(BlockingBackend::new()));
    }

    #[test]
    fn uring_chain_cancels_after_failure() {
        chain_cancels_after_failure(Box::new(UringBackend::new(8, None).unwrap()));
    }

    #[test]
    fn a_chain_longer_than_the_free_queue_is_refused_whole() {
        let mut be = UringBackend::new(4, None).unwrap();
        let f = tempfile::tempfile().unwrap();
        let ops: Vec<Op> = (0..6)
            .map(|i| Op::fdatasync(Target::Segment, f.as_raw_fd(), i))
            .collect();
        // SAFETY: no buffers or paths.
        let pushed = unsafe { push_chain(&mut be, &ops) };
        assert!(pushed.is_err(), "six operations cannot fit in four entries");
        assert_eq!(be.in_flight(), 0, "nothing of the refused chain is queued");
        // A chain that fits still goes through afterwards.
        // SAFETY: no buffers or paths.
        unsafe { push_chain(&mut be, &ops[..3]) }.unwrap();
        be.submit().unwrap();
        let mut out = Vec::new();
        while out.len() < 3 {
            be.wait(std::time::Duration::from_millis(10)).unwrap();
            be.reap(&mut out);
        }
        assert!(out.iter().all(|c| c.result == 0), "{out:?}");
    }

    #[test]
    fn fault_chain_cancels_after_injected_failure() {
        let plan = fault::FaultPlan::new();
        plan.fail_always(OpCode::Fdatasync, Target::Tmp, libc::EIO);
        let mut be = fault::FaultBackend::new(plan);
        let f = tempfile::tempfile().unwrap();
        let ops = [
            Op::fdatasync(Target::Tmp, f.as_raw_fd(), 1),
            Op::fsync(Target::Dir, f.as_raw_fd(), 2),
        ];
        // SAFETY: no buffers or paths.
        unsafe { push_chain(&mut be, &ops) }.unwrap();
        be.submit().unwrap();
        let mut out = Vec::new();
        be.reap(&mut out);
        let results: Vec<i32> = out.iter().map(|c| c.result).collect();
        assert_eq!(results, [-libc::EIO, -libc::ECANCELED]);
    }
}
