//! The harness every surgeflow test that needs Kafka uses.
//!
//! - [`cluster`] gives a real broker and schema registry: the ones named by
//!   `SURGEFLOW_TEST_BOOTSTRAP` and `SURGEFLOW_TEST_REGISTRY_URL` when both are set, otherwise the
//!   local stack of `surgeflow dev up`, started on first use (once per test run: the stack is
//!   shared by every test binary and left running for the next one).
//! - [`unique_name`] makes topic and subject names no other test (or earlier run) uses, so tests
//!   run in parallel against one broker without seeing each other's records.
//! - [`produce`] and [`read_committed`] write and read back typed records in the wire format,
//!   reading with `isolation.level=read_committed` as downstream consumers do.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use surgeflow_kafka::{ClientFactory, Encoder, Registry, SchemaCache};
use surgeflow_schema::AvroRecord;
use surgeflow_topology::Topology;

/// Where the tests' broker and registry are.
#[derive(Debug, Clone)]
pub struct TestCluster {
    pub bootstrap_servers: String,
    pub registry_url: String,
}

/// The broker and registry for tests, started once per test run when not given by env.
///
/// # Panics
/// When no cluster is configured and the local one cannot be started: a test that needs Kafka
/// cannot run without it, and the message says why.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let bootstrap = std::env::var("SURGEFLOW_TEST_BOOTSTRAP").ok();
        let registry = std::env::var("SURGEFLOW_TEST_REGISTRY_URL").ok();
        if let (Some(bootstrap_servers), Some(registry_url)) = (bootstrap, registry) {
            return TestCluster {
                bootstrap_servers,
                registry_url,
            };
        }
        let stack = surgeflow_devstack::DevStack::new(
            surgeflow_devstack::StackConfig::new(surgeflow_devstack::StackPaths::for_project(
                &project_root(),
            ))
            .with_env_ports(),
        );
        let status = stack
            .up()
            .unwrap_or_else(|e| panic!("starting the local Kafka and registry for tests: {e}"));
        TestCluster {
            bootstrap_servers: status.bootstrap_servers(),
            registry_url: status.registry_url().to_string(),
        }
    })
}

