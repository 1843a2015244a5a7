//! Wiring: builds the backends, services and router from [`Settings`], binds
//! the listener, and supervises the long-lived tasks.
//!
//! [`Application::build`] binds first, so tests can ask for port 0 and read
//! [`Application::port`].
//!
//! Connections are served by our own accept loop over hyper's HTTP/1
//! builder (`Connections`), for the header-read timeout that also bounds
//! idle keep-alive connections, and to give every request its peer address.
//!
//! Every task the gateway starts is on one [`TaskTracker`] (in [`AppState`]),
//! upgraded WebSockets included, so shutdown waits for all of them. The
//! critical ones (the admission consumer, the timer tasks, the live view's
//! reports, the Redis change feed, the node lease, the outbox relay, the
//! rate limits' sweeper) are watched: if one ends while the gateway is
//! serving, or panics, the reason is logged and the gateway stops with an
//! error (a non-zero exit, so the orchestrator restarts it) rather than serve
//! without ever admitting anyone again.
//!
//! Stopping, in order ([`Application::run_until_stopped`]):
//! 1. SIGINT/SIGTERM (or a failed critical task) cancels the stop token:
//!    `/readyz` answers 503 at once, so load balancers take the node out;
//! 2. the node keeps serving for the drain period (`shutdown_drain_secs`);
//! 3. the shutdown token is cancelled: every WebSocket gets close code 1012
//!    ("restarting; reconnect"), SSE streams end, the timer and event tasks
//!    stop, the accept loop stops and every connection answers its request
//!    in flight, then closes;
//! 4. every tracked task is awaited, pending events are flushed, and the
//!    process exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::admission::AdmissionKeys;
use crate::auth::fans::{FanTokens, KeySource};
use crate::auth::{AuthMode, Authenticator};
use crate::challenge::{self, Challenges, UsedSolutions};
use crate::config::{Secret, Settings};
use crate::domain::{NewShow, SeatLayout, Section};
use crate::events::kafka::KafkaBus;
use crate::events::EventBus;
use crate::http::{self, AppState};
use crate::queue::lane::Lane;
use crate::queue::live::LiveQueues;
use crate::queue::timers::{self, TimerHandle};
use crate::queue::{admission, QueueService};
use crate::resilience::{Backend, Breaker};
use crate::sales::availability::{Availability, Boards};
use crate::sales::locks::SeatLocks;
use crate::sales::outbox::{self, OutboxSignal};
use crate::sales::{HoldExpiry, SalesService};
use crate::store::{Database, QueueStore, RedisQueueStore};
use crate::telemetry::Metrics;
use crate::tokens::Keyring;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The optional second listener that serves only /metrics.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    supervisor: Supervisor,
    bus: EventBus,
    drain: Duration,
    header_read_timeout: Duration,
}

/// Starts the long-lived tasks, tracks every task, and stops the gateway
/// when a critical one fails.
#[derive(Debug, Clone)]
struct Supervisor {
    tasks: TaskTracker,
    /// Cancelled to ask the gateway to stop (signal or failure).
    stop: CancellationToken,
    /// Cancelled once the drain is over: everything closes.
    shutdown: CancellationToken,
    /// Why the first critical task that failed stopped.
    failure: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    fn new() -> Self {
        Self {
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            failure: Arc::default(),
        }
    }

    /// Runs a task the gateway cannot serve without. Ending before shutdown,
    /// or panicking, stops the gateway with an error.
    fn critical(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.critical_on(name, &tokio::runtime::Handle::current(), task);
    }

