//! Behaviour of the simulator as the CLI sees it: determinism, ordering, geography, ping
//! cadence and the trip lifecycle, all through the public API.

use std::collections::HashMap;

use surgeflow_schema::{CancelledBy, DriverStatus};
use surgeflow_sim::{Churn, CityConfig, Hotspot, SimError, SimEvent, Simulation, TOPICS};

const MINUTE_MS: i64 = 60_000;

/// A smaller city with the default's ratio of demand to supply (5 requests/s per 2000 drivers).
fn small_city(drivers: u32) -> CityConfig {
    CityConfig {
        drivers,
        requests_per_s: 5.0 * f64::from(drivers) / 2_000.0,
        ..CityConfig::default()
    }
}

/// Runs `config` for `duration_ms` of event time, advancing `step_ms` at a time.
fn run(config: CityConfig, seed: u64, duration_ms: i64, step_ms: i64) -> Vec<SimEvent> {
    let start = config.start_time_ms;
    let mut sim = Simulation::new(config, seed).expect("valid config");
    let mut events = Vec::new();
    let mut t = start;
    while t < start + duration_ms {
        t = (t + step_ms).min(start + duration_ms);
        sim.advance_to(t, &mut events);
    }
    events
}

/// Great-circle distance on the sphere surgeflow uses, metres.
fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
    let a = run(small_city(200), 11, 10 * MINUTE_MS, 1_000);
    let b = run(small_city(200), 11, 10 * MINUTE_MS, 1_000);
    let c = run(small_city(200), 12, 10 * MINUTE_MS, 1_000);
    assert!(a.len() > 20_000, "{} events", a.len());
    assert!(a.iter().any(|e| matches!(e, SimEvent::TripCompleted(_))));
    assert_eq!(a, b);
    let n = a.len().min(c.len()).min(1_000);
    assert_ne!(a[..n], c[..n]);
}

#[test]
fn the_events_do_not_depend_on_how_time_is_stepped() {
    let whole = run(small_city(100), 3, 5 * MINUTE_MS, 5 * MINUTE_MS);
    assert_eq!(whole, run(small_city(100), 3, 5 * MINUTE_MS, 1));
    assert_eq!(whole, run(small_city(100), 3, 5 * MINUTE_MS, 7_919));
}

#[test]
fn events_come_in_event_time_order_across_calls_and_never_beyond_the_target() {
    let config = small_city(200);
    let start = config.start_time_ms;
    let mut sim = Simulation::new(config, 5).expect("valid config");
    let mut events = Vec::new();
    let mut last = start;
    let mut target = start;
    for step in [1, 250, 999, 4_000, 17_321, 60_000, 3, 120_000] {
        for _ in 0..5 {
            target += step;
            let before = events.len();
            sim.advance_to(target, &mut events);
            for e in &events[before..] {
                assert!(e.event_time() >= last, "{} after {last}", e.event_time());
                assert!(
                    e.event_time() <= target,
                    "{} beyond {target}",
                    e.event_time()
                );
                last = e.event_time();
            }
        }
    }
    // Going back in time emits nothing.
    let before = events.len();
    sim.advance_to(start, &mut events);
    assert_eq!(events.len(), before);
    assert!(before > 10_000);
    assert_eq!(sim.stats().total(), before as u64);
}

#[test]
fn pings_stay_in_the_city() {
    let config = CityConfig {
        radius_m: 3_000.0,
        hotspots: Vec::new(),
        hotspot_share: 0.0,
        ..small_city(300)
    };
    let (lat0, lon0, radius) = (config.center_lat, config.center_lon, config.radius_m);
    let events = run(config, 8, 20 * MINUTE_MS, 10_000);
    let mut pings = 0;
    let mut farthest: f64 = 0.0;
    for e in &events {
        if let SimEvent::LocationUpdate(p) = e {
            pings += 1;
            let d = haversine_m(lat0, lon0, p.lat, p.lon);
            farthest = farthest.max(d);
            assert!(
                d <= radius + 30.0,
                "{} is {d} m from the centre",
                p.driver_id
            );
            assert!(p.accuracy_m.is_some_and(|a| (3.0..=12.0).contains(&a)));
            assert!(
                p.speed_mps
                    .is_some_and(|s| s == 0.0 || (5.5..=12.7).contains(&s)),
                "{p:?}"
            );
            assert!(p.heading_deg.is_none_or(|h| (0.0..360.0).contains(&h)));
        }
    }
    assert!(pings > 80_000);
    // The drivers do cover the city rather than huddling at its centre.
    assert!(farthest > radius * 0.95, "farthest ping {farthest} m");
}

