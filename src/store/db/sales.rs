//! The sale paths' durable data: seats, holds, points, payments and the
//! transactional outbox.
//!
//! Each call is one atomic step whose conditions are checked where the data
//! lives: in one MySQL transaction (retried on a deadlock), or under one
//! mutex embedded. The steps are primitives; when to call them and what
//! follows (locks, timers, cache, the session) is decided once in
//! [`crate::sales::SalesService`].
//!
//! Correctness does not rest on the seat lock the service takes first:
//! - a hold is written only if the seat is still `available` at the version
//!   read under the lock (the fencing check), and
//! - a seat has at most one reservation that keeps it (`open_seat_id` is
//!   unique), so a seat is never held or sold twice.
//!
//! A debit happens only where `balance >= amount`, in the same transaction
//! that marks the reservation paid, the seat sold, records the payment under
//! its idempotency key and writes the `payment.completed` event to the
//! outbox. A fan's holds and payments serialise on their account row, which
//! is also what makes concurrent requests with one idempotency key wait for
//! the first and then replay its answer.

use std::collections::HashMap;
use std::sync::PoisonError;

use sqlx::{MySql, Row, Transaction};

use super::{Database, DbError, MemoryDb, MySqlDb};
use crate::domain::{
    DomainEvent, HoldState, IdempotencyKey, NewSeat, PayRefusal, PaymentId, Reservation,
    ReservationId, Seat, SeatId, SeatStatus, SessionId, ShowId, Timestamp, UserId,
};

/// The highest balance an account may reach.
pub const MAX_BALANCE: u64 = 1_000_000_000_000;

/// A hold to write, fenced by the seat version read under the lock.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub show: ShowId,
    pub seat: SeatId,
    /// The seat's version when it was read under the lock.
    pub fence: u64,
    /// The seat's price as read with the fence (prices never change).
    pub price: u64,
    pub user: UserId,
    pub session: SessionId,
    pub expires_at: Timestamp,
    /// How many holds the fan may have open in this show, this one included.
    pub max_holds: u32,
}

impl HoldRequest {
    /// The hold limit, checked by every backend inside its transaction.
    fn limit_reached(&self, open_holds: u64) -> bool {
        open_holds >= u64::from(self.max_holds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Held(Reservation),
    /// Held or sold by someone else, or changed since the fence was read.
    SeatTaken,
    LimitReached,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Reservation),
    /// No such reservation of this fan's.
    NotFound,
    /// Paid, released or expired already.
    NotHeld(HoldState),
}

#[derive(Debug, Clone)]
pub struct PayRequest {
    pub user: UserId,
    pub reservation: ReservationId,
    /// The admitted session paying; the event ends it.
    pub session: SessionId,
    pub key: IdempotencyKey,
    /// SHA-256 of the request body.
    pub request_hash: [u8; 32],
    pub now: Timestamp,
}

/// What a completed payment answers, the first time and on every replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub payment: PaymentId,
    pub reservation: ReservationId,
    pub amount: u64,
    pub balance: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    Completed(Receipt, Reservation),
    /// The key was used before with the same body: the first answer.
    Replayed(Receipt),
    /// The key was used before with another body.
    KeyReused,
    NotEnoughPoints {
        balance: u64,
        price: u64,
    },
    /// Not this fan's, or no such reservation.
    NoSuchHold,
    /// The hold ran out (or was released) before the payment.
    HoldExpired,
    /// Paid already, under another key.
    AlreadyPaid,
}

/// An outbox row claimed for publishing.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: u64,
    pub event: DomainEvent,
}

/// How a key was used before, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    Unused,
    Same(Receipt),
    Other,
}

impl KeyUse {
    /// The idempotency rule: a stored payment under the key answers again
    /// only for the same request body.
    fn of(stored: Option<(&[u8], Receipt)>, request_hash: &[u8; 32]) -> Self {
        match stored {
            None => KeyUse::Unused,
            Some((hash, receipt)) if hash == request_hash => KeyUse::Same(receipt),
            Some(_) => KeyUse::Other,
        }
    }
}

