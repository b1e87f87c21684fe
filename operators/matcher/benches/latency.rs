//! Benchmark S3: the `matcher` binary against the real broker, requests against 100k drivers.
//!
//! For greedy (`batch_window_ms: 0`) and batched (`batch_window_ms: 200`) matching, each
//! exactly once and at least once, in a fresh namespaced topology:
//!
//! 1. starts the matcher on empty topics (baseline RSS), pre-loads 100,000 available drivers
//!    as `geo.driver` records (home and halo copies, keyed by region, stamped now) spread over
//!    a New-York-sized box, and waits until the matcher has consumed and indexed them;
//! 2. offers `geo.trip` REQUESTED records (home copies only, pickups near drivers) at a fixed
//!    rate (1,000/s for 20 s by default) on a fixed schedule, each stamped with its *intended*
//!    send time; a `read_committed` consumer reads `match.proposal` and `match.unfilled` and
//!    records, per trip, the time of its first output minus the intended send time (so a
//!    stalled producer or broker counts against the latency: no coordinated omission);
//! 3. reports requests/s, latency p50/p99/p99.9, proposals vs unfilled, CPU seconds of the
//!    matcher process per million requests (and per million driver records while indexing),
//!    peak RSS and RSS per indexed driver, and writes the figures to `target/bench-s3.json`.
//!
//! `cargo bench -p surgeflow-matcher --bench latency` (env `S3_DRIVERS`, `S3_RATE`,
//! `S3_SECONDS`, `S3_BATCH_WINDOW_MS` change the defaults 100000, 1000, 20, 200; `S3_MODES`
//! picks `greedy`, `batched` or both, the default).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_yaml_ng::Value;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon};
use surgeflow_domain::routing::Geometry;
use surgeflow_kafka::Encoder;
use surgeflow_schema::{DriverStatus, GeoDriver, GeoTrip, Product, TripEventKind};
use surgeflow_testkit::{
    OperatorProcess, ProcessUsage, TestTopology, clients, free_port, produce_timed, registry,
    send_record, unique_name, workspace_binary,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), so every mode sees the same city.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

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
fn offset(p: LatLon, north_m: f64, east_m: f64) -> LatLon {
    LatLon {
        lat: p.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
        lon: p.lon + (east_m / (EARTH_RADIUS_M * p.lat.to_radians().cos())).to_degrees(),
    }
}

fn clamp_to_box(p: LatLon) -> LatLon {
    LatLon {
        lat: p.lat.clamp(MIN_LAT, MAX_LAT),
        lon: p.lon.clamp(MIN_LON, MAX_LON),
    }
}

/// `count` driver positions over the box.
fn driver_positions(count: usize, rng: &mut Rng) -> Vec<LatLon> {
    (0..count)
        .map(|i| {
            if i % 5 < 3 {
                let (lat, lon, sigma) = HOTSPOTS[i % HOTSPOTS.len()];
                let centre = LatLon { lat, lon };
                clamp_to_box(offset(centre, rng.normal() * sigma, rng.normal() * sigma))
            } else {
                LatLon {
                    lat: MIN_LAT + rng.unit() * (MAX_LAT - MIN_LAT),
                    lon: MIN_LON + rng.unit() * (MAX_LON - MIN_LON),
                }
            }
        })
        .collect()
}

/// The pings of available ECONOMY drivers, home and halo copies, as the router writes them
/// (keyed by region, record timestamp = event time).
fn driver_records(
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
fn request(geometry: &Geometry, trip_id: String, pickup: LatLon, time: i64) -> (String, GeoTrip) {
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

/// The operator's `/metrics` page (empty while it does not answer).
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return String::new();
    }
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}

/// `surgeflow_state_entries{kind="drivers"}` of a metrics page.
fn drivers_indexed(page: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with("surgeflow_state_entries{") && l.contains("kind=\"drivers\""))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

/// The upper bound of the bucket holding quantile `q` of a histogram on a metrics page
/// (summed over its series), in milliseconds: how long the matcher itself saw a request wait
/// (processing time of its first proposal minus its event time), without the output's way to
/// the reader.
fn bucket_quantile_ms(page: &str, histogram: &str, q: f64) -> f64 {
    let prefix = format!("{histogram}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in page.lines().filter(|l| l.starts_with(&prefix)) {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|v| {
                if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().unwrap_or(f64::NAN)
                }
            });
        let count = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(le), Some(count)) = (le, count) {
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |(_, c)| *c);
    buckets
        .iter()
        .find(|(_, c)| total > 0.0 && *c >= q * total)
        .map_or(f64::NAN, |(le, _)| le * 1e3)
}

