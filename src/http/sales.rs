//! Seats, holds, points and payments.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, IntoResponseParts, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Access, ApiJson, CurrentUser, ShowPath};
use super::limits::Class;
use super::AppState;
use crate::auth::Fan;
use crate::domain::{Amount, IdempotencyKey, Receipt, ReservationId, SeatId, SeatStatus, ShowId};
use crate::sales::availability::{AvailabilityView, LayoutView, SeatEntry};
use crate::sales::{CacheStatus, SaleError};

/// A seat as the seat map serves it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatView {
    pub seat_id: u64,
    pub label: String,
    pub section: String,
    pub price: u64,
    pub status: SeatStatus,
}

impl From<SeatEntry<'_>> for SeatView {
    fn from(s: SeatEntry<'_>) -> Self {
        Self {
            seat_id: s.id.0,
            label: s.label.to_owned(),
            section: s.section.to_owned(),
            price: s.price,
            status: s.status,
        }
    }
}

/// The seat list's body: every seat as a [`SeatView`], in layout order.
fn render_seat_map(seats: &mut dyn Iterator<Item = SeatEntry<'_>>) -> String {
    let seats: Vec<SeatView> = seats.map(SeatView::from).collect();
    serde_json::to_string(&seats).unwrap_or_else(|_| "[]".to_owned())
}

/// How long a client may keep the layout without asking: it does not
/// change during a sale. (Revalidated by its `ETag` after that.)
const LAYOUT_CACHE: &str = "public, max-age=86400";

fn x_cache(cache: CacheStatus) -> (header::HeaderName, HeaderValue) {
    let value = match cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
    };
    (
        header::HeaderName::from_static("x-cache"),
        HeaderValue::from_static(value),
    )
}

fn json_type() -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )]
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag)
}

/// The show's seats with their status, one object per seat (`X-Cache:
/// hit|miss`): the simple form of layout + availability. No access token
/// needed: fans browse while they wait.
#[utoipa::path(get, path = "/v1/shows/{show_id}/seats", tag = "seats", operation_id = "list_seats",
    params(("show_id" = ShowId, Path)),
    responses((status = 200, body = [SeatView], headers(("X-Cache" = String, description = "`hit`: the node's copy answered as it was; `miss`: the node read the shared state first"))),
        (status = 404, description = "`show_not_found`")))]
pub async fn seats(
    State(state): State<AppState>,
    ShowPath(show): ShowPath,
) -> Result<Response, ApiError> {
    let (json, cache) = state.sales().seat_map(show, render_seat_map).await?;
    Ok((json_type(), [x_cache(cache)], json.to_string()).into_response())
}

/// The show's layout: sections, rows and seats in the order availability
/// follows. Fixed for the sale: a strong `ETag` (`If-None-Match` answers
/// 304) and a long `Cache-Control`.
#[utoipa::path(get, path = "/v1/shows/{show_id}/layout", tag = "seats", operation_id = "get_layout",
    params(("show_id" = ShowId, Path),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of this layout: 304 if it still is")),
    responses(
        (status = 200, body = LayoutView, headers(
            ("ETag" = String, description = "A digest of the layout (strong)"),
            ("Cache-Control" = String, description = "`public, max-age=86400`"))),
        (status = 304, description = "Not modified: `If-None-Match` names the layout", headers(
            ("ETag" = String), ("Cache-Control" = String))),
        (status = 404, description = "`show_not_found`")))]
pub async fn layout(
    State(state): State<AppState>,
    ShowPath(show): ShowPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = state.sales().layout(show).await?;
    validated(&headers, &layout.etag(), LAYOUT_CACHE, (), &layout.json())
}

/// A JSON document and its validator: 304 with no body when
/// `If-None-Match` names `etag`.
fn validated(
    headers: &HeaderMap,
    etag: &str,
    cache_control: &'static str,
    parts: impl IntoResponseParts,
    json: &str,
) -> Result<Response, ApiError> {
    let caching = [
        (
            header::ETAG,
            HeaderValue::from_str(etag).map_err(|e| ApiError::Internal(e.into()))?,
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
    ];
    if not_modified(headers, etag) {
        return Ok((StatusCode::NOT_MODIFIED, caching, parts, ()).into_response());
    }
    Ok((json_type(), caching, parts, json.to_owned()).into_response())
}

/// Every seat's status, per section, at a version; `seats` messages on an
/// admitted fan's connection carry the changes after it (docs/protocol.md,
/// "Availability"). `X-Cache: hit|miss`; `ETag` names the version.
#[utoipa::path(get, path = "/v1/shows/{show_id}/availability", tag = "seats",
    operation_id = "get_availability",
    params(("show_id" = ShowId, Path),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of the availability: 304 while it is at that version")),
    responses(
        (status = 200, body = AvailabilityView, headers(
            ("ETag" = String, description = "`\"v<version>\"`"),
            ("Cache-Control" = String, description = "`no-cache`"),
            ("X-Cache" = String, description = "`hit`: the node's copy answered as it was; `miss`: the node read the shared state first"))),
        (status = 304, description = "Not modified: the availability is at the version `If-None-Match` names",
            headers(("ETag" = String), ("Cache-Control" = String), ("X-Cache" = String))),
        (status = 404, description = "`show_not_found`")))]