impl From<PayRefusal> for PayOutcome {
    fn from(r: PayRefusal) -> Self {
        match r {
            PayRefusal::AlreadyPaid => PayOutcome::AlreadyPaid,
            PayRefusal::HoldExpired => PayOutcome::HoldExpired,
            PayRefusal::NotEnoughPoints { balance, price } => {
                PayOutcome::NotEnoughPoints { balance, price }
            }
        }
    }
}

impl Database {
    /// Every seat of a show, in layout order.
    pub async fn seats(&self, show: ShowId) -> Result<Vec<Seat>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seats(show)),
            Database::MySql(m) => m.seats(show).await,
        }
    }

    pub async fn seat(&self, show: ShowId, seat: SeatId) -> Result<Option<Seat>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seat(show, seat)),
            Database::MySql(m) => m.seat(show, seat).await,
        }
    }

    pub async fn hold_seat(&self, req: &HoldRequest) -> Result<HoldOutcome, DbError> {
        match self {
            Database::Memory(m) => Ok(m.hold_seat(req)),
            Database::MySql(m) => {
                m.retrying(|tx| {
                    let req = req.clone();
                    Box::pin(async move { MySqlDb::hold_seat(tx, &req).await })
                })
                .await
            }
        }
    }

    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.reservation(id)),
            Database::MySql(m) => m.reservation(id).await,
        }
    }

    pub async fn release_hold(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, DbError> {
        match self {
            Database::Memory(m) => Ok(m.release_hold(user, id)),
            Database::MySql(m) => {
                m.retrying(|tx| Box::pin(MySqlDb::release_hold(tx, user, id)))
                    .await
            }
        }
    }

    /// Ends a hold whose time is up, giving the seat back and writing
    /// `reservation.expired` to the outbox. `None` if it was no longer held
    /// or not yet due.
    pub async fn expire_hold(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<Option<Reservation>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.expire_hold(id, now)),
            Database::MySql(m) => {
                m.retrying(|tx| Box::pin(MySqlDb::expire_hold(tx, id, now)))
                    .await
            }
        }
    }

    /// Every hold still open, to schedule their expiry after a start.
    pub async fn open_holds(&self) -> Result<Vec<(ReservationId, Timestamp)>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.open_holds()),
            Database::MySql(m) => m.open_holds().await,
        }
    }

    /// How many holds the fan has open in the show.
    pub async fn held_count(&self, show: ShowId, user: UserId) -> Result<u64, DbError> {
        match self {
            Database::Memory(m) => Ok(m.held_count(show, user)),
            Database::MySql(m) => m.held_count(show, user).await,
        }
    }

    pub async fn balance(&self, user: UserId) -> Result<u64, DbError> {
        match self {
            Database::Memory(m) => Ok(m.balance(user)),
            Database::MySql(m) => m.balance(user).await,
        }
    }

    /// Adds points; `None` if the balance would pass [`MAX_BALANCE`].
    pub async fn charge(&self, user: UserId, amount: u64) -> Result<Option<u64>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.charge(user, amount)),
            Database::MySql(m) => {
                m.retrying(|tx| Box::pin(MySqlDb::charge(tx, user, amount)))
                    .await
            }
        }
    }

    pub async fn key_use(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        request_hash: [u8; 32],
    ) -> Result<KeyUse, DbError> {
        match self {
            Database::Memory(m) => Ok(m.key_use(user, key, request_hash)),
            Database::MySql(m) => m.key_use(user, key, request_hash).await,
        }
    }

    pub async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, DbError> {
        match self {
            Database::Memory(m) => Ok(m.pay(req)),
            Database::MySql(m) => {
                m.retrying(|tx| {
                    let req = req.clone();
                    Box::pin(async move { MySqlDb::pay(tx, &req).await })
                })
                .await
            }
        }
    }

    /// Claims up to `limit` unsent outbox rows, oldest first, for a lease
    /// ending at `lease_until`; rows another relay holds a live lease on are
    /// skipped.
    pub async fn claim_outbox(
        &self,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxRow>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.claim_outbox(limit, now, lease_until)),
            Database::MySql(m) => m.claim_outbox(limit, now, lease_until).await,
        }
    }

    /// Marks published rows sent, or (`sent == false`) gives claimed rows
    /// back so the next attempt can take them at once.
    pub async fn settle_outbox(
        &self,
        ids: &[u64],
        sent: bool,
        now: Timestamp,
    ) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Database::Memory(m) => {
                m.settle_outbox(ids, sent, now);
                Ok(())
            }
            Database::MySql(m) => m.settle_outbox(ids, sent, now).await,
        }
    }

    /// Unsent rows and the age of the oldest.
    pub async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), DbError> {
        match self {
            Database::Memory(m) => Ok(m.outbox_backlog()),
            Database::MySql(m) => m.outbox_backlog().await,
        }
    }
}

