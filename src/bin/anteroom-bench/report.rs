//! The results: a table per backend next to the targets, and one JSON
//! document for all.

use serde::Serialize;
use serde_json::{json, Value};

use crate::gateway::{Backend, Tuning};
use crate::sale::SaleResult;
use crate::scenarios::{JoinResult, QueueResults, ReserveResult};
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Run {
    pub backend: Backend,
    pub rank_interval_ms: u64,
    pub frame_budget: Option<u64>,
    pub db_max_connections: u32,
    /// The gateway's `kafka.fetch_wait_max_ms` (`None`: its default).
    pub fetch_wait_max_ms: Option<u32>,
    pub queue: Option<QueueResults>,
    pub joins: Option<JoinResult>,
    pub reserve: Option<ReserveResult>,
    pub sale_open: Option<SaleResult>,
}

impl Run {
    pub fn new(backend: Backend, tuning: &Tuning) -> Self {
        Self {
            backend,
            rank_interval_ms: tuning.rank_interval_ms,
            frame_budget: tuning.frame_budget,
            db_max_connections: tuning.db_max_connections,
            fetch_wait_max_ms: tuning.fetch_wait_max_ms,
            queue: None,
            joins: None,
            reserve: None,
            sale_open: None,
        }
    }
}

pub fn print(run: &Run) {
    let mut rows: Vec<[String; 3]> = Vec::new();
    let kafka = run.backend == Backend::Production;
    if let Some(q) = &run.queue {
        rows.push([
            format!(
                "idle WebSocket, RSS per connection ({} fans)",
                q.idle.connections
            ),
            format!("{:.2} KiB", q.idle.rss_per_connection_bytes as f64 / 1024.0),
            "≤ 6 KB (issue 15)".into(),
        ]);
        rows.push([
            format!("rank fan-out ({} waiting)", q.fanout.waiting_fans),
            format!(
                "{:.0} frames/s (CPU: gateway {:.0}%, clients {:.0}%)",
                q.fanout.frames_per_sec,
                q.fanout.gateway_cpu_share * 100.0,
                q.fanout.clients_cpu_share * 100.0
            ),
            "≥ 50,000 frames/s".into(),
        ]);
        let demand = match q.fanout.promotion_demand {
            d if d > 0.0 => format!("{d:.0}/s (demanded)"),
            _ => "as many as possible".into(),
        };
        rows.push([
            "  promotions during the fan-out, leave → active".into(),
            format!(
                "{:.1}/s, {}",
                q.fanout.promotions as f64 / q.fanout.secs,
                percentiles(q.fanout.promotion_latency.as_ref(), false)
            ),
            demand,
        ]);
        rows.push([
            "  of those, written by the gateway within 10 / 25 ms".into(),
            format!(
                "{:.1}% / {:.1}% (leave answered: {})",
                q.fanout.gateway_written_within_10ms * 100.0,
                q.fanout.gateway_written_within_25ms * 100.0,
                percentiles(q.fanout.leave_latency.as_ref(), false)
            ),
            String::new(),
        ]);
        rows.push([
            format!(
                "activation after a leave ({} waiting)",
                q.activation.waiting_fans
            ),
            percentiles(q.activation.leave.as_ref(), false),
            "p99 ≤ 20 ms".into(),
        ]);
        rows.push([
            "activation after a payment (the paying node promotes)".into(),
            percentiles(q.activation.payment.as_ref(), false),
            "p99 ≤ 20 ms".into(),
        ]);
        rows.push([
            format!(
                "  its event through {}: committed → applied (gateway histogram)",
                if kafka { "Kafka" } else { "the in-process bus" }
            ),
            match (
                &q.activation.payment_event,
                &q.activation.payment_event_apply,
            ) {
                (Some(e), apply) => format!(
                    "p50 {:.2} / p99 {:.2} ms ({} events; apply p99 {})",
                    e.p50_ms,
                    e.p99_ms,
                    e.count,
                    apply.map_or("—".to_owned(), |a| format!("{:.2} ms", a.p99_ms))
                ),
                (None, _) => "no samples".into(),
            },
            if kafka { "p99 ≤ 30 ms" } else { "" }.into(),
        ]);
        if kafka {
            rows.push([
                "  the consumer's fetches while nearly idle".into(),
                format!(
                    "{:.0}/s (fetch wait {})",
                    q.activation.consumer_fetches_per_sec,
                    run.fetch_wait_max_ms
                        .map_or("the gateway's default".to_owned(), |w| format!("{w} ms"))
                ),
                String::new(),
            ]);
        }
        rows.push([
            "  of those, written by the gateway within 10 / 25 ms".into(),
            format!(
                "{:.1}% / {:.1}%",
                q.activation.gateway_written_within_10ms * 100.0,
                q.activation.gateway_written_within_25ms * 100.0
            ),
            String::new(),
        ]);
        rows.push([
            "crowd rank frames per timed activation".into(),
            format!("{:.0}", q.activation.crowd_frames_per_round),
            format!("{} (every waiting fan)", q.activation.waiting_fans),
        ]);
    }
    if let Some(j) = &run.joins {
        rows.push([
            format!("joins ({} in flight)", j.concurrency),
            format!(
                "{:.0}/s, {}; gateway {:.0} µs CPU each",
                j.per_sec,
                percentiles(j.latency.as_ref(), false),
                j.gateway_cpu_us_per_join
            ),
            "≥ 15,000/s, p99 < 20 ms, ≤ 60 µs (Redis)".into(),
        ]);
        if let Some(rps) = j.redis_benchmark_per_sec {
            rows.push([
                "the join script in redis-benchmark".into(),
                format!(
                    "{rps:.0}/s; the gateway gets {:.0}% of it",
                    j.per_sec / rps * 100.0
                ),
                String::new(),
            ]);
        }
    }
    if let Some(r) = &run.reserve {
        rows.push([
            format!("reserve ({} fans, {} per seat)", r.fans, r.fans_per_seat),
            percentiles(r.latency.as_ref(), true),
            "p95 ≤ 15 ms (Redis + MariaDB)".into(),
        ]);
        for (name, summary) in [
            ("  of which won (201)", &r.won),
            ("  of which turned away (409)", &r.lost),
            ("the winners' releases after each round", &r.release),
        ] {
            rows.push([
                name.to_owned(),
                percentiles(summary.as_ref(), true),
                String::new(),
            ]);
        }
        rows.push([
            "seats with exactly one winner".into(),
            format!("{} of {}", r.seats_with_one_winner, r.seats_contended),
            "all".into(),
        ]);
    }
    if let Some(s) = &run.sale_open {
        sale_rows(s, &mut rows);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (a, b) = (width(0).max(8), width(1).max(8));
    let budget = match run.frame_budget {
        Some(0) => "none".to_owned(),
        Some(b) => format!("{b} frames/s"),
        None => "the gateway's default".to_owned(),
    };
    println!(
        "\n{:?} backends, rank interval {} ms, frame budget {budget}",
        run.backend, run.rank_interval_ms
    );
    println!("{:a$}  {:b$}  target", "scenario", "measured");
    for [name, value, target] in &rows {
        println!("{name:a$}  {value:b$}  {target}");
    }
}

fn sale_rows(s: &SaleResult, rows: &mut Vec<[String; 3]>) {
    let rate = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{r:.1}/s"));
    rows.push([
        format!(
            "sale-open: {} fans pre-queued on {} gateways ({:.0} s to fill, {} joins retried after 503)",
            s.fans, s.gateways, s.prequeue_secs, s.join_retries
        ),
        format!(
            "RSS {:.2} KiB per connection",
            s.rss_per_connection_bytes as f64 / 1024.0
        ),
        "≤ 8 KiB".into(),
    ]);
    rows.push([
        "  starts_at → first rank, p50 / p99 / max".into(),
        match &s.first_frame {
            Some(f) => format!(
                "{:.0} / {:.0} / {:.0} ms ({} ranks, {} active first)",
                f.p50_ms, f.p99_ms, f.max_ms, s.first_ranks, s.first_actives
            ),
            None => "no samples".into(),
        },
        "max ≤ 5,000 ms".into(),
    ]);
    rows.push([
        "  fans never ranked, or frames out of protocol".into(),
        format!("{} / {}", s.never_ranked, s.unexpected),
        "0 / 0".into(),
    ]);
    rows.push([
        format!(
            "  promotions over {:.0} s, worst 1 s / worst 5 s / mean",
            s.window_secs
        ),
        format!(
            "{} / {} / {} (first admission +{} ms)",
            rate(s.promotions.worst_1s),
            rate(s.promotions.worst_5s),
            rate(s.promotions.mean),
            s.first_admission_ms
                .map_or("—".to_owned(), |ms| format!("{ms:.0}"))
        ),
        format!(
            "≥ {:.1}/s ({}/min)",
            s.promotions.target_per_sec, s.rate_per_minute
        ),
    ]);
    let seconds = |counts: &[u64]| {
        counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    rows.push([
        "  admissions in each second, the store's record / fans' frames".into(),
        format!(
            "{} / {}",
            seconds(&s.admitted_per_sec_store),
            seconds(&s.admitted_per_sec_client)
        ),
        format!("each ≥ {:.0}", s.promotions.target_per_sec.floor()),
    ]);
    rows.push([
        "  the store's admission → the fan's `active` frame, p50 / p99 / max".into(),
        match &s.active_lag {
            Some(f) => format!(
                "{:.0} / {:.0} / {:.0} ms ({} admissions)",
                f.p50_ms, f.p99_ms, f.max_ms, f.count
            ),
            None => "no samples".into(),
        },
        "not behind the fan-out".into(),
    ]);
    rows.push([
        "  the same, the gateways' record (written), p50 / p99".into(),
        match &s.active_push {
            Some(e) => format!("{:.0} / {:.0} ms ({} frames)", e.p50_ms, e.p99_ms, e.count),
            None => "no samples".into(),
        },
        String::new(),
    ]);
    rows.push([
        "  Spearman ρ, join order vs opening place".into(),
        format!("{:+.4} (fails beyond ±{:.4})", s.spearman_rho, s.rho_bound),
        "|ρ| ≤ 0.02".into(),
    ]);
    rows.push([
        "  CPU during the opening".into(),
        format!(
            "gateways {:.0}%, clients {:.0}%",
            s.gateway_cpu_share * 100.0,
            s.clients_cpu_share * 100.0
        ),
        String::new(),
    ]);
}

fn percentiles(s: Option<&Summary>, p95: bool) -> String {
    match s {
        None => "no samples".into(),
        Some(s) if p95 => format!(
            "p50 {:.2} / p95 {:.2} / p99 {:.2} ms",
            s.p50_ms, s.p95_ms, s.p99_ms
        ),
        Some(s) => format!("p50 {:.2} / p99 {:.2} ms", s.p50_ms, s.p99_ms),
    }
}

/// The JSON document: the machine and every run.
pub fn document(runs: &[Run]) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
    });
    json!({
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "cpu": cpu,
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_owned()),
        },
        "runs": runs,
    })
}

