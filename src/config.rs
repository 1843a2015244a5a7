//! Typed configuration: defaults in code, an optional TOML file, then
//! `ANTEROOM_*` environment variables and command-line flags (clap reads both,
//! flags win). Secrets are wrapped in [`Secret`] so they never print.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;

/// A value that must never appear in logs or `Debug` output.
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

/// Command line of the `anteroom` binary. Every option can also be set in the
/// environment (the name in brackets) or in the `--config` file.
#[derive(Debug, Parser)]
#[command(
    name = "anteroom",
    version,
    about = "A real-time virtual waiting room gateway: fans hold a WebSocket (or SSE, \
             or poll) and are pushed their rank and the moment they are admitted.",
    long_about = None
)]
pub struct Cli {
    /// TOML file with settings; environment variables and flags override it.
    #[arg(long, env = "ANTEROOM_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: Overrides,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway (the default when no command is given).
    Serve,
    /// Print the effective settings (secrets redacted) and exit.
    PrintConfig,
    /// Apply the database migrations (ANTEROOM_DATABASE_URL) and exit.
    Migrate,
    /// Create the demo shows with their seats (if the database has no shows
    /// yet) and exit.
    SeedDemo,
}

/// Settings that can come from flags or `ANTEROOM_*` variables.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ANTEROOM_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// A second address serving only /metrics (for a monitoring network);
    /// /metrics is on the main address either way.
    #[arg(long, env = "ANTEROOM_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer key for /v1/admin; generated and logged once when unset.
    #[arg(
        long,
        env = "ANTEROOM_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    pub admin_key: Option<String>,
    /// HMAC key for tokens and tickets; generated when unset. Nodes that share
    /// a queue must share it.
    #[arg(
        long,
        env = "ANTEROOM_TICKET_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub ticket_secret: Option<String>,
    /// Earlier ticket secrets, comma-separated, still accepted while tokens
    /// signed with them live (key rotation).
    #[arg(
        long,
        env = "ANTEROOM_TICKET_SECRET_PREVIOUS",
        hide_env_values = true,
        value_delimiter = ',',
        global = true
    )]
    pub ticket_secret_previous: Option<Vec<String>>,
    /// Seed demo shows at start-up when there are none [default: true with
    /// the embedded database, false with MySQL].
    #[arg(long, env = "ANTEROOM_SEED_DEMO", global = true)]
    pub seed_demo: Option<bool>,
    /// Redis for queue state and cross-node fan-out (redis://...). Unset:
    /// in-process queue store (one node).
    #[arg(
        long,
        env = "ANTEROOM_REDIS_URL",
        hide_env_values = true,
        global = true
    )]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel [default: anteroom:].
    #[arg(long, env = "ANTEROOM_REDIS_PREFIX", global = true)]
    pub redis_prefix: Option<String>,
    /// MySQL/MariaDB for durable data (mysql://user:pass@host/db). Unset:
    /// in-process database.
    #[arg(
        long,
        env = "ANTEROOM_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Database pool size [default: 10].
    #[arg(long, env = "ANTEROOM_DB_MAX_CONNECTIONS", global = true)]
    pub db_max_connections: Option<u32>,
    /// How long a request waits for a database connection before a 503, in
    /// ms [default: 2000].
    #[arg(long, env = "ANTEROOM_DB_ACQUIRE_TIMEOUT_MS", global = true)]
    pub db_acquire_timeout_ms: Option<u64>,
    /// Kafka bootstrap servers (host:port,...) for domain events. Unset:
    /// in-process event bus.
    #[arg(long, env = "ANTEROOM_KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,
    /// Prefix of the Kafka topic names [default: anteroom.].
    #[arg(long, env = "ANTEROOM_KAFKA_TOPIC_PREFIX", global = true)]
    pub kafka_topic_prefix: Option<String>,
    /// Consumer group of the admission consumer [default: anteroom-admission].
    #[arg(long, env = "ANTEROOM_KAFKA_GROUP_ID", global = true)]
    pub kafka_group_id: Option<String>,
    /// Static group membership id (group.instance.id), unique per node, so
    /// a restart rejoins without a rebalance.
    #[arg(long, env = "ANTEROOM_KAFKA_INSTANCE_ID", global = true)]
    pub kafka_instance_id: Option<String>,
    /// Shortest gap between two rank frames to one connection, in ms; later
    /// changes coalesce into the next frame [default: 250].
    #[arg(long, env = "ANTEROOM_RANK_INTERVAL_MS", global = true)]
    pub rank_interval_ms: Option<u64>,
    /// How long a seat hold lasts before it expires, in seconds [default: 300].
    #[arg(long, env = "ANTEROOM_HOLD_TTL_SECS", global = true)]
    pub hold_ttl_secs: Option<u64>,
    /// Open seat holds per fan per show [default: 4].
    #[arg(long, env = "ANTEROOM_MAX_HOLDS", global = true)]
    pub max_holds: Option<u32>,
    /// Directory of the static web client [default: web].
    #[arg(long, env = "ANTEROOM_WEB_DIR", global = true)]
    pub web_dir: Option<PathBuf>,
    /// Log format: text or json [default: text on a terminal, json otherwise].
    #[arg(long, env = "ANTEROOM_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective settings of one gateway process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub admin_key: Option<Secret>,
    pub ticket_secret: Option<Secret>,
    pub ticket_secret_previous: Vec<Secret>,
    pub seed_demo: Option<bool>,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub web_dir: PathBuf,
    pub log_format: Option<LogFormat>,
    pub push: PushSettings,
    pub tokens: TokenSettings,
    pub sales: SalesSettings,
    /// After SIGTERM, how long the node keeps serving with `/readyz`
    /// answering 503 before it closes connections.
    pub shutdown_drain_secs: u64,
    /// A fault to inject, for drills and tests; never set in production.
    pub fault: Option<Fault>,
}

