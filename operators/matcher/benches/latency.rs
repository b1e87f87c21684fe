//! Benchmark S3: the `matcher` binary against the real broker, requests against 100k drivers.
//!
//! For greedy (`batch_window_ms: 0`) and batched (`batch_window_ms: 200`) matching, each
//! exactly once and at least once, in a fresh namespaced topology: pre-loads 100,000 available
//! drivers, then offers `geo.trip` requests at a fixed rate (1,000/s for 20 s by default)
//! stamped with their intended send times, and measures the time to each trip's first output
//! read back with `read_committed` (no coordinated omission). The scenario itself lives in
//! `surgeflow_testkit::bench::matcher`, shared with the S0–S6 harness; it reports requests/s,
//! latency p50/p99/p99.9, proposals vs unfilled, CPU seconds of the matcher per million
//! requests (and per million driver records while indexing), peak RSS and RSS per indexed
//! driver, and this bench writes the figures to `target/bench-s3.json`.
//!
//! `cargo bench -p surgeflow-matcher --bench latency` (env `S3_DRIVERS`, `S3_RATE`,
//! `S3_SECONDS`, `S3_BATCH_WINDOW_MS` change the defaults 100000, 1000, 20, 200; `S3_MODES`
//! picks `greedy`, `batched` or both, the default).

use surgeflow_testkit::bench::matcher::{self, city, modes, print_table};
use surgeflow_testkit::bench::{env_or, loadavg};
use surgeflow_testkit::workspace_binary;

#[tokio::main]
async fn main() {
    let driver_count: usize = env_or("S3_DRIVERS", 100_000);
    let rate: f64 = env_or("S3_RATE", 1000.0);
    let seconds: f64 = env_or("S3_SECONDS", 20.0);
    let batched_window: u64 = env_or("S3_BATCH_WINDOW_MS", 200);
    let binary = workspace_binary("surgeflow-matcher", "matcher");

    let requests = (rate * seconds).round() as usize;
    let (positions, pickups) = city(driver_count, requests);
    println!(
        "S3 matcher: {driver_count} available drivers pre-loaded; {requests} requests at \
         {rate:.0}/s for {seconds:.0} s; load before: {}",
        loadavg()
    );
    let wanted: String = env_or("S3_MODES", "greedy,batched".to_string());
    let mut all = Vec::new();
    for mode in modes(&wanted, batched_window) {
        let f = matcher::run(&mode, &binary, &positions, &pickups, rate).await;
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

    print_table(&all);
    let json: Vec<String> = all.iter().map(matcher::Figures::json).collect();
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
