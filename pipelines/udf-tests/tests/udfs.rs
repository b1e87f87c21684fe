//! Each UDF library, called through its exported `__run` with Arrow arrays (nulls
//! included), against `surgeflow-domain` on the same inputs.

use arrow::array::{Array, ArrayData, Float64Array, Int64Array, StringArray};
use surgeflow_domain::geo::{Cell, Direction, LatLon, Region, haversine_m};
use surgeflow_domain::matching::MatcherConfig;
use surgeflow_udf_tests::Udf;

fn floats(values: &[Option<f64>]) -> ArrayData {
    Float64Array::from(values.to_vec()).into_data()
}

fn ints(values: &[Option<i64>]) -> ArrayData {
    Int64Array::from(values.to_vec()).into_data()
}

fn texts(values: &[Option<&str>]) -> ArrayData {
    StringArray::from(values.to_vec()).into_data()
}

fn run(name: &str, args: Vec<ArrayData>) -> ArrayData {
    let udf = Udf::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    udf.run(args).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn float_column(data: ArrayData) -> Vec<Option<f64>> {
    Float64Array::from(data).iter().collect()
}

fn text_column(data: ArrayData) -> Vec<Option<String>> {
    StringArray::from(data)
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

#[test]
fn geohash_cell_matches_the_domain() {
    let points = [
        (Some(40.7484), Some(-73.9857), Some(6)),
        (Some(-33.8688), Some(151.2093), Some(9)),
        (Some(0.0), Some(0.0), Some(1)),
        (None, Some(1.0), Some(6)),
        (Some(1.0), Some(1.0), None),
        (Some(95.0), Some(1.0), Some(6)),
        (Some(1.0), Some(1.0), Some(13)),
        (Some(1.0), Some(1.0), Some(-1)),
    ];
    let got = text_column(run(
        "cell",
        vec![
            floats(&points.map(|p| p.0)),
            floats(&points.map(|p| p.1)),
            ints(&points.map(|p| p.2)),
        ],
    ));
    let want: Vec<Option<String>> = points
        .iter()
        .map(|&(lat, lon, precision)| {
            let precision = u8::try_from(precision?).ok()?;
            Some(Cell::from_lat_lon(lat?, lon?, precision).ok()?.to_string())
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].as_deref(), Some("dr5ru6"));
    assert_eq!(got[3..], [None, None, None, None, None]);
}

#[test]
fn geohash_region_matches_the_domain() {
    let rows = [
        (Some("dr5ru6"), Some(4)),
        (Some("dr5ru6"), Some(6)),
        (Some("dr5ru6"), Some(7)),
        (Some("dr5ru6"), Some(0)),
        (Some("not-a-hash"), Some(2)),
        (None, Some(4)),
        (Some("dr5ru6"), None),
    ];
    let got = text_column(run(
        "region",
        vec![texts(&rows.map(|r| r.0)), ints(&rows.map(|r| r.1))],
    ));
    let want: Vec<Option<String>> = rows
        .iter()
        .map(|&(cell, precision)| {
            let cell: Cell = cell?.parse().ok()?;
            let region = Region::of(cell, u8::try_from(precision?).ok()?).ok()?;
            Some(region.to_string())
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].as_deref(), Some("dr5r"));
    assert_eq!(got[2..], [None, None, None, None, None]);
}

#[test]
fn geohash_neighbour_matches_the_domain_in_every_direction() {
    let names = ["n", "NE", "e", "se", "s", "sw", "w", "nw"];
    let cells = ["dr5ru6", "u", "zzzzzz"];
    let mut rows: Vec<(Option<&str>, Option<&str>)> = cells
        .iter()
        .flat_map(|&c| names.iter().map(move |&d| (Some(c), Some(d))))
        .collect();
    rows.extend([
        (Some("dr5ru6"), Some("up")),
        (Some("a"), Some("n")),
        (None, Some("n")),
        (Some("dr5ru6"), None),
    ]);
    let got = text_column(run(
        "neighbours",
        vec![
            texts(&rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            texts(&rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        ],
    ));
    let mut want: Vec<Option<String>> = cells
        .iter()
        .flat_map(|c| {
            let cell: Cell = c.parse().expect("valid test cell");
            Direction::ALL.map(|d| cell.neighbour(d).map(|n| n.to_string()))
        })
        .collect();
    want.extend([None, None, None, None]);
    assert_eq!(got, want);
    assert_eq!(got[0].as_deref(), Some("dr5ru7"), "north of dr5ru6");
    assert!(
        got[16..24].iter().filter(|n| n.is_none()).count() == 3,
        "no north-west, north or north-east of the north-east corner cell"
    );
}

#[test]
fn haversine_matches_the_domain() {
    let rows = [
        [Some(40.7484), Some(-73.9857), Some(40.7580), Some(-73.9855)],
        [Some(51.5), Some(-0.12), Some(48.85), Some(2.35)],
        [Some(0.0), Some(179.9), Some(0.0), Some(-179.9)],
        [Some(1.0), Some(1.0), Some(1.0), Some(1.0)],
        [None, Some(1.0), Some(1.0), Some(1.0)],
        [Some(1.0), Some(1.0), Some(1.0), None],
        [Some(91.0), Some(1.0), Some(1.0), Some(1.0)],
        [Some(f64::NAN), Some(1.0), Some(1.0), Some(1.0)],
    ];
    let got = float_column(run(
        "haversine",
        (0..4).map(|i| floats(&rows.map(|r| r[i]))).collect(),
    ));
    let want: Vec<Option<f64>> = rows
        .iter()
        .map(|r| {
            let a = LatLon::new(r[0]?, r[1]?).ok()?;
            let b = LatLon::new(r[2]?, r[3]?).ok()?;
            Some(haversine_m(a, b))
        })
        .collect();
    assert_eq!(got, want);
    let empire_to_times_square = got[0].expect("valid points");
    assert!((1_000.0..1_100.0).contains(&empire_to_times_square));
    assert_eq!(got[3], Some(0.0));
    assert_eq!(got[4..], [None, None, None, None]);
}

#[test]
fn eta_matches_the_matcher() {
    let rows = [
        [Some(1_000.0), Some(1.3), Some(8.0)],
        [Some(0.0), Some(1.0), Some(10.0)],
        [Some(2_500.0), Some(1.5), Some(5.0)],
        [None, Some(1.3), Some(8.0)],
        [Some(1_000.0), None, Some(8.0)],
        [Some(-1.0), Some(1.3), Some(8.0)],
        [Some(1_000.0), Some(0.9), Some(8.0)],
        [Some(1_000.0), Some(1.3), Some(0.0)],
    ];
    let got = float_column(run(
        "eta",
        (0..3).map(|i| floats(&rows.map(|r| r[i]))).collect(),
    ));
    let want: Vec<Option<f64>> = rows[..3]
        .iter()
        .map(|r| {
            let config = MatcherConfig {
                detour_factor: r[1]?,
                speed_mps: r[2]?,
                ..MatcherConfig::default()
            };
            Some(config.eta_s(r[0]?))
        })
        .chain([None; 5])
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0], Some(162.5), "1000 m × 1.3 / 8 m/s");
}

#[test]
fn an_empty_batch_gives_an_empty_column() {
    let got = float_column(run("haversine", (0..4).map(|_| floats(&[])).collect()));
    assert!(got.is_empty());
}
