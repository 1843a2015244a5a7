//! Who a fan is, and what an admission proves.
//!
//! - [`Authenticator`]: turns a request's bearer token into a [`Fan`]. In
//!   `demo` mode (trying anteroom out) it is anteroom's own user token from
//!   the name-only sign-in; in `jwt` mode it is the ticketing site's own
//!   signed token ([`fans`]), and the fan is its `sub`, stored once as the
//!   user's unique external subject.
//! - [`admission::AdmissionKeys`]: the Ed25519 keys that sign admission
//!   tokens, which an origin verifies with the public JWKS alone.

pub mod admission;
pub mod fans;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use self::fans::{FanTokenError, FanTokens};
use crate::domain::{Subject, Timestamp, UserId};
use crate::store::{Database, DbError};
use crate::tokens::{Keyring, Kind, TokenError};

/// A signed-in fan: anteroom's user id and who they are outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fan {
    pub id: UserId,
    pub subject: Subject,
}

/// How fans prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Name-only sign-in (`POST /v1/sessions`): for trying anteroom out.
    Demo,
    /// The ticketing site's signed token on every call.
    Jwt,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired")]
    Expired,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Subjects already mapped to user ids, so a verified token costs no
/// database round trip after a fan's first call. Bounded: when full it
/// starts over (a miss costs one upsert, never a wrong answer).
#[derive(Debug, Default)]
struct SubjectCache {
    ids: Mutex<HashMap<Subject, UserId>>,
}

impl SubjectCache {
    const MAX: usize = 200_000;

    fn get(&self, subject: &Subject) -> Option<UserId> {
        self.lock().get(subject).copied()
    }

    fn insert(&self, subject: Subject, id: UserId) {
        let mut ids = self.lock();
        if ids.len() >= Self::MAX {
            ids.clear();
        }
        ids.insert(subject, id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, UserId>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Turns bearer tokens into fans, by the configured mode.
#[derive(Debug, Clone)]
pub enum Authenticator {
    Demo(Arc<Keyring>),
    Jwt(Arc<JwtAuth>),
}

#[derive(Debug)]
pub struct JwtAuth {
    tokens: FanTokens,
    subjects: SubjectCache,
    db: Database,
}

impl Authenticator {
    pub fn jwt(tokens: FanTokens, db: Database) -> Self {
        Authenticator::Jwt(Arc::new(JwtAuth {
            tokens,
            subjects: SubjectCache::default(),
            db,
        }))
    }

    pub fn mode(&self) -> AuthMode {
        match self {
            Authenticator::Demo(_) => AuthMode::Demo,
            Authenticator::Jwt(_) => AuthMode::Jwt,
        }
    }

    /// The fan a bearer token names.
    pub async fn authenticate(&self, token: &str) -> Result<Fan, AuthError> {
        match self {
            Authenticator::Demo(keys) => {
                let claims = keys
                    .verify(token, Kind::User, None, Timestamp::now())
                    .map_err(|e| match e {
                        TokenError::Expired => AuthError::Expired,
                        other => AuthError::Invalid(other.to_string()),
                    })?;
                let subject = claims
                    .subject
                    .ok_or_else(|| AuthError::Invalid("the token names no fan".into()))?;
                Ok(Fan {
                    id: claims.user,
                    subject,
                })
            }
            Authenticator::Jwt(jwt) => {
                let subject = jwt.tokens.verify(token).await.map_err(|e| match e {
                    FanTokenError::Expired => AuthError::Expired,
                    FanTokenError::Invalid(why) => {
                        AuthError::Invalid(format!("the token is not valid: {why}"))
                    }
                })?;
                let id = match jwt.subjects.get(&subject) {
                    Some(id) => id,
                    None => {
                        let id = jwt.db.upsert_subject(&subject).await?;
                        jwt.subjects.insert(subject.clone(), id);
                        id
                    }
                };
                Ok(Fan { id, subject })
            }
        }
    }
}
