//! The outbox relay: publishes events that the sale paths wrote to the
//! `outbox` table in the same transaction as their cause, then marks them
//! sent.
//!
//! - It wakes when this node commits a row ([`OutboxSignal::wake`]), so an
//!   event leaves within a round trip of its commit; a slow re-check also
//!   picks up rows whose writer died before publishing, or whose lease ran
//!   out.
//! - A payment's row is written already claimed by its node
//!   ([`OUTBOX_LEASE`]) and handed over with its event
//!   ([`OutboxSignal::hand`]): the relay publishes it from memory at once,
//!   without claiming it first. The claim's transaction (a locking read, an
//!   update, a commit) was most of a payment event's way to the consumers
//!   (docs/benchmarks.md, issue 15); the claim still keeps other relays off
//!   the row, and lapses if this node stops before publishing it.
//! - Rows are claimed for a lease before publishing, so several nodes'
//!   relays do not publish the same rows at once.
//! - A bus that is down delays events and loses none: unpublished rows are
//!   given back and retried with capped backoff. Delivery is at least once
//!   (a crash between publish and mark re-publishes); consumers deduplicate
//!   by event id.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;
use crate::events::EventBus;
use crate::store::{Database, OutboxRow, OUTBOX_LEASE};

/// Rows per claim.
const BATCH: u32 = 256;
/// The re-check when nothing wakes the relay.
const RECHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes the relay after a commit that wrote outbox rows, with the rows
/// this node claimed as it wrote them.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal {
    wake: Arc<Notify>,
    handed: Arc<Mutex<Vec<OutboxRow>>>,
}

impl OutboxSignal {
    pub fn wake(&self) {
        // A permit is stored if the relay is busy, so no wake is lost.
        self.wake.notify_one();
    }

    /// Hands the relay a row this node wrote claimed, to publish as it is.
    pub fn hand(&self, row: OutboxRow) {
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(row);
        self.wake();
    }

    fn take_handed(&self) -> Vec<OutboxRow> {
        std::mem::take(&mut *self.handed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

pub async fn run(db: Database, bus: EventBus, signal: OutboxSignal, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let published = match publish(&db, &bus, &signal.take_handed()).await {
            Ok(()) => drain(&db, &bus).await,
            Err(why) => Err(why),
        };
        let delay = match published {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                RECHECK
            }
            Err(why) => {
                tracing::warn!(error = %why, retry_in = ?backoff, "outbox relay could not publish; retrying");
                let delay = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signal.wake.notified(), if delay == RECHECK => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Publishes every unsent row it can claim. Stops at the first batch that
/// did not fully publish.
async fn drain(db: &Database, bus: &EventBus) -> Result<(), String> {
    loop {
        let now = Timestamp::now();
        let rows = db
            .claim_outbox(BATCH, now, now.plus(OUTBOX_LEASE))
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(());
        }
        publish(db, bus, &rows).await?;
    }
}

/// Publishes claimed rows and settles them: sent, or given back to be
/// claimed again (by any relay) after a failure, which it returns.
async fn publish(db: &Database, bus: &EventBus, rows: &[OutboxRow]) -> Result<(), String> {
    if rows.is_empty() {
        return Ok(());
    }
    let results = futures::future::join_all(rows.iter().map(|row| bus.publish(&row.event))).await;
    let mut sent = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    let mut first_error = None;
    for (row, result) in rows.iter().zip(results) {
        match result {
            Ok(()) => sent.push(row.id),
            Err(e) => {
                failed.push(row.id);
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let now = Timestamp::now();
    db.settle_outbox(&sent, true, now)
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!(crate::telemetry::metrics::OUTBOX_PUBLISHED).increment(sent.len() as u64);
    db.settle_outbox(&failed, false, now)
        .await
        .map_err(|e| e.to_string())?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
