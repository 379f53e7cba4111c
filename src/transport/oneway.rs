//! `/sse` and `/stream`: one-way streams of a session. The request carries the channels and the
//! cursor; the response carries every event, and on SSE an `id:` with the cursor of every channel
//! after it, so the browser's own reconnect (`Last-Event-ID`) resumes without loss. The server
//! keeps nothing once the response ends: no sticky sessions are needed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::Either;
use switchboard_protocol::encode;
use switchboard_protocol::frame::{ClientFrame, Command, ConnectRequest, Reply, ReplyBody, SubscribeRequest};
use switchboard_protocol::{ChannelName, Cursor, Disconnect, ErrorCode};

use super::OneWayParams;
use super::pipe;
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::direct::{Direct, DirectChannel, Framing, Socket};
use crate::http::{ClientIp, HttpError, Peer};
use crate::listener::WriteLoop;
use crate::metrics::TransportKind;
use crate::session::Output;
use crate::state::AppState;

/// The framing of a one-way stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Sse,
    Ndjson,
}

/// `GET /sse`.
pub async fn sse(
    State(state): State<Arc<AppState>>,
    ip: ClientIp,
    peer: Peer,
    RawQuery(query): RawQuery,
    socket: Option<Extension<Socket>>,
    headers: HeaderMap,
) -> Response {
    open(state, ip, peer, query, headers, socket.map(|s| s.0), Format::Sse).await
}

/// `GET /stream`.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    ip: ClientIp,
    peer: Peer,
    RawQuery(query): RawQuery,
    socket: Option<Extension<Socket>>,
    headers: HeaderMap,
) -> Response {
    open(state, ip, peer, query, headers, socket.map(|s| s.0), Format::Ndjson).await
}

/// Opens a stream. `socket`: the listener serves it on this plain TCP socket, which the write
/// loop then writes to itself (chunked), and lends to the fan-out while it waits
/// ([`crate::direct`]); without it (hyper serves the response), events go through the body.
async fn open(
    state: Arc<AppState>,
    ip: ClientIp,
    peer: Peer,
    query: Option<String>,
    headers: HeaderMap,
    socket: Option<Socket>,
    format: Format,
) -> Response {
    let mut params = match OneWayParams::parse(query.as_deref(), &headers, state.config.max_subscriptions) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ticket = match state.admission.admit(ip.0) {
        Ok(ticket) => ticket,
        Err(why) => return HttpError::connection_limit(why).into_response(),
    };
    let kind = if format == Format::Sse { TransportKind::Sse } else { TransportKind::Stream };
    let mut driver = Driver::new(state.clone(), false).admitted(ticket).from(peer).on(kind);
    let connect = ConnectRequest {
        token: params.token.take(),
        name: params.name.take(),
        session: params.session.take(),
    };
    driver.on_frame(Ok(ClientFrame::Command { id: 1, command: Command::Connect(connect) }));
    for (i, channel) in params.channels.iter().enumerate() {
        let since = params.cursor.get(channel.as_str()).cloned();
        let token = params.subscription_token(channel);
        let request = SubscribeRequest { channel: channel.to_string(), since, datagram: false, token };
        driver.on_frame(Ok(ClientFrame::Command { id: i as u64 + 2, command: Command::Subscribe(request) }));
    }
    // Refusals (token, permissions) come before the first byte: answer them as HTTP errors. The
    // subscriptions wait for `connect` to claim the client id (a session may reclaim one).
    let mut first = Vec::new();
    loop {
        while let Some(output) = driver.next_output() {
            if let Some(refusal) = refusal(&output, &params.channels) {
                driver.finish();
                return refusal.into_response();
            }
            first.push(output);
        }
        if !driver.connecting() {
            break;
        }
        let wake = driver.wait().await;
        driver.on_wake(wake);
    }
    // One batch in the pipe, one being written at most: a client that stops reading holds
    // little beyond its outbox's byte bound.
    let (tx, rx) = pipe::pipe();
    let guard = state.metrics.connection(kind);
    if let Some(socket) = socket.as_ref().filter(|_| state.config.direct_writes_per_publication > 0) {
        driver = driver.with_direct(Direct::new(socket.clone()));
    }
    let mut transport = OneWay {
        format,
        cursor: params.cursor,
        buf: BytesMut::new(),
        shared: None,
        tx,
        socket,
        frames: Vec::new(),
    };
    if format == Format::Sse {
        transport.buf.put_slice(format!("retry: {}\n\n", state.config.sse_retry_ms).as_bytes());
    }
    // What came before the response: the `connected` and `subscribed` events. Framed here and
    // the connection's future built before it is spawned: an async block keeps what it captured
    // for its whole life, so capturing the transport and the driver would hold them twice.
    let mut refused = None;
    for out in first.into_iter().filter_map(pump::outgoing) {
        if let Err(d) = transport.frame(out, false) {
            refused = Some(d);
            break;
        }
    }
    let run = match refused {
        None => Either::Left(pump::run(transport, driver)),
        Some(d) => Either::Right(Box::pin(async move {
            driver.finish();
            transport.close(d).await;
        })),
    };
    // A combinator, not an async block: that would hold the write loop's future twice (what it
    // captured, and what it awaits).
    let task = run.map(move |()| drop(guard));
    // Handed over with the response: the listener runs it in the connection's own task when it
    // serves the stream itself, or else spawns it. Not in the request's span: an open span costs
    // about 350 bytes in the tracing registry for the stream's life; the connection's lines make
    // theirs when logged (`Driver::log_span`).
    let write_loop = WriteLoop::new(task);
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    let body = Body::from_stream(rx);
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::Extension(write_loop),
        body,
    )
        .into_response()
}

