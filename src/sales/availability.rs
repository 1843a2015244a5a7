//! Seat availability: the show's layout (fixed for the sale) and every
//! seat's status, kept per section as two bits a seat, versioned, and
//! updated in place by each change instead of being read again from the
//! database.
//!
//! Where the statuses live:
//! - the *source* holds the truth between nodes: in Redis (shared by every
//!   node) one string per section plus a version counter, changed by one
//!   script that also releases the hold's seat lock and publishes the delta
//!   on the queue's change channel (so the feed that carries queue changes
//!   to every node carries these too); embedded, the same in process;
//! - each node keeps a *mirror* of every show it serves, which answers the
//!   reads (`/layout`, `/availability`, `/seats`) without a round trip, and
//!   feeds the `seats` deltas to the show's admitted connections.
//!
//! The version is per show, gap-free, and counts changes: the availability
//! at version `v` is the one at `v - 1` with delta `v` applied. The mirror
//! applies deltas in version order, buffering one that arrives ahead of a
//! gap (its own script's answer can overtake the feed's copy of an earlier
//! one) for at most [`GAP_PATIENCE`]; a gap older than that means a lost
//! message, so the mirror moves past it and reads the source again at the
//! next read. A shared mirror is also read again every [`MIRROR_MAX_AGE`],
//! which bounds how long any drift (a lost subscription, a Redis that lost
//! its data) can last.
//!
//! The source is seeded from the database the first time a show is read,
//! and again when the seed's marker expires ([`SEED_TTL`], which bounds the
//! drift a change that never reached it, such as a node stopping between
//! the database commit and the script, can cause). A seed is written only
//! if the version did not move since before its database read, so it never
//! hides a change made meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use redis::Script;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::locks::{SeatLock, SeatLocks};
use super::CacheStatus;
use crate::domain::{SeatChange, SeatId, SeatLayout, SeatStatus, SeatsLeft, ShowId};
use crate::store::redis::RedisConnection;
use crate::store::script::ScriptCall;
use crate::store::{ChangeSink, Database, DbError, StoreError};
use crate::telemetry::metrics as m;

/// How long a delta that arrived ahead of a gap waits for the missing one.
/// Deltas are published within a millisecond of each other; a gap this old
/// means a message was lost.
pub const GAP_PATIENCE: Duration = Duration::from_millis(500);

/// How long a node serves its mirror of a shared source before reading the
/// source again (one small script per show).
pub const MIRROR_MAX_AGE: Duration = Duration::from_secs(5);

/// How long a seeded source lives before it is seeded again from the
/// database.
pub const SEED_TTL: Duration = Duration::from_secs(600);

/// How long a show's board stays on a node that no longer uses it (see
/// [`Boards`]).
pub const BOARD_IDLE: Duration = Duration::from_secs(600);

/// Deltas an admitted connection may fall behind by before it skips some
/// (it then sees a version gap and reads availability again).
const FOLLOWER_BUFFER: usize = 256;

/// Deltas a board keeps before its mirror is first loaded.
const UNLOADED_PENDING: usize = 1024;

