//! What the synthetic city looks like: its size, population and behavioural knobs.

use crate::error::SimError;

/// 2026-01-01T08:00:00Z in UTC milliseconds: the default event time of simulated t = 0.
///
/// A fixed constant rather than "now" so that a default simulation is reproducible to the
/// byte; a caller that wants live-looking timestamps passes the current time explicitly.
pub const DEFAULT_START_TIME_MS: i64 = 1_767_254_400_000;

/// Largest `start_time_ms` accepted: 9999-12-31T23:59:59.999Z. Far enough for any use, and it
/// keeps every `start + elapsed` computation far from `i64` overflow.
const MAX_START_TIME_MS: i64 = 253_402_300_799_999;

/// Largest city radius. The simulator works on a flat local projection of the sphere, which is
/// accurate to well under a metre per kilometre at this scale but not for a continent.
const MAX_RADIUS_M: f64 = 100_000.0;

/// Largest driver population. Dispatch scans every driver, which is cheap for the ≤ 10k a
/// city-sized run needs; the cap keeps a typo from allocating gigabytes.
const MAX_DRIVERS: u32 = 1_000_000;

/// A centre of extra demand (a station, a nightlife district): a disc in which a share of
/// requests is placed, so that demand outstrips nearby supply there and surge appears.
#[derive(Debug, Clone, PartialEq)]
pub struct Hotspot {
    /// Latitude of the centre, WGS84 degrees; must lie inside the city.
    pub lat: f64,
    /// Longitude of the centre, WGS84 degrees.
    pub lon: f64,
    /// Radius of the disc in which the hotspot's pickups are spread uniformly, metres.
    pub radius_m: f64,
    /// Relative share of the hotspot requests this hotspot receives.
    pub weight: f64,
}

/// Driver log-off / log-on behaviour. Both durations are means of exponential distributions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// Mean time an idle driver stays online before logging off, milliseconds. Drivers only
    /// log off while idle, so a driver on a trip finishes it first.
    pub mean_online_ms: i64,
    /// Mean time a driver stays offline before logging back on, milliseconds.
    pub mean_offline_ms: i64,
}

/// The synthetic city: geography, population and behaviour. Plain data with a [`Default`]
/// (a Manhattan-sized city of 2000 drivers); [`CityConfig::validate`] checks every field and
/// [`Simulation::new`](crate::Simulation::new) calls it.
#[derive(Debug, Clone, PartialEq)]
pub struct CityConfig {
    /// Latitude of the city centre, WGS84 degrees, within ±80.
    pub center_lat: f64,
    /// Longitude of the city centre, WGS84 degrees.
    pub center_lon: f64,
    /// Radius of the city disc, metres. Every driver position, pickup and dropoff lies inside.
    pub radius_m: f64,
    /// Number of drivers; ids are `driver-000001` up to `driver-<drivers>`.
    pub drivers: u32,
    /// Mean rate of trip requests, per second of event time (a Poisson process).
    pub requests_per_s: f64,
    /// Relative weights of [`Product::ALL`](surgeflow_schema::Product::ALL) (Economy, Comfort, Xl, Premium), used both for the
    /// product each driver serves and for the product each rider asks for.
    pub product_weights: [f64; 4],
    /// Mean gap between two pings of one online driver, milliseconds.
    pub ping_interval_ms: i64,
    /// Each gap is `ping_interval_ms` plus a uniform jitter in `±ping_jitter_ms`, so that
    /// drivers that started in step drift apart; at most half the interval.
    pub ping_jitter_ms: i64,
    /// Event time of simulated t = 0, UTC milliseconds.
    pub start_time_ms: i64,
    /// Centres of extra demand.
    pub hotspots: Vec<Hotspot>,
    /// Fraction of requests placed in a hotspot (the rest are uniform over the city), in [0, 1].
    pub hotspot_share: f64,
    /// Slowest driving speed, metres per second; each leg of a drive draws a speed uniformly
    /// between this and `max_speed_mps`.
    pub min_speed_mps: f64,
    /// Fastest driving speed, metres per second.
    pub max_speed_mps: f64,
    /// Mean straight-line length of a trip, metres (exponential, at least 200 m).
    pub mean_trip_m: f64,
    /// The built-in dispatcher only offers a trip to drivers within this distance of the pickup.
    pub dispatch_radius_m: f64,
    /// Offers made for one request before the system gives up on it.
    pub max_offers: u32,
    /// A request still without an accepting driver this long after it was made is cancelled by
    /// the system, milliseconds.
    pub unmatched_timeout_ms: i64,
    /// Probability that a driver accepts an offer.
    pub accept_probability: f64,
    /// Probability that a rider whose trip was accepted cancels while the driver is on the way.
    pub rider_cancel_probability: f64,
    /// Driver log-off / log-on behaviour; `None` keeps every driver online for the whole run.
    pub churn: Option<Churn>,
}

