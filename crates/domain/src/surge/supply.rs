//! Supply bookkeeping: the latest plausible ping of every driver, and the teleport check.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::geo::{Cell, LatLon, haversine_m};

use super::{DriverKey, DriverPing, DriverStatus};

/// Where a driver was at an event time.
#[derive(Debug, Clone, Copy)]
struct Fix {
    position: LatLon,
    at_ms: i64,
}

/// No fix: older than any TTL window, so never used as a reference.
const NO_FIX: Fix = Fix {
    position: LatLon { lat: 0.0, lon: 0.0 },
    at_ms: i64::MIN,
};

/// Whether moving from `from` to `to` is possible at `max_speed_mps`.
fn plausible(from: Fix, to: Fix, max_speed_mps: f64) -> bool {
    let metres = haversine_m(from.position, to.position);
    // The caller guarantees to.at_ms > from.at_ms; compare without dividing.
    let elapsed_ms = to.at_ms.saturating_sub(from.at_ms) as f64;
    metres * 1000.0 <= max_speed_mps * elapsed_ms
}

/// What the table knows about one driver.
#[derive(Debug, Clone)]
struct DriverState<P> {
    /// The latest applied ping: what supply counts.
    cell: Cell,
    product: P,
    status: DriverStatus,
    at_ms: i64,
    /// The two latest pings seen (applied or rejected), newest first: the references of the
    /// teleport check.
    recent: [Fix; 2],
}

/// What [`DriverTable::apply`] did with a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PingOutcome {
    /// The driver's state is now this ping.
    Applied,
    /// Not newer than a ping already seen (equal times: the first one wins); ignored.
    Superseded,
    /// Implausibly far from both of the driver's last two pings within the TTL; rejected.
    Teleport,
}

/// The latest state of every driver seen within the supply TTL.
#[derive(Debug, Clone)]
pub(crate) struct DriverTable<P> {
    drivers: HashMap<DriverKey, DriverState<P>>,
    ttl_ms: i64,
    max_speed_mps: f64,
}

impl<P: Copy> DriverTable<P> {
    pub(crate) fn new(ttl_ms: i64, max_speed_mps: f64) -> Self {
        Self {
            drivers: HashMap::new(),
            ttl_ms,
            max_speed_mps,
        }
    }

    /// Applies a ping, unless it is not newer than the driver's last one or is a teleport.
    ///
    /// Teleport rule: a ping is rejected if at least one of the driver's last two pings
    /// (applied or not) lies within the TTL and the ping is implausible from every such one.
    /// Two references rather than one, so a single GPS glitch costs one ping (the next good
    /// ping is plausible from the one before the glitch), while a genuine jump (GPS
    /// re-acquired after a tunnel) is accepted from its second ping on. References are
    /// pings *seen* rather than pings *applied*, so each decision depends on a bounded
    /// history (two pings within the TTL) and a replayed engine decides as the original did.
    pub(crate) fn apply(&mut self, ping: &DriverPing<P>) -> PingOutcome {
        let fix = Fix {
            position: ping.position,
            at_ms: ping.event_time_ms,
        };
        let references_from = ping.event_time_ms.saturating_sub(self.ttl_ms);
        let state = match self.drivers.entry(ping.driver) {
            Entry::Vacant(vacant) => {
                vacant.insert(DriverState {
                    cell: ping.cell,
                    product: ping.product,
                    status: ping.status,
                    at_ms: ping.event_time_ms,
                    recent: [fix, NO_FIX],
                });
                return PingOutcome::Applied;
            }
            Entry::Occupied(occupied) => occupied.into_mut(),
        };
        // The engine applies pings in event-time order, so this only catches equal times.
        if ping.event_time_ms <= state.recent[0].at_ms {
            return PingOutcome::Superseded;
        }
        let previous = state.recent;
        state.recent = [fix, previous[0]];
        let mut references = previous
            .iter()
            .filter(|reference| reference.at_ms > references_from)
            .peekable();
        let has_reference = references.peek().is_some();
        if has_reference
            && !references.any(|reference| plausible(*reference, fix, self.max_speed_mps))
        {
            return PingOutcome::Teleport;
        }
        state.cell = ping.cell;
        state.product = ping.product;
        state.status = ping.status;
        state.at_ms = ping.event_time_ms;
        PingOutcome::Applied
    }

    /// Calls `count(cell, product)` for every driver that is supply at `at_ms` (latest
    /// applied ping `Available`, stamped in `(at_ms − ttl, at_ms]`), and forgets drivers whose
    /// latest ping is older than that: they count nowhere and are no teleport reference any
    /// more, so the table stays bounded by the drivers active within one TTL.
    pub(crate) fn count_and_expire(&mut self, at_ms: i64, mut count: impl FnMut(Cell, P)) {
        let fresh_after = at_ms.saturating_sub(self.ttl_ms);
        self.drivers.retain(|_, state| {
            if state.status == DriverStatus::Available
                && state.at_ms > fresh_after
                && state.at_ms <= at_ms
            {
                count(state.cell, state.product);
            }
            state.recent[0].at_ms > fresh_after
        });
    }

