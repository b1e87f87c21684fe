//! Benchmark S3: the `matcher` binary against the real broker, requests against 100k drivers
//! (run by `operators/matcher/benches/latency.rs` and the S0–S6 harness; S5 reuses the city).
//!
//! For each [`Mode`] (greedy or batched, exactly once or at least once), in a fresh namespaced
//! topology, [`run`]:
//!
//! 1. starts the matcher on empty topics (baseline RSS), pre-loads the available drivers as
//!    `geo.driver` records (home and halo copies, keyed by region, stamped now) spread over a
//!    New-York-sized box, and waits until the matcher has consumed and indexed them;
//! 2. offers `geo.trip` REQUESTED records (home copies only, pickups near drivers) at a fixed
//!    rate on a fixed schedule, each stamped with its *intended* send time; a `read_committed`
//!    reader of `match.proposal` and `match.unfilled` records, per trip, the time of its first
//!    output minus the intended send time (so a stalled producer or broker counts against the
//!    latency: no coordinated omission);
//! 3. reports requests/s, latency p50/p99/p99.9, proposals vs unfilled, CPU seconds of the
//!    matcher process per million requests (and per million driver records while indexing),
//!    peak RSS and RSS per indexed driver ([`Figures`], [`print_table`], [`Figures::json`]).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon};
use surgeflow_domain::routing::Geometry;
use surgeflow_kafka::Encoder;
use surgeflow_schema::{DriverStatus, GeoDriver, GeoTrip, Product, TripEventKind};

use super::{
    OutputReader, Rng, Scheduled, apply, bucket_quantile_ms, geometry, json_ms, loadavg,
    metric_sum, now_ms, per_million, quantile, scrape, send_scheduled, start_after, wait_consumed,
    wait_for_metrics,
};
use crate::{
    OperatorProcess, ProcessUsage, TestTopology, free_port, produce_timed, registry, unique_name,
};

/// The New-York-sized box drivers are spread over (about 39 km × 25 km).
const MIN_LAT: f64 = 40.55;
const MAX_LAT: f64 = 40.90;
const MIN_LON: f64 = -74.05;
const MAX_LON: f64 = -73.75;

/// Hotspots (lat, lon, sigma in metres) holding 60 % of the drivers; the rest is uniform.
const HOTSPOTS: [(f64, f64, f64); 5] = [
    (40.758, -73.985, 1500.0), // Midtown
    (40.710, -74.008, 1200.0), // Financial District
    (40.690, -73.985, 1500.0), // Downtown Brooklyn
    (40.745, -73.920, 2000.0), // Long Island City / Astoria
    (40.780, -73.955, 1500.0), // Upper East Side
];

/// The point `north_m` north and `east_m` east of `p`.
pub fn offset(p: LatLon, north_m: f64, east_m: f64) -> LatLon {
    LatLon {
        lat: p.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
        lon: p.lon + (east_m / (EARTH_RADIUS_M * p.lat.to_radians().cos())).to_degrees(),
    }
}

/// `p` moved into the box.
pub fn clamp_to_box(p: LatLon) -> LatLon {
    LatLon {
        lat: p.lat.clamp(MIN_LAT, MAX_LAT),
        lon: p.lon.clamp(MIN_LON, MAX_LON),
    }
}

/// A uniform point of the box.
pub fn uniform_in_box(rng: &mut Rng) -> LatLon {
    LatLon {
        lat: MIN_LAT + rng.unit() * (MAX_LAT - MIN_LAT),
        lon: MIN_LON + rng.unit() * (MAX_LON - MIN_LON),
    }
}

/// `count` driver positions over the box.
pub fn driver_positions(count: usize, rng: &mut Rng) -> Vec<LatLon> {
    (0..count)
        .map(|i| {
            if i % 5 < 3 {
                let (lat, lon, sigma) = HOTSPOTS[i % HOTSPOTS.len()];
                let centre = LatLon { lat, lon };
                clamp_to_box(offset(centre, rng.normal() * sigma, rng.normal() * sigma))
            } else {
                uniform_in_box(rng)
            }
        })
        .collect()
}

