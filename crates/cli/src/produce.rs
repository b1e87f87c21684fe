//! What `surgeflow simulate` and `surgeflow replay` share: the topics their events go to, one
//! Avro encoder per topic, the producer with its delivery report, the progress line, and the
//! duration flags.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use surgeflow_kafka::{ClientFactory, Encoder, Registry};
use surgeflow_schema::{
    LocationUpdate, TripAccepted, TripCancelled, TripCompleted, TripDeclined, TripDriverArrived,
    TripRequested, TripStarted,
};
use surgeflow_sim::{SimEvent, TOPICS};
use surgeflow_topology::Topology;

use crate::{Failure, runtime};

/// The topics events go to, in the order of `surgeflow_sim::TOPICS`.
struct Topics([String; 8]);

impl Topics {
    fn new(prefix: Option<&str>) -> Self {
        Topics(TOPICS.map(|t| match prefix {
            Some(p) => format!("{p}.{t}"),
            None => t.to_string(),
        }))
    }

    /// The topic `event` goes to.
    fn of(&self, event: &SimEvent) -> &str {
        let index = TOPICS.iter().position(|t| *t == event.topic()).unwrap_or(0);
        &self.0[index]
    }
}

/// Counts delivery failures reported by librdkafka, keeping the first reason.
#[derive(Default)]
struct DeliveryReport {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| format!("{}: {error}", message.topic()));
        }
    }
}

/// One encoder per topic.
struct Encoders {
    location: Encoder<LocationUpdate>,
    requested: Encoder<TripRequested>,
    accepted: Encoder<TripAccepted>,
    declined: Encoder<TripDeclined>,
    cancelled: Encoder<TripCancelled>,
    arrived: Encoder<TripDriverArrived>,
    started: Encoder<TripStarted>,
    completed: Encoder<TripCompleted>,
}

impl Encoders {
    async fn register(registry: &Registry, topics: &Topics) -> Result<Self, Failure> {
        async fn one<T: surgeflow_schema::AvroRecord>(
            registry: &Registry,
            topic: &str,
        ) -> Result<Encoder<T>, Failure> {
            Encoder::register(registry, &format!("{topic}-value"))
                .await
                .map_err(Failure::runtime)
        }
        Ok(Encoders {
            location: one(registry, &topics.0[0]).await?,
            requested: one(registry, &topics.0[1]).await?,
            accepted: one(registry, &topics.0[2]).await?,
            declined: one(registry, &topics.0[3]).await?,
            cancelled: one(registry, &topics.0[4]).await?,
            arrived: one(registry, &topics.0[5]).await?,
            started: one(registry, &topics.0[6]).await?,
            completed: one(registry, &topics.0[7]).await?,
        })
    }

    fn encode(
        &self,
        event: &SimEvent,
        buf: &mut Vec<u8>,
    ) -> Result<(), surgeflow_kafka::EncodeError> {
        match event {
            SimEvent::LocationUpdate(e) => self.location.encode_into(e, buf),
            SimEvent::TripRequested(e) => self.requested.encode_into(e, buf),
            SimEvent::TripAccepted(e) => self.accepted.encode_into(e, buf),
            SimEvent::TripDeclined(e) => self.declined.encode_into(e, buf),
            SimEvent::TripCancelled(e) => self.cancelled.encode_into(e, buf),
            SimEvent::TripDriverArrived(e) => self.arrived.encode_into(e, buf),
            SimEvent::TripStarted(e) => self.started.encode_into(e, buf),
            SimEvent::TripCompleted(e) => self.completed.encode_into(e, buf),
        }
    }
}

/// Produces events as Avro to `location.update` and `trip.*` (or their prefixed names),
/// keyed as `SimEvent::key` says.
pub struct EventProducer {
    producer: BaseProducer<DeliveryReport>,
    encoders: Encoders,
    topics: Topics,
    payload: Vec<u8>,
    produced: u64,
}

