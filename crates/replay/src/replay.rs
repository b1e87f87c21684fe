//! The merge: rows in, events out in event-time order.
//!
//! Every taxi and every trip is a small generator of events; a binary heap keyed by
//! `(event time, trip events before pings, order of first appearance)` always yields the next
//! event of all of them. A taxi has one entry in the heap (its next ping time) and a trip one
//! (its next lifecycle event), so the heap holds at most one entry per taxi plus one per trip
//! in flight: memory grows with the number of taxis and with the trips of the lookahead
//! window, not with the length of the file.
//!
//! **Lookahead.** The file is sorted by drop-off time, so a trip is read only once the file
//! reaches its drop-off, after its pickup; and a taxi's pings between two trips depend on the
//! next pickup (where it is heading, or whether the shift ends). An event at time `t` is
//! therefore produced only once rows have been read up to drop-off time
//! `t + max_trip_ms + max_idle_gap_ms` (or the file has ended): by then every trip that can
//! influence it is known. A row that nevertheless arrives too late (a file not sorted by
//! drop-off) is counted `late`; its trip events are still produced (as soon as possible, so
//! out of order) but the taxi's pings ignore it, as they ignore `too_long` trips.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::io::BufRead;

use surgeflow_domain::routing::{check_point, check_trip};
use surgeflow_schema::{
    LocationUpdate, Product, TripAccepted, TripCompleted, TripDriverArrived, TripRequested,
    TripStarted,
};
use surgeflow_sim::{SimEvent, TOPICS};

use crate::config::{ConfigError, ReplayConfig, Until};
use crate::dirty::{DirtyClass, DirtySet, classify};
use crate::driver::{Driver, Leg, State, Timing};
use crate::ids::{LineHash, driver_id, ping_phase_ms};
use crate::record::{METRES_PER_MILE, Point, RowError, TripRecord, is_header, parse_line};

/// How many row errors are kept for [`Replay::drain_errors`] between two calls; the rest are
/// only counted.
const KEPT_ERRORS: usize = 1_000;

/// What the replay has read and produced so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Lines read, the header excluded.
    pub rows: u64,
    /// Header lines skipped.
    pub headers: u64,
    /// Rows converted into a trip.
    pub trips: u64,
    /// Distinct taxis.
    pub drivers: u64,
    /// Rows that could not be parsed, by class (`field_count`, `bad_datetime`, ...).
    pub parse_errors: Vec<(&'static str, u64)>,
    /// Converted rows in each [`DirtyClass`], in [`DirtyClass::ALL`] order.
    pub dirty: [u64; DirtyClass::ALL.len()],
    /// Converted rows in at least one dirty class.
    pub dirty_rows: u64,
    /// Events produced per topic, in the order of `surgeflow_sim::TOPICS`.
    pub events: [u64; 8],
    /// Events produced that the routers will reject, by `(topic, reason)`: what should reach
    /// the dead-letter topics. A ping or trip event at a rejected position (a ping's, a trip
    /// event's pickup) has that position's reason; a `trip.completed` with a routable pickup
    /// and a meter time of 0 or less is `bad_duration`, and one whose meter distance over
    /// meter time is above [`ReplayConfig::max_trip_speed_mps`] `implausible_speed` (the
    /// trip-router's order: pickup, then duration, then speed). The routers' time limits are
    /// not counted here.
    pub rejected: Vec<((&'static str, &'static str), u64)>,
    /// Event time of the first event produced (after any shift).
    pub first_event_ms: Option<i64>,
    /// Event time of the latest event produced (after any shift).
    pub last_event_ms: Option<i64>,
}

impl ReplayStats {
    /// Events produced, all topics.
    pub fn total_events(&self) -> u64 {
        self.events.iter().sum()
    }

    /// Events produced to `topic` (a name of `surgeflow_sim::TOPICS`).
    pub fn events_to(&self, topic: &str) -> u64 {
        TOPICS
            .iter()
            .position(|t| *t == topic)
            .map_or(0, |i| self.events[i])
    }

