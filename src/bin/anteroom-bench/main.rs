//! `anteroom-bench`: measures a gateway process from the outside, on the
//! embedded or the production backends, for the targets in
//! docs/benchmarks.md.
//!
//! - `gateway.rs` starts the gateway under test (and its mock Kafka), or a
//!   cluster of gateways on the same backends;
//! - `scenarios.rs` holds the five measurements on one gateway, `sale.rs`
//!   the on-sale's opening on several (`sale-open`);
//! - `crowd.rs` and `worker.rs` hold thousands of waiting fans in separate
//!   client processes (`anteroom-bench hold`), each from its own 127.0.0.x;
//! - `client.rs` is the fans' side of the API, `stats.rs` the percentiles,
//!   `report.rs` the table and the JSON;
//! - `pow.rs` (`anteroom-bench pow`) times the gateway's proof-of-work check
//!   in this process;
//! - `peer.rs` (`anteroom-bench peer`) runs the idle and fan-out workload
//!   against anteroom and a minimal Socket.IO 4 server, interleaved
//!   (`scripts/bench-peer.sh`).

mod client;
mod crowd;
mod gateway;
mod kafka;
mod peer;
mod pow;
mod report;
mod sale;
mod scenarios;
mod stats;
mod worker;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::gateway::{Backend, BackendUrls, Cluster, Gateway, Tuning};

#[derive(Debug, Parser)]
#[command(
    name = "anteroom-bench",
    about = "Benchmarks an anteroom gateway process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a gateway per backend, run the scenarios, print the table and
    /// write the JSON.
    Run(Box<RunArgs>),
    /// (Internal) hold a share of the waiting crowd; see `worker.rs`.
    Hold(worker::HoldArgs),
    /// Time the proof-of-work check of a join (verify, and the used-solution
    /// record in process and on Redis).
    Pow(pow::PowArgs),
    /// The idle and fan-out workload against anteroom and a minimal
    /// Socket.IO 4 server (bench/peer), interleaved; prints the ratios.
    Peer(Box<peer::PeerArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Idle connections, rank fan-out and activation latency (one queue).
    Queue,
    Joins,
    Reserve,
    /// The on-sale's opening: pre-queued fans on several gateways, the
    /// start, the first ranks, the admission rate (production backends
    /// only; not run unless asked for).
    SaleOpen,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Backends to measure, in turn.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Backend::Embedded])]
    backend: Vec<Backend>,
    /// Scenarios to run.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Scenario::Queue, Scenario::Joins, Scenario::Reserve])]
    scenario: Vec<Scenario>,
    /// The gateway binary [default: `anteroom` beside this one].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Where the JSON results (and gateway logs) go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// The gateway's rank interval (its default is 250 ms).
    #[arg(long, default_value_t = 250)]
    rank_interval_ms: u64,
    /// The gateway's rank-frame budget, frames/s (0: none) [default: the
    /// gateway's].
    #[arg(long)]
    frame_budget: Option<u64>,
    /// The gateway's database pool size on the production backends.
    #[arg(long, default_value_t = 10)]
    db_max_connections: u32,
    /// The gateway's `kafka.fetch_wait_max_ms` on the production backends
    /// [default: the gateway's].
    #[arg(long)]
    fetch_wait_max_ms: Option<u32>,
    #[command(flatten)]
    urls: BackendUrls,
    #[command(flatten)]
    queue: scenarios::QueueSizes,
    #[command(flatten)]
    joins: scenarios::JoinSizes,
    #[command(flatten)]
    reserve: scenarios::ReserveSizes,
    #[command(flatten)]
    sale: sale::SaleSizes,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Hold(args) => runtime.block_on(worker::run(args)),
        Command::Pow(args) => runtime.block_on(pow::run(args)),
        Command::Peer(args) => runtime.block_on(peer::run(*args)),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let bin = gateway::binary(args.gateway_bin.as_deref())?;
    std::fs::create_dir_all(&args.out_dir)?;
    let sale_open = args.scenario.contains(&Scenario::SaleOpen);
    if sale_open && args.backend.contains(&Backend::Embedded) {
        anyhow::bail!(
            "the sale-open scenario runs on the production backends only (its gateways \
             share one Redis, database and Kafka): pass --backend production"
        );
    }
    let single = args.scenario.iter().any(|s| *s != Scenario::SaleOpen);
    let tuning = Tuning {
        rank_interval_ms: args.rank_interval_ms,
        frame_budget: args.frame_budget,
        db_max_connections: args.db_max_connections,
        fetch_wait_max_ms: args.fetch_wait_max_ms,
    };
    let mut runs = Vec::new();
    for &backend in &args.backend {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let mut result = report::Run::new(backend, &tuning);
        if single {
            eprintln!("== {backend:?}: starting {}", bin.display());
            let gw = Gateway::start(&bin, backend, &args.urls, &tuning, &args.out_dir).await?;
            let api = client::Api::new(&gw.base, &gw.admin_key);
            let outcome = async {
                if args.scenario.contains(&Scenario::Queue) {
                    result.queue = Some(scenarios::queue(&gw, &api, &args.queue, &tag).await?);
                }
                if args.scenario.contains(&Scenario::Joins) {
                    let redis = (backend == Backend::Production).then_some(&*args.urls.redis_url);
                    result.joins =
                        Some(scenarios::joins(&gw, &api, &args.joins, &tag, redis).await?);
                }
                if args.scenario.contains(&Scenario::Reserve) {
                    result.reserve = Some(scenarios::reserve(&api, &args.reserve, &tag).await?);
                }
                anyhow::Ok(())
            }
            .await;
            let log = gw.log.clone();
            gw.stop().await?;
            outcome.with_context(|| format!("{backend:?} run; gateway log: {}", log.display()))?;
        }
        if sale_open {
            eprintln!(
                "== {backend:?}: starting {} gateways {}",
                args.sale.sale_gateways,
                bin.display()
            );
            let cluster = Cluster::start(
                &bin,
                &args.urls,
                &tuning,
                &args.out_dir,
                args.sale.sale_gateways,
            )
            .await?;
            let outcome = sale::sale_open(&cluster, &args.sale, &tag, &args.out_dir).await;
            let logs = cluster.gateways[0].log.clone();
            cluster.stop().await;
            result.sale_open =
                Some(outcome.with_context(|| {
                    format!("sale-open; gateway logs beside {}", logs.display())
                })?);
        }
        report::print(&result);
        runs.push(result);
    }
    let path = args.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report::document(&runs))?)?;
    eprintln!("results written to {}", path.display());
    report::check(&runs)
}
