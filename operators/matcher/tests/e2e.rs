//! The matcher binary against the real broker and registry, fed `geo.driver` / `geo.trip`
//! records directly (as the routers would write them: keyed by region, halo copies flagged)
//! and its tables through their topics.
//!
//! - A small scripted scenario: accept, decline then accept, cancel then re-use of the
//!   driver, a reserved driver skipped, a request far from everyone, a pickup served by a
//!   driver across a region border, a halo copy of a request that must be ignored, a profile
//!   that changes who wins and a surge multiplier that must be quoted; the outputs must be
//!   exactly the expected ones.
//! - A crash test: a busy stream, the matcher killed with SIGKILL several times mid-stream
//!   and restarted; what `read_committed` readers see must equal what the pure engine
//!   produces for the same input in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_yaml_ng::Value;
use surgeflow_domain::geo::{EARTH_RADIUS_M, LatLon, Region};
use surgeflow_domain::matching::{self, MatchOutput, MatcherConfig, TripRequest};
use surgeflow_domain::routing::Geometry;
use surgeflow_schema::{
    DriverProfile, DriverStatus, GeoDriver, GeoTrip, MatchProposal, MatchUnfilled, Product,
    SurgeMultiplier, TripEventKind, UnfilledReason,
};
use surgeflow_testkit::{
    OperatorProcess, TestTopology, clients, free_port, produce, read_committed, read_raw,
};

const BINARY: &str = env!("CARGO_BIN_EXE_matcher");

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The point `north_m` north and `east_m` east of `p`.
fn offset(p: LatLon, north_m: f64, east_m: f64) -> LatLon {
    LatLon {
        lat: p.lat + (north_m / EARTH_RADIUS_M).to_degrees(),
        lon: p.lon + (east_m / (EARTH_RADIUS_M * p.lat.to_radians().cos())).to_degrees(),
    }
}

/// Input records as the routers would write them.
struct Input {
    geometry: Geometry,
    drivers: Vec<(String, GeoDriver)>,
    trips: Vec<(String, GeoTrip)>,
}

/// One trip event of a script.
#[derive(Debug, Clone)]
struct TripEvent {
    kind: TripEventKind,
    trip: String,
    pickup: LatLon,
    driver: Option<String>,
    time: i64,
}

impl Input {
    fn new(topology: &TestTopology) -> Self {
        let geo = &topology.topology.geo;
        Input {
            geometry: Geometry {
                cell_precision: geo.cell_precision,
                region_precision: geo.region_precision,
                halo_m: geo.halo_m,
            },
            drivers: Vec::new(),
            trips: Vec::new(),
        }
    }

    /// An available ECONOMY driver's ping: home copy and halo copies.
    fn ping(&mut self, driver: &str, at: LatLon, time: i64) {
        let route = self.geometry.route(at).unwrap();
        let cell = route.cell.to_bits() as i64;
        for (region, halo) in route.targets() {
            self.drivers.push((
                region.to_string(),
                GeoDriver {
                    driver_id: driver.into(),
                    lat: at.lat,
                    lon: at.lon,
                    accuracy_m: Some(5.0),
                    speed_mps: None,
                    heading_deg: None,
                    status: DriverStatus::Available,
                    product: Product::Economy,
                    cell,
                    region: region.cell().to_bits() as i64,
                    halo,
                    event_time: time,
                },
            ));
        }
    }

    /// A trip event for an ECONOMY trip: home copy and halo copies.
    fn trip(&mut self, e: &TripEvent) {
        let route = self.geometry.route(e.pickup).unwrap();
        let cell = route.cell.to_bits() as i64;
        for (region, halo) in route.targets() {
            self.trips.push((
                region.to_string(),
                GeoTrip {
                    kind: e.kind,
                    trip_id: e.trip.clone(),
                    rider_id: format!("rider-{}", e.trip),
                    product: Product::Economy,
                    pickup_lat: e.pickup.lat,
                    pickup_lon: e.pickup.lon,
                    driver_id: e.driver.clone(),
                    proposal_id: None,
                    cell,
                    region: region.cell().to_bits() as i64,
                    halo,
                    event_time: e.time,
                },
            ));
        }
    }

