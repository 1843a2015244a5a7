//! Proof of work on join: ALTCHA challenges (<https://altcha.org>), the open
//! protocol the `altcha` npm widget speaks, and the rule that each solution
//! admits one join, across nodes.
//!
//! A challenge is `{"algorithm": "SHA-256", "challenge", "salt", "signature",
//! "maxnumber"}`. The gateway picks a secret number `n` in `0..=maxnumber`
//! (the show's `challenge_cost`); `challenge = hex(SHA-256(salt ‖ n))` and
//! `signature = hex(HMAC-SHA256(key, challenge))`. The fan's browser tries
//! numbers until the hash matches (`maxnumber / 2` hashes on average) and
//! sends `base64(JSON {"algorithm", "challenge", "number", "salt",
//! "signature"})` as `X-Altcha` on join. Checking it costs one hash and one
//! HMAC and needs no stored challenge: the salt carries its own parameters,
//! `<24 hex>?show=<id>&expires=<unix seconds>&`, the hash covers the salt and
//! the signature seals the hash. The salt ends with `&` because the number is
//! appended to it: without the delimiter a client could move digits from the
//! number into `expires` and keep the same hash (the parameter splicing that
//! ALTCHA's own libraries closed the same way). The one piece of state is
//! the record of used solutions ([`used::UsedSolutions`]).
//!
//! Written here, not with `altcha-lib-rs` (0.3.3, the Rust server crate),
//! because that crate does not fit:
//! - its verify rebuilds the salt's parameters from a `HashMap`, in random
//!   order, so a salt with two parameters (the show and the expiry) verifies
//!   about half the time (17 of 40 in a check);
//! - its verify checks every number against its default `maxnumber` of
//!   1,000,000, refusing correct solutions to costlier challenges;
//! - it compares signatures in variable time, and brings a second hmac,
//!   sha2, digest and rand generation, and chrono's default features.
//!
//! The protocol is these few functions over the `hmac` and `sha2` crates the
//! tokens already use.

pub mod used;

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::used::UsedSolutions;
use crate::config::Secret;
use crate::domain::{ChallengeCost, Show, ShowId, Timestamp};
use crate::store::StoreError;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm issued and accepted.
pub const ALGORITHM: &str = "SHA-256";

/// Random bytes in a salt (24 hex digits).
const SALT_BYTES: usize = 12;

/// The longest `X-Altcha` value read; a real one is about 250 bytes.
const MAX_HEADER_BYTES: usize = 1024;

/// The key that signs challenges when `challenge.secret` is unset:
/// HMAC-SHA256(ticket secret, "anteroom altcha"), base64url. Nodes that
/// share the ticket secret derive the same key, and a solution never
/// reveals the ticket secret.
pub fn derive_secret(ticket_secret: &Secret) -> Secret {
    let mut mac = HmacSha256::new_from_slice(ticket_secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"anteroom altcha");
    Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
    )
}

/// A challenge as `GET /v1/shows/{show_id}/challenge` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Challenge {
    /// Always `SHA-256`.
    pub algorithm: String,
    /// hex(SHA-256(salt ‖ number)).
    pub challenge: String,
    /// The largest number to try.
    pub maxnumber: u32,
    /// `<random hex>?show=<id>&expires=<unix seconds>&`: append the number.
    pub salt: String,
    /// hex(HMAC-SHA256(key, challenge)); send it back unchanged.
    pub signature: String,
}

/// A solved challenge, as the client sends it (base64 JSON in `X-Altcha`).
/// Other fields the widget adds (`took`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solution {
    pub algorithm: String,
    pub challenge: String,
    pub number: u64,
    pub salt: String,
    pub signature: String,
}

impl Solution {
    /// Reads an `X-Altcha` value: standard or URL-safe base64, padded or
    /// not (the widget sends `btoa`'s standard form).
    pub fn decode(header: &str) -> Result<Self, Refusal> {
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let header = header.trim();
        if header.len() > MAX_HEADER_BYTES {
            return Err(Refusal::Malformed);
        }
        let standard = header.replace('-', "+").replace('_', "/");
        let json = LENIENT.decode(standard).map_err(|_| Refusal::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)
    }

