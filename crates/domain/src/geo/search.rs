//! Radius searches over the cell grid: which cells, and which regions, come within some
//! distance of a point.

use std::iter::FusedIterator;

use super::cell::Grid;
use super::{Cell, EARTH_RADIUS_M, GeoError, LatLon, MAX_PRECISION, Region};

/// Every cell of `precision` whose bounding box comes within `radius_m` metres of `point`
/// (by [`BoundingBox::distance_m`](super::BoundingBox::distance_m), which is exact), row by
/// row from south to north, each row's run from west to east. The cell containing the point
/// is always included.
///
/// Correct for any radius, across the antimeridian and over the poles. The cost is
/// O(log) distance evaluations per row scanned plus the size of the result, so a radius much
/// larger than the cells is the caller's to avoid.
///
/// # Errors
/// As [`Cell::from_lat_lon`] for the point and precision, and [`GeoError::InvalidRadius`]
/// for a negative, NaN or infinite radius.
pub fn cells_within(point: LatLon, radius_m: f64, precision: u8) -> Result<Vec<Cell>, GeoError> {
    Ok(CellsWithin::new(point, radius_m, precision)?.collect())
}

/// The regions other than `home` (at `home`'s precision) whose bounding box comes within
/// `halo_m` metres of `point`: the extra partitions an event at `point` must be copied to.
///
/// Why: the pipeline is keyed by region, but smoothing and matching near a border need
/// events from across it. Copying each event to every region within the halo distance makes
/// each partition self-sufficient for any query radius up to `halo_m`, at the cost of
/// duplicating only the events near a border. `home` need not contain `point`. Correct for
/// any `halo_m`, including halos wider than a region; allocation-free.
///
/// # Errors
/// [`GeoError::InvalidRadius`] for a negative, NaN or infinite `halo_m`, and the coordinate
/// errors of [`LatLon::new`] for an invalid point.
pub fn halo_regions(point: LatLon, home: Region, halo_m: f64) -> Result<HaloRegions, GeoError> {
    Ok(HaloRegions {
        cells: CellsWithin::new(point, halo_m, home.precision())?,
        home,
    })
}

/// Iterator returned by [`halo_regions`].
#[derive(Debug, Clone)]
pub struct HaloRegions {
    cells: CellsWithin,
    home: Region,
}

impl Iterator for HaloRegions {
    type Item = Region;

    fn next(&mut self) -> Option<Region> {
        let home = self.home.cell();
        self.cells.find(|&cell| cell != home).map(Region::from)
    }
}

impl FusedIterator for HaloRegions {}

/// Lazily enumerates the cells within a radius, row by row.
///
/// Within one row of the grid, a cell's distance to the point grows with its longitude gap
/// to the point (measured the short way round), so the cells in range form one unbroken run
/// around the point's own column, whose ends are found by bisection: a row costs O(log run)
/// distance evaluations, not one per candidate, and the halo check on every event
/// typically evaluates a handful of boxes.
#[derive(Debug, Clone)]
struct CellsWithin {
    grid: Grid,
    point: LatLon,
    radius_m: f64,
    /// Column of the point, and how far the walk may go each way: up to the cell holding the
    /// antipodal meridian eastwards, and the rest of the circle westwards, so the two halves
    /// are each monotone in distance and never overlap.
    point_column: u32,
    east_limit: u32,
    west_limit: u32,
    /// Next row to scan and the last (inclusive); `None` once every row is scanned.
    next_row: Option<u32>,
    last_row: u32,
    /// The run being emitted: row, first column, length, and how much is already out.
    run_row: u32,
    run_first: u32,
    run_len: u32,
    run_done: u32,
}

