//! `spawn_app` and fan-side clients for the integration tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anteroom::config::{Secret, Settings};
use anteroom::domain::SessionId;
use anteroom::startup::Application;
use anteroom::tokens::Keyring;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "test-admin-key";
pub const SECRET: &str = "test-ticket-secret";
/// How long a test waits for something that should happen at once. Covers
/// a Kafka consumer group's first join (about 3 s), which delays the first
/// event a real-backend gateway consumes.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Which backends an application under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Everything in-process (the zero-configuration default).
    Embedded,
    /// Redis + MySQL + Kafka (rdkafka's MockCluster in this process).
    Real,
}

/// Generates, for each behavioural test `async fn name(backend: Backend)`,
/// one `#[tokio::test]` per backend set: `embedded::name` and `real::name`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Real).await
                }
            )*
        }
    };
}

/// A gateway reached over HTTP: an in-process [`TestApp`] or a separate
/// process (multi-node tests). All the fan-side calls live here.
pub struct Node {
    pub base: String,
    pub ws_base: String,
    pub client: reqwest::Client,
}

impl Node {
    pub fn at(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    /// `GET /readyz`'s status; `None` if the node did not answer.
    pub async fn readyz(&self) -> Option<u16> {
        self.client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }
}

pub struct TestApp {
    pub node: Node,
    pub app: anteroom::http::AppState,
    shutdown: CancellationToken,
    _backends: Option<RealBackends>,
}

impl std::ops::Deref for TestApp {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `tweak`.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let backends = match backend {
        Backend::Embedded => None,
        Backend::Real => Some(RealBackends::create().await),
    };
    spawn(backends, tweak).await
}

/// An application on backends the test holds (to reach Kafka or MySQL
/// itself, say), with settings adjusted by `tweak`.
pub async fn spawn_app_on(backends: &RealBackends, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(None, |s| {
        backends.configure(s);
        tweak(s);
    })
    .await
}

async fn spawn(backends: Option<RealBackends>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_key: Some(Secret::new(ADMIN_KEY.into())),
        ticket_secret: Some(Secret::new(SECRET.into())),
        seed_demo: Some(false),
        push: anteroom::config::PushSettings {
            rank_interval_ms: 10,
            ..Default::default()
        },
        shutdown_drain_secs: 0,
        limits: unlimited(),
        ..Settings::default()
    };
    if let Some(b) = &backends {
        b.configure(&mut settings);
    }
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        node: Node::at(addr),
        app: state,
        shutdown,
        _backends: backends,
    }
}

/// Rate limits no test reaches by accident: every fan of a test comes from
/// 127.0.0.1 and polls far faster than a person. The tests of the limits
/// (abuse.rs) set the ones they test.
pub fn unlimited() -> anteroom::config::LimitSettings {
    anteroom::config::LimitSettings {
        ip_per_second: 1_000_000,
        ip_burst: 1_000_000,
        identity_per_second: 1_000_000,
        identity_burst: 1_000_000,
        ..Default::default()
    }
}

/// [`unlimited`] as environment variables, for a gateway process.
pub const UNLIMITED_ENV: [(&str, &str); 4] = [
    ("ANTEROOM_LIMITS__IP_PER_SECOND", "1000000"),
    ("ANTEROOM_LIMITS__IP_BURST", "1000000"),
    ("ANTEROOM_LIMITS__IDENTITY_PER_SECOND", "1000000"),
    ("ANTEROOM_LIMITS__IDENTITY_BURST", "1000000"),
];

/// Services for one application on the real backend set: its own MySQL
/// database, its own Redis key prefix, and its own Kafka mock cluster, so
/// tests running at once never see each other's queues.
pub struct RealBackends {
    pub redis_url: String,
    pub redis_prefix: String,
    pub database_url: String,
    pub kafka: Arc<MockKafka>,
}

