//! [`Cell`]: a geohash packed into one `u64`, and walks over the grid it belongs to.

use std::fmt::{self, Write as _};
use std::iter::FusedIterator;
use std::str::FromStr;

use super::{BoundingBox, GeoError, LatLon};

/// Longest supported geohash, in characters: 12 × 5 = 60 bits, the most that fit above the 4
/// precision bits of a [`Cell`]. At the equator a precision-12 cell is ~3.7 cm × 1.9 cm.
pub const MAX_PRECISION: u8 = 12;

const BITS_PER_CHAR: u32 = 5;
const PRECISION_BITS: u32 = 4;
const PRECISION_MASK: u64 = (1 << PRECISION_BITS) - 1;
/// Bits per axis at [`MAX_PRECISION`] (60 / 2): every cell index is computed at this
/// resolution, and coarser ones are its high bits.
const AXIS_BITS: u32 = 30;
const AXIS_CELLS: u32 = 1 << AXIS_BITS;

/// The geohash base32 alphabet (no `a`, `i`, `l`, `o`).
const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
const NOT_IN_ALPHABET: u8 = u8::MAX;
/// Byte → 5-bit value, both cases accepted; [`NOT_IN_ALPHABET`] elsewhere.
const DECODE: [u8; 256] = {
    let mut table = [NOT_IN_ALPHABET; 256];
    let mut value = 0;
    while value < ALPHABET.len() {
        let byte = ALPHABET[value];
        table[byte as usize] = value as u8;
        table[byte.to_ascii_uppercase() as usize] = value as u8;
        value += 1;
    }
    table
};

/// A geohash cell, packed into one `u64`.
///
/// Layout: the geohash bits (5 per character, longitude first, as in the text form) are
/// left-aligned in bits 63..4 and zero below the precision; bits 3..0 hold the precision
/// (1..=12 characters). Why this shape:
/// - an integer rather than a `String`: 8 bytes, `Copy`, hashes and compares in one
///   instruction, and never allocates on the per-event path;
/// - left-aligned: a cell's ancestor at any precision is a mask of the high bits
///   ([`parent`](Self::parent)), and because the unused bits are zero the derived `Ord` sorts
///   cells in Z-order with every parent immediately before its descendants, so a range scan
///   over a sorted map visits a region's cells contiguously;
/// - the precision in the low bits: `"s"` and `"s0"` share their geohash bits but are
///   different cells, and the precision is what tells them apart.
///
/// Points on an edge shared by two cells belong to the northern / eastern one, except on
/// the 90° N and 180° E edges of the grid, which belong to the cells they bound.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Cell(u64);

/// Bits of latitude and longitude at a precision: longitude gets the odd one out because
/// geohash interleaving starts with longitude.
const fn axis_bits(precision: u8) -> (u32, u32) {
    let total = precision as u32 * BITS_PER_CHAR;
    (total / 2, total - total / 2)
}

/// Mask of the geohash bits of a precision inside the packed `u64`.
const fn geohash_mask(precision: u8) -> u64 {
    !0 << (u64::BITS - precision as u32 * BITS_PER_CHAR)
}

fn check_precision(precision: u8) -> Result<(), GeoError> {
    if (1..=MAX_PRECISION).contains(&precision) {
        Ok(())
    } else {
        Err(GeoError::InvalidPrecision(precision))
    }
}

