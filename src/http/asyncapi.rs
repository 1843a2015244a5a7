//! The AsyncAPI 3.0 document of the push channels (`GET /asyncapi.json`):
//! the WebSocket and SSE channels, every message the gateway pushes
//! ([`PushMessage`]) and every message a client may send on the socket
//! ([`ClientMessage`]).
//!
//! The messages are not listed here: each variant of those enums becomes a
//! message, named by its `type`, with the payload schema utoipa derives
//! from the type (the same derive the OpenAPI document uses). A new
//! variant, or a new field, is in the document without anyone touching
//! this module.

use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::extract::ApiJson;
use crate::domain::{ClientMessage, PushMessage};

/// The channels' addresses, as routed.
const WS_ADDRESS: &str = "/v1/shows/{show_id}/queue/ws";
const SSE_ADDRESS: &str = "/v1/shows/{show_id}/queue/sse";

/// The document.
pub fn document() -> Value {
    let pushed = messages_of::<PushMessage>();
    let sent = messages_of::<ClientMessage>();
    let mut messages = Map::new();
    for message in pushed.iter().chain(&sent) {
        messages.insert(message.name.clone(), message.to_json());
    }
    let refs = |list: &[Message]| -> Map<String, Value> {
        list.iter()
            .map(|m| {
                let target = json!({"$ref": format!("#/components/messages/{}", m.name)});
                (m.name.clone(), target)
            })
            .collect()
    };
    let on = |channel: &str, list: &[Message]| -> Vec<Value> {
        list.iter()
            .map(|m| json!({"$ref": format!("#/channels/{channel}/messages/{}", m.name)}))
            .collect()
    };
    let mut ws_messages = refs(&pushed);
    ws_messages.extend(refs(&sent));
    let show_id = json!({"show_id": {"description": "The show whose queue the fan is in."}});
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "anteroom push",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What the gateway pushes to a fan in a show's queue, and what the fan's \
                client may send back. Both transports carry the same JSON messages; the first one \
                of every connection is the fan's current state. The ordering and coalescing rules, \
                the WebSocket close codes and the SSE event ids are in docs/protocol.md, \"Push\". \
                The REST API is in `/openapi.json`.",
        },
        "defaultContentType": "application/json",
        "servers": {"websocket": server("ws", "wss"), "http": server("http", "https")},
        "channels": {
            "queueWebSocket": {
                "address": WS_ADDRESS,
                "title": "The fan's WebSocket",
                "description": "Text frames of JSON. The ticket is checked before the upgrade \
                    (HTTP 401 and no socket if it is refused); the server closes with 1000 after \
                    `expired` or `closed`.",
                "servers": [{"$ref": "#/servers/websocket"}],
                "parameters": show_id,
                "messages": ws_messages,
                "bindings": {"ws": {"method": "GET", "query": ticket_query(), "bindingVersion": "0.1.0"}},
            },
            "queueEvents": {
                "address": SSE_ADDRESS,
                "title": "The fan's Server-Sent Events stream",
                "description": "`text/event-stream`: each event is `id: N` and `data: <message>`. \
                    A reconnecting client sends `Last-Event-ID`; ids go on from it.",
                "servers": [{"$ref": "#/servers/http"}],
                "parameters": show_id,
                "messages": refs(&pushed),
            },
        },
        "operations": {
            "pushOnWebSocket": {
                "action": "send",
                "channel": {"$ref": "#/channels/queueWebSocket"},
                "summary": "The gateway pushes the fan's rank, admission and the end of their turn.",
                "messages": on("queueWebSocket", &pushed),
            },
            "receiveOnWebSocket": {
                "action": "receive",
                "channel": {"$ref": "#/channels/queueWebSocket"},
                "summary": "What a client may send; anything else closes the socket (1007, 1008).",
                "messages": on("queueWebSocket", &sent),
            },
            "pushOnEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/queueEvents"},
                "summary": "The same messages as the WebSocket, one per event.",
                "messages": on("queueEvents", &pushed),
                "bindings": {"http": {"method": "GET", "bindingVersion": "0.3.0"}},
            },
        },
        "components": {
            "messages": messages,
            "schemas": component_schemas(),
            "securitySchemes": {
                "ticket": {
                    "type": "httpApiKey",
                    "name": "ticket",
                    "in": "query",
                    "description": "The queue ticket from joining (`?ticket=`, since a browser cannot \
                        set headers on a WebSocket or EventSource; other clients may send \
                        `X-Queue-Ticket`).",
                },
            },
        },
    })
}

/// The gateway, reached with `protocol` (`secure` behind TLS).
fn server(protocol: &str, secure: &str) -> Value {
    json!({
        "host": "{host}",
        "protocol": protocol,
        "description": format!("The gateway; `{secure}` behind TLS."),
        "variables": {"host": {"default": "localhost:8080", "description": "The gateway's host and port."}},
        "security": [{"$ref": "#/components/securitySchemes/ticket"}],
    })
}

fn ticket_query() -> Value {
    json!({
        "type": "object",
        "properties": {"ticket": {"type": "string", "description": "The queue ticket from joining."}},
        "required": ["ticket"],
    })
}

