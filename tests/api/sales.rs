//! Seat holds, points and payments, on both backend sets.

use std::collections::HashSet;
use std::time::Duration;

use anteroom::domain::{HoldState, ReservationId, SeatId, ShowId, Timestamp, UserId};
use anteroom::sales::{AccessPass, SaleError};
use futures::future::join_all;
use serde_json::Value;

use crate::for_each_backend;
use crate::helpers::*;

for_each_backend!(
    one_winner_per_contended_seat,
    a_lock_that_expired_mid_flight_cannot_win,
    concurrent_payments_never_overdraw,
    one_idempotency_key_pays_once,
    a_payment_admits_the_next_fan_by_push,
    an_expired_hold_frees_the_seat,
    sale_input_is_checked,
    a_hold_ends_with_the_turn,
    an_expired_session_releases_its_holds_at_once,
    leaving_releases_unpaid_holds_at_once,
);

/// Fans `n` into a show with room for all of them: each is active.
async fn active_fans(app: &TestApp, show: u64, prefix: &str, n: usize) -> Vec<(Fan, String)> {
    app.join_many(show, prefix, n)
        .await
        .into_iter()
        .map(|(fan, spot)| {
            let access = spot.access().to_owned();
            (fan, access)
        })
        .collect()
}

fn pass(show: u64, fan: &Fan, access: &str) -> AccessPass {
    AccessPass {
        user: UserId(fan.user_id),
        show: ShowId(show),
        session: session_of(access),
        until: Timestamp(admission_claims(access)["exp"].as_i64().expect("exp") * 1000),
    }
}

fn reservation_id(body: &Value) -> u64 {
    body["reservation_id"].as_u64().expect("reservation_id")
}

/// Test 1: 50 buyers at once on one seat, 100 times: one hold each time.
async fn one_winner_per_contended_seat(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.max_holds = 100).await;
    let show = app.create_show_with_seats(50, 600, 100, 10).await;
    let fans = active_fans(&app, show, "buyer", 50).await;
    let (_, seats) = app.seats(show).await;
    for seat in &seats {
        let seat_id = seat["seat_id"].as_u64().expect("seat id");
        let attempts = fans
            .iter()
            .map(|(fan, access)| app.reserve(show, fan, access, seat_id));
        let results = join_all(attempts).await;
        let won = results.iter().filter(|(s, _)| *s == 201).count();
        let lost = results.iter().filter(|(s, _)| *s == 409).count();
        assert_eq!((won, lost), (1, 49), "seat {seat_id}: {results:?}");
    }
    // Every seat is held once: 100 holds in all, each seat held.
    let (_, seats) = app.seats(show).await;
    assert!(seats.iter().all(|s| s["status"] == "held"));
    let holds = app.app.db().open_holds().await.expect("open holds");
    assert_eq!(holds.len(), 100);
}

/// Test 2: a holder paused past its lock's TTL loses to the next holder, and
/// its late release does not free the next holder's lock.
async fn a_lock_that_expired_mid_flight_cannot_win(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(2, 600, 1, 10).await;
    let fans = active_fans(&app, show, "racer", 2).await;
    let (a, b) = (
        pass(show, &fans[0].0, &fans[0].1),
        pass(show, &fans[1].0, &fans[1].1),
    );
    let sales = app.app.sales();
    let seat = SeatId(app.seats(show).await.1[0]["seat_id"].as_u64().expect("id"));

    // A takes the lock, then stalls before its write.
    let lock_a = sales
        .locks()
        .acquire(ShowId(show), seat, Duration::from_millis(100))
        .await
        .expect("lock call")
        .expect("A gets the lock");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A's lock has expired: B takes the seat through the whole path.
    let held = sales
        .hold(b.user, b.show, &b, seat)
        .await
        .expect("B holds the seat");
    assert_eq!(held.user, b.user);
    // A wakes up and writes: the claim finds the seat taken.
    assert!(matches!(
        sales.write_hold(&a, seat, a.until).await,
        Err(SaleError::SeatTaken)
    ));
    let holds = app.app.db().open_holds().await.expect("holds");
    assert_eq!(
        holds.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [held.id]
    );
    // A's release cannot delete a lock that is not A's.
    let lock_c = sales
        .locks()
        .acquire(ShowId(show), seat, Duration::from_secs(10))
        .await
        .expect("lock call")
        .expect("free again after B released it");
    assert!(!sales.locks().release(lock_a).await.expect("release call"));
    assert!(sales
        .locks()
        .acquire(ShowId(show), seat, Duration::from_secs(10))
        .await
        .expect("lock call")
        .is_none());
    assert!(sales.locks().release(lock_c).await.expect("release call"));
    let (_, seats) = app.seats(show).await;
    assert_eq!(seats[0]["status"], "held");
}

