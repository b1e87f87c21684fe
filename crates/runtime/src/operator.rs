//! What an operator is: a small trait whose hooks the runtime calls, and the types those hooks
//! see. The runtime owns polling, batching, transactions, rebalances, restore and shutdown, so
//! an operator file reads like the business logic it is.

use std::ops::Range;

use surgeflow_kafka::{DecodeError, SchemaCache};
use surgeflow_schema::AvroRecord;
use surgeflow_topology::Topology;

/// A Kafka topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// One input record, borrowed from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Kafka timestamp of the record (milliseconds), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// Why a record could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record itself is bad: it goes to the DLQ with `reason` (a short, stable label) and
    /// the message, and processing goes on.
    #[error("{reason}: {message}")]
    Invalid {
        reason: &'static str,
        message: String,
    },
    /// Something outside the record is broken beyond retrying (e.g. the registry stayed down):
    /// the runtime stops without committing, so the supervisor restarts the instance and the
    /// uncommitted input is processed again.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl RecordError {
    /// A bad record with a reason label and a message.
    pub fn invalid(reason: &'static str, message: impl std::fmt::Display) -> Self {
        RecordError::Invalid {
            reason,
            message: message.to_string(),
        }
    }
}

impl From<DecodeError> for RecordError {
    fn from(e: DecodeError) -> Self {
        if e.is_retriable() {
            RecordError::Fatal(e.to_string())
        } else {
            RecordError::Invalid {
                reason: e.reason(),
                message: e.to_string(),
            }
        }
    }
}

/// A handle to one of the operator's output topics, resolved once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputTopic(pub(crate) usize);

impl OutputTopic {
    /// The handle of `name` among the operator's declared `outputs` (the runtime keeps them in
    /// the topology's order).
    ///
    /// # Errors
    /// A message naming the topic when it is not declared.
    pub fn resolve(outputs: &[String], name: &str) -> Result<OutputTopic, String> {
        outputs
            .iter()
            .position(|t| t == name)
            .map(OutputTopic)
            .ok_or_else(|| format!("{name} is not among the declared outputs {outputs:?}"))
    }
}

#[derive(Debug, Clone)]
struct Pending {
    topic: OutputTopic,
    key: Range<usize>,
    payload: Range<usize>,
    timestamp_ms: Option<i64>,
}

/// The records an operator emits during a batch. They are kept in one buffer and produced by
/// the runtime inside the batch's transaction, so emitting allocates nothing per record.
#[derive(Debug)]
pub struct Output {
    topics: Vec<String>,
    bytes: Vec<u8>,
    records: Vec<Pending>,
    /// While restoring, emitted records are dropped: they were produced before the restart.
    suppressed: bool,
}

impl Output {
    pub(crate) fn new(topics: Vec<String>) -> Self {
        Output {
            topics,
            bytes: Vec::with_capacity(1 << 16),
            records: Vec::new(),
            suppressed: false,
        }
    }

    /// The handle of output topic `name`, if the operator declares it.
    pub fn topic(&self, name: &str) -> Option<OutputTopic> {
        self.topics.iter().position(|t| t == name).map(OutputTopic)
    }

    /// Emits a record whose payload is written by `write` (typically an encoder appending the
    /// wire format). `timestamp_ms` becomes the record's timestamp; operators pass the event
    /// time, so that downstream stateful operators can order their inputs by it (and find a
    /// restore's starting offset by time); `None` lets the producer stamp it.
    ///
    /// # Errors
    /// Whatever `write` returns; nothing is emitted then.
    pub fn emit_with<E>(
        &mut self,
        topic: OutputTopic,
        key: &[u8],
        timestamp_ms: Option<i64>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.suppressed {
            return Ok(());
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        if let Err(e) = write(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        self.records.push(Pending {
            topic,
            key: start..key_end,
            payload: key_end..self.bytes.len(),
            timestamp_ms,
        });
        Ok(())
    }

    /// Emits a record with the given payload bytes.
    pub fn emit(
        &mut self,
        topic: OutputTopic,
        key: &[u8],
        timestamp_ms: Option<i64>,
        payload: &[u8],
    ) {
        let _ = self.emit_with::<std::convert::Infallible>(topic, key, timestamp_ms, |buf| {
            buf.extend_from_slice(payload);
            Ok(())
        });
    }

    /// How many records are waiting to be produced.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn set_suppressed(&mut self, suppressed: bool) {
        self.suppressed = suppressed;
    }

    /// The waiting records from the `start`th on, as (topic name, key, payload, timestamp).
    pub(crate) fn iter_from(
        &self,
        start: usize,
    ) -> impl Iterator<Item = (&str, &[u8], &[u8], Option<i64>)> {
        self.records
            .get(start..)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    self.topics[r.topic.0].as_str(),
                    &self.bytes[r.key.clone()],
                    &self.bytes[r.payload.clone()],
                    r.timestamp_ms,
                )
            })
    }

    /// The waiting records as (index of their topic among the outputs, timestamp).
    pub(crate) fn stamps(&self) -> impl Iterator<Item = (usize, Option<i64>)> {
        self.records.iter().map(|r| (r.topic.0, r.timestamp_ms))
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
}