#[test]
fn each_driver_pings_about_every_four_seconds() {
    let config = CityConfig {
        churn: None,
        ..small_city(50)
    };
    let events = run(config, 9, 30 * MINUTE_MS, 60_000);
    let times: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            SimEvent::LocationUpdate(p) if p.driver_id == "driver-000007" => Some(p.event_time),
            _ => None,
        })
        .collect();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((440..=460).contains(&gaps.len()), "{} gaps", gaps.len());
    assert!(gaps.iter().all(|g| (3_700..=4_300).contains(g)), "{gaps:?}");
    let mean = gaps.iter().sum::<i64>() as f64 / gaps.len() as f64;
    assert!((mean - 4_000.0).abs() < 50.0, "mean gap {mean}");
    // Jittered, not a metronome: the gaps spread over the allowed range.
    let (min, max) = (gaps.iter().min(), gaps.iter().max());
    assert!(min < Some(&3_800) && max > Some(&4_200), "{min:?}..{max:?}");
}

#[test]
fn drivers_log_off_with_an_offline_ping_and_come_back_later() {
    let churn = Churn {
        mean_online_ms: 10 * MINUTE_MS,
        mean_offline_ms: 2 * MINUTE_MS,
    };
    let config = CityConfig {
        churn: Some(churn),
        requests_per_s: 0.0,
        ..small_city(100)
    };
    let events = run(config, 10, 30 * MINUTE_MS, 60_000);
    let mut last: HashMap<&str, (i64, DriverStatus)> = HashMap::new();
    let (mut offline, mut returned) = (0, 0);
    for e in &events {
        let SimEvent::LocationUpdate(p) = e else {
            panic!("no requests configured: {e:?}")
        };
        if let Some((t, status)) = last.insert(&p.driver_id, (p.event_time, p.status)) {
            let gap = p.event_time - t;
            if status == DriverStatus::Offline {
                returned += 1;
                assert!(gap >= 4_000, "back after {gap} ms");
            } else {
                assert!(
                    (3_700..=4_300).contains(&gap),
                    "{} gap {gap} ms",
                    p.driver_id
                );
            }
        }
        if p.status == DriverStatus::Offline {
            offline += 1;
        }
    }
    assert!(
        offline > 50 && returned > 20,
        "{offline} went offline, {returned} came back"
    );
}

/// What a trip has reached, as seen from the event stream.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Requested,
    Accepted,
    Arrived,
    Started,
}

#[derive(Debug)]
struct OpenTrip {
    stage: Stage,
    driver: Option<String>,
    rider: String,
    pickup: (f64, f64),
    /// Event time of `trip.started`.
    started_at: Option<i64>,
}