/// Where the test services are; CI starts them (see .ci/run).
pub fn redis_url() -> String {
    std::env::var("ANTEROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A queue store of the test's own on the shared Redis under `prefix`,
/// with no gateway around it: its changes go to `sink`, its admission calls
/// run on the test's runtime.
pub async fn bare_redis_store(
    prefix: &str,
    sink: Arc<dyn anteroom::store::ChangeSink>,
) -> anteroom::store::RedisQueueStore {
    let breaker = anteroom::resilience::Breaker::new(
        anteroom::resilience::Backend::Redis,
        &anteroom::resilience::BreakerSettings::default(),
        None,
    );
    anteroom::store::RedisQueueStore::connect(
        &redis_url(),
        prefix,
        sink,
        breaker,
        &tokio::runtime::Handle::current(),
    )
    .await
    .expect("redis")
}

/// A MySQL URL (no database) whose user may create `anteroom%` databases.
pub fn mysql_server_url() -> String {
    std::env::var("ANTEROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://anteroom:anteroom@127.0.0.1:3306".into())
}

/// Creates a MySQL database of the test's own (`anteroom_t_<short>`) and
/// returns its URL.
pub async fn create_database(short: &str) -> String {
    let database = format!("anteroom_t_{short}");
    let server = mysql_server_url();
    let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("MySQL for the real-backend tests (see .ci/run)");
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")),
    )
    .await
    .expect("create test database");
    format!("{server}/{database}")
}

/// A short random id that names a test's own database, key prefix and
/// topics.
pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

impl RealBackends {
    pub async fn create() -> Self {
        let short = short_id();
        Self {
            redis_url: redis_url(),
            redis_prefix: format!("t{short}:"),
            database_url: create_database(&short).await,
            kafka: Arc::new(MockKafka::start(&format!("t{short}."))),
        }
    }

    /// The time to live of a key under this test's Redis prefix, in ms.
    pub async fn pttl(&self, key: &str) -> i64 {
        let redis = redis::Client::open(self.redis_url.as_str()).expect("redis url");
        let mut conn = redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        redis::cmd("PTTL")
            .arg(format!("{}{key}", self.redis_prefix))
            .query_async(&mut conn)
            .await
            .expect("PTTL")
    }

    pub fn configure(&self, settings: &mut Settings) {
        settings.redis.url = Some(Secret::new(self.redis_url.clone()));
        settings.redis.prefix = self.redis_prefix.clone();
        settings.database.url = Some(Secret::new(self.database_url.clone()));
        settings.kafka.brokers = Some(self.kafka.bootstrap.clone());
        settings.kafka.topic_prefix = self.kafka.topic_prefix.clone();
        // The mock broker has no admin API; its topics are made above.
        settings.kafka.create_topics = false;
        // The tests sign fans in by name, knowingly, on production backends.
        settings.auth.mode = Some(anteroom::auth::AuthMode::Demo);
    }
}

/// An rdkafka MockCluster (real Kafka protocol on 127.0.0.1) with the
/// gateway's topics created. The cluster is not `Send`, so it lives on a
/// thread of its own — until the test process exits, deliberately: a
/// gateway's Kafka clients close after the test body (leaving the group,
/// flushing), and they must still find their broker then.
pub struct MockKafka {
    pub bootstrap: String,
    pub topic_prefix: String,
    control: std::sync::Mutex<std::sync::mpsc::Sender<BrokerChange>>,
}

/// What a test does to the mock broker.
enum BrokerChange {
    /// Down (`false`) or back up (`true`).
    Up(bool),
    /// Every request's round trip takes this long.
    RoundTrip(Duration),
}

/// Partitions of each of the mock's topics.
pub const MOCK_PARTITIONS: usize = 3;

impl MockKafka {
    pub fn start(topic_prefix: &str) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (control, commands) = std::sync::mpsc::channel::<BrokerChange>();
        let prefix = topic_prefix.to_owned();
        std::thread::spawn(move || {
            let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock Kafka cluster");
            for kind in anteroom::domain::EventKind::ALL {
                cluster
                    .create_topic(
                        &format!("{prefix}{}", kind.topic()),
                        MOCK_PARTITIONS as i32,
                        1,
                    )
                    .expect("create topic");
            }
            ready_tx
                .send(cluster.bootstrap_servers())
                .expect("report ready");
            // Commands until the owner goes; then the cluster stays up for
            // clients still closing.
            for change in commands {
                let done = match change {
                    BrokerChange::Up(true) => cluster.broker_up(1),
                    BrokerChange::Up(false) => cluster.broker_down(1),
                    BrokerChange::RoundTrip(rtt) => cluster.broker_round_trip_time(1, rtt),
                };
                done.expect("broker state changes");
            }
            loop {
                std::thread::park();
            }
        });
        let bootstrap = ready_rx.recv().expect("mock cluster starts");
        Self {
            bootstrap,
            topic_prefix: topic_prefix.to_owned(),
            control: std::sync::Mutex::new(control),
        }
    }

    /// Takes the broker down (`false`) or brings it back (`true`).
    pub fn set_up(&self, up: bool) {
        self.change(BrokerChange::Up(up));
    }

    /// Makes every request to the broker take `rtt` (zero: as fast as it
    /// can), to widen what a test must see (a rebalance).
    pub fn set_round_trip(&self, rtt: Duration) {
        self.change(BrokerChange::RoundTrip(rtt));
    }

    fn change(&self, change: BrokerChange) {
        self.control
            .lock()
            .expect("control")
            .send(change)
            .expect("mock cluster thread");
    }
}