// ---------------------------------------------------------------- embedded

#[derive(Debug, Default)]
pub(super) struct SalesTables {
    seats: Vec<Seat>,
    reservations: Vec<Reservation>,
    accounts: HashMap<UserId, u64>,
    payments: HashMap<(UserId, String), StoredPayment>,
    paid: HashMap<ReservationId, PaymentId>,
    outbox: Vec<MemoryOutboxRow>,
}

#[derive(Debug)]
struct StoredPayment {
    receipt: Receipt,
    hash: [u8; 32],
}

#[derive(Debug)]
struct MemoryOutboxRow {
    event: DomainEvent,
    created_at: Timestamp,
    claimed_until: Option<Timestamp>,
    sent: bool,
}

impl SalesTables {
    fn key_use(&self, user: UserId, key: &IdempotencyKey, hash: &[u8; 32]) -> KeyUse {
        let stored = self
            .payments
            .get(&(user, key.as_str().to_owned()))
            .map(|p| (&p.hash[..], p.receipt.clone()));
        KeyUse::of(stored, hash)
    }

    fn seat_mut(&mut self, id: SeatId) -> Option<&mut Seat> {
        let i = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.seats.get_mut(i)
    }

    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        let i = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.reservations.get_mut(i)
    }

    /// Gives a reservation's seat back (one status change: one version).
    fn free_seat(&mut self, seat: SeatId) {
        if let Some(s) = self.seat_mut(seat) {
            s.status = SeatStatus::Available;
            s.version += 1;
        }
    }
}

impl MemoryDb {
    fn sales(&self) -> std::sync::MutexGuard<'_, SalesTables> {
        self.sales.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn add_seats(&self, show: ShowId, seats: &[NewSeat]) {
        let mut t = self.sales();
        for (section, label, price) in seats {
            let id = SeatId(t.seats.len() as u64 + 1);
            t.seats.push(Seat {
                id,
                show,
                label: label.clone(),
                section: section.clone(),
                price: *price,
                status: SeatStatus::Available,
                version: 0,
            });
        }
    }

    fn seats(&self, show: ShowId) -> Vec<Seat> {
        self.sales()
            .seats
            .iter()
            .filter(|s| s.show == show)
            .cloned()
            .collect()
    }

    fn seat(&self, show: ShowId, seat: SeatId) -> Option<Seat> {
        self.sales()
            .seat_mut(seat)
            .filter(|s| s.show == show)
            .cloned()
    }

    fn hold_seat(&self, req: &HoldRequest) -> HoldOutcome {
        let mut t = self.sales();
        let held = t
            .reservations
            .iter()
            .filter(|r| r.user == req.user && r.show == req.show && r.state == HoldState::Held)
            .count();
        if req.limit_reached(held as u64) {
            return HoldOutcome::LimitReached;
        }
        let Some(seat) = t.seat_mut(req.seat).filter(|s| s.show == req.show) else {
            return HoldOutcome::SeatTaken;
        };
        if seat.status != SeatStatus::Available || seat.version != req.fence {
            return HoldOutcome::SeatTaken;
        }
        seat.status = SeatStatus::Held;
        seat.version += 1;
        let reservation = Reservation {
            id: ReservationId(t.reservations.len() as u64 + 1),
            show: req.show,
            seat: req.seat,
            user: req.user,
            session: req.session,
            price: req.price,
            state: HoldState::Held,
            expires_at: req.expires_at,
        };
        t.reservations.push(reservation.clone());
        HoldOutcome::Held(reservation)
    }

    fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.sales().reservation_mut(id).cloned()
    }

    fn release_hold(&self, user: UserId, id: ReservationId) -> ReleaseOutcome {
        let mut t = self.sales();
        let Some(r) = t.reservation_mut(id).filter(|r| r.user == user) else {
            return ReleaseOutcome::NotFound;
        };
        if r.state != HoldState::Held {
            return ReleaseOutcome::NotHeld(r.state);
        }
        r.state = HoldState::Released;
        let r = r.clone();
        t.free_seat(r.seat);
        ReleaseOutcome::Released(r)
    }

    fn expire_hold(&self, id: ReservationId, now: Timestamp) -> Option<Reservation> {
        let mut t = self.sales();
        let r = t.reservation_mut(id).filter(|r| r.due(now))?;
        r.state = HoldState::Expired;
        let r = r.clone();
        t.free_seat(r.seat);
        t.outbox.push(MemoryOutboxRow {
            event: DomainEvent::reservation_expired(&r),
            created_at: now,
            claimed_until: None,
            sent: false,
        });
        Some(r)
    }

    fn open_holds(&self) -> Vec<(ReservationId, Timestamp)> {
        self.sales()
            .reservations
            .iter()
            .filter(|r| r.state == HoldState::Held)
            .map(|r| (r.id, r.expires_at))
            .collect()
    }

    fn held_count(&self, show: ShowId, user: UserId) -> u64 {
        self.sales()
            .reservations
            .iter()
            .filter(|r| r.user == user && r.show == show && r.state == HoldState::Held)
            .count() as u64
    }

    fn balance(&self, user: UserId) -> u64 {
        self.sales().accounts.get(&user).copied().unwrap_or(0)
    }

    fn charge(&self, user: UserId, amount: u64) -> Option<u64> {
        let mut t = self.sales();
        let balance = t.accounts.entry(user).or_default();
        let next = balance.checked_add(amount).filter(|b| *b <= MAX_BALANCE)?;
        *balance = next;
        Some(next)
    }

    fn key_use(&self, user: UserId, key: &IdempotencyKey, hash: [u8; 32]) -> KeyUse {
        self.sales().key_use(user, key, &hash)
    }

    fn pay(&self, req: &PayRequest) -> PayOutcome {
        let mut t = self.sales();
        match t.key_use(req.user, &req.key, &req.request_hash) {
            KeyUse::Unused => {}
            KeyUse::Same(receipt) => return PayOutcome::Replayed(receipt),
            KeyUse::Other => return PayOutcome::KeyReused,
        }
        let Some(r) = t
            .reservation_mut(req.reservation)
            .filter(|r| r.user == req.user)
            .cloned()
        else {
            return PayOutcome::NoSuchHold;
        };
        let balance = t.accounts.get(&req.user).copied().unwrap_or(0);
        let balance = match r.debit(balance, req.now) {
            Ok(after) => after,
            Err(refusal) => return refusal.into(),
        };
        t.accounts.insert(req.user, balance);
        if let Some(row) = t.reservation_mut(r.id) {
            row.state = HoldState::Paid;
        }
        if let Some(seat) = t.seat_mut(r.seat) {
            seat.status = SeatStatus::Sold;
            seat.version += 1;
        }
        let payment = PaymentId(t.paid.len() as u64 + 1);
        t.paid.insert(r.id, payment);
        let receipt = Receipt {
            payment,
            reservation: r.id,
            amount: r.price,
            balance,
        };
        t.payments.insert(
            (req.user, req.key.as_str().to_owned()),
            StoredPayment {
                receipt: receipt.clone(),
                hash: req.request_hash,
            },
        );
        t.outbox.push(MemoryOutboxRow {
            event: DomainEvent::payment_completed(&r, req.session, payment),
            created_at: req.now,
            claimed_until: None,
            sent: false,
        });
        let paid = Reservation {
            state: HoldState::Paid,
            ..r
        };
        PayOutcome::Completed(receipt, paid)
    }

    fn claim_outbox(&self, limit: u32, now: Timestamp, lease_until: Timestamp) -> Vec<OutboxRow> {
        let mut t = self.sales();
        let mut out = Vec::new();
        for (i, row) in t.outbox.iter_mut().enumerate() {
            if out.len() >= limit as usize {
                break;
            }
            if row.sent || row.claimed_until.is_some_and(|until| until > now) {
                continue;
            }
            row.claimed_until = Some(lease_until);
            out.push(OutboxRow {
                id: i as u64 + 1,
                event: row.event.clone(),
            });
        }
        out
    }

    fn settle_outbox(&self, ids: &[u64], sent: bool, _now: Timestamp) {
        let mut t = self.sales();
        for id in ids {
            let Some(row) = usize::try_from(*id)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| t.outbox.get_mut(i))
            else {
                continue;
            };
            if sent {
                row.sent = true;
            }
            row.claimed_until = None;
        }
    }

    fn outbox_backlog(&self) -> (u64, Option<Timestamp>) {
        let t = self.sales();
        let mut pending = t.outbox.iter().filter(|r| !r.sent);
        let oldest = pending.clone().map(|r| r.created_at).min();
        (pending.by_ref().count() as u64, oldest)
    }
}

