//! Admission tokens: standard JWTs, signed with Ed25519 (`alg: EdDSA`), that
//! an origin verifies with anteroom's public keys alone
//! (`GET /.well-known/jwks.json`), without the power to forge one.
//!
//! Claims: `iss`, `aud` (when configured), `sub` (the fan, as the ticketing
//! site knows them), `show`, `sid` (the admitted session), `iat`, `exp` (the
//! session's `active_until`), `jti`, and `uid` (anteroom's own user id, for
//! its sale paths). The header names the key (`kid`: the key's RFC 7638
//! thumbprint), so keys rotate: the current key signs, earlier ones
//! (`admission.previous_key_files`) still verify and stay in the JWKS.
//!
//! A token says who was admitted and until when; whether the session is
//! still live (not paid, left or ended early) is the queue's to answer, which
//! `POST /v1/admission/introspect` does.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Fan;
use crate::domain::{SessionId, ShowId, Timestamp, UserId};

/// The claims of an admission token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionClaims {
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The fan's subject.
    pub sub: String,
    pub show: ShowId,
    /// The admitted session.
    pub sid: SessionId,
    /// anteroom's user id of the fan.
    pub uid: UserId,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The end of the session, Unix seconds.
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read admission key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("admission key file {path} is not an Ed25519 key in PKCS#8 (or, for an earlier key, SPKI) PEM")]
    Format { path: String },
}

/// Why an admission token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

struct VerifyingEntry {
    kid: String,
    key: DecodingKey,
}

/// The signing key, the keys that verify, and the JWKS that publishes them.
pub struct AdmissionKeys {
    kid: String,
    signing: EncodingKey,
    verifying: Vec<VerifyingEntry>,
    jwks: String,
    issuer: String,
    audience: Option<String>,
    /// Tokens already verified, by their SHA-256, with their claims. An
    /// Ed25519 check costs tens of µs and an admitted fan sends the same
    /// token on every hold and payment; a verified token stays valid until
    /// its `exp` (keys are only ever added while a process runs), which a
    /// hit still checks. Bounded: when full it starts over.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], AdmissionClaims>>,
}

/// How many verified tokens a node remembers.
const VERIFIED_CACHE: usize = 50_000;

