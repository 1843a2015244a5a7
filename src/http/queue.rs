//! Joining, REST status (the polling fallback) and leaving.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::challenge::SolvedChallenge;
use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, QueueCaller, ShowPath, TICKET_HEADER};
use super::limits::Class;
use super::{poll_after, AppState};
use crate::auth::Fan;
use crate::domain::{PushMessage, Show, ShowId, Timestamp};
use crate::queue::Place;
use crate::tokens::Kind;

/// A fan's place, as joins and status polls return it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaceView {
    /// `prequeued`, `waiting`, `active`, `expired` or `closed`.
    pub state: &'static str,
    /// For `prequeued`: when the line forms (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// For `waiting`: the show is paused (nobody is admitted; no ETA).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
    /// Absent until the show has an admission rate to estimate from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// For `active`: send as `X-Access-Token` to the protected paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// For `active`: RFC 3339 end of the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<String>,
    /// For `closed`: `left`, `abandoned`, `completed`, `removed`,
    /// `sold_out`, `show_closed`, `not_in_queue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `prequeued`, `waiting` and `active`: the operator's notice to the
    /// show's fans, while there is one (pushed as `notice`/`operator`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl PlaceView {
    /// The REST shape of the message a connection would be pushed now
    /// ([`crate::push::message_for`]), so polling and push never disagree.
    fn new(place: &Place, state: &AppState, show: &Show, fan: &Fan) -> Self {
        let mut view = PlaceView {
            state: "closed",
            starts_at: None,
            paused: false,
            rank: None,
            ahead: None,
            eta_seconds: None,
            access_token: None,
            active_until: None,
            reason: None,
            notice: None,
        };
        match crate::push::message_for(place, state.admission(), fan, show.id) {
            PushMessage::Rank {
                rank,
                ahead,
                eta_seconds,
                paused,
            } => {
                view.state = "waiting";
                view.rank = Some(rank);
                view.ahead = Some(ahead);
                view.eta_seconds = eta_seconds;
                view.paused = paused;
            }
            PushMessage::Prequeue { starts_at } => {
                view.state = "prequeued";
                view.starts_at = Some(starts_at);
            }
            PushMessage::Active {
                access_token,
                active_until,
            } => {
                view.state = "active";
                view.access_token = Some(access_token);
                view.active_until = Some(active_until);
            }
            PushMessage::Expired => view.state = "expired",
            PushMessage::Closed { reason } => view.reason = Some(reason),
            // Never describes a place.
            PushMessage::Expiring { .. }
            | PushMessage::Paused
            | PushMessage::Notice { .. }
            | PushMessage::Pong
            | PushMessage::Seats { .. } => {}
        }
        if matches!(view.state, "prequeued" | "waiting" | "active") {
            view.notice = show.notice.as_ref().map(|n| n.as_str().to_owned());
        }
        view
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinView {
    /// Carry it on every queue call: `X-Queue-Ticket` or `?ticket=`.
    pub ticket: String,
    #[serde(flatten)]
    pub place: PlaceView,
    /// Relative URLs, the ticket included.
    pub ws_url: String,
    pub sse_url: String,
    pub status_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    #[serde(flatten)]
    pub place: PlaceView,
    /// When to poll again.
    pub poll_after_ms: u64,
}

/// Joins a show's queue (201), or returns the spot already held (200). A
/// fan who sends their ticket along (`X-Queue-Ticket`) gets its spot back if
/// the queue store lost it, instead of a new one at the back.
#[utoipa::path(post, path = "/v1/shows/{show_id}/queue", tag = "queue", operation_id = "join_queue",
    params(("show_id" = ShowId, Path),
        ("X-Queue-Ticket" = Option<String>, Header,
            description = "The ticket of the fan's earlier join, if any: gets that spot back if the queue store lost it (ignored otherwise)"),
        ("X-Altcha" = Option<String>, Header,
            description = "A solved proof-of-work challenge (base64 JSON), for a show with a `challenge_cost`")),
    responses((status = 201, body = JoinView, description = "A new spot"),
        (status = 200, body = JoinView, description = "The spot the fan already holds"),
        (status = 403, description = "`challenge_required`, `challenge_failed`"),
        (status = 404, description = "`show_not_found`"),
        (status = 409, description = "`not_open_yet`, `sold_out`, `show_closed`"),
        (status = 429, description = "`rate_limited`")),
    security(("bearer" = [])))]
