//! Presence that survives the node: who is connected, kept where the
//! survivors can read it when a node dies without saying so.
//!
//! A waiting fan with a live connection is never abandoned; the connection's
//! close starts the abandonment grace ([`super::Connection`]). A node killed
//! with `kill -9` closes nothing, so on a shared store every node also
//!
//! - keeps a **lease** (renewed every third of `presence.lease_secs`), and
//! - records, beside each entry and in the same script call that counts it,
//!   which of the entry's live connections are its own
//!   (`lua/presence.lua`), with a copy in memory ([`QueueService::rewrite_presence`]).
//!
//! At each renewal a node claims every lease that lapsed (one survivor
//! claims each, atomically; none in the first lease of its own run of
//! renewals, so after a store outage every node has a lease to renew) and
//! reaps the lapsed node's connections: each is
//! uncounted **as of the lapse**, so the grace runs from the moment the node
//! stopped answering, not from the claim. Then every waiting fan with no
//! live connection gets an abandonment check a grace after they were last
//! seen (the lapsed node's own pending checks died with it). A fan who
//! reconnects anywhere within the grace is counted there and keeps the spot.
//!
//! A claim is a record (`lapsed`) until every show has been reaped; the
//! reaping takes each show's records as it uncounts them, so a claimer that
//! dies half-way leaves the rest to the next survivor, and nothing is
//! uncounted twice. A node that stops gracefully lapses itself at once. A
//! node that was only slow (its lease claimed while it still served) takes
//! a new name and records its connections again there.
//!
//! The embedded store is one process: nothing survives it, and none of this
//! runs there.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::jobs::retry_delay;
use super::{QueueError, QueueService};
use crate::domain::{ShowId, Timestamp, UserId};
use crate::store::redis::LeaseRenewal;
use crate::store::{Detach, QueueStore, RedisQueueStore};
use crate::telemetry::metrics as m;

/// How many connection records a rewrite sends at once.
const REWRITE_CONCURRENCY: usize = 64;
/// The most closed connections one detach call carries (a few hundred
/// microseconds of Redis time).
const DETACH_BATCH: usize = 256;
/// Detach calls in flight at once. Connections that close meanwhile wait
/// for the next call and go in it together: a mass disconnect (a load
/// balancer's restart, a closed show's fans leaving) costs calls by the
/// hundred, not one per fan. One call per connection, 16,000 at once, missed
/// the Redis deadline, opened its circuit breaker (failing the promotions
/// that shared it) and retried 16,000 times a second.
const DETACH_CALLS: usize = 4;

/// This node's lease in the shared store.
#[derive(Debug)]
pub struct Lease {
    queue: QueueService,
    redis: Arc<RedisQueueStore>,
    length: Duration,
    /// Names this node gave up (its lease was claimed) whose records it has
    /// not taken back yet, and so owes a rewrite of its records
    /// ([`Lease::renew`]).
    retired: std::sync::Mutex<Vec<String>>,
}

impl QueueService {
    /// Takes this node's first lease (before it serves a connection, so no
    /// connection is recorded under a name nobody could claim), or `None` on
    /// the embedded store.
    pub async fn take_lease(&self, length: Duration) -> Result<Option<Lease>, QueueError> {
        let QueueStore::Redis(redis) = &self.inner.store else {
            return Ok(None);
        };
        let lease = Lease {
            queue: self.clone(),
            redis: redis.clone(),
            length,
            retired: std::sync::Mutex::default(),
        };
        let renewal = lease.renew_once(true).await?;
        tracing::info!(node = %redis.node(), lease = ?length, "node lease taken");
        lease.settle(renewal).await;
        Ok(Some(lease))
    }

