//! `anteroom-bench hold`: a client process that signs in, joins and connects
//! a share of the waiting fans, then counts the frames they receive. The
//! harness starts several, each from its own 127.0.0.x, so that no process
//! nears the 20,000 open files limit and no source address runs out of
//! ports.
//!
//! Protocol on stdout, one line each: `ready N` once every fan is connected,
//! then `frames RANK ACTIVE OTHER CLOSED` every 100 ms. It exits when its
//! stdin closes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::client::{self, Api, Frame};

#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub show: u64,
    #[arg(long)]
    pub fans: usize,
    /// Usernames are `{prefix}-{i}`.
    #[arg(long)]
    pub prefix: String,
    /// The local address the WebSockets connect from.
    #[arg(long)]
    pub source: Option<IpAddr>,
    /// Sign-ins and joins in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

#[derive(Debug, Default)]
struct Counts {
    rank: AtomicU64,
    active: AtomicU64,
    other: AtomicU64,
    closed: AtomicU64,
}

pub async fn run(args: HoldArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.base, "");
    let counts = Arc::new(Counts::default());
    let mut out = tokio::io::stdout();
    let sockets: Vec<client::Socket> = futures::stream::iter(0..args.fans)
        .map(|i| {
            let api = api.clone();
            let name = format!("{}-{i}", args.prefix);
            async move {
                let fan = api.new_fan(args.show, &name).await?;
                client::connect(api.base(), &fan, args.source).await
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await
        .context("connect the fans")?;
    for ws in sockets {
        let counts = counts.clone();
        tokio::spawn(async move {
            client::read_frames(ws, |frame, _| {
                let counter = match frame {
                    Frame::Rank => &counts.rank,
                    Frame::Active => &counts.active,
                    Frame::Other => &counts.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .await;
            counts.closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    out.write_all(format!("ready {}\n", args.fans).as_bytes())
        .await?;
    out.flush().await?;

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                if !matches!(line, Ok(Some(_))) {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                let line = format!(
                    "frames {} {} {} {}\n",
                    counts.rank.load(Ordering::Relaxed),
                    counts.active.load(Ordering::Relaxed),
                    counts.other.load(Ordering::Relaxed),
                    counts.closed.load(Ordering::Relaxed),
                );
                out.write_all(line.as_bytes()).await?;
                out.flush().await?;
            }
        }
    }
}