impl CellsWithin {
    fn new(point: LatLon, radius_m: f64, precision: u8) -> Result<Self, GeoError> {
        let point = point.validated()?;
        if !(1..=MAX_PRECISION).contains(&precision) {
            return Err(GeoError::InvalidPrecision(precision));
        }
        if !(radius_m.is_finite() && radius_m >= 0.0) {
            return Err(GeoError::InvalidRadius(radius_m));
        }
        let grid = Grid::new(precision);
        // A point within the radius differs in latitude by at most its angle. The margin
        // (~0.1 mm) only keeps rounding from dropping a row whose edge is exactly in reach.
        let reach_deg = (radius_m / EARTH_RADIUS_M).to_degrees() + 1e-9;
        let first_row = grid.row_of((point.lat - reach_deg).max(-90.0));
        let last_row = grid.row_of((point.lat + reach_deg).min(90.0));
        let point_column = grid.column_of(point.lon);
        let antipode = point.lon + if point.lon < 0.0 { 180.0 } else { -180.0 };
        // The grid has at least 8 columns and the antipode is 180° away: this is in 1..columns.
        let east_limit =
            (grid.column_of(antipode) + grid.columns() - point_column) % grid.columns();
        Ok(Self {
            grid,
            point,
            radius_m,
            point_column,
            east_limit,
            west_limit: grid.columns() - 1 - east_limit,
            next_row: Some(first_row),
            last_row,
            run_row: first_row,
            run_first: 0,
            run_len: 0,
            run_done: 0,
        })
    }

    fn in_range(&self, row: u32, column: u32) -> bool {
        self.grid.bbox(row, column).distance_m(self.point) <= self.radius_m
    }

    /// How many steps (0..=limit) the in-range run extends from the point's column in the
    /// direction `step` (±1). Gallops then bisects, relying on the run being unbroken: a
    /// probe or two for a short run, and O(log run) for a long one.
    fn reach(&self, row: u32, limit: u32, step: i32) -> u32 {
        // s <= limit < columns <= 2³⁰, so it fits an i32 and is a valid wrap distance.
        let in_range_at = |s: u32| {
            let offset = i32::try_from(s).map_or(0, |s| s * step);
            self.in_range(row, self.grid.wrap_column(self.point_column, offset))
        };
        let mut good = 0;
        let mut probe = 1;
        while probe <= limit && in_range_at(probe) {
            good = probe;
            probe *= 2;
        }
        // The first step known out of range, or one past the limit.
        let mut bad = probe.min(limit + 1);
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if in_range_at(mid) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        good
    }
}

impl Iterator for CellsWithin {
    type Item = Cell;

    fn next(&mut self) -> Option<Cell> {
        loop {
            if self.run_done < self.run_len {
                // run_first + run_done < 2 * columns <= 2³¹: no overflow.
                let column = (self.run_first + self.run_done) % self.grid.columns();
                self.run_done += 1;
                return Some(self.grid.cell(self.run_row, column));
            }
            let row = self.next_row?;
            self.next_row = (row < self.last_row).then_some(row + 1);
            // The point's own column is the nearest cell of the row: if it is out of reach,
            // the whole row is.
            if !self.in_range(row, self.point_column) {
                continue;
            }
            let west = self.reach(row, self.west_limit, -1);
            let east = self.reach(row, self.east_limit, 1);
            self.run_row = row;
            self.run_first = (self.point_column + self.grid.columns() - west) % self.grid.columns();
            self.run_len = west + 1 + east;
            self.run_done = 0;
        }
    }
}

