//! The record of used solutions, so each admits one join: in Redis when the
//! queue is shared (every node sees every use), in this process otherwise.
//!
//! A use is `SET <prefix>altcha:<challenge> 1 NX PX <ms>`: one round trip,
//! atomic, and the key lapses by itself once the challenge could no longer
//! verify anyway. Embedded, the same lives in a map with deadlines.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::redis::RedisConnection;
use crate::store::StoreError;

#[derive(Debug)]
pub enum UsedSolutions {
    Memory(Mutex<MemoryUsed>),
    Redis(RedisUsed),
}

/// Challenges used, each with the moment it may be forgotten. A std mutex:
/// the critical section is one map operation, never held across an await.
#[derive(Debug, Default)]
pub struct MemoryUsed {
    until: HashMap<String, Instant>,
    /// The size at which lapsed entries are swept out next, so sweeping
    /// costs O(1) per use on average.
    sweep_at: usize,
}

pub struct RedisUsed {
    conn: RedisConnection,
    prefix: String,
}

impl std::fmt::Debug for RedisUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUsed")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl UsedSolutions {
    const MIN_SWEEP: usize = 1024;

    pub fn memory() -> Self {
        UsedSolutions::Memory(Mutex::new(MemoryUsed {
            until: HashMap::new(),
            sweep_at: Self::MIN_SWEEP,
        }))
    }

    pub fn redis(conn: RedisConnection, prefix: &str) -> Self {
        UsedSolutions::Redis(RedisUsed {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// Records `challenge` as used for `keep`; `false` if it was already.
    pub async fn claim(&self, challenge: &str, keep: Duration) -> Result<bool, StoreError> {
        match self {
            UsedSolutions::Memory(used) => {
                let mut used = used.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                if used.until.get(challenge).is_some_and(|t| *t > now) {
                    return Ok(false);
                }
                used.until.insert(challenge.to_owned(), now + keep);
                if used.until.len() >= used.sweep_at {
                    used.until.retain(|_, t| *t > now);
                    used.sweep_at = (used.until.len() * 2).max(Self::MIN_SWEEP);
                }
                Ok(true)
            }
            UsedSolutions::Redis(r) => {
                let set: Option<String> = redis::cmd("SET")
                    .arg(format!("{}altcha:{challenge}", r.prefix))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async(&mut r.conn.clone())
                    .await?;
                Ok(set.is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_use_is_remembered_until_it_lapses_and_lapsed_ones_are_swept() {
        let used = UsedSolutions::memory();
        let keep = Duration::from_secs(10);
        assert_eq!(used.claim("a", keep).await.ok(), Some(true));
        assert_eq!(used.claim("a", keep).await.ok(), Some(false));
        assert_eq!(used.claim("b", keep).await.ok(), Some(true));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(used.claim("a", keep).await.ok(), Some(true), "lapsed");

        for i in 0..UsedSolutions::MIN_SWEEP {
            used.claim(&i.to_string(), Duration::from_secs(1))
                .await
                .expect("memory");
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..UsedSolutions::MIN_SWEEP {
            used.claim(&format!("n{i}"), keep).await.expect("memory");
        }
        let UsedSolutions::Memory(m) = &used else {
            unreachable!()
        };
        let m = m.lock().expect("lock");
        assert!(
            m.until.len() <= UsedSolutions::MIN_SWEEP + 2,
            "lapsed uses were swept: {} left",
            m.until.len()
        );
    }
}
