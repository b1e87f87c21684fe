//! [`Matcher`]: the per-partition state machine that turns driver pings and trip events into
//! proposals and unfilled reports.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::mem;
use std::ops::ControlFlow;

use super::config::{ms, trip_memory_ms};
use super::index::{BOUND_SLACK_M, Sighting, Slot};
use super::{
    ConfigError, DriverIndex, DriverPing, DriverProfile, Estimate, MatchError, MatcherConfig,
    ProductKey, optimal_assignment,
};
use crate::geo::LatLon;

/// Why a request got no driver (the domain mirror of the schema's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnfilledReason {
    /// No candidate was left within the radius: none available, or all reserved, busy or
    /// already tried for this trip.
    NoDriverInRadius,
    /// `max_attempts` offers were declined or timed out.
    MaxAttempts,
    /// `request_deadline_ms` passed first.
    Deadline,
}

/// A rider's request, as the matcher needs it from a `geo.trip` record of kind `REQUESTED`.
#[derive(Debug, Clone, PartialEq)]
pub struct TripRequest<P> {
    /// The trip.
    pub trip_id: String,
    /// The rider.
    pub rider_id: String,
    /// The product asked for; only drivers online for it are candidates.
    pub product: P,
    /// Where to pick the rider up.
    pub pickup: LatLon,
    /// When the request was made, UTC milliseconds; the deadline counts from here.
    pub event_time: i64,
    /// The surge multiplier at the pickup cell when the request arrived, from the operator's
    /// `surge.multiplier` table. It is the price the rider was quoted, so every attempt of the
    /// trip carries this same value rather than whatever the cell shows at a retry.
    pub surge_multiplier: f64,
}

/// An offer of a trip to a driver (`match.proposal`).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal<P> {
    /// `<trip_id>#<attempt>`: unique per offer and stable across restores, so downstream can
    /// deduplicate.
    pub proposal_id: String,
    /// The trip.
    pub trip_id: String,
    /// The rider.
    pub rider_id: String,
    /// The driver offered the trip.
    pub driver_id: String,
    /// The product.
    pub product: P,
    /// Great-circle distance from the driver to the pickup, metres.
    pub distance_m: f64,
    /// Estimated pickup time, seconds.
    pub eta_s: f64,
    /// The driver's score for this pickup (higher is better).
    pub score: f64,
    /// The multiplier the rider was quoted.
    pub surge_multiplier: f64,
    /// 1 for the first offer of the trip, then one more per retry.
    pub attempt: u32,
    /// When the offer was made, UTC milliseconds: the matcher's clock, or the event time of
    /// the record that triggered it if that is later.
    pub proposed_at: i64,
    /// When the offer lapses if unanswered: `proposed_at + offer_timeout_ms`.
    pub expires_at: i64,
}

/// A request the matcher gave up on (`match.unfilled`).
#[derive(Debug, Clone, PartialEq)]
pub struct Unfilled<P> {
    /// The trip.
    pub trip_id: String,
    /// The rider.
    pub rider_id: String,
    /// The product.
    pub product: P,
    /// The pickup point.
    pub pickup: LatLon,
    /// Offers made before giving up.
    pub attempts: u32,
    /// Why.
    pub reason: UnfilledReason,
    /// When the matcher gave up, UTC milliseconds (as [`Proposal::proposed_at`]).
    pub decided_at: i64,
}

/// Something to publish, keyed by trip id on either output topic.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchOutput<P> {
    /// To `match.proposal`.
    Proposal(Proposal<P>),
    /// To `match.unfilled`.
    Unfilled(Unfilled<P>),
}

impl<P> MatchOutput<P> {
    /// The trip this output is about (the record key on both topics).
    #[must_use]
    pub fn trip_id(&self) -> &str {
        match self {
            Self::Proposal(p) => &p.trip_id,
            Self::Unfilled(u) => &u.trip_id,
        }
    }
}

/// Whether an input changed anything. Ignored inputs are counted in [`MatchCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The input was applied.
    Applied,
    /// The input was a duplicate, stale, or for a trip or offer that is no longer open.
    Ignored,
}

/// Where a trip stands, for metrics, debugging and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripStatus {
    /// Still being matched.
    Open {
        /// Offers made so far.
        attempts: u32,
        /// Whether an offer is currently out (otherwise it waits for a batch window, or, while
        /// restoring, for [`Matcher::end_restore`]).
        offered: bool,
    },
    /// The proposed driver accepted.
    Accepted,
    /// Cancelled (possibly before its request was seen).
    Cancelled,
    /// Given up.
    Unfilled(UnfilledReason),
}

/// An offer that is out and unanswered, as listed by [`Matcher::open_proposals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenProposal<'a> {
    /// The trip.
    pub trip_id: &'a str,
    /// The driver reserved for it.
    pub driver_id: &'a str,
    /// The offer's attempt number.
    pub attempt: u32,
    /// When it lapses.
    pub expires_at: i64,
}

