//! A queue that Redis lost (a restart without persistence, a FLUSHALL) is
//! rebuilt in its original order, and no fan is told they left. Each test
//! runs a redis-server of its own (never the shared one).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Reads a waiting fan's socket until `rank`, failing on anything but rank
/// frames (`closed` above all).
async fn ranks_until(ws: &mut WsFan, rank: u64) {
    ws.until_rank(rank).await;
}

/// Reads a socket until `active`, failing on anything but rank frames.
async fn until_active(ws: &mut WsFan) {
    loop {
        let msg = ws.json().await;
        match msg["type"].as_str() {
            Some("active") => return,
            Some("rank") => continue,
            _ => panic!("expected rank frames then active, got {msg}"),
        }
    }
}

/// Reads a socket until `active` (rank frames before it), for as long as
/// `patience`: longer than the socket helpers' own, to wait out a rebuild
/// hold. Returns when `active` came.
async fn until_active_within(ws: &mut WsFan, patience: Duration) -> Instant {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.stream.next())
            .await
            .unwrap_or_else(|_| panic!("no `active` within {patience:?}"));
        let msg: Value = match msg {
            Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).expect("json frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected rank frames then active, got {other:?}"),
        };
        match msg["type"].as_str() {
            Some("active") => return Instant::now(),
            Some("rank") => continue,
            _ => panic!("expected rank frames then active, got {msg}"),
        }
    }
}

/// Every waiting fan's rank by REST status, in the order given.
async fn ranks(node: &Node, show: u64, spots: &[&Spot]) -> Vec<Value> {
    let mut out = Vec::with_capacity(spots.len());
    for spot in spots {
        let (code, body) = node.status(show, spot.ticket()).await;
        assert_eq!(code, 200, "{body}");
        out.push(body["rank"].clone());
    }
    out
}

fn expected(from: u64, n: usize) -> Vec<Value> {
    (from..from + n as u64).map(|r| json!(r)).collect()
}

/// Drill 6: Redis loses its data (FLUSHALL) mid-sale, with 30 fans waiting
/// on WebSockets and 3 active. The node's memory puts everyone back: the
/// waiting in their original order, the active as active; connected and
/// reconnecting fans keep their ranks and are never told `closed`; a fan who
/// joins afterwards goes behind; fans who never come back are abandoned
/// after the grace; active never exceeds capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_queue_is_rebuilt_from_the_nodes_memory_in_order() {
    let redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |_| {}).await;
    let grace = 5;
    let show = app.create_show(3, 600, grace).await;
    let fans = app.join_many(show, "f", 33).await;
    for (_, spot) in &fans[..3] {
        assert_eq!(spot.state(), "active");
    }
    let waiting: Vec<&Spot> = fans[3..].iter().map(|(_, s)| s).collect();
    let mut sockets = Vec::new();
    for (i, spot) in waiting.iter().enumerate() {
        let mut ws = app.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["rank"], i as u64 + 1);
        sockets.push(Some(ws));
    }
    // Ten fans drop their sockets: five come back after the loss, five
    // never do.
    for ws in &mut sockets[20..] {
        *ws = None;
    }

    redis.flush_all().await;

    // Fans reconnecting find their places; the store call of the first one
    // reveals the loss (nobody joins or is admitted meanwhile), and the node
    // puts back everyone it remembers.
    for (i, ws) in sockets.iter_mut().enumerate().take(25).skip(20) {
        let mut again = app.ws(show, waiting[i].ticket()).await;
        assert_eq!(again.json().await["rank"], i as u64 + 1);
        *ws = Some(again);
    }
    eventually("the queue is rebuilt", || async {
        app.counts(show).await == (3, 3, 30)
    })
    .await;
    // A fan joining now goes behind everyone who was there.
    let late_fan = app.sign_in("late").await;
    let late = app.join(show, &late_fan).await;
    assert_eq!(late.status, 201, "{:?}", late.body);
    assert_eq!(late.state(), "waiting");
    assert_eq!(late.rank(), 31, "{:?}", late.body);
    let mut late_ws = app.ws(show, late.ticket()).await;
    assert_eq!(late_ws.json().await["rank"], 31);
    assert_eq!(app.counts(show).await, (3, 3, 31));
    assert_eq!(ranks(&app, show, &waiting).await, expected(1, 30));
    for (_, spot) in &fans[..3] {
        assert_eq!(app.status(show, spot.ticket()).await.1["state"], "active");
    }

    // The five who never came back are abandoned after the grace (from
    // their last poll, just above); the connected ones (counted again after
    // the rebuild) are not.
    let patience = Duration::from_secs(grace + 15);
    let deadline = Instant::now() + patience;
    loop {
        let counts = app.counts(show).await;
        if counts == (3, 3, 26) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fans who never came back are abandoned within {patience:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ranks(&app, show, &waiting[..25]).await, expected(1, 25));
    ranks_until(&mut late_ws, 26).await;

    // The queue moves as usual: an active fan leaves, the first waiting fan
    // is admitted, everyone else moves up one; nobody was told `closed`.
    assert_eq!(app.leave(show, fans[0].1.ticket()).await, 204);
    let mut connected = sockets.into_iter().flatten();
    until_active(&mut connected.next().expect("the first fan's socket")).await;
    for (i, mut ws) in connected.enumerate() {
        ranks_until(&mut ws, i as u64 + 1).await;
    }
    ranks_until(&mut late_ws, 25).await;
    assert_eq!(app.counts(show).await, (3, 3, 25));
}

