//! Scoring by hand: the ETA and score of a proposal, with and without a driver profile.

use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon, haversine_m};
use surgeflow_domain::matching::{
    DriverPing, DriverProfile, DriverStatus, MatchError, MatchOutput, MatchWeights, Matcher,
    MatcherConfig, Proposal, TripRequest,
};

const PICKUP: LatLon = LatLon {
    lat: 48.8566,
    lon: 2.3522,
};

/// The point `metres` due north of the pickup.
fn north_of_pickup(metres: f64) -> LatLon {
    LatLon {
        lat: PICKUP.lat + (metres / EARTH_RADIUS_M).to_degrees(),
        lon: PICKUP.lon,
    }
}

fn request(trip: &str, t: i64) -> TripRequest<&'static str> {
    TripRequest {
        trip_id: trip.to_owned(),
        rider_id: format!("rider-{trip}"),
        product: "economy",
        pickup: PICKUP,
        event_time: t,
        surge_multiplier: 1.4,
    }
}

fn only_proposal(out: Vec<MatchOutput<&'static str>>) -> Proposal<&'static str> {
    match <[_; 1]>::try_from(out) {
        Ok([MatchOutput::Proposal(p)]) => p,
        other => panic!("expected one proposal, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn hand_computed_eta_and_score() {
    let config = MatcherConfig::default();
    // 1000 m × 1.3 / 8 m/s = 162.5 s = 2.708333… min.
    assert!(close(config.eta_s(1_000.0), 162.5));
    let profile = DriverProfile::new(4.5, 0.9).expect("valid");
    // −1.0 × 162.5/60 + 0.2 × 4.5/5 + 0.2 × 0.9 = −2.708333… + 0.18 + 0.18
    let expected = -162.5 / 60.0 + 0.36;
    assert!(close(config.score(162.5, profile), expected));
    assert!(close(expected, -2.348_333_333_333_333));
    // Defaults (4.7 stars, 0.8): −2.708333… + 0.188 + 0.16
    let estimate = config.estimate(1_000.0, None);
    assert!(close(estimate.eta_s, 162.5));
    assert!(close(estimate.score, -2.360_333_333_333_333));
    // Other weights are applied term by term.
    let weighted = MatcherConfig {
        weights: MatchWeights {
            eta: 2.0,
            rating: 1.0,
            acceptance: 0.0,
        },
        ..MatcherConfig::default()
    };
    assert!(close(weighted.score(60.0, profile), -2.0 + 0.9));
}

#[test]
fn proposals_carry_the_hand_computed_figures() {
    let mut matcher = Matcher::new(MatcherConfig::default()).expect("valid config");
    let position = north_of_pickup(1_000.0);
    for driver in ["profiled", "unknown"] {
        matcher
            .on_driver_ping(&DriverPing {
                driver_id: driver,
                position,
                status: DriverStatus::Available,
                product: "economy",
                event_time: 0,
            })
            .expect("valid ping");
    }
    matcher
        .upsert_profile("profiled", DriverProfile::new(4.5, 0.9).expect("valid"))
        .expect("valid profile");
    let distance = haversine_m(PICKUP, position);
    assert!((distance - 1_000.0).abs() < 1e-6);

    // Same distance: the profiled driver (−2.348) beats the default one (−2.360).
    let first = only_proposal(matcher.on_request(request("t1", 0)).expect("valid"));
    assert_eq!(first.driver_id, "profiled");
    assert_eq!(first.proposal_id, "t1#1");
    assert_eq!(first.attempt, 1);
    assert!(close(first.distance_m, distance));
    assert!(close(first.eta_s, distance * 1.3 / 8.0));
    assert!(close(
        first.score,
        -first.eta_s / 60.0 + 0.2 * 4.5 / 5.0 + 0.2 * 0.9
    ));
    assert_eq!(first.surge_multiplier, 1.4);
    assert_eq!((first.proposed_at, first.expires_at), (0, 15_000));

    // The other driver has no profile: the defaults are used.
    let second = only_proposal(matcher.on_request(request("t2", 0)).expect("valid"));
    assert_eq!(second.driver_id, "unknown");
    assert!(close(
        second.score,
        -second.eta_s / 60.0 + 0.2 * 4.7 / 5.0 + 0.2 * 0.8
    ));

    // A tombstone brings the defaults back.
    matcher.remove_profile("profiled");
    assert_eq!(matcher.index().profile("profiled"), None);
}

#[test]
fn a_nearer_driver_beats_a_better_rated_one_by_the_exchange_rate() {
    // 100 m costs 100 × 1.3 / 8 / 60 = 0.27 min; a full star is worth only 0.04.
    let mut matcher = Matcher::new(MatcherConfig::default()).expect("valid config");
    for (driver, metres) in [("near", 500.0), ("far-but-perfect", 600.0)] {
        matcher
            .on_driver_ping(&DriverPing {
                driver_id: driver,
                position: north_of_pickup(metres),
                status: DriverStatus::Available,
                product: "economy",
                event_time: 0,
            })
            .expect("valid ping");
    }
    matcher
        .upsert_profile("near", DriverProfile::new(4.0, 0.5).expect("valid"))
        .expect("valid");
    matcher
        .upsert_profile(
            "far-but-perfect",
            DriverProfile::new(5.0, 1.0).expect("valid"),
        )
        .expect("valid");
    let p = only_proposal(matcher.on_request(request("t", 0)).expect("valid"));
    assert_eq!(p.driver_id, "near");
}

#[test]
fn bad_profiles_and_requests_are_rejected_without_change() {
    assert!(matches!(
        DriverProfile::new(5.1, 0.5),
        Err(MatchError::Profile {
            field: "rating",
            ..
        })
    ));
    assert!(matches!(
        DriverProfile::new(4.0, f64::NAN),
        Err(MatchError::Profile {
            field: "acceptance_rate",
            ..
        })
    ));
    let mut matcher = Matcher::new(MatcherConfig::default()).expect("valid config");
    let forged = DriverProfile {
        rating: 50.0,
        acceptance_rate: 0.5,
    };
    assert!(matcher.upsert_profile("d", forged).is_err());
    assert_eq!(matcher.index().profile("d"), None);

    let mut bad = request("t", 0);
    bad.surge_multiplier = f64::NAN;
    assert!(matches!(matcher.on_request(bad), Err(MatchError::Surge(_))));
    let mut bad = request("t", 0);
    bad.pickup.lat = 95.0;
    assert!(matches!(
        matcher.on_request(bad),
        Err(MatchError::Position(_))
    ));
    assert_eq!(matcher.trip_status("t"), None);
    assert_eq!(matcher.counters().requests, 0);
}

mod greedy_choice {
    //! The greedy choice (which stops scanning once farther cells cannot win) against the
    //! best of all drivers by brute force.

    use proptest::prelude::*;
    use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon, haversine_m};
    use surgeflow_domain::matching::{
        DriverPing, DriverProfile, DriverStatus, MatchOutput, MatchWeights, Matcher, MatcherConfig,
        TripRequest,
    };

    const PICKUP: LatLon = LatLon {
        lat: -33.8688,
        lon: 151.2093,
    };

    fn offset(north_m: f64, east_m: f64) -> LatLon {
        LatLon {
            lat: PICKUP.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
            lon: PICKUP.lon
                + (east_m / (EARTH_RADIUS_M * PICKUP.lat.to_radians().cos())).to_degrees(),
        }
    }

    type Driver = (f64, f64, Option<(f64, f64)>);

    fn drivers() -> impl Strategy<Value = Vec<Driver>> {
        prop::collection::vec(
            (
                -3_000.0f64..3_000.0,
                -3_000.0f64..3_000.0,
                prop::option::of((0.0f64..=5.0, 0.0f64..=1.0)),
            ),
            0..80,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn greedy_picks_the_best_of_all_drivers(
            drivers in drivers(),
            precision in 5u8..=7,
            rating_weight in prop_oneof![Just(0.2), 0.0f64..30.0],
        ) {
            let config = MatcherConfig {
                index_precision: precision,
                weights: MatchWeights { eta: 1.0, rating: rating_weight, acceptance: 0.2 },
                ..MatcherConfig::default()
            };
            let mut m = Matcher::new(config.clone()).expect("valid config");
            let ids: Vec<String> = (0..drivers.len()).map(|i| format!("d{i:02}")).collect();
            for (id, (north, east, profile)) in ids.iter().zip(&drivers) {
                m.on_driver_ping(&DriverPing {
                    driver_id: id,
                    position: offset(*north, *east),
                    status: DriverStatus::Available,
                    product: (),
                    event_time: 0,
                }).expect("valid ping");
                if let Some((rating, acceptance)) = profile {
                    m.upsert_profile(id, DriverProfile::new(*rating, *acceptance).expect("valid"))
                        .expect("valid");
                }
            }
            let best = ids
                .iter()
                .zip(&drivers)
                .filter_map(|(id, (north, east, profile))| {
                    let d = haversine_m(PICKUP, offset(*north, *east));
                    let profile = profile
                        .map(|(rating, acceptance_rate)| DriverProfile { rating, acceptance_rate });
                    (d <= config.radius_m).then(|| (config.estimate(d, profile), id.clone()))
                })
                .min_by(|(a, ida), (b, idb)| {
                    b.score.total_cmp(&a.score)
                        .then(a.distance_m.total_cmp(&b.distance_m))
                        .then_with(|| ida.cmp(idb))
                });
            let out = m.on_request(TripRequest {
                trip_id: "t".to_owned(),
                rider_id: "r".to_owned(),
                product: (),
                pickup: PICKUP,
                event_time: 0,
                surge_multiplier: 1.0,
            }).expect("valid request");
            match (out.as_slice(), best) {
                ([MatchOutput::Proposal(p)], Some((estimate, id))) => {
                    prop_assert_eq!(&p.driver_id, &id);
                    prop_assert_eq!(p.score, estimate.score);
                }
                ([MatchOutput::Unfilled(_)], None) => {}
                (got, want) => prop_assert!(false, "got {:?}, brute force {:?}", got, want),
            }
        }
    }
}