    /// [`Self::critical`] on another runtime (the admission lane's).
    fn critical_on(
        &self,
        name: &'static str,
        runtime: &tokio::runtime::Handle,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.tasks.spawn_on(task, runtime);
        let this = self.clone();
        self.tasks.spawn(async move {
            let why = match handle.await {
                Ok(()) if this.shutdown.is_cancelled() => return,
                // The lane's runtime drops what it still runs at shutdown.
                Err(e) if e.is_cancelled() && this.shutdown.is_cancelled() => return,
                Ok(()) => "ended while the gateway was serving".to_owned(),
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    format!("panicked: {message}")
                }
                Err(e) => format!("was cancelled: {e}"),
            };
            tracing::error!(
                task = name,
                why,
                "a critical task stopped; the gateway stops"
            );
            this.failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| format!("the {name} task {why}"));
            this.stop.cancel();
        });
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        crate::telemetry::install_recorder();
        let supervisor = Supervisor::new();
        let shutdown = supervisor.shutdown.clone();
        let tasks = supervisor.tasks.clone();
        let ticket_secret = settings.ticket_secret.clone().unwrap_or_else(|| {
            tracing::warn!(
                "ANTEROOM_TICKET_SECRET is not set: generated one for this process; \
                 gateway nodes that share a queue must share the secret"
            );
            Secret::generate()
        });
        let keys = Arc::new(Keyring::new(
            &ticket_secret,
            &settings.ticket_secret_previous,
        ));
        let mode = settings.auth_mode()?;
        // Generated (and printed) only in demo mode: jwt mode requires it.
        let challenge_secret = settings
            .challenge
            .secret
            .clone()
            .unwrap_or_else(|| challenge::derive_secret(&ticket_secret));
        let admin_key = settings.admin_key.clone().unwrap_or_else(|| {
            let key = Secret::generate();
            tracing::warn!(
                admin_key = key.expose(),
                "ANTEROOM_ADMIN_KEY is not set: generated this admin key (demo mode)"
            );
            key
        });
        let admission = Arc::new(admission_keys(&settings)?);

        // If start-up fails past this point, tasks already spawned (the Redis
        // feed) stop with it; disarmed once the application is built.
        let stop_on_failure = shutdown.clone().drop_guard();
        let (timer_handle, timer_jobs) = TimerHandle::channel();
        let (lane_timers, lane_jobs) = TimerHandle::channel();
        let lane = Lane::start(shutdown.clone()).context("starting the admission lane's thread")?;
        let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (detaches, closed) = tokio::sync::mpsc::unbounded_channel();

        // Each backend on its own: unset means in-process. A malformed or
        // unreachable URL stops start-up here, with the reason.
        // Every show's seat availability on this node; the feed brings it
        // other nodes' changes.
        let boards = Arc::new(Boards::default());
        let (live, store) = match &settings.redis.url {
            Some(url) => {
                let live = Arc::new(LiveQueues::shared(reports_tx));
                let redis = RedisQueueStore::connect(
                    url.expose(),
                    &settings.redis.prefix,
                    live.clone(),
                    // Every Redis command's deadline (ANTEROOM_REDIS_TIMEOUT_MS).
                    Breaker::new(
                        Backend::Redis,
                        &settings.breakers,
                        Some(settings.redis.timeout()),
                    ),
                    lane.handle(),
                )
                .await
                .context("connecting to Redis (ANTEROOM_REDIS_URL)")?;
                // On the admission lane: changes (admissions among them)
                // are applied, and the subscription's PING answered, while
                // the main workers push ranks.
                supervisor.critical_on(
                    "queue change feed",
                    lane.handle(),
                    crate::store::redis::run_feed(
                        redis.connection(),
                        redis.channel(),
                        Arc::new(crate::store::Fanout(vec![
                            live.clone() as Arc<dyn crate::store::ChangeSink>,
                            boards.clone() as Arc<dyn crate::store::ChangeSink>,
                        ])),
                        shutdown.clone(),
                    ),
                );
                supervisor.critical(
                    "Redis primary watch",
                    crate::store::redis_conn::run_primary_watch(
                        redis.connection(),
                        shutdown.clone(),
                    ),
                );
                supervisor.critical_on(
                    "Redis primary watch (admission lane)",
                    lane.handle(),
                    crate::store::redis_conn::run_primary_watch(
                        redis.admission_connection(),
                        shutdown.clone(),
                    ),
                );
                (live, QueueStore::Redis(Arc::new(redis)))
            }
            None => {
                let live = Arc::new(LiveQueues::new(reports_tx));
                let store = QueueStore::memory(live.clone());
                (live, store)
            }
        };
        let db = match &settings.database.url {
            Some(url) => {
                Database::mysql(url.expose(), &settings.database.pool(), &settings.breakers)
                    .await
                    .context("connecting to MySQL (ANTEROOM_DATABASE_URL)")?
            }
            None => Database::memory(),
        };
        let bus = match &settings.kafka.brokers {
            Some(brokers) => EventBus::Kafka(Arc::new(
                KafkaBus::connect(
                    &settings.kafka,
                    brokers,
                    Breaker::new(Backend::Kafka, &settings.breakers, None),
                )
                .await
                .context("connecting to Kafka (ANTEROOM_KAFKA_BROKERS)")?,
            )),
            None => EventBus::memory(),
        };
        if !store.is_shared() && matches!(bus, EventBus::Kafka(_)) {
            tracing::warn!(
                "Kafka with the in-process queue store: run one node only; \
                 several nodes need ANTEROOM_REDIS_URL"
            );
        }
        // The sale paths share Redis with the queue for seat locks and the
        // seat availability (whose changes ride the queue's change channel),
        // when it is configured.
        let (locks, availability) = match &store {
            QueueStore::Redis(redis) => (
                SeatLocks::redis(redis.connection(), &settings.redis.prefix),
                Availability::redis(
                    redis.connection(),
                    &settings.redis.prefix,
                    redis.channel(),
                    db.clone(),
                    boards,
                ),
            ),
            QueueStore::Memory(_) => (
                SeatLocks::memory(),
                Availability::memory(db.clone(), boards),
            ),
        };
        // So is the record of used proof-of-work solutions.
        let used_solutions = match &store {
            QueueStore::Redis(redis) => {
                UsedSolutions::redis(redis.connection(), &settings.redis.prefix)
            }
            QueueStore::Memory(_) => UsedSolutions::memory(),
        };
        let metrics = Metrics::new(store.clone(), db.clone(), bus.clone());
        let events = bus.subscribe().context("subscribing to domain events")?;
        let auth = match mode {
            AuthMode::Demo => Authenticator::Demo(keys.clone()),
            AuthMode::Jwt => Authenticator::jwt(fan_tokens(&settings).await?, db.clone()),
        };
        let queue = QueueService::new(crate::queue::Parts {
            store,
            db: db.clone(),
            bus: bus.clone(),
            live: live.clone(),
            timers: timer_handle,
            lane_timers,
            tasks: tasks.clone(),
            detaches,
            expiring_warning: Duration::from_secs(settings.push.expiring_warning_secs),
            rebuild_hold: Duration::from_millis(settings.tokens.rebuild_hold_ms),
        });

        let (hold_timers, hold_jobs) = TimerHandle::<HoldExpiry>::channel();
        let outbox_signal = OutboxSignal::default();
        let sales = SalesService::new(crate::sales::Parts {
            db: db.clone(),
            queue: queue.clone(),
            locks,
            availability,
            timers: hold_timers,
            outbox: outbox_signal.clone(),
            tasks: tasks.clone(),
            settings: settings.sales.service(),
        });

        if settings.seed_demo.unwrap_or(db.is_embedded()) {
            seed_demo(&db).await.context("seeding demo shows")?;
        }
        let open_holds = sales
            .schedule_open_holds()
            .await
            .context("scheduling the expiry of open seat holds")?;
        if open_holds > 0 {
            tracing::info!(open_holds, "scheduled the expiry of open seat holds");
        }
        // Before the node serves: no connection is recorded under a name
        // without a lease.
        if let Some(lease) = queue
            .take_lease(settings.presence.lease())
            .await
            .context("taking the node lease in Redis")?
        {
            supervisor.critical("node lease", lease.run(shutdown.clone()));
        }
        supervisor.critical(
            "live view reports",
            queue.clone().run_reports(reports, shutdown.clone()),
        );
        supervisor.critical(
            "connection detaches",
            queue.clone().run_detaches(closed, shutdown.clone()),
        );
        supervisor.critical(
            "backend recovery re-checks",
            queue.clone().run_recovery(shutdown.clone()),
        );
        if queue.is_shared() {
            // Every node follows every show, so each runs the exact expiry
            // timers of every session (the store lets only one of them act).
            for show in queue.shows().await? {
                live.get(show.id);
            }
        }
        // Every node keeps a timer at each show's next transition (the
        // pre-queue opening, the start); the store lets one of them open it.
        queue
            .follow_schedules()
            .await
            .context("reading the shows' schedules")?;
        {
            let queue = queue.clone();
            supervisor.critical(
                "queue timers",
                timers::run(timer_jobs, move |job| queue.dispatch(job), shutdown.clone()),
            );
        }
        {
            let queue = queue.clone();
            let on = lane.handle().clone();
            supervisor.critical_on(
                "admission lane timers",
                lane.handle(),
                timers::run(
                    lane_jobs,
                    move |job| queue.dispatch_on(&on, job),
                    shutdown.clone(),
                ),
            );
        }
        {
            let sales = sales.clone();
            supervisor.critical(
                "hold timers",
                timers::run(hold_jobs, move |job| sales.dispatch(job), shutdown.clone()),
            );
        }
        supervisor.critical(
            "admission consumer",
            admission::run(queue.clone(), events, settings.fault, shutdown.clone()),
        );
        supervisor.critical(
            "outbox relay",
            outbox::run(db.clone(), bus.clone(), outbox_signal, shutdown.clone()),
        );

        let limits = http::limits::Limits::new(&settings.limits);
        supervisor.critical(
            "rate limits sweeper",
            limits.clone().sweep(shutdown.clone()),
        );
        let state = AppState::new(http::Parts {
            queue,
            sales,
            db,
            keys,
            auth,
            admission,
            admin_key,
            origin_key: settings.admission.origin_key.clone(),
            push: settings.push.clone(),
            frame_budget: crate::push::budget::FrameBudget::new(&settings.push),
            tokens: settings.tokens.clone(),
            metrics,
            tasks,
            stop: supervisor.stop.clone(),
            shutdown,
            challenges: Challenges::new(
                &challenge_secret,
                Duration::from_secs(settings.challenge.ttl_secs),
                used_solutions,
            ),
            limits,
            proxies: http::proxies::TrustedProxies::new(&settings.limits.trusted_proxies),
            origins: http::origin::AllowedOrigins::new(&settings.http.allowed_origins),
        });
        let assets = http::assets::Assets::new(settings.web_dir.as_deref());
        let router = http::router(state.clone(), assets);
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (ANTEROOM_METRICS_LISTEN)"))?,
            ),
            None => None,
        };
        stop_on_failure.disarm();
        Ok(Self {
            listener,
            router,
            metrics_listener,
            state,
            supervisor,
            bus,
            drain: Duration::from_secs(settings.shutdown_drain_secs),
            header_read_timeout: settings.http.header_read_timeout(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The handlers' state: the services, for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel to stop the application gracefully (see the module doc).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.supervisor.stop.clone()
    }

    /// Serves until stopped, then drains and shuts down in order (see the
    /// module doc). An error if a critical task failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.supervisor.shutdown.clone();
        let tasks = self.supervisor.tasks.clone();
        tracing::info!(addr = %self.local_addr(), "anteroom listening");
        let connections = Connections {
            http: http1_builder(self.header_read_timeout),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        };
        if let Some(listener) = self.metrics_listener {
            let router = http::metrics_router(self.state.clone());
            tasks.spawn(connections.clone().serve(listener, router));
        }
        let stop = self.supervisor.stop.clone();
        let drain = self.drain;
        let drained = async move {
            stop.cancelled().await;
            tracing::info!(drain = ?drain, "stopping: /readyz answers 503 while connections drain");
            tokio::time::sleep(drain).await;
            tracing::info!("closing connections");
            shutdown.cancel();
        };
        tokio::join!(drained, connections.serve(self.listener, self.router));
        // Whatever ended the server, everything else stops too.
        self.supervisor.stop.cancel();
        self.supervisor.shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        self.bus.flush();
        if let Some(failure) = self.supervisor.failure() {
            anyhow::bail!("stopped because {failure}");
        }
        tracing::info!("anteroom stopped");
        Ok(())
    }
}

