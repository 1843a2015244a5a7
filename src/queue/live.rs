//! The node-local live view of every show's queue, fed by the store's
//! ordered [`QueueChange`]s.
//!
//! It answers "what is this fan's exact rank" from a [`RankIndex`] and wakes
//! connections without touching the store:
//! - a per-show epoch that bumps when ranks move; each waiting connection
//!   re-reads its own rank when woken, so a promotion costs one increment
//!   here, not one message per waiting fan, and a slow connection only ever
//!   sees the latest epoch (coalescing for free); the bump reaches the
//!   connections a chunk at a time ([`super::fanout`]), so the tasks an
//!   admission wakes never wait behind all of them;
//! - a per-fan channel for the events that must not be coalesced away
//!   (admitted, removed, expiring), delivered *before* the epoch bump so the
//!   admitted fan's task is scheduled ahead of the rank fan-out.
//!
//! With the embedded store the view is exact: changes arrive in order inside
//! each mutation. With a shared store they arrive over publish/subscribe, so
//! a view starts from a [`Snapshot`], buffers a change that arrives ahead of
//! a gap, and resynchronises from a fresh snapshot if the gap does not close
//! within [`GAP_PATIENCE`] or the subscription was lost.
//!
//! Every change and snapshot names the store's epoch for the show. A view
//! that sees a newer epoch than the one it follows (or a snapshot of none)
//! knows the store lost the queue: it keeps what it remembers, tells no fan
//! anything, and reports [`Report::Lost`]; the queue service puts the
//! remembered spots back ([`LiveQueue::remembered`]) and the view then
//! follows the new epoch ([`LiveQueue::reseated`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use super::fanout::Fanout;
use super::mailbox;
use super::ranks::RankIndex;
use super::Place;
use crate::domain::{Removal, SessionId, ShowId, Timestamp, UserId};
use crate::store::{ChangeKind, ChangeSink, QueueChange, Reseat, Snapshot};
use crate::telemetry::metrics as m;

/// Events for one fan that must each be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEvent {
    Admitted {
        session: SessionId,
        until: Timestamp,
        /// When the slot was freed; unknown when the view learnt of the
        /// admission from a snapshot.
        freed_at: Option<Timestamp>,
    },
    Removed(Removal),
    Expiring {
        session: SessionId,
        seconds_left: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Member {
    Waiting {
        /// The spot (join sequence number).
        seq: u64,
        /// The place in line it sorts by (see [`crate::store::Waiter`]).
        pos: u64,
        /// In the pre-queue: not in the rank index until the opening.
        prequeued: bool,
        /// When this view saw the join (unknown if it came from a snapshot).
        joined: Option<Timestamp>,
    },
    Active {
        session: SessionId,
        until: Timestamp,
        /// How long the fan waited, if the view saw the join.
        waited: Option<Duration>,
    },
}

/// Per-fan event buffer. Few events ever go to one fan (admitted, expiring,
/// removed), so a small bound only trips for a connection that is stuck, and
/// that connection is cut off (see [`LiveQueue::notify`]) rather than allowed
/// to grow a backlog or miss an event.
const MEMBER_EVENT_BUFFER: usize = 4;

/// How long a gap in a shared store's change stream may stay open before
/// the view is rebuilt from a snapshot. Changes normally arrive within a
/// millisecond, but a node's own script replies can overtake its
/// subscription by much more on saturated cores (an opening's first rank
/// fan-out); and a snapshot grows with the line (0.6–0.9 s of Redis at
/// 100,000 fans, during which every other node's calls wait), so a gap
/// that fills by itself must not trigger one. A gap this old means a
/// message was lost.
pub const GAP_PATIENCE: Duration = Duration::from_secs(2);

/// Admissions kept for the rate estimate, and how old they may be.
const RATE_SAMPLES: usize = 32;
const RATE_WINDOW: Duration = Duration::from_secs(600);

/// The front of the line for the estimate accuracy metric: the estimate a
/// fan is given when first this close is the one that matters most.
pub const FRONT_RANK: u64 = 100;

/// Estimates this view gave one waiting fan (join answers, frames, polls),
/// kept until the fan is admitted, when each becomes an accuracy sample
/// ([`crate::telemetry::metrics::ESTIMATE_ACCURACY`]): the wait that
/// followed ÷ the wait estimated. Only the node that gave an estimate holds
/// it, so each is counted once however many nodes follow the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Given {
    /// In the join's answer.
    join: Option<Estimate>,
    /// The first within [`FRONT_RANK`] of the front.
    front: Option<Estimate>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    seconds: u64,
    at: Timestamp,
}

impl Estimate {
    /// Actual ÷ estimated; 1 is exact, 2 took twice as long.
    fn accuracy(&self, admitted: Timestamp) -> f64 {
        self.at.until(admitted).as_secs_f64() / self.seconds.max(1) as f64
    }
}

impl Given {
    /// The samples an admission at `admitted` makes, by `at` label.
    fn samples(&self, admitted: Timestamp) -> Vec<(&'static str, f64)> {
        [("join", self.join), ("rank_100", self.front)]
            .into_iter()
            .filter_map(|(at, e)| Some((at, e?.accuracy(admitted))))
            .collect()
    }
}

/// What every waiting connection of a show follows besides its rank: the
/// show's state as this node last read it ([`super::QueueService`] sets it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShowSignal {
    /// Paused: fans keep their places, nobody is admitted, no ETA.
    pub paused: bool,
    /// When a pre-queue's line forms.
    pub starts_at: Option<Timestamp>,
    /// Every seat left is held by an admitted fan.
    pub all_seats_held: bool,
    /// The operator's notice to the show's fans, waiting or admitted.
    pub notice: Option<Arc<str>>,
}