/// The city of a run: `drivers` positions and `requests` pickups, each within ~300 m of a
/// random driver (so a driver is usually in radius), from a fixed seed.
pub fn city(drivers: usize, requests: usize) -> (Vec<LatLon>, Vec<LatLon>) {
    let mut rng = Rng(0x5EED_5EED_5EED_5EED);
    let positions = driver_positions(drivers, &mut rng);
    let pickups = (0..requests)
        .map(|_| {
            let d = positions[rng.below(positions.len())];
            clamp_to_box(offset(d, rng.normal() * 150.0, rng.normal() * 150.0))
        })
        .collect();
    (positions, pickups)
}

/// The pings of available ECONOMY drivers, home and halo copies, as the router writes them
/// (keyed by region, record timestamp = event time).
pub fn driver_records(
    geometry: &Geometry,
    positions: &[LatLon],
    time: i64,
) -> Vec<(String, GeoDriver, i64)> {
    let mut out = Vec::with_capacity(positions.len() * 2);
    for (i, at) in positions.iter().enumerate() {
        let route = geometry.route(*at).expect("a point of the box routes");
        let cell = route.cell.to_bits() as i64;
        for (region, halo) in route.targets() {
            out.push((
                region.to_string(),
                GeoDriver {
                    driver_id: format!("d-{i}"),
                    lat: at.lat,
                    lon: at.lon,
                    accuracy_m: Some(5.0),
                    speed_mps: None,
                    heading_deg: None,
                    status: DriverStatus::Available,
                    product: Product::Economy,
                    cell,
                    region: region.cell().to_bits() as i64,
                    halo,
                    event_time: time,
                },
                time,
            ));
        }
    }
    out
}

/// A REQUESTED record of an ECONOMY trip, home copy only: (key, value).
pub fn request(
    geometry: &Geometry,
    trip_id: String,
    pickup: LatLon,
    time: i64,
) -> (String, GeoTrip) {
    let route = geometry.route(pickup).expect("a pickup of the box routes");
    let cell = route.cell.to_bits() as i64;
    let home = route.home;
    (
        home.to_string(),
        GeoTrip {
            kind: TripEventKind::Requested,
            rider_id: format!("rider-{trip_id}"),
            trip_id,
            product: Product::Economy,
            pickup_lat: pickup.lat,
            pickup_lon: pickup.lon,
            driver_id: None,
            proposal_id: None,
            cell,
            region: home.cell().to_bits() as i64,
            halo: false,
            event_time: time,
        },
    )
}

/// `surgeflow_state_entries{kind="drivers"}` of a metrics page.
pub fn drivers_indexed(page: &str) -> Option<f64> {
    metric_sum(page, "surgeflow_state_entries", &["kind=\"drivers\""])
}

/// Waits until the matcher on `port` indexes drivers and the gauge (set once per batch)
/// stops moving; returns its value.
pub fn wait_indexed(port: u16) -> f64 {
    let mut indexed = -1.0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = drivers_indexed(&scrape(port)).unwrap_or(0.0);
        if now > 0.0 && now == indexed {
            return indexed;
        }
        indexed = now;
    }
}

/// Pre-loads available drivers at `positions` (stamped now) into `geo.driver` of `t`, waits
/// until the matcher on `port` has consumed and indexed them, and returns how many records
/// that took and how many index entries the matcher reports.
pub async fn load_drivers(t: &TestTopology, port: u16, positions: &[LatLon]) -> (usize, f64) {
    let driver_topic = t.topic("geo.driver");
    let drivers = driver_records(&geometry(t), positions, now_ms());
    produce_timed(&driver_topic, &drivers).await;
    wait_consumed(
        t,
        "matcher",
        std::slice::from_ref(&driver_topic),
        Duration::from_secs(600),
    );
    (drivers.len(), wait_indexed(port))
}

/// The namespaced topology of a matcher run: `delivery`, `batch_window_ms`, and pre-loaded
/// drivers (which ping once) kept available for an hour.
pub fn topology(name: &str, delivery: &'static str, batch_window_ms: u64) -> TestTopology {
    TestTopology::with(name, |doc: &mut Value| {
        let m = &mut doc["operators"]["matcher"];
        m["delivery"] = Value::from(delivery);
        m["params"]["batch_window_ms"] = Value::from(batch_window_ms);
        m["params"]["driver_ttl_ms"] = Value::from(3_600_000u64);
    })
}

