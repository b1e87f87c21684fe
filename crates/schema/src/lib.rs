//! The data contracts of surgeflow: one Rust type per Avro schema in `schemas/`.
//!
//! The `.avsc` files are the source of truth (they are what gets registered and what other
//! languages read); the types here mirror them field for field so the operators can encode and
//! decode with serde straight from and to Avro bytes, without going through
//! `apache_avro::types::Value`. Each type implements [`AvroRecord`], which ties it to the schema
//! text compiled into the binary. The tests in this crate prove the two stay in step.
//!
//! Conventions shared by every schema:
//! - times are `timestamp-millis` (UTC milliseconds since the epoch) and are `i64` here;
//! - optional fields are `["null", T]` unions with a `null` default, `Option<T>` here, so that
//!   adding one is a backward-compatible change;
//! - closed vocabularies (driver status, product, ...) are Avro enums, Rust enums here.

use std::sync::OnceLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A Rust type whose values are Avro records of a schema committed under `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// File name of the schema under `schemas/`.
    const SCHEMA_FILE: &'static str;
    /// The schema text, as committed.
    const SCHEMA_TEXT: &'static str;

    /// The parsed schema, parsed once per process.
    fn schema() -> &'static Schema;
}

macro_rules! avro_record {
    ($ty:ty, $file:literal) => {
        impl AvroRecord for $ty {
            const SCHEMA_FILE: &'static str = $file;
            const SCHEMA_TEXT: &'static str = include_str!(concat!("../../../schemas/", $file));

            /// # Panics
            /// Never in a tested build: the schema text is compiled in and the crate's tests
            /// parse every one of them.
            fn schema() -> &'static Schema {
                static SCHEMA: OnceLock<Schema> = OnceLock::new();
                SCHEMA.get_or_init(|| {
                    Schema::parse_str(Self::SCHEMA_TEXT)
                        .unwrap_or_else(|e| panic!("schemas/{} does not parse: {e}", $file))
                })
            }
        }
    };
}

/// Ride product a driver serves or a rider asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Product {
    Economy,
    Comfort,
    Xl,
    Premium,
}

impl Product {
    /// Every product, in schema order.
    pub const ALL: [Product; 4] = [
        Product::Economy,
        Product::Comfort,
        Product::Xl,
        Product::Premium,
    ];

    /// The Avro symbol, as used in keys such as `<cell>:<product>`.
    pub fn symbol(self) -> &'static str {
        match self {
            Product::Economy => "ECONOMY",
            Product::Comfort => "COMFORT",
            Product::Xl => "XL",
            Product::Premium => "PREMIUM",
        }
    }
}

/// What a driver is doing when a ping is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    /// Online and free to take a trip: the only status that counts as supply.
    Available,
    /// Heading to a pickup.
    Dispatched,
    /// Carrying a rider.
    OnTrip,
    /// Logged off; the last ping before going away.
    Offline,
}

/// Who cancelled a trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelledBy {
    Rider,
    Driver,
    System,
}

/// Which `trip.*` topic a routed trip event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TripEventKind {
    Requested,
    Accepted,
    Declined,
    Cancelled,
    DriverArrived,
    Started,
    Completed,
}

/// Why the matcher gave up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnfilledReason {
    /// No available driver of the product within the radius.
    NoDriverInRadius,
    /// Every attempt was declined or timed out.
    MaxAttempts,
    /// The request's deadline passed first.
    Deadline,
}

/// A driver app's GPS ping (`location.update`, key = driver_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationUpdate {
    pub driver_id: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
    #[serde(default)]
    pub speed_mps: Option<f64>,
    #[serde(default)]
    pub heading_deg: Option<f64>,
    pub status: DriverStatus,
    pub product: Product,
    /// Event time, UTC milliseconds.
    pub event_time: i64,
}

/// A rider asks for a ride (`trip.requested`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripRequested {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    #[serde(default)]
    pub dropoff_lat: Option<f64>,
    #[serde(default)]
    pub dropoff_lon: Option<f64>,
    pub event_time: i64,
}

/// A driver accepted an offer (`trip.accepted`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripAccepted {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub driver_id: String,
    #[serde(default)]
    pub proposal_id: Option<String>,
    pub event_time: i64,
}

/// A driver declined an offer (`trip.declined`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripDeclined {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub driver_id: String,
    #[serde(default)]
    pub proposal_id: Option<String>,
    pub event_time: i64,
}

/// A trip was cancelled (`trip.cancelled`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripCancelled {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    #[serde(default)]
    pub driver_id: Option<String>,
    pub cancelled_by: CancelledBy,
    #[serde(default)]
    pub reason: Option<String>,
    pub event_time: i64,
}

/// The driver reached the pickup (`trip.driver_arrived`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripDriverArrived {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub driver_id: String,
    pub event_time: i64,
}

/// The rider is on board (`trip.started`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripStarted {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub driver_id: String,
    pub event_time: i64,
}

/// The trip ended (`trip.completed`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripCompleted {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub driver_id: String,
    pub dropoff_lat: f64,
    pub dropoff_lon: f64,
    /// Distance driven with the rider, metres.
    #[serde(default)]
    pub distance_m: Option<f64>,
    /// Time from pickup (`trip.started`) to drop-off as measured by the meter, seconds.
    #[serde(default)]
    pub trip_duration_s: Option<f64>,
    pub event_time: i64,
}

/// Slowly changing facts about a driver (`driver.profile`, compacted, key = driver_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverProfile {
    pub driver_id: String,
    pub rating: f64,
    pub acceptance_rate: f64,
    pub products: Vec<Product>,
    pub updated_at: i64,
}

/// A validated ping routed to a region (`geo.driver`, key = region geohash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoDriver {
    pub driver_id: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
    #[serde(default)]
    pub speed_mps: Option<f64>,
    #[serde(default)]
    pub heading_deg: Option<f64>,
    pub status: DriverStatus,
    pub product: Product,
    /// Packed `surgeflow_domain::Cell` bits.
    pub cell: i64,
    /// Packed `surgeflow_domain::Region` bits of the region this copy is addressed to.
    pub region: i64,
    pub halo: bool,
    pub event_time: i64,
}

/// A validated trip event routed to the region of its pickup (`geo.trip`, key = region geohash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoTrip {
    pub kind: TripEventKind,
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    #[serde(default)]
    pub driver_id: Option<String>,
    #[serde(default)]
    pub proposal_id: Option<String>,
    pub cell: i64,
    pub region: i64,
    pub halo: bool,
    pub event_time: i64,
}

/// The current multiplier of a cell and product (`surge.multiplier`, compacted, key = `<cell>:<product>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeMultiplier {
    pub cell: String,
    pub product: Product,
    pub multiplier: f64,
    pub supply: i32,
    pub demand: i32,
    #[serde(default)]
    pub stale: bool,
    pub window_start: i64,
    pub window_end: i64,
    pub computed_at: i64,
}

