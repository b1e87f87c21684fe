//! Processing co-partitioned inputs in timestamp order, for stateful operators.
//!
//! A windowed operator reads several topics whose partition p carries the same keys (pings
//! and trip events of the same regions). Its upstream writers set each record's timestamp to
//! the event time, but they write the topics independently and at different speeds, so a plain
//! consumer can hand over minutes of one topic before the matching minutes of the other, far
//! beyond any allowed lateness. Like Kafka Streams' tasks, the runtime therefore buffers the
//! fetched records per partition and, within each group of co-partitions, always processes the
//! head with the smallest timestamp. When one partition of a group has nothing buffered, the
//! others wait for it up to an idle limit, then go on (an input can be legitimately quiet). A
//! partition that has not delivered a single record since it was assigned (or rewound) gets a
//! longer limit: its first fetch may simply be late (a loaded machine, a broker busy with a
//! rebalance), and passing it for idle then would order the first records of a restart
//! differently from the run it replaces.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};

use crate::operator::TopicPartition;

/// Per-partition buffers merged by timestamp within each partition number.
#[derive(Default)]
pub struct Aligner {
    buffers: BTreeMap<TopicPartition, VecDeque<OwnedMessage>>,
    /// When an assigned partition's buffer was last seen empty (absent while non-empty).
    empty_since: BTreeMap<TopicPartition, Instant>,
    idle: Duration,
    /// The limit for a partition with no record since its assignment (no entry in `buffers`).
    first_idle: Duration,
}

impl Aligner {
    /// An aligner whose groups wait at most `idle` for an empty partition, and `first_idle`
    /// for one that has not delivered any record since it was assigned.
    pub fn new(idle: Duration, first_idle: Duration) -> Self {
        Aligner {
            idle,
            first_idle,
            ..Aligner::default()
        }
    }

    /// Buffers a fetched record.
    pub fn push(&mut self, tp: TopicPartition, message: OwnedMessage) {
        self.empty_since.remove(&tp);
        self.buffers.entry(tp).or_default().push_back(message);
    }

    /// Records buffered in total.
    pub fn len(&self) -> usize {
        self.buffers.values().map(VecDeque::len).sum()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffers.values().all(VecDeque::is_empty)
    }

    /// True when no partition in `assigned` holds its group back at `now`: each has a record
    /// buffered or has been empty past its idle limit. Only then is a full buffer worth
    /// processing without fetching more (a partition with nothing buffered may simply not have
    /// been fetched yet); a partition that is merely quiet, like the regions a city does not
    /// cover, must not make every batch wait out the commit interval.
    pub fn covers(&self, assigned: &BTreeSet<TopicPartition>, now: Instant) -> bool {
        assigned.iter().all(|tp| !self.holds(tp, now))
    }

    /// Whether `tp` holds its group back at `now`: it is empty, and has not been for its idle
    /// limit (or was never seen empty by `take`, which starts that clock).
    fn holds(&self, tp: &TopicPartition, now: Instant) -> bool {
        let (empty, limit) = match self.buffers.get(tp) {
            Some(buffer) => (buffer.is_empty(), self.idle),
            None => (true, self.first_idle),
        };
        empty
            && self
                .empty_since
                .get(tp)
                .is_none_or(|since| now.duration_since(*since) < limit)
    }

