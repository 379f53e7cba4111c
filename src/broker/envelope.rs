//! How shared brokers put publications and presence events on the wire of their backend. Sans-IO:
//! bytes in, values out, no panics on foreign input.
//!
//! A publication's **body** is what a node hands to the backend and what the history keeps:
//!
//! ```text
//! body    = kind info-len ":" info payload
//! kind    = "j" (JSON payload) / "b" (binary payload)
//! info-len = decimal byte length of info (0: no publisher info)
//! info    = the publisher's ClientInfo as JSON
//! payload = the payload bytes, to the end
//! ```
//!
//! A **message** is what goes to every node over the fan-out (Redis pub/sub):
//!
//! ```text
//! message = "P" offset ":" epoch ":" body     (a publication; the backend adds offset and epoch)
//!         / "J" info                         (a join)
//!         / "L" info                         (a leave)
//! ```
//!
//! Epochs never hold `:` (they are alphanumeric), so the first two colons after `P` end the offset
//! and the epoch. NATS carries offset and epoch in headers and the body as the message payload.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_protocol::ChannelName;
use switchboard_protocol::frame::ClientInfo;

use crate::model::{Delivery, Epoch, Payload, PresenceEvent, PresenceKind, Publication};

/// Foreign bytes that are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes end before the envelope does.
    #[error("truncated envelope")]
    Truncated,
    /// A field does not parse.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

/// A publication's body: payload and publisher info.
pub fn encode_body(payload: &Payload, info: Option<&ClientInfo>) -> Bytes {
    let info = info.and_then(|i| serde_json::to_vec(i).ok()).unwrap_or_default();
    let (kind, data) = match payload {
        Payload::Json(b) => (b'j', b),
        Payload::Binary(b) => (b'b', b),
    };
    let mut buf = BytesMut::with_capacity(8 + info.len() + data.len());
    buf.put_u8(kind);
    buf.put_slice(info.len().to_string().as_bytes());
    buf.put_u8(b':');
    buf.put_slice(&info);
    buf.put_slice(data);
    buf.freeze()
}

/// Payload and publisher info from a body.
pub fn decode_body(body: Bytes) -> Result<(Payload, Option<Arc<ClientInfo>>), EnvelopeError> {
    let kind = *body.first().ok_or(EnvelopeError::Truncated)?;
    let (len, rest) = split_number(&body[1..])?;
    let start = body.len() - rest.len();
    let len = usize::try_from(len).map_err(|_| EnvelopeError::Malformed("info length"))?;
    if rest.len() < len {
        return Err(EnvelopeError::Truncated);
    }
    let info = if len == 0 {
        None
    } else {
        let info: ClientInfo =
            serde_json::from_slice(&rest[..len]).map_err(|_| EnvelopeError::Malformed("publisher info"))?;
        Some(Arc::new(info))
    };
    let data = body.slice(start + len..);
    let payload = match kind {
        b'j' => Payload::Json(data),
        b'b' => Payload::Binary(data),
        _ => return Err(EnvelopeError::Malformed("payload kind")),
    };
    Ok((payload, info))
}

/// A publication message, as a backend that cannot run our code would build it (the Redis script
/// builds the same bytes itself).
pub fn encode_publication(offset: u64, epoch: &str, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + body.len());
    buf.put_u8(b'P');
    buf.put_slice(offset.to_string().as_bytes());
    buf.put_u8(b':');
    buf.put_slice(epoch.as_bytes());
    buf.put_u8(b':');
    buf.put_slice(body);
    buf.freeze()
}

/// A join or leave message.
pub fn encode_presence(kind: PresenceKind, info: &ClientInfo) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u8(match kind {
        PresenceKind::Join => b'J',
        PresenceKind::Leave => b'L',
    });
    buf.put_slice(&serde_json::to_vec(info).unwrap_or_default());
    buf.freeze()
}

/// A presence entry's stored info.
pub fn encode_info(info: &ClientInfo) -> Vec<u8> {
    serde_json::to_vec(info).unwrap_or_default()
}

/// A stored presence entry's info.
pub fn decode_info(bytes: &[u8]) -> Result<Arc<ClientInfo>, EnvelopeError> {
    serde_json::from_slice(bytes).map(Arc::new).map_err(|_| EnvelopeError::Malformed("client info"))
}

