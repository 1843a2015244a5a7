//! The five measurements. The first three share one show: a queue whose head
//! is the harness's own "probe" fans and whose tail is the crowd of waiting
//! fans held by the worker processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::{self, Api, Fan, Frame};
use crate::crowd::{Crowd, Line};
use crate::gateway::Gateway;
use crate::stats::{Buckets, Estimate, Samples, Summary};

/// Sizes of the queue scenarios.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueSizes {
    /// Waiting fans connected by WebSocket (the crowd).
    #[arg(long, default_value_t = 15_000)]
    pub fans: usize,
    /// Client processes holding the crowd, one 127.0.0.x each.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Length of the fan-out measurement.
    #[arg(long, default_value_t = 10)]
    pub fanout_secs: u64,
    /// Probe fans ahead of the crowd, consumed by the fan-out phase.
    #[arg(long, default_value_t = 3000)]
    pub fanout_probes: usize,
    /// Promotions a second the fan-out phase asks for (the demand): a slot
    /// is freed at most this often, and as soon as the previous promotion
    /// reached its fan if that is later. 0: free the next slot the moment
    /// the previous fan is admitted (as many as the gateway manages).
    #[arg(long, default_value_t = 50.0)]
    pub fanout_promotion_rate: f64,
    /// Activations timed: half freed by a leave, half by a payment.
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// Pause between timed activations, longer than the rank interval so
    /// that each one fans a fresh rank frame out to the whole crowd.
    #[arg(long, default_value_t = 400)]
    pub round_gap_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct IdleResult {
    pub connections: usize,
    pub connect_secs: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_connection_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct FanoutResult {
    pub waiting_fans: usize,
    pub secs: f64,
    /// The promotions a second asked for (0: as many as possible).
    pub promotion_demand: f64,
    pub promotions: u64,
    /// Each promotion during the fan-out: the leave sent → the next fan's
    /// `active` frame read.
    pub promotion_latency: Option<Summary>,
    /// The gateway's own view of the same promotions (slot freed → `active`
    /// written): the share written within 10 ms and within 25 ms.
    pub gateway_written_within_10ms: f64,
    pub gateway_written_within_25ms: f64,
    /// The leave's response (its request sent → `204` read): a promotion
    /// waits for both the frame and this.
    pub leave_latency: Option<Summary>,
    pub rank_frames: u64,
    pub frames_per_sec: f64,
    pub gateway_cpu_share: f64,
    /// CPU the crowd's client processes used over the same window.
    pub clients_cpu_share: f64,
}

#[derive(Debug, Serialize)]
pub struct ActivationResult {
    pub waiting_fans: usize,
    /// Slot freed by `DELETE /queue`: promoted by the node that served it.
    pub leave: Option<Summary>,
    /// Slot freed by a payment: its event goes through the outbox and the
    /// event bus (Kafka on the production backends) before promoting.
    pub payment: Option<Summary>,
    /// Rank frames the crowd received per timed activation (the fan-out that
    /// ran alongside).
    pub crowd_frames_per_round: f64,
    /// The gateway's own view (`anteroom_activation_push_seconds`, slot freed
    /// to frame written): the share of these activations written within
    /// 10 ms and within 25 ms. The rest of the client's figure is the
    /// client's process waiting for a core.
    pub gateway_written_within_10ms: f64,
    pub gateway_written_within_25ms: f64,
    /// The paid rounds' events, from the gateway's
    /// `anteroom_event_latency_seconds` (payment committed → its event
    /// applied by the admission consumer): what an activation waits when
    /// the event is its only path (Kafka on the production set; the paying
    /// node promotes at once, and the event confirms).
    pub payment_event: Option<Estimate>,
    /// The consumer's own share of it (`anteroom_event_apply_seconds`).
    pub payment_event_apply: Option<Estimate>,
    /// Fetch requests a second the admission consumer sent while the rounds
    /// ran (nearly idle: one event per round): the fetch wait's idle cost.
    pub consumer_fetches_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct QueueResults {
    pub idle: IdleResult,
    pub fanout: FanoutResult,
    pub activation: ActivationResult,
}

/// A probe fan's activation, as its reader saw it.
struct Activated {
    probe: usize,
    at: Instant,
    access: String,
}

/// Fans the harness itself connects, at the head of the queue.
struct Probes {
    fans: Vec<Fan>,
    activations: mpsc::UnboundedReceiver<Activated>,
    rank_frames: Arc<AtomicU64>,
}

pub async fn queue(
    gw: &Gateway,
    api: &Api,
    sizes: &QueueSizes,
    run: &str,
) -> anyhow::Result<QueueResults> {
    let probes_needed = sizes.fanout_probes + sizes.rounds + 1;
    let seats = u32::try_from(sizes.rounds + 1).context("rounds")?;
    let show = api.create_show(1, seats, 1).await?;
    let seat_ids = api.seat_ids(show).await?;
    let driver = api.new_fan(show, &format!("{run}-driver")).await?;
    let driver_access = driver
        .access
        .clone()
        .context("the first fan is admitted at once")?;
    eprintln!("· joining {probes_needed} probe fans");
    let mut probes = join_probes(api, show, probes_needed, run).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Idle connections.
    let rss_before = gw.rss_kib()?;
    eprintln!(
        "· connecting {} waiting fans from {} processes",
        sizes.fans, sizes.workers
    );
    let started = Instant::now();
    let crowd = Crowd::start(
        &[api.base().to_owned()],
        Line::Show(show),
        sizes.fans,
        sizes.workers,
        &format!("{run}-crowd"),
        None,
        32,
    )
    .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    crowd.all_ranked(sizes.fans).await?;
    let rss_after = gw.rss_kib()?;
    let idle = IdleResult {
        connections: sizes.fans,
        connect_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) * 1024
            / sizes.fans.max(1) as u64,
    };

    // 2. Fan-out: promote as fast as admitted fans can leave.
    eprintln!("· fan-out for {} s", sizes.fanout_secs);
    let mut current = (driver, driver_access);
    let before = crowd.frames();
    let probe_frames_before = probes.rank_frames.load(Ordering::Relaxed);
    let cpu_before = gw.cpu_time()?;
    let clients_cpu_before = crowd.cpu_time();
    let written_before = ActivationBuckets::read(api).await?;
    let started = Instant::now();
    let mut promotions = 0;
    let mut promotion_latency = Samples::default();
    let mut leave_latency = Samples::default();
    while started.elapsed() < Duration::from_secs(sizes.fanout_secs)
        && promotions + sizes.rounds + 2 < probes_needed
    {
        if sizes.fanout_promotion_rate > 0.0 {
            let due =
                started + Duration::from_secs_f64(promotions as f64 / sizes.fanout_promotion_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let freed = Instant::now();
        api.leave(show, &current.0).await?;
        leave_latency.push(freed.elapsed());
        let next = probes.next_activation().await?;
        promotion_latency.push(next.at.saturating_duration_since(freed));
        current = (probes.fans[next.probe].clone(), next.access);
        promotions += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let written = ActivationBuckets::read(api).await?.since(&written_before);
    let cpu = gw.cpu_time()?.saturating_sub(cpu_before);
    let clients_cpu = crowd.cpu_time().saturating_sub(clients_cpu_before);
    let after = crowd.settled(Duration::from_millis(300)).await;
    let rank_frames = (after.rank - before.rank)
        + (probes.rank_frames.load(Ordering::Relaxed) - probe_frames_before);
    let fanout = FanoutResult {
        waiting_fans: sizes.fans + probes_needed - promotions,
        secs,
        promotion_demand: sizes.fanout_promotion_rate,
        promotions: promotions as u64,
        promotion_latency: promotion_latency.summary(),
        gateway_written_within_10ms: written.within_10ms / written.count.max(1.0),
        gateway_written_within_25ms: written.within_25ms / written.count.max(1.0),
        leave_latency: leave_latency.summary(),
        rank_frames,
        frames_per_sec: rank_frames as f64 / secs,
        gateway_cpu_share: cpu.as_secs_f64() / secs,
        clients_cpu_share: clients_cpu.as_secs_f64() / secs,
    };

    // 3. Activation latency, each alongside a rank frame to the crowd.
    eprintln!("· {} timed activations", sizes.rounds);
    let mut by_leave = Samples::default();
    let mut by_payment = Samples::default();
    let frames_before = crowd.frames().rank;
    let written_before = ActivationBuckets::read(api).await?;
    let events_before = PaymentEvents::read(api).await?;
    let rounds_started = Instant::now();
    let mut seats = seat_ids.into_iter();
    for round in 0..sizes.rounds {
        let pay = round >= sizes.rounds / 2;
        let hold = if pay {
            let seat = seats.next().context("a seat per paid round")?;
            let (status, reservation) = api.hold(show, &current.0.token, &current.1, seat).await?;
            match (status, reservation) {
                (201, Some(r)) => Some(r),
                _ => bail!("hold for a paid round: {status}"),
            }
        } else {
            None
        };
        tokio::time::sleep(Duration::from_millis(sizes.round_gap_ms)).await;
        let freed = Instant::now();
        match hold {
            Some(r) => {
                api.pay(&current.0.token, &current.1, r, &format!("{run}-{round}"))
                    .await?
            }
            None => api.leave(show, &current.0).await?,
        }
        let next = probes.next_activation().await?;
        let latency = next.at.saturating_duration_since(freed);
        if pay {
            by_payment.push(latency)
        } else {
            by_leave.push(latency)
        }
        current = (probes.fans[next.probe].clone(), next.access);
    }
    let settled = crowd.settled(Duration::from_millis(300)).await;
    // The crowd waits behind the probes throughout: it only ever gets rank
    // frames, and none of its connections may have been dropped.
    if settled.active + settled.other + settled.closed != 0 {
        bail!("the crowd got frames other than ranks, or lost connections: {settled:?}");
    }
    let frames_after = settled.rank;
    let written = ActivationBuckets::read(api).await?.since(&written_before);
    let paid = (sizes.rounds - sizes.rounds / 2) as f64;
    let events = PaymentEvents::applied(api, &events_before, paid).await?;
    let fetches = api.metric(FETCHES).await? - events_before.fetches;
    let rounds_secs = rounds_started.elapsed().as_secs_f64();
    crowd.stop().await;
    let activation = ActivationResult {
        waiting_fans: sizes.fans,
        leave: by_leave.summary(),
        payment: by_payment.summary(),
        crowd_frames_per_round: (frames_after - frames_before) as f64 / sizes.rounds.max(1) as f64,
        gateway_written_within_10ms: written.within_10ms / written.count.max(1.0),
        gateway_written_within_25ms: written.within_25ms / written.count.max(1.0),
        payment_event: events.latency.estimate(),
        payment_event_apply: events.apply.estimate(),
        consumer_fetches_per_sec: fetches / rounds_secs,
    };
    Ok(QueueResults {
        idle,
        fanout,
        activation,
    })
}

/// Cumulative buckets of the gateway's WebSocket activation histogram.
struct ActivationBuckets {
    count: f64,
    within_10ms: f64,
    within_25ms: f64,
}

impl ActivationBuckets {
    async fn read(api: &Api) -> anyhow::Result<Self> {
        const H: &str = "anteroom_activation_push_seconds";
        Ok(Self {
            count: api
                .metric(&format!("{H}_count{{transport=\"ws\"}}"))
                .await?,
            within_10ms: api
                .metric(&format!("{H}_bucket{{transport=\"ws\",le=\"0.01\"}}"))
                .await?,
            within_25ms: api
                .metric(&format!("{H}_bucket{{transport=\"ws\",le=\"0.025\"}}"))
                .await?,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            count: self.count - before.count,
            within_10ms: self.within_10ms - before.within_10ms,
            within_25ms: self.within_25ms - before.within_25ms,
        }
    }
}

const FETCHES: &str = "anteroom_kafka_consumer_fetches_total";

/// The gateway's histograms of `payment.completed` events, and its
/// consumer's fetch count.
struct PaymentEvents {
    latency: Buckets,
    apply: Buckets,
    fetches: f64,
}

impl PaymentEvents {
    const LABELS: &str = "type=\"payment.completed\"";

    async fn read(api: &Api) -> anyhow::Result<Self> {
        Ok(Self {
            latency: api
                .histogram("anteroom_event_latency_seconds", Self::LABELS)
                .await?,
            apply: api
                .histogram("anteroom_event_apply_seconds", Self::LABELS)
                .await?,
            fetches: api.metric(FETCHES).await?,
        })
    }

    /// The events applied since `before`, once all `expected` have been
    /// (the last payment's event trails its activation), or after 10 s.
    async fn applied(api: &Api, before: &Self, expected: f64) -> anyhow::Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = Self::read(api).await?;
            let latency = now.latency.since(&before.latency);
            let count = latency.0.last().map_or(0.0, |b| b.1);
            if count >= expected || Instant::now() > deadline {
                return Ok(Self {
                    latency,
                    apply: now.apply.since(&before.apply),
                    fetches: now.fetches,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn join_probes(api: &Api, show: u64, count: usize, run: &str) -> anyhow::Result<Probes> {
    let mut fans: Vec<Fan> = futures::stream::iter(0..count)
        .map(|i| {
            let name = format!("{run}-probe-{i}");
            async move {
                let fan = api.new_fan(show, &name).await?;
                // Points for the paid rounds, whichever probes they reach.
                api.charge(&fan.token, 10).await?;
                Ok::<_, anyhow::Error>(fan)
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    fans.sort_by_key(|f| f.rank);
    let (tx, activations) = mpsc::unbounded_channel();
    let rank_frames = Arc::new(AtomicU64::new(0));
    let sockets: Vec<client::Socket> = futures::stream::iter(&fans)
        .map(|fan| client::connect(api.base(), fan, None))
        .buffered(32)
        .try_collect()
        .await?;
    for (probe, ws) in sockets.into_iter().enumerate() {
        let tx = tx.clone();
        let rank_frames = rank_frames.clone();
        tokio::spawn(client::read_frames(ws, move |frame, text| match frame {
            Frame::Rank => {
                rank_frames.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Active => {
                let _ = tx.send(Activated {
                    probe,
                    at: Instant::now(),
                    access: client::access_token(text).unwrap_or_default(),
                });
            }
            Frame::Other => {}
        }));
    }
    Ok(Probes {
        fans,
        activations,
        rank_frames,
    })
}

impl Probes {
    async fn next_activation(&mut self) -> anyhow::Result<Activated> {
        tokio::time::timeout(Duration::from_secs(30), self.activations.recv())
            .await
            .context("no probe was admitted within 30 s")?
            .context("the probes' readers ended")
    }
}

// ------------------------------------------------------------------- joins

#[derive(Debug, Clone, clap::Args)]
pub struct JoinSizes {
    /// Joins timed (each by a fan signed in beforehand).
    #[arg(long, default_value_t = 20_000)]
    pub joins: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 64)]
    pub join_concurrency: usize,
}

#[derive(Debug, Serialize)]
pub struct JoinResult {
    pub joins: usize,
    pub concurrency: usize,
    pub per_sec: f64,
    pub latency: Option<Summary>,
    /// Gateway CPU time per join: what one core of gateway would sustain,
    /// with the client's share of this machine taken out.
    pub gateway_cpu_us_per_join: f64,
    /// The same join script (joining and admitting, on a show of the same
    /// capacity) run by `redis-benchmark` straight after, as many calls
    /// with as many in flight: what Redis gives the gateway (production
    /// set only; `None` if `redis-benchmark` is not installed).
    pub redis_benchmark_per_sec: Option<f64>,
}

/// The joins scenario's show capacity (so almost every fan waits).
const JOIN_CAPACITY: u32 = 100;

/// `redis`: the production set's Redis, for the `redis-benchmark` run of
/// the same script.
pub async fn joins(
    gw: &Gateway,
    api: &Api,
    sizes: &JoinSizes,
    run: &str,
    redis: Option<&str>,
) -> anyhow::Result<JoinResult> {
    let show = api.create_show(u64::from(JOIN_CAPACITY), 1, 1).await?;
    eprintln!("· signing in {} fans", sizes.joins);
    let tokens: Vec<String> = futures::stream::iter(0..sizes.joins)
        .map(|i| {
            let name = format!("{run}-joiner-{i}");
            async move { api.sign_in(&name).await }
        })
        .buffer_unordered(sizes.join_concurrency)
        .try_collect()
        .await?;
    eprintln!(
        "· {} joins, {} at a time",
        sizes.joins, sizes.join_concurrency
    );
    let cpu_before = gw.cpu_time()?;
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(&tokens)
        .map(|token| async move {
            let sent = Instant::now();
            api.join(show, token).await?;
            Ok::<_, anyhow::Error>(sent.elapsed())
        })
        .buffer_unordered(sizes.join_concurrency)
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = gw.cpu_time()?.saturating_sub(cpu_before);
    let mut samples = Samples::default();
    for l in latencies {
        samples.push(l);
    }
    let redis_benchmark_per_sec = match redis {
        Some(url) => redis_benchmark_join(url, run, sizes).await?,
        None => None,
    };
    Ok(JoinResult {
        joins: sizes.joins,
        concurrency: sizes.join_concurrency,
        per_sec: sizes.joins as f64 / secs,
        latency: samples.summary(),
        gateway_cpu_us_per_join: cpu.as_secs_f64() * 1e6 / sizes.joins as f64,
        redis_benchmark_per_sec,
    })
}

/// Runs the gateway's join script (loaded from the library, so it is the
/// text the gateway runs) in `redis-benchmark`: `sizes.joins` calls,
/// `sizes.join_concurrency` in flight, each a random new fan joining a show
/// of [`JOIN_CAPACITY`] under a key prefix of its own, removed afterwards.
async fn redis_benchmark_join(
    url: &str,
    run: &str,
    sizes: &JoinSizes,
) -> anyhow::Result<Option<f64>> {
    let client = redis::Client::open(url).context("Redis URL")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(anteroom::store::redis::join_script_source())
        .query_async(&mut conn)
        .await?;
    let base = format!("benchrb{run}:{{show:1}}");
    let keys: Vec<String> = [
        "seq", "ver", "waiting", "entries", "ended", "epoch", "prequeue", "active", "admits",
        "tally", "demand",
    ]
    .iter()
    .map(|k| format!("{base}:{k}"))
    .collect();
    // redis://host:port[/db]
    let authority = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        .to_string();
    let mut cmd = tokio::process::Command::new("redis-benchmark");
    cmd.args(["-h", host, "-p", port])
        .args(["-n", &sizes.joins.to_string()])
        .args(["-c", &sizes.join_concurrency.to_string()])
        .args(["-r", "1000000000", "--csv"])
        .args(["EVALSHA", &sha, &keys.len().to_string()])
        .args(&keys)
        // user, now, show, channel, mode, draw (a pre-queue join's only),
        // admit, capacity, ttl, freed, known epoch, rate
        .args([
            "__rand_int__",
            &now_ms,
            "1",
            &format!("benchrb{run}:changes"),
        ])
        .args([
            "line",
            "0",
            "1",
            &JOIN_CAPACITY.to_string(),
            "1000",
            &now_ms,
            "0",
            "0",
        ]);
    eprintln!("· redis-benchmark: the same join script");
    let output = match cmd.output().await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("redis-benchmark"),
    };
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "redis-benchmark failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    // --csv: a header, then "test","rps",...
    let rps = stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.trim_matches('"').parse::<f64>().ok())
        .with_context(|| format!("redis-benchmark's output: {stdout}"))?;
    Ok(Some(rps))
}

// ----------------------------------------------------------------- reserve

#[derive(Debug, Clone, clap::Args)]
pub struct ReserveSizes {
    /// Active fans holding seats at once.
    #[arg(long, default_value_t = 200)]
    pub reserve_fans: usize,
    /// Fans contending for each seat.
    #[arg(long, default_value_t = 4)]
    pub per_seat: usize,
    /// Rounds; each round every fan tries one seat.
    #[arg(long, default_value_t = 25)]
    pub reserve_rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct ReserveResult {
    pub fans: usize,
    pub fans_per_seat: usize,
    pub attempts: usize,
    pub seats_contended: usize,
    /// Seats with exactly one 201 (every contended seat must be).
    pub seats_with_one_winner: usize,
    pub latency: Option<Summary>,
    /// The holds that won their seat (a database transaction each).
    pub won: Option<Summary>,
    /// The holds turned away (`409`: the seat's lock was busy, or the seat
    /// was taken by the time it was free).
    pub lost: Option<Summary>,
    /// The winners' releases, after each round (not part of `latency`).
    pub release: Option<Summary>,
}

pub async fn reserve(api: &Api, sizes: &ReserveSizes, run: &str) -> anyhow::Result<ReserveResult> {
    let per_seat = sizes.per_seat.max(1);
    let seats_per_round = sizes.reserve_fans.div_ceil(per_seat);
    let total_seats = u32::try_from(seats_per_round * sizes.reserve_rounds).context("seats")?;
    let show = api
        .create_show(sizes.reserve_fans as u64, total_seats, 1)
        .await?;
    let seat_ids = api.seat_ids(show).await?;
    let fans: Vec<(Fan, String)> = futures::stream::iter(0..sizes.reserve_fans)
        .map(|i| {
            let name = format!("{run}-buyer-{i}");
            async move {
                let fan = api.new_fan(show, &name).await?;
                let access = api.access(show, &fan).await?;
                Ok::<_, anyhow::Error>((fan, access))
            }
        })
        .buffered(32)
        .try_collect()
        .await?;
    eprintln!(
        "· {} rounds of {} fans on {} seats",
        sizes.reserve_rounds,
        fans.len(),
        seats_per_round
    );
    let mut samples = Samples::default();
    let (mut won, mut lost) = (Samples::default(), Samples::default());
    let mut releases = Samples::default();
    let mut one_winner = 0;
    for round in 0..sizes.reserve_rounds {
        let seats = &seat_ids[round * seats_per_round..(round + 1) * seats_per_round];
        let attempts = fans.iter().enumerate().map(|(f, (fan, access))| {
            let seat = seats[f % seats_per_round];
            async move {
                let sent = Instant::now();
                let (status, reservation) = api.hold(show, &fan.token, access, seat).await?;
                Ok::<_, anyhow::Error>((f, seat, status, reservation, sent.elapsed()))
            }
        });
        let results = futures::future::try_join_all(attempts).await?;
        let mut winners = std::collections::HashMap::<u64, Vec<(usize, u64)>>::new();
        for (f, seat, status, reservation, latency) in results {
            samples.push(latency);
            match (status, reservation) {
                (201, Some(r)) => {
                    won.push(latency);
                    winners.entry(seat).or_default().push((f, r));
                }
                (409, _) => lost.push(latency),
                (status, _) => bail!("hold answered {status}"),
            }
        }
        one_winner += seats
            .iter()
            .filter(|s| winners.get(s).is_some_and(|w| w.len() == 1))
            .count();
        // Winners give their seats back, so the hold limit never applies.
        let fans = &fans;
        let released = futures::future::try_join_all(winners.values().flatten().map(|(f, r)| {
            let sent = Instant::now();
            async move {
                api.release(&fans[*f].0.token, *r).await?;
                Ok::<_, anyhow::Error>(sent.elapsed())
            }
        }))
        .await?;
        released.into_iter().for_each(|l| releases.push(l));
    }
    Ok(ReserveResult {
        fans: sizes.reserve_fans,
        fans_per_seat: per_seat,
        attempts: samples.len(),
        seats_contended: seats_per_round * sizes.reserve_rounds,
        seats_with_one_winner: one_winner,
        latency: samples.summary(),
        won: won.summary(),
        lost: lost.summary(),
        release: releases.summary(),
    })
}
