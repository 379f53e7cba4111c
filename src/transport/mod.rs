//! Transport adapters: each turns its wire format into session input and session output into its
//! framing, and nothing else. Channel logic lives in the session, hub and broker.
//!
//! - [`driver`]: runs a session for a live connection (shared by every adapter below but polling).
//! - [`ws`]: `/ws`, the JSON protocol over WebSocket (and the Autobahn echo endpoint).
//! - [`oneway`]: `/sse` (Server-Sent Events) and `/stream` (NDJSON HTTP streaming).
//! - [`poll`]: `/poll`, short and long polling, with no server-side session at all.
//! - [`wt`]: `/wt`, the JSON protocol over WebTransport (HTTP/3 streams and datagrams).

pub mod driver;
pub mod oneway;
pub mod poll;
pub mod ws;
pub mod wt;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_protocol::{ChannelName, Cursor, ErrorCode};

/// An error answered before a response stream starts: an HTTP status with the JSON error body.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// The HTTP status, when not the code's usual one.
    pub status: Option<StatusCode>,
}

impl HttpError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: None }
    }

    /// The server holds `max_connections` already: `503`, code 106.
    pub fn connection_limit() -> Self {
        Self {
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            ..Self::new(ErrorCode::LimitExceeded, switchboard_protocol::Disconnect::CONNECTION_LIMIT.reason)
        }
    }
}

/// The broker failing a request: 503, code 109.
impl From<crate::broker::BrokerError> for HttpError {
    fn from(e: crate::broker::BrokerError) -> Self {
        HttpError::new(ErrorCode::BrokerUnavailable, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
        });
        let body = serde_json::json!({"error": {"code": self.code.code(), "message": self.message}});
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// Whether a WebSocket or WebTransport handshake from a page of `origin` to `host` may go on.
/// Browsers send `Origin`, and no CORS guards these handshakes: without this check any site
/// could open connections in its visitors' names (their cookies, their network). Accepted: no
/// `Origin` (not a browser), the page's own host, and `allowed_origins` (`*`: any).
pub fn origin_allowed(config: &crate::config::Config, origin: Option<&str>, host: &str) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    authority.eq_ignore_ascii_case(host)
        || config
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The query of `/sse`, `/stream` and `/poll`.
#[derive(Debug, Default)]
pub struct OneWayParams {
    /// The channels, validated, without repeats.
    pub channels: Vec<ChannelName>,
    /// Where to resume.
    pub cursor: Cursor,
    /// The token, from `token=` or `Authorization: Bearer`.
    pub token: Option<String>,
    /// The display name.
    pub name: Option<String>,
    /// A session token reclaiming an earlier connection's client id (`connect.session`).
    pub session: Option<String>,
    /// Long-poll wait in seconds.
    pub wait: Option<u64>,
    /// Most publications per poll.
    pub limit: Option<usize>,
}

impl OneWayParams {
    /// Parses the query string and headers; the `Last-Event-ID` header wins over `since`.
    pub fn parse(query: Option<&str>, headers: &HeaderMap, max_channels: usize) -> Result<Self, HttpError> {
        let bad = |m: String| HttpError::new(ErrorCode::BadRequest, m);
        let mut p = OneWayParams::default();
        let mut since = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "channel" => {
                    let c = ChannelName::new(&value).map_err(|e| bad(format!("channel {value:?}: {e}")))?;
                    if !p.channels.contains(&c) {
                        p.channels.push(c);
                    }
                }
                "since" => since = Some(value.into_owned()),
                "token" => p.token = Some(value.into_owned()),
                "name" => p.name = Some(value.into_owned()),
                "session" => p.session = Some(value.into_owned()),
                "wait" => p.wait = Some(value.parse().map_err(|_| bad("wait must be whole seconds".into()))?),
                "limit" => p.limit = Some(value.parse().map_err(|_| bad("limit must be a number".into()))?),
                _ => {}
            }
        }
        if p.channels.is_empty() {
            return Err(bad("name at least one channel=".into()));
        }
        if p.channels.len() > max_channels {
            return Err(HttpError::new(ErrorCode::LimitExceeded, format!("at most {max_channels} channels")));
        }
        if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
        {
            since = Some(id.to_owned());
        }
        if let Some(text) = since.filter(|s| !s.is_empty()) {
            p.cursor = Cursor::decode(&text).map_err(|e| bad(format!("bad cursor: {e}")))?;
        }
        if p.token.is_none() {
            p.token = bearer(headers).map(str::to_owned);
        }
        Ok(p)
    }
}

/// The `Authorization: Bearer` token, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_channels_and_prefers_last_event_id() {
        let mut c = Cursor::new();
        c.set("a", switchboard_protocol::Position { epoch: "e".into(), offset: 4 });
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", c.encode().parse().unwrap());
        let p = OneWayParams::parse(Some("channel=a&channel=b&channel=a&since=garbage&wait=5"), &headers, 8)
            .unwrap();
        assert_eq!(p.channels.len(), 2);
        assert_eq!(p.cursor.get("a").unwrap().offset, 4, "the header wins over since");
        assert_eq!(p.wait, Some(5));
    }

    #[test]
    fn websocket_origins_are_the_page_s_own_or_allowed() {
        let mut config = crate::config::Config::default();
        let ok = |c: &crate::config::Config, origin, host| origin_allowed(c, origin, host);
        assert!(ok(&config, None, "sb.example:8080"), "not a browser");
        assert!(ok(&config, Some("https://sb.example:8080"), "SB.example:8080"), "same origin");
        assert!(!ok(&config, Some("https://evil.example"), "sb.example:8080"));
        assert!(!ok(&config, Some("https://sb.example:8081"), "sb.example:8080"), "another port");
        config.allowed_origins = vec!["https://app.example/".into()];
        assert!(ok(&config, Some("https://app.example"), "sb.example:8080"));
        assert!(!ok(&config, Some("http://app.example"), "sb.example:8080"), "another scheme");
        config.allowed_origins = vec!["*".into()];
        assert!(ok(&config, Some("https://evil.example"), "sb.example:8080"));
    }

    #[test]
    fn refuses_bad_queries_with_codes() {
        let h = HeaderMap::new();
        let code = |q: &str| OneWayParams::parse(Some(q), &h, 2).unwrap_err().code;
        assert_eq!(code(""), ErrorCode::BadRequest);
        assert_eq!(code("channel=a%20b"), ErrorCode::BadRequest);
        assert_eq!(code("channel=a&since=%%%"), ErrorCode::BadRequest);
        assert_eq!(code("channel=a&channel=b&channel=c"), ErrorCode::LimitExceeded);
        assert_eq!(code("channel=a&wait=soon"), ErrorCode::BadRequest);
    }
}