#[derive(Debug)]
pub struct LiveQueue {
    state: RwLock<LiveState>,
    epoch: Fanout<u64>,
    signal: Fanout<ShowSignal>,
}

#[derive(Debug, Default)]
struct LiveState {
    /// The store epoch of the queue this view follows; `None` until it has
    /// seen one.
    epoch: Option<u64>,
    /// The store lost the queue this view holds (a newer epoch appeared):
    /// the members are kept, untouched, until they are put back.
    lost: bool,
    /// While lost: the newest epoch seen, whose changes are buffered.
    lost_to: u64,
    version: u64,
    /// False until the view has a starting point (a snapshot, or the
    /// embedded store's version 0); changes only buffer until then.
    synced: bool,
    /// The version at which a gap was noticed, while it is open.
    gap_at: Option<u64>,
    /// Changes that arrived ahead of a gap (possible with a shared store's
    /// publish/subscribe; never with the embedded store).
    pending: BTreeMap<u64, QueueChange>,
    index: RankIndex,
    members: HashMap<UserId, Member>,
    ended: HashMap<UserId, Removal>,
    listeners: HashMap<UserId, Vec<(u64, mailbox::Sender<MemberEvent>)>>,
    next_listener: u64,
    admissions: VecDeque<Timestamp>,
    /// Estimates given to fans still waiting. A mutex of its own: places
    /// are computed under the view's read lock, and giving one is noted.
    given: Mutex<HashMap<UserId, Given>>,
}

impl LiveState {
    /// Admissions per second over the recent window, once there are at least
    /// two admissions a second or more apart.
    fn admission_rate(&self, now: Timestamp) -> Option<f64> {
        let oldest = self
            .admissions
            .iter()
            .find(|t| now.minus(RATE_WINDOW) <= **t)?;
        let newest = self.admissions.back()?;
        let span = oldest.until(*newest).as_secs_f64();
        let count = self.admissions.iter().filter(|t| *t >= oldest).count();
        (count >= 2 && span >= 1.0).then(|| (count - 1) as f64 / span)
    }

    /// A waiting fan's place at `rank`, with the estimate of when.
    fn waiting(&self, rank: u64, now: Timestamp, signal: &ShowSignal) -> Place {
        // Paused: no admissions, so no estimate of when.
        let eta_seconds = match signal.paused {
            true => None,
            false => self
                .admission_rate(now)
                .map(|rate| (rank as f64 / rate).ceil() as u64),
        };
        Place::Waiting {
            rank,
            eta_seconds,
            paused: signal.paused,
        }
    }

    /// Notes the estimate of a place given to `user` (`joined`: in the
    /// join's answer).
    fn gave(&self, user: UserId, place: &Place, now: Timestamp, joined: bool) {
        let Place::Waiting {
            rank,
            eta_seconds: Some(seconds),
            ..
        } = *place
        else {
            return;
        };
        if !joined && rank > FRONT_RANK {
            return;
        }
        let estimate = Estimate { seconds, at: now };
        let mut given = self.given.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = given.entry(user).or_default();
        if joined {
            entry.join.get_or_insert(estimate);
        }
        if rank <= FRONT_RANK {
            entry.front.get_or_insert(estimate);
        }
    }

    fn place(&self, user: UserId, now: Timestamp, signal: &ShowSignal) -> Place {
        match self.members.get(&user) {
            Some(Member::Waiting {
                prequeued: true, ..
            }) => Place::Prequeued {
                starts_at: signal.starts_at,
            },
            Some(Member::Waiting { pos, .. }) => {
                self.waiting(self.index.rank(*pos).unwrap_or(0), now, signal)
            }
            Some(Member::Active { session, until, .. }) => Place::Active {
                session: *session,
                until: *until,
            },
            None => self
                .ended
                .get(&user)
                .map_or(Place::NotInQueue, |r| Place::Gone(*r)),
        }
    }
}

/// What a connection holds to follow one fan.
#[derive(Debug)]
pub struct Listener {
    pub events: mailbox::Receiver<MemberEvent>,
    pub epoch: watch::Receiver<u64>,
    pub signal: watch::Receiver<ShowSignal>,
    queue: Arc<LiveQueue>,
    user: UserId,
    id: u64,
}

impl Listener {
    pub fn place(&self) -> Place {
        self.queue.place(self.user)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut state = self.queue.write();
        if let Some(list) = state.listeners.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                state.listeners.remove(&self.user);
            }
        }
    }
}

impl LiveQueue {
    /// `runtime`: where the wake-ups of every connection are swept
    /// ([`Fanout`]).
    fn new(synced: bool, runtime: Option<Handle>) -> Self {
        Self {
            state: RwLock::new(LiveState {
                synced,
                ..LiveState::default()
            }),
            epoch: Fanout::new(0, runtime.clone()),
            signal: Fanout::new(ShowSignal::default(), runtime),
        }
    }

    /// Sets what the show's waiting connections follow; they hear of it
    /// only if it changed.
    pub fn set_signal(&self, signal: ShowSignal) {
        self.signal.send_if_modified(|s| {
            let changed = *s != signal;
            *s = signal;
            changed
        });
    }

    pub fn signal(&self) -> ShowSignal {
        self.signal.get()
    }

    /// The version a gap has been open at, if one is.
    pub fn gap_at(&self) -> Option<u64> {
        self.read().gap_at
    }

    /// The store epoch this view follows, 0 if none yet (or while the queue
    /// it held is lost and not yet put back).
    pub fn epoch(&self) -> u64 {
        let state = self.read();
        match state.lost {
            true => 0,
            false => state.epoch.unwrap_or(0),
        }
    }

