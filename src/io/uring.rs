//! io_uring backend: one ring, operations pushed as SQEs (linked where asked), submitted with
//! one `io_uring_enter`, completions reaped from the CQ. An opcode the running kernel lacks
//! (found with the probe at setup; FTRUNCATE needs 6.9) is run as a blocking call, keeping
//! the chain semantics and its order: at push time when nothing of its chain is in the ring,
//! otherwise (with the rest of its chain) once a NOP linked after its predecessors completes.
//! Kernels without a timeout for `io_uring_enter` (before 5.11) wait on a timeout operation.
//! Tests give it a [`FaultPlan`]: an operation a rule matches is "emulated" the same way (run
//! outside the ring with its effect, in chain order), so injected failures take the paths a
//! real failure of the ring takes: completions reaped late, chains cancelled by the kernel.

use std::collections::VecDeque;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::blocking::{breaks_chain, run};
use super::fault::{run_with, Effect, FaultPlan};
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
    /// The last SQE pushed was linked: the chain it belongs to goes on.
    prev_link: bool,
    /// Operations the ring cannot run (FTRUNCATE before 6.9) that come after linked SQEs of
    /// their chain, with the rest of that chain: run, in order, only once a NOP linked after
    /// those SQEs completes (so never before them), or cancelled if it is cancelled.
    deferred: Vec<(u64, Vec<Deferred>)>,
    /// The chain being pushed is being deferred (index into `deferred`).
    deferring: Option<usize>,
    next_defer: u64,
    /// Fault injection (tests): operations a rule matches run outside the ring.
    faults: Option<FaultPlan>,
}

/// An operation run outside the ring after its chain's ring part, with the fault rules'
/// effect when it was decided at push time (the operation that started the deferral).
#[derive(Clone, Copy)]
struct Deferred {
    op: Op,
    effect: Option<Option<Effect>>,
}

/// The high half of the user_data of the NOPs that end a chain's ring part before a
/// deferred operation (the low half counts them); never reported. The maintainer's job
/// slots are small numbers and its reserved ones `u32::MAX`, `- 1` and `- 2`: this one is
/// below those.
const DEFER_SLOT: u64 = (u32::MAX - 3) as u64;

/// Times `submit` reaps and tries again after `EBUSY` before it reports the error (the
/// entries stay queued for the next turn's submit either way).
const SUBMIT_BUSY_TRIES: u32 = 16;