pub fn keyring() -> Keyring {
    Keyring::new(&Secret::new(SECRET.into()), &[])
}

/// An access token's (admission JWT's) claims, read without verifying:
/// the tests only look at what the gateway put there.
pub fn admission_claims(access_token: &str) -> Value {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1).expect("a JWT has a payload");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&json).expect("JSON claims")
}

/// The session an access token was issued for.
pub fn session_of(access_token: &str) -> SessionId {
    SessionId(
        admission_claims(access_token)["sid"]
            .as_u64()
            .expect("access tokens name their session"),
    )
}

#[derive(Debug, Clone)]
pub struct Fan {
    pub user_id: u64,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Spot {
    pub status: u16,
    pub body: Value,
}

impl Spot {
    /// The access token of an admitted fan.
    pub fn access(&self) -> &str {
        self.body["access_token"]
            .as_str()
            .expect("access token: the fan is active")
    }
    pub fn ticket(&self) -> &str {
        self.body["ticket"].as_str().expect("ticket")
    }
    pub fn state(&self) -> &str {
        self.body["state"].as_str().expect("state")
    }
    pub fn rank(&self) -> u64 {
        self.body["rank"].as_u64().expect("rank")
    }
}

impl Node {
    pub async fn create_show(&self, capacity: u64, ttl: u64, grace: u64) -> u64 {
        self.create_show_from(json!({"title": "Test show", "capacity": capacity,
                                     "session_ttl_seconds": ttl, "abandon_grace_seconds": grace}))
            .await
    }

    /// A show with one section of `seats` seats at `price` points.
    pub async fn create_show_with_seats(
        &self,
        capacity: u64,
        ttl: u64,
        seats: u32,
        price: u64,
    ) -> u64 {
        self.create_show_from(
            json!({"title": "Sale", "capacity": capacity, "session_ttl_seconds": ttl,
            "seats": [{"name": "Floor", "rows": 1, "seats_per_row": seats, "price": price}]}),
        )
        .await
    }

    /// An operator's call with the admin key: `(status, body)` (`null` for
    /// an empty body).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A show's state as `GET /v1/shows` lists it.
    pub async fn show_state(&self, show: u64) -> String {
        let shows: Vec<Value> = self.get_json("/v1/shows").await;
        shows
            .iter()
            .find(|s| s["id"] == show)
            .and_then(|s| s["state"].as_str())
            .expect("listed")
            .to_owned()
    }

