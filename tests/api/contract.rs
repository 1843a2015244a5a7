//! The database contract: the same sale transitions, run against the
//! embedded database and MySQL, answer alike. The rules are the domain's;
//! each backend only loads and stores around them, and this is what keeps
//! two backends from drifting apart.

use anteroom::domain::{
    Amount, HoldRequest, IdempotencyKey, NewShow, Payment, Reservation, ReservationId, SeatId,
    SeatLayout, SessionId, ShowId, Timestamp, UserId,
};
use anteroom::store::{Database, PayOutcome, PoolOptions, OUTBOX_LEASE};

use crate::helpers::*;

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const LATER: Timestamp = Timestamp(1_700_000_600_000);

/// A database of its own on the MySQL server the tests use.
async fn fresh_mysql() -> Database {
    let pool = PoolOptions {
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(10),
    };
    let breakers = anteroom::resilience::BreakerSettings::default();
    Database::mysql(&create_database(&short_id()).await, &pool, &breakers)
        .await
        .expect("connects and migrates")
}

struct Script {
    db: Database,
    show: ShowId,
    log: Vec<String>,
}

impl Script {
    fn note(&mut self, step: &str, outcome: impl std::fmt::Debug) {
        self.log.push(format!("{step}: {outcome:?}"));
    }

    async fn seat(&self, n: u64) -> anteroom::domain::Seat {
        self.db
            .seat(self.show, SeatId(n))
            .await
            .expect("seat read")
            .expect("seat exists")
    }

    /// Holds seat `n` for `user` (who may have no account yet).
    async fn hold(&mut self, step: &str, user: u64, n: u64, max_holds: u32) -> Option<Reservation> {
        let request = HoldRequest {
            show: self.show,
            seat: SeatId(n),
            user: UserId(user),
            session: SessionId(user),
            expires_at: LATER,
            max_holds,
        };
        let outcome = self.db.hold_seat(&request).await.expect("hold call");
        self.note(step, outcome.as_ref().map(|r| (r.seat, r.state, r.price)));
        outcome.ok()
    }

    async fn pay(&mut self, step: &str, user: u64, r: u64, key: &str, body: u8, active: bool) {
        let request = Payment {
            user: UserId(user),
            reservation: ReservationId(r),
            active: active.then_some((self.show, SessionId(user))),
            key: IdempotencyKey::parse(key).expect("key"),
            request_hash: [body; 32],
            now: NOW,
        };
        let outcome = match self.db.pay(&request).await.expect("pay call") {
            PayOutcome::Completed(receipt, change, _) => format!(
                "completed amount={} balance={} ends_session={}",
                receipt.amount, receipt.balance, change.ends_session
            ),
            PayOutcome::Replayed(receipt) => {
                format!(
                    "replayed amount={} balance={}",
                    receipt.amount, receipt.balance
                )
            }
            PayOutcome::Refused(refusal) => format!("refused {refusal:?}"),
        };
        self.note(step, outcome);
    }
}

