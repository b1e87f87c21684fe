//! The consume-process-produce loop.
//!
//! One thread, one consumer, one producer, batch after batch:
//!
//! 1. **Gather**: poll until `max_batch` records or `commit_interval_ms` passed, keeping the
//!    borrowed messages (no copy). Rebalance callbacks recorded during a poll are handled right
//!    after it: records of revoked partitions are dropped from the batch (no transaction is open
//!    while polling, so nothing needs committing first), newly assigned partitions get their
//!    state restored before any of their records is processed.
//! 2. **Process**: each record through the operator; bad records become DLQ records with
//!    provenance headers; then the operator's clock tick.
//! 3. **Commit**: exactly-once produces outputs and DLQ records inside one transaction together
//!    with the consumed positions (`send_offsets_to_transaction` with fresh group metadata, so a
//!    zombie instance is fenced); at-least-once produces, waits for every delivery, then commits
//!    offsets. A batch that consumed and produced nothing commits nothing.
//!
//! Failures follow librdkafka's classes: a retriable commit error is retried; one that requires
//! an abort aborts, rewinds the consumer to the committed offsets and rebuilds the operator's
//! state; a fatal producer error builds a new producer (whose `init_transactions` fences the
//! old one) and then does the same. Nothing is skipped and nothing is emitted twice for
//! `read_committed` readers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use surgeflow_kafka::{ClientFactory, SchemaCache};
use surgeflow_topology::Delivery;

use crate::align::Aligner;
use crate::operator::{Context, Operator, Output, Record, RecordError, TopicPartition};
use crate::rebalance::{AssignmentChange, RuntimeContext};
use crate::replay::Replay;

/// Timeout for one call to the broker (commit, offsets, metadata).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an at-least-once batch with records waits for more before it closes.
const EARLY_CLOSE_POLL: Duration = Duration::from_millis(1);

/// How long a stateful operator's co-partitions wait for an empty sibling before going on.
const ALIGN_IDLE: Duration = Duration::from_millis(500);

/// The same for a sibling that has not delivered a record since it was assigned: its first
/// fetch may be late, and a restart must order its first records as the lost run did. A
/// partition that is really empty holds its group this long once per assignment.
const ALIGN_FIRST_IDLE: Duration = Duration::from_secs(5);

/// The pause between checks for the batch's acknowledgements.
const ACK_CHECK_EVERY: Duration = Duration::from_micros(250);

/// Offset-commit metadata prefix carrying the partition's latest record time.
const PARTITION_TIME_KEY: &str = "surgeflow.time=";

/// Longest a state restore may take before the instance gives up (and is restarted).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// Records replayed between two updates of `surgeflow_restore_records_total`.
const RESTORE_PROGRESS_EVERY: u64 = 10_000;

/// Records replayed between two liveness heartbeats during a restore (a clock read each:
/// cheap at this spacing, and frequent enough at any replay speed).
const RESTORE_HEARTBEAT_EVERY: u64 = 1_024;

/// Everything the loop needs to know about its operator instance.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub operator: &'static str,
    pub group_id: String,
    /// Static group membership id (`group.instance.id`): a restarted instance with the same
    /// id takes its partitions back at once instead of waiting for a rebalance.
    pub group_instance_id: String,
    pub transactional_id: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub dlq: String,
    pub delivery: Delivery,
    pub commit_interval: Duration,
    pub max_batch: usize,
    /// How long a record may wait for an unreachable registry before the instance gives up.
    pub registry_retry: Duration,
}

/// Liveness and readiness, shared with the HTTP server.
#[derive(Debug, Default)]
pub struct Health {
    /// Processing time of the last loop iteration (ms since the epoch); liveness.
    pub last_loop_ms: AtomicI64,
    /// Joined the group, producer ready, no restore running.
    pub ready: AtomicBool,
    /// Partitions currently assigned.
    pub assigned: AtomicU64,
}

/// Why the loop stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Fatal(String),
}

/// Counts deliveries that failed, for at-least-once mode, where a failed delivery means the
/// batch's offsets must not be committed.
#[derive(Default)]
pub struct DeliveryTracker {
    failed: AtomicU64,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "delivery failed");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

type Producer_ = BaseProducer<DeliveryTracker>;

/// A bad record waiting to be written to the DLQ.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: OwnedHeaders,
    source_topic: String,
    reason: &'static str,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn tpl(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for p in partitions {
        list.add_partition(&p.topic, p.partition);
    }
    list
}

