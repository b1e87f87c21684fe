//! The stream operators: which topics each reads and writes, and how it runs.

use serde::Deserialize;

use crate::params::{LocationRouterParams, MatcherParams, SurgePricerParams, TripRouterParams};

/// Name of the operator that routes driver pings to regions.
pub const LOCATION_ROUTER: &str = "location-router";
/// Name of the operator that routes trip events to regions.
pub const TRIP_ROUTER: &str = "trip-router";
/// Name of the operator that computes surge multipliers.
pub const SURGE_PRICER: &str = "surge-pricer";
/// Name of the operator that matches drivers to requests.
pub const MATCHER: &str = "matcher";

/// The operators of the pipeline, each optional so a partial topology (e.g. for a test) is
/// valid. The set of operators is fixed by the code: an unknown name is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    /// Validates driver pings and routes them to their region topic. Default: absent.
    #[serde(rename = "location-router")]
    pub location_router: Option<OperatorSpec<LocationRouterParams>>,
    /// Validates trip lifecycle events and routes them to their region topic. Default: absent.
    #[serde(rename = "trip-router")]
    pub trip_router: Option<OperatorSpec<TripRouterParams>>,
    /// Computes per-cell surge multipliers from regional supply and demand. Default: absent.
    #[serde(rename = "surge-pricer")]
    pub surge_pricer: Option<OperatorSpec<SurgePricerParams>>,
    /// Proposes drivers for trip requests. Default: absent.
    pub matcher: Option<OperatorSpec<MatcherParams>>,
}

impl Operators {
    /// The declared operators, in pipeline order, as their common settings.
    pub fn iter(&self) -> impl Iterator<Item = OperatorCommon<'_>> {
        [
            self.location_router
                .as_ref()
                .map(|s| s.common(LOCATION_ROUTER)),
            self.trip_router.as_ref().map(|s| s.common(TRIP_ROUTER)),
            self.surge_pricer.as_ref().map(|s| s.common(SURGE_PRICER)),
            self.matcher.as_ref().map(|s| s.common(MATCHER)),
        ]
        .into_iter()
        .flatten()
    }

    /// The common settings of the operator called `name`, if it is declared.
    pub fn get(&self, name: &str) -> Option<OperatorCommon<'_>> {
        self.iter().find(|op| op.name == name)
    }
}

/// How one operator runs. `P` is its own tuning block.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "P: Deserialize<'de> + Default")
)]
pub struct OperatorSpec<P> {
    /// Topics consumed, each declared under `topics`. Required, non-empty.
    pub inputs: Vec<String>,
    /// Topics read whole by every instance as lookup tables (like a Kafka Streams
    /// `GlobalKTable`): each instance reads all of their partitions from the beginning with a
    /// consumer of its own and never commits, instead of sharing them through the group. For
    /// compacted reference data whose partitioning differs from the inputs' (`driver.profile`
    /// and `surge.multiplier` have 6 partitions, the `geo.*` inputs 12), which the range
    /// assignor would otherwise split between instances. Each is declared under `topics` with
    /// an Avro value and is not also an input. Default: none.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Topics produced, each declared under `topics` and not `value: raw`. Required, non-empty.
    pub outputs: Vec<String>,
    /// Dead-letter topic receiving the original bytes of records that cannot be processed;
    /// declared under `topics` with `value: raw`. Required.
    pub dlq: String,
    /// Number of instances to run; they share the input partitions. At least 1, default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u16,
    /// Processing guarantee. Default `exactly_once`.
    #[serde(default)]
    pub delivery: Delivery,
    /// Port of the HTTP endpoint serving health and metrics; unique across operators so they
    /// can share a host. Required, non-zero.
    pub http_port: u16,
    /// Kafka consumer group. Default `surgeflow.<operator name>`; see
    /// [`OperatorCommon::group_id`].
    pub group_id: Option<String>,
    /// Prefix of the transactional ids of `exactly_once` producers (one per instance and
    /// partition set). Default `surgeflow.<operator name>`.
    pub transactional_id_prefix: Option<String>,
    /// How often consumed offsets are committed (with the transaction under `exactly_once`),
    /// milliseconds. > 0, default 100.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Largest number of records processed between two commits. At least 1, default 1000.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Operator-specific tuning. Default: every field at its own default.
    #[serde(default)]
    pub params: P,
}

fn default_replicas() -> u16 {
    1
}

fn default_commit_interval_ms() -> u64 {
    100
}

fn default_max_batch() -> usize {
    1000
}

impl<P> OperatorSpec<P> {
    /// The settings every operator has, with defaults that depend on the name filled in.
    pub fn common(&self, name: &'static str) -> OperatorCommon<'_> {
        OperatorCommon {
            name,
            inputs: &self.inputs,
            tables: &self.tables,
            outputs: &self.outputs,
            dlq: &self.dlq,
            replicas: self.replicas,
            delivery: self.delivery,
            http_port: self.http_port,
            group_id: self
                .group_id
                .clone()
                .unwrap_or_else(|| format!("surgeflow.{name}")),
            transactional_id_prefix: self
                .transactional_id_prefix
                .clone()
                .unwrap_or_else(|| format!("surgeflow.{name}")),
            commit_interval_ms: self.commit_interval_ms,
            max_batch: self.max_batch,
        }
    }
}

/// Processing guarantee of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Outputs and input offsets are committed in one Kafka transaction.
    #[default]
    ExactlyOnce,
    /// Offsets are committed after outputs are acknowledged; a crash may duplicate outputs.
    AtLeastOnce,
}

/// The settings shared by every operator, independent of its tuning type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCommon<'a> {
    /// Operator name as written under `operators`, e.g. `surge-pricer`.
    pub name: &'static str,
    /// Topics consumed.
    pub inputs: &'a [String],
    /// Topics every instance reads whole as lookup tables.
    pub tables: &'a [String],
    /// Topics produced.
    pub outputs: &'a [String],
    /// Dead-letter topic.
    pub dlq: &'a str,
    /// Number of instances.
    pub replicas: u16,
    /// Processing guarantee.
    pub delivery: Delivery,
    /// Health and metrics HTTP port.
    pub http_port: u16,
    /// Kafka consumer group, defaulted to `surgeflow.<name>`.
    pub group_id: String,
    /// Transactional id prefix, defaulted to `surgeflow.<name>`.
    pub transactional_id_prefix: String,
    /// Commit interval, milliseconds.
    pub commit_interval_ms: u64,
    /// Largest number of records between commits.
    pub max_batch: usize,
}

impl OperatorCommon<'_> {
    /// Path of this operator's block in the topology file, e.g. `operators.matcher`.
    pub fn path(&self) -> String {
        format!("operators.{}", self.name)
    }
}
