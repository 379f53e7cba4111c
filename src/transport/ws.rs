//! `/ws`: the JSON protocol over WebSocket. Frames in become session input; session output
//! becomes frames, fed to the socket in a batch and flushed once, so a burst of publications for
//! one connection costs one write. The [`pump`] runs the rest.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use futures_util::{FutureExt, SinkExt};
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use switchboard_protocol::{Disconnect, ErrorCode, WS_SUBPROTOCOL};

use super::stomp;
use crate::admission::Ticket;
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::http::{ClientIp, HttpError, Peer, bearer};
use crate::metrics::TransportKind;
use crate::state::AppState;

/// The standard close code for a message over the size limit.
const TOO_BIG: Disconnect = Disconnect { code: 1009, reason: "message too big" };

pub(super) fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.config.max_frame_bytes;
    // Small by default (`ws_read_buffer_bytes`), because most connections are idle subscribers
    // sending small commands, and tungstenite grows it for a larger frame. Measured: 4 KiB →
    // 1 KiB took an idle subscribed connection from 9.6 to 6.6 KiB of RSS (tungstenite also
    // zero-fills it per read), 512 B and 256 B saved 512 and 256 more.
    ws.read_buffer_size(state.config.ws_read_buffer_bytes).max_message_size(max).max_frame_size(max)
}

/// `GET /ws`.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    ip: ClientIp,
    peer: Peer,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (ws, ticket) = match admit(&state, ip, &headers, ws) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let token = bearer(&headers).map(str::to_owned);
    let protocols = std::iter::once(WS_SUBPROTOCOL).chain(stomp::SUBPROTOCOLS);
    configure(ws, &state).protocols(protocols).on_upgrade(spawn_connection(move |socket: WebSocket| {
        // The connection's future is built here, before the task awaits it: an async block
        // keeps what it captured (the socket, the state) for its whole life, beside the copies
        // moved into the write loop, and every idle connection's task would hold both.
        // A client that offered only STOMP subprotocols speaks STOMP.
        let chosen = socket.protocol().and_then(|p| p.to_str().ok()).unwrap_or(WS_SUBPROTOCOL);
        if stomp::SUBPROTOCOLS.contains(&chosen) {
            // Boxed: a STOMP connection's future is larger than the JSON protocol's.
            Either::Left(Box::pin(stomp::run(socket, state, token, ticket, peer)))
        } else {
            let guard = state.metrics.connection(TransportKind::WebSocket);
            let transport = WsTransport { socket, batch: Vec::new(), pending_bytes: 0 };
            let driver = Driver::new(state, true).admitted(ticket).from(peer).on(TransportKind::WebSocket);
            let run = pump::run(transport, driver);
            // A combinator, not an async block: that would hold the write loop's future twice
            // (what it captured, and what it awaits).
            Either::Right(run.map(move |()| drop(guard)))
        }
    }))
}

/// An upgrade callback that spawns `f`'s future as the connection's own task and lets axum's
/// task end. axum's task keeps the socket it built beside the callback's future for as long as
/// that runs (measured: a 1.75 KiB task per idle connection); a task of our own holds only the
/// connection's future. Not in the request's span: the registry keeps about 350 bytes for each
/// open span, and the connection's lines make theirs when logged ([`Driver::log_span`]).
pub(super) fn spawn_connection<F>(
    f: impl FnOnce(WebSocket) -> F,
) -> impl FnOnce(WebSocket) -> std::future::Ready<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    move |socket| {
        tokio::spawn(f(socket));
        std::future::ready(())
    }
}

