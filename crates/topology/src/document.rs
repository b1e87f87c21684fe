//! The parsed YAML document between parsing and typing: environment overrides and `${...}`
//! substitution are applied here, then the tree is deserialized into the typed model.
//!
//! A scalar that came from the environment (a whole `${VAR}` or an override) is kept as
//! [`Node::Untyped`] text and only gets a type when the model asks for one: a string setting takes
//! the text verbatim (a password `0123` stays `0123`), a number or boolean setting reads the text
//! as a YAML scalar (`partitions: ${N:-6}` is the integer 6).

use std::collections::BTreeMap;

use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_yaml_ng::Value;

use crate::error::TopologyError;
use crate::interpolate::interpolate;

/// Prefix of the environment variables that override single settings.
const OVERRIDE_PREFIX: &str = "SURGEFLOW__";

/// One node of the document.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A scalar typed by the YAML source (null, bool, number or string).
    Typed(Value),
    /// Text from the environment, typed by the setting it lands in.
    Untyped(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// Where environment-provided values ended up: setting path -> description of the source, used
/// to point errors about those settings at the variable responsible.
pub(crate) type Provenance = BTreeMap<String, String>;

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Node {
    /// Converts a parsed YAML value. Mapping keys must be scalars; tags are not supported.
    pub(crate) fn from_value(value: Value, path: &str) -> Result<Node, TopologyError> {
        Ok(match value {
            Value::Sequence(items) => Node::Seq(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| Node::from_value(item, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Mapping(mapping) => Node::Map(
                mapping
                    .into_iter()
                    .map(|(key, value)| {
                        let key = match key {
                            Value::String(s) => s,
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => {
                                return Err(TopologyError::new(
                                    path,
                                    "mapping keys must be strings",
                                ));
                            }
                        };
                        let node = Node::from_value(value, &child_path(path, &key))?;
                        Ok((key, node))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Tagged(tagged) => {
                return Err(TopologyError::new(
                    path,
                    format!("YAML tags are not supported (found `{}`)", tagged.tag),
                ));
            }
            scalar => Node::Typed(scalar),
        })
    }

    fn is_null(&self) -> bool {
        match self {
            Node::Typed(value) => value.is_null(),
            Node::Untyped(text) => read_scalar(text).is_null(),
            Node::Seq(_) | Node::Map(_) => false,
        }
    }

    /// Replaces every string scalar by its `${...}` substitution, collecting one error per
    /// scalar that cannot be substituted. Values set by overrides are left alone.
    pub(crate) fn interpolate(
        &mut self,
        path: &str,
        env: &BTreeMap<String, String>,
        provenance: &mut Provenance,
        errors: &mut Vec<TopologyError>,
    ) {
        match self {
            Node::Typed(Value::String(text)) => match interpolate(text, env) {
                Ok(out) if out.whole_reference => {
                    // Only the variable name: a default may be a secret.
                    let name = text[2..].split([':', '}']).next().unwrap_or_default();
                    provenance.insert(path.to_owned(), format!("value from `${{{name}}}`"));
                    *self = Node::Untyped(out.text);
                }
                Ok(out) => *text = out.text,
                Err(error) => errors.push(TopologyError::new(path, error.to_string())),
            },
            Node::Typed(_) | Node::Untyped(_) => {}
            Node::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    item.interpolate(&format!("{path}[{i}]"), env, provenance, errors);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    value.interpolate(&child_path(path, key), env, provenance, errors);
                }
            }
        }
    }

    /// Applies every `SURGEFLOW__A__B__C=value` variable in `env` (in name order), collecting one
    /// error per variable that cannot be applied.
    pub(crate) fn apply_overrides(
        &mut self,
        env: &BTreeMap<String, String>,
        provenance: &mut Provenance,
        errors: &mut Vec<TopologyError>,
    ) {
        for (variable, value) in env {
            let Some(setting) = variable.strip_prefix(OVERRIDE_PREFIX) else {
                continue;
            };
            match self.apply_override(variable, setting, value) {
                Ok(path) => {
                    provenance.insert(path, format!("set by environment variable {variable}"));
                }
                Err(error) => errors.push(error),
            }
        }
    }

    fn apply_override(
        &mut self,
        variable: &str,
        setting: &str,
        value: &str,
    ) -> Result<String, TopologyError> {
        let segments: Vec<&str> = setting.split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(TopologyError::new(
                "",
                format!(
                    "environment variable {variable}: an override names a setting path as \
                     {OVERRIDE_PREFIX}SEGMENT__SEGMENT..., with no empty segment"
                ),
            ));
        }
        let mut path = String::new();
        let mut node = self;
        for segment in segments {
            if node.is_null() {
                *node = Node::Map(Vec::new());
            }
            let Node::Map(entries) = node else {
                let shape = match node {
                    Node::Seq(_) => "a list",
                    _ => "a scalar",
                };
                return Err(TopologyError::new(
                    path.clone(),
                    format!(
                        "environment variable {variable} cannot be applied: this setting is \
                         {shape}, not a mapping"
                    ),
                ));
            };
            let wanted = normalize(segment);
            let matching: Vec<usize> = entries
                .iter()
                .enumerate()
                .filter(|(_, (key, _))| normalize(key) == wanted)
                .map(|(i, _)| i)
                .collect();
            let index = match matching[..] {
                [] => {
                    entries.push((segment.to_lowercase(), Node::Typed(Value::Null)));
                    entries.len() - 1
                }
                [index] => index,
                _ => {
                    let keys: Vec<&str> = matching.iter().map(|&i| entries[i].0.as_str()).collect();
                    return Err(TopologyError::new(
                        path.clone(),
                        format!(
                            "environment variable {variable} is ambiguous: `{segment}` matches \
                             the keys {}",
                            keys.join(", ")
                        ),
                    ));
                }
            };
            let (key, child) = &mut entries[index];
            path = child_path(&path, key);
            node = child;
        }
        *node = Node::Untyped(value.to_owned());
        Ok(path)
    }
}

/// Override segments match keys case-insensitively, with `.`, `-` and `_` all equal.
fn normalize(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Reads environment-provided text as a YAML scalar; anything that is not a plain scalar
/// (a list, a mapping, invalid YAML) stays a string.
fn read_scalar(text: &str) -> Value {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(value @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => value,
        _ => Value::String(text.to_owned()),
    }
}

impl<'de> IntoDeserializer<'de, serde_yaml_ng::Error> for Node {
    type Deserializer = Node;

    fn into_deserializer(self) -> Node {
        self
    }
}

impl<'de> Deserializer<'de> for Node {
    type Error = serde_yaml_ng::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Node::Typed(value) => value.deserialize_any(visitor),
            Node::Untyped(text) => read_scalar(&text).deserialize_any(visitor),
            Node::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Map(entries) => {
                let mut map = MapDeserializer::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Node::Typed(Value::String(text)) | Node::Untyped(text) => visitor.visit_string(text),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            Node::Typed(Value::String(text)) | Node::Untyped(text) => {
                let variant: StringDeserializer<Self::Error> = text.into_deserializer();
                visitor.visit_enum(variant)
            }
            Node::Typed(value) => value.deserialize_enum(name, variants, visitor),
            Node::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            Node::Map(_) => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        Node::from_value(serde_yaml_ng::from_str(text).unwrap(), "").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Sample {
        count: i32,
        name: String,
        flag: Option<bool>,
    }

    #[test]
    fn untyped_text_takes_the_type_of_the_setting() {
        let node = Node::Map(vec![
            ("count".into(), Node::Untyped("6".into())),
            ("name".into(), Node::Untyped("0123".into())),
            ("flag".into(), Node::Untyped("".into())),
        ]);
        let sample: Sample = serde_path_to_error::deserialize(node).unwrap();
        assert_eq!(
            sample,
            Sample {
                count: 6,
                name: "0123".into(),
                flag: None
            }
        );
    }

    #[test]
    fn overrides_match_keys_loosely_and_create_missing_ones() {
        let mut root = parse("topics:\n  location.update:\n    partitions: 6\n");
        let mut provenance = Provenance::new();
        let mut errors = Vec::new();
        root.apply_overrides(
            &env(&[
                ("SURGEFLOW__TOPICS__LOCATION_UPDATE__PARTITIONS", "12"),
                ("SURGEFLOW__TOPICS__LOCATION_UPDATE__RETENTION_MS", "5"),
                ("SURGEFLOW_NOT_AN_OVERRIDE", "x"),
            ]),
            &mut provenance,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let Node::Map(top) = &root else { panic!() };
        let Node::Map(topics) = &top[0].1 else {
            panic!()
        };
        assert_eq!(topics.len(), 1);
        let Node::Map(topic) = &topics[0].1 else {
            panic!()
        };
        let keys: Vec<&str> = topic.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["partitions", "retention_ms"]);
        assert!(matches!(&topic[0].1, Node::Untyped(t) if t == "12"));
        assert!(provenance.contains_key("topics.location.update.partitions"));
    }

    #[test]
    fn an_override_through_a_scalar_names_the_variable() {
        let mut root = parse("geo:\n  halo_m: 2500\n");
        let mut errors = Vec::new();
        root.apply_overrides(
            &env(&[("SURGEFLOW__GEO__HALO_M__X", "1")]),
            &mut Provenance::new(),
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "geo.halo_m");
        assert!(
            errors[0].message.contains("SURGEFLOW__GEO__HALO_M__X"),
            "{}",
            errors[0]
        );
    }
}
