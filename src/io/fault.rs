//! Fault injection for tests: wraps a real backend and makes chosen operations fail with a
//! chosen errno, or transfer fewer bytes than asked (short reads and writes), with link
//! semantics kept (the rest of a failed chain completes with `-ECANCELED`). Rules are named
//! after the place they break: an opcode, a target, and which occurrence. The io_uring
//! backend applies a plan too ([`super::UringBackend::with_faults`]): an operation a rule
//! matches runs outside the ring, with the chain's order and link semantics kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::blocking::run;
use super::{BlockingBackend, Completion, IoBackend, Op, OpCode, Target};

/// What a rule does to the operation it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Completes with `-errno` without running.
    Fail(i32),
    /// Runs with the length cut to at most this many bytes (reads and writes).
    Short(u32),
    /// Runs after this many milliseconds: a slow device (the maintainer's thread waits).
    DelayMs(u32),
    /// A write that reports success but stores one byte flipped (in the middle of what it
    /// was given): silent corruption between the compressor and the disk.
    Corrupt,
    /// Runs, then reports `-errno` anyway, as a `close` that released its descriptor and
    /// failed does. For a `close`, the freed descriptor number is then taken at once by a
    /// "squatter" (an open of /dev/null, which gets the lowest free number), so a caller that
    /// wrongly closes the number again closes the squatter instead: [`FaultPlan::squatters`].
    RunThenFail(i32),
}

/// One fault: the `nth` (0-based) operation with this opcode and target, and `count`
/// occurrences from there on (`u32::MAX`: every later one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Opcode to match.
    pub code: OpCode,
    /// Target to match.
    pub target: Target,
    /// First matching occurrence (0-based) the effect applies to.
    pub nth: u32,
    /// How many occurrences from `nth` on.
    pub count: u32,
    /// What happens.
    pub effect: Effect,
}

/// A set of rules, shareable with the test that set them (to add or clear rules while the
/// maintainer runs, and to read how often each rule fired).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    inner: Arc<Mutex<PlanState>>,
}

#[derive(Debug, Default)]
struct PlanState {
    rules: Vec<Rule>,
    seen: HashMap<(OpCode, Target), u32>,
    fired: u64,
    /// Every operation run since `record` was called: (code, target, offset, length).
    trace: Option<Vec<(OpCode, Target, u64, u32)>>,
    /// Descriptors opened on the numbers a `RunThenFail` close released.
    squatters: Vec<std::os::fd::RawFd>,
    /// Every operation from this one on (counted over all opcodes and targets) fails.
    fail_from: Option<u64>,
    /// Operations seen, over all opcodes and targets.
    ops: u64,
    /// Chains ending with this operation are refused whole at submission, this many times.
    refuse: Option<(OpCode, Target, u32)>,
    /// The model of what a power cut leaves ([`super::forgetting`]).
    disk: Option<super::forgetting::ForgettingDisk>,
}

