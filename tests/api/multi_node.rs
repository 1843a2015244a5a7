//! Several gateway processes sharing Redis, MySQL and Kafka.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_on_one_node_admits_a_fan_on_the_other_and_ranks_stay_exact() {
    let backends = RealBackends::create().await;
    let (a, b) = Process::pair(&backends.env()).await;

    let show = a.create_show(1, 600, 60).await;
    let holder = a.join(show, &a.sign_in("holder").await).await;
    assert_eq!(holder.state(), "active");
    let first = b.join(show, &b.sign_in("first").await).await;
    assert_eq!(first.rank(), 1);
    let second = a.join(show, &a.sign_in("second").await).await;
    assert_eq!(second.rank(), 2);
    let third = b.join(show, &b.sign_in("third").await).await;
    assert_eq!(third.rank(), 3);

    // Fans hold sockets on the node they did not join through.
    let mut first_ws = a.ws(show, first.ticket()).await;
    assert_eq!(first_ws.json().await["rank"], 1);
    let mut second_ws = b.ws(show, second.ticket()).await;
    assert_eq!(second_ws.json().await["rank"], 2);
    let mut third_ws = a.ws(show, third.ticket()).await;
    assert_eq!(third_ws.json().await["rank"], 3);

    // The holder leaves through node B; the fan on node A is admitted.
    assert_eq!(b.leave(show, holder.ticket()).await, 204);
    assert_eq!(first_ws.json().await["type"], "active");
    second_ws.until_rank(1).await;
    third_ws.until_rank(2).await;
    // Both nodes answer the same, exact ranks.
    for node in [&*a, &*b] {
        assert_eq!(node.status(show, third.ticket()).await.1["rank"], 2);
        assert_eq!(node.counts(show).await, (1, 1, 2));
    }
    // A waiting fan leaving through node A moves ranks on node B too.
    assert_eq!(a.leave(show, second.ticket()).await, 204);
    third_ws.until_rank(1).await;

    // How spots ended is kept a day, not forever.
    let ttl = backends.pttl(&format!("{{show:{show}}}:ended")).await;
    assert!(
        ttl > 23 * 3600 * 1000 && ttl <= 24 * 3600 * 1000,
        "ttl {ttl}"
    );

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_two_nodes_at_once_are_answered_with_the_truth() {
    let backends = RealBackends::create().await;
    let (a, b) = Process::pair(&backends.env()).await;
    crate::concurrency::concurrent_joins_are_answered_with_the_truth(&[&a, &b], 25).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiring_with_two_nodes_up_is_promoted_once() {
    let backends = RealBackends::create().await;
    let env = backends.env();
    let a = Process::start(&env).await;
    let b = Process::start(&env).await;

    let show = a.create_show(1, 1, 60).await;
    let holder = a.join(show, &a.sign_in("h").await).await;
    assert_eq!(holder.state(), "active");
    let next = b.join(show, &b.sign_in("n").await).await;
    let last = a.join(show, &a.sign_in("l").await).await;
    let mut next_ws = b.ws(show, next.ticket()).await;
    assert_eq!(next_ws.json().await["rank"], 1);
    let mut last_ws = a.ws(show, last.ticket()).await;
    assert_eq!(last_ws.json().await["rank"], 2);

    // Both nodes run the holder's expiry timer; exactly one fan is promoted.
    assert_eq!(next_ws.json().await["type"], "active");
    last_ws.until_rank(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in [&*a, &*b] {
        assert_eq!(
            node.counts(show).await,
            (1, 1, 1),
            "one active, one waiting"
        );
        assert_eq!(
            node.status(show, holder.ticket()).await.1["state"],
            "expired"
        );
    }
    // And the next expiry promotes the last fan, once.
    assert_eq!(last_ws.json().await["type"], "active");
    assert_eq!(a.counts(show).await, (1, 1, 0));

    a.stop().await;
    b.stop().await;
}

/// The on-sale with two nodes: the pre-queue opens once (a permutation of
/// the fans who pre-queued on either node), and an operator's change on one
/// node takes effect at once on the other (capacity, pause, close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_and_operator_changes_reach_every_node() {
    let backends = RealBackends::create().await;
    let (a, b) = Process::pair(&backends.env()).await;
    let at = |ms: i64| (chrono::Utc::now() + chrono::Duration::milliseconds(ms)).to_rfc3339();
    let show = a
        .create_show_from(serde_json::json!({"title": "Two nodes", "capacity": 1,
            "session_ttl_seconds": 600, "prequeue_opens_at": at(500), "starts_at": at(3_500)}))
        .await;
    eventually("node B sees the pre-queue open", || async {
        b.show_state(show).await == "prequeue"
    })
    .await;
    let mut spots = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..6 {
        let (join_node, push_node) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let spot = join_node
            .join(show, &join_node.sign_in(&format!("two{i}")).await)
            .await;
        assert_eq!(spot.state(), "prequeued", "{:?}", spot.body);
        let mut ws = push_node.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["type"], "prequeue");
        spots.push(spot);
        sockets.push(ws);
    }
    for ws in &mut sockets {
        let msg = ws.json().await;
        assert!(msg["type"] == "rank" || msg["type"] == "active", "{msg}");
    }
    for node in [&*a, &*b] {
        eventually("both nodes agree on the opened line", || async {
            node.counts(show).await == (1, 1, 5)
        })
        .await;
    }
    let mut ranks = std::collections::BTreeMap::new();
    for (i, spot) in spots.iter().enumerate() {
        let (_, on_a) = a.status(show, spot.ticket()).await;
        let (_, on_b) = b.status(show, spot.ticket()).await;
        assert_eq!(on_a["state"], on_b["state"]);
        assert_eq!(on_a["rank"], on_b["rank"]);
        if let Some(rank) = on_a["rank"].as_u64() {
            ranks.insert(rank, i);
        }
    }
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    // More capacity through node A admits at once, on node B's view too.
    let (code, _) = a
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/admin/shows/{show}"),
            Some(serde_json::json!({"capacity": 3})),
        )
        .await;
    assert_eq!(code, 200);
    eventually("node B sees three active", || async {
        b.counts(show).await == (3, 3, 3)
    })
    .await;
    // The nodes followed the store's draw: the fans they ranked 1 and 2
    // are the ones the store admitted next.
    for rank in [1, 2] {
        let (_, status) = a.status(show, spots[ranks[&rank]].ticket()).await;
        assert_eq!(status["state"], "active", "rank {rank}: {status}");
    }
    // A pause through node B reaches connections on node A.
    let waiting: Vec<usize> = {
        let mut w = Vec::new();
        for (i, spot) in spots.iter().enumerate() {
            if a.status(show, spot.ticket()).await.1["state"] == "waiting" {
                w.push(i);
            }
        }
        w
    };
    assert_eq!(waiting.len(), 3);
    let (code, _) = b
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/shows/{show}/pause"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(a.show_state(show).await, "paused");
    for i in &waiting {
        loop {
            let msg = sockets[*i].json().await;
            if msg["type"] == "paused" {
                break;
            }
            assert_eq!(msg["type"], "rank", "{msg}");
        }
    }
    // A notice set through node A reaches every connection, on both nodes.
    let (code, _) = a
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/admin/shows/{show}"),
            Some(serde_json::json!({"notice": "Doors at seven"})),
        )
        .await;
    assert_eq!(code, 200);
    for ws in &mut sockets {
        loop {
            let msg = ws.json().await;
            if msg["type"] == "notice" {
                assert_eq!(msg["text"], "Doors at seven", "{msg}");
                break;
            }
            assert!(
                ["rank", "active", "paused"].contains(&msg["type"].as_str().unwrap_or("")),
                "{msg}"
            );
        }
    }
    // Closing through node A lets the line go on node B.
    let (code, _) = a
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/shows/{show}/close"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    for i in &waiting {
        loop {
            let msg = sockets[*i].json().await;
            if msg["type"] == "closed" {
                assert_eq!(msg["reason"], "show_closed");
                break;
            }
        }
    }
    assert_eq!(b.counts(show).await, (3, 3, 0));
    a.stop().await;
    b.stop().await;
}
