//! The per-connection push loop, generic over the transport.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::budget::FrameBudget;
use super::CloseReason;
use crate::auth::admission::AdmissionKeys;
use crate::auth::Fan;
use crate::domain::{PushMessage, SessionId, ShowId, Timestamp};
use crate::queue::live::{MemberEvent, ShowSignal};
use crate::queue::{Connection, Place};
use crate::sales::availability::Delta;
use crate::sales::SalesService;
use crate::telemetry::metrics as m;

/// Something a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Application-level ping: answer with `pong`.
    Ping,
    /// Nothing to act on (protocol ping/pong, an SSE client cannot send).
    Nothing,
    /// The client went away.
    Gone,
    /// The client broke the protocol; close with this reason.
    Invalid(CloseReason),
}

/// A push transport: WebSocket or SSE.
pub trait Transport: Send {
    /// Sends one message; `Err` when the peer is gone.
    fn send(
        &mut self,
        msg: &PushMessage,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send;
    /// Keeps an idle connection open (ping frame / SSE comment).
    fn heartbeat(&mut self) -> impl std::future::Future<Output = Result<(), ()>> + Send;
    /// Waits for the next client message. Must be cancel-safe.
    fn inbound(&mut self) -> impl std::future::Future<Output = Inbound> + Send;
    fn close(&mut self, reason: CloseReason) -> impl std::future::Future<Output = ()> + Send;
}

/// What the loop needs besides the connection.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub admission: &'a AdmissionKeys,
    pub show: ShowId,
    pub fan: &'a Fan,
    /// The rank interval for this node's line ([`super::budget`]).
    pub budget: &'a FrameBudget,
    /// Where an admitted fan's seat deltas come from.
    pub sales: &'a SalesService,
    pub heartbeat: Duration,
    /// `ws` or `sse`, the metrics' `transport` label.
    pub transport: &'static str,
}

impl<'a> Context<'a> {
    pub fn new(
        state: &'a crate::http::AppState,
        caller: &'a crate::http::extract::QueueCaller,
        transport: &'static str,
    ) -> Self {
        Self {
            admission: state.admission(),
            show: caller.show.id,
            fan: &caller.fan,
            budget: state.frame_budget(),
            sales: state.sales(),
            heartbeat: state.push().heartbeat(),
            transport,
        }
    }
}

/// The message that describes `place` to this connection's fan.
fn message_for(place: &Place, ctx: &Context<'_>) -> PushMessage {
    super::message_for(place, ctx.admission, ctx.fan, ctx.show)
}

fn active_message(ctx: &Context<'_>, session: SessionId, until: Timestamp) -> PushMessage {
    message_for(&Place::Active { session, until }, ctx)
}

/// The show's seat deltas, for an admitted fan: followed from before the
/// fan hears `active`, so every change after the availability the page
/// then reads arrives. Without them (a backend failing) the fan still has
/// the turn; a hold of a seat taken meanwhile answers `seat_taken`.
async fn follow_seats(ctx: &Context<'_>) -> Option<broadcast::Receiver<Delta>> {
    seats_or_warn(ctx, ctx.sales.follow_seats(ctx.show).await)
}

/// [`follow_seats`] for a fan just admitted, in two steps around the
/// `active` frame so that the frame never waits for a read: `early`, taken
/// before the frame, is the subscription (no I/O) when this node has the
/// show's seat map; the mirror is loaded after the frame if it must be
/// (a database and a Redis read, which took a second behind an opening's
/// fan-out), and without the map (this node's first look at the show)
/// the whole follow comes after the frame: a delta the page then misses
/// shows as a version skip, and the page reads availability again.
async fn follow_seats_admitted(
    ctx: &Context<'_>,
    early: Option<broadcast::Receiver<Delta>>,
) -> Option<broadcast::Receiver<Delta>> {
    match early {
        Some(rx) => seats_or_warn(ctx, ctx.sales.seats_loaded(ctx.show).await.map(|()| rx)),
        None => follow_seats(ctx).await,
    }
}

fn seats_or_warn(
    ctx: &Context<'_>,
    followed: Result<broadcast::Receiver<Delta>, crate::sales::SaleError>,
) -> Option<broadcast::Receiver<Delta>> {
    match followed {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::warn!(error = %e, show = %ctx.show, "cannot follow seat availability");
            None
        }
    }
}