impl std::fmt::Debug for AdmissionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.verifying.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("AdmissionKeys")
            .field("kid", &self.kid)
            .field("verifying", &kids)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl AdmissionKeys {
    /// `current` signs; `previous` (private or public keys) only verify.
    pub fn new(
        current: SigningKey,
        previous: Vec<VerifyingKey>,
        issuer: String,
        audience: Option<String>,
    ) -> Self {
        let public: Vec<VerifyingKey> = std::iter::once(current.verifying_key())
            .chain(previous)
            .collect();
        let mut verifying = Vec::with_capacity(public.len());
        let mut jwks = Vec::with_capacity(public.len());
        for key in public {
            let x = B64.encode(key.to_bytes());
            let kid = thumbprint(&x);
            jwks.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA",
            }));
            verifying.push(VerifyingEntry {
                kid,
                key: DecodingKey::from_ed_der(&key.to_bytes()),
            });
        }
        let der = current
            .to_pkcs8_der()
            .unwrap_or_else(|_| unreachable!("an Ed25519 key always encodes as PKCS#8"));
        Self {
            kid: verifying[0].kid.clone(),
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            verifying,
            jwks: serde_json::json!({ "keys": jwks }).to_string(),
            issuer,
            audience,
            verified: std::sync::Mutex::default(),
        }
    }

    /// A fresh key for this process (demo mode: tokens die with it).
    pub fn generate(issuer: String, audience: Option<String>) -> Self {
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        Self::new(key, Vec::new(), issuer, audience)
    }

    /// Keys from PEM files: the current key as PKCS#8, earlier ones as
    /// PKCS#8 or SPKI.
    pub fn from_files(
        current: &Path,
        previous: &[std::path::PathBuf],
        issuer: String,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        let format = |p: &Path| KeyError::Format {
            path: p.display().to_string(),
        };
        let signing = SigningKey::from_pkcs8_pem(&read(current)?).map_err(|_| format(current))?;
        let mut earlier = Vec::with_capacity(previous.len());
        for path in previous {
            let pem = read(path)?;
            let key = SigningKey::from_pkcs8_pem(&pem)
                .map(|k| k.verifying_key())
                .or_else(|_| VerifyingKey::from_public_key_pem(&pem))
                .map_err(|_| format(path))?;
            earlier.push(key);
        }
        Ok(Self::new(signing, earlier, issuer, audience))
    }

    /// `{"keys":[…]}`: every verifying public key as an OKP JWK.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// Mints the token of `fan`'s admitted `session` in `show`.
    pub fn mint(&self, fan: &Fan, show: ShowId, session: SessionId, until: Timestamp) -> String {
        let claims = AdmissionClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: fan.subject.as_str().to_owned(),
            show,
            sid: session,
            uid: fan.id,
            iat: Timestamp::now().as_secs(),
            // Rounded up: a session is never cut short by the token.
            exp: (until.0 + 999).div_euclid(1000),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .unwrap_or_else(|e| unreachable!("an Ed25519 key always signs: {e}"))
    }

    /// Checks the signature (by `kid`), issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<AdmissionClaims, AdmissionError> {
        self.verify_at(token, Timestamp::now().as_secs())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<AdmissionClaims, AdmissionError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache().get(&digest).cloned();
        if let Some(claims) = cached {
            // As jsonwebtoken does with no leeway: expired once past `exp`.
            return if claims.exp < now {
                Err(AdmissionError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.check(token)?;
        let mut cache = self.cache();
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(digest, claims.clone());
        Ok(claims)
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], AdmissionClaims>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full check, without the cache.
    fn check(&self, token: &str) -> Result<AdmissionClaims, AdmissionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AdmissionError::Invalid)?;
        let kid = header.kid.ok_or(AdmissionError::Invalid)?;
        let entry = self
            .verifying
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(AdmissionError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        // A claim that is only checked when present must be required, or a
        // token without it would pass.
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss", "sub"]);
            }
        }
        jsonwebtoken::decode::<AdmissionClaims>(token, &entry.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AdmissionError::Expired,
                _ => AdmissionError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Subject;

    fn fan() -> Fan {
        Fan {
            id: UserId(7),
            subject: Subject::parse("auth0|fan-7").expect("subject"),
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_admission() {
        let keys = AdmissionKeys::generate("anteroom".into(), Some("tickets".into()));
        let until = Timestamp::now().plus(std::time::Duration::from_secs(60));
        let token = keys.mint(&fan(), ShowId(3), SessionId(11), until);
        let claims = keys.verify(&token).expect("verifies");
        assert_eq!(claims.sub, "auth0|fan-7");
        assert_eq!(
            (claims.show, claims.sid, claims.uid),
            (ShowId(3), SessionId(11), UserId(7))
        );
        assert_eq!(claims.aud.as_deref(), Some("tickets"));
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, Algorithm::EdDSA);
        let jwks: serde_json::Value = serde_json::from_str(keys.jwks()).expect("json");
        assert_eq!(jwks["keys"][0]["kid"].as_str(), header.kid.as_deref());
        assert!(jwks["keys"][0].get("d").is_none(), "never a private part");
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let keys = AdmissionKeys::generate("anteroom".into(), None);
        let other = AdmissionKeys::generate("anteroom".into(), None);
        let until = Timestamp::now().plus(std::time::Duration::from_secs(60));
        let theirs = other.mint(&fan(), ShowId(3), SessionId(11), until);
        assert_eq!(keys.verify(&theirs), Err(AdmissionError::Invalid));
        let past = Timestamp::now().minus(std::time::Duration::from_secs(5));
        let expired = keys.mint(&fan(), ShowId(3), SessionId(11), past);
        assert_eq!(keys.verify(&expired), Err(AdmissionError::Expired));
        // Another payload under a valid signature.
        let good = keys.mint(&fan(), ShowId(3), SessionId(11), until);
        let evil = keys.mint(&fan(), ShowId(4), SessionId(11), until);
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = evil.split('.').nth(1).unwrap_or_default();
        assert_eq!(keys.verify(&parts.join(".")), Err(AdmissionError::Invalid));
        // The same key expecting another issuer, or an audience, refuses.
        let key = SigningKey::from_bytes(&[3; 32]);
        let lenient = AdmissionKeys::new(key.clone(), vec![], "anteroom".into(), None);
        let token = lenient.mint(&fan(), ShowId(3), SessionId(11), until);
        assert!(lenient.verify(&token).is_ok());
        let other_issuer = AdmissionKeys::new(key.clone(), vec![], "someone-else".into(), None);
        assert_eq!(other_issuer.verify(&token), Err(AdmissionError::Invalid));
        let wants_audience = AdmissionKeys::new(key, vec![], "anteroom".into(), Some("x".into()));
        assert_eq!(wants_audience.verify(&token), Err(AdmissionError::Invalid));
    }

    #[test]
    fn rotated_keys_still_verify() {
        let old = SigningKey::from_bytes(&[1; 32]);
        let new = SigningKey::from_bytes(&[2; 32]);
        let before = AdmissionKeys::new(old.clone(), vec![], "anteroom".into(), None);
        let until = Timestamp::now().plus(std::time::Duration::from_secs(60));
        let token = before.mint(&fan(), ShowId(1), SessionId(1), until);
        let after = AdmissionKeys::new(new, vec![old.verifying_key()], "anteroom".into(), None);
        assert!(after.verify(&token).is_ok());
        let jwks: serde_json::Value = serde_json::from_str(after.jwks()).expect("json");
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn keys_made_by_openssl_load() {
        // `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
        let dir = std::env::temp_dir().join(format!("anteroom-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let private = dir.join("admission.pem");
        let public = dir.join("old.pub.pem");
        std::fs::write(
            &private,
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEIC5GUwX9DQOow1B8LG3xvVfHpSpoP+GVu19qvEooeGwD\n\
             -----END PRIVATE KEY-----\n",
        )
        .expect("write");
        std::fs::write(
            &public,
            "-----BEGIN PUBLIC KEY-----\n\
             MCowBQYDK2VwAyEAjdEGIQUt5isfIWeha4nXlKB9yrUWVRBq4OwlGEBgPcM=\n\
             -----END PUBLIC KEY-----\n",
        )
        .expect("write");
        let keys = AdmissionKeys::from_files(&private, &[public], "anteroom".into(), None)
            .expect("openssl's PEM loads");
        let jwks: serde_json::Value = serde_json::from_str(keys.jwks()).expect("json");
        // The same key twice: the current one and, as "earlier", its public half.
        assert_eq!(jwks["keys"][0]["x"], jwks["keys"][1]["x"]);
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a key").expect("write");
        assert!(matches!(
            AdmissionKeys::from_files(&junk, &[], "anteroom".into(), None),
            Err(KeyError::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_cached_token_still_expires_and_a_changed_one_is_checked_again() {
        let keys = AdmissionKeys::generate("anteroom".into(), None);
        let until = Timestamp::now().plus(std::time::Duration::from_secs(60));
        let token = keys.mint(&fan(), ShowId(3), SessionId(11), until);
        let now = Timestamp::now().as_secs();
        let first = keys.verify_at(&token, now).expect("verifies");
        assert_eq!(
            keys.verify_at(&token, now),
            Ok(first.clone()),
            "from the cache"
        );
        assert_eq!(
            keys.verify_at(&token, first.exp + 1),
            Err(AdmissionError::Expired),
            "a cached token expires at its exp"
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = keys.mint(&fan(), ShowId(4), SessionId(11), until);
        parts[1] = other.split('.').nth(1).unwrap_or_default();
        assert_eq!(keys.verify(&parts.join(".")), Err(AdmissionError::Invalid));
    }
}
