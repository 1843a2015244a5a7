use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ShowId;

/// Whether a show admits fans. A paused show still queues joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShowState {
    Open,
    Paused,
}

impl ShowState {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ShowState::Open => "open",
            ShowState::Paused => "paused",
        }
    }
}

/// A show on sale and the settings of its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub id: ShowId,
    pub title: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub state: ShowState,
    /// How many fans may be active (admitted) at once.
    pub capacity: u32,
    /// How long an admitted fan stays active before the session expires.
    pub session_ttl: Duration,
    /// How long a waiting fan may go without a live connection or a status
    /// poll before the spot is given up.
    pub abandon_grace: Duration,
    /// The proof of work a join must carry.
    pub challenge_cost: ChallengeCost,
}

/// The proof of work a show asks of each join: ALTCHA's `maxnumber`, the
/// largest number a fan may have to try (half of it on average). 0, the
/// default, asks for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChallengeCost(u32);

impl ChallengeCost {
    pub const OFF: Self = Self(0);
    pub const MAX: u32 = 10_000_000;

    /// `None` above [`ChallengeCost::MAX`].
    pub fn new(cost: u64) -> Option<Self> {
        u32::try_from(cost)
            .ok()
            .filter(|c| *c <= Self::MAX)
            .map(Self)
    }

    /// A cost read back from storage. The schema keeps it within bounds;
    /// one above would be read as the largest, never as none.
    pub fn stored(cost: u32) -> Self {
        Self(cost.min(Self::MAX))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether a join must carry a solved challenge.
    pub fn is_required(self) -> bool {
        self.0 > 0
    }
}

/// A validated request to create a show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShow {
    pub title: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub capacity: u32,
    pub session_ttl: Duration,
    pub abandon_grace: Duration,
    pub challenge_cost: ChallengeCost,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NewShowError {
    #[error("title must be 1 to {max} characters")]
    Title { max: usize },
    #[error("capacity must be between 1 and {max}")]
    Capacity { max: u32 },
    #[error("session_ttl_seconds must be between 1 and {max}")]
    SessionTtl { max: u64 },
    #[error("abandon_grace_seconds must be between 1 and {max}")]
    AbandonGrace { max: u64 },
    #[error("challenge_cost must be between 0 (no proof of work) and {max}")]
    ChallengeCost { max: u32 },
}

impl NewShow {
    pub const MAX_TITLE: usize = 200;
    pub const MAX_CAPACITY: u32 = 1_000_000;
    pub const MAX_TTL_SECS: u64 = 24 * 3600;
    pub const MAX_GRACE_SECS: u64 = 3600;
    pub const DEFAULT_GRACE_SECS: u64 = 60;

    pub fn parse(
        title: &str,
        starts_at: Option<DateTime<Utc>>,
        capacity: u64,
        session_ttl_seconds: u64,
        abandon_grace_seconds: Option<u64>,
        challenge_cost: Option<u64>,
    ) -> Result<Self, NewShowError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > Self::MAX_TITLE {
            return Err(NewShowError::Title {
                max: Self::MAX_TITLE,
            });
        }
        let capacity = u32::try_from(capacity)
            .ok()
            .filter(|c| (1..=Self::MAX_CAPACITY).contains(c))
            .ok_or(NewShowError::Capacity {
                max: Self::MAX_CAPACITY,
            })?;
        if !(1..=Self::MAX_TTL_SECS).contains(&session_ttl_seconds) {
            return Err(NewShowError::SessionTtl {
                max: Self::MAX_TTL_SECS,
            });
        }
        let grace = abandon_grace_seconds.unwrap_or(Self::DEFAULT_GRACE_SECS);
        if !(1..=Self::MAX_GRACE_SECS).contains(&grace) {
            return Err(NewShowError::AbandonGrace {
                max: Self::MAX_GRACE_SECS,
            });
        }
        let challenge_cost = match challenge_cost {
            None => ChallengeCost::OFF,
            Some(cost) => ChallengeCost::new(cost).ok_or(NewShowError::ChallengeCost {
                max: ChallengeCost::MAX,
            })?,
        };
        Ok(Self {
            title: title.to_owned(),
            starts_at,
            capacity,
            session_ttl: Duration::from_secs(session_ttl_seconds),
            abandon_grace: Duration::from_secs(grace),
            challenge_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_show_bounds() {
        assert!(NewShow::parse("Aurora", None, 3, 60, None, None).is_ok());
        assert_eq!(
            NewShow::parse("Aurora", None, 3, 60, None, None).map(|s| s.abandon_grace),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            NewShow::parse(" ", None, 3, 60, None, None),
            Err(NewShowError::Title { max: 200 })
        );
        assert!(matches!(
            NewShow::parse("a", None, 0, 60, None, None),
            Err(NewShowError::Capacity { .. })
        ));
        assert!(matches!(
            NewShow::parse("a", None, u64::MAX, 60, None, None),
            Err(NewShowError::Capacity { .. })
        ));
        assert!(matches!(
            NewShow::parse("a", None, 1, 0, None, None),
            Err(NewShowError::SessionTtl { .. })
        ));
        assert!(matches!(
            NewShow::parse("a", None, 1, 10, Some(0), None),
            Err(NewShowError::AbandonGrace { .. })
        ));
    }

    #[test]
    fn challenge_cost_bounds() {
        let cost = |c| NewShow::parse("a", None, 1, 10, None, c).map(|s| s.challenge_cost);
        assert_eq!(cost(None), Ok(ChallengeCost::OFF));
        assert!(!ChallengeCost::OFF.is_required());
        assert_eq!(cost(Some(0)), Ok(ChallengeCost::OFF));
        assert_eq!(
            cost(Some(10_000_000)).map(ChallengeCost::get),
            Ok(10_000_000)
        );
        assert!(cost(Some(1)).is_ok_and(ChallengeCost::is_required));
        assert_eq!(ChallengeCost::stored(u32::MAX).get(), ChallengeCost::MAX);
        for too_much in [10_000_001, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                cost(Some(too_much)),
                Err(NewShowError::ChallengeCost { max: 10_000_000 })
            );
        }
    }
}