// ------------------------------------------------------------------- MySQL

type Tx = Transaction<'static, MySql>;
type TxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DbError>> + Send + 'a>>;

/// How often a transaction that lost a deadlock is run again.
const DEADLOCK_RETRIES: u32 = 5;

#[derive(sqlx::FromRow)]
struct SeatRow {
    id: u64,
    show_id: u64,
    label: String,
    section: String,
    price: u64,
    status: String,
    version: u64,
}

impl From<SeatRow> for Seat {
    fn from(r: SeatRow) -> Self {
        Seat {
            id: SeatId(r.id),
            show: ShowId(r.show_id),
            label: r.label,
            section: r.section,
            price: r.price,
            // The schema's CHECK allows only the three statuses.
            status: SeatStatus::parse(&r.status).unwrap_or(SeatStatus::Sold),
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: u64,
    show_id: u64,
    seat_id: u64,
    user_id: u64,
    session_id: u64,
    price: u64,
    state: String,
    expires_at: i64,
}

impl From<ReservationRow> for Reservation {
    fn from(r: ReservationRow) -> Self {
        Reservation {
            id: ReservationId(r.id),
            show: ShowId(r.show_id),
            seat: SeatId(r.seat_id),
            user: UserId(r.user_id),
            session: SessionId(r.session_id),
            price: r.price,
            // The schema's CHECK allows only the four states.
            state: HoldState::parse(&r.state).unwrap_or(HoldState::Expired),
            expires_at: Timestamp(r.expires_at),
        }
    }
}

macro_rules! select_reservation {
    ($tail:literal) => {
        concat!(
            "SELECT id, show_id, seat_id, user_id, session_id, price, state, expires_at \
             FROM reservations ",
            $tail
        )
    };
}

macro_rules! select_seats {
    ($tail:literal) => {
        concat!(
            "SELECT id, show_id, label, section, price, status, version FROM seats ",
            $tail
        )
    };
}

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn write_outbox(tx: &mut Tx, event: &DomainEvent, now: Timestamp) -> Result<(), DbError> {
    let payload = serde_json::to_string(event)
        .map_err(|e| DbError::Query(format!("event does not serialise: {e}")))?;
    sqlx::query("INSERT INTO outbox (event_id, payload, created_at) VALUES (?, ?, ?)")
        .bind(event.id.to_string())
        .bind(payload)
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes sure the fan has an account row and locks it: a fan's holds and
/// payments run one at a time. Returns the balance.
async fn lock_account(tx: &mut Tx, user: UserId) -> Result<u64, DbError> {
    // ON DUPLICATE KEY UPDATE takes the row's exclusive lock at once; an
    // INSERT IGNORE would take a shared one, and two transactions upgrading
    // shared locks deadlock.
    sqlx::query(
        "INSERT INTO accounts (user_id, balance) VALUES (?, 0) \
         ON DUPLICATE KEY UPDATE balance = balance",
    )
    .bind(user.0)
    .execute(&mut **tx)
    .await?;
    let balance: u64 =
        sqlx::query_scalar("SELECT balance FROM accounts WHERE user_id = ? FOR UPDATE")
            .bind(user.0)
            .fetch_one(&mut **tx)
            .await?;
    Ok(balance)
}

/// Gives a seat back: held → available, one more version.
async fn free_seat(tx: &mut Tx, seat: SeatId) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE seats SET status = 'available', version = version + 1 \
         WHERE id = ? AND status = 'held'",
    )
    .bind(seat.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MySqlDb {
    /// Runs `body` in a transaction, again (from the start) if it lost a
    /// deadlock, committing when it returns `Ok`.
    async fn retrying<T, F>(&self, body: F) -> Result<T, DbError>
    where
        F: for<'t> Fn(&'t mut Tx) -> TxFuture<'t, T>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool().begin().await?;
            let result = body(&mut tx).await;
            let result = match result {
                Ok(value) => tx
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err(DbError::from_sqlx),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(DbError::Deadlock(_)) if attempt < DEADLOCK_RETRIES => {
                    tracing::debug!(attempt, "transaction lost a deadlock; running it again");
                    // A short, growing, jittered pause, so the transactions
                    // that collided do not collide again in lockstep.
                    let ms = rand::random_range(1..=10 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                Err(DbError::Deadlock(msg)) => return Err(DbError::Unavailable(msg)),
                other => return other,
            }
        }
    }

    pub(super) async fn add_seats(
        tx: &mut Tx,
        show: ShowId,
        seats: &[NewSeat],
    ) -> Result<(), DbError> {
        // Multi-row inserts in chunks keep a 50,000-seat show to a few
        // dozen round trips.
        for chunk in seats.chunks(500) {
            let mut insert = sqlx::QueryBuilder::<MySql>::new(
                "INSERT INTO seats (show_id, section, label, price) ",
            );
            insert.push_values(chunk, |mut row, (section, label, price)| {
                row.push_bind(show.0)
                    .push_bind(section.as_str())
                    .push_bind(label.as_str())
                    .push_bind(*price);
            });
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn seats(&self, show: ShowId) -> Result<Vec<Seat>, DbError> {
        let rows: Vec<SeatRow> = sqlx::query_as(select_seats!("WHERE show_id = ? ORDER BY id"))
            .bind(show.0)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(Seat::from).collect())
    }

    async fn seat(&self, show: ShowId, seat: SeatId) -> Result<Option<Seat>, DbError> {
        let row: Option<SeatRow> = sqlx::query_as(select_seats!("WHERE id = ? AND show_id = ?"))
            .bind(seat.0)
            .bind(show.0)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(Seat::from))
    }

    async fn hold_seat(tx: &mut Tx, req: &HoldRequest) -> Result<HoldOutcome, DbError> {
        lock_account(tx, req.user).await?;
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reservations WHERE user_id = ? AND show_id = ? AND state = 'held'",
        )
        .bind(req.user.0)
        .bind(req.show.0)
        .fetch_one(&mut **tx)
        .await?;
        if req.limit_reached(u64::try_from(held).unwrap_or(0)) {
            return Ok(HoldOutcome::LimitReached);
        }
        // The fencing check: still available, and unchanged since it was
        // read under the lock.
        let fenced = sqlx::query(
            "UPDATE seats SET status = 'held', version = version + 1 \
             WHERE id = ? AND show_id = ? AND status = 'available' AND version = ?",
        )
        .bind(req.seat.0)
        .bind(req.show.0)
        .bind(req.fence)
        .execute(&mut **tx)
        .await?;
        if fenced.rows_affected() != 1 {
            return Ok(HoldOutcome::SeatTaken);
        }
        let inserted = sqlx::query(
            "INSERT INTO reservations \
             (show_id, seat_id, user_id, session_id, price, state, expires_at, open_seat_id) \
             VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
        )
        .bind(req.show.0)
        .bind(req.seat.0)
        .bind(req.user.0)
        .bind(req.session.0)
        .bind(req.price)
        .bind(req.expires_at.0)
        .bind(req.seat.0)
        .execute(&mut **tx)
        .await;
        let id = match inserted {
            Ok(done) => ReservationId(done.last_insert_id()),
            // The unique key on the seat's open reservation: the last line
            // of defence, and a conflict like any other.
            Err(e) if is_duplicate(&e) => return Err(DbError::Conflict),
            Err(e) => return Err(e.into()),
        };
        Ok(HoldOutcome::Held(Reservation {
            id,
            show: req.show,
            seat: req.seat,
            user: req.user,
            session: req.session,
            price: req.price,
            state: HoldState::Held,
            expires_at: req.expires_at,
        }))
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, DbError> {
        let row: Option<ReservationRow> = sqlx::query_as(select_reservation!("WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(Reservation::from))
    }

    async fn locked_reservation(
        tx: &mut Tx,
        id: ReservationId,
    ) -> Result<Option<Reservation>, DbError> {
        let row: Option<ReservationRow> =
            sqlx::query_as(select_reservation!("WHERE id = ? FOR UPDATE"))
                .bind(id.0)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(row.map(Reservation::from))
    }

    async fn release_hold(
        tx: &mut Tx,
        user: UserId,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, DbError> {
        let Some(r) = Self::locked_reservation(tx, id)
            .await?
            .filter(|r| r.user == user)
        else {
            return Ok(ReleaseOutcome::NotFound);
        };
        if r.state != HoldState::Held {
            return Ok(ReleaseOutcome::NotHeld(r.state));
        }
        sqlx::query(
            "UPDATE reservations SET state = 'released', open_seat_id = NULL \
             WHERE id = ? AND state = 'held'",
        )
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
        free_seat(tx, r.seat).await?;
        Ok(ReleaseOutcome::Released(Reservation {
            state: HoldState::Released,
            ..r
        }))
    }

    async fn expire_hold(
        tx: &mut Tx,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<Option<Reservation>, DbError> {
        let Some(r) = Self::locked_reservation(tx, id).await? else {
            return Ok(None);
        };
        if !r.due(now) {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE reservations SET state = 'expired', open_seat_id = NULL \
             WHERE id = ? AND state = 'held'",
        )
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
        free_seat(tx, r.seat).await?;
        let r = Reservation {
            state: HoldState::Expired,
            ..r
        };
        write_outbox(tx, &DomainEvent::reservation_expired(&r), now).await?;
        Ok(Some(r))
    }

    async fn open_holds(&self) -> Result<Vec<(ReservationId, Timestamp)>, DbError> {
        let rows: Vec<(u64, i64)> =
            sqlx::query_as("SELECT id, expires_at FROM reservations WHERE state = 'held'")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (ReservationId(id), Timestamp(at)))
            .collect())
    }

    async fn held_count(&self, show: ShowId, user: UserId) -> Result<u64, DbError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reservations WHERE user_id = ? AND show_id = ? AND state = 'held'",
        )
        .bind(user.0)
        .bind(show.0)
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn balance(&self, user: UserId) -> Result<u64, DbError> {
        let balance: Option<u64> =
            sqlx::query_scalar("SELECT balance FROM accounts WHERE user_id = ?")
                .bind(user.0)
                .fetch_optional(self.pool())
                .await?;
        Ok(balance.unwrap_or(0))
    }

    async fn charge(tx: &mut Tx, user: UserId, amount: u64) -> Result<Option<u64>, DbError> {
        let balance = lock_account(tx, user).await?;
        let Some(next) = balance.checked_add(amount).filter(|b| *b <= MAX_BALANCE) else {
            return Ok(None);
        };
        sqlx::query("UPDATE accounts SET balance = ? WHERE user_id = ?")
            .bind(next)
            .bind(user.0)
            .execute(&mut **tx)
            .await?;
        Ok(Some(next))
    }

    async fn key_use(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        hash: [u8; 32],
    ) -> Result<KeyUse, DbError> {
        let row = sqlx::query(
            "SELECT id, reservation_id, amount, balance_after, request_hash FROM payments \
             WHERE user_id = ? AND idempotency_key = ?",
        )
        .bind(user.0)
        .bind(key.as_str())
        .fetch_optional(self.pool())
        .await?;
        key_use_of(row, &hash)
    }

    async fn pay(tx: &mut Tx, req: &PayRequest) -> Result<PayOutcome, DbError> {
        // Serialises this fan's payments: a second request with the same key
        // waits here for the first to commit, then replays it.
        let balance = lock_account(tx, req.user).await?;
        let previous = sqlx::query(
            "SELECT id, reservation_id, amount, balance_after, request_hash FROM payments \
             WHERE user_id = ? AND idempotency_key = ? FOR UPDATE",
        )
        .bind(req.user.0)
        .bind(req.key.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        match key_use_of(previous, &req.request_hash)? {
            KeyUse::Unused => {}
            KeyUse::Same(receipt) => return Ok(PayOutcome::Replayed(receipt)),
            KeyUse::Other => return Ok(PayOutcome::KeyReused),
        }
        let Some(r) = Self::locked_reservation(tx, req.reservation)
            .await?
            .filter(|r| r.user == req.user)
        else {
            return Ok(PayOutcome::NoSuchHold);
        };
        let balance = match r.debit(balance, req.now) {
            Ok(after) => after,
            Err(refusal) => return Ok(refusal.into()),
        };
        // The same condition again, in the statement: the row lock above
        // makes it hold, and the unsigned column would refuse the rest.
        let debited = sqlx::query(
            "UPDATE accounts SET balance = balance - ? WHERE user_id = ? AND balance >= ?",
        )
        .bind(r.price)
        .bind(req.user.0)
        .bind(r.price)
        .execute(&mut **tx)
        .await?;
        if debited.rows_affected() != 1 {
            return Err(DbError::Conflict);
        }
        sqlx::query("UPDATE reservations SET state = 'paid' WHERE id = ? AND state = 'held'")
            .bind(r.id.0)
            .execute(&mut **tx)
            .await?;
        let sold = sqlx::query(
            "UPDATE seats SET status = 'sold', version = version + 1 \
             WHERE id = ? AND status = 'held'",
        )
        .bind(r.seat.0)
        .execute(&mut **tx)
        .await?;
        if sold.rows_affected() != 1 {
            return Err(DbError::Conflict);
        }
        let inserted = sqlx::query(
            "INSERT INTO payments \
             (user_id, reservation_id, amount, idempotency_key, request_hash, balance_after) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(req.user.0)
        .bind(r.id.0)
        .bind(r.price)
        .bind(req.key.as_str())
        .bind(&req.request_hash[..])
        .bind(balance)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                DbError::Conflict
            } else {
                e.into()
            }
        })?;
        let payment = PaymentId(inserted.last_insert_id());
        write_outbox(
            tx,
            &DomainEvent::payment_completed(&r, req.session, payment),
            req.now,
        )
        .await?;
        let receipt = Receipt {
            payment,
            reservation: r.id,
            amount: r.price,
            balance,
        };
        Ok(PayOutcome::Completed(
            receipt,
            Reservation {
                state: HoldState::Paid,
                ..r
            },
        ))
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxRow>, DbError> {
        let mut tx = self.pool().begin().await?;
        let rows: Vec<(u64, String)> = sqlx::query_as(
            "SELECT id, payload FROM outbox \
             WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?) \
             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(now.0)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut claim = sqlx::QueryBuilder::<MySql>::new("UPDATE outbox SET claimed_until = ");
        claim.push_bind(lease_until.0).push(" WHERE id IN (");
        let mut ids = claim.separated(", ");
        for (id, _) in &rows {
            ids.push_bind(*id);
        }
        claim.push(")");
        claim.build().execute(&mut *tx).await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, payload) in rows {
            match serde_json::from_str(&payload) {
                Ok(event) => out.push(OutboxRow { id, event }),
                Err(e) => tracing::error!(id, error = %e, "unreadable outbox row left unsent"),
            }
        }
        Ok(out)
    }

    async fn settle_outbox(&self, ids: &[u64], sent: bool, now: Timestamp) -> Result<(), DbError> {
        let mut update = sqlx::QueryBuilder::<MySql>::new("UPDATE outbox SET claimed_until = NULL");
        if sent {
            update.push(", sent_at = ").push_bind(now.0);
        }
        update.push(" WHERE sent_at IS NULL AND id IN (");
        let mut list = update.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        update.push(")");
        update.build().execute(self.pool()).await?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), DbError> {
        let (count, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(self.pool())
                .await?;
        Ok((u64::try_from(count).unwrap_or(0), oldest.map(Timestamp)))
    }
}

fn key_use_of(row: Option<sqlx::mysql::MySqlRow>, hash: &[u8; 32]) -> Result<KeyUse, DbError> {
    let Some(row) = row else {
        return Ok(KeyUse::Unused);
    };
    let stored: Vec<u8> = row.try_get("request_hash")?;
    let receipt = Receipt {
        payment: PaymentId(row.try_get("id")?),
        reservation: ReservationId(row.try_get("reservation_id")?),
        amount: row.try_get("amount")?,
        balance: row.try_get("balance_after")?,
    };
    Ok(KeyUse::of(Some((&stored, receipt)), hash))
}