/// How often a seed is retried when changes keep moving the version.
const SEED_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum AvailabilityError {
    #[error("show {0} does not exist")]
    UnknownShow(ShowId),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The layout document: sections, rows and seats in the order the
/// availability bitmaps follow. Fixed for the sale.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayoutView {
    pub show_id: u64,
    pub sections: Vec<SectionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SectionView {
    pub name: String,
    /// In points.
    pub price: u64,
    pub rows: Vec<RowView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RowView {
    /// `R<n>`; empty for seats whose label names no row.
    pub row: String,
    pub seats: Vec<LayoutSeat>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LayoutSeat {
    pub seat_id: u64,
    pub label: String,
}

/// The availability document: per section, two bits per seat in layout
/// order (docs/protocol.md, "Availability").
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityView {
    pub show_id: u64,
    /// The layout these bitmaps follow: its `ETag` without the quotes.
    pub layout: String,
    pub version: u64,
    pub sections: Vec<SectionAvailability>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SectionAvailability {
    pub name: String,
    pub seats: u32,
    pub available: u32,
    /// Base64 of the section's statuses, 2 bits per seat, the first seat in
    /// the high bits of the first byte: 0 available, 1 held, 2 sold.
    pub bitmap: String,
}

/// A seat of the layout with its status (the `/seats` list).
#[derive(Debug, Clone, Copy)]
pub struct SeatEntry<'a> {
    pub id: SeatId,
    pub label: &'a str,
    pub section: &'a str,
    pub price: u64,
    pub status: SeatStatus,
}

/// A show's layout: fixed once the show is created.
#[derive(Debug)]
pub struct Layout {
    show: ShowId,
    sections: Vec<LayoutSection>,
    /// Seat → (section, position in it).
    index: HashMap<SeatId, (usize, u32)>,
    json: Arc<str>,
    /// Hex of the first half of the document's SHA-256.
    digest: String,
}

#[derive(Debug)]
struct LayoutSection {
    name: String,
    price: u64,
    seats: Vec<(SeatId, String)>,
}

impl Layout {
    /// Builds the layout from the show's seats in id order (the order they
    /// were created in, section by section).
    fn new(show: ShowId, seats: &[crate::domain::Seat]) -> Self {
        let mut sections: Vec<LayoutSection> = Vec::new();
        let mut index = HashMap::with_capacity(seats.len());
        for seat in seats {
            let at = match sections.iter().position(|s| s.name == seat.section) {
                Some(at) => at,
                None => {
                    sections.push(LayoutSection {
                        name: seat.section.clone(),
                        price: seat.price,
                        seats: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            let section = &mut sections[at];
            index.insert(seat.id, (at, section.seats.len() as u32));
            section.seats.push((seat.id, seat.label.clone()));
        }
        let view = LayoutView {
            show_id: show.0,
            sections: sections.iter().map(LayoutSection::view).collect(),
        };
        let json = serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned());
        let digest = Sha256::digest(json.as_bytes());
        let digest = hex(&digest[..16]);
        Self {
            show,
            sections,
            index,
            json: json.into(),
            digest,
        }
    }

    /// The layout document (JSON).
    pub fn json(&self) -> Arc<str> {
        self.json.clone()
    }

    /// A strong validator of [`Self::json`]: a digest of it, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.digest)
    }

    fn position(&self, seat: SeatId) -> Option<(usize, u32)> {
        self.index.get(&seat).copied()
    }

    /// Every section's statuses packed from the seats as the database has
    /// them.
    fn pack(&self, seats: &[crate::domain::Seat]) -> Vec<Vec<u8>> {
        let mut packed: Vec<Vec<u8>> = self
            .sections
            .iter()
            .map(|s| vec![0; s.seats.len().div_ceil(4)])
            .collect();
        for seat in seats {
            if let Some((section, pos)) = self.position(seat.id) {
                set_code(&mut packed[section], pos, seat.status.code());
            }
        }
        packed
    }
}

impl LayoutSection {
    fn view(&self) -> SectionView {
        let mut rows: Vec<RowView> = Vec::new();
        for (id, label) in &self.seats {
            let row = SeatLayout::row_of(&self.name, label).unwrap_or("");
            if rows.last().is_none_or(|r| r.row != row) {
                rows.push(RowView {
                    row: row.to_owned(),
                    seats: Vec::new(),
                });
            }
            if let Some(r) = rows.last_mut() {
                r.seats.push(LayoutSeat {
                    seat_id: id.0,
                    label: label.clone(),
                });
            }
        }
        SectionView {
            name: self.name.clone(),
            price: self.price,
            rows,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seat's two bits (Redis `BITFIELD u2 #pos` reads the same).
fn code_at(bytes: &[u8], pos: u32) -> u8 {
    let byte = bytes.get(pos as usize / 4).copied().unwrap_or(0);
    (byte >> (6 - 2 * (pos % 4))) & 0b11
}

fn set_code(bytes: &mut Vec<u8>, pos: u32, code: u8) {
    let at = pos as usize / 4;
    if bytes.len() <= at {
        bytes.resize(at + 1, 0);
    }
    let shift = 6 - 2 * (pos % 4);
    bytes[at] = (bytes[at] & !(0b11 << shift)) | ((code & 0b11) << shift);
}

/// One show on this node: its layout and the mirror of its statuses.
#[derive(Debug)]
struct Board {
    layout: Arc<Layout>,
    mirror: Mutex<Mirror>,
    deltas: broadcast::Sender<Delta>,
    /// One read of the source at a time: the reads that find the mirror
    /// stale meanwhile wait for it instead of each reading.
    loading: tokio::sync::Mutex<()>,
}

/// A delta as the followers receive it.
pub type Delta = (u64, Arc<[SeatChange]>);

#[derive(Debug)]
struct Mirror {
    synced: Option<Synced>,
    /// Deltas that arrived ahead of a gap, by version.
    pending: BTreeMap<u64, Arc<[SeatChange]>>,
    gap_since: Option<Instant>,
    /// A delta was skipped: read the source at the next read.
    stale: bool,
    loaded_at: Instant,
}

#[derive(Debug)]
struct Synced {
    version: u64,
    sections: Vec<Packed>,
    /// The rendered availability document, until the next change.
    doc: Option<Arc<str>>,
    /// The rendered seat list, until the next change.
    list: Option<Arc<str>>,
}

#[derive(Debug)]
struct Packed {
    bytes: Vec<u8>,
    /// Base64 of `bytes`, until the section changes: a change re-encodes
    /// its own section only.
    encoded: Option<Arc<str>>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the mirror can answer a read now.
    fn fresh(m: &Mirror, max_age: Option<Duration>) -> bool {
        m.synced.is_some() && !m.stale && max_age.is_none_or(|age| m.loaded_at.elapsed() < age)
    }

    /// Applies a delta in version order (see the module doc) and passes
    /// every delta applied on to the followers.
    fn apply(&self, version: u64, changes: Arc<[SeatChange]>) {
        let mut guard = self.lock();
        let m = &mut *guard;
        let Some(current) = m.synced.as_ref().map(|s| s.version) else {
            // Not loaded yet: kept for the snapshot being read, which may
            // be older (a board nobody reads keeps only the last few).
            m.pending.insert(version, changes);
            while m.pending.len() > UNLOADED_PENDING {
                m.pending.pop_first();
            }
            return;
        };
        if version <= current {
            return;
        }
        m.pending.insert(version, changes);
        self.drain(m);
        if m.pending.is_empty() {
            m.gap_since = None;
            return;
        }
        let since = *m.gap_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GAP_PATIENCE {
            // A delta was lost: move past it, and read the source at the
            // next read for what it changed.
            tracing::warn!(show = %self.layout.show, "a seat delta was lost; re-reading availability");
            m.stale = true;
            m.gap_since = None;
            if let (Some(s), Some(first)) = (m.synced.as_mut(), m.pending.keys().next()) {
                s.version = first - 1;
            }
            self.drain(m);
        }
    }

    /// Applies the pending deltas that follow the mirror's version.
    fn drain(&self, m: &mut Mirror) {
        let Mirror {
            synced, pending, ..
        } = m;
        let Some(s) = synced.as_mut() else { return };
        while let Some(changes) = pending.remove(&(s.version + 1)) {
            s.version += 1;
            for c in changes.iter() {
                if let Some((section, pos)) = self.layout.position(c.seat_id) {
                    let packed = &mut s.sections[section];
                    set_code(&mut packed.bytes, pos, c.status.code());
                    packed.encoded = None;
                }
            }
            s.doc = None;
            s.list = None;
            // Nobody following is fine: the send only fails then.
            let _ = self.deltas.send((s.version, changes));
        }
    }

    /// Takes a snapshot read from the source, unless the mirror is sound
    /// and already past it (deltas applied after the read). `seeded`: the
    /// source was seeded for this read, and is the truth whatever its
    /// version (a Redis that lost its data starts again from 0).
    fn install(&self, seeded: bool, version: u64, sections: Vec<Vec<u8>>) {
        let mut guard = self.lock();
        let m = &mut *guard;
        let ours = m.synced.as_ref().map(|s| s.version);
        if !seeded && !m.stale && ours.is_some_and(|ours| ours >= version) {
            m.loaded_at = Instant::now();
            return;
        }
        let mut sections: Vec<Packed> = sections
            .into_iter()
            .map(|bytes| Packed {
                bytes,
                encoded: None,
            })
            .collect();
        sections.resize_with(self.layout.sections.len(), || Packed {
            bytes: Vec::new(),
            encoded: None,
        });
        m.synced = Some(Synced {
            version,
            sections,
            doc: None,
            list: None,
        });
        m.stale = false;
        m.gap_since = None;
        m.loaded_at = Instant::now();
        m.pending = m.pending.split_off(&(version + 1));
        self.drain(m);
        // Deltas kept from before the snapshot that do not follow it.
        m.gap_since = (!m.pending.is_empty()).then(Instant::now);
    }

    /// The availability document, rendered if a change dropped it.
    fn document(&self, s: &mut Synced) -> Arc<str> {
        if let Some(doc) = &s.doc {
            return doc.clone();
        }
        let sections = self
            .layout
            .sections
            .iter()
            .zip(s.sections.iter_mut())
            .map(|(layout, packed)| {
                let n = layout.seats.len() as u32;
                let encoded = packed
                    .encoded
                    .get_or_insert_with(|| {
                        let mut bytes = packed.bytes.clone();
                        bytes.resize((n as usize).div_ceil(4), 0);
                        base64::engine::general_purpose::STANDARD
                            .encode(bytes)
                            .into()
                    })
                    .to_string();
                SectionAvailability {
                    name: layout.name.clone(),
                    seats: n,
                    available: (0..n).filter(|&p| code_at(&packed.bytes, p) == 0).count() as u32,
                    bitmap: encoded,
                }
            })
            .collect();
        let view = AvailabilityView {
            show_id: self.layout.show.0,
            layout: self.layout.digest.clone(),
            version: s.version,
            sections,
        };
        let doc: Arc<str> = serde_json::to_string(&view)
            .unwrap_or_else(|_| "{}".to_owned())
            .into();
        s.doc = Some(doc.clone());
        doc
    }
}

/// Every show's board on this node. Shared with the change feed, which
/// applies other nodes' deltas to it.
///
/// A board is let go once nobody on this node has used it for
/// [`BOARD_IDLE`] and nobody holds or follows it, when the next show's
/// board arrives: a node serving show after show for months keeps the
/// boards of the shows it serves now (a 20,000-seat show's layout, index
/// and rendered seat list are a few MB), not of every show it ever served.
/// A show used again is read again, as the first time.
#[derive(Debug, Default)]
pub struct Boards {
    shows: Mutex<HashMap<ShowId, Kept>>,
}

#[derive(Debug)]
struct Kept {
    board: Arc<Board>,
    /// When a read, a follower or a seat change on this node last asked
    /// for the board.
    used: Instant,
}

impl Kept {
    /// Unused for [`BOARD_IDLE`], and nobody holds the board (a read under
    /// way) or follows its deltas (an admitted fan's connection).
    fn idle(&self, now: Instant) -> bool {
        now.duration_since(self.used) >= BOARD_IDLE
            && Arc::strong_count(&self.board) == 1
            && self.board.deltas.receiver_count() == 0
    }
}

impl Boards {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShowId, Kept>> {
        self.shows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The show's board, marked used.
    fn get(&self, show: ShowId) -> Option<Arc<Board>> {
        let mut shows = self.lock();
        let kept = shows.get_mut(&show)?;
        kept.used = Instant::now();
        Some(kept.board.clone())
    }

    /// The show's board without marking it used: another node's delta does
    /// not keep a board here.
    fn peek(&self, show: ShowId) -> Option<Arc<Board>> {
        self.lock().get(&show).map(|kept| kept.board.clone())
    }

    /// Adds the show's board (unless another task just did), letting go of
    /// the idle ones first.
    fn insert(&self, layout: Layout) -> Arc<Board> {
        let now = Instant::now();
        let mut shows = self.lock();
        shows.retain(|_, kept| !kept.idle(now));
        let kept = shows.entry(layout.show).or_insert_with(|| Kept {
            board: Arc::new(Board {
                layout: Arc::new(layout),
                mirror: Mutex::new(Mirror {
                    synced: None,
                    pending: BTreeMap::new(),
                    gap_since: None,
                    stale: false,
                    loaded_at: now,
                }),
                deltas: broadcast::channel(FOLLOWER_BUFFER).0,
                loading: tokio::sync::Mutex::new(()),
            }),
            used: now,
        });
        kept.used = now;
        kept.board.clone()
    }
}

/// The feed brings other nodes' deltas; a lost subscription may have
/// dropped some, so every mirror reads its source again.
impl ChangeSink for Boards {
    fn apply(&self, _show: ShowId, _changes: &[crate::store::QueueChange]) {}

    fn resubscribed(&self) {
        for kept in self.lock().values() {
            kept.board.lock().stale = true;
        }
    }

    fn seats_changed(&self, show: ShowId, version: u64, changes: &[(SeatId, SeatStatus)]) {
        if let Some(board) = self.peek(show) {
            let changes: Arc<[SeatChange]> = changes
                .iter()
                .map(|&(seat_id, status)| SeatChange { seat_id, status })
                .collect();
            board.apply(version, changes);
        }
    }
}

/// Where the statuses are kept between nodes.
enum Source {
    Memory(Mutex<HashMap<ShowId, Stored>>),
    Redis(RedisSource),
}

#[derive(Debug, Default)]
struct Stored {
    version: u64,
    sections: Option<Vec<Vec<u8>>>,
}

struct RedisSource {
    conn: RedisConnection,
    prefix: String,
    channel: String,
    read: Script,
    update: Script,
}

/// What the source holds for a show.
enum Read {
    Ready(u64, Vec<Vec<u8>>),
    /// Not seeded; the version to seed at.
    Unseeded(u64),
}

/// Reads a show's statuses, seeding them first if `ARGV[1]` is the version
/// the seed was read at and nothing is there yet. KEYS: version, seed
/// marker, then one per section; ARGV: that version (`''`: only read), the
/// marker's TTL (ms), one packed section per section key. Answers the
/// version, `1` if seeded (else `0`), then (if seeded) every section.
const READ: &str = r"
local ready = redis.call('EXISTS', KEYS[2]) == 1
if not ready and ARGV[1] ~= '' and (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  for j = 3, #KEYS do
    redis.call('SET', KEYS[j], ARGV[j])
  end
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  ready = true
end
local out = {redis.call('GET', KEYS[1]) or '0', ready and '1' or '0'}
if ready then
  for j = 3, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[j]) or ''
  end
end
return out
";

/// One change of some seats' statuses, and (for a hold) the release of the
/// seat's lock, in one round trip. KEYS: version, seed marker, the section
/// of each change, then the lock if there is one; ARGV: show, channel,
/// lock token, then `position, status code, seat` per change. Bumps the
/// version even before the seed, so a seed read before this change is
/// refused. Answers `{lock released, version}`.
const UPDATE: &str = r#"
local n = (#ARGV - 3) / 3
local released = 0
if #KEYS > n + 2 and redis.call('GET', KEYS[#KEYS]) == ARGV[3] then
  released = redis.call('DEL', KEYS[#KEYS])
end
local v = redis.call('INCR', KEYS[1])
local ready = redis.call('EXISTS', KEYS[2]) == 1
local c = {}
for j = 1, n do
  local a = 3 + (j - 1) * 3
  if ready then
    redis.call('BITFIELD', KEYS[2 + j], 'SET', 'u2', '#' .. ARGV[a + 1], ARGV[a + 2])
  end
  c[j] = '[' .. ARGV[a + 3] .. ',' .. ARGV[a + 2] .. ']'
end
redis.call('PUBLISH', ARGV[2],
  '{"show":' .. ARGV[1] .. ',"seats":{"v":' .. v .. ',"c":[' .. table.concat(c, ',') .. ']}}')
return {released, v}
"#;

impl RedisSource {
    fn keys(&self, show: ShowId, sections: usize) -> Vec<String> {
        let base = format!("{}{{show:{show}}}:avail", self.prefix);
        let mut keys = vec![format!("{base}:ver"), format!("{base}:seeded")];
        keys.extend((0..sections).map(|i| format!("{base}:{i}")));
        keys
    }
}

impl Source {
    async fn read(
        &self,
        show: ShowId,
        sections: usize,
        seed: Option<(u64, Vec<Vec<u8>>)>,
    ) -> Result<Read, StoreError> {
        match self {
            Source::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let stored = map.entry(show).or_default();
                if let Some((at, packed)) = seed {
                    if stored.sections.is_none() && stored.version == at {
                        stored.sections = Some(packed);
                    }
                }
                Ok(match &stored.sections {
                    Some(s) => Read::Ready(stored.version, s.clone()),
                    None => Read::Unseeded(stored.version),
                })
            }
            Source::Redis(r) => {
                let mut invocation = ScriptCall::new(&r.read);
                for key in r.keys(show, sections) {
                    invocation.key(key);
                }
                match seed {
                    Some((at, packed)) => {
                        invocation.arg(at).arg(SEED_TTL.as_millis() as u64);
                        for bytes in packed {
                            invocation.arg(bytes);
                        }
                    }
                    None => {
                        invocation.arg("").arg(0);
                    }
                }
                let out: Vec<Vec<u8>> = invocation.invoke_async(&mut r.conn.clone()).await?;
                let mut out = out.into_iter();
                let version = out
                    .next()
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "availability version",
                        detail: "not a number".into(),
                    })?;
                Ok(match out.next().as_deref() {
                    Some(b"1") => Read::Ready(version, out.collect()),
                    _ => Read::Unseeded(version),
                })
            }
        }
    }

    /// Writes `changes` (and releases `lock`); answers the new version and
    /// whether the lock was still the holder's.
    async fn update(
        &self,
        layout: &Layout,
        changes: &[SeatChange],
        lock: Option<(&SeatLocks, SeatLock)>,
    ) -> Result<(u64, bool), StoreError> {
        let show = layout.show;
        match self {
            Source::Memory(map) => {
                let released = match lock {
                    Some((locks, lock)) => locks.release(lock).await?,
                    None => false,
                };
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let stored = map.entry(show).or_default();
                stored.version += 1;
                if let Some(sections) = stored.sections.as_mut() {
                    for c in changes {
                        if let Some((section, pos)) = layout.position(c.seat_id) {
                            set_code(&mut sections[section], pos, c.status.code());
                        }
                    }
                }
                Ok((stored.version, released))
            }
            Source::Redis(r) => {
                // The lock's key, for the script; a lock kept elsewhere
                // (not in this Redis) is released on its own first.
                let (lock, mut released) = match lock {
                    Some((locks, lock)) => match locks.redis_key(&lock) {
                        Some(key) => (Some((key, lock)), false),
                        None => (None, locks.release(lock).await?),
                    },
                    None => (None, false),
                };
                let keys = r.keys(show, layout.sections.len());
                let mut invocation = ScriptCall::new(&r.update);
                invocation.key(&keys[0]).key(&keys[1]);
                invocation
                    .arg(show.0)
                    .arg(&r.channel)
                    .arg(lock.as_ref().map_or("", |(_, l)| l.token()));
                for c in changes {
                    // A seat outside the layout cannot change; skip it
                    // rather than write outside every section.
                    let Some((section, pos)) = layout.position(c.seat_id) else {
                        continue;
                    };
                    invocation.key(&keys[2 + section]);
                    invocation.arg(pos).arg(c.status.code()).arg(c.seat_id.0);
                }
                if let Some((key, _)) = &lock {
                    invocation.key(key);
                }
                let (by_script, version): (u8, u64) =
                    invocation.invoke_async(&mut r.conn.clone()).await?;
                released |= by_script == 1;
                Ok((version, released))
            }
        }
    }
}

/// The seat availability of every show (see the module doc).
pub struct Availability {
    source: Source,
    db: Database,
    boards: Arc<Boards>,
    max_age: Option<Duration>,
}

impl std::fmt::Debug for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Availability")
            .field("boards", &self.boards)
            .finish()
    }
}

impl Availability {
    /// Embedded: the source is in process, so the mirror never drifts.
    pub fn memory(db: Database, boards: Arc<Boards>) -> Self {
        Self {
            source: Source::Memory(Mutex::default()),
            db,
            boards,
            max_age: None,
        }
    }

    /// Shared through Redis; deltas go out on `channel` (the queue's change
    /// channel), which the node's feed applies to `boards`.
    pub fn redis(
        conn: RedisConnection,
        prefix: &str,
        channel: String,
        db: Database,
        boards: Arc<Boards>,
    ) -> Self {
        Self {
            source: Source::Redis(RedisSource {
                conn,
                prefix: prefix.to_owned(),
                channel,
                read: Script::new(READ),
                update: Script::new(UPDATE),
            }),
            db,
            boards,
            max_age: Some(MIRROR_MAX_AGE),
        }
    }

    /// The show's board, its layout read from the database the first time.
    async fn board(&self, show: ShowId) -> Result<Arc<Board>, AvailabilityError> {
        if let Some(board) = self.boards.get(show) {
            return Ok(board);
        }
        let seats = self.db.seats(show).await?;
        // No seats: a queue-only show, or no show at all (404).
        if seats.is_empty() && self.db.show(show).await?.is_none() {
            return Err(AvailabilityError::UnknownShow(show));
        }
        Ok(self.boards.insert(Layout::new(show, &seats)))
    }

    /// Reads the source into the board's mirror, seeding the source from
    /// the database if it holds nothing for the show.
    async fn load(&self, board: &Board) -> Result<(), AvailabilityError> {
        let layout = &board.layout;
        let sections = layout.sections.len();
        let mut read = self.source.read(layout.show, sections, None).await?;
        let seeded = matches!(read, Read::Unseeded(_));
        for _ in 0..SEED_ATTEMPTS {
            let Read::Unseeded(at) = read else { break };
            let seats = self.db.seats(layout.show).await?;
            let packed = layout.pack(&seats);
            read = self
                .source
                .read(layout.show, sections, Some((at, packed)))
                .await?;
        }
        match read {
            Read::Ready(version, packed) => {
                board.install(seeded, version, packed);
                Ok(())
            }
            // Changes kept coming during every seed; the next read tries
            // again.
            Read::Unseeded(_) => Err(AvailabilityError::Store(StoreError::Corrupt {
                what: "availability seed",
                detail: "the version moved during every attempt".into(),
            })),
        }
    }

    /// Runs `read` on a fresh mirror of the show, loading it first if it
    /// is not; tells whether it was ([`CacheStatus::Hit`]). While the
    /// source cannot be read, a mirror the node has is served as it is
    /// (its version says how old it is).
    async fn with_mirror<T>(
        &self,
        show: ShowId,
        read: impl Fn(&Board, &mut Synced) -> T,
    ) -> Result<(T, CacheStatus), AvailabilityError> {
        let board = self.board(show).await?;
        let serve = |status: CacheStatus| {
            let mut mirror = board.lock();
            let s = mirror.synced.as_mut()?;
            let result = match status {
                CacheStatus::Hit => "hit",
                CacheStatus::Miss => "miss",
            };
            metrics::counter!(m::CACHE, "cache" => "seats", "result" => result).increment(1);
            Some((read(&board, s), status))
        };
        if Board::fresh(&board.lock(), self.max_age) {
            if let Some(out) = serve(CacheStatus::Hit) {
                return Ok(out);
            }
        }
        let _loading = board.loading.lock().await;
        if Board::fresh(&board.lock(), self.max_age) {
            if let Some(out) = serve(CacheStatus::Hit) {
                return Ok(out);
            }
        }
        let loaded = self.load(&board).await;
        if let Err(e) = &loaded {
            tracing::warn!(error = %e, %show, "cannot read seat availability; serving this node's copy");
        }
        match serve(CacheStatus::Miss) {
            Some(out) => Ok(out),
            None => Err(loaded.err().unwrap_or_else(|| {
                AvailabilityError::Store(StoreError::Corrupt {
                    what: "availability",
                    detail: "nothing to read after loading".into(),
                })
            })),
        }
    }

    /// The show's layout.
    pub async fn layout(&self, show: ShowId) -> Result<Arc<Layout>, AvailabilityError> {
        Ok(self.board(show).await?.layout.clone())
    }

    /// The availability document (JSON) and its version.
    pub async fn document(
        &self,
        show: ShowId,
    ) -> Result<((Arc<str>, u64), CacheStatus), AvailabilityError> {
        self.with_mirror(show, |board, s| (board.document(s), s.version))
            .await
    }

    /// Every seat with its status, as `render` writes them (cached until
    /// the next change).
    pub async fn seat_list(
        &self,
        show: ShowId,
        render: impl Fn(&mut dyn Iterator<Item = SeatEntry<'_>>) -> String,
    ) -> Result<(Arc<str>, CacheStatus), AvailabilityError> {
        // The statuses are copied out (2 bits a seat) and the list rendered
        // outside the mirror's lock: 20,000 seats take milliseconds, which
        // deltas and availability reads must not wait for.
        let (found, cache) = self
            .with_mirror(show, |_, s| match &s.list {
                Some(list) => Ok(list.clone()),
                None => Err((
                    s.version,
                    s.sections
                        .iter()
                        .map(|p| p.bytes.clone())
                        .collect::<Vec<_>>(),
                )),
            })
            .await?;
        let (version, sections) = match found {
            Ok(list) => return Ok((list, cache)),
            Err(copy) => copy,
        };
        let board = self.board(show).await?;
        let mut entries =
            board
                .layout
                .sections
                .iter()
                .zip(&sections)
                .flat_map(|(section, bytes)| {
                    section
                        .seats
                        .iter()
                        .enumerate()
                        .map(move |(pos, (id, label))| SeatEntry {
                            id: *id,
                            label,
                            section: &section.name,
                            price: section.price,
                            status: SeatStatus::from_code(code_at(bytes, pos as u32))
                                .unwrap_or(SeatStatus::Sold),
                        })
                });
        let list: Arc<str> = render(&mut entries).into();
        if let Some(s) = board.lock().synced.as_mut() {
            if s.version == version {
                s.list = Some(list.clone());
            }
        }
        Ok((list, cache))
    }

    /// Which statuses the show's seats have in this node's mirror, if it
    /// is in step with its source (loaded, no gap, nothing skipped). Reads
    /// the seats only until it has seen all three.
    pub fn left(&self, show: ShowId) -> Option<SeatsLeft> {
        let board = self.boards.get(show)?;
        let mirror = board.lock();
        if mirror.stale || !mirror.pending.is_empty() {
            return None;
        }
        let s = mirror.synced.as_ref()?;
        Some(SeatsLeft::of(
            board
                .layout
                .sections
                .iter()
                .zip(&s.sections)
                .flat_map(|(section, packed)| {
                    (0..section.seats.len() as u32).map(|pos| {
                        SeatStatus::from_code(code_at(&packed.bytes, pos))
                            .unwrap_or(SeatStatus::Sold)
                    })
                }),
        ))
    }

    /// The show's deltas from now on (for an admitted connection), its
    /// mirror loaded so they come in order.
    pub async fn follow(
        &self,
        show: ShowId,
    ) -> Result<broadcast::Receiver<Delta>, AvailabilityError> {
        let board = self.board(show).await?;
        let rx = board.deltas.subscribe();
        self.loaded(&board).await?;
        Ok(rx)
    }

    /// Follows the show's deltas from now on without waiting, if this
    /// node has its board; they come once its mirror is loaded
    /// ([`Self::follow_loaded`]).
    pub fn follow_now(&self, show: ShowId) -> Option<broadcast::Receiver<Delta>> {
        Some(self.boards.get(show)?.deltas.subscribe())
    }

    /// Loads the show's mirror for a receiver from [`Self::follow_now`]
    /// (nothing to do when it is fresh).
    pub async fn follow_loaded(&self, show: ShowId) -> Result<(), AvailabilityError> {
        let board = self.board(show).await?;
        self.loaded(&board).await
    }

    /// Loads `board`'s mirror unless it is fresh (once, however many ask).
    async fn loaded(&self, board: &Board) -> Result<(), AvailabilityError> {
        if !Board::fresh(&board.lock(), None) {
            let _loading = board.loading.lock().await;
            if !Board::fresh(&board.lock(), None) {
                self.load(board).await?;
            }
        }
        Ok(())
    }

    /// Records that `changes` happened (already committed in the database),
    /// releasing `lock` in the same step when given. A failure leaves the
    /// source behind until its next seed; the sale itself stands.
    pub async fn changed(
        &self,
        show: ShowId,
        changes: &[(SeatId, SeatStatus)],
        lock: Option<(&SeatLocks, SeatLock)>,
    ) {
        if let Err(e) = self.try_changed(show, changes, lock).await {
            tracing::error!(error = %e, %show, "updating seat availability failed; it catches up at its next seed");
        }
    }

    async fn try_changed(
        &self,
        show: ShowId,
        changes: &[(SeatId, SeatStatus)],
        lock: Option<(&SeatLocks, SeatLock)>,
    ) -> Result<(), AvailabilityError> {
        let board = match self.board(show).await {
            Ok(board) => board,
            Err(e) => {
                if let Some((locks, lock)) = lock {
                    locks.release(lock).await?;
                }
                return Err(e);
            }
        };
        let changes: Arc<[SeatChange]> = changes
            .iter()
            .map(|&(seat_id, status)| SeatChange { seat_id, status })
            .collect();
        let (version, _) = self.source.update(&board.layout, &changes, lock).await?;
        board.apply(version, changes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bits_per_seat_high_bits_first() {
        let mut bytes = Vec::new();
        set_code(&mut bytes, 0, 1);
        set_code(&mut bytes, 5, 2);
        assert_eq!(bytes, [0b0100_0000, 0b0010_0000]);
        assert_eq!(
            (code_at(&bytes, 0), code_at(&bytes, 5), code_at(&bytes, 9)),
            (1, 2, 0)
        );
        set_code(&mut bytes, 0, 0);
        assert_eq!(bytes[0], 0);
    }

    fn layout(show: u64, seats: u64) -> Layout {
        let seats: Vec<crate::domain::Seat> = (1..=seats)
            .map(|i| crate::domain::Seat {
                id: SeatId(i),
                show: ShowId(show),
                label: format!("A R1-{i}"),
                section: "A".into(),
                price: 10,
                status: SeatStatus::Available,
                version: 0,
            })
            .collect();
        Layout::new(ShowId(show), &seats)
    }

    fn board(seats: u64) -> Arc<Board> {
        Boards::default().insert(layout(1, seats))
    }

    fn delta(seat: u64, status: SeatStatus) -> Arc<[SeatChange]> {
        vec![SeatChange {
            seat_id: SeatId(seat),
            status,
        }]
        .into()
    }

    fn status_of(board: &Board, seat: u64) -> u8 {
        let m = board.lock();
        let s = m.synced.as_ref().expect("synced");
        let (section, pos) = board.layout.position(SeatId(seat)).expect("in the layout");
        code_at(&s.sections[section].bytes, pos)
    }

    #[test]
    fn deltas_apply_and_go_out_in_version_order() {
        let board = board(6);
        let mut followers = board.deltas.subscribe();
        // Before the mirror is loaded, deltas wait for the read.
        board.apply(4, delta(1, SeatStatus::Held));
        board.install(false, 3, vec![vec![0b1000_0000, 0]]);
        assert_eq!(
            status_of(&board, 1),
            1,
            "the delta after the snapshot applied"
        );
        // One overtakes another: held back until the gap closes.
        board.apply(6, delta(2, SeatStatus::Sold));
        assert_eq!(status_of(&board, 2), 0);
        board.apply(5, delta(2, SeatStatus::Held));
        board.apply(5, delta(2, SeatStatus::Held));
        assert_eq!(status_of(&board, 2), 2);
        let versions: Vec<u64> = std::iter::from_fn(|| followers.try_recv().ok())
            .map(|(v, _)| v)
            .collect();
        assert_eq!(versions, [4, 5, 6]);
        // An older snapshot (read before these deltas) does not undo them.
        board.install(false, 4, vec![vec![0b1000_0000, 0]]);
        assert_eq!((status_of(&board, 1), status_of(&board, 2)), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_stays_open_is_skipped_and_marks_the_mirror_stale() {
        let board = board(4);
        board.install(false, 1, vec![vec![0]]);
        board.apply(3, delta(3, SeatStatus::Held));
        assert!(!board.lock().stale);
        tokio::time::advance(GAP_PATIENCE).await;
        board.apply(4, delta(4, SeatStatus::Held));
        let m = board.lock();
        assert!(m.stale, "the next read goes to the source");
        assert_eq!(m.synced.as_ref().map(|s| s.version), Some(4));
        drop(m);
        assert_eq!((status_of(&board, 3), status_of(&board, 4)), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn boards_nobody_uses_are_let_go_when_another_show_arrives() {
        let boards = Boards::default();
        let kept_on = |show: u64| boards.peek(ShowId(show)).is_some();
        drop(boards.insert(layout(1, 4)));
        let followed = boards.insert(layout(2, 4));
        let _follower = followed.deltas.subscribe();
        drop(followed);
        let _held = boards.insert(layout(3, 4));
        drop(boards.insert(layout(4, 4)));
        drop(boards.insert(layout(5, 4)));
        tokio::time::advance(BOARD_IDLE - Duration::from_secs(1)).await;
        drop(boards.get(ShowId(4)));
        // Another node's delta is not a use here.
        boards.seats_changed(ShowId(5), 1, &[(SeatId(1), SeatStatus::Held)]);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(boards.insert(layout(6, 4)));
        assert!(!kept_on(1), "unused, unheld, unfollowed: let go");
        assert!(kept_on(2), "an admitted fan follows its deltas");
        assert!(kept_on(3), "a read holds it");
        assert!(kept_on(4), "used a second ago");
        assert!(!kept_on(5), "only other nodes' deltas came");
        assert!(kept_on(6));
        // Nothing is let go before another show's board arrives.
        tokio::time::advance(BOARD_IDLE).await;
        assert!(kept_on(4) && kept_on(6));
        drop(boards.insert(layout(1, 4)));
        assert!(!kept_on(4) && !kept_on(6) && kept_on(1));
    }
}
