//! Batched matching: the assignment solver against brute force, and against greedy on an
//! instance where greedy is provably worse.

use proptest::prelude::*;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon};
use surgeflow_domain::matching::{
    DriverPing, DriverStatus, MatchOutput, Matcher, MatcherConfig, TripRequest, UnfilledReason,
    optimal_assignment,
};

/// The best (most rows assigned, then least total cost) over every partial assignment.
fn brute_force(rows: usize, cols: usize, costs: &[Option<f64>]) -> (usize, f64) {
    fn go(
        row: usize,
        rows: usize,
        cols: usize,
        costs: &[Option<f64>],
        used: &mut [bool],
    ) -> (usize, f64) {
        if row == rows {
            return (0, 0.0);
        }
        // Leave this row unassigned…
        let mut best = go(row + 1, rows, cols, costs, used);
        // …or give it any free allowed column.
        for col in 0..cols {
            let Some(cost) = costs[row * cols + col] else {
                continue;
            };
            if used[col] {
                continue;
            }
            used[col] = true;
            let (n, total) = go(row + 1, rows, cols, costs, used);
            used[col] = false;
            let candidate = (n + 1, total + cost);
            if candidate.0 > best.0 || (candidate.0 == best.0 && candidate.1 < best.1) {
                best = candidate;
            }
        }
        best
    }
    go(0, rows, cols, costs, &mut vec![false; cols])
}

fn instance() -> impl Strategy<Value = (usize, usize, Vec<Option<f64>>)> {
    (0usize..=6, 0usize..=6).prop_flat_map(|(rows, cols)| {
        let cost = prop_oneof![
            1 => Just(None),
            3 => (0u32..1_000).prop_map(|c| Some(f64::from(c))),
            1 => (0.0f64..1_000.0).prop_map(Some),
        ];
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(cost, rows * cols),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_024))]

    #[test]
    fn assignment_equals_brute_force((rows, cols, costs) in instance()) {
        let assignment = optimal_assignment(rows, cols, &costs).expect("valid matrix");
        prop_assert_eq!(assignment.len(), rows);
        let mut used = vec![false; cols];
        let mut total = 0.0;
        let mut assigned = 0;
        for (row, col) in assignment.iter().enumerate() {
            if let Some(col) = *col {
                prop_assert!(!used[col], "column {} used twice", col);
                used[col] = true;
                let cost = costs[row * cols + col];
                prop_assert!(cost.is_some(), "forbidden pair ({}, {}) assigned", row, col);
                total += cost.unwrap_or_default();
                assigned += 1;
            }
        }
        let (best_n, best_total) = brute_force(rows, cols, &costs);
        prop_assert_eq!(assigned, best_n);
        prop_assert!((total - best_total).abs() <= 1e-6 * best_total.max(1.0),
            "total {} but brute force finds {}", total, best_total);
    }
}

// ---------------------------------------------------------------------------------------------
// Greedy against batched on a crafted instance.

const ORIGIN: LatLon = LatLon {
    lat: 45.0,
    lon: 7.0,
};

/// The point `metres` east of the origin.
fn east(metres: f64) -> LatLon {
    LatLon {
        lat: ORIGIN.lat,
        lon: ORIGIN.lon + (metres / (EARTH_RADIUS_M * ORIGIN.lat.to_radians().cos())).to_degrees(),
    }
}

/// Two riders at 0 m and 1000 m, drivers A at 500 m (between them) and B at −900 m.
/// Greedy serves the first rider with the nearest driver, A (500 m), leaving B for the second
/// (1900 m): 2400 m in all. Optimal crosses over: B→first (900 m), A→second (500 m): 1400 m.
fn crafted(batch_window_ms: u64) -> (Matcher<()>, Vec<MatchOutput<()>>) {
    let config = MatcherConfig {
        radius_m: 2_500.0,
        batch_window_ms,
        ..MatcherConfig::default()
    };
    let mut m = Matcher::new(config).expect("valid config");
    for (driver, metres) in [("A", 500.0), ("B", -900.0)] {
        m.on_driver_ping(&DriverPing {
            driver_id: driver,
            position: east(metres),
            status: DriverStatus::Available,
            product: (),
            event_time: 0,
        })
        .expect("valid ping");
    }
    let mut out = Vec::new();
    for (trip, metres, t) in [("first", 0.0, 100), ("second", 1_000.0, 200)] {
        out.extend(m.advance(t));
        out.extend(
            m.on_request(TripRequest {
                trip_id: trip.to_owned(),
                rider_id: format!("rider-{trip}"),
                product: (),
                pickup: east(metres),
                event_time: t,
                surge_multiplier: 1.0,
            })
            .expect("valid request"),
        );
    }
    (m, out)
}

