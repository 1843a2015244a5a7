//! `sale-open`: the on-sale's opening at full size. Fans are pre-queued on
//! several gateway processes that share one Redis, one database and one
//! Kafka, then the sale starts and the harness measures what they see: the
//! time from `starts_at` to each fan's first rank, the promotions a second
//! against the admission rate, the memory each connection costs, and how
//! much the opening order owes to the join order (Spearman's ρ).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::client::Api;
use crate::crowd::{Crowd, Line};
use crate::gateway::Cluster;
use crate::stats::{Buckets, Estimate, Samples, Summary};
use crate::worker::{unix_ns, FanRecord, FirstFrame};

#[derive(Debug, Clone, clap::Args)]
pub struct SaleSizes {
    /// Fans pre-queued before the start.
    #[arg(long, default_value_t = 100_000)]
    pub sale_fans: usize,
    /// Gateway processes (nodes) sharing the backends; each holds about
    /// fans / gateways sockets, which must stay under its open-files limit.
    #[arg(long, default_value_t = 6)]
    pub sale_gateways: usize,
    /// Client processes holding the fans, one 127.0.0.x each; worker `w`
    /// joins and connects through gateway `w % gateways`.
    #[arg(long, default_value_t = 12)]
    pub sale_workers: usize,
    /// Sign-ins and joins in flight per worker while the pre-queue fills.
    #[arg(long, default_value_t = 8)]
    pub sale_join_concurrency: usize,
    /// The show's `admission_rate_per_minute`.
    #[arg(long, default_value_t = 6_000)]
    pub sale_rate: u64,
    /// The show's capacity: keep it above what the rate admits during the
    /// measurement, so that the rate, not the capacity, binds.
    #[arg(long, default_value_t = 50_000)]
    pub sale_capacity: u64,
    /// How far ahead of the `PATCH` the start is set, ms.
    #[arg(long, default_value_t = 3_000)]
    pub sale_start_in_ms: u64,
    /// Promotions are sampled at least this long after the start.
    #[arg(long, default_value_t = 10)]
    pub sale_window_secs: u64,
    /// A fan without a first frame this long after the start is counted
    /// as never ranked (and fails the run).
    #[arg(long, default_value_t = 30)]
    pub sale_deadline_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct SaleResult {
    pub fans: usize,
    pub gateways: usize,
    pub workers: usize,
    pub rate_per_minute: u64,
    pub capacity: u64,
    /// Signing in, joining and connecting every fan (the pre-queue filling).
    pub prequeue_secs: f64,
    /// Joins answered 503 and tried again while the pre-queue filled.
    pub join_retries: u64,
    /// Sum over the gateways, before the fans and with every fan connected.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_connection_bytes: u64,
    /// `starts_at` → each fan's first frame after `prequeue`.
    pub first_frame: Option<Summary>,
    /// Of those first frames: ranks, and `active` (admitted before its rank
    /// went out).
    pub first_ranks: usize,
    pub first_actives: usize,
    /// Fans without a first frame by the deadline.
    pub never_ranked: usize,
    /// Fans whose frames broke the protocol: not `prequeue` first, or a
    /// first frame after it that was neither a rank nor `active`, or one
    /// read before `starts_at`.
    pub unexpected: usize,
    /// The gateways' `anteroom_promotions_total` for the show (summed),
    /// sampled about every second from the start.
    pub promotions: PromotionRates,
    /// Admissions a second as the fans read their `active` frames, per
    /// second from the start (the client's view of the same thing).
    pub admitted_per_sec_client: Vec<u64>,
    /// Admissions a second by the store's own record of when each was
    /// made ([`Cluster::admission_times`]), per second from the start: the
    /// rate as the gateways kept it, free of scrape and delivery delays.
    pub admitted_per_sec_store: Vec<u64>,
    /// `starts_at` → the first `active` frame read.
    pub first_admission_ms: Option<f64>,
    /// The store's record of each admission → the fan reading `active`:
    /// the k-th admission made paired with the k-th `active` read (the
    /// line admits in order). How long an admitted fan's frame waited
    /// behind the fan-out.
    pub active_lag: Option<Summary>,
    /// The gateways' own view of the same: their
    /// `anteroom_activation_push_seconds` (the admission's timer → the
    /// `active` frame written), over every gateway, during the window.
    pub active_push: Option<Estimate>,
    /// Spearman's ρ between join order and opening position, over the fans
    /// with a first frame.
    pub spearman_rho: f64,
    /// Five standard errors of ρ under a fair shuffle, `5 / sqrt(n - 1)`:
    /// the run fails beyond it (a size-independent fairness check).
    pub rho_bound: f64,
    /// Gateway and client CPU over the measurement, as a share of one core.
    pub gateway_cpu_share: f64,
    pub clients_cpu_share: f64,
    pub window_secs: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct PromotionRates {
    /// The target: `rate / 60`.
    pub target_per_sec: f64,
    /// `(seconds since the start, promotions so far)` per sample.
    pub samples: Vec<(f64, f64)>,
    /// The lowest rate over one sample interval (about 1 s) and over five.
    pub worst_1s: Option<f64>,
    pub worst_5s: Option<f64>,
    /// Over the whole window.
    pub mean: Option<f64>,
}

pub async fn sale_open(
    cluster: &Cluster,
    sizes: &SaleSizes,
    run: &str,
    work_dir: &std::path::Path,
) -> anyhow::Result<SaleResult> {
    let admin_key = &cluster.gateways[0].admin_key;
    let apis: Vec<Api> = cluster
        .gateways
        .iter()
        .map(|g| Api::new(&g.base, admin_key))
        .collect();
    let show = apis[0]
        .create_sale(sizes.sale_capacity, sizes.sale_rate)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = cluster.rss_kib()?;

    eprintln!(
        "· pre-queuing {} fans on {} gateways from {} processes",
        sizes.sale_fans,
        cluster.gateways.len(),
        sizes.sale_workers
    );
    let started = Instant::now();
    let bases: Vec<String> = cluster.gateways.iter().map(|g| g.base.clone()).collect();
    let crowd = Crowd::start(
        &bases,
        Line::Show(show),
        sizes.sale_fans,
        sizes.sale_workers,
        &format!("{run}-sale"),
        Some(work_dir),
        sizes.sale_join_concurrency,
    )
    .await?;
    let prequeue_secs = started.elapsed().as_secs_f64();
    let join_retries = crowd.join_retries;
    let fans = sizes.sale_fans as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while crowd.frames().other < fans {
        if Instant::now() > deadline {
            let frames = crowd.frames();
            crowd.stop().await;
            bail!(
                "{} of {fans} pre-queued fans got `prequeue`: {frames:?}",
                frames.other
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = cluster.rss_kib()?;
    let frames = crowd.frames();
    if frames.rank + frames.active != 0 || frames.other != fans {
        crowd.stop().await;
        bail!("pre-queued fans got frames before the start: {frames:?}");
    }

    // The start, a whole second a few seconds ahead.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(sizes.sale_start_in_ms as i64);
    let at = chrono::DateTime::from_timestamp(at.timestamp() + 1, 0).context("start time")?;
    let starts_at = apis[0].set_start(show, at).await?;
    let start_ns = u64::try_from(
        starts_at
            .timestamp_nanos_opt()
            .context("starts_at in range")?,
    )?;
    eprintln!("· the sale starts at {starts_at}");

    let pushes_before = activation_pushes(&apis).await?;
    let (stop_sampling, stop) = tokio::sync::oneshot::channel();
    let sampler = tokio::spawn(sample_promotions(apis.clone(), show, start_ns, stop));
    let until_start = Duration::from_nanos(start_ns.saturating_sub(unix_ns()));
    tokio::time::sleep(until_start).await;
    let cpu_before = cluster.cpu_time()?;
    let clients_cpu_before = crowd.cpu_time();
    let measuring = Instant::now();
    let deadline = measuring + Duration::from_secs(sizes.sale_deadline_secs);
    let window = Duration::from_secs(sizes.sale_window_secs);
    loop {
        let everyone = crowd.frames().firsts >= fans;
        let now = Instant::now();
        if (everyone && now >= measuring + window) || now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let window_secs = measuring.elapsed().as_secs_f64();
    let cpu = cluster.cpu_time()?.saturating_sub(cpu_before);
    let clients_cpu = crowd.cpu_time().saturating_sub(clients_cpu_before);
    let _ = stop_sampling.send(());
    let active_push = activation_pushes(&apis)
        .await?
        .since(&pushes_before)
        .estimate();
    let samples = sampler.await.context("the promotion sampler")??;
    let admitted_store: Vec<u64> = cluster
        .admission_times(show)
        .await?
        .into_iter()
        .map(|ms| u64::try_from(ms).unwrap_or(0) * 1_000_000)
        .filter(|&t| t >= start_ns)
        .collect();
    let admitted_per_sec_store = per_second(admitted_store.iter().copied(), start_ns, window_secs);
    let records = crowd.stop_and_collect().await?;
    if records.len() != sizes.sale_fans {
        bail!(
            "{} records for {} pre-queued fans",
            records.len(),
            sizes.sale_fans
        );
    }

    let mut first_frame = Samples::default();
    let (mut first_ranks, mut first_actives, mut never_ranked, mut unexpected) = (0, 0, 0, 0);
    for r in &records {
        match r.first {
            FirstFrame::None => never_ranked += 1,
            FirstFrame::Unexpected => unexpected += 1,
            _ if r.first_ns < start_ns => unexpected += 1,
            FirstFrame::Rank(_) => first_ranks += 1,
            FirstFrame::Active => first_actives += 1,
        }
        if matches!(r.first, FirstFrame::Rank(_) | FirstFrame::Active) && r.first_ns >= start_ns {
            first_frame.push(Duration::from_nanos(r.first_ns - start_ns));
        }
    }
    let mut admissions: Vec<u64> = records
        .iter()
        .map(|r| r.admitted_ns)
        .filter(|&t| t > 0)
        .collect();
    admissions.sort_unstable();
    let admitted_per_sec_client = per_second(admissions.iter().copied(), start_ns, window_secs);
    let first_admission_ms = admissions
        .first()
        .map(|&t| t.saturating_sub(start_ns) as f64 / 1e6);
    let mut active_lag = Samples::default();
    for (made, read) in admitted_store.iter().zip(&admissions) {
        active_lag.push(Duration::from_nanos(read.saturating_sub(*made)));
    }
    let (spearman_rho, ranked) = opening_correlation(&records, &admissions);
    let target = sizes.sale_rate as f64 / 60.0;
    Ok(SaleResult {
        fans: sizes.sale_fans,
        gateways: cluster.gateways.len(),
        workers: sizes.sale_workers,
        rate_per_minute: sizes.sale_rate,
        capacity: sizes.sale_capacity,
        prequeue_secs,
        join_retries,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) * 1024 / fans.max(1),
        first_frame: first_frame.summary(),
        first_ranks,
        first_actives,
        never_ranked,
        unexpected,
        promotions: PromotionRates::new(target, samples),
        admitted_per_sec_client,
        admitted_per_sec_store,
        first_admission_ms,
        active_lag: active_lag.summary(),
        active_push,
        spearman_rho,
        rho_bound: 5.0 / ((ranked.max(2) - 1) as f64).sqrt(),
        gateway_cpu_share: cpu.as_secs_f64() / window_secs,
        clients_cpu_share: clients_cpu.as_secs_f64() / window_secs,
        window_secs,
    })
}

/// Every gateway's WebSocket activation histogram, added up.
async fn activation_pushes(apis: &[Api]) -> anyhow::Result<Buckets> {
    let mut sum = Buckets::default();
    for api in apis {
        let one = api
            .histogram("anteroom_activation_push_seconds", "transport=\"ws\"")
            .await?;
        sum = sum.plus(&one);
    }
    Ok(sum)
}

/// How many of `times` (ns since the epoch) fall in each whole second
/// from `start_ns`, over the window (earlier ones are not counted).
fn per_second(times: impl Iterator<Item = u64>, start_ns: u64, window_secs: f64) -> Vec<u64> {
    let mut counts = vec![0u64; window_secs.ceil() as usize];
    for t in times.filter(|&t| t >= start_ns) {
        let second = ((t - start_ns) / 1_000_000_000) as usize;
        if let Some(n) = counts.get_mut(second) {
            *n += 1;
        }
    }
    counts
}

/// Sums the show's promotions over every gateway once a second, on the
/// second from a second before `start_ns`, until `stop`. Each sample is
/// timed at its request (the gateways are asked at once).
async fn sample_promotions(
    apis: Vec<Api>,
    show: u64,
    start_ns: u64,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let label = format!("show=\"{show}\"");
    let first = Duration::from_nanos(start_ns.saturating_sub(unix_ns()));
    let first = tokio::time::Instant::now() + first.saturating_sub(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(first, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return Ok(samples),
        }
        let at = (unix_ns() as f64 - start_ns as f64) / 1e9;
        let sums = futures::future::try_join_all(
            apis.iter()
                .map(|api| api.counter_sum("anteroom_promotions_total", &label)),
        )
        .await?;
        samples.push((at, sums.iter().sum()));
    }
}

impl PromotionRates {
    /// Rates over the samples taken from the start on (the one taken at
    /// the start, a moment before or after it, anchors the first window).
    fn new(target_per_sec: f64, samples: Vec<(f64, f64)>) -> Self {
        let from = samples
            .iter()
            .position(|&(t, _)| t >= -0.5)
            .unwrap_or(samples.len());
        let window = &samples[from..];
        let worst = |span: usize| {
            window
                .windows(span + 1)
                .map(|w| (w[span].1 - w[0].1) / (w[span].0 - w[0].0).max(1e-3))
                .min_by(f64::total_cmp)
        };
        let mean = match (window.first(), window.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) / (b.0 - a.0)),
            _ => None,
        };
        Self {
            target_per_sec,
            worst_1s: worst(1),
            worst_5s: worst(5),
            mean,
            samples,
        }
    }
}

/// Spearman's ρ between the order of the joins and the opening order, and
/// how many fans it covers. A fan's place at the opening is its first rank
/// plus the fans admitted before that frame was read (the line moves while
/// the ranks go out), or, for a fan whose first frame was `active`, its
/// place among the admissions.
fn opening_correlation(records: &[FanRecord], admissions: &[u64]) -> (f64, usize) {
    let admitted_by = |t: u64| admissions.partition_point(|&a| a <= t) as f64;
    let (joins, places): (Vec<f64>, Vec<f64>) = records
        .iter()
        .filter_map(|r| {
            let place = match r.first {
                FirstFrame::Rank(rank) => rank as f64 + admitted_by(r.first_ns),
                FirstFrame::Active => admitted_by(r.admitted_ns),
                FirstFrame::None | FirstFrame::Unexpected => return None,
            };
            Some((r.joined_ns as f64, place))
        })
        .unzip();
    (spearman(&joins, &places), joins.len())
}

/// Spearman's rank correlation: Pearson's over the ranks, ties given their
/// average rank. 0 for fewer than two values or no spread.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let n = rx.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// 1-based ranks; tied values share the average of their ranks.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_orders_and_ties() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&x, &[10.0, 20.0, 30.0, 40.0, 50.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        // Textbook: d = (0, 1, -1, 0, 0) gives 1 - 6·2 / (5·24) = 0.9.
        assert!((spearman(&x, &[1.0, 3.0, 2.0, 4.0, 5.0]) - 0.9).abs() < 1e-12);
        assert_eq!(spearman(&x, &[1.0; 5]), 0.0);
    }

    #[test]
    fn worst_windows_follow_the_samples() {
        let samples: Vec<(f64, f64)> = (-1..=8)
            .map(|t| {
                let at = f64::from(t) + 0.001;
                (
                    at,
                    if t <= 2 {
                        0.0
                    } else {
                        f64::from(t - 2) * 100.0
                    },
                )
            })
            .collect();
        let rates = PromotionRates::new(100.0, samples);
        assert_eq!(rates.worst_1s, Some(0.0));
        assert!((rates.worst_5s.expect("5 s") - 60.0).abs() < 1e-9);
        assert!((rates.mean.expect("mean") - 75.0).abs() < 1e-9);
        let short = PromotionRates::new(100.0, vec![(-1.0, 0.0), (0.0, 0.0), (1.0, 90.0)]);
        assert_eq!((short.worst_1s, short.worst_5s), (Some(90.0), None));
    }
}
