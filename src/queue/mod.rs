//! The queue service: joining, status, leaving, and admission.
//!
//! The rules live here, once, above the store seam:
//! - FIFO by join order; one spot per fan per show.
//! - At most `capacity` active per show; admission fills free slots from the
//!   head with one atomic store call ([`QueueStore::admit`]), never above
//!   capacity, nobody twice.
//! - Admission is driven by events: after a join, on resume, and on each event
//!   that frees a slot (`payment.completed`, `session.expired`,
//!   `session.left`, `waiting.abandoned`, consumed in [`admission`]). The
//!   node where a slot frees (a payment, an expiry, a leave) ends the
//!   session through one primitive, [`QueueService::end_session`], which
//!   admits the next fan there at once, so activation does not wait for the
//!   event's round trip; the event then reaches every node. There is no
//!   periodic sweep: timers fire at exact deadlines ([`jobs`], [`timers`]).
//! - A session ends when its time is up ([`jobs`] schedules the expiry, and
//!   the `expiring` warning, for every session the live view reports), when
//!   the fan leaves, or when the fan pays (whether a payment ends it is the
//!   sale paths' rule: [`crate::sales`]).
//! - A paused show queues joins but admits nobody.
//! - A queue the store lost is rebuilt, not forgotten: a node whose live view
//!   remembers it puts every spot back ([`QueueService::rebuild`]); a fan's
//!   ticket puts back its spot ([`QueueService::spot_current`],
//!   [`QueueService::join`]), an admitted fan's access token its session
//!   ([`QueueService::session_active`]). Spots keep their join order, ahead
//!   of everyone who joined after the loss; nobody is told they left.

pub mod admission;
pub mod fanout;
pub mod jobs;
pub mod lane;
pub mod lifecycle;
pub mod live;
mod mailbox;
pub mod presence;
pub mod ranks;
pub mod timers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use self::jobs::Job;
use self::live::{Listener, LiveQueues};
use self::timers::TimerHandle;
use crate::domain::{
    DomainEvent, EventKind, NewSeat, NewShow, Removal, SeatCounts, SessionId, Show, ShowId,
    ShowState, Timestamp, UserId,
};
use crate::events::{BusError, EventBus};
use crate::store::{
    AdmitRequest, Admitted, Counts, Database, DbError, Detach, Entry, JoinMode, JoinRequest,
    QueueStore, RemoveIf, Reseat, Reseated, StoreError, Tally,
};
use crate::telemetry::metrics as m;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("show {0} does not exist")]
    UnknownShow(ShowId),
    #[error("not in this show's queue")]
    NotInQueue,
    /// The show takes no joins in this state (scheduled, sold out, closed).
    #[error("the show is {}: it takes no joins", .0.as_str())]
    NotJoinable(ShowState),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl QueueError {
    /// Whether the same call may succeed later: a backend was down or
    /// slow, not a wrong request or unreadable data.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Store(e) => !matches!(e, StoreError::Corrupt { .. }),
            QueueError::Db(e) => e.is_transient(),
            QueueError::Bus(_) => true,
            QueueError::UnknownShow(_) | QueueError::NotInQueue | QueueError::NotJoinable(_) => {
                false
            }
        }
    }
}

/// A fan's place in a show's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Waiting {
        rank: u64,
        eta_seconds: Option<u64>,
        /// The show is paused: nobody is admitted (and there is no ETA).
        paused: bool,
    },
    Active {
        session: SessionId,
        until: Timestamp,
    },
    /// In the pre-queue: no rank until the line forms at `starts_at`.
    Prequeued {
        starts_at: Option<Timestamp>,
    },
    Gone(Removal),
    NotInQueue,
}

/// What freed the slots a promotion fills: the `cause` label of
/// `anteroom_promotions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A fan joined while a slot was free.
    Join,
    /// A paused show was resumed.
    Resume,
    Payment,
    Expiry,
    Leave,
    Abandon,
    /// A lost queue was put back, or a backend came back from an outage
    /// (the slots it held up are filled).
    Rebuild,
    /// The sale started (the pre-queue's opening).
    Open,
    /// The admission rate let the next fan in.
    Rate,
    /// An operator changed the show (more capacity, say).
    Change,
}

