//! The pricer's own metrics (see `docs/metrics.md`): the distribution of published multipliers,
//! and per-cell gauges of the cells surging most, for the market dashboard's map.
//!
//! **Cardinality.** A cell label is unbounded in principle (a city has tens of thousands of
//! cells at precision 6, times four products), so the per-cell gauges are exported for a
//! bounded set only: the `metrics_top_cells` (cell, product) pairs of this instance with the
//! highest multiplier (ties broken by demand, then supply, then cell), recomputed at every
//! tick. They live in a [`GaugeTable`], whose rows are replaced as a whole, so a cell that
//! leaves the set leaves `/metrics` at the next scrape instead of lingering at its last value.

use std::cmp::Ordering;
use std::sync::Arc;

use surgeflow_domain::surge::{CellView, SurgeConfig};
use surgeflow_runtime::telemetry::{GaugeRow, GaugeSpec, GaugeTable};
use surgeflow_schema::Product;

/// The published-multiplier histogram.
pub const MULTIPLIER_HISTOGRAM: &str = "surgeflow_surge_multiplier";

/// Labels of the per-cell gauges: `kind` is the product.
pub const CELL_LABELS: &[&str] = &["operator", "cell", "kind"];

/// The per-cell gauges, in the order of a [`GaugeRow`]'s values.
pub const CELL_GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "surgeflow_cell_multiplier",
        help: "Current multiplier of the cells surging most (top metrics_top_cells per instance), by geohash cell and product (kind).",
    },
    GaugeSpec {
        name: "surgeflow_cell_supply_drivers",
        help: "Available drivers at the last tick in the exported cells, by geohash cell and product (kind).",
    },
    GaugeSpec {
        name: "surgeflow_cell_demand_requests",
        help: "Requests in the demand window at the last tick in the exported cells, by geohash cell and product (kind).",
    },
];

/// Most buckets of the multiplier histogram (besides `+Inf`).
const MAX_MULTIPLIER_BUCKETS: u32 = 25;

/// Buckets of the published-multiplier histogram: from 1.0 to the cap, one per `step` (or
/// every few steps, to keep at most 25 buckets), so each published value, a whole number of
/// steps, lands exactly on a bucket bound. The bounds are computed as the multipliers are
/// (steps divided by steps per unit), so they compare equal to them.
pub fn multiplier_buckets(config: &SurgeConfig) -> Vec<f64> {
    let per_unit = (1.0 / config.step).round().max(1.0) as u32;
    let cap = ((config.cap * f64::from(per_unit)) + 1e-6)
        .floor()
        .max(f64::from(per_unit)) as u32;
    let steps = cap - per_unit;
    let stride = steps.div_ceil(MAX_MULTIPLIER_BUCKETS - 1).max(1);
    let mut bounds: Vec<u32> = (per_unit..cap).step_by(stride as usize).collect();
    bounds.push(cap);
    bounds
        .into_iter()
        .map(|s| f64::from(s) / f64::from(per_unit))
        .collect()
}

/// Orders cells as the export ranks them: highest multiplier first, then most demand, least
/// supply, and the cell and product (for a deterministic choice among equals).
fn rank(a: &CellView<Product>, b: &CellView<Product>) -> Ordering {
    b.multiplier
        .total_cmp(&a.multiplier)
        .then(b.demand.cmp(&a.demand))
        .then(a.supply.cmp(&b.supply))
        .then(a.cell.cmp(&b.cell))
        .then(a.product.symbol().cmp(b.product.symbol()))
}

/// The `n` highest ranked of `views`, best first.
pub fn top_cells(mut views: Vec<CellView<Product>>, n: usize) -> Vec<CellView<Product>> {
    if n == 0 {
        return Vec::new();
    }
    if views.len() > n {
        views.select_nth_unstable_by(n - 1, rank);
        views.truncate(n);
    }
    views.sort_unstable_by(rank);
    views
}

/// The per-cell gauges of one instance.
pub struct CellGauges {
    operator: &'static str,
    limit: usize,
    table: Arc<GaugeTable>,
}

impl CellGauges {
    /// Gauges for at most `limit` (cell, product) pairs.
    pub fn new(operator: &'static str, limit: usize) -> Self {
        CellGauges {
            operator,
            limit,
            table: GaugeTable::new(CELL_LABELS, CELL_GAUGES),
        }
    }

    /// The table the HTTP endpoint renders.
    pub fn table(&self) -> Arc<GaugeTable> {
        self.table.clone()
    }

