//! The HTTP endpoints next to the processing thread: `/metrics` (Prometheus text format),
//! `/healthz` (liveness: the loop turned recently), `/readyz` (readiness: the producer is
//! ready and no state restore is running), plus whatever routes the operator adds (queryable
//! state). `/metrics` renders the `metrics` recorder, then the operator's gauge tables.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::telemetry::GaugeTable;
use crate::worker::Health;

/// A loop that has not turned for this long is considered stuck.
const LIVENESS_MS: i64 = 60_000;

#[derive(Clone)]
struct Shared {
    prometheus: PrometheusHandle,
    health: Arc<Health>,
    tables: Arc<[Arc<GaugeTable>]>,
}

/// Serves until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    health: Arc<Health>,
    routes: Router,
    tables: Vec<Arc<GaugeTable>>,
) {
    let shared = Shared {
        prometheus,
        health,
        tables: tables.into(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
        .merge(routes);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn metrics(State(s): State<Shared>) -> String {
    s.prometheus.run_upkeep();
    let mut text = s.prometheus.render();
    for table in s.tables.iter() {
        table.render(&mut text);
    }
    text
}

async fn healthz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    let last = s.health.last_loop_ms.load(Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    if last == 0 || now - last < LIVENESS_MS {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "processing loop stalled\n")
    }
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or restoring state\n",
        )
    }
}
