use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SessionId, ShowId, Timestamp, UserId};

/// What happened. Each kind is one topic on the event bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "payment.completed")]
    PaymentCompleted,
    #[serde(rename = "session.expired")]
    SessionExpired,
    #[serde(rename = "session.left")]
    SessionLeft,
    #[serde(rename = "waiting.abandoned")]
    WaitingAbandoned,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::PaymentCompleted,
        EventKind::SessionExpired,
        EventKind::SessionLeft,
        EventKind::WaitingAbandoned,
    ];

    pub fn topic(self) -> &'static str {
        match self {
            EventKind::PaymentCompleted => "payment.completed",
            EventKind::SessionExpired => "session.expired",
            EventKind::SessionLeft => "session.left",
            EventKind::WaitingAbandoned => "waiting.abandoned",
        }
    }
}

/// A domain event. Consumers deduplicate by `id`, so delivering one twice
/// has the effect of delivering it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub show_id: ShowId,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// Unix milliseconds.
    pub occurred_at: Timestamp,
}

impl DomainEvent {
    pub fn new(kind: EventKind, show: ShowId, user: UserId, session: Option<SessionId>) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind,
            show_id: show,
            user_id: user,
            session_id: session,
            occurred_at: Timestamp::now(),
        }
    }
}
