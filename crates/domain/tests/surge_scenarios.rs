//! Hand-worked scenarios of `surgeflow_domain::surge`: every expected multiplier below is
//! computed by hand from the formulas in the module docs, with the default parameters:
//! curve (1, 1), (2, 1.5), (4, 2.5), cap 3, step 0.1, alpha 0.5, max change 0.5,
//! hysteresis 0.1, 1 smoothing ring with decay 0.5, 5 s ticks, 30 s hops, 300 s window,
//! 30 s supply TTL, 10 s lateness, 120 s stale.

use surgeflow_domain::geo::{Cell, Direction, Region};
use surgeflow_domain::surge::{
    Admission, DriverKey, DriverPing, DriverStatus, SurgeConfig, SurgeEngine, SurgeUpdate, TripKey,
    TripKind, TripSignal, replay_horizon_ms,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Product {
    Economy,
}

/// A base time on a hop boundary (600 s = 20 hops of 30 s), so window ends are easy to
/// compute by hand.
const B: i64 = 600_000;

fn cell(text: &str) -> Cell {
    Cell::parse(text).expect("test geohash is valid")
}

fn step(cell: Cell, direction: Direction, times: usize) -> Cell {
    (0..times).fold(cell, |c, _| c.neighbour(direction).expect("not at a pole"))
}

#[derive(Debug, Clone, Copy)]
enum Record {
    Ping {
        driver: u64,
        cell: Cell,
        halo: bool,
        at: i64,
    },
    Request {
        trip: u64,
        cell: Cell,
        halo: bool,
        at: i64,
    },
}

impl Record {
    fn at(&self) -> i64 {
        match *self {
            Record::Ping { at, .. } | Record::Request { at, .. } => at,
        }
    }
}

/// Available pings of `driver` in `cell` every 5 s from `from` to `to` inclusive.
fn pings(driver: u64, cell: Cell, halo: bool, from: i64, to: i64) -> Vec<Record> {
    (from..=to)
        .step_by(5_000)
        .map(|at| Record::Ping {
            driver,
            cell,
            halo,
            at,
        })
        .collect()
}

/// Requests of trips `first..first + n` in `cell`, one per second from `from`.
fn requests(first: u64, n: u64, cell: Cell, halo: bool, from: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::Request {
            trip: first + i,
            cell,
            halo,
            at: from + 1_000 * i as i64,
        })
        .collect()
}

/// Feeds records in event-time order (arrival = event time = processing time), advancing
/// after each, and returns every update.
fn run(engine: &mut SurgeEngine<Product>, mut records: Vec<Record>) -> Vec<SurgeUpdate<Product>> {
    records.sort_by_key(Record::at);
    let mut out = Vec::new();
    for record in records {
        feed(engine, record, record.at());
        engine.advance(record.at(), &mut out);
    }
    out
}

fn feed(engine: &mut SurgeEngine<Product>, record: Record, now: i64) -> Admission {
    match record {
        Record::Ping {
            driver,
            cell,
            halo,
            at,
        } => engine.ingest_ping(
            DriverPing {
                driver: DriverKey(driver),
                position: cell.center(),
                cell,
                product: Product::Economy,
                status: DriverStatus::Available,
                halo,
                event_time_ms: at,
            },
            now,
        ),
        Record::Request {
            trip,
            cell,
            halo,
            at,
        } => engine.ingest_trip(
            TripSignal {
                trip: TripKey(trip),
                kind: TripKind::Requested,
                cell,
                product: Product::Economy,
                halo,
                event_time_ms: at,
            },
            now,
        ),
    }
}

/// `(computed_at − B, multiplier, supply, demand, stale)` of the updates of one cell.
fn summary(updates: &[SurgeUpdate<Product>], of: Cell) -> Vec<(i64, f64, u32, u32, bool)> {
    updates
        .iter()
        .filter(|u| u.cell == of)
        .map(|u| {
            (
                u.computed_at_ms - B,
                u.multiplier,
                u.supply,
                u.demand,
                u.stale,
            )
        })
        .collect()
}

fn engine(config: SurgeConfig) -> SurgeEngine<Product> {
    SurgeEngine::new(config).expect("valid config")
}

