//! Crash and restore: the same routed input, processed once by a pricer that never stops and
//! once by one killed with SIGKILL mid-stream and restarted (restoring its state by replay each
//! time). The `read_committed` output must hold no tick twice, and match the uninterrupted
//! run but for the few records the start-up alignment can order differently (see the
//! assertion).

use std::collections::BTreeMap;
use std::time::Duration;

use surgeflow_domain::routing::{Geometry, check_point};
use surgeflow_schema::{GeoDriver, GeoTrip, SurgeMultiplier, TripEventKind};
use surgeflow_sim::{CityConfig, SimEvent, Simulation};
use surgeflow_testkit::{OperatorProcess, TestTopology, produce_timed, read_committed};

const BINARY: &str = env!("CARGO_BIN_EXE_surge-pricer");

mod short_windows;
use short_windows::short_windows;

/// What the routers would write for a simulated city: (region key, record, event time).
struct Routed {
    drivers: Vec<(String, GeoDriver, i64)>,
    trips: Vec<(String, GeoTrip, i64)>,
    last_event_ms: i64,
}

fn routed_city(t: &TestTopology, start: i64, minutes: i64) -> Routed {
    let geo = &t.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
    let config = CityConfig {
        drivers: 300,
        requests_per_s: 6.0,
        radius_m: 3000.0,
        start_time_ms: start,
        hotspots: vec![],
        hotspot_share: 0.0,
        ..CityConfig::default()
    };
    let mut sim = Simulation::new(config, 3).unwrap();
    let mut events = Vec::new();
    sim.advance_to(start + minutes * 60_000, &mut events);
    let mut out = Routed {
        drivers: Vec::new(),
        trips: Vec::new(),
        last_event_ms: start,
    };
    for event in events {
        out.last_event_ms = out.last_event_ms.max(event.event_time());
        let (lat, lon, trip) = match &event {
            SimEvent::LocationUpdate(p) => (p.lat, p.lon, None),
            SimEvent::TripRequested(e) => (
                e.pickup_lat,
                e.pickup_lon,
                Some((
                    TripEventKind::Requested,
                    e.trip_id.clone(),
                    e.rider_id.clone(),
                    e.product,
                    None,
                )),
            ),
            SimEvent::TripAccepted(e) => (
                e.pickup_lat,
                e.pickup_lon,
                Some((
                    TripEventKind::Accepted,
                    e.trip_id.clone(),
                    e.rider_id.clone(),
                    e.product,
                    Some(e.driver_id.clone()),
                )),
            ),
            SimEvent::TripCancelled(e) => (
                e.pickup_lat,
                e.pickup_lon,
                Some((
                    TripEventKind::Cancelled,
                    e.trip_id.clone(),
                    e.rider_id.clone(),
                    e.product,
                    e.driver_id.clone(),
                )),
            ),
            _ => continue,
        };
        let route = geometry.route(check_point(lat, lon).unwrap()).unwrap();
        let cell = route.cell.to_bits() as i64;
        for (region, halo) in route.targets() {
            let key = region.to_string();
            let region = region.cell().to_bits() as i64;
            match (&event, &trip) {
                (SimEvent::LocationUpdate(p), _) => out.drivers.push((
                    key,
                    GeoDriver {
                        driver_id: p.driver_id.clone(),
                        lat,
                        lon,
                        accuracy_m: p.accuracy_m,
                        speed_mps: p.speed_mps,
                        heading_deg: p.heading_deg,
                        status: p.status,
                        product: p.product,
                        cell,
                        region,
                        halo,
                        event_time: p.event_time,
                    },
                    p.event_time,
                )),
                (_, Some((kind, trip_id, rider_id, product, driver_id))) => out.trips.push((
                    key,
                    GeoTrip {
                        kind: *kind,
                        trip_id: trip_id.clone(),
                        rider_id: rider_id.clone(),
                        product: *product,
                        pickup_lat: lat,
                        pickup_lon: lon,
                        driver_id: driver_id.clone(),
                        proposal_id: None,
                        cell,
                        region,
                        halo,
                        event_time: event.event_time(),
                    },
                    event.event_time(),
                )),
                _ => {}
            }
        }
    }
    out
}

