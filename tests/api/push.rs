//! Ranks and admission pushed over WebSocket and SSE, and the REST fallback.

use anteroom::domain::{ShowId, UserId};

use crate::helpers::*;

async fn twenty_fans_capacity_three_leave_promotes_and_ranks_move(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(3, 600, 60).await;
    let fans = app.join_many(show, "fan", 20).await;

    for (i, (_, spot)) in fans.iter().enumerate() {
        if i < 3 {
            assert_eq!(spot.state(), "active", "fan {i}");
            assert!(spot.body["access_token"].is_string());
            assert!(spot.body["active_until"].is_string());
        } else {
            assert_eq!(spot.state(), "waiting", "fan {i}");
            assert_eq!(spot.rank(), i as u64 - 2, "fan {i}");
            assert_eq!(spot.body["ahead"], i as u64 - 3);
        }
    }
    assert_eq!(app.counts(show).await, (3, 3, 17));

    let mut sockets = Vec::new();
    for (i, (_, spot)) in fans.iter().enumerate() {
        let mut ws = app.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        if i < 3 {
            assert_eq!(first["type"], "active");
        } else {
            assert_eq!(first["type"], "rank");
            assert_eq!(
                first["rank"],
                i as u64 - 2,
                "first message is the current rank"
            );
        }
        sockets.push(ws);
    }

    assert_eq!(app.leave(show, fans[1].1.ticket()).await, 204);

    // The fan who was first in line is admitted by push...
    let admitted = sockets[3].json().await;
    assert_eq!(admitted["type"], "active", "{admitted}");
    assert!(admitted["access_token"].is_string());
    // ...and every fan behind is pushed their new, exact rank.
    for (i, ws) in sockets.iter_mut().enumerate().skip(4) {
        ws.until_rank(i as u64 - 3).await;
    }
    // The fan who left is told so and the socket closes normally.
    let left = sockets[1].json().await;
    assert_eq!(
        left,
        serde_json::json!({"type": "closed", "reason": "left"})
    );
    assert_eq!(close_code(&sockets[1].next().await), Some(normal_close()));
    // Fans not affected hear nothing more.
    sockets[0]
        .quiet_for(std::time::Duration::from_millis(100))
        .await;
    assert_eq!(app.counts(show).await, (3, 3, 16));

    // Repeat join keeps the same spot.
    let again = app.join(show, &fans[10].0).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.rank(), 7);
}

async fn sse_and_rest_polling_fans_follow_the_same_queue(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "mix", 4).await;
    let (holder, sse_fan, poll_fan, ws_fan) = (&fans[0].1, &fans[1].1, &fans[2].1, &fans[3].1);
    assert_eq!(holder.state(), "active");

    let mut sse = app.sse(show, sse_fan.ticket()).await;
    assert_eq!(sse.json().await["rank"], 1);
    let (code, polled) = app.status(show, poll_fan.ticket()).await;
    assert_eq!(code, 200);
    assert_eq!(polled["state"], "waiting");
    assert_eq!(polled["rank"], 2);
    assert_eq!(polled["ahead"], 1);
    assert!(polled["poll_after_ms"].as_u64().expect("poll_after_ms") > 0);
    let mut ws = app.ws(show, ws_fan.ticket()).await;
    assert_eq!(ws.json().await["rank"], 3);

    assert_eq!(app.leave(show, holder.ticket()).await, 204);
    let admitted = sse.json().await;
    assert_eq!(admitted["type"], "active", "{admitted}");
    ws.until_rank(2).await;
    let (_, polled) = app.status(show, poll_fan.ticket()).await;
    assert_eq!(polled["rank"], 1);

    // The SSE fan's payment frees the slot for the polling fan.
    let session = session_of(admitted["access_token"].as_str().expect("token"));
    app.app
        .queue()
        .complete_payment(ShowId(show), UserId(fans[1].0.user_id), session)
        .await
        .expect("payment event published");
    assert_eq!(
        sse.json().await,
        serde_json::json!({"type": "closed", "reason": "completed"})
    );
    assert!(
        sse.next().await.is_none(),
        "the stream ends after a terminal message"
    );
    eventually("the polling fan is admitted", || async {
        app.status(show, poll_fan.ticket()).await.1["state"] == "active"
    })
    .await;
    let (_, polled) = app.status(show, poll_fan.ticket()).await;
    assert!(polled["access_token"].is_string());
    ws.until_rank(1).await;

    // A reconnecting SSE client (Last-Event-ID) starts from the current state.
    let mut again = app.sse(show, ws_fan.ticket()).await;
    assert_eq!(again.json().await["rank"], 1);
}

