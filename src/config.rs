//! Typed configuration. Each setting is declared once, as a field of
//! [`Settings`] (or of one of its sections) with its default in the
//! `Default` impls; figment layers the sources over those defaults: an
//! optional TOML file, then `ANTEROOM_*` environment variables, then the few
//! command-line flags in [`Flags`]. Secrets are wrapped in [`Secret`] so they
//! never print.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// A value that must never appear in logs, `Debug` output or serialized
/// settings.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// A fresh random secret (32 bytes, base64url).
    pub fn generate() -> Self {
        use base64::Engine as _;
        let bytes: [u8; 32] = rand::random();
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A secret refuses to be serialized, so no serialized settings carry one by
/// mistake; [`Settings::to_toml`] takes the secrets out first.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "a secret is never serialized (take it out of the settings first)",
        ))
    }
}

/// The prefix of every environment variable the gateway reads.
const ENV_PREFIX: &str = "ANTEROOM_";

/// The documented short environment names and the setting (key path) each
/// sets. Every top-level setting is here under its own name; a setting in a
/// section is also `ANTEROOM_<SECTION>__<KEY>` (`ANTEROOM_PUSH__HEARTBEAT_SECS`).
pub const ENV_NAMES: &[(&str, &str)] = &[
    ("ANTEROOM_LISTEN", "listen"),
    ("ANTEROOM_METRICS_LISTEN", "metrics_listen"),
    ("ANTEROOM_ADMIN_KEY", "admin_key"),
    ("ANTEROOM_TICKET_SECRET", "ticket_secret"),
    ("ANTEROOM_TICKET_SECRET_PREVIOUS", "ticket_secret_previous"),
    ("ANTEROOM_SEED_DEMO", "seed_demo"),
    ("ANTEROOM_WEB_DIR", "web_dir"),
    ("ANTEROOM_LOG_FORMAT", "log_format"),
    ("ANTEROOM_SHUTDOWN_DRAIN_SECS", "shutdown_drain_secs"),
    ("ANTEROOM_FAULT", "fault"),
    ("ANTEROOM_AUTH_MODE", "auth.mode"),
    ("ANTEROOM_AUTH_JWKS_URL", "auth.jwks_url"),
    ("ANTEROOM_AUTH_JWKS_FILE", "auth.jwks_file"),
    ("ANTEROOM_AUTH_HS256_SECRET", "auth.hs256_secret"),
    ("ANTEROOM_AUTH_ISSUER", "auth.issuer"),
    ("ANTEROOM_AUTH_AUDIENCE", "auth.audience"),
    ("ANTEROOM_ADMISSION_ISSUER", "admission.issuer"),
    ("ANTEROOM_ADMISSION_AUDIENCE", "admission.audience"),
    ("ANTEROOM_ADMISSION_KEY_FILE", "admission.key_file"),
    (
        "ANTEROOM_ADMISSION_PREVIOUS_KEY_FILES",
        "admission.previous_key_files",
    ),
    ("ANTEROOM_ORIGIN_KEY", "admission.origin_key"),
    ("ANTEROOM_REDIS_URL", "redis.url"),
    ("ANTEROOM_REDIS_PREFIX", "redis.prefix"),
    ("ANTEROOM_REDIS_TIMEOUT_MS", "redis.timeout_ms"),
    ("ANTEROOM_DATABASE_URL", "database.url"),
    ("ANTEROOM_DB_MAX_CONNECTIONS", "database.max_connections"),
    (
        "ANTEROOM_DB_ACQUIRE_TIMEOUT_MS",
        "database.acquire_timeout_ms",
    ),
    (
        "ANTEROOM_DB_STATEMENT_TIMEOUT_MS",
        "database.statement_timeout_ms",
    ),
    ("ANTEROOM_KAFKA_BROKERS", "kafka.brokers"),
    ("ANTEROOM_KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("ANTEROOM_KAFKA_GROUP_ID", "kafka.group_id"),
    ("ANTEROOM_KAFKA_INSTANCE_ID", "kafka.instance_id"),
    ("ANTEROOM_RANK_INTERVAL_MS", "push.rank_interval_ms"),
    ("ANTEROOM_PUSH_FRAME_BUDGET", "push.frame_budget"),
    ("ANTEROOM_HOLD_TTL_SECS", "sales.hold_ttl_secs"),
    ("ANTEROOM_MAX_HOLDS", "sales.max_holds"),
    ("ANTEROOM_CHALLENGE_SECRET", "challenge.secret"),
    ("ANTEROOM_TRUSTED_PROXIES", "limits.trusted_proxies"),
    ("ANTEROOM_ALLOWED_ORIGINS", "http.allowed_origins"),
];

/// Command line of the `anteroom` binary.
#[derive(Debug, Parser)]
#[command(
    name = "anteroom",
    version,
    about = "A real-time virtual waiting room gateway: fans hold a WebSocket (or SSE, \
             or poll) and are pushed their rank and the moment they are admitted.",
    long_about = None,
    after_help = env_help(),
)]
pub struct Cli {
    /// TOML file with settings (`anteroom print-config` writes one); the
    /// environment and flags override it.
    #[arg(long, env = "ANTEROOM_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub flags: Flags,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway (the default when no command is given).
    Serve,
    /// Print the effective settings as a TOML file that --config loads back
    /// (secrets left out) and exit.
    PrintConfig,
    /// Apply the database migrations (ANTEROOM_DATABASE_URL) and exit.
    Migrate,
    /// Create the demo shows with their seats (if the database has no shows
    /// yet) and exit.
    SeedDemo,
}