    /// Forgets partitions (revoked, or rewound to their committed offsets).
    pub fn drop_partitions<'a>(&mut self, parts: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in parts {
            self.buffers.remove(tp);
            self.empty_since.remove(tp);
        }
    }

    /// The offset of the first record still buffered for `tp`: what must be committed for it,
    /// since everything from there on is unprocessed.
    pub fn first_unprocessed(&self, tp: &TopicPartition) -> Option<i64> {
        self.buffers
            .get(tp)
            .and_then(|b| b.front())
            .map(Message::offset)
    }

    /// Takes up to `max` records in processing order: per partition number, heads by smallest
    /// timestamp, as long as every assigned partition of the group has a head or has been
    /// empty for the idle limit.
    pub fn take(
        &mut self,
        assigned: &BTreeSet<TopicPartition>,
        max: usize,
        now: Instant,
    ) -> Vec<OwnedMessage> {
        for tp in assigned {
            if self.buffers.get(tp).is_none_or(VecDeque::is_empty) {
                self.empty_since.entry(tp.clone()).or_insert(now);
            }
        }
        let mut groups: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
        for tp in assigned {
            groups.entry(tp.partition).or_default().push(tp);
        }
        let mut out = Vec::new();
        for members in groups.values() {
            while out.len() < max {
                if members.iter().any(|tp| self.holds(tp, now)) {
                    break;
                }
                let head = members
                    .iter()
                    .filter_map(|tp| {
                        let m = self.buffers.get(*tp)?.front()?;
                        Some((m.timestamp().to_millis().unwrap_or(i64::MIN), *tp))
                    })
                    .min();
                let Some((_, tp)) = head else { break };
                let Some(buffer) = self.buffers.get_mut(tp) else {
                    break;
                };
                if let Some(m) = buffer.pop_front() {
                    out.push(m);
                }
                if buffer.is_empty() {
                    self.empty_since.insert(tp.clone(), now);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn msg(topic: &str, partition: i32, offset: i64, ts: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.into(),
            Timestamp::CreateTime(ts),
            partition,
            offset,
            None,
        )
    }

    fn order(out: &[OwnedMessage]) -> Vec<(String, i64)> {
        out.iter()
            .map(|m| (m.topic().to_string(), m.timestamp().to_millis().unwrap()))
            .collect()
    }

    #[test]
    fn merges_co_partitions_by_timestamp_and_waits_for_an_empty_one() {
        let assigned = BTreeSet::from([tp("a", 0), tp("b", 0)]);
        let mut al = Aligner::new(Duration::from_secs(1), Duration::from_secs(1));
        let t0 = Instant::now();
        for (i, ts) in [10, 20, 30, 40].into_iter().enumerate() {
            al.push(tp("a", 0), msg("a", 0, i as i64, ts));
        }
        // b has nothing yet: a waits, and a full buffer of a alone is no reason to stop fetching.
        assert!(!al.covers(&assigned, t0));
        assert!(al.take(&assigned, 100, t0).is_empty());
        al.push(tp("b", 0), msg("b", 0, 0, 15));
        al.push(tp("b", 0), msg("b", 0, 1, 35));
        assert!(al.covers(&assigned, t0));
        let out = al.take(&assigned, 100, t0);
        assert_eq!(
            order(&out),
            [
                ("a".into(), 10),
                ("b".into(), 15),
                ("a".into(), 20),
                ("a".into(), 30),
                ("b".into(), 35)
            ]
        );
        // b is empty again; a's 40 waits until b has been idle for a second.
        assert_eq!(al.first_unprocessed(&tp("a", 0)), Some(3));
        assert!(
            al.take(&assigned, 100, t0 + Duration::from_millis(500))
                .is_empty()
        );
        assert_eq!(
            order(&al.take(&assigned, 100, t0 + Duration::from_millis(1500))),
            [("a".into(), 40)]
        );
        assert!(al.is_empty());
    }

    #[test]
    fn a_quiet_partition_stops_holding_a_full_buffer_back_after_its_idle_limit() {
        // Regions 0 and 1 of two inputs; region 1 carries no traffic at all.
        let assigned = BTreeSet::from([tp("a", 0), tp("b", 0), tp("a", 1), tp("b", 1)]);
        let mut al = Aligner::new(Duration::from_millis(500), Duration::from_secs(5));
        let t0 = Instant::now();
        al.push(tp("a", 0), msg("a", 0, 0, 10));
        al.push(tp("a", 0), msg("a", 0, 1, 30));
        al.push(tp("b", 0), msg("b", 0, 0, 20));
        // Never seen empty yet: the quiet partitions may just not have been fetched.
        assert!(!al.covers(&assigned, t0));
        assert_eq!(al.take(&assigned, 100, t0).len(), 2);
        al.push(tp("b", 0), msg("b", 0, 1, 40));
        // Region 1 has delivered nothing since its assignment: it holds for the longer limit.
        assert!(!al.covers(&assigned, t0 + Duration::from_secs(2)));
        assert!(al.covers(&assigned, t0 + Duration::from_secs(5)));
        // A drained partition of a busy region holds the buffer back again, for the short limit.
        assert_eq!(al.take(&assigned, 1, t0 + Duration::from_secs(5)).len(), 1);
        let t1 = t0 + Duration::from_secs(5);
        assert!(!al.covers(&assigned, t1 + Duration::from_millis(499)));
        assert!(al.covers(&assigned, t1 + Duration::from_millis(500)));
    }

    #[test]
    fn groups_are_independent_and_batches_bounded() {
        let assigned = BTreeSet::from([tp("a", 0), tp("a", 1)]);
        let mut al = Aligner::new(Duration::ZERO, Duration::ZERO);
        for i in 0..5 {
            al.push(tp("a", 0), msg("a", 0, i, i));
            al.push(tp("a", 1), msg("a", 1, i, i));
        }
        let now = Instant::now();
        assert_eq!(al.take(&assigned, 3, now).len(), 3);
        assert_eq!(al.len(), 7);
        al.drop_partitions([&tp("a", 1)]);
        assert_eq!(al.len(), 2);
    }

    #[test]
    fn a_partition_without_any_record_yet_gets_the_longer_limit() {
        let assigned = BTreeSet::from([tp("a", 0), tp("b", 0)]);
        let mut al = Aligner::new(Duration::from_millis(500), Duration::from_secs(5));
        let t0 = Instant::now();
        al.push(tp("a", 0), msg("a", 0, 0, 10));
        assert!(al.take(&assigned, 100, t0).is_empty());
        // b has delivered nothing since its assignment: past the idle limit, a still waits...
        assert!(
            al.take(&assigned, 100, t0 + Duration::from_secs(2))
                .is_empty()
        );
        // ...until the longer limit.
        assert_eq!(
            al.take(&assigned, 100, t0 + Duration::from_secs(5)).len(),
            1
        );
        // Once b has delivered (and drained), the short idle limit applies to it.
        al.push(tp("b", 0), msg("b", 0, 0, 20));
        al.push(tp("a", 0), msg("a", 0, 1, 30));
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(order(&al.take(&assigned, 100, t1)), [("b".into(), 20)]);
        let short = t1 + Duration::from_millis(499);
        assert!(al.take(&assigned, 100, short).is_empty());
        let t1 = t1 + Duration::from_millis(500);
        assert_eq!(order(&al.take(&assigned, 100, t1)), [("a".into(), 30)]);
        // A rewind forgets what b delivered: the longer limit applies again.
        al.drop_partitions([&tp("b", 0)]);
        al.push(tp("a", 0), msg("a", 0, 3, 50));
        let t2 = t1 + Duration::from_secs(1);
        assert!(al.take(&assigned, 100, t2).is_empty());
        assert!(
            al.take(&assigned, 100, t2 + Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(
            al.take(&assigned, 100, t2 + Duration::from_secs(5)).len(),
            1
        );
    }
}
