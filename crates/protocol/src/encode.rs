//! What the server sends, encoded in one place for every transport: the publication object,
//! join/leave events, replies (including `history`), pings and disconnects. Transports only wrap
//! these bytes in their framing (a WebSocket text frame, an SSE `data:` line, an NDJSON line, a
//! length-prefixed WebTransport frame), so a field cannot drift between them. The client-side
//! decoders of the same shapes are [`crate::frame::ServerFrame`] and its objects.

use base64::Engine;

use crate::codes::Disconnect;
use crate::frame::ClientInfo;

/// The application-level ping (`{"ping":{}}`); a one-way stream's heartbeat line.
pub const PING: &[u8] = b"{\"ping\":{}}";

/// A publication's payload, as the encoder needs it.
#[derive(Debug, Clone, Copy)]
pub enum PayloadRef<'a> {
    /// JSON text, already validated.
    Json(&'a [u8]),
    /// Raw bytes: `b64` in JSON encodings, the frame's tail in binary WebSocket frames.
    Binary(&'a [u8]),
}

/// What a publication object is made of.
#[derive(Debug, Clone, Copy)]
pub struct PublicationRef<'a> {
    /// The channel.
    pub channel: &'a str,
    /// Its offset in the stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: &'a str,
    /// The payload.
    pub payload: PayloadRef<'a>,
    /// Who published it, when a client did.
    pub info: Option<&'a ClientInfo>,
}

impl PublicationRef<'_> {
    /// The publication object (`{"channel","offset","epoch","data"|"b64","info"}`); with
    /// `with_binary` false a binary payload is left out (it travels after a binary frame's header).
    pub fn object(&self, with_binary: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.payload_len());
        out.extend_from_slice(b"{\"channel\":");
        push_json(&mut out, self.channel);
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(self.offset.to_string().as_bytes());
        out.extend_from_slice(b",\"epoch\":");
        push_json(&mut out, self.epoch);
        match self.payload {
            PayloadRef::Json(data) => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data);
            }
            PayloadRef::Binary(data) if with_binary => {
                out.extend_from_slice(b",\"b64\":\"");
                out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(data).as_bytes());
                out.push(b'"');
            }
            PayloadRef::Binary(_) => {}
        }
        if let Some(info) = self.info {
            out.extend_from_slice(b",\"info\":");
            push_json(&mut out, info);
        }
        out.push(b'}');
        out
    }

    fn payload_len(&self) -> usize {
        match self.payload {
            PayloadRef::Json(b) | PayloadRef::Binary(b) => b.len(),
        }
    }

    /// The message frame of the bidirectional transports: `{"pub": OBJECT}` as text, or for a
    /// binary payload `{"pub": HEADER}\n PAYLOAD` as binary. `true` when binary.
    pub fn message(&self, object: &[u8]) -> (bool, Vec<u8>) {
        match self.payload {
            PayloadRef::Json(_) => (false, wrap(b"{\"pub\":", object, b"}")),
            PayloadRef::Binary(data) => {
                let mut out = wrap(b"{\"pub\":", &self.object(false), b"}\n");
                out.extend_from_slice(data);
                (true, out)
            }
        }
    }
}

/// A join or leave event's object: `{"channel": C, "client", "user", "name"?}`.
pub fn presence_object(channel: &str, info: &ClientInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"channel\":");
    push_json(&mut out, channel);
    out.push(b',');
    let mut flat = Vec::with_capacity(64);
    push_json(&mut flat, info);
    // `info`'s fields, flattened beside the channel.
    out.extend_from_slice(flat.get(1..).unwrap_or(b"}"));
    out
}

/// `{"NAME": OBJECT}`: how every pushed event (`pub`, `join`, `leave`, `connected`,
/// `subscribed`, `disconnect`) is wrapped on the message and NDJSON transports.
pub fn event(name: &str, object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + object.len() + 6);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(object);
    out.push(b'}');
    out
}

