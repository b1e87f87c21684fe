//! A taxi's pings: where it is and what it does at each of its ping times, from its trips.
//!
//! The rules (also in `docs/replay.md`), for a trip with pickup time `P`, acceptance `A`,
//! boarding `S` and drop-off `E` (see [`Leg`]), at a ping time `t`:
//!
//! - `P <= t < A`: AVAILABLE, standing at the pickup (the offer is pending);
//! - `A <= t < S`: DISPATCHED, standing at the pickup;
//! - `S <= t < E`: ON_TRIP, moving from the pickup (at `S`) to the drop-off (at `E`);
//! - after `E`, if the next trip's pickup is at most `max_idle_gap_ms` later: AVAILABLE,
//!   moving from the drop-off (at `E`) to the next pickup (at its `P`);
//! - otherwise (a longer gap, or no next trip): AVAILABLE standing at the drop-off until
//!   `E + session_edge_ms`, then one OFFLINE ping there, then silence until
//!   `session_edge_ms` before the next pickup, from which the taxi is AVAILABLE standing at
//!   that pickup. The same lead-in precedes a taxi's first trip.
//! - A trip that starts before the previous one ended cuts it short: the latest trip to
//!   have started is the one the taxi follows.
//!
//! "Moving" is linear in latitude and longitude over time, reporting the straight-line speed
//! and the initial bearing. When either end of a leg is a position the routers would reject
//! ((0, 0), out of range, not finite), the taxi does not move along that leg: every ping of it
//! reports the leg's starting point as recorded, so pings at a bad pickup or drop-off carry
//! exactly the bad value. Standing pings report speed 0 and no heading.

use std::collections::VecDeque;

use surgeflow_domain::geo::{LatLon, haversine_m};
use surgeflow_schema::DriverStatus;

use crate::dirty::routable;
use crate::record::Point;

/// A trip as the taxi's pings see it (file time, UTC ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Leg {
    /// Pickup time: the request.
    pub p: i64,
    /// Offer accepted (and the taxi at the pickup).
    pub a: i64,
    /// Rider on board.
    pub s: i64,
    /// Drop-off (never before `p`).
    pub e: i64,
    pub pickup: Point,
    pub dropoff: Point,
    /// The row's order in the file, to order trips with the same pickup time.
    pub seq: u64,
    /// Was the row in no dirty class when read?
    pub clean: bool,
}

/// Trips found overlapping while the taxi moved on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Overlaps {
    /// Trips that started before an earlier one of the taxi had ended.
    pub trips: u64,
    /// How many of them were in no other dirty class.
    pub were_clean: u64,
}

/// What the taxi reports at a ping time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fix {
    pub status: DriverStatus,
    pub at: Point,
    pub speed_mps: f64,
    pub heading_deg: Option<f64>,
}

/// The taxi's state at a ping time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum State {
    /// It pings.
    Ping(Fix),
    /// It is offline; it comes back at this time (`None`: no known trip brings it back).
    Offline(Option<i64>),
}

/// The timing parameters of the ping rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub interval_ms: i64,
    pub edge_ms: i64,
    pub max_gap_ms: i64,
}

/// One taxi.
#[derive(Debug)]
pub(crate) struct Driver {
    pub id: String,
    pub phase_ms: i64,
    /// Known trips from the current one on, sorted by (pickup, seq).
    legs: VecDeque<Leg>,
    /// The latest drop-off of the trips already left behind (for overlap detection).
    max_passed_e: i64,
    /// The last ping time, if any.
    pub last_ping: Option<i64>,
    /// The ping time the taxi is scheduled at in the merge, and the generation of that entry.
    pub scheduled: Option<i64>,
    pub generation: u64,
    /// Order of first appearance in the file.
    pub seq: u64,
}

fn standing(status: DriverStatus, at: Point) -> Fix {
    Fix {
        status,
        at,
        speed_mps: 0.0,
        heading_deg: None,
    }
}

