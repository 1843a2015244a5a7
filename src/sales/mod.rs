//! The sale paths: the seat map, seat holds, points and payments.
//!
//! The rules live here, once, above the backends:
//! - Only a fan with an active session in the show (a valid access token
//!   whose session the queue still holds) may hold seats or pay.
//! - A hold takes the seat's lock ([`locks`]) without waiting, then the
//!   database claims the seat with one conditional write (only if it is
//!   available) and writes the hold in the same transaction. Nothing is
//!   read before the claim, so a holder that stalled past its lock cannot
//!   write from a stale read: it finds the seat taken. A fan has at most
//!   `max_holds` open holds per show.
//! - The fan's session is checked twice: before, from this node's live view
//!   (no round trip) or the store when the view does not know it; after
//!   the write, in the store, which is the check the rule rests on (below).
//! - A hold expires at its exact time: `hold_ttl` after it was made, but
//!   never after the end of the turn it was made in (the session's
//!   `active_until`). A timer on the node that made it (and, after a
//!   restart, on every node) ends it conditionally, gives the seat back and
//!   writes `reservation.expired` to the outbox.
//! - A hold never outlives its turn: when an admitted session ends unpaid
//!   (expired, left, removed by an operator), its holds expire at once, as
//!   a due hold does, in one database call
//!   ([`Database::release_session_holds`]). A session ended by a payment
//!   has nothing unpaid left, so that end releases nothing.
//!
//!   The seam: the queue owns sessions and must not depend on the sale
//!   paths (they depend on it), so it offers a follower hook,
//!   [`crate::queue::SessionEnds`], that its one exit path
//!   ([`QueueService`]'s `exited`, run once per session end, on the node
//!   that ended it) awaits for every ended session. The sale service
//!   registers itself there when it is built and keeps the rule (which
//!   ends release holds) and the effects (the database call, the seat map
//!   cache, the metric, the outbox) here, in the same code a hold expiry
//!   runs. The queue calling the database directly would have left the
//!   seat map cache and the metric to nobody.
//!
//!   A hold written while its session was ending (after the hold's check,
//!   before its write) is caught by a second check after the write. If the
//!   node stops between a session's end and the release, the holds still
//!   expire by their timers, at the end of the turn at the latest.
//! - A payment debits only what the balance covers, marks the hold paid and
//!   the seat sold, and writes `payment.completed` to the outbox, all in one
//!   transaction. The same `Idempotency-Key` answers the first response
//!   again; with another body it is refused. A payment that failed changed
//!   nothing, so it can be retried with the same key.
//! - A payment ends the payer's session unless they still hold other seats
//!   in the show (they may pay for those too): decided with the payment
//!   ([`crate::domain::Payment::decide`]), carried in its event, and
//!   carried out here at once through [`QueueService::end_session`], which
//!   admits the next fan on this node. The outbox relay ([`outbox`])
//!   publishes the event, and the admission consumer applies it again on
//!   every node (a no-op once done): the durable path if this node stops
//!   between the commit and the end of the session.
//! - Which answer a payment gets (replay, refusal, completion) is the
//!   domain's [`crate::domain::Payment::decide`]; both databases load and
//!   store around it, so they answer alike.
//! - Every change of a seat's status is written to the show's seat
//!   availability ([`availability`]) right after the database commits it:
//!   in place, per seat, versioned, and pushed as a delta to the show's
//!   admitted fans. A hold releases its seat lock in the same step (one
//!   Redis script). The layout, the availability and the seat list are
//!   all read from there, never from the database on a read.

pub mod availability;
pub mod locks;
pub mod outbox;

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio_util::task::TaskTracker;

use self::availability::{Availability, AvailabilityError, Delta, Layout, SeatEntry};
use self::locks::SeatLocks;
use self::outbox::OutboxSignal;
use crate::domain::{
    Amount, BalanceLimit, HoldRefusal, HoldRequest, HoldState, IdempotencyKey, PayRefusal, Payment,
    Receipt, Removal, Reservation, ReservationId, SeatId, SeatStatus, SessionId, ShowId, Timestamp,
    UserId,
};
use crate::queue::timers::TimerHandle;
use crate::queue::{Place, QueueError, QueueService, SessionEnds};
use crate::store::{Database, DbError, PayOutcome, ReleaseOutcome, StoreError};
use crate::telemetry::metrics as m;

