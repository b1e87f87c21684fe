//! Arroyo UDF `geohash_region(cell, precision)`: the region (geohash prefix) of a cell,
//! computed by `surgeflow_domain::geo::Region` so that SQL pipelines group by the same
//! regions the native routers key their topics by.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`).

include!("../udf.rs");
