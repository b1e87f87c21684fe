//! Property tests of `surgeflow_domain::surge`: order independence within the lateness,
//! exact accounting of every record, a watermark that never goes back, exact restore by
//! bounded replay, and supply, demand and staleness against brute-force models.
//!
//! The test city is 4 rows × 5 columns of precision-7 cells (~150 m): columns 0..=3 lie in
//! the owned region, column 4 across its east border, seen only through halo copies. A few
//! drivers random-walk through it (now and then jumping implausibly far), riders request
//! rides (mostly around a hotspot, sometimes retrying the same trip), and a sprinkling of
//! other trip events, late, future and malformed records is mixed in. Windows are scaled
//! down (1 s ticks, 5 s hops, 20 s window, 15 s stale) so that a few hundred records cover
//! several windows, stale drops and restore horizons.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use surgeflow_domain::geo::{Cell, Direction, LatLon, Region};
use surgeflow_domain::surge::{
    Admission, DriverKey, DriverPing, DriverStatus, SurgeConfig, SurgeEngine, SurgeUpdate, TripKey,
    TripKind, TripSignal, Watermark, replay_horizon_ms,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Product {
    Economy,
    Xl,
}

const ROWS: usize = 4;
const COLUMNS: usize = 5;
/// The column across the border of the owned region.
const HALO_COLUMN: usize = 4;
const T0: i64 = 1_700_000_000_000;
/// Late records are stamped this far in the past, future ones this far ahead.
const LATE_BY: i64 = 20_000;
const AHEAD_BY: i64 = 60_000;
/// Arrival delays stay below the lateness (3 s), so no on-time record can become late: a
/// record stamped `e` arrives by `e + MAX_DELAY`, and everything that arrived before it was
/// stamped at most that, so the watermark is at most `e + MAX_DELAY − 3 s < e`.
const MAX_DELAY: i64 = 2_999;

fn config() -> SurgeConfig {
    SurgeConfig {
        cell_precision: 7,
        region_precision: 5,
        supply_ttl_ms: 6_000,
        demand_window_ms: 20_000,
        demand_hop_ms: 5_000,
        allowed_lateness_ms: 3_000,
        // Never extrapolate on idle: arrival gaps differ between orders, and a replay does
        // not extrapolate (tested by hand in surge_scenarios).
        idle_advance_ms: 3_600_000,
        max_future_ms: 5_000,
        tick_ms: 1_000,
        stale_after_ms: 15_000,
        ..SurgeConfig::default()
    }
}

/// `cells[row][column]`, row 0 southernmost.
struct City {
    cells: [[Cell; COLUMNS]; ROWS],
}

impl City {
    fn new() -> Self {
        let region = Region::parse("dr5ru").expect("valid");
        let b = region.bbox();
        let lat = (b.min_lat + b.max_lat) / 2.0;
        let edge = Cell::from_lat_lon(lat, b.max_lon - 1e-7, 7).expect("valid");
        let mut cells = [[edge; COLUMNS]; ROWS];
        for (row, line) in cells.iter_mut().enumerate() {
            let mut east_edge = edge;
            for _ in 0..row {
                east_edge = east_edge.neighbour(Direction::N).expect("not polar");
            }
            for (column, cell) in line.iter_mut().enumerate() {
                *cell = if column == HALO_COLUMN {
                    east_edge.neighbour(Direction::E).expect("exists")
                } else {
                    let mut c = east_edge;
                    for _ in column..HALO_COLUMN - 1 {
                        c = c.neighbour(Direction::W).expect("exists");
                    }
                    c
                };
                assert_eq!(region.contains(*cell), column != HALO_COLUMN);
            }
        }
        Self { cells }
    }

    fn cell(&self, index: u8) -> (Cell, bool) {
        let index = usize::from(index) % (ROWS * COLUMNS);
        let (row, column) = (index / COLUMNS, index % COLUMNS);
        (self.cells[row][column], column == HALO_COLUMN)
    }

    fn is_owned(&self, cell: Cell) -> bool {
        self.cells
            .iter()
            .any(|line| line[..HALO_COLUMN].contains(&cell))
    }
}

#[derive(Debug, Clone, Copy)]
enum Input {
    Ping(DriverPing<Product>),
    Trip(TripSignal<Product>),
}

/// One generated step: a time gap, then something happens.
#[derive(Debug, Clone)]
enum Action {
    Ping {
        driver: u8,
        direction: u8,
        status: u8,
        switch_product: bool,
        teleport: bool,
    },
    Request {
        hot: bool,
        cell: u8,
        xl: bool,
        retry: Option<u8>,
    },
    OtherTrip {
        cell: u8,
        kind: u8,
    },
    LateRequest {
        cell: u8,
    },
    FuturePing,
    WrongPrecision,
    InvalidPosition,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        10 => (0u8..5, 0u8..16, 0u8..10, prop::bool::weighted(0.03), prop::bool::weighted(0.04))
            .prop_map(|(driver, direction, status, switch_product, teleport)| Action::Ping {
                driver, direction, status, switch_product, teleport,
            }),
        6 => (prop::bool::weighted(0.6), any::<u8>(), prop::bool::weighted(0.3),
              prop::option::weighted(0.2, any::<u8>()))
            .prop_map(|(hot, cell, xl, retry)| Action::Request { hot, cell, xl, retry }),
        1 => (any::<u8>(), 1u8..7).prop_map(|(cell, kind)| Action::OtherTrip { cell, kind }),
        1 => any::<u8>().prop_map(|cell| Action::LateRequest { cell }),
        1 => Just(Action::FuturePing),
        1 => Just(Action::WrongPrecision),
        1 => Just(Action::InvalidPosition),
    ]
}

