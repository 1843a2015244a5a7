//! The Redis queue store: one show's queue is a handful of keys sharing a
//! `{show:N}` hash tag (one Redis Cluster slot), and every transition is one
//! Lua script, so it is atomic without any lock around the queue.
//!
//! Keys, for prefix `P` and show `N`:
//! - `P{show:N}:seq`: join sequence counter; `P{show:N}:ver`: change version
//! - `P{show:N}:waiting`: sorted set, user by join sequence
//! - `P{show:N}:active`: sorted set, user by session end (ms)
//! - `P{show:N}:entries`: hash, user → `w:seq:live:last_seen` | `a:session:until`
//! - `P{show:N}:ended`: hash, user → how the last entry ended; expires
//!   [`ENDED_RETENTION`] after the show's last removal
//! - `P{show:N}:epoch`: hash, `id` and `floor` of the show's epoch (see
//!   [`super`]), and `hold_until` while a rebuild holds admission; written at
//!   first use by the scripts (`lua/epoch.lua`, prepended to each)
//! - `P{show:N}:conns:<node>`: hash, `user:seq` → that node's live
//!   connections counted in the entry's `live` (see `lua/presence.lua`)
//!
//! And one sorted set for every show, the demand ranking behind
//! `GET /v1/shows?sort=demand`:
//! - `P{shows}:demand`: show → waiting + pre-queued + active. The scripts
//!   that change those counts (join, remove, clear, reseat; an admission or
//!   the opening only moves fans between them) set the show's score from
//!   its own sets in the same step (`rank_demand` in `lua/epoch.lua`), so it
//!   is exact whichever node ran the step, with no node-side bookkeeping to
//!   drift. It is the one key those scripts touch outside the show's hash
//!   slot: anteroom runs on one Redis primary (Sentinel for failover), not
//!   Redis Cluster.
//!
//! And one pair for every node (presence, [`crate::queue::presence`]):
//! - `P{presence}:leases`: hash, node → `expiry_ms:since_ms` (since: the
//!   start of its current run of renewals)
//! - `P{presence}:lapsed`: hash, lapsed node → `lapse_ms:claimer`, until a
//!   survivor has reaped its connections
//!
//! Each script publishes its versioned changes on `Pchanges`; every node's
//! feed ([`run_feed`]) applies them to its live view, which is how a fan on
//! node A hears of an admission done on node B. The node that ran the script
//! also applies the returned changes at once (duplicates are ignored by
//! version), so its own responses never wait for the round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use redis::{AsyncCommands, ErrorKind, RedisError, Script};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use super::redis_conn::RedisConnection;
use super::redis_conn::RedisTarget;
use super::script::ScriptCall;
use super::{
    Admission, AdmitRequest, Admitted, ChangeKind, ChangeSink, Counts, Detach, Entry, JoinMode,
    JoinOutcome, JoinRequest, OpenRequest, Opening, QueueChange, RemoveIf, Removed, Reseat,
    Reseated, Snapshot, StoreError, Tally, Waiter, RATE_CATCH_UP_MS, RATE_OWED_MAX_MS,
};
use crate::domain::{Removal, SeatId, SeatStatus, SessionId, ShowId, Timestamp, UserId};
use crate::resilience::{Backend, BackendError, Breaker};

/// How long a show's record of ended spots outlives its last removal.
pub const ENDED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The deadline of the scripts whose work grows with a whole line (see
/// [`RedisQueueStore::bulk`]).
pub const BULK_DEADLINE: Duration = Duration::from_secs(10);

struct Scripts {
    join: Script,
    admit: Script,
    remove: Script,
    presence: Script,
    snapshot: Script,
    reseat: Script,
    reap: Script,
    lease: Script,
    open: Script,
    clear: Script,
    entry: Script,
}

/// A script that changes a queue, with the epoch helpers it uses.
fn with_epoch(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/epoch.lua")))
}

/// The source of a script that admits from the head of the line
/// (`admission.lua`), with the epoch helpers and the rate's catch-up bounds
/// from [`super::RatePace`]'s constants (one definition for both stores).
fn with_admission(body: &str) -> String {
    format!(
        "local RATE_CATCH_UP_MS = {RATE_CATCH_UP_MS}\nlocal RATE_OWED_MAX_MS = {RATE_OWED_MAX_MS}\n{}\n{}\n{body}",
        include_str!("lua/epoch.lua"),
        include_str!("lua/admission.lua")
    )
}

/// The join script's source as the store runs it (the benchmark runs the
/// same text in `redis-benchmark` to compare the gateway with Redis).
/// KEYS and ARGV as `lua/join.lua` lists them.
pub fn join_script_source() -> String {
    with_admission(include_str!("lua/join.lua"))
}

/// The admissions among a script's changes.
fn admissions(changes: &[QueueChange]) -> Vec<Admission> {
    changes
        .iter()
        .filter_map(|c| match c.kind {
            ChangeKind::Admitted {
                user,
                session,
                until,
                ..
            } => Some(Admission {
                user,
                session,
                until,
            }),
            _ => None,
        })
        .collect()
}

/// What renewing this node's lease found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRenewal {
    /// Whether the lease was still there: false at the first renewal, and
    /// after a lapse that a survivor claimed (or a store that lost its data).
    pub present: bool,
    /// Lapsed leases this renewal claimed.
    pub claimed: u64,
    /// Lapsed nodes this node is to reap, with when each lapsed.
    pub to_reap: Vec<(String, Timestamp)>,
}

