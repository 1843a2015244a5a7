//! The one error type of the HTTP edge.
//!
//! Policy: handlers return `Result<_, ApiError>`. Each variant has a status
//! and a stable machine-readable `code`; the body is always
//! `{"error": {"code", "message"}}`. Messages say what the client can fix.
//! Backend failures become 503 (retryable, with `Retry-After`) or 500; their
//! details are logged here and never sent. Services and backends have their
//! own error enums and never build responses.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ShowState;
use crate::queue::QueueError;
use crate::sales::SaleError;
use crate::tokens::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// Over a rate limit (src/http/limits.rs): 429 with `Retry-After`, the
    /// whole seconds until the request would pass.
    #[error("too many requests; try again in {} s", retry_after_secs(*.retry_after))]
    TooManyRequests { retry_after: Duration },
    #[error("a backend is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The body of every error answer (the OpenAPI document's `ErrorBody`,
/// on every 4xx and 5xx response).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable (docs/protocol.md, "Errors").
    pub code: &'static str,
    /// What to fix, in words.
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    fn not_found_with(code: &'static str, message: String) -> Self {
        Self::NotFound { code, message }
    }

    fn forbidden(code: &'static str, message: String) -> Self {
        Self::Forbidden { code, message }
    }

    pub(crate) fn conflict(code: &'static str, message: String) -> Self {
        Self::Conflict { code, message }
    }

    fn payment_required(code: &'static str, message: String) -> Self {
        Self::PaymentRequired { code, message }
    }

    fn unprocessable(code: &'static str, message: String) -> Self {
        Self::Unprocessable { code, message }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::PaymentRequired { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Maps a token failure for the credential named `what` (`token`,
    /// `ticket`, `admin key`).
    pub fn from_token(what: &'static str, e: TokenError) -> Self {
        let (code, message) = match (what, e) {
            ("ticket", TokenError::Expired) => (
                "ticket_expired",
                "the queue ticket has expired; join again".to_owned(),
            ),
            ("ticket", TokenError::WrongShow) => (
                "ticket_wrong_show",
                "the queue ticket belongs to another show".to_owned(),
            ),
            ("ticket", _) => ("invalid_ticket", "the queue ticket is not valid".to_owned()),
            (_, TokenError::Expired) => (
                "token_expired",
                format!("the {what} has expired; sign in again"),
            ),
            (_, _) => ("invalid_token", format!("the {what} is not valid")),
        };
        Self::unauthorized(code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "backend unavailable"),
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match self {
            Self::Unavailable(_) => Some(HeaderValue::from_static("1")),
            Self::TooManyRequests { retry_after } => {
                Some(HeaderValue::from(retry_after_secs(retry_after)))
            }
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// `Retry-After` counts whole seconds: rounded up, so a client that waits
/// that long passes, and at least 1, since 0 would invite an instant retry.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::UnknownShow(id) => {
                Self::not_found("show_not_found", format!("show {id} does not exist"))
            }
            QueueError::NotInQueue => {
                Self::not_found("not_in_queue", "you are not in this show's queue")
            }
            QueueError::NotJoinable(state) => {
                let message = match state {
                    ShowState::Scheduled => {
                        "the sale has not opened yet: see starts_at (and prequeue_opens_at) in GET /v1/shows".to_owned()
                    }
                    _ => format!("the show is {}: it takes no joins", state.as_str()),
                };
                Self::conflict(super::admin::state_code(state), message)
            }
            QueueError::Store(e) => Self::Unavailable(e.into()),
            QueueError::Db(e) => e.into(),
            QueueError::Bus(e) => Self::Unavailable(e.into()),
        }
    }
}

impl From<SaleError> for ApiError {
    fn from(e: SaleError) -> Self {
        let message = e.to_string();
        let (status, code): (fn(&'static str, String) -> Self, &'static str) = match e {
            SaleError::UnknownShow(_) => (Self::not_found_with, "show_not_found"),
            SaleError::NoSuchSeat => (Self::not_found_with, "seat_not_found"),
            SaleError::NoSuchHold => (Self::not_found_with, "reservation_not_found"),
            SaleError::NotActive => (Self::forbidden, "session_not_active"),
            SaleError::SeatTaken => (Self::conflict, "seat_taken"),
            SaleError::HoldLimit { .. } => (Self::conflict, "hold_limit"),
            SaleError::NotHeld(_) => (Self::conflict, "reservation_not_held"),
            SaleError::HoldExpired => (Self::conflict, "hold_expired"),
            SaleError::AlreadyPaid => (Self::conflict, "already_paid"),
            SaleError::NotEnoughPoints { .. } => (Self::payment_required, "insufficient_points"),
            SaleError::KeyReused => (Self::unprocessable, "idempotency_key_reused"),
            SaleError::BalanceLimit(_) => (Self::unprocessable, "balance_limit"),
            SaleError::Db(e) => return e.into(),
            SaleError::Store(e) => return Self::Unavailable(e.into()),
            SaleError::Queue(e) => return e.into(),
        };
        status(code, message)
    }
}

/// A database that cannot be reached (or whose pool is exhausted) is
/// retryable, 503; a query that fails is our bug, 500.
impl From<crate::store::DbError> for ApiError {
    fn from(e: crate::store::DbError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => Self::bad_request(
                "invalid_json",
                format!("request body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => Self::Unprocessable {
                code: "invalid_body",
                message: e.body_text(),
            },
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".to_owned(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request("invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        for (wait_ms, secs) in [(0, 1), (1, 1), (999, 1), (1_000, 1), (1_001, 2), (4_200, 5)] {
            assert_eq!(
                retry_after_secs(Duration::from_millis(wait_ms)),
                secs,
                "{wait_ms} ms"
            );
        }
    }
}