/// One message: a variant of a message enum.
struct Message {
    /// The variant's `type`.
    name: String,
    payload: Value,
}

impl Message {
    fn to_json(&self) -> Value {
        let mut message = json!({
            "name": self.name,
            "title": self.name,
            "contentType": "application/json",
            "payload": self.payload,
        });
        if let Some(text) = self.payload.get("description") {
            message["summary"] = text.clone();
        }
        let examples: Vec<Value> = examples()
            .into_iter()
            .filter(|e| e["type"] == self.name.as_str())
            .map(|payload| json!({"payload": payload}))
            .collect();
        if !examples.is_empty() {
            message["examples"] = Value::Array(examples);
        }
        message
    }
}

/// Every variant of an internally tagged enum (`#[serde(tag = "type")]`),
/// from its derived schema: a `oneOf` of objects, each with its `type`.
fn messages_of<T: PartialSchema>() -> Vec<Message> {
    let schema = serde_json::to_value(T::schema()).unwrap_or_default();
    let variants = match schema.get("oneOf").and_then(Value::as_array) {
        Some(variants) => variants.clone(),
        None => vec![schema],
    };
    variants
        .into_iter()
        .filter_map(|payload| {
            let name = payload["properties"]["type"]["enum"][0]
                .as_str()?
                .to_owned();
            Some(Message { name, payload })
        })
        .collect()
}

/// The schemas the messages refer to (`#/components/schemas/…`).
fn component_schemas() -> Map<String, Value> {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    PushMessage::schemas(&mut schemas);
    ClientMessage::schemas(&mut schemas);
    schemas
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default()))
        .collect()
}

/// Examples of the messages, shown with them (and checked against their
/// payload schemas by the suite's AsyncAPI validation). A test fails for a
/// message that has none.
fn examples() -> Vec<Value> {
    use crate::domain::{SeatChange, SeatId, SeatStatus};
    let pushed = [
        PushMessage::Rank {
            rank: 42,
            ahead: 41,
            eta_seconds: Some(90),
            paused: false,
        },
        PushMessage::Active {
            access_token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl".to_owned(),
            active_until: "2026-11-02T20:15:00.000Z".to_owned(),
        },
        PushMessage::Expiring { seconds_left: 60 },
        PushMessage::Expired,
        PushMessage::Closed {
            reason: "sold_out".to_owned(),
        },
        PushMessage::Prequeue {
            starts_at: "2026-11-02T20:00:00.000Z".to_owned(),
        },
        PushMessage::Paused,
        PushMessage::operator_notice(Some("Gates open at 18:00".into())),
        PushMessage::Pong,
        PushMessage::Seats {
            version: 7,
            changes: vec![SeatChange {
                seat_id: SeatId(17),
                status: SeatStatus::Held,
            }]
            .into(),
        },
    ];
    let sent = [ClientMessage::Ping];
    let pushed = pushed.iter().map(serde_json::to_value);
    let sent = sent.iter().map(serde_json::to_value);
    pushed.chain(sent).filter_map(Result::ok).collect()
}

/// Serves the document.
#[utoipa::path(get, path = "/asyncapi.json", tag = "contract", operation_id = "get_asyncapi",
    responses((status = 200, content_type = "application/json",
        description = "AsyncAPI 3.0: the push channels and their messages")))]
pub async fn spec() -> ApiJson<Value> {
    ApiJson(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(messages: &[Message]) -> Vec<String> {
        let mut names: Vec<_> = messages.iter().map(|m| m.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_variant_is_a_message_with_an_example() {
        let doc = document();
        let in_doc: Vec<String> = doc["components"]["messages"]
            .as_object()
            .expect("messages")
            .keys()
            .cloned()
            .collect();
        let mut want = names(&messages_of::<PushMessage>());
        want.extend(names(&messages_of::<ClientMessage>()));
        want.sort();
        let mut got = in_doc.clone();
        got.sort();
        assert_eq!(got, want);
        // None of the derived variants was dropped on the way.
        let variants = serde_json::to_value(PushMessage::schema()).expect("json")["oneOf"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(messages_of::<PushMessage>().len(), variants);
        assert!(variants >= 10, "{variants} variants");
        for name in &in_doc {
            let message = &doc["components"]["messages"][name];
            assert!(
                message["examples"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
                "{name} has no example"
            );
            assert_eq!(
                message["payload"]["properties"]["type"]["enum"][0], *name,
                "{name}"
            );
        }
        // Each example is the wire form of a variant, and the variant's
        // `type` names a message.
        for example in examples() {
            let name = example["type"].as_str().expect("a type");
            assert!(in_doc.iter().any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn the_websocket_carries_both_directions_and_sse_only_pushes() {
        let doc = document();
        let ws = doc["channels"]["queueWebSocket"]["messages"]
            .as_object()
            .expect("ws");
        let sse = doc["channels"]["queueEvents"]["messages"]
            .as_object()
            .expect("sse");
        assert!(ws.contains_key("ping") && ws.contains_key("rank"));
        assert!(!sse.contains_key("ping") && sse.contains_key("rank"));
        assert_eq!(doc["channels"]["queueWebSocket"]["address"], WS_ADDRESS);
    }
}
