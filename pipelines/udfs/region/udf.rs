/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::geo::{Cell, Region};

/// The region of a geohash `cell` at `precision`: its prefix of that length, as
/// `Region::of` computes the partitioning key. NULL if any argument is NULL, `cell` is not
/// a geohash, or `precision` is outside 1..=the cell's precision.
#[udf]
fn geohash_region(cell: &str, precision: i64) -> Option<String> {
    let cell: Cell = cell.parse().ok()?;
    let precision = u8::try_from(precision).ok()?;
    Region::of(cell, precision)
        .ok()
        .map(|region| region.to_string())
}