    /// Detaches closed connections ([`super::Connection`]) until shutdown:
    /// those closed while [`DETACH_CALLS`] calls are in flight go in the
    /// next call together, up to [`DETACH_BATCH`] a call.
    pub async fn run_detaches(
        self,
        mut closed: mpsc::UnboundedReceiver<(ShowId, Detach)>,
        shutdown: CancellationToken,
    ) {
        let calls = Arc::new(Semaphore::new(DETACH_CALLS));
        loop {
            let call = tokio::select! {
                () = shutdown.cancelled() => return,
                call = calls.clone().acquire_owned() => match call {
                    Ok(call) => call,
                    Err(_) => return,
                },
            };
            let mut batch = Vec::with_capacity(DETACH_BATCH);
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = closed.recv_many(&mut batch, DETACH_BATCH) => if received == 0 {
                    return;
                },
            }
            let queue = self.clone();
            let shutdown = shutdown.clone();
            self.inner.tasks.spawn(async move {
                let mut by_show = BTreeMap::<ShowId, Vec<Detach>>::new();
                for (show, detach) in batch {
                    by_show.entry(show).or_default().push(detach);
                }
                for (show, closed) in by_show {
                    queue.detach_until_done(show, &closed, &shutdown).await;
                }
                drop(call);
            });
        }
    }

    /// Detaches `closed` in one call, again after a backoff while the store
    /// is down (holding its place among the calls in flight: closes keep
    /// arriving and wait for a store that answers, then go in batches).
    /// Each fan's abandonment grace runs from their close.
    async fn detach_until_done(
        &self,
        show: ShowId,
        closed: &[Detach],
        shutdown: &CancellationToken,
    ) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.detach(show, closed).await;
            match outcome {
                Err(e) if e.is_transient() => {
                    let delay = retry_delay(attempt);
                    tracing::warn!(error = %e, %show, connections = closed.len(), attempt, retry_in = ?delay, "detach failed; retrying");
                    metrics::counter!(m::JOB_RETRIES, "kind" => "detach")
                        .increment(closed.len() as u64);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                outcome => {
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, %show, connections = closed.len(), "detach failed");
                    }
                    // Off this node's records once it landed (or never will).
                    for d in closed {
                        self.released(show, d.user, d.seq);
                    }
                    return;
                }
            }
        }
    }

    /// Uncounts connections closed at their `at`, and sets each fan's
    /// abandonment check a grace after it. (The show is read first: a
    /// failure after the store call would retry, and count the closes
    /// twice.)
    async fn detach(&self, show: ShowId, closed: &[Detach]) -> Result<(), QueueError> {
        let grace = self.show(show).await?.abandon_grace;
        self.inner.store.detach(show, closed).await?;
        let now = Timestamp::now();
        for d in closed {
            self.schedule_abandon_check(show, d.user, now.until(d.at.plus(grace)));
        }
        Ok(())
    }

    /// Counts connection `seq` of the fan as held by this node.
    pub(super) fn held(&self, show: ShowId, user: UserId, seq: u64) {
        *self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((show, user, seq))
            .or_default() += 1;
    }

    /// One of this node's connections to entry `seq` closed.
    pub(super) fn released(&self, show: ShowId, user: UserId, seq: u64) {
        let mut held = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&(show, user, seq)) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&(show, user, seq));
            }
        }
    }

    /// Writes this node's connection records again from its own copy,
    /// counting each in its entry's `live` unless already counted there
    /// (idempotent). For when the store lost them: this node's lease was
    /// claimed while it still served (then under a new name), or Redis lost
    /// its data and the entries were rebuilt. Returns how many entries it
    /// wrote; 0 on the embedded store, which cannot lose them.
    pub async fn rewrite_presence(&self) -> Result<usize, QueueError> {
        let QueueStore::Redis(redis) = &self.inner.store else {
            return Ok(0);
        };
        let held: Vec<(ShowId, UserId, u64)> = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        let written = held.len();
        futures::stream::iter(held)
            .map(|(show, user, seq)| async move {
                // Read now, not with the list: a connection may have closed
                // since.
                let count = self
                    .inner
                    .connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&(show, user, seq))
                    .copied()
                    .unwrap_or(0);
                redis.register(show, user, seq, count).await
            })
            .buffer_unordered(REWRITE_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(written)
    }

    /// Uncounts lapsed `node`'s connections in every show as of `lapse`,
    /// sets the abandonment checks, then drops the node's record. Any
    /// failure leaves the record for the next renewal (what was reaped stays
    /// reaped).
    ///
    /// A check is set for every waiting fan with no live connection, not
    /// only the reaped ones: the lapsed node's pending checks died with it
    /// (fans who left it shortly before, or joined or polled through it),
    /// and a check runs at most once per fan here, acting only on a fan
    /// still absent a grace after they were last seen.
    async fn reap_node(
        &self,
        redis: &RedisQueueStore,
        node: &str,
        lapse: Timestamp,
    ) -> Result<(), QueueError> {
        let mut reaped = 0u64;
        for show in self.shows().await? {
            for (_, connections) in redis.reap(show.id, node, lapse).await? {
                reaped += u64::from(connections);
            }
            let now = Timestamp::now();
            for (user, last_seen) in redis.unattended(show.id).await? {
                let remaining = now.until(last_seen.plus(show.abandon_grace));
                self.schedule_abandon_check(show.id, user, remaining);
            }
        }
        metrics::counter!(m::PRESENCE_REAPED).increment(reaped);
        redis.forget_lapsed(node).await?;
        tracing::warn!(
            node,
            lapsed_at = lapse.0,
            connections = reaped,
            "reaped a lapsed node's connections; their fans' abandonment grace runs from the lapse"
        );
        Ok(())
    }
}

