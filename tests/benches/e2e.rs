//! The end-to-end benchmark: scenarios S0–S6 of the benchmark design against the real broker,
//! with release builds of the operators, printing one table and writing
//! `target/bench-e2e.json`.
//!
//! `cargo bench -p surgeflow-testkit --bench e2e` runs them all (about ten minutes on a
//! 2-core machine); `E2E_SCENARIOS=S0,S1` picks some. What each measures (the figures and
//! their reading are in `docs/benchmarks.md`):
//!
//! - **S0** pass-through: a raw consume → produce loop (this executable, started again as a
//!   child process), no decoding, with the runtime's producer settings and commit sequence:
//!   the client ceiling.
//! - **S1** `location-router` on pre-loaded pings (the shared S1 run), then a latency run at a
//!   fixed offered rate.
//! - **S2** `surge-pricer` on a simulated city routed by the real routers (`surgeflow
//!   simulate` pre-loads it), then the city in real time for the multiplier latency.
//! - **S3** `matcher`: requests at a fixed rate against 100k drivers (the shared S3 run).
//! - **S4** hot spot: 80 % of the pings and requests in 16 cells, then a 5× burst, through
//!   `location-router` and `surge-pricer`: consumer lag, recovery, latency by phase.
//! - **S5** restore: the matcher holding 100k drivers is killed (SIGKILL) and restarted.
//! - **S6** real data: `surgeflow replay` of the NYC taxi sample (its first 30 minutes by
//!   default) at full speed through all four operators (skipped when the data set is absent;
//!   see `SURGEFLOW_DATA_DIR`).
//!
//! Figures per scenario: CPU seconds of the operator process(es) per million events (user +
//! system from `/proc`, librdkafka's threads included; the main figure), events/s, latency
//! p50/p99/p99.9 (read back with `read_committed`, from each record's intended send time or
//! event time, so a stalled sender counts against it) and peak RSS. Sizes come from the
//! environment (see `Config::from_env`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;
use surgeflow_domain::geo::{Cell, Direction, LatLon};
use surgeflow_domain::routing::check_point;
use surgeflow_kafka::{ClientFactory, Encoder};
use surgeflow_runtime::batch;
use surgeflow_schema::{DriverStatus, GeoTrip, LocationUpdate, Product};
use surgeflow_testkit::bench::{
    Drained, GroupProgress, OutputReader, Rng, Scheduled, apply, delete_topics, drain, env_or,
    geometry, loadavg, matcher, metric_sum, now_ms, offer_and_read, per_million, percentiles,
    release_binary, router, scrape, start_after, wait_consumed, wait_for_metrics,
};
use surgeflow_testkit::{
    OperatorProcess, ProcessUsage, TestTopology, cluster, data_file, free_port, produce, read_raw,
    registry, send_record, unique_name,
};
use surgeflow_topology::{Delivery, Topology};

/// The first argument that makes this executable the S0 pass-through instead.
const PASSTHROUGH: &str = "--passthrough";

/// Sizes and choices, from the environment.
struct Config {
    /// `E2E_SCENARIOS`: which of S0..S6 to run (default all).
    scenarios: Vec<String>,
    /// `E2E_DELIVERY`: delivery modes of S0 and S1 (default both).
    deliveries: Vec<String>,
    /// `E2E_S1_PINGS`: pings pre-loaded for S0 and S1.
    pings: usize,
    /// `E2E_S1_RATE`, `E2E_S1_SECONDS`: the S1 latency run.
    s1_rate: f64,
    s1_seconds: f64,
    /// `E2E_S2_EVENTS`, `E2E_S2_DRIVERS`, `E2E_S2_RADIUS_M`, `E2E_S2_REQUESTS_PER_S`: the city
    /// pre-loaded for S2; `E2E_S2_LIVE_SECONDS`: its real-time run.
    s2_events: usize,
    s2_drivers: u32,
    s2_radius_m: f64,
    s2_requests_per_s: f64,
    s2_live_seconds: u64,
    /// `E2E_S2_LIVE_REQUESTS_PER_S`: requests per second of the real-time run (busier than
    /// the pre-loaded city, so that multipliers move and there are latencies to measure).
    s2_live_requests_per_s: f64,
    /// `E2E_S3_DRIVERS`, `E2E_S3_RATE`, `E2E_S3_SECONDS`, `E2E_S3_MODES`,
    /// `E2E_S3_BATCH_WINDOW_MS`: as the matcher bench's `S3_*`.
    s3_drivers: usize,
    s3_rate: f64,
    s3_seconds: f64,
    s3_modes: String,
    s3_batch_window_ms: u64,
    /// `E2E_S4_RATE` pings/s steady, `E2E_S4_BURST` times that during the burst,
    /// `E2E_S4_SECONDS` = steady,burst,after.
    s4_rate: f64,
    s4_burst: f64,
    s4_phases: [f64; 3],
    /// `E2E_S5_DRIVERS`: drivers the restored matcher holds.
    s5_drivers: usize,
    /// `E2E_S6_SPEED`: replay speed (`max` or a factor); `E2E_S6_UNTIL`: how much of the file's
    /// event time to replay (`30m` by default, `all` for the whole hour).
    s6_speed: String,
    s6_until: String,
    /// `E2E_JSON`: where the JSON goes (default `target/bench-e2e.json`).
    json: PathBuf,
}

