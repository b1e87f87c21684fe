//! Arroyo UDF `geohash_neighbour(cell, direction)`: one neighbour of a geohash cell,
//! computed by `surgeflow_domain::geo::Cell::neighbour`.
//!
//! Why one function with a direction argument rather than a list: `arroyo-udf-plugin` 0.2
//! scalar UDFs cannot return lists (the generated `__run` only builds primitive, string or
//! binary columns), and a `Vec` argument turns a function into an aggregate. Eight
//! libraries, one per direction, would work but cost eight builds and uploads for the same
//! code; a direction argument keeps it to one, and SQL can still produce all eight with a
//! `UNION ALL` or eight calls in one `SELECT`.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`).

include!("../udf.rs");
