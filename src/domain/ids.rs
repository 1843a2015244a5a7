use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// A show (one sale) and therefore one queue.
    ShowId
);
id_newtype!(
    /// A signed-in fan.
    UserId
);
id_newtype!(
    /// One admission of one fan: the join sequence number of the queue entry
    /// that was admitted. A fan who leaves and joins again gets a new one, so a
    /// stale timer or event naming an old session can never end a new one.
    SessionId
);

id_newtype!(
    /// A seat of one show.
    SeatId
);
id_newtype!(
    /// A hold on a seat (held, then paid, released or expired).
    ReservationId
);
id_newtype!(
    /// A completed payment.
    PaymentId
);

/// A display name for the demo sign-in: 1 to 32 characters of ASCII letters,
/// digits, `_`, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("username must not be empty")]
    Empty,
    #[error("username must be at most {max} characters")]
    TooLong { max: usize },
    #[error("username may contain only letters, digits, '_', '-' and '.'")]
    InvalidCharacter,
}

impl Username {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(UsernameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(UsernameError::TooLong { max: Self::MAX_LEN });
        }
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(UsernameError::InvalidCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_validated() {
        assert_eq!(Username::parse(" alice ").map(|u| u.0), Ok("alice".into()));
        assert_eq!(Username::parse(""), Err(UsernameError::Empty));
        assert_eq!(Username::parse("   "), Err(UsernameError::Empty));
        assert_eq!(
            Username::parse(&"a".repeat(33)),
            Err(UsernameError::TooLong { max: 32 })
        );
        assert_eq!(
            Username::parse("bob smith"),
            Err(UsernameError::InvalidCharacter)
        );
        assert_eq!(
            Username::parse("<script>"),
            Err(UsernameError::InvalidCharacter)
        );
    }
}
