/*
[dependencies]
surgeflow-domain = { git = "https://github.com/surgeflow/surgeflow" }
*/

use arroyo_udf_plugin::udf;
use surgeflow_domain::geo::{Cell, Direction};

/// The neighbour of a geohash `cell` one step in `direction` (`'n'`, `'ne'`, `'e'`, `'se'`,
/// `'s'`, `'sw'`, `'w'`, `'nw'`, any case), as `Cell::neighbour` computes it (wrapping
/// around the antimeridian). NULL if any argument is NULL, `cell` is not a geohash, the
/// direction is unknown, or there is no neighbour (beyond a pole).
#[udf]
fn geohash_neighbour(cell: &str, direction: &str) -> Option<String> {
    let cell: Cell = cell.parse().ok()?;
    let direction = match direction.to_ascii_lowercase().as_str() {
        "n" => Direction::N,
        "ne" => Direction::NE,
        "e" => Direction::E,
        "se" => Direction::SE,
        "s" => Direction::S,
        "sw" => Direction::SW,
        "w" => Direction::W,
        "nw" => Direction::NW,
        _ => return None,
    };
    cell.neighbour(direction)
        .map(|neighbour| neighbour.to_string())
}
