//! `anteroom-bench peer`: the idle-connection and rank fan-out workload
//! against anteroom and against a minimal Socket.IO 4 server doing the same
//! coalesced rank fan-out (`bench/peer/server.js`), interleaved in one run
//! (anteroom, peer, anteroom, peer…), and the ratios that travel: bytes per
//! idle connection, rank frames a second delivered under a saturating
//! fan-out, and server CPU per 1,000 frames.
//!
//! The workload is the queue scenario's first two phases
//! ([`scenarios::queue`]) on both: head-of-line fans connected first (the
//! probes), then the crowd of waiting fans held by the `hold` worker
//! processes (the same clients, speaking Socket.IO to the peer), the RSS
//! before and after the crowd, then slots freed at a stated rate for the
//! fan-out's length, every waiting fan's rank moving with each. Anteroom
//! runs with no frame budget, as the peer has none: both are asked for
//! every frame the rank interval allows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::client::Api;
use crate::crowd::{Crowd, Line};
use crate::gateway::{self, Backend, BackendUrls, Gateway, Tuning};
use crate::scenarios::{self, QueueSizes};

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The peer's directory: `server.js` with its `node_modules` (`npm ci`).
    #[arg(long, default_value = "bench/peer")]
    peer_dir: PathBuf,
    /// The gateway binary [default: `anteroom` beside this one].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// anteroom's backends (the peer keeps its line in memory).
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// Where the JSON results (and gateway logs) go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Runs of each server, interleaved.
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Both servers' rank interval.
    #[arg(long, default_value_t = 250)]
    rank_interval_ms: u64,
    #[command(flatten)]
    urls: BackendUrls,
    #[command(flatten)]
    queue: QueueSizes,
}

/// One server's run.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRun {
    pub server: &'static str,
    pub connections: usize,
    pub rss_per_connection_bytes: u64,
    pub waiting_fans: usize,
    pub promotions: u64,
    pub rank_frames: u64,
    pub frames_per_sec: f64,
    pub server_cpu_share: f64,
    pub clients_cpu_share: f64,
    /// Server CPU time per 1,000 rank frames delivered, ms.
    pub cpu_ms_per_1000_frames: f64,
}

/// anteroom's figure over the peer's, the medians of each.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Peer bytes per idle connection / anteroom's (above 1: anteroom
    /// leaner).
    pub bytes_per_connection: f64,
    /// anteroom frames/s / the peer's (above 1: anteroom faster).
    pub frames_per_sec: f64,
    /// Peer CPU per 1,000 frames / anteroom's (above 1: anteroom cheaper).
    pub cpu_per_1000_frames: f64,
}

