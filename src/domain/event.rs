use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    PaymentChange, PaymentId, Reservation, ReservationId, SeatId, SessionId, ShowId, Timestamp,
    UserId,
};

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
    #[serde(rename = "reservation.expired")]
    ReservationExpired,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::PaymentCompleted,
        EventKind::SessionExpired,
        EventKind::SessionLeft,
        EventKind::WaitingAbandoned,
        EventKind::ReservationExpired,
    ];

    pub fn topic(self) -> &'static str {
        match self {
            EventKind::PaymentCompleted => "payment.completed",
            EventKind::SessionExpired => "session.expired",
            EventKind::SessionLeft => "session.left",
            EventKind::WaitingAbandoned => "waiting.abandoned",
            EventKind::ReservationExpired => "reservation.expired",
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
    /// The sale an event of the payment paths is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_id: Option<SeatId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    /// Points paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// On `payment.completed`: the payer still holds other seats in the
    /// show, so the session stays active (they may pay for those too).
    /// Absent means false: the payment ends the session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keeps_session: bool,
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
            reservation_id: None,
            seat_id: None,
            payment_id: None,
            amount: None,
            keeps_session: false,
        }
    }

    /// The event of a completed payment, made in the change's session.
    pub fn payment_completed(change: &PaymentChange, payment: PaymentId) -> Self {
        let r = &change.reservation;
        Self {
            reservation_id: Some(r.id),
            seat_id: Some(r.seat),
            payment_id: Some(payment),
            amount: Some(r.price),
            keeps_session: !change.ends_session,
            ..Self::new(
                EventKind::PaymentCompleted,
                r.show,
                r.user,
                Some(change.session),
            )
        }
    }

    /// The event of a hold that ran out and gave its seat back.
    pub fn reservation_expired(reservation: &Reservation) -> Self {
        Self {
            reservation_id: Some(reservation.id),
            seat_id: Some(reservation.seat),
            ..Self::new(
                EventKind::ReservationExpired,
                reservation.show,
                reservation.user,
                Some(reservation.session),
            )
        }
    }
}