pub async fn availability(
    State(state): State<AppState>,
    ShowPath(show): ShowPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (json, cache, version) = state.sales().availability(show).await?;
    let etag = format!("\"v{version}\"");
    validated(&headers, &etag, "no-cache", [x_cache(cache)], &json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldSeat {
    pub seat_id: SeatId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationView {
    pub reservation_id: u64,
    pub seat_id: u64,
    pub price: u64,
    pub hold_expires_at: String,
}

/// Holds a seat (needs the bearer token and the admission's access token).
#[utoipa::path(post, path = "/v1/shows/{show_id}/reservations", tag = "reservations",
    operation_id = "hold_seat", params(("show_id" = ShowId, Path)), request_body = HoldSeat,
    responses((status = 201, body = ReservationView),
        (status = 403, description = "`access_token_required`, `invalid_access_token`, `access_token_expired`, `session_not_active`"),
        (status = 404, description = "`show_not_found`, `seat_not_found`"),
        (status = 409, description = "`seat_taken`, `hold_limit`"),
        (status = 429, description = "`rate_limited`")),
    security(("bearer" = [], "access_token" = [])))]
pub async fn reserve(
    State(state): State<AppState>,
    ShowPath(show): ShowPath,
    CurrentUser(Fan { id: user, .. }): CurrentUser,
    Access(pass): Access,
    ApiJson(body): ApiJson<HoldSeat>,
) -> Result<(StatusCode, ApiJson<ReservationView>), ApiError> {
    state.limits().identity(user, Class::Reserve)?;
    let r = state.sales().hold(user, show, &pass, body.seat_id).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ReservationView {
            reservation_id: r.id.0,
            seat_id: r.seat.0,
            price: r.price,
            hold_expires_at: r.expires_at.to_rfc3339(),
        }),
    ))
}

fn reservation_id(
    path: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<ReservationId, ApiError> {
    path.map(|Path(id)| ReservationId(id)).map_err(|_| {
        ApiError::bad_request(
            "invalid_reservation_id",
            "reservation id must be a positive integer",
        )
    })
}

/// Releases your hold on a seat.
#[utoipa::path(delete, path = "/v1/reservations/{reservation_id}", tag = "reservations",
    operation_id = "release_hold", params(("reservation_id" = ReservationId, Path)),
    responses((status = 204, description = "Released: the seat is available again"),
        (status = 404, description = "`reservation_not_found`"),
        (status = 409, description = "`reservation_not_held`: paid, released or expired already")),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    CurrentUser(Fan { id: user, .. }): CurrentUser,
    path: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = reservation_id(path)?;
    state.sales().release(user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    pub balance: u64,
}

/// Your points balance.
#[utoipa::path(get, path = "/v1/points", tag = "points", operation_id = "get_balance",
    responses((status = 200, body = Balance)), security(("bearer" = [])))]
pub async fn points(
    State(state): State<AppState>,
    CurrentUser(Fan { id: user, .. }): CurrentUser,
) -> Result<ApiJson<Balance>, ApiError> {
    let balance = state.sales().balance(user).await?;
    Ok(ApiJson(Balance { balance }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    /// Whole points per request.
    #[schema(schema_with = Amount::schema)]
    pub amount: i64,
}

/// Adds points to your balance.
#[utoipa::path(post, path = "/v1/points/charge", tag = "points", operation_id = "charge_points",
    request_body = Charge,
    responses((status = 200, body = Balance),
        (status = 422, description = "`invalid_amount`, `invalid_body`, `balance_limit`: the balance would pass 10^12 points")),
    security(("bearer" = [])))]
pub async fn charge(
    State(state): State<AppState>,
    CurrentUser(Fan { id: user, .. }): CurrentUser,
    ApiJson(body): ApiJson<Charge>,
) -> Result<ApiJson<Balance>, ApiError> {
    let amount = Amount::charge(body.amount).map_err(|e| ApiError::Unprocessable {
        code: "invalid_amount",
        message: e.to_string(),
    })?;
    let balance = state.sales().charge(user, amount).await?;
    Ok(ApiJson(Balance { balance }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    pub reservation_id: ReservationId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: u64,
    /// Always `completed`: a payment either completes or changes nothing.
    pub status: &'static str,
    pub amount: u64,
    pub balance: u64,
}

impl From<Receipt> for PaymentView {
    fn from(r: Receipt) -> Self {
        Self {
            payment_id: r.payment.0,
            status: "completed",
            amount: r.amount,
            balance: r.balance,
        }
    }
}

/// Pays for a held seat with points. Needs an `Idempotency-Key`; the same
/// key again answers the first response.
#[utoipa::path(post, path = "/v1/payments", tag = "payments", operation_id = "pay",
    request_body = Pay, params(("Idempotency-Key" = IdempotencyKey, Header)),
    responses((status = 201, body = PaymentView),
        (status = 400, description = "`idempotency_key_required`, `invalid_idempotency_key`"),
        (status = 402, description = "`insufficient_points`"),
        (status = 403, description = "`session_not_active`"),
        (status = 409, description = "`reservation_not_yours`, `hold_expired`, `already_paid`"),
        (status = 422, description = "`idempotency_key_reused`: the key of another payment")),
    security(("bearer" = [], "access_token" = [])))]
pub async fn pay(
    State(state): State<AppState>,
    CurrentUser(Fan { id: user, .. }): CurrentUser,
    access: Result<Access, ApiError>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Pay>,
) -> Result<(StatusCode, ApiJson<PaymentView>), ApiError> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_required",
                "send an Idempotency-Key header (one per payment attempt)",
            )
        })?
        .to_str()
        .ok()
        .and_then(|k| IdempotencyKey::parse(k).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 64 visible ASCII characters",
            )
        })?;
    let pass = access.ok().map(|Access(pass)| pass);
    let id = body.reservation_id;
    match state.sales().pay(user, pass, id, key).await {
        Ok((receipt, _)) => Ok((StatusCode::CREATED, ApiJson(receipt.into()))),
        Err(SaleError::NoSuchHold) => Err(ApiError::Conflict {
            code: "reservation_not_yours",
            message: "no such reservation of yours".into(),
        }),
        Err(e) => Err(e.into()),
    }
}