/// Running totals since the matcher was created, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchCounters {
    /// Requests that started a match.
    pub requests: u64,
    /// Proposals made (including those re-established from seeds while restoring).
    pub proposals: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Offers declined.
    pub declined: u64,
    /// Offers that lapsed unanswered.
    pub timeouts: u64,
    /// Trips cancelled.
    pub cancelled: u64,
    /// Unfilled with [`UnfilledReason::NoDriverInRadius`].
    pub unfilled_no_driver: u64,
    /// Unfilled with [`UnfilledReason::MaxAttempts`].
    pub unfilled_max_attempts: u64,
    /// Unfilled with [`UnfilledReason::Deadline`].
    pub unfilled_deadline: u64,
    /// Requests for a trip already known (redelivered or duplicated upstream).
    pub ignored_duplicates: u64,
    /// Answers or cancellations for a trip that is unknown or already decided, answers from a
    /// driver who is not the one currently proposed, and requests or cancellations older than
    /// the trip memory.
    pub ignored_stale: u64,
    /// Driver pings applied.
    pub pings_applied: u64,
    /// Driver pings ignored because the driver had a newer one.
    pub pings_out_of_order: u64,
    /// While restoring, seeded proposals that took a driver the replay had reserved for
    /// another trip (the replay lagged the published history; see [`Matcher::end_restore`]).
    pub restore_conflicts: u64,
}

impl MatchCounters {
    pub(super) fn count_unfilled(&mut self, reason: UnfilledReason) {
        match reason {
            UnfilledReason::NoDriverInRadius => self.unfilled_no_driver += 1,
            UnfilledReason::MaxAttempts => self.unfilled_max_attempts += 1,
            UnfilledReason::Deadline => self.unfilled_deadline += 1,
        }
    }
}

/// How a finished trip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Accepted,
    Cancelled,
    Unfilled(UnfilledReason),
}

#[derive(Debug, Clone)]
pub(super) enum Phase<P> {
    Open(Box<OpenTrip<P>>),
    Done(Outcome),
}

/// Why an open trip has no offer out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// It has an offer out (or is being decided right now).
    No,
    /// In the pool of the next batch window.
    Pool,
    /// Restoring: its next decision was not in the published history, so it is made live by
    /// `end_restore`.
    Deferred,
}

#[derive(Debug, Clone)]
pub(super) struct OpenTrip<P> {
    rider_id: String,
    product: P,
    pickup: LatLon,
    surge_multiplier: f64,
    deadline_at: i64,
    pub(super) attempts: u32,
    offer: Option<Offer>,
    /// Drivers who declined or let an offer of this trip lapse: never offered it again.
    excluded: Vec<Slot>,
    pub(super) wait: Wait,
    /// The due time under which this trip sits in `Matcher::timers`, if any.
    timer: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    slot: Slot,
    attempt: u32,
    expires_at: i64,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    slot: Slot,
    estimate: Estimate,
}

/// The published outputs of one trip, fed back while restoring.
#[derive(Debug, Clone)]
pub(super) struct TripSeeds<P> {
    pub(super) proposals: BTreeMap<u32, Proposal<P>>,
    pub(super) unfilled: Option<Unfilled<P>>,
}

impl<P> Default for TripSeeds<P> {
    fn default() -> Self {
        Self {
            proposals: BTreeMap::new(),
            unfilled: None,
        }
    }
}

/// Restore-time state: present from `begin_restore` to `end_restore`.
#[derive(Debug, Clone)]
pub(super) struct Restore<P> {
    pub(super) seeds: HashMap<String, TripSeeds<P>>,
    pub(super) deferred: BTreeSet<String>,
}

impl<P> Default for Restore<P> {
    fn default() -> Self {
        Self {
            seeds: HashMap::new(),
            deferred: BTreeSet::new(),
        }
    }
}

/// A published decision forced on a trip while restoring.
enum Forced<P> {
    Proposal(Proposal<P>),
    Unfilled(Unfilled<P>),
}

/// The matcher of one partition. See the [module docs](super) for the model.
#[derive(Debug, Clone)]
pub struct Matcher<P> {
    pub(super) config: MatcherConfig,
    offer_timeout: i64,
    memory: i64,
    window: i64,
    /// The event-time clock: the largest `advance` argument so far.
    pub(super) clock: i64,
    pub(super) index: DriverIndex<P>,
    /// Open trips, and finished ones until they are forgotten.
    pub(super) trips: HashMap<String, Phase<P>>,
    /// Driver → the trip whose open offer holds it. At most one per driver, by construction.
    pub(super) reservations: HashMap<Slot, String>,
    /// `(due, trip)`: the next offer lapse or deadline of each open trip that has one.
    timers: BTreeSet<(i64, String)>,
    /// `(forget at, trip)`: when each remembered trip is dropped.
    forget: BTreeSet<(i64, String)>,
    /// Trips waiting for the next batch window, by id (the assignment's row order).
    pool: BTreeSet<String>,
    /// End of the window the pool is waiting for.
    pool_close: Option<i64>,
    open: usize,
    pub(super) counters: MatchCounters,
    pub(super) restore: Option<Restore<P>>,
    /// Trips whose offer a seeded proposal took over while restoring; decided next.
    pub(super) stolen: Vec<String>,
}

/// End of the tumbling window of width `window` (> 0) containing `at`.
fn window_end(at: i64, window: i64) -> i64 {
    at.div_euclid(window)
        .saturating_add(1)
        .saturating_mul(window)
}

