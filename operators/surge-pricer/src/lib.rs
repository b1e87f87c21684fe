//! `surge-pricer`: supply and demand per geohash cell and product, and the surge multipliers
//! they set, published to the compacted `surge.multiplier` topic.
//!
//! It reads the region-keyed `geo.driver` and `geo.trip` topics, which are co-partitioned
//! (partition p of both carries the same regions), and keeps one
//! [`SurgeEngine`](surgeflow_domain::surge::SurgeEngine) per partition: the event-time
//! windows, watermark, smoothing, curve, damping and hysteresis are all there, pure and
//! tested; this crate is the thin shell that feeds it records, publishes what it returns and
//! serves its current view over HTTP.
//!
//! **Restore.** After a crash or a rebalance the runtime replays the last
//! `replay_horizon_ms` of a new partition's input (with output suppressed) into an engine in
//! restoring mode; when the partition is handed over, the multipliers it last published are
//! read back from `surge.multiplier` and seeded, and the engine goes live. A restored engine
//! then publishes exactly what one that never stopped would have.
//!
//! **Time.** The engine's processing clock is the wall clock of the batch, for ingesting and
//! for ticking alike: its idle advance compares the time since the last record with
//! `idle_advance_ms`, so both must come from the same clock. (Record timestamps are event
//! times: the routers stamp their outputs with them.) A restoring engine never advances on
//! idle, and the wall clock at replay only matters for the "too far in the future" check, which
//! the routers already applied.

mod meters;
mod published;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use metrics::Histogram;

use surgeflow_domain::geo::{Cell, LatLon, Region};
use surgeflow_domain::surge::{
    Admission, DriverKey, DriverPing, DriverStatus as EngineStatus, SurgeConfig, SurgeEngine,
    SurgeUpdate, TripKey, TripKind, TripSignal, replay_horizon_ms,
};
use surgeflow_kafka::{ClientFactory, Registry};
use surgeflow_runtime::telemetry::GaugeTable;
use surgeflow_runtime::{
    Context, Operator, OperatorFactory, Record, RecordError, TopicPartition, TypedOutput,
};
use surgeflow_schema::{DriverStatus, GeoDriver, GeoTrip, Product, SurgeMultiplier, TripEventKind};
use surgeflow_topology::Topology;

pub use meters::{CELL_GAUGES, CELL_LABELS, MULTIPLIER_HISTOGRAM, multiplier_buckets};
pub use view::{CellReport, SharedView};

/// The operator's name in `topology.yaml`.
pub const NAME: &str = "surge-pricer";

/// A stable 64-bit hash (FNV-1a) of an id: the engine keys drivers and trips by it, and a
/// replay in another process must derive the same keys.
pub fn stable_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which input a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Drivers,
    Trips,
}

/// The engine of one partition, and the regions it has seen non-halo records of.
struct Partition {
    engine: SurgeEngine<Product>,
    regions: BTreeSet<Region>,
    /// The processing clock of the last record ingested.
    last_ingest_ms: i64,
    /// The engine's last tick when the per-cell gauges were last exported.
    exported_tick: Option<i64>,
}

/// The surge pricer.
pub struct SurgePricer {
    config: SurgeConfig,
    driver_topic: String,
    trip_topic: String,
    output: TypedOutput<SurgeMultiplier>,
    output_topic: String,
    factory: ClientFactory,
    registry: Registry,
    partitions: BTreeMap<i32, Partition>,
    view: SharedView,
    updates: Vec<SurgeUpdate<Product>>,
    /// `surgeflow_surge_multiplier`: every multiplier published.
    published: Histogram,
    /// The per-cell gauges of the cells surging most.
    cell_gauges: meters::CellGauges,
    /// The set of partitions changed since the per-cell gauges were exported.
    cells_dirty: bool,
}

fn engine_status(status: DriverStatus) -> EngineStatus {
    match status {
        DriverStatus::Available => EngineStatus::Available,
        DriverStatus::Dispatched => EngineStatus::Dispatched,
        DriverStatus::OnTrip => EngineStatus::OnTrip,
        DriverStatus::Offline => EngineStatus::Offline,
    }
}

