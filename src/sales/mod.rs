//! The sale paths: the seat map, seat holds, points and payments.
//!
//! The rules live here, once, above the backends:
//! - Only a fan with an active session in the show (a valid access token
//!   whose session the queue still holds) may hold seats or pay.
//! - A hold takes the seat's lock ([`locks`]) without waiting, reads the
//!   seat's version under it, and asks the database to write the hold only
//!   if the seat is still available at that version (the fencing check).
//!   A fan has at most `max_holds` open holds per show.
//! - A hold expires at its exact time: a timer on the node that made it
//!   (and, after a restart, on every node) ends it conditionally, gives the
//!   seat back and writes `reservation.expired` to the outbox.
//! - A payment debits only what the balance covers, marks the hold paid and
//!   the seat sold, and writes `payment.completed` to the outbox, all in one
//!   transaction. The same `Idempotency-Key` answers the first response
//!   again; with another body it is refused. A payment that failed changed
//!   nothing, so it can be retried with the same key.
//! - The outbox relay ([`outbox`]) publishes the events; the admission
//!   consumer ends the payer's session (unless they still hold seats) and
//!   admits the next fan.
//! - Every change of a seat invalidates the show's seat map in [`cache`].

pub mod cache;
pub mod locks;
pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use self::cache::{Lookup, SeatCache};
use self::locks::SeatLocks;
use self::outbox::OutboxSignal;
use crate::domain::{
    Amount, HoldState, IdempotencyKey, Reservation, ReservationId, Seat, SeatId, SeatStatus,
    SessionId, ShowId, Timestamp, UserId,
};
use crate::queue::timers::TimerHandle;
use crate::queue::{QueueError, QueueService};
use crate::store::{
    Database, DbError, HoldOutcome, HoldRequest, KeyUse, PayOutcome, PayRequest, Receipt,
    ReleaseOutcome, StoreError,
};
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
}

/// What a hold is fenced by: the seat as read under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    version: u64,
    price: u64,
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
    #[error("the balance may not exceed {max} points")]
    BalanceLimit { max: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A seat as the seat map serves it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatView {
    pub seat_id: u64,
    pub label: String,
    pub section: String,
    pub price: u64,
    pub status: SeatStatus,
}

impl From<Seat> for SeatView {
    fn from(s: Seat) -> Self {
        Self {
            seat_id: s.id.0,
            label: s.label,
            section: s.section,
            price: s.price,
            status: s.status,
        }
    }
}

/// Whether the seat map came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

#[derive(Debug, Clone)]
pub struct SalesService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    queue: QueueService,
    locks: SeatLocks,
    cache: SeatCache,
    timers: TimerHandle<HoldExpiry>,
    outbox: OutboxSignal,
    settings: SaleSettings,
}