/// How soon a hold expiry that failed is tried again.
const EXPIRY_RETRY: Duration = Duration::from_secs(1);

/// Values of the `outcome` label of `anteroom_reservations_total`.
pub const RESERVATION_OUTCOMES: &[&str] = &[
    "held",
    "taken",
    "limit",
    "not_active",
    "no_such_seat",
    "error",
];

/// Values of the `outcome` label of `anteroom_payments_total`.
pub const PAYMENT_OUTCOMES: &[&str] = &[
    "completed",
    "replayed",
    "insufficient_points",
    "hold_expired",
    "key_reused",
    "not_active",
    "rejected",
];

/// Settings of the sale paths.
#[derive(Debug, Clone)]
pub struct SaleSettings {
    /// How long a hold keeps a seat before it expires.
    pub hold_ttl: Duration,
    /// Open holds per fan per show.
    pub max_holds: u32,
    /// How long a seat lock lives if its holder never releases it.
    pub lock_ttl: Duration,
}

/// A verified access token: the bearer of an admitted session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessPass {
    pub user: UserId,
    pub show: ShowId,
    pub session: SessionId,
    /// The token's expiry: the session's end as admitted (to the second).
    pub until: Timestamp,
}

/// A hold's expiry, run on the sale paths' timer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldExpiry(pub ReservationId);

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error("show {0} does not exist")]
    UnknownShow(ShowId),
    #[error("you have no active session in this show")]
    NotActive,
    #[error("no such seat in this show")]
    NoSuchSeat,
    #[error("the seat is held or sold")]
    SeatTaken,
    #[error("you already hold {max} seats in this show")]
    HoldLimit { max: u32 },
    #[error("no such reservation of yours")]
    NoSuchHold,
    #[error("the reservation is {0} and can no longer be changed")]
    NotHeld(&'static str),
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the reservation is paid already")]
    AlreadyPaid,
    #[error("not enough points: the seat costs {price}, your balance is {balance}")]
    NotEnoughPoints { balance: u64, price: u64 },
    #[error("this Idempotency-Key was used for another request")]
    KeyReused,
    #[error(transparent)]
    BalanceLimit(#[from] BalanceLimit),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<AvailabilityError> for SaleError {
    fn from(e: AvailabilityError) -> Self {
        match e {
            AvailabilityError::UnknownShow(show) => SaleError::UnknownShow(show),
            AvailabilityError::Db(e) => SaleError::Db(e),
            AvailabilityError::Store(e) => SaleError::Store(e),
        }
    }
}

impl From<PayRefusal> for SaleError {
    fn from(r: PayRefusal) -> Self {
        match r {
            PayRefusal::KeyReused => SaleError::KeyReused,
            PayRefusal::NoSuchHold => SaleError::NoSuchHold,
            PayRefusal::AlreadyPaid => SaleError::AlreadyPaid,
            PayRefusal::HoldExpired => SaleError::HoldExpired,
            PayRefusal::NotActive => SaleError::NotActive,
            PayRefusal::NotEnoughPoints { balance, price } => {
                SaleError::NotEnoughPoints { balance, price }
            }
        }
    }
}

/// Whether a read was served by the node's availability mirror as it was
/// (`Hit`) or read the shared source first (`Miss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

#[derive(Debug, Clone)]
pub struct SalesService {
    inner: Arc<Parts>,
}

/// What a [`SalesService`] is built from.
#[derive(Debug)]
pub struct Parts {
    pub db: Database,
    pub queue: QueueService,
    pub locks: SeatLocks,
    pub availability: Availability,
    pub timers: TimerHandle<HoldExpiry>,
    pub outbox: OutboxSignal,
    pub tasks: TaskTracker,
    pub settings: SaleSettings,
}

/// The sale paths' follower of session ends. Weak, because the queue it
/// is registered with is part of the service.
#[derive(Debug)]
struct ReleaseOnSessionEnd(Weak<Parts>);

impl SessionEnds for ReleaseOnSessionEnd {
    fn ended(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        reason: Removal,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A payment ends a session only when it leaves no hold open.
            if reason == Removal::Completed {
                return;
            }
            if let Some(inner) = self.0.upgrade() {
                SalesService { inner }
                    .release_session_holds(show, user, session)
                    .await;
            }
        })
    }
}

