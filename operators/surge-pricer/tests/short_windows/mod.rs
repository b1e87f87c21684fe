//! Short windows for the pricer's end-to-end tests, so that seconds of real time exercise every
//! part of the engine (ticks, windows sliding, TTL expiry, stale fallback).

use serde_yaml_ng::Value;

/// Sets the pricer's time parameters in a topology document.
pub fn short_windows(doc: &mut Value) {
    let params = &mut doc["operators"]["surge-pricer"]["params"];
    for (key, value) in [
        ("supply_ttl_ms", SUPPLY_TTL_MS),
        ("demand_window_ms", 20_000),
        ("demand_hop_ms", 5_000),
        ("allowed_lateness_ms", 3_000),
        ("idle_advance_ms", 2_000),
        ("tick_ms", 2_000),
        ("stale_after_ms", 30_000),
    ] {
        params[key] = Value::from(value);
    }
}

/// The supply TTL `short_windows` sets.
pub const SUPPLY_TTL_MS: i64 = 10_000;
