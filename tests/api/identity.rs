//! Trust: fans are who their ticketing site says (jwt mode), tickets belong
//! to one spot, and an origin can verify an admission without the power to
//! forge one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anteroom::auth::AuthMode;
use anteroom::config::{Secret, Settings};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::*;

const ISSUER: &str = "https://tickets.example/";
const AUDIENCE: &str = "anteroom";
const SITE_SECRET: &str = "the-ticketing-site-hs256-secret";
const ORIGIN_KEY: &str = "the-origin-key";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Writes `pem` to a file of the test's own.
fn pem_file(pem: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("anteroom-test-{}.pem", short_id()));
    std::fs::write(&path, pem).expect("write the key file");
    path
}

fn admission_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn private_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(Default::default())
        .expect("PKCS#8 PEM")
        .to_string()
}

/// A gateway in jwt mode trusting the site's HS256 secret, unless `tweak`
/// says otherwise.
async fn spawn_jwt(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let key = pem_file(&private_pem(&admission_key(1)));
    spawn_app_with(backend, |s| {
        s.auth.mode = Some(AuthMode::Jwt);
        s.auth.hs256_secret = Some(Secret::new(SITE_SECRET.into()));
        s.auth.issuer = Some(ISSUER.into());
        s.auth.audience = Some(AUDIENCE.into());
        s.admission.key_file = Some(key);
        s.admission.origin_key = Some(Secret::new(ORIGIN_KEY.into()));
        tweak(s);
    })
    .await
}

/// The site's token for `sub`, with `claims` merged over good defaults.
fn site_token(sub: &str, claims: Value) -> String {
    let mut all = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    for (k, v) in claims.as_object().expect("object") {
        all[k] = v.clone();
    }
    all.as_object_mut()
        .expect("object")
        .retain(|_, v| !v.is_null());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(SITE_SECRET.as_bytes()).expect("key"),
    )
    .expect("encodes")
}

fn bearer(token: String) -> Fan {
    Fan { user_id: 0, token }
}

async fn join_error(app: &TestApp, show: u64, token: String) -> (u16, String) {
    let spot = app.join(show, &bearer(token)).await;
    let code = spot.body["error"]["code"].as_str().unwrap_or("").to_owned();
    (spot.status, code)
}