/// Runs every sale transition once against `db` and returns what each
/// answered, in order.
async fn run_script(db: Database) -> Vec<String> {
    let show = NewShow::simple("Contract", 10, 600).expect("show");
    let seats = SeatLayout::single("A", 1, 5, 30).expect("layout").seats();
    let show = db.create_show(show, &seats).await.expect("create").id;
    let mut s = Script {
        db,
        show,
        log: Vec::new(),
    };
    let amount = |n| Amount::charge(n).expect("amount");

    let charged = s.db.charge(UserId(1), amount(100)).await.expect("charge");
    s.note("charge 100", charged);
    let charged = s.db.charge(UserId(1), amount(5)).await.expect("charge");
    s.note("charge 5 more", charged);

    // A hold, a taken seat (by a fan with no account yet), the hold limit,
    // no such seat.
    let first = s.hold("hold seat 1", 1, 1, 4).await.expect("held");
    s.hold("hold seat 1 when taken", 2, 1, 4).await;
    s.hold("hold seat 2 over the limit", 1, 2, 1).await;
    s.hold("hold seat 99", 2, 99, 4).await;
    let balance = s.db.balance(UserId(2)).await.expect("balance");
    s.note("balance of the fan who only tried to hold", balance);

    // Releases: someone else's, the fan's own, twice.
    let released =
        s.db.release_hold(UserId(2), first.id)
            .await
            .expect("release");
    s.note("release another fan's hold", released);
    let released =
        s.db.release_hold(UserId(1), first.id)
            .await
            .expect("release");
    s.note("release", released.clone());
    let again =
        s.db.release_hold(UserId(1), first.id)
            .await
            .expect("release");
    s.note("release again", again);
    let missing =
        s.db.release_hold(UserId(1), ReservationId(999))
            .await
            .expect("release");
    s.note("release a hold that does not exist", missing);
    let seat = s.seat(1).await;
    s.note("seat 1 after release", (seat.status, seat.version));

    // Payments: inactive, completed, replayed, another key, a reused key.
    let second = s.hold("hold seat 1 again", 1, 1, 4).await.expect("held");
    let r = second.id.0;
    s.pay("pay without an active session", 1, r, "k0", 1, false)
        .await;
    s.pay("pay", 1, r, "k1", 1, true).await;
    s.pay("pay again, same key", 1, r, "k1", 1, false).await;
    s.pay("pay again, another key", 1, r, "k2", 1, true).await;
    s.pay("pay again, another key, no session", 1, r, "k3", 1, false)
        .await;
    s.pay("same key, another body", 1, r, "k1", 2, true).await;
    let seat = s.seat(1).await;
    s.note("seat 1 after payment", (seat.status, seat.version));

    // A payment that leaves another hold open keeps the session.
    let third = s.hold("hold seat 2", 1, 2, 4).await.expect("held");
    let fourth = s.hold("hold seat 3", 1, 3, 4).await.expect("held");
    s.pay("pay seat 2 of two", 1, third.id.0, "k4", 4, true)
        .await;
    let broke = s
        .hold("hold seat 4 with no points", 3, 4, 4)
        .await
        .expect("held");
    s.pay("pay with too few points", 3, broke.id.0, "k5", 5, true)
        .await;

    // Expiry: not yet, due, twice; then paying or releasing it.
    let early = s.db.expire_hold(fourth.id, NOW).await.expect("expire");
    s.note("expire before due", early.map(|r| r.state));
    let due = s.db.expire_hold(fourth.id, LATER).await.expect("expire");
    s.note("expire when due", due.map(|r| r.state));
    let twice = s.db.expire_hold(fourth.id, LATER).await.expect("expire");
    s.note("expire again", twice.map(|r| r.state));
    s.pay("pay an expired hold", 1, fourth.id.0, "k6", 6, true)
        .await;
    let released =
        s.db.release_hold(UserId(1), fourth.id)
            .await
            .expect("release");
    s.note("release an expired hold", released);
    s.pay("pay a hold that does not exist", 1, 999, "k7", 7, true)
        .await;
    s.pay("pay another fan's hold", 2, third.id.0, "k8", 8, true)
        .await;

    let balance = s.db.balance(UserId(1)).await.expect("balance");
    s.note("balance", balance);
    let mut map = Vec::new();
    for seat in s.db.seats(show).await.expect("seats") {
        map.push((seat.id.0, seat.status, seat.version));
    }
    s.note("seat map", map);
    let open = s.db.open_holds().await.expect("open holds");
    s.note("open holds", open.len());
    // Once the payer's own claim on its payments' rows has lapsed, as
    // another relay would find them.
    let rows =
        s.db.claim_outbox(100, LATER, LATER.plus(OUTBOX_LEASE))
            .await
            .expect("outbox");
    let events: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row.event.kind.topic(),
                row.event.reservation_id.map(|r| r.0),
                row.event.amount,
                row.event.keeps_session,
            )
        })
        .collect();
    s.note("outbox", events);
    s.log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_databases_answer_every_sale_transition_alike() {
    let embedded = run_script(Database::memory()).await;
    let mysql = run_script(fresh_mysql().await).await;
    for (i, (e, m)) in embedded.iter().zip(&mysql).enumerate() {
        assert_eq!(
            e, m,
            "step {i} differs between the embedded database and MySQL"
        );
    }
    assert_eq!(embedded.len(), mysql.len());
    let expected = [
        "charge 100: Ok(100)",
        "charge 5 more: Ok(105)",
        "hold seat 1: Ok((SeatId(1), Held, 30))",
        "hold seat 1 when taken: Err(SeatTaken)",
        "hold seat 2 over the limit: Err(LimitReached)",
        "hold seat 99: Err(NoSuchSeat)",
        "balance of the fan who only tried to hold: 0",
        "release another fan's hold: NotFound",
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&embedded[i], want, "{embedded:#?}");
    }
    let answers = embedded.join("\n");
    for want in [
        "release again: NotHeld(Released)",
        "seat 1 after release: (Available, 2)",
        "pay without an active session: \"refused NotActive\"",
        "pay: \"completed amount=30 balance=75 ends_session=true\"",
        "pay again, same key: \"replayed amount=30 balance=75\"",
        "pay again, another key: \"refused AlreadyPaid\"",
        "pay again, another key, no session: \"refused AlreadyPaid\"",
        "same key, another body: \"refused KeyReused\"",
        "seat 1 after payment: (Sold, 4)",
        "pay seat 2 of two: \"completed amount=30 balance=45 ends_session=false\"",
        "pay with too few points: \"refused NotEnoughPoints { balance: 0, price: 30 }\"",
        "expire before due: None",
        "expire when due: Some(Expired)",
        "expire again: None",
        "pay an expired hold: \"refused HoldExpired\"",
        "release an expired hold: NotHeld(Expired)",
        "pay a hold that does not exist: \"refused NoSuchHold\"",
        "pay another fan's hold: \"refused NoSuchHold\"",
        "balance: 45",
        "seat map: [(1, Sold, 4), (2, Sold, 2), (3, Available, 2), (4, Held, 1), (5, Available, 0)]",
        "open holds: 1",
        "outbox: [(\"payment.completed\", Some(2), Some(30), false), \
         (\"payment.completed\", Some(3), Some(30), true), \
         (\"reservation.expired\", Some(4), None, false)]",
    ] {
        assert!(answers.contains(want), "missing {want:?} in\n{answers}");
    }
}