type Outputs = BTreeMap<(String, i64), (u64, i32, i32, bool, usize)>;

/// The published records up to `cutoff` (later ticks depend on when the idle clock kicked
/// in), keyed by (record key, tick), with how often each appeared.
async fn outputs(t: &TestTopology, cutoff: i64) -> Outputs {
    let records =
        read_committed::<SurgeMultiplier>(&t.topic("surge.multiplier"), 1, Duration::from_secs(30))
            .await;
    let mut out: Outputs = BTreeMap::new();
    for r in records
        .into_iter()
        .filter(|r| r.value.computed_at <= cutoff)
    {
        let v = r.value;
        let entry = out.entry((r.key, v.computed_at)).or_insert((
            (v.multiplier * 10.0).round() as u64,
            v.supply,
            v.demand,
            v.stale,
            0,
        ));
        entry.4 += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_pricer_restores_and_publishes_what_an_uninterrupted_one_does() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - 5 * 60_000;
    let runs = [
        TestTopology::with("pricer-steady", short_windows),
        TestTopology::with("pricer-crash", short_windows),
    ];
    let routed = routed_city(&runs[0], start, 4);
    for t in &runs {
        t.apply().await;
        produce_timed(&t.topic("geo.driver"), &routed.drivers).await;
        produce_timed(&t.topic("geo.trip"), &routed.trips).await;
    }
    let cutoff = routed.last_event_ms - 10_000;

    let steady = OperatorProcess::start(BINARY, &runs[0], "steady-0");
    tokio::time::sleep(Duration::from_secs(15)).await;
    drop(steady);
    let want = outputs(&runs[0], cutoff).await;
    assert!(
        want.len() > 50,
        "the steady run published only {} multipliers",
        want.len()
    );
    assert!(
        want.values().all(|v| v.4 == 1),
        "the steady run published a tick twice"
    );

    // Each kill must land mid-stream, or the test proves nothing: count what was committed.
    let crash = &runs[1];
    let mut mid_stream_kills = 0;
    for after_ms in [1200u64, 1500, 1500] {
        let pricer = OperatorProcess::start(BINARY, crash, "crash-0");
        std::thread::sleep(Duration::from_millis(after_ms));
        pricer.signal(9);
        let committed = outputs(crash, cutoff).await.len();
        eprintln!(
            "killed after {after_ms} ms with {committed} of {} multipliers committed",
            want.len()
        );
        mid_stream_kills += usize::from(committed > 0 && committed < want.len());
    }
    let _final = OperatorProcess::start(BINARY, crash, "crash-0");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let got = outputs(crash, cutoff).await;
    let duplicated = got.values().filter(|v| v.4 > 1).count();
    let lost = want.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    let differ = want
        .iter()
        .filter(|(k, v)| {
            got.get(*k)
                .is_some_and(|g| (g.0, g.1, g.2, g.3) != (v.0, v.1, v.2, v.3))
        })
        .count();
    eprintln!(
        "{} multipliers; after {mid_stream_kills} kill(s) mid-stream: {lost} lost, {duplicated} duplicated, {extra} extra, {differ} different",
        want.len()
    );
    // Exactly once holds without exception: no tick is published twice. The values match the
    // uninterrupted run except around the first seconds after a (re)start: the runtime's
    // alignment of co-partitions is best effort there (a partition still waiting for its
    // first fetch counts as idle after ALIGN_IDLE), so the first pass and the replay can order
    // a few records differently (see docs/architecture.md, "Known limits"). Seen: at most 100
    // of about 5,500 keys.
    assert_eq!(duplicated, 0, "a tick was published twice");
    let off = lost + extra + differ;
    assert!(
        off * 50 <= want.len(),
        "{off} of {} multipliers differ from the uninterrupted run",
        want.len()
    );
    assert!(mid_stream_kills > 0, "no kill landed mid-stream");
}
