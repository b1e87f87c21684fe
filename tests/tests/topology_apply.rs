//! `topology apply` and `diff` against the real broker and registry, on a namespaced copy of
//! the project's topology so the real topics are never touched.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, NewPartitions, ResourceSpecifier};
use surgeflow_kafka::admin::{self, Change, ClusterState};
use surgeflow_schema::AvroRecord;
use surgeflow_testkit::{clients, namespaced_topology, registry, unique_name};
use surgeflow_topology::PayloadFormat;

#[tokio::test]
async fn apply_creates_everything_once_then_diff_reports_drift() {
    let prefix = unique_name("apply");
    let topology = namespaced_topology(&prefix);
    let admin = clients().admin().unwrap();
    let registry = registry();

    // Empty cluster: every topic to create, every Avro subject to register and configure.
    let before = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    let changes = admin::plan(&topology, &before).unwrap();
    let creates = changes
        .iter()
        .filter(|c| matches!(c, Change::CreateTopic { .. }))
        .count();
    let avro_topics = topology
        .topics
        .values()
        .filter(|t| matches!(t.value, PayloadFormat::Avro { .. }))
        .count();
    let registrations = changes
        .iter()
        .filter(|c| matches!(c, Change::RegisterSchema { .. }))
        .count();
    assert_eq!(creates, topology.topics.len());
    assert_eq!(registrations, avro_topics);
    admin::apply(&topology, &changes, &admin, &registry)
        .await
        .unwrap();

    // The cluster now has what the file declares.
    let after = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    for (name, spec) in &topology.topics {
        let got = after
            .topics
            .get(name)
            .unwrap_or_else(|| panic!("{name} was not created"));
        assert_eq!(got.partitions, spec.partitions, "{name}");
        assert_eq!(got.replication, spec.replication, "{name}");
        assert_eq!(got.configs, admin::declared_configs(spec), "{name}");
        if let PayloadFormat::Avro { .. } = spec.value {
            let subject = after.subjects.get(&format!("{name}-value")).unwrap();
            assert!(
                subject.latest_canonical.is_some(),
                "{name}: schema not registered"
            );
            assert_eq!(
                subject.compatibility.as_deref(),
                Some("BACKWARD_TRANSITIVE")
            );
        }
    }

    // Idempotent: a second plan is empty.
    let again = admin::plan(&topology, &after).unwrap();
    assert!(again.is_empty(), "second apply would change: {again:#?}");

    // Drift made behind the topology's back shows up in the diff.
    let geo_driver = format!("{prefix}.geo.driver");
    let surge = format!("{prefix}.surge.multiplier");
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&geo_driver))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "1000");
    admin
        .alter_configs([&alter], &options)
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    let declared = topology.topics[&surge].partitions as usize;
    admin
        .create_partitions([&NewPartitions::new(&surge, declared + 2)], &options)
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });

    let drifted = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    let diff = admin::plan(&topology, &drifted).unwrap();
    let text: Vec<String> = diff.iter().map(ToString::to_string).collect();
    assert!(
        diff.iter().any(|c| matches!(c, Change::AlterConfigs { topic, to, .. } if topic == &geo_driver && to.get("retention.ms") == Some(&"3600000".to_string()))),
        "{text:#?}"
    );
    assert!(
        diff.iter().any(|c| c.is_manual()
            && c.to_string().contains(&surge)
            && c.to_string().contains("cannot remove partitions")),
        "{text:#?}"
    );
    assert_eq!(diff.len(), 2, "{text:#?}");

    // Apply repairs what it can; the partition drift stays, reported as needing an operator.
    admin::apply(&topology, &diff, &admin, &registry)
        .await
        .unwrap();
    let repaired = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    let left = admin::plan(&topology, &repaired).unwrap();
    assert!(left.iter().all(Change::is_manual), "{left:#?}");
    assert_eq!(left.len(), 1);
    let configs: BTreeMap<String, String> = repaired.topics[&geo_driver].configs.clone();
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
}

/// A one-topic topology in `dir` whose value schema is `schema`, connected to the test cluster.
fn one_topic_topology(
    dir: &std::path::Path,
    topic: &str,
    schema: &serde_json::Value,
) -> surgeflow_topology::Topology {
    std::fs::write(dir.join("value.avsc"), schema.to_string()).unwrap();
    let cluster = surgeflow_testkit::cluster();
    let yaml = format!(
        "version: 1\n\
         connection:\n  kafka: {{bootstrap_servers: \"{}\"}}\n  registry: {{url: \"{}\"}}\n\
         geo: {{cell_precision: 6, region_precision: 4, halo_m: 2500}}\n\
         topics:\n  {topic}: {{partitions: 1, replication: 1, cleanup_policy: delete, key: string, value: value.avsc}}\n\
         operators: {{}}\n",
        cluster.bootstrap_servers, cluster.registry_url
    );
    surgeflow_topology::Topology::from_yaml_str(&yaml, dir, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_changed_schema_file_is_registered_as_a_new_version() {
    let topic = unique_name("evolve");
    let dir = std::env::temp_dir().join(unique_name("surgeflow-evolve"));
    std::fs::create_dir_all(&dir).unwrap();
    let admin = clients().admin().unwrap();
    let registry = registry();
    let v1: serde_json::Value =
        serde_json::from_str(surgeflow_schema::LocationUpdate::SCHEMA_TEXT).unwrap();
    let topology = one_topic_topology(&dir, &topic, &v1);
    let state = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    admin::apply(
        &topology,
        &admin::plan(&topology, &state).unwrap(),
        &admin,
        &registry,
    )
    .await
    .unwrap();

    // v2 adds an optional field with a default: accepted under BACKWARD_TRANSITIVE.
    let mut v2 = v1.clone();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
        {"name": "battery_pct", "type": ["null", "int"], "default": null, "doc": "Battery level."}
    ));
    let topology = one_topic_topology(&dir, &topic, &v2);
    let state = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    let changes = admin::plan(&topology, &state).unwrap();
    assert!(
        matches!(
            changes.as_slice(),
            [Change::RegisterSchema {
                first_version: false,
                ..
            }]
        ),
        "{changes:#?}"
    );
    admin::apply(&topology, &changes, &admin, &registry)
        .await
        .unwrap();
    let subject = format!("{topic}-value");
    let (_, version, _) = registry.latest(&subject).await.unwrap().unwrap();
    assert_eq!(version, 2);

    // v3 adds a required field without a default: the registry refuses it, and apply says so.
    let mut v3 = v2.clone();
    v3["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "vehicle_id", "type": "string", "doc": "Vehicle."}));
    let topology = one_topic_topology(&dir, &topic, &v3);
    let state = ClusterState::read(&topology, &admin, &registry)
        .await
        .unwrap();
    let changes = admin::plan(&topology, &state).unwrap();
    let err = admin::apply(&topology, &changes, &admin, &registry)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            admin::AdminError::Registry(surgeflow_kafka::RegistryError::Rejected { .. })
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