/// Replays a 30-minute run and checks every lifecycle invariant in stream order, then the counts.
#[test]
fn trips_follow_their_lifecycle_and_statuses_match_it() {
    let config = small_city(300);
    let (rate, drivers) = (config.requests_per_s, config.drivers);
    let duration_ms = 30 * MINUTE_MS;
    let events = run(config, 21, duration_ms, 1_000);

    let mut open: HashMap<String, OpenTrip> = HashMap::new();
    let mut closed: HashMap<String, ()> = HashMap::new();
    // The trip each driver has accepted and not finished.
    let mut busy: HashMap<String, String> = HashMap::new();
    let mut pings = 0u64;
    let (mut rider_cancels, mut system_cancels) = (0u64, 0u64);

    for e in &events {
        let trip_id = e.key().to_owned();
        if !matches!(e, SimEvent::LocationUpdate(_)) {
            assert!(!closed.contains_key(&trip_id), "{e:?} after the trip ended");
        }
        match e {
            SimEvent::LocationUpdate(p) => {
                pings += 1;
                let expected = match busy.get(&p.driver_id).map(|t| open[t].stage) {
                    None => [DriverStatus::Available, DriverStatus::Offline],
                    Some(Stage::Accepted | Stage::Arrived) => [DriverStatus::Dispatched; 2],
                    Some(Stage::Started) => [DriverStatus::OnTrip; 2],
                    Some(Stage::Requested) => unreachable!("busy drivers have accepted"),
                };
                assert!(expected.contains(&p.status), "{p:?}, expected {expected:?}");
            }
            SimEvent::TripRequested(r) => {
                assert!(r.dropoff_lat.is_some() && r.dropoff_lon.is_some());
                let trip = OpenTrip {
                    stage: Stage::Requested,
                    driver: None,
                    rider: r.rider_id.clone(),
                    pickup: (r.pickup_lat, r.pickup_lon),
                    started_at: None,
                };
                assert!(
                    open.insert(trip_id, trip).is_none(),
                    "requested twice: {r:?}"
                );
            }
            SimEvent::TripDeclined(d) => {
                let trip = open.get(&trip_id).expect("declined before requested");
                assert_eq!(trip.stage, Stage::Requested, "{d:?}");
                assert_eq!(
                    (&trip.rider, trip.pickup),
                    (&d.rider_id, (d.pickup_lat, d.pickup_lon))
                );
            }
            SimEvent::TripAccepted(a) => {
                let trip = open.get_mut(&trip_id).expect("accepted before requested");
                assert_eq!(trip.stage, Stage::Requested, "{a:?}");
                assert_eq!(
                    (&trip.rider, trip.pickup),
                    (&a.rider_id, (a.pickup_lat, a.pickup_lon))
                );
                trip.stage = Stage::Accepted;
                trip.driver = Some(a.driver_id.clone());
                let previous = busy.insert(a.driver_id.clone(), trip_id);
                assert!(
                    previous.is_none(),
                    "{} got a second open trip: {a:?}",
                    a.driver_id
                );
            }
            SimEvent::TripDriverArrived(a) => {
                let trip = open.get_mut(&trip_id).expect("arrived before requested");
                assert_eq!(
                    (trip.stage, trip.driver.as_deref()),
                    (Stage::Accepted, Some(&*a.driver_id))
                );
                trip.stage = Stage::Arrived;
            }
            SimEvent::TripStarted(s) => {
                let trip = open.get_mut(&trip_id).expect("started before requested");
                assert_eq!(
                    (trip.stage, trip.driver.as_deref()),
                    (Stage::Arrived, Some(&*s.driver_id))
                );
                trip.stage = Stage::Started;
                trip.started_at = Some(s.event_time);
            }
            SimEvent::TripCompleted(c) => {
                let trip = open.remove(&trip_id).expect("completed before requested");
                assert_eq!(
                    (trip.stage, trip.driver.as_deref()),
                    (Stage::Started, Some(&*c.driver_id))
                );
                assert_eq!(trip.pickup, (c.pickup_lat, c.pickup_lon));
                assert!(c.distance_m.is_some_and(|d| d >= 199.0), "{c:?}");
                let straight =
                    haversine_m(c.pickup_lat, c.pickup_lon, c.dropoff_lat, c.dropoff_lon);
                assert!(
                    c.distance_m
                        .is_some_and(|d| (d - straight).abs() < 0.01 * d),
                    "{c:?}"
                );
                // The duration is the ride's, from the boarding; and the trip-router's
                // plausibility rule (a positive duration, at most 70 m/s) holds.
                let started = trip.started_at.expect("completed trips started");
                assert_eq!(
                    c.trip_duration_s,
                    Some((c.event_time - started) as f64 / 1000.0),
                    "{c:?}"
                );
                let (d, t) = (c.distance_m.unwrap(), c.trip_duration_s.unwrap());
                assert!(t > 0.0 && d / t <= 70.0, "{c:?}");
                busy.remove(&c.driver_id);
                closed.insert(trip_id, ());
            }
            SimEvent::TripCancelled(c) => {
                let trip = open.remove(&trip_id).expect("cancelled before requested");
                match c.cancelled_by {
                    CancelledBy::Rider => {
                        rider_cancels += 1;
                        assert_eq!(
                            trip.stage,
                            Stage::Accepted,
                            "rider cancels before pickup: {c:?}"
                        );
                        assert_eq!(trip.driver.as_deref(), c.driver_id.as_deref());
                        busy.remove(c.driver_id.as_deref().unwrap_or_default());
                    }
                    CancelledBy::System => {
                        system_cancels += 1;
                        assert_eq!(
                            (trip.stage, c.driver_id.as_deref()),
                            (Stage::Requested, None)
                        );
                    }
                    CancelledBy::Driver => panic!("drivers do not cancel in this model: {c:?}"),
                }
                closed.insert(trip_id, ());
            }
        }
    }

    let stats = |topic: &str| events.iter().filter(|e| e.topic() == topic).count() as f64;
    let requests = stats("trip.requested");
    let expected_requests = rate * (duration_ms / 1_000) as f64;
    assert!(
        (requests / expected_requests - 1.0).abs() < 0.1,
        "{requests} requests, expected {expected_requests}"
    );
    let expected_pings = f64::from(drivers) * (duration_ms / 4_000) as f64;
    assert!(
        (pings as f64 / expected_pings - 1.0).abs() < 0.07,
        "{pings} pings, expected {expected_pings}"
    );
    // The market works: most requests get a car, the configured behaviour shows through.
    let (accepted, declined) = (stats("trip.accepted"), stats("trip.declined"));
    assert!(
        stats("trip.completed") > 0.5 * requests,
        "{} completed",
        stats("trip.completed")
    );
    assert!(
        accepted > 0.7 * requests,
        "{accepted} accepted of {requests}"
    );
    let decline_share = declined / (accepted + declined);
    assert!(
        (0.1..0.2).contains(&decline_share),
        "decline share {decline_share}"
    );
    let rider_cancel_share = rider_cancels as f64 / accepted;
    assert!(
        (0.025..0.075).contains(&rider_cancel_share),
        "rider cancel share {rider_cancel_share}"
    );
    assert!(
        system_cancels > 0,
        "the hotspots should outstrip supply now and then"
    );
}

