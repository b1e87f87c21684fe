//! The per-trip offer state machine: every event order for one trip against a reference
//! model of the documented transitions, and invariants over random multi-trip histories.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon};
use surgeflow_domain::matching::{
    DriverPing, DriverStatus, Handled, MAX_DURATION_MS, MatchOutput, Matcher, MatcherConfig,
    TripRequest, TripStatus, UnfilledReason,
};

const PICKUP: LatLon = LatLon {
    lat: 40.7128,
    lon: -74.006,
};
const TIMEOUT: i64 = 15_000;
const DEADLINE: i64 = 120_000;
const DRIVERS: [&str; 3] = ["d0", "d1", "d2"];

fn north_of_pickup(metres: f64) -> LatLon {
    LatLon {
        lat: PICKUP.lat + (metres / EARTH_RADIUS_M).to_degrees(),
        lon: PICKUP.lon,
    }
}

fn request(trip: &str, t: i64) -> TripRequest<u8> {
    TripRequest {
        trip_id: trip.to_owned(),
        rider_id: "rider".to_owned(),
        product: 0,
        pickup: PICKUP,
        event_time: t,
        surge_multiplier: 1.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Every event order for one trip.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sym {
    /// The request (a repeat is a duplicate).
    Req,
    /// Acceptance by the driver holding the offer (by d0 if none does).
    AccCur,
    /// Acceptance by the last driver who declined or let an offer lapse (or by a stranger).
    AccOld,
    /// Decline by the driver holding the offer (by d0 if none does).
    DecCur,
    /// The clock reaches the open offer's expiry.
    Timeout,
    /// Cancellation.
    Cancel,
    /// The clock reaches the request's deadline.
    Deadline,
}

const SYMS: [Sym; 7] = [
    Sym::Req,
    Sym::AccCur,
    Sym::AccOld,
    Sym::DecCur,
    Sym::Timeout,
    Sym::Cancel,
    Sym::Deadline,
];

/// An output reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Proposal {
        driver: usize,
        attempt: u32,
    },
    Unfilled {
        reason: UnfilledReason,
        attempts: u32,
    },
}

#[derive(Debug, Clone)]
enum State {
    Unseen,
    Open {
        attempts: u32,
        current: usize,
        excluded: Vec<usize>,
        expires: i64,
    },
    Done(TripStatus),
}

/// The documented transitions, written independently of the implementation.
#[derive(Debug, Clone)]
struct Model {
    drivers: usize,
    max_attempts: u32,
    state: State,
    requested_at: Option<i64>,
    /// When the trip id is forgotten: twice the deadline after the request (or cancellation).
    forget_at: Option<i64>,
    accepted: Option<usize>,
    last_released: Option<usize>,
}

impl Model {
    fn deadline(&self) -> i64 {
        self.requested_at.map_or(i64::MAX, |t| t + DEADLINE)
    }

    /// Decision for an open trip without an offer: deadline, then attempts, then the nearest
    /// driver not excluded (drivers are all available and ranked by distance, d0 nearest).
    fn decide(&mut self, attempts: u32, excluded: Vec<usize>, at: i64) -> Vec<Expect> {
        let unfilled = |reason| Expect::Unfilled { reason, attempts };
        if at >= self.deadline() {
            self.state = State::Done(TripStatus::Unfilled(UnfilledReason::Deadline));
            return vec![unfilled(UnfilledReason::Deadline)];
        }
        if attempts >= self.max_attempts {
            self.state = State::Done(TripStatus::Unfilled(UnfilledReason::MaxAttempts));
            return vec![unfilled(UnfilledReason::MaxAttempts)];
        }
        match (0..self.drivers).find(|d| !excluded.contains(d)) {
            Some(driver) => {
                self.state = State::Open {
                    attempts: attempts + 1,
                    current: driver,
                    excluded,
                    expires: at + TIMEOUT,
                };
                vec![Expect::Proposal {
                    driver,
                    attempt: attempts + 1,
                }]
            }
            None => {
                self.state = State::Done(TripStatus::Unfilled(UnfilledReason::NoDriverInRadius));
                vec![unfilled(UnfilledReason::NoDriverInRadius)]
            }
        }
    }

    fn release_and_decide(&mut self, at: i64) -> Vec<Expect> {
        let State::Open {
            attempts,
            current,
            mut excluded,
            ..
        } = self.state.clone()
        else {
            return vec![];
        };
        excluded.push(current);
        self.last_released = Some(current);
        self.decide(attempts, excluded, at)
    }

