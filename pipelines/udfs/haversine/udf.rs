/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::geo::{self, LatLon};

/// Great-circle distance in metres between `(lat1, lon1)` and `(lat2, lon2)`, as
/// `geo::haversine_m` computes it for the matcher. NULL if any argument is NULL or either
/// point is invalid (latitude outside [-90, 90], longitude outside [-180, 180], NaN).
#[udf]
fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> Option<f64> {
    let a = LatLon::new(lat1, lon1).ok()?;
    let b = LatLon::new(lat2, lon2).ok()?;
    Some(geo::haversine_m(a, b))
}