impl<P: ProductKey> Matcher<P> {
    /// A matcher with no drivers and no trips, and its clock at the beginning of time.
    ///
    /// # Errors
    /// As [`MatcherConfig::validate`].
    pub fn new(config: MatcherConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            offer_timeout: ms(config.offer_timeout_ms),
            memory: ms(trip_memory_ms(&config)),
            window: ms(config.batch_window_ms),
            clock: i64::MIN,
            index: DriverIndex::from_valid(&config),
            config,
            trips: HashMap::new(),
            reservations: HashMap::new(),
            timers: BTreeSet::new(),
            forget: BTreeSet::new(),
            pool: BTreeSet::new(),
            pool_close: None,
            open: 0,
            counters: MatchCounters::default(),
            restore: None,
            stolen: Vec::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &MatcherConfig {
        &self.config
    }

    /// Applies a `geo.driver` record (home or halo copy). Never produces output: supply only
    /// matters when a request is decided.
    ///
    /// # Errors
    /// [`MatchError::Position`] for an invalid position; nothing changes then.
    pub fn on_driver_ping(&mut self, ping: &DriverPing<'_, P>) -> Result<Handled, MatchError> {
        if self.index.apply(ping)? {
            self.counters.pings_applied += 1;
            Ok(Handled::Applied)
        } else {
            self.counters.pings_out_of_order += 1;
            Ok(Handled::Ignored)
        }
    }

    /// Applies a `driver.profile` record.
    ///
    /// # Errors
    /// [`MatchError::Profile`] if a value is out of range (checked again even if the profile
    /// was built directly); nothing changes then.
    pub fn upsert_profile(
        &mut self,
        driver_id: &str,
        profile: DriverProfile,
    ) -> Result<(), MatchError> {
        let profile = DriverProfile::new(profile.rating, profile.acceptance_rate)?;
        self.index.upsert_profile(driver_id, profile);
        Ok(())
    }

    /// Applies a `driver.profile` tombstone: the defaults apply to the driver again.
    pub fn remove_profile(&mut self, driver_id: &str) {
        self.index.remove_profile(driver_id);
    }

    /// A rider's request. Greedy mode: the best unreserved candidate is proposed at once, or
    /// the request is reported unfilled (`NoDriverInRadius`, 0 attempts) if there is none.
    /// Batched mode: the request joins the pool of the current window (see
    /// [`advance`](Self::advance)).
    ///
    /// A request for a trip already known (open or remembered) is ignored; so is one whose
    /// event time is older than the trip memory ([`trip_memory_ms`]), since it could be a
    /// duplicate of a trip already forgotten. A request already past its deadline when it
    /// arrives is reported unfilled (`Deadline`).
    ///
    /// # Errors
    /// [`MatchError::Position`] for an invalid pickup, [`MatchError::Surge`] for an invalid
    /// multiplier; nothing changes then.
    pub fn on_request(
        &mut self,
        request: TripRequest<P>,
    ) -> Result<Vec<MatchOutput<P>>, MatchError> {
        let pickup = request.pickup.validated()?;
        let surge = request.surge_multiplier;
        if !(surge.is_finite() && surge > 0.0) {
            return Err(MatchError::Surge(surge));
        }
        if self.trips.contains_key(&request.trip_id) {
            self.counters.ignored_duplicates += 1;
            return Ok(Vec::new());
        }
        let at = self.clock.max(request.event_time);
        let forget_at = request.event_time.saturating_add(self.memory);
        if forget_at <= at {
            self.counters.ignored_stale += 1;
            return Ok(Vec::new());
        }
        let trip_id = request.trip_id;
        let trip = OpenTrip {
            rider_id: request.rider_id,
            product: request.product,
            pickup,
            surge_multiplier: surge,
            deadline_at: request
                .event_time
                .saturating_add(ms(self.config.request_deadline_ms)),
            attempts: 0,
            offer: None,
            excluded: Vec::new(),
            wait: Wait::No,
            timer: None,
        };
        self.trips
            .insert(trip_id.clone(), Phase::Open(Box::new(trip)));
        self.forget.insert((forget_at, trip_id.clone()));
        self.open += 1;
        self.counters.requests += 1;
        let mut out = Vec::new();
        self.decide(&trip_id, at, &mut out);
        self.settle_stolen(at, &mut out);
        Ok(out)
    }

    /// The driver accepted: if it is the trip's current offer, the trip is done, the
    /// reservation ends and the driver is busy (not a candidate) until an `Available` ping
    /// newer than `event_time`. Anything else (unknown or decided trip, a driver whose offer
    /// lapsed or was declined, one never offered the trip) is ignored.
    ///
    /// An acceptance that arrives after the offer's expiry but before
    /// [`advance`](Self::advance) has processed that expiry still counts: nobody else has been
    /// offered the trip yet, so taking it is best for rider and driver alike.
    pub fn on_accepted(&mut self, trip_id: &str, driver_id: &str, event_time: i64) -> Handled {
        let Some(slot) = self.current_offer_of(trip_id, driver_id) else {
            self.counters.ignored_stale += 1;
            return Handled::Ignored;
        };
        self.finish(trip_id, Outcome::Accepted);
        self.index.mark_busy(slot, event_time);
        self.counters.accepted += 1;
        Handled::Applied
    }

    /// The driver declined: if it is the trip's current offer, the driver is released,
    /// excluded for this trip, and the next attempt is made (or the trip reported unfilled);
    /// otherwise ignored, returning nothing.
    pub fn on_declined(
        &mut self,
        trip_id: &str,
        driver_id: &str,
        event_time: i64,
    ) -> Vec<MatchOutput<P>> {
        let mut out = Vec::new();
        if self.current_offer_of(trip_id, driver_id).is_none() {
            self.counters.ignored_stale += 1;
            return out;
        }
        self.counters.declined += 1;
        self.release(trip_id, true);
        let at = self.clock.max(event_time);
        self.decide(trip_id, at, &mut out);
        self.settle_stolen(at, &mut out);
        out
    }

    /// The trip was cancelled: any reservation ends and nothing more is output for it.
    ///
    /// A cancellation for a trip not seen yet is remembered (the request may arrive later,
    /// having taken another path through the trip router), so that request is then ignored.
    pub fn on_cancelled(&mut self, trip_id: &str, event_time: i64) -> Handled {
        match self.trips.get(trip_id) {
            Some(Phase::Open(_)) => {
                self.finish(trip_id, Outcome::Cancelled);
                self.counters.cancelled += 1;
                Handled::Applied
            }
            Some(Phase::Done(_)) => {
                self.counters.ignored_stale += 1;
                Handled::Ignored
            }
            None => {
                let forget_at = event_time.saturating_add(self.memory);
                if forget_at <= self.clock {
                    self.counters.ignored_stale += 1;
                    return Handled::Ignored;
                }
                self.trips
                    .insert(trip_id.to_owned(), Phase::Done(Outcome::Cancelled));
                self.forget.insert((forget_at, trip_id.to_owned()));
                self.counters.cancelled += 1;
                Handled::Applied
            }
        }
    }

    /// Moves the event-time clock to `now` (it never goes back) and does what is due, in this
    /// order: drivers silent for longer than the TTL are unlisted; lapsed offers and passed
    /// deadlines are processed in `(due time, trip id)` order (a lapse releases and excludes
    /// the driver and makes the next attempt); in batched mode, if the current window has
    /// ended, the pool is assigned; trips past their memory are forgotten.
    ///
    /// Outputs are a function of the records and of the clock values passed here. Derive the
    /// clock from the records (say, the largest `geo.trip` event time seen) so that a replay
    /// passes the same values; ticks from wall time for an idle partition are fine, as a
    /// restore reconciles with the published outputs (see [`begin_restore`](Self::begin_restore)).
    pub fn advance(&mut self, now: i64) -> Vec<MatchOutput<P>> {
        self.clock = self.clock.max(now);
        let now = self.clock;
        self.index.sweep(now);
        let mut out = Vec::new();
        while let Some((_, trip_id)) = self.timers.pop_first_if_due(now) {
            self.on_timer(&trip_id, now, &mut out);
        }
        self.settle_stolen(now, &mut out);
        if self.pool_close.is_some_and(|close| close <= now) {
            self.assign_pool(now, &mut out);
        }
        while let Some((_, trip_id)) = self.forget.pop_first_if_due(now) {
            if matches!(self.trips.get(&trip_id), Some(Phase::Open(_))) {
                self.finish(&trip_id, Outcome::Cancelled);
            }
            self.trips.remove(&trip_id);
        }
        out
    }

    /// Drivers listed as available (expired ones until the next sweep).
    #[must_use]
    pub fn drivers_indexed(&self) -> usize {
        self.index.listed()
    }

    /// Drivers ever seen by this matcher.
    #[must_use]
    pub fn drivers_known(&self) -> usize {
        self.index.known()
    }

    /// Drivers currently reserved by an open offer.
    #[must_use]
    pub fn open_reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Trips still being matched.
    #[must_use]
    pub fn open_requests(&self) -> usize {
        self.open
    }

    /// Trips waiting for the next batch window.
    #[must_use]
    pub fn pooled_requests(&self) -> usize {
        self.pool.len()
    }

    /// Trips remembered, open or finished.
    #[must_use]
    pub fn remembered_trips(&self) -> usize {
        self.trips.len()
    }

    /// Running totals.
    #[must_use]
    pub fn counters(&self) -> &MatchCounters {
        &self.counters
    }

    /// The event-time clock (`i64::MIN` before the first [`advance`](Self::advance)).
    #[must_use]
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// The driver index, for queries and metrics.
    #[must_use]
    pub fn index(&self) -> &DriverIndex<P> {
        &self.index
    }

    /// Where a trip stands, if it is remembered.
    #[must_use]
    pub fn trip_status(&self, trip_id: &str) -> Option<TripStatus> {
        Some(match self.trips.get(trip_id)? {
            Phase::Open(open) => TripStatus::Open {
                attempts: open.attempts,
                offered: open.offer.is_some(),
            },
            Phase::Done(Outcome::Accepted) => TripStatus::Accepted,
            Phase::Done(Outcome::Cancelled) => TripStatus::Cancelled,
            Phase::Done(Outcome::Unfilled(reason)) => TripStatus::Unfilled(*reason),
        })
    }

    /// Every offer that is out, by trip id.
    #[must_use]
    pub fn open_proposals(&self) -> Vec<OpenProposal<'_>> {
        let mut open: Vec<_> = self
            .trips
            .iter()
            .filter_map(|(trip_id, phase)| match phase {
                Phase::Open(trip) => trip.offer.map(|offer| OpenProposal {
                    trip_id,
                    driver_id: self.index.id(offer.slot),
                    attempt: offer.attempt,
                    expires_at: offer.expires_at,
                }),
                Phase::Done(_) => None,
            })
            .collect();
        open.sort_by(|a, b| a.trip_id.cmp(b.trip_id));
        open
    }

