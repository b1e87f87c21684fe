//! Making a cluster match `topology.yaml`: `surgeflow topology diff` and `apply`.
//!
//! The work is split the usual way: [`ClusterState::read`] asks the broker and the registry
//! what exists, [`plan`] (pure, unit-tested) compares that with the topology and lists the
//! [`Change`]s, and [`apply`] carries them out. Applying the plan of an already-applied
//! topology is a no-op, so `apply` is idempotent.
//!
//! What is deliberately not automated: shrinking partitions (Kafka cannot) and changing the
//! replication factor (needs a reassignment plan an operator should review). Both are reported
//! as drift that needs a person, and never silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use apache_avro::Schema;
use rdkafka::admin::AdminClient;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use surgeflow_topology::{Compatibility, TopicSpec, Topology};

use crate::registry::{Registry, RegistryError};

/// Why the cluster could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka: {what}: {code}")]
    Broker {
        what: String,
        code: RDKafkaErrorCode,
    },
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Schema(String),
}

/// What the broker has for one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingTopic {
    pub partitions: i32,
    pub replication: i32,
    /// The topic-level configs that are set on the topic (not broker defaults).
    pub configs: BTreeMap<String, String>,
}

/// What the registry has for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingSubject {
    /// Canonical form of the latest version, if any version exists.
    pub latest_canonical: Option<String>,
    /// Compatibility level set on the subject itself.
    pub compatibility: Option<String>,
}

/// The parts of a cluster that a topology describes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub topics: BTreeMap<String, ExistingTopic>,
    pub subjects: BTreeMap<String, ExistingSubject>,
}

/// One difference between the topology and the cluster, and what `apply` does about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CreateTopic {
        topic: String,
        partitions: i32,
        replication: i32,
        configs: BTreeMap<String, String>,
    },
    AddPartitions {
        topic: String,
        from: i32,
        to: i32,
    },
    /// Sets the topic's declared configs (the topology owns every topic-level config).
    AlterConfigs {
        topic: String,
        from: BTreeMap<String, String>,
        to: BTreeMap<String, String>,
    },
    RegisterSchema {
        subject: String,
        file: String,
        first_version: bool,
    },
    SetCompatibility {
        subject: String,
        from: Option<String>,
        to: Compatibility,
    },
    /// Drift `apply` will not fix by itself; a person has to act.
    NeedsOperator {
        topic: String,
        problem: String,
    },
}

impl Change {
    /// True for changes `apply` does not carry out.
    pub fn is_manual(&self) -> bool {
        matches!(self, Change::NeedsOperator { .. })
    }
}

fn show_configs(configs: &BTreeMap<String, String>) -> String {
    configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateTopic {
                topic,
                partitions,
                replication,
                configs,
            } => write!(
                f,
                "+ topic {topic}: {partitions} partitions, replication {replication}, {}",
                show_configs(configs)
            ),
            Change::AddPartitions { topic, from, to } => {
                write!(f, "~ topic {topic}: partitions {from} -> {to}")
            }
            Change::AlterConfigs { topic, from, to } => write!(
                f,
                "~ topic {topic}: configs [{}] -> [{}]",
                show_configs(from),
                show_configs(to)
            ),
            Change::RegisterSchema {
                subject,
                file,
                first_version,
            } => {
                let what = if *first_version {
                    "new subject"
                } else {
                    "new version"
                };
                write!(f, "+ schema {subject}: {what} from {file}")
            }
            Change::SetCompatibility { subject, from, to } => write!(
                f,
                "~ compatibility {subject}: {} -> {}",
                from.as_deref().unwrap_or("(registry default)"),
                to.as_str()
            ),
            Change::NeedsOperator { topic, problem } => write!(f, "! topic {topic}: {problem}"),
        }
    }
}

/// The topic-level configs a topic spec declares.
pub fn declared_configs(spec: &TopicSpec) -> BTreeMap<String, String> {
    let mut configs = spec.configs.clone();
    configs.insert(
        "cleanup.policy".into(),
        spec.cleanup_policy.as_kafka().into(),
    );
    if let Some(retention) = spec.retention_ms {
        configs.insert("retention.ms".into(), retention.to_string());
    }
    configs
}

/// The Avro schemas a topology registers: subject → (schema file, schema text).
fn declared_subjects(topology: &Topology) -> BTreeMap<String, (String, String)> {
    topology
        .avro_subjects()
        .map(|(subject, schema)| {
            (
                subject,
                (
                    schema.declared_path().display().to_string(),
                    schema.text().to_string(),
                ),
            )
        })
        .collect()
}

/// Canonical form of a schema text, so formatting differences are not drift.
///
/// # Errors
/// When the text does not parse (the topology check rules this out for our own files).
pub fn canonical(text: &str) -> Result<String, AdminError> {
    Schema::parse_str(text)
        .map(|s| s.canonical_form())
        .map_err(|e| AdminError::Schema(e.to_string()))
}

