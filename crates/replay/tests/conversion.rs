//! The conversion's promises, checked on generated files (proptest) and on the real NYC 2013
//! sample when it is present: event-time order, each trip's lifecycle, the ping cadence and
//! statuses, determinism however the input is buffered, and the dirty-row counts.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;

use proptest::prelude::*;
use surgeflow_replay::{
    DirtyClass, Replay, ReplayConfig, ReplayStats, Until, driver_id, ping_phase_ms,
    time::parse_new_york_ms,
};
use surgeflow_schema::DriverStatus;
use surgeflow_sim::SimEvent;

/// One generated trip.
#[derive(Debug, Clone)]
struct GenTrip {
    taxi: usize,
    pickup_min: i64,
    duration_s: i64,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    miles: f64,
}

fn stamp(minute_of_day_s: i64) -> String {
    let day = minute_of_day_s / 86_400;
    let s = minute_of_day_s % 86_400;
    format!(
        "2013-01-{:02} {:02}:{:02}:{:02}",
        1 + day,
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

fn medallion(taxi: usize) -> String {
    format!("{:032X}", taxi * 7_919 + 11)
}

/// The generated trips as a file sorted by drop-off time, as the DEBS data is.
fn csv(trips: &[GenTrip]) -> String {
    let mut rows: Vec<(i64, String)> = trips
        .iter()
        .map(|t| {
            let p = t.pickup_min * 60;
            let e = p + t.duration_s;
            let line = format!(
                "{},{:032X},{},{},{},{:.2},{:.6},{:.6},{:.6},{:.6},CSH,5.00,0.50,0.50,0.00,0.00,6.00",
                medallion(t.taxi),
                t.taxi,
                stamp(p),
                stamp(e),
                t.duration_s,
                t.miles,
                t.pickup.1,
                t.pickup.0,
                t.dropoff.1,
                t.dropoff.0,
            );
            (e, line)
        })
        .collect();
    rows.sort_by_key(|(e, _)| *e);
    rows.into_iter().map(|(_, l)| l + "\n").collect()
}

fn point() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        8 => (40.60f64..40.85, -74.05f64..-73.85),
        1 => Just((0.0, 0.0)),
        1 => Just((404.97812, 0.0)),
    ]
}

fn trips() -> impl Strategy<Value = Vec<GenTrip>> {
    prop::collection::vec(
        (
            0usize..6,
            0i64..180,
            0i64..2_400,
            point(),
            point(),
            0.0f64..12.0,
        )
            .prop_map(
                |(taxi, pickup_min, duration_s, pickup, dropoff, miles)| GenTrip {
                    taxi,
                    pickup_min,
                    duration_s,
                    pickup,
                    dropoff,
                    miles,
                },
            ),
        1..40,
    )
}

fn run(text: &str, config: ReplayConfig, buffer: usize) -> (Vec<SimEvent>, ReplayStats) {
    let mut replay =
        Replay::new(BufReader::with_capacity(buffer, text.as_bytes()), config).unwrap();
    let mut events = Vec::new();
    while let Some(e) = replay.next_event().unwrap() {
        events.push(e);
    }
    (events, replay.stats().clone())
}

