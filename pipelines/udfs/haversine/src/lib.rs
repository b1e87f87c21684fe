//! Arroyo UDF `haversine_m(lat1, lon1, lat2, lon2)`: great-circle distance in metres,
//! computed by `surgeflow_domain::geo::haversine_m` so that SQL pipelines measure pickup
//! distances exactly as the native matcher does.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`).

include!("../udf.rs");
