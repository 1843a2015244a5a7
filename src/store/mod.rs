//! Backends for state: the queue store (who waits, who is active) and the
//! database (users, shows). Each is one seam with an embedded, in-process
//! implementation; the production ones (Redis, MySQL) plug in behind the same
//! enums.
//!
//! The queue store offers *atomic primitives* only: append a fan, move up to
//! N fans from the head to active, remove one entry if it is still the one the
//! caller means. Which primitive to call, with what capacity and TTL, and
//! what follows (events, timers, pushes) is decided once in
//! [`crate::queue::QueueService`], above the seam.
//!
//! Every mutation produces versioned [`QueueChange`]s that are handed, in
//! version order, to a [`ChangeSink`]: the node-local live view that computes
//! ranks and wakes connections. The embedded store calls the sink inside its
//! critical section so order is inherent; a shared store publishes them for
//! every node.
//!
//! Every show's queue has an *epoch*: written at first use, carried by every
//! change and snapshot. A store that lost its data (a Redis restarted without
//! persistence) starts a new epoch, which is how a node learns that the queue
//! it remembers is gone and must be rebuilt ([`QueueStore::reseat`]). Each
//! epoch's join sequence starts at a floor derived from its start time
//! ([`EPOCH_SEQ_SCALE`]), so every spot of a later epoch sorts after every
//! spot of an earlier one.

pub mod db;
mod memory;
pub mod redis;
pub mod redis_conn;
pub mod script;

use std::sync::Arc;
use std::time::Duration;

pub use db::{
    Database, DbError, MemoryDb, MySqlDb, OutboxRow, PayOutcome, PoolOptions, PoolStats,
    ReleaseOutcome, MIGRATOR, OUTBOX_LEASE,
};
pub use memory::MemoryQueueStore;
pub use redis::RedisQueueStore;
pub use redis_conn::{RedisConnection, RedisTarget};

use crate::domain::{
    AdmissionRate, Removal, SeatId, SeatStatus, SessionId, ShowId, Timestamp, UserId,
};

/// An epoch's first join sequence number is its id (the store's clock at
/// first use, Unix ms) times this: a later epoch's spots sort after an earlier
/// one's unless the earlier one took more than a thousand joins per
/// millisecond on average. Spots stay below 2^53 (exact as JSON numbers in
/// JavaScript and as Redis sorted-set scores) until the year 2255.
pub const EPOCH_SEQ_SCALE: u64 = 1000;

/// One ordered change to a show's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChange {
    /// The store epoch the change was made in; 0 from a node that does not
    /// send one (an older version during a rolling update).
    pub epoch: u64,
    /// Per-show and per-epoch, gap-free, starting at 1.
    pub version: u64,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Joined {
        user: UserId,
        /// The spot: the join sequence number, which the fan's ticket names.
        seq: u64,
        /// The place in line it sorts by: `seq`, except for a rebuilt spot
        /// of a fan who came in through the pre-queue.
        pos: u64,
        /// Into the pre-queue: no rank until the opening.
        prequeued: bool,
        /// A pre-queue join is one step of the draw ([`drawn_place`]): the
        /// fan took the place (`pos`) of this fan, who moved to the new
        /// place at the end of the drawn order, at this position. `None`:
        /// the fan drew the end itself.
        displaced: Option<(UserId, u64)>,
    },
    /// The opening: every pre-queued fan moved into the line, at the head,
    /// in the pre-queue's drawn order: each keeps the position the draw
    /// gave them (a view that followed the pre-queue knows them all, so the
    /// change carries nothing else however long the pre-queue is).
    Opened,
    /// Every waiting and pre-queued fan was let go with `reason` (the show
    /// sold out or closed); active sessions run on.
    Cleared { reason: Removal },
    Admitted {
        user: UserId,
        session: SessionId,
        until: Timestamp,
        /// When the slot this admission fills was freed (for the activation
        /// latency metric; the admitting node's clock). `None` from a node
        /// that does not send it (an older version during a rolling update).
        freed_at: Option<Timestamp>,
    },
    Removed {
        user: UserId,
        seq: u64,
        reason: Removal,
        was_active: bool,
    },
}

