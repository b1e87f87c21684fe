//! The consume-process-produce loop.
//!
//! One thread, one consumer, one producer, batch after batch:
//!
//! 1. **Process as records arrive**: poll, take whatever else is already fetched (borrowed, no
//!    copy), run it through the operator and produce its outputs at once; bad records become
//!    DLQ records with provenance headers. Exactly once, the first output opens the batch's
//!    transaction. Stateful operators put records through the [`Aligner`] first and process
//!    what it releases in timestamp order. Rebalance callbacks recorded during a poll are
//!    handled right after it: a revocation has already committed the batch (see
//!    [`crate::rebalance`]) and records of revoked partitions not yet processed are dropped;
//!    newly assigned partitions get their state restored before any of their records is
//!    processed.
//! 2. **Close** after `commit_interval_ms` or `max_batch` records (at least once also as soon
//!    as the consumer's queue runs dry): the operator's clock tick, then the commit. Exactly
//!    once commits the transaction with the consumed positions (`send_offsets_to_transaction`
//!    with fresh group metadata, so a zombie instance is fenced); at least once waits for every
//!    delivery, then commits offsets. A batch that consumed and produced nothing commits
//!    nothing.
//!
//! Processing on arrival keeps the commit interval the only wait a record has exactly once:
//! when the batch closes, its records are processed and their outputs acknowledged already.
//!
//! Failures follow librdkafka's classes: a retriable commit error is retried; one that requires
//! an abort aborts, rewinds the consumer to the committed offsets and rebuilds the operator's
//! state; a fatal producer error builds a new producer (whose `init_transactions` fences the
//! old one) and then does the same. Nothing is skipped and nothing is emitted twice for
//! `read_committed` readers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_kafka::{ClientFactory, SchemaCache};
use surgeflow_topology::Delivery;

use crate::align::Aligner;
use crate::batch::{CALL_TIMEOUT, Closed, OpenBatch, PARTITION_TIME_KEY, new_producer};
use crate::operator::{Context, Operator, Output, Record, RecordError, TopicPartition};
use crate::rebalance::{AssignmentChange, RuntimeContext};
use crate::replay::Replay;

/// How long an at-least-once batch with records waits for more before it closes.
const EARLY_CLOSE_POLL: Duration = Duration::from_millis(1);

/// How long a stateful operator's co-partitions wait for an empty sibling before going on.
const ALIGN_IDLE: Duration = Duration::from_millis(500);

/// The same for a sibling that has not delivered a record since it was assigned: its first
/// fetch may be late, and a restart must order its first records as the lost run did. A
/// partition that is really empty holds its group this long once per assignment.
const ALIGN_FIRST_IDLE: Duration = Duration::from_secs(5);

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
    /// A poll of the current batch found the consumer's queue empty (see
    /// [`Context::caught_up`]).
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

/// The loop's state apart from the consumer (which the fetched messages borrow).
pub struct Worker<O: Operator> {
    operator: O,
    settings: WorkerSettings,
    factory: ClientFactory,
    /// The producer and the batch in progress, shared with the consumer's context, which
    /// commits the batch when a revocation comes (see [`crate::batch`]).
    batch: Arc<Mutex<OpenBatch>>,
    env: Env,
    /// The batch's outputs, kept until it commits (for their metrics); those before
    /// `out_sent` are produced already.
    out: Output,
    out_sent: usize,
    dead: Vec<DeadLetter>,
    dead_sent: usize,
    /// Records processed in the batch in progress.
    processed: usize,
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
    /// When the batch in progress closes at the latest: batches keep the commit interval as a
    /// cadence, so the time spent committing one batch counts towards the next one rather
    /// than adding to the wait of every record that arrived meanwhile.
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
        let producer = new_producer(&factory, settings.delivery, &settings.transactional_id)?;
        let batch = Arc::new(Mutex::new(OpenBatch::new(producer, settings.delivery)));
        let settings_retry = settings.registry_retry;
        let aligner = operator
            .restore_horizon_ms()
            .map(|_| Aligner::new(ALIGN_IDLE, ALIGN_FIRST_IDLE));
        // Series that exist from the start, so dashboards and alerts see 0 rather than nothing.
        metrics::gauge!("surgeflow_assigned_partitions", "operator" => settings.operator).set(0.0);
        for outcome in ["committed", "failed"] {
            metrics::counter!("surgeflow_revocation_commits_total", "operator" => settings.operator,
                "outcome" => outcome)
            .increment(0);
        }
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
            batch,
            env: Env {
                schemas,
                handle,
                registry_retry: settings_retry,
                caught_up: false,
            },
            out_sent: 0,
            dead: Vec::new(),
            dead_sent: 0,
            processed: 0,
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
        let consumer: BaseConsumer<RuntimeContext> = config.create_with_context(
            RuntimeContext::new(self.settings.operator, Arc::clone(&self.batch)),
        )?;
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
            if let Err(e) = self.run_batch(consumer) {
                // The batch must not commit when the consumer closes and revokes everything:
                // it stopped part-way. Its transaction is left open, and the next producer
                // with this transactional id (or the broker's timeout) aborts it.
                self.open_batch().abandon();
                return Err(e);
            }
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