async fn jwt_fans_are_who_their_site_says(backend: Backend) {
    let app = spawn_jwt(backend, |_| {}).await;
    let show = app.create_show(1, 600, 60).await;

    // No name-only sign-in in front of a real sale.
    let res = app
        .client
        .post(format!("{}/v1/sessions", app.base))
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "demo_sign_in_disabled");

    let alice = app
        .join(show, &bearer(site_token("auth0|alice", json!({}))))
        .await;
    assert_eq!((alice.status, alice.state()), (201, "active"));
    assert_eq!(admission_claims(alice.access())["sub"], "auth0|alice");
    // Another token of the same fan finds the same spot.
    let again = app
        .join(show, &bearer(site_token("auth0|alice", json!({}))))
        .await;
    assert_eq!((again.status, again.state()), (200, "active"));
    let bob = app.join(show, &bearer(site_token("bob", json!({})))).await;
    assert_eq!((bob.status, bob.rank()), (201, 1));

    // Expiry with 30 s of leeway; nbf likewise.
    let late = site_token("bob", json!({"exp": now() - 10}));
    assert_eq!(app.join(show, &bearer(late)).await.status, 200);
    for (what, token, code) in [
        (
            "expired",
            site_token("bob", json!({"exp": now() - 120})),
            "token_expired",
        ),
        (
            "not yet valid",
            site_token("bob", json!({"nbf": now() + 120})),
            "invalid_token",
        ),
        (
            "wrong issuer",
            site_token("bob", json!({"iss": "https://evil.example/"})),
            "invalid_token",
        ),
        (
            "wrong audience",
            site_token("bob", json!({"aud": "someone-else"})),
            "invalid_token",
        ),
        (
            "no audience",
            site_token("bob", json!({"aud": null})),
            "invalid_token",
        ),
        (
            "subject too long",
            site_token(&"x".repeat(256), json!({})),
            "invalid_token",
        ),
    ] {
        assert_eq!(
            join_error(&app, show, token).await,
            (401, code.to_owned()),
            "{what}"
        );
    }
    // `alg: none`, and the victim's name signed by anyone but the site:
    // impersonation is impossible.
    let unsigned = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(
            json!({"sub": "auth0|alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
                .to_string()
        )
    );
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "auth0|alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600}),
        &EncodingKey::from_secret(b"guessed").expect("key"),
    )
    .expect("encodes");
    for token in [unsigned, forged] {
        assert_eq!(
            join_error(&app, show, token.clone()).await,
            (401, "invalid_token".to_owned())
        );
        let leave = app
            .client
            .delete(format!("{}/v1/shows/{show}/queue", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(leave.status(), 401);
    }
    // Alice's spot is untouched by all of it.
    let (_, status) = app.status(show, alice.ticket()).await;
    assert_eq!(status["state"], "active");
}

/// The site's JWKS, served from a URL the test controls.
struct Jwks {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn serve(keys: Vec<Value>) -> Self {
        let set = Arc::new(Mutex::new(json!({ "keys": keys })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (set.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.lock().expect("lock").clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{addr}/jwks.json"),
            set,
            fetches,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.set.lock().expect("lock") = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// An Ed25519 key of the site's, as a JWK and a signer.
fn site_key(seed: u8, kid: &str) -> (Value, EncodingKey) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": B64.encode(key.verifying_key().to_bytes()),
    });
    let der = key.to_pkcs8_der().expect("PKCS#8");
    (jwk, EncodingKey::from_ed_der(der.as_bytes()))
}

fn signed(sub: &str, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    jsonwebtoken::encode(&header, &claims, key).expect("encodes")
}

async fn a_rotated_jwks_is_fetched_once_an_unknown_kid_appears(backend: Backend) {
    let (jwk1, key1) = site_key(11, "k1");
    let (jwk2, key2) = site_key(12, "k2");
    let jwks = Jwks::serve(vec![jwk1.clone()]).await;
    let url = jwks.url.clone();
    let app = spawn_jwt(backend, |s| {
        s.auth.hs256_secret = None;
        s.auth.jwks_url = Some(url);
        s.auth.jwks_refetch_secs = 1;
    })
    .await;
    let show = app.create_show(10, 600, 60).await;
    assert_eq!(jwks.fetches(), 1, "fetched once at start");
    let first = app.join(show, &bearer(signed("one", "k1", &key1))).await;
    assert_eq!(first.status, 201, "{}", first.body);

    // A key the gateway has not seen: refused, however often it is tried,
    // with at most one fetch per second of refetch gap.
    let unknown = signed("two", "k2", &key2);
    let before = jwks.fetches();
    for _ in 0..20 {
        assert_eq!(
            join_error(&app, show, unknown.clone()).await,
            (401, "invalid_token".to_owned())
        );
    }
    assert!(
        jwks.fetches() <= before + 2,
        "a burst of unknown kids fetched {} times",
        jwks.fetches() - before
    );

    // The site rotates: the new key is picked up at the next refetch.
    jwks.publish(vec![jwk1.clone(), jwk2]);
    eventually("the rotated key is accepted", || async {
        app.join(show, &bearer(unknown.clone())).await.status == 201
    })
    .await;

    // The algorithm must match the key: HS256 "signed" with the public key
    // (a classic confusion), or with a `kid` of an EdDSA key, is refused.
    let public = jwk1["x"].as_str().expect("x").to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &json!({"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600}),
        &EncodingKey::from_secret(public.as_bytes()).expect("key"),
    )
    .expect("encodes");
    assert_eq!(
        join_error(&app, show, confused).await,
        (401, "invalid_token".to_owned())
    );
}

async fn tickets_belong_to_their_spot(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show(1, 600, 60).await;
    let holder = app.join(show, &app.sign_in("holder").await).await;
    assert_eq!(holder.state(), "active");
    let fan = app.sign_in("returner").await;
    let first = app.join(show, &fan).await;
    assert_eq!(first.rank(), 1);
    assert_eq!(app.leave(show, first.ticket()).await, 204);
    // Until the fan joins again, the old ticket only reads how it ended.
    let (status, body) = app.status(show, first.ticket()).await;
    assert_eq!((status, body["reason"].as_str()), (200, Some("left")));

    let second = app.join(show, &fan).await;
    assert_eq!(second.status, 201);
    assert_ne!(second.ticket(), first.ticket());
    // The old ticket is dead for the new spot: status, leave, WS and SSE.
    let (status, body) = app.status(show, first.ticket()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("ticket_stale"))
    );
    assert_eq!(app.leave(show, first.ticket()).await, 401);
    for transport in ["ws", "sse"] {
        let res = app
            .client
            .get(format!(
                "{}/v1/shows/{show}/queue/{transport}?ticket={}",
                app.base,
                first.ticket()
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 401, "{transport}");
    }
    // The new ticket works, and the spot is still there.
    let (status, body) = app.status(show, second.ticket()).await;
    assert_eq!((status, body["rank"].as_u64()), (200, Some(1)));
}

async fn introspect(app: &TestApp, key: Option<&str>, token: &str) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/v1/admission/introspect", app.base))
        .json(&json!({ "token": token }));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await.expect("request");
    (res.status().as_u16(), res.json().await.expect("json"))
}

async fn origins_verify_admissions_without_the_forging_key(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.admission.origin_key = Some(Secret::new(ORIGIN_KEY.into()));
        s.admission.audience = Some("tickets.example".into());
    })
    .await;
    // Two seats: one is sold below, and the show stays on sale.
    let show = app.create_show_with_seats(1, 600, 2, 10).await;
    let fan = app.sign_in("verified").await;
    let spot = app.join(show, &fan).await;
    let access = spot.access().to_owned();

    // Offline: the token verifies with the published public key alone.
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("sig")
        )
    );
    assert!(key.get("d").is_none(), "never a private part");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("a JWKS");
    let header = jsonwebtoken::decode_header(&access).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = set
        .find(header.kid.as_deref().expect("kid"))
        .expect("the kid is published");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["anteroom"]);
    validation.set_audience(&["tickets.example"]);
    let claims = jsonwebtoken::decode::<Value>(
        &access,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &validation,
    )
    .expect("verifies offline")
    .claims;
    assert_eq!(claims["sub"], "verified");
    assert_eq!(claims["show"], show);
    let until = chrono::DateTime::parse_from_rfc3339(
        spot.body["active_until"].as_str().expect("active_until"),
    )
    .expect("rfc3339");
    assert_eq!(claims["exp"].as_i64(), Some(until.timestamp() + 1));
    for claim in ["iat", "jti", "sid"] {
        assert!(claims.get(claim).is_some(), "{claim}");
    }

    // Online: introspection knows whether the session is still live.
    let (status, live) = introspect(&app, Some(ORIGIN_KEY), &access).await;
    assert_eq!(status, 200);
    assert_eq!(live["active"], true);
    assert_eq!(live["sub"], "verified");
    assert_eq!(
        (&live["show"], &live["sid"]),
        (&claims["show"], &claims["sid"])
    );
    assert_eq!(live["exp"], claims["exp"]);
    assert_eq!(
        introspect(&app, Some(ADMIN_KEY), &access).await.1["active"],
        true
    );
    assert_eq!(introspect(&app, None, &access).await.0, 401);
    assert_eq!(introspect(&app, Some("wrong"), &access).await.0, 401);
    let mut parts: Vec<&str> = access.split('.').collect();
    let tampered_payload = B64.encode(
        json!({"sub": "someone-else", "show": show, "sid": 1, "uid": 1, "iss": "anteroom",
               "aud": "tickets.example", "iat": now(), "exp": now() + 600, "jti": "x"})
        .to_string(),
    );
    parts[1] = &tampered_payload;
    assert_eq!(
        introspect(&app, Some(ORIGIN_KEY), &parts.join(".")).await.1,
        json!({"active": false})
    );

    // Paying ends the session: inactive at once, well before `exp`.
    let (_, seats) = app.seats(show).await;
    let seat = seats[0]["seat_id"].as_u64().expect("seat");
    let (status, hold) = app.reserve(show, &fan, &access, seat).await;
    assert_eq!(status, 201, "{hold}");
    app.charge(&fan, 10).await;
    let reservation = hold["reservation_id"].as_u64().expect("id");
    assert_eq!(app.pay(&fan, &access, reservation, "pay-1").await.0, 201);
    assert_eq!(
        introspect(&app, Some(ORIGIN_KEY), &access).await.1,
        json!({"active": false})
    );

    // Leaving ends it too.
    let other = app.sign_in("leaver").await;
    let other_spot = app.join(show, &other).await;
    assert_eq!(other_spot.state(), "active");
    let other_access = other_spot.access().to_owned();
    assert_eq!(
        introspect(&app, Some(ORIGIN_KEY), &other_access).await.1["active"],
        true
    );
    assert_eq!(app.leave(show, other_spot.ticket()).await, 204);
    assert_eq!(
        introspect(&app, Some(ORIGIN_KEY), &other_access).await.1,
        json!({"active": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_keys_come_from_files_and_rotate() {
    let old = admission_key(21);
    let new = admission_key(22);
    let old_file = pem_file(&private_pem(&old));
    let first = spawn_app_with(Backend::Embedded, |s| {
        s.admission.key_file = Some(old_file.clone());
    })
    .await;
    let show = first.create_show(1, 600, 60).await;
    let spot = first.join(show, &first.sign_in("rotating").await).await;
    let token = spot.access().to_owned();

    // The next deployment signs with a new key and keeps the old one (here
    // as a public key) verifiable.
    let old_public = pem_file(
        &old.verifying_key()
            .to_public_key_pem(Default::default())
            .expect("SPKI PEM"),
    );
    let new_file = pem_file(&private_pem(&new));
    let second = spawn_app_with(Backend::Embedded, |s| {
        s.admission.key_file = Some(new_file);
        s.admission.previous_key_files = vec![old_public];
    })
    .await;
    let jwks: jsonwebtoken::jwk::JwkSet = second.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks.keys.len(), 2);
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");
    let jwk = jwks.find(&kid).expect("the old key is still published");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["anteroom"]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &validation,
    )
    .expect("a token of the old key verifies with the new JWKS");

    // A key file that is not an Ed25519 PKCS#8 key stops start-up.
    let junk = pem_file("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        seed_demo: Some(false),
        ..Settings::default()
    };
    settings.admission.key_file = Some(junk);
    let err = anteroom::startup::Application::build(settings)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("ANTEROOM_ADMISSION_KEY_FILE"), "{err}");
    drop(first);
}

#[tokio::test]
async fn production_backends_need_an_explicit_auth_mode() {
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        seed_demo: Some(false),
        redis: anteroom::config::RedisSettings {
            url: Some(Secret::new(redis_url())),
            ..Default::default()
        },
        ..Settings::default()
    };
    let err = anteroom::startup::Application::build(settings)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("ANTEROOM_AUTH_MODE"), "{err}");
}

crate::for_each_backend!(
    jwt_fans_are_who_their_site_says,
    a_rotated_jwks_is_fetched_once_an_unknown_kid_appears,
    tickets_belong_to_their_spot,
    origins_verify_admissions_without_the_forging_key,
);
