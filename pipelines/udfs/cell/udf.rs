/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::geo::Cell;

/// The geohash cell (lowercase text, `precision` characters) containing the point
/// `(lat, lon)`: `Cell::from_lat_lon`, as the location router assigns cells. NULL if any
/// argument is NULL, the point is invalid, or `precision` is outside 1..=12.
#[udf]
fn geohash_cell(lat: f64, lon: f64, precision: i64) -> Option<String> {
    let precision = u8::try_from(precision).ok()?;
    Cell::from_lat_lon(lat, lon, precision)
        .ok()
        .map(|cell| cell.to_string())
}