pub async fn join(
    State(state): State<AppState>,
    CurrentUser(fan): CurrentUser,
    ShowPath(id): ShowPath,
    _: SolvedChallenge,
    headers: HeaderMap,
) -> Result<(StatusCode, ApiJson<JoinView>), ApiError> {
    state.limits().identity(fan.id, Class::Join)?;
    let show = state.queue().show(id).await?;
    let spot = earlier_spot(&state, &headers, &fan, id);
    let joined = state.queue().join(&show, fan.id, spot).await?;
    let ticket = state.keys().ticket(
        &fan,
        show.id,
        joined.spot,
        Duration::from_secs(state.tokens().ticket_ttl_secs),
    );
    let base = format!("/v1/shows/{}/queue", show.id);
    let view = JoinView {
        ws_url: format!("{base}/ws?ticket={ticket}"),
        sse_url: format!("{base}/sse?ticket={ticket}"),
        status_url: format!("{base}/status?ticket={ticket}"),
        place: PlaceView::new(&joined.place, &state, &show, &fan),
        ticket,
    };
    let status = if joined.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(view)))
}

/// The spot named by a ticket sent along with a join, if it is this fan's
/// for this show and valid. Anything else is ignored: the ticket is optional
/// and the join stands on the sign-in token.
fn earlier_spot(state: &AppState, headers: &HeaderMap, fan: &Fan, show: ShowId) -> Option<u64> {
    let ticket = headers.get(TICKET_HEADER)?.to_str().ok()?.trim();
    let claims = state
        .keys()
        .verify(ticket, Kind::Ticket, Some(show), Timestamp::now())
        .ok()?;
    (claims.user == fan.id).then_some(claims.spot).flatten()
}

/// The REST fallback: the fan's place now. A poll keeps a waiting spot alive.
#[utoipa::path(get, path = "/v1/shows/{show_id}/queue/status", tag = "queue",
    operation_id = "queue_status", params(("show_id" = ShowId, Path)),
    responses((status = 200, body = StatusView), (status = 404, description = "`show_not_found`"),
        (status = 429, description = "`rate_limited`")),
    security(("ticket" = []), ("ticket_query" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: QueueCaller,
) -> Result<ApiJson<StatusView>, ApiError> {
    state.limits().identity(caller.fan.id, Class::Status)?;
    let place = state.queue().poll(&caller.show, caller.fan.id).await?;
    let rank = match place {
        Place::Waiting { rank, .. } => Some(rank),
        _ => None,
    };
    Ok(ApiJson(StatusView {
        place: PlaceView::new(&place, &state, &caller.show, &caller.fan),
        poll_after_ms: poll_after(rank, caller.show.abandon_grace).as_millis() as u64,
    }))
}

/// Leaves the queue: frees an active slot or drops the waiting spot.
#[utoipa::path(delete, path = "/v1/shows/{show_id}/queue", tag = "queue",
    operation_id = "leave_queue", params(("show_id" = ShowId, Path)),
    responses((status = 204, description = "Left"),
        (status = 404, description = "`show_not_found`, `not_in_queue`: no spot to leave")),
    security(("ticket" = []), ("ticket_query" = [])))]
pub async fn leave(
    State(state): State<AppState>,
    caller: QueueCaller,
) -> Result<StatusCode, ApiError> {
    state.queue().leave(caller.show.id, caller.fan.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
