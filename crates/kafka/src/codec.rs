//! Avro encoding and decoding of record values in the Confluent wire format.
//!
//! Hot-path decoding goes straight from the Avro bytes into the Rust type with serde, driven by
//! the *writer's* schema (fetched from the registry by the id in the payload, then cached): no
//! `apache_avro::types::Value` in between, which is about ten times cheaper. Because serde
//! matches record fields by name, data written with an older or newer compatible schema decodes
//! into today's type: fields the reader does not know are skipped and optional fields the writer
//! did not have take their defaults. Whether a writer schema can be read at all is checked once
//! per schema id with Avro's resolution rules, so an incompatible producer is reported as such
//! instead of as a stream of confusing per-record errors.
//!
//! Every failure is classified ([`DecodeError`]) so the operator runtime can route bad records
//! to the DLQ with a precise reason, and retry only what is worth retrying (a registry outage).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use surgeflow_schema::AvroRecord;

use crate::registry::{Registry, RegistryError};
use crate::wire;

/// The most bytes one decoded record may allocate. Our records are a few hundred bytes; the
/// limit only exists so a forged length prefix cannot make the decoder allocate gigabytes.
pub const MAX_ALLOCATION_BYTES: usize = 4 * 1024 * 1024;

/// Why a payload could not be decoded. Each variant is a distinct DLQ reason.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The first byte is not the wire format's magic byte: not written by a registry serializer.
    #[error("bad magic byte {found:#04x}: not in the schema-registry wire format")]
    BadMagic { found: u8 },
    /// The payload ended early, in the 5-byte header or inside the Avro body.
    #[error("truncated {part}: payload ended early ({len} bytes)")]
    Truncated { len: usize, part: &'static str },
    /// The registry does not know the schema id in the header.
    #[error("unknown schema id {id}: the registry has no such schema")]
    UnknownSchemaId { id: u32 },
    /// The writer's schema cannot be read as the type we expect (wrong topic, or a producer
    /// that broke compatibility).
    #[error("schema id {id} cannot be read as {expected}: {reason}")]
    IncompatibleSchema {
        id: u32,
        expected: &'static str,
        reason: String,
    },
    /// The body does not decode with its writer's schema.
    #[error("malformed Avro body for schema id {id}: {reason}")]
    Malformed { id: u32, reason: String },
    /// The body decoded but bytes were left over: the payload is corrupt.
    #[error("{extra} trailing bytes after the Avro body for schema id {id}")]
    TrailingBytes { id: u32, extra: usize },
    /// The schema is not cached and the registry could not be reached. Retriable: the record is
    /// fine, the registry is not.
    #[error("schema id {id} not cached and the registry is unavailable: {source}")]
    RegistryUnavailable { id: u32, source: RegistryError },
}

impl DecodeError {
    /// A short, stable name for metrics labels and DLQ headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeError::IncompatibleSchema { .. } => "incompatible_schema",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::RegistryUnavailable { .. } => "registry_unavailable",
        }
    }

    /// True when retrying later can succeed; every other error is a property of the record.
    pub fn is_retriable(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }
}

/// A writer schema fetched from the registry, with its reader built once.
struct WriterSchema {
    schema: &'static Schema,
    reader: GenericDatumReader<'static>,
}

