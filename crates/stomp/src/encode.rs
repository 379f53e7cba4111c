//! The encoder: [`encode`] for any frame, [`MessageTemplate`] for MESSAGE fan-out.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::EncodeError;
use crate::escape::{escape_into, escaping};
use crate::frame::{Command, Frame, Version};

/// What the server sends to keep a connection alive: one EOL.
pub const HEARTBEAT: &[u8] = b"\n";

/// Appends `frame` to `out`, headers escaped as `version` says (never for CONNECT and
/// CONNECTED), lines ending in LF.
///
/// `content-length` headers in `frame.headers` are ignored: one is written, after the other
/// headers, whenever the body is not empty, so bodies holding NUL survive. On an error `out`
/// is left as it was.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) -> Result<(), EncodeError> {
    if !frame.body.is_empty() && !frame.command.allows_body() {
        return Err(EncodeError::BodyNotAllowed { command: frame.command });
    }
    let start = out.len();
    out.reserve(frame_size_hint(frame));
    out.extend_from_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    let headers = frame.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let written =
        write_headers(headers, escaping(frame.command, version), out).map(|()| write_body(&frame.body, out));
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Encodes `frame` into new bytes.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode(frame, version, &mut out)?;
    Ok(out.freeze())
}

fn frame_size_hint(frame: &Frame) -> usize {
    let headers: usize = frame.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    16 + headers + 32 + frame.body.len()
}

/// Writes `name:value\n` lines, skipping `content-length`.
fn write_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    escaping: Option<Version>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    for (name, value) in headers {
        if name != "content-length" {
            write_header(name, value, escaping, out)?;
        }
    }
    Ok(())
}

fn write_header(
    name: &str,
    value: &str,
    escaping: Option<Version>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let unencodable = || EncodeError::Unencodable { name: name.to_owned() };
    if name.is_empty() || !escape_into(name, true, escaping, out) {
        return Err(unencodable());
    }
    out.put_u8(b':');
    if !escape_into(value, false, escaping, out) {
        return Err(unencodable());
    }
    out.put_u8(b'\n');
    Ok(())
}

/// Writes `content-length` (for a non-empty body), the blank line, the body and the NUL.
fn write_body(body: &[u8], out: &mut BytesMut) {
    if !body.is_empty() {
        // Writing to a BytesMut cannot fail.
        let _ = writeln!(out, "content-length:{}", body.len());
    }
    out.put_u8(b'\n');
    out.extend_from_slice(body);
    out.put_u8(0);
}

/// One publication's MESSAGE frame, encoded once and written for many subscribers.
///
/// Subscribers of one destination get MESSAGE frames that differ only in `subscription`,
/// `message-id` and (for `client` and `client-individual` acks) `ack`. [`MessageTemplate::new`]
/// encodes everything else once, as one [`Bytes`]: the shared headers (escaped for the
/// version), `content-length`, the blank line, the body and the NUL. Each subscriber then costs
/// only its own header lines: [`write_for`](Self::write_for) writes them and copies the shared
/// part after them, [`parts_for`](Self::parts_for) returns them beside a reference-counted
/// clone of the shared part, for writers that take several buffers. A template belongs to one
/// version, because escaping differs: build one per version in use.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    version: Version,
    shared: Bytes,
}

/// The headers each subscriber's copy carries, written before the shared ones.
const PER_SUBSCRIBER: [&str; 3] = ["subscription", "message-id", "ack"];

impl MessageTemplate {
    /// Encodes the shared part: `headers` (such as `destination`, `content-type` and custom
    /// ones, in this order) and `body`. `content-length` in `headers` is ignored, as in
    /// [`encode`]; `subscription`, `message-id` and `ack` are refused, they are per subscriber.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(
        version: Version,
        headers: &[(N, V)],
        body: Bytes,
    ) -> Result<MessageTemplate, EncodeError> {
        let mut shared = BytesMut::with_capacity(body.len() + 64);
        let headers = headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        for (name, _) in headers.clone() {
            if PER_SUBSCRIBER.contains(&name) {
                return Err(EncodeError::PerSubscriberHeader { name: name.to_owned() });
            }
        }
        write_headers(headers, escaping(Command::Message, version), &mut shared)?;
        write_body(&body, &mut shared);
        Ok(MessageTemplate { version, shared: shared.freeze() })
    }

    /// The version the template was encoded for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The part every subscriber shares: shared headers, blank line, body, NUL.
    pub fn shared(&self) -> &Bytes {
        &self.shared
    }

    /// The per-subscriber start of the frame: `MESSAGE` and the subscriber's header lines.
    pub fn head_for(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
    ) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(64);
        self.write_head(subscription, message_id, ack, &[], &mut out)?;
        Ok(out.freeze())
    }

    /// Appends the whole frame for one subscriber to `out`. On an error `out` is unchanged.
    pub fn write_for(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.write_with(subscription, message_id, ack, &[], out)
    }

    /// [`write_for`](Self::write_for) with more per-subscriber headers (such as the
    /// `destination` the subscriber named), written after its own and before the shared ones.
    pub fn write_with(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
        extra: &[(&str, &str)],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.reserve(64 + self.shared.len());
        if let Err(error) = self.write_head(subscription, message_id, ack, extra, out) {
            out.truncate(start);
            return Err(error);
        }
        out.extend_from_slice(&self.shared);
        Ok(())
    }

    /// The whole frame for one subscriber, as one contiguous buffer.
    pub fn to_bytes(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
    ) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.write_for(subscription, message_id, ack, &mut out)?;
        Ok(out.freeze())
    }

    /// The frame for one subscriber as two buffers to send in order: its head and the shared
    /// part (a reference-counted clone, nothing copied).
    pub fn parts_for(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
    ) -> Result<[Bytes; 2], EncodeError> {
        Ok([self.head_for(subscription, message_id, ack)?, self.shared.clone()])
    }

    fn write_head(
        &self,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
        extra: &[(&str, &str)],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let escaping = escaping(Command::Message, self.version);
        out.extend_from_slice(b"MESSAGE\n");
        write_header("subscription", subscription, escaping, out)?;
        write_header("message-id", message_id, escaping, out)?;
        if let Some(ack) = ack {
            write_header("ack", ack, escaping, out)?;
        }
        write_headers(extra.iter().copied(), escaping, out)
    }
}