/// Initial bearing from `a` to `b`, degrees clockwise from north in [0, 360).
fn bearing_deg(a: Point, b: Point) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlambda = (b.lon - a.lon).to_radians();
    let y = dlambda.sin() * phi2.cos();
    let x = phi1.cos() * phi2.sin() - phi1.sin() * phi2.cos() * dlambda.cos();
    let deg = y.atan2(x).to_degrees().rem_euclid(360.0);
    if deg >= 360.0 { 0.0 } else { deg }
}

/// The fix at `t` on a leg from `from` (at `t0`) to `to` (at `t1`).
pub(crate) fn moving(
    status: DriverStatus,
    from: Point,
    to: Point,
    t0: i64,
    t1: i64,
    t: i64,
) -> Fix {
    if t1 <= t0 || from == to || !routable(from) || !routable(to) {
        return standing(status, from);
    }
    let frac = ((t - t0) as f64 / (t1 - t0) as f64).clamp(0.0, 1.0);
    let at = Point {
        lat: from.lat + frac * (to.lat - from.lat),
        lon: from.lon + frac * (to.lon - from.lon),
    };
    let metres = haversine_m(
        LatLon {
            lat: from.lat,
            lon: from.lon,
        },
        LatLon {
            lat: to.lat,
            lon: to.lon,
        },
    );
    Fix {
        status,
        at,
        speed_mps: metres / ((t1 - t0) as f64 / 1000.0),
        heading_deg: Some(bearing_deg(from, to)),
    }
}

impl Driver {
    pub fn new(id: String, phase_ms: i64, seq: u64) -> Self {
        Driver {
            id,
            phase_ms,
            legs: VecDeque::new(),
            max_passed_e: i64::MIN,
            last_ping: None,
            scheduled: None,
            generation: 0,
            seq,
        }
    }

    /// The first ping time at or after `t`.
    pub fn ceil_ping(&self, t: i64, interval_ms: i64) -> i64 {
        t + (self.phase_ms - t).rem_euclid(interval_ms)
    }

    /// Adds a trip, keeping the legs sorted.
    pub fn insert(&mut self, leg: Leg) {
        let at = self
            .legs
            .partition_point(|l| (l.p, l.seq) <= (leg.p, leg.seq));
        self.legs.insert(at, leg);
    }

    /// Number of known legs (current and future).
    #[cfg(test)]
    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    /// Leaves behind the trips that a later trip has replaced by `t`, returning the
    /// replacing trips that started before an earlier one had ended.
    fn advance(&mut self, t: i64) -> Overlaps {
        let mut overlaps = Overlaps::default();
        while self.legs.len() >= 2 && self.legs[1].p <= t {
            if let Some(done) = self.legs.pop_front() {
                self.max_passed_e = self.max_passed_e.max(done.e);
            }
            if self.legs[0].p < self.max_passed_e {
                overlaps.trips += 1;
                overlaps.were_clean += u64::from(self.legs[0].clean);
            }
        }
        overlaps
    }