/// The HTTP error an output stands for, when it refuses the connection or a channel.
fn refusal(output: &Output, channels: &[ChannelName]) -> Option<HttpError> {
    match output {
        Output::Disconnect(d) if *d == Disconnect::CONNECTION_LIMIT => {
            Some(HttpError::connection_limit(crate::admission::Refused::PerUser))
        }
        Output::Disconnect(d) => Some(HttpError::new(
            if *d == Disconnect::UNAUTHORIZED || *d == Disconnect::TOKEN_EXPIRED {
                ErrorCode::Unauthorized
            } else {
                ErrorCode::BadRequest
            },
            d.reason,
        )),
        Output::Reply(reply) => {
            let Reply { id, body: ReplyBody::Error(e) } = &**reply else { return None };
            let channel = channels.get((*id as usize).saturating_sub(2)).map_or("", |c| c.as_str());
            let code = ErrorCode::from_code(e.code).unwrap_or(ErrorCode::Internal);
            Some(HttpError::new(code, format!("channel {channel}: {}", e.message)))
        }
        _ => None,
    }
}

/// The framing of a one-way stream: SSE events (each publication with the cursor of every
/// channel after it as its `id:`) or NDJSON lines, handed to the response body.
struct OneWay {
    format: Format,
    cursor: Cursor,
    /// A batch's bytes, when it is more than one shared event.
    buf: BytesMut,
    /// A batch of one event encoded once for every subscriber (a one-channel stream's
    /// publication): handed to the body as it is, not copied.
    shared: Option<Bytes>,
    tx: pipe::Sender,
    /// The listener's socket, written to here when it serves the stream (the body then carries
    /// nothing but its end).
    socket: Option<Socket>,
    /// Chunks framed for `socket`, not yet written (the front one possibly in part).
    frames: Vec<Bytes>,
}

impl Transport for OneWay {
    fn kind(&self) -> TransportKind {
        if self.format == Format::Sse { TransportKind::Sse } else { TransportKind::Stream }
    }