/// An output topic with the encoder of its record type: what an operator holds to emit typed
/// records, keyed by anything that displays (a region, `<cell>:<product>`, an id) without
/// allocating per record.
pub struct TypedOutput<T: AvroRecord> {
    topic: OutputTopic,
    encoder: surgeflow_kafka::Encoder<T>,
    key: String,
}

impl<T: AvroRecord> TypedOutput<T> {
    /// Resolves `name` among the operator's declared `outputs` and registers `T`'s schema under
    /// `<name>-value`.
    ///
    /// # Errors
    /// When `name` is not declared or the registry refuses the schema.
    pub async fn register(
        outputs: &[String],
        name: &str,
        registry: &surgeflow_kafka::Registry,
    ) -> anyhow::Result<Self> {
        let topic = OutputTopic::resolve(outputs, name).map_err(anyhow::Error::msg)?;
        let encoder =
            surgeflow_kafka::Encoder::register(registry, &format!("{name}-value")).await?;
        Ok(TypedOutput {
            topic,
            encoder,
            key: String::with_capacity(32),
        })
    }

    /// Emits `value` keyed by `key`, stamped with `timestamp_ms` (the event time).
    ///
    /// # Errors
    /// [`RecordError::Fatal`] when the value does not fit its own schema (a bug).
    pub fn emit(
        &mut self,
        out: &mut Output,
        key: impl std::fmt::Display,
        timestamp_ms: i64,
        value: &T,
    ) -> Result<(), RecordError> {
        use std::fmt::Write;
        self.key.clear();
        let _ = write!(self.key, "{key}");
        let encoder = &self.encoder;
        out.emit_with(self.topic, self.key.as_bytes(), Some(timestamp_ms), |buf| {
            encoder.encode_into(value, buf)
        })
        .map_err(|e| RecordError::Fatal(e.to_string()))
    }
}

/// What the runtime hands an operator while it processes records.
pub struct Context<'a> {
    pub(crate) schemas: &'a SchemaCache,
    pub(crate) handle: &'a tokio::runtime::Handle,
    pub(crate) registry_retry: std::time::Duration,
    /// Where emitted records go.
    pub out: &'a mut Output,
    /// Processing time of the batch (milliseconds since the epoch), the only clock operators
    /// see, so their logic can be tested with any clock.
    pub now_ms: i64,
    /// True while the runtime replays input to rebuild state after an assignment.
    pub restoring: bool,
    /// True when a poll of the current batch found the consumer's queue empty: the input is
    /// caught up, and quiet time is real quiet time (not a slow commit or a starved process
    /// during a backlog), so clock-driven work such as an idle watermark advance may go ahead.
    pub caught_up: bool,
}

impl Context<'_> {
    /// Decodes a wire-format payload as `T`. A schema id not cached yet is fetched from the
    /// registry, retrying with back-off for a while when it is unreachable.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a bad payload, [`RecordError::Fatal`] when the registry
    /// stays unreachable.
    pub fn decode<T: AvroRecord>(&self, payload: Option<&[u8]>) -> Result<T, RecordError> {
        let payload =
            payload.ok_or_else(|| RecordError::invalid("null_payload", "record has no value"))?;
        match self.schemas.decode_cached::<T>(payload) {
            Err(DecodeError::RegistryUnavailable { .. }) => {}
            other => return other.map_err(RecordError::from),
        }
        let deadline = std::time::Instant::now() + self.registry_retry;
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            match self.handle.block_on(self.schemas.decode::<T>(payload)) {
                Err(e) if e.is_retriable() && std::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "schema registry unavailable; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
                other => return other.map_err(RecordError::from),
            }
        }
    }
}

