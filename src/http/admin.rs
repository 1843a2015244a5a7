//! Operator endpoints (admin bearer key).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ShowPath};
use super::shows::ShowView;
use super::AppState;
use crate::auth::AuthMode;
use crate::domain::{
    NewShow, NewShowError, Removal, SeatLayout, Section, ShowId, ShowInput, ShowPatch, ShowState,
};
use crate::queue::lifecycle::ChangeError;
use crate::queue::QueueError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShow {
    #[schema(schema_with = NewShow::title_schema)]
    pub title: String,
    /// When admission starts (RFC 3339). Joins before it are refused, or
    /// pre-queued from `prequeue_opens_at`. Absent: open at once.
    pub starts_at: Option<DateTime<Utc>>,
    /// When the pre-queue opens (before `starts_at`, else 422): joins from
    /// then on wait unranked and are put in a random order at the start.
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    /// Fans active at once.
    #[schema(schema_with = NewShow::capacity_schema)]
    pub capacity: u64,
    /// At most this many admissions in any minute, spaced evenly. Absent:
    /// capacity only.
    #[schema(schema_with = nullable::admission_rate)]
    pub admission_rate_per_minute: Option<u64>,
    /// Length of an admitted session in seconds (at most 24 h).
    #[schema(schema_with = NewShow::session_ttl_schema)]
    pub session_ttl_seconds: u64,
    /// How long a waiting fan may be unreachable before losing the spot
    /// (default 60).
    #[schema(schema_with = nullable::abandon_grace)]
    pub abandon_grace_seconds: Option<u64>,
    /// Proof of work asked of each join (ALTCHA's `maxnumber`; default 0:
    /// none). See `GET /v1/shows/{show_id}/challenge`.
    #[schema(schema_with = nullable::challenge_cost)]
    pub challenge_cost: Option<u64>,
    /// The seat layout: sections of rows × seats at a price, with unique
    /// names and at most 50,000 seats in all (else 422
    /// `invalid_seat_layout`). Without it the show is a queue with no seats
    /// to sell.
    #[schema(schema_with = SeatLayout::schema)]
    pub seats: Option<Vec<Section>>,
}

/// The schemas of fields that may also be `null` (absent, or cleared).
mod nullable {
    use utoipa::openapi::schema::Object;

    use crate::domain::schema::or_null;
    use crate::domain::{AdmissionRate, ChallengeCost, NewShow, Notice};

    pub fn title() -> Object {
        or_null(NewShow::title_schema())
    }

    pub fn capacity() -> Object {
        or_null(NewShow::capacity_schema())
    }

    pub fn session_ttl() -> Object {
        or_null(NewShow::session_ttl_schema())
    }

    pub fn abandon_grace() -> Object {
        or_null(NewShow::abandon_grace_schema())
    }

    pub fn admission_rate() -> Object {
        or_null(AdmissionRate::schema())
    }

    pub fn challenge_cost() -> Object {
        or_null(ChallengeCost::schema())
    }

    pub fn notice() -> Object {
        or_null(Notice::schema())
    }
}

/// Creates a show: open at once, or scheduled (with a pre-queue) by its
/// times.
#[utoipa::path(post, path = "/v1/admin/shows", tag = "admin", operation_id = "create_show",
    request_body = CreateShow,
    responses((status = 201, body = AdminShowView),
        (status = 422, description = "`invalid_show`, `invalid_seat_layout`, `invalid_body`")),
    security(("admin_key" = [])))]
pub async fn create_show(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateShow>,
) -> Result<(StatusCode, ApiJson<AdminShowView>), ApiError> {
    let new = NewShow::parse(ShowInput {
        title: body.title,
        starts_at: body.starts_at,
        prequeue_opens_at: body.prequeue_opens_at,
        capacity: body.capacity,
        session_ttl_seconds: body.session_ttl_seconds,
        abandon_grace_seconds: body.abandon_grace_seconds,
        challenge_cost: body.challenge_cost,
        admission_rate_per_minute: body.admission_rate_per_minute,
    })
    .map_err(invalid_show)?;
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
        ApiJson(admin_view(&state, show.id).await?),
    ))
}

fn invalid_show(e: NewShowError) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_show",
        message: e.to_string(),
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(e) => invalid_show(e),
            ChangeError::Over(state) => ApiError::conflict(
                state_code(state),
                format!("the show is {}: its sale is over", state.as_str()),
            ),
            ChangeError::Queue(e) => e.into(),
        }
    }
}