/// The delivery a message of `channel` carries.
pub fn decode_message(channel: ChannelName, message: Bytes) -> Result<Delivery, EnvelopeError> {
    let tag = *message.first().ok_or(EnvelopeError::Truncated)?;
    match tag {
        b'P' => {
            let (offset, rest) = split_number(&message[1..])?;
            let colon = rest.iter().position(|b| *b == b':').ok_or(EnvelopeError::Truncated)?;
            let epoch = std::str::from_utf8(&rest[..colon]).map_err(|_| EnvelopeError::Malformed("epoch"))?;
            if epoch.is_empty() {
                return Err(EnvelopeError::Malformed("epoch"));
            }
            let epoch: Epoch = Arc::from(epoch);
            let body_start = message.len() - rest.len() + colon + 1;
            let (payload, info) = decode_body(message.slice(body_start..))?;
            Ok(Delivery::Publication(Arc::new(Publication::new(channel, offset, epoch, payload, info))))
        }
        b'J' | b'L' => {
            let kind = if tag == b'J' { PresenceKind::Join } else { PresenceKind::Leave };
            let info = decode_info(&message[1..])?;
            Ok(Delivery::Presence(Arc::new(PresenceEvent::new(channel, kind, info))))
        }
        _ => Err(EnvelopeError::Malformed("message tag")),
    }
}

/// `digits ":" rest` → (number, rest).
fn split_number(bytes: &[u8]) -> Result<(u64, &[u8]), EnvelopeError> {
    let colon = bytes.iter().position(|b| *b == b':').ok_or(EnvelopeError::Truncated)?;
    let digits = &bytes[..colon];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(EnvelopeError::Malformed("number"));
    }
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EnvelopeError::Malformed("number"))?;
    Ok((n, &bytes[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ClientInfo {
        ClientInfo { client: "c:1".into(), user: "u\"x".into(), name: Some("Al".into()) }
    }

    fn channel() -> ChannelName {
        ChannelName::new("chat:a.b").unwrap()
    }

    #[test]
    fn bodies_round_trip_json_binary_and_info() {
        for (payload, info) in [
            (Payload::Json(Bytes::from_static(br#"{"a":":1:"}"#)), Some(info())),
            (Payload::Binary(Bytes::from_static(b"\x00:\xff")), None),
            (Payload::Json(Bytes::from_static(b"1")), None),
        ] {
            let body = encode_body(&payload, info.as_ref());
            let (p, i) = decode_body(body).unwrap();
            assert_eq!(p, payload);
            assert_eq!(i.as_deref(), info.as_ref());
        }
        assert_eq!(&encode_body(&Payload::Json(Bytes::from_static(b"7")), None)[..], b"j0:7");
    }

    #[test]
    fn publication_messages_carry_offset_and_epoch() {
        let body = encode_body(&Payload::Json(Bytes::from_static(b"{}")), Some(&info()));
        let message = encode_publication(42, "Ep0ch", &body);
        let Delivery::Publication(p) = decode_message(channel(), message).unwrap() else { panic!() };
        assert_eq!((p.offset, &*p.epoch), (42, "Ep0ch"));
        assert_eq!(p.payload, Payload::Json(Bytes::from_static(b"{}")));
        assert_eq!(p.info.as_deref(), Some(&info()));
        assert_eq!(p.channel, channel());
    }

    #[test]
    fn presence_messages_round_trip() {
        for kind in [PresenceKind::Join, PresenceKind::Leave] {
            let Delivery::Presence(e) = decode_message(channel(), encode_presence(kind, &info())).unwrap()
            else {
                panic!()
            };
            assert_eq!((e.kind, e.info.as_ref()), (kind, &info()));
        }
        assert_eq!(decode_info(&encode_info(&info())).unwrap().as_ref(), &info());
    }

    #[test]
    fn foreign_bytes_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"P",
            b"P1",
            b"P1:",
            b"P1:e",
            b"P1::j0:1",
            b"Px:e:j0:1",
            b"P99999999999999999999999:e:j0:1",
            b"P1:e:x0:1",
            b"P1:e:j9:{}",
            b"P1:e:j2:xx",
            b"J",
            b"Jnot json",
            b"Z",
            b"P1:e:",
        ];
        for b in bad {
            assert!(decode_message(channel(), Bytes::copy_from_slice(b)).is_err(), "{:?}", b);
        }
        assert!(decode_message(channel(), Bytes::from_static(b"P1:e:j0:")).is_ok(), "empty payload");
    }
}