fn trip_kind(kind: TripEventKind) -> TripKind {
    match kind {
        TripEventKind::Requested => TripKind::Requested,
        TripEventKind::Accepted => TripKind::Accepted,
        TripEventKind::Declined => TripKind::Declined,
        TripEventKind::Cancelled => TripKind::Cancelled,
        TripEventKind::DriverArrived => TripKind::DriverArrived,
        TripEventKind::Started => TripKind::Started,
        TripEventKind::Completed => TripKind::Completed,
    }
}

fn cell_of(bits: i64) -> Result<Cell, RecordError> {
    Cell::from_bits(bits as u64).map_err(|e| RecordError::invalid("bad_cell", e))
}

/// The engine settings from the topology.
pub fn engine_config(topology: &Topology) -> anyhow::Result<SurgeConfig> {
    let spec = topology
        .operators
        .surge_pricer
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
    let p = &spec.params;
    let max_future_ms = topology
        .operators
        .location_router
        .as_ref()
        .map_or(30_000, |r| r.params.max_future_ms as i64);
    let config = SurgeConfig {
        cell_precision: topology.geo.cell_precision,
        region_precision: topology.geo.region_precision,
        supply_ttl_ms: p.supply_ttl_ms as i64,
        demand_window_ms: p.demand_window_ms as i64,
        demand_hop_ms: p.demand_hop_ms as i64,
        allowed_lateness_ms: p.allowed_lateness_ms as i64,
        idle_advance_ms: p.idle_advance_ms as i64,
        max_future_ms,
        tick_ms: p.tick_ms as i64,
        smoothing_rings: p.smoothing_rings,
        smoothing_decay: p.smoothing_decay,
        curve: p.curve.iter().map(|c| (c.ratio, c.multiplier)).collect(),
        cap: p.cap,
        step: p.step,
        ewma_alpha: p.ewma_alpha,
        max_change_per_tick: p.max_change_per_tick,
        hysteresis: p.hysteresis,
        stale_after_ms: p.stale_after_ms as i64,
        ..SurgeConfig::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("operators.{NAME}.params: {e}"))?;
    Ok(config)
}

impl SurgePricer {
    fn input(&self, topic: &str) -> Result<Input, RecordError> {
        if topic == self.driver_topic {
            Ok(Input::Drivers)
        } else if topic == self.trip_topic {
            Ok(Input::Trips)
        } else {
            Err(RecordError::Fatal(format!("{NAME} does not read {topic}")))
        }
    }

    /// The partition's engine, created on its first record: restoring while the runtime
    /// replays, live otherwise.
    fn partition(
        &mut self,
        partition: i32,
        ctx: &Context<'_>,
    ) -> Result<&mut Partition, RecordError> {
        if !self.partitions.contains_key(&partition) {
            // A restoring engine ignores nothing: the runtime replays from a broker time, and
            // event times may be anything (a replay of historical data), so cutting by event
            // time here could drop records the first pass applied.
            let engine = if ctx.restoring {
                SurgeEngine::restoring(self.config.clone(), i64::MIN)
            } else {
                SurgeEngine::new(self.config.clone())
            }
            .map_err(|e| RecordError::Fatal(e.to_string()))?;
            self.partitions.insert(
                partition,
                Partition {
                    engine,
                    regions: BTreeSet::new(),
                    last_ingest_ms: ctx.now_ms,
                    exported_tick: None,
                },
            );
        }
        self.partitions
            .get_mut(&partition)
            .ok_or_else(|| RecordError::Fatal("partition vanished".into()))
    }

    fn publish(&mut self, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        for u in self.updates.drain(..) {
            let value = SurgeMultiplier {
                cell: u.cell.to_string(),
                product: u.product,
                multiplier: u.multiplier,
                supply: u.supply as i32,
                demand: u.demand as i32,
                stale: u.stale,
                window_start: u.window_start_ms,
                window_end: u.window_end_ms,
                computed_at: u.computed_at_ms,
            };
            self.published.record(value.multiplier);
            let key = format_args!("{}:{}", value.cell, value.product.symbol());
            self.output.emit(ctx.out, key, value.computed_at, &value)?;
        }
        Ok(())
    }

    /// Exports the per-cell gauges of the cells surging most across the live partitions.
    fn export_cells(&self) {
        let views = self
            .partitions
            .values()
            .filter(|part| !part.engine.is_restoring())
            .flat_map(|part| part.engine.cell_views())
            .collect();
        self.cell_gauges.export(views);
    }
}

