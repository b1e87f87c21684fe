//! Matcher throughput with a dense city: 100k available drivers spread over one region
//! (~39 km × 20 km, a precision-4 geohash), requests at random pickups, radius 2 km.
//!
//! Greedy: each request is proposed at once and then cancelled, so the supply stays at 100k.
//! Batched: requests are pooled per window and assigned together, then cancelled.
//! Plain `main` (no criterion): `cargo bench -p surgeflow-domain --bench matching`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use surgeflow_domain::geo::LatLon;
use surgeflow_domain::matching::{
    DriverPing, DriverStatus, MatchOutput, Matcher, MatcherConfig, TripRequest,
};

const DRIVERS: usize = 100_000;
/// The `dr5r` region around Manhattan: 40.605–40.781° N, 74.092–73.872° W (approximately).
const SOUTH_WEST: LatLon = LatLon {
    lat: 40.61,
    lon: -74.08,
};
const SPAN_LAT: f64 = 0.17;
const SPAN_LON: f64 = 0.21;

/// SplitMix64: a tiny deterministic generator, so every run measures the same work.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn point(&mut self) -> LatLon {
        LatLon {
            lat: SOUTH_WEST.lat + self.unit() * SPAN_LAT,
            lon: SOUTH_WEST.lon + self.unit() * SPAN_LON,
        }
    }
}

fn populated(config: MatcherConfig, rng: &mut Rng) -> (Matcher<u8>, Duration) {
    let mut m = Matcher::new(config).expect("valid config");
    m.advance(0);
    let ids: Vec<String> = (0..DRIVERS).map(|i| format!("driver-{i}")).collect();
    let started = Instant::now();
    for id in &ids {
        m.on_driver_ping(&DriverPing {
            driver_id: id,
            position: rng.point(),
            status: DriverStatus::Available,
            product: 0,
            event_time: 0,
        })
        .expect("valid ping");
    }
    (m, started.elapsed())
}

