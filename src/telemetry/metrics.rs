//! The metric catalogue: every family the gateway exports, its help text,
//! and its registration at zero. docs/metrics.md is the operator's copy of
//! this list (a test keeps the two equal), and the Grafana dashboards and
//! alert rules may only use names from it (a test checks that too).
//!
//! Call sites use the name constants below with the `metrics` macros; the
//! label values they pass come from fixed sets (the `*_OUTCOMES` lists next
//! to the code that decides them) or from a show id, never from a fan.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::domain::{EventKind, Removal, ShowId};

pub const HTTP_REQUESTS: &str = "anteroom_http_requests_total";
pub const HTTP_DURATION: &str = "anteroom_http_request_duration_seconds";
pub const CONNECTIONS: &str = "anteroom_connections";
pub const ACTIVATION_PUSH: &str = "anteroom_activation_push_seconds";
pub const RANK_SENT: &str = "anteroom_rank_updates_sent_total";
pub const RANK_COALESCED: &str = "anteroom_rank_updates_coalesced_total";
pub const RANK_INTERVAL: &str = "anteroom_rank_interval_seconds";
pub const QUEUE_WAITING: &str = "anteroom_queue_waiting";
pub const QUEUE_ACTIVE: &str = "anteroom_queue_active";
pub const QUEUE_CAPACITY: &str = "anteroom_queue_capacity";
pub const QUEUE_OPEN: &str = "anteroom_queue_open";
pub const QUEUE_PREQUEUED: &str = "anteroom_queue_prequeued";
pub const QUEUE_RATE: &str = "anteroom_queue_admission_rate";
pub const JOINS: &str = "anteroom_queue_joins_total";
pub const EXITS: &str = "anteroom_queue_exits_total";
pub const PROMOTIONS: &str = "anteroom_promotions_total";
pub const REBUILT: &str = "anteroom_queue_rebuilt_spots_total";
pub const WAIT: &str = "anteroom_queue_wait_seconds";
pub const ESTIMATE_ACCURACY: &str = "anteroom_queue_estimate_accuracy_ratio";
pub const SHOW_INFO: &str = "anteroom_show_info";
pub const EVENTS_APPLIED: &str = "anteroom_events_applied_total";
pub const EVENT_LATENCY: &str = "anteroom_event_latency_seconds";
pub const EVENT_APPLY: &str = "anteroom_event_apply_seconds";
pub const RESERVATIONS: &str = "anteroom_reservations_total";
pub const RESERVATIONS_EXPIRED: &str = "anteroom_reservations_expired_total";
pub const PAYMENTS: &str = "anteroom_payments_total";
pub const LOCKS: &str = "anteroom_lock_acquisitions_total";
pub const LOCK_ACQUIRE: &str = "anteroom_lock_acquire_seconds";
pub const CACHE: &str = "anteroom_cache_requests_total";
pub const OUTBOX_PUBLISHED: &str = "anteroom_outbox_published_total";
pub const OUTBOX_PENDING: &str = "anteroom_outbox_pending";
pub const OUTBOX_OLDEST: &str = "anteroom_outbox_oldest_pending_age_seconds";
pub const KAFKA_PRODUCE_ERRORS: &str = "anteroom_kafka_produce_errors_total";
pub const KAFKA_LAG: &str = "anteroom_kafka_consumer_lag";
pub const KAFKA_FETCHES: &str = "anteroom_kafka_consumer_fetches_total";
pub const KAFKA_ASSIGNED: &str = "anteroom_kafka_assigned_partitions";
pub const REDIS_ERRORS: &str = "anteroom_redis_errors_total";
pub const DB_ERRORS: &str = "anteroom_db_errors_total";
pub const DB_POOL: &str = "anteroom_db_pool_connections";
pub const DB_POOL_MAX: &str = "anteroom_db_pool_max";
pub const BREAKER_STATE: &str = "anteroom_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "anteroom_breaker_transitions_total";
pub const BREAKER_REJECTED: &str = "anteroom_breaker_rejected_total";
pub const JOB_RETRIES: &str = "anteroom_timer_job_retries_total";
pub const PRESENCE_CLAIMED: &str = "anteroom_presence_nodes_claimed_total";
pub const PRESENCE_REAPED: &str = "anteroom_presence_connections_reaped_total";
pub const BUILD_INFO: &str = "anteroom_build_info";

