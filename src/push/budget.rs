//! The node's rank-frame budget: how often each waiting connection may be
//! sent a new rank, so that the fan-out of a long line stays below what the
//! node can write and never crowds out admission.
//!
//! Every waiting connection is due a frame whenever its rank moves, at most
//! once per interval. With `w` waiting connections and interval `i` that is
//! up to `w / i` frames a second; past what the node's cores can write
//! (about 50,000 a second on 2 cores, docs/benchmarks.md), every task on the
//! runtime (the change feed that carries admissions, the admitted fan's
//! connection, the requests that free slots) waits its turn in a run queue
//! thousands of rank frames long. So the interval stretches with the line:
//! - fans at rank ≤ `front_ranks` keep `rank_interval` (they are about to be
//!   admitted, and there are few of them);
//! - everyone behind shares what is left of `frame_budget`: interval
//!   `(w - front) / (budget - front / rank_interval)`, never below
//!   `rank_interval`;
//! - and never above `max_rank_interval`: past that a fan would wonder
//!   whether the page still works, so the budget gives way.
//!
//! The waiting count is this node's own (its connections are what its cores
//! write), kept by a [`Waiting`] guard each waiting connection holds.
//!
//! Frames are also spread in time: a connection that sent looks again about
//! one interval later rather than at the next epoch bump (`push::session`),
//! so in a moving line the node's frames follow each connection's own
//! timer, not a burst of every waiting connection at each promotion; and
//! that timer is drawn around the interval ([`Policy::next_look`]), so
//! connections woken together do not stay together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::PushSettings;
use crate::telemetry::metrics as m;

/// The rule, without the counter: a pure function of rank and line length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The shortest gap (`push.rank_interval_ms`).
    pub base: Duration,
    /// Rank frames a second this node aims to stay under; 0: no budget (every
    /// connection gets `base`).
    pub frames_per_sec: u64,
    /// Ranks that always get `base`.
    pub front_ranks: u64,
    /// The longest gap whatever the line (`push.max_rank_interval_ms`).
    pub max: Duration,
}

impl Policy {
    pub fn new(settings: &PushSettings) -> Self {
        Self {
            base: settings.rank_interval(),
            frames_per_sec: settings.frame_budget,
            front_ranks: settings.front_ranks,
            max: settings.max_rank_interval(),
        }
    }

    /// The shortest gap between two rank frames to a fan at `rank` while
    /// this node holds `waiting` waiting connections.
    pub fn interval(&self, rank: u64, waiting: u64) -> Duration {
        if self.frames_per_sec == 0 || rank <= self.front_ranks {
            return self.base;
        }
        let front = waiting.min(self.front_ranks) as f64;
        let left = self.frames_per_sec as f64 - front / self.base.as_secs_f64();
        let behind = waiting.saturating_sub(self.front_ranks) as f64;
        let stretched = if left > 0.0 {
            Duration::try_from_secs_f64(behind / left).unwrap_or(self.max)
        } else {
            self.max
        };
        stretched.min(self.max).max(self.base)
    }

    /// When a connection that just sent `rank` looks again, with `u` drawn
    /// uniformly from [0, 1): past the front, the interval spread over half
    /// to one and a half of itself, never below the base interval nor past
    /// the maximum. Connections
    /// woken together (the opening's first ranks, a resume) would otherwise
    /// come back together interval after interval, a wave of the whole
    /// node's frames well above the budget's rate for as long as it lasts,
    /// and the tasks of fans admitted meanwhile queue behind it (the run
    /// measured `active` read up to a second late in each wave). Spread, a
    /// wave's frames cover the next interval evenly within a couple of
    /// rounds.
    pub fn next_look(&self, rank: u64, waiting: u64, u: f64) -> Duration {
        let interval = self.interval(rank, waiting);
        if self.frames_per_sec == 0 || rank <= self.front_ranks {
            return interval;
        }
        interval
            .mul_f64(0.5 + u.clamp(0.0, 1.0))
            .clamp(self.base, self.max)
    }
}

/// The policy and this node's count of waiting connections.
#[derive(Debug)]
pub struct FrameBudget {
    policy: Policy,
    waiting: AtomicU64,
    /// The interval of a fan past the front, as of the last count change.
    interval_gauge: metrics::Gauge,
}

impl FrameBudget {
    pub fn new(settings: &PushSettings) -> Self {
        let budget = Self {
            policy: Policy::new(settings),
            waiting: AtomicU64::new(0),
            interval_gauge: metrics::gauge!(m::RANK_INTERVAL),
        };
        budget.counted(0);
        budget
    }