/// Gaps are multiples of 50 ms, so records often land exactly on tick, hop and TTL
/// boundaries, where off-by-one errors live.
fn steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(i64, Action)>> {
    prop::collection::vec(((1i64..8).prop_map(|k| k * 50), action()), len)
}

/// A record, and the time it "really" happened (its event time, except for late and future
/// records), from which arrival times are derived.
#[derive(Debug, Clone, Copy)]
struct Timed {
    input: Input,
    true_ms: i64,
}

struct Driver {
    row: usize,
    column: usize,
    product: Product,
}

/// Turns steps into records. With `clean`, only plausible on-time pings and requests are
/// produced (no teleports, late, future, malformed or other records).
fn build(steps: &[(i64, Action)], city: &City, clean: bool) -> Vec<Timed> {
    const OFFSETS: [(isize, isize); 8] = [
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
        (-1, 0),
        (-1, -1),
        (0, -1),
        (1, -1),
    ];
    let mut drivers: Vec<Driver> = (0..5)
        .map(|i| Driver {
            row: i % ROWS,
            column: i % HALO_COLUMN,
            product: if i % 2 == 0 {
                Product::Economy
            } else {
                Product::Xl
            },
        })
        .collect();
    let mut requests: Vec<TripSignal<Product>> = Vec::new();
    let mut next_trip = 1;
    let mut t = T0;
    let mut out = Vec::new();
    for (gap, action) in steps {
        t += gap;
        let trip = |kind, cell: Cell, halo, product, id: u64, at| TripSignal {
            trip: TripKey(id),
            kind,
            cell,
            product,
            halo,
            event_time_ms: at,
        };
        match *action {
            Action::Ping {
                driver,
                direction,
                status,
                switch_product,
                teleport,
            } => {
                let d = &mut drivers[usize::from(driver) % 5];
                if teleport && !clean {
                    d.row = ROWS - 1 - d.row;
                    d.column = if d.column < 2 { 3 } else { 0 };
                } else if let Some(&(dr, dc)) = OFFSETS.get(usize::from(direction)) {
                    d.row = d.row.saturating_add_signed(dr).min(ROWS - 1);
                    d.column = d.column.saturating_add_signed(dc).min(COLUMNS - 1);
                }
                if switch_product {
                    d.product = match d.product {
                        Product::Economy => Product::Xl,
                        Product::Xl => Product::Economy,
                    };
                }
                let cell = city.cells[d.row][d.column];
                let status = match status {
                    0..=6 => DriverStatus::Available,
                    7 => DriverStatus::OnTrip,
                    8 => DriverStatus::Dispatched,
                    _ => DriverStatus::Offline,
                };
                out.push(Timed {
                    input: Input::Ping(DriverPing {
                        driver: DriverKey(u64::from(driver % 5)),
                        position: cell.center(),
                        cell,
                        product: d.product,
                        status,
                        halo: d.column == HALO_COLUMN,
                        event_time_ms: t,
                    }),
                    true_ms: t,
                });
            }
            Action::Request {
                hot,
                cell,
                xl,
                retry,
            } => {
                let signal = match retry {
                    Some(back) if !requests.is_empty() => {
                        let recent = &requests[requests.len().saturating_sub(10)..];
                        TripSignal {
                            event_time_ms: t,
                            ..recent[usize::from(back) % recent.len()]
                        }
                    }
                    _ => {
                        // The hotspot: the 2 × 3 block in the middle of the owned region.
                        let index = if hot {
                            [6, 7, 8, 11, 12, 13][usize::from(cell) % 6]
                        } else {
                            cell
                        };
                        let (cell, halo) = city.cell(index);
                        let product = if xl { Product::Xl } else { Product::Economy };
                        next_trip += 1;
                        trip(TripKind::Requested, cell, halo, product, next_trip, t)
                    }
                };
                requests.push(signal);
                out.push(Timed {
                    input: Input::Trip(signal),
                    true_ms: t,
                });
            }
            _ if clean => {}
            Action::OtherTrip { cell, kind } => {
                let kind = [
                    TripKind::Accepted,
                    TripKind::Declined,
                    TripKind::Cancelled,
                    TripKind::DriverArrived,
                    TripKind::Started,
                    TripKind::Completed,
                ][usize::from(kind) % 6];
                let (cell, halo) = city.cell(cell);
                next_trip += 1;
                out.push(Timed {
                    input: Input::Trip(trip(kind, cell, halo, Product::Economy, next_trip, t)),
                    true_ms: t,
                });
            }
            Action::LateRequest { cell } => {
                // Only once enough has happened for it to be late in every arrival order.
                if t >= T0 + LATE_BY + 2 * MAX_DELAY + 1_000 {
                    let (cell, halo) = city.cell(cell);
                    next_trip += 1;
                    out.push(Timed {
                        input: Input::Trip(trip(
                            TripKind::Requested,
                            cell,
                            halo,
                            Product::Economy,
                            next_trip,
                            t - LATE_BY,
                        )),
                        true_ms: t,
                    });
                }
            }
            Action::FuturePing => {
                let cell = city.cells[0][0];
                out.push(Timed {
                    input: Input::Ping(DriverPing {
                        driver: DriverKey(99),
                        position: cell.center(),
                        cell,
                        product: Product::Economy,
                        status: DriverStatus::Available,
                        halo: false,
                        event_time_ms: t + AHEAD_BY,
                    }),
                    true_ms: t,
                });
            }
            Action::WrongPrecision => {
                let cell = city.cells[1][1].parent(6).expect("coarser");
                next_trip += 1;
                out.push(Timed {
                    input: Input::Trip(trip(
                        TripKind::Requested,
                        cell,
                        false,
                        Product::Economy,
                        next_trip,
                        t,
                    )),
                    true_ms: t,
                });
            }
            Action::InvalidPosition => {
                let cell = city.cells[1][1];
                out.push(Timed {
                    input: Input::Ping(DriverPing {
                        driver: DriverKey(98),
                        position: LatLon {
                            lat: f64::NAN,
                            lon: 0.0,
                        },
                        cell,
                        product: Product::Economy,
                        status: DriverStatus::Available,
                        halo: false,
                        event_time_ms: t,
                    }),
                    true_ms: t,
                });
            }
        }
    }
    out
}

