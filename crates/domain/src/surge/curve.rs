//! [`SurgeCurve`]: the demand/supply ratio → multiplier mapping, quantised and capped, as a
//! pure value usable outside the engine.
//!
//! Why a separate type: the engine prices a cell in two parts, a stateless target (curve,
//! clamp to `[1, cap]`, rounding half up to a `step`) and a stateful damping towards it.
//! Other runtimes (the Arroyo UDFs under `pipelines/`) only have the stateless part, and
//! must compute it exactly as the engine does. So the engine's [`Pricing`](super::price)
//! delegates its target to this type, and the UDF calls the very same code: there is one
//! implementation of the curve, not two that could drift apart.

use std::fmt::Write as _;

use super::{SurgeConfig, SurgeError};

/// Tolerance, in steps, for float noise when rounding half up.
pub(super) const NOISE_STEPS: f64 = 1e-9;

/// Rounds a value in steps to the nearest integer, halves up, saturating at `0..=u32::MAX`.
pub(super) fn round_half_up(steps: f64) -> u32 {
    // `as` saturates (and maps NaN to 0).
    (steps + 0.5 + NOISE_STEPS).floor() as u32
}

/// A validated surge curve: `(ratio, multiplier)` points, the cap and the step of a
/// [`SurgeConfig`], with the cap and `1 / step` held in integer steps.
#[derive(Debug, Clone, PartialEq)]
pub struct SurgeCurve {
    points: Vec<(f64, f64)>,
    /// Steps per 1.0 (`1 / step`).
    per_unit: u32,
    /// The cap, in steps (rounded down to a step, at least 1.0).
    cap: u32,
}

impl SurgeCurve {
    /// A curve through `points` (linear in between, flat outside), clamped to `[1, cap]`
    /// and rounded half up to a multiple of `step`.
    ///
    /// # Errors
    /// [`SurgeError::InvalidConfig`] naming `curve`, `cap` or `step` when they break the
    /// rules of [`SurgeConfig`] (checked by [`SurgeConfig::validate`] itself, so the two can
    /// never disagree).
    pub fn new(points: Vec<(f64, f64)>, cap: f64, step: f64) -> Result<Self, SurgeError> {
        let config = SurgeConfig {
            curve: points,
            cap,
            step,
            // Every valid step is <= 1, so this never hides a curve, cap or step error.
            max_change_per_tick: 1.0,
            ..SurgeConfig::default()
        };
        config.validate()?;
        Ok(Self::of_validated(&config))
    }

    /// The curve of a whole config.
    ///
    /// # Errors
    /// [`SurgeError::InvalidConfig`] if the config does not validate.
    pub fn from_config(config: &SurgeConfig) -> Result<Self, SurgeError> {
        config.validate()?;
        Ok(Self::of_validated(config))
    }