/// Receives every change of every show. The embedded store delivers them in
/// version order; a shared store may deliver them late, twice, or (after a
/// lost subscription) not at all, which the sink detects by version.
pub trait ChangeSink: Send + Sync + 'static {
    fn apply(&self, show: ShowId, changes: &[QueueChange]);

    /// The change subscription was (re)established: changes may have been
    /// missed while it was down.
    fn resubscribed(&self) {}

    /// A show's definition or state changed (an operator's change, a sale
    /// selling out): every node reads it again.
    fn show_changed(&self, _show: ShowId) {}

    /// Seats of a show changed status: the show's availability `version`
    /// (see [`crate::sales::availability`]). Carried on the same channel as
    /// the queue's changes; like them, late, twice or not at all.
    fn seats_changed(&self, _show: ShowId, _version: u64, _changes: &[(SeatId, SeatStatus)]) {}
}

/// Hands every change to each of its sinks (the queue's live view and the
/// seat availability share one feed).
pub struct Fanout(pub Vec<Arc<dyn ChangeSink>>);

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("sinks", &self.0.len())
            .finish()
    }
}

impl ChangeSink for Fanout {
    fn apply(&self, show: ShowId, changes: &[QueueChange]) {
        self.0.iter().for_each(|s| s.apply(show, changes));
    }

    fn resubscribed(&self) {
        self.0.iter().for_each(|s| s.resubscribed());
    }

    fn show_changed(&self, show: ShowId) {
        self.0.iter().for_each(|s| s.show_changed(show));
    }

    fn seats_changed(&self, show: ShowId, version: u64, changes: &[(SeatId, SeatStatus)]) {
        self.0
            .iter()
            .for_each(|s| s.seats_changed(show, version, changes));
    }
}

/// One show's queue at one version, for a live view to start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's epoch for the show; 0 when it holds nothing for it.
    pub epoch: u64,
    pub version: u64,
    /// The line, in order.
    pub waiting: Vec<Waiter>,
    /// The pre-queue, in its drawn order (unranked until the opening).
    pub prequeued: Vec<Waiter>,
    pub active: Vec<(UserId, SessionId, Timestamp)>,
    pub ended: Vec<(UserId, Removal)>,
}

/// A fan in line: their spot (join sequence number) and the position they
/// sort by (the same, unless they came in through the pre-queue, whose
/// draw placed them: [`drawn_place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub user: UserId,
    pub seq: u64,
    pub pos: u64,
}

/// A fan's entry as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Waiting {
        seq: u64,
        /// Live connections counted against this entry.
        live: u32,
        /// When the fan was last seen (join, poll, or a connection closing).
        last_seen: Timestamp,
    },
    Active {
        session: SessionId,
        until: Timestamp,
    },
    /// No entry now; the last one ended this way.
    Gone(Removal),
}

/// A join: the fan, when, where to, and whether to admit in the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRequest {
    pub user: UserId,
    pub now: Timestamp,
    pub mode: JoinMode,
    /// A random draw ([`draw`]) that places a pre-queue join in the drawn
    /// order ([`drawn_place`]); unused by a join to the line.
    pub draw: u64,
    /// Fill free slots from the head right after the join, in the same
    /// atomic step (the show is open); `None` joins only.
    pub admit: Option<AdmitRequest>,
}

impl JoinRequest {
    /// A join with no admission in its step (and its draw, into the
    /// pre-queue).
    pub fn new(user: UserId, now: Timestamp, mode: JoinMode) -> Self {
        Self {
            user,
            now,
            mode,
            draw: match mode {
                JoinMode::Prequeue => draw(),
                JoinMode::Line => 0,
            },
            admit: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// False when the fan already had a spot (waiting or active).
    pub created: bool,
    /// The fan's entry once the step is done: `Active` if the join's own
    /// admission let them in.
    pub entry: Entry,
    /// The fan's place in line (1 = next) once the step is done; `None`
    /// when not in the line (pre-queued or active).
    pub rank: Option<u64>,
    /// What the admission asked for in [`JoinRequest::admit`] did.
    pub admitted: Option<Admitted>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub user: UserId,
    pub session: SessionId,
    pub until: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The session that was active, if the entry was active.
    pub session: Option<SessionId>,
}

/// A live connection of `user`, counted against their entry `seq`, closed
/// `at`: the fan is no longer present there (the abandonment grace starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detach {
    pub user: UserId,
    pub seq: u64,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub active: u64,
    /// Ranked, in line.
    pub waiting: u64,
    /// In the pre-queue (not ranked yet).
    pub prequeued: u64,
}

/// What a show's queue has done since its store epoch began: admissions,
/// and entries ended by reason (in [`Removal::ALL`]'s order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub admitted: u64,
    pub ended: [u64; Removal::ALL.len()],
}