    /// The state at ping time `t`, given that every trip that can matter is known (see the
    /// merge), plus the overlapping trips found on the way.
    pub fn state_at(&mut self, t: i64, timing: Timing) -> (State, Overlaps) {
        let overlapping = self.advance(t);
        let first = self.legs.front().copied();
        let (current, next) = match first {
            Some(leg) if leg.p <= t => (Some(leg), self.legs.get(1).copied()),
            other => (None, other),
        };
        let session_start = |next: Option<Leg>| match next {
            Some(n) if t >= n.p - timing.edge_ms => {
                State::Ping(standing(DriverStatus::Available, n.pickup))
            }
            Some(n) => State::Offline(Some(n.p - timing.edge_ms)),
            None => State::Offline(None),
        };
        let state = match current {
            None => session_start(next),
            Some(c) if t < c.a => State::Ping(standing(DriverStatus::Available, c.pickup)),
            Some(c) if t < c.s => State::Ping(standing(DriverStatus::Dispatched, c.pickup)),
            Some(c) if t < c.e => State::Ping(moving(
                DriverStatus::OnTrip,
                c.pickup,
                c.dropoff,
                c.s,
                c.e,
                t,
            )),
            Some(c) => match next {
                Some(n) if n.p - c.e <= timing.max_gap_ms => State::Ping(moving(
                    DriverStatus::Available,
                    c.dropoff,
                    n.pickup,
                    c.e,
                    n.p,
                    t,
                )),
                _ if t < c.e + timing.edge_ms => {
                    State::Ping(standing(DriverStatus::Available, c.dropoff))
                }
                _ if t < c.e + timing.edge_ms + timing.interval_ms => {
                    State::Ping(standing(DriverStatus::Offline, c.dropoff))
                }
                _ => session_start(next),
            },
        };
        (state, overlapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        interval_ms: 4_000,
        edge_ms: 120_000,
        max_gap_ms: 3_600_000,
    };
    const A: Point = Point {
        lat: 40.75,
        lon: -73.99,
    };
    const B: Point = Point {
        lat: 40.77,
        lon: -73.95,
    };
    const C: Point = Point {
        lat: 40.70,
        lon: -74.00,
    };
    const NULL: Point = Point { lat: 0.0, lon: 0.0 };

    fn leg(p: i64, e: i64, pickup: Point, dropoff: Point, seq: u64) -> Leg {
        Leg {
            p,
            a: (p + 5_000).min(e),
            s: (p + 20_000).min(e),
            e,
            pickup,
            dropoff,
            seq,
            clean: true,
        }
    }

    fn fix(d: &mut Driver, t: i64) -> Fix {
        match d.state_at(t, TIMING).0 {
            State::Ping(f) => f,
            State::Offline(r) => panic!("offline at {t} (back at {r:?})"),
        }
    }

    #[test]
    fn follows_a_shift_of_two_trips() {
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(600_000, 1_200_000, A, B, 1));
        d.insert(leg(1_500_000, 1_800_000, C, A, 2));
        // Before the lead-in: offline, back 2 min before the first pickup.
        assert_eq!(d.state_at(0, TIMING).0, State::Offline(Some(480_000)));
        let f = fix(&mut d, 480_000);
        assert_eq!(
            (f.status, f.at, f.speed_mps, f.heading_deg),
            (DriverStatus::Available, A, 0.0, None)
        );
        assert_eq!(fix(&mut d, 600_000).status, DriverStatus::Available);
        assert_eq!(fix(&mut d, 605_000).status, DriverStatus::Dispatched);
        assert_eq!(fix(&mut d, 619_999).at, A);
        // Half-way through the ride (boarding at 620 000, drop-off at 1 200 000).
        let f = fix(&mut d, 910_000);
        assert_eq!(f.status, DriverStatus::OnTrip);
        assert!(
            (f.at.lat - 40.76).abs() < 1e-12 && (f.at.lon + 73.97).abs() < 1e-12,
            "{f:?}"
        );
        assert!(f.speed_mps > 5.0 && f.speed_mps < 10.0, "{f:?}");
        assert!(
            f.heading_deg.is_some_and(|h| (0.0..90.0).contains(&h)),
            "north-east"
        );
        // Between the trips: available, moving from B (at 1 200 000) to C (at 1 500 000).
        let f = fix(&mut d, 1_200_000);
        assert_eq!((f.status, f.at), (DriverStatus::Available, B));
        let f = fix(&mut d, 1_350_000);
        assert_eq!(f.status, DriverStatus::Available);
        assert!((f.at.lat - 40.735).abs() < 1e-12, "{f:?}");
        // After the last drop-off: 2 min standing, one OFFLINE ping, then silence.
        assert_eq!(fix(&mut d, 1_800_000).at, A);
        assert_eq!(fix(&mut d, 1_919_999).status, DriverStatus::Available);
        assert_eq!(fix(&mut d, 1_920_000).status, DriverStatus::Offline);
        assert_eq!(fix(&mut d, 1_923_999).status, DriverStatus::Offline);
        assert_eq!(d.state_at(1_924_000, TIMING).0, State::Offline(None));
    }

