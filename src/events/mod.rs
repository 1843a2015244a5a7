//! The event bus seam: domain events (`payment.completed`, `session.expired`,
//! `session.left`, `waiting.abandoned`) from their producers to the consumers
//! that act on them. Embedded it is an in-process channel per subscriber; in
//! production it is Kafka ([`kafka`]), with the same subscribe/commit shape.

pub mod kafka;

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::domain::DomainEvent;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
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
            EventBus::Memory(m) => Ok(Subscription::Memory(m.subscribe())),
            EventBus::Kafka(k) => Ok(Subscription::Kafka(k.subscribe()?)),
        }
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        match self {
            EventBus::Memory(_) => Ok(()),
            EventBus::Kafka(k) => k.ping().await,
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
    Memory(mpsc::UnboundedReceiver<DomainEvent>),
    Kafka(kafka::KafkaSubscription),
}

impl Subscription {
    /// The next event; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<DomainEvent> {
        match self {
            Subscription::Memory(rx) => rx.recv().await,
            Subscription::Kafka(k) => k.next().await,
        }
    }

    /// Marks the last event [`Subscription::next`] returned as handled (its
    /// effect applied). In-process delivery has nothing to acknowledge; a
    /// broker commits the offset here.
    pub async fn commit(&mut self) -> Result<(), BusError> {
        match self {
            Subscription::Memory(_) => Ok(()),
            Subscription::Kafka(k) => k.commit().await,
        }
    }
}

/// In-process fan-out. Unbounded per subscriber because events are few (one
/// per freed slot) and a dropped event would leave a slot empty.
#[derive(Debug, Default)]
pub struct MemoryBus {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<DomainEvent>>>,
}

impl MemoryBus {
    fn publish(&self, event: &DomainEvent) {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|tx| tx.send(event.clone()).is_ok());
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