/// Records in arrival order with their processing time: each arrives `delay` after it
/// happened, ties in generation order; then a sentinel far ahead flushes every tick.
fn arrivals(timed: &[Timed], delays: &[i64], city: &City) -> Vec<(Input, i64)> {
    let mut order: Vec<(i64, usize)> = timed
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let delay = if delays.is_empty() {
                0
            } else {
                delays[i % delays.len()]
            };
            (r.true_ms + delay, i)
        })
        .collect();
    order.sort_unstable();
    let mut out: Vec<(Input, i64)> = order
        .into_iter()
        .map(|(now, i)| (timed[i].input, now))
        .collect();
    let end = timed.last().map_or(T0, |r| r.true_ms) + 120_000;
    out.push((
        Input::Trip(TripSignal {
            trip: TripKey(0),
            kind: TripKind::Completed,
            cell: city.cells[0][0],
            product: Product::Economy,
            halo: false,
            event_time_ms: end,
        }),
        end,
    ));
    out
}

fn deliver(engine: &mut SurgeEngine<Product>, input: Input, now: i64) -> Admission {
    match input {
        Input::Ping(ping) => engine.ingest_ping(ping, now),
        Input::Trip(trip) => engine.ingest_trip(trip, now),
    }
}

/// Runs an engine over arrivals, advancing after each; the updates after each record.
fn run(
    engine: &mut SurgeEngine<Product>,
    arrivals: &[(Input, i64)],
) -> Vec<Vec<SurgeUpdate<Product>>> {
    arrivals
        .iter()
        .map(|&(input, now)| {
            deliver(engine, input, now);
            let mut out = Vec::new();
            engine.advance(now, &mut out);
            out
        })
        .collect()
}

