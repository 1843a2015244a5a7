//! Randomized concurrency: joins, leaves, expiries, payments and disconnects
//! racing each other must never break the admission invariants.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anteroom::domain::{ShowId, UserId};
use rand::{Rng, SeedableRng};

use crate::helpers::*;

const CAPACITY: u64 = 4;
const FANS: usize = 40;

async fn random_joins_leaves_expiries_and_disconnects_keep_the_invariants(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let show = app.create_show(CAPACITY, 1, 1).await;
    let seed: u64 = rand::random();
    println!("seed {seed}");

    // Every session id any fan was ever admitted with, from access tokens.
    let sessions: Arc<Mutex<HashMap<u64, HashSet<u64>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // An observer samples the counts throughout.
    let observer = {
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (cap, active, _) = app.counts(show).await;
                assert!(active <= cap, "active {active} above capacity {cap}");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        })
    };

    let mut tasks = Vec::new();
    for f in 0..FANS {
        let app = app.clone();
        let sessions = sessions.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ f as u64);
            let fan = app.sign_in(&format!("r{f}")).await;
            let record = |token: &str| {
                assert_eq!(admission_claims(token)["show"], show);
                let session = session_of(token);
                sessions
                    .lock()
                    .expect("lock")
                    .entry(fan.user_id)
                    .or_default()
                    .insert(session.0);
                session
            };
            let mut last_session = None;
            for _ in 0..6 {
                let spot = app.join(show, &fan).await;
                assert!(spot.status == 200 || spot.status == 201, "{:?}", spot.body);
                if let Some(t) = spot.body["access_token"].as_str() {
                    last_session = Some(record(t));
                }
                let mut ws = app.ws(show, spot.ticket()).await;
                let hold = Duration::from_millis(rng.random_range(0..400));
                let end = tokio::time::Instant::now() + hold;
                let mut actives_on_this_socket = HashSet::new();
                loop {
                    let msg = tokio::select! {
                        m = ws.next() => m,
                        _ = tokio::time::sleep_until(end) => break,
                    };
                    match msg {
                        Frame::Json(m) if m["type"] == "active" => {
                            let token = m["access_token"].as_str().expect("token");
                            assert!(
                                actives_on_this_socket.insert(token.to_owned()),
                                "same activation pushed twice"
                            );
                            last_session = Some(record(token));
                        }
                        Frame::Json(_) => {}
                        Frame::Closed(_) => break,
                    }
                }
                match rng.random_range(0..4) {
                    0 => {
                        let code = app.leave(show, spot.ticket()).await;
                        assert!(code == 204 || code == 404, "leave answered {code}");
                    }
                    1 => {
                        if let Some(session) = last_session {
                            app.app
                                .queue()
                                .complete_payment(ShowId(show), UserId(fan.user_id), session)
                                .await
                                .expect("payment event");
                        }
                    }
                    // Disconnect and maybe come back later (abandon or keep).
                    _ => {}
                }
                drop(ws);
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            }
            // Finish waiting and connected, so the end state is settled.
            let spot = app.join(show, &fan).await;
            (fan, app.ws(show, spot.ticket()).await)
        }));
    }
    let mut connected = Vec::new();
    for t in tasks {
        connected.push(t.await.expect("fan task"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(observer.await.expect("observer") > 10);

    // Settled: a slot is never left empty while someone waits.
    eventually("free slots are filled", || async {
        let (cap, active, waiting) = app.counts(show).await;
        waiting == 0 || active == cap
    })
    .await;
    // Sessions are unique across fans: no admission was handed out twice.
    let sessions = sessions.lock().expect("lock");
    let mut all = HashSet::new();
    for ids in sessions.values() {
        for id in ids {
            assert!(all.insert(*id), "session {id} admitted more than one fan");
        }
    }
    assert!(
        all.len() as u64 > CAPACITY,
        "the test admitted fans repeatedly"
    );
    drop(connected);
}

/// `2 × capacity` fans join at once through `nodes` (in turn): each answer
/// is the store's truth at that moment. Nobody leaves, so exactly
/// `capacity` are answered `active`, the others are answered each of the
/// ranks 1..=capacity once (a rank that never existed, or a wait for a fan a
/// free slot was there for, breaks it), and status agrees with every answer.
pub async fn concurrent_joins_are_answered_with_the_truth(nodes: &[&Node], capacity: u64) {
    let show = nodes[0].create_show(capacity, 600, 600).await;
    let mut fans = Vec::new();
    for i in 0..2 * capacity as usize {
        let node = nodes[i % nodes.len()];
        fans.push((node, node.sign_in(&format!("truth{i}")).await));
    }
    let joins = fans.iter().map(|(node, fan)| node.join(show, fan));
    let spots = futures::future::join_all(joins).await;
    let mut active = 0;
    let mut ranks = Vec::new();
    for spot in &spots {
        assert_eq!(spot.status, 201, "{:?}", spot.body);
        match spot.state() {
            "active" => active += 1,
            "waiting" => ranks.push(spot.rank()),
            other => panic!("joined as {other}: {:?}", spot.body),
        }
    }
    ranks.sort_unstable();
    assert_eq!(active, capacity, "answered active");
    assert_eq!(ranks, (1..=capacity).collect::<Vec<_>>(), "answered ranks");
    for (i, spot) in spots.iter().enumerate() {
        let (code, now) = nodes[(i + 1) % nodes.len()]
            .status(show, spot.ticket())
            .await;
        assert_eq!(code, 200, "{now}");
        assert_eq!(now["state"], spot.body["state"], "{now} vs {:?}", spot.body);
        assert_eq!(now["rank"], spot.body["rank"], "{now} vs {:?}", spot.body);
    }
}

/// A join is one round trip to Redis and none to MySQL (issue 15): the
/// fan joins and, a slot being free, is admitted in the same script call,
/// and a fan who waits is answered from that call too. Background work
/// shares the proxies, so the fewest of several joins stands for a join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_one_round_trip() {
    let backends = RealBackends::create().await;
    let (app, sql, redis) = spawn_app_behind_proxies(&backends, |_| {}).await;
    let show = app.create_show(4, 600, 600).await;
    let mut fans = Vec::new();
    for i in 0..9 {
        fans.push(app.sign_in(&format!("counted{i}")).await);
    }
    // The first join reads the show into the node's cache and loads the
    // script.
    assert_eq!(app.join(show, &fans[0]).await.state(), "active");
    let mut fewest: Option<Trips> = None;
    for (i, fan) in fans[1..].iter().enumerate() {
        let (sql_before, redis_before) = (sql.commands(), redis.commands());
        let spot = app.join(show, fan).await;
        // Admitted while slots are free, then waiting, by the same call.
        let expected = if i < 3 { "active" } else { "waiting" };
        assert_eq!(spot.state(), expected, "{:?}", spot.body);
        let trips = Trips::between(
            (&sql_before, &sql.commands()),
            (&redis_before, &redis.commands()),
        );
        if fewest.is_none_or(|f| trips.total() < f.total()) {
            fewest = Some(trips);
        }
    }
    let trips = fewest.expect("joins counted");
    eprintln!("a join: {trips:?}");
    assert_eq!((trips.sql, trips.redis), (0, 1), "{trips:?}");
}

async fn joins_are_answered_with_the_truth(backend: Backend) {
    let app = spawn_app(backend).await;
    concurrent_joins_are_answered_with_the_truth(&[&app], 20).await;
}

crate::for_each_backend!(
    random_joins_leaves_expiries_and_disconnects_keep_the_invariants,
    joins_are_answered_with_the_truth,
);
