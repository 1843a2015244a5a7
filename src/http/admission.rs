//! What an origin uses to check an admission: the public keys that verify
//! admission tokens offline, and introspection online (RFC 7662's shape).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, Origin};
use super::AppState;

/// Every public key that verifies admission tokens (OKP/Ed25519 JWKs with
/// `kid`, `use: sig`, `alg: EdDSA`); never a private part.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "admission", operation_id = "get_jwks",
    responses((status = 200, content_type = "application/jwk-set+json",
        description = "`{\"keys\": [{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\", \"kid\", \"use\": \"sig\", \"alg\": \"EdDSA\"}]}`",
        headers(("Cache-Control" = String, description = "`public, max-age=300`")))))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            // Short enough that a rotation reaches origins within minutes.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        state.admission().jwks().to_owned(),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspect {
    /// An admission (access) token.
    pub token: String,
}

/// RFC 7662's answer: `active` alone when false.
#[derive(Debug, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// Whether an admission token's session is live now: `{"active": true, …}`
/// while it is, `{"active": false}` once it ended (paid, left, expired,
/// ejected) even before `exp`, and for any token that does not verify.
/// Authorised by the origin key or the admin key.
#[utoipa::path(post, path = "/v1/admission/introspect", tag = "admission",
    operation_id = "introspect_admission", request_body = Introspect,
    responses((status = 200, body = Introspection)),
    security(("origin_key" = []), ("admin_key" = [])))]
pub async fn introspect(
    _: Origin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Introspect>,
) -> Result<ApiJson<Introspection>, ApiError> {
    let inactive = Introspection {
        active: false,
        sub: None,
        show: None,
        sid: None,
        exp: None,
    };
    let Ok(claims) = state.admission().verify(&body.token) else {
        return Ok(ApiJson(inactive));
    };
    let live = match state
        .queue()
        .session_active(
            claims.show,
            claims.uid,
            claims.sid,
            crate::domain::Timestamp(claims.exp.saturating_mul(1000)),
        )
        .await
    {
        Ok(live) => live,
        // An unknown show cannot have a live session.
        Err(crate::queue::QueueError::UnknownShow(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if !live {
        return Ok(ApiJson(inactive));
    }
    Ok(ApiJson(Introspection {
        active: true,
        sub: Some(claims.sub),
        show: Some(claims.show.0),
        sid: Some(claims.sid.0),
        exp: Some(claims.exp),
    }))
}