/// Two nodes remember the queue when Redis loses it; a join on one reveals
/// the loss there, the other hears of it from the first's changes, and both
/// put the queue back: each spot once, in order, fans on either node keep
/// their places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_rebuild_a_flushed_queue_once() {
    let redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let (a, b) = Process::pair(&backends.env()).await;
    let show = a.create_show(2, 600, 120).await;
    let fans = a.join_many(show, "m", 12).await;
    let waiting: Vec<&Spot> = fans[2..].iter().map(|(_, s)| s).collect();
    let mut sockets = Vec::new();
    for (i, spot) in waiting.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let mut ws = node.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["rank"], i as u64 + 1);
        sockets.push(ws);
    }

    redis.flush_all().await;
    let late = b.join(show, &b.sign_in("late").await).await;
    assert_eq!(late.rank(), 11, "{:?}", late.body);
    for node in [&a, &b] {
        eventually("both nodes follow the rebuilt queue", || async {
            node.counts(show).await == (2, 2, 11)
        })
        .await;
        assert_eq!(ranks(node, show, &waiting).await, expected(1, 10));
    }

    assert_eq!(a.leave(show, fans[0].1.ticket()).await, 204);
    let mut connected = sockets.into_iter();
    until_active(&mut connected.next().expect("the first fan's socket")).await;
    for (i, mut ws) in connected.enumerate() {
        ranks_until(&mut ws, i as u64 + 1).await;
    }
    assert_eq!(b.counts(show).await, (2, 2, 10));
    a.stop().await;
    b.stop().await;
}

