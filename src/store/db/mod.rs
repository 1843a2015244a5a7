//! The database seam: users, shows, and the sale paths' durable data (seats,
//! holds, points, payments and the transactional outbox). Embedded it is
//! tables behind std locks ([`memory`]); in production it is MySQL (or
//! MariaDB) through a sqlx pool ([`mysql`]), with the schema in
//! `migrations/`.
//!
//! The sale rules are not here: each sale step loads what the rule needs,
//! asks the domain to decide ([`HoldRequest::decide`], [`Payment::decide`],
//! [`Reservation::release`], [`Reservation::expire`],
//! [`Reservation::expire_with_session`], [`Account::credit`]),
//! and stores what it returns, atomically: in one MySQL transaction
//! (retried on a deadlock), or under one mutex embedded. So both backends
//! answer every request alike, which `tests/api/contract.rs` checks.
//!
//! Correctness does not rest on the seat lock the sale service takes first:
//! - a hold claims its seat with one conditional write (only if the seat
//!   is available), and every other changed seat is stored only where it
//!   is still at the version the change was computed from (the fencing
//!   check), and
//! - a seat has at most one reservation that keeps it (`open_seat_id` is
//!   unique in MySQL), so a seat is never held or sold twice.
//!
//! A fan's holds and payments serialise on their account (its row lock in
//! MySQL), which is also what makes concurrent requests with one
//! idempotency key wait for the first and then replay its answer.

mod memory;
mod mysql;

use std::sync::Arc;

pub use self::memory::MemoryDb;
pub use self::mysql::{MySqlDb, MIGRATOR};
use crate::domain::{
    Amount, BalanceLimit, DomainEvent, HoldRefusal, HoldRequest, HoldState, NewSeat, NewShow,
    PayRefusal, Payment, PaymentChange, Receipt, Reservation, ReservationId, Seat, SeatCounts,
    SeatId, SeatsLeft, SessionId, Show, ShowId, ShowState, Subject, Timestamp, UserId, Username,
};
use crate::resilience::{Backend, BackendError, Breaker, BreakerSettings};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database query failed: {0}")]
    Query(sqlx::Error),
    /// The transaction lost a deadlock; run it again.
    #[error("transaction deadlocked: {0}")]
    Deadlock(sqlx::Error),
    #[error("database migrations failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A stored value does not read back (an outbox payload, a row that
    /// was just written).
    #[error("database holds an unreadable value: {0}")]
    Corrupt(String),
    /// A concurrent write got there first; nothing was changed.
    #[error("the write conflicted with a concurrent one")]
    Conflict,
    /// The call did not finish within the statement deadline.
    #[error("database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// The database's circuit breaker is open: the call was not made.
    #[error("database circuit breaker open")]
    Rejected,
}

/// An unreachable or hung database trips the breaker; a refused write, a
/// deadlock or our own bad query does not.
impl BackendError for DbError {
    fn timed_out(after: std::time::Duration) -> Self {
        metrics::counter!(crate::telemetry::metrics::DB_ERRORS, "kind" => "timeout").increment(1);
        DbError::TimedOut(after)
    }

    fn rejected(_: Backend) -> Self {
        DbError::Rejected
    }

    fn trips(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::TimedOut(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self::from_sqlx(e)
    }
}

impl DbError {
    /// Values of the `kind` label of `anteroom_db_errors_total`.
    pub const KINDS: &[&str] = &["unavailable", "query", "deadlock", "timeout"];

    /// Maps a driver error and counts it (every sqlx error passes here).
    fn from_sqlx(e: sqlx::Error) -> Self {
        let error = match e {
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("40001") => {
                DbError::Deadlock(e)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(e),
            other => DbError::Query(other),
        };
        let kind = match &error {
            DbError::Unavailable(_) => "unavailable",
            DbError::Deadlock(_) => "deadlock",
            _ => "query",
        };
        metrics::counter!(crate::telemetry::metrics::DB_ERRORS, "kind" => kind).increment(1);
        error
    }

    /// Whether the request may succeed if tried again later (503).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Unavailable(_)
                | DbError::Deadlock(_)
                | DbError::TimedOut(_)
                | DbError::Rejected
        )
    }
}

/// The connection pool at one moment (all zero on the embedded database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// Pool settings for the MySQL backend.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a query waits for a free connection before the request
    /// fails with 503 (never an unbounded hang).
    pub acquire_timeout: std::time::Duration,
    /// The longest one call (its statements, and the wait for a
    /// connection) may take; see [`MySqlDb::connect`].
    pub statement_timeout: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Reservation),
    /// No such reservation of this fan's.
    NotFound,
    /// Paid, released or expired already.
    NotHeld(HoldState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// Paid; with the `payment.completed` row written in the same
    /// transaction, claimed by the payer's node for [`OUTBOX_LEASE`] so that
    /// its relay publishes it at once ([`crate::sales::outbox`]).
    Completed(Receipt, PaymentChange, Box<OutboxRow>),
    /// The key was used before with the same body: the first answer.
    Replayed(Receipt),
    Refused(PayRefusal),
}