    fn advance(&mut self, now: i64) -> Vec<Expect> {
        let out = match self.state.clone() {
            State::Open { expires, .. } if expires <= now => self.release_and_decide(now),
            State::Open { attempts, .. } if self.deadline() <= now => {
                self.state = State::Done(TripStatus::Unfilled(UnfilledReason::Deadline));
                vec![Expect::Unfilled {
                    reason: UnfilledReason::Deadline,
                    attempts,
                }]
            }
            _ => vec![],
        };
        if self.forget_at.is_some_and(|t| t <= now) {
            self.state = State::Unseen;
            self.requested_at = None;
            self.forget_at = None;
        }
        out
    }

    fn status(&self) -> Option<TripStatus> {
        match &self.state {
            State::Unseen => None,
            State::Open { attempts, .. } => Some(TripStatus::Open {
                attempts: *attempts,
                offered: true,
            }),
            State::Done(status) => Some(*status),
        }
    }

    fn current(&self) -> Option<usize> {
        match &self.state {
            State::Open { current, .. } => Some(*current),
            _ => None,
        }
    }
}

fn reduce(out: Vec<MatchOutput<u8>>) -> Vec<Expect> {
    out.into_iter()
        .map(|o| match o {
            MatchOutput::Proposal(p) => Expect::Proposal {
                driver: DRIVERS
                    .iter()
                    .position(|d| *d == p.driver_id)
                    .expect("a known driver"),
                attempt: p.attempt,
            },
            MatchOutput::Unfilled(u) => Expect::Unfilled {
                reason: u.reason,
                attempts: u.attempts,
            },
        })
        .collect()
}

fn run_sequence(seq: &[Sym], drivers: usize, max_attempts: u32) {
    let config = MatcherConfig {
        max_attempts,
        driver_ttl_ms: MAX_DURATION_MS,
        ..MatcherConfig::default()
    };
    let mut m = Matcher::new(config).expect("valid config");
    for (i, id) in DRIVERS.iter().take(drivers).enumerate() {
        m.on_driver_ping(&DriverPing {
            driver_id: id,
            position: north_of_pickup(100.0 * (i as f64 + 1.0)),
            status: DriverStatus::Available,
            product: 0,
            event_time: 0,
        })
        .expect("valid ping");
    }
    let mut model = Model {
        drivers,
        max_attempts,
        state: State::Unseen,
        requested_at: None,
        forget_at: None,
        accepted: None,
        last_released: None,
    };
    let mut now = 1_000;
    for (step, &sym) in seq.iter().enumerate() {
        let ctx = || format!("{seq:?} with {drivers} drivers, max {max_attempts}, step {step}");
        now += 100;
        assert_eq!(reduce(m.advance(now)), model.advance(now), "{}", ctx());
        let (got, expected) = match sym {
            Sym::Req => {
                let expected = if matches!(model.state, State::Unseen) {
                    model.requested_at = Some(now);
                    model.forget_at = Some(now + 2 * DEADLINE);
                    model.decide(0, vec![], now)
                } else {
                    vec![]
                };
                (
                    reduce(m.on_request(request("t", now)).expect("valid")),
                    expected,
                )
            }
            Sym::AccCur | Sym::DecCur => {
                let driver = model.current().unwrap_or(0);
                let holds = model.current() == Some(driver);
                if sym == Sym::AccCur {
                    let handled = m.on_accepted("t", DRIVERS[driver], now);
                    assert_eq!(handled == Handled::Applied, holds, "{}", ctx());
                    if holds {
                        model.state = State::Done(TripStatus::Accepted);
                        model.accepted = Some(driver);
                    }
                    (vec![], vec![])
                } else {
                    let expected = if holds {
                        model.release_and_decide(now)
                    } else {
                        vec![]
                    };
                    (reduce(m.on_declined("t", DRIVERS[driver], now)), expected)
                }
            }
            Sym::AccOld => {
                let driver = model.last_released.map_or("stranger", |d| DRIVERS[d]);
                assert_eq!(
                    m.on_accepted("t", driver, now),
                    Handled::Ignored,
                    "{}",
                    ctx()
                );
                (vec![], vec![])
            }
            Sym::Timeout | Sym::Deadline => {
                let target = match (sym, &model.state) {
                    (Sym::Timeout, State::Open { expires, .. }) => *expires,
                    (Sym::Timeout, _) => now + TIMEOUT,
                    _ => model.requested_at.map_or(now + DEADLINE, |t| t + DEADLINE),
                };
                now = now.max(target);
                (reduce(m.advance(now)), model.advance(now))
            }
            Sym::Cancel => {
                let applies = matches!(model.state, State::Unseen | State::Open { .. });
                if matches!(model.state, State::Unseen) {
                    model.forget_at = Some(now + 2 * DEADLINE);
                }
                if applies {
                    model.state = State::Done(TripStatus::Cancelled);
                }
                let handled = m.on_cancelled("t", now);
                assert_eq!(handled == Handled::Applied, applies, "{}", ctx());
                (vec![], vec![])
            }
        };
        assert_eq!(got, expected, "{}", ctx());
        assert_eq!(m.trip_status("t"), model.status(), "{}", ctx());
        assert_eq!(
            m.open_reservations(),
            usize::from(model.current().is_some())
        );
    }
    // A second trip now gets the nearest driver that is neither busy with an accepted trip
    // nor reserved by an open offer; a driver that only declined or lapsed is free again.
    now += 100;
    m.advance(now);
    let taken = [model.accepted, model.current()];
    let expected = match (0..drivers).find(|d| !taken.contains(&Some(*d))) {
        Some(driver) => vec![Expect::Proposal { driver, attempt: 1 }],
        None => vec![Expect::Unfilled {
            reason: UnfilledReason::NoDriverInRadius,
            attempts: 0,
        }],
    };
    assert_eq!(
        reduce(m.on_request(request("t2", now)).expect("valid")),
        expected,
        "second trip after {seq:?} with {drivers} drivers, max {max_attempts}"
    );
}

