//! Geohash geometry for the marketplace: which cell an event falls in, which cells and
//! regions lie within some distance of it.
//!
//! Everything is keyed by [`Cell`], a geohash packed into a `u64`, so that per-event work
//! (encoding a GPS fix, hashing it into a state map, finding its neighbours) is integer
//! arithmetic with no allocation. A [`Region`] is a coarse cell used as the Kafka partition
//! key; [`halo_regions`] tells which *other* regions must also see an event so that
//! computations near a region border (neighbour smoothing, driver matching) see everything
//! within their radius without cross-partition lookups.

mod cell;
mod distance;
mod error;
mod region;
mod search;

pub use cell::{Cell, Direction, Disk, MAX_PRECISION, Neighbours};
pub use distance::{BoundingBox, EARTH_RADIUS_M, LatLon, haversine_m};
pub use error::GeoError;
pub use region::Region;
pub use search::{HaloRegions, cells_within, halo_regions};
