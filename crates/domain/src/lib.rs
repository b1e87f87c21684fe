//! Pure domain logic of surgeflow: the arithmetic the stream operators run on every event,
//! kept free of Kafka, async and I/O so it can be unit- and property-tested in isolation and
//! reused by every operator (and the simulator) without dragging a runtime along.
//!
//! Modules:
//! - [`geo`]: geohash cells packed into a `u64` ([`geo::Cell`]), partitioning regions
//!   ([`geo::Region`]), great-circle distances, and the radius / halo searches that decide
//!   which cells and regions an event touches.
//! - [`matching`]: the matcher's driver index, scoring, per-trip offer state machine,
//!   batched optimal assignment and replay-based restore.
//! - [`routing`]: the routers' checks (plausible coordinates and times) and where an event
//!   goes (cell, home region, halo regions).
//! - [`surge`]: the surge-pricer's watermark, supply, demand, smoothing and damped multipliers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod geo;
pub mod matching;
pub mod routing;
pub mod surge;
