//! The WebSocket transport ([`WsConnection`]): commands matched to replies by id, pushes buffered
//! in order while a reply is awaited, server pings answered.
//!
//! Frame decoding ([`decode_text`], [`decode_binary`]) is pure; the connection only moves frames.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use switchboard_protocol::frame::{
    ConnectReply, HistoryReply, PresenceReply, PublishReply, ServerFrame, SubscribeReply, split_binary_frame,
};
use switchboard_protocol::{Position, WS_SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::event::{Push, expect_object, push_from_frame};
use crate::http::{BaseUrl, http_error};
use crate::{Error, Event};

/// Any byte stream a WebSocket can run over (a TCP socket; an in-memory pipe in tests).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket connection speaking the full command protocol (`GET /ws`).
///
/// Commands are sent one at a time; each method waits for its reply. Pushes that arrive
/// meanwhile are kept, in order, for [`WsConnection::next_event`]. Server pings are answered
/// while reading. Dropping the connection closes the socket.
pub struct WsConnection {
    ws: WebSocketStream<Box<dyn Io>>,
    last_id: u64,
    pushes: VecDeque<Event>,
    closed: bool,
    /// After `connect`: how long without any frame means the connection is dead.
    idle_limit: Option<Duration>,
}

/// A frame as it came off the socket, for tests of the protocol itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawFrame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
    /// A close frame (`code` is absent when the frame had no payload), or the end of the stream.
    Close {
        /// The close code.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
}

/// What one frame from the server is.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A reply to the command with this id.
    Reply(u64, Box<ServerFrame>),
    /// A push.
    Push(Push),
    /// The server closed the connection (with a code when it sent a close frame with one).
    Closed(Option<u16>, String),
}

/// Decodes a text frame.
pub(crate) fn decode_text(text: &str) -> Result<Incoming, Error> {
    expect_object(text.as_bytes())?;
    let frame: ServerFrame =
        serde_json::from_str(text).map_err(|e| Error::Protocol(format!("bad server frame: {e}")))?;
    match frame.id {
        Some(id) => Ok(Incoming::Reply(id, Box::new(frame))),
        None => Ok(Incoming::Push(push_from_frame(frame, text.as_bytes(), None)?)),
    }
}

/// Decodes a binary frame: `HEADER "\n" PAYLOAD`, a `pub` header and the raw bytes.
pub(crate) fn decode_binary(data: &Bytes) -> Result<Incoming, Error> {
    let (header, _) = split_binary_frame(data)
        .ok_or_else(|| Error::Protocol("binary frame has no JSON header line".into()))?;
    let frame: ServerFrame =
        serde_json::from_str(header).map_err(|e| Error::Protocol(format!("bad binary frame header: {e}")))?;
    if frame.publication.is_none() {
        return Err(Error::Protocol("binary frame is not a publication".into()));
    }
    let payload = data.slice(header.len() + 1..);
    Ok(Incoming::Push(push_from_frame(frame, header.as_bytes(), Some(payload))?))
}

/// A read failure: the peer vanishing (no close frame) is [`Error::Closed`] without a code.
fn read_error(e: tungstenite::Error) -> Error {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Error::Closed { code: None, reason: "connection ended without a close frame".into() }
        }
        tungstenite::Error::Io(e) => Error::Closed { code: None, reason: e.to_string() },
        e => e.into(),
    }
}

/// `{"id": id, key: body}` as text.
fn command(id: u64, key: &str, body: &impl Serialize) -> Result<String, Error> {
    let body =
        serde_json::to_string(body).map_err(|e| Error::Protocol(format!("cannot encode {key}: {e}")))?;
    Ok(format!("{{\"id\":{id},\"{key}\":{body}}}"))
}

#[derive(Serialize)]
struct ConnectBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
}

#[derive(Serialize)]
struct ChannelBody<'a> {
    channel: &'a str,
}

#[derive(Serialize)]
struct SubscribeBody<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<&'a Position>,
}

/// `publish` body, also the body of `POST /api/publish`.
#[derive(Serialize)]
pub(crate) struct PublishBody<'a> {
    pub(crate) channel: &'a str,
    pub(crate) data: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idempotency_key: Option<&'a str>,
}

#[derive(Serialize)]
struct RpcBody<'a> {
    method: &'a str,
    data: &'a serde_json::Value,
}

#[derive(Serialize)]
struct HistoryBody<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

fn missing(what: &str) -> Error {
    Error::Protocol(format!("reply has no {what} body"))
}

