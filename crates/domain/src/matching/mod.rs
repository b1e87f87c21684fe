//! The synchronous core of the `matcher` operator: which driver is offered which trip, when
//! to try the next one, and when to give up.
//!
//! # Model
//!
//! One [`Matcher`] runs per partition of the region-keyed `geo.driver` / `geo.trip` topics.
//! The operator feeds it the partition's records in order, the `driver.profile` table, and an
//! explicit event-time clock ([`Matcher::advance`]), and publishes what the calls return. No
//! wall clock, no I/O, no randomness, and no hash-map iteration order reaches an output
//! (candidates are ranked with driver ids as the last tie-break; timers, pools and restores
//! are walked in `(time, trip id)` order), so a run is a pure function of its inputs. That is
//! what makes replay-based restore and the property tests possible.
//!
//! **Supply** is a [`DriverIndex`]: each driver's latest ping (by event time), bucketed by
//! product and geohash cell while it is `Available`, not busy with an accepted trip and
//! pinged within `driver_ttl_ms`. Halo copies from neighbouring regions are fed like home
//! pings, so a pickup near a region border sees the drivers across it. A radius query asks
//! [`cells_within`](crate::geo::cells_within) for the cells in reach and filters their
//! drivers by exact haversine distance.
//!
//! **Scoring**: [`MatcherConfig::eta_s`] (distance × detour factor / speed) and
//! [`MatcherConfig::score`] (minutes of ETA against rating and acceptance rate); see there for
//! why.
//!
//! **Demand**: each trip is a small state machine.
//!
//! ```text
//!             request                     accept by the proposed driver
//!   (unknown) ───────► Open ──────────────────────────────────────────► Accepted
//!       │               │ ▲  decline, or offer lapses (offer_timeout_ms):
//!       │               │ └─ driver released and excluded; next best, attempt + 1
//!       │               ├─ cancel ─────────────────────────────────────► Cancelled
//!       │               ├─ no candidate left ─────────────────────────► Unfilled(NoDriverInRadius)
//!       │               ├─ max_attempts offers used ───────────────────► Unfilled(MaxAttempts)
//!       │               └─ request_deadline_ms after the request ──────► Unfilled(Deadline)
//!       └─ cancel (request not seen yet) ──────────────────────────────► Cancelled
//! ```
//!
//! An open offer *reserves* its driver: no driver is ever in two open offers of one matcher,
//! and a reserved driver is not a candidate for anything else. An accepted driver is *busy*
//! until an `Available` ping newer than the acceptance. A request with no candidate is
//! reported unfilled at once rather than retried until its deadline: the rider learns within
//! one round trip that no car is near, and can widen the search or try again, instead of
//! waiting two minutes for the same answer (the supply-demand gap is the surge pricer's job).
//!
//! Idempotence: a duplicate request, any event for a decided trip, and an answer from a driver
//! who does not hold the trip's current offer change nothing and output nothing (they are
//! counted in [`MatchCounters`]). Trip ids are remembered for
//! [`trip_memory_ms`] after the request for this, then forgotten to bound memory; they are
//! assumed unique (upstream never reuses one for another trip).
//!
//! **Greedy** (the default): each request, and each retry, takes the best-scoring candidate at
//! once. **Batched** (`batch_window_ms > 0`): requests and retries wait for the end of a
//! tumbling window, then the whole pool is assigned with [`optimal_assignment`] (most riders
//! served, then least total ETA), which can beat greedy when requests compete for the same
//! drivers. A pooled request with no candidate at all is reported unfilled; one that had
//! candidates but lost them to other requests waits for the next window (its deadline still
//! applies). Requests competing for the same drivers are solved together in chunks of at most
//! `batch_max_trips`, which bounds a window's work however dense a hotspot is.
//!
//! **Restore**: [`replay_horizon_ms`] says how much input to replay, and seeding the
//! published outputs makes the replay re-establish exactly the published offers; the
//! protocol is on [`Matcher::begin_restore`].
//!
//! Each partition is matched independently. A driver near a border is in the halo of two
//! regions and can be offered two trips by two matchers at once; the first acceptance wins
//! upstream and the other offer lapses into a retry.

mod assignment;
mod config;
mod error;
mod index;
mod matcher;
mod restore;
mod score;

pub use assignment::optimal_assignment;
pub use config::{
    MAX_DURATION_MS, MatchWeights, MatcherConfig, REPLAY_MARGIN_MS, replay_horizon_ms,
    trip_memory_ms,
};
pub use error::{AssignmentError, ConfigError, MatchError};
pub use index::{DriverIndex, DriverPing, DriverStatus, NearbyDriver, ProductKey};
pub use matcher::{
    Handled, MatchCounters, MatchOutput, Matcher, OpenProposal, Proposal, TripRequest, TripStatus,
    Unfilled, UnfilledReason,
};
pub use score::{DriverProfile, Estimate};
