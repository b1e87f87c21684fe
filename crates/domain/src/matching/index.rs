//! [`DriverIndex`]: where the available drivers are, bucketed by geohash cell and product so a
//! radius query touches only the drivers near the pickup.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::ops::ControlFlow;

use super::config::ms;
use super::{ConfigError, DriverProfile, MatchError, MatcherConfig};
use crate::geo::{Cell, EARTH_RADIUS_M, GeoError, LatLon, cells_within, haversine_m};

/// What a product identifier must support to key the index and order outputs.
///
/// The matcher is generic over it so this crate stays free of the schema crate: the operator
/// uses `surgeflow_schema::Product`, tests may use anything small.
pub trait ProductKey: Copy + Eq + Hash + Ord + fmt::Debug {}

impl<T: Copy + Eq + Hash + Ord + fmt::Debug> ProductKey for T {}

/// What a driver is doing when a ping is taken (the domain mirror of the schema's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverStatus {
    /// Online and free: the only status that makes a driver a candidate.
    Available,
    /// Heading to a pickup.
    Dispatched,
    /// Carrying a rider.
    OnTrip,
    /// Logged off.
    Offline,
}

/// One `geo.driver` record, borrowed from the decoded event so that applying it allocates
/// nothing for a driver already known.
///
/// Halo copies (pings from just across a region border) are fed like any other: that is what
/// lets a pickup near the border see the drivers on the other side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriverPing<'a, P> {
    /// The driver.
    pub driver_id: &'a str,
    /// Where the driver is.
    pub position: LatLon,
    /// What the driver is doing.
    pub status: DriverStatus,
    /// The product the driver is online for.
    pub product: P,
    /// When the ping was taken, UTC milliseconds.
    pub event_time: i64,
}

/// A driver found by [`DriverIndex::within`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearbyDriver<'a> {
    /// The driver.
    pub driver_id: &'a str,
    /// Great-circle distance to the query point, metres.
    pub distance_m: f64,
}

/// A driver's position in the index's entry table. Never reused, never shown outside the
/// crate: outputs and tie-breaks use driver ids, so slot numbering (which depends on how much
/// history a matcher has seen) cannot leak into results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot(usize);

/// The latest applied ping of a driver.
#[derive(Debug, Clone, Copy)]
struct Fix {
    position: LatLon,
    event_time: i64,
}

/// A bucket element: the driver's fix is copied in, so a query scans contiguous memory and
/// touches a driver's entry only once it is in range.
#[derive(Debug, Clone, Copy)]
struct Listed {
    slot: Slot,
    fix: Fix,
}

/// What [`DriverIndex::scan`] reports, nearest cells first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sighting {
    /// The cells from here on are at least this far from the point, metres.
    Cell(f64),
    /// A candidate within the radius, and its distance in metres.
    Driver(Slot, f64),
}

/// Margin, metres, by which a lower bound must exceed a distance to rule a driver out. Far
/// above floating-point error at city scale, far below anything that matters.
pub(crate) const BOUND_SLACK_M: f64 = 1e-3;

#[derive(Debug, Clone)]
struct Entry<P> {
    id: Box<str>,
    fix: Option<Fix>,
    /// Event time of the driver's latest acceptance: the driver is busy (not a candidate)
    /// until an `Available` ping newer than this, however stale the app's earlier pings are.
    busy_since: Option<i64>,
    profile: Option<DriverProfile>,
    /// The bucket listing this driver, and the driver's index in it.
    listed: Option<(BucketKey<P>, usize)>,
}

type BucketKey<P> = (P, Cell);

/// The available drivers of one matcher, by product and geohash cell.
///
/// A driver is *listed* (in exactly one bucket) while its latest ping says `Available`, it is
/// not busy with an accepted trip, and it has not been swept as expired. Listing, moving and
/// unlisting are O(1): a bucket is a `Vec` of slots, each driver remembers its index in it,
/// and removal is a `swap_remove` that fixes the one moved entry's index.
///
/// A radius query asks [`cells_within`] for the cells of the index precision that come within
/// the radius, visits the non-empty ones nearest first, and filters their drivers by TTL and
/// exact haversine distance, so it returns exactly the drivers a scan over all of them would
/// (a property test checks this). Nearest first lets the matcher stop early (see `scan`).
///
/// Memory: one entry per driver ever seen (a region's driver population: drivers come back,
/// so entries are kept and ids interned once), plus the listed ones' bucket slots and an
/// expiry queue of the pings within one TTL.
#[derive(Debug, Clone)]
pub struct DriverIndex<P> {
    precision: u8,
    ttl_ms: i64,
    slots: HashMap<Box<str>, Slot>,
    entries: Vec<Entry<P>>,
    buckets: HashMap<BucketKey<P>, Vec<Listed>>,
    /// `(event time, slot)` of every listing ping, in arrival order, so that [`sweep`] can
    /// unlist drivers that went silent without scanning all of them. Arrival order is only
    /// roughly event-time order; a late item behind a younger one is swept a little late,
    /// which costs memory for a while but never correctness (queries check the TTL exactly).
    ///
    /// [`sweep`]: Self::sweep
    expiry: VecDeque<(i64, Slot)>,
    /// Every profile fed, including drivers never seen; copied into entries on interning.
    profiles: HashMap<Box<str>, DriverProfile>,
    listed: usize,
}

