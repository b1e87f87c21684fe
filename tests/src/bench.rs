//! What the end-to-end benchmarks share: the operators' own benches (`location-router`'s
//! `throughput`, `matcher`'s `latency`) and the S0–S6 harness (`tests/benches/e2e.rs`).
//!
//! - Release binaries of other packages ([`release_binary`]), process figures
//!   ([`crate::ProcessUsage`], [`drain`]) and quantiles ([`quantile`]).
//! - An operator's HTTP side: its `/metrics` page ([`scrape`], [`metric_sum`],
//!   [`bucket_quantile_ms`]) and status codes ([`http_status`]).
//! - Consumer groups: how far a group has committed ([`GroupProgress`], [`wait_consumed`]).
//! - Offered load on a fixed schedule, stamped with its *intended* send time
//!   ([`send_scheduled`]), and outputs read back from the end of their topics
//!   ([`OutputReader`]), so latencies are corrected for coordinated omission.
//! - The scenarios two benches run: [`router`] (S1) and [`matcher`] (S3, S5).

pub mod matcher;
pub mod router;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_domain::routing::Geometry;

use crate::{ProcessUsage, TestTopology, clients, project_root, send_record};

/// Wall clock, UTC milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Wall clock, UTC milliseconds with a fractional part (for latencies read back).
pub fn now_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The environment variable `name` parsed, or `default` when unset or unparseable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1, 5 and 15-minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The path of a release binary of a workspace package, built first if needed (benchmarks
/// measure optimised operators, whatever profile the bench itself was built with).
///
/// # Panics
/// When the build fails.
pub fn release_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            package,
            "--bin",
            bin,
        ])
        .current_dir(project_root())
        .status()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    target_dir().join("release").join(bin)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else three levels above this executable
/// (`<target>/<profile>/deps/<exe>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            project_root().join(dir)
        };
    }
    let exe = std::env::current_exe().expect("current executable");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// The value at quantile `q` of sorted values (nearest rank); NaN when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// p50, p99 and p99.9 of unsorted values (sorts them).
pub fn percentiles(values: &mut [f64]) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    [0.5, 0.99, 0.999].map(|q| quantile(values, q))
}

/// A latency for the JSON: `null` when infinite or unknown (no output by the deadline).
pub fn json_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

/// CPU seconds per million events.
pub fn per_million(cpu_seconds: f64, events: usize) -> f64 {
    cpu_seconds / (events.max(1) as f64 / 1e6)
}

/// A small deterministic generator (xorshift64*), so every run sees the same city.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The routing geometry of a topology (what the routers apply).
pub fn geometry(t: &TestTopology) -> Geometry {
    let geo = &t.topology.geo;
    Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    }
}

/// `GET path` on a loopback port: the status code and the whole response (headers included),
/// or `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    let status = page.split(' ').nth(1)?.parse().ok()?;
    Some((status, page))
}

/// The operator's `/metrics` page (empty while it does not answer).
pub fn scrape(port: u16) -> String {
    http_get(port, "/metrics").map_or_else(String::new, |(_, page)| page)
}

/// The status code of `GET path` (`None` while nothing answers).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

