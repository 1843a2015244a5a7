//! The fans' side of the public API: HTTP calls and WebSocket connections.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::Buckets;

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    admin_key: String,
}

/// A fan who has signed in and joined a queue.
#[derive(Debug, Clone)]
pub struct Fan {
    pub token: String,
    pub ticket: String,
    pub ws_path: String,
    /// Rank at join, when waiting.
    pub rank: Option<u64>,
    /// The access token, when the join admitted the fan at once.
    pub access: Option<String>,
}

/// The wire protocol a crowd speaks: anteroom's, or Socket.IO 4 over a
/// plain WebSocket (the peer of `anteroom-bench peer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Anteroom,
    SocketIo,
}

/// What one pushed frame was, read from its `type` without parsing the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Rank,
    Active,
    Other,
}

impl Api {
    pub fn new(base: &str, admin_key: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS builds");
        Self {
            http,
            base: base.to_owned(),
            admin_key: admin_key.to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Creates a show of `seats` seats (one row) and returns its id.
    pub async fn create_show(&self, capacity: u64, seats: u32, price: u64) -> anyhow::Result<u64> {
        let body = json!({
            "title": "Benchmark", "capacity": capacity, "session_ttl_seconds": 3600,
            "seats": [{"name": "Floor", "rows": 1, "seats_per_row": seats, "price": price}],
        });
        let body = self.post_show(&body, "create show").await?;
        body["id"].as_u64().context("show id")
    }

    /// `POST /v1/admin/shows` with `body`: the created show.
    async fn post_show(&self, body: &Value, what: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}/v1/admin/shows", self.base))
            .bearer_auth(&self.admin_key)
            .json(body)
            .send()
            .await?;
        expect(res, 201, what).await
    }

    /// Creates a show whose pre-queue is open now and whose sale starts in
    /// a day (until [`Api::set_start`] moves it), with `rate` admissions a
    /// minute; returns its id.
    pub async fn create_sale(&self, capacity: u64, rate: u64) -> anyhow::Result<u64> {
        let now = chrono::Utc::now();
        let body = json!({
            "title": "Benchmark sale", "capacity": capacity, "session_ttl_seconds": 3600,
            "prequeue_opens_at": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "starts_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "admission_rate_per_minute": rate,
        });
        let body = self.post_show(&body, "create sale").await?;
        if body["state"] != "prequeue" {
            bail!("a new sale's state is {}, not prequeue", body["state"]);
        }
        body["id"].as_u64().context("show id")
    }

    /// Moves a show's start (`PATCH`) and returns it as stored.
    pub async fn set_start(
        &self,
        show: u64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let res = self
            .http
            .patch(format!("{}/v1/admin/shows/{show}", self.base))
            .bearer_auth(&self.admin_key)
            .json(&json!({ "starts_at": at.to_rfc3339() }))
            .send()
            .await?;
        let body = expect(res, 200, "move the start").await?;
        let stored = body["starts_at"].as_str().context("starts_at")?;
        Ok(chrono::DateTime::parse_from_rfc3339(stored)?.with_timezone(&chrono::Utc))
    }

    pub async fn seat_ids(&self, show: u64) -> anyhow::Result<Vec<u64>> {
        let res = self
            .http
            .get(format!("{}/v1/shows/{show}/seats", self.base))
            .send()
            .await?;
        let body = expect(res, 200, "seat map").await?;
        body.as_array()
            .context("seat list")?
            .iter()
            .map(|s| s["seat_id"].as_u64().context("seat id"))
            .collect()
    }

    pub async fn sign_in(&self, username: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({ "username": username }))
            .send()
            .await?;
        let body = expect(res, 201, "sign in").await?;
        Ok(body["token"].as_str().context("token")?.to_owned())
    }

    pub async fn join(&self, show: u64, token: &str) -> anyhow::Result<Fan> {
        let res = self
            .http
            .post(format!("{}/v1/shows/{show}/queue", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = res.status().as_u16();
        if status != 201 && status != 200 {
            bail!("join: {status} {}", res.text().await.unwrap_or_default());
        }
        let body: Value = res.json().await?;
        Ok(Fan {
            token: token.to_owned(),
            ticket: body["ticket"].as_str().context("ticket")?.to_owned(),
            ws_path: body["ws_url"].as_str().context("ws_url")?.to_owned(),
            rank: body["rank"].as_u64(),
            access: body["access_token"].as_str().map(str::to_owned),
        })
    }

    /// Signs a new fan in and joins them to `show`.
    pub async fn new_fan(&self, show: u64, username: &str) -> anyhow::Result<Fan> {
        let token = self.sign_in(username).await?;
        self.join(show, &token).await
    }

    /// The access token of a fan whose join admitted them: from the join
    /// answer, or from the status once the gateway's view has caught up with
    /// a concurrent join's admission.
    pub async fn access(&self, show: u64, fan: &Fan) -> anyhow::Result<String> {
        if let Some(access) = &fan.access {
            return Ok(access.clone());
        }
        for _ in 0..250 {
            let res = self
                .http
                .get(format!("{}/v1/shows/{show}/queue/status", self.base))
                .header("x-queue-ticket", &fan.ticket)
                .send()
                .await?;
            let body = expect(res, 200, "status").await?;
            if let Some(access) = body["access_token"].as_str() {
                return Ok(access.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("a fan within capacity was not admitted in 5 s")
    }

    /// The value of one series in the gateway's /metrics (0 when absent).
    async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0))
    }

    /// A histogram's cumulative buckets for the series whose labels are
    /// `labels` and a bound (e.g. `type="payment.completed"`).
    pub async fn histogram(&self, name: &str, labels: &str) -> anyhow::Result<Buckets> {
        let text = self.metrics_text().await?;
        let prefix = format!("{name}_bucket{{{labels},le=\"");
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| {
                let (le, value) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, value.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Buckets(buckets))
    }

    /// The sum of every series of a counter (all labels) whose labels
    /// include `label` (e.g. `show="7"`).
    pub async fn counter_sum(&self, name: &str, label: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (labels, value) = l.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
                labels.split(',').any(|p| p == label).then_some(value)
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum())
    }

    pub async fn leave(&self, show: u64, fan: &Fan) -> anyhow::Result<()> {
        let res = self
            .http
            .delete(format!("{}/v1/shows/{show}/queue", self.base))
            .header("x-queue-ticket", &fan.ticket)
            .send()
            .await?;
        expect(res, 204, "leave").await.map(drop)
    }

    pub async fn charge(&self, token: &str, amount: u64) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/v1/points/charge", self.base))
            .bearer_auth(token)
            .json(&json!({ "amount": amount }))
            .send()
            .await?;
        expect(res, 200, "charge").await.map(drop)
    }