/// What a [`Context`] borrows from the worker besides the output buffer.
struct Env {
    schemas: SchemaCache,
    handle: tokio::runtime::Handle,
    registry_retry: Duration,
    /// The last gathering ended on an empty poll (see [`Context::caught_up`]).
    caught_up: bool,
}

/// The context handed to the operator; `restoring` suppresses its output.
fn context<'a>(env: &'a Env, out: &'a mut Output, restoring: bool) -> Context<'a> {
    context_at(env, out, restoring, now_ms())
}

/// As [`context`], with the clock read once per batch by the caller.
fn context_at<'a>(env: &'a Env, out: &'a mut Output, restoring: bool, now_ms: i64) -> Context<'a> {
    out.set_suppressed(restoring);
    Context {
        schemas: &env.schemas,
        handle: &env.handle,
        registry_retry: env.registry_retry,
        out,
        now_ms,
        restoring,
        caught_up: env.caught_up,
    }
}

/// The loop's state apart from the consumer (which the gathered messages borrow).
pub struct Worker<O: Operator> {
    operator: O,
    settings: WorkerSettings,
    factory: ClientFactory,
    producer: Producer_,
    env: Env,
    out: Output,
    dead: Vec<DeadLetter>,
    assigned: BTreeSet<TopicPartition>,
    /// Revoked partitions whose state the operator still holds, in case the same rebalance
    /// hands them back (the range assignor revokes everything at every rebalance).
    parked: BTreeSet<TopicPartition>,
    /// The offsets this instance last committed, to tell whether a partition handed back was
    /// processed by anyone else in between.
    last_committed: BTreeMap<TopicPartition, i64>,
    health: Arc<Health>,
    /// Records per input topic in the current batch (a few topics: a linear scan beats
    /// allocating a key per record).
    in_counts: Vec<(String, u64)>,
    /// Largest record timestamp processed per partition (stateful operators): committed as
    /// offset metadata, so a restore knows from when to replay even when the partition was
    /// far behind the wall clock.
    partition_time: Vec<(String, i32, i64)>,
    /// Stateful operators process their co-partitioned inputs in timestamp order.
    aligner: Option<Aligner>,
    /// Per output topic (in `settings.outputs` order), its metrics, resolved once.
    out_meters: Vec<OutputMeters>,
    /// Records per output topic in the batch being counted (kept for its allocation).
    out_counts: Vec<u64>,
    /// When the batch being gathered closes at the latest: batches keep the commit interval
    /// as a cadence, so the time spent processing and committing one batch counts towards
    /// the next one's gathering rather than adding to the wait of every record that arrived
    /// meanwhile.
    batch_end: Instant,
}

/// The metrics of one output topic.
struct OutputMeters {
    /// `surgeflow_records_out_total`.
    records: Counter,
    /// `surgeflow_event_to_output_seconds`.
    latency: Histogram,
}

impl OutputMeters {
    fn register(operator: &'static str, topic: &str) -> Self {
        OutputMeters {
            records: metrics::counter!("surgeflow_records_out_total", "operator" => operator, "topic" => topic.to_string()),
            latency: metrics::histogram!("surgeflow_event_to_output_seconds", "operator" => operator, "topic" => topic.to_string()),
        }
    }
}

/// One batch of records: borrowed from the consumer (stateless operators, no copy), or taken
/// from the aligner in timestamp order (stateful operators).
enum Batch<'c> {
    Borrowed(Vec<BorrowedMessage<'c>>),
    Aligned(Vec<OwnedMessage>),
}