    /// Whether the store lost the queue this view holds and it is not put
    /// back yet.
    pub fn is_lost(&self) -> bool {
        self.read().lost
    }

    /// What this view remembers of a queue the store lost, to put back:
    /// `None` unless it is lost. Sessions already over are left out.
    pub fn remembered(&self) -> Option<Vec<Reseat>> {
        let state = self.read();
        if !state.lost {
            return None;
        }
        let now = Timestamp::now();
        let spots = state
            .members
            .iter()
            .filter_map(|(user, member)| match *member {
                Member::Waiting {
                    seq,
                    prequeued: true,
                    ..
                } => Some(Reseat::Prequeued { user: *user, seq }),
                Member::Waiting { seq, pos, .. } => Some(Reseat::Waiting {
                    user: *user,
                    seq,
                    pos,
                }),
                Member::Active { session, until, .. } => (now < until).then_some(Reseat::Active {
                    user: *user,
                    session,
                    until,
                }),
            });
        // How spots ended goes back too, so an old ticket or token of a fan
        // who left or paid does not seat them again.
        let ended = state
            .ended
            .iter()
            .filter(|(user, _)| !state.members.contains_key(user))
            .map(|(user, reason)| Reseat::Ended {
                user: *user,
                reason: *reason,
            });
        Some(spots.chain(ended).collect())
    }

    /// Whether this view knows the fan's last spot ended (and no newer one
    /// began): an old ticket or token of theirs must not put it back.
    pub fn ended(&self, user: UserId) -> bool {
        let state = self.read();
        !state.members.contains_key(&user) && state.ended.contains_key(&user)
    }

    /// One fan's remembered spot while the view is lost.
    pub fn remembered_spot(&self, user: UserId) -> Option<Reseat> {
        let state = self.read();
        if !state.lost {
            return None;
        }
        match *state.members.get(&user)? {
            Member::Waiting {
                seq,
                prequeued: true,
                ..
            } => Some(Reseat::Prequeued { user, seq }),
            Member::Waiting { seq, pos, .. } => Some(Reseat::Waiting { user, seq, pos }),
            Member::Active { session, until, .. } => Some(Reseat::Active {
                user,
                session,
                until,
            }),
        }
    }

    /// The remembered spots are back in the store's `epoch`: follow it (from
    /// the snapshot the caller fetches next).
    pub fn reseated(&self, epoch: u64) {
        let mut state = self.write();
        state.epoch = Some(epoch);
        state.lost = false;
        state.synced = false;
        state.version = 0;
        state.gap_at = None;
        state.pending.retain(|_, c| c.epoch == epoch);
    }