impl WsConnection {
    /// Opens `GET /ws` with the `switchboard.v1.json` subprotocol.
    pub(crate) async fn open(base: &BaseUrl) -> Result<Self, Error> {
        let tcp = tokio::net::TcpStream::connect(base.socket_addr()).await?;
        tcp.set_nodelay(true)?;
        let mut req = base.ws("/ws").into_client_request()?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(WS_SUBPROTOCOL));
        match tokio_tungstenite::client_async(req, Box::new(tcp) as Box<dyn Io>).await {
            Ok((ws, _)) => Ok(Self::from_stream(ws)),
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_deref().unwrap_or_default();
                Err(http_error(resp.status().as_u16(), body))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Wraps an established WebSocket.
    pub(crate) fn from_stream(ws: WebSocketStream<Box<dyn Io>>) -> Self {
        Self { ws, last_id: 0, pushes: VecDeque::new(), closed: false, idle_limit: None }
    }

    /// Sends `connect`: authenticates with `token` and sets the name presence shows. Optional
    /// when the server needs no token (the first other command connects an anonymous client).
    /// Afterwards a connection that hears nothing for twice the server's ping interval (at least
    /// ping + 10 s) counts as dead: reads fail with [`Error::Timeout`].
    pub async fn connect(&mut self, token: Option<&str>, name: Option<&str>) -> Result<ConnectReply, Error> {
        self.resume(token, name, None).await
    }

    /// [`WsConnection::connect`] that reclaims the client id of an earlier connection, given
    /// the `session` of its connect reply; the server hands out a fresh id when it is not valid.
    pub async fn resume(
        &mut self,
        token: Option<&str>,
        name: Option<&str>,
        session: Option<&str>,
    ) -> Result<ConnectReply, Error> {
        let frame = self.call("connect", &ConnectBody { token, name, session }).await?;
        let reply = frame.connect.ok_or_else(|| missing("connect"))?;
        if reply.ping > 0 {
            self.idle_limit = Some(Duration::from_secs(reply.ping + reply.ping.max(10)));
        }
        Ok(reply)
    }

    /// Subscribes to `channel`, resuming after `since` when given. When the reply says
    /// `recovered: true`, exactly `replayed` publications follow as events before live ones.
    pub async fn subscribe(
        &mut self,
        channel: &str,
        since: Option<&Position>,
    ) -> Result<SubscribeReply, Error> {
        let frame = self.call("subscribe", &SubscribeBody { channel, since }).await?;
        frame.subscribe.ok_or_else(|| missing("subscribe"))
    }

    /// Ends the subscription to `channel`.
    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), Error> {
        self.call("unsubscribe", &ChannelBody { channel }).await.map(drop)
    }

    /// Publishes JSON `data` on `channel`.
    pub async fn publish(&mut self, channel: &str, data: &serde_json::Value) -> Result<PublishReply, Error> {
        let body = PublishBody { channel, data, idempotency_key: None };
        self.call("publish", &body).await?.publish.ok_or_else(|| missing("publish"))
    }

    /// Publishes JSON `data` once per `idempotency_key`: a retry answers the first result.
    pub async fn publish_with_key(
        &mut self,
        channel: &str,
        data: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<PublishReply, Error> {
        let body = PublishBody { channel, data, idempotency_key: Some(idempotency_key) };
        self.call("publish", &body).await?.publish.ok_or_else(|| missing("publish"))
    }

    /// Publishes binary data on `channel` (a binary frame).
    pub async fn publish_binary(&mut self, channel: &str, data: &[u8]) -> Result<PublishReply, Error> {
        let id = self.next_id();
        let mut frame = command(id, "publish", &ChannelBody { channel })?.into_bytes();
        frame.push(b'\n');
        frame.extend_from_slice(data);
        self.send(Message::binary(frame)).await?;
        self.reply(id).await?.publish.ok_or_else(|| missing("publish"))
    }

    /// Who is subscribed to `channel`.
    pub async fn presence(&mut self, channel: &str) -> Result<PresenceReply, Error> {
        let frame = self.call("presence", &ChannelBody { channel }).await?;
        frame.presence.ok_or_else(|| missing("presence"))
    }

    /// The newest publications of `channel` (at most `limit`), oldest first.
    pub async fn history(&mut self, channel: &str, limit: Option<usize>) -> Result<HistoryReply, Error> {
        let frame = self.call("history", &HistoryBody { channel, limit }).await?;
        frame.history.ok_or_else(|| missing("history"))
    }

    /// Calls `method` of the application's backend (the server's `app_proxy_url`) with `data`
    /// and returns its result. The backend's own errors come as [`Error::Command`] with its code.
    pub async fn rpc(&mut self, method: &str, data: &serde_json::Value) -> Result<serde_json::Value, Error> {
        let reply = self.call("rpc", &RpcBody { method, data }).await?.rpc.ok_or_else(|| missing("rpc"))?;
        serde_json::from_str(reply.data.get()).map_err(|e| Error::Protocol(format!("rpc result: {e}")))
    }

    /// An application-level ping: a round trip to the server.
    pub async fn ping(&mut self) -> Result<(), Error> {
        self.call("ping", &serde_json::Map::new()).await.map(drop)
    }

    /// The next push: pushes buffered during commands first, then from the socket. A close frame
    /// comes as [`Event::Disconnected`]; `None` once the connection has ended.
    pub async fn next_event(&mut self) -> Option<Result<Event, Error>> {
        if let Some(event) = self.pushes.pop_front() {
            return Some(Ok(event));
        }
        if self.closed {
            return None;
        }
        loop {
            let incoming = match self.read().await {
                Ok(incoming) => incoming,
                Err(e) => return Some(Err(e)),
            };
            match incoming {
                Incoming::Reply(id, _) => tracing::debug!(id, "reply to an abandoned command"),
                Incoming::Push(Push::Event(event)) => return Some(Ok(event)),
                Incoming::Push(Push::Ping) => {
                    if let Err(e) = self.pong().await {
                        return Some(Err(e));
                    }
                }
                Incoming::Push(Push::Unknown) => {}
                Incoming::Closed(Some(code), reason) => {
                    return Some(Ok(Event::Disconnected { code, reason }));
                }
                Incoming::Closed(None, reason) => {
                    return Some(Err(Error::Closed { code: None, reason }));
                }
            }
        }
    }

    /// Sends a text frame as is (for testing the server with bad input).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::text(text)).await
    }

