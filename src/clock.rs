//! The log's clock: nanoseconds since the Unix epoch for the writer's records, read without
//! a system call. On x86-64 with an invariant TSC it is the TSC scaled by an anchor (a TSC
//! value, the CLOCK_REALTIME time it stood for, and the nanoseconds per tick) that the
//! maintainer refreshes about ten times a second; the writer reads the anchor through a
//! seqlock (the maintainer is its only writer), so its cost is one `rdtsc`, a 64x64-bit
//! multiply and a few loads of a line that changes ten times a second. Elsewhere it is
//! `clock_gettime(CLOCK_REALTIME)`, which the vDSO answers without entering the kernel on the
//! usual clock sources.
//!
//! What a stamp promises: CLOCK_REALTIME within the calibration's error (well under a
//! microsecond once the clock has run a second; the first anchor is measured over 1 ms at
//! open), so stamps can step back by that much at a re-anchor, and by any amount when the
//! system clock is stepped. Seeking by time never assumes they increase (docs/FORMAT.md,
//! "Time").

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Fractional bits of `Anchor::mult` (nanoseconds per tick, fixed point).
const MULT_SHIFT: u32 = 32;
/// How long the first calibration at open measures.
const FIRST_CALIBRATION: Duration = Duration::from_millis(1);
/// How often the maintainer re-anchors.
pub(crate) const REANCHOR_EVERY: Duration = Duration::from_millis(100);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct LogClock {
    /// Seqlock generation: odd while the maintainer rewrites the anchor.
    gen: AtomicU64,
    tsc0: AtomicU64,
    ns0: AtomicU64,
    mult: AtomicU64,
    /// The TSC is usable (invariant, x86-64); otherwise `now_ns` is CLOCK_REALTIME.
    tsc: bool,
    /// The first sample (TSC, ns): every re-anchor measures the rate over the whole run,
    /// so the rate's error shrinks as the clock runs. Only the maintainer takes it.
    base: Mutex<(u64, u64)>,
}

impl LogClock {
    /// Calibrates a clock (about 1 ms when the TSC is used).
    pub(crate) fn new() -> Self {
        let tsc = tsc::invariant();
        let clock = LogClock {
            gen: AtomicU64::new(0),
            tsc0: AtomicU64::new(0),
            ns0: AtomicU64::new(0),
            mult: AtomicU64::new(0),
            tsc,
            base: Mutex::new((0, 0)),
        };
        if tsc {
            let first = sample();
            let mut last = first;
            while last.1.saturating_sub(first.1) < FIRST_CALIBRATION.as_nanos() as u64 {
                std::hint::spin_loop();
                last = sample();
            }
            *clock.base.lock().expect("not poisoned") = first;
            clock.store(last, rate(first, last));
        }
        clock
    }

    /// Nanoseconds since the Unix epoch, now. No system call with the TSC; allocation-free.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        if !self.tsc {
            return realtime_ns();
        }
        loop {
            let g1 = self.gen.load(Ordering::Acquire);
            let (tsc0, ns0, mult) = (
                self.tsc0.load(Ordering::Relaxed),
                self.ns0.load(Ordering::Relaxed),
                self.mult.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            if g1 & 1 == 0 && self.gen.load(Ordering::Relaxed) == g1 {
                return scaled(tsc::read(), tsc0, ns0, mult);
            }
            std::hint::spin_loop();
        }
    }

    /// Takes a new anchor, the rate measured since the first sample (the maintainer, every
    /// [`REANCHOR_EVERY`]).
    pub(crate) fn reanchor(&self) {
        if !self.tsc {
            return;
        }
        let base = *self.base.lock().expect("not poisoned");
        let now = sample();
        if now.0 > base.0 && now.1 > base.1 {
            self.store(now, rate(base, now));
        }
    }

    fn store(&self, (tsc0, ns0): (u64, u64), mult: u64) {
        let g = self.gen.load(Ordering::Relaxed);
        assert!(g & 1 == 0, "the maintainer is the anchor's only writer");
        self.gen.store(g + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.tsc0.store(tsc0, Ordering::Relaxed);
        self.ns0.store(ns0, Ordering::Relaxed);
        self.mult.store(mult, Ordering::Relaxed);
        self.gen.store(g + 2, Ordering::Release);
    }
}

