//! The admission consumer: turns slot-freeing events into promotions.
//!
//! Every handler is idempotent (a session is ended only if it is the one the
//! event names; promotion only fills free slots), and recently seen event ids
//! are skipped, so a redelivered event never admits anyone twice. The offset
//! is committed after the effect is applied; an event whose effect cannot be
//! applied yet (a backend is down) is retried, never skipped.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::QueueService;
use crate::config::Fault;
use crate::domain::Timestamp;
use crate::events::Subscription;
use crate::telemetry::metrics as m;

/// How many event ids to remember for deduplication. Redeliveries arrive
/// close to the original, so a window of recent ids is enough; beyond it the
/// handlers' own idempotence still holds.
const SEEN_WINDOW: usize = 65_536;

/// Consumes until shutdown. `fault` injects a failure (drills and tests).
pub async fn run(
    queue: QueueService,
    events: Subscription,
    fault: Option<Fault>,
    shutdown: CancellationToken,
) {
    let events = consume(queue, events, fault, shutdown).await;
    // Closing a Kafka consumer leaves its group: a blocking round trip to the
    // broker, kept off the async workers.
    let _ = tokio::task::spawn_blocking(move || drop(events)).await;
}

/// Applies events until shutdown; hands the subscription back to be closed.
async fn consume(
    queue: QueueService,
    mut events: Subscription,
    fault: Option<Fault>,
    shutdown: CancellationToken,
) -> Subscription {
    let mut seen = HashSet::new();
    let mut order = VecDeque::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return events,
            event = events.next() => match event {
                Some(e) => e,
                None => return events,
            },
        };
        if fault == Some(Fault::AdmissionConsumerPanic) {
            panic!(
                "injected fault: the admission consumer panics on event {}",
                event.id
            );
        }
        if seen.contains(&event.id) {
            if let Err(e) = events.commit().await {
                tracing::warn!(error = %e, "commit failed; the event may be redelivered");
            }
            continue;
        }
        let received = Instant::now();
        if !apply_with_retry(&queue, &event, &shutdown).await {
            return events;
        }
        let kind = event.kind.topic();
        metrics::histogram!(m::EVENT_APPLY, "type" => kind).record(received.elapsed());
        metrics::histogram!(m::EVENT_LATENCY, "type" => kind)
            .record(event.occurred_at.until(Timestamp::now()));
        metrics::counter!(m::EVENTS_APPLIED, "type" => kind).increment(1);
        seen.insert(event.id);
        order.push_back(event.id);
        if order.len() > SEEN_WINDOW {
            if let Some(old) = order.pop_front() {
                seen.remove(&old);
            }
        }
        if let Err(e) = events.commit().await {
            tracing::warn!(error = %e, "commit failed; the event may be redelivered");
        }
    }
}

/// Applies the event, retrying with capped exponential backoff while a
/// backend is down: moving past it (and committing) would lose a freed slot.
/// Returns false if shutdown came first; the event is then not committed and
/// is redelivered to whoever consumes next.
async fn apply_with_retry(
    queue: &QueueService,
    event: &crate::domain::DomainEvent,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match queue.apply_event(event).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, event = %event.id, kind = event.kind.topic(), retry_in = ?backoff, "event not applied yet");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
