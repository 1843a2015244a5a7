//! The metrics contract: docs/metrics.md, the Grafana dashboards and the
//! alert rules only name metrics the gateway exports, they are there from
//! start-up, and every path of the gateway moves them.
//!
//! The Prometheus recorder is per process, and the tests in this binary
//! share theirs; so these tests run the gateway as a process of its own and
//! can check its counters exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anteroom::telemetry::metrics::{Kind, CATALOGUE};
use serde_json::Value;

use crate::for_each_backend;
use crate::helpers::{
    eventually, Backend, Node, Process, RealBackends, ADMIN_KEY, PATIENCE, SECRET,
};

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (label values may hold `{`, `}`, `,`).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let mut end = 0;
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                        let mut value = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => value.push(chars.next().expect("escaped").1),
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .expect("a value")
            .parse()
            .expect("a number");
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

async fn scrape(node: &Node) -> Vec<Sample> {
    let res = node
        .client
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    parse(&res.text().await.expect("text"))
}

/// The value of the one sample `name` with exactly these labels (0 when
/// absent, so deltas work on counters that were never touched).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map_or(0.0, |s| s.value)
}

fn names(samples: &[Sample]) -> BTreeSet<&str> {
    samples.iter().map(|s| s.name.as_str()).collect()
}

/// Every `anteroom_*` name written in the files of `dir` ending in one of
/// `exts` (recursively).
fn names_used(dir: &Path, exts: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.to_string_lossy();
            if !exts.iter().any(|e| name.ends_with(e)) {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("readable");
            out.extend(metric_names_in(&text));
        }
    }
    assert!(files > 0, "no files in {}", dir.display());
    out
}

