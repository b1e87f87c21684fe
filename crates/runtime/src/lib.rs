//! The operator runtime: what every surgeflow operator binary runs on.
//!
//! An operator implements the small [`Operator`] trait (process a record, react to the clock,
//! to assignments and revocations); the runtime owns the rest:
//!
//! - [`worker`]: the batched consume-process-produce loop on `BaseConsumer`/`BaseProducer`,
//!   exactly once through Kafka transactions by default (at least once as a switch), DLQ
//!   records with provenance headers inside the same transaction, rebalance handling with the
//!   cooperative-sticky assignor, state restore by replaying recent input, and librdkafka's
//!   error classes (retry, abort and rewind, rebuild the producer);
//! - [`batch`]: the producer and the batch in progress, committed at its close or, first, by a
//!   revocation;
//! - [`align`]: timestamp-ordered processing of co-partitioned inputs for stateful operators;
//! - [`catch_up`]: reading topics to their end outside the group (tables, outputs read back);
//! - [`rebalance`]: the consumer context that records rebalances and exports consumer lag;
//! - [`replay`]: reading recent input back in timestamp order to rebuild state;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the operator's own routes;
//! - [`telemetry`]: histogram buckets, and gauge tables whose series come and go with the data;
//! - [`app`]: the shared `main`: arguments, configuration, signals, exit codes.

pub mod align;
pub mod app;
pub mod batch;
pub mod catch_up;
pub mod http;
pub mod operator;
pub mod rebalance;
pub mod replay;
pub mod telemetry;
pub mod worker;

pub use operator::{
    Context, Operator, OperatorFactory, Output, OutputTopic, Record, RecordError, TopicPartition,
    TypedOutput,
};
