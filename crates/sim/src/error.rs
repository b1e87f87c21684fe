//! Errors of the simulator.

use thiserror::Error;

/// Why a [`Simulation`](crate::Simulation) could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimError {
    /// A [`CityConfig`](crate::CityConfig) field is out of range. `field` is the path of the
    /// field as written in Rust (e.g. `hotspots[1].radius_m`) so a CLI can map it back to the
    /// flag the user typed.
    #[error("invalid city config: `{field}` {reason}")]
    InvalidConfig {
        /// Path of the offending field.
        field: String,
        /// What is wrong with it, phrased to follow the field name.
        reason: String,
    },
}

impl SimError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SimError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
