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

        /// Any `u64`: what a path or body id parses as.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                super::schema::integer(0, u64::MAX).into()
            }
        }

        impl utoipa::ToSchema for $name {}
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

    /// What [`Username::parse`] accepts, as JSON Schema.
    pub fn schema() -> utoipa::openapi::schema::Object {
        let ws = super::schema::TRIMMED;
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(format!(
                "^[{ws}]*[A-Za-z0-9_.-]{{1,{}}}[{ws}]*$",
                Self::MAX_LEN
            )))
            .build()
    }
}

/// Who a fan is to the outside world: the `sub` of the ticketing site's
/// token (jwt mode) or the demo username. 1 to 255 characters, no control
/// characters. It is what an admission token's `sub` names, so the origin
/// recognises its own fan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a subject must be 1 to {max} characters, none of them control characters")]
pub struct SubjectError {
    pub max: usize,
}

impl Subject {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, SubjectError> {
        let ok = !raw.is_empty()
            && raw.chars().count() <= Self::MAX_LEN
            && !raw.chars().any(char::is_control);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SubjectError { max: Self::MAX_LEN })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Username> for Subject {
    fn from(name: &Username) -> Self {
        Self(name.as_str().to_owned())
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;

    fn try_from(raw: String) -> Result<Self, SubjectError> {
        Self::parse(&raw)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> Self {
        s.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_bounded() {
        assert!(Subject::parse("auth0|5f7c8ec7c33c6c004bbafe82").is_ok());
        assert!(Subject::parse(&"é".repeat(255)).is_ok());
        assert!(Subject::parse(&"a".repeat(256)).is_err());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse("a\nb").is_err());
    }

    #[test]
    fn the_username_schema_accepts_exactly_what_parse_does() {
        let pattern = crate::domain::schema::tests::pattern_of(&Username::schema());
        let mut probes = crate::domain::schema::tests::probes(Username::MAX_LEN);
        probes.extend((0..128u8).map(|b| format!("ab{}", b as char)));
        probes.extend(["<script>".into(), "bob smith".into(), " alice ".into()]);
        for s in probes {
            assert_eq!(pattern.is_match(&s), Username::parse(&s).is_ok(), "{s:?}");
        }
    }

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
