//! Demo sign-in.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::domain::Username;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// 1 to 32 letters, digits, `_`, `-`, `.`.
    pub username: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub user_id: u64,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// Signs a fan in by name and issues a signed bearer token.
#[utoipa::path(post, path = "/v1/sessions", request_body = SignIn,
    responses((status = 201, body = SignedIn), (status = 400), (status = 422)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<(StatusCode, ApiJson<SignedIn>), ApiError> {
    let name = Username::parse(&body.username).map_err(|e| ApiError::Unprocessable {
        code: "invalid_username",
        message: e.to_string(),
    })?;
    let user = state.db().upsert_user(&name).await?;
    let ttl = Duration::from_secs(state.tokens().user_token_ttl_secs);
    Ok((
        StatusCode::CREATED,
        ApiJson(SignedIn {
            user_id: user.0,
            token: state.keys().user_token(user, ttl),
        }),
    ))
}
