//! The location-router binary against the real broker and registry: every valid ping lands on
//! `geo.driver` in its home region and each halo region, every bad record lands in the DLQ
//! with provenance, and neither a router killed with SIGKILL mid-stream nor instances joining
//! and leaving the group mid-stream lose or duplicate anything for `read_committed` readers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use surgeflow_domain::routing::{Geometry, check_point};
use surgeflow_schema::{DriverStatus, GeoDriver, LocationUpdate, Product};
use surgeflow_sim::{CityConfig, SimEvent, Simulation};
use surgeflow_testkit::bench::{metric_sum, revocation_commits, scrape};
use surgeflow_testkit::{
    OperatorProcess, TestTopology, free_port, produce, produce_paced, produce_raw, read_committed,
    read_raw,
};

const BINARY: &str = env!("CARGO_BIN_EXE_location-router");

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Real-looking pings from the simulated city, recent enough to pass the age check.
fn pings(drivers: u32, minutes: i64) -> Vec<(String, LocationUpdate)> {
    let start = now_ms() - minutes * 60_000 - 30_000;
    let config = CityConfig {
        drivers,
        start_time_ms: start,
        ..CityConfig::default()
    };
    let mut sim = Simulation::new(config, 11).unwrap();
    let mut events = Vec::new();
    sim.advance_to(start + minutes * 60_000, &mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            SimEvent::LocationUpdate(p) => Some((p.driver_id.clone(), p)),
            _ => None,
        })
        .collect()
}

/// What the router must write for `pings`: (region key, driver, event time, halo) → count.
fn expected(
    topology: &TestTopology,
    pings: &[(String, LocationUpdate)],
) -> BTreeMap<(String, String, i64, bool), usize> {
    let geo = &topology.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
    let mut out = BTreeMap::new();
    for (_, p) in pings {
        let route = geometry.route(check_point(p.lat, p.lon).unwrap()).unwrap();
        for (region, halo) in route.targets() {
            *out.entry((region.to_string(), p.driver_id.clone(), p.event_time, halo))
                .or_default() += 1;
        }
    }
    out
}

fn tally(
    records: &[surgeflow_testkit::Received<GeoDriver>],
) -> BTreeMap<(String, String, i64, bool), usize> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry((
            r.key.clone(),
            r.value.driver_id.clone(),
            r.value.event_time,
            r.value.halo,
        ))
        .or_default() += 1;
    }
    out
}

