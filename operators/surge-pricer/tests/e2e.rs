//! End to end on the real broker, from the topology: `surgeflow simulate` (seeded, real time)
//! through both routers and the surge-pricer. Every multiplier published must carry the supply
//! and demand that an independent count over the same input gives, which this test computes
//! itself from what the simulator wrote; and the pricer's queryable state must answer for the
//! cells it owns and refuse the others.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use surgeflow_devstack::probe::http_request;
use surgeflow_domain::geo::Cell;
use surgeflow_schema::{DriverStatus, LocationUpdate, SurgeMultiplier, TripRequested};
use surgeflow_testkit::{
    OperatorProcess, Received, TestTopology, free_port, read_committed, workspace_binary,
};

mod short_windows;
use short_windows::short_windows;

/// The independent count: supply and demand of `cell`/`product` as the documented model defines
/// them, straight from the simulator's records.
fn expected(
    pings: &BTreeMap<String, Vec<LocationUpdate>>,
    requests: &[TripRequested],
    out: &SurgeMultiplier,
    supply_ttl_ms: i64,
) -> (i32, i32) {
    let cell = Cell::parse(&out.cell).unwrap();
    let precision = cell.precision();
    let in_cell = |lat: f64, lon: f64| Cell::from_lat_lon(lat, lon, precision).unwrap() == cell;
    let supply = pings
        .values()
        .filter_map(|history| {
            history
                .iter()
                .rev()
                .find(|p| p.event_time <= out.computed_at)
        })
        .filter(|p| {
            p.event_time > out.computed_at - supply_ttl_ms
                && p.status == DriverStatus::Available
                && p.product == out.product
                && in_cell(p.lat, p.lon)
        })
        .count();
    let demand = requests
        .iter()
        .filter(|r| {
            r.product == out.product
                && (out.window_start..out.window_end).contains(&r.event_time)
                && in_cell(r.pickup_lat, r.pickup_lon)
        })
        .count();
    (supply as i32, demand as i32)
}

#[tokio::test(flavor = "multi_thread")]
async fn published_supply_and_demand_equal_an_independent_count() {
    let t = TestTopology::with("pricer", short_windows);
    t.apply().await;
    let port = free_port();
    let _routers = [
        OperatorProcess::start(
            workspace_binary("surgeflow-location-router", "location-router"),
            &t,
            "e2e-0",
        ),
        OperatorProcess::start(
            workspace_binary("surgeflow-trip-router", "trip-router"),
            &t,
            "e2e-0",
        ),
    ];
    let _pricer = OperatorProcess::start_on(env!("CARGO_BIN_EXE_surge-pricer"), &t, "e2e-0", port);

    let cli = workspace_binary("surgeflow-cli", "surgeflow");
    let sim = std::process::Command::new(cli)
        .args([
            "simulate",
            "--duration",
            "25s",
            "--seed",
            "7",
            "--drivers",
            "400",
            "--requests-per-s",
            "8",
        ])
        .args([
            "--radius-m",
            "3000",
            "--topic-prefix",
            &t.prefix,
            "--topology",
        ])
        .arg(&t.path)
        .output()
        .expect("running surgeflow simulate");
    assert!(
        sim.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    // Queryable state, while the city is live: with the short windows, supply expires
    // seconds after the last ping, so later the box may rightly be empty.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let bbox = http_request(
        addr,
        "GET",
        "/cells?bbox=40.6,-74.1,40.9,-73.8",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let cells: serde_json::Value = serde_json::from_str(&bbox.body).unwrap();
    assert!(
        cells["cells"].as_array().is_some_and(|c| !c.is_empty()),
        "{}",
        bbox.body
    );
    // Let the pricer's watermark pass the last ticks.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let mut pings: BTreeMap<String, Vec<LocationUpdate>> = BTreeMap::new();
    let sent =
        read_committed::<LocationUpdate>(&t.topic("location.update"), 1, Duration::from_secs(30))
            .await;
    for r in sent {
        pings
            .entry(r.value.driver_id.clone())
            .or_default()
            .push(r.value);
    }
    for history in pings.values_mut() {
        history.sort_by_key(|p| p.event_time);
    }
    let requests: Vec<TripRequested> =
        read_committed::<TripRequested>(&t.topic("trip.requested"), 1, Duration::from_secs(30))
            .await
            .into_iter()
            .map(|r: Received<TripRequested>| r.value)
            .collect();
    let published =
        read_committed::<SurgeMultiplier>(&t.topic("surge.multiplier"), 1, Duration::from_secs(30))
            .await;
    assert!(!published.is_empty(), "no multiplier was published");
    assert!(
        published.iter().any(|p| p.value.multiplier > 1.0),
        "a tight market must surge somewhere"
    );

    let mut mismatches = Vec::new();
    for p in &published {
        let m = p.value.multiplier;
        assert!(
            (1.0..=3.0).contains(&m) && ((m * 10.0).round() - m * 10.0).abs() < 1e-9,
            "{m}"
        );
        assert_eq!(
            p.key,
            format!("{}:{}", p.value.cell, p.value.product.symbol())
        );
        let want = expected(&pings, &requests, &p.value, short_windows::SUPPLY_TTL_MS);
        if (p.value.supply, p.value.demand) != want {
            mismatches.push(format!(
                "{:?}: published {:?}, counted {want:?}",
                p.value,
                (p.value.supply, p.value.demand)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        published.len(),
        mismatches.join("\n")
    );
    let surging = published
        .iter()
        .filter(|p| p.value.multiplier > 1.0)
        .count();
    eprintln!(
        "{} multipliers published ({surging} above 1.0) from {} drivers' pings and {} requests; all match the count",
        published.len(),
        pings.len(),
        requests.len()
    );

    // A surging cell's region is owned here, a cell far away is refused.
    let cell = &published
        .iter()
        .find(|p| p.value.multiplier > 1.0)
        .map(|p| p.value.cell.clone())
        .unwrap_or_default();
    let one = http_request(
        addr,
        "GET",
        &format!("/cells/{cell}"),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(one.status, 200, "{}", one.body);
    let body: serde_json::Value = serde_json::from_str(&one.body).unwrap();
    assert_eq!(body["owned"], true);
    let faraway = http_request(addr, "GET", "/cells/u4pruy", None, Duration::from_secs(5)).unwrap();
    assert_eq!(faraway.status, 404);
    for probe in ["/healthz", "/readyz"] {
        let answer = http_request(addr, "GET", probe, None, Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, 200, "{probe}: {}", answer.body);
    }
    let metrics = http_request(addr, "GET", "/metrics", None, Duration::from_secs(5)).unwrap();
    assert!(
        metrics.body.contains("surgeflow_records_in_total"),
        "{}",
        metrics.body
    );
}