fn total_eta(out: &[MatchOutput<()>]) -> f64 {
    out.iter()
        .map(|o| match o {
            MatchOutput::Proposal(p) => p.eta_s,
            MatchOutput::Unfilled(u) => panic!("unexpected {u:?}"),
        })
        .sum()
}

fn pairs(out: &[MatchOutput<()>]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            MatchOutput::Proposal(p) => Some((p.trip_id.clone(), p.driver_id.clone())),
            MatchOutput::Unfilled(_) => None,
        })
        .collect()
}

#[test]
fn batched_beats_greedy_on_the_crafted_instance() {
    let (_, greedy) = crafted(0);
    assert_eq!(
        pairs(&greedy),
        [("first".into(), "A".into()), ("second".into(), "B".into())]
    );

    let (mut batched, early) = crafted(1_000);
    assert!(
        early.is_empty(),
        "batched mode waits for the window: {early:?}"
    );
    assert_eq!(batched.pooled_requests(), 2);
    assert!(
        batched.advance(999).is_empty(),
        "window [0, 1000) not over yet"
    );
    let out = batched.advance(1_000);
    assert_eq!(
        pairs(&out),
        [("first".into(), "B".into()), ("second".into(), "A".into())]
    );
    for o in &out {
        if let MatchOutput::Proposal(p) = o {
            assert_eq!((p.attempt, p.proposed_at, p.expires_at), (1, 1_000, 16_000));
        }
    }
    let (greedy_total, batched_total) = (total_eta(&greedy), total_eta(&out));
    // 2400 m versus 1400 m at 1.3 / 8 m/s.
    assert!(
        (greedy_total - 2_400.0 * 1.3 / 8.0).abs() < 0.5,
        "{greedy_total}"
    );
    assert!(
        (batched_total - 1_400.0 * 1.3 / 8.0).abs() < 0.5,
        "{batched_total}"
    );
    assert!(batched_total < greedy_total);

    // The solver alone agrees (costs in metres: rows first/second, columns A/B).
    assert_eq!(
        optimal_assignment(
            2,
            2,
            &[Some(500.0), Some(900.0), Some(500.0), Some(1_900.0)]
        ),
        Ok(vec![Some(1), Some(0)])
    );
}

#[test]
fn outcompeted_requests_wait_and_requests_without_candidates_are_unfilled() {
    let (mut m, _) = crafted(1_000);
    // A third rider, 100 m from the second, arrives in the same window; a fourth one far away.
    for (trip, metres) in [("third", 1_100.0), ("far", 50_000.0)] {
        let out = m
            .on_request(TripRequest {
                trip_id: trip.to_owned(),
                rider_id: "r".to_owned(),
                product: (),
                pickup: east(metres),
                event_time: 300,
                surge_multiplier: 1.0,
            })
            .expect("valid request");
        assert!(out.is_empty());
    }
    let out = m.advance(1_000);
    // Two drivers for three riders in reach: the best pair of the three is served ("first"
    // with B and "second" with A, 1400 m, as above); "far" has no candidate at all.
    assert_eq!(
        pairs(&out),
        [("first".into(), "B".into()), ("second".into(), "A".into())]
    );
    let unfilled: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            MatchOutput::Unfilled(u) => Some((u.trip_id.as_str(), u.reason, u.attempts)),
            MatchOutput::Proposal(_) => None,
        })
        .collect();
    assert_eq!(unfilled, [("far", UnfilledReason::NoDriverInRadius, 0)]);
    // "third" lost to the others: it waits for the next window rather than giving up.
    assert_eq!(m.pooled_requests(), 1);
    // B declines "first": the retry waits for the window too.
    assert!(m.on_declined("first", "B", 1_500).is_empty());
    assert_eq!(m.pooled_requests(), 2);
    // At the next window "first" has no candidate left (A is reserved, B declined it), and
    // "third" gets B.
    let next = m.advance(2_000);
    assert_eq!(pairs(&next), [("third".into(), "B".into())]);
    let unfilled: Vec<_> = next
        .iter()
        .filter_map(|o| match o {
            MatchOutput::Unfilled(u) => Some((u.trip_id.as_str(), u.reason, u.attempts)),
            MatchOutput::Proposal(_) => None,
        })
        .collect();
    assert_eq!(unfilled, [("first", UnfilledReason::NoDriverInRadius, 1)]);
    assert_eq!(m.pooled_requests(), 0);
    assert_eq!(m.open_reservations(), 2);
}

