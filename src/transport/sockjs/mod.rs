//! `/sockjs`: the server side of the SockJS protocol (0.3, as `sockjs-client` 1.x speaks it),
//! for Spring-style pages (`new SockJS('/sockjs')` + a STOMP client) and anything else that
//! needs a WebSocket-like API where WebSockets do not pass. See `docs/stomp.md`.
//!
//! - [`session`]: a session's shell (its queue, its one receiving request, its timeouts).
//! - [`app`]: what runs inside (STOMP or the JSON protocol through the pump; test services).
//! - this module: the URLs, and each transport's framing of the same frames (`o`, `h`,
//!   `a[...]`, `c[...]`, built by [`switchboard_protocol::sockjs`]).
//!
//! Sessions live on the node whose receiving request opened them; requests for them that reach
//! another node go through the broker ([`cluster`], `docs/scaling.md`): no sticky sessions.

pub mod app;
pub mod cluster;
pub mod session;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::SinkExt;
use switchboard_protocol::sockjs;
use tokio::sync::oneshot;

use self::app::Kind;
use self::cluster::RemoteReceiver;
use self::session::{Attach, Next, Receiver, Registry};
use crate::http::HttpError;
use crate::state::AppState;

/// The bytes of `h` an `xhr_streaming` response starts with, so that browsers hand over what
/// follows at once.
const PRELUDE: usize = 2048;
/// A year, for what may be cached.
const YEAR: u64 = 31_536_000;
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const JS: &str = "application/javascript; charset=UTF-8";
const TEXT: &str = "text/plain; charset=UTF-8";
const HTML: &str = "text/html; charset=UTF-8";
/// sockjs-client's browser bundle, served to the iframe page (no CDN).
const SOCKJS_CLIENT: &str = include_str!("../../../vendor/sockjs-client/sockjs.min.js");

/// One SockJS service: a URL prefix and what its sessions run.
#[derive(Clone)]
struct Service {
    state: Arc<AppState>,
    prefix: &'static str,
    kind: Kind,
    websocket: bool,
    cookie_needed: bool,
    registry: Arc<Registry>,
    /// Sessions other nodes hold.
    directory: Arc<cluster::Directory>,
    /// The address of the request being served (per request: the service is cloned for each).
    ip: Option<std::net::IpAddr>,
}

/// The routes of `/sockjs` (when `sockjs` is on). Mounted outside the JSON error layer: SockJS
/// answers in its own words.
pub fn routes(state: &Arc<AppState>) -> Router {
    let services: &[_] =
        if state.config.sockjs { &[("/sockjs", Kind::Switchboard, true, false)] } else { &[] };
    mount(state, services)
}

/// The sockjs-protocol suite's services (`sockjs_test_services`, test use only): `echo`,
/// `disabled_websocket_echo`, `cookie_needed_echo` and `close` under `/sockjs-test/`.
pub fn test_routes(state: &Arc<AppState>) -> Router {
    if !state.config.sockjs_test_services {
        return Router::new();
    }
    mount(
        state,
        &[
            ("/sockjs-test/echo", Kind::Echo, true, false),
            ("/sockjs-test/disabled_websocket_echo", Kind::Echo, false, false),
            ("/sockjs-test/cookie_needed_echo", Kind::Echo, true, true),
            ("/sockjs-test/close", Kind::Close, true, false),
        ],
    )
}

