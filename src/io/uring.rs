//! io_uring backend: one ring, operations pushed as SQEs (linked where asked), submitted with
//! one `io_uring_enter`, completions reaped from the CQ. An opcode the running kernel lacks
//! (found with the probe at setup; FTRUNCATE needs 6.9) is run as a blocking call at push
//! time, keeping the chain semantics.

use std::collections::VecDeque;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::blocking::{breaks_chain, run};
use super::{Completion, IoBackend, Op, OpCode};

/// See the module docs.
pub struct UringBackend {
    ring: IoUring,
    /// Whether the kernel supports IORING_OP_FTRUNCATE.
    has_ftruncate: bool,
    /// Completions of emulated or cancelled operations, reaped before the CQ.
    synthetic: VecDeque<Completion>,
    /// The previous pushed operation was linked and failed during emulation: cancel until the
    /// chain ends.
    cancel_chain: bool,
    in_flight: usize,
    /// Whether `io_uring_enter` takes a timeout (IORING_FEAT_EXT_ARG, kernel 5.11). Older
    /// kernels wait on a timeout operation instead ([`WAKE`]).
    ext_arg: bool,
    /// A [`WAKE`] timeout is queued and has not completed yet.
    wake_pending: bool,
    /// Its duration (the kernel copies it when it takes the SQE).
    wake_ts: Box<types::Timespec>,
}

/// user_data of the timeout operation `wait` uses where `io_uring_enter` cannot time out:
/// it completes at its expiry or at the next other completion, and is never reported.
const WAKE: u64 = u64::MAX;

impl UringBackend {
    /// Sets up a ring of `entries` submission entries. With `core`, the kernel's io-wq
    /// worker threads (which run the blocking operations: fsync, unlink, ...) are confined to
    /// that core, so they never preempt a writer pinned elsewhere.
    pub fn new(entries: u32, core: Option<usize>) -> std::io::Result<Self> {
        let ring = IoUring::new(entries)?;
        if let Some(core) = core {
            // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `core` is checked against the set's size by CPU_SET.
            unsafe {
                libc::CPU_ZERO(&mut set);
                libc::CPU_SET(core, &mut set);
            }
            if let Err(e) = ring.submitter().register_iowq_aff(&set) {
                log::warn!("could not confine io_uring workers to core {core}: {e}");
            }
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let ext_arg = ring.params().is_feature_ext_arg();
        if !ext_arg {
            log::info!("io_uring without IORING_FEAT_EXT_ARG: waits use a timeout operation");
        }
        Ok(UringBackend {
            has_ftruncate: probe.is_supported(opcode::Ftruncate::CODE),
            ring,
            synthetic: VecDeque::new(),
            cancel_chain: false,
            in_flight: 0,
            ext_arg,
            wake_pending: false,
            wake_ts: Box::new(types::Timespec::new()),
        })
    }

    /// `wait` for kernels before 5.11: queue a timeout that ends at `timeout` or at the next
    /// completion, and block in `io_uring_enter` until something completes.
    fn wait_on_timeout_op(&mut self, timeout: Duration) -> std::io::Result<()> {
        if !self.wake_pending {
            *self.wake_ts = types::Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos());
            let entry = opcode::Timeout::new(&*self.wake_ts)
                .count(1)
                .build()
                .user_data(WAKE);
            if self.room() == 0 {
                self.submit()?;
            }
            // SAFETY: the timespec is boxed in `self` and outlives the operation (Drop waits
            // for what is in flight); the kernel reads it when it takes the entry.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Err(std::io::Error::other("submission queue full"));
            }
            self.wake_pending = true;
        }
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn entry(op: &Op) -> squeue::Entry {
        let fd = types::Fd(op.fd);
        let e = match op.code {
            OpCode::Read => opcode::Read::new(fd, op.buf, op.len)
                .offset(op.offset)
                .build(),
            OpCode::Write => opcode::Write::new(fd, op.buf, op.len)
                .offset(op.offset)
                .build(),
            OpCode::Fdatasync => opcode::Fsync::new(fd)
                .offset(op.offset)
                .len(op.len)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            OpCode::Fsync => opcode::Fsync::new(fd).build(),
            OpCode::Ftruncate => opcode::Ftruncate::new(fd, op.offset).build(),
            OpCode::Close => opcode::Close::new(fd).build(),
            OpCode::Unlink => opcode::UnlinkAt::new(fd, op.path).build(),
            OpCode::Rename => opcode::RenameAt::new(fd, op.path, fd, op.path2).build(),
        };
        let e = e.user_data(op.user_data);
        if op.link {
            e.flags(squeue::Flags::IO_LINK)
        } else {
            e
        }
    }