/// Two Available drivers and ten requests in one cell, neighbours quiet.
///
/// - Drivers ping every 5 s from B to B + 90 s; requests at B + 1 s … B + 10 s.
/// - Tick T is computed once the watermark (max event − 10 s) is past T, from the records
///   stamped ≤ T. Demand counts requests in [end − 300 s, end), end = T rounded down to
///   30 s: for T = B … B + 25 s, end = B and D = 0, so r = 0, the curve gives 1.0 and
///   nothing is published.
/// - From T = B + 30 s: S = 2 (both pinged at T), D = 10. Neighbours have no state, so
///   S' = 2 and D' = 10, r = 10 / max(2, 1) = 5, beyond the last curve point: 2.5.
///   Target 2.5 (25 steps of 0.1).
/// - Damping from m = 1.0, m' = m + clamp(0.5 · (2.5 − m), ±0.5), rounded half up:
///   - B + 30 s: 1.0 + clamp(0.75)  = 1.5
///   - B + 35 s: 1.5 + clamp(0.5)   = 2.0
///   - B + 40 s: 2.0 + 0.25 = 2.25 → 2.3
///   - B + 45 s: 2.3 + 0.1  = 2.4   (|2.5 − 2.3| = 0.2 ≥ hysteresis 0.1, so it moves)
///   - B + 50 s: 2.4 + 0.05 = 2.45 → 2.5
///   - later: target = m, nothing published.
/// - Each update carries the raw counts S = 2, D = 10 and the window [B − 270 s, B + 30 s).
/// - Stale: the last input of the cell is the pings at B + 90 s. Meanwhile a driver far
///   away (3 cells east, outside the smoothing ring) keeps the watermark moving. The drivers
///   expire at B + 120 s (S = 0, S' = max(0, 1) = 1, r = 10, still 2.5: nothing to publish).
///   At the first tick with B + 90 s ≤ T − 120 s, T = B + 210 s, the cell publishes 1.0
///   once with `stale: true` (S = 0, D = 10 still in the window) and is dropped.
#[test]
fn two_drivers_ten_requests_ramp_to_two_and_a_half_then_go_stale() {
    let config = SurgeConfig::default();
    let c = cell("dr5ru7");
    let far = step(c, Direction::E, 3);
    assert!(Region::parse("dr5r").expect("valid").contains(far));
    assert!(!c.disk(1).any(|n| n == far));

    let mut records = pings(1, c, false, B, B + 90_000);
    records.extend(pings(2, c, false, B, B + 90_000));
    records.extend(requests(1, 10, c, false, B + 1_000));
    records.extend(pings(3, far, false, B + 95_000, B + 300_000));
    let mut engine = engine(config);
    let updates = run(&mut engine, records);

    let window_start = B + 30_000 - 300_000;
    let expected = vec![
        (30_000, 1.5, 2, 10, false),
        (35_000, 2.0, 2, 10, false),
        (40_000, 2.3, 2, 10, false),
        (45_000, 2.4, 2, 10, false),
        (50_000, 2.5, 2, 10, false),
        (210_000, 1.0, 0, 10, true),
    ];
    assert_eq!(summary(&updates, c), expected);
    assert!(
        updates
            .iter()
            .filter(|u| u.computed_at_ms <= B + 50_000)
            .all(|u| u.window_start_ms == window_start && u.window_end_ms == B + 30_000)
    );
    assert!(summary(&updates, far).is_empty(), "no demand: never surges");
    assert_eq!(updates.len(), expected.len());
    assert!(
        engine.cell_views().iter().all(|v| v.cell != c),
        "dropped after going stale"
    );
    let counters = engine.counters();
    assert_eq!(counters.stale_updates, 1);
    assert_eq!(counters.updates, 6);
    assert_eq!(counters.on_time, 19 * 2 + 10 + 42);
}

