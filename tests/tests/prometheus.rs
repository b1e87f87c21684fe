//! The dashboards and rules against a real Prometheus (Debian's `prometheus` package) scraping
//! the four operators during an end-to-end run: `surgeflow simulate` through both routers, the
//! surge-pricer and the matcher, plus a few bad records so that dead-letter and drop series
//! exist.
//!
//! Every query of every dashboard panel and every rule expression is evaluated through
//! Prometheus's HTTP API (`/api/v1/query`), Grafana's variables substituted. The test fails on
//! a query that errors, and on one that returns nothing where data must exist, which is:
//!
//! - every metric selector of every query (dashboard panels, rules, variable queries) returns
//!   at least one series;
//! - every panel query and recording rule returns at least one sample as written;
//! - an alert expression, empty while the alert does not fire, returns samples once its
//!   comparisons with a number are dropped (`x > 0.01` evaluates `x`), and evaluates without
//!   error as written;
//! - Prometheus reports every rule of the rule files loaded and healthy, without error, and
//!   every recording rule's series recorded;
//! - the per-cell gauges behind the Geomap carry geohashes of the topology's cell precision.
//!
//! All checks must hold in one pass; passes repeat until they do, for at most
//! `CHECK_DEADLINE`, and the failures of the last pass are reported.

mod observability;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observability::{
    Intervals, Query, QueryKind, metric_names, panel_queries, rule_files, rule_queries, rules,
    selectors, strip_thresholds, variable_queries,
};
use serde_json::Value;
use surgeflow_devstack::probe::http_request;
use surgeflow_testkit::{
    OperatorProcess, TestTopology, free_port, produce_raw, unique_name, workspace_binary,
};

/// How long the checks may take to pass once the pipeline runs.
const CHECK_DEADLINE: Duration = Duration::from_secs(75);

/// How long the simulated city runs (it is stopped once the checks pass).
const SIMULATION: &str = "90s";

/// Grafana's `$__rate_interval` for a 1 s scrape interval would be 4 s; a minute gives every
/// rate enough samples without waiting for more than the run provides.
fn intervals() -> Intervals {
    Intervals {
        rate_interval: "1m".into(),
        interval: "5s".into(),
        range: "5m".into(),
    }
}

/// The `prometheus` binary, or a failure that says how to get it.
fn prometheus_binary() -> PathBuf {
    let ok = Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the prometheus binary was not found: install Debian's Prometheus package \
         (`apt-get install prometheus`; the test runs the binary itself, not the service)"
    );
    PathBuf::from("prometheus")
}

