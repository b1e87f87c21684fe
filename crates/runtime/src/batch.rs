//! The batch in progress: the producer, its transaction, and how far processing got.
//!
//! The loop processes records as they arrive and produces their outputs at once; a batch ends
//! with a commit every `commit_interval_ms`. Between two commits the outputs of the records
//! processed so far are in an open transaction (exactly once), or delivered with their offsets
//! not yet committed (at least once). A revoked partition's new owner starts from the offset
//! committed when this instance's revocation callback returns, so the callback must commit the
//! batch first, as Kafka Streams does in `onPartitionsRevoked`. This struct is therefore shared
//! by the processing loop and the consumer's context ([`crate::rebalance::RuntimeContext`]);
//! both run on the processing thread (callbacks are served inside `poll`), so its lock is never
//! contended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use surgeflow_kafka::ClientFactory;
use surgeflow_topology::Delivery;

/// Timeout for one call to the broker (commit, offsets, metadata).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The pause between checks for the batch's acknowledgements.
const ACK_CHECK_EVERY: Duration = Duration::from_micros(250);

/// Offset-commit metadata prefix carrying the partition's latest record time.
pub(crate) const PARTITION_TIME_KEY: &str = "surgeflow.time=";

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

pub(crate) type RuntimeProducer = BaseProducer<DeliveryTracker>;

/// Why a batch did not commit. Either way nothing of it counts: its records are processed
/// again, from the offsets committed before it.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("{0} records of the batch were not delivered")]
    Undelivered(u64),
    #[error("an output of the batch could not be sent")]
    Unsent,
}

impl CommitError {
    /// The producer is unusable (fenced, or a fatal idempotence error): build a new one.
    pub fn is_fatal(&self) -> bool {
        matches!(self, CommitError::Kafka(KafkaError::Transaction(t)) if t.is_fatal())
    }
}

/// How a batch ended when a revocation closed it.
#[derive(Debug)]
pub enum Closed {
    /// Committed with these offsets.
    Committed(TopicPartitionList),
    /// Aborted (exactly once) or left uncommitted (at least once).
    Failed { fatal: bool },
}

/// Where processing got in one partition during the batch.
struct Progress {
    topic: String,
    partition: i32,
    /// The offset after the last record processed.
    next: i64,
    /// The partition's latest record time, committed as offset metadata (see `restore`).
    time_ms: Option<i64>,
}

/// The producer and the batch it is writing.
pub struct OpenBatch {
    producer: RuntimeProducer,
    delivery: Delivery,
    /// `begin_transaction` was called and the transaction is not finished (exactly once).
    in_transaction: bool,
    /// Something was sent since the last commit.
    sent: bool,
    /// An output could not be sent: the batch must not commit.
    unsent: bool,
    /// The loop stopped with an error part-way through the batch: nothing may commit it.
    abandoned: bool,
    progress: Vec<Progress>,
    /// Failed deliveries counted before this batch (at least once).
    failed_before: u64,
}

impl OpenBatch {
    pub(crate) fn new(producer: RuntimeProducer, delivery: Delivery) -> Self {
        let failed_before = producer.context().failed.load(Ordering::Relaxed);
        OpenBatch {
            producer,
            delivery,
            in_transaction: false,
            sent: false,
            unsent: false,
            abandoned: false,
            progress: Vec::new(),
            failed_before,
        }
    }

    /// Replaces a producer that failed fatally; whatever the old one had open is gone.
    pub(crate) fn replace_producer(&mut self, producer: RuntimeProducer) {
        *self = OpenBatch::new(producer, self.delivery);
    }

