//! The demo's web page: three static files compiled into the binary (no build step, no
//! CDN, no map tiles: everything the browser needs comes from this server) and the JSON
//! document the page polls.
//!
//! - `GET /`: the page; `GET /app.js`, `GET /style.css`: its script and style;
//! - `GET /api/state`: the [`Snapshot`](super::view::Snapshot) of the view, now.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use super::view::ViewState;
use super::watch::lock;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// The page's routes over `view`.
pub fn router(view: Arc<Mutex<ViewState>>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/state", get(state))
        .with_state(view)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn state(State(view): State<Arc<Mutex<ViewState>>>) -> impl IntoResponse {
    let snapshot = lock(&view).snapshot(super::now_ms());
    ([(header::CACHE_CONTROL, "no-store")], Json(snapshot))
}

/// Serves the page on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<Mutex<ViewState>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(view))
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("surgeflow demo: the web page stopped: {e}");
    }
}
