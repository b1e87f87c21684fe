//! Surge pricing: the synchronous core of the `surge-pricer` operator.
//!
//! The operator runs one [`SurgeEngine`] per Kafka partition of the region-keyed topics
//! `geo.driver` and `geo.trip`. It hands the engine every record in arrival order
//! ([`SurgeEngine::ingest_ping`], [`SurgeEngine::ingest_trip`]) together with the processing
//! clock, calls [`SurgeEngine::advance`], and publishes the [`SurgeUpdate`]s it gets back
//! to `surge.multiplier`. The engine has no I/O, no wall clock and no dependence on hash-map
//! order: the same records and clock values give the same updates, which is what makes
//! exactly-once output and restore by replay possible. Product types are generic (`P`), so
//! the operator can use `surgeflow_schema::Product` directly; statuses and trip kinds are
//! small enums of this module that the operator maps to.
//!
//! # Event time
//!
//! Per partition, `watermark = max event time seen − allowed_lateness_ms`; it never moves
//! back ([`Watermark`]). A record is
//! - **future** if stamped more than `max_future_ms` after the processing clock: counted,
//!   dropped, and it never moves the watermark;
//! - **late** if stamped before the watermark: counted and dropped;
//! - **on time** otherwise: queued, and applied when the watermark passes the tick at or
//!   after its event time.
//!
//! On-time records are applied *in event-time order*, all records stamped `<= T` before tick
//! `T` is computed, and none stamped later. Why: with a lateness allowance, records up to
//! `allowed_lateness_ms` into the future of a tick have already arrived when it is computed;
//! applying them straight away would let a driver's next ping hide the one that counts at
//! the tick, and make the outputs depend on arrival order. Queueing makes every tick a
//! function of the records stamped up to it: any reordering that keeps records on time
//! produces the same updates.
//!
//! When no on-time record has arrived for `idle_advance_ms` of processing time, the event
//! clock is extrapolated at real speed: the watermark may advance to
//! `max event time + (now − last arrival) − allowed_lateness_ms` — not to `now`, so a replay
//! of old data at real speed still works while a quiet partition keeps ticking.
//!
//! # Ticks
//!
//! A tick happens at every multiple `T` of `tick_ms` that the watermark has strictly
//! passed. For every owned (cell `c`, product `p`) with any state — a tracked ping or
//! request, or a raised multiplier — the tick computes:
//!
//! 1. **Raw supply** `S(c)`: drivers whose latest applied ping is `Available`, in `c`, for
//!    `p`, stamped in `(T − supply_ttl_ms, T]`. A driver is where its latest ping says; a
//!    ping implying more than `max_speed_mps` from *both* of the driver's last two pings
//!    within the TTL is rejected as a teleport (one GPS glitch costs one ping; a genuine jump
//!    is accepted from its second ping on).
//! 2. **Raw demand** `D(c)`: `Requested` events stamped in `[end − demand_window_ms, end)`,
//!    `end = floor(T / demand_hop_ms) · demand_hop_ms`, so demand slides by whole hops and is
//!    kept as one counter per hop bucket. A request of a trip already requested less than a
//!    window earlier is a duplicate and counts nothing.
//! 3. **Smoothing** over the `k = smoothing_rings` disk with decay `d = smoothing_decay`:
//!    `S'(c) = Σ_{c' ∈ disk(c, k)} d^ring(c, c') · S_all(c')`, and likewise `D'(c)`, where
//!    `ring` is the Chebyshev step distance on the grid (0 for `c` itself) and `S_all`, `D_all`
//!    include the halo records copied in from neighbouring regions. Why: a rider standing
//!    at a cell edge is served by drivers on both sides, and cell-by-cell prices would jump
//!    between adjacent blocks.
//! 4. **Ratio** `r = D' / max(S', 1)`: fewer than one smoothed driver counts as one, so an
//!    empty cell with a single request is a ratio of 1, not maximum surge.
//! 5. **Curve**: piecewise linear through the configured `(ratio, multiplier)` points, flat
//!    before the first and after the last, clamped to `[1, cap]`.
//! 6. **Quantise**: rounded half up to a multiple of `step`. Multipliers are held as integer
//!    counts of steps, and values are multiplied by the integer `1 / step` (rather than
//!    divided by `step`), so `1.25` is exactly half-way and rounds to `1.3`.
//! 7. **Damping** from the current multiplier `m` (initially 1): if
//!    `|target − m| < hysteresis`, `m` stays; otherwise
//!    `m' = quantise(m + clamp(ewma_alpha · (target − m), ±max_change_per_tick))`, moved at
//!    least one step towards the target (rounding alone would stall a falling price one step
//!    above its target, as `11 + 0.5 · (10 − 11) = 10.5` rounds back up). Why: prices move a
//!    fraction of the way per tick and never by more than the change cap, so one burst of
//!    requests cannot double a price at once, and hysteresis stops flicker at breakpoints.
//! 8. **Publish** `SurgeUpdate { multiplier: m', supply: S(c), demand: D(c), window, computed_at:
//!    T, stale: false }` only when `m'` differs from the last published multiplier (initially
//!    1.0, so a quiet cell is never published). Updates of one tick are sorted by
//!    (cell, product).
//! 9. **Stale**: a (cell, product) without an applied ping or counted request for
//!    `stale_after_ms` is dropped — before smoothing, so its old demand stops counting for its
//!    neighbours too — and, if its published multiplier was not 1.0, publishes 1.0 once with
//!    `stale: true`. This bounds the state and takes down prices whose evidence has gone
//!    quiet.
//!
//! A cell is **owned** once a non-halo record of its region (its parent at
//! `region_precision`) has been applied. Only owned cells are priced; halo cells feed the
//! smoothing of owned ones. Owning by region rather than trusting each record's halo flag
//! keeps a driver that appears both as a record and as a halo copy (two neighbouring regions
//! on one partition) counted once, as owned supply.
//!
//! Ticks with nothing to compute are skipped exactly; see [`SurgeEngine::advance`] for why
//! a far jump of the watermark stays cheap.
//!
//! # Restore
//!
//! All state is rebuilt from a bounded replay of the input ([`replay_horizon_ms`]: every
//! record stamped after `max event time − lateness − max(2·window + hop, 2·ttl, stale_after +
//! tick)`) plus the last published multipliers read back from the compacted output topic:
//! the damped multiplier always equals the last published one, so it needs no other
//! storage. See [`SurgeEngine::restoring`] for the protocol.
//!
//! # Cost
//!
//! Per record: a few integer hash-map operations and a push onto a queue, no allocation
//! beyond the first sight of a driver, cell or trip. Per tick: one pass over the drivers
//! and over the tracked cells, plus `(2k + 1)²` lookups per owned cell for the smoothing;
//! idle cells and drivers expire, so both passes cover only what is active.

mod config;
mod curve;
mod demand;
mod engine;
mod error;
mod price;
mod supply;
mod time;

pub use config::{SurgeConfig, replay_horizon_ms};
pub use curve::SurgeCurve;
pub use engine::{
    Admission, CellView, DriverKey, DriverPing, DriverStatus, RejectReason, Rejections,
    SurgeCounters, SurgeEngine, SurgeUpdate, TripKey, TripKind, TripSignal,
};
pub use error::SurgeError;
pub use time::{Arrival, ArrivalCounts, Watermark};