    fn read(&self) -> RwLockReadGuard<'_, LiveState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, LiveState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fan's place, to tell them (an estimate in it is noted for the
    /// accuracy metric).
    pub fn place(&self, user: UserId) -> Place {
        let now = Timestamp::now();
        let state = self.read();
        let place = self.signal.with(|signal| state.place(user, now, signal));
        state.gave(user, &place, now, false);
        place
    }

    /// The place of `user`, whom the store ranked `rank` in line as they
    /// joined (the join's answer; `first`: a new spot, not a repeat join),
    /// with this view's estimate of when.
    pub fn joined_at(&self, user: UserId, rank: u64, first: bool) -> Place {
        let now = Timestamp::now();
        let state = self.read();
        let place = self.signal.with(|signal| state.waiting(rank, now, signal));
        state.gave(user, &place, now, first);
        place
    }

    /// Fans in the pre-queue, as this view knows.
    pub fn prequeued(&self) -> u64 {
        self.read()
            .members
            .values()
            .filter(|m| {
                matches!(
                    m,
                    Member::Waiting {
                        prequeued: true,
                        ..
                    }
                )
            })
            .count() as u64
    }

    /// The fan's current spot (its entry's join sequence number) as far as
    /// this view knows.
    pub fn spot(&self, user: UserId) -> Option<u64> {
        match self.read().members.get(&user)? {
            Member::Waiting { seq, .. } => Some(*seq),
            Member::Active { session, .. } => Some(session.0),
        }
    }

    /// How long the fan has waited (still waiting) or waited (admitted), as
    /// far as this view saw their join.
    pub fn waited(&self, user: UserId, now: Timestamp) -> Option<Duration> {
        match self.read().members.get(&user)? {
            Member::Waiting { joined, .. } => joined.map(|at| at.until(now)),
            Member::Active { waited, .. } => *waited,
        }
    }

    pub fn waiting(&self) -> u64 {
        self.read().index.len() as u64
    }

    /// Sessions this view holds as active whose time is up at `now`.
    fn overdue(&self, now: Timestamp) -> Vec<(UserId, SessionId)> {
        self.read()
            .members
            .iter()
            .filter_map(|(user, member)| match member {
                Member::Active { session, until, .. } if *until <= now => Some((*user, *session)),
                _ => None,
            })
            .collect()
    }

    /// Registers a listener and returns it with the fan's place at the moment of
    /// registration, so no change can fall between the two.
    pub fn listen(self: &Arc<Self>, user: UserId) -> (Listener, Place) {
        let (tx, rx) = mailbox::mailbox(MEMBER_EVENT_BUFFER);
        let mut state = self.write();
        state.next_listener += 1;
        let id = state.next_listener;
        state.listeners.entry(user).or_default().push((id, tx));
        let place = self
            .signal
            .with(|signal| state.place(user, Timestamp::now(), signal));
        // Subscribed under the lock: a change applied after this read bumps
        // the epoch after this subscription, so it is seen.
        let epoch = self.epoch.subscribe();
        let signal = self.signal.subscribe();
        drop(state);
        let listener = Listener {
            events: rx,
            epoch,
            signal,
            queue: self.clone(),
            user,
            id,
        };
        (listener, place)
    }

    /// Delivers an event to every connection of `user` on this node. A
    /// connection whose buffer is full is not reading at all; it is cut off
    /// (its channel closes) rather than allowed to miss an event silently.
    pub fn notify(&self, user: UserId, event: MemberEvent) {
        let mut stuck = Vec::new();
        {
            let state = self.read();
            let Some(list) = state.listeners.get(&user) else {
                return;
            };
            for (id, tx) in list {
                if let Err(mailbox::TrySendError::Full) = tx.try_send(event) {
                    stuck.push(*id);
                }
            }
        }
        if !stuck.is_empty() {
            let mut state = self.write();
            if let Some(list) = state.listeners.get_mut(&user) {
                list.retain(|(id, _)| !stuck.contains(id));
            }
        }
    }

    /// Buffers changes and applies those that are next in version order.
    fn apply(&self, changes: &[QueueChange]) -> Applied {
        let mut state = self.write();
        let mut out = Applied::default();
        for change in changes {
            if !state.follows(change.epoch, &mut out) {
                continue;
            }
            if state.lost || change.version > state.version {
                state.pending.insert(change.version, change.clone());
            }
        }
        if state.synced {
            state.drain_pending(&mut out);
            if state.pending.is_empty() {
                state.gap_at = None;
            } else if state.gap_at.is_none() {
                state.gap_at = Some(state.version);
                out.gap = Some(state.version);
            }
        }
        drop(state);
        out
    }

    /// Replaces the view with `snapshot` (changes buffered past it are then
    /// applied). Fans with connections here are told what changed for them
    /// while the view was out of step.
    fn reset(&self, snapshot: Snapshot) -> Applied {
        let mut state = self.write();
        let mut out = Applied::default();
        match (state.lost, state.epoch) {
            (true, Some(known)) if known == snapshot.epoch => state.lost = false,
            // Still lost: what the view remembers is not back yet.
            (true, _) => {
                out.lost = true;
                return out;
            }
            (false, Some(known)) if known != snapshot.epoch => {
                state.lose(snapshot.epoch, &mut out);
                return out;
            }
            (false, None) if snapshot.epoch != 0 => state.epoch = Some(snapshot.epoch),
            _ => {}
        }
        out.ranks_moved = true;
        let mut members = HashMap::with_capacity(snapshot.waiting.len() + snapshot.active.len());
        let mut index = RankIndex::new();
        let joined_at = |user: &UserId, seq: u64| match state.members.get(user) {
            Some(Member::Waiting { seq: s, joined, .. }) if *s == seq => *joined,
            _ => None,
        };
        for w in &snapshot.waiting {
            index.insert(w.pos);
            let member = Member::Waiting {
                seq: w.seq,
                pos: w.pos,
                prequeued: false,
                joined: joined_at(&w.user, w.seq),
            };
            members.insert(w.user, member);
        }
        for w in &snapshot.prequeued {
            let member = Member::Waiting {
                seq: w.seq,
                pos: w.pos,
                prequeued: true,
                joined: joined_at(&w.user, w.seq),
            };
            members.insert(w.user, member);
        }
        for (user, session, until) in &snapshot.active {
            members.insert(
                *user,
                Member::Active {
                    session: *session,
                    until: *until,
                    waited: None,
                },
            );
            out.sessions.push((*user, *session, *until));
        }
        let ended: HashMap<UserId, Removal> = snapshot.ended.iter().copied().collect();
        for user in state.listeners.keys() {
            match (state.members.get(user), members.get(user)) {
                (old, Some(Member::Active { session, until, .. })) if !matches!(old, Some(Member::Active { session: s, .. }) if s == session) =>
                {
                    out.events.push((
                        *user,
                        MemberEvent::Admitted {
                            session: *session,
                            until: *until,
                            freed_at: None,
                        },
                    ));
                }
                (Some(old), None) => {
                    // Ended without a record the snapshot carries: a session
                    // past its end expired (it may have ended while a lost
                    // queue was put back); anything else left.
                    let reason = ended.get(user).copied().unwrap_or(match old {
                        Member::Active { until, .. } if *until <= Timestamp::now() => {
                            Removal::Expired
                        }
                        _ => Removal::Left,
                    });
                    out.events.push((*user, MemberEvent::Removed(reason)));
                }
                _ => {}
            }
        }
        state.index = index;
        state.members = members;
        state.ended = ended;
        let LiveState { given, members, .. } = &mut *state;
        given
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|user, _| matches!(members.get(user), Some(Member::Waiting { .. })));
        state.version = snapshot.version;
        state.synced = true;
        state.gap_at = None;
        // Keep only the buffered changes of the snapshot's epoch newer than
        // the snapshot.
        state
            .pending
            .retain(|_, c| c.epoch == snapshot.epoch || c.epoch == 0);
        state.pending = state.pending.split_off(&(snapshot.version + 1));
        state.drain_pending(&mut out);
        if !state.pending.is_empty() {
            state.gap_at = Some(state.version);
            out.gap = Some(state.version);
        }
        drop(state);
        out
    }

    /// Puts a view that was out of step (its subscription was re-made) back
    /// in step without a snapshot, if it missed nothing: the store is at
    /// `epoch` and `version`, and every change after the view's last one up
    /// to `version` is buffered here (later ones arrive on the new
    /// subscription, made before the store was asked). `None` otherwise.
    fn resume(&self, epoch: u64, version: u64) -> Option<Applied> {
        let mut state = self.write();
        if state.lost || state.epoch != Some(epoch) || version < state.version {
            return None;
        }
        if !(state.version + 1..=version).all(|v| state.pending.contains_key(&v)) {
            return None;
        }
        let mut out = Applied::default();
        state.synced = true;
        state.gap_at = None;
        state.drain_pending(&mut out);
        if !state.pending.is_empty() {
            state.gap_at = Some(state.version);
            out.gap = Some(state.version);
        }
        Some(out)
    }