impl<O: Operator> Worker<O> {
    /// Prepares the loop: builds the producer (and initialises transactions).
    ///
    /// # Errors
    /// A [`WorkerError`] when the producer cannot be created or transactions initialised.
    pub fn new(
        operator: O,
        settings: WorkerSettings,
        factory: ClientFactory,
        schemas: SchemaCache,
        handle: tokio::runtime::Handle,
        health: Arc<Health>,
    ) -> Result<Self, WorkerError> {
        let producer = new_producer(&factory, &settings)?;
        let settings_retry = settings.registry_retry;
        let aligner = operator
            .restore_horizon_ms()
            .map(|_| Aligner::new(ALIGN_IDLE, ALIGN_FIRST_IDLE));
        // Series that exist from the start, so dashboards and alerts see 0 rather than nothing.
        metrics::gauge!("surgeflow_assigned_partitions", "operator" => settings.operator).set(0.0);
        for reason in ["abortable", "fatal"] {
            metrics::counter!("surgeflow_transactions_aborted_total", "operator" => settings.operator,
                "reason" => reason)
            .increment(0);
        }
        if aligner.is_some() {
            metrics::gauge!("surgeflow_restore_in_progress", "operator" => settings.operator)
                .set(0.0);
        }
        let out_meters = settings
            .outputs
            .iter()
            .map(|topic| OutputMeters::register(settings.operator, topic))
            .collect();
        Ok(Worker {
            operator,
            out: Output::new(settings.outputs.clone()),
            settings,
            factory,
            producer,
            env: Env {
                schemas,
                handle,
                registry_retry: settings_retry,
                caught_up: false,
            },
            dead: Vec::new(),
            assigned: BTreeSet::new(),
            parked: BTreeSet::new(),
            last_committed: BTreeMap::new(),
            health,
            in_counts: Vec::new(),
            partition_time: Vec::new(),
            aligner,
            out_meters,
            out_counts: Vec::new(),
            batch_end: Instant::now(),
        })
    }

    /// Creates the group consumer this worker reads with.
    ///
    /// # Errors
    /// When librdkafka refuses the settings or the subscription.
    pub fn consumer(&self) -> Result<BaseConsumer<RuntimeContext>, WorkerError> {
        let mut config = self.factory.consumer_config(&self.settings.group_id);
        config
            .set("statistics.interval.ms", "5000")
            .set("group.instance.id", &self.settings.group_instance_id)
            .set("partition.assignment.strategy", self.assignor())
            .set("session.timeout.ms", "15000");
        let consumer: BaseConsumer<RuntimeContext> =
            config.create_with_context(RuntimeContext::new(self.settings.operator))?;
        let topics: Vec<&str> = self.settings.inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }

    /// Stateful operators read co-partitioned topics (partition p of each carries the same
    /// regions) and need partition p of every input on the same instance, which the range
    /// assignor guarantees and cooperative-sticky does not. Stateless ones take the
    /// cooperative-sticky assignor, which moves only the partitions that must move.
    fn assignor(&self) -> &'static str {
        if self.operator.restore_horizon_ms().is_some() {
            "range"
        } else {
            "cooperative-sticky"
        }
    }

    /// Runs until `shutdown` is set, then finishes the batch, commits and leaves the group.
    ///
    /// # Errors
    /// A [`WorkerError`] on a fatal problem; nothing uncommitted is lost (it is reprocessed
    /// after a restart).
    pub fn run(
        mut self,
        consumer: &BaseConsumer<RuntimeContext>,
        shutdown: &AtomicBool,
    ) -> Result<(), WorkerError> {
        self.health.ready.store(true, Ordering::Relaxed);
        while !shutdown.load(Ordering::Relaxed) {
            self.health.last_loop_ms.store(now_ms(), Ordering::Relaxed);
            let batch = self.gather(consumer)?;
            self.process_and_commit(consumer, &batch)?;
        }
        tracing::info!(
            operator = self.settings.operator,
            "shutting down: leaving the group"
        );
        consumer.unsubscribe();
        // Serve the revocation that leaving triggers, so the group rebalances at once.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until
            && !consumer
                .assignment()
                .map(|a| a.count() == 0)
                .unwrap_or(true)
        {
            let _ = consumer.poll(Duration::from_millis(100));
            for change in consumer.context().take_changes() {
                if let AssignmentChange::Revoked(parts) = change {
                    self.parked.extend(parts);
                }
            }
        }
        let parked: Vec<TopicPartition> = std::mem::take(&mut self.parked).into_iter().collect();
        self.operator.on_revoked(&parked);
        self.health.ready.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn gather<'c>(
        &mut self,
        consumer: &'c BaseConsumer<RuntimeContext>,
    ) -> Result<Batch<'c>, WorkerError> {
        let max = self.settings.max_batch;
        let mut batch: Vec<BorrowedMessage<'c>> = Vec::with_capacity(max.min(4096));
        let now = Instant::now();
        // On cadence, unless the last batch overran its successor's slot: then a full
        // interval from now, so a backlog gets full batches instead of a burst of short ones.
        let deadline = if self.batch_end > now {
            self.batch_end
        } else {
            now + self.settings.commit_interval
        };
        // A batch that closes early (full, or dry at least once) leaves no slot behind.
        self.batch_end = now;
        self.env.caught_up = false;
        loop {
            let now = Instant::now();
            // Aligned: a full buffer only ends gathering once no partition holds its group back
            // (each has data or has been quiet past its idle limit), so a backlog of one input
            // cannot starve the fetch of the other and then pass for it.
            let full = match &self.aligner {
                Some(aligner) => aligner.len() >= max && aligner.covers(&self.assigned, now),
                None => batch.len() >= max,
            };
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                self.batch_end = deadline + self.settings.commit_interval;
                break;
            }
            if full {
                break;
            }
            // At least once, a batch closes as soon as the consumer's queue runs dry: nothing
            // waits for a transaction, so holding records back only adds latency. Exactly once
            // keeps gathering for the commit interval: every batch is a transaction.
            let has_work = match &self.aligner {
                Some(aligner) => !aligner.is_empty(),
                None => !batch.is_empty(),
            };
            let close_when_dry = has_work && self.settings.delivery == Delivery::AtLeastOnce;
            let polled = consumer.poll(if close_when_dry {
                left.min(EARLY_CLOSE_POLL)
            } else {
                left
            });
            self.apply_changes(consumer, &mut batch)?;
            match polled {
                Some(Ok(message)) => {
                    // A linear scan of the few assigned partitions: no key to allocate.
                    let (topic, partition) = (message.topic(), message.partition());
                    if !self
                        .assigned
                        .iter()
                        .any(|tp| tp.partition == partition && tp.topic == topic)
                    {
                        continue;
                    }
                    match &mut self.aligner {
                        Some(aligner) => {
                            let tp = TopicPartition {
                                topic: topic.to_string(),
                                partition,
                            };
                            aligner.push(tp, message.detach());
                        }
                        None => batch.push(message),
                    }
                }
                Some(Err(e)) => {
                    if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, "consumer error");
                }
                None => {
                    self.env.caught_up = true;
                    if close_when_dry {
                        break;
                    }
                }
            }
        }
        Ok(match &mut self.aligner {
            Some(aligner) => {
                let taken = aligner.take(&self.assigned, max, Instant::now());
                // Records held back for a sibling are input not yet processed: an operator
                // must not take the time spent waiting for quiet (its idle clocks would pass
                // them by).
                self.env.caught_up &= aligner.is_empty();
                Batch::Aligned(taken)
            }
            None => Batch::Borrowed(batch),
        })
    }

    /// Acts on the rebalances recorded during the last poll.
    fn apply_changes<'c>(
        &mut self,
        consumer: &'c BaseConsumer<RuntimeContext>,
        batch: &mut Vec<BorrowedMessage<'c>>,
    ) -> Result<(), WorkerError> {
        for change in consumer.context().take_changes() {
            match change {
                AssignmentChange::Revoked(parts) => {
                    tracing::info!(
                        operator = self.settings.operator,
                        ?parts,
                        "partitions revoked"
                    );
                    batch.retain(|m| {
                        !parts
                            .iter()
                            .any(|p| p.topic == m.topic() && p.partition == m.partition())
                    });
                    if let Some(aligner) = &mut self.aligner {
                        aligner.drop_partitions(&parts);
                    }
                    for p in parts {
                        self.assigned.remove(&p);
                        self.parked.insert(p);
                    }
                }
                AssignmentChange::Assigned(parts) => {
                    tracing::info!(
                        operator = self.settings.operator,
                        ?parts,
                        "partitions assigned"
                    );
                    self.assign(consumer, parts)?;
                }
            }
            self.health
                .assigned
                .store(self.assigned.len() as u64, Ordering::Relaxed);
            metrics::gauge!("surgeflow_assigned_partitions", "operator" => self.settings.operator)
                .set(self.assigned.len() as f64);
        }
        Ok(())
    }

    /// Takes on `parts`: partitions handed back untouched keep their state; the others (and
    /// parked ones not handed back) are dropped, and the new ones restored.
    fn assign(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
        parts: Vec<TopicPartition>,
    ) -> Result<(), WorkerError> {
        let committed = consumer.committed_offsets(tpl(&parts), CALL_TIMEOUT)?;
        consumer.context().record_committed(&committed);
        let untouched: BTreeSet<TopicPartition> = committed
            .elements()
            .iter()
            .filter_map(|e| {
                let tp = TopicPartition { topic: e.topic().to_string(), partition: e.partition() };
                let same = matches!(e.offset(), Offset::Offset(c) if self.last_committed.get(&tp) == Some(&c));
                (same && self.parked.contains(&tp)).then_some(tp)
            })
            .collect();
        let gone: Vec<TopicPartition> = self
            .parked
            .iter()
            .filter(|p| !untouched.contains(*p))
            .cloned()
            .collect();
        if !gone.is_empty() {
            self.operator.on_revoked(&gone);
        }
        self.parked.clear();
        let fresh: Vec<TopicPartition> = parts
            .iter()
            .filter(|p| !untouched.contains(*p))
            .cloned()
            .collect();
        self.restore(consumer, &fresh)?;
        self.assigned.extend(parts);
        if !fresh.is_empty() {
            self.operator
                .on_assigned(&fresh, &mut context(&self.env, &mut self.out, false));
        }
        Ok(())
    }

    /// Rebuilds the state of `parts` by replaying their input from `restore_horizon_ms` ago up
    /// to the committed offsets, in timestamp order, with output suppressed (it was produced
    /// before).
    fn restore(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
        parts: &[TopicPartition],
    ) -> Result<(), WorkerError> {
        let Some(horizon) = self.operator.restore_horizon_ms() else {
            return Ok(());
        };
        if parts.is_empty() {
            return Ok(());
        }
        let op = self.settings.operator;
        let started = Instant::now();
        self.health.ready.store(false, Ordering::Relaxed);
        metrics::gauge!("surgeflow_restore_in_progress", "operator" => op).set(1.0);
        let mut ends = BTreeMap::new();
        for e in consumer
            .committed_offsets(tpl(parts), CALL_TIMEOUT)?
            .elements()
        {
            if let Offset::Offset(c) = e.offset()
                && c > 0
            {
                // Replay from the horizon before the last record processed (its time was
                // committed with the offset), or before now when none was recorded.
                let time = e
                    .metadata()
                    .strip_prefix(PARTITION_TIME_KEY)
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or_else(now_ms);
                let tp = TopicPartition {
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                };
                advance_partition_time(&mut self.partition_time, &tp.topic, tp.partition, time);
                ends.insert(tp, (c, time.saturating_sub(horizon)));
            }
        }
        let mut replayed = 0u64;
        // Progress is exported as the replay goes, so a long restore shows its speed.
        let progress = metrics::counter!("surgeflow_restore_records_total", "operator" => op);
        let replay = Replay::open(
            &self.factory,
            &self.settings.group_id,
            ends,
            RESTORE_TIMEOUT,
        )
        .map_err(|e| WorkerError::Fatal(format!("restore: {e}")))?;
        if let Some(mut replay) = replay {
            while let Some(message) = replay
                .next_record()
                .map_err(|e| WorkerError::Fatal(format!("restore: {e}")))?
            {
                let record = record_of(&message);
                let mut ctx = context(&self.env, &mut self.out, true);
                if let Err(RecordError::Fatal(e)) = self.operator.process(&record, &mut ctx) {
                    return Err(WorkerError::Fatal(e));
                }
                replayed += 1;
                if replayed.is_multiple_of(RESTORE_HEARTBEAT_EVERY) {
                    // A long restore is work, not a stuck loop: liveness stays green.
                    self.health.last_loop_ms.store(now_ms(), Ordering::Relaxed);
                }
                if replayed.is_multiple_of(RESTORE_PROGRESS_EVERY) {
                    progress.increment(RESTORE_PROGRESS_EVERY);
                }
            }
        }
        self.out.set_suppressed(false);
        let seconds = started.elapsed().as_secs_f64();
        progress.increment(replayed % RESTORE_PROGRESS_EVERY);
        metrics::histogram!("surgeflow_restore_duration_seconds", "operator" => op).record(seconds);
        metrics::gauge!("surgeflow_restore_in_progress", "operator" => op).set(0.0);
        tracing::info!(operator = op, ?parts, replayed, seconds, "state restored");
        self.health.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn process_and_commit(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
        batch: &Batch<'_>,
    ) -> Result<(), WorkerError> {
        match batch {
            Batch::Borrowed(records) => self.process_records(consumer, records),
            Batch::Aligned(records) => self.process_records(consumer, records),
        }
    }

    fn process_records<M: Message>(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
        batch: &[M],
    ) -> Result<(), WorkerError> {
        let op = self.settings.operator;
        for (_, n) in &mut self.in_counts {
            *n = 0;
        }
        let batch_now = now_ms();
        for message in batch {
            let record = record_of(message);
            count_in(&mut self.in_counts, message.topic());
            if self.aligner.is_some()
                && let Some(ts) = record.timestamp_ms
            {
                advance_partition_time(
                    &mut self.partition_time,
                    message.topic(),
                    message.partition(),
                    ts,
                );
            }
            let mut ctx = context_at(&self.env, &mut self.out, false, batch_now);
            match self.operator.process(&record, &mut ctx) {
                Ok(()) => {}
                Err(RecordError::Invalid {
                    reason,
                    message: text,
                }) => {
                    self.dead.push(dead_letter(op, &record, reason, &text));
                }
                Err(RecordError::Fatal(e)) => return Err(WorkerError::Fatal(e)),
            }
        }
        match self
            .operator
            .on_tick(&mut context(&self.env, &mut self.out, false))
        {
            Ok(()) => {}
            Err(RecordError::Invalid { reason, message }) => {
                tracing::warn!(reason, message, "tick")
            }
            Err(RecordError::Fatal(e)) => return Err(WorkerError::Fatal(e)),
        }
        for (topic, n) in self.in_counts.iter().filter(|(_, n)| *n > 0) {
            metrics::counter!("surgeflow_records_in_total", "operator" => op, "topic" => topic.clone()).increment(*n);
        }
        metrics::histogram!("surgeflow_batch_records", "operator" => op).record(batch.len() as f64);
        for (kind, value) in self.operator.state_sizes() {
            metrics::gauge!("surgeflow_state_entries", "operator" => op, "kind" => kind).set(value);
        }
        if batch.is_empty() && self.out.is_empty() && self.dead.is_empty() {
            return Ok(());
        }
        let result = match self.settings.delivery {
            Delivery::ExactlyOnce => self.commit_transaction(consumer),
            Delivery::AtLeastOnce => self.commit_at_least_once(consumer),
        };
        self.out.clear();
        self.dead.clear();
        result
    }

    /// Counts the batch's outputs once it committed: records per topic, and for each record
    /// the time from its event time (its timestamp) to now, the commit.
    fn count_outputs(&mut self) {
        let now = now_ms();
        self.out_counts.clear();
        self.out_counts.resize(self.out_meters.len(), 0);
        for (topic, timestamp) in self.out.stamps() {
            let (Some(n), Some(meters)) =
                (self.out_counts.get_mut(topic), self.out_meters.get(topic))
            else {
                continue;
            };
            *n += 1;
            if let Some(ts) = timestamp {
                // Events stamped slightly ahead of this clock count as instant.
                meters
                    .latency
                    .record(now.saturating_sub(ts).max(0) as f64 / 1000.0);
            }
        }
        for (meters, n) in self.out_meters.iter().zip(&self.out_counts) {
            if *n > 0 {
                meters.records.increment(*n);
            }
        }
    }

    /// Sends every pending output and dead letter to the producer's queue.
    fn send_all(&self) -> Result<(), KafkaError> {
        for (topic, key, payload, timestamp) in self.out.iter() {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            send(&self.producer, record)?;
        }
        for dead in &self.dead {
            let mut record =
                BaseRecord::<[u8], [u8]>::to(&self.settings.dlq).headers(dead.headers.clone());
            if let Some(k) = &dead.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &dead.payload {
                record = record.payload(p.as_slice());
            }
            send(&self.producer, record)?;
        }
        Ok(())
    }

    /// The offsets to commit with the batch: the next record to process of each assigned
    /// partition.
    fn positions(
        &self,
        consumer: &BaseConsumer<RuntimeContext>,
    ) -> Result<TopicPartitionList, KafkaError> {
        let positions = consumer.position()?;
        let mut out = TopicPartitionList::new();
        for e in positions.elements() {
            let tp = TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            };
            // Records still buffered for ordering are not processed yet: commit up to the
            // first of them. Otherwise the position, which steps over transaction markers.
            let buffered = self.aligner.as_ref().and_then(|a| a.first_unprocessed(&tp));
            if let Offset::Offset(o) = e.offset()
                && self.assigned.contains(&tp)
            {
                out.add_partition_offset(
                    &tp.topic,
                    tp.partition,
                    Offset::Offset(buffered.unwrap_or(o)),
                )?;
                if let Some((_, _, time)) = self
                    .partition_time
                    .iter()
                    .find(|(t, p, _)| *t == tp.topic && *p == tp.partition)
                    && let Some(mut elem) = out.find_partition(&tp.topic, tp.partition)
                {
                    elem.set_metadata(format!("{PARTITION_TIME_KEY}{time}"));
                }
            }
        }
        Ok(out)
    }

    fn commit_transaction(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
    ) -> Result<(), WorkerError> {
        let op = self.settings.operator;
        let started = Instant::now();
        let mut committed = TopicPartitionList::new();
        let attempt = (|| -> Result<(), KafkaError> {
            self.producer.begin_transaction()?;
            self.send_all()?;
            let offsets = self.positions(consumer)?;
            committed = offsets.clone();
            if offsets.count() > 0 {
                let metadata = consumer
                    .group_metadata()
                    .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
                self.producer
                    .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)?;
            }
            // The records were on their way while the offsets went to the coordinator.
            await_acks(&self.producer, CALL_TIMEOUT)?;
            commit_with_retries(&self.producer)
        })();
        match attempt {
            Ok(()) => {
                metrics::histogram!("surgeflow_transaction_commit_seconds", "operator" => op)
                    .record(started.elapsed().as_secs_f64());
                self.remember_committed(&committed);
                consumer.context().record_committed(&committed);
                self.count_outputs();
                self.count_dead_letters();
                Ok(())
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                metrics::counter!("surgeflow_transactions_aborted_total", "operator" => op,
                    "reason" => if fatal { "fatal" } else { "abortable" })
                .increment(1);
                tracing::warn!(operator = op, error = %e, fatal, "transaction failed; rewinding to the committed offsets");
                if fatal {
                    self.producer = new_producer(&self.factory, &self.settings)?;
                } else if let Err(abort) = self.producer.abort_transaction(CALL_TIMEOUT) {
                    tracing::warn!(error = %abort, "abort failed; building a new producer");
                    self.producer = new_producer(&self.factory, &self.settings)?;
                }
                self.rewind(consumer)
            }
        }
    }

    fn commit_at_least_once(
        &mut self,
        consumer: &BaseConsumer<RuntimeContext>,
    ) -> Result<(), WorkerError> {
        let started = Instant::now();
        let before = self.producer.context().failed.load(Ordering::Relaxed);
        self.send_all()?;
        await_acks(&self.producer, CALL_TIMEOUT)?;
        if self.producer.context().failed.load(Ordering::Relaxed) != before {
            tracing::warn!("deliveries failed; rewinding to the committed offsets");
            return self.rewind(consumer);
        }
        let offsets = self.positions(consumer)?;
        if offsets.count() > 0 {
            // Not waited for: a commit lost to a crash or a rebalance means records processed
            // again, which at least once allows, and waiting would add a round trip to every
            // batch. librdkafka sends commits in order and finishes them before it closes.
            consumer.commit(&offsets, CommitMode::Async)?;
        }
        self.remember_committed(&offsets);
        consumer.context().record_committed(&offsets);
        metrics::histogram!("surgeflow_transaction_commit_seconds", "operator" => self.settings.operator)
            .record(started.elapsed().as_secs_f64());
        self.count_outputs();
        self.count_dead_letters();
        Ok(())
    }

    fn remember_committed(&mut self, offsets: &TopicPartitionList) {
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                self.last_committed.insert(
                    TopicPartition {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                    },
                    o,
                );
            }
        }
    }

    fn count_dead_letters(&self) {
        for dead in &self.dead {
            metrics::counter!("surgeflow_dlq_records_total", "operator" => self.settings.operator,
                "topic" => dead.source_topic.clone(), "reason" => dead.reason)
            .increment(1);
        }
    }

    /// Seeks every assigned partition back to its committed offset and rebuilds the operator's
    /// state as if the partitions had just been assigned.
    fn rewind(&mut self, consumer: &BaseConsumer<RuntimeContext>) -> Result<(), WorkerError> {
        let parts: Vec<TopicPartition> = self.assigned.iter().cloned().collect();
        if parts.is_empty() {
            return Ok(());
        }
        if let Some(aligner) = &mut self.aligner {
            aligner.drop_partitions(&parts);
        }
        let committed = consumer.committed_offsets(tpl(&parts), CALL_TIMEOUT)?;
        let mut seek = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        consumer.seek_partitions(seek, CALL_TIMEOUT)?;
        self.operator.on_revoked(&parts);
        self.restore(consumer, &parts)?;
        self.operator
            .on_assigned(&parts, &mut context(&self.env, &mut self.out, false));
        Ok(())
    }
}