fn metric_names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("anteroom_") {
        let preceded_by_word = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            out.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    out
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The names a scrape exposes for the catalogue (histograms as their
/// `_bucket`, `_sum` and `_count` series).
fn catalogue_series() -> BTreeSet<String> {
    CATALOGUE
        .iter()
        .flat_map(|f| match f.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", f.name))
                .collect::<Vec<_>>(),
            _ => vec![f.name.to_owned()],
        })
        .collect()
}

#[test]
fn the_docs_list_exactly_the_catalogue() {
    let doc = std::fs::read_to_string(repo("docs/metrics.md")).expect("docs/metrics.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("anteroom_"))
        .map(str::to_owned)
        .collect();
    let catalogue: BTreeSet<String> = CATALOGUE.iter().map(|f| f.name.to_owned()).collect();
    assert_eq!(
        documented, catalogue,
        "docs/metrics.md and the catalogue differ"
    );
    for f in CATALOGUE {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            doc.contains(&format!("| `{}` | {kind} |", f.name)),
            "docs/metrics.md gives {} another type than {kind}",
            f.name
        );
    }
}

#[test]
fn dashboards_and_alerts_only_name_catalogued_metrics() {
    let known = catalogue_series();
    for (dir, exts) in [
        ("grafana/dashboards", &[".json"][..]),
        ("alerts", &[".yml", ".yaml"][..]),
    ] {
        for name in names_used(&repo(dir), exts) {
            assert!(
                known.contains(&name),
                "{dir} uses {name}, which is not exported"
            );
        }
    }
}

/// A fresh gateway process, before any traffic: every catalogued series
/// (and so everything dashboards and alerts use) is on the first scrape.
async fn every_metric_is_exported_from_start_up(backend: Backend) {
    // Demo shows, so there are per-show series to see.
    let (gateway, _backends) = gateway(backend, &[("ANTEROOM_SEED_DEMO", "true".to_owned())]).await;
    let samples = scrape(&gateway).await;
    let exported = names(&samples);
    let mut missing: Vec<String> = catalogue_series()
        .into_iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    for dir in ["grafana/dashboards", "alerts"] {
        for name in names_used(&repo(dir), &[".json", ".yml"]) {
            if !exported.contains(name.as_str()) {
                missing.push(format!("{name} (used in {dir})"));
            }
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "not exported at start-up: {missing:?}");
    // Counters that alerts take rates of start at zero, per label value.
    assert_eq!(
        value(&samples, "anteroom_redis_errors_total", &[]),
        0.0,
        "no Redis error at start"
    );
    assert_eq!(
        value(
            &samples,
            "anteroom_promotions_total",
            &[("show", "1"), ("cause", "payment")]
        ),
        0.0
    );
    assert_eq!(
        value(&samples, "anteroom_queue_open", &[("show", "1")]),
        1.0
    );
    assert!(value(&samples, "anteroom_queue_capacity", &[("show", "1")]) > 0.0);
    if backend == Backend::Real {
        assert!(
            value(&samples, "anteroom_db_pool_max", &[]) > 0.0,
            "the MySQL pool's size is reported"
        );
    }
    gateway.stop().await;
}

/// Drives every route and push path, then checks the series they move.
async fn every_path_moves_its_metrics(backend: Backend) {
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let (app, _backends) = gateway(backend, &[("ANTEROOM_METRICS_LISTEN", metrics_listen)]).await;
    let show = app.create_show_with_seats(1, 600, 4, 25).await;
    let s = show.to_string();
    let http = &app.client;

    // Three fans: A is admitted at once, B waits on a WebSocket, C on SSE.
    let a = app.sign_in("obs-a").await;
    let a_spot = app.join(show, &a).await;
    assert_eq!(a_spot.state(), "active");
    let b = app.sign_in("obs-b").await;
    let b_spot = app.join(show, &b).await;
    let mut b_ws = app.ws(show, b_spot.ticket()).await;
    assert_eq!(b_ws.json().await["rank"], 1);
    let c = app.sign_in("obs-c").await;
    let c_spot = app.join(show, &c).await;
    let mut c_sse = app.sse(show, c_spot.ticket()).await;
    assert_eq!(c_sse.json().await["rank"], 2);
    assert_eq!(app.status(show, c_spot.ticket()).await.0, 200);

    // A holds two seats and releases one; pays short, charges, pays, and
    // retries the payment (a replay).
    let (_, seats) = app.seats(show).await;
    let (_, _) = app.seats(show).await; // a cache hit
    let seat = |i: usize| seats[i]["seat_id"].as_u64().expect("seat id");
    let (status, hold) = app.reserve(show, &a, a_spot.access(), seat(0)).await;
    assert_eq!(status, 201, "{hold}");
    let (status, other) = app.reserve(show, &a, a_spot.access(), seat(1)).await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["reservation_id"].as_u64().expect("id");
    let released = http
        .delete(format!("{}/v1/reservations/{other_id}", app.base))
        .bearer_auth(&a.token)
        .header("x-access-token", a_spot.access())
        .send()
        .await
        .expect("request");
    assert_eq!(released.status(), 204);
    let hold_id = hold["reservation_id"].as_u64().expect("id");
    assert_eq!(app.pay(&a, a_spot.access(), hold_id, "k1").await.0, 402);
    app.charge(&a, 25).await;
    assert_eq!(app.balance(&a).await, 25);
    assert_eq!(app.pay(&a, a_spot.access(), hold_id, "k2").await.0, 201);
    assert_eq!(app.pay(&a, a_spot.access(), hold_id, "k2").await.0, 201);

    // The payment frees A's slot: B is admitted by push.
    let active = b_ws.json().await;
    assert_eq!(active["type"], "active", "{active}");
    // B leaves; C is admitted over SSE.
    assert_eq!(app.leave(show, b_spot.ticket()).await, 204);
    eventually("C is admitted over SSE", || async {
        app.status(show, c_spot.ticket()).await.1["state"] == "active"
    })
    .await;
    let _ = tokio::time::timeout(PATIENCE, async {
        while let Some(msg) = c_sse.next().await {
            if msg["type"] == "active" {
                break;
            }
        }
    })
    .await;
    assert_eq!(app.leave(show, c_spot.ticket()).await, 204);

    // The admin, discovery and operational routes.
    for action in ["pause", "resume"] {
        let res = http
            .post(format!("{}/v1/admin/shows/{show}/{action}", app.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{action}");
    }
    let path = format!("/v1/admin/shows/{show}");
    for (method, path, body, status) in [
        (
            reqwest::Method::GET,
            "/v1/admin/shows".to_owned(),
            None,
            200,
        ),
        (reqwest::Method::GET, path.clone(), None, 200),
        (
            reqwest::Method::PATCH,
            path.clone(),
            Some(serde_json::json!({"title": "Observed"})),
            200,
        ),
        (
            reqwest::Method::DELETE,
            format!("{path}/fans/nobody"),
            None,
            404,
        ),
    ] {
        assert_eq!(app.admin(method, &path, body).await.0, status, "{path}");
    }
    let closing = app.create_show(1, 60, 60).await;
    let (code, _) = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/shows/{closing}/close"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    // The payer's node ended the session at once; the payment's event
    // then went through the outbox and the broker, and was applied (so
    // the node's consumer holds its partitions: ready, below).
    eventually(
        "the outbox drained, the event applied, the slot settled",
        || async {
            let samples = scrape(&app).await;
            value(&samples, "anteroom_outbox_pending", &[]) == 0.0
                && value(
                    &samples,
                    "anteroom_events_applied_total",
                    &[("type", "payment.completed")],
                ) > 0.0
                && value(&samples, "anteroom_queue_active", &[("show", &s)]) == 0.0
        },
    )
    .await;
    // What an origin calls: the admission keys, and introspection.
    let introspected = http
        .post(format!("{}/v1/admission/introspect", app.base))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"token": a_spot.access()}))
        .send()
        .await
        .expect("request");
    assert_eq!(introspected.status(), 200);
    for (path, status) in [
        ("/.well-known/jwks.json", 200),
        ("/v1/shows", 200),
        ("/healthz", 200),
        ("/readyz", 200),
        ("/openapi.json", 200),
        ("/asyncapi.json", 200),
        ("/", 200),
        ("/no/such/route", 404),
    ] {
        let res = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), status, "{path}");
    }
    // The show asks for no proof of work: there is no challenge to solve.
    let res = http
        .get(format!("{}/v1/shows/{show}/challenge", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 404);

    // Per-show series are this test's own: exact. The rest: present and
    // moved at least by what this test did.
    let samples = scrape(&app).await;
    let show_value = |name: &str, labels: &[(&str, &str)]| {
        let mut l = vec![("show", s.as_str())];
        l.extend_from_slice(labels);
        value(&samples, name, &l)
    };
    assert_eq!(show_value("anteroom_queue_joins_total", &[]), 3.0);
    assert_eq!(
        show_value("anteroom_promotions_total", &[("cause", "join")]),
        1.0
    );
    assert_eq!(
        show_value("anteroom_promotions_total", &[("cause", "payment")]),
        1.0
    );
    assert_eq!(
        show_value("anteroom_promotions_total", &[("cause", "leave")]),
        1.0
    );
    assert_eq!(
        show_value("anteroom_queue_exits_total", &[("reason", "completed")]),
        1.0
    );
    assert_eq!(
        show_value("anteroom_queue_exits_total", &[("reason", "left")]),
        2.0
    );
    assert_eq!(show_value("anteroom_queue_waiting", &[]), 0.0);
    assert_eq!(show_value("anteroom_queue_capacity", &[]), 1.0);
    assert_eq!(show_value("anteroom_queue_open", &[]), 1.0);

    let positive = |name: &str, labels: &[(&str, &str)]| {
        assert!(
            value(&samples, name, labels) > 0.0,
            "{name} {labels:?} did not move"
        );
    };
    positive(
        "anteroom_activation_push_seconds_count",
        &[("transport", "ws")],
    );
    for histogram in [
        "anteroom_event_latency_seconds_count",
        "anteroom_event_apply_seconds_count",
    ] {
        positive(histogram, &[("type", "payment.completed")]);
    }
    positive(
        "anteroom_activation_push_seconds_count",
        &[("transport", "sse")],
    );
    positive("anteroom_queue_wait_seconds_count", &[]);
    positive("anteroom_rank_updates_sent_total", &[]);
    positive("anteroom_reservations_total", &[("outcome", "held")]);
    positive(
        "anteroom_payments_total",
        &[("outcome", "insufficient_points")],
    );
    positive("anteroom_payments_total", &[("outcome", "completed")]);
    positive("anteroom_payments_total", &[("outcome", "replayed")]);
    positive(
        "anteroom_lock_acquisitions_total",
        &[("outcome", "acquired")],
    );
    positive("anteroom_lock_acquire_seconds_count", &[]);
    positive(
        "anteroom_cache_requests_total",
        &[("cache", "seats"), ("result", "hit")],
    );
    positive(
        "anteroom_cache_requests_total",
        &[("cache", "seats"), ("result", "miss")],
    );
    positive("anteroom_outbox_published_total", &[]);
    positive(
        "anteroom_events_applied_total",
        &[("type", "payment.completed")],
    );

    // Every route was measured under its template, and no other route
    // label exists (no raw paths, no ids).
    let routes: BTreeSet<(String, String)> = samples
        .iter()
        .filter(|s| s.name == "anteroom_http_requests_total" && s.value > 0.0)
        .map(|s| (s.labels["method"].clone(), s.labels["route"].clone()))
        .collect();
    for (method, route) in anteroom::http::ROUTES {
        if *route == "/metrics" {
            continue; // this scrape is counted after it renders
        }
        assert!(
            routes.contains(&((*method).to_owned(), (*route).to_owned())),
            "{method} {route} was not measured; measured: {routes:?}"
        );
    }
    for (method, route) in &routes {
        assert!(
            route == "unmatched"
                || anteroom::http::ROUTES
                    .iter()
                    .any(|(m, r)| m == method && r == route),
            "unexpected route label {method} {route}"
        );
    }
    assert!(
        value(
            &samples,
            "anteroom_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ) > 0.0
    );

    // The metrics-only listener serves the same exposition, and nothing else.
    let side = Node::at(([127, 0, 0, 1], metrics_port).into());
    let from_side = scrape(&side).await;
    assert!(names(&from_side).contains("anteroom_queue_joins_total"));
    let res = http
        .get(format!("{}/v1/shows", side.base))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        404,
        "the metrics listener serves only /metrics"
    );
    let _: Value = res.json().await.expect("the usual JSON error");
    app.stop().await;
}

/// A gateway process of its own (its own recorder, so its counters are this
/// test's alone), with `extra` settings. Keep the backends while it runs.
async fn gateway(backend: Backend, extra: &[(&str, String)]) -> (Process, Option<RealBackends>) {
    let backends = match backend {
        Backend::Embedded => None,
        Backend::Real => Some(RealBackends::create().await),
    };
    let mut env = match &backends {
        Some(b) => b.env(),
        None => vec![
            ("ANTEROOM_ADMIN_KEY", ADMIN_KEY.to_owned()),
            ("ANTEROOM_TICKET_SECRET", SECRET.to_owned()),
            ("ANTEROOM_SEED_DEMO", "false".to_owned()),
            ("ANTEROOM_RANK_INTERVAL_MS", "10".to_owned()),
        ],
    };
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    (Process::start(&env).await, backends)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

for_each_backend!(
    every_metric_is_exported_from_start_up,
    every_path_moves_its_metrics
);
