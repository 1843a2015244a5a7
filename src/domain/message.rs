use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SeatChange;

/// Why a fan's queue entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// The fan left (DELETE, or `leave` on the socket).
    Left,
    /// The active session ran out.
    Expired,
    /// A waiting fan had no connection and no poll for the grace period.
    Abandoned,
    /// The fan paid; the session ended with a purchase.
    Completed,
    /// An operator removed the fan.
    Removed,
    /// The last seat sold while the fan waited.
    SoldOut,
    /// An operator closed the show while the fan waited.
    ShowClosed,
}

impl Removal {
    pub const ALL: [Removal; 7] = [
        Removal::Left,
        Removal::Expired,
        Removal::Abandoned,
        Removal::Completed,
        Removal::Removed,
        Removal::SoldOut,
        Removal::ShowClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Left => "left",
            Removal::Expired => "expired",
            Removal::Abandoned => "abandoned",
            Removal::Completed => "completed",
            Removal::Removed => "removed",
            Removal::SoldOut => "sold_out",
            Removal::ShowClosed => "show_closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A message pushed to a fan, identical on WebSocket and SSE. Its schema is
/// the AsyncAPI document's (`/asyncapi.json`, built from this type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushMessage {
    /// Waiting: the fan's exact place in line.
    Rank {
        /// 1 for the next fan to be admitted.
        rank: u64,
        /// `rank - 1`.
        ahead: u64,
        /// Seconds until admission, estimated; absent until the queue has
        /// moved, and while the show is paused.
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<u64>,
        /// While the show is paused (a rank that moves meanwhile does not
        /// mean it resumed).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        paused: bool,
    },
    /// Admitted: the fan's turn has started.
    Active {
        /// Send as `X-Access-Token`; the origin verifies it.
        access_token: String,
        /// RFC 3339: when the turn ends.
        active_until: String,
    },
    /// The turn ends soon.
    Expiring { seconds_left: u64 },
    /// The turn ended by time; the connection then closes.
    Expired,
    /// The spot is gone; the connection then closes.
    Closed {
        /// `left`, `abandoned`, `completed`, `removed`, `sold_out`,
        /// `show_closed` or `not_in_queue`.
        reason: String,
    },
    /// A pre-queued fan's first message: the line forms at `starts_at`.
    Prequeue { starts_at: String },
    /// The show is paused: the fan keeps their place, nobody is admitted.
    Paused,
    /// Something the page should say: `all_seats_held` (to waiting fans:
    /// every seat left is held by an admitted fan), or `operator` with the
    /// operator's `text` (to every connected fan; `""` when it is cleared).
    Notice {
        code: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        text: Option<Arc<str>>,
    },
    /// Answer to a client's application-level `{"type":"ping"}`.
    Pong,
    /// Seats that changed status, to an admitted fan: the show's
    /// availability at `version` is the one at `version - 1` with these
    /// changes applied (docs/protocol.md, "Availability").
    Seats {
        version: u64,
        #[schema(value_type = Vec<SeatChange>)]
        changes: Arc<[SeatChange]>,
    },
}

/// A message a fan's client may send on the WebSocket (SSE is one-way).
/// Anything else closes the socket (docs/protocol.md, "WebSocket").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// An application-level ping: answered with `pong`.
    Ping,
}

impl PushMessage {
    /// The operator's notice, or its clearing (`None`).
    pub fn operator_notice(text: Option<Arc<str>>) -> Self {
        PushMessage::Notice {
            code: "operator",
            text: Some(text.unwrap_or_else(|| Arc::from(""))),
        }
    }

    /// Whether the connection ends after this message.
    pub fn is_terminal(&self) -> bool {
        matches!(self, PushMessage::Expired | PushMessage::Closed { .. })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let rank = PushMessage::Rank {
            rank: 4,
            ahead: 3,
            eta_seconds: Some(12),
            paused: false,
        };
        assert_eq!(
            rank.to_json(),
            r#"{"type":"rank","rank":4,"ahead":3,"eta_seconds":12}"#
        );
        assert_eq!(
            PushMessage::Rank {
                rank: 1,
                ahead: 0,
                eta_seconds: None,
                paused: true,
            }
            .to_json(),
            r#"{"type":"rank","rank":1,"ahead":0,"paused":true}"#
        );
        assert_eq!(PushMessage::Expired.to_json(), r#"{"type":"expired"}"#);
        assert_eq!(
            PushMessage::operator_notice(Some(Arc::from("Gates open at 18:00"))).to_json(),
            r#"{"type":"notice","code":"operator","text":"Gates open at 18:00"}"#
        );
        assert_eq!(
            PushMessage::operator_notice(None).to_json(),
            r#"{"type":"notice","code":"operator","text":""}"#
        );
        assert_eq!(
            PushMessage::Expiring { seconds_left: 30 }.to_json(),
            r#"{"type":"expiring","seconds_left":30}"#
        );
        assert_eq!(
            PushMessage::Closed {
                reason: Removal::Abandoned.as_str().to_owned()
            }
            .to_json(),
            r#"{"type":"closed","reason":"abandoned"}"#
        );
        assert_eq!(
            PushMessage::Seats {
                version: 9,
                changes: vec![SeatChange {
                    seat_id: crate::domain::SeatId(17),
                    status: crate::domain::SeatStatus::Held,
                }]
                .into(),
            }
            .to_json(),
            r#"{"type":"seats","version":9,"changes":[{"seat_id":17,"status":"held"}]}"#
        );
    }
}
