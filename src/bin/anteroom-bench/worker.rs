//! `anteroom-bench hold`: a client process that signs in, joins and connects
//! a share of the waiting fans, then counts the frames they receive. The
//! harness starts several, each from its own 127.0.0.x, so that no process
//! nears the 20,000 open files limit and no source address runs out of
//! ports.
//!
//! Protocol on stdout, one line each: `ready N retries R` once every fan is
//! connected (R: joins and handshakes tried again after a 503, as a fan's page
//! would; every socket is read from the moment it connects),
//! then `frames RANK ACTIVE OTHER CLOSED FIRSTS` every 100 ms. It exits when
//! its stdin closes.
//!
//! With `--record FILE` the fans are pre-queued (`sale-open`): each fan's
//! first frame must be `prequeue` (sent again when the start moves), and
//! FIRSTS counts the fans that have had a frame after those (their first
//! `rank` or `active`). On exit the worker
//! writes one line per fan to FILE ([`FanRecord`]): when its join was
//! answered, that first frame after the pre-queue, and when it was admitted.
//! Times are wall-clock nanoseconds since the Unix epoch, which every
//! process on the machine shares.
//!
//! With `--protocol socket-io` the fans are the Socket.IO peer's
//! (`anteroom-bench peer`): no sign-in or join, each connects to `--base`
//! and is put at the end of its line.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::client::{self, Api, Frame, Protocol};

#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[arg(long)]
    pub base: String,
    /// The show to join (required by the anteroom protocol).
    #[arg(long)]
    pub show: Option<u64>,
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
    /// Pre-queued fans: record each fan's opening to this file on exit.
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
    /// The protocol of the server at `--base`.
    #[arg(long, value_enum, default_value_t = Protocol::Anteroom)]
    pub protocol: Protocol,
}

/// What one pre-queued fan saw, as written to the record file: `JOINED
/// FIRST KIND RANK ADMITTED`, with 0 for a time that never came and KIND
/// `r` (a rank), `a` (active), `x` (something else: a protocol failure) or
/// `-` (nothing yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanRecord {
    /// The join's answer read.
    pub joined_ns: u64,
    /// The first frame after `prequeue` read.
    pub first_ns: u64,
    pub first: FirstFrame,
    /// The fan's `active` frame read (whether or not it came first).
    pub admitted_ns: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstFrame {
    #[default]
    None,
    Rank(u64),
    Active,
    /// Not `prequeue` first, or neither a rank nor `active` after it.
    Unexpected,
}