/// The error code of a show state that refuses something.
pub fn state_code(state: ShowState) -> &'static str {
    match state {
        ShowState::Scheduled => "not_open_yet",
        ShowState::SoldOut => "sold_out",
        ShowState::Closed => "show_closed",
        ShowState::Prequeue | ShowState::Open | ShowState::Paused => "show_state",
    }
}

/// A show as operators see it: the definition, the state, the notice, the
/// queue and the seats.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminShowView {
    #[serde(flatten)]
    pub show: ShowView,
    /// The notice fans are shown now (`null`: none).
    pub notice: Option<String>,
    pub counts: AdminCounts,
}

/// What a show's queue and seats hold, and what its queue has done since
/// the queue store's data began (a store that lost its data counts again).
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCounts {
    pub active: u64,
    pub waiting: u64,
    pub prequeued: u64,
    pub admitted: u64,
    pub abandoned: u64,
    pub expired: u64,
    pub completed: u64,
    pub left: u64,
    pub removed: u64,
    pub seats: SeatsView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsView {
    pub available: u64,
    pub held: u64,
    pub sold: u64,
}

async fn admin_view(state: &AppState, id: ShowId) -> Result<AdminShowView, ApiError> {
    let queue = state.queue();
    let show = queue.show(id).await?;
    let counts = queue.counts(id).await?;
    let tally = queue.tally(id).await?;
    let seats = queue.seat_counts(id).await?;
    Ok(AdminShowView {
        notice: show.notice.as_ref().map(|n| n.as_str().to_owned()),
        show: ShowView::new(show, counts),
        counts: AdminCounts {
            active: counts.active,
            waiting: counts.waiting,
            prequeued: counts.prequeued,
            admitted: tally.admitted,
            abandoned: tally.ended(Removal::Abandoned),
            expired: tally.ended(Removal::Expired),
            completed: tally.ended(Removal::Completed),
            left: tally.ended(Removal::Left),
            removed: tally.ended(Removal::Removed),
            seats: SeatsView {
                available: seats.available,
                held: seats.held,
                sold: seats.sold,
            },
        },
    })
}

/// Every show, as operators see it.
#[utoipa::path(get, path = "/v1/admin/shows", tag = "admin", operation_id = "list_admin_shows",
    responses((status = 200, body = [AdminShowView])),
    security(("admin_key" = [])))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<ApiJson<Vec<AdminShowView>>, ApiError> {
    let mut out = Vec::new();
    for show in state.queue().shows().await? {
        out.push(admin_view(&state, show.id).await?);
    }
    Ok(ApiJson(out))
}

/// One show, as operators see it.
#[utoipa::path(get, path = "/v1/admin/shows/{show_id}", tag = "admin",
    operation_id = "get_admin_show", params(("show_id" = ShowId, Path)),
    responses((status = 200, body = AdminShowView), (status = 404, description = "`show_not_found`")),
    security(("admin_key" = [])))]
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<AdminShowView>, ApiError> {
    Ok(ApiJson(admin_view(&state, id).await?))
}

/// An operator's change: any of these fields; `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchShow {
    #[schema(schema_with = nullable::title)]
    pub title: Option<String>,
    #[schema(schema_with = nullable::capacity)]
    pub capacity: Option<u64>,
    #[schema(schema_with = nullable::session_ttl)]
    pub session_ttl_seconds: Option<u64>,
    #[schema(schema_with = nullable::abandon_grace)]
    pub abandon_grace_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = nullable::admission_rate)]
    pub admission_rate_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub prequeue_opens_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub starts_at: Option<Option<DateTime<Utc>>>,
    /// A message to the show's fans, pushed at once to every connected one
    /// (`{"type":"notice","code":"operator","text"}`) and carried by join
    /// and status answers: at most 500 characters; empty or `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = nullable::notice)]
    pub notice: Option<Option<String>>,
}

