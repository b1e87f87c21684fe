//! Arroyo UDF `geohash_cell(lat, lon, precision)`: the geohash cell of a point, computed by
//! `surgeflow_domain::geo::Cell` so that SQL pipelines bucket drivers and riders into the
//! same cells as the native routers.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`).

include!("../udf.rs");
