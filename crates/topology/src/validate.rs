//! The rules a typed topology must satisfy beyond its types. Every rule reports under the path
//! of the setting to change, and all rules run so one pass shows every problem.

use std::collections::BTreeMap;
use std::path::Path;

use crate::connection::{KafkaConnection, RegistryConnection, SecurityProtocol};
use crate::error::TopologyError;
use crate::operator::OperatorCommon;
use crate::params::{LocationRouterParams, MatcherParams, SurgePricerParams, TripRouterParams};
use crate::topic::{PayloadFormat, TopicSpec};
use crate::{GeoSettings, Topology};

/// The file format version this build reads.
const SUPPORTED_VERSION: u32 = 1;

/// Longest legal Kafka topic name.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// librdkafka properties that `extra` must not set, with the setting that owns them.
const RESERVED_CLIENT_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "connection.kafka.bootstrap_servers"),
    ("security.protocol", "connection.kafka.security_protocol"),
    ("sasl.mechanism", "connection.kafka.sasl"),
    ("sasl.mechanisms", "connection.kafka.sasl"),
    ("sasl.username", "connection.kafka.sasl"),
    ("sasl.password", "connection.kafka.sasl"),
    ("ssl.ca.location", "connection.kafka.tls"),
    ("ssl.certificate.location", "connection.kafka.tls"),
    ("ssl.key.location", "connection.kafka.tls"),
    (
        "ssl.endpoint.identification.algorithm",
        "connection.kafka.tls",
    ),
    ("client.id", "connection.kafka.client_id"),
    ("group.id", "operators.<name>.group_id"),
    (
        "transactional.id",
        "operators.<name>.transactional_id_prefix",
    ),
];

/// Topic configs that `configs` must not set, with the setting that owns them.
const RESERVED_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "cleanup_policy"),
    ("retention.ms", "retention_ms"),
];

/// Every rule violation of `topology`.
pub(crate) fn validate(topology: &Topology) -> Vec<TopologyError> {
    let mut p = Problems::default();
    if topology.version != SUPPORTED_VERSION {
        p.push(
            "version",
            format!(
                "unsupported version {} (this build reads version {SUPPORTED_VERSION})",
                topology.version
            ),
        );
    }
    kafka(&mut p, &topology.connection.kafka);
    registry(&mut p, &topology.connection.registry);
    geo(&mut p, &topology.geo);
    for (name, topic) in &topology.topics {
        topic_spec(&mut p, name, topic);
    }
    operators(&mut p, topology);
    p.0
}

#[derive(Default)]
struct Problems(Vec<TopologyError>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(TopologyError::new(path, message));
    }

    fn positive_ms(&mut self, path: String, value: u64) {
        if value == 0 {
            self.push(path, "must be greater than 0 (got 0)");
        }
    }

    fn positive(&mut self, path: String, value: f64) {
        if !value.is_finite() || value <= 0.0 {
            self.push(
                path,
                format!("must be a finite number greater than 0 (got {value})"),
            );
        }
    }

    fn at_least(&mut self, path: String, value: f64, min: f64) {
        if !value.is_finite() || value < min {
            self.push(
                path,
                format!("must be a finite number of at least {min} (got {value})"),
            );
        }
    }

    fn within(&mut self, path: String, value: f64, min: f64, max: f64) {
        if !value.is_finite() || value < min || value > max {
            self.push(
                path,
                format!("must be between {min} and {max} (got {value})"),
            );
        }
    }

    fn file(&mut self, path: String, file: &Path) {
        match std::fs::metadata(file) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => self.push(path, format!("{} is not a file", file.display())),
            Err(e) => self.push(path, format!("cannot open {}: {e}", file.display())),
        }
    }

    fn not_blank(&mut self, path: String, value: &str) {
        if value.trim().is_empty() {
            self.push(path, "must not be empty");
        }
    }
}