    /// Sends a binary frame as is.
    pub async fn send_raw_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(Message::binary(data.to_vec())).await
    }

    /// The next frame off the socket, uninterpreted (pings are still answered by the WebSocket
    /// layer, but not server `{"ping":{}}` pushes). Buffered pushes are not returned here.
    pub async fn recv_raw(&mut self) -> Option<Result<RawFrame, Error>> {
        loop {
            return match self.ws.next().await? {
                Err(e) => Some(Err(e.into())),
                Ok(Message::Text(t)) => Some(Ok(RawFrame::Text(t.as_str().to_owned()))),
                Ok(Message::Binary(b)) => Some(Ok(RawFrame::Binary(b))),
                Ok(Message::Close(f)) => Some(Ok(RawFrame::Close {
                    code: f.as_ref().map(|f| u16::from(f.code)),
                    reason: f.map(|f| f.reason.as_str().to_owned()).unwrap_or_default(),
                })),
                Ok(_) => continue,
            };
        }
    }

    /// Closes the connection politely: a close frame, then waits (at most a second) for the
    /// server's.
    pub async fn close(mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.ws.close(None).await?;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        Ok(())
    }

    /// Takes the pushes buffered while replies were awaited.
    pub(crate) fn take_pushes(&mut self) -> std::collections::vec_deque::Drain<'_, Event> {
        self.pushes.drain(..)
    }

    fn next_id(&mut self) -> u64 {
        self.last_id = self.last_id.wrapping_add(1).max(1);
        self.last_id
    }

    async fn call(&mut self, key: &str, body: &impl Serialize) -> Result<Box<ServerFrame>, Error> {
        let id = self.next_id();
        self.send(Message::text(command(id, key, body)?)).await?;
        self.reply(id).await
    }

    /// Reads until the reply to `id`, keeping pushes for later.
    async fn reply(&mut self, id: u64) -> Result<Box<ServerFrame>, Error> {
        loop {
            match self.read().await? {
                Incoming::Reply(got, frame) if got == id => {
                    return match frame.error {
                        Some(e) => Err(Error::Command { code: e.code, message: e.message }),
                        None => Ok(frame),
                    };
                }
                Incoming::Reply(got, _) => tracing::debug!(got, "reply to an abandoned command"),
                Incoming::Push(Push::Event(event)) => self.pushes.push_back(event),
                Incoming::Push(Push::Ping) => self.pong().await?,
                Incoming::Push(Push::Unknown) => {}
                Incoming::Closed(code, reason) => {
                    if let Some(code) = code {
                        self.pushes.push_back(Event::Disconnected { code, reason: reason.clone() });
                    }
                    return Err(Error::Closed { code, reason });
                }
            }
        }
    }

    async fn pong(&mut self) -> Result<(), Error> {
        self.send(Message::text("{\"pong\":{}}")).await
    }

    async fn send(&mut self, msg: Message) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed { code: None, reason: "connection is closed".into() });
        }
        self.ws.send(msg).await.map_err(|e| {
            self.closed = true;
            e.into()
        })
    }

    /// The next meaningful frame. Socket failures and the end of the stream mark the connection
    /// closed; a frame that does not decode is an error but not the end.
    async fn read(&mut self) -> Result<Incoming, Error> {
        if self.closed {
            return Ok(Incoming::Closed(None, "connection is closed".into()));
        }
        loop {
            let next = match self.idle_limit {
                Some(limit) => match tokio::time::timeout(limit, self.ws.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.closed = true;
                        return Err(Error::Timeout("no frame from the server within the ping interval"));
                    }
                },
                None => self.ws.next().await,
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    self.closed = true;
                    return Err(read_error(e));
                }
                None => {
                    self.closed = true;
                    return Ok(Incoming::Closed(None, "connection ended without a close frame".into()));
                }
            };
            return match msg {
                Message::Text(text) => decode_text(text.as_str()),
                Message::Binary(data) => decode_binary(&data),
                Message::Close(frame) => {
                    self.closed = true;
                    // Sends the close reply tungstenite queued; best effort.
                    let _ = self.ws.flush().await;
                    Ok(match frame {
                        Some(f) => Incoming::Closed(Some(f.code.into()), f.reason.as_str().to_owned()),
                        None => Incoming::Closed(Some(1005), String::new()),
                    })
                }
                _ => continue,
            };
        }
    }
}

impl std::fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("last_id", &self.last_id)
            .field("buffered_pushes", &self.pushes.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
pub(crate) mod tests;