/// A Redis that cannot be reached or does not answer in time trips the
/// breaker; an error the server answered with (a script's, a wrong type)
/// does not: the server is up.
impl BackendError for RedisError {
    fn timed_out(after: Duration) -> Self {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {after:?}"),
        )
        .into()
    }

    fn rejected(backend: Backend) -> Self {
        RedisError::from((
            ErrorKind::Client,
            "circuit breaker open",
            format!("{backend} is failing; not sent"),
        ))
    }

    fn trips(&self) -> bool {
        self.is_io_error()
            || self.is_timeout()
            || self.is_connection_dropped()
            || self.is_connection_refusal()
    }
}

pub struct RedisQueueStore {
    conn: RedisConnection,
    /// Admission calls' own connection, driven on the admission lane
    /// ([`crate::queue::lane`]): a promotion's call and answer never wait
    /// behind the node's other Redis traffic or its busy workers.
    admission: RedisConnection,
    prefix: String,
    scripts: Scripts,
    sink: Arc<dyn ChangeSink>,
    /// This process's name in the store: its lease and its connection
    /// records. Random per start; replaced if the lease was lost.
    node: Mutex<String>,
    /// Each show's key names, formatted once (eleven strings a join
    /// formatted anew); a few hundred bytes per show this node served.
    keys: RwLock<HashMap<ShowId, Arc<Keys>>>,
}

impl std::fmt::Debug for RedisQueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueStore")
            .field("prefix", &self.prefix)
            .field("node", &self.node())
            .finish()
    }
}

/// Every Redis failure (queue store, seat locks, seat cache) passes here,
/// and is counted.
impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        metrics::counter!(crate::telemetry::metrics::REDIS_ERRORS).increment(1);
        StoreError::Unavailable(e)
    }
}

/// Changes as the scripts publish them.
#[derive(Debug, Deserialize)]
struct Wire {
    show: u64,
    /// The store epoch (absent from an older version's scripts).
    #[serde(default)]
    e: u64,
    #[serde(default)]
    changes: Vec<WireChange>,
    /// Not a change: `"show"` when the show's definition or state changed
    /// ([`ChangeSink::show_changed`]).
    #[serde(default)]
    ctl: Option<String>,
    /// Not a queue change: seats that changed status
    /// ([`ChangeSink::seats_changed`], published by the availability
    /// script in [`crate::sales::availability`]).
    #[serde(default)]
    seats: Option<WireSeats>,
}

/// Seats' new statuses at availability version `v`: `[seat, status code]`.
#[derive(Debug, Deserialize)]
struct WireSeats {
    v: u64,
    c: Vec<(u64, u8)>,
}

/// One change; `k` says which kind (the scripts' short keys keep every
/// message small).
#[derive(Debug, Deserialize)]
#[serde(tag = "k")]
enum WireChange {
    #[serde(rename = "j")]
    Joined {
        v: u64,
        u: u64,
        seq: u64,
        /// The position in line, when not `seq` (a rebuilt spot).
        #[serde(default)]
        p: Option<u64>,
        /// 1: into the pre-queue.
        #[serde(default)]
        q: u8,
        /// The pre-queued fan the join's draw displaced, and where to.
        #[serde(default)]
        d: Option<u64>,
        #[serde(default)]
        dp: Option<u64>,
    },
    /// The opening: the pre-queue moved to the line, in its drawn order.
    #[serde(rename = "o")]
    Opened { v: u64 },
    #[serde(rename = "c")]
    Cleared { v: u64, r: Removal },
    #[serde(rename = "a")]
    Admitted {
        v: u64,
        u: u64,
        /// The session (the admitted entry's sequence number).
        seq: u64,
        /// Active until.
        t: i64,
        /// When the freed slot was freed.
        #[serde(default)]
        f: Option<i64>,
    },
    #[serde(rename = "r")]
    Removed {
        v: u64,
        u: u64,
        seq: u64,
        r: Removal,
        #[serde(default)]
        wa: bool,
    },
}

impl WireChange {
    fn into_change(self, epoch: u64) -> QueueChange {
        match self {
            WireChange::Joined {
                v,
                u,
                seq,
                p,
                q,
                d,
                dp,
            } => QueueChange {
                epoch,
                version: v,
                kind: ChangeKind::Joined {
                    user: UserId(u),
                    seq,
                    pos: p.unwrap_or(seq),
                    prequeued: q == 1,
                    displaced: d.map(|d| (UserId(d), dp.unwrap_or(seq))),
                },
            },
            WireChange::Opened { v } => QueueChange {
                epoch,
                version: v,
                kind: ChangeKind::Opened,
            },
            WireChange::Cleared { v, r } => QueueChange {
                epoch,
                version: v,
                kind: ChangeKind::Cleared { reason: r },
            },
            WireChange::Admitted { v, u, seq, t, f } => QueueChange {
                epoch,
                version: v,
                kind: ChangeKind::Admitted {
                    user: UserId(u),
                    session: SessionId(seq),
                    until: Timestamp(t),
                    freed_at: f.map(Timestamp),
                },
            },
            WireChange::Removed { v, u, seq, r, wa } => QueueChange {
                epoch,
                version: v,
                kind: ChangeKind::Removed {
                    user: UserId(u),
                    seq,
                    reason: r,
                    was_active: wa,
                },
            },
        }
    }
}

/// A message on the change channel.
#[derive(Debug)]
enum Message {
    Changes(ShowId, Vec<QueueChange>),
    ShowChanged(ShowId),
    Seats(ShowId, u64, Vec<(SeatId, SeatStatus)>),
}

