//! Stopping: the order an orchestrator relies on, and a critical task that
//! fails taking the process down instead of leaving it serving half-dead.

use crate::helpers::*;

fn env(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ANTEROOM_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("ANTEROOM_TICKET_SECRET", SECRET.to_owned()),
        ("ANTEROOM_SEED_DEMO", "false".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_then_closes_sockets_with_1012() {
    // A drain long enough to see readiness off while the socket is open.
    let node = Process::start(&env(&[("ANTEROOM_SHUTDOWN_DRAIN_SECS", "3")])).await;
    let show = node.create_show(1, 600, 60).await;
    let fan = node.sign_in("stays").await;
    let spot = node.join(show, &fan).await;
    let mut ws = node.ws(show, spot.ticket()).await;
    assert_eq!(ws.json().await["type"], "active");
    assert_eq!(node.readyz().await, Some(200));

    node.terminate();
    // First: /readyz answers 503 while the node still serves.
    eventually("/readyz answers 503", || async {
        node.readyz().await == Some(503)
    })
    .await;
    assert_eq!(
        node.status(show, spot.ticket()).await.1["state"],
        "active",
        "the node still serves while it drains"
    );
    // Then, after the drain: the socket is told to reconnect elsewhere.
    assert_eq!(close_code(&ws.next().await), Some(1012));
    let status = node.exit_status(PATIENCE).await;
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_admission_consumer_stops_the_process_with_an_error() {
    let node = Process::start(&env(&[("ANTEROOM_FAULT", "admission-consumer-panic")])).await;
    let show = node.create_show(1, 600, 60).await;
    let fan = node.sign_in("leaver").await;
    let spot = node.join(show, &fan).await;
    assert_eq!(spot.state(), "active");
    // Leaving publishes `session.left`; the consumer panics on it.
    assert_eq!(node.leave(show, spot.ticket()).await, 204);
    let status = node.exit_status(PATIENCE).await;
    assert!(
        !status.success(),
        "the process exits non-zero so the orchestrator restarts it: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fault_the_same_steps_keep_the_process_serving() {
    let node = Process::start(&env(&[])).await;
    let show = node.create_show(1, 600, 60).await;
    let fan = node.sign_in("leaver").await;
    let spot = node.join(show, &fan).await;
    assert_eq!(node.leave(show, spot.ticket()).await, 204);
    let next = node.join(show, &node.sign_in("next").await).await;
    assert_eq!(next.state(), "active");
    // The consumer applied the event this time, and the node serves on.
    eventually("the session.left event is applied", || async {
        node.metrics_text().await.lines().any(|l| {
            l.strip_prefix("anteroom_events_applied_total{type=\"session.left\"} ")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
    })
    .await;
    assert_eq!(node.readyz().await, Some(200));
    node.stop().await;
}