/// A Prometheus server of our own: loopback only, data in a temporary directory, killed and
/// cleaned up when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(targets: &[u16]) -> Self {
        let binary = prometheus_binary();
        let dir = std::env::temp_dir().join(unique_name("surgeflow-prometheus"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rule_files: Vec<String> = rule_files()
            .iter()
            .map(|p| format!("    - {}\n", p.display()))
            .collect();
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: surgeflow\n    static_configs:\n      - targets: [{}]\n",
            rule_files.concat(),
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_request(addr, "GET", "/-/ready", None, Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
            {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GETs an API path; the JSON answer, or why there is none.
    fn get(&self, path: &str) -> Result<Value, String> {
        let answer = http_request(self.addr, "GET", path, None, Duration::from_secs(10))
            .map_err(|e| format!("GET {path}: {e}"))?;
        let json: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("GET {path}: {e}: {}", answer.body))?;
        if json["status"] != "success" {
            return Err(format!(
                "{}: {}",
                json["errorType"].as_str().unwrap_or("error"),
                json["error"].as_str().unwrap_or(&answer.body)
            ));
        }
        Ok(json["data"].clone())
    }

    /// Evaluates `expr` now: its samples (a scalar counts as one).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.get(&format!("/api/v1/query?query={}", encode(expr)))?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar" | "string") => Ok(vec![data["result"].clone()]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One pass of every check; the problems found.
fn check(prometheus: &Prometheus, queries: &[Query], cell_precision: u8) -> Vec<String> {
    let mut problems = Vec::new();
    let mut selectors_checked = BTreeSet::new();
    let mut check_selector = |problems: &mut Vec<String>, source: &str, promql: String| {
        if !selectors_checked.insert(promql.clone()) {
            return;
        }
        match prometheus.query(&promql) {
            Ok(result) if result.is_empty() => {
                problems.push(format!("{source}: selector `{promql}` returns no series"));
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("{source}: selector `{promql}`: {e}")),
        }
    };
    for q in queries {
        for s in selectors(&q.expr) {
            check_selector(&mut problems, &q.source, s.promql());
        }
        match prometheus.query(&q.expr) {
            Err(e) => problems.push(format!("{}: `{}` fails: {e}", q.source, q.expr)),
            Ok(result) if result.is_empty() && q.kind != QueryKind::Alert => {
                problems.push(format!("{}: `{}` returns nothing", q.source, q.expr));
            }
            Ok(_) => {}
        }
        if q.kind == QueryKind::Alert {
            let values = strip_thresholds(&q.expr);
            match prometheus.query(&values) {
                Err(e) => problems.push(format!("{}: `{values}` fails: {e}", q.source)),
                Ok(result) if result.is_empty() => problems.push(format!(
                    "{}: without its thresholds, `{values}` returns nothing",
                    q.source
                )),
                Ok(_) => {}
            }
        }
    }
    for (source, selector, label) in variable_queries(&intervals()) {
        match prometheus.query(&selector) {
            Ok(result) if !result.iter().any(|r| r["metric"][&label].is_string()) => {
                problems.push(format!(
                    "{source}: `{selector}` has no series with label {label}"
                ));
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("{source}: `{selector}`: {e}")),
        }
    }
    // Every rule loaded and healthy.
    match prometheus.get("/api/v1/rules") {
        Ok(data) => {
            let mut loaded = BTreeSet::new();
            for group in data["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    let name = rule["name"].as_str().unwrap_or_default().to_string();
                    if rule["health"] != "ok"
                        || rule["lastError"].as_str().is_some_and(|e| !e.is_empty())
                    {
                        problems.push(format!(
                            "rule {name}: health {}, last error {}",
                            rule["health"], rule["lastError"]
                        ));
                    }
                    loaded.insert(name);
                }
            }
            for rule in rules() {
                if !loaded.contains(&rule.name) {
                    problems.push(format!("rule {} is not loaded", rule.name));
                } else if !rule.alert {
                    // The series a recording rule writes, as the dashboards and other rules
                    // would read them.
                    match prometheus.query(&rule.name) {
                        Ok(result) if result.is_empty() => problems
                            .push(format!("recording rule {}: no series recorded", rule.name)),
                        Ok(_) => {}
                        Err(e) => problems.push(format!("recording rule {}: {e}", rule.name)),
                    }
                }
            }
        }
        Err(e) => problems.push(format!("/api/v1/rules: {e}")),
    }
    // The Geomap's field: geohashes of the cell precision.
    match prometheus.query("surgeflow_cell_multiplier") {
        Ok(result) => {
            for series in &result {
                let cell = series["metric"]["cell"].as_str().unwrap_or_default();
                let parsed = surgeflow_domain::geo::Cell::parse(cell);
                if !parsed.is_ok_and(|c| c.precision() == cell_precision) {
                    problems.push(format!(
                        "surgeflow_cell_multiplier: cell `{cell}` is not a geohash of precision {cell_precision}"
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("surgeflow_cell_multiplier: {e}")),
    }
    problems
}

/// Short windows for the pricer (as its own end-to-end tests use), so a minute exercises
/// ticks, publications and the per-cell gauges.
fn short_windows(doc: &mut serde_yaml_ng::Value) {
    let params = &mut doc["operators"]["surge-pricer"]["params"];
    for (key, value) in [
        ("supply_ttl_ms", 10_000),
        ("demand_window_ms", 20_000),
        ("demand_hop_ms", 5_000),
        ("allowed_lateness_ms", 3_000),
        ("idle_advance_ms", 2_000),
        ("tick_ms", 2_000),
        ("stale_after_ms", 30_000),
    ] {
        params[key] = serde_yaml_ng::Value::from(value);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_and_rule_returns_data_from_a_live_pipeline() {
    let started = Instant::now();
    let _ = prometheus_binary();
    let queries: Vec<Query> = panel_queries(&intervals())
        .into_iter()
        .chain(rule_queries())
        .collect();
    let names: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(&q.expr)).collect();
    eprintln!(
        "{} queries ({} panel targets, {} rules) reading {} metrics",
        queries.len(),
        queries
            .iter()
            .filter(|q| q.kind == QueryKind::Panel)
            .count(),
        queries
            .iter()
            .filter(|q| q.kind != QueryKind::Panel)
            .count(),
        names.len()
    );

    let t = TestTopology::with("prometheus", short_windows);
    t.apply().await;
    let binaries = [
        workspace_binary("surgeflow-location-router", "location-router"),
        workspace_binary("surgeflow-trip-router", "trip-router"),
        workspace_binary("surgeflow-surge-pricer", "surge-pricer"),
        workspace_binary("surgeflow-matcher", "matcher"),
    ];
    let cli = workspace_binary("surgeflow-cli", "surgeflow");
    eprintln!("binaries ready after {:?}", started.elapsed());

    // Bad records, so that dead-letter series exist for every operator and the matcher drops
    // a table record: bytes that are not the wire format.
    let garbage: &[u8] = b"\x07not avro";
    for topic in [
        "location.update",
        "trip.requested",
        "geo.driver",
        "driver.profile",
    ] {
        produce_raw(&t.topic(topic), [(&b"bad-record"[..], garbage)]);
    }

    let ports: Vec<u16> = binaries.iter().map(|_| free_port()).collect();
    let _operators: Vec<OperatorProcess> = binaries
        .iter()
        .zip(&ports)
        .map(|(binary, port)| OperatorProcess::start_on(binary, &t, "prometheus-0", *port))
        .collect();
    let prometheus = Prometheus::start(&ports);
    let mut simulation = Command::new(cli)
        .args(["simulate", "--duration", SIMULATION, "--seed", "7"])
        .args([
            "--drivers",
            "400",
            "--requests-per-s",
            "8",
            "--radius-m",
            "3000",
        ])
        .args(["--topic-prefix", &t.prefix, "--topology"])
        .arg(&t.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running surgeflow simulate");
    let pipeline_started = Instant::now();
    eprintln!("pipeline started after {:?}", started.elapsed());

    let cell_precision = t.topology.geo.cell_precision;
    let deadline = pipeline_started + CHECK_DEADLINE;
    let mut passes = 0;
    let problems = loop {
        std::thread::sleep(Duration::from_secs(3));
        passes += 1;
        let problems = check(&prometheus, &queries, cell_precision);
        if problems.is_empty() || Instant::now() >= deadline {
            break problems;
        }
        if let Ok(Some(status)) = simulation.try_wait() {
            panic!("surgeflow simulate ended early: {status}");
        }
    };
    let _ = simulation.kill();
    let _ = simulation.wait();
    if !problems.is_empty() {
        let targets = prometheus
            .get("/api/v1/targets")
            .map(|d| {
                d["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|e| e);
        panic!(
            "after {passes} passes ({:?}), {} problem(s):\n{}\n\nscrape targets:\n{targets}\n\nprometheus log:\n{}",
            pipeline_started.elapsed(),
            problems.len(),
            problems.join("\n"),
            prometheus.log()
        );
    }
    eprintln!(
        "every query returned data after {passes} passes, {:?} into the run ({:?} in all)",
        pipeline_started.elapsed(),
        started.elapsed()
    );
}