/// Push transports, the `transport` label.
pub const TRANSPORTS: [&str; 2] = ["ws", "sse"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

/// Every family, in the order docs/metrics.md lists them.
pub const CATALOGUE: &[Family] = &[
    family(
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests answered, by route template, method and status.",
    ),
    family(
        HTTP_DURATION,
        Kind::Histogram,
        "Time from request to response head, by route template and method.",
    ),
    family(
        CONNECTIONS,
        Kind::Gauge,
        "Live push connections on this node, by transport.",
    ),
    family(
        ACTIVATION_PUSH,
        Kind::Histogram,
        "From a slot being freed to the active frame written to the admitted fan, by transport.",
    ),
    family(
        RANK_SENT,
        Kind::Counter,
        "Rank frames written to waiting fans.",
    ),
    family(
        RANK_COALESCED,
        Kind::Counter,
        "Rank changes folded into a later frame or that left a fan's rank as it was.",
    ),
    family(
        RANK_INTERVAL,
        Kind::Gauge,
        "Shortest gap between rank frames to a fan behind push.front_ranks on this node, as stretched by push.frame_budget.",
    ),
    family(
        QUEUE_WAITING,
        Kind::Gauge,
        "Fans waiting in the show's line.",
    ),
    family(
        QUEUE_ACTIVE,
        Kind::Gauge,
        "Fans holding an active session in the show.",
    ),
    family(
        QUEUE_CAPACITY,
        Kind::Gauge,
        "Active sessions the show allows at once.",
    ),
    family(
        QUEUE_OPEN,
        Kind::Gauge,
        "1 while the show admits fans (open), 0 otherwise (scheduled, pre-queue, paused, sold out, closed).",
    ),
    family(
        QUEUE_PREQUEUED,
        Kind::Gauge,
        "Fans in the show's pre-queue, not ranked until the opening.",
    ),
    family(
        QUEUE_RATE,
        Kind::Gauge,
        "The show's admission rate, admissions per minute; 0: none (capacity only).",
    ),
    family(JOINS, Kind::Counter, "New spots in the show's line."),
    family(EXITS, Kind::Counter, "Queue entries that ended, by reason."),
    family(
        PROMOTIONS,
        Kind::Counter,
        "Fans admitted from the line, by what freed the slot.",
    ),
    family(
        REBUILT,
        Kind::Counter,
        "Spots put back after the queue store lost a show's queue, by what remembered them.",
    ),
    family(WAIT, Kind::Histogram, "Time from joining to admission."),
    family(
        ESTIMATE_ACCURACY,
        Kind::Histogram,
        "Actual wait ÷ estimated wait, per admitted fan who was given an estimate, by when it was given (at = join: in the join's answer; rank_100: first within 100 of the front).",
    ),
    family(
        SHOW_INFO,
        Kind::Gauge,
        "Always 1 per show, with its title (join on show to label other series by title).",
    ),
    family(
        EVENTS_APPLIED,
        Kind::Counter,
        "Domain events applied by the admission consumer, by type.",
    ),
    family(
        EVENT_LATENCY,
        Kind::Histogram,
        "From an event's occurrence to its effect applied by this node's admission consumer (outbox, bus, apply), by type.",
    ),
    family(
        EVENT_APPLY,
        Kind::Histogram,
        "From the admission consumer receiving an event to its effect applied (retries included), by type.",
    ),
    family(
        RESERVATIONS,
        Kind::Counter,
        "Seat-hold attempts, by outcome.",
    ),
    family(
        RESERVATIONS_EXPIRED,
        Kind::Counter,
        "Holds that ran out unpaid and freed their seat.",
    ),
    family(PAYMENTS, Kind::Counter, "Payment requests, by outcome."),
    family(LOCKS, Kind::Counter, "Seat-lock attempts, by outcome."),
    family(
        LOCK_ACQUIRE,
        Kind::Histogram,
        "Time one seat-lock attempt took.",
    ),
    family(
        CACHE,
        Kind::Counter,
        "Cache reads, by cache and result (hit, miss).",
    ),
    family(
        OUTBOX_PUBLISHED,
        Kind::Counter,
        "Outbox rows published to the event bus.",
    ),
    family(
        OUTBOX_PENDING,
        Kind::Gauge,
        "Outbox rows not yet published.",
    ),
    family(
        OUTBOX_OLDEST,
        Kind::Gauge,
        "Age of the oldest unpublished outbox row (0 when none).",
    ),
    family(
        KAFKA_PRODUCE_ERRORS,
        Kind::Counter,
        "Events the bus failed to publish, by topic.",
    ),
    family(
        KAFKA_LAG,
        Kind::Gauge,
        "Events published but not yet consumed by this node's admission consumer.",
    ),
    family(
        KAFKA_FETCHES,
        Kind::Counter,
        "Fetch requests this node's admission consumer sent to the brokers.",
    ),
    family(
        KAFKA_ASSIGNED,
        Kind::Gauge,
        "Partitions this node's admission consumer holds; NaN while it has no assignment (not ready).",
    ),
    family(REDIS_ERRORS, Kind::Counter, "Failed Redis commands."),
    family(
        DB_ERRORS,
        Kind::Counter,
        "Failed database operations, by kind.",
    ),
    family(
        DB_POOL,
        Kind::Gauge,
        "Database pool connections, by state (in_use, idle).",
    ),
    family(
        DB_POOL_MAX,
        Kind::Gauge,
        "The database pool's maximum size.",
    ),
    family(
        BREAKER_STATE,
        Kind::Gauge,
        "A backend's circuit breaker: 0 closed, 1 half-open (probing), 2 open (calls fail fast), by backend.",
    ),
    family(
        BREAKER_TRANSITIONS,
        Kind::Counter,
        "Circuit breaker state changes, by backend and the state entered.",
    ),
    family(
        BREAKER_REJECTED,
        Kind::Counter,
        "Calls refused at once by an open circuit breaker, by backend.",
    ),
    family(
        JOB_RETRIES,
        Kind::Counter,
        "Queue deadline jobs (expiry, abandonment, detach) that failed and were scheduled again, by kind.",
    ),
    family(
        PRESENCE_CLAIMED,
        Kind::Counter,
        "Lapsed node leases this node claimed.",
    ),
    family(
        PRESENCE_REAPED,
        Kind::Counter,
        "Connections of lapsed nodes this node uncounted from waiting fans.",
    ),
    family(BUILD_INFO, Kind::Gauge, "Always 1; the running version."),
];

/// Latency buckets in seconds: fine at the bottom (pushes and Redis round
/// trips take milliseconds) and out to the minutes a fan may wait.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The event path's buckets: fine up to 100 ms, where the activation
/// target (30 ms through Kafka) and the fetch wait sit.
const EVENT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];
/// Actual ÷ estimated: fine around 1 (exact), out to ten times either way.
const RATIO_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0, 10.0,
];
/// The `at` label of [`ESTIMATE_ACCURACY`].
pub const ESTIMATE_MOMENTS: [&str; 2] = ["join", "rank_100"];