#[test]
fn every_event_order_for_one_trip_ends_in_the_documented_state() {
    let mut sequences: Vec<Vec<Sym>> = vec![vec![]];
    let mut frontier = sequences.clone();
    for _ in 0..5 {
        frontier = frontier
            .iter()
            .flat_map(|s| {
                SYMS.iter().map(move |&sym| {
                    let mut next = s.clone();
                    next.push(sym);
                    next
                })
            })
            .collect();
        sequences.extend(frontier.iter().cloned());
    }
    assert_eq!(sequences.len(), 1 + 7 + 49 + 343 + 2_401 + 16_807);
    for seq in &sequences {
        // 3 drivers, 3 attempts: MaxAttempts after three refusals; 2 drivers, 3 attempts:
        // the candidates run out first; 3 drivers, 2 attempts: MaxAttempts earlier.
        for (drivers, max_attempts) in [(3, 3), (2, 3), (3, 2)] {
            run_sequence(seq, drivers, max_attempts);
        }
    }
}

#[test]
fn the_documented_happy_and_unhappy_paths() {
    use Sym::*;
    // Spot checks of what the model encodes, spelled out.
    run_sequence(&[Req, DecCur, Timeout, AccCur, AccOld, Req, Cancel], 3, 3);
    run_sequence(&[Req, DecCur, DecCur, DecCur, AccCur], 3, 3);
    run_sequence(&[Cancel, Req, AccCur], 3, 3);
    run_sequence(&[Req, Deadline, AccCur, DecCur], 3, 3);
}

// ---------------------------------------------------------------------------------------------
// Random multi-trip histories.

#[derive(Debug, Clone)]
enum Op {
    Ping {
        driver: usize,
        north_m: f64,
        east_m: f64,
        status: DriverStatus,
    },
    Request(usize),
    AcceptCurrent(usize),
    DeclineCurrent(usize),
    Accept(usize, usize),
    Decline(usize, usize),
    Cancel(usize),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        5 => Just(DriverStatus::Available),
        1 => Just(DriverStatus::OnTrip),
        1 => Just(DriverStatus::Offline),
    ];
    prop_oneof![
        4 => (0usize..6, -2_500.0f64..2_500.0, -2_500.0f64..2_500.0, status).prop_map(
            |(driver, north_m, east_m, status)| Op::Ping { driver, north_m, east_m, status }
        ),
        3 => (0usize..5).prop_map(Op::Request),
        2 => (0usize..5).prop_map(Op::AcceptCurrent),
        2 => (0usize..5).prop_map(Op::DeclineCurrent),
        1 => (0usize..5, 0usize..6).prop_map(|(t, d)| Op::Accept(t, d)),
        1 => (0usize..5, 0usize..6).prop_map(|(t, d)| Op::Decline(t, d)),
        1 => (0usize..5).prop_map(Op::Cancel),
        3 => (0i64..25_000).prop_map(Op::Advance),
    ]
}