    /// The driver's slot if it holds the trip's open offer.
    fn current_offer_of(&self, trip_id: &str, driver_id: &str) -> Option<Slot> {
        let slot = self.index.slot(driver_id)?;
        match self.trips.get(trip_id)? {
            Phase::Open(open) if open.offer.is_some_and(|offer| offer.slot == slot) => Some(slot),
            _ => None,
        }
    }

    fn open_trip(&self, trip_id: &str) -> Option<&OpenTrip<P>> {
        match self.trips.get(trip_id)? {
            Phase::Open(open) => Some(open),
            Phase::Done(_) => None,
        }
    }

    /// Makes the next decision for an open trip without an offer out: the next proposal, a
    /// place in the pool, or giving up. While restoring, the decision is taken from the
    /// published outputs instead, or deferred if they do not cover it.
    pub(super) fn decide(&mut self, trip_id: &str, at: i64, out: &mut Vec<MatchOutput<P>>) {
        let Some(open) = self.open_trip(trip_id) else {
            return;
        };
        if open.offer.is_some() {
            return;
        }
        let attempts = open.attempts;
        let deadline_at = open.deadline_at;
        if self.restore.is_some() {
            let next = attempts.saturating_add(1);
            let window_decision =
                self.window > 0 && at < deadline_at && attempts < self.config.max_attempts;
            if window_decision && !self.forced_due(trip_id, next, at) {
                // Batched, the lost instance took this decision at a later window close (or
                // not yet): wait in the pool as it did, so that drivers are held in the same
                // order. Adopting the seed now would reserve its driver too early, and take it
                // from a trip that held it in the meantime. (Deadlines and the last attempt
                // are decided at once, not at a window close.)
                self.pool(trip_id, at);
                return;
            }
            match self.take_forced(trip_id, next) {
                Some(Forced::Proposal(proposal)) => self.adopt(trip_id, proposal, out),
                Some(Forced::Unfilled(unfilled)) => {
                    self.finish(trip_id, Outcome::Unfilled(unfilled.reason));
                    self.counters.count_unfilled(unfilled.reason);
                    out.push(MatchOutput::Unfilled(unfilled));
                }
                None => self.set_wait(trip_id, Wait::Deferred),
            }
            return;
        }
        if at >= deadline_at {
            self.unfill(trip_id, UnfilledReason::Deadline, at, out);
        } else if attempts >= self.config.max_attempts {
            self.unfill(trip_id, UnfilledReason::MaxAttempts, at, out);
        } else if self.window > 0 {
            self.pool(trip_id, at);
        } else {
            match self.best_candidate(trip_id, at) {
                Some(candidate) => self.propose(trip_id, candidate, at, out),
                None => self.unfill(trip_id, UnfilledReason::NoDriverInRadius, at, out),
            }
        }
    }

