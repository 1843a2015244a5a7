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