    /// The `X-Altcha` value (standard base64, as the widget sends it).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a solution serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

/// Why a solution does not admit a join; each is 403 `challenge_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("X-Altcha is not base64 of the solution's JSON")]
    Malformed,
    #[error("the algorithm must be SHA-256")]
    Algorithm,
    #[error("the challenge was not issued by this gateway")]
    Forged,
    #[error("the number does not solve the challenge")]
    WrongNumber,
    #[error("the challenge is for another show")]
    OtherShow,
    #[error("the challenge has expired")]
    Expired,
    #[error("the solution has been used already")]
    Used,
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    /// The show asks for no proof of work.
    #[error("show {0} asks for no proof of work")]
    NotRequired(ShowId),
    /// The show asks for proof of work and the join carries none.
    #[error(
        "show {0} asks for proof of work: solve GET /v1/shows/{0}/challenge and send X-Altcha"
    )]
    Required(ShowId),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs and checks challenges with one key. Stateless.
#[derive(Clone)]
pub struct Altcha {
    /// Keyed once; each signature clones it (saves hashing the key each time).
    mac: HmacSha256,
}

impl std::fmt::Debug for Altcha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Altcha([key redacted])")
    }
}

/// A salt's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SaltParams {
    show: ShowId,
    /// Unix seconds.
    expires: i64,
}