impl FanRecord {
    pub fn line(&self) -> String {
        let (kind, rank) = match self.first {
            FirstFrame::None => ('-', 0),
            FirstFrame::Rank(r) => ('r', r),
            FirstFrame::Active => ('a', 0),
            FirstFrame::Unexpected => ('x', 0),
        };
        format!(
            "{} {} {kind} {rank} {}",
            self.joined_ns, self.first_ns, self.admitted_ns
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let mut w = line.split_whitespace();
        let joined_ns = w.next()?.parse().ok()?;
        let first_ns = w.next()?.parse().ok()?;
        let kind = w.next()?;
        let rank = w.next()?.parse().ok()?;
        let admitted_ns = w.next()?.parse().ok()?;
        let first = match kind {
            "-" => FirstFrame::None,
            "r" => FirstFrame::Rank(rank),
            "a" => FirstFrame::Active,
            "x" => FirstFrame::Unexpected,
            _ => return None,
        };
        Some(Self {
            joined_ns,
            first_ns,
            first,
            admitted_ns,
        })
    }
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[derive(Debug, Default)]
struct Counts {
    rank: AtomicU64,
    active: AtomicU64,
    other: AtomicU64,
    closed: AtomicU64,
    firsts: AtomicU64,
}

pub async fn run(args: HoldArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.base, "");
    let counts = Arc::new(Counts::default());
    let mut out = tokio::io::stdout();
    let prequeued = args.record.is_some();
    let protocol = args.protocol;
    if prequeued && protocol == Protocol::SocketIo {
        anyhow::bail!("the Socket.IO peer has no pre-queue to record");
    }
    let retries = Arc::new(AtomicU64::new(0));
    let records = Arc::new(std::sync::Mutex::new(vec![FanRecord::default(); args.fans]));
    // Each socket is read from the moment it connects: a socket left unread
    // answers no ping, and the gateway drops it after two heartbeats (at
    // 100,000 fans the pre-queue takes longer than that to fill).
    futures::stream::iter(0..args.fans)
        .map(|i| {
            let api = api.clone();
            let name = format!("{}-{i}", args.prefix);
            let retries = retries.clone();
            let counts = counts.clone();
            let records = records.clone();
            async move {
                if protocol == Protocol::SocketIo {
                    let ws = client::connect_socket_io(api.base(), args.source).await?;
                    let fan = Reader::new(i, unix_ns(), prequeued, protocol);
                    tokio::spawn(fan.read(ws, counts, records));
                    return Ok(());
                }
                let token = api.sign_in(&name).await?;
                let show = args.show.context("--show")?;
                let fan = join_retrying(&api, show, &token, &retries).await?;
                let joined_ns = unix_ns();
                if prequeued && fan.rank.is_some() {
                    anyhow::bail!("a join in the pre-queue answered with a rank");
                }
                let ws = connect_retrying(&api, &fan, args.source, &retries).await?;
                let fan = Reader::new(i, joined_ns, prequeued, protocol);
                tokio::spawn(fan.read(ws, counts, records));
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await
        .context("connect the fans")?;
    let retries = retries.load(Ordering::Relaxed);
    out.write_all(format!("ready {} retries {retries}\n", args.fans).as_bytes())
        .await?;
    out.flush().await?;

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                if !matches!(line, Ok(Some(_))) {
                    break;
                }
            }
            _ = tick.tick() => {
                let line = format!(
                    "frames {} {} {} {} {}\n",
                    counts.rank.load(Ordering::Relaxed),
                    counts.active.load(Ordering::Relaxed),
                    counts.other.load(Ordering::Relaxed),
                    counts.closed.load(Ordering::Relaxed),
                    counts.firsts.load(Ordering::Relaxed),
                );
                out.write_all(line.as_bytes()).await?;
                out.flush().await?;
            }
        }
    }
    if let Some(path) = &args.record {
        let lines: String = records
            .lock()
            .expect("records")
            .iter()
            .map(|r| r.line() + "\n")
            .collect();
        std::fs::write(path, lines).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// One fan's socket as its reader task follows it.
struct Reader {
    /// The fan's line in the record file.
    i: usize,
    joined_ns: u64,
    prequeued: bool,
    protocol: Protocol,
}

impl Reader {
    fn new(i: usize, joined_ns: u64, prequeued: bool, protocol: Protocol) -> Self {
        Self {
            i,
            joined_ns,
            prequeued,
            protocol,
        }
    }

    /// Reads the fan's frames until the socket closes: counts them and,
    /// when the fan is recorded, its first frame after `prequeue` and its
    /// `active`.
    async fn read(
        self,
        ws: client::Socket,
        counts: Arc<Counts>,
        records: Arc<std::sync::Mutex<Vec<FanRecord>>>,
    ) {
        let Self {
            i,
            joined_ns,
            prequeued,
            protocol,
        } = self;
        let mut record = FanRecord {
            joined_ns,
            ..FanRecord::default()
        };
        let mut prequeued_seen = false;
        let on_frame = |frame, text: &str| {
            let counter = match frame {
                Frame::Rank => &counts.rank,
                Frame::Active => &counts.active,
                Frame::Other => &counts.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if !prequeued {
                return;
            }
            let admitted = frame == Frame::Active && record.admitted_ns == 0;
            if record.first != FirstFrame::None && !admitted {
                return;
            }
            let now = unix_ns();
            if admitted {
                record.admitted_ns = now;
            }
            // `prequeue` comes first, and again whenever the start moves.
            if record.first == FirstFrame::None {
                if frame == Frame::Other && text.starts_with(r#"{"type":"prequeue""#) {
                    prequeued_seen = true;
                    return;
                }
                record.first = match frame {
                    _ if !prequeued_seen => FirstFrame::Unexpected,
                    Frame::Rank => {
                        client::rank(text).map_or(FirstFrame::Unexpected, FirstFrame::Rank)
                    }
                    Frame::Active => FirstFrame::Active,
                    Frame::Other => FirstFrame::Unexpected,
                };
                record.first_ns = now;
                counts.firsts.fetch_add(1, Ordering::Relaxed);
            }
            // Published as it changes: the socket stays open until exit, and
            // only the first frames and `active` change it.
            records.lock().expect("records")[i] = record;
        };
        match protocol {
            Protocol::Anteroom => client::read_frames(ws, on_frame).await,
            Protocol::SocketIo => client::read_socket_io_frames(ws, on_frame).await,
        }
        counts.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Joins, trying again up to 10 times, 1 s apart, while the gateway
/// answers 503 (a backend unavailable for a moment), as the page does.
async fn join_retrying(
    api: &Api,
    show: u64,
    token: &str,
    retries: &AtomicU64,
) -> anyhow::Result<client::Fan> {
    let mut tries = 0;
    loop {
        match api.join(show, token).await {
            Err(e) if tries < 10 && e.to_string().starts_with("join: 503") => {
                tries += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Connects the fan's WebSocket, trying again like [`join_retrying`] while
/// the handshake is answered 503, as the page reconnects.
async fn connect_retrying(
    api: &Api,
    fan: &client::Fan,
    source: Option<std::net::IpAddr>,
    retries: &AtomicU64,
) -> anyhow::Result<client::Socket> {
    let mut tries = 0;
    loop {
        match client::connect(api.base(), fan, source).await {
            Err(e) if tries < 10 && format!("{e:#}").contains("503") => {
                tries += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}