    /// Marks the view out of step: changes buffer until the next snapshot.
    fn unsync(&self) {
        self.write().synced = false;
    }

    /// A store call answered with the show's `epoch` (0: the store holds
    /// nothing for it): notices a lost queue like a change would.
    fn observe(&self, epoch: u64) -> Applied {
        let mut state = self.write();
        let mut out = Applied::default();
        match (state.lost, state.epoch) {
            (false, Some(known)) if known != epoch => state.lose(epoch, &mut out),
            _ => {}
        }
        out
    }
}

/// What a view tells the queue service, which acts on it (see
/// [`super::jobs`]): the view computes, the service schedules and fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The show's view needs a snapshot to start from, or to start again
    /// from (shared stores only).
    Resync(ShowId),
    /// A session is active: learnt from an admission or a snapshot. Every
    /// node schedules its expiry (the store lets one of them act).
    Session {
        show: ShowId,
        user: UserId,
        session: SessionId,
        until: Timestamp,
    },
    /// A gap opened in a shared store's change stream at `version`.
    Gap { show: ShowId, version: u64 },
    /// The store lost the show's queue: put back what the view remembers.
    Lost(ShowId),
    /// The shared store's change stream was re-established after it
    /// dropped: the store was unreachable for a while.
    Resubscribed,
    /// A show's definition or state changed: read it again.
    ShowChanged(ShowId),
}

/// What applying changes produced, to act on outside the view's lock.
#[derive(Debug, Default)]
struct Applied {
    events: Vec<(UserId, MemberEvent)>,
    /// Sessions that need their expiry timers on this node.
    sessions: Vec<(UserId, SessionId, Timestamp)>,
    ranks_moved: bool,
    /// A gap opened at this version.
    gap: Option<u64>,
    /// The store lost the queue the view holds.
    lost: bool,
    /// The view cannot follow a change (an opening of a pre-queue it does
    /// not hold): a snapshot must replace it.
    resync: bool,
}

impl LiveState {
    /// Whether a change of `epoch` belongs to the queue this view follows
    /// (0: a change from a node that names none). A newer epoch means the
    /// store lost the queue; an older one is a straggler from before a loss
    /// the view has moved past.
    fn follows(&mut self, epoch: u64, out: &mut Applied) -> bool {
        if self.lost {
            if epoch > self.lost_to {
                self.lost_to = epoch;
                self.pending.clear();
            }
            return epoch == self.lost_to;
        }
        match self.epoch {
            _ if epoch == 0 => true,
            None => {
                // A view that has not synchronised yet learns its epoch from
                // the snapshot (buffered changes of others are dropped then).
                if self.synced {
                    self.epoch = Some(epoch);
                }
                true
            }
            Some(known) if epoch == known => true,
            Some(known) if epoch < known => false,
            Some(_) => {
                self.lose(epoch, out);
                true
            }
        }
    }

    /// The store lost the queue: keep the members as they are (no fan is
    /// told anything), buffer only the new epoch's changes, and report.
    fn lose(&mut self, to: u64, out: &mut Applied) {
        if !self.lost {
            self.lost = true;
            self.synced = false;
            self.gap_at = None;
            self.pending.clear();
            out.lost = true;
        }
        self.lost_to = to;
    }

    fn drain_pending(&mut self, out: &mut Applied) {
        loop {
            let next = self.version + 1;
            let Some(change) = self.pending.remove(&next) else {
                break;
            };
            self.version = next;
            match change.kind {
                ChangeKind::Joined {
                    user,
                    seq,
                    pos,
                    prequeued,
                    displaced,
                } => {
                    if let Some((other, end)) = displaced {
                        // The draw moved this pre-queued fan to the end of
                        // the drawn order. A view that does not hold them
                        // there cannot follow the draw: it resynchronises.
                        match self.members.get_mut(&other) {
                            Some(Member::Waiting {
                                pos: moved,
                                prequeued: true,
                                ..
                            }) => *moved = end,
                            _ => out.resync = true,
                        }
                    }
                    if !prequeued {
                        self.index.insert(pos);
                    }
                    self.members.insert(
                        user,
                        Member::Waiting {
                            seq,
                            pos,
                            prequeued,
                            joined: Some(Timestamp::now()),
                        },
                    );
                    self.ended.remove(&user);
                }
                ChangeKind::Opened => {
                    // The fans keep the positions the draw gave them.
                    for member in self.members.values_mut() {
                        if let Member::Waiting {
                            pos,
                            prequeued: prequeued @ true,
                            ..
                        } = member
                        {
                            *prequeued = false;
                            self.index.insert(*pos);
                        }
                    }
                    out.ranks_moved = true;
                }
                ChangeKind::Cleared { reason } => {
                    let waiting: Vec<UserId> = self
                        .members
                        .iter()
                        .filter(|(_, m)| matches!(m, Member::Waiting { .. }))
                        .map(|(u, _)| *u)
                        .collect();
                    let given = self.given.get_mut().unwrap_or_else(PoisonError::into_inner);
                    for user in waiting {
                        given.remove(&user);
                        self.members.remove(&user);
                        self.ended.insert(user, reason);
                        if self.listeners.contains_key(&user) {
                            out.events.push((user, MemberEvent::Removed(reason)));
                        }
                    }
                    self.index = RankIndex::new();
                    out.ranks_moved = true;
                }
                ChangeKind::Admitted {
                    user,
                    session,
                    until,
                    freed_at,
                } => {
                    match self.members.get(&user) {
                        Some(Member::Waiting { pos, .. }) => self.index.remove(*pos),
                        _ => self.index.remove(session.0),
                    };
                    let now = Timestamp::now();
                    let given = self.given.get_mut().unwrap_or_else(PoisonError::into_inner);
                    if let Some(given) = given.remove(&user) {
                        for (at, ratio) in given.samples(now) {
                            metrics::histogram!(m::ESTIMATE_ACCURACY, "at" => at).record(ratio);
                        }
                    }
                    let waited = match self.members.get(&user) {
                        Some(Member::Waiting {
                            joined: Some(at), ..
                        }) => Some(at.until(now)),
                        _ => None,
                    };
                    self.members.insert(
                        user,
                        Member::Active {
                            session,
                            until,
                            waited,
                        },
                    );
                    self.admissions.push_back(Timestamp::now());
                    if self.admissions.len() > RATE_SAMPLES {
                        self.admissions.pop_front();
                    }
                    out.ranks_moved = true;
                    out.sessions.push((user, session, until));
                    out.events.push((
                        user,
                        MemberEvent::Admitted {
                            session,
                            until,
                            freed_at,
                        },
                    ));
                }
                ChangeKind::Removed {
                    user,
                    seq,
                    reason,
                    was_active,
                } => {
                    if !was_active {
                        let pos = match self.members.get(&user) {
                            Some(Member::Waiting { pos, .. }) => *pos,
                            _ => seq,
                        };
                        out.ranks_moved |= self.index.remove(pos);
                    }
                    self.members.remove(&user);
                    self.given
                        .get_mut()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&user);
                    self.ended.insert(user, reason);
                    out.events.push((user, MemberEvent::Removed(reason)));
                }
            }
        }
    }
}

