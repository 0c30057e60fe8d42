//! The one backoff rule every retry uses (the delay doubles from `min` with each failed
//! attempt, up to `max`), and the one idle rule every poller uses.

use std::time::Duration;

/// The wait before the attempt after `attempts` failed ones: `min · 2^attempts`, at most
/// `max`.
pub(crate) fn backoff(min: Duration, max: Duration, attempts: u32) -> Duration {
    min.saturating_mul(1u32 << attempts.min(16)).min(max)
}

/// One pause of a poller that found nothing `round` times in a row (Aeron's back-off idle
/// strategy): spin, then yield, then sleep doubling from 1 µs up to `max`.
pub(crate) fn idle_pause(round: u32, max: Duration) {
    match round {
        0..=100 => std::hint::spin_loop(),
        101..=200 => std::thread::yield_now(),
        n => {
            let us = 1u64 << (n - 200).min(20);
            std::thread::sleep(Duration::from_micros(us).min(max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_and_stops_at_max() {
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(5));
        assert_eq!(backoff(min, max, 0), min);
        assert_eq!(backoff(min, max, 3), Duration::from_millis(80));
        assert_eq!(backoff(min, max, 9), max); // 5.12 s capped
        assert_eq!(backoff(min, max, u32::MAX), max);
    }
}
