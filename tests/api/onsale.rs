//! The on-sale: a scheduled opening with a fair pre-queue, the admission
//! rate, sold out, and the operator's live controls, each pushed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anteroom::domain::{AdmissionRate, Removal, ShowId, Timestamp, UserId};
use anteroom::store::{
    AdmitRequest, ChangeSink, JoinMode, JoinRequest, MemoryQueueStore, OpenRequest, Opening,
    QueueChange, RemoveIf,
};
use chrono::Utc;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn in_ms(ms: i64) -> String {
    (Utc::now() + chrono::Duration::milliseconds(ms)).to_rfc3339()
}

async fn scheduled_show(app: &TestApp, capacity: u64, prequeue_in: i64, start_in: i64) -> u64 {
    app.create_show_from(json!({"title": "On sale", "capacity": capacity,
        "session_ttl_seconds": 600, "abandon_grace_seconds": 60,
        "prequeue_opens_at": in_ms(prequeue_in), "starts_at": in_ms(start_in)}))
        .await
}

/// Scheduled → pre-queue → open, by timers: joins are refused, then taken
/// unranked, then at the start the pre-queue goes to the head of the line in
/// its drawn order and every connection gets its first rank; later joins
/// queue behind.
async fn the_clock_opens_a_fair_prequeue(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = scheduled_show(&app, 2, 1_500, 4_000).await;
    assert_eq!(app.show_state(show).await, "scheduled");
    let early = app.sign_in("early").await;
    let refused = app.join(show, &early).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "not_open_yet");

    eventually("the pre-queue opens", || async {
        app.show_state(show).await == "prequeue"
    })
    .await;
    let fans = app.join_many(show, "pre", 6).await;
    let mut sockets = Vec::new();
    for (_, spot) in &fans {
        assert_eq!(spot.state(), "prequeued", "{:?}", spot.body);
        assert!(spot.body["starts_at"].is_string());
        assert!(spot.body.get("rank").is_none());
        let mut ws = app.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        assert_eq!(first["type"], "prequeue", "{first}");
        assert_eq!(first["starts_at"], spot.body["starts_at"]);
        sockets.push(ws);
    }
    let (_, status) = app.status(show, fans[0].1.ticket()).await;
    assert_eq!(status["state"], "prequeued", "{status}");
    assert_eq!(app.counts(show).await, (2, 0, 0));

    // The start: every connection's next message is its first rank (or,
    // for the two admitted at once, possibly `active` straight away).
    for ws in &mut sockets {
        let msg = ws.json().await;
        assert!(msg["type"] == "rank" || msg["type"] == "active", "{msg}");
    }
    eventually("the start admits two", || async {
        app.counts(show).await.1 == 2
    })
    .await;
    // Two are admitted, four ranked 1..4, each exactly once.
    let mut admitted = 0;
    let mut ranks = BTreeMap::new();
    for (_, spot) in &fans {
        let (_, status) = app.status(show, spot.ticket()).await;
        match status["state"].as_str() {
            Some("active") => admitted += 1,
            Some("waiting") => {
                let rank = status["rank"].as_u64().expect("rank");
                assert!(ranks.insert(rank, spot).is_none(), "rank {rank} twice");
            }
            _ => panic!("unexpected {status}"),
        }
    }
    assert_eq!(admitted, 2);
    assert_eq!(ranks.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(app.show_state(show).await, "open");
    // The view followed the store's draw: one more slot admits the fan it
    // ranks first.
    let (code, _) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/shows/{show}"),
            Some(json!({"capacity": 3})),
        )
        .await;
    assert_eq!(code, 200);
    eventually("the fan ranked first is admitted", || async {
        app.status(show, ranks[&1].ticket()).await.1["state"] == "active"
    })
    .await;
    assert_eq!(app.counts(show).await.1, 3);
    // A join after the start queues behind every pre-queued fan.
    let late = app.sign_in("late").await;
    let spot = app.join(show, &late).await;
    assert_eq!(
        (spot.state(), spot.rank()),
        ("waiting", 4),
        "{:?}",
        spot.body
    );
}

