//! [`MatcherConfig`]: the tuning of one matcher, checked once at startup.

use super::ConfigError;
use crate::geo::MAX_PRECISION;

/// Longest duration any `*_ms` setting may have: one day.
///
/// Far above anything sensible (the `geo.*` topics keep one hour, and the replay horizon,
/// which sums several of these, must fit in it), and small enough that adding settings to
/// event times can never overflow an `i64`.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// Largest `batch_max_trips`: a chunk of 256 requests already means a 256 × 65,536 cost
/// matrix (a quarter of a GiB) and seconds of solving per window.
pub const MAX_BATCH_TRIPS: u32 = 256;

/// Slack added to [`replay_horizon_ms`] for records whose event time is older than their
/// position in the partition suggests (the routers accept events up to a few seconds in the
/// future and a while in the past, so partition order is only roughly event-time order).
pub const REPLAY_MARGIN_MS: u64 = 60_000;

/// Weights of the terms of a candidate's score (see [`MatcherConfig::score`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchWeights {
    /// Per minute of estimated pickup time (subtracted: sooner is better). Finite, >= 0.
    pub eta: f64,
    /// Per unit of rating / 5 (a fraction in `[0, 1]`). Finite, >= 0.
    pub rating: f64,
    /// Per unit of acceptance rate (a fraction in `[0, 1]`). Finite, >= 0.
    pub acceptance: f64,
}

impl Default for MatchWeights {
    /// The `topology.yaml` defaults: `eta 1.0, rating 0.2, acceptance 0.2`.
    fn default() -> Self {
        Self {
            eta: 1.0,
            rating: 0.2,
            acceptance: 0.2,
        }
    }
}

/// Everything a [`Matcher`](super::Matcher) is tuned by. The fields mirror
/// `operators.matcher.params` in `topology.yaml` (plus [`index_precision`](Self::index_precision),
/// an implementation detail of the driver index with a sensible default).
///
/// A plain struct, so the operator can fill it from the topology; [`validate`](Self::validate)
/// (called by [`Matcher::new`](super::Matcher::new)) checks every field and names the first bad
/// one.
#[derive(Debug, Clone, PartialEq)]
pub struct MatcherConfig {
    /// Only drivers within this great-circle distance of the pickup are candidates, metres.
    /// Finite, > 0. It must not exceed the routers' `geo.halo_m`, or drivers just across a
    /// region border are never copied into this partition.
    pub radius_m: f64,
    /// Road distance is estimated as great-circle distance times this. Finite, >= 1.
    pub detour_factor: f64,
    /// Average driving speed assumed for pickup ETAs, metres per second. Finite, > 0.
    pub speed_mps: f64,
    /// How long a driver has to answer an offer before the next candidate is tried,
    /// milliseconds. 1..=[`MAX_DURATION_MS`].
    pub offer_timeout_ms: u64,
    /// Offers made for one request before it is reported unfilled, >= 1.
    pub max_attempts: u32,
    /// A request still unmatched this long after its event time is reported unfilled,
    /// milliseconds. 1..=[`MAX_DURATION_MS`].
    pub request_deadline_ms: u64,
    /// A driver whose latest ping is older than this is no longer a candidate, milliseconds.
    /// 1..=[`MAX_DURATION_MS`].
    pub driver_ttl_ms: u64,
    /// Rating assumed for a driver without a profile, stars in `[0, 5]`.
    pub default_rating: f64,
    /// Acceptance rate assumed for a driver without a profile, in `[0, 1]`.
    pub default_acceptance_rate: f64,
    /// Weights of the score terms; finite, >= 0, not all 0.
    pub weights: MatchWeights,
    /// 0: each request is matched greedily as it arrives. Otherwise requests are collected
    /// into tumbling windows of this many milliseconds (aligned to multiples of it since the
    /// epoch) and each window is assigned optimally. 0..=[`MAX_DURATION_MS`].
    pub batch_window_ms: u64,
    /// Batched mode: most requests assigned in one optimal solve, 1..=[`MAX_BATCH_TRIPS`].
    /// Requests linked by shared drivers are one problem; a larger group is split into
    /// chunks of this many in trip id order, each solved optimally over the drivers the
    /// earlier chunks left. A chunk of `c` requests needs each one's `c` fastest drivers, so
    /// its cost matrix is at most `c × c²` and the solve `O(c⁴)`: the bound keeps one
    /// window's time and memory fixed however dense the demand.
    pub batch_max_trips: u32,
    /// Geohash precision of the driver index buckets, 1..=12. 6 (~1.2 km × 0.6 km) suits a
    /// radius of a few km: a 2 km query touches ~30 buckets. Much finer costs more bucket
    /// lookups per query, much coarser scans many drivers beyond the radius.
    pub index_precision: u8,
}