/// The repository root (where `topology.yaml` lives).
pub fn project_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A name no other test or run uses: `<prefix>-<pid>-<counter>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// The project's `topology.yaml`, connected to the test cluster.
///
/// # Panics
/// When the file does not validate (other tests pin down why).
pub fn topology() -> Topology {
    let root = project_root();
    let path = root.join("topology.yaml");
    let text = std::fs::read_to_string(&path).expect("reading topology.yaml");
    let cluster = cluster();
    let env = BTreeMap::from([
        (
            "SURGEFLOW_KAFKA_BOOTSTRAP".to_string(),
            cluster.bootstrap_servers.clone(),
        ),
        (
            "SURGEFLOW_REGISTRY_URL".to_string(),
            cluster.registry_url.clone(),
        ),
    ]);
    Topology::from_yaml_str(&text, &root, &env).unwrap_or_else(|e| panic!("topology.yaml: {e}"))
}

/// The project's topology with every topic renamed `<prefix>.<topic>` and no operators: what
/// tests of `topology apply` and `diff` use so they never touch the real topics.
pub fn namespaced_topology(prefix: &str) -> Topology {
    let mut topology = topology();
    topology.topics = std::mem::take(&mut topology.topics)
        .into_iter()
        .map(|(name, spec)| (format!("{prefix}.{name}"), spec))
        .collect::<BTreeMap<_, _>>();
    topology.operators = Default::default();
    topology
}

/// A copy of the project's topology in a namespace of its own, written to a file that operator
/// binaries can be started with: every topic is renamed `<prefix>.<topic>`, every operator
/// gets its own group and transactional ids, schema paths are absolute, and the connection
/// points at the test cluster.
pub struct TestTopology {
    pub prefix: String,
    pub path: PathBuf,
    pub topology: Topology,
}

impl TestTopology {
    /// Writes the namespaced topology.
    ///
    /// # Panics
    /// When the project's topology cannot be read or rewritten (a bug in the test setup).
    pub fn new(name: &str) -> Self {
        Self::with(name, |_| {})
    }

    /// Writes the namespaced topology after `edit` changed the document (e.g. shorter windows
    /// so a test runs in seconds).
    ///
    /// # Panics
    /// As [`TestTopology::new`].
    pub fn with(name: &str, edit: impl FnOnce(&mut serde_yaml_ng::Value)) -> Self {
        use serde_yaml_ng::Value;
        let prefix = unique_name(name);
        let root = project_root();
        let text =
            std::fs::read_to_string(root.join("topology.yaml")).expect("reading topology.yaml");
        let mut doc: Value = serde_yaml_ng::from_str(&text).expect("topology.yaml is YAML");
        let rename = |v: &mut Value| {
            if let Value::String(s) = v {
                *s = format!("{prefix}.{s}");
            }
        };
        let cluster = cluster();
        doc["connection"]["kafka"]["bootstrap_servers"] =
            Value::String(cluster.bootstrap_servers.clone());
        doc["connection"]["registry"]["url"] = Value::String(cluster.registry_url.clone());
        if let Some(Value::Mapping(topics)) = doc.get_mut("topics") {
            let renamed = std::mem::take(topics)
                .into_iter()
                .map(|(mut name, mut spec)| {
                    rename(&mut name);
                    for field in ["key", "value"] {
                        if let Some(Value::String(path)) = spec.get_mut(field)
                            && path.ends_with(".avsc")
                        {
                            *path = root.join(&*path).display().to_string();
                        }
                    }
                    (name, spec)
                })
                .collect();
            *topics = renamed;
        }
        if let Some(Value::Mapping(operators)) = doc.get_mut("operators") {
            for (name, spec) in operators.iter_mut() {
                let name = name.as_str().unwrap_or_default().to_string();
                for list in ["inputs", "outputs", "tables"] {
                    if let Some(Value::Sequence(items)) = spec.get_mut(list) {
                        items.iter_mut().for_each(rename);
                    }
                }
                if let Some(dlq) = spec.get_mut("dlq") {
                    rename(dlq);
                }
                spec["group_id"] = Value::String(format!("{prefix}.{name}"));
                spec["transactional_id_prefix"] = Value::String(format!("{prefix}.{name}"));
            }
        }
        edit(&mut doc);
        let dir = root.join("target").join("test-topologies");
        std::fs::create_dir_all(&dir).expect("creating target/test-topologies");
        let path = dir.join(format!("{prefix}.yaml"));
        std::fs::write(&path, serde_yaml_ng::to_string(&doc).expect("YAML"))
            .expect("writing the test topology");
        let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TestTopology {
            prefix,
            path,
            topology,
        }
    }

    /// The namespaced name of a project topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// Creates every topic and registers every schema, as `surgeflow topology apply` does.
    ///
    /// # Panics
    /// When the cluster refuses.
    pub async fn apply(&self) {
        let admin = clients().admin().expect("admin client");
        let registry = registry();
        let state = surgeflow_kafka::admin::ClusterState::read(&self.topology, &admin, &registry)
            .await
            .expect("reading the cluster");
        let changes = surgeflow_kafka::admin::plan(&self.topology, &state).expect("plan");
        surgeflow_kafka::admin::apply(&self.topology, &changes, &admin, &registry)
            .await
            .expect("apply");
    }
}

/// A loopback port nobody listens on right now.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

/// The path of a binary of another workspace package, built first if needed (integration
/// tests only get their own package's binaries from Cargo).
///
/// # Panics
/// When the build fails.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .current_dir(project_root())
        .status()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    // Test executables live in <target>/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target profile dir");
    profile_dir.join(bin)
}

/// What a process has used so far, from `/proc` (benchmarks report it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set now, bytes.
    pub rss: u64,
    /// Peak resident set, bytes.
    pub peak_rss: u64,
}

impl ProcessUsage {
    /// The usage of process `pid`; zeros once it is gone.
    pub fn of(pid: u32) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let bytes = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        // utime and stime are fields 14 and 15 (1-based), 11 and 12 after the command name;
        // the kernel counts them in clock ticks of 1/100 s.
        ProcessUsage {
            cpu_seconds: (ticks(11) + ticks(12)) / 100.0,
            rss: bytes("VmRSS:"),
            peak_rss: bytes("VmHWM:"),
        }
    }
}

/// A running operator binary, killed when dropped.
pub struct OperatorProcess {
    child: std::process::Child,
}

impl OperatorProcess {
    /// Starts `binary --topology <file> --instance-id <id>` on a free HTTP port.
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn start(
        binary: impl AsRef<std::ffi::OsStr>,
        topology: &TestTopology,
        instance_id: &str,
    ) -> Self {
        Self::start_on(binary, topology, instance_id, 0)
    }

    /// As [`OperatorProcess::start`], serving HTTP on `port` (see [`free_port`]).
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn start_on(
        binary: impl AsRef<std::ffi::OsStr>,
        topology: &TestTopology,
        instance_id: &str,
        port: u16,
    ) -> Self {
        let binary = binary.as_ref();
        let child = std::process::Command::new(binary)
            .arg("--topology")
            .arg(&topology.path)
            .arg("--instance-id")
            .arg(instance_id)
            .env("SURGEFLOW_HTTP_PORT", port.to_string())
            .env("SURGEFLOW_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.to_string_lossy()));
        OperatorProcess { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a number: 9 for SIGKILL, 15 for SIGTERM) to the process.
    pub fn signal(&self, signal: i32) {
        // Through kill(1), which keeps the harness free of unsafe code.
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits up to `timeout` for the process to exit, returning its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client settings for the test cluster.
pub fn clients() -> ClientFactory {
    ClientFactory::from_topology(&topology().connection.kafka)
}

/// A registry client for the test cluster.
pub fn registry() -> Registry {
    Registry::from_topology(&topology().connection.registry).expect("registry settings")
}

/// Creates a topic (replication 1) and waits until it is usable.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin = clients().admin().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// Produces `(key, value)` records to `topic`, registering the type's schema under
/// `<topic>-value`, and waits until every record is acknowledged.
pub async fn produce<T: AvroRecord>(topic: &str, records: &[(String, T)]) {
    let encoder = Encoder::<T>::register(&registry(), &format!("{topic}-value"))
        .await
        .expect("registering the schema");
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .map(|(_, v)| encoder.encode(v).expect("encode"))
        .collect();
    produce_raw(
        topic,
        records
            .iter()
            .map(|(k, _)| k.as_bytes())
            .zip(payloads.iter().map(Vec::as_slice)),
    );
}

/// Produces `(key, value)` records to `topic` as a steady stream, `per_step` records every
/// `step`, and waits until every one is acknowledged: input that is still flowing while a test
/// changes the group (an operator's batches then hold records processed but not committed).
pub async fn produce_paced<T: AvroRecord>(
    topic: &str,
    records: &[(String, T)],
    per_step: usize,
    step: Duration,
) {
    let encoder = Encoder::<T>::register(&registry(), &format!("{topic}-value"))
        .await
        .expect("registering the schema");
    let producer = clients().producer().expect("producer");
    for chunk in records.chunks(per_step.max(1)) {
        for (key, value) in chunk {
            let payload = encoder.encode(value).expect("encode");
            send_record(
                &producer,
                BaseRecord::to(topic).key(key.as_bytes()).payload(&payload),
            );
        }
        producer.poll(Duration::ZERO);
        tokio::time::sleep(step).await;
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Produces `(key, value, timestamp)` records in order, with the timestamps given (as routers
/// stamp their outputs with event time), and waits until every one is acknowledged.
pub async fn produce_timed<T: AvroRecord>(topic: &str, records: &[(String, T, i64)]) {
    let encoder = Encoder::<T>::register(&registry(), &format!("{topic}-value"))
        .await
        .expect("registering the schema");
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .map(|(_, v, _)| encoder.encode(v).expect("encode"))
        .collect();
    send_all(
        topic,
        records
            .iter()
            .zip(&payloads)
            .map(|((k, _, ts), p)| (k.as_bytes(), p.as_slice(), Some(*ts))),
    );
}

/// Produces raw `(key, payload)` records and waits until every one is acknowledged.
pub fn produce_raw<'a>(topic: &str, records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
    send_all(topic, records.into_iter().map(|(k, p)| (k, p, None)));
}

fn send_all<'a>(topic: &str, records: impl IntoIterator<Item = (&'a [u8], &'a [u8], Option<i64>)>) {
    let producer = clients().producer().expect("producer");
    for (key, payload, timestamp) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        send_record(&producer, record);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Enqueues one record, waiting while librdkafka's queue is full.
///
/// # Panics
/// On any other produce error.
pub fn send_record(
    producer: &rdkafka::producer::BaseProducer,
    mut record: BaseRecord<'_, [u8], [u8]>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, back))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((e, _)) => panic!("producing: {e}"),
        }
    }
}

/// Reads `topic` from the beginning with `read_committed` until `expected` records arrived (or
/// `timeout` passed), then on until no record came for two seconds, so that extra records
/// (duplicates, say) are returned too.
pub fn read_raw(topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
    const SETTLE: Duration = Duration::from_secs(2);
    let consumer: BaseConsumer = clients()
        .consumer_config(&unique_name("reader"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut last_record = Instant::now();
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline || (out.len() >= expected && now.duration_since(last_record) >= SETTLE) {
            break;
        }
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            out.push(result.expect("consuming").detach());
            last_record = Instant::now();
        }
    }
    out
}

/// A record read back: key, partition, offset and decoded value.
#[derive(Debug, Clone)]
pub struct Received<T> {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    pub value: T,
}

/// Reads and decodes `expected` records of `topic` (see [`read_raw`]).
///
/// # Panics
/// When a record does not decode as `T`.
pub async fn read_committed<T: AvroRecord>(
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Received<T>> {
    let cache = SchemaCache::new(registry());
    let messages = read_raw(topic, expected, timeout);
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let value = cache
            .decode::<T>(m.payload().unwrap_or_default())
            .await
            .unwrap_or_else(|e| panic!("decoding {topic}@{}:{}: {e}", m.partition(), m.offset()));
        out.push(Received {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            partition: m.partition(),
            offset: m.offset(),
            value,
        });
    }
    out
}

/// A file of the real data sets that tests and benchmarks read, such as
/// `nyc-taxi-2013/sorted_data.csv`: under `SURGEFLOW_DATA_DIR` when set, else under
/// `../shared/data` next to the repository. The data stays outside the project, so it may be
/// absent: then this prints `skipping: <what> not found at <path> (set SURGEFLOW_DATA_DIR)`
/// and returns `None`, and the caller returns without failing.
pub fn data_file(relative: &str, what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SURGEFLOW_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("..").join("shared").join("data"));
    let path = dir.join(relative);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {what} not found at {} (set SURGEFLOW_DATA_DIR)",
            path.display()
        );
        None
    }
}

pub mod bench;