impl Default for CityConfig {
    /// Midtown Manhattan, 8 km around Times Square, with hotspots in Midtown, the Financial
    /// District and the Upper East Side taking 60 % of the requests.
    fn default() -> Self {
        CityConfig {
            center_lat: 40.7580,
            center_lon: -73.9855,
            radius_m: 8_000.0,
            drivers: 2_000,
            requests_per_s: 5.0,
            product_weights: [0.70, 0.15, 0.10, 0.05],
            ping_interval_ms: 4_000,
            ping_jitter_ms: 300,
            start_time_ms: DEFAULT_START_TIME_MS,
            hotspots: vec![
                Hotspot {
                    lat: 40.7580,
                    lon: -73.9855,
                    radius_m: 700.0,
                    weight: 0.4,
                },
                Hotspot {
                    lat: 40.7075,
                    lon: -74.0113,
                    radius_m: 600.0,
                    weight: 0.3,
                },
                Hotspot {
                    lat: 40.7794,
                    lon: -73.9632,
                    radius_m: 600.0,
                    weight: 0.3,
                },
            ],
            hotspot_share: 0.6,
            min_speed_mps: 6.0,
            max_speed_mps: 12.0,
            mean_trip_m: 2_500.0,
            dispatch_radius_m: 3_000.0,
            max_offers: 3,
            unmatched_timeout_ms: 120_000,
            accept_probability: 0.85,
            rider_cancel_probability: 0.05,
            churn: Some(Churn {
                mean_online_ms: 4 * 3_600_000,
                mean_offline_ms: 15 * 60_000,
            }),
        }
    }
}