/// A field that is present (`Some`), with a value or `null` (`Some(None)`);
/// absent fields are `None` through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes a show live, on every node at once: more capacity admits at
/// once, a new session length applies to sessions that start after it, the
/// times move the schedule (only before the start), a notice is pushed to
/// every connected fan. Invalid values: 422, nothing changed.
#[utoipa::path(patch, path = "/v1/admin/shows/{show_id}", tag = "admin", operation_id = "change_show",
    request_body = PatchShow, params(("show_id" = ShowId, Path)),
    responses((status = 200, body = AdminShowView), (status = 404, description = "`show_not_found`"),
        (status = 409, description = "`sold_out`, `show_closed`: the sale is over"),
        (status = 422, description = "`invalid_show` (also: the times changed after the start, or `prequeue_opens_at` not before `starts_at`), `invalid_body`")),
    security(("admin_key" = [])))]
pub async fn patch(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
    ApiJson(body): ApiJson<PatchShow>,
) -> Result<ApiJson<AdminShowView>, ApiError> {
    let patch = ShowPatch {
        title: body.title,
        capacity: body.capacity,
        session_ttl_seconds: body.session_ttl_seconds,
        abandon_grace_seconds: body.abandon_grace_seconds,
        admission_rate_per_minute: body.admission_rate_per_minute,
        prequeue_opens_at: body.prequeue_opens_at,
        starts_at: body.starts_at,
        notice: body.notice,
    };
    state.queue().change_show(id, &patch).await?;
    Ok(ApiJson(admin_view(&state, id).await?))
}

/// Pauses admission: joins still queue, nobody is admitted, waiting fans
/// are pushed `paused`.
#[utoipa::path(post, path = "/v1/admin/shows/{show_id}/pause", tag = "admin", operation_id = "pause_show",
    params(("show_id" = ShowId, Path)),
    responses((status = 200, body = AdminShowView), (status = 404, description = "`show_not_found`"),
        (status = 409, description = "`sold_out`, `show_closed`: the sale is over")),
    security(("admin_key" = [])))]
pub async fn pause(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<AdminShowView>, ApiError> {
    state.queue().set_paused(id, true).await?;
    Ok(ApiJson(admin_view(&state, id).await?))
}

/// Resumes admission, fills free slots at once and pushes fresh ranks.
#[utoipa::path(post, path = "/v1/admin/shows/{show_id}/resume", tag = "admin",
    operation_id = "resume_show", params(("show_id" = ShowId, Path)),
    responses((status = 200, body = AdminShowView), (status = 404, description = "`show_not_found`"),
        (status = 409, description = "`sold_out`, `show_closed`: the sale is over")),
    security(("admin_key" = [])))]
pub async fn resume(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<AdminShowView>, ApiError> {
    state.queue().set_paused(id, false).await?;
    Ok(ApiJson(admin_view(&state, id).await?))
}

/// Closes the sale: joins are refused and every waiting and pre-queued fan
/// is pushed `closed` (`show_closed`); active fans finish their turn.
#[utoipa::path(post, path = "/v1/admin/shows/{show_id}/close", tag = "admin", operation_id = "close_show",
    params(("show_id" = ShowId, Path)),
    responses((status = 200, body = AdminShowView), (status = 404, description = "`show_not_found`")),
    security(("admin_key" = [])))]
pub async fn close(
    _: Admin,
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<ApiJson<AdminShowView>, ApiError> {
    state.queue().end_sale(id, ShowState::Closed).await?;
    Ok(ApiJson(admin_view(&state, id).await?))
}

/// Removes one fan (by their subject: the ticketing site's `sub`, or the
/// demo username): frees their slot or spot; they are pushed `closed`
/// (`removed`).
#[utoipa::path(delete, path = "/v1/admin/shows/{show_id}/fans/{subject}", tag = "admin",
    operation_id = "remove_fan",
    params(("show_id" = ShowId, Path),
        ("subject" = String, Path, description = "The fan: the ticketing site's `sub`, or the demo username")),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "`show_not_found`, `not_in_queue`: the fan holds no spot")),
    security(("admin_key" = [])))]
pub async fn eject(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<(u64, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((id, subject))) = path else {
        return Err(ApiError::bad_request(
            "invalid_path",
            "expected /v1/admin/shows/{show_id}/fans/{subject}",
        ));
    };
    let id = ShowId(id);
    let queue = state.queue();
    queue.show(id).await?;
    let demo = state.auth().mode() == AuthMode::Demo;
    let user = queue
        .find_fan(&subject, demo)
        .await?
        .ok_or(QueueError::NotInQueue)?;
    queue.eject(id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
