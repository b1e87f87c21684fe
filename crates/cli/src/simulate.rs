//! `surgeflow simulate`: run the synthetic city of `surgeflow-sim` and produce its events as
//! Avro to `location.update` and `trip.*`.
//!
//! Pacing: by default the city runs in real time (event time follows the wall clock, as live
//! upstream services would). `--rate N` produces N events per second instead, running the
//! city's clock as fast or as slow as that takes, and `--rate max` as fast as the producer
//! goes. `--duration` is wall-clock time. The same `--seed` and city flags give the same
//! events (only their event times shift with `--start-ms`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::ClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use surgeflow_kafka::{ClientFactory, Encoder, Registry};
use surgeflow_schema::{
    LocationUpdate, TripAccepted, TripCancelled, TripCompleted, TripDeclined, TripDriverArrived,
    TripRequested, TripStarted,
};
use surgeflow_sim::{CityConfig, SimEvent, Simulation, TOPICS};

use crate::{Failure, Outcome, load_topology, runtime};

#[derive(Args)]
pub struct SimulateArgs {
    /// Events per second to produce, or `max`; default: real time.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// How long to run, wall clock (e.g. `10s`, `5m`, `1h`).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Seed of the city's random numbers: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of drivers (each pings every ~4 s).
    #[arg(long, default_value_t = 2000)]
    drivers: u32,
    /// Trip requests per second of city time.
    #[arg(long, default_value_t = 5.0)]
    requests_per_s: f64,
    /// City centre as `LAT,LON`.
    #[arg(long, value_parser = parse_lat_lon)]
    center: Option<(f64, f64)>,
    /// City radius in metres.
    #[arg(long)]
    radius_m: Option<f64>,
    /// Event time of the first event, UTC milliseconds; default: now.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Stop after this many events.
    #[arg(long)]
    max_events: Option<u64>,
    /// Write to `<PREFIX>.location.update`, `<PREFIX>.trip.requested`, ... instead (for
    /// namespaced environments sharing a cluster).
    #[arg(long)]
    topic_prefix: Option<String>,
}

/// The topics events go to, in the order of the simulator's `TOPICS`.
struct Topics([String; 8]);

impl Topics {
    fn new(prefix: Option<&str>) -> Self {
        Topics(TOPICS.map(|t| match prefix {
            Some(p) => format!("{p}.{t}"),
            None => t.to_string(),
        }))
    }

    /// The topic `event` goes to.
    fn of(&self, event: &SimEvent) -> &str {
        let index = TOPICS.iter().position(|t| *t == event.topic()).unwrap_or(0);
        &self.0[index]
    }
}

/// How fast to produce.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rate {
    PerSecond(f64),
    Max,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(Rate::PerSecond(n)),
        _ => Err(format!(
            "expected a positive number of events per second or `max`, got `{text}`"
        )),
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 5m, got `{text}`"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown duration unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("duration `{text}`: {e}"))
}

fn parse_lat_lon(text: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = text
        .split_once(',')
        .ok_or_else(|| format!("expected LAT,LON, got `{text}`"))?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| format!("bad latitude `{lat}`"))?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| format!("bad longitude `{lon}`"))?;
    Ok((lat, lon))
}

/// Counts delivery failures reported by librdkafka, keeping the first reason.
#[derive(Default)]
struct DeliveryReport {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| format!("{}: {error}", message.topic()));
        }
    }
}

/// One encoder per topic the simulator writes.
struct Encoders {
    location: Encoder<LocationUpdate>,
    requested: Encoder<TripRequested>,
    accepted: Encoder<TripAccepted>,
    declined: Encoder<TripDeclined>,
    cancelled: Encoder<TripCancelled>,
    arrived: Encoder<TripDriverArrived>,
    started: Encoder<TripStarted>,
    completed: Encoder<TripCompleted>,
}

