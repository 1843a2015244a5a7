//! Extractors that turn raw requests into checked values once, so handlers
//! see typed input: JSON and path rejections as [`ApiError`]s, the signed-in
//! fan, the admin, and a queue caller (show + ticket).

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::auth::admission::AdmissionError;
use crate::auth::{AuthError, Fan};
use crate::config::Secret;
use crate::domain::{Show, ShowId, Timestamp};
use crate::sales::AccessPass;
use crate::tokens::Kind;

/// `Json` whose rejections are [`ApiError`]s, and whose numbers are JSON's:
/// see [`whole_numbers`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(mut value) = axum::Json::<Value>::from_request(req, state).await?;
        whole_numbers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::Unprocessable {
                code: "invalid_body",
                message: format!("the body does not fit: {e}"),
            })
    }
}

/// JSON has one kind of number, and JSON Schema (so the OpenAPI document)
/// calls `1031.0` the integer 1031; serde would refuse it for an integer
/// field. So an integral number written with a fraction or an exponent is
/// made that integer before the body's type reads it; any other number is
/// left as it is (an integer field refuses `1.5`).
fn whole_numbers(value: &mut Value) {
    // 2^64 and -2^63, exactly representable.
    const ABOVE_U64: f64 = 18_446_744_073_709_551_616.0;
    const I64_MIN: f64 = -9_223_372_036_854_775_808.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                return;
            }
            if (0.0..ABOVE_U64).contains(&f) {
                *n = Number::from(f as u64);
            } else if (I64_MIN..0.0).contains(&f) {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

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

/// A signed-in fan (`Authorization: Bearer <token>`): anteroom's demo
/// user token, or in jwt mode the ticketing site's own token
/// ([`crate::auth::Authenticator`]).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Fan);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send Authorization: Bearer <token> (the sign-in token, or your ticketing \
                 site's token)",
            )
        })?;
        match state.auth().authenticate(token).await {
            Ok(fan) => Ok(Self(fan)),
            Err(AuthError::Expired) => Err(ApiError::unauthorized(
                "token_expired",
                "the token has expired; sign in again",
            )),
            Err(AuthError::Invalid(why)) => Err(ApiError::unauthorized("invalid_token", why)),
            Err(AuthError::Db(e)) => Err(e.into()),
        }
    }
}

/// An admitted fan's access token (`X-Access-Token`): an admission JWT,
/// verified (signature, issuer, audience, expiry). Whether its session is
/// still active is the sale service's check. Missing or invalid is 403: the
/// fan is known but not admitted.
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
            .admission()
            .verify(token)
            .map_err(|e| ApiError::Forbidden {
                code: match e {
                    AdmissionError::Expired => "access_token_expired",
                    AdmissionError::Invalid => "invalid_access_token",
                },
                message: e.to_string(),
            })?;
        Ok(Self(AccessPass {
            user: claims.uid,
            show: claims.show,
            session: claims.sid,
            until: Timestamp(claims.exp.saturating_mul(1000)),
        }))
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
        if matches_key(given, state.admin_key()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "invalid_admin_key",
                "the admin key is not valid",
            ))
        }
    }
}

/// Compares a presented key with a configured one in constant time (no
/// early exit that would leak how much of it matched).
fn matches_key(given: &str, expected: &Secret) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

/// An origin asking about an admission (`Authorization: Bearer <origin key>`
/// — `admission.origin_key` — or the admin key).
#[derive(Debug, Clone, Copy)]
pub struct Origin;

impl FromRequestParts<AppState> for Origin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_origin_key",
                "send Authorization: Bearer <origin key>",
            )
        })?;
        let origin = state
            .origin_key()
            .is_some_and(|key| matches_key(given, key));
        if origin || matches_key(given, state.admin_key()) {
            Ok(Origin)
        } else {
            Err(ApiError::unauthorized(
                "invalid_origin_key",
                "the origin key is not valid",
            ))
        }
    }
}

/// A fan acting on their place in a show's queue: the show from the path,
/// the fan from the queue ticket (`X-Queue-Ticket` header, or `?ticket=`
/// where a browser cannot set headers), which must be for that show and for
/// the fan's current spot (a ticket of an earlier spot is refused).
#[derive(Debug, Clone)]
pub struct QueueCaller {
    pub show: Show,
    pub fan: Fan,
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
        let (Some(subject), Some(spot)) = (claims.subject, claims.spot) else {
            return Err(ApiError::unauthorized(
                "invalid_ticket",
                "the queue ticket is not valid",
            ));
        };
        if !state.queue().spot_current(id, claims.user, spot).await? {
            return Err(ApiError::unauthorized(
                "ticket_stale",
                "this ticket is for an earlier place in the queue; use the ticket from your \
                 latest join",
            ));
        }
        Ok(Self {
            show,
            fan: Fan {
                id: claims.user,
                subject,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_numbers_are_integers() {
        let mut body = serde_json::json!({
            "a": 1031.0, "b": [2e3, 1.5, -4.0], "c": {"d": 1.8446744073709552e19}, "e": 7
        });
        whole_numbers(&mut body);
        let want = serde_json::json!({
            "a": 1031, "b": [2000, 1.5, -4], "c": {"d": 1.8446744073709552e19}, "e": 7
        });
        assert_eq!(body, want);
        assert!(body["b"][2].is_i64() && body["c"]["d"].is_f64());
        assert_eq!(body["a"].as_u64(), Some(1031));
    }

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