/// A pre-queued fan may wait for the start unconnected: the abandonment
/// grace runs from `starts_at` at the earliest, then as usual.
async fn the_grace_of_a_prequeued_fan_runs_from_the_start(backend: Backend) {
    let app = spawn_app(backend).await;
    let start_in = 4_000;
    let show = app
        .create_show_from(
            json!({"title": "Grace", "capacity": 1, "session_ttl_seconds": 600,
            "abandon_grace_seconds": 1, "prequeue_opens_at": in_ms(0),
            "starts_at": in_ms(start_in)}),
        )
        .await;
    // Paused before the start: the line forms at the start but nobody is
    // admitted, so the unconnected fan can only leave by abandonment.
    let (code, _) = app
        .admin(Method::POST, &format!("/v1/admin/shows/{show}/pause"), None)
        .await;
    assert_eq!(code, 200);
    let joined_at = tokio::time::Instant::now();
    let fans = app.join_many(show, "g", 2).await;
    // The other fan holds an SSE connection: present all along.
    let mut sse = app.sse(show, fans[1].1.ticket()).await;
    assert_eq!(sse.json().await["type"], "prequeue");
    let path = format!("/v1/admin/shows/{show}");
    // Well past the grace, still before the start: nobody is abandoned.
    tokio::time::sleep_until(joined_at + Duration::from_millis(2_500)).await;
    let (_, view) = app.admin(Method::GET, &path, None).await;
    if joined_at.elapsed() < Duration::from_millis(start_in as u64 - 500) {
        assert_eq!(view["counts"]["prequeued"], 2, "{view}");
        assert_eq!(view["counts"]["abandoned"], 0, "{view}");
    }
    // After the start and a grace, the unconnected fan is let go; the
    // connected one is in line.
    eventually(
        "the unconnected fan is abandoned after the start",
        || async {
            let (_, view) = app.admin(Method::GET, &path, None).await;
            view["counts"]["abandoned"] == 1
        },
    )
    .await;
    // The line formed: a rank (that says the sale is paused; another
    // follows when the fan ahead is let go), and the pause itself, in
    // either order.
    let mut heard = HashSet::new();
    while heard.len() < 2 {
        let msg = sse.json().await;
        if msg["type"] == "rank" {
            assert_eq!(msg["paused"], true, "{msg}");
        }
        assert!(msg["type"] == "rank" || msg["type"] == "paused", "{msg}");
        heard.insert(msg["type"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(
        heard,
        HashSet::from(["rank".to_owned(), "paused".to_owned()])
    );
    let (_, view) = app.admin(Method::GET, &path, None).await;
    assert_eq!(
        view["counts"]["waiting"], 1,
        "the connected fan stays: {view}"
    );
    let (_, status) = app.status(show, fans[0].1.ticket()).await;
    assert_eq!(status["reason"], "abandoned", "{status}");
}

/// A pre-queued fan who polls keeps the spot through the start like one
/// who holds a connection.
async fn polls_keep_a_prequeued_spot(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app
        .create_show_from(
            json!({"title": "Polls", "capacity": 1, "session_ttl_seconds": 600,
            "abandon_grace_seconds": 3, "prequeue_opens_at": in_ms(0),
            "starts_at": in_ms(1_500)}),
        )
        .await;
    app.admin(Method::POST, &format!("/v1/admin/shows/{show}/pause"), None)
        .await;
    let (_, spot) = app.join_many(show, "poller", 1).await.remove(0);
    let started = tokio::time::Instant::now();
    // Polling as told, through the start and well past a grace after it.
    let mut seen_rank = false;
    while started.elapsed() < Duration::from_millis(1_500 + 4_500) {
        let (_, status) = app.status(show, spot.ticket()).await;
        match status["state"].as_str() {
            Some("prequeued") => assert!(!seen_rank, "{status}"),
            Some("waiting") => seen_rank = true,
            _ => panic!("the polling fan lost the spot: {status}"),
        }
        let wait = status["poll_after_ms"].as_u64().expect("poll_after_ms");
        assert!(wait <= 1_000, "a third of the grace at most: {wait}");
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    assert!(seen_rank, "ranked after the start");
}

/// A sink that ignores changes: the shuffle test drives the store alone.
struct Ignore;

impl ChangeSink for Ignore {
    fn apply(&self, _: ShowId, _: &[QueueChange]) {}
}

/// The queue store alone, on the backend (its changes go nowhere), under
/// a key prefix of its own on Redis.
struct BareStore {
    queue: anteroom::store::QueueStore,
    prefix: String,
}

impl BareStore {
    async fn new(backend: Backend) -> Self {
        let prefix = format!("anteroom-test-{}:", short_id());
        let queue = match backend {
            Backend::Embedded => anteroom::store::QueueStore::Memory(Arc::new(
                MemoryQueueStore::new(Arc::new(Ignore)),
            )),
            Backend::Real => anteroom::store::QueueStore::Redis(Arc::new(
                bare_redis_store(&prefix, Arc::new(Ignore)).await,
            )),
        };
        BareStore { queue, prefix }
    }

    /// Leaves nothing in the shared Redis.
    async fn remove_keys(&self) {
        if let anteroom::store::QueueStore::Memory(_) = self.queue {
            return;
        }
        let client = redis::Client::open(redis_url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("keys");
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .expect("unlink");
        }
    }
}

/// The opening admits in its own step, and the rate's grid starts at
/// `starts_at`: the slots the opening itself took (here 500 ms at 6,000 a
/// minute, a slot every 10 ms) are made up at once, as are slots a late
/// pace timer missed while fans waited; slots that pass with nobody
/// waiting, or long after (a pause), are not banked.
async fn the_opening_admits_in_its_step_from_the_start(backend: Backend) {
    let store = BareStore::new(backend).await;
    let queue = &store.queue;
    let show = ShowId(7);
    // A minute ahead: the opening admits at the later of the request's
    // time and the store's clock, so the request's must be the later here.
    let starts_at = Timestamp(Timestamp::now().0 + 60_000);
    for u in 1..=200 {
        queue
            .join(
                show,
                JoinRequest::new(UserId(u), starts_at, JoinMode::Prequeue),
            )
            .await
            .expect("join");
    }
    let now = Timestamp(starts_at.0 + 500);
    let admit = AdmitRequest {
        capacity: 1_000,
        ttl: Duration::from_secs(60),
        rate: AdmissionRate::new(6_000),
        now,
        freed_at: now,
        epoch: 0,
    };
    let request = OpenRequest {
        starts_at,
        admit: Some(admit),
    };
    let opening = queue.open(show, request).await.expect("open");
    let Opening {
        moved: 200,
        admitted: Some(admitted),
    } = opening
    else {
        panic!("{opening:?}");
    };
    assert_eq!(admitted.admissions.len(), 51, "{admitted:?}");
    assert_eq!(admitted.next_at, Some(Timestamp(starts_at.0 + 510)));
    let counts = queue.counts(show).await.expect("counts");
    assert_eq!(
        (counts.active, counts.waiting, counts.prequeued),
        (51, 149, 0)
    );
    // The admitted are the head of the drawn line.
    for a in &admitted.admissions {
        assert_eq!(queue.rank(show, a.user).await.expect("rank"), None);
    }
    let admit_at = |ms: i64| AdmitRequest {
        now: Timestamp(starts_at.0 + ms),
        freed_at: Timestamp(starts_at.0 + ms),
        ..admit
    };
    // The pace timer runs 1.5 s late: every slot owed since then is made
    // up at once (150; the line holds 149).
    let late = queue.admit(show, admit_at(2_000)).await.expect("admit");
    assert_eq!((late.admissions.len(), late.next_at), (149, None));
    // The line ran dry, so the slots that pass are not banked: fans who
    // join much later go in one per slot from their arrival.
    for u in 201..=203 {
        let at = Timestamp(starts_at.0 + 10_000);
        queue
            .join(show, JoinRequest::new(UserId(u), at, JoinMode::Line))
            .await
            .expect("join");
    }
    let fresh = queue.admit(show, admit_at(10_000)).await.expect("admit");
    assert_eq!(fresh.admissions.len(), 1);
    assert_eq!(fresh.next_at, Some(Timestamp(starts_at.0 + 10_010)));
    // Held back by the rate, then no step for 10 s (a pause): the slots
    // owed are not made up that late, so resuming admits no burst.
    let resumed = queue.admit(show, admit_at(20_000)).await.expect("admit");
    assert_eq!(resumed.admissions.len(), 1);
    assert_eq!(resumed.next_at, Some(Timestamp(starts_at.0 + 20_010)));
    store.remove_keys().await;
}

/// The opening's order is uniformly random: over many openings of four
/// pre-queued fans every one of the 24 orders comes up about equally often
/// (chi-square, 23 degrees of freedom, a threshold a fair shuffle passes
/// with probability 1 - 1e-7), also when a fan drawn in among them left
/// before the start; and later joins are always behind.
async fn the_opening_order_is_uniform(backend: Backend) {
    const FANS: u64 = 4;
    const TRIALS: u64 = 1_440;
    let store = BareStore::new(backend).await;
    let queue = &store.queue;
    let mut seen: BTreeMap<Vec<u64>, u64> = BTreeMap::new();
    for trial in 0..TRIALS {
        let show = ShowId(1_000_000 + trial);
        let now = Timestamp::now();
        // Fan 50 joins among them and leaves before the start.
        for u in [1, 2, 50, 3, 4] {
            queue
                .join(show, JoinRequest::new(UserId(u), now, JoinMode::Prequeue))
                .await
                .expect("join");
        }
        queue
            .remove(show, UserId(50), Removal::Left, RemoveIf::Any)
            .await
            .expect("leave")
            .expect("was pre-queued");
        let request = OpenRequest {
            starts_at: now,
            admit: None,
        };
        let opened = queue.open(show, request).await.expect("open");
        assert_eq!(
            opened,
            Opening {
                moved: FANS as usize,
                admitted: None
            }
        );
        queue
            .join(show, JoinRequest::new(UserId(99), now, JoinMode::Prequeue))
            .await
            .expect("join after the opening");
        let admitted = queue
            .admit(
                show,
                AdmitRequest {
                    capacity: 5,
                    ttl: Duration::from_secs(60),
                    rate: None,
                    now,
                    freed_at: now,
                    epoch: 0,
                },
            )
            .await
            .expect("admit")
            .admissions;
        let order: Vec<u64> = admitted.iter().map(|a| a.user.0).collect();
        assert_eq!(order.len(), 5);
        assert_eq!(order[4], 99, "a later join is behind the pre-queue");
        let mut fans = order[..4].to_vec();
        *seen.entry(fans.clone()).or_default() += 1;
        fans.sort_unstable();
        assert_eq!(fans, vec![1, 2, 3, 4], "a permutation of the pre-queue");
    }
    // A thousand shows' keys: not left in the shared Redis.
    store.remove_keys().await;
    assert_eq!(seen.len(), 24, "every order comes up: {seen:?}");
    let expected = TRIALS as f64 / 24.0;
    let chi2: f64 = seen
        .values()
        .map(|n| (*n as f64 - expected).powi(2) / expected)
        .sum();
    // P(chi2 > 75 | df = 23) is about 1e-7.
    assert!(chi2 < 75.0, "chi-square {chi2:.1} over {seen:?}");
}

/// With an admission rate, admissions are spaced by it (the server's own
/// clock: the sessions' ends), on top of the capacity.
async fn admissions_are_spaced_by_the_rate(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app
        .create_show_from(json!({"title": "Paced", "capacity": 10,
            "session_ttl_seconds": 600, "admission_rate_per_minute": 150}))
        .await;
    let fans = app.join_many(show, "paced", 4).await;
    let mut until = Vec::new();
    for (i, (_, spot)) in fans.iter().enumerate() {
        let mut ws = app.ws(show, spot.ticket()).await;
        let msg = loop {
            let msg = ws.json().await;
            if msg["type"] == "active" {
                break msg;
            }
            assert_eq!(msg["type"], "rank", "fan {i}: {msg}");
        };
        let end =
            chrono::DateTime::parse_from_rfc3339(msg["active_until"].as_str().expect("until"))
                .expect("rfc3339");
        until.push(end.timestamp_millis());
    }
    // 150 a minute: admissions on a 400 ms grid (each at its slot or a
    // little after, when its timer fires), so any k+1 of them span at least
    // (k - 1) × 400 ms, and the four at least 2 × 400 ms.
    for i in 0..until.len() {
        for j in i + 1..until.len() {
            let span = until[j] - until[i];
            assert!(span >= (j - i - 1) as i64 * 400, "{until:?}");
        }
    }
    assert!(until[3] - until[0] >= 800, "{until:?}");
    let (_, view) = app
        .admin(Method::GET, &format!("/v1/admin/shows/{show}"), None)
        .await;
    assert_eq!(view["admission_rate_per_minute"], 150);
    assert_eq!(view["counts"]["admitted"], 4);
}

/// The rate's promotions run on the admission lane, not on the node's
/// workers: with every worker of the gateway's runtime blocked (the test
/// runs the gateway on one thread and blocks it), fans held back by the
/// rate are still admitted at their slots.
async fn paced_admissions_do_not_wait_for_busy_workers(backend: Backend) {
    let app = spawn_app(backend).await;
    let ttl_ms = 600_000;
    let show = app
        .create_show_from(json!({"title": "Lane", "capacity": 10,
            "session_ttl_seconds": ttl_ms / 1000, "admission_rate_per_minute": 600}))
        .await;
    let fans = app.join_many(show, "lane", 4).await;
    // 600 a minute: the slots are 100 ms apart, so the last of the four is
    // due about 300 ms after the first join. The thread that runs the
    // gateway (and this test) is blocked for 2 s from here.
    let frozen_until = chrono::Utc::now().timestamp_millis() + 2_000;
    std::thread::sleep(Duration::from_millis(2_000));
    let mut admitted = Vec::new();
    for (_, spot) in &fans {
        admitted.push(admitted_at(&app, show, spot, ttl_ms).await);
    }
    assert!(
        admitted.iter().all(|&at| at < frozen_until),
        "admitted at {admitted:?}, the workers were blocked until {frozen_until}"
    );
}

/// When an active fan was admitted (ms): their turn's end less its length.
async fn admitted_at(app: &TestApp, show: u64, spot: &Spot, ttl_ms: i64) -> i64 {
    let (_, status) = app.status(show, spot.ticket()).await;
    assert_eq!(status["state"], "active", "{status}");
    let until = chrono::DateTime::parse_from_rfc3339(
        status["active_until"].as_str().expect("active_until"),
    )
    .expect("rfc3339");
    until.timestamp_millis() - ttl_ms
}

/// The start's transition runs on the admission lane too: with every
/// worker blocked from before `starts_at` until well after it, the
/// pre-queue opens on time and the first fans are admitted at their slots.
async fn the_opening_does_not_wait_for_busy_workers(backend: Backend) {
    let app = spawn_app(backend).await;
    let ttl_ms = 600_000;
    // Time enough to pre-queue three fans on a loaded machine.
    let starts_in = 5_000;
    let show = app
        .create_show_from(json!({"title": "Lane opening", "capacity": 10,
            "session_ttl_seconds": ttl_ms / 1000, "admission_rate_per_minute": 600,
            "prequeue_opens_at": in_ms(0), "starts_at": in_ms(starts_in)}))
        .await;
    let starts_at = chrono::Utc::now().timestamp_millis() + starts_in;
    eventually("the pre-queue opens", || async {
        app.show_state(show).await == "prequeue"
    })
    .await;
    let fans = app.join_many(show, "lane-open", 3).await;
    for (_, spot) in &fans {
        assert_eq!(spot.state(), "prequeued", "{:?}", spot.body);
    }
    // Blocked from here until 2 s after the start (slots 100 ms apart:
    // the three are due within 200 ms of it).
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        now < starts_at,
        "joined too slowly to block before the start"
    );
    let frozen_until = starts_at + 2_000;
    std::thread::sleep(Duration::from_millis((frozen_until - now) as u64));
    for (_, spot) in &fans {
        let admitted = admitted_at(&app, show, spot, ttl_ms).await;
        assert!(
            admitted < frozen_until,
            "admitted at {admitted}, the workers were blocked until {frozen_until}"
        );
    }
}

mod lane {
    // One worker thread, so that blocking the test blocks the gateway.
    #[tokio::test(flavor = "current_thread")]
    async fn embedded() {
        super::paced_admissions_do_not_wait_for_busy_workers(crate::helpers::Backend::Embedded)
            .await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn real() {
        super::paced_admissions_do_not_wait_for_busy_workers(crate::helpers::Backend::Real).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn opening_embedded() {
        super::the_opening_does_not_wait_for_busy_workers(crate::helpers::Backend::Embedded).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn opening_real() {
        super::the_opening_does_not_wait_for_busy_workers(crate::helpers::Backend::Real).await
    }
}

/// Pause pushes `paused` (status: `paused`, no ETA); resume pushes a fresh
/// rank and admits.
async fn pause_and_resume_are_pushed(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "p", 3).await;
    let mut ws = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(ws.json().await["rank"], 2);
    let (code, _) = app
        .admin(Method::POST, &format!("/v1/admin/shows/{show}/pause"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(ws.json().await, json!({"type": "paused"}));
    let (_, status) = app.status(show, fans[1].1.ticket()).await;
    assert_eq!(status["paused"], true, "{status}");
    assert!(status.get("eta_seconds").is_none());
    assert_eq!(app.show_state(show).await, "paused");
    // The active fan leaves: nobody is admitted while paused. A waiting
    // fan leaves: the place moves, and says the show is still paused.
    assert_eq!(app.leave(show, fans[0].1.ticket()).await, 204);
    assert_eq!(app.counts(show).await.1, 0);
    let ahead = app.join(show, &app.sign_in("p-extra").await).await;
    assert_eq!(ahead.rank(), 3);
    assert_eq!(app.leave(show, fans[1].1.ticket()).await, 204);
    assert_eq!(
        ws.json().await,
        json!({"type": "rank", "rank": 1, "ahead": 0, "paused": true})
    );
    let refreshed = app.status(show, fans[2].1.ticket()).await.1;
    assert_eq!(
        (refreshed["rank"].as_u64(), refreshed["paused"].as_bool()),
        (Some(1), Some(true))
    );
    app.admin(
        Method::POST,
        &format!("/v1/admin/shows/{show}/resume"),
        None,
    )
    .await;
    // This fan is admitted at once.
    assert_eq!(until_type(&mut ws, "active").await["type"], "active");
    assert_eq!(app.counts(show).await.1, 1);
}

/// Closing the show pushes `closed`/`show_closed` to the line and refuses
/// joins; an eject pushes `closed`/`removed` and frees the slot.
async fn close_and_eject_are_pushed(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "c", 3).await;
    let mut first = app.ws(show, fans[0].1.ticket()).await;
    assert_eq!(first.json().await["type"], "active");
    let mut second = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(second.json().await["rank"], 1);
    let mut third = app.ws(show, fans[2].1.ticket()).await;
    assert_eq!(third.json().await["rank"], 2);

    // Eject the active fan: the slot goes to the next.
    let (code, _) = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/shows/{show}/fans/c0"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        first.json().await,
        json!({"type": "closed", "reason": "removed"})
    );
    assert_eq!(second.json().await["type"], "active");
    let (code, _) = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/shows/{show}/fans/nobody"),
            None,
        )
        .await;
    assert_eq!(code, 404);

    let (code, view) = app
        .admin(Method::POST, &format!("/v1/admin/shows/{show}/close"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(view["state"], "closed");
    assert_eq!(
        until_type(&mut third, "closed").await,
        json!({"type": "closed", "reason": "show_closed"})
    );
    let (_, status) = app.status(show, fans[2].1.ticket()).await;
    assert_eq!(status["reason"], "show_closed", "{status}");
    let newcomer = app.sign_in("newcomer").await;
    let refused = app.join(show, &newcomer).await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].clone()),
        (409, json!("show_closed"))
    );
    // The active fan finishes their turn; the sale cannot be resumed.
    assert_eq!(app.counts(show).await.1, 1);
    let (code, _) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/shows/{show}/resume"),
            None,
        )
        .await;
    assert_eq!(code, 409);
}

/// PATCH takes effect at once: more capacity admits at once; invalid values
/// are refused with nothing changed.
async fn patch_changes_a_show_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "x", 3).await;
    let mut ws = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(ws.json().await["rank"], 1);
    let path = format!("/v1/admin/shows/{show}");
    for bad in [
        json!({"capacity": 0}),
        json!({"session_ttl_seconds": 0}),
        json!({"admission_rate_per_minute": 0}),
        json!({"title": ""}),
        json!({"starts_at": in_ms(60_000)}),
        json!({"nonsense": 1}),
    ] {
        let (code, body) = app.admin(Method::PATCH, &path, Some(bad.clone())).await;
        assert_eq!(code, 422, "{bad}: {body}");
    }
    let (_, view) = app.admin(Method::GET, &path, None).await;
    assert_eq!(view["queue"]["capacity"], 1);
    assert_eq!(view["session_ttl_seconds"], 600);

    let (code, view) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"capacity": 3, "title": "Bigger"})),
        )
        .await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["title"], "Bigger");
    assert_eq!(ws.json().await["type"], "active");
    assert_eq!(app.counts(show).await.1, 3);
    let (code, _) = app
        .admin(
            Method::PATCH,
            "/v1/admin/shows/999999",
            Some(json!({"capacity": 3})),
        )
        .await;
    assert_eq!(code, 404);
}

