//! Slots freed by time: session expiry and abandonment, with no request from
//! anyone.

use std::time::Duration;

use crate::helpers::*;

async fn session_expiry_admits_the_next_fan_by_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 1, 60).await;
    let fans = app.join_many(show, "exp", 3).await;
    let mut holder = app.ws(show, fans[0].1.ticket()).await;
    assert_eq!(holder.json().await["type"], "active");
    let mut next = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(next.json().await["rank"], 1);
    let mut last = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(last.json().await["rank"], 2);

    // Nobody sends anything: the timer ends the session at its deadline.
    assert_eq!(holder.json().await["type"], "expiring");
    assert_eq!(holder.json().await, serde_json::json!({"type": "expired"}));
    assert_eq!(close_code(&holder.next().await), Some(normal_close()));
    assert_eq!(next.json().await["type"], "active");
    last.until_rank(1).await;
    let (_, status) = app.status(show, fans[0].1.ticket()).await;
    assert_eq!(status["state"], "expired");
    // And the second fan's session expires the same way.
    assert_eq!(last.json().await["type"], "active");
}

async fn a_waiting_fan_away_past_the_grace_loses_the_spot_one_back_in_time_keeps_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 1).await;
    let fans = app.join_many(show, "ab", 4).await;
    let mut holder = app.ws(show, fans[0].1.ticket()).await;
    assert_eq!(holder.json().await["type"], "active");
    let mut returning = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(returning.json().await["rank"], 1);
    let mut leaving = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(leaving.json().await["rank"], 2);
    let mut behind = app.ws(show, fans[3].1.ticket()).await;
    assert_eq!(behind.json().await["rank"], 3);

    // One fan drops and comes back within the grace; another drops for good.
    drop(returning);
    drop(leaving);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut returning = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(
        returning.json().await["rank"],
        1,
        "reconnecting within the grace keeps the rank"
    );

    behind.until_rank(2).await;
    let (_, gone) = app.status(show, fans[2].1.ticket()).await;
    assert_eq!(gone["state"], "closed");
    assert_eq!(gone["reason"], "abandoned");
    assert_eq!(app.counts(show).await, (1, 1, 2));

    // A fan who joins and neither connects nor polls is abandoned too, while
    // one who only polls keeps the spot.
    let idle = app.join(show, &app.sign_in("idle").await).await;
    let poller = app.join(show, &app.sign_in("poller").await).await;
    assert_eq!(idle.rank(), 3);
    assert_eq!(poller.rank(), 4);
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(app.status(show, poller.ticket()).await.0, 200);
    }
    let (_, idle_status) = app.status(show, idle.ticket()).await;
    assert_eq!(idle_status["reason"], "abandoned");
    let (_, poll_status) = app.status(show, poller.ticket()).await;
    assert_eq!(poll_status["rank"], 3);
    // The holder's slot was never touched by any of this.
    holder.quiet_for(Duration::from_millis(50)).await;
}

async fn a_silent_peer_is_cut_off_and_then_abandoned(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.push.heartbeat_secs = 1).await;
    let show = app.create_show(1, 600, 1).await;
    let fans = app.join_many(show, "silent", 3).await;
    let mut responsive = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(responsive.json().await["rank"], 1);
    let mut silent = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(silent.json().await["rank"], 2);

    // The silent client stops reading, so it answers no pings; its TCP
    // connection stays open. The responsive one keeps reading (and ponging)
    // until the silent one is cut off and then abandoned.
    // (Watched through the counts: a status poll would keep the spot alive.)
    let abandoned = eventually("one fan left waiting", || async {
        app.counts(show).await.2 == 1
    });
    tokio::select! {
        () = abandoned => {}
        () = responsive.quiet_for(PATIENCE) => panic!("the silent fan was never abandoned"),
    }
    assert_eq!(
        app.status(show, fans[2].1.ticket()).await.1["reason"],
        "abandoned"
    );
    assert_eq!(app.status(show, fans[1].1.ticket()).await.1["rank"], 1);
    drop(silent);
}

async fn connections_closing_at_once_are_each_detached_and_abandoned(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 3).await;
    // Each fan connects as soon as they joined: present from the start, so
    // however slowly the joins go, nobody is abandoned before the closes.
    let mut fans = Vec::with_capacity(42);
    let mut sockets = Vec::with_capacity(42);
    for i in 0..42 {
        let fan = app.sign_in(&format!("mass{i}")).await;
        let spot = app.join(show, &fan).await;
        let mut ws = app.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        let expected = if i == 0 { "active" } else { "rank" };
        assert_eq!(first["type"], expected, "fan {i}: {first}");
        fans.push((fan, spot));
        sockets.push(ws);
    }

    // Forty waiting fans close at once (the node detaches them in batches);
    // the active one and the last in line stay.
    let mut last = sockets.pop().expect("the last fan");
    let holder = sockets.remove(0);
    drop(sockets);
    last.until_rank(1).await;
    assert_eq!(app.counts(show).await, (1, 1, 1));
    for (_, spot) in &fans[1..41] {
        let (_, gone) = app.status(show, spot.ticket()).await;
        assert_eq!(gone["reason"], "abandoned", "{gone}");
    }
    // Each close uncounted its own connection only: the fans who stayed are
    // still present once the grace has passed for everyone else.
    let (_, stayed) = app.status(show, fans[41].1.ticket()).await;
    assert_eq!(stayed["rank"], 1);
    drop(holder);
}

crate::for_each_backend!(
    connections_closing_at_once_are_each_detached_and_abandoned,
    session_expiry_admits_the_next_fan_by_itself,
    a_waiting_fan_away_past_the_grace_loses_the_spot_one_back_in_time_keeps_it,
    a_silent_peer_is_cut_off_and_then_abandoned,
);