    /// Replaces the exported cells with the top of `views`.
    pub fn export(&self, views: Vec<CellView<Product>>) {
        let rows = top_cells(views, self.limit)
            .into_iter()
            .map(|v| GaugeRow {
                labels: vec![
                    self.operator.to_string(),
                    v.cell.to_string(),
                    v.product.symbol().to_string(),
                ],
                values: vec![v.multiplier, f64::from(v.supply), f64::from(v.demand)],
            })
            .collect();
        self.table.replace(rows);
    }
}

#[cfg(test)]
mod tests {
    use surgeflow_domain::geo::Cell;

    use super::*;

    fn view(
        cell: &str,
        product: Product,
        multiplier: f64,
        supply: u32,
        demand: u32,
    ) -> CellView<Product> {
        CellView {
            cell: Cell::parse(cell).unwrap(),
            product,
            multiplier,
            supply,
            demand,
            last_input_ms: 0,
        }
    }

    #[test]
    fn buckets_follow_the_step_and_the_cap() {
        let config = SurgeConfig::default();
        assert_eq!((config.step, config.cap), (0.1, 3.0));
        let buckets = multiplier_buckets(&config);
        assert_eq!(buckets.len(), 21);
        assert_eq!(buckets[0], 1.0);
        assert_eq!(buckets[5], 1.5);
        assert_eq!(*buckets.last().unwrap(), 3.0);
        // Published multipliers are steps / steps per unit: they hit the bounds exactly.
        assert!(buckets.contains(&(f64::from(13u32) / 10.0)));
        let fine = SurgeConfig {
            step: 0.01,
            cap: 5.0,
            ..SurgeConfig::default()
        };
        let buckets = multiplier_buckets(&fine);
        assert!(buckets.len() <= 26, "{buckets:?}");
        assert_eq!((buckets[0], *buckets.last().unwrap()), (1.0, 5.0));
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        let flat = SurgeConfig {
            step: 0.5,
            cap: 1.0,
            curve: vec![(1.0, 1.0)],
            ..SurgeConfig::default()
        };
        assert_eq!(multiplier_buckets(&flat), vec![1.0]);
    }

    #[test]
    fn the_top_cells_are_the_most_surging() {
        let views = vec![
            view("dr5ru7", Product::Economy, 1.0, 3, 0),
            view("dr5ru6", Product::Economy, 2.5, 1, 9),
            view("dr5ru5", Product::Xl, 1.5, 2, 4),
            view("dr5ru4", Product::Economy, 2.5, 1, 12),
            view("dr5ru3", Product::Economy, 1.0, 0, 1),
        ];
        let top: Vec<(String, f64)> = top_cells(views.clone(), 3)
            .iter()
            .map(|v| (v.cell.to_string(), v.multiplier))
            .collect();
        assert_eq!(
            top,
            [
                ("dr5ru4".to_string(), 2.5),
                ("dr5ru6".to_string(), 2.5),
                ("dr5ru5".to_string(), 1.5)
            ]
        );
        assert_eq!(top_cells(views.clone(), 10).len(), 5);
        assert!(top_cells(views, 0).is_empty());
    }

    #[test]
    fn cells_leaving_the_top_leave_the_gauges() {
        let gauges = CellGauges::new("surge-pricer", 2);
        gauges.export(vec![
            view("dr5ru7", Product::Economy, 2.0, 1, 5),
            view("dr5ru6", Product::Comfort, 1.5, 2, 4),
            view("dr5ru5", Product::Economy, 1.0, 4, 1),
        ]);
        let cells = |g: &CellGauges| -> Vec<Vec<String>> {
            g.table().rows().into_iter().map(|r| r.labels).collect()
        };
        assert_eq!(
            cells(&gauges),
            [
                ["surge-pricer", "dr5ru7", "ECONOMY"],
                ["surge-pricer", "dr5ru6", "COMFORT"]
            ]
        );
        assert_eq!(gauges.table().rows()[0].values, [2.0, 1.0, 5.0]);
        gauges.export(vec![
            view("dr5ru7", Product::Economy, 1.0, 6, 1),
            view("dr5ru5", Product::Economy, 1.8, 1, 3),
        ]);
        assert_eq!(
            cells(&gauges),
            [
                ["surge-pricer", "dr5ru5", "ECONOMY"],
                ["surge-pricer", "dr5ru7", "ECONOMY"]
            ]
        );
        let mut text = String::new();
        gauges.table().render(&mut text);
        assert!(
            text.contains(
                "surgeflow_cell_multiplier{operator=\"surge-pricer\",cell=\"dr5ru5\",kind=\"ECONOMY\"} 1.8"
            ),
            "{text}"
        );
        assert!(!text.contains("dr5ru6"), "{text}");
        let off = CellGauges::new("surge-pricer", 0);
        off.export(vec![view("dr5ru7", Product::Economy, 2.0, 1, 5)]);
        assert!(off.table().rows().is_empty());
    }
}
