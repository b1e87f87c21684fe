//! Kafka client construction from the topology's connection settings.
//!
//! Every consumer, producer and admin client in surgeflow is built here, so security settings
//! (TLS, SASL/SCRAM) and the exactly-once essentials are set in one place and cannot be
//! forgotten by an operator: consumers never auto-commit and read only committed data,
//! producers are idempotent, transactional producers get a stable id and a short transaction
//! timeout so a crashed instance does not stall `read_committed` readers for long.

use std::fmt;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use surgeflow_topology::KafkaConnection;

/// How long a transaction may stay open before the broker aborts it. Short, because a crashed
/// instance's open transaction blocks `read_committed` readers of its partitions until then.
pub const TRANSACTION_TIMEOUT_MS: u32 = 30_000;

/// Builds Kafka clients that share the topology's connection settings.
#[derive(Clone)]
pub struct ClientFactory {
    base: ClientConfig,
}

/// Shows the settings with secrets (`sasl.password`, key passwords) masked by librdkafka's
/// own list of sensitive keys.
impl fmt::Debug for ClientFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.base.config_map()).finish()
    }
}

impl ClientFactory {
    /// Client settings from the topology's `connection.kafka` section.
    pub fn from_topology(conn: &KafkaConnection) -> Self {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &conn.bootstrap_servers);
        base.set(
            "client.id",
            conn.client_id.as_deref().unwrap_or("surgeflow"),
        );
        base.set("security.protocol", conn.security_protocol.as_librdkafka());
        if let Some(sasl) = &conn.sasl {
            base.set("sasl.mechanism", sasl.mechanism.as_librdkafka());
            base.set("sasl.username", &sasl.username);
            // The loader fills `password` from `password_file`, so it is set after a load.
            if let Some(password) = &sasl.password {
                base.set("sasl.password", password.expose());
            }
        }
        if let Some(tls) = &conn.tls {
            base.set("ssl.ca.location", tls.ca_file.to_string_lossy());
            if let Some(cert) = &tls.cert_file {
                base.set("ssl.certificate.location", cert.to_string_lossy());
            }
            if let Some(key) = &tls.key_file {
                base.set("ssl.key.location", key.to_string_lossy());
            }
            let identification = if tls.verify_hostname { "https" } else { "none" };
            base.set("ssl.endpoint.identification.algorithm", identification);
        }
        for (key, value) in &conn.extra {
            base.set(key, value);
        }
        ClientFactory { base }
    }

    /// The shared settings, for clients this factory has no method for.
    pub fn base(&self) -> &ClientConfig {
        &self.base
    }

    /// Settings for a consumer in `group_id` that commits only what it chooses to (through
    /// transactions or explicit commits) and reads only committed records.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.base.clone();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        config
    }

    /// Settings for an idempotent producer (at-least-once without duplicates from retries).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        config
    }

    /// Settings for a transactional producer with a stable `transactional_id` (one per
    /// operator instance, so a restarted instance fences its predecessor).
    pub fn transactional_producer_config(&self, transactional_id: &str) -> ClientConfig {
        let mut config = self.producer_config();
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string());
        config
    }

    /// A consumer in `group_id` (see [`ClientFactory::consumer_config`]).
    ///
    /// # Errors
    /// A [`KafkaError`] when librdkafka rejects the settings.
    pub fn consumer(&self, group_id: &str) -> Result<BaseConsumer, KafkaError> {
        self.consumer_config(group_id).create()
    }

    /// An idempotent producer (see [`ClientFactory::producer_config`]).
    ///
    /// # Errors
    /// A [`KafkaError`] when librdkafka rejects the settings.
    pub fn producer(&self) -> Result<BaseProducer, KafkaError> {
        self.producer_config().create()
    }

    /// An admin client.
    ///
    /// # Errors
    /// A [`KafkaError`] when librdkafka rejects the settings.
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.base.create()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(yaml: &str) -> KafkaConnection {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn plaintext_defaults_and_exactly_once_essentials() {
        let f = ClientFactory::from_topology(&conn(
            "bootstrap_servers: 127.0.0.1:9092\nsecurity_protocol: plaintext\n",
        ));
        let c = f.consumer_config("g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        let p = f.transactional_producer_config("surgeflow.x.0");
        assert_eq!(p.get("transactional.id"), Some("surgeflow.x.0"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("transaction.timeout.ms"), Some("30000"));
    }

    #[test]
    fn sasl_ssl_sets_scram_and_hides_the_password() {
        let f = ClientFactory::from_topology(&conn(
            "bootstrap_servers: kafka:9093\nsecurity_protocol: sasl_ssl\n\
             sasl: {mechanism: SCRAM-SHA-512, username: pricer, password: s3cr3t}\n\
             tls: {ca_file: /etc/ssl/certs/ca.pem}\n",
        ));
        let c = f.producer_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("s3cr3t"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        let shown = format!("{f:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }
}
