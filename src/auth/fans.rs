//! The ticketing site's own tokens (`auth.mode = "jwt"`): a fan presents
//! `Authorization: Bearer <jwt>` on every user call, and anteroom verifies
//! it with jsonwebtoken against the site's keys.
//!
//! Keys come from a JWKS (a URL, fetched and cached, or a file) or an HS256
//! secret. The algorithm must match the key: a JWK with `alg` allows only
//! that one, otherwise its key type decides (RSA → RS*/PS*, EC → ES256 or
//! ES384 by curve, OKP → EdDSA); symmetric keys in a JWKS are ignored, and
//! the HS256 secret allows only HS256. So `alg: none` and "HS256 signed with
//! the public key" never verify. `iss` and `aud` are required and checked,
//! `exp` and `nbf` with 30 s of leeway for clocks. A token naming a `kid`
//! the cache does not know refetches the JWKS, at most once per 30 s (by
//! default: `auth.jwks_refetch_secs`), so a
//! key rotation at the site is picked up without letting junk tokens hammer
//! it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::domain::Subject;

/// Clock leeway for `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(30);
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fan's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanTokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

/// Where the verifying keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    JwksUrl(String),
    JwksFile(PathBuf),
    Hs256(Vec<u8>),
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

struct Keys {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

/// Verifies fans' tokens.
pub struct FanTokens {
    source: KeySource,
    issuer: String,
    audience: String,
    /// The shortest gap between two JWKS fetches for unknown `kid`s.
    refetch_gap: Duration,
    keys: tokio::sync::RwLock<Keys>,
    /// Serialises refetches: concurrent requests with an unknown `kid` wait
    /// for one fetch instead of each making one.
    refetch: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl std::fmt::Debug for FanTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            KeySource::JwksUrl(url) => format!("jwks url {url}"),
            KeySource::JwksFile(path) => format!("jwks file {}", path.display()),
            KeySource::Hs256(_) => "hs256 secret".to_owned(),
        };
        f.debug_struct("FanTokens")
            .field("source", &source)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

/// The algorithms a JWK may verify; empty for a key that must not verify
/// fans' tokens (symmetric, encryption-only, unsupported).
fn algorithms_of(jwk: &jsonwebtoken::jwk::Jwk) -> Vec<Algorithm> {
    use Algorithm::*;
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![EdDSA],
        // Symmetric keys never verify fans' tokens from a JWKS; nor do key
        // types this version does not know.
        _ => vec![],
    };
    match jwk.common.key_algorithm {
        None => by_type,
        Some(alg) => {
            let named = match alg {
                KeyAlgorithm::RS256 => RS256,
                KeyAlgorithm::RS384 => RS384,
                KeyAlgorithm::RS512 => RS512,
                KeyAlgorithm::PS256 => PS256,
                KeyAlgorithm::PS384 => PS384,
                KeyAlgorithm::PS512 => PS512,
                KeyAlgorithm::ES256 => ES256,
                KeyAlgorithm::ES384 => ES384,
                KeyAlgorithm::EdDSA => EdDSA,
                _ => return vec![],
            };
            by_type.into_iter().filter(|a| *a == named).collect()
        }
    }
}

fn keys_of(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms = algorithms_of(jwk);
            if algorithms.is_empty() {
                return None;
            }
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            })
        })
        .collect()
}

impl FanTokens {
    /// Verifier for `source`; a JWKS is loaded now (a failure is logged and
    /// retried on the first token).
    pub async fn new(
        source: KeySource,
        issuer: String,
        audience: String,
        refetch_gap: Duration,
    ) -> Self {
        let keys = match &source {
            // An empty secret makes no key (and no token verifies).
            KeySource::Hs256(secret) => DecodingKey::from_secret(secret)
                .map(|key| Key {
                    kid: None,
                    key,
                    algorithms: vec![Algorithm::HS256],
                })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let tokens = Self {
            source,
            issuer,
            audience,
            refetch_gap,
            keys: tokio::sync::RwLock::new(Keys {
                keys,
                fetched: None,
            }),
            refetch: tokio::sync::Mutex::new(()),
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
        };
        if !matches!(tokens.source, KeySource::Hs256(_)) {
            if let Err(e) = tokens.refresh().await {
                tracing::warn!(error = %e, "cannot load the fans' JWKS yet; retrying on the first token");
            }
        }
        tokens
    }

    /// Fetches the JWKS and replaces the cached keys.
    async fn refresh(&self) -> Result<usize, String> {
        let json = match &self.source {
            KeySource::JwksUrl(url) => self
                .http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("fetching {url}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("reading {url}: {e}"))?,
            KeySource::JwksFile(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            KeySource::Hs256(_) => return Ok(1),
        };
        let set: JwkSet = serde_json::from_str(&json).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys = keys_of(&set);
        let count = keys.len();
        let mut cached = self.keys.write().await;
        cached.keys = keys;
        cached.fetched = Some(Instant::now());
        tracing::info!(keys = count, "loaded the fans' JWKS");
        Ok(count)
    }

    /// Refetches for an unknown `kid`, unless a fetch happened in the last
    /// [`REFETCH_GAP`]. True if it fetched.
    async fn refetch_for_unknown_kid(&self) -> bool {
        if matches!(self.source, KeySource::Hs256(_)) {
            return false;
        }
        let _one_at_a_time = self.refetch.lock().await;
        let recent = self
            .keys
            .read()
            .await
            .fetched
            .is_some_and(|at| at.elapsed() < self.refetch_gap);
        if recent {
            return false;
        }
        match self.refresh().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "refetching the fans' JWKS failed");
                // Count the attempt, so a failing endpoint is not hammered.
                self.keys.write().await.fetched = Some(Instant::now());
                false
            }
        }
    }

    /// The fan a token names, if it verifies.
    pub async fn verify(&self, token: &str) -> Result<Subject, FanTokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| FanTokenError::Invalid("malformed or unsupported algorithm"))?;
        let kid = header.kid.as_deref();
        let mut result = self.verify_with_cached(token, kid, header.alg).await;
        if result == Err(FanTokenError::Invalid("unknown signing key"))
            && self.refetch_for_unknown_kid().await
        {
            result = self.verify_with_cached(token, kid, header.alg).await;
        }
        result
    }

    async fn verify_with_cached(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Subject, FanTokenError> {
        let keys = self.keys.read().await;
        let key = match kid {
            Some(kid) => keys.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            // No kid: only unambiguous with a single key.
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
        .ok_or(FanTokenError::Invalid("unknown signing key"))?;
        if !key.algorithms.contains(&alg) {
            return Err(FanTokenError::Invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => FanTokenError::Expired,
                ErrorKind::ImmatureSignature => FanTokenError::Invalid("not valid yet"),
                ErrorKind::InvalidIssuer => FanTokenError::Invalid("wrong issuer"),
                ErrorKind::InvalidAudience => FanTokenError::Invalid("wrong audience"),
                ErrorKind::InvalidAlgorithm => {
                    FanTokenError::Invalid("algorithm does not match the key")
                }
                ErrorKind::MissingRequiredClaim(_) => FanTokenError::Invalid("a claim is missing"),
                _ => FanTokenError::Invalid("signature or claims"),
            }
        })?;
        Subject::parse(&data.claims.sub).map_err(|_| FanTokenError::Invalid("subject"))
    }
}
