//! The embedded queue store: per-show state behind a std `Mutex`.
//!
//! A std mutex (not tokio's) because every critical section is a few map
//! operations with no `.await` inside; one mutex per show so shows never
//! contend. The change sink is called inside the critical section, which is
//! what keeps the live view in version order without a reorder buffer.
//!
//! The demand ranking (`GET /v1/shows?sort=demand`) is a sorted set across
//! shows, updated by every step that changes a show's counts while that
//! show's lock is held (the ranking's own lock is taken inside, never the
//! other way round).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{
    drawn_place, Admission, AdmitRequest, Admitted, ChangeKind, ChangeSink, Counts, Entry,
    JoinMode, JoinOutcome, JoinRequest, OpenRequest, Opening, QueueChange, RatePace, RemoveIf,
    Removed, Reseat, Reseated, Snapshot, Tally, Waiter, EPOCH_SEQ_SCALE,
};
use crate::domain::{Removal, SessionId, ShowId, Timestamp, UserId};

pub struct MemoryQueueStore {
    shows: Mutex<HashMap<ShowId, Arc<Mutex<ShowQueue>>>>,
    demand: Mutex<Demand>,
    sink: Arc<dyn ChangeSink>,
}

/// Every show with live demand (waiting + pre-queued + active), ranked:
/// the embedded twin of the Redis sorted set.
#[derive(Debug, Default)]
struct Demand {
    ranked: BTreeSet<(Reverse<u64>, ShowId)>,
    of: HashMap<ShowId, u64>,
}

impl Demand {
    fn set(&mut self, show: ShowId, demand: u64) {
        if let Some(old) = self.of.remove(&show) {
            self.ranked.remove(&(Reverse(old), show));
        }
        if demand > 0 {
            self.of.insert(show, demand);
            self.ranked.insert((Reverse(demand), show));
        }
    }
}

impl std::fmt::Debug for MemoryQueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueueStore")
            .field("shows", &lock(&self.shows).len())
            .finish()
    }
}

#[derive(Debug)]
struct ShowQueue {
    /// This process's epoch for the show: when it first used the queue (ms).
    /// A restarted process starts a new one, whose spots all sort after the
    /// spots its fans' tickets name.
    epoch: u64,
    /// The epoch's first sequence number.
    floor: u64,
    /// Admission is held until then after the first rebuilt spot.
    hold_until: Option<Timestamp>,
    version: u64,
    next_seq: u64,
    /// The line, by position (a fan's join sequence number, or the
    /// position the pre-queue's draw gave them).
    waiting: BTreeMap<u64, UserId>,
    /// Each fan in the line's position.
    positions: HashMap<UserId, u64>,
    /// The pre-queue in its drawn order ([`drawn_place`]), each fan with the
    /// position they will take in the line: increasing, so the `j`-th fan
    /// holds the `j`-th position, as in the Redis sorted set.
    prequeue: Vec<(UserId, u64)>,
    /// Whether the pre-queue was opened: later pre-queue joins go to the line.
    opened: bool,
    pace: RatePace,
    tally: Tally,
    /// Current entries (never `Entry::Gone`: that is `ended`).
    entries: HashMap<UserId, Entry>,
    active: u64,
    /// How each fan's last entry ended, for status after the fact.
    ended: HashMap<UserId, Removal>,
}

impl ShowQueue {
    fn new(now: Timestamp) -> Self {
        let epoch = u64::try_from(now.0).unwrap_or(0);
        let floor = epoch * EPOCH_SEQ_SCALE;
        Self {
            epoch,
            floor,
            hold_until: None,
            version: 0,
            next_seq: floor.saturating_sub(1),
            waiting: BTreeMap::new(),
            positions: HashMap::new(),
            prequeue: Vec::new(),
            opened: false,
            pace: RatePace::default(),
            tally: Tally::default(),
            entries: HashMap::new(),
            active: 0,
            ended: HashMap::new(),
        }
    }