    /// The batch's producer, whose lock nothing else holds: the only other user is the
    /// consumer's revocation callback, which runs inside `poll` on this thread.
    fn open_batch(&self) -> MutexGuard<'_, OpenBatch> {
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One batch: records processed as they arrive until it closes, then the close.
    fn run_batch(&mut self, consumer: &BaseConsumer<RuntimeContext>) -> Result<(), WorkerError> {
        let max = self.settings.max_batch;
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
        let mut fetched: Vec<BorrowedMessage<'_>> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.batch_end = deadline + self.settings.commit_interval;
                break;
            }
            if self.processed >= max {
                break;
            }
            // At least once, a batch closes as soon as the consumer's queue runs dry: nothing
            // waits for a transaction, so holding the commit back only delays the next one.
            // Exactly once keeps the batch open for the commit interval: every batch is a
            // transaction.
            let close_when_dry =
                self.processed > 0 && self.settings.delivery == Delivery::AtLeastOnce;
            let mut polled = consumer.poll(if close_when_dry {
                left.min(EARLY_CLOSE_POLL)
            } else {
                left
            });
            let dry = polled.is_none();
            // Then whatever else is fetched already, up to the batch's size.
            let room = max - self.processed;
            let mut taken = 0;
            loop {
                self.apply_changes(consumer, &mut fetched)?;
                match polled {
                    Some(Ok(message)) => {
                        if self.accept(message, &mut fetched) {
                            taken += 1;
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
                        break;
                    }
                }
                if taken >= room {
                    break;
                }
                polled = consumer.poll(Duration::ZERO);
            }
            self.process_fetched(&mut fetched, room)?;
            if dry && close_when_dry {
                break;
            }
        }
        self.close(consumer)
    }

    /// Keeps a polled record for processing, unless its partition is no longer assigned.
    fn accept<'c>(
        &mut self,
        message: BorrowedMessage<'c>,
        fetched: &mut Vec<BorrowedMessage<'c>>,
    ) -> bool {
        // A linear scan of the few assigned partitions: no key to allocate.
        let (topic, partition) = (message.topic(), message.partition());
        if !self
            .assigned
            .iter()
            .any(|tp| tp.partition == partition && tp.topic == topic)
        {
            return false;
        }
        match &mut self.aligner {
            Some(aligner) => {
                let tp = TopicPartition {
                    topic: topic.to_string(),
                    partition,
                };
                aligner.push(tp, message.detach());
            }
            None => fetched.push(message),
        }
        true
    }

    /// Processes the records fetched (stateless operators), or up to `room` of those the
    /// aligner releases in timestamp order (stateful ones), and produces their outputs.
    fn process_fetched(
        &mut self,
        fetched: &mut Vec<BorrowedMessage<'_>>,
        room: usize,
    ) -> Result<(), WorkerError> {
        match &mut self.aligner {
            Some(aligner) => {
                let ready = aligner.take(&self.assigned, room, Instant::now());
                self.process(&ready)
            }
            None => {
                let result = self.process(fetched);
                fetched.clear();
                result
            }
        }
    }

    /// Acts on the rebalances recorded during the last poll.
    fn apply_changes<'c>(
        &mut self,
        consumer: &'c BaseConsumer<RuntimeContext>,
        fetched: &mut Vec<BorrowedMessage<'c>>,
    ) -> Result<(), WorkerError> {
        // Set when a revocation could not commit the batch: its processed records count for
        // nothing, so no partition may keep the state they built.
        let mut discard = false;
        for change in consumer.context().take_changes() {
            match change {
                AssignmentChange::BatchClosed(Closed::Committed(offsets)) => {
                    self.count_revocation_commit("committed");
                    self.committed(consumer, &offsets);
                }
                AssignmentChange::BatchClosed(Closed::Failed { fatal }) => {
                    self.count_revocation_commit("failed");
                    self.count_abort(fatal);
                    if fatal {
                        self.replace_producer()?;
                    }
                    self.forget_batch();
                    discard = true;
                }
                AssignmentChange::Revoked(parts) => {
                    tracing::info!(
                        operator = self.settings.operator,
                        ?parts,
                        "partitions revoked"
                    );
                    fetched.retain(|m| {
                        !parts
                            .iter()
                            .any(|p| p.topic == m.topic() && p.partition == m.partition())
                    });
                    if let Some(aligner) = &mut self.aligner {
                        aligner.drop_partitions(&parts);
                    }
                    for p in &parts {
                        self.assigned.remove(p);
                    }
                    if discard {
                        self.operator.on_revoked(&parts);
                    } else {
                        self.parked.extend(parts);
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
        if discard {
            // The partitions this instance keeps start over from their committed offsets.
            fetched.clear();
            self.rewind(consumer)?;
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
            self.send_pending();
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

    /// Runs `messages` through the operator and produces their outputs.
    fn process<M: Message>(&mut self, messages: &[M]) -> Result<(), WorkerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let op = self.settings.operator;
        let now = now_ms();
        let batch = Arc::clone(&self.batch);
        let mut batch = batch.lock().unwrap_or_else(|e| e.into_inner());
        for message in messages {
            let record = record_of(message);
            count_in(&mut self.in_counts, message.topic());
            let time = match (&self.aligner, record.timestamp_ms) {
                (Some(_), Some(ts)) => Some(advance_partition_time(
                    &mut self.partition_time,
                    message.topic(),
                    message.partition(),
                    ts,
                )),
                _ => None,
            };
            let mut ctx = context_at(&self.env, &mut self.out, false, now);
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
            // Only now: a record that stopped the loop was not processed, and must not count.
            batch.processed(message.topic(), message.partition(), message.offset(), time);
        }
        self.processed += messages.len();
        self.send_new(&mut batch);
        batch.serve_reports();
        Ok(())
    }

    /// Produces what the operator emitted outside `process` (on assignment) at once: the
    /// batch is committed by whatever comes first, its close or a revocation, and either
    /// commits only what was sent.
    fn send_pending(&mut self) {
        let batch = Arc::clone(&self.batch);
        let mut batch = batch.lock().unwrap_or_else(|e| e.into_inner());
        self.send_new(&mut batch);
    }

    /// Produces the outputs and dead letters not produced yet. A failure is logged here and
    /// fails the batch's commit, which rewinds: the records are processed again.
    fn send_new(&mut self, batch: &mut OpenBatch) {
        if let Err(e) = self.try_send_new(batch) {
            tracing::warn!(operator = self.settings.operator, error = %e, "sending an output failed; the batch will be given up");
        }
    }

    fn try_send_new(&mut self, batch: &mut OpenBatch) -> Result<(), KafkaError> {
        for (topic, key, payload, timestamp) in self.out.iter_from(self.out_sent) {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            batch.send(record)?;
        }
        self.out_sent = self.out.len();
        for dead in self.dead.get(self.dead_sent..).unwrap_or_default() {
            let mut record =
                BaseRecord::<[u8], [u8]>::to(&self.settings.dlq).headers(dead.headers.clone());
            if let Some(k) = &dead.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &dead.payload {
                record = record.payload(p.as_slice());
            }
            batch.send(record)?;
        }
        self.dead_sent = self.dead.len();
        Ok(())
    }

    /// Ends the batch: records the aligner released while no poll returned, the operator's
    /// clock tick, the batch's metrics, and the commit.
    fn close(&mut self, consumer: &BaseConsumer<RuntimeContext>) -> Result<(), WorkerError> {
        let op = self.settings.operator;
        if let Some(aligner) = &mut self.aligner {
            let room = self.settings.max_batch.saturating_sub(self.processed);
            let ready = aligner.take(&self.assigned, room, Instant::now());
            // Records held back for a sibling are input not yet processed: an operator must
            // not take the time spent waiting for quiet (its idle clocks would pass them by).
            self.env.caught_up &= aligner.is_empty();
            self.process(&ready)?;
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
        for (topic, n) in self.in_counts.iter_mut().filter(|(_, n)| *n > 0) {
            metrics::counter!("surgeflow_records_in_total", "operator" => op, "topic" => topic.clone()).increment(*n);
            *n = 0;
        }
        metrics::histogram!("surgeflow_batch_records", "operator" => op)
            .record(self.processed as f64);
        for (kind, value) in self.operator.state_sizes() {
            metrics::gauge!("surgeflow_state_entries", "operator" => op, "kind" => kind).set(value);
        }
        let batch = Arc::clone(&self.batch);
        let mut batch = batch.lock().unwrap_or_else(|e| e.into_inner());
        self.send_new(&mut batch);
        if !batch.is_dirty() {
            return Ok(());
        }
        let started = Instant::now();
        let offsets = self.positions(consumer)?;
        // At least once, the commit is not waited for: a commit lost to a crash or a rebalance
        // means records processed again, which at least once allows, and waiting would add a
        // round trip to every batch. librdkafka sends commits in order and finishes them
        // before it closes.
        let result = batch.commit(consumer, &offsets, CommitMode::Async);
        drop(batch);
        match result {
            Ok(()) => {
                metrics::histogram!("surgeflow_transaction_commit_seconds", "operator" => op)
                    .record(started.elapsed().as_secs_f64());
                self.committed(consumer, &offsets);
                Ok(())
            }
            Err(e) => {
                let fatal = e.is_fatal();
                tracing::warn!(operator = op, error = %e, fatal, "batch failed; rewinding to the committed offsets");
                self.count_abort(fatal);
                if fatal {
                    self.replace_producer()?;
                } else {
                    let aborted = self.open_batch().abort();
                    if let Err(abort) = aborted {
                        tracing::warn!(error = %abort, "abort failed; building a new producer");
                        self.replace_producer()?;
                    }
                }
                self.forget_batch();
                self.rewind(consumer)
            }
        }
    }

    /// Bookkeeping once the batch committed `offsets`.
    fn committed(&mut self, consumer: &BaseConsumer<RuntimeContext>, offsets: &TopicPartitionList) {
        self.remember_committed(offsets);
        consumer.context().record_committed(offsets);
        self.count_outputs();
        self.count_dead_letters();
        self.forget_batch();
    }

    /// Drops the batch's outputs (committed, or given up).
    fn forget_batch(&mut self) {
        self.out.clear();
        self.out_sent = 0;
        self.dead.clear();
        self.dead_sent = 0;
        self.processed = 0;
    }

    fn count_revocation_commit(&self, outcome: &'static str) {
        metrics::counter!("surgeflow_revocation_commits_total", "operator" => self.settings.operator,
            "outcome" => outcome)
        .increment(1);
    }

    fn count_abort(&self, fatal: bool) {
        if self.settings.delivery == Delivery::ExactlyOnce {
            metrics::counter!("surgeflow_transactions_aborted_total", "operator" => self.settings.operator,
                "reason" => if fatal { "fatal" } else { "abortable" })
            .increment(1);
        }
    }

    /// A new producer for one that failed fatally; its `init_transactions` fences the old one.
    fn replace_producer(&mut self) -> Result<(), WorkerError> {
        let producer = new_producer(
            &self.factory,
            self.settings.delivery,
            &self.settings.transactional_id,
        )?;
        self.open_batch().replace_producer(producer);
        Ok(())
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
        self.send_pending();
        Ok(())
    }
}

fn count_in(counts: &mut Vec<(String, u64)>, topic: &str) {
    match counts.iter_mut().find(|(t, _)| t == topic) {
        Some((_, n)) => *n += 1,
        None => counts.push((topic.to_string(), 1)),
    }
}

/// Raises the partition's latest record time to `ts`; returns the latest time.
fn advance_partition_time(
    times: &mut Vec<(String, i32, i64)>,
    topic: &str,
    partition: i32,
    ts: i64,
) -> i64 {
    match times
        .iter_mut()
        .find(|(t, p, _)| t == topic && *p == partition)
    {
        Some((_, _, time)) => {
            *time = (*time).max(ts);
            *time
        }
        None => {
            times.push((topic.to_string(), partition, ts));
            ts
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
