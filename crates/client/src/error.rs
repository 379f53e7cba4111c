//! The client's error type: one enum for every layer, each variant saying what the caller can do.

use switchboard_protocol::ErrorCode;

/// Anything that can go wrong talking to a Switchboard server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL could not be used (not `http://host[:port][/prefix]`).
    #[error("bad base URL: {0}")]
    Url(String),
    /// An argument the server would refuse anyway (no channels to subscribe to).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server answered an HTTP request with a non-success status. `code` and `message` come
    /// from its `{"error": {"code", "message"}}` body when it sent one.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The command error code from the body, if any (see [`ErrorCode`]).
        code: Option<u32>,
        /// The error message from the body, or the body itself.
        message: String,
    },
    /// The server answered a WebSocket command with an `error` reply; the connection stays open.
    #[error("command failed ({code}): {message}")]
    Command {
        /// The command error code (see [`ErrorCode`]).
        code: u32,
        /// The server's message.
        message: String,
    },
    /// The connection was closed, by the server (with its close code when it sent one) or by the
    /// network. See [`Error::should_reconnect`].
    #[error("connection closed ({}): {reason}", code.map_or_else(|| "no code".to_owned(), |c| c.to_string()))]
    Closed {
        /// The close or disconnect code.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
    /// The server sent something this client cannot read (bad JSON, a reply to nothing asked, a
    /// line too long).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client failed (connect, send, or read a body).
    #[error("HTTP client error: {0}")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The WebSocket layer failed (handshake, framing).
    #[error("WebSocket error: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// No answer within the time allowed (a dead connection).
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl Error {
    /// The command error code this error carries, for [`Error::Http`] and [`Error::Command`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Http { code: Some(code), .. } | Error::Command { code, .. } => ErrorCode::from_code(*code),
            _ => None,
        }
    }

    /// Whether reconnecting (with backoff) may help. False for close codes 3500–3999 (ours) and
    /// 4500–4999 (the application's), which ask the client to fix itself first, and for HTTP 4xx
    /// answers other than 429.
    pub fn should_reconnect(&self) -> bool {
        match self {
            Error::Closed { code: Some(code), .. } => {
                !(3500..4000).contains(code) && !(4500..5000).contains(code)
            }
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            Error::Url(_) | Error::InvalidArgument(_) | Error::Command { .. } | Error::Protocol(_) => false,
            _ => true,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

impl From<hyper::Error> for Error {
    fn from(e: hyper::Error) -> Self {
        Error::Request(Box::new(e))
    }
}

impl From<hyper_util::client::legacy::Error> for Error {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        Error::Request(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_and_reconnect_advice() {
        let e = Error::Command { code: 103, message: "no".into() };
        assert_eq!(e.error_code(), Some(ErrorCode::PermissionDenied));
        assert!(!e.should_reconnect());
        assert!(Error::Closed { code: Some(3002), reason: "slow consumer".into() }.should_reconnect());
        assert!(!Error::Closed { code: Some(3501), reason: "unauthorized".into() }.should_reconnect());
        // The application's codes: 4000–4499 reconnect, 4500–4999 do not (Centrifugo's split).
        for (code, again) in [(4000, true), (4499, true), (4500, false), (4999, false)] {
            assert_eq!(
                Error::Closed { code: Some(code), reason: "app".into() }.should_reconnect(),
                again,
                "{code}"
            );
        }
        assert!(Error::Closed { code: None, reason: "eof".into() }.should_reconnect());
        let http = Error::Http { status: 400, code: Some(107), message: "bad cursor".into() };
        assert_eq!(http.error_code(), Some(ErrorCode::BadRequest));
        assert!(!http.should_reconnect());
        assert!(Error::Http { status: 503, code: None, message: String::new() }.should_reconnect());
    }
}
