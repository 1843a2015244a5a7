//! Domain types: identifiers, validated values, shows, seats and
//! reservations, events, the messages pushed to fans and received from them,
//! and the bounds of validated values as JSON Schema ([`schema`]). Nothing
//! here does I/O, so every other layer can depend on it.

mod event;
mod ids;
mod message;
mod sale;
pub mod schema;
mod show;
mod time;

pub use event::{DomainEvent, EventKind};
pub use ids::{
    PaymentId, ReservationId, SeatId, SessionId, ShowId, Subject, SubjectError, UserId, Username,
    UsernameError,
};
pub use message::{ClientMessage, PushMessage, Removal};
pub use sale::{
    Account, Amount, AmountError, BalanceLimit, HoldEnd, HoldRefusal, HoldRequest, HoldState,
    IdempotencyKey, IdempotencyKeyError, KeyUse, NewSeat, PayRefusal, Payment, PaymentChange,
    PaymentDecision, PaymentFacts, Receipt, Reservation, Seat, SeatChange, SeatCounts, SeatLayout,
    SeatLayoutError, SeatStatus, SeatsLeft, Section,
};
pub use show::{
    AdmissionRate, ChallengeCost, NewShow, NewShowError, Notice, Show, ShowInput, ShowPatch,
    ShowState,
};
pub use time::Timestamp;
