//! `surgeflow simulate`: run the synthetic city of `surgeflow-sim` and produce its events as
//! Avro to `location.update` and `trip.*`.
//!
//! Pacing: by default the city runs in real time (event time follows the wall clock, as live
//! upstream services would). `--rate N` produces N events per second instead, running the
//! city's clock as fast or as slow as that takes, and `--rate max` as fast as the producer
//! goes. `--duration` is wall-clock time. The same `--seed` and city flags give the same
//! events (only their event times shift with `--start-ms`).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use surgeflow_sim::{CityConfig, Simulation};

use crate::produce::{EventProducer, Progress, now_ms, parse_duration};
use crate::{Failure, Outcome, load_topology};

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

pub fn run(args: SimulateArgs, path: &Path) -> Outcome {
    let topology = load_topology(path)?;
    EventProducer::check_declared(&topology, path, args.topic_prefix.as_deref())?;
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

    let mut producer = EventProducer::connect(&topology, path, args.topic_prefix.as_deref())?;

    let progress = Progress::new();
    let started = Instant::now();
    let sim_start = sim.config().start_time_ms;
    let mut sim_clock = sim_start;
    let mut events = Vec::new();
    let mut next = 0usize;
    let max_events = args.max_events.unwrap_or(u64::MAX);
    let mut progress_due = Duration::from_secs(1);
    while started.elapsed() < args.duration && producer.produced() < max_events {
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
        while next < events.len() && producer.produced() < allowance.min(max_events) {
            producer.send(&events[next])?;
            next += 1;
            sent_any = true;
        }
        if args.rate.is_none() && next == events.len() {
            events.clear();
            next = 0;
        }
        producer.poll();
        if !sent_any {
            std::thread::sleep(Duration::from_millis(2));
        }
        if started.elapsed() >= progress_due {
            progress.show(started.elapsed(), producer.produced(), || {
                let stats = sim.stats();
                format!(
                    "city time +{}s | pings {} requests {} accepted {} cancelled {} completed {}",
                    (sim_clock - sim_start) / 1000,
                    stats.count("location.update"),
                    stats.count("trip.requested"),
                    stats.count("trip.accepted"),
                    stats.count("trip.cancelled"),
                    stats.count("trip.completed"),
                )
            });
            progress_due += Duration::from_secs(1);
        }
    }
    let produced = producer.produced();
    let delivered = producer.finish();
    progress.finish();
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
    delivered?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