impl Altcha {
    pub fn new(secret: &Secret) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes a key of any length"),
        }
    }

    /// A challenge for `show` with a fresh random salt and secret number,
    /// solvable until `expires` (whole seconds).
    pub fn challenge(&self, show: ShowId, cost: ChallengeCost, expires: Timestamp) -> Challenge {
        let random: [u8; SALT_BYTES] = rand::random();
        let salt = format!(
            "{}?show={show}&expires={}&",
            hex(&random),
            expires.as_secs()
        );
        let number = rand::random_range(0..=cost.get());
        let challenge = hash(&salt, u64::from(number));
        Challenge {
            algorithm: ALGORITHM.to_owned(),
            signature: self.sign(&challenge),
            challenge,
            maxnumber: cost.get(),
            salt,
        }
    }

    /// Checks a solution for `show` at `now`: issued by this key, solved,
    /// for this show, not expired. Returns when it expires. Whether it was
    /// used before is [`Challenges::redeem`]'s question.
    pub fn verify(
        &self,
        solution: &Solution,
        show: ShowId,
        now: Timestamp,
    ) -> Result<Timestamp, Refusal> {
        if solution.algorithm != ALGORITHM {
            return Err(Refusal::Algorithm);
        }
        let expected = self.sign(&solution.challenge);
        if !bool::from(expected.as_bytes().ct_eq(solution.signature.as_bytes())) {
            return Err(Refusal::Forged);
        }
        if hash(&solution.salt, solution.number) != solution.challenge {
            return Err(Refusal::WrongNumber);
        }
        // The salt is authentic from here on: the signed hash covers it.
        let params = salt_params(&solution.salt).ok_or(Refusal::Forged)?;
        if params.show != show {
            return Err(Refusal::OtherShow);
        }
        let expires = Timestamp(params.expires.saturating_mul(1000));
        if now > expires {
            return Err(Refusal::Expired);
        }
        Ok(expires)
    }

    fn sign(&self, challenge: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(challenge.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

/// The client's side: tries every number up to `maxnumber`. For tests and
/// the benchmark harness; browsers run `web/anteroom.js`.
pub fn solve(challenge: &Challenge) -> Option<Solution> {
    (0..=u64::from(challenge.maxnumber))
        .find(|n| hash(&challenge.salt, *n) == challenge.challenge)
        .map(|number| Solution {
            algorithm: challenge.algorithm.clone(),
            challenge: challenge.challenge.clone(),
            number,
            salt: challenge.salt.clone(),
            signature: challenge.signature.clone(),
        })
}

/// hex(SHA-256(salt ‖ decimal number)).
fn hash(salt: &str, number: u64) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(number.to_string().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Exactly the salts [`Altcha::challenge`] makes, nothing else.
fn salt_params(salt: &str) -> Option<SaltParams> {
    let (random, params) = salt.split_once('?')?;
    if random.len() != SALT_BYTES * 2 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let params = params.strip_prefix("show=")?.strip_suffix('&')?;
    let (show, expires) = params.split_once("&expires=")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(show) || !digits(expires) {
        return None;
    }
    Some(SaltParams {
        show: ShowId(show.parse().ok()?),
        expires: expires.parse().ok()?,
    })
}

/// Issues challenges for shows that ask for proof of work, and redeems
/// solutions: each admits one join, on any node.
#[derive(Debug)]
pub struct Challenges {
    altcha: Altcha,
    ttl: Duration,
    used: UsedSolutions,
}

impl Challenges {
    /// How long past its expiry a used solution is remembered: nodes' clocks
    /// differ, and a node whose clock is behind still accepts a solution
    /// after the issuing node's `expires`.
    const CLOCK_SKEW: Duration = Duration::from_secs(60);

    pub fn new(secret: &Secret, ttl: Duration, used: UsedSolutions) -> Self {
        Self {
            altcha: Altcha::new(secret),
            ttl,
            used,
        }
    }

    /// A fresh challenge for the show, valid for the configured TTL.
    pub fn issue(&self, show: &Show, now: Timestamp) -> Result<Challenge, ChallengeError> {
        if !show.challenge_cost.is_required() {
            return Err(ChallengeError::NotRequired(show.id));
        }
        Ok(self
            .altcha
            .challenge(show.id, show.challenge_cost, now.plus(self.ttl)))
    }

    /// Admits one join to `show` if it asks for no proof of work (whatever
    /// `header` holds), or if `header` holds a valid solution not used
    /// before, which is then used up.
    pub async fn redeem(
        &self,
        show: &Show,
        header: Option<&str>,
        now: Timestamp,
    ) -> Result<(), ChallengeError> {
        if !show.challenge_cost.is_required() {
            return Ok(());
        }
        let header = header.ok_or(ChallengeError::Required(show.id))?;
        let solution = Solution::decode(header)?;
        let expires = self.altcha.verify(&solution, show.id, now)?;
        // Only a verified solution is recorded, so junk cannot fill the
        // record. The challenge names the solution: one number solves it.
        let keep = now.until(expires) + Self::CLOCK_SKEW;
        if self.used.claim(&solution.challenge, keep).await? {
            Ok(())
        } else {
            Err(Refusal::Used.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn altcha() -> Altcha {
        Altcha::new(&Secret::new("test-challenge-key".into()))
    }

    fn cost(c: u64) -> ChallengeCost {
        ChallengeCost::new(c).expect("a cost")
    }

    fn solved(show: u64, expires: Timestamp) -> Solution {
        let challenge = altcha().challenge(ShowId(show), cost(500), expires);
        solve(&challenge).expect("a number up to maxnumber solves it")
    }

    #[test]
    fn a_challenge_has_the_altcha_shape() {
        let c = altcha().challenge(ShowId(7), cost(1000), NOW.plus(Duration::from_secs(300)));
        assert_eq!(c.algorithm, "SHA-256");
        assert_eq!(c.maxnumber, 1000);
        assert_eq!(c.challenge.len(), 64);
        assert_eq!(c.signature.len(), 64);
        let (random, params) = c.salt.split_once('?').expect("params");
        assert_eq!(random.len(), 24);
        assert_eq!(params, "show=7&expires=1800000300&");
        let json = serde_json::to_value(&c).expect("json");
        let mut keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["algorithm", "challenge", "maxnumber", "salt", "signature"]
        );
    }

    /// The numbers of ALTCHA's protocol, computed independently (Python's
    /// hashlib and hmac): salt "abc?expires=1&", number 42, key "k".
    #[test]
    fn hashes_and_signs_as_altcha_does() {
        let challenge = hash("abc?expires=1&", 42);
        assert_eq!(
            challenge,
            "689d1180a58734d6422132137d4ac583afb922cae9c18591f413a11e890e897c"
        );
        assert_eq!(
            Altcha::new(&Secret::new("k".into())).sign(&challenge),
            "d5ceda70250dadcdad08e31a330b8e3531d80ae859907283ef6e7ab5b8151fb4"
        );
    }

    #[test]
    fn a_solution_verifies_for_its_show_until_it_expires() {
        let expires = NOW.plus(Duration::from_secs(300));
        let s = solved(7, expires);
        assert_eq!(altcha().verify(&s, ShowId(7), NOW), Ok(expires));
        assert_eq!(altcha().verify(&s, ShowId(7), expires), Ok(expires));
        assert_eq!(
            altcha().verify(&s, ShowId(7), expires.plus(Duration::from_millis(1))),
            Err(Refusal::Expired)
        );
        assert_eq!(altcha().verify(&s, ShowId(8), NOW), Err(Refusal::OtherShow));
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let s = solved(7, NOW.plus(Duration::from_secs(300)));
        let check = |s: &Solution| altcha().verify(s, ShowId(7), NOW);
        let wrong_number = Solution {
            number: s.number + 1,
            ..s.clone()
        };
        assert_eq!(check(&wrong_number), Err(Refusal::WrongNumber));
        let other_key = Altcha::new(&Secret::new("another key".into()));
        assert_eq!(other_key.verify(&s, ShowId(7), NOW), Err(Refusal::Forged));
        let sha1 = Solution {
            algorithm: "SHA-1".into(),
            ..s.clone()
        };
        assert_eq!(check(&sha1), Err(Refusal::Algorithm));
        // A salt changed after signing no longer hashes to the challenge.
        let later = Solution {
            salt: s.salt.replace("expires=", "expires=9"),
            ..s.clone()
        };
        assert_eq!(check(&later), Err(Refusal::WrongNumber));
    }

    /// Moving the number's leading digits into `expires` keeps the hashed
    /// string, and so the hash and the signature; the closing `&` of the
    /// salt is what refuses it.
    #[test]
    fn digits_cannot_move_from_the_number_into_the_salt() {
        let key = altcha();
        // A legacy-style salt without the closing `&`, signed by our key.
        let salt = "0123456789abcdef01234567?show=7&expires=1800000300";
        let challenge = hash(salt, 12345);
        let spliced = Solution {
            algorithm: ALGORITHM.into(),
            signature: key.sign(&challenge),
            challenge,
            number: 345,
            salt: format!("{salt}12"),
        };
        assert_eq!(hash(&spliced.salt, spliced.number), spliced.challenge);
        assert_eq!(key.verify(&spliced, ShowId(7), NOW), Err(Refusal::Forged));
    }

    #[test]
    fn only_our_salts_parse() {
        let ok = "0123456789abcdef01234567?show=7&expires=1800000300&";
        assert_eq!(
            salt_params(ok),
            Some(SaltParams {
                show: ShowId(7),
                expires: 1_800_000_300
            })
        );
        for bad in [
            "0123456789abcdef01234567?show=7&expires=1800000300",
            "0123456789abcdef01234567?expires=1800000300&show=7&",
            "0123456789abcdef0123456?show=7&expires=1800000300&",
            "0123456789abcdef01234567?show=&expires=1800000300&",
            "0123456789abcdef01234567?show=7&expires=-1&",
            "0123456789abcdef01234567?show=7&expires=1&x=1&",
            "0123456789abcdef01234567",
            "",
        ] {
            assert_eq!(salt_params(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_header_round_trips_in_any_base64() {
        let s = solved(7, NOW.plus(Duration::from_secs(300)));
        assert_eq!(Solution::decode(&s.encode()), Ok(s.clone()));
        let json = serde_json::to_vec(&s).expect("json");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&json);
        assert_eq!(Solution::decode(&url_safe), Ok(s.clone()));
        // The widget's payload carries `took`; it is ignored.
        let mut widget = serde_json::to_value(&s).expect("json");
        widget["took"] = 1234.into();
        let widget = base64::engine::general_purpose::STANDARD.encode(widget.to_string());
        assert_eq!(Solution::decode(&widget), Ok(s));
        for junk in ["", "not base64!", "bm90IGpzb24=", &"A".repeat(2000)] {
            assert_eq!(Solution::decode(junk), Err(Refusal::Malformed), "{junk}");
        }
    }

    #[test]
    fn the_derived_key_depends_on_the_ticket_secret_only() {
        let a = derive_secret(&Secret::new("ticket".into()));
        assert_eq!(a, derive_secret(&Secret::new("ticket".into())));
        assert_ne!(a, derive_secret(&Secret::new("other".into())));
        assert_ne!(a.expose(), "ticket");
    }

    fn show(cost: u64) -> Show {
        Show {
            id: ShowId(7),
            title: "t".into(),
            starts_at: None,
            prequeue_opens_at: None,
            admission_rate: None,
            state: crate::domain::ShowState::Open,
            capacity: 1,
            session_ttl: Duration::from_secs(60),
            abandon_grace: Duration::from_secs(60),
            challenge_cost: ChallengeCost::new(cost).expect("a cost"),
            notice: None,
        }
    }

    #[tokio::test]
    async fn each_solution_admits_one_join() {
        let challenges = Challenges::new(
            &Secret::new("test-challenge-key".into()),
            Duration::from_secs(300),
            UsedSolutions::memory(),
        );
        let show = show(300);
        let challenge = challenges.issue(&show, NOW).expect("a challenge");
        let header = solve(&challenge).expect("solved").encode();
        assert!(challenges.redeem(&show, Some(&header), NOW).await.is_ok());
        assert!(matches!(
            challenges.redeem(&show, Some(&header), NOW).await,
            Err(ChallengeError::Refused(Refusal::Used))
        ));
        assert!(matches!(
            challenges.redeem(&show, None, NOW).await,
            Err(ChallengeError::Required(ShowId(7)))
        ));
        // A show without a cost asks nothing and issues nothing.
        let free = self::show(0);
        assert!(challenges.redeem(&free, None, NOW).await.is_ok());
        assert!(challenges.redeem(&free, Some("junk"), NOW).await.is_ok());
        assert!(matches!(
            challenges.issue(&free, NOW),
            Err(ChallengeError::NotRequired(ShowId(7)))
        ));
    }
}
