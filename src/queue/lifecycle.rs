//! A show's sale from schedule to close, and how every node follows it.
//!
//! - **The clock.** A show is `scheduled` until its pre-queue opens, takes
//!   unranked joins in its `prequeue` until `starts_at`, and is open after
//!   ([`Show::state_at`]). Each node keeps a timer at the next transition
//!   ([`Job::Transition`]) for every show it knows; at the start it promotes,
//!   and the first promotion finds the pre-queue unopened and opens it
//!   ([`QueueStore::open`]: one atomic, idempotent step in the store, so
//!   whichever node gets there first does it and the others find nothing
//!   to do).
//! - **The opening is fair.** The pre-queued fans go to the head of the
//!   line in a uniformly random order, drawn as they joined with draws from
//!   a cryptographic generator ([`crate::store::drawn_place`]), so the
//!   opening itself only moves it; later joins queue behind them.
//! - **The admission rate.** A rate-limited promotion returns when the next
//!   fan may go in, and a timer ([`Job::Pace`]) fires then: admissions are
//!   spaced by exact timers, never a sweep.
//! - **Operator changes and the sale's own** (PATCH, pause and resume,
//!   close, sold out) are written to the database, then announced through
//!   the queue store ([`QueueStore::announce`]): every node reads the show
//!   again ([`QueueService::refresh`]), sets what its connections follow
//!   ([`ShowSignal`]: paused, the start, all seats held) and admits into any
//!   slot the change freed. The operator's notice travels the same way: it
//!   is part of the show, and the signal carries it to every connection of
//!   the show, waiting or admitted. A sale that ends lets the whole line go in one
//!   store step ([`QueueStore::clear`]), which every connection hears as
//!   `closed`.

use std::sync::PoisonError;
use std::time::Duration;

use super::jobs::Job;
use super::live::ShowSignal;
use super::{Cause, QueueError, QueueService, Trigger};
use crate::domain::{
    Notice, Removal, SeatsLeft, Show, ShowId, ShowPatch, ShowState, Timestamp, UserId,
};
use crate::store::{AdmitRequest, Admitted, OpenRequest};

/// How long one node holds the claim to open a pre-queue: far longer than
/// the opening's one step takes.
const OPENING_CLAIM: Duration = Duration::from_secs(30);

/// How soon a transition that failed on a backend runs again.
const TRANSITION_RETRY: Duration = Duration::from_secs(1);