    /// Fills free slots from the head ([`super::QueueStore::admit`]).
    fn admit(&mut self, out: &mut Vec<QueueChange>, req: AdmitRequest) -> Admitted {
        let now = req.now;
        let until = now.plus(req.ttl);
        let mut admitted = Vec::new();
        let held = self.hold_until.is_some_and(|t| now < t);
        let elsewhere = req.epoch != 0 && req.epoch != self.epoch;
        let unopened = !self.prequeue.is_empty();
        let mut next_at = None;
        while !held && !elsewhere && !unopened && self.active < u64::from(req.capacity) {
            let Some((_, user)) = self.waiting.first_key_value().map(|(p, u)| (*p, *u)) else {
                break;
            };
            if let Some(rate) = req.rate {
                let at = self.pace.next_at(rate, now);
                if now < at {
                    next_at = Some(at);
                    break;
                }
                self.pace.admitted(rate, now);
            }
            self.waiting.pop_first();
            self.positions.remove(&user);
            // The session is named by the fan's spot (which their ticket
            // names), whatever their place in line was.
            let seq = match self.entries.get(&user) {
                Some(Entry::Waiting { seq, .. }) => *seq,
                _ => continue,
            };
            let session = SessionId(seq);
            self.activate(out, user, session, until, Some(req.freed_at));
            admitted.push(Admission {
                user,
                session,
                until,
            });
        }
        if req.rate.is_some() && !held && !elsewhere && !unopened {
            self.pace.stopped(next_at.is_some());
        }
        Admitted {
            admissions: admitted,
            epoch: self.epoch,
            next_at,
            unopened,
        }
    }

    /// The fan's place in line (1 = next), if in the line.
    fn rank(&self, user: UserId) -> Option<u64> {
        let pos = self.positions.get(&user)?;
        // A new join is at the back: no walk over the line.
        match self.waiting.last_key_value() {
            Some((last, _)) if last == pos => Some(self.waiting.len() as u64),
            _ => Some(self.waiting.range(..=*pos).count() as u64),
        }
    }

    fn change(&mut self, out: &mut Vec<QueueChange>, kind: ChangeKind) {
        self.version += 1;
        out.push(QueueChange {
            epoch: self.epoch,
            version: self.version,
            kind,
        });
    }

    /// Puts the fan, spot `seq`, seen `now`, with no live connection, in
    /// line at `pos`; or (`draw`) into the pre-queue, at the place the draw
    /// picks in the drawn order ([`drawn_place`]), `pos` being the new place
    /// at its end (above every position in it).
    fn enqueue(
        &mut self,
        out: &mut Vec<QueueChange>,
        user: UserId,
        seq: u64,
        pos: u64,
        draw: Option<u64>,
        now: Timestamp,
    ) -> Entry {
        let entry = Entry::Waiting {
            seq,
            live: 0,
            last_seen: now,
        };
        let (pos, displaced) = match draw {
            Some(draw) => self.draw_place(user, pos, draw),
            None => {
                self.waiting.insert(pos, user);
                self.positions.insert(user, pos);
                (pos, None)
            }
        };
        self.entries.insert(user, entry);
        self.change(
            out,
            ChangeKind::Joined {
                user,
                seq,
                pos,
                prequeued: draw.is_some(),
                displaced,
            },
        );
        entry
    }

    /// One step of the pre-queue's draw: `user` takes the drawn place; the
    /// fan who held it (if any) moves to the new place at the end, `end`.
    /// Returns the position taken and the fan displaced.
    fn draw_place(&mut self, user: UserId, end: u64, draw: u64) -> (u64, Option<(UserId, u64)>) {
        let n = self.prequeue.len();
        let j = drawn_place(n, draw);
        if j == n {
            self.prequeue.push((user, end));
            return (end, None);
        }
        let (displaced, pos) = self.prequeue[j];
        self.prequeue[j] = (user, pos);
        self.prequeue.push((displaced, end));
        (pos, Some((displaced, end)))
    }

