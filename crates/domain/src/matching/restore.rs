//! Restoring a [`Matcher`] after a restart or rebalance without repeating or losing outputs;
//! the protocol is documented on [`Matcher::begin_restore`].

use super::matcher::{Outcome, Phase, Wait};
use super::{MatchError, MatchOutput, Matcher, ProductKey, Proposal, Unfilled};

impl<P: ProductKey> Matcher<P> {
    /// Starts a restore: outputs may now be seeded, and until [`end_restore`](Self::end_restore)
    /// decisions are taken from them.
    ///
    /// The operator rebuilds a lost matcher by replaying recent input with output suppressed. A
    /// replay alone is not enough: the two input topics interleave differently the second time,
    /// the clock may have been advanced by idle ticks that are not in the input, and the replay
    /// does not see the reservations of trips requested before it starts. So it could pick other
    /// drivers than the ones actually offered. The published outputs settle it: they are read back
    /// and seeded first, and every decision the replay reaches is taken from them.
    ///
    /// Protocol, for a fresh matcher:
    /// 1. `begin_restore`;
    /// 2. [`seed_proposal`](Self::seed_proposal) / [`seed_unfilled`](Self::seed_unfilled)
    ///    every record of `match.proposal` / `match.unfilled` of this partition's trips with
    ///    `proposed_at` / `decided_at` at or after the replay start;
    /// 3. replay `geo.driver` and `geo.trip` from [`replay_horizon_ms`](super::replay_horizon_ms)
    ///    before the restore point up to the committed offsets, calling `on_*` and `advance`
    ///    exactly as live processing does, and discarding what they return (it was published);
    /// 4. [`end_restore`](Self::end_restore), and publish what it returns;
    /// 5. continue live.
    ///
    /// During the replay a trip's next decision is the seeded proposal with the next attempt
    /// number, or its seeded unfilled report once no later proposal was published; a decision the
    /// seeds do not cover is *deferred*: it had not been made when the lost instance stopped, so it
    /// is made live by `end_restore`. Hence every published offer is re-established with the
    /// driver, attempt and expiry it was published with (and counts as made, so it is never
    /// repeated), and nothing is decided twice.
    ///
    /// What seeds cannot pin are the answers, which are inputs: if the replay's clock reaches an
    /// offer's expiry before the acceptance that the lost instance processed in time, the
    /// acceptance is ignored and the trip offered again. Deriving the clock from `geo.trip` event
    /// times keeps answers and lapses in their original order, since that topic is replayed in
    /// the same order.
    pub fn begin_restore(&mut self) {
        self.restore.get_or_insert_with(Default::default);
    }

    /// Whether a restore is in progress.
    #[must_use]
    pub fn is_restoring(&self) -> bool {
        self.restore.is_some()
    }

    /// Seeds a published proposal: when the replay reaches this trip's attempt, this offer
    /// is re-established (driver reserved, expiry as published) instead of a new one chosen.
    /// Seeding the same attempt twice keeps the last.
    ///
    /// # Errors
    /// [`MatchError::NotRestoring`] outside a restore; [`MatchError::SeedAttempt`] for an
    /// attempt outside `1..=max_attempts`.
    pub fn seed_proposal(&mut self, proposal: Proposal<P>) -> Result<(), MatchError> {
        let max_attempts = self.config.max_attempts;
        let Some(restore) = &mut self.restore else {
            return Err(MatchError::NotRestoring);
        };
        if !(1..=max_attempts).contains(&proposal.attempt) {
            return Err(MatchError::SeedAttempt {
                proposal_id: proposal.proposal_id,
                attempt: proposal.attempt,
                max_attempts,
            });
        }
        restore
            .seeds
            .entry(proposal.trip_id.clone())
            .or_default()
            .proposals
            .insert(proposal.attempt, proposal);
        Ok(())
    }

    /// Seeds a published unfilled report: the replay ends the trip with it once the trip has
    /// used its seeded proposals.
    ///
    /// # Errors
    /// [`MatchError::NotRestoring`] outside a restore.
    pub fn seed_unfilled(&mut self, unfilled: Unfilled<P>) -> Result<(), MatchError> {
        let Some(restore) = &mut self.restore else {
            return Err(MatchError::NotRestoring);
        };
        let seeds = restore.seeds.entry(unfilled.trip_id.clone()).or_default();
        seeds.unfilled = Some(unfilled);
        Ok(())
    }

    /// Ends the restore and returns what must now be published.
    ///
    /// First, seeds the replay did not reach are applied, in trip id order: the replay may lag
    /// the published history (an offer the lost instance saw lapse on an idle tick is still
    /// open in the replay), so an open trip with a later seeded proposal jumps to it (drivers
    /// of its earlier seeded attempts excluded), and one with a seeded unfilled report ends.
    /// Then the deferred decisions are made live, in trip id order, at the current clock:
    /// their outputs, returned here, are the ones the lost instance never published. Seeds for
    /// trips the replay never saw are dropped: those trips were requested before the replay
    /// start and are decided already.
    pub fn end_restore(&mut self) -> Vec<MatchOutput<P>> {
        let Some(restore) = self.restore.take() else {
            return Vec::new();
        };
        let now = self.clock;
        let mut published = Vec::new();
        let mut seeds: Vec<_> = restore.seeds.into_iter().collect();
        seeds.sort_by(|a, b| a.0.cmp(&b.0));
        for (trip_id, seeds) in seeds {
            let Some(Phase::Open(open)) = self.trips.get(&trip_id) else {
                continue;
            };
            let attempts = open.attempts;
            if let Some(unfilled) = seeds.unfilled {
                self.finish(&trip_id, Outcome::Unfilled(unfilled.reason));
                self.counters.count_unfilled(unfilled.reason);
                continue;
            }
            let Some(last) = seeds.proposals.keys().next_back().copied() else {
                continue;
            };
            if last <= attempts {
                continue;
            }
            self.release(&trip_id, true);
            for (attempt, proposal) in seeds.proposals {
                if attempt < last {
                    let slot = self.index.intern(&proposal.driver_id);
                    self.exclude(&trip_id, slot);
                } else {
                    self.adopt(&trip_id, proposal, &mut published);
                }
            }
        }
        let mut out = Vec::new();
        for trip_id in restore.deferred {
            if let Some(Phase::Open(open)) = self.trips.get(&trip_id)
                && open.wait == Wait::Deferred
            {
                self.set_wait(&trip_id, Wait::No);
                self.decide(&trip_id, now, &mut out);
            }
        }
        self.settle_stolen(now, &mut out);
        out
    }
}
