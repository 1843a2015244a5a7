//! The one Redis connection every Redis user shares (the queue store, the
//! seat locks and seat map cache, the record of used challenge solutions),
//! its deadline, and which server it points at.
//!
//! Every command has a deadline (`redis.timeout_ms`), and waiting for a
//! (re)connection counts against it: with Redis refusing connections or hung,
//! a request fails within the deadline with a [`StoreError`] (503 +
//! `Retry-After` at the edge) instead of waiting out the client's reconnect
//! backoff (0.2–9.5 s before there was a deadline).
//!
//! The target is one server (`redis://`, `rediss://`, `unix://`), or the
//! primary a set of Redis Sentinels names (`redis+sentinel://`, see
//! [`RedisTarget::parse`]). The redis crate's `ConnectionManager` reconnects
//! to the address it was built with, so on its own it cannot follow a
//! failover: when a command fails the way a failover explains (connection
//! lost or refused, deadline missed, `READONLY` from a demoted primary),
//! [`run_primary_watch`] asks the Sentinels again and, if the primary moved,
//! swaps in a connection manager for the new one. The change feed
//! subscribes on the same primary ([`RedisConnection::client`]) and
//! resubscribes when it moves.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    RedisResult, Value,
};
use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::resilience::Breaker;

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// Sentinel's default port, for a Sentinel address given without one.
const SENTINEL_PORT: u16 = 26379;
/// How long start-up waits for the first connection (or the Sentinels'
/// answer) before giving up with the reason.
const STARTUP_PATIENCE: Duration = Duration::from_secs(5);
/// How long one round of asking the Sentinels may take. Not on any
/// request's path: the watch asks in the background.
const SENTINEL_PATIENCE: Duration = Duration::from_secs(2);
/// While the primary cannot be found (a failover in progress), how often the
/// watch asks again. Sentinel's own failover takes seconds
/// (`down-after-milliseconds` plus an election), so a quarter second adds
/// little to it.
const ASK_AGAIN: Duration = Duration::from_millis(250);

/// Where the gateway's Redis is.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server.
    Direct(redis::Client),
    /// The primary of `master`, as the Sentinels know it.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master: String,
        /// Credentials and database for the primary (not the Sentinels).
        primary: RedisConnectionInfo,
    },
}

impl std::fmt::Debug for RedisTarget {
    // Credentials never print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Direct(c) => f
                .debug_tuple("Direct")
                .field(c.get_connection_info().addr())
                .finish(),
            RedisTarget::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("Sentinel")
                .field(
                    "sentinels",
                    &sentinels.iter().map(|s| s.addr()).collect::<Vec<_>>(),
                )
                .field("master", master)
                .finish(),
        }
    }
}