    /// Tries to hold a seat: the status, and the reservation id on 201.
    pub async fn hold(
        &self,
        show: u64,
        token: &str,
        access: &str,
        seat: u64,
    ) -> anyhow::Result<(u16, Option<u64>)> {
        let res = self
            .http
            .post(format!("{}/v1/shows/{show}/reservations", self.base))
            .bearer_auth(token)
            .header("x-access-token", access)
            .json(&json!({ "seat_id": seat }))
            .send()
            .await?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        Ok((status, body["reservation_id"].as_u64()))
    }

    pub async fn release(&self, token: &str, reservation: u64) -> anyhow::Result<()> {
        let res = self
            .http
            .delete(format!("{}/v1/reservations/{reservation}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        expect(res, 204, "release").await.map(drop)
    }

    pub async fn pay(
        &self,
        token: &str,
        access: &str,
        reservation: u64,
        key: &str,
    ) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(token)
            .header("x-access-token", access)
            .header("idempotency-key", key)
            .json(&json!({ "reservation_id": reservation }))
            .send()
            .await?;
        expect(res, 201, "pay").await.map(drop)
    }
}

/// The answer's JSON body (`null` when empty) if it has `status`.
async fn expect(res: reqwest::Response, status: u16, what: &str) -> anyhow::Result<Value> {
    if res.status().as_u16() != status {
        bail!(
            "{what}: {} {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    let body = res.bytes().await?;
    if body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&body)?)
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a fan's WebSocket, from `source` when given (each 127.0.0.x has its
/// own ~28,000 ephemeral ports).
pub async fn connect(base: &str, fan: &Fan, source: Option<IpAddr>) -> anyhow::Result<Socket> {
    open(base, &fan.ws_path, source).await
}

/// Opens a Socket.IO 4 connection over a plain WebSocket (Engine.IO 4, no
/// polling first): reads the Engine.IO open packet (`0{...}`), connects to
/// the main namespace (`40`) and waits for its acknowledgement (`40{...}`).
pub async fn connect_socket_io(base: &str, source: Option<IpAddr>) -> anyhow::Result<Socket> {
    let mut ws = open(base, "/socket.io/?EIO=4&transport=websocket", source).await?;
    let mut opened = false;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        if !opened {
            if !text.starts_with("0{") {
                bail!("expected the Engine.IO open packet, got {text:?}");
            }
            opened = true;
            ws.send(Message::text("40")).await?;
        } else if text.starts_with("40") {
            return Ok(ws);
        } else if text.starts_with("44") {
            bail!("the Socket.IO connection was refused: {text}");
        }
    }
    bail!("the socket closed before the Socket.IO connection was acknowledged")
}

async fn open(base: &str, path: &str, source: Option<IpAddr>) -> anyhow::Result<Socket> {
    let authority = base
        .strip_prefix("http://")
        .context("the gateway URL is http://")?;
    let addr: SocketAddr = tokio::net::lookup_host(authority)
        .await?
        .next()
        .context("gateway address")?;
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{authority}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Reads a socket until it closes, calling `on_frame` with each pushed
/// frame's kind and text.
pub async fn read_frames(mut ws: Socket, mut on_frame: impl FnMut(Frame, &str)) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        // The server writes the `type` tag first.
        let frame = if text.starts_with(r#"{"type":"rank""#) {
            Frame::Rank
        } else if text.starts_with(r#"{"type":"active""#) {
            Frame::Active
        } else {
            Frame::Other
        };
        on_frame(frame, &text);
    }
}

/// [`read_frames`] for a Socket.IO connection: events are `42["name",
/// {...}]`; the server's Engine.IO ping (`2`) is answered (`3`), as every
/// Socket.IO client does, and not counted.
pub async fn read_socket_io_frames(mut ws: Socket, mut on_frame: impl FnMut(Frame, &str)) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        if text.as_str() == "2" {
            if ws.send(Message::text("3")).await.is_err() {
                return;
            }
            continue;
        }
        let frame = if text.starts_with(r#"42["rank""#) {
            Frame::Rank
        } else if text.starts_with(r#"42["active""#) {
            Frame::Active
        } else {
            Frame::Other
        };
        on_frame(frame, &text);
    }
}

/// The rank of a `rank` frame.
pub fn rank(frame: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(frame).ok()?;
    v["rank"].as_u64()
}

/// The access token of an `active` frame.
pub fn access_token(active: &str) -> Option<String> {
    let v: Value = serde_json::from_str(active).ok()?;
    Some(v["access_token"].as_str()?.to_owned())
}
