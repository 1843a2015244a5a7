//! Demo sign-in (`auth.mode = "demo"`): a name is enough, so it is for
//! trying anteroom out; in jwt mode it answers 403 `demo_sign_in_disabled`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::auth::{AuthMode, Fan};
use crate::domain::{Subject, Username};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// 1 to 32 letters, digits, `_`, `-`, `.` (white space around them is
    /// trimmed).
    #[schema(schema_with = Username::schema)]
    pub username: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub user_id: u64,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// Signs a fan in by name and issues a signed bearer token (demo mode).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", operation_id = "sign_in",
    request_body = SignIn,
    responses((status = 201, body = SignedIn),
        (status = 403, description = "`demo_sign_in_disabled`: jwt mode; use the ticketing site's token"),
        (status = 422, description = "`invalid_username`, `invalid_body`"),
        (status = 429, description = "`rate_limited`")))]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<(StatusCode, ApiJson<SignedIn>), ApiError> {
    if state.auth().mode() != AuthMode::Demo {
        return Err(ApiError::Forbidden {
            code: "demo_sign_in_disabled",
            message: "sign in at the ticketing site and send its token as Authorization: Bearer"
                .into(),
        });
    }
    let name = Username::parse(&body.username).map_err(|e| ApiError::Unprocessable {
        code: "invalid_username",
        message: e.to_string(),
    })?;
    let fan = Fan {
        id: state.db().upsert_user(&name).await?,
        subject: Subject::from(&name),
    };
    let ttl = Duration::from_secs(state.tokens().user_token_ttl_secs);
    Ok((
        StatusCode::CREATED,
        ApiJson(SignedIn {
            user_id: fan.id.0,
            token: state.keys().user_token(&fan, ttl),
        }),
    ))
}