/// Routes for `services`: (prefix, what runs inside, WebSocket on, cookie needed).
fn mount(state: &Arc<AppState>, services: &[(&'static str, Kind, bool, bool)]) -> Router {
    let config = &state.config;
    let delay = Duration::from_millis(config.sockjs_disconnect_delay_ms);
    let mut router = Router::new();
    for &(prefix, kind, websocket, cookie_needed) in services {
        let service = Service {
            state: state.clone(),
            prefix,
            kind,
            websocket,
            cookie_needed,
            registry: Registry::new(delay),
            directory: Default::default(),
            ip: None,
        };
        router = router.merge(
            Router::new()
                .route(prefix, any(handle))
                .route(&format!("{prefix}/"), any(handle))
                .route(&format!("{prefix}/{{*rest}}"), any(handle))
                .with_state(service),
        );
    }
    router.layer(axum::extract::DefaultBodyLimit::max(config.max_frame_bytes))
}

/// What a session URL's last part names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Websocket,
    Xhr,
    XhrSend,
    XhrStreaming,
    EventSource,
    HtmlFile,
    Jsonp,
    JsonpSend,
}

impl Transport {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "websocket" => Transport::Websocket,
            "xhr" => Transport::Xhr,
            "xhr_send" => Transport::XhrSend,
            "xhr_streaming" => Transport::XhrStreaming,
            "eventsource" => Transport::EventSource,
            "htmlfile" => Transport::HtmlFile,
            "jsonp" => Transport::Jsonp,
            "jsonp_send" => Transport::JsonpSend,
            _ => return None,
        })
    }

    /// The methods it answers, OPTIONS (a CORS preflight) aside.
    fn method(self) -> Method {
        match self {
            Transport::Websocket | Transport::EventSource | Transport::HtmlFile | Transport::Jsonp => {
                Method::GET
            }
            _ => Method::POST,
        }
    }
}

/// Most bytes of a session id; a longer one is not a SockJS client's.
const MAX_SESSION_ID: usize = 128;

async fn handle(
    State(mut svc): State<Service>,
    ip: crate::http::ClientIp,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body: Bytes,
) -> Response {
    svc.ip = ip.0;
    let path = uri.path().strip_prefix(svc.prefix).unwrap_or("");
    let query = uri.query().unwrap_or("");
    match path {
        "" | "/" if method == Method::GET => text(StatusCode::OK, "Welcome to SockJS!\n"),
        "/info" => info(&svc, &method, &headers),
        "/websocket" if method == Method::GET => websocket(svc, None, &headers, ws),
        "/sockjs.min.js" if method == Method::GET => {
            let (k, v) = cacheable();
            ([(header::CONTENT_TYPE, HeaderValue::from_static(JS)), (k, v)], SOCKJS_CLIENT).into_response()
        }
        p if is_iframe(p) && method == Method::GET => iframe(&svc, &headers),
        p => {
            let mut parts = p.strip_prefix('/').unwrap_or("").split('/');
            let (Some(server), Some(session), Some(name), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return not_found();
            };
            let valid = |s: &str| !s.is_empty() && !s.contains('.') && s.len() <= MAX_SESSION_ID;
            let Some(transport) = Transport::parse(name).filter(|_| valid(server) && valid(session)) else {
                return not_found();
            };
            if method == Method::OPTIONS && transport != Transport::Websocket {
                return options(&svc, &headers, transport.method());
            }
            if method != transport.method() {
                return not_allowed(transport.method());
            }
            let session = session.to_owned();
            match transport {
                Transport::Websocket => websocket(svc, Some(session), &headers, ws),
                Transport::Xhr => poll(svc, session, &headers, Framing::Xhr).await,
                Transport::Jsonp => match callback(query) {
                    Ok(c) => poll(svc, session, &headers, Framing::Jsonp(c)).await,
                    Err(refusal) => text(StatusCode::INTERNAL_SERVER_ERROR, refusal),
                },
                Transport::XhrStreaming => stream(svc, session, &headers, Framing::Xhr).await,
                Transport::EventSource => stream(svc, session, &headers, Framing::EventSource).await,
                Transport::HtmlFile => match callback(query) {
                    Ok(c) => stream(svc, session, &headers, Framing::HtmlFile(c)).await,
                    Err(refusal) => text(StatusCode::INTERNAL_SERVER_ERROR, refusal),
                },
                Transport::XhrSend => send(svc, session, &headers, &body, false).await,
                Transport::JsonpSend => send(svc, session, &headers, &body, true).await,
            }
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not found\n")
}

fn not_allowed(allow: Method) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    if let Ok(v) = HeaderValue::from_str(allow.as_str()) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

fn is_iframe(path: &str) -> bool {
    path.strip_prefix("/iframe").and_then(|p| p.strip_suffix(".html")).is_some_and(|v| {
        v.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-._".contains(&b))
    })
}

fn cacheable() -> (HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000"))
}

fn expires() -> (HeaderName, HeaderValue) {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(YEAR));
    (header::EXPIRES, HeaderValue::from_str(&date).unwrap_or(HeaderValue::from_static("0")))
}

/// CORS as SockJS wants it: the page's origin echoed, with credentials (for `JSESSIONID`), or
/// `*` without an origin. Switchboard's own service echoes only the origins `allowed_origins`
/// lets in (the test services, any).
fn cors(svc: &Service, headers: &HeaderMap, out: &mut HeaderMap) {
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            if svc.kind == Kind::Switchboard
                && !crate::http::origin_allowed(&svc.state.config, origin.to_str().ok(), host)
            {
                return;
            }
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        None => {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
}

/// The headers of a session request: its content type, CORS, no caching, and `JSESSIONID` when
/// the service needs the cookie (for load balancers that stick on it).
fn session_headers(svc: &Service, headers: &HeaderMap, content_type: &'static str) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    cors(svc, headers, &mut out);
    if svc.cookie_needed {
        let given = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("JSESSIONID="))
            .unwrap_or("dummy");
        if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={given}; path=/")) {
            out.insert(header::SET_COOKIE, v);
        }
    }
    out
}