    /// Takes a waiting fan out of the line or the pre-queue.
    fn unqueue(&mut self, user: UserId) {
        match self.positions.remove(&user) {
            Some(pos) => {
                self.waiting.remove(&pos);
            }
            // Rare (a pre-queued fan who leaves or is ejected): a scan.
            None => self.prequeue.retain(|(u, _)| *u != user),
        }
    }

    fn ended(&mut self, user: UserId, reason: Removal) {
        self.ended.insert(user, reason);
        if let Some(i) = Removal::ALL.iter().position(|r| *r == reason) {
            self.tally.ended[i] += 1;
        }
    }

    /// Makes `session` the fan's active session until `until`.
    fn activate(
        &mut self,
        out: &mut Vec<QueueChange>,
        user: UserId,
        session: SessionId,
        until: Timestamp,
        freed_at: Option<Timestamp>,
    ) {
        self.entries.insert(user, Entry::Active { session, until });
        self.active += 1;
        self.tally.admitted += 1;
        self.change(
            out,
            ChangeKind::Admitted {
                user,
                session,
                until,
                freed_at,
            },
        );
    }

    /// Waiting, pre-queued and active: what the demand ranking counts.
    fn demand(&self) -> u64 {
        self.waiting.len() as u64 + self.prequeue.len() as u64 + self.active
    }

