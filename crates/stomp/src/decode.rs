//! The decoder: check, then parse.
//!
//! The check pass walks the buffer once, left to right, and says whether it starts with a complete
//! heart-beat or frame, or that more bytes are needed, or that the bytes can never become a
//! frame. Every limit is enforced during that walk, at the first byte that breaks it, so a
//! peer cannot make us buffer more than [`Limits::max_frame_size`] bytes of one frame, and the
//! answer for a prefix of a stream is either "incomplete" or the answer for the whole stream
//! (the fuzz tests hold the decoder to that). Only a complete frame is then parsed into a
//! [`Frame`]: headers unescaped, the body sliced out of the buffer without copying.

use std::ops::Range;

use bytes::{Buf, BytesMut};

use crate::error::DecodeError;
use crate::escape::{escaping, unescape};
use crate::frame::{Command, Frame, Version};

/// What a peer may send in one frame. Exceeding any of these is a [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the first byte of the command to the terminating NUL, inclusive.
    pub max_frame_size: usize,
    /// Header lines (a repeated header counts each time).
    pub max_headers: usize,
    /// Bytes of one header line, without its EOL, before unescaping.
    pub max_header_line: usize,
    /// Bytes of the body.
    pub max_body: usize,
}

impl Default for Limits {
    /// The server's defaults: 128 KiB frames (its `max_frame_bytes`), 64 KiB bodies (its
    /// `max_publication_bytes`), 100 headers of at most 8 KiB each.
    fn default() -> Limits {
        Limits {
            max_frame_size: 128 * 1024,
            max_headers: 100,
            max_header_line: 8 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// One item read from a STOMP byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A frame.
    Frame(Frame),
    /// One EOL (`\n` or `\r\n`) between frames: a heart-beat, or the optional EOLs after a NUL.
    Heartbeat,
}

/// Reads the next heart-beat or frame from the front of `buf` and removes its bytes.
///
/// `Ok(None)` means more bytes are needed (nothing is removed). On an error nothing is removed
/// and the stream cannot continue: answer with an ERROR frame carrying
/// [`DecodeError::message`] and close. Frame lines may end in LF or CRLF in every version;
/// headers are unescaped as `version` says (never for CONNECT and CONNECTED). A header is
/// split at its first `:`; later raw colons belong to the value, even in 1.1 and 1.2 (which
/// say to escape them), as other brokers accept them. A CR anywhere but before an LF is an
/// error.
///
/// Each call checks the buffer from its first byte. For a connection whose frames may arrive
/// in many pieces, use a [`Decoder`], which resumes where the last call stopped.
pub fn decode(buf: &mut BytesMut, version: Version, limits: &Limits) -> Result<Option<Decoded>, DecodeError> {
    decode_from(buf, version, limits, &mut Progress::default())
}

/// The decoder of one connection: [`decode`] plus a memory of how far an incomplete frame
/// has been checked, so a frame that arrives a few bytes at a time is scanned about once,
/// not once per piece (which a peer could use to burn CPU).
///
/// Between calls, the buffer may only grow at its end: the decoder removes what it decodes,
/// the caller appends what arrives.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Version,
    limits: Limits,
    progress: Progress,
}

impl Decoder {
    /// A decoder for `version` (before CONNECT, any: CONNECT is never escaped).
    pub fn new(version: Version, limits: Limits) -> Decoder {
        Decoder { version, limits, progress: Progress::default() }
    }

    /// The version headers are unescaped for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Switches version, once CONNECT has negotiated one.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads the next heart-beat or frame, as [`decode`] does.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        decode_from(buf, self.version, &self.limits, &mut self.progress)
    }
}

fn decode_from(
    buf: &mut BytesMut,
    version: Version,
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<Decoded>, DecodeError> {
    let checked = check(buf, limits, progress);
    if !matches!(checked, Ok(None)) {
        *progress = Progress::default();
    }
    match checked? {
        None => Ok(None),
        Some(Checked::Heartbeat(len)) => {
            buf.advance(len);
            Ok(Some(Decoded::Heartbeat))
        }
        Some(Checked::Frame(layout)) => {
            let headers = parse_headers(&buf[layout.headers.clone()], layout.command, version)?;
            let bytes = buf.split_to(layout.end).freeze();
            let body = bytes.slice(layout.body);
            Ok(Some(Decoded::Frame(Frame { command: layout.command, headers, body })))
        }
    }
}

/// What [`check`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// A heart-beat EOL of this many bytes.
    Heartbeat(usize),
    /// A complete frame.
    Frame(Layout),
}

