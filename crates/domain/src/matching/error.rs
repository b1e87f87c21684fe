//! The error types of the [`matching`](super) module, one per kind of caller mistake.

use thiserror::Error;

use crate::geo::GeoError;

/// A [`MatcherConfig`](super::MatcherConfig) field outside its range.
///
/// It names the field as `topology.yaml` spells it under `operators.matcher.params` (with
/// `weights.eta` for a weight), so a startup failure points straight at the line to fix.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("matcher config `{field}` {requirement} (got {value})")]
pub struct ConfigError {
    /// The offending field, e.g. `radius_m` or `weights.rating`.
    pub field: &'static str,
    /// What the field must satisfy, e.g. "must be finite and > 0".
    pub requirement: &'static str,
    /// The rejected value, rendered.
    pub value: String,
}

/// Why an input record or seed could not be applied. The matcher's state is unchanged when
/// one of these is returned, so the operator can send the record to the DLQ and go on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MatchError {
    /// A driver position or pickup point that is not a valid coordinate.
    #[error("invalid position: {0}")]
    Position(#[from] GeoError),
    /// A driver profile value out of range.
    #[error("driver profile `{field}` must be {requirement} (got {value})")]
    Profile {
        /// `rating` or `acceptance_rate`.
        field: &'static str,
        /// The accepted range.
        requirement: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A surge multiplier that is NaN, infinite, zero or negative.
    #[error("surge multiplier must be finite and > 0 (got {0})")]
    Surge(f64),
    /// [`seed_proposal`](super::Matcher::seed_proposal) or
    /// [`seed_unfilled`](super::Matcher::seed_unfilled) outside
    /// [`begin_restore`](super::Matcher::begin_restore) ..
    /// [`end_restore`](super::Matcher::end_restore).
    #[error("outputs can only be seeded while restoring")]
    NotRestoring,
    /// A seeded proposal whose attempt number this configuration could never have produced.
    #[error("seeded proposal {proposal_id} has attempt {attempt}, outside 1..={max_attempts}")]
    SeedAttempt {
        /// The seeded proposal's id.
        proposal_id: String,
        /// Its attempt number.
        attempt: u32,
        /// The configured `max_attempts`.
        max_attempts: u32,
    },
}

/// A cost matrix that [`optimal_assignment`](super::optimal_assignment) cannot solve.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum AssignmentError {
    /// The slice does not hold `rows × cols` entries.
    #[error("cost matrix has {len} entries; {rows} rows × {cols} columns expected")]
    Shape {
        /// Rows requested.
        rows: usize,
        /// Columns requested.
        cols: usize,
        /// Entries given.
        len: usize,
    },
    /// An allowed pair with a NaN, infinite or negative cost.
    #[error("cost at row {row}, column {col} is {value}; costs must be finite and >= 0")]
    Cost {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The rejected cost.
        value: f64,
    },
}
