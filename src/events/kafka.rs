//! Kafka through rdkafka (bundled librdkafka).
//!
//! - One topic per event type, named `<prefix><type>` (`anteroom.payment.completed`, ...),
//!   keyed by show id so one show's events stay in order on one partition.
//! - The producer is idempotent (`enable.idempotence`, `acks=all`): a retry
//!   after a lost acknowledgement never writes an event twice.
//! - The consumer is one group; offsets are committed only after the effect
//!   is applied (auto-commit off), so a crash redelivers rather than loses.
//!   Consumers deduplicate by event id. `group.instance.id` (static
//!   membership) is configurable so a restarting node rejoins without a
//!   rebalance; the consumer leaves the group cleanly on shutdown.
//! - The consumer's rebalance callbacks say whether it holds its assignment:
//!   until the group has given it one, and again between a revocation and
//!   the next assignment, events of the partitions in play are applied by
//!   nobody, so the node is not ready ([`KafkaBus::consuming`]).
//! - `fetch.wait.max.ms` is the longest an empty fetch waits. A Kafka broker
//!   answers a waiting fetch the moment an event arrives, so there it only
//!   sets the idle cost (about one fetch per broker per wait, per node);
//!   brokers that hold an empty fetch to its end (rdkafka's MockCluster,
//!   tansu) delay an event by up to it. The default (10 ms) bounds that
//!   delay at an idle cost of about 100 fetches a second per broker per
//!   node (docs/benchmarks.md, issue 15).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::BusError;
use crate::config::KafkaSettings;
use crate::domain::{DomainEvent, EventKind, Timestamp};
use crate::resilience::Breaker;

pub struct KafkaBus {
    producer: FutureProducer,
    /// Every publish passes it; its deadline is librdkafka's own
    /// (`message.timeout.ms`), after which the send fails.
    breaker: Breaker,
    /// The bootstrap servers (optional in the settings: no brokers, no bus).
    brokers: String,
    settings: KafkaSettings,
    /// What the admission consumer's callbacks last reported.
    consumer: Arc<ConsumerState>,
}

/// The admission consumer as its callbacks report it: its lag and when
/// that came (Unix ms; 0 before the first statistics), its fetches, and
/// its assignment.
#[derive(Debug, Default)]
struct ConsumerState {
    lag: AtomicI64,
    lag_at: AtomicI64,
    /// Fetch requests sent, summed over the brokers (from statistics).
    fetches: AtomicU64,
    /// Whether the group has given the consumer its assignment (which may
    /// hold no partition: more nodes than partitions), and how many
    /// partitions it holds.
    assigned: AtomicBool,
    partitions: AtomicUsize,
}

/// How often librdkafka reports the consumer's statistics (its lag).
const STATS_INTERVAL: Duration = Duration::from_secs(5);

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.brokers)
            .field("settings", &self.settings)
            .finish()
    }
}

const SEND_TIMEOUT: Duration = Duration::from_secs(5);

