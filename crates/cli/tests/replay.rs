//! `surgeflow replay` over the real NYC 2013 sample, end to end on the real broker: its first
//! 5,300 rows (drop-offs up to 00:39, past the row with latitude 404.97812) through
//! location-router, trip-router, surge-pricer and matcher on a namespaced topology. What the
//! routers write and dead-letter is compared, exactly, with counts this test computes on its
//! own from the raw CSV, following the rules of `docs/replay.md` (it does not use the replay
//! crate); the pricer's and the matcher's outputs depend on timing, so only their existence
//! and sanity are checked. Dirty rows reach `dlq.trip` through two rules: a rejected pickup
//! (all five trip events, with the coordinate's reason) and, for `trip.completed` alone, a
//! meter time of 0 (`bad_duration`) or a meter speed above 70 m/s (`implausible_speed`); the
//! trip-router checks the pickup first, so a row with both has the coordinate's reason.
//!
//! Pings come every 60 s instead of 4 s (`--ping-interval 60s`, with the pricer's and the
//! matcher's driver TTLs raised to match) to keep the run within a couple of minutes on a
//! small, busy machine; the rules are the same at any cadence. The sample is found through
//! `SURGEFLOW_DATA_DIR` (default `../shared/data`); without it the test says so and passes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use surgeflow_domain::geo::Cell;
use surgeflow_schema::{GeoDriver, GeoTrip, MatchProposal, SurgeMultiplier, TripEventKind};
use surgeflow_testkit::{
    OperatorProcess, TestTopology, clients, data_file, read_committed, read_raw, workspace_binary,
};

/// Rows replayed (`--max-rows`).
const MAX_ROWS: usize = 5_300;
const PING_INTERVAL_MS: i64 = 60_000;
const SESSION_EDGE_MS: i64 = 120_000;
const MAX_IDLE_GAP_MS: i64 = 3_600_000;
/// New York is UTC−5 in January (the sample is 2013-01-01 00:00–00:56 local time).
const EST_OFFSET_MS: i64 = 5 * 3_600_000;

/// One row of the file, as the test reads it.
#[derive(Debug, Clone)]
struct Row {
    medallion: String,
    pickup_ms: i64,
    dropoff_ms: i64,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    /// trip_time_in_secs: the meter's time.
    meter_s: i64,
    /// trip_distance, converted to metres.
    meter_m: f64,
}

/// `YYYY-MM-DD HH:MM:SS` of January 2013, New York time, to UTC milliseconds.
fn january_2013(text: &str) -> i64 {
    assert!(
        text.starts_with("2013-01-"),
        "the sample is January 2013: {text}"
    );
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    // 2013-01-01 00:00:00 UTC is 1_356_998_400 s after the epoch.
    let local_s =
        1_356_998_400 + (n(8..10) - 1) * 86_400 + n(11..13) * 3_600 + n(14..16) * 60 + n(17..19);
    local_s * 1000 + EST_OFFSET_MS
}

fn read_rows(path: &Path) -> Vec<Row> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 17, "{line}");
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            Row {
                medallion: f[0].to_string(),
                pickup_ms: january_2013(f[2]),
                dropoff_ms: january_2013(f[3]),
                pickup: (num(7), num(6)),
                dropoff: (num(9), num(8)),
                meter_s: f[4].parse().unwrap(),
                meter_m: num(5) * 1609.344,
            }
        })
        .collect()
}

/// The DLQ reason the routers give a position, if they reject it.
fn rejection(p: (f64, f64)) -> Option<&'static str> {
    let (lat, lon) = p;
    if !(lat.is_finite() && lon.is_finite()) {
        Some("non_finite_coordinate")
    } else if !(-90.0..=90.0).contains(&lat) {
        Some("latitude_out_of_range")
    } else if !(-180.0..=180.0).contains(&lon) {
        Some("longitude_out_of_range")
    } else if lat == 0.0 && lon == 0.0 {
        Some("null_island")
    } else {
        None
    }
}

