//! How a file is replayed.

use surgeflow_schema::Product;

/// A latitude/longitude box, edges included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Southern edge, degrees.
    pub min_lat: f64,
    /// Northern edge, degrees.
    pub max_lat: f64,
    /// Western edge, degrees.
    pub min_lon: f64,
    /// Eastern edge, degrees.
    pub max_lon: f64,
}

impl Area {
    /// A rough box around New York City: latitude 40.4 to 41.0, longitude −74.3 to −73.6.
    pub const NEW_YORK: Area = Area {
        min_lat: 40.4,
        max_lat: 41.0,
        min_lon: -74.3,
        max_lon: -73.6,
    };

    /// Is the point inside?
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.min_lat..=self.max_lat).contains(&lat) && (self.min_lon..=self.max_lon).contains(&lon)
    }
}

/// Where the replay stops, in the file's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Before this UTC instant (file time, before any `start_ms` shift).
    At(i64),
    /// Before this many milliseconds (of file time) after the first event.
    AfterFirstEvent(i64),
}

/// The conversion's parameters. [`ReplayConfig::default`] is what `surgeflow replay` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Time between two pings of a taxi, ms (default 4000).
    pub ping_interval_ms: i64,
    /// How long a taxi is online before the first pickup of a shift and after its last
    /// drop-off, standing there, ms (default 120 000).
    pub session_edge_ms: i64,
    /// The longest wait between a drop-off and the taxi's next pickup that counts as cruising
    /// for the next fare; a longer one ends the shift, ms (default 1 h). Must be at least
    /// `2 × session_edge_ms + ping_interval_ms`.
    pub max_idle_gap_ms: i64,
    /// The longest plausible trip, ms (default 2 h). Longer ones are `too_long`: their trip
    /// events are produced, but the taxi's pings ignore them. Together with `max_idle_gap_ms`
    /// it is how far ahead (in drop-off time) the replay reads before producing an event.
    pub max_trip_ms: i64,
    /// Above this implied speed a row is `impossible_speed`, m/s (default 70, the surge
    /// pricer's teleport limit).
    pub max_speed_mps: f64,
    /// The trip-router's `max_trip_speed_mps`, m/s (default 70): a `trip.completed` whose meter
    /// distance over meter time is above it will be dead-lettered as `implausible_speed`. Used
    /// only to count, in [`crate::ReplayStats::rejected`], what the routers will reject;
    /// `surgeflow replay` takes it from the topology.
    pub max_trip_speed_mps: f64,
    /// Routable points outside this box are `outside_area` (default [`Area::NEW_YORK`]).
    pub area: Area,
    /// The product every taxi serves and every rider asks for (default ECONOMY).
    pub product: Product,
    /// Shift every event time by the same amount so that the first event lands at this UTC
    /// instant; `None` keeps the file's own times.
    pub start_ms: Option<i64>,
    /// Produce only events before this point.
    pub until: Option<Until>,
    /// Read at most this many rows (header not counted); the rest of the file is ignored.
    pub max_rows: Option<u64>,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            ping_interval_ms: 4_000,
            session_edge_ms: 120_000,
            max_idle_gap_ms: 3_600_000,
            max_trip_ms: 7_200_000,
            max_speed_mps: 70.0,
            max_trip_speed_mps: 70.0,
            area: Area::NEW_YORK,
            product: Product::Economy,
            start_ms: None,
            until: None,
            max_rows: None,
        }
    }
}

/// A parameter out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The parameter.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ReplayConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// The first parameter out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, message: String| Err(ConfigError { field, message });
        if self.ping_interval_ms <= 0 {
            return fail(
                "ping_interval_ms",
                format!("must be > 0 (got {})", self.ping_interval_ms),
            );
        }
        if self.session_edge_ms < 0 {
            return fail(
                "session_edge_ms",
                format!("must be >= 0 (got {})", self.session_edge_ms),
            );
        }
        let min_gap = 2 * self.session_edge_ms + self.ping_interval_ms;
        if self.max_idle_gap_ms < min_gap {
            return fail(
                "max_idle_gap_ms",
                format!(
                    "must be at least 2 x session_edge_ms + ping_interval_ms = {min_gap} (got {})",
                    self.max_idle_gap_ms
                ),
            );
        }
        if self.max_trip_ms <= 0 {
            return fail(
                "max_trip_ms",
                format!("must be > 0 (got {})", self.max_trip_ms),
            );
        }
        if !(self.max_speed_mps.is_finite() && self.max_speed_mps > 0.0) {
            return fail(
                "max_speed_mps",
                format!("must be a finite number > 0 (got {})", self.max_speed_mps),
            );
        }
        if !(self.max_trip_speed_mps.is_finite() && self.max_trip_speed_mps > 0.0) {
            return fail(
                "max_trip_speed_mps",
                format!(
                    "must be a finite number > 0 (got {})",
                    self.max_trip_speed_mps
                ),
            );
        }
        if let Some(Until::AfterFirstEvent(ms)) = self.until
            && ms < 0
        {
            return fail("until", format!("must not be negative (got {ms} ms)"));
        }
        Ok(())
    }

    /// How far ahead of the next event, in drop-off time, rows must have been read.
    pub fn lookahead_ms(&self) -> i64 {
        self.max_trip_ms + self.max_idle_gap_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        assert_eq!(ReplayConfig::default().validate(), Ok(()));
        let bad = [
            ReplayConfig {
                ping_interval_ms: 0,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                session_edge_ms: -1,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                max_idle_gap_ms: 240_000,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                max_trip_ms: 0,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                max_speed_mps: f64::NAN,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                max_trip_speed_mps: 0.0,
                ..ReplayConfig::default()
            },
            ReplayConfig {
                until: Some(Until::AfterFirstEvent(-1)),
                ..ReplayConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(Area::NEW_YORK.contains(40.716976, -73.956528));
        assert!(!Area::NEW_YORK.contains(41.453693, -71.309334));
    }
}