fn kafka(p: &mut Problems, kafka: &KafkaConnection) {
    const BASE: &str = "connection.kafka";
    if kafka.bootstrap_servers.trim().is_empty() {
        p.push(format!("{BASE}.bootstrap_servers"), "must not be empty");
    } else if kafka
        .bootstrap_servers
        .split(',')
        .any(|s| s.trim().is_empty())
    {
        p.push(
            format!("{BASE}.bootstrap_servers"),
            "must be a comma-separated host:port list without empty entries",
        );
    }
    let protocol = kafka.security_protocol;
    match (&kafka.sasl, protocol) {
        (None, SecurityProtocol::SaslSsl) => {
            p.push(
                format!("{BASE}.sasl"),
                "required when security_protocol is sasl_ssl",
            );
        }
        (Some(_), SecurityProtocol::Plaintext | SecurityProtocol::Ssl) => p.push(
            format!("{BASE}.sasl"),
            format!(
                "only allowed when security_protocol is sasl_ssl (got {})",
                protocol.as_librdkafka()
            ),
        ),
        _ => {}
    }
    if let Some(sasl) = &kafka.sasl {
        p.not_blank(format!("{BASE}.sasl.username"), &sasl.username);
    }
    if let Some(tls) = &kafka.tls {
        if protocol == SecurityProtocol::Plaintext {
            p.push(
                format!("{BASE}.tls"),
                "only allowed when security_protocol is ssl or sasl_ssl (got plaintext)",
            );
        }
        p.file(format!("{BASE}.tls.ca_file"), &tls.ca_file);
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                p.file(format!("{BASE}.tls.cert_file"), cert);
                p.file(format!("{BASE}.tls.key_file"), key);
            }
            (Some(_), None) => p.push(format!("{BASE}.tls.key_file"), "required with cert_file"),
            (None, Some(_)) => p.push(format!("{BASE}.tls.cert_file"), "required with key_file"),
            (None, None) => {}
        }
    }
    if let Some(client_id) = &kafka.client_id {
        p.not_blank(format!("{BASE}.client_id"), client_id);
    }
    for key in kafka.extra.keys() {
        if let Some((_, owner)) = RESERVED_CLIENT_PROPERTIES.iter().find(|(k, _)| k == key) {
            p.push(
                format!("{BASE}.extra.{key}"),
                format!("set by `{owner}`, not here"),
            );
        }
    }
}

fn registry(p: &mut Problems, registry: &RegistryConnection) {
    const BASE: &str = "connection.registry";
    if !(registry.url.starts_with("http://") || registry.url.starts_with("https://")) {
        p.push(
            format!("{BASE}.url"),
            format!(
                "must start with http:// or https:// (got `{}`)",
                registry.url
            ),
        );
    }
    p.positive_ms(format!("{BASE}.timeout_ms"), registry.timeout_ms);
    if let Some(username) = &registry.username {
        p.not_blank(format!("{BASE}.username"), username);
    }
    if let Some(ca_file) = &registry.ca_file {
        p.file(format!("{BASE}.ca_file"), ca_file);
    }
}

fn geo(p: &mut Problems, geo: &GeoSettings) {
    let mut precision = |field: &str, value: u8| {
        let ok = (1..=12).contains(&value);
        if !ok {
            p.push(
                format!("geo.{field}"),
                format!("must be between 1 and 12 (got {value})"),
            );
        }
        ok
    };
    let cell_ok = precision("cell_precision", geo.cell_precision);
    let region_ok = precision("region_precision", geo.region_precision);
    if cell_ok && region_ok && geo.region_precision >= geo.cell_precision {
        p.push(
            "geo.region_precision",
            format!(
                "must be less than cell_precision ({}) so a region holds whole cells (got {})",
                geo.cell_precision, geo.region_precision
            ),
        );
    }
    p.positive("geo.halo_m".into(), geo.halo_m);
}

