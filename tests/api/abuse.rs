//! Abuse defences: rate limits (per client IP, per fan), the client IP behind
//! trusted proxies, the Origin check of the push endpoints and CORS, and
//! connections that never finish a request.

use std::time::Duration;

use anteroom::config::{LimitSettings, Settings};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Requests a test sends at most while it waits for a 429: at one request a
/// second past a small burst, far more than it needs.
const MAX_TRIES: usize = 50;

/// A per-IP limit of one a second with this burst; per-fan unlimited.
fn ip_limit(burst: u32) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.limits = LimitSettings {
            ip_per_second: 1,
            ip_burst: burst,
            ..unlimited()
        }
    }
}

/// Asserts the 429 contract: `Retry-After` in whole seconds (at least 1)
/// and the `rate_limited` error body.
async fn assert_rate_limited(res: reqwest::Response) {
    assert_eq!(res.status(), 429);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

impl Node {
    /// `POST /v1/sessions`, with an `X-Forwarded-For` if given.
    async fn try_sign_in(&self, name: &str, forwarded_for: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({ "username": name }));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        req.send().await.expect("request")
    }

    async fn try_join(&self, show: u64, fan: &Fan) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/shows/{show}/queue", self.base))
            .bearer_auth(&fan.token)
            .send()
            .await
            .expect("request")
    }

    async fn try_status(&self, show: u64, ticket: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/shows/{show}/queue/status", self.base))
            .header("x-queue-ticket", ticket)
            .send()
            .await
            .expect("request")
    }
}

/// The statuses of ten sign-ins, the i-th with `X-Forwarded-For: xff(i)`.
async fn sign_ins_from(node: &Node, prefix: &str, xff: impl Fn(usize) -> String) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = node
            .try_sign_in(&format!("{prefix}{i}"), Some(&xff(i)))
            .await;
        statuses.push(res.status().as_u16());
    }
    statuses
}

async fn user_id(res: reqwest::Response) -> u64 {
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.expect("json")["user_id"]
        .as_u64()
        .expect("user_id")
}

async fn sign_ins_past_the_ip_burst_get_429_and_create_no_user(backend: Backend) {
    let app = spawn_app_with(backend, ip_limit(3)).await;
    let mut signed_in = Vec::new();
    let mut refused = None;
    for i in 0..MAX_TRIES {
        let res = app.try_sign_in(&format!("burst{i}"), None).await;
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
        signed_in.push(user_id(res).await);
    }
    let refused = refused.expect("a sign-in past the burst is refused");
    assert!(signed_in.len() >= 3, "the burst passes: {signed_in:?}");
    assert_rate_limited(refused).await;

    // Once the budget refills, the next sign-in creates the next user: the
    // refused ones (and the retries while waiting) created none.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let next = loop {
        let res = app.try_sign_in("after", None).await;
        if res.status() != 429 {
            break user_id(res).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "the limit lifts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        next,
        signed_in.last().expect("some signed in") + 1,
        "the refused sign-ins created no user"
    );
}

async fn joins_past_the_ip_burst_get_429_and_queue_nobody(backend: Backend) {
    // Fans sign in through the trusted proxy from addresses of their own,
    // then all join from the proxy's address, which has a burst of 3.
    let app = spawn_app_with(backend, |s| {
        ip_limit(3)(s);
        s.limits.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    })
    .await;
    let show = app.create_show(100, 600, 60).await;
    let mut joined = 0;
    let mut refused = None;
    for i in 0..MAX_TRIES {
        let res = app
            .try_sign_in(&format!("j{i}"), Some(&format!("198.51.100.{i}")))
            .await;
        let fan = Fan {
            token: res.json::<Value>().await.expect("json")["token"]
                .as_str()
                .expect("signed in")
                .to_owned(),
            user_id: 0,
        };
        let res = app.try_join(show, &fan).await;
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
        assert_eq!(res.status(), 201);
        joined += 1;
    }
    assert_rate_limited(refused.expect("a join past the burst is refused")).await;
    assert!(joined >= 3, "the burst passes: {joined}");
    let (_, active, waiting) = app.counts(show).await;
    assert_eq!(active + waiting, joined, "the refused join queued nobody");
}

