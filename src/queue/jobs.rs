//! The queue's deadlines and the live view's reports, acted on.
//!
//! - [`Job`]s run on the queue's timer task at their exact deadlines
//!   ([`super::timers`]): session expiry, the `expiring` warning,
//!   abandonment checks, and the follow-ups of a shared store's change
//!   stream (a gap that did not close, a snapshot to fetch again).
//! - [`Report`]s come from the live view ([`super::live`]), which only
//!   computes: a session it learnt of gets its timers here (the warning
//!   policy is here too), a view that needs a snapshot gets one here.
//!
//! A fired job only *asks* the store to act, conditionally (this session,
//! this stale entry), so stale or duplicate timers, including the same
//! timer on several nodes, are harmless.
//!
//! Nothing that frees a slot is dropped: a job that fails on a backend
//! (expiry, an abandonment check, a closed connection's detach) runs again
//! after a backoff (100 ms doubling to 1 s) until it
//! succeeds or finds nothing left to do; and when a backend recovers (its
//! circuit breaker closes, or the change stream is re-established) every
//! job waiting on a retry, and every session a view still holds past its
//! time, is re-checked at once ([`QueueService::recheck`]).

use std::sync::PoisonError;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::live::{MemberEvent, Report, GAP_PATIENCE};
use super::{Cause, QueueError, QueueService, RebuildSource, Trigger};
use crate::domain::{Removal, SessionId, ShowId, Timestamp, UserId};
use crate::store::{Entry, RemoveIf, Reseat};
use crate::telemetry::metrics as m;

/// How soon a snapshot that failed is fetched again.
const RESYNC_RETRY: Duration = Duration::from_millis(500);
/// The first retry of a failed job, doubling with each failure up to
/// [`RETRY_MAX`]: short, since a session that cannot expire holds a slot
/// (and a recovering backend re-checks at once anyway).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Spots per rebuild script call: a few milliseconds of Redis time each.
const RESEAT_CHUNK: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Expire {
        show: ShowId,
        user: UserId,
        session: SessionId,
    },
    Warn {
        show: ShowId,
        user: UserId,
        session: SessionId,
        seconds_left: u64,
    },
    AbandonCheck {
        show: ShowId,
        user: UserId,
    },
    /// A shared store's change stream had a gap at `version`; resync the
    /// view if it is still open.
    GapCheck {
        show: ShowId,
        version: u64,
    },
    /// Fetch a show's snapshot again (the last attempt failed).
    Resync(ShowId),
    /// Put back a lost queue from this node's view (the last attempt failed).
    Rebuild(ShowId),
    /// Admit into free slots (a rebuild's hold on admission ended).
    Promote(ShowId),
    /// The admission rate lets the next fan in now.
    Pace(ShowId),
    /// The clock moves the show's state: the pre-queue opens, or the sale
    /// starts (the opening).
    Transition(ShowId),
}

impl Job {
    /// The jobs that run again until they succeed: the `kind` label of
    /// `anteroom_timer_job_retries_total` (with "detach", a closed
    /// connection's detach, retried by the batches of [`super::presence`]).
    pub const RETRIED: [&'static str; 4] = ["expire", "abandon_check", "detach", "pace"];

    /// This job's label, if it is retried when a backend fails.
    fn retried(&self) -> Option<&'static str> {
        match self {
            Job::Expire { .. } => Some("expire"),
            Job::AbandonCheck { .. } => Some("abandon_check"),
            // The rate's next slot is a deadline like an expiry: when no
            // other event follows (nobody joins or leaves during an
            // opening), nothing else would admit the next fan.
            Job::Pace(_) => Some("pace"),
            // A warning a moment late is worthless; a resync retries on
            // its own.
            Job::Warn { .. } | Job::GapCheck { .. } | Job::Resync(_) => None,
            // A rebuild retries on its own; a promotion follows every event.
            Job::Rebuild(_) | Job::Promote(_) => None,
            // A transition retries on its own (in 1 s).
            Job::Transition(_) => None,
        }
    }
}