/// A disconnect's object: `{"code": N, "reason": "..."}`.
pub fn disconnect_object(d: Disconnect) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b"{\"code\":");
    out.extend_from_slice(d.code.to_string().as_bytes());
    out.extend_from_slice(b",\"reason\":");
    push_json(&mut out, d.reason);
    out.push(b'}');
    out
}

/// `{"disconnect": {"code","reason"}}`: said on the stream before a transport whose close code a
/// browser cannot see (WebTransport, data channels) closes.
pub fn disconnect(d: Disconnect) -> Vec<u8> {
    event("disconnect", &disconnect_object(d))
}

/// `{"epoch": E, "offset": O, "publications": [OBJECT, ...]}`: the body of a `history` reply and
/// of `GET /api/history`, from the publications' shared objects.
pub fn history_body<'a>(epoch: &str, offset: u64, objects: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"epoch\":");
    push_json(&mut out, epoch);
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(offset.to_string().as_bytes());
    out.extend_from_slice(b",\"publications\":[");
    for (i, object) in objects.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(object);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"id": N, "history": BODY}`.
pub fn history_reply(id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"history\":");
    out.extend_from_slice(body);
    out.push(b'}');
    out
}

fn wrap(prefix: &[u8], body: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len() + suffix.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(body);
    out.extend_from_slice(suffix);
    out
}

fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Strings and ClientInfo always serialize.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PresenceEventObject, PublicationObject, ServerFrame};

    fn info() -> ClientInfo {
        ClientInfo { client: "c1".into(), user: "u\"1".into(), name: Some("Al".into()) }
    }

    #[test]
    fn what_the_server_encodes_the_client_decodes() {
        let info = info();
        let p = PublicationRef {
            channel: "chat:a",
            offset: 7,
            epoch: "ep",
            payload: PayloadRef::Json(br#"{"t":"hi"}"#),
            info: Some(&info),
        };
        let object = p.object(true);
        let decoded: PublicationObject = serde_json::from_slice(&object).unwrap();
        assert_eq!((decoded.channel.as_str(), decoded.offset, decoded.epoch.as_str()), ("chat:a", 7, "ep"));
        assert_eq!(decoded.data.unwrap().get(), r#"{"t":"hi"}"#);
        assert_eq!(decoded.info.unwrap(), info);
        let (binary, message) = p.message(&object);
        assert!(!binary);
        let frame: ServerFrame = serde_json::from_slice(&message).unwrap();
        assert_eq!(frame.publication.unwrap().offset, 7);

        let join: PresenceEventObject = serde_json::from_slice(&presence_object("chat:a", &info)).unwrap();
        assert_eq!((join.channel.as_str(), join.info), ("chat:a", info));

        let d = serde_json::from_slice::<serde_json::Value>(&disconnect(Disconnect::SLOW_CONSUMER)).unwrap();
        assert_eq!(d, serde_json::json!({"disconnect": {"code": 3002, "reason": "slow consumer"}}));
        let body = history_body("ep", 7, [object.as_slice(), object.as_slice()]);
        let v: serde_json::Value = serde_json::from_slice(&history_reply(3, &body)).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["history"]["publications"].as_array().unwrap().len(), 2);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(PING).unwrap()["ping"], serde_json::json!({}));
    }

    #[test]
    fn binary_payloads_are_b64_in_json_and_raw_after_a_binary_header() {
        let p = PublicationRef {
            channel: "a",
            offset: 1,
            epoch: "e",
            payload: PayloadRef::Binary(b"\x00\xff"),
            info: None,
        };
        let object = p.object(true);
        let v: serde_json::Value = serde_json::from_slice(&object).unwrap();
        assert_eq!(v["b64"], "AP8=");
        let (binary, message) = p.message(&object);
        assert!(binary);
        let (header, payload) = crate::frame::split_binary_frame(&message).unwrap();
        assert!(header.starts_with("{\"pub\":{\"channel\":\"a\",\"offset\":1") && !header.contains("b64"));
        assert_eq!(payload, b"\x00\xff");
    }
}
