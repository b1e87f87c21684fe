//! Arroyo UDF `surge_multiplier(ratio, points, cap, step)`: the surge curve of
//! `surgeflow_domain::surge::SurgeCurve`, so that Arroyo SQL pipelines price a cell with the
//! same curve, clamp and quantisation as the native `surge-pricer` (which delegates to the
//! same type), not with a copy.
//!
//! The function lives in `udf.rs`, in the single-file form Arroyo's UI and API accept; this
//! crate compiles that very file into the `cdylib` Arroyo loads (one UDF per library, as
//! `#[udf]` exports the fixed symbol `__run`). The curve arrives as text because a `Vec`
//! argument would make Arroyo treat the function as an aggregate. It is parsed per row:
//! a handful of floats, cheap next to the window aggregation feeding it.

include!("../udf.rs");