/// A CORS preflight: cacheable for a year.
fn options(svc: &Service, headers: &HeaderMap, method: Method) -> Response {
    let mut out = HeaderMap::new();
    let (k, v) = cacheable();
    out.insert(k, v);
    let (k, v) = expires();
    out.insert(k, v);
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(YEAR));
    let methods = if method == Method::GET { "OPTIONS, GET" } else { "OPTIONS, POST" };
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).filter(|v| !v.is_empty()) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    cors(svc, headers, &mut out);
    (StatusCode::NO_CONTENT, out).into_response()
}

/// `GET /info`: what the client needs before it picks a transport.
fn info(svc: &Service, method: &Method, headers: &HeaderMap) -> Response {
    if *method == Method::OPTIONS {
        return options(svc, headers, Method::GET);
    }
    if *method != Method::GET {
        return not_allowed(Method::GET);
    }
    let body = serde_json::json!({
        "websocket": svc.websocket,
        "cookie_needed": svc.cookie_needed,
        "origins": ["*:*"],
        "entropy": rand::random::<u32>(),
    });
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    cors(svc, headers, &mut out);
    (out, body.to_string()).into_response()
}

/// The iframe page of the transports that need one (`iframe-htmlfile`, ...): it loads the
/// client bundle from this node.
fn iframe(svc: &Service, headers: &HeaderMap) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  \
         <script src=\"{}/sockjs.min.js\"></script>\n  <script>\n    document.domain = document.domain;\n    \
         SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  \
         <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>",
        svc.prefix
    );
    let etag = format!("\"{:016x}\"", fnv(page.as_bytes()));
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    let (k, v) = cacheable();
    out.insert(k, v);
    let (k, v) = expires();
    out.insert(k, v);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    (out, page).into_response()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// The `c` parameter of `jsonp` and `htmlfile`: the function their frames call; else the
/// protocol's 500 and its words.
fn callback(query: &str) -> Result<String, &'static str> {
    let c = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "c").map(|(_, v)| v.into_owned());
    match c {
        None => Err("\"callback\" parameter required"),
        Some(c) if !sockjs::valid_callback(&c) => Err("invalid \"callback\" parameter"),
        Some(c) => Ok(c),
    }
}

/// How a transport wraps each frame.
#[derive(Debug, Clone)]
enum Framing {
    /// `xhr` and `xhr_streaming`: the frame and a newline.
    Xhr,
    /// `eventsource`: an SSE `data:` event.
    EventSource,
    /// `htmlfile`: a script calling `p(FRAME)`.
    HtmlFile(String),
    /// `jsonp`: `/**/CALLBACK(FRAME);`.
    Jsonp(String),
}