#[test]
fn unmatched_requests_are_cancelled_by_the_system_at_the_timeout() {
    let config = CityConfig {
        drivers: 0,
        requests_per_s: 1.0,
        ..CityConfig::default()
    };
    let events = run(config, 4, 10 * MINUTE_MS, 60_000);
    let mut requested_at = HashMap::new();
    let mut cancelled = 0;
    for e in &events {
        match e {
            SimEvent::TripRequested(r) => {
                requested_at.insert(r.trip_id.clone(), r.event_time);
            }
            SimEvent::TripCancelled(c) => {
                cancelled += 1;
                assert_eq!(c.cancelled_by, CancelledBy::System);
                assert_eq!(c.reason.as_deref(), Some("no_driver_found"));
                assert_eq!(c.event_time - requested_at[&c.trip_id], 120_000, "{c:?}");
            }
            other => panic!("nothing else can happen without drivers: {other:?}"),
        }
    }
    assert!(cancelled > 400, "{cancelled} cancelled");
}

#[test]
fn topics_keys_and_stats_describe_the_events() {
    let config = small_city(100);
    let start = config.start_time_ms;
    let mut sim = Simulation::new(config, 2).expect("valid config");
    let mut events = Vec::new();
    sim.advance_to(start + 20 * MINUTE_MS, &mut events);
    for e in &events {
        match e {
            SimEvent::LocationUpdate(p) => {
                assert_eq!((e.topic(), e.key()), ("location.update", &*p.driver_id));
                assert!(
                    p.driver_id.starts_with("driver-") && p.driver_id.len() == 13,
                    "{}",
                    p.driver_id
                );
            }
            SimEvent::TripRequested(r) => {
                assert_eq!((e.topic(), e.key()), ("trip.requested", &*r.trip_id));
                assert!(r.trip_id.starts_with("trip-") && r.rider_id.starts_with("rider-"));
            }
            SimEvent::TripAccepted(_) => assert_eq!(e.topic(), "trip.accepted"),
            SimEvent::TripDeclined(_) => assert_eq!(e.topic(), "trip.declined"),
            SimEvent::TripCancelled(_) => assert_eq!(e.topic(), "trip.cancelled"),
            SimEvent::TripDriverArrived(_) => assert_eq!(e.topic(), "trip.driver_arrived"),
            SimEvent::TripStarted(_) => assert_eq!(e.topic(), "trip.started"),
            SimEvent::TripCompleted(_) => assert_eq!(e.topic(), "trip.completed"),
        }
        if !matches!(e, SimEvent::LocationUpdate(_)) {
            assert!(e.key().starts_with("trip-"));
        }
    }
    let stats = sim.stats();
    for (topic, count) in stats.per_topic() {
        let seen = events.iter().filter(|e| e.topic() == topic).count() as u64;
        assert_eq!((topic, count), (topic, seen));
        assert!(count > 0, "no {topic} events in 20 minutes");
        assert_eq!(stats.count(topic), count);
    }
    assert_eq!(stats.per_topic().map(|(t, _)| t), TOPICS);
    assert_eq!(stats.count("surge.multiplier"), 0);
    assert_eq!(stats.total(), events.len() as u64);
}