/// Busy neighbours change the ratio as the smoothing formula says.
///
/// Cell c: 2 drivers, 10 requests. East neighbour e: 4 drivers, no request. West neighbour
/// w: no driver, 6 requests. e and w are two columns apart, so not in each other's ring.
/// From T = B + 30 s:
/// - c: S' = 2 + 0.5·4 + 0.5·0 = 4, D' = 10 + 0.5·0 + 0.5·6 = 13, r = 3.25, on the
///   (2, 1.5)–(4, 2.5) segment: 1.5 + 1.25/2 · 1.0 = 2.125 → target 2.1.
///   Damping: 1.0 + clamp(0.55) = 1.5; 1.5 + 0.3 = 1.8; 1.8 + 0.15 = 1.95 → 2.0;
///   2.0 + 0.05 = 2.05 → 2.1.
///   (Unsmoothed it would be r = 10/2 = 5 → 2.5.)
/// - w: S' = 0 + 0.5·2 = 1, D' = 6 + 0.5·10 = 11, r = 11 → 2.5: 1.5, 2.0, 2.3, 2.4, 2.5,
///   published with its own raw counts S = 0, D = 6.
/// - e: S' = 4 + 0.5·2 = 5, D' = 0 + 0.5·10 = 5, r = 1 → 1.0: never published.
#[test]
fn busy_neighbours_are_blended_with_half_weight() {
    let c = cell("dr5ru7");
    let e = c.neighbour(Direction::E).expect("exists");
    let w = c.neighbour(Direction::W).expect("exists");
    let mut records = Vec::new();
    for driver in 1..=2 {
        records.extend(pings(driver, c, false, B, B + 90_000));
    }
    for driver in 3..=6 {
        records.extend(pings(driver, e, false, B, B + 90_000));
    }
    records.extend(requests(1, 10, c, false, B + 1_000));
    records.extend(requests(11, 6, w, false, B + 1_500));

    let updates = run(&mut engine(SurgeConfig::default()), records.clone());
    assert_eq!(
        summary(&updates, c),
        vec![
            (30_000, 1.5, 2, 10, false),
            (35_000, 1.8, 2, 10, false),
            (40_000, 2.0, 2, 10, false),
            (45_000, 2.1, 2, 10, false),
        ]
    );
    assert_eq!(
        summary(&updates, w),
        vec![
            (30_000, 1.5, 0, 6, false),
            (35_000, 2.0, 0, 6, false),
            (40_000, 2.3, 0, 6, false),
            (45_000, 2.4, 0, 6, false),
            (50_000, 2.5, 0, 6, false),
        ]
    );
    assert!(summary(&updates, e).is_empty());
    // Updates of one tick are sorted by cell.
    for pair in updates.windows(2) {
        if pair[0].computed_at_ms == pair[1].computed_at_ms {
            assert!(pair[0].cell < pair[1].cell);
        }
    }

    // Without smoothing, c sees only its own 10 / 2 = 5 → 2.5.
    let alone = SurgeConfig {
        smoothing_decay: 0.0,
        ..SurgeConfig::default()
    };
    let updates = run(&mut engine(alone), records);
    let last_c = summary(&updates, c).last().map(|u| u.1);
    assert_eq!(last_c, Some(2.5));
}

/// Halo records from across the region border are blended into an owned border cell, but
/// the foreign cell is never priced here.
///
/// Cell c (owned, on the east edge of region dr5r): 4 requests, no driver. Its east
/// neighbour f lies in the next region; this partition only gets halo copies there:
/// 4 drivers and 2 requests. S' = 0 + 0.5·4 = 2, D' = 4 + 0.5·2 = 5, r = 2.5, on the
/// (2, 1.5)–(4, 2.5) segment: 1.75 → target 1.8 (17.5 rounds half up to 18 steps).
/// Damping: 1.0 + 0.4 = 1.4; 1.4 + 0.2 = 1.6; 1.6 + 0.1 = 1.7; 1.7 + 0.05 = 1.75 → 1.8.
/// Published with c's own raw counts S = 0, D = 4.
#[test]
fn halo_records_smooth_the_border_but_are_not_priced() {
    let region = Region::parse("dr5r").expect("valid");
    // Walk east from a cell of the region until the next step leaves it.
    let mut c = cell("dr5ru7");
    while region.contains(c.neighbour(Direction::E).expect("exists")) {
        c = c.neighbour(Direction::E).expect("exists");
    }
    let f = c.neighbour(Direction::E).expect("exists");
    assert!(region.contains(c) && !region.contains(f));

    let mut records = requests(1, 4, c, false, B + 1_000);
    records.extend(requests(5, 2, f, true, B + 1_500));
    for driver in 1..=4 {
        records.extend(pings(driver, f, true, B, B + 90_000));
    }
    let mut engine = engine(SurgeConfig::default());
    let updates = run(&mut engine, records);
    assert_eq!(
        summary(&updates, c),
        vec![
            (30_000, 1.4, 0, 4, false),
            (35_000, 1.6, 0, 4, false),
            (40_000, 1.7, 0, 4, false),
            (45_000, 1.8, 0, 4, false),
        ]
    );
    assert!(
        summary(&updates, f).is_empty(),
        "halo cells are not ours to price"
    );
    assert_eq!(engine.regions_owned(), 1);
    assert!(engine.cell_views().iter().all(|v| v.cell == c));
}

