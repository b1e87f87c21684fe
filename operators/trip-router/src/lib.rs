//! `trip-router`: the stateless first step for trip lifecycle events.
//!
//! It reads every `trip.*` topic (`trip.requested`, `trip.accepted`, `trip.declined`,
//! `trip.cancelled`, `trip.driver_arrived`, `trip.started`, `trip.completed`), decodes each with
//! its own schema, checks the pickup coordinate and the event time, and writes one `GeoTrip`
//! (the shared envelope plus the event kind) keyed by the pickup's region to `geo.trip`, plus a
//! copy flagged `halo` for each neighbouring region within the halo distance, so demand near a
//! border is seen by the neighbour's smoothing. A `trip.completed` that carries its duration
//! is also checked for a duration greater than 0 (`bad_duration`) and a plausible average
//! speed, distance / duration at most `max_trip_speed_mps` (`implausible_speed`); the pickup
//! is checked first, so each rejected event has exactly one reason: coordinate, then
//! duration, then speed, then event time. Bad records go to the DLQ with the reason.

use surgeflow_domain::routing::{
    Geometry, Rejection, TimeLimits, check_point, check_time, check_trip,
};
use surgeflow_kafka::Registry;
use surgeflow_runtime::{Context, Operator, OperatorFactory, Record, RecordError, TypedOutput};
use surgeflow_schema::{
    GeoTrip, Product, TripAccepted, TripCancelled, TripCompleted, TripDeclined, TripDriverArrived,
    TripEventKind, TripRequested, TripStarted,
};
use surgeflow_topology::Topology;

/// The operator's name in `topology.yaml`.
pub const NAME: &str = "trip-router";

/// The kind of event an input topic carries, from its name's last two segments
/// (`trip.requested`, or `<namespace>.trip.requested` in a namespaced deployment).
pub fn kind_of(topic: &str) -> Option<TripEventKind> {
    let (rest, event) = topic.rsplit_once('.')?;
    if rest != "trip" && !rest.ends_with(".trip") {
        return None;
    }
    Some(match event {
        "requested" => TripEventKind::Requested,
        "accepted" => TripEventKind::Accepted,
        "declined" => TripEventKind::Declined,
        "cancelled" => TripEventKind::Cancelled,
        "driver_arrived" => TripEventKind::DriverArrived,
        "started" => TripEventKind::Started,
        "completed" => TripEventKind::Completed,
        _ => return None,
    })
}

/// The envelope fields every trip event shares, taken from any of the seven types.
struct Envelope {
    trip_id: String,
    rider_id: String,
    product: Product,
    pickup_lat: f64,
    pickup_lon: f64,
    driver_id: Option<String>,
    proposal_id: Option<String>,
    /// `trip.completed` only: the trip's duration (seconds) and distance (metres), when sent.
    duration_s: Option<f64>,
    distance_m: Option<f64>,
    event_time: i64,
}

/// Builds an [`Envelope`] from a decoded event bound to `$e`, with expressions (in terms of
/// `$e`) for the fields not every event has (duration and distance: `trip.completed` only).
macro_rules! envelope {
    ($e:ident = $decoded:expr; driver: $driver:expr; proposal: $proposal:expr) => {
        envelope!($e = $decoded; driver: $driver; proposal: $proposal; duration: None; distance: None)
    };
    ($e:ident = $decoded:expr; driver: $driver:expr; proposal: $proposal:expr;
        duration: $duration:expr; distance: $distance:expr) => {{
        let $e = $decoded;
        Envelope {
            driver_id: $driver,
            proposal_id: $proposal,
            duration_s: $duration,
            distance_m: $distance,
            trip_id: $e.trip_id,
            rider_id: $e.rider_id,
            product: $e.product,
            pickup_lat: $e.pickup_lat,
            pickup_lon: $e.pickup_lon,
            event_time: $e.event_time,
        }
    }};
}

/// The trip router.
pub struct TripRouter {
    geometry: Geometry,
    time: TimeLimits,
    max_trip_speed_mps: f64,
    output: TypedOutput<GeoTrip>,
}