fn request(trip: String, pickup: LatLon, t: i64) -> TripRequest<u8> {
    TripRequest {
        trip_id: trip,
        rider_id: "rider".to_owned(),
        product: 0,
        pickup,
        event_time: t,
        surge_multiplier: 1.0,
    }
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn bench_moves(rng: &mut Rng) {
    let (mut m, fill) = populated(MatcherConfig::default(), rng);
    let ids: Vec<String> = (0..DRIVERS).map(|i| format!("driver-{i}")).collect();
    let moves = 1_000_000;
    let started = Instant::now();
    for i in 0..moves {
        let id = &ids[(rng.next_u64() % DRIVERS as u64) as usize];
        m.on_driver_ping(&DriverPing {
            driver_id: id,
            position: rng.point(),
            status: DriverStatus::Available,
            product: 0,
            event_time: 1 + i as i64 / 1_000,
        })
        .expect("valid ping");
    }
    let elapsed = started.elapsed();
    println!(
        "pings: first sight {:>10.0}/s, moves {:>10.0}/s ({} listed)",
        per_second(DRIVERS, fill),
        per_second(moves, elapsed),
        m.drivers_indexed()
    );
}

fn bench_greedy(precision: u8, rng: &mut Rng) {
    let config = MatcherConfig {
        index_precision: precision,
        ..MatcherConfig::default()
    };
    let (mut m, _) = populated(config, rng);
    let requests = 5_000;
    let mut proposals = 0;
    let started = Instant::now();
    for i in 0..requests {
        let trip = format!("trip-{i}");
        let out = m
            .on_request(request(trip.clone(), rng.point(), 0))
            .expect("valid request");
        proposals += out
            .iter()
            .filter(|o| matches!(o, MatchOutput::Proposal(_)))
            .count();
        black_box(out);
        m.on_cancelled(&trip, 0);
    }
    let elapsed = started.elapsed();
    println!(
        "greedy, index precision {precision}: {:>8.0} requests/s ({:.1} µs each, {} proposals)",
        per_second(requests, elapsed),
        elapsed.as_secs_f64() * 1e6 / requests as f64,
        proposals
    );
}

fn bench_batched(pool: usize, rng: &mut Rng) {
    let config = MatcherConfig {
        batch_window_ms: 1_000,
        ..MatcherConfig::default()
    };
    let (mut m, _) = populated(config, rng);
    let windows = (4_000 / pool).max(4);
    let mut proposals = 0;
    let mut total_eta = 0.0;
    let mut elapsed = Duration::ZERO;
    for w in 0..windows {
        let t = w as i64 * 1_000;
        let trips: Vec<String> = (0..pool).map(|i| format!("trip-{w}-{i}")).collect();
        let started = Instant::now();
        for trip in &trips {
            black_box(
                m.on_request(request(trip.clone(), rng.point(), t))
                    .expect("valid"),
            );
        }
        let out = m.advance(t + 1_000);
        elapsed += started.elapsed();
        for o in &out {
            if let MatchOutput::Proposal(p) = o {
                proposals += 1;
                total_eta += p.eta_s;
            }
        }
        for trip in &trips {
            m.on_cancelled(trip, t + 1_000);
        }
    }
    let requests = windows * pool;
    println!(
        "batched, {pool:>3} per window: {:>8.0} req/s ({:.1} µs each, {} proposals, ETA {:.1} s)",
        per_second(requests, elapsed),
        elapsed.as_secs_f64() * 1e6 / requests as f64,
        proposals,
        total_eta / proposals.max(1) as f64
    );
}

/// `pool` requests at a time within 600 m of one corner, where they compete for the same
/// drivers: the same requests and drivers matched greedily and in batches.
fn bench_contested(pool: usize) {
    let hotspot = LatLon {
        lat: SOUTH_WEST.lat + SPAN_LAT / 2.0,
        lon: SOUTH_WEST.lon + SPAN_LON / 2.0,
    };
    let rounds = 20;
    let mut pickups = Rng(0xc0ffee);
    let requests: Vec<Vec<LatLon>> = (0..rounds)
        .map(|_| {
            (0..pool)
                .map(|_| LatLon {
                    lat: hotspot.lat + (pickups.unit() - 0.5) * 0.0108,
                    lon: hotspot.lon + (pickups.unit() - 0.5) * 0.0142,
                })
                .collect()
        })
        .collect();
    for window in [0, 1_000] {
        let config = MatcherConfig {
            batch_window_ms: window,
            ..MatcherConfig::default()
        };
        let (mut m, _) = populated(config, &mut Rng(0xd417e5));
        let mut etas = Vec::new();
        let mut elapsed = Duration::ZERO;
        for (round, pickups) in requests.iter().enumerate() {
            let t = round as i64 * 1_000;
            let trips: Vec<String> = (0..pool).map(|i| format!("trip-{round}-{i}")).collect();
            let started = Instant::now();
            let mut out = m.advance(t);
            for (trip, pickup) in trips.iter().zip(pickups) {
                out.extend(
                    m.on_request(request(trip.clone(), *pickup, t))
                        .expect("valid"),
                );
            }
            out.extend(m.advance(t + 1_000));
            elapsed += started.elapsed();
            etas.extend(out.iter().filter_map(|o| match o {
                MatchOutput::Proposal(p) => Some(p.eta_s),
                MatchOutput::Unfilled(_) => None,
            }));
            for trip in &trips {
                m.on_cancelled(trip, t + 1_000);
            }
        }
        println!(
            "contested, {pool:>3} per second, {}: {:>8.0} requests/s, {} proposals, ETA {:.1} s",
            if window == 0 { "greedy " } else { "batched" },
            per_second(rounds * pool, elapsed),
            etas.len(),
            etas.iter().sum::<f64>() / etas.len().max(1) as f64
        );
    }
}

fn main() {
    let mut rng = Rng(0x5eed);
    println!("{DRIVERS} available drivers over ~39 km × 20 km, radius 2 km");
    bench_moves(&mut rng);
    for precision in [5, 6, 7] {
        bench_greedy(precision, &mut rng);
    }
    for pool in [10, 50, 200] {
        bench_batched(pool, &mut rng);
    }
    for pool in [50, 200] {
        bench_contested(pool);
    }
}