impl<P: ProductKey> DriverIndex<P> {
    /// An empty index using `config.index_precision` and `config.driver_ttl_ms`.
    ///
    /// # Errors
    /// As [`MatcherConfig::validate`].
    pub fn new(config: &MatcherConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    pub(crate) fn from_valid(config: &MatcherConfig) -> Self {
        Self {
            precision: config.index_precision,
            ttl_ms: ms(config.driver_ttl_ms),
            slots: HashMap::new(),
            entries: Vec::new(),
            buckets: HashMap::new(),
            expiry: VecDeque::new(),
            profiles: HashMap::new(),
            listed: 0,
        }
    }

    /// Applies a ping unless the driver has a newer one already (latest event time wins; of
    /// two with the same event time, the later arrival). Returns whether it was applied.
    ///
    /// # Errors
    /// [`MatchError::Position`] for an invalid position; nothing is changed then.
    pub fn apply(&mut self, ping: &DriverPing<'_, P>) -> Result<bool, MatchError> {
        let position = ping.position.validated()?;
        let cell = Cell::from_lat_lon(position.lat, position.lon, self.precision)?;
        let slot = self.intern(ping.driver_id);
        let entry = &mut self.entries[slot.0];
        if entry
            .fix
            .is_some_and(|fix| ping.event_time < fix.event_time)
        {
            return Ok(false);
        }
        let fix = Fix {
            position,
            event_time: ping.event_time,
        };
        entry.fix = Some(fix);
        let available = ping.status == DriverStatus::Available;
        if available
            && entry
                .busy_since
                .is_some_and(|since| ping.event_time > since)
        {
            entry.busy_since = None;
        }
        let wanted = (available && entry.busy_since.is_none()).then_some((ping.product, cell));
        self.list(slot, wanted, fix);
        if wanted.is_some() {
            self.expiry.push_back((ping.event_time, slot));
        }
        Ok(true)
    }

    /// Sets a driver's profile (the latest `driver.profile` record wins).
    pub fn upsert_profile(&mut self, driver_id: &str, profile: DriverProfile) {
        if let Some(slot) = self.slot(driver_id) {
            self.entries[slot.0].profile = Some(profile);
        }
        self.profiles.insert(driver_id.into(), profile);
    }

    /// Forgets a driver's profile (a `driver.profile` tombstone): defaults apply again.
    pub fn remove_profile(&mut self, driver_id: &str) {
        if let Some(slot) = self.slot(driver_id) {
            self.entries[slot.0].profile = None;
        }
        self.profiles.remove(driver_id);
    }

    /// The profile fed for a driver, if any.
    #[must_use]
    pub fn profile(&self, driver_id: &str) -> Option<DriverProfile> {
        self.profiles.get(driver_id).copied()
    }

    /// Every listed driver of `product` within `radius_m` of `point` whose latest ping is at
    /// most the TTL older than `now`, nearest first (ties by driver id).
    ///
    /// # Errors
    /// [`MatchError::Position`] for an invalid point or a negative / non-finite radius.
    pub fn within(
        &self,
        point: LatLon,
        radius_m: f64,
        product: P,
        now: i64,
    ) -> Result<Vec<NearbyDriver<'_>>, MatchError> {
        let mut found = Vec::new();
        self.scan(point, radius_m, product, now, |sighting| {
            if let Sighting::Driver(slot, distance_m) = sighting {
                found.push(NearbyDriver {
                    driver_id: self.id(slot),
                    distance_m,
                });
            }
            ControlFlow::Continue(())
        })?;
        found.sort_by(|a, b| {
            a.distance_m
                .total_cmp(&b.distance_m)
                .then_with(|| a.driver_id.cmp(b.driver_id))
        });
        Ok(found)
    }