/// The end of a session, the seat counts and which statuses are left,
/// against `db`: what each step answered, in order.
async fn run_session_end_script(db: Database) -> Vec<String> {
    let show = NewShow::simple("Session end", 10, 600).expect("show");
    let seats = SeatLayout::single("A", 1, 5, 30).expect("layout").seats();
    let show = db.create_show(show, &seats).await.expect("create").id;
    let mut s = Script {
        db,
        show,
        log: Vec::new(),
    };
    let counts = s.db.seat_counts(show).await.expect("counts");
    s.note("counts at first", counts);
    // Fan 1's session 1 holds seats 1 to 3 and pays for 3; fan 1's later
    // session 7 holds seat 4; fan 2 holds seat 5.
    let mut held = Vec::new();
    for (user, session, n) in [(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 7, 4), (2, 2, 5)] {
        let request = HoldRequest {
            show,
            seat: SeatId(n),
            user: UserId(user),
            session: SessionId(session),
            expires_at: LATER,
            max_holds: 5,
        };
        let r = s.db.hold_seat(&request).await.expect("hold call");
        held.push(r.expect("held"));
    }
    s.db.charge(UserId(1), Amount::charge(30).expect("amount"))
        .await
        .expect("charge")
        .expect("credited");
    s.pay("pay seat 3", 1, held[2].id.0, "k", 1, true).await;
    let counts = s.db.seat_counts(show).await.expect("counts");
    s.note(
        "counts with holds",
        (counts, counts.all_held(), counts.sold_out()),
    );
    let left = s.db.seats_left(show).await.expect("seats left");
    assert_eq!(left, counts.left(), "the probes agree with the count");
    s.note("seats left with holds", left);

    let ended =
        s.db.release_session_holds(show, UserId(1), SessionId(1), NOW)
            .await
            .expect("release");
    let ended: Vec<_> = ended.iter().map(|r| (r.seat.0, r.state)).collect();
    s.note("session 1 ends", ended);
    let again =
        s.db.release_session_holds(show, UserId(1), SessionId(1), NOW)
            .await
            .expect("release");
    s.note("session 1 ends again", again.len());
    let mut map = Vec::new();
    for seat in s.db.seats(show).await.expect("seats") {
        map.push((seat.id.0, seat.status, seat.version));
    }
    s.note("seat map", map);
    let counts = s.db.seat_counts(show).await.expect("counts");
    s.note("counts after", counts);
    let left = s.db.seats_left(show).await.expect("seats left");
    assert_eq!(left, counts.left(), "the probes agree with the count");
    s.note("seats left after", left);
    let mut states = Vec::new();
    for r in &held {
        let r = s.db.reservation(r.id).await.expect("read").expect("exists");
        states.push(r.state);
    }
    s.note("reservations", states);
    s.pay("pay a released hold", 1, held[0].id.0, "k2", 2, true)
        .await;
    // Once the payer's own claim on its payments' rows has lapsed, as
    // another relay would find them.
    let rows =
        s.db.claim_outbox(100, LATER, LATER.plus(OUTBOX_LEASE))
            .await
            .expect("outbox");
    let events: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row.event.kind.topic(),
                row.event.reservation_id.map(|r| r.0),
            )
        })
        .collect();
    s.note("outbox", events);
    s.log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_databases_end_a_sessions_holds_and_count_seats_alike() {
    let embedded = run_session_end_script(Database::memory()).await;
    let mysql = run_session_end_script(fresh_mysql().await).await;
    assert_eq!(embedded, mysql, "the embedded database and MySQL differ");
    let expected = [
        "counts at first: SeatCounts { available: 5, held: 0, sold: 0 }",
        "pay seat 3: \"completed amount=30 balance=0 ends_session=false\"",
        "counts with holds: (SeatCounts { available: 0, held: 4, sold: 1 }, true, false)",
        "seats left with holds: SeatsLeft { available: false, held: true, sold: true }",
        "session 1 ends: [(1, Expired), (2, Expired)]",
        "session 1 ends again: 0",
        "seat map: [(1, Available, 2), (2, Available, 2), (3, Sold, 2), (4, Held, 1), \
         (5, Held, 1)]",
        "counts after: SeatCounts { available: 2, held: 2, sold: 1 }",
        "seats left after: SeatsLeft { available: true, held: true, sold: true }",
        "reservations: [Expired, Expired, Paid, Held, Held]",
        "pay a released hold: \"refused HoldExpired\"",
    ];
    assert_eq!(&embedded[..expected.len()], expected);
    let outbox = &embedded[expected.len()];
    assert!(
        outbox.starts_with("outbox: [(\"payment.completed\", Some(3))")
            && outbox.ends_with(
                "(\"reservation.expired\", Some(1)), (\"reservation.expired\", Some(2))]"
            ),
        "{outbox}"
    );
}