fn new_engine(config: SurgeConfig) -> SurgeEngine<Product> {
    SurgeEngine::new(config).expect("valid config")
}

fn flat(updates: &[Vec<SurgeUpdate<Product>>]) -> Vec<SurgeUpdate<Product>> {
    updates.iter().flatten().copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any arrival order in which every record stays on time gives the same updates as
    /// event order, however records are batched between `advance` calls, and the watermark
    /// never goes back.
    #[test]
    fn reordering_within_the_lateness_changes_nothing(
        steps in steps(100..500),
        delays_a in prop::collection::vec(0..=MAX_DELAY, 1..50),
        delays_b in prop::collection::vec(0..=MAX_DELAY, 1..50),
        batch in 1usize..40,
    ) {
        let city = City::new();
        let timed = build(&steps, &city, false);
        let mut in_order = new_engine(config());
        let expected = flat(&run(&mut in_order, &arrivals(&timed, &[], &city)));
        for delays in [&delays_a, &delays_b] {
            let mut engine = new_engine(config());
            let mut watermark = None;
            let mut out = Vec::new();
            for (input, now) in arrivals(&timed, delays, &city) {
                deliver(&mut engine, input, now);
                engine.advance(now, &mut out);
                prop_assert!(engine.watermark() >= watermark);
                watermark = engine.watermark();
            }
            prop_assert_eq!(&out, &expected);
            prop_assert_eq!(engine.counters(), in_order.counters());
        }
        let mut batched = new_engine(config());
        let mut out = Vec::new();
        let arrivals = arrivals(&timed, &delays_b, &city);
        for (i, &(input, now)) in arrivals.iter().enumerate() {
            deliver(&mut batched, input, now);
            if (i + 1) % batch == 0 || i + 1 == arrivals.len() {
                batched.advance(now, &mut out);
            }
        }
        prop_assert_eq!(&out, &expected);
        prop_assert_eq!(batched.counters(), in_order.counters());
    }

    /// Every record lands in exactly one of on-time, late, future and rejected, at every
    /// point; nothing stays pending once the watermark has passed everything.
    #[test]
    fn every_record_is_accounted_for_once(
        steps in steps(50..300),
        delays in prop::collection::vec(0i64..8_000, 1..50),
    ) {
        let city = City::new();
        let timed = build(&steps, &city, false);
        let mut engine = new_engine(config());
        let mut out = Vec::new();
        let arrivals = arrivals(&timed, &delays, &city);
        for (n, &(input, now)) in arrivals.iter().enumerate() {
            let admission = deliver(&mut engine, input, now);
            prop_assert_ne!(admission, Admission::BeforeReplay);
            engine.advance(now, &mut out);
            let c = engine.counters();
            prop_assert_eq!(c.on_time + c.late + c.future + c.rejected.total(), n as u64 + 1);
        }
        prop_assert_eq!(engine.pending(), 0);
        let c = engine.counters();
        prop_assert_eq!(c.updates, out.len() as u64);
        prop_assert_eq!(c.stale_updates, out.iter().filter(|u| u.stale).count() as u64);
        // Every kind of record was classified as generated.
        let generated = |f: fn(&Action) -> bool| steps.iter().filter(|(_, a)| f(a)).count() as u64;
        prop_assert_eq!(c.rejected.wrong_precision, generated(|a| matches!(a, Action::WrongPrecision)));
        prop_assert_eq!(c.rejected.invalid_position, generated(|a| matches!(a, Action::InvalidPosition)));
        prop_assert_eq!(c.future, generated(|a| matches!(a, Action::FuturePing)));
    }

    /// Restoring from the replay horizon with outputs discarded, then seeding the published
    /// multipliers, continues exactly as the never-crashed engine did; so does a replay
    /// started earlier than necessary.
    #[test]
    fn restore_by_replay_matches_the_one_pass_run(
        steps in steps(300..700),
        delays in prop::collection::vec(0..=MAX_DELAY, 1..50),
        restore_at in 0.0f64..1.0,
        extra_replay in prop_oneof![Just(0i64), 0i64..30_000],
    ) {
        let city = City::new();
        let config = config();
        let arrivals = arrivals(&build(&steps, &city, false), &delays, &city);
        let restore_point = ((arrivals.len() - 1) as f64 * restore_at) as usize;

        let mut original = new_engine(config.clone());
        let mut outputs = Vec::new();
        let mut max_event = None;
        for (i, &(input, now)) in arrivals.iter().enumerate() {
            if i == restore_point {
                max_event = original.max_event_time();
            }
            deliver(&mut original, input, now);
            let mut out = Vec::new();
            original.advance(now, &mut out);
            outputs.push(out);
        }

        let from = max_event.map_or(i64::MIN, |m| m - replay_horizon_ms(&config) - extra_replay);
        let mut restored = SurgeEngine::restoring(config, from).expect("valid");
        let mut discarded = Vec::new();
        for &(input, now) in &arrivals[..restore_point] {
            deliver(&mut restored, input, now);
            restored.advance(now, &mut discarded);
        }
        prop_assert!(discarded.is_empty());
        let mut published = BTreeMap::new();
        for update in flat(&outputs[..restore_point]) {
            published.insert((update.cell, update.product), update.multiplier);
        }
        for (&(cell, product), &multiplier) in &published {
            restored.set_published(cell, product, multiplier).expect("finite");
        }
        restored.finish_restore();
        let continued = run(&mut restored, &arrivals[restore_point..]);
        prop_assert_eq!(flat(&continued), flat(&outputs[restore_point..]));
    }

    /// Raw supply at every tick equals a brute-force count over the pings: per driver, the
    /// latest ping stamped at or before the tick, if Available, fresh and in an owned cell.
    #[test]
    fn supply_matches_a_brute_force_count(
        steps in steps(100..400),
        delays in prop::collection::vec(0..=MAX_DELAY, 1..50),
    ) {
        let city = City::new();
        let config = SurgeConfig { max_speed_mps: 1e9, ..config() };
        let ttl = config.supply_ttl_ms;
        let timed = build(&steps, &city, true);
        let pings: Vec<DriverPing<Product>> = timed
            .iter()
            .filter_map(|r| match r.input { Input::Ping(p) => Some(p), Input::Trip(_) => None })
            .collect();
        let mut engine = new_engine(config);
        let mut out = Vec::new();
        let mut checked = None;
        for (input, now) in arrivals(&timed, &delays, &city) {
            deliver(&mut engine, input, now);
            engine.advance(now, &mut out);
            let Some(tick) = engine.last_tick() else { continue };
            if checked == Some(tick) {
                continue;
            }
            checked = Some(tick);
            let mut latest: HashMap<DriverKey, DriverPing<Product>> = HashMap::new();
            for p in pings.iter().filter(|p| p.event_time_ms <= tick) {
                latest.insert(p.driver, *p);
            }
            let mut expected: HashMap<(Cell, Product), u32> = HashMap::new();
            for p in latest.values() {
                if p.status == DriverStatus::Available
                    && p.event_time_ms > tick - ttl
                    && city.is_owned(p.cell)
                {
                    *expected.entry((p.cell, p.product)).or_default() += 1;
                }
            }
            let views = engine.cell_views();
            for view in &views {
                prop_assert_eq!(
                    view.supply,
                    expected.get(&(view.cell, view.product)).copied().unwrap_or(0),
                    "tick {} cell {}", tick, view.cell
                );
            }
            for (key, &count) in &expected {
                prop_assert!(
                    views.iter().any(|v| (v.cell, v.product) == *key && v.supply == count),
                    "tick {}: {:?} has {} drivers but no view", tick, key, count
                );
            }
        }
    }

    /// Requests of the same trip within a window count once, however many copies arrive and
    /// in whatever order.
    #[test]
    fn duplicate_requests_count_once(
        copies in prop::collection::vec((1usize..4, 0i64..14_000), 1..30),
        delays in prop::collection::vec(0..=MAX_DELAY, 1..20),
    ) {
        let city = City::new();
        let cell = city.cells[1][1];
        // Requests stamped in [t0, t0 + 15 s), counted whole in the window of tick t0 + 15 s:
        // [t0 − 5 s, t0 + 15 s). A driver pings every second so the cell never goes stale.
        let t0 = T0 - T0 % 5_000 + 5_000;
        let tick = t0 + 15_000;
        let mut timed = Vec::new();
        for (trip, &(n, first)) in copies.iter().enumerate() {
            for copy in 0..n as i64 {
                let at = t0 + (first + copy * 300).min(14_999);
                timed.push(Timed {
                    input: Input::Trip(TripSignal {
                        trip: TripKey(trip as u64),
                        kind: TripKind::Requested,
                        cell,
                        product: Product::Economy,
                        halo: false,
                        event_time_ms: at,
                    }),
                    true_ms: at,
                });
            }
        }
        for at in (t0..=tick + 3_500).step_by(1_000) {
            timed.push(Timed {
                input: Input::Ping(DriverPing {
                    driver: DriverKey(1),
                    position: cell.center(),
                    cell,
                    product: Product::Economy,
                    status: DriverStatus::Available,
                    halo: false,
                    event_time_ms: at + 1,
                }),
                true_ms: at + 1,
            });
        }
        timed.sort_by_key(|r| r.true_ms);
        let mut arrivals = arrivals(&timed, &delays, &city);
        arrivals.pop(); // no sentinel: stop right after the tick of interest
        let mut engine = new_engine(config());
        run(&mut engine, &arrivals);
        prop_assert_eq!(engine.last_tick(), Some(tick));
        let view = engine.cell_views().into_iter().find(|v| v.cell == cell);
        prop_assert_eq!(view.map(|v| v.demand), Some(copies.len() as u32));
        let total: usize = copies.iter().map(|(n, _)| n).sum();
        prop_assert_eq!(engine.counters().duplicate_requests, (total - copies.len()) as u64);
    }

    /// A surging cell that goes quiet publishes 1.0 with `stale` exactly once, at the first
    /// tick `stale_after_ms` past its last input, as its last update; a cell that never
    /// surged goes quietly.
    #[test]
    fn stale_fallback_happens_exactly_once(
        requests in 0u8..12,
        drivers in 0u8..3,
        quiet_for in 16_000i64..60_000,
    ) {
        let city = City::new();
        let config = config();
        let hot = city.cells[1][1];
        let far = city.cells[3][3];
        let mut timed = Vec::new();
        let mut last_input = None;
        for i in 0..i64::from(requests) {
            let at = T0 + 1_000 + 500 * i;
            last_input = Some(at);
            timed.push((Input::Trip(TripSignal {
                trip: TripKey(i as u64),
                kind: TripKind::Requested,
                cell: hot,
                product: Product::Economy,
                halo: false,
                event_time_ms: at,
            }), at));
        }
        for d in 0..u64::from(drivers) {
            for at in (T0..T0 + 10_000).step_by(2_000) {
                let at = at + d as i64;
                last_input = last_input.max(Some(at));
                timed.push((Input::Ping(DriverPing {
                    driver: DriverKey(d),
                    position: hot.center(),
                    cell: hot,
                    product: Product::Economy,
                    status: DriverStatus::Available,
                    halo: false,
                    event_time_ms: at,
                }), at));
            }
        }
        // A driver far away keeps the clock going.
        for at in (T0..T0 + 10_000 + quiet_for).step_by(700) {
            timed.push((Input::Ping(DriverPing {
                driver: DriverKey(9),
                position: far.center(),
                cell: far,
                product: Product::Economy,
                status: DriverStatus::OnTrip,
                halo: false,
                event_time_ms: at + 3,
            }), at + 3));
        }
        timed.sort_by_key(|&(_, at)| at);
        let mut engine = new_engine(config.clone());
        let updates = flat(&run(&mut engine, &timed));
        let of_hot: Vec<_> = updates.iter().filter(|u| u.cell == hot).collect();
        let stale: Vec<_> = of_hot.iter().filter(|u| u.stale).collect();
        // Raised when it went quiet: the last regular update is above 1.0 (a shrinking
        // window may also have damped it back to 1.0 first).
        let raised = of_hot
            .iter()
            .rev()
            .find(|u| !u.stale)
            .is_some_and(|u| u.multiplier > 1.0);
        let watermark = engine.watermark().expect("ticking");
        let stale_tick = last_input.map(|last| {
            let due = last + config.stale_after_ms;
            due + (config.tick_ms - due.rem_euclid(config.tick_ms)) % config.tick_ms
        });
        match stale_tick {
            Some(tick) if raised && tick < watermark => {
                prop_assert_eq!(stale.len(), 1);
                prop_assert!(of_hot.last().is_some_and(|u| u.stale));
                prop_assert_eq!(stale[0].computed_at_ms, tick);
                prop_assert_eq!(stale[0].multiplier, 1.0);
                prop_assert!(engine.cell_views().iter().all(|v| v.cell != hot));
            }
            _ => prop_assert!(stale.is_empty()),
        }
        let surged = of_hot.iter().any(|u| !u.stale && u.multiplier > 1.0);
        // Two requests with at most one driver always surge (r >= 2 → 1.5).
        if requests >= 2 && drivers <= 1 {
            prop_assert!(surged);
        }
    }

    /// The watermark never goes back, whatever the records and clock values; future and
    /// late are decided against the processing clock and the watermark before the record.
    #[test]
    fn the_watermark_never_goes_back(
        ops in prop::collection::vec((0i64..100_000, 0i64..100_000, any::<bool>()), 1..200),
        lateness in 0i64..20_000,
    ) {
        let mut watermark = Watermark::new(lateness, 5_000, 30_000);
        let mut previous = None;
        for (event, now, idle) in ops {
            let before = watermark.current();
            if idle {
                watermark.on_idle(now);
            } else {
                let arrival = watermark.observe(event, now);
                let future = event > now + 30_000;
                let late = !future && before.is_some_and(|w| event < w);
                prop_assert_eq!(arrival == surgeflow_domain::surge::Arrival::Future, future);
                prop_assert_eq!(arrival == surgeflow_domain::surge::Arrival::Late, late);
            }
            prop_assert!(watermark.current() >= previous);
            previous = watermark.current();
        }
        let counts = watermark.counts();
        prop_assert!(counts.on_time + counts.late + counts.future <= 200);
    }
}
