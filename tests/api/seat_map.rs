//! The seat map at arena size: the layout (cached by its `ETag`), the
//! versioned availability, and the `seats` deltas an admitted fan is pushed.

use base64::Engine;
use serde_json::{json, Value};

use crate::for_each_backend;
use crate::helpers::*;

for_each_backend!(
    the_layout_is_fixed_and_revalidated_by_its_etag,
    availability_follows_every_hold_release_and_sale,
    an_admitted_fan_is_pushed_the_seats_another_fan_holds,
    unknown_or_malformed_shows_are_refused,
    json_is_compressed_when_the_client_accepts_it,
);

/// A show with two sections: "Floor" (2 rows × 3 at 50) and "Balcony"
/// (1 row × 5 at 20).
async fn two_sections(node: &Node, capacity: u64) -> u64 {
    node.create_show_from(
        json!({"title": "Arena", "capacity": capacity, "session_ttl_seconds": 600,
        "seats": [{"name": "Floor", "rows": 2, "seats_per_row": 3, "price": 50},
                  {"name": "Balcony", "rows": 1, "seats_per_row": 5, "price": 20}]}),
    )
    .await
}

impl Node {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    async fn availability(&self, show: u64) -> Value {
        let res = self.get(&format!("/v1/shows/{show}/availability")).await;
        assert_eq!(res.status(), 200);
        res.json().await.expect("json")
    }

    async fn layout(&self, show: u64) -> Value {
        let res = self.get(&format!("/v1/shows/{show}/layout")).await;
        assert_eq!(res.status(), 200);
        res.json().await.expect("json")
    }
}

/// Every seat of the layout, in bitmap order: `(section, seat_id)`.
fn seat_ids(layout: &Value) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (i, section) in layout["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .enumerate()
    {
        for row in section["rows"].as_array().expect("rows") {
            for seat in row["seats"].as_array().expect("seats") {
                out.push((i, seat["seat_id"].as_u64().expect("seat_id")));
            }
        }
    }
    out
}

/// Each seat's status as the availability's bitmaps give it, by seat id.
fn statuses(layout: &Value, availability: &Value) -> Vec<(u64, &'static str)> {
    let sections = availability["sections"].as_array().expect("sections");
    let bitmaps: Vec<Vec<u8>> = sections
        .iter()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s["bitmap"].as_str().expect("bitmap"))
                .expect("base64")
        })
        .collect();
    let mut position = vec![0usize; sections.len()];
    seat_ids(layout)
        .into_iter()
        .map(|(section, id)| {
            let pos = position[section];
            position[section] += 1;
            let code = (bitmaps[section][pos / 4] >> (6 - 2 * (pos % 4))) & 0b11;
            let status = match code {
                0 => "available",
                1 => "held",
                2 => "sold",
                other => panic!("status code {other}"),
            };
            (id, status)
        })
        .collect()
}

fn version(availability: &Value) -> u64 {
    availability["version"].as_u64().expect("version")
}

async fn the_layout_is_fixed_and_revalidated_by_its_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = two_sections(&app, 1).await;
    let res = app.get(&format!("/v1/shows/{show}/layout")).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    let caching = res.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(caching.contains("max-age=86400"), "{caching}");
    let layout: Value = res.json().await.expect("json");
    assert_eq!(layout["show_id"], show);
    let floor = &layout["sections"][0];
    assert_eq!(
        (&floor["name"], &floor["price"]),
        (&json!("Floor"), &json!(50))
    );
    assert_eq!(floor["rows"].as_array().expect("rows").len(), 2);
    assert_eq!(floor["rows"][1]["row"], "R2");
    assert_eq!(floor["rows"][1]["seats"][0]["label"], "Floor R2-1");
    assert_eq!(
        layout["sections"][1]["rows"][0]["seats"]
            .as_array()
            .expect("seats")
            .len(),
        5
    );
    // The same order as the seat list.
    let (_, list) = app.seats(show).await;
    let listed: Vec<u64> = list
        .iter()
        .map(|s| s["seat_id"].as_u64().expect("id"))
        .collect();
    let laid_out: Vec<u64> = seat_ids(&layout).into_iter().map(|(_, id)| id).collect();
    assert_eq!(listed, laid_out);

    // A client that has it gets 304, also while seats change.
    let fan = app.sign_in("etag").await;
    let spot = app.join(show, &fan).await;
    assert_eq!(
        app.reserve(show, &fan, spot.access(), listed[0]).await.0,
        201
    );
    let again = app
        .client
        .get(format!("{}/v1/shows/{show}/layout", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());
    // Another validator gets the document.
    let other = app
        .client
        .get(format!("{}/v1/shows/{show}/layout", app.base))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 200);
}

