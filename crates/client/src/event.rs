//! What a subscription yields ([`Event`], [`Publication`]) and the one place that turns the
//! server's wire objects into them, for every transport.

use bytes::Bytes;
use serde::Deserialize;
use switchboard_protocol::Position;
use switchboard_protocol::frame::{
    ClientInfo, DisconnectBody, PresenceEventObject, PublicationObject, ServerFrame, SubscribeReply,
};

use crate::Error;

/// Something the server pushed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The connection is up (WebSocket `connect` reply, SSE `connected`, stream `connected`).
    Connected {
        /// The connection's id, as presence shows it.
        client: String,
    },
    /// A channel's subscription started; `epoch`/`offset` is where it stands. With
    /// `recovered: false` the requested position could not be honoured and the subscription
    /// starts at the current end of the stream (the polling transports report this too).
    Subscribed(SubscribeReply),
    /// A publication, replayed or live.
    Publication(Publication),
    /// A client joined a channel.
    Join(PresenceEventObject),
    /// A client left a channel.
    Leave(PresenceEventObject),
    /// The server ended one subscription; the connection stays.
    Unsubscribed {
        /// The channel.
        channel: String,
        /// The disconnect code saying why.
        code: u16,
        /// The reason.
        reason: String,
    },
    /// The server is ending the connection; nothing follows. 3000–3499 and 4000–4499: reconnect
    /// and resume from [`Subscription::cursor`](crate::Subscription::cursor); 3500–3999 and
    /// 4500–4999: do not reconnect.
    Disconnected {
        /// The close or disconnect code.
        code: u16,
        /// The reason.
        reason: String,
    },
}

impl Event {
    /// The channel position this event moves the reader to, if any.
    pub fn position(&self) -> Option<(&str, Position)> {
        match self {
            Event::Subscribed(s) => Some((&s.channel, Position { epoch: s.epoch.clone(), offset: s.offset })),
            Event::Publication(p) => {
                Some((&p.channel, Position { epoch: p.epoch.clone(), offset: p.offset }))
            }
            _ => None,
        }
    }
}

/// A publication as a client receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The channel.
    pub channel: String,
    /// Its offset in the channel's stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
    /// The JSON payload (absent for a binary publication).
    pub data: Option<serde_json::Value>,
    /// The binary payload (absent for a JSON publication).
    pub binary: Option<Bytes>,
    /// Who published it, when a connected client did.
    pub info: Option<ClientInfo>,
}

impl Publication {
    /// Builds a publication from the wire object; `binary` is a WebSocket binary frame's payload.
    pub(crate) fn from_object(obj: PublicationObject, binary: Option<Bytes>) -> Result<Self, Error> {
        let data = match obj.data {
            Some(raw) => Some(
                serde_json::from_str(raw.get())
                    .map_err(|e| Error::Protocol(format!("publication data: {e}")))?,
            ),
            None => None,
        };
        let binary = match (binary, obj.b64) {
            (Some(b), _) => Some(b),
            (None, Some(text)) => Some(Bytes::from(
                decode_base64(&text)
                    .ok_or_else(|| Error::Protocol("publication b64 is not base64".into()))?,
            )),
            (None, None) => None,
        };
        Ok(Self { channel: obj.channel, offset: obj.offset, epoch: obj.epoch, data, binary, info: obj.info })
    }
}

/// A server push, decoded.
#[derive(Debug)]
pub(crate) enum Push {
    /// Hand this to the caller.
    Event(Event),
    /// A heartbeat; a WebSocket client answers it with a pong.
    Ping,
    /// Nothing this client knows; skipped (newer servers may add pushes).
    Unknown,
}

/// `{"channel", "code", "reason"}` of an `unsubscribed` push.
#[derive(Debug, Deserialize)]
pub(crate) struct UnsubscribedBody {
    channel: String,
    code: u16,
    reason: String,
}

impl From<UnsubscribedBody> for Event {
    fn from(b: UnsubscribedBody) -> Self {
        Event::Unsubscribed { channel: b.channel, code: b.code, reason: b.reason }
    }
}

impl From<DisconnectBody> for Event {
    fn from(b: DisconnectBody) -> Self {
        Event::Disconnected { code: b.code, reason: b.reason }
    }
}

