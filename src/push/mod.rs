//! Live push to fans: the WebSocket and SSE endpoints and the session loop
//! they share.
//!
//! One loop per connection ([`session::run`]) `select!`s over the fan's own
//! events, the show's rank epoch, client frames, heartbeats and shutdown.
//! Ordering and coalescing rules, the same on both transports:
//! - The first message is always the current state.
//! - `active`, `expiring`, `expired` and `closed` are never coalesced and go
//!   out ahead of any pending rank update (the select is biased).
//! - Rank updates coalesce: the loop reads the latest rank when it gets to
//!   send, and sends at most one per `rank_interval`, so a slow client never
//!   builds a backlog and a busy show never floods a fast one. A long line
//!   stretches that interval for fans past the front so the node's rank
//!   frames stay within its budget ([`budget`]).

pub mod budget;
pub mod session;
pub mod sse;
pub mod ws;

use crate::auth::admission::AdmissionKeys;
use crate::auth::Fan;
use crate::domain::{PushMessage, Removal, ShowId, Timestamp};
use crate::queue::Place;

/// The message that describes a fan's place: the first message of every
/// connection, every later one, and (reshaped) the REST status. The one
/// place a [`Place`] becomes what a fan is told.
pub fn message_for(
    place: &Place,
    admission: &AdmissionKeys,
    fan: &Fan,
    show: ShowId,
) -> PushMessage {
    match place {
        Place::Waiting {
            rank,
            eta_seconds,
            paused,
        } => PushMessage::Rank {
            rank: *rank,
            ahead: rank.saturating_sub(1),
            eta_seconds: *eta_seconds,
            paused: *paused,
        },
        Place::Active { session, until } => PushMessage::Active {
            access_token: admission.mint(fan, show, *session, *until),
            active_until: until.to_rfc3339(),
        },
        Place::Prequeued { starts_at } => PushMessage::Prequeue {
            // Known whenever the show has a pre-queue; a fan who pre-queued
            // for a show whose start was cleared is told now.
            starts_at: starts_at.unwrap_or_else(Timestamp::now).to_rfc3339(),
        },
        Place::Gone(Removal::Expired) => PushMessage::Expired,
        Place::Gone(reason) => PushMessage::Closed {
            reason: reason.as_str().to_owned(),
        },
        Place::NotInQueue => PushMessage::Closed {
            reason: "not_in_queue".to_owned(),
        },
    }
}

/// How a connection ended from the server's side, mapped per transport (a
/// WebSocket close code; SSE just ends the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The fan's entry ended (expired, left, abandoned, paid).
    Done,
    /// The gateway is shutting down; reconnect to another node or later.
    Restarting,
    /// The client sent JSON we could not parse.
    InvalidPayload,
    /// The client sent a message type we do not know.
    UnknownMessage,
    /// The client sent a binary frame.
    Unsupported,
    /// The client sent a message over the size limit.
    TooBig,
    /// The connection fell too far behind its own events; reconnect.
    Lagging,
}

/// Counts a live connection on the `anteroom_connections` gauge while it
/// lives.
#[derive(Debug)]
pub(crate) struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub(crate) fn new(transport: &'static str) -> Self {
        metrics::gauge!(crate::telemetry::metrics::CONNECTIONS, "transport" => transport)
            .increment(1.0);
        Self(transport)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::metrics::CONNECTIONS, "transport" => self.0)
            .decrement(1.0);
    }
}