/// Waits until the matcher's group has committed every record of `topic`.
fn wait_consumed(t: &TestTopology, topic: &str, timeout: Duration) {
    let partitions = t.topology.topic(topic).expect("topic").partitions;
    let group = t
        .topology
        .operators
        .get("matcher")
        .expect("matcher")
        .group_id;
    let consumer = clients().consumer(&group).expect("consumer");
    let mut list = TopicPartitionList::new();
    let mut end = 0;
    for p in 0..partitions {
        list.add_partition(topic, p);
        end += consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_or(0, |(_, high)| high);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let committed: i64 = consumer
            .committed_offsets(list.clone(), Duration::from_secs(5))
            .map(|l| {
                l.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .sum()
            })
            .unwrap_or(0);
        // Transaction markers take offsets too: committed can pass the count of records.
        if committed >= end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {committed} of {end} consumed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A latency for the JSON: `null` when infinite (no output by the deadline).
fn json_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

/// The value at quantile `q` of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Mode {
    name: String,
    delivery: &'static str,
    batch_window_ms: u64,
}

struct Figures {
    mode: String,
    delivery: &'static str,
    batch_window_ms: u64,
    commit_interval_ms: u64,
    driver_records: usize,
    drivers_indexed: f64,
    index_seconds: f64,
    index_cpu_seconds: f64,
    requests: usize,
    send_seconds: f64,
    max_send_lag_ms: f64,
    decided: usize,
    decided_seconds: f64,
    proposals: usize,
    unfilled: usize,
    retries: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// Bucket bounds of the matcher's own request-to-proposal histogram.
    in_matcher_p50_ms: f64,
    in_matcher_p99_ms: f64,
    request_cpu_seconds: f64,
    rss_before: u64,
    rss_indexed: u64,
    peak_rss: u64,
    load_before: String,
    load_after: String,
}

impl Figures {
    fn cpu_per_million_requests(&self) -> f64 {
        self.request_cpu_seconds / (self.requests as f64 / 1e6)
    }

    fn cpu_per_million_driver_records(&self) -> f64 {
        self.index_cpu_seconds / (self.driver_records as f64 / 1e6)
    }

    fn rss_per_driver(&self) -> f64 {
        self.rss_indexed.saturating_sub(self.rss_before) as f64 / self.drivers_indexed.max(1.0)
    }

    fn target_ms(&self) -> f64 {
        if self.delivery == "exactly_once" {
            self.commit_interval_ms as f64 + 20.0
        } else {
            20.0
        }
    }
}

/// One trip's first output: which topic, and when it arrived.
struct FirstOutput {
    proposal: bool,
    at: Instant,
}

async fn run(
    mode: &Mode,
    binary: &std::path::Path,
    positions: &[LatLon],
    pickups: &[LatLon],
    rate: f64,
) -> Figures {
    let load_before = loadavg();
    let (delivery, window) = (mode.delivery, mode.batch_window_ms);
    let t = TestTopology::with("bench-s3", |doc: &mut Value| {
        let m = &mut doc["operators"]["matcher"];
        m["delivery"] = Value::from(delivery);
        m["params"]["batch_window_ms"] = Value::from(window);
        // Pre-loaded drivers ping once: keep them available for the whole run.
        m["params"]["driver_ttl_ms"] = Value::from(3_600_000u64);
    });
    t.apply().await;
    let spec = t.topology.operators.get("matcher").expect("matcher");
    let commit_interval_ms = spec.commit_interval_ms;
    let geo = &t.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
    let driver_topic = t.topic("geo.driver");
    let trip_topic = t.topic("geo.trip");
    let proposal_topic = t.topic("match.proposal");
    let unfilled_topic = t.topic("match.unfilled");

    // The matcher on empty topics: the baseline RSS.
    let port = free_port();
    let matcher = OperatorProcess::start_on(binary, &t, "bench-0", port);
    let pid = matcher.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(port).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the matcher did not serve /metrics"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let it join the group and settle.
    std::thread::sleep(Duration::from_secs(5));
    let before = ProcessUsage::of(pid);

    // 1. Drivers.
    let drivers = driver_records(&geometry, positions, now_ms());
    let index_started = Instant::now();
    produce_timed(&driver_topic, &drivers).await;
    wait_consumed(&t, &driver_topic, Duration::from_secs(600));
    // The gauge is set once per batch: wait until it stops moving.
    let mut indexed = -1.0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = drivers_indexed(&scrape(port)).unwrap_or(0.0);
        if now > 0.0 && now == indexed {
            break;
        }
        indexed = now;
    }
    let index_seconds = index_started.elapsed().as_secs_f64();
    let after_index = ProcessUsage::of(pid);

    // 2. Requests on a fixed schedule; payloads encoded beforehand.
    let count = pickups.len();
    let encoder = Encoder::<GeoTrip>::register(&registry(), &format!("{trip_topic}-value"))
        .await
        .expect("registering the schema");
    let period_ns = 1e9 / rate;
    // Start far enough ahead to encode everything and get the reader assigned.
    let t0_wall = now_ms() + 10_000;
    let t0 = Instant::now() + Duration::from_millis(10_000);
    let tag = unique_name("s3");
    let trip_id = |i: usize| format!("{tag}-{i}");
    let offsets_ms: Vec<i64> = (0..count)
        .map(|i| (i as f64 * period_ns / 1e6).round() as i64)
        .collect();
    let requests: Vec<(String, Vec<u8>, i64)> = pickups
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let time = t0_wall + offsets_ms[i];
            let (key, value) = request(&geometry, trip_id(i), *p, time);
            (key, encoder.encode(&value).expect("encode"), time)
        })
        .collect();

    let reader: BaseConsumer = clients()
        .consumer_config(&unique_name("s3-reader"))
        .create()
        .expect("consumer");
    reader
        .subscribe(&[&proposal_topic, &unfilled_topic])
        .expect("subscribe");
    let out_partitions = t.topology.topic(&proposal_topic).expect("topic").partitions
        + t.topology.topic(&unfilled_topic).expect("topic").partitions;
    while reader.assignment().map_or(0, |a| a.count()) < out_partitions as usize {
        assert!(Instant::now() < t0, "the reader was not assigned in time");
        let _ = reader.poll(Duration::from_millis(100));
    }
    let cpu_start = ProcessUsage::of(pid).cpu_seconds;

    let prefix = format!("{tag}-");
    let (sent, first, retries) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let producer = clients().producer().expect("producer");
            let mut max_lag = Duration::ZERO;
            for (i, (key, payload, time)) in requests.iter().enumerate() {
                let intended = t0 + Duration::from_nanos((i as f64 * period_ns) as u64);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                } else {
                    max_lag = max_lag.max(now - intended);
                }
                let record = BaseRecord::to(&trip_topic)
                    .key(key.as_bytes())
                    .payload(payload.as_slice())
                    .timestamp(*time);
                send_record(&producer, record);
                producer.poll(Duration::ZERO);
            }
            let finished = Instant::now();
            producer.flush(Duration::from_secs(30)).expect("flush");
            (finished, max_lag)
        });
        let mut first: Vec<Option<FirstOutput>> = (0..count).map(|_| None).collect();
        let mut got = 0;
        let mut retries = 0usize;
        let send_window = Duration::from_nanos((count as f64 * period_ns) as u64);
        let deadline = t0 + send_window + Duration::from_secs(60);
        while got < count && Instant::now() < deadline {
            let Some(result) = reader.poll(Duration::from_millis(50)) else {
                continue;
            };
            let at = Instant::now();
            let message = result.expect("consuming");
            let Some(i) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
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
                proposal: message.topic() == proposal_topic,
                at,
            });
            got += 1;
        }
        (sender.join().expect("sender"), first, retries)
    });
    let end = ProcessUsage::of(pid);
    let (send_finished, max_lag) = sent;
    let page = scrape(port);
    let in_matcher =
        [0.5, 0.99].map(|q| bucket_quantile_ms(&page, "surgeflow_request_to_proposal_seconds", q));

    let mut latencies = Vec::with_capacity(count);
    let (mut proposals, mut unfilled) = (0, 0);
    let mut last_decided = t0;
    for (i, f) in first.iter().enumerate() {
        // A trip with no output by the deadline counts as infinitely late, not as absent.
        let Some(f) = f else {
            latencies.push(f64::INFINITY);
            continue;
        };
        let intended = t0 + Duration::from_nanos((i as f64 * period_ns) as u64);
        latencies.push(f.at.saturating_duration_since(intended).as_secs_f64() * 1e3);
        if f.proposal {
            proposals += 1;
        } else {
            unfilled += 1;
        }
        last_decided = last_decided.max(f.at);
    }
    latencies.sort_by(f64::total_cmp);
    let decided = proposals + unfilled;
    drop(matcher);
    Figures {
        mode: mode.name.clone(),
        delivery,
        batch_window_ms: window,
        commit_interval_ms,
        driver_records: drivers.len(),
        drivers_indexed: indexed,
        index_seconds,
        index_cpu_seconds: after_index.cpu_seconds - before.cpu_seconds,
        requests: count,
        send_seconds: send_finished.saturating_duration_since(t0).as_secs_f64(),
        max_send_lag_ms: max_lag.as_secs_f64() * 1e3,
        decided,
        decided_seconds: last_decided.saturating_duration_since(t0).as_secs_f64(),
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

#[tokio::main]
async fn main() {
    let driver_count: usize = env_or("S3_DRIVERS", 100_000);
    let rate: f64 = env_or("S3_RATE", 1000.0);
    let seconds: f64 = env_or("S3_SECONDS", 20.0);
    let batched_window: u64 = env_or("S3_BATCH_WINDOW_MS", 200);
    let binary = workspace_binary("surgeflow-matcher", "matcher");

    let mut rng = Rng(0x5EED_5EED_5EED_5EED);
    let positions = driver_positions(driver_count, &mut rng);
    let requests = (rate * seconds).round() as usize;
    // Pickups within 300 m of a random driver (so a driver is usually in radius).
    let pickups: Vec<LatLon> = (0..requests)
        .map(|_| {
            let d = positions[(rng.next_u64() % positions.len() as u64) as usize];
            clamp_to_box(offset(d, rng.normal() * 150.0, rng.normal() * 150.0))
        })
        .collect();
    println!(
        "S3 matcher: {driver_count} available drivers pre-loaded; {requests} requests at \
         {rate:.0}/s for {seconds:.0} s; load before: {}",
        loadavg()
    );
    let wanted: String = env_or("S3_MODES", "greedy,batched".to_string());
    let modes = [("greedy", 0), ("batched", batched_window)]
        .into_iter()
        .filter(|(name, _)| wanted.split(',').any(|w| w.trim() == *name))
        .flat_map(|(name, window)| {
            ["at_least_once", "exactly_once"].map(|delivery| Mode {
                name: name.to_string(),
                delivery,
                batch_window_ms: window,
            })
        });
    let mut all = Vec::new();
    for mode in modes {
        let f = run(&mode, &binary, &positions, &pickups, rate).await;
        println!(
            "  {} {} (window {} ms): {} driver records, {:.0} indexed in {:.1} s; load {} -> {}",
            f.mode,
            f.delivery,
            f.batch_window_ms,
            f.driver_records,
            f.drivers_indexed,
            f.index_seconds,
            f.load_before,
            f.load_after
        );
        all.push(f);
    }

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
    let mut json = Vec::new();
    for f in &all {
        let met = if f.p99_ms < f.target_ms() {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "{:<8} {:<14} {:>7.0} {:>7.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5}/{:<6} {:>9} {:>8} {:>7} {:>11.1} {:>11.2} {:>5} MiB {:>9.0} {:>4.0} {}",
            f.mode,
            f.delivery,
            f.requests as f64 / f.send_seconds,
            f.decided as f64 / f.decided_seconds,
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
        json.push(format!(
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
            f.mode,
            f.delivery,
            f.batch_window_ms,
            f.commit_interval_ms,
            f.driver_records,
            f.drivers_indexed,
            f.index_seconds,
            f.index_cpu_seconds,
            f.cpu_per_million_driver_records(),
            f.requests,
            f.send_seconds,
            f.requests as f64 / f.send_seconds,
            f.max_send_lag_ms,
            f.decided,
            f.requests - f.decided,
            f.decided as f64 / f.decided_seconds,
            f.proposals,
            f.unfilled,
            f.retries,
            json_ms(f.p50_ms),
            json_ms(f.p99_ms),
            json_ms(f.p999_ms),
            json_ms(f.max_ms),
            json_ms(f.in_matcher_p50_ms),
            json_ms(f.in_matcher_p99_ms),
            f.target_ms(),
            f.p99_ms < f.target_ms(),
            f.request_cpu_seconds,
            f.cpu_per_million_requests(),
            f.rss_before,
            f.rss_indexed,
            f.peak_rss,
            f.rss_per_driver(),
            f.load_before,
            f.load_after
        ));
    }
    let path = surgeflow_testkit::project_root()
        .join("target")
        .join("bench-s3.json");
    std::fs::write(&path, format!("[{}]\n", json.join(","))).expect("writing the JSON");
    println!(
        "(latency from the intended send time to the first output read with read_committed; \
         in-op = the bucket bound of the matcher's own request-to-proposal histogram (its \
         processing time minus the intended send time, before the output's commit and fetch); \
         inf = a trip without output 60 s after the last request; \
         CPU s/M req = matcher CPU during the request phase per million requests; \
         load after: {}; JSON in {})",
        loadavg(),
        path.display()
    );
}
