//! Backend selection: settings that cannot work stop start-up with the
//! reason; an exhausted database pool answers 503, never hangs.

use std::time::{Duration, Instant};

use anteroom::config::{Secret, Settings};
use anteroom::startup::Application;
use anteroom::store::Database;

use crate::helpers::*;

fn settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        seed_demo: Some(false),
        auth: anteroom::config::AuthSettings {
            mode: Some(anteroom::auth::AuthMode::Demo),
            ..Default::default()
        },
        ..Settings::default()
    }
}

async fn start_error(settings: Settings) -> String {
    let started = Instant::now();
    let err = match Application::build(settings).await {
        Ok(_) => panic!("start-up should have failed"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "failed fast: {err}"
    );
    err
}

#[tokio::test]
async fn unreachable_or_malformed_backends_stop_start_up_with_the_reason() {
    let mut s = settings();
    s.redis.url = Some(Secret::new("redis://127.0.0.1:1".into()));
    let err = start_error(s).await;
    assert!(err.contains("ANTEROOM_REDIS_URL"), "{err}");

    let mut s = settings();
    s.redis.url = Some(Secret::new("redis://[::nonsense".into()));
    let err = start_error(s).await;
    assert!(err.contains("Redis"), "{err}");

    let mut s = settings();
    s.database.url = Some(Secret::new(
        "mysql://anteroom:anteroom@127.0.0.1:1/x".into(),
    ));
    s.database.acquire_timeout_ms = 500;
    let err = start_error(s).await;
    assert!(err.contains("ANTEROOM_DATABASE_URL"), "{err}");

    let mut s = settings();
    s.database.url = Some(Secret::new("postgres://localhost/x".into()));
    let err = s
        .validate()
        .expect_err("only MySQL is supported")
        .to_string();
    assert!(err.contains("mysql://"), "{err}");

    let mut s = settings();
    s.kafka.brokers = Some("127.0.0.1:1".into());
    let err = start_error(s).await;
    assert!(err.contains("ANTEROOM_KAFKA_BROKERS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_database_pool_answers_503_with_retry_after() {
    let backends = RealBackends::create().await;
    let app = spawn_app_on(&backends, |s| {
        s.database.max_connections = 1;
        s.database.acquire_timeout_ms = 300;
    })
    .await;
    let Database::MySql(db) = app.app.db() else {
        panic!("the app runs on MySQL");
    };
    let held = db.pool().acquire().await.expect("the only connection");

    let list_shows = || async {
        app.client
            .get(format!("{}/v1/shows", app.base))
            .send()
            .await
            .expect("request")
    };
    let started = Instant::now();
    let res = list_shows().await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered, not hung"
    );

    drop(held);
    assert_eq!(list_shows().await.status(), 200);
}