/// How long a claim on outbox rows keeps other relays off them: longer
/// than a publish can take (Kafka's delivery timeout is 30 s), or a row
/// would be published twice. A relay's claim takes it, and so does a
/// payment's row, written claimed by the payer's node, whose relay
/// publishes it straight from memory without the claim's round trips and
/// commit (issue 15: they were most of the event's path). If a node stops
/// before publishing, another relay publishes its rows once this lapses.
pub const OUTBOX_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// An outbox row claimed for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: u64,
    pub event: DomainEvent,
}

#[derive(Debug, Clone)]
pub enum Database {
    Memory(Arc<MemoryDb>),
    MySql(MySqlDb),
}

impl Database {
    pub fn memory() -> Self {
        Database::Memory(Arc::new(MemoryDb::default()))
    }

    /// Connects to MySQL and applies pending migrations; fails fast with the
    /// reason when the URL is malformed or the server unreachable. Every
    /// later call goes through the database's circuit breaker.
    pub async fn mysql(
        url: &str,
        pool: &PoolOptions,
        breakers: &BreakerSettings,
    ) -> Result<Self, DbError> {
        let breaker = Breaker::new(Backend::Database, breakers, Some(pool.statement_timeout));
        let db = MySqlDb::connect(url, pool, breaker).await?;
        db.migrate().await?;
        Ok(Database::MySql(db))
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Database::Memory(_))
    }

    /// Changes each time the database recovers from an outage (its circuit
    /// breaker closes); `None` for the embedded database.
    pub fn recovered(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            Database::Memory(_) => None,
            Database::MySql(m) => Some(m.recovered()),
        }
    }

    /// The connection pool's use now, for the metrics.
    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Database::Memory(_) => PoolStats::default(),
            Database::MySql(m) => m.pool_stats(),
        }
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Database::Memory(_) => Ok(()),
            Database::MySql(m) => m.guard(m.ping()).await,
        }
    }

    /// The fan's id, creating the user, and their account, on first
    /// sign-in: a hold only locks the account row, it never creates one.
    pub async fn upsert_user(&self, name: &Username) -> Result<UserId, DbError> {
        match self {
            Database::Memory(m) => Ok(m.upsert_user(name)),
            Database::MySql(m) => m.guard(m.upsert_user(name)).await,
        }
    }

    /// The jwt-mode fan with this subject, created (with their account) on
    /// first sight.
    pub async fn upsert_subject(&self, subject: &Subject) -> Result<UserId, DbError> {
        match self {
            Database::Memory(m) => Ok(m.upsert_subject(subject)),
            Database::MySql(m) => m.guard(m.upsert_subject(subject)).await,
        }
    }

    /// The fan known by `name`: a demo username (`demo`), or else a jwt
    /// fan's subject. `None` if there is none (nobody is created).
    pub async fn find_fan(&self, name: &str, demo: bool) -> Result<Option<UserId>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.find_fan(name, demo)),
            Database::MySql(m) => m.guard(m.find_fan(name, demo)).await,
        }
    }

    /// Creates a show and its seats, together.
    pub async fn create_show(&self, new: NewShow, seats: &[NewSeat]) -> Result<Show, DbError> {
        match self {
            Database::Memory(m) => Ok(m.create_show(new, seats)),
            Database::MySql(m) => m.guard(m.create_show(new, seats)).await,
        }
    }

    pub async fn show(&self, id: ShowId) -> Result<Option<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.show(id)),
            Database::MySql(m) => m.guard(m.show(id)).await,
        }
    }

    pub async fn shows(&self) -> Result<Vec<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.shows()),
            Database::MySql(m) => m.guard(m.shows()).await,
        }
    }

    /// Sets the stored state unless the sale is over (`sold_out` and
    /// `closed` are final). Returns the show as stored after, or `None` if
    /// it does not exist.
    pub async fn set_show_state(
        &self,
        id: ShowId,
        state: ShowState,
    ) -> Result<Option<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.set_show_state(id, state)),
            Database::MySql(m) => m.guard(m.set_show_state(id, state)).await,
        }
    }

    /// Writes an operator's change to a show's definition (not its state).
    pub async fn update_show(&self, show: &Show) -> Result<(), DbError> {
        match self {
            Database::Memory(m) => {
                m.update_show(show);
                Ok(())
            }
            Database::MySql(m) => m.guard(m.update_show(show)).await,
        }
    }

    /// Every seat of a show, in layout order.
    pub async fn seats(&self, show: ShowId) -> Result<Vec<Seat>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seats(show)),
            Database::MySql(m) => m.guard(m.seats(show)).await,
        }
    }

    pub async fn seat(&self, show: ShowId, seat: SeatId) -> Result<Option<Seat>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seat(show, seat)),
            Database::MySql(m) => m.guard(m.seat(show, seat)).await,
        }
    }

    /// Claims the seat and writes the hold [`HoldRequest::decide`] allows,
    /// in one transaction on one connection (two round trips in MySQL).
    pub async fn hold_seat(
        &self,
        req: &HoldRequest,
    ) -> Result<Result<Reservation, HoldRefusal>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.hold_seat(req)),
            Database::MySql(m) => m.guard(m.hold_seat(req)).await,
        }
    }

    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.reservation(id)),
            Database::MySql(m) => m.guard(m.reservation(id)).await,
        }
    }

    /// The fan gives their hold back ([`Reservation::release`]).
    pub async fn release_hold(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, DbError> {
        match self {
            Database::Memory(m) => Ok(m.release_hold(user, id)),
            Database::MySql(m) => m.guard(m.release_hold(user, id)).await,
        }
    }

    /// Ends a hold whose time is up ([`Reservation::expire`]), giving the
    /// seat back and writing `reservation.expired` to the outbox. `None` if
    /// it was no longer held or not yet due.
    pub async fn expire_hold(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<Option<Reservation>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.expire_hold(id, now)),
            Database::MySql(m) => m.guard(m.expire_hold(id, now)).await,
        }
    }

    /// Ends every hold still open that `session` made ([`Reservation::expire_with_session`]):
    /// the session ended unpaid. In one transaction, as
    /// [`Database::expire_hold`] ends one: each reservation `expired`, its
    /// seat `available` again (fenced, version+1), `reservation.expired`
    /// in the outbox. Returns the holds it ended.
    pub async fn release_session_holds(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        now: Timestamp,
    ) -> Result<Vec<Reservation>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.release_session_holds(show, user, session, now)),
            Database::MySql(m) => {
                m.guard(m.release_session_holds(show, user, session, now))
                    .await
            }
        }
    }

    /// How many of the show's seats are available, held and sold.
    pub async fn seat_counts(&self, show: ShowId) -> Result<SeatCounts, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seat_counts(show)),
            Database::MySql(m) => m.guard(m.seat_counts(show)).await,
        }
    }

    /// Which statuses the show's seats have (sold out? every seat held?),
    /// without counting them.
    pub async fn seats_left(&self, show: ShowId) -> Result<SeatsLeft, DbError> {
        match self {
            Database::Memory(m) => Ok(m.seat_counts(show).left()),
            Database::MySql(m) => m.guard(m.seats_left(show)).await,
        }
    }

    /// Every hold still open, to schedule their expiry after a start.
    pub async fn open_holds(&self) -> Result<Vec<(ReservationId, Timestamp)>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.open_holds()),
            Database::MySql(m) => m.guard(m.open_holds()).await,
        }
    }

    pub async fn balance(&self, user: UserId) -> Result<u64, DbError> {
        match self {
            Database::Memory(m) => Ok(m.balance(user)),
            Database::MySql(m) => m.guard(m.balance(user)).await,
        }
    }

    /// Adds points ([`crate::domain::Account::credit`]); returns the new
    /// balance.
    pub async fn charge(
        &self,
        user: UserId,
        amount: Amount,
    ) -> Result<Result<u64, BalanceLimit>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.charge(user, amount)),
            Database::MySql(m) => m.guard(m.charge(user, amount)).await,
        }
    }

    /// Makes the payment [`Payment::decide`] allows: debit, reservation
    /// paid, seat sold, the payment recorded under its idempotency key and
    /// `payment.completed` in the outbox, all or nothing.
    pub async fn pay(&self, req: &Payment) -> Result<PayOutcome, DbError> {
        match self {
            Database::Memory(m) => Ok(m.pay(req)),
            Database::MySql(m) => m.guard(m.pay(req)).await,
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
            Database::MySql(m) => m.guard(m.claim_outbox(limit, now, lease_until)).await,
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
                m.settle_outbox(ids, sent);
                Ok(())
            }
            Database::MySql(m) => m.guard(m.settle_outbox(ids, sent, now)).await,
        }
    }

    /// Unsent rows and the age of the oldest.
    pub async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), DbError> {
        match self {
            Database::Memory(m) => Ok(m.outbox_backlog()),
            Database::MySql(m) => m.guard(m.outbox_backlog()).await,
        }
    }
}
