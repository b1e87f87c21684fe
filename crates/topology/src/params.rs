//! Operator-specific tuning. Every field has a default equal to the value shipped in
//! `topology.yaml`, so a `params:` block only needs the settings that differ.

use serde::Deserialize;

/// Tuning of `location-router`: validates driver pings and routes them to their region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationRouterParams {
    /// Pings whose reported horizontal accuracy radius is larger than this are rejected, metres.
    /// Default 100.0.
    pub max_accuracy_m: f64,
    /// Pings stamped more than this ahead of the router's clock are rejected, milliseconds
    /// (0 = no tolerance for clock skew). Default 30000.
    pub max_future_ms: u64,
    /// Pings older than this (by event time, against the router's clock) are rejected,
    /// milliseconds; 0 turns the check off (replays of historical data). Default 600000.
    pub max_age_ms: u64,
}

impl Default for LocationRouterParams {
    fn default() -> Self {
        Self {
            max_accuracy_m: 100.0,
            max_future_ms: 30_000,
            max_age_ms: 600_000,
        }
    }
}

/// Tuning of `trip-router`: validates trip lifecycle events and routes them to their region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripRouterParams {
    /// Events stamped more than this ahead of the router's clock are rejected, milliseconds.
    /// Default 30000.
    pub max_future_ms: u64,
    /// Events older than this (by event time) are rejected, milliseconds; 0 turns the check
    /// off (replays of historical data). Default 3600000.
    pub max_age_ms: u64,
    /// A `trip.completed` whose distance over duration is above this is rejected
    /// (`implausible_speed`), metres per second. Default 70.0 (about 250 km/h).
    pub max_trip_speed_mps: f64,
}

impl Default for TripRouterParams {
    fn default() -> Self {
        Self {
            max_future_ms: 30_000,
            max_age_ms: 3_600_000,
            max_trip_speed_mps: 70.0,
        }
    }
}

/// Tuning of `surge-pricer`: windowed supply and demand per cell, turned into a multiplier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurgePricerParams {
    /// A driver counts as supply in its cell for this long after its last ping, milliseconds.
    /// Default 30000.
    pub supply_ttl_ms: u64,
    /// Length of the sliding window over which trip requests count as demand, milliseconds.
    /// Must be a multiple of `demand_hop_ms`. Default 300000.
    pub demand_window_ms: u64,
    /// How far the demand window slides at a time, milliseconds. Default 30000.
    pub demand_hop_ms: u64,
    /// How far behind the watermark an event may arrive and still be counted, milliseconds
    /// (0 = drop anything late). Default 10000.
    pub allowed_lateness_ms: u64,
    /// After this long without events on a partition, its watermark advances with the wall
    /// clock so windows still close, milliseconds. Default 5000.
    pub idle_advance_ms: u64,
    /// How often multipliers are recomputed and published, milliseconds. Default 5000.
    pub tick_ms: u64,
    /// How many rings of neighbouring cells are blended into a cell's demand/supply ratio
    /// (0 = the cell alone). Default 1.
    pub smoothing_rings: u32,
    /// Weight factor per ring of distance when blending neighbours, in [0, 1]: ring `k` gets
    /// weight `smoothing_decay^k`. Default 0.5.
    pub smoothing_decay: f64,
    /// Demand/supply ratio to multiplier: linear between points, flat outside. Ratios strictly
    /// increasing, multipliers non-decreasing and at least 1.0. Default
    /// `(1.0, 1.0), (2.0, 1.5), (4.0, 2.5)`.
    pub curve: Vec<CurvePoint>,
    /// Upper bound of a published multiplier, at least 1.0. Default 3.0.
    pub cap: f64,
    /// Published multipliers are rounded to a multiple of this, > 0. Default 0.1.
    pub step: f64,
    /// Weight of the newest value in the exponential moving average of the multiplier, in
    /// (0, 1] (1 = no smoothing). Default 0.5.
    pub ewma_alpha: f64,
    /// Largest change of a cell's multiplier from one tick to the next, > 0. Default 0.5.
    pub max_change_per_tick: f64,
    /// A new multiplier is published only if it differs from the last published one by at least
    /// this much, >= 0. Default 0.1.
    pub hysteresis: f64,
    /// A cell with no supply or demand events for this long is dropped back to no surge,
    /// milliseconds. Default 120000.
    pub stale_after_ms: u64,
    /// How many (cell, product) pairs each instance exports as per-cell gauges (multiplier,
    /// supply, demand; the ones with the highest multiplier, refreshed every tick), at most
    /// 5000 (0 = none). It bounds the metrics' cardinality. Default 200.
    pub metrics_top_cells: u32,
}