    fn frame(&mut self, out: Outgoing, _datagram: bool) -> Result<(), Disconnect> {
        match out {
            Outgoing::Reply(reply) => match reply.body {
                ReplyBody::Connect(c) => {
                    self.event("connected", None, &serde_json::to_vec(&c).unwrap_or_default());
                }
                ReplyBody::Subscribe(s) => {
                    self.cursor.advance(&s.channel, &s.epoch, s.offset);
                    let json = serde_json::to_vec(&s).unwrap_or_default();
                    let id = self.cursor.encode();
                    self.event("subscribed", Some(&id), &json);
                }
                // A late refusal can only be the broker failing a subscription.
                _ => return Err(Disconnect::BROKER_UNAVAILABLE),
            },
            Outgoing::History { .. } => return Err(Disconnect::BROKER_UNAVAILABLE),
            Outgoing::Publication(p) => {
                self.cursor.advance(p.channel.as_str(), &p.epoch, p.offset);
                match self.format {
                    // A stream of this channel alone: its event, encoded once for all of them.
                    Format::Sse if self.cursor.len() == 1 => self.put_shared(p.sse_event_alone()),
                    Format::Sse => {
                        let id = self.cursor.encode();
                        let buf = self.buf();
                        buf.put_slice(p.sse_data());
                        buf.put_slice(b"id: ");
                        buf.put_slice(id.as_bytes());
                        buf.put_slice(b"\n\n");
                    }
                    Format::Ndjson => self.put_shared(p.ndjson_line()),
                }
            }
            Outgoing::Presence(e) => match self.format {
                Format::Sse => {
                    let buf = self.buf();
                    buf.put_slice(e.sse_event());
                    buf.put_slice(b"\n");
                }
                Format::Ndjson => self.buf().put_slice(e.ndjson_line()),
            },
            Outgoing::Notice(n) => self.event(n.name(), None, n.object_json().as_bytes()),
            Outgoing::Ping => match self.format {
                Format::Sse => self.buf().put_slice(b": ping\n\n"),
                Format::Ndjson => {
                    let buf = self.buf();
                    buf.put_slice(encode::PING);
                    buf.put_u8(b'\n');
                }
            },
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        self.shared.is_some() || !self.buf.is_empty() || !self.frames.is_empty()
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        // Taken whole: a split would leave the rest of its allocation held while idle.
        let chunk = match self.shared.take() {
            Some(shared) => shared,
            None => std::mem::take(&mut self.buf).freeze(),
        };
        let bytes = chunk.len() as u64;
        let Some(socket) = &mut self.socket else {
            self.tx.send(chunk).await?;
            return Ok(bytes);
        };
        if !chunk.is_empty() {
            self.frames.push(crate::listener::stream::chunk(&chunk).0);
        }
        super::write_frames(socket, &mut self.frames).await.map_err(|_| ())?;
        self.frames = Vec::new();
        Ok(bytes)
    }

    fn direct_framing(&self) -> Option<Framing> {
        self.socket.as_ref()?;
        match self.format {
            Format::Ndjson => Some(Framing::NdjsonChunk),
            // The fan-out writes a one-channel stream's events (the same for all of them).
            Format::Sse if self.cursor.len() == 1 => Some(Framing::SseChunk),
            Format::Sse => None,
        }
    }

    fn taken_back(&mut self, channels: &[DirectChannel], rest: Option<Bytes>) {
        // The next events' `id:` go on from what the fan-out wrote.
        for c in channels {
            self.cursor.advance(c.channel.as_str(), &c.epoch, c.offset);
        }
        if let Some(rest) = rest {
            self.frames.insert(0, rest);
        }
    }

    /// The body's end keeps its wake-up for the loop's read side ([`pipe::Sender::closed`]).
    fn recv_wake_persists(&self) -> bool {
        true
    }

    /// A one-way stream receives nothing: it only learns that the client went away.
    async fn recv(&mut self) -> Inbound {
        self.tx.closed().await;
        Inbound::Gone
    }

    /// Says why in a `disconnect` event, then ends the response.
    async fn close(mut self, d: Disconnect) {
        self.event("disconnect", None, &encode::disconnect_object(d));
        let _ = self.flush().await;
    }
}

impl OneWay {
    /// The batch's buffer, with a shared event framed before it moved in.
    fn buf(&mut self) -> &mut BytesMut {
        if let Some(shared) = self.shared.take() {
            self.buf.put_slice(&shared);
        }
        &mut self.buf
    }

    /// Adds an event encoded once for every subscriber: alone in its batch, it is not copied.
    fn put_shared(&mut self, event: &Bytes) {
        if self.shared.is_none() && self.buf.is_empty() {
            self.shared = Some(event.clone());
        } else {
            self.buf().put_slice(event);
        }
    }

    fn event(&mut self, name: &str, id: Option<&str>, json: &[u8]) {
        let format = self.format;
        let buf = self.buf();
        match format {
            Format::Sse => {
                if let Some(id) = id {
                    buf.put_slice(format!("id: {id}\n").as_bytes());
                }
                buf.put_slice(format!("event: {name}\ndata: ").as_bytes());
                buf.put_slice(json);
                buf.put_slice(b"\n\n");
            }
            Format::Ndjson => {
                buf.put_slice(&encode::event(name, json));
                buf.put_u8(b'\n');
            }
        }
    }
}