impl Encoders {
    async fn register(registry: &Registry, topics: &Topics) -> Result<Self, Failure> {
        async fn one<T: surgeflow_schema::AvroRecord>(
            registry: &Registry,
            topic: &str,
        ) -> Result<Encoder<T>, Failure> {
            Encoder::register(registry, &format!("{topic}-value"))
                .await
                .map_err(Failure::runtime)
        }
        Ok(Encoders {
            location: one(registry, &topics.0[0]).await?,
            requested: one(registry, &topics.0[1]).await?,
            accepted: one(registry, &topics.0[2]).await?,
            declined: one(registry, &topics.0[3]).await?,
            cancelled: one(registry, &topics.0[4]).await?,
            arrived: one(registry, &topics.0[5]).await?,
            started: one(registry, &topics.0[6]).await?,
            completed: one(registry, &topics.0[7]).await?,
        })
    }

    fn encode(
        &self,
        event: &SimEvent,
        buf: &mut Vec<u8>,
    ) -> Result<(), surgeflow_kafka::EncodeError> {
        match event {
            SimEvent::LocationUpdate(e) => self.location.encode_into(e, buf),
            SimEvent::TripRequested(e) => self.requested.encode_into(e, buf),
            SimEvent::TripAccepted(e) => self.accepted.encode_into(e, buf),
            SimEvent::TripDeclined(e) => self.declined.encode_into(e, buf),
            SimEvent::TripCancelled(e) => self.cancelled.encode_into(e, buf),
            SimEvent::TripDriverArrived(e) => self.arrived.encode_into(e, buf),
            SimEvent::TripStarted(e) => self.started.encode_into(e, buf),
            SimEvent::TripCompleted(e) => self.completed.encode_into(e, buf),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(args: SimulateArgs, path: &Path) -> Outcome {
    let topology = load_topology(path)?;
    let topics = Topics::new(args.topic_prefix.as_deref());
    for topic in &topics.0 {
        if topology.topic(topic).is_none() {
            return Err(Failure::usage(format!(
                "topic {topic} is not declared in {}",
                path.display()
            )));
        }
    }
    let mut city = CityConfig {
        drivers: args.drivers,
        requests_per_s: args.requests_per_s,
        start_time_ms: args.start_ms.unwrap_or_else(now_ms),
        ..CityConfig::default()
    };
    if let Some((lat, lon)) = args.center {
        // Hotspots are placed relative to the default centre; move them with the city.
        let (dlat, dlon) = (lat - city.center_lat, lon - city.center_lon);
        for h in &mut city.hotspots {
            h.lat += dlat;
            h.lon += dlon;
        }
        city.center_lat = lat;
        city.center_lon = lon;
    }
    if let Some(radius) = args.radius_m {
        // Hotspots sit at fixed offsets of the default city: scale them with it, so they
        // stay inside a smaller or larger one.
        let scale = radius / city.radius_m;
        for h in &mut city.hotspots {
            h.lat = city.center_lat + (h.lat - city.center_lat) * scale;
            h.lon = city.center_lon + (h.lon - city.center_lon) * scale;
            h.radius_m *= scale;
        }
        city.radius_m = radius;
    }
    let mut sim = Simulation::new(city, args.seed).map_err(Failure::usage)?;

    let factory = ClientFactory::from_topology(&topology.connection.kafka);
    let producer: BaseProducer<DeliveryReport> = factory
        .producer_config()
        .create_with_context(DeliveryReport::default())
        .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
    check_topics_exist(&factory, &topics)?;
    let registry =
        Registry::from_topology(&topology.connection.registry).map_err(Failure::usage)?;
    let encoders = runtime()?.block_on(Encoders::register(&registry, &topics))?;

    let progress = Progress::new();
    let started = Instant::now();
    let sim_start = sim.config().start_time_ms;
    let mut sim_clock = sim_start;
    let mut events: Vec<SimEvent> = Vec::new();
    let mut next = 0usize;
    let mut produced = 0u64;
    let mut payload = Vec::with_capacity(256);
    let max_events = args.max_events.unwrap_or(u64::MAX);
    let mut progress_due = Duration::from_secs(1);
    while started.elapsed() < args.duration && produced < max_events {
        let elapsed = started.elapsed();
        let allowance = match args.rate {
            None => {
                let target = sim_start + elapsed.as_millis() as i64;
                if target > sim_clock {
                    sim_clock = target;
                    sim.advance_to(sim_clock, &mut events);
                }
                u64::MAX
            }
            Some(Rate::PerSecond(n)) => (n * elapsed.as_secs_f64()) as u64,
            Some(Rate::Max) => u64::MAX,
        };
        if next == events.len() && args.rate.is_some() {
            events.clear();
            next = 0;
            sim_clock += 1000;
            sim.advance_to(sim_clock, &mut events);
        }
        let mut sent_any = false;
        while next < events.len() && produced < allowance.min(max_events) {
            let event = &events[next];
            payload.clear();
            encoders
                .encode(event, &mut payload)
                .map_err(Failure::runtime)?;
            let mut record = BaseRecord::to(topics.of(event))
                .key(event.key())
                .payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(Failure::runtime(format!(
                            "producing to {}: {e}",
                            topics.of(event)
                        )));
                    }
                }
            }
            next += 1;
            produced += 1;
            sent_any = true;
        }
        if args.rate.is_none() && next == events.len() {
            events.clear();
            next = 0;
        }
        producer.poll(Duration::ZERO);
        if !sent_any {
            std::thread::sleep(Duration::from_millis(2));
        }
        if started.elapsed() >= progress_due {
            progress.show(started.elapsed(), produced, sim_clock - sim_start, &sim);
            progress_due += Duration::from_secs(1);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| Failure::runtime(format!("flushing the producer: {e}")))?;
    progress.finish();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "produced {produced} events in {elapsed:.1}s ({:.0}/s), {:.0}s of city time, seed {}",
        produced as f64 / elapsed.max(1e-9),
        (sim_clock - sim_start) as f64 / 1000.0,
        args.seed
    );
    for (topic, count) in sim.stats().per_topic() {
        println!("  {topic:<20} {count}");
    }
    if failed > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return Err(Failure::runtime(format!(
            "{failed} records were not delivered; first: {}",
            first.unwrap_or_default()
        )));
    }
    Ok(0)
}

