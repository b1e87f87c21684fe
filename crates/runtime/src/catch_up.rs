//! Reading every partition of some topics up to the end offsets they had when reading began.
//!
//! Operators need this for what they read outside their consumer group: the matcher's tables
//! (`driver.profile`, `surge.multiplier`) are read whole before processing starts, and a
//! restore reads back what was already published (the matcher's proposals, the pricer's
//! multipliers). Reading
//! "to the end" means up to the high watermark of each partition as it was when reading began:
//! with `read_committed` a consumer's position can stop short of that watermark on a
//! transaction still open, and steps over transaction markers without delivering them, so the
//! end is detected by the position, not by the offset of the last record delivered.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Timeout of one metadata or offsets call to the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first record still in the log, in every partition, empty ones included: the
    /// consumer goes on following all of them afterwards (the tables).
    Beginning,
    /// The first record whose timestamp is at or after this time (milliseconds), in the
    /// partitions that have one: a one-off read (outputs read back).
    Time(i64),
}

/// The partitions still to be read to their end, with the offset that ends each.
#[derive(Debug, Default)]
pub struct Ends(Vec<(String, i32, i64)>);

impl Ends {
    /// True when every partition reached its end.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets the partition if `offset` is at or past its end.
    fn reached(&mut self, topic: &str, partition: i32, offset: i64) {
        self.0
            .retain(|(t, p, end)| !(t == topic && *p == partition && offset >= *end));
    }
}

/// Assigns `consumer` the partitions of `topics` from `start` (see there for which) and
/// returns where those with records to read end.
///
/// # Errors
/// When metadata or offsets cannot be fetched, or the assignment is refused.
pub fn assign(consumer: &BaseConsumer, topics: &[&str], start: Start) -> anyhow::Result<Ends> {
    let mut ends = Ends::default();
    let mut wanted = TopicPartitionList::new();
    for &topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .with_context(|| format!("metadata of {topic}"))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        anyhow::ensure!(
            partitions > 0,
            "topic {topic} has no partitions (does it exist?)"
        );
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, CALL_TIMEOUT)
                .with_context(|| format!("end offsets of {topic}-{partition}"))?;
            let has_records = high > low;
            if has_records {
                ends.0.push((topic.to_owned(), partition, high));
            }
            match start {
                Start::Beginning => {
                    wanted.add_partition_offset(topic, partition, Offset::Beginning)?;
                }
                Start::Time(ms) if has_records => {
                    wanted.add_partition_offset(topic, partition, Offset::Offset(ms))?;
                }
                Start::Time(_) => {}
            }
        }
    }
    if let Start::Time(_) = start
        && wanted.count() > 0
    {
        // Turn the times into offsets; a partition with no record that recent is skipped.
        wanted = consumer
            .offsets_for_times(wanted, CALL_TIMEOUT)
            .context("offsets by time")?;
        let mut recent = TopicPartitionList::new();
        for e in wanted.elements() {
            if let Offset::Offset(o) = e.offset() {
                recent.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
            } else {
                ends.reached(e.topic(), e.partition(), i64::MAX);
            }
        }
        wanted = recent;
    }
    consumer.assign(&wanted).context("assigning partitions")?;
    Ok(ends)
}

/// Polls `consumer` until every partition in `ends` reached its end, handing each record
/// to `visit`.
///
/// # Errors
/// A consumer error, `visit`'s error, or running past `deadline`.
pub fn read_to_end(
    consumer: &BaseConsumer,
    ends: &mut Ends,
    deadline: Instant,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    while !ends.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "partitions not read to their end in time: {:?}",
            ends.0
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(message) => {
                let message = message?;
                visit(&message)?;
                ends.reached(message.topic(), message.partition(), message.offset() + 1);
            }
            None => {
                for e in consumer.position()?.elements() {
                    if let Offset::Offset(position) = e.offset() {
                        ends.reached(e.topic(), e.partition(), position);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_ends_at_its_end_offset_only() {
        let mut ends = Ends(vec![
            ("a".into(), 0, 10),
            ("a".into(), 1, 5),
            ("b".into(), 0, 10),
        ]);
        ends.reached("a", 0, 9);
        ends.reached("c", 0, 100);
        assert_eq!(ends.0.len(), 3);
        ends.reached("a", 0, 10);
        ends.reached("b", 0, 11);
        assert_eq!(ends.0, [("a".to_string(), 1, 5)]);
        assert!(!ends.is_empty());
        ends.reached("a", 1, 5);
        assert!(ends.is_empty());
    }
}