/// The admission token keys: from the configured files, or (demo mode,
/// where `auth_mode` allows no key file) generated for this process.
fn admission_keys(settings: &Settings) -> anyhow::Result<AdmissionKeys> {
    let a = &settings.admission;
    match &a.key_file {
        Some(path) => AdmissionKeys::from_files(
            path,
            &a.previous_key_files,
            a.issuer.clone(),
            a.audience.clone(),
        )
        .context("loading the admission keys (ANTEROOM_ADMISSION_KEY_FILE)"),
        None => {
            tracing::warn!(
                "ANTEROOM_ADMISSION_KEY_FILE is not set: generated an admission key for this \
                 process; its tokens die with it, and nodes sharing a queue need a shared key"
            );
            Ok(AdmissionKeys::generate(
                a.issuer.clone(),
                a.audience.clone(),
            ))
        }
    }
}

/// The verifier of the ticketing site's tokens (jwt mode; `auth_mode`
/// checked that exactly one key source and the issuer and audience are
/// set).
async fn fan_tokens(settings: &Settings) -> anyhow::Result<FanTokens> {
    let a = &settings.auth;
    let source = match (&a.jwks_url, &a.jwks_file, &a.hs256_secret) {
        (Some(url), _, _) => KeySource::JwksUrl(url.clone()),
        (_, Some(path), _) => KeySource::JwksFile(path.clone()),
        (_, _, Some(secret)) => KeySource::Hs256(secret.expose().as_bytes().to_vec()),
        _ => anyhow::bail!("jwt mode needs a key source"),
    };
    let (Some(issuer), Some(audience)) = (&a.issuer, &a.audience) else {
        anyhow::bail!("jwt mode needs ANTEROOM_AUTH_ISSUER and ANTEROOM_AUTH_AUDIENCE");
    };
    Ok(FanTokens::new(
        source,
        issuer.clone(),
        audience.clone(),
        Duration::from_secs(a.jwks_refetch_secs),
    )
    .await)
}