    fn entry(&self, user: UserId) -> Option<Entry> {
        self.entries
            .get(&user)
            .copied()
            .or_else(|| self.ended.get(&user).map(|r| Entry::Gone(*r)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps that are still
    // consistent per operation, so recovering the guard is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryQueueStore {
    pub fn new(sink: Arc<dyn ChangeSink>) -> Self {
        Self {
            shows: Mutex::new(HashMap::new()),
            demand: Mutex::default(),
            sink,
        }
    }

    fn show(&self, show: ShowId) -> Arc<Mutex<ShowQueue>> {
        lock(&self.shows)
            .entry(show)
            .or_insert_with(|| Arc::new(Mutex::new(ShowQueue::new(Timestamp::now()))))
            .clone()
    }

    fn existing(&self, show: ShowId) -> Option<Arc<Mutex<ShowQueue>>> {
        lock(&self.shows).get(&show).cloned()
    }

    /// Runs `f` on the show's queue and hands its changes to the sink while
    /// still holding the lock.
    fn mutate<R>(
        &self,
        show: ShowId,
        f: impl FnOnce(&mut ShowQueue, &mut Vec<QueueChange>) -> R,
    ) -> R {
        let queue = self.show(show);
        let mut q = lock(&queue);
        let mut changes = Vec::new();
        let before = q.demand();
        let result = f(&mut q, &mut changes);
        if q.demand() != before {
            lock(&self.demand).set(show, q.demand());
        }
        if !changes.is_empty() {
            self.sink.apply(show, &changes);
        }
        result
    }

    pub fn join(&self, show: ShowId, req: JoinRequest) -> JoinOutcome {
        let JoinRequest {
            user,
            now,
            mode,
            draw,
            admit,
        } = req;
        self.mutate(show, |q, out| {
            let (created, mut entry) = match q.entry(user) {
                Some(entry @ (Entry::Waiting { .. } | Entry::Active { .. })) => (false, entry),
                _ => {
                    q.next_seq += 1;
                    let seq = q.next_seq;
                    q.ended.remove(&user);
                    let draw = (mode == JoinMode::Prequeue && !q.opened).then_some(draw);
                    (true, q.enqueue(out, user, seq, seq, draw, now))
                }
            };
            let admitted = admit.map(|req| q.admit(out, req));
            if let Some(e @ Entry::Active { .. }) = q.entries.get(&user) {
                entry = *e;
            }
            JoinOutcome {
                created,
                entry,
                rank: q.rank(user),
                admitted,
            }
        })
    }

    pub fn admit(&self, show: ShowId, req: AdmitRequest) -> Admitted {
        self.mutate(show, |q, out| q.admit(out, req))
    }

    pub fn open(&self, show: ShowId, req: OpenRequest) -> Opening {
        self.mutate(show, |q, out| {
            let moved = q.prequeue.len();
            q.opened = true;
            if moved > 0 {
                for (user, pos) in std::mem::take(&mut q.prequeue) {
                    q.waiting.insert(pos, user);
                    q.positions.insert(user, pos);
                }
                q.change(out, ChangeKind::Opened);
            }
            if req.admit.is_some() {
                q.pace.anchor(req.starts_at);
            }
            let admitted = req.admit.map(|a| q.admit(out, a));
            Opening { moved, admitted }
        })
    }

    pub fn clear(&self, show: ShowId, reason: Removal) -> u64 {
        self.mutate(show, |q, out| {
            let waiting: Vec<UserId> = q
                .waiting
                .values()
                .copied()
                .chain(q.prequeue.iter().map(|(user, _)| *user))
                .collect();
            q.waiting.clear();
            q.prequeue.clear();
            q.positions.clear();
            for user in &waiting {
                q.entries.remove(user);
                q.ended(*user, reason);
            }
            if !waiting.is_empty() {
                q.change(out, ChangeKind::Cleared { reason });
            }
            waiting.len() as u64
        })
    }

    pub fn announce(&self, show: ShowId) {
        self.sink.show_changed(show);
    }

    pub fn reseat(
        &self,
        show: ShowId,
        spots: &[Reseat],
        hold: Duration,
        now: Timestamp,
    ) -> Reseated {
        self.mutate(show, |q, out| {
            let mut restored = Vec::new();
            for spot in spots {
                let user = spot.user();
                if q.entries.contains_key(&user) || q.ended.contains_key(&user) {
                    continue;
                }
                match *spot {
                    Reseat::Ended { reason, .. } => {
                        q.ended.insert(user, reason);
                        continue;
                    }
                    Reseat::Waiting { seq, pos, .. } if seq < q.floor => {
                        q.enqueue(out, user, seq, pos, None, now);
                    }
                    // Back in the pre-queue, drawn afresh (a place of this
                    // epoch at the end: above every position in it); or, if
                    // it was opened since, in line at the spot.
                    Reseat::Prequeued { seq, .. } if seq < q.floor && !q.opened => {
                        q.next_seq += 1;
                        let end = q.next_seq;
                        q.enqueue(out, user, seq, end, Some(super::draw()), now);
                    }
                    Reseat::Prequeued { seq, .. } if seq < q.floor => {
                        q.enqueue(out, user, seq, seq, None, now);
                    }
                    Reseat::Active { session, until, .. } if session.0 < q.floor && now < until => {
                        q.activate(out, user, session, until, None);
                    }
                    _ => continue,
                }
                restored.push(*spot);
            }
            if !restored.is_empty() && !hold.is_zero() && q.hold_until.is_none() {
                q.hold_until = Some(now.plus(hold));
            }
            Reseated {
                epoch: q.epoch,
                restored,
                held_for: q.hold_until.filter(|t| now < *t).map(|t| now.until(t)),
            }
        })
    }

    pub fn remove(
        &self,
        show: ShowId,
        user: UserId,
        reason: Removal,
        condition: RemoveIf,
    ) -> Option<Removed> {
        self.mutate(show, |q, out| {
            let entry = *q.entries.get(&user)?;
            let (seq, session) = match (entry, condition) {
                (Entry::Waiting { seq, .. }, RemoveIf::Any) => (seq, None),
                (
                    Entry::Waiting {
                        seq,
                        live,
                        last_seen,
                    },
                    RemoveIf::StaleWaiting { cutoff },
                ) if live == 0 && last_seen <= cutoff => (seq, None),
                (Entry::Active { session, .. }, RemoveIf::Any) => (session.0, Some(session)),
                (Entry::Active { session, .. }, RemoveIf::Session(wanted)) if session == wanted => {
                    (session.0, Some(session))
                }
                _ => return None,
            };
            q.entries.remove(&user);
            if session.is_some() {
                q.active -= 1;
            } else {
                q.unqueue(user);
            }
            q.ended(user, reason);
            q.change(
                out,
                ChangeKind::Removed {
                    user,
                    seq,
                    reason,
                    was_active: session.is_some(),
                },
            );
            Some(Removed { session })
        })
    }

    pub fn attach(&self, show: ShowId, user: UserId) -> Option<u64> {
        let queue = self.existing(show)?;
        let mut q = lock(&queue);
        match q.entries.get_mut(&user) {
            Some(Entry::Waiting { seq, live, .. }) => {
                *live += 1;
                Some(*seq)
            }
            _ => None,
        }
    }

    pub fn detach(&self, show: ShowId, user: UserId, seq: u64, now: Timestamp) {
        let Some(queue) = self.existing(show) else {
            return;
        };
        let mut q = lock(&queue);
        match q.entries.get_mut(&user) {
            Some(Entry::Waiting {
                seq: current,
                live,
                last_seen,
            }) if *current == seq => {
                *live = live.saturating_sub(1);
                *last_seen = now;
            }
            _ => {}
        }
    }

    pub fn touch(&self, show: ShowId, user: UserId, now: Timestamp) -> bool {
        let Some(queue) = self.existing(show) else {
            return false;
        };
        let mut q = lock(&queue);
        match q.entries.get_mut(&user) {
            Some(Entry::Waiting { last_seen, .. }) => {
                *last_seen = (*last_seen).max(now);
                true
            }
            _ => false,
        }
    }

    pub fn entry(&self, show: ShowId, user: UserId) -> Option<Entry> {
        let queue = self.existing(show)?;
        let q = lock(&queue);
        q.entry(user)
    }

    pub fn rank(&self, show: ShowId, user: UserId) -> Option<u64> {
        let queue = self.existing(show)?;
        let q = lock(&queue);
        q.rank(user)
    }

    /// The demand ranking: every show with live demand, busiest first.
    pub fn demand(&self) -> Vec<(ShowId, u64)> {
        lock(&self.demand)
            .ranked
            .iter()
            .map(|(Reverse(demand), show)| (*show, *demand))
            .collect()
    }

    pub fn position(&self, show: ShowId) -> (u64, u64) {
        self.existing(show).map_or((0, 0), |queue| {
            let q = lock(&queue);
            (q.epoch, q.version)
        })
    }

    pub fn snapshot(&self, show: ShowId) -> Snapshot {
        let Some(queue) = self.existing(show) else {
            return Snapshot::default();
        };
        let q = lock(&queue);
        // Each fan in line or pre-queued at `pos`, with their spot.
        let waiter = |user: UserId, pos: u64| match q.entries.get(&user) {
            Some(Entry::Waiting { seq, .. }) => Some(Waiter {
                user,
                seq: *seq,
                pos,
            }),
            _ => None,
        };
        Snapshot {
            epoch: q.epoch,
            version: q.version,
            waiting: q
                .waiting
                .iter()
                .filter_map(|(pos, user)| waiter(*user, *pos))
                .collect(),
            prequeued: q
                .prequeue
                .iter()
                .filter_map(|(user, pos)| waiter(*user, *pos))
                .collect(),
            active: q
                .entries
                .iter()
                .filter_map(|(user, slot)| match slot {
                    Entry::Active { session, until } => Some((*user, *session, *until)),
                    Entry::Waiting { .. } | Entry::Gone(_) => None,
                })
                .collect(),
            ended: q.ended.iter().map(|(u, r)| (*u, *r)).collect(),
        }
    }

    pub fn counts(&self, show: ShowId) -> Counts {
        self.existing(show)
            .map(|queue| {
                let q = lock(&queue);
                Counts {
                    active: q.active,
                    waiting: q.waiting.len() as u64,
                    prequeued: q.prequeue.len() as u64,
                }
            })
            .unwrap_or_default()
    }

    pub fn tally(&self, show: ShowId) -> Tally {
        self.existing(show)
            .map(|queue| lock(&queue).tally)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(ShowId, QueueChange)>>);

    impl ChangeSink for Recorder {
        fn apply(&self, show: ShowId, changes: &[QueueChange]) {
            lock(&self.0).extend(changes.iter().map(|c| (show, c.clone())));
        }
    }

    const S: ShowId = ShowId(1);
    const TTL: Duration = Duration::from_secs(60);

    fn join(store: &MemoryQueueStore, user: UserId, now: Timestamp, mode: JoinMode) -> JoinOutcome {
        store.join(S, JoinRequest::new(user, now, mode))
    }

    fn req(capacity: u32, now: Timestamp, epoch: u64) -> AdmitRequest {
        AdmitRequest {
            capacity,
            ttl: TTL,
            rate: None,
            now,
            freed_at: now,
            epoch,
        }
    }

    use crate::domain::AdmissionRate;

    #[test]
    fn admission_fills_to_capacity_in_join_order() {
        let sink = Arc::new(Recorder::default());
        let store = MemoryQueueStore::new(sink.clone());
        let now = Timestamp(1_000);
        for u in 1..=5 {
            assert!(join(&store, UserId(u), now, JoinMode::Line).created);
        }
        assert!(!join(&store, UserId(2), now, JoinMode::Line).created);
        let admitted = store.admit(S, req(3, now, 0)).admissions;
        let users: Vec<u64> = admitted.iter().map(|a| a.user.0).collect();
        assert_eq!(users, vec![1, 2, 3]);
        assert!(store.admit(S, req(3, now, 0)).admissions.is_empty());
        assert_eq!(
            store.counts(S),
            Counts {
                active: 3,
                waiting: 2,
                prequeued: 0
            }
        );
        let versions: Vec<u64> = lock(&sink.0).iter().map(|(_, c)| c.version).collect();
        assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_join_admits_in_its_own_step_and_answers_the_truth() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let now = Timestamp(1_000);
        let joined = |user: u64| {
            store.join(
                S,
                JoinRequest {
                    admit: Some(req(2, now, 0)),
                    ..JoinRequest::new(UserId(user), now, JoinMode::Line)
                },
            )
        };
        for u in 1..=2 {
            let j = joined(u);
            assert!(matches!(j.entry, Entry::Active { .. }), "{j:?}");
            assert_eq!(j.rank, None);
            assert_eq!(
                j.admitted.expect("admission asked").admissions[0].user,
                UserId(u)
            );
        }
        for (u, rank) in [(3, 1), (4, 2), (5, 3)] {
            let j = joined(u);
            assert!(matches!(j.entry, Entry::Waiting { .. }), "{j:?}");
            assert_eq!(j.rank, Some(rank));
            assert!(j.admitted.expect("admission asked").admissions.is_empty());
        }
        // A repeat join keeps its spot and answers its rank now.
        store.remove(S, UserId(1), Removal::Left, RemoveIf::Any);
        let again = joined(4);
        assert!(!again.created);
        assert_eq!(again.rank, Some(1));
        assert_eq!(
            again.admitted.expect("admission asked").admissions[0].user,
            UserId(3)
        );
    }

    #[test]
    fn removals_respect_their_condition() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let now = Timestamp(1_000);
        join(&store, UserId(1), now, JoinMode::Line);
        join(&store, UserId(2), now, JoinMode::Line);
        let a = store.admit(S, req(1, now, 0)).admissions[0];
        // A stale session id never ends the current session.
        assert_eq!(
            store.remove(
                S,
                a.user,
                Removal::Expired,
                RemoveIf::Session(SessionId(99))
            ),
            None
        );
        // A connected waiting fan is not abandoned; a disconnected one is,
        // once the cutoff has passed their last sighting.
        let seq = store.attach(S, UserId(2)).expect("waiting entry");
        let stale = RemoveIf::StaleWaiting {
            cutoff: Timestamp(5_000),
        };
        assert_eq!(store.remove(S, UserId(2), Removal::Abandoned, stale), None);
        // A detach for an older entry of the same fan changes nothing.
        store.detach(S, UserId(2), seq + 100, Timestamp(6_000));
        assert_eq!(store.remove(S, UserId(2), Removal::Abandoned, stale), None);
        store.detach(S, UserId(2), seq, Timestamp(6_000));
        assert_eq!(store.remove(S, UserId(2), Removal::Abandoned, stale), None);
        let later = RemoveIf::StaleWaiting {
            cutoff: Timestamp(6_000),
        };
        assert!(store
            .remove(S, UserId(2), Removal::Abandoned, later)
            .is_some());
        assert_eq!(
            store.entry(S, UserId(2)),
            Some(Entry::Gone(Removal::Abandoned))
        );
        assert_eq!(
            store.remove(S, a.user, Removal::Expired, RemoveIf::Session(a.session)),
            Some(Removed {
                session: Some(a.session)
            })
        );
        assert_eq!(store.counts(S), Counts::default());
        // Rejoining after an ended entry is a new spot.
        assert!(join(&store, UserId(1), now, JoinMode::Line).created);
    }

    #[test]
    fn a_rebuild_puts_back_only_what_is_missing_and_from_an_earlier_epoch() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let now = Timestamp::now();
        // The current epoch's spots start at its floor.
        assert!(join(&store, UserId(9), now, JoinMode::Line).created);
        let Some(Entry::Waiting { seq: newer, .. }) = store.entry(S, UserId(9)) else {
            panic!("waiting");
        };
        let older = newer - 1_000_000;
        let spots = [
            Reseat::Waiting {
                user: UserId(2),
                seq: older + 2,
                pos: older + 2,
            },
            Reseat::Waiting {
                user: UserId(1),
                seq: older + 1,
                pos: older + 1,
            },
            // Has an entry: never overwritten.
            Reseat::Waiting {
                user: UserId(9),
                seq: older + 3,
                pos: older + 3,
            },
            // A spot of the current epoch was never lost.
            Reseat::Waiting {
                user: UserId(4),
                seq: newer + 5,
                pos: newer + 5,
            },
            Reseat::Active {
                user: UserId(5),
                session: SessionId(older),
                until: now.plus(TTL),
            },
        ];
        let hold = Duration::from_secs(5);
        let done = store.reseat(S, &spots, hold, now);
        assert_eq!(
            done.restored.iter().map(|s| s.user().0).collect::<Vec<_>>(),
            vec![2, 1, 5]
        );
        assert_eq!(done.held_for, Some(hold));
        // Twice is a no-op.
        assert!(store.reseat(S, &spots, hold, now).restored.is_empty());
        // Original order, ahead of the later join; the restored session
        // counts against capacity; admission waits out the hold.
        assert_eq!(store.rank(S, UserId(1)), Some(1));
        assert_eq!(store.rank(S, UserId(2)), Some(2));
        assert_eq!(store.rank(S, UserId(9)), Some(3));
        assert!(store.admit(S, req(2, now, 0)).admissions.is_empty());
        let later = now.plus(hold);
        let admitted = store.admit(S, req(2, later, 0)).admissions;
        assert_eq!(
            admitted.iter().map(|a| a.user.0).collect::<Vec<_>>(),
            vec![1]
        );
        // A node that knows another epoch admits nobody.
        let epoch = store.snapshot(S).epoch;
        assert!(store
            .admit(S, req(5, later, epoch + 1))
            .admissions
            .is_empty());
        assert_eq!(store.admit(S, req(5, later, epoch)).admissions.len(), 2);
    }

    #[test]
    fn the_rate_spaces_admissions_and_caps_any_minute() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let rate = AdmissionRate::new(6);
        for u in 1..=20 {
            join(&store, UserId(u), Timestamp(0), JoinMode::Line);
        }
        let admit = |now: i64| {
            store.admit(
                S,
                AdmitRequest {
                    rate,
                    ..req(100, Timestamp(now), 0)
                },
            )
        };
        // 6 a minute: one every 10 s.
        let first = admit(1_000);
        assert_eq!(first.admissions.len(), 1);
        assert_eq!(first.next_at, Some(Timestamp(11_000)));
        assert!(admit(10_999).admissions.is_empty());
        // A timer a little late keeps the grid: the next slot stays 21 s.
        assert_eq!(admit(11_400).next_at, Some(Timestamp(21_000)));
        let mut admitted = 2;
        for t in (21_000..=200_000).step_by(250) {
            admitted += admit(t).admissions.len();
            let in_window = store_recent(&store)
                .iter()
                .filter(|a| t - **a < 60_000)
                .count();
            assert!(
                in_window <= 6,
                "{in_window} admissions in the minute before {t}"
            );
        }
        assert_eq!(admitted, 20);
    }