/// Fails early, with the fix, when the input topics were never created.
fn check_topics_exist(factory: &ClientFactory, topics: &Topics) -> Result<(), Failure> {
    let consumer: rdkafka::consumer::BaseConsumer = factory
        .base()
        .create()
        .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| Failure::runtime(format!("connecting to Kafka: {e}")))?;
    let missing: Vec<&str> = topics
        .0
        .iter()
        .map(String::as_str)
        .filter(|t| {
            !metadata
                .topics()
                .iter()
                .any(|m| m.name() == *t && m.error().is_none())
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "topics missing in the cluster: {} (run `surgeflow topology apply`)",
            missing.join(", ")
        )))
    }
}

/// The live progress line on stderr: carriage-return updates on a terminal, a line every
/// 5 seconds otherwise (logs).
struct Progress {
    terminal: bool,
    last_count: Mutex<(Duration, u64)>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_count: Mutex::new((Duration::ZERO, 0)),
        }
    }

    fn show(&self, elapsed: Duration, produced: u64, city_ms: i64, sim: &Simulation) {
        let mut last = self.last_count.lock().unwrap_or_else(|e| e.into_inner());
        let window = (elapsed - last.0).as_secs_f64().max(1e-9);
        let rate = (produced - last.1) as f64 / window;
        if !self.terminal && !elapsed.as_secs().is_multiple_of(5) {
            return;
        }
        *last = (elapsed, produced);
        let stats = sim.stats();
        let line = format!(
            "[{:>6.1}s] {rate:>8.0} ev/s | total {produced} | city time +{}s | pings {} requests {} accepted {} cancelled {} completed {}",
            elapsed.as_secs_f64(),
            city_ms / 1000,
            stats.count("location.update"),
            stats.count("trip.requested"),
            stats.count("trip.accepted"),
            stats.count("trip.cancelled"),
            stats.count("trip.completed"),
        );
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn parses_rates_and_centres() {
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert_eq!(parse_rate("3000"), Ok(Rate::PerSecond(3000.0)));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
        assert_eq!(parse_lat_lon("40.7,-73.9"), Ok((40.7, -73.9)));
        assert!(parse_lat_lon("40.7").is_err());
    }
}
