//! Latency samples and the summaries the report prints.

use std::time::Duration;

use serde::Serialize;

/// Latency samples of one measurement, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

/// Percentiles of a [`Samples`], in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentiles; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            ms(sorted[rank - 1])
        };
        Some(Summary {
            count: sorted.len(),
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: ms(sorted[sorted.len() - 1]),
        })
    }
}

/// A gateway histogram's cumulative buckets, `(upper bound in seconds,
/// observations up to it)` by bound, `+Inf` last: what `/metrics` exports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Buckets(pub Vec<(f64, f64)>);

/// Quantiles read from a gateway's histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Buckets {
    /// The observations made between `before` and this reading.
    pub fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let was = before.0.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
                    (le, n - was)
                })
                .collect(),
        )
    }

    /// Both readings' observations together (the same histogram of two
    /// gateways).
    pub fn plus(&self, other: &Self) -> Self {
        if self.0.is_empty() {
            return other.clone();
        }
        Self(
            self.0
                .iter()
                .map(|&(le, n)| {
                    (
                        le,
                        n + other.0.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1),
                    )
                })
                .collect(),
        )
    }

    /// The `q` quantile, interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does (so it is as fine as the
    /// buckets: an upper bound, never a sample).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.0.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, n) in &self.0 {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let share = if n > lower.1 {
                    (rank - lower.1) / (n - lower.1)
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * share);
            }
            lower = (le, n);
        }
        None
    }

    pub fn estimate(&self) -> Option<Estimate> {
        let count = self.0.last()?.1;
        Some(Estimate {
            count: count as u64,
            p50_ms: (self.quantile(0.5)? * 1e6).round() / 1e3,
            p99_ms: (self.quantile(0.99)? * 1e6).round() / 1e3,
        })
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in (1..=100).rev() {
            s.push(Duration::from_millis(i));
        }
        let sum = s.summary().expect("samples");
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p95_ms, 95.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert!(Samples::default().summary().is_none());
    }

    #[test]
    fn bucket_quantiles_interpolate_like_prometheus() {
        let before = Buckets(vec![(0.01, 5.0), (0.02, 5.0), (f64::INFINITY, 5.0)]);
        let after = Buckets(vec![(0.01, 55.0), (0.02, 105.0), (f64::INFINITY, 105.0)]);
        let delta = after.since(&before);
        assert_eq!(
            delta,
            Buckets(vec![(0.01, 50.0), (0.02, 100.0), (f64::INFINITY, 100.0)])
        );
        // The median is the top of the first bucket; p99 is 49/50 of the
        // way through the second.
        assert!((delta.quantile(0.5).expect("q") - 0.01).abs() < 1e-12);
        assert!((delta.quantile(0.99).expect("q") - 0.0198).abs() < 1e-12);
        let estimate = delta.estimate().expect("observations");
        assert_eq!((estimate.count, estimate.p99_ms), (100, 19.8));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }
}