/// Drill 1: Redis killed for 10 s during a sale, then back empty. Every
/// answer meanwhile is 2xx or 503 with `Retry-After`, fast; afterwards the
/// queue is rebuilt in its original order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_for_ten_seconds_answers_503_then_rebuilds_the_queue() {
    let mut redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |_| {}).await;
    let show = app.create_show(3, 600, 120).await;
    let fans = app.join_many(show, "k", 20).await;
    let waiting: Vec<&Spot> = fans[3..].iter().map(|(_, s)| s).collect();
    let mut sockets = Vec::new();
    for (i, spot) in waiting.iter().enumerate() {
        let mut ws = app.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["rank"], i as u64 + 1);
        sockets.push(ws);
    }
    let newcomers: Vec<Fan> = {
        let mut out = Vec::new();
        for i in 0..20 {
            out.push(app.sign_in(&format!("n{i}")).await);
        }
        out
    };

    redis.kill();
    let outage = Instant::now() + Duration::from_secs(10);
    let mut answers: Vec<(String, u16, bool, Duration)> = Vec::new();
    let mut i = 0;
    while Instant::now() < outage {
        let requests = [
            (
                "status",
                app.client
                    .get(format!("{}/v1/shows/{show}/queue/status", app.base))
                    .header("x-queue-ticket", waiting[i % waiting.len()].ticket()),
            ),
            (
                "join",
                app.client
                    .post(format!("{}/v1/shows/{show}/queue", app.base))
                    .bearer_auth(&newcomers[i % newcomers.len()].token),
            ),
            ("shows", app.client.get(format!("{}/v1/shows", app.base))),
        ];
        for (what, request) in requests {
            let started = Instant::now();
            let res = request.send().await.expect("the gateway answers");
            let took = started.elapsed();
            let retry_after = res.headers().contains_key("retry-after");
            answers.push((what.to_owned(), res.status().as_u16(), retry_after, took));
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (what, code, retry_after, took) in &answers {
        assert!(
            (200..300).contains(code) || (*code == 503 && *retry_after),
            "{what} answered {code} (Retry-After: {retry_after}) after {took:?}"
        );
    }
    let mut unavailable: Vec<Duration> = answers
        .iter()
        .filter(|(_, code, _, _)| *code == 503)
        .map(|(_, _, _, took)| *took)
        .collect();
    assert!(
        !unavailable.is_empty(),
        "Redis-backed calls fail while it is down"
    );
    unavailable.sort();
    let p99 = unavailable[(unavailable.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "drill 1: {} answers to 503 during the outage: median {:?}, p99 {p99:?}, slowest {:?}",
        unavailable.len(),
        unavailable[unavailable.len() / 2],
        unavailable[unavailable.len() - 1]
    );

    redis.restart().await;
    // The change feed reconnects, finds the queue gone, and this node puts
    // it back from memory.
    eventually("the queue is rebuilt", || async {
        app.counts_now(show).await == Some((3, 3, 17))
    })
    .await;
    assert_eq!(ranks(&app, show, &waiting).await, expected(1, 17));
    for (_, spot) in &fans[..3] {
        assert_eq!(app.status(show, spot.ticket()).await.1["state"], "active");
    }
    let late = app.join(show, &newcomers[0]).await;
    assert_eq!(late.rank(), 18, "{:?}", late.body);
    assert_eq!(app.leave(show, fans[0].1.ticket()).await, 204);
    let mut connected = sockets.into_iter();
    until_active(&mut connected.next().expect("the first fan's socket")).await;
    for (i, mut ws) in connected.enumerate() {
        ranks_until(&mut ws, i as u64 + 1).await;
    }

    assert!(
        p99 <= Duration::from_secs(1),
        "p99 time to a 503 while Redis is down: {p99:?} (of {} answers: {answers:?})",
        unavailable.len()
    );
}

/// The gateway process restarts and Redis comes back empty: no node
/// remembers the queue. Fans come back with their tickets (last first: a
/// join sending it along, a poll, sockets) and get their original places; admitted fans come back with their access
/// tokens and are active again, counting against capacity; a fan joining
/// meanwhile goes behind, and admission waits out the rebuild hold, so the
/// order is the original one, not the order of return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_and_a_lost_queue_tickets_and_tokens_rebuild_it() {
    let mut redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let key = admission_key_file();
    let mut env = backends.env();
    env.push(("ANTEROOM_ADMISSION_KEY_FILE", key.display().to_string()));
    // The hold covers every return below with room to spare on a loaded
    // machine; the test then waits it out (admission after it is observed).
    env.push((
        "ANTEROOM_TOKENS__REBUILD_HOLD_MS",
        RESTART_HOLD.as_millis().to_string(),
    ));
    let first = Process::start(&env).await;
    let show = first.create_show_with_seats(2, 600, 10, 10).await;
    let fans = first.join_many(show, "t", 10).await;
    let active: Vec<&Spot> = fans[..2].iter().map(|(_, s)| s).collect();
    let waiting: Vec<&Spot> = fans[2..].iter().map(|(_, s)| s).collect();
    first.stop().await;
    redis.restart().await;

    let app = Process::start(&env).await;
    // The hold starts with the first return, the join just below: no
    // earlier than now.
    let before_returns = Instant::now();
    // The last waiting fan joins again, sending the ticket along: the same
    // place, not a new one at the back.
    let (last_fan, last) = &fans[9];
    let res = app
        .client
        .post(format!("{}/v1/shows/{show}/queue", app.base))
        .bearer_auth(&last_fan.token)
        .header("x-queue-ticket", last.ticket())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "the spot was there already");
    assert_eq!(res.json::<Value>().await.expect("json")["rank"], 1);
    // The one before polls; the others reconnect their sockets, last first.
    let (code, body) = app.status(show, waiting[6].ticket()).await;
    assert_eq!((code, body["rank"].clone()), (200, json!(1)), "{body}");
    let mut sockets = Vec::new();
    for spot in waiting[..6].iter().rev() {
        let mut ws = app.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        assert_eq!(first["type"], "rank", "{first}");
        sockets.push((ws, first["rank"].clone()));
    }
    sockets.reverse();
    // A fan joining now goes behind, and is not admitted although no slot
    // is taken yet: admission waits for the admitted fans to come back.
    let late = app.join(show, &app.sign_in("late").await).await;
    assert_eq!(late.state(), "waiting", "{:?}", late.body);
    assert_eq!(late.rank(), 9, "{:?}", late.body);
    // The admitted fans' tokens put their sessions back: one holds a seat,
    // the other's is checked by an origin.
    let (_, seats) = app.seats(show).await;
    let seat = seats[0]["seat_id"].as_u64().expect("seat id");
    let (code, body) = app
        .reserve(show, &fans[0].0, active[0].access(), seat)
        .await;
    assert_eq!(code, 201, "{body}");
    let res = app
        .client
        .post(format!("{}/v1/admission/introspect", app.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "token": active[1].access() }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json")["active"], true);
    assert_eq!(app.counts(show).await, (2, 2, 9));
    assert_eq!(ranks(&app, show, &waiting).await, expected(1, 8));
    for (i, (ws, first)) in sockets.iter_mut().enumerate() {
        if *first != json!(i + 1) {
            ranks_until(ws, i as u64 + 1).await;
        }
    }

    // An admitted fan leaves; the first in the original order goes in once
    // the hold is over (not before, although a slot is free), everyone else
    // moves up one.
    assert!(
        before_returns.elapsed() < RESTART_HOLD,
        "the returns took {:?}, longer than the hold ({RESTART_HOLD:?})",
        before_returns.elapsed()
    );
    assert_eq!(app.leave(show, active[0].ticket()).await, 204);
    let mut connected = sockets.into_iter().map(|(ws, _)| ws);
    let admitted = until_active_within(
        &mut connected.next().expect("the first fan's socket"),
        RESTART_HOLD + PATIENCE,
    )
    .await;
    assert!(
        admitted.duration_since(before_returns) + HOLD_SLACK >= RESTART_HOLD,
        "admitted {:?} after the first return, before the hold ({RESTART_HOLD:?}) was over",
        admitted.duration_since(before_returns)
    );
    for (i, mut ws) in connected.enumerate() {
        ranks_until(&mut ws, i as u64 + 1).await;
    }
    assert_eq!(app.counts(show).await, (2, 2, 8));
    app.stop().await;
    std::fs::remove_file(&key).ok();
}

/// The rebuild hold of the restart tests: far longer than the returns take
/// even on a loaded machine, short enough to wait out.
const RESTART_HOLD: Duration = Duration::from_secs(20);

/// How much earlier than the test's own clock says a hold may end: the
/// gateway's timestamps are whole milliseconds, its timers a little coarse.
const HOLD_SLACK: Duration = Duration::from_millis(200);

/// An Ed25519 admission key both gateway processes of a test load, so
/// access tokens outlive a restart (as with `admission.key_file` in
/// production).
fn admission_key_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("anteroom-admission-{}.pem", short_id()));
    std::fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEIC5GUwX9DQOow1B8LG3xvVfHpSpoP+GVu19qvEooeGwD\n\
         -----END PRIVATE KEY-----\n",
    )
    .expect("write the admission key");
    path
}

