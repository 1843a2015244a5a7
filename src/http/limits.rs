//! Rate limits: per client IP on sign-in and join (the [`per_ip`]
//! middleware on those two routes), and per signed-in fan on join, status
//! and seat holds ([`Limits::identity`], the first line of those handlers);
//! each [`Class`] of request counted on its own.
//!
//! governor's keyed GCRA limiters: a sustained rate with a burst, one small
//! state per key, and the wait until the next request would pass, which
//! becomes `Retry-After`. A request over a limit is answered 429 before the
//! handler runs, so it changes nothing. The limits are per node: behind a
//! load balancer that spreads one client over n nodes, it gets up to n
//! times the rate, which is still a bound.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::AppState;
use crate::config::LimitSettings;
use crate::domain::UserId;

/// How often keys whose budget has refilled are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What a request does. Each class has a budget of its own, per IP and per
/// fan: a fan's status polls cannot use up its joins or seat holds, and the
/// fans behind one NAT who all sign in and join spend one sign-in and one
/// join each, not two of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    SignIn,
    Join,
    Status,
    Reserve,
}

/// The gateway's rate limiters. Cloning shares them.
#[derive(Clone)]
pub struct Limits(Arc<Limiters>);

struct Limiters {
    ip: DefaultKeyedRateLimiter<(Class, IpAddr)>,
    identity: DefaultKeyedRateLimiter<(Class, UserId)>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("ip_keys", &self.0.ip.len())
            .field("identity_keys", &self.0.identity.len())
            .finish()
    }
}

impl Limits {
    /// Limiters for `settings`, whose rates [`crate::config::Settings::validate`]
    /// has checked are not zero.
    pub fn new(settings: &LimitSettings) -> Self {
        let quota = |per_second: u32, burst: u32| {
            let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
        };
        Self::with_quotas(
            quota(settings.ip_per_second, settings.ip_burst),
            quota(settings.identity_per_second, settings.identity_burst),
        )
    }

    fn with_quotas(ip: Quota, identity: Quota) -> Self {
        Self(Arc::new(Limiters {
            ip: DefaultKeyedRateLimiter::dashmap(ip),
            identity: DefaultKeyedRateLimiter::dashmap(identity),
        }))
    }

    /// Counts one request of `user` of this class: `Err` (429) when over
    /// the per-identity limit.
    pub fn identity(&self, user: UserId, class: Class) -> Result<(), ApiError> {
        self.0
            .identity
            .check_key(&(class, user))
            .map_err(|not_until| ApiError::TooManyRequests {
                retry_after: not_until.wait_time_from(self.0.identity.clock().now()),
            })
    }

    /// Counts one request of this class from the client at `ip`: `Err`
    /// (429) when over the per-IP limit.
    pub fn ip(&self, ip: IpAddr, class: Class) -> Result<(), ApiError> {
        self.0
            .ip
            .check_key(&(class, ip_key(ip)))
            .map_err(|not_until| ApiError::TooManyRequests {
                retry_after: not_until.wait_time_from(self.0.ip.clock().now()),
            })
    }

    /// Forgets every key whose budget has refilled, until `shutdown`.
    ///
    /// governor's keyed store keeps a state for every key it has seen, and
    /// a flood from many addresses (an IPv6 attacker has plenty) would grow
    /// it without end. A key with a full budget is no different from a key
    /// never seen, so dropping it changes no answer; after each sweep the
    /// store holds only the clients seen in the last [`SWEEP_EVERY`] plus
    /// their refill time (burst / rate: 5 s per IP and 2 s per fan by
    /// default).
    pub async fn sweep(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            for store in [&self.0.ip as &dyn Sweep, &self.0.identity] {
                store.sweep();
            }
        }
    }
}

/// A keyed limiter whose refilled keys can be dropped.
trait Sweep {
    fn sweep(&self);
}

impl<K: std::hash::Hash + Eq + Clone> Sweep for DefaultKeyedRateLimiter<K> {
    fn sweep(&self) {
        self.retain_recent();
        self.shrink_to_fit();
    }
}

/// The key of a client address. An IPv6 client counts by its /64: one
/// subscriber (a home, a phone) gets a whole /64 and could otherwise take a
/// fresh address, and a fresh budget, for every request.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// The per-IP limit of a class, as middleware on the route it covers
/// (`from_fn_with_state((state, class), per_ip)`): runs before the route's
/// extractors, so a refused request costs no token check or lookup.
pub async fn per_ip(
    State((state, class)): State<(AppState, Class)>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no peer address on the request: serve the router with ConnectInfo<SocketAddr>"
            ))
        })?;
    let client = state.proxies().client_ip(peer, req.headers());
    state.limits().ip(client, class)?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both limits at one request per `period`, with this burst.
    fn limits(period: Duration, burst: u32) -> Limits {
        let quota = Quota::with_period(period)
            .expect("a period")
            .allow_burst(NonZeroU32::new(burst).expect("a burst"));
        Limits::with_quotas(quota, quota)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_burst_passes_then_429_with_the_wait() {
        let limits = limits(HOUR, 3);
        let fan = UserId(1);
        for _ in 0..3 {
            limits
                .identity(fan, Class::Status)
                .expect("within the burst");
        }
        match limits.identity(fan, Class::Status) {
            Err(ApiError::TooManyRequests { retry_after }) => {
                assert!(
                    retry_after > HOUR - Duration::from_secs(60) && retry_after <= HOUR,
                    "the wait for the next token: {retry_after:?}"
                );
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Other classes and other fans have budgets of their own.
        limits
            .identity(fan, Class::Join)
            .expect("joins are counted apart");
        limits
            .identity(UserId(2), Class::Status)
            .expect("another fan");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let limits = limits(HOUR, 1);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let join = Class::Join;
        limits.ip(ip("2001:db8:1:2::1"), join).expect("first");
        assert!(
            limits.ip(ip("2001:db8:1:2::ffff"), join).is_err(),
            "same /64"
        );
        limits.ip(ip("2001:db8:1:3::1"), join).expect("another /64");
        limits.ip(ip("192.0.2.1"), join).expect("an IPv4 client");
        assert!(
            limits.ip(ip("::ffff:192.0.2.1"), join).is_err(),
            "the same client, IPv4-mapped"
        );
        limits
            .ip(ip("192.0.2.1"), Class::SignIn)
            .expect("sign-ins are counted apart");
    }

    #[test]
    fn a_sweep_forgets_only_refilled_keys() {
        let ip = "192.0.2.1".parse::<IpAddr>().expect("ip");
        let spent = limits(HOUR, 2);
        spent.ip(ip, Class::SignIn).expect("first");
        spent.0.ip.sweep();
        assert_eq!(spent.0.ip.len(), 1, "a key with a spent budget is kept");

        let fast = limits(Duration::from_millis(1), 1);
        fast.ip(ip, Class::SignIn).expect("first");
        assert_eq!(fast.0.ip.len(), 1);
        // The budget of one is back a millisecond later.
        std::thread::sleep(Duration::from_millis(5));
        fast.0.ip.sweep();
        assert_eq!(fast.0.ip.len(), 0, "a refilled key is dropped");
    }
}