impl Tally {
    pub fn ended(&self, reason: Removal) -> u64 {
        Removal::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.ended[i])
    }
}

/// Whether the line may join now: into the pre-queue (before the start)
/// or the line itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    Line,
    /// Into the pre-queue, unless the opening has already run (a node whose
    /// clock is a moment behind): then into the line.
    Prequeue,
}

/// An admission request: fill free slots from the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitRequest {
    pub capacity: u32,
    pub ttl: Duration,
    /// Admissions are spaced `60 s / rate` apart and never more than `rate`
    /// in any 60 s ([`RatePace`]).
    pub rate: Option<AdmissionRate>,
    pub now: Timestamp,
    /// When the freed slot was freed (carried in the changes for the
    /// activation latency metric).
    pub freed_at: Timestamp,
    /// The store epoch the caller knows (0: none).
    pub epoch: u64,
}

/// What [`QueueStore::admit`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admitted {
    pub admissions: Vec<Admission>,
    /// The store's epoch for the show (0: none yet).
    pub epoch: u64,
    /// The admission rate held fans back who could have been admitted: the
    /// moment the next one may be (the caller's timer).
    pub next_at: Option<Timestamp>,
    /// Nobody was admitted because the pre-queue has not been opened
    /// ([`QueueStore::open`] first).
    pub unopened: bool,
}

/// The admission rate's pacing, the same in both stores (the Redis script
/// `admission.lua` mirrors it): an admission needs `now` to have reached the
/// next slot and fewer than `rate` admissions in the last 60 s. Slots are
/// `60 s / rate` apart on a fixed grid. Slots that passed while fans were
/// held back by the rate itself are owed to them and made up at once when
/// the next step runs up to [`RATE_OWED_MAX_MS`] late (a pace timer behind
/// a slow store moment, the opening's own step: an opening that admits
/// anchors the grid at `starts_at` with its slots owed); the 60 s window
/// still bounds any minute. Slots that passed while nobody could go in (an
/// empty line, a full capacity, a pause: no step ran) are not banked: the
/// grid restarts at the admission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RatePace {
    /// The next slot (ms since the epoch, fractional); 0 before the first
    /// admission.
    pub next_slot: f64,
    /// The last step stopped because of the rate (or an opening anchored
    /// the grid): the slots from `next_slot` on are owed.
    pub owed: bool,
    /// The most recent admissions (ms), newest last, at most `rate`.
    pub recent: std::collections::VecDeque<i64>,
}

/// The window [`RatePace`] limits admissions over.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// How far behind its grid a step that owes nothing may fall and still
/// keep the grid (at least one slot): timer jitter, not a bank.
pub const RATE_CATCH_UP_MS: f64 = 100.0;

/// How late a step may run and still make up the slots owed: longer than a
/// pace timer's retries behind a slow store moment (about 2 s at worst
/// measured); a step later than this follows a spell in which nobody was
/// admitted for another reason (a pause, an outage), and starts the grid
/// afresh rather than admit a burst.
pub const RATE_OWED_MAX_MS: f64 = 3_000.0;

impl RatePace {
    /// When the next admission may happen at the earliest (`now` if now).
    pub fn next_at(&self, rate: AdmissionRate, now: Timestamp) -> Timestamp {
        let per_minute = rate.per_minute() as usize;
        let window = match self.recent.len() >= per_minute {
            true => self.recent[self.recent.len() - per_minute] + RATE_WINDOW_MS,
            false => i64::MIN,
        };
        Timestamp(now.0.max(self.next_slot.ceil() as i64).max(window))
    }

    /// The sale starts at `at`: the grid's first slot is no earlier, and
    /// the slots from then to the opening's admission are owed.
    pub fn anchor(&mut self, at: Timestamp) {
        if (at.0 as f64) > self.next_slot {
            self.next_slot = at.0 as f64;
            self.owed = true;
        }
    }

    /// Records an admission at `now` (which [`Self::next_at`] allowed).
    pub fn admitted(&mut self, rate: AdmissionRate, now: Timestamp) {
        let interval = RATE_WINDOW_MS as f64 / f64::from(rate.per_minute());
        let t = now.0 as f64;
        let catch_up = match self.owed {
            true => RATE_OWED_MAX_MS,
            false => RATE_CATCH_UP_MS,
        };
        let keep = self.next_slot > 0.0 && t < self.next_slot + interval.max(catch_up);
        self.next_slot = match keep {
            true => self.next_slot + interval,
            false => t + interval,
        };
        self.recent.push_back(now.0);
        while self.recent.len() > rate.per_minute() as usize {
            self.recent.pop_front();
        }
    }

