//! [`SurgeConfig`]: the tuning of a [`SurgeEngine`](super::SurgeEngine), its validation,
//! and the replay horizon it implies.

use crate::geo::MAX_PRECISION;

use super::SurgeError;

/// Most hop buckets a demand window may span. Every tracked (cell, product) keeps one counter
/// per bucket, so this bounds the per-cell state (4 KiB × 4 bytes would already be absurd).
const MAX_DEMAND_BUCKETS: i64 = 4096;
/// Most smoothing rings. A tick reads `(2k + 1)²` cells per tracked cell; beyond a few rings
/// the neighbourhood is kilometres wide and the cost grows quadratically for no pricing gain.
const MAX_SMOOTHING_RINGS: u32 = 8;
/// Most multiplier steps per 1.0 (so `step >= 0.0001`): multipliers are integers of steps.
const MAX_STEPS_PER_UNIT: f64 = 10_000.0;
/// Largest multiplier, in steps, that the integer arithmetic is sized for.
const MAX_CAP_STEPS: f64 = 1_000_000_000.0;

/// Tuning of the surge engine. Durations are in milliseconds of event time unless said
/// otherwise; the defaults are those of `topology.yaml` (`operators.surge-pricer.params` and
/// `geo`) plus the router's `max_future_ms` and a 70 m/s (252 km/h) teleport limit.
///
/// A plain struct so the operator can fill it from the loaded topology; the engine
/// constructors call [`validate`](Self::validate), which names the first offending field.
#[derive(Debug, Clone, PartialEq)]
pub struct SurgeConfig {
    /// Geohash length of the priced cells, 1..=12. Records in cells of any other precision
    /// are rejected (they would never meet the cells they should be smoothed with).
    /// Default 6 (about 1.2 km × 0.6 km).
    pub cell_precision: u8,
    /// Geohash length of the partitioning regions, 1..=`cell_precision`: a cell is owned by
    /// the engine once a non-halo record of its region has been applied. Default 4.
    pub region_precision: u8,
    /// A driver counts as supply for this long after its latest ping (ms). Also how far back
    /// the teleport check looks, and how long a silent driver's state is kept. Default 30000.
    pub supply_ttl_ms: i64,
    /// Length of the sliding demand window (ms), a multiple of `demand_hop_ms`. Default 300000.
    pub demand_window_ms: i64,
    /// How far the demand window slides at a time (ms): requests are counted in buckets of
    /// this width, so demand changes at most once per hop. Default 30000.
    pub demand_hop_ms: i64,
    /// How far behind the largest event time seen the watermark trails (ms): records up to
    /// this much out of order are still applied. Default 10000.
    pub allowed_lateness_ms: i64,
    /// After this much processing time (ms) without an on-time record, the event clock is
    /// extrapolated at real speed so a quiet partition keeps ticking. Default 5000.
    pub idle_advance_ms: i64,
    /// Records stamped more than this far (ms) ahead of the processing clock are refused as
    /// `future` and never move the watermark. Default 30000 (the routers' limit).
    pub max_future_ms: i64,
    /// Multipliers are recomputed at every multiple of this (ms of event time). Default 5000.
    pub tick_ms: i64,
    /// Rings of neighbouring cells blended into a cell's supply and demand, 0..=8
    /// (0 = the cell alone). Default 1.
    pub smoothing_rings: u32,
    /// Weight per ring of distance when blending, in `[0, 1]`: ring `r` weighs `decay^r`.
    /// Default 0.5.
    pub smoothing_decay: f64,
    /// `(demand/supply ratio, multiplier)` points: linear in between, flat outside. At least
    /// one point; ratios `>= 0` and strictly increasing; multipliers `>= 1` and
    /// non-decreasing. Default `(1, 1), (2, 1.5), (4, 2.5)`.
    pub curve: Vec<(f64, f64)>,
    /// Largest multiplier, `>= 1`. Default 3.0.
    pub cap: f64,
    /// Multipliers are multiples of this, in `(0, 1]` with `1 / step` an integer (so 1.0 is
    /// a multiple). Default 0.1.
    pub step: f64,
    /// Weight of the target in each damping step, in `(0, 1]` (1 = jump to the target,
    /// within `max_change_per_tick`). Default 0.5.
    pub ewma_alpha: f64,
    /// Largest change of a multiplier per tick, `>= step`. Default 0.5.
    pub max_change_per_tick: f64,
    /// A target closer than this to the current multiplier leaves it unchanged, `>= 0`.
    /// Default 0.1.
    pub hysteresis: f64,
    /// A (cell, product) with no applied ping and no counted request for this long (ms) is
    /// dropped, publishing 1.0 (`stale`) first if its multiplier was raised. At least
    /// `supply_ttl_ms`, so a counted driver always has a tracked cell. Default 120000.
    pub stale_after_ms: i64,
    /// Pings implying a faster move (metres per second) from both of the driver's last two
    /// pings within `supply_ttl_ms` are rejected as teleports. Default 70.
    pub max_speed_mps: f64,
}