/// The trip-router's `max_trip_speed_mps` in `topology.yaml`.
const MAX_TRIP_SPEED_MPS: f64 = 70.0;

/// The DLQ reason the trip-router gives a row's `trip.completed`, if it rejects it: the
/// pickup's first, then a meter time that is not positive, then a meter speed above the
/// limit.
fn completed_rejection(row: &Row) -> Option<&'static str> {
    if let Some(reason) = rejection(row.pickup) {
        Some(reason)
    } else if row.meter_s <= 0 {
        Some("bad_duration")
    } else if row.meter_m / row.meter_s as f64 > MAX_TRIP_SPEED_MPS {
        Some("implausible_speed")
    } else {
        None
    }
}

/// 64-bit FNV-1a, as `docs/replay.md` specifies for the ping phase.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The pings of the whole replay, from the documented rules: how many in total, and how many
/// at a position the location-router rejects, by reason.
fn expected_pings(rows: &[Row]) -> (u64, BTreeMap<&'static str, u64>, i64) {
    let mut by_taxi: HashMap<&str, Vec<(usize, &Row)>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        by_taxi.entry(&row.medallion).or_default().push((i, row));
    }
    let mut total = 0;
    let mut bad: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut first_ping = i64::MAX;
    for (medallion, mut trips) in by_taxi {
        trips.sort_by_key(|(i, r)| (r.pickup_ms, *i));
        let phase = (fnv1a64(medallion.as_bytes()) % PING_INTERVAL_MS as u64) as i64;
        // Ping times are phase + k * interval; this counts those in [from, to).
        let before = |t: i64| (t - phase + PING_INTERVAL_MS - 1).div_euclid(PING_INTERVAL_MS);
        let mut count = |from: i64, to: i64, at: (f64, f64)| {
            let n = (before(to) - before(from)).max(0) as u64;
            total += n;
            if let Some(reason) = rejection(at) {
                *bad.entry(reason).or_default() += n;
            }
        };
        // A shift starts standing at the first pickup.
        if let Some((_, first)) = trips.first() {
            let from = first.pickup_ms - SESSION_EDGE_MS;
            first_ping = first_ping.min(from + (phase - from).rem_euclid(PING_INTERVAL_MS));
            count(from, first.pickup_ms, first.pickup);
        }
        for (k, (_, trip)) in trips.iter().enumerate() {
            let p = trip.pickup_ms;
            let e = trip.dropoff_ms.max(p);
            let next = trips.get(k + 1).map(|(_, n)| *n);
            // The trip, cut short by the next one if that starts earlier: at the pickup, then
            // moving only if both ends are good (a bad pickup is reported throughout).
            count(p, next.map_or(e, |n| n.pickup_ms.min(e)), trip.pickup);
            match next {
                // The next trip takes over at its pickup.
                Some(n) if n.pickup_ms < e => {}
                // Cruising from the drop-off to the next pickup.
                Some(n) if n.pickup_ms - e <= MAX_IDLE_GAP_MS => {
                    count(e, n.pickup_ms, trip.dropoff);
                }
                // Standing at the drop-off, one OFFLINE ping there, and a new shift (if any)
                // standing at the next pickup.
                _ => {
                    count(e, e + SESSION_EDGE_MS + PING_INTERVAL_MS, trip.dropoff);
                    if let Some(n) = next {
                        count(n.pickup_ms - SESSION_EDGE_MS, n.pickup_ms, n.pickup);
                    }
                }
            }
        }
    }
    (total, bad, first_ping)
}

/// Header value of a dead letter.
fn header(m: &rdkafka::message::OwnedMessage, key: &str) -> String {
    let headers = m.headers().expect("DLQ records carry headers");
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("header {key} missing"))
}

/// Waits until every topic of the topology shows in the cluster's metadata (creation returns
/// before all brokers' metadata says so, and the operators and the replay check it).
fn wait_for_topics(t: &TestTopology) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = clients().base().create().expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(10)) else {
            assert!(Instant::now() < deadline, "no metadata from the cluster");
            continue;
        };
        let missing = t
            .topology
            .topics
            .keys()
            .filter(|name| {
                !metadata.topics().iter().any(|m| {
                    m.name() == name.as_str() && m.error().is_none() && !m.partitions().is_empty()
                })
            })
            .count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} topics still missing");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes the test's topics (best effort: a broker kept lean serves every test faster).
