//! [`SurgeEngine`]: one partition's supply, demand and multipliers, advanced tick by tick.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::geo::{Cell, LatLon};

use super::demand::{Dedupe, DemandRing};
use super::price::Pricing;
use super::supply::{DriverTable, PingOutcome};
use super::time::{Arrival, Watermark};
use super::{SurgeConfig, SurgeError};

/// A driver, as a 64-bit key. The operator derives it from the driver id with a hash that is
/// stable across processes (e.g. xxHash64 or FNV-1a, not `RandomState`), so that a restarted
/// engine replaying the same records sees the same keys; at 100k drivers the chance of any
/// collision is ~3·10⁻¹⁰.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverKey(pub u64);

/// A trip, as a 64-bit key derived from the trip id like [`DriverKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TripKey(pub u64);

/// What a driver is doing when a ping is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverStatus {
    /// Online and free: the only status that counts as supply.
    Available,
    /// Heading to a pickup.
    Dispatched,
    /// Carrying a rider.
    OnTrip,
    /// Logged off.
    Offline,
}

/// Which step of a trip's life a [`TripSignal`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TripKind {
    /// A rider asked for a ride: the only kind that counts as demand.
    Requested,
    /// A driver accepted the proposal.
    Accepted,
    /// A driver declined the proposal.
    Declined,
    /// The rider, driver or system cancelled.
    Cancelled,
    /// The driver reached the pickup.
    DriverArrived,
    /// The ride started.
    Started,
    /// The ride ended.
    Completed,
}

/// A routed driver ping (`geo.driver`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriverPing<P> {
    /// Who.
    pub driver: DriverKey,
    /// Where exactly: the teleport check needs metres, which cell centres are too coarse for.
    pub position: LatLon,
    /// The cell of `position` at the configured cell precision.
    pub cell: Cell,
    /// The product the driver serves.
    pub product: P,
    /// What the driver is doing.
    pub status: DriverStatus,
    /// The ping lies in a neighbouring region and was copied here only for smoothing near
    /// the border.
    pub halo: bool,
    /// When the ping was taken, ms since the Unix epoch.
    pub event_time_ms: i64,
}

/// A routed trip event (`geo.trip`), located at its pickup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripSignal<P> {
    /// Which trip; a repeated `Requested` for the same trip within a window counts once.
    pub trip: TripKey,
    /// What happened.
    pub kind: TripKind,
    /// The pickup cell at the configured cell precision.
    pub cell: Cell,
    /// The product asked for.
    pub product: P,
    /// The pickup lies in a neighbouring region (see [`DriverPing::halo`]).
    pub halo: bool,
    /// When it happened, ms since the Unix epoch.
    pub event_time_ms: i64,
}

/// Why a record was refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The cell is not at the configured cell precision.
    WrongPrecision,
    /// The ping's coordinates are NaN, infinite or out of range.
    InvalidPosition,
}

/// What [`SurgeEngine::ingest_ping`] / [`ingest_trip`](SurgeEngine::ingest_trip) did with a
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// On time: it will be applied when the watermark passes the tick at or after its event
    /// time (a ping may still be rejected as a teleport then, see [`Rejections::teleport`]).
    Accepted,
    /// Before the watermark; counted and dropped.
    Late,
    /// Too far ahead of the processing clock; counted and dropped.
    Future,
    /// Refused before reaching the watermark; counted and dropped.
    Rejected(RejectReason),
    /// While restoring: stamped before the replay start, so ignored (see
    /// [`SurgeEngine::restoring`]).
    BeforeReplay,
}

