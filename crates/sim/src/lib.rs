//! A deterministic synthetic city that feeds surgeflow: drivers drive around and ping their
//! GPS, riders request trips, and a naive built-in dispatcher matches them, producing the
//! `location.update` and `trip.*` events the pipeline consumes. `surgeflow simulate` drives it
//! and publishes what it emits; this crate is pure and synchronous (no Kafka, no async, no
//! clock, no I/O), so it can be tested and benchmarked on its own.
//!
//! # Usage
//!
//! ```
//! use surgeflow_sim::{CityConfig, Simulation};
//!
//! let config = CityConfig { drivers: 100, ..CityConfig::default() };
//! let start = config.start_time_ms;
//! let mut sim = Simulation::new(config, 42)?;
//! let mut events = Vec::new();
//! sim.advance_to(start + 60_000, &mut events); // the first simulated minute
//! assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()));
//! assert_eq!(sim.stats().total(), events.len() as u64);
//! # Ok::<(), surgeflow_sim::SimError>(())
//! ```
//!
//! # Model
//!
//! The city is a disc ([`CityConfig::center_lat`], [`CityConfig::radius_m`]; by default 8 km
//! around Times Square) seen through a flat local projection, so that paths are straight lines
//! and distances Euclidean, which is accurate to well under a metre per kilometre at that scale.
//!
//! - **Drivers** (`driver-000001`, ...) each serve one product, drawn from the product mix.
//!   A driver always follows a *leg*: a straight line at a constant speed (uniform in
//!   6–12 m/s, redrawn per leg) towards a waypoint. Idle drivers cruise between uniform random
//!   waypoints; dispatched drivers head for the pickup, drivers on a trip for the dropoff.
//!   Online drivers ping every `ping_interval_ms` (4 s ± 300 ms), reporting a fix within the
//!   reported `accuracy_m` (3–12 m) of the true position, the speed (±5 % noise, 0 when
//!   standing) and the heading (absent when standing).
//! - **Status** in pings follows the trip: `AVAILABLE` while idle (including while an offer
//!   is pending), `DISPATCHED` from `trip.accepted` until `trip.started` (driving to the
//!   pickup, then waiting there), `ON_TRIP` until `trip.completed`, then `AVAILABLE` again.
//!   At each ping an idle driver may log off (mean online time 4 h): that ping carries
//!   `OFFLINE` and is its last until it logs back on (mean 15 min later).
//! - **Requests** arrive as a Poisson process of rate `requests_per_s`. The pickup lies in one
//!   of the hotspots with probability `hotspot_share` (60 %; uniform in the hotspot's disc),
//!   otherwise uniformly in the city; the dropoff at an exponential distance (mean 2.5 km,
//!   at least 200 m) in a random direction, inside the city. Each request is a new rider
//!   (`rider-…`, same serial as its `trip-…`). Demand concentrated in hotspots exhausts the
//!   idle supply there, which is what makes surge appear downstream.
//! - **Dispatch**: the simulator offers each request to the nearest idle driver of its product
//!   within `dispatch_radius_m` (3 km). The driver answers 2–10 s later, accepting with
//!   `accept_probability` (85 %): `trip.accepted`; or `trip.declined`, and the next nearest
//!   driver gets an offer, up to `max_offers` (3) offers, after which the system cancels. With
//!   no driver in range the dispatcher looks again every 10 s; a request without an accepted
//!   offer after `unmatched_timeout_ms` (120 s) is cancelled by `SYSTEM`.
//! - **Trip**: the driver drives to the pickup (`trip.driver_arrived` exactly when it gets
//!   there), the rider boards 15–90 s later (`trip.started`), the driver drives to the dropoff
//!   (`trip.completed`, with the straight-line `distance_m`). With `rider_cancel_probability`
//!   (5 %) the rider cancels at a uniform time while the driver is on the way
//!   (`trip.cancelled` by `RIDER`), and the driver is idle again.
//!
//! The market starts empty, every driver online and idle, and fills up within the length of a
//! trip. With the defaults it then emits about `drivers / 4 s` pings (500/s) and about 20 trip
//! events/s; the market is tight by design, so about a fifth of the requests go unfilled.
//!
//! # Determinism
//!
//! The same [`CityConfig`] and seed give the same event sequence, however the timeline is cut
//! into [`Simulation::advance_to`] calls:
//!
//! - all randomness comes from one [`rand_chacha::ChaCha8Rng`] seeded with the seed, whose
//!   stream is fixed by its algorithm (unlike `StdRng`, which may change between `rand`
//!   releases), and it is drawn from in the order actions are processed;
//! - actions are processed in the order of a priority queue keyed by `(event time, order of
//!   scheduling)`, a total order, so simultaneous actions never depend on container layout;
//! - the state lives in vectors indexed by driver and trip slot (no hash map is iterated), and
//!   event time is simulated: nothing reads the wall clock, and `start_time_ms` defaults to a
//!   constant (2026-01-01T08:00:00Z), so the caller decides whether events look live.
//!
//! Positions go through `f64` trigonometry and logarithms, which come from the platform's math
//! library, so the bit-for-bit guarantee holds for a given build target, not across all of them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agenda;
mod city;
mod config;
mod driver;
mod error;
mod event;
mod simulation;
mod trip;

pub use config::{Churn, CityConfig, DEFAULT_START_TIME_MS, Hotspot};
pub use error::SimError;
pub use event::{SimEvent, SimStats, TOPICS};
pub use simulation::Simulation;
