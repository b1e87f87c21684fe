//! The matcher's driver index against a brute-force scan: a radius query must return exactly
//! the drivers whose latest ping is available, of the product, alive and within the radius.

use proptest::prelude::*;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon, haversine_m};
use surgeflow_domain::matching::{DriverIndex, DriverPing, DriverStatus, MatcherConfig};

const TTL_MS: i64 = 30_000;

#[derive(Debug, Clone)]
struct Ping {
    driver: usize,
    position: LatLon,
    status: DriverStatus,
    product: u8,
    event_time: i64,
}

/// A point `east_m` / `north_m` metres from `centre` (flat-earth offsets are fine at these
/// distances), longitude wrapped across the antimeridian.
fn offset(centre: LatLon, east_m: f64, north_m: f64) -> LatLon {
    let dlat = (north_m / EARTH_RADIUS_M).to_degrees();
    let dlon = (east_m / (EARTH_RADIUS_M * centre.lat.to_radians().cos())).to_degrees();
    let mut lon = centre.lon + dlon;
    if lon > 180.0 {
        lon -= 360.0;
    } else if lon < -180.0 {
        lon += 360.0;
    }
    LatLon {
        lat: (centre.lat + dlat).clamp(-90.0, 90.0),
        lon,
    }
}

fn status() -> impl Strategy<Value = DriverStatus> {
    prop_oneof![
        6 => Just(DriverStatus::Available),
        1 => Just(DriverStatus::Dispatched),
        1 => Just(DriverStatus::OnTrip),
        1 => Just(DriverStatus::Offline),
    ]
}

fn centre() -> impl Strategy<Value = LatLon> {
    prop_oneof![
        4 => (-70.0f64..70.0, -180.0f64..180.0),
        // Straddling the antimeridian.
        1 => (-70.0f64..70.0, prop_oneof![179.99f64..180.0, -180.0f64..-179.99]),
    ]
    .prop_map(|(lat, lon)| LatLon { lat, lon })
}

fn pings(centre: LatLon) -> impl Strategy<Value = Vec<Ping>> {
    prop::collection::vec(
        (
            0usize..25,
            -6_000.0f64..6_000.0,
            -6_000.0f64..6_000.0,
            status(),
            0u8..2,
            0i64..60_000,
        ),
        0..120,
    )
    .prop_map(move |raw| {
        raw.into_iter()
            .map(|(driver, east, north, status, product, event_time)| Ping {
                driver,
                position: offset(centre, east, north),
                status,
                product,
                event_time,
            })
            .collect()
    })
}

fn scenario() -> impl Strategy<Value = (LatLon, Vec<Ping>, f64, u8, i64, u8, Option<i64>)> {
    centre().prop_flat_map(|c| {
        (
            Just(c),
            pings(c),
            0.0f64..5_000.0,
            0u8..2,
            0i64..100_000,
            5u8..=7,
            prop::option::of(0i64..100_000),
        )
    })
}

/// The latest ping of each driver (largest event time; of equal ones, the last applied).
fn latest(pings: &[Ping]) -> Vec<&Ping> {
    let mut best: Vec<Option<&Ping>> = vec![None; 25];
    for ping in pings {
        let slot = &mut best[ping.driver];
        if slot.is_none_or(|b| ping.event_time >= b.event_time) {
            *slot = Some(ping);
        }
    }
    best.into_iter().flatten().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn radius_query_equals_brute_force(
        (centre, pings, radius_m, product, now, precision, sweep_at) in scenario()
    ) {
        let config = MatcherConfig {
            index_precision: precision,
            driver_ttl_ms: TTL_MS as u64,
            ..MatcherConfig::default()
        };
        let mut index = DriverIndex::new(&config).expect("valid config");
        let names: Vec<String> = (0..25).map(|i| format!("driver-{i:02}")).collect();
        for ping in &pings {
            index
                .apply(&DriverPing {
                    driver_id: &names[ping.driver],
                    position: ping.position,
                    status: ping.status,
                    product: ping.product,
                    event_time: ping.event_time,
                })
                .expect("valid ping");
        }
        // Sweeping at or before the query time must not change the answer.
        if let Some(sweep_at) = sweep_at {
            index.sweep(sweep_at.min(now));
        }
        let found: Vec<(String, f64)> = index
            .within(centre, radius_m, product, now)
            .expect("valid query")
            .into_iter()
            .map(|d| (d.driver_id.to_owned(), d.distance_m))
            .collect();
        let mut expected: Vec<(String, f64)> = latest(&pings)
            .into_iter()
            .filter(|p| p.status == DriverStatus::Available && p.product == product)
            .filter(|p| now - p.event_time <= TTL_MS)
            .map(|p| (names[p.driver].clone(), haversine_m(centre, p.position)))
            .filter(|(_, d)| *d <= radius_m)
            .collect();
        expected.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        prop_assert_eq!(found, expected);
    }
}

#[test]
fn halo_drivers_across_the_antimeridian_are_found() {
    let pickup = LatLon {
        lat: 0.0,
        lon: 179.999,
    };
    let across = LatLon {
        lat: 0.0,
        lon: -179.999,
    };
    let mut index = DriverIndex::new(&MatcherConfig::default()).expect("valid config");
    index
        .apply(&DriverPing {
            driver_id: "east",
            position: across,
            status: DriverStatus::Available,
            product: (),
            event_time: 0,
        })
        .expect("valid ping");
    let found = index.within(pickup, 500.0, (), 0).expect("valid query");
    assert_eq!(found.len(), 1);
    assert!((found[0].distance_m - 222.4).abs() < 1.0, "{found:?}");
}