impl Framing {
    fn wrap(&self, frame: &[u8]) -> Bytes {
        let quoted = || sockjs::json_string(std::str::from_utf8(frame).unwrap_or_default());
        let mut out = Vec::with_capacity(frame.len() + 32);
        match self {
            Framing::Xhr => {
                out.extend_from_slice(frame);
                out.push(b'\n');
            }
            Framing::EventSource => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(frame);
                out.extend_from_slice(b"\r\n\r\n");
            }
            Framing::HtmlFile(_) => {
                out.extend_from_slice(b"<script>\np(");
                out.extend_from_slice(&quoted());
                out.extend_from_slice(b");\n</script>\r\n");
            }
            Framing::Jsonp(callback) => {
                out.extend_from_slice(b"/**/");
                out.extend_from_slice(callback.as_bytes());
                out.push(b'(');
                out.extend_from_slice(&quoted());
                out.extend_from_slice(b");\r\n");
            }
        }
        out.into()
    }

    /// What a streaming response starts with.
    fn prelude(&self) -> Option<Bytes> {
        match self {
            Framing::Xhr => {
                let mut p = vec![b'h'; PRELUDE];
                p.push(b'\n');
                Some(p.into())
            }
            Framing::EventSource => Some(Bytes::from_static(b"\r\n")),
            Framing::HtmlFile(callback) => {
                let mut page = HTMLFILE_HEAD.replace("{callback}", callback);
                // Browsers render nothing before 1 KiB.
                while page.len() < 1024 {
                    page.push(' ');
                }
                page.push_str("\r\n\r\n");
                Some(page.into())
            }
            Framing::Jsonp(_) => None,
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Framing::Xhr | Framing::Jsonp(_) => JS,
            Framing::EventSource => "text/event-stream",
            Framing::HtmlFile(_) => HTML,
        }
    }
}

const HTMLFILE_HEAD: &str = "<!doctype html>\n<html><head>\n  \
<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  \
<script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    c.start();\n    \
function p(d) {c.message(d);};\n    window.onload = function() {c.stop();};\n  </script>";

/// Attaches a receiving request to this node's session, opening it (within `max_connections`:
/// a session counts as a connection, whatever requests carry it) when there is none. A new
/// Switchboard session comes with the signal that every node can reach it.
fn attach(svc: &Service, session: &str) -> (Attach, Option<oneshot::Receiver<()>>) {
    let (kind, state) = (svc.kind, svc.state.clone());
    let mut permit = None;
    if kind == Kind::Switchboard && svc.registry.get(session).is_none() {
        match state.admission.admit(svc.ip) {
            Ok(p) => permit = Some(p),
            Err(_) => {
                let limit = switchboard_protocol::Disconnect::CONNECTION_LIMIT;
                let closed = session::Closed { code: limit.code, reason: limit.reason.into() };
                return (Attach::Refused(closed), None);
            }
        }
    }
    let mut reachable = None;
    let attached = svc
        .registry
        .attach(session, |shell, rx| reachable = app::start(kind, state, session, shell, rx, permit));
    (attached, reachable)
}

fn heartbeat(svc: &Service) -> Duration {
    Duration::from_millis(svc.state.config.sockjs_heartbeat_ms.max(1))
}

/// Where a receiving request takes its frames from: this node's session, or another node's.
enum Source {
    Local(Receiver),
    Remote(RemoteReceiver),
    /// Refused (a close frame was sent), or done.
    None,
}

/// Attaches a receiving request: to this node's session `session` (opening it when no node
/// holds it), else to the node holding it. `limit`: bytes of frames the request may carry.
async fn source(svc: &Service, session: &str, limit: usize) -> (Option<Vec<u8>>, Source) {
    if svc.kind == Kind::Switchboard
        && svc.registry.get(session).is_none()
        && svc.directory.held(&svc.state, session).await
        && let Some(remote) = RemoteReceiver::attach(&svc.state, session, limit).await
    {
        return (None, Source::Remote(remote));
    }
    let (attached, reachable) = attach(svc, session);
    if let Some(reachable) = reachable {
        // The open frame goes out once a send through any node can reach the session.
        let _ = tokio::time::timeout(Duration::from_secs(5), reachable).await;
    }
    match attached {
        Attach::Opened(r) => (Some(sockjs::OPEN.to_vec()), Source::Local(r)),
        Attach::Attached(r) => (None, Source::Local(r)),
        Attach::Refused(c) => (Some(c.frame()), Source::None),
    }
}

/// A remote holder silent for this long (no frame, not even a heartbeat) is taken for gone.
fn patience(svc: &Service) -> Duration {
    heartbeat(svc) * 2 + Duration::from_secs(5)
}

