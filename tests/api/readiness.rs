//! Readiness on Kafka: a node is not ready until its admission consumer has
//! its partition assignment, nor while a rebalance has taken it away; with
//! several nodes in the group, each is ready with its share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;

/// The node's `anteroom_kafka_assigned_partitions`; `None` while it has no
/// assignment (NaN).
async fn assigned_partitions(node: &Node) -> Option<f64> {
    let value = node
        .metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("anteroom_kafka_assigned_partitions "))
        .expect("the gauge is exported")
        .parse::<f64>()
        .expect("a number");
    (!value.is_nan()).then_some(value)
}

fn node_env(backends: &RealBackends, instance: &str) -> Vec<(&'static str, String)> {
    let mut env = backends.env();
    env.push(("ANTEROOM_KAFKA_INSTANCE_ID", instance.to_owned()));
    // The mock broker has no admin API; its topics exist already.
    env.push(("ANTEROOM_KAFKA__CREATE_TOPICS", "false".to_owned()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_node_is_ready_at_once() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(
        app.readyz().await,
        Some(200),
        "no consumer group to wait for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_ready_only_while_its_consumer_holds_its_partitions() {
    let backends = RealBackends::create().await;
    let a = Process::start(&node_env(&backends, "node-a")).await;
    // The group assigns partitions after its first member has waited for
    // others (3 s on the mock, as on a Kafka broker): until then, no.
    assert_eq!(a.readyz().await, Some(503), "ready before any assignment");
    assert_eq!(assigned_partitions(&a).await, None);
    eventually("node A is ready", || async {
        a.readyz().await == Some(200)
    })
    .await;
    let every_partition = (MOCK_PARTITIONS * anteroom::domain::EventKind::ALL.len()) as f64;
    assert_eq!(assigned_partitions(&a).await, Some(every_partition));

    // A second node joins the group: the rebalance takes A's partitions
    // away and gives each node its share. Slow round trips make the
    // rebalance last seconds, so A's readiness is watched from before B
    // starts.
    backends.kafka.set_round_trip(Duration::from_millis(700));
    let unready = Arc::new(AtomicBool::new(false));
    let watch = {
        let unready = unready.clone();
        let node = Node::at(a.base.trim_start_matches("http://").parse().expect("addr"));
        tokio::spawn(async move {
            while !unready.load(Ordering::Relaxed) {
                if node.readyz().await == Some(503) {
                    unready.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let b = Process::start(&node_env(&backends, "node-b")).await;
    let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
    while !unready.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
    assert!(
        unready.load(Ordering::Relaxed),
        "node A stayed ready while the rebalance had taken its partitions"
    );
    backends.kafka.set_round_trip(Duration::ZERO);
    for node in [&a, &b] {
        eventually("both nodes are ready after the rebalance", || async {
            node.readyz().await == Some(200)
        })
        .await;
    }
    let (on_a, on_b) = (
        assigned_partitions(&a)
            .await
            .expect("A holds an assignment"),
        assigned_partitions(&b)
            .await
            .expect("B holds an assignment"),
    );
    assert!(
        on_a > 0.0 && on_b > 0.0 && on_a + on_b == every_partition,
        "each node holds its share: {on_a} + {on_b} of {every_partition}"
    );
    a.stop().await;
    b.stop().await;
}