impl Default for MatcherConfig {
    /// The `topology.yaml` defaults, with `index_precision` 6.
    fn default() -> Self {
        Self {
            radius_m: 2000.0,
            detour_factor: 1.3,
            speed_mps: 8.0,
            offer_timeout_ms: 15_000,
            max_attempts: 3,
            request_deadline_ms: 120_000,
            driver_ttl_ms: 30_000,
            default_rating: 4.7,
            default_acceptance_rate: 0.8,
            weights: MatchWeights::default(),
            batch_window_ms: 0,
            batch_max_trips: 64,
            index_precision: 6,
        }
    }
}

fn bad(field: &'static str, requirement: &'static str, value: impl ToString) -> ConfigError {
    ConfigError {
        field,
        requirement,
        value: value.to_string(),
    }
}

fn positive(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(field, "must be finite and > 0", value))
    }
}

fn within(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
    rule: &'static str,
) -> Result<(), ConfigError> {
    // Written so that NaN fails.
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(bad(field, rule, value))
    }
}

fn duration(field: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if (min..=MAX_DURATION_MS).contains(&value) {
        Ok(())
    } else if min == 0 {
        Err(bad(field, "must be at most 86400000 (one day)", value))
    } else {
        Err(bad(field, "must be in 1..=86400000 (one day)", value))
    }
}

impl MatcherConfig {
    /// Checks every field, in declaration order.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field out of its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("radius_m", self.radius_m)?;
        if !(self.detour_factor.is_finite() && self.detour_factor >= 1.0) {
            return Err(bad(
                "detour_factor",
                "must be finite and >= 1",
                self.detour_factor,
            ));
        }
        positive("speed_mps", self.speed_mps)?;
        duration("offer_timeout_ms", self.offer_timeout_ms, 1)?;
        if self.max_attempts == 0 {
            return Err(bad("max_attempts", "must be at least 1", self.max_attempts));
        }
        duration("request_deadline_ms", self.request_deadline_ms, 1)?;
        duration("driver_ttl_ms", self.driver_ttl_ms, 1)?;
        within(
            "default_rating",
            self.default_rating,
            0.0,
            5.0,
            "must be in [0, 5]",
        )?;
        within(
            "default_acceptance_rate",
            self.default_acceptance_rate,
            0.0,
            1.0,
            "must be in [0, 1]",
        )?;
        let w = self.weights;
        for (field, value) in [
            ("weights.eta", w.eta),
            ("weights.rating", w.rating),
            ("weights.acceptance", w.acceptance),
        ] {
            within(field, value, 0.0, f64::MAX, "must be finite and >= 0")?;
        }
        if w.eta == 0.0 && w.rating == 0.0 && w.acceptance == 0.0 {
            return Err(bad(
                "weights",
                "must not all be 0: candidates could not be ranked",
                "0, 0, 0",
            ));
        }
        duration("batch_window_ms", self.batch_window_ms, 0)?;
        if !(1..=MAX_BATCH_TRIPS).contains(&self.batch_max_trips) {
            return Err(bad(
                "batch_max_trips",
                "must be in 1..=256",
                self.batch_max_trips,
            ));
        }
        if !(1..=MAX_PRECISION).contains(&self.index_precision) {
            return Err(bad(
                "index_precision",
                "must be in 1..=12",
                self.index_precision,
            ));
        }
        Ok(())
    }

    /// Whether requests are collected into windows and assigned together.
    #[must_use]
    pub fn is_batched(&self) -> bool {
        self.batch_window_ms > 0
    }
}

