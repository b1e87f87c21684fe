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
        let stack = surgeflow_devstack::DevStack::new(surgeflow_devstack::StackConfig::new(
            surgeflow_devstack::StackPaths::for_project(&project_root()),
        ));
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

/// Produces raw `(key, payload)` records and waits until every one is acknowledged.
pub fn produce_raw<'a>(topic: &str, records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
    let producer = clients().producer().expect("producer");
    for (key, payload) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Reads `topic` from the beginning with `read_committed` until `expected` records arrived or
/// `timeout` passed, returning what arrived.
pub fn read_raw(topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = clients()
        .consumer_config(&unique_name("reader"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            out.push(result.expect("consuming").detach());
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
