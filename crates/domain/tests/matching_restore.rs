//! Restore: a matcher rebuilt mid-stream (replay from the horizon with the published outputs
//! seeded) must continue exactly as the one that never stopped.

use proptest::prelude::*;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon};
use surgeflow_domain::matching::{
    DriverPing, DriverStatus, MatchError, MatchOutput, Matcher, MatcherConfig, Proposal,
    TripRequest, TripStatus, Unfilled, UnfilledReason, replay_horizon_ms,
};

const CENTRE: LatLon = LatLon {
    lat: 51.5074,
    lon: -0.1278,
};

fn at(north_m: f64, east_m: f64) -> LatLon {
    LatLon {
        lat: CENTRE.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
        lon: CENTRE.lon + (east_m / (EARTH_RADIUS_M * CENTRE.lat.to_radians().cos())).to_degrees(),
    }
}

/// A concrete input record.
#[derive(Debug, Clone)]
enum Event {
    Ping {
        driver: String,
        position: LatLon,
        status: DriverStatus,
        product: u8,
    },
    Request(TripRequest<u8>),
    Accept {
        trip: String,
        driver: String,
    },
    Decline {
        trip: String,
        driver: String,
    },
    Cancel {
        trip: String,
    },
}

/// What the operator does per record: advance the clock to the record's time, then apply it.
#[derive(Debug, Clone)]
struct Step {
    time: i64,
    event: Option<Event>,
}

fn apply(m: &mut Matcher<u8>, step: &Step) -> Vec<MatchOutput<u8>> {
    let mut out = m.advance(step.time);
    out.extend(apply_event(m, step));
    out
}

/// Applies the step's record without advancing the clock to its time.
fn apply_event(m: &mut Matcher<u8>, step: &Step) -> Vec<MatchOutput<u8>> {
    let mut out = Vec::new();
    match &step.event {
        None => {}
        Some(Event::Ping {
            driver,
            position,
            status,
            product,
        }) => {
            m.on_driver_ping(&DriverPing {
                driver_id: driver,
                position: *position,
                status: *status,
                product: *product,
                event_time: step.time,
            })
            .expect("valid ping");
        }
        Some(Event::Request(request)) => out.extend(m.on_request(request.clone()).expect("valid")),
        Some(Event::Accept { trip, driver }) => {
            m.on_accepted(trip, driver, step.time);
        }
        Some(Event::Decline { trip, driver }) => out.extend(m.on_declined(trip, driver, step.time)),
        Some(Event::Cancel { trip }) => {
            m.on_cancelled(trip, step.time);
        }
    }
    out
}

/// An input before it is resolved against the running matcher (answers go to whoever holds
/// the offer at that moment, which only a run can tell).
#[derive(Debug, Clone)]
enum Op {
    Ping(usize, f64, f64, DriverStatus, u8),
    Request(usize, f64, f64, u8),
    /// The same request record again (same event time), if the trip was requested.
    Redeliver(usize),
    AcceptCurrent(usize),
    DeclineCurrent(usize),
    AcceptBy(usize, usize),
    Cancel(usize),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        6 => Just(DriverStatus::Available),
        1 => Just(DriverStatus::OnTrip),
        1 => Just(DriverStatus::Offline),
    ];
    let metres = || -2_500.0f64..2_500.0;
    prop_oneof![
        6 => (0usize..8, metres(), metres(), status, 0u8..2)
            .prop_map(|(d, n, e, s, p)| Op::Ping(d, n, e, s, p)),
        3 => (0usize..12, metres(), metres(), 0u8..2)
            .prop_map(|(t, n, e, p)| Op::Request(t, n, e, p)),
        1 => (0usize..12).prop_map(Op::Redeliver),
        2 => (0usize..12).prop_map(Op::AcceptCurrent),
        2 => (0usize..12).prop_map(Op::DeclineCurrent),
        1 => (0usize..12, 0usize..8).prop_map(|(t, d)| Op::AcceptBy(t, d)),
        1 => (0usize..12).prop_map(Op::Cancel),
        2 => Just(Op::Tick),
    ]
}

fn config(batch_window_ms: u64) -> MatcherConfig {
    MatcherConfig {
        offer_timeout_ms: 10_000,
        request_deadline_ms: 60_000,
        driver_ttl_ms: 30_000,
        batch_window_ms,
        ..MatcherConfig::default()
    }
}