/// Where a complete frame's parts are, as offsets into the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) command: Command,
    /// The header lines with their EOLs, without the blank line.
    pub(crate) headers: Range<usize>,
    pub(crate) body: Range<usize>,
    /// One past the terminating NUL.
    pub(crate) end: usize,
}

/// How far [`check`] got into an incomplete frame, so that the next call resumes there
/// instead of rescanning from the frame's first byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    frame: Option<Partial>,
}

#[derive(Debug, Clone)]
struct Partial {
    command: Command,
    headers_start: usize,
    /// Where the first header line not yet complete starts.
    line: usize,
    count: usize,
    content_length: Option<usize>,
    /// Once the blank line is seen: where the body starts, and how many of its bytes are
    /// known to hold no NUL.
    body: Option<(usize, usize)>,
}

/// The frame-boundary pass: complete, incomplete (`Ok(None)`) or never valid. `progress` is
/// what an earlier call on the same buffer (grown since only at its end) found; the caller
/// resets it after a result other than `Ok(None)`.
pub(crate) fn check(
    buf: &[u8],
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<Checked>, DecodeError> {
    if progress.frame.as_ref().is_some_and(|partial| buf.len() < partial.line) {
        *progress = Progress::default(); // Not the buffer we scanned: start over.
    }
    let lines = Lines { buf, max_frame: limits.max_frame_size };
    let partial = match &mut progress.frame {
        Some(partial) => partial,
        None => {
            match (buf.first(), buf.get(1)) {
                (None, _) | (Some(b'\r'), None) => return Ok(None),
                (Some(b'\n'), _) => return Ok(Some(Checked::Heartbeat(1))),
                (Some(b'\r'), Some(b'\n')) => return Ok(Some(Checked::Heartbeat(2))),
                (Some(b'\r'), Some(_)) => return Err(DecodeError::BareCarriageReturn),
                _ => {}
            }
            let Some((name, next)) = lines.next(0, Command::MAX_LEN, DecodeError::UnknownCommand)? else {
                return Ok(None);
            };
            let command = Command::from_bytes(&buf[name]).ok_or(DecodeError::UnknownCommand)?;
            progress.frame.insert(Partial {
                command,
                headers_start: next,
                line: next,
                count: 0,
                content_length: None,
                body: None,
            })
        }
    };
    while partial.body.is_none() {
        let too_long = DecodeError::HeaderLineTooLong { limit: limits.max_header_line };
        let Some((line, next)) = lines.next(partial.line, limits.max_header_line, too_long)? else {
            return Ok(None);
        };
        if line.is_empty() {
            partial.body = Some((next, 0));
            break;
        }
        partial.count += 1;
        if partial.count > limits.max_headers {
            return Err(DecodeError::TooManyHeaders { limit: limits.max_headers });
        }
        if partial.content_length.is_none()
            && let Some(value) = buf[line].strip_prefix(b"content-length:")
        {
            partial.content_length = Some(parse_content_length(value)?);
        }
        partial.line = next;
    }
    let Some((body_start, ref mut scanned)) = partial.body else { return Ok(None) };
    let command = partial.command;
    let body = match partial.content_length {
        Some(len) => sized_body(buf, command, body_start, len, limits)?,
        None => nul_terminated_body(buf, command, body_start, scanned, limits)?,
    };
    let headers = partial.headers_start..partial.line;
    Ok(body.map(|body| Checked::Frame(Layout { command, headers, end: body.end + 1, body })))
}

/// Finds lines for [`check`], enforcing the frame size limit on every byte it looks at.
struct Lines<'a> {
    buf: &'a [u8],
    max_frame: usize,
}

