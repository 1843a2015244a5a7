//! Bounded failure at every backend: a circuit breaker per backend (Redis,
//! the database, the Kafka producer) and, where the backend's client has
//! none of its own, a deadline on each call.
//!
//! A breaker opens after [`BreakerSettings::failures`] failures in a row, or
//! when fewer than [`BreakerSettings::min_success_percent`] percent of the calls in the
//! last [`BreakerSettings::window_secs`] succeeded (once at least
//! [`BreakerSettings::min_calls`] were made). While it is open every call
//! fails at once, without touching the backend: the HTTP edge answers 503
//! with `Retry-After` (or serves its documented fallback, such as the seat
//! map from the database), instead of making each request wait for its own
//! timeout. After the open time (from `open_ms`, doubling with jitter up to
//! `max_open_ms` while it keeps failing) calls pass again (half-open); the
//! first success closes it, a failure opens it again.
//!
//! The state machine is the kept `failsafe` crate's; this module adds the
//! deadline, the metrics (state, transitions, rejected calls) and a signal
//! when a breaker closes, on which the queue re-checks every deadline that
//! passed while the backend was down ([`crate::queue::jobs`]).
//!
//! What counts as a failure is the backend's own call ([`BackendError`]):
//! an unreachable or timed-out backend, never a refusal that is the
//! caller's (a failed Lua condition, a unique-key conflict, a deadlock).

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use failsafe::failure_policy::{self, ConsecutiveFailures, OrElse, SuccessRateOverTimeWindow};
use failsafe::{Config, FailurePolicy as _, Instrument, StateMachine};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::telemetry::metrics as m;

/// When a backend's breaker opens and for how long (the `breakers` settings
/// section; one set for every backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Failures in a row that open a breaker.
    pub failures: u32,
    /// A breaker also opens when fewer than this percentage of the calls in
    /// the window succeeded.
    pub min_success_percent: u32,
    /// The window the success rate is taken over.
    pub window_secs: u64,
    /// Calls in the window before the success rate counts.
    pub min_calls: u32,
    /// How long a breaker stays open the first time before a call probes.
    pub open_ms: u64,
    /// The longest it stays open while probes keep failing.
    pub max_open_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            min_success_percent: 50,
            window_secs: 10,
            min_calls: 20,
            // Short: every open period is time a recovered backend is not
            // used, and a probe a second or two per node costs nothing.
            open_ms: 500,
            max_open_ms: 2_000,
        }
    }
}

/// A backend's error, as its breaker sees it.
pub trait BackendError: Sized {
    /// The call did not finish within its deadline.
    fn timed_out(after: Duration) -> Self;
    /// The breaker is open: the call was not made.
    fn rejected(backend: Backend) -> Self;
    /// Whether this error says the backend is failing (not the caller).
    fn trips(&self) -> bool;
}

/// The backends with a breaker: the `backend` label of the breaker metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Database,
    Kafka,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Redis, Backend::Database, Backend::Kafka];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Database => "database",
            Backend::Kafka => "kafka",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states a breaker enters: the `to` label of
/// `anteroom_breaker_transitions_total`.
pub const TRANSITIONS: [&str; 3] = ["open", "half_open", "closed"];

/// The breaker's state as exported: `anteroom_breaker_state`.
const CLOSED: u8 = 0;
const HALF_OPEN: u8 = 1;
const OPEN: u8 = 2;

type Policy = OrElse<SuccessRateOverTimeWindow<OpenTimes>, ConsecutiveFailures<OpenTimes>>;

/// How long a breaker stays open each time in a row: doubling from `start`
/// up to `max`, with equal jitter (half fixed, half random) so the nodes'
/// probes spread out. failsafe's own backoffs count whole seconds; a
/// gateway's probes want milliseconds.
#[derive(Debug, Clone)]
pub struct OpenTimes {
    next: Duration,
    max: Duration,
}

impl OpenTimes {
    fn new(start: Duration, max: Duration) -> Self {
        Self {
            next: start,
            max: max.max(start),
        }
    }
}

impl Iterator for OpenTimes {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let full = self.next;
        self.next = (full * 2).min(self.max);
        let half = full / 2;
        Some(half + half.mul_f64(rand::random::<f64>()))
    }
}