/// Runs the whole history in one pass, resolving answers; returns the concrete steps and the
/// outputs of each.
fn one_pass(ops: &[(i64, Op)], config: &MatcherConfig) -> (Vec<Step>, Vec<Vec<MatchOutput<u8>>>) {
    let mut m = Matcher::new(config.clone()).expect("valid config");
    let mut requests: Vec<Option<TripRequest<u8>>> = vec![None; 12];
    let mut generation = [0u32; 12];
    let mut time = 1_700_000_000_000i64;
    let mut steps = Vec::new();
    let mut outputs = Vec::new();
    for (dt, op) in ops {
        time += dt;
        let trip = |t: usize| format!("trip-{t}.{}", generation[t]);
        let driver = |d: usize| format!("driver-{d}");
        let current = |m: &Matcher<u8>, t: usize| {
            m.open_proposals()
                .iter()
                .find(|p| p.trip_id == trip(t))
                .map(|p| p.driver_id.to_owned())
        };
        let event = match *op {
            Op::Ping(d, n, e, status, product) => Some(Event::Ping {
                driver: driver(d),
                position: at(n, e),
                status,
                product,
            }),
            Op::Request(t, n, e, product) => {
                // Trip ids are unique upstream: a new request for slot t is a new trip.
                generation[t] += 1;
                let request = TripRequest {
                    trip_id: format!("trip-{t}.{}", generation[t]),
                    rider_id: format!("rider-{t}"),
                    product,
                    pickup: at(n, e),
                    event_time: time,
                    surge_multiplier: 1.0 + t as f64 / 10.0,
                };
                requests[t] = Some(request.clone());
                Some(Event::Request(request))
            }
            Op::Redeliver(t) => requests[t].clone().map(Event::Request),
            Op::AcceptCurrent(t) => current(&m, t).map(|driver| Event::Accept {
                trip: trip(t),
                driver,
            }),
            Op::DeclineCurrent(t) => current(&m, t).map(|driver| Event::Decline {
                trip: trip(t),
                driver,
            }),
            Op::AcceptBy(t, d) => Some(Event::Accept {
                trip: trip(t),
                driver: driver(d),
            }),
            Op::Cancel(t) => Some(Event::Cancel { trip: trip(t) }),
            Op::Tick => None,
        };
        let step = Step { time, event };
        outputs.push(apply(&mut m, &step));
        steps.push(step);
    }
    (steps, outputs)
}

fn stamp(output: &MatchOutput<u8>) -> i64 {
    match output {
        MatchOutput::Proposal(p) => p.proposed_at,
        MatchOutput::Unfilled(u) => u.decided_at,
    }
}

