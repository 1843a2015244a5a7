//! Signed bearer tokens, queue tickets and access tokens.
//!
//! A token is `<kid>.<payload>.<mac>`: `payload` is base64url JSON claims and
//! `mac` is HMAC-SHA256 over `<kid>.<payload>` with the key named by `kid`.
//! Several keys can verify (the current one signs), so a secret can be
//! rotated without logging every fan out. Verification is constant-time
//! (`Mac::verify_slice`). Tokens are stateless, so any gateway node that
//! shares the secret accepts them.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::domain::{SessionId, ShowId, Timestamp, UserId};

type HmacSha256 = Hmac<Sha256>;

/// What a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A signed-in fan (`Authorization: Bearer`).
    #[serde(rename = "u")]
    User,
    /// A fan's place in one show's queue (`X-Queue-Ticket` / `?ticket=`).
    #[serde(rename = "t")]
    Ticket,
    /// An admitted fan's right to use the protected paths of one show.
    #[serde(rename = "a")]
    Access,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "k")]
    pub kind: Kind,
    #[serde(rename = "u")]
    pub user: UserId,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub show: Option<ShowId>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "e")]
    pub expires: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed or its signature does not verify")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token is not of the expected kind")]
    WrongKind,
    #[error("token belongs to another show")]
    WrongShow,
}

struct Key {
    id: String,
    mac: HmacSha256,
}

/// The signing key and the keys still accepted for verification.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// `current` signs; `previous` only verify. Key ids are derived from the
    /// secret (the first 4 bytes of its SHA-256), so nodes configured with the
    /// same secret agree on them without more configuration.
    pub fn new(current: &Secret, previous: &[Secret]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|secret| {
                let bytes = secret.expose().as_bytes();
                let digest = Sha256::digest(bytes);
                Key {
                    id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
                    mac: HmacSha256::new_from_slice(bytes)
                        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
                }
            })
            .collect();
        Self { keys }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{}.{}", key.id, payload);
        let mut mac = key.mac.clone();
        mac.update(signed.as_bytes());
        let tag = B64.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// Checks signature, kind and expiry (and show, when given).
    pub fn verify(
        &self,
        token: &str,
        kind: Kind,
        show: Option<ShowId>,
        now: Timestamp,
    ) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (kid, payload) = signed.split_once('.').ok_or(TokenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(TokenError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Invalid)?;
        let mut mac = key.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Invalid)?;
        if claims.kind != kind {
            return Err(TokenError::WrongKind);
        }
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        if show.is_some() && claims.show != show {
            return Err(TokenError::WrongShow);
        }
        Ok(claims)
    }

    pub fn user_token(&self, user: UserId, ttl: Duration) -> String {
        self.sign(&Claims {
            kind: Kind::User,
            user,
            show: None,
            session: None,
            expires: Timestamp::now().plus(ttl),
        })
    }

    pub fn ticket(&self, user: UserId, show: ShowId, ttl: Duration) -> String {
        self.sign(&Claims {
            kind: Kind::Ticket,
            user,
            show: Some(show),
            session: None,
            expires: Timestamp::now().plus(ttl),
        })
    }

    pub fn access_token(
        &self,
        user: UserId,
        show: ShowId,
        session: SessionId,
        until: Timestamp,
    ) -> String {
        self.sign(&Claims {
            kind: Kind::Access,
            user,
            show: Some(show),
            session: Some(session),
            expires: until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secret: &str) -> Keyring {
        Keyring::new(&Secret::new(secret.to_owned()), &[])
    }

    #[test]
    fn round_trip_and_binding() {
        let keys = ring("s3cret");
        let now = Timestamp::now();
        let t = keys.ticket(UserId(7), ShowId(3), Duration::from_secs(60));
        let claims = keys
            .verify(&t, Kind::Ticket, Some(ShowId(3)), now)
            .expect("valid ticket");
        assert_eq!(claims.user, UserId(7));
        assert_eq!(
            keys.verify(&t, Kind::Ticket, Some(ShowId(4)), now),
            Err(TokenError::WrongShow)
        );
        assert_eq!(
            keys.verify(&t, Kind::Access, Some(ShowId(3)), now),
            Err(TokenError::WrongKind)
        );
        assert_eq!(
            keys.verify(&t, Kind::Ticket, None, now.plus(Duration::from_secs(61))),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forgeries_are_rejected() {
        let keys = ring("s3cret");
        let now = Timestamp::now();
        let t = keys.ticket(UserId(7), ShowId(3), Duration::from_secs(60));
        assert_eq!(
            ring("other").verify(&t, Kind::Ticket, None, now),
            Err(TokenError::Invalid)
        );
        // Swap the payload for one naming another user, keep the tag.
        let parts: Vec<&str> = t.split('.').collect();
        let evil = keys.ticket(UserId(8), ShowId(3), Duration::from_secs(60));
        let evil_payload = evil.split('.').nth(1).unwrap_or_default();
        let forged = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
        assert_eq!(
            keys.verify(&forged, Kind::Ticket, None, now),
            Err(TokenError::Invalid)
        );
        for junk in ["", "a", "a.b", "a.b.c", "..", "x.y.z.w"] {
            assert_eq!(
                keys.verify(junk, Kind::Ticket, None, now),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn rotated_keys_still_verify() {
        let old = ring("old-secret");
        let t = old.ticket(UserId(1), ShowId(1), Duration::from_secs(60));
        let rotated = Keyring::new(
            &Secret::new("new-secret".into()),
            &[Secret::new("old-secret".into())],
        );
        assert!(rotated
            .verify(&t, Kind::Ticket, Some(ShowId(1)), Timestamp::now())
            .is_ok());
        let fresh = rotated.ticket(UserId(1), ShowId(1), Duration::from_secs(60));
        assert_ne!(fresh.split('.').next(), t.split('.').next());
    }
}
