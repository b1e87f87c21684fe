//! Benchmark S1's throughput run: the `location-router` binary from offset 0 of pre-loaded
//! pings until every routed copy is on `geo.driver`.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use serde_yaml_ng::Value;
use surgeflow_domain::routing::check_point;
use surgeflow_schema::LocationUpdate;
use surgeflow_sim::{CityConfig, SimEvent, Simulation};

use super::{Drained, apply, drain, geometry, high_watermarks, now_ms};
use crate::{OperatorProcess, TestTopology, clients, produce};

/// `count` pings of a simulated city (5,000 drivers), recent enough for the router's age
/// check, keyed by driver.
pub fn pings(count: usize) -> Vec<(String, LocationUpdate)> {
    let drivers = 5000u32;
    let span_ms = (count as i64 / i64::from(drivers) + 1) * 4000;
    let start = now_ms() - span_ms - 60_000;
    let config = CityConfig {
        drivers,
        start_time_ms: start,
        ..CityConfig::default()
    };
    let mut sim = Simulation::new(config, 1).expect("city");
    let mut events = Vec::new();
    sim.advance_to(start + span_ms, &mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            SimEvent::LocationUpdate(p) => Some((p.driver_id.clone(), p)),
            _ => None,
        })
        .take(count)
        .collect()
}

/// The router's batch size in these runs.
pub const MAX_BATCH: usize = 5000;

/// A finished throughput run; the router keeps running (on `port`) until dropped.
pub struct RouterRun {
    pub mode: &'static str,
    pub topology: TestTopology,
    pub router: OperatorProcess,
    pub port: u16,
    pub events: usize,
    /// Routed copies written (home plus halo).
    pub outputs: usize,
    pub drained: Drained,
}

/// Applies a fresh namespaced topology with `delivery` mode and `max_batch` [`MAX_BATCH`],
/// pre-loads `input` into `location.update`, starts the router (`binary`) on `port` and
/// waits until every expected copy is on `geo.driver` (by high watermarks).
pub async fn throughput(
    mode: &'static str,
    input: &[(String, LocationUpdate)],
    binary: &Path,
    port: u16,
) -> RouterRun {
    let t = TestTopology::with("bench-s1", |doc: &mut Value| {
        doc["operators"]["location-router"]["delivery"] = Value::from(mode);
        doc["operators"]["location-router"]["max_batch"] = Value::from(MAX_BATCH);
    });
    apply(&t).await;
    produce(&t.topic("location.update"), input).await;
    let geometry = geometry(&t);
    let outputs: usize = input
        .iter()
        .map(|(_, p)| {
            geometry
                .route(check_point(p.lat, p.lon).expect("valid"))
                .expect("routable")
                .targets()
                .count()
        })
        .sum();
    let consumer: BaseConsumer = clients().base().create().expect("client");
    let output = t.topic("geo.driver");
    let started = Instant::now();
    let router = OperatorProcess::start_on(binary, &t, "bench-0", port);
    let drained = drain(
        router.pid(),
        started,
        || high_watermarks(&consumer, &output),
        outputs as i64,
        Duration::from_secs(600),
    );
    RouterRun {
        mode,
        topology: t,
        router,
        port,
        events: input.len(),
        outputs,
        drained,
    }
}