/// Every show's live queue on this node; the store's change sink.
#[derive(Debug)]
pub struct LiveQueues {
    shows: RwLock<HashMap<ShowId, Arc<LiveQueue>>>,
    /// Where the views' [`Report`]s go (served by
    /// [`super::QueueService::run_reports`]).
    reports: mpsc::UnboundedSender<Report>,
    /// Whether views start from snapshots (a shared store) rather than
    /// from version 0 (the embedded store, which feeds every change).
    shared: bool,
    /// The main runtime, where changes are carried to the connections
    /// ([`Fanout`]); the one these views were made on.
    runtime: Option<Handle>,
}

impl LiveQueues {
    /// Views for the embedded store, which feeds them every change from
    /// version 1 on. Made on the main runtime, whose workers then carry
    /// every change to the connections, wherever it was applied.
    pub fn new(reports: mpsc::UnboundedSender<Report>) -> Self {
        Self {
            shows: RwLock::default(),
            reports,
            shared: false,
            runtime: Handle::try_current().ok(),
        }
    }

    /// Views for a shared store: each starts from a snapshot. Made on the
    /// main runtime, as [`Self::new`].
    pub fn shared(reports: mpsc::UnboundedSender<Report>) -> Self {
        Self {
            shared: true,
            ..Self::new(reports)
        }
    }

    fn report(&self, report: Report) {
        // Fails only after shutdown, when nothing needs doing.
        let _ = self.reports.send(report);
    }

    pub fn request_resync(&self, show: ShowId) {
        if self.shared {
            self.report(Report::Resync(show));
        }
    }

    /// Puts a show's view back in step without a snapshot if it missed
    /// nothing ([`LiveQueue::resume`]); false if it needs one.
    pub fn resume(&self, show: ShowId, epoch: u64, version: u64) -> bool {
        let queue = self.get(show);
        match queue.resume(epoch, version) {
            Some(applied) => {
                self.after(show, &queue, applied);
                true
            }
            None => false,
        }
    }

    /// Rebuilds a show's view from `snapshot`, then acts on what changed.
    pub fn reset(&self, show: ShowId, snapshot: Snapshot) {
        let queue = self.get(show);
        let applied = queue.reset(snapshot);
        self.after(show, &queue, applied);
    }

    fn after(&self, show: ShowId, queue: &LiveQueue, applied: Applied) {
        for (user, session, until) in applied.sessions {
            self.report(Report::Session {
                show,
                user,
                session,
                until,
            });
        }
        for (user, event) in applied.events {
            queue.notify(user, event);
        }
        if applied.ranks_moved {
            queue.epoch.send_if_modified(|e| {
                *e += 1;
                true
            });
        }
        if let Some(version) = applied.gap {
            self.report(Report::Gap { show, version });
        }
        if applied.lost {
            self.report(Report::Lost(show));
        }
        if applied.resync {
            self.request_resync(show);
        }
    }

    /// A store call answered with the show's `epoch`.
    pub fn observe_epoch(&self, show: ShowId, epoch: u64) {
        let queue = self.get(show);
        let applied = queue.observe(epoch);
        self.after(show, &queue, applied);
    }

    /// Every session, in every show this node follows, whose time is up at
    /// `now` but that the views still hold as active: expiries that could
    /// not be carried out (the store was down) or were never scheduled.
    pub fn overdue_sessions(&self, now: Timestamp) -> Vec<(ShowId, UserId, SessionId)> {
        self.all()
            .into_iter()
            .flat_map(|(show, queue)| {
                queue
                    .overdue(now)
                    .into_iter()
                    .map(move |(user, session)| (show, user, session))
            })
            .collect()
    }

    /// Every show this node follows.
    pub fn followed(&self) -> Vec<ShowId> {
        self.all().into_iter().map(|(show, _)| show).collect()
    }

