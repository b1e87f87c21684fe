//! Property tests of `surgeflow_domain::geo` against the `geohash` crate and against
//! brute-force searches.

use std::collections::{BTreeSet, HashSet};

use geohash::{Coord, Direction as GhDirection};
use proptest::prelude::*;
use surgeflow_domain::geo::{
    BoundingBox, Cell, Direction, EARTH_RADIUS_M, GeoError, LatLon, Region, cells_within,
    halo_regions, haversine_m,
};

/// Points strictly below 90° N / 180° E: the `geohash` crate wraps those two edges to the
/// opposite side, where this crate (correctly) keeps them in the last row / column.
fn open_point() -> impl Strategy<Value = LatLon> {
    (-90.0f64..90.0, -180.0f64..180.0).prop_map(|(lat, lon)| LatLon { lat, lon })
}

/// Any valid point, with the grid's edges and shared cell edges well represented.
fn any_point() -> impl Strategy<Value = LatLon> {
    let lat = prop_oneof![
        4 => -90.0f64..=90.0,
        1 => Just(90.0),
        1 => Just(-90.0),
        1 => Just(0.0),
        // An exact edge at some precision: k · 180 / 2^n − 90.
        2 => (0u32..=30).prop_flat_map(|n| (0u64..=(1u64 << n)).prop_map(move |k| {
            k as f64 * (180.0 / (1u64 << n) as f64) - 90.0
        })),
    ];
    let lon = prop_oneof![
        4 => -180.0f64..=180.0,
        1 => Just(180.0),
        1 => Just(-180.0),
        2 => (0u32..=30).prop_flat_map(|n| (0u64..=(1u64 << n)).prop_map(move |k| {
            k as f64 * (360.0 / (1u64 << n) as f64) - 180.0
        })),
    ];
    (lat, lon).prop_map(|(lat, lon)| LatLon { lat, lon })
}

fn precision() -> impl Strategy<Value = u8> {
    1u8..=12
}

fn cell_at(point: LatLon, precision: u8) -> Cell {
    Cell::from_lat_lon(point.lat, point.lon, precision).expect("strategy yields valid input")
}

fn gh_direction(direction: Direction) -> GhDirection {
    match direction {
        Direction::N => GhDirection::N,
        Direction::NE => GhDirection::NE,
        Direction::E => GhDirection::E,
        Direction::SE => GhDirection::SE,
        Direction::S => GhDirection::S,
        Direction::SW => GhDirection::SW,
        Direction::W => GhDirection::W,
        Direction::NW => GhDirection::NW,
    }
}

/// Every cell of a precision on the globe (only sensible for precision <= 3: 32 768 cells).
fn whole_grid(precision: u8) -> Vec<Cell> {
    Cell::from_lat_lon(0.0, 0.0, precision)
        .expect("valid")
        .disk(u32::MAX)
        .collect()
}

/// The brute-force answer over `candidates`, after checking that the candidates are a wide
/// enough net: none of `outer_ring` may be within range, or the check itself is too narrow.
fn brute_force_within(
    point: LatLon,
    radius_m: f64,
    candidates: &[Cell],
    outer_ring: &[Cell],
) -> Result<BTreeSet<Cell>, TestCaseError> {
    for cell in outer_ring {
        prop_assert!(
            cell.bbox().distance_m(point) > radius_m,
            "brute-force net too narrow: {cell} is in range"
        );
    }
    Ok(candidates
        .iter()
        .copied()
        .filter(|c| c.bbox().distance_m(point) <= radius_m)
        .collect())
}

/// The cells of `disk(k)` and the ring of cells at exactly `k` steps.
fn disk_and_ring(centre: Cell, k: u32) -> (Vec<Cell>, Vec<Cell>) {
    let disk: Vec<Cell> = centre.disk(k).collect();
    let inner: HashSet<Cell> = centre.disk(k - 1).collect();
    let ring = disk
        .iter()
        .copied()
        .filter(|c| !inner.contains(c))
        .collect();
    (disk, ring)
}