fn count_in(counts: &mut Vec<(String, u64)>, topic: &str) {
    match counts.iter_mut().find(|(t, _)| t == topic) {
        Some((_, n)) => *n += 1,
        None => counts.push((topic.to_string(), 1)),
    }
}

fn advance_partition_time(
    times: &mut Vec<(String, i32, i64)>,
    topic: &str,
    partition: i32,
    ts: i64,
) {
    match times
        .iter_mut()
        .find(|(t, p, _)| t == topic && *p == partition)
    {
        Some((_, _, time)) => *time = (*time).max(ts),
        None => times.push((topic.to_string(), partition, ts)),
    }
}

/// Serves delivery reports until the broker has acknowledged every queued record.
///
/// This is `flush`, done so that it returns soon after the last acknowledgement. rdkafka's
/// `flush`, which `commit_transaction` also calls first, polls in 100 ms slices that each run
/// to their end, so every batch paid at least ~100 ms even when the broker acknowledged within
/// a few. Nor does a short `poll` help: it rounds its remaining time down to whole
/// milliseconds and so spins through its last one. Hence a non-blocking poll and a short
/// sleep. With the queue empty, `commit_transaction`'s own flush returns at once.
///
/// # Errors
/// [`KafkaError::Flush`] when records are still in flight after `timeout`.
pub fn await_acks<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(ACK_CHECK_EVERY);
    }
}