    pub async fn create_show_from(&self, body: Value) -> u64 {
        let res = self
            .client
            .post(format!("{}/v1/admin/shows", self.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.expect("json")["id"]
            .as_u64()
            .expect("id")
    }

    /// The seat map and its `X-Cache` header.
    pub async fn seats(&self, show: u64) -> (String, Vec<Value>) {
        let res = self
            .client
            .get(format!("{}/v1/shows/{show}/seats", self.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        let cache = res.headers()["x-cache"].to_str().expect("ascii").to_owned();
        let seats: Value = res.json().await.expect("json");
        (cache, seats.as_array().expect("array").clone())
    }

    /// Holds a seat: `(status, body)`.
    /// `DELETE /v1/reservations/{id}` as `fan`: the status.
    pub async fn release(&self, fan: &Fan, reservation: u64) -> u16 {
        self.client
            .delete(format!("{}/v1/reservations/{reservation}", self.base))
            .bearer_auth(&fan.token)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    pub async fn reserve(&self, show: u64, fan: &Fan, access: &str, seat: u64) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}/v1/shows/{show}/reservations", self.base))
            .bearer_auth(&fan.token)
            .header("x-access-token", access)
            .json(&json!({ "seat_id": seat }))
            .send()
            .await
            .expect("request");
        (res.status().as_u16(), res.json().await.expect("json"))
    }

    /// Adds points; returns the new balance.
    pub async fn charge(&self, fan: &Fan, amount: u64) -> u64 {
        let req = self
            .client
            .post(format!("{}/v1/points/charge", self.base))
            .json(&json!({ "amount": amount }));
        self.balance_from(req, fan).await
    }

    pub async fn balance(&self, fan: &Fan) -> u64 {
        let req = self.client.get(format!("{}/v1/points", self.base));
        self.balance_from(req, fan).await
    }

    async fn balance_from(&self, req: reqwest::RequestBuilder, fan: &Fan) -> u64 {
        let res = req.bearer_auth(&fan.token).send().await.expect("request");
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.expect("json")["balance"]
            .as_u64()
            .expect("balance")
    }

    /// Pays for a reservation with an idempotency key: `(status, body)`.
    pub async fn pay(&self, fan: &Fan, access: &str, reservation: u64, key: &str) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(&fan.token)
            .header("x-access-token", access)
            .header("idempotency-key", key)
            .json(&json!({ "reservation_id": reservation }))
            .send()
            .await
            .expect("request");
        (res.status().as_u16(), res.json().await.expect("json"))
    }

    pub async fn sign_in(&self, name: &str) -> Fan {
        let res = self
            .client
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({ "username": name }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        Fan {
            user_id: body["user_id"].as_u64().expect("user_id"),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    pub async fn join(&self, show: u64, fan: &Fan) -> Spot {
        let res = self
            .client
            .post(format!("{}/v1/shows/{show}/queue", self.base))
            .bearer_auth(&fan.token)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        Spot {
            status,
            body: res.json().await.expect("json"),
        }
    }

    /// Signs in `n` fans named `{prefix}{i}` and joins them in order.
    pub async fn join_many(&self, show: u64, prefix: &str, n: usize) -> Vec<(Fan, Spot)> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let fan = self.sign_in(&format!("{prefix}{i}")).await;
            let spot = self.join(show, &fan).await;
            assert_eq!(spot.status, 201, "{:?}", spot.body);
            out.push((fan, spot));
        }
        out
    }

    pub async fn status(&self, show: u64, ticket: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}/v1/shows/{show}/queue/status", self.base))
            .header("x-queue-ticket", ticket)
            .send()
            .await
            .expect("request");
        (res.status().as_u16(), res.json().await.expect("json"))
    }

    pub async fn leave(&self, show: u64, ticket: &str) -> u16 {
        self.client
            .delete(format!("{}/v1/shows/{show}/queue", self.base))
            .header("x-queue-ticket", ticket)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// A public GET's JSON body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// The value of the sample written exactly as `series` (its name and
    /// labels, as the exporter writes them) on this node's `/metrics`.
    pub async fn sample(&self, series: &str) -> Option<f64> {
        let res = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?;
        let text = res.text().await.ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `(capacity, active, waiting)` from the public show list, or `None`
    /// while the gateway does not answer 200 within a second (a backend
    /// still recovering).
    pub async fn counts_now(&self, show: u64) -> Option<(u64, u64, u64)> {
        let res = self
            .client
            .get(format!("{}/v1/shows", self.base))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        if res.status() != 200 {
            return None;
        }
        let shows: Value = res.json().await.ok()?;
        let queue = &shows.as_array()?.iter().find(|s| s["id"] == show)?["queue"];
        Some((
            queue["capacity"].as_u64()?,
            queue["active"].as_u64()?,
            queue["waiting"].as_u64()?,
        ))
    }

    /// `(capacity, active, waiting)` from the public show list.
    pub async fn counts(&self, show: u64) -> (u64, u64, u64) {
        let shows: Value = self.get_json("/v1/shows").await;
        let s = shows
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["id"] == show)
            .expect("show listed");
        let q = &s["queue"];
        (
            q["capacity"].as_u64().expect("capacity"),
            q["active"].as_u64().expect("active"),
            q["waiting"].as_u64().expect("waiting"),
        )
    }

    pub async fn ws(&self, show: u64, ticket: &str) -> WsFan {
        let url = format!("{}/v1/shows/{show}/queue/ws?ticket={ticket}", self.ws_base);
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        WsFan { stream }
    }

    pub async fn sse(&self, show: u64, ticket: &str) -> SseFan {
        let res = self
            .client
            .get(format!(
                "{}/v1/shows/{show}/queue/sse?ticket={ticket}",
                self.base
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream"));
        SseFan {
            stream: Box::pin(res.bytes_stream()),
            buf: String::new(),
            last_id: None,
        }
    }
}

/// What a socket delivered next.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Json(Value),
    Closed(Option<u16>),
}

pub struct WsFan {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsFan {
    /// The next text message or close, skipping pings; panics after
    /// [`PATIENCE`].
    pub async fn next(&mut self) -> Frame {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("a frame within the patience");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(t.as_str()).expect("json frame"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Frame::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    eprintln!("ws error: {e:?}");
                    return Frame::Closed(None);
                }
                None => return Frame::Closed(None),
            }
        }
    }

    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until a rank message with this rank (ranks coalesce, so others
    /// may come first); panics on `active` or a close.
    pub async fn until_rank(&mut self, rank: u64) -> Value {
        loop {
            let msg = self.json().await;
            assert_eq!(msg["type"], "rank", "while waiting for rank {rank}: {msg}");
            if msg["rank"] == rank {
                assert_eq!(msg["ahead"], rank - 1);
                return msg;
            }
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, msg: Message) {
        self.stream.send(msg).await.expect("send");
    }

    /// Asserts nothing arrives for `d` (pings aside).
    pub async fn quiet_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

pub fn close_code(frame: &Frame) -> Option<u16> {
    match frame {
        Frame::Closed(code) => *code,
        Frame::Json(v) => panic!("expected a close, got {v}"),
    }
}

pub fn normal_close() -> u16 {
    u16::from(CloseCode::Normal)
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

pub struct SseFan {
    stream: ByteStream,
    buf: String,
    pub last_id: Option<u64>,
}

impl SseFan {
    /// The next event's JSON data (comments skipped); `None` when the stream
    /// ends.
    pub async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    } else if let Some(id) = line.strip_prefix("id:") {
                        let id: u64 = id.trim().parse().expect("numeric id");
                        if let Some(prev) = self.last_id {
                            assert!(id > prev, "event ids increase");
                        }
                        self.last_id = Some(id);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data).expect("json data"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("an event within the patience");
            match chunk {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    pub async fn json(&mut self) -> Value {
        self.next().await.expect("an event")
    }
}

/// Polls until `f` holds or the patience runs out.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A gateway running as its own process (the `anteroom` binary), for tests
/// with several nodes. Killed when dropped.
pub struct Process {
    pub node: Node,
    child: tokio::process::Child,
}

impl std::ops::Deref for Process {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Process {
    /// Starts `anteroom` on a free port with `env`, and waits until it
    /// listens (it logs its address).
    pub async fn start(env: &[(&str, String)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_anteroom"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ANTEROOM_LISTEN", "127.0.0.1:0")
            .env("ANTEROOM_LOG_FORMAT", "json")
            .env("ANTEROOM_SHUTDOWN_DRAIN_SECS", "0")
            .env("RUST_LOG", "info")
            .envs(UNLIMITED_ENV)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the anteroom binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("log line") {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["message"] == "anteroom listening" {
                    return v["addr"]
                        .as_str()
                        .expect("addr")
                        .parse()
                        .expect("socket address");
                }
            }
            panic!("anteroom exited before listening");
        })
        .await
        .expect("anteroom listens within the patience");
        // Keep draining the log so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            node: Node::at(addr),
            child,
        }
    }

    /// Two nodes on one set of backends (`env`), each with its own Kafka
    /// group membership.
    pub async fn pair(env: &[(&str, String)]) -> (Self, Self) {
        let mut env = env.to_vec();
        env.push(("ANTEROOM_KAFKA_INSTANCE_ID", "node-a".to_owned()));
        let a = Self::start(&env).await;
        env.pop();
        env.push(("ANTEROOM_KAFKA_INSTANCE_ID", "node-b".to_owned()));
        let b = Self::start(&env).await;
        (a, b)
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and waits.
    pub async fn stop(mut self) {
        self.terminate();
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }

    /// Sends SIGTERM (the orchestrator's "stop") without waiting.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    /// Hangs the process (SIGSTOP): its sockets stay open, nothing runs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a hung process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process runs");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the process with SIGKILL: it closes nothing and tells nobody.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the gateway");
    }

    /// Waits for the process to exit by itself, at most `patience`.
    pub async fn exit_status(mut self, patience: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(patience, self.child.wait())
            .await
            .expect("the process exits within the patience")
            .expect("exit status")
    }
}

impl RealBackends {
    /// The environment a gateway process needs to use these backends.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTEROOM_ADMIN_KEY", ADMIN_KEY.to_owned()),
            ("ANTEROOM_TICKET_SECRET", SECRET.to_owned()),
            ("ANTEROOM_REDIS_URL", self.redis_url.clone()),
            ("ANTEROOM_REDIS_PREFIX", self.redis_prefix.clone()),
            ("ANTEROOM_DATABASE_URL", self.database_url.clone()),
            ("ANTEROOM_KAFKA_BROKERS", self.kafka.bootstrap.clone()),
            (
                "ANTEROOM_KAFKA_TOPIC_PREFIX",
                self.kafka.topic_prefix.clone(),
            ),
            ("ANTEROOM_SEED_DEMO", "false".to_owned()),
            ("ANTEROOM_AUTH_MODE", "demo".to_owned()),
            ("ANTEROOM_RANK_INTERVAL_MS", "10".to_owned()),
        ]
    }
}

impl RealBackends {
    /// Like [`RealBackends::create`], with the queue on a Redis of the
    /// test's own (fault drills: never the shared one).
    pub async fn create_on(redis: &OwnRedis) -> Self {
        Self {
            redis_url: redis.url(),
            ..Self::create().await
        }
    }
}

/// A `redis-server` of the test's own on a spare loopback port, for fault
/// drills: it can be killed (losing its data: no persistence), restarted on
/// the same port, hung (SIGSTOP) and resumed, without disturbing the shared
/// Redis other tests use. Killed when dropped.
pub struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a spare port")
            .local_addr()
            .expect("local address")
            .port();
        let mut redis = Self { port, child: None };
        redis.launch().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (see .ci/run)");
        self.child = Some(child);
        let url = self.url();
        eventually("the test's redis-server answers", || {
            let url = url.clone();
            async move { redis_connection(&url).await.is_some() }
        })
        .await;
    }

    /// A fresh connection, or `None` while the server is down or hung.
    pub async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        redis_connection(&self.url()).await
    }

    /// Kills the server (SIGKILL): its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Hangs the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a hung server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Drops every key (the drill for "Redis lost its data").
    pub async fn flush_all(&self) {
        let mut conn = self.connection().await.expect("the test's redis answers");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("FLUSHALL on the test's own redis");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // SIGKILL ends a hung (stopped) server too.
        self.kill();
    }
}

/// A connection to the Redis at `url` that answered PING within 500 ms.
async fn redis_connection(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    let connect = client.get_multiplexed_async_connection();
    let mut conn = tokio::time::timeout(Duration::from_millis(500), connect)
        .await
        .ok()?
        .ok()?;
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    tokio::time::timeout(Duration::from_millis(500), ping)
        .await
        .ok()?
        .ok()?;
    Some(conn)
}

// ---------------------------------------------------------------------------
// A TCP proxy in front of MySQL/MariaDB or Redis: fault drills
// (tests/api/faults.rs) and counted round trips (sales.rs).
// ---------------------------------------------------------------------------

/// The protocol a [`TcpProxy`] forwards, whose commands it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    MySql,
    Redis,
}

/// Round trips of one request, on each backend: SQL and Redis commands
/// counted on the wire by proxies only the gateway under test uses
/// ([`spawn_app_behind_proxies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trips {
    pub sql: u64,
    /// Pool connections the request's SQL went over.
    pub sql_connections: usize,
    pub redis: u64,
}