/// The in-process queue store (one node, shows in MySQL) loses its queue
/// with its process: after a restart, fans' tickets put them back in their
/// original order, ahead of a fan who joins afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_queue_lost_in_a_restart_is_rebuilt_from_tickets() {
    let database = create_database(&short_id()).await;
    let settings = |s: &mut anteroom::config::Settings| {
        s.database.url = Some(anteroom::config::Secret::new(database.clone()));
        s.auth.mode = Some(anteroom::auth::AuthMode::Demo);
        s.tokens.rebuild_hold_ms = RESTART_HOLD.as_millis() as u64;
    };
    let first = spawn_app_with(Backend::Embedded, settings).await;
    let show = first.create_show(1, 600, 120).await;
    let fans = first.join_many(show, "e", 6).await;
    drop(first);

    let app = spawn_app_with(Backend::Embedded, settings).await;
    // The hold starts with the first return, the first poll below.
    let before_returns = Instant::now();
    for (_, spot) in fans[1..].iter().rev() {
        let (code, body) = app.status(show, spot.ticket()).await;
        assert_eq!(
            (code, body["state"].clone()),
            (200, json!("waiting")),
            "{body}"
        );
    }
    let late = app.join(show, &app.sign_in("late").await).await;
    assert_eq!(late.rank(), 6, "{:?}", late.body);
    assert!(
        before_returns.elapsed() < RESTART_HOLD,
        "the returns took {:?}, longer than the hold ({RESTART_HOLD:?})",
        before_returns.elapsed()
    );
    // The hold over (not before), the first in the original order is
    // admitted (the admitted fan never came back).
    let first_waiting = &fans[1].1;
    let mut ws = app.ws(show, first_waiting.ticket()).await;
    let admitted = until_active_within(&mut ws, RESTART_HOLD + PATIENCE).await;
    assert!(
        admitted.duration_since(before_returns) + HOLD_SLACK >= RESTART_HOLD,
        "admitted {:?} after the first return, before the hold ({RESTART_HOLD:?}) was over",
        admitted.duration_since(before_returns)
    );
    assert_eq!(
        app.status(show, first_waiting.ticket()).await.1["state"],
        "active"
    );
    let rest: Vec<&Spot> = fans[2..].iter().map(|(_, s)| s).collect();
    assert_eq!(ranks(&app, show, &rest).await, expected(1, 4));
}