fn bad_ping(driver: &str, edit: impl FnOnce(&mut LocationUpdate)) -> (String, LocationUpdate) {
    let mut p = LocationUpdate {
        driver_id: driver.to_string(),
        lat: 40.75,
        lon: -73.98,
        accuracy_m: Some(5.0),
        speed_mps: None,
        heading_deg: None,
        status: DriverStatus::Available,
        product: Product::Economy,
        event_time: now_ms(),
    };
    edit(&mut p);
    (driver.to_string(), p)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_valid_pings_and_dead_letters_bad_ones() {
    let t = TestTopology::new("locrouter");
    t.apply().await;
    let input = t.topic("location.update");
    let good = pings(150, 2);
    let bad = vec![
        bad_ping("nan", |p| p.lat = f64::NAN),
        bad_ping("null-island", |p| (p.lat, p.lon) = (0.0, 0.0)),
        bad_ping("inaccurate", |p| p.accuracy_m = Some(500.0)),
        bad_ping("future", |p| p.event_time += 3_600_000),
        bad_ping("old", |p| p.event_time -= 7_200_000),
        bad_ping("out-of-range", |p| p.lat = 404.97812),
    ];
    produce(&input, &good).await;
    produce(&input, &bad).await;
    let garbage: [(&[u8], &[u8]); 4] = [
        (b"g1", b"not avro at all"),
        (b"g2", b"{\"driver_id\":\"json\"}"),
        (b"g3", &[0, 0, 0]),
        (b"g4", &[0, 0x7f, 0xff, 0xff, 0xf0, 2, 3]),
    ];
    produce_raw(&input, garbage);

    let mut router = OperatorProcess::start(BINARY, &t, "e2e-0");
    let want = expected(&t, &good);
    let total: usize = want.values().sum();
    let got =
        read_committed::<GeoDriver>(&t.topic("geo.driver"), total, Duration::from_secs(90)).await;
    assert_eq!(
        tally(&got),
        want,
        "geo.driver differs from the independent routing of the input"
    );
    assert!(
        got.iter().any(|r| r.value.halo),
        "the city is large enough for some halo copies"
    );

    let dead = read_raw(
        &t.topic("dlq.location.update"),
        bad.len() + garbage.len(),
        Duration::from_secs(30),
    );
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            let headers = m.headers().expect("DLQ records carry headers");
            let get = |k: &str| {
                headers
                    .iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| panic!("header {k} missing"))
            };
            assert_eq!(get("surgeflow.source.topic"), input);
            assert!(get("surgeflow.source.offset").parse::<i64>().is_ok());
            assert_eq!(get("surgeflow.operator"), "location-router");
            get("surgeflow.error.reason")
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "bad_magic",
            "bad_magic",
            "future_timestamp",
            "latitude_out_of_range",
            "non_finite_coordinate",
            "null_island",
            "poor_accuracy",
            "too_old",
            "truncated",
            "unknown_schema_id"
        ]
    );

    // SIGTERM: finish the batch, commit, leave the group, exit 0.
    router.signal(15);
    assert_eq!(
        router.wait(Duration::from_secs(20)),
        Some(0),
        "graceful shutdown exits 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_router_neither_loses_nor_duplicates() {
    let t = TestTopology::new("locrouter-crash");
    t.apply().await;
    let input = t.topic("location.update");
    let good = pings(600, 2);
    produce(&input, &good).await;
    let want = expected(&t, &good);
    let total: usize = want.values().sum();

    // Kill -9 a few times while it works through the input, restarting with the same
    // instance id (so the new producer fences the old one's open transaction). A fixed delay
    // cannot aim mid-stream at every speed, so each kill follows the first commit the router
    // reports (the counter grows only once a transaction committed) and catches it working
    // through the rest. Each kill must land mid-stream, or the test proves nothing: count what
    // was committed at each kill.
    let output = t.topic("geo.driver");
    let mut mid_stream_kills = 0;
    for _ in 0..3 {
        let port = free_port();
        let router = OperatorProcess::start_on(BINARY, &t, "crash-0", port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric_sum(&scrape(port), "surgeflow_records_out_total", &[]).unwrap_or(0.0) == 0.0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        router.signal(9);
        let committed = read_raw(&output, usize::MAX, Duration::from_millis(1500)).len();
        eprintln!("killed after a commit with {committed} of {total} records committed");
        if committed > 0 && committed < total {
            mid_stream_kills += 1;
        }
    }
    assert!(mid_stream_kills > 0, "no kill landed mid-stream");
    let _router = OperatorProcess::start(BINARY, &t, "crash-0");
    assert_exactly(&t, &want, "after SIGKILLs").await;
}

/// Reads the router's whole output and checks it is `want`: nothing lost, nothing twice.
async fn assert_exactly(
    t: &TestTopology,
    want: &BTreeMap<(String, String, i64, bool), usize>,
    after: &str,
) {
    let total: usize = want.values().sum();
    let got =
        read_committed::<GeoDriver>(&t.topic("geo.driver"), total, Duration::from_secs(90)).await;
    let got = tally(&got);
    let duplicated: usize = got
        .iter()
        .filter(|(k, n)| **n > want.get(*k).copied().unwrap_or(0))
        .count();
    let lost: usize = want
        .iter()
        .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
        .count();
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "{after}: {lost} lost, {duplicated} duplicated of {total}"
    );
    assert_eq!(&got, want);
}

/// Waits until the router on `port` reports a committed output.
fn wait_for_first_commit(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(&scrape(port), "surgeflow_records_out_total", &[]).unwrap_or(0.0) == 0.0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_out_and_in_mid_stream_neither_loses_nor_duplicates() {
    // Batches open for a second: every rebalance while the input flows finds one in progress.
    let t = TestTopology::with("locrouter-scale", |doc| {
        doc["operators"]["location-router"]["commit_interval_ms"] =
            serde_yaml_ng::Value::Number(1000.into());
    });
    t.apply().await;
    let input = t.topic("location.update");
    let good = pings(600, 2);
    let want = expected(&t, &good);

    let first_port = free_port();
    let mut first = OperatorProcess::start_on(BINARY, &t, "scale-0", first_port);
    // The input streams in for about 12 s, so each rebalance finds records processed and
    // produced in an open transaction, which the revoked instance must commit before its
    // partitions move.
    let feeder = tokio::spawn(async move {
        produce_paced(&input, &good, 20, Duration::from_millis(10)).await;
    });
    wait_for_first_commit(first_port);
    // Scale out: the cooperative-sticky assignor moves part of the first instance's partitions.
    let second_port = free_port();
    let _second = OperatorProcess::start_on(BINARY, &t, "scale-1", second_port);
    wait_for_first_commit(second_port);
    let first_commits = revocation_commits(first_port);
    // Scale in: the first leaves; the second takes its partitions back mid-stream.
    first.signal(15);
    assert_eq!(
        first.wait(Duration::from_secs(30)),
        Some(0),
        "graceful exit"
    );
    // And out again.
    let third_port = free_port();
    let _third = OperatorProcess::start_on(BINARY, &t, "scale-2", third_port);
    wait_for_first_commit(third_port);
    let second_commits = revocation_commits(second_port);
    assert!(
        !feeder.is_finished(),
        "the rebalances came before the input ended"
    );
    feeder.await.expect("feeding the input");
    eprintln!("revocations committed / failed: first {first_commits:?}, second {second_commits:?}");
    assert!(
        first_commits.0 + second_commits.0 > 0.0 && first_commits.1 + second_commits.1 == 0.0,
        "revocations committed batches in progress, and none failed"
    );
    assert_exactly(&t, &want, "after scaling out and in").await;
}