    #[test]
    fn a_long_gap_ends_the_shift() {
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(0, 600_000, A, B, 1));
        d.insert(leg(600_000 + 3_600_001, 5_000_000, C, A, 2));
        assert_eq!(fix(&mut d, 700_000).at, B, "standing at the drop-off");
        assert_eq!(fix(&mut d, 721_000).status, DriverStatus::Offline);
        assert_eq!(
            d.state_at(800_000, TIMING).0,
            State::Offline(Some(4_200_001 - 120_000))
        );
        let f = fix(&mut d, 4_100_000);
        assert_eq!((f.status, f.at), (DriverStatus::Available, C));
        // Exactly the limit is still cruising.
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(0, 600_000, A, B, 1));
        d.insert(leg(4_200_000, 5_000_000, C, A, 2));
        assert_eq!(fix(&mut d, 2_400_000).status, DriverStatus::Available);
        assert_ne!(fix(&mut d, 2_400_000).at, B);
    }

    #[test]
    fn bad_positions_are_reported_as_recorded_without_moving() {
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(0, 600_000, NULL, B, 1));
        d.insert(leg(900_000, 1_200_000, A, NULL, 2));
        for t in [-120_000, 0, 10_000, 300_000, 599_999] {
            assert_eq!(fix(&mut d, t).at, NULL, "{t}");
        }
        assert_eq!(fix(&mut d, 600_000).at, B, "the drop-off is good");
        assert_ne!(fix(&mut d, 700_000).at, B, "and the taxi moves on from it");
        assert_eq!(
            fix(&mut d, 1_000_000).at,
            A,
            "towards a bad drop-off: stays at the pickup"
        );
        assert_eq!(fix(&mut d, 1_000_000).status, DriverStatus::OnTrip);
        for t in [1_200_000, 1_300_000, 1_320_000] {
            assert_eq!(fix(&mut d, t).at, NULL, "{t}");
        }
    }

    #[test]
    fn an_overlapping_trip_cuts_the_previous_one_short() {
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(0, 600_000, A, B, 1));
        d.insert(leg(300_000, 900_000, C, A, 2));
        assert_eq!(fix(&mut d, 299_999).status, DriverStatus::OnTrip);
        let (state, overlapping) = d.state_at(300_000, TIMING);
        assert_eq!(
            overlapping,
            Overlaps {
                trips: 1,
                were_clean: 1
            }
        );
        assert_eq!(state, State::Ping(standing(DriverStatus::Available, C)));
        assert_eq!(d.legs(), 1);
    }

    #[test]
    fn a_zero_length_trip_has_no_on_trip_ping() {
        let mut d = Driver::new("taxi".into(), 0, 0);
        d.insert(leg(60_000, 60_000, A, B, 1));
        assert_eq!(fix(&mut d, 59_999).at, A);
        let f = fix(&mut d, 60_000);
        assert_eq!((f.status, f.at), (DriverStatus::Available, B));
    }

    #[test]
    fn ping_times_follow_the_phase() {
        let d = Driver::new("taxi".into(), 1_234, 0);
        assert_eq!(d.ceil_ping(0, 4_000), 1_234);
        assert_eq!(d.ceil_ping(1_234, 4_000), 1_234);
        assert_eq!(d.ceil_ping(1_235, 4_000), 5_234);
        assert_eq!(d.ceil_ping(-5_000, 4_000), -2_766);
    }

    #[test]
    fn bearings() {
        let p = |lat, lon| Point { lat, lon };
        assert!((bearing_deg(p(0.0, 0.0), p(1.0, 0.0)) - 0.0).abs() < 1e-9);
        assert!((bearing_deg(p(0.0, 0.0), p(0.0, 1.0)) - 90.0).abs() < 1e-9);
        assert!((bearing_deg(p(0.0, 0.0), p(-1.0, 0.0)) - 180.0).abs() < 1e-9);
        assert!((bearing_deg(p(0.0, 0.0), p(0.0, -1.0)) - 270.0).abs() < 1e-9);
    }
}
