//! One table of supply/demand inputs, priced three ways that must agree:
//! - the native `SurgeEngine`, configured so that its published multiplier is its target
//!   (no smoothing, no damping, no hysteresis), fed real pings and requests;
//! - `SurgeCurve`, the pure function the engine computes that target with;
//! - the `surge_multiplier` UDF library, through its FFI.

use arrow::array::{Array, Float64Array, StringArray};
use surgeflow_domain::geo::Cell;
use surgeflow_domain::surge::{
    DriverKey, DriverPing, DriverStatus, SurgeConfig, SurgeCurve, SurgeEngine, TripKey, TripKind,
    TripSignal,
};
use surgeflow_udf_tests::Udf;

/// `(available drivers, requests)` and the multiplier the default curve
/// `(1, 1), (2, 1.5), (4, 2.5)`, cap 3, step 0.1 gives.
const TABLE: [(u32, u32, f64); 10] = [
    (0, 0, 1.0),
    (5, 0, 1.0),
    (0, 1, 1.0),  // no driver counts as one: ratio 1, not infinite
    (10, 5, 1.0), // ratio 0.5, flat before the first point
    (2, 3, 1.3),  // ratio 1.5 → 1.25, half-way, rounds up
    (3, 5, 1.3),  // ratio 1.667 → 1.333
    (3, 6, 1.5),  // ratio 2, a breakpoint
    (4, 13, 2.1), // ratio 3.25 → 2.125
    (1, 4, 2.5),  // ratio 4, the last point
    (1, 40, 2.5), // flat after the last point, below the cap
];

/// The ratio the engine prices: `demand / max(supply, 1)` (also what the SQL computes).
fn ratio(supply: u32, demand: u32) -> f64 {
    f64::from(demand) / f64::from(supply).max(1.0)
}

/// A config whose engine publishes its target at the first tick that counts the inputs.
fn undamped(curve: Vec<(f64, f64)>, cap: f64, step: f64) -> SurgeConfig {
    SurgeConfig {
        smoothing_rings: 0,
        ewma_alpha: 1.0,
        max_change_per_tick: cap,
        hysteresis: 0.0,
        curve,
        cap,
        step,
        ..SurgeConfig::default()
    }
}

/// The engine's multiplier per table row: each row in a cell of its own, `supply`
/// available drivers and `demand` requests stamped at `T0`, then the clock run until the
/// tick whose demand window first contains `T0`.
fn engine_multipliers(config: &SurgeConfig, rows: &[(u32, u32)]) -> Vec<f64> {
    const T0: i64 = 1_000_000;
    let mut engine = SurgeEngine::new(config.clone()).expect("valid config");
    let cells: Vec<Cell> = (0..rows.len())
        .map(|i| Cell::from_lat_lon(40.70 + 0.02 * i as f64, -74.0, 6).expect("valid point"))
        .collect();
    let mut key = 0;
    for (&(supply, demand), &cell) in rows.iter().zip(&cells) {
        for _ in 0..supply {
            key += 1;
            engine.ingest_ping(
                DriverPing {
                    driver: DriverKey(key),
                    position: cell.center(),
                    cell,
                    product: 0_u8,
                    status: DriverStatus::Available,
                    halo: false,
                    event_time_ms: T0,
                },
                T0,
            );
        }
        for _ in 0..demand {
            key += 1;
            engine.ingest_trip(
                TripSignal {
                    trip: TripKey(key),
                    kind: TripKind::Requested,
                    cell,
                    product: 0_u8,
                    halo: false,
                    event_time_ms: T0,
                },
                T0,
            );
        }
    }
    // Idle extrapolation moves the watermark just past the tick at 1_020_000, the first
    // whose demand window ([990_000, 1_020_000)) holds T0, while supply (30 s TTL) still
    // counts the pings.
    let mut updates = Vec::new();
    engine.advance(T0 + 30_001, &mut updates);
    assert_eq!(engine.last_tick(), Some(1_020_000));
    cells
        .iter()
        .map(|cell| {
            updates
                .iter()
                .rev()
                .find(|u| u.cell == *cell)
                .map_or(1.0, |u| u.multiplier)
        })
        .collect()
}

