//! The consumer's context: rebalance callbacks and librdkafka statistics.
//!
//! Callbacks run inside `poll`, on the processing thread. They record what happened, and the
//! processing loop acts on it right after `poll` returns, before it touches any record of a
//! newly assigned partition. One thing cannot wait for that: the loop processes records as they
//! arrive, so a revocation can come while the batch holds processed records whose offsets are
//! not committed. The partition's new owner reads the committed offset as soon as the
//! revocation callback returns, so the callback commits the batch first
//! ([`OpenBatch::close_for_revocation`]) and records how that went. Records fetched but not yet
//! processed are dropped; the new owner starts from them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::batch::{Closed, OpenBatch};
use crate::operator::TopicPartition;

/// A change seen by a callback.
#[derive(Debug)]
pub enum AssignmentChange {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
    /// A revocation closed the batch in progress before taking its partitions.
    BatchClosed(Closed),
}

/// Records rebalances and exports consumer lag from librdkafka's statistics.
pub struct RuntimeContext {
    operator: &'static str,
    changes: Mutex<Vec<AssignmentChange>>,
    /// The partitions assigned now, with the offset last committed for each when known: lag
    /// is exported for these only, since other instances report the others.
    assigned: Mutex<BTreeMap<TopicPartition, Option<i64>>>,
    /// The processing loop's batch, which a revocation commits before it returns.
    batch: Arc<Mutex<OpenBatch>>,
}

impl RuntimeContext {
    pub fn new(operator: &'static str, batch: Arc<Mutex<OpenBatch>>) -> Self {
        RuntimeContext {
            operator,
            changes: Mutex::new(Vec::new()),
            assigned: Mutex::new(BTreeMap::new()),
            batch,
        }
    }

    /// Records the offsets committed for assigned partitions (at assignment, and by every
    /// commit), which consumer lag is measured from. A transaction commits offsets through the
    /// producer, which librdkafka's consumer statistics never see.
    pub fn record_committed(&self, offsets: &TopicPartitionList) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        for e in offsets.elements() {
            let tp = TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            };
            if let (Offset::Offset(o), Some(committed)) = (e.offset(), assigned.get_mut(&tp)) {
                *committed = Some(o);
            }
        }
    }

    fn lag_gauge(&self, topic: &str, partition: i32) -> metrics::Gauge {
        metrics::gauge!(
            "surgeflow_consumer_lag_records",
            "operator" => self.operator,
            "topic" => topic.to_string(),
            "partition" => partition.to_string()
        )
    }

    /// Takes the changes recorded since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<AssignmentChange> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn partitions(list: &rdkafka::TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

impl ClientContext for RuntimeContext {
    /// Consumer lag per assigned partition, exported as a gauge: the partition's end as
    /// librdkafka last fetched it (the last stable offset, which is what a `read_committed`
    /// consumer can reach, else the high watermark) minus the offset committed, as recorded by
    /// [`RuntimeContext::record_committed`] (else as librdkafka knows it). A partition with no
    /// committed offset yet has no lag to report. A revoked partition's gauge is set to 0 when
    /// it goes (see `pre_rebalance`), so that sums over instances count each partition once.
    fn stats(&self, statistics: Statistics) {
        let assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        for (tp, committed) in assigned.iter() {
            let Some(p) = statistics
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(&tp.partition))
            else {
                continue;
            };
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            let committed = committed.or((p.committed_offset >= 0).then_some(p.committed_offset));
            if let Some(committed) = committed
                && end >= 0
            {
                self.lag_gauge(&tp.topic, tp.partition)
                    .set(end.saturating_sub(committed).max(0) as f64);
            }
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let closed = self
                .batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .close_for_revocation(consumer);
            let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(closed) = closed {
                changes.push(AssignmentChange::BatchClosed(closed));
            }
            drop(changes);
            let revoked = partitions(list);
            let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            for tp in &revoked {
                assigned.remove(tp);
                self.lag_gauge(&tp.topic, tp.partition).set(0.0);
            }
            drop(assigned);
            let change = AssignmentChange::Revoked(revoked);
            self.changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(change);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let parts = partitions(list);
                let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
                for tp in &parts {
                    assigned.entry(tp.clone()).or_insert(None);
                }
                drop(assigned);
                let change = AssignmentChange::Assigned(parts);
                self.changes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(change);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
