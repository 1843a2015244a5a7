//! The seat map cache: one JSON document per show, in Redis (shared by every
//! node) or in process.
//!
//! Every hold, release, expiry and sale invalidates the show's entry, and a
//! read never puts back a map older than the last invalidation: each show
//! has a generation, bumped atomically with the delete, and a fill is
//! written only if the generation is still the one seen before the
//! database read (a compare-and-set script in Redis). So the next read
//! after a change always shows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;

use crate::domain::ShowId;
use crate::store::redis::RedisConnection;
use crate::store::StoreError;

/// How long an entry may live without being invalidated (a safety net; a
/// change invalidates at once).
const ENTRY_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub enum SeatCache {
    Memory(Mutex<HashMap<ShowId, Slot>>),
    Redis(RedisCache),
}

#[derive(Debug, Default)]
pub struct Slot {
    generation: u64,
    value: Option<Arc<str>>,
}

pub struct RedisCache {
    conn: RedisConnection,
    prefix: String,
    fill: Script,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Arc<str>),
    /// Read the database, then [`SeatCache::fill`] with this generation.
    Miss {
        generation: u64,
    },
}

const FILL: &str = r"
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

impl SeatCache {
    pub fn memory() -> Self {
        SeatCache::Memory(Mutex::default())
    }

    pub fn redis(conn: RedisConnection, prefix: &str) -> Self {
        SeatCache::Redis(RedisCache {
            conn,
            prefix: prefix.to_owned(),
            fill: Script::new(FILL),
        })
    }

    fn keys(prefix: &str, show: ShowId) -> (String, String) {
        let base = format!("{prefix}{{show:{show}}}:seats");
        (base.clone(), format!("{base}:gen"))
    }

    pub async fn get(&self, show: ShowId) -> Result<Lookup, StoreError> {
        let lookup = match self {
            SeatCache::Memory(map) => {
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                match map.get(&show) {
                    Some(Slot { value: Some(v), .. }) => Lookup::Hit(v.clone()),
                    Some(slot) => Lookup::Miss {
                        generation: slot.generation,
                    },
                    None => Lookup::Miss { generation: 0 },
                }
            }
            SeatCache::Redis(r) => {
                let (value, generation) = Self::keys(&r.prefix, show);
                let (value, generation): (Option<String>, Option<u64>) = redis::pipe()
                    .get(value)
                    .get(generation)
                    .query_async(&mut r.conn.clone())
                    .await?;
                match value {
                    Some(v) => Lookup::Hit(v.into()),
                    None => Lookup::Miss {
                        generation: generation.unwrap_or(0),
                    },
                }
            }
        };
        let result = if matches!(lookup, Lookup::Hit(_)) {
            "hit"
        } else {
            "miss"
        };
        metrics::counter!(crate::telemetry::metrics::CACHE, "cache" => "seats", "result" => result)
            .increment(1);
        Ok(lookup)
    }

    /// Stores the map read after a miss, unless it changed since.
    pub async fn fill(
        &self,
        show: ShowId,
        generation: u64,
        value: Arc<str>,
    ) -> Result<(), StoreError> {
        match self {
            SeatCache::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let slot = map.entry(show).or_default();
                if slot.generation == generation {
                    slot.value = Some(value);
                }
            }
            SeatCache::Redis(r) => {
                let (value_key, generation_key) = Self::keys(&r.prefix, show);
                let _: i64 = r
                    .fill
                    .key(value_key)
                    .key(generation_key)
                    .arg(generation)
                    .arg(&*value)
                    .arg(ENTRY_TTL.as_millis() as u64)
                    .invoke_async(&mut r.conn.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Drops the show's entry; fills that started before are refused.
    pub async fn invalidate(&self, show: ShowId) -> Result<(), StoreError> {
        match self {
            SeatCache::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let slot = map.entry(show).or_default();
                slot.generation += 1;
                slot.value = None;
            }
            SeatCache::Redis(r) => {
                let (value, generation) = Self::keys(&r.prefix, show);
                let () = redis::pipe()
                    .atomic()
                    .incr(generation, 1)
                    .ignore()
                    .del(value)
                    .ignore()
                    .query_async(&mut r.conn.clone())
                    .await?;
            }
        }
        Ok(())
    }
}
