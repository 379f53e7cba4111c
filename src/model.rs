//! The channel model's values: publications, presence events and what a connection is delivered.
//!
//! A publication is created once by the broker and shared (`Arc`) by the history and every
//! subscriber. Its wire encodings are computed lazily, once per format, and shared as `Bytes`:
//! a fan-out to ten thousand WebSocket subscribers encodes the frame once.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_protocol::ChannelName;
use switchboard_protocol::encode::{self, PayloadRef, PublicationRef};
use switchboard_protocol::frame::ClientInfo;
use switchboard_stomp::{MessageTemplate, Version};
use tokio::time::Instant;

/// A stream's epoch. Cheap to clone.
pub type Epoch = Arc<str>;

/// A stream's current end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTop {
    /// The epoch.
    pub epoch: Epoch,
    /// The last offset; 0 for a stream with no publication yet.
    pub offset: u64,
}

/// A publication's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The JSON text exactly as the publisher sent it (validated).
    Json(Bytes),
    /// Raw bytes.
    Binary(Bytes),
}

impl Payload {
    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(b) | Payload::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One publication of a channel.
#[derive(Debug)]
pub struct Publication {
    /// The channel.
    pub channel: ChannelName,
    /// Its offset in the stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: Epoch,
    /// The payload.
    pub payload: Payload,
    /// Who published it, when a connected client did.
    pub info: Option<Arc<ClientInfo>>,
    /// When the broker accepted it (history TTL, fan-out latency).
    pub published_at: Instant,
    encoded: Encodings,
}

#[derive(Debug, Default)]
struct Encodings {
    object: OnceLock<Bytes>,
    /// The NDJSON line, and the same bytes as a chunk of a chunked HTTP/1.1 body.
    ndjson: OnceLock<(Bytes, Bytes)>,
    sse: OnceLock<Bytes>,
    /// The whole SSE event of a one-channel stream: `data:`, then the cursor of this position.
    sse_alone: OnceLock<(Bytes, Bytes)>,
    /// The message, and its WebSocket frame around the same bytes.
    message: OnceLock<(Message, Bytes)>,
    /// The STOMP MESSAGE's shared part, per version (escaping differs).
    stomp: [OnceLock<Option<MessageTemplate>>; 3],
    /// The text frame as a JSON string with SockJS's escaping (`docs/stomp.md`).
    sockjs: OnceLock<Bytes>,
}

/// A frame of the bidirectional transports (WebSocket, WebTransport, data channels): text JSON,
/// or binary (a JSON header line, then the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Binary rather than text.
    pub binary: bool,
    /// The frame's bytes (UTF-8 JSON when text).
    pub bytes: Bytes,
}

impl Message {
    /// A text frame of JSON.
    pub fn text(bytes: impl Into<Bytes>) -> Self {
        Self { binary: false, bytes: bytes.into() }
    }
}

impl Publication {
    /// A new publication.
    pub fn new(
        channel: ChannelName,
        offset: u64,
        epoch: Epoch,
        payload: Payload,
        info: Option<Arc<ClientInfo>>,
    ) -> Self {
        Self {
            channel,
            offset,
            epoch,
            payload,
            info,
            published_at: Instant::now(),
            encoded: Encodings::default(),
        }
    }

