//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;

/// What the probes answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> ApiJson<Health> {
    ApiJson(Health { status: "ok" })
}

/// Every backend answers and the gateway is not stopping; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses((status = 200, body = Health),
        (status = 503, description = "`unavailable`: a backend does not answer, or the gateway is stopping")))]
pub async fn readyz(State(state): State<AppState>) -> Result<ApiJson<Health>, ApiError> {
    if state.stopping() {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "the gateway is shutting down"
        )));
    }
    state.queue().ping().await?;
    Ok(ApiJson(Health { status: "ready" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text exposition (docs/metrics.md)")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render().await,
    )
}
