/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::surge::SurgeCurve;

/// Surge multiplier at a demand/supply `ratio` (`demand / max(supply, 1)`), through the
/// curve `points` (`'ratio:multiplier,...'`, e.g. `'1:1,2:1.5,4:2.5'`), clamped to
/// `[1, cap]` and rounded half up to a multiple of `step`: `SurgeCurve::multiplier`, the
/// code the native surge-pricer computes its target with. NULL if any argument is NULL,
/// the ratio is negative or not finite, or the curve, cap or step are invalid.
#[udf]
fn surge_multiplier(ratio: f64, points: &str, cap: f64, step: f64) -> Option<f64> {
    if !(ratio.is_finite() && ratio >= 0.0) {
        return None;
    }
    let curve = SurgeCurve::parse(points, cap, step).ok()?;
    Some(curve.multiplier(ratio))
}