    fn store_recent(store: &MemoryQueueStore) -> Vec<i64> {
        let queue = store.existing(S).expect("show");
        let q = lock(&queue);
        q.pace.recent.iter().copied().collect()
    }

    #[test]
    fn the_prequeue_opens_once_at_the_head_of_the_line() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let now = Timestamp(1_000);
        for u in 1..=3 {
            join(&store, UserId(u), now, JoinMode::Prequeue);
        }
        assert_eq!(store.counts(S).prequeued, 3);
        // Not opened: nobody is admitted, and the caller is told why.
        let blocked = store.admit(S, req(10, now, 0));
        assert!(blocked.unopened && blocked.admissions.is_empty());
        let open = || {
            store.open(
                S,
                OpenRequest {
                    starts_at: now,
                    admit: None,
                },
            )
        };
        let opened = |moved| Opening {
            moved,
            admitted: None,
        };
        assert_eq!(open(), opened(3));
        assert_eq!(open(), opened(0));
        // A pre-queue join after the opening goes to the line, behind.
        join(&store, UserId(4), now, JoinMode::Prequeue);
        assert_eq!(store.counts(S).prequeued, 0);
        assert_eq!(store.rank(S, UserId(4)), Some(4));
        let admitted = store.admit(S, req(10, now, 0)).admissions;
        assert_eq!(admitted.len(), 4);
        assert_eq!(admitted[3].user, UserId(4));
        // Each session is named by the fan's spot, whatever their place.
        for a in &admitted {
            let spot = a.user.0 + q_floor(&store) - 1;
            assert_eq!(a.session.0, spot);
        }
    }

    fn q_floor(store: &MemoryQueueStore) -> u64 {
        lock(&store.existing(S).expect("show")).floor
    }

    #[test]
    fn a_clear_lets_the_line_go_and_keeps_the_active() {
        let store = MemoryQueueStore::new(Arc::new(Recorder::default()));
        let now = Timestamp(1_000);
        for u in 1..=3 {
            join(&store, UserId(u), now, JoinMode::Line);
        }
        store.admit(S, req(1, now, 0));
        join(&store, UserId(9), now, JoinMode::Prequeue);
        assert_eq!(store.clear(S, Removal::SoldOut), 3);
        assert_eq!(
            store.entry(S, UserId(9)),
            Some(Entry::Gone(Removal::SoldOut))
        );
        assert_eq!(
            store.entry(S, UserId(2)),
            Some(Entry::Gone(Removal::SoldOut))
        );
        assert!(matches!(
            store.entry(S, UserId(1)),
            Some(Entry::Active { .. })
        ));
        assert_eq!(store.tally(S).ended(Removal::SoldOut), 3);
        assert_eq!(store.tally(S).admitted, 1);
    }
}