fn is_defer_key(user_data: u64) -> bool {
    user_data >> 32 == DEFER_SLOT
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
            prev_link: false,
            deferred: Vec::new(),
            deferring: None,
            next_defer: 0,
            faults: None,
        })
    }

    /// Applies `plan` to every operation (tests): one a rule matches runs outside the ring.
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }

    /// Runs `op` outside the ring: with `effect` if the rules were consulted already, else
    /// consulting them now.
    ///
    /// # Safety
    /// As [`run`].
    unsafe fn run_outside(&self, op: &Op, effect: Option<Option<Effect>>) -> i32 {
        match &self.faults {
            Some(plan) => {
                let effect = effect.unwrap_or_else(|| plan.effect_for(op));
                // SAFETY: the caller's guarantee.
                unsafe { run_with(plan, op, effect) }
            }
            // SAFETY: the caller's guarantee.
            None => unsafe { run(op) },
        }
    }

    /// Runs a deferred chain part now that the ring part before it completed with
    /// `result` (0: it all succeeded; otherwise the chain broke there and this is cancelled).
    fn run_deferred(&mut self, key: u64, result: i32, out: &mut Vec<Completion>) {
        let Some(pos) = self.deferred.iter().position(|(k, _)| *k == key) else {
            return;
        };
        let (_, ops) = self.deferred.remove(pos);
        if let Some(d) = self.deferring {
            // Indexes after `pos` moved down by one.
            self.deferring = (d != pos).then(|| if d > pos { d - 1 } else { d });
        }
        let mut cancel = result != 0;
        for Deferred { op, effect } in ops {
            let r = match cancel {
                true => -libc::ECANCELED,
                // SAFETY: push's contract keeps the operation's pointers valid until its
                // completion is reaped, which is now.
                false => unsafe { self.run_outside(&op, effect) },
            };
            cancel |= op.link && breaks_chain(&op, r);
            out.push(Completion {
                user_data: op.user_data,
                result: r,
            });
        }
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

    /// Moves the completions in the ring to `synthetic`, where the next `reap` returns them
    /// first, in order; they stay counted in flight until then.
    fn stash_completions(&mut self) {
        let mut out = Vec::new();
        self.reap(&mut out);
        self.in_flight += out.len();
        self.synthetic.extend(out);
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

    fn refuses_chain(&self, last: &Op) -> bool {
        self.faults.as_ref().is_some_and(|p| p.refuses_chain(last))
    }

    unsafe fn push(&mut self, op: Op) -> Result<(), Op> {
        if let Some(d) = self.deferring {
            self.deferred[d].1.push(Deferred { op, effect: None });
            self.in_flight += 1;
            if !op.link {
                self.deferring = None;
            }
            return Ok(());
        }
        if self.cancel_chain {
            self.synthesize(&op, -libc::ECANCELED);
            return Ok(());
        }
        if self.faults.is_some() && self.room() == 0 {
            // Refused before the rules count it: the caller pushes it again later.
            return Err(op);
        }
        let effect = self.faults.as_ref().map(|plan| plan.effect_for(&op));
        let unsupported = op.code == OpCode::Ftruncate && !self.has_ftruncate;
        if unsupported || matches!(effect, Some(Some(_))) {
            if self.prev_link {
                // Linked SQEs of its chain come first: end them with a NOP, and run this
                // (with the rest of the chain) when that NOP completes.
                let key = (DEFER_SLOT << 32) | (self.next_defer % (1 << 31));
                let nop = opcode::Nop::new().build().user_data(key);
                // SAFETY: a NOP has no pointers.
                if unsafe { self.ring.submission().push(&nop) }.is_err() {
                    return Err(op);
                }
                self.next_defer += 1;
                self.prev_link = false;
                self.deferred.push((key, vec![Deferred { op, effect }]));
                self.deferring = op.link.then_some(self.deferred.len() - 1);
                self.in_flight += 1;
                return Ok(());
            }
            // SAFETY: push's contract keeps the pointers valid until the completion is
            // reaped, which is after this call.
            let result = unsafe { self.run_outside(&op, effect) };
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
                self.prev_link = op.link;
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
        let mut busy = 0;
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The completion queue is full (or overflowed): nothing was submitted. Reap
                // what completed (kept for the caller's next `reap`, still counted in flight)
                // so the kernel has room, and submit again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && busy < SUBMIT_BUSY_TRIES => {
                    busy += 1;
                    self.stash_completions();
                }
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
        let mut ended = Vec::new();
        for cqe in self.ring.completion() {
            if cqe.user_data() == WAKE {
                self.wake_pending = false;
                continue;
            }
            if is_defer_key(cqe.user_data()) {
                ended.push((cqe.user_data(), cqe.result()));
                continue;
            }
            out.push(Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
            });
        }
        for (key, result) in ended {
            self.run_deferred(key, result, out);
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

    /// What `submit` does on `EBUSY` (the completion queue full): the completions it reaps
    /// to make room are returned by the next `reap`, first, exactly once, and
    /// stay counted in flight until then.
    #[test]
    fn completions_stashed_to_make_room_are_reaped_once_in_order() {
        let mut be = UringBackend::new(8, None).expect("io_uring is required for this test");
        let file = tempfile::tempfile().expect("temp file");
        let push = |be: &mut UringBackend, ud: u64| {
            let op = Op::fdatasync(Target::Segment, file.as_raw_fd(), ud);
            // SAFETY: no buffers; the file outlives every completion (all reaped below).
            unsafe { be.push(op) }.expect("room");
        };
        for ud in 1..=3 {
            push(&mut be, ud);
        }
        be.submit().expect("submit");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while be.ring.completion().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "no completions");
            be.wait(Duration::from_millis(100)).expect("wait");
            be.ring.completion().sync();
        }
        be.stash_completions();
        assert_eq!(be.in_flight(), 3, "stashed completions are still in flight");
        push(&mut be, 4);
        be.submit().expect("submit");
        let mut out = Vec::new();
        while out.len() < 4 {
            assert!(std::time::Instant::now() < deadline, "{out:?}");
            be.wait(Duration::from_millis(100)).expect("wait");
            be.reap(&mut out);
        }
        let uds: Vec<u64> = out.iter().map(|c| c.user_data).collect();
        // Unlinked operations complete in any order; the stashed ones come back first.
        let mut stashed = uds[..3].to_vec();
        stashed.sort_unstable();
        assert_eq!(stashed, [1, 2, 3], "stashed first: {uds:?}");
        assert_eq!(uds[3], 4);
        assert_eq!(be.in_flight(), 0);
    }

    fn run_chain(be: &mut UringBackend, ops: &[Op]) -> Vec<Completion> {
        // SAFETY: the buffers outlive the calls below, which reap every completion.
        unsafe { crate::io::push_chain(be, ops) }.expect("room");
        be.submit().expect("submit");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.len() < ops.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "completions lost: {out:?} of {} operations",
                ops.len()
            );
            be.wait(Duration::from_millis(100)).expect("wait");
            be.reap(&mut out);
        }
        assert_eq!(be.in_flight(), 0);
        out
    }

    /// Before 6.9 the ring cannot ftruncate, and the blocking fallback must not run it ahead
    /// of the linked operations before it in its chain (a persist truncates only once the
    /// records are durable: recovery reads the truncated size as proof of that).
    #[test]
    fn an_emulated_ftruncate_runs_after_its_chain_predecessors_or_not_at_all() {
        use std::os::fd::IntoRawFd;
        let mut be = UringBackend::new(16, None).expect("io_uring is required for this test");
        be.has_ftruncate = false;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let fd = std::fs::File::create(&path).unwrap().into_raw_fd();
        let data = vec![7u8; 8192];
        let ops = [
            Op::write(Target::Segment, fd, &data, 0, 1),
            Op::fdatasync(Target::Segment, fd, 2),
            Op::ftruncate(Target::Segment, fd, 4096, 3),
            Op::fdatasync(Target::Segment, fd, 4),
            Op::close(Target::Segment, fd, 5),
        ];
        let out = run_chain(&mut be, &ops);
        let order: Vec<u64> = out.iter().map(|c| c.user_data).collect();
        let pos = |ud| order.iter().position(|&u| u == ud).unwrap();
        assert!(
            pos(3) > pos(1) && pos(3) > pos(2),
            "ftruncate ran early: {order:?}"
        );
        for c in &out {
            let want = if c.user_data == 1 { 8192 } else { 0 };
            assert_eq!(c.result, want, "{out:?}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 4096]);

        // A predecessor that fails cancels the emulated op and the rest of the chain.
        let ro = std::fs::File::open(&path).unwrap().into_raw_fd();
        let ops = [
            Op::write(Target::Segment, ro, &data, 0, 11),
            Op::ftruncate(Target::Segment, ro, 0, 12),
            Op::close(Target::Segment, ro, 13),
        ];
        let out = run_chain(&mut be, &ops);
        let result = |ud| out.iter().find(|c| c.user_data == ud).unwrap().result;
        assert!(result(11) < 0);
        assert_eq!(
            (result(12), result(13)),
            (-libc::ECANCELED, -libc::ECANCELED)
        );
        // SAFETY: the cancelled close never ran; the descriptor is still ours.
        unsafe { libc::close(ro) };
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    }

    /// The backend's own user_data (its NOPs, its wait's timeout) never swallows one of the
    /// maintainer's: the reserved job slots `u32::MAX`, `- 1` and `- 2` pass through reap.
    #[test]
    fn reserved_job_slots_are_reported_not_taken_for_the_backends_own() {
        let mut be = UringBackend::new(8, None).expect("io_uring is required for this test");
        let file = tempfile::tempfile().expect("temp file");
        for slot in [u32::MAX, u32::MAX - 1, u32::MAX - 2] {
            let ud = (u64::from(slot) << 32) | 3;
            let out = run_chain(
                &mut be,
                &[Op::fdatasync(Target::Segment, file.as_raw_fd(), ud)],
            );
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].user_data, ud);
        }
    }

    /// A fault rule reaches operations of the ring too: the operation it matches runs
    /// outside the ring after its chain's predecessors, with the rule's effect, and cancels
    /// the rest of its chain as a failure in the ring would; a chain without a match runs in
    /// the ring untouched.
    #[test]
    fn a_fault_rule_fails_a_ring_operation_mid_chain_and_cancels_the_rest() {
        use super::super::fault::Rule;
        use std::os::fd::IntoRawFd;
        let plan = FaultPlan::new();
        plan.add(Rule {
            code: OpCode::Fdatasync,
            target: Target::Segment,
            nth: 0,
            count: 1,
            effect: Effect::Fail(libc::EIO),
        });
        plan.record();
        let mut be = UringBackend::new(16, None)
            .expect("io_uring is required for this test")
            .with_faults(plan.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let fd = std::fs::File::create(&path).unwrap().into_raw_fd();
        let data = vec![7u8; 4096];
        let ops = [
            Op::write(Target::Segment, fd, &data, 0, 1),
            Op::fdatasync(Target::Segment, fd, 2),
            Op::close(Target::Segment, fd, 3),
        ];
        let out = run_chain(&mut be, &ops);
        let result = |ud| out.iter().find(|c| c.user_data == ud).unwrap().result;
        assert_eq!(
            (result(1), result(2), result(3)),
            (4096, -libc::EIO, -libc::ECANCELED),
            "{out:?}"
        );
        assert_eq!(plan.fired(), 1);
        // The second fdatasync is past the rule: the same chain now runs in the ring.
        let ops = [
            Op::write(Target::Segment, fd, &data, 4096, 4),
            Op::fdatasync(Target::Segment, fd, 5),
            Op::close(Target::Segment, fd, 6),
        ];
        let out = run_chain(&mut be, &ops);
        assert!(out.iter().all(|c| c.result >= 0), "{out:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
        assert_eq!(plan.seen(OpCode::Fdatasync, Target::Segment), 2);
        assert_eq!(
            plan.trace().len(),
            5,
            "the cancelled close is not counted as run"
        );
    }
}