/// A multiplier to publish (`surge.multiplier`, key `<cell>:<product>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurgeUpdate<P> {
    /// The priced cell.
    pub cell: Cell,
    /// The priced product.
    pub product: P,
    /// The new multiplier: a multiple of `step` in `[1.0, cap]`.
    pub multiplier: f64,
    /// Available drivers in the cell at the tick (raw, before smoothing).
    pub supply: u32,
    /// Requests in the cell in the demand window (raw, deduplicated, before smoothing).
    pub demand: u32,
    /// Demand window, `[window_start_ms, window_end_ms)`.
    pub window_start_ms: i64,
    /// End of the demand window (exclusive): the tick rounded down to a hop.
    pub window_end_ms: i64,
    /// The tick, in event time.
    pub computed_at_ms: i64,
    /// `true` for the 1.0 published when the cell went without input for `stale_after_ms`.
    pub stale: bool,
}

/// The state of one owned (cell, product) as of the last tick: the queryable view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellView<P> {
    /// The cell.
    pub cell: Cell,
    /// The product.
    pub product: P,
    /// The current (last published) multiplier.
    pub multiplier: f64,
    /// Raw supply at the last tick.
    pub supply: u32,
    /// Raw demand at the last tick.
    pub demand: u32,
    /// Event time of the latest input (applied ping or counted request).
    pub last_input_ms: i64,
}

/// Records refused, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// See [`RejectReason::WrongPrecision`].
    pub wrong_precision: u64,
    /// See [`RejectReason::InvalidPosition`].
    pub invalid_position: u64,
    /// Pings implying a speed above `max_speed_mps`, found when the ping is applied.
    pub teleport: u64,
}

impl Rejections {
    /// All rejections.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.wrong_precision + self.invalid_position + self.teleport
    }
}

/// Counters for metrics. Every ingested record is in exactly one of `on_time`, `late`,
/// `future`, `rejected` and `before_replay`; the others are informational.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SurgeCounters {
    /// Passed the watermark and not rejected since (includes records still pending, and the
    /// superseded pings and duplicate requests below). A pending ping later rejected as a
    /// teleport moves from here to `rejected`.
    pub on_time: u64,
    /// Before the watermark.
    pub late: u64,
    /// Too far ahead of the processing clock.
    pub future: u64,
    /// Refused, per reason.
    pub rejected: Rejections,
    /// Ignored while restoring because stamped before the replay start.
    pub before_replay: u64,
    /// On-time pings ignored because the driver had a ping with the same event time.
    pub superseded_pings: u64,
    /// On-time requests ignored as duplicates of a request of the same trip.
    pub duplicate_requests: u64,
    /// Ticks computed (skipped empty ticks excluded).
    pub ticks: u64,
    /// Updates returned, stale ones included.
    pub updates: u64,
    /// Stale updates returned.
    pub stale_updates: u64,
}

/// A record waiting for the watermark, with its arrival number to keep equal times in
/// arrival order.
#[derive(Debug, Clone, Copy)]
struct Queued<T> {
    seq: u64,
    item: T,
}

/// Everything tracked for one (cell, product), owned or halo.
#[derive(Debug, Clone)]
struct CellState {
    demand_ring: DemandRing,
    /// Event time of the latest applied ping or counted request.
    last_input_ms: i64,
    /// The damped multiplier, and the last one published, in steps. Equal after every tick;
    /// they differ only after [`SurgeEngine::set_published`] read back a value outside
    /// today's `[1.0, cap]`, so that the next tick publishes the corrected value.
    current: u32,
    published: u32,
    /// Raw supply and demand at the tick being computed.
    supply: u32,
    demand: u32,
}

/// Counters kept by the engine itself (the arrival classes are the watermark's).
#[derive(Debug, Clone, Copy, Default)]
struct EngineCounts {
    rejected: Rejections,
    before_replay: u64,
    superseded_pings: u64,
    duplicate_requests: u64,
    ticks: u64,
    updates: u64,
    stale_updates: u64,
}

/// The update announcing a (cell, product)'s published multiplier at tick `at`.
fn update_of<P>(
    pricing: &Pricing,
    (window_start_ms, window_end_ms): (i64, i64),
    (cell, product): (Cell, P),
    state: &CellState,
    at: i64,
) -> SurgeUpdate<P> {
    SurgeUpdate {
        cell,
        product,
        multiplier: pricing.multiplier(state.published),
        supply: state.supply,
        demand: state.demand,
        window_start_ms,
        window_end_ms,
        computed_at_ms: at,
        stale: false,
    }
}

