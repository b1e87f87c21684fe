/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::matching::MatcherConfig;

/// Estimated pickup time in seconds for a driver `distance_m` away (great circle):
/// `distance_m × detour_factor / speed_mps`, by `MatcherConfig::eta_s`, the estimate the
/// matcher ranks candidates with. NULL if any argument is NULL, `distance_m` is negative or
/// not finite, or `detour_factor` / `speed_mps` are outside what the matcher accepts.
#[udf]
fn eta_s(distance_m: f64, detour_factor: f64, speed_mps: f64) -> Option<f64> {
    if !(distance_m.is_finite() && distance_m >= 0.0) {
        return None;
    }
    let config = MatcherConfig {
        detour_factor,
        speed_mps,
        ..MatcherConfig::default()
    };
    config.validate().ok()?;
    Some(config.eta_s(distance_m))
}