async fn availability_follows_every_hold_release_and_sale(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = two_sections(&app, 1).await;
    let layout = app.layout(show).await;
    let before = app.availability(show).await;
    assert_eq!(before["show_id"], show);
    let sections = before["sections"].as_array().expect("sections");
    assert_eq!(
        sections
            .iter()
            .map(|s| (
                s["name"].clone(),
                s["seats"].clone(),
                s["available"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!("Floor"), json!(6), json!(6)),
            (json!("Balcony"), json!(5), json!(5))
        ]
    );
    assert!(statuses(&layout, &before)
        .iter()
        .all(|(_, s)| *s == "available"));
    let balcony = seat_ids(&layout)
        .into_iter()
        .find(|(section, _)| *section == 1)
        .expect("a balcony seat")
        .1;

    let fan = app.sign_in("buyer").await;
    let spot = app.join(show, &fan).await;
    assert_eq!(spot.state(), "active");
    let (status, hold) = app.reserve(show, &fan, spot.access(), balcony).await;
    assert_eq!(status, 201, "{hold}");
    // At once, on the next read: the seat, and only it, is held.
    let held = app.availability(show).await;
    assert!(version(&held) > version(&before));
    assert_eq!(held["sections"][1]["available"], 4);
    assert_eq!(
        held["sections"][0]["bitmap"],
        before["sections"][0]["bitmap"]
    );
    let now = statuses(&layout, &held);
    assert!(
        now.iter()
            .all(|&(id, s)| s == if id == balcony { "held" } else { "available" }),
        "{now:?}"
    );
    let listed = app.seats(show).await.1;
    assert!(listed
        .iter()
        .any(|s| s["seat_id"] == balcony && s["status"] == "held"));

    // Released: available again, at a later version.
    let reservation = hold["reservation_id"].as_u64().expect("id");
    assert_eq!(app.release(&fan, reservation).await, 204);
    let released = app.availability(show).await;
    assert!(version(&released) > version(&held));
    assert!(statuses(&layout, &released)
        .iter()
        .all(|(_, s)| *s == "available"));

    // Held again and paid: sold.
    let (status, hold) = app.reserve(show, &fan, spot.access(), balcony).await;
    assert_eq!(status, 201, "{hold}");
    app.charge(&fan, 20).await;
    let (status, body) = app
        .pay(
            &fan,
            spot.access(),
            hold["reservation_id"].as_u64().expect("id"),
            "k1",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let sold = app.availability(show).await;
    assert!(version(&sold) > version(&released));
    assert!(statuses(&layout, &sold).contains(&(balcony, "sold")));
    assert!(app
        .seats(show)
        .await
        .1
        .iter()
        .any(|s| s["seat_id"] == balcony && s["status"] == "sold"));
}

/// Reads frames until a `seats` message.
async fn next_seats(ws: &mut WsFan) -> Value {
    loop {
        let msg = ws.json().await;
        if msg["type"] == "seats" {
            return msg;
        }
        assert!(
            ["expiring", "rank"].contains(&msg["type"].as_str().unwrap_or("")),
            "unexpected while waiting for seats: {msg}"
        );
    }
}

async fn an_admitted_fan_is_pushed_the_seats_another_fan_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = two_sections(&app, 2).await;
    let layout = app.layout(show).await;
    let seats: Vec<u64> = seat_ids(&layout).into_iter().map(|(_, id)| id).collect();
    let fans = app.join_many(show, "pushed", 2).await;
    let (_, watcher) = &fans[0];
    let (holder, holder_spot) = &fans[1];
    let mut ws = app.ws(show, watcher.ticket()).await;
    assert_eq!(ws.json().await["type"], "active");
    let read = version(&app.availability(show).await);

    let (status, body) = app
        .reserve(show, holder, holder_spot.access(), seats[7])
        .await;
    assert_eq!(status, 201, "{body}");
    let delta = next_seats(&mut ws).await;
    assert_eq!(
        delta["changes"],
        json!([{"seat_id": seats[7], "status": "held"}])
    );
    // The version after the one read, and the one availability now has.
    assert_eq!(version(&delta), read + 1);
    assert_eq!(version(&app.availability(show).await), version(&delta));
}

async fn unknown_or_malformed_shows_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["layout", "availability"] {
        let res = app.get(&format!("/v1/shows/999999/{path}")).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "show_not_found");
        let res = app.get(&format!("/v1/shows/abc/{path}")).await;
        assert_eq!(res.status(), 400, "{path}");
    }
    // A show without seats has an empty layout and nothing available.
    let show = app.create_show(1, 60, 60).await;
    assert_eq!(app.layout(show).await["sections"], json!([]));
    assert_eq!(app.availability(show).await["sections"], json!([]));
}

async fn json_is_compressed_when_the_client_accepts_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let show = two_sections(&app, 1).await;
    for path in ["layout", "availability", "seats"] {
        let res = app
            .client
            .get(format!("{}/v1/shows/{show}/{path}", app.base))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-encoding"], "gzip", "{path}");
        let plain = app.get(&format!("/v1/shows/{show}/{path}")).await;
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
    }
}

/// Two nodes: a fan connected to node A is pushed a hold made on node B,
/// and node A's availability shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_one_node_reaches_the_fans_and_the_availability_of_the_other() {
    let backends = RealBackends::create().await;
    let (a, b) = Process::pair(&backends.env()).await;
    let show = two_sections(&a, 2).await;
    let layout = a.layout(show).await;
    let seats: Vec<u64> = seat_ids(&layout).into_iter().map(|(_, id)| id).collect();
    let read = version(&a.availability(show).await);

    let watcher = a.join(show, &a.sign_in("watcher").await).await;
    assert_eq!(watcher.state(), "active");
    let holder_fan = b.sign_in("holder").await;
    let holder = b.join(show, &holder_fan).await;
    assert_eq!(holder.state(), "active");
    let mut ws = a.ws(show, watcher.ticket()).await;
    assert_eq!(ws.json().await["type"], "active");

    let (status, body) = b
        .reserve(show, &holder_fan, holder.access(), seats[2])
        .await;
    assert_eq!(status, 201, "{body}");
    let delta = next_seats(&mut ws).await;
    assert_eq!(
        delta["changes"],
        json!([{"seat_id": seats[2], "status": "held"}])
    );
    assert_eq!(version(&delta), read + 1);
    eventually("node A's availability shows the hold", || async {
        let now = a.availability(show).await;
        version(&now) == read + 1 && statuses(&layout, &now).contains(&(seats[2], "held"))
    })
    .await;

    a.stop().await;
    b.stop().await;
}