/// The region (at `precision`) of a cell the engine has accepted, so of a finer precision.
fn region_of(cell: Cell, precision: u8) -> Cell {
    cell.parent(precision).unwrap_or(cell)
}

/// Columns of the geohash grid at a precision: longitude gets the odd bit, since geohash
/// interleaving starts with longitude.
fn grid_columns(precision: u8) -> u32 {
    1 << (u32::from(precision) * 5).div_ceil(2)
}

/// Chebyshev step distance between two cells of the same precision, wrapping around the
/// antimeridian as [`Cell::disk`] does.
fn ring_distance(a: Cell, b: Cell) -> u32 {
    let ((row_a, column_a), (row_b, column_b)) = (a.position(), b.position());
    let columns = column_a.abs_diff(column_b);
    let columns = columns.min(grid_columns(a.precision()) - columns);
    row_a.abs_diff(row_b).max(columns)
}

/// `x` rounded down to a multiple of `m > 0`, saturating.
fn floor_to(x: i64, m: i64) -> i64 {
    x.div_euclid(m).saturating_mul(m)
}

/// `x` rounded up to a multiple of `m > 0`, saturating.
fn ceil_to(x: i64, m: i64) -> i64 {
    let floor = floor_to(x, m);
    if floor == x {
        x
    } else {
        floor.saturating_add(m)
    }
}

/// The surge engine of one partition; see the [module docs](super) for the formulas.
#[derive(Debug)]
pub struct SurgeEngine<P> {
    config: SurgeConfig,
    pricing: Pricing,
    /// `decay^r` for ring `r`.
    ring_weights: Box<[f64]>,
    /// Hop buckets per cell: the window and the current, partial hop.
    ring_slots: usize,
    watermark: Watermark,
    /// The next tick to consider; a multiple of `tick_ms` once ticking has started.
    next_tick: i64,
    last_tick: Option<i64>,
    /// Demand window of the last tick.
    last_window: (i64, i64),
    /// `Some(replay start)` while restoring.
    replay_from: Option<i64>,
    seq: u64,
    /// On-time records not yet applied, in arrival order.
    pending_pings: Vec<Queued<DriverPing<P>>>,
    pending_trips: Vec<Queued<TripSignal<P>>>,
    /// The pending records due by the last tick of an [`advance`](Self::advance), sorted
    /// by event time; empty between calls. Moving them out before sorting sorts each record
    /// once, instead of re-sorting everything still waiting out the lateness at every tick.
    due_pings: Vec<Queued<DriverPing<P>>>,
    due_trips: Vec<Queued<TripSignal<P>>>,
    drivers: DriverTable<P>,
    dedupe: Dedupe,
    cells: HashMap<(Cell, P), CellState>,
    /// Regions a non-halo record has been applied for.
    owned: HashSet<Cell>,
    /// Per-tick scratch, kept to avoid reallocating every tick.
    targets: Vec<(Cell, P, u32)>,
    expired: Vec<(Cell, P)>,
    counts: EngineCounts,
}

impl<P: Copy + Eq + Hash + Ord> SurgeEngine<P> {
    /// A live engine.
    ///
    /// # Errors
    /// [`SurgeError::InvalidConfig`] naming the first invalid field.
    pub fn new(config: SurgeConfig) -> Result<Self, SurgeError> {
        config.validate()?;
        let pricing = Pricing::new(&config);
        let ring_weights = (0..=config.smoothing_rings)
            .map(|ring| config.smoothing_decay.powi(ring as i32))
            .collect();
        // Validated: at most MAX_DEMAND_BUCKETS hops.
        let ring_slots = config.demand_hops() as usize + 1;
        Ok(Self {
            watermark: Watermark::new(
                config.allowed_lateness_ms,
                config.idle_advance_ms,
                config.max_future_ms,
            ),
            drivers: DriverTable::new(config.supply_ttl_ms, config.max_speed_mps),
            pricing,
            ring_weights,
            ring_slots,
            next_tick: i64::MIN,
            last_tick: None,
            last_window: (0, 0),
            replay_from: None,
            seq: 0,
            pending_pings: Vec::new(),
            pending_trips: Vec::new(),
            due_pings: Vec::new(),
            due_trips: Vec::new(),
            dedupe: Dedupe::default(),
            cells: HashMap::new(),
            owned: HashSet::new(),
            targets: Vec::new(),
            expired: Vec::new(),
            counts: EngineCounts::default(),
            config,
        })
    }