impl Lease {
    /// Renews the lease every third of its length until shutdown, claiming
    /// and reaping lapsed nodes; then gives it up. A failed renewal is
    /// logged and retried at the next tick.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.length / 3;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            let renewed = tokio::select! {
                () = shutdown.cancelled() => break,
                renewed = self.renew() => renewed,
            };
            if let Err(e) = renewed {
                tracing::warn!(error = %e, node = %self.redis.node(), "lease renewal failed; retrying");
            }
        }
        // Whatever this node's closing connections do not uncount, a
        // survivor reaps as of now.
        if let Err(e) = self.redis.release_lease(Timestamp::now()).await {
            tracing::warn!(error = %e, "could not release the node lease; it lapses by itself");
        }
    }

    /// One renewal: keeps the lease (under a new name if it was lost while
    /// this node served), claims lapsed leases and reaps what it must.
    async fn renew(&self) -> Result<(), QueueError> {
        let mut renewal = self.renew_once(false).await?;
        if !renewal.present {
            // A survivor claimed this node's lease (it stalled, or could not
            // reach the store, for longer than the lease) and reaps, or has
            // reaped, its records; or the store lost them. Records written
            // again under the old name could be reaped with the rest, so
            // take a new name, with a lease, and write them there.
            let old = self.redis.node();
            let new = self.redis.rotate_node();
            tracing::warn!(
                old,
                new,
                "this node's lease was lost; recording its connections afresh under a new name"
            );
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(old);
            renewal = self.renew_once(true).await?;
        }
        // Owed until done: a failure here is retried at the next renewal.
        if self.take_back_retired().await? {
            let written = self.queue.rewrite_presence().await?;
            tracing::info!(written, "connections recorded again");
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        self.settle(renewal).await;
        Ok(())
    }

    /// Takes back what is recorded under names this node gave up: the
    /// connections it opened after a survivor reaped the old name and before
    /// it noticed (those records were made afresh, and no survivor reaps
    /// them again). The rewrite that follows counts every connection under
    /// the new name; left there, these would count twice and their fans
    /// never be abandoned. Returns whether there were any (a rewrite is
    /// then owed); the names stay listed until the rewrite is done, and
    /// taking back twice finds nothing the second time.
    async fn take_back_retired(&self) -> Result<bool, QueueError> {
        let names = self
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if names.is_empty() {
            return Ok(false);
        }
        let shows = self.queue.shows().await?;
        for name in &names {
            for show in &shows {
                self.redis.reap(show.id, name, Timestamp::now()).await?;
            }
        }
        Ok(true)
    }

    /// Counts the claims a renewal made and reaps the nodes it must.
    async fn settle(&self, renewal: LeaseRenewal) {
        if renewal.claimed > 0 {
            metrics::counter!(m::PRESENCE_CLAIMED).increment(renewal.claimed);
            tracing::warn!(
                claimed = renewal.claimed,
                "claimed lapsed node leases (nodes that stopped renewing)"
            );
        }
        for (node, lapse) in renewal.to_reap {
            if let Err(e) = self.queue.reap_node(&self.redis, &node, lapse).await {
                tracing::warn!(error = %e, node, "reaping a lapsed node failed; retrying at the next renewal");
            }
        }
    }

    async fn renew_once(&self, create: bool) -> Result<LeaseRenewal, QueueError> {
        let now = Timestamp::now();
        Ok(self
            .redis
            .renew_lease(now, now.plus(self.length), create)
            .await?)
    }
}