/// The next delta, or never when there is nothing to follow.
async fn next_delta(
    seats: &mut Option<broadcast::Receiver<Delta>>,
) -> Result<Delta, broadcast::error::RecvError> {
    match seats {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Active(SessionId),
}

/// What a waiting fan is told when the show's signal moves from `before` to
/// `now`: `paused` when it pauses, `all_seats_held` when every seat left
/// becomes held. (A resume is a fresh rank, which the loop sends.)
fn signal_messages(before: &ShowSignal, now: &ShowSignal) -> Vec<PushMessage> {
    let mut out = Vec::new();
    if now.paused && !before.paused {
        out.push(PushMessage::Paused);
    }
    if now.all_seats_held && !before.all_seats_held {
        out.push(PushMessage::Notice {
            code: "all_seats_held",
            text: None,
        });
    }
    out
}

/// What any fan, waiting or admitted, is told when the operator's notice
/// changes (set, replaced or cleared).
fn notice_message(before: &ShowSignal, now: &ShowSignal) -> Option<PushMessage> {
    (before.notice != now.notice).then(|| PushMessage::operator_notice(now.notice.clone()))
}

/// Runs one connection until the fan's entry ends, the client leaves or
/// breaks the protocol, or the gateway shuts down.
pub async fn run<T: Transport>(
    transport: &mut T,
    mut conn: Connection,
    ctx: Context<'_>,
    shutdown: CancellationToken,
) {
    // Read the place after marking the epoch seen, so a change between
    // `connect` and now (the upgrade handshake) is in this first message or
    // wakes the loop; never lost.
    let mut last_epoch = *conn.listener.epoch.borrow_and_update();
    let initial = match conn.listener.place() {
        Place::NotInQueue => conn.initial.clone(),
        place => place,
    };
    // Handles resolved once per connection: the fan-out path stays a few
    // atomic adds.
    let rank_sent = metrics::counter!(m::RANK_SENT);
    let rank_coalesced = metrics::counter!(m::RANK_COALESCED);
    let mut seats = match initial {
        Place::Active { .. } => follow_seats(&ctx).await,
        _ => None,
    };
    let first = message_for(&initial, &ctx);
    if transport.send(&first).await.is_err() {
        return;
    }
    if matches!(first, PushMessage::Rank { .. }) {
        rank_sent.increment(1);
    }
    if first.is_terminal() {
        transport.close(CloseReason::Done).await;
        return;
    }
    // What the show's connections follow besides ranks; a fan who connects
    // while it holds hears it right after their place.
    let mut signal = conn.listener.signal.borrow_and_update().clone();
    let mut news = match first {
        PushMessage::Rank { .. } => signal_messages(&ShowSignal::default(), &signal),
        _ => Vec::new(),
    };
    news.extend(notice_message(&ShowSignal::default(), &signal));
    for msg in news {
        if transport.send(&msg).await.is_err() {
            return;
        }
    }
    let mut phase = match initial {
        Place::Active { session, .. } => Phase::Active(session),
        _ => Phase::Waiting,
    };
    let mut last_rank = match first {
        PushMessage::Rank {
            rank, eta_seconds, ..
        } => Some((rank, eta_seconds)),
        _ => None,
    };
    // On the node's count of waiting connections while waiting (the frame budget).
    let mut counted = (phase == Phase::Waiting).then(|| ctx.budget.waiting());
    let mut last_rank_at = Instant::now();
    let mut rank_due: Option<Instant> = None;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + ctx.heartbeat, ctx.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        // A rank due now goes out before waiting on anything: a connection
        // woken by the fan-out sends in that same turn, with no timer in
        // between.
        if rank_due.is_some_and(|due| due <= Instant::now()) {
            rank_due = None;
            // Marked seen before reading, so a change during the read
            // wakes us again.
            let epoch = *conn.listener.epoch.borrow_and_update();
            let changes = epoch.saturating_sub(last_epoch);
            last_epoch = epoch;
            let mut sent = false;
            if let Place::Waiting {
                rank,
                eta_seconds,
                paused,
            } = conn.listener.place()
            {
                if last_rank != Some((rank, eta_seconds)) {
                    let msg = PushMessage::Rank {
                        rank,
                        ahead: rank.saturating_sub(1),
                        eta_seconds,
                        paused,
                    };
                    if transport.send(&msg).await.is_err() {
                        return;
                    }
                    sent = true;
                    last_rank = Some((rank, eta_seconds));
                    last_rank_at = Instant::now();
                    // Look again about one interval on instead of waking at the
                    // next epoch bump: in a moving line every connection
                    // that sent would wake at each promotion, all at once.
                    rank_due = Some(last_rank_at + ctx.budget.next_look(rank));
                }
            }
            rank_sent.increment(u64::from(sent));
            rank_coalesced.increment(changes.saturating_sub(u64::from(sent)));
        }
        let waiting = phase == Phase::Waiting;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                transport.close(CloseReason::Restarting).await;
                return;
            }
            event = conn.listener.events.recv() => {
                let Some(event) = event else {
                    // Cut off for not reading its events; the client
                    // reconnects and starts from the current state.
                    transport.close(CloseReason::Lagging).await;
                    return;
                };
                let mut freed = None;
                let mut early_seats = None;
                let msg = match event {
                    MemberEvent::Admitted { session, until, freed_at } => {
                        if phase == Phase::Active(session) {
                            continue;
                        }
                        phase = Phase::Active(session);
                        rank_due = None;
                        drop(counted.take());
                        freed = freed_at;
                        if seats.is_none() {
                            early_seats = ctx.sales.follow_seats_now(ctx.show);
                        }
                        active_message(&ctx, session, until)
                    }
                    MemberEvent::Expiring { session, seconds_left } => {
                        if phase != Phase::Active(session) {
                            continue;
                        }
                        PushMessage::Expiring { seconds_left }
                    }
                    MemberEvent::Removed(reason) => message_for(&Place::Gone(reason), &ctx),
                };
                if transport.send(&msg).await.is_err() {
                    return;
                }
                if let Some(at) = freed {
                    metrics::histogram!(m::ACTIVATION_PUSH, "transport" => ctx.transport)
                        .record(at.until(Timestamp::now()).as_secs_f64());
                }
                if matches!(msg, PushMessage::Active { .. }) && seats.is_none() {
                    seats = follow_seats_admitted(&ctx, early_seats).await;
                }
                if msg.is_terminal() {
                    transport.close(CloseReason::Done).await;
                    return;
                }
            }
            delta = next_delta(&mut seats), if !waiting => match delta {
                Ok((version, changes)) => {
                    if transport.send(&PushMessage::Seats { version, changes }).await.is_err() {
                        return;
                    }
                }
                // Skipped deltas: the page sees the version gap and reads
                // availability again.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => seats = None,
            },
            changed = conn.listener.signal.changed() => {
                if changed.is_err() {
                    return;
                }
                let before = std::mem::replace(&mut signal, conn.listener.signal.borrow_and_update().clone());
                let now = &signal;
                let place = conn.listener.place();
                let mut news = match &place {
                    Place::Waiting { .. } => {
                        if before.paused && !now.paused {
                            // Resumed: a fresh rank (with its estimate) at once.
                            last_rank = None;
                            rank_due = Some(Instant::now());
                        }
                        signal_messages(&before, now)
                    }
                    Place::Prequeued { .. } => {
                        // The start moved (an operator's change). At the
                        // start itself the signal drops it; the opening's
                        // rank follows.
                        let moved = now.starts_at.is_some() && before.starts_at != now.starts_at;
                        let mut news: Vec<_> = moved.then(|| message_for(&place, &ctx)).into_iter().collect();
                        news.extend(signal_messages(&before, now));
                        news
                    }
                    _ => Vec::new(),
                };
                news.extend(notice_message(&before, now));
                for msg in news {
                    if transport.send(&msg).await.is_err() {
                        return;
                    }
                }
            }
            changed = conn.listener.epoch.changed(), if waiting && rank_due.is_none() => {
                if changed.is_err() {
                    return;
                }
                let interval = ctx.budget.interval(last_rank.map_or(0, |(rank, _)| rank));
                rank_due = Some((last_rank_at + interval).max(Instant::now()));
            }
            // Due: the top of the loop sends it.
            () = tokio::time::sleep_until(rank_due.unwrap_or_else(Instant::now)), if rank_due.is_some() => {}
            inbound = transport.inbound() => match inbound {
                Inbound::Ping => {
                    if transport.send(&PushMessage::Pong).await.is_err() {
                        return;
                    }
                }
                Inbound::Nothing => {}
                Inbound::Gone => return,
                Inbound::Invalid(reason) => {
                    transport.close(reason).await;
                    return;
                }
            },
            _ = heartbeat.tick() => {
                if transport.heartbeat().await.is_err() {
                    return;
                }
            }
        }
    }
}