/// The settings that also have a flag: the ones a person starting a node by
/// hand changes. A flag wins over the environment and the file.
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct Flags {
    /// Address to listen on (the `listen` setting).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// A second address serving only /metrics (the `metrics_listen` setting).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format (the `log_format` setting).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// The environment part of `--help`, from [`ENV_NAMES`].
fn env_help() -> String {
    let mut help = String::from(
        "Settings: defaults, then the --config file, then the environment, then flags.\n\
         `anteroom print-config` shows every setting. A setting in a section is also\n\
         ANTEROOM_<SECTION>__<KEY> (ANTEROOM_PUSH__HEARTBEAT_SECS); README.md describes\n\
         each. Short environment names:\n",
    );
    for (name, key) in ENV_NAMES {
        help.push_str(&format!("  {name:<33} {key}\n"));
    }
    help
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Faults the gateway can inject into itself, to prove it survives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The admission consumer panics on the first event it receives: the
    /// process must exit non-zero rather than serve without admitting.
    AdmissionConsumerPanic,
}

/// The effective settings of one gateway process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second address serving only /metrics (for a monitoring network);
    /// /metrics is on the main address either way.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer key for /v1/admin; generated and logged once when unset.
    pub admin_key: Option<Secret>,
    /// HMAC key for tokens and tickets; generated when unset. Nodes that share
    /// a queue must share it.
    pub ticket_secret: Option<Secret>,
    /// Earlier ticket secrets, still accepted while tokens signed with them
    /// live (key rotation). A list in the file, comma-separated in the
    /// environment.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "secret_list"
    )]
    pub ticket_secret_previous: Vec<Secret>,
    /// Seed demo shows at start-up when there are none; unset: yes with the
    /// embedded database, no with MySQL.
    pub seed_demo: Option<bool>,
    /// A folder to serve the web page from; unset: the page built into the
    /// binary.
    pub web_dir: Option<PathBuf>,
    /// Unset: text on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// How long after SIGTERM the node keeps serving, with /readyz answering
    /// 503 so load balancers stop sending fans, before it closes connections.
    pub shutdown_drain_secs: u64,
    /// A fault to inject, for drills and tests; never set in production.
    pub fault: Option<Fault>,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub push: PushSettings,
    pub tokens: TokenSettings,
    pub sales: SalesSettings,
    pub auth: AuthSettings,
    pub admission: AdmissionSettings,
    pub challenge: ChallengeSettings,
    pub limits: LimitSettings,
    pub http: HttpSettings,
    pub breakers: crate::resilience::BreakerSettings,
    pub presence: PresenceSettings,
}

/// A list of secrets from a TOML array or a comma-separated string (the
/// environment's form); empty entries are dropped.
fn secret_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Joined(String),
        Each(Vec<String>),
    }
    let entries = match List::deserialize(deserializer)? {
        List::Joined(joined) => joined.split(',').map(str::to_owned).collect(),
        List::Each(each) => each,
    };
    Ok(entries
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Secret)
        .collect())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            admin_key: None,
            ticket_secret: None,
            ticket_secret_previous: Vec::new(),
            seed_demo: None,
            web_dir: None,
            log_format: None,
            shutdown_drain_secs: 5,
            fault: None,
            redis: RedisSettings::default(),
            database: DatabaseSettings::default(),
            kafka: KafkaSettings::default(),
            push: PushSettings::default(),
            tokens: TokenSettings::default(),
            sales: SalesSettings::default(),
            auth: AuthSettings::default(),
            admission: AdmissionSettings::default(),
            challenge: ChallengeSettings::default(),
            limits: LimitSettings::default(),
            http: HttpSettings::default(),
            breakers: crate::resilience::BreakerSettings::default(),
            presence: PresenceSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis for queue state and cross-node fan-out: redis://..., or the
    /// primary Sentinels name, redis+sentinel://host:port,.../master (see
    /// [`crate::store::RedisTarget::parse`]). Unset: in-process queue store
    /// (one node).
    pub url: Option<Secret>,
    /// Prefix of every Redis key and channel.
    pub prefix: String,
    /// Deadline of every Redis command, waiting for a (re)connection
    /// included: a request whose command misses it is answered 503 with
    /// `Retry-After`.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "anteroom:".to_owned(),
            timeout_ms: 500,
        }
    }
}

impl RedisSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// MySQL/MariaDB for durable data (mysql://user:pass@host/db). Unset:
    /// in-process database.
    pub url: Option<Secret>,
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before a 503.
    pub acquire_timeout_ms: u64,
    /// The longest one database call may take: each statement is cut off
    /// by the server after this long (MariaDB's `max_statement_time`,
    /// MySQL's `max_execution_time` for reads), and the gateway gives up
    /// on the whole call after it regardless (a hung server, a lost
    /// packet), answering 503.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 3_000,
        }
    }
}

impl DatabaseSettings {
    pub fn pool(&self) -> crate::store::PoolOptions {
        crate::store::PoolOptions {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms.max(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers (host:port,...) for domain events. Unset:
    /// in-process event bus.
    pub brokers: Option<String>,
    /// Topic names are `<prefix><event type>`.
    pub topic_prefix: String,
    /// Consumer group of the admission consumer.
    pub group_id: String,
    /// Static group membership id (group.instance.id), unique per node, so
    /// a restart rejoins without a rebalance.
    pub instance_id: Option<String>,
    /// Create missing topics at start-up (off where operators manage topics).
    pub create_topics: bool,
    /// Partitions of the topics the gateway creates when they are missing.
    pub partitions: i32,
    /// The consumer's `fetch.wait.max.ms`: the longest a fetch waits for
    /// events. A Kafka broker answers a waiting fetch as soon as an event
    /// arrives, so there this only sets the idle cost (about 1000 / this
    /// fetches a second per broker per node); brokers that hold an empty
    /// fetch to its end (rdkafka's MockCluster, tansu) delay an event by up
    /// to this. 10 ms: measured in docs/benchmarks.md (issue 15).
    pub fetch_wait_max_ms: u32,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: None,
            topic_prefix: "anteroom.".to_owned(),
            group_id: "anteroom-admission".to_owned(),
            instance_id: None,
            create_topics: true,
            partitions: 3,
            fetch_wait_max_ms: 10,
        }
    }
}

/// Per-connection push behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Shortest gap between two rank frames to one connection; later changes
    /// coalesce into the next frame.
    pub rank_interval_ms: u64,
    /// Rank frames a second this node aims to stay under (0: no budget): past
    /// `frame_budget × rank_interval` waiting connections, the interval of
    /// fans behind `front_ranks` stretches (`push::budget`), so the fan-out
    /// never saturates the cores that admission needs.
    pub frame_budget: u64,
    /// Fans at this rank or nearer keep `rank_interval_ms` whatever the line.
    pub front_ranks: u64,
    /// The longest a waiting fan whose rank moved waits for a fresh rank,
    /// however far the budget would stretch the interval.
    pub max_rank_interval_ms: u64,
    /// WebSocket ping / SSE comment interval that keeps idle connections open
    /// through proxies and detects dead peers.
    pub heartbeat_secs: u64,
    /// Largest client frame accepted on a WebSocket; larger closes with 1009.
    pub max_client_message_bytes: usize,
    /// Seconds before expiry at which `expiring` is pushed (capped at half the
    /// session length).
    pub expiring_warning_secs: u64,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            rank_interval_ms: 250,
            frame_budget: 25_000,
            front_ranks: 100,
            max_rank_interval_ms: 5_000,
            heartbeat_secs: 20,
            max_client_message_bytes: 1024,
            expiring_warning_secs: 60,
        }
    }
}

