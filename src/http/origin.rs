//! Which web pages may use the gateway from a browser: the `Origin` check of
//! the WebSocket and SSE endpoints ([`AllowedOrigin`]) and the CORS policy
//! of the REST API ([`cors`]), both from one list
//! (`ANTEROOM_ALLOWED_ORIGINS`) plus the gateway's own origin.
//!
//! Browsers send `Origin` on every WebSocket handshake and cross-origin
//! request and a page cannot forge it, so a page elsewhere cannot hold
//! push connections in its visitors' names. A client that sends no `Origin`
//! is not a browser page and could send any origin it liked: it is let
//! through, and the rate limits and tickets are what bound it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::AppState;
use crate::config::WebOrigin;

/// The configured origins (the gateway's own is always allowed besides).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<WebOrigin>);

impl AllowedOrigins {
    pub fn new(origins: &[WebOrigin]) -> Self {
        Self(origins.to_vec())
    }

    /// Whether a request with this `Origin` header may go on. `own` is the
    /// gateway's origin as this request reached it; `None` when it has no
    /// `Host`. A header that is no origin (`null`, from sandboxed frames and
    /// files) is foreign.
    pub fn allows(&self, origin: Option<&HeaderValue>, own: Option<&WebOrigin>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Some(origin) = origin
            .to_str()
            .ok()
            .and_then(|o| o.parse::<WebOrigin>().ok())
        else {
            return false;
        };
        own == Some(&origin) || self.0.contains(&origin)
    }
}

/// A request whose `Origin`, if any, is allowed; otherwise 403
/// `origin_not_allowed`. Put it before the extractors that do work, so a
/// foreign page is refused before its ticket is looked at or the connection
/// upgraded.
#[derive(Debug, Clone, Copy)]
pub struct AllowedOrigin;

impl FromRequestParts<AppState> for AllowedOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let origin = parts.headers.get(header::ORIGIN);
        if origin.is_none() {
            return Ok(Self);
        }
        let scheme = match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => state.proxies().scheme(peer.ip(), &parts.headers),
            None => "http",
        };
        let own = parts
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| WebOrigin::from_parts(scheme, host).ok());
        if state.origins().allows(origin, own.as_ref()) {
            Ok(Self)
        } else {
            Err(ApiError::Forbidden {
                code: "origin_not_allowed",
                message: "pages of this origin may not connect; \
                          the gateway's operator lists allowed origins in ANTEROOM_ALLOWED_ORIGINS"
                    .into(),
            })
        }
    }
}

/// CORS for the REST API: the allowed origins may call it from their pages
/// with the headers the API reads, and read `Retry-After` and the request
/// id. No credentials: fans authenticate with headers, not cookies.
pub fn cors(origins: &AllowedOrigins) -> CorsLayer {
    let list = origins
        .0
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.as_str()).ok());
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(super::extract::ACCESS_HEADER),
            HeaderName::from_static(super::extract::TICKET_HEADER),
            HeaderName::from_static("x-altcha"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        // Browsers cap this (Chromium at 2 hours); an hour saves a preflight
        // per call without keeping a changed policy out for long.
        .max_age(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> WebOrigin {
        s.parse().expect("origin")
    }

    #[test]
    fn the_list_and_the_own_origin_are_allowed_and_nothing_else() {
        let allowed = AllowedOrigins::new(&[origin("https://tickets.example.com")]);
        let own = origin("http://gateway.example.com:8080");
        let check = |header: Option<&str>| {
            let value = header.map(|h| HeaderValue::from_str(h).expect("header"));
            allowed.allows(value.as_ref(), Some(&own))
        };
        assert!(check(None), "no Origin: not a browser page");
        assert!(check(Some("https://tickets.example.com")));
        assert!(check(Some("https://tickets.example.com:443")));
        assert!(check(Some("HTTPS://Tickets.Example.com")));
        assert!(check(Some("http://gateway.example.com:8080")), "own origin");
        for foreign in [
            "https://evil.example.com",
            "http://tickets.example.com",
            "https://tickets.example.com:8443",
            "https://tickets.example.com.evil.example",
            "http://gateway.example.com",
            "null",
            "",
        ] {
            assert!(!check(Some(foreign)), "{foreign}");
        }
        assert!(!allowed.allows(
            Some(&HeaderValue::from_static("http://gateway.example.com:8080")),
            None
        ));
    }

    #[test]
    fn the_own_origin_drops_the_default_port() {
        assert_eq!(
            WebOrigin::from_parts("https", "Gateway.Example.com:443").map(|o| o.to_string()),
            Ok("https://gateway.example.com".to_owned())
        );
        assert_eq!(
            WebOrigin::from_parts("http", "[::1]:8080").map(|o| o.to_string()),
            Ok("http://[::1]:8080".to_owned())
        );
    }
}