/// The wait before retry number `attempt` (from 1).
pub(super) fn retry_delay(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

impl QueueService {
    /// Runs `job` on a task of its own (tracked), so a slow store call never
    /// holds up the next deadline; a failed job that frees a slot or marks a
    /// fan gone is scheduled again.
    pub fn dispatch(&self, job: Job) {
        let queue = self.clone();
        self.inner
            .tasks
            .spawn(async move { queue.run_job(job).await });
    }

    /// [`Self::dispatch`] on another runtime: the admission lane's, for
    /// its timers ([`super::lane`]: the rate's, the shows' transitions),
    /// whose retries go back to them.
    pub fn dispatch_on(&self, runtime: &tokio::runtime::Handle, job: Job) {
        let queue = self.clone();
        self.inner
            .tasks
            .spawn_on(async move { queue.run_job(job).await }, runtime);
    }

    async fn run_job(&self, job: Job) {
        let outcome = self.fire(job).await;
        let mut retries = self
            .inner
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let e = match outcome {
            Ok(()) => {
                retries.remove(&job);
                return;
            }
            Err(e) => e,
        };
        match job.retried() {
            Some(label) if e.is_transient() => {
                let attempt = retries.entry(job).or_insert(0);
                *attempt += 1;
                let delay = retry_delay(*attempt);
                tracing::warn!(error = %e, ?job, attempt = *attempt, retry_in = ?delay, "timer job failed; retrying");
                metrics::counter!(m::JOB_RETRIES, "kind" => label).increment(1);
                let timers = match job {
                    Job::Pace(_) | Job::Transition(_) => &self.inner.lane_timers,
                    _ => &self.inner.timers,
                };
                timers.at(delay, job);
            }
            _ => {
                retries.remove(&job);
                tracing::error!(error = %e, ?job, "timer job failed");
            }
        }
    }

    /// Re-checks, at once, what a backend outage held up: every job
    /// waiting on a retry, and every session this node's views hold past its
    /// time. Duplicates of a pending retry are harmless (each job acts
    /// conditionally).
    pub fn recheck(&self) {
        *self
            .inner
            .recovered_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Timestamp::now());
        let pending: Vec<Job> = self
            .inner
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        let overdue = self.inner.live.overdue_sessions(Timestamp::now());
        if !pending.is_empty() || !overdue.is_empty() {
            tracing::info!(
                retries = pending.len(),
                overdue_sessions = overdue.len(),
                "a backend recovered; re-checking held-up deadlines"
            );
        }
        for job in pending {
            self.dispatch(job);
        }
        for (show, user, session) in overdue {
            self.dispatch(Job::Expire {
                show,
                user,
                session,
            });
        }
        // A slot freed during the outage whose promotion failed has no
        // job left to retry it (the expiry that freed it succeeded).
        for show in self.inner.live.followed() {
            self.dispatch(Job::Promote(show));
        }
    }

    /// Re-checks ([`Self::recheck`]) each time a backend the queue uses
    /// recovers (its circuit breaker closes), until shutdown.
    pub async fn run_recovery(self, shutdown: CancellationToken) {
        let signals = [self.inner.store.recovered(), self.inner.db.recovered()];
        let mut recovered =
            futures::stream::select_all(signals.into_iter().flatten().map(
                |rx: watch::Receiver<u64>| tokio_stream::wrappers::WatchStream::from_changes(rx),
            ));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                signal = recovered.next() => match signal {
                    Some(_) => self.recheck(),
                    // No shared backend: nothing ever recovers.
                    None => return shutdown.cancelled().await,
                },
            }
        }
    }

    /// Runs a timer job.
    pub async fn fire(&self, job: Job) -> Result<(), QueueError> {
        match job {
            Job::Expire {
                show,
                user,
                session,
            } => {
                let ended = self
                    .end_session(show, user, session, Removal::Expired, Timestamp::now())
                    .await?;
                if !ended && self.inner.live.get(show).spot(user) == Some(session.0) {
                    self.suspect_loss(show, user).await;
                }
            }
            Job::Warn {
                show,
                user,
                session,
                seconds_left,
            } => self.inner.live.get(show).notify(
                user,
                MemberEvent::Expiring {
                    session,
                    seconds_left,
                },
            ),
            Job::GapCheck { show, version } => {
                if self.inner.live.get(show).gap_at() == Some(version) {
                    tracing::warn!(%show, version, "queue change stream gap; resynchronising");
                    self.inner.live.request_resync(show);
                }
            }
            Job::Resync(show) => self.inner.live.request_resync(show),
            Job::Rebuild(show) => self.rebuild(show).await,
            Job::Promote(show) => {
                self.promote(show, Trigger::now(Cause::Rebuild)).await?;
            }
            Job::Pace(show) => {
                self.paced(show);
                self.promote(show, Trigger::now(Cause::Rate)).await?;
            }
            Job::Transition(show) => self.transition(show).await?,
            Job::AbandonCheck { show, user } => self.check_abandoned(show, user).await?,
        }
        Ok(())
    }

    /// Acts on the live view's reports until shutdown.
    pub async fn run_reports(
        self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        shutdown: CancellationToken,
    ) {
        loop {
            let report = tokio::select! {
                _ = shutdown.cancelled() => return,
                report = reports.recv() => match report {
                    Some(report) => report,
                    None => return,
                },
            };
            match report {
                Report::Resync(show) => {
                    let queue = self.clone();
                    self.inner
                        .tasks
                        .spawn(async move { queue.resync(show).await });
                }
                Report::Session {
                    show,
                    user,
                    session,
                    until,
                } => self.schedule_session(show, user, session, until),
                Report::Gap { show, version } => self
                    .inner
                    .timers
                    .at(GAP_PATIENCE, Job::GapCheck { show, version }),
                Report::Lost(show) => {
                    let queue = self.clone();
                    self.inner
                        .tasks
                        .spawn(async move { queue.rebuild(show).await });
                }
                Report::Resubscribed => {
                    // A show change announced while the stream was down
                    // was missed: read every show this node knows again.
                    for show in self.cached_shows() {
                        self.refresh_later(show);
                    }
                    self.recheck();
                }
                Report::ShowChanged(show) => self.refresh_later(show),
            }
        }
    }

    /// Puts a show's view back in step: at once if it missed no change (the
    /// store's version says so: a re-made subscription usually missed
    /// nothing), else from a fresh snapshot, which grows with the line. A
    /// failed call is tried again shortly.
    async fn resync(&self, show: ShowId) {
        match self.inner.store.position(show).await {
            Ok((epoch, version)) if self.inner.live.resume(show, epoch, version) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, %show, retry_in = ?RESYNC_RETRY, "store position unreadable");
                self.inner.timers.at(RESYNC_RETRY, Job::Resync(show));
                return;
            }
        }
        match self.inner.store.snapshot(show).await {
            Ok(snapshot) => self.inner.live.reset(show, snapshot),
            Err(e) => {
                tracing::warn!(error = %e, %show, retry_in = ?RESYNC_RETRY, "snapshot failed");
                self.inner.timers.at(RESYNC_RETRY, Job::Resync(show));
            }
        }
    }

    /// Puts back, from this node's live view, a show's queue the store lost
    /// (several nodes may do it at once: the store writes each spot once),
    /// then follows the new epoch: a fresh snapshot, this node's connections
    /// counted again, and a promotion into the slots still free. Retried
    /// shortly if the store is unreachable.
    pub async fn rebuild(&self, show: ShowId) {
        let lock = self
            .inner
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(show)
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let view = self.inner.live.get(show);
        let Some(spots) = view.remembered() else {
            return;
        };
        let (epoch, restored) = match self.reseat_all(show, &spots).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, %show, retry_in = ?RESYNC_RETRY, "rebuilding a lost queue failed");
                self.inner.timers.at(RESYNC_RETRY, Job::Rebuild(show));
                return;
            }
        };
        tracing::warn!(
            %show,
            epoch,
            remembered = spots.len(),
            restored,
            "the queue store lost this show's queue; put back what this node remembered"
        );
        view.reseated(epoch);
        self.inner.live.request_resync(show);
        // The store lost this node's connection records with the queue.
        if let Err(e) = self.rewrite_presence().await {
            tracing::warn!(error = %e, %show, "recording this node's connections again failed");
        }
        if let Err(e) = self.promote(show, Trigger::now(Cause::Rebuild)).await {
            tracing::warn!(error = %e, %show, "promotion after a rebuild failed; the next event retries it");
        }
    }

    /// Puts back `spots` in chunks (each script call stays short, well
    /// inside Redis's patience for other clients); again from the start if
    /// the store lost the queue once more meanwhile. Returns the epoch and
    /// how many spots this call wrote.
    async fn reseat_all(&self, show: ShowId, spots: &[Reseat]) -> Result<(u64, usize), QueueError> {
        loop {
            let mut epoch = None;
            let mut restored = 0;
            for chunk in spots.chunks(RESEAT_CHUNK) {
                let done = self.reseat(show, chunk, RebuildSource::View).await?;
                restored += done.restored.len();
                if *epoch.get_or_insert(done.epoch) != done.epoch {
                    epoch = None;
                    break;
                }
            }
            match epoch {
                Some(epoch) => return Ok((epoch, restored)),
                None if spots.is_empty() => {
                    let done = self.reseat(show, &[], RebuildSource::View).await?;
                    return Ok((done.epoch, 0));
                }
                None => continue,
            }
        }
    }

    /// The timers a session needs on every node: its exact expiry, and the
    /// `expiring` warning for this node's connections, `expiring_warning`
    /// before the end but never earlier than half-way.
    fn schedule_session(&self, show: ShowId, user: UserId, session: SessionId, until: Timestamp) {
        let ttl = Timestamp::now().until(until);
        let timers = &self.inner.timers;
        timers.at(
            ttl,
            Job::Expire {
                show,
                user,
                session,
            },
        );
        let warning = self.inner.expiring_warning.min(ttl / 2);
        if !warning.is_zero() {
            timers.at(
                ttl - warning,
                Job::Warn {
                    show,
                    user,
                    session,
                    seconds_left: warning.as_secs().max(1),
                },
            );
        }
    }

    /// Checks for abandonment after `delay`, unless a check for this fan is
    /// already pending (it reschedules itself from the fan's last sighting).
    pub(super) fn schedule_abandon_check(&self, show: ShowId, user: UserId, delay: Duration) {
        let fresh = self
            .inner
            .abandon_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((show, user));
        if fresh {
            // A little past the deadline, so a check never fires a hair
            // before the cutoff it tests.
            self.inner.timers.at(
                delay + Duration::from_millis(20),
                Job::AbandonCheck { show, user },
            );
        }
    }

    /// Removes a waiting fan who has had no connection and no poll for the
    /// show's grace; otherwise checks again a grace after their last
    /// sighting.
    async fn check_abandoned(&self, show: ShowId, user: UserId) -> Result<(), QueueError> {
        self.inner
            .abandon_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(show, user));
        let definition = self.show(show).await?;
        let grace = definition.abandon_grace;
        let now = Timestamp::now();
        // Fans who poll could not be seen while a backend was down (their
        // polls failed): each gets a whole grace after the recovery. A
        // pre-queued fan may wait for the start unconnected: the grace runs
        // from the start at the earliest.
        let recovered = *self
            .inner
            .recovered_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = definition.starts_at.map(Timestamp::from);
        let not_before = recovered.max(start).map(|at| at.plus(grace));
        if let Some(back) = not_before.filter(|t| now < *t) {
            self.schedule_abandon_check(show, user, now.until(back));
            return Ok(());
        }
        let cutoff = now.minus(grace);
        let removed = self
            .inner
            .store
            .remove(
                show,
                user,
                Removal::Abandoned,
                RemoveIf::StaleWaiting { cutoff },
            )
            .await?;
        if removed.is_some() {
            return self.exited(show, user, None, Removal::Abandoned, now).await;
        }
        if let Some(Entry::Waiting {
            live: 0, last_seen, ..
        }) = self.inner.store.entry(show, user).await?
        {
            // Seen since the check was set: check again a grace after that
            // sighting. (With a live connection, its close schedules the
            // next check.)
            self.schedule_abandon_check(show, user, now.until(last_seen.plus(grace)));
        }
        Ok(())
    }
}
