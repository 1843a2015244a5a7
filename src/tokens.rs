//! anteroom's own HMAC-signed tokens: the demo sign-in's user tokens and
//! queue tickets. (Admission tokens are JWTs an origin verifies with public
//! keys: [`crate::auth::admission`].)
//!
//! A ticket belongs to one spot: it names the queue entry it was issued for
//! (`spot`, the entry's join sequence number), and the queue refuses it for
//! any later spot of the same fan, so a ticket from before a leave, an
//! expiry or an abandonment never reaches the fan's next place.
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

use crate::auth::Fan;
use crate::config::Secret;
use crate::domain::{ShowId, Subject, Timestamp, UserId};

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "k")]
    pub kind: Kind,
    #[serde(rename = "u")]
    pub user: UserId,
    /// Who the fan is outside (demo: the username; jwt: the site's `sub`).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub show: Option<ShowId>,
    /// Tickets: the queue entry (spot) they were issued for.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<u64>,
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

    pub fn user_token(&self, fan: &Fan, ttl: Duration) -> String {
        self.sign(&Claims {
            kind: Kind::User,
            user: fan.id,
            subject: Some(fan.subject.clone()),
            show: None,
            spot: None,
            expires: Timestamp::now().plus(ttl),
        })
    }

    /// The ticket of `fan`'s `spot` in `show`.
    pub fn ticket(&self, fan: &Fan, show: ShowId, spot: u64, ttl: Duration) -> String {
        self.sign(&Claims {
            kind: Kind::Ticket,
            user: fan.id,
            subject: Some(fan.subject.clone()),
            show: Some(show),
            spot: Some(spot),
            expires: Timestamp::now().plus(ttl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secret: &str) -> Keyring {
        Keyring::new(&Secret::new(secret.to_owned()), &[])
    }

    fn fan(id: u64) -> Fan {
        Fan {
            id: UserId(id),
            subject: Subject::parse(&format!("fan-{id}")).expect("subject"),
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let keys = ring("s3cret");
        let now = Timestamp::now();
        let t = keys.ticket(&fan(7), ShowId(3), 5, Duration::from_secs(60));
        let claims = keys
            .verify(&t, Kind::Ticket, Some(ShowId(3)), now)
            .expect("valid ticket");
        assert_eq!(claims.user, UserId(7));
        assert_eq!(
            (claims.spot, claims.subject),
            (Some(5), Some(fan(7).subject))
        );
        assert_eq!(
            keys.verify(&t, Kind::Ticket, Some(ShowId(4)), now),
            Err(TokenError::WrongShow)
        );
        assert_eq!(
            keys.verify(&t, Kind::User, Some(ShowId(3)), now),
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
        let t = keys.ticket(&fan(7), ShowId(3), 5, Duration::from_secs(60));
        assert_eq!(
            ring("other").verify(&t, Kind::Ticket, None, now),
            Err(TokenError::Invalid)
        );
        // Swap the payload for one naming another user, keep the tag.
        let parts: Vec<&str> = t.split('.').collect();
        let evil = keys.ticket(&fan(8), ShowId(3), 5, Duration::from_secs(60));
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
        let t = old.ticket(&fan(1), ShowId(1), 1, Duration::from_secs(60));
        let rotated = Keyring::new(
            &Secret::new("new-secret".into()),
            &[Secret::new("old-secret".into())],
        );
        assert!(rotated
            .verify(&t, Kind::Ticket, Some(ShowId(1)), Timestamp::now())
            .is_ok());
        let fresh = rotated.ticket(&fan(1), ShowId(1), 1, Duration::from_secs(60));
        assert_ne!(fresh.split('.').next(), t.split('.').next());
    }
}