    /// Puts an open trip in the pool of the window containing `at`.
    fn pool(&mut self, trip_id: &str, at: i64) {
        self.set_wait(trip_id, Wait::Pool);
        let close = window_end(at, self.window);
        self.pool_close = Some(self.pool_close.map_or(close, |c| c.min(close)));
    }

    /// Whether the seeds hold the decision of a trip's attempt `next` taken at or before
    /// `at` (what [`take_forced`](Self::take_forced) would return, if it is due).
    fn forced_due(&self, trip_id: &str, next: u32, at: i64) -> bool {
        let Some(seeds) = self
            .restore
            .as_ref()
            .and_then(|restore| restore.seeds.get(trip_id))
        else {
            return false;
        };
        if let Some(proposal) = seeds.proposals.get(&next) {
            return proposal.proposed_at <= at;
        }
        seeds.proposals.range(next..).next().is_none()
            && seeds
                .unfilled
                .as_ref()
                .is_some_and(|unfilled| unfilled.decided_at <= at)
    }

    /// The published decision for a trip's next attempt, if the seeds hold one: the proposal
    /// of that attempt, or the unfilled report if no later proposal was published.
    fn take_forced(&mut self, trip_id: &str, next: u32) -> Option<Forced<P>> {
        let seeds = self.restore.as_mut()?.seeds.get_mut(trip_id)?;
        if let Some(proposal) = seeds.proposals.remove(&next) {
            return Some(Forced::Proposal(proposal));
        }
        if seeds.proposals.range(next..).next().is_none() {
            return seeds.unfilled.take().map(Forced::Unfilled);
        }
        None
    }

    /// Scans the candidates of an open trip (listed, alive, of its product, within the
    /// radius, not reserved, not excluded for it), nearest cells first. `visit` gets
    /// `Ok(candidate)` for each, and `Err(bound)` before each cell, `bound` being a lower
    /// bound on the distance of every driver from there on; it may stop the scan.
    fn scan_candidates(
        &self,
        trip_id: &str,
        at: i64,
        mut visit: impl FnMut(Result<Candidate, f64>) -> ControlFlow<()>,
    ) {
        let Some(open) = self.open_trip(trip_id) else {
            return;
        };
        // The pickup was validated on arrival and the radius with the config, so the search
        // cannot fail; were it to, finding nobody is the safe outcome.
        let _cannot_fail = self.index.scan(
            open.pickup,
            self.config.radius_m,
            open.product,
            at,
            |sighting| match sighting {
                Sighting::Cell(min_distance_m) => visit(Err(min_distance_m)),
                Sighting::Driver(slot, distance_m) => {
                    if self.reservations.contains_key(&slot) || open.excluded.contains(&slot) {
                        return ControlFlow::Continue(());
                    }
                    visit(Ok(Candidate {
                        slot,
                        estimate: self
                            .config
                            .estimate(distance_m, self.index.slot_profile(slot)),
                    }))
                }
            },
        );
    }

