//! Bad input gets a clear 4xx (or WebSocket close code) and changes nothing.

use std::time::Duration;

use anteroom::domain::{ShowId, Timestamp};
use anteroom::tokens::{Claims, Kind};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Sends `req` and asserts the error status and code (and a message).
async fn expect_error(req: reqwest::RequestBuilder, status: u16, code: &str) {
    let res = req.send().await.expect("request");
    let got = res.status().as_u16();
    let body: Value = res.json().await.expect("json error body");
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

async fn bad_requests_are_4xx_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let other_show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "b", 2).await;
    let waiting_ticket = fans[1].1.ticket().to_owned();
    let before = app.counts(show).await;
    let c = &app.client;
    let url = |p: &str| format!("{}{p}", app.base);
    let json_body = |body: &'static str| {
        c.post(url("/v1/sessions"))
            .header("content-type", "application/json")
            .body(body)
    };
    let join = |path: &str| c.post(url(path));
    let queue = format!("/v1/shows/{show}/queue");
    let token = &fans[0].0.token;

    let cases = [
        // Sign-in bodies.
        (json_body("{\"username\":"), 400, "invalid_json"),
        (c.post(url("/v1/sessions")).body("{\"username\":\"x\"}"), 415, "unsupported_media_type"),
        (c.post(url("/v1/sessions")).json(&json!({"username": 5})), 422, "invalid_body"),
        (c.post(url("/v1/sessions")).json(&json!({"username": "a b"})), 422, "invalid_username"),
        (c.post(url("/v1/sessions")).json(&json!({"username": "x", "admin": true})), 422, "invalid_body"),
        // The server answers before reading the body and closes the
        // connection: `close` keeps the client from pooling it for the
        // next case (which would then write into a closed socket).
        (c.post(url("/v1/sessions")).header("content-type", "application/json").header("connection", "close").body(vec![b' '; 64 * 1024]), 413, "payload_too_large"),
        // Joining.
        (join(&queue), 401, "missing_token"),
        (join(&queue).bearer_auth("nope"), 401, "invalid_token"),
        (join(&queue).bearer_auth(&waiting_ticket), 401, "invalid_token"),
        (join("/v1/shows/999/queue").bearer_auth(token), 404, "show_not_found"),
        (join("/v1/shows/x/queue").bearer_auth(token), 400, "invalid_show_id"),
        (join("/v1/shows/-1/queue").bearer_auth(token), 400, "invalid_show_id"),
        // Queue calls without a ticket, and the WebSocket without an upgrade.
        (c.get(url(&format!("{queue}/status"))), 401, "missing_ticket"),
        (c.delete(url(&queue)), 401, "missing_ticket"),
        (c.get(url(&format!("{queue}/ws"))).header("x-queue-ticket", &waiting_ticket), 400, "websocket_required"),
        // Admin.
        (c.post(url("/v1/admin/shows")).bearer_auth("wrong").json(&json!({"title": "x", "capacity": 1, "session_ttl_seconds": 5})), 401, "invalid_admin_key"),
        (c.post(url("/v1/admin/shows")).bearer_auth(ADMIN_KEY).json(&json!({"title": "x", "capacity": 0, "session_ttl_seconds": 5})), 422, "invalid_show"),
        (c.post(url("/v1/admin/shows")).bearer_auth(ADMIN_KEY).json(&json!({"title": "x", "capacity": 1, "session_ttl_seconds": 5, "abandon_grace_seconds": 0})), 422, "invalid_show"),
        (c.post(url("/v1/admin/shows/999/pause")).bearer_auth(ADMIN_KEY), 404, "show_not_found"),
        (c.post(url(&format!("/v1/admin/shows/{show}/pause"))), 401, "missing_admin_key"),
        // Unknown routes and methods.
        (c.get(url("/v1/nope")), 404, "not_found"),
        (c.put(url("/v1/shows")), 405, "method_not_allowed"),
    ];
    for (req, status, code) in cases {
        expect_error(req, status, code).await;
    }

    // Queue calls with bad tickets: REST, WebSocket upgrade and SSE alike.
    let keys = keyring();
    let waiting = keys
        .verify(&waiting_ticket, Kind::Ticket, None, Timestamp::now())
        .expect("the waiting fan's ticket verifies");
    let expired = keys.sign(&Claims {
        expires: Timestamp::now().minus(Duration::from_secs(1)),
        ..waiting.clone()
    });
    let forged = {
        let attacker = keyring_for("attacker").sign(&waiting);
        let mut parts: Vec<&str> = waiting_ticket.split('.').collect();
        parts[2] = attacker.split('.').nth(2).expect("tag");
        parts.join(".")
    };
    let other_show_ticket = keys.sign(&Claims {
        show: Some(ShowId(other_show)),
        ..waiting.clone()
    });
    let bad_tickets = [
        (expired, "ticket_expired"),
        (forged, "invalid_ticket"),
        (other_show_ticket, "ticket_wrong_show"),
        ("junk".to_owned(), "invalid_ticket"),
    ];
    for (ticket, code) in &bad_tickets {
        expect_error(
            c.get(url(&format!("{queue}/status")))
                .header("x-queue-ticket", ticket),
            401,
            code,
        )
        .await;
        expect_error(
            c.delete(url(&queue)).query(&[("ticket", ticket)]),
            401,
            code,
        )
        .await;
        expect_error(
            c.get(url(&format!("{queue}/sse")))
                .query(&[("ticket", ticket)]),
            401,
            code,
        )
        .await;
        let ws_url = format!("{}{queue}/ws?ticket={ticket}", app.ws_base);
        match tokio_tungstenite::connect_async(ws_url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
            other => panic!("expected 401 before the upgrade, got {other:?}"),
        }
    }

    assert_eq!(
        app.counts(show).await,
        before,
        "no bad request changed the queue"
    );
    let (_, still) = app.status(show, &waiting_ticket).await;
    assert_eq!(still["rank"], 1);
    // Leaving twice: the second is a clear 404.
    assert_eq!(app.leave(show, &waiting_ticket).await, 204);
    expect_error(
        c.delete(url(&queue))
            .header("x-queue-ticket", &waiting_ticket),
        404,
        "not_in_queue",
    )
    .await;
}

