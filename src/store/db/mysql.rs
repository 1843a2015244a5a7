//! MySQL / MariaDB through a sqlx pool.
//!
//! Each sale step is one transaction: lock the fan's account row (a fan's
//! steps run one at a time), read the rows the rule needs `FOR UPDATE`, let
//! the domain decide, store what it returned. Changed seats are stored with
//! their version as the condition (`WHERE version = new - 1`), so a write
//! computed from a stale read changes nothing and fails as a conflict.
//!
//! A hold, the hot path of a sale, goes in one batch of statements on one
//! connection ([`Batch`]): the claim, the write and the commit, the rule's
//! condition written into the claim ([`hold_sql`]).

use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Either, Executor as _, FromRow as _, MySql, Row, Transaction};

use super::{DbError, OutboxRow, PayOutcome, PoolOptions, PoolStats, ReleaseOutcome};
use crate::domain::{
    Account, Amount, BalanceLimit, DomainEvent, HoldEnd, HoldRefusal, HoldRequest, HoldState,
    KeyUse, NewSeat, NewShow, Payment, PaymentDecision, PaymentFacts, PaymentId, Receipt,
    Reservation, ReservationId, Seat, SeatCounts, SeatId, SeatStatus, SeatsLeft, SessionId, Show,
    ShowId, ShowState, Subject, Timestamp, UserId, Username,
};
use crate::resilience::Breaker;

/// The schema, embedded at build time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often a transaction that lost a deadlock is run again.
const DEADLOCK_RETRIES: u32 = 5;

/// A pooled connection idle this long is pinged before it is handed out
/// (see [`MySqlDb::connect`]).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_millis(500);

type Tx = Transaction<'static, MySql>;
type TxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DbError>> + Send + 'a>>;

#[derive(Debug, Clone)]
pub struct MySqlDb {
    pool: MySqlPool,
    /// Every call from [`super::Database`] passes it, with the statement
    /// deadline.
    breaker: Breaker,
}

#[derive(sqlx::FromRow)]
struct ShowRow {
    id: u64,
    title: String,
    starts_at: Option<chrono::NaiveDateTime>,
    prequeue_opens_at: Option<chrono::NaiveDateTime>,
    state: String,
    capacity: u32,
    admission_rate_per_min: Option<u32>,
    session_ttl_secs: u32,
    abandon_grace_secs: u32,
    challenge_cost: u32,
    notice: Option<String>,
}

impl From<ShowRow> for Show {
    fn from(r: ShowRow) -> Self {
        Show {
            id: ShowId(r.id),
            title: r.title,
            starts_at: r.starts_at.map(|t| t.and_utc()),
            prequeue_opens_at: r.prequeue_opens_at.map(|t| t.and_utc()),
            // The schema's CHECK allows only the stored states.
            state: ShowState::stored(&r.state).unwrap_or(ShowState::Open),
            capacity: r.capacity,
            admission_rate: r
                .admission_rate_per_min
                .and_then(|r| crate::domain::AdmissionRate::new(u64::from(r))),
            session_ttl: Duration::from_secs(u64::from(r.session_ttl_secs)),
            abandon_grace: Duration::from_secs(u64::from(r.abandon_grace_secs)),
            challenge_cost: crate::domain::ChallengeCost::stored(r.challenge_cost),
            notice: r.notice.as_deref().and_then(crate::domain::Notice::stored),
        }
    }
}

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