    /// Best score first; ties to the nearer driver, then the smaller driver id, so the choice
    /// never depends on bucket order.
    fn rank(&self, a: &Candidate, b: &Candidate) -> Ordering {
        b.estimate
            .score
            .total_cmp(&a.estimate.score)
            .then(a.estimate.distance_m.total_cmp(&b.estimate.distance_m))
            .then_with(|| self.index.id(a.slot).cmp(self.index.id(b.slot)))
    }

    /// The best-ranked candidate. Cells are scanned nearest first and the scan stops once
    /// even a perfect profile (5 stars, always accepts) at a cell's nearest point could not
    /// beat the best so far, usually after the first ring of cells.
    fn best_candidate(&self, trip_id: &str, at: i64) -> Option<Candidate> {
        let perfect = DriverProfile {
            rating: 5.0,
            acceptance_rate: 1.0,
        };
        let mut best: Option<Candidate> = None;
        self.scan_candidates(trip_id, at, |seen| {
            match seen {
                Err(min_distance_m) => {
                    let reach = (min_distance_m - BOUND_SLACK_M).max(0.0);
                    let ceiling = self.config.score(self.config.eta_s(reach), perfect);
                    if best.is_some_and(|b| ceiling < b.estimate.score) {
                        return ControlFlow::Break(());
                    }
                }
                Ok(candidate) => {
                    if best.is_none_or(|b| self.rank(&candidate, &b) == Ordering::Less) {
                        best = Some(candidate);
                    }
                }
            }
            ControlFlow::Continue(())
        });
        best
    }

    /// The `n` fastest candidates, fastest first (ties by driver id). The scan stops once the
    /// `n`-th fastest so far is nearer than anything in the cells left.
    fn fastest_candidates(&self, trip_id: &str, at: i64, n: usize) -> Vec<Candidate> {
        let mut found: Vec<Candidate> = Vec::new();
        let mut distances: Vec<f64> = Vec::new();
        self.scan_candidates(trip_id, at, |seen| {
            match seen {
                Err(min_distance_m) if n > 0 && found.len() >= n => {
                    distances.clear();
                    distances.extend(found.iter().map(|c| c.estimate.distance_m));
                    let (_, nth, _) = distances.select_nth_unstable_by(n - 1, f64::total_cmp);
                    if *nth < min_distance_m - BOUND_SLACK_M {
                        return ControlFlow::Break(());
                    }
                }
                Err(_) => {}
                Ok(candidate) => found.push(candidate),
            }
            ControlFlow::Continue(())
        });
        found.sort_by(|a, b| {
            a.estimate
                .eta_s
                .total_cmp(&b.estimate.eta_s)
                .then_with(|| self.index.id(a.slot).cmp(self.index.id(b.slot)))
        });
        found.truncate(n);
        found
    }

    fn propose(
        &mut self,
        trip_id: &str,
        candidate: Candidate,
        at: i64,
        out: &mut Vec<MatchOutput<P>>,
    ) {
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        open.attempts = open.attempts.saturating_add(1);
        let attempt = open.attempts;
        let expires_at = at.saturating_add(self.offer_timeout);
        open.offer = Some(Offer {
            slot: candidate.slot,
            attempt,
            expires_at,
        });
        let Estimate {
            distance_m,
            eta_s,
            score,
        } = candidate.estimate;
        let proposal = Proposal {
            proposal_id: format!("{trip_id}#{attempt}"),
            trip_id: trip_id.to_owned(),
            rider_id: open.rider_id.clone(),
            driver_id: self.index.id(candidate.slot).to_owned(),
            product: open.product,
            distance_m,
            eta_s,
            score,
            surge_multiplier: open.surge_multiplier,
            attempt,
            proposed_at: at,
            expires_at,
        };
        self.reservations.insert(candidate.slot, trip_id.to_owned());
        self.counters.proposals += 1;
        self.set_wait(trip_id, Wait::No);
        out.push(MatchOutput::Proposal(proposal));
    }

    /// Re-establishes a published proposal as the trip's open offer (restoring). If the replay
    /// had the driver reserved for another trip, the published history says that offer had
    /// ended by then, so it is withdrawn and that trip decided again.
    pub(super) fn adopt(
        &mut self,
        trip_id: &str,
        proposal: Proposal<P>,
        out: &mut Vec<MatchOutput<P>>,
    ) {
        let slot = self.index.intern(&proposal.driver_id);
        if let Some(holder) = self.reservations.get(&slot).cloned()
            && holder != trip_id
        {
            self.release(&holder, true);
            self.stolen.push(holder);
            self.counters.restore_conflicts += 1;
        }
        self.release(trip_id, false);
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        open.attempts = open.attempts.max(proposal.attempt);
        open.surge_multiplier = proposal.surge_multiplier;
        open.offer = Some(Offer {
            slot,
            attempt: proposal.attempt,
            expires_at: proposal.expires_at,
        });
        self.reservations.insert(slot, trip_id.to_owned());
        self.counters.proposals += 1;
        self.set_wait(trip_id, Wait::No);
        out.push(MatchOutput::Proposal(proposal));
    }

    /// Ends the trip's open offer, if any, freeing the driver; `exclude` bars the driver from
    /// this trip from now on.
    pub(super) fn release(&mut self, trip_id: &str, exclude: bool) {
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        if let Some(offer) = open.offer.take() {
            if self
                .reservations
                .get(&offer.slot)
                .is_some_and(|t| t == trip_id)
            {
                self.reservations.remove(&offer.slot);
            }
            if exclude && !open.excluded.contains(&offer.slot) {
                open.excluded.push(offer.slot);
            }
        }
        self.set_timer(trip_id);
    }

