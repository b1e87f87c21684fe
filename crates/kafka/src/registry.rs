//! A client for a Confluent-compatible schema registry (Confluent Schema Registry, or
//! Apicurio's `/apis/ccompat/v7`).
//!
//! Schema lookups by id and registrations go through `schema_registry_converter`, the de facto
//! Rust client; the subject configuration calls it does not cover (compatibility level, version
//! listing) use the same HTTP settings directly. Credentials come from the topology's secrets
//! and never appear in errors or logs.

use std::time::Duration;

use reqwest::StatusCode;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::Deserialize;
use surgeflow_topology::RegistryConnection;

/// What went wrong talking to the registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the schema, subject or version does not exist.
    #[error("not found in the registry: {what}")]
    NotFound { what: String },
    /// The registry refused the request (for example a schema breaking the compatibility rule).
    #[error("the registry refused the request: {reason}")]
    Rejected { reason: String },
    /// The registry could not be reached or failed; worth retrying later.
    #[error("the registry is unavailable: {reason}")]
    Unavailable { reason: String },
    /// The schema is not in the local cache (see `SchemaCache::decode_cached`).
    #[error("schema not loaded into the cache yet")]
    NotLoaded,
    /// The client could not be built from the settings.
    #[error("registry settings: {reason}")]
    Settings { reason: String },
}

/// Compatibility level of a subject, as the Confluent API spells it.
pub type CompatibilityLevel = surgeflow_topology::Compatibility;

/// A registry client. Cheap to clone: clones share the HTTP connection pool.
#[derive(Clone)]
pub struct Registry {
    url: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    settings: std::sync::Arc<SrSettings>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct CompatibilityBody {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct SubjectVersion {
    id: u32,
    version: u32,
    schema: String,
}

impl Registry {
    /// A client for the registry described in the topology.
    ///
    /// # Errors
    /// [`RegistryError::Settings`] when the CA file or credentials cannot be used.
    pub fn from_topology(conn: &RegistryConnection) -> Result<Self, RegistryError> {
        let settings_err = |reason: String| RegistryError::Settings { reason };
        let timeout = Duration::from_millis(conn.timeout_ms);
        let mut http = reqwest::Client::builder().timeout(timeout);
        let mut sr_http = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &conn.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| settings_err(format!("reading ca_file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| settings_err(format!("ca_file {}: {e}", ca.display())))?;
            http = http.add_root_certificate(cert.clone());
            sr_http = sr_http.add_root_certificate(cert);
        }
        let auth = match (&conn.username, &conn.password) {
            (Some(user), Some(pass)) => Some((user.clone(), pass.expose().to_string())),
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        let url = conn.url.trim_end_matches('/').to_string();
        let mut builder = SrSettings::new_builder(url.clone());
        if let Some((user, pass)) = &auth {
            builder.set_basic_authorization(user, Some(pass));
        }
        let settings = builder
            .build_with(sr_http)
            .map_err(|e| settings_err(e.error))?;
        Ok(Registry {
            url,
            http: http.build().map_err(|e| settings_err(e.to_string()))?,
            auth,
            settings: std::sync::Arc::new(settings),
        })
    }

    /// The base URL (the Confluent-compatible API root).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema text registered under `id`.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] for an unknown id, [`RegistryError::Unavailable`] otherwise.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        get_schema_by_id(id, &self.settings)
            .await
            .map(|registered| registered.schema)
            .map_err(|e| classify(e, || format!("schema id {id}")))
    }

    /// Registers an Avro schema under `subject`, returning its id. Registering a schema that is
    /// already there returns the existing id, so this is idempotent.
    ///
    /// # Errors
    /// [`RegistryError::Rejected`] when the subject's compatibility rule refuses it.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
        post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map(|registered| registered.id)
            .map_err(|e| classify(e, || format!("subject {subject}")))
    }

    /// The latest version of `subject`: (id, version, schema text), or `None` if the subject
    /// does not exist.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] when the registry cannot be asked.
    pub async fn latest(&self, subject: &str) -> Result<Option<(u32, u32, String)>, RegistryError> {
        let url = format!(
            "{}/subjects/{}/versions/latest",
            self.url,
            encode_subject(subject)
        );
        match self.get_json::<SubjectVersion>(&url).await {
            Ok(v) => Ok(Some((v.id, v.version, v.schema))),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The compatibility level set on `subject` itself, or `None` when it inherits the global
    /// default.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] when the registry cannot be asked.
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        let url = format!("{}/config/{}", self.url, encode_subject(subject));
        match self.get_json::<CompatibilityBody>(&url).await {
            Ok(body) => Ok(Some(body.level)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the compatibility level of `subject`.
    ///
    /// # Errors
    /// [`RegistryError::Rejected`] or [`RegistryError::Unavailable`].
    pub async fn set_compatibility(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/config/{}", self.url, encode_subject(subject));
        let body = serde_json::json!({ "compatibility": level.as_str() });
        let request = self.authed(self.http.put(&url)).json(&body);
        let response = request.send().await.map_err(unavailable)?;
        check_status(
            response.status(),
            || format!("config of {subject}"),
            response,
        )
        .await?;
        Ok(())
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, RegistryError> {
        let response = self
            .authed(self.http.get(url))
            .send()
            .await
            .map_err(unavailable)?;
        let response = check_status(response.status(), || url.to_string(), response).await?;
        response.json::<T>().await.map_err(unavailable)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, pass)) => request.basic_auth(user, Some(pass)),
            None => request,
        }
    }
}

fn encode_subject(subject: &str) -> String {
    subject.replace('/', "%2F")
}

fn unavailable(e: reqwest::Error) -> RegistryError {
    // reqwest errors can carry the URL; ours carry no credentials (basic auth is a header).
    RegistryError::Unavailable {
        reason: e.to_string(),
    }
}

async fn check_status(
    status: StatusCode,
    what: impl FnOnce() -> String,
    response: reqwest::Response,
) -> Result<reqwest::Response, RegistryError> {
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound { what: what() },
        s if s.is_client_error() => RegistryError::Rejected {
            reason: format!("{s}: {body}"),
        },
        s => RegistryError::Unavailable {
            reason: format!("{s}: {body}"),
        },
    })
}

/// Maps the converter's error to ours. It reports HTTP failures as text with the status in it,
/// so that is what we read; transport failures come without a status and are unavailability.
fn classify(error: SRCError, what: impl FnOnce() -> String) -> RegistryError {
    let text = format!("{} {}", error.error, error.cause.as_deref().unwrap_or(""));
    if text.contains("status 404") {
        RegistryError::NotFound { what: what() }
    } else if text.contains("status 4") {
        RegistryError::Rejected { reason: text }
    } else {
        RegistryError::Unavailable { reason: text }
    }
}
