//! Rust client for Switchboard: publish, read history and presence over the server API, and
//! subscribe over any of the server's transports with one API. The wire contract is
//! `docs/protocol.md`; the wire types come from [`switchboard_protocol`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_client::Error> {
//! use switchboard_client::{Client, Event, Transport};
//!
//! let client = Client::new("http://127.0.0.1:8080")?.with_name("demo");
//! let mut sub = client.subscribe(Transport::Sse, &["news"], None).await?;
//! client.publish("news", &serde_json::json!({"title": "hi"})).await?;
//! while let Some(event) = sub.next().await {
//!     if let Event::Publication(p) = event? {
//!         println!("{}#{}: {:?}", p.channel, p.offset, p.data);
//!         break;
//!     }
//! }
//! // Resume later, over any transport, without loss:
//! let cursor = sub.cursor();
//! let _again = client.subscribe(Transport::LongPoll, &["news"], Some(cursor)).await?;
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - `lib.rs`: [`Client`] (configuration and the server API) and [`Transport`].
//! - [`error`]: [`Error`], one enum for every layer.
//! - `event.rs`: [`Event`] and [`Publication`], decoded from the server's wire objects.
//! - `subscription.rs`: [`Subscription`], one event stream over any transport, tracking a
//!   [`Cursor`].
//! - `ws.rs`: [`WsConnection`], the WebSocket command protocol.
//! - `sse.rs`: a sans-IO `text/event-stream` parser and the SSE event mapping.
//! - `ndjson.rs`: a sans-IO line splitter for HTTP streaming.
//! - `poll.rs`: long polling and polling (`GET /poll`).
//! - `http.rs`: hyper plumbing: base URL, query strings, error bodies.
//!
//! Plain `http://` only for now.

#![warn(missing_docs)]

pub mod error;
mod event;
mod http;
mod ndjson;
mod poll;
mod sse;
mod subscription;
mod ws;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};

pub use error::Error;
pub use event::{Event, Publication};
pub use subscription::Subscription;
pub use switchboard_protocol::frame::{
    ClientInfo, ConnectReply, HistoryReply, PresenceEventObject, PresenceReply, PublicationObject,
    PublishReply, SubscribeReply,
};
pub use switchboard_protocol::{Cursor, Disconnect, ErrorCode, Position};
pub use ws::{RawFrame, WsConnection};

use crate::http::{BaseUrl, Http, Query};

/// A Switchboard server and the credentials to use with it. Cheap to clone; clones share one
/// pool of HTTP connections.
#[derive(Clone)]
pub struct Client {
    base: BaseUrl,
    token: Option<String>,
    api_key: Option<String>,
    name: Option<String>,
    poll_interval: Duration,
    long_poll_wait: Duration,
    http: Http,
}

/// How a [`Subscription`] reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `GET /ws`, the bidirectional command protocol (`"ws"` or `"websocket"`).
    WebSocket,
    /// `GET /sse`, Server-Sent Events (`"sse"`).
    Sse,
    /// `GET /stream`, chunked NDJSON (`"stream"`).
    Stream,
    /// `GET /poll` with `wait` (`"long-poll"`).
    LongPoll,
    /// `GET /poll` at a fixed interval (`"poll"`).
    Poll,
}

impl FromStr for Transport {
    type Err = Error;

    /// `ws` or `websocket`, `sse`, `stream`, `long-poll`, `poll` (any case); anything else is
    /// [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ws" | "websocket" => Ok(Transport::WebSocket),
            "sse" => Ok(Transport::Sse),
            "stream" => Ok(Transport::Stream),
            "long-poll" | "longpoll" => Ok(Transport::LongPoll),
            "poll" => Ok(Transport::Poll),
            _ => Err(Error::InvalidArgument(format!(
                "unknown transport {s:?}: expected ws, sse, stream, long-poll or poll"
            ))),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "ws",
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::LongPoll => "long-poll",
            Transport::Poll => "poll",
        })
    }
}

