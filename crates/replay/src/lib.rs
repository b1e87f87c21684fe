//! Real taxi trips as surgeflow events: reads the DEBS 2015 Grand Challenge / NYC TLC 2013
//! trip format (17 fields per line, sorted by drop-off time) and produces the
//! `location.update` and `trip.*` events the pipeline consumes, as [`surgeflow_sim::SimEvent`]s,
//! in event-time order. `surgeflow replay` drives it; this crate is pure and synchronous (no
//! Kafka, no clock), so it can be tested and benchmarked on its own.
//!
//! # Usage
//!
//! ```
//! use surgeflow_replay::{Replay, ReplayConfig};
//!
//! let csv = "07290D3599E7A0D62097A346EFCC1FB5,E7750A37CAB07D0DFF0AF7E3573AC141,\
//! 2013-01-01 00:00:00,2013-01-01 00:02:00,120,0.44,-73.956528,40.716976,-73.962440,40.715008,\
//! CSH,3.50,0.50,0.50,0.00,0.00,4.50\n";
//! let mut replay = Replay::new(csv.as_bytes(), ReplayConfig::default())?;
//! let mut events = Vec::new();
//! while let Some(event) = replay.next_event().expect("reading a byte slice") {
//!     events.push(event);
//! }
//! assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()));
//! assert_eq!(replay.stats().events_to("trip.requested"), 1);
//! assert_eq!(replay.stats().events_to("trip.completed"), 1);
//! # Ok::<(), surgeflow_replay::ConfigError>(())
//! ```
//!
//! # Conversion
//!
//! The full rules, with the reasons for them, are in `docs/replay.md`; in short:
//!
//! - **Time**: the file's New York local times become UTC milliseconds ([`time`]); with
//!   [`ReplayConfig::start_ms`] every event is shifted by the same amount so that the first
//!   event lands there.
//! - **Trip** (one per row, id `trip-<FNV-1a of the line>`, rider `rider-<same>`):
//!   `trip.requested` at the pickup time; `trip.accepted` and `trip.driver_arrived` 2–10 s
//!   later; `trip.started` 5–30 s after that (both delays from the line's hash, and never
//!   after the drop-off); `trip.completed` at the drop-off time with the meter's distance and
//!   trip time. Every one carries the recorded pickup position.
//! - **Taxi** (one driver per medallion, id `taxi-<FNV-1a of the medallion>`): a ping every
//!   `ping_interval_ms` at a per-taxi phase, AVAILABLE / DISPATCHED / ON_TRIP / OFFLINE along
//!   its trips with interpolated positions (see the `driver` module for the rules).
//! - **Dirty rows** are converted as recorded and counted by [`DirtyClass`]; rows that do
//!   not parse are counted by class and reported with their line numbers ([`RowError`]).
//!   The events the routers will dead-letter are counted by reason
//!   ([`ReplayStats::rejected`]).
//!
//! # Determinism and memory
//!
//! The same file and configuration give the same events, in the same order, however the
//! input is buffered: ids and delays come from hashes of the data, and the merge breaks ties
//! by a total order. Memory holds one small state per taxi and the trips of the lookahead
//! window (`max_trip_ms + max_idle_gap_ms` of drop-off time), not the file.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod dirty;
mod driver;
mod ids;
mod record;
mod replay;
pub mod time;

pub use config::{Area, ConfigError, ReplayConfig, Until};
pub use dirty::{DirtyClass, DirtySet, classify, routable};
pub use ids::{LineHash, driver_id, fnv1a64, ping_phase_ms};
pub use record::{
    METRES_PER_MILE, ParseErrorKind, Point, RowError, TripRecord, is_header, parse_line,
};
pub use replay::{Replay, ReplayStats};