/// The business logic of an operator. Hooks other than `process` default to doing nothing.
pub trait Operator: Send + 'static {
    /// Processes one input record, emitting into `ctx.out`.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] sends the record to the DLQ; [`RecordError::Fatal`] stops the
    /// instance without committing.
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), RecordError>;

    /// Called once per batch after its records, with the batch's processing time: for work
    /// driven by the clock (idle watermarks, timeouts).
    ///
    /// # Errors
    /// As for `process`; an `Invalid` error here is logged and ignored.
    fn on_tick(&mut self, _ctx: &mut Context<'_>) -> Result<(), RecordError> {
        Ok(())
    }

    /// Partitions were assigned. Called after their state was restored (see
    /// [`Operator::restore_horizon_ms`]) and before any of their new records.
    fn on_assigned(&mut self, _partitions: &[TopicPartition], _ctx: &mut Context<'_>) {}

    /// Partitions were revoked or lost: drop their state, another instance owns them now.
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}

    /// How far back (in record time) input must be replayed to rebuild the state of a newly
    /// assigned partition, or `None` for stateless operators.
    fn restore_horizon_ms(&self) -> Option<i64> {
        None
    }

    /// Gauges describing the operator's state (`(name, value)`, e.g. drivers tracked), exported
    /// as `surgeflow_state_entries{operator, kind}` once per batch.
    fn state_sizes(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Builds an operator from the topology. Async because encoders register their schemas.
pub trait OperatorFactory: Operator + Sized {
    /// The operator's name in `topology.yaml` (`location-router`, ...).
    const NAME: &'static str;

    /// Builds the operator.
    ///
    /// # Errors
    /// Any start-up problem; the process exits non-zero with the message.
    fn build(
        topology: &Topology,
        registry: &surgeflow_kafka::Registry,
    ) -> impl std::future::Future<Output = anyhow::Result<Self>> + Send;

    /// Extra HTTP routes served next to `/metrics` (e.g. queryable state). They must share
    /// their data with the operator through thread-safe handles, since the operator itself
    /// moves to the processing thread.
    fn routes(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Buckets of the operator's own histograms whose values are not durations (which get
    /// [`LATENCY_BUCKETS`](crate::telemetry::LATENCY_BUCKETS)), by metric name. Called once,
    /// before the metrics recorder is installed.
    fn histogram_buckets(_topology: &Topology) -> Vec<(&'static str, Vec<f64>)> {
        Vec::new()
    }

    /// Gauge tables the operator fills (see [`GaugeTable`](crate::telemetry::GaugeTable)),
    /// rendered on `/metrics` after the other metrics.
    fn gauge_tables(&self) -> Vec<std::sync::Arc<crate::telemetry::GaugeTable>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_records_in_one_buffer() {
        let mut out = Output::new(vec!["a".into(), "b".into()]);
        let b = out.topic("b").unwrap();
        out.emit(b, b"k1", Some(7), b"v1");
        let r: Result<(), &str> = out.emit_with(b, b"k2", None, |buf| {
            buf.extend_from_slice(b"partial");
            Err("boom")
        });
        assert!(r.is_err());
        out.emit(out.topic("a").unwrap(), b"", None, b"v3");
        let got: Vec<_> = out.iter_from(0).collect();
        assert_eq!(
            got,
            vec![
                ("b", &b"k1"[..], &b"v1"[..], Some(7)),
                ("a", &b""[..], &b"v3"[..], None)
            ]
        );
        assert_eq!(
            out.iter_from(1).map(|r| r.2).collect::<Vec<_>>(),
            [&b"v3"[..]]
        );
        assert_eq!(out.iter_from(3).count(), 0);
        out.set_suppressed(true);
        out.emit(b, b"k", None, b"v");
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.topic("c"), None);
    }
}
