//! Logging and metric descriptions.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

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

/// Describes the metrics and registers the counters at zero so `rate()` and
/// `absent()` behave from the first scrape.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "anteroom_connections",
        "Live push connections by transport (ws, sse)."
    );
    describe_counter!(
        "anteroom_rank_updates_sent_total",
        "Rank frames written to fans."
    );
    describe_counter!(
        "anteroom_events_applied_total",
        "Domain events applied by the admission consumer, by type."
    );
    describe_counter!(
        "anteroom_promotions_total",
        "Fans admitted from the waiting line."
    );
    for transport in ["ws", "sse"] {
        metrics::gauge!("anteroom_connections", "transport" => transport).set(0.0);
    }
    metrics::counter!("anteroom_rank_updates_sent_total").absolute(0);
    metrics::counter!("anteroom_promotions_total").absolute(0);
    for kind in crate::domain::EventKind::ALL {
        metrics::counter!("anteroom_events_applied_total", "type" => kind.topic()).absolute(0);
    }
}