fn topic_spec(p: &mut Problems, name: &str, topic: &TopicSpec) {
    let base = format!("topics.{name}");
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_TOPIC_NAME_LEN
        || !name.chars().all(legal)
    {
        p.push(
            base.clone(),
            format!(
                "not a legal Kafka topic name: 1 to {MAX_TOPIC_NAME_LEN} of ASCII letters, \
                 digits, `.`, `_` and `-`, other than `.` and `..`"
            ),
        );
    }
    if topic.partitions < 1 {
        p.push(
            format!("{base}.partitions"),
            format!("must be at least 1 (got {})", topic.partitions),
        );
    }
    if topic.replication < 1 {
        p.push(
            format!("{base}.replication"),
            format!("must be at least 1 (got {})", topic.replication),
        );
    }
    if let Some(retention) = topic.retention_ms
        && retention < -1
    {
        p.push(
            format!("{base}.retention_ms"),
            format!("must be -1 (keep forever) or at least 0 (got {retention})"),
        );
    }
    if topic.cleanup_policy.is_compacted() && topic.key == PayloadFormat::Raw {
        p.push(
            format!("{base}.key"),
            format!(
                "a `{}` topic compacts by key, so the key must be `string` or an `.avsc` \
                 schema, not `raw`",
                topic.cleanup_policy.as_kafka()
            ),
        );
    }
    for key in topic.configs.keys() {
        if let Some((_, owner)) = RESERVED_TOPIC_CONFIGS.iter().find(|(k, _)| k == key) {
            p.push(
                format!("{base}.configs.{key}"),
                format!("set by `{owner}`, not here"),
            );
        }
    }
}

fn operators(p: &mut Problems, topology: &Topology) {
    let mut ports: BTreeMap<u16, &str> = BTreeMap::new();
    let mut groups: BTreeMap<String, &str> = BTreeMap::new();
    let mut transactional: BTreeMap<String, &str> = BTreeMap::new();
    for op in topology.operators.iter() {
        operator_common(p, topology, &op);
        let base = op.path();
        if let Some(other) = ports.insert(op.http_port, op.name) {
            p.push(
                format!("{base}.http_port"),
                format!("port {} is already used by {other}", op.http_port),
            );
        }
        if let Some(other) = groups.insert(op.group_id.clone(), op.name) {
            p.push(
                format!("{base}.group_id"),
                format!(
                    "consumer group `{}` is already used by {other}; operators sharing a group \
                     would split each other's partitions",
                    op.group_id
                ),
            );
        }
        if let Some(other) = transactional.insert(op.transactional_id_prefix.clone(), op.name) {
            p.push(
                format!("{base}.transactional_id_prefix"),
                format!(
                    "`{}` is already used by {other}; their producers would fence each other",
                    op.transactional_id_prefix
                ),
            );
        }
    }

    let ops = &topology.operators;
    if let Some(spec) = &ops.location_router {
        location_router(p, &params_base(crate::LOCATION_ROUTER), &spec.params);
    }
    if let Some(spec) = &ops.trip_router {
        trip_router(p, &params_base(crate::TRIP_ROUTER), &spec.params);
    }
    if let Some(spec) = &ops.surge_pricer {
        surge_pricer(p, &params_base(crate::SURGE_PRICER), &spec.params);
    }
    if let Some(spec) = &ops.matcher {
        matcher(p, &params_base(crate::MATCHER), &spec.params, &topology.geo);
    }
}

fn params_base(name: &str) -> String {
    format!("operators.{name}.params")
}

