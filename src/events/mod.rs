//! The event bus seam: domain events (`payment.completed`, `session.expired`,
//! `session.left`, `waiting.abandoned`) from their producers to the consumers
//! that act on them. Embedded it is an in-process channel per subscriber; in
//! production it is Kafka ([`kafka`]), with the same subscribe/commit shape.

pub mod kafka;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::domain::DomainEvent;
use crate::resilience::{Backend, BackendError};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Every failed publish says the brokers are failing: the bus refuses
/// nothing on its own.
impl BackendError for BusError {
    fn timed_out(after: std::time::Duration) -> Self {
        BusError::Unavailable(format!("no acknowledgement within {after:?}"))
    }

    fn rejected(backend: Backend) -> Self {
        BusError::Unavailable(format!(
            "circuit breaker open: {backend} is failing; not sent"
        ))
    }

    fn trips(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
pub enum EventBus {
    Memory(Arc<MemoryBus>),
    Kafka(Arc<kafka::KafkaBus>),
}

impl EventBus {
    pub fn memory() -> Self {
        EventBus::Memory(Arc::new(MemoryBus::default()))
    }

    pub async fn publish(&self, event: &DomainEvent) -> Result<(), BusError> {
        match self {
            EventBus::Memory(m) => {
                m.publish(event);
                Ok(())
            }
            EventBus::Kafka(k) => k.publish(event).await,
        }
    }

    /// The admission consumer's subscription: every event published after
    /// this call (embedded), or the consumer group's share (Kafka).
    pub fn subscribe(&self) -> Result<Subscription, BusError> {
        match self {
            EventBus::Memory(m) => Ok(Subscription::Memory(m.subscribe(), m.in_flight.clone())),
            EventBus::Kafka(k) => Ok(Subscription::Kafka(k.subscribe()?)),
        }
    }

    /// Events published but not yet taken by this node's consumer; `None`
    /// while not known (Kafka before its first statistics).
    pub fn consumer_lag(&self) -> Option<u64> {
        match self {
            EventBus::Memory(m) => Some(m.in_flight.load(Ordering::Relaxed)),
            EventBus::Kafka(k) => k.consumer_lag(),
        }
    }

    /// Whether the bus can carry this node's events both ways: the brokers
    /// answer and this node's admission consumer holds its assignment
    /// (readiness). In-process it always can.
    pub async fn ping(&self) -> Result<(), BusError> {
        match self {
            EventBus::Memory(_) => Ok(()),
            EventBus::Kafka(k) => {
                k.consuming()?;
                k.ping().await
            }
        }
    }

    /// Fetch requests this node's consumer has sent to the brokers (0 on
    /// the in-process bus).
    pub fn consumer_fetches(&self) -> u64 {
        match self {
            EventBus::Memory(_) => 0,
            EventBus::Kafka(k) => k.consumer_fetches(),
        }
    }

    /// Partitions this node's consumer holds; `None` while a Kafka
    /// consumer has no assignment. The in-process bus has none to hold.
    pub fn assigned_partitions(&self) -> Option<usize> {
        match self {
            EventBus::Memory(_) => Some(0),
            EventBus::Kafka(k) => k.assigned_partitions(),
        }
    }

    /// Delivers what is still queued before the process exits.
    pub fn flush(&self) {
        if let EventBus::Kafka(k) = self {
            k.flush(std::time::Duration::from_secs(5));
        }
    }
}

#[derive(Debug)]
pub enum Subscription {
    /// The receiver, and the bus's in-flight count it takes events off.
    Memory(mpsc::UnboundedReceiver<DomainEvent>, Arc<AtomicU64>),
    Kafka(kafka::KafkaSubscription),
}

impl Subscription {
    /// The next event; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<DomainEvent> {
        match self {
            Subscription::Memory(rx, in_flight) => {
                let event = rx.recv().await;
                if event.is_some() {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                event
            }
            Subscription::Kafka(k) => k.next().await,
        }
    }

    /// Marks the last event [`Subscription::next`] returned as handled (its
    /// effect applied). In-process delivery has nothing to acknowledge; a
    /// broker commits the offset here.
    pub async fn commit(&mut self) -> Result<(), BusError> {
        match self {
            Subscription::Memory(..) => Ok(()),
            Subscription::Kafka(k) => k.commit().await,
        }
    }
}

/// In-process fan-out. Unbounded per subscriber because events are few (one
/// per freed slot) and a dropped event would leave a slot empty.
#[derive(Debug, Default)]
pub struct MemoryBus {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<DomainEvent>>>,
    /// Events sent to subscribers and not yet received: the consumer lag.
    in_flight: Arc<AtomicU64>,
}

impl MemoryBus {
    fn publish(&self, event: &DomainEvent) {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|tx| {
            // Counted before the send, so the receiver's decrement never
            // comes first.
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = tx.send(event.clone()).is_ok();
            if !sent {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            sent
        });
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<DomainEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }
}