impl PushSettings {
    pub fn rank_interval(&self) -> Duration {
        Duration::from_millis(self.rank_interval_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn max_rank_interval(&self) -> Duration {
        Duration::from_millis(self.max_rank_interval_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    pub user_token_ttl_secs: u64,
    pub ticket_ttl_secs: u64,
    /// After the queue store lost a show's queue and no node remembered it,
    /// how long admission waits from the first ticket or access token that
    /// puts a spot back, so fans reconnecting one by one are all seated in
    /// their original order before anyone is admitted.
    pub rebuild_hold_ms: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            user_token_ttl_secs: 24 * 3600,
            ticket_ttl_secs: 12 * 3600,
            rebuild_hold_ms: 5_000,
        }
    }
}

/// How fans prove who they are ([`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `demo` (name-only sign-in) or `jwt` (the ticketing site's token).
    /// Unset: `demo` with the embedded backends; with Redis or a database
    /// configured the gateway refuses to start until it is set.
    pub mode: Option<crate::auth::AuthMode>,
    /// jwt: the site's JWKS, fetched and cached.
    pub jwks_url: Option<String>,
    /// jwt: the site's JWKS from a file.
    pub jwks_file: Option<PathBuf>,
    /// jwt: an HS256 secret shared with the site (instead of a JWKS).
    pub hs256_secret: Option<Secret>,
    /// jwt: the `iss` fans' tokens must carry.
    pub issuer: Option<String>,
    /// jwt: the `aud` fans' tokens must carry.
    pub audience: Option<String>,
    /// jwt: the shortest gap between two JWKS fetches for a token naming an
    /// unknown `kid` (a key rotation at the site is picked up; junk tokens
    /// cannot hammer it).
    pub jwks_refetch_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: None,
            jwks_url: None,
            jwks_file: None,
            hs256_secret: None,
            issuer: None,
            audience: None,
            jwks_refetch_secs: 30,
        }
    }
}

/// Admission tokens ([`crate::auth::admission`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionSettings {
    /// The `iss` of admission tokens.
    pub issuer: String,
    /// The `aud` of admission tokens, if the origin wants one.
    pub audience: Option<String>,
    /// The Ed25519 signing key, PKCS#8 PEM; nodes that share a queue share
    /// it. Required in jwt mode; generated per process in demo mode.
    pub key_file: Option<PathBuf>,
    /// Earlier keys (PKCS#8 or SPKI PEM) that still verify during a
    /// rotation: a list in the file, comma-separated in the environment.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "path_list")]
    pub previous_key_files: Vec<PathBuf>,
    /// The key an origin presents to `POST /v1/admission/introspect` (the
    /// admin key works too).
    pub origin_key: Option<Secret>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            issuer: "anteroom".to_owned(),
            audience: None,
            key_file: None,
            previous_key_files: Vec::new(),
            origin_key: None,
        }
    }
}

/// A list of paths from a TOML array or a comma-separated string.
fn path_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    Ok(secret_list(deserializer)?
        .into_iter()
        .map(|s| PathBuf::from(s.0))
        .collect())
}

/// Seat holds and payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SalesSettings {
    /// How long a hold keeps a seat.
    pub hold_ttl_secs: u64,
    /// Open holds per fan per show.
    pub max_holds: u32,
    /// Lifetime of a seat lock whose holder never releases it.
    pub lock_ttl_ms: u64,
}

impl Default for SalesSettings {
    fn default() -> Self {
        Self {
            hold_ttl_secs: 300,
            max_holds: 4,
            lock_ttl_ms: 5_000,
        }
    }
}

impl SalesSettings {
    pub fn service(&self) -> crate::sales::SaleSettings {
        crate::sales::SaleSettings {
            hold_ttl: Duration::from_secs(self.hold_ttl_secs),
            max_holds: self.max_holds,
            lock_ttl: Duration::from_millis(self.lock_ttl_ms),
        }
    }
}

/// Proof of work on join (ALTCHA challenges), for shows created with a
/// `challenge_cost`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChallengeSettings {
    /// HMAC key that signs challenges. Unset: derived from the ticket secret
    /// (see `challenge::derive_secret`), so nodes that share the ticket
    /// secret agree without more configuration.
    pub secret: Option<Secret>,
    /// How long a challenge may be solved and its solution used.
    pub ttl_secs: u64,
}

impl Default for ChallengeSettings {
    fn default() -> Self {
        Self {
            secret: None,
            ttl_secs: 300,
        }
    }
}

