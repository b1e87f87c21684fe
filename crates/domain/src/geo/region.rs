//! [`Region`]: the coarse cell that is the unit of Kafka partitioning.

use std::fmt;
use std::str::FromStr;

use super::{BoundingBox, Cell, GeoError, LatLon};

/// A coarse geohash cell used as the partition key of the pipeline.
///
/// A distinct type from [`Cell`] (though the same 8 bytes) so that a fine cell can never be
/// passed where a partition key is expected, or the other way round. The region precision is
/// a deployment setting; every operator of one deployment must use the same one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Region(Cell);

impl Region {
    /// The region of `precision` containing `cell`.
    ///
    /// # Errors
    /// [`GeoError::InvalidPrecision`] if `precision` is outside 1..=12,
    /// [`GeoError::RegionFinerThanCell`] if it is finer than the cell's own precision (a
    /// cell cannot be assigned to one region of a finer grid).
    pub fn of(cell: Cell, precision: u8) -> Result<Self, GeoError> {
        if precision == 0 || precision > super::MAX_PRECISION {
            return Err(GeoError::InvalidPrecision(precision));
        }
        cell.parent(precision)
            .map(Self)
            .ok_or(GeoError::RegionFinerThanCell {
                region_precision: precision,
                cell_precision: cell.precision(),
            })
    }

    /// The region of `precision` containing a point.
    ///
    /// # Errors
    /// As [`Cell::from_lat_lon`].
    pub fn containing(point: LatLon, precision: u8) -> Result<Self, GeoError> {
        Cell::from_lat_lon(point.lat, point.lon, precision).map(Self)
    }

    /// Parses the geohash text of a region (as produced by `Display`).
    ///
    /// # Errors
    /// As [`Cell::parse`].
    pub fn parse(text: &str) -> Result<Self, GeoError> {
        Cell::parse(text).map(Self)
    }

    /// The region as a cell of its own precision.
    #[must_use]
    pub const fn cell(self) -> Cell {
        self.0
    }

    /// Geohash length of the region.
    #[must_use]
    pub const fn precision(self) -> u8 {
        self.0.precision()
    }

    /// The region's extent in degrees.
    #[must_use]
    pub fn bbox(self) -> BoundingBox {
        self.0.bbox()
    }

    /// Whether `cell` lies inside this region (its geohash starts with the region's).
    #[must_use]
    pub fn contains(self, cell: Cell) -> bool {
        cell.parent(self.precision()) == Some(self.0)
    }
}

impl From<Cell> for Region {
    /// Uses a cell, at its own precision, as a region.
    fn from(cell: Cell) -> Self {
        Self(cell)
    }
}

impl fmt::Display for Region {
    /// The geohash text, lowercase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.0)
    }
}

impl FromStr for Region {
    type Err = GeoError;

    fn from_str(text: &str) -> Result<Self, GeoError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_of_cell() {
        let cell = Cell::parse("dr5ru7").expect("valid");
        let region = Region::of(cell, 4).expect("coarser");
        assert_eq!(region.to_string(), "dr5r");
        assert_eq!(format!("{region:?}"), "Region(dr5r)");
        assert_eq!(region.precision(), 4);
        assert_eq!(region.cell(), Cell::parse("dr5r").expect("valid"));
        assert_eq!(region.bbox(), region.cell().bbox());
        assert!(region.contains(cell));
        assert!(!region.contains(Cell::parse("dr5q").expect("valid")));
        assert_eq!("dr5r".parse::<Region>(), Ok(region));
        assert_eq!(Region::of(cell, 6).map(Region::cell), Ok(cell));
    }

    #[test]
    fn region_errors() {
        let cell = Cell::parse("dr5r").expect("valid");
        assert_eq!(
            Region::of(cell, 5),
            Err(GeoError::RegionFinerThanCell {
                region_precision: 5,
                cell_precision: 4
            })
        );
        assert_eq!(Region::of(cell, 0), Err(GeoError::InvalidPrecision(0)));
        assert_eq!(Region::of(cell, 13), Err(GeoError::InvalidPrecision(13)));
        assert_eq!(
            Region::parse("dr5!"),
            Err(GeoError::InvalidGeohashChar { ch: '!', index: 3 })
        );
    }

    #[test]
    fn region_containing_point() {
        let point = LatLon {
            lat: 40.716976,
            lon: -73.956528,
        };
        assert_eq!(
            Region::containing(point, 4).map(|r| r.to_string()),
            Ok("dr5r".to_owned())
        );
        assert!(
            Region::containing(
                LatLon {
                    lat: 91.0,
                    lon: 0.0
                },
                4
            )
            .is_err()
        );
    }
}