fn list(name: &str, default: &str) -> Vec<String> {
    env_or(name, default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Config {
    fn from_env() -> Self {
        let phases = list("E2E_S4_SECONDS", "15,10,30");
        let phase = |i: usize, default: f64| {
            phases
                .get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Config {
            scenarios: list("E2E_SCENARIOS", "S0,S1,S2,S3,S4,S5,S6")
                .into_iter()
                .map(|s| s.to_uppercase())
                .collect(),
            deliveries: list("E2E_DELIVERY", "exactly_once,at_least_once"),
            pings: env_or("E2E_S1_PINGS", 300_000),
            s1_rate: env_or("E2E_S1_RATE", 5_000.0),
            s1_seconds: env_or("E2E_S1_SECONDS", 10.0),
            s2_events: env_or("E2E_S2_EVENTS", 250_000),
            s2_drivers: env_or("E2E_S2_DRIVERS", 10_000),
            s2_radius_m: env_or("E2E_S2_RADIUS_M", 25_000.0),
            s2_requests_per_s: env_or("E2E_S2_REQUESTS_PER_S", 20.0),
            s2_live_seconds: env_or("E2E_S2_LIVE_SECONDS", 45),
            s2_live_requests_per_s: env_or("E2E_S2_LIVE_REQUESTS_PER_S", 200.0),
            s3_drivers: env_or("E2E_S3_DRIVERS", 100_000),
            s3_rate: env_or("E2E_S3_RATE", 1_000.0),
            s3_seconds: env_or("E2E_S3_SECONDS", 20.0),
            s3_modes: env_or("E2E_S3_MODES", "greedy".to_string()),
            s3_batch_window_ms: env_or("E2E_S3_BATCH_WINDOW_MS", 200),
            s4_rate: env_or("E2E_S4_RATE", 4_000.0),
            s4_burst: env_or("E2E_S4_BURST", 5.0),
            s4_phases: [phase(0, 15.0), phase(1, 10.0), phase(2, 30.0)],
            s5_drivers: env_or("E2E_S5_DRIVERS", 100_000),
            s6_speed: env_or("E2E_S6_SPEED", "max".to_string()),
            s6_until: env_or("E2E_S6_UNTIL", "30m".to_string()),
            json: std::env::var_os("E2E_JSON").map_or_else(
                || {
                    surgeflow_testkit::project_root()
                        .join("target")
                        .join("bench-e2e.json")
                },
                PathBuf::from,
            ),
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

/// One line of the summary table.
struct Row {
    scenario: &'static str,
    config: String,
    events: u64,
    events_per_s: f64,
    cpu_per_million: f64,
    latency_ms: [f64; 3],
    peak_rss: u64,
    note: String,
}

/// The table so far and the JSON, rewritten after every scenario so an interrupted run keeps
/// what it measured.
struct Report {
    rows: Vec<Row>,
    scenarios: Vec<Json>,
    header: Json,
    path: PathBuf,
}

impl Report {
    fn add(&mut self, row: Row, mut detail: Json) {
        println!(
            "  => {} {}: {} events, {:.0}/s, {:.2} CPU s/M, p50/p99/p99.9 {} ms, peak RSS {} MiB; {}",
            row.scenario,
            row.config,
            row.events,
            row.events_per_s,
            row.cpu_per_million,
            row.latency_ms.map(ms).join("/"),
            row.peak_rss >> 20,
            row.note
        );
        detail["scenario"] = json!(row.scenario);
        detail["config"] = json!(row.config);
        detail["summary"] = json!({
            "events": row.events,
            "events_per_second": round(row.events_per_s, 1),
            "cpu_seconds_per_million_events": round(row.cpu_per_million, 3),
            "p50_ms": finite(row.latency_ms[0]),
            "p99_ms": finite(row.latency_ms[1]),
            "p999_ms": finite(row.latency_ms[2]),
            "peak_rss_bytes": row.peak_rss,
            "note": row.note,
        });
        self.rows.push(row);
        self.scenarios.push(detail);
        self.write();
    }

    fn write(&self) {
        let mut doc = self.header.clone();
        doc["loadavg_now"] = json!(loadavg());
        doc["scenarios"] = json!(self.scenarios);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(
            &self.path,
            serde_json::to_string_pretty(&doc).expect("JSON") + "\n",
        )
        .expect("writing the JSON");
    }

    fn print_table(&self) {
        println!(
            "\n{:<3} {:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  note",
            "id",
            "config",
            "events",
            "events/s",
            "CPU s/M",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "RSS MiB"
        );
        for r in &self.rows {
            println!(
                "{:<3} {:<34} {:>9} {:>9.0} {:>9.2} {:>9} {:>9} {:>9} {:>8}  {}",
                r.scenario,
                r.config,
                r.events,
                r.events_per_s,
                r.cpu_per_million,
                ms(r.latency_ms[0]),
                ms(r.latency_ms[1]),
                ms(r.latency_ms[2]),
                r.peak_rss >> 20,
                r.note
            );
        }
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else if v.is_infinite() {
        "inf".to_string()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn finite(v: f64) -> Json {
    if v.is_finite() {
        json!(round(v, 3))
    } else {
        Json::Null
    }
}

const NO_LATENCY: [f64; 3] = [f64::NAN; 3];

/// Latencies of records read back: arrival minus record timestamp, in ms.
fn latencies(arrivals: &[surgeflow_testkit::bench::Arrival]) -> Vec<f64> {
    arrivals
        .iter()
        .map(|a| (a.arrived_ms - a.timestamp as f64).max(0.0))
        .collect()
}

fn usage_json(u: &ProcessUsage) -> Json {
    json!({"cpu_seconds": round(u.cpu_seconds, 3), "rss_bytes": u.rss, "peak_rss_bytes": u.peak_rss})
}

fn drained_json(d: &Drained) -> Json {
    json!({
        "wall_seconds": round(d.wall_seconds, 3),
        "busy_seconds": round(d.busy_seconds, 3),
        "cpu_seconds": round(d.usage.cpu_seconds, 3),
        "peak_rss_bytes": d.usage.peak_rss,
    })
}

/// A child process killed when dropped.
struct Spawned(Child);

impl Spawned {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `surgeflow <args>` against topology `t` and waits for it, returning its standard
/// output.
///
/// # Panics
/// When it fails.
fn surgeflow(cli: &Path, t: &TestTopology, args: &[&str]) -> String {
    let out = Command::new(cli)
        .arg("--topology")
        .arg(&t.path)
        .args(args)
        .env("SURGEFLOW_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting surgeflow: {e}"));
    assert!(
        out.status.success(),
        "surgeflow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An operator of a topology, running on its own HTTP port.
struct Running {
    name: &'static str,
    process: OperatorProcess,
    port: u16,
}

fn start_operator(binary: &Path, t: &TestTopology, name: &'static str) -> Running {
    let port = free_port();
    let process = OperatorProcess::start_on(binary, t, "bench-0", port);
    Running {
        name,
        process,
        port,
    }
}

/// Waits until each operator serves metrics and owns partitions.
fn wait_assigned(operators: &[&Running]) {
    for op in operators {
        wait_for_metrics(op.port, Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric_sum(&scrape(op.port), "surgeflow_assigned_partitions", &[]).unwrap_or(0.0)
            < 1.0
        {
            assert!(Instant::now() < deadline, "{} got no partitions", op.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// How an operator batched and committed, from its metrics page: transactions (or offset
/// commits at least once), records per transaction, and the time spent committing.
fn commit_stats(page: &str) -> Json {
    let get = |name: &str| metric_sum(page, name, &[]).unwrap_or(f64::NAN);
    let commits = get("surgeflow_transaction_commit_seconds_count");
    let seconds = get("surgeflow_transaction_commit_seconds_sum");
    let records = get("surgeflow_records_in_total");
    json!({
        "commits": commits,
        "records_per_commit": finite(records / commits),
        "commit_seconds_total": finite(seconds),
        "commit_ms_mean": finite(seconds / commits * 1e3),
    })
}

fn records_out(page: &str, topic: &str) -> f64 {
    metric_sum(
        page,
        "surgeflow_records_out_total",
        &[&format!("topic=\"{topic}\"")],
    )
    .unwrap_or(0.0)
}

/// The local broker's process (`surgeflow dev up`), when the benchmark uses it: its CPU is
/// reported per scenario, since it shares the cores with the operators.
fn broker_pid() -> Option<u32> {
    if std::env::var_os("SURGEFLOW_TEST_BOOTSTRAP").is_some() {
        return None;
    }
    let path = surgeflow_testkit::project_root().join(".surgeflow/dev/kafka/kafka.pid");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The processor's model name, from `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(PASSTHROUGH) {
        passthrough(&args[2..]);
        return;
    }
    let config = Config::from_env();
    let cluster = cluster();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let started = Instant::now();
    println!(
        "surgeflow end-to-end benchmark: scenarios {}; {cores} cores ({}), {} GiB; broker {}; load average {}",
        config.scenarios.join(","),
        cpu_model(),
        memory >> 30,
        cluster.bootstrap_servers,
        loadavg()
    );
    let mut report = Report {
        rows: Vec::new(),
        scenarios: Vec::new(),
        header: json!({
            "command": "cargo bench -p surgeflow-testkit --bench e2e",
            "scenarios_selected": config.scenarios,
            "machine": {
                "cores": cores,
                "cpu": cpu_model(),
                "memory_bytes": memory,
                "loadavg_start": loadavg(),
            },
            "started_unix_ms": now_ms(),
            "broker_cpu_seconds": {},
            "scenario_seconds": {},
        }),
        path: config.json.clone(),
    };
    let pings = if config.wants("S0") || config.wants("S1") {
        router::pings(config.pings)
    } else {
        Vec::new()
    };
    for (id, title) in [
        ("S0", "pass-through (client ceiling)"),
        ("S1", "location-router"),
        ("S2", "surge-pricer"),
        ("S3", "matcher"),
        ("S4", "hot spot and burst"),
        ("S5", "restore"),
        ("S6", "NYC taxi replay"),
    ] {
        if !config.wants(id) {
            continue;
        }
        println!("\n{id} {title}: load average {}", loadavg());
        let begun = Instant::now();
        let broker_before = broker_pid().map(ProcessUsage::of);
        match id {
            "S0" => s0(&config, &pings, &mut report).await,
            "S1" => s1(&config, &pings, &mut report).await,
            "S2" => s2(&config, &mut report).await,
            "S3" => s3(&config, &mut report).await,
            "S4" => s4(&config, &mut report).await,
            "S5" => s5(&config, &mut report).await,
            _ => s6(&config, &mut report).await,
        }
        let broker_cpu = broker_pid()
            .map(ProcessUsage::of)
            .zip(broker_before)
            .map(|(after, before)| after.cpu_seconds - before.cpu_seconds);
        report.header["broker_cpu_seconds"][id] = json!(broker_cpu.map(|c| round(c, 2)));
        report.header["scenario_seconds"][id] = json!(round(begun.elapsed().as_secs_f64(), 1));
        println!(
            "{id} took {:.0} s; broker CPU {}; load average {}",
            begun.elapsed().as_secs_f64(),
            broker_cpu.map_or("unknown".to_string(), |c| format!("{c:.1} s")),
            loadavg()
        );
    }
    report.print_table();
    report.header["total_seconds"] = json!(round(started.elapsed().as_secs_f64(), 1));
    report.write();
    println!(
        "\n(CPU s/M = operator CPU seconds (user + system, all threads) per million events; \
         latencies from the intended send time or event time to the output read back with \
         read_committed; total {:.0} s; load average at the end {}; JSON in {})",
        started.elapsed().as_secs_f64(),
        loadavg(),
        config.json.display()
    );
}

// ---------------------------------------------------------------------------------------------
// S0: the pass-through.

/// The pass-through loop (the child process of S0): `<topology> <input> <output> <group>
/// <transactional id> <delivery> <max batch> <commit interval ms>`. It gathers and commits as
/// the operator runtime does (its producer settings, `await_acks`, then the transaction or an
/// asynchronous offset commit), but copies key, payload and timestamp without decoding.
fn passthrough(args: &[String]) {
    let [
        topology,
        input,
        output,
        group,
        transactional_id,
        delivery,
        max_batch,
        commit_ms,
    ] = args
    else {
        panic!("{PASSTHROUGH} takes 8 arguments, got {args:?}");
    };
    let topology = Topology::load(Path::new(topology)).expect("topology");
    let factory = ClientFactory::from_topology(&topology.connection.kafka);
    let exactly_once = delivery == "exactly_once";
    let delivery = if exactly_once {
        Delivery::ExactlyOnce
    } else {
        Delivery::AtLeastOnce
    };
    let max_batch: usize = max_batch.parse().expect("max batch");
    let commit_interval = Duration::from_millis(commit_ms.parse().expect("commit interval"));
    let consumer: BaseConsumer = factory.consumer_config(group).create().expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer: rdkafka::producer::BaseProducer =
        batch::producer_config(&factory, delivery, transactional_id)
            .create()
            .expect("producer");
    let timeout = Duration::from_secs(30);
    if exactly_once {
        producer
            .init_transactions(timeout)
            .expect("init_transactions");
    }
    // `E2E_S0_TRACE=1`: where each batch's time goes, every 10 batches on stderr.
    let trace = std::env::var_os("E2E_S0_TRACE").is_some();
    let mut phases = [Duration::ZERO; 4];
    let mut batches = 0u32;
    loop {
        let began = Instant::now();
        let deadline = began + commit_interval;
        let mut batch = Vec::with_capacity(max_batch);
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // As the runtime: at least once, a batch closes when the queue runs dry.
            let dry_close = !exactly_once && !batch.is_empty();
            match consumer.poll(if dry_close {
                left.min(Duration::from_millis(1))
            } else {
                left
            }) {
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => eprintln!("pass-through: {e}"),
                None if dry_close => break,
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        let gathered = Instant::now();
        if exactly_once {
            producer.begin_transaction().expect("begin");
        }
        for m in &batch {
            let mut record = BaseRecord::to(output)
                .key(m.key().unwrap_or_default())
                .payload(m.payload().unwrap_or_default());
            if let Some(ts) = m.timestamp().to_millis() {
                record = record.timestamp(ts);
            }
            send_record(&producer, record);
        }
        let mut offsets = TopicPartitionList::new();
        for e in consumer.position().expect("position").elements() {
            if let Offset::Offset(o) = e.offset() {
                offsets
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))
                    .expect("offset");
            }
        }
        let count = batch.len();
        drop(batch);
        if exactly_once {
            let metadata = consumer.group_metadata().expect("group metadata");
            producer
                .send_offsets_to_transaction(&offsets, &metadata, timeout)
                .expect("send offsets");
        }
        let sent = Instant::now();
        batch::await_acks(&producer, timeout).expect("acknowledgements");
        let acked = Instant::now();
        if exactly_once {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            consumer
                .commit(&offsets, CommitMode::Async)
                .expect("commit offsets");
        }
        if trace {
            let at = [began, gathered, sent, acked, Instant::now()];
            for (i, p) in phases.iter_mut().enumerate() {
                *p += at[i + 1] - at[i];
            }
            batches += 1;
            if batches.is_multiple_of(10) {
                let ms = phases.map(|p| format!("{:.1}", p.as_secs_f64() * 1e3 / 10.0));
                eprintln!(
                    "pass-through {delivery:?}: batch of {count}, mean ms: gather {}, enqueue{} {}, wait for acks {}, commit {}",
                    ms[0],
                    if exactly_once {
                        " and send offsets"
                    } else {
                        ""
                    },
                    ms[1],
                    ms[2],
                    ms[3]
                );
                phases = [Duration::ZERO; 4];
            }
        }
    }
}

/// The settings S0 and S1 share: 6 input and 12 output partitions, the S1 batch size.
fn router_settings(delivery: &str) -> Json {
    json!({
        "delivery": delivery,
        "input_partitions": 6,
        "output_partitions": 12,
        "max_batch": router::MAX_BATCH,
        "commit_interval_ms": 100,
    })
}

async fn s0(config: &Config, pings: &[(String, LocationUpdate)], report: &mut Report) {
    // geo.driver and geo.trip: a 12-partition output per mode.
    let t = TestTopology::new("bench-s0");
    apply(&t).await;
    let input = t.topic("location.update");
    produce(&input, pings).await;
    let exe = std::env::current_exe().expect("this executable");
    // Same partitions as S1: 6 in, 12 out.
    let runs = [
        ("exactly_once", "geo.driver"),
        ("at_least_once", "geo.trip"),
    ];
    for (mode, output) in runs {
        if !config.deliveries.iter().any(|d| d == mode) {
            continue;
        }
        let load_before = loadavg();
        let group = unique_name("bench-s0-pass");
        let progress = GroupProgress::new(&t, &group, std::slice::from_ref(&input));
        let end = progress.end();
        let started = Instant::now();
        let args = [
            input.clone(),
            t.topic(output),
            group.clone(),
            format!("{group}.tx"),
            mode.to_string(),
            router::MAX_BATCH.to_string(),
            "100".to_string(),
        ];
        let child = Spawned(
            Command::new(&exe)
                .arg(PASSTHROUGH)
                .arg(&t.path)
                .args(args)
                .stdin(Stdio::null())
                .spawn()
                .expect("starting the pass-through"),
        );
        let drained = drain(
            child.pid(),
            started,
            || progress.committed(),
            end,
            Duration::from_secs(600),
        );
        drop(child);
        let events = pings.len();
        report.add(
            Row {
                scenario: "S0",
                config: format!("pass-through {mode}"),
                events: events as u64,
                events_per_s: events as f64 / drained.busy_seconds,
                cpu_per_million: per_million(drained.usage.cpu_seconds, events),
                latency_ms: NO_LATENCY,
                peak_rss: drained.usage.peak_rss,
                note: format!(
                    "raw copy 6 -> {} partitions, batch {}, wall incl. start {:.1} s",
                    t.topology
                        .topic(&t.topic(output))
                        .map_or(0, |spec| spec.partitions),
                    router::MAX_BATCH,
                    drained.wall_seconds
                ),
            },
            json!({
                "settings": router_settings(mode),
                "run": drained_json(&drained),
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }),
        );
    }
    delete_topics(&t).await;
}

// ---------------------------------------------------------------------------------------------
// S1: location-router.

async fn s1(config: &Config, pings: &[(String, LocationUpdate)], report: &mut Report) {
    let binary = release_binary("surgeflow-location-router", "location-router");
    for mode in ["exactly_once", "at_least_once"] {
        if !config.deliveries.iter().any(|d| d == mode) {
            continue;
        }
        let load_before = loadavg();
        let run = router::throughput(mode, pings, &binary, free_port()).await;
        let d = run.drained;
        let commits = commit_stats(&scrape(run.port));
        // Latency at a fixed offered rate, on the same (caught-up) router.
        let t = &run.topology;
        let topic = t.topic("location.update");
        let outputs = [t.topic("geo.driver")];
        let encoder = Encoder::<LocationUpdate>::register(&registry(), &format!("{topic}-value"))
            .await
            .expect("schema");
        let reader = OutputReader::at_end(t, &outputs);
        let count = (config.s1_rate * config.s1_seconds).round() as usize;
        let period = 1.0 / config.s1_rate;
        let (t0, t0_wall) = start_after(Duration::from_secs(3));
        let geometry = geometry(t);
        let mut expected = 0;
        let records: Vec<Scheduled> = pings
            .iter()
            .cycle()
            .take(count)
            .enumerate()
            .map(|(i, (key, ping))| {
                let at = Duration::from_secs_f64(i as f64 * period);
                let timestamp = (t0_wall + at.as_secs_f64() * 1e3).round() as i64;
                let ping = LocationUpdate {
                    event_time: timestamp,
                    ..ping.clone()
                };
                expected += geometry
                    .route(check_point(ping.lat, ping.lon).expect("valid"))
                    .expect("routable")
                    .targets()
                    .count();
                Scheduled {
                    topic: topic.clone(),
                    key: key.clone(),
                    payload: encoder.encode(&ping).expect("encode"),
                    at,
                    timestamp,
                }
            })
            .collect();
        let cpu_before = ProcessUsage::of(run.router.pid());
        let (sent, arrivals) = offer_and_read(
            &reader,
            &records,
            t0,
            t0_wall.floor() as i64,
            Duration::from_secs(3),
        );
        let live = ProcessUsage::of(run.router.pid());
        let mut lat = latencies(&arrivals);
        let p = percentiles(&mut lat);
        drop(run.router);
        delete_topics(&run.topology).await;
        report.add(
            Row {
                scenario: "S1",
                config: format!("location-router {mode}"),
                events: run.events as u64,
                events_per_s: run.events as f64 / d.busy_seconds,
                cpu_per_million: per_million(d.usage.cpu_seconds, run.events),
                latency_ms: p,
                peak_rss: d.usage.peak_rss.max(live.peak_rss),
                note: format!(
                    "{} copies; latency at {:.0}/s: {} of {expected} copies read",
                    run.outputs,
                    config.s1_rate,
                    arrivals.len()
                ),
            },
            json!({
                "settings": router_settings(mode),
                "throughput": {
                    "events": run.events,
                    "copies": run.outputs,
                    "run": drained_json(&d),
                    "commits": commits,
                },
                "latency": {
                    "offered_per_second": config.s1_rate,
                    "seconds": config.s1_seconds,
                    "events": count,
                    "copies_expected": expected,
                    "copies_read": arrivals.len(),
                    "max_send_lag_ms": round(sent.max_lag.as_secs_f64() * 1e3, 3),
                    "p50_ms": finite(p[0]), "p99_ms": finite(p[1]), "p999_ms": finite(p[2]),
                    "max_ms": finite(lat.last().copied().unwrap_or(f64::NAN)),
                    "cpu_seconds": round(live.cpu_seconds - cpu_before.cpu_seconds, 3),
                    "cpu_seconds_per_million_events": round(per_million(live.cpu_seconds - cpu_before.cpu_seconds, count), 3),
                },
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// S2: surge-pricer.

/// `--drivers D --radius-m R --requests-per-s Q --topic-prefix P` of `surgeflow simulate`.
fn city_args(config: &Config, requests_per_s: f64, prefix: &str) -> Vec<String> {
    [
        "--drivers".to_string(),
        config.s2_drivers.to_string(),
        "--radius-m".to_string(),
        config.s2_radius_m.to_string(),
        "--requests-per-s".to_string(),
        requests_per_s.to_string(),
        "--topic-prefix".to_string(),
        prefix.to_string(),
    ]
    .to_vec()
}

/// Runs `surgeflow simulate <args> <city>` against `t`.
fn simulate(cli: &Path, t: &TestTopology, args: &[&str], city: &[String]) -> String {
    let mut all: Vec<&str> = vec!["simulate"];
    all.extend_from_slice(args);
    all.extend(city.iter().map(String::as_str));
    surgeflow(cli, t, &all)
}

/// The routers' output for a pre-loaded city, in event-time order per partition.
///
/// Routers consuming a pre-loaded backlog take it a fetch (about 1 MB of one input partition)
/// at a time, so their output interleaves seconds to minutes of event time, where a live
/// stream interleaves finely; a pricer reading that would drop most of it as late. So the
/// city is routed by the real routers in a topology of its own, read back, and each output
/// partition sorted by record timestamp: what the routers write for the city when it runs
/// live. Returns `(topic, records)` for `geo.driver` and `geo.trip`.
async fn routed_city(config: &Config, cli: &Path) -> Vec<(&'static str, Vec<OwnedMessage>)> {
    // The routers are not measured here: larger batches get the city routed sooner.
    let t = TestTopology::with("bench-s2-src", |doc: &mut Value| {
        for router in ["location-router", "trip-router"] {
            doc["operators"][router]["max_batch"] = Value::from(5000);
        }
    });
    apply(&t).await;
    let per_second = f64::from(config.s2_drivers) / 4.0 + 4.0 * config.s2_requests_per_s;
    let span_ms = (config.s2_events as f64 / per_second * 1e3) as i64;
    // In the recent past: within the routers' max_age_ms, never ahead of the pricer's clock.
    let start_ms = (now_ms() - span_ms - 90_000).to_string();
    let events = config.s2_events.to_string();
    let loaded = simulate(
        cli,
        &t,
        &[
            "--rate",
            "max",
            "--duration",
            "10m",
            "--seed",
            "7",
            "--max-events",
            &events,
            "--start-ms",
            &start_ms,
        ],
        &city_args(config, config.s2_requests_per_s, &t.prefix),
    );
    println!(
        "  pre-loaded: {}",
        loaded.lines().next().unwrap_or_default()
    );
    let routers = [
        ("location-router", "surgeflow-location-router", "geo.driver"),
        ("trip-router", "surgeflow-trip-router", "geo.trip"),
    ];
    let mut out = Vec::new();
    for (name, package, output) in routers {
        let router = start_operator(&release_binary(package, name), &t, name);
        let inputs = t.topology.operators.get(name).expect("router").inputs;
        wait_consumed(&t, name, inputs, Duration::from_secs(600));
        let count = records_out(&scrape(router.port), &t.topic(output)) as usize;
        drop(router);
        let mut records = read_raw(&t.topic(output), count, Duration::from_secs(300));
        records.sort_by_key(|m| (m.partition(), m.timestamp().to_millis(), m.offset()));
        out.push((output, records));
    }
    delete_topics(&t).await;
    out
}

/// Writes records to `topic` of `t`, each to its own partition with its own timestamp, and
/// waits until every one is acknowledged.
fn copy_records(t: &TestTopology, topic: &str, records: &[OwnedMessage]) {
    let producer = surgeflow_testkit::clients().producer().expect("producer");
    let topic = t.topic(topic);
    for m in records {
        let mut record = BaseRecord::to(&topic)
            .partition(m.partition())
            .key(m.key().unwrap_or_default())
            .payload(m.payload().unwrap_or_default());
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        send_record(&producer, record);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

async fn s2(config: &Config, report: &mut Report) {
    let load_before = loadavg();
    let cli = release_binary("surgeflow-cli", "surgeflow");
    let pricer_binary = release_binary("surgeflow-surge-pricer", "surge-pricer");
    let begun = Instant::now();
    let routed = routed_city(config, &cli).await;
    let t = TestTopology::new("bench-s2");
    apply(&t).await;
    for (topic, records) in &routed {
        copy_records(&t, topic, records);
    }
    let events: usize = routed.iter().map(|(_, r)| r.len()).sum();
    drop(routed);
    println!(
        "  {events} routed records in event-time order, pre-loaded in {:.0} s",
        begun.elapsed().as_secs_f64()
    );

    // The pricer alone from offset 0.
    let progress = GroupProgress::of_operator(&t, "surge-pricer");
    let end = progress.end();
    let started = Instant::now();
    let pricer = start_operator(&pricer_binary, &t, "surge-pricer");
    let drained = drain(
        pricer.process.pid(),
        started,
        || progress.committed(),
        end,
        Duration::from_secs(600),
    );
    // The state gauges are set once per batch: one more batch after the last commit.
    std::thread::sleep(Duration::from_millis(500));
    let page = scrape(pricer.port);
    let gauge = |kind: &str| {
        metric_sum(
            &page,
            "surgeflow_state_entries",
            &[&format!("kind=\"{kind}\"")],
        )
        .unwrap_or(0.0)
    };
    let (drivers, cells, trips, bytes) = (
        gauge("drivers"),
        gauge("cells"),
        gauge("trips"),
        gauge("bytes"),
    );
    let consumed = metric_sum(&page, "surgeflow_records_in_total", &[]).unwrap_or(0.0);
    let published = records_out(&page, &t.topic("surge.multiplier"));
    let late = metric_sum(
        &page,
        "surgeflow_records_dropped_total",
        &["reason=\"late\""],
    )
    .unwrap_or(0.0);

    // The same city in real time, through both routers: multiplier latency from its tick
    // (event) time.
    let routers = [
        ("location-router", "surgeflow-location-router"),
        ("trip-router", "surgeflow-trip-router"),
    ]
    .map(|(name, package)| start_operator(&release_binary(package, name), &t, name));
    wait_assigned(&[&routers[0], &routers[1]]);
    let multipliers = [t.topic("surge.multiplier")];
    let reader = OutputReader::at_end(&t, &multipliers);
    let live_from = now_ms();
    let cpu_before = ProcessUsage::of(pricer.process.pid());
    let duration = format!("{}s", config.s2_live_seconds);
    let city = city_args(config, config.s2_live_requests_per_s, &t.prefix);
    let mut arrivals = Vec::new();
    let live_until = live_from + config.s2_live_seconds as i64 * 1000;
    std::thread::scope(|s| {
        s.spawn(|| simulate(&cli, &t, &["--duration", &duration, "--seed", "8"], &city));
        // Ticks of the run are published once the watermark (allowed lateness behind the
        // newest event) passes them, or the idle advance does: read that long after it.
        let hard_end = Instant::now() + Duration::from_secs(config.s2_live_seconds + 22);
        reader.read_until(
            || Instant::now() >= hard_end,
            Duration::ZERO,
            |a| {
                if (live_from..=live_until).contains(&a.timestamp) {
                    arrivals.push(a);
                }
            },
        );
    });
    let live = ProcessUsage::of(pricer.process.pid());
    let mut lat = latencies(&arrivals);
    let p = percentiles(&mut lat);
    let live_page = scrape(pricer.port);
    let live_in =
        metric_sum(&live_page, "surgeflow_records_in_total", &[]).unwrap_or(0.0) - consumed;
    drop(pricer);
    drop(routers);
    delete_topics(&t).await;
    let per_driver = bytes / drivers.max(1.0);
    report.add(
        Row {
            scenario: "S2",
            config: "surge-pricer exactly_once".to_string(),
            events: events as u64,
            events_per_s: events as f64 / drained.busy_seconds,
            cpu_per_million: per_million(drained.usage.cpu_seconds, events),
            latency_ms: p,
            peak_rss: drained.usage.peak_rss.max(live.peak_rss),
            note: format!(
                "{cells:.0} cells, {drivers:.0} drivers, {per_driver:.0} B state/driver; \
                 {:.1} % dropped late; latency: {} multipliers, tick time -> read",
                late / consumed.max(1.0) * 100.0,
                arrivals.len()
            ),
        },
        json!({
            "delivery": "exactly_once",
            "input_partitions": 12,
            "max_batch": t.topology.operators.get("surge-pricer").map(|o| o.max_batch),
            "commit_interval_ms": 100,
            "city": {
                "drivers": config.s2_drivers, "radius_m": config.s2_radius_m,
                "requests_per_s": config.s2_requests_per_s, "events_simulated": config.s2_events,
            },
            "throughput": {
                "records_routed": events,
                "records_consumed": consumed,
                "multipliers_published": published,
                "late_dropped": late,
                "commits": commit_stats(&page),
                "dropped": page
                    .lines()
                    .filter(|l| l.starts_with("surgeflow_records_dropped_total"))
                    .collect::<Vec<_>>(),
                "run": drained_json(&drained),
            },
            "state": {
                "drivers": drivers, "cells": cells, "trips": trips, "bytes": bytes,
                "bytes_per_driver": round(per_driver, 1),
            },
            "latency": {
                "live_seconds": config.s2_live_seconds,
                "live_requests_per_s": config.s2_live_requests_per_s,
                "records_consumed": live_in,
                "multipliers_read": arrivals.len(),
                "p50_ms": finite(p[0]), "p99_ms": finite(p[1]), "p999_ms": finite(p[2]),
                "max_ms": finite(lat.last().copied().unwrap_or(f64::NAN)),
                "cpu_seconds": round(live.cpu_seconds - cpu_before.cpu_seconds, 3),
            },
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// S3: matcher.

async fn s3(config: &Config, report: &mut Report) {
    let binary = release_binary("surgeflow-matcher", "matcher");
    let requests = (config.s3_rate * config.s3_seconds).round() as usize;
    let (positions, pickups) = matcher::city(config.s3_drivers, requests);
    println!(
        "  {} available drivers; {requests} requests at {:.0}/s",
        config.s3_drivers, config.s3_rate
    );
    for mode in matcher::modes(&config.s3_modes, config.s3_batch_window_ms) {
        let f = matcher::run(&mode, &binary, &positions, &pickups, config.s3_rate).await;
        let detail: Json = serde_json::from_str(&f.json()).expect("matcher figures are JSON");
        report.add(
            Row {
                scenario: "S3",
                config: format!("matcher {} {}", f.mode, f.delivery),
                events: f.requests as u64,
                events_per_s: f.decided_per_second(),
                cpu_per_million: f.cpu_per_million_requests(),
                latency_ms: [f.p50_ms, f.p99_ms, f.p999_ms],
                peak_rss: f.peak_rss,
                note: format!(
                    "{} proposals, {} unfilled; {:.0} drivers indexed, {:.0} B/driver; p99 target {:.0} ms",
                    f.proposals,
                    f.unfilled,
                    f.drivers_indexed,
                    f.rss_per_driver(),
                    f.target_ms()
                ),
            },
            detail,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// S4: hot spot and burst.

/// 16 cells (4 × 4) in Midtown, at the topology's cell precision.
fn hot_cells(precision: u8) -> Vec<Cell> {
    let corner = Cell::from_lat_lon(40.7580, -73.9855, precision).expect("cell");
    let mut out = Vec::with_capacity(16);
    let mut row = corner;
    for _ in 0..4 {
        let mut cell = row;
        for _ in 0..4 {
            out.push(cell);
            cell = cell.neighbour(Direction::E).expect("neighbour");
        }
        row = row.neighbour(Direction::S).expect("neighbour");
    }
    out
}

/// A point: 80 % uniform within one of the hot cells, 20 % uniform over the box.
fn hot_point(rng: &mut Rng, hot: &[Cell]) -> LatLon {
    if rng.unit() < 0.8 {
        let b = hot[rng.below(hot.len())].bbox();
        LatLon {
            lat: b.min_lat + rng.unit() * (b.max_lat - b.min_lat),
            lon: b.min_lon + rng.unit() * (b.max_lon - b.min_lon),
        }
    } else {
        matcher::uniform_in_box(rng)
    }
}

/// What S4 samples: seconds since t0, and for the router and the pricer the records behind
/// (sent but not yet processed) and the records processed so far.
struct LagSample {
    at: f64,
    lag: [i64; 2],
    consumed: [i64; 2],
}

/// Sets a flag when dropped (also when unwinding), so threads waiting for it stop.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn s4(config: &Config, report: &mut Report) {
    let load_before = loadavg();
    let router_binary = release_binary("surgeflow-location-router", "location-router");
    let pricer_binary = release_binary("surgeflow-surge-pricer", "surge-pricer");
    let t = TestTopology::new("bench-s4");
    apply(&t).await;
    let ping_topic = t.topic("location.update");
    let trip_topic = t.topic("geo.trip");
    let pings = Encoder::<LocationUpdate>::register(&registry(), &format!("{ping_topic}-value"))
        .await
        .expect("schema");
    let trips = Encoder::<GeoTrip>::register(&registry(), &format!("{trip_topic}-value"))
        .await
        .expect("schema");
    let router = start_operator(&router_binary, &t, "location-router");
    let pricer = start_operator(&pricer_binary, &t, "surge-pricer");
    wait_assigned(&[&router, &pricer]);
    let reader = OutputReader::at_end(&t, &[t.topic("geo.driver")]);

    // The schedule: steady, burst, steady; one request per 20 pings on geo.trip (routed).
    let [steady, burst, after] = config.s4_phases;
    let rate = config.s4_rate;
    let phases = [
        (0.0, steady, rate),
        (steady, burst, rate * config.s4_burst),
        (steady + burst, after, rate),
    ];
    let geometry = geometry(&t);
    let hot = hot_cells(t.topology.geo.cell_precision);
    let mut rng = Rng(0x5_4040_4040);
    let (t0, t0_wall) = start_after(Duration::from_secs(5));
    let mut records = Vec::new();
    let mut n = 0usize;
    for (from, seconds, per_second) in phases {
        let count = (seconds * per_second).round() as usize;
        for i in 0..count {
            let at = Duration::from_secs_f64(from + i as f64 / per_second);
            let timestamp = (t0_wall + at.as_secs_f64() * 1e3).round() as i64;
            let p = hot_point(&mut rng, &hot);
            n += 1;
            if n.is_multiple_of(20) {
                let (key, value) = matcher::request(&geometry, format!("s4-{n}"), p, timestamp);
                records.push(Scheduled {
                    topic: trip_topic.clone(),
                    key,
                    payload: trips.encode(&value).expect("encode"),
                    at,
                    timestamp,
                });
                continue;
            }
            let ping = LocationUpdate {
                driver_id: format!("d-{}", rng.below(20_000)),
                lat: p.lat,
                lon: p.lon,
                accuracy_m: Some(5.0),
                speed_mps: Some(5.0),
                heading_deg: Some(90.0),
                status: DriverStatus::Available,
                product: Product::Economy,
                event_time: timestamp,
            };
            records.push(Scheduled {
                topic: ping_topic.clone(),
                key: ping.driver_id.clone(),
                payload: pings.encode(&ping).expect("encode"),
                at,
                timestamp,
            });
        }
    }
    let before = [router.process.pid(), pricer.process.pid()].map(ProcessUsage::of);

    // Lag sampled every 250 ms while the load runs and until both are back (or 60 s more).
    // Lag from the operators' own counters (cheap to read while the broker is busy): records
    // sent so far (by the schedule) minus records each has processed; the pricer's input is
    // what the router committed to geo.driver plus the requests sent to geo.trip.
    let sent_at = |topic: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.topic == topic)
            .map(|r| r.at.as_secs_f64())
            .collect()
    };
    let (ping_times, trip_times) = (sent_at(&ping_topic), sent_at(&trip_topic));
    let driver_topic = t.topic("geo.driver");
    let sample = |at: f64| {
        let sent = |times: &[f64]| times.partition_point(|&t| t <= at) as f64;
        let (router_page, pricer_page) = (scrape(router.port), scrape(pricer.port));
        let consumed = |page: &str| metric_sum(page, "surgeflow_records_in_total", &[]);
        let router_in = consumed(&router_page)?;
        let pricer_in = consumed(&pricer_page)?;
        let copies = records_out(&router_page, &driver_topic);
        Some(LagSample {
            at,
            lag: [
                (sent(&ping_times) - router_in).max(0.0) as i64,
                (copies + sent(&trip_times) - pricer_in).max(0.0) as i64,
            ],
            consumed: [router_in as i64, pricer_in as i64],
        })
    };
    let samples: Mutex<Vec<LagSample>> = Mutex::new(Vec::new());
    let finished = AtomicBool::new(false);
    let (sent, arrivals) = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                let now = Instant::now();
                let at = if now >= t0 {
                    now.duration_since(t0).as_secs_f64()
                } else {
                    -t0.duration_since(now).as_secs_f64()
                };
                if let Some(s) = sample(at) {
                    samples.lock().expect("samples").push(s);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let _stop = SetOnDrop(&finished);
        let out = offer_and_read(
            &reader,
            &records,
            t0,
            t0_wall.floor() as i64,
            Duration::from_secs(3),
        );
        // Until both have processed everything, or a minute more.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline
            && sample(f64::INFINITY).is_none_or(|s| s.lag.iter().any(|&l| l > 0))
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        out
    });
    let after_usage = [router.process.pid(), pricer.process.pid()].map(ProcessUsage::of);
    let commits = [router.port, pricer.port].map(|port| commit_stats(&scrape(port)));
    let samples = samples.into_inner().expect("samples");
    drop(router);
    drop(pricer);
    delete_topics(&t).await;

    // Figures by phase.
    let phase_of = |secs: f64| {
        if secs < steady {
            0
        } else if secs < steady + burst {
            1
        } else {
            2
        }
    };
    let mut by_phase: [Vec<f64>; 3] = Default::default();
    for a in &arrivals {
        let secs = (a.timestamp as f64 - t0_wall) / 1e3;
        by_phase[phase_of(secs)].push((a.arrived_ms - a.timestamp as f64).max(0.0));
    }
    let phase_latency = by_phase.map(|mut v| percentiles(&mut v));
    let mut all = latencies(&arrivals);
    let p = percentiles(&mut all);
    let burst_end = steady + burst;
    let figures = [0, 1].map(|i| {
        // Steady lag: the largest sampled in the second half of the first steady phase.
        let band = samples
            .iter()
            .filter(|s| s.at >= steady / 2.0 && s.at < steady)
            .map(|s| s.lag[i])
            .max()
            .unwrap_or(0);
        let max_lag = samples.iter().map(|s| s.lag[i]).max().unwrap_or(0);
        // Back to the steady band (at least 100 records): the first sample after the burst.
        let recovered = samples
            .iter()
            .filter(|s| s.at >= burst_end)
            .find(|s| s.lag[i] <= band.max(100))
            .map(|s| s.at - burst_end);
        // Consumed per second over the burst: records processed at its first and last sample.
        let at = |from: f64| samples.iter().find(|s| s.at >= from);
        let burst_rate = match (at(steady), at(burst_end)) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.consumed[i] - a.consumed[i]) as f64 / (b.at - a.at)
            }
            _ => f64::NAN,
        };
        let cpu = after_usage[i].cpu_seconds - before[i].cpu_seconds;
        (band, max_lag, recovered, burst_rate, cpu)
    });
    let events = records.len();
    let peak = after_usage[0].peak_rss.max(after_usage[1].peak_rss);
    // One record in 20 is a request (to geo.trip): the router sees the rest.
    let offered_pings = rate * config.s4_burst * 19.0 / 20.0;
    let held = figures[0].3 >= 0.9 * offered_pings;
    let recovered =
        |r: Option<f64>| r.map_or("not within 60 s".to_string(), |s| format!("{s:.1} s"));
    let operator_json = |i: usize| {
        let (band, max_lag, recovered, burst_rate, cpu) = figures[i];
        json!({
            "commits": commits[i],
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_million_offered": round(per_million(cpu, events), 3),
            "peak_rss_bytes": after_usage[i].peak_rss,
            "max_lag": max_lag,
            "steady_lag": band,
            "seconds_back_to_steady_lag_after_burst": recovered.map(|s| round(s, 2)),
            "consumed_per_second_in_burst": round(burst_rate, 1),
        })
    };
    let mut router_json = operator_json(0);
    router_json["copies_read"] = json!(arrivals.len());
    router_json["latency_ms_by_phase"] = json!(
        phase_latency
            .iter()
            .map(|l| json!({"p50": finite(l[0]), "p99": finite(l[1]), "p999": finite(l[2])}))
            .collect::<Vec<_>>()
    );
    report.add(
        Row {
            scenario: "S4",
            config: format!(
                "router+pricer {:.0}/s, {:.0}x burst",
                rate, config.s4_burst
            ),
            events: events as u64,
            events_per_s: figures[0].3,
            cpu_per_million: per_million(figures[0].4 + figures[1].4, events),
            latency_ms: p,
            peak_rss: peak,
            note: format!(
                "router took {:.0}/s of {offered_pings:.0}/s offered in the burst ({}); max lag router {} / pricer {}; \
                 back to steady lag {} / {} after it; router p99 steady {} / burst {} / after {} ms",
                figures[0].3,
                if held { "held" } else { "fell behind" },
                figures[0].1,
                figures[1].1,
                recovered(figures[0].2),
                recovered(figures[1].2),
                ms(phase_latency[0][1]),
                ms(phase_latency[1][1]),
                ms(phase_latency[2][1]),
            ),
        },
        json!({
            "delivery": "exactly_once",
            "hot_cells": hot.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "hot_share": 0.8,
            "phases_seconds": [steady, burst, after],
            "offered_per_second": [rate, rate * config.s4_burst, rate],
            "records_offered": events,
            "requests_share": 0.05,
            "send_seconds": round(sent.finished.duration_since(t0).as_secs_f64(), 3),
            "max_send_lag_ms": round(sent.max_lag.as_secs_f64() * 1e3, 3),
            "router": router_json,
            "pricer": operator_json(1),
            "router_held_burst": held,
            "lag_samples": samples
                .iter()
                .map(|s| json!([round(s.at, 2), s.lag[0], s.lag[1]]))
                .collect::<Vec<_>>(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// S5: restore.

async fn s5(config: &Config, report: &mut Report) {
    let load_before = loadavg();
    let binary = release_binary("surgeflow-matcher", "matcher");
    let t = matcher::topology("bench-s5", "exactly_once", 0);
    apply(&t).await;
    let port = free_port();
    let first = OperatorProcess::start_on(&binary, &t, "bench-0", port);
    wait_for_metrics(port, Duration::from_secs(60));
    let (positions, _) = matcher::city(config.s5_drivers, 0);
    let (records, indexed) = matcher::load_drivers(&t, port, &positions).await;
    let held = ProcessUsage::of(first.pid());
    first.signal(9);
    drop(first);

    // The same instance id again: static membership hands its partitions straight back.
    let port = free_port();
    let started = Instant::now();
    let second = OperatorProcess::start_on(&binary, &t, "bench-0", port);
    let mut serving = None;
    let deadline = started + Duration::from_secs(600);
    let ready = loop {
        assert!(
            Instant::now() < deadline,
            "the matcher was not ready in 10 minutes"
        );
        let page = scrape(port);
        if !page.is_empty() {
            serving.get_or_insert(started.elapsed());
            let restored =
                metric_sum(&page, "surgeflow_restore_duration_seconds_count", &[]).unwrap_or(0.0);
            if restored >= 1.0
                && surgeflow_testkit::bench::http_status(port, "/readyz") == Some(200)
            {
                break started.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let at_ready = ProcessUsage::of(second.pid());
    let after = matcher::wait_indexed(port);
    let page = scrape(port);
    let replayed = metric_sum(&page, "surgeflow_restore_records_total", &[]).unwrap_or(0.0);
    let restore_seconds =
        metric_sum(&page, "surgeflow_restore_duration_seconds_sum", &[]).unwrap_or(f64::NAN);
    let end = ProcessUsage::of(second.pid());
    drop(second);
    delete_topics(&t).await;
    report.add(
        Row {
            scenario: "S5",
            config: "matcher SIGKILL + restart".to_string(),
            events: replayed as u64,
            events_per_s: replayed / restore_seconds,
            cpu_per_million: per_million(at_ready.cpu_seconds, replayed as usize),
            latency_ms: NO_LATENCY,
            peak_rss: at_ready.peak_rss.max(end.peak_rss),
            note: format!(
                "ready {:.2} s after restart (restore {:.2} s); {:.0} drivers before, {:.0} after",
                ready.as_secs_f64(),
                restore_seconds,
                indexed,
                after
            ),
        },
        json!({
            "delivery": "exactly_once",
            "driver_records": records,
            "drivers_indexed_before": indexed,
            "drivers_indexed_after": after,
            "rss_before_kill_bytes": held.rss,
            "seconds_to_metrics": serving.map(|d| round(d.as_secs_f64(), 3)),
            "seconds_to_ready": round(ready.as_secs_f64(), 3),
            "restore_seconds": round(restore_seconds, 3),
            "restore_records": replayed,
            "cpu_seconds_to_ready": round(at_ready.cpu_seconds, 3),
            "restarted": usage_json(&end),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// S6: the NYC taxi replay through the whole topology.

async fn s6(config: &Config, report: &mut Report) {
    let Some(data) = data_file("nyc-taxi-2013/sorted_data.csv", "NYC taxi sample") else {
        println!("S6 skipped: the NYC taxi sample is absent (set SURGEFLOW_DATA_DIR)");
        return;
    };
    let load_before = loadavg();
    let cli = release_binary("surgeflow-cli", "surgeflow");
    let names: [(&'static str, &str); 4] = [
        ("location-router", "surgeflow-location-router"),
        ("trip-router", "surgeflow-trip-router"),
        ("surge-pricer", "surgeflow-surge-pricer"),
        ("matcher", "surgeflow-matcher"),
    ];
    let binaries = names.map(|(bin, package)| release_binary(package, bin));
    // The file's own event times (2013): the routers' age check is off, as for any replay.
    let t = TestTopology::with("bench-s6", |doc: &mut Value| {
        for router in ["location-router", "trip-router"] {
            doc["operators"][router]["params"]["max_age_ms"] = Value::from(0);
        }
    });
    apply(&t).await;
    let operators: Vec<Running> = names
        .iter()
        .zip(&binaries)
        .map(|((name, _), binary)| start_operator(binary, &t, name))
        .collect();
    wait_assigned(&operators.iter().collect::<Vec<_>>());
    let outputs = [t.topic("match.proposal"), t.topic("match.unfilled")];
    let reader = OutputReader::at_end(&t, &outputs);
    let before: Vec<ProcessUsage> = operators
        .iter()
        .map(|o| ProcessUsage::of(o.process.pid()))
        .collect();

    // Decisions as they arrive (first per trip), while the replay and the pipeline run.
    let started = Instant::now();
    let replay_done = AtomicBool::new(false);
    let drained = AtomicBool::new(false);
    let data = data.display().to_string();
    let mut replay_args = vec![
        "replay",
        data.as_str(),
        "--speed",
        config.s6_speed.as_str(),
        "--topic-prefix",
        t.prefix.as_str(),
    ];
    if config.s6_until != "all" {
        replay_args.extend(["--until", config.s6_until.as_str()]);
    }
    let mut first: std::collections::HashMap<Vec<u8>, (f64, bool)> = Default::default();
    let (summary, replay_seconds, done_at, usage) = std::thread::scope(|s| {
        let replay = s.spawn(|| {
            let _done = SetOnDrop(&replay_done);
            let out = surgeflow(&cli, &t, &replay_args);
            (out, started.elapsed().as_secs_f64())
        });
        let watcher = s.spawn(|| {
            // Each operator is done when its group has committed everything of its inputs
            // there is once the stage before it is done.
            while !replay_done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut done_at = [f64::NAN; 4];
            let mut usage = [ProcessUsage::default(); 4];
            for (stage, ops) in [[0usize, 1], [2, 3]].iter().enumerate() {
                let progress: Vec<GroupProgress> = ops
                    .iter()
                    .map(|&i| GroupProgress::of_operator(&t, operators[i].name))
                    .collect();
                let ends: Vec<i64> = progress.iter().map(GroupProgress::end).collect();
                let mut left: Vec<usize> = (0..ops.len()).collect();
                let deadline = Instant::now() + Duration::from_secs(900);
                while !left.is_empty() {
                    assert!(Instant::now() < deadline, "stage {stage} did not drain");
                    left.retain(|&k| {
                        let i = ops[k];
                        usage[i] = ProcessUsage::of(operators[i].process.pid());
                        if progress[k].committed() >= ends[k] {
                            done_at[i] = started.elapsed().as_secs_f64();
                            false
                        } else {
                            true
                        }
                    });
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            drained.store(true, Ordering::Relaxed);
            (done_at, usage)
        });
        reader.read_until(
            || drained.load(Ordering::Relaxed) || watcher.is_finished(),
            Duration::from_secs(2),
            |a| {
                first.entry(a.key).or_insert((a.arrived_ms, a.topic == 0));
            },
        );
        let (summary, replay_seconds) = replay.join().expect("replay");
        let (done_at, usage) = watcher.join().expect("watcher");
        (summary, replay_seconds, done_at, usage)
    });
    let drained_seconds = done_at.iter().copied().fold(0.0, f64::max);

    // Inputs: everything the replay produced (non-transactional, so the ends are counts).
    let consumer: BaseConsumer = surgeflow_testkit::clients()
        .base()
        .create()
        .expect("client");
    let inputs: Vec<String> = ["location-router", "trip-router"]
        .iter()
        .flat_map(|name| {
            t.topology
                .operators
                .get(name)
                .expect("router")
                .inputs
                .to_vec()
        })
        .collect();
    let events: i64 = inputs
        .iter()
        .map(|topic| surgeflow_testkit::bench::high_watermarks(&consumer, topic))
        .sum();
    // Request latency: from the request's producer timestamp (when the replay sent it) to
    // its first decision read back.
    let requested_topic = t.topic("trip.requested");
    let request_count = surgeflow_testkit::bench::high_watermarks(&consumer, &requested_topic);
    let requested = read_raw(
        &requested_topic,
        request_count as usize,
        Duration::from_secs(60),
    );
    let mut lat = Vec::new();
    let (mut proposals, mut unfilled) = (0, 0);
    for m in &requested {
        let (Some(key), Some(sent)) = (m.key(), m.timestamp().to_millis()) else {
            continue;
        };
        if let Some((at, proposal)) = first.get(key) {
            lat.push((at - sent as f64).max(0.0));
            if *proposal {
                proposals += 1;
            } else {
                unfilled += 1;
            }
        }
    }
    let p = percentiles(&mut lat);
    let pages: Vec<String> = operators.iter().map(|o| scrape(o.port)).collect();
    let mut per_operator = Vec::new();
    let mut cpu_total = 0.0;
    let mut peak = 0;
    for (i, op) in operators.iter().enumerate() {
        let cpu = usage[i].cpu_seconds - before[i].cpu_seconds;
        cpu_total += cpu;
        peak = peak.max(usage[i].peak_rss);
        let spec = t.topology.operators.get(op.name).expect("operator");
        let outs: serde_json::Map<String, Json> = spec
            .outputs
            .iter()
            .map(|topic| {
                let short = topic
                    .strip_prefix(&format!("{}.", t.prefix))
                    .unwrap_or(topic);
                (short.to_string(), json!(records_out(&pages[i], topic)))
            })
            .collect();
        per_operator.push(json!({
            "operator": op.name,
            "records_in": metric_sum(&pages[i], "surgeflow_records_in_total", &[]),
            "records_out": outs,
            "dlq_records": metric_sum(&pages[i], "surgeflow_dlq_records_total", &[]).unwrap_or(0.0),
            "commits": commit_stats(&pages[i]),
            "late_dropped": metric_sum(&pages[i], "surgeflow_records_dropped_total", &["reason=\"late\""]),
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_million_input_events": round(per_million(cpu, events as usize), 3),
            "peak_rss_bytes": usage[i].peak_rss,
            "drained_at_seconds": round(done_at[i], 3),
        }));
    }
    drop(operators);
    delete_topics(&t).await;
    let out_of = |name: &str| -> f64 {
        per_operator
            .iter()
            .filter_map(|o| o["records_out"][name].as_f64())
            .sum()
    };
    let slowest = names[done_at
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)]
    .0;
    report.add(
        Row {
            scenario: "S6",
            config: format!(
                "NYC replay {}, speed {}, 4 ops",
                if config.s6_until == "all" { "60 min" } else { config.s6_until.as_str() },
                config.s6_speed
            ),
            events: events as u64,
            events_per_s: events as f64 / drained_seconds,
            cpu_per_million: per_million(cpu_total, events as usize),
            latency_ms: p,
            peak_rss: peak,
            note: format!(
                "{:.0} geo.driver, {:.0} geo.trip, {:.0} multipliers, {:.0} proposals, {:.0} unfilled; {} requests decided; last to drain: {slowest}",
                out_of("geo.driver"),
                out_of("geo.trip"),
                out_of("surge.multiplier"),
                out_of("match.proposal"),
                out_of("match.unfilled"),
                lat.len(),
            ),
        },
        json!({
            "delivery": "exactly_once",
            "data": data,
            "speed": config.s6_speed,
            "until": config.s6_until,
            "replay_summary": summary.lines().collect::<Vec<_>>(),
            "replay_seconds": round(replay_seconds, 3),
            "drained_seconds": round(drained_seconds, 3),
            "input_events": events,
            "requests": requested.len(),
            "requests_decided": lat.len(),
            "first_decisions": {"proposals": proposals, "unfilled": unfilled},
            "request_to_decision_ms": {"p50": finite(p[0]), "p99": finite(p[1]), "p999": finite(p[2]), "max": finite(lat.last().copied().unwrap_or(f64::NAN))},
            "operators": per_operator,
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }),
    );
}