/// Rate limits (src/http/limits.rs) and who may say where a client is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Sign-ins per second from one client IP (an IPv6 client: its /64),
    /// sustained; and as many joins, counted apart.
    pub ip_per_second: u32,
    /// How many of those one IP may send at once. Generous, for the fans
    /// behind one carrier NAT.
    pub ip_burst: u32,
    /// Joins, status polls and seat holds per second of one signed-in fan,
    /// each counted on its own, sustained.
    pub identity_per_second: u32,
    /// How many of those one fan may send at once: a reconnect and a few
    /// retries, well above what the web client does.
    pub identity_burst: u32,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed. A list in the file, comma-separated
    /// in the environment.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            ip_per_second: 20,
            ip_burst: 100,
            identity_per_second: 5,
            identity_burst: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Who may talk to the gateway from a browser, and how long a connection may
/// take to say what it wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Origins of pages (besides the gateway's own) that may open the
    /// WebSocket and SSE streams and call the API from a browser (CORS). A
    /// list in the file, comma-separated in the environment.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<WebOrigin>,
    /// How long a connection may take to send a request's headers, from its
    /// first byte or from the end of the previous response (so it also
    /// bounds an idle keep-alive connection). Upgraded WebSockets and
    /// streaming responses are not affected.
    pub header_read_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            header_read_timeout_secs: 10,
        }
    }
}

impl HttpSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
}

/// How a node shows, on a shared store, that it still holds its fans'
/// connections (src/queue/presence.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// A node's lease, renewed every third of it. A node that stops renewing
    /// for this long (killed, hung, cut off from Redis) is taken for dead: a
    /// survivor uncounts its connections and its waiting fans' abandonment
    /// grace runs from the lapse. Shorter finds dead nodes sooner; longer
    /// rides out longer stalls.
    pub lease_secs: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self { lease_secs: 10 }
    }
}

impl PresenceSettings {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

/// A list from a TOML array or a comma-separated string (the environment's
/// form), each entry parsed; empty entries are dropped.
fn comma_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Joined(String),
        Each(Vec<String>),
    }
    let entries = match List::deserialize(deserializer)? {
        List::Joined(joined) => joined.split(',').map(str::to_owned).collect(),
        List::Each(each) => each,
    };
    entries
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// An IP address or a CIDR range: `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(ipnet::IpNet);

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let net = match s.parse::<IpAddr>() {
            Ok(ip) => ipnet::IpNet::from(ip.to_canonical()),
            Err(_) => s.parse::<ipnet::IpNet>().map_err(|_| {
                format!("{s:?} is neither an IP address nor a CIDR range (10.0.0.0/8)")
            })?,
        };
        Ok(Self(net.trunc()))
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A web origin as browsers send it in `Origin`: `https://tickets.example.com`
/// or `http://localhost:3000`; lowercase, without the scheme's default port,
/// without a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebOrigin(String);

impl WebOrigin {
    /// An origin from its parts (the request's scheme and `Host`).
    pub fn from_parts(scheme: &str, host: &str) -> Result<Self, String> {
        format!("{scheme}://{host}").parse()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for WebOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let invalid = || {
            format!(
                "{s:?} is not a web origin: scheme://host[:port], e.g. https://tickets.example.com"
            )
        };
        let (scheme, host) = lower.split_once("://").ok_or_else(invalid)?;
        let default_port = match scheme {
            "http" => ":80",
            "https" => ":443",
            _ => return Err(invalid()),
        };
        if host.is_empty()
            || host.starts_with(':')
            || host
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace())
        {
            return Err(invalid());
        }
        let host = host.strip_suffix(default_port).unwrap_or(host);
        Ok(Self(format!("{scheme}://{host}")))
    }
}

