//! Logging and metrics: the log subscriber, the metric catalogue
//! ([`metrics`]) and what `/metrics` reads at each scrape ([`Metrics`]).

pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::{fmt, EnvFilter};

use self::metrics as m;
use crate::config::LogFormat;
use crate::domain::{Show, ShowId, ShowState, Timestamp};
use crate::events::EventBus;
use crate::store::{Database, QueueStore};

/// Installs the global subscriber: `RUST_LOG` sets levels (default `info`);
/// readable text on a terminal, JSON lines otherwise, unless `format` says.
pub fn init(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already installed (a test harness, an embedding program): keep theirs.
    drop(result);
}

/// `/metrics`: the recorder's series plus the values read at each scrape
/// (queue sizes per show, the outbox backlog, the pool, the consumer lag).
/// Reading them when Prometheus asks keeps them exact at that moment without
/// a sampling loop; each scrape's reads are bounded by [`SCRAPE_BUDGET`].
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    store: QueueStore,
    db: Database,
    bus: EventBus,
    /// Shows whose counters are registered (a show created on another
    /// node is registered at the first scrape that lists it).
    registered: Arc<Mutex<HashSet<ShowId>>>,
    /// Each show's title as [`m::SHOW_INFO`] last exported it.
    titles: Arc<Mutex<HashMap<ShowId, String>>>,
}

/// How long a scrape may spend reading the backends. Past it the values
/// read from them are reported unknown (NaN); the backend's own error
/// counter says why.
pub const SCRAPE_BUDGET: Duration = Duration::from_secs(2);

impl Metrics {
    pub fn new(store: QueueStore, db: Database, bus: EventBus) -> Self {
        Self {
            handle: install_recorder(),
            store,
            db,
            bus,
            registered: Arc::default(),
            titles: Arc::default(),
        }
    }

    /// The Prometheus text exposition.
    pub async fn render(&self) -> String {
        self.read_local();
        if tokio::time::timeout(SCRAPE_BUDGET, self.read_backends())
            .await
            .is_err()
        {
            tracing::warn!("reading the backends for /metrics timed out");
            // Unknown, not the last value: a stale gauge on one node would
            // win a `max` across nodes and could fire (or hold) an alert.
            unknown_outbox();
            let shows = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for show in shows {
                set_counts(show, [f64::NAN; 3]);
            }
        }
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// What this process knows without a round trip.
    fn read_local(&self) {
        let pool = self.db.pool_stats();
        ::metrics::gauge!(m::DB_POOL, "state" => "in_use").set(pool.in_use);
        ::metrics::gauge!(m::DB_POOL, "state" => "idle").set(pool.idle);
        ::metrics::gauge!(m::DB_POOL_MAX).set(pool.max);
        let lag = self.bus.consumer_lag().map_or(f64::NAN, |lag| lag as f64);
        ::metrics::gauge!(m::KAFKA_LAG).set(lag);
        ::metrics::counter!(m::KAFKA_FETCHES).absolute(self.bus.consumer_fetches());
        let assigned = self
            .bus
            .assigned_partitions()
            .map_or(f64::NAN, |n| n as f64);
        ::metrics::gauge!(m::KAFKA_ASSIGNED).set(assigned);
    }

    async fn read_backends(&self) {
        let outbox = async {
            match self.db.outbox_backlog().await {
                Ok((pending, oldest)) => {
                    let age = oldest.map_or(0.0, |t| t.until(Timestamp::now()).as_secs_f64());
                    ::metrics::gauge!(m::OUTBOX_PENDING).set(pending as f64);
                    ::metrics::gauge!(m::OUTBOX_OLDEST).set(age);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox backlog unreadable for /metrics");
                    unknown_outbox();
                }
            }
        };
        let shows = async {
            let shows = match self.db.shows().await {
                Ok(shows) => shows,
                Err(e) => {
                    tracing::warn!(error = %e, "shows unreadable for /metrics");
                    return;
                }
            };
            {
                let mut registered = self
                    .registered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for show in &shows {
                    if registered.insert(show.id) {
                        m::register_show(show.id);
                    }
                }
            }
            // A few store round trips at a time, however many shows exist.
            futures::stream::iter(shows)
                .map(|show| self.read_show(show))
                .buffer_unordered(COUNTS_AT_ONCE)
                .collect::<()>()
                .await;
        };
        tokio::join!(outbox, shows);
    }

    /// One show's gauges: its title, its settings, and its line as the
    /// store has it.
    async fn read_show(&self, show: Show) {
        let id = show.id.to_string();
        let renamed = self
            .titles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(show.id, show.title.clone())
            .filter(|old| *old != show.title);
        // A series cannot be withdrawn from the exporter: the old title
        // reads 0, and the dashboards join on `anteroom_show_info == 1`.
        if let Some(old) = renamed {
            ::metrics::gauge!(m::SHOW_INFO, "show" => id.clone(), "title" => old).set(0.0);
        }
        ::metrics::gauge!(m::SHOW_INFO, "show" => id.clone(), "title" => show.title.clone())
            .set(1.0);
        ::metrics::gauge!(m::QUEUE_CAPACITY, "show" => id.clone()).set(show.capacity);
        let open = u8::from(show.state_now() == ShowState::Open);
        ::metrics::gauge!(m::QUEUE_OPEN, "show" => id.clone()).set(open);
        let rate = show.admission_rate.map_or(0, |r| r.per_minute());
        ::metrics::gauge!(m::QUEUE_RATE, "show" => id).set(rate);
        let counts = match self.store.counts(show.id).await {
            Ok(c) => [c.waiting, c.active, c.prequeued].map(|n| n as f64),
            Err(e) => {
                tracing::warn!(error = %e, show = %show.id, "queue counts unreadable for /metrics");
                [f64::NAN; 3]
            }
        };
        set_counts(show.id, counts);
    }
}

/// Per-show count reads in flight during one scrape.
const COUNTS_AT_ONCE: usize = 16;

/// `[waiting, active, prequeued]`.
fn set_counts(show: ShowId, [waiting, active, prequeued]: [f64; 3]) {
    let id = show.to_string();
    ::metrics::gauge!(m::QUEUE_WAITING, "show" => id.clone()).set(waiting);
    ::metrics::gauge!(m::QUEUE_ACTIVE, "show" => id.clone()).set(active);
    ::metrics::gauge!(m::QUEUE_PREQUEUED, "show" => id).set(prequeued);
}

fn unknown_outbox() {
    ::metrics::gauge!(m::OUTBOX_PENDING).set(f64::NAN);
    ::metrics::gauge!(m::OUTBOX_OLDEST).set(f64::NAN);
}

/// The process-wide Prometheus recorder, installed on first use (several
/// applications in one test process share it).
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = m::builder().build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            m::register();
            handle
        })
        .clone()
}