impl Operator for SurgePricer {
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        let now = ctx.now_ms;
        let region_precision = self.config.region_precision;
        let admission = match self.input(record.topic)? {
            Input::Drivers => {
                let d: GeoDriver = ctx.decode(record.payload)?;
                let cell = cell_of(d.cell)?;
                let part = self.partition(record.partition, ctx)?;
                part.last_ingest_ms = now;
                if !d.halo
                    && let Ok(region) = Region::of(cell, region_precision)
                {
                    part.regions.insert(region);
                }
                part.engine.ingest_ping(
                    DriverPing {
                        driver: DriverKey(stable_key(&d.driver_id)),
                        position: LatLon {
                            lat: d.lat,
                            lon: d.lon,
                        },
                        cell,
                        product: d.product,
                        status: engine_status(d.status),
                        halo: d.halo,
                        event_time_ms: d.event_time,
                    },
                    now,
                )
            }
            Input::Trips => {
                let t: GeoTrip = ctx.decode(record.payload)?;
                let cell = cell_of(t.cell)?;
                let part = self.partition(record.partition, ctx)?;
                part.last_ingest_ms = now;
                if !t.halo
                    && let Ok(region) = Region::of(cell, region_precision)
                {
                    part.regions.insert(region);
                }
                part.engine.ingest_trip(
                    TripSignal {
                        trip: TripKey(stable_key(&t.trip_id)),
                        kind: trip_kind(t.kind),
                        cell,
                        product: t.product,
                        halo: t.halo,
                        event_time_ms: t.event_time,
                    },
                    now,
                )
            }
        };
        let label = match admission {
            Admission::Accepted | Admission::BeforeReplay => None,
            Admission::Late => Some("late"),
            Admission::Future => Some("future"),
            Admission::Rejected(_) => Some("rejected"),
        };
        if let Some(outcome) = label
            && !ctx.restoring
        {
            metrics::counter!("surgeflow_records_dropped_total", "operator" => NAME,
                "topic" => record.topic.to_string(), "reason" => outcome)
            .increment(1);
        }
        if ctx.restoring
            && let Some(part) = self.partitions.get_mut(&record.partition)
        {
            // Replay ticks as the first pass did; a restoring engine returns no updates.
            part.engine.advance(now, &mut self.updates);
            self.updates.clear();
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        let mut watermark_lag = 0.0f64;
        for (partition, part) in &mut self.partitions {
            let before = self.updates.len();
            // Only a caught-up input may advance on idle: during a backlog, a pause between
            // records is a slow commit or a busy machine, not a quiet city, and extrapolating
            // the watermark through it would make the records still queued late.
            let clock = if ctx.caught_up {
                ctx.now_ms
            } else {
                part.last_ingest_ms
            };
            part.engine.advance(clock, &mut self.updates);
            if self.updates.len() > before || part.engine.last_tick().is_some() {
                self.view.refresh(*partition, &part.engine, &part.regions);
            }
            if let Some(w) = part.engine.watermark() {
                watermark_lag = watermark_lag.max((ctx.now_ms - w) as f64 / 1000.0);
            }
            if part.engine.last_tick() != part.exported_tick {
                part.exported_tick = part.engine.last_tick();
                self.cells_dirty = true;
            }
        }
        metrics::gauge!("surgeflow_watermark_lag_seconds", "operator" => NAME).set(watermark_lag);
        if std::mem::take(&mut self.cells_dirty) {
            self.export_cells();
        }
        self.publish(ctx)
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition], _ctx: &mut Context<'_>) {
        let numbers: BTreeSet<i32> = partitions.iter().map(|p| p.partition).collect();
        let restoring: Vec<i32> = numbers
            .iter()
            .copied()
            .filter(|p| {
                self.partitions
                    .get(p)
                    .is_some_and(|part| part.engine.is_restoring())
            })
            .collect();
        if restoring.is_empty() {
            return;
        }
        match published::read_all(&self.factory, &self.registry, &self.output_topic) {
            Ok(latest) => {
                for p in &restoring {
                    if let Some(part) = self.partitions.get_mut(p) {
                        for (cell, product, multiplier) in &latest {
                            let _ = part.engine.set_published(*cell, *product, *multiplier);
                        }
                        part.engine.finish_restore();
                    }
                }
                tracing::info!(partitions = ?restoring, multipliers = latest.len(), "restored partitions went live");
            }
            Err(e) => {
                // Without the published multipliers a restored engine would re-publish from
                // 1.0; stopping (and being restarted) is better than flapping prices.
                tracing::error!(error = %e, "reading back {}; dropping the restored state", self.output_topic);
                for p in &restoring {
                    self.partitions.remove(p);
                }
            }
        }
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        let numbers: BTreeSet<i32> = partitions.iter().map(|p| p.partition).collect();
        for p in numbers {
            self.partitions.remove(&p);
            self.view.forget(p);
        }
        self.cells_dirty = true;
    }

    fn restore_horizon_ms(&self) -> Option<i64> {
        Some(replay_horizon_ms(&self.config))
    }

    fn state_sizes(&self) -> Vec<(&'static str, f64)> {
        let (mut drivers, mut cells, mut trips, mut bytes) = (0, 0, 0, 0);
        for part in self.partitions.values() {
            drivers += part.engine.drivers_tracked();
            cells += part.engine.cells_tracked();
            trips += part.engine.trips_tracked();
            bytes += part.engine.bytes_estimate();
        }
        vec![
            ("drivers", drivers as f64),
            ("cells", cells as f64),
            ("trips", trips as f64),
            ("bytes", bytes as f64),
        ]
    }
}