fn commit_with_retries(producer: &Producer_) -> Result<(), KafkaError> {
    let mut attempts = 0;
    loop {
        match producer.commit_transaction(CALL_TIMEOUT) {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => {
                attempts += 1;
                tracing::warn!(error = %e, attempts, "commit is retriable; retrying");
            }
            other => return other,
        }
    }
}

/// The settings of the runtime's producer: transactional with `transactional_id` exactly
/// once, idempotent at least once; public so that benchmarks measure the same client.
pub fn producer_config(
    factory: &ClientFactory,
    delivery: Delivery,
    transactional_id: &str,
) -> ClientConfig {
    let mut config = match delivery {
        Delivery::ExactlyOnce => factory.transactional_producer_config(transactional_id),
        Delivery::AtLeastOnce => factory.producer_config(),
    };
    // Each batch's records are sent together and then waited for, so they are already
    // batched: lingering would only delay the batch's end.
    config.set("linger.ms", "0");
    config
}

fn new_producer(
    factory: &ClientFactory,
    settings: &WorkerSettings,
) -> Result<Producer_, WorkerError> {
    let config = producer_config(factory, settings.delivery, &settings.transactional_id);
    let producer: Producer_ = config.create_with_context(DeliveryTracker::default())?;
    if settings.delivery == Delivery::ExactlyOnce {
        producer.init_transactions(CALL_TIMEOUT)?;
    }
    Ok(producer)
}