    /// The views of every show this node follows.
    fn all(&self) -> Vec<(ShowId, Arc<LiveQueue>)> {
        self.shows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, q)| (*id, q.clone()))
            .collect()
    }

    pub fn get(&self, show: ShowId) -> Arc<LiveQueue> {
        if let Some(q) = self
            .shows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&show)
        {
            return q.clone();
        }
        let mut created = false;
        let queue = self
            .shows
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(show)
            .or_insert_with(|| {
                created = true;
                crate::telemetry::metrics::register_show(show);
                Arc::new(LiveQueue::new(!self.shared, self.runtime.clone()))
            })
            .clone();
        if created {
            self.request_resync(show);
        }
        queue
    }
}

impl ChangeSink for LiveQueues {
    fn apply(&self, show: ShowId, changes: &[QueueChange]) {
        let queue = self.get(show);
        let applied = queue.apply(changes);
        self.after(show, &queue, applied);
    }

    fn resubscribed(&self) {
        for (show, queue) in self.all() {
            queue.unsync();
            self.request_resync(show);
        }
        self.report(Report::Resubscribed);
    }

    fn show_changed(&self, show: ShowId) {
        self.report(Report::ShowChanged(show));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Waiter;

    const E: u64 = 1_764_000_000_000;

    fn change(version: u64, kind: ChangeKind) -> QueueChange {
        QueueChange {
            epoch: E,
            version,
            kind,
        }
    }

    /// Fan `u` joined the line at version `v` (spot and position `v`).
    fn joined(v: u64, u: u64) -> QueueChange {
        change(
            v,
            ChangeKind::Joined {
                user: UserId(u),
                seq: v,
                pos: v,
                prequeued: false,
                displaced: None,
            },
        )
    }

    fn given(q: &LiveQueue, user: u64) -> Option<Given> {
        q.read()
            .given
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&UserId(user))
            .copied()
    }

    /// The estimates a fan is given are kept (the join's, the first near
    /// the front) until their admission turns them into samples, and
    /// dropped when they leave instead.
    #[test]
    fn estimates_given_are_kept_until_the_fan_is_admitted_or_gone() {
        let q = Arc::new(LiveQueue::new(true, None));
        let now = Timestamp::now();
        {
            // One admission a second, as if seen over the last ten.
            let mut state = q.write();
            for i in 0..10 {
                state
                    .admissions
                    .push_back(now.minus(Duration::from_secs(10 - i)));
            }
        }
        q.apply(&[joined(1, 1), joined(2, 2)]);
        let at_join = q.joined_at(UserId(2), 2, true);
        let Place::Waiting {
            eta_seconds: Some(eta),
            ..
        } = at_join
        else {
            panic!("an estimate: {at_join:?}");
        };
        let kept = given(&q, 2).expect("kept");
        assert_eq!(kept.join.map(|e| e.seconds), Some(eta));
        // Within 100 of the front from the start: the same estimate.
        assert_eq!(kept.front.map(|e| e.seconds), Some(eta));
        // Later places do not replace what was given first.
        q.place(UserId(2));
        assert_eq!(given(&q, 2), Some(kept));
        // A repeat join is not a join's estimate.
        q.place(UserId(1));
        q.joined_at(UserId(1), 1, false);
        assert!(given(&q, 1).is_some_and(|g| g.join.is_none() && g.front.is_some()));

        q.apply(&[change(
            3,
            ChangeKind::Admitted {
                user: UserId(2),
                session: SessionId(2),
                until: now.plus(Duration::from_secs(60)),
                freed_at: None,
            },
        )]);
        assert_eq!(given(&q, 2), None, "scored and dropped on admission");
        q.apply(&[change(
            4,
            ChangeKind::Removed {
                user: UserId(1),
                seq: 1,
                reason: Removal::Left,
                was_active: false,
            },
        )]);
        assert_eq!(given(&q, 1), None, "dropped when the fan left");
    }

    #[test]
    fn accuracy_is_the_wait_over_the_estimate() {
        let at = Timestamp(1_000_000);
        let given = Given {
            join: Some(Estimate { seconds: 10, at }),
            front: Some(Estimate {
                seconds: 4,
                at: at.plus(Duration::from_secs(2)),
            }),
        };
        let samples = given.samples(at.plus(Duration::from_secs(20)));
        assert_eq!(samples, [("join", 2.0), ("rank_100", 4.5)]);
        assert!(Given::default().samples(at).is_empty());
    }

    #[test]
    fn out_of_order_changes_wait_for_the_gap() {
        let q = Arc::new(LiveQueue::new(true, None));
        q.apply(&[joined(2, 2), joined(3, 3)]);
        assert_eq!(q.place(UserId(2)), Place::NotInQueue);
        q.apply(&[joined(1, 1)]);
        assert!(matches!(q.place(UserId(3)), Place::Waiting { rank: 3, .. }));
        // A redelivered change is ignored.
        q.apply(&[joined(2, 2)]);
        assert_eq!(q.waiting(), 3);
    }