/// How spots ended goes back with the queue: after a FLUSHALL, the old
/// ticket of a fan who left, and the old ticket and access token of a fan
/// who paid, seat nobody again; the fans still in line keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_who_left_or_paid_before_a_loss_are_not_seated_again() {
    let redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |_| {}).await;
    let show = app.create_show_with_seats(1, 600, 4, 10).await;
    let (payer, paid) = {
        let fan = app.sign_in("payer").await;
        let spot = app.join(show, &fan).await;
        assert_eq!(spot.state(), "active");
        (fan, spot)
    };
    let fans = app.join_many(show, "w", 4).await;
    let leaver = &fans[0].1;
    assert_eq!(app.leave(show, leaver.ticket()).await, 204);
    // The payer holds a seat and pays: the session ends, the next fan (w1)
    // is admitted.
    let (_, seats) = app.seats(show).await;
    let seat = seats[0]["seat_id"].as_u64().expect("seat id");
    let (code, hold) = app.reserve(show, &payer, paid.access(), seat).await;
    assert_eq!(code, 201, "{hold}");
    app.charge(&payer, 10).await;
    let reservation = hold["reservation_id"].as_u64().expect("id");
    assert_eq!(
        app.pay(&payer, paid.access(), reservation, "k").await.0,
        201
    );
    eventually("the next fan is admitted", || async {
        app.status(show, fans[1].1.ticket()).await.1["state"] == "active"
    })
    .await;

    redis.flush_all().await;
    // A still-waiting fan's poll reveals the loss; the node puts back what
    // it remembers, ends included.
    eventually("the queue is rebuilt", || async {
        app.status(show, fans[3].1.ticket()).await.1["rank"] == 2
            && app.counts_now(show).await == Some((1, 1, 2))
    })
    .await;
    let (code, body) = app.status(show, leaver.ticket()).await;
    assert_eq!(
        (code, body["state"].as_str(), body["reason"].as_str()),
        (200, Some("closed"), Some("left")),
        "{body}"
    );
    let (code, body) = app.status(show, paid.ticket()).await;
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("closed")),
        "{body}"
    );
    let (code, body) = app
        .reserve(
            show,
            &payer,
            paid.access(),
            seats[1]["seat_id"].as_u64().expect("seat"),
        )
        .await;
    assert_eq!(code, 403, "the paid session stays ended: {body}");
    assert_eq!(app.counts(show).await, (1, 1, 2));
    assert_eq!(
        ranks(&app, show, &[&fans[2].1, &fans[3].1]).await,
        expected(1, 2)
    );
}