/// One configuration of the matcher.
pub struct Mode {
    pub name: String,
    pub delivery: &'static str,
    pub batch_window_ms: u64,
}

/// The modes named in `wanted` (`greedy`, `batched`, comma-separated), each at least once
/// and exactly once; batched with a window of `batched_window_ms`.
pub fn modes(wanted: &str, batched_window_ms: u64) -> Vec<Mode> {
    [("greedy", 0), ("batched", batched_window_ms)]
        .into_iter()
        .filter(|(name, _)| wanted.split(',').any(|w| w.trim() == *name))
        .flat_map(|(name, window)| {
            ["at_least_once", "exactly_once"].map(|delivery| Mode {
                name: name.to_string(),
                delivery,
                batch_window_ms: window,
            })
        })
        .collect()
}

/// The figures of one [`run`].
pub struct Figures {
    pub mode: String,
    pub delivery: &'static str,
    pub batch_window_ms: u64,
    pub commit_interval_ms: u64,
    pub driver_records: usize,
    pub drivers_indexed: f64,
    pub index_seconds: f64,
    pub index_cpu_seconds: f64,
    pub requests: usize,
    pub send_seconds: f64,
    pub max_send_lag_ms: f64,
    pub decided: usize,
    pub decided_seconds: f64,
    pub proposals: usize,
    pub unfilled: usize,
    pub retries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Bucket bounds of the matcher's own request-to-proposal histogram.
    pub in_matcher_p50_ms: f64,
    pub in_matcher_p99_ms: f64,
    pub request_cpu_seconds: f64,
    pub rss_before: u64,
    pub rss_indexed: u64,
    pub peak_rss: u64,
    pub load_before: String,
    pub load_after: String,
}

impl Figures {
    pub fn cpu_per_million_requests(&self) -> f64 {
        per_million(self.request_cpu_seconds, self.requests)
    }

    pub fn cpu_per_million_driver_records(&self) -> f64 {
        per_million(self.index_cpu_seconds, self.driver_records)
    }

    pub fn rss_per_driver(&self) -> f64 {
        self.rss_indexed.saturating_sub(self.rss_before) as f64 / self.drivers_indexed.max(1.0)
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.send_seconds
    }

    pub fn decided_per_second(&self) -> f64 {
        self.decided as f64 / self.decided_seconds
    }

    /// The design's p99 target: 20 ms at least once, the commit interval + 20 ms exactly once.
    pub fn target_ms(&self) -> f64 {
        if self.delivery == "exactly_once" {
            self.commit_interval_ms as f64 + 20.0
        } else {
            20.0
        }
    }

    /// The figures as a JSON object.
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"mode\":\"{}\",\"delivery\":\"{}\",\"batch_window_ms\":{},\"commit_interval_ms\":{},",
                "\"driver_records\":{},\"drivers_indexed\":{},\"index_seconds\":{:.3},",
                "\"index_cpu_seconds\":{:.3},\"cpu_seconds_per_million_driver_records\":{:.3},",
                "\"requests\":{},\"send_seconds\":{:.3},\"requests_per_second\":{:.1},",
                "\"max_send_lag_ms\":{:.3},\"decided\":{},\"undecided\":{},\"decided_per_second\":{:.1},",
                "\"proposals\":{},\"unfilled\":{},\"retry_outputs\":{},",
                "\"p50_ms\":{},\"p99_ms\":{},\"p999_ms\":{},\"max_ms\":{},",
                "\"in_matcher_p50_bucket_ms\":{},\"in_matcher_p99_bucket_ms\":{},",
                "\"p99_target_ms\":{:.0},\"p99_target_met\":{},",
                "\"request_cpu_seconds\":{:.3},\"cpu_seconds_per_million_requests\":{:.3},",
                "\"rss_before_bytes\":{},\"rss_indexed_bytes\":{},\"peak_rss_bytes\":{},",
                "\"rss_bytes_per_indexed_driver\":{:.0},\"loadavg_before\":\"{}\",\"loadavg_after\":\"{}\"}}"
            ),
            self.mode,
            self.delivery,
            self.batch_window_ms,
            self.commit_interval_ms,
            self.driver_records,
            self.drivers_indexed,
            self.index_seconds,
            self.index_cpu_seconds,
            self.cpu_per_million_driver_records(),
            self.requests,
            self.send_seconds,
            self.requests_per_second(),
            self.max_send_lag_ms,
            self.decided,
            self.requests - self.decided,
            self.decided_per_second(),
            self.proposals,
            self.unfilled,
            self.retries,
            json_ms(self.p50_ms),
            json_ms(self.p99_ms),
            json_ms(self.p999_ms),
            json_ms(self.max_ms),
            json_ms(self.in_matcher_p50_ms),
            json_ms(self.in_matcher_p99_ms),
            self.target_ms(),
            self.p99_ms < self.target_ms(),
            self.request_cpu_seconds,
            self.cpu_per_million_requests(),
            self.rss_before,
            self.rss_indexed,
            self.peak_rss,
            self.rss_per_driver(),
            self.load_before,
            self.load_after
        )
    }
}

