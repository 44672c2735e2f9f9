//! Small formatting helpers shared by the subcommands: times for humans and
//! writing to stdout without panicking on a closed pipe.

use std::io::{self, Write};

/// Seconds since the epoch, saturating at 0 for times before it (the broker's
/// one definition, re-exported for the subcommands).
pub use crate::clock::unix_secs;

/// A unix time as UTC calendar fields.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Utc {
    fn of(unix: u64) -> Utc {
        let secs = unix % 86_400;
        let (year, month, day) = civil_from_days((unix / 86_400) as i64);
        Utc {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }
}

/// `2025-06-01 14:03:22 UTC`. UTC rather than local time: unambiguous, and no
/// time-zone database is needed.
pub fn absolute(unix: u64) -> String {
    let t = Utc::of(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `2025-06-01T14:03:22Z`: RFC 3339 in UTC (Kubernetes' `metav1.Time`, Codex's
/// `last_refresh`).
pub fn rfc3339(unix: u64) -> String {
    let t = Utc::of(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `14:05 UTC`: the time of day only, for one-line summaries.
pub fn clock(unix: u64) -> String {
    let t = Utc::of(unix);
    format!("{:02}:{:02} UTC", t.hour, t.minute)
}

/// `in 53m` or `7m ago`, relative to `now` (both unix seconds).
pub fn relative(unix: u64, now: u64) -> String {
    if unix == now {
        "now".to_string()
    } else if unix > now {
        format!("in {}", span(unix - now))
    } else {
        format!("{} ago", span(now - unix))
    }
}

/// `2025-06-01 14:03:22 UTC (in 53m)`.
pub fn absolute_and_relative(unix: u64, now: u64) -> String {
    format!("{} ({})", absolute(unix), relative(unix, now))
}

/// A duration in the two largest units: `42s`, `53m`, `1h 05m`, `2d 4h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h {:02}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `text` to stdout and flushes. An error (e.g. the reader went away) is
/// returned rather than panicking like `println!` would.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_times_are_utc_calendar_dates() {
        assert_eq!(absolute(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(absolute(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(absolute(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(absolute(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn rfc3339_and_clock_are_the_same_utc_time() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(clock(1_700_003_000), "23:03 UTC");
    }

    #[test]
    fn spans_use_two_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(60 * 53 + 10), "53m");
        assert_eq!(span(3600 + 5 * 60), "1h 05m");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
    }

    #[test]
    fn relative_in_both_directions() {
        assert_eq!(relative(1000 + 3180, 1000), "in 53m");
        assert_eq!(relative(1000, 1000 + 420), "7m ago");
        assert_eq!(
            absolute_and_relative(1_700_000_000, 1_700_000_000 - 90),
            "2023-11-14 22:13:20 UTC (in 1m)"
        );
    }
}
