//! Demand bookkeeping: request counts per hop-sized bucket of event time, and the trip ids
//! that keep a retried request from counting twice.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::TripKey;

/// Requests of one (cell, product) per hop bucket, for the last `slots` hops.
///
/// A ring rather than a list of timestamps: the state per cell is fixed however busy it is,
/// adding a request is one increment, and a window sum touches `window / hop` counters.
/// Bucket `h` holds requests stamped in `[h·hop, (h+1)·hop)`.
#[derive(Debug, Clone)]
pub(crate) struct DemandRing {
    counts: Box<[u32]>,
    /// Hop index of the newest bucket; `None` until the first request.
    newest: Option<i64>,
}

impl DemandRing {
    /// An empty ring of `slots` buckets (at least one).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            counts: vec![0; slots.max(1)].into_boxed_slice(),
            newest: None,
        }
    }

    fn len(&self) -> i64 {
        // At most MAX_DEMAND_BUCKETS + 1 slots.
        self.counts.len() as i64
    }

    fn slot(&self, hop: i64) -> usize {
        // rem_euclid of a positive length is in 0..len.
        hop.rem_euclid(self.len()) as usize
    }

    /// Counts one request in bucket `hop`. Moving to a newer bucket clears the buckets it
    /// reuses; a bucket older than the ring holds is ignored (no window can include it any
    /// more).
    pub(crate) fn add(&mut self, hop: i64) {
        let len = self.len();
        match self.newest {
            Some(newest) if hop <= newest => {
                if newest.saturating_sub(hop) >= len {
                    return;
                }
            }
            Some(newest) => {
                if hop.saturating_sub(newest) >= len {
                    self.counts.fill(0);
                } else {
                    for cleared in newest + 1..=hop {
                        let slot = self.slot(cleared);
                        self.counts[slot] = 0;
                    }
                }
                self.newest = Some(hop);
            }
            None => self.newest = Some(hop),
        }
        let slot = self.slot(hop);
        self.counts[slot] = self.counts[slot].saturating_add(1);
    }

    /// Requests in buckets `from_hop..to_hop`.
    pub(crate) fn sum(&self, from_hop: i64, to_hop: i64) -> u32 {
        let Some(newest) = self.newest else {
            return 0;
        };
        let oldest_held = newest.saturating_sub(self.len() - 1);
        let to = to_hop.min(newest.saturating_add(1));
        (from_hop.max(oldest_held)..to).fold(0u32, |sum, hop| {
            sum.saturating_add(self.counts[self.slot(hop)])
        })
    }

    /// Heap bytes held by the ring.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.len() * size_of::<u32>()
    }
}

/// The last event time at which each trip id was requested, for deduplication.
///
/// A request is a duplicate if the same trip was requested less than a window earlier. The
/// rule looks at the last request *seen*, counted or not, so the decision depends on one
/// window of history only: a restored engine replaying a bounded horizon decides exactly as
/// the original did (a rule based on the last *counted* request would chain back forever).
#[derive(Debug, Clone, Default)]
pub(crate) struct Dedupe {
    last_seen: HashMap<TripKey, i64>,
}

impl Dedupe {
    /// Records a request for `trip` stamped `at_ms`; `true` if it counts, `false` if the same
    /// trip was requested within the `window_ms` before it (equal times included: the first
    /// applied wins).
    pub(crate) fn first_in_window(&mut self, trip: TripKey, at_ms: i64, window_ms: i64) -> bool {
        match self.last_seen.entry(trip) {
            Entry::Vacant(vacant) => {
                vacant.insert(at_ms);
                true
            }
            Entry::Occupied(mut occupied) => {
                let previous = *occupied.get();
                *occupied.get_mut() = previous.max(at_ms);
                previous <= at_ms.saturating_sub(window_ms)
            }
        }
    }

    /// Forgets trips last requested at or before `through_ms`. Called at tick `T` with
    /// `T − window`: every later request is stamped after `T`, so none of those could make it
    /// a duplicate any more, and forgetting them changes no decision.
    pub(crate) fn forget_through(&mut self, through_ms: i64) {
        self.last_seen.retain(|_, at| *at > through_ms);
    }

    /// Trip ids remembered.
    pub(crate) fn len(&self) -> usize {
        self.last_seen.len()
    }

    /// Approximate bytes held (hashbrown: one control byte per bucket).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.last_seen.capacity() * (size_of::<(TripKey, i64)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sums_a_window_of_buckets() {
        let mut ring = DemandRing::new(4);
        assert_eq!(ring.sum(0, 100), 0);
        for hop in [10, 10, 11, 13] {
            ring.add(hop);
        }
        assert_eq!(ring.sum(10, 14), 4);
        assert_eq!(ring.sum(11, 13), 1);
        assert_eq!(ring.sum(13, 14), 1);
        // Moving on reuses the oldest slot (hop 10) for hop 14.
        ring.add(14);
        assert_eq!(ring.sum(0, 100), 3);
        assert_eq!(ring.sum(10, 11), 0);
        // A bucket the ring no longer holds is ignored; an older one it holds is counted.
        ring.add(10);
        ring.add(12);
        assert_eq!(ring.sum(0, 100), 4);
        // A jump further than the ring clears it.
        ring.add(100);
        assert_eq!(ring.sum(0, 101), 1);
        assert_eq!(ring.sum(-5, 0), 0);
    }

    #[test]
    fn ring_handles_negative_and_extreme_hops() {
        let mut ring = DemandRing::new(3);
        ring.add(-7);
        ring.add(-6);
        assert_eq!(ring.sum(-7, -5), 2);
        ring.add(i64::MAX);
        assert_eq!(ring.sum(i64::MIN, i64::MAX), 0);
        assert_eq!(ring.sum(i64::MAX - 1, i64::MAX), 0);
        let mut ring = DemandRing::new(3);
        ring.add(i64::MIN);
        assert_eq!(ring.sum(i64::MIN, i64::MIN + 1), 1);
    }

    #[test]
    fn duplicates_within_a_window_count_once() {
        let mut seen = Dedupe::default();
        let trip = TripKey(7);
        assert!(seen.first_in_window(trip, 1_000, 300_000));
        assert!(!seen.first_in_window(trip, 1_000, 300_000), "same time");
        assert!(!seen.first_in_window(trip, 250_000, 300_000), "retry");
        // A window after the last sighting (not the first), it counts again.
        assert!(!seen.first_in_window(trip, 549_999, 300_000));
        assert!(seen.first_in_window(trip, 849_999, 300_000));
        assert!(seen.first_in_window(TripKey(8), 849_999, 300_000));
        seen.forget_through(849_998);
        assert_eq!(seen.len(), 2);
        seen.forget_through(849_999);
        assert_eq!(seen.len(), 0);
    }
}
