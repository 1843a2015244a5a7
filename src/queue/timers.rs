//! A timer task: runs jobs at their exact deadlines. The queue's jobs
//! ([`super::jobs::Job`]: session expiry, the `expiring` warning,
//! abandonment checks) run on one, the sale paths' hold expiries on another.
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

/// Schedules jobs of kind `J` on a timer task.
#[derive(Debug)]
pub struct TimerHandle<J>(mpsc::UnboundedSender<(Instant, J)>);

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
        let (handle, rx) = TimerHandle::<u64>::channel();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let start = Instant::now();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            rx,
            move |job| {
                log.lock()
                    .expect("lock")
                    .push((job, start.elapsed().as_millis()));
            },
            shutdown.clone(),
        ));
        handle.at(Duration::from_millis(300), 3);
        handle.at(Duration::from_millis(100), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle.at(Duration::from_millis(150), 2);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            *fired.lock().expect("lock"),
            vec![(1, 100), (2, 200), (3, 300)]
        );
        shutdown.cancel();
        task.await.expect("timer task ends");
    }
}