/// Height of a cell of `precision` in metres.
fn cell_height_m(precision: u8) -> f64 {
    let b = Cell::from_lat_lon(0.0, 0.0, precision)
        .expect("valid")
        .bbox();
    (b.max_lat - b.min_lat).to_radians() * EARTH_RADIUS_M
}

proptest! {
    #[test]
    fn encode_agrees_with_geohash_crate(point in open_point(), precision in precision()) {
        let ours = cell_at(point, precision).to_string();
        let theirs = geohash::encode(Coord { x: point.lon, y: point.lat }, usize::from(precision))
            .expect("valid input");
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn encode_never_panics_and_validates(lat in any::<f64>(), lon in any::<f64>(), precision in any::<u8>()) {
        let result = Cell::from_lat_lon(lat, lon, precision);
        let valid = (1..=12).contains(&precision)
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
        if let Ok(cell) = result {
            prop_assert!(cell.contains(lat, lon));
        }
    }

    #[test]
    fn text_and_bits_round_trip(point in any_point(), precision in precision()) {
        let cell = cell_at(point, precision);
        let text = cell.to_string();
        prop_assert_eq!(text.len(), usize::from(precision));
        prop_assert_eq!(Cell::parse(&text), Ok(cell));
        prop_assert_eq!(text.to_uppercase().parse::<Cell>(), Ok(cell));
        prop_assert_eq!(Cell::from_bits(cell.to_bits()), Ok(cell));
        prop_assert_eq!(Region::parse(&text).map(Region::cell), Ok(cell));
    }

    #[test]
    fn parse_accepts_exactly_geohash_text(text in "[0-9a-zA-Z!é]{0,14}") {
        let alphabet = "0123456789bcdefghjkmnpqrstuvwxyz";
        let lower = text.to_lowercase();
        let valid = (1..=12).contains(&text.chars().count()) && lower.chars().all(|c| alphabet.contains(c));
        let parsed = Cell::parse(&text);
        prop_assert_eq!(parsed.is_ok(), valid, "{:?}", parsed);
        if let Ok(cell) = parsed {
            prop_assert_eq!(cell.to_string(), lower);
        }
    }

    #[test]
    fn from_bits_accepts_only_packed_cells(bits in any::<u64>()) {
        if let Ok(cell) = Cell::from_bits(bits) {
            prop_assert_eq!(Cell::parse(&cell.to_string()), Ok(cell));
        }
    }

    #[test]
    fn cell_contains_its_point_and_no_neighbour_does(point in any_point(), precision in precision()) {
        let cell = cell_at(point, precision);
        prop_assert!(cell.contains(point.lat, point.lon));
        let b = cell.bbox();
        prop_assert!(b.contains(point), "{:?} not in {:?}", point, b);
        prop_assert!(b.min_lat <= point.lat && point.lat <= b.max_lat);
        prop_assert!(b.min_lon <= point.lon && point.lon <= b.max_lon);
        for neighbour in cell.neighbours() {
            prop_assert!(!neighbour.contains(point.lat, point.lon), "{} also contains it", neighbour);
        }
        prop_assert_eq!(cell_at(cell.center(), precision), cell);
    }

    #[test]
    fn parent_is_a_prefix(point in any_point(), precision in precision(), coarser in 1u8..=12) {
        let cell = cell_at(point, precision);
        let text = cell.to_string();
        match cell.parent(coarser) {
            Some(parent) => {
                prop_assert!(coarser <= precision);
                prop_assert_eq!(parent.to_string(), &text[..usize::from(coarser)]);
                prop_assert_eq!(parent, cell_at(point, coarser));
                prop_assert!(parent <= cell);
                let region = Region::of(cell, coarser).expect("coarser region");
                prop_assert_eq!(region.cell(), parent);
                prop_assert!(region.contains(cell));
            }
            None => {
                prop_assert!(coarser > precision);
                prop_assert!(Region::of(cell, coarser).is_err());
            }
        }
    }

    #[test]
    fn neighbours_agree_with_geohash_crate(point in any_point(), precision in precision()) {
        let cell = cell_at(point, precision);
        let text = cell.to_string();
        let b = cell.bbox();
        for direction in Direction::ALL {
            let beyond_pole = match direction {
                Direction::N | Direction::NE | Direction::NW => b.max_lat == 90.0,
                Direction::S | Direction::SE | Direction::SW => b.min_lat == -90.0,
                Direction::E | Direction::W => false,
            };
            match cell.neighbour(direction) {
                // The crate wraps over the pole to the opposite row; there is no such cell.
                None => prop_assert!(beyond_pole, "{} has no {:?} neighbour", text, direction),
                Some(n) => {
                    prop_assert!(!beyond_pole);
                    let theirs = geohash::neighbor(&text, gh_direction(direction)).expect("valid");
                    prop_assert_eq!(n.to_string(), theirs, "{:?} of {}", direction, text);
                }
            }
        }
        let all: Vec<Cell> = cell.neighbours().collect();
        let distinct: HashSet<Cell> = all.iter().copied().collect();
        prop_assert_eq!(distinct.len(), all.len());
        prop_assert_eq!(all.len(), if b.max_lat == 90.0 || b.min_lat == -90.0 { 5 } else { 8 });
    }

    #[test]
    fn disk_is_k_neighbour_steps(point in any_point(), precision in 1u8..=12, k in 0u32..=3) {
        let centre = cell_at(point, precision);
        let disk: Vec<Cell> = centre.disk(k).collect();
        let as_set: HashSet<Cell> = disk.iter().copied().collect();
        prop_assert_eq!(as_set.len(), disk.len(), "duplicates in disk");
        prop_assert_eq!(centre.disk(k).len(), disk.len());
        let mut reached: HashSet<Cell> = HashSet::from([centre]);
        let mut frontier = vec![centre];
        for _ in 0..k {
            frontier = frontier.iter().flat_map(|c| c.neighbours()).filter(|n| reached.insert(*n)).collect();
        }
        prop_assert_eq!(as_set, reached);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn halo_matches_brute_force_on_whole_grid(
        point in any_point(),
        precision in 1u8..=3,
        halo_fraction in 0.0f64..3.0,
    ) {
        let halo_m = halo_fraction * cell_height_m(precision);
        let home = Region::containing(point, precision).expect("valid");
        let ours: Vec<Region> = halo_regions(point, home, halo_m).expect("valid").collect();
        let ours_set: BTreeSet<Cell> = ours.iter().map(|r| r.cell()).collect();
        prop_assert_eq!(ours_set.len(), ours.len(), "duplicates");
        let mut expected = brute_force_within(point, halo_m, &whole_grid(precision), &[])?;
        expected.remove(&home.cell());
        prop_assert_eq!(ours_set, expected);
    }

    #[test]
    fn halo_matches_brute_force_on_wide_ring(
        lat in -70.0f64..=70.0,
        lon in -180.0f64..=180.0,
        precision in 4u8..=7,
        halo_fraction in 0.0f64..2.5,
        home_step in prop::option::of(prop::sample::select(Direction::ALL.to_vec())),
    ) {
        let point = LatLon { lat, lon };
        let halo_m = halo_fraction * cell_height_m(precision);
        let containing = Region::containing(point, precision).expect("valid").cell();
        // Usually the region containing the point, sometimes one next to it.
        let home_cell = home_step.and_then(|d| containing.neighbour(d)).unwrap_or(containing);
        let home = Region::from(home_cell);
        let ours: Vec<Region> = halo_regions(point, home, halo_m).expect("valid").collect();
        let ours_set: BTreeSet<Cell> = ours.iter().map(|r| r.cell()).collect();
        prop_assert_eq!(ours_set.len(), ours.len(), "duplicates");
        // Cells are at least ~0.34 × their height wide at |lat| <= 70°, so 12 rings cover
        // 2.5 heights; the ring check in brute_force_within confirms it.
        let (net, ring) = disk_and_ring(containing, 12);
        let mut expected = brute_force_within(point, halo_m, &net, &ring)?;
        expected.remove(&home.cell());
        prop_assert_eq!(ours_set, expected);
    }

    #[test]
    fn cells_within_matches_brute_force_on_whole_grid(
        point in any_point(),
        precision in 1u8..=3,
        radius_fraction in 0.0f64..4.0,
        // Sometimes anything up to past the antipode (half the circumference is ~20 015 km).
        huge_radius in prop::option::weighted(0.2, 0.0f64..20_100_000.0),
    ) {
        let radius_m = huge_radius.unwrap_or(radius_fraction * cell_height_m(precision));
        let ours = cells_within(point, radius_m, precision).expect("valid");
        let ours_set: BTreeSet<Cell> = ours.iter().copied().collect();
        prop_assert_eq!(ours_set.len(), ours.len(), "duplicates");
        prop_assert!(ours_set.contains(&cell_at(point, precision)));
        prop_assert_eq!(ours_set, brute_force_within(point, radius_m, &whole_grid(precision), &[])?);
    }

    #[test]
    fn cells_within_matches_brute_force_nearby(
        lat in -70.0f64..=70.0,
        lon in -180.0f64..=180.0,
        precision in 4u8..=9,
        radius_fraction in 0.0f64..2.5,
    ) {
        let point = LatLon { lat, lon };
        let radius_m = radius_fraction * cell_height_m(precision);
        let ours: BTreeSet<Cell> = cells_within(point, radius_m, precision).expect("valid").into_iter().collect();
        let (net, ring) = disk_and_ring(cell_at(point, precision), 12);
        prop_assert_eq!(ours, brute_force_within(point, radius_m, &net, &ring)?);
    }
}

/// A box: either a geohash cell's or an arbitrary one (including degenerate and polar).
fn any_box() -> impl Strategy<Value = BoundingBox> {
    let cell_box =
        (any_point(), precision()).prop_map(|(p, precision)| cell_at(p, precision).bbox());
    let free_box = (
        -90.0f64..=90.0,
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        -180.0f64..=180.0,
    )
        .prop_map(|(a, b, c, d)| BoundingBox {
            min_lat: a.min(b),
            max_lat: a.max(b),
            min_lon: c.min(d),
            max_lon: c.max(d),
        });
    prop_oneof![cell_box, free_box]
}

proptest! {
    #[test]
    fn distance_is_zero_inside(b in any_box(), fy in 0.0f64..=1.0, fx in 0.0f64..=1.0) {
        let inside = LatLon {
            lat: b.min_lat + fy * (b.max_lat - b.min_lat),
            lon: b.min_lon + fx * (b.max_lon - b.min_lon),
        };
        prop_assume!(b.contains(inside));
        prop_assert_eq!(b.distance_m(inside), 0.0);
    }

    #[test]
    fn distance_is_the_minimum_over_the_box(b in any_box(), point in any_point()) {
        let d = b.distance_m(point);
        prop_assert!(d >= 0.0);
        prop_assert!(d <= haversine_m(point, b.center()) + 1e-6, "beyond the centre");
        // It is attained at a point of the box...
        let closest = b.closest_point(point);
        prop_assert!(b.contains(closest), "{:?} outside {:?}", closest, b);
        prop_assert!((haversine_m(point, closest) - d).abs() <= 1e-6);
        // ...and no point of the box is closer (dense sample, edges included). The tolerance
        // is relative because haversine rounds differently along different paths.
        let n = 24;
        for i in 0..=n {
            for j in 0..=n {
                let q = LatLon {
                    lat: b.min_lat + (b.max_lat - b.min_lat) * f64::from(i) / f64::from(n),
                    lon: b.min_lon + (b.max_lon - b.min_lon) * f64::from(j) / f64::from(n),
                };
                let dq = haversine_m(point, q);
                prop_assert!(d <= dq + 1e-6 + dq * 1e-12, "{:?} is closer: {} < {}", q, dq, d);
            }
        }
    }
}

#[test]
fn errors_are_reported_for_bad_searches() {
    let point = LatLon { lat: 1.0, lon: 2.0 };
    assert_eq!(
        cells_within(point, -1.0, 5),
        Err(GeoError::InvalidRadius(-1.0))
    );
    assert_eq!(
        cells_within(point, 1.0, 13),
        Err(GeoError::InvalidPrecision(13))
    );
    let bad = LatLon {
        lat: 1.0,
        lon: 200.0,
    };
    assert_eq!(
        cells_within(bad, 1.0, 5),
        Err(GeoError::LongitudeOutOfRange(200.0))
    );
}
