//! Topic declarations: partitioning, retention and the format of keys and values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// One Kafka topic as `apply` creates it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Number of partitions, at least 1; the unit of consumer parallelism. Required.
    pub partitions: i32,
    /// Replication factor, at least 1 (1 only in development). Required.
    pub replication: i32,
    /// Kafka `retention.ms`: how long records are kept, milliseconds; `-1` keeps them forever.
    /// Default: none (the broker's default).
    pub retention_ms: Option<i64>,
    /// Kafka `cleanup.policy`. Required.
    pub cleanup_policy: CleanupPolicy,
    /// Format of record keys. Required.
    pub key: PayloadFormat,
    /// Format of record values. Required.
    pub value: PayloadFormat,
    /// Other Kafka topic configs passed through unchanged (e.g. `min.compaction.lag.ms`), values
    /// as strings. `cleanup.policy` and `retention.ms` have dedicated settings and are rejected
    /// here. Default: empty.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// The registry subject of `topic`'s keys (Confluent TopicNameStrategy): `<topic>-key`.
    pub fn key_subject(topic: &str) -> String {
        format!("{topic}-key")
    }

    /// The registry subject of `topic`'s values (Confluent TopicNameStrategy): `<topic>-value`.
    pub fn value_subject(topic: &str) -> String {
        format!("{topic}-value")
    }
}

/// Kafka `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum CleanupPolicy {
    /// Delete segments older than `retention_ms`.
    #[serde(rename = "delete")]
    Delete,
    /// Keep the latest record per key; needs keys.
    #[serde(rename = "compact")]
    Compact,
    /// Compact, and also delete segments older than `retention_ms`.
    #[serde(rename = "compact,delete", alias = "delete,compact")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The Kafka `cleanup.policy` value.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Whether the log is compacted by key.
    pub fn is_compacted(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// How a record key or value is encoded. Written in YAML as `string`, `raw`, or the path of an
/// `.avsc` file relative to the topology file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadFormat {
    /// UTF-8 text.
    String,
    /// Opaque bytes, passed through untouched (dead-letter topics).
    Raw,
    /// Confluent-framed Avro with the schema of this file.
    Avro(AvroSchema),
}

impl PayloadFormat {
    /// The schema, if this is Avro.
    pub fn avro(&self) -> Option<&AvroSchema> {
        match self {
            PayloadFormat::Avro(schema) => Some(schema),
            PayloadFormat::String | PayloadFormat::Raw => None,
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadFormat::String => f.write_str("string"),
            PayloadFormat::Raw => f.write_str("raw"),
            PayloadFormat::Avro(schema) => write!(f, "{}", schema.declared_path().display()),
        }
    }
}

/// An Avro schema file referenced by a topic. After a successful load the file exists, parses as
/// Avro, and its text is held here ready to be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroSchema {
    declared: PathBuf,
    resolved: PathBuf,
    text: String,
}

impl AvroSchema {
    fn declared(path: &str) -> Self {
        Self {
            declared: PathBuf::from(path),
            resolved: PathBuf::new(),
            text: String::new(),
        }
    }

    /// Reads and parses the file, relative to `base_dir`. On failure the message names the
    /// resolved path.
    pub(crate) fn resolve(&mut self, base_dir: &Path) -> Result<(), String> {
        self.resolved = base_dir.join(&self.declared);
        let text = std::fs::read_to_string(&self.resolved).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("schema file {} does not exist", self.resolved.display())
            } else {
                format!("cannot read schema file {}: {e}", self.resolved.display())
            }
        })?;
        apache_avro::Schema::parse_str(&text).map_err(|e| {
            format!(
                "schema file {} is not a valid Avro schema: {e}",
                self.resolved.display()
            )
        })?;
        self.text = text;
        Ok(())
    }

    /// The path as written in the topology file.
    pub fn declared_path(&self) -> &Path {
        &self.declared
    }

    /// The path resolved against the topology file's directory.
    pub fn path(&self) -> &Path {
        &self.resolved
    }

    /// The schema JSON exactly as in the file, for registering.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for PayloadFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(PayloadFormatVisitor)
    }
}

struct PayloadFormatVisitor;

impl Visitor<'_> for PayloadFormatVisitor {
    type Value = PayloadFormat;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`string`, `raw` or the path of an `.avsc` file")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PayloadFormat, E> {
        match v {
            "string" => Ok(PayloadFormat::String),
            "raw" => Ok(PayloadFormat::Raw),
            path if path.ends_with(".avsc") => Ok(PayloadFormat::Avro(AvroSchema::declared(path))),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }
}
