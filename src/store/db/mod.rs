//! The database seam: users and shows here, the sale paths' data in
//! [`sales`]. Embedded it is maps behind std locks; in production it is
//! MySQL (or MariaDB) through a sqlx pool, with the schema in `migrations/`.

pub mod sales;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::Executor as _;

use crate::domain::{NewSeat, NewShow, Show, ShowId, ShowState, UserId, Username};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(String),
    /// The transaction lost a deadlock; run it again.
    #[error("transaction deadlocked: {0}")]
    Deadlock(String),
    /// A concurrent write got there first; nothing was changed.
    #[error("the write conflicted with a concurrent one")]
    Conflict,
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self::from_sqlx(e)
    }
}

impl DbError {
    /// Values of the `kind` label of `anteroom_db_errors_total`.
    pub const KINDS: &[&str] = &["unavailable", "query", "deadlock"];

    /// Maps a driver error and counts it (every sqlx error passes here).
    fn from_sqlx(e: sqlx::Error) -> Self {
        let error = Self::classify(e);
        let kind = match &error {
            DbError::Unavailable(_) => "unavailable",
            DbError::Deadlock(_) => "deadlock",
            DbError::Query(_) | DbError::Conflict => "query",
        };
        metrics::counter!(crate::telemetry::metrics::DB_ERRORS, "kind" => kind).increment(1);
        error
    }

    fn classify(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("40001") => {
                DbError::Deadlock(e.to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(e.to_string()),
            other => DbError::Query(other.to_string()),
        }
    }
}

/// The connection pool at one moment (all zero on the embedded database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, Clone)]
pub enum Database {
    Memory(Arc<MemoryDb>),
    MySql(MySqlDb),
}

/// Pool settings for the MySQL backend.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a query waits for a free connection before the request
    /// fails with 503 (never an unbounded hang).
    pub acquire_timeout: std::time::Duration,
}

impl Database {
    pub fn memory() -> Self {
        Database::Memory(Arc::new(MemoryDb::default()))
    }

