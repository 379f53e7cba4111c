//! HTTP helpers shared by every endpoint: the JSON error body, the caller of the server API,
//! the `Authorization: Bearer` token and the `Origin` check of WebSocket and WebTransport
//! handshakes; extractors whose rejections answer in the same JSON error format.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_protocol::ErrorCode;

use crate::policy::Identity;
use crate::rules::{Actor, Denied, Rules};
use crate::session::Now;

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

    /// A connection limit refused the request: `503`, code 106 when the node is full
    /// (`max_connections`); `429`, code 106 for one client's limits (per IP, per user).
    pub fn connection_limit(why: crate::admission::Refused) -> Self {
        let status = match why {
            crate::admission::Refused::Total => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::TOO_MANY_REQUESTS,
        };
        Self { status: Some(status), ..Self::new(ErrorCode::LimitExceeded, why.message()) }
    }
}

/// The client's IP address, when the listener put it in the request (`ConnectInfo`); `None`
/// for a router called in-process, which then counts in no per-IP limit.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl ClientIp {
    /// The address of `extensions`' `ConnectInfo`, if any.
    pub fn from_extensions(extensions: &axum::http::Extensions) -> Self {
        let info = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Self(info.map(|c| c.0.ip().to_canonical()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions))
    }
}

/// The client's socket address (`ConnectInfo`), which names a connection in its log lines;
/// `None` for a router called in-process.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0)))
    }
}

/// The broker failing a request: 503, code 109.
impl From<crate::broker::BrokerError> for HttpError {
    fn from(e: crate::broker::BrokerError) -> Self {
        match e {
            crate::broker::BrokerError::ChannelLimit(_) => HttpError {
                status: Some(StatusCode::TOO_MANY_REQUESTS),
                ..HttpError::new(ErrorCode::LimitExceeded, e.to_string())
            },
            _ => HttpError::new(ErrorCode::BrokerUnavailable, e.to_string()),
        }
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

/// Whether a request whose `Host` is `host` may reach a server that runs open on loopback: a
/// loopback name or address (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`), with or
/// without a port, or a name of `allowed_hosts`. Anything else is a page on a foreign name that
/// resolves to 127.0.0.1 (DNS rebinding): its requests count as same-origin in the browser, so
/// neither CORS nor the `Origin` check would stop it reading and writing channels.
pub fn host_allowed(config: &crate::config::Config, host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => {
            host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(n, _)| n)
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback());
    loopback
        || config.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&name) || h.eq_ignore_ascii_case(host))
}

/// Refuses, on a server that runs open on loopback, every request whose `Host` is not
/// [`host_allowed`] (`403`, code 103). A request without `Host` is not a browser's: it passes.
pub async fn loopback_host(
    axum::extract::State(config): axum::extract::State<std::sync::Arc<crate::config::Config>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("?"));
    match host {
        Some(host) if !host_allowed(&config, host) => HttpError::new(
            ErrorCode::PermissionDenied,
            format!(
                "Host {host:?} is not a loopback name: a server without token_secret answers only \
                 localhost, 127.0.0.1 and [::1] (add a name to allowed_hosts, or set token_secret)"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Refuses, on a server without `token_secret`, a state-changing request (`POST`, `PUT`,
/// `PATCH`, `DELETE`) from a page of another origin that `allowed_origins` does not name (`403`,
/// code 103). A `text/plain` or form `POST` needs no CORS preflight: without this check any page
/// the user opens could publish through the open API or send into SockJS sessions. The server's
/// own pages (`Origin` host == `Host`) and clients that are not browsers (no `Origin`) pass.
pub async fn same_origin_writes(
    axum::extract::State(config): axum::extract::State<std::sync::Arc<crate::config::Config>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let origin = request.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null"));
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if writes && let Some(origin) = origin.filter(|o| !origin_allowed(&config, Some(o), host)) {
        let message = format!(
            "a page of {origin} may not {} here: a server without token_secret takes writes only \
             from its own pages and allowed_origins (add the origin there, or set token_secret)",
            request.method()
        );
        return HttpError::new(ErrorCode::PermissionDenied, message).into_response();
    }
    next.run(request).await
}

/// A refusal of the channel rules, with its code's usual status.
impl From<Denied> for HttpError {
    fn from(d: Denied) -> Self {
        HttpError::new(d.code, d.message)
    }
}

/// Every error the node answers is the documented JSON `{"error": {"code", "message"}}`,
/// including axum's own rejections (a missing query parameter, a body too large, a plain GET on
/// `/ws`) and unknown routes, which it answers in plain text or with no body at all.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let plain =
        response.headers().get(header::CONTENT_TYPE).is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        m => m.to_owned(),
    };
    let code = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotFound,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::PermissionDenied,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::LimitExceeded,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let body = serde_json::json!({"error": {"code": code.code(), "message": message}}).to_string();
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Who called the server API.
#[derive(Debug)]
pub enum Caller {
    /// The API key: may do anything the rules give the application's server.
    Server,
    /// No secrets configured (loopback only): acts as the server on ordinary channels.
    Open,
    /// A client token.
    Client(Identity),
}

/// The identity of an open server's callers.
static ANONYMOUS: Identity = Identity {
    user: String::new(),
    name: None,
    subs: None,
    pubs: None,
    rec: None,
    expires_at: None,
    granted: Vec::new(),
    admin: false,
};

impl Caller {
    /// The caller as the rules see it; `client` is the connection it speaks for (a session it
    /// presented), if any.
    pub fn actor<'a>(&'a self, client: Option<&'a str>) -> Actor<'a> {
        match (self, client) {
            (Caller::Server, _) => Actor::Server,
            (Caller::Open, None) => Actor::Open,
            (Caller::Open, client) => Actor::Client { identity: &ANONYMOUS, client },
            (Caller::Client(identity), client) => Actor::Client { identity, client },
        }
    }

    /// The token's user; empty for the server and anonymous callers.
    pub fn user(&self) -> &str {
        match self {
            Caller::Client(id) => &id.user,
            _ => "",
        }
    }
}

/// Who calls: the API key (`X-API-Key`, or `Authorization: apikey KEY`), a client's Bearer token,
/// or anyone when the server has no secrets at all.
pub fn caller(rules: &Rules, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("apikey "));
    if rules.auth().api_key_ok(key) {
        let open =
            rules.config().api_key.is_empty() && key.is_none_or(|k| k != rules.config().admin_password);
        return Ok(if open { Caller::Open } else { Caller::Server });
    }
    if let Some(token) = bearer(headers) {
        return rules
            .auth()
            .authenticate(Some(token), Now::current().unix)
            .map(Caller::Client)
            .map_err(|d| HttpError::new(ErrorCode::Unauthorized, d.reason));
    }
    Err(HttpError::new(ErrorCode::Unauthorized, "an API key or a Bearer token is required"))
}

/// The `Authorization: Bearer` token, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_open_server_answers_loopback_hosts_and_allowed_hosts_only() {
        let mut config = crate::config::Config::default();
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(host_allowed(&config, host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8080",
            "[::2]:8080",
            "",
            "localhost:8080:1",
        ] {
            assert!(!host_allowed(&config, host), "{host}");
        }
        config.allowed_hosts = vec!["Dev.Test".into()];
        assert!(host_allowed(&config, "dev.test:8080"));
        assert!(!host_allowed(&config, "other.test:8080"));
    }
}