/// `xhr` and `jsonp`: one frame per request.
async fn poll(svc: Service, session: String, headers: &HeaderMap, framing: Framing) -> Response {
    let frame = match source(&svc, &session, 1).await {
        (Some(first), Source::Local(r)) => {
            r.finish();
            first
        }
        (Some(first), _) => first,
        (None, Source::Local(mut r)) => {
            let (frame, _) = r.next(heartbeat(&svc)).await.into_frame();
            r.finish();
            frame
        }
        (None, Source::Remote(mut r)) => match r.next(patience(&svc)).await {
            Some(frame) => frame.into_bytes(),
            None => Next::Heartbeat.into_frame().0,
        },
        (None, Source::None) => Next::Heartbeat.into_frame().0,
    };
    (session_headers(&svc, headers, framing.content_type()), framing.wrap(&frame)).into_response()
}

/// `xhr_streaming`, `eventsource` and `htmlfile`: frames as they come, until the response has
/// carried `sockjs_response_limit` bytes (the client then opens the next).
async fn stream(svc: Service, session: String, headers: &HeaderMap, framing: Framing) -> Response {
    let limit = svc.state.config.sockjs_response_limit;
    let mut first = VecDeque::new();
    first.extend(framing.prelude());
    let (open, source) = source(&svc, &session, limit).await;
    first.extend(open.map(|f| framing.wrap(&f)));
    let out = Streaming {
        first,
        source,
        framing: framing.clone(),
        sent: 0,
        limit,
        heartbeat: heartbeat(&svc),
        patience: patience(&svc),
    };
    let body = Body::from_stream(futures_util::stream::unfold(out, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    }));
    (session_headers(&svc, headers, framing.content_type()), body).into_response()
}

/// A streaming response's state. Dropped mid-stream (the client went away), its receiver closes
/// the session.
struct Streaming {
    first: VecDeque<Bytes>,
    source: Source,
    framing: Framing,
    sent: usize,
    limit: usize,
    heartbeat: Duration,
    patience: Duration,
}

impl Streaming {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.first.pop_front() {
            return Some(chunk);
        }
        let frame = match &mut self.source {
            Source::Local(receiver) => {
                let (frame, closed) = receiver.next(self.heartbeat).await.into_frame();
                self.sent += frame.len();
                if (closed || self.sent >= self.limit)
                    && let Source::Local(r) = std::mem::replace(&mut self.source, Source::None)
                {
                    r.finish();
                }
                frame
            }
            // The holder counts the limit and says when this request is done.
            Source::Remote(remote) => match remote.next(self.patience).await {
                Some(frame) => frame.into_bytes(),
                None => return None,
            },
            Source::None => return None,
        };
        Some(self.framing.wrap(&frame))
    }
}

/// `xhr_send` and `jsonp_send`: messages for the session, wherever it lives.
async fn send(svc: Service, session: String, headers: &HeaderMap, body: &[u8], jsonp: bool) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    let payload = if jsonp && form {
        form_urlencoded::parse(body).find(|(k, _)| k == "d").map(|(_, v)| v.into_owned().into_bytes())
    } else {
        Some(body.to_vec())
    };
    let messages = match sockjs::parse_messages(payload.as_deref().unwrap_or_default()) {
        Ok(m) => m,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.message()),
    };
    let delivered = match svc.registry.get(&session) {
        Some(shell) => shell.deliver(messages).await,
        None if svc.kind == Kind::Switchboard => svc.directory.forward(&svc.state, &session, messages).await,
        None => false,
    };
    if !delivered {
        return not_found();
    }
    if jsonp {
        (session_headers(&svc, headers, TEXT), "ok").into_response()
    } else {
        (StatusCode::NO_CONTENT, session_headers(&svc, headers, TEXT)).into_response()
    }
}

/// Why a WebSocket handshake was refused.
enum Refusal {
    /// The service has WebSockets off.
    Off,
    /// Not a WebSocket handshake.
    NotUpgrade,
    /// The origin or the node's connection limit.
    Http(HttpError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Off => not_found(),
            Refusal::NotUpgrade => text(StatusCode::BAD_REQUEST, "Can \"Upgrade\" only to \"WebSocket\"."),
            Refusal::Http(e) => e.into_response(),
        }
    }
}

