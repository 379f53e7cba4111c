//! The WebTransport framing (`docs/webtransport.md`), sans-IO.
//!
//! The protocol stream carries length-prefixed frames: `KIND (u8) LENGTH (u32, big-endian)
//! PAYLOAD`. `KIND` 0 is a text frame (one JSON object, exactly a WebSocket text frame); 1 is a
//! binary frame (`HEADER "\n" PAYLOAD`, exactly a WebSocket binary frame). A datagram is
//! `KIND PAYLOAD`: it is self-delimiting, so it needs no length.
//!
//! Check, then parse: [`decode`] first looks at the five header bytes (complete? sane kind? within
//! `max_frame_bytes`?), and only a complete frame is handed to the protocol's parser.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use switchboard_protocol::frame::{ClientFrame, FrameError, parse_binary_frame, parse_client_frame};
use switchboard_protocol::{Disconnect, ErrorCode};

/// A text frame: one JSON object.
pub const TEXT: u8 = 0;
/// A binary frame: `HEADER "\n" PAYLOAD`.
pub const BINARY: u8 = 1;
/// Bytes before a stream frame's payload.
pub const HEADER_LEN: usize = 5;

/// Why the protocol stream cannot be read any further. Each ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame announced more than `max_frame_bytes`.
    #[error("frame of {len} bytes is larger than {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame kind other than text or binary.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
}

/// `1009 message too big`, as WebSocket closes an oversize message.
pub const MESSAGE_TOO_BIG: Disconnect = Disconnect { code: 1009, reason: "message too big" };

impl CodecError {
    /// The disconnect that ends the session.
    pub fn disconnect(&self) -> Disconnect {
        match self {
            CodecError::TooLarge { .. } => MESSAGE_TOO_BIG,
            CodecError::UnknownKind(_) => Disconnect::BAD_REQUEST,
        }
    }
}

/// Takes the next complete frame off `buf` and parses it: `Ok(None)` when more bytes are needed.
/// The inner `Result` is the protocol's (a bad command is answered, not fatal by itself).
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Result<ClientFrame, FrameError>>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let kind = buf[0];
    if kind != TEXT && kind != BINARY {
        return Err(CodecError::UnknownKind(kind));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(len).freeze();
    Ok(Some(parse(kind, payload)))
}

/// Parses a datagram from the client: one command, like a stream frame.
pub fn decode_datagram(datagram: Bytes) -> Result<ClientFrame, FrameError> {
    match datagram.first() {
        Some(&kind) if kind == TEXT || kind == BINARY => parse(kind, datagram.slice(1..)),
        _ => Err(FrameError {
            id: None,
            code: ErrorCode::BadRequest,
            message: "datagram is not a text or binary frame".into(),
        }),
    }
}

fn parse(kind: u8, payload: Bytes) -> Result<ClientFrame, FrameError> {
    if kind == BINARY {
        return parse_binary_frame(&payload);
    }
    match std::str::from_utf8(&payload) {
        Ok(text) => parse_client_frame(text),
        Err(_) => Err(FrameError {
            id: None,
            code: ErrorCode::BadRequest,
            message: "text frame is not UTF-8".into(),
        }),
    }
}

/// Appends one stream frame.
pub fn put_frame(buf: &mut BytesMut, kind: u8, payload: &[u8]) {
    buf.reserve(HEADER_LEN + payload.len());
    buf.put_u8(kind);
    buf.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    buf.put_slice(payload);
}

/// Writes one datagram (`KIND PAYLOAD`) into `buf`, replacing what it held.
pub fn put_datagram(buf: &mut BytesMut, kind: u8, payload: &[u8]) {
    buf.clear();
    buf.reserve(1 + payload.len());
    buf.put_u8(kind);
    buf.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use switchboard_protocol::frame::Command;

    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        put_frame(&mut b, kind, payload);
        b
    }

    #[test]
    fn decodes_frames_split_anywhere_and_back_to_back() {
        let mut all = frame(TEXT, br#"{"id":1,"subscribe":{"channel":"a","datagram":true}}"#);
        all.extend_from_slice(&frame(BINARY, b"{\"id\":2,\"publish\":{\"channel\":\"a\"}}\n\x00\x01"));
        for cut in 0..all.len() {
            let mut buf = BytesMut::from(&all[..cut]);
            let mut got = Vec::new();
            while let Some(f) = decode(&mut buf, 1024).unwrap() {
                got.push(f.unwrap());
            }
            buf.extend_from_slice(&all[cut..]);
            while let Some(f) = decode(&mut buf, 1024).unwrap() {
                got.push(f.unwrap());
            }
            assert!(buf.is_empty());
            assert_eq!(got.len(), 2, "cut at {cut}");
            let ClientFrame::Command { command: Command::Subscribe(s), .. } = &got[0] else { panic!() };
            assert!(s.datagram);
            let ClientFrame::Command { command: Command::Publish(p), .. } = &got[1] else { panic!() };
            assert_eq!(p.binary.as_deref(), Some(&b"\x00\x01"[..]));
        }
    }

    #[test]
    fn refuses_oversize_and_unknown_frames_before_buffering_them() {
        let mut buf = BytesMut::from(&[TEXT, 0, 1, 0, 0][..]);
        let err = decode(&mut buf, 1024).unwrap_err();
        assert_eq!(err, CodecError::TooLarge { len: 65536, max: 1024 });
        assert_eq!(err.disconnect().code, 1009);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let err = decode(&mut buf, 1024).unwrap_err();
        assert_eq!(err.disconnect(), Disconnect::BAD_REQUEST);
    }

    #[test]
    fn garbage_inside_a_frame_is_a_protocol_error_without_an_id() {
        let mut buf = frame(TEXT, b"\xff\xfe not json");
        let e = decode(&mut buf, 1024).unwrap().unwrap().unwrap_err();
        assert_eq!(e.id, None);
        let mut buf = frame(TEXT, br#"{"id":7,"nope":{}}"#);
        let e = decode(&mut buf, 1024).unwrap().unwrap().unwrap_err();
        assert_eq!((e.id, e.code), (Some(7), ErrorCode::MethodNotFound));
    }

    #[test]
    fn datagrams_carry_one_command_each() {
        let mut buf = BytesMut::new();
        put_datagram(&mut buf, TEXT, br#"{"id":3,"publish":{"channel":"c","data":1}}"#);
        assert!(matches!(decode_datagram(buf.freeze()), Ok(ClientFrame::Command { id: 3, .. })));
        assert!(decode_datagram(Bytes::new()).is_err());
        assert!(decode_datagram(Bytes::from_static(b"\x07{}")).is_err());
    }
}