macro_rules! select_shows {
    ($tail:literal) => {
        concat!(
            "SELECT id, title, starts_at, prequeue_opens_at, state, capacity, \
             admission_rate_per_min, session_ttl_secs, abandon_grace_secs, challenge_cost, \
             notice \
             FROM shows ",
            $tail
        )
    };
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

/// A reservation joined with its seat; the caller adds the condition.
macro_rules! reservation_with_seat {
    () => {
        "SELECT r.id, r.show_id, r.seat_id, r.user_id, r.session_id, r.price, r.state, \
                r.expires_at, s.label, s.section, s.price AS seat_price, s.status, s.version \
         FROM reservations r LEFT JOIN seats s ON s.id = r.seat_id "
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

/// Sets (or, with `None`, lifts) the server's per-statement time limit on
/// this session: MariaDB's `max_statement_time`, else MySQL's
/// `max_execution_time`.
async fn set_statement_limit(
    conn: &mut sqlx::MySqlConnection,
    limit: Option<Duration>,
) -> Result<(), sqlx::Error> {
    let limit = limit.unwrap_or_default();
    let mariadb = format!("SET SESSION max_statement_time = {}", limit.as_secs_f64());
    if conn.execute(sqlx::AssertSqlSafe(mariadb)).await.is_ok() {
        return Ok(());
    }
    let mysql = format!("SET SESSION max_execution_time = {}", limit.as_millis());
    conn.execute(sqlx::AssertSqlSafe(mysql)).await.map(drop)
}

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl MySqlDb {
    /// Connects the pool. Each session reads at READ COMMITTED and has the
    /// statement deadline set on the server (MariaDB's `max_statement_time`
    /// cuts off any statement, a lock wait included; MySQL's
    /// `max_execution_time` only reads): a statement stuck on the server
    /// frees its connection there. The client-side deadline (the
    /// breaker's, the same length, over the whole call) covers what the
    /// server cannot: a hung server, a lost connection, the wait for a
    /// pooled connection.
    pub async fn connect(url: &str, pool: &PoolOptions, breaker: Breaker) -> Result<Self, DbError> {
        let options = MySqlConnectOptions::from_str(url).map_err(DbError::Unavailable)?;
        let limit = pool.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // A connection is pinged before it is handed out only if it sat
            // idle for a while: one taken back a moment ago was pinged on
            // its way back (sqlx checks every connection it takes back), so
            // under load the ping out was a round trip on every request's
            // path for nothing. HikariCP's rule (`aliveBypassWindowMs`).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                // READ COMMITTED: every sale transaction serialises on the
                // rows it locks (the fan's account, the seat, the hold), so
                // it needs no gap locks. Under InnoDB's default REPEATABLE
                // READ, the idempotency-key lookup of two fans' first
                // payments took gap locks on the same index gap, and their
                // inserts then deadlocked each other (about one payment in
                // seven with 50 concurrent buyers).
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    set_statement_limit(conn, Some(limit)).await
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, breaker })
    }

    pub(super) fn recovered(&self) -> tokio::sync::watch::Receiver<u64> {
        self.breaker.recovered()
    }

    /// Runs one call through the breaker, within the statement deadline.
    pub(super) async fn guard<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        self.breaker.call(call).await
    }

    /// Applies the migrations on a connection of their own without the
    /// statement deadline (a schema change may take longer); the connection
    /// is closed afterwards, not pooled.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await?.detach();
        set_statement_limit(&mut conn, None).await?;
        MIGRATOR.run(&mut conn).await.map_err(DbError::Migrate)
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    pub(super) fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        PoolStats {
            in_use: size - idle,
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    pub(super) async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs `body` in a transaction, again (from the start) if it lost a
    /// deadlock, committing when it returns `Ok`.
    async fn retrying<T, F>(&self, body: F) -> Result<T, DbError>
    where
        F: for<'t> Fn(&'t mut Tx) -> TxFuture<'t, T>,
    {
        retry_deadlocks(|| async {
            let mut tx = self.pool.begin().await?;
            match body(&mut tx).await {
                Ok(value) => tx
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err(DbError::from_sqlx),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
        .await
    }

    pub(super) async fn upsert_user(&self, name: &Username) -> Result<UserId, DbError> {
        self.upsert_user_by(
            "INSERT INTO users (username) VALUES (?) \
             ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
            name.as_str(),
        )
        .await
    }

    pub(super) async fn upsert_subject(&self, subject: &Subject) -> Result<UserId, DbError> {
        self.upsert_user_by(
            "INSERT INTO users (subject) VALUES (?) \
             ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
            subject.as_str(),
        )
        .await
    }

    /// The user a unique column names, created on first sight. LAST_INSERT_ID(id)
    /// makes an existing row's id the insert id, so one statement both
    /// creates and finds the user.
    ///
    /// The fan's account is made here too, once (a no-op for a returning
    /// fan), so the hot path of a hold only locks it.
    async fn upsert_user_by(&self, insert: &'static str, value: &str) -> Result<UserId, DbError> {
        let mut conn = self.pool.acquire().await?;
        let done = sqlx::query(insert).bind(value).execute(&mut *conn).await?;
        let user = UserId(done.last_insert_id());
        sqlx::query("INSERT IGNORE INTO accounts (user_id, balance) VALUES (?, 0)")
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
        Ok(user)
    }

    pub(super) async fn find_fan(&self, name: &str, demo: bool) -> Result<Option<UserId>, DbError> {
        let query = match demo {
            true => "SELECT id FROM users WHERE username = ?",
            false => "SELECT id FROM users WHERE subject = ?",
        };
        let id: Option<u64> = sqlx::query_scalar(query)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.map(UserId))
    }

    pub(super) async fn create_show(
        &self,
        new: NewShow,
        seats: &[NewSeat],
    ) -> Result<Show, DbError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO shows (title, starts_at, prequeue_opens_at, capacity, \
             admission_rate_per_min, session_ttl_secs, abandon_grace_secs, challenge_cost) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.title)
        .bind(new.starts_at.map(|t| t.naive_utc()))
        .bind(new.prequeue_opens_at.map(|t| t.naive_utc()))
        .bind(new.capacity)
        .bind(new.admission_rate.map(|r| r.per_minute()))
        .bind(new.session_ttl.as_secs())
        .bind(new.abandon_grace.as_secs())
        .bind(new.challenge_cost.get())
        .execute(&mut *tx)
        .await?;
        let id = ShowId(done.last_insert_id());
        // Multi-row inserts in chunks keep a 50,000-seat show to a few
        // dozen round trips.
        for chunk in seats.chunks(500) {
            let mut insert = sqlx::QueryBuilder::<MySql>::new(
                "INSERT INTO seats (show_id, section, label, price) ",
            );
            insert.push_values(chunk, |mut row, (section, label, price)| {
                row.push_bind(id.0)
                    .push_bind(section.as_str())
                    .push_bind(label.as_str())
                    .push_bind(*price);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.show(id)
            .await?
            .ok_or_else(|| DbError::Corrupt(format!("show {id} not found after creating it")))
    }

    pub(super) async fn show(&self, id: ShowId) -> Result<Option<Show>, DbError> {
        let row: Option<ShowRow> = sqlx::query_as(select_shows!("WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Show::from))
    }

    pub(super) async fn shows(&self) -> Result<Vec<Show>, DbError> {
        let rows: Vec<ShowRow> = sqlx::query_as(select_shows!("ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Show::from).collect())
    }

    pub(super) async fn set_show_state(
        &self,
        id: ShowId,
        state: ShowState,
    ) -> Result<Option<Show>, DbError> {
        // A sale that is over stays over (a pause racing the last seat).
        sqlx::query(
            "UPDATE shows SET state = ? WHERE id = ? AND state NOT IN ('sold_out', 'closed')",
        )
        .bind(state.as_str())
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        self.show(id).await
    }

    /// Writes an operator's change (every field an operator may change).
    pub(super) async fn update_show(&self, show: &Show) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE shows SET title = ?, starts_at = ?, prequeue_opens_at = ?, capacity = ?, \
             admission_rate_per_min = ?, session_ttl_secs = ?, abandon_grace_secs = ?, \
             notice = ? WHERE id = ?",
        )
        .bind(&show.title)
        .bind(show.starts_at.map(|t| t.naive_utc()))
        .bind(show.prequeue_opens_at.map(|t| t.naive_utc()))
        .bind(show.capacity)
        .bind(show.admission_rate.map(|r| r.per_minute()))
        .bind(show.session_ttl.as_secs())
        .bind(show.abandon_grace.as_secs())
        .bind(show.notice.as_ref().map(crate::domain::Notice::as_str))
        .bind(show.id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn seats(&self, show: ShowId) -> Result<Vec<Seat>, DbError> {
        let rows: Vec<SeatRow> = sqlx::query_as(select_seats!("WHERE show_id = ? ORDER BY id"))
            .bind(show.0)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Seat::from).collect())
    }

    pub(super) async fn seat(&self, show: ShowId, seat: SeatId) -> Result<Option<Seat>, DbError> {
        let row: Option<SeatRow> = sqlx::query_as(select_seats!("WHERE id = ? AND show_id = ?"))
            .bind(seat.0)
            .bind(show.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Seat::from))
    }

    /// A hold in one round trip on one connection (see [`Batch`] and
    /// [`hold_sql`]): the transaction locks the fan's account and counts
    /// their holds, reads and locks the seat, claims it and writes the
    /// reservation if the rule allows, and commits. The domain's rule then
    /// names the outcome from what the batch read.
    pub(super) async fn hold_seat(
        &self,
        req: &HoldRequest,
    ) -> Result<Result<Reservation, HoldRefusal>, DbError> {
        retry_deadlocks(|| self.try_hold(req)).await
    }

    async fn try_hold(
        &self,
        req: &HoldRequest,
    ) -> Result<Result<Reservation, HoldRefusal>, DbError> {
        let mut batch = Batch::acquire(&self.pool).await?;
        let mut answers = match batch.run(hold_sql(req)).await {
            Ok(answers) => answers,
            // The unique key on the seat's open reservation: the last line
            // of defence, and a conflict like any other. The batch stopped
            // at the insert, before its commit.
            Err(DbError::Query(e)) if is_duplicate(&e) => {
                batch.finish("ROLLBACK").await?;
                return Err(DbError::Conflict);
            }
            Err(e) => return Err(e),
        };
        if answers.get(2).is_none_or(|account| account.rows.is_empty()) {
            // No account row, so nothing was claimed or written: a fan who
            // signed in before accounts were made at sign-in and whom the
            // backfill missed, or whose sign-in failed between its two
            // inserts. Off the hot path.
            tracing::debug!(user = %req.user, "creating a missing account for a hold");
            create_account(batch.connection(), req.user).await?;
            answers = batch.run(hold_sql(req)).await?;
        }
        batch.finished();
        let [_begin, _reset, account, seat, claim, _claimed, insert, _commit] = &answers[..] else {
            return Err(DbError::Corrupt(format!(
                "the hold's batch answered {} statements, not 8",
                answers.len()
            )));
        };
        let open: i64 = match account.rows.first() {
            Some(row) => row.try_get(0)?,
            None => {
                return Err(DbError::Corrupt(
                    "a fan without an account after its creation".into(),
                ))
            }
        };
        let found = seat
            .rows
            .first()
            .map(SeatRow::from_row)
            .transpose()?
            .map(Seat::from);
        let written = claim.done.rows_affected() == 1 && insert.done.rows_affected() == 1;
        match req.decide(u64::try_from(open).unwrap_or(0), found.as_ref()) {
            Ok((_, reservation)) if written => Ok(Ok(Reservation {
                id: ReservationId(insert.done.last_insert_id()),
                ..reservation
            })),
            // The rule allowed what the seat, locked, did not: a conflict
            // (nothing was written).
            Ok(_) => Err(DbError::Conflict),
            Err(refusal) if !written => Ok(Err(refusal)),
            // The batch's condition is the rule's, on the rows it locked; a
            // disagreement is a defect. The hold stands (committed) and ends
            // with its session at the latest.
            Err(refusal) => Err(DbError::Corrupt(format!(
                "the hold's batch claimed a seat the rule refuses ({refusal:?})"
            ))),
        }
    }

    pub(super) async fn reservation(
        &self,
        id: ReservationId,
    ) -> Result<Option<Reservation>, DbError> {
        let row: Option<ReservationRow> = sqlx::query_as(select_reservation!("WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Reservation::from))
    }

    /// Releases the fan's hold in one batch ([`release_sql`]): the
    /// reservation and its seat read and locked, the seat given back and
    /// the hold ended only under the conditions of [`Reservation::release`],
    /// the commit. The domain's rule then names the outcome from what the
    /// batch read, and the batch's writes must be the ones it names.
    pub(super) async fn release_hold(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, DbError> {
        retry_deadlocks(|| self.try_release(user, id)).await
    }

    async fn try_release(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, DbError> {
        let mut batch = Batch::acquire(&self.pool).await?;
        let answers = batch.run(release_sql(user, id)).await?;
        batch.finished();
        let [_begin, _reset, read, seat, hold, _commit] = &answers[..] else {
            return Err(DbError::Corrupt(format!(
                "the release's batch answered {} statements, not 6",
                answers.len()
            )));
        };
        let found = read.rows.first().map(reservation_and_seat).transpose()?;
        let (freed, ended) = (
            seat.done.rows_affected() == 1,
            hold.done.rows_affected() == 1,
        );
        let outcome = match found {
            Some((r, seat)) if r.user == user => match r.release(seat.as_ref()) {
                Ok(end) if ended && freed == end.seat.is_some() => {
                    return Ok(ReleaseOutcome::Released(end.reservation))
                }
                Ok(_) => None,
                Err(state) => Some(ReleaseOutcome::NotHeld(state)),
            },
            _ => Some(ReleaseOutcome::NotFound),
        };
        match outcome {
            Some(refused) if !ended && !freed => Ok(refused),
            // The batch's conditions are the rule's, on the rows it locked;
            // a disagreement is a defect (and what it wrote is committed).
            _ => Err(DbError::Corrupt(format!(
                "the release's batch wrote (seat freed: {freed}, hold ended: {ended}) what the \
                 rule did not decide ({outcome:?})"
            ))),
        }
    }

    pub(super) async fn expire_hold(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<Option<Reservation>, DbError> {
        self.retrying(|tx| {
            Box::pin(async move {
                let Some((r, seat)) = locked_reservation(tx, id).await? else {
                    return Ok(None);
                };
                let Some(end) = r.expire(seat.as_ref(), now) else {
                    return Ok(None);
                };
                Ok(Some(store_expiry(tx, end, now).await?))
            })
        })
        .await
    }

    pub(super) async fn release_session_holds(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        now: Timestamp,
    ) -> Result<Vec<Reservation>, DbError> {
        self.retrying(|tx| {
            Box::pin(async move {
                // The rows are locked in index order, as every other
                // reservation transaction locks one of them before its
                // seat: no lock cycle with an expiry, release or payment.
                let rows = sqlx::query(concat!(
                    reservation_with_seat!(),
                    "WHERE r.user_id = ? AND r.show_id = ? AND r.state = 'held' \
                     AND r.session_id = ? ORDER BY r.id FOR UPDATE"
                ))
                .bind(user.0)
                .bind(show.0)
                .bind(session.0)
                .fetch_all(&mut **tx)
                .await?;
                let mut ended = Vec::with_capacity(rows.len());
                for row in rows {
                    let (r, seat) = reservation_and_seat(&row)?;
                    if let Some(end) = r.expire_with_session(seat.as_ref()) {
                        ended.push(store_expiry(tx, end, now).await?);
                    }
                }
                Ok(ended)
            })
        })
        .await
    }

    pub(super) async fn seat_counts(&self, show: ShowId) -> Result<SeatCounts, DbError> {
        // Read from the (show_id, status) index alone.
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM seats WHERE show_id = ? GROUP BY status")
                .bind(show.0)
                .fetch_all(&self.pool)
                .await?;
        Ok(tally(rows))
    }

    pub(super) async fn seats_left(&self, show: ShowId) -> Result<SeatsLeft, DbError> {
        // Three dives into the (show_id, status) index, whatever the show's
        // size: a count would read every seat of the show's index range.
        let (available, held, sold): (bool, bool, bool) = sqlx::query_as(
            "SELECT EXISTS(SELECT 1 FROM seats WHERE show_id = ? AND status = 'available'), \
                    EXISTS(SELECT 1 FROM seats WHERE show_id = ? AND status = 'held'), \
                    EXISTS(SELECT 1 FROM seats WHERE show_id = ? AND status = 'sold')",
        )
        .bind(show.0)
        .bind(show.0)
        .bind(show.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(SeatsLeft {
            available,
            held,
            sold,
        })
    }

    pub(super) async fn open_holds(&self) -> Result<Vec<(ReservationId, Timestamp)>, DbError> {
        let rows: Vec<(u64, i64)> =
            sqlx::query_as("SELECT id, expires_at FROM reservations WHERE state = 'held'")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (ReservationId(id), Timestamp(at)))
            .collect())
    }

    pub(super) async fn balance(&self, user: UserId) -> Result<u64, DbError> {
        let balance: Option<u64> =
            sqlx::query_scalar("SELECT balance FROM accounts WHERE user_id = ?")
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(balance.unwrap_or(0))
    }

    pub(super) async fn charge(
        &self,
        user: UserId,
        amount: Amount,
    ) -> Result<Result<u64, BalanceLimit>, DbError> {
        self.retrying(|tx| {
            Box::pin(async move {
                let account = match lock_account(tx, user).await?.credit(amount) {
                    Ok(account) => account,
                    Err(limit) => return Ok(Err(limit)),
                };
                store_account(tx, user, account).await?;
                Ok(Ok(account.balance))
            })
        })
        .await
    }

    pub(super) async fn pay(&self, req: &Payment) -> Result<PayOutcome, DbError> {
        self.retrying(|tx| {
            let req = req.clone();
            Box::pin(async move { pay(tx, &req).await })
        })
        .await
    }

    pub(super) async fn claim_outbox(
        &self,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxRow>, DbError> {
        let mut tx = self.pool.begin().await?;
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

    pub(super) async fn settle_outbox(
        &self,
        ids: &[u64],
        sent: bool,
        now: Timestamp,
    ) -> Result<(), DbError> {
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
        update.build().execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), DbError> {
        let (count, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok((u64::try_from(count).unwrap_or(0), oldest.map(Timestamp)))
    }
}

/// A transaction on one pooled connection whose statements go in batches,
/// one round trip each: `START TRANSACTION` rides with the first ones and
/// `COMMIT` with the last. A batch is sent as text (a prepared statement
/// holds one statement), so only numbers and the schema's fixed words are
/// ever written into one, never a value a fan chose.
///
/// Dropped before [`Batch::finished`] (an error mid-way, or the caller's
/// future cancelled at its deadline), the connection is closed rather than
/// pooled: the server rolls back whatever was open, and no later caller
/// inherits the transaction or its locks.
struct Batch {
    conn: PoolConnection<MySql>,
    finished: bool,
}

/// One statement's answer in a [`Batch`]: its rows, and the count of rows
/// it changed and the id it inserted.
struct Answer {
    rows: Vec<MySqlRow>,
    done: MySqlQueryResult,
}

impl Batch {
    async fn acquire(pool: &MySqlPool) -> Result<Self, DbError> {
        Ok(Self {
            conn: pool.acquire().await?,
            finished: false,
        })
    }

    fn connection(&mut self) -> &mut sqlx::MySqlConnection {
        &mut self.conn
    }

    /// Runs `sql` (statements separated by `;`) in one round trip and
    /// returns each statement's answer, in order.
    async fn run(&mut self, sql: String) -> Result<Vec<Answer>, DbError> {
        let mut answers = Vec::new();
        let mut rows = Vec::new();
        let mut results = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_many(&mut *self.conn);
        while let Some(result) = results.try_next().await? {
            match result {
                Either::Left(done) => answers.push(Answer {
                    rows: std::mem::take(&mut rows),
                    done,
                }),
                Either::Right(row) => rows.push(row),
            }
        }
        Ok(answers)
    }

    /// Ends the transaction with `sql` (`ROLLBACK`); the connection goes
    /// back to the pool.
    async fn finish(mut self, sql: &str) -> Result<(), DbError> {
        self.run(sql.to_owned()).await?;
        self.finished();
        Ok(())
    }

    /// The last batch ended the transaction: the connection may be pooled.
    fn finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// A hold's one batch: the transaction opens; the fan's account row is
/// locked (a fan's holds and payments run one at a time) and their open
/// holds in the show counted, in one statement (no row: no account, and
/// nothing below is written); the seat is read and locked; it is claimed
/// only if it is available and the fan is under the limit, which is
/// [`HoldRequest::decide`]'s rule, and the reservation is written only if
/// it was claimed; then the commit. Its answers: `[begin, reset, account,
/// seat, claim, claimed, insert, commit]`.
///
/// The count is a locking read joined to the account's: whichever row it
/// waits for, it reads the latest committed holds, so two holds of one fan
/// cannot both count under the limit.
fn hold_sql(req: &HoldRequest) -> String {
    let (user, show, seat) = (req.user.0, req.show.0, req.seat.0);
    let (session, expires, max) = (req.session.0, req.expires_at.0, req.max_holds);
    let held = HoldState::Held.as_str();
    let available = SeatStatus::Available.as_str();
    format!(
        "START TRANSACTION; \
         SET @open = NULL; \
         SELECT @open := COUNT(r.id) FROM accounts a LEFT JOIN reservations r \
           ON r.user_id = a.user_id AND r.show_id = {show} AND r.state = '{held}' \
           WHERE a.user_id = {user} GROUP BY a.user_id FOR UPDATE; \
         SELECT id, show_id, label, section, price, status, version FROM seats \
           WHERE id = {seat} AND show_id = {show} FOR UPDATE; \
         UPDATE seats SET status = '{held}', version = version + 1 \
           WHERE id = {seat} AND show_id = {show} AND status = '{available}' \
           AND @open < {max}; \
         SET @claimed = ROW_COUNT(); \
         INSERT INTO reservations \
           (show_id, seat_id, user_id, session_id, price, state, expires_at, open_seat_id) \
           SELECT show_id, id, {user}, {session}, price, '{held}', {expires}, id FROM seats \
           WHERE id = {seat} AND @claimed = 1; \
         COMMIT"
    )
}

/// A release's one batch: the transaction opens; the reservation and its
/// seat are read and locked (the order every reservation transaction takes
/// them in), and the seat named in `@seat` only if the reservation is the
/// fan's and held; that seat is given back only if it is held, which is
/// [`Reservation::release`]'s rule, and the hold ended under the same
/// conditions; then the commit. Its answers: `[begin, reset, read, seat,
/// hold, commit]`. (Single-table writes by primary key: a join in the
/// seat's `UPDATE` cost MariaDB more than the variable.)
fn release_sql(user: UserId, id: ReservationId) -> String {
    let (user, id) = (user.0, id.0);
    let held = HoldState::Held.as_str();
    let released = HoldState::Released.as_str();
    let seat_held = SeatStatus::Held.as_str();
    let available = SeatStatus::Available.as_str();
    format!(
        "START TRANSACTION; \
         SET @seat = NULL; \
         {read} WHERE r.id = {id} FOR UPDATE; \
         UPDATE seats SET status = '{available}', version = version + 1 \
           WHERE id = @seat AND status = '{seat_held}'; \
         UPDATE reservations SET state = '{released}', open_seat_id = NULL \
           WHERE id = {id} AND user_id = {user} AND state = '{held}'; \
         COMMIT",
        read = reservation_with_seat!().replacen(
            "SELECT ",
            &format!(
                "SELECT @seat := IF(r.user_id = {user} AND r.state = '{held}', r.seat_id, NULL) \
                 AS freed, "
            ),
            1,
        ),
    )
}

/// Seat counts from `(status, count)` rows. The schema's CHECK allows only
/// the three statuses.
fn tally(rows: Vec<(String, i64)>) -> SeatCounts {
    SeatCounts::tally(rows.into_iter().map(|(status, n)| {
        (
            SeatStatus::parse(&status).unwrap_or(SeatStatus::Sold),
            u64::try_from(n).unwrap_or(0),
        )
    }))
}

/// Gives the fan an account (balance 0) unless they have one.
async fn create_account(conn: &mut sqlx::MySqlConnection, user: UserId) -> Result<(), DbError> {
    // ON DUPLICATE KEY UPDATE takes the row's exclusive lock at once; an
    // INSERT IGNORE would take a shared one, and two transactions upgrading
    // shared locks deadlock.
    sqlx::query(
        "INSERT INTO accounts (user_id, balance) VALUES (?, 0) \
         ON DUPLICATE KEY UPDATE balance = balance",
    )
    .bind(user.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs `transaction` until it does not lose a deadlock: again from the
/// start after a short, growing, jittered pause (so the transactions that
/// collided do not collide again in lockstep), at most
/// [`DEADLOCK_RETRIES`] times in all, then unavailable.
async fn retry_deadlocks<T, Fut>(mut transaction: impl FnMut() -> Fut) -> Result<T, DbError>
where
    Fut: std::future::Future<Output = Result<T, DbError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match transaction().await {
            Err(DbError::Deadlock(_)) if attempt < DEADLOCK_RETRIES => {
                tracing::debug!(attempt, "transaction lost a deadlock; running it again");
                let ms = rand::random_range(1..=10 * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Err(DbError::Deadlock(e)) => return Err(DbError::Unavailable(e)),
            other => return other,
        }
    }
}

/// One payment, inside its transaction: read the facts, let the domain
/// decide, store the change.
async fn pay(tx: &mut Tx, req: &Payment) -> Result<PayOutcome, DbError> {
    // Serialises this fan's payments: a second request with the same key
    // waits here for the first to commit, then replays it.
    let account = lock_account(tx, req.user).await?;
    let previous = sqlx::query(
        "SELECT id, reservation_id, amount, balance_after, request_hash FROM payments \
         WHERE user_id = ? AND idempotency_key = ? FOR UPDATE",
    )
    .bind(req.user.0)
    .bind(req.key.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let key = key_use_of(previous, &req.request_hash)?;
    let (reservation, seat, open_holds) = match key {
        KeyUse::Unused => match locked_reservation(tx, req.reservation).await? {
            Some((r, seat)) if r.user == req.user && r.state == HoldState::Held => {
                let open = open_holds(tx, r.show, r.user).await?;
                (Some(r), seat, open)
            }
            Some((r, seat)) => (Some(r), seat, 0),
            None => (None, None, 0),
        },
        // The key decides alone; nothing else to read.
        KeyUse::Same(_) | KeyUse::Other => (None, None, 0),
    };
    let facts = PaymentFacts {
        key,
        reservation,
        seat,
        account,
        open_holds,
    };
    let change = match req.decide(&facts) {
        PaymentDecision::Replay(receipt) => return Ok(PayOutcome::Replayed(receipt)),
        PaymentDecision::Refuse(refusal) => return Ok(PayOutcome::Refused(refusal)),
        PaymentDecision::Pay(change) => change,
    };
    store_account(tx, req.user, change.account).await?;
    store_reservation(tx, &change.reservation).await?;
    if !store_seat(tx, &change.seat).await? {
        return Err(DbError::Conflict);
    }
    let inserted = sqlx::query(
        "INSERT INTO payments \
         (user_id, reservation_id, amount, idempotency_key, request_hash, balance_after) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(req.user.0)
    .bind(change.reservation.id.0)
    .bind(change.reservation.price)
    .bind(req.key.as_str())
    .bind(&req.request_hash[..])
    .bind(change.account.balance)
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
    let event = DomainEvent::payment_completed(&change, payment);
    let claimed_until = req.now.plus(super::OUTBOX_LEASE);
    let id = write_outbox(tx, &event, req.now, Some(claimed_until)).await?;
    let row = Box::new(OutboxRow { id, event });
    Ok(PayOutcome::Completed(change.receipt(payment), change, row))
}

fn key_use_of(row: Option<MySqlRow>, hash: &[u8; 32]) -> Result<KeyUse, DbError> {
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

/// Locks the fan's account row (a fan's holds and payments run one at a
/// time), creating it first if the fan has none (a first charge, or a fan
/// whose sign-in did not get as far as their account).
async fn lock_account(tx: &mut Tx, user: UserId) -> Result<Account, DbError> {
    if let Some(account) = locked_account(tx, user).await? {
        return Ok(account);
    }
    create_account(tx, user).await?;
    locked_account(tx, user)
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("account {user} not found after creating it")))
}

async fn locked_account(tx: &mut Tx, user: UserId) -> Result<Option<Account>, DbError> {
    let balance: Option<u64> =
        sqlx::query_scalar("SELECT balance FROM accounts WHERE user_id = ? FOR UPDATE")
            .bind(user.0)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(balance.map(|balance| Account { balance }))
}

async fn store_account(tx: &mut Tx, user: UserId, account: Account) -> Result<(), DbError> {
    sqlx::query("UPDATE accounts SET balance = ? WHERE user_id = ?")
        .bind(account.balance)
        .bind(user.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The fan's holds still open in the show.
async fn open_holds(tx: &mut Tx, show: ShowId, user: UserId) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reservations WHERE user_id = ? AND show_id = ? AND state = 'held'",
    )
    .bind(user.0)
    .bind(show.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A reservation and its seat, both locked, in one round trip.
async fn locked_reservation(
    tx: &mut Tx,
    id: ReservationId,
) -> Result<Option<(Reservation, Option<Seat>)>, DbError> {
    let row = sqlx::query(concat!(
        reservation_with_seat!(),
        "WHERE r.id = ? FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(reservation_and_seat).transpose()
}

/// A row of [`reservation_with_seat!`].
fn reservation_and_seat(row: &MySqlRow) -> Result<(Reservation, Option<Seat>), DbError> {
    let reservation = Reservation::from(ReservationRow {
        id: row.try_get("id")?,
        show_id: row.try_get("show_id")?,
        seat_id: row.try_get("seat_id")?,
        user_id: row.try_get("user_id")?,
        session_id: row.try_get("session_id")?,
        price: row.try_get("price")?,
        state: row.try_get("state")?,
        expires_at: row.try_get("expires_at")?,
    });
    let seat = match row.try_get::<Option<String>, _>("status")? {
        Some(status) => Some(Seat::from(SeatRow {
            id: reservation.seat.0,
            show_id: reservation.show.0,
            label: row.try_get("label")?,
            section: row.try_get("section")?,
            price: row.try_get("seat_price")?,
            status,
            version: row.try_get("version")?,
        })),
        None => None,
    };
    Ok((reservation, seat))
}

/// Stores a changed seat if it is still at the version the change was
/// computed from. False: a concurrent change got there first.
async fn store_seat(tx: &mut Tx, seat: &Seat) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE seats SET status = ?, version = ? WHERE id = ? AND version = ?")
        .bind(seat.status.as_str())
        .bind(seat.version)
        .bind(seat.id.0)
        .bind(seat.version.saturating_sub(1))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a reservation's state; `open_seat_id` follows whether the state
/// keeps the seat.
async fn store_reservation(tx: &mut Tx, r: &Reservation) -> Result<(), DbError> {
    sqlx::query("UPDATE reservations SET state = ?, open_seat_id = ? WHERE id = ?")
        .bind(r.state.as_str())
        .bind(r.state.keeps_seat().then_some(r.seat.0))
        .bind(r.id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores an expired hold and the seat it gave back, and writes
/// `reservation.expired` to the outbox.
async fn store_expiry(tx: &mut Tx, end: HoldEnd, now: Timestamp) -> Result<Reservation, DbError> {
    let r = store_end(tx, end).await?;
    write_outbox(tx, &DomainEvent::reservation_expired(&r), now, None).await?;
    Ok(r)
}

/// Stores an ended hold and the seat it gave back.
async fn store_end(tx: &mut Tx, end: HoldEnd) -> Result<Reservation, DbError> {
    store_reservation(tx, &end.reservation).await?;
    if let Some(seat) = &end.seat {
        if !store_seat(tx, seat).await? {
            return Err(DbError::Conflict);
        }
    }
    Ok(end.reservation)
}

/// Writes an event to the outbox, claimed until `claimed_until` if given
/// (the writer publishes it itself); returns the row's id.
async fn write_outbox(
    tx: &mut Tx,
    event: &DomainEvent,
    now: Timestamp,
    claimed_until: Option<Timestamp>,
) -> Result<u64, DbError> {
    let payload = serde_json::to_string(event)
        .map_err(|e| DbError::Corrupt(format!("event does not serialise: {e}")))?;
    let inserted = sqlx::query(
        "INSERT INTO outbox (event_id, payload, created_at, claimed_until) VALUES (?, ?, ?, ?)",
    )
    .bind(event.id.to_string())
    .bind(payload)
    .bind(now.0)
    .bind(claimed_until.map(|t| t.0))
    .execute(&mut **tx)
    .await?;
    Ok(inserted.last_insert_id())
}
