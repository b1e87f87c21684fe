//! What the two routers decide for each event: is it plausible, which cell and region does it
//! belong to, and which neighbouring regions must also see it (the halo).
//!
//! The rules are the bad-input rules of the pipeline: a coordinate must be finite, in range and
//! not exactly (0, 0) (the classic "no fix" value of GPS stacks, present in real taxi data);
//! the device's accuracy radius must be within a limit; the event time must be neither too far
//! in the future (a wrong device clock would drag watermarks forward and close windows early)
//! nor older than a limit; a completed trip must have taken a positive time, at a speed a road
//! vehicle can reach (distance / duration within a limit). A rejected event carries a short,
//! stable reason used as the DLQ reason and metrics label.

use crate::geo::{Cell, GeoError, HaloRegions, LatLon, Region, halo_regions};

/// Why an event was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Rejected: coordinate is not a finite number.
    #[error("coordinate is not a finite number")]
    NonFiniteCoordinate,
    /// Rejected: latitude outside [-90, 90].
    #[error("latitude outside [-90, 90]")]
    LatitudeOutOfRange,
    /// Rejected: longitude outside [-180, 180].
    #[error("longitude outside [-180, 180]")]
    LongitudeOutOfRange,
    /// Rejected: coordinate is exactly (0, 0), the no-fix value.
    #[error("coordinate is exactly (0, 0), the no-fix value")]
    NullIsland,
    /// Rejected: accuracy radius is worse than the limit (or not a number).
    #[error("accuracy radius is worse than the limit (or not a number)")]
    PoorAccuracy,
    /// Rejected: speed is negative or not a number.
    #[error("speed is negative or not a number")]
    BadSpeed,
    /// Rejected: heading outside [0, 360].
    #[error("heading outside [0, 360]")]
    BadHeading,
    /// Rejected: event time is too far in the future.
    #[error("event time is too far in the future")]
    FutureTimestamp,
    /// Rejected: event time is older than the limit.
    #[error("event time is older than the limit")]
    TooOld,
    /// Rejected: a completed trip's duration is not a finite number greater than 0.
    #[error("trip duration is not a finite number greater than 0")]
    BadDuration,
    /// Rejected: a completed trip's distance over its duration is above the speed limit.
    #[error("trip distance over duration is above the speed limit")]
    ImplausibleSpeed,
}

impl Rejection {
    /// A short, stable label for DLQ headers and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NonFiniteCoordinate => "non_finite_coordinate",
            Rejection::LatitudeOutOfRange => "latitude_out_of_range",
            Rejection::LongitudeOutOfRange => "longitude_out_of_range",
            Rejection::NullIsland => "null_island",
            Rejection::PoorAccuracy => "poor_accuracy",
            Rejection::BadSpeed => "bad_speed",
            Rejection::BadHeading => "bad_heading",
            Rejection::FutureTimestamp => "future_timestamp",
            Rejection::TooOld => "too_old",
            Rejection::BadDuration => "bad_duration",
            Rejection::ImplausibleSpeed => "implausible_speed",
        }
    }
}

/// Checks a coordinate.
///
/// # Errors
/// The [`Rejection`] that applies first.
pub fn check_point(lat: f64, lon: f64) -> Result<LatLon, Rejection> {
    if !lat.is_finite() || !lon.is_finite() {
        return Err(Rejection::NonFiniteCoordinate);
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(Rejection::LatitudeOutOfRange);
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(Rejection::LongitudeOutOfRange);
    }
    if lat == 0.0 && lon == 0.0 {
        return Err(Rejection::NullIsland);
    }
    Ok(LatLon { lat, lon })
}

/// Time limits of an event relative to the processing clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeLimits {
    /// How far ahead of the processing clock an event time may be, milliseconds.
    pub max_future_ms: i64,
    /// How far behind the processing clock an event time may be, milliseconds; 0 disables the
    /// check (for replays of historical data).
    pub max_age_ms: i64,
}