/// A dense hotspot: 300 riders and 400 drivers within a few hundred metres, one connected
/// component. With chunks of 16 every rider still gets a distinct driver in the first window
/// (each chunk solved over the drivers the earlier ones left), none of them twice.
#[test]
fn a_dense_hotspot_is_assigned_in_bounded_chunks() {
    let config = MatcherConfig {
        batch_window_ms: 1_000,
        batch_max_trips: 16,
        ..MatcherConfig::default()
    };
    let mut m = Matcher::new(config).expect("valid config");
    m.advance(0);
    let spot = |i: usize, spread: f64| {
        // A deterministic scatter over a disc of radius `spread` metres.
        let angle = i as f64 * 2.399_963;
        let r = spread * ((i % 97) as f64 / 97.0).sqrt();
        LatLon {
            lat: ORIGIN.lat + (r * angle.sin() / EARTH_RADIUS_M).to_degrees(),
            lon: ORIGIN.lon
                + (r * angle.cos() / (EARTH_RADIUS_M * ORIGIN.lat.to_radians().cos())).to_degrees(),
        }
    };
    for i in 0..400 {
        m.on_driver_ping(&DriverPing {
            driver_id: &format!("d{i:03}"),
            position: spot(i, 400.0),
            status: DriverStatus::Available,
            product: (),
            event_time: 0,
        })
        .expect("valid ping");
    }
    for i in 0..300 {
        let out = m
            .on_request(TripRequest {
                trip_id: format!("t{i:03}"),
                rider_id: "r".to_owned(),
                product: (),
                pickup: spot(i * 7 + 3, 300.0),
                event_time: 0,
                surge_multiplier: 1.0,
            })
            .expect("valid request");
        assert!(out.is_empty());
    }
    let out = m.advance(1_000);
    let proposals: Vec<_> = out
        .iter()
        .map(|o| match o {
            MatchOutput::Proposal(p) => p,
            MatchOutput::Unfilled(u) => panic!("unexpected {u:?}"),
        })
        .collect();
    assert_eq!(proposals.len(), 300);
    let drivers: std::collections::BTreeSet<&str> =
        proposals.iter().map(|p| p.driver_id.as_str()).collect();
    assert_eq!(drivers.len(), 300, "a driver was proposed twice");
    assert_eq!(m.open_reservations(), 300);
    assert_eq!(m.pooled_requests(), 0);
}

/// Brute force over the matcher's own inputs: riders and drivers at random points, with the
/// candidates pruned to each rider's fastest (and the scan stopped early) inside the matcher.
mod batched_matcher {
    use super::*;
    use surgeflow_domain::geo::haversine_m;

    fn point() -> impl Strategy<Value = (f64, f64)> {
        (-2_500.0f64..2_500.0, -2_500.0f64..2_500.0)
    }

    fn at((north, east): (f64, f64)) -> LatLon {
        LatLon {
            lat: ORIGIN.lat + (north / EARTH_RADIUS_M).to_degrees(),
            lon: ORIGIN.lon
                + (east / (EARTH_RADIUS_M * ORIGIN.lat.to_radians().cos())).to_degrees(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_024))]

        #[test]
        fn a_window_is_assigned_optimally(
            riders in prop::collection::vec((point(), 0u8..2), 1..=3),
            drivers in prop::collection::vec((point(), 0u8..2), 0..=12),
            precision in 5u8..=7,
        ) {
            let config = MatcherConfig {
                batch_window_ms: 1_000,
                index_precision: precision,
                ..MatcherConfig::default()
            };
            let mut m = Matcher::new(config.clone()).expect("valid config");
            m.advance(0);
            for (i, (p, product)) in drivers.iter().enumerate() {
                m.on_driver_ping(&DriverPing {
                    driver_id: &format!("d{i}"),
                    position: at(*p),
                    status: DriverStatus::Available,
                    product: *product,
                    event_time: 0,
                }).expect("valid ping");
            }
            for (i, (p, product)) in riders.iter().enumerate() {
                let out = m.on_request(TripRequest {
                    trip_id: format!("t{i}"),
                    rider_id: "r".to_owned(),
                    product: *product,
                    pickup: at(*p),
                    event_time: 0,
                    surge_multiplier: 1.0,
                }).expect("valid request");
                prop_assert!(out.is_empty());
            }
            let out = m.advance(1_000);
            let mut served = 0;
            let mut total = 0.0;
            for o in &out {
                if let MatchOutput::Proposal(p) = o {
                    served += 1;
                    total += p.eta_s;
                }
            }
            let costs: Vec<Option<f64>> = riders
                .iter()
                .flat_map(|(rp, rprod)| {
                    drivers.iter().map(move |(dp, dprod)| {
                        let d = haversine_m(at(*rp), at(*dp));
                        (rprod == dprod && d <= 2_000.0).then(|| d * 1.3 / 8.0)
                    })
                })
                .collect();
            let (best_n, best_total) = brute_force(riders.len(), drivers.len(), &costs);
            prop_assert_eq!(served, best_n);
            prop_assert!((total - best_total).abs() < 1e-6, "{} vs {}", total, best_total);
        }
    }
}