fn keyring_for(secret: &str) -> anteroom::tokens::Keyring {
    anteroom::tokens::Keyring::new(&anteroom::config::Secret::new(secret.into()), &[])
}

async fn bad_websocket_frames_close_with_a_clear_code_and_keep_the_spot(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "w", 2).await;
    let ticket = fans[1].1.ticket().to_owned();
    let before = app.counts(show).await;

    let cases: Vec<(Message, u16)> = vec![
        (Message::Text("x".repeat(2_000).into()), 1009),
        (Message::Text("y".repeat(100_000).into()), 1009),
        (Message::Text(r#"{"type":"buy_everything"}"#.into()), 1008),
        (Message::Text("{not json".into()), 1007),
        (Message::Binary(vec![1, 2, 3].into()), 1003),
    ];
    for (msg, code) in cases {
        let mut ws = app.ws(show, &ticket).await;
        assert_eq!(ws.json().await["rank"], 1);
        let len = msg.len();
        ws.send(msg).await;
        assert_eq!(
            close_code(&ws.next().await),
            Some(code),
            "message of {len} bytes"
        );
    }
    // Application-level ping is answered.
    let mut ws = app.ws(show, &ticket).await;
    assert_eq!(ws.json().await["rank"], 1);
    ws.send_text(r#"{"type":"ping"}"#.into()).await;
    assert_eq!(ws.json().await, json!({"type": "pong"}));

    assert_eq!(app.counts(show).await, before);
    let (_, still) = app.status(show, &ticket).await;
    assert_eq!(still["rank"], 1);
}

crate::for_each_backend!(
    bad_requests_are_4xx_and_change_nothing,
    bad_websocket_frames_close_with_a_clear_code_and_keep_the_spot,
);