impl SalesService {
    /// Builds the service and registers it to follow the queue's session
    /// ends (see the module doc).
    pub fn new(parts: Parts) -> Self {
        let inner = Arc::new(parts);
        inner
            .queue
            .follow_session_ends(Box::new(ReleaseOnSessionEnd(Arc::downgrade(&inner))));
        Self { inner }
    }

    pub fn locks(&self) -> &SeatLocks {
        &self.inner.locks
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The show's seat list as `render` writes it (JSON), from the
    /// availability (cached until the next change).
    pub async fn seat_map(
        &self,
        show: ShowId,
        render: impl Fn(&mut dyn Iterator<Item = SeatEntry<'_>>) -> String,
    ) -> Result<(Arc<str>, CacheStatus), SaleError> {
        Ok(self.inner.availability.seat_list(show, render).await?)
    }

    /// The show's layout (fixed for the sale).
    pub async fn layout(&self, show: ShowId) -> Result<Arc<Layout>, SaleError> {
        Ok(self.inner.availability.layout(show).await?)
    }

    /// The show's availability document (JSON) and its version.
    pub async fn availability(
        &self,
        show: ShowId,
    ) -> Result<(Arc<str>, CacheStatus, u64), SaleError> {
        let ((json, version), cache) = self.inner.availability.document(show).await?;
        Ok((json, cache, version))
    }

    /// The show's availability deltas from now on, for an admitted fan's
    /// connection.
    pub async fn follow_seats(
        &self,
        show: ShowId,
    ) -> Result<tokio::sync::broadcast::Receiver<Delta>, SaleError> {
        Ok(self.inner.availability.follow(show).await?)
    }

    /// [`Self::follow_seats`] without waiting, if this node has the show's
    /// seat map; deltas come once [`Self::seats_loaded`] has loaded its
    /// availability.
    pub fn follow_seats_now(
        &self,
        show: ShowId,
    ) -> Option<tokio::sync::broadcast::Receiver<Delta>> {
        self.inner.availability.follow_now(show)
    }

    /// Loads the show's availability for a receiver of
    /// [`Self::follow_seats_now`].
    pub async fn seats_loaded(&self, show: ShowId) -> Result<(), SaleError> {
        Ok(self.inner.availability.follow_loaded(show).await?)
    }

    async fn session_active(&self, pass: &AccessPass) -> Result<bool, SaleError> {
        Ok(self
            .inner
            .queue
            .session_active(pass.show, pass.user, pass.session, pass.until)
            .await?)
    }

    /// When the turn of `pass` ends, to the millisecond (the token's
    /// `until` is rounded up to the second), if its session is active as
    /// far as this node can tell at once: from its live view, which costs
    /// no round trip, else from the store (which also puts back a session
    /// the store lost). This is the early refusal; the authority is the
    /// store's check after the write (see [`SalesService::hold`]).
    async fn turn_ends(
        &self,
        user: UserId,
        show: ShowId,
        pass: &AccessPass,
    ) -> Result<Timestamp, SaleError> {
        if pass.user != user || pass.show != show {
            return Err(SaleError::NotActive);
        }
        if let Place::Active { session, until } = self.inner.queue.place(show, user).await? {
            if session == pass.session {
                return Ok(until.min(pass.until));
            }
        }
        // A view that has not seen the admission yet (another node's, a
        // moment behind) does not know the turn's exact end: then the last
        // whole second the token covers, which is within the turn.
        match self.session_active(pass).await? {
            true => Ok(pass.until.minus(Duration::from_secs(1))),
            false => Err(SaleError::NotActive),
        }
    }

    /// Holds a seat in `show` for `user`, who shows `pass`.
    ///
    /// Round trips of a hold that wins, 5 (counted on the wire by the test
    /// `sales::a_successful_hold_takes_at_most_five_round_trips`): the
    /// seat lock, the database's transaction in one batch (and the
    /// pool's check of its connection on its way back), the lock's release
    /// with the availability's change (one script), and the session check
    /// after the write, beside it. The check before the write reads this node's
    /// live view; a fan it wrongly lets through (a session that just ended
    /// elsewhere) is caught by the check after, which is the one the rule
    /// needs anyway.
    pub async fn hold(
        &self,
        user: UserId,
        show: ShowId,
        pass: &AccessPass,
        seat: SeatId,
    ) -> Result<Reservation, SaleError> {
        let result = self.try_hold(user, show, pass, seat).await;
        let outcome = match &result {
            Ok(_) => "held",
            Err(SaleError::SeatTaken) => "taken",
            Err(SaleError::HoldLimit { .. }) => "limit",
            Err(SaleError::NotActive) => "not_active",
            Err(SaleError::NoSuchSeat) => "no_such_seat",
            Err(_) => "error",
        };
        metrics::counter!(m::RESERVATIONS, "outcome" => outcome).increment(1);
        result
    }

    async fn try_hold(
        &self,
        user: UserId,
        show: ShowId,
        pass: &AccessPass,
        seat: SeatId,
    ) -> Result<Reservation, SaleError> {
        let turn_ends = self.turn_ends(user, show, pass).await?;
        let Some(lock) = self
            .inner
            .locks
            .acquire(pass.show, seat, self.inner.settings.lock_ttl)
            .await?
        else {
            return Err(SaleError::SeatTaken);
        };
        let reservation = match self.write_hold(pass, seat, turn_ends).await {
            Ok(held) => held,
            Err(e) => {
                if let Err(e) = self.inner.locks.release(lock).await {
                    tracing::warn!(error = %e, "seat lock release failed; it expires by itself");
                }
                return Err(e);
            }
        };
        // The lock's release with the seat's new status (one script), and
        // the session's check after the write, do not wait for each other:
        // the hold waits for the slower, not for the sum.
        let changed = [(reservation.seat, SeatStatus::Held)];
        let settle = self.after_seat_change(reservation.show, &changed, Some(lock));
        let ((), still_active) = tokio::join!(settle, self.session_active(pass));
        self.schedule_expiry(reservation.id, reservation.expires_at);
        // A session that ended before the write released its holds before
        // this one existed. An ending session is removed before its holds
        // are released, so if it is still active now, that release will
        // see this hold. (If the queue cannot tell now, the hold stands: it
        // ends with the turn at the latest.)
        match still_active {
            Ok(false) => {
                self.release_session_holds(pass.show, pass.user, pass.session)
                    .await;
                Err(SaleError::NotActive)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not re-check the session after a hold");
                Ok(reservation)
            }
            Ok(true) => Ok(reservation),
        }
    }

    /// The hold's database step, under the seat's lock: claims the seat if
    /// it is available, and writes the hold. It expires `hold_ttl` from now
    /// or when the turn ends, whichever comes first. Public so a test can
    /// run it as a lock holder that stalled past its lock would.
    pub async fn write_hold(
        &self,
        pass: &AccessPass,
        seat: SeatId,
        turn_ends: Timestamp,
    ) -> Result<Reservation, SaleError> {
        let request = HoldRequest {
            show: pass.show,
            seat,
            user: pass.user,
            session: pass.session,
            expires_at: Timestamp::now()
                .plus(self.inner.settings.hold_ttl)
                .min(turn_ends),
            max_holds: self.inner.settings.max_holds,
        };
        match self.inner.db.hold_seat(&request).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(HoldRefusal::SeatTaken)) | Err(DbError::Conflict) => Err(SaleError::SeatTaken),
            Ok(Err(HoldRefusal::NoSuchSeat)) => Err(SaleError::NoSuchSeat),
            Ok(Err(HoldRefusal::LimitReached)) => Err(SaleError::HoldLimit {
                max: self.inner.settings.max_holds,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases the fan's own hold.
    pub async fn release(&self, user: UserId, id: ReservationId) -> Result<(), SaleError> {
        match self.inner.db.release_hold(user, id).await? {
            ReleaseOutcome::Released(r) => {
                self.after_seat_change(r.show, &[(r.seat, SeatStatus::Available)], None)
                    .await;
                Ok(())
            }
            ReleaseOutcome::NotFound => Err(SaleError::NoSuchHold),
            ReleaseOutcome::NotHeld(state) => Err(SaleError::NotHeld(state.as_str())),
        }
    }

    pub async fn balance(&self, user: UserId) -> Result<u64, SaleError> {
        Ok(self.inner.db.balance(user).await?)
    }

    pub async fn charge(&self, user: UserId, amount: Amount) -> Result<u64, SaleError> {
        Ok(self.inner.db.charge(user, amount).await??)
    }

    /// Pays for a held reservation. `pass` is the caller's access token, if
    /// it verified. Returns the receipt and whether this call made the
    /// payment (false: a replay of the key's first answer).
    pub async fn pay(
        &self,
        user: UserId,
        pass: Option<AccessPass>,
        reservation: ReservationId,
        key: IdempotencyKey,
    ) -> Result<(Receipt, bool), SaleError> {
        let request_hash: [u8; 32] = Sha256::digest(reservation.0.to_string().as_bytes()).into();
        let result = self
            .try_pay(user, pass, reservation, key, request_hash)
            .await;
        let outcome = match &result {
            Ok((_, true)) => "completed",
            Ok((_, false)) => "replayed",
            Err(SaleError::NotEnoughPoints { .. }) => "insufficient_points",
            Err(SaleError::HoldExpired) => "hold_expired",
            Err(SaleError::KeyReused) => "key_reused",
            Err(SaleError::NotActive) => "not_active",
            Err(_) => "rejected",
        };
        metrics::counter!(m::PAYMENTS, "outcome" => outcome).increment(1);
        result
    }

    async fn try_pay(
        &self,
        user: UserId,
        pass: Option<AccessPass>,
        reservation: ReservationId,
        key: IdempotencyKey,
        request_hash: [u8; 32],
    ) -> Result<(Receipt, bool), SaleError> {
        let active = match pass {
            Some(pass)
                if pass.user == user
                    && self
                        .inner
                        .queue
                        .session_active(pass.show, pass.user, pass.session, pass.until)
                        .await? =>
            {
                Some((pass.show, pass.session))
            }
            _ => None,
        };
        let request = Payment {
            user,
            reservation,
            active,
            key,
            request_hash,
            now: Timestamp::now(),
        };
        let (receipt, change) = match self.inner.db.pay(&request).await {
            Ok(PayOutcome::Completed(receipt, change, event)) => {
                self.inner.outbox.hand(*event);
                (receipt, change)
            }
            Ok(PayOutcome::Replayed(receipt)) => return Ok((receipt, false)),
            Ok(PayOutcome::Refused(refusal)) => return Err(refusal.into()),
            Err(DbError::Conflict) => return Err(SaleError::AlreadyPaid),
            Err(e) => return Err(e.into()),
        };
        let show = change.reservation.show;
        self.after_seat_change(show, &[(change.reservation.seat, SeatStatus::Sold)], None)
            .await;
        if change.ends_session {
            // The event ends it too, on every node; this admits the next
            // fan here without waiting for the event's round trip.
            let ended = self
                .inner
                .queue
                .end_session(show, user, change.session, Removal::Completed, request.now)
                .await;
            if let Err(e) = ended {
                tracing::warn!(error = %e, %show, "ending the paid session failed; its event will");
            }
        }
        Ok((receipt, true))
    }

    /// Runs a hold's expiry from the timer task, on a task of its own
    /// (tracked). A failure (the database unreachable) re-arms the timer:
    /// the seat must not stay held.
    pub fn dispatch(&self, job: HoldExpiry) {
        let sales = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = sales.expire(job).await {
                tracing::error!(error = %e, ?job, "hold expiry failed; retrying in 1 s");
                sales.inner.timers.at(EXPIRY_RETRY, job);
            }
        });
    }

    /// Gives the seat back if the hold is still open and due; re-arms if it
    /// is not due yet (a clock a little behind).
    pub async fn expire(&self, HoldExpiry(id): HoldExpiry) -> Result<(), SaleError> {
        let now = Timestamp::now();
        match self.inner.db.expire_hold(id, now).await? {
            Some(r) => self.expired(&[r]).await,
            None => {
                if let Some(r) = self.inner.db.reservation(id).await? {
                    if r.state == HoldState::Held {
                        self.schedule_expiry(r.id, r.expires_at);
                    }
                }
            }
        }
        Ok(())
    }

    /// Expires the holds `session` still has open: it ended unpaid. A
    /// failure is logged, not retried: the holds' own timers end them at
    /// the end of the turn at the latest.
    pub async fn release_session_holds(&self, show: ShowId, user: UserId, session: SessionId) {
        let released = self
            .inner
            .db
            .release_session_holds(show, user, session, Timestamp::now())
            .await;
        match released {
            Ok(ended) => self.expired(&ended).await,
            Err(e) => {
                tracing::warn!(error = %e, %show, %session, "releasing an ended session's holds failed; they expire on their timers");
            }
        }
    }

    /// What follows holds that expired (their time was up, or their
    /// session's): counted, their events sent on, the seat map redrawn.
    async fn expired(&self, ended: &[Reservation]) {
        if ended.is_empty() {
            return;
        }
        metrics::counter!(m::RESERVATIONS_EXPIRED).increment(ended.len() as u64);
        self.inner.outbox.wake();
        let mut freed: std::collections::BTreeMap<ShowId, Vec<(SeatId, SeatStatus)>> =
            std::collections::BTreeMap::new();
        for r in ended {
            freed
                .entry(r.show)
                .or_default()
                .push((r.seat, SeatStatus::Available));
        }
        for (show, seats) in freed {
            self.after_seat_change(show, &seats, None).await;
        }
    }

    fn schedule_expiry(&self, id: ReservationId, at: Timestamp) {
        self.inner
            .timers
            .at(Timestamp::now().until(at), HoldExpiry(id));
    }

    /// Schedules the expiry of every open hold (at start: holds made by a
    /// node that has since stopped still expire on time). Conditional
    /// expiry makes the same timer on several nodes harmless.
    pub async fn schedule_open_holds(&self) -> Result<usize, SaleError> {
        let holds = self.inner.db.open_holds().await?;
        for (id, at) in &holds {
            self.schedule_expiry(*id, *at);
        }
        Ok(holds.len())
    }

    /// What follows every change of a seat's status: the availability
    /// takes the seats' new statuses (and `lock` is released with it), and
    /// the queue hears how many seats are left to sell (a show with none
    /// left is sold out; while every seat left is held, waiting fans are
    /// told so).
    async fn after_seat_change(
        &self,
        show: ShowId,
        seats: &[(SeatId, SeatStatus)],
        lock: Option<locks::SeatLock>,
    ) {
        let lock = lock.map(|l| (&self.inner.locks, l));
        self.inner.availability.changed(show, seats, lock).await;
        // The availability's mirror decides the common case without a
        // database read; the sale ending (none left), and a mirror with a
        // change in flight (about one change in ten under 50 concurrent
        // holds), ask
        // the database which statuses are left: three index probes, where
        // a count of a 20,000-seat show read every seat. A wrong all-held
        // signal only makes every node read them again.
        let left = match self.inner.availability.left(show) {
            Some(left) if !left.sold_out() => Ok(left),
            _ => self.inner.db.seats_left(show).await,
        };
        let supply = match left {
            Ok(seats) => self.inner.queue.seats_changed(show, seats).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = supply {
            tracing::warn!(error = %e, %show, "checking the seats left failed; the next seat change checks again");
        }
    }
}