/// Prints one line per run.
pub fn print_table(all: &[Figures]) {
    println!(
        "{:<8} {:<14} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9} {:>8} {:>7} {:>11} {:>11} {:>9} {:>9} {:>11}",
        "mode",
        "delivery",
        "req/s",
        "dec/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "in-op p50/99",
        "proposals",
        "unfilled",
        "retries",
        "CPU s/M req",
        "CPU s/M drv",
        "peak RSS",
        "B/driver",
        "p99 target"
    );
    for f in all {
        let met = if f.p99_ms < f.target_ms() {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "{:<8} {:<14} {:>7.0} {:>7.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5}/{:<6} {:>9} {:>8} {:>7} {:>11.1} {:>11.2} {:>5} MiB {:>9.0} {:>4.0} {}",
            f.mode,
            f.delivery,
            f.requests_per_second(),
            f.decided_per_second(),
            f.p50_ms,
            f.p99_ms,
            f.p999_ms,
            f.max_ms,
            f.in_matcher_p50_ms,
            f.in_matcher_p99_ms,
            f.proposals,
            f.unfilled,
            f.retries,
            f.cpu_per_million_requests(),
            f.cpu_per_million_driver_records(),
            f.peak_rss / (1 << 20),
            f.rss_per_driver(),
            f.target_ms(),
            met
        );
    }
}

/// One trip's first output: which topic, and when it arrived (UTC ms).
struct FirstOutput {
    proposal: bool,
    at_ms: f64,
}

