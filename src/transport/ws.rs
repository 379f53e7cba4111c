//! `/ws`: the JSON protocol over WebSocket. Frames in (read by tungstenite) become session
//! input; session output becomes whole frames written beneath tungstenite in one vectored write
//! per batch, so a burst of publications for one connection costs one write, and a publication
//! is framed once for all its subscribers. The [`pump`] runs the rest.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use switchboard_protocol::{Disconnect, ErrorCode, WS_SUBPROTOCOL, ws_frame};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as RawCloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as RawMessage};

use super::stomp;
use crate::admission::Ticket;
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::direct::{DirectChannel, Framing};
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

/// `GET /ws`. The JSON protocol takes the upgrade itself (below axum's `WebSocket`), so that its
/// writes can go to the socket as whole frames, each publication's framed once for every
/// subscriber ([`WsTransport`]); a client that offers only STOMP gets axum's socket and
/// [`stomp::run`].
pub async fn handler(
    State(state): State<Arc<AppState>>,
    ip: ClientIp,
    peer: Peer,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let offered = |name: &str| {
        parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .any(|v| v.as_bytes().split(|&b| b == b',').any(|p| p.trim_ascii() == name.as_bytes()))
    };
    let json = offered(WS_SUBPROTOCOL);
    if !json && stomp::SUBPROTOCOLS.iter().any(|p| offered(p)) {
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &state).await;
        return stomp_handshake(state, ip, peer, &parts.headers, ws);
    }
    let checked = checked_upgrade(&mut parts).await;
    let (upgrade, ticket) = match admit(&state, ip, &parts.headers, checked) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    // The read buffer is small for the reason given in `configure`.
    let config = WebSocketConfig::default()
        .read_buffer_size(state.config.ws_read_buffer_bytes)
        .max_message_size(Some(state.config.max_frame_bytes))
        .max_frame_size(Some(state.config.max_frame_bytes));
    let response = switching_protocols(&parts.headers, json.then_some(WS_SUBPROTOCOL));
    let lab = parts.uri.query().is_some_and(|q| q.contains("sb_lab="));
    // The listener's plain TCP socket, when it may be lent to the fan-out.
    let direct = parts
        .extensions
        .remove::<crate::direct::Socket>()
        .filter(|_| !lab && state.config.direct_writes_per_publication > 0);
    on_socket(upgrade, config, move |socket| connection(socket, state, ticket, peer, lab, direct));
    response
}

/// Checks a WebSocket handshake with axum's extractor (which answers a bad one as it always
/// has), with the upgrade taken out first so that it stays ours: on a valid handshake the check
/// then fails only where it would have taken it, `ConnectionNotUpgradable`.
async fn checked_upgrade(parts: &mut Parts) -> Result<OnUpgrade, WebSocketUpgradeRejection> {
    let upgrade = parts.extensions.remove::<OnUpgrade>();
    match (WebSocketUpgrade::from_request_parts(parts, &()).await, upgrade) {
        (Err(WebSocketUpgradeRejection::ConnectionNotUpgradable(_)), Some(upgrade)) => Ok(upgrade),
        (Err(rejection), _) => Err(rejection),
        // The extractor cannot succeed without the upgrade; were it to, the request is no upgrade.
        (Ok(_), _) => Err(WebSocketUpgradeRejection::ConnectionNotUpgradable(Default::default())),
    }
}

/// The 101 answer to a checked handshake, choosing `protocol` if given.
fn switching_protocols(headers: &HeaderMap, protocol: Option<&'static str>) -> Response {
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map_or(&b""[..], |k| k.as_bytes());
    let mut response = Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key));
    if let Some(protocol) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response.body(axum::body::Body::empty()).unwrap_or_default()
}

/// Once the upgrade completes, runs `f`'s future on the socket. Two tasks, as axum does: one
/// waits for the upgrade, then spawns the connection's future as a task of its own, which holds
/// nothing but that future.
fn on_socket<F>(upgrade: OnUpgrade, config: WebSocketConfig, f: impl FnOnce(Socket) -> F + Send + 'static)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        tokio::spawn(f(socket));
    });
}