/// The driver proposed for a trip (`match.proposal`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchProposal {
    pub proposal_id: String,
    pub trip_id: String,
    pub rider_id: String,
    pub driver_id: String,
    pub product: Product,
    pub distance_m: f64,
    pub eta_s: f64,
    pub score: f64,
    pub surge_multiplier: f64,
    pub attempt: i32,
    pub proposed_at: i64,
    pub expires_at: i64,
}

/// A request that got no driver (`match.unfilled`, key = trip_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchUnfilled {
    pub trip_id: String,
    pub rider_id: String,
    pub product: Product,
    pub pickup_lat: f64,
    pub pickup_lon: f64,
    pub attempts: i32,
    pub reason: UnfilledReason,
    pub decided_at: i64,
}

avro_record!(LocationUpdate, "location_update.avsc");
avro_record!(TripRequested, "trip_requested.avsc");
avro_record!(TripAccepted, "trip_accepted.avsc");
avro_record!(TripDeclined, "trip_declined.avsc");
avro_record!(TripCancelled, "trip_cancelled.avsc");
avro_record!(TripDriverArrived, "trip_driver_arrived.avsc");
avro_record!(TripStarted, "trip_started.avsc");
avro_record!(TripCompleted, "trip_completed.avsc");
avro_record!(DriverProfile, "driver_profile.avsc");
avro_record!(GeoDriver, "geo_driver.avsc");
avro_record!(GeoTrip, "geo_trip.avsc");
avro_record!(SurgeMultiplier, "surge_multiplier.avsc");
avro_record!(MatchProposal, "match_proposal.avsc");
avro_record!(MatchUnfilled, "match_unfilled.avsc");

/// Every schema file compiled into this crate, for tools that work on all of them.
pub const ALL_SCHEMA_FILES: [(&str, &str); 14] = [
    (LocationUpdate::SCHEMA_FILE, LocationUpdate::SCHEMA_TEXT),
    (TripRequested::SCHEMA_FILE, TripRequested::SCHEMA_TEXT),
    (TripAccepted::SCHEMA_FILE, TripAccepted::SCHEMA_TEXT),
    (TripDeclined::SCHEMA_FILE, TripDeclined::SCHEMA_TEXT),
    (TripCancelled::SCHEMA_FILE, TripCancelled::SCHEMA_TEXT),
    (
        TripDriverArrived::SCHEMA_FILE,
        TripDriverArrived::SCHEMA_TEXT,
    ),
    (TripStarted::SCHEMA_FILE, TripStarted::SCHEMA_TEXT),
    (TripCompleted::SCHEMA_FILE, TripCompleted::SCHEMA_TEXT),
    (DriverProfile::SCHEMA_FILE, DriverProfile::SCHEMA_TEXT),
    (GeoDriver::SCHEMA_FILE, GeoDriver::SCHEMA_TEXT),
    (GeoTrip::SCHEMA_FILE, GeoTrip::SCHEMA_TEXT),
    (SurgeMultiplier::SCHEMA_FILE, SurgeMultiplier::SCHEMA_TEXT),
    (MatchProposal::SCHEMA_FILE, MatchProposal::SCHEMA_TEXT),
    (MatchUnfilled::SCHEMA_FILE, MatchUnfilled::SCHEMA_TEXT),
];

#[cfg(test)]
mod tests;
