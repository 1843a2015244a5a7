//! The WebSocket endpoint.
//!
//! Buffers are sized for many idle connections, not for throughput:
//! tungstenite's defaults (128 KiB read and write buffers, 64 MiB messages)
//! would cost far more per waiting fan than the fan's state. Server frames are
//! small JSON and written eagerly; client frames are tiny control messages.
//! No permessage-deflate (axum does not negotiate it), which would cost a
//! compressor per connection.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite;

use super::session::{self, Context, Inbound, Transport};
use super::CloseReason;
use crate::domain::{ClientMessage, PushMessage, ShowId};
use crate::http::error::ApiError;
use crate::http::extract::QueueCaller;
use crate::http::origin::AllowedOrigin;
use crate::http::AppState;

/// The metrics' `transport` label.
const TRANSPORT: &str = "ws";

/// tungstenite allocates its read buffer whole when the socket opens, and
/// reads at most this much per call. A client sends only `ping` frames
/// (about 20 bytes with the header), so a small buffer serves every one in
/// one read; a larger frame (up to [`MAX_FRAME`]) grows it for its length.
/// 2 KiB here was a quarter of an idle connection's memory.
const READ_BUFFER: usize = 256;
const MAX_WRITE_BUFFER: usize = 64 * 1024;
/// Frames above this are refused by the protocol layer itself; between the
/// configured application limit and this, we close with 1009 ourselves.
const MAX_FRAME: usize = 8 * 1024;
/// How long to linger after our Close when the peer cannot be read any more.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);
/// How long to wait for the peer's Close after sending ours.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the push channel for a fan in the queue (WebSocket).
#[utoipa::path(get, path = "/v1/shows/{show_id}/queue/ws", tag = "push",
    operation_id = "connect_websocket", params(("show_id" = ShowId, Path)),
    responses((status = 101, description = "Switching to WebSocket: the messages are in `/asyncapi.json`"),
        (status = 400, description = "`websocket_required`: not a WebSocket handshake"),
        (status = 403, description = "`origin_not_allowed`: a page of an origin not allowed"),
        (status = 404, description = "`show_not_found`")),
    security(("ticket_query" = []), ("ticket" = [])))]
pub async fn connect(
    State(state): State<AppState>,
    _origin: AllowedOrigin,
    caller: QueueCaller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(
            "websocket_required",
            format!("this endpoint needs a WebSocket upgrade: {}", e.body_text()),
        )
    })?;
    let conn = state.queue().connect(&caller.show, caller.fan.id).await?;
    let max_message = state.push().max_client_message_bytes;
    // axum does not wait for upgraded connections at shutdown; the tracker
    // does, so every socket gets its 1012 before the process exits.
    let tracked = state.tasks().token();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            let _gauge = super::ConnectionGauge::new(TRANSPORT);
            let (sink, stream) = socket.split();
            let mut transport = WsTransport {
                sink,
                stream,
                max_message,
                read_failed: false,
                last_heard: tokio::time::Instant::now(),
                heartbeat: state.push().heartbeat(),
            };
            let ctx = Context::new(&state, &caller, TRANSPORT);
            session::run(&mut transport, conn, ctx, state.shutdown().clone()).await;
            drop(tracked);
        }))
}

struct WsTransport {
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    max_message: usize,
    /// The read side failed (it cannot be read past an oversized frame).
    read_failed: bool,
    /// Last frame of any kind from the client, pongs included.
    last_heard: tokio::time::Instant,
    heartbeat: std::time::Duration,
}

fn close_code(reason: CloseReason) -> (u16, &'static str) {
    match reason {
        CloseReason::Done => (1000, "done"),
        CloseReason::Restarting => (1012, "gateway restarting; reconnect"),
        CloseReason::InvalidPayload => (1007, "message is not valid JSON"),
        CloseReason::UnknownMessage => (1008, "unknown message type"),
        CloseReason::Unsupported => (1003, "binary frames are not supported"),
        CloseReason::TooBig => (1009, "message too big"),
        CloseReason::Lagging => (1013, "fell behind; reconnect"),
    }
}

/// Parses a client frame: JSON (else 1007) that is a [`ClientMessage`]
/// (else 1008).
fn parse_client(text: &str) -> Inbound {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Inbound::Invalid(CloseReason::InvalidPayload);
    };
    match ClientMessage::deserialize(value) {
        Ok(ClientMessage::Ping) => Inbound::Ping,
        Err(_) => Inbound::Invalid(CloseReason::UnknownMessage),
    }
}

impl Transport for WsTransport {
    async fn send(&mut self, msg: &PushMessage) -> Result<(), ()> {
        self.sink
            .send(Message::Text(msg.to_json().into()))
            .await
            .map_err(|_| ())
    }

    async fn heartbeat(&mut self) -> Result<(), ()> {
        // A peer that answered none of the last two pings is gone even if
        // writes still land in the kernel's buffer; ending here releases its
        // presence so the abandonment grace starts.
        if self.last_heard.elapsed() > self.heartbeat * 2 {
            return Err(());
        }
        self.sink
            .send(Message::Ping(Default::default()))
            .await
            .map_err(|_| ())
    }

    async fn inbound(&mut self) -> Inbound {
        let frame = self.stream.next().await;
        if let Some(Ok(_)) = frame {
            self.last_heard = tokio::time::Instant::now();
        }
        match frame {
            None | Some(Ok(Message::Close(_))) => Inbound::Gone,
            Some(Ok(Message::Text(text))) if text.len() > self.max_message => {
                Inbound::Invalid(CloseReason::TooBig)
            }
            Some(Ok(Message::Text(text))) => parse_client(text.as_str()),
            Some(Ok(Message::Binary(_))) => Inbound::Invalid(CloseReason::Unsupported),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Nothing,
            Some(Err(e)) => {
                self.read_failed = true;
                match e.into_inner().downcast::<tungstenite::Error>() {
                    Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => {
                        Inbound::Invalid(CloseReason::TooBig)
                    }
                    _ => Inbound::Gone,
                }
            }
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        let (code, text) = close_code(reason);
        let frame = CloseFrame {
            code,
            reason: text.into(),
        };
        // The peer may already be gone; nothing more to do then.
        if self.sink.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        // Closing handshake: read until the peer's Close, briefly. Dropping
        // the socket with unread input would reset the connection, and the
        // client would see the reset instead of our close code (this is what
        // happens to a client still sending an oversized frame).
        if self.read_failed {
            // The frame that broke the limit cannot be read past, so there is
            // no handshake to wait for: linger so the client reads our Close
            // before the reset.
            tokio::time::sleep(LINGER).await;
            return;
        }
        let drain = async {
            while let Some(Ok(msg)) = self.stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages() {
        assert_eq!(parse_client(r#"{"type":"ping"}"#), Inbound::Ping);
        assert_eq!(parse_client(r#"{"type":"ping","at":1}"#), Inbound::Ping);
        assert_eq!(
            parse_client(r#"{"kind":"ping"}"#),
            Inbound::Invalid(CloseReason::UnknownMessage)
        );
        assert_eq!(
            parse_client(r#"{"type":"buy"}"#),
            Inbound::Invalid(CloseReason::UnknownMessage)
        );
        assert_eq!(
            parse_client(r#"[1,2"#),
            Inbound::Invalid(CloseReason::InvalidPayload)
        );
    }
}