impl Lines<'_> {
    /// The line starting at `start`: its content (without EOL) and where the next begins.
    fn next(
        &self,
        start: usize,
        max_len: usize,
        too_long: DecodeError,
    ) -> Result<Option<(Range<usize>, usize)>, DecodeError> {
        let mut i = start;
        loop {
            let Some(&byte) = self.buf.get(i) else { return Ok(None) };
            if i >= self.max_frame {
                return Err(DecodeError::FrameTooLarge { limit: self.max_frame });
            }
            match byte {
                b'\n' => {
                    let end = if i > start && self.buf[i - 1] == b'\r' { i - 1 } else { i };
                    return Ok(Some((start..end, i + 1)));
                }
                b'\r' => match self.buf.get(i + 1) {
                    None => return Ok(None),
                    Some(b'\n') => {}
                    Some(_) => return Err(DecodeError::BareCarriageReturn),
                },
                0 => return Err(DecodeError::UnexpectedNul),
                _ if i - start >= max_len => return Err(too_long),
                _ => {}
            }
            i += 1;
        }
    }
}

/// Parses a `content-length` value: ASCII digits only.
fn parse_content_length(value: &[u8]) -> Result<usize, DecodeError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::InvalidContentLength);
    }
    std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).ok_or(DecodeError::InvalidContentLength)
}

/// The body range of a frame with `content-length: len`, once all of it and its NUL are here.
fn sized_body(
    buf: &[u8],
    command: Command,
    start: usize,
    len: usize,
    limits: &Limits,
) -> Result<Option<Range<usize>>, DecodeError> {
    if len > 0 && !command.allows_body() {
        return Err(DecodeError::BodyNotAllowed { command });
    }
    if len > limits.max_body {
        return Err(DecodeError::BodyTooLarge { limit: limits.max_body });
    }
    let end = start + len; // Cannot overflow: `start` and `len` both index into memory.
    if end >= limits.max_frame_size {
        return Err(DecodeError::FrameTooLarge { limit: limits.max_frame_size });
    }
    match buf.get(end) {
        None => Ok(None),
        Some(0) => Ok(Some(start..end)),
        Some(_) => Err(DecodeError::MissingNul),
    }
}

/// The body range of a frame without `content-length`: up to the first NUL. The first
/// `scanned` body bytes are known to hold none; updated when the NUL is not here yet.
fn nul_terminated_body(
    buf: &[u8],
    command: Command,
    start: usize,
    scanned: &mut usize,
    limits: &Limits,
) -> Result<Option<Range<usize>>, DecodeError> {
    // Body bytes the frame limit leaves room for, besides the NUL.
    let Some(frame_room) = limits.max_frame_size.checked_sub(start + 1) else {
        return Err(DecodeError::FrameTooLarge { limit: limits.max_frame_size });
    };
    let room = if command.allows_body() { frame_room.min(limits.max_body) } else { 0 };
    let window = &buf[start..buf.len().min(start.saturating_add(room).saturating_add(1))];
    let unscanned = window.get(*scanned..).unwrap_or_default();
    if let Some(len) = unscanned.iter().position(|&b| b == 0) {
        return Ok(Some(start..start + *scanned + len));
    }
    if window.len() <= room {
        *scanned = window.len();
        return Ok(None);
    }
    Err(if !command.allows_body() {
        DecodeError::BodyNotAllowed { command }
    } else if limits.max_body <= frame_room {
        DecodeError::BodyTooLarge { limit: limits.max_body }
    } else {
        DecodeError::FrameTooLarge { limit: limits.max_frame_size }
    })
}

/// Parses the header lines of a complete frame (the block [`check`] delimited), dropping
/// `content-length`, which [`check`] already used.
fn parse_headers(
    block: &[u8],
    command: Command,
    version: Version,
) -> Result<Vec<(String, String)>, DecodeError> {
    let escaping = escaping(command, version);
    let block = std::str::from_utf8(block).map_err(|_| DecodeError::InvalidUtf8)?;
    let mut headers = Vec::new();
    for line in block.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (name, value) = line.split_once(':').ok_or(DecodeError::MalformedHeader)?;
        if name.is_empty() {
            return Err(DecodeError::MalformedHeader);
        }
        if name == "content-length" {
            continue;
        }
        let name = unescape(name, escaping).ok_or(DecodeError::InvalidEscape)?;
        let value = unescape(value, escaping).ok_or(DecodeError::InvalidEscape)?;
        headers.push((name, value));
    }
    Ok(headers)
}