/// Redis loses a pre-queue before the start: the node's memory puts every
/// fan back in the pre-queue, each drawn afresh (a rebuilt order in join
/// order would hand the opening to the earliest joiners), and the opening
/// ranks all of them once, in the order the store drew: the fan the node
/// ranks first is the one the store admits next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_prequeue_is_put_back_and_opens_in_the_stores_order() {
    let redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |_| {}).await;
    let at = |ms: i64| (chrono::Utc::now() + chrono::Duration::milliseconds(ms)).to_rfc3339();
    let show = app
        .create_show_from(json!({"title": "Lost pre-queue", "capacity": 1,
            "session_ttl_seconds": 600, "abandon_grace_seconds": 60,
            "prequeue_opens_at": at(0), "starts_at": at(6_000)}))
        .await;
    eventually("the pre-queue opens", || async {
        app.show_state(show).await == "prequeue"
    })
    .await;
    let fans = app.join_many(show, "lp", 8).await;
    let mut sockets = Vec::new();
    for (_, spot) in &fans {
        assert_eq!(spot.state(), "prequeued", "{:?}", spot.body);
        let mut ws = app.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["type"], "prequeue");
        sockets.push(ws);
    }

    redis.flush_all().await;

    // A poll reveals the loss; the node puts back the pre-queue it
    // remembers, and nobody is told anything.
    let (_, status) = app.status(show, fans[0].1.ticket()).await;
    assert_eq!(status["state"], "prequeued", "{status}");
    let path = format!("/v1/admin/shows/{show}");
    eventually("the pre-queue is rebuilt", || async {
        app.admin(reqwest::Method::GET, &path, None).await.1["counts"]["prequeued"] == 8
    })
    .await;

    // The start: one admitted, seven ranked 1..7 once each.
    for ws in &mut sockets {
        let msg = ws.json().await;
        assert!(msg["type"] == "rank" || msg["type"] == "active", "{msg}");
    }
    let mut ranks = std::collections::BTreeMap::new();
    eventually("the start admits one", || async {
        app.counts(show).await.1 == 1
    })
    .await;
    for (_, spot) in &fans {
        let (_, status) = app.status(show, spot.ticket()).await;
        if let Some(rank) = status["rank"].as_u64() {
            assert!(ranks.insert(rank, spot).is_none(), "rank {rank} twice");
        }
    }
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    let (code, _) = app
        .admin(reqwest::Method::PATCH, &path, Some(json!({"capacity": 2})))
        .await;
    assert_eq!(code, 200);
    eventually("the fan ranked first is admitted", || async {
        app.status(show, ranks[&1].ticket()).await.1["state"] == "active"
    })
    .await;
}
