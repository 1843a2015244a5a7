//! Operator endpoints (admin bearer key).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ShowPath};
use super::shows::ShowView;
use super::AppState;
use crate::domain::{NewShow, SeatLayout, Section, ShowId, ShowState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShow {
    pub title: String,
    pub starts_at: Option<DateTime<Utc>>,
    /// Fans active at once, 1 to 1,000,000.
    pub capacity: u64,
    /// Length of an admitted session, 1 s to 24 h.
    pub session_ttl_seconds: u64,
    /// How long a waiting fan may be unreachable before losing the spot
    /// (default 60, at most 3600).
    pub abandon_grace_seconds: Option<u64>,
    /// Proof of work asked of each join (ALTCHA's `maxnumber`, 0 to
    /// 10,000,000; default 0: none). See `GET /v1/shows/{show_id}/challenge`.
    pub challenge_cost: Option<u64>,
    /// The seat layout: sections of rows × seats at a price (at most 50,000
    /// seats). Without it the show is a queue with no seats to sell.
    pub seats: Option<Vec<Section>>,
}

/// Creates a show, open for joins.
#[utoipa::path(post, path = "/v1/admin/shows", request_body = CreateShow,
    responses((status = 201, body = ShowView), (status = 401), (status = 422)),
    security(("admin_key" = [])))]
pub async fn create_show(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateShow>,
) -> Result<(StatusCode, ApiJson<ShowView>), ApiError> {
    let new = NewShow::parse(
        &body.title,
        body.starts_at,
        body.capacity,
        body.session_ttl_seconds,
        body.abandon_grace_seconds,
        body.challenge_cost,
    )
    .map_err(|e| ApiError::Unprocessable {
        code: "invalid_show",
        message: e.to_string(),
    })?;
    let seats = match body.seats {
        Some(sections) => SeatLayout::parse(sections)
            .map_err(|e| ApiError::Unprocessable {
                code: "invalid_seat_layout",
                message: e.to_string(),
            })?
            .seats(),
        None => Vec::new(),
    };
    let show = state.queue().create_show(new, &seats).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ShowView::new(show, Default::default())),
    ))
}

async fn set_state(
    state: &AppState,
    id: ShowId,
    to: ShowState,
) -> Result<ApiJson<ShowView>, ApiError> {
    let show = state.queue().set_state(id, to).await?;
    let counts = state.queue().counts(id).await?;
    Ok(ApiJson(ShowView::new(show, counts)))
}

/// Pauses admission: joins still queue, nobody is admitted.
#[utoipa::path(post, path = "/v1/admin/shows/{show_id}/pause",
    params(("show_id" = u64, Path)), responses((status = 200, body = ShowView), (status = 401), (status = 404)),
    security(("admin_key" = [])))]
pub async fn pause(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<ShowView>, ApiError> {
    set_state(&state, id, ShowState::Paused).await
}

/// Resumes admission and fills free slots at once.
#[utoipa::path(post, path = "/v1/admin/shows/{show_id}/resume",
    params(("show_id" = u64, Path)), responses((status = 200, body = ShowView), (status = 401), (status = 404)),
    security(("admin_key" = [])))]
pub async fn resume(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<ShowView>, ApiError> {
    set_state(&state, id, ShowState::Open).await
}