    /// Drivers tracked.
    pub(crate) fn len(&self) -> usize {
        self.drivers.len()
    }

    /// Approximate bytes held (hashbrown: one control byte per bucket).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.drivers.capacity() * (size_of::<(DriverKey, DriverState<P>)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres per degree of latitude on the crate's sphere.
    const M_PER_DEG: f64 = 111_195.08;

    fn cell() -> Cell {
        Cell::parse("dr5ru7").expect("valid")
    }

    /// A ping `north_m` metres north of a fixed point.
    fn ping(at_ms: i64, north_m: f64, status: DriverStatus) -> DriverPing<u8> {
        DriverPing {
            driver: DriverKey(1),
            position: LatLon {
                lat: 40.7 + north_m / M_PER_DEG,
                lon: -73.95,
            },
            cell: cell(),
            product: 0,
            status,
            halo: false,
            event_time_ms: at_ms,
        }
    }

    fn supply_at(table: &mut DriverTable<u8>, at_ms: i64) -> usize {
        let mut n = 0;
        table.count_and_expire(at_ms, |_, _| n += 1);
        n
    }

    #[test]
    fn latest_ping_wins_and_equal_times_keep_the_first() {
        let mut table = DriverTable::new(30_000, 70.0);
        use DriverStatus::*;
        assert_eq!(
            table.apply(&ping(1_000, 0.0, Available)),
            PingOutcome::Applied
        );
        assert_eq!(
            table.apply(&ping(1_000, 0.0, Offline)),
            PingOutcome::Superseded
        );
        assert_eq!(
            table.apply(&ping(500, 0.0, Offline)),
            PingOutcome::Superseded
        );
        assert_eq!(supply_at(&mut table, 1_000), 1);
        assert_eq!(
            table.apply(&ping(2_000, 10.0, OnTrip)),
            PingOutcome::Applied
        );
        assert_eq!(supply_at(&mut table, 2_000), 0);
    }

    #[test]
    fn supply_counts_within_the_ttl_and_expires_after() {
        let mut table = DriverTable::new(30_000, 70.0);
        table.apply(&ping(10_000, 0.0, DriverStatus::Available));
        assert_eq!(supply_at(&mut table, 9_999), 0, "not yet");
        assert_eq!(supply_at(&mut table, 39_999), 1);
        assert_eq!(table.len(), 1);
        assert_eq!(supply_at(&mut table, 40_000), 0, "exactly one TTL old");
        assert_eq!(table.len(), 0, "expired drivers are forgotten");
    }

    #[test]
    fn a_glitch_costs_one_ping_and_a_real_jump_two() {
        let mut table = DriverTable::new(30_000, 70.0);
        use DriverStatus::Available;
        assert_eq!(table.apply(&ping(0, 0.0, Available)), PingOutcome::Applied);
        // 5 s later, 5 km away: 1000 m/s.
        assert_eq!(
            table.apply(&ping(5_000, 5_000.0, Available)),
            PingOutcome::Teleport
        );
        // Back where it was: implausible from the glitch, plausible from the ping before.
        assert_eq!(
            table.apply(&ping(10_000, 100.0, Available)),
            PingOutcome::Applied
        );
        // A real relocation: the first ping is refused, the second is plausible from it.
        assert_eq!(
            table.apply(&ping(15_000, 9_000.0, Available)),
            PingOutcome::Teleport
        );
        assert_eq!(
            table.apply(&ping(20_000, 9_100.0, Available)),
            PingOutcome::Applied
        );
        // Just under 70 m/s is allowed; over it from both references is not.
        let mut table = DriverTable::new(30_000, 70.0);
        table.apply(&ping(0, 0.0, Available));
        assert_eq!(
            table.apply(&ping(1_000, 69.9, Available)),
            PingOutcome::Applied
        );
        assert_eq!(
            table.apply(&ping(2_000, 69.9 + 140.5, Available)),
            PingOutcome::Teleport
        );
    }

    #[test]
    fn references_older_than_the_ttl_are_ignored() {
        let mut table = DriverTable::new(30_000, 70.0);
        use DriverStatus::Available;
        table.apply(&ping(0, 0.0, Available));
        // 30 s later is outside the TTL window (pings at or before at − ttl do not count).
        assert_eq!(
            table.apply(&ping(30_000, 50_000.0, Available)),
            PingOutcome::Applied
        );
        assert_eq!(supply_at(&mut table, 30_000), 1);
    }
}