fn decode(json: &str) -> Result<Message, StoreError> {
    let wire: Wire = serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: "change message",
        detail: e.to_string(),
    })?;
    let show = ShowId(wire.show);
    if wire.ctl.is_some() {
        return Ok(Message::ShowChanged(show));
    }
    if let Some(seats) = wire.seats {
        let changes = seats
            .c
            .into_iter()
            .map(|(seat, code)| {
                SeatStatus::from_code(code)
                    .map(|status| (SeatId(seat), status))
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "seat status",
                        detail: code.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        return Ok(Message::Seats(show, seats.v, changes));
    }
    let changes = wire
        .changes
        .into_iter()
        .map(|c| c.into_change(wire.e))
        .collect();
    Ok(Message::Changes(show, changes))
}

/// Parses a stored entry (`w:seq:live:last_seen` or `a:session:until`).
fn parse_entry(raw: &str) -> Option<Entry> {
    let mut parts = raw.split(':');
    let kind = parts.next()?;
    let a: u64 = parts.next()?.parse().ok()?;
    let b: i64 = parts.next()?.parse().ok()?;
    match kind {
        "w" => Some(Entry::Waiting {
            seq: a,
            live: u32::try_from(b).ok()?,
            last_seen: Timestamp(parts.next()?.parse().ok()?),
        }),
        "a" => Some(Entry::Active {
            session: SessionId(a),
            until: Timestamp(b),
        }),
        _ => None,
    }
}

struct Keys {
    seq: String,
    ver: String,
    waiting: String,
    active: String,
    entries: String,
    ended: String,
    epoch: String,
    prequeue: String,
    recent: String,
    tally: String,
    demand: String,
}

impl RedisQueueStore {
    /// Connects to `url` (one server, or Sentinels: [`RedisTarget::parse`]),
    /// failing fast with the reason, and prepares the scripts. Every
    /// command passes `breaker` within its deadline ([`RedisConnection`]).
    /// The admission calls' connection is made on `lane` (its runtime
    /// drives it).
    pub async fn connect(
        url: &str,
        prefix: &str,
        sink: Arc<dyn ChangeSink>,
        breaker: Breaker,
        lane: &tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let target = RedisTarget::parse(url).map_err(|why| {
            RedisError::from((ErrorKind::InvalidClientConfig, "bad Redis URL", why))
        })?;
        let conn = RedisConnection::connect(target.clone(), breaker.clone()).await?;
        let admission = lane
            .spawn(RedisConnection::connect(target, breaker))
            .await
            .map_err(|e| {
                StoreError::Unavailable(RedisError::from((
                    ErrorKind::Io,
                    "the admission lane stopped",
                    e.to_string(),
                )))
            })??;
        Ok(Self {
            conn,
            admission,
            prefix: prefix.to_owned(),
            scripts: Scripts {
                join: Script::new(&join_script_source()),
                admit: Script::new(&with_admission(include_str!("lua/admit.lua"))),
                remove: with_epoch(include_str!("lua/remove.lua")),
                presence: Script::new(include_str!("lua/presence.lua")),
                snapshot: Script::new(include_str!("lua/snapshot.lua")),
                reseat: with_epoch(include_str!("lua/reseat.lua")),
                reap: Script::new(include_str!("lua/reap.lua")),
                lease: Script::new(include_str!("lua/lease.lua")),
                open: Script::new(&with_admission(include_str!("lua/open.lua"))),
                clear: with_epoch(include_str!("lua/clear.lua")),
                entry: Script::new(include_str!("lua/entry.lua")),
            },
            sink,
            node: Mutex::new(new_node_id()),
            keys: RwLock::default(),
        })
    }

    /// This node's current name in the store.
    pub fn node(&self) -> String {
        self.node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes a new name: the old one's lease was lost, and a survivor may be
    /// reaping its connection records at any moment, so they are recorded
    /// afresh under the new name ([`Self::register`]).
    pub fn rotate_node(&self) -> String {
        let node = new_node_id();
        node.clone_into(&mut self.node.lock().unwrap_or_else(PoisonError::into_inner));
        node
    }

    /// The shared, self-reconnecting connection (cheap to clone), for the
    /// sale paths' locks and cache, the change feed and the primary's watch.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The admission calls' connection, to follow the primary on the lane
    /// ([`super::redis_conn::run_primary_watch`]).
    pub fn admission_connection(&self) -> RedisConnection {
        self.admission.clone()
    }

    /// The connection for the scripts whose work grows with a whole line
    /// (a snapshot, the opening, the end of a sale): at 100,000 fans they
    /// take longer than a command's deadline, which bounds everything else.
    fn bulk(&self) -> RedisConnection {
        self.conn.with_deadline(BULK_DEADLINE)
    }

    /// Claims the opening of a show's pre-queue for `hold` (one node does
    /// the work; the others find it claimed, and the pre-queue opened soon
    /// after). False if another node holds the claim; true again for the
    /// node that holds it.
    pub async fn claim_opening(&self, show: ShowId, hold: Duration) -> Result<bool, StoreError> {
        let key = format!("{}{{show:{}}}:opening", self.prefix, show.0);
        let node = self.node();
        let (claimed, holder): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&node)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis() as u64)
            .get(&key)
            .query_async(&mut self.admission.clone())
            .await?;
        // This node's own claim counts (a retry after a failed opening).
        Ok(claimed.is_some() || holder.as_deref() == Some(node.as_str()))
    }

    /// The Redis breaker, whose recovery the queue watches.
    pub fn breaker(&self) -> &Breaker {
        self.conn.breaker()
    }

    pub fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    fn conns(&self, show: ShowId, node: &str) -> String {
        format!("{}{{show:{}}}:conns:{node}", self.prefix, show.0)
    }

    fn demand_key(&self) -> String {
        format!("{}{{shows}}:demand", self.prefix)
    }

    fn presence_keys(&self) -> (String, String) {
        (
            format!("{}{{presence}}:leases", self.prefix),
            format!("{}{{presence}}:lapsed", self.prefix),
        )
    }

    fn keys(&self, show: ShowId) -> Arc<Keys> {
        let known = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = known.get(&show) {
            return Arc::clone(keys);
        }
        drop(known);
        let keys = Arc::new(self.format_keys(show));
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(show, Arc::clone(&keys));
        keys
    }

    fn format_keys(&self, show: ShowId) -> Keys {
        let base = format!("{}{{show:{}}}", self.prefix, show.0);
        Keys {
            seq: format!("{base}:seq"),
            ver: format!("{base}:ver"),
            waiting: format!("{base}:waiting"),
            active: format!("{base}:active"),
            entries: format!("{base}:entries"),
            ended: format!("{base}:ended"),
            epoch: format!("{base}:epoch"),
            prequeue: format!("{base}:prequeue"),
            recent: format!("{base}:admits"),
            tally: format!("{base}:tally"),
            demand: self.demand_key(),
        }
    }

    /// Applies a script's published changes on this node at once.
    fn apply(&self, json: &str) -> Result<Vec<QueueChange>, StoreError> {
        match decode(json)? {
            Message::Changes(show, changes) => {
                self.sink.apply(show, &changes);
                Ok(changes)
            }
            Message::ShowChanged(show) => {
                self.sink.show_changed(show);
                Ok(Vec::new())
            }
            Message::Seats(show, version, changes) => {
                self.sink.seats_changed(show, version, &changes);
                Ok(Vec::new())
            }
        }
    }

    pub async fn join(&self, show: ShowId, req: JoinRequest) -> Result<JoinOutcome, StoreError> {
        let k = self.keys(show);
        let mut call = ScriptCall::new(&self.scripts.join);
        call.key(&k.seq)
            .key(&k.ver)
            .key(&k.waiting)
            .key(&k.entries)
            .key(&k.ended)
            .key(&k.epoch)
            .key(&k.prequeue)
            .key(&k.active)
            .key(&k.recent)
            .key(&k.tally)
            .key(&k.demand)
            .arg(req.user.0)
            .arg(req.now.0)
            .arg(show.0)
            .arg(self.channel())
            .arg(match req.mode {
                JoinMode::Line => "line",
                JoinMode::Prequeue => "prequeue",
            })
            .arg(req.draw);
        match req.admit {
            None => call.arg(0),
            Some(a) => call
                .arg(1)
                .arg(a.capacity)
                .arg(a.ttl.as_millis() as u64)
                .arg(a.freed_at.0)
                .arg(a.epoch)
                .arg(a.rate.map_or(0, |r| r.per_minute())),
        };
        let (created, entry, changes, rank, epoch, next_at, unopened): (
            u8,
            String,
            Option<String>,
            u64,
            u64,
            i64,
            u8,
        ) = call.invoke_async(&mut self.conn.clone()).await?;
        let changes = match changes {
            Some(json) => self.apply(&json)?,
            None => Vec::new(),
        };
        let entry = parse_entry(&entry).ok_or_else(|| StoreError::Corrupt {
            what: "entry",
            detail: entry.clone(),
        })?;
        Ok(JoinOutcome {
            created: created == 1,
            entry,
            rank: (rank > 0).then_some(rank),
            admitted: req.admit.map(|_| Admitted {
                admissions: admissions(&changes),
                epoch,
                next_at: (next_at > 0).then_some(Timestamp(next_at)),
                unopened: unopened == 1,
            }),
        })
    }

    pub async fn admit(&self, show: ShowId, req: AdmitRequest) -> Result<Admitted, StoreError> {
        let k = self.keys(show);
        let (epoch, changes, next_at, unopened): (u64, Option<String>, i64, u8) =
            ScriptCall::new(&self.scripts.admit)
                .key(&k.ver)
                .key(&k.waiting)
                .key(&k.active)
                .key(&k.entries)
                .key(&k.epoch)
                .key(&k.prequeue)
                .key(&k.recent)
                .key(&k.tally)
                .arg(req.capacity)
                .arg(req.ttl.as_millis() as u64)
                .arg(req.now.0)
                .arg(show.0)
                .arg(self.channel())
                .arg(req.freed_at.0)
                .arg(req.epoch)
                .arg(req.rate.map_or(0, |r| r.per_minute()))
                .invoke_async(&mut self.admission.clone())
                .await?;
        let admissions = match changes {
            None => Vec::new(),
            Some(json) => admissions(&self.apply(&json)?),
        };
        Ok(Admitted {
            admissions,
            epoch,
            next_at: (next_at > 0).then_some(Timestamp(next_at)),
            unopened: unopened == 1,
        })
    }

    pub async fn open(&self, show: ShowId, req: OpenRequest) -> Result<Opening, StoreError> {
        let k = self.keys(show);
        let mut invocation = ScriptCall::new(&self.scripts.open);
        invocation
            .key(&k.seq)
            .key(&k.ver)
            .key(&k.waiting)
            .key(&k.prequeue)
            .key(&k.epoch)
            .key(&k.active)
            .key(&k.entries)
            .key(&k.recent)
            .key(&k.tally)
            .arg(show.0)
            .arg(self.channel());
        match req.admit {
            Some(a) => invocation
                .arg(1)
                .arg(a.capacity)
                .arg(a.ttl.as_millis() as u64)
                .arg(a.now.0)
                .arg(a.freed_at.0)
                .arg(a.epoch)
                .arg(a.rate.map_or(0, |r| r.per_minute())),
            None => invocation.arg(0).arg(0).arg(0).arg(0).arg(0).arg(0).arg(0),
        };
        invocation.arg(req.starts_at.0);
        let (moved, changes, epoch, next_at): (usize, Option<String>, u64, i64) =
            invocation.invoke_async(&mut self.admission.clone()).await?;
        let applied = match changes {
            Some(json) => self.apply(&json)?,
            None => Vec::new(),
        };
        let admitted = req.admit.map(|_| Admitted {
            admissions: admissions(&applied),
            epoch,
            next_at: (next_at > 0).then_some(Timestamp(next_at)),
            unopened: false,
        });
        Ok(Opening { moved, admitted })
    }

    pub async fn clear(&self, show: ShowId, reason: Removal) -> Result<u64, StoreError> {
        let k = self.keys(show);
        let (n, changes): (u64, Option<String>) = ScriptCall::new(&self.scripts.clear)
            .key(&k.ver)
            .key(&k.waiting)
            .key(&k.prequeue)
            .key(&k.entries)
            .key(&k.ended)
            .key(&k.epoch)
            .key(&k.tally)
            .key(&k.active)
            .key(&k.demand)
            .arg(reason.as_str())
            .arg(show.0)
            .arg(self.channel())
            .arg(ENDED_RETENTION.as_millis() as u64)
            .invoke_async(&mut self.bulk())
            .await?;
        if let Some(json) = changes {
            self.apply(&json)?;
        }
        Ok(n)
    }

    pub async fn announce(&self, show: ShowId) -> Result<(), StoreError> {
        let msg = serde_json::json!({ "show": show.0, "ctl": "show" }).to_string();
        let _: u64 = self.conn.clone().publish(self.channel(), &msg).await?;
        // This node hears it from its own feed, like every other node; the
        // callers that answer a request read the show again themselves.
        Ok(())
    }

    pub async fn reseat(
        &self,
        show: ShowId,
        spots: &[Reseat],
        hold: Duration,
        now: Timestamp,
    ) -> Result<Reseated, StoreError> {
        let k = self.keys(show);
        let mut invocation = ScriptCall::new(&self.scripts.reseat);
        invocation
            .key(&k.seq)
            .key(&k.ver)
            .key(&k.waiting)
            .key(&k.active)
            .key(&k.entries)
            .key(&k.ended)
            .key(&k.epoch)
            .key(&k.prequeue)
            .key(&k.demand)
            .arg(now.0)
            .arg(show.0)
            .arg(self.channel())
            .arg(hold.as_millis() as u64);
        for spot in spots {
            match *spot {
                Reseat::Waiting { user, seq, pos } => {
                    invocation.arg("w").arg(user.0).arg(seq).arg(pos)
                }
                Reseat::Prequeued { user, seq } => {
                    invocation.arg("p").arg(user.0).arg(seq).arg(super::draw())
                }
                Reseat::Ended { user, reason } => invocation
                    .arg("e")
                    .arg(user.0)
                    .arg(reason.as_str())
                    .arg(ENDED_RETENTION.as_millis() as u64),
                Reseat::Active {
                    user,
                    session,
                    until,
                } => invocation.arg("a").arg(user.0).arg(session.0).arg(until.0),
            };
        }
        let (epoch, restored, left, changes): (u64, Vec<u64>, u64, Option<String>) =
            invocation.invoke_async(&mut self.conn.clone()).await?;
        if let Some(json) = changes {
            self.apply(&json)?;
        }
        let restored = spots
            .iter()
            .filter(|s| restored.contains(&s.user().0))
            .copied()
            .collect();
        Ok(Reseated {
            epoch,
            restored,
            held_for: (left > 0).then(|| Duration::from_millis(left)),
        })
    }

    pub async fn remove(
        &self,
        show: ShowId,
        user: UserId,
        reason: Removal,
        condition: RemoveIf,
    ) -> Result<Option<Removed>, StoreError> {
        let k = self.keys(show);
        let (cond, arg) = match condition {
            RemoveIf::Any => ("any", 0),
            RemoveIf::Session(s) => ("session", s.0 as i64),
            RemoveIf::StaleWaiting { cutoff } => ("stale", cutoff.0),
        };
        let changes: Option<String> = ScriptCall::new(&self.scripts.remove)
            .key(&k.ver)
            .key(&k.waiting)
            .key(&k.active)
            .key(&k.entries)
            .key(&k.ended)
            .key(&k.epoch)
            .key(&k.prequeue)
            .key(&k.tally)
            .key(&k.demand)
            .arg(user.0)
            .arg(reason.as_str())
            .arg(cond)
            .arg(arg)
            .arg(show.0)
            .arg(self.channel())
            .arg(ENDED_RETENTION.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some(json) = changes else {
            return Ok(None);
        };
        Ok(self.apply(&json)?.into_iter().find_map(|c| match c.kind {
            ChangeKind::Removed {
                seq, was_active, ..
            } => Some(Removed {
                session: was_active.then_some(SessionId(seq)),
            }),
            _ => None,
        }))
    }

    /// One presence step (`lua/presence.lua`) for each of `fans`, given as
    /// `(user, now, seq, count)`, in one call; the seq of each fan's
    /// waiting entry, if any.
    async fn presence(
        &self,
        show: ShowId,
        op: &str,
        fans: impl Iterator<Item = (UserId, Timestamp, u64, u32)>,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let k = self.keys(show);
        let mut call = ScriptCall::new(&self.scripts.presence);
        call.key(&k.entries)
            .key(self.conns(show, &self.node()))
            .arg(op);
        for (user, now, seq, count) in fans {
            call.arg(user.0).arg(now.0).arg(seq).arg(count);
        }
        let seqs: Vec<u64> = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(seqs
            .into_iter()
            .map(|seq| (seq != 0).then_some(seq))
            .collect())
    }

    /// [`Self::presence`] for one fan.
    async fn presence_of(
        &self,
        show: ShowId,
        user: UserId,
        op: &str,
        now: Timestamp,
        seq: u64,
        count: u32,
    ) -> Result<Option<u64>, StoreError> {
        let seqs = self
            .presence(show, op, std::iter::once((user, now, seq, count)))
            .await?;
        Ok(seqs.into_iter().next().flatten())
    }

    pub async fn attach(&self, show: ShowId, user: UserId) -> Result<Option<u64>, StoreError> {
        self.presence_of(show, user, "attach", Timestamp::now(), 0, 0)
            .await
    }

    /// Connections closed: each uncounts the entry it was counted against,
    /// in one call.
    pub async fn detach(&self, show: ShowId, closed: &[Detach]) -> Result<(), StoreError> {
        self.presence(
            show,
            "detach",
            closed.iter().map(|d| (d.user, d.at, d.seq, 0)),
        )
        .await
        .map(drop)
    }

    /// Sets this node's count of connections to entry `seq` to `count`,
    /// adjusting the entry's `live` by the difference: idempotent, for
    /// writing the node's connections again after its name changed or the
    /// store lost them.
    pub async fn register(
        &self,
        show: ShowId,
        user: UserId,
        seq: u64,
        count: u32,
    ) -> Result<(), StoreError> {
        self.presence_of(show, user, "register", Timestamp::now(), seq, count)
            .await
            .map(drop)
    }

    /// Renews this node's lease until `expiry` and claims every lease that
    /// lapsed before `now` (atomically: one survivor claims each). A lease
    /// this node does not hold (any more) is taken only if `create`;
    /// otherwise the answer is just that it is not `present`.
    pub async fn renew_lease(
        &self,
        now: Timestamp,
        expiry: Timestamp,
        create: bool,
    ) -> Result<LeaseRenewal, StoreError> {
        let (leases, lapsed) = self.presence_keys();
        let out: Vec<String> = ScriptCall::new(&self.scripts.lease)
            .key(leases)
            .key(lapsed)
            .arg(self.node())
            .arg("renew")
            .arg(now.0)
            .arg(expiry.0)
            .arg(if create { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        let corrupt = || StoreError::Corrupt {
            what: "lease renewal",
            detail: out.join(" "),
        };
        let [present, claimed, rest @ ..] = out.as_slice() else {
            return Err(corrupt());
        };
        let mut to_reap = Vec::with_capacity(rest.len() / 2);
        for pair in rest.chunks_exact(2) {
            let lapse = pair[1].parse().map_err(|_| corrupt())?;
            to_reap.push((pair[0].clone(), Timestamp(lapse)));
        }
        Ok(LeaseRenewal {
            present: present == "1",
            claimed: claimed.parse().map_err(|_| corrupt())?,
            to_reap,
        })
    }

    /// Gives this node's lease up (stopping): a survivor reaps whatever its
    /// connections left counted, as of `now`.
    pub async fn release_lease(&self, now: Timestamp) -> Result<(), StoreError> {
        let (leases, lapsed) = self.presence_keys();
        let _: i64 = ScriptCall::new(&self.scripts.lease)
            .key(leases)
            .key(lapsed)
            .arg(self.node())
            .arg("release")
            .arg(now.0)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Uncounts lapsed `node`'s connections in `show` as of `lapse`; returns
    /// the waiting fans it changed, with how many connections each lost.
    pub async fn reap(
        &self,
        show: ShowId,
        node: &str,
        lapse: Timestamp,
    ) -> Result<Vec<(UserId, u32)>, StoreError> {
        let flat: Vec<u64> = ScriptCall::new(&self.scripts.reap)
            .key(&self.keys(show).entries)
            .key(self.conns(show, node))
            .arg(lapse.0)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(flat
            .chunks_exact(2)
            .map(|p| (UserId(p[0]), u32::try_from(p[1]).unwrap_or(u32::MAX)))
            .collect())
    }

    /// The waiting fans of `show` with no live connection, with when each
    /// was last seen. Scanned in steps, so a long line does not hold Redis up.
    pub async fn unattended(&self, show: ShowId) -> Result<Vec<(UserId, Timestamp)>, StoreError> {
        let mut conn = self.conn.clone();
        // A thousand fields a step (Redis's default is ten): a few
        // milliseconds of Redis time each, a hundred round trips for a
        // line of 100,000.
        let mut scan = redis::cmd("HSCAN");
        scan.arg(&self.keys(show).entries)
            .cursor_arg(0)
            .arg("COUNT")
            .arg(1000);
        let mut entries: redis::AsyncIter<(String, String)> = scan.iter_async(&mut conn).await?;
        let mut out = Vec::new();
        while let Some(item) = entries.next_item().await {
            let (user, raw) = item?;
            if let (
                Ok(user),
                Some(Entry::Waiting {
                    live: 0, last_seen, ..
                }),
            ) = (user.parse(), parse_entry(&raw))
            {
                out.push((UserId(user), last_seen));
            }
        }
        Ok(out)
    }

    /// Drops lapsed `node`'s record once every show has been reaped.
    pub async fn forget_lapsed(&self, node: &str) -> Result<(), StoreError> {
        let (_, lapsed) = self.presence_keys();
        let _: i64 = self.conn.clone().hdel(lapsed, node).await?;
        Ok(())
    }

    pub async fn touch(
        &self,
        show: ShowId,
        user: UserId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self
            .presence_of(show, user, "touch", now, 0, 0)
            .await?
            .is_some())
    }

    pub async fn entry(&self, show: ShowId, user: UserId) -> Result<Option<Entry>, StoreError> {
        let k = self.keys(show);
        let (entry, ended): (Option<String>, Option<String>) = ScriptCall::new(&self.scripts.entry)
            .key(&k.entries)
            .key(&k.ended)
            .arg(user.0)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match entry {
            Some(raw) => parse_entry(&raw),
            None => ended.as_deref().and_then(Removal::parse).map(Entry::Gone),
        })
    }

    pub async fn rank(&self, show: ShowId, user: UserId) -> Result<Option<u64>, StoreError> {
        let rank: Option<u64> = self
            .conn
            .clone()
            .zrank(&self.keys(show).waiting, user.0)
            .await?;
        Ok(rank.map(|r| r + 1))
    }

    pub async fn counts(&self, show: ShowId) -> Result<Counts, StoreError> {
        let k = self.keys(show);
        let (active, waiting, prequeued): (u64, u64, u64) = redis::pipe()
            .zcard(&k.active)
            .zcard(&k.waiting)
            .zcard(&k.prequeue)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Counts {
            active,
            waiting,
            prequeued,
        })
    }

    /// The demand ranking: every show with live demand, busiest first.
    pub async fn demand(&self) -> Result<Vec<(ShowId, u64)>, StoreError> {
        let ranked: Vec<(u64, u64)> = self
            .conn
            .clone()
            .zrevrange_withscores(self.demand_key(), 0, -1)
            .await?;
        Ok(ranked
            .into_iter()
            .map(|(show, demand)| (ShowId(show), demand))
            .collect())
    }

    pub async fn tally(&self, show: ShowId) -> Result<Tally, StoreError> {
        let fields: HashMap<String, u64> =
            self.conn.clone().hgetall(&self.keys(show).tally).await?;
        let mut tally = Tally {
            admitted: fields.get("admitted").copied().unwrap_or(0),
            ..Tally::default()
        };
        for (i, reason) in Removal::ALL.iter().enumerate() {
            tally.ended[i] = fields.get(reason.as_str()).copied().unwrap_or(0);
        }
        Ok(tally)
    }

    pub async fn position(&self, show: ShowId) -> Result<(u64, u64), StoreError> {
        let k = self.keys(show);
        let (epoch, version): (Option<u64>, Option<u64>) = redis::pipe()
            .hget(&k.epoch, "id")
            .get(&k.ver)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((epoch.unwrap_or(0), version.unwrap_or(0)))
    }

    pub async fn snapshot(&self, show: ShowId) -> Result<Snapshot, StoreError> {
        let k = self.keys(show);
        #[allow(clippy::type_complexity)]
        let (epoch, version, entries, ended, line, prequeue): (
            u64,
            u64,
            Vec<String>,
            Vec<String>,
            Vec<(u64, u64)>,
            Vec<(u64, u64)>,
        ) = ScriptCall::new(&self.scripts.snapshot)
            .key(&k.ver)
            .key(&k.entries)
            .key(&k.ended)
            .key(&k.epoch)
            .key(&k.waiting)
            .key(&k.prequeue)
            .invoke_async(&mut self.bulk())
            .await?;
        let mut snap = Snapshot {
            epoch,
            version,
            ..Snapshot::default()
        };
        let mut spots = HashMap::new();
        for pair in entries.chunks_exact(2) {
            let (Ok(user), Some(entry)) = (pair[0].parse().map(UserId), parse_entry(&pair[1]))
            else {
                continue;
            };
            match entry {
                Entry::Waiting { seq, .. } => {
                    spots.insert(user, seq);
                }
                Entry::Active { session, until } => snap.active.push((user, session, until)),
                Entry::Gone(_) => {}
            }
        }
        // The line in order, each fan with their spot; then the pre-queue
        // in its drawn order.
        let waiters = |set: Vec<(u64, u64)>| -> Vec<Waiter> {
            set.into_iter()
                .filter_map(|(user, pos)| {
                    let user = UserId(user);
                    let seq = *spots.get(&user)?;
                    Some(Waiter { user, seq, pos })
                })
                .collect()
        };
        snap.waiting = waiters(line);
        snap.prequeued = waiters(prequeue);
        for pair in ended.chunks_exact(2) {
            if let (Ok(user), Some(reason)) =
                (pair[0].parse().map(UserId), Removal::parse(&pair[1]))
            {
                snap.ended.push((user, reason));
            }
        }
        Ok(snap)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// A fresh node name: random, so a restarted process never takes over the
/// records of the one before it (a survivor reaps those).
fn new_node_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// How often the feed checks its subscription: a PING within
/// [`FEED_PING_PATIENCE`], and that the primary has not moved. A hung server
/// or a partition otherwise looks like a quiet channel.
const FEED_CHECK: Duration = Duration::from_secs(1);

/// How long the feed's PING may wait. Longer than a command's deadline: a
/// script that grows with the line (the opening of 100,000 pre-queued fans
/// takes about half a second) holds every reply that long, and a
/// subscription given up for it means missed changes and a resync on every
/// node at the worst moment. A server that is really gone fails every other
/// command meanwhile (the breaker opens), and the subscription is retried.
const FEED_PING_PATIENCE: Duration = Duration::from_secs(3);

/// Follows every node's queue changes (Redis pub/sub) into this node's live
/// view until shutdown. Pub/sub drops messages while disconnected, so after
/// every (re)subscription the views are resynchronised from snapshots.
/// Subscribes on the shared connection's current primary, within its
/// deadline, and again when the primary moves.
pub async fn run_feed(
    conn: RedisConnection,
    channel: String,
    sink: Arc<dyn ChangeSink>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (client, generation) = conn.client();
        let subscribed = conn.within_deadline(async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok(pubsub)
        });
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = subscribed => p,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                sink.resubscribed();
                let (mut control, mut messages) = pubsub.split();
                let mut check = tokio::time::interval(FEED_CHECK);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let why = loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = messages.next() => m,
                        _ = check.tick() => {
                            if conn.generation() != generation {
                                break "the Redis primary moved";
                            }
                            let ping = control.ping::<redis::Value>();
                            let patient = conn.with_deadline(FEED_PING_PATIENCE);
                            if patient.within_deadline(ping).await.is_err() {
                                break "no answer to PING";
                            }
                            continue;
                        }
                    };
                    let Some(msg) = msg else {
                        break "the connection closed";
                    };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match decode(&payload) {
                        Ok(Message::Changes(show, changes)) => sink.apply(show, &changes),
                        Ok(Message::ShowChanged(show)) => sink.show_changed(show),
                        Ok(Message::Seats(show, version, changes)) => {
                            sink.seats_changed(show, version, &changes)
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a change message"),
                    }
                };
                metrics::counter!(crate::telemetry::metrics::REDIS_ERRORS).increment(1);
                tracing::warn!(why, "queue change subscription ended; resubscribing");
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::metrics::REDIS_ERRORS).increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to queue changes")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_messages_decode() {
        assert_eq!(
            parse_entry("w:12:0:1700000000000"),
            Some(Entry::Waiting {
                seq: 12,
                live: 0,
                last_seen: Timestamp(1_700_000_000_000)
            })
        );
        assert_eq!(
            parse_entry("a:12:1700000000000"),
            Some(Entry::Active {
                session: SessionId(12),
                until: Timestamp(1_700_000_000_000)
            })
        );
        assert_eq!(parse_entry("x:1:2"), None);
        let Ok(Message::Changes(show, changes)) = decode(
            r#"{"show":3,"e":1764000000000,"changes":[{"v":7,"k":"r","u":5,"seq":1764000000000009,"r":"left","wa":true}]}"#,
        ) else {
            panic!("decodes");
        };
        assert_eq!(show, ShowId(3));
        assert_eq!(changes[0].epoch, 1_764_000_000_000);
        assert_eq!(
            changes[0].kind,
            ChangeKind::Removed {
                user: UserId(5),
                seq: 1_764_000_000_000_009,
                reason: Removal::Left,
                was_active: true
            }
        );
        let Ok(Message::Changes(_, changes)) = decode(
            r#"{"show":3,"e":1,"changes":[{"v":8,"k":"o"},{"v":9,"k":"j","u":6,"seq":20,"q":1},{"v":10,"k":"c","r":"sold_out"},{"v":11,"k":"j","u":7,"seq":21,"q":1,"p":20,"d":6,"dp":21}]}"#,
        ) else {
            panic!("decodes");
        };
        assert_eq!(changes[0].kind, ChangeKind::Opened);
        assert_eq!(
            changes[1].kind,
            ChangeKind::Joined {
                user: UserId(6),
                seq: 20,
                pos: 20,
                prequeued: true,
                displaced: None,
            }
        );
        assert_eq!(
            changes[3].kind,
            ChangeKind::Joined {
                user: UserId(7),
                seq: 21,
                pos: 20,
                prequeued: true,
                displaced: Some((UserId(6), 21)),
            }
        );
        assert_eq!(
            changes[2].kind,
            ChangeKind::Cleared {
                reason: Removal::SoldOut
            }
        );
        assert!(matches!(
            decode(r#"{"show":4,"ctl":"show"}"#),
            Ok(Message::ShowChanged(ShowId(4)))
        ));
        let Ok(Message::Seats(show, version, changes)) =
            decode(r#"{"show":5,"seats":{"v":12,"c":[[40,1],[41,0]]}}"#)
        else {
            panic!("decodes");
        };
        assert_eq!(
            (show, version, changes),
            (
                ShowId(5),
                12,
                vec![
                    (SeatId(40), SeatStatus::Held),
                    (SeatId(41), SeatStatus::Available)
                ]
            )
        );
        assert!(decode(r#"{"show":5,"seats":{"v":13,"c":[[40,7]]}}"#).is_err());
    }
}
