//! Benchmark S1: the `location-router` binary against the real broker.
//!
//! Pre-loads simulated pings into `location.update` (so the load generator does not compete
//! for the cores), then starts the router from offset 0 and times it until every routed copy
//! is on `geo.driver`. Reports events/s, CPU seconds of the router process per million events
//! (the main figure: wall time on a shared 2-core machine is noisy) and peak RSS, for
//! exactly-once and at-least-once delivery, and writes the figures as JSON.
//!
//! `cargo bench -p surgeflow-location-router --bench throughput` (env `S1_PINGS` sets the
//! number of pings, default 300000).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_yaml_ng::Value;
use surgeflow_domain::routing::{Geometry, check_point};
use surgeflow_schema::LocationUpdate;
use surgeflow_sim::{CityConfig, SimEvent, Simulation};
use surgeflow_testkit::{
    OperatorProcess, ProcessUsage, TestTopology, clients, produce, workspace_binary,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `count` pings of a simulated city, recent enough for the router's age check.
fn pings(count: usize) -> Vec<(String, LocationUpdate)> {
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

/// Records on `topic` by high watermarks (transaction markers included, so an upper bound).
fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> i64 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

struct Figures {
    mode: &'static str,
    events: usize,
    outputs: usize,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss: u64,
}

async fn run(
    mode: &'static str,
    input: &[(String, LocationUpdate)],
    binary: &std::path::Path,
) -> Figures {
    let t = TestTopology::with("bench-s1", |doc: &mut Value| {
        doc["operators"]["location-router"]["delivery"] = Value::from(mode);
        doc["operators"]["location-router"]["max_batch"] = Value::from(5000);
    });
    t.apply().await;
    produce(&t.topic("location.update"), input).await;
    let geo = &t.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
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
    let router = OperatorProcess::start(binary, &t, "bench-0");
    let mut usage = ProcessUsage::default();
    while high_watermarks(&consumer, &output) < outputs as i64 {
        usage = ProcessUsage::of(router.pid());
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the router did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = started.elapsed().as_secs_f64();
    let end = ProcessUsage::of(router.pid());
    if end.cpu_seconds > 0.0 {
        usage = end;
    }
    Figures {
        mode,
        events: input.len(),
        outputs,
        seconds,
        cpu_seconds: usage.cpu_seconds,
        peak_rss: usage.peak_rss,
    }
}

#[tokio::main]
async fn main() {
    let count = std::env::var("S1_PINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let binary = workspace_binary("surgeflow-location-router", "location-router");
    let input = pings(count);
    println!(
        "S1 location-router: {} pings pre-loaded, 6 input partitions, 12 output partitions",
        input.len()
    );
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>10} {:>14} {:>10}",
        "mode", "events", "copies", "wall s", "events/s", "CPU s/M events", "peak RSS"
    );
    let mut json = Vec::new();
    for mode in ["exactly_once", "at_least_once"] {
        let f = run(mode, &input, &binary).await;
        let per_million = f.cpu_seconds / (f.events as f64 / 1e6);
        println!(
            "{:<14} {:>9} {:>9} {:>9.2} {:>10.0} {:>14.2} {:>7} MiB",
            f.mode,
            f.events,
            f.outputs,
            f.seconds,
            f.events as f64 / f.seconds,
            per_million,
            f.peak_rss / (1 << 20)
        );
        json.push(format!(
            "{{\"mode\":\"{}\",\"events\":{},\"copies\":{},\"wall_seconds\":{:.3},\"cpu_seconds\":{:.3},\"cpu_seconds_per_million\":{:.3},\"peak_rss_bytes\":{}}}",
            f.mode, f.events, f.outputs, f.seconds, f.cpu_seconds, per_million, f.peak_rss
        ));
    }
    let path = surgeflow_testkit::project_root()
        .join("target")
        .join("bench-s1.json");
    std::fs::write(&path, format!("[{}]\n", json.join(","))).expect("writing the JSON");
    println!(
        "(wall time includes process start, group join and transaction init; JSON in {})",
        path.display()
    );
}
