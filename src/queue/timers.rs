//! One timer task per node for every deadline the queue has: session expiry
//! at its exact time, the `expiring` warning, and abandonment checks.
//!
//! Deadlines sit in a `BTreeMap` and the task sleeps until the earliest one,
//! re-arming when an earlier one arrives: no periodic sweep, so admission
//! after an expiry is not delayed by any interval. A fired job only *asks*
//! the store to act, conditionally (this session, this stale entry), so stale
//! or duplicate timers, including the same timer on several nodes, are
//! harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{SessionId, ShowId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// Schedules jobs on a timer task: the queue's [`Job`]s, or another kind
/// (the sale paths' hold expiries run on a task of their own).
#[derive(Debug)]
pub struct TimerHandle<J = Job>(mpsc::UnboundedSender<(Instant, J)>);

impl<J> Clone for TimerHandle<J> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<J> TimerHandle<J> {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<(Instant, J)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Runs `job` after `delay`.
    pub fn at(&self, delay: Duration, job: J) {
        // Fails only after shutdown, when no job needs to run.
        let _ = self.0.send((Instant::now() + delay, job));
    }
}

/// Runs until `shutdown`, calling `fire` for each job at its deadline.
pub async fn run<J>(
    mut jobs: mpsc::UnboundedReceiver<(Instant, J)>,
    fire: impl Fn(J),
    shutdown: CancellationToken,
) {
    let mut due: BTreeMap<(Instant, u64), J> = BTreeMap::new();
    let mut tiebreak = 0u64;
    loop {
        let next = due.keys().next().map(|(at, _)| *at);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                Some((at, job)) => {
                    tiebreak += 1;
                    due.insert((at, tiebreak), job);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some(entry) = due.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    fire(entry.remove());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_in_deadline_order_at_the_deadline() {
        let (handle, rx) = TimerHandle::<Job>::channel();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let start = Instant::now();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            rx,
            move |job| {
                if let Job::AbandonCheck { user, .. } = job {
                    log.lock()
                        .expect("lock")
                        .push((user.0, start.elapsed().as_millis()));
                }
            },
            shutdown.clone(),
        ));
        let job = |u| Job::AbandonCheck {
            show: ShowId(1),
            user: UserId(u),
        };
        handle.at(Duration::from_millis(300), job(3));
        handle.at(Duration::from_millis(100), job(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle.at(Duration::from_millis(150), job(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            *fired.lock().expect("lock"),
            vec![(1, 100), (2, 200), (3, 300)]
        );
        shutdown.cancel();
        task.await.expect("timer task ends");
    }
}