impl Default for SurgeConfig {
    fn default() -> Self {
        Self {
            cell_precision: 6,
            region_precision: 4,
            supply_ttl_ms: 30_000,
            demand_window_ms: 300_000,
            demand_hop_ms: 30_000,
            allowed_lateness_ms: 10_000,
            idle_advance_ms: 5_000,
            max_future_ms: 30_000,
            tick_ms: 5_000,
            smoothing_rings: 1,
            smoothing_decay: 0.5,
            curve: vec![(1.0, 1.0), (2.0, 1.5), (4.0, 2.5)],
            cap: 3.0,
            step: 0.1,
            ewma_alpha: 0.5,
            max_change_per_tick: 0.5,
            hysteresis: 0.1,
            stale_after_ms: 120_000,
            max_speed_mps: 70.0,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SurgeError {
    SurgeError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

fn positive_ms(field: &'static str, value: i64) -> Result<(), SurgeError> {
    if value > 0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be > 0 ms (got {value})")))
    }
}

fn non_negative_ms(field: &'static str, value: i64) -> Result<(), SurgeError> {
    if value >= 0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be >= 0 ms (got {value})")))
    }
}

fn finite_at_least(field: &'static str, value: f64, min: f64) -> Result<(), SurgeError> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a finite number >= {min} (got {value})"),
        ))
    }
}

