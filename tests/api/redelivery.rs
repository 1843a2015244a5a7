//! Kafka redelivery: every event twice and out of order gives the same final
//! queue as a single in-order delivery.

use std::time::Duration;

use anteroom::domain::{DomainEvent, EventKind, SessionId, ShowId, UserId};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::helpers::*;

/// Fills a show of capacity 3 with six fans; returns (user, ticket,
/// session if active) in join order.
async fn six_fans(
    app: &TestApp,
    show: u64,
    prefix: &str,
) -> Vec<(UserId, String, Option<SessionId>)> {
    app.join_many(show, prefix, 6)
        .await
        .into_iter()
        .map(|(fan, spot)| {
            let session = spot.body["access_token"].as_str().map(session_of);
            (UserId(fan.user_id), spot.ticket().to_owned(), session)
        })
        .collect()
}

async fn final_states(
    app: &TestApp,
    show: u64,
    fans: &[(UserId, String, Option<SessionId>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (_, ticket, _) in fans {
        let (_, s) = app.status(show, ticket).await;
        out.push(format!(
            "{}{}",
            s["state"].as_str().unwrap_or(""),
            s["reason"]
                .as_str()
                .map(|r| format!(":{r}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_out_of_order_events_end_where_in_order_ones_do() {
    let backends = RealBackends::create().await;
    let bootstrap = backends.kafka.bootstrap.clone();
    let topic = format!(
        "{}{}",
        backends.kafka.topic_prefix,
        EventKind::PaymentCompleted.topic()
    );
    let app = spawn_app_on(&backends, |_| {}).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let send = |event: DomainEvent| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let payload = serde_json::to_vec(&event).expect("json");
            let key = event.show_id.0.to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .expect("delivered");
        }
    };

    let in_order = app.create_show(3, 600, 60).await;
    let shuffled = app.create_show(3, 600, 60).await;
    let fans_a = six_fans(&app, in_order, "io").await;
    let fans_b = six_fans(&app, shuffled, "sh").await;
    let payment = |show: u64, (user, _, session): &(UserId, String, Option<SessionId>)| {
        DomainEvent::new(EventKind::PaymentCompleted, ShowId(show), *user, *session)
    };

    // Once each, in order.
    for fan in &fans_a[..3] {
        send(payment(in_order, fan)).await;
    }
    // Twice each (the same event, same id), newest first, interleaved, plus a
    // payment naming a session that never existed.
    let events: Vec<DomainEvent> = fans_b[..3].iter().map(|f| payment(shuffled, f)).collect();
    let bogus = DomainEvent::new(
        EventKind::PaymentCompleted,
        ShowId(shuffled),
        fans_b[4].0,
        Some(SessionId(9_999)),
    );
    for e in [
        &events[2], &events[0], &bogus, &events[2], &events[1], &events[0], &bogus, &events[1],
    ] {
        send(e.clone()).await;
    }

    for show in [in_order, shuffled] {
        eventually("the freed slots are refilled", || async {
            app.counts(show).await == (3, 3, 0)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = final_states(&app, in_order, &fans_a).await;
    let b = final_states(&app, shuffled, &fans_b).await;
    assert_eq!(
        a,
        [
            "closed:completed",
            "closed:completed",
            "closed:completed",
            "active",
            "active",
            "active"
        ]
    );
    assert_eq!(a, b);
    assert_eq!(app.counts(shuffled).await, (3, 3, 0));
}