/// The exporter with histogram buckets for every histogram family (without
/// them it would export summaries, which cannot be aggregated across nodes).
pub fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for f in CATALOGUE.iter().filter(|f| f.kind == Kind::Histogram) {
        let buckets = match f.name {
            WAIT => WAIT_BUCKETS,
            ESTIMATE_ACCURACY => RATIO_BUCKETS,
            EVENT_LATENCY | EVENT_APPLY => EVENT_BUCKETS,
            _ => LATENCY_BUCKETS,
        };
        builder = builder
            .set_buckets_for_metric(Matcher::Full(f.name.to_owned()), buckets)
            .expect("bucket lists are non-empty");
    }
    builder
}

/// Describes every family and registers the series whose labels are known
/// before any traffic, at zero.
pub fn register() {
    for f in CATALOGUE {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram if f.name == ESTIMATE_ACCURACY => {
                metrics::describe_histogram!(f.name, f.help)
            }
            Kind::Histogram => metrics::describe_histogram!(f.name, metrics::Unit::Seconds, f.help),
        }
    }
    for transport in TRANSPORTS {
        metrics::gauge!(CONNECTIONS, "transport" => transport).set(0.0);
        // Histograms appear (empty) once registered.
        let _ = metrics::histogram!(ACTIVATION_PUSH, "transport" => transport);
    }
    let _ = metrics::histogram!(WAIT);
    for at in ESTIMATE_MOMENTS {
        let _ = metrics::histogram!(ESTIMATE_ACCURACY, "at" => at);
    }
    let _ = metrics::histogram!(LOCK_ACQUIRE);
    for name in [
        RANK_SENT,
        RANK_COALESCED,
        RESERVATIONS_EXPIRED,
        OUTBOX_PUBLISHED,
        REDIS_ERRORS,
        PRESENCE_CLAIMED,
        PRESENCE_REAPED,
        KAFKA_FETCHES,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for source in crate::queue::REBUILD_SOURCES {
        metrics::counter!(REBUILT, "source" => *source).absolute(0);
    }
    for kind in EventKind::ALL {
        metrics::counter!(EVENTS_APPLIED, "type" => kind.topic()).absolute(0);
        let _ = metrics::histogram!(EVENT_LATENCY, "type" => kind.topic());
        let _ = metrics::histogram!(EVENT_APPLY, "type" => kind.topic());
        metrics::counter!(KAFKA_PRODUCE_ERRORS, "topic" => kind.topic()).absolute(0);
    }
    for outcome in crate::sales::RESERVATION_OUTCOMES {
        metrics::counter!(RESERVATIONS, "outcome" => *outcome).absolute(0);
    }
    for outcome in crate::sales::PAYMENT_OUTCOMES {
        metrics::counter!(PAYMENTS, "outcome" => *outcome).absolute(0);
    }
    for outcome in crate::sales::locks::LOCK_OUTCOMES {
        metrics::counter!(LOCKS, "outcome" => *outcome).absolute(0);
    }
    for result in ["hit", "miss"] {
        metrics::counter!(CACHE, "cache" => "seats", "result" => result).absolute(0);
    }
    for kind in crate::store::DbError::KINDS {
        metrics::counter!(DB_ERRORS, "kind" => *kind).absolute(0);
    }
    for name in [
        OUTBOX_PENDING,
        OUTBOX_OLDEST,
        KAFKA_LAG,
        KAFKA_ASSIGNED,
        DB_POOL_MAX,
    ] {
        metrics::gauge!(name).set(0.0);
    }
    for state in ["in_use", "idle"] {
        metrics::gauge!(DB_POOL, "state" => state).set(0.0);
    }
    // Every backend, configured or not: an embedded one never fails, so its
    // breaker reads closed.
    for backend in crate::resilience::Backend::ALL {
        let backend = backend.as_str();
        metrics::gauge!(BREAKER_STATE, "backend" => backend).set(0.0);
        metrics::counter!(BREAKER_REJECTED, "backend" => backend).absolute(0);
        for to in crate::resilience::TRANSITIONS {
            metrics::counter!(BREAKER_TRANSITIONS, "backend" => backend, "to" => to).absolute(0);
        }
    }
    for job in crate::queue::jobs::Job::RETRIED {
        metrics::counter!(JOB_RETRIES, "kind" => job).absolute(0);
    }
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    crate::http::register_metrics();
}

/// Registers a show's counters at zero (idempotent): on every scrape for
/// every show, so a show created on another node has them too.
pub fn register_show(show: ShowId) {
    let show = show.to_string();
    metrics::counter!(JOINS, "show" => show.clone()).increment(0);
    for reason in Removal::ALL {
        metrics::counter!(EXITS, "show" => show.clone(), "reason" => reason.as_str()).increment(0);
    }
    for cause in crate::queue::Cause::ALL {
        metrics::counter!(PROMOTIONS, "show" => show.clone(), "cause" => cause.as_str())
            .increment(0);
    }
}