    /// Parses points written `ratio:multiplier` separated by commas, e.g. the default
    /// `"1:1,2:1.5,4:2.5"` (spaces allowed), then checks them as [`new`](Self::new) does.
    /// This is the form SQL passes, as Arroyo UDFs take no list arguments.
    ///
    /// # Errors
    /// [`SurgeError::InvalidConfig`] for `curve` if a point does not parse, otherwise as
    /// [`new`](Self::new).
    pub fn parse(points: &str, cap: f64, step: f64) -> Result<Self, SurgeError> {
        let parsed = points
            .split(',')
            .map(|point| {
                let (ratio, multiplier) = point.split_once(':')?;
                Some((
                    ratio.trim().parse::<f64>().ok()?,
                    multiplier.trim().parse::<f64>().ok()?,
                ))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| SurgeError::InvalidConfig {
                field: "curve",
                reason: format!(
                    "expected `ratio:multiplier` points separated by commas (got {points:?})"
                ),
            })?;
        Self::new(parsed, cap, step)
    }

    /// The curve of a config the caller has validated.
    pub(super) fn of_validated(config: &SurgeConfig) -> Self {
        let per_unit = config.steps_per_unit();
        let units = f64::from(per_unit);
        Self {
            points: config.curve.clone(),
            per_unit,
            cap: (config.cap * units + NOISE_STEPS).floor().max(units) as u32,
        }
    }

    /// Steps per 1.0 of multiplier (`1 / step`).
    pub(super) fn per_unit(&self) -> u32 {
        self.per_unit
    }

    /// The cap, in steps.
    pub(super) fn cap_steps(&self) -> u32 {
        self.cap
    }

    /// The raw curve at a ratio: linear between points, flat outside them.
    fn interpolate(&self, ratio: f64) -> f64 {
        let mut below = None;
        for &(r, m) in &self.points {
            if ratio < r {
                return match below {
                    None => m,
                    Some((r0, m0)) => m0 + (ratio - r0) / (r - r0) * (m - m0),
                };
            }
            below = Some((r, m));
        }
        below.map_or(1.0, |(_, m)| m)
    }

    /// The target multiplier at a demand/supply ratio, in steps: the curve, clamped to
    /// `[1.0, cap]`, rounded half up to a step. What the engine damps towards.
    ///
    /// `ratio` is meant to be a finite number `>= 0`, as the engine's always is; a NaN
    /// compares below no point and so reads the last one.
    #[must_use]
    pub fn steps(&self, ratio: f64) -> u32 {
        let units = f64::from(self.per_unit);
        let value = self
            .interpolate(ratio)
            .clamp(1.0, f64::from(self.cap) / units);
        round_half_up(value * units).clamp(self.per_unit, self.cap)
    }

    /// The target multiplier at a demand/supply ratio (`demand / max(supply, 1)`), as the
    /// double nearest to its multiple of the step ([`steps`](Self::steps) / `1 / step`).
    #[must_use]
    pub fn multiplier(&self, ratio: f64) -> f64 {
        f64::from(self.steps(ratio)) / f64::from(self.per_unit)
    }

    /// The points in the text form [`parse`](Self::parse) reads.
    #[must_use]
    pub fn points_text(&self) -> String {
        let mut text = String::new();
        for (i, (ratio, multiplier)) in self.points.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            // Writing to a String cannot fail.
            let _ = write!(text, "{separator}{ratio}:{multiplier}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_curve() -> SurgeCurve {
        SurgeCurve::from_config(&SurgeConfig::default()).expect("default config is valid")
    }

    #[test]
    fn curve_is_piecewise_linear_and_flat_outside() {
        let c = default_curve();
        assert_eq!(c.interpolate(0.0), 1.0);
        assert_eq!(c.interpolate(1.0), 1.0);
        assert_eq!(c.interpolate(1.5), 1.25);
        assert_eq!(c.interpolate(2.0), 1.5);
        assert_eq!(c.interpolate(3.25), 2.125);
        assert_eq!(c.interpolate(4.0), 2.5);
        assert_eq!(c.interpolate(1e9), 2.5);
    }

    #[test]
    fn multiplier_is_clamped_and_rounded_half_up() {
        let c = default_curve();
        assert_eq!(c.multiplier(0.0), 1.0);
        assert_eq!(c.multiplier(3.25), 2.1, "2.125 rounds to 2.1");
        assert_eq!(c.multiplier(1.5), 1.3, "1.25 is half-way and rounds up");
        let steep = SurgeCurve::new(vec![(0.0, 1.0), (1.0, 5.0)], 2.95, 0.1).expect("valid");
        assert_eq!(steep.multiplier(10.0), 2.9, "the cap rounds down to a step");
    }

    #[test]
    fn parse_reads_the_text_form_and_validates() {
        let c = default_curve();
        assert_eq!(c.points_text(), "1:1,2:1.5,4:2.5");
        assert_eq!(SurgeCurve::parse(" 1:1, 2:1.5 ,4:2.5", 3.0, 0.1), Ok(c));
        for bad in ["", "1", "1:x", "1:1,,2:2"] {
            assert!(
                matches!(
                    SurgeCurve::parse(bad, 3.0, 0.1),
                    Err(SurgeError::InvalidConfig { field: "curve", .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            SurgeCurve::parse("2:1,1:2", 3.0, 0.1),
            Err(SurgeError::InvalidConfig { field: "curve", .. })
        ));
        assert!(matches!(
            SurgeCurve::parse("1:1", 0.5, 0.1),
            Err(SurgeError::InvalidConfig { field: "cap", .. })
        ));
        assert!(matches!(
            SurgeCurve::parse("1:1", 3.0, 0.3),
            Err(SurgeError::InvalidConfig { field: "step", .. })
        ));
        assert!(
            SurgeCurve::parse("1:1", 3.0, 1.0).is_ok(),
            "step 1 is valid"
        );
    }
}