    /// Enqueues one output, opening the batch's transaction first when needed. After an
    /// error the batch cannot commit (it would lose the output), and later outputs are not
    /// sent.
    pub(crate) fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
        if self.unsent {
            return Ok(());
        }
        self.sent = true;
        let result = self.begin().and_then(|()| send(&self.producer, record));
        self.unsent = result.is_err();
        result
    }

    fn begin(&mut self) -> Result<(), KafkaError> {
        if self.delivery == Delivery::ExactlyOnce && !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Notes that the record at `offset` of the partition was processed.
    pub(crate) fn processed(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        time_ms: Option<i64>,
    ) {
        let next = offset + 1;
        match self
            .progress
            .iter_mut()
            .find(|p| p.partition == partition && p.topic == topic)
        {
            Some(p) => {
                p.next = p.next.max(next);
                p.time_ms = p.time_ms.max(time_ms);
            }
            None => self.progress.push(Progress {
                topic: topic.to_string(),
                partition,
                next,
                time_ms,
            }),
        }
    }

    /// Serves the delivery reports already in (see [`serve_reports`]), so that the close
    /// finds only the latest records to wait for.
    pub(crate) fn serve_reports(&self) {
        serve_reports(&self.producer);
    }

    /// Something was processed or produced since the last commit.
    pub(crate) fn is_dirty(&self) -> bool {
        self.sent || self.in_transaction || !self.progress.is_empty()
    }

    /// Commits the batch with `offsets`: exactly once, the offsets join the transaction (with
    /// `consumer`'s group metadata, so a zombie is fenced) and the transaction commits once
    /// every output is acknowledged; at least once, the offsets are committed once every output
    /// is delivered (`mode` says whether to wait for that commit).
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        mode: CommitMode,
    ) -> Result<(), CommitError> {
        if self.unsent {
            return Err(CommitError::Unsent);
        }
        match self.delivery {
            Delivery::ExactlyOnce => {
                self.begin()?;
                if offsets.count() > 0 {
                    let metadata = consumer
                        .group_metadata()
                        .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
                    self.producer
                        .send_offsets_to_transaction(offsets, &metadata, CALL_TIMEOUT)?;
                }
                // The records were on their way while the offsets went to the coordinator.
                await_acks(&self.producer, CALL_TIMEOUT)?;
                commit_with_retries(&self.producer)?;
            }
            Delivery::AtLeastOnce => {
                await_acks(&self.producer, CALL_TIMEOUT)?;
                let failed = self.producer.context().failed.load(Ordering::Relaxed);
                if failed != self.failed_before {
                    return Err(CommitError::Undelivered(failed - self.failed_before));
                }
                if offsets.count() > 0 {
                    consumer.commit(offsets, mode)?;
                }
            }
        }
        self.reset();
        Ok(())
    }

    /// Gives the batch up: aborts its transaction, if any.
    ///
    /// # Errors
    /// When the abort fails; the producer must then be replaced.
    pub(crate) fn abort(&mut self) -> Result<(), KafkaError> {
        let open = self.in_transaction;
        self.reset();
        if open {
            self.producer.abort_transaction(CALL_TIMEOUT)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.in_transaction = false;
        self.sent = false;
        self.unsent = false;
        self.progress.clear();
        self.failed_before = self.producer.context().failed.load(Ordering::Relaxed);
    }

    /// Marks the batch as stopped part-way (the loop failed): the revocation that closing the
    /// consumer brings must not commit it.
    pub(crate) fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Commits the batch before its partitions are revoked, up to the records processed; the
    /// new owner reads these offsets. Nothing to do (`None`) when the batch is clean or was
    /// abandoned.
    pub(crate) fn close_for_revocation<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Option<Closed> {
        if self.abandoned || !self.is_dirty() {
            return None;
        }
        let offsets = match self.processed_offsets() {
            Ok(offsets) => offsets,
            Err(e) => return Some(self.give_up(&CommitError::Kafka(e))),
        };
        // Waited for at least once too: the new owner must see this commit.
        Some(match self.commit(consumer, &offsets, CommitMode::Sync) {
            Ok(()) => Closed::Committed(offsets),
            Err(e) => self.give_up(&e),
        })
    }

    fn give_up(&mut self, error: &CommitError) -> Closed {
        let mut fatal = error.is_fatal();
        tracing::warn!(error = %error, fatal, "committing before a revocation failed");
        if !fatal && let Err(e) = self.abort() {
            tracing::warn!(error = %e, "abort failed");
            fatal = true;
        }
        self.reset();
        Closed::Failed { fatal }
    }

    /// The offsets after the records processed, with each partition's record time.
    fn processed_offsets(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::new();
        for p in &self.progress {
            list.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))?;
            if let (Some(time), Some(mut e)) =
                (p.time_ms, list.find_partition(&p.topic, p.partition))
            {
                e.set_metadata(format!("{PARTITION_TIME_KEY}{time}"));
            }
        }
        Ok(list)
    }
}