    fn synthesize(&mut self, op: &Op, result: i32) {
        self.cancel_chain = op.link && (self.cancel_chain || breaks_chain(op, result));
        self.synthetic.push_back(Completion {
            user_data: op.user_data,
            result,
        });
        self.in_flight += 1;
    }
}

impl IoBackend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    unsafe fn push(&mut self, op: Op) -> Result<(), Op> {
        if self.cancel_chain {
            self.synthesize(&op, -libc::ECANCELED);
            return Ok(());
        }
        if op.code == OpCode::Ftruncate && !self.has_ftruncate {
            // SAFETY: ftruncate takes no pointers.
            let result = unsafe { run(&op) };
            self.synthesize(&op, result);
            return Ok(());
        }
        let entry = Self::entry(&op);
        // SAFETY: the caller keeps the buffer and paths valid until the completion is reaped
        // (push's contract), which is what the kernel needs.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        match pushed {
            Ok(()) => {
                self.in_flight += 1;
                // More in flight than the completion queue holds would overflow it (the
                // kernel then drops or backlogs completions): a bound the callers must keep.
                debug_assert!(
                    self.in_flight <= self.ring.completion().capacity(),
                    "{} operations in flight exceed the completion queue",
                    self.in_flight
                );
                Ok(())
            }
            Err(_) => Err(op),
        }
    }

    fn room(&mut self) -> usize {
        let sq = self.ring.submission();
        sq.capacity() - sq.len()
    }

    fn submit(&mut self) -> std::io::Result<()> {
        if self.ring.submission().is_empty() {
            return Ok(()); // an idle turn makes no system call
        }
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        if !self.synthetic.is_empty() || !self.ring.completion().is_empty() {
            return Ok(());
        }
        if !self.ext_arg {
            return self.wait_on_timeout_op(timeout);
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        let before = out.len();
        out.extend(self.synthetic.drain(..));
        for cqe in self.ring.completion() {
            if cqe.user_data() == WAKE {
                self.wake_pending = false;
                continue;
            }
            out.push(Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
            });
        }
        self.in_flight -= out.len() - before;
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for UringBackend {
    /// Waits (bounded) until the kernel is done with every operation in flight before the
    /// ring goes: their buffers and paths belong to jobs dropped after the backend (also
    /// when the maintainer unwinds from a panic), and nothing may complete into freed memory.
    fn drop(&mut self) {
        let _ = self.ring.submit();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut done = Vec::new();
        while (self.in_flight > 0 || self.wake_pending) && std::time::Instant::now() < deadline {
            if self.wait(Duration::from_millis(10)).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            done.clear();
            self.reap(&mut done);
        }
        if self.in_flight > 0 {
            log::error!(
                "io_uring torn down with {} operations still in flight",
                self.in_flight
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Target;
    use std::os::fd::AsRawFd;

    /// The wait of kernels before 5.11 (no timeout argument to `io_uring_enter`): it must
    /// block until the timeout when nothing completes (the maintainer's loop would spin
    /// otherwise), return with a completion, and never report its own timeout operation.
    #[test]
    fn wait_without_ext_arg_blocks_until_timeout_or_completion() {
        let mut be = UringBackend::new(8, None).expect("io_uring is required for this test");
        be.ext_arg = false;
        let timeout = Duration::from_millis(30);
        let started = std::time::Instant::now();
        be.wait(timeout).expect("idle wait");
        assert!(
            started.elapsed() >= timeout,
            "an idle wait returned after {:?}, before its timeout: the loop would spin",
            started.elapsed()
        );
        let mut out = Vec::new();
        be.reap(&mut out);
        assert!(out.is_empty(), "the timeout operation leaked: {out:?}");

        let file = tempfile::tempfile().expect("temp file");
        let op = Op::fdatasync(Target::Segment, file.as_raw_fd(), 7);
        // SAFETY: no buffers; the file outlives the backend's use of it (reaped below).
        unsafe { be.push(op) }.expect("room");
        be.submit().expect("submit");
        while out.is_empty() {
            be.wait(Duration::from_secs(10)).expect("wait");
            be.reap(&mut out);
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].user_data, out[0].result), (7, 0));
        assert_eq!(be.in_flight(), 0);
    }
}
