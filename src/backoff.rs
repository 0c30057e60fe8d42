//! The one backoff rule every retry uses: the delay doubles from `min` with each failed
//! attempt, up to `max`.

use std::time::Duration;

/// The wait before the attempt after `attempts` failed ones: `min · 2^attempts`, at most
/// `max`.
pub(crate) fn backoff(min: Duration, max: Duration, attempts: u32) -> Duration {
    min.saturating_mul(1u32 << attempts.min(16)).min(max)
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
