//! Loading the real `topology.yaml` and small fixtures, valid and broken.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use surgeflow_topology::{
    Compatibility, Delivery, LocationRouterParams, MatcherParams, PayloadFormat, SecurityProtocol,
    SurgePricerParams, Topology, TopologyErrors, TripRouterParams,
};

// ---------------------------------------------------------------------------------------------
// The real topology file.

fn real_topology_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology.yaml")
}

fn load_real(env: &[(&str, &str)]) -> Result<Topology, TopologyErrors> {
    let path = real_topology_path();
    let text = std::fs::read_to_string(&path).expect("topology.yaml is readable");
    let base_dir = path.parent().expect("topology.yaml has a directory");
    Topology::from_yaml_str(&text, base_dir, &environment(env))
}

fn environment(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const INPUT_TOPICS: &[&str] = &[
    "location.update",
    "trip.requested",
    "trip.accepted",
    "trip.declined",
    "trip.cancelled",
    "trip.driver_arrived",
    "trip.started",
    "trip.completed",
    "driver.profile",
];

#[test]
fn real_topology_loads_with_documented_defaults() {
    let topology = load_real(&[]).unwrap_or_else(|e| panic!("topology.yaml is invalid:\n{e}"));

    assert_eq!(topology.version, 1);
    let kafka = &topology.connection.kafka;
    assert_eq!(kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(kafka.security_protocol, SecurityProtocol::Plaintext);
    assert!(kafka.sasl.is_none());
    let registry = &topology.connection.registry;
    assert_eq!(registry.url, "http://127.0.0.1:8081/apis/ccompat/v7");
    assert_eq!(registry.compatibility, Compatibility::BackwardTransitive);
    assert_eq!(registry.timeout_ms, 5000);

    assert_eq!(topology.geo.cell_precision, 6);
    assert_eq!(topology.geo.region_precision, 4);
    assert_eq!(topology.geo.halo_m, 2500.0);

    for name in INPUT_TOPICS {
        assert_eq!(topology.topic(name).expect(name).partitions, 6, "{name}");
    }
    assert_eq!(topology.topic("geo.driver").unwrap().partitions, 12);
    assert_eq!(topology.topic("dlq.geo").unwrap().value, PayloadFormat::Raw);
    let surge_topic = topology.topic("surge.multiplier").unwrap();
    assert_eq!(surge_topic.configs["min.compaction.lag.ms"], "60000");
    assert!(topology.topic("no.such.topic").is_none());

    let location = topology.topic("location.update").unwrap();
    let schema = location
        .value
        .avro()
        .expect("location.update values are Avro");
    assert!(schema.path().starts_with(topology.base_dir()));
    assert!(schema.path().ends_with("schemas/location_update.avsc"));
    assert!(schema.text().contains("\"record\""), "{}", schema.text());
    let subjects: Vec<String> = topology.avro_subjects().map(|(s, _)| s).collect();
    assert!(subjects.contains(&"location.update-value".to_owned()));
    assert!(!subjects.iter().any(|s| s.starts_with("dlq.")));

    let surge = topology.operators.surge_pricer.as_ref().unwrap();
    assert_eq!(surge.params.cap, 3.0);
    assert_eq!(surge.replicas, 2);
    assert_eq!(surge.delivery, Delivery::ExactlyOnce);
    assert_eq!(surge.commit_interval_ms, 100);
    assert_eq!(surge.max_batch, 1000);

    let names: Vec<&str> = topology.operators.iter().map(|op| op.name).collect();
    assert_eq!(
        names,
        ["location-router", "trip-router", "surge-pricer", "matcher"]
    );
    let matcher = topology.operators.get("matcher").unwrap();
    assert_eq!(matcher.group_id, "surgeflow.matcher");
    assert_eq!(matcher.transactional_id_prefix, "surgeflow.matcher");
    assert_eq!(matcher.http_port, 9104);
    assert_eq!(matcher.dlq, "dlq.geo");
    assert_eq!(matcher.inputs, ["geo.driver", "geo.trip"]);
    assert_eq!(matcher.tables, ["driver.profile", "surge.multiplier"]);
    let pricer = topology.operators.get("surge-pricer").unwrap();
    assert!(pricer.tables.is_empty(), "tables default to none");
}

/// The serde defaults of the params types are documented as "the value shipped in
/// topology.yaml": keep them in step.
#[test]
fn params_defaults_equal_the_shipped_values() {
    let topology = load_real(&[]).unwrap_or_else(|e| panic!("{e}"));
    let ops = &topology.operators;
    assert_eq!(
        ops.location_router.as_ref().unwrap().params,
        LocationRouterParams::default()
    );
    assert_eq!(
        ops.trip_router.as_ref().unwrap().params,
        TripRouterParams::default()
    );
    assert_eq!(
        ops.surge_pricer.as_ref().unwrap().params,
        SurgePricerParams::default()
    );
    assert_eq!(
        ops.matcher.as_ref().unwrap().params,
        MatcherParams::default()
    );
}

#[test]
fn real_topology_input_partitions_come_from_the_environment() {
    let topology = load_real(&[("SURGEFLOW_INPUT_PARTITIONS", "3")]).unwrap();
    for name in INPUT_TOPICS {
        assert_eq!(topology.topic(name).unwrap().partitions, 3, "{name}");
    }
    assert_eq!(topology.topic("geo.driver").unwrap().partitions, 12);
}

#[test]
fn real_topology_single_topic_override() {
    let topology = load_real(&[("SURGEFLOW__TOPICS__LOCATION_UPDATE__PARTITIONS", "12")]).unwrap();
    assert_eq!(topology.topic("location.update").unwrap().partitions, 12);
    assert_eq!(topology.topic("trip.requested").unwrap().partitions, 6);
}

#[test]
fn real_topology_params_and_connection_overrides() {
    let topology = load_real(&[
        ("SURGEFLOW__OPERATORS__SURGE_PRICER__PARAMS__CAP", "3.5"),
        ("SURGEFLOW__CONNECTION__KAFKA__CLIENT_ID", "surgeflow-test"),
        (
            "SURGEFLOW__CONNECTION__KAFKA__BOOTSTRAP_SERVERS",
            "kafka-1:9093,kafka-2:9093",
        ),
    ])
    .unwrap();
    assert_eq!(topology.operators.surge_pricer.unwrap().params.cap, 3.5);
    let kafka = &topology.connection.kafka;
    assert_eq!(kafka.client_id.as_deref(), Some("surgeflow-test"));
    assert_eq!(kafka.bootstrap_servers, "kafka-1:9093,kafka-2:9093");
}

#[test]
fn real_topology_loads_from_disk() {
    Topology::load(real_topology_path()).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a small valid topology in a temporary directory, broken one way at a time.

const VALID_SCHEMA: &str =
    r#"{"type": "record", "name": "Ping", "fields": [{"name": "id", "type": "string"}]}"#;

const BASE: &str = r#"
version: 1
connection:
  kafka:
    bootstrap_servers: localhost:9092
  registry:
    url: http://localhost:8081
geo:
  halo_m: 2500
topics:
  pings:
    partitions: 3
    replication: 1
    retention_ms: 3600000
    cleanup_policy: delete
    key: string
    value: schemas/ping.avsc
  regional:
    partitions: 3
    replication: 1
    cleanup_policy: delete
    key: string
    value: schemas/ping.avsc
  surge:
    partitions: 3
    replication: 1
    cleanup_policy: compact
    key: string
    value: schemas/ping.avsc
  dlq.pings:
    partitions: 1
    replication: 1
    cleanup_policy: delete
    key: raw
    value: raw
operators:
  location-router:
    inputs: [pings]
    outputs: [regional]
    dlq: dlq.pings
    http_port: 9101
  surge-pricer:
    inputs: [regional]
    outputs: [surge]
    dlq: dlq.pings
    http_port: 9103
    params:
      cap: 3.0
"#;

/// A directory holding `schemas/ping.avsc`, removed on drop.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "surgeflow-topology-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("schemas")).unwrap();
        std::fs::write(dir.join("schemas/ping.avsc"), VALID_SCHEMA).unwrap();
        Fixture { dir }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn load(&self, yaml: &str, env: &[(&str, &str)]) -> Result<Topology, TopologyErrors> {
        Topology::from_yaml_str(yaml, &self.dir, &environment(env))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `BASE` with each `(from, to)` replacement applied; `from` must occur.
fn base_with(edits: &[(&str, &str)]) -> String {
    edits.iter().fold(BASE.to_owned(), |yaml, (from, to)| {
        assert!(yaml.contains(from), "fixture does not contain {from:?}");
        yaml.replacen(from, to, 1)
    })
}

fn load_err(yaml: &str, env: &[(&str, &str)]) -> TopologyErrors {
    match Fixture::new().load(yaml, env) {
        Ok(_) => panic!("expected the topology to be rejected"),
        Err(errors) => errors,
    }
}

/// Asserts that exactly one error concerns `path` and that its message contains `needle`.
#[track_caller]
fn assert_error(errors: &TopologyErrors, path: &str, needle: &str) {
    let at: Vec<_> = errors.at(path).collect();
    assert_eq!(at.len(), 1, "want one error at {path:?}, got:\n{errors}");
    assert!(
        at[0].message.contains(needle),
        "error at {path:?} should mention {needle:?}, got:\n{errors}"
    );
}

#[test]
fn fixture_is_valid() {
    let fixture = Fixture::new();
    let topology = fixture.load(BASE, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.base_dir(), fixture.dir);
    assert_eq!(topology.operators.iter().count(), 2);
    assert_eq!(topology.geo.cell_precision, 6);
    let subjects: Vec<String> = topology.avro_subjects().map(|(s, _)| s).collect();
    assert_eq!(subjects, ["pings-value", "regional-value", "surge-value"]);
}

#[test]
fn load_reads_the_file_and_resolves_schemas_next_to_it() {
    let fixture = Fixture::new();
    let path = fixture.write("topology.yaml", BASE);
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let schema = topology.topic("pings").unwrap().value.avro().unwrap();
    assert_eq!(schema.path(), fixture.dir.join("schemas/ping.avsc"));
    assert_eq!(schema.text(), VALID_SCHEMA);

    let missing = Topology::load(fixture.dir.join("absent.yaml")).unwrap_err();
    assert!(missing.to_string().contains("absent.yaml"), "{missing}");
}

#[test]
fn unknown_field() {
    let yaml = base_with(&[("      cap: 3.0", "      capp: 3.0")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.params.capp",
        "unknown field `capp`",
    );
    assert!(
        errors
            .to_string()
            .starts_with("operators.surge-pricer.params.capp: unknown field"),
        "{errors}"
    );
}

#[test]
fn unknown_operator() {
    let yaml = base_with(&[("  surge-pricer:", "  surge-pricr:")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricr",
        "unknown field `surge-pricr`",
    );
}

#[test]
fn wrong_type() {
    let yaml = base_with(&[(
        "    partitions: 3\n    replication: 1\n    retention_ms",
        "    partitions: many\n    replication: 1\n    retention_ms",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "topics.pings.partitions",
        "invalid type: string \"many\", expected i32",
    );
}

#[test]
fn wrong_enum_value() {
    let yaml = base_with(&[(
        "    bootstrap_servers: localhost:9092",
        "    bootstrap_servers: localhost:9092\n    security_protocol: SSL",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "connection.kafka.security_protocol",
        "unknown variant `SSL`",
    );
}

#[test]
fn missing_schema_file() {
    let yaml = base_with(&[("value: schemas/ping.avsc", "value: schemas/missing.avsc")]);
    let fixture = Fixture::new();
    let errors = fixture.load(&yaml, &[]).unwrap_err();
    let resolved = fixture.dir.join("schemas/missing.avsc");
    assert_error(
        &errors,
        "topics.pings.value",
        &resolved.display().to_string(),
    );
    assert_error(&errors, "topics.pings.value", "does not exist");
}

#[test]
fn invalid_schema_file() {
    let fixture = Fixture::new();
    fixture.write(
        "schemas/broken.avsc",
        r#"{"type": "record", "name": "Broken"}"#,
    );
    let yaml = base_with(&[("value: schemas/ping.avsc", "value: schemas/broken.avsc")]);
    let errors = fixture.load(&yaml, &[]).unwrap_err();
    assert_error(&errors, "topics.pings.value", "is not a valid Avro schema");
}

#[test]
fn payload_format_must_be_known() {
    let yaml = base_with(&[("key: string", "key: json")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "topics.pings.key",
        "`string`, `raw` or the path of an `.avsc` file",
    );
}

#[test]
fn operator_reads_an_undeclared_topic() {
    let yaml = base_with(&[("inputs: [pings]", "inputs: [pings, nope]")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.location-router.inputs[1]",
        "topic `nope` is not declared under `topics`",
    );
}

#[test]
fn operator_reads_tables() {
    let yaml = base_with(&[(
        "inputs: [regional]",
        "inputs: [regional]\n    tables: [surge]",
    )]);
    let topology = Fixture::new()
        .load(&yaml, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let pricer = topology.operators.get("surge-pricer").unwrap();
    assert_eq!(pricer.tables, ["surge"]);
    assert_eq!(pricer.inputs, ["regional"]);
}

#[test]
fn bad_tables_are_each_named() {
    let yaml = base_with(&[(
        "inputs: [regional]",
        "inputs: [regional]\n    tables: [nope, dlq.pings, regional, surge, surge]",
    )]);
    let errors = load_err(&yaml, &[]);
    let base = "operators.surge-pricer.tables";
    assert_error(
        &errors,
        &format!("{base}[0]"),
        "topic `nope` is not declared under `topics`",
    );
    assert_error(
        &errors,
        &format!("{base}[1]"),
        "topic `dlq.pings` has `value: raw`",
    );
    assert_error(&errors, &format!("{base}[2]"), "is also an input");
    assert_eq!(errors.at(&format!("{base}[3]")).count(), 0, "{errors}");
    assert_error(
        &errors,
        &format!("{base}[4]"),
        "topic `surge` is listed twice",
    );
}

#[test]
fn region_precision_not_below_cell_precision() {
    let yaml = base_with(&[(
        "  halo_m: 2500",
        "  halo_m: 2500\n  cell_precision: 5\n  region_precision: 5",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "geo.region_precision",
        "must be less than cell_precision (5)",
    );
}

#[test]
fn precision_out_of_range() {
    let yaml = base_with(&[("  halo_m: 2500", "  halo_m: 2500\n  cell_precision: 13")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "geo.cell_precision",
        "must be between 1 and 12 (got 13)",
    );
}

#[test]
fn bad_curve_reports_every_point() {
    let curve = "      cap: 3.0\n      curve:\n        - { ratio: 2.0, multiplier: 1.5 }\n        - { ratio: 1.0, multiplier: 1.2 }\n        - { ratio: 3.0, multiplier: 0.5 }";
    let yaml = base_with(&[("      cap: 3.0", curve)]);
    let errors = load_err(&yaml, &[]);
    let base = "operators.surge-pricer.params";
    assert_error(
        &errors,
        &format!("{base}.curve[1].ratio"),
        "strictly increasing",
    );
    assert_error(
        &errors,
        &format!("{base}.curve[1].multiplier"),
        "must not decrease",
    );
    let at: Vec<_> = errors.at(&format!("{base}.curve[2].multiplier")).collect();
    assert_eq!(at.len(), 2, "below 1.0 and decreasing:\n{errors}");

    let empty = base_with(&[("      cap: 3.0", "      cap: 3.0\n      curve: []")]);
    assert_error(
        &load_err(&empty, &[]),
        &format!("{base}.curve"),
        "at least one point",
    );
}

#[test]
fn cap_below_the_curve() {
    let yaml = base_with(&[(
        "      cap: 3.0",
        "      cap: 1.2\n      curve: [{ ratio: 1.0, multiplier: 1.5 }]",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.params.cap",
        "must be at least the curve's first multiplier (1.5)",
    );
}

#[test]
fn demand_hop_must_divide_the_window() {
    let yaml = base_with(&[(
        "      cap: 3.0",
        "      cap: 3.0\n      demand_window_ms: 100000\n      demand_hop_ms: 30000",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.params.demand_window_ms",
        "must be a multiple of demand_hop_ms (30000)",
    );
}

#[test]
fn metrics_top_cells_is_bounded() {
    let yaml = base_with(&[(
        "      cap: 3.0",
        "      cap: 3.0\n      metrics_top_cells: 5001",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.params.metrics_top_cells",
        "must be at most 5000",
    );
    let fixture = Fixture::new();
    let yaml = base_with(&[(
        "      cap: 3.0",
        "      cap: 3.0\n      metrics_top_cells: 0",
    )]);
    let topology = fixture.load(&yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    let params = &topology.operators.surge_pricer.as_ref().unwrap().params;
    assert_eq!(
        params.metrics_top_cells, 0,
        "0 turns the per-cell gauges off"
    );
}

#[test]
fn missing_env_var_without_default() {
    let yaml = base_with(&[(
        "bootstrap_servers: localhost:9092",
        "bootstrap_servers: ${KAFKA_BOOTSTRAP}",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "connection.kafka.bootstrap_servers",
        "environment variable `KAFKA_BOOTSTRAP` is not set",
    );
}

#[test]
fn env_var_with_default_types_numbers_and_keeps_strings() {
    let fixture = Fixture::new();
    let yaml = base_with(&[
        ("partitions: 3", "partitions: ${PINGS_PARTITIONS:-4}"),
        (
            "bootstrap_servers: localhost:9092",
            "bootstrap_servers: ${KAFKA:-localhost:9092}",
        ),
    ]);
    let topology = fixture.load(&yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.topic("pings").unwrap().partitions, 4);
    let topology = fixture
        .load(&yaml, &[("PINGS_PARTITIONS", "8"), ("KAFKA", "k:1")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.topic("pings").unwrap().partitions, 8);
    assert_eq!(topology.connection.kafka.bootstrap_servers, "k:1");

    let errors = fixture
        .load(&yaml, &[("PINGS_PARTITIONS", "lots")])
        .unwrap_err();
    assert_error(&errors, "topics.pings.partitions", "`${PINGS_PARTITIONS}`");
}

#[test]
fn dollar_dollar_is_a_literal_dollar() {
    let yaml = base_with(&[(
        "    bootstrap_servers: localhost:9092",
        "    bootstrap_servers: localhost:9092\n    client_id: a$$b",
    )]);
    let topology = Fixture::new()
        .load(&yaml, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.connection.kafka.client_id.as_deref(), Some("a$b"));
}

#[test]
fn sasl_ssl_without_sasl() {
    let yaml = base_with(&[(
        "    bootstrap_servers: localhost:9092",
        "    bootstrap_servers: localhost:9092\n    security_protocol: sasl_ssl",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "connection.kafka.sasl",
        "required when security_protocol is sasl_ssl",
    );
}

#[test]
fn sasl_without_sasl_ssl() {
    let sasl = "    bootstrap_servers: localhost:9092\n    sasl:\n      mechanism: SCRAM-SHA-512\n      username: u\n      password: p";
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", sasl)]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "connection.kafka.sasl",
        "only allowed when security_protocol is sasl_ssl (got plaintext)",
    );
}

const SASL: &str = "    bootstrap_servers: localhost:9092\n    security_protocol: sasl_ssl\n    sasl:\n      mechanism: SCRAM-SHA-512\n      username: surgeflow\n";

#[test]
fn secrets_are_taken_verbatim_and_never_printed() {
    let fixture = Fixture::new();
    let sasl = format!("{SASL}      password: ${{KAFKA_PASSWORD}}");
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", &sasl)]);

    // YAML-special characters and number-like text survive untouched.
    for secret in ["a: b # c", "0123", "[x, y]", "  padded ", "Zq9!kEy"] {
        let topology = fixture
            .load(&yaml, &[("KAFKA_PASSWORD", secret)])
            .unwrap_or_else(|e| panic!("{e}"));
        let sasl = topology.connection.kafka.sasl.as_ref().unwrap();
        assert_eq!(sasl.password.as_ref().unwrap().expose(), secret);
    }
    // (A distinctive value: number-like ones could occur in the temp dir path.)
    let topology = fixture
        .load(&yaml, &[("KAFKA_PASSWORD", "Zq9!kEy")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{topology:?}").contains("Zq9!kEy"), "{topology:?}");

    // An unrelated error does not drag the secret into the report.
    let broken = yaml.replace("partitions: 3", "partitions: 0");
    let errors = fixture
        .load(&broken, &[("KAFKA_PASSWORD", "hunter2")])
        .unwrap_err();
    assert!(!errors.to_string().contains("hunter2"), "{errors}");

    // A literal non-string password is rejected without echoing it.
    let literal = format!("{SASL}      password: 987654");
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", &literal)]);
    let errors = fixture.load(&yaml, &[]).unwrap_err();
    assert_error(
        &errors,
        "connection.kafka.sasl.password",
        "must be a string",
    );
    assert!(!errors.to_string().contains("987654"), "{errors}");
}

#[test]
fn password_file_is_read_at_load_time() {
    let fixture = Fixture::new();
    let file = fixture.write("kafka-password", "s3cret\n");
    let sasl = format!("{SASL}      password_file: {}", file.display());
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", &sasl)]);
    let topology = fixture.load(&yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    let sasl = topology.connection.kafka.sasl.unwrap();
    assert_eq!(sasl.password.unwrap().expose(), "s3cret");

    let missing = format!(
        "{SASL}      password_file: {}",
        fixture.dir.join("nope").display()
    );
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", &missing)]);
    let errors = fixture.load(&yaml, &[]).unwrap_err();
    assert_error(
        &errors,
        "connection.kafka.sasl.password_file",
        "cannot read",
    );

    let neither = base_with(&[("    bootstrap_servers: localhost:9092", SASL.trim_end())]);
    let errors = fixture.load(&neither, &[]).unwrap_err();
    assert_error(
        &errors,
        "connection.kafka.sasl",
        "one of password or password_file is required",
    );
}

#[test]
fn tls_files_must_exist() {
    let tls = "    bootstrap_servers: localhost:9092\n    security_protocol: ssl\n    tls:\n      ca_file: /nonexistent/surgeflow/ca.crt";
    let yaml = base_with(&[("    bootstrap_servers: localhost:9092", tls)]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "connection.kafka.tls.ca_file",
        "/nonexistent/surgeflow/ca.crt",
    );
}

#[test]
fn duplicate_http_port() {
    let yaml = base_with(&[("http_port: 9103", "http_port: 9101")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.http_port",
        "port 9101 is already used by location-router",
    );
}

#[test]
fn duplicate_group_id() {
    let yaml = base_with(&[(
        "http_port: 9103",
        "http_port: 9103\n    group_id: surgeflow.location-router",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.surge-pricer.group_id",
        "already used by location-router",
    );
}

#[test]
fn dlq_not_raw() {
    let yaml = base_with(&[(
        "dlq: dlq.pings\n    http_port: 9101",
        "dlq: regional\n    http_port: 9101",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.location-router.dlq",
        "dead-letter topic `regional` must have `value: raw`",
    );
}

#[test]
fn output_raw() {
    let yaml = base_with(&[("outputs: [regional]", "outputs: [regional, dlq.pings]")]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "operators.location-router.outputs[1]",
        "has `value: raw`",
    );
}

#[test]
fn compacted_topic_needs_a_key() {
    let yaml = base_with(&[(
        "cleanup_policy: compact\n    key: string",
        "cleanup_policy: compact\n    key: raw",
    )]);
    let errors = load_err(&yaml, &[]);
    assert_error(&errors, "topics.surge.key", "not `raw`");
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = base_with(&[
        (
            "    partitions: 3\n    replication: 1\n    retention_ms: 3600000",
            "    partitions: 0\n    replication: 0\n    retention_ms: -2",
        ),
        ("halo_m: 2500", "halo_m: -1"),
        ("url: http://localhost:8081", "url: localhost:8081"),
        ("version: 1", "version: 2"),
    ]);
    let errors = load_err(&yaml, &[]);
    assert_error(
        &errors,
        "topics.pings.partitions",
        "must be at least 1 (got 0)",
    );
    assert_error(
        &errors,
        "topics.pings.replication",
        "must be at least 1 (got 0)",
    );
    assert_error(&errors, "topics.pings.retention_ms", "got -2");
    assert_error(&errors, "geo.halo_m", "greater than 0");
    assert_error(
        &errors,
        "connection.registry.url",
        "must start with http:// or https://",
    );
    assert_error(&errors, "version", "unsupported version 2");
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.iter().count(), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "topics.pings.partitions: must be at least 1 (got 0)"),
        "{text}"
    );
}

#[test]
fn dotted_topic_names_appear_as_written() {
    let yaml = base_with(&[(
        "  dlq.pings:\n    partitions: 1",
        "  dlq.pings:\n    partitions: 0",
    )]);
    let errors = load_err(&yaml, &[]);
    assert!(
        errors
            .to_string()
            .contains("topics.dlq.pings.partitions: must be at least 1 (got 0)"),
        "{errors}"
    );
}

#[test]
fn override_value_errors_name_the_variable() {
    let errors = load_err(BASE, &[("SURGEFLOW__TOPICS__PINGS__PARTITIONS", "lots")]);
    assert_error(
        &errors,
        "topics.pings.partitions",
        "SURGEFLOW__TOPICS__PINGS__PARTITIONS",
    );

    let errors = load_err(BASE, &[("SURGEFLOW__TOPICS__PINGS__PARTITIONS", "0")]);
    assert_error(
        &errors,
        "topics.pings.partitions",
        "must be at least 1 (got 0)",
    );
    assert_error(
        &errors,
        "topics.pings.partitions",
        "SURGEFLOW__TOPICS__PINGS__PARTITIONS",
    );
}

#[test]
fn override_through_a_non_mapping_is_an_error() {
    let errors = load_err(BASE, &[("SURGEFLOW__GEO__HALO_M__METRES", "1")]);
    assert_error(&errors, "geo.halo_m", "SURGEFLOW__GEO__HALO_M__METRES");
}

#[test]
fn override_creates_optional_settings() {
    let fixture = Fixture::new();
    let topology = fixture
        .load(
            BASE,
            &[
                ("SURGEFLOW__CONNECTION__REGISTRY__TIMEOUT_MS", "250"),
                (
                    "SURGEFLOW__OPERATORS__LOCATION_ROUTER__PARAMS__MAX_AGE_MS",
                    "1000",
                ),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.connection.registry.timeout_ms, 250);
    let router = topology.operators.location_router.as_ref().unwrap();
    assert_eq!(router.params.max_age_ms, 1000);

    let errors = fixture
        .load(
            BASE,
            &[("SURGEFLOW__OPERATORS__SURGE_PRICER__PARAMS__CAPP", "3")],
        )
        .unwrap_err();
    assert_error(
        &errors,
        "operators.surge-pricer.params.capp",
        "unknown field `capp`",
    );
}

#[test]
fn trip_speed_limit_must_be_positive() {
    for bad in ["0", "-70"] {
        let errors = match load_real(&[(
            "SURGEFLOW__OPERATORS__TRIP_ROUTER__PARAMS__MAX_TRIP_SPEED_MPS",
            bad,
        )]) {
            Ok(_) => panic!("max_trip_speed_mps {bad} accepted"),
            Err(errors) => errors,
        };
        assert_error(
            &errors,
            "operators.trip-router.params.max_trip_speed_mps",
            "must be a finite number greater than 0",
        );
    }
    let topology = load_real(&[(
        "SURGEFLOW__OPERATORS__TRIP_ROUTER__PARAMS__MAX_TRIP_SPEED_MPS",
        "45.5",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let router = topology.operators.trip_router.as_ref().unwrap();
    assert_eq!(router.params.max_trip_speed_mps, 45.5);
}