fn operator_common(p: &mut Problems, topology: &Topology, op: &OperatorCommon<'_>) {
    let base = op.path();
    let declared = |p: &mut Problems, path: String, topic: &str| {
        let spec = topology.topic(topic);
        if spec.is_none() {
            p.push(
                path,
                format!("topic `{topic}` is not declared under `topics`"),
            );
        }
        spec
    };

    if op.inputs.is_empty() {
        p.push(format!("{base}.inputs"), "must list at least one topic");
    }
    for (i, input) in op.inputs.iter().enumerate() {
        let path = format!("{base}.inputs[{i}]");
        if op.inputs[..i].contains(input) {
            p.push(path, format!("topic `{input}` is listed twice"));
        } else {
            declared(p, path, input);
        }
    }

    for (i, table) in op.tables.iter().enumerate() {
        let path = format!("{base}.tables[{i}]");
        if op.tables[..i].contains(table) {
            p.push(path, format!("topic `{table}` is listed twice"));
        } else if op.inputs.contains(table) {
            p.push(
                path,
                format!(
                    "topic `{table}` is also an input; a topic is either shared through the \
                     consumer group or read whole by every instance, not both"
                ),
            );
        } else if let Some(spec) = declared(p, path.clone(), table)
            && spec.value.avro().is_none()
        {
            p.push(
                path,
                format!(
                    "topic `{table}` has `value: {}`; a table is decoded into typed rows, so its \
                     values need an `.avsc` schema",
                    spec.value
                ),
            );
        }
    }

    if op.outputs.is_empty() {
        p.push(format!("{base}.outputs"), "must list at least one topic");
    }
    for (i, output) in op.outputs.iter().enumerate() {
        let path = format!("{base}.outputs[{i}]");
        if op.outputs[..i].contains(output) {
            p.push(path, format!("topic `{output}` is listed twice"));
        } else if let Some(spec) = declared(p, path.clone(), output)
            && spec.value == PayloadFormat::Raw
        {
            p.push(
                path,
                format!(
                    "topic `{output}` has `value: raw`; an operator's output needs a schema or \
                     `string` values (only dead-letter topics are raw)"
                ),
            );
        }
    }

    let dlq_path = format!("{base}.dlq");
    if let Some(spec) = declared(p, dlq_path.clone(), op.dlq)
        && spec.value != PayloadFormat::Raw
    {
        p.push(
            dlq_path,
            format!(
                "dead-letter topic `{}` must have `value: raw` to hold records that failed to \
                 decode (got `{}`)",
                op.dlq, spec.value
            ),
        );
    }

    if op.replicas < 1 {
        p.push(format!("{base}.replicas"), "must be at least 1 (got 0)");
    }
    if op.http_port == 0 {
        p.push(format!("{base}.http_port"), "must be a port number, not 0");
    }
    p.not_blank(format!("{base}.group_id"), &op.group_id);
    p.not_blank(
        format!("{base}.transactional_id_prefix"),
        &op.transactional_id_prefix,
    );
    p.positive_ms(format!("{base}.commit_interval_ms"), op.commit_interval_ms);
    if op.max_batch < 1 {
        p.push(format!("{base}.max_batch"), "must be at least 1 (got 0)");
    }
}

/// `max_age_ms` may be 0, which turns the age check off (replays of historical data).
fn location_router(p: &mut Problems, base: &str, params: &LocationRouterParams) {
    p.positive(format!("{base}.max_accuracy_m"), params.max_accuracy_m);
}

/// `max_age_ms` may be 0, as for `location-router`.
fn trip_router(p: &mut Problems, base: &str, params: &TripRouterParams) {
    p.positive(
        format!("{base}.max_trip_speed_mps"),
        params.max_trip_speed_mps,
    );
}