/// Test 3: ten payments at once from one account that covers three.
async fn concurrent_payments_never_overdraw(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.max_holds = 10).await;
    let show = app.create_show_with_seats(1, 600, 10, 30).await;
    let (fan, access) = active_fans(&app, show, "spender", 1).await.remove(0);
    let mut holds = Vec::new();
    for seat in app.seats(show).await.1 {
        let (status, body) = app
            .reserve(show, &fan, &access, seat["seat_id"].as_u64().expect("id"))
            .await;
        assert_eq!(status, 201, "{body}");
        holds.push(reservation_id(&body));
    }
    assert_eq!(app.charge(&fan, 100).await, 100);

    let keys: Vec<String> = holds.iter().map(|r| format!("pay-{r}")).collect();
    let payments = holds
        .iter()
        .zip(&keys)
        .map(|(r, key)| app.pay(&fan, &access, *r, key));
    let results = join_all(payments).await;
    let completed: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let short = results.iter().filter(|(s, _)| *s == 402).count();
    assert_eq!((completed.len(), short), (3, 7), "{results:?}");
    let paid: u64 = completed
        .iter()
        .map(|b| b["amount"].as_u64().expect("amount"))
        .sum();
    let balance = app.balance(&fan).await;
    assert_eq!(balance, 10);
    assert_eq!(100 - balance, paid, "debits equal completed payments");
    let (_, seats) = app.seats(show).await;
    assert_eq!(seats.iter().filter(|s| s["status"] == "sold").count(), 3);
}

/// Test 4: twenty requests at once with one key: one debit, one answer.
async fn one_idempotency_key_pays_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(1, 600, 2, 40).await;
    let (fan, access) = active_fans(&app, show, "payer", 1).await.remove(0);
    let seats = app.seats(show).await.1;
    let (_, hold) = app
        .reserve(
            show,
            &fan,
            &access,
            seats[0]["seat_id"].as_u64().expect("id"),
        )
        .await;
    let (_, other) = app
        .reserve(
            show,
            &fan,
            &access,
            seats[1]["seat_id"].as_u64().expect("id"),
        )
        .await;
    app.charge(&fan, 100).await;

    let r = reservation_id(&hold);
    let results = join_all((0..20).map(|_| app.pay(&fan, &access, r, "order-1"))).await;
    let first = &results[0];
    assert_eq!(first.0, 201, "{first:?}");
    assert!(results.iter().all(|x| x == first), "{results:?}");
    assert_eq!(first.1["amount"], 40);
    assert_eq!(first.1["balance"], 60);
    assert_eq!(first.1["status"], "completed");
    assert_eq!(app.balance(&fan).await, 60);

    // The key again, later: the same answer. With another body: 422.
    assert_eq!(&app.pay(&fan, &access, r, "order-1").await, first);
    let (status, body) = app
        .pay(&fan, &access, reservation_id(&other), "order-1")
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    // Paying the same hold under a new key: 409, nothing debited.
    let (status, _) = app.pay(&fan, &access, r, "order-2").await;
    assert_eq!(status, 409);
    assert_eq!(app.balance(&fan).await, 60);
}