    /// Connects to MySQL and applies pending migrations; fails fast with the
    /// reason when the URL is malformed or the server unreachable.
    pub async fn mysql(url: &str, pool: &PoolOptions) -> Result<Self, DbError> {
        let db = MySqlDb::connect(url, pool).await?;
        db.migrate().await?;
        Ok(Database::MySql(db))
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Database::Memory(_))
    }

    /// The connection pool's use now, for the metrics.
    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Database::Memory(_) => PoolStats::default(),
            Database::MySql(m) => m.pool_stats(),
        }
    }

    /// The fan's id, creating the user on first sign-in.
    pub async fn upsert_user(&self, name: &Username) -> Result<UserId, DbError> {
        match self {
            Database::Memory(m) => Ok(m.upsert_user(name)),
            Database::MySql(m) => m.upsert_user(name).await,
        }
    }

    /// Creates a show and its seats, together.
    pub async fn create_show(&self, new: NewShow, seats: &[NewSeat]) -> Result<Show, DbError> {
        match self {
            Database::Memory(m) => {
                let show = m.create_show(new);
                m.add_seats(show.id, seats);
                Ok(show)
            }
            Database::MySql(m) => m.create_show(new, seats).await,
        }
    }

    pub async fn show(&self, id: ShowId) -> Result<Option<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.show(id)),
            Database::MySql(m) => m.show(id).await,
        }
    }

    pub async fn shows(&self) -> Result<Vec<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.shows()),
            Database::MySql(m) => m.shows().await,
        }
    }

    /// Returns the updated show, or `None` if it does not exist.
    pub async fn set_show_state(
        &self,
        id: ShowId,
        state: ShowState,
    ) -> Result<Option<Show>, DbError> {
        match self {
            Database::Memory(m) => Ok(m.set_show_state(id, state)),
            Database::MySql(m) => m.set_show_state(id, state).await,
        }
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Database::Memory(_) => Ok(()),
            Database::MySql(m) => m.ping().await,
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryDb {
    inner: RwLock<Tables>,
    sales: Mutex<sales::SalesTables>,
}

#[derive(Debug, Default)]
struct Tables {
    users: HashMap<String, UserId>,
    shows: Vec<Show>,
}

impl MemoryDb {
    fn upsert_user(&self, name: &Username) -> UserId {
        let mut t = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let next = UserId(t.users.len() as u64 + 1);
        *t.users.entry(name.as_str().to_owned()).or_insert(next)
    }

    fn create_show(&self, new: NewShow) -> Show {
        let mut t = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let show = Show {
            id: ShowId(t.shows.len() as u64 + 1),
            title: new.title,
            starts_at: new.starts_at,
            state: ShowState::Open,
            capacity: new.capacity,
            session_ttl: new.session_ttl,
            abandon_grace: new.abandon_grace,
        };
        t.shows.push(show.clone());
        show
    }

    fn show(&self, id: ShowId) -> Option<Show> {
        let t = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        t.shows.iter().find(|s| s.id == id).cloned()
    }

    fn shows(&self) -> Vec<Show> {
        let t = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        t.shows.clone()
    }

    fn set_show_state(&self, id: ShowId, state: ShowState) -> Option<Show> {
        let mut t = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let show = t.shows.iter_mut().find(|s| s.id == id)?;
        show.state = state;
        Some(show.clone())
    }
}

/// MySQL / MariaDB through a sqlx pool.
#[derive(Debug, Clone)]
pub struct MySqlDb {
    pool: MySqlPool,
}

/// The schema, embedded at build time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(sqlx::FromRow)]
struct ShowRow {
    id: u64,
    title: String,
    starts_at: Option<chrono::NaiveDateTime>,
    state: String,
    capacity: u32,
    session_ttl_secs: u32,
    abandon_grace_secs: u32,
}

impl From<ShowRow> for Show {
    fn from(r: ShowRow) -> Self {
        Show {
            id: ShowId(r.id),
            title: r.title,
            starts_at: r.starts_at.map(|t| t.and_utc()),
            // The schema's CHECK allows only these two.
            state: if r.state == ShowState::Paused.as_str() {
                ShowState::Paused
            } else {
                ShowState::Open
            },
            capacity: r.capacity,
            session_ttl: Duration::from_secs(u64::from(r.session_ttl_secs)),
            abandon_grace: Duration::from_secs(u64::from(r.abandon_grace_secs)),
        }
    }
}

macro_rules! select_shows {
    ($tail:literal) => {
        concat!(
            "SELECT id, title, starts_at, state, capacity, session_ttl_secs, abandon_grace_secs \
             FROM shows ",
            $tail
        )
    };
}

impl MySqlDb {
    pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Self, DbError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| DbError::Unavailable(format!("invalid database URL: {e}")))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .after_connect(|conn, _| {
                // READ COMMITTED: every sale transaction serialises on the
                // rows it locks (the fan's account, the seat, the hold), so
                // it needs no gap locks. Under InnoDB's default REPEATABLE
                // READ, the idempotency-key lookup of two fans' first
                // payments took gap locks on the same index gap, and their
                // inserts then deadlocked each other (about one payment in
                // seven with 50 concurrent buyers).
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| DbError::Query(format!("migrations failed: {e}")))
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    fn pool_stats(&self) -> PoolStats {
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

    async fn upsert_user(&self, name: &Username) -> Result<UserId, DbError> {
        // LAST_INSERT_ID(id) makes an existing row's id the insert id, so one
        // statement both creates and finds the user.
        let done = sqlx::query(
            "INSERT INTO users (username) VALUES (?) \
             ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
        )
        .bind(name.as_str())
        .execute(&self.pool)
        .await?;
        Ok(UserId(done.last_insert_id()))
    }

    async fn create_show(&self, new: NewShow, seats: &[NewSeat]) -> Result<Show, DbError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO shows (title, starts_at, capacity, session_ttl_secs, abandon_grace_secs) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&new.title)
        .bind(new.starts_at.map(|t| t.naive_utc()))
        .bind(new.capacity)
        .bind(new.session_ttl.as_secs())
        .bind(new.abandon_grace.as_secs())
        .execute(&mut *tx)
        .await?;
        let id = ShowId(done.last_insert_id());
        Self::add_seats(&mut tx, id, seats).await?;
        tx.commit().await?;
        self.show(id)
            .await?
            .ok_or_else(|| DbError::Query("created show not found".to_owned()))
    }

    async fn show(&self, id: ShowId) -> Result<Option<Show>, DbError> {
        let row: Option<ShowRow> = sqlx::query_as(select_shows!("WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Show::from))
    }

    async fn shows(&self) -> Result<Vec<Show>, DbError> {
        let rows: Vec<ShowRow> = sqlx::query_as(select_shows!("ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Show::from).collect())
    }

    async fn set_show_state(&self, id: ShowId, state: ShowState) -> Result<Option<Show>, DbError> {
        sqlx::query("UPDATE shows SET state = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        self.show(id).await
    }

    async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