impl std::fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for WebOrigin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WebOrigin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file does not parse, or a value does not fit [`Settings`]:
    /// figment's message names the key and where it came from (the file or
    /// the environment variable).
    #[error("{0}")]
    Load(Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then the `--config` file, then the environment, then flags;
    /// refused when [`Settings::validate`] says they cannot work.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        if let Some(path) = &cli.config {
            // figment's message for an unreadable file is less clear.
            std::fs::File::open(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
        }
        let settings: Settings = Self::figment(cli)
            .extract_lossy()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The layers, each over the one before. The environment's short names
    /// come before `ANTEROOM_<SECTION>__<KEY>`, so the longer form wins when
    /// both name one setting.
    fn figment(cli: &Cli) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &cli.config {
            // `Toml::file` would search parent directories too.
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(short_env_names())
            .merge(sectioned_env_names())
            .merge(Serialized::defaults(&cli.flags))
    }

    /// The settings as a TOML file that `--config` loads back to the same
    /// settings less the secrets. Secrets are never printed; a comment names
    /// the ones that are set, to be supplied again from the environment.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut public = self.clone();
        let taken = public.take_secrets();
        let mut out = String::new();
        if !taken.is_empty() {
            out.push_str(&format!(
                "# Set but not printed (secrets): {}\n\n",
                taken.join(", ")
            ));
        }
        out.push_str(&toml::to_string(&public)?);
        Ok(out)
    }

    /// Takes every secret out, naming those that were set.
    fn take_secrets(&mut self) -> Vec<&'static str> {
        let taken = [
            ("admin_key", self.admin_key.take().is_some()),
            ("ticket_secret", self.ticket_secret.take().is_some()),
            (
                "ticket_secret_previous",
                !std::mem::take(&mut self.ticket_secret_previous).is_empty(),
            ),
            ("redis.url", self.redis.url.take().is_some()),
            ("database.url", self.database.url.take().is_some()),
            ("auth.hs256_secret", self.auth.hs256_secret.take().is_some()),
            (
                "admission.origin_key",
                self.admission.origin_key.take().is_some(),
            ),
            ("challenge.secret", self.challenge.secret.take().is_some()),
        ];
        taken
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(key, _)| key)
            .collect()
    }

    /// Refuses settings that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database.url {
            let url = url.expose();
            if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
                return Err(ConfigError::Invalid(
                    "ANTEROOM_DATABASE_URL must be a mysql:// URL (MySQL 8 or MariaDB 10.11)"
                        .into(),
                ));
            }
        }
        if let Some(url) = &self.redis.url {
            let url = url.expose();
            if ![
                "redis://",
                "rediss://",
                "unix://",
                "redis+unix://",
                "redis+sentinel://",
            ]
            .iter()
            .any(|p| url.starts_with(p))
            {
                return Err(ConfigError::Invalid(
                    "ANTEROOM_REDIS_URL must be a redis://, rediss://, unix:// or \
                     redis+sentinel:// URL"
                        .into(),
                ));
            }
            crate::store::RedisTarget::parse(url).map_err(ConfigError::Invalid)?;
        }
        if self.redis.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "ANTEROOM_REDIS_TIMEOUT_MS must be at least 1".into(),
            ));
        }
        if self
            .kafka
            .brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "ANTEROOM_KAFKA_BROKERS is empty".into(),
            ));
        }
        if self.push.max_rank_interval_ms < self.push.rank_interval_ms {
            return Err(ConfigError::Invalid(
                "push.max_rank_interval_ms must be at least push.rank_interval_ms".into(),
            ));
        }
        if !(1..=24 * 3600).contains(&self.sales.hold_ttl_secs) {
            return Err(ConfigError::Invalid(
                "the hold TTL must be between 1 second and 24 hours".into(),
            ));
        }
        if self.sales.max_holds == 0 || self.sales.lock_ttl_ms == 0 {
            return Err(ConfigError::Invalid(
                "max_holds and lock_ttl_ms must be at least 1".into(),
            ));
        }
        if !(1..=3600).contains(&self.challenge.ttl_secs) {
            return Err(ConfigError::Invalid(
                "challenge.ttl_secs must be between 1 second and 1 hour".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "the database pool needs at least one connection".into(),
            ));
        }
        self.auth_mode()?;
        let l = &self.limits;
        if [
            l.ip_per_second,
            l.ip_burst,
            l.identity_per_second,
            l.identity_burst,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "rate limits (limits.ip_per_second, ip_burst, identity_per_second, \
                 identity_burst) must be at least 1"
                    .into(),
            ));
        }
        if self.http.header_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_secs must be at least 1".into(),
            ));
        }
        if !(1..=600).contains(&self.presence.lease_secs) {
            return Err(ConfigError::Invalid(
                "presence.lease_secs must be between 1 second and 10 minutes".into(),
            ));
        }
        Ok(())
    }

    /// The auth mode in force, or why none can be: the name-only demo
    /// sign-in is never a silent default in front of production backends.
    pub fn auth_mode(&self) -> Result<crate::auth::AuthMode, ConfigError> {
        use crate::auth::AuthMode;
        let production = self.redis.url.is_some() || self.database.url.is_some();
        let mode = match self.auth.mode {
            Some(mode) => mode,
            None if production => {
                return Err(ConfigError::Invalid(
                    "ANTEROOM_AUTH_MODE is not set and Redis or a database is configured: \
                     set it to jwt (fans present the ticketing site's signed token), or to demo \
                     to allow name-only sign-in knowingly"
                        .into(),
                ))
            }
            None => AuthMode::Demo,
        };
        if mode == AuthMode::Jwt {
            let a = &self.auth;
            let sources = [
                a.jwks_url.is_some(),
                a.jwks_file.is_some(),
                a.hs256_secret.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(ConfigError::Invalid(
                    "jwt mode needs exactly one of ANTEROOM_AUTH_JWKS_URL, \
                     ANTEROOM_AUTH_JWKS_FILE and ANTEROOM_AUTH_HS256_SECRET"
                        .into(),
                ));
            }
            if a.issuer.is_none() || a.audience.is_none() {
                return Err(ConfigError::Invalid(
                    "jwt mode needs ANTEROOM_AUTH_ISSUER and ANTEROOM_AUTH_AUDIENCE".into(),
                ));
            }
            if self.admission.key_file.is_none() {
                return Err(ConfigError::Invalid(
                    "jwt mode needs ANTEROOM_ADMISSION_KEY_FILE (an Ed25519 PKCS#8 PEM key that \
                     every node sharing the queue uses)"
                        .into(),
                ));
            }
            if self.admin_key.is_none() {
                return Err(ConfigError::Invalid(
                    "jwt mode needs ANTEROOM_ADMIN_KEY (a generated one is only printed in demo \
                     mode)"
                        .into(),
                ));
            }
        }
        Ok(mode)
    }
}

/// The short names of [`ENV_NAMES`], each mapped to its key path.
fn short_env_names() -> EnvAsWritten {
    EnvAsWritten {
        vars: Env::raw().filter_map(|var| {
            ENV_NAMES
                .iter()
                .find(|(name, _)| var.as_str().eq_ignore_ascii_case(name))
                .map(|(_, key)| (*key).into())
        }),
        name: |keys| {
            let key = keys.join(".");
            ENV_NAMES
                .iter()
                .find(|(_, k)| *k == key)
                .map_or(key, |(name, _)| (*name).to_owned())
        },
    }
}

/// `ANTEROOM_<SECTION>__<KEY>`. Only names with a `__` are read here, so
/// `ANTEROOM_CONFIG`, the short names and other tools' variables with the
/// prefix (`ANTEROOM_TEST_REDIS_URL`) are not taken for unknown settings,
/// while a typo in a section or key is one.
fn sectioned_env_names() -> EnvAsWritten {
    EnvAsWritten {
        vars: Env::prefixed(ENV_PREFIX)
            .filter(|var| var.as_str().contains("__"))
            .split("__"),
        name: |keys| format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase()),
    }
}

/// Environment variables as a figment provider, each value taken as written.
/// figment's `Env` parses values (`0123` becomes the number 123, `[a]` an
/// array, `"a"` loses its quotes), which would change or refuse a secret or
/// a name; here every value is a string, and extraction (`extract_lossy`)
/// reads the number or boolean a setting wants from it. An empty variable
/// counts as unset.
struct EnvAsWritten {
    /// Which variables, and the key path each sets.
    vars: Env,
    /// The variable that sets a key path, for error messages.
    name: fn(&[&str]) -> String,
}

