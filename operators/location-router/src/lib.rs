//! `location-router`: the stateless first step for driver pings.
//!
//! For every `location.update` record: decode it, check it (the bad-GPS rules of
//! `surgeflow_domain::routing`: coordinates, accuracy, speed, heading, event time), compute its
//! cell and region, and write a `GeoDriver` keyed by region to `geo.driver`, plus one copy per
//! neighbouring region within the halo distance, flagged `halo`. Every copy carries the ping's
//! event time as its record timestamp. A record that fails any check goes to the DLQ with the
//! reason; nothing stalls the partition.

use surgeflow_domain::routing::{
    Geometry, Rejection, TimeLimits, check_motion, check_point, check_time,
};
use surgeflow_kafka::Registry;
use surgeflow_runtime::{Context, Operator, OperatorFactory, Record, RecordError, TypedOutput};
use surgeflow_schema::{GeoDriver, LocationUpdate};
use surgeflow_topology::Topology;

/// The operator's name in `topology.yaml`.
pub const NAME: &str = "location-router";

/// The location router.
pub struct LocationRouter {
    geometry: Geometry,
    time: TimeLimits,
    max_accuracy_m: f64,
    output: TypedOutput<GeoDriver>,
}

fn reject(r: Rejection) -> RecordError {
    RecordError::invalid(r.reason(), r)
}

impl LocationRouter {
    /// Checks and routes one decoded ping, emitting its copies.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] with the rejection reason.
    pub fn route(
        &mut self,
        ping: &LocationUpdate,
        ctx: &mut Context<'_>,
    ) -> Result<(), RecordError> {
        let point = check_point(ping.lat, ping.lon).map_err(reject)?;
        check_motion(
            ping.accuracy_m,
            ping.speed_mps,
            ping.heading_deg,
            self.max_accuracy_m,
        )
        .map_err(reject)?;
        check_time(ping.event_time, ctx.now_ms, self.time).map_err(reject)?;
        let route = self
            .geometry
            .route(point)
            .map_err(|e| RecordError::invalid("unroutable", e))?;
        let mut copy = GeoDriver {
            driver_id: ping.driver_id.clone(),
            lat: ping.lat,
            lon: ping.lon,
            accuracy_m: ping.accuracy_m,
            speed_mps: ping.speed_mps,
            heading_deg: ping.heading_deg,
            status: ping.status,
            product: ping.product,
            cell: route.cell.to_bits() as i64,
            region: 0,
            halo: false,
            event_time: ping.event_time,
        };
        for (region, halo) in route.targets() {
            (copy.region, copy.halo) = (region.cell().to_bits() as i64, halo);
            self.output.emit(ctx.out, region, ping.event_time, &copy)?;
        }
        Ok(())
    }
}

impl Operator for LocationRouter {
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        let ping: LocationUpdate = ctx.decode(record.payload)?;
        self.route(&ping, ctx)
    }
}

impl OperatorFactory for LocationRouter {
    const NAME: &'static str = NAME;

    async fn build(topology: &Topology, registry: &Registry) -> anyhow::Result<Self> {
        let spec = topology
            .operators
            .location_router
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
        let [output] = spec.outputs.as_slice() else {
            anyhow::bail!("operators.{NAME}.outputs: exactly one output topic expected");
        };
        Ok(LocationRouter {
            geometry: Geometry {
                cell_precision: topology.geo.cell_precision,
                region_precision: topology.geo.region_precision,
                halo_m: topology.geo.halo_m,
            },
            time: TimeLimits {
                max_future_ms: spec.params.max_future_ms as i64,
                max_age_ms: spec.params.max_age_ms as i64,
            },
            max_accuracy_m: spec.params.max_accuracy_m,
            output: TypedOutput::register(&spec.outputs, output, registry).await?,
        })
    }
}