pub async fn run(args: PeerArgs) -> anyhow::Result<()> {
    let bin = gateway::binary(args.gateway_bin.as_deref())?;
    let server = args.peer_dir.join("server.js");
    if !args.peer_dir.join("node_modules").is_dir() {
        bail!(
            "{} has no node_modules: run `npm ci` there (scripts/bench-peer.sh does)",
            args.peer_dir.display()
        );
    }
    std::fs::create_dir_all(&args.out_dir)?;
    // The fan-out phase only: no timed activations.
    let sizes = QueueSizes {
        rounds: 0,
        ..args.queue.clone()
    };
    let tuning = Tuning {
        rank_interval_ms: args.rank_interval_ms,
        frame_budget: Some(0),
        db_max_connections: 10,
        fetch_wait_max_ms: None,
    };
    let mut runs = Vec::new();
    for repeat in 0..args.repeats.max(1) {
        eprintln!("== anteroom ({:?}), run {}", args.backend, repeat + 1);
        let gw = Gateway::start(&bin, args.backend, &args.urls, &tuning, &args.out_dir).await?;
        let api = Api::new(&gw.base, &gw.admin_key);
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let outcome = scenarios::queue(&gw, &api, &sizes, &tag).await;
        let log = gw.log.clone();
        gw.stop().await?;
        let q = outcome.with_context(|| format!("anteroom run; gateway log: {}", log.display()))?;
        let cpu_secs = q.fanout.gateway_cpu_share * q.fanout.secs;
        runs.push(PeerRun {
            server: "anteroom",
            connections: q.idle.connections,
            rss_per_connection_bytes: q.idle.rss_per_connection_bytes,
            waiting_fans: q.fanout.waiting_fans,
            promotions: q.fanout.promotions,
            rank_frames: q.fanout.rank_frames,
            frames_per_sec: q.fanout.frames_per_sec,
            server_cpu_share: q.fanout.gateway_cpu_share,
            clients_cpu_share: q.fanout.clients_cpu_share,
            cpu_ms_per_1000_frames: per_1000(cpu_secs, q.fanout.rank_frames),
        });
        print_run(runs.last().expect("pushed"));

        eprintln!("== Socket.IO peer, run {}", repeat + 1);
        runs.push(peer_run(&server, &sizes, args.rank_interval_ms).await?);
        print_run(runs.last().expect("pushed"));
    }
    let ratios = ratios(&runs);
    if let Some(r) = &ratios {
        println!(
            "\nmedians of {} runs each: Socket.IO / anteroom bytes per idle connection {:.2}×; \
             anteroom / Socket.IO frames/s {:.2}×; Socket.IO / anteroom CPU per 1,000 frames {:.2}×",
            args.repeats.max(1),
            r.bytes_per_connection,
            r.frames_per_sec,
            r.cpu_per_1000_frames
        );
    }
    let path = args.out_dir.join("peer.json");
    let doc = serde_json::json!({
        "rank_interval_ms": args.rank_interval_ms,
        "anteroom_backend": args.backend,
        "runs": runs,
        "ratios": ratios,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

fn per_1000(cpu_secs: f64, frames: u64) -> f64 {
    cpu_secs * 1e3 * 1e3 / frames.max(1) as f64
}

fn print_run(r: &PeerRun) {
    println!(
        "{:9} {} idle: {:.2} KiB each | fan-out, {} waiting: {:.0} frames/s, server CPU {:.0}% \
         ({:.1} ms per 1,000 frames), clients {:.0}%",
        r.server,
        r.connections,
        r.rss_per_connection_bytes as f64 / 1024.0,
        r.waiting_fans,
        r.frames_per_sec,
        r.server_cpu_share * 100.0,
        r.cpu_ms_per_1000_frames,
        r.clients_cpu_share * 100.0
    );
}

fn ratios(runs: &[PeerRun]) -> Option<Ratios> {
    let median = |server: &str, f: fn(&PeerRun) -> f64| {
        let mut v: Vec<f64> = runs.iter().filter(|r| r.server == server).map(f).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    };
    let both = |f: fn(&PeerRun) -> f64| Some((median("anteroom", f)?, median("socket.io", f)?));
    let (a_bytes, p_bytes) = both(|r| r.rss_per_connection_bytes as f64)?;
    let (a_frames, p_frames) = both(|r| r.frames_per_sec)?;
    let (a_cpu, p_cpu) = both(|r| r.cpu_ms_per_1000_frames)?;
    Some(Ratios {
        bytes_per_connection: p_bytes / a_bytes.max(1.0),
        frames_per_sec: a_frames / p_frames.max(1e-9),
        cpu_per_1000_frames: p_cpu / a_cpu.max(1e-9),
    })
}

/// The peer's process, killed when dropped.
struct Peer {
    child: Child,
    base: String,
}

impl Peer {
    async fn start(server: &Path, rank_interval_ms: u64) -> anyhow::Result<Self> {
        let mut child = Command::new("node")
            .arg(server)
            .env("PORT", "0")
            .env("RANK_INTERVAL_MS", rank_interval_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start node (Node 20) with the peer")?;
        let stdout = child.stdout.take().context("the peer's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the peer did not start in 30 s")??
            .and_then(|l| l.strip_prefix("listening ")?.trim().parse::<u16>().ok())
            .context("the peer's `listening PORT` line")?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the peer has exited")
    }

    /// Admits the head of the peer's line.
    async fn advance(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let res = http.post(format!("{}/advance", self.base)).send().await?;
        if res.status() != 204 {
            bail!("advance: {}", res.status());
        }
        Ok(())
    }
}

/// The peer's side of the workload, phase for phase as
/// [`scenarios::queue`]'s first two.
async fn peer_run(
    server: &Path,
    sizes: &QueueSizes,
    rank_interval_ms: u64,
) -> anyhow::Result<PeerRun> {
    let mut peer = Peer::start(server, rank_interval_ms).await?;
    let base = [peer.base.clone()];
    let http = reqwest::Client::new();
    // The probes: the head of the line, the ones the fan-out admits.
    let probes = Crowd::start(
        &base,
        Line::SocketIo,
        sizes.fanout_probes + 1,
        1,
        "probes",
        None,
        32,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = gateway::rss_kib_of(peer.pid()?)?;
    eprintln!(
        "· connecting {} waiting fans from {} processes",
        sizes.fans, sizes.workers
    );
    let crowd = Crowd::start(
        &base,
        Line::SocketIo,
        sizes.fans,
        sizes.workers,
        "crowd",
        None,
        32,
    )
    .await?;
    crowd.all_ranked(sizes.fans).await?;
    let rss_after = gateway::rss_kib_of(peer.pid()?)?;

    eprintln!("· fan-out for {} s", sizes.fanout_secs);
    let before = crowd.frames().rank + probes.frames().rank;
    let cpu_before = gateway::cpu_time_of(peer.pid()?)?;
    let clients_before = crowd.cpu_time() + probes.cpu_time();
    let started = Instant::now();
    let mut promotions = 0u64;
    while started.elapsed() < Duration::from_secs(sizes.fanout_secs)
        && (promotions as usize) < sizes.fanout_probes
    {
        if sizes.fanout_promotion_rate > 0.0 {
            let due =
                started + Duration::from_secs_f64(promotions as f64 / sizes.fanout_promotion_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        peer.advance(&http).await?;
        promotions += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = gateway::cpu_time_of(peer.pid()?)?.saturating_sub(cpu_before);
    let clients = (crowd.cpu_time() + probes.cpu_time()).saturating_sub(clients_before);
    crowd.settled(Duration::from_millis(300)).await;
    let rank_frames = crowd.frames().rank + probes.frames().rank - before;
    let waiting = sizes.fans + sizes.fanout_probes + 1 - promotions as usize;
    crowd.stop().await;
    probes.stop().await;
    let _ = peer.child.kill().await;
    Ok(PeerRun {
        server: "socket.io",
        connections: sizes.fans,
        rss_per_connection_bytes: rss_after.saturating_sub(rss_before) * 1024
            / sizes.fans.max(1) as u64,
        waiting_fans: waiting,
        promotions,
        rank_frames,
        frames_per_sec: rank_frames as f64 / secs,
        server_cpu_share: cpu.as_secs_f64() / secs,
        clients_cpu_share: clients.as_secs_f64() / secs,
        cpu_ms_per_1000_frames: per_1000(cpu.as_secs_f64(), rank_frames),
    })
}
