//! The discrete-event engine: drivers, requests and the built-in dispatcher.

use std::ops::RangeInclusive;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use surgeflow_schema::{CancelledBy, LocationUpdate};

use crate::agenda::Agenda;
use crate::city::{City, exponential, uniform_in_disc};
use crate::config::CityConfig;
use crate::driver::{Driver, DriverState, Leg};
use crate::error::SimError;
use crate::event::{SimEvent, SimStats};
use crate::trip::{Trip, TripPhase, TripRef, Trips};

/// How long a driver takes to answer an offer, milliseconds (uniform).
const OFFER_RESPONSE_MS: RangeInclusive<i64> = 2_000..=10_000;

/// How long a driver waits at the pickup before the rider is on board, milliseconds (uniform).
const BOARDING_MS: RangeInclusive<i64> = 15_000..=90_000;

/// How often the dispatcher looks again for a driver for a request it could not place.
const REDISPATCH_INTERVAL_MS: i64 = 10_000;

/// Range of the horizontal accuracy a phone reports, metres (uniform); the reported fix lies
/// uniformly within that radius of the true position.
const GPS_ACCURACY_M: RangeInclusive<f64> = 3.0..=12.0;

/// Relative noise of the speed a phone reports around the true speed (uniform, ±).
const SPEED_NOISE: f64 = 0.05;

/// `trip.cancelled` reasons, as short machine-readable codes.
const REASON_RIDER: &str = "rider_changed_plans";
const REASON_TIMEOUT: &str = "no_driver_found";
const REASON_DECLINED: &str = "max_offers_declined";

/// Something scheduled to happen to a driver or a trip at a given event time.
///
/// Trip actions may be stale when they fire (the rider cancelled before the driver arrived,
/// say): each handler checks that the trip is still open and in the phase the action was
/// scheduled for, and otherwise does nothing. That is simpler and cheaper than removing
/// actions from the agenda.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// A driver's next GPS ping; each online driver has exactly one pending.
    Ping(u32),
    /// The next arrival of the request process.
    Request,
    /// Look for a driver for a request that has none.
    Dispatch(TripRef),
    /// The offered driver answers.
    OfferResponse(TripRef),
    /// The driver reaches the pickup.
    Arrive(TripRef),
    /// The rider is on board.
    Board(TripRef),
    /// The driver reaches the dropoff.
    DropOff(TripRef),
    /// The rider gives up while the driver is on the way.
    RiderCancel(TripRef),
    /// An offline driver comes back online.
    LogOn(u32),
}

/// A running synthetic city. Build it with [`Simulation::new`], then pull events with
/// [`Simulation::advance_to`] as event time progresses.
#[derive(Debug)]
pub struct Simulation {
    config: CityConfig,
    city: City,
    rng: ChaCha8Rng,
    drivers: Vec<Driver>,
    trips: Trips,
    agenda: Agenda<Action>,
    /// Serial number of the next trip (and rider).
    next_serial: u64,
    /// Time of the latest request arrival, milliseconds since `start_time_ms`, kept fractional
    /// so that rounding to whole milliseconds does not bias the request rate.
    request_clock_ms: f64,
    /// Chance that an idle driver logs off at a given ping: the ping interval over the mean
    /// online time, which makes online spells roughly exponential with that mean.
    offline_probability: f64,
    stats: SimStats,
}