/// Spreads the low 32 bits of `x` to the even bit positions of a `u64`.
const fn spread(x: u32) -> u64 {
    let mut v = x as u64;
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

/// Inverse of [`spread`]: gathers the even bits of `x`.
const fn squash(x: u64) -> u32 {
    let mut v = x & 0x5555_5555_5555_5555;
    v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
    v = (v | (v >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    ((v | (v >> 16)) & 0x0000_0000_ffff_ffff) as u32
}

/// Index of the [`AXIS_CELLS`]-wide slot of `[min, min + span]` holding `value`, which the
/// caller has checked lies in that range; `min + span` itself goes to the last slot.
///
/// One float division gives the index to within one slot; the slot edges
/// `min + i·span/2³⁰` are exactly representable (a small integer times a power of two), so
/// comparing against them fixes the rounding and makes the result exactly
/// `floor((value − min) / span · 2³⁰)`, the same answer as textbook geohash bisection, and
/// consistent with [`Cell::bbox`] to the last bit.
fn axis_index(value: f64, min: f64, span: f64) -> u32 {
    let step = span / f64::from(AXIS_CELLS);
    let edge = |i: u32| min + f64::from(i) * step;
    // `as` saturates (NaN → 0), and the clamp keeps the guess a valid index.
    let guess = ((value - min) / step) as i64;
    let mut index = guess.clamp(0, i64::from(AXIS_CELLS - 1)) as u32;
    if value < edge(index) {
        index = index.saturating_sub(1);
    } else if index < AXIS_CELLS - 1 && value >= edge(index + 1) {
        index += 1;
    }
    index
}

/// The grid of all cells of one precision, addressed by `(row, column)`: row 0 is the
/// southernmost, column 0 starts at 180° W. Neighbour walks and searches move in this index
/// space, where "one cell east" is `+1` and wrapping is a modulo, instead of in degrees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    precision: u8,
    lat_bits: u32,
    lon_bits: u32,
}

impl Grid {
    /// The grid of a precision that the caller has checked is in 1..=12.
    pub(crate) const fn new(precision: u8) -> Self {
        let (lat_bits, lon_bits) = axis_bits(precision);
        Self {
            precision,
            lat_bits,
            lon_bits,
        }
    }

    pub(crate) const fn rows(self) -> u32 {
        1 << self.lat_bits
    }

    pub(crate) const fn columns(self) -> u32 {
        1 << self.lon_bits
    }

    /// The cell at a position; `row < rows()` and `column < columns()`.
    pub(crate) fn cell(self, row: u32, column: u32) -> Cell {
        Cell::from_axis30(
            row << (AXIS_BITS - self.lat_bits),
            column << (AXIS_BITS - self.lon_bits),
            self.precision,
        )
    }

    /// `column + steps`, wrapped around the globe; `|steps| < columns()`.
    pub(crate) fn wrap_column(self, column: u32, steps: i32) -> u32 {
        // Adding a whole turn keeps the sum non-negative; it is below 2³², so fits a u32.
        (column + self.columns().wrapping_add_signed(steps)) % self.columns()
    }

    /// Row holding a latitude the caller has checked is in `[-90, 90]`.
    pub(crate) fn row_of(self, lat: f64) -> u32 {
        axis_index(lat, -90.0, 180.0) >> (AXIS_BITS - self.lat_bits)
    }

    /// Column holding a longitude the caller has checked is in `[-180, 180]`.
    pub(crate) fn column_of(self, lon: f64) -> u32 {
        axis_index(lon, -180.0, 360.0) >> (AXIS_BITS - self.lon_bits)
    }

    /// Extent of the cell at a position (exact: edges are dyadic fractions of the globe).
    pub(crate) fn bbox(self, row: u32, column: u32) -> BoundingBox {
        let height = 180.0 / f64::from(self.rows());
        let width = 360.0 / f64::from(self.columns());
        let min_lat = -90.0 + f64::from(row) * height;
        let min_lon = -180.0 + f64::from(column) * width;
        BoundingBox {
            min_lat,
            max_lat: min_lat + height,
            min_lon,
            max_lon: min_lon + width,
        }
    }
}

impl Cell {
    /// The cell of the given precision (1..=12 characters) containing a point.
    ///
    /// Pure integer interleaving after two exact index computations: no strings, no
    /// bisection loop, ~20–30 ns.
    ///
    /// # Errors
    /// [`GeoError::InvalidPrecision`] outside 1..=12, [`GeoError::NonFiniteCoordinate`] for
    /// NaN/infinite input, [`GeoError::LatitudeOutOfRange`] / [`GeoError::LongitudeOutOfRange`]
    /// outside `[-90, 90]` / `[-180, 180]`. Never panics.
    pub fn from_lat_lon(lat: f64, lon: f64, precision: u8) -> Result<Self, GeoError> {
        check_precision(precision)?;
        LatLon::new(lat, lon)?;
        let lat30 = axis_index(lat, -90.0, 180.0);
        let lon30 = axis_index(lon, -180.0, 360.0);
        Ok(Self::from_axis30(lat30, lon30, precision))
    }

    /// Packs 30-bit axis indices, keeping only the bits of `precision`.
    fn from_axis30(lat30: u32, lon30: u32, precision: u8) -> Self {
        let interleaved = spread(lat30) | (spread(lon30) << 1);
        Self(((interleaved << PRECISION_BITS) & geohash_mask(precision)) | u64::from(precision))
    }

    /// `(row, column)` of the cell in its precision's [`Grid`].
    pub(crate) fn position(self) -> (u32, u32) {
        let interleaved = self.0 >> PRECISION_BITS;
        let (lat_bits, lon_bits) = axis_bits(self.precision());
        (
            squash(interleaved) >> (AXIS_BITS - lat_bits),
            squash(interleaved >> 1) >> (AXIS_BITS - lon_bits),
        )
    }

    /// Parses geohash text (`0-9`, `b-z` minus `i`, `l`, `o`; either case).
    ///
    /// # Errors
    /// [`GeoError::InvalidGeohashLength`] for empty text or more than 12 characters,
    /// [`GeoError::InvalidGeohashChar`] for a character outside the alphabet.
    pub fn parse(text: &str) -> Result<Self, GeoError> {
        let mut bits = 0u64;
        let mut precision = 0u8;
        for (index, ch) in text.chars().enumerate() {
            if precision == MAX_PRECISION {
                return Err(GeoError::InvalidGeohashLength(text.chars().count()));
            }
            let value = u8::try_from(ch)
                .map(|byte| DECODE[usize::from(byte)])
                .ok()
                .filter(|&value| value != NOT_IN_ALPHABET)
                .ok_or(GeoError::InvalidGeohashChar { ch, index })?;
            bits = (bits << BITS_PER_CHAR) | u64::from(value);
            precision += 1;
        }
        if precision == 0 {
            return Err(GeoError::InvalidGeohashLength(0));
        }
        let shift = u64::BITS - u32::from(precision) * BITS_PER_CHAR;
        Ok(Self((bits << shift) | u64::from(precision)))
    }

    /// The packed form, e.g. for a compact binary key or a state-store column.
    #[must_use]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// Unpacks [`to_bits`](Self::to_bits) output, rejecting anything it could not produce so
    /// that a corrupt key cannot become a cell with impossible bits.
    ///
    /// # Errors
    /// [`GeoError::InvalidCellBits`] if the precision is not 1..=12 or bits below the
    /// precision are set.
    pub fn from_bits(bits: u64) -> Result<Self, GeoError> {
        let precision = (bits & PRECISION_MASK) as u8;
        let valid = (1..=MAX_PRECISION).contains(&precision)
            && bits & !(geohash_mask(precision) | PRECISION_MASK) == 0;
        if valid {
            Ok(Self(bits))
        } else {
            Err(GeoError::InvalidCellBits(bits))
        }
    }

    /// Geohash length in characters, 1..=12.
    #[must_use]
    pub const fn precision(self) -> u8 {
        (self.0 & PRECISION_MASK) as u8
    }

    /// The enclosing cell at a coarser (or the same) precision: its geohash is a prefix of
    /// this one, and computing it is one mask.
    ///
    /// `None` if `precision` is 0 or finer than this cell's.
    #[must_use]
    pub const fn parent(self, precision: u8) -> Option<Self> {
        if precision == 0 || precision > self.precision() {
            None
        } else {
            Some(Self((self.0 & geohash_mask(precision)) | precision as u64))
        }
    }

    /// The cell's extent in degrees (exact: edges are dyadic fractions of the globe).
    #[must_use]
    pub fn bbox(self) -> BoundingBox {
        let (row, column) = self.position();
        Grid::new(self.precision()).bbox(row, column)
    }

    /// Centre of the cell's bounding box.
    #[must_use]
    pub fn center(self) -> LatLon {
        self.bbox().center()
    }

    /// Whether [`from_lat_lon`](Self::from_lat_lon) at this cell's precision would return
    /// this cell: edges are half-open (see the type docs), so every valid point is in exactly
    /// one cell per precision. Invalid coordinates are in no cell.
    #[must_use]
    pub fn contains(self, lat: f64, lon: f64) -> bool {
        let b = self.bbox();
        // Written so that NaN and out-of-range values compare false.
        let in_lat = lat >= b.min_lat && (lat < b.max_lat || (lat == 90.0 && b.max_lat == 90.0));
        let in_lon = lon >= b.min_lon && (lon < b.max_lon || (lon == 180.0 && b.max_lon == 180.0));
        in_lat && in_lon
    }

    /// The adjacent cell of the same precision in a direction.
    ///
    /// East and west wrap across the antimeridian. `None` north of the top row or south of
    /// the bottom row: the cells there touch the pole, and what lies "beyond" them is on the
    /// other side of the globe, not adjacent in any useful sense.
    #[must_use]
    pub fn neighbour(self, direction: Direction) -> Option<Self> {
        let grid = Grid::new(self.precision());
        let (row, column) = self.position();
        let (d_row, d_column) = direction.offset();
        let row = row.checked_add_signed(d_row).filter(|&r| r < grid.rows())?;
        Some(grid.cell(row, grid.wrap_column(column, d_column)))
    }

    /// The up to 8 adjacent cells, in [`Direction::ALL`] order, skipping those beyond a pole
    /// (so 5 for a cell in the top or bottom row). Never contains duplicates: even at
    /// precision 1 the grid is 8 columns wide.
    #[must_use]
    pub fn neighbours(self) -> Neighbours {
        Neighbours {
            cell: self,
            next: 0,
        }
    }

    /// Every cell at most `k` steps away (Chebyshev distance in the grid): the
    /// `(2k+1) × (2k+1)` square centred here, including this cell, clipped at the poles and
    /// wrapped (without repeats) around the antimeridian. Row-major from south-west.
    ///
    /// This is the neighbourhood used for smoothing; note it is a grid disk, not a metric
    /// one (cells are narrower towards the poles) — use
    /// [`cells_within`](super::cells_within) for a radius in metres.
    #[must_use]
    pub fn disk(self, k: u32) -> Disk {
        Disk::around(self, k)
    }
}

impl fmt::Display for Cell {
    /// The geohash text, lowercase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for char_index in 0..u32::from(self.precision()) {
            let shift = u64::BITS - BITS_PER_CHAR * (char_index + 1);
            let value = (self.0 >> shift) & 0x1f;
            f.write_char(char::from(ALPHABET[value as usize]))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cell({self})")
    }
}

impl FromStr for Cell {
    type Err = GeoError;

    fn from_str(text: &str) -> Result<Self, GeoError> {
        Self::parse(text)
    }
}

/// The eight compass directions to a cell's neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// North.
    N,
    /// North-east.
    NE,
    /// East.
    E,
    /// South-east.
    SE,
    /// South.
    S,
    /// South-west.
    SW,
    /// West.
    W,
    /// North-west.
    NW,
}