/// Enqueues one record, waiting for room when librdkafka's queue is full.
fn send(producer: &Producer_, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn record_of<M: Message>(message: &M) -> Record<'_> {
    Record {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key(),
        payload: message.payload(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// The DLQ record for a bad input record: its original key and bytes, and headers saying
/// where it came from and why it was rejected.
fn dead_letter(
    operator: &str,
    record: &Record<'_>,
    reason: &'static str,
    message: &str,
) -> DeadLetter {
    let partition = record.partition.to_string();
    let offset = record.offset.to_string();
    let time = now_ms().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "surgeflow.error.class",
            value: Some("invalid_record"),
        })
        .insert(Header {
            key: "surgeflow.error.reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "surgeflow.error.message",
            value: Some(message),
        })
        .insert(Header {
            key: "surgeflow.source.topic",
            value: Some(record.topic),
        })
        .insert(Header {
            key: "surgeflow.source.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "surgeflow.source.offset",
            value: Some(&offset),
        })
        .insert(Header {
            key: "surgeflow.operator",
            value: Some(operator),
        })
        .insert(Header {
            key: "surgeflow.time_ms",
            value: Some(&time),
        });
    DeadLetter {
        key: record.key.map(<[u8]>::to_vec),
        payload: record.payload.map(<[u8]>::to_vec),
        headers,
        source_topic: record.topic.to_string(),
        reason,
    }
}
