//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::extract::ApiJson;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "anteroom", description = "Real-time virtual waiting room: join, get pushed your rank and admission."),
    paths(
        super::sessions::sign_in,
        super::admission::jwks,
        super::admission::introspect,
        super::shows::list,
        super::queue::join,
        super::queue::status,
        super::queue::leave,
        crate::push::ws::connect,
        crate::push::sse::connect,
        super::sales::seats,
        super::sales::layout,
        super::sales::availability,
        super::sales::reserve,
        super::sales::release,
        super::sales::points,
        super::sales::charge,
        super::sales::pay,
        super::admin::create_show,
        super::admin::list,
        super::admin::get,
        super::admin::patch,
        super::admin::pause,
        super::admin::resume,
        super::admin::close,
        super::admin::eject,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::challenge::challenge,
    ),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "origin_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Serves the document.
pub async fn spec() -> ApiJson<utoipa::openapi::OpenApi> {
    ApiJson(ApiDoc::openapi())
}