/// `ns0` plus the nanoseconds of the ticks from `tsc0` to `tsc` (either direction: another
/// core's TSC may read a few ticks behind the anchor's).
#[inline]
fn scaled(tsc: u64, tsc0: u64, ns0: u64, mult: u64) -> u64 {
    let ticks = tsc.wrapping_sub(tsc0) as i64;
    let ns = ((i128::from(ticks) * i128::from(mult)) >> MULT_SHIFT) as i64;
    ns0.wrapping_add_signed(ns)
}

/// Nanoseconds per tick between two samples, fixed point.
fn rate(from: (u64, u64), to: (u64, u64)) -> u64 {
    let ticks = u128::from(to.0 - from.0).max(1);
    let ns = u128::from(to.1 - from.1);
    ((ns << MULT_SHIFT) / ticks) as u64
}

/// A (TSC, CLOCK_REALTIME) pair read as close together as this thread manages: the TSC read
/// on both sides of the clock, the tightest of a few tries, its midpoint taken.
fn sample() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let a = tsc::read();
        let ns = realtime_ns();
        let b = tsc::read();
        if b >= a && b - a < best.0 {
            best = (b - a, a + (b - a) / 2, ns);
        }
    }
    (best.1, best.2)
}

/// CLOCK_REALTIME in nanoseconds since the epoch (0 before 1970).
pub(crate) fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    /// Whether the TSC ticks at a constant rate in every power state (CPUID 0x8000_0007,
    /// EDX bit 8), the condition for scaling it to wall time.
    pub(super) fn invariant() -> bool {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x8000_0000 gives the highest
        // extended leaf, checked before 0x8000_0007 is asked for.
        #[allow(unused_unsafe)]
        let (max, edx) = unsafe {
            let max = __cpuid(0x8000_0000).eax;
            let edx = if max >= 0x8000_0007 {
                __cpuid(0x8000_0007).edx
            } else {
                0
            };
            (max, edx)
        };
        max >= 0x8000_0007 && edx & (1 << 8) != 0
    }

    #[inline(always)]
    pub(super) fn read() -> u64 {
        // SAFETY: RDTSC exists on every x86-64 CPU and has no memory effects.
        #[allow(unused_unsafe)]
        unsafe {
            std::arch::x86_64::_rdtsc()
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod tsc {
    pub(super) fn invariant() -> bool {
        false
    }

    pub(super) fn read() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_realtime_clock() {
        let clock = LogClock::new();
        for _ in 0..20 {
            let before = realtime_ns();
            let t = clock.now_ns();
            let after = realtime_ns();
            // Within 50 µs of CLOCK_REALTIME (a 1 ms calibration is far better than that;
            // the margin is for a preempted test thread between the reads).
            assert!(
                t + 50_000 >= before && t <= after + 50_000,
                "{before} {t} {after}"
            );
            std::thread::sleep(Duration::from_millis(5));
            clock.reanchor();
        }
    }

    #[test]
    fn scaling_goes_both_ways_from_the_anchor() {
        let mult = 1u64 << MULT_SHIFT; // one ns per tick
        assert_eq!(scaled(1_010, 1_000, 5_000, mult), 5_010);
        assert_eq!(scaled(990, 1_000, 5_000, mult), 4_990);
        assert_eq!(
            scaled(1_000 + 3_000_000_000, 1_000, 0, mult * 2),
            6_000_000_000
        );
        // A third of a nanosecond per tick, truncated to fixed point: within 1 ns in 1 s.
        let third = scaled(1_000 + 3_000_000_000, 1_000, 0, mult / 3);
        assert!((999_999_999..=1_000_000_000).contains(&third), "{third}");
    }
}