/// Test 5: capacity 1; the active fan pays and the waiting fan is admitted
/// by push (through the outbox and Kafka on the production set).
async fn a_payment_admits_the_next_fan_by_push(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(1, 600, 4, 25).await;
    let a = app.sign_in("first-buyer").await;
    let a_spot = app.join(show, &a).await;
    assert_eq!(a_spot.state(), "active");
    let b = app.sign_in("second-buyer").await;
    let b_spot = app.join(show, &b).await;
    let mut b_ws = app.ws(show, b_spot.ticket()).await;
    assert_eq!(b_ws.json().await["rank"], 1);

    let seat = app.seats(show).await.1[0]["seat_id"].as_u64().expect("id");
    let (status, hold) = app.reserve(show, &a, a_spot.access(), seat).await;
    assert_eq!(status, 201, "{hold}");
    // Not enough points yet: 402, and nothing changes.
    let (status, body) = app
        .pay(&a, a_spot.access(), reservation_id(&hold), "k1")
        .await;
    assert_eq!(status, 402, "{body}");
    app.charge(&a, 25).await;
    let (status, body) = app
        .pay(&a, a_spot.access(), reservation_id(&hold), "k2")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["balance"], 0);

    let active = b_ws.json().await;
    assert_eq!(active["type"], "active", "{active}");
    let (_, status) = app.status(show, a_spot.ticket()).await;
    assert_eq!(
        (&status["state"], &status["reason"]),
        (&Value::from("closed"), &Value::from("completed")),
        "{status}"
    );
    assert_eq!(app.counts(show).await, (1, 1, 0));
    let (_, seats) = app.seats(show).await;
    assert_eq!(seats[0]["status"], "sold");
    // The admitted fan can buy now.
    let b_access = active["access_token"].as_str().expect("access token");
    let (status, _) = app.reserve(show, &b, b_access, seat).await;
    assert_eq!(status, 409, "a sold seat stays sold");
    let other = seats[1]["seat_id"].as_u64().expect("id");
    assert_eq!(app.reserve(show, &b, b_access, other).await.0, 201);
}

/// Test 7: a hold expires at its time; the seat is bookable again and the
/// late payment is refused.
async fn an_expired_hold_frees_the_seat(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.hold_ttl_secs = 1).await;
    let show = app.create_show_with_seats(2, 600, 1, 5).await;
    let fans = active_fans(&app, show, "holder", 2).await;
    let (first, first_access) = &fans[0];
    let (second, second_access) = &fans[1];
    let seat = app.seats(show).await.1[0]["seat_id"].as_u64().expect("id");
    let (status, hold) = app.reserve(show, first, first_access, seat).await;
    assert_eq!(status, 201);
    assert_eq!(app.reserve(show, second, second_access, seat).await.0, 409);
    let (_, seats) = app.seats(show).await;
    assert_eq!(seats[0]["status"], "held");
    app.charge(first, 5).await;

    eventually("the hold expires and the seat is available", || async {
        app.seats(show).await.1[0]["status"] == "available"
    })
    .await;
    let (status, body) = app
        .pay(first, first_access, reservation_id(&hold), "late")
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "hold_expired");
    assert_eq!(app.balance(first).await, 5);
    let (status, _) = app.reserve(show, second, second_access, seat).await;
    assert_eq!(status, 201, "bookable again");
    // The expiry's event left through the outbox.
    eventually("the outbox is drained", || async {
        app.app.db().outbox_backlog().await.expect("backlog").0 == 0
    })
    .await;
}

fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_millis()
}

/// How the database has the reservation now.
async fn hold_state(app: &TestApp, hold: &Value) -> HoldState {
    let id = ReservationId(reservation_id(hold));
    let r = app.app.db().reservation(id).await.expect("read");
    r.expect("the reservation exists").state
}