/// The restored run: seed the outputs published before `cut` from the replay start on,
/// replay from the horizon, end the restore, then continue. Returns the outputs of the steps
/// from `cut` on.
///
/// With `interleave`, the replay also sees the records in another order, as it may when
/// `geo.driver` and `geo.trip` are consumed again: within each 20 s of the replay older than a
/// driver TTL before the cut, the pings come first. The clock still moves as before (it is
/// advanced per record position), so answers and lapses keep their order.
fn restored(
    steps: &[Step],
    outputs: &[Vec<MatchOutput<u8>>],
    cut: usize,
    config: &MatcherConfig,
    interleave: bool,
) -> Result<Vec<Vec<MatchOutput<u8>>>, TestCaseError> {
    // The clock of the lost instance at the cut, and where the replay starts.
    let clock = steps[..cut].last().map_or(i64::MIN, |s| s.time);
    let replay_from = clock.saturating_sub(replay_horizon_ms(config) as i64);
    let start = steps.partition_point(|s| s.time < replay_from).min(cut);

    let mut m = Matcher::new(config.clone()).expect("valid config");
    m.begin_restore();
    for output in outputs[..cut].iter().flatten() {
        if stamp(output) >= replay_from {
            match output.clone() {
                MatchOutput::Proposal(p) => m.seed_proposal(p).expect("restoring"),
                MatchOutput::Unfilled(u) => m.seed_unfilled(u).expect("restoring"),
            }
        }
    }
    let replay = &steps[start..cut];
    if interleave {
        let settled = clock.saturating_sub(config.driver_ttl_ms as i64);
        let mut i = 0;
        while i < replay.len() {
            let window_end = replay[i].time - replay[i].time.rem_euclid(20_000) + 20_000;
            let n = replay[i..]
                .iter()
                .take_while(|s| s.time < window_end.min(settled))
                .count()
                .max(1);
            let (pings, others): (Vec<&Step>, Vec<&Step>) = replay[i..i + n]
                .iter()
                .partition(|s| matches!(s.event, Some(Event::Ping { .. })));
            m.advance(replay[i].time);
            for step in pings {
                apply_event(&mut m, step);
            }
            for step in others {
                apply(&mut m, step);
            }
            i += n;
        }
    } else {
        for step in replay {
            apply(&mut m, step);
        }
    }
    let late = m.end_restore();
    prop_assert!(
        late.is_empty(),
        "an exact replay leaves nothing unpublished: {:?}",
        late
    );
    Ok(steps[cut..]
        .iter()
        .map(|step| apply(&mut m, step))
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn restore_mid_stream_equals_one_pass(
        ops in prop::collection::vec((0i64..8_000, op()), 1..300),
        cut_fraction in 0.0f64..1.0,
        batch in prop_oneof![Just(0u64), Just(5_000u64)],
    ) {
        let config = config(batch);
        let (steps, outputs) = one_pass(&ops, &config);
        let cut = ((steps.len() as f64) * cut_fraction) as usize;
        let after = restored(&steps, &outputs, cut, &config, false)?;
        for (i, (got, want)) in after.iter().zip(&outputs[cut..]).enumerate() {
            prop_assert_eq!(got, want, "step {} after the cut at {}", cut + i, cut);
        }
    }

    /// The same with the replay seeing pings and trip events interleaved differently: the
    /// replay alone would pick other drivers; the seeds keep it on the published offers.
    #[test]
    fn restore_with_another_interleaving_equals_one_pass(
        ops in prop::collection::vec((0i64..8_000, op()), 1..300),
        cut_fraction in 0.0f64..1.0,
        batch in prop_oneof![Just(0u64), Just(5_000u64)],
    ) {
        let config = config(batch);
        let (steps, outputs) = one_pass(&ops, &config);
        let cut = ((steps.len() as f64) * cut_fraction) as usize;
        let after = restored(&steps, &outputs, cut, &config, true)?;
        for (i, (got, want)) in after.iter().zip(&outputs[cut..]).enumerate() {
            prop_assert_eq!(got, want, "step {} after the cut at {}", cut + i, cut);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replays that do not reproduce the published history.

fn ping(m: &mut Matcher<u8>, driver: &str, north_m: f64, t: i64) {
    m.on_driver_ping(&DriverPing {
        driver_id: driver,
        position: at(north_m, 0.0),
        status: DriverStatus::Available,
        product: 0,
        event_time: t,
    })
    .expect("valid ping");
}

fn request(trip: &str, t: i64) -> TripRequest<u8> {
    TripRequest {
        trip_id: trip.to_owned(),
        rider_id: "rider".to_owned(),
        product: 0,
        pickup: CENTRE,
        event_time: t,
        surge_multiplier: 1.0,
    }
}

fn proposals(out: Vec<MatchOutput<u8>>) -> Vec<Proposal<u8>> {
    out.into_iter()
        .filter_map(|o| match o {
            MatchOutput::Proposal(p) => Some(p),
            MatchOutput::Unfilled(_) => None,
        })
        .collect()
}

fn offers(m: &Matcher<u8>) -> Vec<(String, String, u32)> {
    m.open_proposals()
        .iter()
        .map(|p| (p.trip_id.to_owned(), p.driver_id.to_owned(), p.attempt))
        .collect()
}

/// Drivers d1, d2, d3 at 100, 200, 300 m. The lost instance proposed A#1 to d1 at 0, saw it
/// lapse on an idle tick at 10 s (not in the input) and proposed A#2 to d2, then got request
/// B (event time 5 s, processed at 10 s) and proposed d1, free again.
fn published_history() -> (Matcher<u8>, Vec<Proposal<u8>>) {
    let mut m = Matcher::new(config(0)).expect("valid config");
    let mut published = Vec::new();
    m.advance(0);
    for (driver, metres) in [("d1", 100.0), ("d2", 200.0), ("d3", 300.0)] {
        ping(&mut m, driver, metres, 0);
    }
    published.extend(proposals(m.on_request(request("A", 0)).expect("valid")));
    published.extend(proposals(m.advance(10_000)));
    published.extend(proposals(m.on_request(request("B", 5_000)).expect("valid")));
    let ids: Vec<_> = published
        .iter()
        .map(|p| (p.proposal_id.as_str(), p.driver_id.as_str()))
        .collect();
    assert_eq!(ids, [("A#1", "d1"), ("A#2", "d2"), ("B#1", "d1")]);
    (m, published)
}

fn replay_without_the_idle_tick(published: &[Proposal<u8>], include_b: bool) -> Matcher<u8> {
    let mut m = Matcher::new(config(0)).expect("valid config");
    m.begin_restore();
    for p in published {
        m.seed_proposal(p.clone()).expect("restoring");
    }
    m.advance(0);
    for (driver, metres) in [("d1", 100.0), ("d2", 200.0), ("d3", 300.0)] {
        ping(&mut m, driver, metres, 0);
    }
    m.on_request(request("A", 0)).expect("valid");
    if include_b {
        m.advance(5_000);
        m.on_request(request("B", 5_000)).expect("valid");
    }
    m
}

#[test]
fn a_seeded_offer_takes_its_driver_from_a_lagging_replay() {
    let (mut live, published) = published_history();
    let mut m = replay_without_the_idle_tick(&published, true);
    // B's seed needed d1 while the replay still had A#1 on it: A moved on to its own seed.
    assert_eq!(m.counters().restore_conflicts, 1);
    assert!(m.end_restore().is_empty());
    assert_eq!(offers(&m), offers(&live));
    // And both continue alike: d2 declines A, whose third attempt goes to d3.
    let next = proposals(m.on_declined("A", "d2", 12_000));
    assert_eq!(next, proposals(live.on_declined("A", "d2", 12_000)));
    assert_eq!((next[0].attempt, next[0].driver_id.as_str()), (3, "d3"));
}

#[test]
fn seeds_the_replay_did_not_reach_are_applied_at_the_end() {
    let (_, published) = published_history();
    // Without B in the replay nothing forces A past its first attempt during the replay.
    let mut m = replay_without_the_idle_tick(&published, false);
    assert_eq!(offers(&m), [("A".into(), "d1".into(), 1)]);
    assert!(m.end_restore().is_empty());
    // A jumped to its published second offer; d1 stays excluded for it.
    assert_eq!(offers(&m), [("A".into(), "d2".into(), 2)]);
    let next = proposals(m.on_declined("A", "d2", 12_000));
    assert_eq!((next[0].attempt, next[0].driver_id.as_str()), (3, "d3"));
}

#[test]
fn decisions_missing_from_the_published_history_are_made_at_the_end() {
    // The lost instance received d1's decline of A but crashed before publishing A#2.
    let mut m = Matcher::new(config(0)).expect("valid config");
    m.begin_restore();
    let mut live = Matcher::new(config(0)).expect("valid config");
    let a1 = {
        live.advance(0);
        for (driver, metres) in [("d1", 100.0), ("d2", 200.0)] {
            ping(&mut live, driver, metres, 0);
        }
        proposals(live.on_request(request("A", 0)).expect("valid")).remove(0)
    };
    m.seed_proposal(a1).expect("restoring");
    m.advance(0);
    for (driver, metres) in [("d1", 100.0), ("d2", 200.0)] {
        ping(&mut m, driver, metres, 0);
    }
    assert_eq!(
        proposals(m.on_request(request("A", 0)).expect("valid")).len(),
        1
    );
    m.advance(3_000);
    assert!(
        m.on_declined("A", "d1", 3_000).is_empty(),
        "deferred, not decided blind"
    );
    assert_eq!(
        m.trip_status("A"),
        Some(TripStatus::Open {
            attempts: 1,
            offered: false
        })
    );
    let late = proposals(m.end_restore());
    assert_eq!(late.len(), 1);
    assert_eq!(
        (late[0].proposal_id.as_str(), late[0].driver_id.as_str()),
        ("A#2", "d2")
    );
    assert_eq!(late[0].proposed_at, 3_000);
}

#[test]
fn seeded_unfilled_reports_end_trips_and_seeding_needs_a_restore() {
    let mut m = Matcher::new(config(0)).expect("valid config");
    let unfilled = Unfilled {
        trip_id: "A".to_owned(),
        rider_id: "rider".to_owned(),
        product: 0u8,
        pickup: CENTRE,
        attempts: 0,
        reason: UnfilledReason::NoDriverInRadius,
        decided_at: 0,
    };
    assert_eq!(
        m.seed_unfilled(unfilled.clone()),
        Err(MatchError::NotRestoring)
    );
    m.begin_restore();
    m.seed_unfilled(unfilled).expect("restoring");
    m.advance(0);
    // A driver is there in the replay, but the published answer was "no driver": it stands.
    ping(&mut m, "d1", 100.0, 0);
    assert!(matches!(
        m.on_request(request("A", 0)).expect("valid").as_slice(),
        [MatchOutput::Unfilled(u)] if u.reason == UnfilledReason::NoDriverInRadius
    ));
    assert_eq!(m.open_reservations(), 0);
    let bad = Proposal {
        proposal_id: "B#9".to_owned(),
        trip_id: "B".to_owned(),
        rider_id: "rider".to_owned(),
        driver_id: "d1".to_owned(),
        product: 0,
        distance_m: 0.0,
        eta_s: 0.0,
        score: 0.0,
        surge_multiplier: 1.0,
        attempt: 9,
        proposed_at: 0,
        expires_at: 0,
    };
    assert!(matches!(
        m.seed_proposal(bad),
        Err(MatchError::SeedAttempt { attempt: 9, .. })
    ));
    assert!(m.end_restore().is_empty());
    assert!(!m.is_restoring());
}
