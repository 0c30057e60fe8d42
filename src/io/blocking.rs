//! Blocking-syscall backend: runs each queued operation at `submit`, in order, with io_uring's
//! link semantics (after a failed or short linked operation, the rest of the chain completes
//! with `-ECANCELED`).

use std::collections::VecDeque;
use std::time::Duration;

use super::{Completion, IoBackend, Op, OpCode};

/// See the module docs.
#[derive(Default)]
pub struct BlockingBackend {
    queued: VecDeque<Op>,
    done: VecDeque<Completion>,
}

impl BlockingBackend {
    /// A backend with empty queues.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Runs one operation with a system call; `-errno` on failure.
///
/// # Safety
/// The pointers in `op` must be valid as promised to [`IoBackend::push`].
pub(crate) unsafe fn run(op: &Op) -> i32 {
    // SAFETY: the caller guarantees the buffer and paths are valid for the operation.
    let rc: isize = unsafe {
        match op.code {
            OpCode::Read => libc::pread(op.fd, op.buf.cast(), op.len as usize, op.offset as i64),
            OpCode::Write => libc::pwrite(op.fd, op.buf.cast(), op.len as usize, op.offset as i64),
            OpCode::Fdatasync => libc::fdatasync(op.fd) as isize,
            OpCode::Fsync => libc::fsync(op.fd) as isize,
            OpCode::Ftruncate => libc::ftruncate(op.fd, op.offset as i64) as isize,
            OpCode::Close => libc::close(op.fd) as isize,
            OpCode::Unlink => libc::unlinkat(op.fd, op.path, 0) as isize,
            OpCode::Rename => libc::renameat(op.fd, op.path, op.fd, op.path2) as isize,
        }
    };
    if rc < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        rc as i32
    }
}

/// Whether a completion breaks a link chain (failure, or a short transfer).
pub(crate) fn breaks_chain(op: &Op, result: i32) -> bool {
    result < 0 || (matches!(op.code, OpCode::Read | OpCode::Write) && (result as u32) < op.len)
}

impl BlockingBackend {
    /// Runs the queued operations in order through `exec` (which returns the result),
    /// cancelling the rest of a chain after a failed or short linked operation.
    pub(crate) fn run_queued(&mut self, mut exec: impl FnMut(&Op) -> i32) {
        let mut cancel_rest = false;
        while let Some(op) = self.queued.pop_front() {
            let result = if cancel_rest {
                -libc::ECANCELED
            } else {
                exec(&op)
            };
            cancel_rest = op.link && (cancel_rest || breaks_chain(&op, result));
            self.done.push_back(Completion {
                user_data: op.user_data,
                result,
            });
        }
    }
}

impl IoBackend for BlockingBackend {
    fn name(&self) -> &'static str {
        "blocking"
    }

    unsafe fn push(&mut self, op: Op) -> Result<(), Op> {
        self.queued.push_back(op);
        Ok(())
    }

    fn submit(&mut self) -> std::io::Result<()> {
        self.run_queued(|op| {
            // SAFETY: push's contract keeps the pointers valid until the completion is
            // reaped, which is after this call.
            unsafe { run(op) }
        });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        if self.done.is_empty() {
            std::thread::sleep(timeout);
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.done.len()
    }
}