/// A hold made with less of the turn left than the hold's time expires
/// with the turn: `hold_expires_at` is the session's `active_until`.
async fn a_hold_ends_with_the_turn(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.hold_ttl_secs = 300).await;
    let show = app.create_show_with_seats(1, 30, 2, 5).await;
    let fan = app.sign_in("last-minute").await;
    let spot = app.join(show, &fan).await;
    let until = millis(&spot.body["active_until"]);
    let seat = app.seats(show).await.1[0]["seat_id"].as_u64().expect("id");
    let (status, hold) = app.reserve(show, &fan, spot.access(), seat).await;
    assert_eq!(status, 201, "{hold}");
    let expires = millis(&hold["hold_expires_at"]);
    // Not 300 s from now: at the turn's end (the exact millisecond when
    // this node's view has the session, else the last second the access
    // token covers).
    assert!(
        expires <= until && expires > until - 1_000,
        "hold expires at {expires}, the turn ends at {until}"
    );
}

/// A session that runs out takes its holds with it, though they had
/// minutes left: the seat is available again and the hold reads expired.
async fn an_expired_session_releases_its_holds_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.hold_ttl_secs = 300).await;
    let show = app.create_show_with_seats(1, 2, 2, 5).await;
    let fan = app.sign_in("out-of-time").await;
    let spot = app.join(show, &fan).await;
    let seat = app.seats(show).await.1[0]["seat_id"].as_u64().expect("id");
    let (status, hold) = app.reserve(show, &fan, spot.access(), seat).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(app.seats(show).await.1[0]["status"], "held");

    eventually("the session expires and its hold with it", || async {
        app.status(show, spot.ticket()).await.1["state"] == "expired"
            && app.seats(show).await.1[0]["status"] == "available"
    })
    .await;
    assert_eq!(hold_state(&app, &hold).await, HoldState::Expired);
    app.charge(&fan, 5).await;
    let (status, body) = app
        .pay(&fan, spot.access(), reservation_id(&hold), "late")
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "hold_expired");
    // The next fan can hold it.
    let next = app.sign_in("next-in-line").await;
    let next_spot = app.join(show, &next).await;
    assert_eq!(next_spot.state(), "active");
    assert_eq!(
        app.reserve(show, &next, next_spot.access(), seat).await.0,
        201
    );
}

/// A fan who leaves with two holds, one of them paid: the unpaid one is
/// released at once (seat map included, which was cached), the paid seat
/// stays sold, and another fan's hold is untouched.
async fn leaving_releases_unpaid_holds_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.sales.hold_ttl_secs = 300).await;
    let show = app.create_show_with_seats(2, 600, 3, 5).await;
    let fans = app.join_many(show, "leaver", 2).await;
    let (fan, spot) = &fans[0];
    let (other, other_spot) = &fans[1];
    let (_, seats) = app.seats(show).await;
    let id = |i: usize| seats[i]["seat_id"].as_u64().expect("id");
    let (_, paid) = app.reserve(show, fan, spot.access(), id(0)).await;
    let (status, unpaid) = app.reserve(show, fan, spot.access(), id(1)).await;
    assert_eq!(status, 201, "{unpaid}");
    let (status, others) = app.reserve(show, other, other_spot.access(), id(2)).await;
    assert_eq!(status, 201, "{others}");
    app.charge(fan, 5).await;
    let (status, body) = app
        .pay(fan, spot.access(), reservation_id(&paid), "k")
        .await;
    assert_eq!(status, 201, "{body}");
    // Cached while the seat is held.
    app.seats(show).await;
    let (cache, held) = app.seats(show).await;
    assert_eq!(
        (cache.as_str(), &held[1]["status"]),
        ("hit", &Value::from("held"))
    );

    assert_eq!(app.leave(show, spot.ticket()).await, 204);
    eventually("the unpaid hold is released", || async {
        app.seats(show).await.1[1]["status"] == "available"
    })
    .await;
    assert_eq!(hold_state(&app, &unpaid).await, HoldState::Expired);
    assert_eq!(hold_state(&app, &paid).await, HoldState::Paid);
    assert_eq!(hold_state(&app, &others).await, HoldState::Held);
    let statuses: Vec<_> = app
        .seats(show)
        .await
        .1
        .iter()
        .map(|s| s["status"].clone())
        .collect();
    assert_eq!(statuses, ["sold", "available", "held"]);
    let counts = app
        .app
        .db()
        .seat_counts(ShowId(show))
        .await
        .expect("counts");
    assert_eq!((counts.available, counts.held, counts.sold), (1, 1, 1));
    // Its `reservation.expired` left through the outbox.
    eventually("the outbox is drained", || async {
        app.app.db().outbox_backlog().await.expect("backlog").0 == 0
    })
    .await;
}