fn surge_pricer(p: &mut Problems, base: &str, params: &SurgePricerParams) {
    p.positive_ms(format!("{base}.supply_ttl_ms"), params.supply_ttl_ms);
    p.positive_ms(format!("{base}.demand_window_ms"), params.demand_window_ms);
    p.positive_ms(format!("{base}.demand_hop_ms"), params.demand_hop_ms);
    if params.demand_hop_ms > 0 && !params.demand_window_ms.is_multiple_of(params.demand_hop_ms) {
        p.push(
            format!("{base}.demand_window_ms"),
            format!(
                "must be a multiple of demand_hop_ms ({}) (got {})",
                params.demand_hop_ms, params.demand_window_ms
            ),
        );
    }
    p.positive_ms(format!("{base}.idle_advance_ms"), params.idle_advance_ms);
    p.positive_ms(format!("{base}.tick_ms"), params.tick_ms);
    p.positive_ms(format!("{base}.stale_after_ms"), params.stale_after_ms);
    p.within(
        format!("{base}.smoothing_decay"),
        params.smoothing_decay,
        0.0,
        1.0,
    );

    if params.curve.is_empty() {
        p.push(format!("{base}.curve"), "must have at least one point");
    }
    for (i, point) in params.curve.iter().enumerate() {
        let at = format!("{base}.curve[{i}]");
        p.at_least(format!("{at}.ratio"), point.ratio, 0.0);
        p.at_least(format!("{at}.multiplier"), point.multiplier, 1.0);
        if let Some(prev) = i.checked_sub(1).map(|j| params.curve[j]) {
            if point.ratio <= prev.ratio {
                p.push(
                    format!("{at}.ratio"),
                    format!(
                        "ratios must be strictly increasing: {} does not exceed the previous {}",
                        point.ratio, prev.ratio
                    ),
                );
            }
            if point.multiplier < prev.multiplier {
                p.push(
                    format!("{at}.multiplier"),
                    format!(
                        "multipliers must not decrease: {} is below the previous {}",
                        point.multiplier, prev.multiplier
                    ),
                );
            }
        }
    }

    p.at_least(format!("{base}.cap"), params.cap, 1.0);
    if let Some(first) = params.curve.first()
        && params.cap.is_finite()
        && params.cap < first.multiplier
    {
        p.push(
            format!("{base}.cap"),
            format!(
                "must be at least the curve's first multiplier ({}) (got {})",
                first.multiplier, params.cap
            ),
        );
    }
    p.positive(format!("{base}.step"), params.step);
    if !(params.ewma_alpha > 0.0 && params.ewma_alpha <= 1.0) {
        p.push(
            format!("{base}.ewma_alpha"),
            format!(
                "must be greater than 0 and at most 1 (got {})",
                params.ewma_alpha
            ),
        );
    }
    p.positive(
        format!("{base}.max_change_per_tick"),
        params.max_change_per_tick,
    );
    p.at_least(format!("{base}.hysteresis"), params.hysteresis, 0.0);
    if params.metrics_top_cells > MAX_METRICS_TOP_CELLS {
        p.push(
            format!("{base}.metrics_top_cells"),
            format!(
                "must be at most {MAX_METRICS_TOP_CELLS}: each exported cell is three series per \
                 instance (got {})",
                params.metrics_top_cells
            ),
        );
    }
}

/// Largest `surge-pricer.params.metrics_top_cells`.
const MAX_METRICS_TOP_CELLS: u32 = 5000;

fn matcher(p: &mut Problems, base: &str, params: &MatcherParams, geo: &GeoSettings) {
    p.positive(format!("{base}.radius_m"), params.radius_m);
    if params.radius_m.is_finite() && geo.halo_m.is_finite() && params.radius_m > geo.halo_m {
        p.push(
            format!("{base}.radius_m"),
            format!(
                "must not exceed geo.halo_m ({}): candidates just across a region border would \
                 be missed (got {})",
                geo.halo_m, params.radius_m
            ),
        );
    }
    p.at_least(format!("{base}.detour_factor"), params.detour_factor, 1.0);
    p.positive(format!("{base}.speed_mps"), params.speed_mps);
    p.positive_ms(format!("{base}.offer_timeout_ms"), params.offer_timeout_ms);
    if params.max_attempts < 1 {
        p.push(format!("{base}.max_attempts"), "must be at least 1 (got 0)");
    }
    p.positive_ms(
        format!("{base}.request_deadline_ms"),
        params.request_deadline_ms,
    );
    p.positive_ms(format!("{base}.driver_ttl_ms"), params.driver_ttl_ms);
    p.within(
        format!("{base}.default_rating"),
        params.default_rating,
        0.0,
        5.0,
    );
    p.within(
        format!("{base}.default_acceptance_rate"),
        params.default_acceptance_rate,
        0.0,
        1.0,
    );
    let weights = params.weights;
    for (field, value) in [
        ("eta", weights.eta),
        ("rating", weights.rating),
        ("acceptance", weights.acceptance),
    ] {
        p.at_least(format!("{base}.weights.{field}"), value, 0.0);
    }
    if weights.eta == 0.0 && weights.rating == 0.0 && weights.acceptance == 0.0 {
        p.push(
            format!("{base}.weights"),
            "must not all be 0: candidates could not be ranked",
        );
    }
}