/// One point of the surge curve.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    /// Demand/supply ratio of the cell (requests per available driver), >= 0. Required.
    pub ratio: f64,
    /// Price multiplier at that ratio, >= 1.0. Required.
    pub multiplier: f64,
}

impl Default for SurgePricerParams {
    fn default() -> Self {
        Self {
            supply_ttl_ms: 30_000,
            demand_window_ms: 300_000,
            demand_hop_ms: 30_000,
            allowed_lateness_ms: 10_000,
            idle_advance_ms: 5_000,
            tick_ms: 5_000,
            smoothing_rings: 1,
            smoothing_decay: 0.5,
            curve: vec![
                CurvePoint {
                    ratio: 1.0,
                    multiplier: 1.0,
                },
                CurvePoint {
                    ratio: 2.0,
                    multiplier: 1.5,
                },
                CurvePoint {
                    ratio: 4.0,
                    multiplier: 2.5,
                },
            ],
            cap: 3.0,
            step: 0.1,
            ewma_alpha: 0.5,
            max_change_per_tick: 0.5,
            hysteresis: 0.1,
            stale_after_ms: 120_000,
            metrics_top_cells: 200,
        }
    }
}

/// Tuning of `matcher`: proposes a driver for each trip request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatcherParams {
    /// Only drivers within this straight-line distance of the pickup are candidates, metres.
    /// Must not exceed `geo.halo_m`, or drivers just across a region border are missed.
    /// Default 2000.0.
    pub radius_m: f64,
    /// Road distance estimated as straight-line distance times this, >= 1. Default 1.3.
    pub detour_factor: f64,
    /// Average driving speed assumed for pickup ETAs, metres per second. Default 8.0.
    pub speed_mps: f64,
    /// How long a driver has to accept an offer before the next candidate is tried,
    /// milliseconds. Default 15000.
    pub offer_timeout_ms: u64,
    /// Offers made for one request before it is reported unfilled, >= 1. Default 3.
    pub max_attempts: u32,
    /// A request still unmatched this long after it was made is reported unfilled,
    /// milliseconds. Default 120000.
    pub request_deadline_ms: u64,
    /// A driver without a ping for this long is no longer a candidate, milliseconds.
    /// Default 30000.
    pub driver_ttl_ms: u64,
    /// Rating assumed for a driver with no profile yet, stars in [0, 5]. Default 4.7.
    pub default_rating: f64,
    /// Acceptance rate assumed for a driver with no profile yet, in [0, 1]. Default 0.8.
    pub default_acceptance_rate: f64,
    /// Weights of the candidate score terms. Default `eta 1.0, rating 0.2, acceptance 0.2`.
    pub weights: MatchWeights,
    /// Requests are collected for this long and matched together, milliseconds (0 = match
    /// each request as it arrives). Default 0.
    pub batch_window_ms: u64,
    /// Batched mode: most requests assigned in one optimal solve, 1..=256; larger groups of
    /// requests sharing drivers are solved in chunks of this many. Default 64.
    pub batch_max_trips: u32,
}

/// Weights of the terms of a candidate's score; finite, >= 0, not all 0.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchWeights {
    /// Weight of the (normalised) pickup ETA: shorter is better. Default 1.0.
    pub eta: f64,
    /// Weight of the driver's rating. Default 0.2.
    pub rating: f64,
    /// Weight of the driver's acceptance rate. Default 0.2.
    pub acceptance: f64,
}

impl Default for MatchWeights {
    fn default() -> Self {
        Self {
            eta: 1.0,
            rating: 0.2,
            acceptance: 0.2,
        }
    }
}

impl Default for MatcherParams {
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
        }
    }
}