    /// Rows in a dirty class.
    pub fn dirty(&self, class: DirtyClass) -> u64 {
        self.dirty[class.index()]
    }

    /// Rows that could not be parsed, all classes.
    pub fn parse_error_total(&self) -> u64 {
        self.parse_errors.iter().map(|(_, n)| n).sum()
    }

    fn bump<K: PartialEq>(list: &mut Vec<(K, u64)>, key: K) {
        match list.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => list.push((key, 1)),
        }
    }
}

/// A trip's lifecycle events, produced one by one.
#[derive(Debug)]
struct TripEvents {
    trip_id: String,
    rider_id: String,
    driver_id: String,
    pickup: Point,
    dropoff: Point,
    distance_m: f64,
    /// The meter's trip time, seconds.
    duration_s: f64,
    /// Requested, accepted, driver arrived, started, completed (file time).
    times: [i64; 5],
    next: usize,
}

/// Which generator a heap entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Trip(usize),
    Driver(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    time: i64,
    /// 0 for trip events, 1 for pings: at the same instant, trip events go first.
    rank: u8,
    /// Row number for trips, order of first appearance for taxis.
    seq: u64,
    source: Source,
    generation: u64,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.rank, self.seq).cmp(&(other.time, other.rank, other.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Replays a file: [`Replay::next_event`] (or the iterator) yields its events in event-time
/// order.
pub struct Replay<R> {
    input: R,
    config: ReplayConfig,
    timing: Timing,
    line: Vec<u8>,
    line_no: u64,
    eof: bool,
    drivers: Vec<Driver>,
    by_medallion: HashMap<String, usize>,
    trips: Vec<Option<TripEvents>>,
    free_trips: Vec<usize>,
    heap: BinaryHeap<Reverse<Entry>>,
    /// The latest drop-off read (rows that are not `too_long`), file time.
    horizon: i64,
    /// Added to every event time (from `start_ms`), fixed by the first event.
    shift_ms: Option<i64>,
    /// `until`, in file time (resolved at the first event when relative).
    until_ms: Option<i64>,
    done: bool,
    stats: ReplayStats,
    errors: Vec<RowError>,
}

impl<R> Replay<R> {
    /// What has been read and produced so far.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// The amount added to the file's times (0 unless `start_ms` was given), once known.
    pub fn shift_ms(&self) -> Option<i64> {
        self.shift_ms
    }

    /// The rows that could not be parsed since the last call (at most 1000 are kept between
    /// two calls; all are counted in the stats).
    pub fn drain_errors(&mut self) -> Vec<RowError> {
        std::mem::take(&mut self.errors)
    }
}

impl<R: BufRead> Replay<R> {
    /// A replay of `input` (the file's bytes, from its first line).
    ///
    /// # Errors
    /// A parameter of `config` out of range.
    pub fn new(input: R, config: ReplayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let until_ms = match config.until {
            Some(Until::At(t)) => Some(t),
            _ => None,
        };
        Ok(Replay {
            input,
            timing: Timing {
                interval_ms: config.ping_interval_ms,
                edge_ms: config.session_edge_ms,
                max_gap_ms: config.max_idle_gap_ms,
            },
            config,
            line: Vec::with_capacity(256),
            line_no: 0,
            eof: false,
            drivers: Vec::new(),
            by_medallion: HashMap::new(),
            trips: Vec::new(),
            free_trips: Vec::new(),
            heap: BinaryHeap::new(),
            horizon: i64::MIN,
            shift_ms: None,
            until_ms,
            done: false,
            stats: ReplayStats::default(),
            errors: Vec::new(),
        })
    }

    /// Up to which event time (file time) events may be produced: every row that can still
    /// come has a pickup after it plus the idle gap.
    fn frontier(&self) -> i64 {
        if self.eof {
            i64::MAX
        } else {
            self.horizon
                .saturating_sub(self.config.lookahead_ms())
                .saturating_sub(1)
        }
    }

    /// The next event, in event-time order; `None` at the end of the file (or of the window).
    ///
    /// # Errors
    /// Reading the input failed.
    pub fn next_event(&mut self) -> std::io::Result<Option<SimEvent>> {
        while !self.done {
            let frontier = self.frontier();
            let top = self.heap.peek().map(|Reverse(e)| *e);
            match top {
                Some(entry) if entry.time <= frontier => {
                    self.heap.pop();
                    if let Some(mut event) = self.step(entry) {
                        if self.shift_ms.is_none() {
                            self.first_event(entry.time);
                        }
                        if self.until_ms.is_some_and(|until| entry.time >= until) {
                            self.done = true;
                            break;
                        }
                        let shift = self.shift_ms.unwrap_or(0);
                        if shift != 0 {
                            set_event_time(&mut event, entry.time + shift);
                        }
                        self.record(&event);
                        return Ok(Some(event));
                    }
                }
                _ if self.eof => self.done = true,
                _ => self.read_row()?,
            }
        }
        Ok(None)
    }

    /// Fixes what depends on the first event: the shift to `start_ms` and a relative `until`.
    fn first_event(&mut self, time: i64) {
        self.shift_ms = Some(self.config.start_ms.map_or(0, |start| start - time));
        if let Some(Until::AfterFirstEvent(ms)) = self.config.until {
            self.until_ms = Some(time.saturating_add(ms));
        }
    }

    /// Runs one generator: its event, if it has one now, and its next heap entry.
    fn step(&mut self, entry: Entry) -> Option<SimEvent> {
        match entry.source {
            Source::Trip(slot) => self.step_trip(slot, entry),
            Source::Driver(slot) => self.step_driver(slot, entry),
        }
    }

    fn step_trip(&mut self, slot: usize, entry: Entry) -> Option<SimEvent> {
        let product = self.config.product;
        let trip = self.trips[slot].as_mut()?;
        let kind = trip.next;
        let event = trip_event(trip, kind, entry.time, product);
        trip.next += 1;
        if trip.next < trip.times.len() {
            self.heap.push(Reverse(Entry {
                time: trip.times[trip.next],
                ..entry
            }));
        } else {
            self.trips[slot] = None;
            self.free_trips.push(slot);
        }
        Some(event)
    }

    fn step_driver(&mut self, slot: usize, entry: Entry) -> Option<SimEvent> {
        let timing = self.timing;
        let product = self.config.product;
        let driver = &mut self.drivers[slot];
        if driver.generation != entry.generation {
            return None;
        }
        let t = entry.time;
        let (state, overlaps) = driver.state_at(t, timing);
        self.stats.dirty[DirtyClass::Overlapping.index()] += overlaps.trips;
        self.stats.dirty_rows += overlaps.were_clean;
        let (next, event) = match state {
            State::Ping(fix) => {
                driver.last_ping = Some(t);
                let event = SimEvent::LocationUpdate(LocationUpdate {
                    driver_id: driver.id.clone(),
                    lat: fix.at.lat,
                    lon: fix.at.lon,
                    accuracy_m: None,
                    speed_mps: Some(fix.speed_mps),
                    heading_deg: fix.heading_deg,
                    status: fix.status,
                    product,
                    event_time: t,
                });
                (Some(t + timing.interval_ms), Some(event))
            }
            State::Offline(Some(back)) => (
                Some(driver.ceil_ping(back.max(t + 1), timing.interval_ms)),
                None,
            ),
            State::Offline(None) => (None, None),
        };
        driver.scheduled = next;
        if let Some(time) = next {
            self.heap.push(Reverse(Entry { time, ..entry }));
        }
        event
    }

    fn record(&mut self, event: &SimEvent) {
        let index = topic_index(event);
        self.stats.events[index] += 1;
        let (lat, lon) = match event {
            SimEvent::LocationUpdate(e) => (e.lat, e.lon),
            SimEvent::TripRequested(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripAccepted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripDriverArrived(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripStarted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripCompleted(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripDeclined(e) => (e.pickup_lat, e.pickup_lon),
            SimEvent::TripCancelled(e) => (e.pickup_lat, e.pickup_lon),
        };
        let checked = check_point(lat, lon).and_then(|_| match event {
            SimEvent::TripCompleted(e) => check_trip(
                e.trip_duration_s,
                e.distance_m,
                self.config.max_trip_speed_mps,
            ),
            _ => Ok(()),
        });
        if let Err(r) = checked {
            ReplayStats::bump(&mut self.stats.rejected, (TOPICS[index], r.reason()));
        }
        let t = event.event_time();
        self.stats.first_event_ms.get_or_insert(t);
        self.stats.last_event_ms = Some(t);
    }

    /// Reads one line and converts it.
    fn read_row(&mut self) -> std::io::Result<()> {
        if self
            .config
            .max_rows
            .is_some_and(|max| self.stats.rows >= max)
        {
            self.eof = true;
            return Ok(());
        }
        self.line.clear();
        if self.input.read_until(b'\n', &mut self.line)? == 0 {
            self.eof = true;
            return Ok(());
        }
        self.line_no += 1;
        let line = std::mem::take(&mut self.line);
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        if self.line_no == 1 && is_header(content) {
            self.stats.headers += 1;
        } else {
            self.stats.rows += 1;
            match parse_line(content) {
                Ok(row) => self.add_trip(&row, LineHash::of(content)),
                Err(kind) => {
                    ReplayStats::bump(&mut self.stats.parse_errors, kind.class());
                    if self.errors.len() < KEPT_ERRORS {
                        self.errors.push(RowError {
                            line: self.line_no,
                            kind,
                        });
                    }
                }
            }
        }
        self.line = line;
        Ok(())
    }

    fn driver_slot(&mut self, medallion: &str) -> usize {
        if let Some(&slot) = self.by_medallion.get(medallion) {
            return slot;
        }
        let slot = self.drivers.len();
        self.drivers.push(Driver::new(
            driver_id(medallion),
            ping_phase_ms(medallion, self.config.ping_interval_ms),
            slot as u64,
        ));
        self.by_medallion.insert(medallion.to_string(), slot);
        self.stats.drivers += 1;
        slot
    }

    fn add_trip(&mut self, row: &TripRecord, hash: LineHash) {
        let p = row.pickup_ms;
        let e = row.dropoff_ms.max(p);
        let mut dirty: DirtySet = classify(row, &self.config);
        let late = p - self.config.max_idle_gap_ms <= self.frontier();
        if late {
            dirty.insert(DirtyClass::Late);
        }
        let too_long = dirty.contains(DirtyClass::TooLong);
        for class in dirty.iter() {
            self.stats.dirty[class.index()] += 1;
        }
        self.stats.dirty_rows += u64::from(!dirty.is_empty());
        self.stats.trips += 1;

        let a = (p + hash.offer_delay_ms()).min(e);
        let s = (a + hash.boarding_ms()).min(e);
        let slot = self.driver_slot(&row.medallion);
        let trip = TripEvents {
            trip_id: hash.trip_id(),
            rider_id: hash.rider_id(),
            driver_id: self.drivers[slot].id.clone(),
            pickup: row.pickup,
            dropoff: row.dropoff,
            distance_m: row.trip_distance_mi * METRES_PER_MILE,
            duration_s: row.trip_time_s as f64,
            times: [p, a, a, s, e],
            next: 0,
        };
        let trip_slot = match self.free_trips.pop() {
            Some(free) => {
                self.trips[free] = Some(trip);
                free
            }
            None => {
                self.trips.push(Some(trip));
                self.trips.len() - 1
            }
        };
        self.heap.push(Reverse(Entry {
            time: p,
            rank: 0,
            seq: self.line_no,
            source: Source::Trip(trip_slot),
            generation: 0,
        }));

        if !(late || too_long) {
            let interval = self.config.ping_interval_ms;
            let edge = self.config.session_edge_ms;
            let driver = &mut self.drivers[slot];
            driver.insert(Leg {
                p,
                a,
                s,
                e,
                pickup: row.pickup,
                dropoff: row.dropoff,
                seq: self.line_no,
                clean: dirty.is_empty(),
            });
            let from = driver
                .last_ping
                .map_or(p - edge, |last| (p - edge).max(last + 1));
            let wanted = driver.ceil_ping(from, interval);
            if driver.scheduled.is_none_or(|at| wanted < at) {
                driver.generation += 1;
                driver.scheduled = Some(wanted);
                self.heap.push(Reverse(Entry {
                    time: wanted,
                    rank: 1,
                    seq: driver.seq,
                    source: Source::Driver(slot),
                    generation: driver.generation,
                }));
            }
            self.horizon = self.horizon.max(e);
        }
    }
}

impl<R: BufRead> Iterator for Replay<R> {
    type Item = std::io::Result<SimEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Sets an event's time.
fn set_event_time(event: &mut SimEvent, time: i64) {
    match event {
        SimEvent::LocationUpdate(e) => e.event_time = time,
        SimEvent::TripRequested(e) => e.event_time = time,
        SimEvent::TripAccepted(e) => e.event_time = time,
        SimEvent::TripDeclined(e) => e.event_time = time,
        SimEvent::TripCancelled(e) => e.event_time = time,
        SimEvent::TripDriverArrived(e) => e.event_time = time,
        SimEvent::TripStarted(e) => e.event_time = time,
        SimEvent::TripCompleted(e) => e.event_time = time,
    }
}

fn topic_index(event: &SimEvent) -> usize {
    match event {
        SimEvent::LocationUpdate(_) => 0,
        SimEvent::TripRequested(_) => 1,
        SimEvent::TripAccepted(_) => 2,
        SimEvent::TripDeclined(_) => 3,
        SimEvent::TripCancelled(_) => 4,
        SimEvent::TripDriverArrived(_) => 5,
        SimEvent::TripStarted(_) => 6,
        SimEvent::TripCompleted(_) => 7,
    }
}

/// The `kind`-th lifecycle event of a trip (0 requested, 1 accepted, 2 driver arrived,
/// 3 started, 4 completed).
fn trip_event(trip: &TripEvents, kind: usize, event_time: i64, product: Product) -> SimEvent {
    let (trip_id, rider_id) = (trip.trip_id.clone(), trip.rider_id.clone());
    let (pickup_lat, pickup_lon) = (trip.pickup.lat, trip.pickup.lon);
    let driver_id = trip.driver_id.clone();
    match kind {
        0 => SimEvent::TripRequested(TripRequested {
            trip_id,
            rider_id,
            product,
            pickup_lat,
            pickup_lon,
            dropoff_lat: Some(trip.dropoff.lat),
            dropoff_lon: Some(trip.dropoff.lon),
            event_time,
        }),
        1 => SimEvent::TripAccepted(TripAccepted {
            trip_id,
            rider_id,
            product,
            pickup_lat,
            pickup_lon,
            driver_id,
            proposal_id: None,
            event_time,
        }),
        2 => SimEvent::TripDriverArrived(TripDriverArrived {
            trip_id,
            rider_id,
            product,
            pickup_lat,
            pickup_lon,
            driver_id,
            event_time,
        }),
        3 => SimEvent::TripStarted(TripStarted {
            trip_id,
            rider_id,
            product,
            pickup_lat,
            pickup_lon,
            driver_id,
            event_time,
        }),
        _ => SimEvent::TripCompleted(TripCompleted {
            trip_id,
            rider_id,
            product,
            pickup_lat,
            pickup_lon,
            driver_id,
            dropoff_lat: trip.dropoff.lat,
            dropoff_lon: trip.dropoff.lon,
            distance_m: Some(trip.distance_m),
            trip_duration_s: Some(trip.duration_s),
            event_time,
        }),
    }
}
