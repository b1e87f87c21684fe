//! The one error type of the [`surge`](crate::surge) module.

use thiserror::Error;

/// Why a surge configuration or a restored multiplier was refused.
///
/// Records are never errors: a record the engine cannot use is counted under a reason
/// ([`RejectReason`](super::RejectReason)) so that one bad event cannot stop a partition.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SurgeError {
    /// A [`SurgeConfig`](super::SurgeConfig) field is out of range or inconsistent with
    /// another; `field` is the field's name, as in `topology.yaml` where it exists there.
    #[error("surge config `{field}`: {reason}")]
    InvalidConfig {
        /// Name of the offending field.
        field: &'static str,
        /// What is wrong with it, including the value.
        reason: String,
    },
    /// A multiplier given to [`SurgeEngine::set_published`](super::SurgeEngine::set_published)
    /// is NaN or infinite.
    #[error("multiplier {0} is not a finite number")]
    InvalidMultiplier(f64),
}
