//! Presence survives the node: a gateway killed with `kill -9` closes none of
//! its fans' connections; the survivors reap them when its lease lapses, and
//! the abandonment grace runs from the lapse (issue 13, drill 5).

use std::sync::Arc;
use std::time::Duration;

use anteroom::domain::{ShowId, Timestamp, UserId};
use anteroom::store::{ChangeSink, Detach, Entry, QueueChange, RedisQueueStore};

use crate::helpers::*;

const GRACE_SECS: u64 = 5;
const FANS: usize = 200;
/// The nodes' presence lease: short, for a quick drill, yet well above a
/// renewal's lateness on a loaded machine (a node that misses its renewals
/// for a whole lease is taken for dead).
const LEASE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_of_a_killed_node_keep_their_rank_if_they_reconnect_and_are_abandoned_if_not() {
    let backends = RealBackends::create().await;
    let mut env = backends.env();
    env.push(("ANTEROOM_PRESENCE__LEASE_SECS", LEASE.as_secs().to_string()));
    let a = Process::start(&env).await;
    let b = Process::start(&env).await;

    let show = a.create_show(1, 600, GRACE_SECS).await;
    let holder = a.join(show, &a.sign_in("holder").await).await;
    assert_eq!(holder.state(), "active");
    let fans = a.join_many(show, "fan", FANS).await;
    let mut on_a = Vec::with_capacity(FANS);
    for (i, (_, spot)) in fans.iter().enumerate() {
        let mut ws = a.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["rank"], i + 1);
        on_a.push(ws);
    }
    // A quarter reconnect at once, a quarter only once node B has reaped
    // node A (within the grace); the other half never come back, and half of
    // those left node A shortly before it died: the abandonment checks that
    // node A set for them die with it.
    let early = |i: usize| i % 4 == 0;
    let late = |i: usize| i % 4 == 1;
    let left_before = |i: usize| i % 4 == 3;
    let mut i = 0;
    on_a.retain(|_| {
        i += 1;
        !left_before(i - 1)
    });
    let redis = redis::Client::open(backends.redis_url.as_str()).expect("redis url");
    let redis = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let entries = format!("{}{{show:{show}}}:entries", backends.redis_prefix);
    for (i, (fan, _)) in fans.iter().enumerate().filter(|(i, _)| left_before(*i)) {
        eventually(&format!("node A uncounts fan {i}'s closed socket"), || {
            let (mut redis, entries) = (redis.clone(), &entries);
            async move {
                let entry: String = redis::cmd("HGET")
                    .arg(entries)
                    .arg(fan.user_id)
                    .query_async(&mut redis)
                    .await
                    .expect("HGET");
                // w:seq:live:last_seen
                entry.split(':').nth(2) == Some("0")
            }
        })
        .await;
    }

    a.kill().await;
    let killed = tokio::time::Instant::now();
    drop(on_a);
    let mut on_b = Vec::new();
    for (i, (_, spot)) in fans.iter().enumerate().filter(|(i, _)| early(*i)) {
        let mut ws = b.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        assert_eq!(first["rank"], i + 1, "nobody is gone yet");
        on_b.push((i, first, ws));
    }

    // Node A's lease lapses (at most a lease and a renewal's interval after
    // the kill); node B claims it and uncounts every connection it held (the
    // early fans' too: they hold B's now). At least, not exactly: a loaded
    // machine can add a claim or a reaping of its own (a renewal late by a
    // lease); the ranks and counts below would show any fan of a live node
    // taken for gone.
    eventually("node B claims node A's lapsed lease", || async {
        b.sample("anteroom_presence_nodes_claimed_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    let claimed_after = killed.elapsed();
    let held = (0..FANS).filter(|i| !left_before(*i)).count() as f64;
    eventually("node B reaps node A's connections", || async {
        b.sample("anteroom_presence_connections_reaped_total")
            .await
            .unwrap_or(0.0)
            >= held
    })
    .await;
    for (i, (_, spot)) in fans.iter().enumerate().filter(|(i, _)| late(*i)) {
        let mut ws = b.ws(show, spot.ticket()).await;
        let first = ws.json().await;
        assert_eq!(first["type"], "rank", "fan {i} still waits");
        on_b.push((i, first, ws));
    }

    // The others are abandoned once the grace from the lapse is over, within
    // grace + 15 s of the kill (the lapse comes at most a lease and a third
    // after it: 4 s).
    let deadline = killed + Duration::from_secs(GRACE_SECS + 15);
    let survivors = FANS / 2;
    loop {
        let (_, _, waiting) = b.counts(show).await;
        if waiting == survivors as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} fans still wait, {survivors} expected, {GRACE_SECS} s + 15 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    eprintln!(
        "{GRACE_SECS} s grace, {LEASE:?} lease: node A claimed {claimed_after:?} and the \
         absent fans abandoned {took:?} after the kill"
    );
    assert!(
        took >= Duration::from_secs(GRACE_SECS),
        "abandoned {took:?} after the kill, before the grace"
    );

    // The survivors keep their order, closed up: ranks 1..=100 in join order.
    on_b.sort_by_key(|(i, _, _)| *i);
    for (rank, (i, first, ws)) in on_b.iter_mut().enumerate() {
        let rank = rank as u64 + 1;
        if first["rank"] != rank {
            ws.until_rank(rank).await;
        }
        let (_, status) = b.status(show, fans[*i].1.ticket()).await;
        assert_eq!(status["rank"], rank, "fan {i}");
    }
    for (i, (_, spot)) in fans.iter().enumerate() {
        if !early(i) && !late(i) {
            let (_, status) = b.status(show, spot.ticket()).await;
            assert_eq!(status["reason"], "abandoned", "fan {i}: {status}");
        }
    }
    assert_eq!(b.counts(show).await, (1, 1, survivors as u64));

    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stalls_past_its_lease_counts_its_fans_present_again_when_it_resumes() {
    const GRACE: u64 = 6;
    const ON_A: usize = 20;
    let backends = RealBackends::create().await;
    let mut env = backends.env();
    env.push(("ANTEROOM_PRESENCE__LEASE_SECS", LEASE.as_secs().to_string()));
    let a = Process::start(&env).await;
    let b = Process::start(&env).await;

    let show = a.create_show(1, 600, GRACE).await;
    let holder = a.join(show, &a.sign_in("holder").await).await;
    assert_eq!(holder.state(), "active");
    let fans = a.join_many(show, "fan", ON_A).await;
    let mut on_a = Vec::with_capacity(ON_A);
    for (i, (_, spot)) in fans.iter().enumerate() {
        let mut ws = a.ws(show, spot.ticket()).await;
        assert_eq!(ws.json().await["rank"], i + 1);
        on_a.push(ws);
    }

    // Node A hangs past its lease: node B takes it for dead and reaps its
    // connections, though they are still open.
    a.pause();
    eventually("node B reaps the hung node A", || async {
        b.sample("anteroom_presence_connections_reaped_total")
            .await
            .unwrap_or(0.0)
            >= ON_A as f64
    })
    .await;
    // A fan who leaves node B now is abandoned a grace later, after node B's
    // checks of node A's fans (set a grace after the lapse, before now).
    let witness = b.join(show, &b.sign_in("witness").await).await;
    let mut ws = b.ws(show, witness.ticket()).await;
    assert_eq!(ws.json().await["rank"], ON_A + 1);
    drop(ws);

    // Node A resumes within the grace: its lease is gone, so it records its
    // connections again under a new name, and its fans are present.
    a.resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(GRACE) + PATIENCE;
    loop {
        let waiting = b.counts(show).await.2;
        if waiting == ON_A as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the witness is abandoned within the grace and {PATIENCE:?}: {waiting} wait"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        b.status(show, witness.ticket()).await.1["reason"],
        "abandoned"
    );
    for (i, (_, spot)) in fans.iter().enumerate() {
        assert_eq!(b.status(show, spot.ticket()).await.1["rank"], i + 1);
    }
    assert_eq!(
        a.sample("anteroom_presence_nodes_claimed_total")
            .await
            .unwrap_or(0.0),
        0.0
    );

    a.stop().await;
    b.stop().await;
}

/// Changes go nowhere: these stores have no live view.
struct NoView;

impl ChangeSink for NoView {
    fn apply(&self, _: ShowId, _: &[QueueChange]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_claimed_once_and_its_connections_reaped_once_as_of_the_lapse() {
    let prefix = format!("t{}:", short_id());
    let node = || bare_redis_store(&prefix, Arc::new(NoView));
    let (dead, x, y, z) = (node().await, node().await, node().await, node().await);
    let (show, fan) = (ShowId(1), UserId(7));
    let t0 = Timestamp::now();
    let at = |ms: u64| t0.plus(Duration::from_millis(ms));
    // Renews `node`'s one-second lease at `ms` (taking it if `create`).
    let renew = async |node: &RedisQueueStore, ms: u64, create: bool| {
        node.renew_lease(at(ms), at(ms + 1_000), create)
            .await
            .expect("renew")
    };
    let live = |entry| match entry {
        Some(Entry::Waiting {
            live, last_seen, ..
        }) => (live, last_seen),
        other => panic!("not waiting: {other:?}"),
    };

    assert!(
        !renew(&dead, 0, true).await.present,
        "a new node has no lease"
    );
    assert!(renew(&dead, 0, false).await.present);
    dead.join(
        show,
        anteroom::store::JoinRequest::new(fan, t0, anteroom::store::JoinMode::Line),
    )
    .await
    .expect("join");
    let seq = dead
        .attach(show, fan)
        .await
        .expect("attach")
        .expect("waiting");
    assert_eq!(x.attach(show, fan).await.expect("attach"), Some(seq));
    assert_eq!(live(y.entry(show, fan).await.expect("entry")), (2, t0));

    // The dead node's lease ends at 1 s. Before that nobody claims it; after
    // it, one survivor does.
    for ms in [0, 900] {
        for n in [&x, &y] {
            let r = renew(n, ms, ms == 0).await;
            assert_eq!((r.claimed, r.to_reap.len()), (0, 0));
        }
    }
    let claim = renew(&x, 1_800, false).await;
    assert_eq!(claim.claimed, 1);
    assert_eq!(claim.to_reap, vec![(dead.node(), at(1_000))]);
    let other = renew(&y, 1_800, false).await;
    assert_eq!((other.claimed, other.to_reap.len()), (0, 0));

    // The claimer dies before reaping (its lease ends at 2.8 s). A node that
    // has only just started claims nobody for a lease; a survivor that has
    // renewed all along claims the claimer, and takes its claim over.
    let starting = renew(&z, 3_000, true).await;
    assert_eq!((starting.claimed, starting.to_reap.len()), (0, 0));
    renew(&y, 2_700, false).await;
    let takeover = renew(&y, 3_000, false).await;
    assert_eq!(takeover.claimed, 1);
    let mut to_reap = takeover.to_reap;
    to_reap.sort_by_key(|(_, lapse)| *lapse);
    assert_eq!(
        to_reap,
        vec![(dead.node(), at(1_000)), (x.node(), at(2_800))]
    );

    // Reaping uncounts the dead node's connection as of its lapse, once; its
    // own detach, arriving late, changes nothing more.
    let reap = async |node: String, ms: u64| y.reap(show, &node, at(ms)).await.expect("reap");
    assert_eq!(reap(dead.node(), 1_000).await, vec![(fan, 1)]);
    assert_eq!(
        live(y.entry(show, fan).await.expect("entry")),
        (1, at(1_000))
    );
    assert!(reap(dead.node(), 1_000).await.is_empty());
    let closed = Detach {
        user: fan,
        seq,
        at: at(5_000),
    };
    dead.detach(show, &[closed]).await.expect("detach");
    assert_eq!(
        live(y.entry(show, fan).await.expect("entry")),
        (1, at(1_000))
    );
    assert_eq!(reap(x.node(), 2_800).await, vec![(fan, 1)]);
    assert_eq!(
        live(y.entry(show, fan).await.expect("entry")),
        (0, at(2_800))
    );
    y.forget_lapsed(&dead.node()).await.expect("forget");
    y.forget_lapsed(&x.node()).await.expect("forget");
    assert!(renew(&y, 3_500, false).await.to_reap.is_empty());

    // A claimed node finds its lease gone (and does not take it again);
    // under a new name it records its connections afresh, idempotently.
    assert!(!renew(&x, 3_600, false).await.present);
    x.rotate_node();
    assert!(!renew(&x, 3_600, true).await.present);
    x.register(show, fan, seq, 1).await.expect("register");
    x.register(show, fan, seq, 1).await.expect("register");
    assert_eq!(live(y.entry(show, fan).await.expect("entry")).0, 1);

    // A node that stops lapses at once; a survivor reaps what is left.
    x.release_lease(at(3_700)).await.expect("release");
    let stopped = renew(&y, 3_700, false).await;
    assert_eq!(
        (stopped.claimed, stopped.to_reap),
        (0, vec![(x.node(), at(3_700))])
    );
    assert_eq!(reap(x.node(), 3_700).await, vec![(fan, 1)]);
    assert_eq!(
        live(y.entry(show, fan).await.expect("entry")),
        (0, at(3_700))
    );
    y.forget_lapsed(&x.node()).await.expect("forget");

    // After an outage every lease has lapsed: the first node back claims
    // nobody until the others have had a lease to renew.
    let back = renew(&y, 10_000, false).await;
    assert_eq!((back.present, back.claimed), (true, 0));
    renew(&z, 10_100, false).await;
    renew(&y, 10_900, false).await;
    assert_eq!(renew(&y, 11_050, false).await.claimed, 0);
}