    /// Bars a driver from a trip without it having had an offer in this run (restoring).
    pub(super) fn exclude(&mut self, trip_id: &str, slot: Slot) {
        if let Some(Phase::Open(open)) = self.trips.get_mut(trip_id)
            && !open.excluded.contains(&slot)
        {
            open.excluded.push(slot);
        }
    }

    fn unfill(
        &mut self,
        trip_id: &str,
        reason: UnfilledReason,
        at: i64,
        out: &mut Vec<MatchOutput<P>>,
    ) {
        let Some(open) = self.open_trip(trip_id) else {
            return;
        };
        let unfilled = Unfilled {
            trip_id: trip_id.to_owned(),
            rider_id: open.rider_id.clone(),
            product: open.product,
            pickup: open.pickup,
            attempts: open.attempts,
            reason,
            decided_at: at,
        };
        self.finish(trip_id, Outcome::Unfilled(reason));
        self.counters.count_unfilled(reason);
        out.push(MatchOutput::Unfilled(unfilled));
    }

    /// Closes an open trip: its reservation, timer and place in the pool go; the trip id is
    /// remembered until its forget time.
    pub(super) fn finish(&mut self, trip_id: &str, outcome: Outcome) {
        let Some(phase) = self.trips.get_mut(trip_id) else {
            return;
        };
        if !matches!(phase, Phase::Open(_)) {
            return;
        }
        let Phase::Open(open) = mem::replace(phase, Phase::Done(outcome)) else {
            return;
        };
        if let Some(offer) = open.offer
            && self
                .reservations
                .get(&offer.slot)
                .is_some_and(|t| t == trip_id)
        {
            self.reservations.remove(&offer.slot);
        }
        if let Some(due) = open.timer {
            self.timers.remove(&(due, trip_id.to_owned()));
        }
        match open.wait {
            Wait::No => {}
            Wait::Pool => {
                self.pool.remove(trip_id);
            }
            Wait::Deferred => {
                if let Some(restore) = &mut self.restore {
                    restore.deferred.remove(trip_id);
                }
            }
        }
        self.open -= 1;
    }

    /// Records why an open trip has no offer out, keeping the pool and the deferred set in
    /// step, and refiles its timer.
    pub(super) fn set_wait(&mut self, trip_id: &str, wait: Wait) {
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        let before = mem::replace(&mut open.wait, wait);
        if before != wait {
            match before {
                Wait::No => {}
                Wait::Pool => {
                    self.pool.remove(trip_id);
                }
                Wait::Deferred => {
                    if let Some(restore) = &mut self.restore {
                        restore.deferred.remove(trip_id);
                    }
                }
            }
            match wait {
                Wait::No => {}
                Wait::Pool => {
                    self.pool.insert(trip_id.to_owned());
                }
                Wait::Deferred => {
                    if let Some(restore) = &mut self.restore {
                        restore.deferred.insert(trip_id.to_owned());
                    }
                }
            }
        }
        self.set_timer(trip_id);
    }

    /// Files the trip under its next due time: the earlier of its offer's lapse and its
    /// deadline, or the deadline alone while pooled. Deferred trips have no timer: their
    /// decision waits for `end_restore`.
    fn set_timer(&mut self, trip_id: &str) {
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        let due = match (open.offer, open.wait) {
            (Some(offer), _) => Some(offer.expires_at.min(open.deadline_at)),
            (None, Wait::Pool) => Some(open.deadline_at),
            (None, Wait::No | Wait::Deferred) => None,
        };
        if due == open.timer {
            return;
        }
        if let Some(old) = open.timer.take() {
            self.timers.remove(&(old, trip_id.to_owned()));
        }
        open.timer = due;
        if let Some(due) = due {
            self.timers.insert((due, trip_id.to_owned()));
        }
    }

    fn on_timer(&mut self, trip_id: &str, now: i64, out: &mut Vec<MatchOutput<P>>) {
        let Some(Phase::Open(open)) = self.trips.get_mut(trip_id) else {
            return;
        };
        // Its entry was just taken out of `timers`.
        open.timer = None;
        let lapsed = open.offer.is_some_and(|offer| offer.expires_at <= now);
        let past_deadline = open.deadline_at <= now;
        if lapsed {
            self.counters.timeouts += 1;
            self.release(trip_id, true);
        } else if past_deadline {
            // The offer is still out at the deadline: withdrawn, the trip reported unfilled.
            self.release(trip_id, false);
        }
        if self
            .open_trip(trip_id)
            .is_some_and(|open| open.offer.is_none())
        {
            self.decide(trip_id, now, out);
        } else {
            self.set_timer(trip_id);
        }
    }

    /// Decides again every trip whose offer a seeded proposal took over.
    pub(super) fn settle_stolen(&mut self, at: i64, out: &mut Vec<MatchOutput<P>>) {
        while !self.stolen.is_empty() {
            for trip_id in mem::take(&mut self.stolen) {
                self.decide(&trip_id, at, out);
            }
        }
    }

