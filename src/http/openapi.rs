//! The OpenAPI document, generated from the handlers' annotations.
//!
//! The annotations say what is particular to an operation; [`Conventions`]
//! adds what holds for every operation alike, so no handler can forget it:
//! the error body on every 4xx and 5xx answer, the answers to a bad body, a
//! bad path and a missing credential, `Retry-After` where it is sent, and
//! the 503 of a backend that does not answer. The request schemas' bounds
//! come from the domain's parse functions ([`crate::domain::schema`]).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::extract::ApiJson;
use crate::domain::{IdempotencyKey, ReservationId, Section, ShowId};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "anteroom", description = "Real-time virtual waiting room: join, get pushed your rank and admission. \
        Errors are always `{\"error\": {\"code\", \"message\"}}`; the codes are listed in docs/protocol.md. \
        The pushed messages are in the AsyncAPI document, `/asyncapi.json`."),
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
        spec,
        super::asyncapi::spec,
    ),
    // The schemas named only by parameters and `schema_with` functions (the
    // derive collects the others by itself).
    components(schemas(ErrorBody, ShowId, ReservationId, IdempotencyKey, Section)),
    tags(
        (name = "sessions", description = "Demo sign-in"),
        (name = "shows", description = "The public show list"),
        (name = "queue", description = "Joining a show's queue, its status and leaving it"),
        (name = "push", description = "The push channels (WebSocket, SSE); their messages are in `/asyncapi.json`"),
        (name = "seats", description = "The seat map: layout, availability, the seat list"),
        (name = "reservations", description = "Seat holds of an admitted fan"),
        (name = "points", description = "A fan's points balance"),
        (name = "payments", description = "Paying for a hold with points"),
        (name = "admission", description = "What an origin uses to check an admission"),
        (name = "admin", description = "Operators: shows and their sale"),
        (name = "operations", description = "Probes and metrics"),
        (name = "contract", description = "The API's own documents"),
    ),
    modifiers(&Security, &Conventions)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(format!("`Authorization: Bearer <{what}>`"));
            SecurityScheme::Http(http)
        };
        let header = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)))
        };
        components.add_security_scheme(
            "bearer",
            bearer("the demo sign-in's token, or in jwt mode the ticketing site's JWT"),
        );
        components.add_security_scheme("admin_key", bearer("ANTEROOM_ADMIN_KEY"));
        components.add_security_scheme("origin_key", bearer("ANTEROOM_ORIGIN_KEY"));
        components.add_security_scheme(
            "access_token",
            header(
                "X-Access-Token",
                "The access token of the fan's admission (`active`)",
            ),
        );
        components.add_security_scheme(
            "ticket",
            header("X-Queue-Ticket", "The queue ticket from joining"),
        );
        components.add_security_scheme(
            "ticket_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "The queue ticket from joining, where a browser cannot set headers",
            ))),
        );
    }
}

/// What every operation answers alike ([module docs](self)).
struct Conventions;

/// Operations that read no backend and take no input: they cannot fail.
const INFALLIBLE: &[&str] = &["/healthz", "/metrics", "/.well-known/jwks.json"];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let infallible = INFALLIBLE.contains(&path.as_str())
                || path.ends_with("openapi.json")
                || path.ends_with("asyncapi.json");
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                add_common_answers(op, infallible);
                for (status, response) in op.responses.responses.iter_mut() {
                    if status.starts_with('4') || status.starts_with('5') {
                        describe_error(status, response);
                    }
                }
            }
        }
    }
}

fn add_common_answers(op: &mut Operation, infallible: bool) {
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    };
    if op.request_body.is_some() {
        add("400", "`invalid_json`: the body is not JSON");
        add("413", "`payload_too_large`: the body is over 16 KiB");
        add(
            "415",
            "`unsupported_media_type`: send `Content-Type: application/json`",
        );
        add(
            "422",
            "`invalid_body`: JSON with wrong, missing or unknown fields",
        );
    }
    let has_path_params = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    if has_path_params {
        add(
            "400",
            "`invalid_show_id`, `invalid_reservation_id`, `invalid_path`: a path parameter is not what it should be",
        );
    }
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add(
            "401",
            "A credential is missing, invalid or expired: `missing_token`, `invalid_token`, `token_expired`, \
             `missing_ticket`, `invalid_ticket`, `ticket_expired`, `ticket_wrong_show`, `ticket_stale`, \
             `missing_admin_key`, `invalid_admin_key`, `missing_origin_key`, `invalid_origin_key`",
        );
    }
    if !infallible {
        add(
            "503",
            "`unavailable`: a backend did not answer; retry after `Retry-After`",
        );
        add("500", "`internal`: a defect (the details are logged)");
    }
}

/// Gives an error answer the error body, and `Retry-After` where it is
/// sent.
fn describe_error(status: &str, response: &mut RefOr<Response>) {
    let RefOr::T(response) = response else {
        return;
    };
    if response.content.is_empty() {
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build();
        response.content.insert("application/json".to_owned(), body);
    }
    if matches!(status, "429" | "503") {
        response.headers.insert(
            "Retry-After".to_owned(),
            HeaderBuilder::new()
                .schema(u64::schema())
                .description(Some("Whole seconds to wait, at least 1"))
                .build(),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "contract", operation_id = "get_openapi",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
pub async fn spec() -> ApiJson<utoipa::openapi::OpenApi> {
    ApiJson(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations() -> Vec<(String, String, Operation)> {
        let doc = ApiDoc::openapi();
        let mut out = Vec::new();
        for (path, item) in doc.paths.paths {
            for (method, op) in [
                ("get", item.get),
                ("post", item.post),
                ("patch", item.patch),
                ("delete", item.delete),
                ("put", item.put),
            ] {
                if let Some(op) = op {
                    out.push((method.to_owned(), path.clone(), op));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_the_document_once() {
        let ops = operations();
        for (method, route) in super::super::ROUTES {
            if *route == super::super::STATIC_ROUTE {
                continue;
            }
            let found = ops
                .iter()
                .filter(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == route)
                .count();
            assert_eq!(found, 1, "{method} {route}");
        }
    }

    #[test]
    fn operations_have_unique_ids_and_readable_tags() {
        let mut ids = std::collections::HashSet::new();
        for (method, path, op) in operations() {
            let id = op.operation_id.clone().expect("an operation id");
            assert!(ids.insert(id.clone()), "{id} twice");
            let tags = op.tags.unwrap_or_default();
            assert_eq!(tags.len(), 1, "{method} {path}: {tags:?}");
            assert!(
                tags[0].chars().all(|c| c.is_ascii_lowercase()),
                "{method} {path}: tag {:?}",
                tags[0]
            );
        }
    }

    #[test]
    fn every_error_answer_has_the_error_body() {
        for (method, path, op) in operations() {
            for (status, response) in op.responses.responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let RefOr::T(response) = response else {
                    panic!("{method} {path} {status}: a reference");
                };
                let json = serde_json::to_value(&response.content).expect("json");
                assert_eq!(
                    json["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}