/// HTTP/1.1 (all the gateway serves) with a header-read timeout.
///
/// hyper starts that timer whenever it waits for a request head: on a new
/// connection, and again when a keep-alive connection goes idle after a
/// response (hyper 1.x `proto::h1::conn`, `State::idle`). So the one
/// setting closes slow-header (slowloris) connections and idle keep-alive
/// ones alike, and no separate idle timeout is needed. It never runs while
/// a response streams (SSE) or after an upgrade (WebSocket), so a fan who
/// holds either is not affected.
fn http1_builder(header_read_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    http
}

/// The accept loop and the connections it starts (both listeners).
///
/// Not `axum::serve`, which cannot set hyper's header-read timeout. Each
/// connection is a tracked task that finishes gracefully once the shutdown
/// token is cancelled: the request in flight is answered, then the
/// connection closes (an idle one at once). hyper-util's `GracefulShutdown`
/// would do the same, but it only watches upgradeable connections of its
/// HTTP/1+2 `auto` builder, which would bring in an HTTP/2 stack the gateway
/// does not serve; the tracker is waited for anyway.
#[derive(Clone)]
struct Connections {
    http: hyper::server::conn::http1::Builder,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// The longest pause after a failed accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Connections {
    /// Accepts until the shutdown token is cancelled; each connection's
    /// requests carry its peer address (`ConnectInfo<SocketAddr>`), which
    /// the per-IP rate limit reads.
    async fn serve(self, listener: TcpListener, router: axum::Router) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                // The peer gave up before we accepted: nothing to do.
                Err(e) if is_connection_error(&e) => continue,
                // Out of file descriptors (EMFILE, ENFILE) or memory: the
                // pending connection stays queued and accept would fail again
                // at once, so wait before retrying instead of spinning,
                // longer each time, while connections close.
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "accepting a connection failed");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            self.connection(stream, peer, router.clone());
        }
    }

    fn connection(&self, stream: tokio::net::TcpStream, peer: SocketAddr, router: axum::Router) {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let conn = self
            .http
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // Timeouts, resets and malformed requests: the client's doing.
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        });
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