/// Why an operator's change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(#[from] crate::domain::NewShowError),
    #[error("the show is {}: its sale is over", .0.as_str())]
    Over(ShowState),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl QueueService {
    /// Caches `show` and sets what its connections follow here; keeps a
    /// timer at its next transition.
    pub(super) fn remember(&self, show: &Show, all_seats_held: Option<bool>) {
        self.inner
            .shows
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(show.id, show.clone());
        let view = self.inner.live.get(show.id);
        let state = show.state_now();
        let held = all_seats_held.unwrap_or(view.signal().all_seats_held);
        view.set_signal(ShowSignal {
            paused: state == ShowState::Paused,
            starts_at: match state {
                ShowState::Scheduled | ShowState::Prequeue => show.starts_at.map(Timestamp::from),
                _ => None,
            },
            all_seats_held: held && !state.is_final(),
            notice: show.notice.as_ref().map(Notice::text),
        });
        let now = Timestamp::now();
        if let Some(at) = show.next_transition(now) {
            self.inner
                .lane_timers
                .at(now.until(at), Job::Transition(show.id));
        }
    }

    /// The shows this node has read.
    pub(super) fn cached_shows(&self) -> Vec<ShowId> {
        self.inner
            .shows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Keeps a transition timer for every show (at startup: a node that
    /// serves nobody of a show yet still opens it on time).
    pub async fn follow_schedules(&self) -> Result<(), QueueError> {
        for show in self.shows().await? {
            if show.next_transition(Timestamp::now()).is_some() {
                self.remember(&show, None);
            }
        }
        Ok(())
    }

    /// Reads the show again on its own task (a change was announced).
    pub(super) fn refresh_later(&self, show: ShowId) {
        let queue = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = queue.refresh(show).await {
                tracing::warn!(error = %e, %show, "cannot read a changed show; the next change or event reads it again");
            }
        });
    }

    /// Reads the show afresh and acts on it here: the cache, the signal to
    /// connections, the next transition timer, and a promotion into any
    /// slot it freed (more capacity, a resume).
    pub async fn refresh(&self, show: ShowId) -> Result<Show, QueueError> {
        let fresh = self.fresh_show(show).await?;
        let seats = self.inner.db.seats_left(show).await?;
        self.remember(&fresh, Some(seats.all_held()));
        if fresh.state_now() == ShowState::Open {
            self.promote(show, Trigger::now(Cause::Change)).await?;
        }
        Ok(fresh)
    }

    /// The clock moved the show's state (the pre-queue opened, or the sale
    /// started): act on it, which at the start promotes and so opens the
    /// pre-queue. On the admission lane ([`super::lane`]): at the start
    /// every connection of the show wakes for its first rank, and the
    /// opening, its first admissions and the rate's next timer must not
    /// wait behind them. So the show is this node's cached copy (every
    /// change of it is announced to every node, which reads it again), not
    /// a database read on the main workers' sockets.
    pub(super) async fn transition(&self, show: ShowId) -> Result<(), QueueError> {
        let done = async {
            let fresh = self.show(show).await?;
            self.remember(&fresh, None);
            match fresh.state_now() {
                ShowState::Open => {
                    self.promote(show, Trigger::now(Cause::Open)).await?;
                }
                // Paused before the start: the line forms (everyone hears
                // their rank, and that the sale is paused), nobody is
                // admitted.
                ShowState::Paused => {
                    self.open_prequeue(&fresh, None).await?;
                }
                _ => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = &done {
            // The opening must not wait for the next event: again shortly.
            tracing::warn!(error = %e, %show, "the show's transition failed; retrying in 1 s");
            self.inner
                .lane_timers
                .at(TRANSITION_RETRY, Job::Transition(show));
        }
        done
    }

    /// Opens the pre-queue: the store moves it, in the order drawn as fans
    /// joined, to the head of the line, anchors the rate's grid at the
    /// start and, with `admit`, admits the first fans in the same step.
    /// Returns what that admitted, or `None` when another node holds the
    /// opening (it admits in its own step).
    pub(super) async fn open_prequeue(
        &self,
        show: &Show,
        admit: Option<AdmitRequest>,
    ) -> Result<Option<Admitted>, QueueError> {
        // Every node's start timer fires at once; one opens, the others
        // leave the first admissions to it (later promotions find the
        // pre-queue opened). A claimer that dies leaves the claim to lapse,
        // and the next promotion opens it.
        if !self
            .inner
            .store
            .claim_opening(show.id, OPENING_CLAIM)
            .await?
        {
            return Ok(None);
        }
        let starts_at = show.starts_at.map_or_else(Timestamp::now, Timestamp::from);
        let request = OpenRequest { starts_at, admit };
        let opening = self.inner.store.open(show.id, request).await?;
        if opening.moved > 0 {
            tracing::info!(show = %show.id, fans = opening.moved, "pre-queue opened in its drawn order");
        }
        Ok(opening.admitted)
    }

    /// A rate-limited promotion held fans back until `at`: one timer per
    /// show at the earliest such moment, on the admission lane ([`super::lane`]).
    pub(super) fn pace(&self, show: ShowId, at: Timestamp) {
        let mut paced = self
            .inner
            .paced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paced.get(&show).is_some_and(|t| *t <= at) {
            return;
        }
        paced.insert(show, at);
        drop(paced);
        self.inner
            .lane_timers
            .at(Timestamp::now().until(at), Job::Pace(show));
    }

    /// The pace timer fired.
    pub(super) fn paced(&self, show: ShowId) {
        self.inner
            .paced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&show);
    }

    /// An operator's change to a show: checked like a new show (nothing is
    /// written if it fails), stored, announced to every node.
    pub async fn change_show(&self, id: ShowId, patch: &ShowPatch) -> Result<Show, ChangeError> {
        let show = self.fresh_show(id).await?;
        if show.state.is_final() {
            return Err(ChangeError::Over(show.state));
        }
        let changed = show.patched(patch, Timestamp::now())?;
        self.inner
            .db
            .update_show(&changed)
            .await
            .map_err(QueueError::from)?;
        self.announce(id).await;
        Ok(self.refresh(id).await?)
    }

    /// Pauses or resumes admission; refused once the sale is over.
    pub async fn set_paused(&self, id: ShowId, paused: bool) -> Result<Show, ChangeError> {
        let show = self.fresh_show(id).await?;
        let to = show.set_paused(paused).map_err(ChangeError::Over)?;
        let stored = self
            .inner
            .db
            .set_show_state(id, to)
            .await
            .map_err(QueueError::from)?
            .ok_or(QueueError::UnknownShow(id))?;
        if stored.state.is_final() {
            // The sale ended between the read and the write.
            return Err(ChangeError::Over(stored.state));
        }
        // Promotions read the cache: this node's first.
        self.remember(&stored, None);
        // Admit first: a fan let in on the resume hears `active`, not a
        // fresh rank just before it.
        if !paused {
            self.promote(id, Trigger::now(Cause::Resume)).await?;
        }
        self.announce(id).await;
        Ok(self.refresh(id).await?)
    }

    /// Ends the sale (`Closed` by an operator, `SoldOut` when the last seat
    /// sold): stored, the line let go in one step (every waiting and
    /// pre-queued fan is told why), announced. Active fans finish their
    /// turn. Closing a closed show again changes nothing.
    pub async fn end_sale(&self, id: ShowId, state: ShowState) -> Result<Show, QueueError> {
        let reason = match state {
            ShowState::SoldOut => Removal::SoldOut,
            _ => Removal::ShowClosed,
        };
        let show = self.fresh_show(id).await?;
        if !show.state.is_final() {
            self.inner
                .db
                .set_show_state(id, state)
                .await?
                .ok_or(QueueError::UnknownShow(id))?;
        }
        let cleared = self.inner.store.clear(id, reason).await?;
        if cleared > 0 {
            super::count_exits(id, reason, cleared);
        }
        self.announce(id).await;
        self.refresh(id).await
    }

    /// Removes one fan (an operator's eject): frees their slot or spot, and
    /// their connections are told `removed`. `NotInQueue` if they hold none.
    pub async fn eject(&self, show: ShowId, user: UserId) -> Result<(), QueueError> {
        self.remove_fan(show, user, Removal::Removed).await
    }

    /// The seat supply changed (a hold, a payment, a release): a show with
    /// nothing left to sell is sold out; while every seat left is held,
    /// waiting fans are told so.
    pub async fn seats_changed(&self, show: ShowId, seats: SeatsLeft) -> Result<(), QueueError> {
        if seats.sold_out() {
            if !self.fresh_show(show).await?.state.is_final() {
                self.end_sale(show, ShowState::SoldOut).await?;
            }
            return Ok(());
        }
        if self.inner.live.get(show).signal().all_seats_held != seats.all_held() {
            // Every node's connections hear it: the show is announced, and
            // each node reads the counts again in its refresh.
            self.announce(show).await;
        }
        Ok(())
    }

    /// Tells every node the show changed. A failure leaves the other nodes
    /// a change behind until the next announcement or their change stream
    /// reconnects; this node acts on it at once either way.
    async fn announce(&self, show: ShowId) {
        if let Err(e) = self.inner.store.announce(show).await {
            tracing::warn!(error = %e, %show, "cannot announce a show change to the other nodes");
            self.refresh_later(show);
        }
    }
}