async fn paused_show_queues_but_admits_nobody_until_resumed(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(2, 600, 60).await;
    let pause = app
        .client
        .post(format!("{}/v1/admin/shows/{show}/pause", app.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(pause.status(), 200);
    let fans = app.join_many(show, "p", 3).await;
    assert!(fans.iter().all(|(_, s)| s.state() == "waiting"));
    // A fan who connects while the show is paused hears so after the rank.
    let mut first = app.ws(show, fans[0].1.ticket()).await;
    assert_eq!(first.json().await["rank"], 1);
    assert_eq!(first.json().await, serde_json::json!({"type": "paused"}));
    let mut third = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(third.json().await["rank"], 3);
    assert_eq!(third.json().await["type"], "paused");

    let resume = app
        .client
        .post(format!("{}/v1/admin/shows/{show}/resume", app.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(resume.status(), 200);
    // Admitted (a fresh rank may come first: the resume is news too).
    loop {
        let msg = first.json().await;
        if msg["type"] == "active" {
            break;
        }
        assert_eq!(msg["type"], "rank", "{msg}");
    }
    third.until_rank(1).await;
    assert_eq!(app.counts(show).await, (2, 2, 1));
}

async fn a_late_payment_event_never_ends_a_later_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fan = app.sign_in("late").await;
    let first = app.join(show, &fan).await;
    let old_session = session_of(first.body["access_token"].as_str().expect("token"));
    assert_eq!(app.leave(show, first.ticket()).await, 204);
    let second = app.join(show, &fan).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.state(), "active");
    let mut ws = app.ws(show, second.ticket()).await;
    assert_eq!(ws.json().await["type"], "active");

    let applied = app.app.queue().events_applied();
    app.app
        .queue()
        .complete_payment(ShowId(show), UserId(fan.user_id), old_session)
        .await
        .expect("published");
    // Wait until the event has been applied, then check it changed nothing.
    eventually("the late event is applied", || async {
        app.app.queue().events_applied() > applied
    })
    .await;
    ws.quiet_for(std::time::Duration::from_millis(50)).await;
    assert_eq!(app.status(show, second.ticket()).await.1["state"], "active");

    let current = session_of(second.body["access_token"].as_str().expect("token"));
    app.app
        .queue()
        .complete_payment(ShowId(show), UserId(fan.user_id), current)
        .await
        .expect("published");
    assert_eq!(
        ws.json().await,
        serde_json::json!({"type": "closed", "reason": "completed"})
    );
}

/// A fan behind `push.front_ranks` on a node over its frame budget gets a
/// fresh rank only after the stretched interval; the front is not held back.
async fn a_fan_behind_the_front_gets_the_stretched_rank_interval(backend: Backend) {
    let stretched = std::time::Duration::from_millis(800);
    let app = spawn_app_with(backend, |s| {
        s.push.front_ranks = 1;
        // One frame a second: the front alone is over it, so everyone behind
        // gets the maximum.
        s.push.frame_budget = 1;
        s.push.max_rank_interval_ms = 800;
    })
    .await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "fan", 4).await;
    let mut front = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(front.json().await["rank"], 1);
    let connected = std::time::Instant::now();
    let mut behind = app.ws(show, fans[3].1.ticket()).await;
    assert_eq!(behind.json().await["rank"], 3);

    assert_eq!(app.leave(show, fans[0].1.ticket()).await, 204);
    assert_eq!(front.json().await["type"], "active");
    let moved = behind.json().await;
    assert_eq!(moved["rank"], 2, "{moved}");
    // The server sent the first frame after `connected`, so the second
    // cannot have left before `connected + stretched`.
    assert!(
        connected.elapsed() >= stretched,
        "the rank behind the front came after {:?}",
        connected.elapsed()
    );
}

crate::for_each_backend!(
    a_fan_behind_the_front_gets_the_stretched_rank_interval,
    twenty_fans_capacity_three_leave_promotes_and_ranks_move,
    sse_and_rest_polling_fans_follow_the_same_queue,
    paused_show_queues_but_admits_nobody_until_resumed,
    a_late_payment_event_never_ends_a_later_session,
);