impl Direction {
    /// All directions, clockwise from north.
    pub const ALL: [Self; 8] = [
        Self::N,
        Self::NE,
        Self::E,
        Self::SE,
        Self::S,
        Self::SW,
        Self::W,
        Self::NW,
    ];

    /// `(rows north, columns east)` of one step.
    const fn offset(self) -> (i32, i32) {
        match self {
            Self::N => (1, 0),
            Self::NE => (1, 1),
            Self::E => (0, 1),
            Self::SE => (-1, 1),
            Self::S => (-1, 0),
            Self::SW => (-1, -1),
            Self::W => (0, -1),
            Self::NW => (1, -1),
        }
    }
}

/// Iterator over a cell's neighbours; see [`Cell::neighbours`].
#[derive(Debug, Clone)]
pub struct Neighbours {
    cell: Cell,
    next: usize,
}

impl Iterator for Neighbours {
    type Item = Cell;

    fn next(&mut self) -> Option<Cell> {
        while let Some(&direction) = Direction::ALL.get(self.next) {
            self.next += 1;
            if let Some(cell) = self.cell.neighbour(direction) {
                return Some(cell);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(Direction::ALL.len().saturating_sub(self.next)))
    }
}

impl FusedIterator for Neighbours {}

/// Iterator over a grid square of cells; see [`Cell::disk`].
///
/// A band of rows clipped at the poles, times a run of columns that wraps at the
/// antimeridian and is the whole circle (each column once) when the square would go all the
/// way round.
#[derive(Debug, Clone)]
pub struct Disk {
    grid: Grid,
    /// Next row to emit, and the last row (inclusive).
    row: u32,
    last_row: u32,
    /// First column of every row, and the number of columns per row.
    first_column: u32,
    row_len: u32,
    /// Offset into the current row of the next column to emit.
    offset: u32,
    done: bool,
}

impl Disk {
    fn around(centre: Cell, k: u32) -> Self {
        let grid = Grid::new(centre.precision());
        let (row, column) = centre.position();
        let (first_column, row_len) = if u64::from(k) * 2 + 1 >= u64::from(grid.columns()) {
            (0, grid.columns())
        } else {
            // Here 2k + 1 < columns <= 2³⁰, so k fits an i32 and the run a u32.
            let back = i32::try_from(k).map_or(0, |k| -k);
            (grid.wrap_column(column, back), 2 * k + 1)
        };
        Self {
            grid,
            row: row.saturating_sub(k),
            last_row: row.saturating_add(k).min(grid.rows() - 1),
            first_column,
            row_len,
            offset: 0,
            done: false,
        }
    }
}

impl Iterator for Disk {
    type Item = Cell;

