//! The Redis command deadline (`ANTEROOM_REDIS_TIMEOUT_MS`): with the
//! queue's Redis hung or refusing connections, a join is answered 503 with
//! `Retry-After` within about the deadline (before it, 0.2–9.5 s), and
//! joins work again once Redis is back. On a Redis of the test's own.

use std::time::{Duration, Instant};

use crate::helpers::{eventually, spawn_app_on, Fan, OwnRedis, RealBackends, TestApp};

/// Well above the 300 ms deadline the tests set (a debug build on a busy
/// machine), and well below the 1–9.5 s a join waited without one.
const BOUND: Duration = Duration::from_millis(2_500);

/// A join: its status, `Retry-After`, and how long the answer took.
async fn timed_join(app: &TestApp, show: u64, fan: &Fan) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let res = app
        .client
        .post(format!("{}/v1/shows/{show}/queue", app.base))
        .bearer_auth(&fan.token)
        .send()
        .await
        .expect("request");
    let took = started.elapsed();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (res.status().as_u16(), retry_after, took)
}

/// Fans signed in (the database, not Redis) before the fault.
async fn fans(app: &TestApp, prefix: &str, n: usize) -> Vec<Fan> {
    let mut fans = Vec::with_capacity(n);
    for i in 0..n {
        fans.push(app.sign_in(&format!("{prefix}{i}")).await);
    }
    fans
}

async fn assert_503_within_bound(app: &TestApp, show: u64, fans: &[Fan]) {
    for fan in fans {
        let (status, retry_after, took) = timed_join(app, show, fan).await;
        assert_eq!(status, 503, "a join while Redis is down");
        let retry_after = retry_after.expect("a 503 carries Retry-After");
        assert!(
            retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
            "Retry-After: {retry_after}"
        );
        assert!(took < BOUND, "the 503 took {took:?}");
    }
}

async fn joins_again(app: &TestApp, show: u64, fan: &Fan) {
    eventually("joins succeed again once Redis is back", || async {
        timed_join(app, show, fan).await.0 == 201
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_answers_joins_503_within_the_deadline() {
    let redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |s| s.redis.timeout_ms = 300).await;
    let show = app.create_show(2, 60, 30).await;
    let fans = fans(&app, "hung", 4).await;
    assert_eq!(timed_join(&app, show, &fans[0]).await.0, 201);

    redis.pause();
    assert_503_within_bound(&app, show, &fans[1..3]).await;
    redis.resume();
    joins_again(&app, show, &fans[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_redis_answers_joins_503_within_the_deadline() {
    let mut redis = OwnRedis::start().await;
    let backends = RealBackends::create_on(&redis).await;
    let app = spawn_app_on(&backends, |s| s.redis.timeout_ms = 300).await;
    let show = app.create_show(2, 60, 30).await;
    let fans = fans(&app, "refused", 5).await;
    assert_eq!(timed_join(&app, show, &fans[0]).await.0, 201);

    redis.kill();
    // Several in a row: the client's reconnect backoff grows with each
    // failed attempt, and no join may wait it out.
    assert_503_within_bound(&app, show, &fans[1..4]).await;
    redis.restart().await;
    joins_again(&app, show, &fans[4]).await;
}
