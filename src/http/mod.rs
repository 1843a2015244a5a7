//! The HTTP edge: routes, handlers, extractors and the API error type.
//! Handlers convert input once (extractors, `parse` constructors), call a
//! service, and shape the response; no rule lives here.

pub mod admin;
pub mod admission;
pub mod assets;
pub mod asyncapi;
pub mod challenge;
pub mod error;
pub mod extract;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod origin;
pub mod proxies;
pub mod queue;
pub mod sales;
pub mod sessions;
pub mod shows;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, Method, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use metrics::SharedString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::error::ApiError;
use crate::auth::admission::AdmissionKeys;
use crate::auth::Authenticator;
use crate::challenge::Challenges;
use crate::config::{PushSettings, Secret, TokenSettings};
use crate::push::budget::FrameBudget;
use crate::queue::QueueService;
use crate::sales::SalesService;
use crate::store::Database;
use crate::telemetry::metrics as m;
use crate::telemetry::Metrics;
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
    pub auth: Authenticator,
    pub admission: Arc<AdmissionKeys>,
    pub admin_key: Secret,
    pub origin_key: Option<Secret>,
    pub push: PushSettings,
    /// This node's rank-frame budget and its count of waiting connections.
    pub frame_budget: FrameBudget,
    pub tokens: TokenSettings,
    pub metrics: Metrics,
    /// Every task the gateway runs, upgraded WebSockets included.
    pub tasks: TaskTracker,
    /// Cancelled when the gateway is asked to stop: `/readyz` answers 503.
    pub stop: CancellationToken,
    /// Cancelled when the drain is over: connections close.
    pub shutdown: CancellationToken,
    pub challenges: Challenges,
    pub limits: limits::Limits,
    pub proxies: proxies::TrustedProxies,
    pub origins: origin::AllowedOrigins,
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

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    pub fn admission(&self) -> &AdmissionKeys {
        &self.0.admission
    }

    /// The key origins present to the introspection endpoint, if set.
    pub fn origin_key(&self) -> Option<&Secret> {
        self.0.origin_key.as_ref()
    }

    pub fn push(&self) -> &PushSettings {
        &self.0.push
    }

    pub fn frame_budget(&self) -> &FrameBudget {
        &self.0.frame_budget
    }

    pub fn tokens(&self) -> &TokenSettings {
        &self.0.tokens
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.0.tasks
    }

    /// Whether the gateway is stopping (draining or closing).
    pub fn stopping(&self) -> bool {
        self.0.stop.is_cancelled()
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    pub fn challenges(&self) -> &Challenges {
        &self.0.challenges
    }

    pub fn limits(&self) -> &limits::Limits {
        &self.0.limits
    }

    pub fn proxies(&self) -> &proxies::TrustedProxies {
        &self.0.proxies
    }

    pub fn origins(&self) -> &origin::AllowedOrigins {
        &self.0.origins
    }
}

/// Every API route as (method, template): the `route` and `method` labels of
/// the HTTP metrics, registered at zero from start-up. The observability test
/// drives each one and fails on a route missing here.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/sessions"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/v1/admission/introspect"),
    ("GET", "/v1/shows"),
    ("POST", "/v1/shows/{show_id}/queue"),
    ("DELETE", "/v1/shows/{show_id}/queue"),
    ("GET", "/v1/shows/{show_id}/queue/status"),
    ("GET", "/v1/shows/{show_id}/queue/ws"),
    ("GET", "/v1/shows/{show_id}/queue/sse"),
    ("GET", "/v1/shows/{show_id}/seats"),
    ("POST", "/v1/shows/{show_id}/reservations"),
    ("DELETE", "/v1/reservations/{reservation_id}"),
    ("GET", "/v1/points"),
    ("POST", "/v1/points/charge"),
    ("POST", "/v1/payments"),
    ("POST", "/v1/admin/shows"),
    ("GET", "/v1/admin/shows"),
    ("GET", "/v1/admin/shows/{show_id}"),
    ("PATCH", "/v1/admin/shows/{show_id}"),
    ("POST", "/v1/admin/shows/{show_id}/pause"),
    ("POST", "/v1/admin/shows/{show_id}/resume"),
    ("POST", "/v1/admin/shows/{show_id}/close"),
    ("DELETE", "/v1/admin/shows/{show_id}/fans/{subject}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/asyncapi.json"),
    ("GET", STATIC_ROUTE),
    ("GET", "/v1/shows/{show_id}/challenge"),
];

/// The `route` label of the page's assets, and of anything unrouted.
const STATIC_ROUTE: &str = "static";
const UNMATCHED_ROUTE: &str = "unmatched";

/// Registers the HTTP series at zero: a 500 count per route (so the 5xx
/// ratio is 0, not absent) and the latency histograms.
pub fn register_metrics() {
    for (method, route) in ROUTES {
        metrics::counter!(m::HTTP_REQUESTS, "route" => *route, "method" => *method, "status" => "500")
            .absolute(0);
        let _ = metrics::histogram!(m::HTTP_DURATION, "route" => *route, "method" => *method);
    }
}

