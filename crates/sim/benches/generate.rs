//! Generation throughput: 60 simulated minutes of the default city (2000 drivers, 5 requests/s),
//! pulled one simulated second at a time as `surgeflow simulate` does, on one core.
//!
//! Run with `cargo bench -p surgeflow-sim`. It prints events per wall-clock second; the CLI
//! needs a few thousand live and as many as possible in fast-forward.

use std::hint::black_box;
use std::time::Instant;

use surgeflow_sim::{CityConfig, SimError, Simulation};

fn main() -> Result<(), SimError> {
    let config = CityConfig::default();
    let start = config.start_time_ms;
    let began = Instant::now();
    let mut sim = Simulation::new(config, 7)?;
    let mut events = Vec::with_capacity(1_024);
    let mut total = 0usize;
    for second in 1..=3_600 {
        sim.advance_to(start + second * 1_000, &mut events);
        total += events.len();
        black_box(&events);
        events.clear();
    }
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "generated {total} events for 60 simulated minutes in {elapsed:.2} s: {:.0} events/s",
        total as f64 / elapsed
    );
    for (topic, count) in sim.stats().per_topic() {
        println!("  {topic:<20} {count:>9}");
    }
    Ok(())
}