fn utc(minute_of_day_s: i64) -> i64 {
    parse_new_york_ms(&stamp(minute_of_day_s)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn events_come_in_order_and_trips_follow_their_lifecycle(trips in trips()) {
        let text = csv(&trips);
        let config = ReplayConfig::default();
        let (events, stats) = run(&text, config.clone(), 8 * 1024);
        prop_assert!(events.windows(2).all(|w| w[0].event_time() <= w[1].event_time()));
        prop_assert_eq!(stats.trips, trips.len() as u64);
        prop_assert_eq!(stats.dirty(DirtyClass::Late), 0);
        for topic in ["trip.requested", "trip.accepted", "trip.driver_arrived", "trip.started", "trip.completed"] {
            prop_assert_eq!(stats.events_to(topic), trips.len() as u64, "{}", topic);
        }
        prop_assert_eq!(stats.total_events(), events.len() as u64);

        // Each trip: requested at the pickup, then accepted = arrived <= started <= completed
        // at the drop-off, delays within their ranges.
        let mut lifecycle: HashMap<&str, Vec<(&'static str, i64)>> = HashMap::new();
        for e in &events {
            if !matches!(e, SimEvent::LocationUpdate(_)) {
                lifecycle.entry(e.key()).or_default().push((e.topic(), e.event_time()));
            }
        }
        let mut by_pickup: BTreeMap<(i64, i64), usize> = BTreeMap::new();
        for t in &trips {
            let p = utc(t.pickup_min * 60);
            *by_pickup.entry((p, p + t.duration_s * 1000)).or_default() += 1;
        }
        let mut seen: BTreeMap<(i64, i64), usize> = BTreeMap::new();
        for steps in lifecycle.values() {
            let topics: Vec<&str> = steps.iter().map(|s| s.0).collect();
            prop_assert_eq!(&topics, &["trip.requested", "trip.accepted", "trip.driver_arrived", "trip.started", "trip.completed"]);
            let [p, a, arrived, s, e] = [steps[0].1, steps[1].1, steps[2].1, steps[3].1, steps[4].1];
            prop_assert_eq!(a, arrived);
            prop_assert!(p <= a && a <= s && s <= e);
            prop_assert!(a - p <= 10_000 && (a - p >= 2_000 || a == e));
            prop_assert!(s - a <= 30_000 && (s - a >= 5_000 || s == e));
            *seen.entry((p, e)).or_default() += 1;
        }
        // Identical rows are one trip (same id), so compare the distinct (pickup, drop-off)s.
        prop_assert_eq!(seen.keys().collect::<Vec<_>>(), by_pickup.keys().collect::<Vec<_>>());
    }

    #[test]
    fn pings_keep_their_cadence_and_follow_the_trips(trips in trips()) {
        let text = csv(&trips);
        let config = ReplayConfig::default();
        let interval = config.ping_interval_ms;
        let (events, _) = run(&text, config.clone(), 8 * 1024);
        let mut pings: BTreeMap<String, Vec<(i64, DriverStatus, f64, f64)>> = BTreeMap::new();
        for e in &events {
            if let SimEvent::LocationUpdate(p) = e {
                prop_assert!(p.speed_mps.is_some_and(|s| s.is_finite() && s >= 0.0));
                prop_assert!(p.heading_deg.is_none_or(|h| (0.0..360.0).contains(&h)));
                pings.entry(p.driver_id.clone()).or_default().push((p.event_time, p.status, p.lat, p.lon));
            }
        }
        for taxi in 0..6 {
            let mine: Vec<&GenTrip> = trips.iter().filter(|t| t.taxi == taxi).collect();
            let id = driver_id(&medallion(taxi));
            let Some(list) = pings.get(&id) else {
                prop_assert!(mine.is_empty(), "taxi {} has trips but no pings", taxi);
                continue;
            };
            prop_assert!(!mine.is_empty());
            let phase = ping_phase_ms(&medallion(taxi), interval);
            let first_pickup = mine.iter().map(|t| utc(t.pickup_min * 60)).min().unwrap();
            // The taxi follows the trip that started last (a trip starting during another one
            // cuts it short), so its shift ends after that trip's drop-off.
            let last_dropoff = mine
                .iter()
                .map(|t| {
                    let p = utc(t.pickup_min * 60);
                    (p, p + t.duration_s * 1000)
                })
                .max()
                .unwrap()
                .1;
            prop_assert!(list[0].0 >= first_pickup - config.session_edge_ms);
            prop_assert!(list[0].0 < first_pickup - config.session_edge_ms + interval);
            let last = list.last().unwrap();
            prop_assert_eq!(last.1, DriverStatus::Offline, "a shift ends with an OFFLINE ping");
            prop_assert!(last.0 >= last_dropoff + config.session_edge_ms);
            for w in list.windows(2) {
                prop_assert!(w[1].0 > w[0].0);
                prop_assert_eq!((w[1].0 - w[0].0) % interval, 0);
                if w[0].1 != DriverStatus::Offline {
                    prop_assert_eq!(w[1].0 - w[0].0, interval, "no silence within a shift");
                }
            }
            for (t, status, _, _) in list {
                prop_assert_eq!(t.rem_euclid(interval), phase);
                let within = |from: i64, to: i64| mine.iter().any(|g| {
                    let p = utc(g.pickup_min * 60);
                    *t >= p + from && *t < p + g.duration_s * 1000 + to
                });
                match status {
                    DriverStatus::OnTrip | DriverStatus::Dispatched => prop_assert!(within(0, 0)),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn the_same_file_gives_the_same_events_however_it_is_read(trips in trips()) {
        let text = csv(&trips);
        let config = ReplayConfig { ping_interval_ms: 3_000, ..ReplayConfig::default() };
        let (a, sa) = run(&text, config.clone(), 1);
        let (b, sb) = run(&text, config.clone(), 1 << 16);
        prop_assert_eq!(sa, sb);
        prop_assert!(a == b);
        // Shifting moves every event by the same amount and changes nothing else.
        let shifted = ReplayConfig { start_ms: Some(1_700_000_000_000), ..config };
        let (c, _) = run(&text, shifted, 4096);
        prop_assert_eq!(a.len(), c.len());
        prop_assert_eq!(c[0].event_time(), 1_700_000_000_000);
        let delta = c[0].event_time() - a[0].event_time();
        for (x, y) in a.iter().zip(&c) {
            prop_assert_eq!(y.event_time() - x.event_time(), delta);
            prop_assert_eq!(x.key(), y.key());
        }
    }
}

#[test]
fn a_window_stops_before_its_end_and_row_limits_are_prefixes() {
    let trips: Vec<GenTrip> = (0..30)
        .map(|i| GenTrip {
            taxi: i % 4,
            pickup_min: (i as i64) * 3,
            duration_s: 300,
            pickup: (40.75, -73.99),
            dropoff: (40.76, -73.98),
            miles: 1.0,
        })
        .collect();
    let text = csv(&trips);
    let (all, _) = run(&text, ReplayConfig::default(), 4096);
    let until = ReplayConfig {
        until: Some(Until::AfterFirstEvent(20 * 60_000)),
        ..ReplayConfig::default()
    };
    let (window, _) = run(&text, until, 4096);
    let first_pickup = utc(0);
    assert!(
        window
            .iter()
            .all(|e| e.event_time() < first_pickup + 20 * 60_000)
    );
    assert_eq!(
        window[..],
        all[..window.len()],
        "a window is a prefix of the whole"
    );
    let rows = ReplayConfig {
        max_rows: Some(10),
        ..ReplayConfig::default()
    };
    let (_, stats) = run(&text, rows, 4096);
    assert_eq!((stats.rows, stats.trips), (10, 10));
    assert_eq!(stats.events_to("trip.completed"), 10);
}

#[test]
fn unparseable_rows_are_counted_with_their_line_numbers() {
    let good = csv(&[GenTrip {
        taxi: 1,
        pickup_min: 0,
        duration_s: 120,
        pickup: (40.75, -73.99),
        dropoff: (40.76, -73.98),
        miles: 1.0,
    }]);
    let text = format!(
        "medallion,hack_license,pickup_datetime\n{good}garbage\n\n{}",
        good.replace("2013-01-01 00:00:00", "2013-01-01 25:00:00")
    );
    let mut replay = Replay::new(text.as_bytes(), ReplayConfig::default()).unwrap();
    let mut n = 0;
    while replay.next_event().unwrap().is_some() {
        n += 1;
    }
    assert!(n > 5);
    let stats = replay.stats();
    assert_eq!((stats.headers, stats.rows, stats.trips), (1, 4, 1));
    assert_eq!(
        stats.parse_errors,
        [("field_count", 1), ("empty_line", 1), ("bad_datetime", 1)]
    );
    let lines: Vec<String> = replay
        .drain_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "line 3: expected 17 fields, found 1",
            "line 4: empty line",
            "line 5: pickup_datetime: no such date or time"
        ]
    );
    assert!(replay.drain_errors().is_empty());
}

#[test]
fn rows_out_of_drop_off_order_are_late_but_their_trips_are_produced() {
    let config = ReplayConfig {
        max_trip_ms: 600_000,
        max_idle_gap_ms: 600_000,
        ..ReplayConfig::default()
    };
    let trip = |taxi, pickup_min| GenTrip {
        taxi,
        pickup_min,
        duration_s: 120,
        pickup: (40.75, -73.99),
        dropoff: (40.76, -73.98),
        miles: 1.0,
    };
    // Sorted, then the first trip moved to the end: by then the replay is an hour past it.
    let mut lines: Vec<String> = csv(&[trip(0, 0), trip(1, 60), trip(2, 120)])
        .lines()
        .map(String::from)
        .collect();
    let first = lines.remove(0);
    lines.push(first);
    let text = lines.join("\n") + "\n";
    let (events, stats) = run(&text, config, 4096);
    assert_eq!(stats.dirty(DirtyClass::Late), 1);
    assert_eq!(stats.events_to("trip.requested"), 3);
    let late_driver = driver_id(&medallion(0));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SimEvent::LocationUpdate(p) if p.driver_id == late_driver)),
        "a late trip's taxi does not ping for it"
    );
}

/// The real sample, when present: whole-file counts against what SOURCE.md documents.
#[test]
fn completed_trips_carry_the_meter_and_are_counted_as_the_trip_router_will_judge_them() {
    let row = |pickup: &str, time_s: i64, miles: f64, lon: f64| {
        format!(
            "AA,BB,2013-01-01 00:10:00,{pickup},{time_s},{miles},{lon},40.75,-73.95,40.77,CSH,0,0,0,0,0,0\n"
        )
    };
    let text = [
        row("2013-01-01 00:20:00", 600, 2.0, -73.98), // clean: 5.4 m/s
        row("2013-01-01 00:21:00", 0, 1.0, -73.98),   // zero meter time: bad_duration
        row("2013-01-01 00:22:00", 60, 3.0, -73.98),  // 4828 m in 60 s: implausible_speed
        row("2013-01-01 00:23:00", 0, 1.0, 0.0), // routable (longitude 0), no time: bad_duration
        row("2013-01-01 00:24:00", 10, 5.0, -200.0), // bad pickup first
    ]
    .concat();
    let (events, stats) = run(&text, ReplayConfig::default(), 4096);
    let completed: Vec<(Option<f64>, Option<f64>)> = events
        .iter()
        .filter_map(|e| match e {
            SimEvent::TripCompleted(c) => Some((c.trip_duration_s, c.distance_m)),
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 5);
    assert_eq!(completed[0], (Some(600.0), Some(2.0 * 1_609.344)));
    assert_eq!(completed[1].0, Some(0.0));
    let by_reason: BTreeMap<(&str, &str), u64> = stats.rejected.iter().copied().collect();
    let longitude = "longitude_out_of_range";
    let mut want = BTreeMap::from([
        (("trip.completed", "bad_duration"), 2),
        (("trip.completed", "implausible_speed"), 1),
    ]);
    for topic in [
        "trip.requested",
        "trip.accepted",
        "trip.driver_arrived",
        "trip.started",
        "trip.completed",
    ] {
        want.insert((topic, longitude), 1);
    }
    let trips_only: BTreeMap<(&str, &str), u64> = by_reason
        .into_iter()
        .filter(|((topic, _), _)| *topic != "location.update")
        .collect();
    assert_eq!(trips_only, want);

    // The limit is the trip-router's, as configured.
    let lenient = ReplayConfig {
        max_trip_speed_mps: 100.0,
        ..ReplayConfig::default()
    };
    let (_, stats) = run(&text, lenient, 4096);
    assert!(
        !stats
            .rejected
            .iter()
            .any(|((_, reason), _)| *reason == "implausible_speed")
    );
}

#[test]
fn the_nyc_sample_converts_with_its_documented_dirt() {
    let Some(path) =
        surgeflow_testkit::data_file("nyc-taxi-2013/sorted_data.csv", "NYC taxi sample")
    else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let (events, stats) = run(&text, ReplayConfig::default(), 64 * 1024);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].event_time() <= w[1].event_time())
    );
    assert_eq!(
        (stats.rows, stats.trips, stats.parse_error_total()),
        (10_004, 10_004, 0)
    );
    assert_eq!(stats.drivers, 4_630);
    for topic in ["trip.requested", "trip.completed"] {
        assert_eq!(stats.events_to(topic), 10_004);
    }
    // SOURCE.md: 171 rows with a 0,0 endpoint, one latitude of 404.97812, 66 zero-second
    // trips, 75 zero-distance trips; nothing too long or late in a sorted hour.
    assert_eq!(stats.dirty(DirtyClass::NullIsland), 171);
    assert_eq!(stats.dirty(DirtyClass::LatitudeOutOfRange), 1);
    assert_eq!(stats.dirty(DirtyClass::ZeroDuration), 66);
    assert_eq!(stats.dirty(DirtyClass::ZeroDistance), 75);
    assert_eq!(stats.dirty(DirtyClass::TooLong), 0);
    assert_eq!(stats.dirty(DirtyClass::Late), 0);
    // Trip events with an unroutable pickup: five per such row.
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let bad_pickups = |reason: &str| {
        rows.iter()
            .filter(|f| {
                let (lon, lat): (f64, f64) = (f[6].parse().unwrap(), f[7].parse().unwrap());
                match reason {
                    "null_island" => lat == 0.0 && lon == 0.0,
                    _ => !(-90.0..=90.0).contains(&lat),
                }
            })
            .count() as u64
    };
    for reason in ["null_island", "latitude_out_of_range"] {
        for topic in [
            "trip.requested",
            "trip.accepted",
            "trip.driver_arrived",
            "trip.started",
            "trip.completed",
        ] {
            let n = stats
                .rejected
                .iter()
                .find(|(k, _)| *k == (topic, reason))
                .map_or(0, |(_, n)| *n);
            assert_eq!(n, bad_pickups(reason), "{topic} {reason}");
        }
    }
    // A completed trip with a routable pickup and a meter time of 0 is bad_duration: 33 of
    // the 66 zero-second trips (the other 33 start at (0, 0)). No meter speed exceeds 70 m/s.
    let completed: BTreeMap<&str, u64> = stats
        .rejected
        .iter()
        .filter(|((topic, _), _)| *topic == "trip.completed")
        .map(|((_, reason), n)| (*reason, *n))
        .collect();
    assert_eq!(
        completed,
        BTreeMap::from([
            ("bad_duration", 33),
            ("latitude_out_of_range", 1),
            ("null_island", 153),
        ])
    );
    eprintln!("{stats:#?}");
}