    /// Unlists drivers whose latest ping is more than the TTL older than `now`, to keep
    /// buckets (and so query cost) proportional to the live drivers. Amortised O(1) per ping.
    pub fn sweep(&mut self, now: i64) {
        while let Some(&(event_time, slot)) = self.expiry.front() {
            if now.saturating_sub(event_time) <= self.ttl_ms {
                break;
            }
            self.expiry.pop_front();
            let entry = &self.entries[slot.0];
            if entry.fix.is_some_and(|fix| fix.event_time == event_time) {
                self.unlist(slot);
            }
        }
    }

    /// Drivers currently listed as available (expired ones included until the next sweep).
    #[must_use]
    pub fn listed(&self) -> usize {
        self.listed
    }

    /// Drivers ever seen (pinged, profiled while pinging, or proposed).
    #[must_use]
    pub fn known(&self) -> usize {
        self.entries.len()
    }

    /// Reports every candidate of [`within`](Self::within) to `visit`, cell by cell, nearest
    /// cells first, announcing each cell with a lower bound on the distance of everything from
    /// there on; `visit` may stop the scan. That lets a caller looking for the best or the `n`
    /// best candidates stop after the first ring or two of cells instead of scoring every
    /// driver in the radius. Within a cell the order depends on history: callers must order
    /// results themselves.
    pub(crate) fn scan(
        &self,
        point: LatLon,
        radius_m: f64,
        product: P,
        now: i64,
        mut visit: impl FnMut(Sighting) -> ControlFlow<()>,
    ) -> Result<(), GeoError> {
        let mut cells: Vec<(f64, &Vec<Listed>)> = cells_within(point, radius_m, self.precision)?
            .into_iter()
            .filter_map(|cell| {
                let bucket = self.buckets.get(&(product, cell))?;
                Some((cell.bbox().distance_m(point), bucket))
            })
            .collect();
        cells.sort_by(|a, b| a.0.total_cmp(&b.0));
        // A great circle is at least as long as its north-south component: a cheap, exact
        // lower bound that skips the trigonometry for drivers above or below the disk.
        let reach_rad = (radius_m + BOUND_SLACK_M) / EARTH_RADIUS_M;
        for (min_distance_m, bucket) in cells {
            if visit(Sighting::Cell(min_distance_m)).is_break() {
                return Ok(());
            }
            for listed in bucket {
                let fix = listed.fix;
                if now.saturating_sub(fix.event_time) > self.ttl_ms
                    || (fix.position.lat - point.lat).to_radians().abs() > reach_rad
                {
                    continue;
                }
                let distance_m = haversine_m(point, fix.position);
                if distance_m <= radius_m
                    && visit(Sighting::Driver(listed.slot, distance_m)).is_break()
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn slot(&self, driver_id: &str) -> Option<Slot> {
        self.slots.get(driver_id).copied()
    }

    /// The slot of a driver, creating an (unlisted) entry for a new one.
    pub(crate) fn intern(&mut self, driver_id: &str) -> Slot {
        if let Some(slot) = self.slot(driver_id) {
            return slot;
        }
        let slot = Slot(self.entries.len());
        self.entries.push(Entry {
            id: driver_id.into(),
            fix: None,
            busy_since: None,
            profile: self.profiles.get(driver_id).copied(),
            listed: None,
        });
        self.slots.insert(driver_id.into(), slot);
        slot
    }

    pub(crate) fn id(&self, slot: Slot) -> &str {
        &self.entries[slot.0].id
    }

    pub(crate) fn slot_profile(&self, slot: Slot) -> Option<DriverProfile> {
        self.entries[slot.0].profile
    }

    /// The driver accepted a trip at `since`: unlisted until an `Available` ping newer than
    /// that (its app may still be sending `Available` pings taken before it accepted).
    pub(crate) fn mark_busy(&mut self, slot: Slot, since: i64) {
        let entry = &mut self.entries[slot.0];
        entry.busy_since = Some(entry.busy_since.map_or(since, |old| old.max(since)));
        self.unlist(slot);
    }

    /// Puts the driver in the bucket `wanted` with its new fix (or in none), moving it if it
    /// was listed elsewhere.
    fn list(&mut self, slot: Slot, wanted: Option<BucketKey<P>>, fix: Fix) {
        if let Some((key, index)) = self.entries[slot.0].listed
            && Some(key) == wanted
        {
            if let Some(listed) = self.buckets.get_mut(&key).and_then(|b| b.get_mut(index)) {
                listed.fix = fix;
            }
            return;
        }
        self.unlist(slot);
        if let Some(key) = wanted {
            let bucket = self.buckets.entry(key).or_default();
            self.entries[slot.0].listed = Some((key, bucket.len()));
            bucket.push(Listed { slot, fix });
            self.listed += 1;
        }
    }

    fn unlist(&mut self, slot: Slot) {
        let Some((key, index)) = self.entries[slot.0].listed.take() else {
            return;
        };
        self.listed -= 1;
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return;
        };
        bucket.swap_remove(index);
        if let Some(moved) = bucket.get(index) {
            self.entries[moved.slot.0].listed = Some((key, index));
        }
        if bucket.is_empty() {
            self.buckets.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(id: &str, lat: f64, lon: f64, status: DriverStatus, t: i64) -> DriverPing<'_, u8> {
        DriverPing {
            driver_id: id,
            position: LatLon { lat, lon },
            status,
            product: 0,
            event_time: t,
        }
    }

    fn ids(index: &DriverIndex<u8>, now: i64) -> Vec<String> {
        let centre = LatLon {
            lat: 52.52,
            lon: 13.405,
        };
        index
            .within(centre, 5_000.0, 0, now)
            .expect("valid query")
            .into_iter()
            .map(|d| d.driver_id.to_owned())
            .collect()
    }

    /// Every listed slot is in the bucket its entry names, at the index it names.
    fn assert_consistent(index: &DriverIndex<u8>) {
        let mut count = 0;
        for (key, bucket) in &index.buckets {
            assert!(!bucket.is_empty());
            for (i, listed) in bucket.iter().enumerate() {
                assert_eq!(index.entries[listed.slot.0].listed, Some((*key, i)));
                count += 1;
            }
        }
        assert_eq!(count, index.listed);
    }

    #[test]
    fn moves_statuses_order_busy_and_expiry() {
        let mut index = DriverIndex::new(&MatcherConfig::default()).expect("valid");
        use DriverStatus::*;
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            let offset = i as f64 * 0.003;
            assert_eq!(
                index.apply(&ping(id, 52.52 + offset, 13.405, Available, 1_000)),
                Ok(true)
            );
        }
        assert_consistent(&index);
        assert_eq!(ids(&index, 1_000), ["a", "b", "c", "d"]);
        // "a" moves far away: out of the result, buckets still consistent after swap_remove.
        assert_eq!(
            index.apply(&ping("a", 52.60, 13.405, Available, 2_000)),
            Ok(true)
        );
        assert_consistent(&index);
        assert_eq!(ids(&index, 2_000), ["b", "c", "d"]);
        // An older ping does not win.
        assert_eq!(
            index.apply(&ping("a", 52.52, 13.405, Available, 1_500)),
            Ok(false)
        );
        assert_eq!(ids(&index, 2_000), ["b", "c", "d"]);
        // Going on a trip unlists; coming back lists again.
        assert_eq!(
            index.apply(&ping("b", 52.523, 13.405, OnTrip, 2_000)),
            Ok(true)
        );
        assert_eq!(ids(&index, 2_000), ["c", "d"]);
        // Busy: a stale Available ping (older than the acceptance) does not relist.
        let c = index.slot("c").expect("known");
        index.mark_busy(c, 3_000);
        assert_eq!(
            index.apply(&ping("c", 52.526, 13.405, Available, 2_500)),
            Ok(true)
        );
        assert_eq!(ids(&index, 3_000), ["d"]);
        assert_eq!(
            index.apply(&ping("c", 52.526, 13.405, Available, 3_001)),
            Ok(true)
        );
        assert_eq!(ids(&index, 3_001), ["c", "d"]);
        assert_consistent(&index);
        // Expiry: "d" last pinged at 1000; TTL 30 s.
        assert_eq!(ids(&index, 31_000), ["c", "d"], "alive at exactly the TTL");
        assert_eq!(ids(&index, 31_001), ["c"]);
        index.sweep(31_001);
        assert_consistent(&index);
        assert_eq!(index.listed(), 2, "a (far away) and c remain listed");
        assert_eq!(index.known(), 4);
        // Invalid input changes nothing.
        assert!(
            index
                .apply(&ping("e", 91.0, 0.0, Available, 5_000))
                .is_err()
        );
        assert_eq!(index.known(), 4);
    }

    #[test]
    fn profiles_are_kept_for_drivers_not_yet_seen() {
        let mut index: DriverIndex<u8> =
            DriverIndex::new(&MatcherConfig::default()).expect("valid");
        let profile = DriverProfile::new(4.9, 0.95).expect("valid");
        index.upsert_profile("x", profile);
        let slot = index.intern("x");
        assert_eq!(index.slot_profile(slot), Some(profile));
        index.remove_profile("x");
        assert_eq!(index.slot_profile(slot), None);
        assert_eq!(index.profile("x"), None);
    }
}
