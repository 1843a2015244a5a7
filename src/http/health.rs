//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200)))]
pub async fn healthz() -> ApiJson<serde_json::Value> {
    ApiJson(json!({"status": "ok"}))
}

/// Every backend answers and the gateway is not stopping; 503 otherwise.
#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> Result<ApiJson<serde_json::Value>, ApiError> {
    if state.stopping() {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "the gateway is shutting down"
        )));
    }
    state.queue().ping().await?;
    Ok(ApiJson(json!({"status": "ready"})))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render().await,
    )
}