/// A restart while the watermark had been extrapolated on idle: the replay alone rebuilds a
/// lower watermark, so records that the never-crashed engine refused as late would be
/// applied. Restoring the extrapolated watermark with `raise_watermark` makes the restored
/// engine match exactly.
#[test]
fn restore_after_an_idle_extrapolation_needs_the_watermark_back() {
    let config = SurgeConfig::default();
    let c = cell("dr5ru7");
    let quiet = step(c, Direction::W, 4);
    // Before the crash: the hand-worked ramp, records up to B + 45 s.
    let mut before = pings(1, c, false, B, B + 45_000);
    before.extend(pings(2, c, false, B, B + 45_000));
    before.extend(requests(1, 10, c, false, B + 1_000));
    before.sort_by_key(Record::at);
    // Then 30 s of silence: the watermark is extrapolated to B + 45 + 30 − 10 = B + 65 s.
    let idle_now = B + 75_000;
    // After the crash: one poll brings four requests stamped B + 50 s.. in a quiet cell,
    // late for the never-crashed engine; then the drivers carry on, one record per poll.
    let mut after = vec![requests(100, 4, quiet, false, B + 50_000)];
    let mut later = pings(1, c, false, B + 80_000, B + 200_000);
    later.extend(pings(2, c, false, B + 80_000, B + 200_000));
    later.sort_by_key(Record::at);
    after.extend(later.into_iter().map(|record| vec![record]));
    let now_of = |record: &Record| record.at().max(idle_now + 1);

    // The never-crashed engine.
    let mut original = engine(config.clone());
    let mut published = Vec::new();
    for &record in &before {
        feed(&mut original, record, record.at());
        original.advance(record.at(), &mut published);
    }
    original.advance(idle_now, &mut published);
    let watermark = original.watermark().expect("ticking");
    assert_eq!(watermark, B + 65_000);
    assert_eq!(
        summary(&published, c)
            .iter()
            .map(|u| u.1)
            .collect::<Vec<_>>(),
        [1.5, 2.0, 2.3, 2.4, 2.5]
    );
    let max_event = original.max_event_time().expect("seen records");
    let mut expected = Vec::new();
    for batch in &after {
        for record in batch {
            let admission = feed(&mut original, *record, now_of(record));
            if let Record::Request { .. } = record {
                assert_eq!(admission, Admission::Late);
            }
        }
        original.advance(now_of(&batch[0]), &mut expected);
    }

    let restore = |raise: bool| {
        let from = max_event - replay_horizon_ms(&config);
        let mut restored = SurgeEngine::restoring(config.clone(), from).expect("valid");
        let mut discarded = Vec::new();
        for &record in &before {
            feed(&mut restored, record, record.at());
            restored.advance(record.at(), &mut discarded);
        }
        assert!(discarded.is_empty(), "a restoring engine publishes nothing");
        for update in &published {
            restored
                .set_published(update.cell, update.product, update.multiplier)
                .expect("finite");
        }
        if raise {
            restored.raise_watermark(watermark);
        }
        restored.finish_restore();
        let mut out = Vec::new();
        for batch in &after {
            for record in batch {
                feed(&mut restored, *record, now_of(record));
            }
            restored.advance(now_of(&batch[0]), &mut out);
        }
        out
    };
    assert_eq!(restore(true), expected);
    // Without the watermark, the late requests are applied and the quiet cell surges.
    let diverged = restore(false);
    assert_ne!(diverged, expected);
    assert!(!summary(&diverged, quiet).is_empty());
}