/// Runs `mode` with the drivers at `positions` and requests at `pickups`, offered at `rate`
/// per second.
pub async fn run(
    mode: &Mode,
    binary: &Path,
    positions: &[LatLon],
    pickups: &[LatLon],
    rate: f64,
) -> Figures {
    let load_before = loadavg();
    let (delivery, window) = (mode.delivery, mode.batch_window_ms);
    let t = topology("bench-s3", delivery, window);
    apply(&t).await;
    let commit_interval_ms = t
        .topology
        .operators
        .get("matcher")
        .expect("matcher")
        .commit_interval_ms;
    let geometry = geometry(&t);
    let trip_topic = t.topic("geo.trip");
    let outputs = [t.topic("match.proposal"), t.topic("match.unfilled")];

    // The matcher on empty topics: the baseline RSS.
    let port = free_port();
    let matcher = OperatorProcess::start_on(binary, &t, "bench-0", port);
    let pid = matcher.pid();
    wait_for_metrics(port, Duration::from_secs(60));
    // Let it join the group and settle.
    std::thread::sleep(Duration::from_secs(5));
    let before = ProcessUsage::of(pid);

    // 1. Drivers.
    let index_started = Instant::now();
    let (driver_count, indexed) = load_drivers(&t, port, positions).await;
    let index_seconds = index_started.elapsed().as_secs_f64();
    let after_index = ProcessUsage::of(pid);

    // 2. Requests on a fixed schedule; payloads encoded beforehand.
    let count = pickups.len();
    let encoder = Encoder::<GeoTrip>::register(&registry(), &format!("{trip_topic}-value"))
        .await
        .expect("registering the schema");
    let period_ns = 1e9 / rate;
    let at = |i: usize| Duration::from_nanos((i as f64 * period_ns) as u64);
    // Start far enough ahead to encode everything and get the reader assigned; the wall
    // clock of t0 (UTC ms) is read at the same moment.
    let (t0, t0_wall) = start_after(Duration::from_secs(10));
    let intended_ms = |i: usize| t0_wall + at(i).as_secs_f64() * 1e3;
    let tag = unique_name("s3");
    let requests: Vec<Scheduled> = pickups
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let time = intended_ms(i).round() as i64;
            let (key, value) = request(&geometry, format!("{tag}-{i}"), *p, time);
            Scheduled {
                topic: trip_topic.clone(),
                key,
                payload: encoder.encode(&value).expect("encode"),
                at: at(i),
                timestamp: time,
            }
        })
        .collect();
    let reader = OutputReader::at_end(&t, &outputs);
    assert!(Instant::now() < t0, "the reader was not assigned in time");
    let cpu_start = ProcessUsage::of(pid).cpu_seconds;

    let prefix = format!("{tag}-");
    let (sent, first, retries) = std::thread::scope(|s| {
        let sender = s.spawn(|| send_scheduled(&requests, t0));
        let mut first: Vec<Option<FirstOutput>> = (0..count).map(|_| None).collect();
        let mut got = 0;
        let mut retries = 0usize;
        let deadline = t0 + at(count) + Duration::from_secs(60);
        while got < count && Instant::now() < deadline {
            let Some(arrival) = reader.next() else {
                continue;
            };
            let Some(i) = std::str::from_utf8(&arrival.key)
                .ok()
                .and_then(|k| k.strip_prefix(prefix.as_str()))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| *i < count)
            else {
                continue;
            };
            if first[i].is_some() {
                retries += 1;
                continue;
            }
            first[i] = Some(FirstOutput {
                proposal: arrival.topic == 0,
                at_ms: arrival.arrived_ms,
            });
            got += 1;
        }
        (sender.join().expect("sender"), first, retries)
    });
    let end = ProcessUsage::of(pid);
    let page = scrape(port);
    let in_matcher =
        [0.5, 0.99].map(|q| bucket_quantile_ms(&page, "surgeflow_request_to_proposal_seconds", q));

    let mut latencies = Vec::with_capacity(count);
    let (mut proposals, mut unfilled) = (0, 0);
    let mut last_decided_ms = t0_wall;
    for (i, f) in first.iter().enumerate() {
        // A trip with no output by the deadline counts as infinitely late, not as absent.
        let Some(f) = f else {
            latencies.push(f64::INFINITY);
            continue;
        };
        latencies.push((f.at_ms - intended_ms(i)).max(0.0));
        if f.proposal {
            proposals += 1;
        } else {
            unfilled += 1;
        }
        last_decided_ms = last_decided_ms.max(f.at_ms);
    }
    latencies.sort_by(f64::total_cmp);
    let decided = proposals + unfilled;
    drop(matcher);
    super::delete_topics(&t).await;
    Figures {
        mode: mode.name.clone(),
        delivery,
        batch_window_ms: window,
        commit_interval_ms,
        driver_records: driver_count,
        drivers_indexed: indexed,
        index_seconds,
        index_cpu_seconds: after_index.cpu_seconds - before.cpu_seconds,
        requests: count,
        send_seconds: sent.finished.saturating_duration_since(t0).as_secs_f64(),
        max_send_lag_ms: sent.max_lag.as_secs_f64() * 1e3,
        decided,
        decided_seconds: (last_decided_ms - t0_wall) / 1e3,
        proposals,
        unfilled,
        retries,
        p50_ms: quantile(&latencies, 0.50),
        p99_ms: quantile(&latencies, 0.99),
        p999_ms: quantile(&latencies, 0.999),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        in_matcher_p50_ms: in_matcher[0],
        in_matcher_p99_ms: in_matcher[1],
        request_cpu_seconds: end.cpu_seconds - cpu_start,
        rss_before: before.rss,
        rss_indexed: after_index.rss,
        peak_rss: end.peak_rss.max(after_index.peak_rss),
        load_before,
        load_after: loadavg(),
    }
}
