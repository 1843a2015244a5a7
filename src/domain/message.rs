use serde::Serialize;

/// Why a fan's queue entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
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
}

impl Removal {
    pub const ALL: [Removal; 4] = [
        Removal::Left,
        Removal::Expired,
        Removal::Abandoned,
        Removal::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Left => "left",
            Removal::Expired => "expired",
            Removal::Abandoned => "abandoned",
            Removal::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A message pushed to a fan, identical on WebSocket and SSE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushMessage {
    Rank {
        rank: u64,
        ahead: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<u64>,
    },
    Active {
        access_token: String,
        active_until: String,
    },
    Expiring {
        seconds_left: u64,
    },
    Expired,
    Closed {
        reason: String,
    },
    /// Answer to a client's application-level `{"type":"ping"}`.
    Pong,
}

impl PushMessage {
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
        };
        assert_eq!(
            rank.to_json(),
            r#"{"type":"rank","rank":4,"ahead":3,"eta_seconds":12}"#
        );
        assert_eq!(
            PushMessage::Rank {
                rank: 1,
                ahead: 0,
                eta_seconds: None
            }
            .to_json(),
            r#"{"type":"rank","rank":1,"ahead":0}"#
        );
        assert_eq!(PushMessage::Expired.to_json(), r#"{"type":"expired"}"#);
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
    }
}