impl SurgeConfig {
    /// Checks every field, in declaration order.
    ///
    /// # Errors
    /// [`SurgeError::InvalidConfig`] naming the first field out of range or inconsistent
    /// with an earlier one.
    pub fn validate(&self) -> Result<(), SurgeError> {
        if !(1..=MAX_PRECISION).contains(&self.cell_precision) {
            return Err(invalid(
                "cell_precision",
                format!("must be 1..={MAX_PRECISION} (got {})", self.cell_precision),
            ));
        }
        if !(1..=self.cell_precision).contains(&self.region_precision) {
            return Err(invalid(
                "region_precision",
                format!(
                    "must be 1..=cell_precision ({}) (got {})",
                    self.cell_precision, self.region_precision
                ),
            ));
        }
        positive_ms("supply_ttl_ms", self.supply_ttl_ms)?;
        positive_ms("demand_window_ms", self.demand_window_ms)?;
        positive_ms("demand_hop_ms", self.demand_hop_ms)?;
        if self.demand_window_ms % self.demand_hop_ms != 0 {
            return Err(invalid(
                "demand_window_ms",
                format!(
                    "must be a multiple of demand_hop_ms ({}) (got {})",
                    self.demand_hop_ms, self.demand_window_ms
                ),
            ));
        }
        if self.demand_window_ms / self.demand_hop_ms > MAX_DEMAND_BUCKETS {
            return Err(invalid(
                "demand_window_ms",
                format!(
                    "spans {} hops; at most {MAX_DEMAND_BUCKETS} are supported",
                    self.demand_window_ms / self.demand_hop_ms
                ),
            ));
        }
        non_negative_ms("allowed_lateness_ms", self.allowed_lateness_ms)?;
        positive_ms("idle_advance_ms", self.idle_advance_ms)?;
        non_negative_ms("max_future_ms", self.max_future_ms)?;
        positive_ms("tick_ms", self.tick_ms)?;
        if self.smoothing_rings > MAX_SMOOTHING_RINGS {
            return Err(invalid(
                "smoothing_rings",
                format!(
                    "must be 0..={MAX_SMOOTHING_RINGS} (got {})",
                    self.smoothing_rings
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.smoothing_decay) {
            return Err(invalid(
                "smoothing_decay",
                format!("must be in [0, 1] (got {})", self.smoothing_decay),
            ));
        }
        self.validate_curve()?;
        finite_at_least("cap", self.cap, 1.0)?;
        self.validate_step()?;
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(invalid(
                "ewma_alpha",
                format!("must be in (0, 1] (got {})", self.ewma_alpha),
            ));
        }
        // Below one step the quantised multiplier could never move.
        finite_at_least("max_change_per_tick", self.max_change_per_tick, self.step)?;
        finite_at_least("hysteresis", self.hysteresis, 0.0)?;
        positive_ms("stale_after_ms", self.stale_after_ms)?;
        if self.stale_after_ms < self.supply_ttl_ms {
            return Err(invalid(
                "stale_after_ms",
                format!(
                    "must be at least supply_ttl_ms ({}) (got {})",
                    self.supply_ttl_ms, self.stale_after_ms
                ),
            ));
        }
        if !(self.max_speed_mps.is_finite() && self.max_speed_mps > 0.0) {
            return Err(invalid(
                "max_speed_mps",
                format!("must be a finite number > 0 (got {})", self.max_speed_mps),
            ));
        }
        Ok(())
    }

    fn validate_curve(&self) -> Result<(), SurgeError> {
        if self.curve.is_empty() {
            return Err(invalid("curve", "must have at least one point"));
        }
        let mut previous: Option<(f64, f64)> = None;
        for (i, &(ratio, multiplier)) in self.curve.iter().enumerate() {
            if !(ratio.is_finite() && ratio >= 0.0) {
                return Err(invalid(
                    "curve",
                    format!("point {i}: ratio must be a finite number >= 0 (got {ratio})"),
                ));
            }
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(invalid(
                    "curve",
                    format!(
                        "point {i}: multiplier must be a finite number >= 1 (got {multiplier})"
                    ),
                ));
            }
            if let Some((previous_ratio, previous_multiplier)) = previous {
                if ratio <= previous_ratio {
                    return Err(invalid(
                        "curve",
                        format!("point {i}: ratios must increase ({ratio} after {previous_ratio})"),
                    ));
                }
                if multiplier < previous_multiplier {
                    return Err(invalid(
                        "curve",
                        format!(
                            "point {i}: multipliers must not decrease ({multiplier} after {previous_multiplier})"
                        ),
                    ));
                }
            }
            previous = Some((ratio, multiplier));
        }
        Ok(())
    }

    fn validate_step(&self) -> Result<(), SurgeError> {
        let step = self.step;
        if !(step.is_finite() && step > 0.0 && step <= 1.0) {
            return Err(invalid("step", format!("must be in (0, 1] (got {step})")));
        }
        let per_unit = 1.0 / step;
        if per_unit > MAX_STEPS_PER_UNIT || (per_unit - per_unit.round()).abs() > 1e-9 * per_unit {
            return Err(invalid(
                "step",
                format!(
                    "1 / step must be an integer of at most {MAX_STEPS_PER_UNIT} so that 1.0 is a multiple of it (got {step})"
                ),
            ));
        }
        if self.cap * per_unit.round() > MAX_CAP_STEPS {
            return Err(invalid(
                "cap",
                format!(
                    "is {} steps of {step}; at most {MAX_CAP_STEPS} are supported",
                    self.cap / step
                ),
            ));
        }
        Ok(())
    }

    /// Steps per 1.0 of multiplier (`1 / step`), for a validated config.
    pub(crate) fn steps_per_unit(&self) -> u32 {
        // Validated: a positive integer of at most MAX_STEPS_PER_UNIT.
        (1.0 / self.step).round() as u32
    }

    /// Number of hop buckets in the demand window, for a validated config.
    pub(crate) fn demand_hops(&self) -> i64 {
        self.demand_window_ms / self.demand_hop_ms
    }
}

/// How far back in event time (ms) input must be replayed for a restored engine to produce
/// exactly what a never-crashed engine would have: replay every record stamped at or after
/// `M - replay_horizon_ms(config)`, where `M` is the largest event time the engine had seen
/// ([`SurgeEngine::max_event_time`](super::SurgeEngine::max_event_time) at the restore point;
/// any lower bound of it also works, at the cost of a longer replay).
///
/// `allowed_lateness + max(2·window + hop, 2·ttl, stale_after + tick)`, because after the
/// restore point the watermark is at least `W = M − lateness`, so the next tick is at or after
/// `W`, and:
/// - demand: that tick's window starts after `W − hop − window`, and whether a request in it
///   is a duplicate depends on requests up to one more `window` earlier;
/// - supply: a driver counted at that tick pinged after `W − ttl`, and whether that ping was a
///   teleport depends on the driver's pings up to one more `ttl` earlier;
/// - liveness: the last tick computed before the restore point is after `W − tick`; whether a
///   cell was still tracked (or dropped as stale) then depends on inputs up to `stale_after`
///   earlier.
///
/// Records older than that can only change state that no future tick reads. Defaults:
/// `10 s + max(630 s, 60 s, 125 s) = 640 s`.
#[must_use]
pub fn replay_horizon_ms(config: &SurgeConfig) -> i64 {
    let demand = config
        .demand_window_ms
        .saturating_mul(2)
        .saturating_add(config.demand_hop_ms);
    let supply = config.supply_ttl_ms.saturating_mul(2);
    let liveness = config.stale_after_ms.saturating_add(config.tick_ms);
    config
        .allowed_lateness_ms
        .saturating_add(demand.max(supply).max(liveness))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &SurgeConfig) -> Option<&'static str> {
        match config.validate() {
            Ok(()) => None,
            Err(SurgeError::InvalidConfig { field, .. }) => Some(field),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_match_the_topology() {
        let config = SurgeConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.steps_per_unit(), 10);
        assert_eq!(config.demand_hops(), 10);
        assert_eq!(replay_horizon_ms(&config), 640_000);
    }