fn udf_multipliers(
    ratios: &[Option<f64>],
    points: &[Option<&str>],
    cap: f64,
    step: f64,
) -> Vec<Option<f64>> {
    let udf = Udf::load("surge").expect("surge UDF built");
    let n = ratios.len();
    let result = udf
        .run(vec![
            Float64Array::from(ratios.to_vec()).into_data(),
            StringArray::from(points.to_vec()).into_data(),
            Float64Array::from(vec![cap; n]).into_data(),
            Float64Array::from(vec![step; n]).into_data(),
        ])
        .expect("surge UDF runs");
    Float64Array::from(result).iter().collect()
}

/// Prices `rows` all three ways with one curve and returns the (agreed) multipliers.
fn priced_three_ways(curve: Vec<(f64, f64)>, cap: f64, step: f64, rows: &[(u32, u32)]) -> Vec<f64> {
    let config = undamped(curve, cap, step);
    let native = SurgeCurve::from_config(&config).expect("valid config");
    let points = native.points_text();
    let ratios: Vec<Option<f64>> = rows.iter().map(|&(s, d)| Some(ratio(s, d))).collect();
    let pure: Vec<f64> = rows
        .iter()
        .map(|&(s, d)| native.multiplier(ratio(s, d)))
        .collect();
    let engine = engine_multipliers(&config, rows);
    let udf = udf_multipliers(&ratios, &vec![Some(points.as_str()); rows.len()], cap, step);
    assert_eq!(engine, pure, "engine vs SurgeCurve");
    assert_eq!(
        udf,
        pure.iter().copied().map(Some).collect::<Vec<_>>(),
        "UDF vs SurgeCurve"
    );
    pure
}

#[test]
fn default_curve_table() {
    let rows: Vec<(u32, u32)> = TABLE.iter().map(|&(s, d, _)| (s, d)).collect();
    let want: Vec<f64> = TABLE.iter().map(|&(_, _, m)| m).collect();
    let defaults = SurgeConfig::default();
    assert_eq!(
        priced_three_ways(defaults.curve, defaults.cap, defaults.step, &rows),
        want
    );
}

#[test]
fn steep_curve_is_capped_at_a_step_below_the_cap() {
    let rows = [(1, 0), (4, 2), (1, 1), (2, 3), (1, 9)];
    assert_eq!(
        priced_three_ways(vec![(0.0, 1.0), (1.0, 5.0)], 2.95, 0.1, &rows),
        [1.0, 2.9, 2.9, 2.9, 2.9]
    );
    assert_eq!(
        priced_three_ways(vec![(0.0, 1.0), (4.0, 2.0)], 3.0, 0.25, &rows),
        [1.0, 1.25, 1.25, 1.5, 2.0]
    );
    assert_eq!(
        priced_three_ways(vec![(1.0, 1.0), (3.0, 3.0)], 3.0, 1.0, &rows),
        [1.0, 1.0, 1.0, 2.0, 3.0]
    );
}

#[test]
fn nulls_and_invalid_parameters_give_null() {
    let got = udf_multipliers(
        &[
            None,
            Some(2.0),
            Some(-1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(2.0),
            Some(2.0),
            Some(2.0),
        ],
        &[
            Some("1:1,2:1.5,4:2.5"),
            None,
            Some("1:1"),
            Some("1:1"),
            Some("1:1"),
            Some("1:x"),
            Some("2:1,1:2"),
            Some("1:0.5"),
        ],
        3.0,
        0.1,
    );
    assert_eq!(got, [None; 8]);
    // An invalid cap or step nulls every row rather than failing the batch.
    assert_eq!(
        udf_multipliers(&[Some(2.0)], &[Some("1:1,2:1.5")], 0.5, 0.1),
        [None]
    );
    assert_eq!(
        udf_multipliers(&[Some(2.0)], &[Some("1:1,2:1.5")], 3.0, 0.3),
        [None]
    );
    assert_eq!(
        udf_multipliers(&[Some(2.0)], &[Some("1:1,2:1.5")], 3.0, 0.1),
        [Some(1.5)]
    );
}
