//! Option values with units: sizes (`16M`, `1GiB`, `64KB`) and durations (`500us`, `5ms`).

use std::time::Duration;

/// A byte count: a plain number, or one with a suffix as `dd` reads them: `K`, `M`, `G`, `T`
/// (and `KiB` ... `TiB`) are powers of 1024, `KB` ... `TB` powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{s}` is not a size (a number, optionally with K, M, G, T, KiB, MB, ...)")
    })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{other}` in `{s}` is not a size unit (K, M, G, T, KiB, MB, ...)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` does not fit in 64 bits"))
}

/// A duration: a plain number of milliseconds, or one with `ns`, `us`, `ms` or `s`.
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (a number of ms, or with ns, us, ms, s)"))?;
    Ok(match unit.trim() {
        "" | "ms" => Duration::from_millis(n),
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        other => {
            return Err(format!(
                "`{other}` in `{s}` is not a duration unit (ns, us, ms, s)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dd() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999T").is_err());
    }

    #[test]
    fn durations_default_to_milliseconds() {
        assert_eq!(parse_millis("5"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_millis("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_millis("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_millis("5 fortnights").is_err());
    }
}