    fn next(&mut self) -> Option<Cell> {
        if self.done {
            return None;
        }
        // first_column + offset < 2 * columns <= 2³¹: no overflow.
        let column = (self.first_column + self.offset) % self.grid.columns();
        let cell = self.grid.cell(self.row, column);
        self.offset += 1;
        if self.offset == self.row_len {
            self.offset = 0;
            if self.row == self.last_row {
                self.done = true;
            } else {
                self.row += 1;
            }
        }
        Some(cell)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let rows_after = u64::from(self.last_row - self.row);
        let remaining =
            rows_after * u64::from(self.row_len) + u64::from(self.row_len - self.offset);
        let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Disk {}
impl FusedIterator for Disk {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> Cell {
        Cell::parse(text).expect("test geohash is valid")
    }

    fn texts(cells: impl Iterator<Item = Cell>) -> Vec<String> {
        cells.map(|c| c.to_string()).collect()
    }

    #[test]
    fn cell_is_one_word() {
        assert_eq!(size_of::<Cell>(), 8);
        assert_eq!(size_of::<Option<Cell>>(), 16);
    }

    #[test]
    fn encodes_known_points() {
        let jutland = Cell::from_lat_lon(57.64911, 10.40744, 11).expect("valid");
        assert_eq!(jutland.to_string(), "u4pruydqqvj");
        assert_eq!(jutland.precision(), 11);
        // Williamsburg, Brooklyn (reference value from the `geohash` crate).
        let nyc = Cell::from_lat_lon(40.716976, -73.956528, 9).expect("valid");
        assert_eq!(nyc.to_string(), "dr5rth63x");
        assert_eq!(
            Cell::from_lat_lon(0.0, 0.0, 1).expect("valid").to_string(),
            "s"
        );
        assert_eq!(
            Cell::from_lat_lon(-90.0, -180.0, 12)
                .expect("valid")
                .to_string(),
            "000000000000"
        );
        // The 90° N / 180° E edges belong to the last row / column, not wrapped to 0.
        assert_eq!(
            Cell::from_lat_lon(90.0, 180.0, 12)
                .expect("valid")
                .to_string(),
            "zzzzzzzzzzzz"
        );
        assert_eq!(
            Cell::from_lat_lon(90.0, -180.0, 2)
                .expect("valid")
                .to_string(),
            "bp"
        );
    }

    #[test]
    fn shared_edges_go_north_and_east() {
        // 0°, 0° is the corner of four precision-1 cells: "7" (SW), "k" (SE), "e" (NW), "s" (NE).
        let c = Cell::from_lat_lon(0.0, 0.0, 1).expect("valid");
        assert_eq!(c, cell("s"));
        assert!(c.contains(0.0, 0.0));
        assert!(!cell("7").contains(0.0, 0.0));
        assert!(cell("7").contains(-1e-300, -1e-300));
    }

    #[test]
    fn rejects_invalid_coordinates_distinctly() {
        assert_eq!(
            Cell::from_lat_lon(0.0, 0.0, 0),
            Err(GeoError::InvalidPrecision(0))
        );
        assert_eq!(
            Cell::from_lat_lon(0.0, 0.0, 13),
            Err(GeoError::InvalidPrecision(13))
        );
        assert!(matches!(
            Cell::from_lat_lon(f64::NAN, 0.0, 5),
            Err(GeoError::NonFiniteCoordinate { .. })
        ));
        assert!(matches!(
            Cell::from_lat_lon(0.0, f64::NEG_INFINITY, 5),
            Err(GeoError::NonFiniteCoordinate { .. })
        ));
        assert_eq!(
            Cell::from_lat_lon(90.000_001, 0.0, 5),
            Err(GeoError::LatitudeOutOfRange(90.000_001))
        );
        assert_eq!(
            Cell::from_lat_lon(0.0, -180.5, 5),
            Err(GeoError::LongitudeOutOfRange(-180.5))
        );
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(cell("DR5RU7"), cell("dr5ru7"));
        assert_eq!(cell("dr5ru7").to_string(), "dr5ru7");
        assert_eq!(format!("{:?}", cell("dr5ru7")), "Cell(dr5ru7)");
        assert_eq!("u4pruydqqvj".parse::<Cell>(), Ok(cell("u4pruydqqvj")));
        assert_eq!(Cell::parse(""), Err(GeoError::InvalidGeohashLength(0)));
        assert_eq!(
            Cell::parse("0123456789bcd"),
            Err(GeoError::InvalidGeohashLength(13))
        );
        assert_eq!(
            Cell::parse("dr5a"),
            Err(GeoError::InvalidGeohashChar { ch: 'a', index: 3 })
        );
        assert_eq!(
            Cell::parse("dé"),
            Err(GeoError::InvalidGeohashChar { ch: 'é', index: 1 })
        );
        // Same bits, different precision: different cells.
        assert_ne!(cell("s"), cell("s0"));
    }

    #[test]
    fn bits_round_trip_and_reject_garbage() {
        let c = cell("dr5ru7");
        assert_eq!(Cell::from_bits(c.to_bits()), Ok(c));
        assert_eq!(c.to_bits() & PRECISION_MASK, 6);
        assert_eq!(Cell::from_bits(0), Err(GeoError::InvalidCellBits(0)));
        assert_eq!(Cell::from_bits(13), Err(GeoError::InvalidCellBits(13)));
        // A bit set below the precision.
        let stray = c.to_bits() | (1 << 10);
        assert_eq!(
            Cell::from_bits(stray),
            Err(GeoError::InvalidCellBits(stray))
        );
    }

    #[test]
    fn parent_is_a_prefix_and_sorts_first() {
        let c = cell("u4pruydqqvj");
        assert_eq!(c.parent(4), Some(cell("u4pr")));
        assert_eq!(c.parent(11), Some(c));
        assert_eq!(c.parent(12), None);
        assert_eq!(c.parent(0), None);
        assert!(cell("u4pr") < c);
        assert!(c < cell("u4ps"));
    }

    #[test]
    fn bbox_of_known_cell() {
        let b = cell("s").bbox();
        assert_eq!(
            (b.min_lat, b.max_lat, b.min_lon, b.max_lon),
            (0.0, 45.0, 0.0, 45.0)
        );
        let b = cell("ezs42").bbox();
        assert_eq!((b.min_lat, b.max_lat), (42.583_007_812_5, 42.626_953_125));
        assert_eq!((b.min_lon, b.max_lon), (-5.625, -5.581_054_687_5));
        let centre = cell("ezs42").center();
        assert!((centre.lat - 42.605).abs() < 0.001 && (centre.lon + 5.603).abs() < 0.001);
    }

    #[test]
    fn neighbours_of_a_reference_cell() {
        let c = cell("dr5ru7");
        let expected = [
            "dr5ruk", "dr5rus", "dr5rue", "dr5rud", "dr5ru6", "dr5ru4", "dr5ru5", "dr5ruh",
        ];
        assert_eq!(texts(c.neighbours()), expected);
        assert_eq!(c.neighbour(Direction::NE), Some(cell("dr5rus")));
    }

    #[test]
    fn neighbours_wrap_across_the_antimeridian() {
        // Just north and just south of the equator at 180°.
        let north = Cell::from_lat_lon(0.0001, 179.9999, 5).expect("valid");
        assert_eq!(north.to_string(), "xbpbp");
        let expected = [
            "xbpbr", "80002", "80000", "2pbpb", "rzzzz", "rzzzy", "xbpbn", "xbpbq",
        ];
        assert_eq!(texts(north.neighbours()), expected);
        assert_eq!(cell("80000").neighbour(Direction::W), Some(north));
    }

    #[test]
    fn no_neighbours_beyond_the_poles() {
        let top = cell("upb");
        assert_eq!(top.neighbour(Direction::N), None);
        assert_eq!(top.neighbour(Direction::NE), None);
        assert_eq!(top.neighbour(Direction::NW), None);
        assert_eq!(texts(top.neighbours()), ["upc", "up9", "up8", "gzx", "gzz"]);
        assert_eq!(cell("0").neighbours().count(), 5);
        assert_eq!(cell("0").neighbour(Direction::W), Some(cell("p")));
    }

    #[test]
    fn disk_sizes() {
        let c = cell("dr5ru7");
        assert_eq!(c.disk(0).collect::<Vec<_>>(), [c]);
        let ring1: Vec<_> = c.disk(1).collect();
        assert_eq!(ring1.len(), 9);
        let mut from_neighbours: Vec<_> = c.neighbours().chain([c]).collect();
        from_neighbours.sort();
        let mut sorted = ring1.clone();
        sorted.sort();
        assert_eq!(sorted, from_neighbours);
        assert_eq!(c.disk(3).len(), 49);
        // Precision 1 is 4 rows × 8 columns: a huge disk is the whole grid, once each.
        let mut all: Vec<_> = cell("s").disk(u32::MAX).collect();
        assert_eq!(all.len(), 32);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 32);
        // Clipped at the pole: the top row has nothing above it.
        assert_eq!(cell("upb").disk(1).count(), 6);
        // Wrapped, not clipped, at the antimeridian.
        assert_eq!(cell("xbpbp").disk(2).count(), 25);
    }

    #[test]
    fn axis_index_is_exact_on_slot_edges() {
        let step = 180.0 / f64::from(AXIS_CELLS);
        for i in [
            0u32,
            1,
            7,
            12_345_678,
            AXIS_CELLS / 2,
            AXIS_CELLS - 2,
            AXIS_CELLS - 1,
        ] {
            let edge = -90.0 + f64::from(i) * step;
            assert_eq!(axis_index(edge, -90.0, 180.0), i, "edge {i}");
            if i > 0 {
                assert_eq!(
                    axis_index(edge.next_down(), -90.0, 180.0),
                    i - 1,
                    "below edge {i}"
                );
            }
        }
        assert_eq!(axis_index(90.0, -90.0, 180.0), AXIS_CELLS - 1);
    }
}