/// Milliseconds as an `i64` for event-time arithmetic; validated settings always fit.
pub(crate) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// How long after its request a trip id is remembered, milliseconds: twice the request
/// deadline.
///
/// Every trip is decided by its deadline; remembering it as long again afterwards is what lets
/// a redelivered request, or a late answer, be recognised and ignored instead of starting a
/// second match for the same trip. A request whose event time is older than this when it
/// arrives is ignored as stale, because it can no longer be told apart from a duplicate of a
/// trip already forgotten.
#[must_use]
pub fn trip_memory_ms(config: &MatcherConfig) -> u64 {
    config.request_deadline_ms.saturating_mul(2)
}

/// How far back, in event time before the matcher's clock at the restore point, the operator
/// must replay `geo.driver` and `geo.trip` so that the rebuilt state decides every later
/// record exactly as the lost instance would have:
///
/// - [`trip_memory_ms`] (2 × `request_deadline_ms`): every trip the lost instance still
///   remembered (open, or finished but still recognised as a duplicate) was requested within
///   it, so its whole history is replayed;
/// - `driver_ttl_ms`: an open trip's retries need every driver that was alive at its request,
///   i.e. pings up to a TTL before the oldest request that can still be open;
/// - `batch_window_ms`: a request may wait one window before it is first decided;
/// - [`REPLAY_MARGIN_MS`] for event-time disorder within the partitions.
///
/// With the topology defaults this is 330 s, well inside the one hour the `geo.*` topics keep.
#[must_use]
pub fn replay_horizon_ms(config: &MatcherConfig) -> u64 {
    trip_memory_ms(config)
        .saturating_add(config.driver_ttl_ms)
        .saturating_add(config.batch_window_ms)
        .saturating_add(REPLAY_MARGIN_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_topology() {
        let config = MatcherConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert!(!config.is_batched());
        assert_eq!(replay_horizon_ms(&config), 330_000);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breakage = fn(&mut MatcherConfig);
        let cases: Vec<(&str, Breakage)> = vec![
            ("radius_m", |c| c.radius_m = 0.0),
            ("radius_m", |c| c.radius_m = f64::NAN),
            ("detour_factor", |c| c.detour_factor = 0.9),
            ("speed_mps", |c| c.speed_mps = f64::INFINITY),
            ("offer_timeout_ms", |c| c.offer_timeout_ms = 0),
            ("max_attempts", |c| c.max_attempts = 0),
            ("request_deadline_ms", |c| {
                c.request_deadline_ms = MAX_DURATION_MS + 1
            }),
            ("driver_ttl_ms", |c| c.driver_ttl_ms = 0),
            ("default_rating", |c| c.default_rating = 5.5),
            ("default_acceptance_rate", |c| {
                c.default_acceptance_rate = -0.1
            }),
            ("weights.eta", |c| c.weights.eta = -1.0),
            ("weights.rating", |c| c.weights.rating = f64::NAN),
            ("weights.acceptance", |c| {
                c.weights.acceptance = f64::INFINITY
            }),
            ("weights", |c| {
                c.weights = MatchWeights {
                    eta: 0.0,
                    rating: 0.0,
                    acceptance: 0.0,
                }
            }),
            ("batch_window_ms", |c| {
                c.batch_window_ms = MAX_DURATION_MS + 1
            }),
            ("index_precision", |c| c.index_precision = 13),
            ("index_precision", |c| c.index_precision = 0),
        ];
        for (field, break_it) in cases {
            let mut config = MatcherConfig::default();
            break_it(&mut config);
            let err = config.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