impl Trips {
    /// From the proxies' per-connection counts before and after.
    pub fn between(sql: (&[u64], &[u64]), redis: (&[u64], &[u64])) -> Self {
        let deltas = |(before, after): (&[u64], &[u64])| -> Vec<u64> {
            after
                .iter()
                .enumerate()
                .map(|(i, n)| n - before.get(i).copied().unwrap_or(0))
                .filter(|&d| d > 0)
                .collect()
        };
        let (sql, redis) = (deltas(sql), deltas(redis));
        Self {
            sql: sql.iter().sum(),
            sql_connections: sql.len(),
            redis: redis.iter().sum(),
        }
    }

    pub fn total(&self) -> u64 {
        self.sql + self.redis
    }
}

/// A gateway on `backends` whose MySQL and Redis connections all pass
/// counting proxies (plain text on the wire, so they can read the
/// commands): the app, then the SQL and the Redis proxy.
pub async fn spawn_app_behind_proxies(
    backends: &RealBackends,
    tweak: impl FnOnce(&mut Settings),
) -> (TestApp, TcpProxy, TcpProxy) {
    let (sql, redis) = (TcpProxy::mysql().await, TcpProxy::redis().await);
    let app = spawn_app_on(backends, |s| {
        let database = format!("{}?ssl-mode=disabled", sql.url(&backends.database_url));
        s.database.url = Some(anteroom::config::Secret::new(database));
        s.redis.url = Some(anteroom::config::Secret::new(
            redis.url(&backends.redis_url),
        ));
        tweak(s);
    })
    .await;
    (app, sql, redis)
}