impl EventProducer {
    /// Checks that the topics are declared in the topology (exit code 2 otherwise) and exist
    /// in the cluster, and registers their schemas.
    ///
    /// # Errors
    /// A topic is not declared, the client settings are wrong, Kafka or the registry cannot be
    /// reached, or the topics were never created.
    pub fn connect(
        topology: &Topology,
        path: &Path,
        topic_prefix: Option<&str>,
    ) -> Result<Self, Failure> {
        let topics = Topics::new(topic_prefix);
        Self::check_declared(topology, path, topic_prefix)?;
        let factory = ClientFactory::from_topology(&topology.connection.kafka);
        let producer: BaseProducer<DeliveryReport> = factory
            .producer_config()
            .create_with_context(DeliveryReport::default())
            .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
        check_topics_exist(&factory, &topics)?;
        let registry =
            Registry::from_topology(&topology.connection.registry).map_err(Failure::usage)?;
        let encoders = runtime()?.block_on(Encoders::register(&registry, &topics))?;
        Ok(EventProducer {
            producer,
            encoders,
            topics,
            payload: Vec::with_capacity(256),
            produced: 0,
        })
    }

    /// Checks that every topic events go to is declared in the topology.
    ///
    /// # Errors
    /// A usage failure naming the first undeclared topic.
    pub fn check_declared(
        topology: &Topology,
        path: &Path,
        topic_prefix: Option<&str>,
    ) -> Result<(), Failure> {
        for topic in &Topics::new(topic_prefix).0 {
            if topology.topic(topic).is_none() {
                return Err(Failure::usage(format!(
                    "topic {topic} is not declared in {}",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Encodes and enqueues one event, waiting while librdkafka's queue is full.
    ///
    /// # Errors
    /// Encoding failed, or the producer refused the record for another reason than a full
    /// queue.
    pub fn send(&mut self, event: &SimEvent) -> Result<(), Failure> {
        self.payload.clear();
        self.encoders
            .encode(event, &mut self.payload)
            .map_err(Failure::runtime)?;
        let topic = self.topics.of(event);
        let mut record = BaseRecord::to(topic)
            .key(event.key())
            .payload(&self.payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => {
                    return Err(Failure::runtime(format!("producing to {topic}: {e}")));
                }
            }
        }
        self.produced += 1;
        Ok(())
    }

    /// Serves delivery reports without waiting.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Events enqueued so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Waits until every event is delivered.
    ///
    /// # Errors
    /// The flush timed out, or some records were not delivered.
    pub fn finish(self) -> Result<(), Failure> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| Failure::runtime(format!("flushing the producer: {e}")))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .producer
                .context()
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(Failure::runtime(format!(
                "{failed} records were not delivered; first: {}",
                first.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// Fails early, with the fix, when the input topics were never created.
fn check_topics_exist(factory: &ClientFactory, topics: &Topics) -> Result<(), Failure> {
    let consumer: rdkafka::consumer::BaseConsumer = factory
        .base()
        .create()
        .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| Failure::runtime(format!("connecting to Kafka: {e}")))?;
    let missing: Vec<&str> = topics
        .0
        .iter()
        .map(String::as_str)
        .filter(|t| {
            !metadata
                .topics()
                .iter()
                .any(|m| m.name() == *t && m.error().is_none())
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "topics missing in the cluster: {} (run `surgeflow topology apply`)",
            missing.join(", ")
        )))
    }
}

/// The live progress line on stderr: carriage-return updates on a terminal, a line every
/// 5 seconds otherwise (logs).
pub struct Progress {
    terminal: bool,
    last_count: Mutex<(Duration, u64)>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_count: Mutex::new((Duration::ZERO, 0)),
        }
    }

    /// Shows the rate since the last line, the total, and `detail` (called once a second;
    /// `detail` is only built when a line is shown).
    pub fn show(&self, elapsed: Duration, produced: u64, detail: impl FnOnce() -> String) {
        let mut last = self.last_count.lock().unwrap_or_else(|e| e.into_inner());
        let window = elapsed.saturating_sub(last.0).as_secs_f64().max(1e-9);
        let rate = produced.saturating_sub(last.1) as f64 / window;
        if !self.terminal && !elapsed.as_secs().is_multiple_of(5) {
            return;
        }
        *last = (elapsed, produced);
        let line = format!(
            "[{:>6.1}s] {rate:>8.0} ev/s | total {produced} | {}",
            elapsed.as_secs_f64(),
            detail()
        );
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    /// Ends the line on a terminal.
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 5m, got `{text}`"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown duration unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("duration `{text}`: {e}"))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn topics_take_the_prefix() {
        let topics = Topics::new(Some("ns"));
        assert_eq!(topics.0[0], "ns.location.update");
        assert_eq!(Topics::new(None).0[7], "trip.completed");
    }
}