    /// Counts a waiting connection until the guard drops.
    pub fn waiting(&self) -> Waiting<'_> {
        let now = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        self.counted(now);
        Waiting(self)
    }

    /// The gap before the next rank frame to a fan last told `rank`.
    pub fn interval(&self, rank: u64) -> Duration {
        self.policy
            .interval(rank, self.waiting.load(Ordering::Relaxed))
    }

    /// When to look again after telling a fan `rank` ([`Policy::next_look`]).
    pub fn next_look(&self, rank: u64) -> Duration {
        self.policy.next_look(
            rank,
            self.waiting.load(Ordering::Relaxed),
            rand::random::<f64>(),
        )
    }

    fn counted(&self, waiting: u64) {
        let behind = self.policy.front_ranks.saturating_add(1);
        self.interval_gauge
            .set(self.policy.interval(behind, waiting).as_secs_f64());
    }
}

/// One waiting connection on the node's count.
#[derive(Debug)]
pub struct Waiting<'a>(&'a FrameBudget);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.0.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.counted(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            base: Duration::from_millis(250),
            frames_per_sec: 40_000,
            front_ranks: 100,
            max: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_short_line_keeps_the_base_interval() {
        let p = policy();
        // 10,000 connections at 4 frames a second each: within the budget.
        assert_eq!(p.interval(5_000, 10_000), p.base);
        assert_eq!(p.interval(101, 0), p.base);
    }

    #[test]
    fn a_long_line_stretches_so_the_budget_holds() {
        let p = policy();
        for waiting in [20_000u64, 50_000, 100_000, 150_000] {
            let i = p.interval(1_000, waiting);
            let front = 100.0 / p.base.as_secs_f64();
            let behind = (waiting - 100) as f64 / i.as_secs_f64();
            assert!(
                (front + behind - 40_000.0).abs() < 1.0,
                "{waiting} waiting: {i:?} gives {} frames/s",
                front + behind
            );
        }
        assert_eq!(p.interval(1_000, 99_100), Duration::from_millis(2_500));
    }

    #[test]
    fn the_front_keeps_the_base_interval_however_long_the_line() {
        let p = policy();
        assert_eq!(p.interval(1, 1_000_000), p.base);
        assert_eq!(p.interval(100, 1_000_000), p.base);
        assert!(p.interval(101, 1_000_000) > p.base);
    }

    #[test]
    fn nobody_waits_longer_than_the_maximum() {
        let p = policy();
        assert_eq!(p.interval(101, 10_000_000), p.max);
        // A budget the front alone uses up.
        let tiny = Policy {
            frames_per_sec: 100,
            ..p
        };
        assert_eq!(tiny.interval(500, 1_000), p.max);
    }

    #[test]
    fn the_next_look_is_spread_around_the_interval_behind_the_front() {
        let p = policy();
        let waiting = 99_100;
        let interval = p.interval(1_000, waiting);
        assert_eq!(p.next_look(1_000, waiting, 0.0), interval / 2);
        assert_eq!(p.next_look(1_000, waiting, 0.5), interval);
        assert_eq!(
            p.next_look(1_000, waiting, 0.999_999),
            interval.mul_f64(1.499_999)
        );
        // The front keeps its interval; nobody waits past the maximum.
        assert_eq!(p.next_look(100, waiting, 0.0), p.base);
        assert_eq!(p.next_look(1_000, 10_000_000, 0.99), p.max);
        assert_eq!(p.next_look(1_000, 10_000_000, 0.0), p.max / 2);
        // Nor sooner than the base interval.
        assert_eq!(p.next_look(1_000, 10_000, 0.0), p.base);
    }

    #[test]
    fn no_budget_means_the_base_interval() {
        let p = Policy {
            frames_per_sec: 0,
            ..policy()
        };
        assert_eq!(p.interval(10_000, 10_000_000), p.base);
    }

    #[test]
    fn the_guard_counts_waiting_connections() {
        let settings = PushSettings {
            rank_interval_ms: 100,
            frame_budget: 10,
            front_ranks: 0,
            max_rank_interval_ms: 10_000,
            ..PushSettings::default()
        };
        let budget = FrameBudget::new(&settings);
        assert_eq!(budget.interval(1), Duration::from_millis(100));
        let guards: Vec<_> = (0..50).map(|_| budget.waiting()).collect();
        assert_eq!(budget.interval(1), Duration::from_secs(5));
        drop(guards);
        assert_eq!(budget.interval(1), Duration::from_millis(100));
    }
}
