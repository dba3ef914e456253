//! HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, and the correlation
//! API under `/api/v1/` (see `correlate::api`).
//!
//! `/metrics` speaks both exposition formats: OpenMetrics text when the
//! scraper asks for it in `Accept` (Prometheus does by default; exemplars
//! need it), otherwise the classic Prometheus text format 0.0.4.
//! `/healthz` answers 200 while the process serves requests; `/readyz`
//! answers 200 once the consumer has its partition assignment, and 503 with
//! every reason before that, while shutting down, while the schema registry
//! is unavailable, while no Kafka broker answers or while quarantine writes
//! fail. `/api/v1/lag` and `/api/v1/lag/{group}` serve the last
//! consumer-lag poll (see `lag/api.rs`).
//! With `http.api_token` set, every `/api/v1/*` route needs that bearer
//! token, and `/metrics` needs `http.metrics_token` when that is set (see
//! `auth.rs`); the probes stay open.

pub mod auth;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::ingest::Health;
use crate::lag::LagShared;
use crate::metrics::Metrics;

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub lag: Arc<LagShared>,
    /// The correlator's shared state (`/api/v1/...`); `None` in tests that do not need it.
    pub correlation: Option<Arc<crate::correlate::Shared>>,
    /// Bearer tokens of the protected routes (`[http]`); default: all open.
    pub auth: auth::HttpAuth,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/lag", get(crate::lag::api::all_groups).with_state(state.lag.clone()))
        .route("/api/v1/lag/{group}", get(crate::lag::api::one_group).with_state(state.lag.clone()))
        .merge(crate::correlate::api::router());
    let metrics_route = Router::new().route("/metrics", get(metrics));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(protect(metrics_route, &state.auth.metrics_token))
        .merge(protect(api, &state.auth.api_token))
        .with_state(state)
}

/// Puts `routes` behind `token` when one is configured.
fn protect(routes: Router<AppState>, token: &Option<auth::BearerToken>) -> Router<AppState> {
    match token {
        Some(token) => routes.route_layer(axum::middleware::from_fn_with_state(token.clone(), auth::require_bearer)),
        None => routes,
    }
}

/// Binds the listener (so start-up fails early on a taken port) and returns
/// it with the address actually bound (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let mut body = String::with_capacity(64 * 1024);
    let (result, content_type) = if wants_openmetrics {
        (state.metrics.encode_openmetrics(&mut body), OPENMETRICS_CONTENT_TYPE)
    } else {
        (state.metrics.encode_prometheus(&mut body), PROMETHEUS_CONTENT_TYPE)
    };
    match result {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reasons) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", reasons.join("; "))).into_response()
        }
    }
}