/// The watermark jumping far ahead does not compute a tick per multiple of tick_ms.
#[test]
fn a_far_jump_computes_only_the_ticks_that_can_matter() {
    let c = cell("dr5ru7");
    let mut records = pings(1, c, false, B, B + 90_000);
    records.extend(requests(1, 10, c, false, B + 1_000));
    // One record a day later (as if the partition had been paused).
    records.push(Record::Ping {
        driver: 2,
        cell: c,
        halo: false,
        at: B + 86_400_000,
    });
    let mut engine = engine(SurgeConfig::default());
    let updates = run(&mut engine, records);
    let counters = engine.counters();
    // Ticks B .. B + 80 s while records arrive, then up to the stale drop at B + 210 s,
    // then one jump to the day-later ping's tick: about 45, not 17 280.
    assert!(counters.ticks < 60, "{counters:?}");
    let stale: Vec<_> = updates.iter().filter(|u| u.stale).collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].computed_at_ms, B + 210_000);
}

/// Why the teleport check compares a ping with the driver's last pings *seen* rather than
/// the last ping *applied*: with a GPS that keeps flipping between two places kilometres
/// apart, "applied" references would keep whichever place came first for ever, so a restore
/// that starts its replay on the other place would disagree for ever. With "seen"
/// references every decision depends on the last two pings only, and a restore from the
/// replay horizon matches the never-crashed engine wherever it starts.
#[test]
fn restore_is_exact_even_when_a_gps_flips_between_two_places() {
    let config = SurgeConfig::default();
    let a = cell("dr5ru7");
    let b = step(a, Direction::E, 4); // ~3.7 km away: 1.8 km/s between 2 s pings
    let mut records = Vec::new();
    for i in 0..600 {
        let place = if i % 2 == 0 { a } else { b };
        for driver in 1..=3 {
            records.push(Record::Ping {
                driver,
                cell: place,
                halo: false,
                at: B + 2_000 * i + driver as i64,
            });
        }
    }
    // Four requests per window in a: r = 4/3 → 1.2 with the drivers there, r = 4 → 2.5
    // without them, so where the drivers are counted shows in the price.
    records.extend((0..16).map(|k| Record::Request {
        trip: k,
        cell: a,
        halo: false,
        at: B + 75_000 * k as i64 + 7,
    }));
    records.sort_by_key(Record::at);

    let mut original = engine(config.clone());
    let mut outputs = Vec::new();
    let mut max_events = Vec::new();
    for &record in &records {
        max_events.push(original.max_event_time());
        feed(&mut original, record, record.at());
        let mut out = Vec::new();
        original.advance(record.at(), &mut out);
        outputs.push(out);
    }
    assert!(original.counters().rejected.teleport > 0);
    assert!(
        outputs.iter().flatten().count() > 20,
        "the price follows the drivers"
    );

    // Restore points whose replays start on either place.
    for restore_point in (1_000..records.len()).step_by(97) {
        let from = max_events[restore_point].expect("seen records") - replay_horizon_ms(&config);
        let mut restored = SurgeEngine::restoring(config.clone(), from).expect("valid");
        let mut discarded = Vec::new();
        for &record in &records[..restore_point] {
            feed(&mut restored, record, record.at());
            restored.advance(record.at(), &mut discarded);
        }
        for update in outputs[..restore_point].iter().flatten() {
            restored
                .set_published(update.cell, update.product, update.multiplier)
                .expect("finite");
        }
        restored.finish_restore();
        let mut continued = Vec::new();
        for &record in &records[restore_point..] {
            feed(&mut restored, record, record.at());
            restored.advance(record.at(), &mut continued);
        }
        let expected: Vec<_> = outputs[restore_point..].iter().flatten().copied().collect();
        assert_eq!(continued, expected, "restore at record {restore_point}");
    }
}
