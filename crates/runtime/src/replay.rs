//! Replaying input to rebuild state: read a set of partitions from the offsets at a point in
//! time up to their committed offsets, and hand the records over in timestamp order across
//! partitions.
//!
//! The order matters: a windowed operator reads several co-partitioned topics (pings and trip
//! events of the same regions) and tolerates only a bounded disorder between them (its allowed
//! lateness). A plain consumer returns whole fetches of one partition after another, which can
//! be minutes apart in time during a replay; merging the partitions' heads by record timestamp
//! restores the interleaving they had when they were first processed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_kafka::ClientFactory;

use crate::operator::TopicPartition;

/// Timeout for one call to the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("replay of {0} did not reach the committed offsets in time")]
    Stalled(String),
}

struct Source {
    /// First offset not to replay (the committed offset).
    end: i64,
    queue: VecDeque<OwnedMessage>,
    /// All records before `end` have been fetched.
    drained: bool,
}

/// A merge-by-timestamp reader over partitions being replayed.
pub struct Replay {
    reader: BaseConsumer,
    sources: BTreeMap<TopicPartition, Source>,
    deadline: Instant,
}

impl Replay {
    /// Opens a replay of each partition in `ranges` (partition → (committed offset, time)),
    /// from its first record stamped at or after the time up to the committed offset. Returns
    /// `None` when there is nothing to replay.
    ///
    /// # Errors
    /// [`ReplayError::Kafka`] when offsets cannot be looked up.
    pub fn open(
        factory: &ClientFactory,
        group_id: &str,
        ranges: BTreeMap<TopicPartition, (i64, i64)>,
        timeout: Duration,
    ) -> Result<Option<Replay>, ReplayError> {
        if ranges.is_empty() {
            return Ok(None);
        }
        let reader: BaseConsumer = factory
            .consumer_config(&format!("{group_id}.restore"))
            .create()?;
        let mut by_time = TopicPartitionList::new();
        for (p, (_, from_ms)) in &ranges {
            by_time.add_partition_offset(&p.topic, p.partition, Offset::Offset(*from_ms))?;
        }
        let starts = reader.offsets_for_times(by_time, CALL_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        let mut sources = BTreeMap::new();
        for e in starts.elements() {
            let tp = TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            };
            let Some(&(end, _)) = ranges.get(&tp) else {
                continue;
            };
            if let Offset::Offset(start) = e.offset()
                && start < end
            {
                assignment.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(start))?;
                sources.insert(
                    tp,
                    Source {
                        end,
                        queue: VecDeque::new(),
                        drained: false,
                    },
                );
            }
        }
        if sources.is_empty() {
            return Ok(None);
        }
        reader.assign(&assignment)?;
        Ok(Some(Replay {
            reader,
            sources,
            deadline: Instant::now() + timeout,
        }))
    }

    /// The next record in timestamp order, or `None` when every partition reached its end.
    ///
    /// # Errors
    /// [`ReplayError`] on a consumer error or when the deadline passes.
    pub fn next_record(&mut self) -> Result<Option<OwnedMessage>, ReplayError> {
        loop {
            // A head can go out once every partition that may still deliver has one queued.
            let waiting = self
                .sources
                .values()
                .any(|s| s.queue.is_empty() && !s.drained);
            if !waiting {
                let head = self
                    .sources
                    .iter()
                    .filter_map(|(tp, s)| {
                        s.queue.front().map(|m| {
                            (
                                m.timestamp().to_millis().unwrap_or(0),
                                m.offset(),
                                tp.clone(),
                            )
                        })
                    })
                    .min();
                return Ok(head.and_then(|(_, _, tp)| {
                    self.sources.get_mut(&tp).and_then(|s| s.queue.pop_front())
                }));
            }
            if Instant::now() > self.deadline {
                let stuck: Vec<String> = self
                    .sources
                    .iter()
                    .filter(|(_, s)| !s.drained)
                    .map(|(tp, s)| format!("{}-{} (to offset {})", tp.topic, tp.partition, s.end))
                    .collect();
                return Err(ReplayError::Stalled(stuck.join(", ")));
            }
            match self.reader.poll(Duration::from_millis(200)) {
                Some(result) => {
                    let message = result?;
                    let tp = TopicPartition {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                    };
                    if let Some(source) = self.sources.get_mut(&tp) {
                        if message.offset() + 1 >= source.end {
                            source.drained = true;
                        }
                        if message.offset() < source.end {
                            source.queue.push_back(message.detach());
                        }
                    }
                }
                None => self.mark_drained_by_position(),
            }
        }
    }

    /// Marks partitions whose position reached the end without a record: the last offsets
    /// before a committed offset can be transaction markers, which are never delivered.
    fn mark_drained_by_position(&mut self) {
        if let Ok(positions) = self.reader.position() {
            for e in positions.elements() {
                let tp = TopicPartition {
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                };
                if let (Offset::Offset(pos), Some(source)) = (e.offset(), self.sources.get_mut(&tp))
                    && pos >= source.end
                {
                    source.drained = true;
                }
            }
        }
    }
}