/// Bad input gets a clear 4xx and changes nothing; the seat map is cached
/// and shows a change at the next read.
async fn sale_input_is_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(1, 600, 3, 10).await;
    let (fan, access) = active_fans(&app, show, "careful", 1).await.remove(0);
    let waiting = app.sign_in("waiting").await;
    let waiting_spot = app.join(show, &waiting).await;
    let seat = app.seats(show).await.1[0]["seat_id"].as_u64().expect("id");
    assert_eq!(app.seats(show).await.0, "hit");

    // No access token, another show's token, a waiting fan: 403.
    let res = app
        .client
        .post(format!("{}/v1/shows/{show}/reservations", app.base))
        .bearer_auth(&fan.token)
        .json(&serde_json::json!({ "seat_id": seat }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403);
    let other_show = app.create_show_with_seats(1, 600, 1, 10).await;
    assert_eq!(app.reserve(other_show, &fan, &access, seat).await.0, 403);
    assert_eq!(
        app.reserve(show, &waiting, waiting_spot.ticket(), seat)
            .await
            .0,
        403
    );
    // Unknown seat: 404. Someone else's token with your bearer: 403.
    assert_eq!(app.reserve(show, &fan, &access, 999_999).await.0, 404);
    assert_eq!(app.reserve(show, &waiting, &access, seat).await.0, 403);
    assert_eq!(app.seats(show).await.0, "hit", "nothing changed");

    // Points: bounded positive integers.
    for amount in ["0", "-5", "1000001", "1.5", "\"ten\""] {
        let res = app
            .client
            .post(format!("{}/v1/points/charge", app.base))
            .bearer_auth(&fan.token)
            .header("content-type", "application/json")
            .body(format!("{{\"amount\": {amount}}}"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 422, "amount {amount}");
    }
    assert_eq!(app.balance(&fan).await, 0);

    // Payments: a key is required and must be sane.
    let (_, hold) = app.reserve(show, &fan, &access, seat).await;
    assert_eq!(
        app.seats(show).await.1[0]["status"],
        "held",
        "the next read shows a hold"
    );
    app.charge(&fan, 10).await;
    let res = app
        .client
        .post(format!("{}/v1/payments", app.base))
        .bearer_auth(&fan.token)
        .header("x-access-token", &access)
        .json(&serde_json::json!({ "reservation_id": reservation_id(&hold) }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let (status, _) = app
        .pay(&fan, &access, reservation_id(&hold), &"k".repeat(65))
        .await;
    assert_eq!(status, 400);
    // Someone else's reservation: 409, never paid.
    let (status, _) = app
        .pay(&waiting, &access, reservation_id(&hold), "theirs")
        .await;
    assert_eq!(status, 409);
    assert_eq!(app.balance(&fan).await, 10);
    // Releasing: only your own, only while held.
    assert_eq!(app.release(&waiting, reservation_id(&hold)).await, 404);
    assert_eq!(app.release(&fan, reservation_id(&hold)).await, 204);
    assert_eq!(app.release(&fan, reservation_id(&hold)).await, 409);
    assert_eq!(app.seats(show).await.1[0]["status"], "available");

    // Hold limit: max_holds (4 by default) open holds per show.
    let show = app.create_show_with_seats(1, 600, 5, 1).await;
    let (fan, access) = active_fans(&app, show, "greedy", 1).await.remove(0);
    let seats = app.seats(show).await.1;
    let mut statuses = Vec::new();
    for s in &seats {
        statuses.push(
            app.reserve(show, &fan, &access, s["seat_id"].as_u64().expect("id"))
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![201, 201, 201, 201, 409]);
}

/// Test 6 (production set): Kafka down during 200 payments. Every payment
/// succeeds and ends its session on the paying node at once (the next fans
/// need no broker to be admitted); once the broker is back, all 200 events
/// are published once and applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_delays_payment_events_and_loses_none() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;

    let backends = RealBackends::create().await;
    let app = spawn_app_on(&backends, |_| {}).await;
    let show = app.create_show_with_seats(50, 600, 200, 3).await;
    let fans = active_fans(&app, show, "outage", 50).await;
    for (fan, _) in &fans {
        app.charge(fan, 12).await;
    }
    let (_, seats) = app.seats(show).await;
    let seat_ids: Vec<u64> = seats
        .iter()
        .map(|s| s["seat_id"].as_u64().expect("id"))
        .collect();

    backends.kafka.set_up(false);
    let buys = fans.iter().enumerate().map(|(i, (fan, access))| {
        let app = &app;
        let mine = &seat_ids[i * 4..i * 4 + 4];
        async move {
            let mut holds = Vec::new();
            for seat in mine {
                let (status, body) = app.reserve(show, fan, access, *seat).await;
                assert_eq!(status, 201, "{body}");
                holds.push(reservation_id(&body));
            }
            for r in holds {
                let (status, body) = app.pay(fan, access, r, &format!("buy-{r}")).await;
                assert_eq!(status, 201, "{body}");
            }
        }
    });
    join_all(buys).await;
    let (pending, _) = app.app.db().outbox_backlog().await.expect("backlog");
    assert!(pending > 0, "events wait in the outbox while Kafka is down");
    assert_eq!(
        app.counts(show).await,
        (50, 0, 0),
        "each payer's session ended where they paid, without the broker"
    );
    let applied_before = app.app.queue().events_applied();

    backends.kafka.set_up(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (pending, _) = app.app.db().outbox_backlog().await.expect("backlog");
        let applied = app.app.queue().events_applied() - applied_before;
        if pending == 0 && applied >= 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox still has {pending} events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly 200 events on the topic, each once.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &backends.kafka.bootstrap)
        .set("group.id", "outage-audit")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let topic = format!("{}payment.completed", backends.kafka.topic_prefix);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut ids = HashSet::new();
    let mut total = 0;
    while total < 200 {
        let msg = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("all events arrive")
            .expect("message");
        let event: Value = serde_json::from_slice(msg.payload().expect("payload")).expect("json");
        ids.insert(event["id"].as_str().expect("id").to_owned());
        total += 1;
    }
    // Nothing beyond the 200.
    let extra = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
    assert!(extra.is_err(), "no event published twice");
    assert_eq!(ids.len(), 200);
}

/// A gateway whose SQL and Redis pass counting proxies, with one pool
/// connection (so a request's is the one used last: the pool hands out its
/// longest idle first, and pings one idle 500 ms or more), a show of 20
/// seats and one active fan who has held the first (which loaded the
/// scripts and opened the connections).
struct CountedSale {
    app: TestApp,
    sql: TcpProxy,
    redis: TcpProxy,
    show: u64,
    fan: Fan,
    access: String,
    seats: Vec<u64>,
    backends: RealBackends,
}

impl CountedSale {
    async fn start() -> Self {
        let backends = RealBackends::create().await;
        let (app, sql, redis) = spawn_app_behind_proxies(&backends, |s| {
            s.sales.max_holds = 100;
            s.database.max_connections = 1;
        })
        .await;
        let show = app.create_show_with_seats(1, 600, 20, 10).await;
        let (fan, access) = active_fans(&app, show, "counted", 1).await.remove(0);
        let seats: Vec<u64> = app
            .seats(show)
            .await
            .1
            .iter()
            .map(|s| s["seat_id"].as_u64().expect("id"))
            .collect();
        assert_eq!(app.reserve(show, &fan, &access, seats[0]).await.0, 201);
        Self {
            app,
            sql,
            redis,
            show,
            fan,
            access,
            seats,
            backends,
        }
    }

    /// The round trips of `request`, counted from before it until the pool
    /// has its connection back (the pool's check of a returned connection
    /// included). The gateway's background work (the outbox relay's poll,
    /// presence, reports) shares the proxies, so of several requests the
    /// fewest stands for one: a round trip the request itself takes shows
    /// in every one.
    async fn trips<F: std::future::Future<Output = ()>>(&self, request: F) -> Trips {
        let (sql_before, redis_before) = (self.sql.commands(), self.redis.commands());
        request.await;
        eventually("the pool has its connection back", || async {
            self.app.app.db().pool_stats().in_use == 0
        })
        .await;
        Trips::between(
            (&sql_before, &self.sql.commands()),
            (&redis_before, &self.redis.commands()),
        )
    }
}

fn fewest(trips: impl IntoIterator<Item = Trips>) -> Trips {
    let trips = trips
        .into_iter()
        .min_by_key(Trips::total)
        .expect("requests counted");
    // The proxies are in the path: both backends saw the request.
    assert!(trips.sql > 0 && trips.redis > 0, "{trips:?}");
    assert_eq!(trips.sql_connections, 1, "{trips:?}");
    trips
}

/// A successful hold costs at most 5 round trips in all (issue 15), on one
/// pool connection (pinged on its way back, not again on its way out), and
/// finds the account its fan's sign-in made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_hold_takes_at_most_five_round_trips() {
    let sale = CountedSale::start().await;
    let db = sqlx::MySqlPool::connect(&sale.backends.database_url)
        .await
        .expect("the test's database, directly");
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE user_id = ?")
        .bind(sale.fan.user_id)
        .fetch_one(&db)
        .await
        .expect("count accounts");
    assert_eq!(accounts, 1, "signing in made the fan's account");
    let mut counted = Vec::new();
    for &seat in &sale.seats[1..13] {
        counted.push(
            sale.trips(async {
                let (status, body) = sale
                    .app
                    .reserve(sale.show, &sale.fan, &sale.access, seat)
                    .await;
                assert_eq!(status, 201, "{body}");
            })
            .await,
        );
    }
    let trips = fewest(counted);
    eprintln!("a successful hold: {trips:?}");
    assert!(trips.total() <= 5, "{trips:?}");
}

/// A fan's release of a hold costs at most 3 round trips in all: the
/// database's transaction in one batch (and the pool's check of its
/// connection on its way back), and the availability's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_takes_at_most_three_round_trips() {
    let sale = CountedSale::start().await;
    let mut holds = Vec::new();
    for &seat in &sale.seats[1..13] {
        let (status, body) = sale
            .app
            .reserve(sale.show, &sale.fan, &sale.access, seat)
            .await;
        assert_eq!(status, 201, "{body}");
        holds.push(reservation_id(&body));
    }
    let mut counted = Vec::new();
    for &id in &holds {
        counted.push(
            sale.trips(async {
                assert_eq!(sale.app.release(&sale.fan, id).await, 204);
            })
            .await,
        );
    }
    let trips = fewest(counted);
    eprintln!("a release: {trips:?}");
    assert!(trips.total() <= 3, "{trips:?}");
    // Released: the seats are available again, and a second release of
    // one is refused without a change.
    let (_, seats) = sale.app.seats(sale.show).await;
    let available = seats.iter().filter(|s| s["status"] == "available").count();
    assert_eq!(available, 19, "all but the first hold's seat");
    assert_eq!(sale.app.release(&sale.fan, holds[0]).await, 409);
}
