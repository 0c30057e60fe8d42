//! A record's log time as text: RFC 3339 (`2026-12-03T09:30:00.250Z`, any UTC offset, up to
//! nanoseconds) or integer nanoseconds since the Unix epoch, both ways. Only the proleptic
//! Gregorian calendar from 1970 on: a log time is a `u64` of nanoseconds.

const NS_PER_SEC: u64 = 1_000_000_000;

/// `time` in nanoseconds since the Unix epoch (0 before it, saturated after 2554).
pub(crate) fn system_time_ns(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Days from 1970-01-01 to `y-m-d` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of day `z` after 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `time_ns` as RFC 3339 in UTC with nanoseconds: `2026-12-03T09:30:00.250000000Z`.
pub fn format_rfc3339(time_ns: u64) -> String {
    let secs = time_ns / NS_PER_SEC;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        time_ns % NS_PER_SEC
    )
}

/// Parses a log time: integer nanoseconds since the epoch, or RFC 3339 with `T` or a space,
/// optional fraction, and `Z` or `±hh:mm`. `Err` says what is wrong.
pub fn parse_log_time(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|e| format!("{text:?}: {e} (nanoseconds since the epoch)"));
    }
    let bad = |why: &str| {
        format!("{text:?}: {why}; expected RFC 3339 (2026-12-03T09:30:00.250Z) or nanoseconds since the epoch")
    };
    let b = t.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |from: usize, len: usize| -> Result<u32, String> {
        let s = t.get(from..from + len).ok_or_else(|| bad("truncated"))?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("a digit expected"));
        }
        s.parse::<u32>().map_err(|_| bad("a number expected"))
    };
    let sep = |at: usize, want: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(bad("bad separator")),
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return Err(bad("a field out of range"));
    }
    let mut at = 19;
    let mut frac_ns = 0u64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let digits = &t[start..at];
        if digits.is_empty() || digits.len() > 9 {
            return Err(bad("1 to 9 digits of fraction expected"));
        }
        frac_ns = u64::from(digits.parse::<u32>().map_err(|_| bad("bad fraction"))?)
            * 10u64.pow(9 - digits.len() as u32);
    }
    let offset_s: i64 = match &t[at..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            sep(at + 3, b":")?;
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad("offset out of range"));
            }
            let v = i64::from(oh * 3600 + om * 60);
            if rest.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad("a UTC offset (Z or +hh:mm) expected")),
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s.min(59)) - offset_s;
    if secs < 0 {
        return Err(bad("before 1970"));
    }
    (secs as u64)
        .checked_mul(NS_PER_SEC)
        .and_then(|v| v.checked_add(frac_ns))
        .ok_or_else(|| bad("beyond the year 2554"))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_parse_and_format() {
        // 2026-12-03T09:30:00.25Z, checked with `date -u -d @1796290200.25`.
        let t = 1_796_290_200_250_000_000;
        assert_eq!(parse_log_time("2026-12-03T09:30:00.250Z"), Ok(t));
        assert_eq!(parse_log_time("2026-12-03 10:30:00.25+01:00"), Ok(t));
        assert_eq!(parse_log_time("2026-12-03T04:30:00.25-05:00"), Ok(t));
        assert_eq!(parse_log_time(&t.to_string()), Ok(t));
        assert_eq!(format_rfc3339(t), "2026-12-03T09:30:00.250000000Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            parse_log_time("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800 * NS_PER_SEC)
        );
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-03T09:30:00",
            "2026-12-03T09:30:00.Z",
            "2026-12-03T09:30:00.1234567890Z",
            "1969-12-31T23:59:59Z",
            "yesterday",
            "2026-12-03T09:30:00+1:00",
        ] {
            assert!(parse_log_time(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_the_identity(t in 0u64..=u64::MAX) {
            proptest::prop_assert_eq!(parse_log_time(&format_rfc3339(t)), Ok(t));
        }
    }
}
