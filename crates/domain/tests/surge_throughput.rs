//! Throughput of `SurgeEngine` at the sizing target of one instance: 10 000 cells and
//! 100 000 drivers. Ignored by default (it is a measurement, not a check); run with
//!
//! ```text
//! cargo test --release -p surgeflow-domain --test surge_throughput -- --ignored --nocapture
//! ```

use std::time::Instant;

use surgeflow_domain::geo::{Cell, Direction, LatLon};
use surgeflow_domain::surge::{
    DriverKey, DriverPing, DriverStatus, SurgeConfig, SurgeEngine, TripKey, TripKind, TripSignal,
};

/// xorshift64*: a deterministic workload without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Input {
    Ping(DriverPing<u8>),
    Trip(TripSignal<u8>),
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn ten_thousand_cells_hundred_thousand_drivers() {
    const SIDE: usize = 100;
    const DRIVERS: u64 = 100_000;
    const SECONDS: i64 = 120;
    let start = Cell::parse("dr5ru7").expect("valid");
    let mut cells = Vec::with_capacity(SIDE * SIDE);
    let mut row_start = start;
    for _ in 0..SIDE {
        let mut cell = row_start;
        for _ in 0..SIDE {
            cells.push(cell);
            cell = cell.neighbour(Direction::E).expect("exists");
        }
        row_start = row_start.neighbour(Direction::N).expect("not polar");
    }

    // Every driver pings every 4 s (a quarter of them each second), staying near its spot;
    // riders request ~2 rides per cell per minute, sometimes twice.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let home: Vec<usize> = (0..DRIVERS)
        .map(|_| rng.below(cells.len() as u64) as usize)
        .collect();
    let t0 = 1_700_000_000_000;
    let mut inputs = Vec::new();
    let mut trip = 0;
    for second in 0..SECONDS {
        for driver in (second as u64 % 4..DRIVERS).step_by(4) {
            let cell = cells[home[driver as usize]];
            let centre = cell.center();
            let jitter = (rng.below(200) as f64 - 100.0) * 1e-6;
            inputs.push(Input::Ping(DriverPing {
                driver: DriverKey(driver),
                position: LatLon {
                    lat: centre.lat + jitter,
                    lon: centre.lon,
                },
                cell,
                product: (driver % 3) as u8,
                status: if rng.below(10) < 7 {
                    DriverStatus::Available
                } else {
                    DriverStatus::OnTrip
                },
                halo: false,
                event_time_ms: t0 + second * 1_000 + rng.below(1_000) as i64,
            }));
        }
        for _ in 0..cells.len() / 30 {
            if rng.below(10) != 0 {
                trip += 1;
            }
            inputs.push(Input::Trip(TripSignal {
                trip: TripKey(trip),
                kind: TripKind::Requested,
                cell: cells[rng.below(cells.len() as u64) as usize],
                product: rng.below(3) as u8,
                halo: false,
                event_time_ms: t0 + second * 1_000 + rng.below(1_000) as i64,
            }));
        }
    }

    let mut engine = SurgeEngine::new(SurgeConfig::default()).expect("valid");
    let mut out = Vec::new();
    let began = Instant::now();
    for (i, input) in inputs.iter().enumerate() {
        let now = match input {
            Input::Ping(p) => {
                let now = p.event_time_ms + 500;
                engine.ingest_ping(*p, now);
                now
            }
            Input::Trip(t) => {
                let now = t.event_time_ms + 500;
                engine.ingest_trip(*t, now);
                now
            }
        };
        // As after a poll of 500 records.
        if i % 500 == 499 {
            engine.advance(now, &mut out);
        }
    }
    let elapsed = began.elapsed();
    let counters = engine.counters();
    eprintln!(
        "{} records in {:.2?}: {:.0} ns/record; {} ticks, {} updates, {} drivers, {} cells, ~{} MiB",
        inputs.len(),
        elapsed,
        elapsed.as_nanos() as f64 / inputs.len() as f64,
        counters.ticks,
        out.len(),
        engine.drivers_tracked(),
        engine.cells_tracked(),
        engine.bytes_estimate() >> 20,
    );
    assert!(counters.ticks > 0 && !out.is_empty());
}