/// Faults the gateway can inject into itself, to prove it survives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The admission consumer panics on the first event it receives.
    AdmissionConsumerPanic,
}

/// Seat holds and payments.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Option<Secret>,
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Option<Secret>,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: Option<String>,
    pub topic_prefix: String,
    pub group_id: String,
    pub instance_id: Option<String>,
    /// Create missing topics at start-up.
    pub create_topics: bool,
    /// Partitions of the topics the gateway creates when they are missing.
    pub partitions: i32,
    /// The consumer's `fetch.wait.max.ms`: the longest a fetch waits for
    /// events. A broker answers a waiting fetch as soon as an event arrives;
    /// one that does not (rdkafka's MockCluster) delays events by up to this.
    pub fetch_wait_max_ms: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "anteroom:".to_owned(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            acquire_timeout_ms: 2_000,
        }
    }
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
            fetch_wait_max_ms: 100,
        }
    }
}

impl DatabaseSettings {
    pub fn pool(&self) -> crate::store::PoolOptions {
        crate::store::PoolOptions {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

impl KafkaSettings {
    pub fn options(&self, brokers: &str) -> crate::events::kafka::KafkaOptions {
        crate::events::kafka::KafkaOptions {
            brokers: brokers.to_owned(),
            topic_prefix: self.topic_prefix.clone(),
            group_id: self.group_id.clone(),
            instance_id: self.instance_id.clone(),
            create_topics: self.create_topics,
            partitions: self.partitions,
            fetch_wait_max_ms: self.fetch_wait_max_ms,
        }
    }
}

/// Per-connection push behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    pub rank_interval_ms: u64,
    /// WebSocket ping / SSE comment interval that keeps idle connections open
    /// through proxies and detects dead peers.
    pub heartbeat_secs: u64,
    /// Largest client frame accepted on a WebSocket; larger closes with 1009.
    pub max_client_message_bytes: usize,
    /// Seconds before expiry at which `expiring` is pushed (capped at half the
    /// session length).
    pub expiring_warning_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    pub user_token_ttl_secs: u64,
    pub ticket_ttl_secs: u64,
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
            redis: RedisSettings::default(),
            database: DatabaseSettings::default(),
            kafka: KafkaSettings::default(),
            web_dir: PathBuf::from("web"),
            log_format: None,
            push: PushSettings::default(),
            tokens: TokenSettings::default(),
            sales: SalesSettings::default(),
            shutdown_drain_secs: 5,
            fault: None,
        }
    }
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            rank_interval_ms: 250,
            heartbeat_secs: 20,
            max_client_message_bytes: 1024,
            expiring_warning_secs: 60,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            user_token_ttl_secs: 24 * 3600,
            ticket_ttl_secs: 12 * 3600,
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
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then the file, then flags/environment.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut settings = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
            None => Settings::default(),
        };
        settings.apply(&cli.overrides);
        settings.validate()?;
        Ok(settings)
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
            if !["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return Err(ConfigError::Invalid(
                    "ANTEROOM_REDIS_URL must be a redis://, rediss:// or unix:// URL".into(),
                ));
            }
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
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "the database pool needs at least one connection".into(),
            ));
        }
        Ok(())
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.listen {
            self.listen = v;
        }
        if let Some(v) = o.metrics_listen {
            self.metrics_listen = Some(v);
        }
        if let Some(v) = &o.admin_key {
            self.admin_key = Some(Secret::new(v.clone()));
        }
        if let Some(v) = &o.ticket_secret {
            self.ticket_secret = Some(Secret::new(v.clone()));
        }
        if let Some(v) = &o.ticket_secret_previous {
            self.ticket_secret_previous = v
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.clone()))
                .collect();
        }
        if let Some(v) = o.seed_demo {
            self.seed_demo = Some(v);
        }
        if let Some(v) = &o.redis_url {
            self.redis.url = Some(Secret::new(v.clone()));
        }
        if let Some(v) = &o.redis_prefix {
            self.redis.prefix = v.clone();
        }
        if let Some(v) = &o.database_url {
            self.database.url = Some(Secret::new(v.clone()));
        }
        if let Some(v) = o.db_max_connections {
            self.database.max_connections = v;
        }
        if let Some(v) = o.db_acquire_timeout_ms {
            self.database.acquire_timeout_ms = v;
        }
        if let Some(v) = &o.kafka_brokers {
            self.kafka.brokers = Some(v.clone());
        }
        if let Some(v) = &o.kafka_topic_prefix {
            self.kafka.topic_prefix = v.clone();
        }
        if let Some(v) = &o.kafka_group_id {
            self.kafka.group_id = v.clone();
        }
        if let Some(v) = &o.kafka_instance_id {
            self.kafka.instance_id = Some(v.clone());
        }
        if let Some(v) = o.rank_interval_ms {
            self.push.rank_interval_ms = v;
        }
        if let Some(v) = o.hold_ttl_secs {
            self.sales.hold_ttl_secs = v;
        }
        if let Some(v) = o.max_holds {
            self.sales.max_holds = v;
        }
        if let Some(v) = &o.web_dir {
            self.web_dir = v.clone();
        }
        if let Some(v) = o.log_format {
            self.log_format = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Settings {
            admin_key: Some(Secret::new("hunter2".into())),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn file_then_overrides() {
        let file: Settings = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nseed_demo = false\n[push]\nrank_interval_ms = 5\n",
        )
        .expect("valid toml");
        assert_eq!(file.listen.port(), 9000);
        assert_eq!(file.push.rank_interval_ms, 5);
        assert_eq!(file.push.heartbeat_secs, 20);
        let mut s = file;
        s.apply(&Overrides {
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..Overrides::default()
        });
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(s.seed_demo, Some(false));
        assert!(toml::from_str::<Settings>("nonsense = 1").is_err());
    }
}