    /// Assigns the pool optimally (most riders served, then least total ETA); riders left
    /// without a driver while having candidates stay for the next window, those without any
    /// candidate are reported unfilled.
    ///
    /// What keeps the solver small however dense the supply and demand:
    /// - a group of `c` trips needs only each trip's `c` fastest candidates: an optimal
    ///   assignment never needs more, because a trip given a slower driver could swap to one
    ///   of its `c` fastest, at most `c - 1` of which the other trips take;
    /// - trips that share no candidate are independent, so the pool is split into connected
    ///   components (trips linked by a shared driver), each solved on its own;
    /// - a component larger than `batch_max_trips` (a dense hotspot) is solved in chunks of
    ///   that many trips, in trip id order, each over the drivers the earlier chunks left:
    ///   optimal within each chunk, and the cost matrix never larger than
    ///   `batch_max_trips × batch_max_trips²`.
    ///
    /// While restoring, each pooled trip takes the published decision due by now instead, or
    /// stays in the pool (see [`decide`](Self::decide)).
    fn assign_pool(&mut self, now: i64, out: &mut Vec<MatchOutput<P>>) {
        self.pool_close = None;
        let trips = mem::take(&mut self.pool);
        if self.restore.is_some() {
            for trip_id in trips {
                self.set_wait(&trip_id, Wait::No);
                self.decide(&trip_id, now, out);
            }
            return;
        }
        let chunk = self.config.batch_max_trips as usize;
        let keep = trips.len().min(chunk);
        let mut rows: Vec<(String, Vec<Candidate>)> = Vec::with_capacity(trips.len());
        for trip_id in trips {
            if let Some(Phase::Open(open)) = self.trips.get_mut(&trip_id) {
                open.wait = Wait::No;
            }
            let candidates = self.fastest_candidates(&trip_id, now, keep);
            if candidates.is_empty() {
                self.unfill(&trip_id, UnfilledReason::NoDriverInRadius, now, out);
                continue;
            }
            rows.push((trip_id, candidates));
        }
        for component in components(&rows) {
            for part in component.chunks(chunk) {
                // Fresh lists: the drivers earlier chunks proposed are reserved now, and a
                // chunk needs each trip's `part.len()` fastest of the rest.
                let lists: Vec<Vec<Candidate>> = part
                    .iter()
                    .map(|&row| self.fastest_candidates(&rows[row].0, now, part.len()))
                    .collect();
                for (&row, choice) in part.iter().zip(self.solve(&lists)) {
                    let trip_id = &rows[row].0;
                    match choice {
                        Some(candidate) => self.propose(trip_id, candidate, now, out),
                        None => self.set_wait(trip_id, Wait::Pool),
                    }
                }
            }
        }
        if !self.pool.is_empty() {
            self.pool_close = Some(window_end(now, self.window));
        }
    }

    /// The optimal choice for each of `lists` (trips' candidates), on the cost matrix of
    /// trips × their drivers (columns in driver id order), ETA as cost.
    fn solve(&self, lists: &[Vec<Candidate>]) -> Vec<Option<Candidate>> {
        let mut columns: Vec<Slot> = lists
            .iter()
            .flat_map(|l| l.iter().map(|c| c.slot))
            .collect();
        columns.sort_by(|a, b| self.index.id(*a).cmp(self.index.id(*b)));
        columns.dedup();
        let column_of: HashMap<Slot, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, &slot)| (slot, i))
            .collect();
        let width = columns.len();
        let mut costs = vec![None; lists.len() * width];
        for (row, list) in lists.iter().enumerate() {
            for candidate in list {
                if let Some(&col) = column_of.get(&candidate.slot) {
                    costs[row * width + col] = Some(candidate.estimate.eta_s);
                }
            }
        }
        // ETAs are finite and non-negative and the shape is right by construction; should the
        // solver still refuse, these trips simply wait for the next window.
        let assignment = optimal_assignment(lists.len(), width, &costs)
            .unwrap_or_else(|_| vec![None; lists.len()]);
        lists
            .iter()
            .zip(assignment)
            .map(|(list, col)| {
                let slot = columns.get(col?)?;
                list.iter().find(|c| c.slot == *slot).copied()
            })
            .collect()
    }
}

/// Groups rows that share a candidate driver, transitively: the independent sub-problems.
/// Each component lists its rows in increasing order; components come in order of their
/// first row.
fn components(rows: &[(String, Vec<Candidate>)]) -> Vec<Vec<usize>> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    let mut first_row_of: HashMap<Slot, usize> = HashMap::new();
    for (row, (_, candidates)) in rows.iter().enumerate() {
        for candidate in candidates {
            let other = *first_row_of.entry(candidate.slot).or_insert(row);
            let (a, b) = (root(&mut parent, row), root(&mut parent, other));
            // The smaller root wins, so roots are each component's first row.
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for row in 0..rows.len() {
        let r = root(&mut parent, row);
        members.entry(r).or_default().push(row);
    }
    members.into_values().collect()
}

/// `pop_first` limited to entries due by `now`.
trait PopDue<T> {
    fn pop_first_if_due(&mut self, now: i64) -> Option<T>;
}

impl PopDue<(i64, String)> for BTreeSet<(i64, String)> {
    fn pop_first_if_due(&mut self, now: i64) -> Option<(i64, String)> {
        if self.first().is_some_and(|(due, _)| *due <= now) {
            self.pop_first()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(window_end(0, 1_000), 1_000);
        assert_eq!(window_end(999, 1_000), 1_000);
        assert_eq!(window_end(1_000, 1_000), 2_000);
        assert_eq!(window_end(-1, 1_000), 0);
        assert_eq!(window_end(i64::MAX - 5, 1_000), i64::MAX);
    }
}
