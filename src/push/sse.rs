//! The Server-Sent Events endpoint: the same messages as the WebSocket, for
//! networks that block WebSockets. Each event carries an increasing `id:`;
//! a reconnecting `EventSource` sends `Last-Event-ID`, and since every
//! connection starts with the current state, resuming loses nothing and ids
//! keep increasing across reconnects.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::session::{self, Context, Inbound, Transport};
use super::CloseReason;
use crate::domain::{PushMessage, ShowId};
use crate::http::error::ApiError;
use crate::http::extract::QueueCaller;
use crate::http::origin::AllowedOrigin;
use crate::http::AppState;

/// The metrics' `transport` label.
const TRANSPORT: &str = "sse";

/// How long a browser waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(2);

/// Opens the push channel for a fan in the queue (Server-Sent Events).
#[utoipa::path(get, path = "/v1/shows/{show_id}/queue/sse", tag = "push",
    operation_id = "connect_sse",
    params(("show_id" = ShowId, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id seen, on a reconnect: ids go on from it")),
    responses((status = 200, content_type = "text/event-stream",
            description = "An event stream: each event's data is a message of `/asyncapi.json`"),
        (status = 403, description = "`origin_not_allowed`: a page of an origin not allowed"),
        (status = 404, description = "`show_not_found`")),
    security(("ticket_query" = []), ("ticket" = [])))]
pub async fn connect(
    State(state): State<AppState>,
    _origin: AllowedOrigin,
    caller: QueueCaller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let conn = state.queue().connect(&caller.show, caller.fan.id).await?;
    // One slot: the loop waits for the client to take each event, so
    // coalescing happens in the loop, never in a queue.
    let (tx, rx) = mpsc::channel(1);
    let tasks = state.tasks().clone();
    tasks.spawn(async move {
        let _gauge = super::ConnectionGauge::new(TRANSPORT);
        let mut transport = SseTransport {
            tx,
            next_id: last_id.saturating_add(1),
        };
        let ctx = Context::new(&state, &caller, TRANSPORT);
        session::run(&mut transport, conn, ctx, state.shutdown().clone()).await;
    });
    Ok(Sse::new(ReceiverStream::new(rx)))
}

struct SseTransport {
    tx: mpsc::Sender<Result<Event, Infallible>>,
    next_id: u64,
}

impl Transport for SseTransport {
    async fn send(&mut self, msg: &PushMessage) -> Result<(), ()> {
        let mut event = Event::default()
            .id(self.next_id.to_string())
            .data(msg.to_json());
        if self.next_id == 1 {
            event = event.retry(RETRY);
        }
        self.next_id = self.next_id.saturating_add(1);
        self.tx.send(Ok(event)).await.map_err(|_| ())
    }

    async fn heartbeat(&mut self) -> Result<(), ()> {
        self.tx
            .send(Ok(Event::default().comment("keep-alive")))
            .await
            .map_err(|_| ())
    }

    async fn inbound(&mut self) -> Inbound {
        self.tx.closed().await;
        Inbound::Gone
    }

    async fn close(&mut self, _reason: CloseReason) {
        // Ending the stream is the close; the task drops the sender next.
    }
}