impl FaultPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn add(&self, rule: Rule) -> &Self {
        self.inner.lock().expect("fault plan lock").rules.push(rule);
        self
    }

    /// Fails every `code` on `target` from now on with `errno`.
    pub fn fail_always(&self, code: OpCode, target: Target, errno: i32) -> &Self {
        let nth = self.seen(code, target);
        self.add(Rule {
            code,
            target,
            nth,
            count: u32::MAX,
            effect: Effect::Fail(errno),
        })
    }

    /// From the `n`-th operation on (0-based, counting every opcode and target, the ones
    /// made outside the backend included), every operation fails with `EIO`: a disk that
    /// dies at that point, for the crash enumerator.
    pub fn fail_all_from(&self, n: u64) -> &Self {
        self.inner.lock().expect("fault plan lock").fail_from = Some(n);
        self
    }

    /// The next `times` chains whose last operation is `code` on `target` (a persist's
    /// ends with the segment's `Close`) are refused whole by `push_chain`, as a submission
    /// queue that stays full does: nothing of them is queued or run.
    pub fn refuse_chains_ending_with(&self, code: OpCode, target: Target, times: u32) -> &Self {
        self.inner.lock().expect("fault plan lock").refuse = Some((code, target, times));
        self
    }

    /// Whether a chain ending with `last` is refused now (see
    /// [`Self::refuse_chains_ending_with`]); counts the refusal.
    pub(crate) fn refuses_chain(&self, last: &Op) -> bool {
        let mut st = self.inner.lock().expect("fault plan lock");
        match st.refuse {
            Some((code, target, n)) if n > 0 && code == last.code && target == last.target => {
                st.refuse = Some((code, target, n - 1));
                st.fired += 1;
                true
            }
            _ => false,
        }
    }

    /// Models every operation in `disk` (the maintainer then uses the blocking fault
    /// backend whatever its configured backend): see [`super::forgetting`].
    pub fn with_forgetting_disk(&self, disk: super::forgetting::ForgettingDisk) -> &Self {
        self.inner.lock().expect("fault plan lock").disk = Some(disk);
        self
    }

    /// The forgetting disk this plan feeds, if any.
    pub fn disk(&self) -> Option<super::forgetting::ForgettingDisk> {
        self.inner.lock().expect("fault plan lock").disk.clone()
    }

    /// Operations seen so far, over all opcodes and targets.
    pub fn ops(&self) -> u64 {
        self.inner.lock().expect("fault plan lock").ops
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.inner.lock().expect("fault plan lock").rules.clear();
    }

    /// From now on, records every operation the backend runs, in order (see [`Self::trace`]).
    pub fn record(&self) -> &Self {
        self.inner.lock().expect("fault plan lock").trace = Some(Vec::new());
        self
    }

    /// The operations recorded since [`Self::record`]: (code, target, offset, length), in the
    /// order the backend ran them.
    pub fn trace(&self) -> Vec<(OpCode, Target, u64, u32)> {
        let st = self.inner.lock().expect("fault plan lock");
        st.trace.clone().unwrap_or_default()
    }

    /// The squatter descriptors of `RunThenFail` closes (see [`Effect::RunThenFail`]); each
    /// must still be open, unless someone closed a number twice.
    pub fn squatters(&self) -> Vec<std::os::fd::RawFd> {
        self.inner
            .lock()
            .expect("fault plan lock")
            .squatters
            .clone()
    }

    fn add_squatter(&self, fd: std::os::fd::RawFd) {
        self.inner
            .lock()
            .expect("fault plan lock")
            .squatters
            .push(fd);
    }

    /// How many operations the rules changed so far.
    pub fn fired(&self) -> u64 {
        self.inner.lock().expect("fault plan lock").fired
    }

    /// How many `code` operations on `target` were pushed so far.
    pub fn seen(&self, code: OpCode, target: Target) -> u32 {
        let st = self.inner.lock().expect("fault plan lock");
        st.seen.get(&(code, target)).copied().unwrap_or(0)
    }

    /// For a file operation made outside the backend (the writer's msync): the errno a
    /// matching `Fail` rule injects, counting the occurrence like any other.
    pub(crate) fn inject(&self, code: OpCode, target: Target) -> Option<i32> {
        let probe = Op {
            target,
            ..Op::fdatasync(target, -1, 0)
        };
        let probe = Op { code, ..probe };
        match self.effect_for(&probe) {
            Some(Effect::Fail(errno)) => Some(errno),
            _ => None,
        }
    }

    /// Counts `op` and returns what the rules do to it (None: it runs as asked).
    pub(crate) fn effect_for(&self, op: &Op) -> Option<Effect> {
        let mut st = self.inner.lock().expect("fault plan lock");
        if let Some(t) = st.trace.as_mut() {
            t.push((op.code, op.target, op.offset, op.len));
        }
        let n = st.seen.entry((op.code, op.target)).or_insert(0);
        let occurrence = *n;
        *n += 1;
        st.ops += 1;
        if st.fail_from.is_some_and(|from| st.ops > from) {
            st.fired += 1;
            return Some(Effect::Fail(libc::EIO));
        }
        let effect = st
            .rules
            .iter()
            .find(|r| {
                r.code == op.code
                    && r.target == op.target
                    && occurrence >= r.nth
                    && u64::from(occurrence - r.nth) < u64::from(r.count)
            })
            .map(|r| r.effect);
        if effect.is_some() {
            st.fired += 1;
        }
        effect
    }
}

