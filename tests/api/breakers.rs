//! Circuit breakers: while a backend is down its breaker opens and requests
//! are refused at once (503 + `Retry-After`) instead of each waiting on the
//! dead backend; when it answers again a probe closes the breaker.
//!
//! The gateway runs as a process of its own so its metrics are its own.

use crate::helpers::{eventually, OwnRedis, Process, RealBackends};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_refused_fast_behind_an_open_breaker_and_recovery_closes_it() {
    let mut redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let gateway = Process::start(&backends.env()).await;
    let show = gateway.create_show(1, 600, 60).await;
    let mut fans = Vec::new();
    for i in 0..40 {
        fans.push(gateway.sign_in(&format!("breaker-{i}")).await);
    }
    assert!(gateway.join(show, &fans[0]).await.status < 300);
    let state = r#"anteroom_breaker_state{backend="redis"}"#;
    let rejected = r#"anteroom_breaker_rejected_total{backend="redis"}"#;
    assert_eq!(gateway.sample(state).await, Some(0.0));

    redis.kill();
    for fan in &fans[1..31] {
        let res = gateway
            .client
            .post(format!("{}/v1/shows/{show}/queue", gateway.base))
            .bearer_auth(&fan.token)
            .send()
            .await
            .expect("an answer, not a hang");
        assert_eq!(res.status(), 503, "a join while Redis is down");
        assert!(
            res.headers().contains_key("retry-after"),
            "a 503 says when to retry"
        );
    }
    // Thirty joins, five failures open the breaker: most were never sent.
    let refused = gateway.sample(rejected).await.expect("rejections exported");
    assert!(
        refused >= 10.0,
        "joins refused by the open breaker: {refused}"
    );
    assert_ne!(gateway.sample(state).await, Some(0.0), "not closed");

    redis.restart().await;
    let fan = &fans[31];
    eventually("a join succeeds once Redis is back", || async {
        gateway.join(show, fan).await.status < 300
    })
    .await;
    eventually("the breaker reads closed", || async {
        gateway.sample(state).await == Some(0.0)
    })
    .await;
    let closed = r#"anteroom_breaker_transitions_total{backend="redis",to="closed"}"#;
    assert!(gateway.sample(closed).await.expect("transitions exported") >= 1.0);
}
