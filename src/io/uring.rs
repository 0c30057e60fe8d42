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
}

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
        Ok(UringBackend {
            has_ftruncate: probe.is_supported(opcode::Ftruncate::CODE),
            ring,
            synthetic: VecDeque::new(),
            cancel_chain: false,
            in_flight: 0,
        })
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
        while self.in_flight > 0 && std::time::Instant::now() < deadline {
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
