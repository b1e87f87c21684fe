//! The one error type of the [`geo`](crate::geo) module.

use thiserror::Error;

/// Why a coordinate, geohash, precision or search could not be turned into cells.
///
/// Each invalid input has its own variant so that callers (the ingest validator, config
/// loading) can report exactly what was wrong, and tests can assert on it.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum GeoError {
    /// Latitude or longitude is NaN or infinite.
    #[error("coordinate is not finite: lat={lat}, lon={lon}")]
    NonFiniteCoordinate {
        /// The latitude as given.
        lat: f64,
        /// The longitude as given.
        lon: f64,
    },
    /// Latitude outside `[-90, 90]` degrees.
    #[error("latitude {0} is outside [-90, 90]")]
    LatitudeOutOfRange(f64),
    /// Longitude outside `[-180, 180]` degrees.
    #[error("longitude {0} is outside [-180, 180]")]
    LongitudeOutOfRange(f64),
    /// Precision (geohash length) outside `1..=12`.
    #[error("geohash precision {0} is outside 1..=12")]
    InvalidPrecision(u8),
    /// Geohash text of length 0 or more than 12 characters.
    #[error("geohash text has {0} characters; expected 1..=12")]
    InvalidGeohashLength(usize),
    /// Geohash text with a character outside the geohash base32 alphabet.
    #[error("invalid geohash character {ch:?} at index {index}")]
    InvalidGeohashChar {
        /// The offending character.
        ch: char,
        /// Its character index in the text.
        index: usize,
    },
    /// A `u64` that is not the packed form of any cell.
    #[error("{0:#018x} is not a packed geohash cell")]
    InvalidCellBits(u64),
    /// A region was asked at a finer precision than the cell it should contain.
    #[error("region precision {region_precision} is finer than cell precision {cell_precision}")]
    RegionFinerThanCell {
        /// The requested region precision.
        region_precision: u8,
        /// The precision of the cell.
        cell_precision: u8,
    },
    /// A search radius that is negative, NaN or infinite.
    #[error("search radius {0} m is not a finite, non-negative number")]
    InvalidRadius(f64),
}