    /// A step ended: held back by the rate (`next_at`), the slots from
    /// here on are owed; otherwise (the line ran dry, the capacity is
    /// full) they are not.
    pub fn stopped(&mut self, held_back: bool) {
        self.owed = held_back;
    }
}

/// An opening ([`QueueStore::open`]).
#[derive(Debug, Clone, Copy)]
pub struct OpenRequest {
    /// When the sale started: the admission rate's first slot, so that the
    /// slots the opening itself took are made up at once ([`RatePace::anchor`]).
    pub starts_at: Timestamp,
    /// Admit from the new head in the same step (the show is open); `None`
    /// opens only (paused at the start: the line forms, nobody goes in).
    pub admit: Option<AdmitRequest>,
}

/// What [`QueueStore::open`] did: the pre-queue (`moved` fans) is in the
/// line now (0 if it was empty or another node opened it first), and what
/// the same step admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub moved: usize,
    pub admitted: Option<Admitted>,
}

/// The pre-queue's order is drawn as fans join, one step of an inside-out
/// Fisher–Yates shuffle per join (Durstenfeld's, as Knuth gives it): the
/// `n + 1`-th fan takes place `j = draw % (n + 1)` of the `n + 1` in the
/// drawn order; if that is not the new place at the end, the fan who held
/// it moves there. After every join (and after any fan leaves) every order
/// of the fans in the pre-queue is equally likely, so the opening only
/// moves the drawn order to the head of the line: one step whatever the
/// pre-queue's length, where a shuffle at the start held the store for a
/// second at 100,000 fans. Nothing reveals the order before the opening (a
/// pre-queued fan has no rank), so a fan who leaves and joins again draws
/// afresh and learns nothing. Both stores run this step (the Redis scripts
/// with `draw_place` in `epoch.lua`, on the pre-queue's sorted set).
pub fn drawn_place(n: usize, draw: u64) -> usize {
    (draw % (n as u64 + 1)) as usize
}

/// A random draw for [`drawn_place`], below 2^40 (so `%` is exact on the
/// doubles of Redis's Lua; the modulo's bias is below 2^-20 for any
/// pre-queue under a million), from a cryptographic generator.
pub fn draw() -> u64 {
    // `rand`'s thread generator is a CSPRNG (ChaCha12) seeded from the OS.
    rand::random::<u64>() >> 24
}

/// A spot to put back after the store lost a show's queue: from a node's
/// memory (its live view), a fan's ticket, or an admitted fan's access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseat {
    /// Back in line: the original spot, at the original position.
    Waiting { user: UserId, seq: u64, pos: u64 },
    /// Back in the pre-queue (before the opening), at the original spot.
    Prequeued { user: UserId, seq: u64 },
    /// Back in the admitted session until its original end.
    Active {
        user: UserId,
        session: SessionId,
        until: Timestamp,
    },
    /// How the fan's last spot ended, as a node remembers it: the record
    /// that keeps their old ticket or access token from putting the spot
    /// back (a fan who paid or left is not seated again).
    Ended { user: UserId, reason: Removal },
}

impl Reseat {
    /// A waiting spot a ticket names: into the pre-queue while the show
    /// is pre-queueing, else into the line at its place.
    pub fn from_ticket(user: UserId, seq: u64, prequeue: bool) -> Self {
        match prequeue {
            true => Reseat::Prequeued { user, seq },
            false => Reseat::Waiting {
                user,
                seq,
                pos: seq,
            },
        }
    }

    pub fn user(&self) -> UserId {
        match self {
            Reseat::Waiting { user, .. }
            | Reseat::Prequeued { user, .. }
            | Reseat::Active { user, .. }
            | Reseat::Ended { user, .. } => *user,
        }
    }
}

/// What [`QueueStore::reseat`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reseated {
    /// The store's epoch the spots were put back in.
    pub epoch: u64,
    /// The spots written (the others existed, had ended, or belong to the
    /// current epoch).
    pub restored: Vec<Reseat>,
    /// While admission is held so other fans can come back (see
    /// [`QueueStore::reseat`]): how long it still is.
    pub held_for: Option<Duration>,
}