/// Verdicts of "can data written with schema id X be read as the type of schema file Y".
type CompatibilityVerdicts = HashMap<(u32, &'static str), Result<(), String>>;

/// Schemas by registry id, shared by every decoder of a process.
///
/// Schemas behind an id never change, and a process sees a handful of them, so each one is
/// parsed once and kept (leaked to `'static`) for the life of the process; that lets the cached
/// datum reader borrow it without a self-referential struct.
#[derive(Clone)]
pub struct SchemaCache {
    registry: Registry,
    by_id: Arc<RwLock<HashMap<u32, Arc<WriterSchema>>>>,
    /// (schema id, reader schema file) pairs already checked for compatibility.
    compatible: Arc<RwLock<CompatibilityVerdicts>>,
}

impl SchemaCache {
    /// A cache in front of `registry`. Also fixes the process-wide Avro allocation limit.
    pub fn new(registry: Registry) -> Self {
        static LIMIT: OnceLock<usize> = OnceLock::new();
        LIMIT.get_or_init(|| apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES));
        SchemaCache {
            registry,
            by_id: Arc::default(),
            compatible: Arc::default(),
        }
    }

    /// The registry this cache reads through.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Makes sure schema `id` is cached, fetching it from the registry if needed.
    ///
    /// # Errors
    /// [`DecodeError::UnknownSchemaId`] when the registry has no such id, and
    /// [`DecodeError::RegistryUnavailable`] when it cannot be asked.
    pub async fn load(&self, id: u32) -> Result<(), DecodeError> {
        if self.cached(id).is_some() {
            return Ok(());
        }
        let text = match self.registry.schema_by_id(id).await {
            Ok(text) => text,
            Err(RegistryError::NotFound { .. }) => return Err(DecodeError::UnknownSchemaId { id }),
            Err(source) => return Err(DecodeError::RegistryUnavailable { id, source }),
        };
        let schema = Schema::parse_str(&text).map_err(|e| DecodeError::IncompatibleSchema {
            id,
            expected: "a parseable Avro schema",
            reason: e.to_string(),
        })?;
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let reader = GenericDatumReader::builder(schema).build().map_err(|e| {
            DecodeError::IncompatibleSchema {
                id,
                expected: "a resolvable Avro schema",
                reason: e.to_string(),
            }
        })?;
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_insert_with(|| Arc::new(WriterSchema { schema, reader }));
        Ok(())
    }

    /// Checks once per (id, type) that data written with schema `id` can be read as `T`.
    fn check_compatible<T: AvroRecord>(&self, id: u32, writer: &Schema) -> Result<(), DecodeError> {
        let key = (id, T::SCHEMA_FILE);
        let known = self
            .compatible
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let verdict = match known {
            Some(v) => v,
            None => {
                let v = SchemaCompatibility::can_read(writer, T::schema())
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                self.compatible
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, v.clone());
                v
            }
        };
        verdict.map_err(|reason| DecodeError::IncompatibleSchema {
            id,
            expected: T::SCHEMA_FILE,
            reason,
        })
    }

    /// Decodes a wire-format payload as `T` using only cached schemas.
    ///
    /// # Errors
    /// Any [`DecodeError`]; an id that is not cached yet reports
    /// [`DecodeError::RegistryUnavailable`] with [`RegistryError::NotLoaded`], which
    /// [`SchemaCache::decode`] resolves by loading it first.
    pub fn decode_cached<T: AvroRecord>(&self, payload: &[u8]) -> Result<T, DecodeError> {
        let (id, body) = wire::split(payload)?;
        let writer = match last_verified::<T>(id) {
            Some(writer) => writer,
            None => {
                let Some(writer) = self.cached(id) else {
                    return Err(DecodeError::RegistryUnavailable {
                        id,
                        source: RegistryError::NotLoaded,
                    });
                };
                self.check_compatible::<T>(id, writer.schema)?;
                remember_verified::<T>(id, &writer);
                writer
            }
        };
        let mut rest = body;
        let value = writer
            .reader
            .read_deser::<T>(&mut rest)
            .map_err(|e| classify_body_error(id, body.len(), &e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                id,
                extra: rest.len(),
            });
        }
        Ok(value)
    }

    /// Decodes a wire-format payload as `T`, fetching its schema first if needed.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub async fn decode<T: AvroRecord>(&self, payload: &[u8]) -> Result<T, DecodeError> {
        let (id, _) = wire::split(payload)?;
        self.load(id).await?;
        self.decode_cached(payload)
    }

    /// Decodes any wire-format payload to JSON with the writer schema's field names. For tools
    /// (`surgeflow tail`), not hot paths: it goes through `Value`.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    pub async fn decode_json(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let (id, body) = wire::split(payload)?;
        self.load(id).await?;
        let writer = self.cached(id).ok_or(DecodeError::UnknownSchemaId { id })?;
        let mut rest = body;
        let value = writer
            .reader
            .read_value(&mut rest)
            .map_err(|e| classify_body_error(id, body.len(), &e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                id,
                extra: rest.len(),
            });
        }
        serde_json::Value::try_from(value).map_err(|e| DecodeError::Malformed {
            id,
            reason: e.to_string(),
        })
    }
}

