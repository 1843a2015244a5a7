//! Proof of work on join at the edge: the challenge endpoint and the
//! [`SolvedChallenge`] extractor that the join handler takes. The protocol
//! and the one-use rule are [`crate::challenge`]'s.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{ApiJson, ShowPath};
use super::AppState;
use crate::challenge::{Challenge, ChallengeError};
use crate::domain::{ShowId, Timestamp};

/// The header that carries a solved challenge on join.
pub const ALTCHA_HEADER: &str = "x-altcha";

/// A join's proof of work, checked and used up: the show asks for none, or
/// `X-Altcha` holds a solution to one of its challenges that no join has
/// used. Put it after the fan's credentials in a handler's parameters, so a
/// request refused for those does not use a solution up.
#[derive(Debug, Clone, Copy)]
pub struct SolvedChallenge;

impl FromRequestParts<AppState> for SolvedChallenge {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ShowPath(id) = ShowPath::from_request_parts(parts, state).await?;
        let show = state.queue().show(id).await?;
        let header = parts
            .headers
            .get(ALTCHA_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let solution = header.as_deref().map(str::trim).filter(|v| !v.is_empty());
        state
            .challenges()
            .redeem(&show, solution, Timestamp::now())
            .await?;
        Ok(SolvedChallenge)
    }
}

/// A proof-of-work challenge for joining the show (ALTCHA). Solve it and
/// send the solution, base64 JSON, as `X-Altcha` on join.
#[utoipa::path(get, path = "/v1/shows/{show_id}/challenge", tag = "queue",
    operation_id = "get_challenge", params(("show_id" = ShowId, Path)),
    responses((status = 200, body = Challenge, headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 404, description = "`show_not_found`, or `challenge_not_required`: join without X-Altcha")))]
pub async fn challenge(
    State(state): State<AppState>,
    ShowPath(id): ShowPath,
) -> Result<Response, ApiError> {
    let show = state.queue().show(id).await?;
    let challenge = state.challenges().issue(&show, Timestamp::now())?;
    let mut res = ApiJson(challenge).into_response();
    // Each fan needs a challenge of their own: one solution admits one join.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

impl From<ChallengeError> for ApiError {
    fn from(e: ChallengeError) -> Self {
        match e {
            ChallengeError::NotRequired(_) => ApiError::NotFound {
                code: "challenge_not_required",
                message: format!("{e}; join without X-Altcha"),
            },
            ChallengeError::Required(_) => ApiError::Forbidden {
                code: "challenge_required",
                message: e.to_string(),
            },
            ChallengeError::Refused(why) => ApiError::Forbidden {
                code: "challenge_failed",
                message: format!("{why}; solve a new challenge"),
            },
            ChallengeError::Store(e) => ApiError::Unavailable(e.into()),
        }
    }
}