/// Runs `op` with a system call after applying `effect` (what [`FaultPlan::effect_for`]
/// returned for it); `-errno` on failure. Shared by the blocking fault backend and the
/// io_uring backend, which runs an operation a rule matches outside the ring.
///
/// # Safety
/// The pointers in `op` must be valid as promised to [`IoBackend::push`].
pub(crate) unsafe fn run_with(plan: &FaultPlan, op: &Op, effect: Option<Effect>) -> i32 {
    match effect {
        Some(Effect::Fail(errno)) => -errno,
        Some(Effect::Short(n)) => {
            // A short transfer: the chain still sees the length asked for.
            let short = Op {
                len: op.len.min(n),
                ..*op
            };
            // SAFETY: the caller's guarantee; the shortened range lies inside the original.
            unsafe { run(&short) }
        }
        Some(Effect::RunThenFail(errno)) => {
            // SAFETY: the caller's guarantee.
            let ran = unsafe { run(op) };
            if op.code == OpCode::Close && ran == 0 {
                // SAFETY: a valid C string; the result is checked.
                let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    plan.add_squatter(fd);
                }
            }
            -errno
        }
        Some(Effect::Corrupt) if op.code == OpCode::Write && op.len > 0 => {
            // SAFETY: the caller's guarantee: `buf` is valid for `len` bytes.
            let given = unsafe { std::slice::from_raw_parts(op.buf, op.len as usize) };
            let mut copy = given.to_vec();
            copy[given.len() / 2] ^= 0x10;
            let bad = Op {
                buf: copy.as_mut_ptr(),
                ..*op
            };
            // SAFETY: `copy` outlives this blocking call.
            unsafe { run(&bad) }
        }
        Some(Effect::Corrupt) => {
            // SAFETY: the caller's guarantee.
            unsafe { run(op) }
        }
        Some(Effect::DelayMs(ms)) => {
            std::thread::sleep(Duration::from_millis(u64::from(ms)));
            // SAFETY: the caller's guarantee.
            unsafe { run(op) }
        }
        // SAFETY: the caller's guarantee.
        None => unsafe { run(op) },
    }
}

/// The fault-injecting backend. It runs operations with blocking system calls, with the
/// same link semantics as [`BlockingBackend`], after applying the plan.
pub struct FaultBackend {
    plan: FaultPlan,
    inner: BlockingBackend,
}

impl FaultBackend {
    /// A backend applying `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        FaultBackend {
            plan,
            inner: BlockingBackend::new(),
        }
    }
}

impl IoBackend for FaultBackend {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn refuses_chain(&self, last: &Op) -> bool {
        self.plan.refuses_chain(last)
    }

    unsafe fn push(&mut self, op: Op) -> Result<(), Op> {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.inner.push(op) }
    }

    fn submit(&mut self) -> std::io::Result<()> {
        let plan = &self.plan;
        let disk = plan.disk();
        self.inner.run_queued(|op| {
            let effect = plan.effect_for(op);
            let ino = disk.as_ref().and_then(|d| d.before(op));
            // SAFETY: push's contract keeps the pointers valid until the completion is
            // reaped, which is after this call.
            let result = unsafe { run_with(plan, op, effect) };
            if let Some(d) = &disk {
                d.after(op, ino, result);
            }
            result
        });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.inner.wait(timeout)
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        self.inner.reap(out);
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}