impl Cause {
    pub const ALL: [Cause; 10] = [
        Cause::Join,
        Cause::Resume,
        Cause::Payment,
        Cause::Expiry,
        Cause::Leave,
        Cause::Abandon,
        Cause::Rebuild,
        Cause::Open,
        Cause::Rate,
        Cause::Change,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Join => "join",
            Cause::Resume => "resume",
            Cause::Payment => "payment",
            Cause::Expiry => "expiry",
            Cause::Leave => "leave",
            Cause::Abandon => "abandon",
            Cause::Rebuild => "rebuild",
            Cause::Open => "open",
            Cause::Rate => "rate",
            Cause::Change => "change",
        }
    }

    /// What an exit of this kind frees.
    pub fn of_exit(reason: Removal) -> Cause {
        match reason {
            // An operator's eject frees a slot as a leave does (a sale's
            // end lets waiting fans go, never a slot).
            Removal::Left | Removal::Removed | Removal::SoldOut | Removal::ShowClosed => {
                Cause::Leave
            }
            Removal::Expired => Cause::Expiry,
            Removal::Abandoned => Cause::Abandon,
            Removal::Completed => Cause::Payment,
        }
    }

    /// The cause a slot-freeing event stands for; `None` for an event that
    /// frees no place in the queue (a seat hold expiring).
    pub fn of(kind: EventKind) -> Option<Cause> {
        match kind {
            EventKind::PaymentCompleted => Some(Cause::Payment),
            EventKind::SessionExpired => Some(Cause::Expiry),
            EventKind::SessionLeft => Some(Cause::Leave),
            EventKind::WaitingAbandoned => Some(Cause::Abandon),
            EventKind::ReservationExpired => None,
        }
    }
}

/// What remembered a spot put back after a loss: the `source` label of
/// `anteroom_queue_rebuilt_spots_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildSource {
    /// A node's live view.
    View,
    /// A fan's queue ticket.
    Ticket,
    /// An admitted fan's access token.
    Token,
}

pub const REBUILD_SOURCES: &[&str] = &["view", "ticket", "token"];

impl RebuildSource {
    fn as_str(self) -> &'static str {
        match self {
            RebuildSource::View => "view",
            RebuildSource::Ticket => "ticket",
            RebuildSource::Token => "token",
        }
    }
}

/// Why and since when a promotion runs: the slot was freed at `at` (the
/// payment's commit, the expiry, the leave), which is where the activation
/// latency the fan sees starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub cause: Cause,
    pub at: Timestamp,
}