impl Client {
    /// A client for the server at `base_url`: `http://host[:port]`, optionally with a path
    /// prefix the server is mounted under.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Ok(Self {
            base: BaseUrl::parse(base_url)?,
            token: None,
            api_key: None,
            name: None,
            poll_interval: Duration::from_secs(1),
            long_poll_wait: Duration::from_secs(25),
            http: http::new_client(),
        })
    }

    /// Authenticates subscriptions (and publishes, when no API key is set) with this JWT.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates server API calls with this key (`X-API-Key`).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The display name presence shows for this client's WebSocket, SSE and stream connections.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The pause between two requests of [`Transport::Poll`] (default 1 s), also the pause after
    /// a failed poll on either polling transport.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long the server may hold a [`Transport::LongPoll`] request (default 25 s, whole
    /// seconds; the server caps it at its `poll_max_wait`).
    pub fn with_long_poll_wait(mut self, wait: Duration) -> Self {
        self.long_poll_wait = wait;
        self
    }

    /// `POST /api/publish`: publishes JSON `data` on `channel`. Sends `X-API-Key` when an API key
    /// is set, else `Authorization: Bearer` with the token when one is set.
    pub async fn publish(&self, channel: &str, data: &serde_json::Value) -> Result<PublishReply, Error> {
        self.publish_inner(channel, data, None).await
    }

    /// Like [`Client::publish`], stored once per `idempotency_key`: a retry answers the first
    /// result.
    pub async fn publish_with_key(
        &self,
        channel: &str,
        data: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<PublishReply, Error> {
        self.publish_inner(channel, data, Some(idempotency_key)).await
    }

    async fn publish_inner(
        &self,
        channel: &str,
        data: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<PublishReply, Error> {
        let body = serde_json::to_vec(&ws::PublishBody { channel, data, idempotency_key })
            .map_err(|e| Error::Protocol(format!("cannot encode publish: {e}")))?;
        let req = self
            .api_request(Method::POST, "/api/publish", &Query::default())
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(request_error)?;
        http::json(http::send(&self.http, req).await?).await
    }

    /// `GET /api/history`: the newest publications of `channel` (at most `limit`), oldest first.
    pub async fn history(&self, channel: &str, limit: Option<usize>) -> Result<HistoryReply, Error> {
        let mut q = Query::default();
        q.push("channel", channel);
        if let Some(limit) = limit {
            q.push("limit", &limit.to_string());
        }
        self.api_get("/api/history", &q).await
    }

    /// `GET /api/presence`: who is subscribed to `channel`.
    pub async fn presence(&self, channel: &str) -> Result<PresenceReply, Error> {
        let mut q = Query::default();
        q.push("channel", channel);
        self.api_get("/api/presence", &q).await
    }

    /// Subscribes to `channels` over `transport`, resuming each from its position in `since`
    /// (channels `since` lacks start at the current end of their stream). Fails with the server's
    /// error when it refuses. See [`Subscription`] for what follows.
    pub async fn subscribe(
        &self,
        transport: Transport,
        channels: &[&str],
        since: Option<Cursor>,
    ) -> Result<Subscription, Error> {
        if channels.is_empty() {
            return Err(Error::InvalidArgument("subscribe needs at least one channel".into()));
        }
        let since = since.unwrap_or_default();
        match transport {
            Transport::WebSocket => {
                let conn = ws::WsConnection::open(&self.base).await?;
                Subscription::over_ws(conn, self.token.as_deref(), self.name.as_deref(), channels, since)
                    .await
            }
            Transport::Sse | Transport::Stream => {
                let (path, accept) = match transport {
                    Transport::Sse => ("/sse", "text/event-stream"),
                    _ => ("/stream", "application/x-ndjson"),
                };
                let mut q = channel_query(channels, &since);
                if let Some(name) = &self.name {
                    q.push("name", name);
                }
                let req = self
                    .subscriber_request(path, &q)
                    .header("Accept", accept)
                    .body(Full::default())
                    .map_err(request_error)?;
                let resp = http::check(http::send(&self.http, req).await?).await?;
                let body = http::body_stream(resp);
                Ok(if transport == Transport::Sse {
                    Subscription::over_sse(body, since)
                } else {
                    Subscription::over_stream(body, since)
                })
            }
            Transport::LongPoll | Transport::Poll => {
                let wait = (transport == Transport::LongPoll).then_some(self.long_poll_wait);
                let poller = poll::Poller::new(self.clone(), channels, wait, self.poll_interval);
                Ok(Subscription::over_poll(poller, since))
            }
        }
    }

    /// Opens a WebSocket connection speaking the full command protocol. Nothing is sent yet:
    /// call [`WsConnection::connect`] first when the server requires a token.
    pub async fn websocket(&self) -> Result<WsConnection, Error> {
        WsConnection::open(&self.base).await
    }

    async fn api_get<T: serde::de::DeserializeOwned>(&self, path: &str, q: &Query) -> Result<T, Error> {
        let req = self.api_request(Method::GET, path, q).body(Full::default()).map_err(request_error)?;
        http::json(http::send(&self.http, req).await?).await
    }

    /// A server API request with the API key, or else the token.
    fn api_request(&self, method: Method, path: &str, q: &Query) -> hyper::http::request::Builder {
        let req = Request::builder().method(method).uri(self.base.http(path, q.as_str()));
        match (&self.api_key, &self.token) {
            (Some(key), _) => req.header("X-API-Key", key),
            (None, Some(token)) => req.header("Authorization", format!("Bearer {token}")),
            (None, None) => req,
        }
    }

    /// A subscriber's GET with the token, if any.
    pub(crate) fn subscriber_request(&self, path: &str, q: &Query) -> hyper::http::request::Builder {
        let req = Request::builder().method(Method::GET).uri(self.base.http(path, q.as_str()));
        match &self.token {
            Some(token) => req.header("Authorization", format!("Bearer {token}")),
            None => req,
        }
    }

    pub(crate) fn http(&self) -> &Http {
        &self.http
    }
}

/// `channel=…` for each channel and `since=` with their positions in `cursor`, if any.
pub(crate) fn channel_query(channels: &[impl AsRef<str>], cursor: &Cursor) -> Query {
    let mut q = Query::default();
    let mut since = Cursor::new();
    for channel in channels {
        let channel = channel.as_ref();
        q.push("channel", channel);
        if let Some(position) = cursor.get(channel) {
            since.set(channel, position.clone());
        }
    }
    if !since.is_empty() {
        q.push("since", &since.encode());
    }
    q
}

fn request_error(e: hyper::http::Error) -> Error {
    Error::Request(Box::new(e))
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("name", &self.name)
            .field("poll_interval", &self.poll_interval)
            .field("long_poll_wait", &self.long_poll_wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_transports() {
        for (text, t) in [
            ("ws", Transport::WebSocket),
            ("WebSocket", Transport::WebSocket),
            ("sse", Transport::Sse),
            ("stream", Transport::Stream),
            ("long-poll", Transport::LongPoll),
            ("poll", Transport::Poll),
        ] {
            assert_eq!(text.parse::<Transport>().unwrap(), t);
            assert_eq!(t.to_string().parse::<Transport>().unwrap(), t);
        }
        assert!(matches!("carrier-pigeon".parse::<Transport>(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn query_carries_only_the_named_channels_positions() {
        let mut c = Cursor::new();
        c.set("a", Position { epoch: "e".into(), offset: 1 });
        c.set("other", Position { epoch: "e".into(), offset: 2 });
        let q = channel_query(&["a", "b"], &c);
        let mut only_a = Cursor::new();
        only_a.set("a", Position { epoch: "e".into(), offset: 1 });
        assert_eq!(q.as_str(), format!("?channel=a&channel=b&since={}", only_a.encode()));
        assert_eq!(channel_query(&["b"], &c).as_str(), "?channel=b");
    }

    /// The load generator spawns these on a multi-threaded runtime.
    #[allow(dead_code)]
    fn handles_and_futures_are_send(client: Client, mut sub: Subscription, mut ws: WsConnection) {
        fn send<T: Send>(_: &T) {}
        send(&client.subscribe(Transport::Sse, &["a"], None));
        send(&client.publish("a", &serde_json::Value::Null));
        send(&sub.next());
        send(&ws.next_event());
        send(&ws.subscribe("a", None));
        send(&sub);
        send(&ws);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Client::new("http://h:1").unwrap().with_token("sekrit").with_api_key("k3y");
        let text = format!("{c:?}");
        assert!(!text.contains("sekrit") && !text.contains("k3y"), "{text}");
    }
}
