//! Dirty rows: values that parse but cannot be right. They are converted as recorded, never
//! cleaned away, so that the pipeline sees them as it would see bad input from a real fleet;
//! the replay only counts them, by class.

use surgeflow_domain::geo::{LatLon, haversine_m};
use surgeflow_domain::routing::{Rejection, check_point};

use crate::config::ReplayConfig;
use crate::record::{METRES_PER_MILE, Point, TripRecord};

/// A kind of dirt. A row can be in several classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirtyClass {
    /// A pickup or drop-off of exactly (0, 0), the no-fix value. The routers reject it
    /// (`null_island`).
    NullIsland,
    /// A pickup or drop-off latitude outside [−90, 90] (such as 404.97812). The routers reject
    /// it (`latitude_out_of_range`).
    LatitudeOutOfRange,
    /// A pickup or drop-off longitude outside [−180, 180]. The routers reject it
    /// (`longitude_out_of_range`).
    LongitudeOutOfRange,
    /// A pickup or drop-off coordinate that is NaN or infinite. The routers reject it
    /// (`non_finite_coordinate`).
    NonFiniteCoordinate,
    /// A pickup or drop-off that the routers accept but that lies outside the area box
    /// (longitude 0.0, Rhode Island, ...).
    OutsideArea,
    /// Drop-off at the pickup time. When the meter's time is 0 as well (`trip_duration_s`), the
    /// trip-router dead-letters the `trip.completed` (`bad_duration`).
    ZeroDuration,
    /// Drop-off before the pickup time.
    NegativeDuration,
    /// A meter distance of 0.
    ZeroDistance,
    /// Faster than `max_speed_mps`, by the meter (distance / trip time) or in a straight line
    /// between two routable points (distance / (drop-off − pickup)); a distance covered in no
    /// time at all counts as infinitely fast. The trip-router dead-letters the `trip.completed`
    /// of a row too fast by the meter (`implausible_speed`, or `bad_duration` for no time).
    ImpossibleSpeed,
    /// Longer than `max_trip_ms`.
    TooLong,
    /// Starts before the same taxi's previous trip ended.
    Overlapping,
    /// Read after the replay had already produced events past its pickup (only in a file
    /// that is not sorted by drop-off time).
    Late,
}

impl DirtyClass {
    /// Every class, in summary order.
    pub const ALL: [DirtyClass; 12] = [
        DirtyClass::NullIsland,
        DirtyClass::LatitudeOutOfRange,
        DirtyClass::LongitudeOutOfRange,
        DirtyClass::NonFiniteCoordinate,
        DirtyClass::OutsideArea,
        DirtyClass::ZeroDuration,
        DirtyClass::NegativeDuration,
        DirtyClass::ZeroDistance,
        DirtyClass::ImpossibleSpeed,
        DirtyClass::TooLong,
        DirtyClass::Overlapping,
        DirtyClass::Late,
    ];

    /// A short, stable label. The four coordinate classes use the routers' DLQ reasons.
    pub fn label(self) -> &'static str {
        match self {
            DirtyClass::NullIsland => "null_island",
            DirtyClass::LatitudeOutOfRange => "latitude_out_of_range",
            DirtyClass::LongitudeOutOfRange => "longitude_out_of_range",
            DirtyClass::NonFiniteCoordinate => "non_finite_coordinate",
            DirtyClass::OutsideArea => "outside_area",
            DirtyClass::ZeroDuration => "zero_duration",
            DirtyClass::NegativeDuration => "negative_duration",
            DirtyClass::ZeroDistance => "zero_distance",
            DirtyClass::ImpossibleSpeed => "impossible_speed",
            DirtyClass::TooLong => "too_long",
            DirtyClass::Overlapping => "overlapping",
            DirtyClass::Late => "late",
        }
    }

    /// Position in [`DirtyClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn of_rejection(r: Rejection) -> DirtyClass {
        match r {
            Rejection::LatitudeOutOfRange => DirtyClass::LatitudeOutOfRange,
            Rejection::LongitudeOutOfRange => DirtyClass::LongitudeOutOfRange,
            Rejection::NullIsland => DirtyClass::NullIsland,
            _ => DirtyClass::NonFiniteCoordinate,
        }
    }
}

/// A set of [`DirtyClass`]es.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirtySet(u16);

impl DirtySet {
    /// Adds a class.
    pub fn insert(&mut self, class: DirtyClass) {
        self.0 |= 1 << class.index();
    }

    /// Is the class in the set?
    pub fn contains(self, class: DirtyClass) -> bool {
        self.0 & (1 << class.index()) != 0
    }

