//! Event time: microseconds since the Unix epoch, UTC.
//!
//! Inputs carry time as RFC 3339 text, as a date, or as a number of seconds, milliseconds,
//! microseconds or nanoseconds since the epoch. [`parse_text`] and [`from_epoch`] turn each
//! into [`Micros`]; [`format_rfc3339`] prints it back with millisecond precision, or
//! microsecond precision when the value needs it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Event time in microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// One second in [`Micros`].
pub const SECOND: Micros = 1_000_000;
/// One minute in [`Micros`].
pub const MINUTE: Micros = 60 * SECOND;
/// One hour in [`Micros`].
pub const HOUR: Micros = 60 * MINUTE;
/// One day in [`Micros`].
pub const DAY: Micros = 24 * HOUR;

/// How a time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// RFC 3339 text, a date, or an epoch number whose unit is guessed from its size.
    #[default]
    Auto,
    /// RFC 3339 text (or a date, or `YYYY-MM-DD HH:MM:SS`), always UTC unless an offset is given.
    Rfc3339,
    /// Seconds since the epoch (may have a fraction).
    EpochSeconds,
    /// Milliseconds since the epoch.
    EpochMillis,
    /// Microseconds since the epoch.
    EpochMicros,
    /// Nanoseconds since the epoch.
    EpochNanos,
}

impl std::str::FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => TimeFormat::Auto,
            "rfc3339" | "iso" | "iso8601" => TimeFormat::Rfc3339,
            "s" | "epoch_s" | "seconds" => TimeFormat::EpochSeconds,
            "ms" | "epoch_ms" | "millis" => TimeFormat::EpochMillis,
            "us" | "µs" | "epoch_us" | "micros" => TimeFormat::EpochMicros,
            "ns" | "epoch_ns" | "nanos" => TimeFormat::EpochNanos,
            other => {
                return Err(format!(
                    "unknown time format `{other}` (expected auto, rfc3339, s, ms, us or ns)"
                ));
            }
        })
    }
}

/// Earliest accepted time (year 1000) and latest (year 9999): anything outside is a typo or
/// a unit mix-up, and is rejected rather than silently stored.
const MIN_TIME: Micros = -30_610_224_000 * SECOND;
const MAX_TIME: Micros = 253_402_300_799 * SECOND;

fn checked(t: Micros) -> Result<Micros, String> {
    if (MIN_TIME..=MAX_TIME).contains(&t) {
        Ok(t)
    } else {
        Err(format!("time {t}µs is outside the years 1000..9999"))
    }
}

/// Converts an epoch number in the given unit; `Auto` guesses the unit from the magnitude
/// (below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds).
pub fn from_epoch(x: f64, format: TimeFormat) -> Result<Micros, String> {
    if !x.is_finite() {
        return Err("time is not a finite number".into());
    }
    let scale = match format {
        TimeFormat::EpochSeconds => 1e6,
        TimeFormat::EpochMillis => 1e3,
        TimeFormat::EpochMicros => 1.0,
        TimeFormat::EpochNanos => 1e-3,
        TimeFormat::Rfc3339 => return Err("expected RFC 3339 text, found a number".into()),
        TimeFormat::Auto => {
            let a = x.abs();
            if a < 1e11 {
                1e6
            } else if a < 1e14 {
                1e3
            } else if a < 1e17 {
                1.0
            } else {
                1e-3
            }
        }
    };
    checked((x * scale).round() as Micros)
}

/// Converts an integer epoch value exactly (no float rounding for large microsecond values).
pub fn from_epoch_int(x: i64, format: TimeFormat) -> Result<Micros, String> {
    let a = x.unsigned_abs();
    let t = match format {
        TimeFormat::EpochSeconds => x.checked_mul(SECOND),
        TimeFormat::EpochMillis => x.checked_mul(1000),
        TimeFormat::EpochMicros => Some(x),
        TimeFormat::EpochNanos => Some(x.div_euclid(1000)),
        TimeFormat::Rfc3339 => return Err("expected RFC 3339 text, found a number".into()),
        TimeFormat::Auto => {
            if a < 100_000_000_000 {
                x.checked_mul(SECOND)
            } else if a < 100_000_000_000_000 {
                x.checked_mul(1000)
            } else if a < 100_000_000_000_000_000 {
                Some(x)
            } else {
                Some(x.div_euclid(1000))
            }
        }
    };
    checked(t.ok_or_else(|| format!("time {x} overflows"))?)
}