impl OperatorFactory for SurgePricer {
    const NAME: &'static str = NAME;

    fn histogram_buckets(topology: &Topology) -> Vec<(&'static str, Vec<f64>)> {
        // A bad configuration is reported by `build`, with its reason.
        engine_config(topology)
            .map(|config| vec![(MULTIPLIER_HISTOGRAM, multiplier_buckets(&config))])
            .unwrap_or_default()
    }

    async fn build(topology: &Topology, registry: &Registry) -> anyhow::Result<Self> {
        let config = engine_config(topology)?;
        let spec = topology
            .operators
            .surge_pricer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
        let by_schema = |file: &str| {
            spec.inputs.iter().find(|t| {
                topology
                    .topic(t)
                    .and_then(|s| s.value.avro())
                    .is_some_and(|a| a.declared_path().ends_with(file))
            })
        };
        let driver_topic = by_schema("geo_driver.avsc")
            .ok_or_else(|| {
                anyhow::anyhow!("operators.{NAME}.inputs: no topic with the GeoDriver schema")
            })?
            .clone();
        let trip_topic = by_schema("geo_trip.avsc")
            .ok_or_else(|| {
                anyhow::anyhow!("operators.{NAME}.inputs: no topic with the GeoTrip schema")
            })?
            .clone();
        let [output_topic] = spec.outputs.as_slice() else {
            anyhow::bail!("operators.{NAME}.outputs: exactly one output topic expected");
        };
        let output = TypedOutput::register(&spec.outputs, output_topic, registry).await?;
        // Exported at 0 from the start, so that the first drops show in rates too.
        for topic in [&driver_topic, &trip_topic] {
            for reason in ["late", "future", "rejected"] {
                metrics::counter!("surgeflow_records_dropped_total", "operator" => NAME,
                    "topic" => topic.clone(), "reason" => reason)
                .increment(0);
            }
        }
        Ok(SurgePricer {
            config,
            driver_topic,
            trip_topic,
            output,
            output_topic: output_topic.clone(),
            factory: ClientFactory::from_topology(&topology.connection.kafka),
            registry: registry.clone(),
            partitions: BTreeMap::new(),
            view: SharedView::new(topology.geo.region_precision),
            updates: Vec::new(),
            published: metrics::histogram!(MULTIPLIER_HISTOGRAM, "operator" => NAME),
            cell_gauges: meters::CellGauges::new(NAME, spec.params.metrics_top_cells as usize),
            cells_dirty: false,
        })
    }

    fn routes(&self) -> axum::Router {
        view::routes(self.view.clone())
    }

    fn gauge_tables(&self) -> Vec<Arc<GaugeTable>> {
        vec![self.cell_gauges.table()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keys_do_not_depend_on_the_process() {
        assert_eq!(stable_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_key("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(stable_key("driver-000001"), stable_key("driver-000002"));
    }

    #[test]
    fn the_project_topology_gives_a_valid_engine_config() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let topology = Topology::load(root.join("topology.yaml")).unwrap();
        let config = engine_config(&topology).unwrap();
        assert_eq!(config.cap, 3.0);
        assert_eq!(config.curve, vec![(1.0, 1.0), (2.0, 1.5), (4.0, 2.5)]);
        assert_eq!(config.cell_precision, 6);
    }
}