fn err(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl KafkaBus {
    /// Connects the producer and checks the brokers answer (fails fast with
    /// the reason), then makes sure the topics exist.
    pub async fn connect(
        settings: &KafkaSettings,
        brokers: &str,
        breaker: Breaker,
    ) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(err)?;
        let bus = Self {
            producer,
            breaker,
            brokers: brokers.to_owned(),
            settings: settings.clone(),
            consumer: Arc::default(),
        };
        bus.metadata(Duration::from_secs(5))
            .await
            .map_err(|e| BusError::Unavailable(format!("the brokers did not answer: {e}")))?;
        if bus.settings.create_topics
            && tokio::time::timeout(Duration::from_secs(10), bus.ensure_topics())
                .await
                .is_err()
        {
            tracing::warn!("creating topics timed out; create them as docs/operations.md shows");
        }
        Ok(bus)
    }

    pub fn topic(&self, kind: EventKind) -> String {
        format!("{}{}", self.settings.topic_prefix, kind.topic())
    }

    fn topics(&self) -> Vec<String> {
        EventKind::ALL.iter().map(|k| self.topic(*k)).collect()
    }

    /// Creates missing topics. Brokers that refuse (no permission, or a test
    /// broker without the admin API) leave it to the operator: a warning,
    /// not a failure.
    async fn ensure_topics(&self) {
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create();
        let Ok(admin) = admin else { return };
        let names = self.topics();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, self.settings.partitions, TopicReplication::Fixed(-1)))
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(5)))
            .request_timeout(Some(Duration::from_secs(5)));
        match admin.create_topics(&topics, &opts).await {
            Ok(results) => {
                for r in results {
                    if let Err((topic, code)) = r {
                        if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                            tracing::warn!(%topic, ?code, "could not create topic");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not create topics; create them as docs/operations.md shows")
            }
        }
    }

    /// Publishes one event and waits for the brokers' acknowledgement;
    /// fails at once while the producer's breaker is open.
    pub async fn publish(&self, event: &DomainEvent) -> Result<(), BusError> {
        self.breaker.call(self.send(event)).await
    }

    async fn send(&self, event: &DomainEvent) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).map_err(err)?;
        let key = event.show_id.0.to_string();
        let topic = self.topic(event.kind);
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        let sent = self.producer.send(record, SEND_TIMEOUT).await;
        sent.map(drop).map_err(|(e, _)| {
            metrics::counter!(crate::telemetry::metrics::KAFKA_PRODUCE_ERRORS, "topic" => event.kind.topic())
                .increment(1);
            err(e)
        })
    }

    /// Events not yet consumed by this node's consumer, summed over the
    /// partitions it is assigned; `None` before the first statistics and
    /// when they are stale. librdkafka hands statistics over only while the
    /// consumer polls, and the admission consumer stops polling while it
    /// retries an event it cannot apply yet: then the lag is unknown, not
    /// its last value.
    pub fn consumer_lag(&self) -> Option<u64> {
        let state = &self.consumer;
        let age = Timestamp::now().0 - state.lag_at.load(Ordering::Relaxed);
        let fresh = u128::try_from(age).is_ok_and(|ms| ms <= 3 * STATS_INTERVAL.as_millis());
        fresh
            .then(|| u64::try_from(state.lag.load(Ordering::Relaxed)).ok())
            .flatten()
    }

    /// Fetch requests this node's consumer has sent, as of its last
    /// statistics: an idle node's cost to the brokers.
    pub fn consumer_fetches(&self) -> u64 {
        self.consumer.fetches.load(Ordering::Relaxed)
    }

    /// The partitions the admission consumer holds; `None` while it has no
    /// assignment.
    pub fn assigned_partitions(&self) -> Option<usize> {
        let state = &self.consumer;
        state
            .assigned
            .load(Ordering::Acquire)
            .then(|| state.partitions.load(Ordering::Relaxed))
    }

    /// Whether the admission consumer holds its assignment. Before the
    /// group's first assignment (about 3 s after a start: the group waits
    /// for more members) and during a rebalance, the events of the
    /// partitions in play reach no consumer: a node that served then would
    /// leave a payment's event unapplied for that long.
    pub fn consuming(&self) -> Result<(), BusError> {
        match self.assigned_partitions() {
            Some(_) => Ok(()),
            None => Err(BusError::Unavailable(
                "the admission consumer has no partition assignment yet".into(),
            )),
        }
    }

    pub fn subscribe(&self) -> Result<KafkaSubscription, BusError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.settings.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set(
                "fetch.wait.max.ms",
                self.settings.fetch_wait_max_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                STATS_INTERVAL.as_millis().to_string(),
            );
        if let Some(id) = &self.settings.instance_id {
            config.set("group.instance.id", id);
        }
        let context = AdmissionContext {
            state: self.consumer.clone(),
        };
        let consumer: StreamConsumer<AdmissionContext> =
            config.create_with_context(context).map_err(err)?;
        let topics = self.topics();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(err)?;
        Ok(KafkaSubscription {
            consumer,
            last: None,
        })
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        self.metadata(Duration::from_secs(2)).await
    }

    /// Asks the brokers for metadata: a round trip that proves they answer.
    /// librdkafka's call blocks, so it runs off the async workers.
    async fn metadata(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(drop)
        })
        .await
        .map_err(err)?
        .map_err(err)
    }

    /// Waits for queued events to reach the brokers (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "events still queued for Kafka at shutdown");
        }
    }
}

