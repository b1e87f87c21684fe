//! Open trips and the events they produce.

use surgeflow_schema::{
    CancelledBy, Product, TripAccepted, TripCancelled, TripCompleted, TripDeclined,
    TripDriverArrived, TripRequested, TripStarted,
};

use crate::city::Point;

/// Where a trip is in its lifecycle; the driver index is carried by every phase that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TripPhase {
    /// No driver holds an offer; the dispatcher retries periodically until the deadline.
    Searching,
    /// The driver is deciding on the offer.
    Offered(u32),
    /// The driver accepted and is driving to the pickup.
    EnRoute(u32),
    /// The driver is at the pickup, waiting for the rider to board.
    Arrived(u32),
    /// The rider is on board.
    OnTrip(u32),
}

/// A request from its `trip.requested` until it completes or is cancelled.
#[derive(Debug, Clone)]
pub(crate) struct Trip {
    /// Serial number, unique for the run; also what the ids are made of.
    pub(crate) serial: u64,
    pub(crate) id: String,
    pub(crate) rider_id: String,
    pub(crate) product: Product,
    pub(crate) pickup: Point,
    pub(crate) pickup_lat: f64,
    pub(crate) pickup_lon: f64,
    pub(crate) dropoff: Point,
    pub(crate) dropoff_lat: f64,
    pub(crate) dropoff_lon: f64,
    pub(crate) requested_at: i64,
    pub(crate) phase: TripPhase,
    /// Offers made so far (accepted or not).
    pub(crate) offers: u32,
    /// Drivers that declined this trip: never offered it again.
    pub(crate) declined_by: Vec<u32>,
}

impl Trip {
    pub(crate) fn requested(&self) -> TripRequested {
        TripRequested {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            dropoff_lat: Some(self.dropoff_lat),
            dropoff_lon: Some(self.dropoff_lon),
            event_time: self.requested_at,
        }
    }

    pub(crate) fn accepted(&self, driver_id: &str, at: i64) -> TripAccepted {
        TripAccepted {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.to_owned(),
            proposal_id: None,
            event_time: at,
        }
    }

    pub(crate) fn declined(&self, driver_id: &str, at: i64) -> TripDeclined {
        TripDeclined {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.to_owned(),
            proposal_id: None,
            event_time: at,
        }
    }

    pub(crate) fn cancelled(
        &self,
        driver_id: Option<&str>,
        cancelled_by: CancelledBy,
        reason: &str,
        at: i64,
    ) -> TripCancelled {
        TripCancelled {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.map(str::to_owned),
            cancelled_by,
            reason: Some(reason.to_owned()),
            event_time: at,
        }
    }

    pub(crate) fn driver_arrived(&self, driver_id: &str, at: i64) -> TripDriverArrived {
        TripDriverArrived {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.to_owned(),
            event_time: at,
        }
    }

    pub(crate) fn started(&self, driver_id: &str, at: i64) -> TripStarted {
        TripStarted {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.to_owned(),
            event_time: at,
        }
    }

    /// The driver drove the straight line from pickup to dropoff, so that is the distance;
    /// the duration runs from the boarding (`started_at`, the `trip.started` time) to `at`.
    pub(crate) fn completed(&self, driver_id: &str, started_at: i64, at: i64) -> TripCompleted {
        TripCompleted {
            trip_id: self.id.clone(),
            rider_id: self.rider_id.clone(),
            product: self.product,
            pickup_lat: self.pickup_lat,
            pickup_lon: self.pickup_lon,
            driver_id: driver_id.to_owned(),
            dropoff_lat: self.dropoff_lat,
            dropoff_lon: self.dropoff_lon,
            distance_m: Some(self.pickup.distance(self.dropoff)),
            trip_duration_s: Some((at - started_at) as f64 / 1000.0),
            event_time: at,
        }
    }
}

/// A handle on an open trip held by a scheduled action. The serial guards against the slot
/// having been freed and reused by a later trip before the action fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TripRef {
    slot: u32,
    serial: u64,
}

/// The open trips, in slots reused once a trip ends, so memory stays proportional to the open
/// trips rather than growing with the length of the run.
#[derive(Debug, Default)]
pub(crate) struct Trips {
    slots: Vec<Option<Trip>>,
    free: Vec<u32>,
}

impl Trips {
    pub(crate) fn open(&mut self, trip: Trip) -> TripRef {
        let serial = trip.serial;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(trip);
                slot
            }
            None => {
                self.slots.push(Some(trip));
                // Bounded by the open trips, which cannot exceed u32 in any plausible run.
                (self.slots.len() - 1) as u32
            }
        };
        TripRef { slot, serial }
    }

    /// The trip, unless it has ended since the handle was made.
    pub(crate) fn get_mut(&mut self, r: TripRef) -> Option<&mut Trip> {
        self.slots
            .get_mut(r.slot as usize)?
            .as_mut()
            .filter(|t| t.serial == r.serial)
    }

    /// Ends the trip, returning it.
    pub(crate) fn close(&mut self, r: TripRef) -> Option<Trip> {
        let slot = self.slots.get_mut(r.slot as usize)?;
        if slot.as_ref().is_some_and(|t| t.serial == r.serial) {
            self.free.push(r.slot);
            slot.take()
        } else {
            None
        }
    }
}
