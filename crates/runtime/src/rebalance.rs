//! The consumer's context: rebalance callbacks and librdkafka statistics.
//!
//! Callbacks run inside `poll`, on the processing thread, and must return quickly, so they
//! only record what happened; the processing loop acts on it right after `poll` returns,
//! before it touches any record of a newly assigned partition. Because the loop commits at the
//! end of every batch and polls only between batches, no transaction is ever open when a
//! partition is revoked: records already fetched from it are simply dropped, and its new owner
//! starts from the last committed offset.

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use crate::operator::TopicPartition;

/// A change of assignment seen by a callback.
#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentChange {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// Records rebalances and exports consumer lag from librdkafka's statistics.
pub struct RuntimeContext {
    operator: &'static str,
    changes: Mutex<Vec<AssignmentChange>>,
}

impl RuntimeContext {
    pub fn new(operator: &'static str) -> Self {
        RuntimeContext {
            operator,
            changes: Mutex::new(Vec::new()),
        }
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
    /// Consumer lag per partition, as librdkafka computes it (high watermark minus committed
    /// offset), exported as a gauge.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (id, p) in &t.partitions {
                if p.partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "surgeflow_consumer_lag_records",
                    "operator" => self.operator,
                    "topic" => topic.clone(),
                    "partition" => id.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let change = AssignmentChange::Revoked(partitions(list));
            self.changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(change);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let change = AssignmentChange::Assigned(partitions(list));
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