/// Applies the migrations and returns (`anteroom migrate`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    configured_mysql(settings).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Creates the demo shows (`anteroom seed-demo`) and returns.
pub async fn seed_demo_command(settings: &Settings) -> anyhow::Result<()> {
    seed_demo(&configured_mysql(settings).await?).await
}

/// The configured MySQL database, migrated; for the one-shot commands.
async fn configured_mysql(settings: &Settings) -> anyhow::Result<Database> {
    let url = settings
        .database
        .url
        .as_ref()
        .context("ANTEROOM_DATABASE_URL is not set")?;
    Database::mysql(url.expose(), &settings.database.pool(), &settings.breakers)
        .await
        .context("connecting to and migrating the database")
}

/// Demo shows with seats, created once (when there are no shows yet).
async fn seed_demo(db: &Database) -> anyhow::Result<()> {
    if !db.shows().await?.is_empty() {
        tracing::info!("shows exist already; demo shows not created");
        return Ok(());
    }
    let section = |name: &str, rows, seats_per_row, price| Section {
        name: name.to_owned(),
        rows,
        seats_per_row,
        price,
    };
    let demos = [
        (
            "Aurora — Arena Tour 2027, Night 1",
            100,
            600,
            vec![
                section("Floor", 10, 20, 120),
                section("Lower Bowl", 15, 30, 80),
                section("Upper Bowl", 20, 40, 45),
            ],
        ),
        (
            "Small Hall Sessions (2 at a time)",
            2,
            120,
            vec![section("Hall", 4, 10, 35)],
        ),
    ];
    for (title, capacity, ttl, sections) in demos {
        let show = NewShow::simple(title, capacity, ttl)
            .map_err(|e| anyhow::anyhow!("demo show {title}: {e}"))?;
        let seats = SeatLayout::parse(sections)
            .map_err(|e| anyhow::anyhow!("demo seats of {title}: {e}"))?
            .seats();
        db.create_show(show, &seats).await?;
    }
    tracing::info!("demo shows created");
    Ok(())
}