impl TripRouter {
    fn decode(
        kind: TripEventKind,
        payload: Option<&[u8]>,
        ctx: &Context<'_>,
    ) -> Result<Envelope, RecordError> {
        Ok(match kind {
            TripEventKind::Requested => {
                envelope!(e = ctx.decode::<TripRequested>(payload)?; driver: None; proposal: None)
            }
            TripEventKind::Accepted => envelope!(e = ctx.decode::<TripAccepted>(payload)?;
                driver: Some(e.driver_id.clone()); proposal: e.proposal_id.clone()),
            TripEventKind::Declined => envelope!(e = ctx.decode::<TripDeclined>(payload)?;
                driver: Some(e.driver_id.clone()); proposal: e.proposal_id.clone()),
            TripEventKind::Cancelled => envelope!(e = ctx.decode::<TripCancelled>(payload)?;
                driver: e.driver_id.clone(); proposal: None),
            TripEventKind::DriverArrived => {
                envelope!(e = ctx.decode::<TripDriverArrived>(payload)?;
                driver: Some(e.driver_id.clone()); proposal: None)
            }
            TripEventKind::Started => envelope!(e = ctx.decode::<TripStarted>(payload)?;
                driver: Some(e.driver_id.clone()); proposal: None),
            TripEventKind::Completed => envelope!(e = ctx.decode::<TripCompleted>(payload)?;
                driver: Some(e.driver_id.clone()); proposal: None;
                duration: e.trip_duration_s; distance: e.distance_m),
        })
    }

    fn route(
        &mut self,
        kind: TripEventKind,
        event: Envelope,
        ctx: &mut Context<'_>,
    ) -> Result<(), RecordError> {
        let reject = |r: Rejection| RecordError::invalid(r.reason(), r);
        let point = check_point(event.pickup_lat, event.pickup_lon).map_err(reject)?;
        check_trip(event.duration_s, event.distance_m, self.max_trip_speed_mps).map_err(reject)?;
        check_time(event.event_time, ctx.now_ms, self.time).map_err(reject)?;
        let route = self
            .geometry
            .route(point)
            .map_err(|e| RecordError::invalid("unroutable", e))?;
        let mut copy = GeoTrip {
            kind,
            trip_id: event.trip_id,
            rider_id: event.rider_id,
            product: event.product,
            pickup_lat: event.pickup_lat,
            pickup_lon: event.pickup_lon,
            driver_id: event.driver_id,
            proposal_id: event.proposal_id,
            cell: route.cell.to_bits() as i64,
            region: 0,
            halo: false,
            event_time: event.event_time,
        };
        for (region, halo) in route.targets() {
            (copy.region, copy.halo) = (region.cell().to_bits() as i64, halo);
            self.output.emit(ctx.out, region, copy.event_time, &copy)?;
        }
        Ok(())
    }
}

impl Operator for TripRouter {
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        let kind = kind_of(record.topic).ok_or_else(|| {
            RecordError::Fatal(format!("{NAME} cannot read topic {}", record.topic))
        })?;
        let event = Self::decode(kind, record.payload, ctx)?;
        self.route(kind, event, ctx)
    }
}

impl OperatorFactory for TripRouter {
    const NAME: &'static str = NAME;

    async fn build(topology: &Topology, registry: &Registry) -> anyhow::Result<Self> {
        let spec = topology
            .operators
            .trip_router
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
        if let Some(unknown) = spec.inputs.iter().find(|t| kind_of(t).is_none()) {
            anyhow::bail!(
                "operators.{NAME}.inputs: {unknown} is not a trip.* topic this router knows"
            );
        }
        let [output] = spec.outputs.as_slice() else {
            anyhow::bail!("operators.{NAME}.outputs: exactly one output topic expected");
        };
        Ok(TripRouter {
            geometry: Geometry {
                cell_precision: topology.geo.cell_precision,
                region_precision: topology.geo.region_precision,
                halo_m: topology.geo.halo_m,
            },
            time: TimeLimits {
                max_future_ms: spec.params.max_future_ms as i64,
                max_age_ms: spec.params.max_age_ms as i64,
            },
            max_trip_speed_mps: spec.params.max_trip_speed_mps,
            output: TypedOutput::register(&spec.outputs, output, registry).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_topic_name() {
        assert_eq!(kind_of("trip.requested"), Some(TripEventKind::Requested));
        assert_eq!(
            kind_of("staging.trip.driver_arrived"),
            Some(TripEventKind::DriverArrived)
        );
        assert_eq!(kind_of("trip.unknown"), None);
        assert_eq!(kind_of("geo.trip"), None);
        assert_eq!(kind_of("roundtrip.requested"), None);
        assert_eq!(kind_of("requested"), None);
    }
}