/// A period `START..END` (each as [`parse_text`] reads it, end after start), as
/// `(start, end)`.
pub fn parse_period(text: &str) -> Result<(Micros, Micros), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| "expected START..END".to_string())?;
    let t = |s: &str| parse_text(s.trim(), TimeFormat::Auto).map_err(|e| format!("`{s}`: {e}"));
    let (start, end) = (t(a)?, t(b)?);
    if start >= end {
        return Err("the start is not before the end".into());
    }
    Ok((start, end))
}

/// Parses a time written as text: RFC 3339 (`2024-01-02T03:04:05.678Z`, any offset),
/// `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), a date `YYYY-MM-DD` (midnight UTC), or — with `Auto` or
/// an epoch format — a number.
pub fn parse_text(s: &str, format: TimeFormat) -> Result<Micros, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("time is empty".into());
    }
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.bytes().any(|b| b.is_ascii_digit())
        && !(s.len() == 10 && s.as_bytes()[4] == b'-');
    if numeric && format != TimeFormat::Rfc3339 {
        if let Ok(i) = s.parse::<i64>() {
            return from_epoch_int(i, format);
        }
        if let Ok(x) = s.parse::<f64>() {
            return from_epoch(x, format);
        }
    }
    if matches!(
        format,
        TimeFormat::EpochSeconds
            | TimeFormat::EpochMillis
            | TimeFormat::EpochMicros
            | TimeFormat::EpochNanos
    ) {
        return Err(format!("expected an epoch number, found `{s}`"));
    }
    if let Some(t) = rfc3339_common(s.as_bytes()) {
        return checked(t);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return checked(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(ndt) = NaiveDateTime::parse_from_str(s, fmt) {
            return checked(ndt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return checked(
            d.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_micros(),
        );
    }
    Err(format!(
        "`{s}` is not a time (expected RFC 3339 such as 2024-01-31T12:00:00Z, or epoch seconds/ms/µs)"
    ))
}

/// The common shape of RFC 3339, read by hand: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`,
/// as chrono reads it (ingest parses two timestamps per event; chrono's general parser was
/// a twentieth of the HTTP workers' time). `None` for anything else, including leap
/// seconds, which the general parser then reads.
fn rfc3339_common(b: &[u8]) -> Option<Micros> {
    let digits = |at: usize, n: usize| -> Option<i64> {
        let part = b.get(at..at + n)?;
        part.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if at(i, b'.') {
        let n = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        let frac = digits(i + 1, n)?;
        micros = frac * 10i64.pow(9 - n as u32) / 1000;
        i += 1 + n;
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = (h * 60 + m) * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    // Days since the epoch of a proleptic Gregorian date (years counted from March, so
    // the leap day ends a year).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * SECOND + micros)
}

/// Prints a time as RFC 3339 in UTC: milliseconds, or microseconds when they are not zero.
pub fn format_rfc3339(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) => {
            let precision = if t.rem_euclid(1000) == 0 {
                SecondsFormat::Millis
            } else {
                SecondsFormat::Micros
            };
            dt.to_rfc3339_opts(precision, true)
        }
        None => format!("{t}µs"),
    }
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `7d`, `2w` (also `min`, `sec`,
/// `hour(s)`, `day(s)`, `week(s)`; `us` for microseconds).
pub fn parse_duration(s: &str) -> Result<Micros, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 2h, 7d)"))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1000,
        "s" | "sec" | "secs" | "second" | "seconds" => SECOND,
        "m" | "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hour" | "hours" => HOUR,
        "d" | "day" | "days" => DAY,
        "w" | "week" | "weeks" => 7 * DAY,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (use ms, s, m, h, d or w)"
            ));
        }
    };
    Ok((n * scale as f64).round() as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_accepted_form() {
        let t = 1_704_067_200 * SECOND; // 2024-01-01T00:00:00Z
        assert_eq!(parse_text("2024-01-01T00:00:00Z", TimeFormat::Auto), Ok(t));
        assert_eq!(
            parse_text("2024-01-01T01:00:00+01:00", TimeFormat::Auto),
            Ok(t)
        );
        assert_eq!(parse_text("2024-01-01", TimeFormat::Auto), Ok(t));
        assert_eq!(
            parse_text("2024-01-01 00:00:00.5", TimeFormat::Auto),
            Ok(t + SECOND / 2)
        );
        assert_eq!(parse_text("1704067200", TimeFormat::Auto), Ok(t));
        assert_eq!(parse_text("1704067200000", TimeFormat::Auto), Ok(t));
        assert_eq!(parse_text("1704067200000000", TimeFormat::Auto), Ok(t));
        assert_eq!(parse_text("1704067200000000000", TimeFormat::Auto), Ok(t));
        assert_eq!(
            parse_text("1704067200.25", TimeFormat::EpochSeconds),
            Ok(t + SECOND / 4)
        );
        assert_eq!(
            parse_text("1704067200", TimeFormat::EpochMillis),
            Ok(1_704_067_200_000)
        );
        assert!(parse_text("yesterday", TimeFormat::Auto).is_err());
        assert!(parse_text("2024-01-01", TimeFormat::EpochSeconds).is_err());
        assert!(parse_text("", TimeFormat::Auto).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The hand-read common shape gives what chrono gives, and declines only what
        /// chrono also refuses or what it leaves to chrono (a leap second, other shapes).
        #[test]
        fn the_common_rfc3339_shape_reads_as_chrono_reads_it(
            // Month ends and century years, where calendars go wrong, half the time.
            year in prop_oneof![0i64..=9999, (0i64..=99).prop_map(|c| c * 100), 1996i64..=2004],
            month in 0u32..=13,
            day in prop_oneof![0u32..=32, 27u32..=32],
            hour in 0u32..=24, minute in 0u32..=60, second in 0u32..=60,
            frac in proptest::option::of("[0-9]{0,11}"),
            zone in prop_oneof![
                Just("Z".to_string()),
                Just("z".to_string()),
                Just(String::new()),
                (proptest::bool::ANY, 0u32..=25, 0u32..=60)
                    .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
            ],
            sep in prop_oneof![
                Just('T'), Just('t'),
                Just(' ')
            ],
        ) {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!(
                "{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{frac}{zone}"
            );
            let chrono = DateTime::parse_from_rfc3339(&text).map(|d| d.timestamp_micros()).ok();
            match rfc3339_common(text.as_bytes()) {
                Some(t) => prop_assert_eq!(Some(t), chrono, "{}", text),
                // Declined: chrono refuses it, or it is one of the shapes left to chrono.
                None => prop_assert!(
                    chrono.is_none() || sep != 'T' || zone == "z" || second == 60
                        || frac.len() > 10,
                    "declined {} which chrono reads", text
                ),
            }
        }
    }

    #[test]
    fn malformed_or_unusual_rfc3339_is_left_to_chrono() {
        for text in [
            "",
            "2024-03-17",
            "2024-03-17T15:37",
            "2024-03-17T15:37:50",
            "2024-03-17T15:37:50.",
            "2024-03-17T15:37:50.Z",
            "2024-03-17T15:37:50Zx",
            "2024-03-17T15:37:50Z\n",
            "2024-03-17T15:37:50+0100",
            "2024-03-17T15:37:50+01",
            "2024-03-17T15:37:50\u{2212}01:00",
            "2024-03-17T15:37:50.1234567890Z",
            "2024-03-17T15:37:60Z",
            "2024-03-17t15:37:50Z",
            "2024-03-17 15:37:50Z",
            "2024-03-17T15:37:50z",
            "2024-0３-17T15:37:50Z",
            "+2024-03-17T15:37:50Z",
        ] {
            assert_eq!(rfc3339_common(text.as_bytes()), None, "{text}");
        }
        // What it does read, it reads as chrono does.
        for text in [
            "2024-03-17T15:37:50-00:00",
            "2024-03-17T15:37:50+23:59",
            "1000-01-01T00:00:00.5Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text).map(|d| d.timestamp_micros());
            assert_eq!(rfc3339_common(text.as_bytes()), chrono.ok(), "{text}");
        }
    }

    #[test]
    fn every_day_of_leap_and_century_years_reads_as_chrono_reads_it() {
        for year in [
            1600, 1700, 1900, 1970, 1999, 2000, 2023, 2024, 2100, 2400, 9999,
        ] {
            for month in 1..=12 {
                for day in 1..=31 {
                    let text = format!("{year:04}-{month:02}-{day:02}T23:59:59.999999-01:30");
                    let chrono = DateTime::parse_from_rfc3339(&text).map(|d| d.timestamp_micros());
                    assert_eq!(rfc3339_common(text.as_bytes()), chrono.ok(), "{text}");
                }
            }
        }
    }

    #[test]
    fn formats_millis_unless_micros_needed() {
        assert_eq!(
            format_rfc3339(1_704_067_200_123_000),
            "2024-01-01T00:00:00.123Z"
        );
        assert_eq!(
            format_rfc3339(1_704_067_200_123_456),
            "2024-01-01T00:00:00.123456Z"
        );
    }
}