    /// Each pre-queue join is a step of the draw the view follows (the
    /// fan it displaces moves to the end); the opening ranks everyone on
    /// the positions drawn. A view that does not hold the displaced fan
    /// asks for a snapshot instead of guessing.
    #[test]
    fn the_opening_ranks_the_prequeue_in_its_drawn_order() {
        let q = Arc::new(LiveQueue::new(true, None));
        // Fan `u` joins at spot `seq` and takes position `pos`, displacing
        // the fan who held it to `seq`.
        let prequeued = |v: u64, u: u64, seq: u64, pos: u64, displaced: Option<u64>| {
            change(
                v,
                ChangeKind::Joined {
                    user: UserId(u),
                    seq,
                    pos,
                    prequeued: true,
                    displaced: displaced.map(|u| (UserId(u), seq)),
                },
            )
        };
        q.apply(&[
            prequeued(1, 1, 10, 10, None),
            // 2 draws the first place: 1 moves to the end (20).
            prequeued(2, 2, 20, 10, Some(1)),
            // 3 draws the second place: 1 moves to the end again (30).
            prequeued(3, 3, 30, 20, Some(1)),
        ]);
        assert!(matches!(q.place(UserId(3)), Place::Prequeued { .. }));
        let applied = q.apply(&[change(4, ChangeKind::Opened)]);
        assert!(applied.ranks_moved && !applied.resync);
        for (user, rank) in [(2, 1), (3, 2), (1, 3)] {
            assert!(
                matches!(q.place(UserId(user)), Place::Waiting { rank: r, .. } if r == rank),
                "fan {user}"
            );
        }
        assert_eq!(
            q.read().members.get(&UserId(1)).map(|m| match m {
                Member::Waiting { pos, .. } => *pos,
                _ => 0,
            }),
            Some(30)
        );

        // A view that does not hold the displaced fan cannot follow.
        let other = Arc::new(LiveQueue::new(true, None));
        other.apply(&[prequeued(1, 1, 10, 10, None)]);
        let applied = other.apply(&[prequeued(2, 3, 30, 20, Some(2))]);
        assert!(applied.resync);
    }

    #[test]
    fn admitted_listener_hears_it_and_ranks_move() {
        let q = Arc::new(LiveQueue::new(true, None));
        for v in 1..=3 {
            q.apply(&[joined(v, v)]);
        }
        let (mut first, place) = q.listen(UserId(1));
        assert!(matches!(place, Place::Waiting { rank: 1, .. }));
        let applied = q.apply(&[change(
            4,
            ChangeKind::Admitted {
                user: UserId(1),
                session: SessionId(1),
                until: Timestamp(10),
                freed_at: Some(Timestamp(5)),
            },
        )]);
        assert!(applied.ranks_moved);
        for (user, e) in applied.events {
            q.notify(user, e);
        }
        assert!(matches!(
            first.events.try_recv(),
            Some(MemberEvent::Admitted { .. })
        ));
        assert!(matches!(q.place(UserId(3)), Place::Waiting { rank: 2, .. }));
        drop(first);
        assert!(q.read().listeners.is_empty());
    }

    #[test]
    fn a_lost_queue_is_remembered_and_nobody_is_told_they_left() {
        let q = Arc::new(LiveQueue::new(true, None));
        for v in 1..=3 {
            q.apply(&[change(
                v,
                ChangeKind::Joined {
                    user: UserId(v),
                    seq: E * 1000 + v,
                    pos: E * 1000 + v,
                    prequeued: false,
                    displaced: None,
                },
            )]);
        }
        let until = Timestamp::now().plus(Duration::from_secs(60));
        q.apply(&[change(
            4,
            ChangeKind::Admitted {
                user: UserId(1),
                session: SessionId(E * 1000 + 1),
                until,
                freed_at: None,
            },
        )]);
        let (mut second, _) = q.listen(UserId(2));
        assert_eq!(q.epoch(), E);
        // The store lost everything: a snapshot of nothing.
        let applied = q.reset(Snapshot::default());
        assert!(applied.lost && applied.events.is_empty());
        assert!(q.is_lost());
        assert!(matches!(q.place(UserId(3)), Place::Waiting { rank: 2, .. }));
        // A change of the new epoch (a join after the loss) is buffered.
        let later = E + 60_000;
        let joined = QueueChange {
            epoch: later,
            version: 1,
            kind: ChangeKind::Joined {
                user: UserId(9),
                seq: later * 1000,
                pos: later * 1000,
                prequeued: false,
                displaced: None,
            },
        };
        assert!(q.apply(&[joined]).events.is_empty());
        let mut spots = q.remembered().expect("lost: remembered");
        spots.sort_by_key(|s| s.user().0);
        assert_eq!(
            spots,
            vec![
                Reseat::Active {
                    user: UserId(1),
                    session: SessionId(E * 1000 + 1),
                    until
                },
                Reseat::Waiting {
                    user: UserId(2),
                    seq: E * 1000 + 2,
                    pos: E * 1000 + 2,
                },
                Reseat::Waiting {
                    user: UserId(3),
                    seq: E * 1000 + 3,
                    pos: E * 1000 + 3,
                },
            ]
        );
        q.reseated(later);
        assert!(!q.is_lost());
        let back = Snapshot {
            epoch: later,
            version: 4,
            waiting: [
                (UserId(2), E * 1000 + 2),
                (UserId(3), E * 1000 + 3),
                (UserId(9), later * 1000),
            ]
            .into_iter()
            .map(|(user, seq)| Waiter {
                user,
                seq,
                pos: seq,
            })
            .collect(),
            prequeued: vec![],
            active: vec![(UserId(1), SessionId(E * 1000 + 1), until)],
            ended: vec![],
        };
        let applied = q.reset(back);
        assert!(applied.events.is_empty(), "{:?}", applied.events);
        assert!(second.events.try_recv().is_none());
        assert!(matches!(q.place(UserId(9)), Place::Waiting { rank: 3, .. }));
        assert_eq!(q.epoch(), later);
        // A straggler of the old epoch changes nothing.
        q.apply(&[change(
            5,
            ChangeKind::Removed {
                user: UserId(2),
                seq: E * 1000 + 2,
                reason: Removal::Left,
                was_active: false,
            },
        )]);
        assert!(matches!(q.place(UserId(2)), Place::Waiting { rank: 1, .. }));
    }
}
