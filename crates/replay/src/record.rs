//! One line of the DEBS 2015 / NYC TLC 2013 trip format, parsed.
//!
//! 17 comma-separated fields, no quoting: medallion, hack_license, pickup_datetime,
//! dropoff_datetime, trip_time_in_secs, trip_distance (miles), pickup_longitude,
//! pickup_latitude, dropoff_longitude, dropoff_latitude, payment_type, fare_amount, surcharge,
//! mta_tax, tip_amount, tolls_amount, total_amount. Fields are trimmed of surrounding blanks and
//! a trailing `\r` is ignored.
//!
//! Parsing checks only the *shape* of a line: the ids are non-empty, the times are real New
//! York local times, the numbers are numbers. Whether the values make sense (coordinates of
//! (0, 0), latitude 404.97, zero-second trips) is not a parse error: such rows are dirty, and
//! are converted as recorded ([`crate::DirtyClass`]). Fields 11 to 17 are not used by the
//! conversion; a malformed amount is kept as absent and does not reject the row.

use std::fmt;

use crate::time::{DateTimeError, parse_new_york_ms};

/// Metres in a statute mile (trip_distance is in miles).
pub const METRES_PER_MILE: f64 = 1_609.344;

/// A point as the file gives it: degrees, unchecked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// One trip as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TripRecord {
    /// The taxi (32 hex characters in the FOIL release: an MD5 hash, kept opaque).
    pub medallion: String,
    /// The driver's licence (likewise a hash, kept opaque).
    pub hack_license: String,
    /// Pickup time, UTC milliseconds (from New York local time, see [`crate::time`]).
    pub pickup_ms: i64,
    /// Drop-off time, UTC milliseconds.
    pub dropoff_ms: i64,
    /// The meter's trip time, seconds.
    pub trip_time_s: i64,
    /// The meter's distance, miles.
    pub trip_distance_mi: f64,
    /// Pickup position.
    pub pickup: Point,
    /// Drop-off position.
    pub dropoff: Point,
    /// `CSH`, `CRD`, `UNK`, ...
    pub payment_type: String,
    /// fare_amount, surcharge, mta_tax, tip_amount, tolls_amount, total_amount (USD), each
    /// `None` when not a number.
    pub amounts: [Option<f64>; 6],
}

/// Why a line is not a trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The line is empty (or blank).
    Empty,
    /// The line is not UTF-8.
    NotUtf8,
    /// Not 17 fields.
    FieldCount(usize),
    /// medallion or hack_license is empty.
    EmptyId(&'static str),
    /// A date-time field is not `YYYY-MM-DD HH:MM:SS` or names no real time.
    BadDateTime(&'static str, DateTimeError),
    /// A numeric field used by the conversion is not a number.
    BadNumber(&'static str),
}

impl ParseErrorKind {
    /// A short, stable label for summaries.
    pub fn class(&self) -> &'static str {
        match self {
            ParseErrorKind::Empty => "empty_line",
            ParseErrorKind::NotUtf8 => "not_utf8",
            ParseErrorKind::FieldCount(_) => "field_count",
            ParseErrorKind::EmptyId(_) => "empty_id",
            ParseErrorKind::BadDateTime(..) => "bad_datetime",
            ParseErrorKind::BadNumber(_) => "bad_number",
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Empty => write!(f, "empty line"),
            ParseErrorKind::NotUtf8 => write!(f, "not UTF-8"),
            ParseErrorKind::FieldCount(n) => write!(f, "expected 17 fields, found {n}"),
            ParseErrorKind::EmptyId(field) => write!(f, "{field} is empty"),
            ParseErrorKind::BadDateTime(field, e) => write!(f, "{field}: {e}"),
            ParseErrorKind::BadNumber(field) => write!(f, "{field} is not a number"),
        }
    }
}

/// A line that is not a trip, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct RowError {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// Is this line the header some copies of the data start with?
pub fn is_header(line: &[u8]) -> bool {
    line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"medallion")
}

