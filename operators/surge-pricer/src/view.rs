//! The queryable state: each instance serves the current view of the cells it owns over HTTP,
//! next to its metrics, the way Kafka Streams serves interactive queries.
//!
//! The processing thread refreshes a partition's entries once per batch; HTTP handlers read
//! them concurrently. This is where threads truly share state, so it is a `DashMap` (sharded
//! locks, no global lock across the processing thread's writes and the readers).
//!
//! - `GET /cells/{geohash}`: one cell (any precision at or below the cell precision is
//!   answered for the cell it names), all products;
//! - `GET /cells?bbox=min_lat,min_lon,max_lat,max_lon`: every owned cell in the box.
//!
//! A cell whose region this instance does not own gets `404` with `"owned": false`, so a
//! caller (or a router in front) knows to ask another instance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use surgeflow_domain::geo::{BoundingBox, Cell, LatLon, Region};
use surgeflow_domain::surge::SurgeEngine;
use surgeflow_schema::Product;

/// One (cell, product) as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    pub cell: String,
    pub product: String,
    pub multiplier: f64,
    pub supply: u32,
    pub demand: u32,
    /// Event time of the latest input for the cell, UTC milliseconds.
    pub last_update_ms: i64,
}

#[derive(Default)]
struct Inner {
    /// Cell → reports for each product, with the partition that owns it.
    cells: DashMap<Cell, (i32, Vec<CellReport>)>,
    /// Regions owned, by partition.
    regions: DashMap<i32, BTreeSet<Region>>,
}

/// The view shared between the processing thread and the HTTP handlers.
#[derive(Clone)]
pub struct SharedView {
    inner: Arc<Inner>,
    region_precision: u8,
}

impl SharedView {
    /// An empty view.
    pub fn new(region_precision: u8) -> Self {
        SharedView {
            inner: Arc::default(),
            region_precision,
        }
    }

    /// Replaces a partition's entries with the engine's current view.
    pub fn refresh(
        &self,
        partition: i32,
        engine: &SurgeEngine<Product>,
        regions: &BTreeSet<Region>,
    ) {
        let mut fresh: BTreeMap<Cell, Vec<CellReport>> = BTreeMap::new();
        for v in engine.cell_views() {
            fresh.entry(v.cell).or_default().push(CellReport {
                cell: v.cell.to_string(),
                product: v.product.symbol().to_string(),
                multiplier: v.multiplier,
                supply: v.supply,
                demand: v.demand,
                last_update_ms: v.last_input_ms,
            });
        }
        self.inner
            .cells
            .retain(|cell, (p, _)| *p != partition || fresh.contains_key(cell));
        for (cell, reports) in fresh {
            self.inner.cells.insert(cell, (partition, reports));
        }
        self.inner.regions.insert(partition, regions.clone());
    }

    /// Drops a partition that moved to another instance.
    pub fn forget(&self, partition: i32) {
        self.inner.cells.retain(|_, (p, _)| *p != partition);
        self.inner.regions.remove(&partition);
    }

    fn owns(&self, region: Region) -> bool {
        self.inner
            .regions
            .iter()
            .any(|r| r.value().contains(&region))
    }

    /// The reports of one cell: `None` when its region is not owned here.
    pub fn cell(&self, cell: Cell) -> Option<Vec<CellReport>> {
        let region = Region::of(cell, self.region_precision).ok()?;
        if !self.owns(region) {
            return None;
        }
        Some(
            self.inner
                .cells
                .get(&cell)
                .map(|e| e.value().1.clone())
                .unwrap_or_default(),
        )
    }

    /// Every owned report whose cell centre lies in `bbox`.
    pub fn in_box(&self, bbox: &BoundingBox) -> Vec<CellReport> {
        let mut out: Vec<CellReport> = self
            .inner
            .cells
            .iter()
            .filter(|e| bbox.contains(e.key().center()))
            .flat_map(|e| e.value().1.clone())
            .collect();
        out.sort_by(|a, b| (&a.cell, &a.product).cmp(&(&b.cell, &b.product)));
        out
    }
}

#[derive(Deserialize)]
struct BoxQuery {
    bbox: String,
}

fn parse_bbox(text: &str) -> Result<BoundingBox, String> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("bad number `{p}` in bbox"))
        })
        .collect::<Result<_, _>>()?;
    let [min_lat, min_lon, max_lat, max_lon] = parts[..] else {
        return Err("bbox must be min_lat,min_lon,max_lat,max_lon".into());
    };
    for (lat, lon) in [(min_lat, min_lon), (max_lat, max_lon)] {
        LatLon::new(lat, lon).map_err(|e| format!("bbox: {e}"))?;
    }
    if min_lat > max_lat || min_lon > max_lon {
        return Err("bbox: min must not exceed max".into());
    }
    Ok(BoundingBox {
        min_lat,
        max_lat,
        min_lon,
        max_lon,
    })
}

async fn one_cell(
    State(view): State<SharedView>,
    Path(geohash): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    let Ok(cell) = Cell::parse(&geohash) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": format!("`{geohash}` is not a geohash") })),
        );
    };
    match view.cell(cell) {
        Some(reports) => (
            StatusCode::OK,
            Json(serde_json::json!({ "cell": geohash, "owned": true, "products": reports })),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "cell": geohash, "owned": false,
                "error": "this instance does not own the cell's region; ask the instance that does" })),
        ),
    }
}

async fn cells_in_box(
    State(view): State<SharedView>,
    Query(q): Query<BoxQuery>,
) -> (StatusCode, Json<serde_json::Value>) {
    match parse_bbox(&q.bbox) {
        Ok(bbox) => (
            StatusCode::OK,
            Json(serde_json::json!({ "cells": view.in_box(&bbox) })),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": e })),
        ),
    }
}

/// The HTTP routes of the view.
pub fn routes(view: SharedView) -> Router {
    Router::new()
        .route("/cells", get(cells_in_box))
        .route("/cells/{geohash}", get(one_cell))
        .with_state(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_boxes() {
        let b = parse_bbox("40.7,-74.0,40.8,-73.9").unwrap();
        assert_eq!(
            (b.min_lat, b.min_lon, b.max_lat, b.max_lon),
            (40.7, -74.0, 40.8, -73.9)
        );
        assert!(parse_bbox("40.7,-74.0,40.8").is_err());
        assert!(parse_bbox("40.9,-74.0,40.8,-73.9").is_err());
        assert!(parse_bbox("a,b,c,d").is_err());
        assert!(parse_bbox("95,0,96,1").is_err());
    }

    #[test]
    fn unowned_regions_are_not_answered() {
        let view = SharedView::new(4);
        let cell = Cell::parse("dr5ru7").unwrap();
        assert_eq!(view.cell(cell), None);
        view.inner
            .regions
            .insert(3, BTreeSet::from([Region::parse("dr5r").unwrap()]));
        assert_eq!(view.cell(cell), Some(vec![]));
        view.forget(3);
        assert_eq!(view.cell(cell), None);
    }
}
