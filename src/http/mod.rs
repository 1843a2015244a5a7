//! The HTTP edge: routes, handlers, extractors and the API error type.
//! Handlers convert input once (extractors, `parse` constructors), call a
//! service, and shape the response; no rule lives here.

pub mod admin;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod queue;
pub mod sales;
pub mod sessions;
pub mod shows;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use self::error::ApiError;
use crate::config::{PushSettings, Secret, TokenSettings};
use crate::queue::QueueService;
use crate::sales::SalesService;
use crate::store::Database;
use crate::tokens::Keyring;

/// Request bodies are small JSON documents; anything bigger is refused
/// before it is buffered.
const BODY_LIMIT: usize = 16 * 1024;

/// Everything a handler can reach. Cloning is one `Arc` increment.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Parts>);

/// What an [`AppState`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub queue: QueueService,
    pub sales: SalesService,
    pub db: Database,
    pub keys: Arc<Keyring>,
    pub admin_key: Secret,
    pub push: PushSettings,
    pub tokens: TokenSettings,
    pub metrics: PrometheusHandle,
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    pub fn queue(&self) -> &QueueService {
        &self.0.queue
    }

    pub fn sales(&self) -> &SalesService {
        &self.0.sales
    }

    pub fn db(&self) -> &Database {
        &self.0.db
    }

    pub fn keys(&self) -> &Keyring {
        &self.0.keys
    }

    pub fn admin_key(&self) -> &Secret {
        &self.0.admin_key
    }

    pub fn push(&self) -> &PushSettings {
        &self.0.push
    }

    pub fn tokens(&self) -> &TokenSettings {
        &self.0.tokens
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.0.metrics
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }
}

pub fn router(state: AppState, web_dir: &std::path::Path) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .route("/v1/sessions", post(sessions::sign_in))
        .route("/v1/shows", get(shows::list))
        .route(
            "/v1/shows/{show_id}/queue",
            post(queue::join).delete(queue::leave),
        )
        .route("/v1/shows/{show_id}/queue/status", get(queue::status))
        .route(
            "/v1/shows/{show_id}/queue/ws",
            get(crate::push::ws::connect),
        )
        .route(
            "/v1/shows/{show_id}/queue/sse",
            get(crate::push::sse::connect),
        )
        .route("/v1/shows/{show_id}/seats", get(sales::seats))
        .route("/v1/shows/{show_id}/reservations", post(sales::reserve))
        .route("/v1/reservations/{reservation_id}", delete(sales::release))
        .route("/v1/points", get(sales::points))
        .route("/v1/points/charge", post(sales::charge))
        .route("/v1/payments", post(sales::pay))
        .route("/v1/admin/shows", post(admin::create_show))
        .route("/v1/admin/shows/{show_id}/pause", post(admin::pause))
        .route("/v1/admin/shows/{show_id}/resume", post(admin::resume))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::spec))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    let web = ServeDir::new(web_dir).fallback(axum::routing::any(not_found).with_state(()));
    // Only the page's own assets: web/ also holds the browser tests and
    // their node_modules, which are nobody's business.
    let assets = move |req: Request<axum::body::Body>| {
        let web = web.clone();
        async move {
            if !is_public_asset(req.uri().path()) {
                return not_found().await.into_response();
            }
            match tower::ServiceExt::oneshot(web, req).await {
                Ok(res) => res.into_response(),
                Err(never) => match never {},
            }
        }
    };

    api.fallback(assets)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// `/` or a top-level file of the page (html, js, css, images).
fn is_public_asset(path: &str) -> bool {
    let name = path.trim_start_matches('/');
    name.is_empty()
        || (!name.contains('/')
            && !name.starts_with('.')
            && [".html", ".js", ".css", ".png", ".svg", ".ico"]
                .iter()
                .any(|ext| name.ends_with(ext)))
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

/// How often a REST-polling fan should come back: sooner when close to the
/// front, and always well inside the abandonment grace, since a poll is what
/// keeps a connectionless fan's spot.
pub fn poll_after(rank: Option<u64>, grace: Duration) -> Duration {
    let by_rank = match rank {
        Some(r) if r <= 10 => Duration::from_secs(1),
        Some(r) if r <= 1_000 => Duration::from_secs(2),
        _ => Duration::from_secs(5),
    };
    by_rank.min(grace / 3).max(Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_assets_are_public() {
        for path in ["/", "/index.html", "/anteroom.js", "/app.js", "/style.css"] {
            assert!(is_public_asset(path), "{path}");
        }
        for path in [
            "/package.json",
            "/node_modules/playwright-core/index.js",
            "/tests/browser.test.mjs",
            "/.env",
            "/../Cargo.toml",
        ] {
            assert!(!is_public_asset(path), "{path}");
        }
    }
}