impl Trigger {
    pub fn now(cause: Cause) -> Self {
        Self {
            cause,
            at: Timestamp::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// False for a repeat join that kept the existing spot.
    pub created: bool,
    /// The spot's join sequence number, which its ticket names.
    pub spot: u64,
    pub place: Place,
}

/// A live connection's hold on a fan's place: the listener for pushes and,
/// while it lives, the fan counts as present (not abandoning).
#[derive(Debug)]
pub struct Connection {
    pub listener: Listener,
    pub initial: Place,
    /// Held for its `Drop`: closing the connection detaches the fan.
    _presence: Option<Presence>,
}

#[derive(Debug)]
struct Presence {
    queue: QueueService,
    show: ShowId,
    user: UserId,
    /// The entry the connection was counted against.
    seq: u64,
}

impl Drop for Presence {
    fn drop(&mut self) {
        // Drop cannot await; the detach goes to this node's detach batches
        // ([`presence`]: sent with the other connections closing meanwhile,
        // and retried if the store is down, since a detach that never lands
        // would keep the fan present forever). The connection stays in this
        // node's records until the detach lands, so records written again
        // meanwhile (a rebuilt queue) still count what the detach uncounts.
        let closed = Detach {
            user: self.user,
            seq: self.seq,
            at: Timestamp::now(),
        };
        // Fails only after shutdown, when the node's lapse uncounts it.
        let _ = self.queue.inner.detaches.send((self.show, closed));
    }
}

/// Follows the end of admitted sessions on the node that ends them. The
/// sale paths register here ([`QueueService::follow_session_ends`]) to
/// release the holds of a session that ended unpaid; the queue knows
/// nothing of holds, so it depends on no sale type.
pub trait SessionEnds: std::fmt::Debug + Send + Sync {
    /// `session` ended for `reason`; awaited before the exit's event is
    /// published.
    fn ended(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        reason: Removal,
    ) -> futures::future::BoxFuture<'_, ()>;
}

#[derive(Debug, Clone)]
pub struct QueueService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: QueueStore,
    db: Database,
    bus: EventBus,
    live: Arc<LiveQueues>,
    timers: TimerHandle<Job>,
    /// The timers whose jobs run on the admission lane ([`lane`]): the
    /// admission rate's, and each show's transitions (the start opens the
    /// pre-queue and admits).
    lane_timers: TimerHandle<Job>,
    /// Every task the queue starts (timer jobs, detaches, resyncs).
    tasks: TaskTracker,
    /// Closed connections, to be detached in batches
    /// ([`QueueService::run_detaches`]).
    detaches: mpsc::UnboundedSender<(ShowId, Detach)>,
    /// Seconds before expiry at which `expiring` is pushed (capped at half
    /// the session).
    expiring_warning: Duration,
    /// Fans with an abandonment check scheduled: one per fan, however often
    /// they poll or reconnect, so timers stay bounded by the waiting line.
    abandon_checks: Mutex<HashSet<(ShowId, UserId)>>,
    /// Jobs that failed on a backend and wait for a retry, with their
    /// failures so far ([`jobs`]).
    retries: Mutex<HashMap<Job, u32>>,
    /// When a backend last recovered ([`jobs`]): abandonment waits a grace
    /// past it.
    recovered_at: Mutex<Option<Timestamp>>,
    /// This node's live connections by the entry they count against, a copy
    /// of its records in a shared store ([`presence`]).
    connections: Mutex<HashMap<(ShowId, UserId, u64), u32>>,
    /// Domain events this node's consumer has applied.
    events_applied: AtomicU64,
    /// After a fan's ticket or token first puts back a spot of a lost queue,
    /// how long admission waits for the others to come back.
    rebuild_hold: Duration,
    /// One rebuild of a show at a time on this node; the others wait for it
    /// and find nothing left to do.
    rebuilding: Mutex<HashMap<ShowId, Arc<tokio::sync::Mutex<()>>>>,
    /// Shows as last read: on first use, and again whenever a change is
    /// announced ([`lifecycle`]). Where the state decides admission it is
    /// read afresh (see [`QueueService::promote`]).
    shows: std::sync::RwLock<HashMap<ShowId, Show>>,
    /// The admission rate's timer per show, when one is set ([`lifecycle`]).
    paced: Mutex<HashMap<ShowId, Timestamp>>,
    /// Who follows session ends, once registered.
    session_ends: std::sync::OnceLock<Box<dyn SessionEnds>>,
}

/// What a [`QueueService`] is built from.
#[derive(Debug)]
pub struct Parts {
    pub store: QueueStore,
    pub db: Database,
    pub bus: EventBus,
    pub live: Arc<LiveQueues>,
    pub timers: TimerHandle<Job>,
    /// The rate's and the shows' transitions' timers: their jobs run on the
    /// admission lane ([`QueueService::dispatch_on`]).
    pub lane_timers: TimerHandle<Job>,
    pub tasks: TaskTracker,
    /// Where closed connections go; [`QueueService::run_detaches`] takes
    /// the other end.
    pub detaches: mpsc::UnboundedSender<(ShowId, Detach)>,
    pub expiring_warning: Duration,
    pub rebuild_hold: Duration,
}

impl QueueService {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            store,
            db,
            bus,
            live,
            timers,
            lane_timers,
            tasks,
            detaches,
            expiring_warning,
            rebuild_hold,
        } = parts;
        Self {
            inner: Arc::new(Inner {
                store,
                db,
                bus,
                live,
                timers,
                lane_timers,
                tasks,
                detaches,
                expiring_warning,
                abandon_checks: Mutex::default(),
                retries: Mutex::default(),
                recovered_at: Mutex::default(),
                connections: Mutex::default(),
                events_applied: AtomicU64::new(0),
                rebuild_hold,
                rebuilding: Mutex::default(),
                shows: std::sync::RwLock::default(),
                paced: Mutex::default(),
                session_ends: std::sync::OnceLock::new(),
            }),
        }
    }

    /// How many domain events this node's admission consumer has applied
    /// (tests wait on it before asserting that an event changed nothing).
    pub fn events_applied(&self) -> u64 {
        self.inner.events_applied.load(Ordering::Relaxed)
    }

    /// Whether the queue lives in a store several nodes share.
    pub fn is_shared(&self) -> bool {
        self.inner.store.is_shared()
    }

    /// The show, from this node's cache after the first read (one database
    /// query fewer on every join, connect and poll), kept fresh by the
    /// announcement of every change ([`lifecycle`]); [`Self::promote`]
    /// still reads it afresh.
    pub async fn show(&self, id: ShowId) -> Result<Show, QueueError> {
        let cached = self
            .inner
            .shows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        if let Some(show) = cached {
            return Ok(show);
        }
        let show = self.fresh_show(id).await?;
        self.remember(&show, None);
        Ok(show)
    }

    async fn fresh_show(&self, id: ShowId) -> Result<Show, QueueError> {
        self.inner
            .db
            .show(id)
            .await?
            .ok_or(QueueError::UnknownShow(id))
    }

    pub async fn shows(&self) -> Result<Vec<Show>, QueueError> {
        Ok(self.inner.db.shows().await?)
    }

    /// Creates a show with its seats (`seats` may be empty: a queue only).
    pub async fn create_show(&self, new: NewShow, seats: &[NewSeat]) -> Result<Show, QueueError> {
        Ok(self.inner.db.create_show(new, seats).await?)
    }

    /// Reachability of every backend the queue uses, for /readyz.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.inner.store.ping().await?;
        self.inner.db.ping().await?;
        self.inner.bus.ping().await?;
        Ok(())
    }

    pub async fn counts(&self, show: ShowId) -> Result<Counts, QueueError> {
        Ok(self.inner.store.counts(show).await?)
    }

    /// Shows with live demand (waiting + pre-queued + active), busiest
    /// first ([`crate::store::QueueStore::demand`]).
    pub async fn demand(&self) -> Result<Vec<(ShowId, u64)>, QueueError> {
        Ok(self.inner.store.demand().await?)
    }

    /// The show's seats by status.
    pub async fn seat_counts(&self, show: ShowId) -> Result<SeatCounts, QueueError> {
        Ok(self.inner.db.seat_counts(show).await?)
    }

    /// Whether the show is paused, as this node's connections are told.
    pub fn paused(&self, show: ShowId) -> bool {
        self.inner.live.get(show).signal().paused
    }

    /// The fan known by `name` (a demo username, or a jwt fan's subject).
    pub async fn find_fan(&self, name: &str, demo: bool) -> Result<Option<UserId>, QueueError> {
        Ok(self.inner.db.find_fan(name, demo).await?)
    }

    /// What the show's queue has done (admissions, ends by reason).
    pub async fn tally(&self, show: ShowId) -> Result<Tally, QueueError> {
        Ok(self.inner.store.tally(show).await?)
    }

    /// Whether `session` (which an access token valid until `until` names)
    /// is the fan's active session in the show now. A session the store lost
    /// (no entry, no record of one) is put back first, until `until`.
    pub async fn session_active(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        until: Timestamp,
    ) -> Result<bool, QueueError> {
        let mut entry = self.inner.store.entry(show, user).await?;
        let ended = self.inner.live.get(show).ended(user);
        if entry.is_none() && !ended && Timestamp::now() < until {
            let spot = Reseat::Active {
                user,
                session,
                until,
            };
            // A node that remembers the queue is putting it all back (no
            // hold on admission needed); otherwise the token is all there is.
            let source = match self.inner.live.get(show).remembered_spot(user) {
                Some(_) => RebuildSource::View,
                None => RebuildSource::Token,
            };
            self.reseat(show, &[spot], source).await?;
            entry = self.inner.store.entry(show, user).await?;
        }
        Ok(matches!(entry, Some(Entry::Active { session: s, .. }) if s == session))
    }

    /// Whether `spot` is the fan's latest spot in the show (so a ticket
    /// issued for it may act on it): their current entry's, or, once that
    /// ended with no newer one, any (the ticket only reads how it ended). A
    /// spot the store lost (no entry, no record of one, and no other spot in
    /// this node's memory) is put back first.
    pub async fn spot_current(
        &self,
        show: ShowId,
        user: UserId,
        spot: u64,
    ) -> Result<bool, QueueError> {
        let view = self.inner.live.get(show);
        let remembered = view.spot(user);
        if remembered == Some(spot) {
            return Ok(true);
        }
        // Not in this view, or the view says otherwise: the store decides
        // (a shared store's view can be a change behind).
        Ok(match self.inner.store.entry(show, user).await? {
            Some(Entry::Waiting { seq, .. }) => seq == spot,
            Some(Entry::Active { session, .. }) => session.0 == spot,
            Some(Entry::Gone(_)) => true,
            None if remembered.is_some() => false,
            // This node saw the spot end; the store lost the record of it.
            None if view.ended(user) => true,
            None => {
                let prequeue = self.show(show).await?.state_now() == ShowState::Prequeue;
                let lost = Reseat::from_ticket(user, spot, prequeue);
                self.reseat(show, &[lost], RebuildSource::Ticket).await?;
                true
            }
        })
    }

    /// Puts back spots the store lost (see [`QueueStore::reseat`]), and
    /// follows up: abandonment checks for the restored waiting fans (who
    /// count as seen now), and, when a ticket or token started a hold on
    /// admission, a promotion when it ends.
    async fn reseat(
        &self,
        show: ShowId,
        spots: &[Reseat],
        source: RebuildSource,
    ) -> Result<Reseated, QueueError> {
        let hold = match source {
            RebuildSource::View => Duration::ZERO,
            RebuildSource::Ticket | RebuildSource::Token => self.inner.rebuild_hold,
        };
        let done = self
            .inner
            .store
            .reseat(show, spots, hold, Timestamp::now())
            .await?;
        if done.restored.is_empty() {
            return Ok(done);
        }
        metrics::counter!(m::REBUILT, "source" => source.as_str())
            .increment(done.restored.len() as u64);
        let grace = self.show(show).await?.abandon_grace;
        for spot in &done.restored {
            if let Reseat::Waiting { user, .. } | Reseat::Prequeued { user, .. } = spot {
                self.schedule_abandon_check(show, *user, grace);
            }
        }
        if let Some(held) = done.held_for {
            self.inner.timers.at(held, Job::Promote(show));
        }
        Ok(done)
    }

    /// Joins the queue (the pre-queue before the start), or returns the
    /// spot the fan already holds; admits at once if a slot is free. A spot
    /// the store lost is put back first, rather than a new one made at the
    /// back: the one this node remembers, or else `ticket_spot` (from a
    /// ticket the fan sent along). Refused while the show is scheduled and
    /// once its sale is over.
    pub async fn join(
        &self,
        show: &Show,
        user: UserId,
        ticket_spot: Option<u64>,
    ) -> Result<Joined, QueueError> {
        let mode = match show.state_now() {
            ShowState::Prequeue => JoinMode::Prequeue,
            ShowState::Open | ShowState::Paused => JoinMode::Line,
            state @ (ShowState::Scheduled | ShowState::SoldOut | ShowState::Closed) => {
                // A fan who holds a spot keeps it (a repeat join answers it).
                match self.inner.store.entry(show.id, user).await? {
                    Some(Entry::Waiting { .. } | Entry::Active { .. }) => JoinMode::Line,
                    _ => return Err(QueueError::NotJoinable(state)),
                }
            }
        };
        let view = self.inner.live.get(show.id);
        let remembered = view.remembered_spot(user);
        // A ticket for a spot this node saw end seats nobody again.
        let ticket_spot = ticket_spot.filter(|_| !view.ended(user));
        let lost = match (remembered, ticket_spot) {
            (Some(spot), _) => Some((spot, RebuildSource::View)),
            (None, Some(seq)) => Some((
                Reseat::from_ticket(user, seq, mode == JoinMode::Prequeue),
                RebuildSource::Ticket,
            )),
            (None, None) => None,
        };
        if let Some((spot, source)) = lost {
            if self.inner.store.entry(show.id, user).await?.is_none() {
                self.reseat(show.id, &[spot], source).await?;
            }
        }
        let now = Timestamp::now();
        let trigger = Trigger {
            cause: Cause::Join,
            at: now,
        };
        // Admission runs in the join's own step, so the answer is the
        // store's truth: a fan a free slot was waiting for is answered
        // `active`, never told to wait.
        let admit = match mode {
            JoinMode::Line => self.admit_request(show, trigger),
            JoinMode::Prequeue => None,
        };
        let request = JoinRequest {
            admit,
            ..JoinRequest::new(user, now, mode)
        };
        let outcome = self.inner.store.join(show.id, request).await?;
        let mut settled = true;
        if let (Some(request), Some(admitted)) = (admit, &outcome.admitted) {
            self.record_admissions(show, request, admitted, trigger);
            if admitted.unopened {
                // The start's timer has not opened the pre-queue yet: the
                // promotion opens it.
                self.promote(show.id, trigger).await?;
                settled = false;
            }
        }
        if self.inner.live.get(show.id).is_lost() {
            // This join found the store's queue lost: put back what this
            // node remembers before answering, so the answer ranks the fan
            // behind everyone who was there.
            self.rebuild(show.id).await;
            settled = false;
        }
        if outcome.created {
            metrics::counter!(m::JOINS, "show" => show.id.to_string()).increment(1);
            // A fan who joins and never connects or polls is abandoned after
            // the grace like one who disconnects.
            self.schedule_abandon_check(show.id, user, show.abandon_grace);
        }
        let place = match (settled, outcome.entry, outcome.rank) {
            (false, ..) => self.place(show.id, user).await?,
            (true, Entry::Active { session, until }, _) => Place::Active { session, until },
            (true, Entry::Waiting { .. }, Some(rank)) => {
                self.inner
                    .live
                    .get(show.id)
                    .joined_at(user, rank, outcome.created)
            }
            (true, Entry::Waiting { .. }, None) => Place::Prequeued {
                starts_at: show.starts_at.map(Timestamp::from),
            },
            (true, Entry::Gone(reason), _) => Place::Gone(reason),
        };
        let spot = match outcome.entry {
            Entry::Waiting { seq, .. } => seq,
            Entry::Active { session, .. } => session.0,
            // A join always leaves an entry.
            Entry::Gone(_) => 0,
        };
        Ok(Joined {
            created: outcome.created,
            spot,
            place,
        })
    }

    /// The fan's place as the REST status reports it; counts as liveness.
    pub async fn poll(&self, show: &Show, user: UserId) -> Result<Place, QueueError> {
        let place = self.place(show.id, user).await?;
        if matches!(place, Place::Waiting { .. } | Place::Prequeued { .. }) {
            let touched = self
                .inner
                .store
                .touch(show.id, user, Timestamp::now())
                .await?;
            if !touched {
                self.suspect_loss(show.id, user).await;
            }
            self.schedule_abandon_check(show.id, user, show.abandon_grace);
        }
        Ok(place)
    }

    /// The fan's place: from this node's live view, or from the store when
    /// the view has not heard of the fan yet (a shared store's view can be a
    /// moment behind; the embedded one never is).
    pub async fn place(&self, show: ShowId, user: UserId) -> Result<Place, QueueError> {
        match self.inner.live.get(show).place(user) {
            Place::NotInQueue => self.place_from_store(show, user).await,
            place => Ok(place),
        }
    }

    /// The fan's place as the store has it (no ETA: that comes from the view).
    async fn place_from_store(&self, show: ShowId, user: UserId) -> Result<Place, QueueError> {
        Ok(match self.inner.store.entry(show, user).await? {
            Some(Entry::Active { session, until }) => Place::Active { session, until },
            Some(Entry::Gone(r)) => Place::Gone(r),
            Some(Entry::Waiting { .. }) => match self.inner.store.rank(show, user).await? {
                Some(rank) => Place::Waiting {
                    rank,
                    eta_seconds: None,
                    paused: self.paused(show),
                },
                // Waiting, but not in line: in the pre-queue.
                None => Place::Prequeued {
                    starts_at: self.show(show).await?.starts_at.map(Timestamp::from),
                },
            },
            None => Place::NotInQueue,
        })
    }

    /// Leaves: frees an active slot (and admits the next fan) or drops the
    /// waiting spot.
    pub async fn leave(&self, show: ShowId, user: UserId) -> Result<(), QueueError> {
        self.remove_fan(show, user, Removal::Left).await
    }

    /// Ends whatever spot the fan holds (a leave, an operator's eject).
    async fn remove_fan(
        &self,
        show: ShowId,
        user: UserId,
        reason: Removal,
    ) -> Result<(), QueueError> {
        let removed = self
            .inner
            .store
            .remove(show, user, reason, RemoveIf::Any)
            .await?
            .ok_or(QueueError::NotInQueue)?;
        self.exited(show, user, removed.session, reason, Timestamp::now())
            .await
    }

    /// Ends `session` if it is still the fan's active one, and admits the
    /// next fans here and now. The one way a session ends early or on time:
    /// expiry ([`jobs`]), payment ([`crate::sales`], then its event), the
    /// admission consumer. Returns whether it ended the session (false: it
    /// had ended already, or a later session is active).
    pub async fn end_session(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        reason: Removal,
        freed_at: Timestamp,
    ) -> Result<bool, QueueError> {
        let removed = self
            .inner
            .store
            .remove(show, user, reason, RemoveIf::Session(session))
            .await?;
        if removed.is_none() {
            return Ok(false);
        }
        self.exited(show, user, Some(session), reason, freed_at)
            .await?;
        Ok(true)
    }

    /// Registers who follows every session end (one follower; a second
    /// registration is ignored).
    pub fn follow_session_ends(&self, follower: Box<dyn SessionEnds>) {
        if self.inner.session_ends.set(follower).is_err() {
            tracing::warn!("session ends are followed already; second follower ignored");
        }
    }

    /// Follows a fan's exit on this node: counts it, admits the next fans
    /// here and now if a slot was freed, tells the follower of session ends
    /// ([`SessionEnds`]) if a session ended, then publishes the event that
    /// tells every node (a payment's event comes from its outbox instead). The
    /// admission consumer promotes again on the event, a no-op once the slot
    /// is filled; that keeps a fan's activation off the event's round trip
    /// (and off a consumer group that is still rebalancing).
    async fn exited(
        &self,
        show: ShowId,
        user: UserId,
        session: Option<SessionId>,
        reason: Removal,
        at: Timestamp,
    ) -> Result<(), QueueError> {
        count_exits(show, reason, 1);
        let promoted = match session {
            Some(_) => {
                let trigger = Trigger {
                    cause: Cause::of_exit(reason),
                    at,
                };
                self.promote(show, trigger).await.map(drop)
            }
            None => Ok(()),
        };
        if let Err(e) = &promoted {
            tracing::warn!(error = %e, %show, "promotion after a freed slot failed; the event will retry it");
        }
        if let (Some(session), Some(follower)) = (session, self.inner.session_ends.get()) {
            follower.ended(show, user, session, reason).await;
        }
        let announce = match (reason, session) {
            (Removal::Left | Removal::Removed, Some(_)) => Some(EventKind::SessionLeft),
            (Removal::Expired, _) => Some(EventKind::SessionExpired),
            (Removal::Abandoned, _) => Some(EventKind::WaitingAbandoned),
            // A waiting fan who leaves frees no slot; a payment's event is
            // written with the payment.
            (Removal::Left | Removal::Removed, None) | (Removal::Completed, _) => None,
            // A sale's end lets the line go in one step, not through here.
            (Removal::SoldOut | Removal::ShowClosed, _) => None,
        };
        if let Some(kind) = announce {
            self.publish(kind, show, user, session).await?;
        }
        promoted
    }

    /// Publishes `payment.completed` for a payment taken outside anteroom's
    /// own payment path (which writes the event through its outbox): the
    /// event ends that session (not a later one of the same fan) and frees
    /// the slot.
    pub async fn complete_payment(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
    ) -> Result<(), QueueError> {
        self.publish(EventKind::PaymentCompleted, show, user, Some(session))
            .await
    }

    /// Admits waiting fans into free slots, if the show is open, as fast
    /// as its admission rate allows (a timer then admits the next ones).
    /// Returns how many were admitted.
    ///
    /// The show comes from this node's cache, which every change refreshes
    /// (and the refresh promotes again), so a promotion that read it a
    /// moment before a resume is followed by one that reads it after; no
    /// database read per admission. The first promotion after the start
    /// opens the pre-queue.
    pub async fn promote(&self, show: ShowId, trigger: Trigger) -> Result<usize, QueueError> {
        let show = self.show(show).await?;
        let Some(request) = self.admit_request(&show, trigger) else {
            return Ok(0);
        };
        let outcome = self.inner.store.admit(show.id, request).await?;
        if !outcome.unopened {
            return Ok(self.record_admissions(&show, request, &outcome, trigger));
        }
        // The start's timer has not opened the pre-queue yet: open it, and
        // admit in the opening's own step (now, after it was found).
        let request = AdmitRequest {
            now: Timestamp::now(),
            ..request
        };
        match self.open_prequeue(&show, Some(request)).await? {
            Some(outcome) => Ok(self.record_admissions(&show, request, &outcome, trigger)),
            None => Ok(0),
        }
    }

    /// What to ask the store to admit now, if the show admits: it is open,
    /// and this node's view of its queue is not lost (the fans it remembers
    /// are put back first, and that promotes).
    fn admit_request(&self, show: &Show, trigger: Trigger) -> Option<AdmitRequest> {
        if show.state_now() != ShowState::Open {
            return None;
        }
        let view = self.inner.live.get(show.id);
        if view.is_lost() {
            return None;
        }
        Some(AdmitRequest {
            capacity: show.capacity,
            ttl: show.session_ttl,
            rate: show.admission_rate,
            now: Timestamp::now(),
            freed_at: trigger.at,
            epoch: view.epoch(),
        })
    }

    /// Follows an admission step (a promotion's or a join's): a new epoch
    /// the store answered, the rate's next slot, the metrics. Returns how
    /// many were admitted.
    fn record_admissions(
        &self,
        show: &Show,
        request: AdmitRequest,
        outcome: &Admitted,
        trigger: Trigger,
    ) -> usize {
        if request.epoch != 0 && outcome.epoch != request.epoch {
            self.inner.live.observe_epoch(show.id, outcome.epoch);
        }
        if let Some(at) = outcome.next_at {
            self.pace(show.id, at);
        }
        let admitted = &outcome.admissions;
        if !admitted.is_empty() {
            let view = self.inner.live.get(show.id);
            for a in admitted {
                if let Some(waited) = view.waited(a.user, request.now) {
                    metrics::histogram!(m::WAIT).record(waited.as_secs_f64());
                }
            }
            metrics::counter!(m::PROMOTIONS, "show" => show.id.to_string(), "cause" => trigger.cause.as_str())
                .increment(admitted.len() as u64);
        }
        admitted.len()
    }

    /// Opens a push connection for the fan.
    pub async fn connect(&self, show: &Show, user: UserId) -> Result<Connection, QueueError> {
        let (listener, mut initial) = self.inner.live.get(show.id).listen(user);
        if initial == Place::NotInQueue {
            initial = self.place_from_store(show.id, user).await?;
        }
        let presence = match initial {
            // A pre-queued fan's connection counts as presence like a
            // waiting fan's.
            Place::Waiting { .. } | Place::Prequeued { .. } => {
                let view = self.inner.live.get(show.id);
                // A lost queue's entry is not back yet: the connection is
                // counted when it is (this node's records are written again
                // after the rebuild).
                let counted = match view.is_lost() {
                    true => None,
                    false => self.inner.store.attach(show.id, user).await?,
                };
                // Held in this node's records before anything else is
                // awaited, so a rebuild's rewrite of them, running
                // meanwhile, counts this connection too.
                let seq = counted.or_else(|| view.spot(user));
                if let Some(seq) = seq {
                    self.held(show.id, user, seq);
                }
                if counted.is_none() {
                    self.suspect_loss(show.id, user).await;
                }
                seq.map(|seq| Presence {
                    queue: self.clone(),
                    show: show.id,
                    user,
                    seq,
                })
            }
            _ => None,
        };
        Ok(Connection {
            listener,
            initial,
            _presence: presence,
        })
    }

    /// The store has no waiting entry (or active session) for a fan this
    /// node's view has. Usually the view is a change behind; it may be that
    /// the store lost the queue, which nothing else would reveal while no one
    /// joins or is admitted: a fresh snapshot tells (its epoch).
    async fn suspect_loss(&self, show: ShowId, user: UserId) {
        if self.inner.live.get(show).spot(user).is_none() {
            return;
        }
        // Neither an entry nor a record of how one ended: not a view a
        // change behind, a queue gone.
        if let Ok(None) = self.inner.store.entry(show, user).await {
            self.inner.live.request_resync(show);
        }
    }

    /// A connection counted against entry `seq` closed `at`; the grace
    /// runs from then. (The show is read first: a failure after the store
    /// call would retry, and count the close twice.)
    /// Applies a slot-freeing event: ends the session a payment names
    /// (unless the payment kept it: the payer holds other seats) and admits
    /// the next fans. Safe to apply twice.
    pub async fn apply_event(&self, event: &DomainEvent) -> Result<(), QueueError> {
        let applied = self.apply(event).await;
        if applied.is_ok() {
            self.inner.events_applied.fetch_add(1, Ordering::Relaxed);
        }
        applied
    }

    async fn apply(&self, event: &DomainEvent) -> Result<(), QueueError> {
        let Some(cause) = Cause::of(event.kind) else {
            return Ok(());
        };
        if event.kind == EventKind::PaymentCompleted && !event.keeps_session {
            match event.session_id {
                Some(session) => {
                    let ended = self
                        .end_session(
                            event.show_id,
                            event.user_id,
                            session,
                            Removal::Completed,
                            event.occurred_at,
                        )
                        .await?;
                    if ended {
                        return Ok(());
                    }
                }
                None => tracing::warn!(event = %event.id, "payment.completed without a session id"),
            }
        }
        let trigger = Trigger {
            cause,
            at: event.occurred_at,
        };
        match self.promote(event.show_id, trigger).await {
            Err(QueueError::UnknownShow(show)) => {
                tracing::warn!(%show, event = %event.id, "event for an unknown show");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    async fn publish(
        &self,
        kind: EventKind,
        show: ShowId,
        user: UserId,
        session: Option<SessionId>,
    ) -> Result<(), QueueError> {
        let event = DomainEvent::new(kind, show, user, session);
        self.inner.bus.publish(&event).await?;
        Ok(())
    }
}

fn count_exits(show: ShowId, reason: Removal, n: u64) {
    metrics::counter!(m::EXITS, "show" => show.to_string(), "reason" => reason.as_str())
        .increment(n);
}