/// A TCP proxy on a spare loopback port in front of the test MySQL/MariaDB
/// or Redis, so a drill can hang or cut a backend for one gateway without
/// touching the shared server, and a test can count the commands one
/// gateway sends (each connection's own count; only this gateway's
/// connections pass here). A gateway gets [`TcpProxy::url`] as its URL;
/// the test itself keeps talking to the server directly. Closed (with
/// every connection through it) when dropped.
pub struct TcpProxy {
    port: u16,
    stalled: tokio::sync::watch::Sender<bool>,
    /// Cancelled by [`TcpProxy::cut`] (then replaced): closes the
    /// connections accepted under it.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    /// Cancelled on drop: the listener and every connection close.
    closed: CancellationToken,
    /// Commands each connection sent so far, in the order accepted.
    commands: Arc<std::sync::Mutex<Vec<Arc<AtomicU64>>>>,
}

impl TcpProxy {
    /// In front of the MySQL server of [`mysql_server_url`].
    pub async fn mysql() -> Self {
        Self::start(&mysql_server_url(), 3306, Protocol::MySql).await
    }

    /// In front of the Redis server of [`redis_url`].
    pub async fn redis() -> Self {
        Self::start(&redis_url(), 6379, Protocol::Redis).await
    }

    /// Listens on 127.0.0.1:0 and forwards each connection to the server
    /// of `server_url`.
    async fn start(server_url: &str, default_port: u16, protocol: Protocol) -> Self {
        let server = reqwest::Url::parse(server_url).expect("server URL");
        let upstream = format!(
            "{}:{}",
            server.host_str().expect("server host"),
            server.port().unwrap_or(default_port)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a spare port");
        let proxy = Self {
            port: listener.local_addr().expect("local address").port(),
            stalled: tokio::sync::watch::channel(false).0,
            cut: Arc::default(),
            closed: CancellationToken::new(),
            commands: Arc::default(),
        };
        let (stalled, cut, closed, commands) = (
            proxy.stalled.clone(),
            proxy.cut.clone(),
            proxy.closed.clone(),
            proxy.commands.clone(),
        );
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = closed.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let cut = cut.lock().expect("cut token").clone();
                let count = Arc::new(AtomicU64::new(0));
                commands.lock().expect("counts").push(count.clone());
                tokio::spawn(proxy_connection(
                    client,
                    upstream.clone(),
                    Commands::new(protocol, count),
                    stalled.subscribe(),
                    cut,
                    closed.clone(),
                ));
            }
        });
        proxy
    }

    /// `url` (a URL on the proxied server) with the proxy's address in
    /// place of the server's.
    pub fn url(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("server URL");
        url.set_host(Some("127.0.0.1")).expect("set host");
        url.set_port(Some(self.port)).expect("set port");
        url.to_string()
    }

    /// Commands each connection has sent so far, in the order the proxy
    /// accepted them.
    pub fn commands(&self) -> Vec<u64> {
        let counts = self.commands.lock().expect("counts");
        counts.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }

    /// Hangs the backend: no byte moves either way on open connections,
    /// and new connections are accepted but never reach the server; all of
    /// them stay open (a server that stopped answering). Bytes already on
    /// their way wait in the proxy and move on at [`TcpProxy::resume`], as
    /// a hung server would process its input on waking.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Ends a [`TcpProxy::stall`].
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Closes every connection through the proxy at once (a server that
    /// went away); new connections are accepted as usual.
    pub fn cut(&self) {
        let mut cut = self.cut.lock().expect("cut token");
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Counts the commands in a client's bytes as they pass, however the
/// stream is cut into reads. MySQL: every packet that opens a command
/// (sequence id 0; the handshake's packets have others), so a connection
/// must not use TLS. Redis: every command, except that a `MULTI … EXEC`
/// block counts once (it is one round trip); the commands of a plain
/// pipeline count one each, so the count bounds the round trips from above.
pub struct Commands {
    protocol: Protocol,
    count: Arc<AtomicU64>,
    /// Bytes of the client's stream not yet parsed.
    pending: Vec<u8>,
    /// Inside a Redis `MULTI` block.
    in_multi: bool,
}

impl Commands {
    fn new(protocol: Protocol, count: Arc<AtomicU64>) -> Self {
        Self {
            protocol,
            count,
            pending: Vec::new(),
            in_multi: false,
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let parsed = match self.protocol {
                Protocol::MySql => mysql_packet(&self.pending[at..]),
                Protocol::Redis => redis_command(&self.pending[at..]),
            };
            let Some((length, first)) = parsed else { break };
            at += length;
            let counted = match self.protocol {
                Protocol::MySql => first == b"\0",
                Protocol::Redis if first.eq_ignore_ascii_case(b"MULTI") => {
                    self.in_multi = true;
                    true
                }
                Protocol::Redis if self.in_multi => {
                    self.in_multi = !first.eq_ignore_ascii_case(b"EXEC")
                        && !first.eq_ignore_ascii_case(b"DISCARD");
                    false
                }
                Protocol::Redis => true,
            };
            if counted {
                self.count.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.pending.drain(..at);
    }
}

/// A whole MySQL packet at the start of `bytes`: its length and its
/// sequence id (as a one-byte slice).
fn mysql_packet(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let header = bytes.get(..4)?;
    let length =
        4 + usize::from(header[0]) + (usize::from(header[1]) << 8) + (usize::from(header[2]) << 16);
    (bytes.len() >= length).then(|| (length, &header[3..4]))
}

/// A whole RESP command (an array of bulk strings) at the start of
/// `bytes`: its length and its name.
fn redis_command(bytes: &[u8]) -> Option<(usize, &[u8])> {
    fn line(bytes: &[u8], at: usize, marker: u8) -> Option<(usize, usize)> {
        if *bytes.get(at)? != marker {
            return None;
        }
        let end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&bytes[at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    }
    let (args, mut at) = line(bytes, 0, b'*')?;
    let mut name: &[u8] = &[];
    for i in 0..args {
        let (len, start) = line(bytes, at, b'$')?;
        let end = start + len;
        if bytes.len() < end + 2 {
            return None;
        }
        if i == 0 {
            name = &bytes[start..end];
        }
        at = end + 2;
    }
    Some((at, name))
}

/// One client connection: connects to `upstream` once the proxy is not
/// stalled, then copies both ways until both sides closed or the connection
/// is cut.
async fn proxy_connection(
    client: TcpStream,
    upstream: String,
    commands: Commands,
    mut stalled: tokio::sync::watch::Receiver<bool>,
    cut: CancellationToken,
    closed: CancellationToken,
) {
    let forward = async move {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let Ok(server) = TcpStream::connect(&upstream).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        futures::future::join(
            copy_unless_stalled(client_read, server_write, Some(commands), stalled.clone()),
            copy_unless_stalled(server_read, client_write, None, stalled),
        )
        .await;
    };
    // Dropping `forward` drops both sockets: the connection closes. The cut
    // is looked at first: after `cut()`, no byte moves, whatever else is
    // ready when the task next runs (unbiased, it forwarded a query sent
    // after the cut, and its answer, one time in many under load).
    tokio::select! {
        biased;
        () = cut.cancelled() => {}
        () = closed.cancelled() => {}
        () = forward => {}
    }
}

/// Copies `from` to `to`, counting the `commands` in it, and holding
/// whatever it read (data, the end of the stream or an error) while the
/// proxy is stalled.
async fn copy_unless_stalled(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut commands: Option<Commands>,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        match read {
            Ok(n) if n > 0 => {
                if let Some(commands) = &mut commands {
                    commands.saw(&buf[..n]);
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            // The end of the stream or an error: pass the end on.
            _ => {
                let _ = to.shutdown().await;
                return;
            }
        }
    }
}
