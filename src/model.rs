//! The channel model's values: publications, presence events and what a connection is delivered.
//!
//! A publication is created once by the broker and shared (`Arc`) by the history and every
//! subscriber. Its wire encodings are computed lazily, once per format, and shared as `Bytes`:
//! a fan-out to ten thousand WebSocket subscribers encodes the frame once.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::{Message, Utf8Bytes};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, Position};
use tokio::time::Instant;

/// A stream's epoch. Cheap to clone.
pub type Epoch = Arc<str>;

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
    ndjson: OnceLock<Bytes>,
    sse: OnceLock<Bytes>,
    ws: OnceLock<Message>,
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

    /// Its position in the stream.
    pub fn position(&self) -> Position {
        Position { epoch: self.epoch.to_string(), offset: self.offset }
    }

    /// The publication object (`docs/protocol.md`), with `b64` for binary payloads.
    pub fn object(&self) -> &Bytes {
        self.encoded.object.get_or_init(|| self.encode_object(true))
    }

    /// `{"pub": OBJECT}\n`: one line of HTTP streaming.
    pub fn ndjson_line(&self) -> &Bytes {
        self.encoded.ndjson.get_or_init(|| wrap(b"{\"pub\":", self.object(), b"}\n"))
    }

    /// `data: OBJECT\n`: an SSE event without its `id:` line and terminator, which are per stream.
    pub fn sse_data(&self) -> &Bytes {
        self.encoded.sse.get_or_init(|| wrap(b"data: ", self.object(), b"\n"))
    }

    /// The WebSocket frame: `{"pub": OBJECT}` as text, or `{"pub": HEADER}\n PAYLOAD` as binary.
    pub fn ws_message(&self) -> &Message {
        self.encoded.ws.get_or_init(|| match &self.payload {
            Payload::Json(_) => {
                let line = self.ndjson_line();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                Message::Text(Utf8Bytes::from(text))
            }
            Payload::Binary(bytes) => {
                let header = self.encode_object(false);
                let mut buf = BytesMut::with_capacity(header.len() + bytes.len() + 9);
                buf.put_slice(b"{\"pub\":");
                buf.put_slice(&header);
                buf.put_slice(b"}\n");
                buf.put_slice(bytes);
                Message::Binary(buf.freeze())
            }
        })
    }

    fn encode_object(&self, with_binary: bool) -> Bytes {
        let mut out = Vec::with_capacity(96 + self.payload.len());
        out.extend_from_slice(b"{\"channel\":");
        push_json_str(&mut out, self.channel.as_str());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(self.offset.to_string().as_bytes());
        out.extend_from_slice(b",\"epoch\":");
        push_json_str(&mut out, &self.epoch);
        match &self.payload {
            Payload::Json(data) => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data);
            }
            Payload::Binary(data) if with_binary => {
                out.extend_from_slice(b",\"b64\":\"");
                out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(data).as_bytes());
                out.push(b'"');
            }
            Payload::Binary(_) => {}
        }
        if let Some(info) = &self.info {
            out.extend_from_slice(b",\"info\":");
            push_json(&mut out, info.as_ref());
        }
        out.push(b'}');
        Bytes::from(out)
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
    encoded: OnceLock<(Bytes, Bytes)>,
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

    fn encodings(&self) -> &(Bytes, Bytes) {
        self.encoded.get_or_init(|| {
            let mut object = Vec::with_capacity(96);
            object.extend_from_slice(b"{\"channel\":");
            push_json_str(&mut object, self.channel.as_str());
            object.push(b',');
            let info = serde_json::to_vec(self.info.as_ref()).unwrap_or_else(|_| b"{}".to_vec());
            object.extend_from_slice(&info[1..]);
            let line = wrap(format!("{{\"{}\":", self.name()).as_bytes(), &object, b"}\n");
            let sse = wrap(format!("event: {}\ndata: ", self.name()).as_bytes(), &object, b"\n");
            (line, sse)
        })
    }

    /// `{"join": {...}}\n`.
    pub fn ndjson_line(&self) -> &Bytes {
        &self.encodings().0
    }

    /// `event: join\ndata: {...}\n` without the terminating blank line.
    pub fn sse_event(&self) -> &Bytes {
        &self.encodings().1
    }

    /// The WebSocket text frame.
    pub fn ws_message(&self) -> Message {
        let line = self.ndjson_line();
        Message::Text(Utf8Bytes::from(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned()))
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

impl Delivery {
    /// The channel it belongs to.
    pub fn channel(&self) -> &ChannelName {
        match self {
            Delivery::Publication(p) => &p.channel,
            Delivery::Presence(e) => &e.channel,
        }
    }
}

fn wrap(prefix: &[u8], body: &[u8], suffix: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(prefix.len() + body.len() + suffix.len());
    buf.put_slice(prefix);
    buf.put_slice(body);
    buf.put_slice(suffix);
    buf.freeze()
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    push_json(out, s);
}

fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Strings and our info struct always serialize.
    let _ = serde_json::to_writer(out, value);
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
        let Message::Text(t) = p.ws_message() else { panic!() };
        assert_eq!(t.as_str(), format!("{{\"pub\":{obj}}}"));
        assert_eq!(p.object().as_ptr(), p.object().as_ptr(), "cached, not re-encoded");
        let v: serde_json::Value = serde_json::from_slice(p.object()).unwrap();
        assert_eq!(v["info"]["user"], "u\"1");
    }

    #[tokio::test]
    async fn binary_publications_are_b64_in_json_and_raw_on_websocket() {
        let p = publication(Payload::Binary(Bytes::from_static(b"\x00\xff")));
        let v: serde_json::Value = serde_json::from_slice(p.object()).unwrap();
        assert_eq!(v["b64"], "AP8=");
        let Message::Binary(b) = p.ws_message() else { panic!() };
        let (header, payload) = switchboard_protocol::frame::split_binary_frame(b).unwrap();
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