#[test]
fn the_start_time_is_the_configured_one_not_the_clock() {
    let config = CityConfig {
        start_time_ms: 1_000_000,
        ..small_city(20)
    };
    let events = run(config, 1, 10_000, 10_000);
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| (1_000_000..=1_010_000).contains(&e.event_time()))
    );
}

#[test]
fn invalid_configs_are_rejected_naming_the_field() {
    let cases: Vec<(&str, CityConfig)> = vec![
        (
            "center_lat",
            CityConfig {
                center_lat: f64::NAN,
                ..CityConfig::default()
            },
        ),
        (
            "radius_m",
            CityConfig {
                radius_m: -1.0,
                ..CityConfig::default()
            },
        ),
        (
            "drivers",
            CityConfig {
                drivers: 2_000_000,
                ..CityConfig::default()
            },
        ),
        (
            "requests_per_s",
            CityConfig {
                requests_per_s: -0.5,
                ..CityConfig::default()
            },
        ),
        (
            "product_weights",
            CityConfig {
                product_weights: [0.0; 4],
                ..CityConfig::default()
            },
        ),
        (
            "product_weights[2]",
            CityConfig {
                product_weights: [1.0, 1.0, -1.0, 1.0],
                ..CityConfig::default()
            },
        ),
        (
            "ping_interval_ms",
            CityConfig {
                ping_interval_ms: 0,
                ..CityConfig::default()
            },
        ),
        (
            "ping_jitter_ms",
            CityConfig {
                ping_jitter_ms: 2_001,
                ..CityConfig::default()
            },
        ),
        (
            "start_time_ms",
            CityConfig {
                start_time_ms: -1,
                ..CityConfig::default()
            },
        ),
        (
            "hotspot_share",
            CityConfig {
                hotspot_share: 1.5,
                ..CityConfig::default()
            },
        ),
        (
            "hotspots",
            CityConfig {
                hotspots: Vec::new(),
                ..CityConfig::default()
            },
        ),
        (
            "hotspots[0]",
            CityConfig {
                hotspots: vec![Hotspot {
                    lat: 41.0,
                    lon: -73.9855,
                    radius_m: 500.0,
                    weight: 1.0,
                }],
                ..CityConfig::default()
            },
        ),
        (
            "max_speed_mps",
            CityConfig {
                max_speed_mps: 5.0,
                ..CityConfig::default()
            },
        ),
        (
            "max_offers",
            CityConfig {
                max_offers: 0,
                ..CityConfig::default()
            },
        ),
        (
            "unmatched_timeout_ms",
            CityConfig {
                unmatched_timeout_ms: 0,
                ..CityConfig::default()
            },
        ),
        (
            "accept_probability",
            CityConfig {
                accept_probability: 1.01,
                ..CityConfig::default()
            },
        ),
        (
            "churn.mean_offline_ms",
            CityConfig {
                churn: Some(Churn {
                    mean_online_ms: 1,
                    mean_offline_ms: 0,
                }),
                ..CityConfig::default()
            },
        ),
    ];
    for (field, config) in cases {
        match Simulation::new(config, 0) {
            Err(SimError::InvalidConfig { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                let message = SimError::InvalidConfig { field: f, reason }.to_string();
                assert!(message.contains(&format!("`{field}`")), "{message}");
            }
            Ok(_) => panic!("{field}: accepted"),
        }
    }
    assert_eq!(CityConfig::default().validate(), Ok(()));
}

#[test]
fn a_simulation_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Simulation>();
    assert_send::<SimEvent>();
}