async fn delete_topics(t: &TestTopology) {
    use rdkafka::admin::AdminOptions;
    let Ok(admin) = clients().admin() else {
        return;
    };
    let names: Vec<&str> = t.topology.topics.keys().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    if let Err(e) = admin.delete_topics(&names, &options).await {
        eprintln!("deleting the test topics: {e}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_the_nyc_sample_through_the_pipeline() {
    let Some(path) = data_file("nyc-taxi-2013/sorted_data.csv", "NYC taxi sample") else {
        return;
    };
    let began = Instant::now();
    let stage = |what: &str| eprintln!("[{:>5.1}s] {what}", began.elapsed().as_secs_f64());
    let mut rows = read_rows(&path);
    rows.truncate(MAX_ROWS);
    let t = TestTopology::with("replay", |doc| {
        // Replayed times are up to an hour old: the documented setting for replays.
        doc["operators"]["location-router"]["params"]["max_age_ms"] = 0.into();
        doc["operators"]["trip-router"]["params"]["max_age_ms"] = 0.into();
        // A driver stays counted between two pings 60 s apart.
        doc["operators"]["surge-pricer"]["params"]["supply_ttl_ms"] = 120_000.into();
        doc["operators"]["matcher"]["params"]["driver_ttl_ms"] = 120_000.into();
    });
    t.apply().await;
    wait_for_topics(&t);
    let operators = [
        ("surgeflow-location-router", "location-router"),
        ("surgeflow-trip-router", "trip-router"),
        ("surgeflow-surge-pricer", "surge-pricer"),
        ("surgeflow-matcher", "matcher"),
    ]
    .map(|(package, bin)| OperatorProcess::start(workspace_binary(package, bin), &t, "replay-0"));

    stage("operators started");
    // The replay starts at 23:58 EST with the first lead-in pings and spans under 50 minutes:
    // put its first event 65 minutes ago, so that every event is in the past.
    let start_ms = now_ms() - 65 * 60_000;
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_surgeflow"))
        .arg("replay")
        .arg(&path)
        .args(["--speed", "max", "--ping-interval", "60s"])
        .args(["--max-rows", &MAX_ROWS.to_string()])
        .args(["--start-ms", &start_ms.to_string()])
        .args(["--topic-prefix", &t.prefix, "--topology"])
        .arg(&t.path)
        .output()
        .expect("running surgeflow replay");
    let summary = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "replay: {}\n{summary}",
        String::from_utf8_lossy(&replay.stderr)
    );
    eprintln!("{summary}");
    assert!(
        summary.contains(&format!("rows: {MAX_ROWS} trips, ")),
        "{summary}"
    );

    // What the raw rows imply.
    let good_pickups: Vec<&Row> = rows
        .iter()
        .filter(|r| rejection(r.pickup).is_none())
        .collect();
    let mut bad_pickups: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        if let Some(reason) = rejection(r.pickup) {
            *bad_pickups.entry(reason).or_default() += 1;
        }
    }
    assert_eq!(
        bad_pickups.get("latitude_out_of_range"),
        Some(&1),
        "the sample's pickup at latitude 404.97812"
    );
    assert!(
        bad_pickups.get("null_island") > Some(&50),
        "{bad_pickups:?}"
    );
    // trip.completed: the pickup's reason, else the duration's or the speed's.
    let mut bad_completed: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        if let Some(reason) = completed_rejection(r) {
            *bad_completed.entry(reason).or_default() += 1;
        }
    }
    assert!(
        bad_completed.get("bad_duration") > Some(&10),
        "the sample's zero-second trips at routable pickups: {bad_completed:?}"
    );
    // The router's rule order in the test's own terms: every row with a bad pickup counts
    // once, under its coordinate reason, whatever its duration.
    let both = rows
        .iter()
        .filter(|r| rejection(r.pickup).is_some() && r.meter_s <= 0)
        .count();
    assert!(both > 0, "the sample has zero-second trips at (0, 0)");
    let router = t.topology.operators.trip_router.as_ref().unwrap();
    assert_eq!(router.params.max_trip_speed_mps, MAX_TRIP_SPEED_MPS);
    // The replay's summary announces them.
    for (reason, n) in &bad_completed {
        let line = format!("  {:<20} {reason:<24} {n}\n", "trip.completed");
        assert!(summary.contains(&line), "{line:?} not in\n{summary}");
    }
    let completed_routed = rows
        .iter()
        .filter(|r| completed_rejection(r).is_none())
        .count();
    // The first event is the earliest lead-in ping; `--start-ms` puts it at start_ms.
    let (pings, bad_pings, first_ping) = expected_pings(&rows);
    let shift = start_ms - first_ping;

    stage("replayed");
    // Every ping reached Kafka.
    let sent = read_raw(
        &t.topic("location.update"),
        pings as usize,
        Duration::from_secs(60),
    );
    assert_eq!(sent.len() as u64, pings, "pings produced");

    stage("location.update read");
    // trip-router: the dead letters are exactly the four lifecycle events before the drop-off
    // of every row with a rejected pickup, and the trip.completed events rejected by pickup,
    // duration or speed.
    let dlq_trip: u64 = bad_pickups.values().sum::<u64>() * 4 + bad_completed.values().sum::<u64>();
    let dead = read_raw(
        &t.topic("dlq.trip"),
        dlq_trip as usize,
        Duration::from_secs(120),
    );
    let mut got: BTreeMap<(String, String), u64> = BTreeMap::new();
    for m in &dead {
        let topic = header(m, "surgeflow.source.topic");
        let kind = topic
            .rsplit_once(".trip.")
            .map(|(_, k)| k.to_string())
            .unwrap_or(topic);
        *got.entry((kind, header(m, "surgeflow.error.reason")))
            .or_default() += 1;
    }
    let mut want = BTreeMap::new();
    for kind in ["requested", "accepted", "driver_arrived", "started"] {
        for (reason, n) in &bad_pickups {
            want.insert((kind.to_string(), reason.to_string()), *n);
        }
    }
    for (reason, n) in &bad_completed {
        want.insert(("completed".to_string(), reason.to_string()), *n);
    }
    assert_eq!(got, want, "dlq.trip by source topic and reason");
    eprintln!("dlq.trip by source topic and reason: {got:?}");

    stage("dlq.trip checked");
    // location-router: the dead letters are exactly the pings at rejected positions.
    let want_pings: u64 = bad_pings.values().sum();
    let dead = read_raw(
        &t.topic("dlq.location.update"),
        want_pings as usize,
        Duration::from_secs(120),
    );
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for m in &dead {
        *got.entry(header(m, "surgeflow.error.reason")).or_default() += 1;
    }
    let want: BTreeMap<String, u64> = bad_pings.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want, "dlq.location.update by reason");

    stage("dlq.location.update checked");
    // trip-router output: every routable trip event once in its home region, and the requests
    // per cell, overall and in a five-minute window, as counted from the raw rows.
    let precision = t.topology.geo.cell_precision;
    let cell =
        |(lat, lon): (f64, f64)| Cell::from_lat_lon(lat, lon, precision).unwrap().to_bits() as i64;
    let mut want_cells: BTreeMap<i64, u64> = BTreeMap::new();
    let mut want_window: BTreeMap<i64, u64> = BTreeMap::new();
    let window = (
        january_2013("2013-01-01 00:20:00") + shift,
        january_2013("2013-01-01 00:25:00") + shift,
    );
    for r in &good_pickups {
        *want_cells.entry(cell(r.pickup)).or_default() += 1;
        if (window.0..window.1).contains(&(r.pickup_ms + shift)) {
            *want_window.entry(cell(r.pickup)).or_default() += 1;
        }
    }
    let home_trip_events = good_pickups.len() * 4 + completed_routed;
    let deadline = Instant::now() + Duration::from_secs(120);
    let geo_trip = loop {
        let records = read_committed::<GeoTrip>(
            &t.topic("geo.trip"),
            home_trip_events,
            Duration::from_secs(60),
        )
        .await;
        let home = records.iter().filter(|r| !r.value.halo).count();
        if home >= home_trip_events || Instant::now() > deadline {
            break records;
        }
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut got_cells: BTreeMap<i64, u64> = BTreeMap::new();
    let mut got_window: BTreeMap<i64, u64> = BTreeMap::new();
    let mut requested = BTreeSet::new();
    for r in geo_trip.iter().filter(|r| !r.value.halo) {
        *kinds.entry(format!("{:?}", r.value.kind)).or_default() += 1;
        if r.value.kind == TripEventKind::Requested {
            requested.insert(r.value.trip_id.clone());
            *got_cells.entry(r.value.cell).or_default() += 1;
            if (window.0..window.1).contains(&r.value.event_time) {
                *got_window.entry(r.value.cell).or_default() += 1;
            }
        }
    }
    let n = good_pickups.len();
    let mut want_kinds = BTreeMap::from(
        ["Accepted", "DriverArrived", "Requested", "Started"].map(|k| (k.to_string(), n)),
    );
    want_kinds.insert("Completed".to_string(), completed_routed);
    assert_eq!(kinds, want_kinds, "home geo.trip records by kind");
    assert_eq!(got_cells, want_cells, "requests per cell");
    assert_eq!(got_window, want_window, "requests per cell, 00:20-00:25");
    assert!(
        want_window.values().sum::<u64>() > 500,
        "the window is busy"
    );

    stage("geo.trip checked");
    // location-router output: every routable ping once in its home region.
    let geo_driver = read_committed::<GeoDriver>(
        &t.topic("geo.driver"),
        (pings - want_pings) as usize,
        Duration::from_secs(120),
    )
    .await;
    let home: Vec<&GeoDriver> = geo_driver
        .iter()
        .map(|r| &r.value)
        .filter(|g| !g.halo)
        .collect();
    assert_eq!(
        home.len() as u64,
        pings - want_pings,
        "home geo.driver records"
    );
    let drivers: BTreeSet<&str> = home.iter().map(|g| g.driver_id.as_str()).collect();

    stage("geo.driver checked");
    // surge-pricer and matcher: outputs exist and make sense.
    let deadline = Instant::now() + Duration::from_secs(60);
    let surge = loop {
        let s = read_committed::<SurgeMultiplier>(
            &t.topic("surge.multiplier"),
            1,
            Duration::from_secs(10),
        )
        .await;
        if !s.is_empty() || Instant::now() > deadline {
            break s;
        }
    };
    assert!(!surge.is_empty(), "no surge multiplier was published");
    for s in &surge {
        let m = s.value.multiplier;
        assert!((1.0..=3.0).contains(&m), "{:?}", s.value);
        assert_eq!(s.key, format!("{}:ECONOMY", s.value.cell));
    }
    let proposals =
        read_committed::<MatchProposal>(&t.topic("match.proposal"), 1, Duration::from_secs(60))
            .await;
    assert!(!proposals.is_empty(), "no match proposal was published");
    for p in &proposals {
        assert!(requested.contains(&p.value.trip_id), "{:?}", p.value);
        assert!(
            drivers.contains(p.value.driver_id.as_str()),
            "{:?}",
            p.value
        );
    }
    eprintln!(
        "{} pings ({} dead-lettered), {} trip events routed, {} requests in the 00:20-00:25 window, {} multipliers ({} above 1), {} proposals, in {:.0} s",
        pings,
        want_pings,
        home_trip_events,
        want_window.values().sum::<u64>(),
        surge.len(),
        surge.iter().filter(|s| s.value.multiplier > 1.0).count(),
        proposals.len(),
        began.elapsed().as_secs_f64()
    );
    drop(operators);
    delete_topics(&t).await;
}