/// A consumer-group member. Dropping it closes the consumer, which leaves
/// the group (a hard kill would stall the group until the session timeout).
pub struct KafkaSubscription {
    consumer: StreamConsumer<AdmissionContext>,
    /// Where the last delivered event sits, to commit once it is applied.
    last: Option<(String, i32, i64)>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("last", &self.last)
            .finish()
    }
}

impl KafkaSubscription {
    pub async fn next(&mut self) -> Option<DomainEvent> {
        loop {
            let msg = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let position = (msg.topic().to_owned(), msg.partition(), msg.offset());
            match msg.payload().map(serde_json::from_slice::<DomainEvent>) {
                Some(Ok(event)) => {
                    self.last = Some(position);
                    return Some(event);
                }
                _ => {
                    // A message no consumer can read: skip it for good rather
                    // than stall the partition.
                    tracing::error!(topic = %position.0, partition = position.1, offset = position.2, "unreadable event skipped");
                    self.last = Some(position);
                    let _ = self.commit().await;
                }
            }
        }
    }

    pub async fn commit(&mut self) -> Result<(), BusError> {
        let Some((topic, partition, offset)) = self.last.take() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset + 1))
            .map_err(err)?;
        self.consumer.commit(&tpl, CommitMode::Async).map_err(err)
    }
}

/// The consumer's context: keeps the lag and the fetch count from
/// librdkafka's statistics, and the assignment from the rebalance
/// callbacks. `consumer_lag` is the high watermark minus the committed
/// offset, and we commit only after an event's effect is applied, so it
/// counts events not yet acted on.
struct AdmissionContext {
    state: Arc<ConsumerState>,
}

impl ClientContext for AdmissionContext {
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            // -1 is librdkafka's internal "unassigned" partition; a negative
            // lag means not known (a partition this member does not own).
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        let fetches: i64 = statistics
            .brokers
            .values()
            .filter_map(|b| b.req.get("Fetch"))
            .sum();
        let state = &self.state;
        state.lag.store(lag, Ordering::Relaxed);
        state.lag_at.store(Timestamp::now().0, Ordering::Relaxed);
        state
            .fetches
            .store(u64::try_from(fetches).unwrap_or(0), Ordering::Relaxed);
    }
}

impl ConsumerContext for AdmissionContext {
    /// Runs on the consumer's own poll, after the assignment changed: what
    /// the consumer holds now decides. An assignment counts even when empty
    /// (the group has more members than partitions: other nodes apply the
    /// events); a revocation that leaves nothing, or a failed rebalance
    /// (librdkafka then unassigns), leaves the node not ready until the next
    /// assignment.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = consumer.assignment().map_or(0, |tpl| tpl.count());
        let assigned = match rebalance {
            Rebalance::Assign(_) => true,
            Rebalance::Revoke(_) => held > 0,
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "Kafka rebalance failed; not ready until the next assignment");
                false
            }
        };
        self.state.partitions.store(held, Ordering::Relaxed);
        self.state.assigned.store(assigned, Ordering::Release);
        if assigned {
            tracing::info!(
                partitions = held,
                "the admission consumer has its assignment"
            );
        } else {
            tracing::info!("the admission consumer's partitions were revoked; not ready");
        }
    }
}