/// Holding every seat left tells the line so; selling the last one sells
/// the show out: the line is pushed `closed`/`sold_out`, joins are refused,
/// and the buyer's turn ends as usual.
async fn the_last_seat_sells_the_show_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(1, 600, 1, 10).await;
    let fans = app.join_many(show, "s", 3).await;
    let buyer = &fans[0];
    let mut second = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(second.json().await["rank"], 1);
    let mut sse = app.sse(show, fans[2].1.ticket()).await;
    assert_eq!(sse.json().await["rank"], 2);

    let (_, seats) = app.seats(show).await;
    let seat = seats[0]["seat_id"].as_u64().expect("seat");
    let (status, hold) = app.reserve(show, &buyer.0, buyer.1.access(), seat).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(
        second.json().await,
        json!({"type": "notice", "code": "all_seats_held"})
    );
    assert_eq!(sse.json().await["code"], "all_seats_held");

    app.charge(&buyer.0, 10).await;
    let reservation = hold["reservation_id"].as_u64().expect("id");
    let (status, _) = app
        .pay(&buyer.0, buyer.1.access(), reservation, "last-seat")
        .await;
    assert_eq!(status, 201);
    let sold_out = json!({"type": "closed", "reason": "sold_out"});
    assert_eq!(until_type(&mut second, "closed").await, sold_out);
    loop {
        let msg = sse.json().await;
        if msg["type"] == "closed" {
            assert_eq!(msg, sold_out);
            break;
        }
    }
    assert_eq!(app.show_state(show).await, "sold_out");
    let late = app.sign_in("too-late").await;
    let refused = app.join(show, &late).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["error"]["code"], "sold_out");
    let (_, status) = app.status(show, fans[1].1.ticket()).await;
    assert_eq!(
        (status["state"].as_str(), status["reason"].as_str()),
        (Some("closed"), Some("sold_out"))
    );
    let (_, view) = app
        .admin(Method::GET, &format!("/v1/admin/shows/{show}"), None)
        .await;
    assert_eq!(
        view["counts"]["seats"],
        json!({"available": 0, "held": 0, "sold": 1})
    );
    assert_eq!(view["counts"]["completed"], 1);
}

