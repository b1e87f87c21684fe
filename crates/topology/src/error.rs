//! Error types: every problem names the setting it is about.

use std::fmt;

/// One problem with a topology: the setting it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, .message))]
pub struct TopologyError {
    /// Dotted path of the setting, using map keys as written in the file (topic names keep their
    /// dots) and `[i]` for list items, e.g. `operators.matcher.inputs[2]`. Empty for problems with
    /// the document as a whole (unreadable file, YAML syntax).
    pub path: String,
    /// What is wrong. Never contains a secret.
    pub message: String,
}

impl TopologyError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

fn render(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Every problem found while loading a topology, in document order where that is meaningful.
///
/// Displays as one `path: message` line per problem so a CLI can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TopologyErrors(pub Vec<TopologyError>);

impl TopologyErrors {
    pub(crate) fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![TopologyError::new(path, message)])
    }

    /// The individual problems.
    pub fn iter(&self) -> std::slice::Iter<'_, TopologyError> {
        self.0.iter()
    }

    /// The problems reported for exactly this setting path.
    pub fn at<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a TopologyError> + use<'a> {
        let path = path.to_owned();
        self.0.iter().filter(move |e| e.path == path)
    }
}

impl fmt::Display for TopologyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a TopologyErrors {
    type Item = &'a TopologyError;
    type IntoIter = std::slice::Iter<'a, TopologyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
