//! The events the simulator emits, one variant per input topic of the pipeline.

use surgeflow_schema::{
    LocationUpdate, TripAccepted, TripCancelled, TripCompleted, TripDeclined, TripDriverArrived,
    TripRequested, TripStarted,
};

/// One generated event, wrapping the schema type of the topic it belongs to so that the
/// producer can serialise it with that type's Avro schema.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A driver's GPS ping.
    LocationUpdate(LocationUpdate),
    /// A rider asked for a ride.
    TripRequested(TripRequested),
    /// A driver accepted the dispatcher's offer.
    TripAccepted(TripAccepted),
    /// A driver declined the dispatcher's offer.
    TripDeclined(TripDeclined),
    /// The rider or the system cancelled the trip.
    TripCancelled(TripCancelled),
    /// The driver reached the pickup.
    TripDriverArrived(TripDriverArrived),
    /// The rider boarded.
    TripStarted(TripStarted),
    /// The rider was dropped off.
    TripCompleted(TripCompleted),
}

/// Every topic the simulator writes to, in the order of [`SimStats::per_topic`].
pub const TOPICS: [&str; 8] = [
    "location.update",
    "trip.requested",
    "trip.accepted",
    "trip.declined",
    "trip.cancelled",
    "trip.driver_arrived",
    "trip.started",
    "trip.completed",
];

impl SimEvent {
    /// The Kafka topic the event belongs on.
    pub fn topic(&self) -> &'static str {
        TOPICS[self.topic_index()]
    }

    /// The Kafka key: the driver id for pings (so one driver's pings stay ordered in one
    /// partition), the trip id for trip events (so one trip's lifecycle does).
    pub fn key(&self) -> &str {
        match self {
            SimEvent::LocationUpdate(e) => &e.driver_id,
            SimEvent::TripRequested(e) => &e.trip_id,
            SimEvent::TripAccepted(e) => &e.trip_id,
            SimEvent::TripDeclined(e) => &e.trip_id,
            SimEvent::TripCancelled(e) => &e.trip_id,
            SimEvent::TripDriverArrived(e) => &e.trip_id,
            SimEvent::TripStarted(e) => &e.trip_id,
            SimEvent::TripCompleted(e) => &e.trip_id,
        }
    }

    /// Event time, UTC milliseconds.
    pub fn event_time(&self) -> i64 {
        match self {
            SimEvent::LocationUpdate(e) => e.event_time,
            SimEvent::TripRequested(e) => e.event_time,
            SimEvent::TripAccepted(e) => e.event_time,
            SimEvent::TripDeclined(e) => e.event_time,
            SimEvent::TripCancelled(e) => e.event_time,
            SimEvent::TripDriverArrived(e) => e.event_time,
            SimEvent::TripStarted(e) => e.event_time,
            SimEvent::TripCompleted(e) => e.event_time,
        }
    }

    /// Position of the event's topic in [`TOPICS`].
    fn topic_index(&self) -> usize {
        match self {
            SimEvent::LocationUpdate(_) => 0,
            SimEvent::TripRequested(_) => 1,
            SimEvent::TripAccepted(_) => 2,
            SimEvent::TripDeclined(_) => 3,
            SimEvent::TripCancelled(_) => 4,
            SimEvent::TripDriverArrived(_) => 5,
            SimEvent::TripStarted(_) => 6,
            SimEvent::TripCompleted(_) => 7,
        }
    }
}

/// How many events the simulation has emitted so far, per topic: what a progress line shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    counts: [u64; 8],
}

impl SimStats {
    /// Events emitted to `topic` so far; 0 for a topic the simulator does not write.
    pub fn count(&self, topic: &str) -> u64 {
        TOPICS
            .iter()
            .position(|t| *t == topic)
            .map_or(0, |i| self.counts[i])
    }

    /// `(topic, count)` for every topic in [`TOPICS`], in that order.
    pub fn per_topic(&self) -> [(&'static str, u64); 8] {
        std::array::from_fn(|i| (TOPICS[i], self.counts[i]))
    }

    /// Events emitted so far, all topics together.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub(crate) fn record(&mut self, event: &SimEvent) {
        self.counts[event.topic_index()] += 1;
    }
}