    /// Is the set empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes, in [`DirtyClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = DirtyClass> {
        DirtyClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// Would the routers accept this position? (`surgeflow_domain::routing::check_point`.)
pub fn routable(p: Point) -> bool {
    check_point(p.lat, p.lon).is_ok()
}

/// The classes a row belongs to on its own (`overlapping` and `late` depend on other rows and
/// are found during the replay).
pub fn classify(row: &TripRecord, config: &ReplayConfig) -> DirtySet {
    let mut set = DirtySet::default();
    for p in [row.pickup, row.dropoff] {
        match check_point(p.lat, p.lon) {
            Err(r) => set.insert(DirtyClass::of_rejection(r)),
            Ok(_) if !config.area.contains(p.lat, p.lon) => set.insert(DirtyClass::OutsideArea),
            Ok(_) => {}
        }
    }
    let duration_ms = row.dropoff_ms - row.pickup_ms;
    if duration_ms == 0 {
        set.insert(DirtyClass::ZeroDuration);
    } else if duration_ms < 0 {
        set.insert(DirtyClass::NegativeDuration);
    }
    if duration_ms > config.max_trip_ms {
        set.insert(DirtyClass::TooLong);
    }
    if row.trip_distance_mi == 0.0 {
        set.insert(DirtyClass::ZeroDistance);
    }
    let meter_m = row.trip_distance_mi * METRES_PER_MILE;
    let too_fast = |metres: f64, seconds: f64| {
        if seconds > 0.0 {
            metres / seconds > config.max_speed_mps
        } else {
            metres > 0.0
        }
    };
    let mut impossible = too_fast(meter_m, row.trip_time_s as f64);
    if routable(row.pickup) && routable(row.dropoff) && duration_ms >= 0 {
        let line = haversine_m(
            LatLon {
                lat: row.pickup.lat,
                lon: row.pickup.lon,
            },
            LatLon {
                lat: row.dropoff.lat,
                lon: row.dropoff.lon,
            },
        );
        impossible |= too_fast(line, duration_ms as f64 / 1000.0);
    }
    if impossible {
        set.insert(DirtyClass::ImpossibleSpeed);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_line;

    fn classes(line: &str) -> Vec<&'static str> {
        let row = parse_line(line.as_bytes()).unwrap();
        classify(&row, &ReplayConfig::default())
            .iter()
            .map(DirtyClass::label)
            .collect()
    }

    #[test]
    fn the_known_dirty_rows_of_the_sample() {
        // Lines quoted from the NYC 2013 sample (ids shortened).
        assert_eq!(
            classes(
                "07290D,E7750A,2013-01-01 00:00:00,2013-01-01 00:02:00,120,0.44,-73.956528,40.716976,-73.962440,40.715008,CSH,3.50,0.50,0.50,0.00,0.00,4.50"
            ),
            Vec::<&str>::new()
        );
        assert_eq!(
            classes(
                "22D70B,3FF270,2013-01-01 00:02:00,2013-01-01 00:02:00,0,0.00,0.000000,0.000000,0.000000,0.000000,CSH,27.00,0.00,0.50,0.00,0.00,27.50"
            ),
            ["null_island", "zero_duration", "zero_distance"]
        );
        assert_eq!(
            classes(
                "F89999,X,2013-01-01 00:31:00,2013-01-01 00:38:00,420,1.44,0.000000,404.978120,-73.970406,40.794067,CSH,0,0,0,0,0,0"
            ),
            ["latitude_out_of_range"]
        );
        assert_eq!(
            classes(
                "266CCA,X,2013-01-01 00:04:00,2013-01-01 00:17:00,780,2.00,-71.309334,41.453693,0.000000,41.453667,CSH,0,0,0,0,0,0"
            ),
            ["outside_area", "impossible_speed"],
            "Rhode Island to longitude 0 in 13 minutes"
        );
        assert_eq!(
            classes(
                "M,H,2013-01-01 00:10:00,2013-01-01 00:10:00,0,2.10,-73.98,40.75,-73.95,40.77,CSH,0,0,0,0,0,0"
            ),
            ["zero_duration", "impossible_speed"],
            "2.1 miles in no time"
        );
        assert_eq!(
            classes(
                "M,H,2013-01-01 00:10:00,2013-01-01 00:09:00,60,0.5,-73.98,40.75,-73.97,40.75,CSH,0,0,0,0,0,0"
            ),
            ["negative_duration"]
        );
        assert_eq!(
            classes(
                "M,H,2013-01-01 00:10:00,2013-01-01 03:10:00,10800,30,-73.98,40.75,-73.97,40.75,CSH,0,0,0,0,0,0"
            ),
            ["too_long"]
        );
        assert_eq!(
            classes(
                "M,H,2013-01-01 00:10:00,2013-01-01 00:12:00,120,1,NaN,40.75,-73.97,1e999,CSH,0,0,0,0,0,0"
            ),
            ["non_finite_coordinate"]
        );
        assert_eq!(
            classes(
                "M,H,2013-01-01 00:10:00,2013-01-01 00:12:00,120,1,-190,40.75,-73.97,40.7,CSH,0,0,0,0,0,0"
            ),
            ["longitude_out_of_range"]
        );
    }

    #[test]
    fn sets_hold_classes() {
        let mut s = DirtySet::default();
        assert!(s.is_empty());
        s.insert(DirtyClass::Late);
        s.insert(DirtyClass::NullIsland);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [DirtyClass::NullIsland, DirtyClass::Late]
        );
        for (i, c) in DirtyClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
