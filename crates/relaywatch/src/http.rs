//! The exporter's HTTP endpoints: /metrics, /healthz (alive), /readyz (first poll done).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::exporter::Exporter;
use crate::exposition::CONTENT_TYPE;

pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(exporter)
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exporter.render())
}

async fn readyz(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    if exporter.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first poll\n",
        )
    }
}
