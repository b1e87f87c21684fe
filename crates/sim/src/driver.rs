//! Simulated drivers: where they are (a straight-line leg through time) and what they do.

use surgeflow_schema::{DriverStatus, Product};

use crate::city::Point;

/// What a driver is doing, as the simulator needs to know it (finer than [`DriverStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriverState {
    /// Online, free, cruising to a random waypoint.
    Idle,
    /// Idle, but holding an offer it has not answered yet; reserved so that the dispatcher
    /// does not offer it a second trip meanwhile.
    Offered,
    /// Accepted a trip: driving to the pickup, or waiting there for the rider.
    Dispatched,
    /// Carrying a rider to the dropoff.
    OnTrip,
    /// Logged off, parked, not pinging.
    Offline,
}

impl DriverState {
    /// What the driver app reports. An unanswered offer is not visible in pings: the driver is
    /// still available until it accepts.
    pub(crate) fn status(self) -> DriverStatus {
        match self {
            DriverState::Idle | DriverState::Offered => DriverStatus::Available,
            DriverState::Dispatched => DriverStatus::Dispatched,
            DriverState::OnTrip => DriverStatus::OnTrip,
            DriverState::Offline => DriverStatus::Offline,
        }
    }

    /// Whether the driver wanders between random waypoints (rather than heading to a pickup,
    /// heading to a dropoff, or standing still).
    pub(crate) fn cruises(self) -> bool {
        matches!(self, DriverState::Idle | DriverState::Offered)
    }
}

/// A straight drive at constant speed from `from` (at `start_ms`) to `to` (at `end_ms`), after
/// which the driver stands at `to`.
///
/// Holding the whole leg rather than a position updated per ping makes the position a pure
/// function of time: the dispatcher can ask where any driver is at any instant, and the exact
/// arrival time at a pickup or dropoff is known when the leg begins, so it can be scheduled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    from: Point,
    to: Point,
    start_ms: i64,
    end_ms: i64,
    speed_mps: f64,
}

impl Leg {
    /// Standing still at `at` from `now` on.
    pub(crate) fn parked(at: Point, now: i64) -> Leg {
        Leg {
            from: at,
            to: at,
            start_ms: now,
            end_ms: now,
            speed_mps: 0.0,
        }
    }

    /// Driving from `from` at `now` to `to` at `speed_mps` (positive).
    pub(crate) fn drive(from: Point, to: Point, now: i64, speed_mps: f64) -> Leg {
        // Whole milliseconds, as event times are; the rounding moves the arrival by < 1 ms.
        let duration_ms = (from.distance(to) / speed_mps * 1000.0).round() as i64;
        Leg {
            from,
            to,
            start_ms: now,
            end_ms: now + duration_ms,
            speed_mps,
        }
    }

    /// When the driver set off.
    pub(crate) fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// When the driver reaches the destination.
    pub(crate) fn end_ms(&self) -> i64 {
        self.end_ms
    }

    pub(crate) fn is_moving(&self, t: i64) -> bool {
        t < self.end_ms
    }

    pub(crate) fn speed_mps(&self) -> f64 {
        self.speed_mps
    }

    pub(crate) fn position(&self, t: i64) -> Point {
        if t >= self.end_ms {
            return self.to;
        }
        if t <= self.start_ms {
            return self.from;
        }
        let f = (t - self.start_ms) as f64 / (self.end_ms - self.start_ms) as f64;
        Point {
            x: self.from.x + (self.to.x - self.from.x) * f,
            y: self.from.y + (self.to.y - self.from.y) * f,
        }
    }

    /// Course over ground, degrees clockwise from north, in `[0, 360)`.
    pub(crate) fn heading_deg(&self) -> f64 {
        let h = (self.to.x - self.from.x)
            .atan2(self.to.y - self.from.y)
            .to_degrees();
        if h < 0.0 { h + 360.0 } else { h }
    }
}

/// One simulated driver. Its product is fixed for the run.
#[derive(Debug, Clone)]
pub(crate) struct Driver {
    pub(crate) id: String,
    pub(crate) product: Product,
    pub(crate) state: DriverState,
    pub(crate) leg: Leg,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leg_interpolates_and_then_stands_still() {
        let leg = Leg::drive(
            Point { x: 0.0, y: 0.0 },
            Point { x: 300.0, y: 400.0 },
            1_000,
            10.0,
        );
        assert_eq!(leg.end_ms(), 51_000);
        assert_eq!(leg.position(0), Point { x: 0.0, y: 0.0 });
        assert_eq!(leg.position(26_000), Point { x: 150.0, y: 200.0 });
        assert_eq!(leg.position(99_000), Point { x: 300.0, y: 400.0 });
        assert!(leg.is_moving(50_999) && !leg.is_moving(51_000));
        assert!((leg.heading_deg() - 36.87).abs() < 0.01);
        let west = Leg::drive(Point { x: 0.0, y: 0.0 }, Point { x: -1.0, y: 0.0 }, 0, 1.0);
        assert!((west.heading_deg() - 270.0).abs() < 1e-9);
        let parked = Leg::parked(Point { x: 5.0, y: 5.0 }, 10);
        assert!(!parked.is_moving(10));
        assert_eq!(parked.position(11), Point { x: 5.0, y: 5.0 });
    }
}