impl Provider for EnvAsWritten {
    fn metadata(&self) -> Metadata {
        let name = self.name;
        Metadata::named("the environment")
            .interpolater(move |_: &Profile, keys: &[&str]| name(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut settings = Dict::new();
        for (key, value) in self.vars.iter().filter(|(_, value)| !value.is_empty()) {
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert(&mut settings, &path, value);
        }
        Ok(Profile::Default.collect(settings))
    }
}

/// Puts `value` at `path`, making the tables on the way.
fn insert(dict: &mut Dict, path: &[&str], value: String) {
    match path {
        [] => {}
        [key] => {
            dict.insert((*key).to_owned(), Value::from(value));
        }
        [section, rest @ ..] => {
            let entry = dict
                .entry((*section).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, section) = entry {
                insert(section, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;

    /// Runs `test` in figment's jail: a fresh directory as the working
    /// directory and an empty environment, both restored afterwards (jails
    /// run one at a time).
    #[allow(
        clippy::result_large_err,
        reason = "a jail's closure returns figment::Result, whose error is large"
    )]
    fn jailed(test: impl FnOnce(&mut Jail)) {
        Jail::expect_with(|jail| {
            jail.clear_env();
            test(jail);
            Ok(())
        });
    }

    /// Loads as `anteroom <args>` would, in the jail's directory and
    /// environment.
    fn load(args: &[&str]) -> Result<Settings, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("anteroom").chain(args.iter().copied()))
            .expect("a valid command line");
        Settings::load(&cli)
    }

    /// Every optional setting set, most others changed, and a secret that
    /// must never print.
    fn changed() -> Settings {
        let secret = |what: &str| Some(Secret::new(format!("hunter2-{what}")));
        Settings {
            listen: "0.0.0.0:9000".parse().expect("addr"),
            metrics_listen: Some("127.0.0.1:9001".parse().expect("addr")),
            admin_key: secret("admin"),
            ticket_secret: secret("ticket"),
            ticket_secret_previous: vec![Secret::new("hunter2-old".into())],
            seed_demo: Some(false),
            web_dir: Some(PathBuf::from("/srv/web")),
            log_format: Some(LogFormat::Json),
            shutdown_drain_secs: 0,
            fault: Some(Fault::AdmissionConsumerPanic),
            redis: RedisSettings {
                url: Some(Secret::new("redis://:hunter2@redis:6379".into())),
                prefix: "sale:".into(),
                timeout_ms: 250,
            },
            database: DatabaseSettings {
                url: Some(Secret::new("mysql://anteroom:hunter2@db/anteroom".into())),
                max_connections: 3,
                acquire_timeout_ms: 500,
                statement_timeout_ms: 1_500,
            },
            kafka: KafkaSettings {
                brokers: Some("kafka:9092".into()),
                instance_id: Some("node-a".into()),
                create_topics: false,
                ..KafkaSettings::default()
            },
            push: PushSettings {
                rank_interval_ms: 10,
                ..PushSettings::default()
            },
            tokens: TokenSettings {
                ticket_ttl_secs: 60,
                ..TokenSettings::default()
            },
            sales: SalesSettings {
                hold_ttl_secs: 30,
                ..SalesSettings::default()
            },
            auth: AuthSettings {
                // (jwt mode would need the admin key, a secret the printed
                // file leaves out.)
                mode: Some(crate::auth::AuthMode::Demo),
                jwks_url: Some("https://id.example/.well-known/jwks.json".into()),
                issuer: Some("https://id.example/".into()),
                audience: Some("anteroom".into()),
                ..AuthSettings::default()
            },
            admission: AdmissionSettings {
                audience: Some("tickets".into()),
                key_file: Some(PathBuf::from("/etc/anteroom/admission.pem")),
                origin_key: secret("origin"),
                ..AdmissionSettings::default()
            },
            challenge: ChallengeSettings {
                secret: secret("challenge"),
                ttl_secs: 60,
            },
            limits: LimitSettings {
                ip_per_second: 7,
                trusted_proxies: vec![
                    "10.0.0.0/8".parse().expect("range"),
                    "2001:db8::1".parse().expect("address"),
                ],
                ..LimitSettings::default()
            },
            http: HttpSettings {
                allowed_origins: vec!["https://tickets.example.com".parse().expect("origin")],
                header_read_timeout_secs: 3,
            },
            breakers: crate::resilience::BreakerSettings {
                failures: 9,
                open_ms: 250,
                ..crate::resilience::BreakerSettings::default()
            },
            presence: PresenceSettings { lease_secs: 4 },
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = changed();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(serde_json::to_string(&s).is_err());
    }

    #[test]
    fn file_then_environment_then_flags() {
        jailed(|jail| {
            jail.create_file(
                "anteroom.toml",
                "listen = \"127.0.0.1:9000\"\nmetrics_listen = \"127.0.0.1:9001\"\n\
                 seed_demo = false\n[push]\nrank_interval_ms = 5\n",
            )
            .expect("writes the file");
            jail.set_env("ANTEROOM_LISTEN", "127.0.0.1:9050");
            jail.set_env("ANTEROOM_METRICS_LISTEN", "127.0.0.1:9051");
            let s =
                load(&["--config", "anteroom.toml", "--listen", "127.0.0.1:9100"]).expect("loads");
            assert_eq!(s.listen.port(), 9100, "a flag wins over the environment");
            assert_eq!(
                s.metrics_listen.map(|a| a.port()),
                Some(9051),
                "the environment wins over the file"
            );
            assert_eq!(s.seed_demo, Some(false), "the file wins over the defaults");
            assert_eq!(s.push.rank_interval_ms, 5);
            assert_eq!(s.push.heartbeat_secs, 20, "unset anywhere: the default");

            // The file named by ANTEROOM_CONFIG, which is no setting itself;
            // a global flag after a command.
            jail.set_env("ANTEROOM_CONFIG", "anteroom.toml");
            let s = load(&["print-config", "--log-format", "text"]).expect("loads");
            assert_eq!(s.listen.port(), 9050);
            assert_eq!(s.push.rank_interval_ms, 5);
            assert_eq!(s.log_format, Some(LogFormat::Text));
        });
    }

    #[test]
    fn every_section_key_is_an_environment_variable() {
        jailed(|jail| {
            jail.set_env("ANTEROOM_PUSH__RANK_INTERVAL_MS", 7);
            jail.set_env("ANTEROOM_SALES__HOLD_TTL_SECS", 60);
            jail.set_env("ANTEROOM_KAFKA__FETCH_WAIT_MAX_MS", 20);
            jail.set_env("ANTEROOM_KAFKA__CREATE_TOPICS", false);
            jail.set_env("ANTEROOM_TOKENS__TICKET_TTL_SECS", 90);
            // The section form wins over a short name for the same setting.
            jail.set_env("ANTEROOM_RANK_INTERVAL_MS", 9);
            // Another tool's variable with the prefix is none of ours.
            jail.set_env("ANTEROOM_TEST_REDIS_URL", "redis://elsewhere");
            let s = load(&[]).expect("loads");
            assert_eq!(s.push.rank_interval_ms, 7);
            assert_eq!(s.sales.hold_ttl_secs, 60);
            assert_eq!(s.kafka.fetch_wait_max_ms, 20);
            assert!(!s.kafka.create_topics);
            assert_eq!(s.tokens.ticket_ttl_secs, 90);
            assert_eq!(s.redis.url, None);
        });
    }

    #[test]
    fn short_names_keep_working() {
        jailed(|jail| {
            jail.set_env("ANTEROOM_RANK_INTERVAL_MS", 9);
            jail.set_env("ANTEROOM_TICKET_SECRET_PREVIOUS", "a,,b");
            jail.set_env("ANTEROOM_ADMIN_KEY", "0123");
            jail.set_env("ANTEROOM_SEED_DEMO", true);
            jail.set_env("ANTEROOM_DB_MAX_CONNECTIONS", 3);
            jail.set_env("ANTEROOM_DATABASE_URL", "mysql://anteroom:1234@db/anteroom");
            jail.set_env("ANTEROOM_LOG_FORMAT", "json");
            jail.set_env("ANTEROOM_SHUTDOWN_DRAIN_SECS", 0);
            jail.set_env("ANTEROOM_KAFKA_INSTANCE_ID", "");
            jail.set_env("ANTEROOM_AUTH_MODE", "demo");
            let s = load(&[]).expect("loads");
            assert_eq!(s.push.rank_interval_ms, 9);
            let previous: Vec<&str> = s
                .ticket_secret_previous
                .iter()
                .map(Secret::expose)
                .collect();
            assert_eq!(
                previous,
                ["a", "b"],
                "comma-separated, empty entries dropped"
            );
            assert_eq!(
                s.admin_key.as_ref().map(Secret::expose),
                Some("0123"),
                "a value is taken as written, not as the number 123"
            );
            assert_eq!(s.seed_demo, Some(true));
            assert_eq!(s.database.max_connections, 3);
            assert_eq!(s.log_format, Some(LogFormat::Json));
            assert_eq!(s.shutdown_drain_secs, 0);
            assert_eq!(s.kafka.instance_id, None, "an empty variable is unset");
        });
    }

    #[test]
    fn every_short_name_sets_a_setting_and_every_top_level_setting_has_one() {
        let mut settings = changed();
        settings.take_secrets();
        let top_level = Value::serialize(settings).expect("serializes");
        let Some(top_level) = top_level.as_dict() else {
            panic!("settings serialize as a table")
        };
        for (key, value) in top_level {
            if value.as_dict().is_none() {
                let name = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
                assert!(ENV_NAMES.contains(&(name.as_str(), key.as_str())), "{name}");
            }
        }
        jailed(|jail| {
            for (name, key) in ENV_NAMES {
                jail.clear_env();
                jail.set_env(name, "1");
                let figment = Settings::figment(&Cli::parse_from(["anteroom"]));
                assert!(figment.find_value(key).is_ok(), "{name} sets {key}");
                if let Err(e) = figment.extract_lossy::<Settings>() {
                    assert!(
                        !matches!(e.kind, figment::error::Kind::UnknownField(..)),
                        "{name}: {e}"
                    );
                }
            }
        });
    }

    #[test]
    fn proxies_and_origins_are_lists_checked_on_load() {
        jailed(|jail| {
            jail.set_env(
                "ANTEROOM_TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.7,,::ffff:198.51.100.1, 2001:db8::/32",
            );
            jail.set_env(
                "ANTEROOM_ALLOWED_ORIGINS",
                "https://Tickets.Example.com:443,http://localhost:3000",
            );
            let s = load(&[]).expect("loads");
            let proxies: Vec<String> = s
                .limits
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(
                proxies,
                [
                    "10.0.0.0/8",
                    "192.0.2.7/32",
                    "198.51.100.1/32",
                    "2001:db8::/32"
                ]
            );
            let origins: Vec<&str> = s
                .http
                .allowed_origins
                .iter()
                .map(WebOrigin::as_str)
                .collect();
            assert_eq!(
                origins,
                ["https://tickets.example.com", "http://localhost:3000"],
                "as browsers send them: lowercase, no default port"
            );
            assert!(s.limits.trusted_proxies[1].contains("192.0.2.7".parse().expect("ip")));
            assert!(!s.limits.trusted_proxies[1].contains("192.0.2.8".parse().expect("ip")));
            assert!(s.limits.trusted_proxies[0].contains("::ffff:10.1.2.3".parse().expect("ip")));

            jail.set_env("ANTEROOM_TRUSTED_PROXIES", "10.0.0.0/33");
            let err = load(&[]).expect_err("not a range").to_string();
            assert!(err.contains("ANTEROOM_TRUSTED_PROXIES"), "{err}");

            jail.set_env("ANTEROOM_TRUSTED_PROXIES", "");
            for origin in [
                "tickets.example.com",
                "https://tickets.example.com/",
                "ftp://x",
            ] {
                jail.set_env("ANTEROOM_ALLOWED_ORIGINS", origin);
                let err = load(&[]).expect_err(origin).to_string();
                assert!(err.contains("ANTEROOM_ALLOWED_ORIGINS"), "{err}");
            }
        });
    }

    #[test]
    fn zero_rates_are_refused() {
        jailed(|jail| {
            for key in [
                "IP_PER_SECOND",
                "IP_BURST",
                "IDENTITY_PER_SECOND",
                "IDENTITY_BURST",
            ] {
                jail.clear_env();
                jail.set_env(format!("ANTEROOM_LIMITS__{key}"), 0);
                let err = load(&[]).expect_err(key).to_string();
                assert!(err.contains("at least 1"), "{err}");
            }
            jail.clear_env();
            jail.set_env("ANTEROOM_HTTP__HEADER_READ_TIMEOUT_SECS", 0);
            assert!(load(&[]).is_err());
        });
    }

    #[test]
    fn the_frame_budget_is_set_by_its_short_name_and_cannot_shorten_the_maximum() {
        jailed(|jail| {
            jail.set_env("ANTEROOM_PUSH_FRAME_BUDGET", 1234);
            let s = load(&[]).expect("loads");
            assert_eq!(s.push.frame_budget, 1234);
            assert_eq!(s.push.front_ranks, 100);
            jail.set_env("ANTEROOM_RANK_INTERVAL_MS", 2_000);
            jail.set_env("ANTEROOM_PUSH__MAX_RANK_INTERVAL_MS", 1_000);
            let err = load(&[]).expect_err("max below the interval").to_string();
            assert!(err.contains("max_rank_interval_ms"), "{err}");
        });
    }

    #[test]
    fn a_mistake_is_an_error_that_names_it() {
        jailed(|jail| {
            jail.create_file("anteroom.toml", "[push]\nrank_intreval_ms = 5\n")
                .expect("writes the file");
            let err = load(&["--config", "anteroom.toml"])
                .expect_err("a typo in the file")
                .to_string();
            assert!(
                err.contains("rank_intreval_ms") && err.contains("anteroom.toml"),
                "{err}"
            );

            let err = load(&["--config", "missing.toml"])
                .expect_err("a missing file")
                .to_string();
            assert!(err.contains("missing.toml"), "{err}");

            jail.set_env("ANTEROOM_PUSH__RANK_INTREVAL_MS", 5);
            let err = load(&[]).expect_err("a typo in a variable").to_string();
            assert!(err.contains("ANTEROOM_PUSH__RANK_INTREVAL_MS"), "{err}");

            jail.clear_env();
            jail.set_env("ANTEROOM_RANK_INTERVAL_MS", "soon");
            let err = load(&[]).expect_err("not a number").to_string();
            assert!(err.contains("ANTEROOM_RANK_INTERVAL_MS"), "{err}");

            jail.clear_env();
            jail.set_env("ANTEROOM_DATABASE_URL", "postgres://db/anteroom");
            let err = load(&[]).expect_err("not MySQL").to_string();
            assert!(err.contains("mysql://"), "{err}");
        });
    }

    #[test]
    fn print_config_loads_back_without_the_secrets() {
        for settings in [Settings::default(), changed()] {
            let printed = settings.to_toml().expect("prints");
            assert!(!printed.contains("hunter2"), "{printed}");
            let mut expected = settings.clone();
            expected.take_secrets();
            jailed(|jail| {
                jail.create_file("printed.toml", &printed)
                    .expect("writes the file");
                let loaded = load(&["--config", "printed.toml"]).expect("the printed file loads");
                assert_eq!(loaded, expected, "{printed}");
            });
        }
        let printed = changed().to_toml().expect("prints");
        assert!(
            printed.starts_with(
                "# Set but not printed (secrets): admin_key, ticket_secret, \
                 ticket_secret_previous, redis.url, database.url, admission.origin_key, challenge.secret\n"
            ),
            "{printed}"
        );
    }

    #[test]
    fn the_demo_sign_in_is_never_a_silent_default_in_production() {
        jailed(|jail| {
            assert_eq!(
                load(&[]).expect("loads").auth_mode().ok(),
                Some(crate::auth::AuthMode::Demo)
            );
            jail.set_env("ANTEROOM_REDIS_URL", "redis://127.0.0.1:6379");
            let err = load(&[]).expect_err("refused").to_string();
            assert!(err.contains("ANTEROOM_AUTH_MODE"), "{err}");
            jail.set_env("ANTEROOM_AUTH_MODE", "jwt");
            let err = load(&[]).expect_err("refused").to_string();
            assert!(err.contains("exactly one of"), "{err}");
            jail.set_env("ANTEROOM_AUTH_HS256_SECRET", "site-secret");
            let err = load(&[]).expect_err("refused").to_string();
            assert!(err.contains("ANTEROOM_AUTH_ISSUER"), "{err}");
            jail.set_env("ANTEROOM_AUTH_ISSUER", "https://tickets.example/");
            jail.set_env("ANTEROOM_AUTH_AUDIENCE", "anteroom");
            let err = load(&[]).expect_err("refused").to_string();
            assert!(err.contains("ANTEROOM_ADMISSION_KEY_FILE"), "{err}");
            jail.set_env("ANTEROOM_ADMISSION_KEY_FILE", "/etc/anteroom/admission.pem");
            jail.set_env(
                "ANTEROOM_ADMISSION_PREVIOUS_KEY_FILES",
                "/etc/anteroom/old1.pem,/etc/anteroom/old2.pem",
            );
            let err = load(&[]).expect_err("refused").to_string();
            assert!(err.contains("ANTEROOM_ADMIN_KEY"), "{err}");
            jail.set_env("ANTEROOM_ADMIN_KEY", "k");
            let s = load(&[]).expect("a complete jwt configuration loads");
            assert_eq!(s.auth_mode().ok(), Some(crate::auth::AuthMode::Jwt));
            assert_eq!(s.admission.previous_key_files.len(), 2);
            jail.set_env(
                "ANTEROOM_AUTH_JWKS_URL",
                "https://tickets.example/jwks.json",
            );
            assert!(load(&[]).is_err(), "two key sources are ambiguous");
        });
    }
}
