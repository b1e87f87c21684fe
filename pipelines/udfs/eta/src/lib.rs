//! Arroyo UDF `eta_s(distance_m, detour_factor, speed_mps)`: the matcher's pickup-time
//! estimate, computed by `surgeflow_domain::matching::MatcherConfig::eta_s` (and its
//! parameters checked by `MatcherConfig::validate`), so SQL shows riders the ETA the native
//! matcher ranks drivers by. Compose with `haversine_m` for a distance.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`).

include!("../udf.rs");
