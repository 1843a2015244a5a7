//! Per-seat locks that keep concurrent buyers of one seat off the database.
//!
//! A lock is `SET key token NX PX ttl` with a random token, released by a
//! compare-and-delete script, so a holder whose lock expired can never
//! release the next holder's. The lock only cuts contention: correctness
//! rests on the database's fencing check ([`crate::store::db::sales`]), so
//! a holder paused past its TTL still cannot win. Nobody waits for a lock:
//! a busy seat answers 409 at once, and no database connection is held
//! while a lock is sought.
//!
//! Embedded, the same semantics live in a map with deadlines.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use crate::domain::{SeatId, ShowId};
use crate::store::redis::RedisConnection;
use crate::store::script::ScriptCall;
use crate::store::StoreError;
use crate::telemetry::metrics as m;

/// Values of the `outcome` label of `anteroom_lock_acquisitions_total`.
pub const LOCK_OUTCOMES: &[&str] = &["acquired", "busy", "error"];

#[derive(Debug)]
pub enum SeatLocks {
    Memory(Mutex<HashMap<(ShowId, SeatId), (String, Instant)>>),
    Redis(RedisLocks),
}

pub struct RedisLocks {
    conn: RedisConnection,
    prefix: String,
    release: Script,
}

impl std::fmt::Debug for RedisLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocks")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A held lock; give it to [`SeatLocks::release`].
#[derive(Debug)]
pub struct SeatLock {
    pub show: ShowId,
    pub seat: SeatId,
    token: String,
}

impl SeatLock {
    /// The holder's token, which releases it.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl SeatLocks {
    pub fn memory() -> Self {
        SeatLocks::Memory(Mutex::default())
    }

    pub fn redis(conn: RedisConnection, prefix: &str) -> Self {
        SeatLocks::Redis(RedisLocks {
            conn,
            prefix: prefix.to_owned(),
            release: Script::new(RELEASE),
        })
    }

    fn key(prefix: &str, show: ShowId, seat: SeatId) -> String {
        format!("{prefix}{{show:{show}}}:lock:seat:{seat}")
    }

    /// The Redis key of `lock`, for a script that releases it together with
    /// another change ([`super::availability`]); embedded, there is none.
    pub(crate) fn redis_key(&self, lock: &SeatLock) -> Option<String> {
        match self {
            SeatLocks::Memory(_) => None,
            SeatLocks::Redis(r) => Some(Self::key(&r.prefix, lock.show, lock.seat)),
        }
    }

    /// Takes the seat's lock for `ttl`, or `None` if someone holds it.
    pub async fn acquire(
        &self,
        show: ShowId,
        seat: SeatId,
        ttl: Duration,
    ) -> Result<Option<SeatLock>, StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let result = self.try_set(show, seat, &token, ttl).await;
        metrics::histogram!(m::LOCK_ACQUIRE).record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(true) => "acquired",
            Ok(false) => "busy",
            Err(_) => "error",
        };
        metrics::counter!(m::LOCKS, "outcome" => outcome).increment(1);
        Ok(result?.then_some(SeatLock { show, seat, token }))
    }

    /// Sets the lock to `token` unless someone holds it.
    async fn try_set(
        &self,
        show: ShowId,
        seat: SeatId,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(match self {
            SeatLocks::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                match map.get(&(show, seat)) {
                    Some((_, until)) if *until > now => false,
                    _ => {
                        map.insert((show, seat), (token.to_owned(), now + ttl));
                        true
                    }
                }
            }
            SeatLocks::Redis(r) => {
                let set: Option<String> = redis::cmd("SET")
                    .arg(Self::key(&r.prefix, show, seat))
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async(&mut r.conn.clone())
                    .await?;
                set.is_some()
            }
        })
    }

    /// Releases the lock if it is still this holder's; returns whether it was.
    pub async fn release(&self, lock: SeatLock) -> Result<bool, StoreError> {
        match self {
            SeatLocks::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let ours =
                    matches!(map.get(&(lock.show, lock.seat)), Some((t, _)) if *t == lock.token);
                if ours {
                    map.remove(&(lock.show, lock.seat));
                }
                Ok(ours)
            }
            SeatLocks::Redis(r) => {
                let deleted: i64 = ScriptCall::new(&r.release)
                    .key(Self::key(&r.prefix, lock.show, lock.seat))
                    .arg(&lock.token)
                    .invoke_async(&mut r.conn.clone())
                    .await?;
                Ok(deleted == 1)
            }
        }
    }
}
