//! The multiplier arithmetic: surge curve, quantisation and damping, in integer steps.
//!
//! Multipliers are held as integers counting `step`s (`2.3` is `23` with the default step of
//! 0.1), so equality ("did it change?", "is it 1.0?") is exact, and float noise can only
//! enter where a real number is rounded to steps, which is done once, half up, with a
//! tolerance. Values are multiplied by the integer `1 / step` rather than divided by `step`:
//! `1.25 × 10 = 12.5` exactly, where `1.25 / 0.1 = 12.499999999999998`.

use super::SurgeConfig;
use super::curve::{NOISE_STEPS, SurgeCurve, round_half_up};

/// The curve, bounds and damping parameters of a validated [`SurgeConfig`], in steps.
#[derive(Debug, Clone)]
pub(crate) struct Pricing {
    /// The stateless part: curve, cap and step (shared with the Arroyo UDF).
    curve: SurgeCurve,
    /// Steps per 1.0 (`1 / step`).
    per_unit: u32,
    /// 1.0 and the cap, in steps (the cap rounded down to a step).
    one: u32,
    cap: u32,
    alpha: f64,
    /// `max_change_per_tick` and `hysteresis`, in steps.
    max_change: f64,
    hysteresis: f64,
}

impl Pricing {
    /// The arithmetic of a config the caller has validated.
    pub(crate) fn new(config: &SurgeConfig) -> Self {
        let curve = SurgeCurve::of_validated(config);
        let per_unit = curve.per_unit();
        let units = f64::from(per_unit);
        Self {
            per_unit,
            one: per_unit,
            cap: curve.cap_steps(),
            curve,
            alpha: config.ewma_alpha,
            max_change: config.max_change_per_tick * units,
            hysteresis: config.hysteresis * units,
        }
    }

    /// 1.0, in steps: the multiplier of a cell without surge.
    pub(crate) fn one(&self) -> u32 {
        self.one
    }

    /// The multiplier a number of steps stands for. Exact to the last bit for every
    /// multiple of the step (`23 / 10` is the double nearest 2.3, as `23 × 0.1` is not).
    pub(crate) fn multiplier(&self, steps: u32) -> f64 {
        f64::from(steps) / f64::from(self.per_unit)
    }

    /// A multiplier read back from the output topic, rounded to steps (not clamped: it is
    /// what was published, whatever the configuration is now). `None` if not finite.
    pub(crate) fn steps_of(&self, multiplier: f64) -> Option<u32> {
        multiplier
            .is_finite()
            .then(|| round_half_up(multiplier * f64::from(self.per_unit)))
    }

    /// Clamps steps into `[1.0, cap]`.
    pub(crate) fn clamp(&self, steps: u32) -> u32 {
        steps.clamp(self.one, self.cap)
    }

    /// The target multiplier for a smoothed demand/supply ratio: the curve, clamped to
    /// `[1.0, cap]`, rounded half up to a step ([`SurgeCurve::steps`], the one
    /// implementation the UDF shares).
    pub(crate) fn target(&self, ratio: f64) -> u32 {
        self.curve.steps(ratio)
    }

    /// One damping step from `current` towards `target` (both in steps).
    ///
    /// - hysteresis: a target within `hysteresis` of the current value changes nothing, so a
    ///   ratio hovering at a curve breakpoint does not make the price flicker;
    /// - otherwise `current + clamp(alpha · (target − current), ±max_change)`, rounded half
    ///   up, moving the price a fraction of the way each tick and never by more than the cap
    ///   on change, so one burst cannot double a price within a tick;
    /// - and at least one step towards the target: rounding alone would stall a falling
    ///   price one step above its target (`11 + 0.5·(10 − 11) = 10.5` rounds back to 11), or
    ///   up to `0.5 / alpha` steps away for small alphas.
    ///
    /// The result always lies between `current` and `target`.
    pub(crate) fn damp(&self, current: u32, target: u32) -> u32 {
        if current == target {
            return current;
        }
        let delta = f64::from(target) - f64::from(current);
        if delta.abs() + NOISE_STEPS < self.hysteresis {
            return current;
        }
        let change = (self.alpha * delta).clamp(-self.max_change, self.max_change);
        let mut next = round_half_up(f64::from(current) + change);
        if next == current {
            next = if target > current {
                current + 1
            } else {
                current - 1
            };
        }
        next.clamp(current.min(target), current.max(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing() -> Pricing {
        Pricing::new(&SurgeConfig::default())
    }

    #[test]
    fn target_is_clamped_and_rounded_half_up() {
        let p = pricing();
        assert_eq!(p.target(0.0), 10);
        assert_eq!(p.target(3.25), 21, "2.125 rounds to 2.1");
        // 1.25 exactly half-way between 1.2 and 1.3: rounds up despite 1.25/0.1 < 12.5.
        assert_eq!(p.target(1.5), 13);
        assert_eq!(p.target(5.0), 25);
        let steep = Pricing::new(&SurgeConfig {
            curve: vec![(0.0, 1.0), (1.0, 5.0)],
            cap: 2.95,
            ..SurgeConfig::default()
        });
        // The cap rounds down to a step, so a published value never exceeds it.
        assert_eq!(steep.target(10.0), 29);
    }

    #[test]
    fn damping_follows_the_formula_then_quantises() {
        let p = pricing();
        // From 1.0 towards 2.5: +0.75 clamped to +0.5, then +0.5, +0.25 → 2.25 → 2.3,
        // +0.1, +0.05 → 2.45 → 2.5.
        let mut m = 10;
        let mut path = Vec::new();
        while m != 25 {
            m = p.damp(m, 25);
            path.push(m);
        }
        assert_eq!(path, [15, 20, 23, 24, 25]);
        // Falling: −0.75 clamped to −0.5 ... and the last half step still moves.
        let mut m = 25;
        let mut path = Vec::new();
        while m != 10 {
            m = p.damp(m, 10);
            path.push(m);
        }
        assert_eq!(path, [20, 15, 13, 12, 11, 10]);
    }

    #[test]
    fn hysteresis_holds_small_differences() {
        let p = Pricing::new(&SurgeConfig {
            hysteresis: 0.2,
            ..SurgeConfig::default()
        });
        assert_eq!(p.damp(20, 21), 20);
        assert_eq!(p.damp(20, 19), 20);
        assert_eq!(p.damp(20, 22), 21);
        // Hysteresis 0.1 is one step: a one-step difference is not below it, so it moves.
        assert_eq!(pricing().damp(20, 21), 21);
    }

    #[test]
    fn small_alpha_still_converges() {
        let p = Pricing::new(&SurgeConfig {
            ewma_alpha: 0.05,
            ..SurgeConfig::default()
        });
        let mut m = 10;
        for _ in 0..100 {
            m = p.damp(m, 25);
        }
        assert_eq!(m, 25);
    }

    #[test]
    fn multiplier_is_the_nearest_double() {
        let p = pricing();
        assert_eq!(p.multiplier(23), 2.3);
        assert_eq!(p.multiplier(10), 1.0);
        assert_eq!(p.steps_of(2.3), Some(23));
        assert_eq!(p.steps_of(0.5), Some(5));
        assert_eq!(p.steps_of(f64::NAN), None);
        assert_eq!(p.steps_of(-3.0), Some(0));
        assert_eq!(p.clamp(5), 10);
        assert_eq!(p.clamp(40), 30);
    }
}