    /// An engine rebuilding its state after a restart, by replay.
    ///
    /// Protocol: replay the partition's input through [`ingest_ping`](Self::ingest_ping),
    /// [`ingest_trip`](Self::ingest_trip) and [`advance`](Self::advance) as live, passing as
    /// `now_ms` the processing time the record originally had (e.g. its broker timestamp, if
    /// that is what the live path passes too), from any offset at or before the first record
    /// stamped at or after `replay_from_ms = M − replay_horizon_ms(config)` (see
    /// [`replay_horizon_ms`](super::replay_horizon_ms)); then seed the last published
    /// multipliers with [`set_published`](Self::set_published), optionally restore an
    /// extrapolated watermark with [`raise_watermark`](Self::raise_watermark), and call
    /// [`finish_restore`](Self::finish_restore).
    ///
    /// While restoring, records stamped before `replay_from_ms` are ignored (so the start
    /// offset need not be exact), ticks update the state but neither damp nor publish (the
    /// multipliers come from the output topic instead, and outputs are never returned),
    /// and the watermark is not extrapolated on idle (a replay runs faster than real time).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn restoring(config: SurgeConfig, replay_from_ms: i64) -> Result<Self, SurgeError> {
        let mut engine = Self::new(config)?;
        engine.replay_from = Some(replay_from_ms);
        Ok(engine)
    }

    /// Seeds the last published multiplier of a (cell, product), as read back from the
    /// compacted output topic, and makes it the current one (clamped to `[1.0, cap]`; if
    /// the clamp changed it, the next tick publishes the clamped value). Returns whether the
    /// (cell, product) is tracked.
    ///
    /// Call it after the replay: untracked keys are ignored, because a never-crashed engine
    /// would not track them either (they belong to another partition, or had no input within
    /// the replay horizon, in which case the topic already holds their stale 1.0).
    ///
    /// # Errors
    /// [`SurgeError::InvalidMultiplier`] if `multiplier` is NaN or infinite.
    pub fn set_published(
        &mut self,
        cell: Cell,
        product: P,
        multiplier: f64,
    ) -> Result<bool, SurgeError> {
        let steps = self
            .pricing
            .steps_of(multiplier)
            .ok_or(SurgeError::InvalidMultiplier(multiplier))?;
        let Some(state) = self.cells.get_mut(&(cell, product)) else {
            return Ok(false);
        };
        state.published = steps;
        state.current = self.pricing.clamp(steps);
        Ok(true)
    }

    /// Raises the watermark (never lowers it). For a restore: the replay rebuilds the
    /// watermark from event times only, so one extrapolated on idle before the restart (for
    /// instance kept in the offset-commit metadata) must be put back by hand, or the
    /// restored engine would recompute ticks that were already published.
    pub fn raise_watermark(&mut self, watermark_ms: i64) {
        self.watermark.raise(watermark_ms);
    }

    /// Ends a restore: from now on ticks damp and publish.
    pub fn finish_restore(&mut self) {
        self.replay_from = None;
    }

    /// Whether the engine is restoring (see [`restoring`](Self::restoring)).
    #[must_use]
    pub fn is_restoring(&self) -> bool {
        self.replay_from.is_some()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Checks what every record needs, then whether it is before the replay start; `Err`
    /// holds the admission to return.
    fn admit(&mut self, cell: Cell, event_time_ms: i64) -> Result<(), Admission> {
        if cell.precision() != self.config.cell_precision {
            self.counts.rejected.wrong_precision += 1;
            return Err(Admission::Rejected(RejectReason::WrongPrecision));
        }
        if self.replay_from.is_some_and(|from| event_time_ms < from) {
            self.counts.before_replay += 1;
            return Err(Admission::BeforeReplay);
        }
        Ok(())
    }

    /// Takes a driver ping arriving at processing time `now_ms`. Applied later, in
    /// event-time order, when the watermark passes the tick at or after its event time.
    pub fn ingest_ping(&mut self, ping: DriverPing<P>, now_ms: i64) -> Admission {
        if ping.position.validated().is_err() {
            self.counts.rejected.invalid_position += 1;
            return Admission::Rejected(RejectReason::InvalidPosition);
        }
        if let Err(admission) = self.admit(ping.cell, ping.event_time_ms) {
            return admission;
        }
        match self.watermark.observe(ping.event_time_ms, now_ms) {
            Arrival::OnTime => {
                let seq = self.next_seq();
                self.pending_pings.push(Queued { seq, item: ping });
                Admission::Accepted
            }
            Arrival::Late => Admission::Late,
            Arrival::Future => Admission::Future,
        }
    }

    /// Takes a trip event arriving at processing time `now_ms`. Only `Requested` changes
    /// demand; every on-time record moves the watermark, and a non-halo one makes its region
    /// owned.
    pub fn ingest_trip(&mut self, trip: TripSignal<P>, now_ms: i64) -> Admission {
        if let Err(admission) = self.admit(trip.cell, trip.event_time_ms) {
            return admission;
        }
        match self.watermark.observe(trip.event_time_ms, now_ms) {
            Arrival::OnTime => {
                // Ownership only grows, so a record of an owned region that is not a
                // request would change nothing when applied: skip queueing it.
                let teaches_ownership = !trip.halo
                    && !self
                        .owned
                        .contains(&region_of(trip.cell, self.config.region_precision));
                if trip.kind == TripKind::Requested || teaches_ownership {
                    let seq = self.next_seq();
                    self.pending_trips.push(Queued { seq, item: trip });
                }
                Admission::Accepted
            }
            Arrival::Late => Admission::Late,
            Arrival::Future => Admission::Future,
        }
    }

    /// Lets the event clock move (extrapolating it if the partition has been idle for
    /// `idle_advance_ms` of processing time, unless restoring) and computes every tick the
    /// watermark has passed, appending their updates to `out`: tick by tick, each tick's
    /// updates sorted by (cell, product).
    ///
    /// A tick at `T` is computed once the watermark is strictly past `T` (a record stamped
    /// exactly `T` is still on time while the watermark equals `T`), from exactly the records
    /// stamped at or before `T`. Ticks with nothing to compute (no tracked cell and no record
    /// due) are skipped in O(1), so a far jump of the watermark costs at most
    /// `stale_after_ms / tick_ms + 1` computed ticks after the last input before the jump
    /// (every cell is dropped by then), plus the ticks at which records are due — never one
    /// per multiple of `tick_ms`. Skipping is exact: a skipped tick would have produced
    /// nothing and changed nothing.
    ///
    /// How records are batched between calls changes nothing, except through idle
    /// extrapolation, which is only checked here, at the `now_ms` of the call.
    pub fn advance(&mut self, now_ms: i64, out: &mut Vec<SurgeUpdate<P>>) {
        if self.replay_from.is_none() {
            self.watermark.on_idle(now_ms);
        }
        let Some(watermark) = self.watermark.current() else {
            return;
        };
        if self.next_tick >= watermark {
            return;
        }
        let tick_ms = self.config.tick_ms;
        // Every later record is stamped at or after the watermark, so no tick before this
        // one can receive another record.
        let first_open_tick = ceil_to(watermark, tick_ms);
        let last_due = first_open_tick.saturating_sub(tick_ms);
        let due_pings = &mut self.due_pings;
        self.pending_pings.retain(|q| {
            let due = q.item.event_time_ms <= last_due;
            if due {
                due_pings.push(*q);
            }
            !due
        });
        let due_trips = &mut self.due_trips;
        self.pending_trips.retain(|q| {
            let due = q.item.event_time_ms <= last_due;
            if due {
                due_trips.push(*q);
            }
            !due
        });
        self.due_pings
            .sort_unstable_by_key(|q| (q.item.event_time_ms, q.seq));
        self.due_trips
            .sort_unstable_by_key(|q| (q.item.event_time_ms, q.seq));
        let (mut pings, mut trips) = (0, 0);
        while self.next_tick < watermark {
            let mut at = self.next_tick;
            if self.cells.is_empty() {
                let earliest = [
                    self.due_pings.get(pings).map(|q| q.item.event_time_ms),
                    self.due_trips.get(trips).map(|q| q.item.event_time_ms),
                ]
                .into_iter()
                .flatten()
                .min();
                let resume = earliest.map_or(first_open_tick, |e| {
                    ceil_to(e, tick_ms).min(first_open_tick)
                });
                at = at.max(resume);
                if at >= watermark {
                    self.next_tick = at;
                    break;
                }
            }
            self.tick(at, &mut pings, &mut trips, out);
            self.next_tick = at.saturating_add(tick_ms);
        }
        // Every due record's tick (at most `last_due`, below the watermark) was computed or,
        // with nothing tracked, jumped to: all of them have been applied.
        debug_assert_eq!((pings, trips), (self.due_pings.len(), self.due_trips.len()));
        self.due_pings.clear();
        self.due_trips.clear();
    }

    fn apply_ping(&mut self, ping: &DriverPing<P>) {
        if !ping.halo {
            self.owned
                .insert(region_of(ping.cell, self.config.region_precision));
        }
        match self.drivers.apply(ping) {
            PingOutcome::Applied => {
                self.touch(ping.cell, ping.product, ping.event_time_ms);
            }
            PingOutcome::Superseded => self.counts.superseded_pings += 1,
            PingOutcome::Teleport => self.counts.rejected.teleport += 1,
        }
    }

    fn apply_trip(&mut self, trip: &TripSignal<P>) {
        if !trip.halo {
            self.owned
                .insert(region_of(trip.cell, self.config.region_precision));
        }
        if trip.kind != TripKind::Requested {
            return;
        }
        let window_ms = self.config.demand_window_ms;
        if self
            .dedupe
            .first_in_window(trip.trip, trip.event_time_ms, window_ms)
        {
            let hop = trip.event_time_ms.div_euclid(self.config.demand_hop_ms);
            self.touch(trip.cell, trip.product, trip.event_time_ms)
                .demand_ring
                .add(hop);
        } else {
            self.counts.duplicate_requests += 1;
        }
    }

    /// The state of a (cell, product), created on first input, with its input time updated.
    fn touch(&mut self, cell: Cell, product: P, at_ms: i64) -> &mut CellState {
        let (slots, one) = (self.ring_slots, self.pricing.one());
        let state = self
            .cells
            .entry((cell, product))
            .or_insert_with(|| CellState {
                demand_ring: DemandRing::new(slots),
                last_input_ms: at_ms,
                current: one,
                published: one,
                supply: 0,
                demand: 0,
            });
        state.last_input_ms = state.last_input_ms.max(at_ms);
        state
    }

    fn is_owned(&self, cell: Cell) -> bool {
        self.owned
            .contains(&region_of(cell, self.config.region_precision))
    }

    /// Smoothed supply and demand of an owned (cell, product): the raw values of its disk,
    /// halo cells included, weighted by `decay^ring`.
    fn smoothed(&self, cell: Cell, product: P) -> (f64, f64) {
        let (mut supply, mut demand) = (0.0, 0.0);
        for other in cell.disk(self.config.smoothing_rings) {
            let Some(state) = self.cells.get(&(other, product)) else {
                continue;
            };
            let ring = if other == cell {
                0
            } else {
                ring_distance(cell, other) as usize
            };
            let weight = self.ring_weights.get(ring).copied().unwrap_or(0.0);
            supply += weight * f64::from(state.supply);
            demand += weight * f64::from(state.demand);
        }
        (supply, demand)
    }

    /// Computes the tick at `at`: applies the records due, counts raw supply and demand,
    /// drops stale cells, and (unless restoring) damps and publishes.
    fn tick(
        &mut self,
        at: i64,
        pings: &mut usize,
        trips: &mut usize,
        out: &mut Vec<SurgeUpdate<P>>,
    ) {
        self.counts.ticks += 1;
        self.last_tick = Some(at);
        while let Some(queued) = self.due_pings.get(*pings)
            && queued.item.event_time_ms <= at
        {
            let ping = queued.item;
            self.apply_ping(&ping);
            *pings += 1;
        }
        while let Some(queued) = self.due_trips.get(*trips)
            && queued.item.event_time_ms <= at
        {
            let trip = queued.item;
            self.apply_trip(&trip);
            *trips += 1;
        }

        // Raw demand over [end − window, end), end = the tick rounded down to a hop.
        let hop_ms = self.config.demand_hop_ms;
        let end_hop = at.div_euclid(hop_ms);
        let start_hop = end_hop.saturating_sub(self.config.demand_hops());
        self.last_window = (
            start_hop.saturating_mul(hop_ms),
            end_hop.saturating_mul(hop_ms),
        );
        let stale_through = at.saturating_sub(self.config.stale_after_ms);
        self.expired.clear();
        for (key, state) in &mut self.cells {
            state.supply = 0;
            state.demand = state.demand_ring.sum(start_hop, end_hop);
            if state.last_input_ms <= stale_through {
                self.expired.push(*key);
            }
        }
        // Raw supply: every driver counts in the cell of its latest applied ping, which is
        // tracked because stale_after_ms >= supply_ttl_ms.
        let cells = &mut self.cells;
        self.drivers.count_and_expire(at, |cell, product| {
            if let Some(state) = cells.get_mut(&(cell, product)) {
                state.supply += 1;
            }
        });
        self.dedupe
            .forget_through(at.saturating_sub(self.config.demand_window_ms));

        // Stale cells: dropped before smoothing, so their old demand no longer leaks into
        // their neighbours either.
        let first_update = out.len();
        let restoring = self.replay_from.is_some();
        for index in 0..self.expired.len() {
            let (cell, product) = self.expired[index];
            let Some(state) = self.cells.remove(&(cell, product)) else {
                continue;
            };
            if !restoring && state.published != self.pricing.one() && self.is_owned(cell) {
                out.push(SurgeUpdate {
                    multiplier: 1.0,
                    stale: true,
                    ..update_of(&self.pricing, self.last_window, (cell, product), &state, at)
                });
                self.counts.stale_updates += 1;
            }
        }
        if !restoring {
            self.price(at, out);
        }
        out[first_update..].sort_unstable_by_key(|update| (update.cell, update.product));
        self.counts.updates += (out.len() - first_update) as u64;
    }

    /// Targets from the smoothed ratio, then damping and the publish rule, for every owned
    /// tracked (cell, product).
    fn price(&mut self, at: i64, out: &mut Vec<SurgeUpdate<P>>) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        for &(cell, product) in self.cells.keys() {
            if !self.is_owned(cell) {
                continue;
            }
            let (supply, demand) = self.smoothed(cell, product);
            // Fewer than one smoothed driver counts as one: an empty cell with a single
            // request is a ratio of 1, not infinite surge.
            let ratio = demand / supply.max(1.0);
            targets.push((cell, product, self.pricing.target(ratio)));
        }
        for &(cell, product, target) in &targets {
            let Some(state) = self.cells.get_mut(&(cell, product)) else {
                continue;
            };
            state.current = self.pricing.damp(state.current, target);
            if state.current != state.published {
                state.published = state.current;
                out.push(update_of(
                    &self.pricing,
                    self.last_window,
                    (cell, product),
                    state,
                    at,
                ));
            }
        }
        self.targets = targets;
    }

    /// The watermark, `None` before the first on-time record.
    #[must_use]
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// The largest event time of an on-time record: `M` of
    /// [`replay_horizon_ms`](super::replay_horizon_ms).
    #[must_use]
    pub fn max_event_time(&self) -> Option<i64> {
        self.watermark.max_event_time()
    }

    /// The last tick computed.
    #[must_use]
    pub fn last_tick(&self) -> Option<i64> {
        self.last_tick
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SurgeConfig {
        &self.config
    }

    /// Drivers tracked (seen within the supply TTL as of the last tick).
    #[must_use]
    pub fn drivers_tracked(&self) -> usize {
        self.drivers.len()
    }

    /// (cell, product) pairs tracked, owned and halo.
    #[must_use]
    pub fn cells_tracked(&self) -> usize {
        self.cells.len()
    }

    /// Regions this engine owns.
    #[must_use]
    pub fn regions_owned(&self) -> usize {
        self.owned.len()
    }

    /// Trip ids remembered for deduplication.
    #[must_use]
    pub fn trips_tracked(&self) -> usize {
        self.dedupe.len()
    }

    /// On-time records waiting for the watermark.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending_pings.len() + self.pending_trips.len()
    }

    /// Counters for metrics.
    #[must_use]
    pub fn counters(&self) -> SurgeCounters {
        let arrivals = self.watermark.counts();
        let c = self.counts;
        SurgeCounters {
            // Teleports are found among on-time pings, so this never saturates.
            on_time: arrivals.on_time.saturating_sub(c.rejected.teleport),
            late: arrivals.late,
            future: arrivals.future,
            rejected: c.rejected,
            before_replay: c.before_replay,
            superseded_pings: c.superseded_pings,
            duplicate_requests: c.duplicate_requests,
            ticks: c.ticks,
            updates: c.updates,
            stale_updates: c.stale_updates,
        }
    }

    /// Approximate bytes of state held (hash tables by capacity, one control byte per
    /// bucket, plus the demand rings and queues).
    #[must_use]
    pub fn bytes_estimate(&self) -> usize {
        let ring_bytes = self
            .cells
            .values()
            .next()
            .map_or(0, |state| state.demand_ring.heap_bytes());
        let cells = self.cells.capacity() * (size_of::<((Cell, P), CellState)>() + 1)
            + self.cells.len() * ring_bytes;
        let queues = (self.pending_pings.capacity() + self.due_pings.capacity())
            * size_of::<Queued<DriverPing<P>>>()
            + (self.pending_trips.capacity() + self.due_trips.capacity())
                * size_of::<Queued<TripSignal<P>>>();
        let scratch = self.targets.capacity() * size_of::<(Cell, P, u32)>()
            + self.expired.capacity() * size_of::<(Cell, P)>();
        size_of::<Self>()
            + self.drivers.heap_bytes()
            + self.dedupe.heap_bytes()
            + cells
            + self.owned.capacity() * (size_of::<Cell>() + 1)
            + queues
            + scratch
    }

    /// The owned (cell, product) pairs with their multiplier and raw counts as of the last
    /// tick, sorted: the queryable state.
    #[must_use]
    pub fn cell_views(&self) -> Vec<CellView<P>> {
        let mut views: Vec<_> = self
            .cells
            .iter()
            .filter(|((cell, _), _)| self.is_owned(*cell))
            .map(|(&(cell, product), state)| CellView {
                cell,
                product,
                multiplier: self.pricing.multiplier(state.current),
                supply: state.supply,
                demand: state.demand,
                last_input_ms: state.last_input_ms,
            })
            .collect();
        views.sort_unstable_by_key(|view| (view.cell, view.product));
        views
    }
}