/// Admits a WebSocket handshake: it must be one (400/107 otherwise), a page's origin must be
/// allowed, and the node must have room (`max_connections`, and `max_connections_per_ip` for
/// `ip`). The ticket is held for the connection's life.
pub(super) fn admit(
    state: &Arc<AppState>,
    ip: ClientIp,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<(WebSocketUpgrade, Ticket), HttpError> {
    let ws = ws.map_err(|rejection| HttpError::new(ErrorCode::BadRequest, rejection.body_text()))?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crate::http::origin_allowed(&state.config, origin, host) {
        let m = "this page's origin may not open WebSockets here: add it to allowed_origins";
        return Err(HttpError::new(ErrorCode::PermissionDenied, m));
    }
    let ticket = state.admission.admit(ip.0).map_err(HttpError::connection_limit)?;
    Ok((ws, ticket))
}

/// The WebSocket framing of a connection.
struct WsTransport {
    socket: WebSocket,
    batch: Vec<Message>,
    pending_bytes: u64,
}

impl Transport for WsTransport {
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::WebSocket
    }

    fn frame(&mut self, out: Outgoing, _datagram: bool) -> Result<(), Disconnect> {
        let message = out.message();
        self.pending_bytes += message.bytes.len() as u64;
        self.batch.push(if message.binary {
            Message::Binary(message.bytes)
        } else {
            // Our encoder writes JSON, which is UTF-8; a failure here would be our bug.
            Message::Text(Utf8Bytes::try_from(message.bytes).map_err(|_| Disconnect::INTERNAL)?)
        });
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Feeds every message (tungstenite buffers them) and flushes once: one write for the batch.
    async fn flush(&mut self) -> Result<u64, ()> {
        write_batch(&mut self.socket, &mut self.batch).await?;
        // An idle connection keeps no batch (one allocation per write is cheap beside it).
        self.batch = Vec::new();
        Ok(std::mem::take(&mut self.pending_bytes))
    }

    // tokio-tungstenite keeps the waker in its own proxy, and the socket keeps that proxy's.
    const RECV_WAKE_PERSISTS: bool = true;

    async fn recv(&mut self) -> Inbound {
        match self.socket.recv().await {
            Some(Ok(Message::Text(text))) => Inbound::Frame(parse_client_frame(text.as_str()), text.len()),
            Some(Ok(Message::Binary(data))) => Inbound::Frame(parse_binary_frame(&data), data.len()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Nothing,
            Some(Ok(Message::Close(_))) => {
                // tungstenite queued the answering close frame; send it before going.
                let _ = self.socket.flush().await;
                Inbound::Gone
            }
            // Oversize messages end with the standard 1009; a broken socket just ends.
            Some(Err(e)) if is_too_big(&e) => Inbound::End(TOO_BIG),
            Some(Err(_)) | None => Inbound::Gone,
        }
    }

    /// Sends a close frame and waits (briefly) for the client's answer, as RFC 6455 asks.
    async fn close(mut self, d: Disconnect) {
        close_socket(&mut self.socket, d).await;
    }
}

/// Feeds every message (tungstenite buffers them) and flushes once: one write for the batch.
pub(super) async fn write_batch(socket: &mut WebSocket, batch: &mut Vec<Message>) -> Result<(), ()> {
    for message in batch.drain(..) {
        socket.feed(message).await.map_err(|_| ())?;
    }
    socket.flush().await.map_err(|_| ())
}

/// Sends a close frame with `d`'s code and waits (briefly) for the client's answer, as RFC 6455
/// asks.
pub(super) async fn close_socket(socket: &mut WebSocket, d: Disconnect) {
    let frame = CloseFrame { code: d.code, reason: Utf8Bytes::from_static(d.reason) };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error;
    matches!(e.source().and_then(|s| s.downcast_ref::<Error>()), Some(Error::Capacity(_)))
}

/// `GET /ws-echo`: a plain echo server on the same WebSocket stack as `/ws`, for the Autobahn
/// conformance suite. Only routed when `ws_echo_endpoint` is set.
pub async fn echo_handler(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    let max = state.config.max_frame_bytes.max(16 * 1024 * 1024);
    ws.max_message_size(max).max_frame_size(max).on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => {
                    let _ = socket.flush().await;
                    break;
                }
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size5<A, B, C, D, E, F>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle WebSocket connection holds is mostly its task's future: keep the write
    /// loop's small (it was 5.7 KiB when the transport and driver were passed by value).
    #[test]
    fn a_connections_future_stays_small() {
        let size = future_size(pump::run::<WsTransport>);
        assert!(size <= 1024, "pump::run's future is {size} bytes");
        let stomp = future_size5(stomp::run);
        assert!(stomp <= 2048, "stomp::run's future is {stomp} bytes");
    }
}