fn offset(north_m: f64, east_m: f64) -> LatLon {
    LatLon {
        lat: PICKUP.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
        lon: PICKUP.lon + (east_m / (EARTH_RADIUS_M * PICKUP.lat.to_radians().cos())).to_degrees(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..120),
        max_attempts in 1u32..4,
        batch in prop_oneof![Just(0u64), Just(5_000u64)],
    ) {
        let config = MatcherConfig {
            max_attempts,
            batch_window_ms: batch,
            ..MatcherConfig::default()
        };
        let mut m = Matcher::new(config).expect("valid config");
        let drivers: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        let trips: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        let mut now = 0i64;
        // Per started trip: proposals seen, and how it ended (if it did).
        let mut proposals: BTreeMap<String, u32> = BTreeMap::new();
        let mut ended: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        let mut started: BTreeSet<String> = BTreeSet::new();

        let record = |out: Vec<MatchOutput<u8>>,
                          proposals: &mut BTreeMap<String, u32>,
                          ended: &mut BTreeMap<String, Vec<&'static str>>|
         -> Result<(), TestCaseError> {
            for o in out {
                let trip = o.trip_id().to_owned();
                prop_assert!(
                    ended.get(&trip).is_none_or(Vec::is_empty),
                    "output after the end of {}: {:?}", trip, o
                );
                match o {
                    MatchOutput::Proposal(p) => {
                        let n = proposals.entry(trip).or_default();
                        *n += 1;
                        prop_assert_eq!(p.attempt, *n);
                        prop_assert!(p.attempt <= max_attempts);
                        prop_assert_eq!(p.proposal_id, format!("{}#{}", p.trip_id, p.attempt));
                    }
                    MatchOutput::Unfilled(_) => ended.entry(trip).or_default().push("unfilled"),
                }
            }
            Ok(())
        };

        for op in &ops {
            let out = m.advance(now);
            record(out, &mut proposals, &mut ended)?;
            match *op {
                Op::Ping { driver, north_m, east_m, status } => {
                    m.on_driver_ping(&DriverPing {
                        driver_id: &drivers[driver],
                        position: offset(north_m, east_m),
                        status,
                        product: 0,
                        event_time: now,
                    }).expect("valid ping");
                }
                Op::Request(t) => {
                    let before = m.counters().requests;
                    let out = m.on_request(request(&trips[t], now)).expect("valid");
                    if m.counters().requests > before {
                        // A trip id may start again only once it was forgotten, which is
                        // after it ended.
                        let trip = trips[t].clone();
                        if !started.insert(trip.clone()) {
                            let endings = ended.remove(&trip).unwrap_or_default();
                            prop_assert_eq!(endings.len(), 1, "{} restarted: {:?}", trip, endings);
                            proposals.remove(&trip);
                        }
                    }
                    record(out, &mut proposals, &mut ended)?;
                }
                Op::AcceptCurrent(t) | Op::Accept(t, _) => {
                    let current = m.open_proposals().iter()
                        .find(|p| p.trip_id == trips[t]).map(|p| p.driver_id.to_owned());
                    let driver = match *op {
                        Op::Accept(_, d) => drivers[d].clone(),
                        _ => current.clone().unwrap_or_else(|| drivers[0].clone()),
                    };
                    let handled = m.on_accepted(&trips[t], &driver, now);
                    prop_assert_eq!(handled == Handled::Applied, current == Some(driver));
                    if handled == Handled::Applied {
                        ended.entry(trips[t].clone()).or_default().push("accepted");
                    }
                }
                Op::DeclineCurrent(t) | Op::Decline(t, _) => {
                    let current = m.open_proposals().iter()
                        .find(|p| p.trip_id == trips[t]).map(|p| p.driver_id.to_owned());
                    let driver = match *op {
                        Op::Decline(_, d) => drivers[d].clone(),
                        _ => current.clone().unwrap_or_else(|| drivers[0].clone()),
                    };
                    let before = m.counters().declined;
                    let out = m.on_declined(&trips[t], &driver, now);
                    prop_assert_eq!(m.counters().declined > before, current == Some(driver));
                    record(out, &mut proposals, &mut ended)?;
                }
                Op::Cancel(t) => {
                    let status = m.trip_status(&trips[t]);
                    let was_open = matches!(status, Some(TripStatus::Open { .. }));
                    let handled = m.on_cancelled(&trips[t], now);
                    if was_open {
                        prop_assert_eq!(handled, Handled::Applied);
                        ended.entry(trips[t].clone()).or_default().push("cancelled");
                    }
                }
                Op::Advance(dt) => now += dt,
            }
            // No driver in two open offers, and the reservation table agrees with the offers.
            let open = m.open_proposals();
            let distinct: BTreeSet<&str> = open.iter().map(|p| p.driver_id).collect();
            prop_assert_eq!(distinct.len(), open.len(), "a driver in two offers: {:?}", open);
            prop_assert_eq!(m.open_reservations(), open.len());
            let open_trips = started.iter()
                .filter(|t| matches!(m.trip_status(t), Some(TripStatus::Open { .. })))
                .count();
            prop_assert_eq!(m.open_requests(), open_trips);
        }
        // Past every deadline, every started trip has ended exactly once.
        let out = m.advance(now + DEADLINE);
        record(out, &mut proposals, &mut ended)?;
        prop_assert_eq!(m.open_requests(), 0);
        prop_assert_eq!(m.open_reservations(), 0);
        for trip in &started {
            let endings = ended.get(trip).cloned().unwrap_or_default();
            prop_assert_eq!(endings.len(), 1, "{} ended {:?}", trip, endings);
        }
        for trip in ended.keys() {
            prop_assert!(started.contains(trip), "{} ended without starting", trip);
        }
    }
}