impl RedisTarget {
    /// Reads `ANTEROOM_REDIS_URL`: a `redis://`, `rediss://` or `unix://`
    /// URL for one server, or
    ///
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db][?sentinel_username=U&sentinel_password=P]`
    ///
    /// for the primary the Sentinels at those addresses (port 26379 when
    /// left out) know as `master`. The user info and database are the
    /// primary's; the Sentinels' own credentials, if they need any, are the
    /// query parameters. Percent-encode reserved characters, as in any URL.
    /// The error never repeats the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return redis::Client::open(url)
                .map(RedisTarget::Direct)
                .map_err(|e| format!("ANTEROOM_REDIS_URL: {e}"));
        };
        let bad = |why: &str| format!("ANTEROOM_REDIS_URL ({SENTINEL_SCHEME}...): {why}");
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("the master's name is missing (…/mymaster)"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };

        let mut segments = path.split('/');
        let master = segments.next().unwrap_or_default();
        if master.is_empty() {
            return Err(bad("the master's name is missing (…/mymaster)"));
        }
        let db: i64 = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| bad("the database after the master's name is not a number"))?,
        };
        if segments.any(|s| !s.is_empty()) {
            return Err(bad("nothing may follow /master/db"));
        }

        let (mut sentinel_user, mut sentinel_password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_username", v)) => sentinel_user = Some(v),
                Some(("sentinel_password", v)) => sentinel_password = Some(v),
                _ => {
                    return Err(bad(
                        "the only parameters are sentinel_username and sentinel_password",
                    ))
                }
            }
        }
        let sentinel_auth = match (sentinel_user, sentinel_password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                user.unwrap_or_default(),
                password.unwrap_or_default()
            ),
        };

        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(bad("an empty Sentinel address"));
            }
            let has_port = host
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            let address = if has_port {
                host.to_owned()
            } else {
                format!("{host}:{SENTINEL_PORT}")
            };
            let info = format!("redis://{sentinel_auth}{address}")
                .into_connection_info()
                .map_err(|_| bad("a Sentinel address is not host[:port]"))?;
            sentinels.push(info);
        }

        // The primary's credentials, decoded the way any redis:// URL's are.
        let primary = format!(
            "redis://{}localhost/{db}",
            userinfo.map(|u| format!("{u}@")).unwrap_or_default()
        )
        .into_connection_info()
        .map_err(|_| bad("the user info is not user:password"))?;
        Ok(RedisTarget::Sentinel {
            sentinels,
            master: master.to_owned(),
            primary: primary.redis_settings().clone(),
        })
    }
}

/// The shared connection: cheap to clone, a deadline on every command.
/// Pass it wherever the redis crate wants a connection.
#[derive(Clone)]
pub struct RedisConnection(Arc<Shared>, Duration);

/// The longest deadline a command may be given ([`RedisConnection::with_deadline`]):
/// the bound of the client's own response timeout.
pub const MAX_DEADLINE: Duration = Duration::from_secs(10);

struct Shared {
    target: RedisTarget,
    config: ConnectionManagerConfig,
    /// The Redis circuit breaker: every command passes it.
    breaker: Breaker,
    primary: RwLock<Primary>,
    /// Signalled when a command failed the way a moved primary explains;
    /// [`run_primary_watch`] waits on it. One stored permit coalesces a
    /// burst of failures into one look.
    suspect: tokio::sync::Notify,
    /// Keeps its connections to the Sentinels between looks.
    sentinel: tokio::sync::Mutex<Option<SentinelClient>>,
    /// Set while a Sentinel is promoting a replica: until the connection
    /// moves (the generation changes) or the fence's time is up, commands
    /// fail at once rather than reach the old primary ([`announcements`]).
    fence: std::sync::Mutex<Option<Fence>>,
}

#[derive(Debug, Clone, Copy)]
struct Fence {
    generation: u64,
    until: tokio::time::Instant,
}

#[derive(Clone)]
struct Primary {
    client: redis::Client,
    manager: ConnectionManager,
    /// Bumped each time the connection is replaced (the primary moved, or
    /// answered `READONLY`), so the change feed knows to resubscribe.
    generation: u64,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let primary = self.primary();
        f.debug_struct("RedisConnection")
            .field("target", &self.0.target)
            .field("primary", primary.client.get_connection_info().addr())
            .field("deadline", &self.1)
            .finish()
    }
}

fn timed_out(deadline: Duration) -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from Redis within {deadline:?}"),
    )
    .into()
}

/// Whether a failed command says "this is not the primary (any more)".
fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly) || e.code() == Some("READONLY")
}

impl RedisConnection {
    /// Connects to the target (asking the Sentinels first, if it is one),
    /// failing fast with the reason. Every command passes `breaker` and has
    /// its deadline (`redis.timeout_ms` if it has none).
    pub async fn connect(target: RedisTarget, breaker: Breaker) -> Result<Self, StoreError> {
        let deadline = breaker
            .deadline()
            .unwrap_or_else(|| crate::config::RedisSettings::default().timeout());
        // The crate's own reconnect backoff runs behind the deadline; capped
        // at a second so a recovered server is found again within about one.
        // The client's own response timeout only bounds the longest
        // deadline a caller may ask for; each command's own deadline is
        // applied in `within_deadline`.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(deadline.max(MAX_DEADLINE)))
            .set_connection_timeout(Some(deadline))
            .set_max_delay(Duration::from_secs(1));
        let (client, sentinel) = match &target {
            RedisTarget::Direct(client) => (client.clone(), None),
            RedisTarget::Sentinel {
                sentinels,
                master,
                primary,
            } => {
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(primary.clone());
                let mut sentinel = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                let client = tokio::time::timeout(STARTUP_PATIENCE, sentinel.async_get_client())
                    .await
                    .map_err(|_| StoreError::TimedOut(STARTUP_PATIENCE))??;
                (client, Some(sentinel))
            }
        };
        let manager = tokio::time::timeout(
            STARTUP_PATIENCE,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        .map_err(|_| StoreError::TimedOut(STARTUP_PATIENCE))??;
        Ok(Self(
            Arc::new(Shared {
                target,
                config,
                // The deadline is applied inside each command
                // (`within_deadline`), where a miss can wake the primary watch;
                // the breaker's own timer would cut it off first.
                breaker: breaker.untimed(),
                primary: RwLock::new(Primary {
                    client,
                    manager,
                    generation: 0,
                }),
                suspect: tokio::sync::Notify::new(),
                sentinel: tokio::sync::Mutex::new(sentinel),
                fence: std::sync::Mutex::new(None),
            }),
            deadline,
        ))
    }

    /// The same connection with another deadline per command (at most
    /// [`MAX_DEADLINE`]): for the few scripts whose work grows with a whole
    /// line (a snapshot, the opening, the end of a sale).
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self(self.0.clone(), deadline.min(MAX_DEADLINE))
    }

    /// The Redis circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.0.breaker
    }

    fn primary(&self) -> Primary {
        self.0
            .primary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A client for the current primary (for connections of their own, such
    /// as the change feed's subscription), and the generation it belongs to.
    pub fn client(&self) -> (redis::Client, u64) {
        let p = self.primary();
        (p.client, p.generation)
    }

    /// The current generation (see [`RedisConnection::client`]).
    pub fn generation(&self) -> u64 {
        self.0
            .primary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    fn fenced(&self) -> bool {
        let fence = *self.0.fence.lock().unwrap_or_else(PoisonError::into_inner);
        fence.is_some_and(|f| {
            f.generation == self.generation() && tokio::time::Instant::now() < f.until
        })
    }

    fn set_fence(&self, on: bool) {
        let fence = on.then(|| Fence {
            generation: self.generation(),
            until: tokio::time::Instant::now() + FENCE_MAX,
        });
        *self.0.fence.lock().unwrap_or_else(PoisonError::into_inner) = fence;
    }

    /// A command: refused at once while fenced (without counting against
    /// the breaker: the server is not failing), else through the breaker,
    /// within the deadline.
    async fn command<T>(
        &self,
        call: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        if self.fenced() {
            let e: RedisError = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "a Redis failover is in progress",
            )
            .into();
            self.after_error(&e);
            return Err(e);
        }
        self.0.breaker.call(self.within_deadline(call)).await
    }

    /// Runs `call` within the deadline; a failure that a moved primary
    /// would explain wakes the watch.
    pub async fn within_deadline<T>(
        &self,
        call: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let result = match tokio::time::timeout(self.1, call).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(self.1)),
        };
        if let Err(e) = &result {
            self.after_error(e);
        }
        result
    }

    fn after_error(&self, e: &RedisError) {
        let look = match self.0.target {
            // Any lost or silent connection may be a failover.
            RedisTarget::Sentinel { .. } => {
                is_readonly(e) || e.is_io_error() || e.is_unrecoverable_error()
            }
            // The address cannot change, but what it names can (DNS, a
            // virtual IP): a fresh connection finds the new primary.
            RedisTarget::Direct(_) => is_readonly(e),
        };
        if look {
            self.0.suspect.notify_one();
        }
    }

    /// Finds the primary; replaces the connection if it moved (or if
    /// `refresh`). Returns whether it replaced it.
    async fn find_primary(&self, refresh: bool) -> RedisResult<bool> {
        let found = match &self.0.target {
            RedisTarget::Direct(client) => client.clone(),
            RedisTarget::Sentinel { .. } => {
                let mut sentinel = self.0.sentinel.lock().await;
                let Some(sentinel) = sentinel.as_mut() else {
                    return Ok(false);
                };
                tokio::time::timeout(SENTINEL_PATIENCE, sentinel.async_get_client())
                    .await
                    .map_err(|_| timed_out(SENTINEL_PATIENCE))??
            }
        };
        let current = self.primary();
        let moved =
            found.get_connection_info().addr() != current.client.get_connection_info().addr();
        if !(moved || refresh) {
            return Ok(false);
        }
        let manager =
            ConnectionManager::new_lazy_with_config(found.clone(), self.0.config.clone())?;
        let mut primary = self
            .0
            .primary
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        tracing::warn!(
            from = %current.client.get_connection_info().addr(),
            to = %found.get_connection_info().addr(),
            "following the Redis primary to a new connection"
        );
        *primary = Primary {
            client: found,
            manager,
            generation: primary.generation + 1,
        };
        drop(primary);
        if moved {
            // Open for the dead primary's failures; the new one starts clean.
            self.0.breaker.reset();
        }
        Ok(true)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        let mut manager = self.primary().manager;
        Box::pin(async move { self.command(manager.req_packed_command(cmd)).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        let mut manager = self.primary().manager;
        Box::pin(async move {
            self.command(manager.req_packed_commands(pipeline, offset, count))
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.primary().manager.get_db()
    }
}

/// Follows the primary until shutdown: after a command failed the way a
/// failover explains, or a Sentinel announced one (`+switch-master`), asks
/// the Sentinels where the primary is (again every [`ASK_AGAIN`] while none
/// answers as one, as during a failover) and moves the shared connection
/// there. For one server, a `READONLY` answer makes a fresh connection.
pub async fn run_primary_watch(conn: RedisConnection, shutdown: CancellationToken) {
    match &conn.0.target {
        RedisTarget::Sentinel {
            sentinels, master, ..
        } => {
            tokio::join!(
                follow(&conn, &shutdown),
                announcements(&conn, sentinels, master, &shutdown)
            );
        }
        RedisTarget::Direct(_) => follow(&conn, &shutdown).await,
    }
}

async fn follow(conn: &RedisConnection, shutdown: &CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = conn.0.suspect.notified() => {}
        }
        let refresh = matches!(conn.0.target, RedisTarget::Direct(_));
        loop {
            match conn.find_primary(refresh).await {
                Ok(_) => break,
                Err(e) => {
                    metrics::counter!(crate::telemetry::metrics::REDIS_ERRORS).increment(1);
                    tracing::warn!(error = %e, retry_in = ?ASK_AGAIN, "cannot find the Redis primary");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(ASK_AGAIN) => {}
            }
        }
        // Failures of commands that were already in flight must not make a
        // second fresh connection at once.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ASK_AGAIN) => {}
        }
    }
}

/// How often the subscription to a Sentinel's announcements is checked
/// with a PING.
const SENTINEL_CHECK: Duration = Duration::from_secs(2);
/// The longest a failover fences commands off, if the announcement that
/// the primary moved never comes (Sentinel's own `failover-timeout`
/// decides when it gives up; the fence does not wait for that).
const FENCE_MAX: Duration = Duration::from_secs(5);

/// What Sentinels announce, and what the gateway does about it.
const ANNOUNCEMENTS: &[&str] = &[
    // The chosen replica is told to become a primary: from here, writes to
    // the old primary are lost. Fence.
    "+failover-state-send-slaveof-noone",
    // The failover ended: move to the new primary (lifts the fence).
    "+switch-master",
    // It will not happen after all: lift the fence.
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];

/// Listens to every Sentinel's announcements about our master. Waiting for
/// a command to fail is not enough: in a failover where the old primary
/// stays up (a planned `SENTINEL FAILOVER`, a partition that heals), it
/// accepts writes until Sentinel turns it into a replica, up to 10 s
/// later, and every write it accepted is lost when it resynchronises from
/// the new primary. So commands are fenced off from the moment the replica
/// is promoted, and the connection moves at `+switch-master`. Only the
/// Sentinel leading the failover announces its steps, hence every Sentinel.
async fn announcements(
    conn: &RedisConnection,
    sentinels: &[ConnectionInfo],
    master: &str,
    shutdown: &CancellationToken,
) {
    futures::future::join_all(
        sentinels
            .iter()
            .map(|sentinel| listen(conn, sentinel, master, shutdown)),
    )
    .await;
}

async fn listen(
    conn: &RedisConnection,
    sentinel: &ConnectionInfo,
    master: &str,
    shutdown: &CancellationToken,
) {
    let mut backoff = ASK_AGAIN;
    loop {
        let subscribed = tokio::time::timeout(SENTINEL_PATIENCE, async {
            let mut pubsub = redis::Client::open(sentinel.clone())?
                .get_async_pubsub()
                .await?;
            pubsub.subscribe(ANNOUNCEMENTS).await?;
            Ok::<_, RedisError>(pubsub)
        });
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = subscribed => s,
        };
        match subscribed {
            Ok(Ok(pubsub)) => {
                backoff = ASK_AGAIN;
                // A switch may have happened while nobody listened.
                conn.0.suspect.notify_one();
                let (mut control, mut messages) = pubsub.split();
                let mut check = tokio::time::interval(SENTINEL_CHECK);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = futures::StreamExt::next(&mut messages) => {
                            let Some(msg) = msg else { break };
                            let payload = msg.get_payload::<String>().unwrap_or_default();
                            announced(conn, msg.get_channel_name(), &payload, master);
                        }
                        _ = check.tick() => {
                            let ping = tokio::time::timeout(SENTINEL_PATIENCE, control.ping::<Value>()).await;
                            if !matches!(ping, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!(sentinel = %sentinel.addr(), "lost a Sentinel's announcements");
            }
            Ok(Err(e)) => {
                tracing::warn!(sentinel = %sentinel.addr(), error = %e, "cannot listen to a Sentinel")
            }
            Err(_) => {
                tracing::warn!(sentinel = %sentinel.addr(), "cannot listen to a Sentinel: no answer")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Whether an announcement is about `master`. Payloads:
/// `+switch-master`: `<master> <old ip> <old port> <new ip> <new port>`;
/// the others: `<type> <name> <ip> <port> @ <master> <ip> <port>`.
fn about(channel: &str, payload: &str, master: &str) -> bool {
    match channel {
        "+switch-master" => payload.split(' ').next() == Some(master),
        _ => payload
            .split(" @ ")
            .nth(1)
            .is_some_and(|m| m.split(' ').next() == Some(master)),
    }
}

/// Acts on one announcement, if it is about `master`.
fn announced(conn: &RedisConnection, channel: &str, payload: &str, master: &str) {
    if !about(channel, payload, master) {
        return;
    }
    tracing::warn!(channel, payload, "Sentinel announcement");
    match channel {
        "+failover-state-send-slaveof-noone" => conn.set_fence(true),
        "+switch-master" => conn.0.suspect.notify_one(),
        _ => conn.set_fence(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> (Vec<String>, String, i64, Option<String>) {
        match RedisTarget::parse(url).expect("parses") {
            RedisTarget::Sentinel {
                sentinels,
                master,
                primary,
            } => {
                let addrs = sentinels.iter().map(|s| s.addr().to_string()).collect();
                let password = primary.password().map(str::to_owned);
                (addrs, master, primary.db(), password)
            }
            RedisTarget::Direct(_) => panic!("not a Sentinel target"),
        }
    }

    #[test]
    fn sentinel_urls_parse() {
        let (addrs, master, db, password) =
            sentinel("redis+sentinel://:s%40cret@10.0.0.1:26380,10.0.0.2,[::1]:5000/mymaster/2");
        assert_eq!(addrs, ["10.0.0.1:26380", "10.0.0.2:26379", "::1:5000"]);
        assert_eq!(master, "mymaster");
        assert_eq!(db, 2);
        assert_eq!(password.as_deref(), Some("s@cret"));

        let (addrs, master, db, password) = sentinel(
            "redis+sentinel://127.0.0.1:26379/queue?sentinel_password=x&sentinel_username=u",
        );
        assert_eq!(addrs, ["127.0.0.1:26379"]);
        assert_eq!((master.as_str(), db, password), ("queue", 0, None));

        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:6379"),
            Ok(RedisTarget::Direct(_))
        ));
    }

    #[test]
    fn announcements_about_other_masters_are_ignored() {
        let promoting = "slave 10.0.0.2:6379 10.0.0.2 6379 @ queue 10.0.0.1 6379";
        let switched = "queue 10.0.0.1 6379 10.0.0.2 6379";
        assert!(about(
            "+failover-state-send-slaveof-noone",
            promoting,
            "queue"
        ));
        assert!(about("+switch-master", switched, "queue"));
        assert!(!about(
            "+failover-state-send-slaveof-noone",
            promoting,
            "queue2"
        ));
        assert!(!about("+switch-master", switched, "que"));
        assert!(!about("+switch-master", "", "queue"));
    }

    #[test]
    fn bad_sentinel_urls_are_refused_without_echoing_them() {
        for url in [
            "redis+sentinel://:hunter2@127.0.0.1:26379",
            "redis+sentinel://:hunter2@127.0.0.1:26379/",
            "redis+sentinel://:hunter2@127.0.0.1:26379/m/x",
            "redis+sentinel://:hunter2@127.0.0.1:26379/m/0/extra",
            "redis+sentinel://:hunter2@127.0.0.1:26379,/m",
            "redis+sentinel://:hunter2@127.0.0.1:26379/m?ssl=true",
        ] {
            let e = RedisTarget::parse(url).expect_err(url);
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("ANTEROOM_REDIS_URL"), "{e}");
        }
    }
}
