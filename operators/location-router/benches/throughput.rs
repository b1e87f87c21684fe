//! Benchmark S1: the `location-router` binary against the real broker.
//!
//! Pre-loads simulated pings into `location.update` (so the load generator does not compete
//! for the cores), then starts the router from offset 0 and times it until every routed copy
//! is on `geo.driver`. Reports events/s, CPU seconds of the router process per million events
//! (the main figure: wall time on a shared 2-core machine is noisy) and peak RSS, for
//! exactly-once and at-least-once delivery, and writes the figures as JSON.
//!
//! `cargo bench -p surgeflow-location-router --bench throughput` (env `S1_PINGS` sets the
//! number of pings, default 300000). The run itself is shared with the S0–S6 harness
//! (`surgeflow_testkit::bench::router`), which adds a latency run.

use surgeflow_testkit::bench::{delete_topics, env_or, per_million, router};
use surgeflow_testkit::{free_port, workspace_binary};

#[tokio::main]
async fn main() {
    let count = env_or("S1_PINGS", 300_000);
    let binary = workspace_binary("surgeflow-location-router", "location-router");
    let input = router::pings(count);
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
        let run = router::throughput(mode, &input, &binary, free_port()).await;
        let f = run.drained;
        let per_million = per_million(f.usage.cpu_seconds, run.events);
        println!(
            "{:<14} {:>9} {:>9} {:>9.2} {:>10.0} {:>14.2} {:>7} MiB",
            run.mode,
            run.events,
            run.outputs,
            f.wall_seconds,
            run.events as f64 / f.wall_seconds,
            per_million,
            f.usage.peak_rss / (1 << 20)
        );
        json.push(format!(
            "{{\"mode\":\"{}\",\"events\":{},\"copies\":{},\"wall_seconds\":{:.3},\"cpu_seconds\":{:.3},\"cpu_seconds_per_million\":{:.3},\"peak_rss_bytes\":{}}}",
            run.mode,
            run.events,
            run.outputs,
            f.wall_seconds,
            f.usage.cpu_seconds,
            per_million,
            f.usage.peak_rss
        ));
        drop(run.router);
        delete_topics(&run.topology).await;
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