/// Parses one line (without its `\n`).
///
/// # Errors
/// The [`ParseErrorKind`] of the first problem found.
pub fn parse_line(line: &[u8]) -> Result<TripRecord, ParseErrorKind> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| ParseErrorKind::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    let mut fields = [""; 17];
    let mut n = 0;
    for field in text.split(',') {
        if n < fields.len() {
            fields[n] = field.trim();
        }
        n += 1;
    }
    if n != fields.len() {
        return Err(ParseErrorKind::FieldCount(n));
    }
    let id = |i: usize, name: &'static str| {
        if fields[i].is_empty() {
            Err(ParseErrorKind::EmptyId(name))
        } else {
            Ok(fields[i].to_string())
        }
    };
    let time = |i: usize, name: &'static str| {
        parse_new_york_ms(fields[i]).map_err(|e| ParseErrorKind::BadDateTime(name, e))
    };
    let float = |i: usize, name: &'static str| {
        fields[i]
            .parse::<f64>()
            .map_err(|_| ParseErrorKind::BadNumber(name))
    };
    let medallion = id(0, "medallion")?;
    let hack_license = id(1, "hack_license")?;
    let pickup_ms = time(2, "pickup_datetime")?;
    let dropoff_ms = time(3, "dropoff_datetime")?;
    let trip_time_s = fields[4]
        .parse::<i64>()
        .map_err(|_| ParseErrorKind::BadNumber("trip_time_in_secs"))?;
    let trip_distance_mi = float(5, "trip_distance")?;
    let pickup = Point {
        lon: float(6, "pickup_longitude")?,
        lat: float(7, "pickup_latitude")?,
    };
    let dropoff = Point {
        lon: float(8, "dropoff_longitude")?,
        lat: float(9, "dropoff_latitude")?,
    };
    Ok(TripRecord {
        medallion,
        hack_license,
        pickup_ms,
        dropoff_ms,
        trip_time_s,
        trip_distance_mi,
        pickup,
        dropoff,
        payment_type: fields[10].to_string(),
        amounts: std::array::from_fn(|i| fields[11 + i].parse::<f64>().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "07290D3599E7A0D62097A346EFCC1FB5,E7750A37CAB07D0DFF0AF7E3573AC141,2013-01-01 00:00:00,2013-01-01 00:02:00,120,0.44,-73.956528,40.716976,-73.962440,40.715008,CSH,3.50,0.50,0.50,0.00,0.00,4.50";

    #[test]
    fn parses_the_documented_example_line() {
        let r = parse_line(FIRST.as_bytes()).unwrap();
        assert_eq!(r.medallion, "07290D3599E7A0D62097A346EFCC1FB5");
        assert_eq!(r.hack_license, "E7750A37CAB07D0DFF0AF7E3573AC141");
        assert_eq!(r.pickup_ms, 1_357_016_400_000);
        assert_eq!(r.dropoff_ms - r.pickup_ms, 120_000);
        assert_eq!(r.trip_time_s, 120);
        assert_eq!(r.trip_distance_mi, 0.44);
        assert_eq!(
            r.pickup,
            Point {
                lat: 40.716976,
                lon: -73.956528
            }
        );
        assert_eq!(
            r.dropoff,
            Point {
                lat: 40.715008,
                lon: -73.962440
            }
        );
        assert_eq!(r.payment_type, "CSH");
        assert_eq!(
            r.amounts,
            [
                Some(3.5),
                Some(0.5),
                Some(0.5),
                Some(0.0),
                Some(0.0),
                Some(4.5)
            ]
        );
        let crlf = format!("{FIRST}\r");
        assert_eq!(parse_line(crlf.as_bytes()), Ok(r));
    }

    #[test]
    fn dirty_values_are_not_parse_errors() {
        let line = "F89999,X,2013-01-01 00:31:00,2013-01-01 00:38:00,420,1.44,0.000000,404.978120,-73.970406,40.794067,CSH,x,,0,0,0,0";
        let r = parse_line(line.as_bytes()).unwrap();
        assert_eq!(r.pickup.lat, 404.97812);
        assert_eq!(r.amounts[0], None, "a malformed amount is absent");
        assert_eq!(r.amounts[1], None);
        let nan = "M,H,2013-01-01 00:31:00,2013-01-01 00:38:00,420,1.44,NaN,40.7,-73.9,40.7,CSH,0,0,0,0,0,0";
        assert!(parse_line(nan.as_bytes()).unwrap().pickup.lon.is_nan());
    }

    #[test]
    fn classifies_parse_errors() {
        let field = |i: usize, value: &str| {
            let mut f: Vec<&str> = FIRST.split(',').collect();
            f[i] = value;
            f.join(",")
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty_line"),
            (b"  \r".to_vec(), "empty_line"),
            (vec![0xff, 0xfe, b','], "not_utf8"),
            (b"a,b,c".to_vec(), "field_count"),
            (format!("{FIRST},extra").into_bytes(), "field_count"),
            (field(0, " ").into_bytes(), "empty_id"),
            (field(1, "").into_bytes(), "empty_id"),
            (field(2, "2013-01-01").into_bytes(), "bad_datetime"),
            (field(3, "2013-02-30 00:00:00").into_bytes(), "bad_datetime"),
            (field(4, "1.5").into_bytes(), "bad_number"),
            (field(5, "").into_bytes(), "bad_number"),
            (field(7, "north").into_bytes(), "bad_number"),
        ];
        for (line, class) in cases {
            let err = parse_line(&line).unwrap_err();
            assert_eq!(
                err.class(),
                class,
                "{:?}: {err}",
                String::from_utf8_lossy(&line)
            );
        }
        let e = RowError {
            line: 7,
            kind: parse_line(b"a,b").unwrap_err(),
        };
        assert_eq!(e.to_string(), "line 7: expected 17 fields, found 2");
    }

    #[test]
    fn recognises_a_header() {
        assert!(is_header(b"medallion, hack_license, vendor_id"));
        assert!(is_header(b"MEDALLION,HACK_LICENSE"));
        assert!(!is_header(FIRST.as_bytes()));
    }
}
