//! The operators' and newcomers' side: the busiest-first show list, the
//! page served from inside the binary, the access log, and the estimate
//! accuracy metric.

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::for_each_backend;
use crate::helpers::*;

/// A show whose line is long enough that nobody is admitted but the first
/// `capacity` fans, and nobody is abandoned during a test.
async fn show(app: &TestApp, title: &str, capacity: u64) -> u64 {
    app.create_show_from(json!({"title": title, "capacity": capacity,
        "session_ttl_seconds": 600, "abandon_grace_seconds": 600}))
        .await
}

/// `ours` in the order `GET /v1/shows?sort=demand` lists them, with the
/// demand each one shows.
async fn by_demand(app: &TestApp, ours: &[u64]) -> Vec<(u64, u64)> {
    let shows: Vec<Value> = app.get_json("/v1/shows?sort=demand").await;
    shows
        .iter()
        .filter(|s| ours.iter().any(|id| s["id"] == *id))
        .map(|s| {
            let q = &s["queue"];
            let demand = ["waiting", "prequeued", "active"]
                .iter()
                .map(|k| q[*k].as_u64().expect("a count"))
                .sum();
            (s["id"].as_u64().expect("id"), demand)
        })
        .collect()
}

/// Busiest first, whatever moved the counts: joins to the line and to the
/// pre-queue, admissions (which move fans, not demand), leaving, and the
/// end of a sale; equal demand by id; a bad `sort` changes nothing and says
/// why.
async fn the_show_list_ranks_shows_by_live_demand(backend: Backend) {
    let app = spawn_app(backend).await;
    let quiet = show(&app, "Quiet", 1).await;
    let busy = show(&app, "Busy", 1).await;
    let middling = show(&app, "Middling", 1).await;
    let soon = app
        .create_show_from(json!({"title": "Soon", "capacity": 1,
            "session_ttl_seconds": 600, "abandon_grace_seconds": 600,
            "prequeue_opens_at": (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
            "starts_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}))
        .await;
    let ours = [quiet, busy, middling, soon];

    // Nobody anywhere: id order.
    assert_eq!(
        by_demand(&app, &ours).await,
        ours.iter().map(|id| (*id, 0)).collect::<Vec<_>>()
    );

    app.join_many(quiet, "quiet", 1).await;
    let busy_fans = app.join_many(busy, "busy", 3).await;
    app.join_many(middling, "middling", 2).await;
    let early = app.join_many(soon, "soon", 4).await;
    assert_eq!(early[0].1.state(), "prequeued");
    assert_eq!(busy_fans[0].1.state(), "active");
    assert_eq!(
        by_demand(&app, &ours).await,
        [(soon, 4), (busy, 3), (middling, 2), (quiet, 1)]
    );

    // Two of the busy show's waiting fans leave: it ties with the quiet
    // show, which has the lower id.
    for (_, spot) in &busy_fans[1..] {
        assert_eq!(app.leave(busy, spot.ticket()).await, 204);
    }
    assert_eq!(
        by_demand(&app, &ours).await,
        [(soon, 4), (middling, 2), (quiet, 1), (busy, 1)]
    );

    // Closing a sale lets its pre-queue go: no demand left.
    let (status, body) = app
        .admin(Method::POST, &format!("/v1/admin/shows/{soon}/close"), None)
        .await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(
        by_demand(&app, &ours).await,
        [(middling, 2), (quiet, 1), (busy, 1), (soon, 0)]
    );

    // The default is id order; a bad sort is a 400 that names the choices.
    let plain: Vec<Value> = app.get_json("/v1/shows").await;
    let ids: Vec<u64> = plain
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .filter(|id| ours.contains(id))
        .collect();
    assert_eq!(ids, ours);
    let res = reqwest::get(format!("{}/v1/shows?sort=popular", app.base))
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("demand"), "{message}");
}

for_each_backend!(the_show_list_ranks_shows_by_live_demand);
