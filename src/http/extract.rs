//! Extractors that turn raw requests into checked values once, so handlers
//! see typed input: JSON and path rejections as [`ApiError`]s, the signed-in
//! fan, the admin, and a queue caller (show + ticket).

use axum::extract::{FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::domain::{Show, ShowId, Timestamp, UserId};
use crate::sales::AccessPass;
use crate::tokens::{Kind, TokenError};

/// `Json` whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The show id in the path.
#[derive(Debug, Clone, Copy)]
pub struct ShowPath(pub ShowId);

impl FromRequestParts<AppState> for ShowPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("invalid_show_id", "show id must be a positive integer")
            })?;
        Ok(Self(ShowId(id)))
    }
}

/// A signed-in fan (`Authorization: Bearer <token>`).
#[derive(Debug, Clone, Copy)]
pub struct CurrentUser(pub UserId);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "sign in and send Authorization: Bearer <token>",
            )
        })?;
        let claims = state
            .keys()
            .verify(token, Kind::User, None, Timestamp::now())
            .map_err(|e| ApiError::from_token("token", e))?;
        Ok(Self(claims.user))
    }
}

/// An admitted fan's access token (`X-Access-Token`), verified: signature,
/// kind and expiry. Whether its session is still active is the sale
/// service's check. Missing or invalid is 403: the fan is known but not
/// admitted.
#[derive(Debug, Clone, Copy)]
pub struct Access(pub AccessPass);

pub const ACCESS_HEADER: &str = "x-access-token";

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(ACCESS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Forbidden {
                code: "access_token_required",
                message: "send the access token you got on admission as X-Access-Token".into(),
            })?;
        let claims = state
            .keys()
            .verify(token, Kind::Access, None, Timestamp::now())
            .map_err(|e| ApiError::Forbidden {
                code: if e == TokenError::Expired {
                    "access_token_expired"
                } else {
                    "invalid_access_token"
                },
                message: format!("the access token is not valid: {e}"),
            })?;
        match (claims.show, claims.session) {
            (Some(show), Some(session)) => Ok(Self(AccessPass {
                user: claims.user,
                show,
                session,
            })),
            _ => Err(ApiError::Forbidden {
                code: "invalid_access_token",
                message: "the access token is not valid".into(),
            }),
        }
    }
}

/// An operator (`Authorization: Bearer <admin key>`).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_admin_key",
                "send Authorization: Bearer <admin key>",
            )
        })?;
        let expected = state.admin_key().expose().as_bytes();
        if bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "invalid_admin_key",
                "the admin key is not valid",
            ))
        }
    }
}

/// A fan acting on their place in a show's queue: the show from the path,
/// the fan from the queue ticket (`X-Queue-Ticket` header, or `?ticket=`
/// where a browser cannot set headers), which must be for that show.
#[derive(Debug, Clone)]
pub struct QueueCaller {
    pub show: Show,
    pub user: UserId,
}

pub const TICKET_HEADER: &str = "x-queue-ticket";

fn ticket(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim().to_owned());
    }
    let query = parts.uri.query()?;
    url_param(query, "ticket")
}

/// One query parameter, percent-decoded. Tickets are base64url and dots, so
/// decoding only matters for clients that escape them anyway.
fn url_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromRequestParts<AppState> for QueueCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ShowPath(id) = ShowPath::from_request_parts(parts, state).await?;
        let ticket = ticket(parts).filter(|t| !t.is_empty()).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_ticket",
                "send the queue ticket from joining as X-Queue-Ticket or ?ticket=",
            )
        })?;
        let show = state.queue().show(id).await?;
        let claims = state
            .keys()
            .verify(&ticket, Kind::Ticket, Some(id), Timestamp::now())
            .map_err(|e| ApiError::from_token("ticket", e))?;
        Ok(Self {
            show,
            user: claims.user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        assert_eq!(
            url_param("a=1&ticket=ab%2Ecd", "ticket").as_deref(),
            Some("ab.cd")
        );
        assert_eq!(url_param("ticket=x%", "ticket").as_deref(), Some("x%"));
        assert_eq!(url_param("ticket=x%4", "ticket").as_deref(), Some("x%4"));
        assert_eq!(url_param("other=1", "ticket"), None);
    }
}