async fn status_polls_past_the_identity_limit_get_429_and_other_fans_are_unaffected(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |s| {
        s.limits = LimitSettings {
            identity_per_second: 1,
            identity_burst: 3,
            ..unlimited()
        }
    })
    .await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "poller", 2).await;
    let (eager, patient) = (&fans[0], &fans[1]);

    let mut polled = 0;
    let mut refused = None;
    for _ in 0..MAX_TRIES {
        let res = app.try_status(show, eager.1.ticket()).await;
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
        assert_eq!(res.status(), 200);
        polled += 1;
    }
    assert_rate_limited(refused.expect("polling past the limit is refused")).await;
    assert!(polled >= 3, "the burst passes: {polled}");

    // Another fan polls as usual, and the eager fan's other calls have
    // budgets of their own.
    assert_eq!(app.status(show, patient.1.ticket()).await.0, 200);
    assert_eq!(app.join(show, &eager.0).await.status, 200);
}

async fn a_trusted_proxys_forwarded_for_is_honoured_and_an_untrusted_peers_is_not(
    backend: Backend,
) {
    // A burst of 2 at one a second: ten sign-ins from one client are
    // refused long before a second passes for each.
    let behind_proxy = spawn_app_with(backend, |s| {
        ip_limit(2)(s);
        s.limits.trusted_proxies = vec!["127.0.0.0/8".parse().expect("range")];
    })
    .await;
    // Ten clients, each within its own burst.
    let distinct = sign_ins_from(&behind_proxy, "distinct", |i| format!("203.0.113.{i}")).await;
    assert!(distinct.iter().all(|s| *s == 201), "{distinct:?}");
    // One client whatever it writes left of its address.
    let spoofed = sign_ins_from(&behind_proxy, "spoofed", |i| {
        format!("192.0.2.{i}, 198.51.100.7")
    })
    .await;
    assert!(spoofed.contains(&429), "{spoofed:?}");
    // The proxy's own hops right of the client are skipped.
    let through_two = sign_ins_from(&behind_proxy, "two", |i| {
        format!("192.0.2.{i}, 198.51.100.8, 127.0.0.9")
    })
    .await;
    assert!(through_two.contains(&429), "{through_two:?}");
    drop(behind_proxy);

    let direct = spawn_app_with(backend, ip_limit(2)).await;
    let ignored = sign_ins_from(&direct, "direct", |i| format!("203.0.113.{i}")).await;
    assert!(
        ignored.contains(&429),
        "an untrusted peer's X-Forwarded-For is ignored: {ignored:?}"
    );
}

const PAGE: &str = "https://tickets.example.com";
const FOREIGN: &str = "https://evil.example.com";

async fn push_endpoints_refuse_foreign_origins_before_connecting(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.http.allowed_origins = vec![PAGE.parse().expect("origin")];
    })
    .await;
    let show = app.create_show(1, 600, 60).await;
    let fan = app.sign_in("origin").await;
    let spot = app.join(show, &fan).await;
    let ticket = spot.ticket();
    let ws_url = format!("{}/v1/shows/{show}/queue/ws?ticket={ticket}", app.ws_base);
    let sse_url = format!("{}/v1/shows/{show}/queue/sse?ticket={ticket}", app.base);

    let ws = |origin: Option<&str>| {
        let mut req = ws_url.as_str().into_client_request().expect("request");
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("header"));
        }
        tokio_tungstenite::connect_async(req)
    };
    match ws(Some(FOREIGN)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body: Value =
                serde_json::from_slice(res.body().as_deref().unwrap_or_default()).expect("json");
            assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
        }
        Err(e) => panic!("expected a 403, got {e}"),
        Ok(_) => panic!("a foreign page opened a WebSocket"),
    }
    let own = app.base.clone();
    for origin in [Some(PAGE), Some(own.as_str()), None] {
        let (stream, _) = ws(origin)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} connects: {e}"));
        let mut fan = WsFan { stream };
        assert_eq!(fan.json().await["type"], "active", "{origin:?}");
    }

    let sse = |origin: Option<&str>| {
        let mut req = app.client.get(&sse_url);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let refused = sse(Some(FOREIGN)).await.expect("request");
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    for origin in [Some(PAGE), Some(own.as_str()), None] {
        let res = sse(origin).await.expect("request");
        assert_eq!(res.status(), 200, "{origin:?}");
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().ok()),
            origin.filter(|o| *o == PAGE).map(Some),
            "an EventSource of the allowed page may read the stream"
        );
        let mut stream = res.bytes_stream();
        let chunk = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("an event within the patience")
            .expect("a chunk")
            .expect("bytes");
        assert!(
            String::from_utf8_lossy(&chunk).contains("\"active\""),
            "{origin:?}"
        );
    }
}