/// Serves delivery reports until the broker has acknowledged every queued record.
///
/// This is `flush`, done so that it returns soon after the last acknowledgement. rdkafka's
/// `flush`, which `commit_transaction` also calls first, polls in 100 ms slices that each run
/// to their end, so every batch paid at least ~100 ms even when the broker acknowledged within
/// a few. Nor does a short `poll` help: it rounds its remaining time down to whole
/// milliseconds and so spins through its last one. Hence [`serve_reports`] and a short sleep
/// while acknowledgements are outstanding. With the queue empty, `commit_transaction`'s own
/// flush returns at once.
///
/// # Errors
/// [`KafkaError::Flush`] when records are still in flight after `timeout`.
pub fn await_acks<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        serve_reports(producer);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(ACK_CHECK_EVERY);
    }
}

/// Serves every delivery report (and other producer event) already waiting, without blocking.
///
/// A `poll` with a zero timeout serves a single event, and each produce response is an event
/// of its own; a batch whose records were produced as they came has about one per record, so
/// serving one per check of [`await_acks`] made its wait grow with the batch (20 ms for 100
/// records). Polling on while events keep coming serves them all at once.
pub fn serve_reports<C: ProducerContext>(producer: &BaseProducer<C>) {
    loop {
        let before = producer.in_flight_count();
        producer.poll(Duration::ZERO);
        if before == 0 || producer.in_flight_count() >= before {
            return;
        }
    }
}

fn commit_with_retries(producer: &RuntimeProducer) -> Result<(), KafkaError> {
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
    // Records are sent as soon as they are processed and the commit waits for them, so
    // lingering would only delay the batch's end.
    config.set("linger.ms", "0");
    config
}

/// A producer as the runtime uses it, its transactions initialised exactly once (which fences
/// any earlier producer with the same transactional id).
pub(crate) fn new_producer(
    factory: &ClientFactory,
    delivery: Delivery,
    transactional_id: &str,
) -> Result<RuntimeProducer, KafkaError> {
    let config = producer_config(factory, delivery, transactional_id);
    let producer: RuntimeProducer = config.create_with_context(DeliveryTracker::default())?;
    if delivery == Delivery::ExactlyOnce {
        producer.init_transactions(CALL_TIMEOUT)?;
    }
    Ok(producer)
}

/// Enqueues one record, waiting for room when librdkafka's queue is full.
fn send(
    producer: &RuntimeProducer,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
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

#[cfg(test)]
mod tests {
    use rdkafka::consumer::DefaultConsumerContext;

    use super::*;

    /// A batch whose clients point at nothing: these tests never reach a broker.
    fn offline() -> (OpenBatch, BaseConsumer<DefaultConsumerContext>) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let producer: RuntimeProducer = config
            .create_with_context(DeliveryTracker::default())
            .unwrap();
        let consumer: BaseConsumer = config.clone().set("group.id", "g").create().unwrap();
        (OpenBatch::new(producer, Delivery::AtLeastOnce), consumer)
    }

    #[test]
    fn progress_keeps_the_offset_after_the_last_record_and_the_latest_time() {
        let (mut batch, _) = offline();
        assert!(!batch.is_dirty());
        batch.processed("a", 0, 10, Some(500));
        batch.processed("a", 0, 11, Some(400));
        batch.processed("a", 1, 3, None);
        assert!(batch.is_dirty());
        let offsets = batch.processed_offsets().unwrap();
        let a0 = offsets.find_partition("a", 0).unwrap();
        assert_eq!(a0.offset(), Offset::Offset(12));
        assert_eq!(a0.metadata(), format!("{PARTITION_TIME_KEY}500"));
        let a1 = offsets.find_partition("a", 1).unwrap();
        assert_eq!((a1.offset(), a1.metadata()), (Offset::Offset(4), ""));
    }

    #[test]
    fn a_revocation_commits_nothing_for_a_clean_or_an_abandoned_batch() {
        let (mut batch, consumer) = offline();
        assert!(batch.close_for_revocation(&consumer).is_none(), "clean");
        batch.processed("a", 0, 10, None);
        batch.abandon();
        assert!(
            batch.close_for_revocation(&consumer).is_none(),
            "a batch the loop stopped in must not commit when the consumer closes"
        );
    }

    #[test]
    fn a_batch_with_an_output_that_could_not_be_sent_does_not_commit() {
        let (mut batch, consumer) = offline();
        let too_large = vec![0u8; 2 << 20];
        let record = BaseRecord::<[u8], [u8]>::to("a").payload(too_large.as_slice());
        assert!(batch.send(record).is_err());
        assert!(batch.is_dirty());
        let committed = batch.commit(&consumer, &TopicPartitionList::new(), CommitMode::Async);
        assert!(
            matches!(committed, Err(CommitError::Unsent)),
            "{committed:?}"
        );
    }
}
