//! From text to a checked [`Topology`]: parse, override, substitute, type, read referenced
//! files, validate.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

use crate::document::{Node, Provenance};
use crate::error::{TopologyError, TopologyErrors};
use crate::secret::Secret;
use crate::topic::PayloadFormat;
use crate::{Topology, validate};

impl Topology {
    /// Loads `path` with the process environment: `${VAR}` references and
    /// `SURGEFLOW__...` overrides come from it; `.avsc` paths are relative to the file's
    /// directory. Variables whose name or value is not UTF-8 are ignored.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            TopologyErrors::single("", format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Topology::from_yaml_str(&text, base_dir, &env)
    }

    /// Loads a topology from YAML `text` with an explicit environment (for tests and tools).
    ///
    /// In order: the YAML is parsed; every `SURGEFLOW__SEG__SEG...` variable in `env` sets the
    /// setting at that path (segments match keys case-insensitively with `.`, `-`, `_` alike; a
    /// missing key is created lower-case; the value is taken verbatim, no `${...}`); `${VAR}`,
    /// `${VAR:-default}` and `$$` are substituted in the remaining string scalars; the result is
    /// typed; `.avsc` files (relative to `base_dir`) and password files are read; and every rule is
    /// checked. A value that came whole from the environment is typed by its setting: text for a
    /// string, a YAML scalar for a number or boolean.
    ///
    /// Problems of one stage are all reported together; later stages run only if earlier ones
    /// succeeded, since their input would be meaningless.
    pub fn from_yaml_str(
        text: &str,
        base_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Topology, TopologyErrors> {
        let mut value: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| TopologyErrors::single("", format!("invalid YAML: {e}")))?;
        if value.is_null() {
            return Err(TopologyErrors::single("", "the topology document is empty"));
        }
        value
            .apply_merge()
            .map_err(|e| TopologyErrors::single("", format!("invalid YAML merge: {e}")))?;
        let mut root = Node::from_value(value, "").map_err(|e| TopologyErrors(vec![e]))?;

        let mut provenance = Provenance::new();
        let mut errors = Vec::new();
        root.apply_overrides(env, &mut provenance, &mut errors);
        root.interpolate("", env, &mut provenance, &mut errors);
        if !errors.is_empty() {
            return Err(TopologyErrors(errors));
        }

        let mut topology: Topology = serde_path_to_error::deserialize(root).map_err(|e| {
            let path = match e.path().to_string() {
                root if root == "." => String::new(),
                path => path,
            };
            let message = e.into_inner().to_string();
            annotate(TopologyErrors::single(path, message), &provenance)
        })?;
        topology.base_dir = base_dir.to_path_buf();

        let mut errors = topology.read_files();
        errors.extend(validate::validate(&topology));
        if errors.is_empty() {
            Ok(topology)
        } else {
            Err(annotate(TopologyErrors(errors), &provenance))
        }
    }

    /// Reads the schema and password files, recording one error per file that fails.
    fn read_files(&mut self) -> Vec<TopologyError> {
        let mut errors = Vec::new();
        for (name, topic) in &mut self.topics {
            for (field, format) in [("key", &mut topic.key), ("value", &mut topic.value)] {
                if let PayloadFormat::Avro(schema) = format
                    && let Err(message) = schema.resolve(&self.base_dir)
                {
                    errors.push(TopologyError::new(
                        format!("topics.{name}.{field}"),
                        message,
                    ));
                }
            }
        }
        let kafka = &mut self.connection.kafka;
        if let Some(sasl) = &mut kafka.sasl {
            read_password(
                &mut sasl.password,
                sasl.password_file.as_deref(),
                "connection.kafka.sasl",
                true,
                &mut errors,
            );
        }
        let registry = &mut self.connection.registry;
        let needed = registry.username.is_some();
        read_password(
            &mut registry.password,
            registry.password_file.as_deref(),
            "connection.registry",
            needed,
            &mut errors,
        );
        if !needed && (registry.password.is_some() || registry.password_file.is_some()) {
            errors.push(TopologyError::new(
                "connection.registry.username",
                "required when a password is given",
            ));
        }
        errors
    }
}

/// Settles `password` from the inline value or `file` (exactly one when `required`, at most one
/// otherwise).
fn read_password(
    password: &mut Option<Secret>,
    file: Option<&Path>,
    block: &str,
    required: bool,
    errors: &mut Vec<TopologyError>,
) {
    match (password.is_some(), file) {
        (true, Some(_)) => errors.push(TopologyError::new(
            format!("{block}.password_file"),
            "give either password or password_file, not both",
        )),
        (false, None) if required => errors.push(TopologyError::new(
            block,
            "one of password or password_file is required",
        )),
        (false, Some(file)) => match read_secret_file(file) {
            Ok(secret) => *password = Some(secret),
            Err(message) => errors.push(TopologyError::new(
                format!("{block}.password_file"),
                message,
            )),
        },
        _ => {}
    }
}

/// Reads a password file, dropping one trailing newline. Errors name the file, never its content.
fn read_secret_file(file: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(Secret::new(value))
}

/// Points errors about environment-provided values at the variable responsible.
fn annotate(mut errors: TopologyErrors, provenance: &Provenance) -> TopologyErrors {
    for error in &mut errors.0 {
        if let Some(source) = provenance.get(&error.path) {
            error.message = format!("{} ({source})", error.message);
        }
    }
    errors
}