impl Simulation {
    /// Validates `config` and sets up the city at `config.start_time_ms`: every driver online,
    /// idle, at a uniform random place, heading for another; first pings spread over one
    /// ping interval; no trip open yet. The market fills up within the length of a trip (about
    /// ten simulated minutes with the defaults).
    ///
    /// `seed` is the only source of randomness: the same `(config, seed)` always yields the
    /// same events.
    pub fn new(config: CityConfig, seed: u64) -> Result<Simulation, SimError> {
        config.validate()?;
        let city = City::new(&config)
            .ok_or_else(|| SimError::invalid("product_weights", "must not all be zero"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = config.start_time_ms;
        let mut agenda = Agenda::with_capacity(config.drivers as usize * 2 + 1_024);
        let drivers = (0..config.drivers)
            .map(|i| {
                let product = city.product(&mut rng);
                let from = city.random_point(&mut rng);
                let to = city.random_point(&mut rng);
                let leg = Leg::drive(from, to, start, draw_speed(&mut rng, &config));
                agenda.schedule(
                    start + rng.random_range(0..config.ping_interval_ms),
                    Action::Ping(i),
                );
                Driver {
                    id: format!("driver-{:06}", i + 1),
                    product,
                    state: DriverState::Idle,
                    leg,
                }
            })
            .collect();
        let offline_probability = config.churn.map_or(0.0, |c| {
            (config.ping_interval_ms as f64 / c.mean_online_ms as f64).min(1.0)
        });
        let mut sim = Simulation {
            config,
            city,
            rng,
            drivers,
            trips: Trips::default(),
            agenda,
            next_serial: 1,
            request_clock_ms: 0.0,
            offline_probability,
            stats: SimStats::default(),
        };
        if sim.config.requests_per_s > 0.0 {
            sim.schedule_next_request();
        }
        Ok(sim)
    }

    /// Appends to `out` every event with an event time at or before `until_ms` that has not
    /// been emitted yet, in non-decreasing event-time order.
    ///
    /// Calls may use any step: the events depend only on the config and the seed, never on
    /// how the timeline is cut into calls. A target earlier than a previous one emits nothing.
    /// The work is proportional to the simulated span, so advance in steps (a second of event
    /// time is about 500 events with the defaults) rather than to a far-future target.
    pub fn advance_to(&mut self, until_ms: i64, out: &mut Vec<SimEvent>) {
        while let Some((at, action)) = self.agenda.pop_due(until_ms) {
            match action {
                Action::Ping(d) => self.ping(at, d, out),
                Action::Request => self.request(at, out),
                Action::Dispatch(r) => self.dispatch(at, r, out),
                Action::OfferResponse(r) => self.offer_response(at, r, out),
                Action::Arrive(r) => self.arrive(at, r, out),
                Action::Board(r) => self.board(at, r, out),
                Action::DropOff(r) => self.drop_off(at, r, out),
                Action::RiderCancel(r) => self.rider_cancel(at, r, out),
                Action::LogOn(d) => self.log_on(at, d),
            }
        }
    }

    /// Events emitted so far, per topic.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The (validated) config the simulation runs on.
    pub fn config(&self) -> &CityConfig {
        &self.config
    }

    fn schedule_next_request(&mut self) {
        self.request_clock_ms += exponential(&mut self.rng, 1_000.0 / self.config.requests_per_s);
        let at = self.config.start_time_ms + self.request_clock_ms.floor() as i64;
        self.agenda.schedule(at, Action::Request);
    }

    fn ping(&mut self, at: i64, d: u32, out: &mut Vec<SimEvent>) {
        let driver = &mut self.drivers[d as usize];
        let here = driver.leg.position(at);
        if driver.state == DriverState::Idle
            && self.offline_probability > 0.0
            && self.rng.random_bool(self.offline_probability)
        {
            driver.state = DriverState::Offline;
            driver.leg = Leg::parked(here, at);
            if let Some(churn) = self.config.churn {
                // At least one ping interval off, so that the OFFLINE ping is the last one for
                // a while rather than immediately followed by an AVAILABLE one.
                let off_ms = exponential(&mut self.rng, churn.mean_offline_ms as f64) as i64;
                self.agenda.schedule(
                    at + off_ms.max(self.config.ping_interval_ms),
                    Action::LogOn(d),
                );
            }
        } else if driver.state.cruises() && !driver.leg.is_moving(at) {
            let to = self.city.random_point(&mut self.rng);
            driver.leg = Leg::drive(here, to, at, draw_speed(&mut self.rng, &self.config));
        }

        let accuracy = self.rng.random_range(GPS_ACCURACY_M);
        let (lat, lon) = self
            .city
            .plane
            .to_lat_lon(uniform_in_disc(&mut self.rng, here, accuracy));
        let moving = driver.leg.is_moving(at);
        let speed = if moving {
            driver.leg.speed_mps() * (1.0 + self.rng.random_range(-SPEED_NOISE..=SPEED_NOISE))
        } else {
            0.0
        };
        let ping = LocationUpdate {
            driver_id: driver.id.clone(),
            lat,
            lon,
            accuracy_m: Some(accuracy),
            speed_mps: Some(speed),
            // A phone has no course over ground when standing still.
            heading_deg: moving.then(|| driver.leg.heading_deg()),
            status: driver.state.status(),
            product: driver.product,
            event_time: at,
        };
        let online = driver.state != DriverState::Offline;
        emit(&mut self.stats, out, SimEvent::LocationUpdate(ping));
        if online {
            let jitter = self.config.ping_jitter_ms;
            let next = at + self.config.ping_interval_ms + self.rng.random_range(-jitter..=jitter);
            self.agenda.schedule(next, Action::Ping(d));
        }
    }

    fn log_on(&mut self, at: i64, d: u32) {
        let driver = &mut self.drivers[d as usize];
        if driver.state == DriverState::Offline {
            driver.state = DriverState::Idle;
            self.agenda.schedule(at, Action::Ping(d));
        }
    }

    fn request(&mut self, at: i64, out: &mut Vec<SimEvent>) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let product = self.city.product(&mut self.rng);
        let pickup = self.city.pickup(&mut self.rng);
        let dropoff = self.city.dropoff(&mut self.rng, pickup);
        let (pickup_lat, pickup_lon) = self.city.plane.to_lat_lon(pickup);
        let (dropoff_lat, dropoff_lon) = self.city.plane.to_lat_lon(dropoff);
        let trip = Trip {
            serial,
            id: format!("trip-{serial:09}"),
            rider_id: format!("rider-{serial:09}"),
            product,
            pickup,
            pickup_lat,
            pickup_lon,
            dropoff,
            dropoff_lat,
            dropoff_lon,
            requested_at: at,
            phase: TripPhase::Searching,
            offers: 0,
            declined_by: Vec::new(),
        };
        emit(
            &mut self.stats,
            out,
            SimEvent::TripRequested(trip.requested()),
        );
        let r = self.trips.open(trip);
        self.dispatch(at, r, out);
        self.schedule_next_request();
    }

    /// The naive dispatcher: offer the trip to the nearest idle driver of its product within
    /// the dispatch radius that has not declined it yet; if there is none, look again later;
    /// give up (cancel as SYSTEM) at the deadline or once every allowed offer was declined.
    fn dispatch(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(trip) = self.trips.get_mut(r) else {
            return;
        };
        if trip.phase != TripPhase::Searching {
            return;
        }
        let deadline = trip.requested_at + self.config.unmatched_timeout_ms;
        let give_up = if at >= deadline {
            Some(REASON_TIMEOUT)
        } else if trip.offers >= self.config.max_offers {
            Some(REASON_DECLINED)
        } else {
            None
        };
        if let Some(reason) = give_up {
            if let Some(trip) = self.trips.close(r) {
                let event = trip.cancelled(None, CancelledBy::System, reason, at);
                emit(&mut self.stats, out, SimEvent::TripCancelled(event));
            }
            return;
        }
        match nearest_idle(&self.drivers, trip, at, self.config.dispatch_radius_m) {
            Some(d) => {
                self.drivers[d as usize].state = DriverState::Offered;
                trip.phase = TripPhase::Offered(d);
                trip.offers += 1;
                let answer_at = at + self.rng.random_range(OFFER_RESPONSE_MS);
                self.agenda.schedule(answer_at, Action::OfferResponse(r));
            }
            None => {
                let retry_at = (at + REDISPATCH_INTERVAL_MS).min(deadline);
                self.agenda.schedule(retry_at, Action::Dispatch(r));
            }
        }
    }

    fn offer_response(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(trip) = self.trips.get_mut(r) else {
            return;
        };
        let TripPhase::Offered(d) = trip.phase else {
            return;
        };
        let driver = &mut self.drivers[d as usize];
        if self.rng.random_bool(self.config.accept_probability) {
            emit(
                &mut self.stats,
                out,
                SimEvent::TripAccepted(trip.accepted(&driver.id, at)),
            );
            let here = driver.leg.position(at);
            driver.state = DriverState::Dispatched;
            driver.leg = Leg::drive(
                here,
                trip.pickup,
                at,
                draw_speed(&mut self.rng, &self.config),
            );
            trip.phase = TripPhase::EnRoute(d);
            let arrival = driver.leg.end_ms();
            self.agenda.schedule(arrival, Action::Arrive(r));
            // Decided now, at a time strictly before the arrival, so that it always happens
            // before pickup and the configured probability is the observed one.
            if arrival > at + 1 && self.rng.random_bool(self.config.rider_cancel_probability) {
                let cancel_at = self.rng.random_range(at + 1..arrival);
                self.agenda.schedule(cancel_at, Action::RiderCancel(r));
            }
        } else {
            emit(
                &mut self.stats,
                out,
                SimEvent::TripDeclined(trip.declined(&driver.id, at)),
            );
            driver.state = DriverState::Idle;
            trip.declined_by.push(d);
            trip.phase = TripPhase::Searching;
            self.dispatch(at, r, out);
        }
    }

    fn arrive(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(trip) = self.trips.get_mut(r) else {
            return;
        };
        let TripPhase::EnRoute(d) = trip.phase else {
            return;
        };
        let driver = &self.drivers[d as usize];
        emit(
            &mut self.stats,
            out,
            SimEvent::TripDriverArrived(trip.driver_arrived(&driver.id, at)),
        );
        trip.phase = TripPhase::Arrived(d);
        let board_at = at + self.rng.random_range(BOARDING_MS);
        self.agenda.schedule(board_at, Action::Board(r));
    }

    fn board(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(trip) = self.trips.get_mut(r) else {
            return;
        };
        let TripPhase::Arrived(d) = trip.phase else {
            return;
        };
        let driver = &mut self.drivers[d as usize];
        emit(
            &mut self.stats,
            out,
            SimEvent::TripStarted(trip.started(&driver.id, at)),
        );
        driver.state = DriverState::OnTrip;
        let speed = draw_speed(&mut self.rng, &self.config);
        driver.leg = Leg::drive(trip.pickup, trip.dropoff, at, speed);
        trip.phase = TripPhase::OnTrip(d);
        self.agenda
            .schedule(driver.leg.end_ms(), Action::DropOff(r));
    }

    fn drop_off(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(TripPhase::OnTrip(d)) = self.trips.get_mut(r).map(|t| t.phase) else {
            return;
        };
        let Some(trip) = self.trips.close(r) else {
            return;
        };
        let driver = &mut self.drivers[d as usize];
        emit(
            &mut self.stats,
            out,
            // The leg to the dropoff began at the boarding (`board`).
            SimEvent::TripCompleted(trip.completed(&driver.id, driver.leg.start_ms(), at)),
        );
        // The leg ends at the dropoff: the next ping sends the driver cruising again.
        driver.state = DriverState::Idle;
    }

    fn rider_cancel(&mut self, at: i64, r: TripRef, out: &mut Vec<SimEvent>) {
        let Some(TripPhase::EnRoute(d)) = self.trips.get_mut(r).map(|t| t.phase) else {
            return;
        };
        let Some(trip) = self.trips.close(r) else {
            return;
        };
        let driver = &mut self.drivers[d as usize];
        let event = trip.cancelled(Some(&driver.id), CancelledBy::Rider, REASON_RIDER, at);
        emit(&mut self.stats, out, SimEvent::TripCancelled(event));
        // Stop where it is; the next ping picks a new waypoint.
        driver.state = DriverState::Idle;
        driver.leg = Leg::parked(driver.leg.position(at), at);
    }
}

/// Counts the event and hands it over. A free function rather than a method so that it can be
/// called while a driver or trip of the simulation is borrowed.
fn emit(stats: &mut SimStats, out: &mut Vec<SimEvent>, event: SimEvent) {
    stats.record(&event);
    out.push(event);
}

/// A driving speed for one leg.
fn draw_speed(rng: &mut ChaCha8Rng, config: &CityConfig) -> f64 {
    rng.random_range(config.min_speed_mps..=config.max_speed_mps)
}

/// Index of the idle driver of the trip's product nearest to its pickup at time `at`, within
/// `radius_m`, that has not declined the trip. A linear scan: a few microseconds for a
/// few thousand drivers, and requests are rare next to pings. Ties go to the lowest index.
fn nearest_idle(drivers: &[Driver], trip: &Trip, at: i64, radius_m: f64) -> Option<u32> {
    let radius_sq = radius_m * radius_m;
    let mut best: Option<(u32, f64)> = None;
    for (i, driver) in (0u32..).zip(drivers) {
        if driver.state != DriverState::Idle || driver.product != trip.product {
            continue;
        }
        let d2 = driver.leg.position(at).distance_sq(trip.pickup);
        if d2 <= radius_sq && best.is_none_or(|(_, b)| d2 < b) && !trip.declined_by.contains(&i) {
            best = Some((i, d2));
        }
    }
    best.map(|(i, _)| i)
}
