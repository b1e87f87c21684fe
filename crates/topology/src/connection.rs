//! How to reach the Kafka cluster and the schema registry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;

/// Where the pipeline's infrastructure lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The Kafka cluster holding every topic of the topology. Required.
    pub kafka: KafkaConnection,
    /// The Confluent-compatible schema registry holding the Avro schemas. Required.
    pub registry: RegistryConnection,
}

/// Kafka client settings shared by every producer, consumer and admin client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConnection {
    /// Comma-separated `host:port` list of bootstrap brokers (librdkafka `bootstrap.servers`).
    /// Required, non-empty.
    pub bootstrap_servers: String,
    /// Transport and authentication. Default `plaintext`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL credentials. Required with `sasl_ssl`, not allowed otherwise. Default: none.
    pub sasl: Option<SaslSettings>,
    /// TLS trust and client certificate. Only with `ssl` or `sasl_ssl`; without it the system
    /// trust store is used. Default: none.
    pub tls: Option<TlsSettings>,
    /// librdkafka `client.id`, shown in broker logs and quotas. Default: none (librdkafka's
    /// own default).
    pub client_id: Option<String>,
    /// Extra librdkafka properties passed through unchanged to every client, for tuning (e.g.
    /// `linger.ms`, `compression.type`). Properties that have a dedicated setting above or are
    /// set per operator (`group.id`, `transactional.id`) are rejected. Default: empty.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// `security.protocol` of the Kafka clients; lower-case in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No encryption, no authentication. Local development only.
    #[default]
    Plaintext,
    /// TLS encryption, optionally mutual TLS authentication via `tls.cert_file`.
    Ssl,
    /// TLS encryption with SASL authentication.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka `security.protocol` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// SASL authentication for `sasl_ssl`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// SASL mechanism. Required.
    pub mechanism: SaslMechanism,
    /// SASL user name. Required, non-empty.
    pub username: String,
    /// The password, inline (usually `${VAR}`). Exactly one of `password` and `password_file` is
    /// required; after a successful load this is always `Some`, read from `password_file` if that
    /// was the one given.
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored), absolute or relative to the
    /// working directory, read at load time. Default: none.
    pub password_file: Option<PathBuf>,
}

/// librdkafka `sasl.mechanism`; written as in Kafka (`SCRAM-SHA-512`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512; what production clusters use.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// Clear-text password, protected only by TLS.
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    /// The librdkafka `sasl.mechanism` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
        }
    }
}

/// TLS settings for `ssl` and `sasl_ssl`. Paths are absolute or relative to the working
/// directory, exactly as the Kafka client will open them, and must exist at load time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificates trusted for the brokers (librdkafka `ssl.ca.location`).
    /// Required.
    pub ca_file: PathBuf,
    /// PEM client certificate for mutual TLS (`ssl.certificate.location`); needs `key_file`.
    /// Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (`ssl.key.location`); needs `cert_file`. Default: none.
    pub key_file: Option<PathBuf>,
    /// Check that the broker certificate matches its host name
    /// (`ssl.endpoint.identification.algorithm=https`). Default `true`.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

fn default_true() -> bool {
    true
}

/// The schema registry (Confluent API; Apicurio's `ccompat` endpoint works too).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConnection {
    /// Base URL of the Confluent-compatible API, `http://` or `https://`. Required.
    pub url: String,
    /// Compatibility level set on every subject by `apply`. Default `BACKWARD_TRANSITIVE`,
    /// because replay and restore read records written with every older schema.
    #[serde(default)]
    pub compatibility: Compatibility,
    /// HTTP basic-auth user name; needs `password` or `password_file`. Default: none.
    pub username: Option<String>,
    /// HTTP basic-auth password, inline (usually `${VAR}`); at most one of `password` and
    /// `password_file`. After a successful load this holds the password read from
    /// `password_file` if that was given. Default: none.
    pub password: Option<Secret>,
    /// A file holding the basic-auth password (trailing newline ignored), absolute or relative
    /// to the working directory, read at load time. Default: none.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificates trusted for an `https://` registry. Default: none (system
    /// trust store).
    pub ca_file: Option<PathBuf>,
    /// Timeout of each registry request, milliseconds. Default 5000.
    #[serde(default = "default_registry_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_registry_timeout_ms() -> u64 {
    5000
}

/// Schema-registry compatibility level, written as in the Confluent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// No check.
    None,
    /// New schema can read data written with the previous one.
    Backward,
    /// New schema can read data written with every earlier one.
    #[default]
    BackwardTransitive,
    /// Previous schema can read data written with the new one.
    Forward,
    /// Every earlier schema can read data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the previous schema.
    Full,
    /// Backward and forward against every earlier schema.
    FullTransitive,
}

impl Compatibility {
    /// The value as the registry API spells it, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }
}
