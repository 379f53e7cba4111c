//! The codec's errors. Each variant is documented; [`DecodeError::message`] and
//! [`NegotiateError::message`] give the text for an ERROR frame's `message` header. Mapping a
//! variant to the server's error code is the server's job, in one place.

use crate::frame::Command;

/// Why bytes from a peer are not a STOMP frame. After any of these the stream cannot be
/// resynchronised: send an ERROR frame and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first line is not one of the fifteen STOMP commands (they are case-sensitive).
    #[error("unknown command")]
    UnknownCommand,
    /// The frame, from its command to its NUL, is larger than the limit.
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is larger than the limit (said by `content-length`, or no NUL within it).
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// More header lines than the limit.
    #[error("more than {limit} headers")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// A header line is longer than the limit.
    #[error("header line longer than {limit} bytes")]
    HeaderLineTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A header line has no `:`, or an empty name.
    #[error("malformed header line")]
    MalformedHeader,
    /// A backslash starts an escape this version does not define (or ends the header).
    #[error("undefined escape sequence in a header")]
    InvalidEscape,
    /// The command or a header is not UTF-8.
    #[error("headers are not UTF-8")]
    InvalidUtf8,
    /// `content-length` is not a decimal number of octets.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// The `content-length` octets of the body are not followed by a NUL.
    #[error("frame not terminated by NUL after content-length octets")]
    MissingNul,
    /// A NUL in the command or header lines, before the blank line that ends them.
    #[error("NUL before the end of the headers")]
    UnexpectedNul,
    /// A carriage return not followed by a line feed.
    #[error("carriage return without line feed")]
    BareCarriageReturn,
    /// A frame that must not have a body has one (only SEND, MESSAGE, ERROR may).
    #[error("{} frames must not have a body", .command.as_str())]
    BodyNotAllowed {
        /// The frame's command.
        command: Command,
    },
}

impl DecodeError {
    /// A one-line ASCII text for an ERROR frame's `message` header. It never echoes peer data.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Why a frame cannot be written in the requested version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A header name or value holds an octet the version (or the unescaped CONNECT/CONNECTED
    /// frames) cannot carry: LF or CR without escaping, `:` in an unescaped name, NUL anywhere,
    /// or an empty name.
    #[error("header {name:?} cannot be encoded in this version")]
    Unencodable {
        /// The offending header's name.
        name: String,
    },
    /// A frame that must not have a body has one.
    #[error("{} frames must not have a body", .command.as_str())]
    BodyNotAllowed {
        /// The frame's command.
        command: Command,
    },
    /// A [`MessageTemplate`](crate::MessageTemplate)'s shared headers name a per-subscriber
    /// header (`subscription`, `message-id`, `ack`).
    #[error("header {name:?} is written per subscriber")]
    PerSubscriberHeader {
        /// The header's name.
        name: String,
    },
}

/// Why CONNECT's negotiation headers cannot be agreed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// `accept-version` names none of 1.0, 1.1, 1.2.
    #[error("unsupported STOMP version; supported: 1.0,1.1,1.2")]
    UnsupportedVersion,
    /// `heart-beat` is not two comma-separated non-negative integers.
    #[error("invalid heart-beat header")]
    InvalidHeartBeat,
}

impl NegotiateError {
    /// A one-line ASCII text for an ERROR frame's `message` header.
    pub fn message(&self) -> String {
        self.to_string()
    }
}