impl CityConfig {
    /// Checks every field, returning the first one out of range.
    ///
    /// The simulator trusts a validated config everywhere (probabilities feed `random_bool`,
    /// weights feed cumulative tables, times are added without overflow checks), so this is
    /// the one place where caller input is judged.
    pub fn validate(&self) -> Result<(), SimError> {
        check(self.center_lat, "center_lat", -80.0, 80.0)?;
        check(self.center_lon, "center_lon", -180.0, 180.0)?;
        check_positive(self.radius_m, "radius_m")?;
        if self.radius_m > MAX_RADIUS_M {
            return Err(SimError::invalid(
                "radius_m",
                format!("must be at most {MAX_RADIUS_M} m"),
            ));
        }
        let half_width_deg =
            self.radius_m / (crate::city::METRES_PER_DEGREE * self.center_lat.to_radians().cos());
        if self.center_lon.abs() + half_width_deg > 180.0 {
            return Err(SimError::invalid(
                "center_lon",
                "puts the city across the antimeridian",
            ));
        }
        if self.drivers > MAX_DRIVERS {
            return Err(SimError::invalid(
                "drivers",
                format!("must be at most {MAX_DRIVERS}"),
            ));
        }
        check(self.requests_per_s, "requests_per_s", 0.0, 1e6)?;
        for (i, w) in self.product_weights.iter().enumerate() {
            check_non_negative(*w, &format!("product_weights[{i}]"))?;
        }
        if self.product_weights.iter().sum::<f64>() <= 0.0 {
            return Err(SimError::invalid("product_weights", "must not all be zero"));
        }
        if !(100..=3_600_000).contains(&self.ping_interval_ms) {
            return Err(SimError::invalid(
                "ping_interval_ms",
                "must be between 100 and 3600000",
            ));
        }
        if self.ping_jitter_ms < 0 || self.ping_jitter_ms > self.ping_interval_ms / 2 {
            return Err(SimError::invalid(
                "ping_jitter_ms",
                "must be between 0 and half of ping_interval_ms",
            ));
        }
        if !(0..=MAX_START_TIME_MS).contains(&self.start_time_ms) {
            return Err(SimError::invalid(
                "start_time_ms",
                format!("must be between 0 (1970) and {MAX_START_TIME_MS} (year 9999)"),
            ));
        }
        self.validate_hotspots()?;
        check_positive(self.min_speed_mps, "min_speed_mps")?;
        check(
            self.max_speed_mps,
            "max_speed_mps",
            self.min_speed_mps,
            100.0,
        )?;
        check_positive(self.mean_trip_m, "mean_trip_m")?;
        check_positive(self.dispatch_radius_m, "dispatch_radius_m")?;
        if self.max_offers == 0 {
            return Err(SimError::invalid("max_offers", "must be at least 1"));
        }
        if self.unmatched_timeout_ms <= 0 || self.unmatched_timeout_ms > 86_400_000 {
            return Err(SimError::invalid(
                "unmatched_timeout_ms",
                "must be between 1 and 86400000",
            ));
        }
        check(self.accept_probability, "accept_probability", 0.0, 1.0)?;
        check(
            self.rider_cancel_probability,
            "rider_cancel_probability",
            0.0,
            1.0,
        )?;
        if let Some(churn) = self.churn {
            if churn.mean_online_ms <= 0 {
                return Err(SimError::invalid(
                    "churn.mean_online_ms",
                    "must be positive",
                ));
            }
            if churn.mean_offline_ms <= 0 {
                return Err(SimError::invalid(
                    "churn.mean_offline_ms",
                    "must be positive",
                ));
            }
        }
        Ok(())
    }

    fn validate_hotspots(&self) -> Result<(), SimError> {
        check(self.hotspot_share, "hotspot_share", 0.0, 1.0)?;
        let plane = crate::city::Plane::new(self.center_lat, self.center_lon);
        for (i, h) in self.hotspots.iter().enumerate() {
            check(h.lat, &format!("hotspots[{i}].lat"), -90.0, 90.0)?;
            check(h.lon, &format!("hotspots[{i}].lon"), -180.0, 180.0)?;
            if plane.to_point(h.lat, h.lon).norm() > self.radius_m {
                return Err(SimError::invalid(
                    format!("hotspots[{i}]"),
                    "lies outside the city radius",
                ));
            }
            check_positive(h.radius_m, &format!("hotspots[{i}].radius_m"))?;
            check_non_negative(h.weight, &format!("hotspots[{i}].weight"))?;
        }
        if self.hotspot_share > 0.0 && self.hotspots.iter().map(|h| h.weight).sum::<f64>() <= 0.0 {
            return Err(SimError::invalid(
                "hotspots",
                "must hold at least one hotspot of positive weight when hotspot_share > 0",
            ));
        }
        Ok(())
    }
}

/// `value` must be a finite number in `[min, max]`.
fn check(value: f64, field: &str, min: f64, max: f64) -> Result<(), SimError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SimError::invalid(
            field,
            format!("must be a finite number between {min} and {max}, got {value}"),
        ))
    }
}

/// `value` must be a finite number above zero.
fn check_positive(value: f64, field: &str) -> Result<(), SimError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(SimError::invalid(
            field,
            format!("must be a finite number above 0, got {value}"),
        ))
    }
}

/// `value` must be a finite number, zero or above.
fn check_non_negative(value: f64, field: &str) -> Result<(), SimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(SimError::invalid(
            field,
            format!("must be a finite number of at least 0, got {value}"),
        ))
    }
}
