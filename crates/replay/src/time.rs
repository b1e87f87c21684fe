//! The file's clock: `YYYY-MM-DD HH:MM:SS` in New York local time, to UTC milliseconds.
//!
//! No time-zone database is needed: New York is UTC−5 (EST) outside daylight saving time and
//! UTC−4 (EDT) inside it, and the US rules are fixed by law. Since 2007 daylight time runs from
//! the second Sunday of March, 02:00 local, to the first Sunday of November, 02:00 local; from
//! 1987 to 2006 it ran from the first Sunday of April to the last Sunday of October (earlier
//! years are read with that rule too). At the spring change, 02:00–02:59 does not exist on a
//! New York clock; such a time is read as standard time (it lands on 03:00–03:59 EDT). At the
//! autumn change, 01:00–01:59 happens twice; it is read as the first occurrence (EDT).

use std::fmt;

/// Milliseconds in a second, minute, hour and day.
const SECOND_MS: i64 = 1_000;
const HOUR_MS: i64 = 3_600 * SECOND_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Why a date-time did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// Not of the form `YYYY-MM-DD HH:MM:SS`.
    #[error("expected YYYY-MM-DD HH:MM:SS")]
    Format,
    /// A field is out of its range (month 13, 31 April, hour 24, ...).
    #[error("no such date or time")]
    Range,
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Day of the week of a day number, 0 = Sunday.
fn weekday(days: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7)
}

/// The day number of the `n`-th (1-based) Sunday of a month.
fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday(first)) % 7 + 7 * (n - 1)
}

/// The day number of the last Sunday of a month.
fn last_sunday(year: i64, month: u32) -> i64 {
    let last = days_from_civil(year, month, days_in_month(year, month));
    last - weekday(last)
}

/// Daylight time in `year`, as local wall-clock milliseconds "as if UTC": `[start, end)` where
/// `start` is 02:00 of the first day and `end` 02:00 of the last.
fn daylight_local(year: i64) -> (i64, i64) {
    let (start_day, end_day) = if year >= 2007 {
        (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1))
    } else {
        (nth_sunday(year, 4, 1), last_sunday(year, 10))
    };
    (
        start_day * DAY_MS + 2 * HOUR_MS,
        end_day * DAY_MS + 2 * HOUR_MS,
    )
}