    #[test]
    fn each_invalid_field_is_named() {
        type Breakage = Box<dyn Fn(&mut SurgeConfig)>;
        let cases: Vec<(&str, Breakage)> = vec![
            ("cell_precision", Box::new(|c| c.cell_precision = 13)),
            ("region_precision", Box::new(|c| c.region_precision = 7)),
            ("region_precision", Box::new(|c| c.region_precision = 0)),
            ("supply_ttl_ms", Box::new(|c| c.supply_ttl_ms = 0)),
            (
                "demand_window_ms",
                Box::new(|c| c.demand_window_ms = 310_000),
            ),
            ("demand_window_ms", Box::new(|c| c.demand_hop_ms = 1)),
            ("demand_hop_ms", Box::new(|c| c.demand_hop_ms = -5)),
            (
                "allowed_lateness_ms",
                Box::new(|c| c.allowed_lateness_ms = -1),
            ),
            ("idle_advance_ms", Box::new(|c| c.idle_advance_ms = 0)),
            ("max_future_ms", Box::new(|c| c.max_future_ms = -1)),
            ("tick_ms", Box::new(|c| c.tick_ms = 0)),
            ("smoothing_rings", Box::new(|c| c.smoothing_rings = 9)),
            ("smoothing_decay", Box::new(|c| c.smoothing_decay = 1.5)),
            (
                "smoothing_decay",
                Box::new(|c| c.smoothing_decay = f64::NAN),
            ),
            ("curve", Box::new(|c| c.curve.clear())),
            (
                "curve",
                Box::new(|c| c.curve = vec![(1.0, 1.0), (1.0, 2.0)]),
            ),
            (
                "curve",
                Box::new(|c| c.curve = vec![(1.0, 2.0), (2.0, 1.5)]),
            ),
            ("curve", Box::new(|c| c.curve = vec![(1.0, 0.9)])),
            ("curve", Box::new(|c| c.curve = vec![(f64::NAN, 1.0)])),
            ("cap", Box::new(|c| c.cap = 0.5)),
            ("cap", Box::new(|c| c.cap = f64::INFINITY)),
            ("step", Box::new(|c| c.step = 0.3)),
            ("step", Box::new(|c| c.step = 0.0)),
            ("step", Box::new(|c| c.step = 2.0)),
            ("ewma_alpha", Box::new(|c| c.ewma_alpha = 0.0)),
            (
                "max_change_per_tick",
                Box::new(|c| c.max_change_per_tick = 0.05),
            ),
            ("hysteresis", Box::new(|c| c.hysteresis = -0.1)),
            ("stale_after_ms", Box::new(|c| c.stale_after_ms = 20_000)),
            ("max_speed_mps", Box::new(|c| c.max_speed_mps = 0.0)),
        ];
        for (expected, break_it) in cases {
            let mut config = SurgeConfig::default();
            break_it(&mut config);
            assert_eq!(field_of(&config), Some(expected), "{config:?}");
        }
    }

    #[test]
    fn error_message_names_the_field_and_value() {
        let config = SurgeConfig {
            tick_ms: -3,
            ..SurgeConfig::default()
        };
        let message = config.validate().expect_err("invalid").to_string();
        assert_eq!(message, "surge config `tick_ms`: must be > 0 ms (got -3)");
    }

    #[test]
    fn steps_that_divide_one_are_accepted() {
        for step in [1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01] {
            let config = SurgeConfig {
                step,
                max_change_per_tick: 1.0,
                ..SurgeConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "step {step}");
            assert_eq!(f64::from(config.steps_per_unit()) * step, 1.0);
        }
    }

    #[test]
    fn horizon_is_driven_by_the_longest_dependency() {
        let supply_bound = SurgeConfig {
            supply_ttl_ms: 400_000,
            stale_after_ms: 400_000,
            ..SurgeConfig::default()
        };
        assert_eq!(replay_horizon_ms(&supply_bound), 10_000 + 800_000);
        let liveness_bound = SurgeConfig {
            demand_window_ms: 30_000,
            stale_after_ms: 300_000,
            ..SurgeConfig::default()
        };
        assert_eq!(replay_horizon_ms(&liveness_bound), 10_000 + 305_000);
    }
}