/// Waits until the operator on `port` serves `/metrics`.
///
/// # Panics
/// When it does not within `timeout`.
pub fn wait_for_metrics(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while scrape(port).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing served /metrics on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of the series of metric `name` (a counter or gauge) whose labels contain every
/// one of `labels` (e.g. `kind="drivers"`); `None` when no series matches.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if labels.iter().any(|l| !rest.contains(l)) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Batches the operator on `port` committed, and failed to commit, from its revocation
/// callback (`surgeflow_revocation_commits_total` by outcome).
pub fn revocation_commits(port: u16) -> (f64, f64) {
    let page = scrape(port);
    let get = |outcome: &str| {
        metric_sum(
            &page,
            "surgeflow_revocation_commits_total",
            &[&format!("outcome=\"{outcome}\"")],
        )
        .unwrap_or(0.0)
    };
    (get("committed"), get("failed"))
}

/// The upper bound of the bucket holding quantile `q` of a histogram on a metrics page
/// (summed over its series), in milliseconds: how long the matcher itself saw a request wait
/// (processing time of its first proposal minus its event time), without the output's way to
/// the reader.
pub fn bucket_quantile_ms(page: &str, histogram: &str, q: f64) -> f64 {
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

/// Records on `topic` by high watermarks (transaction markers included, so an upper bound).
pub fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> i64 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// How far a consumer group has got through some topics: its committed offsets against the
/// partitions' ends.
pub struct GroupProgress {
    consumer: BaseConsumer,
    partitions: TopicPartitionList,
}

impl GroupProgress {
    /// The progress of `group` through `topics` (as declared in `t`).
    ///
    /// # Panics
    /// When a topic is not declared or no client can be built.
    pub fn new(t: &TestTopology, group: &str, topics: &[String]) -> Self {
        let consumer = clients().consumer(group).expect("consumer");
        let mut partitions = TopicPartitionList::new();
        for topic in topics {
            let count = t.topology.topic(topic).expect("declared topic").partitions;
            for p in 0..count {
                partitions.add_partition(topic, p);
            }
        }
        GroupProgress {
            consumer,
            partitions,
        }
    }

    /// The progress of operator `operator`'s group through its inputs.
    ///
    /// # Panics
    /// As [`GroupProgress::new`], or when the operator is not declared.
    pub fn of_operator(t: &TestTopology, operator: &str) -> Self {
        let spec = t.topology.operators.get(operator).expect("operator");
        Self::new(t, &spec.group_id, spec.inputs)
    }

    /// Offsets committed, summed over the partitions (0 for a partition without any).
    pub fn committed(&self) -> i64 {
        self.consumer
            .committed_offsets(self.partitions.clone(), Duration::from_secs(5))
            .map(|l| {
                l.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The partitions' ends (high watermarks), summed.
    pub fn end(&self) -> i64 {
        self.partitions
            .elements()
            .iter()
            .map(|e| {
                self.consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
                    .map_or(0, |(_, high)| high)
            })
            .sum()
    }
}

/// Waits until operator `operator`'s group has committed every record of `topics` there is
/// now.
///
/// # Panics
/// When it has not within `timeout`.
pub fn wait_consumed(t: &TestTopology, operator: &str, topics: &[String], timeout: Duration) {
    let spec = t.topology.operators.get(operator).expect("operator");
    let progress = GroupProgress::new(t, &spec.group_id, topics);
    let end = progress.end();
    let deadline = Instant::now() + timeout;
    loop {
        let committed = progress.committed();
        // Transaction markers take offsets too: committed can pass the count of records.
        if committed >= end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topics:?}: {committed} of {end} consumed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a process used on its way through a pre-loaded input (see [`drain`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    /// From the start of the measurement to done.
    pub wall_seconds: f64,
    /// From the first progress seen to done: the processing time without start-up (process
    /// start, group join, transaction initialisation).
    pub busy_seconds: f64,
    /// The process's usage when done (CPU since it started, peak RSS).
    pub usage: ProcessUsage,
}

/// Waits until `progress()` reaches `target`, sampling the usage of process `pid` on the
/// way (the last sample before it exits counts).
///
/// # Panics
/// When the target is not reached within `timeout`.
pub fn drain(
    pid: u32,
    started: Instant,
    mut progress: impl FnMut() -> i64,
    target: i64,
    timeout: Duration,
) -> Drained {
    let mut usage = ProcessUsage::default();
    let mut first_progress = None;
    loop {
        let done = progress();
        if done > 0 && first_progress.is_none() {
            first_progress = Some(Instant::now());
        }
        if done >= target {
            break;
        }
        usage = ProcessUsage::of(pid);
        assert!(
            started.elapsed() < timeout,
            "{done} of {target} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let finished = Instant::now();
    let end = ProcessUsage::of(pid);
    if end.cpu_seconds > 0.0 {
        usage = end;
    }
    Drained {
        wall_seconds: finished.duration_since(started).as_secs_f64(),
        busy_seconds: first_progress
            .map_or(0.0, |at| finished.duration_since(at).as_secs_f64())
            .max(1e-3),
        usage,
    }
}

/// A record of an offered load: sent at `at` after the schedule's start, stamped `timestamp`
/// (its intended send time, which its payload's event time also carries).
pub struct Scheduled {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub at: Duration,
    pub timestamp: i64,
}

/// How a schedule was kept.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// When the last record was handed to the producer.
    pub finished: Instant,
    /// The largest delay of a send behind its intended time.
    pub max_lag: Duration,
}

/// Sends `records` (sorted by `at`) on their schedule from `t0`, then waits for every
/// acknowledgement. A send that falls behind is not caught up by skipping: its lateness
/// counts against the latency, since the record carries its intended time.
///
/// # Panics
/// When the producer fails.
pub fn send_scheduled(records: &[Scheduled], t0: Instant) -> Sent {
    let producer = clients().producer().expect("producer");
    let mut max_lag = Duration::ZERO;
    for r in records {
        let intended = t0 + r.at;
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        } else {
            max_lag = max_lag.max(now - intended);
        }
        let record = BaseRecord::to(&r.topic)
            .key(r.key.as_bytes())
            .payload(r.payload.as_slice())
            .timestamp(r.timestamp);
        send_record(&producer, record);
        producer.poll(Duration::ZERO);
    }
    let finished = Instant::now();
    producer.flush(Duration::from_secs(30)).expect("flush");
    Sent { finished, max_lag }
}

/// The start of a schedule `lead` from now: the instant, and the same moment on the wall
/// clock (UTC ms), so records can carry their intended send times.
pub fn start_after(lead: Duration) -> (Instant, f64) {
    (
        Instant::now() + lead,
        now_ms_f64() + lead.as_secs_f64() * 1e3,
    )
}

/// Sends `records` on their schedule from `t0` (see [`send_scheduled`]) while `reader`
/// collects what comes out stamped at or after `from_ms`, until the sender is done and nothing
/// more came for `settle`.
pub fn offer_and_read(
    reader: &OutputReader,
    records: &[Scheduled],
    t0: Instant,
    from_ms: i64,
    settle: Duration,
) -> (Sent, Vec<Arrival>) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let sent = send_scheduled(records, t0);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            sent
        });
        let mut arrivals = Vec::new();
        reader.read_until(
            || done.load(std::sync::atomic::Ordering::Relaxed),
            settle,
            |a| {
                if a.timestamp >= from_ms {
                    arrivals.push(a);
                }
            },
        );
        (sender.join().expect("sender"), arrivals)
    })
}

/// A `read_committed` reader of output topics from their current end: what an operator
/// writes from now on.
pub struct OutputReader {
    consumer: BaseConsumer,
    topics: Vec<String>,
}

/// A record read back: its topic (index into the reader's topics), key, record timestamp
/// (UTC ms) and the wall clock when it arrived (UTC ms).
pub struct Arrival {
    pub topic: usize,
    pub key: Vec<u8>,
    pub timestamp: i64,
    pub arrived_ms: f64,
}

impl OutputReader {
    /// Assigns every partition of `topics` at their end and waits until the ends are
    /// resolved.
    ///
    /// # Panics
    /// When a topic is not declared in `t` or the consumer cannot be built.
    pub fn at_end(t: &TestTopology, topics: &[String]) -> Self {
        let consumer: BaseConsumer = clients()
            .consumer_config(&crate::unique_name("bench-reader"))
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for topic in topics {
            let count = t.topology.topic(topic).expect("declared topic").partitions;
            for p in 0..count {
                list.add_partition_offset(topic, p, Offset::End)
                    .expect("partition");
            }
        }
        consumer.assign(&list).expect("assign");
        let reader = OutputReader {
            consumer,
            topics: topics.to_vec(),
        };
        // The first polls resolve the end offsets, before anything is offered.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let _ = reader.consumer.poll(Duration::from_millis(100));
        }
        reader
    }

    /// The next record, waiting up to 50 ms.
    ///
    /// # Panics
    /// On a consumer error.
    pub fn next(&self) -> Option<Arrival> {
        let message = self.consumer.poll(Duration::from_millis(50))?;
        let arrived_ms = now_ms_f64();
        let message = message.expect("consuming");
        Some(Arrival {
            topic: self.topics.iter().position(|t| t == message.topic())?,
            key: message.key().unwrap_or_default().to_vec(),
            timestamp: message.timestamp().to_millis().unwrap_or(0),
            arrived_ms,
        })
    }

    /// Reads until `stop()` says so and nothing more came for `settle` (at once with a zero
    /// `settle`), calling `each` for every record.
    ///
    /// # Panics
    /// On a consumer error.
    pub fn read_until(
        &self,
        stop: impl Fn() -> bool,
        settle: Duration,
        mut each: impl FnMut(Arrival),
    ) {
        let mut last = Instant::now();
        loop {
            if let Some(arrival) = self.next() {
                last = Instant::now();
                each(arrival);
            }
            if stop() && last.elapsed() >= settle {
                return;
            }
        }
    }
}

/// Creates the topics and registers the schemas of `t` (as [`TestTopology::apply`]), trying
/// again when the broker times out: a shared test broker holding many partitions can take
/// longer than one admin request allows to create a topology's topics.
///
/// # Panics
/// When five attempts failed.
pub async fn apply(t: &TestTopology) {
    use surgeflow_kafka::admin;
    let client = clients().admin().expect("admin client");
    let registry = crate::registry();
    for attempt in 1..=5 {
        let outcome = match admin::ClusterState::read(&t.topology, &client, &registry).await {
            Ok(state) => match admin::plan(&t.topology, &state) {
                Ok(changes) => admin::apply(&t.topology, &changes, &client, &registry).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => return,
            Err(e) if attempt < 5 => eprintln!("applying {} (attempt {attempt}): {e}", t.prefix),
            Err(e) => panic!("applying {}: {e}", t.prefix),
        }
    }
}

/// Deletes every topic of a test topology (benchmarks create hundreds of partitions each).
pub async fn delete_topics(t: &TestTopology) {
    let admin = clients().admin().expect("admin client");
    let names: Vec<&str> = t.topology.topics.keys().map(String::as_str).collect();
    let _ = admin
        .delete_topics(&names, &rdkafka::admin::AdminOptions::new())
        .await;
}