impl FusedIterator for CellsWithin {}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::*;

    fn region(text: &str) -> Region {
        Region::parse(text).expect("test geohash is valid")
    }

    fn halo(point: LatLon, home: Region, halo_m: f64) -> Vec<String> {
        let mut names: Vec<_> = halo_regions(point, home, halo_m)
            .expect("valid input")
            .map(|r| r.to_string())
            .collect();
        names.sort();
        names
    }

    /// A point `inset_m` metres west of the eastern edge of a cell, at mid-height.
    fn west_of_east_edge(text: &str, inset_m: f64) -> LatLon {
        let b = region(text).bbox();
        let lat = (b.min_lat + b.max_lat) / 2.0;
        let metres_per_degree = EARTH_RADIUS_M.to_radians() * lat.to_radians().cos();
        LatLon {
            lat,
            lon: b.max_lon - inset_m / metres_per_degree,
        }
    }

    #[test]
    fn halo_near_an_edge_is_the_region_across_it() {
        // "dr5r" is ~39 km × 20 km; its eastern neighbour is "dr5x".
        let home = region("dr5r");
        let point = west_of_east_edge("dr5r", 300.0);
        assert_eq!(halo(point, home, 500.0), ["dr5x"]);
        assert!(halo(point, home, 250.0).is_empty());
        assert!(halo(point, home, 0.0).is_empty());
    }

    #[test]
    fn halo_wider_than_a_region_reaches_further_rings() {
        let home = region("dr5r");
        let point = home.bbox().center();
        let wide = halo(point, home, 60_000.0);
        // Reaches at least two regions east (two region widths is ~39 km each way from the
        // centre plus one more width), and never lists home.
        assert!(wide.len() > 8, "{wide:?}");
        assert!(!wide.contains(&"dr5r".to_owned()));
        assert!(wide.contains(&"dr5z".to_owned()), "{wide:?}");
    }

    #[test]
    fn halo_crosses_the_antimeridian_and_covers_the_pole() {
        let home = region("xbpb");
        let point = west_of_east_edge("xbpb", 100.0);
        assert_eq!(halo(point, home, 200.0), ["8000"]);
        // From close to the north pole, a halo reaching past the pole hits every column of
        // the top row (precision 2 is 32 × 32 cells of 5.625° × 11.25°) and nothing below.
        let near_pole = LatLon {
            lat: 89.99,
            lon: 0.0,
        };
        let home = Region::containing(near_pole, 2).expect("valid");
        let regions: Vec<_> = halo_regions(near_pole, home, 2_000.0)
            .expect("valid")
            .collect();
        assert_eq!(regions.len(), 31);
        assert!(regions.iter().all(|r| r.bbox().max_lat == 90.0));
    }

    #[test]
    fn halo_rejects_bad_input() {
        let home = region("dr5r");
        let point = home.bbox().center();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                halo_regions(point, home, bad),
                Err(GeoError::InvalidRadius(_))
            ));
        }
        let nowhere = LatLon {
            lat: f64::NAN,
            lon: 0.0,
        };
        assert!(matches!(
            halo_regions(nowhere, home, 10.0),
            Err(GeoError::NonFiniteCoordinate { .. })
        ));
    }

    #[test]
    fn radius_exactly_reaching_a_cell_includes_it() {
        for precision in [2, 5, 8, 11] {
            let home = Cell::from_lat_lon(51.2, 7.3, precision).expect("valid");
            let b = home.bbox();
            let point = LatLon {
                lat: b.min_lat + 0.3 * (b.max_lat - b.min_lat),
                lon: b.min_lon + 0.6 * (b.max_lon - b.min_lon),
            };
            // Straight north (a latitude-only distance, where the row bound is tight) and
            // east (where the nearest point is off the point's parallel).
            for direction in [Direction::N, Direction::E, Direction::SW] {
                let mut far = home;
                for _ in 0..3 {
                    far = far.neighbour(direction).expect("not at a pole");
                }
                let reach = far.bbox().distance_m(point);
                assert!(reach > 0.0);
                let found = cells_within(point, reach, precision).expect("valid");
                assert!(found.contains(&far), "precision {precision}: {far} missing");
                let short = cells_within(point, reach * (1.0 - 1e-9), precision).expect("valid");
                assert!(
                    !short.contains(&far),
                    "precision {precision}: {far} present"
                );
            }
        }
    }

    #[test]
    fn cells_within_small_radius() {
        let point = LatLon {
            lat: 40.716976,
            lon: -73.956528,
        };
        let own = Cell::from_lat_lon(point.lat, point.lon, 7).expect("valid");
        assert_eq!(cells_within(point, 0.0, 7), Ok(vec![own]));
        // A radius larger than a precision-7 cell (~153 m × 153 m) but smaller than two: the
        // 3 × 3 block and possibly parts of the next ring, always including the 8 neighbours.
        let near = cells_within(point, 160.0, 7).expect("valid");
        for n in own.neighbours() {
            assert!(near.contains(&n), "{n} missing from {near:?}");
        }
        assert!(near.len() <= 25);
        assert_eq!(
            cells_within(point, 1.0, 0),
            Err(GeoError::InvalidPrecision(0))
        );
    }
}