    fn encoder(&self) -> PublicationRef<'_> {
        let payload = match &self.payload {
            Payload::Json(b) => PayloadRef::Json(b),
            Payload::Binary(b) => PayloadRef::Binary(b),
        };
        PublicationRef {
            channel: self.channel.as_str(),
            offset: self.offset,
            epoch: &self.epoch,
            payload,
            info: self.info.as_deref(),
        }
    }

    /// The publication object (`docs/protocol.md`), with `b64` for binary payloads.
    pub fn object(&self) -> &Bytes {
        self.encoded.object.get_or_init(|| self.encoder().object(true).into())
    }

    /// `{"pub": OBJECT}\n`: one line of HTTP streaming.
    pub fn ndjson_line(&self) -> &Bytes {
        &self.ndjson().0
    }

    /// [`Publication::ndjson_line`] as a chunk of a chunked HTTP/1.1 body (size line, the line,
    /// CRLF): what the fan-out writes to a stream ([`crate::direct`]), in one buffer.
    pub fn ndjson_chunk(&self) -> &Bytes {
        &self.ndjson().1
    }

    fn ndjson(&self) -> &(Bytes, Bytes) {
        self.encoded.ndjson.get_or_init(|| chunked(line(encode::event("pub", self.object()))))
    }

    /// `data: OBJECT\n`: an SSE event without its `id:` line and terminator, which are per stream.
    pub fn sse_data(&self) -> &Bytes {
        self.encoded.sse.get_or_init(|| wrap(b"data: ", self.object(), b"\n"))
    }

    /// `data: OBJECT\nid: CURSOR\n\n`: the whole SSE event for a stream of this channel alone,
    /// whose cursor after this publication is this position only (the same for every such
    /// subscriber, so encoded once).
    pub fn sse_event_alone(&self) -> &Bytes {
        &self.sse_alone().0
    }

    /// [`Publication::sse_event_alone`] as a chunk of a chunked HTTP/1.1 body, in one buffer.
    pub fn sse_chunk_alone(&self) -> &Bytes {
        &self.sse_alone().1
    }

    fn sse_alone(&self) -> &(Bytes, Bytes) {
        self.encoded.sse_alone.get_or_init(|| {
            let id =
                switchboard_protocol::Cursor::encode_one(self.channel.as_str(), &self.epoch, self.offset);
            let mut event = Vec::with_capacity(self.sse_data().len() + id.len() + 6);
            event.extend_from_slice(self.sse_data());
            event.extend_from_slice(b"id: ");
            event.extend_from_slice(id.as_bytes());
            event.extend_from_slice(b"\n\n");
            chunked(event.into())
        })
    }

    /// The bidirectional transports' frame: `{"pub": OBJECT}` as text, or `{"pub": HEADER}\n
    /// PAYLOAD` as binary.
    pub fn message(&self) -> &Message {
        &self.framed().0
    }

    /// [`message`](Self::message) as a whole WebSocket frame, written as it is to every
    /// subscriber of the JSON protocol.
    pub fn ws_frame(&self) -> &Bytes {
        &self.framed().1
    }

    /// The message and its frame, in one allocation: the message is the frame's payload.
    fn framed(&self) -> &(Message, Bytes) {
        self.encoded.message.get_or_init(|| {
            let (binary, bytes) = self.encoder().message(self.object());
            let (frame, at) = switchboard_protocol::ws_frame::frame(binary, &bytes);
            let frame = Bytes::from(frame);
            (Message { binary, bytes: frame.slice(at..) }, frame)
        })
    }

    /// `{"pub": OBJECT}` as text, whatever the payload (`b64` for binary): the frame of
    /// text-only message transports (SockJS).
    pub fn text_message(&self) -> Bytes {
        let line = self.ndjson_line();
        line.slice(..line.len() - 1)
    }

    /// [`text_message`](Self::text_message) as a JSON string escaped the way SockJS frames
    /// need, encoded once for every SockJS subscriber of the JSON protocol.
    pub fn sockjs_string(&self) -> &Bytes {
        self.encoded.sockjs.get_or_init(|| {
            let text = self.text_message();
            switchboard_protocol::sockjs::json_string(std::str::from_utf8(&text).unwrap_or_default()).into()
        })
    }

    /// The STOMP MESSAGE of this publication for `version`, but for the per-subscriber headers
    /// (`subscription`, `message-id`, `destination`): `content-type`, `position` and the body,
    /// encoded once for every STOMP subscriber of that version. `None` if it cannot be encoded.
    pub fn stomp_template(&self, version: Version) -> Option<&MessageTemplate> {
        let slot = match version {
            Version::V1_0 => 0,
            Version::V1_1 => 1,
            _ => 2,
        };
        self.encoded.stomp[slot]
            .get_or_init(|| {
                let (body, content_type) = match &self.payload {
                    Payload::Json(b) => (b.clone(), "application/json"),
                    Payload::Binary(b) => (b.clone(), "application/octet-stream"),
                };
                let position = format!("{}:{}", self.epoch, self.offset);
                let headers = [("content-type", content_type), ("position", &position)];
                MessageTemplate::new(version, &headers, body).ok()
            })
            .as_ref()
    }
}

/// Whether a client joined or left a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// Subscribed.
    Join,
    /// Unsubscribed or disconnected.
    Leave,
}

/// A join or leave event, fanned out like a publication but kept in no history.
#[derive(Debug)]
pub struct PresenceEvent {
    /// The channel.
    pub channel: ChannelName,
    /// Join or leave.
    pub kind: PresenceKind,
    /// Who.
    pub info: Arc<ClientInfo>,
    encoded: OnceLock<PresenceEncodings>,
}

#[derive(Debug)]
struct PresenceEncodings {
    message: Bytes,
    ndjson: Bytes,
    sse: Bytes,
}

impl PresenceEvent {
    /// A new event.
    pub fn new(channel: ChannelName, kind: PresenceKind, info: Arc<ClientInfo>) -> Self {
        Self { channel, kind, info, encoded: OnceLock::new() }
    }

    /// `join` or `leave`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            PresenceKind::Join => "join",
            PresenceKind::Leave => "leave",
        }
    }

    fn encodings(&self) -> &PresenceEncodings {
        self.encoded.get_or_init(|| {
            let object = encode::presence_object(self.channel.as_str(), &self.info);
            let message = encode::event(self.name(), &object);
            PresenceEncodings {
                ndjson: line(message.clone()),
                message: message.into(),
                sse: wrap(format!("event: {}\ndata: ", self.name()).as_bytes(), &object, b"\n"),
            }
        })
    }

    /// `{"join": {...}}`: the bidirectional transports' text frame.
    pub fn message(&self) -> Message {
        Message::text(self.encodings().message.clone())
    }

    /// `{"join": {...}}\n`.
    pub fn ndjson_line(&self) -> &Bytes {
        &self.encodings().ndjson
    }

    /// `event: join\ndata: {...}\n` without the terminating blank line.
    pub fn sse_event(&self) -> &Bytes {
        &self.encodings().sse
    }
}