/// One backend's breaker (cheap to clone: clones share the state).
#[derive(Clone)]
pub struct Breaker {
    backend: Backend,
    machine: StateMachine<Policy, Observer>,
    /// A deadline on every call, for a backend whose client has none.
    deadline: Option<Duration>,
    recovered: watch::Receiver<u64>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("backend", &self.backend)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Breaker {
    pub fn new(backend: Backend, settings: &BreakerSettings, deadline: Option<Duration>) -> Self {
        let backoff = OpenTimes::new(
            Duration::from_millis(settings.open_ms.max(1)),
            Duration::from_millis(settings.max_open_ms),
        );
        let rate = failure_policy::success_rate_over_time_window(
            f64::from(settings.min_success_percent.min(100)) / 100.0,
            settings.min_calls,
            Duration::from_secs(settings.window_secs.max(1)),
            backoff.clone(),
        );
        let consecutive = failure_policy::consecutive_failures(settings.failures.max(1), backoff);
        let (recovered_tx, recovered) = watch::channel(0);
        let observer = Observer {
            backend,
            state: Arc::new(AtomicU8::new(CLOSED)),
            recovered: Arc::new(recovered_tx),
        };
        Self {
            backend,
            machine: Config::new()
                .failure_policy(rate.or_else(consecutive))
                .instrument(observer)
                .build(),
            deadline,
            recovered,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `call` through the breaker: refused at once while it is open,
    /// bounded by the deadline, its outcome recorded.
    pub async fn call<T, E: BackendError>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if !self.machine.is_call_permitted() {
            return Err(E::rejected(self.backend));
        }
        let result = match self.deadline {
            Some(deadline) => tokio::time::timeout(deadline, call)
                .await
                .unwrap_or_else(|_| Err(E::timed_out(deadline))),
            None => call.await,
        };
        match &result {
            Err(e) if e.trips() => self.machine.on_error(),
            _ => self.machine.on_success(),
        }
        result
    }

    /// The deadline on every call, if it has one.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The same breaker (its state shared) for a caller that applies the
    /// deadline itself, inside the call, where it can act on a miss.
    pub fn untimed(&self) -> Self {
        Self {
            deadline: None,
            ..self.clone()
        }
    }

    /// The backend was replaced (Redis: Sentinel named a new primary): its
    /// predecessor's failures say nothing about it, so calls pass again at
    /// once. Counts as closing (the recovery signal fires) if it was open.
    pub fn reset(&self) {
        self.machine.reset();
    }

    /// Changes each time the breaker closes after being open: the backend
    /// is back.
    pub fn recovered(&self) -> watch::Receiver<u64> {
        self.recovered.clone()
    }
}

/// Turns the state machine's transitions into metrics, logs and the
/// recovery signal. failsafe reports "closed" at construction and on every
/// success in half-open; only real changes count.
struct Observer {
    backend: Backend,
    state: Arc<AtomicU8>,
    recovered: Arc<watch::Sender<u64>>,
}

impl Observer {
    /// Moves to `to`; returns the state it left.
    fn enter(&self, to: u8, label: &'static str) -> u8 {
        let from = self.state.swap(to, Ordering::Relaxed);
        if from != to {
            let backend = self.backend.as_str();
            metrics::gauge!(m::BREAKER_STATE, "backend" => backend).set(f64::from(to));
            metrics::counter!(m::BREAKER_TRANSITIONS, "backend" => backend, "to" => label)
                .increment(1);
        }
        from
    }
}

impl Instrument for Observer {
    fn on_call_rejected(&self) {
        metrics::counter!(m::BREAKER_REJECTED, "backend" => self.backend.as_str()).increment(1);
    }

    fn on_open(&self) {
        if self.enter(OPEN, "open") != OPEN {
            tracing::warn!(backend = %self.backend, "circuit breaker open: calls fail fast until a probe succeeds");
        }
    }

    fn on_half_open(&self) {
        self.enter(HALF_OPEN, "half_open");
    }

    fn on_closed(&self) {
        if self.enter(CLOSED, "closed") != CLOSED {
            tracing::info!(backend = %self.backend, "circuit breaker closed: the backend answers again");
            self.recovered.send_modify(|n| *n += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Fake {
        Down,
        TimedOut,
        Rejected,
        Refused,
    }

    impl BackendError for Fake {
        fn timed_out(_: Duration) -> Self {
            Fake::TimedOut
        }
        fn rejected(_: Backend) -> Self {
            Fake::Rejected
        }
        fn trips(&self) -> bool {
            matches!(self, Fake::Down | Fake::TimedOut)
        }
    }

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            open_ms: 200,
            max_open_ms: 200,
            ..BreakerSettings::default()
        }
    }

    #[tokio::test]
    async fn opens_after_failures_in_a_row_then_a_probe_closes_it() {
        let breaker = Breaker::new(Backend::Redis, &settings(), None);
        let mut recovered = breaker.recovered();
        // The caller's own refusals never open it.
        for _ in 0..10 {
            assert_eq!(
                breaker.call(async { Err::<(), _>(Fake::Refused) }).await,
                Err(Fake::Refused)
            );
        }
        for _ in 0..3 {
            assert_eq!(
                breaker.call(async { Err::<(), _>(Fake::Down) }).await,
                Err(Fake::Down)
            );
        }
        // Open: the call is not made.
        let made = std::sync::atomic::AtomicBool::new(false);
        let answer = breaker
            .call(async {
                made.store(true, Ordering::Relaxed);
                Ok::<_, Fake>(())
            })
            .await;
        assert_eq!(answer, Err(Fake::Rejected));
        assert!(!made.load(Ordering::Relaxed));
        assert!(!recovered.has_changed().expect("sender alive"));
        // After the open time (jittered between half and all of 200 ms) a
        // call probes, and its success closes the breaker.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(breaker.call(async { Ok::<_, Fake>(7) }).await, Ok(7));
        assert!(recovered.has_changed().expect("sender alive"));
        recovered.mark_unchanged();
        assert_eq!(breaker.call(async { Ok::<_, Fake>(8) }).await, Ok(8));
        assert!(
            !recovered.has_changed().expect("sender alive"),
            "closed once"
        );
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_fails_and_counts() {
        let breaker = Breaker::new(
            Backend::Database,
            &BreakerSettings {
                failures: 1,
                ..settings()
            },
            Some(Duration::from_millis(20)),
        );
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Fake>(())
        };
        assert_eq!(breaker.call(slow).await, Err(Fake::TimedOut));
        assert_eq!(
            breaker.call(async { Ok::<_, Fake>(()) }).await,
            Err(Fake::Rejected)
        );
    }
}