/// The operator's notice: set by PATCH, pushed at once to every connected
/// fan (waiting on WebSocket or SSE, admitted), carried by status and join
/// answers and by a new connection's first messages; bounded (422, nothing
/// changed); cleared by `null` or an empty text.
async fn the_operator_notice_reaches_every_fan(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let fans = app.join_many(show, "n", 3).await;
    let mut admitted = app.ws(show, fans[0].1.ticket()).await;
    assert_eq!(admitted.json().await["type"], "active");
    let mut waiting = app.ws(show, fans[1].1.ticket()).await;
    assert_eq!(waiting.json().await["rank"], 1);
    let mut sse = app.sse(show, fans[2].1.ticket()).await;
    assert_eq!(sse.json().await["rank"], 2);
    let (_, status) = app.status(show, fans[1].1.ticket()).await;
    assert!(status.get("notice").is_none(), "{status}");

    let path = format!("/v1/admin/shows/{show}");
    let text = "Gates open at 18:00.\n게이트는 18시에 열립니다.";
    let (code, view) = app
        .admin(Method::PATCH, &path, Some(json!({ "notice": text })))
        .await;
    assert_eq!((code, view["notice"].as_str()), (200, Some(text)), "{view}");
    let pushed = json!({"type": "notice", "code": "operator", "text": text});
    assert_eq!(until_type(&mut admitted, "notice").await, pushed);
    assert_eq!(until_type(&mut waiting, "notice").await, pushed);
    loop {
        let msg = sse.json().await;
        if msg["type"] == "notice" {
            assert_eq!(msg, pushed);
            break;
        }
        assert_eq!(msg["type"], "rank", "{msg}");
    }
    // A fan who polls, joins or connects later sees it too.
    let (_, status) = app.status(show, fans[2].1.ticket()).await;
    assert_eq!(status["notice"], text, "{status}");
    let late = app.join(show, &app.sign_in("n-late").await).await;
    assert_eq!(late.body["notice"], text, "{:?}", late.body);
    let mut later = app.ws(show, late.ticket()).await;
    assert_eq!(later.json().await["rank"], 3);
    assert_eq!(later.json().await, pushed);

    // Too long, or with control characters: refused, the notice kept.
    for bad in [
        json!({"notice": "x".repeat(501)}),
        json!({"notice": "bell\u{7}"}),
    ] {
        let (code, body) = app.admin(Method::PATCH, &path, Some(bad)).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (422, Some("invalid_show")),
            "{body}"
        );
    }
    let (_, view) = app.admin(Method::GET, &path, None).await;
    assert_eq!(view["notice"], text);

    // Cleared: pushed as an empty text, gone from the answers.
    for clear in [json!({"notice": null}), json!({"notice": "  "})] {
        app.admin(Method::PATCH, &path, Some(json!({ "notice": "again" })))
            .await;
        assert_eq!(until_type(&mut waiting, "notice").await["text"], "again");
        let (code, view) = app.admin(Method::PATCH, &path, Some(clear)).await;
        assert_eq!((code, &view["notice"]), (200, &json!(null)), "{view}");
        assert_eq!(
            until_type(&mut waiting, "notice").await,
            json!({"type": "notice", "code": "operator", "text": ""})
        );
    }
    let (_, status) = app.status(show, fans[1].1.ticket()).await;
    assert!(status.get("notice").is_none(), "{status}");
}

/// Reads until a message of this type (ranks may come first).
async fn until_type(ws: &mut WsFan, kind: &str) -> serde_json::Value {
    loop {
        let msg = ws.json().await;
        if msg["type"] == kind {
            return msg;
        }
        assert_eq!(msg["type"], "rank", "while waiting for {kind}: {msg}");
    }
}

crate::for_each_backend!(
    the_clock_opens_a_fair_prequeue,
    the_opening_order_is_uniform,
    the_opening_admits_in_its_step_from_the_start,
    admissions_are_spaced_by_the_rate,
    pause_and_resume_are_pushed,
    close_and_eject_are_pushed,
    patch_changes_a_show_live,
    the_operator_notice_reaches_every_fan,
    the_last_seat_sells_the_show_out,
    the_grace_of_a_prequeued_fan_runs_from_the_start,
    polls_keep_a_prequeued_spot,
);

#[test]
fn admission_rate_bounds() {
    assert!(AdmissionRate::new(0).is_none());
    assert!(AdmissionRate::new(1).is_some());
}