impl SalesService {
    pub fn new(
        db: Database,
        queue: QueueService,
        locks: SeatLocks,
        cache: SeatCache,
        timers: TimerHandle<HoldExpiry>,
        outbox: OutboxSignal,
        settings: SaleSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                queue,
                locks,
                cache,
                timers,
                outbox,
                settings,
            }),
        }
    }

    pub fn locks(&self) -> &SeatLocks {
        &self.inner.locks
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The show's seat map as JSON, from the cache when it has it.
    pub async fn seat_map(&self, show: ShowId) -> Result<(Arc<str>, CacheStatus), SaleError> {
        let generation = match self.inner.cache.get(show).await {
            Ok(Lookup::Hit(json)) => return Ok((json, CacheStatus::Hit)),
            Ok(Lookup::Miss { generation }) => Some(generation),
            Err(e) => {
                tracing::warn!(error = %e, %show, "seat cache unavailable; reading the database");
                None
            }
        };
        let seats = self.inner.db.seats(show).await?;
        // No seats: a queue-only show, or no show at all (404).
        if seats.is_empty() && self.inner.db.show(show).await?.is_none() {
            return Err(SaleError::UnknownShow(show));
        }
        let seats: Vec<SeatView> = seats.into_iter().map(SeatView::from).collect();
        let json: Arc<str> = serde_json::to_string(&seats)
            .map_err(|e| DbError::Query(format!("seat map does not serialise: {e}")))?
            .into();
        if let Some(generation) = generation {
            if let Err(e) = self.inner.cache.fill(show, generation, json.clone()).await {
                tracing::warn!(error = %e, %show, "seat cache fill failed");
            }
        }
        Ok((json, CacheStatus::Miss))
    }

    /// Whether `pass` is `user`'s, for `show`, and its session still active.
    async fn check_active(
        &self,
        user: UserId,
        show: ShowId,
        pass: &AccessPass,
    ) -> Result<(), SaleError> {
        if pass.user == user
            && pass.show == show
            && self
                .inner
                .queue
                .session_active(pass.show, pass.user, pass.session)
                .await?
        {
            Ok(())
        } else {
            Err(SaleError::NotActive)
        }
    }

    /// Holds a seat in `show` for `user`, who shows `pass`.
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
        self.check_active(user, show, pass).await?;
        let Some(lock) = self
            .inner
            .locks
            .acquire(pass.show, seat, self.inner.settings.lock_ttl)
            .await?
        else {
            return Err(SaleError::SeatTaken);
        };
        let held = match self.read_fence(pass.show, seat).await {
            Ok(fence) => self.write_hold(pass, seat, fence).await,
            Err(e) => Err(e),
        };
        if let Err(e) = self.inner.locks.release(lock).await {
            tracing::warn!(error = %e, "seat lock release failed; it expires by itself");
        }
        let reservation = held?;
        self.after_seat_change(reservation.show).await;
        self.schedule_expiry(reservation.id, reservation.expires_at);
        Ok(reservation)
    }

    /// The hold's first database step, under the seat's lock: the seat's
    /// current version (and price), if it is available. Public, with
    /// [`SalesService::write_hold`], so a test can stall between the two as
    /// a paused lock holder would.
    pub async fn read_fence(&self, show: ShowId, seat: SeatId) -> Result<Fence, SaleError> {
        let seat = self
            .inner
            .db
            .seat(show, seat)
            .await?
            .ok_or(SaleError::NoSuchSeat)?;
        if seat.status != SeatStatus::Available {
            return Err(SaleError::SeatTaken);
        }
        Ok(Fence {
            version: seat.version,
            price: seat.price,
        })
    }

    /// Writes the hold if the seat is still available at `fence`.
    pub async fn write_hold(
        &self,
        pass: &AccessPass,
        seat: SeatId,
        fence: Fence,
    ) -> Result<Reservation, SaleError> {
        let request = HoldRequest {
            show: pass.show,
            seat,
            fence: fence.version,
            price: fence.price,
            user: pass.user,
            session: pass.session,
            expires_at: Timestamp::now().plus(self.inner.settings.hold_ttl),
            max_holds: self.inner.settings.max_holds,
        };
        match self.inner.db.hold_seat(&request).await {
            Ok(HoldOutcome::Held(r)) => Ok(r),
            Ok(HoldOutcome::SeatTaken) | Err(DbError::Conflict) => Err(SaleError::SeatTaken),
            Ok(HoldOutcome::LimitReached) => Err(SaleError::HoldLimit {
                max: self.inner.settings.max_holds,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases the fan's own hold.
    pub async fn release(&self, user: UserId, id: ReservationId) -> Result<(), SaleError> {
        match self.inner.db.release_hold(user, id).await? {
            ReleaseOutcome::Released(r) => {
                self.after_seat_change(r.show).await;
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
        self.inner
            .db
            .charge(user, amount.get())
            .await?
            .ok_or(SaleError::BalanceLimit {
                max: crate::store::db::sales::MAX_BALANCE,
            })
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
        let held = self
            .inner
            .db
            .reservation(reservation)
            .await?
            .filter(|r| r.user == user);
        let active = match (pass, &held) {
            (Some(pass), Some(r)) => self.check_active(user, r.show, &pass).await.map(|()| pass),
            _ => Err(SaleError::NotActive),
        };
        let pass = match active {
            Ok(pass) => pass,
            // Paying ends the session, so a retry of a payment that went
            // through finds no active session: it still gets the first
            // answer.
            Err(not_active) => {
                return match self.inner.db.key_use(user, &key, request_hash).await? {
                    KeyUse::Same(receipt) => Ok((receipt, false)),
                    KeyUse::Other => Err(SaleError::KeyReused),
                    KeyUse::Unused if held.is_none() => Err(SaleError::NoSuchHold),
                    KeyUse::Unused => Err(not_active),
                }
            }
        };
        let request = PayRequest {
            user,
            reservation,
            session: pass.session,
            key,
            request_hash,
            now: Timestamp::now(),
        };
        match self.inner.db.pay(&request).await {
            Ok(PayOutcome::Completed(receipt, r)) => {
                self.inner.outbox.wake();
                self.after_seat_change(r.show).await;
                Ok((receipt, true))
            }
            Ok(PayOutcome::Replayed(receipt)) => Ok((receipt, false)),
            Ok(PayOutcome::KeyReused) => Err(SaleError::KeyReused),
            Ok(PayOutcome::NotEnoughPoints { balance, price }) => {
                Err(SaleError::NotEnoughPoints { balance, price })
            }
            Ok(PayOutcome::NoSuchHold) => Err(SaleError::NoSuchHold),
            Ok(PayOutcome::HoldExpired) => Err(SaleError::HoldExpired),
            Ok(PayOutcome::AlreadyPaid) | Err(DbError::Conflict) => Err(SaleError::AlreadyPaid),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a hold's expiry from the timer task. A failure (the database
    /// unreachable) re-arms the timer: the seat must not stay held.
    pub async fn fire(&self, job: HoldExpiry) {
        if let Err(e) = self.expire(job).await {
            tracing::error!(error = %e, ?job, "hold expiry failed; retrying in 1 s");
            self.inner.timers.at(EXPIRY_RETRY, job);
        }
    }

    /// Gives the seat back if the hold is still open and due; re-arms if it
    /// is not due yet (a clock a little behind).
    pub async fn expire(&self, HoldExpiry(id): HoldExpiry) -> Result<(), SaleError> {
        let now = Timestamp::now();
        match self.inner.db.expire_hold(id, now).await? {
            Some(r) => {
                metrics::counter!(m::RESERVATIONS_EXPIRED).increment(1);
                self.inner.outbox.wake();
                self.after_seat_change(r.show).await;
            }
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

    async fn after_seat_change(&self, show: ShowId) {
        if let Err(e) = self.inner.cache.invalidate(show).await {
            tracing::error!(error = %e, %show, "seat cache invalidation failed");
        }
    }
}