/// The JSON protocol's connection: its write loop, counted while it runs. A combinator, not an
/// async block: that would hold the write loop's future twice (what it captured, and what it
/// awaits).
fn connection(
    socket: Socket,
    state: Arc<AppState>,
    ticket: Ticket,
    peer: Peer,
    lab: bool,
    direct: Option<crate::direct::Socket>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let guard = state.metrics.connection(TransportKind::WebSocket);
    let transport = WsTransport { socket, frames: Vec::new(), pending_bytes: 0, lab, read: false };
    let mut driver = Driver::new(state, true).admitted(ticket).from(peer).on(TransportKind::WebSocket);
    if let Some(socket) = direct {
        driver = driver.with_direct(crate::direct::Direct::new(socket));
    }
    pump::run(transport, driver).map(move |()| drop(guard))
}

/// A STOMP client on `/ws`: axum's socket and [`stomp::run`].
fn stomp_handshake(
    state: Arc<AppState>,
    ip: ClientIp,
    peer: Peer,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (ws, ticket) = match admit(&state, ip, headers, ws) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let token = bearer(headers).map(str::to_owned);
    configure(ws, &state).protocols(stomp::SUBPROTOCOLS).on_upgrade(spawn_connection(
        move |socket: WebSocket| {
            // Boxed: a STOMP connection's future is larger than the JSON protocol's.
            Box::pin(stomp::run(socket, state, token, ticket, peer))
        },
    ))
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
pub(super) fn admit<U>(
    state: &Arc<AppState>,
    ip: ClientIp,
    headers: &HeaderMap,
    ws: Result<U, WebSocketUpgradeRejection>,
) -> Result<(U, Ticket), HttpError> {
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

/// The JSON protocol's socket: tungstenite over the upgraded connection.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The JSON protocol over WebSocket. Reads go through tungstenite; writes are whole frames
/// (a publication's is shared by every subscriber, [`Publication::ws_frame`]) written to the
/// socket beneath it in one vectored write per batch: no copy into a write buffer, no framing
/// per subscriber.
///
/// [`Publication::ws_frame`]: crate::model::Publication::ws_frame
struct WsTransport {
    socket: Socket,
    /// Framed, not yet written (the front one possibly in part).
    frames: Vec<Bytes>,
    pending_bytes: u64,
    /// In a transport lab session (`?sb_lab=`).
    lab: bool,
    /// tungstenite read since the last write: it may hold an answer to a ping to send first.
    read: bool,
}

impl Transport for WsTransport {
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::WebSocket
    }

    fn frame(&mut self, out: Outgoing, _datagram: bool) -> Result<(), Disconnect> {
        let frame = match out {
            Outgoing::Publication(p) => p.ws_frame().clone(),
            other => {
                let message = other.message();
                Bytes::from(ws_frame::frame(message.binary, &message.bytes).0)
            }
        };
        self.pending_bytes += frame.len() as u64;
        if self.frames.capacity() == 0 {
            // Room for one frame (a quiet channel's batch), not the four a first push makes.
            self.frames.reserve_exact(1);
        }
        self.frames.push(frame);
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.frames.is_empty()
    }

    fn direct_framing(&self) -> Option<Framing> {
        Some(Framing::WebSocket)
    }

    fn taken_back(&mut self, _: &[DirectChannel], rest: Option<Bytes>) {
        // Counted by the fan-out that began it.
        if let Some(rest) = rest {
            self.frames.insert(0, rest);
        }
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        let after_read = std::mem::take(&mut self.read);
        write_frames(&mut self.socket, &mut self.frames, after_read).await.map_err(|_| ())?;
        // Let go, so that an idle connection holds little: the fan-out writes most deliveries
        // itself ([`crate::direct`]), so this loop writes few.
        self.frames = Vec::new();
        Ok(std::mem::take(&mut self.pending_bytes))
    }

    /// tokio-tungstenite keeps the waker in its own proxy, and the socket keeps that proxy's. Not
    /// in a lab session: an impaired socket sends its held writes when it is read.
    fn recv_wake_persists(&self) -> bool {
        !self.lab
    }

    async fn recv(&mut self) -> Inbound {
        self.read = true;
        match self.socket.next().await {
            Some(Ok(RawMessage::Text(text))) => Inbound::Frame(parse_client_frame(text.as_str()), text.len()),
            Some(Ok(RawMessage::Binary(data))) => Inbound::Frame(parse_binary_frame(&data), data.len()),
            Some(Ok(RawMessage::Ping(_) | RawMessage::Pong(_) | RawMessage::Frame(_))) => Inbound::Nothing,
            Some(Ok(RawMessage::Close(_))) => {
                // tungstenite queued the answering close frame; send it before going.
                let _ = self.socket.flush().await;
                Inbound::Gone
            }
            // Oversize messages end with the standard 1009; a broken socket just ends.
            Some(Err(WsError::Capacity(_))) => Inbound::End(TOO_BIG),
            Some(Err(_)) | None => Inbound::Gone,
        }
    }

    /// Writes what is left of a batch cut off mid-way (a close frame must not land inside a
    /// frame), then closes as [`close_socket`] does.
    async fn close(mut self, d: Disconnect) {
        let rest = write_frames(&mut self.socket, &mut self.frames, true);
        if !matches!(tokio::time::timeout(std::time::Duration::from_secs(2), rest).await, Ok(Ok(()))) {
            return;
        }
        let frame = RawCloseFrame { code: d.code.into(), reason: d.reason.into() };
        if self.socket.send(RawMessage::Close(Some(frame))).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// Writes `frames` to the socket beneath tungstenite, as many per call as the kernel takes;
/// cancel-safe: what was written leaves `frames`. `after_read`: tungstenite read since the last
/// write and may hold an answer to a ping (it writes those while reading, but keeps what the
/// socket did not take), which then goes first, so that frames never interleave.
async fn write_frames(socket: &mut Socket, frames: &mut Vec<Bytes>, after_read: bool) -> std::io::Result<()> {
    if after_read {
        socket.flush().await.map_err(std::io::Error::other)?;
    }
    super::write_frames(socket.get_mut(), frames).await
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

/// `GET /ws-echo`: a plain echo server on the same WebSocket stack as `/ws` (tungstenite reads,
/// our frames written beneath it), for the Autobahn conformance suite. Only routed when
/// `ws_echo_endpoint` is set.
pub async fn echo_handler(State(state): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match checked_upgrade(&mut parts).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let max = state.config.max_frame_bytes.max(16 * 1024 * 1024);
    let config = WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max));
    on_socket(upgrade, config, |mut socket| async move {
        let mut frames = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            let frame = match &message {
                RawMessage::Text(text) => ws_frame::frame(false, text.as_bytes()).0,
                RawMessage::Binary(data) => ws_frame::frame(true, data).0,
                RawMessage::Close(_) => {
                    let _ = socket.flush().await;
                    break;
                }
                _ => continue,
            };
            frames.push(Bytes::from(frame));
            if write_frames(&mut socket, &mut frames, true).await.is_err() {
                break;
            }
        }
    });
    switching_protocols(&parts.headers, None)
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
    /// loop's small (it was 5.7 KiB when the transport and driver were passed by value; 472
    /// bytes now, and an await inside a match on the frame read once added 112).
    #[test]
    fn a_connections_future_stays_small() {
        let size = future_size(pump::run::<WsTransport>);
        assert!(size <= 544, "pump::run's future is {size} bytes");
        let stomp = future_size5(stomp::run);
        assert!(stomp <= 2048, "stomp::run's future is {stomp} bytes");
    }
}