/// Checks an event time against the processing clock `now_ms`.
///
/// # Errors
/// [`Rejection::FutureTimestamp`] or [`Rejection::TooOld`].
pub fn check_time(event_time_ms: i64, now_ms: i64, limits: TimeLimits) -> Result<(), Rejection> {
    if event_time_ms > now_ms.saturating_add(limits.max_future_ms) {
        return Err(Rejection::FutureTimestamp);
    }
    if limits.max_age_ms > 0 && event_time_ms < now_ms.saturating_sub(limits.max_age_ms) {
        return Err(Rejection::TooOld);
    }
    Ok(())
}

/// Checks the optional motion fields of a GPS ping.
///
/// # Errors
/// The [`Rejection`] that applies first.
pub fn check_motion(
    accuracy_m: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    max_accuracy_m: f64,
) -> Result<(), Rejection> {
    if accuracy_m.is_some_and(|a| !(a.is_finite() && a >= 0.0 && a <= max_accuracy_m)) {
        return Err(Rejection::PoorAccuracy);
    }
    if speed_mps.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
        return Err(Rejection::BadSpeed);
    }
    if heading_deg.is_some_and(|h| !(h.is_finite() && (0.0..=360.0).contains(&h))) {
        return Err(Rejection::BadHeading);
    }
    Ok(())
}

/// Checks the duration and the distance of a completed trip (`trip.completed`), when the
/// producer sends them: the duration must be a finite number of seconds greater than 0, and
/// the average speed, `distance_m / duration_s`, at most `max_speed_mps`. An absent field
/// (records of older producers) is not checked; an absent distance or duration skips the
/// speed check. The duration is checked first, so a zero-duration trip is `bad_duration`
/// whatever its distance.
///
/// # Errors
/// [`Rejection::BadDuration`] or [`Rejection::ImplausibleSpeed`].
pub fn check_trip(
    duration_s: Option<f64>,
    distance_m: Option<f64>,
    max_speed_mps: f64,
) -> Result<(), Rejection> {
    let Some(duration_s) = duration_s else {
        return Ok(());
    };
    if !(duration_s.is_finite() && duration_s > 0.0) {
        return Err(Rejection::BadDuration);
    }
    if distance_m.is_some_and(|d| d / duration_s > max_speed_mps) {
        return Err(Rejection::ImplausibleSpeed);
    }
    Ok(())
}

/// Where an event goes: its cell, its home region, and the neighbouring regions within the
/// halo distance.
#[derive(Debug, Clone)]
pub struct Route {
    /// The cell at the cell precision.
    pub cell: Cell,
    /// The region the cell belongs to: the event's home partition key.
    pub home: Region,
    /// The other regions whose border lies within the halo distance.
    pub halo: HaloRegions,
}

impl Route {
    /// Every region the event goes to, home first, with its halo flag.
    pub fn targets(self) -> impl Iterator<Item = (Region, bool)> {
        std::iter::once((self.home, false)).chain(self.halo.map(|r| (r, true)))
    }
}

/// The geometry every router applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Geohash precision of a cell.
    pub cell_precision: u8,
    /// Geohash precision of a region (coarser than a cell).
    pub region_precision: u8,
    /// Distance from a region's border within which events are copied to it, metres.
    pub halo_m: f64,
}