/// The access log's target: `RUST_LOG=info,anteroom::access=warn` silences
/// it without silencing the rest.
pub const ACCESS_LOG: &str = "anteroom::access";

/// Counts and times every request by route template, never by raw path
/// (which carries ids and tickets), and writes the access log: one line per
/// request at info level with the same labels, the latency and the request
/// id (`X-Request-Id`, the client's or a generated one, also sent back).
async fn track(req: Request<axum::body::Body>, next: Next) -> Response {
    // Labels borrow from `ROUTES` and a table of codes: no allocation on the
    // usual path.
    let route = match req.extensions().get::<MatchedPath>() {
        Some(path) => ROUTES
            .iter()
            .find(|(_, r)| *r == path.as_str())
            .map_or_else(
                || SharedString::from(path.as_str().to_owned()),
                |(_, r)| SharedString::const_str(r),
            ),
        None if assets::is_public(req.uri().path()) => SharedString::const_str(STATIC_ROUTE),
        None => SharedString::const_str(UNMATCHED_ROUTE),
    };
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let elapsed = started.elapsed();
    metrics::histogram!(m::HTTP_DURATION, "route" => route.clone(), "method" => method)
        .record(elapsed.as_secs_f64());
    tracing::info!(
        target: ACCESS_LOG,
        method,
        route = route.as_ref(),
        status = res.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1e3,
        request_id,
        "request"
    );
    let status = status_label(res.status().as_u16());
    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    res
}

fn status_label(code: u16) -> SharedString {
    const COMMON: &[(u16, &str)] = &[
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (402, "402"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    COMMON.iter().find(|(c, _)| *c == code).map_or_else(
        || SharedString::from(code.to_string()),
        |(_, s)| SharedString::const_str(s),
    )
}

/// The router of the optional metrics-only listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

pub fn router(state: AppState, assets: assets::Assets) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // The per-IP limit, on exactly the two routes that create something for
    // anyone who asks (a user, a spot in a queue).
    let per_ip =
        |class| axum::middleware::from_fn_with_state((state.clone(), class), limits::per_ip);
    let api = Router::new()
        .route(
            "/v1/sessions",
            post(sessions::sign_in).route_layer(per_ip(limits::Class::SignIn)),
        )
        .route("/.well-known/jwks.json", get(admission::jwks))
        .route("/v1/admission/introspect", post(admission::introspect))
        .route("/v1/shows", get(shows::list))
        .route(
            "/v1/shows/{show_id}/queue",
            post(queue::join)
                .route_layer(per_ip(limits::Class::Join))
                // Added after the limit, so leaving is not limited.
                .delete(queue::leave),
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
        .route("/v1/shows/{show_id}/layout", get(sales::layout))
        .route("/v1/shows/{show_id}/availability", get(sales::availability))
        .route("/v1/shows/{show_id}/reservations", post(sales::reserve))
        .route("/v1/reservations/{reservation_id}", delete(sales::release))
        .route("/v1/points", get(sales::points))
        .route("/v1/points/charge", post(sales::charge))
        .route("/v1/payments", post(sales::pay))
        .route("/v1/admin/shows", post(admin::create_show).get(admin::list))
        .route(
            "/v1/admin/shows/{show_id}",
            get(admin::get).patch(admin::patch),
        )
        .route("/v1/admin/shows/{show_id}/close", post(admin::close))
        .route(
            "/v1/admin/shows/{show_id}/fans/{subject}",
            delete(admin::eject),
        )
        .route("/v1/admin/shows/{show_id}/pause", post(admin::pause))
        .route("/v1/admin/shows/{show_id}/resume", post(admin::resume))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::spec))
        .route("/asyncapi.json", get(asyncapi::spec))
        .route("/v1/shows/{show_id}/challenge", get(challenge::challenge))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    let page = move |req: Request<axum::body::Body>| {
        let assets = assets.clone();
        async move { assets.serve(req).await }
    };

    let cors = origin::cors(state.origins());
    // Layers added to a `Router` wrap each of its routes, boxed, and a
    // request clones its route's whole stack of boxes, one inside the
    // other: with seven layers, about 40 allocations per request (a fifth
    // of a join's). Only what must see the matched route (`track`) wraps
    // the routes; the rest wrap the router once.
    let routed = api
        .fallback(page)
        .layer(axum::middleware::from_fn(track))
        .with_state(state);
    let stack = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
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
        // Preflights are answered here, before routing (so they are not
        // in the access log or the request metrics).
        .layer(cors)
        // gzip or br when the client accepts it; bodies under 32 bytes,
        // images and SSE streams (which must flush each event) are sent as
        // they are. A 20,000-seat seat list is 1.8 MB of JSON, its layout
        // about 0.7 MB; both shrink by an order of magnitude.
        .layer(CompressionLayer::new())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(routed);
    Router::new().fallback_service(stack)
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
    fn status_labels_are_the_codes() {
        for code in [101, 200, 201, 409, 418, 503, 599] {
            assert_eq!(status_label(code).as_ref(), code.to_string());
        }
    }
}