/// The divergence the contract closed, end to end: twenty payments with
/// different keys on one reservation, at once. One pays; every other one
/// answers 409 `already_paid` on every backend (the embedded one used to
/// answer 403 `session_not_active`, because there the first payment had
/// already ended the session).
async fn twenty_keys_on_one_reservation_pay_once_and_answer_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = app.create_show_with_seats(1, 600, 1, 30).await;
    let fan = app.sign_in("twenty").await;
    let spot = app.join(show, &fan).await;
    assert_eq!(spot.state(), "active");
    app.charge(&fan, 100).await;
    let (_, seats) = app.seats(show).await;
    let seat = seats[0]["seat_id"].as_u64().expect("seat id");
    let (status, body) = app.reserve(show, &fan, spot.access(), seat).await;
    assert_eq!(status, 201, "{body}");
    let reservation = body["reservation_id"].as_u64().expect("reservation id");

    let payments = (0..20).map(|i| {
        let (app, fan, access) = (&app, &fan, spot.access());
        async move { app.pay(fan, access, reservation, &format!("key-{i}")).await }
    });
    let answers = futures::future::join_all(payments).await;
    let paid = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s != 201)
        .map(|(s, b)| (*s, b["error"]["code"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(paid, 1, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|r| *r == (409, "already_paid".to_owned())),
        "{refused:?}"
    );
    assert_eq!(app.balance(&fan).await, 70);
    // A later retry under a new key, after the session ended, answers alike.
    let (status, body) = app.pay(&fan, spot.access(), reservation, "key-late").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_paid"))
    );
}