/// Which entry a removal may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveIf {
    /// Whatever the fan has (leaving).
    Any,
    /// Only this active session (expiry, payment): a stale timer or a
    /// redelivered event never ends a later session.
    Session(SessionId),
    /// Only a waiting entry with no live connection, last seen at or before
    /// the cutoff (abandonment).
    StaleWaiting { cutoff: Timestamp },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("queue store unavailable: {0}")]
    Unavailable(::redis::RedisError),
    #[error("queue store did not answer within {0:?}")]
    TimedOut(Duration),
    /// The store holds or sent something this version cannot read.
    #[error("queue store sent an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// The queue store seam.
#[derive(Debug, Clone)]
pub enum QueueStore {
    Memory(Arc<MemoryQueueStore>),
    Redis(Arc<RedisQueueStore>),
}

impl QueueStore {
    pub fn memory(sink: Arc<dyn ChangeSink>) -> Self {
        QueueStore::Memory(Arc::new(MemoryQueueStore::new(sink)))
    }

    /// Whether several gateway nodes can share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, QueueStore::Redis(_))
    }

    /// Appends the fan at the back (or into the pre-queue), or returns the
    /// spot they already hold; then, if asked, admits from the head as
    /// [`Self::admit`] does — one atomic step (one round trip on Redis), so
    /// the answer's entry and rank are the store's truth at that moment.
    pub async fn join(&self, show: ShowId, req: JoinRequest) -> Result<JoinOutcome, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.join(show, req)),
            QueueStore::Redis(r) => r.join(show, req).await,
        }
    }

    /// Moves fans from the head of the waiting line to active until
    /// `capacity` are active, each until `now + ttl`, as fast as the rate
    /// allows. Atomic: never above capacity or the rate, no fan twice.
    /// Admits nobody when the store's epoch is not `epoch` (unless that is
    /// 0: the caller knows none), so a node never admits into a queue that
    /// lost the fans it remembers before they are back; nor while a rebuild
    /// holds admission ([`Self::reseat`]); nor while fans wait in a
    /// pre-queue that was not opened ([`Self::open`]).
    pub async fn admit(&self, show: ShowId, req: AdmitRequest) -> Result<Admitted, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.admit(show, req)),
            QueueStore::Redis(r) => r.admit(show, req).await,
        }
    }

    /// The opening: moves every pre-queued fan to the head of the line in
    /// the order drawn as they joined ([`drawn_place`]), once (a second call
    /// finds the pre-queue empty), anchors the rate's grid at the start, and
    /// admits from the new head — one atomic step, so the first fans go in
    /// with the opening itself. Later joins go to the line.
    pub async fn open(&self, show: ShowId, req: OpenRequest) -> Result<Opening, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.open(show, req)),
            QueueStore::Redis(r) => r.open(show, req).await,
        }
    }

    /// Claims the opening of the show's pre-queue for `hold`, so that one
    /// node does it (and its first admissions) while the others' start
    /// timers fire: false while another node holds the claim. The embedded store has
    /// one node.
    pub async fn claim_opening(&self, show: ShowId, hold: Duration) -> Result<bool, StoreError> {
        match self {
            QueueStore::Memory(_) => Ok(true),
            QueueStore::Redis(r) => r.claim_opening(show, hold).await,
        }
    }

    /// Lets every waiting and pre-queued fan go with `reason` (sold out,
    /// closed), one atomic step; active sessions run on. Returns how many.
    pub async fn clear(&self, show: ShowId, reason: Removal) -> Result<u64, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.clear(show, reason)),
            QueueStore::Redis(r) => r.clear(show, reason).await,
        }
    }

    /// Tells every node that a show's definition or state changed
    /// ([`ChangeSink::show_changed`], this node included).
    pub async fn announce(&self, show: ShowId) -> Result<(), StoreError> {
        match self {
            QueueStore::Memory(m) => {
                m.announce(show);
                Ok(())
            }
            QueueStore::Redis(r) => r.announce(show).await,
        }
    }

    /// Puts lost spots back, atomically and idempotently (several nodes may
    /// rebuild at once): a spot is written only if the fan has no entry and no
    /// record of an ended one, and it is from an earlier epoch (its sequence
    /// number is below the current epoch's floor); never over an existing
    /// entry. Waiting spots keep their sequence number (their original order,
    /// ahead of every later join); active ones their session and end, counted
    /// against capacity. Restored waiting entries have no live connection and
    /// count as seen at `now`, so a fan who never comes back is abandoned
    /// after the grace. When `hold` is non-zero and something was restored,
    /// admission pauses for `hold` from the first such restore of the epoch,
    /// so fans coming back one by one are seated in their original order
    /// before anyone is admitted.
    pub async fn reseat(
        &self,
        show: ShowId,
        spots: &[Reseat],
        hold: Duration,
        now: Timestamp,
    ) -> Result<Reseated, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.reseat(show, spots, hold, now)),
            QueueStore::Redis(r) => r.reseat(show, spots, hold, now).await,
        }
    }

    /// Ends the fan's entry if it matches `condition`.
    pub async fn remove(
        &self,
        show: ShowId,
        user: UserId,
        reason: Removal,
        condition: RemoveIf,
    ) -> Result<Option<Removed>, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.remove(show, user, reason, condition)),
            QueueStore::Redis(r) => r.remove(show, user, reason, condition).await,
        }
    }

    /// A live connection opened for a waiting fan; returns the entry's
    /// sequence number it counts against, or `None` if the fan is not waiting.
    pub async fn attach(&self, show: ShowId, user: UserId) -> Result<Option<u64>, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.attach(show, user)),
            QueueStore::Redis(r) => r.attach(show, user).await,
        }
    }

    /// Live connections closed, each counted against its entry ([`Detach`]),
    /// uncounted in one step. A later entry of the same fan (after leaving
    /// and joining again) is untouched.
    pub async fn detach(&self, show: ShowId, closed: &[Detach]) -> Result<(), StoreError> {
        match self {
            QueueStore::Memory(m) => {
                for d in closed {
                    m.detach(show, d.user, d.seq, d.at);
                }
                Ok(())
            }
            QueueStore::Redis(r) => r.detach(show, closed).await,
        }
    }

    /// A status poll: the fan is alive as of `now`. False if the fan has no
    /// waiting entry.
    pub async fn touch(
        &self,
        show: ShowId,
        user: UserId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.touch(show, user, now)),
            QueueStore::Redis(r) => r.touch(show, user, now).await,
        }
    }

    pub async fn entry(&self, show: ShowId, user: UserId) -> Result<Option<Entry>, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.entry(show, user)),
            QueueStore::Redis(r) => r.entry(show, user).await,
        }
    }

    /// The fan's rank straight from the store: for a live view that has not
    /// caught up yet. (Embedded: linear in the line's length; never needed
    /// there, since the embedded view never lags.)
    pub async fn rank(&self, show: ShowId, user: UserId) -> Result<Option<u64>, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.rank(show, user)),
            QueueStore::Redis(r) => r.rank(show, user).await,
        }
    }

    /// The show's epoch and the version of its last change (0, 0: the
    /// store holds nothing for it): what a view that may have missed
    /// changes checks before it reads a whole [`Self::snapshot`].
    pub async fn position(&self, show: ShowId) -> Result<(u64, u64), StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.position(show)),
            QueueStore::Redis(r) => r.position(show).await,
        }
    }

    pub async fn snapshot(&self, show: ShowId) -> Result<Snapshot, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.snapshot(show)),
            QueueStore::Redis(r) => r.snapshot(show).await,
        }
    }

    pub async fn counts(&self, show: ShowId) -> Result<Counts, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.counts(show)),
            QueueStore::Redis(r) => r.counts(show).await,
        }
    }

    /// The demand ranking: every show with fans waiting, pre-queued or
    /// active, busiest first (equal demand: lower id first), with that
    /// total. Kept by the steps that change the counts, in the same atomic
    /// step on Redis, so it is the same on every node.
    pub async fn demand(&self) -> Result<Vec<(ShowId, u64)>, StoreError> {
        let mut ranked = match self {
            QueueStore::Memory(m) => m.demand(),
            QueueStore::Redis(r) => r.demand().await?,
        };
        ranked.sort_by_key(|(show, demand)| (std::cmp::Reverse(*demand), *show));
        Ok(ranked)
    }

    pub async fn tally(&self, show: ShowId) -> Result<Tally, StoreError> {
        match self {
            QueueStore::Memory(m) => Ok(m.tally(show)),
            QueueStore::Redis(r) => r.tally(show).await,
        }
    }

    /// Changes each time the store recovers from an outage (its circuit
    /// breaker closes); `None` for the embedded store, which has none.
    pub fn recovered(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            QueueStore::Memory(_) => None,
            QueueStore::Redis(r) => Some(r.breaker().recovered()),
        }
    }

    /// Reachability, for /readyz.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            QueueStore::Memory(_) => Ok(()),
            QueueStore::Redis(r) => r.ping().await,
        }
    }
}