/// Decodes one push object (a WebSocket text frame without `id`, or an NDJSON line).
pub(crate) fn decode_push(text: &[u8]) -> Result<Push, Error> {
    expect_object(text)?;
    let frame: ServerFrame =
        serde_json::from_slice(text).map_err(|e| Error::Protocol(format!("bad server frame: {e}")))?;
    push_from_frame(frame, text, None)
}

/// Fails unless `text` looks like a JSON object (serde would also read a struct from an array).
pub(crate) fn expect_object(text: &[u8]) -> Result<(), Error> {
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(Error::Protocol("server frame is not a JSON object".into())),
    }
}

/// Turns a decoded frame into a push. `text` is the frame's JSON, re-read only for pushes the
/// shared `ServerFrame` does not model; `binary` is a binary frame's payload.
pub(crate) fn push_from_frame(frame: ServerFrame, text: &[u8], binary: Option<Bytes>) -> Result<Push, Error> {
    let event = if let Some(p) = frame.publication {
        Event::Publication(Publication::from_object(p, binary)?)
    } else if let Some(j) = frame.join {
        Event::Join(j)
    } else if let Some(l) = frame.leave {
        Event::Leave(l)
    } else if let Some(s) = frame.subscribed {
        Event::Subscribed(s)
    } else if let Some(c) = frame.connected {
        Event::Connected { client: c.client }
    } else if let Some(d) = frame.disconnect {
        d.into()
    } else if frame.ping.is_some() {
        return Ok(Push::Ping);
    } else {
        #[derive(Deserialize)]
        struct Other {
            unsubscribed: Option<UnsubscribedBody>,
        }
        match serde_json::from_slice::<Other>(text) {
            Ok(Other { unsubscribed: Some(u) }) => u.into(),
            _ => return Ok(Push::Unknown),
        }
    };
    Ok(Push::Event(event))
}

/// Decodes standard or URL-safe base64, padded or not.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> Event {
        match decode_push(text.as_bytes()).unwrap() {
            Push::Event(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_every_push() {
        let Event::Publication(p) = event(
            r#"{"pub":{"channel":"c","offset":7,"epoch":"e","data":{"a":1},"info":{"client":"x","user":"u"}}}"#,
        ) else {
            panic!()
        };
        assert_eq!((p.channel.as_str(), p.offset, p.epoch.as_str()), ("c", 7, "e"));
        assert_eq!(p.data, Some(serde_json::json!({"a": 1})));
        assert_eq!(p.info.unwrap().user, "u");
        let Event::Publication(p) = event(r#"{"pub":{"channel":"c","offset":1,"epoch":"e","b64":"AAH_"}}"#)
        else {
            panic!()
        };
        assert_eq!(p.binary.as_deref(), Some(&[0u8, 1, 255][..]));
        assert!(
            matches!(event(r#"{"join":{"channel":"c","client":"x","user":"u"}}"#), Event::Join(j) if j.info.client == "x")
        );
        assert!(matches!(event(r#"{"leave":{"channel":"c","client":"x","user":""}}"#), Event::Leave(_)));
        assert_eq!(event(r#"{"connected":{"client":"x"}}"#), Event::Connected { client: "x".into() });
        assert_eq!(
            event(r#"{"disconnect":{"code":3002,"reason":"slow consumer"}}"#),
            Event::Disconnected { code: 3002, reason: "slow consumer".into() }
        );
        assert_eq!(
            event(r#"{"unsubscribed":{"channel":"c","code":3502,"reason":"forbidden"}}"#),
            Event::Unsubscribed { channel: "c".into(), code: 3502, reason: "forbidden".into() }
        );
        let s =
            event(r#"{"subscribed":{"channel":"c","epoch":"e","offset":3,"recovered":true,"replayed":2}}"#);
        assert_eq!(s.position(), Some(("c", Position { epoch: "e".into(), offset: 3 })));
        assert!(matches!(decode_push(b"{\"ping\":{}}"), Ok(Push::Ping)));
        assert!(matches!(decode_push(b"{\"future\":{}}"), Ok(Push::Unknown)));
        assert!(matches!(decode_push(b"nope"), Err(Error::Protocol(_))));
        assert!(matches!(decode_push(b" [] "), Err(Error::Protocol(_))));
        assert!(decode_push(br#"{"pub":{"channel":"c","offset":1,"epoch":"e","b64":"!"}}"#).is_err());
    }

    #[test]
    fn base64_accepts_both_alphabets_and_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("+/8=").unwrap(), decode_base64("-_8").unwrap());
        assert_eq!(decode_base64("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a b=").is_none());
    }
}
