//! Proof of work on join (ALTCHA): a show with a `challenge_cost` admits a
//! join only with a fresh solution to one of its own challenges, once, on
//! any node; a show without one asks for nothing.
//!
//! The tests solve challenges as a client would, with their own brute force
//! over SHA-256 (not the gateway's code).

use std::time::Duration;

use anteroom::challenge::{derive_secret, Altcha, Solution};
use anteroom::config::Secret;
use anteroom::domain::{ChallengeCost, ShowId, Timestamp};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// Small enough to brute-force in a debug build in milliseconds.
const COST: u64 = 1_000;

/// The app under test and, on the real backends, those backends (so a
/// second gateway process can share them).
async fn app(backend: Backend) -> (TestApp, Option<RealBackends>) {
    match backend {
        Backend::Embedded => (spawn_app(backend).await, None),
        Backend::Real => {
            let backends = RealBackends::create().await;
            (spawn_app_on(&backends, |_| {}).await, Some(backends))
        }
    }
}

async fn create_show(node: &Node, body: Value) -> (u16, Value) {
    let res = node
        .client
        .post(format!("{}/v1/admin/shows", node.base))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    (res.status().as_u16(), res.json().await.expect("json"))
}

/// A queue-only show with this proof-of-work cost.
async fn show_with_cost(node: &Node, cost: u64) -> u64 {
    let (status, body) = create_show(
        node,
        json!({"title": "Guarded", "capacity": 1, "session_ttl_seconds": 600,
               "challenge_cost": cost}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["challenge_cost"], cost);
    body["id"].as_u64().expect("id")
}

/// `GET /v1/shows/{show}/challenge`: `(status, body)`.
async fn challenge(node: &Node, show: u64) -> (u16, Value) {
    let res = node
        .client
        .get(format!("{}/v1/shows/{show}/challenge", node.base))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    if status == 200 {
        assert_eq!(
            res.headers()["cache-control"],
            "no-store",
            "a challenge is never cached"
        );
    }
    (status, res.json().await.expect("json"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client's side of ALTCHA: the number up to `maxnumber` whose
/// SHA-256(salt ‖ number) is the challenge; the `X-Altcha` value.
fn solve(challenge: &Value) -> String {
    let salt = challenge["salt"].as_str().expect("salt");
    let target = challenge["challenge"].as_str().expect("challenge");
    let max = challenge["maxnumber"].as_u64().expect("maxnumber");
    let number = (0..=max)
        .find(|n| hex(&Sha256::digest(format!("{salt}{n}"))) == target)
        .expect("a number up to maxnumber solves it");
    header(challenge, number)
}

fn header(challenge: &Value, number: u64) -> String {
    let solution = json!({
        "algorithm": challenge["algorithm"], "challenge": challenge["challenge"],
        "number": number, "salt": challenge["salt"], "signature": challenge["signature"],
    });
    base64::engine::general_purpose::STANDARD.encode(solution.to_string())
}

/// A fresh challenge of the show's, solved.
async fn solved(node: &Node, show: u64) -> String {
    let (status, c) = challenge(node, show).await;
    assert_eq!(status, 200, "{c}");
    solve(&c)
}

/// Joins with `X-Altcha: altcha` (none if `None`).
async fn join_with(node: &Node, show: u64, fan: &Fan, altcha: Option<&str>) -> Spot {
    let mut req = node
        .client
        .post(format!("{}/v1/shows/{show}/queue", node.base))
        .bearer_auth(&fan.token);
    if let Some(altcha) = altcha {
        req = req.header("x-altcha", altcha);
    }
    let res = req.send().await.expect("request");
    Spot {
        status: res.status().as_u16(),
        body: res.json().await.expect("json"),
    }
}

#[track_caller]
fn assert_refused(spot: &Spot, code: &str) {
    assert_eq!(
        (spot.status, spot.body["error"]["code"].as_str()),
        (403, Some(code)),
        "{}",
        spot.body
    );
}

async fn a_join_needs_a_correct_solution(backend: Backend) {
    let (app, _backends) = app(backend).await;
    let show = show_with_cost(&app, COST).await;
    let fan = app.sign_in("solver").await;

    let listed: Value = app
        .client
        .get(format!("{}/v1/shows", app.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let listed = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == show)
        .expect("the show is listed");
    assert_eq!(listed["challenge_cost"], COST, "{listed}");

    let (status, c) = challenge(&app, show).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["algorithm"], "SHA-256");
    assert_eq!(c["maxnumber"], COST);
    let salt = c["salt"].as_str().expect("salt");
    assert!(
        salt.contains(&format!("?show={show}&expires=")) && salt.ends_with('&'),
        "{salt}"
    );

    assert_refused(
        &join_with(&app, show, &fan, None).await,
        "challenge_required",
    );
    for garbage in ["%%%", "bm90IGpzb24=", "e30="] {
        assert_refused(
            &join_with(&app, show, &fan, Some(garbage)).await,
            "challenge_failed",
        );
    }
    let right = solve(&c);
    let number = Solution::decode(&right).expect("our own header").number;
    let wrong = header(&c, (number + 1) % (COST + 1));
    assert_refused(
        &join_with(&app, show, &fan, Some(&wrong)).await,
        "challenge_failed",
    );
    assert_eq!(app.counts(show).await, (1, 0, 0), "nobody joined");

    // A refused attempt does not use the challenge up.
    let joined = join_with(&app, show, &fan, Some(&right)).await;
    assert_eq!(joined.status, 201, "{:?}", joined.body);
    assert_eq!(joined.state(), "active");

    // A repeat join answers the same spot, with a fresh solution.
    assert_refused(
        &join_with(&app, show, &fan, None).await,
        "challenge_required",
    );
    let again = join_with(&app, show, &fan, Some(&solved(&app, show).await)).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.state(), "active");
    assert_eq!(app.counts(show).await, (1, 1, 0));
}

async fn a_solution_is_for_its_show_until_it_expires(backend: Backend) {
    let (app, _backends) = app(backend).await;
    let show = show_with_cost(&app, COST).await;
    let other = show_with_cost(&app, COST).await;
    let fan = app.sign_in("wanderer").await;

    let for_other = solved(&app, other).await;
    assert_refused(
        &join_with(&app, show, &fan, Some(&for_other)).await,
        "challenge_failed",
    );
    assert_eq!(
        join_with(&app, other, &fan, Some(&for_other)).await.status,
        201,
        "the solution was good for its own show"
    );

    // Challenges minted with the key the gateway derives from the ticket
    // secret: one that expired a second ago, and one still good.
    let altcha = Altcha::new(&derive_secret(&Secret::new(SECRET.into())));
    let cost = ChallengeCost::new(COST).expect("a cost");
    let mint = |expires: Timestamp| {
        let c = serde_json::to_value(altcha.challenge(ShowId(show), cost, expires)).expect("json");
        solve(&c)
    };
    let expired = mint(Timestamp::now().minus(Duration::from_secs(1)));
    let message = join_with(&app, show, &fan, Some(&expired)).await;
    assert_refused(&message, "challenge_failed");
    assert!(
        message.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{}",
        message.body
    );
    let fresh = mint(Timestamp::now().plus(Duration::from_secs(60)));
    assert_eq!(join_with(&app, show, &fan, Some(&fresh)).await.status, 201);
}

async fn each_solution_admits_one_join_on_any_node(backend: Backend) {
    let (app, backends) = app(backend).await;
    let show = show_with_cost(&app, COST).await;
    let first = app.sign_in("first").await;
    let second = app.sign_in("second").await;

    let used = solved(&app, show).await;
    assert_eq!(join_with(&app, show, &first, Some(&used)).await.status, 201);
    assert_refused(
        &join_with(&app, show, &first, Some(&used)).await,
        "challenge_failed",
    );
    let replayed = join_with(&app, show, &second, Some(&used)).await;
    assert_refused(&replayed, "challenge_failed");
    assert!(
        replayed.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("used")),
        "{}",
        replayed.body
    );
    assert_eq!(app.counts(show).await, (1, 1, 0));

    // A second gateway process on the same Redis and database.
    if let Some(backends) = backends {
        let other = Process::start(&backends.env()).await;
        let third = other.sign_in("third").await;
        assert_refused(
            &join_with(&other, show, &third, Some(&used)).await,
            "challenge_failed",
        );
        // It is the use that is refused: the nodes agree on the key, so a
        // fresh solution from one node admits a join on the other.
        let fresh = solved(&app, show).await;
        let joined = join_with(&other, show, &third, Some(&fresh)).await;
        assert_eq!(joined.status, 201, "{:?}", joined.body);
        assert_refused(
            &join_with(&app, show, &second, Some(&fresh)).await,
            "challenge_failed",
        );
        assert_eq!(app.counts(show).await, (1, 1, 1));
        other.stop().await;

        // A use is remembered while the challenge could verify (5 minutes,
        // the default) and a minute of clock skew more, not forever.
        let challenge = Solution::decode(&used).expect("our own header").challenge;
        let ttl = backends.pttl(&format!("altcha:{challenge}")).await;
        assert!((290_000..=360_000).contains(&ttl), "ttl {ttl}");
    }
}

async fn a_show_without_a_cost_asks_for_nothing(backend: Backend) {
    let (app, _backends) = app(backend).await;
    let free = app.create_show(1, 600, 60).await;
    let fan = app.sign_in("free").await;
    let (status, body) = challenge(&app, free).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("challenge_not_required")),
        "{body}"
    );
    assert_eq!(join_with(&app, free, &fan, None).await.status, 201);
    // A header sent anyway is not looked at.
    assert_eq!(join_with(&app, free, &fan, Some("junk")).await.status, 200);

    let (status, body) = challenge(&app, 999).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("show_not_found"))
    );
    let no_show = join_with(&app, 999, &fan, None).await;
    assert_eq!(no_show.status, 404, "{:?}", no_show.body);

    for cost in [json!(10_000_001), json!(-1), json!(1.5)] {
        let (status, body) = create_show(
            &app,
            json!({"title": "Too dear", "capacity": 1, "session_ttl_seconds": 60,
                   "challenge_cost": cost}),
        )
        .await;
        assert_eq!(status, 422, "{cost}: {body}");
    }
    let (_, body) = create_show(
        &app,
        json!({"title": "Too dear", "capacity": 1, "session_ttl_seconds": 60,
               "challenge_cost": 10_000_001}),
    )
    .await;
    assert_eq!(body["error"]["code"], "invalid_show", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("challenge_cost")),
        "{body}"
    );
}

crate::for_each_backend!(
    a_join_needs_a_correct_solution,
    a_solution_is_for_its_show_until_it_expires,
    each_solution_admits_one_join_on_any_node,
    a_show_without_a_cost_asks_for_nothing,
);