/// What the hub puts in a connection's outbox.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A publication.
    Publication(Arc<Publication>),
    /// A join or leave.
    Presence(Arc<PresenceEvent>),
}

/// Bytes a publication or event costs in a queue beyond its payload: its fields and framing.
const ENTRY_OVERHEAD: usize = 128;

impl Publication {
    /// Roughly what it costs a connection's queue: its payload, channel name and fields.
    pub fn weight(&self) -> usize {
        self.payload.len() + self.channel.as_str().len() + ENTRY_OVERHEAD
    }
}

impl Delivery {
    /// Roughly what it costs a connection's queue ([`Publication::weight`]).
    pub fn weight(&self) -> usize {
        match self {
            Delivery::Publication(p) => p.weight(),
            Delivery::Presence(e) => e.channel.as_str().len() + 2 * ENTRY_OVERHEAD,
        }
    }

    /// The channel it belongs to.
    pub fn channel(&self) -> &ChannelName {
        match self {
            Delivery::Publication(p) => &p.channel,
            Delivery::Presence(e) => &e.channel,
        }
    }
}

/// `{"epoch","offset","publications":[...]}` (a `history` reply's body and `GET /api/history`),
/// from the publications' shared objects.
pub fn history_body(top: &StreamTop, publications: &[Arc<Publication>]) -> Vec<u8> {
    encode::history_body(&top.epoch, top.offset, publications.iter().map(|p| &p.object()[..]))
}

fn wrap(prefix: &[u8], body: &[u8], suffix: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(prefix.len() + body.len() + suffix.len());
    buf.put_slice(prefix);
    buf.put_slice(body);
    buf.put_slice(suffix);
    buf.freeze()
}

/// `bytes`, and the same as one chunk of a chunked body: one allocation, the first a slice of
/// the second.
fn chunked(bytes: Bytes) -> (Bytes, Bytes) {
    let (chunk, at) = crate::listener::stream::chunk(&bytes);
    (chunk.slice(at..at + bytes.len()), chunk)
}

fn line(mut bytes: Vec<u8>) -> Bytes {
    bytes.push(b'\n');
    bytes.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(payload: Payload) -> Publication {
        let info = Arc::new(ClientInfo { client: "c1".into(), user: "u\"1".into(), name: None });
        Publication::new(ChannelName::new("chat:a").unwrap(), 7, "ep".into(), payload, Some(info))
    }

    #[tokio::test]
    async fn encodes_json_publications_once_per_format() {
        let p = publication(Payload::Json(Bytes::from_static(br#"{"t":"hi"}"#)));
        let obj = r#"{"channel":"chat:a","offset":7,"epoch":"ep","data":{"t":"hi"},"info":{"client":"c1","user":"u\"1"}}"#;
        assert_eq!(p.object(), obj.as_bytes());
        assert_eq!(p.ndjson_line(), format!("{{\"pub\":{obj}}}\n").as_bytes());
        assert_eq!(p.sse_data(), format!("data: {obj}\n").as_bytes());
        assert_eq!(p.message(), &Message::text(format!("{{\"pub\":{obj}}}")));
        assert_eq!(p.object().as_ptr(), p.object().as_ptr(), "cached, not re-encoded");
        let v: serde_json::Value = serde_json::from_slice(p.object()).unwrap();
        assert_eq!(v["info"]["user"], "u\"1");
    }

    #[tokio::test]
    async fn binary_publications_are_b64_in_json_and_raw_on_websocket() {
        let p = publication(Payload::Binary(Bytes::from_static(b"\x00\xff")));
        let v: serde_json::Value = serde_json::from_slice(p.object()).unwrap();
        assert_eq!(v["b64"], "AP8=");
        let Message { binary: true, bytes } = p.message() else { panic!() };
        let (header, payload) = switchboard_protocol::frame::split_binary_frame(bytes).unwrap();
        assert!(header.starts_with("{\"pub\":{\"channel\":\"chat:a\",\"offset\":7"));
        assert!(!header.contains("b64"));
        assert_eq!(payload, b"\x00\xff");
    }

    #[test]
    fn presence_events_encode_flat() {
        let info = Arc::new(ClientInfo { client: "c1".into(), user: "u".into(), name: Some("Al".into()) });
        let e = PresenceEvent::new(ChannelName::new("chat:a").unwrap(), PresenceKind::Join, info);
        assert_eq!(
            e.ndjson_line(),
            &b"{\"join\":{\"channel\":\"chat:a\",\"client\":\"c1\",\"user\":\"u\",\"name\":\"Al\"}}\n"[..]
        );
        assert!(e.sse_event().starts_with(b"event: join\ndata: {\"channel\""));
    }
}