async fn cors_lets_the_allowed_origins_call_the_api(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.http.allowed_origins = vec![PAGE.parse().expect("origin")];
        s.limits.identity_per_second = 1;
        s.limits.identity_burst = 1;
    })
    .await;
    let show = app.create_show(1, 600, 60).await;
    let preflight = |origin: &str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/shows/{show}/queue", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, x-altcha")
            .send()
    };
    let allowed = preflight(PAGE).await.expect("request");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(header(&allowed, "access-control-allow-origin"), PAGE);
    assert!(header(&allowed, "access-control-allow-methods").contains("post"));
    let headers = header(&allowed, "access-control-allow-headers");
    assert!(
        headers.contains("authorization") && headers.contains("x-altcha"),
        "{headers}"
    );
    assert!(header(&allowed, "access-control-allow-credentials").is_empty());

    let foreign = preflight(FOREIGN).await.expect("request");
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // A page of the allowed origin can read a 429's Retry-After.
    let fan = app.sign_in("cors").await;
    let join = || {
        app.client
            .post(format!("{}/v1/shows/{show}/queue", app.base))
            .bearer_auth(&fan.token)
            .header("origin", PAGE)
            .send()
    };
    let first = join().await.expect("request");
    assert_eq!(header(&first, "access-control-allow-origin"), PAGE);
    let mut limited = None;
    for _ in 0..MAX_TRIES {
        let res = join().await.expect("request");
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let limited = limited.expect("joins past the burst are refused");
    assert_eq!(header(&limited, "access-control-allow-origin"), PAGE);
    assert!(
        header(&limited, "access-control-expose-headers").contains("retry-after"),
        "{:?}",
        limited.headers()
    );
}

/// Header timeout of one second, heartbeats every second.
fn quick_timeouts(s: &mut Settings) {
    s.http.header_read_timeout_secs = 1;
    s.push.heartbeat_secs = 1;
}

/// Reads until the server closes the connection (end of stream or reset);
/// panics if it is still open after the patience.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server closed the connection");
    got
}

async fn a_connection_that_stops_sending_headers_is_closed(backend: Backend) {
    let app = spawn_app_with(backend, quick_timeouts).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // Half a request, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .expect("writes");
    let answer = closed_by_server(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A whole request is answered, and the idle keep-alive connection is
    // then closed by the same timeout.
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let answer = closed_by_server(&mut idle).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

async fn push_connections_outlive_the_header_timeout(backend: Backend) {
    let app = spawn_app_with(backend, quick_timeouts).await;
    let show = app.create_show(1, 600, 60).await;
    let fan = app.sign_in("stays").await;
    let spot = app.join(show, &fan).await;
    let mut ws = app.ws(show, spot.ticket()).await;
    assert_eq!(ws.json().await["type"], "active");
    // Three heartbeats: three header timeouts go by on an idle socket.
    let mut pings = 0;
    while pings < 3 {
        let frame = tokio::time::timeout(PATIENCE, ws.stream.next())
            .await
            .expect("a heartbeat within the patience");
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    ws.send_text(json!({"type": "ping"}).to_string()).await;
    assert_eq!(ws.json().await["type"], "pong", "the socket still works");

    let res = app
        .client
        .get(format!(
            "{}/v1/shows/{show}/queue/sse?ticket={}",
            app.base,
            spot.ticket()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    while text.matches(": keep-alive").count() < 3 {
        let chunk = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a heartbeat within the patience")
            .expect("the stream stays open")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

crate::for_each_backend!(
    sign_ins_past_the_ip_burst_get_429_and_create_no_user,
    joins_past_the_ip_burst_get_429_and_queue_nobody,
    status_polls_past_the_identity_limit_get_429_and_other_fans_are_unaffected,
    a_trusted_proxys_forwarded_for_is_honoured_and_an_untrusted_peers_is_not,
    push_endpoints_refuse_foreign_origins_before_connecting,
    cors_lets_the_allowed_origins_call_the_api,
    a_connection_that_stops_sending_headers_is_closed,
    push_connections_outlive_the_header_timeout,
);