/// Admits a WebSocket handshake: the Switchboard service checks origins and the node's
/// connection limit as `/ws` does.
fn admit_ws(
    svc: &Service,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<(WebSocketUpgrade, Option<crate::admission::Ticket>), Refusal> {
    if !svc.websocket {
        return Err(Refusal::Off);
    }
    let ws = ws.map_err(|_| Refusal::NotUpgrade)?;
    if svc.kind != Kind::Switchboard {
        return Ok((ws, None));
    }
    match super::ws::admit(&svc.state, crate::http::ClientIp(svc.ip), headers, Ok(ws)) {
        Ok((ws, permit)) => Ok((super::ws::configure(ws, &svc.state), Some(permit))),
        Err(e) => Err(Refusal::Http(e)),
    }
}

/// `/{server}/{session}/websocket`: SockJS frames over a WebSocket; or, with no session,
/// `/websocket`: a plain WebSocket with no SockJS framing, for programs rather than browsers. A
/// WebSocket session is its socket's alone: the id may be reused by another at the same time.
fn websocket(
    svc: Service,
    session: Option<String>,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (ws, permit) = match admit_ws(&svc, headers, ws) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    ws.on_upgrade(move |socket| async move {
        let raw = session.is_none();
        let session = session.unwrap_or_else(|| format!("raw-{:016x}", rand::random::<u64>()));
        run_websocket(svc, session, socket, raw, permit).await;
    })
}

async fn run_websocket(
    svc: Service,
    session: String,
    mut socket: WebSocket,
    raw: bool,
    ticket: Option<crate::admission::Ticket>,
) {
    let (shell, rx) = session::Shell::new();
    let Ok(mut receiver) = shell.attach() else { return };
    let id = format!("{}{session}-{:016x}", app::WEBSOCKET_SESSION, rand::random::<u64>());
    // The socket's admission ticket goes with the session, which lives as long.
    app::start(svc.kind, svc.state.clone(), &id, shell.clone(), rx, ticket);
    if !raw && socket.send(Message::Text(Utf8Bytes::from_static("o"))).await.is_err() {
        return;
    }
    let heartbeat = if raw { Duration::from_secs(3600) } else { heartbeat(&svc) };
    loop {
        tokio::select! {
            next = receiver.next(heartbeat) => {
                let sent = match next {
                    Next::Closed(c) => {
                        if !raw {
                            let frame = String::from_utf8(c.frame()).unwrap_or_default();
                            let _ = socket.send(Message::Text(frame.into())).await;
                        }
                        let code = if raw { c.code } else { 1000 };
                        let reason = Utf8Bytes::from(c.reason);
                        let _ = socket.send(Message::Close(Some(CloseFrame { code, reason }))).await;
                        receiver.finish();
                        return;
                    }
                    Next::Heartbeat if raw => continue,
                    Next::Heartbeat => socket.send(Message::Text(Utf8Bytes::from_static("h"))).await,
                    Next::Messages(m) if raw => {
                        let mut result = Ok(());
                        for escaped in m {
                            let text: String = serde_json::from_slice(&escaped).unwrap_or_default();
                            result = socket.feed(Message::Text(text.into())).await;
                            if result.is_err() {
                                break;
                            }
                        }
                        match result {
                            Ok(()) => socket.flush().await,
                            e => e,
                        }
                    }
                    Next::Messages(m) => {
                        let frame = sockjs::array(m.iter().map(|b| b.as_ref()));
                        socket.send(Message::Text(String::from_utf8(frame).unwrap_or_default().into())).await
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let messages = if raw {
                        Ok(vec![text.to_string()])
                    } else if text.is_empty() {
                        Ok(Vec::new())
                    } else {
                        sockjs::parse_messages(text.as_bytes())
                    };
                    match messages {
                        Ok(m) => {
                            if !shell.deliver(m).await {
                                continue;
                            }
                        }
                        // Broken framing ends the connection at once, as the protocol asks.
                        Err(_) => {
                            let reason = Utf8Bytes::from_static("Broken JSON encoding.");
                            let _ = socket.send(Message::Close(Some(CloseFrame { code: 1002, reason }))).await;
                            return;
                        }
                    }
                }
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
        }
    }
}
