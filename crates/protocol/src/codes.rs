//! The numbers a client acts on: command error codes and disconnect codes.
//!
//! Every error the server can send maps to one of these in one place, so the wire values never
//! drift between transports. See `docs/protocol.md` for the tables.

use std::fmt;

/// A command error code, sent as `{"error": {"code", "message"}}`; the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Server-side failure; retrying may work.
    Internal,
    /// Not connected, or the token is missing or invalid.
    Unauthorized,
    /// No such channel or namespace.
    UnknownChannel,
    /// Not allowed to subscribe or publish here.
    PermissionDenied,
    /// Unknown command.
    MethodNotFound,
    /// The connection already holds this subscription.
    AlreadySubscribed,
    /// Too many subscriptions, too large a payload, too many requests.
    LimitExceeded,
    /// Malformed command or argument.
    BadRequest,
    /// The feature is off for this namespace.
    NotAvailable,
    /// The broker cannot take the request now; retry later.
    BrokerUnavailable,
    /// Unsubscribe of a channel the connection does not hold.
    NotSubscribed,
    /// Another node serves this (a room's WebRTC media): the answer names it.
    Elsewhere,
    /// The application's backend (`app_proxy_url`) could not be reached or gave no usable
    /// answer (connection refused, an HTTP error status, an answer that is not the expected
    /// JSON or is too large); retrying may work.
    BackendUnavailable,
    /// The application's backend did not answer within `app_proxy_timeout_ms`: the call may or
    /// may not have taken effect.
    BackendTimeout,
    /// This node mixes audio for as many rooms or participants as it may
    /// (`max_mixed_rooms`, `max_mixed_participants`); receive the tracks one by one instead.
    MixerFull,
}

impl ErrorCode {
    /// The number on the wire.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::Internal => 100,
            ErrorCode::Unauthorized => 101,
            ErrorCode::UnknownChannel => 102,
            ErrorCode::PermissionDenied => 103,
            ErrorCode::MethodNotFound => 104,
            ErrorCode::AlreadySubscribed => 105,
            ErrorCode::LimitExceeded => 106,
            ErrorCode::BadRequest => 107,
            ErrorCode::NotAvailable => 108,
            ErrorCode::BrokerUnavailable => 109,
            ErrorCode::NotSubscribed => 110,
            ErrorCode::Elsewhere => 111,
            ErrorCode::BackendUnavailable => 112,
            ErrorCode::BackendTimeout => 113,
            ErrorCode::MixerFull => 114,
        }
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: u32) -> Option<Self> {
        ALL_ERROR_CODES.iter().copied().find(|c| c.code() == code)
    }

    /// The HTTP status the one-way transports and the server API answer with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Internal => 500,
            ErrorCode::Unauthorized => 401,
            ErrorCode::UnknownChannel => 404,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::MethodNotFound => 404,
            ErrorCode::AlreadySubscribed => 409,
            ErrorCode::LimitExceeded => 413,
            ErrorCode::BadRequest => 400,
            ErrorCode::NotAvailable => 404,
            ErrorCode::BrokerUnavailable => 503,
            ErrorCode::NotSubscribed => 409,
            ErrorCode::Elsewhere => 421,
            ErrorCode::BackendUnavailable => 502,
            ErrorCode::BackendTimeout => 504,
            ErrorCode::MixerFull => 503,
        }
    }
}

const ALL_ERROR_CODES: [ErrorCode; 15] = [
    ErrorCode::Internal,
    ErrorCode::Unauthorized,
    ErrorCode::UnknownChannel,
    ErrorCode::PermissionDenied,
    ErrorCode::MethodNotFound,
    ErrorCode::AlreadySubscribed,
    ErrorCode::LimitExceeded,
    ErrorCode::BadRequest,
    ErrorCode::NotAvailable,
    ErrorCode::BrokerUnavailable,
    ErrorCode::NotSubscribed,
    ErrorCode::Elsewhere,
    ErrorCode::BackendUnavailable,
    ErrorCode::BackendTimeout,
    ErrorCode::MixerFull,
];

/// Why the server ends a connection: a close code and a short reason.
///
/// 3000–3499 tell the client to reconnect and resume; 3500–3999 tell it not to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// The close code.
    pub code: u16,
    /// A short, stable reason text.
    pub reason: &'static str,
}

impl Disconnect {
    /// The server is stopping.
    pub const SHUTDOWN: Self = Self::new(3000, "shutdown");
    /// An unexpected server-side failure.
    pub const INTERNAL: Self = Self::new(3001, "internal error");
    /// The connection's outbound queue overflowed; reconnect and recover from history.
    pub const SLOW_CONSUMER: Self = Self::new(3002, "slow consumer");
    /// The client did not answer a ping in time.
    pub const NO_PONG: Self = Self::new(3003, "no pong");
    /// The broker is unreachable.
    pub const BROKER_UNAVAILABLE: Self = Self::new(3004, "broker unavailable");
    /// The connection's token expired.
    pub const TOKEN_EXPIRED: Self = Self::new(3005, "token expired");
    /// A live subscription saw a gap or a new epoch; reconnect to recover.
    pub const INSUFFICIENT_STATE: Self = Self::new(3006, "insufficient state");
    /// A malformed frame, or a protocol rule broken.
    pub const BAD_REQUEST: Self = Self::new(3500, "bad request");
    /// An invalid token.
    pub const UNAUTHORIZED: Self = Self::new(3501, "unauthorized");
    /// Not allowed.
    pub const FORBIDDEN: Self = Self::new(3502, "forbidden");
    /// No `connect` within `connect_timeout` on a server that requires a token.
    pub const CONNECT_TIMEOUT: Self = Self::new(3501, "no connect in time");
    /// The server holds `max_connections` already.
    pub const CONNECTION_LIMIT: Self = Self::new(3503, "connection limit");
    /// A newer connection of the same client took over its client id (`connect.session`).
    pub const REPLACED: Self = Self::new(3504, "replaced");

    /// An administrator ended the connection (the server API's default; any 3000–4999 code
    /// may be chosen).
    pub const BY_ADMIN: Self = Self::new(3505, "by an administrator");
    /// An administrator ended one subscription (an `unsubscribed` push, not a disconnect).
    pub const UNSUBSCRIBED_BY_ADMIN: Self = Self::new(3506, "unsubscribed by an administrator");

    /// A code and reason; the server's own are the constants above.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// Whether a client should reconnect after this.
    pub fn reconnect(self) -> bool {
        !(3500..4000).contains(&self.code)
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ALL_ERROR_CODES {
            assert!(seen.insert(c.code()));
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::from_code(999), None);
    }

    #[test]
    fn disconnect_ranges_say_whether_to_reconnect() {
        assert!(Disconnect::SLOW_CONSUMER.reconnect());
        assert!(Disconnect::SHUTDOWN.reconnect());
        assert!(!Disconnect::BAD_REQUEST.reconnect());
        assert!(!Disconnect::UNAUTHORIZED.reconnect());
    }
}