impl Geometry {
    /// Routes a checked point.
    ///
    /// # Errors
    /// A [`GeoError`] when the precisions are invalid (the topology check rules that out).
    pub fn route(&self, point: LatLon) -> Result<Route, GeoError> {
        let cell = Cell::from_lat_lon(point.lat, point.lon, self.cell_precision)?;
        let home = Region::of(cell, self.region_precision)?;
        let halo = halo_regions(point, home, self.halo_m)?;
        Ok(Route { cell, home, halo })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points() {
        assert!(check_point(40.7, -73.9).is_ok());
        assert_eq!(
            check_point(f64::NAN, 1.0),
            Err(Rejection::NonFiniteCoordinate)
        );
        assert_eq!(
            check_point(1.0, f64::INFINITY),
            Err(Rejection::NonFiniteCoordinate)
        );
        assert_eq!(
            check_point(404.97812, 0.0),
            Err(Rejection::LatitudeOutOfRange)
        );
        assert_eq!(
            check_point(40.8, -181.0),
            Err(Rejection::LongitudeOutOfRange)
        );
        assert_eq!(check_point(0.0, 0.0), Err(Rejection::NullIsland));
        assert!(
            check_point(0.0, -0.028333).is_ok(),
            "bogus but valid coordinates pass"
        );
    }

    #[test]
    fn times() {
        let limits = TimeLimits {
            max_future_ms: 30_000,
            max_age_ms: 600_000,
        };
        assert!(check_time(1_000_000, 1_000_000, limits).is_ok());
        assert!(check_time(1_030_000, 1_000_000, limits).is_ok());
        assert_eq!(
            check_time(1_030_001, 1_000_000, limits),
            Err(Rejection::FutureTimestamp)
        );
        assert_eq!(
            check_time(399_999, 1_000_000, limits),
            Err(Rejection::TooOld)
        );
        let replay = TimeLimits {
            max_age_ms: 0,
            ..limits
        };
        assert!(check_time(0, 1_000_000, replay).is_ok());
        assert_eq!(check_time(i64::MAX, i64::MAX - 1, limits), Ok(()));
    }

    #[test]
    fn motion() {
        assert!(check_motion(Some(5.0), Some(10.0), Some(359.0), 100.0).is_ok());
        assert!(check_motion(None, None, None, 100.0).is_ok());
        assert_eq!(
            check_motion(Some(250.0), None, None, 100.0),
            Err(Rejection::PoorAccuracy)
        );
        assert_eq!(
            check_motion(Some(f64::NAN), None, None, 100.0),
            Err(Rejection::PoorAccuracy)
        );
        assert_eq!(
            check_motion(None, Some(-1.0), None, 100.0),
            Err(Rejection::BadSpeed)
        );
        assert_eq!(
            check_motion(None, None, Some(361.0), 100.0),
            Err(Rejection::BadHeading)
        );
    }

    #[test]
    fn trips() {
        let max = 70.0;
        assert_eq!(check_trip(Some(600.0), Some(3_000.0), max), Ok(()));
        assert_eq!(check_trip(None, None, max), Ok(()), "older producers");
        assert_eq!(check_trip(None, Some(1e9), max), Ok(()), "no duration");
        assert_eq!(check_trip(Some(60.0), None, max), Ok(()), "no distance");
        assert_eq!(check_trip(Some(60.0), Some(0.0), max), Ok(()));
        assert_eq!(
            check_trip(Some(100.0), Some(7_000.0), max),
            Ok(()),
            "at the limit"
        );
        assert_eq!(
            check_trip(Some(100.0), Some(7_000.1), max),
            Err(Rejection::ImplausibleSpeed)
        );
        assert_eq!(
            check_trip(Some(60.0), Some(f64::INFINITY), max),
            Err(Rejection::ImplausibleSpeed)
        );
        for bad in [0.0, -0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                check_trip(Some(bad), Some(1_000.0), max),
                Err(Rejection::BadDuration),
                "{bad}"
            );
            assert_eq!(
                check_trip(Some(bad), None, max),
                Err(Rejection::BadDuration),
                "{bad}"
            );
        }
        assert_eq!(
            check_trip(Some(0.0), Some(0.0), max),
            Err(Rejection::BadDuration),
            "the duration is checked first"
        );
        assert_eq!(Rejection::BadDuration.reason(), "bad_duration");
        assert_eq!(Rejection::ImplausibleSpeed.reason(), "implausible_speed");
    }

    #[test]
    fn routes_to_home_and_halo_regions() {
        let g = Geometry {
            cell_precision: 6,
            region_precision: 4,
            halo_m: 2500.0,
        };
        // Deep inside dr5r: no halo.
        let centre = Region::parse("dr5r").unwrap().bbox().center();
        let r = g.route(centre).unwrap();
        assert_eq!(r.home.to_string(), "dr5r");
        assert_eq!(r.cell.to_string().get(..4), Some("dr5r"));
        assert_eq!(r.halo.count(), 0);
        // 110 m inside its northern edge: only the region north of it is in the halo.
        let b = Region::parse("dr5r").unwrap().bbox();
        let edge = LatLon {
            lat: b.max_lat - 0.001,
            lon: (b.min_lon + b.max_lon) / 2.0,
        };
        let halo: Vec<String> = g.route(edge).unwrap().halo.map(|r| r.to_string()).collect();
        assert_eq!(
            halo,
            vec!["dr72".to_string()],
            "dr72 borders dr5r on the north"
        );
    }
}