/// Fails the run on a correctness violation (never on a missed speed
/// target: those are for the reader of the table). For `sale-open`: every
/// pre-queued fan must get a first rank (or `active`) by the deadline,
/// in protocol, and the opening order must not follow the join order
/// beyond five standard errors of a fair shuffle (|ρ| ≤ 5 / √(n − 1), which
/// holds at any size; the ±0.02 target is the table's).
pub fn check(runs: &[Run]) -> anyhow::Result<()> {
    for run in runs {
        if let Some(s) = &run.sale_open {
            if s.never_ranked + s.unexpected > 0 {
                anyhow::bail!(
                    "sale-open: {} fans never got a first rank and {} broke the protocol",
                    s.never_ranked,
                    s.unexpected
                );
            }
            if s.spearman_rho.abs() > s.rho_bound {
                anyhow::bail!(
                    "sale-open: the opening order follows the join order: ρ = {:+.4}, beyond ±{:.4}",
                    s.spearman_rho,
                    s.rho_bound
                );
            }
        }
        if let Some(r) = &run.reserve {
            if r.seats_with_one_winner != r.seats_contended {
                anyhow::bail!(
                    "{:?}: {} of {} contended seats had exactly one winner",
                    run.backend,
                    r.seats_with_one_winner,
                    r.seats_contended
                );
            }
        }
    }
    Ok(())
}
