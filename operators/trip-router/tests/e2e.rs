//! The trip-router binary against the real broker and registry: the events of all seven
//! `trip.*` topics arrive on `geo.trip` with their kind, keyed by the pickup's region (plus
//! halo copies); a pickup at (0, 0), a completed trip of zero duration and one faster than
//! `max_trip_speed_mps` go to the DLQ, each with its reason.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use surgeflow_domain::routing::{Geometry, check_point};
use surgeflow_schema::{GeoTrip, Product, TripCompleted, TripEventKind, TripRequested};
use surgeflow_sim::{CityConfig, SimEvent, Simulation};
use surgeflow_testkit::{OperatorProcess, TestTopology, produce, read_committed, read_raw};

const BINARY: &str = env!("CARGO_BIN_EXE_trip-router");

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Produces each event on its namespaced topic and returns (kind, trip, pickup) of each.
async fn produce_trips(
    t: &TestTopology,
    events: Vec<SimEvent>,
) -> Vec<(TripEventKind, String, f64, f64)> {
    let (mut req, mut acc, mut dec, mut can, mut arr, mut sta, mut com) = Default::default();
    fn keyed<T>(v: &mut Vec<(String, T)>, trip: &str, e: T) {
        v.push((trip.to_string(), e));
    }
    let mut sent = Vec::new();
    for event in events {
        let kind = match &event {
            SimEvent::LocationUpdate(_) => continue,
            SimEvent::TripRequested(_) => TripEventKind::Requested,
            SimEvent::TripAccepted(_) => TripEventKind::Accepted,
            SimEvent::TripDeclined(_) => TripEventKind::Declined,
            SimEvent::TripCancelled(_) => TripEventKind::Cancelled,
            SimEvent::TripDriverArrived(_) => TripEventKind::DriverArrived,
            SimEvent::TripStarted(_) => TripEventKind::Started,
            SimEvent::TripCompleted(_) => TripEventKind::Completed,
        };
        let trip = event.key().to_string();
        let (lat, lon) = match &event {
            SimEvent::TripRequested(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripAccepted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripDeclined(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripCancelled(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripDriverArrived(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripStarted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripCompleted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::LocationUpdate(_) => continue,
        };
        sent.push((kind, trip.clone(), lat, lon));
        match event {
            SimEvent::TripRequested(e) => keyed(&mut req, &trip, e),
            SimEvent::TripAccepted(e) => keyed(&mut acc, &trip, e),
            SimEvent::TripDeclined(e) => keyed(&mut dec, &trip, e),
            SimEvent::TripCancelled(e) => keyed(&mut can, &trip, e),
            SimEvent::TripDriverArrived(e) => keyed(&mut arr, &trip, e),
            SimEvent::TripStarted(e) => keyed(&mut sta, &trip, e),
            SimEvent::TripCompleted(e) => keyed(&mut com, &trip, e),
            SimEvent::LocationUpdate(_) => {}
        }
    }
    produce(&t.topic("trip.requested"), &req).await;
    produce(&t.topic("trip.accepted"), &acc).await;
    produce(&t.topic("trip.declined"), &dec).await;
    produce(&t.topic("trip.cancelled"), &can).await;
    produce(&t.topic("trip.driver_arrived"), &arr).await;
    produce(&t.topic("trip.started"), &sta).await;
    produce(&t.topic("trip.completed"), &com).await;
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_every_trip_topic_by_pickup_region() {
    let t = TestTopology::new("triprouter");
    t.apply().await;
    let start = now_ms() - 25 * 60_000;
    let config = CityConfig {
        drivers: 400,
        requests_per_s: 2.0,
        start_time_ms: start,
        ..CityConfig::default()
    };
    let mut sim = Simulation::new(config, 5).unwrap();
    let mut events = Vec::new();
    sim.advance_to(start + 20 * 60_000, &mut events);
    let sent = produce_trips(&t, events).await;
    let bad = TripRequested {
        trip_id: "trip-null-island".into(),
        rider_id: "r".into(),
        product: Product::Economy,
        pickup_lat: 0.0,
        pickup_lon: 0.0,
        dropoff_lat: None,
        dropoff_lon: None,
        event_time: now_ms(),
    };
    produce(&t.topic("trip.requested"), &[(bad.trip_id.clone(), bad)]).await;
    // A routable pickup, but no time taken, or 10 km in 100 s (100 m/s).
    let completed = |trip_id: &str, duration_s: f64, distance_m: f64| TripCompleted {
        trip_id: trip_id.into(),
        rider_id: "r".into(),
        product: Product::Economy,
        pickup_lat: 40.75,
        pickup_lon: -73.98,
        driver_id: "d".into(),
        dropoff_lat: 40.77,
        dropoff_lon: -73.95,
        distance_m: Some(distance_m),
        trip_duration_s: Some(duration_s),
        event_time: now_ms(),
    };
    let bad_trips = [
        completed("trip-zero-duration", 0.0, 3_000.0),
        completed("trip-too-fast", 100.0, 10_000.0),
    ];
    produce(
        &t.topic("trip.completed"),
        &bad_trips.map(|e| (e.trip_id.clone(), e)),
    )
    .await;

    let geo = &t.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
    let mut want: BTreeMap<(String, TripEventKind, String, bool), usize> = BTreeMap::new();
    for (kind, trip, lat, lon) in &sent {
        for (region, halo) in geometry
            .route(check_point(*lat, *lon).unwrap())
            .unwrap()
            .targets()
        {
            *want
                .entry((region.to_string(), *kind, trip.clone(), halo))
                .or_default() += 1;
        }
    }
    let kinds: std::collections::BTreeSet<_> = sent.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds.len(),
        7,
        "the simulated city produces every kind of trip event"
    );

    let _router = OperatorProcess::start(BINARY, &t, "e2e-0");
    let total: usize = want.values().sum();
    let got = read_committed::<GeoTrip>(&t.topic("geo.trip"), total, Duration::from_secs(90)).await;
    let mut tally: BTreeMap<(String, TripEventKind, String, bool), usize> = BTreeMap::new();
    for r in &got {
        *tally
            .entry((
                r.key.clone(),
                r.value.kind,
                r.value.trip_id.clone(),
                r.value.halo,
            ))
            .or_default() += 1;
    }
    assert_eq!(tally, want);
    let dead = read_raw(&t.topic("dlq.trip"), 3, Duration::from_secs(30));
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "surgeflow.error.reason"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (key, reason)
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("trip-null-island", "null_island"),
            ("trip-too-fast", "implausible_speed"),
            ("trip-zero-duration", "bad_duration"),
        ]
        .map(|(k, r)| (k.to_string(), r.to_string()))
    );
}