crate::for_each_backend!(twenty_keys_on_one_reservation_pay_once_and_answer_alike);

/// The served contract: the OpenAPI and AsyncAPI documents say what the
/// gateway does. Every request below is judged twice, by the document's
/// schema and by the server, and the two must agree; every frame a fan is
/// pushed must be a message of the AsyncAPI document. (contract/check.sh
/// validates both documents and runs schemathesis over the whole API.)
mod documents {
    use serde_json::{json, Value};

    use crate::helpers::*;

    /// Whether `value` fits `schema`, for the JSON Schema the documents
    /// use: `type` (one or several; an integer is a number with no
    /// fraction), `enum`, bounds, `pattern`, objects (`properties`,
    /// `required`, `additionalProperties: false`), arrays, `oneOf`,
    /// `allOf` and references into `#/components/schemas/`.
    fn fits(doc: &Value, schema: &Value, value: &Value) -> bool {
        if let Some(target) = schema["$ref"].as_str() {
            let name = target.rsplit('/').next().expect("a schema name");
            return fits(doc, &doc["components"]["schemas"][name], value);
        }
        if let Some(all) = schema["allOf"].as_array() {
            return all.iter().all(|s| fits(doc, s, value));
        }
        if let Some(one) = schema["oneOf"].as_array() {
            return one.iter().filter(|s| fits(doc, s, value)).count() == 1;
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let type_ok = types.is_empty()
            || types.iter().any(|t| match *t {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "string" => value.is_string(),
                "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
                "number" => value.is_number(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                other => panic!("type {other}"),
            });
        if !type_ok {
            return false;
        }
        if let Some(options) = schema["enum"].as_array() {
            if !options.contains(value) {
                return false;
            }
        }
        // Bounds compare as exact integers where both are (2^63 is above
        // i64::MAX, and as f64 a bound would be rounded).
        let int = |v: &Value| v.as_u64().map(i128::from).or(v.as_i64().map(i128::from));
        let beyond = |bound: &Value, above: bool| match (int(value), int(bound)) {
            _ if bound.is_null() || !value.is_number() => false,
            (Some(v), Some(b)) => (above && v > b) || (!above && v < b),
            _ => {
                let (v, b) = (value.as_f64().unwrap_or(0.0), bound.as_f64().unwrap_or(0.0));
                (above && v > b) || (!above && v < b)
            }
        };
        if beyond(&schema["maximum"], true) || beyond(&schema["minimum"], false) {
            return false;
        }
        if let (Some(s), Some(pattern)) = (value.as_str(), schema["pattern"].as_str()) {
            if !regex::Regex::new(pattern)
                .expect("pattern compiles")
                .is_match(s)
            {
                return false;
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                if !object.contains_key(required.as_str().expect("a name")) {
                    return false;
                }
            }
            for (key, field) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(s) if !fits(doc, s, field) => return false,
                    None if schema["additionalProperties"] == false => return false,
                    _ => {}
                }
            }
        }
        if let Some(items) = value.as_array() {
            let len = items.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|m| len < m)
                || schema["maxItems"].as_u64().is_some_and(|m| len > m)
            {
                return false;
            }
            if !schema["items"].is_null() && !items.iter().all(|i| fits(doc, &schema["items"], i)) {
                return false;
            }
        }
        true
    }

    /// The request body schema of `method path`.
    fn body_schema(doc: &Value, method: &str, path: &str) -> Value {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
    }

    /// Sends `body` with `req`: the document's schema and the server must
    /// judge it alike (the server refuses a body with 422). The answer.
    async fn agree(
        doc: &Value,
        schema: &Value,
        req: reqwest::RequestBuilder,
        body: Value,
    ) -> (u16, Value) {
        let res = req.json(&body).send().await.expect("request");
        let status = res.status().as_u16();
        let schema_says = fits(doc, schema, &body);
        assert_eq!(
            schema_says,
            status != 422,
            "{body}: the schema says {schema_says}, the server answered {status}"
        );
        (status, res.json().await.expect("a JSON answer"))
    }

    /// Bodies the document and the server must judge alike: the bounds of
    /// issue 16 (an empty username, capacity 0, an amount of 2^63, a
    /// float reservation id) and the values on either side of each.
    async fn the_request_bounds_are_the_servers(backend: Backend) {
        let app = spawn_app(backend).await;
        let doc: Value = app.get_json("/openapi.json").await;
        let show = app.create_show_with_seats(1, 600, 4, 10).await;
        let fan = app.sign_in("bounds").await;
        let spot = app.join(show, &fan).await;
        let access = spot.access().to_owned();
        let post = |path: &str| app.client.post(format!("{}{path}", app.base));
        let mut checked = 0;

        let sign_in = body_schema(&doc, "post", "/v1/sessions");
        let long = ["a".repeat(32), "a".repeat(33)];
        for name in ["", " ", "a", " alice ", &long[0], &long[1], "a b", "é"] {
            let body = json!({ "username": name });
            agree(&doc, &sign_in, post("/v1/sessions"), body).await;
            checked += 1;
        }

        let create = body_schema(&doc, "post", "/v1/admin/shows");
        let section = |price| json!([{"name": "A", "rows": 1, "seats_per_row": 1, "price": price}]);
        for (field, value) in [
            ("capacity", json!(0)),
            ("capacity", json!(1)),
            ("capacity", json!(1_000_000)),
            ("capacity", json!(1_000_001)),
            ("capacity", json!(2.0)),
            ("capacity", json!(2.5)),
            ("session_ttl_seconds", json!(86_400)),
            ("session_ttl_seconds", json!(86_401)),
            ("abandon_grace_seconds", json!(null)),
            ("abandon_grace_seconds", json!(0)),
            ("challenge_cost", json!(10_000_001)),
            ("title", json!("")),
            ("title", json!("  Aurora  ")),
            ("title", json!("x".repeat(201))),
            ("seats", json!([])),
            ("seats", section(0)),
            ("seats", section(1)),
        ] {
            let mut body = json!({"title": "Bounds", "capacity": 1, "session_ttl_seconds": 60});
            body[field] = value;
            let req = post("/v1/admin/shows").bearer_auth(ADMIN_KEY);
            agree(&doc, &create, req, body).await;
            checked += 1;
        }

        let charge = body_schema(&doc, "post", "/v1/points/charge");
        let amounts = [0, 1, 1_000_000, 1_000_001, 9_223_372_036_854_775_808u64];
        let amounts = amounts.map(|n| json!(n)).into_iter();
        for amount in amounts.chain([json!(-1), json!(5.0), json!(5.5)]) {
            let req = post("/v1/points/charge").bearer_auth(&fan.token);
            agree(&doc, &charge, req, json!({ "amount": amount })).await;
            checked += 1;
        }

        // A seat id and a reservation id written as numbers with a fraction.
        let (_, seats) = app.seats(show).await;
        let seat = seats[0]["seat_id"].as_u64().expect("seat id");
        let hold = body_schema(&doc, "post", "/v1/shows/{show_id}/reservations");
        let req = post(&format!("/v1/shows/{show}/reservations"))
            .bearer_auth(&fan.token)
            .header("x-access-token", &access);
        let body = json!({ "seat_id": seat as f64 });
        let (status, held) = agree(&doc, &hold, req, body).await;
        assert_eq!(status, 201, "the seat is held: {held}");
        let reservation = held["reservation_id"].as_u64().expect("reservation id") as f64;
        let pay = body_schema(&doc, "post", "/v1/payments");
        for (i, id) in [reservation + 0.5, reservation].into_iter().enumerate() {
            let req = post("/v1/payments")
                .bearer_auth(&fan.token)
                .header("x-access-token", &access)
                .header("idempotency-key", format!("k{i}"));
            let (status, _) = agree(&doc, &pay, req, json!({ "reservation_id": id })).await;
            checked += 1;
            if id == reservation {
                assert_eq!(status, 201, "{id} is paid");
            }
        }
        assert_eq!(checked, 8 + 17 + 8 + 2);
    }

    /// A push connection, either transport.
    trait Pushed {
        async fn frame(&mut self) -> Value;
    }

    impl Pushed for WsFan {
        async fn frame(&mut self) -> Value {
            self.json().await
        }
    }

    impl Pushed for SseFan {
        async fn frame(&mut self) -> Value {
            self.json().await
        }
    }

    /// Reads up to the first frame of `kind`: other frames may come between
    /// (a rank may move), and each one read is kept to be checked.
    async fn until(fan: &mut impl Pushed, kind: &str, frames: &mut Vec<Value>) {
        loop {
            let frame = fan.frame().await;
            let done = frame["type"] == kind;
            frames.push(frame);
            if done {
                return;
            }
        }
    }

    /// Every frame pushed in a sale, on both transports, is a message of
    /// `/asyncapi.json` (by its `type`, fitting the message's payload
    /// schema), and what a client may send is too.
    async fn the_pushed_frames_are_the_documented_messages(backend: Backend) {
        let app = spawn_app(backend).await;
        let doc: Value = app.get_json("/asyncapi.json").await;
        assert_eq!(doc["asyncapi"], "3.0.0");
        let show = app.create_show_with_seats(1, 600, 2, 10).await;
        let fans = app.join_many(show, "pushed", 2).await;
        let (first, second) = (&fans[0], &fans[1]);
        let mut active = app.ws(show, first.1.ticket()).await;
        let mut waiting = app.ws(show, second.1.ticket()).await;
        let mut events = app.sse(show, second.1.ticket()).await;
        let mut frames = Vec::new();

        until(&mut active, "active", &mut frames).await;
        until(&mut waiting, "rank", &mut frames).await;
        until(&mut events, "rank", &mut frames).await;
        let ping = json!({"type": "ping"});
        active.send_text(ping.to_string()).await;
        until(&mut active, "pong", &mut frames).await;
        let (_, seats) = app.seats(show).await;
        let seat = seats[0]["seat_id"].as_u64().expect("seat id");
        let (status, _) = app.reserve(show, &first.0, first.1.access(), seat).await;
        assert_eq!(status, 201);
        until(&mut active, "seats", &mut frames).await;
        let pause = format!("/v1/admin/shows/{show}/pause");
        let (status, _) = app.admin(reqwest::Method::POST, &pause, None).await;
        assert_eq!(status, 200);
        until(&mut waiting, "paused", &mut frames).await;
        until(&mut events, "paused", &mut frames).await;
        assert_eq!(app.leave(show, first.1.ticket()).await, 204);
        until(&mut active, "closed", &mut frames).await;

        let messages = &doc["components"]["messages"];
        for frame in &frames {
            let message = &messages[frame["type"].as_str().expect("a type")];
            assert!(
                fits(&doc, &message["payload"], frame),
                "{frame} is not {message}"
            );
        }
        let sent = &doc["channels"]["queueWebSocket"]["messages"]["ping"];
        assert!(
            !sent.is_null(),
            "the client's ping is on the WebSocket channel"
        );
        assert!(fits(&doc, &messages["ping"]["payload"], &ping));
        // A message of another type fits none of the pushed payloads.
        let stranger = json!({"type": "rank", "rank": "first", "ahead": 0});
        assert!(!fits(&doc, &messages["rank"]["payload"], &stranger));
    }

    crate::for_each_backend!(
        the_request_bounds_are_the_servers,
        the_pushed_frames_are_the_documented_messages
    );
}