    /// Produces the pings and starts the matcher; once it has consumed every ping,
    /// `between` runs, then the trip events are produced.
    ///
    /// The runtime orders co-partitioned input by record timestamp only among the records it
    /// has polled, and stops polling while `max_batch` records are buffered: from a backlog of
    /// both topics at start-up, trip events can be processed before the pings stamped earlier
    /// (a runtime limitation). Feeding the pings first keeps these tests about the matcher.
    async fn start(
        &self,
        t: &TestTopology,
        instance: &str,
        http_port: u16,
        between: impl AsyncFnOnce(),
    ) -> OperatorProcess {
        produce(&t.topic("geo.driver"), &self.drivers).await;
        let matcher = OperatorProcess::start_on(BINARY, t, instance, http_port);
        wait_consumed(t, "geo.driver", Duration::from_secs(60));
        between().await;
        produce(&t.topic("geo.trip"), &self.trips).await;
        matcher
    }
}

/// The operator's `/metrics` page.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

/// Waits until the matcher's group has committed every record of a topic.
fn wait_consumed(t: &TestTopology, name: &str, timeout: Duration) {
    let topic = t.topic(name);
    let partitions = t.topology.topic(&topic).unwrap().partitions;
    let group = t.topology.operators.get("matcher").unwrap().group_id;
    let consumer = clients().consumer(&group).unwrap();
    let mut list = TopicPartitionList::new();
    let mut end = 0;
    for p in 0..partitions {
        list.add_partition(&topic, p);
        end += consumer
            .fetch_watermarks(&topic, p, Duration::from_secs(5))
            .unwrap()
            .1;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let committed: i64 = consumer
            .committed_offsets(list.clone(), Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum();
        if committed >= end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {committed} of {end} consumed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Offer timeout of the test topologies, shorter than the shipped one so that an offer left
/// open by mistake lapses (and shows as an extra proposal or report) while the test waits.
const OFFER_TIMEOUT_MS: i64 = 5_000;

fn short_offers(doc: &mut Value) {
    doc["operators"]["matcher"]["params"]["offer_timeout_ms"] =
        Value::Number(OFFER_TIMEOUT_MS.into());
}

/// Waits past the offer timeout and checks that the matcher published nothing more: every
/// offer it made was answered, none is still held open.
fn assert_nothing_more(t: &TestTopology, proposals: usize, unfilled: usize) {
    std::thread::sleep(Duration::from_millis(OFFER_TIMEOUT_MS as u64 + 3_000));
    for (name, n) in [("match.proposal", proposals), ("match.unfilled", unfilled)] {
        let now = read_raw(&t.topic(name), n, Duration::from_secs(30)).len();
        assert_eq!(now, n, "{name} got records after the expected ones");
    }
}

/// A proposal as compared: (trip, attempt, driver, surge multiplier).
type Offer = (String, i32, String, f64);

fn offers(got: &[surgeflow_testkit::Received<MatchProposal>]) -> Vec<Offer> {
    let mut out: Vec<Offer> = got
        .iter()
        .map(|r| {
            let p = &r.value;
            (
                p.trip_id.clone(),
                p.attempt,
                p.driver_id.clone(),
                p.surge_multiplier,
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn offer(trip: &str, attempt: i32, driver: &str, surge: f64) -> Offer {
    (trip.into(), attempt, driver.into(), surge)
}

#[tokio::test(flavor = "multi_thread")]
async fn matches_a_scripted_day_exactly() {
    let started = Instant::now();
    let t = TestTopology::with("matcher", short_offers);
    t.apply().await;
    let mut input = Input::new(&t);

    // Everything happens in one region, far from its borders, except the border scene.
    let region = Region::containing(
        LatLon {
            lat: 40.75,
            lon: -73.98,
        },
        t.topology.geo.region_precision,
    )
    .unwrap();
    let bbox = region.bbox();
    let c = LatLon {
        lat: (bbox.min_lat + bbox.max_lat) / 2.0,
        lon: (bbox.min_lon + bbox.max_lon) / 2.0,
    };
    let base = now_ms() - 10_000;
    let drivers = [
        ("d-a", offset(c, 0.0, 0.0)),
        // Nearer to the first pickup than d-a, but with a profile that loses.
        ("d-bad", offset(c, 60.0, 0.0)),
        ("d-c", offset(c, 1050.0, 0.0)),
        ("d-d", offset(c, 1000.0, 300.0)),
        ("d-e", offset(c, -1000.0, 50.0)),
    ];
    for (id, at) in drivers {
        input.ping(id, at, base);
    }
    // Across the eastern border, 300 m out: seen in this region only as a halo copy.
    let border = LatLon {
        lat: c.lat,
        lon: bbox.max_lon,
    };
    input.ping("d-h", offset(border, 0.0, 300.0), base);

    let near_a = offset(c, 100.0, 0.0);
    let mut time = base + 1_000;
    let mut script = Vec::new();
    let mut event = |kind, trip: &str, pickup, driver: Option<&str>| {
        time += 100;
        script.push(TripEvent {
            kind,
            trip: trip.into(),
            pickup,
            driver: driver.map(str::to_owned),
            time,
        });
    };
    use TripEventKind::{Accepted, Cancelled, Declined, Requested};
    event(Requested, "accept", near_a, None);
    event(Requested, "reserved", near_a, None);
    event(Accepted, "accept", near_a, Some("d-a"));
    event(Accepted, "reserved", near_a, Some("d-bad"));
    let near_c = offset(c, 1000.0, 0.0);
    event(Requested, "decline", near_c, None);
    event(Declined, "decline", near_c, Some("d-c"));
    event(Accepted, "decline", near_c, Some("d-d"));
    let near_e = offset(c, -1000.0, 0.0);
    event(Requested, "cancel", near_e, None);
    event(Cancelled, "cancel", near_e, None);
    event(Requested, "after-cancel", near_e, None);
    event(Accepted, "after-cancel", near_e, Some("d-e"));
    let far = offset(c, 0.0, 6_000.0);
    event(Requested, "far", far, None);
    // A bad answer (no driver): dead-lettered, changes nothing.
    event(Accepted, "far", far, None);
    let inside = offset(border, 0.0, -300.0);
    event(Requested, "halo", inside, None);
    event(Accepted, "halo", inside, Some("d-h"));
    // Homed across the border, 6 km from d-h; its halo copy reaches this region and must not
    // be matched here as well.
    event(Requested, "neighbour", offset(border, 6_000.0, 300.0), None);
    for e in &script {
        input.trip(e);
    }
    assert!(
        input
            .trips
            .iter()
            .any(|(_, t)| t.trip_id == "neighbour" && t.halo)
            && input
                .trips
                .iter()
                .any(|(_, t)| t.trip_id == "halo" && t.halo),
        "the border scene produces halo copies of trips"
    );
    assert!(
        input
            .drivers
            .iter()
            .any(|(_, d)| d.driver_id == "d-h" && d.halo)
    );

    // The tables, read before processing starts.
    let poor = DriverProfile {
        driver_id: "d-bad".into(),
        rating: 0.0,
        acceptance_rate: 0.0,
        products: vec![Product::Economy],
        updated_at: base,
    };
    produce(&t.topic("driver.profile"), &[("d-bad".to_string(), poor)]).await;
    let surge_cell = input.geometry.route(near_a).unwrap().cell.to_string();
    let surge = SurgeMultiplier {
        cell: surge_cell.clone(),
        product: Product::Economy,
        multiplier: 1.7,
        supply: 1,
        demand: 3,
        stale: false,
        window_start: base - 300_000,
        window_end: base,
        computed_at: base,
    };
    produce(
        &t.topic("surge.multiplier"),
        &[(format!("{surge_cell}:ECONOMY"), surge.clone())],
    )
    .await;
    // A multiplier published while the matcher runs: taken from the table before the
    // requests of its cell arrive.
    let live_cell = input.geometry.route(near_c).unwrap().cell.to_string();
    let live = SurgeMultiplier {
        cell: live_cell.clone(),
        multiplier: 1.3,
        ..surge
    };
    let http_port = free_port();
    let mut matcher = input
        .start(&t, "e2e-0", http_port, async || {
            produce(
                &t.topic("surge.multiplier"),
                &[(format!("{live_cell}:ECONOMY"), live)],
            )
            .await;
            // Tables are polled once per batch, batches end every 100 ms when idle.
            std::thread::sleep(Duration::from_secs(2));
        })
        .await;
    let want_offers = vec![
        offer("accept", 1, "d-a", 1.7),
        offer("after-cancel", 1, "d-e", 1.0),
        offer("cancel", 1, "d-e", 1.0),
        offer("decline", 1, "d-c", 1.3),
        offer("decline", 2, "d-d", 1.3),
        offer("halo", 1, "d-h", 1.0),
        offer("reserved", 1, "d-bad", 1.7),
    ];
    let proposals = read_committed::<MatchProposal>(
        &t.topic("match.proposal"),
        want_offers.len(),
        Duration::from_secs(90),
    )
    .await;
    eprintln!("proposals read after {:?}", started.elapsed());
    assert_eq!(offers(&proposals), want_offers);
    let requested_at: BTreeMap<&str, i64> = script
        .iter()
        .filter(|e| e.kind == Requested)
        .map(|e| (e.trip.as_str(), e.time))
        .collect();
    for r in &proposals {
        let p = &r.value;
        assert_eq!(r.key, p.trip_id, "keyed by trip");
        assert_eq!(p.proposal_id, format!("{}#{}", p.trip_id, p.attempt));
        assert_eq!(p.expires_at, p.proposed_at + OFFER_TIMEOUT_MS);
        assert!(p.proposed_at >= requested_at[p.trip_id.as_str()]);
        assert!(p.distance_m > 0.0 && p.distance_m < 2_000.0, "{p:?}");
    }
    // The record timestamp is the proposal time.
    for m in read_raw(
        &t.topic("match.proposal"),
        want_offers.len(),
        Duration::from_secs(10),
    ) {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let p = proposals
            .iter()
            .find(|r| r.key == key && r.offset == m.offset() && r.partition == m.partition())
            .unwrap();
        assert_eq!(m.timestamp().to_millis(), Some(p.value.proposed_at));
    }
    // No driver is in two open offers: d-e is offered again only after its trip was
    // cancelled.
    let cancelled_at = script.iter().find(|e| e.kind == Cancelled).unwrap().time;
    let again = proposals
        .iter()
        .find(|r| r.value.trip_id == "after-cancel")
        .unwrap();
    assert!(again.value.proposed_at >= cancelled_at);

    let unfilled =
        read_committed::<MatchUnfilled>(&t.topic("match.unfilled"), 2, Duration::from_secs(30))
            .await;
    let mut got: Vec<(String, String, UnfilledReason, i32)> = unfilled
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                r.value.trip_id.clone(),
                r.value.reason,
                r.value.attempts,
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "far".into(),
                "far".into(),
                UnfilledReason::NoDriverInRadius,
                0
            ),
            (
                "neighbour".into(),
                "neighbour".into(),
                UnfilledReason::NoDriverInRadius,
                0
            ),
        ]
    );
    let far_report = &unfilled.iter().find(|r| r.key == "far").unwrap().value;
    assert_eq!(
        (far_report.pickup_lat, far_report.pickup_lon),
        (far.lat, far.lon)
    );

    // Every request got exactly one first answer.
    let decided: BTreeSet<&str> = proposals
        .iter()
        .map(|r| r.value.trip_id.as_str())
        .chain(unfilled.iter().map(|r| r.value.trip_id.as_str()))
        .collect();
    assert_eq!(decided, requested_at.keys().copied().collect());

    let dead = read_raw(&t.topic("dlq.geo"), 1, Duration::from_secs(10));
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == "surgeflow.error.reason"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(reasons, ["missing_driver_id"]);
    assert_nothing_more(&t, proposals.len(), unfilled.len());

    let metrics = scrape(http_port);
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} not in /metrics:\n{metrics}"))
    };
    let op = "{operator=\"matcher\"}";
    assert_eq!(value(&format!("surgeflow_match_proposals_total{op}")), 7.0);
    assert_eq!(value(&format!("surgeflow_match_accepted_total{op}")), 5.0);
    assert_eq!(value(&format!("surgeflow_match_declined_total{op}")), 1.0);
    assert_eq!(value(&format!("surgeflow_match_timeouts_total{op}")), 0.0);
    assert_eq!(
        value(
            "surgeflow_match_unfilled_total{operator=\"matcher\",reason=\"no_driver_in_radius\"}"
        ),
        2.0
    );
    // One per trip with a proposal: its first.
    assert_eq!(
        value(&format!("surgeflow_request_to_proposal_seconds_count{op}")),
        6.0
    );

    matcher.signal(15);
    assert_eq!(
        matcher.wait(Duration::from_secs(20)),
        Some(0),
        "graceful shutdown exits 0"
    );
    eprintln!("scenario done in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Crash test.

/// A busy stream and what the pure engine makes of it in one pass. Answers are scripted
/// against the engine's own proposals: every fourth trip's first driver declines, every
/// tenth trip is cancelled once offered, the others accept.
fn busy_stream(t: &TestTopology, config: &MatcherConfig) -> (Input, Vec<Offer>, Vec<String>) {
    let mut input = Input::new(t);
    let region = Region::containing(
        LatLon {
            lat: 51.5,
            lon: -0.12,
        },
        t.topology.geo.region_precision,
    )
    .unwrap();
    let bbox = region.bbox();
    let c = LatLon {
        lat: (bbox.min_lat + bbox.max_lat) / 2.0,
        lon: (bbox.min_lon + bbox.max_lon) / 2.0,
    };
    let base = now_ms() - 20_000;
    let mut engine = matching::Matcher::<Product>::new(config.clone()).unwrap();
    let side = 40;
    let mut spots = Vec::new();
    for i in 0..side * side {
        let at = offset(
            c,
            (i / side) as f64 * 150.0 - 3_000.0,
            (i % side) as f64 * 150.0 - 3_000.0,
        );
        let id = format!("driver-{i:04}");
        input.ping(&id, at, base);
        engine
            .on_driver_ping(&matching::DriverPing {
                driver_id: &id,
                position: at,
                status: matching::DriverStatus::Available,
                product: Product::Economy,
                event_time: base,
            })
            .unwrap();
        spots.push(at);
    }
    let mut outputs = Vec::new();
    let mut time = base + 1_000;
    let mut step = |engine: &mut matching::Matcher<Product>, input: &mut Input, e: TripEvent| {
        let mut out = engine.advance(e.time);
        match e.kind {
            TripEventKind::Requested => out.extend(
                engine
                    .on_request(TripRequest {
                        trip_id: e.trip.clone(),
                        rider_id: format!("rider-{}", e.trip),
                        product: Product::Economy,
                        pickup: e.pickup,
                        event_time: e.time,
                        surge_multiplier: 1.0,
                    })
                    .unwrap(),
            ),
            TripEventKind::Accepted => {
                engine.on_accepted(&e.trip, e.driver.as_deref().unwrap(), e.time);
            }
            TripEventKind::Declined => {
                out.extend(engine.on_declined(&e.trip, e.driver.as_deref().unwrap(), e.time));
            }
            _ => {
                engine.on_cancelled(&e.trip, e.time);
            }
        }
        input.trip(&e);
        outputs.extend(out);
    };
    for (i, pickup) in spots.iter().enumerate() {
        let trip = format!("trip-{i:04}");
        let pickup = offset(*pickup, 20.0, 0.0);
        let mut event = |kind, driver: Option<String>| {
            time += 1;
            TripEvent {
                kind,
                trip: trip.clone(),
                pickup,
                driver,
                time,
            }
        };
        step(
            &mut engine,
            &mut input,
            event(TripEventKind::Requested, None),
        );
        let offered = |engine: &matching::Matcher<Product>| {
            engine
                .open_proposals()
                .iter()
                .find(|p| p.trip_id == trip)
                .map(|p| p.driver_id.to_owned())
        };
        let Some(first) = offered(&engine) else {
            continue;
        };
        if i % 10 == 3 {
            step(
                &mut engine,
                &mut input,
                event(TripEventKind::Cancelled, None),
            );
            continue;
        }
        if i % 4 == 1 {
            step(
                &mut engine,
                &mut input,
                event(TripEventKind::Declined, Some(first)),
            );
        }
        if let Some(driver) = offered(&engine) {
            step(
                &mut engine,
                &mut input,
                event(TripEventKind::Accepted, Some(driver)),
            );
        }
    }
    assert!(
        engine.open_proposals().is_empty(),
        "every offer is answered"
    );
    let mut offers = Vec::new();
    let mut unfilled = Vec::new();
    for o in outputs {
        match o {
            MatchOutput::Proposal(p) => {
                offers.push((p.trip_id, p.attempt as i32, p.driver_id, p.surge_multiplier));
            }
            MatchOutput::Unfilled(u) => unfilled.push(u.trip_id),
        }
    }
    offers.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    unfilled.sort();
    (input, offers, unfilled)
}

/// Offsets used in a topic, by records committed or not and transaction markers: how far
/// the matcher has got, without waiting for what `read_committed` would see.
fn written(t: &TestTopology, name: &str) -> i64 {
    let topic = t.topic(name);
    let partitions = t.topology.topic(&topic).unwrap().partitions;
    let consumer = clients()
        .consumer(&surgeflow_testkit::unique_name("probe"))
        .unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(5))
                .map_or(0, |(low, high)| high - low)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_matcher_neither_repeats_nor_loses_a_decision() {
    let started = Instant::now();
    // Small batches, so the stream takes a while and kills land mid-stream.
    let t = TestTopology::with("matcher-crash", |doc| {
        doc["operators"]["matcher"]["max_batch"] = Value::Number(25.into());
        short_offers(doc);
    });
    t.apply().await;
    let config = surgeflow_matcher::engine_config(&t.topology).unwrap();
    let (input, want_offers, want_unfilled) = busy_stream(&t, &config);
    assert!(
        want_offers.iter().any(|o| o.1 == 2),
        "the script has retries"
    );
    let output = t.topic("match.proposal");
    let mut matcher = Some(input.start(&t, "crash-0", 0, async || {}).await);
    eprintln!(
        "{} pings, {} trip events, {} offers expected; produced after {:?}",
        input.drivers.len(),
        input.trips.len(),
        want_offers.len(),
        started.elapsed()
    );

    let mut mid_stream_kills = 0;
    for fraction in [0.15, 0.4, 0.7] {
        let matcher = matcher
            .take()
            .unwrap_or_else(|| OperatorProcess::start(BINARY, &t, "crash-0"));
        let target = (want_offers.len() as f64 * fraction) as i64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while written(&t, "match.proposal") < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        matcher.signal(9);
        drop(matcher);
        let committed = read_raw(&output, usize::MAX, Duration::from_millis(2_500)).len();
        eprintln!(
            "killed at {:?} with {committed} of {} proposals committed",
            started.elapsed(),
            want_offers.len()
        );
        if committed > 0 && committed < want_offers.len() {
            mid_stream_kills += 1;
        }
    }
    assert!(mid_stream_kills > 0, "no kill landed mid-stream");

    let _matcher = OperatorProcess::start(BINARY, &t, "crash-0");
    assert_one_pass(&t, &want_offers, &want_unfilled, "after SIGKILLs").await;
    eprintln!("crash test done in {:?}", started.elapsed());
}

/// Reads the matcher's whole output and checks it is what one uninterrupted pass decides:
/// every offer and unfilled record once, nothing else.
async fn assert_one_pass(
    t: &TestTopology,
    want_offers: &[Offer],
    want_unfilled: &[String],
    after: &str,
) {
    let output = t.topic("match.proposal");
    let proposals =
        read_committed::<MatchProposal>(&output, want_offers.len(), Duration::from_secs(120)).await;
    let got = offers(&proposals);
    let distinct: BTreeSet<(&str, i32)> = got.iter().map(|o| (o.0.as_str(), o.1)).collect();
    let repeated = got.len() - distinct.len();
    let missing = want_offers.iter().filter(|o| !got.contains(o)).count();
    let unexpected = got.iter().filter(|o| !want_offers.contains(o)).count();
    assert_eq!(
        (missing, unexpected, repeated),
        (0, 0, 0),
        "{after}: {missing} offers missing, {unexpected} unexpected, {repeated} repeated"
    );
    assert_eq!(got, want_offers);
    let unfilled = read_committed::<MatchUnfilled>(
        &t.topic("match.unfilled"),
        want_unfilled.len(),
        Duration::from_secs(10),
    )
    .await;
    let mut got_unfilled: Vec<String> = unfilled.into_iter().map(|r| r.value.trip_id).collect();
    got_unfilled.sort();
    assert_eq!(got_unfilled, want_unfilled);
    assert_nothing_more(t, want_offers.len(), want_unfilled.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_out_and_in_mid_stream_neither_repeats_nor_loses_a_decision() {
    let started = Instant::now();
    // Small batches, so the stream takes a while and the group changes while it flows.
    let t = TestTopology::with("matcher-scale", |doc| {
        doc["operators"]["matcher"]["max_batch"] = Value::Number(25.into());
        short_offers(doc);
    });
    t.apply().await;
    let config = surgeflow_matcher::engine_config(&t.topology).unwrap();
    let (input, want_offers, want_unfilled) = busy_stream(&t, &config);
    let first_port = free_port();
    let mut first = input.start(&t, "scale-0", first_port, async || {}).await;
    let target = |fraction: f64| (want_offers.len() as f64 * fraction) as i64;
    let wait_for = |n: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while written(&t, "match.proposal") < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Scale out: the range assignor revokes every partition of the first instance and hands
    // them out again, to the second instance (which restores their state from the committed
    // offsets) or back to the first (which keeps its state when nobody committed in between).
    // The backlog fills every batch at once, so revocations mostly come between batches; a
    // revocation during one is committed by the callback (the location-router's scaling test
    // makes sure of that case).
    wait_for(target(0.2));
    let second_port = free_port();
    let _second = OperatorProcess::start_on(BINARY, &t, "scale-1", second_port);
    wait_for(target(0.5));
    let commits = surgeflow_testkit::bench::revocation_commits(first_port);
    // Scale in: the first leaves the group gracefully; the second takes everything.
    first.signal(15);
    assert_eq!(
        first.wait(Duration::from_secs(30)),
        Some(0),
        "graceful exit"
    );
    eprintln!(
        "scaled out and in by {:?}; the first instance's revocations committed / failed {commits:?}",
        started.elapsed()
    );
    assert_eq!(commits.1, 0.0, "no revocation failed to commit its batch");
    assert_one_pass(&t, &want_offers, &want_unfilled, "after scaling out and in").await;
}