/// Lists what has to change for the cluster to match the topology. Pure.
///
/// # Errors
/// Only when a declared schema does not parse.
pub fn plan(topology: &Topology, cluster: &ClusterState) -> Result<Vec<Change>, AdminError> {
    let mut changes = Vec::new();
    for (name, spec) in &topology.topics {
        let declared = declared_configs(spec);
        match cluster.topics.get(name) {
            None => changes.push(Change::CreateTopic {
                topic: name.clone(),
                partitions: spec.partitions,
                replication: spec.replication,
                configs: declared,
            }),
            Some(existing) => {
                if spec.partitions > existing.partitions {
                    changes.push(Change::AddPartitions {
                        topic: name.clone(),
                        from: existing.partitions,
                        to: spec.partitions,
                    });
                } else if spec.partitions < existing.partitions {
                    changes.push(Change::NeedsOperator {
                        topic: name.clone(),
                        problem: format!(
                            "has {} partitions, {} declared: Kafka cannot remove partitions",
                            existing.partitions, spec.partitions
                        ),
                    });
                }
                if spec.replication != existing.replication {
                    changes.push(Change::NeedsOperator {
                        topic: name.clone(),
                        problem: format!(
                            "replication {} in the cluster, {} declared: needs a partition reassignment",
                            existing.replication, spec.replication
                        ),
                    });
                }
                if existing.configs != declared {
                    changes.push(Change::AlterConfigs {
                        topic: name.clone(),
                        from: existing.configs.clone(),
                        to: declared,
                    });
                }
            }
        }
    }
    let level = topology.connection.registry.compatibility;
    for (subject, (file, text)) in declared_subjects(topology) {
        let existing = cluster.subjects.get(&subject);
        let compatibility = existing.and_then(|s| s.compatibility.clone());
        if compatibility.as_deref() != Some(level.as_str()) {
            changes.push(Change::SetCompatibility {
                subject: subject.clone(),
                from: compatibility,
                to: level,
            });
        }
        let latest = existing.and_then(|s| s.latest_canonical.as_deref());
        if latest != Some(canonical(&text)?.as_str()) {
            changes.push(Change::RegisterSchema {
                subject,
                file,
                first_version: latest.is_none(),
            });
        }
    }
    Ok(changes)
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

impl ClusterState {
    /// Reads the topics and subjects the topology declares from the broker and the registry.
    ///
    /// # Errors
    /// [`AdminError`] when either cannot be asked.
    pub async fn read(
        topology: &Topology,
        admin: &AdminClient<DefaultClientContext>,
        registry: &Registry,
    ) -> Result<ClusterState, AdminError> {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(15))?;
        let mut topics = BTreeMap::new();
        let present: BTreeSet<String> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && topology.topics.contains_key(t.name()))
            .map(|t| {
                let replication = t
                    .partitions()
                    .first()
                    .map_or(0, |p| p.replicas().len() as i32);
                topics.insert(
                    t.name().to_string(),
                    ExistingTopic {
                        partitions: t.partitions().len() as i32,
                        replication,
                        configs: BTreeMap::new(),
                    },
                );
                t.name().to_string()
            })
            .collect();
        if !present.is_empty() {
            let specifiers: Vec<ResourceSpecifier> = present
                .iter()
                .map(|t| ResourceSpecifier::Topic(t))
                .collect();
            for result in admin.describe_configs(&specifiers, &options()).await? {
                let resource = result.map_err(|code| AdminError::Broker {
                    what: "describe configs".into(),
                    code,
                })?;
                let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = &resource.specifier
                else {
                    continue;
                };
                if let Some(topic) = topics.get_mut(name) {
                    topic.configs = resource
                        .entries
                        .iter()
                        .filter(|e| matches!(e.source, rdkafka::admin::ConfigSource::DynamicTopic))
                        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                        .collect();
                }
            }
        }
        let mut subjects = BTreeMap::new();
        for subject in declared_subjects(topology).into_keys() {
            let latest_canonical = match registry.latest(&subject).await? {
                Some((_, _, text)) => Some(canonical(&text)?),
                None => None,
            };
            let compatibility = registry.compatibility(&subject).await?;
            subjects.insert(
                subject,
                ExistingSubject {
                    latest_canonical,
                    compatibility,
                },
            );
        }
        Ok(ClusterState { topics, subjects })
    }
}

/// Carries out the changes (skipping the manual ones), in an order that works on an empty
/// cluster: topics, then partitions and configs, then compatibility rules before schemas so
/// the first registration is already checked.
///
/// # Errors
/// The first [`AdminError`]; changes before it stay applied, and re-running `apply` continues.
pub async fn apply(
    topology: &Topology,
    changes: &[Change],
    admin: &AdminClient<DefaultClientContext>,
    registry: &Registry,
) -> Result<(), AdminError> {
    let subjects = declared_subjects(topology);
    let broker = |what: String| {
        move |code| AdminError::Broker {
            what: what.clone(),
            code,
        }
    };
    for change in changes {
        match change {
            Change::CreateTopic {
                topic,
                partitions,
                replication,
                configs,
            } => {
                let mut new =
                    NewTopic::new(topic, *partitions, TopicReplication::Fixed(*replication));
                for (k, v) in configs {
                    new = new.set(k, v);
                }
                for result in admin.create_topics([&new], &options()).await? {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) => return Err(broker(format!("create {topic}"))(code)),
                    }
                }
            }
            Change::AddPartitions { topic, to, .. } => {
                let parts = NewPartitions::new(topic, *to as usize);
                for result in admin.create_partitions([&parts], &options()).await? {
                    result
                        .map_err(|(_, code)| broker(format!("add partitions to {topic}"))(code))?;
                }
            }
            Change::AlterConfigs { topic, to, .. } => {
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
                for (k, v) in to {
                    alter = alter.set(k, v);
                }
                for result in admin.alter_configs([&alter], &options()).await? {
                    result
                        .map_err(|(_, code)| broker(format!("alter configs of {topic}"))(code))?;
                }
            }
            Change::SetCompatibility { subject, to, .. } => {
                registry.set_compatibility(subject, *to).await?;
            }
            Change::RegisterSchema { subject, .. } => {
                if let Some((_, text)) = subjects.get(subject) {
                    registry.register(subject, text).await?;
                }
            }
            Change::NeedsOperator { .. } => {}
        }
    }
    Ok(())
}