/// New York's offset from UTC at a local wall-clock time (given in milliseconds as if it
/// were UTC), by the rules in the module documentation: −4 h in daylight time, else −5 h.
pub fn new_york_offset_ms(local_ms: i64) -> i64 {
    let (year, _, _) = civil_from_days(local_ms.div_euclid(DAY_MS));
    let (start, end) = daylight_local(year);
    // The skipped hour [start, start + 1 h) is read as standard time; the repeated hour
    // [end − 1 h, end) as daylight time.
    if local_ms >= start + HOUR_MS && local_ms < end {
        -4 * HOUR_MS
    } else {
        -5 * HOUR_MS
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` into wall-clock milliseconds as if it were UTC.
///
/// # Errors
/// [`DateTimeError::Format`] for anything but that exact shape, [`DateTimeError::Range`] for a
/// date or time that does not exist.
pub fn parse_wall_clock_ms(text: &str) -> Result<i64, DateTimeError> {
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(DateTimeError::Format);
    }
    let num = |from: usize, to: usize| -> Result<u32, DateTimeError> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + u32::from(c - b'0'))
            } else {
                Err(DateTimeError::Format)
            }
        })
    };
    let year = i64::from(num(0, 4)?);
    let (month, day) = (num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(DateTimeError::Range);
    }
    Ok(days_from_civil(year, month, day) * DAY_MS
        + i64::from(hour) * HOUR_MS
        + i64::from(minute * 60 + second) * SECOND_MS)
}

/// Parses a New York local `YYYY-MM-DD HH:MM:SS` into UTC milliseconds since the epoch.
///
/// # Errors
/// As [`parse_wall_clock_ms`].
pub fn parse_new_york_ms(text: &str) -> Result<i64, DateTimeError> {
    let local = parse_wall_clock_ms(text)?;
    Ok(local - new_york_offset_ms(local))
}

/// A UTC instant shown as `YYYY-MM-DDTHH:MM:SSZ` (milliseconds dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc(pub i64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(DAY_MS);
        let ms = self.0.rem_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(days);
        let s = ms / SECOND_MS;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3_600,
            s / 60 % 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2013, 1, 1), 15_706);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        for days in [-800_000, -1, 0, 1, 15_706, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(weekday(days_from_civil(2013, 1, 1)), 2, "a Tuesday");
    }

    #[test]
    fn new_year_2013_is_est() {
        // 2013-01-01 00:00:00 EST = 05:00 UTC = 1357016400 s.
        assert_eq!(
            parse_new_york_ms("2013-01-01 00:00:00"),
            Ok(1_357_016_400_000)
        );
        assert_eq!(
            parse_new_york_ms("2013-01-01 00:02:00"),
            Ok(1_357_016_520_000)
        );
        assert_eq!(Utc(1_357_016_400_000).to_string(), "2013-01-01T05:00:00Z");
    }

    #[test]
    fn daylight_saving_2013() {
        // Daylight time 2013: Sunday 10 March 02:00 to Sunday 3 November 02:00.
        let utc = |s: &str| Utc(parse_new_york_ms(s).unwrap()).to_string();
        assert_eq!(utc("2013-03-10 01:59:59"), "2013-03-10T06:59:59Z");
        assert_eq!(
            utc("2013-03-10 02:30:00"),
            "2013-03-10T07:30:00Z",
            "skipped hour: EST"
        );
        assert_eq!(utc("2013-03-10 03:00:00"), "2013-03-10T07:00:00Z");
        assert_eq!(utc("2013-07-04 12:00:00"), "2013-07-04T16:00:00Z");
        assert_eq!(utc("2013-11-03 00:59:59"), "2013-11-03T04:59:59Z");
        assert_eq!(
            utc("2013-11-03 01:30:00"),
            "2013-11-03T05:30:00Z",
            "repeated hour: EDT"
        );
        assert_eq!(utc("2013-11-03 02:00:00"), "2013-11-03T07:00:00Z");
        assert_eq!(utc("2013-12-31 23:59:59"), "2014-01-01T04:59:59Z");
        // The 1987-2006 rule: 2005 ran from 3 April to 30 October.
        assert_eq!(utc("2005-04-03 03:00:00"), "2005-04-03T07:00:00Z");
        assert_eq!(utc("2005-04-02 12:00:00"), "2005-04-02T17:00:00Z");
        assert_eq!(utc("2005-10-30 02:00:00"), "2005-10-30T07:00:00Z");
    }

    #[test]
    fn rejects_malformed_and_impossible_times() {
        for bad in [
            "",
            "2013-01-01",
            "2013/01/01 00:00:00",
            "2013-01-01 00:00:0x",
            "2013-01-01 00:00:00 ",
        ] {
            assert_eq!(
                parse_wall_clock_ms(bad),
                Err(DateTimeError::Format),
                "{bad:?}"
            );
        }
        for bad in [
            "2013-13-01 00:00:00",
            "2013-02-29 00:00:00",
            "2013-04-31 00:00:00",
            "2013-01-01 24:00:00",
            "2013-01-01 00:60:00",
            "2013-00-01 00:00:00",
        ] {
            assert_eq!(
                parse_wall_clock_ms(bad),
                Err(DateTimeError::Range),
                "{bad:?}"
            );
        }
        assert!(parse_wall_clock_ms("2012-02-29 00:00:00").is_ok());
        assert!(parse_wall_clock_ms("2013-01-01T00:00:00").is_ok());
    }
}
