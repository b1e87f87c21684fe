//! How a candidate driver is ranked: a pickup-time estimate and a score.

use super::{MatchError, MatcherConfig};

/// The slowly changing facts about a driver that the score uses, from the compacted
/// `driver.profile` topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriverProfile {
    /// Average rating, stars in `[0, 5]`.
    pub rating: f64,
    /// Share of offers the driver accepts, in `[0, 1]`.
    pub acceptance_rate: f64,
}

impl DriverProfile {
    /// A checked profile.
    ///
    /// # Errors
    /// [`MatchError::Profile`] naming the field if `rating` is outside `[0, 5]` or
    /// `acceptance_rate` outside `[0, 1]` (NaN included): a corrupt profile must not be able to
    /// dominate every score.
    pub fn new(rating: f64, acceptance_rate: f64) -> Result<Self, MatchError> {
        if !(0.0..=5.0).contains(&rating) {
            return Err(MatchError::Profile {
                field: "rating",
                requirement: "in [0, 5]",
                value: rating,
            });
        }
        if !(0.0..=1.0).contains(&acceptance_rate) {
            return Err(MatchError::Profile {
                field: "acceptance_rate",
                requirement: "in [0, 1]",
                value: acceptance_rate,
            });
        }
        Ok(Self {
            rating,
            acceptance_rate,
        })
    }
}

/// What the matcher knows about one candidate for one pickup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Great-circle distance from the driver to the pickup, metres.
    pub distance_m: f64,
    /// Estimated pickup time, seconds ([`MatcherConfig::eta_s`]).
    pub eta_s: f64,
    /// Ranking score, higher is better ([`MatcherConfig::score`]).
    pub score: f64,
}

impl MatcherConfig {
    /// Estimated time for a driver `distance_m` away (great circle) to reach the pickup,
    /// seconds: `distance_m × detour_factor / speed_mps`.
    ///
    /// Why this is a reasonable first estimate: within a few kilometres, road distance tracks
    /// straight-line distance closely, with a circuity factor of about 1.2–1.4 in most cities,
    /// and an average urban speed absorbs lights and turns. It costs one multiplication, so it
    /// can rank thousands of candidates per request without a routing engine on the hot path;
    /// and since it is monotone in distance, it ranks the candidates of one pickup exactly as
    /// distance does, so its bias mostly shows in the absolute ETA shown to riders, not in who
    /// is chosen. A routing-engine ETA for the few best candidates is the natural refinement.
    #[must_use]
    pub fn eta_s(&self, distance_m: f64) -> f64 {
        distance_m * self.detour_factor / self.speed_mps
    }

    /// A candidate's score, higher is better:
    /// `-w_eta · eta_s / 60 + w_rating · rating / 5 + w_acceptance · acceptance_rate`.
    ///
    /// Every term is brought to a comparable unit first (minutes, and two fractions in
    /// `[0, 1]`) so that the weights read as exchange rates: with the defaults (1, 0.2, 0.2),
    /// a full star of rating is worth 0.04 minutes ≈ 2.4 s of pickup time, and an acceptance
    /// rate 0.5 higher is worth 6 s. Pickup time dominates, as riders feel it directly; the
    /// profile breaks near-ties towards drivers who are well rated and likely to accept, which
    /// saves a retry cycle (`offer_timeout_ms`) when it works.
    #[must_use]
    pub fn score(&self, eta_s: f64, profile: DriverProfile) -> f64 {
        let w = self.weights;
        -w.eta * eta_s / 60.0
            + w.rating * profile.rating / 5.0
            + w.acceptance * profile.acceptance_rate
    }

    /// The profile assumed for a driver whose `driver.profile` record has not been seen:
    /// `default_rating` and `default_acceptance_rate`, so that new drivers rank near an
    /// average one instead of at either extreme.
    #[must_use]
    pub fn default_profile(&self) -> DriverProfile {
        DriverProfile {
            rating: self.default_rating,
            acceptance_rate: self.default_acceptance_rate,
        }
    }

    /// ETA and score of a driver `distance_m` away with `profile` (the default one if `None`).
    #[must_use]
    pub fn estimate(&self, distance_m: f64, profile: Option<DriverProfile>) -> Estimate {
        let eta_s = self.eta_s(distance_m);
        Estimate {
            distance_m,
            eta_s,
            score: self.score(eta_s, profile.unwrap_or_else(|| self.default_profile())),
        }
    }
}
