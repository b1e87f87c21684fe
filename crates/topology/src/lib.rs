//! `topology.yaml`, loaded and checked.
//!
//! The topology file is the single source of truth for the pipeline: which topics exist and how
//! they are partitioned and retained, which Avro schema each carries, and which operator reads and
//! writes which topic with what tuning. The admin tooling creates topics and registers schemas
//! from it, and every operator takes its settings from it, so a mistake here would otherwise
//! surface as a broken pipeline at runtime. This crate therefore refuses anything doubtful up
//! front:
//!
//! - **Strict.** Unknown keys are errors (`deny_unknown_fields` everywhere), values are
//!   typed, and semantic rules (topics referenced by operators exist, dead-letter topics are raw,
//!   windows divide evenly, surge curves are monotonic, ...) are checked after parsing.
//! - **Every error names the setting.** Errors carry the dotted path as written in the file
//!   (`topics.geo.driver.partitions: must be at least 1 (got 0)`), and validation reports all
//!   problems at once rather than the first.
//! - **Environment-aware, safely.** `${VAR}`, `${VAR:-default}` and `$$` are substituted inside
//!   string scalars *after* YAML parsing, so secrets with YAML-special characters cannot change
//!   the document's structure; `SURGEFLOW__PATH__TO__SETTING=value` overrides any single setting.
//!   Secrets are wrapped in [`Secret`] and never printed.
//! - **Pure.** No network and no Kafka: loading only reads the topology file, the `.avsc` files it
//!   references and password files.

mod connection;
mod document;
mod error;
mod interpolate;
mod load;
mod operator;
mod params;
mod secret;
mod topic;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use connection::{
    Compatibility, Connection, KafkaConnection, RegistryConnection, SaslMechanism, SaslSettings,
    SecurityProtocol, TlsSettings,
};
pub use error::{TopologyError, TopologyErrors};
pub use operator::{
    Delivery, LOCATION_ROUTER, MATCHER, OperatorCommon, OperatorSpec, Operators, SURGE_PRICER,
    TRIP_ROUTER,
};
pub use params::{
    CurvePoint, LocationRouterParams, MatchWeights, MatcherParams, SurgePricerParams,
    TripRouterParams,
};
pub use secret::Secret;
pub use topic::{AvroSchema, CleanupPolicy, PayloadFormat, TopicSpec};

/// The whole topology file. Build one with [`Topology::load`] or [`Topology::from_yaml_str`];
/// a value obtained that way has passed every check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Format version of the file; this build reads version 1. Required.
    pub version: u32,
    /// How to reach Kafka and the schema registry. Required.
    pub connection: Connection,
    /// Geohash cells and regions. Required (for `halo_m`).
    pub geo: GeoSettings,
    /// Every topic, by name as created in Kafka. Required.
    pub topics: BTreeMap<String, TopicSpec>,
    /// The stream operators. Default: none.
    #[serde(default)]
    pub operators: Operators,
    /// Directory of the topology file; `.avsc` paths are relative to it. Not in the file.
    #[serde(skip)]
    base_dir: PathBuf,
}

/// How the map is cut into geohash cells and regions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSettings {
    /// Geohash length of a supply/demand cell, 1..=12 (6 is about 1.2 km x 0.6 km). Default 6.
    #[serde(default = "default_cell_precision")]
    pub cell_precision: u8,
    /// Geohash length of a region, the unit of partitioning; 1..=12 and shorter than
    /// `cell_precision` so a region holds whole cells (4 is about 39 km x 20 km). Default 4.
    #[serde(default = "default_region_precision")]
    pub region_precision: u8,
    /// Events within this distance of a neighbouring region are also copied to it, flagged as
    /// halo, metres; finite, > 0 and at least the matcher's `radius_m`. Required.
    pub halo_m: f64,
}

fn default_cell_precision() -> u8 {
    6
}

fn default_region_precision() -> u8 {
    4
}

impl Topology {
    /// The topic called `name`, if declared.
    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.get(name)
    }

    /// Directory of the topology file, against which `.avsc` paths were resolved.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Every Avro schema to register, with its subject (TopicNameStrategy: `<topic>-key` /
    /// `<topic>-value`), in topic order.
    pub fn avro_subjects(&self) -> impl Iterator<Item = (String, &AvroSchema)> {
        self.topics.iter().flat_map(|(name, topic)| {
            let key = topic
                .key
                .avro()
                .map(|schema| (TopicSpec::key_subject(name), schema));
            let value = topic
                .value
                .avro()
                .map(|schema| (TopicSpec::value_subject(name), schema));
            key.into_iter().chain(value)
        })
    }
}