thread_local! {
    /// The last (schema id, reader type) this thread decoded and found compatible, with its
    /// writer schema. A stream almost always carries one schema id per type, so this skips the
    /// shared maps (a lock and two hash lookups) on nearly every record.
    static LAST_VERIFIED: std::cell::RefCell<Option<(u32, &'static str, Arc<WriterSchema>)>> =
        const { std::cell::RefCell::new(None) };
}

fn last_verified<T: AvroRecord>(id: u32) -> Option<Arc<WriterSchema>> {
    LAST_VERIFIED.with_borrow(|last| match last {
        Some((last_id, file, writer)) if *last_id == id && std::ptr::eq(*file, T::SCHEMA_FILE) => {
            Some(writer.clone())
        }
        _ => None,
    })
}

fn remember_verified<T: AvroRecord>(id: u32, writer: &Arc<WriterSchema>) {
    LAST_VERIFIED.with_borrow_mut(|last| *last = Some((id, T::SCHEMA_FILE, writer.clone())));
}

/// Tells a body that ended early (an I/O `UnexpectedEof` somewhere in the error chain) from one
/// that is malformed.
fn classify_body_error(id: u32, len: usize, error: &apache_avro::Error) -> DecodeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == ErrorKind::UnexpectedEof
        {
            return DecodeError::Truncated {
                len: len + wire::HEADER_LEN,
                part: "Avro body",
            };
        }
        source = e.source();
    }
    DecodeError::Malformed {
        id,
        reason: error.to_string(),
    }
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The schema could not be registered or looked up.
    #[error("registering {subject}: {source}")]
    Registry {
        subject: String,
        source: RegistryError,
    },
    /// The value does not fit its schema (a bug in the caller).
    #[error("value does not fit schemas/{file}: {reason}")]
    Value { file: &'static str, reason: String },
}

/// Encodes `T` in the wire format under the schema id registered for one subject.
pub struct Encoder<T: AvroRecord> {
    schema_id: u32,
    writer: GenericDatumWriter<'static>,
    _type: PhantomData<fn(&T)>,
}

impl<T: AvroRecord> Encoder<T> {
    /// Registers `T`'s schema under `subject` (a no-op returning the existing id when it is
    /// already there) and prepares the writer.
    ///
    /// # Errors
    /// [`EncodeError::Registry`] when the registry refuses the schema (for example it breaks the
    /// subject's compatibility rule) or cannot be reached.
    pub async fn register(registry: &Registry, subject: &str) -> Result<Self, EncodeError> {
        let schema_id = registry
            .register(subject, T::SCHEMA_TEXT)
            .await
            .map_err(|source| EncodeError::Registry {
                subject: subject.to_string(),
                source,
            })?;
        Self::with_id(schema_id)
    }

    /// An encoder for a schema id obtained elsewhere (tests, tools).
    ///
    /// # Errors
    /// [`EncodeError::Value`] if the compiled-in schema cannot be prepared.
    pub fn with_id(schema_id: u32) -> Result<Self, EncodeError> {
        let writer = GenericDatumWriter::builder(T::schema())
            .build()
            .map_err(|e| EncodeError::Value {
                file: T::SCHEMA_FILE,
                reason: e.to_string(),
            })?;
        Ok(Encoder {
            schema_id,
            writer,
            _type: PhantomData,
        })
    }

    /// The registry id written into every payload.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Appends the encoded `value` to `buf`, so one buffer can hold a whole batch of payloads.
    ///
    /// # Errors
    /// [`EncodeError::Value`] when the value does not fit the schema.
    pub fn encode_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::write_header(self.schema_id, buf);
        self.writer
            .write_ser(buf, value)
            .map(|_| ())
            .map_err(|e| EncodeError::Value {
                file: T::SCHEMA_FILE,
                reason: e.to_string(),
            })
    }

    /// Encodes `value` into a new buffer.
    ///
    /// # Errors
    /// [`EncodeError::Value`] when the value does not fit the schema.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(value, &mut buf)?;
        Ok(buf)
    }
}
